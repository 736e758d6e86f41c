"""Scale-equivariant convolutions in the style of SESN (Sosnovik, Szmaja & Smeulders 2020).

Scale maps are ``(B, H, W, C, S)``: one response per channel and per scale ``scales[i]``,
scale axis last (as the group axis of a regular map).

The filters are linear combinations of a fixed multi-scale basis (:func:`scale_basis`):
Hermite-Gaussian functions dilated to each scale ``s`` (envelope width ``w = sigma * s`` px),

    phi_{n,m}(x, y; s) = w^-2 He_n(x/w) He_m(y/w) exp(-rho^2 / 2) cos^2(pi rho / 5) [rho < 2.5],

``rho = sqrt(x^2 + y^2) / w``, ``n + m <= max_order``, ``He`` the probabilists' Hermite
polynomials. The window makes every scale an exact dilation ``phi(d; s) = s^-2 phi(d / s; 1)``
of one function with compact support (radius ``2.5 w``), so one weight vector gives the same
filter at every scale; the ``s^-2`` keeps the L1 norm fixed, which makes the response of a
filter at scale ``s`` to the input downscaled by ``t`` equal to the downscaled response at
scale ``t * s`` (SESN uses the same dilation, with a per-scale square crop instead of the window).

Convention (scale shift): downscaling the input by ``q = scales[j+1] / scales[j]``
(``rescale(x, 1 / q)``) moves the response at scale index ``j + 1`` to index ``j`` (towards
the small scales), rescaled in space:

    f(rescale(x, 1/q))[..., j] ~= rescale(f(x)[..., j + 1], 1/q),     j = 0 .. S - 2,

and upscaling by ``q`` moves index ``j`` to ``j + 1``. Index ``S - 1`` has no neighbour above
(the boundary scale): there the relation does not hold. For geometric ``scales`` (one ratio
``q``) this holds at every ``j`` at once, and a scale map transforms accordingly: rescaled in
space and shifted along the scale axis, with zeros entering at the vacated end (the action of
:func:`equilib.testing.scale_equivariance_errors`); :func:`scale_conv` with ``Ks > 1`` needs it.

The relation is exact in the continuum and approximate on the pixel grid (sampling of the
basis, interpolation of the rescaling); the measured errors are in ``benchmarks/RESULTS.md``
("Equivariance error"). All functions are pure and safe under ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from equilib._src.checks import check_rank, check_scales, normalize_padding, normalize_stride
from equilib._src.sums import add_channel_bias
from equilib._src.typing import Array
from equilib.functional._conv import conv2d

__all__ = [
    "scale_basis",
    "check_scales",
    "scale_lifting_conv",
    "scale_conv",
    "scale_conv_1x1",
    "scale_pool",
    "SCALE_POOL_MODES",
]

SCALE_POOL_MODES = ("max", "mean")

# Support radius of the basis functions, in envelope widths (sigma * scale): they are windowed
# to zero there, and the window at the largest scale must fit the kernel.
SUPPORT = 2.5


def _check_basis_args(kernel_size, scales, sigma, max_order):
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
        raise ValueError(f"`kernel_size` must be a positive odd integer, got {kernel_size!r}")
    kernel_size = int(kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` must be odd (the basis is centred on a pixel), got {kernel_size}")
    scales = check_scales(scales)
    if (isinstance(sigma, bool) or not isinstance(sigma, numbers.Real)
            or not (math.isfinite(sigma) and float(sigma) > 0)):
        raise ValueError(f"`sigma` must be a finite number > 0, got {sigma!r}")
    if isinstance(max_order, bool) or not isinstance(max_order, (int, np.integer)) or max_order < 0:
        raise ValueError(f"`max_order` must be an integer >= 0, got {max_order!r}")
    widest = float(sigma) * scales[-1]
    needed = 2 * math.ceil(SUPPORT * widest - 1e-9) + 1
    if kernel_size < needed:
        raise ValueError(
            f"`kernel_size` (={kernel_size}) is too small for the largest scale: the basis at "
            f"sigma * scales[-1] = {widest:.4g} px has support radius {SUPPORT:g} * {widest:.4g} px, "
            f"expected kernel_size >= {needed} (scales={scales!r}, sigma={sigma!r})")
    return kernel_size, scales, float(sigma), int(max_order)


def scale_basis(kernel_size: int, scales, *, sigma: float = 1.0, max_order: int = 3) -> np.ndarray:
    """The multi-scale Hermite-Gaussian basis, a read-only float32 array ``(K, K, N, S)``.

    ``basis[:, :, b, i]`` is function ``b`` (orders ``(n, m)`` with ``n + m <= max_order``, in
    the order of increasing ``n + m``, then decreasing ``n``; ``N = (max_order + 1)(max_order +
    2) / 2``) at envelope width ``sigma * scales[i]`` pixels (formula in the module docstring),
    sampled at the taps of the ``K x K`` window centred on its middle tap (``x`` right, ``y``
    up). Each function is divided by its norm at ``scales[0]``, so at larger scales its norm
    falls as ``1 / scale`` (the L1-normalised dilation that makes the layers scale-equivariant).
    Built once per configuration (cached).

    Args:
        kernel_size: the odd kernel size ``K``; it must hold the support at the largest scale:
            ``K >= 2 * ceil(2.5 * sigma * scales[-1]) + 1``.
        scales: the ``S`` scales, positive and strictly increasing, e.g. ``(1.0, 2**0.5, 2.0)``.
        sigma: the envelope width at scale 1, in pixels (> 0).
        max_order: the largest total order ``n + m`` of the Hermite polynomials (>= 0).

    Returns:
        The basis ``(K, K, N, S)``, a read-only float32 numpy array,
        ``N = (max_order + 1)(max_order + 2) / 2``.

    Raises:
        ValueError: an even, non-positive or too small ``kernel_size``, non-increasing or
            non-positive ``scales``, ``sigma <= 0`` or a negative ``max_order`` (the message
            names the argument).
        TypeError: ``scales`` is not a sequence of real numbers.

    Example:
        >>> from equilib import functional as F
        >>> basis = F.scale_basis(7, (1.0, 1.2), max_order=2)
        >>> basis.shape, basis.dtype, basis.flags.writeable
        ((7, 7, 6, 2), dtype('float32'), False)
    """
    return _basis(*_check_basis_args(kernel_size, scales, sigma, max_order))


@functools.cache
def _basis(kernel_size: int, scales: tuple[float, ...], sigma: float, max_order: int) -> np.ndarray:
    k = kernel_size
    c = (k - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    x, y = cols - c, c - rows
    orders = [(n, t - n) for t in range(max_order + 1) for n in range(t, -1, -1)]
    out = np.empty((k, k, len(orders), len(scales)))
    for i, s in enumerate(scales):
        w = sigma * s
        rho = np.hypot(x, y) / w
        # The window dilates with the scale, so every scale is an exact dilation of one compactly
        # supported function (a truncation by the K x K window would not dilate); spanning the
        # whole support keeps it smooth enough at small scales (measured: lower error than a
        # hard or a short-tapered cut-off).
        window = np.where(rho < SUPPORT, np.cos(0.5 * np.pi * rho / SUPPORT) ** 2, 0.0)
        env = np.exp(-0.5 * rho**2) * window / w**2
        for b, (n, m) in enumerate(orders):
            hx = np.polynomial.hermite_e.hermeval(x / w, [0] * n + [1])
            hy = np.polynomial.hermite_e.hermeval(y / w, [0] * m + [1])
            out[:, :, b, i] = env * hx * hy
    out /= np.linalg.norm(out[:, :, :, :1], axis=(0, 1), keepdims=True)
    out = out.astype(np.float32)
    out.setflags(write=False)
    return out


def _check_basis_array(basis):
    if getattr(basis, "ndim", None) != 4:
        raise ValueError(f"`basis` must have rank 4 (K, K, N, S) as returned by scale_basis, "
                         f"got shape {tuple(getattr(basis, 'shape', ()))}")


def _expand(weight, basis):
    """Per-scale HWIO kernels ``(S, K, K, C, O)`` from ``weight (C, N, O)`` (or ``(C*Ks, N, O)``)."""
    return jnp.einsum("yxbs,cbo->syxco", jnp.asarray(basis, weight.dtype), weight)


def scale_lifting_conv(x: Array, weight: Array, basis: np.ndarray | Array, *, stride=1, padding="SAME",
                       bias: Array | None = None, precision=None) -> Array:
    """Scale lifting convolution ``(B, H, W, C) -> (B, H', W', O, S)``.

    ``out[p, o, i] = sum_{d, c, b} x[p + d, c] * weight[c, b, o] * basis[d, b, i] (+ bias[o])``:
    the same filter (coefficients ``weight`` on the basis) at every scale of ``basis``.
    Downscaling ``x`` by ``scales[j+1] / scales[j]`` moves the response from scale index
    ``j + 1`` to ``j`` (module docstring), approximately on the pixel grid.

    Args:
        x: the input ``(B, H, W, C)``.
        weight: the coefficients ``(C, N, O)`` of each filter on the basis, of ``x``'s dtype.
        basis: ``(K, K, N, S)``, from :func:`scale_basis`.
        stride: as :func:`conv2d`.
        padding: as :func:`conv2d`.
        bias: ``(O,)``, shared over the scales, or None.
        precision: as :func:`conv2d`.

    Returns:
        The scale map ``(B, H', W', O, S)`` (``H'``, ``W'`` as :func:`conv2d`).

    Raises:
        ValueError: ``x`` not of rank 4, ``basis`` not of rank 4, ``weight`` not ``(C, N, O)``
            for this input and basis, ``bias`` not ``(O,)``, a bad ``stride`` or ``padding``.
        TypeError: ``x`` and ``weight`` of different dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import functional as F
        >>> basis = F.scale_basis(7, (1.0, 1.2), max_order=2)  # N = 6 functions, S = 2 scales
        >>> import numpy as np
        >>> weight = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6, 4)), jnp.float32)
        >>> F.scale_lifting_conv(jnp.ones((2, 15, 15, 3)), weight, basis).shape
        (2, 15, 15, 4, 2)
    """
    check_rank(x, 4, "(batch, H, W, C)")
    _check_basis_array(basis)
    _check_coefficients(weight, "C_in, N, C_out", basis, x.shape[-1])
    _check_bias(bias, weight.shape[-1])
    return _lift_core(x, weight, jnp.asarray(basis), bias, stride=normalize_stride(stride),
                      padding=normalize_padding(padding), precision=precision)


def _check_coefficients(weight, layout: str, basis, in_channels: int):
    """``weight`` of the axes ``layout`` (input channels first, basis coefficients second to last)
    against ``basis`` ``(K, K, N, S)`` and the input's channel count."""
    rank = len(layout.split(", "))
    if weight.ndim != rank:
        raise ValueError(f"`weight` must have rank {rank} ({layout}), got shape {tuple(weight.shape)}")
    axis = rank - 2
    if weight.shape[axis] != basis.shape[2]:
        raise ValueError(f"`weight` has {weight.shape[axis]} basis coefficients (axis {axis}), but `basis` "
                         f"has N = {basis.shape[2]} functions")
    if weight.shape[0] != in_channels:
        raise ValueError(f"the weight's input channels (={weight.shape[0]}) do not match the input's "
                         f"channel axis (={in_channels})")


