"""Overhead of the 3D layers over a plain 3D convolution with the same expanded kernel, and the
build time of the SO(3) steerable basis, measured in one run.

    python benchmarks/group_conv3d.py            # the sizes below
    python benchmarks/group_conv3d.py --quick    # a seconds-long smoke run

For each layer, ``value_and_grad`` (forward + backward: gradients w.r.t. the layer's parameters and
the input) of the layer and of ``equilib.functional.conv3d`` with the layer's expanded kernel
(DHWIO) on the flattened input, interleaved so that machine noise hits both alike. Printed: the
ratio of medians layer / plain (goal <= 1.05), the forward-only ratio, the construction time (the
steerable basis is solved in numpy then: no XLA compile) and the first compile. Rows:

* GroupConv Octahedral, 2 -> 2 fields (48 -> 48 channels), 3x3x3, batch 8, 15^3;
* SteerableConv SO(3), 4x(l0 + l1 + l2) -> the same (36 -> 36 channels), 5x5x5, batch 8, 15^3.

escnn's ``R3Conv`` basis build time for comparison comes from ``tools/escnn_reference3d.py``
(its own venv), recorded in ``benchmarks/RESULTS.md``.
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
from _common import compare_with_plain, machine_info  # noqa: E402

from equilib import Octahedral, nn  # noqa: E402
from equilib import functional as F  # noqa: E402
from equilib.fields3d import FieldType3D, irrep3d  # noqa: E402
from equilib.groups3d import SO3  # noqa: E402


def make_layer(kind: str, c: int, k: int, rngs):
    """``(layer, input tail shape, flattened channels)``."""
    if kind == "group O":
        g = Octahedral()
        return nn.GroupConv(c, c, k, group=g, rngs=rngs), (c, g.order)
    if kind == "steerable SO3":
        g = SO3()
        t = FieldType3D(g, [irrep3d(g, 0), irrep3d(g, 1), irrep3d(g, 2)] * c)
        return nn.SteerableConv(t, t, k, rngs=rngs), (t.size,)
    raise ValueError(kind)


def run(kind, c, k, batch, size, repeats):
    nn.Conv(1, 1, 1, rngs=nnx.Rngs(0))  # start JAX's backend outside the timed construction
    t0 = time.perf_counter()
    layer, in_tail = make_layer(kind, c, k, nnx.Rngs(0))
    build_s = time.perf_counter() - t0
    x = jnp.asarray(np.random.default_rng(1).standard_normal((batch, size, size, size) + in_tail, dtype=np.float32))
    x_plain = x.reshape(batch, size, size, size, -1)
    graphdef, params = nnx.split(layer)
    w_plain, b_plain = layer.expanded_kernel(), layer.expanded_bias()

    def layer_fwd(p, x):
        return nnx.merge(graphdef, p)(x)

    def plain_fwd(w, x):
        return F.conv3d(x, w, padding="SAME") + (0.0 if b_plain is None else b_plain)

    return {"build_s": build_s, **compare_with_plain(layer_fwd, params, x, plain_fwd, w_plain, x_plain, repeats),
            "params": int(sum(a.size for a in jax.tree.leaves(nnx.state(layer, nnx.Param)))),
            "taps": int(w_plain.size)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    print(machine_info())
    if args.quick:
        configs, repeats = [("group O", 1, 3, 2, 5), ("steerable SO3", 1, 3, 2, 5)], 2
    else:
        configs, repeats = [("group O", 2, 3, 8, 15), ("steerable SO3", 4, 5, 8, 15)], args.repeats
    for kind, c, k, b, s in configs:
        r = run(kind, c, k, b, s, repeats)
        m = r["med"]
        print(f"\n{kind}: {c} fields, {k}^3, batch {b}, {s}^3; {repeats} interleaved repeats; construction "
              f"{r['build_s'] * 1e3:.1f} ms; {r['params']} parameters for {r['taps']} kernel taps")
        print(f"  fwd+bwd: layer {m['layer_fb'] * 1e3:8.1f} ms, plain {m['plain_fb'] * 1e3:8.1f} ms, ratio "
              f"{r['ratio_fb']:.3f} (goal <= 1.05); fwd: layer {m['layer_f'] * 1e3:7.1f} ms, plain "
              f"{m['plain_f'] * 1e3:7.1f} ms, ratio {r['ratio_f']:.3f}; first compile {r['compile_s']:.2f} s; "
              f"max |layer - plain| {r['diff']:.1e}")


if __name__ == "__main__":
    main()
