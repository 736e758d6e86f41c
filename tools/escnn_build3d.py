"""escnn's side of ``benchmarks/build_time3d.py``: build time of ``R3Conv`` layers and Fourier nonlinearities.

Runs in escnn's own venv (see ``tools/escnn_reference.py``), one case per fresh process, escnn's joblib disk
cache redirected to an empty folder (``tools/escnn_reference3d.use_private_cache``: nothing cached on disk
or in memory), escnn's import not timed:

    /work/escnn-venv/bin/python tools/escnn_build3d.py CASE

and prints one line ``RESULT {json}``: ``setup_s`` (gspace and representations), ``build_s`` (the layer,
first time in the process), ``rebuild_s`` (the same layer again: escnn's in-memory caches warm) and the
layer's parameter count. The cases are those of ``benchmarks/build_time3d.CASES`` (SO(3) / O(3) fields,
kernels 5^3): ``gated`` ``[4 x l0, 4 x l1, 2 x l2] -> same``; ``regular2`` 4 band-limited regular fields
``L = 2`` -> same (``G.bl_regular_representation(2)``); ``regular2_o3`` the same over O(3); ``fourier2``
``FourierELU`` on 4 such fields sampled at ``thomson_cube`` grids of 12 x 24 = 288 rotations; ``stack`` a
small SO(3) CNN: ``R3Conv`` scalar -> 4 regular ``L = 2``, ``FourierELU``, ``R3Conv`` 4 -> 4 regular,
``FourierELU``, ``R3Conv`` -> 8 scalars (kernels 5^3).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES = ("gated", "regular2", "regular2_o3", "fourier2", "stack")


def main() -> None:
    case = sys.argv[1]
    if case not in CASES:
        raise SystemExit(f"CASE must be one of {CASES}, got {case!r}")
    import escnn  # noqa: F401 (not timed)
    from escnn import gspaces
    from escnn import nn as enn
    from escnn_reference3d import use_private_cache

    with tempfile.TemporaryDirectory() as cache:
        use_private_cache(cache)
        t0 = time.perf_counter()
        gs = gspaces.flipRot3dOnR3() if case.endswith("_o3") else gspaces.rot3dOnR3()
        G = gs.fibergroup
        if case == "gated":
            reps = [G.irrep(0)] * 4 + [G.irrep(1)] * 4 + [G.irrep(2)] * 2
        else:
            reps = [G.bl_regular_representation(2)] * 4
        t = enn.FieldType(gs, reps)
        t1 = time.perf_counter()

        def build():
            if case == "stack":
                scalar, scalars = enn.FieldType(gs, [G.irrep(0)]), enn.FieldType(gs, [G.irrep(0)] * 8)
                # FourierELU's own type (escnn's spectral regular representation, the same irreps)
                f1, f2 = (enn.FourierELU(gs, 4, irreps=G.bl_irreps(2), type="thomson_cube", N=12, inplace=True)
                          for _ in range(2))
                ft = f1.in_type
                return enn.SequentialModule(enn.R3Conv(scalar, ft, kernel_size=5), f1,
                                            enn.R3Conv(ft, ft, kernel_size=5), f2,
                                            enn.R3Conv(ft, scalars, kernel_size=5))
            if case == "fourier2":
                return enn.FourierELU(gs, 4, irreps=G.bl_irreps(2), type="thomson_cube", N=12, inplace=True)
            return enn.R3Conv(t, t, kernel_size=5)

        layer = build()
        t2 = time.perf_counter()
        build()
        t3 = time.perf_counter()
    params = sum(p.numel() for p in layer.parameters())
    print("RESULT " + json.dumps({"case": case, "setup_s": t1 - t0, "build_s": t2 - t1, "rebuild_s": t3 - t2,
                                  "params": int(params), "size": int(t.size)}))


if __name__ == "__main__":
    main()
