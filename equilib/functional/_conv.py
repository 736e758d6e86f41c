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
  On XLA:CPU the dot (and its transposes in the backward pass) is multi-threaded, while the
  CPU convolution (forward, and the input/kernel gradients) mostly runs on one thread; see
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

from equilib._src.checks import PADDINGS, check_output_size, check_rank, normalize_padding, normalize_stride
from equilib._src.conv_grad import conv as xla_conv
from equilib._src.sums import add_channel_bias
from equilib._src.typing import Array
from equilib.functional._kernels import expand_group_kernel, expand_lifting_kernel
from equilib.groups import Group, as_group

__all__ = ["conv2d", "conv3d", "lifting_conv", "group_conv", "PADDINGS", "padding_pads",
           "is_symmetric_sampling", "CONV_IMPLS", "choose_impl"]

CONV_IMPLS = ("auto", "xla", "im2col")
IMPL_ENV = "EQUILIB_CONV_IMPL"


def padding_pads(size: int, kernel_size: int, stride: int, padding: str) -> tuple[int, int]:
    """The ``(lo, hi)`` pads of one spatial axis of length ``size`` under ``padding``.

    ``"SAME"`` and ``"CIRCULAR"`` pad so that the axis has ``ceil(size / stride)`` outputs, split
    as XLA does (the extra pixel, if any, at the end); ``"VALID"`` does not pad. Every convolution
    and pooling of :mod:`equilib.functional` pads this way.

    Args:
        size: the length of the axis (``H`` or ``W``).
        kernel_size: the kernel (or window) length along the axis.
        stride: the stride along the axis.
        padding: "SAME", "VALID" or "CIRCULAR", case-insensitive.

    Returns:
        ``(lo, hi)``: the pixels added before and after the axis (zeros for "SAME", periodic
        copies for "CIRCULAR"), two Python ints.

    Raises:
        ValueError: ``padding`` is not one of :data:`PADDINGS`.

    Example:
        >>> from equilib import functional as F
        >>> F.padding_pads(5, 3, 1, "SAME"), F.padding_pads(4, 3, 2, "same"), F.padding_pads(5, 3, 1, "VALID")
        ((1, 1), (0, 1), (0, 0))
    """
    padding = normalize_padding(padding)
    if padding == "VALID":
        return (0, 0)
    ((lo, hi),) = lax.padtype_to_pads((size,), (kernel_size,), (stride,), "SAME")
    return (int(lo), int(hi))


def output_size(size: int, kernel_size: int, stride: int, padding: str) -> int:
    lo, hi = padding_pads(size, kernel_size, stride, padding)
    return (size + lo + hi - kernel_size) // stride + 1


