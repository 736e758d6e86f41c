"""equilib._src.so3: real spherical harmonics, Wigner-D matrices and rotation helpers (numpy float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from equilib._src.so3 import (
    L1_PERMUTATION,
    check_rotation_matrix,
    matrix_from_axis_angle,
    matrix_from_quaternion,
    random_rotations,
    real_spherical_harmonics,
    wigner_d,
)

L_MAX = 8
TOL = 1e-10


def _points(n: int, seed: int) -> np.ndarray:
    """Points of varied lengths (not unit vectors), away from the origin."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)) * rng.uniform(0.5, 3.0, (n, 1))


def _reference_harmonics(l: int, points: np.ndarray) -> np.ndarray:  # noqa: E741
    """The textbook formula with factorials, angles and numpy's Legendre series: an independent check."""
    r = np.linalg.norm(points, axis=-1)
    z = points[:, 2] / r
    theta_sin = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    phi = np.arctan2(points[:, 1], points[:, 0])
    out = np.empty((len(points), 2 * l + 1))
    for m in range(l + 1):
        # P_l^m without the Condon-Shortley phase: (1 - z^2)^(m/2) d^m/dz^m P_l(z)
        legendre = np.polynomial.legendre.Legendre.basis(l).deriv(m)(z) * theta_sin**m
        norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
        if m == 0:
            out[:, l] = norm * legendre
        else:
            out[:, l + m] = math.sqrt(2) * norm * legendre * np.cos(m * phi)
            out[:, l - m] = math.sqrt(2) * norm * legendre * np.sin(m * phi)
    return out


# --- spherical harmonics -----------------------------------------------------------------------
def test_harmonics_match_the_closed_forms_for_low_degrees():
    p = _points(20, seed=1)
    x, y, z = (p / np.linalg.norm(p, axis=-1, keepdims=True)).T
    c0, c1, c2 = 0.5 / math.sqrt(math.pi), math.sqrt(3 / (4 * math.pi)), 0.5 * math.sqrt(15 / math.pi)
    np.testing.assert_allclose(real_spherical_harmonics(0, p), np.full((20, 1), c0), atol=1e-14)
    np.testing.assert_allclose(real_spherical_harmonics(1, p), c1 * np.stack([y, z, x], -1), atol=1e-14)
    y2 = np.stack([c2 * x * y, c2 * y * z, 0.25 * math.sqrt(5 / math.pi) * (3 * z * z - 1), c2 * x * z,
                   0.5 * c2 * (x * x - y * y)], -1)
    np.testing.assert_allclose(real_spherical_harmonics(2, p), y2, atol=1e-14)


@pytest.mark.parametrize("l", range(L_MAX + 1))
def test_harmonics_match_the_factorial_formula(l):  # noqa: E741
    p = _points(50, seed=2)
    np.testing.assert_allclose(real_spherical_harmonics(l, p), _reference_harmonics(l, p), atol=1e-12)


def test_harmonics_are_orthonormal_on_the_sphere():
    # Gauss-Legendre in cos(theta) x uniform phi, exact for the degree-12 products of l <= 6
    z, wz = np.polynomial.legendre.leggauss(16)
    phi = 2 * np.pi * np.arange(32) / 32
    s = np.sqrt(1 - z * z)
    pts = np.stack([np.outer(s, np.cos(phi)), np.outer(s, np.sin(phi)), np.repeat(z[:, None], 32, 1)], -1)
    weights = np.repeat(wz, 32) * (2 * np.pi / 32)
    ys = np.concatenate([real_spherical_harmonics(degree, pts.reshape(-1, 3)) for degree in range(7)], axis=1)
    gram = ys.T @ (weights[:, None] * ys)
    np.testing.assert_allclose(gram, np.eye(49), atol=1e-12)


def test_harmonics_ignore_the_length_and_take_any_leading_shape():
    p = _points(6, seed=3)
    np.testing.assert_allclose(real_spherical_harmonics(4, 7.5 * p), real_spherical_harmonics(4, p), atol=1e-14)
    grid = p.reshape(2, 3, 3)
    assert real_spherical_harmonics(3, grid).shape == (2, 3, 7)
    np.testing.assert_allclose(real_spherical_harmonics(3, grid).reshape(6, 7), real_spherical_harmonics(3, p))
    assert real_spherical_harmonics(2, [0.0, 0.0, 1.0]).shape == (5,)


def test_harmonics_at_the_origin():
    origin = np.zeros((1, 3))
    np.testing.assert_array_equal(real_spherical_harmonics(0, origin), [[0.5 / math.sqrt(math.pi)]])
    for l in range(1, 5):  # noqa: E741
        np.testing.assert_array_equal(real_spherical_harmonics(l, origin), np.zeros((1, 2 * l + 1)))


