"""Argument checkers shared by equilib's layers and functions.

Each checker validates one user-facing argument and returns it normalised (``"same"`` ->
``"SAME"``, ``(3, 3)`` -> ``3``, ...), or raises a ``ValueError``/``TypeError`` that names the
argument, what was expected and what came. They never assert: user input is not an internal
invariant. The layers (:mod:`equilib.nn`, :mod:`equilib.linen`) and the functions
(:mod:`equilib.functional`) call the same checker, so the same mistake gives the same message
wherever it is made.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from equilib.groups import Group, PlanarLieGroup, as_group

__all__ = [
    "APS_CRITERIA",
    "BLUR_PADDINGS",
    "GLOBAL_POOL_MODES",
    "GROUP_POOL_MODES",
    "MAX_FILTER_SIZE",
    "PADDINGS",
    "check_aps_stride",
    "check_batch_norm_args",
    "check_blur_padding",
    "check_choice",
    "check_criterion",
    "check_filter_size",
    "check_finite_group",
    "check_global_mode",
    "check_group_kernel",
    "check_group_mode",
    "check_input",
    "check_kernel_size",
    "check_map",
    "check_ndim",
    "check_output_size",
    "check_positive_int",
    "check_rank",
    "check_scales",
    "check_window",
    "is_int",
    "normalize_padding",
    "normalize_stride",
    "tuple_or_none",
]

PADDINGS = ("SAME", "VALID", "CIRCULAR")
BLUR_PADDINGS = ("reflect", "circular", "zeros")
APS_CRITERIA = ("l2", "l1", "linf")
GLOBAL_POOL_MODES = ("mean", "max")
# the reductions of the group axis, for group_pool / GroupPool and global_pool(group_mode=...)
GROUP_POOL_MODES = ("max", "mean", "norm")
MAX_FILTER_SIZE = 7


# --- numbers and sizes ------------------------------------------------------------------------
def is_int(v: Any) -> bool:
    """True for Python and numpy integers, False for bools (which are ints in Python)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1; ValueError naming ``name`` otherwise."""
    if not is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return int(value)


def tuple_or_none(value: Any, name: str) -> Any:
    """``None``, a number, or a sequence of numbers as a tuple of floats (hashable)."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        return tuple(float(v) for v in value)
    except TypeError:
        raise TypeError(f"`{name}` must be a number or a sequence of numbers, got {value!r}") from None


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """``value`` if it is one of ``choices``; ValueError naming ``name`` otherwise."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")
    return value


def check_batch_norm_args(momentum: float, epsilon: float) -> tuple[float, float]:
    """``(momentum, epsilon)`` as floats: momentum in [0, 1], epsilon > 0."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"`momentum` must be in [0, 1], got {momentum!r}")
    if not epsilon > 0:
        raise ValueError(f"`epsilon` must be > 0, got {epsilon!r}")
    return float(momentum), float(epsilon)


def check_scales(scales: Any) -> tuple[float, ...]:
    """Validate ``scales``: a non-empty sequence of strictly increasing positive numbers.

    Returns them as a tuple of floats (hashable, for caching)."""
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__len__"):
        raise TypeError(f"`scales` must be a sequence of positive numbers such as (1.0, 2**0.5, 2.0), "
                        f"got {type(scales).__name__} ({scales!r})")
    values = tuple(scales)
    if len(values) == 0:
        raise ValueError("`scales` must contain at least one scale, got ()")
    for s in values:
        if isinstance(s, bool) or not isinstance(s, numbers.Real):
            raise TypeError(f"`scales` must contain real numbers, got {s!r} in {values!r}")
    values = tuple(float(s) for s in values)
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"`scales` must be finite and > 0, got {values!r}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"`scales` must be strictly increasing, got {values!r}")
    return values


# --- convolution windows ------------------------------------------------------------------------
def normalize_padding(padding: Any) -> str:
    """``padding`` in upper case, one of :data:`PADDINGS`."""
    if not isinstance(padding, str) or padding.upper() not in PADDINGS:
        raise ValueError(f"`padding` must be one of {PADDINGS}, got {padding!r}")
    return padding.upper()


def normalize_stride(stride: Any) -> int:
    """An int >= 1, or a pair of equal ints (square strides keep rot90 equivariance)."""
    if isinstance(stride, (tuple, list)):
        if len(stride) != 2 or stride[0] != stride[1]:
            raise ValueError(f"`stride` must be an int or a pair of equal ints, got {stride!r}")
        stride = stride[0]
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"`stride` must be an integer >= 1, got {stride!r}")
    return stride


