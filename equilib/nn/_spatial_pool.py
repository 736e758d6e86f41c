"""Spatial pooling modules (Flax NNX): ``MaxPool``, ``AvgPool``, ``BlurPool``, ``MaxBlurPool``,
``APSPool`` and ``GlobalPool``.

They hold configuration only (no parameters) and call :mod:`equilib.functional`; each works on
plain maps ``(B, H, W, C)`` and regular maps ``(B, H, W, C, |G|)``, and ``MaxPool``, ``AvgPool``,
``BlurPool`` and ``GlobalPool`` with ``spatial_dims=3`` on volumes (the group axis is pooled
like a channel axis, so the layers commute with :meth:`Group.transform_regular` when their
sampling is symmetric). Strided layers whose samples sit asymmetrically about the centre of the
input warn at trace time (:class:`equilib.ExactnessWarning`, collected by
:func:`equilib.check_exact`); ``APSPool`` adapts its phase instead and never warns.
"""

from __future__ import annotations

from flax import nnx

from equilib import functional as F
from equilib._exact import warn_if_inexact
from equilib._src import checks
from equilib._src.typing import Array

__all__ = ["MaxPool", "AvgPool", "BlurPool", "MaxBlurPool", "APSPool", "GlobalPool"]


def _blur_pad_name(padding: str) -> str:
    # the blur pads are those of "SAME" (periodic for "circular"): the name warn_if_inexact knows
    return "CIRCULAR" if padding == "circular" else "SAME"


class MaxPool(nnx.Module):
    """Max pooling, ``(B, H, W, ...) -> (B, H', W', ...)``, or with ``spatial_dims=3`` over cubic
    windows of a volume ``(B, D, H, W, ...)`` (:func:`equilib.functional.max_pool`).

    Exactly rot90/flip-equivariant (volumes: the 24 rotations of ``Octahedral()``) when the windows
    sit symmetrically (e.g. 2x2, stride 2, even size); otherwise warns. Strided max pooling is
    **not** shift-invariant (Zhang 2019): it commutes only with shifts by multiples of the stride.

    Args:
        window: the square window, an int or a pair of equal ints.
        stride: None (default): ``window``.
        padding: "VALID" (default), "SAME" or "CIRCULAR".
        spatial_dims: 2 (maps) or 3 (volumes; ``Octahedral().spatial_dims``).

    Raises:
        ValueError: a bad argument; on call, an input that is not of rank 4 or 5 (5 or 6 for volumes).

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> nn.MaxPool(2)(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
        Array([[ 5.,  7.],
               [13., 15.]], dtype=float32)
    """

    def __init__(self, window=2, stride=None, padding: str = "VALID", *, spatial_dims: int = 2):
        self.window = checks.check_window(window)
        self.stride = self.window if stride is None else checks.normalize_stride(stride)
        self.padding = checks.normalize_padding(padding)
        self.spatial_dims = checks.check_spatial_dims(spatial_dims)

    def __call__(self, x: Array) -> Array:
        d = self.spatial_dims
        x = checks.check_map(x, "MaxPool", spatial_dims=d)
        warn_if_inexact("MaxPool", x.shape[1:1 + d], self.window, self.stride, self.padding)
        return F.max_pool(x, self.window, self.stride, self.padding, spatial_dims=d)


