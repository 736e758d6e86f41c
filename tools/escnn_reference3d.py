"""Reference kernel bases and build times of escnn's ``R3Conv`` for equilib's 3D steerable layers (issue 18).

Runs in escnn's OWN venv (escnn pins numpy < 2 and cannot live beside JAX; see tools/escnn_reference.py):

    /work/escnn-venv/bin/python tools/escnn_reference3d.py

and writes ``tests/fixtures/escnn/r3conv.npz``, read by ``tests/test_escnn_parity3d.py`` (which never
imports escnn). Everything is stored in escnn's own layout and frame; the test identifies the convention
maps from the data:

* per case (gspace ``rot3dOnR3()`` = SO(3) or ``octaOnR3()`` = the 24 cube rotations; in / out irrep
  degrees; kernel size): the full sampled basis of ``R3Conv(in, out, K)`` with escnn's defaults, as
  ``(n, out, in, K, K, K)`` (the filter of the unit weight vector ``e_i``, escnn's OIDHW), each element's
  ring radius and harmonic degree, and the build times. For ``octaOnR3`` a degree ``l`` is SO(3)'s irrep
  ``l`` restricted to the cube rotations (``l = 2`` splits into escnn's octahedral irreps E + T2).
* conventions: escnn's SO(3) elements (quaternions ``(x, y, z, w)``, escnn's element format) and their
  matrices on ``(x, y, z)`` (``basespace_action``) with the irreps ``l = 0, 1, 2``; the 24 cube rotations
  of ``octaOnR3`` with its matrices of the restricted degrees 1 and 2; a random field of type
  ``[l=0, l=1]`` on a ``4^3`` volume and escnn's ``GeometricTensor.transform`` of it by each cube rotation
  (exact: an axis permutation); escnn's kernel sampling points ``(x, y, z)`` per flat filter index.

What escnn's source says (escnn 1.0.11; the test checks it on the data): volumes ``(B, C, D1, D2, D3)``
have axes ``(-z, -y, x)`` (``GSpace3D`` docstring; ``get_grid_coords`` samples filter index
``(a0, a1, a2)`` at ``(a2 - c, c - a1, c - a0)``); equilib's ``(d, h, w)`` are ``(z, -y, x)``: the first
axis is reversed. Kernels are Gaussian rings at radii ``0..K//2`` (sigma 0.6, the outermost 0.4, the
centre 0.005) times spherical harmonics of degree ``j <= min(2r, K//2 - r + 2)`` per ring radius ``r``
(escnn's default frequency cut-off "default1"), solved per irrep pair by Wigner-Eckart.

Timing: each case's ``R3Conv`` is built in a fresh Python process (escnn imported, not timed) with
escnn's joblib disk cache redirected to an empty temporary folder ("cold": nothing cached in memory or on
disk), then built again in the same process (``rebuild``: escnn's in-memory cache of sampled bases), then
once more in a second fresh process that reuses the first one's disk cache (``warm_disk``). escnn's own
cache folder inside its package is never written. The machine's load average is stored with the times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "escnn" / "r3conv.npz"

CASES = {
    # name: (gspace, in degrees, out degrees, kernel size)
    "so3_0_1_k5": ("so3", (0,), (1,), 5),
    "so3_1_1_k5": ("so3", (1,), (1,), 5),
    "so3_1_2_k3": ("so3", (1,), (2,), 3),
    "so3_0_012_k5": ("so3", (0,), (0, 1, 2), 5),
    "octa_0_1_k5": ("octa", (0,), (1,), 5),
    "octa_1_1_k5": ("octa", (1,), (1,), 5),
    "octa_1_2_k3": ("octa", (1,), (2,), 3),
    "octa_0_012_k5": ("octa", (0,), (0, 1, 2), 5),
}
N_ROTATIONS = 24  # random SO(3) elements for the irrep matrices
VOLUME = 4  # side of the transformed test volume


def use_private_cache(path: str) -> None:
    """Point every joblib disk cache of escnn (Clebsch-Gordan coefficients, restricted irreps, octahedral
    irreps, ...) at ``path``; call before anything of escnn is built. The cached functions are looked up by
    global name at call time, so rebinding them in every escnn module that holds one is enough."""
    import escnn  # noqa: F401 (loads the modules that define the caches)
    import joblib

    memory = joblib.Memory(path, verbose=0)
    for name, mod in list(sys.modules.items()):
        if name.startswith("escnn"):
            for attr, fn in list(vars(mod).items()):
                if isinstance(fn, joblib.memory.MemorizedFunc):
                    setattr(mod, attr, memory.cache(fn.func, ignore=fn.ignore))


def gspace(name: str):
    from escnn import gspaces

    return gspaces.rot3dOnR3() if name == "so3" else gspaces.octaOnR3()


def degree_rep(gs, name: str, l: int):  # noqa: E741 (l is the standard name)
    """escnn's representation of degree ``l``: SO(3)'s irrep, or its restriction to the cube rotations."""
    from escnn.group import so3_group

    if name == "so3":
        return gs.fibergroup.irrep(l)
    return gs.trivial_repr if l == 0 else so3_group().irrep(l).restrict("octa")


def build(case: str, **kwargs):
    """``(gspace, R3Conv)`` of a case, with escnn's defaults unless ``kwargs`` say otherwise."""
    from escnn import nn as enn

    name, ins, outs, k = CASES[case]
    gs = gspace(name)
    tin = enn.FieldType(gs, [degree_rep(gs, name, deg) for deg in ins])
    tout = enn.FieldType(gs, [degree_rep(gs, name, deg) for deg in outs])
    return gs, enn.R3Conv(tin, tout, kernel_size=k, **kwargs)


