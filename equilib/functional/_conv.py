"""Plain, lifting and group convolutions as pure functions (channels-last).

Padding modes (as in ``flax.nnx.Conv``):

* ``"SAME"``: zero padding, output size ``ceil(H / stride)``; pads split as XLA does
  (the extra pixel, if any, at the bottom/right).
* ``"VALID"``: no padding, output size ``floor((H - K) / stride) + 1``.
* ``"CIRCULAR"``: periodic padding with the pads of ``"SAME"``: with stride 1 the convolution
  commutes exactly with circular shifts (``jnp.roll``) of the input.

All functions are pure, and safe under ``jit``, ``vmap`` and ``grad``.

Implementations (``impl=`` of :func:`conv2d`, :func:`lifting_conv`, :func:`group_conv`):

* ``"xla"``: ``lax.conv_general_dilated``, the reference.
* ``"im2col"``: the ``K_h*K_w`` shifted (strided) windows of the padded input are concatenated
  along the channel axis and contracted with the kernel reshaped to ``(K_h*K_w*C, O)`` by one
  ``lax.dot_general``. The same sum in another order: outputs and gradients equal the
  reference's to fp32 rounding (relative ~1e-6, ``tests/test_fast_path.py``), not bitwise.
  On XLA:CPU the dot (and its transposes in the backward pass) runs on both cores, while the
  CPU convolution (forward, and the input/kernel gradients) mostly runs on one; see
  ``benchmarks/RESULTS.md`` for the measured speed-ups and the shapes where it pays.
* ``"auto"`` (default): ``"im2col"`` on the CPU backend for the small kernels and channel
  counts where it was measured faster (:func:`choose_impl`), ``"xla"`` otherwise (GPU/TPU
  always ``"xla"``).

The environment variable ``EQUILIB_CONV_IMPL`` (``xla``, ``im2col`` or ``auto``), read when a
function is traced, overrides ``impl=None``; an explicit ``impl=`` argument wins over it.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from jax import lax

from equilib.functional._kernels import expand_group_kernel, expand_lifting_kernel
from equilib.groups import Group, as_group

__all__ = ["conv2d", "lifting_conv", "group_conv", "PADDINGS", "padding_pads",
           "is_symmetric_sampling", "CONV_IMPLS", "choose_impl"]

PADDINGS = ("SAME", "VALID", "CIRCULAR")
CONV_IMPLS = ("auto", "xla", "im2col")
IMPL_ENV = "EQUILIB_CONV_IMPL"


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


def normalize_impl(impl) -> str:
    if impl is None:
        impl = os.environ.get(IMPL_ENV, "auto") or "auto"
        where = f"the environment variable {IMPL_ENV}"
    else:
        where = "`impl`"
    if not isinstance(impl, str) or impl.lower() not in CONV_IMPLS:
        raise ValueError(f"{where} must be one of {CONV_IMPLS}, got {impl!r}")
    return impl.lower()


def ynn_convolutions_off(xla_flags: str | None = None) -> bool:
    """Whether ``XLA_FLAGS`` turns off XLA:CPU's YNNPACK fusions
    (``--xla_cpu_experimental_ynn_fusion_type=`` or ``=individual_dot``). With them off, XLA's
    own convolution is the fastest CPU path measured (``benchmarks/RESULTS.md``: the P4CNN
    layer 26x26 40->40 3x3, forward + backward, 362 -> 95 ms, against 169 ms for im2col)."""
    flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    for flag in flags.split():
        if flag.startswith("--xla_cpu_experimental_ynn_fusion_type="):
            kinds = flag.split("=", 1)[1]
            return "convolution" not in kinds and kinds not in ("default",)
    return False


def choose_impl(x_shape, kernel_shape, stride: int = 1, backend: str | None = None) -> str:
    """The implementation ``impl="auto"`` picks for a ``(B, H, W, C)`` input and a
    ``(K_h, K_w, C, O)`` kernel: ``"im2col"`` or ``"xla"``.

    Rule (measured on a 2-core Xeon, jaxlib 0.10.2, ``benchmarks/conv_paths.py``; numbers in
    ``benchmarks/RESULTS.md``): on the CPU backend, im2col when the contraction
    ``K_h*K_w*C`` is at most 2304 and the window matrix ``B*H'*W'*K_h*K_w*C`` at most 2^26
    elements (256 MB in fp32), so the copy stays cheap next to the matmul; ``"xla"`` on other
    backends (cuDNN and the TPU convolution are already fast), for 1x1 kernels on CPU
    (identical work either way), and on CPU whenever ``XLA_FLAGS`` turns off the YNNPACK
    fusions (:func:`ynn_convolutions_off`; the experiments do so), which makes XLA's own
    convolution faster than im2col.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu" or ynn_convolutions_off():
        return "xla"
    kh, kw, c, o = kernel_shape
    if kh * kw == 1:
        return "xla"
    b, h, w = x_shape[:3]
    ho, wo = -(-h // stride), -(-w // stride)
    depth = kh * kw * c
    return "im2col" if depth <= _AUTO_MAX_DEPTH and b * ho * wo * depth <= _AUTO_MAX_WINDOWS else "xla"


_AUTO_MAX_DEPTH = 2304
_AUTO_MAX_WINDOWS = 2**26


def _im2col(x, kernel, stride: int, precision, preferred_element_type):
    """VALID cross-correlation of an already padded ``x`` as one matmul over the windows."""
    kh, kw, c, o = kernel.shape
    b, h, w, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    cols = [lax.slice(x, (0, i, j, 0), (b, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c),
                      (1, stride, stride, 1))
            for i in range(kh) for j in range(kw)]
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)  # (B, H', W', K*K*C)
    return lax.dot_general(patches, kernel.reshape(kh * kw * c, o), (((3,), (0,)), ((), ())),
                           precision=precision, preferred_element_type=preferred_element_type)


