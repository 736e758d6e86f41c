"""Overhead of LiftingConv / GroupConv / SteerableConv over a plain convolution with the same
expanded kernel, measured in one run.

    python benchmarks/group_conv.py            # the issue's sizes, both convolution paths
    python benchmarks/group_conv.py --quick    # a seconds-long smoke run

For each layer, ``value_and_grad`` (forward + backward: gradients w.r.t. the layer's parameters
and the input) of the layer and of ``equilib.functional.conv2d`` with the layer's expanded
kernel (``layer.expanded_kernel()``, HWIO) on the flattened input, on the same convolution path
(``impl``: ``xla`` = ``lax.conv_general_dilated``; ``auto`` = the default, im2col + matmul on
CPU for these shapes), interleaved so that machine noise hits both alike. Printed: the ratio of
medians layer / plain (goal <= 1.05; the layer also expands its kernel from the free parameters
and back-propagates through the expansion), the forward-only ratio, the construction time and
the first compile. Rows:

* LiftingConv C4, 1 -> 16 fields, 5x5, batch 64, 28x28 (plain: 1 -> 64 channels);
* GroupConv C4, 16 -> 16 fields, 5x5, batch 64, 28x28 (plain: 64 -> 64), the issue's size;
* GroupConv D4, 8 -> 8 fields (plain: 64 -> 64);
* SteerableConv C8, 8 -> 8 regular fields, 5x5, batch 64, 28x28 (plain: 64 -> 64).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import compare_with_plain, machine_info  # noqa: E402

from equilib import FieldType, nn  # noqa: E402
from equilib import functional as F  # noqa: E402
from equilib.groups import Cyclic, Dihedral  # noqa: E402
from equilib.reps import regular_rep  # noqa: E402


@contextlib.contextmanager
def conv_impl(impl: str):
    """``EQUILIB_CONV_IMPL`` while functions are traced (the path is chosen at trace time)."""
    old = os.environ.get("EQUILIB_CONV_IMPL")
    os.environ["EQUILIB_CONV_IMPL"] = impl
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("EQUILIB_CONV_IMPL", None)
        else:
            os.environ["EQUILIB_CONV_IMPL"] = old


def make_layer(kind: str, c: int, k: int, rngs):
    if kind == "lift C4":
        g = Cyclic(4)
        return nn.LiftingConv(1, c, k, group=g, rngs=rngs), (1,), c * g.order
    if kind in ("group C4", "group D4"):
        g = Cyclic(4) if kind.endswith("C4") else Dihedral(4)
        return nn.GroupConv(c, c, k, group=g, rngs=rngs), (c, g.order), c * g.order
    if kind == "steerable C8":
        g = Cyclic(8)
        t = FieldType(g, [regular_rep(g)] * c)
        return nn.SteerableConv(t, t, k, rngs=rngs), (c * g.order,), c * g.order
    raise ValueError(kind)


def run(kind, c, k, batch, size, repeats, impls, dtype="float32"):
    nn.Conv(1, 1, 1, rngs=nnx.Rngs(0))  # start JAX's backend outside the timed construction
    t0 = time.perf_counter()
    layer, in_tail, out_channels = make_layer(kind, c, k, nnx.Rngs(0))
    build_s = time.perf_counter() - t0
    x = jnp.asarray(np.random.default_rng(1).standard_normal((batch, size, size) + in_tail, dtype=np.float32))
    x_plain = x.reshape(batch, size, size, -1)
    graphdef, params = nnx.split(layer)
    w_plain, b_plain = layer.expanded_kernel(), layer.expanded_bias()
    if dtype != "float32":  # parameters, input and expanded kernel all in the low precision
        cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
        params, x, x_plain, w_plain, b_plain = jax.tree.map(cast, (params, x, x_plain, w_plain, b_plain))

    def layer_fwd(p, x):
        return nnx.merge(graphdef, p)(x)

    out = {"build_s": build_s}
    for impl in impls:
        def plain_fwd(w, x, impl=impl):
            return F.conv2d(x, w, padding="SAME", impl=impl) + b_plain

        out[impl] = compare_with_plain(layer_fwd, params, x, plain_fwd, w_plain, x_plain, repeats,
                                       trace_context=lambda impl=impl: conv_impl(impl))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--impls", nargs="+", default=None, choices=["xla", "im2col", "auto"],
                   help="convolution paths (default: xla and auto on CPU, xla elsewhere, where auto = xla)")
    p.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"])
    args = p.parse_args(argv)
    impls = args.impls or (["xla", "auto"] if jax.default_backend() == "cpu" else ["xla"])
    print(machine_info())
    if args.quick:
        configs, repeats = [("group C4", 4, 3, 4, 12)], 3
    else:
        configs = [("lift C4", 16, 5, 64, 28), ("group C4", 16, 5, 64, 28), ("group D4", 8, 5, 64, 28),
                   ("steerable C8", 8, 5, 64, 28)]
        repeats = args.repeats
    for (kind, c, k, b, s), dtype in ((cfg, d) for d in args.dtypes for cfg in configs):
        r = run(kind, c, k, b, s, repeats, impls, dtype)
        print(f"\n{kind}: {c} fields, {k}x{k}, batch {b}, {s}x{s}, {dtype}; {repeats} interleaved repeats; "
              f"construction {r['build_s'] * 1e3:.1f} ms")
        for impl in impls:
            q = r[impl]
            m = q["med"]
            print(f"  impl={impl:5s} fwd+bwd: layer {m['layer_fb'] * 1e3:7.1f} ms, "
                  f"plain {m['plain_fb'] * 1e3:7.1f} ms, "
                  f"ratio {q['ratio_fb']:.3f} (goal <= 1.05); fwd: layer {m['layer_f'] * 1e3:6.1f} ms, "
                  f"plain {m['plain_f'] * 1e3:6.1f} ms, ratio {q['ratio_f']:.3f}; first compile "
                  f"{q['compile_s']:.2f} s; max |layer - plain| {q['diff']:.1e}")


if __name__ == "__main__":
    main()
