"""GroupConv overhead over a plain convolution with the same expanded kernel, measured in one run.

    python benchmarks/group_conv.py            # the foundation issue's size
    python benchmarks/group_conv.py --quick    # a seconds-long smoke run

Times ``value_and_grad`` (forward + backward, gradients for the input and the weights) of
``GroupConv`` (C4, 16 -> 16 fields, 5x5, batch 64, 28x28) and of ``lax.conv_general_dilated``
with a ``(5, 5, 64, 64)`` kernel, interleaved so that machine noise hits both alike, and
prints the ratio of medians (goal <= 1.05), the forward-only ratio, and the construction
and first-compile times. Numbers go to benchmarks/RESULTS.md with the command line.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from equilib import nn
from equilib.groups import Cyclic, Dihedral, Group


def machine_info() -> str:
    return (f"python {platform.python_version()}, jax {jax.__version__}, backend "
            f"{jax.default_backend()} ({jax.devices()[0].device_kind}), {os.cpu_count()} CPUs, "
            f"{platform.machine()}")


def _time(fn, *args) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def interleaved(fns: dict, args: dict, repeats: int) -> dict[str, list[float]]:
    for name, fn in fns.items():  # compile and warm up
        _time(fn, *args[name])
        _time(fn, *args[name])
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_time(fn, *args[name]))
    return times


def run(group: Group, channels: int, kernel: int, batch: int, size: int, repeats: int) -> dict:
    nn.Conv(1, 1, 1, rngs=nnx.Rngs(0))  # start JAX's backend outside the timed construction
    t0 = time.perf_counter()
    layer = nn.GroupConv(channels, channels, kernel, group=group, rngs=nnx.Rngs(0))
    build_s = time.perf_counter() - t0
    g = group.order
    x = jax.random.normal(jax.random.key(1), (batch, size, size, channels, g))
    graphdef, params = nnx.split(layer)

    def group_loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x) ** 2)

    w_plain = layer.kernel()
    x_plain = x.reshape(batch, size, size, channels * g)

    def plain_fwd(w, x):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) \
            + jnp.repeat(params["bias"][...], g)

    def plain_loss(w, x):
        return jnp.sum(plain_fwd(w, x) ** 2)

    group_grad = jax.jit(jax.value_and_grad(group_loss, argnums=(0, 1)))
    plain_grad = jax.jit(jax.value_and_grad(plain_loss, argnums=(0, 1)))
    group_fwd = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    plain_fwd_j = jax.jit(plain_fwd)

    t0 = time.perf_counter()
    jax.block_until_ready(group_grad(params, x))
    first_compile_s = time.perf_counter() - t0

    times = interleaved(
        {"group_fwd_bwd": group_grad, "plain_fwd_bwd": plain_grad, "group_fwd": group_fwd, "plain_fwd": plain_fwd_j},
        {"group_fwd_bwd": (params, x), "plain_fwd_bwd": (w_plain, x_plain), "group_fwd": (params, x),
         "plain_fwd": (w_plain, x_plain)},
        repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    # outputs agree: the comparison is between the same function
    err = float(jnp.max(jnp.abs(group_fwd(params, x).reshape(x_plain.shape[:3] + (-1,)) - plain_fwd_j(w_plain, x_plain))))
    return {"build_s": build_s, "first_compile_s": first_compile_s, "median_s": med,
            "ratio_fwd_bwd": med["group_fwd_bwd"] / med["plain_fwd_bwd"],
            "ratio_fwd": med["group_fwd"] / med["plain_fwd"], "max_abs_diff": err}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    print(machine_info())
    if args.quick:
        configs = [(Cyclic(4), 4, 3, 4, 12)]
        repeats = 3
    else:
        configs = [(Cyclic(4), 16, 5, 64, 28), (Dihedral(4), 8, 5, 64, 28)]
        repeats = args.repeats
    for group, c, k, b, s in configs:
        r = run(group, c, k, b, s, repeats)
        m = r["median_s"]
        print(f"GroupConv {group.name} {c}->{c} fields, {k}x{k}, batch {b}, {s}x{s} "
              f"(plain conv: {k}x{k} {c * group.order}->{c * group.order}), {repeats} interleaved repeats")
        print(f"  fwd+bwd: group {m['group_fwd_bwd'] * 1e3:.1f} ms, plain {m['plain_fwd_bwd'] * 1e3:.1f} ms, "
              f"ratio {r['ratio_fwd_bwd']:.3f} (goal <= 1.05)")
        print(f"  fwd:     group {m['group_fwd'] * 1e3:.1f} ms, plain {m['plain_fwd'] * 1e3:.1f} ms, "
              f"ratio {r['ratio_fwd']:.3f}")
        print(f"  construction {r['build_s'] * 1e3:.1f} ms (index tables + weight init), first jit of fwd+bwd {r['first_compile_s']:.2f} s, "
              f"max |group - plain| = {r['max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
