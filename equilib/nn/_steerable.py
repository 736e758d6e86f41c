"""Steerable layers (Flax NNX): convolution, nonlinearities, batch norm, pooling, restriction.

All layers act on steerable maps ``(B, H, W, D)`` (channels-last) whose channel axis is described
by a :class:`equilib.fields.FieldType`; every layer has ``in_type`` and ``out_type`` attributes and
checks the channel count of its input. :class:`FieldSequential` checks that consecutive layers'
types match. The group convention is that of :mod:`equilib.groups`; equivariance means
``layer(in_type.transform(x, angle, flip)) == out_type.transform(layer(x), angle, flip)``.

Exactness: for the rotations by multiples of 90 degrees and the mirror (when they are in the
group) every layer is exactly equivariant (fp32 rounding, ~1e-7), given symmetric sampling (odd
kernel, stride 1 or odd sizes; :func:`equilib.check_exact`). Other angles (C8, C16, SO(2)) are
approximate on the pixel grid: the kernels are band-limited, so the error comes from sampling
and interpolating the maps: the measured errors, the same as escnn's layers (same kernel space,
same initialisation scheme), are in ``benchmarks/RESULTS.md``, section "Equivariance error".
Layers acting pixel by pixel (nonlinearities, batch norm, pooling) are
exactly equivariant in their channels for every element of the group.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Sequence, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib._exact import warn_if_inexact
from equilib._src.checks import (
    check_group_kernel,
    check_output_size,
    tuple_or_none,
)
from equilib._src.fieldops import (
    POINTWISE,
    bias_columns,
    check_field_types,
    invariant_projector,
    lead,
    merge_by_rep,
    pointwise_fn,
    require_permutation,
    split_by_rep,
)
from equilib._src.init import Initializer, truncated_normal_blocks, zeros
from equilib._src.layers import BatchNormLayer, ExportableConvLayer, NormSpec, WindowSpec, set_fields
from equilib._src.norms import l2_norm
from equilib._src.repmath import irrep_matrix
from equilib._src.typing import Array
from equilib.fields import FieldType, as_field_type
from equilib.fields3d import FieldType3D, irrep3d
from equilib.functional import BasisConfig, SteerableBasis, batch_moments, batch_norm
from equilib.functional._conv import conv2d
from equilib.functional._steerable import (
    basis_config,
    expand_steerable_bias,
    expand_steerable_kernel,
    steerable_basis,
)
from equilib.groups import Group
from equilib.nn._spatial_pool import GlobalPool, MaxBlurPool, MaxPool
from equilib.nn._steerable3d import (
    SteerableConv3DSpec,
    bandlimited_degree,
    default_samples,
    fourier_matrices3d,
    grid_group,
    is_volume_type,
)
from equilib.nn._typed_pool import AdaptiveMaxPool
from equilib.reps import Rep, irrep_size, trivial_rep

__all__ = [
    "SteerableConv",
    "PointwiseNonlinearity",
    "NormNonlinearity",
    "GatedNonlinearity",
    "FourierPointwise",
    "FieldBatchNorm",
    "NormPool",
    "FieldGroupPool",
    "Restrict",
    "FieldSequential",
    "SteerableConvSpec",
    "FieldNormSpec",
    "InnerFieldNorm",
    "NormFieldNorm",
    "FIELD_NORM_KINDS",
    "field_norm_spec",
]


# --- convolution ------------------------------------------------------------------------------
@functools.cache
def _init_stds(basis) -> tuple[np.ndarray, ...]:
    """Per block, the std of each basis element (``(n_basis,)``), escnn's generalised He scheme
    with gain 1: an element from an input irrep of type ``t`` to the irrep at position ``a`` of an
    output field gets variance ``1 / (T_a * N_{a,t})``, with ``T_a`` the number of input irrep
    types reaching ``a`` and ``N_{a,t}`` the number of elements from type ``t`` to ``a`` (over all
    input fields). With elements normalised to ``|B|^2 = dim``, every output channel then has the
    variance of the input (white input), as a plain LeCun-initialised ``Conv``."""
    counts: dict = {}
    for b in basis.blocks:
        for a, bi in b.labels:
            key = (b.out_rep, int(a), b.in_rep.irreps[bi])
            counts[key] = counts.get(key, 0) + len(b.in_fields)
    types: dict = {}
    for ro, a, _t in counts:
        types[(ro, a)] = types.get((ro, a), 0) + 1
    out = []
    for b in basis.blocks:
        std = [1.0 / math.sqrt(types[(b.out_rep, int(a))] * counts[(b.out_rep, int(a), b.in_rep.irreps[bi])])
               for a, bi in b.labels]
        out.append(np.array(std))
    return tuple(out)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SteerableConvSpec(WindowSpec):
    """Steerable convolution: flat basis coefficients ``(num_params,)``, bias ``(num_bias,)``."""

    layer = "SteerableConv"
    derives_bias_key = True

    in_type: FieldType
    out_type: FieldType
    rings: Any = None
    sigma: Any = None
    frequency_cutoff: Any = None

    def __post_init__(self) -> None:
        check_field_types(self)
        super().__post_init__()
        check_group_kernel(self.kernel_size, self.padding, self.layer)
        set_fields(self, rings=tuple_or_none(self.rings, "rings"), sigma=tuple_or_none(self.sigma, "sigma"),
                   frequency_cutoff=tuple_or_none(self.frequency_cutoff, "frequency_cutoff"))
        # no bias where no output field has a trivial irrep
        set_fields(self, use_bias=bool(self.use_bias) and self.basis.bias_matrix.shape[0] > 0)

    @property
    def basis(self) -> SteerableBasis:
        """The layer's :class:`equilib.functional.SteerableBasis` (cached, numpy)."""
        return steerable_basis(self.in_type, self.out_type, self.kernel_size, rings=self.rings,
                               sigma=self.sigma, frequency_cutoff=self.frequency_cutoff)

    @property
    def config(self) -> BasisConfig:
        """The basis configuration (:func:`equilib.functional.basis_config`)."""
        return basis_config(self.kernel_size, rings=self.rings, sigma=self.sigma,
                            frequency_cutoff=self.frequency_cutoff)

    def kernel_shape(self) -> tuple[int, ...]:
        return (self.basis.num_params,)

    def bias_shape(self) -> tuple[int, ...] | None:
        return (self.basis.bias_matrix.shape[0],) if self.use_bias else None

    def default_kernel_init(self) -> Initializer:
        basis = self.basis
        shapes, stds = [b.shape for b in basis.blocks], _init_stds(basis)

        def init(key, shape, dtype=jnp.float32):
            if tuple(shape) != (basis.num_params,):
                raise ValueError(f"SteerableConv's kernel has shape ({basis.num_params},), got {tuple(shape)}")
            return truncated_normal_blocks(key, shapes, stds, dtype)

        return init

    def check(self, x: jax.Array) -> None:
        self.in_type.check(x, "x", self.layer)
        check_output_size(x.shape[1:3], self.kernel_size, self.padding, self.layer)
        warn_if_inexact(self.layer, x.shape[1:3], self.kernel_size, self.stride, self.padding, stacklevel=5)

    def prepare(self, kernel: Array, bias: Array | None) -> tuple[Array, Array | None]:
        # expanded in the parameters' dtype, then promoted with the input
        return self.expand_kernel(kernel), self.expand_bias(bias)

    def apply(self, x: Array, kernel: Array, bias: Array | None, precision: Any) -> Array:
        return conv2d(x, kernel, stride=self.stride, padding=self.padding, bias=bias, precision=precision)

    def expand_kernel(self, kernel: Array) -> Array:
        return expand_steerable_kernel(kernel, self.basis)

    def expand_bias(self, bias: Array | None) -> Array | None:
        return None if bias is None else expand_steerable_bias(bias, self.basis)


