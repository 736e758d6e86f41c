"""Spatial pooling that knows the field type (Flax NNX): ``FieldMaxPool``, ``NormMaxPool``,
``AdaptiveAvgPool`` and ``AdaptiveMaxPool``.

Channelwise max pooling (:class:`MaxPool`) commutes with a representation only when the
representation permutes channels (trivial, regular, quotient fields): on a C4 vector field
(irrep 1) or SO(2) frequencies it breaks equivariance (relative error 0.6-0.9 at quarter turns).
:class:`FieldMaxPool` is ``MaxPool`` that refuses such fields; :class:`NormMaxPool` pools any
field by keeping its vector of largest norm (escnn's ``PointwiseMaxPool`` / ``NormMaxPool``).
The adaptive layers pool to a fixed output size with PyTorch's bins, which are mirror-symmetric:
exact rot90/flip equivariance at every size (:mod:`equilib.functional` ``adaptive_avg_pool``).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from equilib import functional as F
from equilib._exact import warn_if_inexact
from equilib._src import checks
from equilib._src.fieldops import require_permutation
from equilib._src.typing import Array
from equilib.fields import FieldType, as_field_type
from equilib.functional._adaptive import check_output_size_pair

__all__ = ["FieldMaxPool", "NormMaxPool", "AdaptiveAvgPool", "AdaptiveMaxPool"]


class _FieldWindowPool(nnx.Module):
    """A ``window``/``stride``/``padding`` pooling of a typed map ``(B, H, W, in_type.size)``."""

    def __init__(self, in_type: FieldType, window=2, stride=None, padding: str = "VALID"):
        self.in_type = self.out_type = as_field_type(in_type, "in_type")
        self.window = checks.check_window(window)
        self.stride = self.window if stride is None else checks.normalize_stride(stride)
        self.padding = checks.normalize_padding(padding)

    def _check(self, x: Array) -> Array:
        name = type(self).__name__
        x = self.in_type.check(x if hasattr(x, "ndim") else jnp.asarray(x), "x", name)
        warn_if_inexact(name, x.shape[1:3], self.window, self.stride, self.padding, stacklevel=4)
        return x


class FieldMaxPool(_FieldWindowPool):
    """Channelwise max pooling of a steerable map ``(B, H, W, D) -> (B, H', W', D)``, for fields whose
    representations permute channels (trivial, regular, quotient): the max commutes with permutations
    (escnn's ``PointwiseMaxPool``). Sizes and padding as :func:`equilib.functional.max_pool`;
    ``out_type = in_type``. Exactly rot90/flip-equivariant when the windows sit symmetrically
    (e.g. 2x2, stride 2, even size); otherwise it warns (:class:`equilib.ExactnessWarning`).

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input ``(B, H, W, in_type.size)``.
        window: the square window, an int or a pair of equal ints.
        stride: None (default): ``window``.
        padding: "VALID" (default), "SAME" or "CIRCULAR".

    Raises:
        ValueError: a field whose representation does not permute channels (the message names the
            field and its representation; use :class:`NormMaxPool`), or a bad argument; on call, an
            input that is not ``(B, H, W, in_type.size)``.
        TypeError: ``in_type`` is not a FieldType.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import Cyclic, FieldType, nn, reps
        >>> pool = nn.FieldMaxPool(FieldType(Cyclic(4), [reps.regular_rep(Cyclic(4))]))
        >>> pool(jnp.ones((1, 8, 8, 4))).shape
        (1, 4, 4, 4)
    """

    def __init__(self, in_type: FieldType, window=2, stride=None, padding: str = "VALID"):
        super().__init__(in_type, window, stride, padding)
        require_permutation(self.in_type, "FieldMaxPool", "channelwise max pooling is not equivariant "
                            "for it: use NormMaxPool (or AdaptiveAvgPool / AvgPool)")

    def __call__(self, x: Array) -> Array:
        x = self._check(x)
        return F.max_pool(x, self.window, self.stride, self.padding)


class NormMaxPool(_FieldWindowPool):
    """Norm max pooling of a steerable map ``(B, H, W, D) -> (B, H', W', D)``: per field and window,
    the whole field vector of largest L2 norm (:func:`equilib.functional.norm_max_pool`, escnn's
    ``NormMaxPool``). Works for any field type; ``out_type = in_type``. Exactly rot90/flip-equivariant
    when the windows sit symmetrically (otherwise it warns), up to exact ties of norms between
    different vectors (see :func:`~equilib.functional.norm_max_pool`).

    Args:
        in_type: the :class:`~equilib.fields.FieldType` of the input ``(B, H, W, in_type.size)``.
        window: the square window, an int or a pair of equal ints.
        stride: None (default): ``window``.
        padding: "VALID" (default), "SAME" or "CIRCULAR".

    Raises:
        ValueError: a bad argument; on call, an input that is not ``(B, H, W, in_type.size)``.
        TypeError: ``in_type`` is not a FieldType.

    Example:
        An SO(2) vector field: the longest vector of each 2x2 window survives whole.

        >>> import jax.numpy as jnp
        >>> from equilib import SO2, FieldType, nn, reps
        >>> pool = nn.NormMaxPool(FieldType(SO2(), [reps.irrep(SO2(), 1)]))
        >>> x = jnp.array([[1.0, 0.0], [0.0, -2.0], [0.5, 0.5], [1.0, 1.0]]).reshape(1, 2, 2, 2)
        >>> pool(x).ravel()
        Array([ 0., -2.], dtype=float32)
    """

    def __call__(self, x: Array) -> Array:
        x = self._check(x)
        return F.norm_max_pool(x, self.in_type, self.window, self.stride, self.padding)


class _AdaptivePool(nnx.Module):
    def __init__(self, output_size, *, in_type: FieldType | None = None):
        self.output_size = check_output_size_pair(output_size)
        self.in_type = self.out_type = None if in_type is None else as_field_type(in_type, "in_type")

    def _check(self, x: Array) -> Array:
        name = type(self).__name__
        if self.in_type is None:
            return checks.check_map(x, name)
        return self.in_type.check(x if hasattr(x, "ndim") else jnp.asarray(x), "x", name)


class AdaptiveAvgPool(_AdaptivePool):
    """Average pooling to a fixed spatial size ``(B, H, W, ...) -> (B, H', W', ...)``, with PyTorch's
    bins (:func:`equilib.functional.adaptive_avg_pool`). A linear map of space: it suits plain maps,
    regular maps ``(B, H, W, C, |G|)`` and steerable maps of any field type. The bins are
    mirror-symmetric, so with a square ``output_size`` on a square input it is exactly
    rot90/flip-equivariant at every size (7 -> 3 too); it never warns.

    Args:
        output_size: ``H' = W'`` (an int) or a pair ``(H', W')``.
        in_type: optional :class:`~equilib.fields.FieldType` of a steerable input: then the input
            must be ``(B, H, W, in_type.size)``, and ``in_type``/``out_type`` (equal) type the layer
            in a :class:`FieldSequential`.

    Raises:
        ValueError: a bad ``output_size``; on call, an input that is not of rank 4 or 5, or not
            ``(B, H, W, in_type.size)`` when ``in_type`` is given.
        TypeError: ``in_type`` is neither None nor a FieldType.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> nn.AdaptiveAvgPool(3)(jnp.ones((2, 7, 7, 5, 4))).shape
        (2, 3, 3, 5, 4)
    """

    def __call__(self, x: Array) -> Array:
        return F.adaptive_avg_pool(self._check(x), self.output_size)


class AdaptiveMaxPool(_AdaptivePool):
    """Max pooling to a fixed spatial size ``(B, H, W, ...) -> (B, H', W', ...)``, channel by channel,
    with PyTorch's bins (:func:`equilib.functional.adaptive_max_pool`); exactly rot90/flip-equivariant
    at every size for a square ``output_size`` (mirror-symmetric bins). For plain and regular maps;
    for steerable maps give ``in_type``, which must consist of fields whose representations permute
    channels (channelwise max breaks the others: use :class:`AdaptiveAvgPool` or
    :class:`NormMaxPool`). Without ``in_type`` a :class:`FieldSequential` refuses it after
    non-permutation fields.

    Args:
        output_size: ``H' = W'`` (an int) or a pair ``(H', W')``.
        in_type: optional :class:`~equilib.fields.FieldType` of a steerable input ``(B, H, W,
            in_type.size)``; ``in_type``/``out_type`` (equal) type the layer in a :class:`FieldSequential`.

    Raises:
        ValueError: a bad ``output_size``, or an ``in_type`` field whose representation does not
            permute channels (the message names it); on call, an input that is not of rank 4 or 5,
            or not ``(B, H, W, in_type.size)`` when ``in_type`` is given.
        TypeError: ``in_type`` is neither None nor a FieldType.

    Example:
        >>> import jax.numpy as jnp
        >>> from equilib import nn
        >>> nn.AdaptiveMaxPool((1, 1))(jnp.arange(16.0).reshape(1, 4, 4, 1)).ravel()
        Array([15.], dtype=float32)
    """

    def __init__(self, output_size, *, in_type: FieldType | None = None):
        super().__init__(output_size, in_type=in_type)
        if self.in_type is not None:
            require_permutation(self.in_type, "AdaptiveMaxPool", "channelwise max pooling is not equivariant "
                                "for it: use AdaptiveAvgPool or NormMaxPool")

    def __call__(self, x: Array) -> Array:
        return F.adaptive_max_pool(self._check(x), self.output_size)