def is_symmetric_sampling(size: int, kernel_size: int, stride: int, padding: str) -> bool:
    """Whether the output samples along an axis sit symmetrically about the input's centre.

    Exact rot90/flip equivariance of a strided or padded layer needs it: rotating the input
    about its centre must map the sampled positions onto themselves. False, e.g., for an even
    size with stride 2 and an odd kernel, or an even kernel with "SAME" padding; True for any
    size with "VALID" and stride 1. :func:`equilib.check_exact` applies it to a whole layer.

    Args:
        size: the input length along the axis (``H`` or ``W``).
        kernel_size: the kernel (or window) length along the axis.
        stride: the stride along the axis.
        padding: "SAME", "VALID" or "CIRCULAR", case-insensitive.

    Returns:
        True if the first and last output samples are mirror images about the centre (also
        for an empty output).

    Raises:
        ValueError: ``padding`` is not one of :data:`PADDINGS`.

    Example:
        >>> from equilib import functional as F
        >>> F.is_symmetric_sampling(28, 3, 1, "SAME"), F.is_symmetric_sampling(28, 3, 2, "SAME")
        (True, False)
        >>> F.is_symmetric_sampling(27, 3, 2, "SAME")
        True
    """
    lo, _ = padding_pads(size, kernel_size, stride, padding)
    n_out = output_size(size, kernel_size, stride, padding)
    if n_out < 1:
        return True
    # centre of output i in input coordinates: i*stride - lo + (K-1)/2; symmetric iff
    # first + last == size - 1.  Doubled to stay in integers.
    return 2 * (-lo) + (kernel_size - 1) + (n_out - 1) * stride == size - 1


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
    own convolution is the fastest CPU path measured (``benchmarks/RESULTS.md``, section 5)."""
    flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    for flag in flags.split():
        if flag.startswith("--xla_cpu_experimental_ynn_fusion_type="):
            kinds = flag.split("=", 1)[1]
            return "convolution" not in kinds and kinds not in ("default",)
    return False


def choose_impl(x_shape, kernel_shape, stride: int = 1, backend: str | None = None) -> str:
    """The implementation ``impl="auto"`` picks for a convolution: ``"im2col"`` or ``"xla"``.

    Rule (thresholds chosen from ``benchmarks/conv_paths.py``, whose measurements are in
    ``benchmarks/RESULTS.md``): on the CPU backend, im2col when the contraction
    ``K_h*K_w*C`` is at most 2304 and the window matrix ``B*H'*W'*K_h*K_w*C`` at most 2^26
    elements (256 MB in fp32), so the copy stays cheap next to the matmul; ``"xla"`` on other
    backends (cuDNN and the TPU convolution are already fast), for 1x1 kernels on CPU
    (identical work either way), and on CPU whenever ``XLA_FLAGS`` turns off the YNNPACK
    fusions (``--xla_cpu_experimental_ynn_fusion_type=``; the experiments do so), which makes
    XLA's own convolution faster than im2col.

    Args:
        x_shape: the input's shape ``(B, H, W, C)`` (only ``B, H, W`` are read).
        kernel_shape: the HWIO kernel's shape ``(K_h, K_w, C, O)``.
        stride: the spatial stride (an int).
        backend: "cpu", "gpu", "tpu", ...; None: ``jax.default_backend()``.

    Returns:
        ``"im2col"`` or ``"xla"``, a valid ``impl=`` of :func:`conv2d`.

    Example:
        >>> from equilib import functional as F
        >>> F.choose_impl((8, 28, 28, 16), (3, 3, 16, 32), backend="gpu")
        'xla'
        >>> F.choose_impl((8, 28, 28, 16), (1, 1, 16, 32), backend="cpu")  # 1x1: the same work
        'xla'
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


