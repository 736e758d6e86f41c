"""Batch normalisation of regular feature maps (Flax NNX)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from equilib._src.checks import check_finite_group, check_input, check_positive_int
from equilib._src.layers import BatchNormLayer, NormSpec, set_fields
from equilib.functional import batch_moments, batch_norm, normalize
from equilib.groups import Group

__all__ = ["GroupBatchNorm", "GroupBatchNormSpec"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupBatchNormSpec(NormSpec):
    """Statistics, scale and bias per field, shared over batch, space and the group axis."""

    layer = "GroupBatchNorm"

    num_features: int
    group: Group

    def __post_init__(self) -> None:
        set_fields(self, num_features=check_positive_int("num_features", self.num_features),
                   group=check_finite_group(self.group, self.layer))

    def stat_shapes(self):
        return (self.num_features,), (self.num_features,)

    def param_shapes(self):
        return (self.num_features,), (self.num_features,)

    def check(self, x: jax.Array) -> None:
        d = self.group.spatial_dims
        check_input(x, 3 + d, "(batch, H, W, C, |G|)" if d == 2 else f"(batch, D, H, W, C, |G|) (a volume: "
                    f"{self.group.name} is 3D)", self.num_features, self.layer, group=self.group,
                    channels_name="num_features")

    def moments(self, x, axis_name):
        return batch_moments(x, feature_axis=-2, axis_name=axis_name)

    def normalize(self, x, mean, var, scale, bias, epsilon):
        return normalize(x, mean, var, scale, bias, feature_axis=-2, epsilon=epsilon)

    def batch_normalize(self, x, scale, bias, epsilon, axis_name):
        y, mean, var = batch_norm(x, scale, bias, feature_axis=-2, epsilon=epsilon, axis_name=axis_name)
        return y, (mean, var)


class GroupBatchNorm(BatchNormLayer):
    """Batch norm of a regular map ``(B, H, W, C, |G|)`` with statistics, scale and bias per
    field ``c``, shared over batch, space **and the group axis**, so it commutes with the group
    action (it is equivariant, and exactly so, as a per-channel affine map).

    Training mode (``use_running_average=False``) normalises with the batch statistics and
    updates the running ones: ``ra = momentum * ra + (1 - momentum) * batch`` (Flax's
    convention). ``model.eval()`` switches to the running statistics; ``__call__(x,
    use_running_average=...)`` overrides the mode for one call.

    Args:
        num_features: fields ``C`` of the input.
        group: the finite group of the input's group axis (last, size ``|G|``).
        use_running_average: normalise with the running statistics (evaluation mode).
        momentum: in [0, 1], the weight of the old running statistics.
        epsilon: > 0, added to the variance.
        use_scale: learn a ``scale`` per field (initialised to 1).
        use_bias: learn a ``bias`` per field (initialised to 0).
        axis_name: averages the statistics across devices under ``pmap``/``shard_map``.
        dtype: the computation dtype; None: the input's and the parameters' promoted dtype,
            as ``flax.nnx.BatchNorm`` (statistics are computed in float32 at least).
        param_dtype: the dtype of ``scale`` and ``bias``.
        rngs: required as in NNX; no key is drawn (the initialisers are constant).

    Parameters: ``scale``, ``bias`` ``(C,)``; batch stats: ``mean``, ``var`` ``(C,)``. Calling
    the layer on ``x`` ``(B, H, W, C, |G|)`` returns the normalised map, same shape.

    Raises:
        TypeError: ``group`` is not a finite group.
        ValueError: a bad argument; on call, an input whose rank, channel axis (against
            ``num_features``) or group axis does not match.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import nn
        >>> from equilib.groups import Cyclic
        >>> bn = nn.GroupBatchNorm(3, group=Cyclic(4), rngs=nnx.Rngs(0))
        >>> bn(jnp.arange(2 * 5 * 5 * 3 * 4.0).reshape(2, 5, 5, 3, 4)).shape
        (2, 5, 5, 3, 4)
    """

    def __init__(self, num_features: int, *, group: Group, use_running_average: bool = False,
                 momentum: float = 0.99, epsilon: float = 1e-5, use_scale: bool = True,
                 use_bias: bool = True, axis_name: Any = None, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        super().__init__(GroupBatchNormSpec(num_features=num_features, group=group),
                         use_running_average=use_running_average, momentum=momentum, epsilon=epsilon,
                         use_scale=use_scale, use_bias=use_bias, axis_name=axis_name, dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs)
