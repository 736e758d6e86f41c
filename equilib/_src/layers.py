"""The layer scaffold: what every convolution and batch norm of equilib shares.

A layer is split in two:

* a **spec** (:class:`ConvSpec`, :class:`NormSpec`): a frozen dataclass holding the validated
  configuration (channels, kernel size, group, field types, ...) and the maths as methods of
  arrays (parameter shapes, default initialiser, input checks, forward). It knows nothing of
  Flax's module systems, and is hashable, so NNX keeps it as static data;
* a **front end** that owns the parameters: the NNX bases :class:`ConvLayer` and
  :class:`BatchNormLayer` here (``equilib.nn``), and the Linen bases in :mod:`equilib.linen`.
  Both declare the same parameters (``kernel``/``bias``; ``scale``/``bias`` and batch stats
  ``mean``/``var``) with the same initialisers and call the same forward function
  (:func:`conv_forward`, :func:`batch_norm_forward`), so an NNX layer and its Linen wrapper
  compute the same function of the same parameters.

dtypes follow Flax (``flax.nnx.nn.dtypes.promote_dtype``): the input and the parameters are
cast to ``dtype`` if it is given, else to their promoted dtype (at least a float), before the
computation; parameters are stored in ``param_dtype``.

The NNX layers read their configuration attributes (``layer.in_channels``, ``layer.group``,
``layer.padding``, ...) from their spec (``layer.spec``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.dtypes import promote_dtype

from equilib._src.checks import (
    check_batch_norm_args,
    check_choice,
    check_kernel_size,
    check_ndim,
    check_positive_int,
    normalize_padding,
    normalize_stride,
)
from equilib._src.init import Initializer, ones, zeros

__all__ = ["AxisPool", "BatchNormLayer", "ChannelConvSpec", "ConvLayer", "ConvSpec", "ExportableConvLayer",
           "NormSpec", "WindowConvSpec", "WindowSpec", "batch_norm_forward", "conv_forward", "export_conv",
           "set_fields", "update_running_stats"]


def set_fields(spec: Any, **values: Any) -> None:
    """Store normalised values on a frozen dataclass (in its ``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(spec, name, value)


# --- convolutions ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class ConvSpec:
    """Configuration and maths of one kind of convolution (subclasses are frozen dataclasses
    whose ``__post_init__`` validates their fields)."""

    layer: ClassVar[str] = "conv"
    # True: the bias key is derived from the kernel key instead of drawn from ``rngs``, so that a
    # layer takes one key (SteerableConv, whose bias drew no key in equilib 0.1)
    derives_bias_key: ClassVar[bool] = False

    use_bias: bool = True

    def __post_init__(self) -> None:
        set_fields(self, use_bias=bool(self.use_bias))

    def kernel_shape(self) -> tuple[int, ...]:
        """The shape of the ``kernel`` parameter."""
        raise NotImplementedError

    def bias_shape(self) -> tuple[int, ...] | None:
        """The shape of the ``bias`` parameter, or None for no bias."""
        raise NotImplementedError

    def default_kernel_init(self) -> Initializer:
        """The initialiser used when ``kernel_init`` is None."""
        raise NotImplementedError

    def check(self, x: jax.Array) -> None:
        """Validate the input (rank, channels, group/scale axis, size); warn if inexact."""
        raise NotImplementedError

    def prepare(self, kernel: jax.Array, bias: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
        """The parameters as :meth:`apply` takes them (before dtype promotion)."""
        return kernel, bias

    def apply(self, x: jax.Array, kernel: jax.Array, bias: jax.Array | None, precision: Any) -> jax.Array:
        """The convolution of ``x`` (already checked and promoted with the parameters)."""
        raise NotImplementedError

    def expand_kernel(self, kernel: jax.Array) -> jax.Array:
        """The kernel the convolution applies (HWIO, or one per scale)."""
        return kernel

    def expand_bias(self, bias: jax.Array | None) -> jax.Array | None:
        """The bias of the expanded kernel's output channels."""
        return bias


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChannelConvSpec(ConvSpec):
    """A convolution ``in_channels -> out_channels``, with one bias per output channel."""

    in_channels: int
    out_channels: int

    def __post_init__(self) -> None:
        super().__post_init__()
        set_fields(self, in_channels=check_positive_int("in_channels", self.in_channels),
                   out_channels=check_positive_int("out_channels", self.out_channels))

    def bias_shape(self) -> tuple[int, ...] | None:
        return (self.out_channels,) if self.use_bias else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class WindowSpec(ConvSpec):
    """A convolution over a ``kernel_size`` window, with ``stride`` and ``padding``."""

    square: ClassVar[bool] = True  # group convolutions rotate the kernel: it must be square

    kernel_size: Any
    stride: Any = 1
    padding: str = "SAME"

    def __post_init__(self) -> None:
        super().__post_init__()
        set_fields(self, kernel_size=check_kernel_size(self.kernel_size, square=self.square),
                   stride=normalize_stride(self.stride), padding=normalize_padding(self.padding))


@dataclasses.dataclass(frozen=True, kw_only=True)
class WindowConvSpec(WindowSpec, ChannelConvSpec):
    """A convolution ``in_channels -> out_channels`` over a ``kernel_size`` window."""


def conv_forward(spec: ConvSpec, x: Any, kernel: jax.Array, bias: jax.Array | None, *,
                 dtype: Any = None, precision: Any = None) -> jax.Array:
    """Check ``x``, promote it and the parameters to one dtype (``dtype``, or the promoted
    one) as Flax does, and convolve."""
    x = x if hasattr(x, "ndim") else jnp.asarray(x)
    spec.check(x)
    # parameters may be numpy arrays (a model whose state was fetched with jax.device_get): as jax
    # arrays, the spec's maths can index them with traced values under jit
    kernel, bias = spec.prepare(jnp.asarray(kernel), None if bias is None else jnp.asarray(bias))
    x, kernel, bias = promote_dtype((x, kernel, bias), dtype=dtype)
    return spec.apply(x, kernel, bias, precision)


def export_conv(kernel: jax.Array, bias: jax.Array | None, stride: int, padding: str, dtype: Any,
                precision: Any) -> nnx.Conv:
    """An ``nnx.Conv`` with this HWIO ``kernel`` ``(K_h, K_w, C_in, C_out)`` (or DHWIO, 3D) and ``bias``."""
    *ks, cin, cout = kernel.shape
    conv = nnx.Conv(cin, cout, tuple(ks), strides=stride, padding=padding, use_bias=bias is not None,
                    dtype=dtype, param_dtype=kernel.dtype, precision=precision, rngs=nnx.Rngs(0))
    conv.kernel[...] = kernel
    if bias is not None and conv.bias is not None:
        conv.bias[...] = bias
    return conv


class _SpecAttributes:
    """Read the configuration attributes (``in_channels``, ``group``, ...) from ``self.spec``."""

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails; never for private names (copying, pickling)
        spec = vars(self).get("spec") if not name.startswith("_") and name != "spec" else None
        if spec is not None:
            try:
                return getattr(spec, name)
            except AttributeError:
                pass
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class ConvLayer(_SpecAttributes, nnx.Module):
    """NNX base of equilib's convolutions: a :class:`ConvSpec` plus the ``kernel`` and
    ``bias`` parameters (``nnx.Param``), drawn as ``nnx.Conv`` draws them: one key from
    ``rngs.params()`` for the kernel, then one for the bias."""

    def __init__(self, spec: ConvSpec, *, dtype: Any, param_dtype: Any, precision: Any,
                 kernel_init: Initializer | None, bias_init: Initializer, rngs: nnx.Rngs):
        self.spec = spec
        self.dtype, self.param_dtype, self.precision = dtype, param_dtype, precision
        init = spec.default_kernel_init() if kernel_init is None else kernel_init
        key = rngs.params()
        self.kernel = nnx.Param(init(key, spec.kernel_shape(), param_dtype))
        shape = spec.bias_shape()
        if shape is None:
            self.bias = None
        else:
            bias_key = jax.random.fold_in(key, 1) if spec.derives_bias_key else rngs.params()
            self.bias = nnx.Param(bias_init(bias_key, shape, param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return conv_forward(self.spec, x, self.kernel[...], None if self.bias is None else self.bias[...],
                            dtype=self.dtype, precision=self.precision)

    def expanded_kernel(self) -> jax.Array:
        """The kernel the layer applies, built from its ``kernel`` parameter (see the layer)."""
        return self.spec.expand_kernel(self.kernel[...])

    def expanded_bias(self) -> jax.Array | None:
        """The bias of the expanded kernel's output channels, or None."""
        return self.spec.expand_bias(None if self.bias is None else self.bias[...])


class ExportableConvLayer(ConvLayer):
    """A convolution whose expanded kernel is one HWIO kernel: it exports to ``nnx.Conv``."""

    def export(self) -> nnx.Conv:
        """A plain ``flax.nnx.Conv`` computing the same function (on the flattened input, for
        regular maps), with the expanded kernel and bias as its parameters."""
        spec = cast(WindowSpec, self.spec)
        return export_conv(self.expanded_kernel(), self.expanded_bias(), spec.stride, spec.padding,
                           self.dtype, self.precision)


# --- batch norms ------------------------------------------------------------------------------
class NormSpec:
    """Configuration and maths of one kind of batch norm: statistics and parameter shapes,
    input check, batch moments and normalisation (subclasses are frozen dataclasses)."""

    layer: ClassVar[str] = "batch norm"

    def stat_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of the ``mean`` and ``var`` batch statistics."""
        raise NotImplementedError

    def param_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """The shapes of the ``scale`` and ``bias`` parameters (bias None: no bias possible)."""
        raise NotImplementedError

    def check(self, x: jax.Array) -> None:
        """Validate the input."""
        raise NotImplementedError

    def split(self, x: jax.Array) -> Any:
        """The input as :meth:`moments` and :meth:`normalize` take it (built once, so that both
        use the same arrays: one node in the graph, one gradient accumulation)."""
        return x

    def moments(self, xs: Any, axis_name: Any) -> tuple[jax.Array, jax.Array]:
        """The batch ``(mean, var)`` of the split input, in float32 at least."""
        raise NotImplementedError

    def normalize(self, xs: Any, mean: jax.Array, var: jax.Array, scale: jax.Array | None,
                  bias: jax.Array | None, epsilon: float) -> jax.Array:
        """``(x - mean) / sqrt(var + epsilon) * scale + bias`` of the split input, in its dtype."""
        raise NotImplementedError

    def batch_normalize(self, xs: Any, scale: jax.Array | None, bias: jax.Array | None, epsilon: float,
                        axis_name: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """Training mode: the split input normalised with its own moments, and the moments
        (a spec overrides it with a fused gradient, e.g. :func:`equilib.functional.batch_norm`)."""
        batch = self.moments(xs, axis_name)
        return self.normalize(xs, *batch, scale, bias, epsilon), batch


def batch_norm_forward(spec: NormSpec, x: Any, scale: jax.Array | None, bias: jax.Array | None,
                       mean: jax.Array, var: jax.Array, *, use_running_average: bool, epsilon: float,
                       axis_name: Any = None, dtype: Any = None):
    """``(y, batch)``: the normalised input, with the running statistics ``mean``/``var`` if
    ``use_running_average`` else with the batch's, returned as ``batch = (mean, var)`` (None
    otherwise) for the caller to fold into its running statistics."""
    x = x if hasattr(x, "ndim") else jnp.asarray(x)
    spec.check(x)
    mean, var = jnp.asarray(mean), jnp.asarray(var)  # as in conv_forward: numpy state works under jit
    x, scale, bias = promote_dtype((x, scale, bias), dtype=dtype)
    xs = spec.split(x)
    if use_running_average:
        return spec.normalize(xs, mean, var, scale, bias, epsilon), None
    return spec.batch_normalize(xs, scale, bias, epsilon, axis_name)


class BatchNormLayer(_SpecAttributes, nnx.Module):
    """NNX base of equilib's batch norms: a :class:`NormSpec` plus ``scale``/``bias``
    (``nnx.Param``, ones/zeros) and ``mean``/``var`` (``nnx.BatchStat``, zeros/ones, float32).

    Training mode (``use_running_average=False``) normalises with the batch statistics and
    updates the running ones, ``ra = momentum * ra + (1 - momentum) * batch`` (Flax's
    convention); ``model.eval()`` switches to the running ones. ``rngs`` is required as in
    NNX, but the initialisers are constant: no key is drawn, so adding a norm does not change
    the keys, hence the initial values, of the layers built after it."""

    def __init__(self, spec: NormSpec, *, use_running_average: bool, momentum: float, epsilon: float,
                 use_scale: bool, use_bias: bool, axis_name: Any, dtype: Any, param_dtype: Any,
                 rngs: nnx.Rngs):
        del rngs
        self.spec = spec
        self.momentum, self.epsilon = check_batch_norm_args(momentum, epsilon)
        self.use_running_average = bool(use_running_average)
        self.axis_name, self.dtype, self.param_dtype = axis_name, dtype, param_dtype
        mean_shape, var_shape = spec.stat_shapes()
        self.mean = nnx.BatchStat(zeros(None, mean_shape, jnp.float32))
        self.var = nnx.BatchStat(ones(None, var_shape, jnp.float32))
        scale_shape, bias_shape = spec.param_shapes()
        self.scale = nnx.Param(ones(None, scale_shape, param_dtype)) if use_scale else None
        self.bias = nnx.Param(zeros(None, bias_shape, param_dtype)) if use_bias and bias_shape else None

    def __call__(self, x: jax.Array, *, use_running_average: bool | None = None) -> jax.Array:
        if use_running_average is None:
            use_running_average = self.use_running_average
        y, batch = batch_norm_forward(
            self.spec, x, None if self.scale is None else self.scale[...],
            None if self.bias is None else self.bias[...], self.mean[...], self.var[...],
            use_running_average=use_running_average, epsilon=self.epsilon, axis_name=self.axis_name,
            dtype=self.dtype)
        if batch is not None:
            self.mean[...], self.var[...] = update_running_stats(self.mean[...], self.var[...], batch, self.momentum)
        return y


def update_running_stats(mean: jax.Array, var: jax.Array, batch: tuple[jax.Array, jax.Array],
                         momentum: float) -> tuple[jax.Array, jax.Array]:
    """``ra = momentum * ra + (1 - momentum) * batch`` for the running mean and variance, in
    their dtype (the batch statistics may be wider, e.g. float64 under x64)."""
    batch_mean, batch_var = batch
    return (momentum * mean + ((1 - momentum) * batch_mean).astype(mean.dtype),
            momentum * var + ((1 - momentum) * batch_var).astype(var.dtype))


# --- pooling of the last axis -----------------------------------------------------------------
class AxisPool(nnx.Module):
    """NNX base of the layers that pool the last (group or scale) axis of a rank-5 map with a
    ``mode`` (no parameters): subclasses set ``modes``, ``what`` (the input, for errors) and
    ``pool`` (``(x, mode) -> y``)."""

    modes: ClassVar[tuple[str, ...]]
    what: ClassVar[str]

    def __init__(self, mode: str = "max"):
        self.mode = check_choice("mode", mode, self.modes)

    def __call__(self, x: jax.Array) -> jax.Array:
        check_ndim(x, 5, self.what, type(self).__name__)
        return self.pool(x, self.mode)

    @staticmethod
    def pool(x: jax.Array, mode: str) -> jax.Array:
        """Pool the last axis of ``x`` with ``mode``."""
        raise NotImplementedError
