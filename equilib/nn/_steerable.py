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
and interpolating the maps. Measured (``tests/test_steerable.py``): two stacked 5x5 convs on a
smooth 33x33 input, 0.03-0.08 at 22.5/30/45 degrees; one conv on an MNIST digit, 0.05-0.07
(RMS over the initialisation), the same as escnn's layers (same kernel space, same
initialisation scheme). Layers acting pixel by pixel (nonlinearities, batch norm, pooling) are
exactly equivariant in their channels for every element of the group.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib._exact import warn_if_inexact
from equilib.fields import FieldType, as_field_type
from equilib.functional import batch_moments
from equilib.functional._conv import normalize_padding, normalize_stride
from equilib.functional._steerable import (
    basis_config,
    expand_steerable_bias,
    expand_steerable_kernel,
    steerable_basis,
)
from equilib.functional._conv import conv2d
from equilib.groups import Group
from equilib.nn._conv import _export, check_group_kernel, check_kernel_size
from equilib.nn._init import _TRUNC_STD, _generator
from equilib.reps import Rep, _irrep_matrix, irrep_size

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
]


# --- helpers ----------------------------------------------------------------------------------
def _tuple_or_none(v, name):
    if v is None or isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    try:
        return tuple(float(x) for x in v)
    except TypeError:
        raise TypeError(f"`{name}` must be a number or a sequence of numbers, got {v!r}") from None


def _truncated_normal_blocks(key, shapes, stds, dtype):
    """Flat concatenation of truncated normals (at 2 std), one block per shape ``(n_out, n_in, n)``
    with stds ``(n,)`` (broadcast);
    drawn in numpy from the key's bits (no XLA compile), or by JAX if the key is traced."""
    total = sum(int(np.prod(s)) for s in shapes)
    try:
        rng = _generator(key)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        parts = [(jnp.asarray(np.asarray(std) / _TRUNC_STD, jnp.float32)
                  * jax.random.truncated_normal(jax.random.fold_in(key, i), -2.0, 2.0, s)).reshape(-1)
                 for i, (s, std) in enumerate(zip(shapes, stds))]
        return (jnp.concatenate(parts) if parts else jnp.zeros((0,))).astype(dtype)
    z = rng.standard_normal(total, dtype=np.float32)
    bad = np.flatnonzero(np.abs(z) > 2)
    while len(bad):  # resample the tails: exact truncated normal
        z[bad] = rng.standard_normal(len(bad), dtype=np.float32)
        bad = bad[np.abs(z[bad]) > 2]
    out = np.empty(total, dtype=np.float32)
    o = 0
    for s, std in zip(shapes, stds):
        n = int(np.prod(s))
        out[o:o + n] = (z[o:o + n].reshape(s) * (np.asarray(std, np.float32) / np.float32(_TRUNC_STD))).reshape(-1)
        o += n
    return jax.device_put(out.astype(np.dtype(dtype)))  # device_put: no per-shape XLA program


def zeros(key, shape, dtype=jnp.float32):
    """Zeros built in numpy (no per-shape XLA conversion program)."""
    del key
    return jax.device_put(np.zeros(tuple(shape), dtype=np.dtype(dtype)))


def ones(key, shape, dtype=jnp.float32):
    del key
    return jax.device_put(np.ones(tuple(shape), dtype=np.dtype(dtype)))


def _split_by_rep(field_type: FieldType, x):
    """``[(rep, fields, x_g)]`` with ``x_g`` of shape ``(..., n_fields, rep.size)``."""
    groups = field_type.groups()
    if len(groups) == 1:
        r, f, _ = groups[0]
        return [(r, f, x.reshape(x.shape[:-1] + (len(f), r.size)))]
    return [(r, f, jnp.take(x, jnp.asarray(ch.reshape(-1)), axis=-1).reshape(x.shape[:-1] + ch.shape))
            for r, f, ch in groups]


def _merge_by_rep(parts, n_fields: int):
    """Inverse of :func:`_split_by_rep` for outputs ``(..., n_fields_g, d_out_g)`` per group."""
    if len(parts) == 1:
        f, y = parts[0]
        return y.reshape(y.shape[:-2] + (-1,))
    sizes = np.zeros(n_fields, dtype=np.int64)
    for f, y in parts:
        sizes[f] = y.shape[-1]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    order = np.concatenate([(offsets[f][:, None] + np.arange(y.shape[-1])[None]).reshape(-1)
                            for f, y in parts])
    flat = jnp.concatenate([y.reshape(y.shape[:-2] + (-1,)) for _, y in parts], axis=-1)
    return jnp.take(flat, jnp.asarray(np.argsort(order)), axis=-1)


