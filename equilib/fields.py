"""Field types: how the channel axis of a steerable feature map transforms.

A steerable feature map is an array ``(B, H, W, D)`` (channels-last). Its channel axis is the
concatenation of *fields*, one per representation of its :class:`FieldType`: field ``i`` occupies
channels ``offsets[i] : offsets[i] + reps[i].size`` and ``D = sum(rep.size)``. An element ``g``
acts on the map by moving pixels and mixing each field's channels:

    (g.f)(p) = rho(g) f(g^-1 p),       rho = reps[0] + reps[1] + ...   (block diagonal)

with the spatial convention of :mod:`equilib.groups` (counter-clockwise as displayed, mirror of
the width axis). A regular field of a finite group has channels in element order ``g = f*n + k``,
so ``FieldType(G, [regular_rep(G)] * C)`` (:func:`equilib.reps.regular_rep`) describes a
flattened regular map ``(B, H, W, C*|G|)`` of
:class:`equilib.nn.GroupConv` (channel ``c*|G| + g``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from equilib._src.fieldtype import FieldTypeBase, apply_channel_matrix
from equilib._src.repmath import blockdiag, check_angle_flip
from equilib.groups import O2, Group, PlanarLieGroup
from equilib.reps import Rep, as_steerable_group, directsum

__all__ = ["FieldType"]


class FieldType(FieldTypeBase, rep_type=Rep, rep_example="regular_rep(group), irrep(group, k)",
                sequence_of="Rep (one per field)"):
    """The type ``(group, reps)`` of a steerable feature map ``(B, H, W, D)``.

    Immutable and hashable. ``size`` is ``D``; ``len(ft)`` the number of fields; ``offsets[i]``
    the first channel of field ``i``; ``ft + other`` concatenates the fields of two types of the
    same group. ``ft.transform(x, angle, flip)`` applies a group element to a map ``x``
    ``(..., H, W, D)`` as the module docstring defines.

    Args:
        group: ``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``, ``SO2()`` or ``O2()``.
        reps: one :class:`~equilib.reps.Rep` of ``group`` per field, in channel order (a list,
            e.g. ``[regular_rep(G)] * 8``, not a single Rep).

    Raises:
        TypeError: ``group`` is not an equilib group, ``reps`` is a single Rep or not a sequence
            of Rep.
        ValueError: ``reps`` is empty or holds a representation of another group.

    Example:
        >>> import numpy as np
        >>> from equilib import Cyclic, FieldType
        >>> from equilib.reps import irrep, regular_rep, trivial_rep
        >>> G = Cyclic(4)
        >>> ft = FieldType(G, [trivial_rep(G), irrep(G, 1), regular_rep(G)])
        >>> ft
        FieldType(C4, [1xtrivial, 1xirrep(1), 1xregular], size=7)
        >>> ft.size, len(ft), ft.offsets, ft.field_slice(2)
        (7, 3, (0, 1, 3), slice(3, 7, None))
        >>> x = np.ones((2, 5, 5, ft.size), np.float32)  # (B, H, W, D)
        >>> ft.transform(x, np.pi / 2).shape
        (2, 5, 5, 7)
    """

    group: Group | PlanarLieGroup
    reps: tuple[Rep, ...]

    __slots__ = ()

    def __init__(self, group, reps: Sequence[Rep]):
        super().__init__(as_steerable_group(group), reps)

    # --- structure ------------------------------------------------------------------------------
    @property
    def representation(self) -> Rep:
        """The direct sum of the fields' representations (size ``D``)."""
        return directsum(*self.reps, name=repr(self))

    @property
    def is_permutation(self) -> bool:
        """True if every field's representation is a permutation representation."""
        return all(r.is_permutation for r in self.reps)

    @property
    def is_trivial(self) -> bool:
        return all(r.is_trivial for r in self.reps)

    def matrix(self, angle: float, flip: int = 0) -> np.ndarray:
        """``(D, D)`` block-diagonal matrix of the element ``(angle, flip)`` on the channels."""
        return blockdiag([r.at(angle, flip) for r in self.reps])

    def transform(self, x, angle: float, flip: int = 0):
        """Apply ``(angle, flip)`` to a map ``x`` of shape ``(..., H, W, D)``: pixels move (exactly
        for multiples of 90 degrees, bilinear otherwise, see :mod:`equilib.groups`) and each field
        is multiplied by ``rho(g)``."""
        self.check(x, "x")
        angle, flip = check_angle_flip(self.group, angle, flip)
        m = self.matrix(angle, flip)
        return apply_channel_matrix(O2().transform_image(x, angle, flip, axes=(-3, -2)), m)

    def restrict(self, subgroup) -> "FieldType":
        """The same fields seen as a type of ``subgroup`` (e.g. ``Dihedral(16) -> Cyclic(16)``)."""
        return FieldType(subgroup, [r.restrict(subgroup) for r in self.reps])

    # --- checks ---------------------------------------------------------------------------------
    def check(self, x, name: str = "x", layer: str | None = None):
        """Raise a ``ValueError`` unless ``x`` is a map ``(B, H, W, D)`` of this type."""
        return self._check_shape(x, name, layer, 4, f"map of rank 4 (batch, H, W, D={self.size})")


def as_field_type(value, name: str) -> FieldType:
    if not isinstance(value, FieldType):
        raise TypeError(f"`{name}` must be an equilib.fields.FieldType, got {type(value).__name__}")
    return value
