"""Finite groups of rotations of the voxel grid: :class:`Octahedral` (the 24 rotations of the cube)
and :class:`FullOctahedral` (the 48 symmetries of the cube: rotations, and rotations after the
inversion ``p -> -p``).

Convention (the 3D extension of :mod:`equilib.groups`)
------------------------------------------------------
Volumes are arrays ``(..., D, H, W, ...)``; a plain volume map is ``(B, D, H, W, C)`` and a regular
map ``(B, D, H, W, C, |G|)``. The space coordinates of voxel ``(d, h, w)`` are

    ``x = w - (W-1)/2`` (right), ``y = (H-1)/2 - h`` (up), ``z = d - (D-1)/2`` (depth),

so the rotation centre is the centre of the array, and on each depth slice ``(x, y)`` are the
plane coordinates of :mod:`equilib.groups`. Rotations are **active** 3x3 matrices acting on
column vectors ``(x, y, z)``; a rotation about ``z`` by 90 degrees maps ``x`` to ``y`` and acts on
every depth slice as :class:`equilib.groups.Cyclic` (4)'s quarter turn (``numpy.rot90`` on
``(H, W)``).

Every element is a signed permutation matrix: it maps the voxel grid of a cube to itself, so
its action on a volume is an axis permutation and flips (exact; on a non-cubic volume the axes
are permuted with their sizes, as ``rot90`` swaps ``H`` and ``W``).

Elements are integer indices. The 24 rotations ``R_k`` (``k = 0..23``) are the signed
permutation matrices of determinant +1 in a fixed order (:meth:`OctahedralGroup.matrix`);
element 0 is the identity. In :class:`FullOctahedral` element ``g = f*24 + k`` is ``(-I)^f R_k``
(``f = 1``: the rotation after the inversion), as ``g = f*n + k`` in :class:`equilib.groups.Dihedral`.
A regular map flattened to ``(B, D, H, W, C*|G|)`` has channel ``c*|G| + g``.

Actions (as in 2D): on a volume ``(g.x)(p) = x(g^-1 p)``; on the group axis of a regular map
``(g.f)(h) = f(g^-1 h)``; on a regular map both at once.

The continuous groups :class:`SO3` (every rotation) and :class:`O3` (with the improper ones) take
elements as 3x3 matrices (:meth:`SpatialLieGroup.element` also reads a quaternion ``(w, x, y, z)``
or an axis and angle) and transform volumes by trilinear interpolation on the same canvas with
zero fill; an element of the voxel grid (a signed permutation matrix) is applied exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator

import numpy as np

from equilib._src.so3 import check_rotation_matrix, matrix_from_axis_angle, matrix_from_quaternion, random_rotations
from equilib.groups import FiniteGroup, Group

__all__ = ["OctahedralGroup", "Octahedral", "FullOctahedral", "SpatialLieGroup", "SO3", "O3"]

VOLUME_AXES = (-4, -3, -2)  # (D, H, W) of a plain volume map (B, D, H, W, C)

# (d, h, w) array axes -> (x, y, z): x = w, y = -h, z = d (centred)
_ARRAY_TO_XYZ = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]])


@functools.cache
def _rotations() -> np.ndarray:
    """The 24 signed permutation matrices of determinant +1, identity first, ``(24, 3, 3)`` int."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3), dtype=np.int64)
            m[np.arange(3), perm] = signs
            if round(np.linalg.det(m)) == 1:
                mats.append(m)
    out = np.stack(mats)
    out.setflags(write=False)
    return out


