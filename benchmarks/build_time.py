"""Build time of a 6-layer steerable stack, and of its first jit-compiled forward pass.

    python benchmarks/build_time.py [--groups C4 C8 C16] [--no-forward]

The stack is the one escnn's users report as slow to build (escnn#54): regular fields of widths
24, 32, 36, 36, 64, 96, kernels 7, 5, 5, 5, 5, 5, each SteerableConv + FieldBatchNorm + ELU,
on a trivial (grey-scale) input. Goal: < 0.5 s. escnn's times on this machine are in
../shared/reference/benchmarks.md (C4 3.6 s, C8 7.4 s, C16 16.4 s); tools/escnn_reference.py
measured 2.3 / 4.4 / 9.0 s in its own venv on 2026-11-26. "first" includes computing the
kernel bases (cached per configuration for the rest of the process), "second" builds the same
stack again with another seed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib import FieldType, nn
from equilib.groups import Cyclic, Dihedral

GROUPS = {"C4": Cyclic(4), "C8": Cyclic(8), "C16": Cyclic(16), "D16": Dihedral(16)}
WIDTHS, KERNELS = (24, 32, 36, 36, 64, 96), (7, 5, 5, 5, 5, 5)


def build(group, seed: int = 0):
    rngs = nnx.Rngs(seed)
    ftype = FieldType(group, [group.trivial_rep])
    layers = []
    for width, k in zip(WIDTHS, KERNELS):
        out = FieldType(group, [group.regular_rep] * width)
        layers += [nn.SteerableConv(ftype, out, k, rngs=rngs), nn.FieldBatchNorm(out, rngs=rngs),
                   nn.PointwiseNonlinearity(out, "elu")]
        ftype = out
    return nn.FieldSequential(*layers)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", nargs="+", default=["C4", "C8", "C16"], choices=sorted(GROUPS))
    p.add_argument("--no-forward", action="store_true", help="skip the first jit forward pass")
    args = p.parse_args(argv)
    print(f"python {platform.python_version()}, jax {jax.__version__}, {jax.default_backend()}, "
          f"{os.cpu_count()} CPUs")
    jax.device_put(np.zeros(1)).block_until_ready()  # start the backend outside the timings
    for name in args.groups:
        group = GROUPS[name]
        t0 = time.perf_counter()
        model = build(group)
        t1 = time.perf_counter()
        build(group, seed=1)
        t2 = time.perf_counter()
        n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
        line = (f"{name}: build {t1 - t0:.3f} s first, {t2 - t1:.3f} s second (goal < 0.5 s), "
                f"{n:,} params")
        if not args.no_forward:
            model.eval()
            x = jnp.ones((2, 29, 29, 1))
            fwd = nnx.jit(lambda m, x: m(x))
            t3 = time.perf_counter()
            fwd(model, x).block_until_ready()
            t4 = time.perf_counter()
            fwd(model, x).block_until_ready()
            t5 = time.perf_counter()
            line += f"; first jit forward (batch 2, 29x29) {t4 - t3:.2f} s, then {t5 - t4:.3f} s"
        print(line, flush=True)


if __name__ == "__main__":
    main()