class SteerableConv(ExportableConvLayer):
    """Steerable convolution ``(B, H, W, in_type.size) -> (B, H', W', out_type.size)``; with field types
    of :mod:`equilib.fields3d` (SO(3), O(3), the octahedral groups) a convolution on volumes
    ``(B, D, H, W, in_type.size) -> (B, D', H', W', out_type.size)`` whose basis is Gaussian rings x real
    spherical harmonics solved for the group (:func:`equilib.nn._steerable3d.kernel_basis3d`).

    The kernel ``(K, K, D_in, D_out)`` is ``sum_b kernel[b] * basis[b]`` over the steerable basis
    of :func:`equilib.functional.steerable_basis` (Gaussian rings x band-limited angular
    harmonics, escnn's defaults), so ``k(g d) = rho_out(g) k(d) rho_in(g)^T``. The bias lives on
    the invariant directions of the output fields (one value per trivial irrep; a regular field
    gets one constant bias, a field without trivial irreps none). The basis is built in numpy and
    cached per configuration: building a layer costs no XLA compile.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input, ``D_in = in_type.size`` (or a
            :class:`~equilib.fields3d.FieldType3D`: the layer is 3D).
        out_type: the field type of the output (same group, same kind).
        kernel_size: an odd int ``K`` (even only with ``padding="VALID"``), or ``(K, K)``.
        rings: the radii of the rings, as in :func:`equilib.functional.basis_config` (None:
            escnn's defaults, as for ``sigma`` and ``frequency_cutoff``).
        sigma: the widths of the rings.
        frequency_cutoff: the angular band limit.
        kernel_init: initialiser ``(key, (num_params,), dtype) -> array`` of the flat basis
            coefficients (``layer.basis.num_params`` of them, one block per pair of
            representations); None: truncated normal with escnn's generalised He variances
            (gain 1): activations keep the variance of a plain LeCun-initialised ``Conv``.
        bias_init: initialiser ``(key, (num_bias,), dtype)`` of the bias on the trivial irreps
            (default zeros). Its key is derived from the kernel's: the layer takes one key from
            ``rngs``.

    ``stride``, ``padding``, ``use_bias``, ``dtype``, ``param_dtype``, ``precision`` and
    ``rngs`` are those of :class:`Conv`.

    Parameters: ``kernel`` ``(num_params,)`` (flat basis coefficients), ``bias`` ``(num_bias,)``
    (None if ``use_bias=False`` or no output field has a trivial irrep).
    :meth:`expanded_kernel` is the HWIO kernel ``(K, K, D_in, D_out)``, :meth:`expanded_bias`
    the ``(D_out,)`` bias, :meth:`export` an equal ``nnx.Conv``.

    Raises:
        ValueError: a bad argument (field types of different groups, an output field no kernel
            reaches, ...); on call, an input that is not ``(B, H, W, D_in)``, or smaller than the
            kernel with ``padding="VALID"``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> G = Cyclic(4)
        >>> scalar, regular = FieldType(G, [reps.trivial_rep(G)]), FieldType(G, [reps.regular_rep(G)] * 2)
        >>> conv = nn.SteerableConv(scalar, regular, 5, rngs=nnx.Rngs(0))
        >>> conv(jnp.ones((1, 9, 9, 1))).shape, conv.expanded_kernel().shape
        ((1, 9, 9, 8), (5, 5, 1, 8))
    """

    def __init__(self, in_type: FieldType, out_type: FieldType, kernel_size: Any, *, stride: Any = 1,
                 padding: str = "SAME", use_bias: bool = True, rings: Any = None, sigma: Any = None,
                 frequency_cutoff: Any = None, dtype: Any = None, param_dtype: Any = jnp.float32,
                 precision: Any = None, kernel_init: Initializer | None = None, bias_init: Initializer = zeros,
                 rngs: nnx.Rngs):
        spec = steerable_conv_spec(in_type, out_type, kernel_size, stride=stride, padding=padding,
                                   use_bias=use_bias, rings=rings, sigma=sigma, frequency_cutoff=frequency_cutoff)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


def steerable_conv_spec(in_type, out_type, kernel_size: Any, *, stride: Any = 1, padding: str = "SAME",
                        use_bias: bool = True, rings: Any = None, sigma: Any = None,
                        frequency_cutoff: Any = None) -> SteerableConvSpec | SteerableConv3DSpec:
    """The spec of :class:`SteerableConv` (and of its Linen wrapper): planar for a
    :class:`~equilib.fields.FieldType`, on volumes for a :class:`~equilib.fields3d.FieldType3D`."""
    if is_volume_type(in_type):  # fields of equilib.fields3d: a convolution on volumes
        given = [n for n, v in (("rings", rings), ("sigma", sigma), ("frequency_cutoff", frequency_cutoff))
                 if v is not None]
        if given:
            raise ValueError(f"{given} configure the planar basis; the 3D basis takes escnn-like defaults "
                             f"(rings at radii 0..(K-1)/2, degrees <= min(2r, K//2 - r + 2)): leave them None")
        return SteerableConv3DSpec(in_type=cast(Any, in_type), out_type=cast(Any, out_type),
                                   kernel_size=kernel_size, stride=stride, padding=padding, use_bias=use_bias)
    return SteerableConvSpec(in_type=in_type, out_type=out_type, kernel_size=kernel_size, stride=stride,
                             padding=padding, use_bias=use_bias, rings=rings, sigma=sigma,
                             frequency_cutoff=frequency_cutoff)


