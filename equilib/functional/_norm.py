"""Batch normalisation whose statistics are shared over the group axis."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from equilib._src.typing import Array

__all__ = ["batch_moments", "normalize"]


def batch_moments(x: Array, *, feature_axis: int = -2, axis_name=None) -> tuple[Array, Array]:
    """Mean and (biased) variance per feature, over every axis but ``feature_axis``.

    For a regular map ``(B, H, W, C, |G|)`` with ``feature_axis=-2`` the statistics are pooled
    over batch, space and the group axis, so normalisation commutes with the group action (a
    scale map ``(B, H, W, C, S)`` is pooled over its scales alike). ``var = E[x^2] - E[x]^2``,
    clipped at 0, computed in float32 at least.

    Args:
        x: a map with a feature axis, e.g. ``(B, H, W, C, |G|)``, ``(B, H, W, C, S)``, or
            ``(B, H, W, C)`` with ``feature_axis=-1``.
        feature_axis: the axis of the features ``C`` (default ``-2``, the channel axis of a
            regular map).
        axis_name: a mapped axis name (``pmap``/``shard_map``) to average the moments across
            devices, or None.

    Returns:
        ``(mean, var)``, each ``(C,)``, in ``x``'s dtype promoted with float32.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> x = jnp.arange(2 * 3 * 3 * 2 * 4, dtype=jnp.float32).reshape(2, 3, 3, 2, 4)
        >>> mean, var = F.batch_moments(x)
        >>> mean.shape, var.shape, mean.dtype
        ((2,), (2,), dtype('float32'))
        >>> F.batch_moments(jnp.array([[1.0, 2.0], [3.0, 6.0]]), feature_axis=-1)
        (Array([2., 4.], dtype=float32), Array([1., 4.], dtype=float32))
    """
    fa = feature_axis % x.ndim
    axes = tuple(a for a in range(x.ndim) if a != fa)
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(xf, axis=axes)
    mean2 = jnp.mean(jnp.square(xf), axis=axes)
    if axis_name is not None:
        mean, mean2 = lax.pmean((mean, mean2), axis_name)
    var = jnp.maximum(mean2 - jnp.square(mean), 0.0)
    return mean, var


def normalize(x: Array, mean: Array, var: Array, scale: Array | None = None,
              bias: Array | None = None, *, feature_axis: int = -2, epsilon: float = 1e-5) -> Array:
    """``(x - mean) / sqrt(var + epsilon) * scale + bias``, per feature along ``feature_axis``.

    The per-feature vectors are broadcast along ``feature_axis`` (every other axis, the group or
    scale axis included, shares them), and cast to ``x``'s dtype.

    Args:
        x: a map with a feature axis, e.g. a regular map ``(B, H, W, C, |G|)``.
        mean: ``(C,)``, e.g. from :func:`batch_moments`.
        var: ``(C,)``, the variance.
        scale: ``(C,)``, or None (no scaling).
        bias: ``(C,)``, or None (no offset).
        feature_axis: the axis of the features ``C`` (default ``-2``).
        epsilon: added to ``var`` before the square root.

    Returns:
        The normalised map, of ``x``'s shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> x = jnp.array([[1.0, 2.0], [3.0, 6.0]])
        >>> mean, var = F.batch_moments(x, feature_axis=-1)
        >>> F.normalize(x, mean, var, scale=jnp.array([1.0, 2.0]), bias=jnp.array([0.0, 10.0]),
        ...             feature_axis=-1, epsilon=0.0)
        Array([[-1.,  8.],
               [ 1., 12.]], dtype=float32)
    """
    fa = feature_axis % x.ndim
    shape = [1] * x.ndim
    shape[fa] = x.shape[fa]

    def b(v):
        return jnp.reshape(v, shape)

    y = (x - b(mean).astype(x.dtype)) * lax.rsqrt(b(var) + epsilon).astype(x.dtype)
    if scale is not None:
        y = y * b(scale).astype(x.dtype)
    if bias is not None:
        y = y + b(bias).astype(x.dtype)
    return y