def conv2d(x: Array, kernel: Array, *, stride=1, padding="SAME", bias: Array | None = None,
           precision=None, preferred_element_type=None, impl=None) -> Array:
    """Plain 2D cross-correlation, ``(B, H, W, C) x (K_h, K_w, C, O) -> (B, H', W', O)``.

    ``out[p, o] = sum_{d, c} x[s*p + d, c] * kernel[d, c, o] (+ bias[o])`` over the padded
    input. Translation-equivariant: with ``padding="CIRCULAR"`` and ``stride=1``,
    ``conv2d(roll(x)) == roll(conv2d(x))`` exactly. ``H' = ceil(H / stride)`` for "SAME" and
    "CIRCULAR", ``floor((H - K_h) / stride) + 1`` for "VALID" (likewise ``W'``).

    Args:
        x: the input ``(B, H, W, C)``.
        kernel: the HWIO kernel ``(K_h, K_w, C, O)``, of ``x``'s dtype.
        stride: an int, or a pair of equal ints.
        padding: "SAME" (zeros), "VALID" (none) or "CIRCULAR" (periodic), case-insensitive;
            pads as :func:`padding_pads`.
        bias: ``(O,)``, added to every pixel, or None.
        precision: passed to the convolution / matmul (``jax.lax.Precision``).
        preferred_element_type: the accumulation and output dtype (as in ``jax.lax``), or None.
        impl: ``"auto"`` (see :func:`choose_impl`), ``"xla"`` (``lax.conv_general_dilated``)
            or ``"im2col"`` (windows x kernel as one matmul: equal to ``"xla"`` to fp32
            rounding); None reads the environment variable ``EQUILIB_CONV_IMPL`` (default
            ``"auto"``).

    Returns:
        ``(B, H', W', O)``, in ``x``'s dtype (or ``preferred_element_type``).

    Raises:
        ValueError: ``x`` or ``kernel`` not of rank 4, their channel counts differ, a bad
            ``stride``, ``padding`` or ``impl``, or ``padding="VALID"`` on an input smaller
            than the kernel.
        TypeError: ``x`` and ``kernel`` have different dtypes (the layers of :mod:`equilib.nn`
            promote them, as Flax does).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from equilib import functional as F
        >>> rng = np.random.default_rng(0)  # numpy draws: no PRNG program to compile per shape
        >>> x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
        >>> kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 5)), jnp.float32)
        >>> y = F.conv2d(x, kernel, padding="CIRCULAR")
        >>> y.shape, F.conv2d(x, kernel, stride=2, padding="VALID").shape
        ((2, 8, 8, 5), (2, 3, 3, 5))
        >>> shifted = F.conv2d(jnp.roll(x, 2, axis=1), kernel, padding="CIRCULAR")
        >>> bool(jnp.allclose(shifted, jnp.roll(y, 2, axis=1), atol=1e-5))
        True
    """
    check_rank(x, 4, "(batch, H, W, C)")
    if kernel.ndim != 4:
        raise ValueError(f"`kernel` must have rank 4 (K_h, K_w, C_in, C_out), got shape {tuple(kernel.shape)}")
    if kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"the kernel's input channels (={kernel.shape[2]}) do not match the "
                         f"input's channel axis (={x.shape[-1]})")
    stride = normalize_stride(stride)
    padding = normalize_padding(padding)
    impl = normalize_impl(impl)
    kh, kw = kernel.shape[:2]
    check_output_size(x.shape[1:3], (kh, kw), padding, "conv2d")
    if x.dtype != kernel.dtype:  # as lax.conv_general_dilated, which needs equal dtypes
        raise TypeError(f"conv2d needs `x` and `kernel` of the same dtype, got {x.dtype} and {kernel.dtype}; "
                        f"cast one of them (the layers of equilib.nn promote both, as Flax does)")
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
        y = _im2col(x, kernel, stride, precision, preferred_element_type)
    else:
        y = xla_conv(x, kernel, (stride, stride), lax_padding, ("NHWC", "HWIO", "NHWC"), precision,
                     preferred_element_type)
    if bias is not None:
        y = add_channel_bias(y, bias)
    return y


def conv3d(x: Array, kernel: Array, *, stride=1, padding="SAME", bias: Array | None = None,
           precision=None, preferred_element_type=None) -> Array:
    """Plain 3D cross-correlation, ``(B, D, H, W, C) x (K_d, K_h, K_w, C, O) -> (B, D', H', W', O)``.

    As :func:`conv2d` with a depth axis: the same padding modes and output sizes on each of the
    three axes, ``lax.conv_general_dilated`` as the implementation (no ``impl=``).

    Args:
        x: the input volume ``(B, D, H, W, C)``.
        kernel: the DHWIO kernel ``(K_d, K_h, K_w, C, O)``, of ``x``'s dtype.
        stride: an int, or a tuple of equal ints.
        padding: "SAME", "VALID" or "CIRCULAR", case-insensitive (as :func:`conv2d`).
        bias: ``(O,)``, added to every voxel, or None.
        precision: passed to the convolution (``jax.lax.Precision``).
        preferred_element_type: the accumulation and output dtype (as in ``jax.lax``), or None.

    Returns:
        ``(B, D', H', W', O)``, in ``x``'s dtype (or ``preferred_element_type``).

    Raises:
        ValueError: ``x`` or ``kernel`` not of rank 5, their channel counts differ, a bad
            ``stride`` or ``padding``, or ``padding="VALID"`` on an input smaller than the kernel.
        TypeError: ``x`` and ``kernel`` have different dtypes.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from equilib import functional as F
        >>> rng = np.random.default_rng(0)  # numpy draws: no PRNG program to compile per shape
        >>> x = jnp.asarray(rng.normal(size=(2, 6, 6, 6, 3)), jnp.float32)
        >>> kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 3, 4)), jnp.float32)
        >>> F.conv3d(x, kernel).shape, F.conv3d(x, kernel, stride=2, padding="VALID").shape
        ((2, 6, 6, 6, 4), (2, 2, 2, 2, 4))
    """
    check_rank(x, 5, "(batch, D, H, W, C)")
    if kernel.ndim != 5:
        raise ValueError(f"`kernel` must have rank 5 (K_d, K_h, K_w, C_in, C_out), got shape {tuple(kernel.shape)}")
    if kernel.shape[3] != x.shape[-1]:
        raise ValueError(f"the kernel's input channels (={kernel.shape[3]}) do not match the "
                         f"input's channel axis (={x.shape[-1]})")
    stride = normalize_stride(stride)
    padding = normalize_padding(padding)
    ks = kernel.shape[:3]
    check_output_size(x.shape[1:4], ks, padding, "conv3d")
    if x.dtype != kernel.dtype:
        raise TypeError(f"conv3d needs `x` and `kernel` of the same dtype, got {x.dtype} and {kernel.dtype}; "
                        f"cast one of them (the layers of equilib.nn promote both, as Flax does)")
    lax_padding = padding
    if padding == "CIRCULAR":
        pads = [padding_pads(n, k, stride, padding) for n, k in zip(x.shape[1:4], ks)]
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode="wrap")
        lax_padding = "VALID"
    y = xla_conv(x, kernel, (stride,) * 3, lax_padding, ("NDHWC", "DHWIO", "NDHWC"), precision,
                 preferred_element_type)
    if bias is not None:
        y = add_channel_bias(y, bias)
    return y


