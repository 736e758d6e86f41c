"""Field types of steerable volumes ``(B, D, H, W, C)``: representations of SO(3), O(3) and the
octahedral groups, and :class:`FieldType3D`, the type of a map.

A representation here is a Wigner-D matrix of degree ``l`` (:mod:`equilib._src.so3`: real, orthogonal,
``Y_l(R p) = D^l(R) Y_l(p)`` for the real spherical harmonics), seen as a representation of
``SO3()``, of ``O3()`` (with parity ``(-1)^l`` under the inversion, or ``(-1)^(l+1)`` for a
*pseudo*-tensor: ``det(R) D^l(R)``), or restricted to the grid rotations ``Octahedral()`` /
``FullOctahedral()``. Degree 0 is a scalar (a pseudo-scalar with ``pseudo=True``), degree 1 a vector:
``D^1(R) = P R P^T`` with ``P`` the permutation ``(x, y, z) -> (y, z, x)`` (the harmonics' order).
A map of type ``t`` transforms as ``(R.f)(p) = rho(R) f(R^-1 p)``, ``rho`` the block-diagonal sum of
its fields' matrices (:meth:`FieldType3D.transform`). Regular fields of the octahedral groups are the
regular maps of :class:`equilib.nn.GroupConv` (``(B, D, H, W, C, |G|)``), not field types here.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np

from equilib._src.fieldtype import FieldTypeBase, apply_channel_matrix
from equilib._src.so3 import wigner_d
from equilib.groups3d import OctahedralGroup, SpatialLieGroup

__all__ = ["Rep3D", "irrep3d", "irreps3d", "bandlimited_regular3d", "FieldType3D"]


def _check_group(group, name: str = "group"):
    if not isinstance(group, (SpatialLieGroup, OctahedralGroup)):
        raise TypeError(f"`{name}` must be a group of 3D rotations (SO3(), O3(), Octahedral(), FullOctahedral()), "
                        f"got {type(group).__name__}")
    return group


def _has_inversion(group) -> bool:
    return bool(group.improper) if isinstance(group, SpatialLieGroup) else bool(group.inversion)


@dataclasses.dataclass(frozen=True)
class Rep3D:
    """The Wigner-D representation of degree ``l`` of a group of 3D rotations (module docstring).

    Frozen and hashable. ``rep(R)`` is the ``(2l+1, 2l+1)`` matrix of a 3x3 element ``R`` (for the
    octahedral groups also an element index). Usually built with :func:`irrep3d`.

    Args:
        group: ``SO3()``, ``O3()``, ``Octahedral()`` or ``FullOctahedral()``.
        degree: ``l >= 0``.
        pseudo: parity ``(-1)^(l+1)`` under the inversion (``det(R) D^l(R)``); only meaningful, and
            only allowed, for the groups with the inversion (``O3()``, ``FullOctahedral()``).

    Raises:
        TypeError: ``group`` is not a 3D group.
        ValueError: ``degree`` is not an int >= 0, or ``pseudo`` for a group without the inversion.

    Example:
        >>> import numpy as np
        >>> from equilib.fields3d import Rep3D
        >>> from equilib.groups3d import O3
        >>> vector, axial = Rep3D(O3(), 1), Rep3D(O3(), 1, pseudo=True)
        >>> vector.size, round(float(vector(-np.eye(3))[0, 0]), 6), round(float(axial(-np.eye(3))[0, 0]), 6)
        (3, -1.0, 1.0)
    """

    group: Any
    degree: int
    pseudo: bool = False

    def __post_init__(self):
        _check_group(self.group)
        if isinstance(self.degree, bool) or not isinstance(self.degree, (int, np.integer)) or self.degree < 0:
            raise ValueError(f"`degree` must be an integer >= 0, got {self.degree!r}")
        if self.pseudo and not _has_inversion(self.group):
            raise ValueError(f"`pseudo` needs a group with the inversion (O3(), FullOctahedral()), got "
                             f"{self.group.name}: without it a pseudo-tensor is the tensor")
        object.__setattr__(self, "degree", int(self.degree))
        object.__setattr__(self, "pseudo", bool(self.pseudo))

    @property
    def size(self) -> int:
        """``2l + 1``."""
        return 2 * self.degree + 1

    @property
    def name(self) -> str:
        return f"{'pseudo' if self.pseudo else ''}l{self.degree}"

    @property
    def is_trivial(self) -> bool:
        """True for the scalar (degree 0, not pseudo): it carries a bias and passes a pointwise nonlinearity."""
        return self.degree == 0 and not self.pseudo

    @property
    def is_permutation(self) -> bool:
        """True for the scalar only: the one Wigner-D representation that permutes channels, so
        the one a pointwise nonlinearity or an ``"inner"`` batch norm may act on."""
        return self.is_trivial

    def trivial_columns(self) -> np.ndarray:
        """``(size, t)``: an orthonormal basis of the vectors the group leaves fixed, as
        :meth:`equilib.reps.Rep.trivial_columns`: where a batch norm may subtract a mean and add a
        bias. Over SO(3)/O(3) ``t = 1`` for the scalar and 0 otherwise; over the octahedral groups
        a higher degree can hold fixed vectors too (degree 4 restricted to the cube's rotations
        holds one)."""
        return _trivial_columns(self)

    def __repr__(self) -> str:
        return f"Rep3D({self.group.name}, {self.name})"

    def __call__(self, element) -> np.ndarray:
        """The matrix of ``element`` (a 3x3 matrix of the group, or an index of an octahedral group)."""
        if isinstance(self.group, OctahedralGroup) and np.ndim(element) == 0:
            m = self.group.matrix(element)
        elif isinstance(self.group, SpatialLieGroup):
            m = self.group.element(element)
        else:
            m = self.group.matrix(self.group.element_from_matrix(element))
        d = wigner_d(self.degree, m)
        return float(np.sign(np.linalg.det(m))) * d if self.pseudo else d


def _is_subgroup(sub, group) -> bool:
    if sub == group:
        return True
    if _has_inversion(sub) and not _has_inversion(group):
        return False
    # the finite groups sit inside the Lie groups, the octahedral rotations inside the full group
    return isinstance(group, SpatialLieGroup) and isinstance(sub, (OctahedralGroup, SpatialLieGroup)) \
        or isinstance(group, OctahedralGroup) and isinstance(sub, OctahedralGroup)


@functools.cache
def _trivial_columns(rep: Rep3D) -> np.ndarray:
    if isinstance(rep.group, SpatialLieGroup):
        cols = np.ones((1, 1)) if rep.is_trivial else np.zeros((rep.size, 0))
    else:  # the range of the group average of the matrices, the projector onto the fixed vectors
        avg = np.mean([rep(g) for g in range(rep.group.order)], axis=0)
        u, s, _ = np.linalg.svd(avg)
        cols = u[:, s > 0.5]  # a projector's singular values are 0 or 1
    cols.setflags(write=False)
    return cols


def irrep3d(group, degree: int, *, pseudo: bool = False) -> Rep3D:
    """The representation of degree ``degree`` of ``group`` (:class:`Rep3D`).

    Args:
        group: ``SO3()``, ``O3()``, ``Octahedral()`` or ``FullOctahedral()``.
        degree: ``l >= 0`` (0: scalar, 1: vector, 2: traceless symmetric tensor, ...).
        pseudo: a pseudo-tensor (groups with the inversion only).

    Returns:
        The :class:`Rep3D`.

    Raises:
        TypeError, ValueError: as :class:`Rep3D`.

    Example:
        >>> from equilib.fields3d import irrep3d
        >>> from equilib.groups3d import SO3
        >>> irrep3d(SO3(), 2).size
        5
    """
    return Rep3D(group, degree, pseudo)


def _band_limit(group, max_frequency, fn: str) -> int:
    if not isinstance(_check_group(group), SpatialLieGroup):
        raise TypeError(f"{fn} needs SO3() or O3(), got {group.name}: the octahedral groups are finite "
                        f"(their regular fields are the maps of nn.GroupConv)")
    if max_frequency is None:
        max_frequency = group.max_frequency
        if max_frequency is None:
            raise ValueError(f"{fn}: give `max_frequency`, or build the group with one "
                             f"({group.name}(max_frequency=L))")
    if isinstance(max_frequency, bool) or not isinstance(max_frequency, (int, np.integer)) or max_frequency < 0:
        raise ValueError(f"`max_frequency` must be an integer >= 0, got {max_frequency!r}")
    return int(max_frequency)


def irreps3d(group, max_frequency: int | None = None) -> tuple[Rep3D, ...]:
    """The irreducible representations of SO(3) (degrees ``0..L``) or O(3) (each degree as a tensor
    and as a pseudo-tensor) up to the band limit ``L``, in order of degree.

    Args:
        group: ``SO3()`` or ``O3()``.
        max_frequency: ``L``, an int >= 0; default ``group.max_frequency``.

    Returns:
        ``L + 1`` (SO(3)) or ``2(L + 1)`` (O(3)) :class:`Rep3D`.

    Raises:
        TypeError: ``group`` is not SO3() or O3().
        ValueError: no band limit given (neither argument nor the group's), or not an int >= 0.

    Example:
        >>> from equilib.fields3d import irreps3d
        >>> from equilib.groups3d import O3
        >>> [r.name for r in irreps3d(O3(max_frequency=1))]
        ['l0', 'pseudol0', 'l1', 'pseudol1']
    """
    L = _band_limit(group, max_frequency, "irreps3d")
    parities = (False, True) if group.improper else (False,)
    return tuple(Rep3D(group, degree, pseudo) for degree in range(L + 1) for pseudo in parities)


def bandlimited_regular3d(group, max_frequency: int | None = None) -> tuple[Rep3D, ...]:
    """The fields of one band-limited function on SO(3) or O(3): the regular representation
    restricted to the degrees ``<= L`` (escnn's ``bl_regular_representation(L)``), i.e. each irrep of
    :func:`irreps3d` repeated as often as its size, ``2l + 1`` fields of degree ``l`` (and as many
    pseudo-tensors for O(3)).

    Copy ``n`` of degree ``l`` holds column ``n`` of the function's Fourier coefficient ``F_l``:
    ``f(R) = sum_l sqrt(2l+1) tr(D^l(R)^T F_l)``, so rotating the fields by ``S`` turns ``f`` into
    ``R -> f(S^-1 R)``. Build a type of ``C`` such functions with
    ``FieldType3D(G, bandlimited_regular3d(G, L) * C)``; :class:`equilib.nn.FourierPointwise`
    applies a nonlinearity to them pointwise on the group, and ``nn.SteerableConv`` maps between
    them like any fields.

    Args:
        group: ``SO3()`` or ``O3()``.
        max_frequency: ``L``, an int >= 0; default ``group.max_frequency``.

    Returns:
        A tuple of :class:`Rep3D`, ``sum_l (2l+1)`` of them for SO(3) (twice that for O(3)), of total
        size ``sum_l (2l+1)^2`` (twice for O(3)).

    Raises:
        TypeError, ValueError: as :func:`irreps3d`.

    Example:
        >>> from equilib.fields3d import FieldType3D, bandlimited_regular3d
        >>> from equilib.groups3d import SO3
        >>> G = SO3(max_frequency=2)
        >>> t = FieldType3D(G, bandlimited_regular3d(G) * 4)
        >>> len(bandlimited_regular3d(G)), t.size  # 1 + 3 + 5 fields, 1 + 9 + 25 channels per function
        (9, 140)
    """
    return tuple(r for r in irreps3d(group, max_frequency) for _ in range(r.size))


class FieldType3D(FieldTypeBase, rep_type=Rep3D, rep_example="irrep3d(group, l)", sequence_of="Rep3D"):
    """The type ``(group, reps)`` of a steerable volume ``(B, D, H, W, C)``.

    Immutable and hashable; ``size`` is ``C``, ``len(t)`` the number of fields, ``offsets[i]`` the first
    channel of field ``i``; ``t + other`` concatenates the fields of two types of the same group.

    Args:
        group: ``SO3()``, ``O3()``, ``Octahedral()`` or ``FullOctahedral()``.
        reps: one :class:`Rep3D` of ``group`` per field, in channel order (a list).

    Raises:
        TypeError: ``group`` is not a 3D group, ``reps`` a single Rep3D or not a sequence of Rep3D.
        ValueError: ``reps`` is empty or holds a representation of another group.

    Example:
        >>> import numpy as np
        >>> from equilib.fields3d import FieldType3D, irrep3d
        >>> from equilib.groups3d import SO3
        >>> G = SO3()
        >>> t = FieldType3D(G, [irrep3d(G, 0)] * 2 + [irrep3d(G, 1)])
        >>> t, t.size, t.offsets
        (FieldType3D(SO3, [2xl0, 1xl1], size=5), 5, (0, 1, 2))
        >>> x = np.ones((1, 3, 3, 3, t.size), np.float32)
        >>> t.transform(x, G.element(axis=(0, 0, 1), angle=np.pi / 2)).shape
        (1, 3, 3, 3, 5)
    """

    reps: tuple[Rep3D, ...]

    __slots__ = ()

    def __init__(self, group, reps: Sequence[Rep3D]):
        super().__init__(_check_group(group), reps)

    def matrix(self, element) -> np.ndarray:
        """``(C, C)`` block-diagonal matrix of ``element`` on the channels."""
        out = np.zeros((self.size, self.size))
        for i, r in enumerate(self.reps):
            s = self.field_slice(i)
            out[s, s] = r(element)
        return out

    def transform(self, x, element):
        """Apply ``element`` (a 3x3 matrix; an index for the octahedral groups) to a volume ``x``
        ``(..., D, H, W, C)``: voxels move (exactly for the grid rotations, trilinear otherwise) and
        each field is multiplied by its matrix."""
        self.check(x, "x")
        if isinstance(self.group, OctahedralGroup):
            g = int(element) if np.ndim(element) == 0 else self.group.element_from_matrix(element)
            y, m = self.group.transform_image(x, g), self.matrix(g)
        else:
            y, m = self.group.transform_image(x, element), self.matrix(element)
        return apply_channel_matrix(y, m)

    def restrict(self, subgroup) -> "FieldType3D":
        """The same fields seen as a type of ``subgroup``: ``O3() -> SO3()``, ``O3() -> FullOctahedral()``,
        ``SO3()`` or ``FullOctahedral() -> Octahedral()`` (and chains of them). The channels are
        unchanged: each field keeps its Wigner-D matrices, evaluated on the subgroup's elements; a
        pseudo-tensor becomes the tensor of its degree in a group without the inversion (there the two
        do not differ).

        Raises:
            TypeError: ``subgroup`` is not a 3D group.
            ValueError: ``subgroup`` is not a subgroup of ``group`` (e.g. ``SO3() -> FullOctahedral()``).
        """
        subgroup = _check_group(subgroup, "subgroup")
        if not _is_subgroup(subgroup, self.group):
            raise ValueError(f"`subgroup` ({subgroup.name}) is not a subgroup of {self.group.name}: the 3D subgroups "
                             f"are O3 > SO3, FullOctahedral > Octahedral and SO3 > Octahedral, O3 > FullOctahedral")
        keep = _has_inversion(subgroup)
        return FieldType3D(subgroup, [Rep3D(subgroup, r.degree, r.pseudo and keep) for r in self.reps])

    def check(self, x, name: str = "x", layer: str | None = None):
        """Raise a ``ValueError`` unless ``x`` is a volume ``(B, D, H, W, C)`` of this type."""
        return self._check_shape(x, name, layer, 5, f"volume of rank 5 (batch, D, H, W, C={self.size})")
