"""equilib.groups3d: the octahedral groups of the voxel grid, SO(3) and O(3)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from equilib import Cyclic, Dihedral, FullOctahedral, Octahedral
from equilib.groups3d import O3, SO3
from equilib.testing import ball_mask

GROUPS = [Octahedral(), FullOctahedral()]


def _by_coordinates(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(g.x)(p) = x(M^-1 p)`` voxel by voxel from the documented coordinates (the definition)."""
    d, h, w = x.shape[1:4]
    ext = np.abs(matrix) @ np.array([w, h, d])  # the output's (W, H, D) sizes: the axes permuted
    wo, ho, do = (int(round(n)) for n in ext)
    out = np.empty((x.shape[0], do, ho, wo) + x.shape[4:], x.dtype)
    for k, i, j in itertools.product(range(do), range(ho), range(wo)):
        p = np.array([j - (wo - 1) / 2, (ho - 1) / 2 - i, k - (do - 1) / 2])
        q = matrix.T @ p
        src = (int(round(q[2] + (d - 1) / 2)), int(round((h - 1) / 2 - q[1])), int(round(q[0] + (w - 1) / 2)))
        out[:, k, i, j] = x[(slice(None),) + src]
    return out


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_the_elements_form_the_group(group):
    mats = np.stack([group.matrix(g) for g in range(group.order)])
    assert group.order == len(group) == {"O": 24, "Oh": 48}[group.name]
    np.testing.assert_array_equal(mats[0], np.eye(3))
    assert len({m.tobytes() for m in mats}) == group.order  # all different
    dets = np.round(np.linalg.det(mats))
    assert (dets[:24] == 1).all() and (dets[24:] == -1).all()
    table = group.cayley_table()
    for a, b in itertools.product(range(group.order), repeat=2):
        np.testing.assert_array_equal(mats[table[a, b]], mats[a] @ mats[b])
    # a Latin square: each row and column a permutation
    assert all(sorted(row) == list(range(group.order)) for row in table)
    assert all(sorted(col) == list(range(group.order)) for col in table.T)
    for g in range(group.order):
        assert group.compose(g, group.inverse(g)) == 0
        assert group.element_from_matrix(mats[g]) == g


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_the_volume_action_is_the_documented_one_and_a_homomorphism(group):
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5, 1))  # not a cube: the axes carry their sizes
    for g in range(group.order):
        np.testing.assert_array_equal(group.transform_image(x, g), _by_coordinates(x, group.matrix(g)))
    table = group.cayley_table()
    for a, b in itertools.product(range(group.order), repeat=2):
        np.testing.assert_array_equal(group.transform_image(group.transform_image(x, b), a),
                                      group.transform_image(x, table[a, b]))


def test_a_quarter_turn_about_z_is_the_planar_one_on_every_slice():
    octa = Octahedral()
    x = np.random.default_rng(1).normal(size=(1, 3, 5, 5, 2))
    for k, g in enumerate(octa.subgroup_elements(Cyclic(4))):
        np.testing.assert_array_equal(octa.transform_image(x, int(g)), Cyclic(4).transform_image(x, k))
        np.testing.assert_array_equal(octa.transform_image(x, int(g)), np.rot90(x, k, axes=(2, 3)))
    Oh = FullOctahedral()
    for g4, g in enumerate(Oh.subgroup_elements(Dihedral(4))):
        np.testing.assert_array_equal(Oh.transform_image(x, int(g)), Dihedral(4).transform_image(x, g4))


def test_regular_action_and_jax_arrays():
    Oh = FullOctahedral()
    f = np.random.default_rng(2).normal(size=(2, 3, 3, 3, 2, 48)).astype(np.float32)
    table = Oh.cayley_table()
    for a, b in [(1, 2), (5, 30), (47, 24)]:
        np.testing.assert_array_equal(Oh.transform_regular(Oh.transform_regular(f, b), a),
                                      Oh.transform_regular(f, table[a, b]))
        np.testing.assert_array_equal(np.asarray(Oh.transform_regular(jnp.asarray(f), a)), Oh.transform_regular(f, a))
    # rho(g) e_h = e_{g o h}
    for g in (3, 29):
        np.testing.assert_array_equal(Oh.regular_matrix(g) @ np.eye(48)[7], np.eye(48)[table[g, 7]])


