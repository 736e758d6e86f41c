"""Build time of the reference models and of a 6-layer steerable stack, and their first jit.

    python benchmarks/build_time.py                      # reference models, then C4 C8 C16 stacks
    python benchmarks/build_time.py --groups C16 --models  # only the C16 stack
    python benchmarks/build_time.py --no-forward         # construction only

Reference models (``Z2CNN``, ``P4CNN``, ``P4CNNRotationPooling``, ``P4MCNN``): construction
(``model(rngs=nnx.Rngs(0))``), first jit of the eval forward pass (batch 2, 28x28, trace +
compile + run) and compile of the train step of :mod:`equilib.training` (Adam, batch 128).
Each model is built first in a fresh process state for its classes (the first build of a
class includes its one-off costs), the order is as listed.

The stack is the one escnn's users report as slow to build (escnn#54): regular fields of
widths 24, 32, 36, 36, 64, 96, kernels 7, 5, 5, 5, 5, 5, each SteerableConv + FieldBatchNorm +
ELU, on a trivial (grey-scale) input. Goal: < 0.5 s. escnn's times on this machine are in
../shared/reference/benchmarks.md (C4 3.6 s, C8 7.4 s, C16 16.4 s); tools/escnn_reference.py
measured 2.3 / 4.4 / 9.0 s in its own venv on 2026-11-26. "first" includes computing the
kernel bases (cached per configuration for the rest of the process), "second" builds the same
stack again with another seed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fake_mnist, machine_info, make_train_step  # noqa: E402

from equilib import FieldType, nn  # noqa: E402
from equilib.groups import Cyclic, Dihedral  # noqa: E402
from equilib.reps import regular_rep, trivial_rep  # noqa: E402
from equilib.training import count_params  # noqa: E402

GROUPS = {"C4": Cyclic(4), "C8": Cyclic(8), "C16": Cyclic(16), "D16": Dihedral(16)}
WIDTHS, KERNELS = (24, 32, 36, 36, 64, 96), (7, 5, 5, 5, 5, 5)
MODELS = ("Z2CNN", "P4CNN", "P4CNNRotationPooling", "P4MCNN")


def build(group, seed: int = 0, rngs: nnx.Rngs | None = None):
    rngs = rngs if rngs is not None else nnx.Rngs(seed)
    ftype = FieldType(group, [trivial_rep(group)])
    layers = []
    for width, k in zip(WIDTHS, KERNELS):
        out = FieldType(group, [regular_rep(group)] * width)
        layers += [nn.SteerableConv(ftype, out, k, rngs=rngs), nn.FieldBatchNorm(out, rngs=rngs),
                   nn.PointwiseNonlinearity(out, "elu")]
        ftype = out
    return nn.FieldSequential(*layers)


class StackClassifier(nnx.Module):
    """The 6-layer stack, then group pooling, the maximum over space and ``Linear(96, 10)``:
    the "C16 stack" of the train-step benchmarks (tools/escnn_bench.py builds the same in escnn)."""

    def __init__(self, group=None, *, num_classes: int = 10, rngs: nnx.Rngs):
        group = Cyclic(16) if group is None else group
        self.body = build(group, rngs=rngs)
        out = FieldType(group, [regular_rep(group)] * WIDTHS[-1])
        self.gpool = nn.FieldGroupPool(out, "max")
        self.fc = nnx.Linear(WIDTHS[-1], num_classes, rngs=rngs)

    def __call__(self, x):
        return self.fc(jnp.max(self.gpool(self.body(x)), axis=(1, 2)))


def reference_model(name: str, rngs: nnx.Rngs):
    from equilib import models

    return getattr(models, name)(rngs=rngs)


def time_models(names, forward: bool, train_batch: int):
    for name in names:
        t0 = time.perf_counter()
        model = reference_model(name, nnx.Rngs(0))
        t1 = time.perf_counter()
        reference_model(name, nnx.Rngs(1))
        t2 = time.perf_counter()
        n = count_params(model)
        line = f"{name}: construction {t1 - t0:.3f} s first, {t2 - t1:.3f} s second, {n:,} params"
        if forward:
            model.eval()
            x = jnp.ones((2, 28, 28, 1))
            fwd = nnx.jit(lambda m, x: m(x))
            t3 = time.perf_counter()
            fwd(model, x).block_until_ready()
            t4 = time.perf_counter()
            model.train()
            step, state = make_train_step(model)
            xb, yb = fake_mnist(train_batch)
            t5 = time.perf_counter()
            step.lower(state, xb, yb, jax.random.key(0)).compile()
            t6 = time.perf_counter()
            line += (f"; first jit forward (batch 2) {t4 - t3:.2f} s; construction + first jit forward "
                     f"{t1 - t0 + t4 - t3:.2f} s (goal < 0.5 s: ratio {(t1 - t0 + t4 - t3) / 0.5:.2f}); "
                     f"train-step compile (batch {train_batch}) {t6 - t5:.2f} s")
        print(line, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", nargs="*", default=["C4", "C8", "C16"], choices=sorted(GROUPS))
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS,
                   help="reference models to time (none: --models with no names)")
    p.add_argument("--no-forward", action="store_true", help="skip the first jit forward pass")
    p.add_argument("--train-batch", type=int, default=128)
    args = p.parse_args(argv)
    print(machine_info())
    jax.device_put(np.zeros(1)).block_until_ready()  # start the backend outside the timings
    time_models(args.models, not args.no_forward, args.train_batch)
    for name in args.groups:
        group = GROUPS[name]
        t0 = time.perf_counter()
        model = build(group)
        t1 = time.perf_counter()
        build(group, seed=1)
        t2 = time.perf_counter()
        n = count_params(model)
        line = (f"{name} stack: build {t1 - t0:.3f} s first (goal < 0.5 s: ratio {(t1 - t0) / 0.5:.2f}), "
                f"{t2 - t1:.3f} s second, {n:,} params")
        if not args.no_forward:
            model.eval()
            x = jnp.ones((2, 29, 29, 1))
            fwd = nnx.jit(lambda m, x: m(x))
            t3 = time.perf_counter()
            fwd(model, x).block_until_ready()
            t4 = time.perf_counter()
            fwd(model, x).block_until_ready()
            t5 = time.perf_counter()
            line += (f"; first jit forward (batch 2, 29x29) {t4 - t3:.2f} s, then {t5 - t4:.3f} s; "
                     f"build + first jit {t1 - t0 + t4 - t3:.2f} s")
        print(line, flush=True)


if __name__ == "__main__":
    main()
