"""Equivariance harness: measure, and assert, how a function commutes with a group action.

For a function ``fn`` and an input ``x`` the error for element ``g`` is the relative error

    || fn(g.x) - g.fn(x) || / || g.fn(x) ||      (Frobenius norm over the whole output)

with ``g`` acting on the input and the output as declared by ``input`` / ``output``:

* ``"plain"``: a map ``(B, H, W, C)``, transformed in space (axes 1, 2);
* ``"regular"``: a regular map ``(B, H, W, C, |G|)``, transformed in space and along the
  group axis by the regular representation (:meth:`Group.transform_regular`);
* ``"invariant"`` (output only): not transformed at all (``fn`` should be invariant).

Elements that map the pixel grid to itself (multiples of 90 degrees, the mirror) are applied
exactly, and an exactly equivariant ``fn`` gives errors at float rounding level (~1e-7 in fp32).
Other elements ("off-grid" angles, e.g. 45 degrees in C8) are applied by bilinear
interpolation; then the input is first multiplied by a central disk (so rotation moves no
content off the canvas) and, for spatial outputs, the error is measured inside a central disk
of radius ``mask_fraction`` times half the output size, away from the border and corners where
rotation must fail. Off-grid errors are reported, never silently passed: ``assert_equivariant``
needs an explicit ``off_grid_rtol`` to accept them. Off-grid results depend on the input's
smoothness; :func:`smooth_random` makes band-limited test inputs.

Volumes: for the groups of the voxel grid (``Octahedral()``, ``FullOctahedral()``) maps are
``(B, D, H, W, C)`` / ``(B, D, H, W, C, |G|)`` and every element is applied exactly. With ``SO3()`` or
``O3()`` the elements are rotation matrices (e.g. ``SO3().random_elements(8, seed=0)``), the errors
are keyed by their position in ``elements``, and the masks are balls instead of disks; only plain
and invariant outputs (a regular map of a finite group has no action of a continuous one).

Translations: :func:`translation_errors` compares ``fn(roll(x, s))`` with ``roll(fn(x), s /
stride)`` for circular shifts ``s`` (or with ``fn(x)`` for invariant outputs).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from equilib._src.imaging import rescale
from equilib._src.typing import Array, ArrayLike, PRNGKey
from equilib.fields import FieldType
from equilib.fields3d import FieldType3D
from equilib.groups import Group, as_group, elements_of
from equilib.groups3d import SO3, SpatialLieGroup

__all__ = [
    "equivariance_errors",
    "equivariance_error",
    "assert_equivariant",
    "translation_errors",
    "translation_error",
    "assert_translation_equivariant",
    "disk_mask",
    "ball_mask",
    "smooth_random",
    "scale_equivariance_errors",
    "scale_equivariance_error",
    "assert_scale_equivariant",
    "field_equivariance_errors",
    "field_equivariance_error",
    "assert_field_equivariant",
]

_INPUTS = ("plain", "regular")
_OUTPUTS = ("plain", "regular", "invariant")


def disk_mask(h: int, w: int, fraction: float = 1.0) -> np.ndarray:
    """``(h, w)`` float mask: 1 inside the centred disk of radius ``fraction * min(h, w) / 2``.

    The centre is the array centre ``((h - 1) / 2, (w - 1) / 2)``, the rotation centre of
    :mod:`equilib.groups`; the off-grid checks multiply inputs and errors by such disks.

    Args:
        h: the number of rows.
        w: the number of columns.
        fraction: the radius as a fraction of half the smaller side (1: the inscribed disk).

    Returns:
        A float32 numpy array ``(h, w)`` of zeros and ones.

    Example:
        >>> from equilib.testing import disk_mask
        >>> disk_mask(5, 5).astype(int)
        array([[0, 1, 1, 1, 0],
               [1, 1, 1, 1, 1],
               [1, 1, 1, 1, 1],
               [1, 1, 1, 1, 1],
               [0, 1, 1, 1, 0]])
    """
    ch, cw = (h - 1) / 2.0, (w - 1) / 2.0
    r, c = np.meshgrid(np.arange(h) - ch, np.arange(w) - cw, indexing="ij")
    radius = fraction * min(h, w) / 2.0
    return (r**2 + c**2 <= radius**2).astype(np.float32)


def smooth_random(key: PRNGKey, shape: Sequence[int], *, sigma: float = 1.5, axes=(1, 2)) -> Array:
    """Gaussian noise blurred by a Gaussian of std ``sigma`` pixels along ``axes`` (periodic),
    rescaled to unit standard deviation: band-limited inputs for off-grid equivariance tests.

    Args:
        key: a JAX PRNG key.
        shape: the output shape, e.g. a plain map ``(B, H, W, C)``.
        sigma: the blur's standard deviation in pixels (larger: smoother).
        axes: the axes blurred (default the spatial axes 1, 2 of ``(B, H, W, C)``).

    Returns:
        A float32 jax array of ``shape`` with mean about 0 and standard deviation 1.

    Example:
        >>> import jax
        >>> from equilib.testing import smooth_random
        >>> x = smooth_random(jax.random.key(0), (2, 9, 9, 1))
        >>> x.shape, x.dtype, round(float(x.std()), 3)
        ((2, 9, 9, 1), dtype('float32'), 1.0)
    """
    x = jax.random.normal(key, tuple(shape))
    for ax in axes:
        n = shape[ax]
        f = np.fft.fftfreq(n)
        filt = np.exp(-2.0 * (np.pi * sigma * f) ** 2)
        bshape = [1] * len(shape)
        bshape[ax] = n
        x = jnp.real(jnp.fft.ifft(jnp.fft.fft(x, axis=ax) * filt.reshape(bshape), axis=ax))
    return (x / jnp.std(x)).astype(jnp.float32)


def _check_kinds(input: str, output: str):
    if input not in _INPUTS:
        raise ValueError(f"`input` must be one of {_INPUTS}, got {input!r}")
    if output not in _OUTPUTS:
        raise ValueError(f"`output` must be one of {_OUTPUTS}, got {output!r}")


def _act(group: Group, kind: str, a, g: int):
    # Transforms run in numpy where exact, so that no new XLA program is compiled per element.
    d = group.spatial_dims
    space = "H, W" if d == 2 else "D, H, W"
    if kind == "plain":
        if a.ndim < d + 1:
            raise ValueError(f"a plain map needs spatial axes (B, {space}, C), got shape {tuple(a.shape)}")
        return _np(group.transform_image(a, g, axes=tuple(range(-1 - d, -1))))
    if kind == "regular":
        if a.ndim < d + 2 or a.shape[-1] != group.order:
            raise ValueError(f"a regular map over {group.name} has shape (B, {space}, C, {group.order}), "
                             f"got {tuple(a.shape)}")
        return _np(group.transform_regular(a, g))
    return a  # invariant


def _spatial_axes(kind: str):
    return (-3, -2) if kind == "plain" else (-4, -3)


def _np(a) -> np.ndarray:
    return np.asarray(a)


def _rel(a, b, mask=None) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"fn(g.x) has shape {tuple(a.shape)} but g.fn(x) has shape {tuple(b.shape)}: "
                         f"check `output`")
    d, n = a - b, b
    if mask is not None:
        d, n = d * mask, n * mask
    num = float(np.linalg.norm(d.ravel()))
    den = float(np.linalg.norm(n.ravel()))
    return num / max(den, 1e-30) if den > 0 else num


def _broadcast_mask(mask2d, kind: str):
    shape = list(mask2d.shape) + [1] * (1 if kind == "plain" else 2)
    return np.asarray(mask2d).reshape(shape)


def _element_errors(fn: Callable, x: np.ndarray, group: Group, els: Sequence[int], act_in: Callable,
                    act_out: Callable, input: str, output: str, mask_fraction: float) -> dict[int, float]:
    """``{g: error}``: the core of :func:`equivariance_errors` and :func:`field_equivariance_errors`.

    ``act_in(a, g)`` / ``act_out(a, g)`` apply ``g`` to an input / output; ``input`` and
    ``output`` name their layouts ("plain": spatial axes (-3, -2), "regular": (-4, -3),
    "invariant": no spatial axes), where the off-grid disks are drawn.
    """
    y = None
    errors = {}
    for g in els:
        if group.is_grid_preserving(g):
            if y is None:
                y = _np(fn(x))
            errors[g] = _rel(fn(act_in(x, g)), act_out(y, g))
            continue
        ax = _spatial_axes(input)
        h, w = x.shape[ax[0]], x.shape[ax[1]]
        xm = x * _broadcast_mask(disk_mask(h, w), input)
        ym = _np(fn(xm))
        out = fn(act_in(xm, g))
        exp = act_out(ym, g)
        mask = None
        if output != "invariant":
            oa = _spatial_axes(output)
            mask = _broadcast_mask(disk_mask(exp.shape[oa[0]], exp.shape[oa[1]], mask_fraction), output)
        errors[g] = _rel(out, exp, mask)
    return errors


def _assert_within(errors_of: Callable, group: Group, els: Sequence[int], rtol: float,
                   off_grid_rtol: float | None, what: str) -> dict[int, float]:
    """The core of the ``assert_*equivariant`` functions over group elements: ``errors_of(els)``
    within ``rtol`` (grid-preserving elements) or the explicit ``off_grid_rtol`` (the others)."""
    off = [g for g in els if not group.is_grid_preserving(g)]
    if off and off_grid_rtol is None:
        raise ValueError(f"elements {off} of {group.name} do not map the grid to itself: pass "
                         f"`off_grid_rtol` (their error is approximate) or leave them out of `elements`")
    errors = errors_of(els)
    bad = {g: e for g, e in errors.items()
           if not e <= (rtol if group.is_grid_preserving(g) else off_grid_rtol)}
    if bad:
        raise AssertionError(
            f"not {what}: relative error above rtol={rtol}" + (f" / off_grid_rtol={off_grid_rtol}" if off else "")
            + f" for elements {_format(bad, group)}; all errors: {_format(errors, group)}")
    return errors


def equivariance_errors(fn: Callable, x: ArrayLike, group: Group, *, input: str = "plain", output: str = "plain",
                        elements: Iterable[int] | None = None, mask_fraction: float = 0.6) -> dict[int, float]:
    """Relative equivariance error of ``fn`` at ``x`` for each element (``{index: error}``).

    See the module docstring for the definition, the actions and the off-grid masks.

    Args:
        fn: the function tested, ``x -> y`` (a layer, a model, any callable on arrays).
        x: the input: a plain map ``(B, H, W, C)`` or, with ``input="regular"``, a regular map
            ``(B, H, W, C, |G|)``.
        group: a finite group (``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``).
        input: how ``g`` acts on ``x``: ``"plain"`` or ``"regular"``.
        output: how ``g`` acts on ``fn(x)``: ``"plain"`` ``(B, H', W', C')``, ``"regular"``
            ``(B, H', W', C', |G|)`` or ``"invariant"`` (not at all, any shape).
        elements: the element indices tested (default all of ``group``).
        mask_fraction: radius of the disk in which off-grid errors are measured, as a fraction
            of half the output size.

    Returns:
        ``{g: error}``: the relative error (a Python float) for each tested element; fp32
        rounding (~1e-7) for an exactly equivariant ``fn`` at grid-preserving elements.

    Raises:
        TypeError: ``group`` is not a finite group, or an element not an integer.
        ValueError: ``input``/``output`` is not one of the kinds above, an element is out of
            range, ``x`` or ``fn(x)`` does not have the declared layout, or ``fn(g.x)`` and
            ``g.fn(x)`` differ in shape.

    Example:
        >>> import jax
        >>> from flax import nnx
        >>> from equilib import Cyclic, nn
        >>> from equilib.testing import equivariance_errors, smooth_random
        >>> lift = nn.LiftingConv(1, 2, 3, group=Cyclic(4), rngs=nnx.Rngs(0))
        >>> x = smooth_random(jax.random.key(0), (1, 9, 9, 1))  # (B, H, W, C)
        >>> errors = equivariance_errors(lift, x, Cyclic(4), output="regular")
        >>> sorted(errors), max(errors.values()) < 1e-5
        ([0, 1, 2, 3], True)
    """
    _check_kinds(input, output)
    if isinstance(group, SpatialLieGroup):
        return _lie3d_errors(fn, _np(x), group, elements, input, output, mask_fraction)
    group = as_group(group)
    els = elements_of(group, elements)
    return _element_errors(fn, _np(x), group, els, lambda a, g: _act(group, input, a, g),
                           lambda a, g: _act(group, output, a, g), input, output, mask_fraction)


def equivariance_error(fn: Callable, x: ArrayLike, group: Group, *, input: str = "plain", output: str = "plain",
                       elements: Iterable[int] | None = None, mask_fraction: float = 0.6) -> float:
    """The largest of :func:`equivariance_errors` over ``elements``.

    Args:
        fn, x, group, input, output, elements, mask_fraction: as :func:`equivariance_errors`
            (``x``: ``(B, H, W, C)``, or ``(B, H, W, C, |G|)`` with ``input="regular"``).

    Returns:
        The largest relative error, a Python float.

    Raises:
        TypeError, ValueError: as :func:`equivariance_errors`.

    Example:
        A pointwise function is exactly equivariant at multiples of 90 degrees; at 45 degrees
        the bilinear interpolation of the test itself leaves a few percent:

        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic
        >>> from equilib.testing import equivariance_error, smooth_random
        >>> x = smooth_random(jax.random.key(0), (1, 9, 9, 1))
        >>> equivariance_error(jnp.tanh, x, Cyclic(4))
        0.0
        >>> 0 < equivariance_error(jnp.tanh, x, Cyclic(8)) < 0.1
        True
    """
    return max(equivariance_errors(fn, x, group, input=input, output=output, elements=elements,
                                   mask_fraction=mask_fraction).values())


def _format(errors: dict, group: Group | None = None) -> str:
    if group is None:
        return ", ".join(f"{k}: {v:.3g}" for k, v in errors.items())
    if group.spatial_dims == 3:  # an element of the voxel grid's groups: its matrix
        return ", ".join(f"{g} (matrix {np.rint(group.matrix(g)).astype(int).tolist()}): {v:.3g}"
                         for g, v in errors.items())
    return ", ".join(f"{g} (k={group.rotation(g)}, f={group.flip(g)}, "
                     f"{np.degrees(group.angle(g)):.1f} deg): {v:.3g}" for g, v in errors.items())


def assert_equivariant(fn: Callable, x: ArrayLike, group: Group, *, input: str = "plain", output: str = "plain",
                       elements: Iterable[int] | None = None, rtol: float = 1e-5,
                       off_grid_rtol: float | None = None, mask_fraction: float = 0.6) -> dict[int, float]:
    """Raise ``AssertionError`` unless every element's error is below its tolerance.

    Grid-preserving elements must be within ``rtol`` (default 1e-5, fp32 exact). Off-grid
    elements must be within ``off_grid_rtol``, which must then be given explicitly (a loose
    tolerance is a claim the caller documents).

    Args:
        fn, x, group, input, output, elements, mask_fraction: as :func:`equivariance_errors`.
        rtol: the tolerance of grid-preserving elements (multiples of 90 degrees, mirrors).
        off_grid_rtol: the tolerance of the other elements; required if any is tested.

    Returns:
        The errors ``{g: error}`` of :func:`equivariance_errors`.

    Raises:
        AssertionError: an error above its tolerance; the message lists every element's error.
        ValueError: off-grid elements are tested without ``off_grid_rtol``; and as
            :func:`equivariance_errors`.
        TypeError: as :func:`equivariance_errors`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib import Cyclic
        >>> from equilib.testing import assert_equivariant, smooth_random
        >>> x = smooth_random(jax.random.key(0), (1, 9, 9, 1))
        >>> assert_equivariant(jnp.tanh, x, Cyclic(4))
        {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}
        >>> assert_equivariant(lambda a: a[:, ::-1], x, Cyclic(4))  # flips the rows: not equivariant
        Traceback (most recent call last):
            ...
        AssertionError: not C4-equivariant (plain -> plain): relative error above rtol=1e-05 for elements 1 ...
    """
    if isinstance(group, SpatialLieGroup):
        return _assert_lie3d(fn, x, group, input, output, elements, rtol, off_grid_rtol, mask_fraction)
    group = as_group(group)
    return _assert_within(
        lambda els: equivariance_errors(fn, x, group, input=input, output=output, elements=els,
                                        mask_fraction=mask_fraction),
        group, elements_of(group, elements), rtol, off_grid_rtol,
        f"{group.name}-equivariant ({input} -> {output})")


def ball_mask(d: int, h: int, w: int, fraction: float = 1.0) -> np.ndarray:
    """A ``(D, H, W)`` float mask, 1 inside the centred ball of radius ``fraction`` times half the
    smallest side (the 3D :func:`disk_mask`), 0 outside.

    Args:
        d, h, w: the volume's size.
        fraction: the radius as a fraction of ``(min(d, h, w) - 1) / 2``, in (0, 1] (1: the inscribed ball).

    Returns:
        The mask, float32 ``(d, h, w)``.

    Raises:
        ValueError: ``fraction`` not in (0, 1].

    Example:
        >>> from equilib.testing import ball_mask
        >>> m = ball_mask(5, 5, 5)
        >>> m.shape, int(m.sum()), float(m[2, 2, 2]), float(m[0, 0, 0])
        ((5, 5, 5), 33, 1.0, 0.0)
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}")
    r = fraction * (min(d, h, w) - 1) / 2
    z, y, x = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in (d, h, w)), indexing="ij")
    return (z**2 + y**2 + x**2 <= r * r + 1e-9).astype(np.float32)


