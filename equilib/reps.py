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
:meth:`equilib.groups.Group.regular_matrix`), with ``Q`` found numerically (in numpy,
once per group: the functions are cached on the frozen group objects).

The representations of a group are functions of this module, not methods of the group:
``regular_rep(G)``, ``irrep(G, k)`` / ``irrep(G, j, k)``, ``irreps(G)``, ``trivial_rep(G)``,
``quotient_rep(G, sub)``, ``bandlimited_regular_rep(G, L)``.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import numpy.typing as npt

from equilib._src.repmath import (
    blockdiag,
    check_angle_flip,
    check_irrep_id,
    element_angle_flip,
    format_irrep_id,
    irrep_ids,
    irrep_matrix,
    irrep_size,
)
from equilib._src.tolerances import INTERTWINER_MIN_NORM, MATRIX_ATOL, ZERO_SNAP
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


def as_steerable_group(group, name: str = "group"):
    """Validate a group argument of the steerable layers: a finite ``Group`` or ``SO2()``/``O2()``.

    Args:
        group: the value to check.
        name: the argument's name in the error message.

    Returns:
        ``group`` itself.

    Raises:
        TypeError: ``group`` is neither a :class:`~equilib.groups.Group` nor ``SO2()``/``O2()``.

    Example:
        >>> from equilib import SO2
        >>> from equilib.reps import as_steerable_group
        >>> as_steerable_group(SO2())
        SO2()
        >>> as_steerable_group(4, "in_group")
        Traceback (most recent call last):
            ...
        TypeError: `in_group` must be an equilib group (Cyclic(n), Dihedral(n), Trivial(), SO2() or O2()), got int
    """
    if not isinstance(group, (Group, PlanarLieGroup)):
        raise TypeError(f"`{name}` must be an equilib group (Cyclic(n), Dihedral(n), Trivial(), SO2() "
                        f"or O2()), got {type(group).__name__}")
    return group


# --- irreps -----------------------------------------------------------------------------------
def irrep_frequency(ident) -> int:
    """The rotation frequency ``k`` of the irrep ``(j, k)``.

    Args:
        ident: an irrep id, a pair ``(j, k)`` (e.g. an entry of ``Rep.irreps``).

    Returns:
        ``k`` as an int: the irrep rotates by ``k`` times the element's angle.

    Example:
        >>> from equilib import Dihedral
        >>> from equilib.reps import irrep_frequency, regular_rep
        >>> [irrep_frequency(i) for i in regular_rep(Dihedral(4)).irreps]
        [0, 0, 1, 1, 2, 2]
    """
    return int(ident[1])


