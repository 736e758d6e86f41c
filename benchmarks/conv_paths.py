"""Which convolution path is fastest on this CPU, for the layer shapes of the models?

    python benchmarks/conv_paths.py                 # P4CNN layers (batch 128), C16 layers, flags
    python benchmarks/conv_paths.py --quick         # seconds-long smoke run
    python benchmarks/conv_paths.py --no-flags      # skip the XLA-flag / host-device subprocesses

In-process, interleaved (ratios from one run), forward and forward+backward
(``value_and_grad`` w.r.t. input and kernel) of one convolution, for each path:

* ``xla``: ``lax.conv_general_dilated`` (the reference, Eigen's spatial convolution on CPU);
* ``im2col``: ``equilib.functional.conv2d(impl="im2col")`` (windows concatenated, one matmul);
* ``im2col_remat``: the same with the window matrix recomputed in the backward pass
  (``jax.checkpoint``), trading a copy for memory;
* ``taps``: a sum of ``K*K`` matmuls of shifted views (no window matrix);
* ``fold``: the group axis folded into the batch: ``|G|`` rotated copies of the input
  convolved with the unexpanded ``(K, K, C*|G|, O/|G|)`` kernel: same FLOPs, other shape.

and, for each, the cores it kept busy: (user + system CPU time) / wall time over the timed
loop (1.0 = one core, 2.0 = both). Then, in subprocesses (XLA flags are read at start-up),
the ``xla`` and ``im2col`` fwd+bwd of the largest P4CNN layer under each candidate flag,
split over two host devices (``--xla_force_host_platform_device_count=2``, batch sharded), and
with glibc's malloc told to keep freed memory (``MALLOC_MMAP_MAX_=0``: XLA:CPU allocates its
large buffers afresh at every call, and glibc maps blocks over 32 MB with ``mmap``, so each
call pays page faults to touch them again).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_WORKER = [a for a in sys.argv if a.startswith("--worker=")]
if __name__ == "__main__" and _WORKER:  # XLA reads its flags when the backend starts
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _WORKER[0][9:]).strip()

# E402 below: XLA_FLAGS must be set (above) before jax is imported
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import block, machine_info, median  # noqa: E402

from equilib.functional import conv2d  # noqa: E402

# name: (batch, H, W, C_in, K, C_out, padding, |G| for the fold variant)
P4CNN_LAYERS = {
    "P4CNN lift 28x28 1->40 k3": (128, 28, 28, 1, 3, 40, "VALID", 0),
    "P4CNN gconv 26x26 40->40 k3": (128, 26, 26, 40, 3, 40, "VALID", 4),
    "P4CNN gconv 12x12 40->40 k3": (128, 12, 12, 40, 3, 40, "VALID", 4),
    "P4CNN gconv 8x8 40->40 k3": (128, 8, 8, 40, 3, 40, "VALID", 4),
    "P4CNN top 4x4 40->40 k4": (128, 4, 4, 40, 4, 40, "VALID", 0),
}
C16_LAYERS = {
    "C16 stack 29x29 1->384 k7": (4, 29, 29, 1, 7, 384, "SAME", 0),
    "C16 stack 29x29 384->512 k5": (4, 29, 29, 384, 5, 512, "SAME", 0),
    "C16 stack 29x29 1024->1536 k5": (2, 29, 29, 1024, 5, 1536, "SAME", 0),
}
# the plain CNN of experiments/scale (7x7 kernels, few channels), where the scale experiment's
# author measured "xla" faster than im2col under load
SCALE_CNN_LAYERS = {
    "scale CNN 28x28 1->5 k7": (128, 28, 28, 1, 7, 5, "SAME", 0),
    "scale CNN 14x14 5->10 k7": (128, 14, 14, 5, 7, 10, "SAME", 0),
    "scale CNN 7x7 10->20 k7": (128, 7, 7, 10, 7, 20, "SAME", 0),
}
QUICK_LAYERS = {"quick 12x12 8->8 k3": (8, 12, 12, 8, 3, 8, "VALID", 4)}


def _taps(x, w, padding):
    kh, kw, c, o = w.shape
    if padding == "SAME":
        x = jnp.pad(x, [(0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)])
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    y = None
    for i in range(kh):
        for j in range(kw):
            t = jnp.einsum("bhwc,co->bhwo", x[:, i:i + ho, j:j + wo], w[i, j])
            y = t if y is None else y + t
    return y


def _im2col_remat(x, w, padding):
    return jax.checkpoint(lambda x, w: conv2d(x, w, padding=padding, impl="im2col"))(x, w)


def _fold(x, w, padding, g):
    # |G| copies of the input, each rotated (here: rot90 of the spatial axes, C4 style; the
    # FLOPs and shapes are those of folding the group axis into the batch), one convolution
    # with an unexpanded (K, K, C, O/|G|) kernel, the outputs rotated back.
    b = x.shape[0]
    xs = jnp.concatenate([jnp.rot90(x, k, axes=(1, 2)) for k in range(g)], axis=0)
    y = lax.conv_general_dilated(xs, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ys = [jnp.rot90(y[k * b:(k + 1) * b], -k, axes=(1, 2)) for k in range(g)]
    return jnp.concatenate(ys, axis=-1)


def variants(shape):
    b, h, w, c, k, o, padding, g = shape
    out = {
        "xla": lambda x, w: conv2d(x, w, padding=padding, impl="xla"),
        "im2col": lambda x, w: conv2d(x, w, padding=padding, impl="im2col"),
        "im2col_remat": lambda x, w: _im2col_remat(x, w, padding),
        "taps": lambda x, w: _taps(x, w, padding),
    }
    if g and h == w:
        out["fold"] = lambda x, w: _fold(x, w, padding, g)
    return out


def _inputs(shape, fold=False):
    b, h, w, c, k, o, padding, g = shape
    x = jax.random.normal(jax.random.key(0), (b, h, w, c))
    wk = jax.random.normal(jax.random.key(1), (k, k, c, o // g if fold else o)) * 0.1
    return x, wk


def _cpu_seconds():
    return time.process_time()  # user + system time of all the process's threads


def bench_shape(name, shape, repeats):
    fns, args, cores = {}, {}, {}
    for vname, f in variants(shape).items():
        x, w = _inputs(shape, fold=vname == "fold")
        fwd = jax.jit(f)
        grad = jax.jit(jax.value_and_grad(lambda x, w, f=f: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
        fns[f"{vname}/fwd"], args[f"{vname}/fwd"] = fwd, (x, w)
        fns[f"{vname}/fwd+bwd"], args[f"{vname}/fwd+bwd"] = grad, (x, w)
    for fn_name, fn in fns.items():  # compile, warm up
        block(fn(*args[fn_name]))
        block(fn(*args[fn_name]))
    times = {k: [] for k in fns}
    cpu = {k: 0.0 for k in fns}
    for _ in range(repeats):
        for fn_name, fn in fns.items():
            c0, t0 = _cpu_seconds(), time.perf_counter()
            block(fn(*args[fn_name]))
            times[fn_name].append(time.perf_counter() - t0)
            cpu[fn_name] += _cpu_seconds() - c0
    # max |im2col - xla| relative, as a sanity check
    x, w = _inputs(shape)
    ref = fns["xla/fwd"](x, w)
    err = float(jnp.max(jnp.abs(fns["im2col/fwd"](x, w) - ref)) / jnp.max(jnp.abs(ref)))
    med = {k: median(v) for k, v in times.items()}
    cores = {k: cpu[k] / sum(times[k]) for k in fns}
    b, h, wd, c, k, o, padding, g = shape
    print(f"\n{name}: batch {b}, {h}x{wd}, {c}->{o}, {k}x{k} {padding}; {repeats} interleaved repeats; "
          f"max |im2col - xla| / max |xla| = {err:.1e}")
    print(f"  {'path':14s} {'fwd ms':>9s} {'ratio':>6s} {'cores':>5s}   "
          f"{'fwd+bwd ms':>10s} {'ratio':>6s} {'cores':>5s}")
    for v in variants(shape):
        f, fb = f"{v}/fwd", f"{v}/fwd+bwd"
        print(f"  {v:14s} {med[f] * 1e3:9.2f} {med[f] / med['xla/fwd']:6.2f} {cores[f]:5.2f}   "
              f"{med[fb] * 1e3:10.2f} {med[fb] / med['xla/fwd+bwd']:6.2f} {cores[fb]:5.2f}")
    return med


# --- subprocess: one flag setting ---------------------------------------------------------
def worker(shape, repeats, devices):
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    x, w = _inputs(shape)
    if devices > 1:
        mesh = Mesh(np.asarray(jax.devices()[:devices]), ("data",))
        x = jax.device_put(x, NamedSharding(mesh, P("data")))
        w = jax.device_put(w, NamedSharding(mesh, P()))
    res = {}
    fns = {}
    for impl in ("xla", "im2col"):
        f = lambda x, w, impl=impl, padding=shape[6]: conv2d(x, w, padding=padding, impl=impl)
        fns[impl] = jax.jit(jax.value_and_grad(lambda x, w, f=f: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
        block(fns[impl](x, w))
        block(fns[impl](x, w))
    times = {k: [] for k in fns}
    cpu = {k: 0.0 for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, t0 = _cpu_seconds(), time.perf_counter()
            block(fn(x, w))
            times[k].append(time.perf_counter() - t0)
            cpu[k] += _cpu_seconds() - c0
    for k in fns:
        res[k] = {"ms": median(times[k]) * 1e3, "cores": cpu[k] / sum(times[k])}
    print("RESULT " + json.dumps(res))


MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
# (label, XLA_FLAGS, host devices, extra environment)
FLAG_SETTINGS = [
    ("default", "", 1, {}),
    ("--xla_cpu_experimental_ynn_fusion_type=individual_dot (convs to Eigen)",
     "--xla_cpu_experimental_ynn_fusion_type=individual_dot", 1, {}),
    ("--xla_cpu_experimental_ynn_fusion_type= (YNNPACK off)", "--xla_cpu_experimental_ynn_fusion_type=", 1, {}),
    ("--xla_cpu_multi_thread_eigen=false", "--xla_cpu_multi_thread_eigen=false", 1, {}),
    ("--xla_cpu_use_thunk_runtime=false", "--xla_cpu_use_thunk_runtime=false", 1, {}),
    ("--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
     "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true", 1, {}),
    ("--xla_cpu_use_xnnpack=false", "--xla_cpu_use_xnnpack=false", 1, {}),
    ("2 host devices, batch sharded", "--xla_force_host_platform_device_count=2", 2, {}),
    ("glibc malloc keeps freed memory (MALLOC_MMAP_MAX_=0)", "", 1, MALLOC_ENV),
    ("malloc + convs to Eigen", "--xla_cpu_experimental_ynn_fusion_type=individual_dot", 1, MALLOC_ENV),
]


def run_flags(shape_name, repeats):
    if shape_name not in {**P4CNN_LAYERS, **QUICK_LAYERS}:  # fail here, not once per subprocess
        raise ValueError(f"unknown shape {shape_name!r}")
    print(f"\nXLA flags / host devices ({shape_name}, fwd+bwd, each setting in its own process, "
          f"{repeats} repeats; ratios to the 'default' process's xla path)")
    base = None
    rows = []
    for label, flags, devices, env in FLAG_SETTINGS:
        cmd = [sys.executable, os.path.abspath(__file__), f"--worker={flags}", "--shape", shape_name,
               "--repeats", str(repeats), "--devices", str(devices)]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode or not line:
            err = (p.stderr.strip().splitlines() or ["?"])[-1][:150]
            print(f"  {label:72s} failed: {err}")
            continue
        r = json.loads(line[0][7:])
        if base is None:
            base = r["xla"]["ms"]
        rows.append((label, r))
        xla, im2col = r["xla"], r["im2col"]
        print(f"  {label:72s} xla {xla['ms']:8.2f} ms ({xla['ms'] / base:4.2f}, {xla['cores']:.2f} cores)"
              f"  im2col {im2col['ms']:8.2f} ms ({im2col['ms'] / base:4.2f}, {im2col['cores']:.2f} cores)")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-flags", action="store_true")
    p.add_argument("--no-c16", action="store_true")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    p.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        worker({**P4CNN_LAYERS, **QUICK_LAYERS}[args.shape], args.repeats, args.devices)
        return
    print(machine_info())
    layers = QUICK_LAYERS if args.quick else {**P4CNN_LAYERS, **SCALE_CNN_LAYERS,
                                              **({} if args.no_c16 else C16_LAYERS)}
    repeats = 2 if args.quick else args.repeats
    for name, shape in layers.items():
        bench_shape(name, shape, repeats)
    if not args.no_flags:
        run_flags("quick 12x12 8->8 k3" if args.quick else "P4CNN gconv 26x26 40->40 k3", repeats)


if __name__ == "__main__":
    main()