def _any_field_type(in_type):
    """``in_type`` as a planar FieldType or a FieldType3D (layers that only need per-field norms)."""
    return in_type if is_volume_type(in_type) else as_field_type(in_type, "in_type")


# --- nonlinearities ---------------------------------------------------------------------------
class PointwiseNonlinearity(nnx.Module):
    """An elementwise function on fields whose representations permute channels (trivial,
    regular, quotient): equivariant because it commutes with permutations. ``out_type = in_type``.
    On volumes (a :class:`~equilib.fields3d.FieldType3D`) only scalar fields qualify.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input ``(B, H, W, in_type.size)``
            (or a ``FieldType3D``: ``(B, D, H, W, in_type.size)``).
        function: ``"relu"``, ``"elu"``, ``"gelu"``, ``"silu"``, ``"sigmoid"``, ``"tanh"``,
            ``"leaky_relu"`` or a callable applied elementwise.

    Raises:
        ValueError: a field does not permute channels (use :class:`NormNonlinearity`,
            :class:`GatedNonlinearity` or :class:`FourierPointwise`), or an unknown ``function``;
            on call, an input that is not ``(B, H, W, in_type.size)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> relu = nn.PointwiseNonlinearity(FieldType(Cyclic(4), [reps.regular_rep(Cyclic(4))]), "relu")
        >>> relu(jnp.array([-1.0, 2.0, -3.0, 4.0]).reshape(1, 1, 1, 4)).ravel()
        Array([0., 2., 0., 4.], dtype=float32)
    """

    def __init__(self, in_type: FieldType, function="relu"):
        self.in_type = self.out_type = _any_field_type(in_type)
        require_permutation(self.in_type, "PointwiseNonlinearity",
                             "use NormNonlinearity, GatedNonlinearity or FourierPointwise for it")
        self.function = function
        self._fn = pointwise_fn(function)

    def __call__(self, x: Array) -> Array:
        self.in_type.check(x, "x", "PointwiseNonlinearity")
        x = jnp.asarray(x)
        return self._fn(x)


_NORM_FUNCTIONS = {
    "n_relu": jax.nn.relu,
    "n_sigmoid": jax.nn.sigmoid,
    "n_softplus": jax.nn.softplus,
    "squash": lambda t: t / (1.0 + t),
}


class NormNonlinearity(nnx.Module):
    """Per field ``f -> f * phi(|f| - b) / |f|`` (escnn's norm nonlinearities): the norm of an
    orthogonal representation is invariant, so any field type works (also a
    :class:`~equilib.fields3d.FieldType3D` on volumes). ``out_type = in_type``.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input ``(B, H, W, in_type.size)``
            (or a ``FieldType3D``: ``(B, D, H, W, in_type.size)``).
        function: ``"n_relu"`` (default), ``"n_sigmoid"``, ``"n_softplus"`` or ``"squash"``
            (``|f| / (1 + |f|)``, no bias).
        use_bias: learn a bias ``b`` per field (initialised to 0).
        epsilon: the norm below which ``|f|`` is replaced by it in the division (the layer is then
            linear in ``f``: still equivariant, and continuous at 0). Not smaller: a field that is
            zero by symmetry (or in an empty region) comes out of a convolution as float32
            rounding noise of random direction, and ``phi(|f| - b) / |f|`` with a negative bias
            would scale that noise up to the bias's size (measured: equivariance errors of 1e-4 to
            1e-2 on the voxel grid with 1e-6, 3e-7 with 1e-3).
        param_dtype: the dtype of the bias.
        rngs: required as in NNX; no key is drawn (the bias starts at 0).

    Parameters: ``bias`` ``(n_fields,)``, if ``use_bias``.

    Raises:
        ValueError: an unknown ``function``, or ``use_bias`` with ``"squash"``; on call, an input
            that is not ``(B, H, W, in_type.size)``.

    Example:
        A vector field of SO(2) (irrep 1) of norm 5 keeps its direction, its norm passes a relu:

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import SO2, FieldType, nn, reps
        >>> layer = nn.NormNonlinearity(FieldType(SO2(), [reps.irrep(SO2(), 1)]), rngs=nnx.Rngs(0))
        >>> layer.bias[...] = jnp.array([1.0])
        >>> layer(jnp.array([3.0, 4.0]).reshape(1, 1, 1, 2)).ravel()
        Array([2.4, 3.2], dtype=float32)
    """

    def __init__(self, in_type: FieldType, function: str = "n_relu", *, use_bias: bool = True,
                 epsilon: float = 1e-3, param_dtype=jnp.float32, rngs: nnx.Rngs):
        del rngs  # required as in NNX; the bias starts at 0: no key is drawn
        self.in_type = self.out_type = _any_field_type(in_type)
        if function not in _NORM_FUNCTIONS:
            raise ValueError(f"`function` must be one of {sorted(_NORM_FUNCTIONS)}, got {function!r}")
        if function == "squash" and use_bias:
            raise ValueError("`use_bias` must be False with function='squash' (as in escnn)")
        self.function, self.epsilon = function, float(epsilon)
        n = len(self.in_type)
        self.bias = nnx.Param(zeros(None, (n,), param_dtype)) if use_bias else None

    def __call__(self, x: Array) -> Array:
        self.in_type.check(x, "x", "NormNonlinearity")
        x = jnp.asarray(x)
        fn = _NORM_FUNCTIONS[self.function]
        parts = []
        for _, fields, xg in split_by_rep(self.in_type, x):
            norm = l2_norm(xg, keepdims=True)
            arg = norm if self.bias is None else norm - lead(self.bias[...][fields][:, None].astype(x.dtype), norm)
            mult = fn(arg) / jnp.maximum(norm, self.epsilon)
            parts.append((fields, xg * mult))
        return merge_by_rep(parts, len(self.in_type))


