"""Operations on steerable maps ``(..., D)`` grouped by representation, shared by the field layers."""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from equilib._src.layers import set_fields
from equilib.fields import FieldType, as_field_type
from equilib.reps import Rep

__all__ = ["POINTWISE", "bias_columns", "check_field_types", "invariant_projector", "lead", "merge_by_rep",
           "pointwise_fn", "require_permutation", "split_by_rep"]


def split_by_rep(field_type: FieldType, x):
    """``[(rep, fields, x_g)]`` with ``x_g`` of shape ``(..., n_fields, rep.size)``."""
    groups = field_type.groups()
    if len(groups) == 1:
        r, f, _ = groups[0]
        return [(r, f, x.reshape(x.shape[:-1] + (len(f), r.size)))]
    return [(r, f, jnp.take(x, jnp.asarray(ch.reshape(-1)), axis=-1).reshape(x.shape[:-1] + ch.shape))
            for r, f, ch in groups]


def lead(v, x):
    """``v`` with leading axes of size 1 up to the rank of ``x``: the broadcast written out."""
    return jnp.reshape(v, (1,) * (x.ndim - v.ndim) + tuple(v.shape))


def merge_by_rep(parts, n_fields: int):
    """Inverse of :func:`split_by_rep` for outputs ``(..., n_fields_g, d_out_g)`` per group."""
    if len(parts) == 1:
        f, y = parts[0]
        return y.reshape(y.shape[:-2] + (-1,))
    sizes = np.zeros(n_fields, dtype=np.int64)
    for f, y in parts:
        sizes[f] = y.shape[-1]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    order = np.concatenate([(offsets[f][:, None] + np.arange(y.shape[-1])[None]).reshape(-1)
                            for f, y in parts])
    flat = jnp.concatenate([y.reshape(y.shape[:-2] + (-1,)) for _, y in parts], axis=-1)
    return jnp.take(flat, jnp.asarray(np.argsort(order)), axis=-1)


POINTWISE = {
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "leaky_relu": jax.nn.leaky_relu,
}


def pointwise_fn(function, name="function") -> Callable:
    if callable(function):
        return function
    if function not in POINTWISE:
        raise ValueError(f"`{name}` must be a callable or one of {sorted(POINTWISE)}, got {function!r}")
    return POINTWISE[function]


def require_permutation(field_type: FieldType, layer: str, hint: str):
    for i, r in enumerate(field_type.reps):
        if not r.is_permutation:
            raise ValueError(f"{layer} needs fields whose representation permutes channels (trivial, "
                             f"regular, quotient), but field {i} of `in_type` is {r.name} of "
                             f"{field_type.group.name}; {hint}")


def check_field_types(spec) -> None:
    """Check a spec's ``in_type`` and ``out_type`` (FieldTypes of the same group) and store them on
    it (in its ``__post_init__``); TypeError or ValueError naming the argument otherwise."""
    in_type, out_type = as_field_type(spec.in_type, "in_type"), as_field_type(spec.out_type, "out_type")
    if in_type.group != out_type.group:
        raise ValueError(f"`in_type` is a field type of {in_type.group.name} but `out_type` of "
                         f"{out_type.group.name}: expected the same group")
    set_fields(spec, in_type=in_type, out_type=out_type)


@functools.cache
def invariant_projector(rep: Rep) -> np.ndarray:
    t = rep.trivial_columns()
    return (t @ t.T).astype(np.float32)


@functools.cache
def bias_columns(field_type: FieldType):
    """Per rep group: ``(t, d)`` directions of the bias (trivial columns, regular -> all ones)."""
    return {r: (r.trivial_columns().T * math.sqrt(r.size)).astype(np.float32) for r, _, _ in field_type.groups()}
