"""Batch normalisation whose statistics are shared over the group axis."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

__all__ = ["batch_moments", "normalize"]


def batch_moments(x, *, feature_axis: int = -2, axis_name=None):
    """Mean and (biased) variance per feature, over every axis but ``feature_axis``.

    For a regular map ``(B, H, W, C, |G|)`` with ``feature_axis=-2`` the statistics are pooled
    over batch, space and the group axis, so normalisation commutes with the group action.
    Computed in float32 (at least). ``axis_name`` averages across devices under ``pmap``/``shard_map``.
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


def normalize(x, mean, var, scale=None, bias=None, *, feature_axis: int = -2, epsilon: float = 1e-5):
    """``(x - mean) / sqrt(var + epsilon) * scale + bias``, broadcasting the per-feature
    vectors along ``feature_axis``."""
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
