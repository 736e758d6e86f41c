"""Steerable convolutions and field layers (issue 4), checked against escnn's fixtures.

Fixtures (``tests/fixtures/escnn/*.npz``) are written by ``tools/escnn_reference.py`` in its own
venv; escnn is not needed here. Measured numbers (2-core CPU, fp32) quoted in the asserts:

* exact elements (rot90 / mirror): relative errors ~1e-7 for every layer and group;
* off-grid, 2 stacked 5x5 convs on ``smooth_random(sigma=1.5)`` 33x33 inputs, output disk 0.6
  (seeds of the test): C8 45 deg 0.034, C16 22.5/45 deg 0.028/0.032, SO(2) 30 deg 0.070,
  22.5/45 deg 0.070/0.077, O(2) 45 deg (and its mirror) 0.064, D8 0.038 (tolerance 0.1; over 4
  seeds and K = 5, 7 the worst seen was 0.095, D8 K=5);
* one conv on MNIST test digit 0, RMS over the initialisation (see
  ``test_mnist_equivariance_no_worse_than_escnn``), ours vs escnn with the same harness:
  C8 trivial->regular K5 45 deg 0.068 vs 0.066; C16 trivial->regular K7 22.5/45 deg
  0.057/0.055 vs 0.059/0.058; C16 regular->regular K5 0.054/0.060 vs 0.053/0.059; SO(2)
  trivial->irreps K7 22.5/30/45 deg 0.048/0.048/0.051 vs 0.046/0.047/0.050. escnn's own measure
  (its order-2 spline transform, mean over seeds): 0.050; 0.035/0.041; 0.042/0.055;
  0.034/0.038/0.042.
"""

import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib import FieldType, nn, reps
from equilib import functional as F
from equilib.groups import O2, SO2, Cyclic, Dihedral
from equilib.testing import assert_field_equivariant, field_equivariance_error, field_equivariance_errors, smooth_random

FIXTURES = Path(__file__).parent / "fixtures" / "escnn"
C4, D4, C8, C16, D8, D16 = Cyclic(4), Dihedral(4), Cyclic(8), Cyclic(16), Dihedral(8), Dihedral(16)


def group_of(name):
    if name in ("SO2", "O2"):
        return SO2() if name == "SO2" else O2()
    return (Cyclic if name[0] == "C" else Dihedral)(int(name[1:]))


def rep_of(G, desc):
    desc = str(desc)
    if desc == "trivial":
        return reps.trivial_rep(G)
    if desc == "regular":
        return reps.regular_rep(G)
    if desc == "quotient:flip":
        return reps.quotient_rep(G, Dihedral(1))
    return reps.irrep(G, *(int(v) for v in desc[6:].split(",")))


def x_of(ft, size=13, seed=0, batch=2):
    return np.random.default_rng(seed).standard_normal((batch, size, size, ft.size)).astype(np.float32)


# --- the basis ---------------------------------------------------------------------------------
@pytest.mark.parametrize("G", [C4, D4, C8, D8, SO2(), O2()], ids=str)
def test_basis_satisfies_the_constraint_exactly_on_the_grid(G):
    """k(g d) = rho_out(g) k(d) rho_in(g)^T for the rot90 / mirror elements, for every irrep pair."""
    irreps = reps.irreps(G) if G.is_finite else reps.irreps(G, 3)
    els = [(q * math.pi / 2, f) for q in range(4) for f in range(2 if G.reflection else 1)]
    mover = Dihedral(4)
    for ro in irreps:
        for ri in irreps:
            b = F.rep_pair_basis(ro, ri, 5)
            for a, f in els:
                moved = mover.transform_image(b, mover.element(int(round(a / (math.pi / 2))), f), axes=(1, 2))
                got = np.einsum("ab,nhwbc,dc->nhwad", ro.at(a, f), moved, ri.at(a, f))
                np.testing.assert_allclose(got, b, atol=1e-6)


def test_kernel_space_dimensions_equal_escnn():
    """For every (out irrep, in irrep) pair of C4, C8, C16, D4, D8, D16, SO(2) (k <= 4), O(2)
    (k <= 3) and kernel sizes 3, 5, 7: the same number of basis elements as escnn's R2Conv."""
    data = np.load(FIXTURES / "dims.npz")
    checked = 0
    for key in data.files:
        if key.endswith("_ids"):
            continue
        _, name, k = key.split("_")
        G = group_of(name)
        ids = data[f"dims_{name}_ids"]
        irreps = [reps.irrep(G, int(j), int(kk)) if G.reflection else reps.irrep(G, int(kk)) for j, kk in ids]
        ours = np.array([[F.rep_pair_basis(o, i, int(k[1:])).shape[0] for i in irreps] for o in irreps])
        np.testing.assert_array_equal(ours, data[key], err_msg=key)
        checked += 1
    assert checked == 24


