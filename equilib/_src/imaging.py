"""Spatial transforms of images about the array centre (see :mod:`equilib.groups` for the convention).

Shared by :mod:`equilib.groups`, :mod:`equilib.functional` (which re-exports ``rotate`` and
``rescale``), :mod:`equilib.transforms` and :mod:`equilib.testing`.

Rotations are counter-clockwise as displayed (row index pointing down), about the point
``((H-1)/2, (W-1)/2)``; the reflection mirrors the width axis. ``(T.x)(p) = x(T^-1 p)``.
"""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
import numpy as np

from equilib._src.tolerances import PIXEL_SNAP, PIXEL_SNAP_TRACED

__all__ = ["rotate", "rotate_flip", "rescale", "bilinear_taps", "normalize_axes"]


def normalize_axes(ndim: int, axes) -> tuple[int, int]:
    """The pair ``axes=(H axis, W axis)`` of an array of rank ``ndim`` as non-negative ints.

    Raises ``TypeError`` unless ``axes`` is a pair of ints, ``ValueError`` if they are out of
    range or name the same axis.
    """
    try:
        a, b = (int(axes[0]), int(axes[1]))
    except (TypeError, IndexError, ValueError):
        raise TypeError(f"`axes` must be a pair of ints (H axis, W axis), got {axes!r}") from None
    if len(axes) != 2:
        raise TypeError(f"`axes` must be a pair of ints (H axis, W axis), got {axes!r}")
    for ax in (a, b):
        if not -ndim <= ax < ndim:
            raise ValueError(f"`axes` {tuple(axes)} out of range for an array of rank {ndim}")
    a, b = a % ndim, b % ndim
    if a == b:
        raise ValueError(f"`axes` must name two different axes, got {tuple(axes)}")
    return a, b


