"""Convolution modules: plain ``Conv``, ``LiftingConv`` and ``GroupConv`` (Flax NNX).

The modules own their parameters and call :mod:`equilib.functional`. Channel counts count
fields: a ``GroupConv(16, 16, ...)`` over C4 maps ``(B, H, W, 16, 4) -> (B, H, W, 16, 4)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib import functional as F
from equilib._exact import warn_if_inexact
from equilib.functional._conv import normalize_padding, normalize_stride
from equilib.functional._kernels import kernel_dof
from equilib.groups import Group, as_group
from equilib.nn._init import lecun_normal, zeros

__all__ = ["Conv", "LiftingConv", "GroupConv"]


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return int(value)


def check_kernel_size(kernel_size, *, square: bool) -> int | tuple[int, int]:
    if isinstance(kernel_size, (tuple, list)):
        if len(kernel_size) != 2:
            raise ValueError(f"`kernel_size` must be an int or a pair of ints, got {kernel_size!r}")
        kh, kw = (check_positive_int("kernel_size", k) for k in kernel_size)
        if kh == kw:
            return kh
        if square:
            raise ValueError(f"`kernel_size` must be square for group convolutions (a rotated "
                             f"kernel must fit the same window), got {tuple(kernel_size)}")
        return (kh, kw)
    return check_positive_int("kernel_size", kernel_size)


def check_group_kernel(kernel_size: int, padding: str, layer: str):
    if kernel_size % 2 == 0 and padding != "VALID":
        raise ValueError(
            f"{layer}: `kernel_size` (={kernel_size}) is even, which with padding={padding!r} "
            f"shifts the output grid by half a pixel and breaks exact rot90/flip equivariance; "
            f"expected an odd kernel_size, or padding='VALID' (which stays exact)")


def check_input(x, rank: int, layout: str, channels: int, name: str, group: Group | None = None):
    if x.ndim != rank:
        raise ValueError(f"{name} expects an input of rank {rank} {layout}, got shape {tuple(x.shape)}")
    caxis = -2 if group is not None else -1
    if x.shape[caxis] != channels:
        raise ValueError(f"`in_channels` (={channels}) does not match the input's channel axis "
                         f"(={x.shape[caxis]}, shape {tuple(x.shape)})")
    if group is not None and x.shape[-1] != group.order:
        raise ValueError(f"`group` ({group.name}, order {group.order}) does not match the input's "
                         f"group axis (last, ={x.shape[-1]}, shape {tuple(x.shape)})")


def _init(kernel_init, in_axis, out_axis, scale=1.0):
    if kernel_init is not None:
        return kernel_init
    # LeCun normal as nnx.Conv, on the fan-in of the *expanded* kernel, so activations keep the
    # variance of a plain Conv with the same number of fields.
    return lecun_normal(scale, in_axis=in_axis, out_axis=out_axis)


def _cast(dtype, *arrays):
    if dtype is None:
        return arrays
    return tuple(None if a is None else jnp.asarray(a, dtype) for a in arrays)


class Conv(nnx.Module):
    """Plain 2D convolution ``(B, H, W, C_in) -> (B, H', W', C_out)``: translation-equivariant
    (exactly, for circular shifts with ``padding="CIRCULAR"`` and stride 1), not rotation-equivariant.

    Parameters: ``weight`` ``(K_h, K_w, C_in, C_out)`` and ``bias`` ``(C_out,)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, stride=1,
                 padding: str = "SAME", use_bias: bool = True, dtype=None,
                 param_dtype=jnp.float32, precision=None, kernel_init=None,
                 bias_init=zeros, rngs: nnx.Rngs):
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = check_kernel_size(kernel_size, square=False)
        self.stride = normalize_stride(stride)
        self.padding = normalize_padding(padding)
        self.use_bias = bool(use_bias)
        self.dtype, self.precision = dtype, precision
        kh, kw = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else self.kernel_size
        init = _init(kernel_init, -2, -1)
        self.weight = nnx.Param(init(rngs.params(), (kh, kw, self.in_channels, self.out_channels), param_dtype))
        self.bias = (nnx.Param(bias_init(rngs.params(), (self.out_channels,), param_dtype))
                     if use_bias else None)

    def __call__(self, x):
        check_input(x, 4, "(batch, H, W, C)", self.in_channels, "Conv")
        x, w, b = _cast(self.dtype, x, self.weight[...], None if self.bias is None else self.bias[...])
        return F.conv2d(x, w, stride=self.stride, padding=self.padding, bias=b, precision=self.precision)

    def kernel(self):
        """The HWIO kernel ``(K_h, K_w, C_in, C_out)``."""
        return self.weight[...]

    def export(self) -> nnx.Conv:
        """An ``nnx.Conv`` computing the same function."""
        return _export(self.kernel(), None if self.bias is None else self.bias[...],
                       self.stride, self.padding, self.dtype, self.precision)


