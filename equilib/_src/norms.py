"""The Euclidean norm over an axis (the group axis of a regular map, the channels of a field),
safe at zero: one implementation for group pooling, global pooling and the steerable layers."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["l2_norm"]


def l2_norm(x, axis: int = -1, *, keepdims: bool = False):
    """``sqrt(sum(x**2, axis))``, with value 0 and gradient 0 where the norm is 0.

    Where the sum of squares is nonzero this is exactly ``jnp.sqrt(jnp.sum(jnp.square(x), axis))``
    (same operations, same rounding); at 0 the plain square root has an infinite derivative and
    its gradient would be NaN. The sum is replaced by 1 inside the square root there ("double
    where"), so no NaN is ever computed, also under ``jax_debug_nans``.

    Args:
        x: array of any shape.
        axis: the axis reduced.
        keepdims: keep ``axis`` with size 1.

    Returns:
        The norms, of ``x``'s shape without ``axis`` (or with size 1 there), in ``x``'s dtype.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> l2_norm(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
        Array([5., 0.], dtype=float32)
        >>> jax.grad(lambda v: l2_norm(v))(jnp.zeros(2))
        Array([0., 0.], dtype=float32)
    """
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims)
    nonzero = sq > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1)), jnp.zeros((), sq.dtype))