def conv2d(x, kernel, *, stride=1, padding="SAME", bias=None, precision=None,
           preferred_element_type=None, impl=None):
    """Plain 2D cross-correlation, ``(B, H, W, C) x (K, K, C, O) -> (B, H', W', O)``.

    Translation-equivariant: with ``padding="CIRCULAR"`` and ``stride=1``,
    ``conv2d(roll(x)) == roll(conv2d(x))`` exactly.

    ``impl``: ``"auto"`` (default, see :func:`choose_impl`), ``"xla"``
    (``lax.conv_general_dilated``) or ``"im2col"`` (windows x kernel as one matmul: equal to
    ``"xla"`` to fp32 rounding); ``None`` reads ``EQUILIB_CONV_IMPL`` (default ``"auto"``).
    """
    _check_rank(x, 4, "(batch, H, W, C)")
    if kernel.ndim != 4:
        raise ValueError(f"`kernel` must have rank 4 (K_h, K_w, C_in, C_out), got shape {tuple(kernel.shape)}")
    if kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"the kernel's input channels (={kernel.shape[2]}) do not match the "
                         f"input's channel axis (={x.shape[-1]})")
    stride = normalize_stride(stride)
    padding = normalize_padding(padding)
    impl = normalize_impl(impl)
    kh, kw = kernel.shape[:2]
    if impl == "auto":
        impl = choose_impl(x.shape, kernel.shape, stride)
    pads = [padding_pads(x.shape[1], kh, stride, padding), padding_pads(x.shape[2], kw, stride, padding)]
    out_hw = [(x.shape[1] + sum(pads[0]) - kh) // stride + 1, (x.shape[2] + sum(pads[1]) - kw) // stride + 1]
    if impl == "im2col" and min(out_hw) < 1:
        impl = "xla"  # an empty output: nothing to gain, let XLA produce the empty shape
    if padding == "CIRCULAR":
        x = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], mode="wrap")
        lax_padding = "VALID"
    elif impl == "im2col" and padding == "SAME" and any(pads[0] + pads[1]):
        x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), pads[0] + (0,), pads[1] + (0,), (0, 0, 0)])
        lax_padding = "VALID"
    else:
        lax_padding = padding
    if impl == "im2col":
        if x.dtype != kernel.dtype:  # as lax.conv_general_dilated, which needs equal dtypes
            raise TypeError(f"conv2d needs `x` and `kernel` of the same dtype, got {x.dtype} and {kernel.dtype}")
        y = _im2col(x, kernel, stride, precision, preferred_element_type)
    else:
        y = lax.conv_general_dilated(
            x, kernel, window_strides=(stride, stride), padding=lax_padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision,
            preferred_element_type=preferred_element_type)
    if bias is not None:
        y = y + bias
    return y


def lifting_conv(x, kernel, group: Group, *, stride=1, padding="SAME", bias=None, precision=None,
                 impl=None):
    """Lifting convolution ``(B, H, W, C) -> (B, H', W', O, |G|)``.

    ``out[p, o, h] = sum_{d, c} x[p + d, c] * kernel[h^-1 d, c, o] (+ bias[o])``, with
    ``kernel`` of shape ``(K, K, C, O)`` and ``bias`` of shape ``(O,)`` shared over the group.
    Equivariance: transforming ``x`` by ``g`` transforms the output by ``g`` in space and
    permutes its group axis by the regular representation (:meth:`Group.transform_regular`).
    ``impl``: as :func:`conv2d`.
    """
    group = as_group(group)
    w = expand_lifting_kernel(kernel, group)
    y = conv2d(x, w, stride=stride, padding=padding, precision=precision, impl=impl)
    y = y.reshape(y.shape[:-1] + (kernel.shape[-1], group.order))
    if bias is not None:
        y = y + bias[:, None]
    return y


def group_conv(x, kernel, group: Group, *, stride=1, padding="SAME", bias=None, precision=None,
               impl=None):
    """Group convolution ``(B, H, W, C, |G|) -> (B, H', W', O, |G|)``.

    ``out[p, o, h] = sum_{d, c, k} x[p + d, c, k] * kernel[h^-1 d, c, h^-1 k, o] (+ bias[o])``,
    with ``kernel`` of shape ``(K, K, C, |G|, O)``. Equivariant under the regular action.
    ``impl``: as :func:`conv2d`.
    """
    group = as_group(group)
    _check_rank(x, 5, "(batch, H, W, C, |G|)")
    if x.shape[-1] != group.order:
        raise ValueError(f"the input's group axis (last) has size {x.shape[-1]}, expected "
                         f"|{group.name}| = {group.order}")
    w = expand_group_kernel(kernel, group)
    b, h, wd = x.shape[:3]
    y = conv2d(x.reshape(b, h, wd, -1), w, stride=stride, padding=padding, precision=precision,
               impl=impl)
    y = y.reshape(y.shape[:-1] + (kernel.shape[-1], group.order))
    if bias is not None:
        y = y + bias[:, None]
    return y

