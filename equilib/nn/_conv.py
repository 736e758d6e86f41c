"""Convolution modules: plain ``Conv``, ``LiftingConv`` and ``GroupConv`` (Flax NNX).

Each layer is a spec (configuration and maths, :mod:`equilib._src.layers`) plus its
parameters ``kernel`` and ``bias``. Channel counts count fields: a ``GroupConv(16, 16, ...)``
over C4 maps ``(B, H, W, 16, 4) -> (B, H, W, 16, 4)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from equilib import functional as F
from equilib._exact import warn_if_inexact
from equilib._src.checks import check_finite_group, check_group_kernel, check_input, check_output_size
from equilib._src.init import Initializer, lecun_normal, zeros
from equilib._src.layers import ExportableConvLayer, WindowConvSpec, set_fields
from equilib.functional import kernel_dof
from equilib.groups import Group

__all__ = ["Conv", "LiftingConv", "GroupConv", "PlainConvSpec", "LiftingConvSpec", "GroupConvSpec"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlainConvSpec(WindowConvSpec):
    """Plain convolution: kernel ``(K_h, K_w, C_in, C_out)`` (``(K_d, K_h, K_w, C_in, C_out)`` for a
    triple ``kernel_size``: a 3D convolution), bias ``(C_out,)``."""

    layer = "Conv"
    square = False

    @property
    def spatial_dims(self) -> int:
        return 3 if isinstance(self.kernel_size, tuple) and len(self.kernel_size) == 3 else 2

    def kernel_shape(self) -> tuple[int, ...]:
        ks = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else self.kernel_size
        return (*ks, self.in_channels, self.out_channels)

    def default_kernel_init(self) -> Initializer:
        return lecun_normal(1.0, in_axis=-2, out_axis=-1)  # as nnx.Conv

    def check(self, x: jax.Array) -> None:
        d = self.spatial_dims
        check_input(x, d + 2, "(batch, H, W, C)" if d == 2 else "(batch, D, H, W, C) (a 3D kernel_size)",
                    self.in_channels, self.layer)
        check_output_size(x.shape[1:1 + d], self.kernel_size, self.padding, self.layer)

    def apply(self, x, kernel, bias, precision):
        if self.spatial_dims == 3:
            return F.conv3d(x, kernel, stride=self.stride, padding=self.padding, bias=bias, precision=precision)
        return F.conv2d(x, kernel, stride=self.stride, padding=self.padding, bias=bias, precision=precision)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _RegularConvSpec(WindowConvSpec):
    """A convolution whose output is a regular map ``(..., C_out, |G|)`` of a finite group."""

    group: Group

    def __post_init__(self) -> None:
        super().__post_init__()
        set_fields(self, group=check_finite_group(self.group, self.layer))
        check_group_kernel(self.kernel_size, self.padding, self.layer)

    @property
    def spatial_dims(self) -> int:
        """2 (maps ``(B, H, W, ...)``) or 3 (volumes ``(B, D, H, W, ...)``): the group's."""
        return self.group.spatial_dims

    def _window(self) -> tuple[int, ...]:
        return (self.kernel_size,) * self.spatial_dims

    def _lecun(self, in_axis) -> Initializer:
        # LeCun normal as nnx.Conv, on the fan-in of the *expanded* kernel, so activations keep the
        # variance of a plain Conv with the same number of fields
        k = self.kernel_size
        return lecun_normal(k**self.spatial_dims / kernel_dof(self.group, k), in_axis=in_axis, out_axis=-1)

    def _check(self, x: jax.Array, extra: int, group: Group | None) -> None:
        d = self.spatial_dims
        axes = "(batch, H, W, C" if d == 2 else "(batch, D, H, W, C"
        layout = axes + (", |G|)" if extra else ")") + ("" if d == 2 else f" (a volume: {self.group.name} is 3D)")
        check_input(x, d + 2 + extra, layout, self.in_channels, self.layer, group=group)
        check_output_size(x.shape[1:1 + d], self.kernel_size, self.padding, self.layer)
        warn_if_inexact(self.layer, x.shape[1:1 + d], self.kernel_size, self.stride, self.padding, stacklevel=6)

    def expand_bias(self, bias):
        return None if bias is None else jnp.repeat(bias, self.group.order)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LiftingConvSpec(_RegularConvSpec):
    """Lifting convolution: kernel ``(K, K, C_in, C_out)``, bias ``(C_out,)``."""

    layer = "LiftingConv"

    def kernel_shape(self) -> tuple[int, ...]:
        return (*self._window(), self.in_channels, self.out_channels)

    def default_kernel_init(self) -> Initializer:
        return self._lecun(-2)

    def check(self, x: jax.Array) -> None:
        self._check(x, 0, None)

    def apply(self, x, kernel, bias, precision):
        return F.lifting_conv(x, kernel, self.group, stride=self.stride, padding=self.padding, bias=bias,
                              precision=precision)

    def expand_kernel(self, kernel):
        return F.expand_lifting_kernel(kernel, self.group)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupConvSpec(_RegularConvSpec):
    """Group convolution: kernel ``(K, K, C_in, |G|, C_out)``, bias ``(C_out,)``."""

    layer = "GroupConv"

    def kernel_shape(self) -> tuple[int, ...]:
        return (*self._window(), self.in_channels, self.group.order, self.out_channels)

    def default_kernel_init(self) -> Initializer:
        return self._lecun((-3, -2))

    def check(self, x: jax.Array) -> None:
        self._check(x, 1, self.group)

    def apply(self, x, kernel, bias, precision):
        return F.group_conv(x, kernel, self.group, stride=self.stride, padding=self.padding, bias=bias,
                            precision=precision)

    def expand_kernel(self, kernel):
        return F.expand_group_kernel(kernel, self.group)