@dataclasses.dataclass(frozen=True)
class OctahedralGroup(FiniteGroup):
    """The rotations of the cube (24), with the inversion if ``inversion`` (48).

    Prefer the constructors :class:`Octahedral` and :class:`FullOctahedral`. A frozen dataclass:
    hashable, usable as a static argument of ``jax.jit``. Layers over it work on volumes
    ``(B, D, H, W, C)`` and regular maps ``(B, D, H, W, C, |G|)`` (``spatial_dims == 3``).

    Args:
        inversion: whether the group also holds ``p -> -p`` (and so every reflection of the cube).

    Raises:
        TypeError: ``inversion`` is not a bool.

    Example:
        >>> import numpy as np
        >>> from equilib import Octahedral
        >>> O = Octahedral()
        >>> O.name, O.order, O.spatial_dims, O.is_exact
        ('O', 24, 3, True)
        >>> quarter_z = O.element_from_matrix([[0, -1, 0], [1, 0, 0], [0, 0, 1]])  # x -> y
        >>> x = np.arange(8).reshape(1, 2, 2, 2, 1)  # a plain volume (B, D, H, W, C)
        >>> bool(np.array_equal(O.transform_image(x, quarter_z), np.rot90(x, axes=(2, 3))))
        True
    """

    inversion: bool = False

    spatial_dims = 3
    is_exact = True

    def __post_init__(self):
        if not isinstance(self.inversion, (bool, np.bool_)):
            raise TypeError(f"`inversion` must be a bool, got {type(self.inversion).__name__}")
        object.__setattr__(self, "inversion", bool(self.inversion))

    # --- naming -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """"O" (24 rotations) or "Oh" (48, with the inversion)."""
        return "Oh" if self.inversion else "O"

    def __repr__(self) -> str:
        return "FullOctahedral()" if self.inversion else "Octahedral()"

    # --- elements ---------------------------------------------------------------------------
    @property
    def order(self) -> int:
        """Number of elements, ``|G|`` (24 or 48)."""
        return 48 if self.inversion else 24

    def is_grid_preserving(self, g: int) -> bool:
        """True for every element: each maps the voxel grid of a cube to itself."""
        self.check_element(g)
        return True

    def matrix(self, g: int) -> np.ndarray:
        """The 3x3 signed permutation matrix of ``g`` (float) acting on ``(x, y, z)`` (module docstring)."""
        g = self.check_element(g)
        return (-1.0) ** (g // 24) * _rotations()[g % 24].astype(np.float64)

    def element_from_matrix(self, matrix) -> int:
        """The index of the element whose :meth:`matrix` is ``matrix`` (a 3x3 array-like).

        Raises:
            ValueError: ``matrix`` is not 3x3, or not an element of this group (not a signed
                permutation matrix, or of determinant -1 in :class:`Octahedral`).
        """
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (3, 3):
            raise ValueError(f"`matrix` must be 3x3, got shape {m.shape}")
        for g in range(self.order):
            if np.allclose(self.matrix(g), m, atol=1e-6):
                return g
        raise ValueError(f"`matrix` is not an element of {self.name} (expected a signed permutation matrix"
                         f"{'' if self.inversion else ' of determinant +1'}), got {m.tolist()}")

    def _cayley_table(self) -> np.ndarray:
        mats = np.stack([np.rint(self.matrix(g)).astype(np.int64) for g in range(self.order)])
        keys = {m.tobytes(): g for g, m in enumerate(mats)}
        return np.array([[keys[(a @ b).tobytes()] for b in mats] for a in mats], dtype=np.int64)

    # --- actions on arrays ------------------------------------------------------------------
    def transform_image(self, x, g: int, *, axes: tuple[int, int, int] = VOLUME_AXES):
        """Apply ``g`` to the spatial axes ``axes=(D, H, W)`` of ``x``: ``(g.x)(p) = x(g^-1 p)``.

        Exact: an axis permutation and flips (``numpy``/``jax.numpy`` ``transpose`` and ``flip``, so
        jit-able and differentiable). The default ``axes`` fit a plain volume map ``(B, D, H, W, C)``;
        for a regular map use :meth:`transform_regular`, or ``axes=(-5, -4, -3)``.
        """
        axes = _check_axes(x, axes)
        perm, flips = _array_action(self.matrix(g))
        xp = _namespace(x)
        if flips:
            x = xp.flip(x, axis=tuple(axes[i] for i in flips))
        order = list(range(x.ndim))
        for i in range(3):
            order[axes[i]] = axes[perm[i]]
        return xp.transpose(x, order)

    # --- subgroups --------------------------------------------------------------------------
    def subgroup_elements(self, sub) -> np.ndarray:
        """Indices (in this group) of the elements of ``sub``, in ``sub``'s order.

        ``sub`` is :class:`Octahedral` (in :class:`FullOctahedral`) or a planar group of
        :mod:`equilib.groups` acting on ``(x, y)``: ``Cyclic(n)`` (``n`` in 1, 2, 4) as rotations
        about ``z`` (the depth axis), ``Dihedral(n)`` with its mirror ``x -> -x`` (improper: only in
        :class:`FullOctahedral`). Restricting a regular map to ``sub`` is ``x[..., indices]``.

        Raises:
            TypeError: ``sub`` is not a group.
            ValueError: ``sub`` is not a subgroup of this group.
        """
        if isinstance(sub, OctahedralGroup):
            if sub.inversion and not self.inversion:
                raise ValueError(f"`sub` ({sub.name}) is not a subgroup of {self.name}")
            return np.arange(sub.order, dtype=np.int64)
        if not isinstance(sub, Group):
            raise TypeError(f"`sub` must be an Octahedral group or a planar Group, got {type(sub).__name__}")
        if 4 % sub.n or (sub.reflection and not self.inversion):
            mirror = "" if self.inversion else ", and the mirror x -> -x only in FullOctahedral"
            raise ValueError(f"`sub` ({sub.name}) is not a subgroup of {self.name} (rotations about z by "
                             f"multiples of 90 degrees{mirror})")
        out = []
        for g in range(sub.order):
            m = np.eye(3)
            m[:2, :2] = np.rint(sub.matrix(g))
            out.append(self.element_from_matrix(m))
        return np.array(out, dtype=np.int64)


class Octahedral(OctahedralGroup):
    """``O``: the 24 rotations of the cube, exact on the voxel grid (module docstring).

    Takes no arguments.

    Example:
        >>> from equilib import Octahedral
        >>> O = Octahedral()
        >>> O.order, O.inverse(1) == O.element_from_matrix(O.matrix(1).T)
        (24, True)
    """

    def __init__(self):
        super().__init__(False)


class FullOctahedral(OctahedralGroup):
    """``O_h``: the 48 symmetries of the cube; element ``g = f*24 + k`` is rotation ``k`` after
    ``f`` inversions ``p -> -p`` (module docstring).

    Takes no arguments.

    Example:
        >>> from equilib import FullOctahedral
        >>> Oh = FullOctahedral()
        >>> Oh.order, Oh.matrix(24).diagonal().tolist()  # element 24: the inversion
        (48, [-1.0, -1.0, -1.0])
    """

    def __init__(self):
        super().__init__(True)


@dataclasses.dataclass(frozen=True)
class SpatialLieGroup:
    """SO(3) (every rotation of space) or, if ``improper``, O(3) (with the inversion and mirrors).

    Prefer the constructors :class:`SO3` and :class:`O3`. Elements are 3x3 orthogonal matrices
    acting on ``(x, y, z)`` (module docstring); :meth:`element` builds one from a matrix, a
    quaternion or an axis and angle. Volumes ``(B, D, H, W, C)`` (``spatial_dims == 3``).

    Args:
        improper: whether the group holds the elements of determinant -1.
        max_frequency: the default band limit ``L`` of the irreps and band-limited regular fields
            built from the group (:func:`equilib.fields3d.irreps3d`,
            :func:`equilib.fields3d.bandlimited_regular3d`), an int >= 0 or None (then those
            functions need it). Not part of the group's identity: ``SO3(max_frequency=2) == SO3()``.

    Raises:
        TypeError: ``improper`` is not a bool.
        ValueError: ``max_frequency`` is not None or an int >= 0.

    Example:
        >>> import numpy as np
        >>> from equilib.groups3d import SO3
        >>> G = SO3()
        >>> r = G.element(axis=(0, 0, 1), angle=np.pi / 2)  # x -> y
        >>> np.round(r @ [1.0, 0.0, 0.0], 6).tolist()
        [0.0, 1.0, 0.0]
        >>> G.random_elements(3, seed=0).shape
        (3, 3, 3)
    """

    improper: bool = False
    # a default for the functions that build fields from the group, not a different group
    max_frequency: int | None = dataclasses.field(default=None, compare=False)

    spatial_dims = 3
    is_finite = False

    def __post_init__(self):
        if not isinstance(self.improper, (bool, np.bool_)):
            raise TypeError(f"`improper` must be a bool, got {type(self.improper).__name__}")
        object.__setattr__(self, "improper", bool(self.improper))
        L = self.max_frequency
        if L is not None:
            if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 0:
                raise ValueError(f"`max_frequency` must be None or an integer >= 0, got {L!r}")
            object.__setattr__(self, "max_frequency", int(L))

    @property
    def name(self) -> str:
        """"SO3" or "O3"."""
        return "O3" if self.improper else "SO3"

    def __repr__(self) -> str:
        args = "" if self.max_frequency is None else f"max_frequency={self.max_frequency}"
        return f"{self.name}({args})"

    def __str__(self) -> str:
        return self.name

    def element(self, matrix=None, *, quaternion=None, axis=None, angle=None) -> np.ndarray:
        """An element as a float64 3x3 matrix, from exactly one of: ``matrix`` (orthogonal; determinant
        +1 in SO3), ``quaternion`` ``(w, x, y, z)`` (normalised here), or ``axis`` and ``angle`` (radians,
        right-hand rule).

        Raises:
            ValueError: none or more than one form given, or a value that is not an element (named).
        """
        given = [n for n, v in (("matrix", matrix), ("quaternion", quaternion), ("axis", axis)) if v is not None]
        if len(given) != 1 or (axis is None) != (angle is None):
            raise ValueError(f"give exactly one of `matrix`, `quaternion`, or `axis` with `angle`; got "
                             f"{given + (['angle'] if angle is not None else [])}")
        if matrix is not None:
            m = check_rotation_matrix("matrix", matrix)
            if not self.improper and np.linalg.det(m) < 0:
                raise ValueError(f"`matrix` has determinant {np.linalg.det(m):.3g}: not an element of SO3 "
                                 f"(use O3() for the improper elements)")
            return m
        if quaternion is not None:
            return matrix_from_quaternion(quaternion)
        return matrix_from_axis_angle(axis, angle)

    def random_elements(self, n: int, seed: int) -> np.ndarray:
        """``n`` rotations uniform on SO(3) (Haar measure), ``(n, 3, 3)``; reproducible for ``seed``.
        In O3 each is composed with the inversion with probability 1/2 (the same seed)."""
        mats = random_rotations(n, seed)
        if self.improper:
            flips = np.random.default_rng([seed, 1]).integers(0, 2, n)
            mats = mats * np.where(flips, -1.0, 1.0)[:, None, None]
        return mats

    def is_grid_preserving(self, matrix) -> bool:
        """True if ``matrix`` is a signed permutation matrix (maps the voxel grid of a cube to itself)."""
        m = np.asarray(matrix, dtype=np.float64)
        return bool(np.allclose(np.abs(m), np.abs(np.rint(m)), atol=1e-9) and np.allclose(np.abs(np.rint(m)).sum(0), 1))

    def transform_image(self, x, matrix, *, axes: tuple[int, int, int] = VOLUME_AXES):
        """Apply the element ``matrix`` to the spatial axes ``axes=(D, H, W)`` of ``x``:
        ``(g.x)(p) = x(g^-1 p)`` about the array's centre.

        A signed permutation matrix is applied exactly (as :meth:`OctahedralGroup.transform_image`);
        any other rotation by trilinear interpolation on the same canvas, zero outside (jit-able).
        """
        m = self.element(matrix)
        if self.is_grid_preserving(m):
            full = FullOctahedral()
            return full.transform_image(x, full.element_from_matrix(np.rint(m)), axes=axes)
        return _trilinear(x, m, _check_axes(x, axes))


class SO3(SpatialLieGroup):
    """SO(3): every rotation of space (for the harness at random rotations, and steerable layers).

    Args:
        max_frequency: the default band limit of :func:`equilib.fields3d.irreps3d` and
            :func:`equilib.fields3d.bandlimited_regular3d` (escnn's ``so3_group(maximum_frequency)``);
            None: those functions take it explicitly. The group is the same for every value.

    Raises:
        ValueError: ``max_frequency`` is not None or an int >= 0.

    Example:
        >>> from equilib.groups3d import SO3
        >>> SO3().name, SO3().is_finite, SO3(max_frequency=2) == SO3()
        ('SO3', False, True)
    """

    def __init__(self, max_frequency: int | None = None):
        super().__init__(False, max_frequency)


class O3(SpatialLieGroup):
    """O(3): the rotations and the improper elements (inversion, mirrors).

    Args:
        max_frequency: as for :class:`SO3`.

    Raises:
        ValueError: ``max_frequency`` is not None or an int >= 0.

    Example:
        >>> from equilib.groups3d import O3
        >>> O3().element([[-1, 0, 0], [0, 1, 0], [0, 0, 1]]).diagonal().tolist()  # a mirror
        [-1.0, 1.0, 1.0]
    """

    def __init__(self, max_frequency: int | None = None):
        super().__init__(True, max_frequency)


# --- helpers and cached tables: pure functions of the frozen group ----------------------------
def _trilinear(x, matrix: np.ndarray, axes: tuple[int, int, int]):
    """``out(p) = x(M^-1 p)`` on the same canvas by trilinear interpolation, zero outside."""
    import jax.numpy as jnp

    xs = jnp.moveaxis(jnp.asarray(x), axes, (0, 1, 2))
    shape = xs.shape[:3]
    d, h, w = (np.arange(n, dtype=np.float64) - (n - 1) / 2 for n in shape)
    dd, hh, ww = np.meshgrid(d, h, w, indexing="ij")
    xyz = np.stack([ww, -hh, dd], axis=-1).reshape(-1, 3)  # array -> xyz (module docstring)
    src = xyz @ matrix  # rows: (M^T p)^T = (M^-1 p)^T
    idx = np.stack([src[:, 2] + (shape[0] - 1) / 2, (shape[1] - 1) / 2 - src[:, 1], src[:, 0] + (shape[2] - 1) / 2], 1)
    lo = np.floor(idx).astype(np.int64)
    frac = idx - lo
    flat = xs.reshape((-1,) + xs.shape[3:])
    terms = []
    for corner in itertools.product((0, 1), repeat=3):
        c = lo + np.array(corner)
        weight = np.prod(np.where(np.array(corner), frac, 1.0 - frac), axis=1)
        inside = np.all((c >= 0) & (c < np.array(shape)), axis=1)
        lin = np.where(inside, (c[:, 0] * shape[1] + c[:, 1]) * shape[2] + c[:, 2], 0)
        wgt = jnp.asarray(np.where(inside, weight, 0.0), dtype=flat.dtype).reshape((-1,) + (1,) * (flat.ndim - 1))
        terms.append(wgt * jnp.take(flat, jnp.asarray(lin), axis=0))
    out = jnp.reshape(functools.reduce(operator.add, terms), xs.shape)
    return jnp.moveaxis(out, (0, 1, 2), axes)



def _namespace(x):
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def _check_axes(x, axes) -> tuple[int, int, int]:
    if len(axes) != 3:
        raise ValueError(f"`axes` must name three axes (D, H, W), got {axes!r}")
    ndim = x.ndim
    out = tuple(a % ndim for a in axes)
    if len(set(out)) != 3 or any(not -ndim <= a < ndim for a in axes):
        raise ValueError(f"`axes` must be three different axes of `x` (rank {ndim}), got {axes!r}")
    return out


def _array_action(matrix: np.ndarray) -> tuple[list[int], list[int]]:
    """``(perm, flips)`` such that ``g.x = transpose(flip(x, flips), perm on the three axes)``.

    In centred array coordinates ``a = (d, h, w)``, ``(g.x)(a) = x(N a)`` with
    ``N = A^-1 M^-1 A`` (``A``: array axes -> xyz), a signed permutation ``(N a)_i = s_i a_{pi(i)}``:
    flip the axes ``i`` with ``s_i = -1``, then output axis ``pi(i)`` is input axis ``i``.
    """
    a = _ARRAY_TO_XYZ
    n = np.rint(np.linalg.inv(a) @ matrix.T @ a).astype(np.int64)  # M^-1 = M^T
    pi = [int(np.flatnonzero(n[i])[0]) for i in range(3)]
    signs = [int(n[i, pi[i]]) for i in range(3)]
    # output axis j holds input axis i where pi(i) = j
    perm = [pi.index(j) for j in range(3)]
    return perm, [i for i in range(3) if signs[i] < 0]
