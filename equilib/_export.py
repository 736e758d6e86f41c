"""Whole-model export: replace every equilib layer by plain Flax NNX layers with expanded kernels.

:func:`export` walks a model's module tree and returns a new model, in evaluation mode, that
computes the same function but whose parameters all live in plain Flax layers
(``nnx.Conv``, ``nnx.ConvTranspose``, ``nnx.Linear``, ``nnx.BatchNorm``, ``nnx.GroupNorm``,
``nnx.LayerNorm``): inference runs no kernel expansion. Layers on regular maps
``(B, H, W, C, |G|)`` become a :class:`RegularAdapter` around the plain layer, which reshapes to
and from the flattened map ``(B, H, W, C*|G|)`` (channel ``c*|G| + g``), so the surrounding model
code keeps working unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib import nn
from equilib._src.layers import BatchNormLayer
from equilib.fields import FieldType
from equilib.groups import Group
from equilib.nn._norm import GroupBatchNormSpec

__all__ = ["KEPT_AS_IS", "PLAIN_LAYERS", "RegularAdapter", "export", "export_batch_norm"]

#: The Flax layers an exported model is made of (kept as they are by :func:`export`).
PLAIN_LAYERS: tuple[type, ...] = (nnx.Conv, nnx.ConvTranspose, nnx.Linear, nnx.BatchNorm, nnx.GroupNorm,
                                  nnx.LayerNorm)

#: equilib layers whose parameters are already plain per-field values with no Flax counterpart:
#: :func:`export` keeps them as they are. ``NormNonlinearity`` (a bias per field inside the
#: norm nonlinearity) and ``FieldNorm`` (steerable instance norm: scale per field, bias per trivial
#: irrep, no running statistics); ``GroupNorm``/``LayerNorm`` of a steerable map (a FieldType
#: ``num_features``: Flax's norms have no invariant-direction mean) are kept too. A layer class
#: of your own joins the list with the class attribute ``exported_as_is = True``.
KEPT_AS_IS: tuple[type, ...] = (nn.NormNonlinearity, nn.FieldNorm)


class RegularAdapter(nnx.Module):
    """A plain Flax layer acting on the flattened regular map, seen from the outside as the
    equilib layer it replaces: ``(B, H, W, C, |G|)`` in and/or out.

    The input, if ``regular_input``, is reshaped ``(B, H, W, C, |G|) -> (B, H, W, C*|G|)``
    (channel ``c*|G| + g``) before ``layer``; the output, if ``regular_output``, is reshaped back
    to ``(B, H, W, C', |G|)``. :func:`export` builds these; ``layer`` holds the parameters.

    Args:
        layer: the plain Flax layer (``nnx.Conv``, ``nnx.BatchNorm``, ...), on flattened maps.
        group_order: ``|G|``, the size of the group axis.
        regular_input: the input is a regular map ``(B, H, W, C, |G|)`` (else ``(B, H, W, C)``).
        regular_output: the output is a regular map.

    Raises:
        ValueError: on call, a regular input whose rank is not 5 or whose group axis is not
            ``group_order``.

    Example:
        The exported ``GroupConv`` of C4 maps the same regular maps as the layer:

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, export, nn
        >>> conv = nn.GroupConv(2, 3, 3, group=Cyclic(4), rngs=nnx.Rngs(0))
        >>> plain = export(conv)
        >>> type(plain).__name__, type(plain.layer).__name__, plain(jnp.ones((1, 5, 5, 2, 4))).shape
        ('RegularAdapter', 'Conv', (1, 5, 5, 3, 4))
    """

    def __init__(self, layer: nnx.Module, group_order: int, *, regular_input: bool, regular_output: bool):
        self.layer = layer
        self.group_order = int(group_order)
        self.regular_input, self.regular_output = bool(regular_input), bool(regular_output)

    def __call__(self, x: jax.Array, **kwargs: Any) -> jax.Array:
        if self.regular_input:
            if getattr(x, "ndim", None) != 5 or x.shape[-1] != self.group_order:
                raise ValueError(f"RegularAdapter({type(self.layer).__name__}): `x` must be a regular map "
                                 f"(batch, H, W, C, {self.group_order}), got shape {tuple(getattr(x, 'shape', ()))}")
            x = x.reshape(x.shape[:-2] + (-1,))
        y = self.layer(x, **kwargs)
        return y.reshape(y.shape[:-1] + (-1, self.group_order)) if self.regular_output else y


def _is_batch_norm(layer: Any) -> bool:
    """A batch norm :func:`export_batch_norm` handles: GroupBatchNorm or FieldBatchNorm."""
    spec = getattr(layer, "spec", None)
    return isinstance(layer, BatchNormLayer) and (isinstance(spec, GroupBatchNormSpec)
                                                  or isinstance(getattr(spec, "in_type", None), FieldType))


def _field_index(spec: Any) -> np.ndarray:
    """The field (statistics index) of each flattened channel."""
    if isinstance(spec, GroupBatchNormSpec):
        return np.repeat(np.arange(spec.num_features), spec.group.order)
    in_type = spec.in_type
    return np.repeat(np.arange(len(in_type)), [r.size for r in in_type.reps])


def export_batch_norm(layer: BatchNormLayer) -> nnx.BatchNorm:
    """An ``nnx.BatchNorm`` (``use_running_average=True``) equal to ``layer`` in evaluation mode,
    on the flattened map: ``GroupBatchNorm`` (``(B, H, W, C*|G|)``) or ``FieldBatchNorm``
    (``(B, H, W, D)``, both kinds).

    Per channel, the layer computes ``(x - m) * rsqrt(v + eps) * s + b`` as ``nnx.BatchNorm``
    does: ``v`` and ``s`` are the field's, repeated over its channels; ``m`` and ``b`` are read off
    the layer's own normalisation (``kind="norm"``: the mean lives on the invariant directions
    only, and the bias of a trivial irrep on its channels), so the export is exact.

    Args:
        layer: a ``GroupBatchNorm`` or ``FieldBatchNorm``.

    Returns:
        The ``nnx.BatchNorm`` over ``C*|G|`` (or ``D``) features, with the same ``epsilon``,
        ``momentum``, ``dtype`` and ``param_dtype``.

    Raises:
        ValueError: ``layer`` is another kind of batch norm.

    Example:
        >>> from flax import nnx
        >>> from equilib import Cyclic, nn
        >>> from equilib._export import export_batch_norm
        >>> export_batch_norm(nn.GroupBatchNorm(3, group=Cyclic(4), rngs=nnx.Rngs(0))).mean.shape
        (12,)
    """
    spec = layer.spec
    if not _is_batch_norm(layer):
        raise ValueError(f"`layer` must be a GroupBatchNorm or FieldBatchNorm, got {type(layer).__name__}")
    idx = jnp.asarray(_field_index(spec))
    size = int(idx.shape[0])
    zeros = jnp.zeros((1, 1, 1) + ((spec.num_features, spec.group.order) if isinstance(spec, GroupBatchNormSpec)
                                   else (size,)), jnp.float32)
    xs = spec.split(zeros)
    unit = jnp.ones_like(layer.var[...])

    def flat(y: jax.Array) -> jax.Array:
        return y.reshape(-1)

    # y(0) with unit variance and no scale: -m per channel; with zero mean and the bias: b per channel
    mean = -flat(spec.normalize(xs, layer.mean[...], unit, None, None, 0.0))
    bn = nnx.BatchNorm(size, use_running_average=True, momentum=layer.momentum, epsilon=layer.epsilon,
                       use_scale=layer.scale is not None, use_bias=layer.bias is not None, dtype=layer.dtype,
                       param_dtype=layer.param_dtype, rngs=nnx.Rngs(0))
    bn.mean[...] = mean.astype(bn.mean.dtype)
    bn.var[...] = layer.var[...][idx].astype(bn.var.dtype)
    if layer.scale is not None and bn.scale is not None:
        bn.scale[...] = layer.scale[...][idx]
    if layer.bias is not None and bn.bias is not None:
        bias = flat(spec.normalize(xs, jnp.zeros_like(layer.mean[...]), unit, None, layer.bias[...], 0.0))
        bn.bias[...] = bias.astype(bn.bias.dtype)
    return bn


def _is_kept(layer: Any) -> bool:
    if getattr(type(layer), "exported_as_is", False) or isinstance(layer, KEPT_AS_IS):
        return True
    # equilib's GroupNorm / LayerNorm of a steerable map: per-field parameters, no Flax counterpart
    spec = getattr(layer, "spec", None)
    return isinstance(layer, (nn.GroupNorm, nn.LayerNorm)) and getattr(spec, "in_type", None) is not None


def _group_of(layer: Any) -> Group | None:
    spec = getattr(layer, "spec", None)
    group = getattr(spec, "group", None) if spec is not None else getattr(layer, "group", None)
    return group if isinstance(group, Group) else None


_TRACE_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                 jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


def _call_export(layer: Any) -> Any:
    return layer.export()


def _traced(fn: Any, layer: Any) -> Any:
    """``fn(layer)`` as one compiled program (``nnx.jit``): run eagerly, every op of the kernel
    expansion and of the plain layer's random initialisation (then overwritten) compiles on its
    own, seconds per layer. An ``export()`` that needs concrete values runs eagerly."""
    try:
        return nnx.jit(fn)(layer)
    except _TRACE_ERRORS:
        return fn(layer)


def _replacement(layer: Any) -> Any:
    """The exported form of one layer, or None to keep (or walk into) it."""
    if isinstance(layer, PLAIN_LAYERS) or _is_kept(layer):
        return None
    if _is_batch_norm(layer):
        bn = _traced(export_batch_norm, layer)
        group = _group_of(layer)
        return bn if group is None else RegularAdapter(bn, group.order, regular_input=True, regular_output=True)
    if callable(getattr(layer, "export", None)):
        plain = _traced(_call_export, layer)
        group = _group_of(layer)
        if group is None:
            return plain
        lifting = isinstance(layer, nn.LiftingConv)
        return RegularAdapter(plain, group.order, regular_input=not lifting, regular_output=True)
    return None


def _owns_state(module: nnx.Module) -> bool:
    """True if ``module`` holds parameters or batch statistics itself (not in a submodule)."""
    return any(isinstance(v, (nnx.Param, nnx.BatchStat)) for v in vars(module).values())


def _walk(module: Any, path: str) -> Any:
    """Export ``module`` in place below it; return its replacement (or ``module``)."""
    new = _replacement(module)
    if new is not None:
        return new
    if isinstance(module, PLAIN_LAYERS) or _is_kept(module):
        return module
    if _owns_state(module):
        raise ValueError(f"export: {path} ({type(module).__name__}) holds parameters but is neither a plain Flax "
                         f"layer nor exportable: give it an `export()` method returning a plain Flax layer, or "
                         f"the class attribute `exported_as_is = True` if its parameters are already plain")
    is_list = isinstance(module, nnx.List)
    for name, value in list(vars(module).items()):
        if name.startswith("_") or not isinstance(value, nnx.Module):
            continue
        child_path = f"{path}[{name}]" if is_list else f"{path}.{name}"
        replaced = _walk(value, child_path)
        if replaced is not value:
            if is_list:
                module[int(name)] = replaced
            else:
                setattr(module, name, replaced)
    return module


def export(model: nnx.Module) -> nnx.Module:
    """A copy of ``model`` in evaluation mode, made of plain Flax layers with expanded kernels.

    The module tree is walked (attributes, ``nnx.List``, ``nnx.Sequential`` /
    ``equilib.nn.Sequential`` / ``FieldSequential`` layers); every layer with an ``export()``
    method (``Conv``, ``LiftingConv``, ``GroupConv``, ``SteerableConv``, the transposed convs,
    ``FieldLinear``, ``GroupNorm``/``LayerNorm`` of regular or plain maps) is replaced by its
    result, ``GroupBatchNorm``/``FieldBatchNorm`` by an ``nnx.BatchNorm`` with the running
    statistics, scale and bias repeated over each field's channels (:func:`export_batch_norm`);
    layers on regular maps become a :class:`RegularAdapter` around the plain layer. Plain Flax
    layers (:data:`PLAIN_LAYERS`), the layers of :data:`KEPT_AS_IS` (or with
    ``exported_as_is = True``) and parameter-free modules and functions are kept. The result
    computes the same function as ``model`` in evaluation mode (to fp32 rounding); ``model``
    itself is not modified.

    Args:
        model: an NNX module built from equilib and Flax layers (a layer itself works too).

    Returns:
        The exported module, in evaluation mode (batch norms use their running statistics).

    Raises:
        TypeError: ``model`` is not an ``nnx.Module``.
        ValueError: a module holds parameters (or batch statistics) but is neither a plain Flax
            layer nor exportable; the message names it by its path, e.g. ``model.convs[2] (MyLayer)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import export, models
        >>> model = models.P4CNN(width=2, rngs=nnx.Rngs(0))
        >>> plain = export(model)
        >>> type(plain.lift).__name__, type(plain.lift.layer).__name__, type(plain.bns[0].layer).__name__
        ('RegularAdapter', 'Conv', 'BatchNorm')
        >>> model.eval()
        >>> import numpy as np
        >>> x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 28, 28, 1)), jnp.float32)
        >>> bool(jnp.allclose(plain(x), model(x), rtol=1e-5, atol=1e-5))
        True
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"`model` must be an nnx.Module, got {type(model).__name__}")
    model = nnx.clone(model)
    model.eval()
    return _walk(model, "model")
