"""The pieces of the P4CNN train step that issue 16's changes touched, old and new, in one process.

    python benchmarks/step_parts.py            # sums, batch norm + ReLU, kernel gradients, whole step
    python benchmarks/step_parts.py --quick    # a seconds-long smoke run

Interleaved repeats (ratios from one run; the VM is shared): the per-channel sums of a
``(128, 26, 26, 40)`` map (``jnp.sum`` over the map's axes vs ``equilib._src.sums.row_sums`` on
its matrix view), batch norm + ReLU forward and backward (the textbook formulation vs
``functional.batch_norm``), the kernel gradient of the P4CNN layers summed over 1, 2, 4 or 8
chunks of the batch (``equilib._src.conv_grad``; ``chunk_count`` says which the library uses),
and the whole P4CNN train step with the kernel-gradient chunks set to 1 (off), 4, 8 and 16.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import block, interleaved, machine_info, make_train_step, median  # noqa: E402

import equilib._src.conv_grad as conv_grad  # noqa: E402
from equilib import functional as F  # noqa: E402
from equilib._src.sums import row_sums  # noqa: E402


def _ms(times):
    return f"{1e3 * median(times):7.2f} ms"


def sums(repeats, b):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(b, 26, 26, 40)), jnp.float32)
    fns = {"jnp.sum over the 4-D axes": jax.jit(lambda x: (jnp.sum(x, axis=(0, 1, 2)),
                                                           jnp.sum(jnp.square(x), axis=(0, 1, 2)))),
           "row_sums on the matrix view": jax.jit(lambda x: row_sums(x.reshape(-1, 40),
                                                                     jnp.square(x.reshape(-1, 40))))}
    t = interleaved(fns, {k: (x,) for k in fns}, repeats)
    print(f"\nsum and sum of squares per channel of {tuple(x.shape)}")
    for k, v in t.items():
        print(f"  {k:32s} {_ms(v)}")


def batch_norm(repeats, b):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(b, 26, 26, 10, 4)), jnp.float32)
    g = jnp.asarray(np.random.default_rng(2).normal(size=x.shape), jnp.float32)
    scale, bias = jnp.ones(10), jnp.zeros(10)

    def textbook(x, scale, bias):
        mean = jnp.mean(x, axis=(0, 1, 2, 4))
        var = jnp.mean(jnp.square(x), axis=(0, 1, 2, 4)) - jnp.square(mean)
        y = (x - mean[:, None]) * (lax.rsqrt(var + 1e-5) * scale)[:, None] + bias[:, None]
        return jax.nn.relu(y)

    def ours(x, scale, bias):
        return jax.nn.relu(F.batch_norm(x, scale, bias)[0])

    fns, args = {}, {}
    for name, f in (("textbook", textbook), ("functional.batch_norm", ours)):
        fns[name + ", forward"] = jax.jit(f)
        args[name + ", forward"] = (x, scale, bias)
        fns[name + ", fwd + bwd"] = jax.jit(lambda x, s, b, g, f=f: jax.vjp(f, x, s, b)[1](g))
        args[name + ", fwd + bwd"] = (x, scale, bias, g)
    t = interleaved(fns, args, repeats)
    print(f"\nbatch norm + ReLU on {tuple(x.shape)}")
    for k, v in t.items():
        print(f"  {k:40s} {_ms(v)}")


def kernel_gradients(repeats, b):
    shapes = [(b, 26, 40, 40, 3), (b, 12, 40, 40, 3), (b, 8, 40, 40, 3), (b, 28, 1, 40, 3), (b, 28, 20, 20, 3)]
    print("\nkernel gradient (VALID conv), summed over n chunks of the batch; * = the library's choice")
    saved = conv_grad.RATIO, conv_grad.CHUNKS
    for (n_b, h, c, o, k) in shapes:
        x = jnp.asarray(np.random.default_rng(3).normal(size=(n_b, h, h, c)), jnp.float32)
        w = jnp.asarray(np.random.default_rng(4).normal(size=(k, k, c, o)), jnp.float32)
        g = jnp.ones((n_b, h - k + 1, h - k + 1, o), jnp.float32)
        chosen = conv_grad.chunk_count(x.shape, w.shape, g.shape, 2)
        fns = {}
        try:  # RATIO = 0: chunk whatever the shape, into CHUNKS = n (traced at lower())
            for n in (1, 2, 4, 8):
                conv_grad.RATIO, conv_grad.CHUNKS = 0, n
                fns[n] = jax.jit(lambda x, w, g: jax.vjp(
                    lambda w: conv_grad.conv(x, w, (1, 1), "VALID", ("NHWC", "HWIO", "NHWC"), None, None),
                    w)[1](g)[0]).lower(x, w, g).compile()
        finally:
            conv_grad.RATIO, conv_grad.CHUNKS = saved
        t = interleaved(fns, {n: (x, w, g) for n in fns}, repeats)
        ratio = n_b * (h - k + 1) ** 2 / (k * k * c * o)
        cells = "  ".join(f"{n}:{1e3 * median(v):6.2f}{'*' if n == chosen else ' '}" for n, v in t.items())
        print(f"  {str((n_b, h, h, c)):18s} -> {o:3d}, {k}x{k} (terms / entries {ratio:6.2f})  {cells} ms")


def whole_step(repeats, b):
    from flax import nnx

    from equilib.models import P4CNN

    x = jnp.asarray(np.random.default_rng(5).normal(size=(b, 28, 28, 1)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(6).integers(0, 10, b))
    key = jax.random.key(0)
    saved = conv_grad.CHUNKS
    steps, states = {}, {}
    try:
        for n in (1, 4, 8, 16):
            conv_grad.CHUNKS = n
            step, state = make_train_step(P4CNN(rngs=nnx.Rngs(0)))
            steps[n], states[n] = step.lower(state, x, y, key).compile(), state
    finally:
        conv_grad.CHUNKS = saved
    times = {n: [] for n in steps}
    import time
    for r in range(repeats + 2):
        for n, step in steps.items():
            t = time.perf_counter()
            states[n], m = step(states[n], x, y, key)
            block(m)
            if r >= 2:
                times[n].append(time.perf_counter() - t)
    print(f"\nP4CNN train step, batch {b}, kernel gradients in n chunks (1 = unchunked); "
          f"{repeats} interleaved steps each")
    for n, v in times.items():
        print(f"  n = {n:2d}  {_ms(v)}  (min {1e3 * min(v):.1f})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    repeats, b = (2, 8) if args.quick else (args.repeats, 128)
    print(machine_info() + f", load average {os.getloadavg()[0]:.2f}")
    sums(repeats, b)
    batch_norm(repeats, b)
    kernel_gradients(repeats, b)
    whole_step(repeats, b)


if __name__ == "__main__":
    main()
