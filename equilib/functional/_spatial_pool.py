"""Spatial pooling as pure functions: max / average pooling, BlurPool, MaxBlurPool, adaptive
polyphase sampling (APS) and global pooling.

Every function works on a plain map ``(B, H, W, C)`` and on a regular group map
``(B, H, W, C, |G|)``: the spatial axes are 1 and 2, and the trailing axes (channels, group)
are pooled independently and left in place unless stated. The functions are pure and safe
under ``jit``, ``vmap`` and ``grad``.

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
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from equilib.functional._conv import normalize_padding, normalize_stride, padding_pads

__all__ = [
    "APS_CRITERIA",
    "BLUR_PADDINGS",
    "GLOBAL_POOL_MODES",
    "GROUP_MODES",
    "aps_pool",
    "aps_unpool",
    "avg_pool",
    "binomial_filter",
    "blur_pool",
    "global_pool",
    "max_blur_pool",
    "max_pool",
]

BLUR_PADDINGS = ("reflect", "circular", "zeros")
APS_CRITERIA = ("l2", "l1", "linf")
GLOBAL_POOL_MODES = ("mean", "max")
GROUP_MODES = ("max", "mean", "norm")
MAX_FILTER_SIZE = 7


# --- argument checks ---------------------------------------------------------------------------
def check_map(x, where: str):
    """``x`` as an array of rank 4 (plain) or 5 (regular); ValueError otherwise."""
    if not hasattr(x, "ndim"):
        x = jnp.asarray(x)
    if x.ndim not in (4, 5):
        raise ValueError(f"{where} expects a plain map (batch, H, W, C) or a regular map "
                         f"(batch, H, W, C, |G|), i.e. rank 4 or 5, got shape {tuple(x.shape)}")
    return x


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_window(window) -> int:
    """A square window: an int >= 1 or a pair of equal ints."""
    if isinstance(window, (tuple, list)):
        if len(window) != 2 or window[0] != window[1]:
            raise ValueError(f"`window` must be an int or a pair of equal ints (square windows keep "
                             f"rot90 equivariance), got {window!r}")
        window = window[0]
    if not _is_int(window) or window < 1:
        raise ValueError(f"`window` must be an integer >= 1, got {window!r}")
    return int(window)


def check_filter_size(filter_size) -> int:
    if not _is_int(filter_size):
        raise TypeError(f"`filter_size` must be an int in 1..{MAX_FILTER_SIZE}, got "
                        f"{type(filter_size).__name__} ({filter_size!r})")
    if not 1 <= filter_size <= MAX_FILTER_SIZE:
        raise ValueError(f"`filter_size` must be in 1..{MAX_FILTER_SIZE}, got {filter_size}")
    return int(filter_size)


def check_blur_padding(padding) -> str:
    if not isinstance(padding, str) or padding.lower() not in BLUR_PADDINGS:
        raise ValueError(f"`padding` must be one of {BLUR_PADDINGS}, got {padding!r}")
    return padding.lower()


def check_criterion(criterion) -> str:
    if criterion not in APS_CRITERIA:
        raise ValueError(f"`criterion` must be one of {APS_CRITERIA}, got {criterion!r}")
    return criterion


def check_aps_stride(stride) -> int:
    if not _is_int(stride) or stride != 2:
        raise ValueError(f"`stride` must be 2 for APS (adaptive polyphase sampling keeps one of the "
                         f"4 polyphase components of a stride-2 grid; stack two layers for "
                         f"stride 4), got {stride!r}")
    return 2


def check_global_mode(mode) -> str:
    if mode not in GLOBAL_POOL_MODES:
        raise ValueError(f"`mode` must be one of {GLOBAL_POOL_MODES}, got {mode!r}")
    return mode


def check_group_mode(group_mode):
    if group_mode is not None and group_mode not in GROUP_MODES:
        raise ValueError(f"`group_mode` must be None or one of {GROUP_MODES}, got {group_mode!r}")
    return group_mode


# --- the binomial filter -----------------------------------------------------------------------
def binomial_filter(filter_size: int, *, ndim: int = 2) -> np.ndarray:
    """The normalised binomial filter of Zhang (2019): row ``filter_size - 1`` of Pascal's
    triangle divided by its sum (``[1]``, ``[1, 1]/2``, ``[1, 2, 1]/4``, ... ``[1, 6, 15, 20, 15,
    6, 1]/64``). ``ndim=2`` returns the outer product ``(K, K)`` (sums to 1), ``ndim=1`` the taps
    ``(K,)``. The 2D filter is invariant under rot90 and flips. float32 numpy array; every entry
    is a dyadic fraction, exact in floating point.
    """
    k = check_filter_size(filter_size)
    if ndim not in (1, 2):
        raise ValueError(f"`ndim` must be 1 or 2, got {ndim!r}")
    taps = np.array([math.comb(k - 1, i) for i in range(k)], dtype=np.float64) / 2.0 ** (k - 1)
    out = taps if ndim == 1 else np.outer(taps, taps)
    return out.astype(np.float32)


# --- windowed reductions -----------------------------------------------------------------------
def _spatial_pads(x, window: int, stride: int, padding: str, where: str):
    h, w = x.shape[1], x.shape[2]
    pads = [padding_pads(h, window, stride, padding), padding_pads(w, window, stride, padding)]
    for axis, n, (lo, hi) in zip("HW", (h, w), pads):
        if n + lo + hi < window:
            raise ValueError(f"{where}: `window` (={window}) is larger than the input ({axis}={n}) "
                             f"with padding={padding!r}; expected window <= {n}")
    return pads


def _pad_spatial(x, pads, mode: str, **kwargs):
    widths = [(0, 0), tuple(pads[0]), tuple(pads[1])] + [(0, 0)] * (x.ndim - 3)
    if all(p == (0, 0) for p in widths):
        return x
    return jnp.pad(x, widths, mode=mode, **kwargs)


def _reduce_window(x, init, op, window: int, stride: int, pads):
    dims = (1, window, window) + (1,) * (x.ndim - 3)
    strides = (1, stride, stride) + (1,) * (x.ndim - 3)
    padding = ((0, 0), tuple(pads[0]), tuple(pads[1])) + ((0, 0),) * (x.ndim - 3)
    return lax.reduce_window(x, init, op, dims, strides, padding)


def max_pool(x, window=2, stride=None, padding: str = "VALID"):
    """Max pooling over ``window x window`` spatial windows, ``(B, H, W, ...) -> (B, H', W', ...)``.

    ``stride`` defaults to ``window``. ``padding``: ``"VALID"`` (no pads, ``floor((H - K)/s) + 1``
    outputs), ``"SAME"`` (pads that never win the max, ``ceil(H / s)`` outputs) or ``"CIRCULAR"``
    (periodic pads of ``"SAME"``: with stride 1 this commutes exactly with ``jnp.roll``; with
    stride ``s`` it commutes with shifts by multiples of ``s`` when ``s`` divides ``H`` and ``W``).
    Channels and the group axis of a regular map are pooled independently.
    """
    x = check_map(x, "max_pool")
    window = check_window(window)
    stride = window if stride is None else normalize_stride(stride)
    padding = normalize_padding(padding)
    pads = _spatial_pads(x, window, stride, padding, "max_pool")
    if padding == "CIRCULAR":
        x, pads = _pad_spatial(x, pads, "wrap"), [(0, 0), (0, 0)]
    if jnp.issubdtype(x.dtype, jnp.inexact):
        init = np.array(-np.inf, dtype=x.dtype)
    elif jnp.issubdtype(x.dtype, jnp.integer):
        init = np.array(np.iinfo(x.dtype).min, dtype=x.dtype)
    else:
        raise TypeError(f"max_pool expects a real (float or integer) `x`, got dtype {x.dtype}")
    return _reduce_window(x, init, lax.max, window, stride, pads)


def avg_pool(x, window=2, stride=None, padding: str = "VALID", *, count_include_pad: bool = True):
    """Average pooling over ``window x window`` windows, ``(B, H, W, ...) -> (B, H', W', ...)``.

    Arguments as :func:`max_pool`; ``"SAME"`` pads with zeros, which count in the average if
    ``count_include_pad`` (as ``flax.nnx.avg_pool`` and ``torch``), or are left out of it.
    Integer inputs are averaged in float32.
    """
    x = check_map(x, "avg_pool")
    window = check_window(window)
    stride = window if stride is None else normalize_stride(stride)
    padding = normalize_padding(padding)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.float32)
    pads = _spatial_pads(x, window, stride, padding, "avg_pool")
    if padding == "CIRCULAR":
        x, pads = _pad_spatial(x, pads, "wrap"), [(0, 0), (0, 0)]
    zero = np.array(0, dtype=x.dtype)
    total = _reduce_window(x, zero, lax.add, window, stride, pads)
    if count_include_pad or all(p == (0, 0) for p in pads):
        return total / np.array(window * window, dtype=x.dtype)
    ones = jnp.ones((1, x.shape[1], x.shape[2]) + (1,) * (x.ndim - 3), x.dtype)
    count = _reduce_window(ones, zero, lax.add, window, stride, pads)
    return total / count


# --- blur ----------------------------------------------------------------------------------------
_JNP_PAD_MODES = {"reflect": "reflect", "circular": "wrap", "zeros": "constant"}


def _blur_axis(x, taps: np.ndarray, axis: int, stride: int, pads, padding: str):
    k = len(taps)
    n = x.shape[axis]
    lo, hi = pads
    if padding == "reflect" and max(lo, hi) > n - 1:
        raise ValueError(f"`padding`='reflect' needs the pads ({lo}, {hi}) of filter_size={k} to be "
                         f"smaller than the input ({'HW'[axis - 1]}={n}); use a larger input, a "
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


def _blur(x, filter_size: int, stride: int, padding: str):
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.float32)
    if filter_size == 1 and stride == 1:
        return x
    taps = binomial_filter(filter_size, ndim=1).astype(np.float64)
    ph = padding_pads(x.shape[1], filter_size, stride, "SAME")
    pw = padding_pads(x.shape[2], filter_size, stride, "SAME")
    x = _blur_axis(x, taps, 1, stride, ph, padding)
    return _blur_axis(x, taps, 2, stride, pw, padding)


def blur_pool(x, filter_size: int = 3, stride=2, padding: str = "reflect"):
    """BlurPool (Zhang 2019): blur with the binomial filter of size ``filter_size`` (1..7),
    then keep every ``stride``-th sample: ``(B, H, W, ...) -> (B, ceil(H/s), ceil(W/s), ...)``.

    ``padding``: ``"reflect"`` (mirror without repeating the edge, Zhang's default),
    ``"circular"`` or ``"zeros"``; pads as ``"SAME"`` (module docstring). ``stride=1`` is a plain
    blur of the same size; ``filter_size=1`` plain subsampling ``x[:, ::s, ::s]``-like. The
    filter is separable and applied as exact fp32 multiply-adds (no conv precision setting).

    Equivariance: with ``padding="circular"`` and stride 1, exactly equivariant to circular
    shifts (odd ``filter_size``; an even one shifts by half a pixel). Rot90/flips: exact when the
    samples are symmetric about the centre (odd ``filter_size`` with stride 1, or stride 2 on an
    odd size; even ``filter_size`` with stride 2 on an even size); see the module docstring.
    """
    x = check_map(x, "blur_pool")
    filter_size = check_filter_size(filter_size)
    stride = normalize_stride(stride)
    padding = check_blur_padding(padding)
    return _blur(x, filter_size, stride, padding)


def max_blur_pool(x, window=2, filter_size: int = 3, stride=2, padding: str = "reflect"):
    """MaxBlurPool (Zhang 2019): max over ``window x window`` windows with stride 1, then
    :func:`blur_pool` with ``filter_size``, ``stride`` and ``padding``.

    The max stage is unpadded (``"VALID"``, ``H - window + 1`` outputs, as Zhang's
    ``MaxPool2d(kernel_size=2, stride=1)``) for ``"reflect"`` and ``"zeros"``, and periodic for
    ``"circular"`` (pads of ``"SAME"``, ``H`` outputs, so the whole layer is circular). With the
    defaults (window 2, filter 3, stride 2, reflect) the samples are symmetric, and the layer
    commutes exactly with rot90/flips, on **even** sizes (``16 -> 15 -> 8``).
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


def aps_pool(x, stride=2, *, criterion: str = "l2", filter_size: int = 1, phase=None,
             return_phase: bool = False):
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

    Ties. Components are ranked by lexicographic keys that are all invariant under circular
    shifts and rot90/flips of a component: the criterion, then the other two norms (of ``l2, l1,
    linf``), then, only if these leave a tie, structural keys: the circular autocorrelations at
    the lags of each D4-orbit ``(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)``, sorted within the orbit,
    and the sums of triple products over 3-pixel lines and corners, sorted within their orbits.
    So exact ties of the norms (common on integer or binary inputs) are broken consistently with
    shifts and the group action (on 1000 random 8x8 binary maps whose four components have
    equal norms, every remaining full tie was between equivalent components). If all keys tie,
    the first component in the order (0, 0), (0, 1), (1, 0), (1, 1) is taken. No rule can be
    consistent then: shifts and D4 permute the four components transitively, and for an input
    with ``g.x == x`` whose
    components ``g`` permutes (e.g. a rot90-symmetric map) ``aps(g.x) == g.aps(x)`` would need
    the chosen component to be ``g``-symmetric itself. Components that tie in every key are
    usually shifts/rotations of each other; a following shift- and group-invariant pooling maps
    them to the same value, so invariant networks stay exact there. Components with equal keys
    that are not equivalent (possible in principle: the keys are not a complete invariant)
    break exactness. The keys are float32 sums: components whose norms differ only by
    rounding (relative ~1e-7) may be ranked differently for a shifted or rotated copy, whose
    sums run in another order; on float feature maps this has not been observed.

    No :class:`equilib.ExactnessWarning` is raised: the phase adapts to the input.
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


def aps_unpool(y, phase, stride=2):
    """Inverse placement of :func:`aps_pool` (APS upsampling, for decoders):
    ``(B, h, w, ...) -> (B, 2h, 2w, ...)`` with ``y`` at the pixels of polyphase component
    ``phase`` (``(B, 2)`` row/col offsets, as returned by ``aps_pool(..., return_phase=True)``)
    and zeros elsewhere. ``aps_unpool(*aps_pool(x, return_phase=True))`` commutes exactly with
    circular shifts and with rot90/flips of ``x``.
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
def global_pool(x, mode: str = "mean", *, group_mode: str | None = None):
    """Pool a map to an invariant vector: ``(B, H, W, C) -> (B, C)``, ``(B, H, W, C, |G|) -> (B, C)``.

    ``mode`` ("mean" or "max") pools the spatial axes, and with ``group_mode=None`` the group axis
    of a regular map too, in one reduction. ``group_mode`` first pools the group axis, then
    ``mode`` pools space (regular maps only): "max", "mean" (as :func:`group_pool`) or "norm"
    (the Euclidean norm over the group axis, with gradient 0 where it is 0). The result is
    invariant under circular shifts, and for a regular map under the regular action of the group
    (rot90/flips), given an equivariant input.
    """
    x = check_map(x, "global_pool")
    mode = check_global_mode(mode)
    group_mode = check_group_mode(group_mode)
    if x.ndim == 4 or group_mode is None:
        if x.ndim == 4 and group_mode is not None:
            raise ValueError(f"`group_mode` pools the group axis of a regular map (rank 5), but `x` "
                             f"is a plain map of shape {tuple(x.shape)}; expected group_mode=None")
        axes = (1, 2) if x.ndim == 4 else (1, 2, 4)
    else:
        x = _group_reduce(x, group_mode)
        axes = (1, 2)
    return jnp.max(x, axis=axes) if mode == "max" else jnp.mean(x, axis=axes)


def _group_reduce(x, mode: str):
    """Pool the last (group) axis: max, mean or Euclidean norm (safe gradient at 0)."""
    if mode == "max":
        return jnp.max(x, axis=-1)
    if mode == "mean":
        return jnp.mean(x, axis=-1)
    sq = jnp.sum(jnp.square(x), axis=-1)
    nonzero = sq > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1)), jnp.zeros((), sq.dtype))