def check_kernel_size(kernel_size: Any, *, square: bool) -> int | tuple[int, ...]:
    """An int (square kernel), a pair ``(K_h, K_w)`` of different ints (unless ``square``), or a
    triple ``(K_d, K_h, K_w)`` (a 3D plain kernel: kept as a triple, which is what makes the layer 3D;
    for the group layers, whose group sets the dimension, a triple of equal ints is the int)."""
    if isinstance(kernel_size, (tuple, list)):
        if len(kernel_size) not in (2, 3):
            raise ValueError(f"`kernel_size` must be an int, a pair or a triple of ints, got {kernel_size!r}")
        ks = tuple(check_positive_int("kernel_size", k) for k in kernel_size)
        if len(set(ks)) == 1 and (square or len(ks) == 2):
            return ks[0]
        if square:
            raise ValueError(f"`kernel_size` must be square (cubic) for group convolutions (a rotated "
                             f"kernel must fit the same window), got {tuple(kernel_size)}")
        return ks
    return check_positive_int("kernel_size", kernel_size)


def check_group_kernel(kernel_size: int, padding: str, layer: str) -> None:
    """An even kernel with padding other than "VALID" shifts the grid by half a pixel."""
    if kernel_size % 2 == 0 and padding != "VALID":
        raise ValueError(
            f"{layer}: `kernel_size` (={kernel_size}) is even, which with padding={padding!r} "
            f"shifts the output grid by half a pixel and breaks exact rot90/flip equivariance; "
            f"expected an odd kernel_size, or padding='VALID' (which stays exact)")


def check_output_size(spatial: Sequence[int], kernel_size: int | Sequence[int], padding: str,
                      where: str) -> None:
    """``padding="VALID"`` on an input smaller than the kernel would give an empty map: raise."""
    if padding != "VALID":
        return
    sizes = tuple(int(n) for n in spatial)
    ks = (kernel_size,) * len(sizes) if isinstance(kernel_size, int) else tuple(kernel_size)
    if any(n < k for n, k in zip(sizes, ks)):
        names = ("H", "W") if len(sizes) == 2 else ("D", "H", "W")
        what = "pixels" if len(sizes) == 2 else "voxels"
        got = ", ".join(f"{a}={n}" for a, n in zip(names, sizes))
        raise ValueError(
            f"{where}: padding='VALID' with kernel_size={ks[0] if len(set(ks)) == 1 else ks} needs an input "
            f"of at least {'x'.join(map(str, ks))} {what}, got {got} (the output would be empty); expected "
            f"a larger input, a smaller kernel_size, or padding='SAME'")


# --- inputs -----------------------------------------------------------------------------------
def check_rank(x: Any, ndim: int, what: str, name: str = "x") -> None:
    """``x.ndim == ndim``; ``what`` describes the axes, e.g. ``"(batch, H, W, C)"``."""
    if x.ndim != ndim:
        raise ValueError(f"`{name}` must have rank {ndim} {what}, got shape {tuple(x.shape)}")


def check_ndim(x: Any, rank: int, what: str, layer: str) -> None:
    """``x.ndim == rank``, else ``"{layer} expects {what}, got shape ..."``."""
    if x.ndim != rank:
        raise ValueError(f"{layer} expects {what}, got shape {tuple(x.shape)}")


def check_input(x: Any, rank: int, layout: str, channels: int, layer: str, *,
                group: Group | None = None, n_scales: int | None = None,
                channels_name: str = "in_channels") -> None:
    """The input of a layer: its rank, its channel axis (``-2`` when a group or scale axis
    follows, else ``-1``) against the layer's ``channels_name`` argument, and the size of the
    group axis (``group``) or scale axis (``n_scales``), which is last."""
    check_ndim(x, rank, f"an input of rank {rank} {layout}", layer)
    caxis = -2 if group is not None or n_scales is not None else -1
    if x.shape[caxis] != channels:
        raise ValueError(f"`{channels_name}` (={channels}) does not match the input's channel axis "
                         f"(={x.shape[caxis]}, shape {tuple(x.shape)})")
    if group is not None and x.shape[-1] != group.order:
        raise ValueError(f"`group` ({group.name}, order {group.order}) does not match the input's "
                         f"group axis (last, ={x.shape[-1]}, shape {tuple(x.shape)})")
    if n_scales is not None and x.shape[-1] != n_scales:
        raise ValueError(f"`scales` has {n_scales} scales, but the input's scale axis (last) has size "
                         f"{x.shape[-1]} (shape {tuple(x.shape)})")


