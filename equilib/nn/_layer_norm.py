"""Per-sample normalisation layers (Flax NNX): ``FieldNorm`` (instance norm of steerable maps),
``GroupNorm`` and ``LayerNorm`` (regular, plain or steerable maps).

No running statistics: the statistics of each sample are computed in training and evaluation
alike, by the pure functions of :mod:`equilib.functional` (``field_instance_norm``,
``group_norm``, ``layer_norm``); the layers own the ``scale`` and ``bias`` parameters.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.dtypes import promote_dtype

from equilib._src.checks import check_choice, check_finite_group, check_input, check_positive_int
from equilib._src.fieldops import require_permutation
from equilib._src.init import Initializer, ones, zeros
from equilib._src.layers import set_fields
from equilib.fields import FieldType, as_field_type
from equilib.functional._layer_norm import (
    FIELD_INSTANCE_NORM_KINDS,
    field_instance_norm,
    group_norm,
    layer_norm,
    trivial_bias_matrix,
)

__all__ = ["FieldInstanceNormSpec", "FieldNorm", "GroupNorm", "GroupNormSpec", "LayerNorm", "check_epsilon",
           "per_sample_norm_forward"]


_FlaxNorm = TypeVar("_FlaxNorm", nnx.GroupNorm, nnx.LayerNorm)


def check_epsilon(epsilon: Any) -> float:
    """``epsilon`` as a float > 0; ValueError naming it otherwise."""
    if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and math.isfinite(epsilon)
            and epsilon > 0):
        raise ValueError(f"`epsilon` must be a finite number > 0, got {epsilon!r}")
    return float(epsilon)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FieldInstanceNormSpec:
    """Instance norm of a steerable map ``(B, H, W, D)`` (:class:`FieldNorm`)."""

    layer: ClassVar[str] = "FieldNorm"

    in_type: FieldType
    kind: str = "norm"

    def __post_init__(self) -> None:
        set_fields(self, in_type=as_field_type(self.in_type, "in_type"),
                   kind=check_choice("kind", self.kind, FIELD_INSTANCE_NORM_KINDS))
        if self.kind == "inner":
            require_permutation(self.in_type, "FieldNorm(kind='inner')", "use kind='norm'")

    def param_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """The shapes of ``scale`` and ``bias`` (None: no bias possible)."""
        n = len(self.in_type)
        nb = n if self.kind == "inner" else trivial_bias_matrix(self.in_type).shape[0]
        return (n,), ((nb,) if nb else None)

    def apply(self, x: jax.Array, scale, bias, epsilon: float) -> jax.Array:
        """The normalised map (``x`` and the parameters already promoted)."""
        self.in_type.check(x, "x", self.layer)
        return field_instance_norm(x, self.in_type, kind=self.kind, epsilon=epsilon, scale=scale, bias=bias)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupNormSpec:
    """Group norm (``per_pixel=False``, statistics over space) or layer norm (``per_pixel=True``,
    one group) of a regular, plain or steerable map (:class:`GroupNorm`, :class:`LayerNorm`)."""

    num_features: Any
    num_groups: int = 1
    group: Any = None
    per_pixel: bool = False

    @property
    def layer(self) -> str:
        """The layer's name, for errors."""
        return "LayerNorm" if self.per_pixel else "GroupNorm"

    def __post_init__(self) -> None:
        if isinstance(self.num_features, FieldType):
            if self.group is not None:
                raise ValueError(f"{self.layer}: pass `group` only with an int `num_features` (a regular map); "
                                 f"a FieldType carries its group ({self.num_features.group.name})")
            n = len(self.num_features)
        else:
            set_fields(self, num_features=check_positive_int("num_features", self.num_features))
            if self.group is not None:
                set_fields(self, group=check_finite_group(self.group, self.layer))
            n = self.num_features
        num_groups = check_positive_int("num_groups", self.num_groups)
        if n % num_groups:
            raise ValueError(f"`num_groups` (={num_groups}) must divide the number of fields (={n}): the "
                             f"groups are made of whole fields")
        set_fields(self, num_groups=num_groups, per_pixel=bool(self.per_pixel))

    @property
    def in_type(self) -> FieldType | None:
        """The field type of a steerable input, or None (regular or plain map)."""
        return self.num_features if isinstance(self.num_features, FieldType) else None

    def param_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """The shapes of ``scale`` (one per field) and ``bias`` (None: no bias possible)."""
        if self.in_type is None:
            return (self.num_features,), (self.num_features,)
        nb = trivial_bias_matrix(self.in_type).shape[0]
        return (len(self.in_type),), ((nb,) if nb else None)

    def apply(self, x: jax.Array, scale, bias, epsilon: float) -> jax.Array:
        """The normalised map (``x`` and the parameters already promoted)."""
        if self.in_type is not None:
            self.in_type.check(x, "x", self.layer)
        elif self.group is not None:
            check_input(x, 5, "(batch, H, W, C, |G|)", self.num_features, self.layer, group=self.group,
                        channels_name="num_features")
        else:
            check_input(x, 4, "(batch, H, W, C)", self.num_features, self.layer, channels_name="num_features")
        if self.per_pixel:
            return layer_norm(x, in_type=self.in_type, epsilon=epsilon, scale=scale, bias=bias)
        return group_norm(x, self.num_groups, in_type=self.in_type, epsilon=epsilon, scale=scale, bias=bias)


