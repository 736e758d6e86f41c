"""Flax Linen wrappers of equilib's convolutions and batch norms, for models written with ``flax.linen``.

Each wrapper builds the same spec as its NNX layer in :mod:`equilib.nn` (the configuration and
the maths, :mod:`equilib._src.layers`) and declares the same parameters with the same
initialisers: convolutions have params ``kernel`` and ``bias``; batch norms have params
``scale``, ``bias`` and batch stats ``mean``, ``var`` (collection ``"batch_stats"``, to be
marked mutable in training as for ``flax.linen.BatchNorm``). Given the same parameters, a
wrapper and its NNX layer compute the same function. The constructor arguments are those of
the NNX layer without ``rngs`` (Linen draws from the ``"params"`` stream of ``init``); the ones
after the leading positional arguments are keyword-only. Layers without parameters or state
(``MaxPool``, ``BlurPool``, ``GroupPool``, ``Upsample``, ``FieldMaxPool``, ``NormMaxPool``,
``AdaptiveAvgPool``/``AdaptiveMaxPool``, ...) have no wrapper: inside a Linen module call their
functions in :mod:`equilib.functional` (``max_pool``, ``upsample``, ``norm_max_pool``, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY
from typing import Any, Callable, ClassVar, Optional, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

from equilib._src.checks import check_batch_norm_args, check_ndim
from equilib._src.fieldops import require_permutation
from equilib._src.init import ones, zeros
from equilib._src.layers import ConvSpec, NormSpec, batch_norm_forward, conv_forward, update_running_stats
from equilib.fields import FieldType
from equilib.groups import Group
from equilib.nn._conv import GroupConvSpec, LiftingConvSpec, PlainConvSpec
from equilib.nn._dense import ConvTransposeSpec, GroupConvTransposeSpec, SteerableConvTransposeSpec
from equilib.nn._dropout import check_rate, field_dropout, group_dropout, pointwise_dropout
from equilib.nn._heads import FieldLinearSpec
from equilib.nn._layer_norm import FieldInstanceNormSpec, GroupNormSpec, check_epsilon, per_sample_norm_forward
from equilib.nn._norm import GroupBatchNormSpec
from equilib.nn._scale import ScaleConv1x1Spec, ScaleConvSpec, ScaleLiftingConvSpec
from equilib.nn._steerable import SteerableConvSpec, field_norm_spec, steerable_conv_spec

__all__ = ["Conv", "LiftingConv", "GroupConv", "SteerableConv", "ScaleLiftingConv", "ScaleConv",
           "ScaleConv1x1", "GroupBatchNorm", "FieldBatchNorm",
           "FieldLinear", "FieldNorm", "GroupNorm", "LayerNorm",
           "FieldDropout", "PointwiseDropout", "GroupDropout",
           "ConvTranspose", "GroupConvTranspose", "SteerableConvTranspose"]


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

    def _spec(self) -> Any:
        return _spec_of(self, self.spec_class)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        spec = self._spec()
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
    ``(B, H, W, in_type.size) -> (B, H', W', out_type.size)`` (volumes ``(B, D, H, W, C)`` with
    field types of :mod:`equilib.fields3d`).

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

    def _spec(self) -> Any:  # planar or 3D by the field type, as the NNX layer
        return steerable_conv_spec(self.in_type, self.out_type, self.kernel_size, stride=self.stride,
                                   padding=self.padding, use_bias=self.use_bias, rings=self.rings, sigma=self.sigma,
                                   frequency_cutoff=self.frequency_cutoff)


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


def _norm_params(module: Any, spec: Any, scale_init: Callable, bias_init: Callable) -> tuple[Any, Any]:
    """The ``scale`` and ``bias`` params of a norm, declared as its NNX layer declares them (shapes
    from ``spec.param_shapes()``; no ``bias`` where the spec has none); called in a compact method."""
    scale_shape, bias_shape = spec.param_shapes()
    scale = module.param("scale", scale_init, scale_shape, module.param_dtype) if module.use_scale else None
    bias = (module.param("bias", bias_init, bias_shape, module.param_dtype)
            if module.use_bias and bias_shape else None)
    return scale, bias


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
        scale, bias = _norm_params(self, spec, ones, zeros)
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


# --- equivariant heads and per-sample norms ---------------------------------------------------
class FieldLinear(_Conv):
    """Linen version of :class:`equilib.nn.FieldLinear`: ``(..., in_type.size) -> (..., out_type.size)``.

    Attributes:
        in_type: the field type of the input feature vectors.
        out_type: the field type of the output (same group).

    The keyword-only attributes are the arguments of :class:`equilib.nn.FieldLinear` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Dihedral, FieldType, linen, reps
        >>> G = Dihedral(4)
        >>> head = linen.FieldLinear(FieldType(G, [reps.regular_rep(G)]), FieldType(G, [reps.trivial_rep(G)] * 2))
        >>> x = jnp.ones((3, 8))
        >>> head.apply(head.init(jax.random.key(0), x), x).shape
        (3, 2)
    """

    spec_class = FieldLinearSpec

    in_type: FieldType
    out_type: FieldType


class _PerSampleNorm(nn.Module):
    """Base of the Linen per-sample norms: the NNX layer's spec, ``scale``/``bias`` params and
    forward (no batch statistics)."""

    _: KW_ONLY
    epsilon: float = 1e-6
    use_scale: bool = True
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def make_spec(self) -> Any:
        """The spec of this layer (:mod:`equilib.nn._layer_norm`)."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        spec = self.make_spec()
        epsilon = check_epsilon(self.epsilon)
        scale, bias = _norm_params(self, spec, getattr(self, "scale_init", ones), getattr(self, "bias_init", zeros))
        return per_sample_norm_forward(spec, x, scale, bias, epsilon=epsilon, dtype=self.dtype)


