"""Equivariant linear maps between field types on feature vectors (Flax NNX): ``FieldLinear``.

The weight ``W`` (``(D_out, D_in)``, applied as ``y = x @ W.T``) must satisfy
``W rho_in(g) = rho_out(g) W`` for every group element: it is an *intertwiner*. Its space is
built per pair of representations ``(out_rep, in_rep)`` as the null space of the stacked
constraints ``(rho_out(g) (x) I - I (x) rho_in(g)^T) vec(W) = 0`` (all elements of a finite
group; for SO(2)/O(2) three generic angles, plus two mirrors for O(2), which already force the
constraint for every element: a rotation by an angle that is not a rational multiple of pi
generates a dense subgroup), orthonormalised by an SVD in float64. Why numerically and not from
the irreps' ``change_of_basis``: it works for any representation (regular, quotient,
band-limited, custom changes of basis) with one code path, and the test checks its dimension
against the character formula. The basis is computed once per pair of distinct representations
(``FieldType.groups()`` shares it over all fields of the same representation).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from equilib._src.fieldops import check_field_types
from equilib._src.init import Initializer, truncated_normal_blocks, zeros
from equilib._src.layers import ConvLayer, ConvSpec, set_fields
from equilib._src.typing import Array
from equilib.fields import FieldType
from equilib.functional._layer_norm import trivial_bias_matrix
from equilib.groups import Group
from equilib.reps import Rep

__all__ = ["FieldLinear", "FieldLinearSpec", "LinearBasis", "intertwiner_basis", "linear_basis"]

# generic rotation angles (no rational multiple of pi) and mirrors that pin down SO(2)/O(2)
_LIE_ANGLES = (0.7071067811865476, 1.9318516525781366, 2.6457513110645907)
_LIE_MIRRORS = (0.0, 1.1547005383792515)
_NULL_TOL = 1e-8


def _elements(group) -> list[tuple[float, int]]:
    if isinstance(group, Group):
        return [(group.angle(g), group.flip(g)) for g in range(group.order)]
    return [(a, 0) for a in _LIE_ANGLES] + ([(a, 1) for a in _LIE_MIRRORS] if group.reflection else [])


@functools.cache
def intertwiner_basis(out_rep: Rep, in_rep: Rep) -> np.ndarray:
    """An orthonormal basis of the intertwiners ``W rho_in(g) = rho_out(g) W``, in float64.

    Args:
        out_rep: the output :class:`~equilib.reps.Rep`.
        in_rep: the input Rep, of the same group.

    Returns:
        A read-only array ``(n, out_rep.size, in_rep.size)``; each ``basis[b]`` has Frobenius
        norm 1 and the ``n`` matrices are orthogonal (``n`` may be 0).

    Example:
        >>> from equilib import SO2, Cyclic
        >>> from equilib.nn._heads import intertwiner_basis
        >>> from equilib.reps import irrep, regular_rep
        >>> intertwiner_basis(irrep(SO2(), 1), irrep(SO2(), 1)).shape  # a R(theta): 2 parameters
        (2, 2, 2)
        >>> intertwiner_basis(regular_rep(Cyclic(4)), regular_rep(Cyclic(4))).shape  # circulants
        (4, 4, 4)
    """
    do, di = out_rep.size, in_rep.size
    rows = [np.kron(out_rep.at(a, f), np.eye(di)) - np.kron(np.eye(do), in_rep.at(a, f).T)
            for a, f in _elements(out_rep.group)]
    _, s, vh = np.linalg.svd(np.concatenate(rows), full_matrices=True)
    rank = int(np.sum(s > _NULL_TOL))
    basis = vh[rank:].reshape(-1, do, di)
    basis = np.where(np.abs(basis) < 1e-14, 0.0, basis)
    basis.setflags(write=False)
    return basis


@dataclasses.dataclass(frozen=True)
class LinearBasis:
    """The parameterisation of :class:`FieldLinear`: one block per pair of representations
    ``(out_rep, in_rep)`` with weights ``(n_out_fields, n_in_fields, n_basis)`` flattened in block
    order into ``kernel`` ``(num_params,)``.

    Attributes:
        blocks: per block ``(out_channels, in_channels, basis)``: the channel indices
            ``(n_out * d_out,)``, ``(n_in * d_in,)`` and the basis ``(n_basis, d_out, d_in)``
            (float32, scaled to ``|B|^2 = d_out``).
        shapes: per block the weight shape ``(n_out, n_in, n_basis)``.
        stds: per block the init std (LeCun on the fan-in of the block's output representation).
        num_params: the total number of parameters.

    Example:
        >>> from equilib import Cyclic, FieldType, reps
        >>> from equilib.nn._heads import linear_basis
        >>> G = Cyclic(4)
        >>> linear_basis(FieldType(G, [reps.regular_rep(G)] * 2), FieldType(G, [reps.trivial_rep(G)])).num_params
        2
    """

    blocks: tuple
    shapes: tuple
    stds: tuple
    num_params: int


@functools.cache
def linear_basis(in_type: FieldType, out_type: FieldType) -> LinearBasis:
    """The :class:`LinearBasis` of the equivariant maps ``in_type -> out_type`` (cached).

    Args:
        in_type: the input :class:`~equilib.fields.FieldType`.
        out_type: the output FieldType, of the same group.

    Returns:
        The :class:`LinearBasis`.

    Raises:
        ValueError: an output field that no equivariant map from ``in_type`` reaches (it would
            be identically zero).

    Example:
        >>> from equilib import O2, FieldType, reps
        >>> from equilib.nn._heads import linear_basis
        >>> t = FieldType(O2(), [reps.irrep(O2(), 1, 1), reps.trivial_rep(O2())])
        >>> linear_basis(t, t).num_params  # one per pair of equal O(2) irreps
        2
    """
    blocks: list = []
    shapes: list = []
    fan_in: dict[Rep, int] = {}
    for ro, fo, cho in out_type.groups():
        for ri, fi, chi in in_type.groups():
            b = intertwiner_basis(ro, ri)
            if len(b):
                blocks.append((cho.reshape(-1), chi.reshape(-1), (b * math.sqrt(ro.size)).astype(np.float32)))
                shapes.append((len(fo), len(fi), len(b)))
                fan_in[ro] = fan_in.get(ro, 0) + len(fi) * len(b)
    for ro, fo, _ in out_type.groups():
        if ro not in fan_in:
            raise ValueError(f"`out_type`: field {int(fo[0])} ({ro.name}) is reached by no equivariant linear "
                             f"map from `in_type` {in_type!r} (it would always be zero); expected an "
                             f"in_type sharing an irrep with it")
    stds = []
    for ro, _, _ in out_type.groups():
        for ri, _, _ in in_type.groups():
            if len(intertwiner_basis(ro, ri)):
                stds.append(1.0 / math.sqrt(fan_in[ro]))
    return LinearBasis(tuple(blocks), tuple(shapes), tuple(stds), int(sum(math.prod(s) for s in shapes)))


@functools.partial(jax.jit, static_argnums=1)
def _expand_kernel(kernel: Array, spec: "FieldLinearSpec") -> Array:
    """The blocks ``sum_b w[o, i, b] basis[b]`` scattered into ``(D_in, D_out)``; jitted (one
    program per layer configuration rather than one small program per block operation)."""
    basis = spec.basis
    out = jnp.zeros((spec.in_type.size, spec.out_type.size), kernel.dtype)
    o = 0
    for (cho, chi, b), shape in zip(basis.blocks, basis.shapes):
        w = kernel[o:o + math.prod(shape)].reshape(shape)
        o += math.prod(shape)
        blk = jnp.einsum("oib,bpq->iqop", w, jnp.asarray(b, kernel.dtype), precision=lax.Precision.HIGHEST)
        out = out.at[np.asarray(chi)[:, None], np.asarray(cho)[None, :]].set(blk.reshape(len(chi), len(cho)))
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class FieldLinearSpec(ConvSpec):
    """Equivariant linear map ``(..., D_in) -> (..., D_out)``: kernel ``(num_params,)``, bias
    ``(num_trivial_out,)`` on the trivial irreps of ``out_type``."""

    layer = "FieldLinear"
    derives_bias_key = True

    in_type: FieldType
    out_type: FieldType

    def __post_init__(self) -> None:
        check_field_types(self)
        super().__post_init__()
        linear_basis(self.in_type, self.out_type)  # validate now (unreachable output fields)
        set_fields(self, use_bias=bool(self.use_bias) and trivial_bias_matrix(self.out_type).shape[0] > 0)

    @property
    def basis(self) -> LinearBasis:
        """The layer's :class:`LinearBasis` (cached, numpy)."""
        return linear_basis(self.in_type, self.out_type)

    def kernel_shape(self) -> tuple[int, ...]:
        return (self.basis.num_params,)

    def bias_shape(self) -> tuple[int, ...] | None:
        return (trivial_bias_matrix(self.out_type).shape[0],) if self.use_bias else None

    def default_kernel_init(self) -> Initializer:
        basis = self.basis

        def init(key, shape, dtype=jnp.float32):
            if tuple(shape) != (basis.num_params,):
                raise ValueError(f"FieldLinear's kernel has shape ({basis.num_params},), got {tuple(shape)}")
            return truncated_normal_blocks(key, basis.shapes, [np.float32(s) for s in basis.stds], dtype)

        return init

    def check(self, x: jax.Array) -> None:
        if x.ndim < 1 or x.shape[-1] != self.in_type.size:
            raise ValueError(f"{self.layer}: `x` must be feature vectors (..., D_in={self.in_type.size}) of "
                             f"in_type {self.in_type!r}, got shape {tuple(x.shape)}")

    def check_params(self, kernel: Array, bias: Array | None) -> None:
        """ValueError unless ``kernel`` / ``bias`` have the layer's shapes (a custom initialiser)."""
        if tuple(kernel.shape) != self.kernel_shape():
            raise ValueError(f"{self.layer}: `kernel_init` must give the kernel shape {self.kernel_shape()} "
                             f"(one coefficient per intertwiner basis element), got {tuple(kernel.shape)}")
        if bias is not None and tuple(bias.shape) != self.bias_shape():
            raise ValueError(f"{self.layer}: `bias_init` must give the bias shape {self.bias_shape()}, "
                             f"got {tuple(bias.shape)}")

    def prepare(self, kernel: Array, bias: Array | None) -> tuple[Array, Array | None]:
        self.check_params(kernel, bias)
        return self.expand_kernel(kernel), self.expand_bias(bias)

    def apply(self, x: Array, kernel: Array, bias: Array | None, precision: Any) -> Array:
        y = jnp.einsum("...i,io->...o", x, kernel, precision=precision)
        return y if bias is None else y + jnp.reshape(bias, (1,) * (y.ndim - 1) + bias.shape)

    def expand_kernel(self, kernel: Array) -> Array:
        """The ``(D_in, D_out)`` matrix (``W.T``) from the flat coefficients."""
        return _expand_kernel(kernel, self)

    def expand_bias(self, bias: Array | None) -> Array | None:
        if bias is None:
            return None
        return jnp.einsum("b,bd->d", bias, jnp.asarray(trivial_bias_matrix(self.out_type), bias.dtype),
                          precision=lax.Precision.HIGHEST)


class FieldLinear(ConvLayer):
    """Equivariant linear map of feature vectors ``(..., in_type.size) -> (..., out_type.size)``
    (escnn's ``Linear`` on a 0-dimensional space, e.g. an invariant or steerable head).

    The matrix ``W`` satisfies ``W rho_in(g) = rho_out(g) W`` for every group element: it is
    ``sum_b kernel[b] * basis[b]`` over an orthonormal basis of that space of intertwiners, one
    block per pair of representations (:func:`intertwiner_basis`), so ``num_params`` is the
    dimension of the space (for finite groups ``sum (1/|G|) sum_g chi_out(g) chi_in(g)`` over
    pairs of fields). The bias lives on the trivial irreps of ``out_type`` (a regular output field
    gets one constant, a field without trivial irreps none).

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input, ``D_in = in_type.size``.
        out_type: the field type of the output (same group).
        use_bias: learn the bias (ignored if no output field has a trivial irrep).
        dtype: the computation dtype (None: promoted from the input and parameters).
        param_dtype: the dtype of the parameters.
        precision: the matmul precision, as for ``nnx.Linear``.
        kernel_init: initialiser ``(key, (num_params,), dtype)`` of the coefficients; None:
            truncated normal, LeCun on the fan-in: each basis element (scaled to
            ``|B|^2 = d_out``) of an output representation gets variance ``1 / fan_in``, the
            number of coefficients reaching it, so that a white input of variance 1 gives outputs
            of variance 1 on average over the output channels (a plain ``nnx.Linear``'s default).
        bias_init: initialiser ``(key, (num_bias,), dtype)`` (default zeros); its key is derived
            from the kernel's (one key drawn from ``rngs``).
        rngs: the ``nnx.Rngs`` of the parameters.

    Parameters: ``kernel`` ``(num_params,)``, ``bias`` ``(num_bias,)`` (or None).
    :meth:`expanded_kernel` is the ``(D_in, D_out)`` matrix ``W.T``, :meth:`expanded_bias` the
    ``(D_out,)`` bias and :meth:`export` an equal ``nnx.Linear``.

    Raises:
        ValueError: field types of different groups, an output field no equivariant map
            reaches, a ``kernel_init`` giving another shape; on call, an input whose last axis
            is not ``in_type.size``.
        TypeError: ``in_type``/``out_type`` is not a FieldType.

    Example:
        An invariant head: 2 regular C4 fields to 3 scalars (one coefficient per pair of fields):

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> G = Cyclic(4)
        >>> head = nn.FieldLinear(FieldType(G, [reps.regular_rep(G)] * 2), FieldType(G, [reps.trivial_rep(G)] * 3),
        ...                       rngs=nnx.Rngs(0))
        >>> head(jnp.ones((5, 8))).shape, head.kernel.shape, head.expanded_kernel().shape
        ((5, 3), (6,), (8, 3))
    """

    def __init__(self, in_type: FieldType, out_type: FieldType, *, use_bias: bool = True, dtype: Any = None,
                 param_dtype: Any = jnp.float32, precision: Any = None, kernel_init: Initializer | None = None,
                 bias_init: Initializer = zeros, rngs: nnx.Rngs):
        spec = FieldLinearSpec(in_type=in_type, out_type=out_type, use_bias=use_bias)
        super().__init__(spec, dtype=dtype, param_dtype=param_dtype, precision=precision,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        spec.check_params(self.kernel[...], None if self.bias is None else self.bias[...])

    def export(self) -> nnx.Linear:
        """A plain ``flax.nnx.Linear`` ``(D_in -> D_out)`` computing the same function, with the
        expanded kernel and bias as its parameters.

        Returns:
            The ``nnx.Linear``.

        Example:
            >>> import jax.numpy as jnp
            >>> from flax import nnx
            >>> from equilib import SO2, FieldType, nn, reps
            >>> t = FieldType(SO2(), [reps.irrep(SO2(), 1)] * 2)
            >>> layer = nn.FieldLinear(t, t, rngs=nnx.Rngs(0))
            >>> x = jnp.ones((2, 4))
            >>> bool(jnp.allclose(layer.export()(x), layer(x), atol=1e-6))
            True
        """
        kernel, bias = self.expanded_kernel(), self.expanded_bias()
        linear = nnx.Linear(kernel.shape[0], kernel.shape[1], use_bias=bias is not None, dtype=self.dtype,
                            param_dtype=kernel.dtype, precision=self.precision, rngs=nnx.Rngs(0))
        linear.kernel[...] = kernel
        if bias is not None and linear.bias is not None:
            linear.bias[...] = bias
        return linear
