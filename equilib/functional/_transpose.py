"""Transposed convolution as a pure function: the adjoint of :func:`equilib.functional.conv2d`.

``conv_transpose(y, W)`` is the adjoint of ``x -> conv2d(x, W.swapaxes(-1, -2))`` on an input
``x`` of spatial size ``m`` (:func:`conv_transpose_size`), so that
``<conv2d(x, W^T), y> == <x, conv_transpose(y, W)>``. An equivariant ``conv2d`` between
orthogonal representations (permutations, rot90/flips of pixels, orthogonal field reps) has an
equivariant adjoint, so the same kernel constraints and bases serve both; it is exact for
rot90/flips when that ``conv2d`` samples its size-``m`` input symmetrically
(:func:`transpose_is_symmetric`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from equilib._src.checks import check_rank, is_int, normalize_padding, normalize_stride
from equilib._src.typing import Array
from equilib.functional._conv import is_symmetric_sampling, padding_pads

__all__ = ["check_output_padding", "conv_transpose", "conv_transpose_pads", "conv_transpose_size",
           "transpose_is_symmetric"]


def check_output_padding(output_padding, stride: int, padding: str) -> int:
    """``output_padding`` as an int in ``[0, stride)``; "CIRCULAR" padding is refused."""
    if padding == "CIRCULAR":
        raise ValueError("`padding`='CIRCULAR' is not supported by transposed convolutions (expected 'SAME' or "
                         "'VALID'); at stride 1 the adjoint of a circular conv2d is conv2d(y, kernel[::-1, ::-1], "
                         "padding='CIRCULAR') for an odd kernel")
    if not is_int(output_padding) or not 0 <= output_padding < stride:
        raise ValueError(f"`output_padding` must be an int with 0 <= output_padding < stride (={stride}), "
                         f"got {output_padding!r}")
    return int(output_padding)


def conv_transpose_size(n: int, kernel_size: int, stride: int, padding: str, output_padding: int = 0) -> int:
    """The output length ``m`` of a transposed convolution along an axis of length ``n``.

    ``"SAME"``: ``m = (n - 1) * stride + 1 + output_padding`` (``n -> 2n - 1`` at stride 2, the
    inverse of a stride-2 "SAME" conv2d on an odd size; ``output_padding=1`` gives ``2n``, the
    size of Flax/TF). ``"VALID"``: ``m = (n - 1) * stride + K + output_padding``. A stride-``s``
    :func:`conv2d` maps ``m`` back to ``n``.

    Args:
        n: the input length.
        kernel_size: the kernel length ``K``.
        stride: the stride.
        padding: "SAME" or "VALID".
        output_padding: extra output pixels at the end, ``0 <= output_padding < stride``.

    Returns:
        ``m``, a Python int.

    Raises:
        ValueError: a bad ``padding`` (including "CIRCULAR"), ``stride`` or ``output_padding``.

    Example:
        >>> from equilib import functional as F
        >>> F.conv_transpose_size(5, 3, 2, "SAME"), F.conv_transpose_size(5, 3, 2, "SAME", 1)
        (9, 10)
        >>> F.conv_transpose_size(5, 3, 2, "VALID")
        11
    """
    padding, stride = normalize_padding(padding), normalize_stride(stride)
    output_padding = check_output_padding(output_padding, stride, padding)
    extra = 1 if padding == "SAME" else kernel_size
    return (int(n) - 1) * stride + extra + output_padding


def conv_transpose_pads(n: int, kernel_size: int, stride: int, padding: str,
                        output_padding: int = 0) -> tuple[int, int]:
    """The ``(lo, hi)`` pads of the stride-dilated input (as ``lax.conv_transpose``'s explicit
    padding, with the spatially flipped kernel) that compute :func:`conv_transpose` along an
    axis of length ``n``. They do not depend on ``n`` (``m mod stride`` is fixed), so one pair
    serves every input size (what :meth:`export` of the layers relies on)."""
    m = conv_transpose_size(n, kernel_size, stride, padding, output_padding)
    lo, _ = padding_pads(m, kernel_size, stride, padding)
    return kernel_size - 1 - lo, m - (int(n) - 1) * stride - 1 + lo


def transpose_is_symmetric(n: int, kernel_size: int, stride: int, padding: str, output_padding: int = 0) -> bool:
    """Whether the transposed convolution's output grid (length :func:`conv_transpose_size`) is
    symmetric about its centre, i.e. the conv2d it is the adjoint of samples symmetrically: the
    condition of exact rot90/flip equivariance. True for ``output_padding=0`` with an odd kernel
    or "VALID"; False for "SAME", stride 2, ``output_padding=1`` (``n -> 2n``). Other cases follow
    the same rule, e.g. stride 3 with an odd kernel: ``output_padding`` 0 and 2 are symmetric, 1
    is not."""
    m = conv_transpose_size(n, kernel_size, stride, padding, output_padding)
    return is_symmetric_sampling(m, kernel_size, stride, padding)


def conv_transpose(y: Array, kernel: Array, *, stride=1, padding="SAME", output_padding: int = 0,
                   bias: Array | None = None, precision=None) -> Array:
    """Transposed 2D convolution ``(B, n_h, n_w, C_in) x (K_h, K_w, C_in, C_out) -> (B, m_h, m_w, C_out)``.

    The adjoint of ``x -> conv2d(x, kernel.swapaxes(-1, -2), stride=stride, padding=padding)``
    (:func:`conv2d`, ``C_out -> C_in``) on an input of size ``m`` (:func:`conv_transpose_size`:
    ``(n - 1) * stride + 1 + output_padding`` for "SAME", ``(n - 1) * stride + K +
    output_padding`` for "VALID"), plus ``bias``. Computed as one ``lax.conv_general_dilated``
    with ``lhs_dilation=stride`` and the spatially flipped kernel (no ``jax.vjp``).

    Exactness: with a kernel satisfying the group-conv / steerable constraint it is exactly
    rot90/flip-equivariant when the output grid is symmetric (``transpose_is_symmetric``: e.g.
    an odd kernel, or "VALID", with ``output_padding=0``; not "SAME" stride 2 with ``output_padding=1``).

    Args:
        y: the input ``(B, n_h, n_w, C_in)``.
        kernel: the HWIO kernel ``(K_h, K_w, C_in, C_out)`` of the transposed layer, of ``y``'s dtype.
        stride: an int, or a pair of equal ints.
        padding: "SAME" or "VALID" (case-insensitive); "CIRCULAR" is refused.
        output_padding: extra output pixels at the bottom/right, ``0 <= output_padding < stride``.
        bias: ``(C_out,)``, added to every pixel, or None.
        precision: passed to the convolution (``jax.lax.Precision``).

    Returns:
        ``(B, m_h, m_w, C_out)``, in ``y``'s dtype.

    Raises:
        ValueError: ``y`` or ``kernel`` not of rank 4, their channel counts differ, a bad
            ``stride``, ``padding`` (including "CIRCULAR") or ``output_padding``.
        TypeError: ``y`` and ``kernel`` of different dtypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import functional as F
        >>> import numpy as np
        >>> y = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5, 5, 3)), jnp.float32)
        >>> w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 3, 2)), jnp.float32)
        >>> F.conv_transpose(y, w, stride=2).shape, F.conv_transpose(y, w, stride=2, output_padding=1).shape
        ((1, 9, 9, 2), (1, 10, 10, 2))
        >>> x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 9, 9, 2)), jnp.float32)  # conv2d(., w^T) adjoint
        >>> lhs = jnp.vdot(F.conv2d(x, w.swapaxes(-1, -2), stride=2), y)
        >>> bool(jnp.allclose(lhs, jnp.vdot(x, F.conv_transpose(y, w, stride=2)), rtol=1e-4))
        True
    """
    check_rank(y, 4, "(batch, H, W, C)", "y")
    if kernel.ndim != 4:
        raise ValueError(f"`kernel` must have rank 4 (K_h, K_w, C_in, C_out), got shape {tuple(kernel.shape)}")
    if kernel.shape[2] != y.shape[-1]:
        raise ValueError(f"the kernel's input channels (={kernel.shape[2]}) do not match the input's channel "
                         f"axis (={y.shape[-1]})")
    stride, padding = normalize_stride(stride), normalize_padding(padding)
    output_padding = check_output_padding(output_padding, stride, padding)
    if y.dtype != kernel.dtype:
        raise TypeError(f"conv_transpose needs `y` and `kernel` of the same dtype, got {y.dtype} and {kernel.dtype}")
    kh, kw = kernel.shape[:2]
    pads = [conv_transpose_pads(y.shape[1], kh, stride, padding, output_padding),
            conv_transpose_pads(y.shape[2], kw, stride, padding, output_padding)]
    out = lax.conv_general_dilated(y, kernel[::-1, ::-1], window_strides=(1, 1), padding=pads,
                                   lhs_dilation=(stride, stride), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   precision=precision)
    if bias is not None:
        out = out + jnp.reshape(bias, (1, 1, 1, -1))  # the broadcast written out
    return out
