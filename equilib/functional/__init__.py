"""The maths of equilib as pure functions of arrays (no Flax).

Shapes are channels-last: plain maps ``(B, H, W, C)``, regular group maps ``(B, H, W, C, |G|)``.
The group convention is documented in :mod:`equilib.groups`.
"""

from equilib._src.imaging import rescale, rotate
from equilib.functional._adaptive import adaptive_avg_pool, adaptive_max_pool, norm_max_pool
from equilib.functional._conv import (
    CONV_IMPLS,
    PADDINGS,
    choose_impl,
    conv2d,
    conv3d,
    group_conv,
    is_symmetric_sampling,
    lifting_conv,
    padding_pads,
)
from equilib.functional._kernels import expand_group_kernel, expand_lifting_kernel, kernel_dof
from equilib.functional._layer_norm import field_instance_norm, group_norm, layer_norm
from equilib.functional._norm import batch_moments, batch_norm, normalize
from equilib.functional._pool import group_pool
from equilib.functional._scale import (
    scale_basis,
    scale_conv,
    scale_conv_1x1,
    scale_lifting_conv,
    scale_pool,
)
from equilib.functional._spatial_pool import (
    aps_pool,
    aps_unpool,
    avg_pool,
    binomial_filter,
    blur_pool,
    global_pool,
    max_blur_pool,
    max_pool,
)
from equilib.functional._steerable import (
    BasisConfig,
    SteerableBasis,
    basis_config,
    expand_steerable_bias,
    expand_steerable_kernel,
    rep_pair_basis,
    steerable_basis,
    steerable_conv,
)
from equilib.functional._transpose import conv_transpose, conv_transpose_size
from equilib.functional._upsample import interpolation_matrix, upsample, upsample_size

__all__ = [
    "CONV_IMPLS",
    "PADDINGS",
    "BasisConfig",
    "SteerableBasis",
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "aps_pool",
    "aps_unpool",
    "avg_pool",
    "basis_config",
    "batch_moments",
    "batch_norm",
    "field_instance_norm",
    "group_norm",
    "layer_norm",
    "binomial_filter",
    "blur_pool",
    "choose_impl",
    "conv2d",
    "conv3d",
    "expand_group_kernel",
    "expand_lifting_kernel",
    "expand_steerable_bias",
    "expand_steerable_kernel",
    "global_pool",
    "group_conv",
    "group_pool",
    "is_symmetric_sampling",
    "kernel_dof",
    "lifting_conv",
    "max_blur_pool",
    "max_pool",
    "norm_max_pool",
    "normalize",
    "padding_pads",
    "rep_pair_basis",
    "rescale",
    "rotate",
    "scale_basis",
    "scale_conv",
    "scale_conv_1x1",
    "scale_lifting_conv",
    "scale_pool",
    "steerable_basis",
    "steerable_conv",
    "conv_transpose",
    "conv_transpose_size",
    "interpolation_matrix",
    "upsample",
    "upsample_size",
]