class AvgPool(nnx.Module):
    """Average pooling, ``(B, H, W, ...) -> (B, H', W', ...)``, or with ``spatial_dims=3`` of a
    volume ``(B, D, H, W, ...)`` (:func:`equilib.functional.avg_pool`).

    Args:
        window, stride, padding: as for :class:`MaxPool`.
        count_include_pad: with "SAME" padding, divide by the full window (True) or by the
            number of input pixels in it.
        spatial_dims: 2 (maps) or 3 (volumes), as for :class:`MaxPool`.

    Raises:
        ValueError: a bad argument; on call, an input that is not of rank 4 or 5 (5 or 6 for volumes).

    Example:
        A regular map ``(B, H, W, C, |G|)`` is pooled in space only:

        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> nn.AvgPool(2)(jnp.ones((2, 8, 8, 3, 4))).shape
        (2, 4, 4, 3, 4)
    """

    def __init__(self, window=2, stride=None, padding: str = "VALID", *, count_include_pad: bool = True,
                 spatial_dims: int = 2):
        self.window = checks.check_window(window)
        self.stride = self.window if stride is None else checks.normalize_stride(stride)
        self.padding = checks.normalize_padding(padding)
        self.count_include_pad = bool(count_include_pad)
        self.spatial_dims = checks.check_spatial_dims(spatial_dims)

    def __call__(self, x: Array) -> Array:
        d = self.spatial_dims
        x = checks.check_map(x, "AvgPool", spatial_dims=d)
        warn_if_inexact("AvgPool", x.shape[1:1 + d], self.window, self.stride, self.padding)
        return F.avg_pool(x, self.window, self.stride, self.padding,
                          count_include_pad=self.count_include_pad, spatial_dims=d)


class BlurPool(nnx.Module):
    """BlurPool (Zhang 2019): binomial blur of size ``filter_size``, then subsampling by
    ``stride``: ``(B, H, W, ...) -> (B, ceil(H/s), ceil(W/s), ...)``, or with ``spatial_dims=3`` of a
    volume ``(B, D, H, W, ...)`` along all three axes (:func:`equilib.functional.blur_pool`).

    Rot90/flips are exact for odd ``filter_size`` with stride 2 on odd sizes (or stride 1);
    otherwise it warns. Not exactly shift-invariant (it reduces aliasing, it does not remove
    it): see the measured consistency in ``tests/test_pooling.py``.

    Args:
        filter_size: the binomial filter's size, 1..7.
        stride: the subsampling factor.
        padding: "reflect" (default, as Zhang), "circular" or "zeros".
        spatial_dims: 2 (maps) or 3 (volumes), as for :class:`MaxPool`.

    Raises:
        ValueError: a bad argument; on call, an input that is not of rank 4 or 5 (5 or 6 for volumes).

    Example:
        A constant map stays constant (the filter sums to 1; reflect padding):

        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> y = nn.BlurPool(3, stride=2)(jnp.full((1, 9, 9, 1), 2.0))
        >>> y.shape, float(y.min()), float(y.max())
        ((1, 5, 5, 1), 2.0, 2.0)
    """

    def __init__(self, filter_size: int = 3, stride=2, padding: str = "reflect", *, spatial_dims: int = 2):
        self.filter_size = checks.check_filter_size(filter_size)
        self.stride = checks.normalize_stride(stride)
        self.padding = checks.check_blur_padding(padding)
        self.spatial_dims = checks.check_spatial_dims(spatial_dims)

    def __call__(self, x: Array) -> Array:
        d = self.spatial_dims
        x = checks.check_map(x, "BlurPool", spatial_dims=d)
        warn_if_inexact(f"BlurPool(padding={self.padding!r}, pads as in 'SAME')", x.shape[1:1 + d],
                        self.filter_size, self.stride, _blur_pad_name(self.padding))
        return F.blur_pool(x, self.filter_size, self.stride, self.padding, spatial_dims=d)