def _conv(x, kernel, spatial_dims: int, *, stride, padding, precision, impl):
    """:func:`conv2d` or :func:`conv3d` by the number of spatial axes (the group's)."""
    if spatial_dims == 3:
        normalize_impl(impl)  # validated, unused: one implementation in 3D
        return conv3d(x, kernel, stride=stride, padding=padding, precision=precision)
    return conv2d(x, kernel, stride=stride, padding=padding, precision=precision, impl=impl)


def lifting_conv(x: Array, kernel: Array, group: Group, *, stride=1, padding="SAME",
                 bias: Array | None = None, precision=None, impl=None) -> Array:
    """Lifting convolution ``(B, H, W, C) -> (B, H', W', O, |G|)`` (Cohen & Welling 2016); for a group
    of the voxel grid (``Octahedral()``, ``FullOctahedral()``) ``(B, D, H, W, C) -> (B, D', H', W', O, |G|)``
    with a kernel ``(K, K, K, C, O)`` and :func:`conv3d`.

    ``out[p, o, h] = sum_{d, c} x[p + d, c] * kernel[h^-1 d, c, o] (+ bias[o])``: one copy of
    each filter per group element, transformed by it (:func:`expand_lifting_kernel`), as one
    :func:`conv2d`. Equivariance: transforming ``x`` by ``g``
    (:meth:`Group.transform_image`) transforms the output by ``g`` in space and permutes its
    group axis by the regular representation (:meth:`Group.transform_regular`); exact for the
    rot90/flip groups when the sampling is symmetric (:func:`is_symmetric_sampling`).

    Args:
        x: the input ``(B, H, W, C)``.
        kernel: the lifting kernel ``(K, K, C, O)`` (square), of ``x``'s dtype.
        group: a finite group (:class:`equilib.groups.Cyclic`, :class:`equilib.groups.Dihedral`, ...).
        stride: as :func:`conv2d`.
        padding: as :func:`conv2d`.
        bias: ``(O,)``, shared over the group axis, or None.
        precision: as :func:`conv2d`.
        impl: as :func:`conv2d`.

    Returns:
        The regular map ``(B, H', W', O, |G|)`` (``H'``, ``W'`` as :func:`conv2d`).

    Raises:
        TypeError: ``group`` is not a finite :class:`equilib.groups.Group`; ``x`` and ``kernel``
            of different dtypes.
        ValueError: a kernel that is not ``(K, K, C, O)``, and the errors of :func:`conv2d`.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from equilib import functional as F
        >>> from equilib.groups import Cyclic
        >>> C4 = Cyclic(4)
        >>> rng = np.random.default_rng(0)  # numpy draws: no PRNG program to compile per shape
        >>> x = jnp.asarray(rng.normal(size=(2, 9, 9, 3)), jnp.float32)
        >>> kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 5)), jnp.float32)
        >>> y = F.lifting_conv(x, kernel, C4)
        >>> y.shape
        (2, 9, 9, 5, 4)
        >>> y_rot = F.lifting_conv(C4.transform_image(x, 1), kernel, C4)  # x rotated by 90 degrees
        >>> bool(jnp.allclose(y_rot, C4.transform_regular(y, 1), atol=1e-5))
        True
    """
    group = as_group(group)
    d = group.spatial_dims
    check_rank(x, d + 2, "(batch, H, W, C)" if d == 2 else f"(batch, D, H, W, C) for {group.name}")
    w = expand_lifting_kernel(kernel, group)
    y = _conv(x, w, d, stride=stride, padding=padding, precision=precision, impl=impl)
    y = y.reshape(y.shape[:-1] + (kernel.shape[-1], group.order))
    if bias is not None:
        y = add_channel_bias(y, bias, shared=1)  # shared over the group axis
    return y


