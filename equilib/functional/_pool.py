"""Pooling over the group axis."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["group_pool", "GROUP_POOL_MODES"]

GROUP_POOL_MODES = ("max", "mean")


def group_pool(x, mode: str = "max"):
    """Pool the group axis of a regular map: ``(..., C, |G|) -> (..., C)``.

    The result is invariant under the group axis permutations of the regular representation,
    so on a regular map ``(B, H, W, C, |G|)`` it turns group equivariance into a plain map that
    transforms only in space.
    """
    if mode not in GROUP_POOL_MODES:
        raise ValueError(f"`mode` must be one of {GROUP_POOL_MODES}, got {mode!r}")
    if x.ndim < 2:
        raise ValueError(f"`x` must have a channel and a group axis (..., C, |G|), got shape {tuple(x.shape)}")
    return jnp.max(x, axis=-1) if mode == "max" else jnp.mean(x, axis=-1)
