"""Maths of SO(3)/O(3) as plain numpy float64: rotations, real spherical harmonics, Wigner-D matrices.

The ground for steerable convolutions on voxel grids. Nothing here uses JAX; every function
returns fresh float64 arrays (the only cache holds read-only quadrature tables keyed by ``l``).

Conventions
-----------
* **Coordinates.** Points are ``(x, y, z)`` in a right-handed frame; arrays of points have the
  coordinates on their last axis.
* **Rotations** are *active* 3x3 matrices acting on column vectors, ``p -> R @ p`` (for a stack
  of row-vector points: ``points @ R.T``). A positive angle turns counterclockwise seen from the
  tip of the axis (right-hand rule): 90 degrees about ``z`` maps ``x`` to ``y``. Quaternions are
  ``(w, x, y, z)`` with ``w`` the scalar part; ``(cos(a/2), sin(a/2) * axis)`` turns by ``a``
  about ``axis``. O(3) elements are the orthogonal matrices; those with ``det = -1`` (inversion,
  mirrors) are *improper*.
* **Real spherical harmonics** ``Y_l^m``, ``m = -l..l`` (index ``l + m`` of the returned
  axis), are the textbook real basis with ``z`` as the polar axis: with ``theta`` the angle from
  ``+z`` and ``phi`` the azimuth from ``+x`` towards ``+y``, ``N = sqrt((2l+1)/(4 pi)
  (l-|m|)!/(l+|m|)!)`` and ``P_l^m`` the associated Legendre functions *without* the
  Condon-Shortley phase::

      Y_l^0  = N P_l^0(cos theta)
      Y_l^m  = sqrt(2) N P_l^m(cos theta) cos(m phi)      (m > 0)
      Y_l^-m = sqrt(2) N P_l^m(cos theta) sin(m phi)      (m > 0)

  They are orthonormal on the unit sphere (``integral Y_l^m Y_l'^m' dS = delta``) and are the
  functions tabulated as "real spherical harmonics" on Wikipedia, e.g. ``Y_2^1 = sqrt(15/pi)/2
  * x z`` and ``Y_2^2 = sqrt(15/pi)/4 * (x^2 - y^2)`` on the unit sphere.
  **l = 1 is in (y, z, x) order**: ``Y_1(p) = sqrt(3/(4 pi)) * (y, z, x) / |p|``. Libraries that
  take ``y`` as the polar axis, or keep the Condon-Shortley sign in the real functions, differ
  by a fixed signed permutation / change of basis per ``l``.
* **Wigner-D matrices** ``D^l(R)`` (real, orthogonal, ``(2l+1, 2l+1)``) are defined by
  equivariance of the harmonics::

      Y_l(R p) = D^l(R) Y_l(p)      for every point p,

  equivalently ``Y_l(R^T p) = D^l(R)^T Y_l(p)``. Then ``D^l(R1 R2) = D^l(R1) D^l(R2)`` (a
  homomorphism), ``D^l(R^T) = D^l(R)^T`` and ``D^l(I) = I``. For a function written in the basis,
  ``f = c . Y_l``, the rotated function ``f(R^-1 p)`` has coefficients ``D^l(R) c``. For ``l = 1``
  ``D^1(R) = P R P^T`` with ``P`` the permutation taking ``(x, y, z)`` to ``(y, z, x)``
  (:data:`L1_PERMUTATION`).
* **Parity.** The same definition covers improper ``R``: ``Y_l(-p) = (-1)^l Y_l(p)``, so
  ``D^l(-I) = (-1)^l I`` and ``D^l(R) = (-1)^l D^l(-R)`` for ``det R = -1`` (``-R`` is a proper
  rotation). Degree ``l`` thus carries the O(3) irrep of parity ``(-1)^l`` (even ``l``: scalar-
  like, odd ``l``: vector-like); a pseudo-tensor variant would be ``det(R) D^l(R)``.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

__all__ = [
    "L1_PERMUTATION",
    "ROTATION_ATOL",
    "check_rotation_matrix",
    "matrix_from_axis_angle",
    "matrix_from_quaternion",
    "random_rotations",
    "real_spherical_harmonics",
    "wigner_d",
]

# Entrywise tolerance on M.T @ M - I for a matrix to count as orthogonal: loose enough for a
# rotation computed in float32 (errors ~1e-7), tight enough to reject a scaled or sheared one.
ROTATION_ATOL = 1e-5

# Rows pick (y, z, x) out of (x, y, z): Y_1(p) = sqrt(3 / (4 pi)) L1_PERMUTATION @ p / |p|.
L1_PERMUTATION = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
L1_PERMUTATION.flags.writeable = False


def _check_int(name: str, value, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum``; bools and non-integers are a ``TypeError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value}")
    return int(value)


def _real_array(name: str, value, expected: str) -> np.ndarray:
    """``value`` as a finite float64 array; ``expected`` describes it for the error messages."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:  # ragged nested lists
        raise TypeError(f"`{name}` must be {expected}, got {type(value).__name__} ({err})") from None
    if arr.dtype.kind not in "iuf":  # bool, complex, strings, objects: not real coordinates
        raise TypeError(f"`{name}` must be {expected} of real numbers, got an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be {expected} of finite numbers, got {np.sum(~np.isfinite(arr))} "
                         f"non-finite entries")
    return arr


