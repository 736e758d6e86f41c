"""On-device data augmentation: random transforms keyed by a JAX PRNG key, ``jit``- and ``vmap``-able.

A transform is a frozen dataclass called as ``t(key, x)`` on ONE example: ``x`` is ``(..., H, W, C)``
(channels-last; the spatial axes are ``axes=(-3, -2)`` by default, so ``axes=(-2, -1)`` for a plain
``(H, W)`` image), every leading axis gets the same random draw. :func:`apply_batch` draws
independently per example of a batch ``(B, H, W, C)`` (``vmap`` over ``jax.random.split``)::

    aug = Compose(RandomRotation(), RandomTranslation(2, mode="zeros"))
    xb = jax.jit(apply_batch, static_argnums=0)(aug, key, xb)     # (B, 28, 28, 1) float32

Conventions are those of :mod:`equilib.groups`: rotations counter-clockwise as displayed about the
array centre, the horizontal mirror flips the width axis. Exact transforms (multiples of 90
degrees, flips, circular shifts) keep the dtype; interpolating ones (continuous rotation, scale)
return floating arrays (``uint8`` in -> ``float32`` out) with zero fill: convert images to float
first so that a :class:`Compose` has one dtype throughout.

Transforms are hashable, so they can be ``static_argnums`` of ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from equilib._src.imaging import normalize_axes
from equilib._src.typing import Array, ArrayLike, PRNGKey
from equilib.functional import rescale, rotate
from equilib.groups import Cyclic, Group
from equilib.groups3d import VOLUME_AXES, OctahedralGroup

__all__ = [
    "Transform",
    "RandomRotation",
    "RandomRot90",
    "RandomGroupElement",
    "RandomScale",
    "RandomFlip",
    "RandomTranslation",
    "Compose",
    "apply_batch",
    "Normalize",
    "normalized_augment",
]


def _check_axes(axes) -> tuple[int, int]:
    if (not isinstance(axes, (tuple, list)) or len(axes) != 2
            or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes)):
        raise TypeError(f"`axes` must be a pair of ints (H axis, W axis), got {axes!r}")
    if axes[0] == axes[1]:
        raise ValueError(f"`axes` must name two different axes, got {tuple(axes)}")
    return (int(axes[0]), int(axes[1]))


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"`{name}` must be a finite real number, got {value!r}")
    return float(value)


def _spatial(x, axes):
    return normalize_axes(jnp.ndim(x), axes)


class Transform:
    """Base class: ``t(key, x) -> x'`` on one example (see the module docstring).

    Takes no arguments. A subclass is a frozen dataclass (hashable, so it can be a static
    argument of ``jax.jit``) that implements ``__call__(key, x)`` with ``jax`` operations only
    (it runs under ``jit`` and ``vmap``). Calling the base class raises ``NotImplementedError``.

    Example:
        >>> import dataclasses
        >>> import jax, jax.numpy as jnp
        >>> from equilib.transforms import Transform, apply_batch
        >>> @dataclasses.dataclass(frozen=True)
        ... class RandomBrightness(Transform):
        ...     max_delta: float = 0.1
        ...
        ...     def __call__(self, key, x):
        ...         return x + jax.random.uniform(key, (), minval=-self.max_delta, maxval=self.max_delta)
        >>> apply_batch(RandomBrightness(), jax.random.key(0), jnp.zeros((4, 8, 8, 1))).shape
        (4, 8, 8, 1)
    """

    def __call__(self, key: PRNGKey, x: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class RandomRotation(Transform):
    """Rotate by an angle ~ U[``min_angle``, ``max_angle``) radians (default the full circle),
    bilinear interpolation on the same canvas with zero fill (:func:`equilib.functional.rotate`).

    Output: same shape, floating dtype. Bilinear interpolation blurs: rotating by ``t`` and back
    by ``-t`` (t ~ U[0, 2pi)) has a relative L2 round-trip error of about 0.1 on band-limited
    images (:func:`equilib.testing.smooth_random`; asserted in the tests) and about 0.2 on MNIST
    digits; the measurements are in ``benchmarks/RESULTS.md``, section "Equivariance error".
    Angles that are multiples of 90 degrees are exact up to float rounding; use
    :class:`RandomRot90` for exact quarter turns.

    Args:
        min_angle: the smallest angle, radians (a finite real number).
        max_angle: the largest angle, radians, ``>= min_angle`` (drawn from the half-open range).
        axes: the spatial axes ``(H, W)`` of ``x``; default ``(-3, -2)`` for ``(..., H, W, C)``.

    Raises:
        TypeError: an angle is not a finite real number, or ``axes`` not a pair of ints.
        ValueError: ``min_angle > max_angle``, or ``axes`` names one axis twice.

    Example:
        >>> import math
        >>> import jax, numpy as np
        >>> from equilib.transforms import RandomRotation
        >>> x = np.arange(9, dtype=np.uint8).reshape(3, 3, 1)  # (H, W, C)
        >>> RandomRotation()(jax.random.key(0), x).dtype  # interpolated: floating
        dtype('float32')
        >>> quarter = RandomRotation(math.pi / 2, math.pi / 2)  # always 90 degrees
        >>> quarter(jax.random.key(0), x)[..., 0].round(4)
        Array([[2., 5., 8.],
               [1., 4., 7.],
               [0., 3., 6.]], dtype=float32)
    """

    min_angle: float = 0.0
    max_angle: float = 2.0 * math.pi
    axes: tuple[int, int] = (-3, -2)

    def __post_init__(self):
        lo, hi = _check_real("min_angle", self.min_angle), _check_real("max_angle", self.max_angle)
        if not lo <= hi:
            raise ValueError(f"`min_angle` must be <= `max_angle`, got {lo} > {hi}")
        object.__setattr__(self, "min_angle", lo)
        object.__setattr__(self, "max_angle", hi)
        object.__setattr__(self, "axes", _check_axes(self.axes))

    def __call__(self, key: PRNGKey, x: Array) -> Array:
        angle = jax.random.uniform(key, (), minval=self.min_angle, maxval=self.max_angle)
        return rotate(x, angle, axes=self.axes)


@dataclasses.dataclass(frozen=True)
class RandomGroupElement(Transform):
    """Apply an element of ``group`` drawn uniformly, by :meth:`Group.transform_image`.

    For C4, D4 and their subgroups (``group.is_exact``) every element is an exact ``rot90`` /
    flip, so the dtype is kept and the result is bit-exact; other groups (e.g. C8) interpolate
    bilinearly for their off-grid elements and return a floating dtype. Odd quarter turns swap H
    and W, so the image must be square unless the group only has half turns and mirrors.
    With ``Octahedral()`` / ``FullOctahedral()`` the input is a volume and every element is an
    exact permutation of its axes with flips (dtype kept; the volume must be a cube).
    Under ``vmap`` all ``|G|`` transforms are computed and one is selected per example.

    Args:
        group: a finite group (``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``, ``Octahedral()``,
            ``FullOctahedral()``).
        axes: the spatial axes of ``x``: ``(H, W)``, default ``(-3, -2)`` for ``(..., H, W, C)``;
            for the octahedral groups ``(D, H, W)``, default ``(-4, -3, -2)`` for ``(..., D, H, W, C)``.

    Raises:
        TypeError: ``group`` is not a finite group, or ``axes`` not a pair (a triple for the
            octahedral groups) of ints.
        ValueError: ``axes`` names one axis twice; on call, a non-square image with a group
            that has quarter turns, or a volume that is not a cube.

    Example:
        >>> import jax, numpy as np
        >>> from equilib import Dihedral
        >>> from equilib.transforms import RandomGroupElement
        >>> x = np.arange(9, dtype=np.uint8).reshape(3, 3, 1)  # (H, W, C)
        >>> y = RandomGroupElement(Dihedral(4))(jax.random.key(0), x)
        >>> y.shape, y.dtype, sorted(np.ravel(y).tolist()) == list(range(9))  # pixels permuted
        ((3, 3, 1), dtype('uint8'), True)
    """

    group: Group | OctahedralGroup
    axes: tuple[int, ...] | None = None  # None: (-3, -2), or (-4, -3, -2) for the octahedral groups

    def __post_init__(self):
        if isinstance(self.group, OctahedralGroup):
            axes = VOLUME_AXES if self.axes is None else self.axes
            if (not isinstance(axes, (tuple, list)) or len(axes) != 3
                    or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes)):
                raise TypeError(f"`axes` must be a triple of ints (D, H, W axes) for {self.group.name}, got {axes!r}")
            if len(set(axes)) != 3:
                raise ValueError(f"`axes` must name three different axes, got {tuple(axes)}")
            object.__setattr__(self, "axes", tuple(int(a) for a in axes))
            return
        if not isinstance(self.group, Group):
            raise TypeError(f"`group` must be an equilib.groups.Group or an octahedral group, got "
                            f"{type(self.group).__name__}")
        object.__setattr__(self, "axes", _check_axes((-3, -2) if self.axes is None else self.axes))

    def __call__(self, key: PRNGKey, x: Array) -> Array:
        x = jnp.asarray(x)
        axes: Any = self.axes  # set by __post_init__: never None here
        if isinstance(self.group, OctahedralGroup):
            return self._volume(key, x, axes, self.group)
        a, b = _spatial(x, axes)
        G = self.group
        odd_quarter = any(G.is_grid_preserving(g) and (4 * G.rotation(g) // G.n) % 2 for g in range(G.order))
        if x.shape[a] != x.shape[b] and odd_quarter:
            raise ValueError(f"{type(self).__name__} with {self.group.name} needs square images, got "
                             f"spatial shape {(x.shape[a], x.shape[b])} (axes {self.axes})")
        dtype = x.dtype if self.group.is_exact else jnp.result_type(x.dtype, jnp.float32)
        branches = [lambda x, g=g: jnp.asarray(G.transform_image(x, g, axes=axes), dtype) for g in range(G.order)]
        g = jax.random.randint(key, (), 0, self.group.order)
        return jax.lax.switch(g, branches, x)

    def _volume(self, key: PRNGKey, x: Array, axes: tuple[int, int, int], G: OctahedralGroup) -> Array:
        if any(not -x.ndim <= a < x.ndim for a in axes):
            raise ValueError(f"`axes` {axes} out of range for an array of rank {x.ndim}")
        sizes = [x.shape[a] for a in axes]
        if len(set(sizes)) != 1:
            raise ValueError(f"{type(self).__name__} with {G.name} needs cubic volumes, got spatial "
                             f"shape {tuple(sizes)} (axes {axes})")
        branches = [lambda x, g=g: jnp.asarray(G.transform_image(x, g, axes=axes)) for g in range(G.order)]
        return jax.lax.switch(jax.random.randint(key, (), 0, G.order), branches, x)


@dataclasses.dataclass(frozen=True)
class RandomRot90(RandomGroupElement):
    """Rotate by a multiple of 90 degrees drawn uniformly: exact ``rot90``, dtype kept (square
    images). ``RandomGroupElement(Cyclic(4))``; use ``RandomGroupElement(Dihedral(4))`` to add mirrors.

    Args:
        group: must be ``Cyclic(4)`` (the default; the field exists because of the base class).
        axes: the spatial axes ``(H, W)`` of ``x``; default ``(-3, -2)`` for ``(..., H, W, C)``.

    Raises:
        ValueError: ``group`` is not ``Cyclic(4)``; on call, a non-square image.
        TypeError: ``axes`` is not a pair of ints.

    Example:
        >>> import jax, numpy as np
        >>> from equilib.transforms import RandomRot90
        >>> x = np.arange(9, dtype=np.uint8).reshape(3, 3, 1)  # (H, W, C)
        >>> y = RandomRot90()(jax.random.key(0), x)
        >>> y.dtype, any(np.array_equal(y, np.rot90(x, k)) for k in range(4))
        (dtype('uint8'), True)
    """

    group: Group = Cyclic(4)

    def __post_init__(self):
        super().__post_init__()
        if self.group != Cyclic(4):
            raise ValueError(f"`group` of RandomRot90 is Cyclic(4), got {self.group!r}; "
                             f"use RandomGroupElement for other groups")


@dataclasses.dataclass(frozen=True)
class RandomScale(Transform):
    """Rescale about the centre by a factor ~ U[``min_factor``, ``max_factor``] (or log-uniform if
    ``log_uniform``), on the same canvas with zero fill (:func:`equilib.functional.rescale`,
    ``method`` "bilinear" or "bicubic", no anti-aliasing). Output: same shape, floating dtype.

    Args:
        min_factor: the smallest factor, > 0 (below 1 shrinks the content).
        max_factor: the largest factor, ``>= min_factor``.
        method: ``"bilinear"`` or ``"bicubic"``.
        log_uniform: draw ``log(factor)`` uniformly instead of ``factor``.
        axes: the spatial axes ``(H, W)`` of ``x``; default ``(-3, -2)`` for ``(..., H, W, C)``.

    Raises:
        TypeError: a factor is not a finite real number, ``log_uniform`` not a bool, or ``axes``
            not a pair of ints.
        ValueError: not ``0 < min_factor <= max_factor``, an unknown ``method``, or ``axes``
            naming one axis twice.

    Example:
        >>> import jax, numpy as np
        >>> from equilib.transforms import RandomScale
        >>> half = RandomScale(0.5, 0.5)  # always a factor 0.5
        >>> half(jax.random.key(0), np.ones((5, 5, 1), np.float32))[..., 0].round(2)
        Array([[0., 0., 0., 0., 0.],
               [0., 1., 1., 1., 0.],
               [0., 1., 1., 1., 0.],
               [0., 1., 1., 1., 0.],
               [0., 0., 0., 0., 0.]], dtype=float32)
    """

    min_factor: float = 0.3
    max_factor: float = 1.0
    method: str = "bilinear"
    log_uniform: bool = False
    axes: tuple[int, int] = (-3, -2)

    def __post_init__(self):
        lo, hi = _check_real("min_factor", self.min_factor), _check_real("max_factor", self.max_factor)
        if not 0 < lo <= hi:
            raise ValueError(f"need 0 < `min_factor` <= `max_factor`, got {lo} and {hi}")
        if self.method not in ("bilinear", "bicubic"):
            raise ValueError(f"`method` must be 'bilinear' or 'bicubic', got {self.method!r}")
        if not isinstance(self.log_uniform, bool):
            raise TypeError(f"`log_uniform` must be a bool, got {type(self.log_uniform).__name__}")
        object.__setattr__(self, "min_factor", lo)
        object.__setattr__(self, "max_factor", hi)
        object.__setattr__(self, "axes", _check_axes(self.axes))

    def __call__(self, key: PRNGKey, x: Array) -> Array:
        if self.log_uniform:
            factor = jnp.exp(jax.random.uniform(key, (), minval=math.log(self.min_factor),
                                                maxval=math.log(self.max_factor)))
        else:
            factor = jax.random.uniform(key, (), minval=self.min_factor, maxval=self.max_factor)
        return rescale(x, factor, method=self.method, axes=self.axes)


@dataclasses.dataclass(frozen=True)
class RandomFlip(Transform):
    """Mirror the width axis (``horizontal``, the reflection of :mod:`equilib.groups`) and/or the
    height axis (``vertical``), each independently with probability ``p``. Exact, dtype kept.

    Args:
        horizontal: mirror the width axis (left-right) with probability ``p``.
        vertical: mirror the height axis (up-down) with probability ``p``.
        p: the probability of each mirror, in ``[0, 1]``.
        axes: the spatial axes ``(H, W)`` of ``x``; default ``(-3, -2)`` for ``(..., H, W, C)``.

    Raises:
        TypeError: ``horizontal``/``vertical`` is not a bool, ``p`` not a finite real number,
            or ``axes`` not a pair of ints.
        ValueError: ``p`` outside ``[0, 1]``, or ``axes`` naming one axis twice.

    Example:
        >>> import jax, numpy as np
        >>> from equilib.transforms import RandomFlip
        >>> x = np.arange(9, dtype=np.uint8).reshape(3, 3, 1)  # (H, W, C)
        >>> RandomFlip(p=1.0)(jax.random.key(0), x)[..., 0]  # always mirrored
        Array([[2, 1, 0],
               [5, 4, 3],
               [8, 7, 6]], dtype=uint8)
    """

    horizontal: bool = True
    vertical: bool = False
    p: float = 0.5
    axes: tuple[int, int] = (-3, -2)

    def __post_init__(self):
        for name in ("horizontal", "vertical"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool, got {type(getattr(self, name)).__name__}")
        p = _check_real("p", self.p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"`p` must be in [0, 1], got {p}")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "axes", _check_axes(self.axes))

    def __call__(self, key: PRNGKey, x: Array) -> Array:
        x = jnp.asarray(x)
        a, b = _spatial(x, self.axes)
        draws = jax.random.uniform(key, (2,)) < self.p
        if self.horizontal:
            x = jnp.where(draws[0], jnp.flip(x, axis=b), x)
        if self.vertical:
            x = jnp.where(draws[1], jnp.flip(x, axis=a), x)
        return x


@dataclasses.dataclass(frozen=True)
class RandomTranslation(Transform):
    """Shift by whole pixels ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]`` (an int, or a
    pair for (H, W)); ``dy > 0`` moves the content down, ``dx > 0`` right. ``mode="circular"``
    wraps around (``jnp.roll``); ``mode="zeros"`` fills the uncovered border with zeros. Exact,
    dtype kept.

    Args:
        max_shift: the largest shift in pixels, an int >= 0 or a pair ``(max_dy, max_dx)``.
        mode: ``"circular"`` or ``"zeros"``.
        axes: the spatial axes ``(H, W)`` of ``x``; default ``(-3, -2)`` for ``(..., H, W, C)``.

    Raises:
        ValueError: ``max_shift`` is not an int >= 0 or a pair of them, an unknown ``mode``, or
            ``axes`` naming one axis twice.
        TypeError: ``axes`` is not a pair of ints.

    Example:
        >>> import jax, numpy as np
        >>> from equilib.transforms import RandomTranslation
        >>> x = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)  # (H, W, C)
        >>> y = RandomTranslation(1)(jax.random.key(0), x)
        >>> y.dtype, any(np.array_equal(y, np.roll(x, (dy, dx), (0, 1)))
        ...              for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        (dtype('uint8'), True)
    """

    max_shift: int | tuple[int, int] = 2
    mode: str = "circular"
    axes: tuple[int, int] = (-3, -2)

    def __post_init__(self):
        m = self.max_shift
        pair = tuple(m) if isinstance(m, (tuple, list)) else (m, m)
        if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0
                                 for s in pair):
            raise ValueError(f"`max_shift` must be an int >= 0 or a pair of them, got {m!r}")
        if self.mode not in ("circular", "zeros"):
            raise ValueError(f"`mode` must be 'circular' or 'zeros', got {self.mode!r}")
        object.__setattr__(self, "max_shift", (int(pair[0]), int(pair[1])))
        object.__setattr__(self, "axes", _check_axes(self.axes))

    def __call__(self, key: PRNGKey, x: Array) -> Array:
        x = jnp.asarray(x)
        a, b = _spatial(x, self.axes)
        my, mx = self.max_shift if isinstance(self.max_shift, tuple) else (self.max_shift,) * 2  # always a pair
        ky, kx = jax.random.split(key)
        dy = jax.random.randint(ky, (), -my, my + 1)
        dx = jax.random.randint(kx, (), -mx, mx + 1)
        out = jnp.roll(x, jnp.stack([dy, dx]), axis=(a, b))
        if self.mode == "zeros":
            shape = [1] * x.ndim
            shape[a], shape[b] = x.shape[a], 1
            rows = jnp.arange(x.shape[a]).reshape(shape) - dy
            shape[a], shape[b] = 1, x.shape[b]
            cols = jnp.arange(x.shape[b]).reshape(shape) - dx
            valid = (rows >= 0) & (rows < x.shape[a]) & (cols >= 0) & (cols < x.shape[b])
            out = jnp.where(valid, out, jnp.zeros((), out.dtype))
        return out


@dataclasses.dataclass(frozen=True, init=False)
class Compose(Transform):
    """Apply ``transforms`` in order, each with its own key from ``jax.random.split(key, n)``.

    Args:
        *transforms: callables ``t(key, x)`` (equilib transforms or your own), or one list of
            them; none gives the identity.

    Raises:
        TypeError: a transform is not callable.

    Example:
        >>> import jax, numpy as np
        >>> from equilib.transforms import Compose, RandomFlip, RandomRot90, apply_batch
        >>> aug = Compose(RandomRot90(), RandomFlip())
        >>> len(aug.transforms), hash(aug) == hash(Compose(RandomRot90(), RandomFlip()))
        (2, True)
        >>> apply_batch(aug, jax.random.key(0), np.zeros((4, 8, 8, 1), np.float32)).shape
        (4, 8, 8, 1)
    """

    transforms: tuple

    def __init__(self, *transforms: Callable):
        if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
            transforms = tuple(transforms[0])
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"`transforms[{i}]` must be a callable t(key, x), got {type(t).__name__}")
        object.__setattr__(self, "transforms", tuple(transforms))

    def __call__(self, key: PRNGKey, x: Array) -> Array:
        if not self.transforms:
            return x
        for k, t in zip(jax.random.split(key, len(self.transforms)), self.transforms):
            x = t(k, x)
        return x


def apply_batch(transform: Callable, key: PRNGKey, x: ArrayLike) -> Array:
    """Apply ``transform`` to each example of the batch ``x`` (leading axis ``B``) with an
    independent key: ``vmap(transform)(jax.random.split(key, B), x)``. ``jit`` it with
    ``static_argnums=0`` (transforms are hashable).

    Args:
        transform: a transform ``t(key, x)`` of one example.
        key: a JAX PRNG key, split into one key per example.
        x: the batch, ``(B, H, W, C)`` for images (any array with a leading batch axis).

    Returns:
        The transformed batch, a jax array of the same shape (the dtype the transform gives).

    Raises:
        TypeError: ``transform`` is not callable.
        ValueError: ``x`` has no leading batch axis (a scalar).

    Example:
        >>> import jax, numpy as np
        >>> from equilib.transforms import RandomRot90, apply_batch
        >>> xb = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1)  # (B, H, W, C)
        >>> yb = jax.jit(apply_batch, static_argnums=0)(RandomRot90(), jax.random.key(0), xb)
        >>> yb.shape, [any(np.array_equal(yb[i], np.rot90(xb[i], k)) for k in range(4)) for i in range(2)]
        ((2, 3, 3, 1), [True, True])
    """
    if not callable(transform):
        raise TypeError(f"`transform` must be a callable t(key, x), got {type(transform).__name__}")
    if jnp.ndim(x) < 1:
        raise ValueError(f"`x` must have a leading batch axis, got shape {jnp.shape(x)}")
    keys = jax.random.split(key, jnp.shape(x)[0])
    return jax.vmap(transform)(keys, x)


@dataclasses.dataclass(frozen=True)
class Normalize:
    """Standardise images with one ``mean`` and one ``std`` for every pixel: ``(x - mean) / std``.

    A single scalar pair (not per pixel or per channel) commutes with rotations, scalings and
    shifts of the image, so it keeps a model's symmetry. Not a random transform: called as
    ``normalize(x)``, on any shape.

    Args:
        mean: the value subtracted, a finite real number.
        std: the divisor, a finite real number > 0.

    Raises:
        TypeError: if ``mean`` or ``std`` is not a finite real number.
        ValueError: if ``std`` is not > 0.

    Example:
        >>> import numpy as np
        >>> from equilib.transforms import Normalize
        >>> x = np.array([[0.0, 2.0], [4.0, 6.0]], np.float32)
        >>> normalize = Normalize.fit(x)
        >>> normalize.mean, round(normalize.std, 4)
        (3.0, 2.2361)
        >>> np.allclose(normalize.inverse(normalize(x)), x, atol=1e-6)
        True
    """

    mean: float
    std: float

    def __post_init__(self):
        object.__setattr__(self, "mean", _check_real("mean", self.mean))
        object.__setattr__(self, "std", _check_real("std", self.std))
        if not self.std > 0:
            raise ValueError(f"`std` must be > 0, got {self.std!r}")

    @classmethod
    def fit(cls, images: np.ndarray | Array) -> Normalize:
        """The mean and standard deviation over all of ``images`` (any shape, e.g. the training
        set ``(N, H, W, C)``), as Python floats.

        Args:
            images: a real array with at least one element and a nonzero spread.

        Returns:
            a :class:`Normalize` that maps ``images`` to mean 0 and std 1.

        Raises:
            ValueError: if ``images`` is empty or constant.

        Example:
            >>> import numpy as np
            >>> from equilib.transforms import Normalize
            >>> Normalize.fit(np.array([1.0, 3.0]))
            Normalize(mean=2.0, std=1.0)
        """
        if np.size(images) == 0:
            raise ValueError("`images` must hold at least one value to fit a mean and std, got an empty array")
        mean, std = float(images.mean()), float(images.std())
        if not std > 0:
            raise ValueError(f"`images` must not be constant (their std is {std!r}): nothing to standardise")
        return cls(mean, std)

    def __call__(self, x: Array) -> Array:
        return (x - self.mean) / self.std

    def inverse(self, x: Array) -> Array:
        """Undo the standardisation: ``x * std + mean`` (back to pixel units)."""
        return x * self.std + self.mean


def normalized_augment(transform: Callable, normalize: Normalize) -> Callable:
    """An ``augment(key, x)`` for :func:`equilib.training.fit` that applies ``transform`` to the
    raw pixels behind standardised images: ``normalize(apply_batch(transform, key,
    normalize.inverse(x)))``.

    Interpolating transforms fill with zeros, which is the background in pixel units but not after
    standardisation; undoing it first keeps the fill the background colour.

    Args:
        transform: a random transform ``t(key, x)`` of one example (e.g. :class:`RandomRotation`).
        normalize: the standardisation the images were given.

    Returns:
        ``augment(key, x)`` for a batch ``x`` of standardised images ``(B, H, W, C)``, returning the
        transformed batch, standardised, of the same shape.

    Raises:
        TypeError: if ``transform`` is not callable or ``normalize`` not a :class:`Normalize`.

    Example:
        >>> import jax, numpy as np
        >>> from equilib.transforms import Normalize, RandomRot90, normalized_augment
        >>> x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
        >>> normalize = Normalize.fit(x)
        >>> augment = normalized_augment(RandomRot90(), normalize)
        >>> augment(jax.random.key(0), normalize(x)).shape
        (2, 4, 4, 1)
    """
    if not callable(transform):
        raise TypeError(f"`transform` must be a callable t(key, x), got {type(transform).__name__}")
    if not isinstance(normalize, Normalize):
        raise TypeError(f"`normalize` must be an equilib.transforms.Normalize, got {type(normalize).__name__}")

    def augment(key, x):
        return normalize(apply_batch(transform, key, normalize.inverse(x)))

    return augment
