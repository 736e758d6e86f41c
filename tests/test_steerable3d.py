"""Steerable convolutions on volumes: nn.SteerableConv with field types of equilib.fields3d, the norm
nonlinearity and pooling on them, and equilib.fields3d itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib import Cyclic, FieldType, FullOctahedral, Octahedral, export, nn
from equilib.fields3d import FieldType3D, Rep3D, bandlimited_regular3d, irrep3d, irreps3d
from equilib.groups3d import O3, SO3
from equilib.reps import trivial_rep
from equilib.testing import assert_field_equivariant, equivariance_errors, field_equivariance_errors, smooth_random

GRID = [Octahedral().matrix(g) for g in range(24)]  # the exact rotations, as SO3 elements


def _types(group):
    scalar = FieldType3D(group, [irrep3d(group, 0)])
    hidden = FieldType3D(group, [irrep3d(group, 0)] * 2 + [irrep3d(group, 1)] * 2 + [irrep3d(group, 2)])
    return scalar, hidden


def _volume(n=11, c=1, seed=0):
    return smooth_random(jax.random.key(seed), (1, n, n, n, c), sigma=2.0, axes=(1, 2, 3))


def test_so3_conv_is_exact_on_the_grid_and_far_better_than_a_plain_conv_off_it():
    scalar, hidden = _types(SO3())
    conv = nn.SteerableConv(scalar, hidden, 5, rngs=nnx.Rngs(0))
    x = _volume()
    errors = assert_field_equivariant(conv, x, scalar, hidden, elements=GRID, rtol=1e-5)
    assert len(errors) == 24
    rots = SO3().random_elements(4, seed=1)
    # measured 0.02-0.09 over initialisations (the trilinear resampling of the test included); bound 0.15
    steer = assert_field_equivariant(conv, x, scalar, hidden, elements=rots, off_grid_rtol=0.15)
    plain = equivariance_errors(nn.Conv(1, hidden.size, (5, 5, 5), rngs=nnx.Rngs(0)), x, SO3(), elements=rots)
    assert max(steer.values()) <= min(plain.values()) / 3, (steer, plain)  # the bar
    # group-constrained: 12 coefficients instead of 5^3 x 1 x 13 taps
    assert conv.kernel.shape == (12,) and conv.expanded_kernel().shape == (5, 5, 5, 1, 13)
    # negative control: the wrong output type is caught
    with pytest.raises(AssertionError, match="not SO3-equivariant"):
        other = FieldType3D(SO3(), [irrep3d(SO3(), 0)] * 2 + [irrep3d(SO3(), 2)] + [irrep3d(SO3(), 1)] * 2)
        assert_field_equivariant(conv, x, scalar, other, elements=GRID[:4], rtol=1e-5)


@pytest.mark.parametrize("group", [Octahedral(), FullOctahedral(), O3()], ids=str)
def test_other_groups(group):
    scalar, hidden = _types(group)
    conv = nn.SteerableConv(hidden, hidden, 3, rngs=nnx.Rngs(1))
    x = _volume(7, hidden.size, seed=2)
    elements = None if isinstance(group, (Octahedral, FullOctahedral)) else GRID[:6] + [-GRID[3]]
    errors = assert_field_equivariant(conv, x, hidden, hidden, elements=elements, rtol=1e-5)
    assert len(errors) == {24: 24, 48: 48}.get(getattr(group, "order", 0), 7)


def test_o3_tells_a_vector_from_a_pseudovector():
    G = O3()
    scalar = FieldType3D(G, [irrep3d(G, 0)])
    vector, axial = FieldType3D(G, [irrep3d(G, 1)]), FieldType3D(G, [irrep3d(G, 1, pseudo=True)])
    assert nn.SteerableConv(scalar, vector, 3, rngs=nnx.Rngs(0)).kernel.shape == (1,)  # phi(r) p
    with pytest.raises(ValueError, match="no equivariant kernel maps"):
        nn.SteerableConv(scalar, axial, 3, rngs=nnx.Rngs(0))


def test_an_invariant_steerable_cnn_and_export():
    scalar, hidden = _types(SO3())
    rngs = nnx.Rngs(0)
    norms = nn.NormPool(hidden)
    model = nn.Sequential(nn.SteerableConv(scalar, hidden, 5, rngs=rngs), nn.NormNonlinearity(hidden, rngs=rngs),
                          nn.SteerableConv(hidden, hidden, 3, rngs=rngs), norms,
                          nn.GlobalPool("mean", spatial_dims=3))
    x = _volume(11)
    assert model(x).shape == (1, len(hidden))
    exact = assert_field_equivariant(model, x, scalar, "invariant", elements=GRID, rtol=1e-5)
    assert max(exact.values()) < 1e-5 and norms.out_type == FieldType3D(SO3(), [irrep3d(SO3(), 0)] * 5)
    conv = model.layers[0]
    np.testing.assert_allclose(export(conv)(x), conv(x), rtol=1e-5, atol=1e-5)
    errors = field_equivariance_errors(nn.NormNonlinearity(hidden, rngs=rngs), _volume(7, hidden.size), hidden,
                                       hidden, elements=GRID[:5])
    assert max(errors.values()) < 1e-6


def test_bad_arguments_name_the_problem():
    scalar, hidden = _types(SO3())
    octa = FieldType3D(Octahedral(), [irrep3d(Octahedral(), 0)])
    planar = FieldType(Cyclic(4), [trivial_rep(Cyclic(4))])
    conv = nn.SteerableConv(scalar, hidden, 3, rngs=nnx.Rngs(0))
    cases = [
        (lambda: nn.SteerableConv(scalar, octa, 3, rngs=nnx.Rngs(0)), ValueError,
         "`in_type` is a field type of SO3 but `out_type` of O"),
        (lambda: nn.SteerableConv(scalar, planar, 3, rngs=nnx.Rngs(0)), TypeError,
         "`out_type` must be an equilib.fields3d.FieldType3D"),
        (lambda: nn.SteerableConv(scalar, hidden, 4, rngs=nnx.Rngs(0)), ValueError, r"`kernel_size` \(=4\) is even"),
        (lambda: nn.SteerableConv(scalar, hidden, 3, rings=(0, 1), rngs=nnx.Rngs(0)), ValueError,
         r"\['rings'\] configure the planar basis"),
        (lambda: conv(jnp.ones((1, 9, 9, 1))), ValueError, r"steerable volume of rank 5 \(batch, D, H, W, C=1\)"),
        (lambda: conv(jnp.ones((1, 5, 5, 5, 2))), ValueError, "has 2 channels but its field type"),
        (lambda: Rep3D(SO3(), 1, pseudo=True), ValueError, "`pseudo` needs a group with the inversion"),
        (lambda: Rep3D(SO3(), -1), ValueError, "`degree` must be an integer >= 0, got -1"),
        (lambda: Rep3D(Cyclic(4), 1), TypeError, "`group` must be a group of 3D rotations"),
        (lambda: FieldType3D(SO3(), [irrep3d(O3(), 0)]), ValueError, r"`reps\[0\]` is a representation of O3"),
        (lambda: FieldType3D(SO3(), irrep3d(SO3(), 0)), TypeError, "got a single Rep3D"),
    ]
    for fn, error, match in cases:
        with pytest.raises(error, match=match):
            fn()


def test_field_types_transform_as_documented():
    G = O3()
    vector = FieldType3D(G, [irrep3d(G, 1)])
    rots = G.random_elements(3, seed=4)
    for a in rots:
        for b in rots:  # a homomorphism, parity included
            np.testing.assert_allclose(vector.matrix(a @ b), vector.matrix(a) @ vector.matrix(b), atol=1e-10)
    # a constant vector field: turned by D^1(R) = P R P^T, with P: (x, y, z) -> (y, z, x)
    p = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    v = np.array([1.0, 2.0, 3.0])  # (x, y, z)
    field = np.broadcast_to(p @ v, (1, 3, 3, 3, 3)).astype(np.float32)
    quarter = G.element(axis=(0, 0, 1), angle=np.pi / 2)
    np.testing.assert_allclose(vector.transform(field, quarter)[0, 1, 1, 1], p @ quarter @ v, atol=1e-6)
    assert (repr(vector), len(vector + vector), vector.groups()[0][2].tolist()) == (
        "FieldType3D(O3, [1xl1], size=3)", 2, [[0, 1, 2]])


@pytest.mark.parametrize("group", [SO3(), O3(), Octahedral()], ids=str)
def test_batch_norm_and_nonlinearities_on_volumes(group):
    """FieldBatchNorm ("norm"; "inner" on scalars), GatedNonlinearity and PointwiseNonlinearity on
    FieldType3D: equivariant under every grid rotation (with the inversion for O(3)), in training and
    eval mode; the statistics are those of the definition. Negative control: a channel-wise batch
    norm (nnx.BatchNorm) on the same fields is not equivariant."""
    _, hidden = _types(group)  # 2 scalars, 2 vectors, 1 degree-2 field
    gated_in = FieldType3D(group, [irrep3d(group, 0)] * 3 + [irrep3d(group, 1)] * 2 + [irrep3d(group, 2)])
    x = _volume(5, hidden.size, seed=3) + 0.3  # nonzero means
    elements = None if isinstance(group, Octahedral) else GRID + ([-GRID[5]] if group == O3() else [])
    bn = nn.FieldBatchNorm(hidden, kind="norm", rngs=nnx.Rngs(0))
    assert bn.mean.shape == (hidden.size,) and bn.var.shape == (5,) and bn.bias.shape == (2,)
    y = bn(x)
    # the definition: scalars standardised; a degree-l field divided by sqrt(E|f|^2 / (2l + 1))
    xs = np.asarray(x).reshape(-1, hidden.size)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, hidden.size)[:, 0], (xs[:, 0] - xs[:, 0].mean())
                               / np.sqrt(xs[:, 0].var() + 1e-5), rtol=1e-4, atol=1e-5)
    v = xs[:, 2:5]
    np.testing.assert_allclose(np.asarray(y).reshape(-1, hidden.size)[:, 2:5],
                               v / np.sqrt(np.mean(np.sum(v**2, -1)) / 3 + 1e-5), rtol=1e-4, atol=1e-5)
    for mode in ("train", "eval"):
        layer = nn.FieldBatchNorm(hidden, kind="norm", rngs=nnx.Rngs(0))
        layer.bias[...] = jnp.array([0.5, -1.0])
        if mode == "eval":
            layer(x)
            layer.eval()
        assert_field_equivariant(layer, x, hidden, hidden, elements=elements, rtol=1e-5)
    scalars = FieldType3D(group, [irrep3d(group, 0)] * 3)
    inner = nn.FieldBatchNorm(scalars, rngs=nnx.Rngs(0))
    # centred data: the fused "inner" norm computes the variance in one pass, E[x^2] - E[x]^2 (as
    # Flax's BatchNorm), which loses digits to rounding where the mean is large against the spread
    centred = x[..., :3] - jnp.mean(x[..., :3], axis=(0, 1, 2, 3), keepdims=True)
    assert_field_equivariant(inner, centred, scalars, scalars, elements=elements, rtol=1e-5)
    gate = nn.GatedNonlinearity(gated_in, ["gate"] * 3 + ["gated"] * 3)
    assert gate.out_type == FieldType3D(group, [irrep3d(group, 1)] * 2 + [irrep3d(group, 2)])
    xg = _volume(5, gated_in.size, seed=4)
    assert_field_equivariant(gate, xg, gated_in, gate.out_type, elements=elements, rtol=1e-5)
    relu = nn.PointwiseNonlinearity(scalars, "relu")
    assert_field_equivariant(relu, centred, scalars, scalars, elements=elements, rtol=1e-5)
    with pytest.raises(ValueError, match="permutes channels"):
        nn.PointwiseNonlinearity(hidden, "relu")
    with pytest.raises(ValueError, match="permutes channels"):
        nn.FieldBatchNorm(hidden, kind="inner", rngs=nnx.Rngs(0))
    with pytest.raises(AssertionError, match="not .*equivariant"):  # negative control
        assert_field_equivariant(nnx.BatchNorm(hidden.size, rngs=nnx.Rngs(0)), x, hidden, hidden,
                                 elements=elements, rtol=1e-5)
    if isinstance(group, (SO3, O3)):
        # off the grid the volume is resampled (trilinear), which a nonlinearity does not commute
        # with, and in training mode the batch statistics move with the resampled border. Measured
        # at 3 random elements on 9^3 volumes: batch norm 0.11-0.12 in training mode (bound 0.2),
        # 0 in eval mode (an affine map per field; bound 1e-4), gated 0.022-0.023 (bound 0.05), ReLU on
        # scalars 0.05-0.06 (bound 0.1). Negative control: a channel-wise batch norm with a scale
        # per channel, in eval mode, turns vectors out of their orbit.
        rots = list(group.random_elements(3, seed=8))
        big = _volume(9, hidden.size, seed=3) + 0.3
        layer = nn.FieldBatchNorm(hidden, kind="norm", rngs=nnx.Rngs(0))
        assert_field_equivariant(layer, big, hidden, hidden, elements=rots, off_grid_rtol=0.2)
        layer(big)
        layer.eval()
        assert_field_equivariant(layer, big, hidden, hidden, elements=rots, off_grid_rtol=1e-4)
        assert_field_equivariant(gate, _volume(9, gated_in.size, seed=4), gated_in, gate.out_type, elements=rots,
                                 off_grid_rtol=0.05)
        big_scalars = big[..., :3] - jnp.mean(big[..., :3], axis=(0, 1, 2, 3), keepdims=True)
        assert_field_equivariant(relu, big_scalars, scalars, scalars, elements=rots, off_grid_rtol=0.1)
        plain = nnx.BatchNorm(hidden.size, rngs=nnx.Rngs(0))
        plain.scale[...] = jnp.linspace(0.5, 2.0, hidden.size)
        plain.eval()
        with pytest.raises(AssertionError, match="not .*equivariant"):
            assert_field_equivariant(plain, big, hidden, hidden, elements=rots, off_grid_rtol=0.1)


def test_octahedral_batch_norm_keeps_the_invariant_direction_of_degree_4():
    """Over the cube's rotations a degree-4 field holds one fixed direction: the "norm" batch norm
    subtracts the mean along it (and adds a bias there), as escnn does for the invariant subspace."""
    G = Octahedral()
    t = FieldType3D(G, [irrep3d(G, 4)])
    cols = irrep3d(G, 4).trivial_columns()
    assert cols.shape == (9, 1)
    for g in range(24):
        np.testing.assert_allclose(irrep3d(G, 4)(g) @ cols, cols, atol=1e-12)
    bn = nn.FieldBatchNorm(t, kind="norm", rngs=nnx.Rngs(0))
    assert bn.bias.shape == (1,)
    x = _volume(5, 9, seed=5) + jnp.asarray(3.0 * cols[:, 0], jnp.float32)[None, None, None, None]
    y = np.asarray(bn(x)).reshape(-1, 9)
    assert abs(float(np.mean(y @ cols))) < 1e-4  # the mean along the fixed direction removed
    assert_field_equivariant(bn, x, t, t, rtol=1e-5)


def test_restriction_to_subgroups_keeps_the_channels():
    """O(3) -> SO(3) -> O and O(3) -> Oh -> O: the same channels transform the same way under the
    subgroup's elements; a pseudo-vector stays one where the inversion remains."""
    G = O3()
    t = FieldType3D(G, [irrep3d(G, 0), irrep3d(G, 1), irrep3d(G, 1, pseudo=True), irrep3d(G, 2)])
    x = _volume(5, t.size, seed=6)
    so3, oh, o = t.restrict(SO3()), t.restrict(FullOctahedral()), t.restrict(Octahedral())
    assert so3 == FieldType3D(SO3(), [irrep3d(SO3(), degree) for degree in (0, 1, 1, 2)])
    assert oh.reps[2].pseudo and not o.reps[2].pseudo and so3.restrict(Octahedral()) == oh.restrict(Octahedral()) == o
    for g in (3, 17, 24 + 5):  # two rotations, one improper element of Oh
        m = FullOctahedral().matrix(g)
        np.testing.assert_allclose(np.asarray(oh.transform(x, g)), np.asarray(t.transform(x, m)), atol=1e-6)
        if g < 24:
            np.testing.assert_allclose(np.asarray(o.transform(x, g)), np.asarray(so3.transform(x, m)), atol=1e-6)
    with pytest.raises(ValueError, match="not a subgroup of SO3"):
        so3.restrict(FullOctahedral())
    with pytest.raises(TypeError, match="`subgroup` must be a group of 3D rotations"):
        t.restrict(Cyclic(4))


