"""Scale-equivariant layers (SESN, Sosnovik et al. 2020) as Flax NNX modules.

Scale maps are ``(B, H, W, C, S)`` with the scale axis last; ``S = len(scales)``. Convention
(see :mod:`equilib.functional._scale`): downscaling the input by ``q = scales[j+1] / scales[j]``
moves the response from scale index ``j + 1`` to index ``j`` (towards the small scales),
rescaled in space; upscaling moves it from ``j`` to ``j + 1``. The largest index (and, after
each ``ScaleConv`` with ``scale_size = k``, the ``k - 1`` below it) is a boundary scale where
this does not hold.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib import functional as F
from equilib.functional._conv import normalize_padding, normalize_stride
from equilib.functional._scale import SCALE_POOL_MODES, check_scales
from equilib.nn._conv import _cast, check_positive_int
from equilib.nn._init import lecun_normal, zeros

__all__ = ["ScaleLiftingConv", "ScaleConv", "ScaleConv1x1", "ScalePool"]


def _check_x(x, rank: int, layout: str, channels: int, layer: str, n_scales: int | None = None):
    if x.ndim != rank:
        raise ValueError(f"{layer} expects an input of rank {rank} {layout}, got shape {tuple(x.shape)}")
    caxis = -2 if n_scales is not None else -1
    if x.shape[caxis] != channels:
        raise ValueError(f"`in_channels` (={channels}) does not match the input's channel axis "
                         f"(={x.shape[caxis]}, shape {tuple(x.shape)})")
    if n_scales is not None and x.shape[-1] != n_scales:
        raise ValueError(f"`scales` has {n_scales} scales, but the input's scale axis (last) has size "
                         f"{x.shape[-1]} (shape {tuple(x.shape)})")


def _basis_init(kernel_init, basis: np.ndarray, in_axis):
    if kernel_init is not None:
        return kernel_init
    # LeCun normal on the fan-in of the *expanded* kernels: with i.i.d. coefficients the output
    # variance at scale i is C_in * Ks * var * sum_b |basis_bi|^2; averaging that over scales makes
    # the mean activation variance that of a plain Conv (it falls as 1/scale^2 across scales, the
    # L1-normalised dilation).
    energy = float(np.mean(np.sum(np.square(basis, dtype=np.float64), axis=(0, 1, 2))))
    return lecun_normal(basis.shape[2] / energy, in_axis=in_axis, out_axis=-1)


class _ScaleBase(nnx.Module):
    def _setup(self, in_channels, out_channels, kernel_size, scales, sigma, max_order, stride, padding,
               use_bias, dtype, precision):
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.scales = check_scales(scales)
        basis = F.scale_basis(kernel_size, self.scales, sigma=sigma, max_order=max_order)
        self.kernel_size, self.sigma, self.max_order = int(kernel_size), float(sigma), int(max_order)
        self.stride = normalize_stride(stride)
        self.padding = normalize_padding(padding)
        self.use_bias = bool(use_bias)
        self.dtype, self.precision = dtype, precision
        return basis

    @property
    def basis(self) -> np.ndarray:
        """The read-only multi-scale basis ``(K, K, N, S)`` (:func:`equilib.functional.scale_basis`)."""
        return F.scale_basis(self.kernel_size, self.scales, sigma=self.sigma, max_order=self.max_order)

    @property
    def num_scales(self) -> int:
        return len(self.scales)


class ScaleLiftingConv(_ScaleBase):
    """Scale lifting convolution ``(B, H, W, C_in) -> (B, H', W', C_out, S)`` (SESN's Z2 -> H).

    One filter per (input, output) channel pair, a combination of the ``N`` Hermite-Gaussian
    functions of :func:`equilib.functional.scale_basis`, applied at each of the ``S`` scales
    (envelope width ``sigma * scales[i]`` pixels, L1-normalised dilation). Downscaling the input
    by ``q = scales[j+1] / scales[j]`` moves the response from scale index ``j + 1`` to ``j``.

    Measured scale-equivariance error (:func:`equilib.testing.scale_equivariance_errors`; scales
    ``(1, sqrt(2), 2)``, ``sigma = 1``, ``max_order = 3``, kernel 11, ``Rngs(0)``; input
    ``smooth_random(key(0), (2, 41, 41, 2), sigma=2)``; bicubic rescaling by one step; central
    disk of 0.6 (/ sqrt(2) when downscaling) of the radius; scale indices away from the
    boundary): **0.0074** downscaling, 0.0044 upscaling. A plain ``Conv`` treated the same way
    (its output copied to every scale, the negative control): 0.17 (3x3), 0.30 (5x5),
    0.51 (11x11) downscaling. Asserted, with margins, in ``tests/test_scale.py``.

    Parameters: ``weight`` ``(C_in, N, C_out)`` (basis coefficients, ``N = (max_order + 1)
    (max_order + 2) / 2``) and ``bias`` ``(C_out,)`` shared over the scales.

    ``kernel_size`` must be odd and at least ``2 * ceil(2.5 * sigma * scales[-1]) + 1`` (the
    support of the basis at the largest scale); ``scales`` strictly increasing and positive.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, scales,
                 sigma: float = 1.0, max_order: int = 3, stride=1, padding: str = "SAME",
                 use_bias: bool = True, dtype=None, param_dtype=jnp.float32, precision=None,
                 kernel_init=None, bias_init=zeros, rngs: nnx.Rngs):
        basis = self._setup(in_channels, out_channels, kernel_size, scales, sigma, max_order, stride,
                            padding, use_bias, dtype, precision)
        init = _basis_init(kernel_init, basis, (0, 1))
        shape = (self.in_channels, basis.shape[2], self.out_channels)
        self.weight = nnx.Param(init(rngs.params(), shape, param_dtype))
        self.bias = (nnx.Param(bias_init(rngs.params(), (self.out_channels,), param_dtype))
                     if use_bias else None)

    def __call__(self, x):
        _check_x(x, 4, "(batch, H, W, C)", self.in_channels, "ScaleLiftingConv")
        x, w, b = _cast(self.dtype, x, self.weight[...], None if self.bias is None else self.bias[...])
        return F.scale_lifting_conv(x, w, self.basis, stride=self.stride, padding=self.padding, bias=b,
                                    precision=self.precision)

    def kernel(self):
        """The expanded kernels ``(K, K, C_in, C_out, S)``, one HWIO kernel per scale."""
        return jnp.einsum("yxbs,cbo->yxcos", jnp.asarray(self.basis), self.weight[...])