def test_subgroups_and_bad_arguments():
    octa, Oh = Octahedral(), FullOctahedral()
    np.testing.assert_array_equal(Oh.subgroup_elements(octa), np.arange(24))
    with pytest.raises(ValueError, match=r"`sub` \(D4\) is not a subgroup of O"):
        octa.subgroup_elements(Dihedral(4))
    with pytest.raises(ValueError, match=r"`sub` \(C8\) is not a subgroup of O"):
        octa.subgroup_elements(Cyclic(8))
    with pytest.raises(ValueError, match=r"`sub` \(Oh\) is not a subgroup of O"):
        octa.subgroup_elements(Oh)
    with pytest.raises(ValueError, match=r"element index must be in \[0, 24\) for O, got 24"):
        octa.matrix(24)
    with pytest.raises(TypeError, match="a group element is an integer index, got float"):
        octa.matrix(1.0)
    with pytest.raises(ValueError, match="`matrix` is not an element of O"):
        octa.element_from_matrix(-np.eye(3))
    with pytest.raises(ValueError, match=r"`matrix` must be 3x3, got shape \(2, 2\)"):
        octa.element_from_matrix(np.eye(2))
    with pytest.raises(ValueError, match="`axes` must name three axes"):
        octa.transform_image(np.zeros((2, 3, 3, 3)), 1, axes=(1, 2))
    with pytest.raises(ValueError, match=r"the group axis .* has size 4, expected \|O\| = 24"):
        octa.transform_group_axis(np.zeros((2, 4)), 1)
    assert (repr(octa), repr(Oh), str(Oh)) == ("Octahedral()", "FullOctahedral()", "Oh")
    assert octa == Octahedral() and octa != Oh


def test_so3_elements_and_transforms():
    G = SO3()
    quarter = G.element(axis=(0, 0, 1), angle=np.pi / 2)
    np.testing.assert_allclose(quarter @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(G.element(quaternion=(np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4))), quarter, atol=1e-12)
    rots = G.random_elements(5, seed=3)
    np.testing.assert_array_equal(rots, G.random_elements(5, seed=3))
    np.testing.assert_allclose(np.linalg.det(rots), 1.0)
    assert (np.round(np.linalg.det(O3().random_elements(20, seed=3))) == -1).any()
    # a signed permutation is applied exactly; a rotation a hair away from it by interpolation
    x = np.random.default_rng(4).normal(size=(1, 5, 5, 5, 1)).astype(np.float32)
    exact = Octahedral().transform_image(x, Octahedral().element_from_matrix(np.rint(quarter)))
    np.testing.assert_array_equal(np.asarray(G.transform_image(x, quarter)), exact)
    near = G.element(axis=(0, 0, 1), angle=np.pi / 2 + 1e-6)
    np.testing.assert_allclose(np.asarray(G.transform_image(x, near)), exact, atol=1e-4)
    # negative control: the interpolated path is not a no-op
    assert not np.allclose(np.asarray(G.transform_image(x, rots[0])), x, atol=0.1)
    for kwargs, match in [({}, "give exactly one of"), ({"matrix": np.eye(3), "axis": (0, 0, 1), "angle": 1.0},
                                                         "give exactly one of"),
                          ({"matrix": -np.eye(3)}, "not an element of SO3"),
                          ({"matrix": np.ones((3, 3))}, "`matrix`")]:
        with pytest.raises(ValueError, match=match):
            G.element(**kwargs)


def test_ball_mask():
    m = ball_mask(7, 7, 7, fraction=0.5)
    # radius 1.5: the centre, 6 voxels at distance 1, 12 at sqrt(2)
    assert m[3, 3, 3] == 1 and m[3, 3, 5] == 0 and m[3, 3, 4] == 1 and m.sum() == 19
    with pytest.raises(ValueError, match="`fraction` must be in"):
        ball_mask(3, 3, 3, fraction=0)
