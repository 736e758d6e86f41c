"""Steerable kernel bases on the 2D grid for C_N, D_N, SO(2) and O(2), solved in numpy.

A steerable convolution between field types ``in_type`` and ``out_type`` (see
:mod:`equilib.fields`) uses kernels ``k: R^2 -> R^(D_out x D_in)`` with

    k(g d) = rho_out(g) k(d) rho_in(g)^T       for every group element g,

where ``d = (x, y)`` is a tap offset in plane coordinates (``x = col - c``, ``y = c - row``; the
convolution is a cross-correlation, ``out(p) = sum_d k(d) f(p + d)``). Then the layer is
equivariant: ``conv(g.f) = g.conv(f)``.

Construction (as escnn, in the spirit of Weiler & Cesa 2019): in polar coordinates the kernel is
a sum over Gaussian rings ``exp(-(|d| - r_t)^2 / (2 sigma_t^2))`` times angular harmonics
``cos(J theta), sin(J theta)``, ``J <= L_t`` (the band limit of ring ``t``). For each ring and
frequency ``J`` the harmonics span a 1 or 2-dimensional space on which the group acts; for each
pair of irreps ``(psi_out, psi_in)`` the equivariant kernels of that (ring, J) are the fixed
points of ``M_J(g) (x) psi_out(g) (x) psi_in(g)``, solved exactly by averaging over the group
(for SO(2)/O(2) over C_M/D_M with ``M > J + k_out + k_in``, which has the same fixed points)
and orthonormalised. Representations ``rho = Q (+) psi_i Q^T`` get the block basis conjugated
by ``Q``. Each sampled element is normalised as in escnn (``sum k^2 / dim psi_out = 1``) and
dropped if it vanishes on the grid.

Defaults follow escnn's ``R2Conv``: rings at ``0, 1, ..., (K-1)//2`` (``ceil(K/2)`` of them),
``sigma = 0.6`` (0.4 for the outermost ring, 0.005 at the origin), and the band limit
``L(r) = 0`` at ``r = 0``, ``min(2r, 2)`` on the outermost ring and ``2r - (r+1) % 2`` inside.
The span is therefore the same as escnn's (checked against escnn's exported filters in
``tests/test_steerable.py``). Bases are computed once per configuration (``functools.cache`` on
the frozen group / representation / field-type objects) and are plain numpy arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from equilib._src.repmath import irrep_matrix
from equilib._src.tolerances import BASIS_RANK_TOL, BASIS_VANISH_TOL, RADIUS_TOL
from equilib._src.typing import Array
from equilib.fields import FieldType, as_field_type
from equilib.functional._conv import conv2d
from equilib.groups import Group
from equilib.reps import Rep, irrep_size

__all__ = [
    "BasisConfig",
    "SteerableBasis",
    "basis_config",
    "rep_pair_basis",
    "steerable_basis",
    "expand_steerable_kernel",
    "expand_steerable_bias",
    "steerable_conv",
]


# --- configuration ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BasisConfig:
    """Sampling of the steerable basis: a ``kernel_size`` grid, ring radii, widths and the
    largest angular frequency per ring.

    Frozen and hashable (the bases are cached per configuration). Build it with
    :func:`basis_config`, which fills in escnn's defaults and validates the arguments; the
    constructor checks nothing. ``band_limit`` is the largest of ``max_frequencies``.

    Args:
        kernel_size: the kernel size ``K``.
        rings: the ring radii in pixels, one per ring.
        sigmas: the Gaussian width of each ring, in pixels.
        max_frequencies: the largest angular frequency of each ring.

    Example:
        >>> from equilib import functional as F
        >>> cfg = F.basis_config(5)
        >>> cfg
        BasisConfig(kernel_size=5, rings=(0.0, 1.0, 2.0), sigmas=(0.005, 0.6, 0.4), max_frequencies=(0, 2, 2))
        >>> cfg.band_limit, cfg == F.BasisConfig(5, (0.0, 1.0, 2.0), (0.005, 0.6, 0.4), (0, 2, 2))
        (2, True)
    """

    kernel_size: int
    rings: tuple[float, ...]
    sigmas: tuple[float, ...]
    max_frequencies: tuple[int, ...]

    @property
    def band_limit(self) -> int:
        return max(self.max_frequencies)


def _escnn_default_cutoff(r: float, max_radius: int) -> float:
    # escnn's default policy (frequencies_cutoff=None -> "_manual_fco1" of R2Conv)
    if r == 0:
        return 0.0
    return min(2 * r, 2 if r == max_radius else 2 * r - (r + 1) % 2)


def basis_config(kernel_size: int, *, rings: Sequence[float] | None = None,
                 sigma: float | Sequence[float] | None = None,
                 frequency_cutoff: float | Sequence[float] | None = None) -> BasisConfig:
    """The sampling configuration of a ``kernel_size x kernel_size`` steerable kernel.

    Defaults follow escnn's ``R2Conv`` (module docstring).

    Args:
        kernel_size: the kernel size ``K``, a positive int.
        rings: radii in pixels, each within the kernel's half-diagonal ``(K-1)/sqrt(2)``;
            None: ``0, 1, ..., (K-1)//2``.
        sigma: the Gaussian width of the rings, one for all or one per ring; None: escnn's
            (0.6, 0.4 for the outermost ring, 0.005 at the origin).
        frequency_cutoff: None (escnn's policy), a number ``c`` (the band limit
            ``L(r) = floor(c * r)``), or one maximum frequency per ring.

    Returns:
        The :class:`BasisConfig`.

    Raises:
        ValueError: a non-positive ``kernel_size``; empty ``rings`` or rings beyond the
            half-diagonal; a ``sigma`` <= 0; a negative ``frequency_cutoff``; a per-ring
            ``sigma`` or ``frequency_cutoff`` of the wrong length.
        TypeError: ``rings`` is not a sequence of numbers, or ``sigma`` / ``frequency_cutoff``
            is a bool.

    Example:
        >>> from equilib import functional as F
        >>> F.basis_config(5).max_frequencies
        (0, 2, 2)
        >>> F.basis_config(5, sigma=0.6, frequency_cutoff=1.0)
        BasisConfig(kernel_size=5, rings=(0.0, 1.0, 2.0), sigmas=(0.6, 0.6, 0.6), max_frequencies=(0, 1, 2))
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
        raise ValueError(f"`kernel_size` must be a positive integer, got {kernel_size!r}")
    k = int(kernel_size)
    max_radius = (k - 1) / 2 * math.sqrt(2)
    if rings is None:
        n = math.ceil(k / 2)
        rings = tuple(float(r) for r in np.linspace(0, (k - 1) // 2, n))
    else:
        try:
            rings = tuple(float(r) for r in rings)
        except (TypeError, ValueError):
            raise TypeError(f"`rings` must be a sequence of radii, got {rings!r}") from None
        if not rings:
            raise ValueError("`rings` must not be empty")
        bad = [r for r in rings if not 0 <= r <= max_radius + RADIUS_TOL]
        if bad:
            raise ValueError(f"`rings` must lie in [0, {max_radius:.3f}] (the half-diagonal of a "
                             f"kernel_size={k} kernel), got {list(rings)}; use a larger kernel_size")
    sig = _ring_sigmas(sigma, rings)
    cut = _ring_cutoffs(frequency_cutoff, rings, k)
    max_f = tuple(int(math.floor(c + RADIUS_TOL)) for c in cut)
    return BasisConfig(k, tuple(rings), tuple(float(s) for s in sig), max_f)


def _ring_sigmas(sigma: float | Sequence[float] | None, rings: Sequence[float]) -> list[float]:
    """The Gaussian width of each ring: escnn's defaults, one width for all, or one per ring."""
    if isinstance(sigma, bool):
        raise TypeError(f"`sigma` must be a width or one width per ring, got {sigma!r}")
    if sigma is None:
        sig = [0.6] * (len(rings) - 1) + [0.4]
        sig = [0.005 if r == 0 else s for r, s in zip(rings, sig)]
    elif isinstance(sigma, (int, float, np.integer, np.floating)):
        sig = [float(sigma)] * len(rings)
    else:
        sig = [float(s) for s in sigma]
        if len(sig) != len(rings):
            raise ValueError(f"`sigma` must be one width or one per ring ({len(rings)}), got {len(sig)}")
    if any(not s > 0 for s in sig):
        raise ValueError(f"`sigma` must be > 0, got {sig}")
    return sig


def _ring_cutoffs(frequency_cutoff: float | Sequence[float] | None, rings: Sequence[float],
                  k: int) -> list[float]:
    """The (real) largest angular frequency of each ring, before rounding down."""
    if isinstance(frequency_cutoff, bool):
        raise TypeError(f"`frequency_cutoff` must be a number or one per ring, got {frequency_cutoff!r}")
    if frequency_cutoff is None:
        return [_escnn_default_cutoff(r, k // 2) for r in rings]
    if isinstance(frequency_cutoff, (int, float, np.integer, np.floating)):
        if frequency_cutoff < 0:
            raise ValueError(f"`frequency_cutoff` must be >= 0, got {frequency_cutoff!r}")
        return [float(frequency_cutoff) * r for r in rings]
    cut = [float(c) for c in frequency_cutoff]
    if len(cut) != len(rings):
        raise ValueError(f"`frequency_cutoff` must be a number or one maximum frequency per ring "
                         f"({len(rings)} rings), got {len(cut)} values")
    if any(c < 0 for c in cut):
        raise ValueError(f"`frequency_cutoff` values must be >= 0, got {cut}")
    return cut

# --- per irrep pair, per harmonic frequency: the fixed points ---------------------------------
def _harmonic_action(j: int, angle: float, flip: int) -> np.ndarray:
    """Matrix of ``phi -> phi(g^-1 .)`` on the coefficients of ``(cos J t, sin J t)``."""
    if j == 0:
        return np.ones((1, 1))
    c, s = math.cos(j * angle), math.sin(j * angle)
    m = np.array([[c, -s], [s, c]])
    if flip:
        m = m @ np.diag([1.0, -1.0]) * (-1.0 if j % 2 else 1.0)
    return m


@functools.cache
def _element_set(group, m: int) -> tuple[tuple[float, int], ...]:
    """Elements averaged over: the whole finite group, or C_m / D_m inside SO(2) / O(2)."""
    if isinstance(group, Group):
        return tuple((group.angle(g), group.flip(g)) for g in range(group.order))
    return tuple((2 * math.pi * r / m, f) for f in range(2 if group.reflection else 1) for r in range(m))


@functools.cache
def _irrep_stack(group, ident: tuple, m: int) -> np.ndarray:
    return np.stack([irrep_matrix(group, ident, a, f) for a, f in _element_set(group, m)])


@functools.cache
def _harmonic_stack(group, j: int, m: int) -> np.ndarray:
    return np.stack([_harmonic_action(j, a, f) for a, f in _element_set(group, m)])


@functools.cache
def _fixed_coefficients(group, out_id: tuple, in_id: tuple, j: int) -> np.ndarray:
    """Orthonormal basis ``(n, h_J, d_out, d_in)`` of the equivariant angular coefficients."""
    d_o, d_i = irrep_size(group, out_id), irrep_size(group, in_id)
    h = 1 if j == 0 else 2
    # SO(2) / O(2): C_M / D_M with M > J + k_out + k_in has exactly the same fixed points
    m = 0 if isinstance(group, Group) else j + out_id[1] + in_id[1] + 1
    hm, om, im = _harmonic_stack(group, j, m), _irrep_stack(group, out_id, m), _irrep_stack(group, in_id, m)
    n = h * d_o * d_i
    p = (hm[:, :, None, None, :, None, None] * om[:, None, :, None, None, :, None]
         * im[:, None, None, :, None, None, :]).mean(axis=0).reshape(n, n)
    # canonical orthonormal basis of range(P): Gram-Schmidt on P's columns in index order
    vecs: list[np.ndarray] = []
    for col in p.T:
        v = col.copy()
        for u in vecs:
            v -= (u @ v) * u
        nv = np.linalg.norm(v)
        if nv > BASIS_RANK_TOL:
            vecs.append(v / nv)
    out = np.array(vecs).reshape(len(vecs), h, d_o, d_i) if vecs else np.zeros((0, h, d_o, d_i))
    out.setflags(write=False)
    return out


@functools.cache
def _grid(kernel_size: int):
    c = (kernel_size - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(kernel_size), np.arange(kernel_size), indexing="ij")
    x = (cols - c).reshape(-1).astype(np.float64)
    y = (c - rows).reshape(-1).astype(np.float64)
    return np.hypot(x, y), np.arctan2(y, x)


def _ring_harmonics(config: BasisConfig, t: int, j: int) -> np.ndarray:
    """``(K*K, h_J)`` samples of ring ``t`` times ``cos(J theta), sin(J theta)``."""
    rad, theta = _grid(config.kernel_size)
    radial = np.exp(-((rad - config.rings[t]) ** 2) / (2 * config.sigmas[t] ** 2))
    if j == 0:
        return radial[:, None]
    origin = rad < RADIUS_TOL  # the angle is undefined at the centre: frequencies J > 0 vanish there
    ang = np.stack([np.cos(j * theta), np.sin(j * theta)], axis=1)
    return np.where(origin[:, None], 0.0, radial[:, None] * ang)


@functools.cache
def _irrep_pair_sampled(group, out_id: tuple, in_id: tuple, config: BasisConfig):
    """Sampled basis ``(n, K, K, d_out, d_in)`` for a pair of irreps and its ``(ring, J)`` labels."""
    k = config.kernel_size
    d_o, d_i = irrep_size(group, out_id), irrep_size(group, in_id)
    elems, labels = [], []
    for t in range(len(config.rings)):
        for j in range(config.max_frequencies[t] + 1):
            coef = _fixed_coefficients(group, out_id, in_id, j)
            if not len(coef):
                continue
            samples = _ring_harmonics(config, t, j)
            b = np.einsum("ph,nhab->npab", samples, coef)
            for e in b:
                norm = math.sqrt(float(np.sum(e * e)) / d_o)
                if norm < BASIS_VANISH_TOL:  # vanishes on the grid (escnn's rule)
                    continue
                elems.append((e / norm).reshape(k, k, d_o, d_i))
                labels.append((t, j))
    basis = np.stack(elems) if elems else np.zeros((0, k, k, d_o, d_i))
    basis.setflags(write=False)
    return basis, tuple(labels)


@functools.cache
def _rep_pair(out_rep: Rep, in_rep: Rep, config: BasisConfig):
    """``(basis (n, K, K, out.size, in.size) float32, labels (n, 2))``: each element lives on one
    pair of irreps, ``labels[e] = (out irrep position, in irrep position)``."""
    group = out_rep.group
    k = config.kernel_size
    so, si = out_rep.irrep_sizes, in_rep.irrep_sizes
    oo, oi = np.cumsum((0,) + so), np.cumsum((0,) + si)
    qo, qi = np.asarray(out_rep.change_of_basis), np.asarray(in_rep.change_of_basis)
    subs = []
    for a, ida in enumerate(out_rep.irreps):
        for b, idb in enumerate(in_rep.irreps):
            sub, _ = _irrep_pair_sampled(group, ida, idb, config)
            if len(sub):
                subs.append((a, b, sub))
    out = np.empty((sum(len(s) for _, _, s in subs), k, k, out_rep.size, in_rep.size), dtype=np.float32)
    labels = np.zeros((len(out), 2), dtype=np.int64)
    n0 = 0
    for a, b, sub in subs:
        # each element lives on one irrep block: conjugate only that block's columns of Q
        qa, qb = qo[:, oo[a]:oo[a + 1]], qi[:, oi[b]:oi[b + 1]]
        out[n0:n0 + len(sub)] = qa @ (sub @ qb.T)
        labels[n0:n0 + len(sub)] = (a, b)
        n0 += len(sub)
    out.setflags(write=False)
    labels.setflags(write=False)
    return out, labels


def rep_pair_basis(out_rep: Rep, in_rep: Rep, kernel_size: int, *, rings=None, sigma=None,
                   frequency_cutoff=None) -> np.ndarray:
    """The sampled steerable basis of kernels from one field of ``in_rep`` to one of ``out_rep``.

    Each element ``k`` satisfies ``k(g d) = out_rep(g) k(d) in_rep(g)^T`` (module docstring).
    Cached per configuration.

    Args:
        out_rep: the output field's representation (:class:`equilib.reps.Rep`).
        in_rep: the input field's representation, of the same group.
        kernel_size: the kernel size ``K``.
        rings: as :func:`basis_config`.
        sigma: as :func:`basis_config`.
        frequency_cutoff: as :func:`basis_config`.

    Returns:
        ``(n, K, K, out_rep.size, in_rep.size)``, a read-only float32 numpy array; ``n`` may
        be 0 (no equivariant kernel within the band limit).

    Raises:
        TypeError: ``out_rep`` or ``in_rep`` is not a ``Rep``; the errors of :func:`basis_config`.
        ValueError: the two representations are of different groups; the errors of
            :func:`basis_config`.

    Example:
        >>> from equilib import functional as F
        >>> from equilib.groups import SO2
        >>> from equilib.reps import irrep, trivial_rep
        >>> F.rep_pair_basis(irrep(SO2(), 1), trivial_rep(SO2()), 5).shape  # scalar -> vector
        (4, 5, 5, 2, 1)
    """
    if not isinstance(out_rep, Rep) or not isinstance(in_rep, Rep):
        raise TypeError(f"`out_rep` and `in_rep` must be Rep, got {type(out_rep).__name__}, "
                        f"{type(in_rep).__name__}")
    if out_rep.group != in_rep.group:
        raise ValueError(f"`out_rep` is a representation of {out_rep.group.name} but `in_rep` of "
                         f"{in_rep.group.name}: expected the same group")
    cfg = basis_config(kernel_size, rings=_tuple(rings), sigma=_tuple(sigma),
                       frequency_cutoff=_tuple(frequency_cutoff))
    return _rep_pair(out_rep, in_rep, cfg)[0]


def _tuple(v):
    return tuple(v) if isinstance(v, (list, np.ndarray)) else v


# --- the basis of a layer -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Block:
    """Kernels from the input fields ``in_fields`` (all of ``in_rep``) to the output fields
    ``out_fields`` (all of ``out_rep``): parameters ``weight[offset : offset + size]`` reshaped
    to ``(n_out, n_in, n_basis)``, basis ``(n_basis, K, K, out_rep.size, in_rep.size)``."""

    out_rep: Rep
    in_rep: Rep
    out_fields: np.ndarray
    in_fields: np.ndarray
    basis: np.ndarray
    offset: int
    labels: np.ndarray  # (n_basis, 2): (out irrep position in out_rep, in irrep position in in_rep)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.out_fields), len(self.in_fields), self.basis.shape[0])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class SteerableBasis:
    """The kernel basis of a steerable convolution ``in_type -> out_type`` (numpy, read-only).

    The kernels from the ``D_in`` channels of ``in_type`` to the ``D_out`` channels of
    ``out_type`` are the linear combinations, with ``num_params`` weights, of the elements of
    :func:`rep_pair_basis` for each pair of input and output fields. Use
    :func:`steerable_basis`, which caches and checks it, rather than the constructor. Besides
    the attributes below it holds the channel permutations (``in_sorted``, ``in_inverse``,
    ``out_sorted``, ``out_inverse``) that restore the natural channel order after the blocks,
    grouped by representation, are assembled.

    Args:
        in_type: the input :class:`equilib.fields.FieldType` (``D_in`` channels).
        out_type: the output field type (``D_out`` channels), of the same group.
        config: the sampling, a :class:`BasisConfig`.

    Attributes:
        in_type: the input field type.
        out_type: the output field type.
        config: the :class:`BasisConfig`.
        blocks: one block per pair of distinct representations with a non-empty basis.
        num_params: the length of the flat weight vector of :func:`expand_steerable_kernel`.
        bias_matrix: ``(num_bias, D_out)``: a bias may only live on the invariant
            (trivial-irrep) directions of the output fields.

    Example:
        >>> from equilib import functional as F
        >>> from equilib.fields import FieldType
        >>> from equilib.groups import Cyclic
        >>> from equilib.reps import regular_rep, trivial_rep
        >>> C4 = Cyclic(4)
        >>> basis = F.SteerableBasis(FieldType(C4, [trivial_rep(C4)] * 2), FieldType(C4, [regular_rep(C4)] * 3),
        ...                          F.basis_config(3))
        >>> basis.num_params, basis.bias_matrix.shape, basis.kernel_size
        (36, (3, 12), 3)
    """

    def __init__(self, in_type: FieldType, out_type: FieldType, config: BasisConfig):
        self.in_type, self.out_type, self.config = in_type, out_type, config
        in_groups, out_groups = in_type.groups(), out_type.groups()
        blocks, offset = [], 0
        for ro, fo, _ in out_groups:
            for ri, fi, _ in in_groups:
                b, labels = _rep_pair(ro, ri, config)
                if b.shape[0] == 0:
                    continue
                blk = Block(ro, ri, fo, fi, b, offset, labels)
                offset += blk.size
                blocks.append(blk)
        self.blocks = tuple(blocks)
        self.num_params = offset
        # channel orders: blocks are assembled grouped by representation
        self.in_sorted = np.concatenate([ch.reshape(-1) for _, _, ch in in_groups])
        self.out_sorted = np.concatenate([ch.reshape(-1) for _, _, ch in out_groups])
        self.in_inverse = np.argsort(self.in_sorted)
        self.out_inverse = np.argsort(self.out_sorted)
        self.natural_order = (bool(np.all(self.in_sorted == np.arange(in_type.size)))
                              and bool(np.all(self.out_sorted == np.arange(out_type.size))))
        cols = []
        for i, r in enumerate(out_type.reps):
            t = r.trivial_columns()
            for c in range(t.shape[1]):
                v = np.zeros(out_type.size)
                v[out_type.field_slice(i)] = t[:, c] * math.sqrt(r.size)  # regular: all ones
                cols.append(v)
        self.bias_matrix = (np.array(cols, dtype=np.float32) if cols
                            else np.zeros((0, out_type.size), dtype=np.float32))
        for arr in (self.in_sorted, self.out_sorted, self.in_inverse, self.out_inverse, self.bias_matrix):
            arr.setflags(write=False)

    @property
    def kernel_size(self) -> int:
        return self.config.kernel_size

    def incoming(self) -> np.ndarray:
        """``(n_out_fields,)``: number of basis elements reaching each output field."""
        n = np.zeros(len(self.out_type), dtype=np.int64)
        for b in self.blocks:
            n[b.out_fields] += len(b.in_fields) * b.basis.shape[0]
        return n

    def __repr__(self):
        return (f"SteerableBasis({self.in_type!r} -> {self.out_type!r}, K={self.kernel_size}, "
                f"{self.num_params} parameters)")


@functools.cache
def _steerable_basis(in_type: FieldType, out_type: FieldType, config: BasisConfig) -> SteerableBasis:
    return SteerableBasis(in_type, out_type, config)


def steerable_basis(in_type: FieldType, out_type: FieldType, kernel_size: int, *, rings=None,
                    sigma=None, frequency_cutoff=None, check: bool = True) -> SteerableBasis:
    """The (cached) :class:`SteerableBasis` of kernels ``in_type -> out_type``.

    Args:
        in_type: the input :class:`equilib.fields.FieldType` (``D_in`` channels).
        out_type: the output field type (``D_out`` channels), of the same group.
        kernel_size: the kernel size ``K``.
        rings: as :func:`basis_config`.
        sigma: as :func:`basis_config`.
        frequency_cutoff: as :func:`basis_config`.
        check: raise if some output field receives no basis element (its frequency is beyond
            what the kernel's band limit can reach from the input fields); the message says
            whether a larger ``kernel_size`` or ``frequency_cutoff`` would help.

    Returns:
        The :class:`SteerableBasis`, the same object for equal arguments.

    Raises:
        TypeError: ``in_type`` or ``out_type`` is not a ``FieldType``; the errors of
            :func:`basis_config`.
        ValueError: field types of different groups; with ``check``, an output field that no
            kernel reaches; the errors of :func:`basis_config`.

    Example:
        >>> from equilib import functional as F
        >>> from equilib.fields import FieldType
        >>> from equilib.groups import SO2
        >>> from equilib.reps import irrep, trivial_rep
        >>> scalar, vector = FieldType(SO2(), [trivial_rep(SO2())]), FieldType(SO2(), [irrep(SO2(), 1)])
        >>> F.steerable_basis(scalar, vector, 5)
        SteerableBasis(FieldType(SO2, [1xtrivial], size=1) -> FieldType(SO2, [1xirrep(1)], size=2), K=5, 4 parameters)
        >>> F.steerable_basis(scalar, vector, 1)
        Traceback (most recent call last):
        ...
        ValueError: output field 0 (irrep(1) of SO2, frequencies [1]) gets no kernel ... expected a larger kernel_size
    """
    in_type = as_field_type(in_type, "in_type")
    out_type = as_field_type(out_type, "out_type")
    if in_type.group != out_type.group:
        raise ValueError(f"`in_type` is a field type of {in_type.group.name} but `out_type` of "
                         f"{out_type.group.name}: expected the same group")
    cfg = basis_config(kernel_size, rings=_tuple(rings), sigma=_tuple(sigma),
                       frequency_cutoff=_tuple(frequency_cutoff))
    basis = _steerable_basis(in_type, out_type, cfg)
    if check:
        empty = np.flatnonzero(basis.incoming() == 0)
        if len(empty):
            i = int(empty[0])
            r = out_type.reps[i]
            in_f = sorted({k for rr in in_type.reps for _, k in rr.irreps})
            out_f = sorted({k for _, k in r.irreps})
            # would any band limit help? (the needed angular frequency is at most |n| + |m|)
            top = max(out_f) + max(in_f) + 1
            wide = dataclasses.replace(cfg, max_frequencies=(top,) * len(cfg.rings))
            big_k = max(cfg.kernel_size, 7)
            big = basis_config(big_k, frequency_cutoff=(top,) * math.ceil(big_k / 2))
            reaches = lambda c: any(_rep_pair(r, ri, c)[0].shape[0] for ri in set(in_type.reps))
            more = f" ({len(empty)} such fields)" if len(empty) > 1 else ""
            if not reaches(big):
                raise ValueError(
                    f"output field {i} ({r.name} of {out_type.group.name}) gets no kernel from `in_type` "
                    f"{in_type!r}: no equivariant kernel exists between these representations at any "
                    f"band limit (e.g. trivial -> irrep(1, 0) of O(2) or D_N); expected an output field "
                    f"reachable from the input fields{more}")
            if not reaches(wide):
                raise ValueError(
                    f"output field {i} ({r.name} of {out_type.group.name}, frequencies {out_f}) gets no "
                    f"kernel from `in_type` (frequencies {in_f}): kernel_size={cfg.kernel_size} is too "
                    f"small for the requested basis (rings at {list(cfg.rings)}; angular frequencies > 0 "
                    f"vanish at the centre); expected a larger kernel_size{more}")
            raise ValueError(
                f"output field {i} ({r.name} of {out_type.group.name}, frequencies {out_f}) gets no "
                f"kernel from `in_type` (frequencies {in_f}) with kernel_size={cfg.kernel_size}: the "
                f"basis is band-limited to angular frequency {cfg.band_limit} (per ring "
                f"{list(cfg.max_frequencies)}), and a kernel from frequency m to n needs |n - m| (or "
                f"n + m) within it. Expected lower output frequencies, a larger kernel_size or a larger "
                f"`frequency_cutoff`{more}")
    return basis


# --- expansion and convolution ----------------------------------------------------------------
def expand_steerable_kernel(weight: Array, basis: SteerableBasis) -> Array:
    """The HWIO kernel ``(K, K, D_in, D_out)`` of the flat parameter vector ``weight``.

    The kernel is ``sum_n weight[n] * element_n`` over the basis elements of every block of
    ``basis``, in the natural channel order of the field types.

    Args:
        weight: the flat parameters ``(basis.num_params,)``.
        basis: the :class:`SteerableBasis`.

    Returns:
        The HWIO kernel ``(K, K, D_in, D_out)``, in ``weight``'s dtype.

    Raises:
        ValueError: ``weight`` is not of shape ``(basis.num_params,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import functional as F
        >>> from equilib.fields import FieldType
        >>> from equilib.groups import Cyclic
        >>> from equilib.reps import regular_rep, trivial_rep
        >>> C4 = Cyclic(4)
        >>> basis = F.steerable_basis(FieldType(C4, [trivial_rep(C4)] * 2), FieldType(C4, [regular_rep(C4)] * 3), 3)
        >>> F.expand_steerable_kernel(jnp.ones(basis.num_params), basis).shape
        (3, 3, 2, 12)
    """
    if weight.ndim != 1 or weight.shape[0] != basis.num_params:
        raise ValueError(f"`weight` must have shape ({basis.num_params},) for {basis!r}, got "
                         f"{tuple(weight.shape)}")
    k = basis.kernel_size
    dt = weight.dtype

    def block_kernel(b: Block):
        w = weight[b.offset:b.offset + b.size].reshape(b.shape)
        out = jnp.einsum("oin,nhwab->hwiboa", w, jnp.asarray(b.basis, dtype=dt))
        no, ni, _ = b.shape
        return out.reshape(k, k, ni * b.in_rep.size, no * b.out_rep.size)

    in_groups, out_groups = basis.in_type.groups(), basis.out_type.groups()
    if len(basis.blocks) == 1 and len(in_groups) == 1 and len(out_groups) == 1 and basis.natural_order:
        return block_kernel(basis.blocks[0])
    lookup = {(b.out_rep, b.in_rep): b for b in basis.blocks}
    columns = []
    for ro, fo, _ in out_groups:
        rows = []
        for ri, fi, _ in in_groups:
            b = lookup.get((ro, ri))
            if b is None:
                rows.append(jnp.zeros((k, k, len(fi) * ri.size, len(fo) * ro.size), dt))
            else:
                rows.append(block_kernel(b))
        columns.append(jnp.concatenate(rows, axis=2))
    kernel = jnp.concatenate(columns, axis=3)
    if not basis.natural_order:
        kernel = jnp.take(kernel, jnp.asarray(basis.in_inverse), axis=2)
        kernel = jnp.take(kernel, jnp.asarray(basis.out_inverse), axis=3)
    return kernel


def expand_steerable_bias(bias: Array, basis: SteerableBasis) -> Array:
    """The ``(D_out,)`` bias of the parameters ``bias``: one value per trivial irrep of the output fields.

    An equivariant bias can only live on the invariant directions of the output fields: a
    regular field gets a constant bias, a field with no trivial irrep none.

    Args:
        bias: ``(num_bias,)`` with ``num_bias = basis.bias_matrix.shape[0]``.
        basis: the :class:`SteerableBasis`.

    Returns:
        ``(D_out,)``, ``bias @ basis.bias_matrix``, in ``bias``'s dtype.

    Raises:
        ValueError: ``bias`` is not of shape ``(num_bias,)``.

    Example:
        One trivial field in, two regular C4 fields out: each output field gets one constant bias.

        >>> import jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, functional as F, reps
        >>> C4 = Cyclic(4)
        >>> in_type = FieldType(C4, [reps.trivial_rep(C4)])
        >>> basis = F.steerable_basis(in_type, FieldType(C4, [reps.regular_rep(C4)] * 2), 3)
        >>> F.expand_steerable_bias(jnp.array([1.0, 2.0]), basis)
        Array([1., 1., 1., 1., 2., 2., 2., 2.], dtype=float32)
    """
    if bias.shape != (basis.bias_matrix.shape[0],):
        raise ValueError(f"`bias` must have shape ({basis.bias_matrix.shape[0]},) (one per trivial "
                         f"irrep of out_type), got {tuple(bias.shape)}")
    return bias @ jnp.asarray(basis.bias_matrix, dtype=bias.dtype)


def steerable_conv(x: Array, weight: Array, basis: SteerableBasis, *, stride=1, padding="SAME",
                   bias: Array | None = None, precision=None) -> Array:
    """Steerable convolution ``(B, H, W, D_in) -> (B, H', W', D_out)``.

    A :func:`conv2d` with the kernel of :func:`expand_steerable_kernel`. Equivariance:
    ``steerable_conv(in_type.transform(x, g)) == out_type.transform(steerable_conv(x), g)``,
    exactly for rotations by multiples of 90 degrees and mirrors in the group (with symmetric
    sampling, see :func:`equilib.check_exact`), approximately (band-limited kernels) otherwise.

    Args:
        x: a steerable map ``(B, H, W, D_in)`` of ``basis.in_type``.
        weight: the flat parameters ``(basis.num_params,)``, of ``x``'s dtype.
        basis: the :class:`SteerableBasis` (:func:`steerable_basis`).
        stride: as :func:`conv2d`.
        padding: as :func:`conv2d`.
        bias: ``(num_bias,)`` (:func:`expand_steerable_bias`), or None.
        precision: as :func:`conv2d`.

    Returns:
        The steerable map ``(B, H', W', D_out)`` of ``basis.out_type`` (``H'``, ``W'`` as
        :func:`conv2d`).

    Raises:
        ValueError: ``x`` not of rank 4 or not of ``D_in`` channels, ``weight`` or ``bias`` of
            the wrong shape, and the errors of :func:`conv2d`.
        TypeError: ``x`` and ``weight`` of different dtypes.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from equilib import functional as F
        >>> from equilib.fields import FieldType
        >>> from equilib.groups import Cyclic
        >>> from equilib.reps import regular_rep, trivial_rep
        >>> C4 = Cyclic(4)
        >>> in_type, out_type = FieldType(C4, [trivial_rep(C4)] * 2), FieldType(C4, [regular_rep(C4)] * 3)
        >>> basis = F.steerable_basis(in_type, out_type, 3)
        >>> weight = jax.random.normal(jax.random.key(0), (basis.num_params,))
        >>> x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9, 9, 2)), jnp.float32)
        >>> y = F.steerable_conv(x, weight, basis, bias=jnp.zeros(3))
        >>> y.shape
        (2, 9, 9, 12)
        >>> y_rot = F.steerable_conv(in_type.transform(x, np.pi / 2), weight, basis, bias=jnp.zeros(3))
        >>> bool(jnp.allclose(y_rot, out_type.transform(y, np.pi / 2), atol=1e-5))
        True
    """
    basis.in_type.check(x, "x", "steerable_conv")
    kernel = expand_steerable_kernel(weight, basis)
    b = None if bias is None else expand_steerable_bias(bias, basis)
    return conv2d(x, kernel, stride=stride, padding=padding, bias=b, precision=precision)
