"""Representations of C_N, D_N, SO(2), O(2) (equilib.reps), checked against escnn's matrices."""

import math
from pathlib import Path

import numpy as np
import pytest

from equilib import reps
from equilib._src.repmath import blockdiag, irrep_matrix
from equilib.groups import O2, SO2, Cyclic, Dihedral, Trivial

FIXTURES = Path(__file__).parent / "fixtures" / "escnn"
FINITE = [Trivial(), Cyclic(2), Cyclic(3), Cyclic(4), Cyclic(8), Dihedral(1), Dihedral(2), Dihedral(4),
          Dihedral(5), Dihedral(8)]


@pytest.mark.parametrize("G", FINITE, ids=str)
def test_irreps_are_orthogonal_homomorphisms_and_complete(G):
    irreps = reps.irreps(G)
    table = G.cayley_table()
    for r in irreps:
        mats = np.stack([r(g) for g in range(G.order)])
        np.testing.assert_allclose(mats[0], np.eye(r.size), atol=1e-12)
        np.testing.assert_allclose(np.einsum("gij,gkj->gik", mats, mats), np.broadcast_to(np.eye(r.size), mats.shape),
                                   atol=1e-12)
        for a in range(G.order):
            for b in range(G.order):
                np.testing.assert_allclose(r(int(table[a, b])), mats[a] @ mats[b], atol=1e-12)
    # real irreps: sum over irreps of dim^2 / (dim End) = |G|  (End = 2 for complex type)
    total = 0.0
    for r in irreps:
        chi = np.array([r.character(g) for g in range(G.order)])
        total += r.size ** 2 / round(float(chi @ chi) / G.order)
    assert total == G.order


@pytest.mark.parametrize("G", FINITE, ids=str)
def test_regular_rep_is_the_permutation_representation_and_decomposes(G):
    R = reps.regular_rep(G)
    assert R.size == G.order and R.is_permutation and R.name == "regular"
    for g in range(G.order):
        np.testing.assert_array_equal(R(g), G.regular_matrix(g))
        blocks = blockdiag([irrep_matrix(G, i, G.angle(g), G.flip(g)) for i in R.irreps])
        q = R.change_of_basis
        np.testing.assert_allclose(q @ blocks @ q.T, G.regular_matrix(g), atol=1e-12)
        assert R.character(g) == (G.order if g == 0 else 0)
    # every irrep appears (dim / dim End) times
    for r in reps.irreps(G):
        chi = np.array([r.character(g) for g in range(G.order)])
        assert R.irreps.count(r.irreps[0]) == r.size // round(float(chi @ chi) / G.order)


def test_quotient_reps():
    D8 = Dihedral(8)
    q = reps.quotient_rep(D8, Dihedral(1))  # cosets of {e, flip}: the 8 rotations' orbit
    assert q.size == 8 and q.is_permutation
    q2 = reps.quotient_rep(D8, Cyclic(8))  # D8 / C8: the sign of the flip
    assert q2.size == 2 and sorted(q2.irreps) == [(0, 0), (1, 0)]
    c = reps.quotient_rep(Cyclic(8), Cyclic(2))
    assert c.size == 4 and c.irreps == ((0, 0), (0, 2), (0, 4))  # C2 acts trivially: even frequencies
    # quotient by the trivial subgroup is the regular representation
    C4 = Cyclic(4)
    np.testing.assert_array_equal(reps.quotient_rep(C4, Trivial())(1), reps.regular_rep(C4)(1))
    # a subgroup given by element indices (the flip about another axis: rotation 1 after the flip)
    other = reps.quotient_rep(D8, [0, D8.element(1, 1)])
    assert other.size == 8 and other.is_permutation


def _rep_from_descriptor(G, desc):
    if desc == "regular":
        return reps.regular_rep(G)
    if desc == "quotient:flip":
        return reps.quotient_rep(G, Dihedral(1))
    return reps.irrep(G, *(int(v) for v in desc[6:].split(",")))


