"""Train-step throughput and peak memory: equilib next to escnn (PyTorch) on the same architectures.

    python benchmarks/escnn_compare.py                      # P4CNN batch 128, the C8 and C16 stacks
    python benchmarks/escnn_compare.py --models p4cnn       # P4CNN only
    python benchmarks/escnn_compare.py --quick              # a smoke run (P4CNN batch 8, no escnn)
    python benchmarks/escnn_compare.py --escnn-python /work/escnn-venv/bin/python
    python benchmarks/escnn_compare.py --models p4cnn --rounds 3   # escnn and equilib alternating

Each equilib configuration runs in its own process (XLA reads its flags at start-up), with
``XLA_FLAGS``, ``EQUILIB_CONV_IMPL`` and ``EQUILIB_XLA_FLAGS`` removed from its environment:
**default** (what a user gets after ``pip install``: ``import equilib`` sets its XLA:CPU flag) on
one XLA device, the same on two host devices with the batch sharded
(``--xla_force_host_platform_device_count=2``, the experiments' default; P4CNN only), and with
``EQUILIB_XLA_FLAGS=0`` (XLA:CPU's YNNPACK fusions left on: the default before). escnn runs
``tools/escnn_bench.py`` in its own venv (it pins numpy < 2) with 2 torch threads. Each process
times ``--steps`` train steps after warm-up (median); all are started from this one run, one
after the other, so machine noise is shared as far as it can be; ``--rounds N`` repeats escnn
and the equilib rows N times, alternating, and prints each row's median ratio over the rounds
(each round's ratio taken against that round's escnn: the shared VM's speed drifts by 10-40 %
over minutes). Printed: images/s, ratio equilib / escnn (> 1: equilib faster), and cores kept
busy.

Peak memory: XLA's buffer assignment of the compiled train step (``temp_size``: the peak live
set of intermediates; arguments = parameters + optimizer state + batch), for P4CNN and for the
plain-conv model of the same width (``GCNN(Trivial(), width=40)``: the same layers with 40
plain channels instead of 10 C4 fields), so the ratio shows what the group structure costs.
Architectures: ``tools/escnn_bench.py`` (P4CNN: lifting + five 3x3 group convs + 4x4 top,
batch norm + ReLU, max-pool after the second layer, group and spatial max; C8 / C16: the 6-layer
regular-field stack of ``benchmarks/build_time.py`` over C8 / C16 + group pool + spatial max +
linear).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_WORKER = [a for a in sys.argv if a.startswith("--worker-devices=")]
if __name__ == "__main__" and _WORKER and int(_WORKER[0].split("=")[1]) > 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={_WORKER[0].split('=')[1]}").strip()

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_ESCNN = "/work/escnn-venv/bin/python"
MODELS = {  # name: (batch, size, steps)
    "p4cnn": (128, 28, 10),
    "c8": (4, 29, 3),
    "c16": (2, 29, 3),
}


def _model(name, rngs):
    if name == "p4cnn":
        from equilib.models import P4CNN
        return P4CNN(rngs=rngs)
    if name == "plain40":
        from equilib.groups import Trivial
        from equilib.models import GCNN
        return GCNN(Trivial(), width=40, rngs=rngs)
    if name in ("c8", "c16"):
        from build_time import StackClassifier

        from equilib.groups import Cyclic
        return StackClassifier(Cyclic(int(name[1:])), rngs=rngs)
    raise ValueError(f"unknown model {name!r}")


def worker(model_name, batch, size, steps, devices):
    import time

    import jax
    import numpy as np
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    sys.path.insert(0, HERE)
    from _common import fake_mnist, make_train_step, median, memory_stats

    from equilib.training import count_params

    model = _model(model_name, nnx.Rngs(0))
    step, state = make_train_step(model)
    x, y = fake_mnist(batch, size)
    key = jax.random.key(0)
    if devices > 1:
        mesh = Mesh(np.asarray(jax.devices()[:devices]), ("data",))
        x = jax.device_put(x, NamedSharding(mesh, P("data")))
        y = jax.device_put(y, NamedSharding(mesh, P("data")))
        state = jax.device_put(state, NamedSharding(mesh, P()))
    compiled = step.lower(state, x, y, key).compile()
    for _ in range(2):
        state, m = compiled(state, x, y, key)
        jax.block_until_ready(m)
    times = []
    c0 = time.process_time()
    for _ in range(steps):
        t = time.perf_counter()
        state, m = compiled(state, x, y, key)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    cores = (time.process_time() - c0) / sum(times)
    s = median(times)
    out = {"step_s": s, "images_per_s": batch / s, "cores": cores, "memory": memory_stats(compiled),
           "params": count_params(model)}
    print("RESULT " + json.dumps(out), flush=True)


def _run(cmd, env=None, replace=False):
    env = dict(env or {}) if replace else {**os.environ, **(env or {})}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1][:200]
        return None, tail
    return json.loads(lines[-1][7:]), None


# (label, environment, devices): "default" is what a user gets after `pip install`, no variable
# set (equilib sets its XLA:CPU flag at import); the others are there to compare
ROWS = [("equilib default, 1 device", {}, 1),
        ("equilib default, 2 host devices", {}, 2),
        ("EQUILIB_XLA_FLAGS=0 (YNNPACK fusions on)", {"EQUILIB_XLA_FLAGS": "0"}, 1)]
CLEAN = ("XLA_FLAGS", "EQUILIB_CONV_IMPL", "EQUILIB_XLA_FLAGS")


def equilib_run(model, batch, size, steps, env, devices):
    cmd = [sys.executable, os.path.abspath(__file__), f"--worker-devices={devices}", "--worker-model", model,
           "--batch", str(batch), "--size", str(size), "--steps", str(steps)]
    base = {k: v for k, v in os.environ.items() if k not in CLEAN}
    return _run(cmd, {**base, **env}, replace=True)


def escnn_run(python, model, batch, size, steps):
    cmd = [python, os.path.join(ROOT, "tools", "escnn_bench.py"), "--model", model, "--batch", str(batch),
           "--size", str(size), "--steps", str(steps), "--threads", str(os.cpu_count() or 1)]
    return _run(cmd)


def _mb(b):
    return f"{b / 2**20:8.1f} MB"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=None, choices=list(MODELS),
                   help="default: all (--quick: p4cnn only; the C16 stack takes seconds per step)")
    p.add_argument("--escnn-python", default=os.environ.get("ESCNN_PYTHON", DEFAULT_ESCNN))
    p.add_argument("--quick", action="store_true", help="tiny batch, few steps, no escnn")
    p.add_argument("--rounds", type=int, default=1, help="escnn and the equilib rows, alternating, N times")
    p.add_argument("--worker-devices", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_devices is not None:
        worker(args.worker_model, args.batch, args.size, args.steps, args.worker_devices)
        return

    sys.path.insert(0, HERE)
    import jax
    from _common import machine_info, median
    print(machine_info() + f", load average {os.getloadavg()[0]:.2f}")
    have_escnn = not args.quick and os.path.exists(args.escnn_python)
    if not have_escnn and not args.quick:
        print(f"escnn python {args.escnn_python!r} not found: equilib rows only "
              "(build escnn's venv as in tools/escnn_reference.py)")
    for name in args.models or (["p4cnn"] if args.quick else list(MODELS)):
        batch, size, steps = MODELS[name]
        if args.quick:
            batch, steps = (8 if name == "p4cnn" else 1), 2
        print(f"\n{name}: train step (forward, softmax cross-entropy, backward, Adam), batch {batch}, "
              f"{size}x{size}, median of {steps} steps")
        rows = ROWS
        if name != "p4cnn" and not args.quick:
            rows = ROWS[:1]  # a few images per step: nothing to shard usefully, and minutes per row
        if jax.default_backend() != "cpu":
            rows = ROWS[:1]  # the flag and host devices are CPU matters
        ratios: dict[str, list[float]] = {label: [] for label, _, _ in rows}
        for round_ in range(max(1, args.rounds)):
            if args.rounds > 1:
                print(f"  round {round_ + 1} (load average {os.getloadavg()[0]:.2f})")
            ref = None
            if have_escnn:
                ref, err = escnn_run(args.escnn_python, name, batch, size, steps)
                if ref is None:
                    print(f"  escnn failed: {err}")
                else:
                    print(f"  {'escnn (torch ' + ref['torch'] + ', ' + str(ref['threads']) + ' threads)':44s} "
                          f"{ref['step_s'] * 1e3:8.1f} ms/step {ref['images_per_s']:8.1f} img/s  "
                          f"{ref['cores']:.2f} cores, {ref['params']:,} params, build {ref['build_s']:.2f} s")
            for label, env, devices in rows:
                r, err = equilib_run(name, batch, size, steps, env, devices)
                if r is None:
                    print(f"  {label:44s} failed: {err}")
                    continue
                ratio = ""
                if ref:
                    ratios[label].append(r["images_per_s"] / ref["images_per_s"])
                    ratio = f"  ratio to escnn {ratios[label][-1]:.2f}"
                print(f"  {label:44s} {r['step_s'] * 1e3:8.1f} ms/step {r['images_per_s']:8.1f} img/s  "
                      f"{r['cores']:.2f} cores, {r['params']:,} params{ratio}", flush=True)
        if args.rounds > 1:
            for label, v in ratios.items():
                if v:
                    print(f"  {label:44s} ratio to escnn over {len(v)} rounds: median {median(v):.2f} "
                          f"(min {min(v):.2f}, max {max(v):.2f})")
        if name == "p4cnn":
            print(f"\n  peak memory of the compiled train step (XLA buffer assignment, 1 device, batch {batch})")
            mem = {}
            for model in ("p4cnn", "plain40"):
                r, err = equilib_run(model, batch, size, 1, {}, 1)
                if r is None:
                    print(f"  {model} failed: {err}")
                    continue
                m = r["memory"]
                mem[model] = m.get("temp_size_in_bytes", 0)
                print(f"  {model:8s} {r['params']:7,} params: temporaries {_mb(mem[model])}, "
                      f"arguments {_mb(m.get('argument_size_in_bytes', 0))}")
            if mem.get("p4cnn") and mem.get("plain40"):
                print(f"  P4CNN / plain same width temporaries ratio {mem['p4cnn'] / mem['plain40']:.3f}")


if __name__ == "__main__":
    main()