_POINTWISE = {
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "leaky_relu": jax.nn.leaky_relu,
}


def _pointwise_fn(function, name="function") -> Callable:
    if callable(function):
        return function
    if function not in _POINTWISE:
        raise ValueError(f"`{name}` must be a callable or one of {sorted(_POINTWISE)}, got {function!r}")
    return _POINTWISE[function]


def _require_permutation(field_type: FieldType, layer: str, hint: str):
    for i, r in enumerate(field_type.reps):
        if not r.is_permutation:
            raise ValueError(f"{layer} needs fields whose representation permutes channels (trivial, "
                             f"regular, quotient), but field {i} of `in_type` is {r.name} of "
                             f"{field_type.group.name}; {hint}")


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
    for ro, a, t in counts:
        types[(ro, a)] = types.get((ro, a), 0) + 1
    out = []
    for b in basis.blocks:
        std = [1.0 / math.sqrt(types[(b.out_rep, int(a))] * counts[(b.out_rep, int(a), b.in_rep.irreps[bi])])
               for a, bi in b.labels]
        out.append(np.array(std))
    return tuple(out)


class SteerableConv(nnx.Module):
    """Steerable convolution ``(B, H, W, in_type.size) -> (B, H', W', out_type.size)``.

    The kernel ``(K, K, D_in, D_out)`` is ``sum_b weight[b] * basis[b]`` over the steerable basis of
    :func:`equilib.functional.steerable_basis` (Gaussian rings x band-limited angular harmonics,
    escnn's defaults; ``rings``, ``sigma``, ``frequency_cutoff`` as in
    :func:`equilib.functional.basis_config`), so ``k(g d) = rho_out(g) k(d) rho_in(g)^T``. The bias
    lives on the invariant directions of the output fields (one value per trivial irrep; a
    regular field gets one constant bias, a field without trivial irreps none).

    Parameters: ``weight`` ``(num_params,)`` (flat, one block per pair of representations),
    ``bias`` ``(num_bias,)`` (``None`` if ``use_bias=False`` or no output field has a trivial
    irrep). Initialisation: truncated normal with escnn's generalised He variances (gain 1, see
    ``_init_stds``): activations keep the variance of a plain LeCun-initialised ``Conv``. The basis is built in numpy and cached per
    configuration: building a layer costs no XLA compile.
    """

    def __init__(self, in_type: FieldType, out_type: FieldType, kernel_size, *, stride=1,
                 padding: str = "SAME", use_bias: bool = True, rings=None, sigma=None,
                 frequency_cutoff=None, dtype=None, param_dtype=jnp.float32, precision=None,
                 rngs: nnx.Rngs):
        self.in_type = as_field_type(in_type, "in_type")
        self.out_type = as_field_type(out_type, "out_type")
        if self.in_type.group != self.out_type.group:
            raise ValueError(f"`in_type` is a field type of {self.in_type.group.name} but `out_type` of "
                             f"{self.out_type.group.name}: expected the same group")
        self.kernel_size = check_kernel_size(kernel_size, square=True)
        self.stride = normalize_stride(stride)
        self.padding = normalize_padding(padding)
        check_group_kernel(self.kernel_size, self.padding, "SteerableConv")
        self.rings = _tuple_or_none(rings, "rings")
        self.sigma = _tuple_or_none(sigma, "sigma")
        self.frequency_cutoff = _tuple_or_none(frequency_cutoff, "frequency_cutoff")
        self.dtype, self.precision = dtype, precision
        basis = self.basis
        shapes = [b.shape for b in basis.blocks]
        stds = _init_stds(basis)
        self.weight = nnx.Param(_truncated_normal_blocks(rngs.params(), shapes, stds, param_dtype))
        nb = basis.bias_matrix.shape[0]
        self.bias = nnx.Param(zeros(None, (nb,), param_dtype)) if (use_bias and nb) else None
        self.use_bias = self.bias is not None

    @property
    def basis(self):
        """The layer's :class:`equilib.functional.SteerableBasis` (cached, numpy)."""
        return steerable_basis(self.in_type, self.out_type, self.kernel_size, rings=self.rings,
                               sigma=self.sigma, frequency_cutoff=self.frequency_cutoff)

    @property
    def config(self):
        return basis_config(self.kernel_size, rings=self.rings, sigma=self.sigma,
                            frequency_cutoff=self.frequency_cutoff)

    def __call__(self, x):
        self.in_type.check(x, "x", "SteerableConv")
        warn_if_inexact("SteerableConv", x.shape[1:3], self.kernel_size, self.stride, self.padding)
        kernel, bias = self.kernel(), self.expanded_bias()
        if self.dtype is not None:
            x, kernel = jnp.asarray(x, self.dtype), kernel.astype(self.dtype)
            bias = None if bias is None else bias.astype(self.dtype)
        return conv2d(x, kernel, stride=self.stride, padding=self.padding, bias=bias,
                      precision=self.precision)

    def kernel(self):
        """The HWIO kernel ``(K, K, in_type.size, out_type.size)``."""
        return expand_steerable_kernel(self.weight[...], self.basis)

    def expanded_bias(self):
        """The ``(out_type.size,)`` bias, or ``None``."""
        return None if self.bias is None else expand_steerable_bias(self.bias[...], self.basis)

    def export(self) -> nnx.Conv:
        """A plain ``nnx.Conv`` computing the same function on ``(B, H, W, in_type.size)``."""
        return _export(self.kernel(), self.expanded_bias(), self.stride, self.padding, self.dtype,
                       self.precision)