def _function_values(reps, coefficients, rotation):
    """``f(R) = sum_l sqrt(2l+1) tr(D^l(R)^T F_l)`` computed from the definition, field by field."""
    out, offset, copies = 0.0, 0, {}
    for r in reps:
        n = copies.get(r, 0)
        copies[r] = n + 1
        out += np.sqrt(r.size) * r(rotation)[:, n] @ coefficients[offset:offset + r.size]
        offset += r.size
    return out


def test_bandlimited_functions_on_so3_and_o3():
    """irreps3d / bandlimited_regular3d: the sizes of escnn's bl_regular_representation(L), and the
    documented meaning: rotating the fields by S turns the function f into R -> f(S^-1 R)."""
    G = SO3(max_frequency=2)
    assert G == SO3() and hash(G) == hash(SO3()) and repr(G) == "SO3(max_frequency=2)" and repr(SO3()) == "SO3()"
    assert [r.degree for r in irreps3d(G)] == [0, 1, 2] and [r.name for r in irreps3d(O3(), 1)] == [
        "l0", "pseudol0", "l1", "pseudol1"]
    assert [sum(r.size for r in bandlimited_regular3d(g, L)) for g, L in ((G, 0), (G, 1), (G, 2), (O3(), 2))] == [
        1, 10, 35, 70]
    for group in (SO3(), O3()):
        reps = bandlimited_regular3d(group, 2)
        t = FieldType3D(group, reps)
        coefficients = np.random.default_rng(0).standard_normal(t.size)
        s, r = group.random_elements(2, seed=3)
        turned = t.matrix(s) @ coefficients
        np.testing.assert_allclose(_function_values(reps, turned, r),
                                   _function_values(reps, coefficients, s.T @ r), rtol=1e-9)
    for fn, error, match in [
        (lambda: SO3(max_frequency=-1), ValueError, "`max_frequency` must be None or an integer >= 0, got -1"),
        (lambda: irreps3d(SO3()), ValueError, r"give `max_frequency`, or build the group with one \(SO3"),
        (lambda: bandlimited_regular3d(Octahedral(), 1), TypeError, "needs SO3\\(\\) or O3\\(\\), got O"),
        (lambda: irreps3d(O3(), 1.5), ValueError, "`max_frequency` must be an integer >= 0, got 1.5"),
    ]:
        with pytest.raises(error, match=match):
            fn()