def _volume_elements(group, elements) -> list[tuple[int, np.ndarray]]:
    """``[(key, matrix)]``: octahedral elements by index (default all), SO3/O3 ones by position."""
    if isinstance(group, SpatialLieGroup):
        if elements is None:
            raise ValueError(f"`elements` must list the rotation matrices to test for {group.name} (e.g. "
                             f"{group!r}.random_elements(8, seed=0)), got None")
        return [(i, group.element(m)) for i, m in enumerate(elements)]
    return [(g, group.matrix(g)) for g in elements_of(group, elements)]


def _volume_errors(fn: Callable, x: np.ndarray, group, elements, act_in: Callable, act_out: Callable | None,
                   mask_fraction: float) -> dict[int, float]:
    """The 3D core of the harness: ``{key: error}`` with ``act_in(a, matrix)`` on inputs and ``act_out``
    (None: invariant) on outputs ``(..., D, H, W, C)``; off-grid elements measured inside balls."""
    els = _volume_elements(group, elements)
    exact = all(SO3().is_grid_preserving(m) for _, m in els)
    xm = x if exact else x * ball_mask(*x.shape[-4:-1])[..., None]  # nothing rotates off the canvas
    y = _np(fn(xm))
    errors = {}
    for key, m in els:
        out = _np(fn(_np(act_in(xm, m))))
        exp = _np(act_out(y, m)) if act_out is not None else y
        mask = None
        if act_out is not None and not SO3().is_grid_preserving(m):
            d, h, w = exp.shape[-4:-1]
            mask = ball_mask(d, h, w, fraction=mask_fraction)[..., None]
        errors[key] = _rel(out, exp, mask)
    return errors