# --- the Rep class ----------------------------------------------------------------------------
class Rep:
    """An orthogonal representation ``rho(g) = Q @ blockdiag(psi_i(g)) @ Q.T`` of ``group``.

    Reps are immutable and hashable (equality: same group, irreps and ``Q``), so they can key caches.
    ``size`` is the dimension, ``rep(g)`` the ``(size, size)`` float64 matrix of a native element
    (an index for finite groups, an angle for SO(2), ``(angle, flip)`` for O(2)) and
    ``rep.at(angle, flip)`` that of any element; ``rep + other`` is :func:`directsum`. Usually
    built by the constructors of this module (:func:`irrep`, :func:`regular_rep`, ...).

    Args:
        group: ``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``, ``SO2()`` or ``O2()``.
        irreps: sequence of irrep ids ``(j, k)`` (see the module docstring), at least one.
        change_of_basis: orthogonal ``Q`` of shape ``(size, size)``, ``size`` the sum of the
            irreps' sizes; identity if ``None``.
        name: a label (not part of equality); default the irreps' names joined by "+".

    Raises:
        TypeError: ``group`` is not an equilib group, or ``irreps`` not a sequence of pairs.
        ValueError: ``irreps`` is empty or holds an id that is not an irrep of ``group``;
            ``change_of_basis`` has the wrong shape or is not orthogonal.

    Example:
        >>> import numpy as np
        >>> from equilib import SO2
        >>> from equilib.reps import Rep
        >>> rho = Rep(SO2(), [(0, 0), (0, 1)])  # a scalar and a vector
        >>> rho
        Rep(SO2, irrep(0)+irrep(1), size=3)
        >>> rho(np.pi / 2).round(6)  # a quarter turn
        array([[ 1.,  0.,  0.],
               [ 0.,  0., -1.],
               [ 0.,  1.,  0.]])
    """

    group: Group | PlanarLieGroup
    irreps: tuple[tuple[int, int], ...]
    change_of_basis: np.ndarray
    name: str
    size: int
    _perms: npt.NDArray[np.int64] | None
    _hash: int

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
        ids = tuple(check_irrep_id(group, i) for i in ids)
        size = sum(irrep_size(group, i) for i in ids)
        if change_of_basis is None:
            q = np.eye(size)
        else:
            q = np.array(change_of_basis, dtype=np.float64)
            if q.shape != (size, size):
                raise ValueError(f"`change_of_basis` must have shape ({size}, {size}) (the total size of "
                                 f"the irreps), got {q.shape}")
            if not np.allclose(q.T @ q, np.eye(size), atol=MATRIX_ATOL):
                raise ValueError("`change_of_basis` must be orthogonal (Q.T @ Q = I): equilib's "
                                 "representations are orthogonal, so that norms are invariant")
        q.setflags(write=False)
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "irreps", ids)
        object.__setattr__(self, "change_of_basis", q)
        object.__setattr__(self, "name", name or "+".join(format_irrep_id(group, i) for i in ids))
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
        angle, flip = element_angle_flip(self.group, element)
        return self._at(angle, flip)

    def at(self, angle: float, flip: int = 0) -> np.ndarray:
        """The ``(size, size)`` matrix of the element ``(angle, flip)`` (finite groups: ``angle``
        must be a multiple of ``2*pi/n``)."""
        angle, flip = check_angle_flip(self.group, angle, flip)
        return self._at(angle, flip)

    def _at(self, angle, flip) -> np.ndarray:
        if self._perms is not None and isinstance(self.group, Group):  # permutation reps are finite
            g = self.group.element(int(round(angle * self.group.n / (2 * math.pi))), flip)
            return np.eye(self.size)[:, self._perms[g]].copy()
        d = blockdiag([irrep_matrix(self.group, i, angle, flip) for i in self.irreps])
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
        if not np.allclose(a.T @ a, np.eye(self.size), atol=MATRIX_ATOL):
            raise ValueError("`matrix` must be orthogonal (A.T @ A = I)")
        return Rep(self.group, self.irreps, a @ self.change_of_basis, name=name or f"{self.name}'")

    def restrict(self, subgroup) -> "Rep":
        """This representation restricted to ``subgroup`` (see :func:`restrict_rep`)."""
        return restrict_rep(self, subgroup)


def _rebuild(group, irreps, q, name, perms):
    return Rep(group, irreps, q, name=name, _perms=perms)


@functools.cache
def _is_permutation(rep: Rep) -> bool:
    if not isinstance(rep.group, Group):
        return False
    for g in range(rep.group.order):
        m = rep(g)
        r = np.round(m)
        if not np.allclose(m, r, atol=MATRIX_ATOL) or not np.all((r == 0) | (r == 1)):
            return False
        if not (np.all(r.sum(0) == 1) and np.all(r.sum(1) == 1)):
            return False
    return True


