"""FieldType (equilib.fields) and the field equivariance harness (equilib.testing)."""

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from equilib import FieldType
from equilib.groups import O2, SO2, Cyclic, Dihedral
from equilib.reps import irrep, regular_rep, trivial_rep
from equilib.testing import assert_field_equivariant, field_equivariance_error, field_equivariance_errors

FIXTURES = Path(__file__).parent / "fixtures" / "escnn"


def test_structure():
    G = Dihedral(4)
    ft = FieldType(G, [regular_rep(G), irrep(G, 1, 1), trivial_rep(G), regular_rep(G)])
    assert ft.size == 8 + 2 + 1 + 8 and len(ft) == 4
    assert ft.offsets == (0, 8, 10, 11)
    assert ft.field_slice(1) == slice(8, 10)
    assert not ft.is_permutation and FieldType(G, [regular_rep(G), trivial_rep(G)]).is_permutation
    groups = ft.groups()
    assert [len(f) for _, f, _ in groups] == [2, 1, 1]
    np.testing.assert_array_equal(groups[0][2], [np.arange(8), np.arange(11, 19)])
    both = ft + FieldType(G, [trivial_rep(G)])
    assert len(both) == 5 and both.reps[-1] == trivial_rep(G)
    assert FieldType(G, [regular_rep(G)] * 2) == FieldType(Dihedral(4), [regular_rep(Dihedral(4))] * 2)
    assert len({FieldType(G, [regular_rep(G)]), FieldType(G, [regular_rep(G)])}) == 1
    assert "2xregular" in repr(FieldType(G, [regular_rep(G)] * 2))
    r = ft.representation
    assert r.size == ft.size
    np.testing.assert_allclose(r(3), ft.matrix(G.angle(3), G.flip(3)), atol=1e-12)


def test_transform_equals_escnn():
    """escnn's GeometricTensor.transform and FieldType.transform agree exactly (NCHW -> NHWC):
    same rotation direction, mirror axis, element order and regular representation."""
    data = np.load(FIXTURES / "conventions.npz")
    G = Dihedral(4)
    for desc, rep in (("trivial", trivial_rep(G)), ("regular", regular_rep(G))):
        ft = FieldType(G, [rep])
        x = data[f"conv_{desc}_x"][None]
        for g in range(G.order):
            np.testing.assert_array_equal(ft.transform(x, G.angle(g), G.flip(g))[0], data[f"conv_{desc}_gx"][g])


def test_transform_composes_and_works_on_jax_arrays():
    G = Cyclic(8)
    ft = FieldType(G, [regular_rep(G), irrep(G, 1)])
    x = np.random.default_rng(0).standard_normal((1, 9, 9, ft.size)).astype(np.float32)
    y = ft.transform(ft.transform(x, math.pi / 2), math.pi / 2)
    np.testing.assert_allclose(y, ft.transform(x, math.pi), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ft.transform(jnp.asarray(x), math.pi / 2)), ft.transform(x, math.pi / 2),
                               atol=1e-6)


def test_restrict():
    D16 = Dihedral(16)
    ft = FieldType(D16, [regular_rep(D16), irrep(D16, 1, 1)])
    r = ft.restrict(Cyclic(16))
    assert r.group == Cyclic(16) and r.size == ft.size
    np.testing.assert_allclose(r.matrix(math.pi / 8), ft.matrix(math.pi / 8), atol=1e-12)


def test_errors_name_the_argument():
    G, H = Cyclic(4), Dihedral(4)
    with pytest.raises(TypeError, match=r"`group` must be an equilib group"):
        FieldType(4, [trivial_rep(G)])
    with pytest.raises(TypeError, match=r"`reps` must be a sequence of Rep \(one per field\), got a single Rep"):
        FieldType(G, regular_rep(G))
    with pytest.raises(ValueError, match=r"`reps` must contain at least one representation"):
        FieldType(G, [])
    with pytest.raises(TypeError, match=r"`reps\[1\]` must be a Rep .* got str"):
        FieldType(G, [trivial_rep(G), "regular"])
    with pytest.raises(ValueError, match=r"`reps\[0\]` is a representation of D4, expected one of C4"):
        FieldType(G, [regular_rep(H)])
    ft = FieldType(G, [regular_rep(G)] * 2)
    with pytest.raises(ValueError, match=r"`x` has 7 channels but its field type FieldType\(C4, \[2xregular\], "
                                         r"size=8\) has size 8"):
        ft.check(np.zeros((1, 5, 5, 7)))
    with pytest.raises(ValueError, match=r"must be a steerable map of rank 4 .* got shape \(5, 5, 8\)"):
        ft.check(np.zeros((5, 5, 8)))
    with pytest.raises(ValueError, match="cannot concatenate field types of C4 and D4"):
        ft + FieldType(H, [trivial_rep(H)])
    with pytest.raises(ValueError, match=r"`angle` \(45 deg\) is not a rotation of C4"):
        ft.matrix(math.pi / 4)


# --- the harness -------------------------------------------------------------------------------
def _rotate_channels(ft):
    """An exactly equivariant pointwise map: multiply each field by rho(90 deg) (commutes with C4)."""
    m = ft.matrix(math.pi / 2)
    return lambda x: np.asarray(x) @ m.T


def test_harness_passes_equivariant_and_fails_negative_controls():
    G = Cyclic(4)
    ft = FieldType(G, [regular_rep(G), irrep(G, 1)])
    x = np.random.default_rng(0).standard_normal((2, 7, 7, ft.size)).astype(np.float32)
    errs = assert_field_equivariant(_rotate_channels(ft), x, ft, ft)
    assert max(errs.values()) < 1e-6
    # negative controls: a map that mixes channels across fields, and a wrong output type
    w = np.random.default_rng(1).standard_normal((ft.size, ft.size))
    with pytest.raises(AssertionError, match="not C4-equivariant"):
        assert_field_equivariant(lambda z: z @ w, x, ft, ft)
    wrong = FieldType(G, [regular_rep(G), trivial_rep(G), trivial_rep(G)])
    assert field_equivariance_error(lambda z: z, x, ft, wrong) > 0.5
    # spatial means of norms are invariant
    inv = lambda z: np.sqrt((np.asarray(z) ** 2).sum(-1)).mean((1, 2))
    assert max(field_equivariance_errors(inv, x, ft).values()) < 1e-6


def test_harness_off_grid_needs_explicit_tolerance_and_group_for_so2():
    ft = FieldType(SO2(), [irrep(SO2(), 1)])
    x = np.zeros((1, 9, 9, 2), np.float32)
    with pytest.raises(ValueError, match=r"`group` is required for SO2 fields"):
        field_equivariance_errors(lambda z: z, x, ft, ft)
    with pytest.raises(ValueError, match=r"pass `off_grid_rtol`"):
        assert_field_equivariant(lambda z: z, x, ft, ft, group=Cyclic(8))
    ft2 = FieldType(O2(), [irrep(O2(), 1, 1)])
    errs = field_equivariance_errors(lambda z: z, np.ones((1, 9, 9, 2), np.float32), ft2, ft2, group=Dihedral(4))
    assert set(errs) == set(range(8))