def _lie3d_errors(fn: Callable, x: np.ndarray, group: SpatialLieGroup, elements, input: str, output: str,
                  mask_fraction: float) -> dict[int, float]:
    """:func:`equivariance_errors` for SO3/O3: ``{i: error}`` for the matrices ``elements[i]``."""
    if input == "regular" or output == "regular":
        raise ValueError(f"{group.name} acts on plain volumes (B, D, H, W, C) and invariant outputs; got "
                         f"input={input!r}, output={output!r} (a regular map of a finite group has no "
                         f"{group.name} action)")
    if x.ndim < 4:
        raise ValueError(f"a plain volume has axes (B, D, H, W, C), got shape {tuple(x.shape)}")
    act = group.transform_image
    return _volume_errors(fn, x, group, elements, act, act if output == "plain" else None, mask_fraction)


def _assert_volume(errors_of: Callable, group, elements, rtol, off_grid_rtol, what: str) -> dict[int, float]:
    """``errors_of()`` within ``rtol`` (grid elements) or the explicit ``off_grid_rtol`` (the others)."""
    els = _volume_elements(group, elements)
    off = [k for k, m in els if not SO3().is_grid_preserving(m)]
    if off and off_grid_rtol is None:
        raise ValueError(f"elements {off} of {group.name} do not map the voxel grid to itself: pass "
                         f"`off_grid_rtol` (their error is approximate)")
    errors = errors_of()
    bad = {k: e for k, e in errors.items() if not e <= (off_grid_rtol if k in off else rtol)}
    if bad:
        raise AssertionError(f"not {what}: relative error above rtol={rtol}"
                             + (f" / off_grid_rtol={off_grid_rtol}" if off else "")
                             + f" for elements {_format(bad)}; all errors: {_format(errors)}")
    return errors