def sampled_basis(conv) -> np.ndarray:
    """``(n, out, in, K, K, K)``: the expanded filter of each unit weight vector."""
    import torch

    n = conv.basisexpansion.dimension()
    out = []
    with torch.no_grad():
        for i in range(n):
            conv.weights.zero_()
            conv.weights[i] = 1.0
            out.append(conv.expand_parameters()[0].numpy().astype(np.float64))
    return np.stack(out)


# --- timing (one case per fresh process) -------------------------------------------------------
def time_case(case: str, cache: str) -> dict:
    t = time.perf_counter()
    import escnn  # noqa: F401

    t_import = time.perf_counter() - t
    use_private_cache(cache)
    name, ins, outs, k = CASES[case]
    t0 = time.perf_counter()
    gs = gspace(name)
    t1 = time.perf_counter()
    _, conv = build(case)
    t2 = time.perf_counter()
    build(case)
    t3 = time.perf_counter()
    return {"import_s": t_import, "gspace_s": t1 - t0, "build_s": t2 - t1, "rebuild_s": t3 - t2,
            "n": conv.basisexpansion.dimension(), "gspace": str(gs)}


def timings() -> dict:
    """Per case: cold times in a fresh process and the build in a second one with a warm disk cache."""
    out = {}
    for case in CASES:
        with tempfile.TemporaryDirectory() as cache:
            runs = []
            for _ in range(2):
                res = subprocess.run([sys.executable, __file__, "--time-case", case, "--cache", cache],
                                     check=True, capture_output=True, text=True)
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        out[case] = {**runs[0], "warm_disk_gspace_s": runs[1]["gspace_s"], "warm_disk_build_s": runs[1]["build_s"]}
        print(f"{case}: n={runs[0]['n']} gspace {runs[0]['gspace_s']:.2f} s, build {runs[0]['build_s']:.2f} s "
              f"(rebuild {runs[0]['rebuild_s']:.3f} s; fresh process, warm disk cache: gspace "
              f"{runs[1]['gspace_s']:.2f} s, build {runs[1]['build_s']:.2f} s)", flush=True)
    return out


# --- conventions --------------------------------------------------------------------------------
def conventions(out: dict) -> None:
    import torch
    from escnn import nn as enn
    from escnn.nn.modules.conv.rd_convolution import get_grid_coords

    rng = np.random.default_rng(0)
    gs = gspace("so3")
    G = gs.fibergroup
    q = rng.standard_normal((N_ROTATIONS, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    els = [G.element(qi, "Q") for qi in q]
    out["so3_quat"] = q
    out["so3_R"] = np.stack([gs.basespace_action(e) for e in els])
    for l in range(3):  # noqa: E741
        out[f"so3_D{l}"] = np.stack([G.irrep(l)(e) for e in els])

    go = gspace("octa")
    cube = list(go.fibergroup.elements)
    out["octa_R"] = np.stack([go.basespace_action(e) for e in cube])
    for l in (1, 2):  # noqa: E741
        rep = degree_rep(go, "octa", l)
        out[f"octa_D{l}"] = np.stack([rep(e) for e in cube])

    # escnn's transform of a [l=0, l=1] field by the cube rotations, as elements of SO(3)
    ftype = enn.FieldType(gs, [G.irrep(0), G.irrep(1)])
    x = rng.standard_normal((1, 4) + (VOLUME,) * 3).astype(np.float32)
    rots = np.rint(out["octa_R"])
    out["tf_x"] = x[0]
    out["tf_R"] = rots
    with torch.no_grad():
        out["tf_gx"] = np.stack([ftype(torch.from_numpy(x)).transform(G.element(r, "MAT")).tensor.numpy()[0]
                                 for r in rots])
    for k in (3, 5):
        out[f"grid_k{k}"] = get_grid_coords(3, k)


def bases(out: dict) -> None:
    for case, (name, ins, outs, k) in CASES.items():
        _, conv = build(case, initialize=False)
        info = list(conv.basisexpansion.get_basis_info())
        out[f"{case}_group"] = np.array(name)
        out[f"{case}_in"] = np.array(ins)
        out[f"{case}_out"] = np.array(outs)
        out[f"{case}_kernel_size"] = np.array(k)
        out[f"{case}_basis"] = sampled_basis(conv).astype(np.float32)
        out[f"{case}_radius"] = np.array([a["radius"] for a in info])
        out[f"{case}_degree"] = np.array([a["irrep:frequency"] for a in info])
        print(f"{case}: basis {out[f'{case}_basis'].shape}, (radius, degree) "
              f"{list(zip(out[f'{case}_radius'].tolist(), out[f'{case}_degree'].tolist()))}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time-case", choices=tuple(CASES), help="internal: time one case in this process")
    ap.add_argument("--cache", help="internal: escnn's joblib cache folder for --time-case")
    ap.add_argument("--no-timing", action="store_true", help="keep the times out (stored as NaN)")
    args = ap.parse_args()
    if args.time_case:
        print(json.dumps(time_case(args.time_case, args.cache)))
        return
    times = {} if args.no_timing else timings()
    import escnn
    import torch

    data: dict = {"escnn_version": np.array(escnn.__version__), "torch_version": np.array(torch.__version__),
                  "loadavg": np.array(os.getloadavg()), "cases": np.array(list(CASES))}
    with tempfile.TemporaryDirectory() as cache:
        use_private_cache(cache)
        conventions(data)
        bases(data)
    for case in CASES:
        for key in ("gspace_s", "build_s", "rebuild_s", "warm_disk_gspace_s", "warm_disk_build_s"):
            data[f"{case}_{key}"] = np.array(times.get(case, {}).get(key, np.nan))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"{OUT.relative_to(ROOT)}: {len(data)} arrays, {OUT.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