def group_conv(x: Array, kernel: Array, group: Group, *, stride=1, padding="SAME",
               bias: Array | None = None, precision=None, impl=None) -> Array:
    """Group convolution ``(B, H, W, C, |G|) -> (B, H', W', O, |G|)`` (Cohen & Welling 2016); for a
    group of the voxel grid ``(B, D, H, W, C, |G|) -> (B, D', H', W', O, |G|)`` with a kernel
    ``(K, K, K, C, |G|, O)`` and :func:`conv3d`.

    ``out[p, o, h] = sum_{d, c, k} x[p + d, c, k] * kernel[h^-1 d, c, h^-1 k, o] (+ bias[o])``,
    computed as one :func:`conv2d` with the kernel of :func:`expand_group_kernel`. Equivariant
    under the regular action: ``group_conv(g.x) == g.group_conv(x)`` with ``g.`` the
    :meth:`Group.transform_regular` of both maps (exact for the rot90/flip groups when the
    sampling is symmetric, :func:`is_symmetric_sampling`).

    Args:
        x: the regular map ``(B, H, W, C, |G|)``.
        kernel: the group kernel ``(K, K, C, |G|, O)`` (square), of ``x``'s dtype.
        group: the finite group of ``x``'s last axis.
        stride, padding, bias, precision, impl: as :func:`lifting_conv`.

    Returns:
        The regular map ``(B, H', W', O, |G|)``, as :func:`lifting_conv`'s.

    Raises:
        TypeError: as :func:`lifting_conv`.
        ValueError: ``x`` not of rank 5 or its last axis not of size ``|G|``, a kernel that is
            not ``(K, K, C, |G|, O)``, and the errors of :func:`conv2d`.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from equilib import functional as F
        >>> from equilib.groups import Cyclic
        >>> C4 = Cyclic(4)
        >>> rng = np.random.default_rng(0)  # numpy draws: no PRNG program to compile per shape
        >>> x = jnp.asarray(rng.normal(size=(2, 9, 9, 3, 4)), jnp.float32)
        >>> kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4, 6)), jnp.float32)
        >>> y = F.group_conv(x, kernel, C4)
        >>> y.shape
        (2, 9, 9, 6, 4)
        >>> y_rot = F.group_conv(C4.transform_regular(x, 1), kernel, C4)
        >>> bool(jnp.allclose(y_rot, C4.transform_regular(y, 1), atol=1e-4))
        True
    """
    group = as_group(group)
    d = group.spatial_dims
    check_rank(x, d + 3, "(batch, H, W, C, |G|)" if d == 2 else f"(batch, D, H, W, C, |G|) for {group.name}")
    if x.shape[-1] != group.order:
        raise ValueError(f"the input's group axis (last) has size {x.shape[-1]}, expected "
                         f"|{group.name}| = {group.order}")
    w = expand_group_kernel(kernel, group)
    y = _conv(x.reshape(x.shape[:-2] + (-1,)), w, d, stride=stride, padding=padding, precision=precision,
              impl=impl)
    y = y.reshape(y.shape[:-1] + (kernel.shape[-1], group.order))
    if bias is not None:
        y = add_channel_bias(y, bias, shared=1)  # shared over the group axis
    return y

