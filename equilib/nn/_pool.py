"""Pooling over the group axis (Flax NNX)."""

from __future__ import annotations

from equilib._src.checks import GROUP_POOL_MODES
from equilib._src.layers import AxisPool
from equilib.functional import group_pool

__all__ = ["GroupPool"]


class GroupPool(AxisPool):
    """Pool the group axis: ``(B, H, W, C, |G|) -> (B, H, W, C)``.

    The output is invariant to the group-axis permutation, so after it the map only rotates in
    space: a following spatial mean gives a rotation-invariant vector. It has no parameters and
    ends the group part of a :class:`Sequential` (``ends_group_axis``).

    Args:
        mode: "max", "mean" or "norm" (the L2 norm over the group axis, 0 with gradient 0 at 0).

    Raises:
        ValueError: an unknown ``mode``; on call, an input that is not of rank 5.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> nn.GroupPool("max")(jnp.ones((2, 7, 7, 3, 4))).shape
        (2, 7, 7, 3)
    """

    modes = GROUP_POOL_MODES
    what = "a regular map of rank 5 (batch, H, W, C, |G|)"
    ends_group_axis = True  # what Sequential reads: the output has no group axis
    pool = staticmethod(group_pool)