# --- nonlinearities ---------------------------------------------------------------------------
class PointwiseNonlinearity(nnx.Module):
    """An elementwise function (``"relu"``, ``"elu"``, ... or a callable) on fields whose
    representations permute channels (trivial, regular, quotient): equivariant because it
    commutes with permutations. ``out_type = in_type``."""

    def __init__(self, in_type: FieldType, function="relu"):
        self.in_type = self.out_type = as_field_type(in_type, "in_type")
        _require_permutation(self.in_type, "PointwiseNonlinearity",
                             "use NormNonlinearity, GatedNonlinearity or FourierPointwise for it")
        self.function = function
        self._fn = _pointwise_fn(function)

    def __call__(self, x):
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
    orthogonal representation is invariant, so any field type works. ``function``: ``"n_relu"``
    (default), ``"n_sigmoid"``, ``"n_softplus"`` or ``"squash"`` (``|f| / (1 + |f|)``, no bias).

    Parameters: ``bias`` ``(n_fields,)`` (initialised to 0), if ``use_bias``.
    """

    def __init__(self, in_type: FieldType, function: str = "n_relu", *, use_bias: bool = True,
                 epsilon: float = 1e-6, param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        self.in_type = self.out_type = as_field_type(in_type, "in_type")
        if function not in _NORM_FUNCTIONS:
            raise ValueError(f"`function` must be one of {sorted(_NORM_FUNCTIONS)}, got {function!r}")
        if function == "squash" and use_bias:
            raise ValueError("`use_bias` must be False with function='squash' (as in escnn)")
        self.function, self.epsilon = function, float(epsilon)
        n = len(self.in_type)
        self.bias = nnx.Param(zeros(None, (n,), param_dtype)) if use_bias else None

    def __call__(self, x):
        self.in_type.check(x, "x", "NormNonlinearity")
        x = jnp.asarray(x)
        fn = _NORM_FUNCTIONS[self.function]
        parts = []
        for _, fields, xg in _split_by_rep(self.in_type, x):
            norm = jnp.sqrt(jnp.sum(jnp.square(xg), axis=-1, keepdims=True))
            arg = norm if self.bias is None else norm - self.bias[...][fields][:, None].astype(x.dtype)
            mult = fn(arg) / jnp.maximum(norm, self.epsilon)
            parts.append((fields, xg * mult))
        return _merge_by_rep(parts, len(self.in_type))


class GatedNonlinearity(nnx.Module):
    """Gated nonlinearity: each gated field is multiplied by ``sigmoid`` of its trivial gate field.

    ``gates``: one label per field of ``in_type``, ``"gate"`` or ``"gated"``; the i-th gate scales
    the i-th gated field. Default (``None``): the first half of the fields are the gates (they
    must be trivial) and the second half the gated fields. The gates are dropped:
    ``out_type`` holds the gated fields, in order. Equivariant for any gated representation (the
    gates are invariant scalars).
    """

    def __init__(self, in_type: FieldType, gates: Sequence[str] | None = None):
        self.in_type = as_field_type(in_type, "in_type")
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
        self.out_type = FieldType(self.in_type.group, [self.in_type.reps[i] for i in gated_idx])
        self._gate_channels = tuple(self.in_type.offsets[i] for i in gate_idx)
        self._gated_channels = tuple(c for i in gated_idx for c in range(
            self.in_type.offsets[i], self.in_type.offsets[i] + self.in_type.reps[i].size))
        self._expand = tuple(k for k, i in enumerate(gated_idx) for _ in range(self.in_type.reps[i].size))

    def __call__(self, x):
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
        cols.append(np.stack([_irrep_matrix(group, ident, a, f)[:, c % d] for a, f in els]))
    a = np.concatenate(cols, axis=1) @ np.asarray(rep.change_of_basis).T
    if np.linalg.matrix_rank(a, tol=1e-8) < rep.size:
        return None
    return a.astype(np.float32), np.linalg.pinv(a).astype(np.float32)


class FourierPointwise(nnx.Module):
    """Pointwise nonlinearity on the group: each field is read as a band-limited function on the
    group, sampled at ``N`` elements, passed through ``function`` (``"relu"``, ``"elu"``, ... or a
    callable) and projected back: ``f -> A^+ phi(A f)``.

    The samples are the whole group (finite groups) or the rotations by ``2*pi*n/samples`` (and
    their mirrors, O(2)); equivariance is exact for those elements (so for rot90 when
    ``samples % 4 == 0``) and approximate in between. Each field must be such a function:
    ``group.bandlimited_regular_rep(L)`` (SO(2), O(2)), ``regular_rep`` or a sum of distinct irreps.
    Default ``samples``: ``4 * (L + 1)`` for the largest frequency ``L``. ``out_type = in_type``.
    """

    def __init__(self, in_type: FieldType, function="relu", *, samples: int | None = None):
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
                                 f"expected e.g. bandlimited_regular_rep(L) or regular_rep")
        self.samples = samples
        self.function = function
        self._fn = _pointwise_fn(function)

    def __call__(self, x):
        self.in_type.check(x, "x", "FourierPointwise")
        x = jnp.asarray(x)
        parts = []
        for rep, fields, xg in _split_by_rep(self.in_type, x):
            a, ainv = _fourier_matrices(rep, self.samples)
            s = jnp.einsum("...d,nd->...n", xg, jnp.asarray(a, xg.dtype))
            parts.append((fields, jnp.einsum("...n,dn->...d", self._fn(s), jnp.asarray(ainv, xg.dtype))))
        return _merge_by_rep(parts, len(self.in_type))


# --- batch norm -------------------------------------------------------------------------------
@functools.cache
def _invariant_projector(rep: Rep) -> np.ndarray:
    t = rep.trivial_columns()
    return (t @ t.T).astype(np.float32)


@functools.cache
def _bias_columns(field_type: FieldType):
    """Per rep group: ``(t, d)`` directions of the bias (trivial columns, regular -> all ones)."""
    return {r: (r.trivial_columns().T * math.sqrt(r.size)).astype(np.float32) for r, _, _ in field_type.groups()}


class FieldBatchNorm(nnx.Module):
    """Batch normalisation of a steerable map ``(B, H, W, D)``, field by field, equivariantly.

    ``kind="inner"`` (escnn's ``InnerBatchNorm``; fields must permute channels: trivial, regular,
    quotient): per field, mean and variance over batch, space and the field's channels, as
    :class:`GroupBatchNorm`; one scale and bias per field. ``kind="norm"`` (any field type, escnn's
    ``NormBatchNorm``/``IIDBatchNorm2d``): the mean is taken on the field's invariant directions
    only (none for nontrivial irreps), the variance is ``E|f - mean|^2 / d``; one scale per field
    and one bias per trivial irrep. For regular fields both kinds compute the same statistics.

    Training mode (``use_running_average=False``) uses the batch statistics and updates the running
    ones (``ra = momentum * ra + (1 - momentum) * batch``); ``model.eval()`` uses the running ones.
    Batch stats: ``mean`` (``(n_fields,)`` inner, ``(D,)`` norm), ``var`` ``(n_fields,)``.
    """

    def __init__(self, in_type: FieldType, *, kind: str = "inner", use_running_average: bool = False,
                 momentum: float = 0.99, epsilon: float = 1e-5, use_scale: bool = True,
                 use_bias: bool = True, axis_name=None, param_dtype=jnp.float32,
                 rngs: nnx.Rngs | None = None):
        self.in_type = self.out_type = as_field_type(in_type, "in_type")
        if kind not in ("inner", "norm"):
            raise ValueError(f"`kind` must be 'inner' or 'norm', got {kind!r}")
        if kind == "inner":
            _require_permutation(self.in_type, "FieldBatchNorm(kind='inner')", "use kind='norm'")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be in [0, 1], got {momentum!r}")
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be > 0, got {epsilon!r}")
        self.kind = kind
        self.use_running_average = bool(use_running_average)
        self.momentum, self.epsilon, self.axis_name = float(momentum), float(epsilon), axis_name
        n = len(self.in_type)
        self.mean = nnx.BatchStat(zeros(None, (n if kind == "inner" else self.in_type.size,), jnp.float32))
        self.var = nnx.BatchStat(ones(None, (n,), jnp.float32))
        self.scale = nnx.Param(ones(None, (n,), param_dtype)) if use_scale else None
        if not use_bias:
            self.bias = None
        elif kind == "inner":
            self.bias = nnx.Param(zeros(None, (n,), param_dtype))
        else:
            nb = sum(r.trivial_columns().shape[1] for r in self.in_type.reps)
            self.bias = nnx.Param(zeros(None, (nb,), param_dtype)) if nb else None

    def _bias_offsets(self):
        counts = [r.trivial_columns().shape[1] for r in self.in_type.reps]
        return np.concatenate([[0], np.cumsum(counts)])

    def __call__(self, x, *, use_running_average: bool | None = None):
        self.in_type.check(x, "x", "FieldBatchNorm")
        x = jnp.asarray(x)
        if use_running_average is None:
            use_running_average = self.use_running_average
        n = len(self.in_type)
        groups = _split_by_rep(self.in_type, x)
        if not use_running_average:
            means, vars_ = [], []
            for rep, fields, xg in groups:
                if self.kind == "inner":
                    mean, var = batch_moments(xg, feature_axis=-2, axis_name=self.axis_name)
                else:
                    proj = jnp.asarray(_invariant_projector(rep))
                    xf = xg.astype(jnp.promote_types(xg.dtype, jnp.float32))
                    m = jnp.mean(xf, axis=tuple(range(xf.ndim - 2))) @ proj  # (n_g, d)
                    if self.axis_name is not None:
                        m = jax.lax.pmean(m, self.axis_name)
                    var = jnp.mean(jnp.sum(jnp.square(xf - m), axis=-1), axis=tuple(range(xf.ndim - 2))) / rep.size
                    if self.axis_name is not None:
                        var = jax.lax.pmean(var, self.axis_name)
                    mean = m
                means.append((fields, mean))
                vars_.append((fields, var))
            var_all = jnp.zeros((n,), jnp.float32)
            for f, v in vars_:
                var_all = var_all.at[jnp.asarray(f)].set(v)
            if self.kind == "inner":
                mean_all = jnp.zeros((n,), jnp.float32)
                for f, m in means:
                    mean_all = mean_all.at[jnp.asarray(f)].set(m)
            else:
                mean_all = _merge_by_rep([(f, m[None]) for f, m in means], n)[0]
            mo = self.momentum
            self.mean[...] = mo * self.mean[...] + (1 - mo) * mean_all
            self.var[...] = mo * self.var[...] + (1 - mo) * var_all
        else:
            mean_all, var_all = self.mean[...], self.var[...]
        if self.kind == "norm":
            mean_groups = {tuple(f): mg for _, f, mg in _split_by_rep(self.in_type, mean_all[None])}
        bias_cols = _bias_columns(self.in_type) if self.kind == "norm" else None
        offs = self._bias_offsets() if self.kind == "norm" else None
        parts = []
        for rep, fields, xg in groups:
            fj = jnp.asarray(fields)
            if self.kind == "inner":
                mean = mean_all[fj][:, None]
            else:
                mean = mean_groups[tuple(fields)][0]
            inv = jax.lax.rsqrt(var_all[fj] + self.epsilon)[:, None]
            if self.scale is not None:
                inv = inv * self.scale[...][fj][:, None]
            y = (xg - mean.astype(xg.dtype)) * inv.astype(xg.dtype)
            if self.bias is not None:
                if self.kind == "inner":
                    y = y + self.bias[...][fj][:, None].astype(xg.dtype)
                else:
                    cols = bias_cols[rep]
                    if cols.shape[0]:
                        idx = offs[fields][:, None] + np.arange(cols.shape[0])[None]  # (n_g, t)
                        b = self.bias[...][jnp.asarray(idx)] @ jnp.asarray(cols)
                        y = y + b.astype(xg.dtype)
            parts.append((fields, y))
        return _merge_by_rep(parts, n)


# --- pooling and restriction ------------------------------------------------------------------
class NormPool(nnx.Module):
    """Per field L2 norm: ``(B, H, W, D) -> (B, H, W, n_fields)``, invariant fields
    (``out_type``: trivial). Works for any (orthogonal) field type."""

    def __init__(self, in_type: FieldType):
        self.in_type = as_field_type(in_type, "in_type")
        g = self.in_type.group
        self.out_type = FieldType(g, [g.trivial_rep] * len(self.in_type))

    def __call__(self, x):
        self.in_type.check(x, "x", "NormPool")
        x = jnp.asarray(x)
        parts = [(f, jnp.sqrt(jnp.sum(jnp.square(xg), axis=-1, keepdims=True)))
                 for _, f, xg in _split_by_rep(self.in_type, x)]
        return _merge_by_rep(parts, len(self.in_type))


class FieldGroupPool(nnx.Module):
    """Group pooling: max (or mean) over the channels of each field whose representation permutes
    channels (regular, quotient, trivial): ``(B, H, W, D) -> (B, H, W, n_fields)``, invariant
    fields (``out_type``: trivial). For regular fields this is :class:`GroupPool` on the flattened
    map."""

    def __init__(self, in_type: FieldType, mode: str = "max"):
        self.in_type = as_field_type(in_type, "in_type")
        if mode not in ("max", "mean"):
            raise ValueError(f"`mode` must be 'max' or 'mean', got {mode!r}")
        _require_permutation(self.in_type, "FieldGroupPool", "use NormPool for it")
        self.mode = mode
        g = self.in_type.group
        self.out_type = FieldType(g, [g.trivial_rep] * len(self.in_type))

    def __call__(self, x):
        self.in_type.check(x, "x", "FieldGroupPool")
        x = jnp.asarray(x)
        red = jnp.max if self.mode == "max" else jnp.mean
        parts = [(f, red(xg, axis=-1, keepdims=True)) for _, f, xg in _split_by_rep(self.in_type, x)]
        return _merge_by_rep(parts, len(self.in_type))


class Restrict(nnx.Module):
    """Restrict a field type to a subgroup (e.g. ``Dihedral(16) -> Cyclic(16)``, as in the best
    E(2)-CNN MNIST model): the data are unchanged, ``out_type = in_type.restrict(subgroup)``
    (a regular D_N field becomes a permutation field of C_N made of two regular C_N blocks)."""

    def __init__(self, in_type: FieldType, subgroup):
        self.in_type = as_field_type(in_type, "in_type")
        self.subgroup = subgroup
        self.out_type = self.in_type.restrict(subgroup)

    def __call__(self, x):
        self.in_type.check(x, "x", "Restrict")
        return x


class FieldSequential(nnx.Sequential):
    """``nnx.Sequential`` that checks that each typed layer's ``in_type`` equals the previous
    typed layer's ``out_type`` (plain callables in between are passed through)."""

    def __init__(self, *layers):
        prev, where = None, None
        for i, layer in enumerate(layers):
            it = getattr(layer, "in_type", None)
            if it is not None and prev is not None and it != prev:
                raise ValueError(f"layer {i} ({type(layer).__name__}) expects in_type {it!r} but layer "
                                 f"{where} ({type(layers[where]).__name__}) outputs {prev!r}")
            ot = getattr(layer, "out_type", None)
            if ot is not None:
                prev, where = ot, i
        super().__init__(*layers)
