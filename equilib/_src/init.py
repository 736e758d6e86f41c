"""Parameter initialisers drawn in numpy from the layer's JAX key.

Why: ``jax.nn.initializers`` compile one XLA program per parameter shape (about 1 s each for
a truncated normal on a small CPU), which made building a model take seconds. These draw the
same distributions with numpy, seeded from the key's bits, so construction costs no compile
and stays deterministic per ``nnx.Rngs`` seed (under ``jit``/``eval_shape`` the key is traced
and the draw falls back to ``jax.random``: same distribution, other values). They have the
``(key, shape, dtype)`` signature of JAX initialisers, so any JAX or Flax initialiser can
replace them as a layer's ``kernel_init``/``bias_init``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TRUNC_STD", "Initializer", "compute_fans", "generator", "lecun_normal", "ones",
           "truncated_normal_blocks", "variance_scaling", "zeros"]

# ``(key, shape, dtype) -> array``, the signature of jax.nn.initializers / flax.nnx.initializers
Initializer = Callable[..., Any]

# std of a standard normal truncated to [-2, 2]; dividing by it keeps the requested variance
TRUNC_STD = 0.87962566103423978

_TRACED = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError)


def generator(key: Any) -> np.random.Generator:
    """A numpy generator seeded by the bits of a JAX key (raw ``uint32`` or typed).

    Raises the JAX tracer errors if ``key`` is traced (the caller then draws with JAX)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())


def _axes(axis: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axis) if ndim else ()


def compute_fans(shape: Sequence[int], in_axis: int | Sequence[int] = -2,
                 out_axis: int | Sequence[int] = -1,
                 batch_axis: int | Sequence[int] = ()) -> tuple[int, int]:
    """``(fan_in, fan_out)`` as ``jax.nn.initializers.variance_scaling`` computes them: the
    product of the ``in_axis`` (resp. ``out_axis``) sizes times the receptive field, the
    product of the axes that are neither in, out nor batch axes."""
    shape = tuple(int(s) for s in shape)
    ins, outs = _axes(in_axis, len(shape)), _axes(out_axis, len(shape))
    batch = _axes(batch_axis, len(shape))
    receptive = math.prod(s for i, s in enumerate(shape) if i not in ins + outs + batch)
    return (math.prod(shape[i] for i in ins) * receptive, math.prod(shape[i] for i in outs) * receptive)


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    z = rng.standard_normal(shape, dtype=dtype)
    bad = np.abs(z) > 2
    while bad.any():  # resample the tails: exact truncated normal
        z[bad] = rng.standard_normal(int(bad.sum()), dtype=dtype)
        bad = np.abs(z) > 2
    return z


def variance_scaling(scale: float, mode: str = "fan_in", distribution: str = "truncated_normal",
                     in_axis: int | Sequence[int] = -2, out_axis: int | Sequence[int] = -1,
                     batch_axis: int | Sequence[int] = ()) -> Initializer:
    """``jax.nn.initializers.variance_scaling`` drawn in numpy: variance ``scale / n`` with
    ``n`` the fan-in, fan-out or their mean (``mode``), from a normal truncated at 2 std,
    a normal or a uniform ``distribution``."""
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"`mode` must be one of ('fan_in', 'fan_out', 'fan_avg'), got {mode!r}")
    if distribution not in ("truncated_normal", "normal", "uniform"):
        raise ValueError(f"`distribution` must be one of ('truncated_normal', 'normal', 'uniform'), "
                         f"got {distribution!r}")

    def init(key, shape, dtype=jnp.float32):
        shape = tuple(int(s) for s in shape)
        fan_in, fan_out = compute_fans(shape, in_axis, out_axis, batch_axis)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(n, 1)
        try:
            rng = generator(key)
        except _TRACED:  # traced construction (jit / eval_shape): same distribution, drawn by JAX
            return _jax_draw(key, shape, dtype, variance, distribution)
        if distribution == "truncated_normal":
            z = _truncated_normal(rng, shape) * (math.sqrt(variance) / TRUNC_STD)
        elif distribution == "normal":
            z = rng.standard_normal(shape) * math.sqrt(variance)
        else:
            z = rng.uniform(-1.0, 1.0, shape) * math.sqrt(3 * variance)
        return jax.device_put(np.asarray(z, dtype=dtype))

    return init


def _jax_draw(key, shape, dtype, variance: float, distribution: str):
    if distribution == "truncated_normal":
        z = (math.sqrt(variance) / TRUNC_STD) * jax.random.truncated_normal(key, -2.0, 2.0, shape)
    elif distribution == "normal":
        z = math.sqrt(variance) * jax.random.normal(key, shape)
    else:
        z = math.sqrt(3 * variance) * jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    return z.astype(dtype)


def lecun_normal(scale: float = 1.0, in_axis: int | Sequence[int] = -2,
                 out_axis: int | Sequence[int] = -1, batch_axis: int | Sequence[int] = ()) -> Initializer:
    """Truncated normal (at 2 std) with variance ``scale / fan_in``, as
    ``jax.nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal", in_axis,
    out_axis, batch_axis)`` (:func:`compute_fans`)."""
    return variance_scaling(scale, "fan_in", "truncated_normal", in_axis, out_axis, batch_axis)


def zeros(key: Any, shape: Sequence[int], dtype=jnp.float32):
    """Zeros built in numpy (no per-shape XLA conversion program); ``key`` is unused."""
    del key
    # device_put of a numpy array: jnp.asarray(..., dtype) would compile a conversion per shape
    return jax.device_put(np.zeros(tuple(shape), dtype=dtype))


def ones(key: Any, shape: Sequence[int], dtype=jnp.float32):
    """Ones built in numpy; ``key`` is unused."""
    del key
    return jax.device_put(np.ones(tuple(shape), dtype=dtype))


def truncated_normal_blocks(key: Any, shapes: Sequence[tuple[int, ...]], stds: Sequence[Any], dtype):
    """Flat concatenation of truncated normals (at 2 std), one block per shape (e.g.
    ``(n_out, n_in, n)``) with stds broadcast against it (e.g. ``(n,)``): the coefficients of a
    steerable kernel. Drawn in numpy (float32) from the key's bits, or by JAX if it is traced."""
    total = sum(int(np.prod(s)) for s in shapes)
    try:
        rng = generator(key)
    except _TRACED:
        # the stds with leading unit axes up to each block's rank: the broadcast written out
        scales = [jnp.asarray(np.reshape(np.asarray(std) / TRUNC_STD, (1,) * (len(s) - np.ndim(std)) + np.shape(std)),
                              jnp.float32) for s, std in zip(shapes, stds)]
        parts = [(scale * jax.random.truncated_normal(jax.random.fold_in(key, i), -2.0, 2.0, s)).reshape(-1)
                 for i, (s, scale) in enumerate(zip(shapes, scales))]
        return (jnp.concatenate(parts) if parts else jnp.zeros((0,))).astype(dtype)
    z = rng.standard_normal(total, dtype=np.float32)
    bad = np.flatnonzero(np.abs(z) > 2)
    while len(bad):  # resample the tails: exact truncated normal
        z[bad] = rng.standard_normal(len(bad), dtype=np.float32)
        bad = bad[np.abs(z[bad]) > 2]
    out = np.empty(total, dtype=np.float32)
    o = 0
    for s, std in zip(shapes, stds):
        n = int(np.prod(s))
        out[o:o + n] = (z[o:o + n].reshape(s) * (np.asarray(std, np.float32) / np.float32(TRUNC_STD))).reshape(-1)
        o += n
    return jax.device_put(out.astype(np.dtype(dtype)))  # device_put: no per-shape XLA program