def _layer_types(data, name):
    G = group_of({"c4": "C4", "d4": "D4", "c8": "C8", "c16": "C16", "d8": "D8", "d16": "D16", "so2": "SO2",
                  "o2": "O2"}[name.split("_")[0]])
    return (G, FieldType(G, [rep_of(G, d) for d in data[f"{name}_in"]]),
            FieldType(G, [rep_of(G, d) for d in data[f"{name}_out"]]), int(data[f"{name}_kernel_size"]))


def _basis_matrix(basis):
    """Columns: the HWIO kernels of the unit weight vectors (the layer's kernel space), placed in
    numpy from the blocks; :func:`test_expansion_matches_the_blocks` checks the JAX expansion."""
    k, tin, tout = basis.kernel_size, basis.in_type, basis.out_type
    cols = np.zeros((basis.num_params, k, k, tin.size, tout.size))
    for b in basis.blocks:
        p = b.offset
        for o in b.out_fields:
            for i in b.in_fields:
                for e in b.basis:  # (K, K, d_out, d_in)
                    cols[p][:, :, tin.field_slice(i), tout.field_slice(o)] = e.transpose(0, 1, 3, 2)
                    p += 1
    return cols.reshape(basis.num_params, -1).T


def test_expansion_matches_the_blocks():
    G = D4
    tin = FieldType(G, [reps.regular_rep(G), reps.irrep(G, 1, 1), reps.trivial_rep(G), reps.regular_rep(G)])
    tout = FieldType(G, [reps.irrep(G, 1, 0), reps.regular_rep(G), reps.irrep(G, 1, 1), reps.regular_rep(G)])
    basis = F.steerable_basis(tin, tout, 3)
    w = np.random.default_rng(0).standard_normal(basis.num_params).astype(np.float32)
    got = np.asarray(F.expand_steerable_kernel(jnp.asarray(w), basis)).ravel()
    np.testing.assert_allclose(got, _basis_matrix(basis) @ w, rtol=1e-5, atol=1e-5)


def test_escnn_filters_lie_in_our_kernel_space():
    """escnn R2Conv filters (exported, OIHW -> HWIO) of 11 layers over C4, D4, C8, C16, D8, D16,
    SO(2), O(2) (regular, quotient, irreps, mixed types) are in the span of equilib's basis for the
    same layer (relative projection residual <= 1e-5); the parameter counts are equal; and
    the converted filter reproduces escnn's output on the MNIST digit."""
    data = np.load(FIXTURES / "layers.npz")
    names = sorted(k[:-7] for k in data.files if k.endswith("_filter"))
    assert len(names) == 11
    for name in names:
        G, tin, tout, k = _layer_types(data, name)
        basis = F.steerable_basis(tin, tout, k)
        assert basis.num_params == int(data[f"{name}_num_params"]), name
        m = _basis_matrix(basis)
        w = np.asarray(data[f"{name}_filter"], np.float64).ravel()
        gram = m.T @ m  # full rank: the sampled elements are linearly independent
        ev = np.linalg.eigvalsh(gram)
        assert ev[0] > 1e-8 * ev[-1], name
        coef = np.linalg.solve(gram, m.T @ w)
        assert np.linalg.norm(m @ coef - w) <= 1e-5 * np.linalg.norm(w), name
        x = np.repeat(data["digit"][None, :, :, None], tin.size, axis=3)
        y = F.conv2d(jnp.asarray(x), jnp.asarray(data[f"{name}_filter"]), bias=jnp.asarray(data[f"{name}_bias"]))
        ref = data[f"{name}_y"]
        assert np.abs(np.asarray(y) - ref).max() <= 1e-5 * np.abs(ref).max(), name


@pytest.mark.parametrize("G", [C4, D4], ids=str)
def test_regular_basis_is_a_band_limited_subspace_of_group_conv(G):
    """Regular -> regular fields: equilib's GroupConv kernels are all K*K*|G| free taps per field
    pair; the steerable basis (escnn's default band limit) is a strict subspace of them (C4, K=3:
    rank 24 of 36; K=5: 44 of 100; D4, K=3: 48 of 72), and with the angular cutoff raised to
    (0, 4) / (0, 4, 8) it spans exactly the same space (D4, K=5: 88 of 200 by default, checked
    once by hand, not here, to keep the test short)."""
    default_rank = {("C4", 3): 24, ("C4", 5): 44, ("D4", 3): 48, ("D4", 5): 88}
    cases = ((3, None), (3, (0, 4))) + (((5, None), (5, (0, 4, 8))) if G == C4 else ())
    for k, cutoff in cases:
        ft = FieldType(G, [reps.regular_rep(G)])
        s = _basis_matrix(F.steerable_basis(ft, ft, k, frequency_cutoff=cutoff))
        n = k * k * G.order
        eye = jnp.eye(n, dtype=jnp.float32).reshape(n, k, k, 1, G.order, 1)
        g = np.asarray(jax.vmap(lambda w: F.expand_group_kernel(w, G))(eye), np.float64).reshape(n, -1).T
        coef, *_ = np.linalg.lstsq(g, s, rcond=None)
        assert np.linalg.norm(g @ coef - s) <= 1e-9 * np.linalg.norm(s)  # steerable subset of GroupConv
        assert np.linalg.matrix_rank(g) == n
        assert np.linalg.matrix_rank(s) == (default_rank[(G.name, k)] if cutoff is None else n)