# --- constructors -----------------------------------------------------------------------------
@functools.cache
def irrep(group, *index) -> Rep:
    """The irreducible representation ``irrep(group, k)`` (cyclic / SO(2)) or
    ``irrep(group, j, k)`` (dihedral / O(2)); ids and matrices in the module docstring.

    Args:
        group: ``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``, ``SO2()`` or ``O2()``.
        *index: the frequency ``k`` (cyclic / SO(2); ``0, k`` is accepted too), or ``j, k``
            (dihedral / O(2)), or one tuple of them.

    Returns:
        The irrep as a :class:`Rep` of size 1 or 2 (cached: the same object for the same id).

    Raises:
        TypeError: ``group`` is not an equilib group, or the indices are not integers or not as
            many as the group needs.
        ValueError: ``(j, k)`` is not an irrep of ``group`` (e.g. ``k > n // 2`` for ``C_n``).

    Example:
        >>> from equilib.groups import Cyclic, Dihedral
        >>> irrep(Cyclic(4), 1).size, irrep(Dihedral(4), 1, 0).size
        (2, 1)
    """
    group = as_steerable_group(group)
    if len(index) == 1 and isinstance(index[0], tuple):
        index = index[0]
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in index):
        raise TypeError(f"irrep indices must be integers, got {index!r}")
    if group.reflection:
        if len(index) != 2:
            raise TypeError(f"irrep of {group.name} takes two indices (j, k), got {index!r}")
        ident = (int(index[0]), int(index[1]))
    else:
        if len(index) == 2 and index[0] == 0:
            index = index[1:]
        if len(index) != 1:
            raise TypeError(f"irrep of {group.name} takes one index k (the frequency), got {index!r}")
        ident = (0, int(index[0]))
    ident = check_irrep_id(group, ident)
    return Rep(group, (ident,), name=format_irrep_id(group, ident))


def irreps(group, max_frequency: int | None = None) -> tuple[Rep, ...]:
    """All irreps of a finite group, or those of frequency ``<= max_frequency`` of SO(2)/O(2),
    in escnn's order.

    Args:
        group: ``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``, ``SO2()`` or ``O2()``.
        max_frequency: keep the irreps of frequency ``k <= max_frequency``; required for
            SO(2)/O(2), which have infinitely many; optional for finite groups.

    Returns:
        A tuple of :class:`Rep`, one per irrep.

    Raises:
        TypeError: ``group`` is not an equilib group.
        ValueError: ``max_frequency`` is not an integer >= 0, or missing for SO(2)/O(2).

    Example:
        >>> from equilib.groups import SO2, Dihedral
        >>> len(irreps(Dihedral(4))), len(irreps(SO2(), 2))
        (5, 3)
    """
    group = as_steerable_group(group)
    if max_frequency is not None and (isinstance(max_frequency, bool) or not isinstance(
            max_frequency, (int, np.integer)) or max_frequency < 0):
        raise ValueError(f"`max_frequency` must be an integer >= 0, got {max_frequency!r}")
    ids = irrep_ids(group, max_frequency)
    if isinstance(group, Group) and max_frequency is not None:
        ids = tuple(i for i in ids if i[1] <= max_frequency)
    return tuple(irrep(group, *i) for i in ids)


@functools.cache
def trivial_rep(group) -> Rep:
    """The one-dimensional trivial representation (a scalar field).

    Args:
        group: ``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``, ``SO2()`` or ``O2()``.

    Returns:
        The :class:`Rep` of size 1 with ``rho(g) = [[1]]`` for every ``g`` (cached).

    Raises:
        TypeError: ``group`` is not an equilib group.

    Example:
        >>> from equilib.groups import SO2
        >>> trivial_rep(SO2()).size
        1
    """
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
    """The regular representation of a finite group: ``rho(g) e_h = e_{g o h}`` (size ``|G|``),
    the permutation matrices of :meth:`equilib.groups.Group.regular_matrix`, with its
    decomposition into irreps.

    Args:
        group: a finite group, ``Cyclic(n)``, ``Dihedral(n)`` or ``Trivial()``.

    Returns:
        The :class:`Rep` of size ``|G|`` (cached per group); a field of it is one channel per
        group element, in element order, as the group axis of a regular map.

    Raises:
        TypeError: ``group`` is not a finite group (for SO(2)/O(2) use
            :func:`bandlimited_regular_rep`).

    Example:
        >>> import numpy as np
        >>> from equilib.groups import Cyclic
        >>> R = regular_rep(Cyclic(4))
        >>> R.size, bool(np.array_equal(R(1), Cyclic(4).regular_matrix(1)))
        (4, True)
    """
    if not isinstance(group, Group):
        raise TypeError(f"the regular representation needs a finite group (Cyclic/Dihedral); for "
                        f"{getattr(group, 'name', group)} use bandlimited_regular_rep(group, max_frequency)")
    return _permutation_rep(group, group.cayley_table(), "regular")