class FieldNorm(_PerSampleNorm):
    """Linen version of :class:`equilib.nn.FieldNorm` (instance norm of a steerable map).

    Attributes:
        in_type: the field type of the input ``(B, H, W, in_type.size)``.

    The keyword-only attributes (``kind``, ``epsilon`` (default 1e-5), ...) are the arguments of
    :class:`equilib.nn.FieldNorm` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, linen, reps
        >>> norm = linen.FieldNorm(FieldType(Cyclic(4), [reps.regular_rep(Cyclic(4))] * 2), kind="inner")
        >>> x = jnp.arange(2 * 5 * 5 * 8.0).reshape(2, 5, 5, 8)
        >>> variables = norm.init(jax.random.key(0), x)
        >>> norm.apply(variables, x).shape, jax.tree.map(jnp.shape, variables)
        ((2, 5, 5, 8), {'params': {'bias': (2,), 'scale': (2,)}})
    """

    in_type: FieldType
    _: KW_ONLY
    kind: str = "norm"
    epsilon: float = 1e-5

    def make_spec(self) -> Any:
        return FieldInstanceNormSpec(in_type=self.in_type, kind=self.kind)


class _FlaxNorm(_PerSampleNorm):
    _: KW_ONLY
    group: Optional[Group] = None
    scale_init: Callable = ones
    bias_init: Callable = zeros


class GroupNorm(_FlaxNorm):
    """Linen version of :class:`equilib.nn.GroupNorm` (regular, plain or steerable maps).

    Attributes:
        num_features: ``C`` (an int: regular map with ``group``, plain map without) or a FieldType.
        num_groups: the number of groups of whole fields.

    The keyword-only attributes (``group``, ``epsilon``, ...) are the arguments of
    :class:`equilib.nn.GroupNorm` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, linen
        >>> gn, x = linen.GroupNorm(4, 2, group=Cyclic(4)), jnp.ones((1, 5, 5, 4, 4))
        >>> jax.tree.map(jnp.shape, gn.init(jax.random.key(0), x))
        {'params': {'bias': (4,), 'scale': (4,)}}
    """

    num_features: Any
    num_groups: int

    def make_spec(self) -> Any:
        return GroupNormSpec(num_features=self.num_features, num_groups=self.num_groups, group=self.group)