# --- SteerableConv: exact and approximate equivariance ------------------------------------------
EXACT = [
    ("C4 regular", C4, lambda G: [reps.regular_rep(G)] * 2, lambda G: [reps.regular_rep(G)] * 3, 3, 1, "SAME"),
    ("C4 irreps", C4, lambda G: [reps.trivial_rep(G), reps.irrep(G, 1), reps.irrep(G, 2)],
     lambda G: [reps.irrep(G, 1), reps.regular_rep(G)], 5, 1, "SAME"),
    ("D4 mixed", D4,
     lambda G: [reps.trivial_rep(G), reps.irrep(G, 1, 1), reps.quotient_rep(G, Dihedral(1)), reps.regular_rep(G)],
     lambda G: [reps.regular_rep(G), reps.irrep(G, 1, 0), reps.irrep(G, 0, 2), reps.irrep(G, 1, 1)], 3, 1, "SAME"),
    ("D4 stride2 VALID", D4, lambda G: [reps.regular_rep(G)], lambda G: [reps.regular_rep(G)] * 2, 3, 2, "VALID"),
    ("C8 regular (rot90)", C8, lambda G: [reps.trivial_rep(G)], lambda G: [reps.regular_rep(G)] * 2, 5, 1, "SAME"),
    ("C16 regular (rot90)", C16, lambda G: [reps.regular_rep(G)], lambda G: [reps.regular_rep(G)], 5, 2, "SAME"),
    ("SO2 irreps (rot90)", SO2(), lambda G: [reps.irrep(G, 0), reps.irrep(G, 1)],
     lambda G: [reps.irrep(G, 0), reps.irrep(G, 1), reps.irrep(G, 2)], 5, 1, "SAME"),
    ("O2 irreps (D4)", O2(), lambda G: [reps.irrep(G, 0, 0), reps.irrep(G, 1, 1)],
     lambda G: [reps.irrep(G, 1, 0), reps.irrep(G, 1, 1), reps.irrep(G, 1, 2)], 5, 1, "CIRCULAR"),
]


@pytest.mark.parametrize("case", EXACT, ids=[c[0] for c in EXACT])
def test_steerable_conv_is_exactly_equivariant_for_grid_elements(case):
    _, G, fin, fout, k, stride, padding = case
    tin, tout = FieldType(G, fin(G)), FieldType(G, fout(G))
    conv = nn.SteerableConv(tin, tout, k, stride=stride, padding=padding, rngs=nnx.Rngs(0))
    if conv.bias is not None:
        conv.bias[...] = jnp.linspace(-1, 1, conv.bias.shape[0])
    tested = D4 if G.reflection else C4  # the grid-preserving elements of every group here
    x = x_of(tin, size=13)
    errs = assert_field_equivariant(conv, x, tin, tout, group=tested)
    assert max(errs.values()) < 1e-5
    jitted = nnx.jit(lambda m, z: m(z))
    assert_field_equivariant(lambda z: jitted(conv, z), x, tin, tout, group=tested)


OFF_GRID = [
    (C8, Cyclic(8), [1], lambda G: [reps.regular_rep(G)] * 2),
    (C16, Cyclic(16), [1, 2], lambda G: [reps.regular_rep(G)] * 2),
    (SO2(), Cyclic(12), [1], lambda G: [reps.irrep(G, 0), reps.irrep(G, 1), reps.irrep(G, 2)]),
    (SO2(), Cyclic(16), [1, 2], lambda G: [reps.irrep(G, 0), reps.irrep(G, 1), reps.irrep(G, 2)]),
    (O2(), Dihedral(8), [1, 9], lambda G: [reps.irrep(G, 0, 0), reps.irrep(G, 1, 1), reps.irrep(G, 1, 2)]),
    (D8, Dihedral(8), [1, 9], lambda G: [reps.regular_rep(G)] * 2),
]


@pytest.mark.parametrize("case", OFF_GRID, ids=[f"{c[0]}@{c[1]}" for c in OFF_GRID])
def test_steerable_conv_off_grid_angles_on_smooth_inputs(case):
    """Two stacked 5x5 convs, smooth input, disk mask 0.6: measured <= 0.079 (see module doc);
    documented tolerance 0.1. A plain conv gives ~0.3-1 (negative control below)."""
    G, tested, els, fout = case
    tin, tout = FieldType(G, [reps.trivial_rep(G)]), FieldType(G, fout(G))
    x = np.asarray(smooth_random(jax.random.key(0), (2, 33, 33, 1), sigma=1.5))
    c1 = nn.SteerableConv(tin, tout, 5, rngs=nnx.Rngs(1))
    c2 = nn.SteerableConv(tout, tout, 5, rngs=nnx.Rngs(2))
    assert_field_equivariant(lambda z: c2(c1(z)), x, tin, tout, group=tested, elements=els, off_grid_rtol=0.1)