def bilinear_taps(h: int, w: int, angle, flip: bool = False):
    """Bilinear sampling taps of the rotation (after an optional mirror) on an ``h x w`` canvas.

    Returns ``(index, weight)``, each of shape ``(4, h*w)``: output pixel ``p`` (flattened
    row-major) is ``sum_t weight[t, p] * x_flat[index[t, p]]``; taps that fall outside the
    canvas have weight 0 (zero fill). With a Python-number ``angle`` the taps are computed in
    float64 numpy, and sample points within 1e-9 of a pixel are snapped to it (so multiples of
    90 degrees are exact); with a traced ``angle`` they are computed with ``jax.numpy`` and
    snapped within 1e-4 (float32 rounding), so quarter turns stay exact under ``jit``.
    """
    static = isinstance(angle, numbers.Real)
    xp = np if static else jnp
    dtype = np.float64 if static else jnp.result_type(float)
    ch, cw = (h - 1) / 2.0, (w - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x = xp.asarray((cols - cw).reshape(-1), dtype=dtype)
    y = xp.asarray((ch - rows).reshape(-1), dtype=dtype)
    c, s = (math.cos(angle), math.sin(angle)) if static else (jnp.cos(angle), jnp.sin(angle))
    # source point = F^f R(-angle) p
    xs = x * c + y * s
    ys = -x * s + y * c
    if flip:
        xs = -xs
    src_r = ch - ys
    src_c = xs + cw
    if static:
        for arr in (src_r, src_c):
            near = np.round(arr)
            snap = np.abs(arr - near) < PIXEL_SNAP
            arr[snap] = near[snap]
    else:
        # float32 cos/sin of a traced multiple of pi/2 are off by ~1e-7: snap so that quarter
        # turns are exact rot90 under jit too
        src_r = jnp.where(jnp.abs(src_r - jnp.round(src_r)) < PIXEL_SNAP_TRACED, jnp.round(src_r), src_r)
        src_c = jnp.where(jnp.abs(src_c - jnp.round(src_c)) < PIXEL_SNAP_TRACED, jnp.round(src_c), src_c)
    r0 = xp.floor(src_r)
    c0 = xp.floor(src_c)
    fr = src_r - r0
    fc = src_c - c0
    idx, wts = [], []
    for dr, dc, wt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                       (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        r = r0 + dr
        cc = c0 + dc
        valid = (r >= 0) & (r <= h - 1) & (cc >= 0) & (cc <= w - 1)
        flat = xp.where(valid, r * w + cc, 0).astype(xp.int32)
        idx.append(flat)
        wts.append(xp.where(valid, wt, 0.0))
    return xp.stack(idx), xp.stack(wts)


def rotate_flip(x, angle, flip: bool = False, *, axes=(-3, -2), quarter_turns=None):
    """``x`` transformed by the rotation ``angle`` (radians) after an optional mirror.

    If ``quarter_turns`` (an int) is given, the rotation is exact: ``rot90`` that many times
    (H and W swap for odd counts); ``angle`` is then ignored. Otherwise bilinear interpolation
    on the same canvas with zero fill. numpy in, numpy out for the exact path.
    """
    a, b = normalize_axes(x.ndim, axes)
    xp = np if isinstance(x, np.ndarray) else jnp
    if flip:
        x = xp.flip(x, axis=b)
    if quarter_turns is not None:
        return xp.rot90(x, k=int(quarter_turns) % 4, axes=(a, b))
    x = jnp.asarray(x)
    h, w = x.shape[a], x.shape[b]
    idx, wts = bilinear_taps(h, w, angle, False)
    moved = jnp.moveaxis(x, (a, b), (0, 1))
    rest = moved.shape[2:]
    flat = moved.reshape((h * w, -1))
    wts = jnp.asarray(wts, dtype=flat.dtype if jnp.issubdtype(flat.dtype, jnp.floating) else jnp.float32)
    out = jnp.asarray(sum(wts[t][:, None] * jnp.take(flat, jnp.asarray(idx[t]), axis=0) for t in range(4)))
    out = out.astype(jnp.result_type(flat.dtype, wts.dtype)).reshape((h, w) + rest)
    return jnp.moveaxis(out, (0, 1), (a, b))


def rotate(x, angle, *, axes=(-3, -2)):
    """Rotate the spatial ``axes=(H, W)`` of ``x`` by ``angle`` radians, counter-clockwise as
    displayed, about the array centre: bilinear interpolation on the same canvas, zero fill.

    ``out(p) = x(R(-angle) p)`` about the centre ``((H-1)/2, (W-1)/2)``. Shape is preserved, also
    for multiples of 90 degrees (which are exact on square canvases up to rounding of the sample
    points; use :meth:`equilib.groups.Group.transform_image` for the exact ``rot90`` that also
    swaps H and W).

    Args:
        x: an array with two spatial axes, e.g. an image batch ``(B, H, W, C)``, a regular map
            ``(B, H, W, C, |G|)`` with ``axes=(-4, -3)``, or a field ``(B, H, W, D)``.
        angle: the angle in radians, a Python number or a traced scalar
            (``jit``/``vmap``/``grad``-safe).
        axes: the ``(H, W)`` axes (default ``(-3, -2)``, channels-last).

    Returns:
        The rotated array, of ``x``'s shape; float inputs keep their dtype, integers become
        float32.

    Raises:
        TypeError: ``axes`` is not a pair of ints.
        ValueError: ``axes`` out of range for ``x`` or naming the same axis twice.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> image = jnp.zeros((5, 5, 1)).at[0, 2, 0].set(1.0)  # a dot at the top
        >>> F.rotate(image, jnp.pi / 2)[..., 0]  # moves to the left
        Array([[0., 0., 0., 0., 0.],
               [0., 0., 0., 0., 0.],
               [1., 0., 0., 0., 0.],
               [0., 0., 0., 0., 0.],
               [0., 0., 0., 0., 0.]], dtype=float32)
        >>> F.rotate(jnp.ones((2, 9, 9, 3)), 0.3).shape
        (2, 9, 9, 3)
    """
    return rotate_flip(x, angle, False, axes=axes)


def _cubic_weights(t, a=-0.5):
    """Keys' cubic convolution weights for the 4 taps at offsets -1, 0, 1, 2 of fraction ``t``."""
    def k(s):
        s = jnp.abs(s)
        return jnp.where(s <= 1, (a + 2) * s**3 - (a + 3) * s**2 + 1,
                         jnp.where(s < 2, a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a, 0.0))
    return [k(t + 1), k(t), k(1 - t), k(2 - t)]


def rescale(x, factor, *, method: str = "bilinear", axes=(-3, -2)):
    """Rescale the spatial ``axes=(H, W)`` of ``x`` by ``factor`` about the array centre, on the
    same canvas, with zero fill: ``out(p) = x(c + (p - c) / factor)``.

    ``factor < 1`` shrinks the content (the border fills with zeros), ``factor > 1`` enlarges it
    (the border is cropped). No anti-aliasing: blur first when shrinking strongly. It is the
    spatial part of the scale action of :func:`equilib.testing.scale_equivariance_errors`.

    Args:
        x: an array with two spatial axes, e.g. an image batch ``(B, H, W, C)``, or a scale map
            ``(B, H, W, C, S)`` with ``axes=(-4, -3)``.
        factor: the scale factor (> 0), a Python number or a traced scalar
            (``jit``/``vmap``/``grad``-safe).
        method: "bilinear" or "bicubic" (Keys, a = -0.5; taps outside the canvas count as zero).
        axes: the ``(H, W)`` axes (default ``(-3, -2)``, channels-last).

    Returns:
        The rescaled array, of ``x``'s shape; float inputs keep their dtype, others become
        float32.

    Raises:
        ValueError: an unknown ``method``, a Python-number ``factor`` <= 0, or ``axes`` out of
            range / naming the same axis twice.
        TypeError: ``axes`` is not a pair of ints.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> y = F.rescale(jnp.ones((1, 6, 6, 1)), 0.5)  # the content shrinks to the centre
        >>> y.shape, float(y[0, 2, 2, 0]), float(y[0, 0, 0, 0])
        ((1, 6, 6, 1), 1.0, 0.0)
    """
    if method not in ("bilinear", "bicubic"):
        raise ValueError(f"`method` must be 'bilinear' or 'bicubic', got {method!r}")
    if isinstance(factor, numbers.Real) and not float(factor) > 0:
        raise ValueError(f"`factor` must be > 0, got {factor!r}")
    x = jnp.asarray(x)
    a, b = normalize_axes(x.ndim, axes)
    h, w = x.shape[a], x.shape[b]
    moved = jnp.moveaxis(x, (a, b), (0, 1))
    rest = moved.shape[2:]
    img = moved.reshape((h, w, -1))
    dtype = img.dtype if jnp.issubdtype(img.dtype, jnp.floating) else jnp.float32
    img = img.astype(dtype)

    def resample_axis(img, n, axis):
        # separable: source coordinate of each output index along one axis
        c = (n - 1) / 2.0
        src = c + (jnp.arange(n, dtype=dtype) - c) / jnp.asarray(factor, dtype)
        base = jnp.floor(src)
        t = src - base
        offsets, weights = ((0, 1), [1 - t, t]) if method == "bilinear" else ((-1, 0, 1, 2), _cubic_weights(t))
        out = jnp.zeros((), dtype)
        for off, wt in zip(offsets, weights):
            idx = base.astype(jnp.int32) + off
            valid = (idx >= 0) & (idx <= n - 1)
            taps = jnp.take(img, jnp.clip(idx, 0, n - 1), axis=axis)
            shape = [1, 1, 1]
            shape[axis] = n
            out = out + taps * jnp.where(valid, wt, 0.0).astype(dtype).reshape(shape)
        return out

    img = resample_axis(img, h, 0)
    img = resample_axis(img, w, 1)
    return jnp.moveaxis(img.reshape((h, w) + rest), (0, 1), (a, b))