def test_harmonics_are_accurate_at_the_poles_and_high_degree():
    poles = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -2.0]])
    for l in range(L_MAX + 1):  # noqa: E741
        expected = np.zeros((2, 2 * l + 1))
        expected[:, l] = math.sqrt((2 * l + 1) / (4 * math.pi)) * np.array([1.0, (-1.0) ** l])
        np.testing.assert_allclose(real_spherical_harmonics(l, poles), expected, atol=1e-13)
    # normalised on average: sum_m Y_l^m(p)^2 = (2l + 1) / (4 pi) at every point (addition theorem)
    y20 = real_spherical_harmonics(20, _points(30, seed=4))
    np.testing.assert_allclose(np.sum(y20**2, axis=1), 41 / (4 * math.pi), rtol=1e-12)


# --- Wigner-D ----------------------------------------------------------------------------------
@pytest.mark.parametrize("l", range(L_MAX + 1))
def test_wigner_d_rotates_the_harmonics(l):  # noqa: E741
    p = _points(40, seed=5)
    for r in random_rotations(3, seed=l):
        np.testing.assert_allclose(real_spherical_harmonics(l, p @ r.T),
                                   real_spherical_harmonics(l, p) @ wigner_d(l, r).T, atol=TOL)


@pytest.mark.parametrize("l", range(L_MAX + 1))
def test_wigner_d_is_an_orthogonal_homomorphism(l):  # noqa: E741
    r1, r2 = random_rotations(2, seed=100 + l)
    d1, d2 = wigner_d(l, r1), wigner_d(l, r2)
    np.testing.assert_allclose(wigner_d(l, r1 @ r2), d1 @ d2, atol=TOL)
    np.testing.assert_allclose(d1.T @ d1, np.eye(2 * l + 1), atol=TOL)
    np.testing.assert_allclose(wigner_d(l, r1.T), d1.T, atol=TOL)
    np.testing.assert_allclose(wigner_d(l, np.eye(3)), np.eye(2 * l + 1), atol=TOL)


def test_wigner_d_of_degree_one_is_the_permuted_rotation():
    for r in random_rotations(5, seed=6):
        np.testing.assert_allclose(wigner_d(1, r), L1_PERMUTATION @ r @ L1_PERMUTATION.T, atol=TOL)
    np.testing.assert_allclose(wigner_d(0, random_rotations(1, seed=7)[0]), [[1.0]], atol=TOL)


@pytest.mark.parametrize("l", range(L_MAX + 1))
def test_wigner_d_parity_and_improper_rotations(l):  # noqa: E741
    np.testing.assert_allclose(wigner_d(l, -np.eye(3)), (-1) ** l * np.eye(2 * l + 1), atol=TOL)
    r = random_rotations(1, seed=200 + l)[0]
    mirror = r @ np.diag([1.0, 1.0, -1.0])  # det -1
    p = _points(30, seed=8)
    d = wigner_d(l, mirror)
    np.testing.assert_allclose(real_spherical_harmonics(l, p @ mirror.T), real_spherical_harmonics(l, p) @ d.T,
                               atol=TOL)
    np.testing.assert_allclose(d, (-1) ** l * wigner_d(l, -mirror), atol=TOL)
    np.testing.assert_allclose(wigner_d(l, mirror @ r), d @ wigner_d(l, r), atol=TOL)


def test_wigner_d_snaps_a_float32_rotation_to_an_orthogonal_matrix():
    r32 = random_rotations(1, seed=9)[0].astype(np.float32)
    d = wigner_d(3, r32)
    np.testing.assert_allclose(d.T @ d, np.eye(7), atol=1e-13)
    np.testing.assert_allclose(d, wigner_d(3, r32.astype(np.float64)), atol=1e-5)


@pytest.mark.parametrize("l", range(1, L_MAX + 1))
def test_negative_control_a_different_rotation_fails(l):  # noqa: E741
    # the equivariance check is not vacuous: D of another rotation misses by far more than TOL
    r, other = random_rotations(2, seed=300 + l)
    p = _points(40, seed=10)
    err = np.max(np.abs(real_spherical_harmonics(l, p @ r.T) - real_spherical_harmonics(l, p) @ wigner_d(l, other).T))
    assert err > 1e-2


# --- rotations ---------------------------------------------------------------------------------
def test_quaternion_and_axis_angle_agree():
    r_axis = matrix_from_axis_angle([0, 0, 1], np.pi / 2)
    r_quat = matrix_from_quaternion([math.cos(np.pi / 4), 0, 0, math.sin(np.pi / 4)])
    np.testing.assert_allclose(r_axis @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(r_quat, r_axis, atol=1e-15)
    rng = np.random.default_rng(11)
    for _ in range(5):
        axis, angle = rng.standard_normal(3), rng.uniform(-2 * np.pi, 2 * np.pi)
        unit = axis / np.linalg.norm(axis)
        q = 3.0 * np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * unit])  # not unit: normalised inside
        np.testing.assert_allclose(matrix_from_quaternion(q), matrix_from_axis_angle(axis, angle), atol=1e-14)
        np.testing.assert_allclose(matrix_from_quaternion(-q), matrix_from_quaternion(q), atol=1e-14)
        np.testing.assert_allclose(matrix_from_axis_angle(axis, angle) @ unit, unit, atol=1e-14)


