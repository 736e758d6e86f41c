"""What the planar :class:`equilib.fields.FieldType` and the 3D :class:`equilib.fields3d.FieldType3D`
share: an immutable, hashable, picklable ``(group, reps)`` with channel offsets, concatenation, the
fields grouped by representation, and the shape check of a map.

The subclass that names a ``rep_type`` (``FieldType``, ``FieldType3D``) is a family: equality, ``+``
and pickling keep to it (a ``FieldType`` never equals a ``FieldType3D``), and its name is the one
the messages and ``repr`` show.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, TypeVar

import numpy as np

__all__ = ["FieldTypeBase", "apply_channel_matrix"]

_T = TypeVar("_T", bound="FieldTypeBase")


class FieldTypeBase:
    """``(group, reps)``: ``size`` channels, field ``i`` at ``offsets[i] : offsets[i] + reps[i].size``.

    A subclass validates ``group`` and passes it to ``__init__``, and names in its class statement
    its representation class and the words of its error messages:
    ``class FieldType3D(FieldTypeBase, rep_type=Rep3D, rep_example="irrep3d(group, l)", sequence_of="Rep3D")``
    (``reps[i]`` must be a ``rep_type`` (e.g. ``rep_example``); ``reps`` a sequence of ``sequence_of``).
    That class is the family of its instances and of its own subclasses.
    """

    __slots__ = ("group", "reps", "size", "offsets", "_hash")

    group: Any
    reps: tuple[Any, ...]
    size: int
    offsets: tuple[int, ...]
    _hash: int

    _family: ClassVar[type[Any]]  # FieldType, FieldType3D: the class that named the rep_type
    _rep_type: ClassVar[type[Any]]  # Rep, Rep3D
    _rep_example: ClassVar[str]
    _sequence_of: ClassVar[str]

    def __init_subclass__(cls, *, rep_type: type | None = None, rep_example: str = "", sequence_of: str = "",
                          **kwargs):
        super().__init_subclass__(**kwargs)
        if rep_type is not None:
            cls._family, cls._rep_type, cls._rep_example, cls._sequence_of = cls, rep_type, rep_example, sequence_of

    def __init__(self, group, reps):
        name = self._rep_type.__name__
        if isinstance(reps, self._rep_type):
            raise TypeError(f"`reps` must be a sequence of {name} (one per field), got a single {name}; "
                            "wrap it in a list, e.g. [rep] * n")
        try:
            reps = tuple(reps)
        except TypeError:
            raise TypeError(f"`reps` must be a sequence of {self._sequence_of}, got "
                            f"{type(reps).__name__}") from None
        if not reps:
            raise ValueError("`reps` must contain at least one representation (field)")
        for i, r in enumerate(reps):
            if not isinstance(r, self._rep_type):
                raise TypeError(f"`reps[{i}]` must be a {name} (e.g. {self._rep_example}), got {type(r).__name__}")
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
        raise AttributeError(f"{self._family.__name__} is immutable")

    def __reduce__(self):
        return (self._family, (self.group, self.reps))

    def __eq__(self, other):
        if not isinstance(other, self._family):
            return NotImplemented
        return self._hash == other._hash and self.group == other.group and self.reps == other.reps

    def __hash__(self):
        return self._hash

    def __len__(self):
        return len(self.reps)

    def __iter__(self):
        return iter(self.reps)

    def __add__(self: _T, other: _T) -> _T:
        if not isinstance(other, self._family):
            return NotImplemented
        if other.group != self.group:
            raise ValueError(f"cannot concatenate field types of {self.group.name} and {other.group.name}")
        return self._family(self.group, self.reps + other.reps)

    def __repr__(self):
        counts: dict[str, int] = {}
        for r in self.reps:
            counts[r.name] = counts.get(r.name, 0) + 1
        body = ", ".join(f"{n}x{name}" for name, n in counts.items())
        return f"{self._family.__name__}({self.group.name}, [{body}], size={self.size})"

    def field_slice(self, i: int) -> slice:
        """Channels of field ``i``."""
        return slice(self.offsets[i], self.offsets[i] + self.reps[i].size)

    def groups(self):
        """Fields grouped by representation: a tuple of ``(rep, fields, channels)`` with the field
        indices ``fields`` (``(n,)``) and their channel indices ``channels`` (``(n, rep.size)``),
        in order of first appearance."""
        return _groups(self)

    def _check_shape(self, x, name: str, layer: str | None, rank: int, layout: str):
        """``x``, or a ``ValueError`` unless it has rank ``rank`` and ``size`` channels (``layout``:
        e.g. ``"map of rank 4 (batch, H, W, D=7)"``, in the message)."""
        where = f"{layer}: " if layer else ""
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != rank:
            raise ValueError(f"{where}`{name}` must be a steerable {layout}, got shape {shape}")
        if shape[-1] != self.size:
            raise ValueError(f"{where}`{name}` has {shape[-1]} channels but its field type {self!r} has "
                             f"size {self.size} (shape {shape})")
        return x


@functools.cache
def _groups(ft: FieldTypeBase):
    order: dict[Any, list[int]] = {}
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


def apply_channel_matrix(y, m: np.ndarray):
    """``y @ m.T`` on the channel axis in ``y``'s dtype, numpy in numpy out, jax otherwise."""
    if isinstance(y, np.ndarray):
        return (y @ m.T).astype(y.dtype, copy=False)
    import jax.numpy as jnp

    return y @ jnp.asarray(m.T, dtype=y.dtype)
