"""Will a model be exactly rot90/flip-equivariant at a given input size? Checked before training.

Exact equivariance under the grid-preserving elements needs every strided or padded layer to
sample its input symmetrically about the image centre (:func:`is_symmetric_sampling`). This
fails, for example, for a stride-2 layer on an even size (the failure reported in e2cnn#36 and
escnn#72) or an even kernel with "SAME" padding. equilib's group layers emit an
:class:`ExactnessWarning` when traced on such a size; :func:`check_exact` traces a model
abstractly (no FLOPs) and returns those warnings as a list.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from equilib._src.typing import DTypeLike
from equilib.functional._conv import is_symmetric_sampling, output_size
from equilib.functional._transpose import conv_transpose_size, transpose_is_symmetric
from equilib.functional._upsample import interpolation_matrix

__all__ = ["ExactnessWarning", "check_exact", "warn_if_inexact", "warn_if_inexact_transpose",
           "warn_if_inexact_upsample"]


class ExactnessWarning(UserWarning):
    """An input size, stride and padding combination breaks exact rot90/flip equivariance.

    Emitted by equilib's group layers when they are traced on such a size (a ``UserWarning``,
    so the usual ``warnings`` filters apply); :func:`check_exact` collects these warnings
    without running the model.

    Example:
        >>> import warnings
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, ExactnessWarning, nn
        >>> lift = nn.LiftingConv(1, 2, 3, group=Cyclic(4), stride=2, rngs=nnx.Rngs(0))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always", ExactnessWarning)
        ...     _ = lift(jnp.ones((1, 8, 8, 1)))  # stride 2 on an even size
        >>> [w.category.__name__ for w in caught]
        ['ExactnessWarning']
    """


def warn_if_inexact(layer: str, spatial: Sequence[int], kernel_size: int, stride: int, padding: str,
                    stacklevel: int = 3) -> None:
    """Warn if sampling ``spatial=(H, W)`` (or ``(D, H, W)``) with this kernel, stride and padding is
    not symmetric."""
    bad = [(axis, n) for axis, n in zip("HW" if len(spatial) == 2 else "DHW", spatial)
           if not is_symmetric_sampling(int(n), kernel_size, stride, padding)]
    if not bad:
        return
    sizes = ", ".join(f"{axis}={n}" for axis, n in bad)
    out = ", ".join(f"{axis}={output_size(int(n), kernel_size, stride, padding)}" for axis, n in bad)
    hint = ("use an odd input size" if stride > 1 else "use an odd kernel_size or padding='VALID'")
    warnings.warn(
        f"{layer}: input size {sizes} with kernel_size={kernel_size}, stride={stride}, "
        f"padding={padding!r} samples the input asymmetrically about its centre (output {out}); "
        f"rot90/flip equivariance will not be exact ({hint})",
        ExactnessWarning, stacklevel=stacklevel)


def warn_if_inexact_transpose(layer: str, spatial: Sequence[int], kernel_size: int, stride: int, padding: str,
                              output_padding: int, stacklevel: int = 3) -> None:
    """Warn if a transposed convolution from ``spatial=(H, W)`` has an output grid that is not
    symmetric about its centre: the conv2d it is the adjoint of samples its input (the
    transposed layer's output, of size ``m``) asymmetrically, e.g. "SAME", stride 2,
    ``output_padding=1`` (``n -> 2n``)."""
    bad = [(axis, int(n)) for axis, n in zip("HW", spatial)
           if not transpose_is_symmetric(int(n), kernel_size, stride, padding, output_padding)]
    if not bad:
        return
    sizes = ", ".join(f"{axis}={n} -> {conv_transpose_size(n, kernel_size, stride, padding, output_padding)}"
                      for axis, n in bad)
    warnings.warn(
        f"{layer}: the output grid ({sizes}) with kernel_size={kernel_size}, stride={stride}, "
        f"padding={padding!r}, output_padding={output_padding} is not symmetric about its centre; "
        f"rot90/flip equivariance will not be exact (e.g. use output_padding=0)",
        ExactnessWarning, stacklevel=stacklevel)


def warn_if_inexact_upsample(layer: str, spatial: Sequence[int], size_out: Sequence[int], method: str,
                             align_corners: bool, stacklevel: int = 3) -> None:
    """Warn if upsampling ``spatial=(H, W)`` to ``size_out=(H', W')`` breaks exact rot90/flips.

    Exact iff each axis' interpolation table is mirror symmetric (``A[::-1, ::-1] == A``; nearest
    tables are not at rounding ties) and a square input gets a square output (the same mapping on
    both axes). A non-square input is checked per axis only, as :func:`warn_if_inexact` does.
    """
    problems = []
    for axis, n, m in zip("HW", spatial, size_out):
        table = interpolation_matrix(int(n), int(m), method, align_corners)
        if not (table[::-1, ::-1] == table).all():
            problems.append(f"the {method} table {axis}={int(n)} -> {int(m)} is not mirror symmetric "
                            f"(a rounding tie; use an integer scale factor or method='bilinear')")
    if int(spatial[0]) == int(spatial[1]) and int(size_out[0]) != int(size_out[1]):
        problems.append(f"the square input {int(spatial[0])}x{int(spatial[1])} is resampled to the "
                        f"non-square {int(size_out[0])}x{int(size_out[1])} (the axes get different mappings)")
    if problems:
        warnings.warn(f"{layer}: " + "; ".join(problems) + "; rot90/flip equivariance will not be exact",
                      ExactnessWarning, stacklevel=stacklevel)


def check_exact(model: Callable, input_shape: Sequence[int], *, dtype: DTypeLike = jnp.float32) -> list[str]:
    """Problems that will break exact rot90/flip equivariance of ``model`` at ``input_shape``.

    ``model`` is traced abstractly with ``jax.eval_shape`` (no computation, no state change)
    and every :class:`ExactnessWarning` its layers raise is returned as a message. An empty
    list means every layer samples its input symmetrically about the image centre.

    Args:
        model: an NNX module, a list of layers (applied in order) or any callable ``x -> y``
            built from equilib layers.
        input_shape: the shape of the input, e.g. ``(B, H, W, C)`` for images.
        dtype: the input's dtype (default float32).

    Returns:
        A list of messages, one per layer call that samples asymmetrically (each names the
        layer, the input size and the fix); ``[]`` if the model is exact at this size.

    Raises:
        ValueError: raised by ``model`` itself on an input of this shape (e.g. a wrong number
            of channels): nothing is caught but the warnings.

    Example:
        >>> from flax import nnx
        >>> from equilib import nn, groups
        >>> layer = nn.LiftingConv(1, 4, 3, group=groups.Cyclic(4), stride=2, rngs=nnx.Rngs(0))
        >>> check_exact(layer, (1, 29, 29, 1))
        []
        >>> len(check_exact(layer, (1, 28, 28, 1)))
        1
    """
    from flax import nnx

    if isinstance(model, (list, tuple)):
        model = nnx.Sequential(*model)
    spec = jax.ShapeDtypeStruct(tuple(int(s) for s in input_shape), dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExactnessWarning)
        if isinstance(model, nnx.Module):
            graphdef, state = nnx.split(model)
            jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, spec)
        else:
            jax.eval_shape(model, spec)
    return [str(w.message) for w in caught if issubclass(w.category, ExactnessWarning)]