def test_random_rotations_are_proper_and_reproducible():
    rs = random_rotations(50, seed=12)
    assert rs.shape == (50, 3, 3) and rs.dtype == np.float64
    np.testing.assert_allclose(np.einsum("nji,njk->nik", rs, rs), np.broadcast_to(np.eye(3), (50, 3, 3)), atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(rs), 1.0, atol=1e-14)
    np.testing.assert_array_equal(rs, random_rotations(50, seed=12))
    assert not np.allclose(rs, random_rotations(50, seed=13))
    assert random_rotations(0, seed=0).shape == (0, 3, 3)
    # uniform on SO(3): the rotated z axis is uniform on the sphere, so its mean is ~0
    many = random_rotations(4000, seed=14)
    assert np.all(np.abs(many[:, :, 2].mean(axis=0)) < 0.05)


def test_check_rotation_matrix_accepts_o3():
    mirror = np.diag([1, -1, 1])
    out = check_rotation_matrix("m", mirror)
    assert out.dtype == np.float64 and out.shape == (3, 3)
    np.testing.assert_array_equal(out, mirror)
    check_rotation_matrix("m", random_rotations(1, seed=15)[0].astype(np.float32))


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, error, match", [
    (-1, ValueError, r"`l` must be an integer >= 0, got -1"),
    (1.5, TypeError, r"`l` must be an integer >= 0, got 1\.5 of type float"),
    (True, TypeError, r"`l` must be an integer >= 0, got True of type bool"),
    ("2", TypeError, r"`l` must be an integer >= 0, got '2' of type str"),
])
def test_bad_degree(bad, error, match):
    with pytest.raises(error, match=match):
        real_spherical_harmonics(bad, np.ones((2, 3)))
    with pytest.raises(error, match=match):
        wigner_d(bad, np.eye(3))


def test_bad_points():
    with pytest.raises(ValueError, match=r"`points` must be an array of shape \(\.\.\., 3\), got an array of shape "
                                         r"\(4, 2\)"):
        real_spherical_harmonics(1, np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"`points` must be .* of finite numbers, got 1 non-finite"):
        real_spherical_harmonics(1, [[0.0, np.nan, 1.0]])
    with pytest.raises(TypeError, match=r"`points` must be .* of real numbers, got an array of dtype complex128"):
        real_spherical_harmonics(1, np.ones((2, 3), dtype=complex))
    with pytest.raises(ValueError, match=r"`points` .*got an array of shape \(\)"):
        real_spherical_harmonics(1, 1.0)


def test_bad_rotation_matrix():
    with pytest.raises(ValueError, match=r"`rotation` must be an orthogonal 3x3 matrix .*shape \(2, 2\)"):
        wigner_d(1, np.eye(2))
    with pytest.raises(ValueError, match=r"`rotation` must be an orthogonal 3x3 matrix .*max \|m\.T @ m - I\| = 0\.21 "
                                         r"\(det = 1\.331\)"):
        wigner_d(1, 1.1 * np.eye(3))
    with pytest.raises(ValueError, match=r"`my_r` must be .*got an array of shape \(3, 3, 1\)"):
        check_rotation_matrix("my_r", np.ones((3, 3, 1)))
    with pytest.raises(TypeError, match=r"`my_r` must be .* of real numbers, got an array of dtype <U1"):
        check_rotation_matrix("my_r", [["a"] * 3] * 3)


def test_bad_rotation_parameters():
    with pytest.raises(ValueError, match=r"`q` must be a quaternion \(w, x, y, z\).*got the zero quaternion"):
        matrix_from_quaternion([0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"`q` must be a quaternion .*got an array of shape \(3,\)"):
        matrix_from_quaternion([1, 0, 0])
    with pytest.raises(ValueError, match=r"`axis` must be a nonzero 3-vector, got the zero vector"):
        matrix_from_axis_angle([0, 0, 0], 1.0)
    with pytest.raises(ValueError, match=r"`axis` must be a nonzero 3-vector, got an array of shape \(2,\)"):
        matrix_from_axis_angle([0, 1], 1.0)
    with pytest.raises(ValueError, match=r"`angle` must be a real scalar \(radians\), got an array of shape \(2,\)"):
        matrix_from_axis_angle([0, 0, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"`angle` must be .* of finite numbers"):
        matrix_from_axis_angle([0, 0, 1], np.inf)
    with pytest.raises(ValueError, match=r"`n` must be an integer >= 0, got -2"):
        random_rotations(-2, seed=0)
    with pytest.raises(TypeError, match=r"`seed` must be an integer >= 0, got None of type NoneType"):
        random_rotations(3, seed=None)  # type: ignore[arg-type]
