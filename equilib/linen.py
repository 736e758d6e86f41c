"""Flax Linen wrappers of equilib's convolutions and batch norms, for models written with ``flax.linen``.

Each wrapper builds the same spec as its NNX layer in :mod:`equilib.nn` (the configuration and
the maths, :mod:`equilib._src.layers`) and declares the same parameters with the same
initialisers: convolutions have params ``kernel`` and ``bias``; batch norms have params
``scale``, ``bias`` and batch stats ``mean``, ``var`` (collection ``"batch_stats"``, to be
marked mutable in training as for ``flax.linen.BatchNorm``). Given the same parameters, a
wrapper and its NNX layer compute the same function. The constructor arguments are those of
the NNX layer without ``rngs`` (Linen draws from the ``"params"`` stream of ``init``); the ones
after the leading positional arguments are keyword-only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY
from typing import Any, Callable, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from equilib._src.checks import check_batch_norm_args
from equilib._src.init import ones, zeros
from equilib._src.layers import ConvSpec, NormSpec, batch_norm_forward, conv_forward, update_running_stats
from equilib.fields import FieldType
from equilib.groups import Group
from equilib.nn._conv import GroupConvSpec, LiftingConvSpec, PlainConvSpec
from equilib.nn._norm import GroupBatchNormSpec
from equilib.nn._scale import ScaleConv1x1Spec, ScaleConvSpec, ScaleLiftingConvSpec
from equilib.nn._steerable import SteerableConvSpec, field_norm_spec

__all__ = ["Conv", "LiftingConv", "GroupConv", "SteerableConv", "ScaleLiftingConv", "ScaleConv",
           "ScaleConv1x1", "GroupBatchNorm", "FieldBatchNorm"]


def _spec_of(module: nn.Module, spec_class: type) -> Any:
    """The spec built from the module's fields of the same names."""
    return spec_class(**{f.name: getattr(module, f.name) for f in dataclasses.fields(spec_class)})


class _Conv(nn.Module):
    """Base of the Linen convolutions: ``spec_class`` built from the fields, ``kernel`` and
    ``bias`` declared as the NNX layer declares them, the forward of the NNX layer."""

    spec_class: ClassVar[type[ConvSpec]]

    _: KW_ONLY
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Optional[Callable] = None
    bias_init: Callable = zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        spec = _spec_of(self, self.spec_class)
        init = spec.default_kernel_init() if self.kernel_init is None else self.kernel_init
        kernel = self.param("kernel", init, spec.kernel_shape(), self.param_dtype)
        shape = spec.bias_shape()
        bias = None if shape is None else self.param("bias", self.bias_init, shape, self.param_dtype)
        return conv_forward(spec, x, kernel, bias, dtype=self.dtype, precision=self.precision)


class _WindowConv(_Conv):
    in_channels: int
    out_channels: int
    kernel_size: Any
    _: KW_ONLY
    stride: Any = 1
    padding: str = "SAME"


class _RegularConv(_WindowConv):
    _: KW_ONLY
    group: Group


class _ScaleConv(_WindowConv):
    _: KW_ONLY
    scales: Any
    sigma: float = 1.0
    max_order: int = 3


class Conv(_WindowConv):
    """Linen version of :class:`equilib.nn.Conv`: ``(B, H, W, C_in) -> (B, H', W', C_out)``.

    Attributes:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: an int or a pair ``(K_h, K_w)``.

    The keyword-only attributes are the arguments of :class:`equilib.nn.Conv` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import linen
        >>> variables = linen.Conv(3, 8, 3).init(jax.random.key(0), jnp.ones((1, 9, 9, 3)))
        >>> jax.tree.map(jnp.shape, variables)
        {'params': {'bias': (8,), 'kernel': (3, 3, 3, 8)}}
    """

    spec_class = PlainConvSpec


class LiftingConv(_RegularConv):
    """Linen version of :class:`equilib.nn.LiftingConv`: ``(B, H, W, C_in) -> (B, H', W', C_out, |G|)``.

    Attributes:
        in_channels: input channels ``C_in``.
        out_channels: output fields ``C_out``.
        kernel_size: an odd int (even only with ``padding="VALID"``).

    The keyword-only attributes (``group``, ...) are the arguments of
    :class:`equilib.nn.LiftingConv` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, linen
        >>> x = jnp.ones((2, 9, 9, 1))
        >>> lift = linen.LiftingConv(1, 4, 3, group=Cyclic(4))
        >>> y = lift.apply(lift.init(jax.random.key(0), x), x)  # 4 fields of |C4| = 4 channels
        >>> print(y.shape)
        (2, 9, 9, 4, 4)
    """

    spec_class = LiftingConvSpec


