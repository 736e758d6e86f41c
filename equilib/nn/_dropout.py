"""Equivariant dropout (Flax NNX): ``FieldDropout``, ``PointwiseDropout`` and ``GroupDropout``.

The API is that of ``flax.nnx.Dropout``: ``rate`` (the drop probability), ``deterministic``
(True, or ``model.eval()``: the identity), ``rng_collection`` and ``rngs``; kept values are scaled
by ``1 / (1 - rate)``. The masks are pure functions of a key (:func:`field_dropout`,
:func:`pointwise_dropout`, :func:`group_dropout`), shared with the Linen wrappers of
:mod:`equilib.linen`.

In which sense dropout is equivariant:

* :class:`FieldDropout` and :class:`GroupDropout` draw one mask value per sample and field, the same
  at every pixel (as escnn's ``FieldDropout``): a field is kept or dropped whole, and the mask
  commutes with the group action. With the same key, ``drop(g.x) == g.drop(x)`` exactly, for any
  field type (the mask multiplies each field by a scalar that does not depend on position).
* :class:`PointwiseDropout` draws an independent mask value per sample, pixel and channel (as
  escnn's ``PointwiseDropout``). For a fixed key this is *not* equivariant; it is equivariant in
  distribution: for a permutation representation ``P``, ``m * (P x) = P ((P^T m) * x)`` and
  ``P^T m`` (like the rotated mask) has the distribution of ``m``. That needs the representations
  to permute channels, so other field types are refused.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from equilib._src.checks import check_ndim
from equilib._src.fieldops import require_permutation
from equilib._src.typing import Array
from equilib.fields import FieldType, as_field_type

__all__ = ["FieldDropout", "PointwiseDropout", "GroupDropout", "check_rate", "field_dropout", "group_dropout",
           "pointwise_dropout"]


def check_rate(rate: Any) -> float:
    """The drop probability, a number in [0, 1]."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)) or not 0 <= rate <= 1:
        raise ValueError(f"`rate` must be a number in [0, 1] (the probability to drop), got {rate!r}")
    return float(rate)


