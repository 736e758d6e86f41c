"""Build time of 3D steerable layers (SO(3) / O(3) fields, 5^3 kernels) next to escnn's, measured in one run.

    python benchmarks/build_time3d.py                                   # equilib only
    python benchmarks/build_time3d.py --escnn-python /work/escnn-venv/bin/python   # and escnn, ratios

Each case runs in a fresh Python process (imports not timed), equilib's and escnn's alternately, with one
BLAS / torch thread each (the numpy solves are small; threads only thrash on shared cores). equilib:
``basis_s`` is the cold numpy kernel basis (``kernel_basis3d`` per pair of distinct field
representations of the conv, ``fourier_matrices3d`` of the
nonlinearity), ``layer_s`` the layer's construction after it (parameters drawn; includes JAX's one-off
compile of the PRNG program, ~0.2 s per process); ``total_s`` the two. escnn
(``tools/escnn_build3d.py``): ``R3Conv`` / ``FourierELU`` construction with its disk cache empty.
Ratios: escnn's build over equilib's total and over its basis. Goal (issue 18): >= 30x.

Cases: ``gated`` ``[4 x l0, 4 x l1, 2 x l2] -> same``; ``regular2``: 4 band-limited regular fields
(``L = 2``, 140 channels) -> same; ``regular2_o3``: the same over O(3) (280 channels); ``fourier2``: a
ReLU/ELU on 4 band-limited functions (``L = 2``) sampled at 288 rotations (escnn: ``thomson_cube``,
``N = 12``); ``stack``: a small SO(3) CNN, conv scalar -> 4 regular ``L = 2``, Fourier ELU, conv 4 -> 4
regular, Fourier ELU, conv -> 8 scalars (the basis of one regular -> regular pair is shared by the
layers in both libraries' in-memory caches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("gated", "regular2", "regular2_o3", "fourier2", "stack")


def equilib_case(case: str) -> dict:
    import jax
    from flax import nnx

    from equilib import nn
    from equilib.fields3d import FieldType3D, bandlimited_regular3d, irrep3d
    from equilib.groups3d import O3, SO3
    from equilib.nn._steerable3d import fourier_matrices3d, kernel_basis3d

    G = O3() if case.endswith("_o3") else SO3()
    if case == "gated":
        t = FieldType3D(G, [irrep3d(G, 0)] * 4 + [irrep3d(G, 1)] * 4 + [irrep3d(G, 2)] * 2)
    else:
        t = FieldType3D(G, bandlimited_regular3d(G, 2) * 4)
    scalar, scalars = FieldType3D(G, [irrep3d(G, 0)]), FieldType3D(G, [irrep3d(G, 0)] * 8)

    def bases(t_in, t_out):  # what the layer solves: one basis per pair of distinct representations
        for r_out in dict.fromkeys(t_out.reps):
            for r_in in dict.fromkeys(t_in.reps):
                kernel_basis3d(r_in, r_out, 5)

    t0 = time.perf_counter()
    if case == "stack":
        bases(scalar, t), bases(t, t), bases(t, scalars), fourier_matrices3d(G, 2, 288)
    elif case == "fourier2":
        fourier_matrices3d(G, 2, 288)
    else:
        bases(t, t)
    t1 = time.perf_counter()
    if case == "stack":
        rngs = nnx.Rngs(0)
        layer = nn.Sequential(nn.SteerableConv(scalar, t, 5, rngs=rngs), nn.FourierPointwise(t, "elu", samples=288),
                              nn.SteerableConv(t, t, 5, rngs=rngs), nn.FourierPointwise(t, "elu", samples=288),
                              nn.SteerableConv(t, scalars, 5, rngs=rngs))
        params = sum(int(p.size) for p in jax.tree.leaves(nnx.state(layer, nnx.Param)))
    elif case == "fourier2":
        layer = nn.FourierPointwise(t, "elu", samples=288)
        params = 0
    else:
        layer = nn.SteerableConv(t, t, 5, rngs=nnx.Rngs(0))
        params = int(layer.kernel.size + (layer.bias.size if layer.bias is not None else 0))
    t2 = time.perf_counter()
    return {"case": case, "basis_s": t1 - t0, "layer_s": t2 - t1, "total_s": t2 - t0, "params": params,
            "size": t.size}


def run(cmd: list[str]) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("RESULT ")][-1][len("RESULT "):])


def _ratio(r: float) -> str:
    return f"{r:.1f}x" if r < 10 else f"{r:.0f}x"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--escnn-python", help="python of escnn's venv (tools/escnn_reference.py builds it)")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    p.add_argument("--case", choices=CASES, help="internal: time one equilib case in this process")
    args = p.parse_args(argv)
    if args.case:
        print("RESULT " + json.dumps(equilib_case(args.case)), flush=True)
        return
    print(f"load average at the start {os.getloadavg()[0]:.1f}")
    for case in args.cases:
        mine = run([sys.executable, __file__, "--case", case])
        line = (f"{case} ({mine['size']} channels): equilib basis {mine['basis_s']:.3f} s, "
                f"layer {mine['layer_s']:.3f} s, total {mine['total_s']:.3f} s, {mine['params']:,} params")
        if args.escnn_python:
            theirs = run([args.escnn_python, str(ROOT / "tools" / "escnn_build3d.py"), case])
            line += (f"; escnn build {theirs['build_s']:.2f} s (setup {theirs['setup_s']:.3f} s, rebuild "
                     f"{theirs['rebuild_s']:.3f} s), {theirs['params']:,} params; escnn / equilib: "
                     f"{_ratio(theirs['build_s'] / mine['total_s'])} the layer, "
                     f"{_ratio(theirs['build_s'] / mine['basis_s'])} the basis")
        print(line, flush=True)


if __name__ == "__main__":
    main()
