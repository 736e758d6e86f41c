"""Representation matrices of the planar groups as plain numpy: irreps, block diagonals, elements.

The maths behind :mod:`equilib.reps` (the :class:`~equilib.reps.Rep` objects) that
:mod:`equilib.fields` and the steerable layers also use directly. Irrep ids ``(j, k)`` and
matrices are those documented in :mod:`equilib.reps` (escnn's); an element is ``(angle, flip)``
as in :mod:`equilib.groups`.
"""

from __future__ import annotations

import math

import numpy as np

from equilib._src.tolerances import ELEMENT_ANGLE_TOL, EXACT_TRIG_TOL
from equilib.groups import Group

__all__ = [
    "irrep_ids",
    "check_irrep_id",
    "format_irrep_id",
    "irrep_size",
    "irrep_matrix",
    "exact_cos_sin",
    "blockdiag",
    "element_angle_flip",
    "check_angle_flip",
]


def irrep_ids(group, max_frequency: int | None = None) -> tuple[tuple[int, int], ...]:
    """The ids ``(j, k)`` of the irreps of ``group`` in escnn's order (for SO(2)/O(2) those of
    frequency ``k <= max_frequency``, which is then required)."""
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


def check_irrep_id(group, ident) -> tuple[int, int]:
    """``ident`` as a pair ``(j, k)``; ``ValueError`` if ``group`` has no such irrep."""
    j, k = ident
    if isinstance(group, Group):
        if (j, k) not in irrep_ids(group):
            raise ValueError(f"{group.name} has no {format_irrep_id(group, (j, k))}; its irreps are "
                             f"{', '.join(format_irrep_id(group, i) for i in irrep_ids(group))}")
        return (j, k)
    if k < 0 or j not in (0, 1) or (not group.reflection and j != 0) or (
            group.reflection and k > 0 and j != 1):
        valid = "k >= 0" if not group.reflection else "(0, 0), (1, 0) or (1, k) with k >= 1"
        raise ValueError(f"{group.name} has no {format_irrep_id(group, (j, k))}; expected {valid}")
    return (j, k)


def format_irrep_id(group, ident) -> str:
    """``"irrep(k)"`` (groups without reflections) or ``"irrep(j, k)"``."""
    return f"irrep({ident[1]})" if not group.reflection else f"irrep{tuple(ident)}"


def irrep_size(group, ident) -> int:
    """Dimension (1 or 2) of the irrep ``ident = (j, k)``.

    Frequency 0 and, for ``C_n``/``D_n`` with even ``n``, frequency ``n/2`` are one-dimensional
    (signs); every other frequency is a 2x2 rotation. ``ident`` is not validated (see
    :func:`equilib.reps.irrep`).

    Args:
        group: ``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``, ``SO2()`` or ``O2()``.
        ident: the irrep id, a pair ``(j, k)``.

    Returns:
        1 or 2.

    Example:
        >>> from equilib import SO2, Dihedral
        >>> from equilib.reps import irrep_size
        >>> irrep_size(Dihedral(4), (1, 1)), irrep_size(Dihedral(4), (0, 2)), irrep_size(SO2(), (0, 2))
        (2, 1, 2)
    """
    j, k = ident
    if k == 0:
        return 1
    if isinstance(group, Group) and 2 * k == group.n:
        return 1
    return 2


def irrep_matrix(group, ident, angle: float, flip: int) -> np.ndarray:
    """The ``(d, d)`` float64 matrix of the irrep ``ident`` at the element ``(angle, flip)``."""
    j, k = ident
    if k == 0:
        return np.array([[-1.0 if (j == 1 and flip) else 1.0]])
    if isinstance(group, Group) and 2 * k == group.n:
        r = int(round(angle * group.n / (2 * math.pi))) % group.n
        s = -1.0 if r % 2 else 1.0
        if j == 1 and flip:
            s = -s
        return np.array([[s]])
    c, s = exact_cos_sin(k * angle)
    if flip:
        return np.array([[c, s], [s, -c]])
    return np.array([[c, -s], [s, c]])


def exact_cos_sin(t: float) -> tuple[float, float]:
    """``(cos t, sin t)``, exact (0, +-1) at multiples of 90 degrees, so that the matrices of
    rot90 elements are exact permutations."""
    q = t / (math.pi / 2)
    if abs(q - round(q)) < EXACT_TRIG_TOL:
        return ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[int(round(q)) % 4]
    return math.cos(t), math.sin(t)


def blockdiag(blocks) -> np.ndarray:
    """The block-diagonal float64 matrix of square ``blocks``, in order."""
    n = sum(b.shape[0] for b in blocks)
    out = np.zeros((n, n))
    o = 0
    for b in blocks:
        s = b.shape[0]
        out[o:o + s, o:o + s] = b
        o += s
    return out


def element_angle_flip(group, element: tuple) -> tuple[float, int]:
    """A native element given as call arguments (``(index,)`` for finite groups, ``(angle,)``,
    ``(angle, flip)`` or ``((angle, flip),)`` for SO(2)/O(2)) as ``(angle, flip)``."""
    if isinstance(group, Group):
        if len(element) != 1:
            raise TypeError(f"an element of {group.name} is one integer index, got {element!r}")
        g = group.check_element(element[0])
        return group.angle(g), group.flip(g)
    if len(element) == 1 and isinstance(element[0], (tuple, list)):
        element = tuple(element[0])
    if len(element) not in (1, 2):
        raise TypeError(f"an element of {group.name} is an angle or (angle, flip), got {element!r}")
    return group.element(*element)


def check_angle_flip(group, angle, flip) -> tuple[float, int]:
    """``(angle, flip)`` validated for ``group``: a finite group needs ``angle`` to be a multiple
    of its rotation step (returned snapped to it, in ``[0, 2*pi)``); ``ValueError`` otherwise."""
    if isinstance(group, Group):
        if flip not in (0, 1) or (flip and not group.reflection):
            raise ValueError(f"`flip` must be 0{' or 1' if group.reflection else ''} for {group.name}, "
                             f"got {flip!r}")
        r = angle * group.n / (2 * math.pi)
        if abs(r - round(r)) > ELEMENT_ANGLE_TOL:
            raise ValueError(f"`angle` ({math.degrees(angle):.4g} deg) is not a rotation of {group.name} "
                             f"(multiples of {360 / group.n:.4g} deg)")
        return 2 * math.pi * (int(round(r)) % group.n) / group.n, int(flip)
    return group.element(angle, flip)