def quotient_rep(group: Group, sub) -> Rep:
    """The permutation representation of a finite group on the cosets ``G / sub``.

    ``sub`` is a subgroup given as a ``Group`` (``Cyclic(m)`` with ``m | n``, or ``Dihedral(m)``:
    the rotations by multiples of ``2*pi/m`` and, for ``Dihedral``, the same mirrors) or as a
    sequence of element indices closed under composition. Cosets ``gH`` are ordered by their
    smallest element index; ``rho(g) e_{cH} = e_{g c H}``.

    Args:
        group: a finite group, ``Cyclic(n)`` or ``Dihedral(n)``.
        sub: the subgroup ``H``: a :class:`~equilib.groups.Group` or a sequence of element
            indices of ``group``.

    Returns:
        The permutation :class:`Rep` of size ``|G| / |H|`` (cached), decomposed into irreps.

    Raises:
        TypeError: ``group`` is not a finite group, or ``sub`` neither a Group nor a sequence of
            element indices.
        ValueError: ``sub`` is not a subgroup of ``group`` (or holds an index out of range).

    Example:
        >>> from equilib.groups import Cyclic, Dihedral
        >>> quotient_rep(Dihedral(8), Cyclic(8)).size  # D8 / C8: the sign of the mirror
        2
    """
    if not isinstance(group, Group):
        raise TypeError(f"`group` must be a finite Group for quotient representations, got "
                        f"{type(group).__name__}")
    if isinstance(sub, Group):
        elems = tuple(int(e) for e in group.subgroup_elements(sub))
    else:
        try:
            elems = tuple(sorted({group.check_element(int(e)) for e in sub}))
        except TypeError:
            raise TypeError(f"`sub` must be a Group or a sequence of element indices, got {sub!r}") from None
    return _quotient_rep(group, tuple(sorted(elems)))


@functools.cache
def _quotient_rep(group: Group, elems: tuple[int, ...]) -> Rep:
    table = group.cayley_table()
    h = set(elems)
    if 0 not in h or any(int(table[a, b]) not in h for a in h for b in h):
        raise ValueError(f"`sub` (elements {list(elems)}) is not a subgroup of {group.name}")
    cosets: list[int] = []
    index: dict[int, int] = {}
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
    """The regular representation of SO(2) / O(2) band-limited to ``max_frequency`` (functions
    on the group with Fourier modes up to that frequency): SO(2): ``psi_0 + psi_1 + ... + psi_L``;
    O(2): ``psi_00 + psi_10 + 2 x psi_1k`` for ``k = 1..L``.

    Args:
        group: ``SO2()`` or ``O2()``.
        max_frequency: the band limit ``L``, an int >= 0.

    Returns:
        A :class:`Rep` of size ``2L + 1`` (SO(2)) or ``4L + 2`` (O(2)).

    Raises:
        TypeError: ``group`` is finite (use :func:`regular_rep`) or not an equilib group.
        ValueError: ``max_frequency`` is not an integer >= 0.

    Example:
        >>> from equilib.groups import O2, SO2
        >>> bandlimited_regular_rep(SO2(), 3).size, bandlimited_regular_rep(O2(), 2).size
        (7, 10)
    """
    group = as_steerable_group(group)
    if isinstance(group, Group):
        raise TypeError(f"{group.name} is finite: use regular_rep({group!r})")
    if isinstance(max_frequency, bool) or not isinstance(max_frequency, (int, np.integer)) or max_frequency < 0:
        raise ValueError(f"`max_frequency` must be an integer >= 0, got {max_frequency!r}")
    if group.reflection:
        ids = [(0, 0), (1, 0)] + [(1, k) for k in range(1, max_frequency + 1) for _ in range(2)]
    else:
        ids = [(0, k) for k in range(max_frequency + 1)]
    return Rep(group, ids, name=f"regular[L={max_frequency}]")