class LiftingConv(nnx.Module):
    """Lifting convolution ``(B, H, W, C_in) -> (B, H', W', C_out, |G|)`` (Cohen & Welling 2016).

    ``out[p, o, h] = sum_{d, c} x[p + d, c] * weight[h^-1 d, c, o] + bias[o]``: one copy of each
    filter per group element, rotated/reflected by it. Equivariance: transforming the input by
    ``g`` (:meth:`Group.transform_image`) transforms the output by ``g`` in space and permutes
    its group axis (:meth:`Group.transform_regular`).

    Exactness: exact (fp32 rounding, ~1e-7 relative) for C1, C2, C4, D1, D2, D4 when the layer
    samples its input symmetrically (odd kernel; stride 1 or an odd input size; "VALID" also
    allows even kernels); see :func:`equilib.check_exact`. For C8, C16, D8, ... the filters are
    band-limited and rotated analytically (:mod:`equilib.functional._kernels`); measured
    relative error at 45 degrees (C8, random 3x3 kernels, 33x33 smooth input with
    ``smooth_random(sigma=1.5)``, central disk of 0.6 of the radius): 0.029 (5x5: 0.055,
    7x7: 0.051), against 0.31 for a plain 3x3 ``Conv``; exact at multiples of 90 degrees.

    Parameters: ``weight`` ``(K, K, C_in, C_out)``, ``bias`` ``(C_out,)`` shared over the group.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, group: Group, stride=1,
                 padding: str = "SAME", use_bias: bool = True, dtype=None, param_dtype=jnp.float32,
                 precision=None, kernel_init=None, bias_init=zeros, rngs: nnx.Rngs):
        self.group = as_group(group)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = check_kernel_size(kernel_size, square=True)
        self.stride = normalize_stride(stride)
        self.padding = normalize_padding(padding)
        check_group_kernel(self.kernel_size, self.padding, "LiftingConv")
        self.use_bias = bool(use_bias)
        self.dtype, self.precision = dtype, precision
        k = self.kernel_size
        init = _init(kernel_init, -2, -1, scale=k * k / kernel_dof(self.group, k))
        self.weight = nnx.Param(init(rngs.params(), (k, k, self.in_channels, self.out_channels), param_dtype))
        self.bias = (nnx.Param(bias_init(rngs.params(), (self.out_channels,), param_dtype))
                     if use_bias else None)

    def __call__(self, x):
        check_input(x, 4, "(batch, H, W, C)", self.in_channels, "LiftingConv")
        warn_if_inexact("LiftingConv", x.shape[1:3], self.kernel_size, self.stride, self.padding)
        x, w, b = _cast(self.dtype, x, self.weight[...], None if self.bias is None else self.bias[...])
        return F.lifting_conv(x, w, self.group, stride=self.stride, padding=self.padding, bias=b,
                              precision=self.precision)

    def kernel(self):
        """The expanded HWIO kernel ``(K, K, C_in, C_out*|G|)``; output channel ``o*|G| + h``."""
        return F.expand_lifting_kernel(self.weight[...], self.group)

    def export(self) -> nnx.Conv:
        """An ``nnx.Conv`` computing the same function on ``(B, H, W, C_in)``, with output
        ``(B, H', W', C_out*|G|)``; reshape it to ``(..., C_out, |G|)``."""
        return _export(self.kernel(), _expanded_bias(self.bias, self.group), self.stride,
                       self.padding, self.dtype, self.precision)


class GroupConv(nnx.Module):
    """Group convolution ``(B, H, W, C_in, |G|) -> (B, H', W', C_out, |G|)``.

    ``out[p, o, h] = sum_{d, c, k} x[p + d, c, k] * weight[h^-1 d, c, h^-1 k, o] + bias[o]``.
    Equivariant under the regular action (:meth:`Group.transform_regular`) on input and output.
    Exactness as for :class:`LiftingConv`.

    Parameters: ``weight`` ``(K, K, C_in, |G|, C_out)``, ``bias`` ``(C_out,)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, group: Group, stride=1,
                 padding: str = "SAME", use_bias: bool = True, dtype=None, param_dtype=jnp.float32,
                 precision=None, kernel_init=None, bias_init=zeros, rngs: nnx.Rngs):
        self.group = as_group(group)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = check_kernel_size(kernel_size, square=True)
        self.stride = normalize_stride(stride)
        self.padding = normalize_padding(padding)
        check_group_kernel(self.kernel_size, self.padding, "GroupConv")
        self.use_bias = bool(use_bias)
        self.dtype, self.precision = dtype, precision
        k, g = self.kernel_size, self.group.order
        init = _init(kernel_init, (-3, -2), -1, scale=k * k / kernel_dof(self.group, k))
        self.weight = nnx.Param(init(rngs.params(), (k, k, self.in_channels, g, self.out_channels),
                                     param_dtype))
        self.bias = (nnx.Param(bias_init(rngs.params(), (self.out_channels,), param_dtype))
                     if use_bias else None)

    def __call__(self, x):
        check_input(x, 5, "(batch, H, W, C, |G|)", self.in_channels, "GroupConv", self.group)
        warn_if_inexact("GroupConv", x.shape[1:3], self.kernel_size, self.stride, self.padding)
        x, w, b = _cast(self.dtype, x, self.weight[...], None if self.bias is None else self.bias[...])
        return F.group_conv(x, w, self.group, stride=self.stride, padding=self.padding, bias=b,
                            precision=self.precision)

    def kernel(self):
        """The expanded HWIO kernel ``(K, K, C_in*|G|, C_out*|G|)``; input channel ``c*|G| + k``,
        output channel ``o*|G| + h``."""
        return F.expand_group_kernel(self.weight[...], self.group)

    def export(self) -> nnx.Conv:
        """An ``nnx.Conv`` computing the same function on the flattened input
        ``(B, H, W, C_in*|G|)``, with output ``(B, H', W', C_out*|G|)``."""
        return _export(self.kernel(), _expanded_bias(self.bias, self.group), self.stride,
                       self.padding, self.dtype, self.precision)


def _expanded_bias(bias, group: Group):
    return None if bias is None else jnp.repeat(bias[...], group.order)


def _export(kernel, bias, stride, padding, dtype, precision) -> nnx.Conv:
    kh, kw, cin, cout = kernel.shape
    conv = nnx.Conv(cin, cout, (kh, kw), strides=stride, padding=padding, use_bias=bias is not None,
                    dtype=dtype, param_dtype=kernel.dtype, precision=precision, rngs=nnx.Rngs(0))
    conv.kernel[...] = kernel
    if bias is not None:
        conv.bias[...] = bias
    return conv