@pytest.mark.parametrize("group, bound", [(SO3(max_frequency=2), 0.11), (O3(max_frequency=1), 0.06)], ids=str)
def test_fourier_pointwise_on_volumes(group, bound):
    """A ReLU applied pointwise to band-limited functions on the group: exact under every grid
    rotation (the samples are orbits of the cube's rotations), approximate off the grid with an
    error falling with the number of samples (the trilinear resampling of the test adds its own:
    a ReLU does not commute with interpolation). Measured on this smooth 7^3 volume at 4 random
    rotations: SO(3) L = 2, 288 samples 0.061-0.073 (960: 0.026-0.030), bound 0.11; O(3) L = 1,
    192 samples 0.035-0.041, bound 0.06. Negative control: a ReLU on the coefficients is not
    equivariant."""
    t = FieldType3D(group, bandlimited_regular3d(group) * 2)
    layer = nn.FourierPointwise(t, "relu")
    assert layer.out_type == t and layer.samples == {"SO3": 288, "O3": 192}[group.name]
    x = _volume(7, t.size, seed=7)
    cube = FullOctahedral() if group.improper else Octahedral()
    grid = [cube.matrix(g) for g in range(cube.order)]
    assert len(assert_field_equivariant(layer, x, t, t, elements=grid, rtol=1e-5)) == cube.order
    rots = list(group.random_elements(4, seed=1))
    off = assert_field_equivariant(layer, x, t, t, elements=rots, off_grid_rtol=bound)
    if group == SO3():  # more samples, smaller error
        finer = field_equivariance_errors(nn.FourierPointwise(t, "relu", samples=960), x, t, t, elements=rots)
        assert max(finer.values()) < min(off.values()), (finer, off)
    with pytest.raises(AssertionError, match="not .*equivariant"):
        assert_field_equivariant(jax.nn.relu, x, t, t, elements=grid[:3], rtol=1e-5)


