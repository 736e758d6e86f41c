"""Batch normalisation of regular feature maps (Flax NNX)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from equilib.functional import batch_moments, normalize
from equilib.groups import Group, as_group
from equilib.nn._conv import check_input, check_positive_int
from equilib.nn._init import ones, zeros

__all__ = ["GroupBatchNorm"]


class GroupBatchNorm(nnx.Module):
    """Batch norm of a regular map ``(B, H, W, C, |G|)`` with statistics, scale and bias per
    field ``c``, shared over batch, space **and the group axis**, so it commutes with the group
    action (it is equivariant, and exactly so, as a per-channel affine map).

    Training mode (``use_running_average=False``) normalises with the batch statistics and
    updates the running ones: ``ra = momentum * ra + (1 - momentum) * batch`` (Flax's
    convention). ``model.eval()`` switches to the running statistics.

    Parameters: ``scale``, ``bias`` ``(C,)``; batch stats: ``mean``, ``var`` ``(C,)``.
    """

    def __init__(self, num_features: int, *, group: Group, use_running_average: bool = False,
                 momentum: float = 0.99, epsilon: float = 1e-5, use_scale: bool = True,
                 use_bias: bool = True, axis_name=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.group = as_group(group)
        self.num_features = check_positive_int("num_features", num_features)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be in [0, 1], got {momentum!r}")
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be > 0, got {epsilon!r}")
        self.use_running_average = bool(use_running_average)
        self.momentum, self.epsilon, self.axis_name = float(momentum), float(epsilon), axis_name
        c = self.num_features
        self.mean = nnx.BatchStat(zeros(None, (c,), jnp.float32))
        self.var = nnx.BatchStat(ones(None, (c,), jnp.float32))
        self.scale = nnx.Param(ones(None, (c,), param_dtype)) if use_scale else None
        self.bias = nnx.Param(zeros(None, (c,), param_dtype)) if use_bias else None

    def __call__(self, x, *, use_running_average: bool | None = None):
        check_input(x, 5, "(batch, H, W, C, |G|)", self.num_features, "GroupBatchNorm", self.group)
        if use_running_average is None:
            use_running_average = self.use_running_average
        if use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            mean, var = batch_moments(x, feature_axis=-2, axis_name=self.axis_name)
            m = self.momentum
            self.mean[...] = m * self.mean[...] + (1 - m) * mean
            self.var[...] = m * self.var[...] + (1 - m) * var
        return normalize(x, mean, var, None if self.scale is None else self.scale[...],
                         None if self.bias is None else self.bias[...], feature_axis=-2,
                         epsilon=self.epsilon)