def _masked(x: Array, key: jax.Array, rate: float, mask_shape: tuple[int, ...], expand) -> Array:
    """``x / (1 - rate)`` where a Bernoulli(1 - rate) mask of ``mask_shape``, mapped onto ``x``'s shape
    by ``expand``, is True; 0 elsewhere."""
    if rate == 0.0:
        return x
    if rate == 1.0:  # no division by 0 (no NaN in the gradient), as flax.nnx.Dropout
        return jnp.zeros_like(x)
    keep = 1.0 - rate
    mask = jnp.broadcast_to(expand(jax.random.bernoulli(key, p=keep, shape=mask_shape)), x.shape)
    return lax.select(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


def field_dropout(x: Array, key: jax.Array, rate: float, field_type: FieldType) -> Array:
    """Drop whole fields of a steerable map ``(B, H, W, D)``: one mask value per sample and field."""
    field_type.check(x, "x", "FieldDropout")
    fields = np.repeat(np.arange(len(field_type)), [r.size for r in field_type.reps])
    b, d = x.shape[0], x.shape[-1]
    return _masked(x, key, rate, (b, len(field_type)),
                   lambda m: jnp.take(m, jnp.asarray(fields), axis=1).reshape(b, 1, 1, d))


def pointwise_dropout(x: Array, key: jax.Array, rate: float) -> Array:
    """Elementwise dropout: one mask value per element of ``x``."""
    return _masked(x, key, rate, tuple(x.shape), lambda m: m)


def group_dropout(x: Array, key: jax.Array, rate: float) -> Array:
    """Drop whole fields ``c`` (all ``|G|`` channels) of a regular map ``(B, H, W, C, |G|)``: one mask
    value per sample and field."""
    check_ndim(x, 5, "a regular map of rank 5 (batch, H, W, C, |G|)", "GroupDropout")
    b, c = x.shape[0], x.shape[3]
    return _masked(x, key, rate, (b, c), lambda m: m.reshape(b, 1, 1, c, 1))


class _Dropout(nnx.Module):
    """The ``flax.nnx.Dropout`` front end; subclasses define :meth:`drop` ``(x, key) -> y``."""

    def __init__(self, rate: float, *, deterministic: bool | None = False, rng_collection: str = "dropout",
                 rngs: nnx.Rngs | nnx.RngStream | None = None):
        self.rate = check_rate(rate)
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs[rng_collection].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise TypeError(f"`rngs` must be an nnx.Rngs, an nnx.RngStream or None, got {type(rngs).__name__}")

    def check(self, x: Array) -> Array:
        """Validate the input (also in deterministic mode)."""
        return x

    def drop(self, x: Array, key: jax.Array) -> Array:
        """The dropout of ``x`` with ``key``."""
        raise NotImplementedError

    def __call__(self, x: Array, *, deterministic: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> Array:
        name = type(self).__name__
        x = self.check(jnp.asarray(x))
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic is None:
            raise ValueError(f"{name}: `deterministic` is None both in the constructor and in the call; "
                             f"pass deterministic=True/False to one of them (or use model.train()/eval())")
        if self.rate == 0.0 or deterministic:
            return x
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, nnx.Rngs):
            key = rngs[self.rng_collection]()
        elif isinstance(rngs, nnx.RngStream):
            key = rngs()
        elif isinstance(rngs, jax.Array):
            key = rngs
        elif rngs is not None:
            raise TypeError(f"{name}: `rngs` must be an nnx.Rngs, an nnx.RngStream or a key, got {type(rngs).__name__}")
        else:
            raise ValueError(f"{name}: `deterministic` is False but no `rngs` was given to the constructor or the "
                             f"call (an nnx.Rngs, an nnx.RngStream or a key)")
        return self.drop(x, key)

    def set_view(self, deterministic: bool | None = None):
        """Used by ``nnx.view``: set ``deterministic`` if given.

        Args:
            deterministic: if True, no mask is applied.
        """
        if deterministic is not None:
            self.deterministic = deterministic


class FieldDropout(_Dropout):
    """Drop whole fields of a steerable map ``(B, H, W, D)``: per sample and field, all the field's
    channels are zeroed with probability ``rate`` (the same at every pixel), the others scaled by
    ``1 / (1 - rate)`` (escnn's ``FieldDropout``). Equivariant for any field type; with the same key,
    exactly: ``drop(g.x) == g.drop(x)``. The identity when deterministic (``model.eval()``).
    ``out_type = in_type``.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input ``(B, H, W, in_type.size)``.
        rate: the probability to drop a field, in [0, 1].
        deterministic: True: the identity; can be overridden in the call, set by
            ``model.train()``/``model.eval()``.
        rng_collection: the ``nnx.Rngs`` stream the keys are drawn from.
        rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` (forked, as ``flax.nnx.Dropout``), or None (then
            pass ``rngs`` to the call).

    Raises:
        ValueError: ``rate`` not in [0, 1]; on call, an input that is not ``(B, H, W, in_type.size)``,
            or no key when not deterministic.
        TypeError: ``in_type`` is not a FieldType, or ``rngs`` is of another type.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import SO2, FieldType, nn, reps
        >>> vectors = FieldType(SO2(), [reps.irrep(SO2(), 1)] * 3)
        >>> drop = nn.FieldDropout(vectors, 0.5, rngs=nnx.Rngs(dropout=1))
        >>> y = drop(jnp.ones((1, 2, 2, 6)))
        >>> y[0, 0, 0]  # fields 0 and 1 kept and scaled by 1 / (1 - 0.5), field 2 dropped
        Array([2., 2., 2., 2., 0., 0.], dtype=float32)
        >>> bool((y == y[:, :1, :1]).all())  # the same mask at every pixel
        True
    """

    def __init__(self, in_type: FieldType, rate: float, *, deterministic: bool | None = False,
                 rng_collection: str = "dropout", rngs: nnx.Rngs | nnx.RngStream | None = None):
        self.in_type = self.out_type = as_field_type(in_type, "in_type")
        super().__init__(rate, deterministic=deterministic, rng_collection=rng_collection, rngs=rngs)

    def check(self, x: Array) -> Array:
        return self.in_type.check(x, "x", "FieldDropout")

    def drop(self, x: Array, key: jax.Array) -> Array:
        return field_dropout(x, key, self.rate, self.in_type)


class PointwiseDropout(_Dropout):
    """Elementwise dropout of a steerable map ``(B, H, W, D)`` whose fields' representations permute
    channels (trivial, regular, quotient), as escnn's ``PointwiseDropout``: equivariant in
    distribution only (a fixed mask is not; see the module docstring), so other field types (whose
    channels a rotation mixes) are refused: use :class:`FieldDropout`. ``out_type = in_type``.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input ``(B, H, W, in_type.size)``.
        rate: the probability to drop an element, in [0, 1].
        deterministic: True: the identity (``model.eval()``); can be overridden in the call.
        rng_collection: the ``nnx.Rngs`` stream the keys are drawn from.
        rngs: an ``nnx.Rngs`` or ``nnx.RngStream``, or None (then pass ``rngs`` to the call).

    Raises:
        ValueError: ``rate`` not in [0, 1], or a field whose representation does not permute channels
            (named in the message); on call, an input that is not ``(B, H, W, in_type.size)``.
        TypeError: ``in_type`` is not a FieldType, or ``rngs`` is of another type.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> drop = nn.PointwiseDropout(FieldType(Cyclic(4), [reps.regular_rep(Cyclic(4))]), 0.5,
        ...                            rngs=nnx.Rngs(dropout=0))
        >>> sorted(set(drop(jnp.ones((1, 8, 8, 4))).ravel().tolist()))
        [0.0, 2.0]
        >>> drop.eval()
        >>> float(drop(jnp.ones((1, 8, 8, 4))).min())
        1.0
    """

    def __init__(self, in_type: FieldType, rate: float, *, deterministic: bool | None = False,
                 rng_collection: str = "dropout", rngs: nnx.Rngs | nnx.RngStream | None = None):
        self.in_type = self.out_type = as_field_type(in_type, "in_type")
        require_permutation(self.in_type, "PointwiseDropout", "an elementwise mask is not equivariant "
                            "(even in distribution) for it: use FieldDropout")
        super().__init__(rate, deterministic=deterministic, rng_collection=rng_collection, rngs=rngs)

    def check(self, x: Array) -> Array:
        return self.in_type.check(x, "x", "PointwiseDropout")

    def drop(self, x: Array, key: jax.Array) -> Array:
        return pointwise_dropout(x, key, self.rate)


class GroupDropout(_Dropout):
    """Drop whole fields of a regular map ``(B, H, W, C, |G|)``: per sample and field ``c``, all
    ``|G|`` channels are zeroed with probability ``rate`` (the same at every pixel), the others
    scaled by ``1 / (1 - rate)``. With the same key it commutes exactly with the regular action
    (rot90/flips and the group-axis permutation). The identity when deterministic.

    Args:
        rate: the probability to drop a field, in [0, 1].
        deterministic: True: the identity (``model.eval()``); can be overridden in the call.
        rng_collection: the ``nnx.Rngs`` stream the keys are drawn from.
        rngs: an ``nnx.Rngs`` or ``nnx.RngStream``, or None (then pass ``rngs`` to the call).

    Raises:
        ValueError: ``rate`` not in [0, 1]; on call, an input that is not of rank 5, or no key when
            not deterministic.
        TypeError: ``rngs`` is of another type.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import nn
        >>> drop = nn.GroupDropout(0.5, rngs=nnx.Rngs(dropout=0))
        >>> y = drop(jnp.ones((1, 3, 3, 4, 8)))
        >>> bool(jnp.all((y == y[:, :1, :1, :, :1]))), y.shape  # whole fields, at every pixel
        (True, (1, 3, 3, 4, 8))
    """

    def check(self, x: Array) -> Array:
        check_ndim(x, 5, "a regular map of rank 5 (batch, H, W, C, |G|)", "GroupDropout")
        return x

    def drop(self, x: Array, key: jax.Array) -> Array:
        return group_dropout(x, key, self.rate)
