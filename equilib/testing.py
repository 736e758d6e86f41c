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

Translations: :func:`translation_errors` compares ``fn(roll(x, s))`` with ``roll(fn(x), s /
stride)`` for circular shifts ``s`` (or with ``fn(x)`` for invariant outputs).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from equilib.groups import Group, as_group, elements_of

__all__ = [
    "equivariance_errors",
    "equivariance_error",
    "assert_equivariant",
    "translation_errors",
    "translation_error",
    "assert_translation_equivariant",
    "disk_mask",
    "smooth_random",
    "scale_equivariance_errors",
    "scale_equivariance_error",
    "assert_scale_equivariant",
]

_INPUTS = ("plain", "regular")
_OUTPUTS = ("plain", "regular", "invariant")


def disk_mask(h: int, w: int, fraction: float = 1.0) -> np.ndarray:
    """``(h, w)`` float mask: 1 inside the centred disk of radius ``fraction * min(h, w) / 2``."""
    ch, cw = (h - 1) / 2.0, (w - 1) / 2.0
    r, c = np.meshgrid(np.arange(h) - ch, np.arange(w) - cw, indexing="ij")
    radius = fraction * min(h, w) / 2.0
    return (r**2 + c**2 <= radius**2).astype(np.float32)


def smooth_random(key, shape: Sequence[int], *, sigma: float = 1.5, axes=(1, 2)):
    """Gaussian noise blurred by a Gaussian of std ``sigma`` pixels along ``axes`` (periodic),
    rescaled to unit standard deviation: band-limited inputs for off-grid equivariance tests."""
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
    if kind == "plain":
        if a.ndim < 3:
            raise ValueError(f"a plain map needs spatial axes (B, H, W, C), got shape {tuple(a.shape)}")
        return _np(group.transform_image(a, g, axes=(-3, -2)))
    if kind == "regular":
        if a.ndim < 4 or a.shape[-1] != group.order:
            raise ValueError(f"a regular map over {group.name} has shape (B, H, W, C, {group.order}), "
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


def _broadcast_mask(mask2d, kind: str, ndim: int):
    shape = list(mask2d.shape) + [1] * (1 if kind == "plain" else 2)
    return np.asarray(mask2d).reshape(shape)


def equivariance_errors(fn: Callable, x, group: Group, *, input: str = "plain", output: str = "plain",
                        elements: Iterable[int] | None = None, mask_fraction: float = 0.6) -> dict[int, float]:
    """Relative equivariance error of ``fn`` at ``x`` for each element (``{index: error}``).

    See the module docstring for the definition, the actions and the off-grid masks.
    ``elements`` defaults to all elements of ``group``.
    """
    group = as_group(group)
    _check_kinds(input, output)
    els = elements_of(group, elements)
    x = _np(x)
    y = None
    errors = {}
    for g in els:
        if group.is_grid_preserving(g):
            if y is None:
                y = _np(fn(x))
            errors[g] = _rel(fn(_act(group, input, x, g)), _act(group, output, y, g))
            continue
        ax = _spatial_axes(input)
        h, w = x.shape[ax[0]], x.shape[ax[1]]
        xm = x * _broadcast_mask(disk_mask(h, w), input, x.ndim)
        ym = _np(fn(xm))
        out = fn(_act(group, input, xm, g))
        exp = _act(group, output, ym, g)
        mask = None
        if output != "invariant":
            oa = _spatial_axes(output)
            mask = _broadcast_mask(disk_mask(exp.shape[oa[0]], exp.shape[oa[1]], mask_fraction),
                                   output, exp.ndim)
        errors[g] = _rel(out, exp, mask)
    return errors


def equivariance_error(fn: Callable, x, group: Group, *, input: str = "plain", output: str = "plain",
                       elements: Iterable[int] | None = None, mask_fraction: float = 0.6) -> float:
    """The largest of :func:`equivariance_errors` over ``elements``."""
    return max(equivariance_errors(fn, x, group, input=input, output=output, elements=elements,
                                   mask_fraction=mask_fraction).values())


def _format(errors: dict, group: Group | None = None) -> str:
    if group is None:
        return ", ".join(f"{k}: {v:.3g}" for k, v in errors.items())
    return ", ".join(f"{g} (k={group.rotation(g)}, f={group.flip(g)}, "
                     f"{np.degrees(group.angle(g)):.1f} deg): {v:.3g}" for g, v in errors.items())


def assert_equivariant(fn: Callable, x, group: Group, *, input: str = "plain", output: str = "plain",
                       elements: Iterable[int] | None = None, rtol: float = 1e-5,
                       off_grid_rtol: float | None = None, mask_fraction: float = 0.6) -> dict[int, float]:
    """Raise ``AssertionError`` unless every element's error is below its tolerance.

    Grid-preserving elements must be within ``rtol`` (default 1e-5, fp32 exact). Off-grid
    elements must be within ``off_grid_rtol``, which must then be given explicitly (a loose
    tolerance is a claim the caller documents). Returns the errors.
    """
    group = as_group(group)
    els = elements_of(group, elements)
    off = [g for g in els if not group.is_grid_preserving(g)]
    if off and off_grid_rtol is None:
        raise ValueError(f"elements {off} of {group.name} do not map the grid to itself: pass "
                         f"`off_grid_rtol` (their error is approximate) or leave them out of `elements`")
    errors = equivariance_errors(fn, x, group, input=input, output=output, elements=els,
                                 mask_fraction=mask_fraction)
    bad = {g: e for g, e in errors.items()
           if not e <= (rtol if group.is_grid_preserving(g) else off_grid_rtol)}
    if bad:
        raise AssertionError(
            f"not {group.name}-equivariant ({input} -> {output}): relative error above "
            f"rtol={rtol}" + (f" / off_grid_rtol={off_grid_rtol}" if off else "")
            + f" for elements {_format(bad, group)}; all errors: {_format(errors, group)}")
    return errors


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


def translation_errors(fn: Callable, x, shifts: Iterable[Sequence[int]] | None = None, *,
                       input: str = "plain", output: str = "plain",
                       stride: int = 1) -> dict[tuple[int, int], float]:
    """Relative error of ``fn`` under circular shifts ``(dy, dx)`` of the input's spatial axes.

    The output is expected to be rolled by ``(dy, dx) / stride`` (``stride`` is the network's
    total subsampling factor; shifts must be multiples of it), or unchanged if
    ``output="invariant"``. ``shifts`` defaults to every multiple of ``stride`` in the image.
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


def translation_error(fn: Callable, x, shifts=None, *, input: str = "plain", output: str = "plain",
                      stride: int = 1) -> float:
    """The largest of :func:`translation_errors`."""
    return max(translation_errors(fn, x, shifts, input=input, output=output, stride=stride).values())


def assert_translation_equivariant(fn: Callable, x, shifts=None, *, input: str = "plain",
                                   output: str = "plain", stride: int = 1, rtol: float = 1e-5):
    """Raise ``AssertionError`` unless every circular shift gives an error within ``rtol``."""
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


def _rescale_impl(a, factor, *, method, axes):
    from equilib._imaging import rescale

    return rescale(a, factor, method=method, axes=axes)


_rescale_jit = jax.jit(_rescale_impl, static_argnames=("method", "axes"))


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


def scale_equivariance_errors(fn: Callable, x, scales, *, input: str = "plain", output: str = "scale",
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
    """
    if input not in _SCALE_INPUTS:
        raise ValueError(f"`input` must be one of {_SCALE_INPUTS}, got {input!r}")
    if output not in _SCALE_OUTPUTS:
        raise ValueError(f"`output` must be one of {_SCALE_OUTPUTS}, got {output!r}")
    q = _scale_ratio(scales)
    n_scales = len(tuple(scales))
    steps = tuple(steps)
    for n in steps:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n == 0 or abs(n) >= n_scales:
            raise ValueError(f"`steps` must be non-zero integers with |step| < len(scales) "
                             f"(={n_scales}), got {steps!r}")
    x = _np(x)
    if input == "scale" and (x.ndim != 5 or x.shape[-1] != n_scales):
        raise ValueError(f"a scale map over {n_scales} scales has shape (B, H, W, C, {n_scales}), "
                         f"got {tuple(x.shape)}")
    if input == "plain" and x.ndim != 4:
        raise ValueError(f"a plain map has shape (B, H, W, C), got {tuple(x.shape)}")
    y = _np(fn(x))
    if output == "scale" and (y.ndim != 5 or y.shape[-1] != n_scales):
        raise ValueError(f"`output`='scale' expects fn(x) of shape (B, H, W, C, {n_scales}), "
                         f"got {tuple(y.shape)}")
    errors = {}
    for n in steps:
        n = int(n)
        t = q ** (-n)
        xt = _rescale(x, t, method)
        if input == "scale":
            xt = _shift_scales(xt, n)
        got = _np(fn(xt))
        if output == "invariant":
            errors[n] = _rel(got, y)
            continue
        exp = _rescale(y, t, method)
        frac = mask_fraction * (t if n > 0 else 1.0)
        mask = disk_mask(exp.shape[1], exp.shape[2], frac).reshape(
            (1,) + exp.shape[1:3] + (1,) * (exp.ndim - 3))
        if output == "scale":
            if scale_indices is None:
                idx = [j for j in range(n_scales) if 0 <= j + n < n_scales]
            else:
                idx = [int(j) for j in scale_indices]
                bad = [j for j in idx if not (0 <= j < n_scales and 0 <= j + n < n_scales)]
                if bad:
                    raise ValueError(f"`scale_indices` {bad} have no source index j + step "
                                     f"(step {n}) in [0, {n_scales})")
            exp = _shift_scales(exp, n)[..., idx]
            got = got[..., idx]
        errors[n] = _rel(got, exp, mask)
    return errors


def scale_equivariance_error(fn: Callable, x, scales, *, input: str = "plain", output: str = "scale",
                             steps: Iterable[int] = (1,), scale_indices: Iterable[int] | None = None,
                             mask_fraction: float = 0.6, method: str = "bicubic") -> float:
    """The largest of :func:`scale_equivariance_errors` over ``steps``."""
    return max(scale_equivariance_errors(fn, x, scales, input=input, output=output, steps=steps,
                                         scale_indices=scale_indices, mask_fraction=mask_fraction,
                                         method=method).values())


def assert_scale_equivariant(fn: Callable, x, scales, *, rtol: float, input: str = "plain",
                             output: str = "scale", steps: Iterable[int] = (1,),
                             scale_indices: Iterable[int] | None = None, mask_fraction: float = 0.6,
                             method: str = "bicubic") -> dict[int, float]:
    """Raise ``AssertionError`` unless every step's :func:`scale_equivariance_errors` is within
    ``rtol``. Scale equivariance on a pixel grid is never exact, so ``rtol`` has no default (the
    caller states, and documents, the tolerance). Returns the errors."""
    errors = scale_equivariance_errors(fn, x, scales, input=input, output=output, steps=steps,
                                       scale_indices=scale_indices, mask_fraction=mask_fraction,
                                       method=method)
    bad = {n: e for n, e in errors.items() if not e <= rtol}
    if bad:
        raise AssertionError(f"not scale-equivariant ({input} -> {output}): relative error above "
                             f"rtol={rtol} for steps {_format(bad)}; all errors: {_format(errors)}")
    return errors


# --- steerable fields (equilib.fields.FieldType) ------------------------------------------------
def _field_act(ftype, a, angle: float, flip: int):
    if ftype == "invariant":
        return a
    return _np(ftype.transform(a, angle, flip))


def field_equivariance_errors(fn: Callable, x, in_type, out_type="invariant", *, group: Group | None = None,
                              elements: Iterable[int] | None = None,
                              mask_fraction: float = 0.6) -> dict[int, float]:
    """Relative equivariance error of ``fn`` on steerable maps, per element (``{index: error}``).

    ``x`` is a map ``(B, H, W, D)`` of ``in_type`` (an :class:`equilib.fields.FieldType`); ``g``
    acts on it by ``in_type.transform`` (pixels moved, each field multiplied by ``rho(g)``) and on
    the output by ``out_type.transform``, or not at all if ``out_type="invariant"``. The elements
    tested are those of the finite ``group`` (default: ``in_type.group`` when it is finite; for
    SO(2)/O(2) pass e.g. ``Cyclic(16)`` for multiples of 22.5 degrees), used through their
    ``(angle, flip)``. Off-grid elements are measured as in :func:`equivariance_errors` (input
    masked by a disk, error inside a disk of ``mask_fraction``).
    """
    from equilib.fields import FieldType

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
    y = None
    errors = {}
    for g in els:
        angle, flip = group.angle(g), group.flip(g)
        if group.is_grid_preserving(g):
            if y is None:
                y = _np(fn(x))
            errors[g] = _rel(fn(_field_act(in_type, x, angle, flip)), _field_act(out_type, y, angle, flip))
            continue
        h, w = x.shape[1], x.shape[2]
        xm = x * disk_mask(h, w)[:, :, None]
        ym = _np(fn(xm))
        out = _np(fn(_field_act(in_type, xm, angle, flip)))
        exp = _field_act(out_type, ym, angle, flip)
        mask = None
        if out_type != "invariant":
            mask = disk_mask(exp.shape[1], exp.shape[2], mask_fraction)[:, :, None]
        errors[g] = _rel(out, exp, mask)
    return errors


def field_equivariance_error(fn: Callable, x, in_type, out_type="invariant", *, group: Group | None = None,
                             elements: Iterable[int] | None = None, mask_fraction: float = 0.6) -> float:
    """The largest of :func:`field_equivariance_errors`."""
    return max(field_equivariance_errors(fn, x, in_type, out_type, group=group, elements=elements,
                                         mask_fraction=mask_fraction).values())


def assert_field_equivariant(fn: Callable, x, in_type, out_type="invariant", *, group: Group | None = None,
                             elements: Iterable[int] | None = None, rtol: float = 1e-5,
                             off_grid_rtol: float | None = None, mask_fraction: float = 0.6) -> dict[int, float]:
    """Raise ``AssertionError`` unless every element's error (:func:`field_equivariance_errors`) is
    within ``rtol`` (grid-preserving elements) or the explicit ``off_grid_rtol`` (other angles).
    Returns the errors."""
    from equilib.fields import FieldType

    if group is None and isinstance(in_type, FieldType) and isinstance(in_type.group, Group):
        group = in_type.group
    if group is None:
        raise ValueError("`group` is required for SO(2)/O(2) fields (the finite group of tested elements)")
    group = as_group(group)
    els = elements_of(group, elements)
    off = [g for g in els if not group.is_grid_preserving(g)]
    if off and off_grid_rtol is None:
        raise ValueError(f"elements {off} of {group.name} do not map the grid to itself: pass "
                         f"`off_grid_rtol` (their error is approximate) or leave them out of `elements`")
    errors = field_equivariance_errors(fn, x, in_type, out_type, group=group, elements=els,
                                       mask_fraction=mask_fraction)
    bad = {g: e for g, e in errors.items()
           if not e <= (rtol if group.is_grid_preserving(g) else off_grid_rtol)}
    if bad:
        name = in_type.group.name if isinstance(in_type, FieldType) else group.name
        raise AssertionError(
            f"not {name}-equivariant (fields, tested with {group.name}): relative error above "
            f"rtol={rtol}" + (f" / off_grid_rtol={off_grid_rtol}" if off else "")
            + f" for elements {_format(bad, group)}; all errors: {_format(errors, group)}")
    return errors


__all__ += ["field_equivariance_errors", "field_equivariance_error", "assert_field_equivariant"]