def check_finite_group(group: Any, layer: str) -> Group:
    """``group`` as a finite :class:`Group`; a continuous group gets a pointer to the steerable
    layers, which are the ones that support it."""
    if isinstance(group, PlanarLieGroup):
        raise TypeError(
            f"{layer} needs a finite group (Trivial(), Cyclic(n), Dihedral(n)): its feature maps have "
            f"one channel per group element; got the continuous group {group.name}. For {group.name} "
            f"use equilib.nn.SteerableConv with equilib.fields.FieldType field types")
    return as_group(group)


# --- pooling ------------------------------------------------------------------------------------
def check_map(x: Any, where: str, *, spatial_dims: int = 2) -> Any:
    """``x`` as an array of rank ``spatial_dims + 2`` (plain) or ``+ 3`` (regular); ValueError otherwise."""
    if not hasattr(x, "ndim"):
        x = jnp.asarray(x)
    if x.ndim not in (spatial_dims + 2, spatial_dims + 3):
        if spatial_dims == 2:
            raise ValueError(f"{where} expects a plain map (batch, H, W, C) or a regular map "
                             f"(batch, H, W, C, |G|), i.e. rank 4 or 5, got shape {tuple(x.shape)}")
        raise ValueError(f"{where} with spatial_dims=3 expects a plain volume (batch, D, H, W, C) or a regular "
                         f"volume (batch, D, H, W, C, |G|), i.e. rank 5 or 6, got shape {tuple(x.shape)}")
    return x


def check_spatial_dims(spatial_dims: Any) -> int:
    """2 (images) or 3 (volumes)."""
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise ValueError(f"`spatial_dims` must be 2 (maps (B, H, W, ...)) or 3 (volumes (B, D, H, W, ...)), "
                         f"got {spatial_dims!r}")
    return int(spatial_dims)


def check_window(window: Any) -> int:
    """A square window: an int >= 1 or a pair of equal ints."""
    if isinstance(window, (tuple, list)):
        if len(window) != 2 or window[0] != window[1]:
            raise ValueError(f"`window` must be an int or a pair of equal ints (square windows keep "
                             f"rot90 equivariance), got {window!r}")
        window = window[0]
    if not is_int(window) or window < 1:
        raise ValueError(f"`window` must be an integer >= 1, got {window!r}")
    return int(window)


def check_filter_size(filter_size: Any) -> int:
    """The size of a binomial blur filter, 1..:data:`MAX_FILTER_SIZE`."""
    if not is_int(filter_size):
        raise TypeError(f"`filter_size` must be an int in 1..{MAX_FILTER_SIZE}, got "
                        f"{type(filter_size).__name__} ({filter_size!r})")
    if not 1 <= filter_size <= MAX_FILTER_SIZE:
        raise ValueError(f"`filter_size` must be in 1..{MAX_FILTER_SIZE}, got {filter_size}")
    return int(filter_size)


def check_blur_padding(padding: Any) -> str:
    """The padding of a blur, one of :data:`BLUR_PADDINGS` (lower case)."""
    if not isinstance(padding, str) or padding.lower() not in BLUR_PADDINGS:
        raise ValueError(f"`padding` must be one of {BLUR_PADDINGS}, got {padding!r}")
    return padding.lower()


def check_criterion(criterion: Any) -> str:
    """The APS selection criterion, one of :data:`APS_CRITERIA`."""
    if criterion not in APS_CRITERIA:
        raise ValueError(f"`criterion` must be one of {APS_CRITERIA}, got {criterion!r}")
    return criterion


def check_aps_stride(stride: Any) -> int:
    """APS keeps one of the 4 polyphase components of a stride-2 grid: only stride 2."""
    if not is_int(stride) or stride != 2:
        raise ValueError(f"`stride` must be 2 for APS (adaptive polyphase sampling keeps one of the "
                         f"4 polyphase components of a stride-2 grid; stack two layers for "
                         f"stride 4), got {stride!r}")
    return 2


def check_global_mode(mode: Any) -> str:
    """The spatial reduction of a global pooling, one of :data:`GLOBAL_POOL_MODES`."""
    if mode not in GLOBAL_POOL_MODES:
        raise ValueError(f"`mode` must be one of {GLOBAL_POOL_MODES}, got {mode!r}")
    return mode


def check_group_mode(group_mode: Any) -> str | None:
    """None, or the reduction of the group axis, one of :data:`GROUP_POOL_MODES`."""
    if group_mode is not None and group_mode not in GROUP_POOL_MODES:
        raise ValueError(f"`group_mode` must be None or one of {GROUP_POOL_MODES}, got {group_mode!r}")
    return group_mode
