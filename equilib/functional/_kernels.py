"""Kernel expansions of lifting and group convolutions (Cohen & Welling 2016).

A lifting kernel ``psi`` of shape ``(K, K, C, O)`` is expanded to one copy per group element
``h``, transformed spatially by ``h``: ``W_h(d) = psi(h^-1 d)``. A group kernel
``psi`` of shape ``(K, K, C, |G|, O)`` is also permuted along its input group axis:
``W_h(d, k) = psi(h^-1 d, h^-1 k)``. Both are returned as plain HWIO kernels whose output
channel is ``o*|G| + h`` (and input channel ``c*|G| + k``), ready for ``conv2d``.

For groups that map the pixel grid to itself (C1, C2, C4, D1, D2, D4) the spatial transform
is a permutation of kernel taps, and the expansion a single gather: exact. The same holds in 3D
for the groups of the voxel grid (:mod:`equilib.groups3d`: ``Octahedral``, ``FullOctahedral``),
whose kernels are ``(K, K, K, C, O)`` and ``(K, K, K, C, |G|, O)`` (DHWIO after expansion). For other groups
(C8, C16, D8, ...) the free ``K x K`` kernel is projected onto a band-limited steerable basis
(Gaussian rings x circular harmonics, in the spirit of escnn's defaults), rotated analytically
and sampled back on the grid: ``W_h = B_h B^+ psi``. This is approximate on the grid for
off-grid angles (measured errors: ``benchmarks/RESULTS.md``, "Equivariance error"), exact on the rot90 / flip
subgroup, and only ``kernel_dof(group, K)`` of the ``K*K`` taps are free parameters.

Index tables and interpolation matrices are built once in numpy per ``(group, K)`` and cached
(pure functions of frozen objects).
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from equilib._src.typing import Array
from equilib.groups import Group, as_group

__all__ = ["expand_lifting_kernel", "expand_group_kernel", "kernel_dof"]


def _harmonic_basis(kernel_size: int, angle: float, flip: bool) -> np.ndarray:
    """``(K*K, n)`` samples of the polar basis at the taps ``d`` moved by ``h^-1``.

    Gaussian rings at radii ``0, 1, ..., (K-1)//2`` (std 0.6, the outermost 0.4, as escnn)
    times ``cos(m theta)``, ``sin(m theta)`` for ``m <= min(2r, r + 1)``: the band limit keeps
    aliasing on the grid low (the C8 lifting error at 45 degrees, ``benchmarks/RESULTS.md``).
    """
    k = kernel_size
    c = (k - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    x = (cols - c).reshape(-1).astype(np.float64)
    y = (c - rows).reshape(-1).astype(np.float64)
    ca, sa = math.cos(angle), math.sin(angle)
    xs, ys = x * ca + y * sa, -x * sa + y * ca  # R(-angle) d
    if flip:
        xs = -xs
    r, theta = np.hypot(xs, ys), np.arctan2(ys, xs)
    rings = np.arange(0, int(c) + 1)
    columns = []
    for j, rj in enumerate(rings):
        sigma = 0.005 if rj == 0 else (0.4 if j == len(rings) - 1 else 0.6)
        radial = np.exp(-((r - rj) ** 2) / (2 * sigma**2))
        max_m = 0 if rj == 0 else int(min(2 * rj, rj + 1))
        for m in range(max_m + 1):
            if m == 0:
                columns.append(radial)
                continue
            # the angle is undefined at the centre: harmonics of order m > 0 vanish there
            at_centre = r < 1e-9
            columns.append(np.where(at_centre, 0.0, radial * np.cos(m * theta)))
            columns.append(np.where(at_centre, 0.0, radial * np.sin(m * theta)))
    return np.stack(columns, axis=1)


def _grid_table(group: Group, kernel_size: int, h: int) -> np.ndarray:
    d = group.spatial_dims
    base = np.arange(kernel_size**d).reshape((kernel_size,) * d)
    return group.transform_image(base, h, axes=tuple(range(d))).reshape(-1)


@functools.cache
def _spatial_tables(group: Group, kernel_size: int):
    """Per element ``h``: either a gather table ``(|G|, K**d)`` (exact groups; ``d`` spatial axes) or a
    matrix ``(|G|, K*K, K*K)`` with ``vec(h.psi) = M_h @ vec(psi)``."""
    k = kernel_size
    if group.is_exact:
        table = np.stack([_grid_table(group, k, h) for h in range(group.order)])
        table.setflags(write=False)
        return "gather", table
    # Project the free kernel onto the band-limited basis, rotate the basis analytically and
    # resample: M_h = B_h B^+. Grid-preserving elements are exact row permutations of M_e.
    basis = _harmonic_basis(k, 0.0, False)
    pinv = np.linalg.pinv(basis)
    m_e = basis @ pinv
    mats = np.stack([
        m_e[_grid_table(group, k, h)] if group.is_grid_preserving(h)
        else _harmonic_basis(k, group.angle(h), bool(group.flip(h))) @ pinv
        for h in range(group.order)
    ]).astype(np.float32)
    mats.setflags(write=False)
    return "matrix", mats


def kernel_dof(group: Group, kernel_size: int) -> int:
    """Free parameters per (input, output) channel pair of a ``kernel_size`` kernel over ``group``.

    ``K*K`` for the groups that map the pixel grid to itself (C1, C2, C4, D1, D2, D4), whose
    kernels are transformed by permuting taps; for the others (C8, D8, ...) the size of the
    band-limited basis the kernel is projected on (module docstring). The layers scale their
    LeCun initialisation by ``K*K / kernel_dof``.

    Args:
        group: a finite group.
        kernel_size: the kernel size ``K`` (an int >= 1).

    Returns:
        The number of free parameters, a Python int.

    Raises:
        TypeError: ``group`` is not a finite :class:`equilib.groups.Group`.

    Example:
        >>> from equilib import functional as F
        >>> from equilib.groups import Cyclic
        >>> F.kernel_dof(Cyclic(4), 5), F.kernel_dof(Cyclic(8), 5)
        (25, 13)
    """
    group = as_group(group)
    if group.is_exact:
        return kernel_size**group.spatial_dims
    return int(_harmonic_basis(kernel_size, 0.0, False).shape[1])


@functools.cache
def _group_gather_table(group: Group, kernel_size: int) -> np.ndarray:
    """``T[h, d, k] = table[h, d] * |G| + P_h[k]``: one gather for the whole group kernel."""
    _, table = _spatial_tables(group, kernel_size)
    perms = group.regular_permutations()
    t = table[:, :, None] * group.order + perms[:, None, :]
    t.setflags(write=False)
    return t


def _check_kernel(kernel, group: Group, regular: bool):
    """A lifting kernel ``(K,)*d + (C, O)`` or, if ``regular``, a group kernel ``(K,)*d + (C, |G|, O)``."""
    d = group.spatial_dims
    axes = ("K, K, " if d == 2 else "K, K, K, ") + ("C_in, |G|, C_out" if regular else "C_in, C_out")
    ndim = d + (3 if regular else 2)
    if kernel.ndim != ndim:
        raise ValueError(f"`kernel` must have rank {ndim} ({axes}) for {group.name}, got shape {tuple(kernel.shape)}")
    if len(set(kernel.shape[:d])) != 1:
        raise ValueError(f"`kernel` must be {'square' if d == 2 else 'cubic'} for group convolutions, got "
                         f"spatial shape {tuple(kernel.shape[:d])}")
    if regular and kernel.shape[d + 1] != group.order:
        raise ValueError(f"`kernel` axis {d + 1} (input group axis) must have size |{group.name}| = "
                         f"{group.order}, got {kernel.shape[d + 1]}")


def expand_lifting_kernel(kernel: Array, group: Group) -> Array:
    """Expand a lifting kernel ``(K, K, C, O)`` to the HWIO kernel ``(K, K, C, O*|G|)`` (for a group
    of the voxel grid, ``(K, K, K, C, O)`` to the DHWIO kernel ``(K, K, K, C, O*|G|)``).

    Output channel ``o*|G| + h`` holds ``psi_o`` transformed by ``h``: ``W(d) = psi(h^-1 d)``
    (a permutation of taps for C1, C2, C4, D1, D2, D4; band-limited interpolation otherwise,
    module docstring). ``conv2d`` with it is :func:`lifting_conv` without the bias.

    Args:
        kernel: the lifting kernel ``psi``, ``(K, K, C, O)`` (square).
        group: a finite group.

    Returns:
        The HWIO kernel ``(K, K, C, O*|G|)``, in ``kernel``'s dtype.

    Raises:
        TypeError: ``group`` is not a finite :class:`equilib.groups.Group`.
        ValueError: ``kernel`` is not of rank 4 (5 for a 3D group) or not square (cubic).

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> from equilib.groups import Cyclic
        >>> psi = jnp.arange(9.0).reshape(3, 3, 1, 1)
        >>> w = F.expand_lifting_kernel(psi, Cyclic(4))
        >>> w.shape
        (3, 3, 1, 4)
        >>> bool(jnp.array_equal(w[:, :, 0, 1], jnp.rot90(psi[:, :, 0, 0])))  # h = 90 degrees
        True
    """
    group = as_group(group)
    _check_kernel(kernel, group, regular=False)
    d = group.spatial_dims
    k, (c, o) = kernel.shape[0], kernel.shape[d:]
    kind, table = _spatial_tables(group, k)
    flat = kernel.reshape(k**d, c, o)
    if kind == "gather":
        out = jnp.take(flat, jnp.asarray(table), axis=0)  # (G, K**d, C, O)
    else:
        out = jnp.einsum("hij,jco->hico", jnp.asarray(table, dtype=flat.dtype), flat)
    return jnp.transpose(out, (1, 2, 3, 0)).reshape((k,) * d + (c, o * group.order))


def expand_group_kernel(kernel: Array, group: Group) -> Array:
    """Expand a group kernel ``(K, K, C, |G|, O)`` to the HWIO kernel ``(K, K, C*|G|, O*|G|)`` (for a
    group of the voxel grid, ``(K, K, K, C, |G|, O)`` to ``(K, K, K, C*|G|, O*|G|)``).

    Entry ``[d, c*|G| + k, o*|G| + h]`` is ``psi[h^-1 d, c, h^-1 k, o]``: each filter
    transformed by ``h`` in space and permuted along its input group axis. ``conv2d`` of the
    flattened regular map ``(B, H, W, C*|G|)`` with it is :func:`group_conv` without the bias.

    Args:
        kernel: the group kernel ``psi``, ``(K, K, C, |G|, O)`` (square).
        group: the finite group ``G``.

    Returns:
        The HWIO kernel ``(K, K, C*|G|, O*|G|)``, in ``kernel``'s dtype.

    Raises:
        TypeError: ``group`` is not a finite :class:`equilib.groups.Group`.
        ValueError: ``kernel`` is not of rank 5 (6 for a 3D group), not square (cubic), or its input
            group axis is not of size ``|G|``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> from equilib.groups import Dihedral
        >>> F.expand_group_kernel(jnp.ones((3, 3, 2, 8, 5)), Dihedral(4)).shape
        (3, 3, 16, 40)
    """
    group = as_group(group)
    _check_kernel(kernel, group, regular=True)
    d = group.spatial_dims
    k, (c, g, o) = kernel.shape[0], kernel.shape[d:]
    kind, table = _spatial_tables(group, k)
    if kind == "gather":
        flat = jnp.moveaxis(kernel, d + 1, d).reshape(k**d * g, c, o)
        out = jnp.take(flat, jnp.asarray(_group_gather_table(group, k)), axis=0)  # (Gh, KK, Gk, C, O)
    else:
        perms = jnp.asarray(group.regular_permutations())
        flat = kernel.reshape(k * k, c, g, o)
        permuted = jnp.take(flat, perms, axis=2)  # (KK, C, Gh, Gk, O)
        out = jnp.einsum("hij,jchko->hikco", jnp.asarray(table, dtype=flat.dtype), permuted)
    # (Gh, KK, Gk, C, O) -> (KK, C, Gk, O, Gh)
    out = jnp.transpose(out, (1, 3, 2, 4, 0))
    return out.reshape((k,) * d + (c * g, o * g))