def test_negative_controls_fail():
    tin, tout = FieldType(C8, [reps.trivial_rep(C8)]), FieldType(C8, [reps.regular_rep(C8)] * 2)
    conv = nn.SteerableConv(tin, tout, 5, rngs=nnx.Rngs(0))
    x = np.asarray(smooth_random(jax.random.key(0), (1, 33, 33, 1), sigma=1.5))
    # 1. an unconstrained kernel of the same shape
    free = np.asarray(jax.random.normal(jax.random.key(1), conv.expanded_kernel().shape)) * 0.2
    plain = lambda z: F.conv2d(jnp.asarray(z), jnp.asarray(free))
    with pytest.raises(AssertionError, match="not C8-equivariant"):
        assert_field_equivariant(plain, x, tin, tout, elements=[2])
    assert field_equivariance_error(plain, x, tin, tout, elements=[1]) > 0.3
    # 2. the right kernel but the wrong output type (frequency 1 read as frequency 2)
    s1, s2 = FieldType(SO2(), [reps.irrep(SO2(), 1)]), FieldType(SO2(), [reps.irrep(SO2(), 2)])
    c = nn.SteerableConv(FieldType(SO2(), [reps.trivial_rep(SO2())]), s1, 5, rngs=nnx.Rngs(0))
    with pytest.raises(AssertionError, match="not SO2-equivariant"):
        assert_field_equivariant(c, x, FieldType(SO2(), [reps.trivial_rep(SO2())]), s2, group=C4)
    # 3. an elementwise ReLU on an irrep field (which PointwiseNonlinearity refuses)
    z = x_of(s1, size=9)
    with pytest.raises(AssertionError):
        assert_field_equivariant(jax.nn.relu, z, s1, s1, group=C4)


def _masked_errors(kernels, x, tin, tout, angle):
    """Off-grid protocol of the harness for a batch of kernels ``(n, K, K, I, O)`` (no bias): the
    masked error and masked reference ``(n, ...)`` of each kernel at ``angle``."""
    from equilib.groups import O2 as _O2
    from equilib.testing import disk_mask

    n, k, _, i, o = kernels.shape
    w = jnp.asarray(np.moveaxis(kernels, 0, 3).reshape(k, k, i, n * o), jnp.float32)
    xm = x * disk_mask(x.shape[1], x.shape[2])[:, :, None]
    conv = lambda z: np.asarray(F.conv2d(jnp.asarray(z, jnp.float32), w)).reshape(z.shape[:3] + (n, o))
    got = conv(tin.transform(xm, angle))
    moved = np.asarray(_O2().transform_image(conv(xm).reshape(xm.shape[:3] + (n * o,)), angle))
    exp = moved.reshape(got.shape) @ tout.matrix(angle).T
    m = disk_mask(got.shape[1], got.shape[2], 0.6)[None, :, :, None, None]
    return np.moveaxis((got - exp) * m, 3, 0), np.moveaxis(exp * m, 3, 0)


def test_mnist_equivariance_no_worse_than_escnn():
    """Masked relative error on MNIST test digit 0 (the digit in every input channel) of the same
    layers as escnn's fixtures, with equilib's harness protocol (bilinear rotation, input disk,
    output disk 0.6), no bias. The error depends on the random initialisation, so we compare
    expectations over it: RMS = sqrt(E|err|^2 / E|ref|^2). Ours is exact (the error is linear
    in the weights: a sum over basis elements weighted by the init variances); escnn's is
    estimated from its 24-64 seeded initialisations. Same span, same (He) scheme: measured equal
    within the sampling noise of escnn's estimate (a few %); asserted ours <= 1.10 x escnn."""
    data = np.load(FIXTURES / "layers.npz")
    cases = {"c8_triv_reg_k5": (45.0,), "c16_triv_reg_k7": (22.5, 45.0), "c16_reg_reg_k5": (22.5, 45.0),
             "so2_triv_irreps_k7": (22.5, 30.0, 45.0)}
    from equilib.nn._steerable import _init_stds

    report = {}
    for name, angles in cases.items():
        G, tin, tout, k = _layer_types(data, name)
        np.testing.assert_array_equal(data[f"{name}_angles"], angles)
        basis = F.steerable_basis(tin, tout, k)
        var = np.concatenate([np.broadcast_to(np.square(s), b.shape).ravel()
                              for s, b in zip(_init_stds(basis), basis.blocks)])
        elements = _basis_matrix(basis).T.reshape(basis.num_params, k, k, tin.size, tout.size)
        x = np.repeat(data["digit"][None, :, :, None], tin.size, axis=3)
        ours, theirs = [], []
        for deg in angles:
            err, ref = _masked_errors(elements, x, tin, tout, math.radians(deg))
            e2, r2 = (err.reshape(len(var), -1) ** 2).sum(1), (ref.reshape(len(var), -1) ** 2).sum(1)
            ours.append(math.sqrt((var @ e2) / (var @ r2)))
            err, ref = _masked_errors(data[f"{name}_seed_filters"], x, tin, tout, math.radians(deg))
            theirs.append(math.sqrt((err ** 2).sum() / (ref ** 2).sum()))
        report[name] = (np.round(ours, 4).tolist(), np.round(theirs, 4).tolist())
        assert np.all(np.array(ours) <= 1.10 * np.array(theirs)), (name, report[name])
        assert max(ours) < 0.1, (name, ours)
    print("MNIST digit, RMS masked error (ours, escnn):", report)