class ScaleConv(_ScaleBase):
    """Scale convolution ``(B, H, W, C_in, S) -> (B, H', W', C_out, S)`` (SESN's H -> H).

    ``out[..., o, i] = sum_{c, k} corr(x[..., c, i + k], psi_{c, k, o}(scales[i])) + bias[o]``
    for ``k = 0 .. scale_size - 1`` (``corr`` the 2D cross-correlation, ``psi(s)`` the filter
    dilated to scale ``s``): ``scale_size = 1`` (default) convolves each scale with its own
    dilation of the filter; ``scale_size > 1`` also mixes the ``scale_size - 1`` next larger
    scales (zero beyond the largest; needs geometric ``scales``, a constant ratio within 1%). Equivariant under the action
    "rescale in space by ``1/q`` and shift the scale axis by one" (module docstring) at indices
    ``0 .. S-2``; in a stack of layers each ``scale_size = k`` makes ``k - 1`` more top indices
    boundary scales.

    Measured scale-equivariance error (set-up of :class:`ScaleLiftingConv`, ``Rngs(1)``; input
    the scale map ``smooth_random(key(1), (2, 41, 41, 2, 3), sigma=2)``, rescaled and shifted
    with zero fill): **0.0074** (``scale_size = 1``) and **0.0089** (``scale_size = 2``)
    downscaling, indices 0..S-2; upscaling 0.0045 and, at index 1, 0.0051. A plain ``Conv``
    applied to every scale (the negative control): 0.20 (3x3), 0.37 (5x5), 0.60 (11x11).
    Boundary scales, measured: upscaling with ``scale_size = 2`` at index ``S - 1``: 0.69;
    ``ScaleLiftingConv -> ScaleConv(scale_size=2)``: 0.010 at index 0, 1.28 at index ``S - 2``.

    Parameters: ``weight`` ``(C_in, scale_size, N, C_out)``, ``bias`` ``(C_out,)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, scales,
                 scale_size: int = 1, sigma: float = 1.0, max_order: int = 3, stride=1,
                 padding: str = "SAME", use_bias: bool = True, dtype=None, param_dtype=jnp.float32,
                 precision=None, kernel_init=None, bias_init=zeros, rngs: nnx.Rngs):
        basis = self._setup(in_channels, out_channels, kernel_size, scales, sigma, max_order, stride,
                            padding, use_bias, dtype, precision)
        self.scale_size = check_positive_int("scale_size", scale_size)
        if self.scale_size > len(self.scales):
            raise ValueError(f"`scale_size` must be <= the number of scales (={len(self.scales)}), "
                             f"got {self.scale_size}")
        if self.scale_size > 1:
            ratios = [b / a for a, b in zip(self.scales, self.scales[1:])]
            if max(ratios) > min(ratios) * (1 + 1e-2):
                raise ValueError(
                    f"`scale_size` > 1 mixes neighbouring scales, which is scale-equivariant only "
                    f"for geometric `scales` (a constant ratio); got scales={self.scales!r} with "
                    f"ratios {tuple(round(r, 4) for r in ratios)}")
        init = _basis_init(kernel_init, basis, (0, 1, 2))
        shape = (self.in_channels, self.scale_size, basis.shape[2], self.out_channels)
        self.weight = nnx.Param(init(rngs.params(), shape, param_dtype))
        self.bias = (nnx.Param(bias_init(rngs.params(), (self.out_channels,), param_dtype))
                     if use_bias else None)

    def __call__(self, x):
        _check_x(x, 5, "(batch, H, W, C, S)", self.in_channels, "ScaleConv", len(self.scales))
        x, w, b = _cast(self.dtype, x, self.weight[...], None if self.bias is None else self.bias[...])
        return F.scale_conv(x, w, self.basis, stride=self.stride, padding=self.padding, bias=b,
                            precision=self.precision)

    def kernel(self):
        """The expanded kernels ``(K, K, C_in, scale_size, C_out, S)``."""
        return jnp.einsum("yxbs,ckbo->yxckos", jnp.asarray(self.basis), self.weight[...])


class ScaleConv1x1(nnx.Module):
    """1x1 scale convolution ``(B, H, W, C_in, S) -> (B, H, W, C_out, S)``: one ``(C_in, C_out)``
    matrix shared by every pixel and scale (SESN's ``SESConv_H_H_1x1``). Commutes exactly with
    spatial rescaling and with shifts of the scale axis.

    Parameters: ``weight`` ``(C_in, C_out)``, ``bias`` ``(C_out,)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, use_bias: bool = True, dtype=None,
                 param_dtype=jnp.float32, precision=None, kernel_init=None, bias_init=zeros,
                 rngs: nnx.Rngs):
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.use_bias = bool(use_bias)
        self.dtype, self.precision = dtype, precision
        init = kernel_init if kernel_init is not None else lecun_normal(in_axis=0, out_axis=-1)
        self.weight = nnx.Param(init(rngs.params(), (self.in_channels, self.out_channels), param_dtype))
        self.bias = (nnx.Param(bias_init(rngs.params(), (self.out_channels,), param_dtype))
                     if use_bias else None)

    def __call__(self, x):
        # no `scales` to match: it acts on every scale alike
        n_scales = x.shape[-1] if x.ndim else None
        _check_x(x, 5, "(batch, H, W, C, S)", self.in_channels, "ScaleConv1x1", n_scales)
        x, w, b = _cast(self.dtype, x, self.weight[...], None if self.bias is None else self.bias[...])
        return F.scale_conv_1x1(x, w, bias=b, precision=self.precision)


class ScalePool(nnx.Module):
    """Pool the scale axis: ``(B, H, W, C, S) -> (B, H, W, C)``, ``mode`` "max" (SESN's
    ``SESMaxProjection``) or "mean".

    After max pooling, a rescaled input gives the rescaled map only where the maximum over
    scales is at an interior scale, never at a boundary one: choose ``scales`` that cover the
    sizes in the data with room on both sides. (With random filters on smooth noise the
    maximum is often at the smallest scale; measured after the ``ScaleLiftingConv`` of its
    docstring: 0.20, against its 0.0074 before pooling.)
    """

    def __init__(self, mode: str = "max"):
        if mode not in SCALE_POOL_MODES:
            raise ValueError(f"`mode` must be one of {SCALE_POOL_MODES}, got {mode!r}")
        self.mode = mode

    def __call__(self, x):
        if x.ndim != 5:
            raise ValueError(f"ScalePool expects a scale map of rank 5 (batch, H, W, C, S), got shape "
                             f"{tuple(x.shape)}")
        return F.scale_pool(x, self.mode)