def test_a_regular_so3_cnn_is_invariant_on_the_grid_and_fourier_errors_name_the_argument():
    G = SO3(max_frequency=1)
    scalar, regular = FieldType3D(G, [irrep3d(G, 0)]), FieldType3D(G, bandlimited_regular3d(G) * 2)
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.SteerableConv(scalar, regular, 3, rngs=rngs), nn.FourierPointwise(regular, "elu"),
                          nn.SteerableConv(regular, scalar, 3, rngs=rngs), nn.GlobalPool("mean", spatial_dims=3))
    assert_field_equivariant(model, _volume(7), scalar, "invariant", elements=GRID, rtol=1e-5)
    two = FieldType3D(G, bandlimited_regular3d(G, 2))
    for fn, match in [
        (lambda: nn.FourierPointwise(FieldType3D(G, [irrep3d(G, 1)] * 3 + [irrep3d(G, 0)])), "must be copies of "
         r"bandlimited_regular3d\(group, L\)"),
        (lambda: nn.FourierPointwise(FieldType3D(Octahedral(), [irrep3d(Octahedral(), 0)])), "of SO3\\(\\) or O3"),
        (lambda: nn.FourierPointwise(regular, samples=30), "`samples` must be a positive multiple of 24"),
        (lambda: nn.FourierPointwise(two, samples=24), "cannot represent a function of band limit 2"),
    ]:
        with pytest.raises(ValueError, match=match):
            fn()
    with pytest.raises(ValueError, match="has 9 channels but its field type"):
        nn.FourierPointwise(regular)(jnp.ones((1, 3, 3, 3, 9)))
