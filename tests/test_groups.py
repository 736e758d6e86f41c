import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilib.groups import Cyclic, Dihedral, Group, Trivial

GROUPS = [Trivial(), Cyclic(2), Cyclic(4), Cyclic(8), Dihedral(1), Dihedral(2), Dihedral(4), Dihedral(8)]


@pytest.mark.parametrize("G", GROUPS, ids=str)
def test_group_axioms(G):
    t = G.cayley_table()
    n = G.order
    assert t.shape == (n, n)
    # identity, inverses, associativity, each row a permutation (Latin square)
    assert (t[0] == np.arange(n)).all() and (t[:, 0] == np.arange(n)).all()
    for g in range(n):
        assert sorted(t[g]) == list(range(n))
        assert G.compose(g, G.inverse(g)) == 0 == G.compose(G.inverse(g), g)
    for a, b, c in itertools.product(range(n), repeat=3):
        assert t[t[a, b], c] == t[a, t[b, c]]


@pytest.mark.parametrize("G", GROUPS, ids=str)
def test_matrices_and_regular_rep_are_homomorphisms(G):
    for a, b in itertools.product(range(G.order), repeat=2):
        ab = G.compose(a, b)
        np.testing.assert_allclose(G.matrix(a) @ G.matrix(b), G.matrix(ab), atol=1e-12)
        np.testing.assert_array_equal(G.regular_matrix(a) @ G.regular_matrix(b),
                                      G.regular_matrix(ab))
        # group-axis action composes the same way: a.(b.f) = (ab).f
        f = np.arange(G.order) * 10 + 3
        np.testing.assert_array_equal(
            G.transform_group_axis(G.transform_group_axis(f, b), a), G.transform_group_axis(f, ab))
        np.testing.assert_array_equal(G.regular_matrix(a) @ f, G.transform_group_axis(f, a))


def test_elements_order_and_names():
    D = Dihedral(4)
    assert D.order == 8 and len(D) == 8 and D.name == "D4" and repr(D) == "Dihedral(4)"
    assert D.elements[:5] == ((0, 0), (1, 0), (2, 0), (3, 0), (0, 1))
    assert D.element(3, 1) == 7 and D.rotation(7) == 3 and D.flip(7) == 1
    assert Cyclic(8).angle(1) == pytest.approx(np.pi / 4)
    assert Cyclic(4) == Cyclic(4) and hash(Cyclic(4)) == hash(Cyclic(4)) and Cyclic(4) != Dihedral(4)
    assert Trivial().order == 1 and Trivial().is_exact and not Cyclic(8).is_exact
    assert [Cyclic(8).is_grid_preserving(g) for g in range(8)] == [True, False] * 4
    with pytest.raises(ValueError, match="`n`"):
        Cyclic(0)
    with pytest.raises(ValueError, match="element index"):
        Cyclic(4).compose(0, 4)
    with pytest.raises(TypeError, match="integer index"):
        Cyclic(4).inverse(1.0)
    with pytest.raises(ValueError, match="`f`"):
        Cyclic(4).element(0, 1)


def test_rotation_is_counter_clockwise_as_displayed():
    # a dot right of the centre moves to above the centre (row index points down)
    x = np.zeros((5, 5))
    x[2, 4] = 1.0
    y = Cyclic(4).transform_image(x, 1, axes=(0, 1))
    assert y[0, 2] == 1.0 and y.sum() == 1.0
    np.testing.assert_array_equal(y, np.rot90(x))
    # the mirror flips the width axis
    np.testing.assert_array_equal(Dihedral(4).transform_image(x, 4, axes=(0, 1)), x[:, ::-1])
    # and agrees with the 2x2 matrix acting on (x right, y up) coordinates
    G = Dihedral(4)
    for g in range(G.order):
        y = G.transform_image(x, g, axes=(0, 1))
        r, c = np.argwhere(y)[0]
        np.testing.assert_allclose([c - 2, 2 - r], G.matrix(g) @ np.array([2.0, 0.0]), atol=1e-12)


@pytest.mark.parametrize("G", [Cyclic(4), Dihedral(4), Dihedral(8)], ids=str)
def test_transform_image_is_an_action(G, rng):
    x = rng.normal(size=(2, 7, 7, 3)).astype(np.float32)
    for a, b in itertools.product([g for g in range(G.order) if G.is_grid_preserving(g)], repeat=2):
        np.testing.assert_array_equal(G.transform_image(G.transform_image(x, b), a),
                                      G.transform_image(x, G.compose(a, b)))


def test_interpolated_rotation_matches_exact_and_composes(rng):
    x = rng.normal(size=(1, 9, 9, 2)).astype(np.float32)
    from equilib.functional import rotate
    np.testing.assert_allclose(rotate(x, np.pi / 2), np.rot90(x, axes=(1, 2)), atol=1e-6)
    # jit with a traced angle gives the same as a static angle
    y_static = rotate(x, 0.3)
    y_traced = jax.jit(rotate)(x, jnp.float32(0.3))
    np.testing.assert_allclose(y_static, y_traced, atol=1e-5)
    # C8 element 2 (90 degrees) is applied exactly; element 1 by interpolation, keeping the canvas
    C8 = Cyclic(8)
    np.testing.assert_array_equal(C8.transform_image(x, 2), np.rot90(x, axes=(1, 2)))
    assert C8.transform_image(x, 1).shape == x.shape


def test_non_square_rot90_swaps_axes(rng):
    x = rng.normal(size=(1, 5, 7, 1))
    assert Cyclic(4).transform_image(x, 1).shape == (1, 7, 5, 1)


def test_subgroup_elements():
    np.testing.assert_array_equal(Dihedral(8).subgroup_elements(Cyclic(4)), [0, 2, 4, 6])
    np.testing.assert_array_equal(Dihedral(4).subgroup_elements(Dihedral(2)), [0, 2, 4, 6])
    with pytest.raises(ValueError, match="not a subgroup"):
        Cyclic(4).subgroup_elements(Dihedral(4))


def test_groups_are_static_jit_arguments():
    f = jax.jit(lambda x, G: G.transform_image(x, 1), static_argnums=1)
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(f(x, Cyclic(4)), np.rot90(np.asarray(x), axes=(1, 2)))
    assert isinstance(Cyclic(4), Group)