def test_matrices_equal_escnn():
    """Same ids, same matrices, same element order as escnn (irreps, regular, quotient)."""
    data = np.load(FIXTURES / "conventions.npz")
    checked = 0
    for key in data.files:
        if not key.startswith("rep_") or key.endswith("_elements"):
            continue
        _, name, desc = key.split("_", 2)
        if name in ("SO2", "O2"):
            G = SO2() if name == "SO2" else O2()
            r = _rep_from_descriptor(G, desc)
            ours = np.stack([r.at(a, int(f)) for a, f in data[f"rep_{name}_elements"]])
        else:
            G = (Cyclic if name[0] == "C" else Dihedral)(int(name[1:]))
            r = _rep_from_descriptor(G, desc)
            ours = np.stack([r(g) for g in range(G.order)])
        np.testing.assert_allclose(ours, data[key], atol=1e-12, err_msg=key)
        checked += 1
    assert checked >= 25


def test_continuous_groups():
    so2, o2 = SO2(), O2()
    assert reps.irrep(so2, 3).size == 2 and reps.irrep(so2, 0).size == 1
    a, b = 0.7, -2.1
    r = reps.irrep(so2, 2)
    np.testing.assert_allclose(r(a + b), r(a) @ r(b), atol=1e-12)
    for ident in [(0, 0), (1, 0), (1, 1), (1, 3)]:
        r = reps.irrep(o2, *ident)
        for fa in (0, 1):
            for fb in (0, 1):
                # R(a) F^fa R(b) F^fb = R(a + (-1)^fa b) F^(fa xor fb), as plane matrices
                ang = a - b if fa else a + b
                np.testing.assert_allclose(o2.matrix(ang, fa ^ fb), o2.matrix(a, fa) @ o2.matrix(b, fb), atol=1e-12)
                np.testing.assert_allclose(r.at(ang, fa ^ fb), r.at(a, fa) @ r.at(b, fb), atol=1e-12)
    bl = reps.bandlimited_regular_rep(so2, 3)
    assert bl.size == 7 and bl.irreps == ((0, 0), (0, 1), (0, 2), (0, 3))
    assert reps.bandlimited_regular_rep(o2, 2).size == 10
    assert len(reps.irreps(so2, 4)) == 5 and len(reps.irreps(o2, 2)) == 4


def test_directsum_change_of_basis_and_equality():
    G = Dihedral(4)
    s = reps.directsum(reps.irrep(G, 1, 1), reps.trivial_rep(G), reps.regular_rep(G))
    assert s.size == 11 and s.irreps[:2] == ((1, 1), (0, 0))
    for g in range(G.order):
        m = s(g)
        np.testing.assert_allclose(m[:2, :2], reps.irrep(G, 1, 1)(g))
        np.testing.assert_allclose(m[3:, 3:], G.regular_matrix(g), atol=1e-12)
    assert (reps.irrep(G, 1, 1) + reps.trivial_rep(G)).size == 3
    a = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    t = (reps.irrep(G, 1, 1) + reps.trivial_rep(G)).change_basis(a)
    for g in range(G.order):
        expected = a @ (reps.irrep(G, 1, 1) + reps.trivial_rep(G))(g) @ a.T
        np.testing.assert_allclose(t(g), expected, atol=1e-12)
    # hashable and comparable (cache keys); names are labels only
    R = reps.regular_rep(G)
    same = reps.Rep(Dihedral(4), R.irreps, R.change_of_basis, name="copy")  # equal by value
    assert same == R and hash(same) == hash(R) and same is not R
    assert reps.irrep(G, 1, 1) != reps.irrep(G, 1, 2) and len({reps.irrep(G, 1, 1), reps.irrep(G, 1, 1)}) == 1
    assert reps.irrep(G, 1, 1) != reps.irrep(Dihedral(8), 1, 1)


