"""Reference numbers from escnn for equilib's steerable layers (issue 4).

Runs in its OWN venv (escnn pins numpy < 2 and cannot live beside JAX):

    apt-get install -y gfortran
    python3 -m venv /work/escnn-venv
    /work/escnn-venv/bin/pip install torch==2.13.0 escnn
    /work/escnn-venv/bin/python tools/escnn_reference.py [--mnist DIR] [--build-time]

and writes small ``.npz`` fixtures into ``tests/fixtures/escnn/`` (the tests read only those; escnn
is never imported by equilib or its tests):

* ``conventions.npz``: escnn's transform of a random trivial field and of a random regular field
  of D4 by each element, and the matrices of escnn's irreps / regular / quotient representations
  of C8, D4, D8 for every element, and of SO(2) / O(2) irreps at sampled angles.
* ``dims.npz``: escnn's kernel-basis dimension for every (out irrep, in irrep) pair of C4, C8,
  C16, D4, D8, D16, SO(2) (frequencies <= 4), O(2) (<= 3), kernel sizes 3, 5, 7.
* ``layers.npz``: for a few ``R2Conv`` layers (group, in type, out type, kernel size): the
  exported filter and bias (converted to equilib's layout), escnn's output on a real MNIST digit,
  the number of basis parameters, and escnn's own masked equivariance error of that output at
  22.5, 30 and 45 degrees (escnn's transform: spline interpolation of order 2); for the layers
  measured off-grid, the filters of 8 to 64 independent initialisations and their errors.

Convention differences (escnn -> equilib), all checked by the tests on these fixtures:

* layout: escnn maps are NCHW, filters OIHW (torch); equilib maps are NHWC, kernels HWIO. The tool
  converts: ``x.permute(0, 2, 3, 1)``, ``filter.permute(2, 3, 1, 0)``.
* padding: escnn's ``padding=K//2`` (zeros) is equilib's ``"SAME"`` for odd K.
* group action: none. escnn rotates counter-clockwise as displayed (row index down), its
  reflection (``flipRot2dOnR2`` default axis pi/2) mirrors the width axis, its elements
  ``(flip, rotation)`` are ``R(rotation) F^flip`` and are listed in equilib's order
  ``g = flip*N + k``; its regular representation is ``rho(g) e_h = e_{gh}``; its irreps have the
  same matrices and ids; the kernel grid is ``x = col - c``, ``y = c - row``. escnn's
  ``quotient_repr((0, 1))`` of D_N is equilib's ``quotient_rep(Dihedral(1))``.
* parameterisation: escnn's weights are coefficients of its own basis elements (per irrep pair,
  Wigner-Eckart), equilib's of an orthonormalised basis of the same span per (ring, frequency);
  so weights do not transfer one to one, but the kernel spaces (and their dimensions) agree.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from escnn import gspaces
from escnn import nn as enn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "escnn"
ANGLES_DEG = (22.5, 30.0, 45.0)


def load_digit(mnist_dir: Path) -> np.ndarray:
    """MNIST test image 0 as float32 in [0, 1], shape (28, 28)."""
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    return images[0].astype(np.float32) / 255.0


def gspace(group: str):
    kind, n = group[0], group[1:]
    if group == "SO2":
        return gspaces.rot2dOnR2(-1, maximum_frequency=8)
    if group == "O2":
        return gspaces.flipRot2dOnR2(-1, maximum_frequency=8)
    return gspaces.rot2dOnR2(int(n)) if kind == "C" else gspaces.flipRot2dOnR2(int(n))


def rep(gs, desc: str):
    """Descriptor (shared with tests/test_steerable.py) -> escnn representation."""
    if desc == "trivial":
        return gs.trivial_repr
    if desc == "regular":
        return gs.regular_repr
    if desc == "quotient:flip":
        return gs.quotient_repr((0, 1))
    if desc.startswith("irrep:"):
        idx = tuple(int(v) for v in desc[6:].split(","))
        return gs.fibergroup.irrep(*idx)
    raise ValueError(desc)


# --- conventions --------------------------------------------------------------------------------
def conventions(out: dict):
    rng = np.random.default_rng(0)
    gs = gspace("D4")
    g = gs.fibergroup
    triv = enn.FieldType(gs, [gs.trivial_repr])
    reg = enn.FieldType(gs, [gs.regular_repr])
    x1 = rng.standard_normal((1, 1, 7, 7)).astype(np.float32)
    x8 = rng.standard_normal((1, 8, 7, 7)).astype(np.float32)
    out["conv_trivial_x"] = x1[0].transpose(1, 2, 0)
    out["conv_regular_x"] = x8[0].transpose(1, 2, 0)
    out["conv_trivial_gx"] = np.stack([triv(torch.from_numpy(x1)).transform(e).tensor.numpy()[0].transpose(1, 2, 0)
                                       for e in g.elements])
    out["conv_regular_gx"] = np.stack([reg(torch.from_numpy(x8)).transform(e).tensor.numpy()[0].transpose(1, 2, 0)
                                       for e in g.elements])
    for name in ("C8", "D4", "D8"):
        gs = gspace(name)
        G = gs.fibergroup
        descs = ["regular"] + [f"irrep:{','.join(map(str, i.id))}" for i in G.irreps()]
        if name[0] == "D":
            descs.append("quotient:flip")
        for d in descs:
            r = rep(gs, d)
            out[f"rep_{name}_{d}"] = np.stack([r(e) for e in G.elements]).astype(np.float64)
    for name, descs in (("SO2", ["irrep:0", "irrep:1", "irrep:3"]), ("O2", ["irrep:1,0", "irrep:1,2"])):
        gs = gspace(name)
        G = gs.fibergroup
        els = [(a, f) for f in range(2 if name == "O2" else 1) for a in (0.3, 2.0)]
        out[f"rep_{name}_elements"] = np.array(els, dtype=np.float64)
        for d in descs:
            r = rep(gs, d)
            mats = [r(G.element((f, a)) if name == "O2" else G.element(a)) for a, f in els]
            out[f"rep_{name}_{d}"] = np.stack(mats).astype(np.float64)


# --- kernel-space dimensions ----------------------------------------------------------------
def dims(out: dict):
    configs = {"C4": None, "C8": None, "C16": None, "D4": None, "D8": None, "D16": None, "SO2": 4, "O2": 3}
    for name, lmax in configs.items():
        gs = gspace(name)
        G = gs.fibergroup
        if lmax is None:
            irreps = list(G.irreps())
        elif name == "SO2":
            irreps = [G.irrep(k) for k in range(lmax + 1)]
        else:
            irreps = [G.irrep(0, 0), G.irrep(1, 0)] + [G.irrep(1, k) for k in range(1, lmax + 1)]
        ids = [i.id for i in irreps]
        out[f"dims_{name}_ids"] = np.array([(0,) + tuple(i) if len(i) == 1 else tuple(i) for i in ids])
        ftype = enn.FieldType(gs, [gs.fibergroup.irrep(*i) for i in ids])
        for k in (3, 5, 7):
            conv = enn.R2Conv(ftype, ftype, k, padding=k // 2, initialize=False)
            table = np.zeros((len(ids), len(ids)), dtype=np.int64)
            for attr in conv.basisexpansion.get_basis_info():
                table[ids.index(attr["out_irrep"]), ids.index(attr["in_irrep"])] += 1
            # each (out irrep, in irrep) pair appears once in the type: the count is its dimension
            out[f"dims_{name}_K{k}"] = table


# --- layers -----------------------------------------------------------------------------------
LAYERS = {
    # name: (group, in descriptors, out descriptors, kernel size)
    "c4_reg_reg_k3": ("C4", ["regular"] * 2, ["regular"] * 3, 3),
    "d4_reg_reg_k3": ("D4", ["regular"] * 2, ["regular"] * 2, 3),
    "c8_triv_reg_k5": ("C8", ["trivial"], ["regular"] * 4, 5),
    "c8_irreps_reg_k5": ("C8", ["irrep:0", "irrep:1", "irrep:2", "irrep:3", "irrep:4"], ["regular"] * 2, 5),
    "c16_triv_reg_k7": ("C16", ["trivial"], ["regular"] * 2, 7),
    "c16_reg_reg_k5": ("C16", ["regular"], ["regular"], 5),
    "d8_mixed_k5": ("D8", ["trivial", "irrep:1,1", "quotient:flip", "regular"],
                    ["regular", "irrep:1,2", "irrep:1,0", "quotient:flip"], 5),
    "d16_triv_reg_k5": ("D16", ["trivial"], ["regular"] * 2, 5),
    "so2_triv_irreps_k7": ("SO2", ["trivial"], ["irrep:0", "irrep:1", "irrep:2"], 7),
    "so2_irreps_k5": ("SO2", ["irrep:0", "irrep:1", "irrep:2"], ["irrep:0", "irrep:1", "irrep:2", "irrep:3"], 5),
    "o2_irreps_k5": ("O2", ["irrep:0,0", "irrep:1,0", "irrep:1,1", "irrep:1,2"],
                     ["irrep:0,0", "irrep:1,0", "irrep:1,1", "irrep:1,2"], 5),
}
# layers whose equivariance is measured at off-grid angles (those of the group)
EQUIVARIANCE = {"c8_triv_reg_k5": (45.0,), "c16_triv_reg_k7": (22.5, 45.0), "c16_reg_reg_k5": (22.5, 45.0),
                "so2_triv_irreps_k7": ANGLES_DEG}
# independent initialisations stored per layer (the error depends on the draw; fixtures < 2 MB)
SEEDS = {"c8_triv_reg_k5": 64, "c16_triv_reg_k7": 32, "c16_reg_reg_k5": 24, "so2_triv_irreps_k7": 64}


def disk(h, w, fraction=1.0):
    ch, cw = (h - 1) / 2.0, (w - 1) / 2.0
    r, c = np.meshgrid(np.arange(h) - ch, np.arange(w) - cw, indexing="ij")
    return (r**2 + c**2 <= (fraction * min(h, w) / 2.0) ** 2).astype(np.float32)


def element_at(gs, name, deg):
    G = gs.fibergroup
    if name == "SO2":
        return G.element(math.radians(deg))
    n = int(name[1:])
    k = deg * n / 360.0
    if abs(k - round(k)) > 1e-9:
        raise ValueError(f"{deg} degrees is not an element of {name}")
    return G.element(int(round(k))) if name[0] == "C" else G.element((0, int(round(k))))


def layers(out: dict, digit: np.ndarray):
    out["digit"] = digit
    for name, (group, ins, outs, k) in LAYERS.items():
        torch.manual_seed(0)
        gs = gspace(group)
        tin = enn.FieldType(gs, [rep(gs, d) for d in ins])
        tout = enn.FieldType(gs, [rep(gs, d) for d in outs])
        conv = enn.R2Conv(tin, tout, k, padding=k // 2)
        if conv.bias is not None:
            with torch.no_grad():
                conv.bias.normal_()
        conv.eval()
        out[f"{name}_in"] = np.array(ins)
        out[f"{name}_out"] = np.array(outs)
        out[f"{name}_kernel_size"] = np.array(k)
        out[f"{name}_num_params"] = np.array(conv.basisexpansion.dimension())
        out[f"{name}_filter"] = conv.filter.detach().numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
        bias = conv.expanded_bias
        out[f"{name}_bias"] = (np.zeros(tout.size, np.float32) if bias is None
                               else bias.detach().numpy().astype(np.float32))
        x = np.repeat(digit[None, None], tin.size, axis=1)  # (1, C, 28, 28): the digit in every channel
        with torch.no_grad():
            y = conv(tin(torch.from_numpy(x))).tensor.numpy()
        out[f"{name}_y"] = y[0].transpose(1, 2, 0)
        if name in EQUIVARIANCE:
            # SEEDS[name] independent draws of escnn's initialisation, and escnn's own masked error of each
            h, w = digit.shape
            xm = x * disk(h, w)
            filters, biases, errors = [], [], []
            for seed in range(SEEDS[name]):
                torch.manual_seed(seed)
                conv = enn.R2Conv(tin, tout, k, padding=k // 2)
                if conv.bias is not None:
                    with torch.no_grad():
                        conv.bias.normal_()
                conv.eval()
                filters.append(conv.filter.detach().numpy().transpose(2, 3, 1, 0))
                bias = conv.expanded_bias
                biases.append(np.zeros(tout.size, np.float32) if bias is None else bias.detach().numpy())
                errs = []
                for deg in EQUIVARIANCE[name]:
                    el = element_at(gs, group, deg)
                    with torch.no_grad():
                        y1 = conv(tin(torch.from_numpy(xm)).transform(el)).tensor.numpy()
                        y2 = conv(tin(torch.from_numpy(xm))).transform(el).tensor.numpy()
                    m = disk(y1.shape[-2], y1.shape[-1], 0.6)
                    errs.append(float(np.linalg.norm((y1 - y2) * m) / np.linalg.norm(y2 * m)))
                errors.append(errs)
            out[f"{name}_angles"] = np.array(EQUIVARIANCE[name])
            out[f"{name}_seed_filters"] = np.stack(filters).astype(np.float32)
            out[f"{name}_seed_biases"] = np.stack(biases).astype(np.float32)
            out[f"{name}_native_errors"] = np.array(errors)


def build_time():
    for name in ("C4", "C8", "C16"):
        gs = gspace(name)
        t0 = time.perf_counter()
        t = enn.FieldType(gs, [gs.trivial_repr])
        mods = []
        for w, k in zip((24, 32, 36, 36, 64, 96), (7, 5, 5, 5, 5, 5)):
            o = enn.FieldType(gs, [gs.regular_repr] * w)
            mods += [enn.R2Conv(t, o, k, padding=k // 2), enn.InnerBatchNorm(o), enn.ELU(o)]
            t = o
        model = enn.SequentialModule(*mods)
        n = sum(p.numel() for p in model.parameters())
        print(f"escnn {name}: 6-layer stack built in {time.perf_counter() - t0:.2f} s, {n} parameters")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mnist", default=os.environ.get("EQUILIB_MNIST", "/work/shared/data/mnist"))
    ap.add_argument("--build-time", action="store_true", help="only time escnn's 6-layer stacks")
    ap.add_argument("--only", choices=("conventions", "dims", "layers"), help="regenerate one fixture")
    args = ap.parse_args()
    if args.build_time:
        build_time()
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for fname, fn in (("conventions.npz", conventions), ("dims.npz", dims)):
        if args.only and args.only + ".npz" != fname:
            continue
        data: dict = {}
        t = time.perf_counter()
        fn(data)
        np.savez_compressed(OUT / fname, **data)
        print(f"{fname}: {len(data)} arrays, {time.perf_counter() - t:.1f} s")
    data = {}
    t = time.perf_counter()
    if args.only in ("conventions", "dims"):
        return
    layers(data, load_digit(Path(args.mnist)))
    np.savez_compressed(OUT / "layers.npz", **data)
    print(f"layers.npz: {len(data)} arrays, {time.perf_counter() - t:.1f} s")
    total = sum(f.stat().st_size for f in OUT.glob("*.npz"))
    print(f"fixtures: {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
