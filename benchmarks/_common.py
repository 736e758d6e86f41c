"""Shared helpers of the benchmark scripts: machine line, interleaved timing, train steps."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import equilib  # noqa: F401  (before any JAX backend starts: it sets equilib's XLA:CPU flag)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info() -> str:
    dev = jax.devices()[0]
    return (f"python {platform.python_version()}, jax {jax.__version__}, backend "
            f"{jax.default_backend()} ({dev.device_kind}, {len(jax.devices())} device(s)), "
            f"{os.cpu_count()} CPUs ({cpu_model()}), {platform.machine()}, "
            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
            f"EQUILIB_CONV_IMPL={os.environ.get('EQUILIB_CONV_IMPL', '')!r}")


def block(x):
    return jax.block_until_ready(x)


def time_once(fn, *args) -> float:
    t = time.perf_counter()
    block(fn(*args))
    return time.perf_counter() - t


def interleaved(fns: dict, args: dict, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Times each ``fns[name](*args[name])`` ``repeats`` times, round-robin, so that machine
    noise hits all alike. Returns the lists of seconds."""
    for name, fn in fns.items():
        for _ in range(warmup):
            time_once(fn, *args[name])
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_once(fn, *args[name]))
    return times


def median(v) -> float:
    return statistics.median(v)


def compare_with_plain(layer_fwd, params, x, plain_fwd, w_plain, x_plain, repeats: int,
                       trace_context=contextlib.nullcontext) -> dict:
    """Compiles ``value_and_grad`` (w.r.t. both arguments) of ``sum(f(a, b) ** 2)`` and the forward
    ``f(a, b)`` for the layer ``layer_fwd(params, x)`` and for the plain convolution
    ``plain_fwd(w_plain, x_plain)``, times the four interleaved (:func:`interleaved`) and returns
    the medians ``med`` (``layer_fb``, ``plain_fb``, ``layer_f``, ``plain_f``; seconds), the layer's
    first compile ``compile_s``, ``ratio_fb`` and ``ratio_f`` (layer / plain) and ``diff``, the
    largest ``|layer - plain|`` of the forward outputs (the layer's reshaped to ``x_plain``'s
    leading axes, both in float32). The layer's two programs are traced inside ``trace_context()``.
    """

    def layer_loss(p, x):
        return jnp.sum(layer_fwd(p, x) ** 2)

    def plain_loss(w, x):
        return jnp.sum(plain_fwd(w, x) ** 2)

    with trace_context():
        t0 = time.perf_counter()
        lg = jax.jit(jax.value_and_grad(layer_loss, argnums=(0, 1))).lower(params, x).compile()
        compile_s = time.perf_counter() - t0
        lf = jax.jit(layer_fwd).lower(params, x).compile()
    pg = jax.jit(jax.value_and_grad(plain_loss, argnums=(0, 1))).lower(w_plain, x_plain).compile()
    pf = jax.jit(plain_fwd).lower(w_plain, x_plain).compile()
    times = interleaved({"layer_fb": lg, "plain_fb": pg, "layer_f": lf, "plain_f": pf},
                        {"layer_fb": (params, x), "plain_fb": (w_plain, x_plain), "layer_f": (params, x),
                         "plain_f": (w_plain, x_plain)}, repeats)
    med = {n: median(v) for n, v in times.items()}
    diff = float(jnp.max(jnp.abs(lf(params, x).reshape(x_plain.shape[:-1] + (-1,)).astype(jnp.float32)
                                 - pf(w_plain, x_plain).astype(jnp.float32))))
    return {"med": med, "compile_s": compile_s, "diff": diff,
            "ratio_fb": med["layer_fb"] / med["plain_fb"], "ratio_f": med["layer_f"] / med["plain_f"]}


def peak_matmul_gflops(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
    """Measured fp32 matmul rate of this backend (``n x n`` by ``n x n``): the practical
    compute ceiling the convolutions are compared against."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    block(f(a, b))
    t = min(time_once(f, a, b) for _ in range(repeats))
    return 2 * n**3 / t / 1e9


def compiled_flops(compiled) -> float | None:
    try:
        ca = compiled.cost_analysis()
        if isinstance(ca, (list, tuple)):
            ca = ca[0]
        return float(ca.get("flops", 0.0)) or None
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def memory_stats(compiled) -> dict:
    """XLA's static buffer assignment of a compiled program (bytes): arguments, outputs,
    temporaries (the peak live set of intermediates) and generated code."""
    m = compiled.memory_analysis()
    if m is None:
        return {}
    return {k: int(getattr(m, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                            "temp_size_in_bytes", "alias_size_in_bytes",
                                            "generated_code_size_in_bytes") if hasattr(m, k)}


def make_train_step(model, learning_rate: float = 1e-3):
    """``(step, state)``: the jitted train step of :mod:`equilib.training` (Adam, softmax
    cross-entropy, ``nnx.value_and_grad``, state donated) for ``model``."""
    import optax
    from flax import nnx

    from equilib.training import _make_train_step

    opt = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)
    graphdef, state = nnx.split((model, opt))
    step = jax.jit(_make_train_step(graphdef, None, None), donate_argnums=0)
    return step, state


def time_train_step(model, x, y, steps: int, warmup: int = 2):
    """Seconds per train step (median of ``steps``), the first call's compile time, and the
    compiled program (for its cost and memory analysis)."""
    step, state = make_train_step(model)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = step.lower(state, x, y, key).compile()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        state, m = compiled(state, x, y, key)
        block(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = compiled(state, x, y, key)
        block(m)
        times.append(time.perf_counter() - t)
    return median(times), compile_s, compiled, times


def fake_mnist(batch: int, size: int = 28, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, size, size, 1)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)
