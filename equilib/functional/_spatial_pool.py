"""Spatial pooling as pure functions: max / average pooling, BlurPool, MaxBlurPool, adaptive
polyphase sampling (APS) and global pooling.

Every function works on a plain map ``(B, H, W, C)`` and on a regular group map
``(B, H, W, C, |G|)``: the spatial axes are 1 and 2, and the trailing axes (channels, group)
are pooled independently and left in place unless stated. :func:`max_pool`, :func:`avg_pool`,
:func:`blur_pool` and :func:`global_pool` also pool volumes ``(B, D, H, W, C[, |G|])`` with
``spatial_dims=3`` (cubic windows, the same pads along each axis). The functions are pure and
safe under ``jit``, ``vmap`` and ``grad``.

Sampling grid
-------------
A window / filter of size ``K`` with stride ``s`` produces, along an axis of length ``n``, the
outputs of ``"SAME"`` padding as everywhere in equilib (``padding_pads``: ``ceil(n / s)``
outputs, pads split as XLA does, the extra pixel at the end); ``"VALID"`` uses no pads. For
``stride=1`` and the blur filters this is the padding of Zhang's BlurPool (``(K-1)//2`` before,
``K//2`` after); for stride 2 on an even size with an odd filter the samples sit on the odd
pixels (1, 3, ...) where Zhang's sit on the even ones: both are asymmetric about the centre.

Group action (see :mod:`equilib.groups`): max/avg/blur pooling act on every channel and group
element alike, so they commute with rot90/flips (:meth:`Group.transform_regular` on regular maps)
exactly when the samples sit symmetrically about the centre of the map
(:func:`~equilib.functional.is_symmetric_sampling`, e.g. a 2x2 window with stride 2 on an even
size, or a 3-tap blur with stride 2 on an odd size); the NNX modules warn otherwise
(:class:`equilib.ExactnessWarning`). APS instead adapts its sampling phase to the input, see
:func:`aps_pool`.

APS ties
--------
:func:`aps_pool` ranks the four polyphase components by lexicographic keys that are all
invariant under circular shifts and rot90/flips of a component: the criterion, then the other
two norms (of ``l2, l1, linf``), then, only if these leave a tie, structural keys: the circular
autocorrelations at the lags of each D4-orbit ``(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)``, sorted
within the orbit, and the sums of triple products over 3-pixel lines and corners, sorted within
their orbits. So exact ties of the norms (common on integer or binary inputs) are broken
consistently with shifts and the group action (on 1000 random 8x8 binary maps whose four
components have equal norms, every remaining full tie was between equivalent components). If all
keys tie, the first component in the order (0, 0), (0, 1), (1, 0), (1, 1) is taken. No rule can
be consistent then: shifts and D4 permute the four components transitively, and for an input
with ``g.x == x`` whose components ``g`` permutes (e.g. a rot90-symmetric map) ``aps(g.x) ==
g.aps(x)`` would need the chosen component to be ``g``-symmetric itself. Components that tie in
every key are usually shifts/rotations of each other; a following shift- and group-invariant
pooling maps them to the same value, so invariant networks stay exact there. Components with
equal keys that are not equivalent (possible in principle: the keys are not a complete
invariant) break exactness. The keys are float32 sums: components whose norms differ only by
rounding (relative ~1e-7) may be ranked differently for a shifted or rotated copy, whose sums
run in another order; on float feature maps this has not been observed.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from equilib._src.checks import (
    APS_CRITERIA,
    BLUR_PADDINGS,
    GLOBAL_POOL_MODES,
    check_aps_stride,
    check_blur_padding,
    check_criterion,
    check_filter_size,
    check_global_mode,
    check_group_mode,
    check_map,
    check_spatial_dims,
    check_window,
    normalize_padding,
    normalize_stride,
)
from equilib._src.typing import Array
from equilib.functional._conv import padding_pads
from equilib.functional._pool import group_pool

__all__ = [
    "APS_CRITERIA",
    "BLUR_PADDINGS",
    "GLOBAL_POOL_MODES",
    "aps_pool",
    "aps_unpool",
    "avg_pool",
    "binomial_filter",
    "blur_pool",
    "global_pool",
    "max_blur_pool",
    "max_pool",
]

# --- the binomial filter -----------------------------------------------------------------------
def binomial_filter(filter_size: int, *, ndim: int = 2) -> np.ndarray:
    """The normalised binomial filter of Zhang (2019), the blur of :func:`blur_pool`.

    Row ``filter_size - 1`` of Pascal's triangle divided by its sum (``[1]``, ``[1, 1]/2``,
    ``[1, 2, 1]/4``, ... ``[1, 6, 15, 20, 15, 6, 1]/64``); in 2D its outer product with itself,
    which sums to 1 and is invariant under rot90 and flips. Every entry is a dyadic fraction,
    exact in floating point.

    Args:
        filter_size: the number of taps ``K``, an int in 1..7.
        ndim: 2 for the ``(K, K)`` filter, 1 for the taps ``(K,)``.

    Returns:
        A float32 numpy array ``(K, K)`` (``ndim=2``) or ``(K,)`` (``ndim=1``).

    Raises:
        TypeError: ``filter_size`` is not an int.
        ValueError: ``filter_size`` is not in 1..7, or ``ndim`` is not 1 or 2.

    Example:
        >>> from equilib import functional as F
        >>> F.binomial_filter(3, ndim=1)
        array([0.25, 0.5 , 0.25], dtype=float32)
        >>> F.binomial_filter(3)
        array([[0.0625, 0.125 , 0.0625],
               [0.125 , 0.25  , 0.125 ],
               [0.0625, 0.125 , 0.0625]], dtype=float32)
    """
    k = check_filter_size(filter_size)
    if ndim not in (1, 2):
        raise ValueError(f"`ndim` must be 1 or 2, got {ndim!r}")
    taps = np.array([math.comb(k - 1, i) for i in range(k)], dtype=np.float64) / 2.0 ** (k - 1)
    out = taps if ndim == 1 else np.outer(taps, taps)
    return out.astype(np.float32)


# --- windowed reductions -----------------------------------------------------------------------
_AXIS_NAMES = {2: "HW", 3: "DHW"}  # the spatial axes 1.. of a map / a volume, for messages


def _spatial_pads(x, window: int, stride: int, padding: str, where: str, d: int = 2):
    sizes = x.shape[1:1 + d]
    pads = [padding_pads(n, window, stride, padding) for n in sizes]
    for axis, n, (lo, hi) in zip(_AXIS_NAMES[d], sizes, pads):
        if n + lo + hi < window:
            raise ValueError(f"{where}: `window` (={window}) is larger than the input ({axis}={n}) "
                             f"with padding={padding!r}; expected window <= {n}")
    return pads


def _pad_spatial(x, pads, mode: str, **kwargs):
    # one (lo, hi) pair per spatial axis: len(pads) is the number of spatial axes
    widths = [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)] * (x.ndim - 1 - len(pads))
    if all(p == (0, 0) for p in widths):
        return x
    return jnp.pad(x, widths, mode=mode, **kwargs)


def _reduce_window(x, init, op, window: int, stride: int, pads):
    d, rest = len(pads), x.ndim - 1 - len(pads)  # pads: one pair per spatial axis
    dims = (1,) + (window,) * d + (1,) * rest
    strides = (1,) + (stride,) * d + (1,) * rest
    padding = ((0, 0),) + tuple(tuple(p) for p in pads) + ((0, 0),) * rest
    return lax.reduce_window(x, init, op, dims, strides, padding)


def max_pool(x: Array, window=2, stride=None, padding: str = "VALID", *, spatial_dims: int = 2) -> Array:
    """Max pooling over ``window x window`` spatial windows, ``(B, H, W, ...) -> (B, H', W', ...)``;
    with ``spatial_dims=3`` over ``K x K x K`` windows of a volume, ``(B, D, H, W, ...) -> (B, D', H', W', ...)``.

    ``stride`` defaults to ``window``. ``padding``: ``"VALID"`` (no pads, ``floor((H - K)/s) + 1``
    outputs), ``"SAME"`` (pads that never win the max, ``ceil(H / s)`` outputs) or ``"CIRCULAR"``
    (periodic pads of ``"SAME"``: with stride 1 this commutes exactly with ``jnp.roll``; with
    stride ``s`` it commutes with shifts by multiples of ``s`` when ``s`` divides ``H`` and ``W``).
    Channels and the group axis of a regular map are pooled independently. Non-overlapping
    windows that need no padding (``stride == window``) are pooled as a reshape and a reduction,
    whose gradient is elementwise: where several entries of a window tie for the max, they share
    its gradient equally (``reduce_window``'s gradient gives it to one of them).

    Args:
        x: a plain map ``(B, H, W, C)`` or a regular map ``(B, H, W, C, |G|)``, float or integer;
            with ``spatial_dims=3`` a volume ``(B, D, H, W, C)`` or ``(B, D, H, W, C, |G|)``.
        window: the window size ``K`` (along every spatial axis), an int or a pair of equal ints.
        stride: an int (or a pair of equal ints); None: ``window``.
        padding: "VALID", "SAME" or "CIRCULAR", case-insensitive (the same pads on every axis).
        spatial_dims: 2 (maps) or 3 (volumes, e.g. of ``Octahedral()``; a plain volume has the rank
            of a regular 2D map, so it is said here rather than guessed).

    Returns:
        ``(B, H', W', C)`` or ``(B, H', W', C, |G|)`` (volumes: ``(B, D', H', W', ...)``), in ``x``'s dtype.

    Raises:
        ValueError: ``x`` not of rank 4 or 5 (5 or 6 for volumes), a bad ``window``, ``stride``,
            ``padding`` or ``spatial_dims``, or a window larger than the (padded) input.
        TypeError: ``x`` is neither float nor integer (e.g. bool).

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> F.max_pool(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
        Array([[ 5.,  7.],
               [13., 15.]], dtype=float32)
    """
    d = check_spatial_dims(spatial_dims)
    x = check_map(x, "max_pool", spatial_dims=d)
    window = check_window(window)
    stride = window if stride is None else normalize_stride(stride)
    padding = normalize_padding(padding)
    pads = _spatial_pads(x, window, stride, padding, "max_pool", d)
    if padding == "CIRCULAR":
        x, pads = _pad_spatial(x, pads, "wrap"), [(0, 0)] * d
    if jnp.issubdtype(x.dtype, jnp.inexact):
        init = np.array(-np.inf, dtype=x.dtype)
    elif jnp.issubdtype(x.dtype, jnp.integer):
        init = np.array(np.iinfo(x.dtype).min, dtype=x.dtype)
    else:
        raise TypeError(f"max_pool expects a real (float or integer) `x`, got dtype {x.dtype}")
    if stride == window and not any(any(p) for p in pads):
        return _tiled_max(x, window, d)
    return _reduce_window(x, init, lax.max, window, stride, pads)


def _tiled_max(x, window: int, d: int = 2):
    """Max over non-overlapping ``window`` tiles along the ``d`` spatial axes (the trailing
    rows/columns that fill no tile dropped, as VALID pooling does), as a reshape and a reduction:
    the same values as ``reduce_window``, but its gradient is elementwise (a tie shares the
    gradient equally) instead of XLA's select-and-scatter, ~4x faster on CPU
    (``benchmarks/RESULTS.md``)."""
    out = [n // window for n in x.shape[1:1 + d]]
    x = x[(slice(None),) + tuple(slice(0, n * window) for n in out)]
    tiles = [s for n in out for s in (n, window)]  # (n1, K, n2, K, ...)
    return jnp.max(x.reshape(x.shape[0], *tiles, *x.shape[1 + d:]), axis=tuple(range(2, 2 + 2 * d, 2)))


def avg_pool(x: Array, window=2, stride=None, padding: str = "VALID", *, count_include_pad: bool = True,
             spatial_dims: int = 2) -> Array:
    """Average pooling over ``window x window`` windows, ``(B, H, W, ...) -> (B, H', W', ...)``;
    with ``spatial_dims=3`` over ``K x K x K`` windows of a volume ``(B, D, H, W, ...)``.

    Arguments as :func:`max_pool`; ``"SAME"`` pads with zeros, which count in the average if
    ``count_include_pad`` (as ``flax.nnx.avg_pool`` and ``torch``), or are left out of it.
    Integer inputs are averaged in float32.

    Args:
        x, window, stride, padding: as :func:`max_pool`.
        count_include_pad: whether the zeros of "SAME" padding count in the average.
        spatial_dims: 2 (maps) or 3 (volumes), as :func:`max_pool`.

    Returns:
        The pooled map, shaped as :func:`max_pool`'s, in ``x``'s dtype (float32 for integers).

    Raises:
        ValueError: as :func:`max_pool`.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib.functional import avg_pool
        >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        >>> avg_pool(x)[..., 0]
        Array([[[ 2.5,  4.5],
                [10.5, 12.5]]], dtype=float32)
        >>> ones = jnp.ones((1, 3, 3, 1))
        >>> avg_pool(ones, 2, 1, "SAME")[0, :, :, 0]  # zeros counted
        Array([[1.  , 1.  , 0.5 ],
               [1.  , 1.  , 0.5 ],
               [0.5 , 0.5 , 0.25]], dtype=float32)
        >>> avg_pool(ones, 2, 1, "SAME", count_include_pad=False).min()
        Array(1., dtype=float32)
    """
    d = check_spatial_dims(spatial_dims)
    x = check_map(x, "avg_pool", spatial_dims=d)
    window = check_window(window)
    stride = window if stride is None else normalize_stride(stride)
    padding = normalize_padding(padding)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.float32)
    pads = _spatial_pads(x, window, stride, padding, "avg_pool", d)
    if padding == "CIRCULAR":
        x, pads = _pad_spatial(x, pads, "wrap"), [(0, 0)] * d
    zero = np.array(0, dtype=x.dtype)
    total = _reduce_window(x, zero, lax.add, window, stride, pads)
    if count_include_pad or all(p == (0, 0) for p in pads):
        return total / np.array(window**d, dtype=x.dtype)
    ones = jnp.ones((1,) + x.shape[1:1 + d] + (1,) * (x.ndim - 1 - d), x.dtype)
    count = _reduce_window(ones, zero, lax.add, window, stride, pads)
    return total / count


# --- blur ----------------------------------------------------------------------------------------
_JNP_PAD_MODES = {"reflect": "reflect", "circular": "wrap", "zeros": "constant"}


def _blur_axis(x, taps: np.ndarray, axis: int, stride: int, pads, padding: str, d: int = 2):
    k = len(taps)
    n = x.shape[axis]
    lo, hi = pads
    if padding == "reflect" and max(lo, hi) > n - 1:
        raise ValueError(f"`padding`='reflect' needs the pads ({lo}, {hi}) of filter_size={k} to be "
                         f"smaller than the input ({_AXIS_NAMES[d][axis - 1]}={n}); use a larger input, a "
                         f"smaller filter_size or padding='circular' / 'zeros'")
    widths = [(0, 0)] * x.ndim
    widths[axis] = (lo, hi)
    if lo or hi:
        x = jnp.pad(x, widths, mode=_JNP_PAD_MODES[padding])
    n_out = (n + lo + hi - k) // stride + 1

    def tap(t):
        return lax.slice_in_dim(x, t, t + stride * (n_out - 1) + 1, stride, axis)

    # Symmetric taps are added in mirror pairs first (a + b == b + a bitwise), so that the
    # blur commutes with flips to the last bit; weights are dyadic, hence exact.
    out = None
    for t in range(k // 2):
        term = (tap(t) + tap(k - 1 - t)) * np.asarray(taps[t], dtype=x.dtype)
        out = term if out is None else out + term
    if k % 2:
        mid = tap(k // 2) * np.asarray(taps[k // 2], dtype=x.dtype)
        out = mid if out is None else out + mid
    return out


def _blur(x, filter_size: int, stride: int, padding: str, d: int = 2):
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.float32)
    if filter_size == 1 and stride == 1:
        return x
    taps = binomial_filter(filter_size, ndim=1).astype(np.float64)
    for axis in range(1, 1 + d):  # separable: the 1D taps along each spatial axis in turn
        pads = padding_pads(x.shape[axis], filter_size, stride, "SAME")
        x = _blur_axis(x, taps, axis, stride, pads, padding, d)
    return x


def blur_pool(x: Array, filter_size: int = 3, stride=2, padding: str = "reflect", *,
              spatial_dims: int = 2) -> Array:
    """BlurPool (Zhang 2019): blur with the binomial filter of size ``filter_size`` (1..7),
    then keep every ``stride``-th sample: ``(B, H, W, ...) -> (B, ceil(H/s), ceil(W/s), ...)``;
    with ``spatial_dims=3`` a volume ``(B, D, H, W, ...) -> (B, ceil(D/s), ceil(H/s), ceil(W/s), ...)``.

    ``padding``: ``"reflect"`` (mirror without repeating the edge, Zhang's default),
    ``"circular"`` or ``"zeros"``; pads as ``"SAME"`` (module docstring). ``stride=1`` is a plain
    blur of the same size; ``filter_size=1`` plain subsampling ``x[:, ::s, ::s]``-like. The
    filter is separable and applied as exact fp32 multiply-adds (no conv precision setting), along
    H then W (D, H then W for volumes): a rotation that permutes the axes changes the order of the
    roundings, so it is exact to fp32 rounding (~1e-7); flips are exact to the bit.

    Equivariance: with ``padding="circular"`` and stride 1, exactly equivariant to circular
    shifts (odd ``filter_size``; an even one shifts by half a pixel). Rot90/flips: exact when the
    samples are symmetric about the centre (odd ``filter_size`` with stride 1, or stride 2 on an
    odd size; even ``filter_size`` with stride 2 on an even size); see the module docstring.

    Args:
        x: a plain map ``(B, H, W, C)`` or a regular map ``(B, H, W, C, |G|)``; with
            ``spatial_dims=3`` a volume ``(B, D, H, W, C)`` or ``(B, D, H, W, C, |G|)``.
        filter_size: the size of the binomial filter (:func:`binomial_filter`), 1..7.
        stride: an int (or a pair of equal ints).
        padding: "reflect", "circular" or "zeros".
        spatial_dims: 2 (maps) or 3 (volumes: the taps along D, H and W).

    Returns:
        ``(B, ceil(H/s), ceil(W/s), C)`` or ``(B, ceil(H/s), ceil(W/s), C, |G|)`` (volumes: a
        leading ``ceil(D/s)`` too), in ``x``'s dtype (float32 for integers).

    Raises:
        ValueError: ``x`` not of rank 4 or 5 (5 or 6 for volumes), ``filter_size`` not in 1..7, a
            bad ``stride``, ``padding`` or ``spatial_dims``, or "reflect" pads as large as the input.
        TypeError: ``filter_size`` is not an int.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> y = F.blur_pool(jnp.full((2, 9, 9, 3, 4), 2.0))  # a regular map of C4
        >>> y.shape, float(y.min()), float(y.max())
        ((2, 5, 5, 3, 4), 2.0, 2.0)
    """
    d = check_spatial_dims(spatial_dims)
    x = check_map(x, "blur_pool", spatial_dims=d)
    filter_size = check_filter_size(filter_size)
    stride = normalize_stride(stride)
    padding = check_blur_padding(padding)
    return _blur(x, filter_size, stride, padding, d)


def max_blur_pool(x: Array, window=2, filter_size: int = 3, stride=2, padding: str = "reflect") -> Array:
    """MaxBlurPool (Zhang 2019): max over ``window x window`` windows with stride 1, then
    :func:`blur_pool` with ``filter_size``, ``stride`` and ``padding``.

    The max stage is unpadded (``"VALID"``, ``H - window + 1`` outputs, as Zhang's
    ``MaxPool2d(kernel_size=2, stride=1)``) for ``"reflect"`` and ``"zeros"``, and periodic for
    ``"circular"`` (pads of ``"SAME"``, ``H`` outputs, so the whole layer is circular). With the
    defaults (window 2, filter 3, stride 2, reflect) the samples are symmetric, and the layer
    commutes exactly with rot90/flips, on **even** sizes (``16 -> 15 -> 8``).

    Args:
        x: a plain map ``(B, H, W, C)`` or a regular map ``(B, H, W, C, |G|)``.
        window: the max window, an int or a pair of equal ints.
        filter_size: the size of the binomial filter, 1..7.
        stride: the stride of the blur stage.
        padding: "reflect", "circular" or "zeros" (the blur's; "circular" also makes the max
            stage periodic).

    Returns:
        ``(B, H', W', C)`` or ``(B, H', W', C, |G|)``: with "circular" ``H' = ceil(H / s)``,
        otherwise ``H' = ceil((H - window + 1) / s)``.

    Raises:
        ValueError: ``x`` not of rank 4 or 5, a bad ``window``, ``filter_size``, ``stride`` or
            ``padding``, or an input smaller than the window.
        TypeError: ``filter_size`` is not an int.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> F.max_blur_pool(jnp.ones((1, 16, 16, 2))).shape
        (1, 8, 8, 2)
    """
    x = check_map(x, "max_blur_pool")
    window = check_window(window)
    filter_size = check_filter_size(filter_size)
    stride = normalize_stride(stride)
    padding = check_blur_padding(padding)
    y = max_pool(x, window, 1, "CIRCULAR" if padding == "circular" else "VALID")
    return _blur(y, filter_size, stride, padding)


# --- adaptive polyphase sampling -----------------------------------------------------------------
def _polyphase(x):
    """``(B, H, W, ...) -> (B, 4, H/2, W/2, ...)``; component ``2*i + j`` is ``x[:, i::2, j::2]``."""
    b, h, w = x.shape[:3]
    rest = x.shape[3:]
    y = x.reshape((b, h // 2, 2, w // 2, 2) + rest)
    y = jnp.moveaxis(y, (2, 4), (1, 2))  # (B, 2, 2, H/2, W/2, ...)
    return y.reshape((b, 4, h // 2, w // 2) + rest)


def _unpolyphase(p):
    """Inverse of :func:`_polyphase`."""
    b, _, h2, w2 = p.shape[:4]
    rest = p.shape[4:]
    y = p.reshape((b, 2, 2, h2, w2) + rest)
    y = jnp.moveaxis(y, (1, 2), (2, 4))  # (B, H/2, 2, W/2, 2, ...)
    return y.reshape((b, 2 * h2, 2 * w2) + rest)


# D4-orbits of circular lags (one lag of each +- pair: the autocorrelation is even): every
# orbit of lags with |dy|, |dx| <= 2, i.e. all lag orbits of a 4x4 component
_LAG_ORBITS = (((1, 0), (0, 1)), ((1, 1), (1, -1)), ((2, 0), (0, 2)),
               ((2, 1), (2, -1), (1, 2), (1, -2)), ((2, 2), (2, -2)))
# D4-orbits of three-pixel configurations {0, -a, -b}: straight lines and L-shaped corners
_TRIPLE_ORBITS = ((((1, 0), (-1, 0)), ((0, 1), (0, -1))),
                  (((1, 0), (0, 1)), ((0, 1), (-1, 0)), ((-1, 0), (0, -1)), ((0, -1), (1, 0))))


def _phase_keys(poly, criterion: str):
    """Per ``(batch, phase)`` keys, largest wins, compared lexicographically: the norms
    (criterion first), then the structural keys of :func:`_structural_keys`.

    Every key is invariant under circular shifts of a component (on its ``H/2 x W/2`` torus) and
    under the group action on it (rot90/flip in space, a permutation of the channel and group
    axes that is the same at every pixel), so the ranking of the components is carried along by
    shifts and by rot90/flips of the input.
    """
    p = _key_input(poly)
    axes = tuple(range(2, p.ndim))
    norms = {"l2": jnp.sum(p * p, axis=axes),          # the squared norm: no ties made by sqrt
             "l1": jnp.sum(jnp.abs(p), axis=axes),
             "linf": jnp.max(jnp.abs(p), axis=axes)}
    return [norms[criterion]] + [norms[c] for c in APS_CRITERIA if c != criterion]


def _structural_keys(poly):
    """Shift- and D4-invariant structure of each component (summed over channels and the group
    axis), to separate components with equal norms (e.g. on binary maps): for each D4-orbit of
    lags in ``_LAG_ORBITS`` the circular autocorrelations at the lags of the orbit, sorted; then
    for the lines and the corners of ``_TRIPLE_ORBITS`` the sums of triple products, sorted
    (rot90/flips permute the values within an orbit, so the sorted values are invariant)."""
    p = _key_input(poly)
    b, f, h, w = p.shape[:4]
    flat = p.reshape((b, f, h * w) + p.shape[4:])
    axes = tuple(range(2, flat.ndim))
    pairs = [(lag, (0, 0)) for orbit in _LAG_ORBITS for lag in orbit]
    pairs += [ab for orbit in _TRIPLE_ORBITS for ab in orbit]
    n_lags = sum(len(o) for o in _LAG_ORBITS)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    # gather tables of jnp.roll(p, lag, axis=(2, 3)) on the flattened component
    table = np.array([[(((rows - lag[0]) % h) * w + (cols - lag[1]) % w).ravel() for lag in ab]
                      for ab in pairs], dtype=np.int32)  # (L, 2, h*w)
    second = np.arange(len(pairs)) < n_lags

    def moment(args):  # sum p * roll(p, a) * (roll(p, b), or 1 for the autocorrelations)
        idx, is_second = args
        ra = jnp.take(flat, idx[0], axis=2)
        rb = jnp.where(is_second, jnp.ones((), flat.dtype), jnp.take(flat, idx[1], axis=2))
        return jnp.sum(flat * ra * rb, axis=axes)

    vals = lax.map(moment, (jnp.asarray(table), jnp.asarray(second)))  # (L, B, 4)
    keys, start = [], 0
    for orbit in _LAG_ORBITS + _TRIPLE_ORBITS:
        keys.extend(_sort_small([vals[start + i] for i in range(len(orbit))]))
        start += len(orbit)
    return jnp.stack(keys)


def _sort_small(v):
    """Ascending sort of 2 or 4 arrays, elementwise, by a min/max sorting network (cheap to compile)."""
    v = list(v)
    network = {2: [(0, 1)], 4: [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)]}[len(v)]
    for i, j in network:
        v[i], v[j] = jnp.minimum(v[i], v[j]), jnp.maximum(v[i], v[j])
    return v


def _key_input(poly):
    p = lax.stop_gradient(poly)
    return p.astype(jnp.promote_types(p.dtype, jnp.float32))


def _narrow_by(candidates, key):
    """Keep the candidates (B, 4) whose ``key`` (B, 4) is the largest among the candidates."""
    masked = jnp.where(candidates, key, -jnp.inf)
    return candidates & (masked == jnp.max(masked, axis=1, keepdims=True))


def _select_phase(poly, criterion: str):
    """Index (B,) of the lexicographically largest keys; a complete tie takes the first index.
    The structural keys are only computed (``lax.cond``) when the norms leave a tie."""
    candidates = jnp.ones(poly.shape[:2], bool)
    for key in _phase_keys(poly, criterion):
        candidates = _narrow_by(candidates, key)

    def structural(c):
        return lax.scan(lambda c, key: (_narrow_by(c, key), None), c, _structural_keys(poly))[0]

    tied = jnp.any(jnp.sum(candidates, axis=1) > 1)
    candidates = lax.cond(tied, structural, lambda c: c, candidates)
    return jnp.argmax(candidates, axis=1).astype(jnp.int32)


def _check_even(x, where: str):
    h, w = x.shape[1], x.shape[2]
    if h % 2 or w % 2:
        raise ValueError(f"{where} with stride 2 needs an even spatial size (H, W), got H={h}, W={w} "
                         f"(shape {tuple(x.shape)}): on an odd size circular shifts do not permute "
                         f"the polyphase components; crop or circularly pad the input to an even size")


def _check_phase(phase, batch: int, where: str):
    phase = jnp.asarray(phase)
    if phase.shape != (batch, 2) or not jnp.issubdtype(phase.dtype, jnp.integer):
        raise ValueError(f"{where}: `phase` must be an integer array of shape (batch, 2) = ({batch}, 2) "
                         f"holding (row, col) offsets in {{0, 1}}, got shape {tuple(phase.shape)} "
                         f"and dtype {phase.dtype}")
    return (phase[:, 0] % 2) * 2 + phase[:, 1] % 2


def aps_pool(x: Array, stride=2, *, criterion: str = "l2", filter_size: int = 1, phase: Array | None = None,
             return_phase: bool = False) -> Array | tuple[Array, Array]:
    """Adaptive polyphase sampling (Chaman & Dokmanic 2021): ``(B, H, W, ...) -> (B, H/2, W/2, ...)``.

    Of the four polyphase components ``x[:, i::2, j::2]`` (``i, j`` in {0, 1}) keep, per sample,
    the one of largest norm (``criterion``: ``"l2"``, ``"l1"`` or ``"linf"``) taken **jointly**
    over space, channels and, on a regular map ``(B, H, W, C, |G|)``, the group axis. ``H`` and
    ``W`` must be even; only ``stride=2`` (stack layers for 4, 8, ...). With ``filter_size > 1``
    the input is first blurred with the binomial filter, circular padding, stride 1 (APS-BlurPool).

    ``phase``: a ``(B, 2)`` int array of ``(row, col)`` offsets to use instead of choosing (to
    subsample a skip branch like its main branch). ``return_phase=True`` returns ``(y, phase)``,
    the chosen offsets, e.g. for :func:`aps_unpool` in a decoder.

    Shifts. Rolling the input by ``(dy, dx)`` (``jnp.roll`` on axes 1, 2) moves component
    ``(i, j)`` to ``((i + dy) % 2, (j + dx) % 2)``, rolled; the norms move with it, so
    ``aps_pool(roll(x, d)) == roll(aps_pool(x), floor((d + p) / 2))`` per axis, where ``p`` is the
    phase chosen for ``x``, and the new phase is ``(p + d) % 2``: exactly equivariant up to a
    circular shift of the output, and a following global pooling is exactly shift-invariant.

    Rotations and flips (convention of :mod:`equilib.groups`). On an even-sized map rot90 (CCW
    as displayed) maps component ``(i, j)`` to ``(1 - j, i)`` and the mirror of W maps it to
    ``(i, 1 - j)``, each rotated/flipped (and, on a regular map, with its group axis permuted),
    so all norms are carried along and ``aps_pool(g.x) == g.aps_pool(x)`` exactly, with phase
    ``g.p``; with an even ``filter_size`` the half-pixel blur makes it exact up to a circular
    shift of the output instead (a global pooling after it is still exactly invariant).

    Ties of the norms (common on integer or binary inputs) are broken by further shift- and
    D4-invariant keys, see "APS ties" in the module docstring.

    No :class:`equilib.ExactnessWarning` is raised: the phase adapts to the input.

    Args:
        x: a plain map ``(B, H, W, C)`` or a regular map ``(B, H, W, C, |G|)``, ``H`` and ``W``
            even.
        stride: must be 2.
        criterion: "l2", "l1" or "linf", the norm that ranks the components first.
        filter_size: the binomial blur applied first (1: none), 1..7.
        phase: ``(B, 2)`` integer ``(row, col)`` offsets in {0, 1} to use instead of choosing,
            or None.
        return_phase: also return the offsets used.

    Returns:
        ``(B, H/2, W/2, C)`` or ``(B, H/2, W/2, C, |G|)``; with ``return_phase``, the pair
        ``(y, phase)`` with ``phase`` int32 ``(B, 2)``.

    Raises:
        ValueError: ``x`` not of rank 4 or 5, an odd ``H`` or ``W``, ``stride`` not 2, a bad
            ``criterion`` or ``filter_size``, or a ``phase`` that is not an integer ``(B, 2)`` array.
        TypeError: ``filter_size`` is not an int.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import functional as F
        >>> import numpy as np
        >>> x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8, 8, 2)), jnp.float32)
        >>> y, p = F.aps_pool(x, return_phase=True)
        >>> y_shifted = F.aps_pool(jnp.roll(x, 1, axis=1))
        >>> y.shape, bool(jnp.array_equal(F.global_pool(y, "max"), F.global_pool(y_shifted, "max")))
        ((1, 4, 4, 2), True)
        >>> bool(jnp.array_equal(F.aps_pool(x, phase=p), y))
        True
    """
    x = check_map(x, "aps_pool")
    check_aps_stride(stride)
    criterion = check_criterion(criterion)
    filter_size = check_filter_size(filter_size)
    _check_even(x, "aps_pool")
    if filter_size > 1:
        x = _blur(x, filter_size, 1, "circular")
    poly = _polyphase(x)
    b = x.shape[0]
    idx = _select_phase(poly, criterion) if phase is None else _check_phase(phase, b, "aps_pool")
    y = poly[jnp.arange(b), idx]
    if return_phase:
        return y, jnp.stack([idx // 2, idx % 2], axis=-1).astype(jnp.int32)
    return y


def aps_unpool(y: Array, phase: Array, stride=2) -> Array:
    """Inverse placement of :func:`aps_pool` (APS upsampling, for decoders): ``(B, h, w, ...) -> (B, 2h, 2w, ...)``.

    ``y`` goes to the pixels of polyphase component ``phase`` and zeros elsewhere.
    ``aps_unpool(*aps_pool(x, return_phase=True))`` commutes exactly with circular shifts and
    with rot90/flips of ``x``.

    Args:
        y: a plain map ``(B, h, w, C)`` or a regular map ``(B, h, w, C, |G|)``.
        phase: ``(B, 2)`` integer ``(row, col)`` offsets in {0, 1}, as returned by
            ``aps_pool(..., return_phase=True)``.
        stride: must be 2.

    Returns:
        ``(B, 2h, 2w, C)`` or ``(B, 2h, 2w, C, |G|)``, in ``y``'s dtype.

    Raises:
        ValueError: ``y`` not of rank 4 or 5, ``stride`` not 2, or a ``phase`` that is not an
            integer ``(B, 2)`` array.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import functional as F
        >>> import numpy as np
        >>> x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8, 8, 2)), jnp.float32)
        >>> y, phase = F.aps_pool(x, return_phase=True)
        >>> up = F.aps_unpool(y, phase)
        >>> up.shape, bool(jnp.array_equal(F.aps_pool(up, phase=phase), y))
        ((1, 8, 8, 2), True)
    """
    y = check_map(y, "aps_unpool")
    check_aps_stride(stride)
    b = y.shape[0]
    idx = _check_phase(phase, b, "aps_unpool")
    onehot = jnp.arange(4)[None, :] == idx[:, None]  # (B, 4)
    mask = onehot.reshape((b, 4) + (1,) * (y.ndim - 1))
    poly = jnp.where(mask, y[:, None], jnp.zeros((), y.dtype))
    return _unpolyphase(poly)


# --- global pooling ---------------------------------------------------------------------------
def global_pool(x: Array, mode: str = "mean", *, group_mode: str | None = None, spatial_dims: int = 2) -> Array:
    """Pool a map to an invariant vector: ``(B, H, W, C) -> (B, C)``, ``(B, H, W, C, |G|) -> (B, C)``;
    with ``spatial_dims=3`` a volume ``(B, D, H, W, C)`` or ``(B, D, H, W, C, |G|)``.

    ``mode`` ("mean" or "max") pools the spatial axes, and with ``group_mode=None`` the group axis
    of a regular map too, in one reduction. ``group_mode`` first pools the group axis with
    :func:`group_pool` ("max", "mean" or "norm": the Euclidean norm, with gradient 0 where it is
    0), then ``mode`` pools space (regular maps only). The result is
    invariant under circular shifts, and for a regular map under the regular action of the group
    (rot90/flips), given an equivariant input.

    Args:
        x: a plain map ``(B, H, W, C)`` or a regular map ``(B, H, W, C, |G|)``.
        mode: "mean" or "max", over space (and the group axis when ``group_mode`` is None).
        group_mode: None, or "max", "mean" or "norm" to pool the group axis first (regular
            maps only).
        spatial_dims: 2 (maps) or 3 (volumes, e.g. of ``Octahedral()``; a plain volume has the rank
            of a regular 2D map, so it is said here rather than guessed).

    Returns:
        ``(B, C)``.

    Raises:
        ValueError: ``x`` not of rank 4 or 5 (5 or 6 for volumes), a bad ``mode``, ``group_mode`` or
            ``spatial_dims``, or a ``group_mode`` with a plain map.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> F.global_pool(jnp.ones((2, 5, 5, 3))).shape
        (2, 3)
        >>> F.global_pool(jnp.ones((2, 5, 5, 3, 4)), "max", group_mode="norm")  # |(1, 1, 1, 1)| = 2
        Array([[2., 2., 2.],
               [2., 2., 2.]], dtype=float32)
    """
    d = check_spatial_dims(spatial_dims)
    x = check_map(x, "global_pool", spatial_dims=d)
    mode = check_global_mode(mode)
    group_mode = check_group_mode(group_mode)
    space = tuple(range(1, 1 + d))
    plain = x.ndim == d + 2
    if plain or group_mode is None:
        if plain and group_mode is not None:
            raise ValueError(f"`group_mode` pools the group axis of a regular map (rank {d + 3}), but `x` "
                             f"is a plain map of shape {tuple(x.shape)}; expected group_mode=None")
        axes = space if plain else space + (d + 2,)
    else:
        x = group_pool(x, group_mode)
        axes = space
    return jnp.max(x, axis=axes) if mode == "max" else jnp.mean(x, axis=axes)