class GroupConv(_RegularConv):
    """Linen version of :class:`equilib.nn.GroupConv`:
    ``(B, H, W, C_in, |G|) -> (B, H', W', C_out, |G|)``.

    Attributes:
        in_channels: input fields ``C_in``.
        out_channels: output fields ``C_out``.
        kernel_size: as for :class:`LiftingConv`.

    The keyword-only attributes (``group``, ...) are the arguments of
    :class:`equilib.nn.GroupConv` but ``rngs``.

    Example:
        The kernel has an axis over the input's group axis:

        >>> import jax, jax.numpy as jnp
        >>> from equilib import Dihedral, linen
        >>> variables = linen.GroupConv(4, 2, 3, group=Dihedral(4)).init(jax.random.key(0), jnp.ones((1, 9, 9, 4, 8)))
        >>> params = variables["params"]
        >>> params["kernel"].shape
        (3, 3, 4, 8, 2)
    """

    spec_class = GroupConvSpec


class SteerableConv(_Conv):
    """Linen version of :class:`equilib.nn.SteerableConv`:
    ``(B, H, W, in_type.size) -> (B, H', W', out_type.size)``.

    Attributes:
        in_type: the field type of the input.
        out_type: the field type of the output.
        kernel_size: an odd int (even only with ``padding="VALID"``).

    The keyword-only attributes are the arguments of :class:`equilib.nn.SteerableConv` but
    ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, linen, reps
        >>> G = Cyclic(4)
        >>> conv = linen.SteerableConv(FieldType(G, [reps.trivial_rep(G)]), FieldType(G, [reps.regular_rep(G)]), 5)
        >>> x = jnp.ones((1, 9, 9, 1))
        >>> conv.apply(conv.init(jax.random.key(0), x), x).shape
        (1, 9, 9, 4)
    """

    spec_class = SteerableConvSpec

    in_type: FieldType
    out_type: FieldType
    kernel_size: Any
    _: KW_ONLY
    stride: Any = 1
    padding: str = "SAME"
    rings: Any = None
    sigma: Any = None
    frequency_cutoff: Any = None


class ScaleLiftingConv(_ScaleConv):
    """Linen version of :class:`equilib.nn.ScaleLiftingConv`: ``(B, H, W, C_in) -> (B, H', W', C_out, S)``.

    Attributes:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: odd, large enough for the largest scale.

    The keyword-only attributes (``scales``, ...) are the arguments of
    :class:`equilib.nn.ScaleLiftingConv` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import linen
        >>> lift, x = linen.ScaleLiftingConv(1, 4, 7, scales=(1.0, 1.2)), jnp.ones((2, 15, 15, 1))
        >>> lift.apply(lift.init(jax.random.key(0), x), x).shape
        (2, 15, 15, 4, 2)
    """

    spec_class = ScaleLiftingConvSpec


class ScaleConv(_ScaleConv):
    """Linen version of :class:`equilib.nn.ScaleConv`: ``(B, H, W, C_in, S) -> (B, H', W', C_out, S)``.

    Attributes:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: as for :class:`ScaleLiftingConv`.

    The keyword-only attributes (``scales``, ``scale_size``, ...) are the arguments of
    :class:`equilib.nn.ScaleConv` but ``rngs``.

    Example:
        Basis coefficients per input channel, neighbouring scale, basis function and output channel:

        >>> import jax, jax.numpy as jnp
        >>> from equilib import linen
        >>> conv = linen.ScaleConv(4, 2, 7, scales=(1.0, 1.2), scale_size=2)
        >>> params = conv.init(jax.random.key(0), jnp.ones((1, 15, 15, 4, 2)))["params"]
        >>> params["kernel"].shape
        (4, 2, 10, 2)
    """

    spec_class = ScaleConvSpec

    _: KW_ONLY
    scale_size: int = 1