class MaxBlurPool(nnx.Module):
    """MaxBlurPool (Zhang 2019): max over ``window`` with stride 1, then :class:`BlurPool`
    (:func:`equilib.functional.max_blur_pool`).

    The max stage is unpadded for "reflect"/"zeros" (``H -> H - window + 1``) and periodic for
    "circular". With the defaults it is exactly rot90/flip-equivariant on even sizes
    (16 -> 15 -> 8); each stage warns where it is not.

    Args:
        window: the max stage's square window.
        filter_size, stride, padding: the blur stage's, as for :class:`BlurPool`.

    Raises:
        ValueError: a bad argument; on call, an input that is not of rank 4 or 5.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> nn.MaxBlurPool()(jnp.ones((1, 16, 16, 2))).shape
        (1, 8, 8, 2)
    """

    def __init__(self, window=2, filter_size: int = 3, stride=2, padding: str = "reflect"):
        self.window = checks.check_window(window)
        self.filter_size = checks.check_filter_size(filter_size)
        self.stride = checks.normalize_stride(stride)
        self.padding = checks.check_blur_padding(padding)

    def __call__(self, x: Array) -> Array:
        x = checks.check_map(x, "MaxBlurPool")
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

    Keeps, per sample, the polyphase component of largest norm, chosen jointly over channels
    and the group axis. A network of circular convolutions, APS layers and a global pooling is
    exactly invariant to circular shifts, and with group convolutions also to rot90/flips (all
    256 shifts x all D4 elements tested). Tie-breaking and its limits: see
    :func:`equilib.functional.aps_pool`. Never warns: the phase adapts to the input, which is
    what makes it exact on even sizes.

    Args:
        stride: 2 (stack two layers for 4).
        criterion: the norm that picks the component, "l2", "l1" or "linf".
        filter_size: a circular binomial blur first if > 1.
        return_phase: make the call return ``(y, phase)`` (``(B, 2)`` row/col offsets);
            ``__call__(x, phase=...)`` reuses a given phase (e.g. a skip branch).

    Raises:
        ValueError: a bad argument; on call, an input that is not of rank 4 or 5.

    Example:
        The kept component follows a circular shift of the input:

        >>> import jax, jax.numpy as jnp
        >>> from equilib import nn
        >>> aps = nn.APSPool(return_phase=True)
        >>> import numpy as np
        >>> x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8, 8, 2)), jnp.float32)
        >>> (y, p), (y_shifted, _) = aps(x), aps(jnp.roll(x, 1, axis=2))
        >>> bool(jnp.all(jnp.sort(y.ravel()) == jnp.sort(y_shifted.ravel())))
        True
    """

    def __init__(self, stride=2, *, criterion: str = "l2", filter_size: int = 1,
                 return_phase: bool = False):
        self.stride = checks.check_aps_stride(stride)
        self.criterion = checks.check_criterion(criterion)
        self.filter_size = checks.check_filter_size(filter_size)
        self.return_phase = bool(return_phase)

    def __call__(self, x: Array, phase: Array | None = None) -> Array | tuple[Array, Array]:
        x = checks.check_map(x, "APSPool")
        return F.aps_pool(x, self.stride, criterion=self.criterion, filter_size=self.filter_size,
                          phase=phase, return_phase=self.return_phase)


class GlobalPool(nnx.Module):
    """Global pooling to an invariant vector, ``(B, H, W, C[, |G|]) -> (B, C)``, or with
    ``spatial_dims=3`` ``(B, D, H, W, C[, |G|]) -> (B, C)`` (:func:`equilib.functional.global_pool`).
    It ends the group part of a :class:`Sequential` (``ends_group_axis``).

    Args:
        mode: "mean" or "max" over space (and the group axis, if ``group_mode`` is None).
        group_mode: None, or "max", "mean" or "norm": first pools the group axis of a regular
            map that way.
        spatial_dims: 2 (maps) or 3 (volumes; ``Octahedral().spatial_dims``).

    Raises:
        ValueError: a bad argument; on call, an input that is not of rank 4 or 5 (5 or 6 for volumes).

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> nn.GlobalPool("max", group_mode="mean")(jnp.ones((2, 5, 5, 3, 4))).shape
        (2, 3)
    """

    ends_group_axis = True  # the output (B, C) has no group axis: it ends a Sequential's group part

    def __init__(self, mode: str = "mean", *, group_mode: str | None = None, spatial_dims: int = 2):
        self.mode = checks.check_global_mode(mode)
        self.group_mode = checks.check_group_mode(group_mode)
        self.spatial_dims = checks.check_spatial_dims(spatial_dims)

    def __call__(self, x: Array) -> Array:
        x = checks.check_map(x, "GlobalPool", spatial_dims=self.spatial_dims)
        return F.global_pool(x, self.mode, group_mode=self.group_mode, spatial_dims=self.spatial_dims)