def _check_bias(bias, out_channels: int):
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"`bias` must have shape (C_out,) = ({out_channels},), got {tuple(bias.shape)}")


# The cores are jitted so that an eager call compiles one program instead of one per primitive
# (several times faster on CPU); under an outer jit they are inlined.
@functools.partial(jax.jit, static_argnames=("stride", "padding", "precision"))
def _lift_core(x, weight, basis, bias, *, stride, padding, precision):
    k, n_scales, o = basis.shape[0], basis.shape[-1], weight.shape[-1]
    kern = _expand(weight, basis)  # (S, K, K, C, O)
    # one plain convolution with output channel o*S + i
    kern = jnp.moveaxis(kern, 0, -1).reshape(k, k, x.shape[-1], o * n_scales)
    y = conv2d(x, kern, stride=stride, padding=padding, precision=precision)
    y = y.reshape(y.shape[:-1] + (o, n_scales))
    if bias is not None:
        y = add_channel_bias(y, bias, shared=1)  # shared over the scale axis
    return y


def scale_conv(x: Array, weight: Array, basis: np.ndarray | Array, *, stride=1, padding="SAME",
               bias: Array | None = None, precision=None) -> Array:
    """Scale convolution ``(B, H, W, C, S) -> (B, H', W', O, S)``, with interaction between
    ``Ks = weight.shape[1]`` neighbouring scales (``Ks = 1``: none).

    ``out[p, o, i] = sum_{d, c, k, b} x[p + d, c, i + k] * weight[c, k, b, o] * basis[d, b, i]
    (+ bias[o])``, ``k = 0 .. Ks-1``, with ``x[..., i + k] = 0`` beyond the largest scale
    (zero padding of the scale axis at its top, as SESN).

    Equivariance: if ``x`` is rescaled in space by ``1 / q`` and shifted along the scale axis
    (``x'[..., i] = rescale(x[..., i + 1])``, zeros entering at index ``S - 1``), the output is
    transformed the same way, at every index ``j <= S - 2`` (for ``Ks > 1`` this needs a constant
    ratio ``q`` between neighbouring scales).

    Args:
        x: the scale map ``(B, H, W, C, S)``.
        weight: the coefficients ``(C, Ks, N, O)`` of each filter on the basis, per scale offset
            ``k < Ks <= S``; of ``x``'s dtype.
        basis, stride, padding, bias, precision: as :func:`scale_lifting_conv`.

    Returns:
        The scale map ``(B, H', W', O, S)``, as :func:`scale_lifting_conv`'s.

    Raises:
        ValueError: ``x`` not of rank 5 or its scale axis not of size ``S``, ``basis`` not of
            rank 4, ``weight`` not ``(C, Ks, N, O)`` with ``Ks <= S``, ``bias`` not ``(O,)``,
            a bad ``stride`` or ``padding``.
        TypeError: ``x`` and ``weight`` of different dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import functional as F
        >>> basis = F.scale_basis(7, (1.0, 1.2), max_order=2)  # N = 6 functions, S = 2 scales
        >>> import numpy as np
        >>> weight = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2, 6, 5)), jnp.float32)  # Ks = 2
        >>> F.scale_conv(jnp.ones((2, 15, 15, 4, 2)), weight, basis).shape
        (2, 15, 15, 5, 2)
    """
    check_rank(x, 5, "(batch, H, W, C, S)")
    _check_basis_array(basis)
    _check_coefficients(weight, "C_in, scale_size, N, C_out", basis, x.shape[-2])
    n_scales = basis.shape[-1]
    if x.shape[-1] != n_scales:
        raise ValueError(f"the input's scale axis (last) has size {x.shape[-1]}, expected "
                         f"{n_scales} (the number of scales of `basis`)")
    ks = weight.shape[1]
    if ks > n_scales:
        raise ValueError(f"`scale_size` (weight axis 1, ={ks}) must be <= the number of scales "
                         f"(={n_scales})")
    _check_bias(bias, weight.shape[-1])
    return _scale_conv_core(x, weight, jnp.asarray(basis), bias, stride=normalize_stride(stride),
                            padding=normalize_padding(padding), precision=precision)