class ScaleConv1x1(_Conv):
    """Linen version of :class:`equilib.nn.ScaleConv1x1`: ``(B, H, W, C_in, S) -> (B, H, W, C_out, S)``.

    Attributes:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.

    The keyword-only attributes are the arguments of :class:`equilib.nn.ScaleConv1x1` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import linen
        >>> conv, x = linen.ScaleConv1x1(4, 2), jnp.ones((1, 5, 5, 4, 3))
        >>> conv.apply(conv.init(jax.random.key(0), x), x).shape
        (1, 5, 5, 2, 3)
    """

    spec_class = ScaleConv1x1Spec

    in_channels: int
    out_channels: int


class _BatchNorm(nn.Module):
    """Base of the Linen batch norms: the NNX layer's spec, parameters, statistics and forward.

    Call with ``use_running_average=True`` for inference; in training apply with
    ``mutable=["batch_stats"]``."""

    _: KW_ONLY
    use_running_average: Optional[bool] = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    axis_name: Any = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def make_spec(self) -> NormSpec:
        """The :class:`~equilib._src.layers.NormSpec` of this layer."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: Optional[bool] = None) -> jax.Array:
        spec = self.make_spec()
        momentum, epsilon = check_batch_norm_args(self.momentum, self.epsilon)
        use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        mean_shape, var_shape = spec.stat_shapes()
        ra_mean = self.variable("batch_stats", "mean", zeros, None, mean_shape, jnp.float32)
        ra_var = self.variable("batch_stats", "var", ones, None, var_shape, jnp.float32)
        scale_shape, bias_shape = spec.param_shapes()
        scale = self.param("scale", ones, scale_shape, self.param_dtype) if self.use_scale else None
        bias = (self.param("bias", zeros, bias_shape, self.param_dtype)
                if self.use_bias and bias_shape else None)
        y, batch = batch_norm_forward(spec, x, scale, bias, ra_mean.value, ra_var.value,
                                      use_running_average=use_ra, epsilon=epsilon, axis_name=self.axis_name,
                                      dtype=self.dtype)
        if batch is not None and not self.is_initializing():
            ra_mean.value, ra_var.value = update_running_stats(ra_mean.value, ra_var.value, batch, momentum)
        return y


class GroupBatchNorm(_BatchNorm):
    """Linen version of :class:`equilib.nn.GroupBatchNorm` (statistics shared over the group axis).

    Attributes:
        num_features: fields ``C`` of the input ``(B, H, W, C, |G|)``.

    The keyword-only attributes (``group``, ...) are the arguments of
    :class:`equilib.nn.GroupBatchNorm` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, linen
        >>> bn, x = linen.GroupBatchNorm(3, group=Cyclic(4)), jnp.ones((2, 5, 5, 3, 4))
        >>> variables = bn.init(jax.random.key(0), x, use_running_average=False)
        >>> y, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
        >>> y.shape, jax.tree.map(jnp.shape, updates)
        ((2, 5, 5, 3, 4), {'batch_stats': {'mean': (3,), 'var': (3,)}})
    """

    num_features: int
    _: KW_ONLY
    group: Group

    def make_spec(self) -> NormSpec:
        return _spec_of(self, GroupBatchNormSpec)


class FieldBatchNorm(_BatchNorm):
    """Linen version of :class:`equilib.nn.FieldBatchNorm` (``kind`` "inner" or "norm").

    Attributes:
        in_type: the field type of the input ``(B, H, W, in_type.size)``.

    The keyword-only attributes (``kind``, ...) are the arguments of
    :class:`equilib.nn.FieldBatchNorm` but ``rngs``.

    Example:
        In evaluation mode the running statistics (initially mean 0, variance 1) normalise:

        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, linen, reps
        >>> bn = linen.FieldBatchNorm(FieldType(Cyclic(4), [reps.regular_rep(Cyclic(4))] * 2))
        >>> x = jnp.ones((2, 5, 5, 8))
        >>> y = bn.apply(bn.init(jax.random.key(0), x, use_running_average=True), x, use_running_average=True)
        >>> float(y.max())
        0.99999...
    """

    in_type: FieldType
    _: KW_ONLY
    kind: str = "inner"

    def make_spec(self) -> NormSpec:
        return field_norm_spec(self.in_type, self.kind)
