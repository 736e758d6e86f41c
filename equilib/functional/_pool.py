"""Pooling over the group axis."""

from __future__ import annotations

import jax.numpy as jnp

from equilib._src.checks import GROUP_POOL_MODES
from equilib._src.norms import l2_norm
from equilib._src.typing import Array

__all__ = ["group_pool", "GROUP_POOL_MODES"]


def group_pool(x: Array, mode: str = "max") -> Array:
    """Pool the group axis of a regular map: ``(..., C, |G|) -> (..., C)``.

    The result is invariant under the group axis permutations of the regular representation,
    so on a regular map ``(B, H, W, C, |G|)`` it turns group equivariance into a plain map that
    transforms only in space.

    Args:
        x: a map with a channel and a group axis, ``(..., C, |G|)``.
        mode: "max", "mean" or "norm" (the Euclidean norm over the group axis, with value and
            gradient 0 where it is 0).

    Returns:
        ``(..., C)``, in ``x``'s dtype.

    Raises:
        ValueError: ``mode`` is not one of :data:`GROUP_POOL_MODES`, or ``x`` has rank < 2.

    Example:
        >>> import jax.numpy as jnp
        >>> group_pool(jnp.array([[3.0, 4.0, 0.0, 0.0]]), "norm")
        Array([5.], dtype=float32)
    """
    if mode not in GROUP_POOL_MODES:
        raise ValueError(f"`mode` must be one of {GROUP_POOL_MODES}, got {mode!r}")
    if x.ndim < 2:
        raise ValueError(f"`x` must have a channel and a group axis (..., C, |G|), got shape {tuple(x.shape)}")
    if mode == "max":
        return jnp.max(x, axis=-1)
    if mode == "mean":
        return jnp.mean(x, axis=-1)
    return l2_norm(x, axis=-1)
