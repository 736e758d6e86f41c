"""Plain, lifting and group convolutions as pure functions (channels-last).

Padding modes (as in ``flax.nnx.Conv``):

* ``"SAME"``: zero padding, output size ``ceil(H / stride)``; pads split as XLA does
  (the extra pixel, if any, at the bottom/right).
* ``"VALID"``: no padding, output size ``floor((H - K) / stride) + 1``.
* ``"CIRCULAR"``: periodic padding with the pads of ``"SAME"``: with stride 1 the convolution
  commutes exactly with circular shifts (``jnp.roll``) of the input.

All functions are pure, and safe under ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from equilib.functional._kernels import expand_group_kernel, expand_lifting_kernel
from equilib.groups import Group, as_group

__all__ = ["conv2d", "lifting_conv", "group_conv", "PADDINGS", "padding_pads",
           "is_symmetric_sampling"]

PADDINGS = ("SAME", "VALID", "CIRCULAR")


def normalize_padding(padding) -> str:
    if not isinstance(padding, str) or padding.upper() not in PADDINGS:
        raise ValueError(f"`padding` must be one of {PADDINGS}, got {padding!r}")
    return padding.upper()


def normalize_stride(stride) -> int:
    if isinstance(stride, (tuple, list)):
        if len(stride) != 2 or stride[0] != stride[1]:
            raise ValueError(f"`stride` must be an int or a pair of equal ints, got {stride!r}")
        stride = stride[0]
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"`stride` must be an integer >= 1, got {stride!r}")
    return stride


def padding_pads(size: int, kernel_size: int, stride: int, padding: str) -> tuple[int, int]:
    """``(lo, hi)`` zero/periodic pads along one spatial axis of length ``size``."""
    padding = normalize_padding(padding)
    if padding == "VALID":
        return (0, 0)
    ((lo, hi),) = lax.padtype_to_pads((size,), (kernel_size,), (stride,), "SAME")
    return (int(lo), int(hi))


def output_size(size: int, kernel_size: int, stride: int, padding: str) -> int:
    lo, hi = padding_pads(size, kernel_size, stride, padding)
    return (size + lo + hi - kernel_size) // stride + 1


def is_symmetric_sampling(size: int, kernel_size: int, stride: int, padding: str) -> bool:
    """True if the output samples along an axis sit symmetrically about the input's centre,
    which exact rot90/flip equivariance needs (e.g. False for an even size with stride 2,
    or an even kernel with "SAME" padding; True for any size with "VALID" and stride 1)."""
    lo, _ = padding_pads(size, kernel_size, stride, padding)
    n_out = output_size(size, kernel_size, stride, padding)
    if n_out < 1:
        return True
    # centre of output i in input coordinates: i*stride - lo + (K-1)/2; symmetric iff
    # first + last == size - 1.  Doubled to stay in integers.
    return 2 * (-lo) + (kernel_size - 1) + (n_out - 1) * stride == size - 1


def _check_rank(x, ndim: int, what: str, name: str = "x"):
    if x.ndim != ndim:
        raise ValueError(f"`{name}` must have rank {ndim} {what}, got shape {tuple(x.shape)}")


def conv2d(x, kernel, *, stride=1, padding="SAME", bias=None, precision=None,
           preferred_element_type=None):
    """Plain 2D cross-correlation, ``(B, H, W, C) x (K, K, C, O) -> (B, H', W', O)``.

    Translation-equivariant: with ``padding="CIRCULAR"`` and ``stride=1``,
    ``conv2d(roll(x)) == roll(conv2d(x))`` exactly.
    """
    _check_rank(x, 4, "(batch, H, W, C)")
    if kernel.ndim != 4:
        raise ValueError(f"`kernel` must have rank 4 (K_h, K_w, C_in, C_out), got shape {tuple(kernel.shape)}")
    if kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"the kernel's input channels (={kernel.shape[2]}) do not match the "
                         f"input's channel axis (={x.shape[-1]})")
    stride = normalize_stride(stride)
    padding = normalize_padding(padding)
    kh, kw = kernel.shape[:2]
    if padding == "CIRCULAR":
        pads = [padding_pads(x.shape[1], kh, stride, "SAME"),
                padding_pads(x.shape[2], kw, stride, "SAME")]
        x = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], mode="wrap")
        lax_padding = "VALID"
    else:
        lax_padding = padding
    y = lax.conv_general_dilated(
        x, kernel, window_strides=(stride, stride), padding=lax_padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision,
        preferred_element_type=preferred_element_type)
    if bias is not None:
        y = y + bias
    return y


def lifting_conv(x, kernel, group: Group, *, stride=1, padding="SAME", bias=None, precision=None):
    """Lifting convolution ``(B, H, W, C) -> (B, H', W', O, |G|)``.

    ``out[p, o, h] = sum_{d, c} x[p + d, c] * kernel[h^-1 d, c, o] (+ bias[o])``, with
    ``kernel`` of shape ``(K, K, C, O)`` and ``bias`` of shape ``(O,)`` shared over the group.
    Equivariance: transforming ``x`` by ``g`` transforms the output by ``g`` in space and
    permutes its group axis by the regular representation (:meth:`Group.transform_regular`).
    """
    group = as_group(group)
    w = expand_lifting_kernel(kernel, group)
    y = conv2d(x, w, stride=stride, padding=padding, precision=precision)
    y = y.reshape(y.shape[:-1] + (kernel.shape[-1], group.order))
    if bias is not None:
        y = y + bias[:, None]
    return y


def group_conv(x, kernel, group: Group, *, stride=1, padding="SAME", bias=None, precision=None):
    """Group convolution ``(B, H, W, C, |G|) -> (B, H', W', O, |G|)``.

    ``out[p, o, h] = sum_{d, c, k} x[p + d, c, k] * kernel[h^-1 d, c, h^-1 k, o] (+ bias[o])``,
    with ``kernel`` of shape ``(K, K, C, |G|, O)``. Equivariant under the regular action.
    """
    group = as_group(group)
    _check_rank(x, 5, "(batch, H, W, C, |G|)")
    if x.shape[-1] != group.order:
        raise ValueError(f"the input's group axis (last) has size {x.shape[-1]}, expected "
                         f"|{group.name}| = {group.order}")
    w = expand_group_kernel(kernel, group)
    b, h, wd = x.shape[:3]
    y = conv2d(x.reshape(b, h, wd, -1), w, stride=stride, padding=padding, precision=precision)
    y = y.reshape(y.shape[:-1] + (kernel.shape[-1], group.order))
    if bias is not None:
        y = y + bias[:, None]
    return y