class GatedNonlinearity(nnx.Module):
    """Gated nonlinearity: each gated field is multiplied by ``sigmoid`` of its trivial gate field.

    The gates are dropped: ``out_type`` holds the gated fields, in order. Equivariant for any
    gated representation (the gates are invariant scalars); also on volumes, with a
    :class:`~equilib.fields3d.FieldType3D` (gates: the scalars ``irrep3d(group, 0)``).

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input, gates and gated fields
            (or a ``FieldType3D``).
        gates: one label per field of ``in_type``, ``"gate"`` or ``"gated"``; the i-th gate
            scales the i-th gated field. None: the first half of the fields are the gates (they
            must be trivial) and the second half the gated fields.

    Raises:
        ValueError: labels that are not one per field, not "gate"/"gated", not one gate per
            gated field, or a gate field that is not trivial of size 1; on call, an input that is
            not ``(B, H, W, in_type.size)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import SO2, FieldType, nn, reps
        >>> t = FieldType(SO2(), [reps.trivial_rep(SO2()), reps.irrep(SO2(), 1)])
        >>> gate = nn.GatedNonlinearity(t, ["gate", "gated"])
        >>> gate.out_type.size, gate(jnp.array([0.0, 2.0, 4.0]).reshape(1, 1, 1, 3)).ravel()
        (2, Array([1., 2.], dtype=float32))
    """

    def __init__(self, in_type: FieldType, gates: Sequence[str] | None = None):
        self.in_type = _any_field_type(in_type)
        n = len(self.in_type)
        if gates is None:
            if n % 2:
                raise ValueError(f"GatedNonlinearity: `in_type` has {n} fields; without `gates` the first "
                                 f"half are the gates, so expected an even number of fields")
            gates = ["gate"] * (n // 2) + ["gated"] * (n // 2)
        gates = list(gates)
        if len(gates) != n:
            raise ValueError(f"`gates` must have one label per field of `in_type` ({n}), got {len(gates)}")
        bad = [g for g in gates if g not in ("gate", "gated")]
        if bad:
            raise ValueError(f"`gates` labels must be 'gate' or 'gated', got {bad[0]!r}")
        gate_idx = [i for i, g in enumerate(gates) if g == "gate"]
        gated_idx = [i for i, g in enumerate(gates) if g == "gated"]
        if len(gate_idx) != len(gated_idx):
            raise ValueError(f"GatedNonlinearity needs one gate per gated field, got {len(gate_idx)} "
                             f"gates and {len(gated_idx)} gated fields")
        for i in gate_idx:
            if not self.in_type.reps[i].is_trivial or self.in_type.reps[i].size != 1:
                raise ValueError(f"gate field {i} of `in_type` must be trivial (size 1), got "
                                 f"{self.in_type.reps[i].name}")
        self.gates = tuple(gates)
        self.out_type = type(self.in_type)(self.in_type.group, [self.in_type.reps[i] for i in gated_idx])
        self._gate_channels = tuple(self.in_type.offsets[i] for i in gate_idx)
        self._gated_channels = tuple(c for i in gated_idx for c in range(
            self.in_type.offsets[i], self.in_type.offsets[i] + self.in_type.reps[i].size))
        self._expand = tuple(k for k, i in enumerate(gated_idx) for _ in range(self.in_type.reps[i].size))

    def __call__(self, x: Array) -> Array:
        self.in_type.check(x, "x", "GatedNonlinearity")
        x = jnp.asarray(x)
        g = jax.nn.sigmoid(jnp.take(x, jnp.asarray(self._gate_channels), axis=-1))
        y = jnp.take(x, jnp.asarray(self._gated_channels), axis=-1)
        return y * jnp.take(g, jnp.asarray(self._expand), axis=-1)


@functools.cache
def _fourier_matrices(rep: Rep, samples: int | None):
    """``A (N, d)`` sampling a field of ``rep`` as a function on ``N`` group elements, and its
    pseudo-inverse ``(d, N)``: ``f(g) = sum_slots <psi(g) e_c, f_slot>``, the c-th axis for the
    c-th occurrence of an irrep."""
    group = rep.group
    if isinstance(group, Group):
        els = [(group.angle(g), group.flip(g)) for g in range(group.order)]
    else:
        assert samples is not None  # FourierPointwise sets it for the continuous groups
        els = [(2 * math.pi * r / samples, f) for f in range(2 if group.reflection else 1)
               for r in range(samples)]
    if isinstance(group, Group) and rep.is_permutation:
        # f(g) = <rho(g) e_0, f>: the samples are the channels themselves (regular: A = I), so on
        # regular / quotient fields this is the plain pointwise nonlinearity
        a = np.stack([rep(g)[:, 0] for g in range(group.order)])
        return a.astype(np.float32), np.linalg.pinv(a).astype(np.float32)
    seen: dict = {}
    cols = []
    for ident in rep.irreps:
        c = seen.get(ident, 0)
        seen[ident] = c + 1
        d = irrep_size(group, ident)
        cols.append(np.stack([irrep_matrix(group, ident, a, f)[:, c % d] for a, f in els]))
    a = np.concatenate(cols, axis=1) @ np.asarray(rep.change_of_basis).T
    if np.linalg.matrix_rank(a, tol=1e-8) < rep.size:
        return None
    return a.astype(np.float32), np.linalg.pinv(a).astype(np.float32)


class FourierPointwise(nnx.Module):
    """Pointwise nonlinearity on the group: each field is read as a band-limited function on the
    group, sampled at ``N`` elements, passed through ``function`` and projected back:
    ``f -> A^+ phi(A f)``. ``out_type = in_type``.

    The samples are the whole group (finite groups) or the rotations by ``2*pi*n/samples`` (and
    their mirrors, O(2)); equivariance is exact for those elements (so for rot90 when
    ``samples % 4 == 0``) and approximate in between.

    On volumes the input is a :class:`~equilib.fields3d.FieldType3D` made of ``C`` band-limited
    functions on SO(3) or O(3), ``FieldType3D(G, bandlimited_regular3d(G, L) * C)``, each sampled
    at ``samples`` rotations (orbits of the cube's rotations whose representatives are spread over
    SO(3), seeded: the same grid every time) with ``f(R) = sum_l sqrt(2l+1) tr(D^l(R)^T F_l)`` and projected
    back by least squares. Exactly equivariant under the 24 grid rotations (48 with the inversion),
    approximately at other rotations (``benchmarks/RESULTS.md``, section 8: the error falls with
    ``samples``), as escnn's ``FourierPointwise`` on its ``thomson_cube`` grids.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input; each field must be a
            band-limited function on the group: ``bandlimited_regular_rep(group, L)`` (SO(2),
            O(2)), ``regular_rep(group)`` or a sum of distinct irreps (:mod:`equilib.reps`). Or a
            :class:`~equilib.fields3d.FieldType3D` of copies of ``bandlimited_regular3d(G, L)``.
        function: as for :class:`PointwiseNonlinearity`.
        samples: the number of rotations sampled (continuous groups; ignored for finite ones);
            None: ``4 * (L + 1)`` for the largest frequency ``L``. On volumes a multiple of 24
            (48 for O(3)); None: at least 8x the size of the SO(3) part (96 for L = 1, 288 for L = 2).

    Raises:
        ValueError: ``samples`` too small for the frequencies (or, on volumes, not a multiple of
            the cube group's order), or a field that is not such a function; on call, an input
            that is not ``(B, H, W, in_type.size)`` (``(B, D, H, W, in_type.size)`` on volumes).

    Example:
        On regular fields of a finite group it is the plain pointwise function:

        >>> import jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> layer = nn.FourierPointwise(FieldType(Cyclic(2), [reps.regular_rep(Cyclic(2))]), "relu")
        >>> layer(jnp.array([-1.0, 1.0]).reshape(1, 1, 1, 2)).ravel()
        Array([0., 1.], dtype=float32)
    """

    def __init__(self, in_type: FieldType | FieldType3D, function="relu", *, samples: int | None = None):
        self._fn = pointwise_fn(function)
        self.function = function
        self.in_type: FieldType | FieldType3D
        self.out_type: FieldType | FieldType3D
        if isinstance(in_type, FieldType3D):
            self._init_volume(in_type, samples)
            return
        self.in_type = self.out_type = as_field_type(in_type, "in_type")
        group = self.in_type.group
        if isinstance(group, Group):
            samples = None
        else:
            lmax = max(r.max_frequency for r in self.in_type.reps)
            if samples is None:
                samples = 4 * (lmax + 1)
            if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples <= 2 * lmax:
                raise ValueError(f"`samples` must be an integer > 2 * max frequency (= {2 * lmax}) to "
                                 f"represent the fields without aliasing, got {samples!r}")
            samples = int(samples)
        for i, r in enumerate(self.in_type.reps):
            if _fourier_matrices(r, samples) is None:
                raise ValueError(f"field {i} of `in_type` ({r.name}) is not a band-limited function on "
                                 f"{group.name} (an irrep of complex type repeated, or too few samples); "
                                 f"expected e.g. bandlimited_regular_rep(group, L) or regular_rep(group)")
        self.samples = samples

    def _init_volume(self, in_type: FieldType3D, samples: int | None) -> None:
        self.in_type = self.out_type = in_type
        group = in_type.group
        L = bandlimited_degree(in_type)
        if L is None:
            raise ValueError(f"`in_type` ({in_type!r}) must be copies of bandlimited_regular3d(group, L) of "
                             f"SO3() or O3() (band-limited functions on the group), in that order")
        order = grid_group(group).order
        if samples is None:
            samples = default_samples(group, L)
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < order \
                or samples % order:
            raise ValueError(f"`samples` must be a positive multiple of {order} (orbits of the cube's rotations"
                             f"{' and the inversion' if group.improper else ''}), got {samples!r}")
        self.samples = int(samples)
        fourier_matrices3d(group, L, self.samples)  # checks the rank now, not at the first call
        self._max_frequency = L

    def __call__(self, x: Array) -> Array:
        self.in_type.check(x, "x", "FourierPointwise")
        x = jnp.asarray(x)
        if isinstance(self.in_type, FieldType3D):
            a, ainv = fourier_matrices3d(self.in_type.group, self._max_frequency, self.samples)
            f = x.reshape(*x.shape[:-1], -1, a.shape[1])  # (..., functions, coefficients)
            s = jnp.einsum("...d,nd->...n", f, jnp.asarray(a, x.dtype))
            return jnp.einsum("...n,dn->...d", self._fn(s), jnp.asarray(ainv, x.dtype)).reshape(x.shape)
        parts = []
        for rep, fields, xg in split_by_rep(self.in_type, x):
            a, ainv = _fourier_matrices(rep, self.samples)
            s = jnp.einsum("...d,nd->...n", xg, jnp.asarray(a, xg.dtype))
            parts.append((fields, jnp.einsum("...n,dn->...d", self._fn(s), jnp.asarray(ainv, xg.dtype))))
        return merge_by_rep(parts, len(self.in_type))


# --- batch norm -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class FieldNormSpec(NormSpec):
    """Batch norm of a steerable map field by field; subclasses are the normalisation kinds
    (statistics per field, one scale per field; what the mean and the bias are differs)."""

    layer = "FieldBatchNorm"
    kind: ClassVar[str]

    in_type: FieldType

    def __post_init__(self) -> None:
        set_fields(self, in_type=_any_field_type(self.in_type))

    @property
    def out_type(self) -> FieldType:
        """The output's field type, ``in_type``."""
        return self.in_type

    def check(self, x: jax.Array) -> None:
        self.in_type.check(x, "x", self.layer)

    def split(self, x: Array):
        """``[(rep, fields, x_g)]``, the fields of each representation ``(..., n_g, d)``."""
        return split_by_rep(self.in_type, x)

    def moments(self, xs: Any, axis_name: Any) -> tuple[Array, Array]:
        stats = [(fields, *self._field_moments(rep, xg, axis_name)) for rep, fields, xg in xs]
        return self._merge_stats(stats)

    def _merge_stats(self, stats) -> tuple[Array, Array]:
        """``(mean, var)`` batch statistics from ``[(fields, mean, var)]`` per representation."""
        dtype = stats[0][2].dtype  # float32 at least, as the moments
        var_all = jnp.zeros((len(self.in_type),), dtype)
        for fields, _, var in stats:
            var_all = var_all.at[jnp.asarray(fields)].set(var)
        return self._merge_means([(fields, mean) for fields, mean, _ in stats], dtype), var_all

    def normalize(self, xs: Any, mean: Array, var: Array, scale: Array | None, bias: Array | None,
                  epsilon: float) -> Array:
        parts = []
        for (rep, fields, xg), mg in zip(xs, self._split_mean(mean)):
            fj = jnp.asarray(fields)
            inv = jax.lax.rsqrt(var[fj] + epsilon)[:, None]
            if scale is not None:
                inv = inv * scale[fj][:, None]
            y = (xg - lead(mg.astype(xg.dtype), xg)) * lead(inv.astype(xg.dtype), xg)
            parts.append((fields, y if bias is None else self._add_bias(y, rep, fields, bias)))
        return merge_by_rep(parts, len(self.in_type))

    def _field_moments(self, rep: Rep, xg: jax.Array, axis_name):
        """``(mean, var)`` of the fields ``xg`` ``(..., n_g, d)`` of one representation."""
        raise NotImplementedError

    def _merge_means(self, means, dtype):
        """The ``mean`` batch statistic from the per-representation means."""
        raise NotImplementedError

    def _split_mean(self, mean):
        """Per representation (in ``split_by_rep`` order), the mean to subtract, broadcastable
        against its fields ``(..., n_g, d)``."""
        raise NotImplementedError

    def _add_bias(self, y, rep: Rep, fields: np.ndarray, bias: jax.Array) -> jax.Array:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, kw_only=True)
