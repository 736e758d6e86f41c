"""Parameter initialisers drawn in numpy from the layer's JAX key.

Why: ``jax.nn.initializers`` compile one XLA program per parameter shape (about 1 s each for
a truncated normal on a 2-core CPU), which made building a model take seconds. These draw the
same distributions with numpy, seeded from the key's bits, so construction costs no compile
and stays deterministic per ``nnx.Rngs`` seed (under ``jit``/``eval_shape`` the key is
traced and the draw falls back to ``jax.random``: same distribution, other values). They have the ``(key, shape, dtype)`` signature
of JAX initialisers, so a user's ``kernel_init`` can replace them.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["lecun_normal", "zeros", "ones"]

# std of a standard normal truncated to [-2, 2]; dividing by it keeps the requested variance
_TRUNC_STD = 0.87962566103423978


def _generator(key) -> np.random.Generator:
    if jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())


def _axes(axis, ndim) -> tuple[int, ...]:
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axis)


def lecun_normal(scale: float = 1.0, in_axis: int | Sequence[int] = -2, out_axis: int | Sequence[int] = -1):
    """Truncated normal (at 2 std) with variance ``scale / fan_in``, as
    ``jax.nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")``; ``fan_in``
    is the product of the ``in_axis`` sizes and of every axis that is neither in nor out."""

    def init(key, shape, dtype=jnp.float32):
        shape = tuple(int(s) for s in shape)
        ins, outs = _axes(in_axis, len(shape)), _axes(out_axis, len(shape))
        fan_in = math.prod(s for i, s in enumerate(shape) if i not in outs)
        std = math.sqrt(scale / max(fan_in, 1)) / _TRUNC_STD
        try:
            rng = _generator(key)
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
            # traced construction (jit / eval_shape): same distribution, drawn by JAX
            return (std * jax.random.truncated_normal(key, -2.0, 2.0, shape)).astype(dtype)
        z = rng.standard_normal(shape)
        bad = np.abs(z) > 2
        while bad.any():  # resample the tails: exact truncated normal
            z[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(z) > 2
        del ins
        return jax.device_put(np.asarray(z * std, dtype=dtype))

    return init


def zeros(key, shape, dtype=jnp.float32):
    del key
    # device_put of a numpy array: jnp.asarray(..., dtype) would compile a conversion per shape
    return jax.device_put(np.zeros(tuple(shape), dtype=dtype))


def ones(key, shape, dtype=jnp.float32):
    del key
    return jax.device_put(np.ones(tuple(shape), dtype=dtype))