def directsum(*reps: Rep, name: str | None = None) -> Rep:
    """The direct sum ``rho_1 + rho_2 + ...`` (block-diagonal, in order); also ``rho_1 + rho_2``.

    Args:
        *reps: representations of the same group (or one list of them), at least one.
        name: a label for the sum; default the names joined by " + ".

    Returns:
        A :class:`Rep` of size ``sum(r.size)``; a sum of permutation representations stays one.

    Raises:
        TypeError: an argument is not a :class:`Rep`.
        ValueError: no argument, or representations of different groups.

    Example:
        >>> from equilib import Dihedral
        >>> from equilib.reps import directsum, irrep, trivial_rep
        >>> G = Dihedral(4)
        >>> rho = directsum(irrep(G, 1, 1), trivial_rep(G))
        >>> rho, rho.irreps
        (Rep(D4, irrep(1, 1) + trivial, size=3), ((1, 1), (0, 0)))
        >>> rho(1)  # a quarter turn: the vector rotates, the scalar stays
        array([[ 0., -1.,  0.],
               [ 1.,  0.,  0.],
               [ 0.,  0.,  1.]])
    """
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
    q = blockdiag([np.asarray(r.change_of_basis) for r in reps])
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
    (keeping permutation structure, e.g. regular D16 -> two regular C16 blocks, interleaved).

    Args:
        rep: the representation to restrict.
        subgroup: a subgroup of ``rep.group``: a finite group, or ``SO2()`` for ``O2()``.

    Returns:
        A :class:`Rep` of ``subgroup`` of the same size (cached).

    Raises:
        TypeError: ``rep`` is not a :class:`Rep` or ``subgroup`` not an equilib group.
        ValueError: ``subgroup`` is not a subgroup of ``rep.group``.

    Example:
        >>> from equilib import Cyclic, Dihedral
        >>> from equilib.reps import regular_rep, restrict_rep
        >>> rho = restrict_rep(regular_rep(Dihedral(4)), Cyclic(4))
        >>> rho, rho.irreps
        (Rep(C4, regular|C4, size=8), ((0, 0), (0, 0), (0, 1), (0, 1), (0, 2), (0, 2)))
    """
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
    for ident in irrep_ids(group):
        psi = np.stack([irrep_matrix(group, ident, a, f) for a, f in els])  # (G, d, d)
        d = psi.shape[1]
        chi_psi = np.trace(psi, axis1=1, axis2=2)
        chi_rho = np.trace(mats, axis1=1, axis2=2)
        c = float(chi_psi @ chi_psi) / order  # 1: real type, 2: complex type
        mult = int(round(float(chi_rho @ chi_psi) / order / c))
        if mult == 0:
            continue
        proj = (d / (order * c)) * np.einsum("g,gij->ij", chi_psi, mats)  # isotypic projector
        for _ in range(mult):
            t = _intertwiner(mats, psi, proj)
            if t is None:
                raise ValueError("the matrices do not form an orthogonal representation of "
                                 f"{group.name}")
            ids.append(ident)
            cols.append(t)
            proj = proj - t @ (t.T @ proj)
    q = np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))
    if q.shape != (n, n) or not np.allclose(q.T @ q, np.eye(n), atol=MATRIX_ATOL):
        raise ValueError("the matrices do not form an orthogonal representation of "
                         f"{group.name} (decomposition found {q.shape[1]} of {n} dimensions)")
    # clean rounding: Q is exact up to ~1e-15; snap tiny entries
    q = np.where(np.abs(q) < ZERO_SNAP, 0.0, q)
    return tuple(ids), q


def _intertwiner(mats: np.ndarray, psi: np.ndarray, proj: np.ndarray) -> np.ndarray | None:
    """An isometric intertwiner ``(n, d)`` from the irrep ``psi`` (``(G, d, d)``) into the
    representation ``mats`` (``(G, n, n)``) inside the range of the isotypic projector ``proj``,
    or ``None`` if there is none."""
    # T e_k = sum_g psi(g)_kc rho(g) v intertwines psi -> rho for any v; it is injective (Schur)
    # unless v's component along psi's c-th axis vanishes: try columns of the projector by
    # decreasing norm, and every c.
    for col in np.argsort(-np.linalg.norm(proj, axis=0), kind="stable"):
        v = proj[:, col]
        for cc in range(psi.shape[1]):
            t = np.einsum("gij,j,gk->ik", mats, v, psi[:, :, cc])
            s = float(np.linalg.norm(t[:, 0]))
            if s > INTERTWINER_MIN_NORM:
                return t / s
    return None