def check_rotation_matrix(name: str, m) -> np.ndarray:
    """``m`` as a float64 3x3 orthogonal matrix (an element of O(3)), or an error naming ``name``.

    Proper rotations (``det = +1``) and improper ones (``det = -1``) both pass; the matrix is
    returned as given (converted to float64), not re-orthogonalised.

    Args:
        name: the argument's name, for the error message.
        m: array-like of shape ``(3, 3)`` with ``m.T @ m = I`` within :data:`ROTATION_ATOL`
            (entrywise).

    Returns:
        ``m`` as a float64 array of shape ``(3, 3)``.

    Raises:
        TypeError: ``m`` is not an array of real numbers.
        ValueError: ``m`` is not 3x3, has non-finite entries or is not orthogonal (the message
            gives the largest entry of ``|m.T @ m - I|`` and the determinant).

    Example:
        >>> check_rotation_matrix("rotation", np.diag([1, -1, 1])).dtype
        dtype('float64')
        >>> check_rotation_matrix("rotation", 2 * np.eye(3))
        Traceback (most recent call last):
        ...
        ValueError: `rotation` must be an orthogonal 3x3 matrix (...), got one with max |m.T @ m - I| = 3 (det = 8)
    """
    expected = "an orthogonal 3x3 matrix (m.T @ m = I, |det| = 1)"
    arr = _real_array(name, m, expected)
    if arr.shape != (3, 3):
        raise ValueError(f"`{name}` must be {expected}, got an array of shape {arr.shape}")
    err = float(np.max(np.abs(arr.T @ arr - np.eye(3))))
    if err > ROTATION_ATOL:
        raise ValueError(f"`{name}` must be an orthogonal 3x3 matrix (m.T @ m = I within {ROTATION_ATOL:g}, "
                         f"|det| = 1), got one with max |m.T @ m - I| = {err:.3g} (det = {np.linalg.det(arr):.6g})")
    return arr


