"""Scale-equivariant layers (SESN, Sosnovik et al. 2020) as Flax NNX modules.

Scale maps are ``(B, H, W, C, S)`` with the scale axis last; ``S = len(scales)``. Convention
(see :mod:`equilib.functional`): downscaling the input by ``q = scales[j+1] / scales[j]``
moves the response from scale index ``j + 1`` to index ``j`` (towards the small scales),
rescaled in space; upscaling moves it from ``j`` to ``j + 1``. The largest index (and, after
each ``ScaleConv`` with ``scale_size = k``, the ``k - 1`` below it) is a boundary scale where
this does not hold. The measured scale-equivariance errors are in ``benchmarks/RESULTS.md``,
section "Equivariance error".
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib import functional as F
from equilib._src.checks import check_input, check_output_size, check_positive_int, check_scales
from equilib._src.init import Initializer, lecun_normal, zeros
from equilib._src.layers import AxisPool, ChannelConvSpec, ConvLayer, WindowConvSpec, set_fields
from equilib.functional._scale import SCALE_POOL_MODES

__all__ = ["ScaleLiftingConv", "ScaleConv", "ScaleConv1x1", "ScalePool", "ScaleLiftingConvSpec",
           "ScaleConvSpec", "ScaleConv1x1Spec"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ScaleSpec(WindowConvSpec):
    """A convolution with filters on the multi-scale basis of :func:`equilib.functional.scale_basis`."""

    scales: Any
    sigma: float = 1.0
    max_order: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        set_fields(self, scales=check_scales(self.scales))
        _ = self.basis  # validates kernel_size, sigma and max_order against the scales
        set_fields(self, sigma=float(self.sigma), max_order=int(self.max_order))

    @property
    def basis(self) -> np.ndarray:
        """The read-only multi-scale basis ``(K, K, N, S)`` (:func:`equilib.functional.scale_basis`)."""
        return F.scale_basis(self.kernel_size, self.scales, sigma=self.sigma, max_order=self.max_order)

    @property
    def num_scales(self) -> int:
        """``S = len(scales)``."""
        return len(self.scales)

    def _lecun(self, in_axis) -> Initializer:
        # LeCun normal on the fan-in of the *expanded* kernels: with i.i.d. coefficients the output
        # variance at scale i is C_in * Ks * var * sum_b |basis_bi|^2; averaging that over scales makes
        # the mean activation variance that of a plain Conv (it falls as 1/scale^2 across scales, the
        # L1-normalised dilation).
        basis = self.basis
        energy = float(np.mean(np.sum(np.square(basis, dtype=np.float64), axis=(0, 1, 2))))
        return lecun_normal(basis.shape[2] / energy, in_axis=in_axis, out_axis=-1)

    def _check(self, x: jax.Array, rank: int, layout: str, n_scales: int | None) -> None:
        check_input(x, rank, layout, self.in_channels, self.layer, n_scales=n_scales)
        check_output_size(x.shape[1:3], self.kernel_size, self.padding, self.layer)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScaleLiftingConvSpec(_ScaleSpec):
    """Scale lifting convolution: coefficients ``(C_in, N, C_out)``, bias ``(C_out,)``."""

    layer = "ScaleLiftingConv"

    def kernel_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.basis.shape[2], self.out_channels)

    def default_kernel_init(self) -> Initializer:
        return self._lecun((0, 1))

    def check(self, x: jax.Array) -> None:
        self._check(x, 4, "(batch, H, W, C)", None)

    def apply(self, x, kernel, bias, precision):
        return F.scale_lifting_conv(x, kernel, self.basis, stride=self.stride, padding=self.padding,
                                    bias=bias, precision=precision)

    def expand_kernel(self, kernel):
        return jnp.einsum("yxbs,cbo->yxcos", jnp.asarray(self.basis), kernel)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScaleConvSpec(_ScaleSpec):
    """Scale convolution: coefficients ``(C_in, scale_size, N, C_out)``, bias ``(C_out,)``."""

    layer = "ScaleConv"

    scale_size: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        set_fields(self, scale_size=check_positive_int("scale_size", self.scale_size))
        if self.scale_size > len(self.scales):
            raise ValueError(f"`scale_size` must be <= the number of scales (={len(self.scales)}), "
                             f"got {self.scale_size}")
        ratios = [b / a for a, b in zip(self.scales, self.scales[1:])]
        if self.scale_size > 1 and max(ratios) > min(ratios) * (1 + 1e-2):
            raise ValueError(
                f"`scale_size` > 1 mixes neighbouring scales, which is scale-equivariant only "
                f"for geometric `scales` (a constant ratio); got scales={self.scales!r} with "
                f"ratios {tuple(round(r, 4) for r in ratios)}")

    def kernel_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.scale_size, self.basis.shape[2], self.out_channels)

    def default_kernel_init(self) -> Initializer:
        return self._lecun((0, 1, 2))

    def check(self, x: jax.Array) -> None:
        self._check(x, 5, "(batch, H, W, C, S)", len(self.scales))

    def apply(self, x, kernel, bias, precision):
        return F.scale_conv(x, kernel, self.basis, stride=self.stride, padding=self.padding, bias=bias,
                            precision=precision)

    def expand_kernel(self, kernel):
        return jnp.einsum("yxbs,ckbo->yxckos", jnp.asarray(self.basis), kernel)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScaleConv1x1Spec(ChannelConvSpec):
    """1x1 scale convolution: kernel ``(C_in, C_out)``, bias ``(C_out,)``."""

    layer = "ScaleConv1x1"

    def kernel_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.out_channels)

    def default_kernel_init(self) -> Initializer:
        return lecun_normal(in_axis=0, out_axis=-1)

    def check(self, x: jax.Array) -> None:
        # no `scales` to match: it acts on every scale alike
        n_scales = x.shape[-1] if x.ndim else None
        check_input(x, 5, "(batch, H, W, C, S)", self.in_channels, self.layer, n_scales=n_scales)

    def apply(self, x, kernel, bias, precision):
        return F.scale_conv_1x1(x, kernel, bias=bias, precision=precision)


class ScaleLiftingConv(ConvLayer):
    """Scale lifting convolution ``(B, H, W, C_in) -> (B, H', W', C_out, S)`` (SESN's Z2 -> H).

    One filter per (input, output) channel pair, a combination of the ``N`` Hermite-Gaussian
    functions of :func:`equilib.functional.scale_basis`, applied at each of the ``S`` scales
    (envelope width ``sigma * scales[i]`` pixels, L1-normalised dilation). Downscaling the input
    by ``q = scales[j+1] / scales[j]`` moves the response from scale index ``j + 1`` to ``j``;
    the measured error is in ``benchmarks/RESULTS.md`` ("Equivariance error"), asserted with
    margins in ``tests/test_scale.py``.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out`` (each over ``S`` scales).
        kernel_size: odd, at least ``2 * ceil(2.5 * sigma * scales[-1]) + 1`` (the support of
            the basis at the largest scale).
        scales: strictly increasing positive scales, ``S`` of them.
        sigma: the envelope width at scale 1, in pixels.
        max_order: the largest order ``n + m`` of the Hermite-Gaussian functions.
        kernel_init: initialiser of the ``(C_in, N, C_out)`` basis coefficients; None: LeCun
            normal on the fan-in of the expanded kernels, averaged over the scales.

    ``stride``, ``padding``, ``use_bias``, ``dtype``, ``param_dtype``, ``precision``,
    ``bias_init`` and ``rngs`` are those of :class:`Conv`.

    Parameters: ``kernel`` ``(C_in, N, C_out)`` (basis coefficients, ``N = (max_order + 1)
    (max_order + 2) / 2``) and ``bias`` ``(C_out,)`` shared over the scales;
    :meth:`expanded_kernel` is ``(K, K, C_in, C_out, S)``, one HWIO kernel per scale.

    Raises:
        TypeError: ``scales`` is not a sequence of numbers.
        ValueError: a bad argument; on call, a wrong input rank or channel count.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import nn
        >>> lift = nn.ScaleLiftingConv(1, 4, 7, scales=(1.0, 1.2), rngs=nnx.Rngs(0))
        >>> lift(jnp.ones((2, 15, 15, 1))).shape, lift.kernel.shape
        ((2, 15, 15, 4, 2), (1, 10, 4))
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, scales: Any,
                 sigma: float = 1.0, max_order: int = 3, stride: Any = 1, padding: str = "SAME",
                 use_bias: bool = True, dtype: Any = None, param_dtype: Any = jnp.float32,
                 precision: Any = None, kernel_init: Initializer | None = None,
                 bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = ScaleLiftingConvSpec(in_channels=in_channels, out_channels=out_channels,
                                    kernel_size=kernel_size, scales=scales, sigma=sigma, max_order=max_order,
                                    stride=stride, padding=padding, use_bias=use_bias)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class ScaleConv(ConvLayer):
    """Scale convolution ``(B, H, W, C_in, S) -> (B, H', W', C_out, S)`` (SESN's H -> H).

    ``out[..., o, i] = sum_{c, k} corr(x[..., c, i + k], psi_{c, k, o}(scales[i])) + bias[o]``
    for ``k = 0 .. scale_size - 1`` (``corr`` the 2D cross-correlation, ``psi(s)`` the filter
    dilated to scale ``s``): ``scale_size = 1`` (default) convolves each scale with its own
    dilation of the filter; ``scale_size > 1`` also mixes the ``scale_size - 1`` next larger
    scales (zero beyond the largest). Equivariant under "rescale in space by ``1/q`` and shift
    the scale axis by one" (module docstring) at indices ``0 .. S-2``; in a stack of layers each
    ``scale_size = k`` makes ``k - 1`` more top indices boundary scales. Measured errors:
    ``benchmarks/RESULTS.md``, "Equivariance error".

    Args:
        in_channels: input channels ``C_in`` (the input is ``(B, H, W, C_in, S)``).
        scale_size: how many neighbouring scales each output mixes, ``1 .. S``; above 1 it needs
            geometric ``scales`` (a constant ratio within 1%).
        kernel_init: initialiser of the ``(C_in, scale_size, N, C_out)`` coefficients; None:
            as :class:`ScaleLiftingConv`.

    The other arguments are those of :class:`ScaleLiftingConv`.

    Parameters: ``kernel`` ``(C_in, scale_size, N, C_out)``, ``bias`` ``(C_out,)``;
    :meth:`expanded_kernel` is ``(K, K, C_in, scale_size, C_out, S)``.

    Raises:
        TypeError: ``scales`` is not a sequence of numbers.
        ValueError: a bad argument; on call, a wrong input rank, channel count or number of
            scales.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import nn
        >>> conv = nn.ScaleConv(4, 2, 7, scales=(1.0, 1.2), scale_size=2, rngs=nnx.Rngs(0))
        >>> conv(jnp.ones((2, 15, 15, 4, 2))).shape
        (2, 15, 15, 2, 2)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, scales: Any,
                 scale_size: int = 1, sigma: float = 1.0, max_order: int = 3, stride: Any = 1,
                 padding: str = "SAME", use_bias: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None,
                 kernel_init: Initializer | None = None, bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = ScaleConvSpec(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                             scales=scales, scale_size=scale_size, sigma=sigma, max_order=max_order,
                             stride=stride, padding=padding, use_bias=use_bias)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class ScaleConv1x1(ConvLayer):
    """1x1 scale convolution ``(B, H, W, C_in, S) -> (B, H, W, C_out, S)``: one ``(C_in, C_out)``
    matrix shared by every pixel and scale (SESN's ``SESConv_H_H_1x1``). Commutes exactly with
    spatial rescaling and with shifts of the scale axis.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.

    The other arguments are those of :class:`Conv`.

    Parameters: ``kernel`` ``(C_in, C_out)``, ``bias`` ``(C_out,)``.

    Raises:
        ValueError: a bad argument; on call, an input that is not of rank 5 or whose channel
            axis does not match.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import nn
        >>> nn.ScaleConv1x1(4, 2, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 5, 4, 3))).shape
        (2, 5, 5, 2, 3)
    """

    def __init__(self, in_channels: int, out_channels: int, *, use_bias: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None,
                 kernel_init: Initializer | None = None, bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = ScaleConv1x1Spec(in_channels=in_channels, out_channels=out_channels, use_bias=use_bias)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class ScalePool(AxisPool):
    """Pool the scale axis: ``(B, H, W, C, S) -> (B, H, W, C)``, ``mode`` "max" (SESN's
    ``SESMaxProjection``) or "mean".

    After max pooling, a rescaled input gives the rescaled map only where the maximum over
    scales is at an interior scale, never at a boundary one: choose ``scales`` that cover the
    sizes in the data with room on both sides (with random filters on smooth noise the maximum
    is often at the smallest scale: ``benchmarks/RESULTS.md``, "Equivariance error").

    Args:
        mode: "max" or "mean" over the ``S`` scales.

    Raises:
        ValueError: ``mode`` is neither; on call, the input is not a rank-5 scale map.

    Example:
        The maximum over three scales, at each pixel and channel:

        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> x = jnp.broadcast_to(jnp.array([0.5, 2.0, 1.0]), (1, 2, 2, 1, 3))
        >>> nn.ScalePool()(x)[0, :, :, 0]
        Array([[2., 2.],
               [2., 2.]], dtype=float32)
    """

    modes = SCALE_POOL_MODES
    what = "a scale map of rank 5 (batch, H, W, C, S)"
    pool = staticmethod(F.scale_pool)