@functools.partial(jax.jit, static_argnames=("stride", "padding", "precision"))
def _scale_conv_core(x, weight, basis, bias, *, stride, padding, precision):
    c, ks, n_basis, o = weight.shape
    n_scales = basis.shape[-1]
    # windows over the scale axis: win[..., c, k, i] = x[..., c, i + k], zero beyond the top
    xp = jnp.pad(x, [(0, 0)] * 4 + [(0, ks - 1)])
    win = jnp.stack([xp[..., k:k + n_scales] for k in range(ks)], axis=-2)  # (B, H, W, C, Ks, S)
    win = win.reshape(win.shape[:3] + (c * ks, n_scales))
    kern = _expand(weight.reshape(c * ks, n_basis, o), basis)  # (S, K, K, C*Ks, O)

    # one plain convolution per scale (a few): vmapping conv2d over the scale axis lowers to a
    # grouped convolution, which XLA:CPU ran ~15x slower in a SESN train step
    y = jnp.stack([conv2d(win[..., i], kern[i], stride=stride, padding=padding, precision=precision)
                   for i in range(n_scales)], axis=-1)  # (B, H', W', O, S)
    if bias is not None:
        y = add_channel_bias(y, bias, shared=1)  # shared over the scale axis
    return y


def scale_conv_1x1(x: Array, weight: Array, *, bias: Array | None = None, precision=None) -> Array:
    """1x1 scale convolution ``(B, H, W, C, S) -> (B, H, W, O, S)``: one matrix at every pixel and scale.

    ``out[..., o, i] = sum_c x[..., c, i] * weight[c, o] (+ bias[o])``: no scale interaction,
    so it commutes exactly with any spatial rescaling and any shift of the scale axis.

    Args:
        x: a scale map ``(B, H, W, C, S)`` (any leading axes ``(..., C, S)``).
        weight: ``(C, O)``.
        bias: ``(O,)``, shared over the scales, or None.
        precision: passed to the contraction (``jax.lax.Precision``).

    Returns:
        ``(B, H, W, O, S)`` (``(..., O, S)``).

    Raises:
        ValueError: ``x`` of rank < 2, ``weight`` not ``(C, O)`` for ``x``'s channels, or
            ``bias`` not ``(O,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> F.scale_conv_1x1(jnp.ones((2, 5, 5, 4, 3)), jnp.ones((4, 8))).shape
        (2, 5, 5, 8, 3)
    """
    if x.ndim < 2:
        raise ValueError(f"`x` must have a channel and a scale axis (..., C, S), got shape {tuple(x.shape)}")
    if weight.ndim != 2 or weight.shape[0] != x.shape[-2]:
        raise ValueError(f"`weight` must have shape (C_in={x.shape[-2]}, C_out), got {tuple(weight.shape)}")
    _check_bias(bias, weight.shape[-1])
    y = jnp.einsum("...cs,co->...os", x, weight, precision=precision)
    if bias is not None:
        y = add_channel_bias(y, bias, shared=1)  # shared over the scale axis
    return y


