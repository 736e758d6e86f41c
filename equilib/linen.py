"""Thin Flax Linen wrappers of the functional core, for models written with ``flax.linen``.

Same maths, shapes, parameter names and initialisation as the NNX modules in
:mod:`equilib.nn`: ``LiftingConv`` and ``GroupConv`` have params ``weight`` and ``bias``;
``GroupBatchNorm`` has params ``scale``, ``bias`` and batch stats ``mean``, ``var`` (collection
``"batch_stats"``, to be marked mutable in training as for ``flax.linen.BatchNorm``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from equilib import functional as F
from equilib._exact import warn_if_inexact
from equilib.functional._conv import normalize_padding, normalize_stride
from equilib.functional._kernels import kernel_dof
from equilib.groups import Group, as_group
from equilib.nn._init import zeros
from equilib.nn._conv import _init, check_group_kernel, check_input, check_kernel_size, check_positive_int

__all__ = ["LiftingConv", "GroupConv", "GroupBatchNorm"]


class LiftingConv(nn.Module):
    """Linen version of :class:`equilib.nn.LiftingConv`: ``(B, H, W, C_in) -> (B, H', W', C_out, |G|)``."""

    in_channels: int
    out_channels: int
    kernel_size: int
    group: Group
    stride: int = 1
    padding: str = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Optional[Callable] = None
    bias_init: Callable = zeros

    @nn.compact
    def __call__(self, x):
        group = as_group(self.group)
        cin = check_positive_int("in_channels", self.in_channels)
        cout = check_positive_int("out_channels", self.out_channels)
        k = check_kernel_size(self.kernel_size, square=True)
        stride, padding = normalize_stride(self.stride), normalize_padding(self.padding)
        check_group_kernel(k, padding, "LiftingConv")
        check_input(x, 4, "(batch, H, W, C)", cin, "LiftingConv")
        warn_if_inexact("LiftingConv", x.shape[1:3], k, stride, padding)
        init = _init(self.kernel_init, -2, -1, scale=k * k / kernel_dof(group, k))
        w = self.param("weight", init, (k, k, cin, cout), self.param_dtype)
        b = self.param("bias", self.bias_init, (cout,), self.param_dtype) if self.use_bias else None
        if self.dtype is not None:
            x, w = jnp.asarray(x, self.dtype), jnp.asarray(w, self.dtype)
            b = None if b is None else jnp.asarray(b, self.dtype)
        return F.lifting_conv(x, w, group, stride=stride, padding=padding, bias=b,
                              precision=self.precision)


class GroupConv(nn.Module):
    """Linen version of :class:`equilib.nn.GroupConv`: ``(B, H, W, C_in, |G|) -> (B, H', W', C_out, |G|)``."""

    in_channels: int
    out_channels: int
    kernel_size: int
    group: Group
    stride: int = 1
    padding: str = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Optional[Callable] = None
    bias_init: Callable = zeros

    @nn.compact
    def __call__(self, x):
        group = as_group(self.group)
        cin = check_positive_int("in_channels", self.in_channels)
        cout = check_positive_int("out_channels", self.out_channels)
        k = check_kernel_size(self.kernel_size, square=True)
        stride, padding = normalize_stride(self.stride), normalize_padding(self.padding)
        check_group_kernel(k, padding, "GroupConv")
        check_input(x, 5, "(batch, H, W, C, |G|)", cin, "GroupConv", group)
        warn_if_inexact("GroupConv", x.shape[1:3], k, stride, padding)
        init = _init(self.kernel_init, (-3, -2), -1, scale=k * k / kernel_dof(group, k))
        w = self.param("weight", init, (k, k, cin, group.order, cout), self.param_dtype)
        b = self.param("bias", self.bias_init, (cout,), self.param_dtype) if self.use_bias else None
        if self.dtype is not None:
            x, w = jnp.asarray(x, self.dtype), jnp.asarray(w, self.dtype)
            b = None if b is None else jnp.asarray(b, self.dtype)
        return F.group_conv(x, w, group, stride=stride, padding=padding, bias=b,
                            precision=self.precision)


class GroupBatchNorm(nn.Module):
    """Linen version of :class:`equilib.nn.GroupBatchNorm` (statistics shared over the group axis).

    Call with ``use_running_average=True`` for inference; in training apply with
    ``mutable=["batch_stats"]``.
    """

    num_features: int
    group: Group
    use_running_average: Optional[bool] = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    axis_name: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, use_running_average: Optional[bool] = None):
        group = as_group(self.group)
        c = check_positive_int("num_features", self.num_features)
        check_input(x, 5, "(batch, H, W, C, |G|)", c, "GroupBatchNorm", group)
        use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype) if self.use_scale else None
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype) if self.use_bias else None
        if use_ra:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, var = F.batch_moments(x, feature_axis=-2, axis_name=self.axis_name)
            if not self.is_initializing():
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1 - m) * mean
                ra_var.value = m * ra_var.value + (1 - m) * var
        return F.normalize(x, mean, var, scale, bias, feature_axis=-2, epsilon=self.epsilon)