class LayerNorm(_FlaxNorm):
    """Linen version of :class:`equilib.nn.LayerNorm` (per pixel, over all fields).

    Attributes:
        num_features: ``C`` (an int: regular map with ``group``, plain map without) or a FieldType.

    The keyword-only attributes (``group``, ``epsilon``, ...) are the arguments of
    :class:`equilib.nn.LayerNorm` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, linen
        >>> ln, x = linen.LayerNorm(2, group=Cyclic(2)), jnp.array([1.0, 3.0, 1.0, 3.0]).reshape(1, 1, 1, 2, 2)
        >>> ln.apply(ln.init(jax.random.key(0), x), x).ravel()
        Array([-0.99999..., 0.99999..., -0.99999..., 0.99999...], dtype=float32)
    """

    num_features: Any

    def make_spec(self) -> Any:
        return GroupNormSpec(num_features=self.num_features, group=self.group, per_pixel=True)


# --- dropout ------------------------------------------------------------------------------------
class _Dropout(nn.Module):
    """Base of the Linen dropouts: the NNX layer's mask (:mod:`equilib.nn._dropout`), with the key
    from ``self.make_rng(rng_collection)`` (``rngs={"dropout": key}`` in ``apply``) or the call's
    ``rng``; subclasses define the field ``rate`` and :meth:`mask`."""

    _: KW_ONLY
    deterministic: Optional[bool] = None
    rng_collection: str = "dropout"

    def check(self, x: jax.Array) -> jax.Array:
        """Validate the input (also when deterministic)."""
        return x

    def mask(self, x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
        """The dropout of ``x`` with ``key``."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: Optional[bool] = None,
                 rng: Optional[jax.Array] = None) -> jax.Array:
        x = self.check(jnp.asarray(x))
        rate = check_rate(cast(Any, self).rate)  # a field of each subclass (after its positional ones)
        if nn.merge_param("deterministic", self.deterministic, deterministic) or rate == 0.0:
            return x
        return self.mask(x, self.make_rng(self.rng_collection) if rng is None else rng, rate)


class FieldDropout(_Dropout):
    """Linen version of :class:`equilib.nn.FieldDropout`: drops whole fields of ``(B, H, W, D)``
    (one mask value per sample and field, the same at every pixel).

    Attributes:
        in_type: the field type of the input ``(B, H, W, in_type.size)``.
        rate: the probability to drop a field, in [0, 1].

    The keyword-only attributes are ``deterministic`` (may also be passed to the call) and
    ``rng_collection`` (default ``"dropout"``); the call takes an optional key ``rng``. Given the
    same key, the output is that of the NNX layer.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import SO2, FieldType, linen, reps
        >>> drop = linen.FieldDropout(FieldType(SO2(), [reps.irrep(SO2(), 1)] * 3), 0.5)
        >>> x = jnp.ones((1, 2, 2, 6))
        >>> y = drop.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
        >>> y.shape, bool((y == y[:, :1, :1]).all())
        ((1, 2, 2, 6), True)
    """

    in_type: FieldType
    rate: float

    def check(self, x: jax.Array) -> jax.Array:
        return self.in_type.check(x, "x", "FieldDropout")

    def mask(self, x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
        return field_dropout(x, key, rate, self.in_type)


class PointwiseDropout(_Dropout):
    """Linen version of :class:`equilib.nn.PointwiseDropout`: elementwise dropout of fields whose
    representations permute channels (other fields are refused, when the module is called).

    Attributes:
        in_type: the field type of the input ``(B, H, W, in_type.size)``.
        rate: the probability to drop an element, in [0, 1].

    Keyword-only attributes and call as :class:`FieldDropout`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, linen, reps
        >>> drop = linen.PointwiseDropout(FieldType(Cyclic(4), [reps.regular_rep(Cyclic(4))]), 0.5)
        >>> y = drop.apply({}, jnp.ones((1, 4, 4, 4)), deterministic=False, rng=jax.random.key(0))
        >>> sorted(set(y.ravel().tolist()))
        [0.0, 2.0]
    """

    in_type: FieldType
    rate: float

    def check(self, x: jax.Array) -> jax.Array:
        require_permutation(self.in_type, "PointwiseDropout", "an elementwise mask is not equivariant "
                            "(even in distribution) for it: use FieldDropout")
        return self.in_type.check(x, "x", "PointwiseDropout")

    def mask(self, x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
        return pointwise_dropout(x, key, rate)


class GroupDropout(_Dropout):
    """Linen version of :class:`equilib.nn.GroupDropout`: drops whole fields ``c`` (all ``|G|``
    channels) of a regular map ``(B, H, W, C, |G|)``, the same at every pixel.

    Attributes:
        rate: the probability to drop a field, in [0, 1].

    Keyword-only attributes and call as :class:`FieldDropout`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import linen
        >>> drop = linen.GroupDropout(0.5, deterministic=True)
        >>> x = jnp.ones((1, 3, 3, 2, 4))
        >>> bool((drop.apply({}, x) == x).all())
        True
    """

    rate: float

    def check(self, x: jax.Array) -> jax.Array:
        check_ndim(x, 5, "a regular map of rank 5 (batch, H, W, C, |G|)", "GroupDropout")
        return x

    def mask(self, x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
        return group_dropout(x, key, rate)


class ConvTranspose(_WindowConv):
    """Linen version of :class:`equilib.nn.ConvTranspose`: ``(B, n_h, n_w, C_in) -> (B, m_h, m_w, C_out)``.

    Attributes:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: an int or a pair ``(K_h, K_w)``.
        output_padding: extra output pixels at the bottom/right, ``0 <= output_padding < stride``.

    The other keyword-only attributes are the arguments of :class:`equilib.nn.ConvTranspose` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import linen
        >>> up = linen.ConvTranspose(3, 2, 3, stride=2)
        >>> x = jnp.ones((1, 5, 5, 3))
        >>> up.apply(up.init(jax.random.key(0), x), x).shape
        (1, 9, 9, 2)
    """

    spec_class = ConvTransposeSpec

    _: KW_ONLY
    output_padding: int = 0


class GroupConvTranspose(_RegularConv):
    """Linen version of :class:`equilib.nn.GroupConvTranspose`:
    ``(B, n, n, C_in, |G|) -> (B, m, m, C_out, |G|)``.

    Attributes:
        in_channels: input fields ``C_in``.
        out_channels: output fields ``C_out``.
        kernel_size: an odd int (even only with ``padding="VALID"``).
        output_padding: as :class:`ConvTranspose`.

    The other keyword-only attributes (``group``, ...) are the arguments of
    :class:`equilib.nn.GroupConvTranspose` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, linen
        >>> up = linen.GroupConvTranspose(2, 3, 3, group=Cyclic(4), stride=2)
        >>> x = jnp.ones((1, 5, 5, 2, 4))
        >>> up.apply(up.init(jax.random.key(0), x), x).shape
        (1, 9, 9, 3, 4)
    """

    spec_class = GroupConvTransposeSpec

    _: KW_ONLY
    output_padding: int = 0


class SteerableConvTranspose(SteerableConv):
    """Linen version of :class:`equilib.nn.SteerableConvTranspose`:
    ``(B, n, n, in_type.size) -> (B, m, m, out_type.size)``.

    Attributes:
        in_type: the field type of the input.
        out_type: the field type of the output.
        kernel_size: an odd int (even only with ``padding="VALID"``).
        output_padding: as :class:`ConvTranspose`.

    The other keyword-only attributes are the arguments of
    :class:`equilib.nn.SteerableConvTranspose` but ``rngs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, linen, reps
        >>> G = Cyclic(4)
        >>> up = linen.SteerableConvTranspose(FieldType(G, [reps.regular_rep(G)]), FieldType(G, [reps.irrep(G, 1)]),
        ...                                   3, stride=2)
        >>> x = jnp.ones((1, 5, 5, 4))
        >>> up.apply(up.init(jax.random.key(0), x), x).shape
        (1, 9, 9, 2)
    """

    spec_class = SteerableConvTransposeSpec

    def _spec(self) -> Any:  # planar only, from the fields
        return _spec_of(self, self.spec_class)

    _: KW_ONLY
    output_padding: int = 0