def _assert_lie3d(fn, x, group: SpatialLieGroup, input, output, elements, rtol, off_grid_rtol, mask_fraction):
    return _assert_volume(lambda: _lie3d_errors(fn, _np(x), group, elements, input, output, mask_fraction),
                          group, elements, rtol, off_grid_rtol, f"{group.name}-equivariant ({input} -> {output})")


def _volume_field_errors(fn, x, in_type: FieldType3D, out_type, elements, mask_fraction) -> dict[int, float]:
    if not (out_type == "invariant" or isinstance(out_type, FieldType3D)):
        raise TypeError(f"`out_type` must be a FieldType3D or 'invariant', got {out_type!r}")
    x = _np(x)
    in_type.check(x, "x")
    act_out = None if out_type == "invariant" else out_type.transform
    return _volume_errors(fn, x, in_type.group, elements, in_type.transform, act_out, mask_fraction)


# --- translations -------------------------------------------------------------------------------
def _shifts(x, kind, shifts, stride):
    ax = _spatial_axes(kind)
    h, w = x.shape[ax[0]], x.shape[ax[1]]
    if shifts is None:
        shifts = [(i, j) for i in range(0, h, stride) for j in range(0, w, stride)]
    out = []
    for s in shifts:
        dy, dx = (int(s[0]), int(s[1]))
        if dy % stride or dx % stride:
            raise ValueError(f"shift {tuple(s)} is not a multiple of `stride` (={stride})")
        out.append((dy, dx))
    return out


