"""Spatial pooling modules (Flax NNX): ``MaxPool``, ``AvgPool``, ``BlurPool``, ``MaxBlurPool``,
``APSPool`` and ``GlobalPool``.

They hold configuration only (no parameters) and call :mod:`equilib.functional`; each works on
plain maps ``(B, H, W, C)`` and regular maps ``(B, H, W, C, |G|)`` (the group axis is pooled
like a channel axis, so the layers commute with :meth:`Group.transform_regular` when their
sampling is symmetric). Strided layers whose samples sit asymmetrically about the centre of the
input warn at trace time (:class:`equilib.ExactnessWarning`, collected by
:func:`equilib.check_exact`); ``APSPool`` adapts its phase instead and never warns.
"""

from __future__ import annotations

from flax import nnx

from equilib import functional as F
from equilib._exact import warn_if_inexact
from equilib.functional._conv import normalize_padding, normalize_stride
from equilib.functional._spatial_pool import (
    check_aps_stride,
    check_blur_padding,
    check_criterion,
    check_filter_size,
    check_global_mode,
    check_group_mode,
    check_map,
    check_window,
)

__all__ = ["MaxPool", "AvgPool", "BlurPool", "MaxBlurPool", "APSPool", "GlobalPool"]


def _blur_pad_name(padding: str) -> str:
    # the blur pads are those of "SAME" (periodic for "circular"): the name warn_if_inexact knows
    return "CIRCULAR" if padding == "circular" else "SAME"


class MaxPool(nnx.Module):
    """Max pooling, ``(B, H, W, ...) -> (B, H', W', ...)`` (:func:`equilib.functional.max_pool`).

    ``window`` (square), ``stride`` (default ``window``), ``padding`` "VALID" | "SAME" | "CIRCULAR".
    Exactly rot90/flip-equivariant when the windows sit symmetrically (e.g. 2x2, stride 2, even
    size); otherwise warns. Strided max pooling is **not** shift-invariant (Zhang 2019): it
    commutes only with shifts by multiples of the stride.
    """

    def __init__(self, window=2, stride=None, padding: str = "VALID"):
        self.window = check_window(window)
        self.stride = self.window if stride is None else normalize_stride(stride)
        self.padding = normalize_padding(padding)

    def __call__(self, x):
        x = check_map(x, "MaxPool")
        warn_if_inexact("MaxPool", x.shape[1:3], self.window, self.stride, self.padding)
        return F.max_pool(x, self.window, self.stride, self.padding)


class AvgPool(nnx.Module):
    """Average pooling, ``(B, H, W, ...) -> (B, H', W', ...)`` (:func:`equilib.functional.avg_pool`).

    Arguments as :class:`MaxPool`, plus ``count_include_pad`` for ``"SAME"`` padding.
    """

    def __init__(self, window=2, stride=None, padding: str = "VALID", *, count_include_pad: bool = True):
        self.window = check_window(window)
        self.stride = self.window if stride is None else normalize_stride(stride)
        self.padding = normalize_padding(padding)
        self.count_include_pad = bool(count_include_pad)

    def __call__(self, x):
        x = check_map(x, "AvgPool")
        warn_if_inexact("AvgPool", x.shape[1:3], self.window, self.stride, self.padding)
        return F.avg_pool(x, self.window, self.stride, self.padding,
                          count_include_pad=self.count_include_pad)


class BlurPool(nnx.Module):
    """BlurPool (Zhang 2019): binomial blur of size ``filter_size`` (1..7), then subsampling by
    ``stride``: ``(B, H, W, ...) -> (B, ceil(H/s), ceil(W/s), ...)``
    (:func:`equilib.functional.blur_pool`).

    ``padding``: "reflect" (default, as Zhang) | "circular" | "zeros". Rot90/flips are exact for
    odd ``filter_size`` with stride 2 on odd sizes (or stride 1); otherwise it warns. Not exactly
    shift-invariant (it reduces aliasing, it does not remove it): see the measured consistency in
    ``tests/test_pooling.py``.
    """

    def __init__(self, filter_size: int = 3, stride=2, padding: str = "reflect"):
        self.filter_size = check_filter_size(filter_size)
        self.stride = normalize_stride(stride)
        self.padding = check_blur_padding(padding)

    def __call__(self, x):
        x = check_map(x, "BlurPool")
        warn_if_inexact(f"BlurPool(padding={self.padding!r}, pads as in 'SAME')", x.shape[1:3],
                        self.filter_size, self.stride, _blur_pad_name(self.padding))
        return F.blur_pool(x, self.filter_size, self.stride, self.padding)


