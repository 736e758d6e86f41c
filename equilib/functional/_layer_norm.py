"""Per-sample normalisation of regular and steerable maps: instance, group and layer norm.

The statistics of each sample are computed on invariant quantities only, so normalising
commutes with the group action:

* the **mean** is taken along invariant directions: the constant vector of a regular or
  permutation field, the trivial irreps of a steerable field, nothing for a nontrivial irrep;
* the **variance** is the mean squared norm of the centred field per channel
  (``|f - mean|^2 / d``), invariant because the representations are orthogonal;
* the **scale** is one value per field, the **bias** lives on the invariant directions (one
  value per regular field, one per trivial irrep of a steerable field).

For regular maps ``(B, H, W, C, |G|)`` (and plain maps ``(B, H, W, C)``, one channel per field)
:func:`group_norm` and :func:`layer_norm` compute exactly what Flax's ``GroupNorm``/``LayerNorm``
compute on the flattened map ``(B, H, W, C*|G|)`` with the per-field scale and bias repeated over
the group axis (groups of ``C / num_groups`` whole fields are contiguous channels).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from equilib._src.checks import check_choice, check_positive_int
from equilib._src.fieldops import invariant_projector, lead, merge_by_rep, require_permutation, split_by_rep
from equilib._src.typing import Array
from equilib.fields import FieldType, as_field_type

__all__ = ["FIELD_INSTANCE_NORM_KINDS", "field_instance_norm", "group_norm", "layer_norm", "trivial_bias_matrix"]

FIELD_INSTANCE_NORM_KINDS = ("norm", "inner")
_HIGHEST = lax.Precision.HIGHEST


@functools.cache
def trivial_bias_matrix(field_type: FieldType) -> np.ndarray:
    """``(num_trivial, D)``: row ``b`` is the channel pattern of the ``b``-th bias value of a
    steerable map (fields in order, each field's trivial irreps in order; a trivial column
    ``t`` of a field of size ``d`` gives ``sqrt(d) * t``: all ones for a regular field).

    Args:
        field_type: the :class:`~equilib.fields.FieldType` of the map.

    Returns:
        A read-only float32 numpy array ``(num_trivial, field_type.size)``.

    Example:
        >>> from equilib import Cyclic, FieldType, reps
        >>> from equilib.functional._layer_norm import trivial_bias_matrix
        >>> G = Cyclic(4)
        >>> trivial_bias_matrix(FieldType(G, [reps.regular_rep(G), reps.irrep(G, 1)])).round(6)
        array([[1., 1., 1., 1., 0., 0.]], dtype=float32)
    """
    rows = []
    for rep, off in zip(field_type.reps, field_type.offsets):
        for col in rep.trivial_columns().T:
            row = np.zeros(field_type.size)
            row[off:off + rep.size] = col * math.sqrt(rep.size)
            rows.append(row)
    out = np.array(rows, np.float32).reshape(len(rows), field_type.size)
    out.setflags(write=False)
    return out


@functools.cache
def _field_bias_matrix(field_type: FieldType) -> np.ndarray:
    """``(n_fields, D)``: one bias value per field, added to all its channels (``kind="inner"``)."""
    out = np.zeros((len(field_type), field_type.size), np.float32)
    for i, (rep, off) in enumerate(zip(field_type.reps, field_type.offsets)):
        out[i, off:off + rep.size] = 1.0
    out.setflags(write=False)
    return out


@functools.cache
def _field_layout(field_type: FieldType) -> tuple[np.ndarray, np.ndarray]:
    """``(u, field)`` per channel: ``u`` the invariant part of the all-ones vector (the direction
    of the shared mean: 1 on permutation fields, 0 on nontrivial irreps), ``field`` its field."""
    u = np.concatenate([invariant_projector(r) @ np.ones(r.size, np.float32) for r in field_type.reps])
    field = np.concatenate([np.full(r.size, i) for i, r in enumerate(field_type.reps)])
    return u.astype(np.float32), field.astype(np.int64)


def _affine(y: Array, field: np.ndarray, scale, bias, bias_matrix: np.ndarray) -> Array:
    """``y * scale[field] + bias @ bias_matrix`` on the channel (last) axis."""
    if scale is not None:
        y = y * lead(jnp.take(scale.astype(y.dtype), jnp.asarray(field)), y)
    if bias is not None:
        y = y + lead(jnp.einsum("b,bd->d", bias.astype(y.dtype), jnp.asarray(bias_matrix, y.dtype),
                                precision=_HIGHEST), y)
    return y


def _check_vector(v, n: int, name: str, what: str):
    if v is None:
        return None
    v = jnp.asarray(v)
    if v.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},) ({what}), got {tuple(v.shape)}")
    return v


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _instance_norm(x: Array, in_type: FieldType, kind: str, epsilon: float, scale, bias) -> Array:
    """The maths of :func:`field_instance_norm` (checked arguments), jitted: one program per
    configuration rather than one per operation when called eagerly."""
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    parts = []
    for rep, fields, xg in split_by_rep(in_type, x.astype(dtype)):  # xg: (B, H, W, n_g, d)
        if kind == "norm":
            proj = jnp.asarray(invariant_projector(rep), dtype)
            mean = jnp.einsum("...d,ed->...e", jnp.mean(xg, axis=(1, 2), keepdims=True), proj, precision=_HIGHEST)
            var = jnp.mean(jnp.sum(jnp.square(xg - mean), axis=-1, keepdims=True), axis=(1, 2),
                           keepdims=True) / rep.size
        else:
            mean = jnp.mean(xg, axis=(1, 2, 4), keepdims=True)
            var = jnp.mean(jnp.square(xg - mean), axis=(1, 2, 4), keepdims=True)
        parts.append((fields, (xg - mean) * lax.rsqrt(var + epsilon)))
    y = merge_by_rep(parts, len(in_type))
    _, field = _field_layout(in_type)
    bmat = _field_bias_matrix(in_type) if kind == "inner" else trivial_bias_matrix(in_type)
    return _affine(y, field, scale, bias, bmat).astype(x.dtype)


def field_instance_norm(x: Array, in_type: FieldType, *, kind: str = "norm", epsilon: float = 1e-5,
                        scale: Array | None = None, bias: Array | None = None) -> Array:
    """Instance norm of a steerable map: per sample and per field, statistics over space.

    The statistics are those of :class:`equilib.nn.FieldBatchNorm`'s kinds, computed per sample
    over ``(H, W)`` instead of over ``(B, H, W)``. ``kind="norm"`` (any field type): the mean is
    the field's projection on its invariant directions (none for a nontrivial irrep), the
    variance ``E|f - mean|^2 / d``; the bias lives on the trivial irreps. ``kind="inner"``
    (fields that permute channels): mean and variance over space and the field's channels, one
    bias per field. Both give the same statistics on regular fields.

    Args:
        x: a steerable map ``(B, H, W, D)`` of ``in_type``.
        in_type: its :class:`~equilib.fields.FieldType`.
        kind: ``"norm"`` or ``"inner"``.
        epsilon: added to the variance.
        scale: ``(n_fields,)``, one factor per field, or None.
        bias: ``(num_trivial,)`` (``"norm"``, see :func:`trivial_bias_matrix`) or ``(n_fields,)``
            (``"inner"``), or None.

    Returns:
        The normalised map, shape and dtype of ``x`` (statistics in float32 at least).

    Raises:
        ValueError: ``x`` is not ``(B, H, W, in_type.size)``, an unknown ``kind``,
            ``kind="inner"`` on a field that does not permute channels, or a ``scale``/``bias``
            of the wrong shape.
        TypeError: ``in_type`` is not a FieldType.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import SO2, FieldType, reps
        >>> from equilib import functional as F
        >>> vectors = FieldType(SO2(), [reps.irrep(SO2(), 1)])  # no invariant direction: not centred
        >>> x = jnp.array([[3.0, 4.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)  # E|f|^2 / d = 6.25
        >>> F.field_instance_norm(x, vectors, epsilon=0.0).reshape(2, 2)
        Array([[1.2, 1.6],
               [0. , 0. ]], dtype=float32)
    """
    in_type = as_field_type(in_type, "in_type")
    kind = check_choice("kind", kind, FIELD_INSTANCE_NORM_KINDS)
    if kind == "inner":
        require_permutation(in_type, "field_instance_norm(kind='inner')", "use kind='norm'")
    x = jnp.asarray(x)
    in_type.check(x, "x", "field_instance_norm")
    n = len(in_type)
    nb = n if kind == "inner" else trivial_bias_matrix(in_type).shape[0]
    scale = _check_vector(scale, n, "scale", "one per field")
    bias = _check_vector(bias, nb, "bias", "one per field" if kind == "inner" else "one per trivial irrep")
    return _instance_norm(x, in_type, kind, float(epsilon), scale, bias)


def _layout(x: Array, num_groups: int, in_type: FieldType | None, where: str):
    """The map flattened to ``(B, H, W, D)``, with per channel ``u`` (the direction of the shared
    mean), its field and its group of fields, the bias matrix and the number of fields."""
    num_groups = check_positive_int("num_groups", num_groups)
    if in_type is not None:
        in_type = as_field_type(in_type, "in_type")
        in_type.check(x, "x", where)
        u, field = _field_layout(in_type)
        n, bmat, flat = len(in_type), trivial_bias_matrix(in_type), x
    else:
        if x.ndim not in (4, 5):
            raise ValueError(f"{where}: `x` must be a plain map (B, H, W, C) or a regular map (B, H, W, C, |G|) "
                             f"(or pass `in_type` for a steerable map), got shape {tuple(x.shape)}")
        n, g = x.shape[3], (x.shape[4] if x.ndim == 5 else 1)
        u, field = np.ones(n * g, np.float32), np.repeat(np.arange(n), g)
        bmat = np.repeat(np.eye(n, dtype=np.float32), g, axis=1)
        flat = x.reshape(x.shape[:3] + (n * g,))
    if n % num_groups:
        raise ValueError(f"`num_groups` (={num_groups}) must divide the number of fields (={n}): "
                         f"the groups are made of whole fields")
    return flat, u, field, field // (n // num_groups), bmat, n


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 7))
def _grouped_norm(x: Array, num_groups: int, in_type: FieldType | None, axes: tuple[int, ...], epsilon: float,
                  scale, bias, where: str) -> Array:
    """The core of :func:`group_norm` (``axes=(1, 2)``) and :func:`layer_norm` (``axes=()``)."""
    x = jnp.asarray(x)
    flat, u, field, gid, bmat, n = _layout(x, num_groups, in_type, where)
    scale = _check_vector(scale, n, "scale", "one per field")
    bias = _check_vector(bias, bmat.shape[0], "bias", "one per field" if in_type is None else "one per trivial irrep")
    xf = flat.astype(jnp.promote_types(flat.dtype, jnp.float32))
    onehot = np.eye(num_groups, dtype=np.float32)[gid]  # (D, num_groups)
    spatial = math.prod(xf.shape[a] for a in axes)
    uu = (u * u) @ onehot
    # the shared mean: the least-squares constant along u (the channel mean for permutation fields)
    inv_uu = np.where(uu > 0, 1.0 / (spatial * np.maximum(uu, 1e-30)), 0.0).astype(np.float32)
    ul, gj = lead(jnp.asarray(u, xf.dtype), xf), jnp.asarray(gid)
    s = jnp.einsum("...d,dg->...g", jnp.sum(xf * ul, axis=axes, keepdims=True), jnp.asarray(onehot, xf.dtype),
                   precision=_HIGHEST)
    mean = s * lead(jnp.asarray(inv_uu, xf.dtype), s)
    centred = xf - jnp.take(mean, gj, axis=-1) * ul
    ss = jnp.einsum("...d,dg->...g", jnp.sum(jnp.square(centred), axis=axes, keepdims=True),
                    jnp.asarray(onehot, xf.dtype), precision=_HIGHEST)
    var = ss / lead(jnp.asarray(spatial * onehot.sum(0), xf.dtype), ss)
    y = _affine(centred * jnp.take(lax.rsqrt(var + epsilon), gj, axis=-1), field, scale, bias, bmat)
    return y.reshape(x.shape).astype(x.dtype)


def group_norm(x: Array, num_groups: int, *, in_type: FieldType | None = None, epsilon: float = 1e-6,
               scale: Array | None = None, bias: Array | None = None) -> Array:
    """Group norm per sample: statistics over space and each group of ``num_groups`` groups of
    contiguous whole fields, equivariant (exactly on the pixel grid).

    Regular map ``(B, H, W, C, |G|)``: the fields are the ``C`` channels, each with its group
    axis; the statistics of a group pool space, its fields and the group axis; scale and bias
    are per field, shared over the group axis. This is Flax's ``GroupNorm(C*|G|, num_groups)`` on
    the flattened map with the scale and bias repeated ``|G|`` times. A plain map ``(B, H, W,
    C)`` is a regular map with one channel per field. Steerable map ``(B, H, W, D)`` with
    ``in_type``: the mean is shared by the group and taken along the invariant directions only
    (the least-squares constant along the invariant part of the all-ones vector: the channel
    mean on permutation fields, nothing on nontrivial irreps), the variance is
    ``sum |f - mean|^2`` over the group's channels divided by their number; scale per field, bias
    per trivial irrep (:func:`trivial_bias_matrix`).

    Args:
        x: ``(B, H, W, C, |G|)``, ``(B, H, W, C)``, or ``(B, H, W, in_type.size)`` with ``in_type``.
        num_groups: the number of groups; it must divide the number of fields.
        in_type: the :class:`~equilib.fields.FieldType` of a steerable ``x``, or None.
        epsilon: added to the variance.
        scale: ``(n_fields,)`` or None.
        bias: ``(C,)`` (regular/plain), ``(num_trivial,)`` (steerable), or None.

    Returns:
        The normalised map, shape and dtype of ``x`` (statistics in float32 at least).

    Raises:
        ValueError: ``num_groups`` does not divide the number of fields, ``x`` has the wrong
            rank (or channels, against ``in_type``), ``scale``/``bias`` have the wrong shape.
        TypeError: ``in_type`` is not a FieldType.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> x = jnp.arange(2 * 3 * 3 * 4 * 4, dtype=jnp.float32).reshape(2, 3, 3, 4, 4)  # C4, 4 fields
        >>> y = F.group_norm(x, 2)
        >>> y.shape, bool(abs(y[0, ..., :2, :].mean()) < 1e-5), bool(abs(y[0, ..., :2, :].std() - 1) < 1e-3)
        ((2, 3, 3, 4, 4), True, True)
    """
    return _grouped_norm(x, num_groups, in_type, (1, 2), float(epsilon), scale, bias, "group_norm")


def layer_norm(x: Array, *, in_type: FieldType | None = None, epsilon: float = 1e-6, scale: Array | None = None,
               bias: Array | None = None) -> Array:
    """Layer norm per pixel: statistics over all the fields of each pixel (not over space, as
    Flax's ``LayerNorm`` normalises the feature axis of each position), equivariant.

    The statistics are those of :func:`group_norm` with one group, taken per pixel: for a
    regular map ``(B, H, W, C, |G|)`` over the fields and the group axis (Flax's
    ``LayerNorm(C*|G|)`` on the flattened map, scale and bias repeated over the group axis);
    for a steerable map the shared mean along the invariant directions and the mean squared
    norm per channel.

    Args:
        x: ``(B, H, W, C, |G|)``, ``(B, H, W, C)``, or ``(B, H, W, in_type.size)`` with ``in_type``.
        in_type: the :class:`~equilib.fields.FieldType` of a steerable ``x``, or None.
        epsilon: added to the variance.
        scale: ``(n_fields,)`` or None.
        bias: ``(C,)`` (regular/plain), ``(num_trivial,)`` (steerable), or None.

    Returns:
        The normalised map, shape and dtype of ``x``.

    Raises:
        ValueError: ``x`` has the wrong rank (or channels, against ``in_type``), ``scale``/``bias``
            have the wrong shape.
        TypeError: ``in_type`` is not a FieldType.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> F.layer_norm(jnp.array([1.0, 3.0, 1.0, 3.0]).reshape(1, 1, 1, 2, 2), epsilon=0.0).ravel()
        Array([-1.,  1., -1.,  1.], dtype=float32)
    """
    return _grouped_norm(x, 1, in_type, (), float(epsilon), scale, bias, "layer_norm")
