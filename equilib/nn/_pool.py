"""Pooling over the group axis (Flax NNX)."""

from __future__ import annotations

from flax import nnx

from equilib.functional import group_pool
from equilib.functional._pool import GROUP_POOL_MODES

__all__ = ["GroupPool"]


class GroupPool(nnx.Module):
    """Pool the group axis: ``(B, H, W, C, |G|) -> (B, H, W, C)`` with ``mode`` "max", "mean"
    or "norm" (L2 norm over the group axis).

    The output is invariant to the group-axis permutation, so after it the map only rotates in
    space: a following spatial mean gives a rotation-invariant vector.
    """

    def __init__(self, mode: str = "max"):
        if mode not in GROUP_POOL_MODES:
            raise ValueError(f"`mode` must be one of {GROUP_POOL_MODES}, got {mode!r}")
        self.mode = mode

    def __call__(self, x):
        if x.ndim != 5:
            raise ValueError(f"GroupPool expects a regular map of rank 5 (batch, H, W, C, |G|), "
                             f"got shape {tuple(x.shape)}")
        return group_pool(x, self.mode)