def scale_pool(x: Array, mode: str = "max") -> Array:
    """Pool the scale axis: ``(..., C, S) -> (..., C)`` (``mode`` "max", as SESN, or "mean").

    Max pooling turns the scale shift into invariance (as long as the maximum is not at a
    boundary scale): the pooled map of a rescaled input is the rescaled pooled map.

    Args:
        x: a scale map ``(B, H, W, C, S)`` (any leading axes ``(..., C, S)``).
        mode: "max" or "mean".

    Returns:
        ``(B, H, W, C)`` (``(..., C)``), in ``x``'s dtype.

    Raises:
        ValueError: ``mode`` is not "max" or "mean", or ``x`` has rank < 2.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> x = jnp.array([[0.5, 2.0, 1.5]])  # one channel, three scales
        >>> F.scale_pool(x), F.scale_pool(x, "mean")
        (Array([2.], dtype=float32), Array([1.3333334], dtype=float32))
    """
    if mode not in SCALE_POOL_MODES:
        raise ValueError(f"`mode` must be one of {SCALE_POOL_MODES}, got {mode!r}")
    if x.ndim < 2:
        raise ValueError(f"`x` must have a channel and a scale axis (..., C, S), got shape {tuple(x.shape)}")
    return jnp.max(x, axis=-1) if mode == "max" else jnp.mean(x, axis=-1)
