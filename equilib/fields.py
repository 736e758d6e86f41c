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

import functools
from typing import Sequence

import numpy as np

from equilib._src.repmath import blockdiag, check_angle_flip
from equilib.groups import O2, Group, PlanarLieGroup
from equilib.reps import Rep, as_steerable_group, directsum

__all__ = ["FieldType"]


class FieldType:
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
    size: int
    offsets: tuple[int, ...]
    _hash: int

    __slots__ = ("group", "reps", "size", "offsets", "_hash")

    def __init__(self, group, reps: Sequence[Rep]):
        group = as_steerable_group(group)
        if isinstance(reps, Rep):
            raise TypeError("`reps` must be a sequence of Rep (one per field), got a single Rep; "
                            "wrap it in a list, e.g. [rep] * n")
        try:
            reps = tuple(reps)
        except TypeError:
            raise TypeError(f"`reps` must be a sequence of Rep (one per field), got "
                            f"{type(reps).__name__}") from None
        if not reps:
            raise ValueError("`reps` must contain at least one representation (field)")
        for i, r in enumerate(reps):
            if not isinstance(r, Rep):
                raise TypeError(f"`reps[{i}]` must be a Rep (e.g. regular_rep(group), irrep(group, k)), "
                                f"got {type(r).__name__}")
            if r.group != group:
                raise ValueError(f"`reps[{i}]` is a representation of {r.group.name}, expected one of "
                                 f"{group.name} (the field type's group)")
        offsets = tuple(int(o) for o in np.cumsum([0] + [r.size for r in reps]))
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "reps", reps)
        object.__setattr__(self, "size", offsets[-1])
        object.__setattr__(self, "offsets", offsets[:-1])
        object.__setattr__(self, "_hash", hash((group, reps)))

    def __setattr__(self, key, value):
        raise AttributeError("FieldType is immutable")

    def __reduce__(self):
        return (FieldType, (self.group, self.reps))

    def __eq__(self, other):
        if not isinstance(other, FieldType):
            return NotImplemented
        return self._hash == other._hash and self.group == other.group and self.reps == other.reps

    def __hash__(self):
        return self._hash

    def __len__(self):
        return len(self.reps)

    def __iter__(self):
        return iter(self.reps)

    def __add__(self, other: "FieldType") -> "FieldType":
        if not isinstance(other, FieldType):
            return NotImplemented
        if other.group != self.group:
            raise ValueError(f"cannot concatenate field types of {self.group.name} and {other.group.name}")
        return FieldType(self.group, self.reps + other.reps)

    def __repr__(self):
        counts: dict[str, int] = {}
        for r in self.reps:
            counts[r.name] = counts.get(r.name, 0) + 1
        body = ", ".join(f"{n}x{name}" for name, n in counts.items())
        return f"FieldType({self.group.name}, [{body}], size={self.size})"

    # --- structure ------------------------------------------------------------------------------
    @property
    def representation(self) -> Rep:
        """The direct sum of the fields' representations (size ``D``)."""
        return directsum(*self.reps, name=repr(self))

    def field_slice(self, i: int) -> slice:
        """Channels of field ``i``."""
        return slice(self.offsets[i], self.offsets[i] + self.reps[i].size)

    @property
    def is_permutation(self) -> bool:
        """True if every field's representation is a permutation representation."""
        return all(r.is_permutation for r in self.reps)

    @property
    def is_trivial(self) -> bool:
        return all(r.is_trivial for r in self.reps)

    def groups(self):
        """Fields grouped by representation: a tuple of ``(rep, fields, channels)`` with the field
        indices ``fields`` (``(n,)``) and their channel indices ``channels`` (``(n, rep.size)``),
        in order of first appearance."""
        return _groups(self)

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
        y = O2().transform_image(x, angle, flip, axes=(-3, -2))
        if isinstance(y, np.ndarray):
            return (y @ m.T).astype(y.dtype, copy=False)
        import jax.numpy as jnp

        return y @ jnp.asarray(m.T, dtype=y.dtype)

    def restrict(self, subgroup) -> "FieldType":
        """The same fields seen as a type of ``subgroup`` (e.g. ``Dihedral(16) -> Cyclic(16)``)."""
        return FieldType(subgroup, [r.restrict(subgroup) for r in self.reps])

    # --- checks ---------------------------------------------------------------------------------
    def check(self, x, name: str = "x", layer: str | None = None):
        """Raise a ``ValueError`` unless ``x`` is a map ``(B, H, W, D)`` of this type."""
        where = f"{layer}: " if layer else ""
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 4:
            raise ValueError(f"{where}`{name}` must be a steerable map of rank 4 (batch, H, W, D={self.size}), "
                             f"got shape {shape}")
        if shape[-1] != self.size:
            raise ValueError(f"{where}`{name}` has {shape[-1]} channels but its field type {self!r} has "
                             f"size {self.size} (shape {shape})")
        return x


@functools.cache
def _groups(ft: FieldType):
    order: dict[Rep, list[int]] = {}
    for i, r in enumerate(ft.reps):
        order.setdefault(r, []).append(i)
    out = []
    for r, fields in order.items():
        f = np.array(fields, dtype=np.int64)
        ch = np.array([ft.offsets[i] for i in fields])[:, None] + np.arange(r.size)[None, :]
        f.setflags(write=False)
        ch.setflags(write=False)
        out.append((r, f, ch))
    return tuple(out)


def as_field_type(value, name: str) -> FieldType:
    if not isinstance(value, FieldType):
        raise TypeError(f"`{name}` must be an equilib.fields.FieldType, got {type(value).__name__}")
    return value
