"""Per-channel sums and broadcasts in the shapes XLA:CPU runs fast.

A conv's output ``(B, H, W, C, |G|)`` is, in memory, a row-major matrix ``(B*H*W, C*|G|)``.
Batch norm and the conv bias reduce it over every axis but the channels, and broadcast
per-channel vectors back over it. Written on the 5-D shape, XLA:CPU runs both slowly: a large
reduction becomes reduce-windows over the 5-D array that neither fuse the elementwise producer
(``x**2`` is written out first) nor vectorise over the channels, and a broadcast along an
inner axis of the 5-D shape needs index arithmetic per element. On the matrix view both are
plain column operations (measurements: ``benchmarks/RESULTS.md``, section 3).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from equilib._src.typing import Array

# Rows summed per level of :func:`row_sums`' tree.
CHUNK = 8


def columns(x: Array, axis: int) -> Array:
    """``x`` as a row-major matrix ``(rows, cols)``: the axes before ``axis`` index the rows,
    ``axis`` and the axes after it the columns (a reshape, no copy)."""
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def per_column(v: Array, x: Array, axis: int) -> Array:
    """A vector ``(x.shape[axis],)`` as one value per column of :func:`columns`: ``(1, cols)``
    (each entry repeated over the axes after ``axis``)."""
    rest = math.prod(x.shape[axis + 1:])
    return jnp.broadcast_to(v[:, None], (v.shape[0], rest)).reshape(1, -1)


def row_sums(*cols: Array) -> tuple[Array, ...]:
    """The column sums of matrices ``(rows, cols)`` of equal shape, ``(cols,)`` each, in one pass.

    A tree of ``CHUNK``-ary sums: ``CHUNK`` consecutive rows are added, then ``CHUNK`` of those
    partial sums, and so on, so each result has the rounding error of a pairwise sum, whatever
    XLA does with a long reduction (one long float32 sum over the 43,264 rows of a P4CNN batch
    norm, split over two host devices, lost enough digits to move the gradients by 7e-3).
    Each level is one variadic ``lax.reduce`` over all operands: XLA fuses the operands'
    elementwise producers into it, reads the input once, and does not merge the levels back
    into one long reduction.
    """

    def add(a, b):
        return tuple(u + v for u, v in zip(a, b))

    zeros = tuple(jnp.zeros((), c.dtype) for c in cols)
    sums = tuple(jnp.zeros(c.shape[1:], c.dtype) for c in cols)
    while cols[0].shape[0] > 1:
        rows, ncol = cols[0].shape
        chunk = min(CHUNK, rows)
        main = rows - rows % chunk
        if main < rows:  # the rows that fill no chunk (at most CHUNK - 1 per level)
            sums = add(sums, tuple(jnp.sum(c[main:], axis=0) for c in cols))
        cols = lax.reduce(tuple(c[:main].reshape(main // chunk, chunk, ncol) for c in cols), zeros, add, (1,))
    return add(sums, tuple(c[0] for c in cols)) if cols[0].shape[0] else sums


def per_feature(sums: Array, x: Array, axis: int) -> Array:
    """Column sums ``(cols,)`` of :func:`columns` folded to one sum per entry of ``axis``:
    ``(x.shape[axis],)`` (the inverse of :func:`per_column`'s repetition)."""
    return sums.reshape(x.shape[axis], -1).sum(axis=1)


def feature_sums(x: Array, axis: int, *fns) -> tuple[Array, ...]:
    """``sum(fn(x))`` over every axis but ``axis``, ``(x.shape[axis],)`` for each elementwise
    ``fn`` (applied to the matrix view of ``x``), in one pass over ``x``."""
    return tuple(per_feature(s, x, axis) for s in row_sums(*(fn(columns(x, axis)) for fn in fns)))


def add_channel_bias(y: Array, bias: Array, *, shared: int = 0) -> Array:
    """``y + bias`` per channel: ``bias`` ``(C,)`` along axis ``-1 - shared`` of ``y``, shared over
    the ``shared`` trailing axes (a group or scale axis). Added on the matrix view, so that its
    gradient (a sum over the batch and space) is one column reduction."""
    axis = y.ndim - 1 - shared
    return (columns(y, axis) + per_column(bias, y, axis)).reshape(y.shape)
