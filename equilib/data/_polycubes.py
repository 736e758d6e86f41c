"""3D Tetris: the eight tetracubes of the tensor-field-network / SE(3) papers rendered as small volumes."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["polycubes", "POLYCUBE_SHAPES", "CHIRAL_PAIR", "ORIENTATIONS"]

# The eight shapes, four unit cubes each, as integer cube coordinates (x, y, z) in the axes of
# equilib.groups3d (x right, y up, z depth); the coordinates of Thomas et al. (2018)'s
# shape-classification example (also e3nn's tetris example), in the order of the labels.
POLYCUBE_SHAPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "chain": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)),           # "line": I
    "square": ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)),          # O
    "T": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)),
    "zigzag": ((0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)),          # S
    "L": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)),
    "corner": ((0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)),          # the tripod (branch)
    "twist (left)": ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0)),    # chiral_shape_1
    "twist (right)": ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, -1, 0)),  # chiral_shape_2: the mirror y -> -y of the left
}
"""The eight tetracubes of :func:`polycubes`, by class name in label order: the integer cube
coordinates ``(x, y, z)`` of each (axes of :mod:`equilib.groups3d`)."""
CHIRAL_PAIR = (6, 7)
"""The labels of the two twisted tetracubes, mirror images of each other (no rotation maps one
onto the other)."""
ORIENTATIONS = ("upright", "octahedral", "random")

# every shape lies within this many cube edges of its bounding box's centre: the half-diagonal of
# the chain's 1 x 1 x 4 box, the largest of the eight
_RADIUS = math.sqrt(1 + 1 + 16) / 2
_SUBSAMPLES = 4  # per axis and voxel, for the rendering of freely rotated shapes


def polycubes(n: int, *, size: int = 9, seed: int, noise: float = 0.0,
              scale_range: tuple[float, float] = (1.0, 1.5),
              orientation="upright") -> tuple[np.ndarray, np.ndarray]:
    """``n`` volumes of 3D Tetris: the eight tetracubes (four face-joined cubes) of the
    tensor-field-network and SE(3)-transformer papers, each at a random size and position.

    The classes (labels 0-7) and their cube coordinates ``(x, y, z)`` (the axes of
    :mod:`equilib.groups3d`: ``x`` right, ``y`` up, ``z`` depth), those of Thomas et al. (2018)'s
    example:

    | label | shape           | cubes                                |
    |------:|-----------------|--------------------------------------|
    | 0     | chain           | (0,0,0) (0,0,1) (0,0,2) (0,0,3)      |
    | 1     | square          | (0,0,0) (1,0,0) (0,1,0) (1,1,0)      |
    | 2     | T               | (0,0,0) (0,0,1) (0,0,2) (0,1,1)      |
    | 3     | zigzag (S)      | (0,0,0) (1,0,0) (1,1,0) (2,1,0)      |
    | 4     | L               | (0,0,0) (0,0,1) (0,0,2) (0,1,0)      |
    | 5     | corner (tripod) | (0,0,0) (0,0,1) (0,1,0) (1,0,0)      |
    | 6     | twist (left)    | (0,0,0) (0,0,1) (1,0,0) (1,1,0)      |
    | 7     | twist (right)   | (0,0,0) (0,0,1) (1,0,0) (1,-1,0)     |

    Classes 6 and 7 are the chiral pair: the mirror ``y -> -y`` maps one onto the other and no
    rotation does. Their handedness is the sign of ``det(d1, d2, d3)`` for the three unit steps
    along the path of cubes (positive for a right-handed helix): -1 for class 6, +1 for class 7.
    The six others are achiral (each is its own mirror image up to a rotation).

    Each volume holds one shape with cube edge ``s`` voxels, ``s`` uniform in ``scale_range``,
    centred (its bounding box's centre) at a point drawn uniformly from the ball that keeps every
    point of the shape within ``size / 2 - 1`` voxels of the grid centre, so a rotation of the
    volume about its centre keeps the shape, and the voxels around it, on the grid. A voxel's
    value is the fraction of it the shape covers (exact for axis-aligned cubes; from ``4^3``
    sample points per voxel for freely rotated ones, whose mass is then within ~5 %), plus
    Gaussian noise of standard deviation ``noise`` on every voxel. The labels are balanced (each
    class ``n // 8`` or ``n // 8 + 1`` times) in a random order. Deterministic for a ``seed``: the
    labels, sizes and positions depend on ``n``, ``size``, ``scale_range`` and ``seed`` only, not
    on ``orientation`` or ``noise``.

    Args:
        n: the number of volumes (int >= 1).
        size: the grid's edge ``D = H = W`` in voxels (int >= 3).
        seed: the seed of every random draw (int >= 0).
        noise: the standard deviation of the voxel noise (>= 0; 0: none).
        scale_range: ``(low, high)``, the range of the cube edge in voxels, ``0 < low <= high``
            and ``high * 2.121 <= size / 2 - 1`` (the chain's half-diagonal must fit).
        orientation: ``"upright"`` (every shape as listed above), ``"octahedral"`` (each upright
            volume turned about the grid's centre by a uniformly drawn one of the 24 rotations of
            the cube, ``equilib.Octahedral``: exactly ``Octahedral().transform_image`` of it) or
            ``"random"`` (turned about the centre by a uniform random rotation,
            ``SO3().random_elements``, and rendered turned rather than interpolated), or rotation
            matrices: one ``(3, 3)`` for every volume or ``(n, 3, 3)``, one per volume (proper
            rotations of ``(x, y, z)``, rendered turned as for ``"random"``).

    Returns:
        ``(volumes, labels)``: float32 ``(n, size, size, size, 1)`` volumes ``(N, D, H, W, C)``
        (values in [0, 1] without noise) and int32 ``(n,)`` labels in 0..7.

    Raises:
        ValueError: a bad ``n``, ``size``, ``seed``, ``noise``, ``scale_range`` (also one too
            large for ``size``) or ``orientation`` (an unknown name, or matrices of another shape
            or not rotations; the message names it).

    Example:
        >>> import numpy as np
        >>> from equilib.data import polycubes
        >>> volumes, labels = polycubes(16, seed=0)
        >>> volumes.shape, volumes.dtype, labels.dtype
        ((16, 9, 9, 9, 1), dtype('float32'), dtype('int32'))
        >>> np.bincount(labels).tolist()  # balanced
        [2, 2, 2, 2, 2, 2, 2, 2]
        >>> bool(np.all(volumes.sum(axis=(1, 2, 3, 4)) >= 4.0))  # four cubes of edge >= 1 voxel
        True
    """
    n = _check_int("n", n, 1)
    size = _check_int("size", size, 3)
    seed = _check_int("seed", seed, 0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)) \
            or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"`noise` must be a finite number >= 0, got {noise!r}")
    low, high = _check_scale_range(scale_range, size)
    mats = None if isinstance(orientation, str) else _check_rotations(orientation, n)
    if mats is None and orientation not in ORIENTATIONS:
        raise ValueError(f"`orientation` must be one of {ORIENTATIONS} or rotation matrices, got {orientation!r}")

    rng = np.random.default_rng([seed, 0])
    labels = rng.permutation(np.arange(n) % len(POLYCUBE_SHAPES)).astype(np.int32)
    scales = rng.uniform(low, high, n)
    direction = rng.normal(size=(n, 3))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    room = size / 2 - 1 - _RADIUS * scales  # >= 0 by the check of scale_range
    centres = direction * (room * rng.uniform(0.0, 1.0, n) ** (1 / 3))[:, None]

    cubes = np.array(list(POLYCUBE_SHAPES.values()), dtype=np.float64)[labels]  # (n, 4, 3)
    if mats is not None or orientation == "random":
        if mats is None:
            from equilib.groups3d import SO3

            mats = SO3().random_elements(n, seed=int(np.random.default_rng([seed, 1]).integers(2 ** 31)))
        volumes = _render_rotated(cubes, mats, scales, np.einsum("nij,nj->ni", mats, centres), size)
    else:
        if orientation == "octahedral":
            from equilib.groups3d import Octahedral

            octa = Octahedral()
            turns = np.random.default_rng([seed, 1]).integers(0, octa.order, n)
            mats = np.stack([octa.matrix(g) for g in range(octa.order)])[turns]
            cubes = np.einsum("nij,nkj->nki", mats, cubes)
            centres = np.einsum("nij,nj->ni", mats, centres)
        volumes = _render_axis_aligned(cubes, scales, centres, size)
    if noise > 0:
        volumes = volumes + np.random.default_rng([seed, 2]).normal(0.0, noise, volumes.shape)
    return volumes.astype(np.float32)[..., None], labels


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_rotations(value, n: int) -> np.ndarray:
    """``(n, 3, 3)`` float64 rotation matrices from one ``(3, 3)`` or ``(n, 3, 3)``."""
    try:
        mats = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`orientation` must be one of {ORIENTATIONS} or rotation matrices (3, 3) / (n, 3, 3), "
                         f"got {type(value).__name__}") from None
    if mats.shape == (3, 3):
        mats = np.broadcast_to(mats, (n, 3, 3))
    if mats.shape != (n, 3, 3):
        raise ValueError(f"`orientation` as matrices must have shape (3, 3) or (n, 3, 3) = ({n}, 3, 3), got "
                         f"{mats.shape}")
    if not (np.allclose(mats @ np.swapaxes(mats, 1, 2), np.eye(3), atol=1e-5)
            and np.allclose(np.linalg.det(mats), 1.0, atol=1e-5)):
        raise ValueError("`orientation` matrices must be rotations (orthogonal, determinant +1)")
    return mats


def _check_scale_range(scale_range, size: int) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in scale_range)
    except (TypeError, ValueError):
        raise ValueError(f"`scale_range` must be a pair (low, high) of cube edges in voxels, got {scale_range!r}") \
            from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"`scale_range` must satisfy 0 < low <= high, got {scale_range!r}")
    largest = (size / 2 - 1) / _RADIUS
    if high > largest + 1e-9:
        raise ValueError(f"`scale_range` {scale_range!r} is too large for `size`={size}: a shape must fit within "
                         f"size / 2 - 1 = {size / 2 - 1:g} voxels of the centre, so high <= {largest:.3f} "
                         f"(or use a larger `size`)")
    return low, high


def _axis_coordinates(size: int) -> np.ndarray:
    """The centred coordinate of each index along an axis, ``i - (size - 1) / 2``."""
    return np.arange(size) - (size - 1) / 2


def _render_axis_aligned(cubes: np.ndarray, scales: np.ndarray, centres: np.ndarray, size: int) -> np.ndarray:
    """Exact coverage ``(n, D, H, W)`` of axis-aligned cubes ``(n, 4, 3)`` (integer ``(x, y, z)``):
    per cube the product over the axes of the overlap of the voxel's and the cube's extents; the
    cubes of a shape do not overlap, so the sum over them is the union's coverage."""
    lo, hi = cubes.min(axis=1, keepdims=True), cubes.max(axis=1, keepdims=True)
    # cube centres in space (x, y, z), about the shape's bounding-box centre
    pos = centres[:, None, :] + scales[:, None, None] * (cubes - (lo + hi) / 2)
    half = scales[:, None, None] / 2
    c = _axis_coordinates(size)
    # voxel (d, h, w) sits at x = c[w], y = -c[h], z = c[d] (equilib.groups3d)
    axis_coords = {0: c, 1: -c, 2: c}
    overlaps = []
    for axis in range(3):
        v = axis_coords[axis][None, None, :]
        a, b = (pos[..., axis] - half[..., 0])[..., None], (pos[..., axis] + half[..., 0])[..., None]
        overlaps.append(np.clip(np.minimum(v + 0.5, b) - np.maximum(v - 0.5, a), 0.0, None))  # (n, 4, size)
    ox, oy, oz = overlaps
    return np.einsum("nkd,nkh,nkw->ndhw", oz, oy, ox)


def _render_rotated(cubes: np.ndarray, mats: np.ndarray, scales: np.ndarray, centres: np.ndarray,
                    size: int) -> np.ndarray:
    """Coverage ``(n, D, H, W)`` of the shapes turned by ``mats`` ``(n, 3, 3)`` about their bounding
    box's centre, from ``_SUBSAMPLES^3`` points per voxel: a point is inside when its nearest
    integer point of the shape's frame is one of the cubes."""
    m = _SUBSAMPLES
    offsets = (np.arange(m) + 0.5) / m - 0.5
    c = _axis_coordinates(size)
    fine = (c[:, None] + offsets[None, :]).ravel()  # (size * m,) sample coordinates along an axis
    zz, yy, xx = np.meshgrid(fine, -fine, fine, indexing="ij")  # (d, h, w) sample grid
    points = np.stack([xx, yy, zz], axis=-1).reshape(-1, 3)
    out = np.empty((len(cubes), size, size, size))
    for i in range(len(cubes)):
        q = cubes[i]
        box_centre = (q.min(axis=0) + q.max(axis=0)) / 2
        # the shape's frame: u = R^T (p - c) / s + b (rows: points)
        u = (points - centres[i]) @ mats[i] / scales[i] + box_centre
        nearest = np.floor(u + 0.5)
        inside = np.zeros(len(points), dtype=bool)
        for cube in q:
            inside |= np.all(nearest == cube, axis=1)
        out[i] = inside.reshape(size, m, size, m, size, m).mean(axis=(1, 3, 5))
    return out
