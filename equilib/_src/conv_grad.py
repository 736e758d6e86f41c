"""XLA's convolution with a faster kernel gradient on CPU: the batch split into chunks.

XLA:CPU computes a convolution's kernel gradient as one Eigen convolution contracting over the
whole batch and space (``B * H' * W'`` terms per kernel entry) behind a transpose of the input
that puts the batch innermost. Where that contraction is much longer than the kernel has
entries (few channels, large maps: P4CNN's 26x26 layer has 73,728 terms for 14,400 entries),
it runs on both cores only part of the time; the same gradient summed over chunks of the batch
is 1.3-1.5x faster (``benchmarks/RESULTS.md``, section 3; ``tests/test_fast_path.py`` checks
it against ``lax.conv_general_dilated`` within the rounding bound of the sum). The forward pass
and the input gradient are XLA's own. A ``custom_jvp``: forward-mode differentiation works as for
``lax.conv_general_dilated``; reverse mode transposes the chunked tangent into the chunked
kernel gradient.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

# A kernel gradient is summed over CHUNKS chunks of the batch when its contraction has at least
# RATIO terms per kernel entry (measured: 1.3-1.5x faster from a ratio of 5 up, P4CNN's 26x26
# layer and a 20-channel 28x28 one; no gain at 1.8 and below, slower for the C8 model's layers).
RATIO = 4
CHUNKS = 8


def chunk_count(x_shape, kernel_shape, out_shape, spatial: int) -> int:
    """How many chunks of the batch the kernel gradient is summed over (1: not chunked)."""
    batch = x_shape[0]
    terms = batch * math.prod(out_shape[1:1 + spatial])
    entries = math.prod(kernel_shape)
    if terms < RATIO * entries:
        return 1
    return next(n for n in (CHUNKS, 4, 2, 1) if batch % n == 0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def conv(x, kernel, strides, padding, dimension_numbers, precision, preferred_element_type):
    """``lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=...)`` (batch
    first in ``x``), whose kernel gradient sums over chunks of the batch."""
    return lax.conv_general_dilated(x, kernel, window_strides=strides, padding=padding,
                                    dimension_numbers=dimension_numbers, precision=precision,
                                    preferred_element_type=preferred_element_type)


def _conv_jvp(strides, padding, dimension_numbers, precision, preferred_element_type, primals, tangents):
    x, kernel = primals
    dx, dkernel = tangents
    args = (strides, padding, dimension_numbers, precision, preferred_element_type)
    y = conv(x, kernel, *args)
    parts = []
    if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
        parts.append(conv(dx, kernel, *args))
    if not isinstance(dkernel, jax.custom_derivatives.SymbolicZero):
        # chunk i holds images i, i + n, i + 2n, ...: a slice along an axis of its own, so that a
        # batch split over devices stays split (each device chunks its own images); n = 1 is the
        # unchunked convolution
        n = chunk_count(x.shape, kernel.shape, y.shape, x.ndim - 2)
        xs = x.reshape(x.shape[0] // n, n, *x.shape[1:])
        parts.append(jnp.stack([conv(xs[:, i], dkernel, *args) for i in range(n)], axis=1).reshape(y.shape))
    if not parts:
        return y, jnp.zeros_like(y)
    return y, functools.reduce(jnp.add, parts)


conv.defjvp(_conv_jvp, symbolic_zeros=True)
