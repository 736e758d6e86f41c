"""Kernel bases of steerable convolutions on voxel grids, solved numerically (numpy, float64).

A kernel ``K: R^3 -> R^(out x in)`` of a convolution ``out(x) = sum_p K(p) f(x + p)`` between fields
of representations ``rho_in`` and ``rho_out`` is equivariant when

    ``K(R p) = rho_out(R) K(p) rho_in(R)^T``    for every group element ``R``.

As escnn does for ``R3Conv``, the kernels are written on rings (Gaussian radial profiles at radii
``0, 1, ..., (K-1)/2``) times real spherical harmonics, ``K(p) = phi_r(|p|) sum_m Y_J^m(p) C_m``,
and for each ring and degree ``J`` the coefficients ``C`` (``(2J+1, out, in)``) must satisfy, for the
harmonics' Wigner matrices ``D^J`` (``Y_J(R p) = D^J(R) Y_J(p)``, :mod:`equilib._src.so3`),

    ``sum_m D^J(R)[m, n] C_m = rho_out(R) C_n rho_in(R)^T``   for every ``n``,

a linear system whose null space (over a set of elements that generate the group) is the basis.
Degrees are band-limited per ring (``J <= min(2r, K//2 - r + 2)``, escnn's default for
``R3Conv``: the outer rings, sampled on fewest voxels per wavelength, keep lower degrees) so that
the sampled harmonics alias little on the grid; the span is then escnn's (``tests/test_escnn_parity3d.py``). The sampled
basis is orthonormalised (over the grid) before it is returned.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from equilib._src.so3 import real_spherical_harmonics, wigner_d

__all__ = ["grid_points", "ring_profiles", "solve_intertwiners", "kernel_basis_3d"]

RepFn = Callable[[np.ndarray], np.ndarray]


def grid_points(kernel_size: int) -> np.ndarray:
    """``(K, K, K, 3)``: the ``(x, y, z)`` coordinates of the taps of a ``K^3`` kernel (voxel
    ``(d, h, w)`` at ``x = w - c``, ``y = c - h``, ``z = d - c``, ``c = (K-1)/2``; :mod:`equilib.groups3d`)."""
    c = (kernel_size - 1) / 2.0
    d, h, w = np.meshgrid(*(np.arange(kernel_size, dtype=np.float64),) * 3, indexing="ij")
    return np.stack([w - c, c - h, d - c], axis=-1)


def ring_profiles(kernel_size: int) -> list[tuple[float, np.ndarray, int]]:
    """``[(radius, profile (K, K, K), max_degree)]``: Gaussian rings at radii ``0..(K-1)//2`` (std 0.6,
    the outermost 0.4, the centre a point), each with its band limit ``min(2r, K//2 - r + 2)`` (escnn's)."""
    r = np.linalg.norm(grid_points(kernel_size), axis=-1)
    rings = list(range(0, (kernel_size - 1) // 2 + 1))
    out = []
    for j, rj in enumerate(rings):
        sigma = 0.005 if rj == 0 else (0.4 if j == len(rings) - 1 else 0.6)
        band = 0 if rj == 0 else int(min(2 * rj, kernel_size // 2 - rj + 2))
        out.append((float(rj), np.exp(-((r - rj) ** 2) / (2 * sigma**2)), band))
    return out


def solve_intertwiners(degree: int, rho_in: RepFn, rho_out: RepFn, elements: Sequence[np.ndarray],
                       in_size: int, out_size: int, tol: float = 1e-8, *,
                       matrices: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Orthonormal basis ``(n, 2J+1, out, in)`` of the coefficients ``C`` solving the constraint of the
    module docstring for every matrix in ``elements`` (which should generate the group).
    ``matrices``: the ``(D^J(g), rho_out(g), rho_in(g))`` of the elements, if already computed."""
    if matrices is None:
        matrices = [(wigner_d(degree, g), rho_out(g), rho_in(g)) for g in elements]
    eye_oi = np.eye(out_size * in_size)
    eye_j = np.eye(2 * degree + 1)
    a = np.concatenate([np.kron(d.T, eye_oi) - np.kron(eye_j, np.kron(ro, ri)) for d, ro, ri in matrices], axis=0)
    # the null space of A from the eigenvectors of the small Gram matrix A^T A (columns x columns):
    # its eigenvalues are the squared singular values, 0 up to rounding on the null space and of
    # order 1 off it (A is a difference of orthogonal matrices), so the cut at tol is clear
    w, v = np.linalg.eigh(a.T @ a)
    null = v[:, w <= tol * max(1.0, float(w[-1]) if w.size else 1.0)].T
    # eigh's basis of a degenerate eigenspace is arbitrary (it may differ with the BLAS): take the
    # one Gram-Schmidt gives from the columns of the null space's projector, which is unique
    null = gram_schmidt((null.T @ null).T) if len(null) else null
    return null.reshape(len(null), 2 * degree + 1, out_size, in_size)


def gram_schmidt(rows: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """An orthonormal basis of the span of ``rows`` (a 2D array), by Gram-Schmidt in their order
    (twice, for accuracy), dropping rows within ``tol`` (relative) of the span of the earlier ones:
    a basis that depends only on the rows, not on how a library factorised them."""
    scale = float(np.max(np.linalg.norm(rows, axis=1))) if len(rows) else 0.0
    out: list[np.ndarray] = []
    for r in rows:
        v = r.astype(np.float64)
        for _ in range(2):
            for q in out:
                v = v - (q @ v) * q
        n = float(np.linalg.norm(v))
        if n > tol * scale:
            out.append(v / n)
    return np.array(out).reshape(len(out), rows.shape[1])


def kernel_basis_3d(rho_in: RepFn, rho_out: RepFn, in_size: int, out_size: int, kernel_size: int,
                    elements: Sequence[np.ndarray]) -> np.ndarray:
    """The sampled, orthonormalised basis ``(n, K, K, K, out, in)`` of equivariant kernels.

    Args:
        rho_in, rho_out: functions from a 3x3 element matrix to the representation's orthogonal
            matrix (``(in, in)`` / ``(out, out)``).
        in_size, out_size: the representations' sizes.
        kernel_size: ``K`` (odd).
        elements: 3x3 matrices that generate the group (a few random rotations for SO(3); the
            generators of a finite group).

    Returns:
        float64 ``(n, K, K, K, out, in)``, orthonormal as vectors (``n`` may be 0).
    """
    pts = grid_points(kernel_size).reshape(-1, 3)
    reps = [(rho_out(g), rho_in(g)) for g in elements]  # once per element, not per ring and degree
    solved: dict[int, np.ndarray] = {}  # the constraint depends on the degree, not on the ring
    samples = []
    for _, profile, max_degree in ring_profiles(kernel_size):
        prof = profile.reshape(-1)
        for degree in range(max_degree + 1):
            if degree not in solved:
                mats = [(wigner_d(degree, g), ro, ri) for g, (ro, ri) in zip(elements, reps)]
                solved[degree] = solve_intertwiners(degree, rho_in, rho_out, elements, in_size, out_size,
                                                    matrices=mats)
            coeffs = solved[degree]
            if not len(coeffs):
                continue
            y = real_spherical_harmonics(degree, pts)  # (P, 2J+1); 0 at the centre for J > 0
            # K(p) = phi(|p|) sum_m Y_m(p) C_m
            samples.append(np.einsum("p,pm,nmoi->npoi", prof, y, coeffs))
    k3 = kernel_size**3
    if not samples:
        return np.zeros((0, kernel_size, kernel_size, kernel_size, out_size, in_size))
    flat = np.concatenate(samples, axis=0).reshape(-1, k3 * out_size * in_size)
    basis = gram_schmidt(flat)  # the rows are few and in a fixed order: a canonical basis
    return basis.reshape(-1, kernel_size, kernel_size, kernel_size, out_size, in_size)


def regular_octahedral(inversion: bool) -> tuple[RepFn, int]:
    """The regular representation of ``Octahedral()`` (or ``FullOctahedral()``) as a function of the
    element's matrix: ``rho(g) e_h = e_{g o h}``."""
    from equilib.groups3d import OctahedralGroup

    group = OctahedralGroup(inversion)
    table = group.cayley_table()
    n = group.order

    def rho(m: np.ndarray) -> np.ndarray:
        g = group.element_from_matrix(np.rint(m))
        out = np.zeros((n, n))
        out[table[g], np.arange(n)] = 1.0
        return out

    return rho, n


def so3_irrep(degree: int, pseudo: bool = False) -> tuple[RepFn, int]:
    """The Wigner-D representation of degree ``l`` (parity ``(-1)^l`` under the inversion, or
    ``(-1)^(l+1)`` if ``pseudo``), as a function of a 3x3 (possibly improper) matrix."""
    if pseudo:
        return (lambda m: float(np.sign(np.linalg.det(m))) * wigner_d(degree, m)), 2 * degree + 1
    return (lambda m: wigner_d(degree, m)), 2 * degree + 1


def generators(group_name: str, seed: int = 0) -> list[np.ndarray]:
    """Matrices that generate ``group_name`` ("SO3", "O3", "O", "Oh"): for SO(3) four random rotations
    (two generic rotations generate a dense subgroup; four keep the numerical system well conditioned)."""
    quarter_z = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    quarter_x = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    if group_name in ("O", "Oh"):
        out = [quarter_z, quarter_x]
    else:
        from equilib._src.so3 import random_rotations

        out = list(random_rotations(4, seed))
    if group_name in ("O3", "Oh"):
        out.append(-np.eye(3))
    return out


def unconstrained_dim(kernel_size: int, in_size: int, out_size: int) -> int:
    """The number of free parameters of an unconstrained kernel, ``K^3 * out * in``."""
    return int(math.prod((kernel_size,) * 3) * in_size * out_size)