class MaxBlurPool(nnx.Module):
    """MaxBlurPool (Zhang 2019): max over ``window`` with stride 1, then :class:`BlurPool`
    (:func:`equilib.functional.max_blur_pool`). The max stage is unpadded for "reflect"/"zeros"
    (``H -> H - window + 1``) and periodic for "circular". With the defaults it is exactly
    rot90/flip-equivariant on even sizes (16 -> 15 -> 8); each stage warns where it is not.
    """

    def __init__(self, window=2, filter_size: int = 3, stride=2, padding: str = "reflect"):
        self.window = check_window(window)
        self.filter_size = check_filter_size(filter_size)
        self.stride = normalize_stride(stride)
        self.padding = check_blur_padding(padding)

    def __call__(self, x):
        x = check_map(x, "MaxBlurPool")
        max_padding = "CIRCULAR" if self.padding == "circular" else "VALID"
        warn_if_inexact("MaxBlurPool (max stage)", x.shape[1:3], self.window, 1, max_padding)
        h, w = x.shape[1:3]
        if max_padding == "VALID":
            h, w = h - self.window + 1, w - self.window + 1
        if h >= 1 and w >= 1:
            warn_if_inexact(f"MaxBlurPool (blur stage, padding={self.padding!r}, pads as in 'SAME')",
                            (h, w), self.filter_size, self.stride, _blur_pad_name(self.padding))
        return F.max_blur_pool(x, self.window, self.filter_size, self.stride, self.padding)


class APSPool(nnx.Module):
    """Adaptive polyphase sampling (Chaman & Dokmanic 2021), stride 2:
    ``(B, H, W, ...) -> (B, H/2, W/2, ...)`` for even ``H``, ``W`` (:func:`equilib.functional.aps_pool`).

    Keeps, per sample, the polyphase component of largest norm (``criterion`` "l2" | "l1" |
    "linf"), chosen jointly over channels and the group axis; optional circular binomial blur
    first (``filter_size`` > 1). A network of circular convolutions, APS layers and a global
    pooling is exactly invariant to circular shifts, and with group convolutions also to
    rot90/flips (all 256 shifts x all D4 elements tested). Tie-breaking and its limits: see
    :func:`equilib.functional.aps_pool`.

    ``return_phase=True`` makes the call return ``(y, phase)`` (``(B, 2)`` row/col offsets);
    ``__call__(x, phase=...)`` reuses a given phase (e.g. a skip branch). Never warns: the phase
    adapts to the input, which is what makes it exact on even sizes.
    """

    def __init__(self, stride=2, *, criterion: str = "l2", filter_size: int = 1,
                 return_phase: bool = False):
        self.stride = check_aps_stride(stride)
        self.criterion = check_criterion(criterion)
        self.filter_size = check_filter_size(filter_size)
        self.return_phase = bool(return_phase)

    def __call__(self, x, phase=None):
        x = check_map(x, "APSPool")
        return F.aps_pool(x, self.stride, criterion=self.criterion, filter_size=self.filter_size,
                          phase=phase, return_phase=self.return_phase)


class GlobalPool(nnx.Module):
    """Global pooling to an invariant vector, ``(B, H, W, C[, |G|]) -> (B, C)``
    (:func:`equilib.functional.global_pool`): ``mode`` "mean" | "max" over space (and the group
    axis, if ``group_mode`` is None), or first ``group_mode`` "max" | "mean" | "norm" over the
    group axis of a regular map.
    """

    def __init__(self, mode: str = "mean", *, group_mode: str | None = None):
        self.mode = check_global_mode(mode)
        self.group_mode = check_group_mode(group_mode)

    def __call__(self, x):
        x = check_map(x, "GlobalPool")
        return F.global_pool(x, self.mode, group_mode=self.group_mode)
