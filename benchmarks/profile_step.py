"""Where does a train step's time go? A jax.profiler trace of the step, per HLO op category.

    python benchmarks/profile_step.py                       # P4CNN, batch 128, xla and im2col paths
    python benchmarks/profile_step.py --model c16 --batch 2 --size 29
    python benchmarks/profile_step.py --quick

For each convolution path (``EQUILIB_CONV_IMPL``), the compiled train step of
:mod:`equilib.training` is traced for a few steps with ``jax.profiler.trace``; the XLA:CPU
thunk events (one per HLO op executed) are read back with ``jax.profiler.ProfileData`` and
summed per category of the op's opcode in the compiled HLO: convolution, dot (``ynn_fusion``
= YNNPACK matmul, ``dot`` = Eigen), loop fusions (elementwise, batch norm, window copies),
reductions, copies/transposes, other. Also printed: wall time per step, the ops' summed
time per step (> wall time where ops ran concurrently), and the cores kept busy:
process CPU time / wall time over the profiled loop. An op's time is its event's duration,
except for Eigen's convolutions, which XLA:CPU runs asynchronously: launch to completion.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import block, fake_mnist, machine_info, make_train_step  # noqa: E402
from flax import nnx  # noqa: E402


def _model(name: str, rngs):
    if name == "p4cnn":
        from equilib.models import P4CNN

        return P4CNN(rngs=rngs)
    if name == "z2cnn40":
        from equilib.models import Z2CNN

        return Z2CNN(width=40, rngs=rngs)
    if name == "c16":
        from escnn_compare import c16_stack

        return c16_stack(rngs)
    raise ValueError(name)


def _categories(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> category."""
    cats = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = .*? ([a-z][\w\-]*)\(", line)
        if not m:
            continue
        name, op = m.groups()
        if op == "convolution":
            c = "convolution"
        elif op == "fusion" and "__ynn_fusion" in line:
            c = "dot (YNNPACK)"
        elif op == "dot":
            c = "dot (Eigen)"
        elif op == "fusion" and "kind=kLoop" in line:
            c = "loop fusion"
        elif op == "fusion" and "kind=kInput" in line or op in ("reduce", "reduce-window"):
            c = "reduction"
        elif op in ("copy", "transpose", "concatenate", "pad", "slice", "dynamic-slice"):
            c = "copy/transpose/concat"
        elif op == "fusion":
            c = "other fusion"
        else:
            c = "other"
        cats[name] = c
    return cats


def profile(model_name: str, impl: str, batch: int, size: int, steps: int, top: int = 0):
    os.environ["EQUILIB_CONV_IMPL"] = impl
    model = _model(model_name, nnx.Rngs(0))
    x, y = fake_mnist(batch, size)
    step, state = make_train_step(model)
    key = jax.random.key(0)
    compiled = step.lower(state, x, y, key).compile()
    cats = _categories(compiled.as_text())
    for _ in range(2):
        state, m = compiled(state, x, y, key)
        block(m)
    d = tempfile.mkdtemp()
    c0, t0 = time.process_time(), time.perf_counter()
    with jax.profiler.trace(d):
        for _ in range(steps):
            state, m = compiled(state, x, y, key)
            block(m)
    wall = time.perf_counter() - t0
    cores = (time.process_time() - c0) / wall
    # the same loop without the profiler, for the step time
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, x, y, key)
        block(m)
    step_s = (time.perf_counter() - t0) / steps
    files = glob.glob(os.path.join(d, "**", "*.xplane.pb"), recursive=True)
    data = jax.profiler.ProfileData.from_file(files[0])
    # XLA:CPU records an event per executed op on the thread that ran it. Eigen's convolution
    # runs asynchronously: its event is the launch (microseconds) and an "end: <op>" event marks
    # its completion, so a convolution's time runs from launch to completion (it may include
    # time waiting for a free thread); every other op's time is its event's duration.
    starts, ends, dur = collections.defaultdict(list), collections.defaultdict(list), collections.Counter()
    threads = collections.Counter()
    for plane in data.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for ev in line.events:
                if ev.name in cats:
                    starts[ev.name].append(ev.start_ns)
                    dur[ev.name] += ev.duration_ns
                    threads[line.name] += 1
                elif ev.name.startswith("end: ") and ev.name[5:] in cats:
                    ends[ev.name[5:]].append(ev.start_ns + ev.duration_ns)
    per_cat = collections.Counter()
    per_op = collections.Counter()
    for name, st in starts.items():
        if cats[name] != "convolution":
            per_cat[cats[name]] += dur[name]
            per_op[name] += dur[name]
            continue
        en = sorted(ends.get(name, []))
        for s0 in sorted(st):
            e0 = next((e for e in en if e >= s0), None)
            if e0 is None:
                continue
            en.remove(e0)
            per_cat[cats[name]] += e0 - s0
            per_op[name] += e0 - s0
    total = sum(per_cat.values())
    print(f"\n{model_name}, batch {batch}, {size}x{size}, EQUILIB_CONV_IMPL={impl}: "
          f"{step_s * 1e3:.1f} ms/step ({batch / step_s:,.0f} images/s) without the profiler; "
          f"profiled: {wall / steps * 1e3:.1f} ms/step, ops summed {total / steps / 1e6:.1f} ms/step, "
          f"{cores:.2f} cores busy, ops launched from {len(threads)} thread(s)")
    for c, ns in per_cat.most_common():
        print(f"  {c:24s} {ns / steps / 1e6:8.1f} ms/step  {ns / total:6.1%}")
    print("  top ops: " + ", ".join(f"{n} {ns / steps / 1e6:.1f} ms" for n, ns in per_op.most_common(6)))
    if top:
        lines = {m.group(1): line.strip() for line in compiled.as_text().splitlines()
                 if (m := re.match(r"\s*(?:ROOT )?%([\w.\-]+) = ", line))}
        for n, ns in per_op.most_common(top):
            line = lines.get(n, "")
            shape = line.split(" = ", 1)[-1].split("(", 1)[0][:60]
            source = re.search(r'op_name="([^"]*)"', line)
            print(f"    {ns / steps / 1e6:7.1f} ms  {n:32s} {shape:60s} {source.group(1)[-90:] if source else ''}")
    return step_s, per_cat


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="p4cnn", choices=["p4cnn", "z2cnn40", "c16"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--impls", nargs="+", default=["xla", "im2col"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--top", type=int, default=0, help="also list the N most expensive ops with their source")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps = 8, 2
    print(machine_info())
    for impl in args.impls:
        profile(args.model, impl, args.batch, args.size, args.steps, args.top)


if __name__ == "__main__":
    main()