# --- SteerableConv: API ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::equilib.ExactnessWarning")
@pytest.mark.parametrize("padding,stride", [("SAME", 1), ("VALID", 2), ("CIRCULAR", 1)])
def test_kernel_and_export_reproduce_the_layer(padding, stride):
    G = D4
    tin = FieldType(G, [reps.trivial_rep(G), reps.irrep(G, 1, 1), reps.regular_rep(G)])
    tout = FieldType(G, [reps.regular_rep(G), reps.irrep(G, 1, 0), reps.trivial_rep(G), reps.irrep(G, 1, 1)])
    conv = nn.SteerableConv(tin, tout, 3, stride=stride, padding=padding, rngs=nnx.Rngs(0))
    assert conv.expanded_kernel().shape == (3, 3, tin.size, tout.size)
    # bias: one per trivial irrep of the outputs (regular: 1, trivial: 1), constant on regular fields
    assert conv.bias.shape == (2,)
    conv.bias[...] = jnp.array([0.5, -2.0])
    b = np.asarray(conv.expanded_bias())
    np.testing.assert_allclose(b[:8], 0.5, rtol=1e-6)
    np.testing.assert_allclose(b[8:], [0, -2.0, 0, 0], atol=1e-6)
    x = x_of(tin, size=11)
    y = conv(x)
    exported = conv.export()
    assert isinstance(exported, nnx.Conv)
    np.testing.assert_allclose(exported(x), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(F.steerable_conv(x, conv.kernel[...], conv.basis, stride=stride, padding=padding,
                                                bias=conv.bias[...]), y, rtol=1e-5, atol=1e-5)


def test_initialisation_is_seeded_and_keeps_activation_variance():
    G = C8
    t = FieldType(G, [reps.regular_rep(G)] * 4)
    a, b = nn.SteerableConv(t, t, 5, rngs=nnx.Rngs(3)), nn.SteerableConv(t, t, 5, rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(a.kernel[...], b.kernel[...])
    x = np.asarray(jax.random.normal(jax.random.key(0), (8, 24, 24, t.size)))
    ratio = float(jnp.std(a(x))) / float(jnp.std(nn.Conv(t.size, t.size, 5, rngs=nnx.Rngs(1))(x)))
    assert 0.6 < ratio < 1.5
    abstract = nnx.eval_shape(lambda: nn.SteerableConv(t, t, 5, rngs=nnx.Rngs(0)))
    assert abstract.kernel.shape == a.kernel.shape


def test_build_time_of_the_six_layer_c16_stack():
    """The stack of the issue (C16 regular fields 24, 32, 36, 36, 64, 96; kernels 7, 5, ..., 5;
    conv + batch norm + ELU). Measured on the shared 2-core CPU: ~0.1 s with cached bases, ~0.35 s
    cold (escnn: 16.4 s). Asserted < 2 s to stay robust on a loaded machine."""
    def build(seed):
        rngs, t, layers = nnx.Rngs(seed), FieldType(C16, [reps.trivial_rep(C16)]), []
        for w, k in zip((24, 32, 36, 36, 64, 96), (7, 5, 5, 5, 5, 5)):
            out = FieldType(C16, [reps.regular_rep(C16)] * w)
            layers += [nn.SteerableConv(t, out, k, rngs=rngs), nn.FieldBatchNorm(out, rngs=rngs),
                       nn.PointwiseNonlinearity(out, "elu")]
            t = out
        return nn.FieldSequential(*layers)

    t0 = time.perf_counter()
    model = build(0)
    t1 = time.perf_counter()
    build(1)
    t2 = time.perf_counter()
    print(f"6-layer C16 stack: first build {t1 - t0:.3f} s, second {t2 - t1:.3f} s")
    assert t2 - t1 < 2.0
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n > 2_000_000


def test_conv_errors_name_the_argument():
    t4 = FieldType(C4, [reps.regular_rep(C4)])
    with pytest.raises(TypeError, match=r"`in_type` must be an equilib.fields.FieldType, got int"):
        nn.SteerableConv(4, t4, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`in_type` is a field type of C4 but `out_type` of D4"):
        nn.SteerableConv(t4, FieldType(D4, [reps.regular_rep(D4)]), 3, rngs=nnx.Rngs(0))
    conv = nn.SteerableConv(t4, t4, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"SteerableConv: `x` has 8 channels but its field type "
                                         r"FieldType\(C4, \[1xregular\], size=4\) has size 4"):
        conv(jnp.ones((1, 9, 9, 8)))
    with pytest.raises(ValueError, match=r"`kernel_size` \(=4\) is even"):
        nn.SteerableConv(t4, t4, 4, rngs=nnx.Rngs(0))
    # frequencies beyond the band limit: SO(2) frequency 5 from a scalar with a 5x5 kernel (L = 2)
    s = SO2()
    with pytest.raises(ValueError, match=r"output field 1 \(irrep\(5\) of SO2, frequencies \[5\]\) gets no kernel "
                                         r"from `in_type` \(frequencies \[0\]\) with kernel_size=5: the basis is "
                                         r"band-limited to angular frequency 2"):
        nn.SteerableConv(FieldType(s, [reps.trivial_rep(s)]), FieldType(s, [reps.irrep(s, 1), reps.irrep(s, 5)]), 5,
                         rngs=nnx.Rngs(0))
    # a kernel too small for any nontrivial basis: 1x1 from a scalar to frequency 1
    with pytest.raises(ValueError, match=r"kernel_size=1 is too small for the requested basis \(rings at \[0.0\]"):
        nn.SteerableConv(FieldType(s, [reps.trivial_rep(s)]), FieldType(s, [reps.irrep(s, 1)]), 1, rngs=nnx.Rngs(0))
    # no kernel at any band limit
    o = O2()
    with pytest.raises(ValueError, match=r"no equivariant kernel exists between these representations"):
        nn.SteerableConv(FieldType(o, [reps.trivial_rep(o)]), FieldType(o, [reps.irrep(o, 1, 0)]), 5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`rings` must lie in \[0, 1.414\] .* kernel_size=3 kernel\), got \[0.0, "
                                         r"2.0\]; use a larger kernel_size"):
        nn.SteerableConv(t4, t4, 3, rings=(0, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`frequency_cutoff` must be a number or one maximum frequency per ring "
                                         r"\(2 rings\), got 3 values"):
        nn.SteerableConv(t4, t4, 3, frequency_cutoff=(0, 1, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"layer 2 \(SteerableConv\) expects in_type FieldType\(C4, \[2xregular\], "
                                         r"size=8\) but layer 0 \(SteerableConv\) outputs FieldType\(C4, "
                                         r"\[1xregular\], size=4\)"):
        t8 = FieldType(C4, [reps.regular_rep(C4)] * 2)
        nn.FieldSequential(conv, jax.nn.relu, nn.SteerableConv(t8, t4, 3, rngs=nnx.Rngs(0)))


# --- nonlinearities, batch norm, pooling, restriction -------------------------------------------
_apply = nnx.jit(lambda m, z: m(z))


def _run(layer, x):
    return np.asarray(_apply(layer, jnp.asarray(x, jnp.float32)))


def _exact_and_off_grid(fn, tin, tout, x, exact_group, off=None):
    """All elements of ``exact_group`` at 1e-5; then, for layers acting pixel by pixel, off-grid
    elements on the centre pixel alone (a 1x1 map: rotation moves no pixel, so only the fields'
    representations are tested, exactly; interpolating a nonlinear layer's input is not)."""
    if isinstance(fn, nnx.Module):  # one compiled program per layer and shape, not one per op
        layer, fn = fn, lambda z: _apply(layer, jnp.asarray(z, jnp.float32))
    errs = assert_field_equivariant(fn, x, tin, tout, group=exact_group)
    assert max(errs.values()) < 1e-5
    if off is not None:
        group, els, tol = off
        c = x.shape[1] // 2
        assert_field_equivariant(fn, x[:, c:c + 1, c:c + 1], tin, tout, group=group, elements=els,
                                 off_grid_rtol=tol)


def test_pointwise_and_gated_nonlinearities():
    t = FieldType(D4, [reps.regular_rep(D4), reps.trivial_rep(D4), reps.quotient_rep(D4, Dihedral(1))])
    x = x_of(t, size=9)
    layer = nn.PointwiseNonlinearity(t, "elu")
    _exact_and_off_grid(layer, t, t, x, D4)
    np.testing.assert_allclose(_run(layer, x), jax.nn.elu(x), rtol=1e-6)
    s = SO2()
    tg = FieldType(s, [reps.trivial_rep(s), reps.trivial_rep(s), reps.irrep(s, 1), reps.irrep(s, 3)])
    gated = nn.GatedNonlinearity(tg)
    assert gated.out_type == FieldType(s, [reps.irrep(s, 1), reps.irrep(s, 3)])
    x = x_of(tg, size=9)
    y = _run(gated, x)
    np.testing.assert_allclose(y[..., :2], x[..., 2:4] * jax.nn.sigmoid(x[..., :1]), rtol=1e-6)
    _exact_and_off_grid(gated, tg, gated.out_type, x, C4, (Cyclic(16), [1, 3], 1e-5))
    tg2 = FieldType(s, [reps.irrep(s, 1), reps.trivial_rep(s), reps.trivial_rep(s), reps.irrep(s, 3)])
    relabelled = nn.GatedNonlinearity(tg2, gates=["gated", "gate", "gate", "gated"])
    assert relabelled.out_type == FieldType(s, [reps.irrep(s, 1), reps.irrep(s, 3)])
    x2 = x_of(tg2, size=5)
    np.testing.assert_allclose(_run(relabelled, x2)[..., 2:], x2[..., 4:6] * jax.nn.sigmoid(x2[..., 3:4]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"gate field 2 of `in_type` must be trivial \(size 1\), got irrep\(1\)"):
        nn.GatedNonlinearity(tg, gates=["gated", "gated", "gate", "gate"])


def test_norm_nonlinearity_and_fourier_pointwise():
    s, o = SO2(), O2()
    t = FieldType(s, [reps.irrep(s, 0), reps.irrep(s, 1), reps.irrep(s, 2), reps.irrep(s, 1)])
    x = x_of(t, size=9)
    for fn in ("n_relu", "n_sigmoid"):
        layer = nn.NormNonlinearity(t, fn, rngs=nnx.Rngs(0))
        layer.bias[...] = jnp.array([0.1, 0.5, 1.0, 0.2])
        _exact_and_off_grid(layer, t, t, x, C4, (Cyclic(12), [1], 1e-5))
    squash = nn.NormNonlinearity(t, "squash", use_bias=False, rngs=nnx.Rngs(0))
    norms_in = np.linalg.norm(x[..., 1:3], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(_run(squash, x)[..., 1:3], axis=-1), norms_in / (1 + norms_in),
                               rtol=1e-5)
    # Fourier: SO(2) band-limited regular fields sampled at 12 angles (exact for rot90 and 30 deg)
    tf = FieldType(s, [reps.bandlimited_regular_rep(s, 2)] * 2)
    four = nn.FourierPointwise(tf, "elu", samples=12)
    x = x_of(tf, size=9)
    _exact_and_off_grid(four, tf, tf, x, C4, (Cyclic(12), [1, 2], 1e-5))
    errs = field_equivariance_errors(four, x, tf, tf, group=Cyclic(16), elements=[1])  # between samples
    assert 1e-4 < errs[1] < 0.3
    # O(2) and finite regular fields
    to = FieldType(o, [reps.bandlimited_regular_rep(o, 1)])
    _exact_and_off_grid(nn.FourierPointwise(to, "relu", samples=8), to, to, x_of(to, size=9), D4,
                        (Dihedral(8), [1, 9], 1e-5))
    tr = FieldType(C8, [reps.regular_rep(C8)])
    xr = x_of(tr, size=9)
    np.testing.assert_allclose(_run(nn.FourierPointwise(tr, "relu"), xr), jax.nn.relu(xr), atol=1e-5)


def test_inner_field_batch_norm_fused_gradient_matches_the_generic_path():
    # InnerFieldNorm normalises each representation's fields with F.batch_norm (closed-form
    # gradient); the generic NormSpec path (moments, then normalize) is the reference
    from equilib._src.layers import NormSpec

    t = FieldType(D4, [reps.regular_rep(D4), reps.trivial_rep(D4), reps.regular_rep(D4), reps.trivial_rep(D4)])
    spec = nn.FieldBatchNorm(t, rngs=nnx.Rngs(0)).spec
    x = 2.0 + 3.0 * x_of(t, size=5, batch=3)
    scale, bias = jnp.linspace(0.5, 2.0, 4), jnp.linspace(-1.0, 1.0, 4)

    def loss(method):
        def f(x, scale, bias):
            y, (mean, var) = method(spec, spec.split(x), scale, bias, 1e-5, None)
            return jnp.sum(jnp.sin(y)) + jnp.sum(jnp.sin(2.0 * mean)) + jnp.sum(jnp.sin(3.0 * var))
        return f

    fused, generic = type(spec).batch_normalize, NormSpec.batch_normalize
    assert fused is not generic
    np.testing.assert_allclose(loss(fused)(x, scale, bias), loss(generic)(x, scale, bias), rtol=1e-5)
    grads = [jax.grad(loss(m), (0, 1, 2))(x, scale, bias) for m in (fused, generic)]
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_field_batch_norm():
    t = FieldType(D4, [reps.regular_rep(D4)] * 2 + [reps.trivial_rep(D4)])
    x = 2.0 + 3.0 * x_of(t, size=7, batch=4)
    bn = nn.FieldBatchNorm(t, momentum=0.9, rngs=nnx.Rngs(0))
    y = _run(bn, x)
    np.testing.assert_allclose(y[..., :8].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(y[..., :8].std(), 1.0, atol=1e-3)
    assert bn.mean.shape == (3,)
    _exact_and_off_grid(nn.FieldBatchNorm(t, rngs=nnx.Rngs(0)), t, t, x, D4)  # training mode: batch statistics
    bn.eval()
    _exact_and_off_grid(bn, t, t, x, D4)
    # norm batch norm: any field type; the mean only on invariant directions
    s = SO2()
    tn = FieldType(s, [reps.irrep(s, 0), reps.irrep(s, 1), reps.irrep(s, 2), reps.bandlimited_regular_rep(s, 1)])
    xn = 1.0 + x_of(tn, size=7, batch=4)
    bnn = nn.FieldBatchNorm(tn, kind="norm", rngs=nnx.Rngs(0))
    assert bnn.bias.shape == (2,)  # one per trivial irrep
    yn = _run(bnn, xn)
    np.testing.assert_allclose(yn[..., 0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose((yn[..., 1:3] ** 2).sum(-1).mean() / 2, 1.0, rtol=1e-3)
    _exact_and_off_grid(nn.FieldBatchNorm(tn, kind="norm", rngs=nnx.Rngs(0)), tn, tn, xn, C4, (Cyclic(12), [1], 1e-5))
    # for regular fields the two kinds agree
    tr = FieldType(C8, [reps.regular_rep(C8)] * 2)
    xr = x_of(tr, size=7, batch=3) + 1.0
    np.testing.assert_allclose(_run(nn.FieldBatchNorm(tr, rngs=nnx.Rngs(0)), xr),
                               _run(nn.FieldBatchNorm(tr, kind="norm", rngs=nnx.Rngs(0)), xr), atol=1e-5)
    with pytest.raises(ValueError, match=r"FieldBatchNorm\(kind='inner'\) needs fields whose representation "
                                         r"permutes channels .* field 1 of `in_type` is irrep\(1\) of SO2; "
                                         r"use kind='norm'"):
        nn.FieldBatchNorm(tn, rngs=nnx.Rngs(0))


def test_pooling_and_restriction():
    t = FieldType(D4, [reps.regular_rep(D4), reps.irrep(D4, 1, 1), reps.trivial_rep(D4)])
    x = x_of(t, size=9)
    npool = nn.NormPool(t)
    assert npool.out_type == FieldType(D4, [reps.trivial_rep(D4)] * 3)
    _exact_and_off_grid(npool, t, npool.out_type, x, D4)
    tr = FieldType(D4, [reps.regular_rep(D4), reps.quotient_rep(D4, Dihedral(1))])
    gpool = nn.FieldGroupPool(tr)
    xr = x_of(tr, size=9)
    np.testing.assert_allclose(_run(gpool, xr), np.stack([xr[..., :8].max(-1), xr[..., 8:].max(-1)], -1))
    _exact_and_off_grid(gpool, tr, gpool.out_type, xr, D4)
    with pytest.raises(ValueError, match=r"FieldGroupPool needs fields whose representation permutes channels"):
        nn.FieldGroupPool(t)
    with pytest.raises(ValueError, match=r"PointwiseNonlinearity needs .* field 1 of `in_type` is irrep\(1, 1\)"):
        nn.PointwiseNonlinearity(t)
    # D16 -> C16 restriction (the E(2)-CNN MNIST model): D16 layers, restrict, C16 layers
    rngs = nnx.Rngs(0)
    t0 = FieldType(D16, [reps.trivial_rep(D16)])
    t1 = FieldType(D16, [reps.regular_rep(D16)] * 2)
    restrict = nn.Restrict(t1, C16)
    t2 = FieldType(C16, [reps.regular_rep(C16)] * 2)
    model = nn.FieldSequential(nn.SteerableConv(t0, t1, 5, rngs=rngs), nn.PointwiseNonlinearity(t1, "elu"), restrict,
                               nn.SteerableConv(restrict.out_type, t2, 5, rngs=rngs), nn.FieldGroupPool(t2))
    assert restrict.out_type.group == C16 and restrict.out_type.size == t1.size
    x = np.asarray(smooth_random(jax.random.key(0), (1, 21, 21, 1), sigma=1.5))
    tg = FieldType(C16, [reps.trivial_rep(C16)])  # the input seen as a C16 field
    out = FieldType(C16, [reps.trivial_rep(C16)] * 2)
    _exact_and_off_grid(model, tg, out, x, C4, (C16, [1, 2], 0.1))
    # the D16 part is also mirror-equivariant
    assert_field_equivariant(lambda z: restrict(model.layers[1](model.layers[0](z))), x, t0, t1, group=D4)


def test_training_step_stays_equivariant():
    import optax

    G = C4
    t0, t1 = FieldType(G, [reps.trivial_rep(G)]), FieldType(G, [reps.regular_rep(G)] * 3)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nn.SteerableConv(t0, t1, 3, rngs=rngs)
            self.bn = nn.FieldBatchNorm(t1, rngs=rngs)
            self.act = nn.PointwiseNonlinearity(t1, "relu")
            self.pool = nn.FieldGroupPool(t1)

        def __call__(self, x):
            return jnp.mean(self.pool(self.act(self.bn(self.conv(x)))), axis=(1, 2))

    model = Net(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x = np.asarray(jax.random.normal(jax.random.key(0), (8, 9, 9, 1)))
    labels = jnp.arange(8) % 3

    @nnx.jit
    def step(model, opt, x, labels):
        loss, grads = nnx.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), labels).mean())(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt, x, labels)) for _ in range(4)]
    assert losses[-1] < losses[0]
    model.eval()
    assert_field_equivariant(model, x, t0, "invariant")