def per_sample_norm_forward(spec: Any, x: Any, scale: jax.Array | None, bias: jax.Array | None, *,
                            epsilon: float, dtype: Any = None) -> jax.Array:
    """Promote ``x`` and the parameters to one dtype as Flax does, and normalise with ``spec``
    (a :class:`FieldInstanceNormSpec` or :class:`GroupNormSpec`)."""
    x = x if hasattr(x, "ndim") else jnp.asarray(x)
    x, scale, bias = promote_dtype((x, scale, bias), dtype=dtype)
    return spec.apply(x, scale, bias, epsilon)


class _PerSampleNorm(nnx.Module):
    """NNX base: a spec, ``scale``/``bias`` params and :func:`per_sample_norm_forward`."""

    def __init__(self, spec: Any, *, epsilon: float, use_scale: bool, use_bias: bool, scale_init: Initializer,
                 bias_init: Initializer, draw_keys: bool, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.spec = spec
        self.epsilon = check_epsilon(epsilon)
        self.dtype, self.param_dtype = dtype, param_dtype
        in_type = getattr(spec, "in_type", None)
        self.in_type = self.out_type = in_type
        scale_shape, bias_shape = spec.param_shapes()
        # Flax's GroupNorm/LayerNorm draw one key per parameter; FieldNorm (constant init, as
        # FieldBatchNorm) draws none
        self.scale = nnx.Param(scale_init(rngs.params() if draw_keys else None, scale_shape, param_dtype)) \
            if use_scale else None
        self.bias = nnx.Param(bias_init(rngs.params() if draw_keys else None, bias_shape, param_dtype)) \
            if use_bias and bias_shape else None

    def __call__(self, x: jax.Array) -> jax.Array:
        return per_sample_norm_forward(self.spec, x, None if self.scale is None else self.scale[...],
                                       None if self.bias is None else self.bias[...], epsilon=self.epsilon,
                                       dtype=self.dtype)


class FieldNorm(_PerSampleNorm):
    """Instance norm of a steerable map ``(B, H, W, D)``: per sample, statistics over space and
    each field's invariant statistics (escnn users ask for it for U-Nets, escnn#69).

    The kinds are those of :class:`FieldBatchNorm`, with statistics per sample over ``(H, W)``
    instead of over ``(B, H, W)``, and no running statistics (the same in training and
    evaluation): ``kind="norm"`` (any field type): the mean is the field's projection on its
    invariant directions (none for nontrivial irreps), the variance ``E|f - mean|^2 / d``, one
    scale per field and one bias per trivial irrep; ``kind="inner"`` (fields that permute
    channels): per field, mean and variance over space and its channels, one scale and bias per
    field. Exactly equivariant on the pixel grid (:func:`equilib.functional.field_instance_norm`).

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input (``out_type`` is the same).
        kind: ``"norm"`` or ``"inner"``.
        epsilon: > 0, added to the variance.
        use_scale: learn a ``scale`` per field (initialised to 1).
        use_bias: learn a ``bias`` (initialised to 0).
        dtype: the computation dtype (None: promoted from the input and the parameters;
            statistics in float32 at least).
        param_dtype: the dtype of ``scale`` and ``bias``.
        rngs: required as in NNX; no key is drawn (the initialisers are constant).

    Parameters: ``scale`` ``(n_fields,)``, ``bias`` (``(n_fields,)`` inner, ``(num_trivial,)``
    norm, None if no field has a trivial irrep).

    Raises:
        ValueError: an unknown ``kind``, ``kind="inner"`` on fields that do not permute channels,
            ``epsilon <= 0``; on call, an input that is not ``(B, H, W, in_type.size)``.
        TypeError: ``in_type`` is not a FieldType.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> t = FieldType(Cyclic(4), [reps.regular_rep(Cyclic(4)), reps.irrep(Cyclic(4), 1)])
        >>> norm = nn.FieldNorm(t, rngs=nnx.Rngs(0))
        >>> norm(jnp.arange(2 * 5 * 5 * 6.0).reshape(2, 5, 5, 6)).shape, norm.bias.shape
        ((2, 5, 5, 6), (1,))
    """

    def __init__(self, in_type: FieldType, *, kind: str = "norm", epsilon: float = 1e-5, use_scale: bool = True,
                 use_bias: bool = True, dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        super().__init__(FieldInstanceNormSpec(in_type=in_type, kind=kind), epsilon=epsilon, use_scale=use_scale,
                         use_bias=use_bias, scale_init=ones, bias_init=zeros, draw_keys=False, dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs)


class _ExportableNorm(_PerSampleNorm):
    """NNX base of :class:`GroupNorm` and :class:`LayerNorm`: :meth:`_export_as` the Flax norm."""

    def _export_as(self, nnx_cls: type[_FlaxNorm], **extra: Any) -> _FlaxNorm:
        """``nnx_cls(C*|G|, **extra, ...)`` (``nnx.GroupNorm`` or ``nnx.LayerNorm``) on the flattened
        map ``(B, H, W, C*|G|)``, with the scale and bias repeated over the group axis; ValueError
        for a steerable map (a FieldType)."""
        spec = self.spec
        if spec.in_type is not None:
            raise ValueError(f"{spec.layer}.export() is for regular and plain maps (an int `num_features`): "
                             f"Flax's norms have no steerable counterpart of the invariant mean")
        g = 1 if spec.group is None else spec.group.order
        module: Any = nnx_cls(spec.num_features * g, **extra, epsilon=self.epsilon, dtype=self.dtype,
                              param_dtype=self.param_dtype, use_scale=self.scale is not None,
                              use_bias=self.bias is not None, rngs=nnx.Rngs(0))
        if self.scale is not None:
            module.scale[...] = jnp.repeat(self.scale[...], g)
        if self.bias is not None:
            module.bias[...] = jnp.repeat(self.bias[...], g)
        return module


class GroupNorm(_ExportableNorm):
    """Group norm per sample, equivariant: statistics over space and each of ``num_groups``
    groups of contiguous whole fields; one scale and bias per field.

    The signature follows ``flax.nnx.GroupNorm`` (``num_features``, ``num_groups``,
    ``epsilon``, ``use_scale``, ``use_bias``, ``scale_init``, ``bias_init``); ``num_features``
    says which map the layer takes:

    * an int ``C`` and ``group``: a regular map ``(B, H, W, C, |G|)``; a group's statistics pool
      space, its fields and the group axis, and scale/bias are shared over the group axis. This
      is ``nnx.GroupNorm(C*|G|, num_groups)`` on the flattened map (channel ``c*|G| + g``: the
      groups are contiguous whole fields) with scale/bias repeated ``|G|`` times: :meth:`export`;
    * an int ``C`` without ``group``: a plain map ``(B, H, W, C)`` (Flax's GroupNorm);
    * a :class:`~equilib.fields.FieldType`: a steerable map ``(B, H, W, D)``; the mean is shared by
      the group along the invariant directions only (the channel mean on regular fields, none on
      nontrivial irreps), the variance is ``sum |f - mean|^2`` over the group's channels divided by
      their number; one scale per field, one bias per trivial irrep
      (:func:`equilib.functional.group_norm`). No export.

    Args:
        num_features: ``C`` (an int: regular or plain map) or the input's FieldType.
        num_groups: the number of groups (no default: it must divide the number of fields).
        group: the finite group of a regular map's group axis, or None.
        epsilon: > 0, added to the variance (Flax's default 1e-6).
        use_scale: learn a ``scale`` per field.
        use_bias: learn a ``bias`` (per field; per trivial irrep for a FieldType).
        scale_init: initialiser of ``scale`` (default ones).
        bias_init: initialiser of ``bias`` (default zeros).
        dtype: the computation dtype (None: promoted; statistics in float32 at least).
        param_dtype: the dtype of the parameters.
        rngs: one key is drawn per parameter, as ``nnx.GroupNorm`` does.

    Raises:
        ValueError: ``num_groups`` does not divide the number of fields, ``group`` with a
            FieldType, ``epsilon <= 0``; on call, an input whose rank, channels or group axis do
            not match.
        TypeError: ``group`` is not a finite group.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, nn
        >>> gn = nn.GroupNorm(4, 2, group=Cyclic(4), rngs=nnx.Rngs(0))
        >>> x = jnp.arange(2 * 5 * 5 * 4 * 4.0).reshape(2, 5, 5, 4, 4)
        >>> y = gn(x)
        >>> y.shape, bool(jnp.allclose(gn.export()(x.reshape(2, 5, 5, 16)), y.reshape(2, 5, 5, 16), atol=1e-5))
        ((2, 5, 5, 4, 4), True)
    """

    def __init__(self, num_features: Any, num_groups: int, *, group: Any = None, epsilon: float = 1e-6,
                 use_scale: bool = True, use_bias: bool = True, scale_init: Initializer = ones,
                 bias_init: Initializer = zeros, dtype: Any = None, param_dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):
        super().__init__(GroupNormSpec(num_features=num_features, num_groups=num_groups, group=group),
                         epsilon=epsilon, use_scale=use_scale, use_bias=use_bias, scale_init=scale_init,
                         bias_init=bias_init, draw_keys=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def export(self) -> nnx.GroupNorm:
        """An ``nnx.GroupNorm`` on the flattened map ``(B, H, W, C*|G|)`` computing the same
        function (regular and plain maps only).

        Returns:
            The ``nnx.GroupNorm``, with the scale and bias repeated over the group axis.

        Raises:
            ValueError: the layer normalises a steerable map (a FieldType).

        Example:
            >>> from flax import nnx
            >>> from equilib import Dihedral, nn
            >>> nn.GroupNorm(2, 1, group=Dihedral(4), rngs=nnx.Rngs(0)).export().scale.shape
            (16,)
        """
        return self._export_as(nnx.GroupNorm, num_groups=self.spec.num_groups)


class LayerNorm(_ExportableNorm):
    """Layer norm, equivariant: per sample and per pixel, statistics over all the fields, as
    ``flax.nnx.LayerNorm`` normalises the feature axis of each position (not over space:
    per-pixel statistics commute with the group too); one scale and bias per field.

    ``num_features`` is read as for :class:`GroupNorm`: an int ``C`` with ``group`` (regular map
    ``(B, H, W, C, |G|)``; statistics over the fields and the group axis: ``nnx.LayerNorm(C*|G|)``
    on the flattened map, :meth:`export`), an int without ``group`` (plain map), or a FieldType
    (steerable map: the shared mean along the invariant directions, the mean squared norm per
    channel; :func:`equilib.functional.layer_norm`).

    Args:
        num_features: ``C`` (an int: regular or plain map) or the input's FieldType.
        group: the finite group of a regular map's group axis, or None.
        epsilon: > 0, added to the variance (Flax's default 1e-6).
        use_scale: learn a ``scale`` per field.
        use_bias: learn a ``bias`` (per field; per trivial irrep for a FieldType).
        scale_init: initialiser of ``scale`` (default ones).
        bias_init: initialiser of ``bias`` (default zeros).
        dtype: the computation dtype (None: promoted; statistics in float32 at least).
        param_dtype: the dtype of the parameters.
        rngs: one key is drawn per parameter, as ``nnx.LayerNorm`` does.

    Raises:
        ValueError: ``group`` with a FieldType, ``epsilon <= 0``; on call, an input whose rank,
            channels or group axis do not match.
        TypeError: ``group`` is not a finite group.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import SO2, FieldType, nn, reps
        >>> t = FieldType(SO2(), [reps.trivial_rep(SO2()), reps.irrep(SO2(), 1)])
        >>> ln = nn.LayerNorm(t, rngs=nnx.Rngs(0))
        >>> ln(jnp.ones((1, 3, 3, 3))).shape, ln.scale.shape, ln.bias.shape
        ((1, 3, 3, 3), (2,), (1,))
    """

    def __init__(self, num_features: Any, *, group: Any = None, epsilon: float = 1e-6, use_scale: bool = True,
                 use_bias: bool = True, scale_init: Initializer = ones, bias_init: Initializer = zeros,
                 dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        super().__init__(GroupNormSpec(num_features=num_features, group=group, per_pixel=True),
                         epsilon=epsilon, use_scale=use_scale, use_bias=use_bias, scale_init=scale_init,
                         bias_init=bias_init, draw_keys=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def export(self) -> nnx.LayerNorm:
        """An ``nnx.LayerNorm`` on the flattened map ``(B, H, W, C*|G|)`` computing the same
        function (regular and plain maps only).

        Returns:
            The ``nnx.LayerNorm``, with the scale and bias repeated over the group axis.

        Raises:
            ValueError: the layer normalises a steerable map (a FieldType).

        Example:
            >>> from flax import nnx
            >>> from equilib import Cyclic, nn
            >>> nn.LayerNorm(3, group=Cyclic(4), rngs=nnx.Rngs(0)).export().scale.shape
            (12,)
        """
        return self._export_as(nnx.LayerNorm)
