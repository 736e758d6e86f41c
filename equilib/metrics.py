"""Evaluation metrics.

:func:`shift_consistency`: how often a classifier's top-1 class survives a shift of its input,
the protocol of Zhang (2019, "consistency", random pairs of crop offsets) and of Chaman &
Dokmanic (2021, circular shifts).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from equilib._src.typing import ArrayLike

__all__ = ["SHIFT_MODES", "shift_consistency"]

SHIFT_MODES = ("circular", "crop")


def _normalize_shifts(shifts) -> np.ndarray:
    """``(P, 2, 2)`` int array of shift pairs ``((dy1, dx1), (dy2, dx2))``."""
    try:
        arr = np.asarray(shifts)
    except Exception:  # ragged input
        raise ValueError(f"`shifts` must be an array of shape (S, 2) or (P, 2, 2), got {shifts!r}") from None
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise ValueError(f"`shifts` must hold integer pixel offsets, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    if arr.ndim == 2 and arr.shape[1] == 2 and arr.shape[0] >= 1:
        arr = np.stack([np.zeros_like(arr), arr], axis=1)  # each shift against the unshifted input
    elif not (arr.ndim == 3 and arr.shape[1:] == (2, 2) and arr.shape[0] >= 1):
        raise ValueError(f"`shifts` must have shape (S, 2) (each shift against no shift) or (P, 2, 2) "
                         f"(pairs of shifts), with at least one row, got shape {arr.shape}")
    return arr.astype(np.int64)


def _labels(out, n: int) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim == 2 and out.shape[0] == n:
        return np.argmax(out, axis=-1)
    if out.ndim == 1 and out.shape[0] == n and np.issubdtype(out.dtype, np.integer):
        return out
    raise ValueError(f"`predict_fn` must return logits of shape ({n}, num_classes) or integer labels of "
                     f"shape ({n},) for a batch of {n} images, got shape {out.shape} and dtype {out.dtype}")


def shift_consistency(predict_fn: Callable, images: ArrayLike, shifts, mode: str = "circular", *,
                      crop_size=None, batch_size: int | None = None) -> float:
    """Percentage (0..100) of (image, shift pair) cases whose predicted class is the same under
    both shifts of the pair.

    ``predict_fn`` maps a batch ``(N, H', W', ...)`` to logits ``(N, K)`` (argmax taken) or to
    integer labels ``(N,)``; it should be deterministic (eval mode). ``images`` is
    ``(N, H, W, ...)``, spatial axes 1 and 2.

    ``shifts`` is ``(P, 2, 2)``: ``P`` pairs ``((dy1, dx1), (dy2, dx2))``, each applied to every
    image (Zhang's protocol: random pairs), or ``(S, 2)``: each shift compared with the
    unshifted image (shift ``(0, 0)``; the APS protocol).

    ``mode``:

    * ``"circular"``: ``jnp.roll``-like circular shift of the spatial axes by ``(dy, dx)``
      (any integers).
    * ``"crop"``: the network sees the window ``images[:, dy:dy + h, dx:dx + w]`` (Zhang's
      ImageNet protocol: two crops of a larger image). ``crop_size`` ``(h, w)`` (or an int)
      defaults to the largest window that fits every shift: ``H - max dy``, ``W - max dx``;
      shifts must be >= 0 and the windows must fit.

    Each distinct shift is evaluated once; ``batch_size`` (default ``N``) images per call of
    ``predict_fn``, the last call padded to that size so that a jitted ``predict_fn`` compiles
    once. Pass ``batch_size = N * (number of distinct shifts)`` to make a single call.

    Args:
        predict_fn: ``(N', H', W', ...) -> (N', K)`` logits or ``(N',)`` integer labels.
        images: ``(N, H, W, ...)``, spatial axes 1 and 2 (numpy or jax).
        shifts: ``(S, 2)`` shifts ``(dy, dx)`` or ``(P, 2, 2)`` pairs of them, integers.
        mode: ``"circular"`` or ``"crop"`` (:data:`SHIFT_MODES`).
        crop_size: with ``mode="crop"``, the window ``(h, w)`` or an int; default the largest
            that fits every shift.
        batch_size: images per call of ``predict_fn`` (default ``N``).

    Returns:
        The percentage of consistent (image, pair) cases, a Python float in ``[0, 100]``.

    Raises:
        TypeError: ``predict_fn`` is not callable.
        ValueError: an unknown ``mode``; ``images`` not a non-empty batch of rank >= 3;
            ``shifts`` of the wrong shape or not integers; ``crop_size`` without
            ``mode="crop"``, negative shifts or windows that do not fit with it;
            ``batch_size`` not a positive integer; ``predict_fn`` returning neither
            ``(n, K)`` logits nor ``(n,)`` integer labels.

    Example:
        A classifier of the mean pixel is shift-invariant; one of the top-left pixels is not:

        >>> import numpy as np
        >>> from equilib.metrics import shift_consistency
        >>> images = np.random.default_rng(0).normal(size=(4, 8, 8, 1))
        >>> def by_mean(x):
        ...     m = x.mean(axis=(1, 2, 3))
        ...     return np.stack([m, -m], axis=-1)  # logits (N, 2)
        >>> shift_consistency(by_mean, images, [(1, 0), (3, 5)])
        100.0
        >>> def by_corner(x):
        ...     return np.stack([x[:, 0, 0, 0], x[:, 0, 1, 0]], axis=-1)
        >>> shift_consistency(by_corner, images, [(1, 0), (0, 1)]) < 100
        True
    """
    if not callable(predict_fn):
        raise TypeError(f"`predict_fn` must be callable, got {type(predict_fn).__name__}")
    if mode not in SHIFT_MODES:
        raise ValueError(f"`mode` must be one of {SHIFT_MODES}, got {mode!r}")
    images = np.asarray(images)
    if images.ndim < 3 or images.shape[0] < 1:
        raise ValueError(f"`images` must be a non-empty batch (N, H, W, ...), got shape {images.shape}")
    flat = _normalize_shifts(shifts).reshape(-1, 2)  # (2P, 2): the shifts of every pair, in order
    batch_size = _check_batch_size(images.shape[0] if batch_size is None else batch_size)
    crop = _crop_window(flat, images.shape[1:3], crop_size, mode)
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    preds = _predict_shifted(predict_fn, images, unique, crop, batch_size)  # (U, N)
    idx = inverse.reshape(-1, 2)  # (P, 2) indices into `unique`
    same = preds[idx[:, 0]] == preds[idx[:, 1]]  # (P, N)
    return float(100.0 * np.mean(same))


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _crop_window(flat: np.ndarray, size: tuple[int, int], crop_size, mode: str) -> tuple[int, int] | None:
    """The ``(h, w)`` of the crop windows with ``mode="crop"`` (checked to fit every shift of
    ``flat`` in images of spatial ``size``); ``None`` with ``mode="circular"``."""
    h, w = size
    if mode != "crop":
        if crop_size is not None:
            raise ValueError(f"`crop_size` is only used with mode='crop', got mode={mode!r}")
        return None
    if np.any(flat < 0):
        raise ValueError(f"`shifts` must be >= 0 with mode='crop' (crop offsets), got "
                         f"{flat[np.any(flat < 0, axis=1)][0].tolist()}")
    max_dy, max_dx = int(flat[:, 0].max()), int(flat[:, 1].max())
    if crop_size is None:
        ch, cw = h - max_dy, w - max_dx
    else:
        ch, cw = (crop_size, crop_size) if isinstance(crop_size, (int, np.integer)) else tuple(crop_size)
    if ch < 1 or cw < 1 or max_dy + ch > h or max_dx + cw > w:
        raise ValueError(f"crop windows of size {(ch, cw)} at offsets up to {(max_dy, max_dx)} do not fit "
                         f"images of size {(h, w)}")
    return ch, cw


def _shifted(images: np.ndarray, shift, crop: tuple[int, int] | None) -> np.ndarray:
    """The batch seen under one shift: rolled (``crop`` is None) or the window at that offset."""
    dy, dx = int(shift[0]), int(shift[1])
    if crop is None:
        return np.roll(images, (dy, dx), axis=(1, 2))
    return images[:, dy:dy + crop[0], dx:dx + crop[1]]


def _predict_shifted(predict_fn: Callable, images: np.ndarray, unique: np.ndarray,
                     crop: tuple[int, int] | None, batch_size: int) -> np.ndarray:
    """``(U, N)`` labels of every image under every distinct shift of ``unique``, streamed through
    ``predict_fn`` in calls of exactly ``batch_size`` images (the last one padded)."""
    n = images.shape[0]
    preds = np.empty((len(unique), n), dtype=np.int64)

    def run(chunk, rows):
        m = len(chunk)
        if m < batch_size:  # pad to the common batch shape; the extra predictions are dropped
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - m, axis=0)], axis=0)
        preds[rows[:, 0], rows[:, 1]] = _labels(predict_fn(chunk), batch_size)[:m]

    # the (distinct shift x image) stack, in chunks of batch_size; rows hold (shift, image) indices
    pending, pending_rows, count = [], [], 0
    for u, s in enumerate(unique):
        pending.append(_shifted(images, s, crop))
        pending_rows.append(np.stack([np.full(n, u), np.arange(n)], axis=1))
        count += n
        while count >= batch_size:
            stack, rows = np.concatenate(pending), np.concatenate(pending_rows)
            run(stack[:batch_size], rows[:batch_size])
            pending, pending_rows = [stack[batch_size:]], [rows[batch_size:]]
            count -= batch_size
    if count:
        run(np.concatenate(pending), np.concatenate(pending_rows))
    return preds
