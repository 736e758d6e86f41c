"""Pooling over the group axis."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["group_pool", "GROUP_POOL_MODES"]

GROUP_POOL_MODES = ("max", "mean", "norm")


def group_pool(x, mode: str = "max"):
    """Pool the group axis of a regular map: ``(..., C, |G|) -> (..., C)`` by its maximum,
    mean or L2 norm (``mode`` "max", "mean", "norm").

    The result is invariant under the group axis permutations of the regular representation,
    so on a regular map ``(B, H, W, C, |G|)`` it turns group equivariance into a plain map that
    transforms only in space.
    """
    if mode not in GROUP_POOL_MODES:
        raise ValueError(f"`mode` must be one of {GROUP_POOL_MODES}, got {mode!r}")
    if x.ndim < 2:
        raise ValueError(f"`x` must have a channel and a group axis (..., C, |G|), got shape {tuple(x.shape)}")
    if mode == "max":
        return jnp.max(x, axis=-1)
    if mode == "mean":
        return jnp.mean(x, axis=-1)
    # L2 norm over the group axis; the epsilon keeps the gradient finite (0) at x = 0
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=-1) + 1e-12) - 1e-6
