"""Build + first jit of the reference models in a first and a second process, with JAX's
persistent compilation cache (:func:`equilib.training.use_compilation_cache`) and without.

    python benchmarks/compile_cache.py                    # P4CNN and Z2CNN
    python benchmarks/compile_cache.py --models P4CNN

For each model, four fresh processes run one after the other: without the cache (twice), then
with an empty cache folder (the first process compiles and writes) and again with the same folder
(the second process loads). Each process times, after its imports: construction
(``Model(rngs=nnx.Rngs(0))``), the first eval forward (batch 2, trace + compile + run) and the
first train step (Adam, batch 128, trace + compile + run). Goal (issue 16): build + first jit
of the forward < 0.5 s in the second process. Printed: one row per process, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(name: str, cache: str | None) -> dict:
    t_start = time.perf_counter()
    import jax
    from flax import nnx

    sys.path.insert(0, HERE)
    from _common import fake_mnist, make_train_step

    from equilib import models
    from equilib.training import use_compilation_cache

    t_import = time.perf_counter() - t_start
    if cache:
        use_compilation_cache(cache)
    t = time.perf_counter()
    model = getattr(models, name)(rngs=nnx.Rngs(0))
    build = time.perf_counter() - t
    x, y = fake_mnist(128)
    t = time.perf_counter()
    model.eval()
    jax.block_until_ready(nnx.jit(lambda m, x: m(x))(model, x[:2]))
    forward = time.perf_counter() - t
    model.train()
    step, state = make_train_step(model)
    t = time.perf_counter()
    state, metrics = step(state, x, y, jax.random.key(0))
    jax.block_until_ready(metrics)
    train = time.perf_counter() - t
    return {"import": t_import, "build": build, "forward": forward, "train_step": train}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["P4CNN", "Z2CNN"])
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        name, cache = args.worker
        print(json.dumps(worker(name, None if cache == "-" else cache)))
        return
    import jax

    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'model':8s} {'process':28s} {'import':>7s} {'build':>7s} {'forward':>8s} {'build+fwd':>10s} "
          f"{'train step':>11s}")
    for name in args.models:
        with tempfile.TemporaryDirectory() as cache:
            runs = [("no cache, 1st", "-"), ("no cache, 2nd", "-"), ("cache, 1st (writes)", cache),
                    ("cache, 2nd (loads)", cache)]
            for label, c in runs:
                out = subprocess.run([sys.executable, __file__, "--worker", name, c], capture_output=True,
                                     text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{name:8s} {label:28s} {r['import']:7.2f} {r['build']:7.2f} {r['forward']:8.2f} "
                      f"{r['build'] + r['forward']:10.2f} {r['train_step']:11.2f}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