def test_restriction():
    D16, C16 = Dihedral(16), Cyclic(16)
    r = reps.regular_rep(D16).restrict(C16)
    assert r.group == C16 and r.size == 32 and r.is_permutation
    assert sorted(set(r.irreps)) == [(0, k) for k in range(9)]
    for k in range(16):
        np.testing.assert_allclose(r(k), reps.regular_rep(D16)(D16.element(k, 0)), atol=1e-12)
    # D_N irreps restrict to C_N irreps with the same matrices
    assert reps.irrep(D16, 1, 3).restrict(C16).irreps == ((0, 3),)
    assert reps.irrep(D16, 1, 0).restrict(C16).irreps == ((0, 0),)
    # SO(2) -> C8 (frequency 5 aliases to 3), O(2) -> SO(2), O(2) -> D4
    r = reps.irrep(SO2(), 5).restrict(Cyclic(8))
    for k in range(8):
        np.testing.assert_allclose(r(k), reps.irrep(SO2(), 5).at(2 * math.pi * k / 8), atol=1e-12)
    assert r.irreps == ((0, 3),)
    assert reps.irrep(O2(), 1, 2).restrict(SO2()).irreps == ((0, 2),)
    r = reps.bandlimited_regular_rep(O2(), 2).restrict(Dihedral(4))
    for g in range(8):
        G = Dihedral(4)
        expected = reps.bandlimited_regular_rep(O2(), 2).at(G.angle(g), G.flip(g))
        np.testing.assert_allclose(r(g), expected, atol=1e-12)


def test_errors_name_the_argument():
    C8, D8 = Cyclic(8), Dihedral(8)
    with pytest.raises(ValueError, match=r"C8 has no irrep\(5\); its irreps are irrep\(0\), .*irrep\(4\)"):
        reps.irrep(C8, 5)
    with pytest.raises(TypeError, match=r"irrep of D8 takes two indices \(j, k\), got \(1,\)"):
        reps.irrep(D8, 1)
    with pytest.raises(ValueError, match=r"SO2 has no irrep\(-1\)"):
        reps.irrep(SO2(), -1)
    with pytest.raises(ValueError, match=r"O2 has no irrep\(0, 2\); expected \(0, 0\), \(1, 0\) or \(1, k\)"):
        reps.irrep(O2(), 0, 2)
    with pytest.raises(TypeError, match="the regular representation needs a finite group"):
        reps.regular_rep(SO2())
    with pytest.raises(ValueError, match=r"`change_of_basis` must be orthogonal"):
        reps.Rep(C8, [(0, 1)], [[1.0, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"`change_of_basis` must have shape \(2, 2\).*got \(3, 3\)"):
        reps.Rep(C8, [(0, 1)], np.eye(3))
    with pytest.raises(ValueError, match=r"directsum argument 1 is a representation of D8, expected C8"):
        reps.directsum(reps.irrep(C8, 1), reps.irrep(D8, 1, 1))
    with pytest.raises(ValueError, match=r"`angle` \(30 deg\) is not a rotation of C8"):
        reps.irrep(C8, 1).at(math.pi / 6)
    with pytest.raises(ValueError, match=r"`flip` must be 0 for C8, got 1"):
        reps.irrep(C8, 1).at(0.0, 1)
    with pytest.raises(ValueError, match=r"`sub` \(elements \[0, 1\]\) is not a subgroup of C8"):
        reps.quotient_rep(C8, [0, 1])
    with pytest.raises(ValueError, match=r"`sub` \(D1\) is not a subgroup of C8"):
        reps.quotient_rep(C8, Dihedral(1))
    with pytest.raises(ValueError, match=r"`subgroup` \(D4\) is not a subgroup of SO2|not a subgroup"):
        reps.irrep(SO2(), 1).restrict(Dihedral(4))
    with pytest.raises(TypeError, match=r"`group` must be an equilib group"):
        reps.trivial_rep("C8")
    with pytest.raises(ValueError, match=r"`max_frequency` must be an integer >= 0, got -1"):
        reps.bandlimited_regular_rep(SO2(), -1)
