"""Groups of planar rotations and reflections: ``Trivial``, ``Cyclic(n)``, ``Dihedral(n)``, and the
continuous ``SO2``, ``O2`` (for steerable fields, at the end of this module).

Convention (used everywhere in equilib)
---------------------------------------
Images are arrays ``(..., H, W, ...)`` with the row index pointing **down** as displayed.
The plane coordinates of pixel ``(row, col)`` are ``x = col - (W-1)/2`` (right) and
``y = (H-1)/2 - row`` (up), so the rotation centre is the centre of the array.

An element is a pair ``(k, f)``: a rotation by the angle ``2*pi*k/n``, **counter-clockwise as
the image is displayed**, applied after ``f`` reflections (``f`` in {0, 1}). The reflection is
the mirror ``x -> -x`` (it flips the width axis). As a 2x2 matrix the element is
``R(2*pi*k/n) @ F**f`` with ``F = diag(-1, 1)``.

Elements are numbered ``g = f*n + k``; element 0 is the identity. This is escnn's order of the
regular representation, so a regular feature map ``(B, H, W, C, |G|)`` flattened to
``(B, H, W, C*|G|)`` has channel ``c*|G| + g`` as in escnn.

Actions
-------
* On an image ``x``: ``(g.x)(p) = x(g^-1 p)``. For a rotation by 90 degrees this is
  ``numpy.rot90`` on the spatial axes; the reflection is ``numpy.flip`` on the width axis.
* On the group axis of a regular map (the regular representation):
  ``(g.f)(h) = f(g^-1 h)``, i.e. ``f[..., regular_permutation(g)]``, or ``regular_matrix(g) @ f``
  for a vector ``f`` over the group axis.
* On a regular feature map: both at once, ``(g.f)(p, h) = f(g^-1 p, g^-1 h)``.

Group objects are frozen dataclasses: hashable, comparable, usable as static arguments of
``jax.jit`` and as keys of ``functools.cache``. Their representations as :class:`~equilib.reps.Rep`
objects (for steerable fields) are functions of :mod:`equilib.reps`: ``regular_rep(G)``,
``irrep(G, k)``, ``irreps(G)``, ``trivial_rep(G)``, ``quotient_rep(G, sub)``,
``bandlimited_regular_rep(G, L)``; this module knows nothing of them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Iterable

import numpy as np

from equilib._src.imaging import rotate_flip
from equilib._src.tables import inverse_table, regular_permutation_table
from equilib._src.tolerances import QUARTER_TURN_TOL

__all__ = ["FiniteGroup", "Group", "Trivial", "Cyclic", "Dihedral", "PlanarLieGroup", "SO2", "O2"]


class FiniteGroup:
    """What the regular layers need of a finite group (base of the planar :class:`Group` and of
    :class:`equilib.groups3d.OctahedralGroup`): ``name``, ``order``, ``spatial_dims`` (2: maps
    ``(B, H, W, ...)``; 3: volumes ``(B, D, H, W, ...)``), ``is_exact``, ``check_element``,
    ``is_grid_preserving``, ``compose``, ``inverse``, ``cayley_table``, ``regular_permutation(s)``,
    ``transform_image(x, g, axes=...)``, ``transform_group_axis``, ``transform_regular``.
    Not instantiated itself.

    Example:
        >>> from equilib import Cyclic, Octahedral
        >>> from equilib.groups import FiniteGroup
        >>> [(isinstance(G, FiniteGroup), G.spatial_dims) for G in (Cyclic(4), Octahedral())]
        [(True, 2), (True, 3)]
    """

    spatial_dims: int = 2
    # False for SO2()/O2() (and SO3()/O3()), which only the steerable layers accept
    # (representations of either kind: equilib.reps, e.g. regular_rep(G), irrep(G, k))
    is_finite = True

    # --- what each group provides -----------------------------------------------------------
    @property
    def name(self) -> str:
        """Short name of the group ("C4", "D8", "O", ...)."""
        raise NotImplementedError

    @property
    def order(self) -> int:
        """Number of elements, ``|G|``."""
        raise NotImplementedError

    def _cayley_table(self) -> np.ndarray:
        """The ``(|G|, |G|)`` int table ``table[a, b] = index(a o b)``, element 0 the identity
        (computed once per group: the methods below read it through a cache)."""
        raise NotImplementedError

    # --- shared by every finite group: element indices and the Cayley table -----------------
    def __len__(self) -> int:
        return self.order

    def __str__(self) -> str:
        return self.name

    def check_element(self, g) -> int:
        """``g`` as a Python int if it is an element index of this group (``0 <= g < |G|``);
        ``TypeError`` if it is not an integer, ``ValueError`` if it is out of range."""
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)):
            raise TypeError(f"a group element is an integer index, got {type(g).__name__} ({g!r})")
        if not 0 <= g < self.order:
            raise ValueError(f"element index must be in [0, {self.order}) for {self.name}, got {g}")
        return int(g)

    def compose(self, a: int, b: int) -> int:
        """Index of ``a o b`` (apply ``b`` first)."""
        return int(_cayley(self)[self.check_element(a), self.check_element(b)])

    def inverse(self, g: int) -> int:
        """Index of ``g^-1``."""
        return int(_inverses(self)[self.check_element(g)])

    def cayley_table(self) -> np.ndarray:
        """``(|G|, |G|)`` int array with ``table[a, b] = index(a o b)``."""
        return _cayley(self).copy()

    # --- the regular representation ---------------------------------------------------------
    def regular_permutation(self, g: int) -> np.ndarray:
        """Permutation ``P`` of the group axis such that ``(g.f)[..., h] = f[..., P[h]]``,
        i.e. ``P[h] = index(g^-1 o h)``."""
        return _regular_perms(self)[self.check_element(g)].copy()

    def regular_permutations(self) -> np.ndarray:
        """``(|G|, |G|)`` int array; row ``g`` is :meth:`regular_permutation` of ``g``."""
        return _regular_perms(self).copy()

    def regular_matrix(self, g: int) -> np.ndarray:
        """``|G| x |G|`` permutation matrix ``rho(g)`` of the regular representation, with
        ``rho(g) e_h = e_{g o h}``; ``(g.f) = rho(g) @ f`` for a vector ``f`` over the group axis.
        (The representation as a :class:`~equilib.reps.Rep`, with its irreps, is
        :func:`equilib.reps.regular_rep`.)"""
        perm = self.regular_permutation(g)
        return np.eye(self.order)[perm]

    # --- actions on arrays ------------------------------------------------------------------
    def transform_image(self, x, g: int, *, axes=None):
        """Apply element ``g`` to the ``spatial_dims`` spatial ``axes`` of ``x``,
        ``(g.x)(p) = x(g^-1 p)``: each group's own (:meth:`Group.transform_image` on ``(H, W)``,
        :meth:`equilib.groups3d.OctahedralGroup.transform_image` on ``(D, H, W)``)."""
        raise NotImplementedError

    def transform_group_axis(self, x, g: int, *, axis: int = -1):
        """Apply the regular representation of ``g`` to the group axis ``axis`` of ``x``."""
        perm = self.regular_permutation(g)
        if x.shape[axis] != self.order:
            raise ValueError(
                f"the group axis (axis {axis}) of `x` has size {x.shape[axis]}, "
                f"expected |{self.name}| = {self.order}"
            )
        return x.take(perm, axis=axis) if isinstance(x, np.ndarray) else _jnp_take(x, perm, axis)

    def transform_regular(self, x, g: int):
        """Apply ``g`` to a regular map, ``(..., H, W, C, |G|)`` (planar) or ``(..., D, H, W, C, |G|)``
        (volumes): the spatial transform of the ``spatial_dims`` axes before ``C`` ((-4, -3), or
        (-5, -4, -3)) and the regular representation on the last axis."""
        axes = tuple(range(-2 - self.spatial_dims, -2))
        return self.transform_group_axis(self.transform_image(x, g, axes=axes), g, axis=-1)


@dataclasses.dataclass(frozen=True)
class Group(FiniteGroup):
    """A finite subgroup of O(2): ``n`` rotations, with reflections if ``reflection``.

    Elements are integer indices ``g = f*n + k`` (rotation by ``2*pi*k/n`` after ``f``
    mirrors of the width axis; see the module docstring); ``|G| = n`` or ``2n``. A frozen
    dataclass: hashable, usable as a static argument of ``jax.jit``.

    Prefer the constructors :class:`Trivial`, :class:`Cyclic` and :class:`Dihedral` (equality
    includes the class: ``Group(4, True) != Dihedral(4)``).

    Args:
        n: the number of rotations, an int >= 1.
        reflection: whether the group also holds the mirrors (dihedral).

    Raises:
        ValueError: ``n`` is not an integer >= 1.
        TypeError: ``reflection`` is not a bool.

    Example:
        >>> import numpy as np
        >>> from equilib import Dihedral
        >>> G = Dihedral(4)
        >>> G.name, G.order, G.element(1, 1), G.inverse(1), G.is_exact
        ('D4', 8, 5, 3, True)
        >>> x = np.arange(4).reshape(1, 2, 2, 1)  # a plain map (B, H, W, C)
        >>> G.transform_image(x, G.element(1))[0, ..., 0]  # a quarter turn, counter-clockwise
        array([[1, 3],
               [0, 2]])
    """

    n: int
    reflection: bool = False

    def __post_init__(self):
        if not isinstance(self.n, (int, np.integer)) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"`n` (the number of rotations) must be an integer >= 1, got {self.n!r}")
        if not isinstance(self.reflection, (bool, np.bool_)):
            raise TypeError(f"`reflection` must be a bool, got {type(self.reflection).__name__}")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "reflection", bool(self.reflection))

    # --- naming -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Short name: "C4", "D8", ... ("C1" for the trivial group)."""
        if self.n == 1 and not self.reflection:
            return "C1"
        return f"{'D' if self.reflection else 'C'}{self.n}"

    def __repr__(self) -> str:
        if type(self) is Trivial:
            return "Trivial()"
        if type(self) in (Cyclic, Dihedral):
            return f"{type(self).__name__}({self.n})"
        return f"Group(n={self.n}, reflection={self.reflection})"

    # --- elements ---------------------------------------------------------------------------
    @property
    def order(self) -> int:
        """Number of elements, ``|G|``."""
        return self.n * (2 if self.reflection else 1)

    @property
    def elements(self) -> tuple[tuple[int, int], ...]:
        """All elements as ``(k, f)`` pairs, in index order ``g = f*n + k``."""
        return tuple((g % self.n, g // self.n) for g in range(self.order))

    def element(self, k: int, f: int = 0) -> int:
        """Index of the element ``(k, f)``: rotation ``2*pi*k/n`` after ``f`` reflections.

        ``k`` is taken modulo ``n``.
        """
        if f not in (0, 1) or (f == 1 and not self.reflection):
            raise ValueError(
                f"`f` must be 0{' or 1' if self.reflection else ''} for {self.name}, got {f!r}"
            )
        return int(f) * self.n + int(k) % self.n

    def rotation(self, g: int) -> int:
        """The rotation index ``k`` of element ``g``."""
        return self.check_element(g) % self.n

    def flip(self, g: int) -> int:
        """The reflection bit ``f`` of element ``g``."""
        return self.check_element(g) // self.n

    def angle(self, g: int) -> float:
        """Rotation angle of element ``g`` in radians, ``2*pi*k/n``."""
        return 2.0 * math.pi * self.rotation(g) / self.n

    def matrix(self, g: int) -> np.ndarray:
        """The 2x2 orthogonal matrix of ``g`` acting on plane coordinates ``(x right, y up)``."""
        k, f = self.rotation(g), self.flip(g)
        t = 2.0 * math.pi * k / self.n
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        return rot @ np.diag([-1.0, 1.0]) if f else rot

    def is_grid_preserving(self, g: int) -> bool:
        """True if ``g`` maps the pixel grid of a square image to itself (multiples of 90 degrees,
        with or without the reflection): for these the image transform is exact."""
        return (4 * self.rotation(g)) % self.n == 0

    @property
    def is_exact(self) -> bool:
        """True if every element maps the pixel grid to itself (C1, C2, C4, D1, D2, D4):
        group convolutions over this group are exactly equivariant on the grid."""
        return 4 % self.n == 0

    # --- actions on arrays ------------------------------------------------------------------
    def transform_image(self, x, g: int, *, axes: tuple[int, ...] = (-3, -2)):
        """Apply element ``g`` to the spatial axes ``axes=(H, W)`` of ``x``: ``(g.x)(p) = x(g^-1 p)``.

        Exact (``rot90`` / flip, which also swaps H and W for odd quarter turns) when ``g`` maps
        the grid to itself; otherwise bilinear interpolation on the same canvas with zero fill
        (jit-able, differentiable). Works on numpy and jax arrays of any rank.
        The default ``axes`` fit a plain map ``(B, H, W, C)``; for a regular map ``(B, H, W, C, |G|)``
        use :meth:`transform_regular`, or ``axes=(-4, -3)`` for the spatial part only.
        """
        return rotate_flip(x, self.angle(g), bool(self.flip(g)), axes=axes,
                           quarter_turns=self._quarter_turns(g))

    def _cayley_table(self) -> np.ndarray:
        els = self.elements
        table = np.empty((self.order, self.order), dtype=np.int64)
        for i, a in enumerate(els):
            for j, b in enumerate(els):
                k, f = _compose_pairs(self.n, a, b)
                table[i, j] = f * self.n + k
        return table

    def _quarter_turns(self, g: int):
        k = self.rotation(g)
        return (4 * k) // self.n if self.is_grid_preserving(g) else None

    # --- subgroups --------------------------------------------------------------------------
    def subgroup_elements(self, sub: "Group") -> np.ndarray:
        """Indices (in this group) of the elements of ``sub`` in ``sub``'s order; ``sub`` must
        be a subgroup (``sub.n`` divides ``n``; reflections only if this group has them)."""
        if not isinstance(sub, Group):
            raise TypeError(f"`sub` must be a Group, got {type(sub).__name__}")
        if self.n % sub.n or (sub.reflection and not self.reflection):
            raise ValueError(f"`sub` ({sub.name}) is not a subgroup of {self.name}")
        step = self.n // sub.n
        return np.array([self.element(k * step, f) for (k, f) in sub.elements], dtype=np.int64)


class Trivial(Group):
    """The trivial group {e}: group layers over it are plain convolutions with a group axis of size 1.

    Takes no arguments.

    Example:
        >>> from equilib import Trivial
        >>> Trivial(), Trivial().name, Trivial().order
        (Trivial(), 'C1', 1)
    """

    def __init__(self):
        super().__init__(1, False)


class Cyclic(Group):
    """``C_n``: rotations by ``2*pi*k/n``, ``k = 0..n-1`` (counter-clockwise as displayed).

    Element ``g = k`` is the rotation by ``2*pi*k/n``. ``Cyclic(4)`` (and its subgroups) maps the
    pixel grid to itself, so layers over it are exactly equivariant; for larger ``n`` the
    off-grid rotations are approximate (:attr:`Group.is_exact`).

    Args:
        n: the number of rotations, an int >= 1.

    Raises:
        ValueError: ``n`` is not an integer >= 1.

    Example:
        >>> from equilib import Cyclic
        >>> C8 = Cyclic(8)
        >>> C8.order, C8.angle(2), C8.is_grid_preserving(1), C8.is_exact
        (8, 1.5707963267948966, False, False)
        >>> C8.regular_permutation(1)  # (g.f)[..., h] = f[..., g^-1 h]
        array([7, 0, 1, 2, 3, 4, 5, 6])
    """

    def __init__(self, n: int):
        super().__init__(n, False)


class Dihedral(Group):
    """``D_n``: ``C_n`` and the reflections; element ``g = f*n + k`` is rotation ``k`` after
    ``f`` mirrors of the width axis. ``Dihedral(1)`` is the reflection group {e, mirror}.

    Args:
        n: the number of rotations, an int >= 1 (``|D_n| = 2n``).

    Raises:
        ValueError: ``n`` is not an integer >= 1.

    Example:
        >>> from equilib import Dihedral
        >>> D4 = Dihedral(4)
        >>> D4.order, D4.elements[4], D4.compose(1, 4)  # (k, f) of element 4; rotation 1 after the mirror
        (8, (0, 1), 5)
        >>> D4.matrix(4)  # the mirror x -> -x on plane coordinates (x right, y up)
        array([[-1.,  0.],
               [ 0.,  1.]])
    """

    def __init__(self, n: int):
        super().__init__(n, True)


def _jnp_take(x, perm, axis):
    import jax.numpy as jnp

    return jnp.take(x, jnp.asarray(perm), axis=axis)


# --- cached tables: pure functions of the frozen group (of any finite group) -------------------
def _compose_pairs(n: int, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (k1, f1), (k2, f2) = a, b
    # R_k1 F^f1 R_k2 F^f2 = R_{k1 + (-1)^f1 k2} F^{f1 xor f2}, since F R_k F = R_{-k}.
    return ((k1 + (-k2 if f1 else k2)) % n, f1 ^ f2)


@functools.cache
def _cayley(group: FiniteGroup) -> np.ndarray:
    table = group._cayley_table()
    table.setflags(write=False)
    return table


@functools.cache
def _inverses(group: FiniteGroup) -> np.ndarray:
    return inverse_table(_cayley(group))


@functools.cache
def _regular_perms(group: FiniteGroup) -> np.ndarray:
    return regular_permutation_table(_cayley(group), _inverses(group))


def as_group(group) -> Group:
    """Validate a ``group`` argument (used by the layers): a finite group, planar (``Trivial()``,
    ``Cyclic(n)``, ``Dihedral(n)``) or of the voxel grid (``Octahedral()``, ``FullOctahedral()``)."""
    if not isinstance(group, FiniteGroup):
        raise TypeError(
            f"`group` must be a finite group (Trivial(), Cyclic(n), Dihedral(n), Octahedral(), "
            f"FullOctahedral()), got {type(group).__name__}"
        )
    return group  # type: ignore[return-value]


def elements_of(group: Group, elements: Iterable[int] | None) -> tuple[int, ...]:
    """The element indices ``elements`` validated (:meth:`Group.check_element`), or all of
    ``group``'s if ``None`` (used by the equivariance harness)."""
    if elements is None:
        return tuple(range(group.order))
    return tuple(group.check_element(g) for g in elements)


# --- continuous planar groups (steerable layers) -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PlanarLieGroup:
    """A compact subgroup of O(2) with all rotations: :class:`SO2` or :class:`O2` (if ``reflection``).

    Elements are pairs ``(angle, flip)``: the rotation by ``angle`` radians (counter-clockwise as
    displayed) applied after ``flip`` mirrors of the width axis, i.e. the 2x2 matrix
    ``R(angle) @ diag(-1, 1)**flip`` on plane coordinates ``(x right, y up)``, the convention of
    the finite groups. Only steerable layers (:mod:`equilib.reps`, :class:`equilib.fields.FieldType`)
    accept these groups; they are frozen dataclasses (hashable) like :class:`Group`. Their
    representations are functions of :mod:`equilib.reps` (``irrep(SO2(), k)``,
    ``bandlimited_regular_rep(O2(), L)``, ...).

    Prefer the constructors :class:`SO2` and :class:`O2` (equality includes the class).

    Args:
        reflection: whether the group also holds the mirrors (O(2)).

    Example:
        >>> import numpy as np
        >>> from equilib import O2
        >>> O2().element(-np.pi / 2, 1)  # the angle is taken modulo 2*pi
        (4.71238898038469, 1)
        >>> O2().matrix(0.0, 1)
        array([[-1.,  0.],
               [ 0.,  1.]])
    """

    reflection: bool = False

    spatial_dims = 2
    is_finite = False

    @property
    def name(self) -> str:
        """"SO2" or "O2"."""
        return "O2" if self.reflection else "SO2"

    def __repr__(self) -> str:
        return f"{self.name}()"

    def __str__(self) -> str:
        return self.name

    def element(self, angle: float, flip: int = 0) -> tuple[float, int]:
        """The element ``(angle mod 2*pi, flip)``, validated."""
        if isinstance(angle, bool) or not isinstance(angle, (int, float, np.integer, np.floating)):
            raise TypeError(f"`angle` must be a real number (radians), got {type(angle).__name__}")
        if flip not in (0, 1) or (flip == 1 and not self.reflection):
            raise ValueError(f"`flip` must be 0{' or 1' if self.reflection else ''} for {self.name}, "
                             f"got {flip!r}")
        return (float(angle) % (2.0 * math.pi), int(flip))

    def matrix(self, angle: float, flip: int = 0) -> np.ndarray:
        """The 2x2 orthogonal matrix of ``(angle, flip)`` on plane coordinates ``(x right, y up)``."""
        angle, flip = self.element(angle, flip)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return rot @ np.diag([-1.0, 1.0]) if flip else rot

    def transform_image(self, x, angle: float, flip: int = 0, *, axes: tuple[int, int] = (-3, -2)):
        """Apply ``(angle, flip)`` to the spatial ``axes`` of ``x``: exact ``rot90``/flip for
        multiples of 90 degrees, bilinear interpolation (zero fill) otherwise."""
        angle, flip = self.element(angle, flip)
        q = angle / (math.pi / 2)
        quarter = int(round(q)) % 4 if abs(q - round(q)) < QUARTER_TURN_TOL else None
        return rotate_flip(x, angle, bool(flip), axes=axes, quarter_turns=quarter)


class SO2(PlanarLieGroup):
    """SO(2): all planar rotations (counter-clockwise as displayed).

    Takes no arguments. An element is an angle in radians; only the steerable layers
    (:class:`equilib.nn.SteerableConv`, :class:`equilib.fields.FieldType`) accept this group.

    Example:
        >>> import numpy as np
        >>> from equilib import SO2
        >>> SO2(), SO2().is_finite
        (SO2(), False)
        >>> x = np.arange(4.0).reshape(1, 2, 2, 1)  # a plain map (B, H, W, C)
        >>> SO2().transform_image(x, np.pi / 2)[0, ..., 0]  # exact at multiples of 90 degrees
        array([[1., 3.],
               [0., 2.]])
    """

    def __init__(self):
        super().__init__(False)


class O2(PlanarLieGroup):
    """O(2): all planar rotations and the reflections (mirror of the width axis, then a rotation).

    Takes no arguments. An element is ``(angle, flip)``; only the steerable layers accept this
    group.

    Example:
        >>> import numpy as np
        >>> from equilib import O2
        >>> x = np.arange(4.0).reshape(1, 2, 2, 1)  # a plain map (B, H, W, C)
        >>> O2().transform_image(x, 0.0, 1)[0, ..., 0]  # the mirror flips the width axis
        array([[1., 0.],
               [3., 2.]])
    """

    def __init__(self):
        super().__init__(True)