def translation_errors(fn: Callable, x: ArrayLike, shifts: Iterable[Sequence[int]] | None = None, *,
                       input: str = "plain", output: str = "plain",
                       stride: int = 1) -> dict[tuple[int, int], float]:
    """Relative error of ``fn`` under circular shifts ``(dy, dx)`` of the input's spatial axes.

    The output is expected to be rolled by ``(dy, dx) / stride`` (``stride`` is the network's
    total subsampling factor; shifts must be multiples of it), or unchanged if
    ``output="invariant"``. Circular shifts make a circularly padded stride-1 convolution
    exactly equivariant; zero padding breaks it near the border.

    Args:
        fn: the function tested.
        x: its input, a plain map ``(B, H, W, C)`` or, with ``input="regular"``, a regular map
            ``(B, H, W, C, |G|)``.
        shifts: the ``(dy, dx)`` shifts tested (default every multiple of ``stride`` in the
            image, ``(0, 0)`` included).
        input: ``"plain"`` or ``"regular"`` (where the spatial axes are).
        output: ``"plain"``, ``"regular"`` or ``"invariant"``.
        stride: the total subsampling factor of ``fn``.

    Returns:
        ``{(dy, dx): error}``, relative errors as Python floats.

    Raises:
        ValueError: ``input``/``output`` is not one of the kinds above, a shift is not a
            multiple of ``stride``, or the shapes of ``fn(shifted x)`` and the shifted
            ``fn(x)`` differ.

    Example:
        >>> import jax
        >>> from flax import nnx
        >>> from equilib import nn
        >>> from equilib.testing import smooth_random, translation_errors
        >>> conv = nn.Conv(1, 2, 3, padding="CIRCULAR", rngs=nnx.Rngs(0))
        >>> x = smooth_random(jax.random.key(0), (1, 8, 8, 1))  # (B, H, W, C)
        >>> translation_errors(conv, x, [(1, 0), (0, 3)])
        {(1, 0): 0.0, (0, 3): 0.0}
    """
    _check_kinds(input, output)
    if output == "regular":
        output_axes = (-4, -3)
    elif output == "plain":
        output_axes = (-3, -2)
    x = _np(x)
    y = _np(fn(x))
    ax = _spatial_axes(input)
    errors = {}
    for dy, dx in _shifts(x, input, shifts, stride):
        got = fn(np.roll(x, (dy, dx), axis=ax))
        exp = y if output == "invariant" else np.roll(y, (dy // stride, dx // stride), axis=output_axes)
        errors[(dy, dx)] = _rel(got, exp)
    return errors


def translation_error(fn: Callable, x: ArrayLike, shifts=None, *, input: str = "plain", output: str = "plain",
                      stride: int = 1) -> float:
    """The largest of :func:`translation_errors`.

    Args:
        fn, x, shifts, input, output, stride: as :func:`translation_errors` (``x``:
            ``(B, H, W, C)``, or ``(B, H, W, C, |G|)`` with ``input="regular"``).

    Returns:
        The largest relative error, a Python float.

    Raises:
        ValueError: as :func:`translation_errors`.

    Example:
        A 2x2 max-pool is equivariant to shifts by multiples of its stride only:

        >>> import jax
        >>> from equilib.functional import max_pool
        >>> from equilib.testing import smooth_random, translation_error
        >>> x = smooth_random(jax.random.key(0), (1, 8, 8, 1))
        >>> translation_error(lambda a: max_pool(a, 2), x, stride=2)
        0.0
        >>> translation_error(lambda a: max_pool(a, 2), x, [(1, 0)]) > 0.1
        True
    """
    return max(translation_errors(fn, x, shifts, input=input, output=output, stride=stride).values())


def assert_translation_equivariant(fn: Callable, x: ArrayLike, shifts=None, *, input: str = "plain",
                                   output: str = "plain", stride: int = 1,
                                   rtol: float = 1e-5) -> dict[tuple[int, int], float]:
    """Raise ``AssertionError`` unless every circular shift gives an error within ``rtol``.

    Args:
        fn, x, shifts, input, output, stride: as :func:`translation_errors`.
        rtol: the tolerance (default 1e-5, fp32 exact).

    Returns:
        The errors ``{(dy, dx): error}`` of :func:`translation_errors`.

    Raises:
        AssertionError: a shift's error is above ``rtol``; the message lists the worst.
        ValueError: as :func:`translation_errors`.

    Example:
        >>> import jax
        >>> from equilib.functional import max_pool
        >>> from equilib.testing import assert_translation_equivariant, smooth_random
        >>> x = smooth_random(jax.random.key(0), (1, 8, 8, 1))
        >>> errors = assert_translation_equivariant(lambda a: max_pool(a, 2), x, stride=2)
        >>> len(errors), max(errors.values())
        (16, 0.0)
        >>> assert_translation_equivariant(lambda a: max_pool(a, 2), x, [(1, 0)], stride=2)
        Traceback (most recent call last):
            ...
        ValueError: shift (1, 0) is not a multiple of `stride` (=2)
    """
    errors = translation_errors(fn, x, shifts, input=input, output=output, stride=stride)
    bad = {s: e for s, e in errors.items() if not e <= rtol}
    if bad:
        worst = sorted(bad.items(), key=lambda kv: -kv[1])[:8]
        raise AssertionError(f"not translation-{'invariant' if output == 'invariant' else 'equivariant'}: "
                             f"{len(bad)} of {len(errors)} shifts above rtol={rtol}; worst: {_format(dict(worst))}")
    return errors


# --- scale (SESN-style scale maps) --------------------------------------------------------------
_SCALE_INPUTS = ("plain", "scale")
_SCALE_OUTPUTS = ("plain", "scale", "invariant")


def _rescale(a: np.ndarray, factor: float, method: str) -> np.ndarray:
    # jitted with a traced factor: one compile per shape instead of one per primitive
    return _np(_rescale_jit(a, np.float32(factor), method=method, axes=(1, 2)))


_rescale_jit = jax.jit(rescale, static_argnames=("method", "axes"))


def _scale_ratio(scales) -> float:
    from equilib.functional._scale import check_scales

    scales = check_scales(scales)
    if len(scales) < 2:
        raise ValueError(f"`scales` must have at least two scales to define a scale step, got {scales!r}")
    ratios = [b / a for a, b in zip(scales, scales[1:])]
    if max(ratios) > min(ratios) * (1 + 1e-3):
        raise ValueError(f"`scales` must be geometric (a constant ratio between neighbours) for the "
                         f"scale-shift action, got ratios {tuple(round(r, 6) for r in ratios)}")
    return ratios[0]


def _shift_scales(a: np.ndarray, n: int) -> np.ndarray:
    """``out[..., i] = a[..., i + n]``, zeros where ``i + n`` is out of range."""
    out = np.zeros_like(a)
    s = a.shape[-1]
    if n >= 0:
        out[..., :s - n] = a[..., n:]
    else:
        out[..., -n:] = a[..., :s + n]
    return out


def _check_steps(steps, n_scales: int) -> tuple[int, ...]:
    steps = tuple(steps)
    for n in steps:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n == 0 or abs(n) >= n_scales:
            raise ValueError(f"`steps` must be non-zero integers with |step| < len(scales) "
                             f"(={n_scales}), got {steps!r}")
    return tuple(int(n) for n in steps)


def _scale_indices(scale_indices, n: int, n_scales: int) -> list[int]:
    """The compared scale indices for step ``n``: those given, or every ``j`` with a source ``j + n``."""
    if scale_indices is None:
        return [j for j in range(n_scales) if 0 <= j + n < n_scales]
    idx = [int(j) for j in scale_indices]
    bad = [j for j in idx if not (0 <= j < n_scales and 0 <= j + n < n_scales)]
    if bad:
        raise ValueError(f"`scale_indices` {bad} have no source index j + step "
                         f"(step {n}) in [0, {n_scales})")
    return idx


def scale_equivariance_errors(fn: Callable, x: ArrayLike, scales, *, input: str = "plain", output: str = "scale",
                              steps: Iterable[int] = (1,), scale_indices: Iterable[int] | None = None,
                              mask_fraction: float = 0.6, method: str = "bicubic") -> dict[int, float]:
    """Relative scale-equivariance error of ``fn`` at ``x`` for each step (``{step: error}``).

    ``scales`` must be geometric with ratio ``q``. Step ``n`` rescales the input's spatial axes
    (1, 2) by ``t = q**-n`` (:func:`equilib.functional.rescale`, ``method``): ``n = 1``
    downscales by one scale step, ``n = -1`` upscales. The actions:

    * ``"plain"`` (``(B, H, W, C)``): rescaled in space only;
    * ``"scale"`` (a scale map ``(B, H, W, C, S)``): rescaled in space and shifted along the
      scale axis, ``x'[..., i] = x[..., i + n]``, with zeros where ``i + n`` is out of range
      (the convention of :mod:`equilib.functional._scale`: downscaling moves the response from
      index ``j + 1`` to ``j``);
    * ``"invariant"`` (output only): not transformed.

    The error is ``|| m * (fn(x')[..., j] - (fn(x))'[..., j]) || / || m * (fn(x))'[..., j] ||``
    over ``j`` in ``scale_indices`` (default: every ``j`` whose source index ``j + n`` exists,
    i.e. all but the boundary scales), with ``m`` the central disk of radius ``mask_fraction``
    times half the output size, divided by ``q**|n|`` when downscaling (the expected map reads
    ``fn(x)`` that far out, where its own border effects live). Always approximate on the grid:
    the result depends on the input's smoothness (:func:`smooth_random`).

    Args:
        fn: the function tested.
        x: its input, a plain map ``(B, H, W, C)`` or, with ``input="scale"``, a scale map
            ``(B, H, W, C, S)`` with ``S = len(scales)``.
        scales: the scales of the scale axis, geometric, at least two (e.g. ``(1.0, 1.2)``).
        input: ``"plain"`` or ``"scale"``.
        output: ``"plain"``, ``"scale"`` (``(B, H', W', C', S)``) or ``"invariant"``.
        steps: the scale steps ``n`` tested, non-zero ints with ``|n| < S``.
        scale_indices: the output scale indices compared (default every index with a source).
        mask_fraction: radius of the disk in which errors are measured, as a fraction of half
            the output size.
        method: the interpolation of the rescaling, ``"bicubic"`` or ``"bilinear"``.

    Returns:
        ``{n: error}``: the relative error (a Python float) for each step.

    Raises:
        ValueError: ``input``/``output`` is not one of the kinds above, ``scales`` is not
            increasing and geometric or has fewer than two entries, a step or scale index is
            out of range, or ``x`` / ``fn(x)`` does not have the declared layout.
        TypeError: ``scales`` is not a sequence of real numbers.

    Example:
        >>> import jax
        >>> from flax import nnx
        >>> from equilib import nn
        >>> from equilib.testing import scale_equivariance_errors, smooth_random
        >>> lift = nn.ScaleLiftingConv(1, 2, 7, scales=(1.0, 1.2), rngs=nnx.Rngs(0))
        >>> x = smooth_random(jax.random.key(0), (1, 15, 15, 1))  # (B, H, W, C)
        >>> errors = scale_equivariance_errors(lift, x, (1.0, 1.2))  # output (B, H, W, C, 2)
        >>> sorted(errors), errors[1] < 0.05
        ([1], True)
    """
    if input not in _SCALE_INPUTS:
        raise ValueError(f"`input` must be one of {_SCALE_INPUTS}, got {input!r}")
    if output not in _SCALE_OUTPUTS:
        raise ValueError(f"`output` must be one of {_SCALE_OUTPUTS}, got {output!r}")
    q = _scale_ratio(scales)
    n_scales = len(tuple(scales))
    steps = _check_steps(steps, n_scales)
    x = _check_scale_input(_np(x), input, n_scales)
    y = _np(fn(x))
    if output == "scale" and (y.ndim != 5 or y.shape[-1] != n_scales):
        raise ValueError(f"`output`='scale' expects fn(x) of shape (B, H, W, C, {n_scales}), "
                         f"got {tuple(y.shape)}")
    return {n: _scale_step_error(fn, x, y, n, q ** (-n), input=input, output=output, scale_indices=scale_indices,
                                 mask_fraction=mask_fraction, method=method) for n in steps}


def _check_scale_input(x: np.ndarray, input: str, n_scales: int) -> np.ndarray:
    if input == "scale" and (x.ndim != 5 or x.shape[-1] != n_scales):
        raise ValueError(f"a scale map over {n_scales} scales has shape (B, H, W, C, {n_scales}), "
                         f"got {tuple(x.shape)}")
    if input == "plain" and x.ndim != 4:
        raise ValueError(f"a plain map has shape (B, H, W, C), got {tuple(x.shape)}")
    return x


def _scale_step_error(fn: Callable, x: np.ndarray, y: np.ndarray, n: int, t: float, *, input: str, output: str,
                      scale_indices, mask_fraction: float, method: str) -> float:
    """The error of :func:`scale_equivariance_errors` for step ``n`` (spatial factor ``t``), given
    ``y = fn(x)``."""
    xt = _rescale(x, t, method)
    if input == "scale":
        xt = _shift_scales(xt, n)
    got = _np(fn(xt))
    if output == "invariant":
        return _rel(got, y)
    exp = _rescale(y, t, method)
    frac = mask_fraction * (t if n > 0 else 1.0)
    mask = disk_mask(exp.shape[1], exp.shape[2], frac).reshape((1,) + exp.shape[1:3] + (1,) * (exp.ndim - 3))
    if output == "scale":
        idx = _scale_indices(scale_indices, n, y.shape[-1])
        exp = _shift_scales(exp, n)[..., idx]
        got = got[..., idx]
    return _rel(got, exp, mask)


def scale_equivariance_error(fn: Callable, x: ArrayLike, scales, *, input: str = "plain", output: str = "scale",
                             steps: Iterable[int] = (1,), scale_indices: Iterable[int] | None = None,
                             mask_fraction: float = 0.6, method: str = "bicubic") -> float:
    """The largest of :func:`scale_equivariance_errors` over ``steps``.

    Args:
        fn, x, scales, input, output, steps, scale_indices, mask_fraction, method: as
            :func:`scale_equivariance_errors` (``x``: ``(B, H, W, C)``, or ``(B, H, W, C, S)`` with
            ``input="scale"``).

    Returns:
        The largest relative error, a Python float.

    Raises:
        ValueError, TypeError: as :func:`scale_equivariance_errors`.

    Example:
        The identity commutes with any rescaling; a pointwise function only up to the
        interpolation of the test:

        >>> import jax, jax.numpy as jnp
        >>> from equilib.testing import scale_equivariance_error, smooth_random
        >>> x = smooth_random(jax.random.key(0), (1, 15, 15, 1))
        >>> scale_equivariance_error(lambda a: a, x, (1.0, 1.2), output="plain")
        0.0
        >>> scale_equivariance_error(jnp.tanh, x, (1.0, 1.2), output="plain") < 0.05
        True
    """
    return max(scale_equivariance_errors(fn, x, scales, input=input, output=output, steps=steps,
                                         scale_indices=scale_indices, mask_fraction=mask_fraction,
                                         method=method).values())


def assert_scale_equivariant(fn: Callable, x: ArrayLike, scales, *, rtol: float, input: str = "plain",
                             output: str = "scale", steps: Iterable[int] = (1,),
                             scale_indices: Iterable[int] | None = None, mask_fraction: float = 0.6,
                             method: str = "bicubic") -> dict[int, float]:
    """Raise ``AssertionError`` unless every step's :func:`scale_equivariance_errors` is within
    ``rtol``. Scale equivariance on a pixel grid is never exact, so ``rtol`` has no default (the
    caller states, and documents, the tolerance).

    Args:
        fn, x, scales, input, output, steps, scale_indices, mask_fraction, method: as
            :func:`scale_equivariance_errors`.
        rtol: the tolerance, required.

    Returns:
        The errors ``{n: error}`` of :func:`scale_equivariance_errors`.

    Raises:
        AssertionError: a step's error is above ``rtol``; the message lists every error.
        ValueError, TypeError: as :func:`scale_equivariance_errors`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from equilib.testing import assert_scale_equivariant, smooth_random
        >>> x = smooth_random(jax.random.key(0), (1, 15, 15, 1))
        >>> errors = assert_scale_equivariant(jnp.tanh, x, (1.0, 1.2), rtol=0.05, output="plain")
        >>> assert_scale_equivariant(jnp.tanh, x, (1.0, 1.2), rtol=1e-6, output="plain")
        Traceback (most recent call last):
            ...
        AssertionError: not scale-equivariant (plain -> plain): relative error above rtol=1e-06 for steps 1: ...
    """
    errors = scale_equivariance_errors(fn, x, scales, input=input, output=output, steps=steps,
                                       scale_indices=scale_indices, mask_fraction=mask_fraction,
                                       method=method)
    bad = {n: e for n, e in errors.items() if not e <= rtol}
    if bad:
        raise AssertionError(f"not scale-equivariant ({input} -> {output}): relative error above "
                             f"rtol={rtol} for steps {_format(bad)}; all errors: {_format(errors)}")
    return errors


# --- steerable fields (equilib.fields.FieldType) ------------------------------------------------
def _field_act(ftype, a, group: Group, g: int):
    # a steerable map (B, H, W, D) has the spatial layout of a plain map
    if ftype == "invariant":
        return a
    return _np(ftype.transform(a, group.angle(g), group.flip(g)))


def field_equivariance_errors(fn: Callable, x: ArrayLike, in_type, out_type="invariant", *, group: Group | None = None,
                              elements: Iterable[int] | None = None,
                              mask_fraction: float = 0.6) -> dict[int, float]:
    """Relative equivariance error of ``fn`` on steerable maps, per element (``{index: error}``).

    ``x`` is a map ``(B, H, W, D)`` of ``in_type`` (an :class:`equilib.fields.FieldType`); ``g``
    acts on it by ``in_type.transform`` (pixels moved, each field multiplied by ``rho(g)``) and on
    the output by ``out_type.transform``, or not at all if ``out_type="invariant"``. The elements
    tested are those of the finite ``group`` (default: ``in_type.group`` when it is finite; for
    SO(2)/O(2) pass e.g. ``Cyclic(16)`` for multiples of 22.5 degrees), used through their
    ``(angle, flip)``. Off-grid elements are measured as in :func:`equivariance_errors` (input
    masked by a disk, error inside a disk of ``mask_fraction``). With a
    :class:`equilib.fields3d.FieldType3D` the maps are volumes ``(B, D, H, W, C)``; ``elements`` are the
    octahedral group's indices (default all) or, for SO3/O3, rotation matrices (required), measured
    inside balls off the grid.

    Args:
        fn: the function tested, ``(B, H, W, D) -> (B, H', W', D')`` (or anything, if invariant).
        x: its input, a steerable map ``(B, H, W, D)`` with ``D = in_type.size``.
        in_type: the :class:`~equilib.fields.FieldType` of ``x``.
        out_type: the FieldType of ``fn(x)``, or ``"invariant"`` (not transformed at all).
        group: the finite group whose elements are tested; default ``in_type.group`` when it
            is finite, required for SO(2)/O(2).
        elements: the element indices of ``group`` tested (default all).
        mask_fraction: as for :func:`equivariance_errors`.

    Returns:
        ``{g: error}``: the relative error (a Python float) for each tested element.

    Raises:
        TypeError: ``in_type`` is not a FieldType, ``out_type`` neither a FieldType nor
            ``"invariant"``, or ``group`` not a finite group.
        ValueError: ``group`` is missing for SO(2)/O(2) fields, ``x`` is not a map
            ``(B, H, W, in_type.size)``, or an element is out of range.

    Example:
        >>> import jax
        >>> from flax import nnx
        >>> from equilib import Cyclic, FieldType, nn
        >>> from equilib.reps import regular_rep, trivial_rep
        >>> from equilib.testing import field_equivariance_errors, smooth_random
        >>> G = Cyclic(4)
        >>> t_in, t_out = FieldType(G, [trivial_rep(G)]), FieldType(G, [regular_rep(G)] * 2)
        >>> conv = nn.SteerableConv(t_in, t_out, 3, rngs=nnx.Rngs(0))
        >>> x = smooth_random(jax.random.key(0), (1, 9, 9, t_in.size))  # (B, H, W, D)
        >>> errors = field_equivariance_errors(conv, x, t_in, t_out)
        >>> sorted(errors), max(errors.values()) < 1e-5
        ([0, 1, 2, 3], True)
    """
    if isinstance(in_type, FieldType3D):
        return _volume_field_errors(fn, x, in_type, out_type, elements, mask_fraction)
    if not isinstance(in_type, FieldType):
        raise TypeError(f"`in_type` must be a FieldType, got {type(in_type).__name__}")
    if not (out_type == "invariant" or isinstance(out_type, FieldType)):
        raise TypeError(f"`out_type` must be a FieldType or 'invariant', got {out_type!r}")
    if group is None:
        if not isinstance(in_type.group, Group):
            raise ValueError(f"`group` is required for {in_type.group.name} fields: the finite group whose "
                             f"elements are tested, e.g. Cyclic(16) for multiples of 22.5 degrees")
        group = in_type.group
    group = as_group(group)
    els = elements_of(group, elements)
    x = _np(x)
    in_type.check(x, "x")
    return _element_errors(fn, x, group, els, lambda a, g: _field_act(in_type, a, group, g),
                           lambda a, g: _field_act(out_type, a, group, g),
                           "plain", "invariant" if out_type == "invariant" else "plain", mask_fraction)


def field_equivariance_error(fn: Callable, x: ArrayLike, in_type, out_type="invariant", *, group: Group | None = None,
                             elements: Iterable[int] | None = None, mask_fraction: float = 0.6) -> float:
    """The largest of :func:`field_equivariance_errors`.

    Args:
        fn, x, in_type, out_type, group, elements, mask_fraction: as
            :func:`field_equivariance_errors` (``x``: ``(B, H, W, in_type.size)``).

    Returns:
        The largest relative error, a Python float.

    Raises:
        TypeError, ValueError: as :func:`field_equivariance_errors`.

    Example:
        Scaling an SO(2) vector field commutes with every rotation, tested at multiples of
        45 degrees:

        >>> import jax
        >>> from equilib import SO2, Cyclic, FieldType
        >>> from equilib.reps import irrep
        >>> from equilib.testing import field_equivariance_error, smooth_random
        >>> vectors = FieldType(SO2(), [irrep(SO2(), 1)])
        >>> v = smooth_random(jax.random.key(1), (1, 9, 9, 2))  # (B, H, W, D)
        >>> field_equivariance_error(lambda a: 2 * a, v, vectors, vectors, group=Cyclic(8))
        0.0
    """
    return max(field_equivariance_errors(fn, x, in_type, out_type, group=group, elements=elements,
                                         mask_fraction=mask_fraction).values())


def assert_field_equivariant(fn: Callable, x: ArrayLike, in_type, out_type="invariant", *, group: Group | None = None,
                             elements: Iterable[int] | None = None, rtol: float = 1e-5,
                             off_grid_rtol: float | None = None, mask_fraction: float = 0.6) -> dict[int, float]:
    """Raise ``AssertionError`` unless every element's error (:func:`field_equivariance_errors`) is
    within ``rtol`` (grid-preserving elements) or the explicit ``off_grid_rtol`` (other angles).

    Args:
        fn, x, in_type, out_type, group, elements, mask_fraction: as :func:`field_equivariance_errors`.
        rtol: the tolerance of grid-preserving elements (default 1e-5, fp32 exact).
        off_grid_rtol: the tolerance of the other elements; required if any is tested.

    Returns:
        The errors ``{g: error}`` of :func:`field_equivariance_errors`.

    Raises:
        AssertionError: an error above its tolerance; the message lists every element's error.
        ValueError: ``group`` is missing for SO(2)/O(2) fields, off-grid elements are tested
            without ``off_grid_rtol``; and as :func:`field_equivariance_errors`.
        TypeError: as :func:`field_equivariance_errors`.

    Example:
        >>> import jax
        >>> from equilib import SO2, Cyclic, FieldType
        >>> from equilib.reps import irrep
        >>> from equilib.testing import assert_field_equivariant, smooth_random
        >>> vectors = FieldType(SO2(), [irrep(SO2(), 1)])
        >>> v = smooth_random(jax.random.key(1), (1, 9, 9, 2))
        >>> errors = assert_field_equivariant(lambda a: 2 * a, v, vectors, vectors, group=Cyclic(4))
        >>> assert_field_equivariant(lambda a: 2 * a, v, vectors, vectors)
        Traceback (most recent call last):
            ...
        ValueError: `group` is required for SO(2)/O(2) fields (the finite group of tested elements)
    """
    if isinstance(in_type, FieldType3D):
        return _assert_volume(lambda: _volume_field_errors(fn, x, in_type, out_type, elements, mask_fraction),
                              in_type.group, elements, rtol, off_grid_rtol,
                              f"{in_type.group.name}-equivariant ({in_type!r} -> {out_type!r})")
    if group is None and isinstance(in_type, FieldType) and isinstance(in_type.group, Group):
        group = in_type.group
    if group is None:
        raise ValueError("`group` is required for SO(2)/O(2) fields (the finite group of tested elements)")
    group = as_group(group)
    name = in_type.group.name if isinstance(in_type, FieldType) else group.name
    return _assert_within(
        lambda els: field_equivariance_errors(fn, x, in_type, out_type, group=group, elements=els,
                                              mask_fraction=mask_fraction),
        group, elements_of(group, elements), rtol, off_grid_rtol,
        f"{name}-equivariant (fields, tested with {group.name})")

