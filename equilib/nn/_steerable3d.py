"""The steerable convolution on volumes: :class:`equilib.nn.SteerableConv` with field types of
:mod:`equilib.fields3d` (its spec lives here; the layer dispatches on the field types' class)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from equilib import functional as F
from equilib._exact import warn_if_inexact
from equilib._src import steerable3d
from equilib._src.checks import check_group_kernel, check_output_size
from equilib._src.init import Initializer, truncated_normal_blocks
from equilib._src.layers import WindowSpec
from equilib._src.so3 import random_rotations
from equilib.fields3d import FieldType3D, Rep3D, bandlimited_regular3d, irreps3d
from equilib.groups3d import FullOctahedral, Octahedral, OctahedralGroup, SpatialLieGroup

__all__ = ["SteerableConv3DSpec", "kernel_basis3d", "bandlimited_degree", "default_samples", "fourier_grid3d",
           "fourier_matrices3d", "grid_group"]


def _group_key(group) -> str:
    if isinstance(group, OctahedralGroup):
        return "Oh" if group.inversion else "O"
    return "O3" if group.improper else "SO3"


@functools.cache
def kernel_basis3d(rep_in: Rep3D, rep_out: Rep3D, kernel_size: int) -> np.ndarray:
    """The orthonormal basis ``(n, K**3, out, in)`` (float32, read-only) of equivariant kernels from
    fields of ``rep_in`` to fields of ``rep_out`` (:mod:`equilib._src.steerable3d`).

    Args:
        rep_in, rep_out: representations of the same group (:class:`equilib.fields3d.Rep3D`).
        kernel_size: ``K``.

    Returns:
        float32 ``(n, K**3, rep_out.size, rep_in.size)``; ``n`` may be 0.

    Example:
        >>> from equilib.fields3d import irrep3d
        >>> from equilib.groups3d import SO3
        >>> from equilib.nn._steerable3d import kernel_basis3d
        >>> kernel_basis3d(irrep3d(SO3(), 0), irrep3d(SO3(), 1), 5).shape  # phi(r) p on rings 1 and 2
        (2, 125, 3, 1)
    """
    basis = steerable3d.kernel_basis_3d(rep_in, rep_out, rep_in.size, rep_out.size, kernel_size,
                                         steerable3d.generators(_group_key(rep_in.group)))
    out = basis.reshape(len(basis), kernel_size**3, rep_out.size, rep_in.size).astype(np.float32)
    out.setflags(write=False)
    return out


def _fields_by_rep(ft: FieldType3D) -> list[tuple[Rep3D, np.ndarray]]:
    """``[(rep, channels (n_fields, rep.size))]`` in order of first appearance."""
    order: dict[Rep3D, list[int]] = {}
    for i, r in enumerate(ft.reps):
        order.setdefault(r, []).append(i)
    return [(r, np.array([ft.offsets[i] for i in fields])[:, None] + np.arange(r.size)[None, :])
            for r, fields in order.items()]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SteerableConv3DSpec(WindowSpec):
    """Steerable convolution on volumes: flat basis coefficients ``(num_params,)``, bias on the scalar
    output fields ``(num_bias,)``."""

    layer = "SteerableConv"
    derives_bias_key = True

    in_type: FieldType3D
    out_type: FieldType3D

    def __post_init__(self) -> None:
        for name in ("in_type", "out_type"):
            if not isinstance(getattr(self, name), FieldType3D):
                raise TypeError(f"`{name}` must be an equilib.fields3d.FieldType3D (the input's is), got "
                                f"{type(getattr(self, name)).__name__}")
        if self.in_type.group != self.out_type.group:
            raise ValueError(f"`in_type` is a field type of {self.in_type.group.name} but `out_type` of "
                             f"{self.out_type.group.name}: expected the same group")
        super().__post_init__()
        check_group_kernel(self.kernel_size, self.padding, self.layer)
        if not self.blocks():
            raise ValueError(f"no equivariant kernel maps {self.in_type!r} to {self.out_type!r} at kernel_size="
                             f"{self.kernel_size} (e.g. a scalar to a pseudo-vector under O3)")
        object.__setattr__(self, "use_bias", bool(self.use_bias) and len(self._bias_channels()) > 0)

    spatial_dims = 3

    def blocks(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
        """Per (output rep, input rep) pair with kernels: ``(basis (n, K^3, o, i), out_channels
        (n_out, o), in_channels (n_in, i))``."""
        return _blocks(self.in_type, self.out_type, self.kernel_size)

    @property
    def num_params(self) -> int:
        return sum(len(oc) * len(ic) * len(b) for b, oc, ic in self.blocks())

    def _bias_channels(self) -> np.ndarray:
        return np.array([self.out_type.offsets[i] for i, r in enumerate(self.out_type.reps) if r.is_trivial],
                        dtype=np.int64)

    def kernel_shape(self) -> tuple[int, ...]:
        return (self.num_params,)

    def bias_shape(self) -> tuple[int, ...] | None:
        return (len(self._bias_channels()),) if self.use_bias else None

    def default_kernel_init(self) -> Initializer:
        blocks = self.blocks()
        # LeCun: with an orthonormal basis, E||K_ab||^2 = n * std^2; per output channel the squared
        # weights over the fan-in sum to ~1 (std^2 = size_out / sum over inputs of n_in * n)
        fan: dict[bytes, int] = {}
        for b, oc, ic in blocks:
            fan[oc.tobytes()] = fan.get(oc.tobytes(), 0) + len(ic) * len(b)
        shapes = [(len(oc), len(ic), len(b)) for b, oc, ic in blocks]
        stds = [np.float32(np.sqrt(oc.shape[1] / fan[oc.tobytes()])) for _, oc, _ in blocks]
        n = self.num_params

        def init(key, shape, dtype=jnp.float32):
            if tuple(shape) != (n,):
                raise ValueError(f"SteerableConv's kernel has shape ({n},), got {tuple(shape)}")
            return truncated_normal_blocks(key, shapes, stds, dtype)

        return init

    def check(self, x: jax.Array) -> None:
        self.in_type.check(x, "x", self.layer)
        check_output_size(x.shape[1:4], self.kernel_size, self.padding, self.layer)
        warn_if_inexact(self.layer, x.shape[1:4], self.kernel_size, self.stride, self.padding, stacklevel=5)

    def prepare(self, kernel, bias):
        return self.expand_kernel(kernel), self.expand_bias(bias)

    def apply(self, x, kernel, bias, precision):
        return F.conv3d(x, kernel, stride=self.stride, padding=self.padding, bias=bias, precision=precision)

    def expand_kernel(self, kernel):
        k = self.kernel_size
        out = jnp.zeros((k**3, self.in_type.size, self.out_type.size), kernel.dtype)
        off = 0
        for b, oc, ic in self.blocks():
            size = len(oc) * len(ic) * len(b)
            w = kernel[off:off + size].reshape(len(oc), len(ic), len(b))
            off += size
            blk = jnp.einsum("abn,npoi->pbiao", w, jnp.asarray(b, kernel.dtype))
            blk = blk.reshape(k**3, ic.size, oc.size)
            out = out.at[:, ic.reshape(-1)[:, None], oc.reshape(-1)[None, :]].set(blk)
        return out.reshape(k, k, k, self.in_type.size, self.out_type.size)

    def expand_bias(self, bias):
        if bias is None:
            return None
        return jnp.zeros((self.out_type.size,), bias.dtype).at[self._bias_channels()].set(bias)


@functools.cache
def _blocks(in_type: FieldType3D, out_type: FieldType3D, kernel_size: int):
    out = []
    for r_out, oc in _fields_by_rep(out_type):
        for r_in, ic in _fields_by_rep(in_type):
            b = kernel_basis3d(r_in, r_out, kernel_size)
            if len(b):
                oc.setflags(write=False)
                ic.setflags(write=False)
                out.append((b, oc, ic))
    return tuple(out)


def is_volume_type(value: Any) -> bool:
    """Whether a field type argument is of :mod:`equilib.fields3d` (the layer is then 3D)."""
    return isinstance(value, FieldType3D)


# --- Fourier nonlinearities on band-limited functions on SO(3) / O(3) ----------------------------
def bandlimited_degree(in_type: FieldType3D) -> int | None:
    """``L`` if ``in_type`` is a whole number of copies of ``bandlimited_regular3d(group, L)`` (``L``
    its largest degree), else None."""
    if not isinstance(in_type.group, SpatialLieGroup):
        return None
    L = max(r.degree for r in in_type.reps)
    one = bandlimited_regular3d(in_type.group, L)
    n, rest = divmod(len(in_type.reps), len(one))
    return L if rest == 0 and tuple(in_type.reps) == one * n else None


def grid_group(group: SpatialLieGroup) -> OctahedralGroup:
    """The cube group whose orbits make the Fourier grid of ``group``: ``Octahedral()`` for SO(3),
    ``FullOctahedral()`` (with the inversion) for O(3); the grid size is a multiple of its order."""
    return FullOctahedral() if group.improper else Octahedral()


def default_samples(group: SpatialLieGroup, max_frequency: int) -> int:
    """The default grid size of :class:`equilib.nn.FourierPointwise` on volumes: a multiple of the
    cube's rotation group (24, or 48 with the inversion) at least 8x the SO(3) part's size
    ``sum_l (2l+1)^2`` (L = 1: 96 rotations, L = 2: 288, L = 3: 672). The sampling costs little
    next to a convolution; fewer samples alias more (``benchmarks/RESULTS.md``, section 8)."""
    size = sum((2 * degree + 1) ** 2 for degree in range(max_frequency + 1))
    cosets = max(1, -(-8 * size // 24))
    return cosets * grid_group(group).order


@functools.cache
def fourier_grid3d(group: SpatialLieGroup, samples: int) -> np.ndarray:
    """``(samples, 3, 3)`` elements of ``group`` at which a band-limited function is sampled: the
    orbits ``{o h_k}`` of ``K`` rotations ``h_k`` under the cube's rotations ``o`` (with the inversion
    for O(3)), so the grid is closed under them and the nonlinearity exactly equivariant there
    (escnn's ``thomson_cube`` grids have the same property). ``h_0`` is the identity; each further
    ``h_k`` is, among 4,000 random rotations (seeded), the one farthest from the orbits chosen so
    far: the grid spreads over SO(3), which makes the equivariance error off it small."""
    cube = grid_group(group)
    proper = np.stack([Octahedral().matrix(g) for g in range(24)])
    chosen = [np.eye(3)]
    points = proper
    candidates = random_rotations(4_000, seed=0)
    for _ in range(samples // cube.order - 1):
        # the rotation angle between C and P is arccos((tr(C^T P) - 1) / 2)
        traces = np.einsum("cij,pij->cp", candidates, points)
        h = candidates[int(np.argmin(traces.max(axis=1)))]  # the largest distance to its nearest
        chosen.append(h)
        points = np.concatenate([points, proper @ h])
    grid = np.stack([cube.matrix(g) @ h for h in chosen for g in range(cube.order)])
    grid.setflags(write=False)
    return grid


@functools.cache
def fourier_matrices3d(group: SpatialLieGroup, max_frequency: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A (N, d), A^+ (d, N))`` float32, read-only: ``A`` samples one band-limited function
    ``bandlimited_regular3d(group, L)`` (``d`` channels) at the ``N`` elements of
    :func:`fourier_grid3d`, ``f(R) = sum_l sqrt(2l+1) tr(D^l(R)^T F_l)`` (unit mean square for a
    unit coefficient vector), and ``A^+`` is its least-squares inverse.

    Raises:
        ValueError: ``A`` has not full column rank (too few samples for the band limit)."""
    grid = fourier_grid3d(group, samples)
    # each irrep's matrices at the grid once; copy n of degree l holds column n of F_l
    cols = [np.sqrt(rep.size) * np.stack([rep(r) for r in grid]).transpose(0, 2, 1).reshape(len(grid), -1)
            for rep in irreps3d(group, max_frequency)]
    a = np.concatenate(cols, axis=1)
    if np.linalg.matrix_rank(a, tol=1e-6 * np.sqrt(len(a))) < a.shape[1]:
        raise ValueError(f"`samples` = {samples} rotations cannot represent a function of band limit "
                         f"{max_frequency} on {group.name} ({a.shape[1]} coefficients); take more")
    out = a.astype(np.float32), np.linalg.pinv(a).astype(np.float32)
    for m in out:
        m.setflags(write=False)
    return out