class InnerFieldNorm(FieldNormSpec):
    """``kind="inner"`` (escnn's ``InnerBatchNorm``; fields must permute channels): per field,
    mean and variance over batch, space and the field's channels; one bias per field.
    Statistics ``mean``, ``var`` ``(n_fields,)``."""

    kind = "inner"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_permutation(self.in_type, "FieldBatchNorm(kind='inner')", "use kind='norm'")

    def stat_shapes(self):
        return (len(self.in_type),), (len(self.in_type),)

    def param_shapes(self):
        return (len(self.in_type),), (len(self.in_type),)

    def _field_moments(self, rep, xg, axis_name):
        return batch_moments(xg, feature_axis=-2, axis_name=axis_name)

    def batch_normalize(self, xs, scale, bias, epsilon, axis_name):
        # per representation, the fused batch norm (its closed-form gradient) on (..., n_g, d)
        parts, stats = [], []
        for _, fields, xg in xs:
            fj = jnp.asarray(fields)
            y, mean, var = batch_norm(xg, None if scale is None else scale[fj], None if bias is None else bias[fj],
                                      feature_axis=-2, epsilon=epsilon, axis_name=axis_name)
            parts.append((fields, y))
            stats.append((fields, mean, var))
        return merge_by_rep(parts, len(self.in_type)), self._merge_stats(stats)

    def _merge_means(self, means, dtype):
        mean_all = jnp.zeros((len(self.in_type),), dtype)
        for f, m in means:
            mean_all = mean_all.at[jnp.asarray(f)].set(m)
        return mean_all

    def _split_mean(self, mean):
        return [mean[jnp.asarray(f)][:, None] for _, f, _ in self.in_type.groups()]

    def _add_bias(self, y, rep, fields, bias):
        return y + lead(bias[jnp.asarray(fields)][:, None].astype(y.dtype), y)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NormFieldNorm(FieldNormSpec):
    """``kind="norm"`` (any field type; escnn's ``NormBatchNorm``/``IIDBatchNorm2d``): the mean
    is taken on the field's invariant directions only (none for nontrivial irreps), the
    variance is ``E|f - mean|^2 / d``; one bias per trivial irrep. Statistics ``mean``
    ``(D,)``, ``var`` ``(n_fields,)``."""

    kind = "norm"

    def stat_shapes(self):
        return (self.in_type.size,), (len(self.in_type),)

    def param_shapes(self):
        nb = sum(r.trivial_columns().shape[1] for r in self.in_type.reps)
        return (len(self.in_type),), ((nb,) if nb else None)

    def _field_moments(self, rep, xg, axis_name):
        proj = jnp.asarray(invariant_projector(rep))
        xf = xg.astype(jnp.promote_types(xg.dtype, jnp.float32))
        m = jnp.mean(xf, axis=tuple(range(xf.ndim - 2))) @ proj  # (n_g, d)
        if axis_name is not None:
            m = jax.lax.pmean(m, axis_name)
        var = jnp.mean(jnp.sum(jnp.square(xf - lead(m, xf)), axis=-1), axis=tuple(range(xf.ndim - 2))) / rep.size
        if axis_name is not None:
            var = jax.lax.pmean(var, axis_name)
        return m, var

    def _merge_means(self, means, dtype):
        return merge_by_rep([(f, m[None]) for f, m in means], len(self.in_type))[0]

    def _split_mean(self, mean):
        return [mg[0] for _, _, mg in split_by_rep(self.in_type, mean[None])]

    def _add_bias(self, y, rep, fields, bias):
        cols = bias_columns(self.in_type)[rep]
        if not cols.shape[0]:
            return y
        counts = [r.trivial_columns().shape[1] for r in self.in_type.reps]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        idx = offsets[fields][:, None] + np.arange(cols.shape[0])[None]  # (n_g, t)
        return y + lead((bias[jnp.asarray(idx)] @ jnp.asarray(cols)).astype(y.dtype), y)


