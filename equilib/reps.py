"""Real orthogonal representations of the planar groups C_N, D_N, SO(2) and O(2).

Elements
--------
Every group here is a subgroup of O(2) and every element is described by ``(angle, flip)``: the
rotation by ``angle`` (counter-clockwise as displayed) after ``flip`` mirrors of the width axis,
the convention of :mod:`equilib.groups`. A representation is evaluated with ``rep(g)`` in the
group's native element format (an element index for ``Cyclic``/``Dihedral``, an angle for
``SO2()``, ``(angle, flip)`` or ``angle, flip`` for ``O2()``), or with ``rep.at(angle, flip)``
for any group.

Irreducible representations (ids ``(j, k)``; escnn's ids and matrices)
----------------------------------------------------------------------
* ``C_N`` and ``SO(2)``: ``irrep(k)`` = id ``(0, k)``. ``k = 0``: trivial; ``0 < k`` (and
  ``2k != N``): the 2x2 rotation ``R(k * angle)``; ``C_N`` with ``2k == N``: the sign
  ``(-1)^r`` of the rotation index ``r``. ``C_N`` has ``k = 0..N//2``; ``SO(2)`` any ``k >= 0``.
* ``D_N`` and ``O(2)``: ``irrep(j, k)``. ``(0, 0)``: trivial; ``(1, 0)``: ``(-1)^flip``;
  ``(1, k)``, ``k >= 1`` (``2k != N``): ``R(k * angle) @ diag(1, -1)**flip``; ``D_N``, even ``N``:
  ``(0, N/2)`` = ``(-1)^r`` and ``(1, N/2)`` = ``(-1)^(r + flip)``.

A :class:`Rep` is ``rho(g) = Q @ blockdiag(psi_1(g), ..., psi_m(g)) @ Q.T`` for a list of irreps
and an orthogonal change of basis ``Q``. Regular and quotient representations of the finite
groups are the permutation representations (``rho(g) e_h = e_{g o h}``, the convention of
:meth:`equilib.groups.Group.regular_representation`), with ``Q`` found numerically (in numpy,
once per group: the functions are cached on the frozen group objects).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

from equilib.groups import Group, PlanarLieGroup

__all__ = [
    "Rep",
    "irrep",
    "irreps",
    "trivial_rep",
    "regular_rep",
    "quotient_rep",
    "bandlimited_regular_rep",
    "directsum",
    "restrict_rep",
    "irrep_size",
    "irrep_frequency",
    "as_steerable_group",
]

_TOL = 1e-9


def as_steerable_group(group, name: str = "group"):
    """Validate a group argument of the steerable layers: a finite ``Group`` or ``SO2()``/``O2()``."""
    if not isinstance(group, (Group, PlanarLieGroup)):
        raise TypeError(f"`{name}` must be an equilib group (Cyclic(n), Dihedral(n), Trivial(), SO2() "
                        f"or O2()), got {type(group).__name__}")
    return group


# --- irreps -----------------------------------------------------------------------------------
def _is_dihedral(group) -> bool:
    return bool(group.reflection)


def _irrep_ids(group, max_frequency: int | None = None) -> tuple[tuple[int, int], ...]:
    if isinstance(group, Group):
        n = group.n
        if not group.reflection:
            return tuple((0, k) for k in range(n // 2 + 1))
        ids = [(0, 0), (1, 0)] + [(1, k) for k in range(1, (n + 1) // 2)]
        if n % 2 == 0:
            ids += [(1, n // 2), (0, n // 2)]
        # D1 (n = 1) and D2 have no 2-dimensional irreps
        return tuple(dict.fromkeys(ids))
    if max_frequency is None:
        raise ValueError(f"{group.name} has infinitely many irreps: pass `max_frequency`")
    if not group.reflection:
        return tuple((0, k) for k in range(max_frequency + 1))
    return ((0, 0), (1, 0)) + tuple((1, k) for k in range(1, max_frequency + 1))


def _check_irrep_id(group, ident) -> tuple[int, int]:
    j, k = ident
    if isinstance(group, Group):
        if (j, k) not in _irrep_ids(group):
            raise ValueError(f"{group.name} has no {_fmt_id(group, (j, k))}; its irreps are "
                             f"{', '.join(_fmt_id(group, i) for i in _irrep_ids(group))}")
        return (j, k)
    if k < 0 or j not in (0, 1) or (not group.reflection and j != 0) or (
            group.reflection and k > 0 and j != 1):
        valid = "k >= 0" if not group.reflection else "(0, 0), (1, 0) or (1, k) with k >= 1"
        raise ValueError(f"{group.name} has no {_fmt_id(group, (j, k))}; expected {valid}")
    return (j, k)


def _fmt_id(group, ident) -> str:
    return f"irrep({ident[1]})" if not group.reflection else f"irrep{tuple(ident)}"


def irrep_size(group, ident) -> int:
    """Dimension (1 or 2) of the irrep ``ident = (j, k)``."""
    j, k = ident
    if k == 0:
        return 1
    if isinstance(group, Group) and 2 * k == group.n:
        return 1
    return 2


def irrep_frequency(ident) -> int:
    """The rotation frequency ``k`` of the irrep ``(j, k)``."""
    return int(ident[1])


def _irrep_matrix(group, ident, angle: float, flip: int) -> np.ndarray:
    j, k = ident
    if k == 0:
        return np.array([[-1.0 if (j == 1 and flip) else 1.0]])
    if isinstance(group, Group) and 2 * k == group.n:
        r = int(round(angle * group.n / (2 * math.pi))) % group.n
        s = -1.0 if r % 2 else 1.0
        if j == 1 and flip:
            s = -s
        return np.array([[s]])
    c, s = _cos_sin(k * angle)
    if flip:
        return np.array([[c, s], [s, -c]])
    return np.array([[c, -s], [s, c]])


def _cos_sin(t: float) -> tuple[float, float]:
    # exact values at multiples of 90 degrees (so that rot90 tests see exact permutations)
    q = t / (math.pi / 2)
    if abs(q - round(q)) < 1e-12:
        return ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[int(round(q)) % 4]
    return math.cos(t), math.sin(t)


def _element_angle_flip(group, element) -> tuple[float, int]:
    """Native element -> ``(angle, flip)``."""
    if isinstance(group, Group):
        if len(element) != 1:
            raise TypeError(f"an element of {group.name} is one integer index, got {element!r}")
        g = group._check(element[0])
        return group.angle(g), group.flip(g)
    if len(element) == 1 and isinstance(element[0], (tuple, list)):
        element = tuple(element[0])
    if len(element) not in (1, 2):
        raise TypeError(f"an element of {group.name} is an angle or (angle, flip), got {element!r}")
    return group.element(*element)


def _check_angle_flip(group, angle, flip) -> tuple[float, int]:
    if isinstance(group, Group):
        if flip not in (0, 1) or (flip and not group.reflection):
            raise ValueError(f"`flip` must be 0{' or 1' if group.reflection else ''} for {group.name}, "
                             f"got {flip!r}")
        r = angle * group.n / (2 * math.pi)
        if abs(r - round(r)) > 1e-6:
            raise ValueError(f"`angle` ({math.degrees(angle):.4g} deg) is not a rotation of {group.name} "
                             f"(multiples of {360 / group.n:.4g} deg)")
        return 2 * math.pi * (int(round(r)) % group.n) / group.n, int(flip)
    return group.element(angle, flip)


# --- the Rep class ----------------------------------------------------------------------------
class Rep:
    """An orthogonal representation ``rho(g) = Q @ blockdiag(psi_i(g)) @ Q.T`` of ``group``.

    Parameters
    ----------
    group: ``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``, ``SO2()`` or ``O2()``.
    irreps: sequence of irrep ids ``(j, k)`` (see the module docstring).
    change_of_basis: orthogonal ``Q`` of shape ``(size, size)``; identity if ``None``.
    name: a label (not part of equality).

    Reps are immutable and hashable (equality: same group, irreps and ``Q``), so they can key caches.
    ``size`` is the dimension, ``rep(g)`` the ``(size, size)`` matrix of an element.
    """

    __slots__ = ("group", "irreps", "change_of_basis", "name", "size", "_perms", "_hash")

    def __init__(self, group, irreps: Sequence, change_of_basis=None, *, name: str | None = None,
                 _perms: np.ndarray | None = None):
        group = as_steerable_group(group)
        try:
            ids = tuple((int(i[0]), int(i[1])) for i in irreps)
        except (TypeError, IndexError, ValueError):
            raise TypeError(f"`irreps` must be a sequence of irrep ids (j, k), got {irreps!r}") from None
        if not ids:
            raise ValueError("`irreps` must not be empty")
        ids = tuple(_check_irrep_id(group, i) for i in ids)
        size = sum(irrep_size(group, i) for i in ids)
        if change_of_basis is None:
            q = np.eye(size)
        else:
            q = np.array(change_of_basis, dtype=np.float64)
            if q.shape != (size, size):
                raise ValueError(f"`change_of_basis` must have shape ({size}, {size}) (the total size of "
                                 f"the irreps), got {q.shape}")
            if not np.allclose(q.T @ q, np.eye(size), atol=1e-8):
                raise ValueError("`change_of_basis` must be orthogonal (Q.T @ Q = I): equilib's "
                                 "representations are orthogonal, so that norms are invariant")
        q.setflags(write=False)
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "irreps", ids)
        object.__setattr__(self, "change_of_basis", q)
        object.__setattr__(self, "name", name or "+".join(_fmt_id(group, i) for i in ids))
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "_perms", _perms)
        object.__setattr__(self, "_hash", hash((group, ids, q.tobytes())))

    def __setattr__(self, key, value):
        raise AttributeError("Rep is immutable")

    def __eq__(self, other):
        if not isinstance(other, Rep):
            return NotImplemented
        return (self._hash == other._hash and self.group == other.group and self.irreps == other.irreps
                and np.array_equal(self.change_of_basis, other.change_of_basis))

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return f"Rep({self.group.name}, {self.name}, size={self.size})"

    def __reduce__(self):
        return (_rebuild, (self.group, self.irreps, np.asarray(self.change_of_basis), self.name, self._perms))

    # evaluation -------------------------------------------------------------------------------
    def __call__(self, *element) -> np.ndarray:
        """The matrix of a native element (index for finite groups, angle / (angle, flip) else)."""
        angle, flip = _element_angle_flip(self.group, element)
        return self._at(angle, flip)

    def at(self, angle: float, flip: int = 0) -> np.ndarray:
        """The ``(size, size)`` matrix of the element ``(angle, flip)`` (finite groups: ``angle``
        must be a multiple of ``2*pi/n``)."""
        angle, flip = _check_angle_flip(self.group, angle, flip)
        return self._at(angle, flip)

    def _at(self, angle, flip) -> np.ndarray:
        if self._perms is not None:
            g = self.group.element(int(round(angle * self.group.n / (2 * math.pi))), flip)
            return np.eye(self.size)[:, self._perms[g]].copy()
        d = _blockdiag([_irrep_matrix(self.group, i, angle, flip) for i in self.irreps])
        q = self.change_of_basis
        return q @ d @ q.T

    def character(self, *element) -> float:
        """``trace(rho(g))``."""
        return float(np.trace(self(*element)))

    # properties -------------------------------------------------------------------------------
    @property
    def irrep_sizes(self) -> tuple[int, ...]:
        return tuple(irrep_size(self.group, i) for i in self.irreps)

    @property
    def is_trivial(self) -> bool:
        return all(i == (0, 0) for i in self.irreps)

    @property
    def is_permutation(self) -> bool:
        """True if every ``rho(g)`` is a permutation matrix (regular, quotient, trivial reps):
        pointwise nonlinearities, max pooling and "inner" batch norm commute with it."""
        if self._perms is not None or self.is_trivial:
            return True
        if not isinstance(self.group, Group):
            return False
        return _is_permutation(self)

    @property
    def max_frequency(self) -> int:
        return max(k for _, k in self.irreps)

    def trivial_columns(self) -> np.ndarray:
        """``(size, t)``: orthonormal basis of the invariant vectors (columns of ``Q`` at the
        trivial irreps)."""
        cols, off = [], 0
        for i, s in zip(self.irreps, self.irrep_sizes):
            if i == (0, 0):
                cols.append(off)
            off += s
        return np.asarray(self.change_of_basis)[:, cols]

    # constructions ----------------------------------------------------------------------------
    def __add__(self, other: "Rep") -> "Rep":
        return directsum(self, other)

    def change_basis(self, matrix, *, name: str | None = None) -> "Rep":
        """``A rho(g) A.T`` for an orthogonal ``A`` of shape ``(size, size)``."""
        a = np.asarray(matrix, dtype=np.float64)
        if a.shape != (self.size, self.size):
            raise ValueError(f"`matrix` must have shape ({self.size}, {self.size}), got {a.shape}")
        if not np.allclose(a.T @ a, np.eye(self.size), atol=1e-8):
            raise ValueError("`matrix` must be orthogonal (A.T @ A = I)")
        return Rep(self.group, self.irreps, a @ self.change_of_basis, name=name or f"{self.name}'")

    def restrict(self, subgroup) -> "Rep":
        """This representation restricted to ``subgroup`` (see :func:`restrict_rep`)."""
        return restrict_rep(self, subgroup)


def _rebuild(group, irreps, q, name, perms):
    return Rep(group, irreps, q, name=name, _perms=perms)


def _blockdiag(blocks) -> np.ndarray:
    n = sum(b.shape[0] for b in blocks)
    out = np.zeros((n, n))
    o = 0
    for b in blocks:
        s = b.shape[0]
        out[o:o + s, o:o + s] = b
        o += s
    return out


@functools.cache
def _is_permutation(rep: Rep) -> bool:
    for g in range(rep.group.order):
        m = rep(g)
        r = np.round(m)
        if not np.allclose(m, r, atol=1e-8) or not np.all((r == 0) | (r == 1)):
            return False
        if not (np.all(r.sum(0) == 1) and np.all(r.sum(1) == 1)):
            return False
    return True


# --- constructors -----------------------------------------------------------------------------
@functools.cache
def irrep(group, *index) -> Rep:
    """``irrep(group, k)`` (cyclic / SO(2)) or ``irrep(group, j, k)`` (dihedral / O(2))."""
    group = as_steerable_group(group)
    if len(index) == 1 and isinstance(index[0], tuple):
        index = index[0]
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in index):
        raise TypeError(f"irrep indices must be integers, got {index!r}")
    if group.reflection:
        if len(index) != 2:
            raise TypeError(f"{group.name}.irrep takes two indices (j, k), got {index!r}")
        ident = (int(index[0]), int(index[1]))
    else:
        if len(index) == 2 and index[0] == 0:
            index = index[1:]
        if len(index) != 1:
            raise TypeError(f"{group.name}.irrep takes one index k (the frequency), got {index!r}")
        ident = (0, int(index[0]))
    ident = _check_irrep_id(group, ident)
    return Rep(group, (ident,), name=_fmt_id(group, ident))


def irreps(group, max_frequency: int | None = None) -> tuple[Rep, ...]:
    """All irreps of a finite group, or those of frequency ``<= max_frequency`` of SO(2)/O(2)."""
    group = as_steerable_group(group)
    if max_frequency is not None and (isinstance(max_frequency, bool) or not isinstance(
            max_frequency, (int, np.integer)) or max_frequency < 0):
        raise ValueError(f"`max_frequency` must be an integer >= 0, got {max_frequency!r}")
    ids = _irrep_ids(group, max_frequency)
    if isinstance(group, Group) and max_frequency is not None:
        ids = tuple(i for i in ids if i[1] <= max_frequency)
    return tuple(irrep(group, *i) for i in ids)


@functools.cache
def trivial_rep(group) -> Rep:
    """The one-dimensional trivial representation (a scalar field)."""
    return Rep(as_steerable_group(group), ((0, 0),), name="trivial")


def _permutation_rep(group: Group, perms: np.ndarray, name: str) -> Rep:
    """Decompose the permutation representation ``rho(g) e_h = e_{perms[g, h]}``."""
    n = perms.shape[1]
    mats = np.zeros((group.order, n, n))
    for g in range(group.order):
        mats[g, perms[g], np.arange(n)] = 1.0
    ids, q = _decompose(group, mats)
    perms = np.array(perms, dtype=np.int64)
    perms.setflags(write=False)
    return Rep(group, ids, q, name=name, _perms=perms)


@functools.cache
def regular_rep(group: Group) -> Rep:
    """The regular representation of a finite group: ``rho(g) e_h = e_{g o h}`` (size ``|G|``)."""
    if not isinstance(group, Group):
        raise TypeError(f"the regular representation needs a finite group (Cyclic/Dihedral); for "
                        f"{getattr(group, 'name', group)} use bandlimited_regular_rep(max_frequency)")
    return _permutation_rep(group, group.cayley_table(), "regular")


def quotient_rep(group: Group, sub) -> Rep:
    """The permutation representation of a finite group on the cosets ``G / sub``.

    ``sub`` is a subgroup given as a ``Group`` (``Cyclic(m)`` with ``m | n``, or ``Dihedral(m)``:
    the rotations by multiples of ``2*pi/m`` and, for ``Dihedral``, the same mirrors) or as a
    sequence of element indices closed under composition. Cosets ``gH`` are ordered by their
    smallest element index; ``rho(g) e_{cH} = e_{g c H}``.
    """
    if not isinstance(group, Group):
        raise TypeError(f"`group` must be a finite Group for quotient representations, got "
                        f"{type(group).__name__}")
    if isinstance(sub, Group):
        elems = tuple(int(e) for e in group.subgroup_elements(sub))
    else:
        try:
            elems = tuple(sorted({group._check(int(e)) for e in sub}))
        except TypeError:
            raise TypeError(f"`sub` must be a Group or a sequence of element indices, got {sub!r}") from None
    return _quotient_rep(group, tuple(sorted(elems)))


@functools.cache
def _quotient_rep(group: Group, elems: tuple[int, ...]) -> Rep:
    table = group.cayley_table()
    h = set(elems)
    if 0 not in h or any(int(table[a, b]) not in h for a in h for b in h):
        raise ValueError(f"`sub` (elements {list(elems)}) is not a subgroup of {group.name}")
    cosets, index = [], {}
    for g in range(group.order):
        if g in index:
            continue
        c = sorted(int(table[g, x]) for x in elems)
        for e in c:
            index[e] = len(cosets)
        cosets.append(c[0])
    perms = np.array([[index[int(table[g, c])] for c in cosets] for g in range(group.order)])
    return _permutation_rep(group, perms, f"quotient[{group.order // len(elems)}]")


def bandlimited_regular_rep(group: PlanarLieGroup, max_frequency: int) -> Rep:
    """Band-limited regular representation of SO(2) / O(2) (see
    :meth:`equilib.groups.PlanarLieGroup.bandlimited_regular_rep`)."""
    group = as_steerable_group(group)
    if isinstance(group, Group):
        raise TypeError(f"{group.name} is finite: use its regular_rep")
    if isinstance(max_frequency, bool) or not isinstance(max_frequency, (int, np.integer)) or max_frequency < 0:
        raise ValueError(f"`max_frequency` must be an integer >= 0, got {max_frequency!r}")
    if group.reflection:
        ids = [(0, 0), (1, 0)] + [(1, k) for k in range(1, max_frequency + 1) for _ in range(2)]
    else:
        ids = [(0, k) for k in range(max_frequency + 1)]
    return Rep(group, ids, name=f"regular[L={max_frequency}]")


def directsum(*reps: Rep, name: str | None = None) -> Rep:
    """The direct sum ``rho_1 + rho_2 + ...`` (block-diagonal, in order)."""
    if len(reps) == 1 and isinstance(reps[0], (list, tuple)):
        reps = tuple(reps[0])
    if not reps:
        raise ValueError("directsum needs at least one representation")
    for i, r in enumerate(reps):
        if not isinstance(r, Rep):
            raise TypeError(f"directsum argument {i} must be a Rep, got {type(r).__name__}")
        if r.group != reps[0].group:
            raise ValueError(f"directsum argument {i} is a representation of {r.group.name}, expected "
                             f"{reps[0].group.name} (as argument 0)")
    q = _blockdiag([np.asarray(r.change_of_basis) for r in reps])
    perms = None
    if all(r._perms is not None for r in reps):
        offs = np.cumsum([0] + [r.size for r in reps[:-1]])
        perms = np.concatenate([r._perms + o for r, o in zip(reps, offs)], axis=1)
        perms.setflags(write=False)
    ids = sum((r.irreps for r in reps), ())
    return Rep(reps[0].group, ids, q, name=name or " + ".join(r.name for r in reps), _perms=perms)


# --- restriction ------------------------------------------------------------------------------
def _subgroup_elements_angle_flip(group, sub) -> list[tuple[float, int]]:
    """``(angle, flip)`` of every element of ``sub`` (in ``sub``'s order), checking ``sub <= group``."""
    if isinstance(sub, Group):
        if isinstance(group, Group):
            group.subgroup_elements(sub)  # raises if not a subgroup
        elif sub.reflection and not group.reflection:
            raise ValueError(f"`subgroup` ({sub.name}) is not a subgroup of {group.name}")
        return [(sub.angle(g), sub.flip(g)) for g in range(sub.order)]
    raise TypeError(f"`subgroup` must be a finite Group here, got {type(sub).__name__}")


def restrict_rep(rep: Rep, subgroup) -> Rep:
    """Restrict ``rep`` to ``subgroup``: ``D_N -> C_N``, ``D_N -> D_M`` / ``C_N -> C_M``
    (``M | N``), ``O(2) -> SO(2)``, ``SO(2) -> C_N``, ``O(2) -> D_N``. The restricted matrices are
    those of the same ``(angle, flip)``; the result is decomposed into the subgroup's irreps
    (keeping permutation structure, e.g. regular D16 -> two regular C16 blocks, interleaved)."""
    if not isinstance(rep, Rep):
        raise TypeError(f"`rep` must be a Rep, got {type(rep).__name__}")
    as_steerable_group(subgroup, "subgroup")
    return _restrict(rep, subgroup)


@functools.cache
def _restrict(rep: Rep, subgroup) -> Rep:
    group = rep.group
    if subgroup == group:
        return rep
    if isinstance(subgroup, PlanarLieGroup):
        if not isinstance(group, PlanarLieGroup) or (subgroup.reflection and not group.reflection):
            raise ValueError(f"`subgroup` ({subgroup.name}) is not a subgroup of {group.name}")
        # O(2) -> SO(2): (0, 0), (1, 0) -> trivial; (1, k) -> frequency k, same matrices
        return Rep(subgroup, [(0, k) for _, k in rep.irreps], rep.change_of_basis,
                   name=f"{rep.name}|{subgroup.name}")
    els = _subgroup_elements_angle_flip(group, subgroup)
    mats = np.stack([rep.at(a, f) for a, f in els])
    perms = None
    if rep._perms is not None:
        perms = np.stack([np.argmax(m, axis=0) for m in mats])
    ids, q = _decompose(subgroup, mats)
    if perms is not None:
        perms.setflags(write=False)
    return Rep(subgroup, ids, q, name=f"{rep.name}|{subgroup.name}", _perms=perms)


# --- numerical decomposition of a finite group's representation -------------------------------
def _decompose(group: Group, mats: np.ndarray) -> tuple[tuple, np.ndarray]:
    """Irreps and orthogonal ``Q`` with ``mats[g] = Q blockdiag(psi(g)) Q.T`` for an orthogonal
    representation of a finite group given by its matrices (in element-index order)."""
    order, n, _ = mats.shape
    els = [(group.angle(g), group.flip(g)) for g in range(order)]
    ids, cols = [], []
    for ident in _irrep_ids(group):
        psi = np.stack([_irrep_matrix(group, ident, a, f) for a, f in els])  # (G, d, d)
        d = psi.shape[1]
        chi_psi = np.trace(psi, axis1=1, axis2=2)
        chi_rho = np.trace(mats, axis1=1, axis2=2)
        c = float(chi_psi @ chi_psi) / order  # 1: real type, 2: complex type
        mult = int(round(float(chi_rho @ chi_psi) / order / c))
        if mult == 0:
            continue
        proj = (d / (order * c)) * np.einsum("g,gij->ij", chi_psi, mats)  # isotypic projector
        for _ in range(mult):
            # T e_k = sum_g psi(g)_kc rho(g) v intertwines psi -> rho for any v; it is injective
            # (Schur) unless v's component along psi's c-th axis vanishes: try columns of the
            # projector by decreasing norm, and both c.
            t, s = None, 0.0
            for col in np.argsort(-np.linalg.norm(proj, axis=0), kind="stable"):
                v = proj[:, col]
                for cc in range(d):
                    t = np.einsum("gij,j,gk->ik", mats, v, psi[:, :, cc])
                    s = float(np.linalg.norm(t[:, 0]))
                    if s > 1e-6:
                        break
                if s > 1e-6:
                    break
            if s <= 1e-6:
                raise ValueError("the matrices do not form an orthogonal representation of "
                                 f"{group.name}")
            t = t / s
            ids.append(ident)
            cols.append(t)
            proj = proj - t @ (t.T @ proj)
    q = np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))
    if q.shape != (n, n) or not np.allclose(q.T @ q, np.eye(n), atol=1e-8):
        raise ValueError("the matrices do not form an orthogonal representation of "
                         f"{group.name} (decomposition found {q.shape[1]} of {n} dimensions)")
    # clean rounding: Q is exact up to ~1e-15; snap tiny entries
    q = np.where(np.abs(q) < 1e-14, 0.0, q)
    return tuple(ids), q
