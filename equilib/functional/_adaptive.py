"""Adaptive pooling (to a fixed output size) and norm max pooling of steerable fields, as pure functions.

Adaptive bins
-------------
:func:`adaptive_avg_pool` and :func:`adaptive_max_pool` split an axis of length ``n`` into ``m``
bins as PyTorch does: bin ``i`` covers ``[floor(i n / m), ceil((i + 1) n / m))``. The bins are
mirror-symmetric: the mirror ``j -> n - 1 - j`` of bin ``i`` is ``[n - ceil((i + 1) n / m),
n - floor(i n / m)) = [floor((m - 1 - i) n / m), ceil((m - i) n / m))``, which is bin
``m - 1 - i`` (``n - ceil(a) = floor(n - a)``). With the same bins on both axes of a square map
(square ``output_size``), the pooling therefore commutes exactly with rot90 and flips for every
``n`` and ``m``, also when ``m`` does not divide ``n`` (e.g. 7 -> 3: bins [0, 3), [2, 5),
[4, 7)). The bins are precomputed in numpy.

Norm max pooling
----------------
:func:`norm_max_pool` keeps, per field and window, the whole field vector of largest L2 norm.
The norm of a field is invariant under its (orthogonal) representation, so this is equivariant
for any field type, where channelwise :func:`max_pool` is so only for fields whose
representation permutes channels (trivial, regular, quotient).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from equilib._src.checks import check_map, check_window, is_int, normalize_padding, normalize_stride
from equilib._src.fieldops import merge_by_rep, split_by_rep
from equilib._src.typing import Array
from equilib.fields import FieldType, as_field_type
from equilib.functional._conv import padding_pads

__all__ = ["adaptive_avg_pool", "adaptive_max_pool", "check_output_size_pair", "norm_max_pool"]


# --- adaptive pooling ------------------------------------------------------------------------------
def check_output_size_pair(output_size) -> tuple[int, int]:
    """``output_size`` (an int or a pair of ints >= 1) as a pair ``(H', W')``."""
    pair = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(pair) != 2 or not all(is_int(v) and v >= 1 for v in pair):
        raise ValueError(f"`output_size` must be an integer >= 1 or a pair of them (H', W'), got {output_size!r}")
    return int(pair[0]), int(pair[1])


def _bins(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(m)
    return (i * n) // m, -((-(i + 1) * n) // m)  # floor(i n / m), ceil((i + 1) n / m)


def _avg_matrix(n: int, m: int) -> np.ndarray:
    starts, ends = _bins(n, m)
    a = np.zeros((m, n), np.float64)
    for i, (s, e) in enumerate(zip(starts, ends)):
        a[i, s:e] = 1.0 / (e - s)
    return a


def _max_index(n: int, m: int) -> np.ndarray:
    """``(m, L)`` indices of each bin, padded to the longest bin by repeating its last index
    (a repeated element does not change a max)."""
    starts, ends = _bins(n, m)
    length = int(np.max(ends - starts))
    return np.minimum(starts[:, None] + np.arange(length)[None, :], (ends - 1)[:, None])


def adaptive_avg_pool(x: Array, output_size) -> Array:
    """Average pooling to a fixed spatial size: ``(B, H, W, ...) -> (B, H', W', ...)``.

    Bin ``i`` of an axis of length ``n`` pooled to ``m`` covers ``[floor(i n / m), ceil((i + 1) n / m))``
    (PyTorch's ``AdaptiveAvgPool2d``; bins may overlap by one pixel when ``m`` does not divide ``n``).
    The trailing axes (channels, group axis of a regular map, channels of a steerable field map) are
    averaged independently: a linear map of space only, so it commutes with any field representation.
    With a square ``output_size`` on a square map it commutes with rot90 and flips (module docstring).

    Args:
        x: a plain map ``(B, H, W, C)``, a regular map ``(B, H, W, C, |G|)`` or a steerable field map
            ``(B, H, W, D)``.
        output_size: ``H' = W'`` (an int) or a pair ``(H', W')``, ints >= 1 (larger than the input
            repeats pixels, as PyTorch).

    Returns:
        ``(B, H', W', ...)`` in ``x``'s dtype (float32 for integer inputs).

    Raises:
        ValueError: ``x`` not of rank 4 or 5, or a bad ``output_size``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> F.adaptive_avg_pool(jnp.arange(7.0).reshape(1, 1, 7, 1), (1, 3))[0, 0, :, 0]  # bins [0,3) [2,5) [4,7)
        Array([1., 3., 5.], dtype=float32)
    """
    x = check_map(x, "adaptive_avg_pool")
    oh, ow = check_output_size_pair(output_size)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.float32)
    ah = jnp.asarray(_avg_matrix(x.shape[1], oh), x.dtype)
    aw = jnp.asarray(_avg_matrix(x.shape[2], ow), x.dtype)
    hi = lax.Precision.HIGHEST  # fp32 sums: default TPU/GPU matmul precision would round to bf16/tf32
    y = jnp.einsum("ih,bhw...->biw...", ah, x, precision=hi)
    return jnp.einsum("jw,biw...->bij...", aw, y, precision=hi)


def adaptive_max_pool(x: Array, output_size) -> Array:
    """Max pooling to a fixed spatial size: ``(B, H, W, ...) -> (B, H', W', ...)``.

    Bins as :func:`adaptive_avg_pool` (PyTorch's ``AdaptiveMaxPool2d``); the max over a rectangular
    bin is taken one axis after the other. The trailing axes are pooled channel by channel:
    equivariant for plain and regular maps, and for steerable fields only when their
    representations permute channels (:class:`equilib.nn.AdaptiveMaxPool` with ``in_type`` checks
    it; use :func:`norm_max_pool` or :func:`adaptive_avg_pool` otherwise).

    Args:
        x: a plain map ``(B, H, W, C)``, a regular map ``(B, H, W, C, |G|)`` or a steerable field map
            ``(B, H, W, D)`` of permutation fields; float or integer.
        output_size: ``H' = W'`` (an int) or a pair ``(H', W')``, ints >= 1.

    Returns:
        ``(B, H', W', ...)`` in ``x``'s dtype.

    Raises:
        ValueError: ``x`` not of rank 4 or 5, or a bad ``output_size``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> F.adaptive_max_pool(jnp.arange(49.0).reshape(1, 7, 7, 1), 3)[0, :, :, 0]
        Array([[16., 18., 20.],
               [30., 32., 34.],
               [44., 46., 48.]], dtype=float32)
    """
    x = check_map(x, "adaptive_max_pool")
    oh, ow = check_output_size_pair(output_size)
    b, h, w = x.shape[:3]
    ih, iw = _max_index(h, oh), _max_index(w, ow)
    y = jnp.take(x, jnp.asarray(ih.reshape(-1)), axis=1).reshape((b, oh, ih.shape[1]) + x.shape[2:])
    y = jnp.max(y, axis=2)
    y = jnp.take(y, jnp.asarray(iw.reshape(-1)), axis=2).reshape((b, oh, ow, iw.shape[1]) + x.shape[3:])
    return jnp.max(y, axis=3)


# --- norm max pooling ----------------------------------------------------------------------------
def _window_index(n: int, window: int, stride: int, padding: str) -> tuple[np.ndarray, np.ndarray]:
    """``(n_out, window)`` input indices of each window along an axis of length ``n``, and whether
    each is a real pixel (False: a "SAME" pad)."""
    lo, hi = padding_pads(n, window, stride, padding)
    n_out = (n + lo + hi - window) // stride + 1
    idx = np.arange(n_out)[:, None] * stride + np.arange(window)[None, :] - lo
    if padding == "CIRCULAR":
        return idx % n, np.ones(idx.shape, bool)
    valid = (idx >= 0) & (idx < n)
    return np.clip(idx, 0, n - 1), valid


def norm_max_pool(x: Array, field_type: FieldType, window=2, stride=None, padding: str = "VALID") -> Array:
    """Norm max pooling of a steerable map: per field and ``window x window`` window, the whole field
    vector of largest L2 norm: ``(B, H, W, D) -> (B, H', W', D)``.

    Equivariant for any field type (the norm is invariant under an orthogonal representation); the
    output sizes are those of :func:`max_pool` with the same ``window``, ``stride`` and ``padding``.
    The gradient flows to the selected vectors only (the selection itself is not differentiated, so
    there is no NaN at zero norms).

    Ties: the vector selected is the first in the window's row-major order among those of largest
    squared norm (sum of squares, which separates norms a square root may round together). A tie
    between *equal* vectors (e.g. all-zero fields after a nonlinearity, the common case) is harmless.
    A tie between different vectors of exactly equal norm (probability 0 for float data) is broken
    by position, which a rotation of the window changes: exact equivariance can fail there, and no
    rule can avoid that (the two vectors may be images of each other under the group).
    "SAME" pads never win (they rank below every real vector); "CIRCULAR" wraps around.

    Args:
        x: a steerable map ``(B, H, W, field_type.size)``.
        field_type: the :class:`~equilib.fields.FieldType` of ``x`` (any representations).
        window: the window size ``K``, an int or a pair of equal ints.
        stride: an int (or a pair of equal ints); None: ``window``.
        padding: "VALID", "SAME" or "CIRCULAR", case-insensitive (as :func:`max_pool`).

    Returns:
        ``(B, H', W', D)``, in ``x``'s dtype.

    Raises:
        TypeError: ``field_type`` is not a FieldType.
        ValueError: ``x`` is not ``(B, H, W, field_type.size)``, a bad ``window``, ``stride`` or
            ``padding``, or a window larger than the (padded) input.

    Example:
        Two vector fields of C4 (irrep 1) in one 2x2 window: the vector of largest norm is kept whole
        (channelwise max would mix them into ``(3, 2)``).

        >>> import jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, reps
        >>> from equilib import functional as F
        >>> vec = FieldType(Cyclic(4), [reps.irrep(Cyclic(4), 1)])
        >>> x = jnp.array([[3.0, 0.0], [0.0, 2.0], [-4.0, 1.0], [0.5, 0.5]]).reshape(1, 2, 2, 2)
        >>> F.norm_max_pool(x, vec).ravel()
        Array([-4.,  1.], dtype=float32)
    """
    field_type = as_field_type(field_type, "field_type")
    x = field_type.check(x if hasattr(x, "ndim") else jnp.asarray(x), "x", "norm_max_pool")
    window = check_window(window)
    stride = window if stride is None else normalize_stride(stride)
    padding = normalize_padding(padding)
    b, h, w, d = x.shape
    for axis, n in zip("HW", (h, w)):
        lo, hi = padding_pads(n, window, stride, padding)
        if n + lo + hi < window:
            raise ValueError(f"norm_max_pool: `window` (={window}) is larger than the input ({axis}={n}) "
                             f"with padding={padding!r}; expected window <= {n}")
    ih, vh = _window_index(h, window, stride, padding)
    iw, vw = _window_index(w, window, stride, padding)
    oh, ow, kk = ih.shape[0], iw.shape[0], window * window
    xw = jnp.take(x, jnp.asarray(ih.reshape(-1)), axis=1).reshape(b, oh, window, w, d)
    xw = jnp.take(xw, jnp.asarray(iw.reshape(-1)), axis=3).reshape(b, oh, window, ow, window, d)
    xw = jnp.transpose(xw, (0, 1, 3, 2, 4, 5)).reshape(b, oh, ow, kk, d)
    valid = (vh[:, None, :, None] & vw[None, :, None, :]).reshape(1, oh, ow, kk, 1)
    parts = []
    for _, fields, xg in split_by_rep(field_type, xw):  # xg: (B, H', W', K*K, n_fields, size)
        xs = lax.stop_gradient(xg).astype(jnp.promote_types(xg.dtype, jnp.float32))
        sq = jnp.where(jnp.asarray(valid), jnp.sum(jnp.square(xs), axis=-1), -1.0)
        best = jnp.argmax(sq, axis=3)  # first maximum in window order
        parts.append((fields, jnp.take_along_axis(xg, best[:, :, :, None, :, None], axis=3)[:, :, :, 0]))
    return merge_by_rep(parts, len(field_type))

