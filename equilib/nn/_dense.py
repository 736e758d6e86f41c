"""Dense-prediction layers (Flax NNX): ``Upsample`` and the transposed convolutions
``ConvTranspose``, ``GroupConvTranspose`` and ``SteerableConvTranspose``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import jax
import jax.numpy as jnp
from flax import nnx

from equilib import functional as F
from equilib._exact import warn_if_inexact_transpose, warn_if_inexact_upsample
from equilib._src.checks import check_choice, check_input
from equilib._src.init import Initializer, lecun_normal, zeros
from equilib._src.layers import ConvLayer, WindowSpec, set_fields
from equilib._src.typing import Array
from equilib.fields import FieldType
from equilib.functional import kernel_dof
from equilib.functional._transpose import check_output_padding, conv_transpose_pads
from equilib.functional._upsample import UPSAMPLE_METHODS, check_upsample_args, upsample_size
from equilib.groups import Group
from equilib.nn._conv import GroupConvSpec, PlainConvSpec
from equilib.nn._steerable import SteerableConvSpec

__all__ = ["Upsample", "ConvTranspose", "GroupConvTranspose", "SteerableConvTranspose", "ConvTransposeSpec",
           "GroupConvTransposeSpec", "SteerableConvTransposeSpec"]


class Upsample(nnx.Module):
    """Spatial up- (or down-) sampling ``(B, H, W, ...) -> (B, H', W', ...)`` by interpolation
    (:func:`equilib.functional.upsample`); no parameters.

    Acts on the spatial axes only, so it works on plain, regular, scale and steerable maps and is
    equivariant for any field representation. Exact for rot90/flips when both interpolation
    tables are mirror symmetric (always for bilinear; nearest breaks it at rounding ties, e.g. a
    factor 1.5) and a square input gets a square output; otherwise it emits an
    :class:`equilib.ExactnessWarning` when traced (collected by :func:`equilib.check_exact`).
    With the defaults (bilinear, ``align_corners=True``, factor 2) ``n -> 2n - 1``: a stride-2
    "SAME" convolution with an odd kernel maps it back to ``n`` (the U-Net decoder on odd sizes).

    Args:
        scale_factor: a positive number or a pair ``(s_h, s_w)`` (output size as
            :func:`equilib.functional.upsample_size`); exactly one of it and ``size``.
        size: the output size, an int or a pair ``(H', W')``.
        method: "nearest" or "bilinear".
        align_corners: the bilinear coordinate convention (True: corners onto corners; False:
            centres onto centres, as ``jax.image.resize``); ignored by "nearest".

    Raises:
        ValueError: both or neither of ``scale_factor``/``size``, a non-positive one or an
            unknown ``method``; on call, an input of rank < 4.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> nn.Upsample(2)(jnp.ones((1, 5, 5, 3, 4))).shape  # a regular C4 map
        (1, 9, 9, 3, 4)
        >>> nn.Upsample(size=(8, 8), method="nearest")(jnp.ones((1, 4, 4, 2))).shape
        (1, 8, 8, 2)
    """

    def __init__(self, scale_factor: Any = None, *, size: Any = None, method: str = "bilinear",
                 align_corners: bool = True):
        self.method = check_choice("method", method, UPSAMPLE_METHODS)
        self.align_corners = bool(align_corners)
        check_upsample_args(scale_factor, size, method)
        self.scale_factor = tuple(scale_factor) if isinstance(scale_factor, list) else scale_factor
        self.size = tuple(size) if isinstance(size, list) else size

    def __call__(self, x: Array) -> Array:
        x = x if hasattr(x, "ndim") else jnp.asarray(x)
        if x.ndim < 4:
            raise ValueError(f"Upsample expects an input of rank >= 4 (batch, H, W, ...), got shape {tuple(x.shape)}")
        out = upsample_size(x.shape[1:3], self.scale_factor, self.size, self.method, self.align_corners)
        warn_if_inexact_upsample("Upsample", x.shape[1:3], out, self.method, self.align_corners, stacklevel=3)
        return F.upsample(x, self.scale_factor, size=self.size, method=self.method,
                          align_corners=self.align_corners)


# --- transposed convolutions --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class _TransposeMixin(WindowSpec):
    """The ``output_padding`` of a transposed convolution, checked after the window; the first
    base of each transposed spec, before the spec of the convolution it transposes (whose
    ``__post_init__`` runs first, and whose fields come before ``output_padding``)."""

    output_padding: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        set_fields(self, output_padding=check_output_padding(self.output_padding, self.stride, self.padding))

    def _warn_inexact(self, x: jax.Array) -> None:
        """An :class:`equilib.ExactnessWarning` where the output grid is not symmetric."""
        warn_if_inexact_transpose(self.layer, x.shape[1:3], self.kernel_size, self.stride, self.padding,
                                  self.output_padding, stacklevel=6)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConvTransposeSpec(_TransposeMixin, PlainConvSpec):
    """Plain transposed convolution: kernel ``(K_h, K_w, C_in, C_out)``, bias ``(C_out,)``."""

    layer = "ConvTranspose"

    def default_kernel_init(self) -> Initializer:
        # LeCun normal on the fan-in of the transposed op: an output pixel sums about K^2/s^2 taps
        # of C_in channels (the K^2*C_in of nnx.ConvTranspose overcounts by s^2 at stride s)
        return lecun_normal(float(self.stride) ** 2, in_axis=-2, out_axis=-1)

    def check(self, x: jax.Array) -> None:
        check_input(x, 4, "(batch, H, W, C)", self.in_channels, self.layer)

    def apply(self, x, kernel, bias, precision):
        return F.conv_transpose(x, kernel, stride=self.stride, padding=self.padding,
                                output_padding=self.output_padding, bias=bias, precision=precision)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupConvTransposeSpec(_TransposeMixin, GroupConvSpec):
    """Transposed group convolution: kernel ``(K, K, C_in, |G|, C_out)``, bias ``(C_out,)``."""

    layer = "GroupConvTranspose"

    def default_kernel_init(self) -> Initializer:
        # GroupConv's LeCun scale (fan-in of the expanded kernel) times s^2, as ConvTransposeSpec
        k = self.kernel_size
        return lecun_normal(k * k / kernel_dof(self.group, k) * float(self.stride) ** 2, in_axis=(-3, -2),
                            out_axis=-1)

    def check(self, x: jax.Array) -> None:
        check_input(x, 5, "(batch, H, W, C, |G|)", self.in_channels, self.layer, group=self.group)
        self._warn_inexact(x)

    def apply(self, x, kernel, bias, precision):
        b, h, w = x.shape[:3]
        y = F.conv_transpose(x.reshape(b, h, w, -1), self.expand_kernel(kernel), stride=self.stride,
                             padding=self.padding, output_padding=self.output_padding, precision=precision)
        y = y.reshape(y.shape[:-1] + (self.out_channels, self.group.order))
        if bias is not None:
            y = y + bias.reshape((1,) * (y.ndim - 2) + (-1, 1))  # shared over the group axis
        return y


@dataclasses.dataclass(frozen=True, kw_only=True)
class SteerableConvTransposeSpec(_TransposeMixin, SteerableConvSpec):
    """Transposed steerable convolution: the kernel basis of ``SteerableConv(in_type, out_type)``."""

    layer = "SteerableConvTranspose"

    def default_kernel_init(self) -> Initializer:
        init, scale = super().default_kernel_init(), float(self.stride)

        def scaled(key, shape, dtype=jnp.float32):
            # SteerableConv's He variances, times s^2 for the fan-in of the transposed op
            return init(key, shape, dtype) * jnp.asarray(scale, dtype)

        return scaled

    def check(self, x: jax.Array) -> None:
        self.in_type.check(x, "x", self.layer)
        self._warn_inexact(x)

    def apply(self, x, kernel, bias, precision):
        return F.conv_transpose(x, kernel, stride=self.stride, padding=self.padding,
                                output_padding=self.output_padding, bias=bias, precision=precision)


class _TransposeLayer(ConvLayer):
    def export(self) -> nnx.ConvTranspose:
        """A plain ``flax.nnx.ConvTranspose`` computing the same function (on the flattened input,
        for regular maps): the expanded kernel flipped in space, explicit pads, no
        ``transpose_kernel``.

        Returns:
            An ``nnx.ConvTranspose`` with the expanded kernel and bias as its parameters.
        """
        spec = cast(Any, self.spec)
        kernel, bias = self.expanded_kernel(), self.expanded_bias()
        kh, kw, cin, cout = kernel.shape
        # the pads do not depend on the input size: computed for n = 1
        pads = [conv_transpose_pads(1, k, spec.stride, spec.padding, spec.output_padding) for k in (kh, kw)]
        flipped = kernel[::-1, ::-1]
        # the parameters are passed as constant initialisers: no random draw to compile
        return nnx.ConvTranspose(cin, cout, (kh, kw), strides=spec.stride, padding=pads, use_bias=bias is not None,
                                 transpose_kernel=False, dtype=self.dtype, param_dtype=kernel.dtype,
                                 precision=self.precision, kernel_init=lambda *_: flipped,
                                 bias_init=lambda *_: bias, rngs=nnx.Rngs(0))


class ConvTranspose(_TransposeLayer):
    """Plain transposed convolution ``(B, n_h, n_w, C_in) -> (B, m_h, m_w, C_out)``
    (:func:`equilib.functional.conv_transpose`): the adjoint of a stride-``s`` :class:`Conv`
    ``C_out -> C_in`` with the kernel's channel axes swapped, plus a bias.

    Output size: "SAME" ``m = (n - 1) * stride + 1 + output_padding`` (``n -> 2n - 1`` at stride
    2, undone by a stride-2 "SAME" conv on odd sizes; ``output_padding=1``: ``2n``, the size of
    ``flax.nnx.ConvTranspose``); "VALID" ``m = (n - 1) * stride + K + output_padding``.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: an int ``K`` or a pair ``(K_h, K_w)``.
        stride: an int, or a pair of equal ints.
        padding: "SAME" or "VALID" ("CIRCULAR" is refused).
        output_padding: extra output pixels at the bottom/right, ``0 <= output_padding < stride``.
        use_bias: add a learned ``bias`` per output channel.
        dtype: the computation dtype, as :class:`equilib.nn.Conv`.
        param_dtype: the dtype of the parameters.
        precision: passed to the convolution.
        kernel_init: initialiser of ``kernel``; None: truncated LeCun normal on the fan-in of the
            transposed op, ``K_h * K_w * C_in / stride^2`` (the taps an output pixel sums, on
            average), so activations keep their variance at any stride.
        bias_init: initialiser of ``bias`` (default zeros).
        rngs: the ``nnx.Rngs`` (one key for the kernel, one for the bias).

    Parameters: ``kernel`` ``(K_h, K_w, C_in, C_out)`` and ``bias`` ``(C_out,)``.
    :meth:`expanded_kernel` is the HWIO kernel, :meth:`export` an equal ``nnx.ConvTranspose``.

    Raises:
        ValueError: a bad argument (``output_padding >= stride``, "CIRCULAR" padding, ...); on
            call, an input of the wrong rank or channel count.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import nn
        >>> up = nn.ConvTranspose(8, 4, 3, stride=2, rngs=nnx.Rngs(0))
        >>> up(jnp.ones((1, 5, 5, 8))).shape, up.kernel.shape
        ((1, 9, 9, 4), (3, 3, 8, 4))
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, *, stride: Any = 1,
                 padding: str = "SAME", output_padding: int = 0, use_bias: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None,
                 kernel_init: Initializer | None = None, bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = ConvTransposeSpec(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                                 stride=stride, padding=padding, output_padding=output_padding, use_bias=use_bias)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class GroupConvTranspose(_TransposeLayer):
    """Transposed group convolution ``(B, n, n, C_in, |G|) -> (B, m, m, C_out, |G|)``.

    The adjoint of a :class:`GroupConv` ``C_out -> C_in`` whose expanded kernel is this layer's
    expanded kernel (:func:`equilib.functional.expand_group_kernel` of ``kernel``) with its
    channel axes swapped: the transposed expanded kernel satisfies the group-conv constraint
    again, and the adjoint of an equivariant map between permutation representations is
    equivariant. Exact for C2, C4, D1, D2, D4 when the output grid is symmetric about its centre
    (the conv it is the adjoint of samples symmetrically): an odd kernel (even only with "VALID")
    with ``output_padding=0``, e.g. ``n -> 2n - 1`` at stride 2; it emits an
    :class:`equilib.ExactnessWarning` otherwise (e.g. stride 2, ``output_padding=1``: ``2n``).
    For C8, D8, ... the band-limited kernels are approximately equivariant at stride 1; at stride
    > 1 the images of the zero insertion are not rotated off the grid (measured errors 0.5-1 at
    45 degrees): use :class:`Upsample` and a stride-1 convolution where off-grid angles matter.

    Args:
        in_channels: input fields ``C_in``.
        out_channels: output fields ``C_out``.
        kernel_size: an odd int ``K`` (even only with ``padding="VALID"``).
        group: a finite group.
        kernel_init: as :class:`ConvTranspose`; None: :class:`GroupConv`'s LeCun scale times
            ``stride^2`` (the fan-in of the transposed op).

    ``stride``, ``padding``, ``output_padding``, ``use_bias``, ``dtype``, ``param_dtype``,
    ``precision``, ``bias_init`` and ``rngs`` are those of :class:`ConvTranspose`.

    Parameters: ``kernel`` ``(K, K, C_in, |G|, C_out)``, ``bias`` ``(C_out,)`` shared over the
    group. :meth:`expanded_kernel` is ``(K, K, C_in*|G|, C_out*|G|)``; :meth:`export` an
    ``nnx.ConvTranspose`` on the flattened input ``(B, n, n, C_in*|G|)``.

    Raises:
        TypeError: ``group`` is not a finite group.
        ValueError: a bad argument (an even kernel with "SAME", ``output_padding >= stride``,
            ...); on call, a wrong input rank, channel count or group axis.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, nn
        >>> up = nn.GroupConvTranspose(4, 2, 3, group=Cyclic(4), stride=2, rngs=nnx.Rngs(0))
        >>> up(jnp.ones((1, 5, 5, 4, 4))).shape
        (1, 9, 9, 2, 4)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, group: Group,
                 stride: Any = 1, padding: str = "SAME", output_padding: int = 0, use_bias: bool = True,
                 dtype: Any = None, param_dtype: Any = jnp.float32, precision: Any = None,
                 kernel_init: Initializer | None = None, bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = GroupConvTransposeSpec(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                                      group=group, stride=stride, padding=padding, output_padding=output_padding,
                                      use_bias=use_bias)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class SteerableConvTranspose(_TransposeLayer):
    """Transposed steerable convolution ``(B, n, n, in_type.size) -> (B, m, m, out_type.size)``.

    The HWIO kernel ``(K, K, D_in, D_out)`` is that of ``SteerableConv(in_type, out_type)``
    (same basis, :func:`equilib.functional.steerable_basis`); applied by
    :func:`equilib.functional.conv_transpose`, i.e. as the adjoint of a steerable conv
    ``out_type -> in_type`` with the kernel's channel axes swapped, which satisfies the
    steerable constraint for the (orthogonal) representations swapped; so the layer is
    equivariant. Exactness as :class:`GroupConvTranspose`. The bias lives on the trivial irreps
    of ``out_type``, as in :class:`SteerableConv`.

    Args:
        in_type: the field type of the input, ``D_in = in_type.size``.
        out_type: the field type of the output (same group).
        kernel_size: an odd int ``K`` (even only with ``padding="VALID"``).
        rings: as :class:`SteerableConv`.
        sigma: as :class:`SteerableConv`.
        frequency_cutoff: as :class:`SteerableConv`.
        kernel_init: as :class:`SteerableConv`; None: its He variances times ``stride^2`` (the
            fan-in of the transposed op).
        bias_init: as :class:`SteerableConv` (its key derived from the kernel's).

    ``stride``, ``padding``, ``output_padding``, ``use_bias``, ``dtype``, ``param_dtype``,
    ``precision`` and ``rngs`` are those of :class:`ConvTranspose`.

    Parameters: ``kernel`` ``(num_params,)``, ``bias`` ``(num_bias,)`` as :class:`SteerableConv`.
    :meth:`expanded_kernel` is ``(K, K, D_in, D_out)``; :meth:`export` an equal
    ``nnx.ConvTranspose``.

    Raises:
        ValueError: a bad argument; on call, an input that is not ``(B, H, W, D_in)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> G = Cyclic(4)
        >>> vec, reg = FieldType(G, [reps.irrep(G, 1)]), FieldType(G, [reps.regular_rep(G)])
        >>> up = nn.SteerableConvTranspose(reg, vec, 3, stride=2, rngs=nnx.Rngs(0))
        >>> up(jnp.ones((1, 5, 5, 4))).shape
        (1, 9, 9, 2)
    """

    def __init__(self, in_type: FieldType, out_type: FieldType, kernel_size: Any, *, stride: Any = 1,
                 padding: str = "SAME", output_padding: int = 0, use_bias: bool = True, rings: Any = None,
                 sigma: Any = None, frequency_cutoff: Any = None, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None, kernel_init: Initializer | None = None,
                 bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = SteerableConvTransposeSpec(in_type=in_type, out_type=out_type, kernel_size=kernel_size,
                                          stride=stride, padding=padding, output_padding=output_padding,
                                          use_bias=use_bias, rings=rings, sigma=sigma,
                                          frequency_cutoff=frequency_cutoff)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