FIELD_NORM_KINDS: dict[str, type[FieldNormSpec]] = {"inner": InnerFieldNorm, "norm": NormFieldNorm}


def field_norm_spec(in_type: FieldType, kind: str) -> FieldNormSpec:
    """The :class:`FieldNormSpec` of ``kind`` ("inner" or "norm") for ``in_type``."""
    in_type = _any_field_type(in_type)
    if kind not in FIELD_NORM_KINDS:
        raise ValueError(f"`kind` must be 'inner' or 'norm', got {kind!r}")
    return FIELD_NORM_KINDS[kind](in_type=in_type)


class FieldBatchNorm(BatchNormLayer):
    """Batch normalisation of a steerable map ``(B, H, W, D)``, field by field, equivariantly; also
    of a steerable volume ``(B, D, H, W, C)`` with a :class:`~equilib.fields3d.FieldType3D`.

    ``kind="inner"`` (escnn's ``InnerBatchNorm``; fields must permute channels: trivial, regular,
    quotient): per field, mean and variance over batch, space and the field's channels, as
    :class:`GroupBatchNorm`; one scale and bias per field. ``kind="norm"`` (any field type, escnn's
    ``NormBatchNorm``/``IIDBatchNorm2d``): the mean is taken on the field's invariant directions
    only (none for nontrivial irreps), the variance is ``E|f - mean|^2 / d``; one scale per field
    and one bias per trivial irrep. For regular fields both kinds compute the same statistics.
    Each kind is a class (:class:`InnerFieldNorm`, :class:`NormFieldNorm`, in ``FIELD_NORM_KINDS``).

    Training mode (``use_running_average=False``) uses the batch statistics and updates the running
    ones (``ra = momentum * ra + (1 - momentum) * batch``); ``model.eval()`` uses the running ones.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input (``out_type`` is the same), or
            a ``FieldType3D`` (``kind="inner"`` then needs scalar fields only; ``"norm"`` takes any).
        kind: "inner" or "norm".

    The other arguments are those of :class:`GroupBatchNorm`.

    Parameters: ``scale`` ``(n_fields,)``, ``bias`` (``(n_fields,)`` inner, ``(num_trivial,)``
    norm); batch stats: ``mean`` (``(n_fields,)`` inner, ``(D,)`` norm), ``var`` ``(n_fields,)``.

    Raises:
        ValueError: an unknown ``kind``, ``kind="inner"`` on fields that do not permute channels,
            a bad ``momentum``/``epsilon``; on call, an input that is not ``(B, H, W, D)``.

    Example:
        A regular field (4 channels) and a vector field (irrep 1, 2 channels) of C4:

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> t = FieldType(Cyclic(4), [reps.regular_rep(Cyclic(4)), reps.irrep(Cyclic(4), 1)])
        >>> bn = nn.FieldBatchNorm(t, kind="norm", rngs=nnx.Rngs(0))
        >>> bn(jnp.ones((2, 5, 5, 6))).shape, bn.mean.shape
        ((2, 5, 5, 6), (6,))
    """

    def __init__(self, in_type: FieldType, *, kind: str = "inner", use_running_average: bool = False,
                 momentum: float = 0.99, epsilon: float = 1e-5, use_scale: bool = True,
                 use_bias: bool = True, axis_name: Any = None, dtype: Any = None,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        super().__init__(field_norm_spec(in_type, kind), use_running_average=use_running_average,
                         momentum=momentum, epsilon=epsilon, use_scale=use_scale, use_bias=use_bias,
                         axis_name=axis_name, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


# --- pooling and restriction ------------------------------------------------------------------
class NormPool(nnx.Module):
    """Per field L2 norm: ``(B, H, W, D) -> (B, H, W, n_fields)``, invariant fields
    (``out_type``: trivial). Works for any (orthogonal) field type, and on volumes
    ``(B, D, H, W, C)`` with a :class:`~equilib.fields3d.FieldType3D`.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input ``(B, H, W, in_type.size)``
            (or a ``FieldType3D``).

    Raises:
        ValueError: on call, an input that is not ``(B, H, W, in_type.size)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import SO2, FieldType, nn, reps
        >>> pool = nn.NormPool(FieldType(SO2(), [reps.irrep(SO2(), 1)] * 2))
        >>> pool(jnp.array([3.0, 4.0, 0.0, 1.0]).reshape(1, 1, 1, 4)).ravel()
        Array([5., 1.], dtype=float32)
    """

    def __init__(self, in_type: FieldType):
        self.in_type = _any_field_type(in_type)
        g = self.in_type.group
        self.out_type: FieldType | FieldType3D
        if is_volume_type(self.in_type):
            self.out_type = FieldType3D(g, [irrep3d(g, 0)] * len(self.in_type))
        else:
            self.out_type = FieldType(g, [trivial_rep(g)] * len(self.in_type))

    def __call__(self, x: Array) -> Array:
        self.in_type.check(x, "x", "NormPool")
        x = jnp.asarray(x)
        parts = [(f, l2_norm(xg, keepdims=True))
                 for _, f, xg in split_by_rep(self.in_type, x)]
        return merge_by_rep(parts, len(self.in_type))


class FieldGroupPool(nnx.Module):
    """Group pooling: max (or mean) over the channels of each field whose representation permutes
    channels (regular, quotient, trivial): ``(B, H, W, D) -> (B, H, W, n_fields)``, invariant
    fields (``out_type``: trivial). For regular fields this is :class:`GroupPool` on the
    flattened map.

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input ``(B, H, W, in_type.size)``.
        mode: "max" or "mean".

    Raises:
        ValueError: an unknown ``mode``, or a field that does not permute channels (use
            :class:`NormPool`); on call, an input that is not ``(B, H, W, in_type.size)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> pool = nn.FieldGroupPool(FieldType(Cyclic(2), [reps.regular_rep(Cyclic(2))] * 2), "max")
        >>> pool(jnp.array([1.0, 3.0, -2.0, -1.0]).reshape(1, 1, 1, 4)).ravel()
        Array([ 3., -1.], dtype=float32)
    """

    def __init__(self, in_type: FieldType, mode: str = "max"):
        self.in_type = as_field_type(in_type, "in_type")
        if mode not in ("max", "mean"):
            raise ValueError(f"`mode` must be 'max' or 'mean', got {mode!r}")
        require_permutation(self.in_type, "FieldGroupPool", "use NormPool for it")
        self.mode = mode
        g = self.in_type.group
        self.out_type = FieldType(g, [trivial_rep(g)] * len(self.in_type))

    def __call__(self, x: Array) -> Array:
        self.in_type.check(x, "x", "FieldGroupPool")
        x = jnp.asarray(x)
        red = jnp.max if self.mode == "max" else jnp.mean
        parts = [(f, red(xg, axis=-1, keepdims=True)) for _, f, xg in split_by_rep(self.in_type, x)]
        return merge_by_rep(parts, len(self.in_type))


class Restrict(nnx.Module):
    """Restrict a field type to a subgroup (e.g. ``Dihedral(16) -> Cyclic(16)``, as in the best
    E(2)-CNN MNIST model): the data are unchanged, ``out_type = in_type.restrict(subgroup)``
    (a regular D_N field becomes a permutation field of C_N made of two regular C_N blocks).

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input.
        subgroup: a subgroup of ``in_type.group`` (see :meth:`~equilib.fields.FieldType.restrict`).

    Raises:
        ValueError: ``subgroup`` is not a subgroup; on call, an input that is not
            ``(B, H, W, in_type.size)``.

    Example:
        >>> from equilib import Cyclic, Dihedral, FieldType, nn, reps
        >>> layer = nn.Restrict(FieldType(Dihedral(4), [reps.regular_rep(Dihedral(4))]), Cyclic(4))
        >>> layer.out_type.group.name, layer.out_type.size
        ('C4', 8)
    """

    def __init__(self, in_type: FieldType, subgroup):
        self.in_type = as_field_type(in_type, "in_type")
        self.subgroup = subgroup
        self.out_type = self.in_type.restrict(subgroup)

    def __call__(self, x: Array) -> Array:
        self.in_type.check(x, "x", "Restrict")
        return x


# Untyped callables that act on each channel separately and nonlinearly: equivariant only for
# fields whose representations permute channels (checked by FieldSequential). softmax and
# log_softmax mix channels but only through permutation-invariant sums: the same condition.
_CHANNELWISE_FUNCTIONS = tuple(POINTWISE.values()) + (
    jax.nn.softplus, jax.nn.relu6, jax.nn.celu, jax.nn.selu, jax.nn.hard_tanh, jax.nn.hard_sigmoid,
    jax.nn.hard_silu, jax.nn.mish, jax.nn.log_sigmoid, jax.nn.soft_sign, jax.nn.squareplus,
    jax.nn.sparse_plus, jax.nn.softmax, jax.nn.log_softmax, jnp.abs, jnp.exp, jnp.square, jnp.sign, jnp.sin,
    jnp.cos)


def _channelwise_kind(layer) -> str | None:
    """What an untyped layer does channel by channel and nonlinearly ("pooling", "function",
    "dropout"), or None if it is fine for any field type (linear in the channels, or typed)."""
    f = layer
    while isinstance(f, functools.partial):
        f = f.func
    if any(f is g for g in _CHANNELWISE_FUNCTIONS):
        return "function"
    if isinstance(layer, (MaxPool, MaxBlurPool)) or (isinstance(layer, GlobalPool) and layer.mode == "max"):
        return "pooling"
    if isinstance(layer, AdaptiveMaxPool) and layer.in_type is None:
        return "pooling"
    if isinstance(layer, nnx.Dropout) and not {-1, 3} & {int(d) for d in layer.broadcast_dims}:
        return "dropout"
    return None


_CHANNELWISE_HINTS = {
    "function": "NormNonlinearity, GatedNonlinearity or FourierPointwise",
    "pooling": "NormMaxPool, AvgPool, AdaptiveAvgPool or NormPool",
    "dropout": "FieldDropout",
}


def _check_channelwise(layers, i: int, field_type: FieldType, where: int) -> None:
    kind = _channelwise_kind(layers[i])
    if kind is None or field_type.is_permutation:
        return
    k = next(j for j, r in enumerate(field_type.reps) if not r.is_permutation)
    layer, src = layers[i], layers[where]
    f = layer
    while isinstance(f, functools.partial):
        f = f.func
    name = type(layer).__name__ if isinstance(layer, nnx.Module) else getattr(f, "__name__", type(f).__name__)
    raise ValueError(
        f"layer {i} ({name}) acts on each channel separately and nonlinearly, which is not equivariant "
        f"for the field type {field_type!r} output by layer {where} ({type(src).__name__}): its field {k} is "
        f"{field_type.reps[k].name} of {field_type.group.name}, whose representation does not permute "
        f"channels; use {_CHANNELWISE_HINTS[kind]} instead")


class FieldSequential(nnx.Sequential):
    """``nnx.Sequential`` that checks that each typed layer's ``in_type`` equals the previous
    typed layer's ``out_type`` (plain callables in between are passed through), and that no untyped
    layer acting on each channel separately and nonlinearly follows a field type whose
    representations do not all permute channels (e.g. C4 irrep 1, SO(2) frequencies): such layers
    (:class:`MaxPool`, :class:`MaxBlurPool`, :class:`GlobalPool` with mode "max",
    :class:`AdaptiveMaxPool` without ``in_type``, ``nnx.Dropout`` with a mask per channel, and
    elementwise functions such as ``jax.nn.relu``, ``jax.nn.gelu``, ``jnp.tanh``, ``nnx.relu``, also
    wrapped in ``functools.partial``) break equivariance there. Linear spatial layers (``AvgPool``,
    ``BlurPool``, ``Upsample``, ...) are allowed after any type.

    Args:
        *layers: modules or callables, applied in order.

    Raises:
        ValueError: a layer's ``in_type`` is not the ``out_type`` of the typed layer before it, or a
            channelwise nonlinear layer follows a non-permutation field type (the message names the
            layer, the field type and the field that breaks).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> C4 = Cyclic(4)
        >>> scalar, regular = FieldType(C4, [reps.trivial_rep(C4)]), FieldType(C4, [reps.regular_rep(C4)])
        >>> model = nn.FieldSequential(nn.SteerableConv(scalar, regular, 3, rngs=nnx.Rngs(0)),
        ...                            nn.PointwiseNonlinearity(regular), nn.FieldGroupPool(regular))
        >>> model(jnp.ones((1, 5, 5, 1))).shape
        (1, 5, 5, 1)
        >>> vectors = FieldType(C4, [reps.irrep(C4, 1)])
        >>> nn.FieldSequential(nn.SteerableConv(scalar, vectors, 3, rngs=nnx.Rngs(0)), jax.nn.relu)
        Traceback (most recent call last):
            ...
        ValueError: layer 1 (relu) acts on each channel separately and nonlinearly, ... field 0 is irrep(1) of C4, ...
    """

    def __init__(self, *layers):
        prev, where = None, 0
        for i, layer in enumerate(layers):
            it = getattr(layer, "in_type", None)
            if it is not None and prev is not None and it != prev:
                raise ValueError(f"layer {i} ({type(layer).__name__}) expects in_type {it!r} but layer "
                                 f"{where} ({type(layers[where]).__name__}) outputs {prev!r}")
            if it is None and prev is not None:
                _check_channelwise(layers, i, prev, where)
            ot = getattr(layer, "out_type", None)
            if ot is not None:
                prev, where = ot, i
        super().__init__(*layers)
