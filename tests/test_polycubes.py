"""equilib.data.polycubes: the 3D-Tetris volumes (shapes, determinism, balance, the chiral pair,
the rendering under the grid rotations, bad arguments)."""

import itertools

import numpy as np
import pytest

from equilib import FullOctahedral, Octahedral
from equilib.data import CHIRAL_PAIR, POLYCUBE_SHAPES, polycubes
from equilib.groups3d import SO3

ROTATIONS = [np.rint(Octahedral().matrix(g)).astype(int) for g in range(24)]
MIRROR_Y = np.diag([1, -1, 1])


def _canonical(cubes) -> frozenset:
    """A set of cube coordinates up to translation."""
    c = np.asarray(cubes, dtype=int)
    return frozenset(map(tuple, c - c.min(axis=0)))


def _same_up_to_rotation(a, b) -> bool:
    return any(_canonical(np.asarray(a) @ r.T) == _canonical(b) for r in ROTATIONS)


def test_shapes_dtypes_balance_and_determinism():
    x, y = polycubes(50, seed=3)
    assert x.shape == (50, 9, 9, 9, 1) and x.dtype == np.float32 and y.shape == (50,) and y.dtype == np.int32
    assert sorted(set(y.tolist())) == list(range(8)) and np.bincount(y).max() - np.bincount(y).min() <= 1
    assert 0.0 <= x.min() and x.max() <= 1.0 + 1e-6
    # each volume holds four cubes of edge s in [1, 1.5]: its mass is 4 s^3, nothing cut off
    mass = x.sum(axis=(1, 2, 3, 4))
    assert np.all(mass >= 4 - 1e-4) and np.all(mass <= 4 * 1.5**3 + 1e-4)
    x2, y2 = polycubes(50, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = polycubes(50, seed=4)
    assert not np.array_equal(x, x3)
    # noise and orientation change the voxels, not the labels
    xn, yn = polycubes(50, seed=3, noise=0.1)
    assert np.array_equal(y, yn) and 0.05 < float(np.std(xn - x)) < 0.15
    xs, ys = polycubes(16, size=13, seed=0, scale_range=(2.0, 2.5))
    assert xs.shape == (16, 13, 13, 13, 1) and np.all(xs.sum(axis=(1, 2, 3, 4)) >= 4 * 8 - 1e-3)


def test_every_shape_is_four_face_joined_cubes_and_all_eight_differ():
    shapes = list(POLYCUBE_SHAPES.values())
    assert len(shapes) == 8 and len(POLYCUBE_SHAPES) == 8
    for cubes in shapes:
        c = np.asarray(cubes)
        assert len(_canonical(c)) == 4
        # connected through faces: every cube touches another, and the adjacency graph is connected
        adjacent = {(i, j) for i, j in itertools.permutations(range(4), 2) if np.abs(c[i] - c[j]).sum() == 1}
        reached, frontier = {0}, [0]
        while frontier:
            i = frontier.pop()
            for j in range(4):
                if (i, j) in adjacent and j not in reached:
                    reached.add(j)
                    frontier.append(j)
        assert reached == {0, 1, 2, 3}
    for a, b in itertools.combinations(shapes, 2):
        assert not _same_up_to_rotation(a, b)


def test_the_chiral_pair_are_mirror_images_and_the_others_are_achiral():
    shapes = list(POLYCUBE_SHAPES.values())
    left, right = (shapes[c] for c in CHIRAL_PAIR)
    assert list(POLYCUBE_SHAPES)[CHIRAL_PAIR[0]] == "twist (left)"
    # a reflection maps one onto the other ...
    assert _canonical(np.asarray(left) @ MIRROR_Y) == _canonical(right)
    # ... no rotation does (the 24 rotations of the cube are all the rotations between polycubes)
    assert not _same_up_to_rotation(left, right)
    # every reflection of the cube maps each onto the other (a reflection is a rotation after the mirror)
    full = FullOctahedral()
    for g in range(24, 48):
        m = np.rint(full.matrix(g)).astype(int)
        assert _same_up_to_rotation(np.asarray(left) @ m.T, right)
    for i, cubes in enumerate(shapes):
        if i not in CHIRAL_PAIR:  # achiral: its mirror image is itself, turned
            assert _same_up_to_rotation(np.asarray(cubes) @ MIRROR_Y, cubes)

    def handedness(cubes):  # the sign of det(d1, d2, d3) along the path of cubes
        c = np.asarray(cubes)
        degree = [sum(np.abs(c[i] - c[j]).sum() == 1 for j in range(4)) for i in range(4)]
        path, rest = [int(np.argmin(degree))], set(range(4)) - {int(np.argmin(degree))}
        while rest:
            nxt = next(j for j in rest if np.abs(c[path[-1]] - c[j]).sum() == 1)
            path.append(nxt)
            rest.remove(nxt)
        return int(round(np.linalg.det(np.diff(c[path], axis=0))))

    assert (handedness(left), handedness(right)) == (-1, 1)


def test_octahedral_orientation_turns_the_same_shapes_and_mirrors_swap_the_pair():
    up, y = polycubes(40, seed=1)
    turned, y2 = polycubes(40, seed=1, orientation="octahedral")
    assert np.array_equal(y, y2)
    # each turned volume is its upright one turned by one of the 24 grid rotations (exact rendering)
    octa = Octahedral()
    errors = np.array([[np.abs(octa.transform_image(up[i:i + 1], g) - turned[i:i + 1]).max() for g in range(24)]
                       for i in range(len(up))])
    assert np.all(errors.min(axis=1) < 1e-5) and len(set(errors.argmin(axis=1).tolist())) > 10
    # the mirror y -> -y of an upright left twist is no rotation of the upright one (and not the same volume)
    left = np.flatnonzero(y == CHIRAL_PAIR[0])[0]
    mirrored = up[left:left + 1, :, ::-1]
    assert min(np.abs(octa.transform_image(up[left:left + 1], g) - mirrored).max() for g in range(24)) > 0.1


def test_random_orientation_keeps_labels_and_mass():
    up, y = polycubes(24, seed=2)
    turned, y2 = polycubes(24, seed=2, orientation="random")
    assert np.array_equal(y, y2) and turned.shape == up.shape
    mass, turned_mass = up.sum(axis=(1, 2, 3, 4)), turned.sum(axis=(1, 2, 3, 4))
    assert np.all(np.abs(turned_mass / mass - 1) < 0.08)
    assert np.abs(turned - up).max() > 0.2  # turned, not upright
    # explicit matrices render through the same sampled coverage (4^3 points per voxel) for every
    # pose: a grid rotation gives exactly the grid transform of the identity's volumes
    octa, sampled = Octahedral(), polycubes(24, seed=2, orientation=np.eye(3))[0]
    assert 0.05 < np.abs(sampled - up).max() < 0.3  # the sampled coverage is not the exact one
    for g in (5, 17):
        np.testing.assert_array_equal(polycubes(24, seed=2, orientation=octa.matrix(g))[0],
                                      octa.transform_image(sampled, g, axes=(1, 2, 3)))
    per_volume = SO3().random_elements(24, seed=3)
    a, _ = polycubes(24, seed=2, orientation=per_volume)
    assert a.shape == up.shape and np.abs(a - up).max() > 0.2


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "`n` must be an integer >= 1, got 0"),
    ({"n": 2.0}, "`n` must be an integer"),
    ({"size": 2}, "`size` must be an integer >= 3, got 2"),
    ({"seed": -1}, "`seed` must be an integer >= 0, got -1"),
    ({"noise": -0.1}, "`noise` must be a finite number >= 0"),
    ({"noise": float("nan")}, "`noise` must be a finite number >= 0"),
    ({"scale_range": (1.5, 1.0)}, r"`scale_range` must satisfy 0 < low <= high"),
    ({"scale_range": 1.0}, r"`scale_range` must be a pair"),
    ({"scale_range": (1.0, 2.0)}, r"`scale_range` \(1.0, 2.0\) is too large for `size`=9"),
    ({"orientation": "sideways"}, "`orientation` must be one of"),
    ({"orientation": np.eye(2)}, r"must have shape \(3, 3\) or \(n, 3, 3\)"),
    ({"orientation": -np.eye(3)}, "must be rotations"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"n": 4, "seed": 0, **kwargs}
    n = args.pop("n")
    with pytest.raises(ValueError, match=match):
        polycubes(n, **args)