class Conv(ExportableConvLayer):
    """Plain 2D convolution ``(B, H, W, C_in) -> (B, H', W', C_out)``: translation-equivariant
    (exactly, for circular shifts with ``padding="CIRCULAR"`` and stride 1), not rotation-equivariant.

    The arguments after ``padding`` are those of every convolution in :mod:`equilib.nn`.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: an int ``K`` or a pair ``(K_h, K_w)``.
        stride: an int, or a pair of equal ints.
        padding: "SAME" (zeros), "VALID" (none) or "CIRCULAR" (periodic), case-insensitive.
        use_bias: add a learned ``bias`` per output channel.
        dtype: the computation dtype; None (default): the input's and the parameters' promoted
            dtype, as ``flax.nnx.Conv`` (a bfloat16, uint8 or int input with float32 parameters
            computes in float32).
        param_dtype: the dtype of the parameters.
        precision: passed to the convolution (``jax.lax.Precision``).
        kernel_init: initialiser ``(key, shape, dtype) -> array`` of the ``kernel`` parameter
            (any ``jax.nn.initializers`` / ``flax.nnx.initializers`` one); None: truncated
            LeCun normal on the fan-in, as ``nnx.Conv``.
        bias_init: initialiser of ``bias`` (default zeros).
        rngs: the ``nnx.Rngs`` the parameters are drawn from (one key for the kernel, one for
            the bias, as ``nnx.Conv``).

    Parameters: ``kernel`` ``(K_h, K_w, C_in, C_out)`` and ``bias`` ``(C_out,)``.
    Calling the layer on ``x`` ``(B, H, W, C_in)`` returns ``(B, H', W', C_out)``;
    :meth:`expanded_kernel` is the HWIO kernel, :meth:`export` an equal ``nnx.Conv``.

    Raises:
        ValueError: a bad argument; on call, an input of the wrong rank or channel count, or
            smaller than the kernel with ``padding="VALID"``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import nn
        >>> conv = nn.Conv(3, 8, 3, padding="CIRCULAR", rngs=nnx.Rngs(0))
        >>> conv(jnp.ones((2, 16, 16, 3))).shape, conv.kernel.shape
        ((2, 16, 16, 8), (3, 3, 3, 8))
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, *, stride: Any = 1,
                 padding: str = "SAME", use_bias: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None,
                 kernel_init: Initializer | None = None, bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = PlainConvSpec(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                        stride=stride, padding=padding, use_bias=use_bias)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class _RegularConv(ExportableConvLayer):
    spec_class: type[_RegularConvSpec]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, group: Group,
                 stride: Any = 1, padding: str = "SAME", use_bias: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None,
                 kernel_init: Initializer | None = None, bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = self.spec_class(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                               group=group, stride=stride, padding=padding, use_bias=use_bias)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class LiftingConv(_RegularConv):
    """Lifting convolution ``(B, H, W, C_in) -> (B, H', W', C_out, |G|)`` (Cohen & Welling 2016).

    ``out[p, o, h] = sum_{d, c} x[p + d, c] * kernel[h^-1 d, c, o] + bias[o]``: one copy of each
    filter per group element, rotated/reflected by it. Equivariance: transforming the input by
    ``g`` (:meth:`Group.transform_image`) transforms the output by ``g`` in space and permutes
    its group axis (:meth:`Group.transform_regular`).

    Exactness: exact (fp32 rounding, ~1e-7 relative) for C1, C2, C4, D1, D2, D4 when the layer
    samples its input symmetrically (odd kernel; stride 1 or an odd input size; "VALID" also
    allows even kernels); see :func:`equilib.check_exact`. For C8, C16, D8, ... the filters are
    band-limited and rotated analytically (:mod:`equilib.functional`), exact at multiples of
    90 degrees and approximate in between: the measured errors are in ``benchmarks/RESULTS.md``,
    section "Equivariance error".

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output fields ``C_out`` (each of ``|G|`` channels).
        kernel_size: an odd int ``K`` (even only with ``padding="VALID"``), or ``(K, K)``.
        group: a finite group (:class:`~equilib.groups.Cyclic`, :class:`~equilib.groups.Dihedral`,
            :class:`~equilib.groups.Trivial`); for SO(2)/O(2) use :class:`SteerableConv`.
        kernel_init: as :class:`Conv`; None: LeCun normal on the fan-in of the expanded kernel.

    ``stride``, ``padding``, ``use_bias``, ``dtype``, ``param_dtype``, ``precision``,
    ``bias_init`` and ``rngs`` are those of :class:`Conv`.

    Parameters: ``kernel`` ``(K, K, C_in, C_out)``, ``bias`` ``(C_out,)`` shared over the group.
    :meth:`expanded_kernel` is the HWIO kernel ``(K, K, C_in, C_out*|G|)`` (output channel
    ``o*|G| + h``); :meth:`export` an ``nnx.Conv`` with output ``(B, H', W', C_out*|G|)``.

    Raises:
        TypeError: ``group`` is not a finite group.
        ValueError: a bad argument (an even kernel with "SAME"/"CIRCULAR" padding breaks exact
            equivariance); on call, a wrong input rank or channel count, or an input smaller than
            the kernel with ``padding="VALID"``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, nn
        >>> lift = nn.LiftingConv(1, 4, 3, group=Cyclic(4), rngs=nnx.Rngs(0))
        >>> y = lift(jnp.ones((2, 9, 9, 1)))  # 4 fields of |C4| = 4 channels
        >>> y.shape, lift.expanded_kernel().shape
        ((2, 9, 9, 4, 4), (3, 3, 1, 16))
    """

    spec_class = LiftingConvSpec


class GroupConv(_RegularConv):
    """Group convolution ``(B, H, W, C_in, |G|) -> (B, H', W', C_out, |G|)``.

    ``out[p, o, h] = sum_{d, c, k} x[p + d, c, k] * kernel[h^-1 d, c, h^-1 k, o] + bias[o]``.
    Equivariant under the regular action (:meth:`Group.transform_regular`) on input and output.
    Exactness as for :class:`LiftingConv`.

    Args:
        in_channels: input fields ``C_in`` (the input is ``(B, H, W, C_in, |G|)``).
        out_channels: output fields ``C_out``.

    The other arguments are those of :class:`LiftingConv`.

    Parameters: ``kernel`` ``(K, K, C_in, |G|, C_out)``, ``bias`` ``(C_out,)``.
    :meth:`expanded_kernel` is the HWIO kernel ``(K, K, C_in*|G|, C_out*|G|)`` (input channel
    ``c*|G| + k``, output channel ``o*|G| + h``); :meth:`export` an ``nnx.Conv`` on the
    flattened input ``(B, H, W, C_in*|G|)``.

    Raises:
        TypeError: ``group`` is not a finite group.
        ValueError: as :class:`LiftingConv`, and an input whose group axis (last) is not ``|G|``.

    Example:
        A D4 group convolution maps 4 fields to 2, each with one channel per element of D4:

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Dihedral, nn
        >>> nn.GroupConv(4, 2, 3, group=Dihedral(4), rngs=nnx.Rngs(0))(jnp.ones((1, 9, 9, 4, 8))).shape
        (1, 9, 9, 2, 8)
    """

    spec_class = GroupConvSpec