def _matrices_from_unit_quaternions(q: np.ndarray) -> np.ndarray:
    """``(..., 4)`` unit quaternions ``(w, x, y, z)`` -> ``(..., 3, 3)`` rotation matrices."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def matrix_from_quaternion(q) -> np.ndarray:
    """The rotation matrix of the quaternion ``q = (w, x, y, z)`` (normalised here).

    ``q`` and ``-q`` give the same matrix; ``(cos(a/2), sin(a/2) * u)`` is the rotation by ``a``
    about the unit axis ``u``, as :func:`matrix_from_axis_angle` ``(u, a)``.

    Args:
        q: array-like of 4 real numbers ``(w, x, y, z)``, ``w`` the scalar part; any nonzero norm.

    Returns:
        float64 array of shape ``(3, 3)``, a proper rotation (``det = +1``).

    Raises:
        TypeError: ``q`` is not real.
        ValueError: ``q`` does not have 4 entries, is not finite or is zero.

    Example:
        >>> r = matrix_from_quaternion([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])  # 90 deg about z
        >>> np.round(r @ [1.0, 0.0, 0.0], 12)  # x -> y
        array([0., 1., 0.])
    """
    expected = "a quaternion (w, x, y, z) of 4 real numbers, not all zero"
    arr = _real_array("q", q, expected)
    if arr.shape != (4,):
        raise ValueError(f"`q` must be {expected}, got an array of shape {arr.shape}")
    norm = float(np.linalg.norm(arr))
    if norm == 0.0:
        raise ValueError(f"`q` must be {expected}, got the zero quaternion")
    return _matrices_from_unit_quaternions(arr / norm)


def matrix_from_axis_angle(axis, angle) -> np.ndarray:
    """The rotation by ``angle`` radians about ``axis`` (right-hand rule), by Rodrigues' formula.

    Args:
        axis: array-like of 3 real numbers, any nonzero length (normalised here).
        angle: real scalar, in radians; positive turns counterclockwise seen from the tip of
            ``axis``.

    Returns:
        float64 array of shape ``(3, 3)``, a proper rotation.

    Raises:
        TypeError: ``axis`` or ``angle`` is not real.
        ValueError: ``axis`` is not a nonzero 3-vector, ``angle`` not a finite scalar.

    Example:
        >>> r = matrix_from_axis_angle([0, 0, 1], np.pi / 2)
        >>> np.round(r @ [1.0, 0.0, 0.0], 12)  # x -> y
        array([0., 1., 0.])
    """
    axis_arr = _real_array("axis", axis, "a nonzero 3-vector")
    if axis_arr.shape != (3,):
        raise ValueError(f"`axis` must be a nonzero 3-vector, got an array of shape {axis_arr.shape}")
    norm = float(np.linalg.norm(axis_arr))
    if norm == 0.0:
        raise ValueError("`axis` must be a nonzero 3-vector, got the zero vector")
    angle_arr = _real_array("angle", angle, "a real scalar (radians)")
    if angle_arr.shape != ():
        raise ValueError(f"`angle` must be a real scalar (radians), got an array of shape {angle_arr.shape}")
    ux, uy, uz = axis_arr / norm
    k = np.array([[0.0, -uz, uy], [uz, 0.0, -ux], [-uy, ux, 0.0]])  # k @ p = u x p
    a = float(angle_arr)
    return np.eye(3) + math.sin(a) * k + (1.0 - math.cos(a)) * (k @ k)


def random_rotations(n: int, seed: int) -> np.ndarray:
    """``n`` rotations drawn uniformly (Haar measure) from SO(3), reproducibly for ``seed``.

    A quaternion with independent standard normal entries points in a uniformly random
    direction of the 3-sphere, and unit quaternions cover SO(3) twice with the Haar measure.

    Args:
        n: number of rotations, an integer ``>= 0``.
        seed: seed of ``numpy.random.default_rng``, an integer ``>= 0``.

    Returns:
        float64 array of shape ``(n, 3, 3)`` of proper rotations.

    Raises:
        TypeError: ``n`` or ``seed`` is not an integer.
        ValueError: ``n`` or ``seed`` is negative.

    Example:
        >>> rs = random_rotations(4, seed=0)
        >>> rs.shape, bool(np.allclose(np.linalg.det(rs), 1.0))
        ((4, 3, 3), True)
    """
    n = _check_int("n", n, 0)
    seed = _check_int("seed", seed, 0)
    q = np.random.default_rng(seed).standard_normal((n, 4))
    # a draw of norm 0 has probability 0; the floor only keeps the division defined
    q /= np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), np.finfo(np.float64).tiny)
    return _matrices_from_unit_quaternions(q)


def real_spherical_harmonics(l: int, points) -> np.ndarray:  # noqa: E741 (l is the standard name)
    """The real spherical harmonics ``Y_l^m(p / |p|)``, ``m = -l..l``, at each point.

    See the module docstring for the basis (``l = 1`` is ``sqrt(3 / (4 pi)) (y, z, x)``). The
    associated Legendre factors come from the stable three-term recurrence of the fully
    normalised functions, with the ``sin(theta)^m`` factor carried by ``(x + i y)^m``, so the
    values are accurate (to ~1e-14 relative) far beyond ``l = 8`` and need no trigonometry.

    Args:
        l: degree, an integer ``>= 0``.
        points: array-like of shape ``(..., 3)`` (typically ``(N, 3)``), ``(x, y, z)`` on the last
            axis; need not be unit vectors. At ``p = 0`` the direction is undefined: the result
            is the constant ``Y_0 = 1 / sqrt(4 pi)`` for ``l = 0`` and zeros for ``l > 0``.

    Returns:
        float64 array of shape ``(..., 2l + 1)``; entry ``l + m`` is ``Y_l^m``.

    Raises:
        TypeError: ``l`` is not an integer or ``points`` is not real.
        ValueError: ``l < 0``, ``points`` has no last axis of size 3 or non-finite entries.

    Example:
        >>> y1 = real_spherical_harmonics(1, [[2.0, 0.0, 0.0]])  # (y, z, x) order
        >>> np.round(y1 / np.sqrt(3 / (4 * np.pi)), 12)
        array([[0., 0., 1.]])
    """
    l = _check_int("l", l, 0)  # noqa: E741
    p = _real_array("points", points, "an array of shape (..., 3)")
    if p.ndim == 0 or p.shape[-1] != 3:
        raise ValueError(f"`points` must be an array of shape (..., 3), got an array of shape {p.shape}")
    r = np.linalg.norm(p, axis=-1)
    u = p / np.where(r > 0, r, 1.0)[..., None]
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    out = np.empty(p.shape[:-1] + (2 * l + 1,))
    xy_power = np.ones(x.shape, dtype=np.complex128)  # (x + i y)^m = sin(theta)^m e^{i m phi}
    q_mm = 1.0 / math.sqrt(4.0 * math.pi)  # normalised P_m^m / sin(theta)^m, a constant
    for m in range(l + 1):
        if m > 0:
            q_mm *= math.sqrt((2 * m + 1) / (2 * m))
            xy_power = xy_power * (x + 1j * y)
        # climb the degree from m to l: q_d = a_d (z q_{d-1} - b_d q_{d-2}), both normalised
        q_prev, q = np.zeros_like(z), np.full_like(z, q_mm)
        for d in range(m + 1, l + 1):
            a = math.sqrt((4 * d * d - 1) / (d * d - m * m))
            b = math.sqrt(((d - 1) ** 2 - m * m) / (4 * (d - 1) ** 2 - 1))
            q_prev, q = q, a * (z * q - b * q_prev)
        if m == 0:
            out[..., l] = q
        else:
            out[..., l + m] = math.sqrt(2.0) * q * xy_power.real
            out[..., l - m] = math.sqrt(2.0) * q * xy_power.imag
    if l > 0:
        out[r == 0] = 0.0  # no direction at the origin; only the constant l = 0 harmonic is defined there
    return out


@functools.cache
def _quadrature(l: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: E741
    """Points ``(N, 3)`` and ``w_i Y_l(p_i)`` ``(N, 2l+1)`` of a sphere quadrature exact to degree ``2l``.

    Gauss-Legendre in ``z`` with ``l + 1`` nodes (exact for polynomials of degree ``2l + 1``)
    times ``2l + 1`` equally spaced azimuths (exact for frequencies ``|k| <= 2l``) integrates
    every product ``Y_l^m(R p) Y_l^n(p)`` (degree ``2l``) exactly, so the matrix of these
    integrals is ``D^l(R)`` to rounding, for any ``l`` and any orthogonal ``R``. Read-only arrays:
    the cache must not be written through.
    """
    z, wz = np.polynomial.legendre.leggauss(l + 1)
    n_phi = 2 * l + 1
    phi = 2.0 * np.pi * np.arange(n_phi) / n_phi
    s = np.sqrt(1.0 - z * z)
    points = np.stack([np.outer(s, np.cos(phi)), np.outer(s, np.sin(phi)), np.repeat(z[:, None], n_phi, 1)], -1)
    points = points.reshape(-1, 3)
    weights = np.repeat(wz, n_phi) * (2.0 * np.pi / n_phi)
    weighted = weights[:, None] * real_spherical_harmonics(l, points)
    points.flags.writeable = False
    weighted.flags.writeable = False
    return points, weighted


def wigner_d(l: int, rotation) -> np.ndarray:  # noqa: E741
    """The real Wigner-D matrix ``D^l(R)``: ``Y_l(R p) = D^l(R) Y_l(p)`` for every point ``p``.

    ``D^l`` is a homomorphism of O(3) (``D^l(R1 R2) = D^l(R1) D^l(R2)``), orthogonal, with
    ``D^l(-I) = (-1)^l I``; ``D^1(R) = P R P^T`` for ``P`` = :data:`L1_PERMUTATION`. It is computed
    as the exact quadrature of ``Y_l(R p) Y_l(p)^T`` over the sphere. ``rotation`` is first
    snapped to the nearest orthogonal matrix (``U V^T`` of its SVD), so that a float32-accurate
    rotation still gives an orthogonal ``D`` (to ~1e-15).

    Args:
        l: degree, an integer ``>= 0``.
        rotation: array-like ``(3, 3)`` orthogonal matrix (see :func:`check_rotation_matrix`);
            ``det = -1`` (improper, O(3)) is allowed.

    Returns:
        float64 array of shape ``(2l + 1, 2l + 1)``.

    Raises:
        TypeError: ``l`` is not an integer or ``rotation`` is not real.
        ValueError: ``l < 0`` or ``rotation`` is not an orthogonal 3x3 matrix.

    Example:
        >>> r = matrix_from_axis_angle([1.0, 2.0, 3.0], 0.7)
        >>> p = np.array([[0.3, -1.2, 0.5]])
        >>> bool(np.allclose(real_spherical_harmonics(2, p @ r.T), real_spherical_harmonics(2, p) @ wigner_d(2, r).T))
        True
    """
    l = _check_int("l", l, 0)  # noqa: E741
    r = check_rotation_matrix("rotation", rotation)
    u, _, vt = np.linalg.svd(r)
    r = u @ vt
    points, weighted = _quadrature(l)
    # D[m, n] = sum_i w_i Y_l^m(R p_i) Y_l^n(p_i)
    return real_spherical_harmonics(l, points @ r.T).T @ weighted
