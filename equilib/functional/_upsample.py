"""Spatial upsampling (nearest / bilinear) as precomputed interpolation matrices.

Each spatial axis gets a numpy table ``A`` of shape ``(m, n)`` (float32, rows summing to 1),
built at trace time from the sizes alone, and the map is contracted with the two tables, one
per axis. The trailing axes (channels, group, scale or field components) are untouched, so the
operation commutes with any pointwise field representation.

Exactness rule: ``upsample`` commutes exactly (to fp32 rounding) with rot90 and flips iff every
table is mirror symmetric, ``A[::-1, ::-1] == A``, and both axes get the same mapping (a square
input with the same scale on both axes, or ``size=(m, m)`` on a square input). Bilinear tables are
always mirror symmetric (built as the first half and its mirror image, so bit-exactly); nearest
ones are unless a rounding tie occurs (see :func:`interpolation_matrix`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from equilib._src.checks import check_choice, is_int
from equilib._src.typing import Array

__all__ = ["UPSAMPLE_METHODS", "check_upsample_args", "interpolation_matrix", "upsample", "upsample_size"]

UPSAMPLE_METHODS = ("nearest", "bilinear")


def _bilinear_row(j: int, n: int, m: int, align_corners: bool) -> np.ndarray:
    # the source coordinate num/den, in integers so that the split into index + fraction is exact
    if align_corners:
        num, den = (j * (n - 1), m - 1) if m > 1 else (n - 1, 2)  # m == 1: the centre
    else:
        num, den = max((2 * j + 1) * n - m, 0), 2 * m  # centres to centres, clamped at 0
    i0, rem = divmod(num, den)
    row = np.zeros(n, np.float64)
    if i0 >= n - 1:
        row[n - 1] = 1.0  # clamped at the last pixel
    else:
        t = rem / den
        row[i0] += 1.0 - t
        row[i0 + 1] += t
    return row


def interpolation_matrix(n: int, m: int, method: str = "bilinear", align_corners: bool = True) -> np.ndarray:
    """The ``(m, n)`` table that resamples an axis of length ``n`` to length ``m``.

    Coordinates: bilinear with ``align_corners=True`` maps output ``j`` to input
    ``j * (n - 1) / (m - 1)`` (the corners coincide; ``m == 1`` takes the centre); with
    ``align_corners=False`` to ``(j + 0.5) * n / m - 0.5`` clamped to ``[0, n - 1]`` (centres to
    centres, as ``jax.image.resize`` when upsampling; no antialiasing when downsampling).
    ``"nearest"`` takes input ``floor((j + 0.5) * n / m)`` (the centre-to-centre coordinate
    rounded half up, as ``jax.image.resize``) and ignores ``align_corners``. A tie (the coordinate
    exactly halfway between two pixels) breaks the mirror symmetry, e.g. ``n=2, m=3`` or
    ``n=4, m=6``; integer factors never tie. Bilinear rows are computed for the first half and
    mirrored, so the table is bit-exactly symmetric.

    Args:
        n: the input length (>= 1).
        m: the output length (>= 1).
        method: "nearest" or "bilinear".
        align_corners: the bilinear coordinate convention (above).

    Returns:
        A float32 numpy array ``(m, n)`` whose rows sum to 1.

    Raises:
        ValueError: ``n`` or ``m`` not a positive int, or an unknown ``method``.

    Example:
        >>> from equilib import functional as F
        >>> F.interpolation_matrix(2, 3)
        array([[1. , 0. ],
               [0.5, 0.5],
               [0. , 1. ]], dtype=float32)
        >>> F.interpolation_matrix(2, 3, "nearest")  # a tie at the middle row: not mirror symmetric
        array([[1., 0.],
               [0., 1.],
               [0., 1.]], dtype=float32)
    """
    for name, v in (("n", n), ("m", m)):
        if not is_int(v) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {v!r}")
    check_choice("method", method, UPSAMPLE_METHODS)
    n, m = int(n), int(m)
    table = np.zeros((m, n), np.float64)
    if method == "nearest":
        table[np.arange(m), np.minimum(((2 * np.arange(m) + 1) * n) // (2 * m), n - 1)] = 1.0
        return table.astype(np.float32)
    half = (m + 1) // 2
    for j in range(half):
        table[j] = _bilinear_row(j, n, m, bool(align_corners))
    table[half:] = table[: m - half][::-1, ::-1]  # the mirror image of the first half
    table = table.astype(np.float32)
    if m % 2:  # the middle row is its own mirror image: symmetrise it bit-exactly
        mid = table[m // 2]
        table[m // 2] = (mid + mid[::-1]) * np.float32(0.5)
    return table


def _pair(value: Any, name: str, integer: bool) -> tuple[Any, Any]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2:
        raise ValueError(f"`{name}` must be a number or a pair (h, w), got {value!r}")
    for v in values:
        ok = is_int(v) if integer else isinstance(v, numbers.Real) and not isinstance(v, bool)
        if not ok or not (v > 0 and math.isfinite(v)):
            what = "a positive int" if integer else "a positive finite number"
            raise ValueError(f"`{name}` must be {what} or a pair of them, got {value!r}")
    return values[0], values[1]


def check_upsample_args(scale_factor: Any, size: Any, method: str) -> tuple[Any, Any]:
    """Validate the arguments of :func:`upsample`; return ``size`` or ``scale_factor`` as a pair."""
    check_choice("method", method, UPSAMPLE_METHODS)
    if (scale_factor is None) == (size is None):
        raise ValueError(f"exactly one of `scale_factor` and `size` must be given, got "
                         f"scale_factor={scale_factor!r}, size={size!r}")
    if size is not None:
        return _pair(size, "size", integer=True)
    return _pair(scale_factor, "scale_factor", integer=False)


def upsample_size(spatial: Any, scale_factor: Any = None, size: Any = None, method: str = "bilinear",
                  align_corners: bool = True) -> tuple[int, int]:
    """The output size ``(H', W')`` of :func:`upsample` on a map of spatial size ``(H, W)``.

    From ``scale_factor`` ``s``: ``(n - 1) * s + 1`` (rounded) for bilinear with
    ``align_corners=True`` (``n -> 2n - 1`` at ``s = 2``, so that a stride-2 "SAME" convolution
    with an odd kernel maps it back to ``n``), else ``round(n * s)`` (halves rounded up).

    Args:
        spatial: the input size ``(H, W)``.
        scale_factor: a positive number or a pair ``(s_h, s_w)``; exactly one of it and ``size``.
        size: the output size, an int or a pair ``(H', W')``.
        method: "nearest" or "bilinear".
        align_corners: as :func:`interpolation_matrix`.

    Returns:
        ``(H', W')``, two Python ints >= 1.

    Raises:
        ValueError: both or neither of ``scale_factor`` and ``size``, a non-positive one, an
            unknown ``method``, or an output size below 1.

    Example:
        >>> from equilib import functional as F
        >>> F.upsample_size((5, 5), 2), F.upsample_size((5, 5), 2, method="nearest")
        ((9, 9), (10, 10))
    """
    factors = check_upsample_args(scale_factor, size, method)
    if size is not None:
        return int(factors[0]), int(factors[1])
    corners = method == "bilinear" and align_corners
    out = tuple(int(math.floor((n - 1) * s + 0.5)) + 1 if corners else int(math.floor(n * s + 0.5))
                for n, s in zip((int(spatial[0]), int(spatial[1])), factors))
    if min(out) < 1:
        raise ValueError(f"`scale_factor`={scale_factor!r} maps the input size {tuple(spatial)} to {out}: "
                         f"expected an output of at least one pixel")
    return out[0], out[1]


def upsample(x: Array, scale_factor: Any = None, *, size: Any = None, method: str = "bilinear",
             align_corners: bool = True) -> Array:
    """Resample the spatial axes (1, 2) of a map: plain, regular, scale or steerable.

    ``y[b, i, j, ...] = sum_{h, w} A_H[i, h] * A_W[j, w] * x[b, h, w, ...]`` with the tables of
    :func:`interpolation_matrix` (two contractions; exact, differentiable, cheap on small maps).
    The trailing axes are untouched, so it is equivariant for any field representation.

    Exactness: commutes exactly with rot90/flips iff both tables are mirror symmetric
    (``A[::-1, ::-1] == A``: always for bilinear, for nearest unless a rounding tie occurs, e.g.
    ``5 -> 7``... see :func:`interpolation_matrix`) and both axes get the same mapping (a square
    input with one scale factor, or ``size=(m, m)``). :class:`equilib.nn.Upsample` warns
    (:class:`equilib.ExactnessWarning`) otherwise.

    Args:
        x: a map of rank >= 4, ``(B, H, W, ...)``.
        scale_factor: a positive number or a pair ``(s_h, s_w)``; the output size is that of
            :func:`upsample_size`. Exactly one of ``scale_factor`` and ``size``.
        size: the output size ``(H', W')`` (an int for a square output).
        method: "nearest" or "bilinear".
        align_corners: the bilinear coordinate convention (ignored by "nearest"); True (default)
            maps the corner pixels onto each other.

    Returns:
        ``(B, H', W', ...)``, in ``x``'s dtype (float32 for an integer ``x``).

    Raises:
        ValueError: ``x`` of rank < 4, both or neither of ``scale_factor``/``size``, a
            non-positive factor or size, or an unknown ``method``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> x = jnp.arange(4.0).reshape(1, 2, 2, 1)
        >>> F.upsample(x, 2)[0, :, :, 0]
        Array([[0. , 0.5, 1. ],
               [1. , 1.5, 2. ],
               [2. , 2.5, 3. ]], dtype=float32)
        >>> F.upsample(jnp.ones((2, 5, 5, 3, 4)), 2).shape  # a regular map: (B, H, W, C, |G|)
        (2, 9, 9, 3, 4)
    """
    x = x if hasattr(x, "ndim") else jnp.asarray(x)
    if x.ndim < 4:
        raise ValueError(f"`x` must have rank >= 4 (batch, H, W, ...), got shape {tuple(x.shape)}")
    out = upsample_size(x.shape[1:3], scale_factor, size, method, align_corners)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    tables = []
    for n, m in zip(x.shape[1:3], out):
        table = interpolation_matrix(n, m, method, align_corners)
        # the identity (same size, no shift) is skipped
        tables.append(None if n == m and np.array_equal(table, np.eye(n, dtype=np.float32)) else table)
    return _apply_tables(x, tables[0], tables[1])


@jax.jit
def _apply_tables(x: Array, table_h: Array | None, table_w: Array | None) -> Array:
    # one compiled program per shape (not one per primitive when called eagerly)
    for axis, table in ((1, table_h), (2, table_w)):
        if table is None:
            continue
        # contract axis `axis` with the table's columns and put the new axis back in place; HIGHEST
        # so that fp32 maps are not rounded to TF32/bf16 on accelerators
        y = lax.dot_general(table.astype(x.dtype), x, (((1,), (axis,)), ((), ())), precision=lax.Precision.HIGHEST)
        x = jnp.moveaxis(y, 0, axis)
    return x
