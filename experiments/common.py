"""What every experiment shares: the CLI, host devices, MNIST loading, results and figures.

Each experiment folder has the same shape: ``__main__.py`` (the thin CLI, calling :func:`main`),
``configs.py`` (``default`` and ``smoke``), ``run.py`` (``run(config, workdir) -> results`` and
``plot(results, path_stem)``). ``DIR/results.json`` holds the config, seed, machine and metrics;
``DIR/<name>.png`` / ``.pdf`` the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time
from typing import Callable


def use_host_devices() -> None:
    """Split the CPU into one XLA device per core (data parallel: ~2x on 2 cores). Must run
    before jax is imported; a no-op if the user set XLA_FLAGS.

    The collective timeouts are raised from XLA:CPU's 40 s: on a shared machine one device's
    thread can be descheduled long enough for the all-reduce of the other to give up and abort
    the process (seen once here during a training run)."""
    if "jax" in sys.modules:
        return
    n = os.cpu_count() or 1
    flags = (f"--xla_force_host_platform_device_count={n} "
             "--xla_cpu_collective_call_terminate_timeout_seconds=600 "
             "--xla_cpu_collective_timeout_seconds=600")
    if _jaxlib_version() in YNN_OFF_TESTED:
        # XLA:CPU's YNNPACK fusions make its convolutions ~3.5x slower here; without them the
        # P4CNN train step ran 2.3x faster (benchmarks/RESULTS.md). The flag is experimental,
        # and an unknown flag aborts XLA, so it is only set for jaxlib versions it was run on.
        flags += " --xla_cpu_experimental_ynn_fusion_type="
    os.environ.setdefault("XLA_FLAGS", flags)


YNN_OFF_TESTED = ("0.10.2",)


def _jaxlib_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    import jax

    return {"python": platform.python_version(), "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": len(jax.devices()), "device_kind": jax.devices()[0].device_kind,
            "cpus": os.cpu_count(), "platform": platform.platform()}


def load_mnist(n_train: int | None = None, n_test: int | None = None, data_dir=None):
    """MNIST as float32 in [0, 1], ``(N, 28, 28, 1)``, and int32 labels; the first ``n`` of each split."""
    import numpy as np

    from equilib.data import mnist

    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = mnist(split, data_dir)
        x, y = x[:n], y[:n]
        out[split] = (x.astype(np.float32)[..., None] / 255.0, y.astype(np.int32))
    return out


def save_json(path: pathlib.Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def savefig(fig, stem: pathlib.Path) -> list[pathlib.Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
    return paths


def save_figure(fig, stem: pathlib.Path, table_md: str) -> list[pathlib.Path]:
    """An experiment's outputs beside ``stem``: the figure as PNG and PDF (then closed) and the
    markdown table as ``stem.md``. Returns the paths written."""
    import matplotlib.pyplot as plt

    paths = savefig(fig, stem)
    plt.close(fig)
    stem.with_suffix(".md").write_text(table_md + "\n")
    return paths + [stem.with_suffix(".md")]


def main(name: str, configs: dict[str, Callable[[], dict]], run: Callable, plot: Callable,
         argv=None) -> dict:
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}")
    p.add_argument("--config", default="default", choices=sorted(configs))
    p.add_argument("--workdir", default=f"workdirs/{name}", help="where results, figure and checkpoints go")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    args = p.parse_args(argv)
    config = configs[args.config]()
    if args.seed is not None:
        config["seed"] = args.seed
    config["name"] = args.config
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = run(config, workdir)
    results.update({"experiment": name, "config": config, "seed": config.get("seed"), "machine": machine(),
                    "wall_seconds": time.perf_counter() - t0,
                    "command": f"python -m experiments.{name} --config {args.config} --workdir {args.workdir}"})
    save_json(workdir / "results.json", results)
    figs = plot(results, workdir / name)
    print(f"wrote {workdir / 'results.json'} and {', '.join(str(f) for f in figs)} "
          f"({results['wall_seconds']:.0f} s)")
    return results
