"""Train-step throughput and peak memory: equilib next to escnn (PyTorch) on the same architectures.

    python benchmarks/escnn_compare.py                      # P4CNN batch 128, then the C16 stack
    python benchmarks/escnn_compare.py --models p4cnn       # P4CNN only
    python benchmarks/escnn_compare.py --quick              # a smoke run (P4CNN batch 8, no escnn)
    python benchmarks/escnn_compare.py --escnn-python /work/escnn-venv/bin/python

Each equilib configuration runs in its own process (XLA reads its flags at start-up):
the convolution path (``EQUILIB_CONV_IMPL=xla``, the ``lax.conv_general_dilated`` reference, or
``auto``, the default fast path) on one XLA device, and on two host devices with the batch
sharded (``--xla_force_host_platform_device_count=2``, the experiments' default). escnn runs
``tools/escnn_bench.py`` in its own venv (it pins numpy < 2) with 2 torch threads. Each process
times ``--steps`` train steps after warm-up (median); all are started from this one run, one
after the other, so machine noise is shared as far as it can be. Printed: images/s, ratio
equilib / escnn (> 1: equilib faster), and cores kept busy.

Peak memory: XLA's buffer assignment of the compiled train step (``temp_size``: the peak live
set of intermediates; arguments = parameters + optimizer state + batch), for P4CNN and for the
plain-conv model of the same width (``GCNN(Trivial(), width=40)``: the same layers with 40
plain channels instead of 10 C4 fields), so the ratio shows what the group structure costs.
Architectures: ``tools/escnn_bench.py`` (P4CNN: lifting + five 3x3 group convs + 4x4 top,
batch norm + ReLU, max-pool after the second layer, group and spatial max; C16: the 6-layer
regular-field stack of ``benchmarks/build_time.py`` + group pool + spatial max + linear).
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
    if name == "c16":
        from build_time import StackClassifier
        return StackClassifier(rngs=rngs)
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


def _run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1][:200]
        return None, tail
    return json.loads(lines[-1][7:]), None


def equilib_run(model, batch, size, steps, impl, devices):
    cmd = [sys.executable, os.path.abspath(__file__), f"--worker-devices={devices}", "--worker-model", model,
           "--batch", str(batch), "--size", str(size), "--steps", str(steps)]
    return _run(cmd, {"EQUILIB_CONV_IMPL": impl})


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
    from _common import machine_info
    print(machine_info())
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
        ref = None
        if have_escnn:
            ref, err = escnn_run(args.escnn_python, name, batch, size, steps)
            if ref is None:
                print(f"  escnn failed: {err}")
            else:
                print(f"  {'escnn (torch ' + ref['torch'] + ', ' + str(ref['threads']) + ' threads)':44s} "
                      f"{ref['step_s'] * 1e3:8.1f} ms/step {ref['images_per_s']:8.1f} img/s  "
                      f"{ref['cores']:.2f} cores, {ref['params']:,} params, build {ref['build_s']:.2f} s")
        rows = [("xla", 1), ("auto", 1), ("xla", 2), ("auto", 2)]
        if name == "c16" and not args.quick:
            rows = [("xla", 1), ("auto", 1)]  # batch 2: nothing to shard usefully
        if jax.default_backend() != "cpu":
            rows = [("xla", 1)]  # "auto" is "xla" off the CPU; host devices are a CPU trick
        for impl, devices in rows:
            r, err = equilib_run(name, batch, size, steps, impl, devices)
            label = f"equilib impl={impl}, {devices} device(s)"
            if r is None:
                print(f"  {label:44s} failed: {err}")
                continue
            ratio = f"  ratio to escnn {r['images_per_s'] / ref['images_per_s']:.2f}" if ref else ""
            print(f"  {label:44s} {r['step_s'] * 1e3:8.1f} ms/step {r['images_per_s']:8.1f} img/s  "
                  f"{r['cores']:.2f} cores, {r['params']:,} params{ratio}")
        if name == "p4cnn":
            print(f"\n  peak memory of the compiled train step (XLA buffer assignment, 1 device, batch {batch})")
            mem = {}
            for model in ("p4cnn", "plain40"):
                for impl in ("xla", "auto"):
                    r, err = _run([sys.executable, os.path.abspath(__file__), "--worker-devices=1",
                                   "--worker-model", model, "--batch", str(batch), "--size", str(size),
                                   "--steps", "1"], {"EQUILIB_CONV_IMPL": impl})
                    if r is None:
                        print(f"  {model} impl={impl} failed: {err}")
                        continue
                    m = r["memory"]
                    mem[model, impl] = m.get("temp_size_in_bytes", 0)
                    print(f"  {model:8s} impl={impl:5s} {r['params']:7,} params: "
                          f"temporaries {_mb(m.get('temp_size_in_bytes', 0))}, "
                          f"arguments {_mb(m.get('argument_size_in_bytes', 0))}")
            for impl in ("xla", "auto"):
                if ("p4cnn", impl) in mem and mem.get(("plain40", impl)):
                    print(f"  impl={impl}: P4CNN / plain same width temporaries ratio "
                          f"{mem['p4cnn', impl] / mem['plain40', impl]:.3f}")


if __name__ == "__main__":
    main()
