"""Spatial pooling (issue 3): max/avg pooling, BlurPool, MaxBlurPool, APS, global and group pooling.

Exhaustive checks run over ALL elements of C4 and D4 and ALL circular shifts, with every
transformed copy batched into one call of a jitted function.
"""

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import equilib
from equilib import functional as F
from equilib import nn
from equilib.functional._spatial_pool import _phase_keys, _polyphase, _structural_keys
from equilib.groups import Cyclic, Dihedral
from equilib.groups3d import Octahedral
from equilib.testing import (
    assert_equivariant,
    assert_translation_equivariant,
    equivariance_error,
    equivariance_errors,
    translation_error,
    translation_errors,
)

C4, D4 = Cyclic(4), Dihedral(4)
GROUPS = [C4, D4]


def _map(key, size, kind, group=D4, channels=3, batch=2):
    shape = (batch, size[0], size[1], channels) + ((group.order,) if kind == "regular" else ())
    return np.random.default_rng(key).standard_normal(shape).astype(np.float32)  # no XLA compile


def _act(group, kind, x, g):
    return np.asarray(group.transform_regular(x, g) if kind == "regular"
                      else group.transform_image(x, g, axes=(1, 2)))


def _phase_action(group, g, shape_hw, shift=(0, 0)):
    """new_phase[q] for each input phase q = 2*i + j under roll(shift) then g, from index maps
    (independent of aps_pool): the new phase is where the old one's pixels land mod 2."""
    h, w = shape_hw
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    idx = 2 * (r % 2) + (c % 2)
    moved = group.transform_image(np.roll(idx, shift, axis=(0, 1)), g, axes=(0, 1))
    out = np.empty(4, dtype=np.int64)
    for i in range(2):
        for j in range(2):
            out[moved[i, j]] = 2 * i + j
    return out


# --- binomial filter ----------------------------------------------------------------------------
def test_binomial_filter():
    for k in range(1, 8):
        f1 = F.binomial_filter(k, ndim=1)
        np.testing.assert_array_equal(f1 * 2 ** (k - 1), [math.comb(k - 1, i) for i in range(k)])
        f2 = F.binomial_filter(k)
        assert f2.shape == (k, k) and f2.dtype == np.float32
        assert abs(float(f2.sum()) - 1.0) < 1e-7
        for g in range(8):  # invariant under D4
            np.testing.assert_array_equal(D4.transform_image(f2, g, axes=(0, 1)), f2)
    np.testing.assert_array_equal(F.binomial_filter(3, ndim=1), [0.25, 0.5, 0.25])
    np.testing.assert_array_equal(F.binomial_filter(7, ndim=1) * 64, [1, 6, 15, 20, 15, 6, 1])


# --- references ---------------------------------------------------------------------------------
def test_max_and_avg_pool_match_flax():
    x = jnp.asarray(_map(0, (9, 9), "plain"))
    for window, stride, padding in [(2, 2, "VALID"), (3, 2, "SAME"), (3, 1, "SAME"), (2, 1, "VALID")]:
        np.testing.assert_array_equal(F.max_pool(x, window, stride, padding),
                                      nnx.max_pool(x, (window,) * 2, (stride,) * 2, padding))
        np.testing.assert_allclose(F.avg_pool(x, window, stride, padding),
                                   nnx.avg_pool(x, (window,) * 2, (stride,) * 2, padding), rtol=1e-6)
        np.testing.assert_allclose(F.avg_pool(x, window, stride, padding, count_include_pad=False),
                                   nnx.avg_pool(x, (window,) * 2, (stride,) * 2, padding,
                                                count_include_pad=False), rtol=1e-6)
    # circular: periodic pads of "SAME", then no padding
    wrapped = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="wrap")
    np.testing.assert_array_equal(F.max_pool(x, 3, 1, "circular"), nnx.max_pool(wrapped, (3, 3), (1, 1)))
    # integer inputs
    xi = jnp.arange(16, dtype=jnp.int32).reshape(1, 4, 4, 1) - 20
    np.testing.assert_array_equal(F.max_pool(xi, 2, 2, "SAME")[0, ..., 0], [[-15, -13], [-7, -5]])
    assert F.avg_pool(xi).dtype == jnp.float32


@pytest.mark.parametrize("shape, window, padding", [((2, 8, 8, 3, 4), 2, "VALID"), ((2, 9, 7, 3), 2, "VALID"),
                                                   ((1, 9, 9, 2), 3, "SAME"), ((1, 6, 6, 2, 4), 2, "CIRCULAR")])
def test_tiled_max_pool_matches_reduce_window_values_and_gradients(shape, window, padding):
    # non-overlapping windows take the reshape path; checked against reduce_window (the other path)
    from equilib.functional._spatial_pool import _reduce_window

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal(shape).astype(np.float32))  # no ties
    pooled = lambda z: F.max_pool(z, window, None, padding)
    reference = lambda z: _reduce_window(z, -jnp.inf, jax.lax.max, window, window, [(0, 0), (0, 0)])
    np.testing.assert_array_equal(pooled(x), reference(x))
    weights = jnp.asarray(rng.standard_normal(reference(x).shape).astype(np.float32))
    grad = lambda f: jax.grad(lambda z: jnp.sum(f(z) * weights))(x)
    np.testing.assert_array_equal(grad(pooled), grad(reference))


def test_tiled_max_pool_shares_the_gradient_of_a_tie():
    # reduce_window's gradient gives it to one entry
    g = jax.grad(lambda z: jnp.sum(F.max_pool(z)))(jnp.zeros((1, 2, 2, 1)))
    np.testing.assert_allclose(g[0, ..., 0], [[0.25, 0.25], [0.25, 0.25]])


def _blur_reference(x, k, stride, padding):
    """Zhang's BlurPool in numpy: 2D depthwise correlation with the outer binomial filter."""
    filt = F.binomial_filter(k).astype(np.float64)
    x = np.asarray(x, np.float64)
    pads = [F.padding_pads(n, k, stride, "SAME") for n in x.shape[1:3]]
    mode = {"reflect": "reflect", "circular": "wrap", "zeros": "constant"}[padding]
    xp = np.pad(x, [(0, 0), pads[0], pads[1]] + [(0, 0)] * (x.ndim - 3), mode=mode)
    oh = (xp.shape[1] - k) // stride + 1
    ow = (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], oh, ow) + x.shape[3:])
    for a in range(k):
        for b in range(k):
            out += filt[a, b] * xp[:, a:a + stride * (oh - 1) + 1:stride, b:b + stride * (ow - 1) + 1:stride]
    return out


@pytest.mark.parametrize("padding", ["reflect", "circular", "zeros"])
def test_blur_pool_matches_reference(padding):
    x = _map(1, (11, 10), "regular", C4, batch=1)
    configs = [(k, 2) for k in range(1, 8)] + [(3, 1), (4, 1), (4, 3)]
    outs = jax.jit(lambda z: [F.blur_pool(z, k, s, padding) for k, s in configs])(x)
    for (k, stride), y in zip(configs, outs):
        np.testing.assert_allclose(y, _blur_reference(x, k, stride, padding), rtol=1e-5, atol=1e-6,
                                   err_msg=f"k={k} stride={stride}")
    # stride 1 pads as Zhang's BlurPool: (K-1)//2 before, K//2 after; filter 1 is subsampling
    assert F.padding_pads(10, 4, 1, "SAME") == (1, 2)
    np.testing.assert_array_equal(outs[0], x[:, ::2, ::2])


def test_max_blur_pool_is_max_then_blur():
    x = _map(2, (16, 16), "plain")
    y = F.max_blur_pool(x)  # window 2, filter 3, stride 2, reflect: 16 -> 15 -> 8
    assert y.shape == (2, 8, 8, 3)
    expected = _blur_reference(nnx.max_pool(x, (2, 2), (1, 1)), 3, 2, "reflect")
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    yc = F.max_blur_pool(x, 2, 4, 2, "circular")  # periodic max stage keeps the size: 16 -> 16 -> 8
    wrapped = jnp.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)], mode="wrap")
    np.testing.assert_allclose(yc, _blur_reference(nnx.max_pool(wrapped, (2, 2), (1, 1)), 4, 2, "circular"),
                               rtol=1e-5, atol=1e-6)


# --- rot90 / flip equivariance through the harness ---------------------------------------------
SYMMETRIC_LAYERS = [  # (factory, spatial size) with symmetric sampling: exact rot90/flip
    ("MaxPool(2)", lambda: nn.MaxPool(2), 16),
    ("MaxPool(3,2,SAME)", lambda: nn.MaxPool(3, 2, "SAME"), 15),
    ("MaxPool(3,1,CIRCULAR)", lambda: nn.MaxPool(3, 1, "CIRCULAR"), 10),
    ("AvgPool(2)", lambda: nn.AvgPool(2), 16),
    ("AvgPool(3,2,SAME,excl)", lambda: nn.AvgPool(3, 2, "SAME", count_include_pad=False), 15),
    ("BlurPool(3,2,reflect)", lambda: nn.BlurPool(3, 2, "reflect"), 15),
    ("BlurPool(4,2,zeros)", lambda: nn.BlurPool(4, 2, "zeros"), 16),
    ("BlurPool(5,1,circular)", lambda: nn.BlurPool(5, 1, "circular"), 12),
    ("BlurPool(7,2,reflect)", lambda: nn.BlurPool(7, 2, "reflect"), 17),
    ("MaxBlurPool()", lambda: nn.MaxBlurPool(), 16),
    ("MaxBlurPool(3,3,2,circular)", lambda: nn.MaxBlurPool(3, 3, 2, "circular"), 13),
    ("APSPool(l2)", lambda: nn.APSPool(), 16),
]


@pytest.mark.filterwarnings("error::equilib.ExactnessWarning")
@pytest.mark.parametrize("name,factory,size", SYMMETRIC_LAYERS, ids=[s[0] for s in SYMMETRIC_LAYERS])
def test_layers_are_exactly_group_equivariant(name, factory, size):
    """Every element of D4 (which contains C4) on plain and D4-regular maps; APS, which mixes the
    group axis into its choice, also on C4-regular maps. Exact to float rounding."""
    layer = factory()
    fn = jax.jit(lambda z: layer(z))
    cases = [("plain", D4), ("regular", D4)] + ([("regular", C4)] if name.startswith("APS") else [])
    for kind, G in cases:
        x = _map(len(name) + size, (size, size), kind, G)
        errors = assert_equivariant(fn, x, G, input=kind, output=kind)
        assert max(errors.values()) < 1e-6, (kind, G, errors)


@pytest.mark.parametrize("G", GROUPS, ids=str)
def test_global_and_group_pooling_are_invariant(G):
    xr = _map(3, (9, 9), "regular", G)
    xp = _map(4, (8, 8), "plain", G)
    for mode in ("mean", "max"):
        assert_equivariant(nn.GlobalPool(mode), xp, G, output="invariant")
        assert_equivariant(nn.GlobalPool(mode), xr, G, input="regular", output="invariant")
        for group_mode in ("max", "mean", "norm"):
            layer = nn.GlobalPool(mode, group_mode=group_mode)
            assert_equivariant(layer, xr, G, input="regular", output="invariant")
            assert_translation_equivariant(layer, xr, [(1, 0), (3, 5)], input="regular", output="invariant")
    for mode in ("max", "mean"):
        assert_equivariant(nn.GroupPool(mode), xr, G, input="regular", output="plain")


def test_global_and_group_pool_values_and_norm_gradient():
    x = _map(5, (5, 6), "regular", C4)
    np.testing.assert_allclose(F.global_pool(x), x.mean(axis=(1, 2, 4)), rtol=1e-5)
    np.testing.assert_allclose(F.global_pool(x, "max"), x.max(axis=(1, 2, 4)))
    np.testing.assert_allclose(F.global_pool(x, "mean", group_mode="norm"),
                               np.linalg.norm(x, axis=-1).mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(F.global_pool(x[..., 0]), x[..., 0].mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(F.global_pool(x, "max", group_mode="norm"),
                               np.linalg.norm(x, axis=-1).max(axis=(1, 2)), rtol=1e-5)
    z = jnp.zeros((1, 2, 2, 1, 4)).at[0, 0, 0, 0].set(jnp.array([3.0, 4.0, 0.0, 0.0]))
    grad = jax.jit(jax.grad(lambda z: F.global_pool(z, "mean", group_mode="norm").sum()))(z)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[0, 0, 0, 0], [0.15, 0.2, 0.0, 0.0], rtol=1e-6)  # (3, 4)/5 / 4 pixels
    np.testing.assert_array_equal(grad[0, 1], 0.0)  # the norm's gradient at 0 is 0, not nan


# --- exactness warnings and the rotation negative controls -------------------------------------
@pytest.mark.parametrize("factory,size,match", [
    (lambda: nn.MaxPool(2), 15, "MaxPool: input size H=15, W=15 with kernel_size=2, stride=2"),
    (lambda: nn.AvgPool(3, 2, "SAME"), 16, "AvgPool: input size H=16"),
    (lambda: nn.BlurPool(3, 2, "reflect"), 16, r"BlurPool\(padding='reflect'.* stride=2"),
    (lambda: nn.BlurPool(4, 1, "circular"), 9, r"BlurPool\(padding='circular'.* kernel_size=4, stride=1"),
    (lambda: nn.MaxBlurPool(), 15, r"MaxBlurPool \(blur stage"),
    (lambda: nn.MaxBlurPool(padding="circular"), 15, r"MaxBlurPool \(max stage\)"),
])
def test_asymmetric_sampling_warns_and_is_not_exact(factory, size, match):
    layer = factory()
    x = _map(6, (size, size), "regular", C4)
    with pytest.warns(equilib.ExactnessWarning, match=match):
        layer(x)
    assert equilib.check_exact(layer, x.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", equilib.ExactnessWarning)
        err = equivariance_error(jax.jit(lambda z: layer(z)), x, C4, input="regular", output="regular")
    assert err > 1e-2, err


def test_aps_never_warns_and_check_exact_sees_the_model():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for size in (8, 16, 30):
            jax.eval_shape(nn.APSPool(filter_size=4), jax.ShapeDtypeStruct((1, size, size, 2), jnp.float32))
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.LiftingConv(1, 2, 3, group=C4, padding="CIRCULAR", rngs=rngs),
                          nn.APSPool(), nn.MaxPool(2), nn.GlobalPool())
    assert equilib.check_exact(model, (1, 16, 16, 1)) == []       # 16 -> APS 8 -> max 4
    problems = equilib.check_exact(model, (1, 14, 14, 1))         # 14 -> APS 7 -> max: asymmetric
    assert len(problems) == 1 and problems[0].startswith("MaxPool")


# --- translations -----------------------------------------------------------------------------
def test_translation_equivariance_and_the_strided_max_pool_negative_control():
    x = _map(7, (16, 16), "regular", C4)
    # stride-2 layers commute with shifts by multiples of 2 (circular / tiling windows) ...
    assert_translation_equivariant(jax.jit(F.max_pool), x, input="regular", output="regular", stride=2)
    blur = jax.jit(functools.partial(F.blur_pool, filter_size=3, stride=2, padding="circular"))
    assert_translation_equivariant(blur, x, input="regular", output="regular", stride=2)
    assert_translation_equivariant(jax.jit(functools.partial(F.blur_pool, filter_size=5, stride=1,
                                                             padding="circular")), x, input="regular", output="regular")
    assert_translation_equivariant(jax.jit(functools.partial(F.max_pool, window=3, stride=1, padding="CIRCULAR")),
                                   x, input="regular", output="regular")
    # ... but, pooled globally, not to odd shifts: strided max-pooling breaks shift invariance
    strided = jax.jit(lambda z: F.global_pool(jax.nn.relu(F.max_pool(z) - 0.5)))
    with pytest.raises(AssertionError, match="not translation-invariant"):
        assert_translation_equivariant(strided, x, input="regular", output="invariant")
    errors = translation_errors(strided, x, input="regular", output="invariant")
    assert max(errors.values()) > 1e-2
    assert max(errors[s] for s in errors if s[0] % 2 == 0 and s[1] % 2 == 0) < 1e-6
    # APS: equivariant to even shifts, and invariant to all 256 after a global pooling
    aps = jax.jit(F.aps_pool)
    assert_translation_equivariant(aps, x, input="regular", output="regular", stride=2)
    pooled = jax.jit(lambda z: F.global_pool(jax.nn.relu(F.aps_pool(z) - 0.5)))
    assert translation_error(pooled, x, input="regular", output="invariant") < 1e-6


@functools.partial(jax.jit, static_argnames=("criterion", "filter_size"))
def _aps(x, criterion="l2", filter_size=1):
    return F.aps_pool(x, criterion=criterion, filter_size=filter_size, return_phase=True)


APS_CASES = [(c, D4, "regular", (8, 8)) for c in ("l2", "linf")] + [
    ("l2", C4, "regular", (8, 8)), ("linf", D4, "plain", (8, 8)), ("l1", D4, "plain", (6, 10))]


@pytest.mark.parametrize("criterion,G,kind,size", APS_CASES,
                         ids=[f"{c}-{g}-{k}-{h}x{w}" for c, g, k, (h, w) in APS_CASES])
def test_aps_commutes_with_all_shifts_and_all_group_elements(criterion, G, kind, size):
    """aps(g.roll(x, d)) == g.roll(aps(x), floor((d + p)/2)) with phase g.((p + d) % 2), for every
    element g and all H*W shifts d: exact to the bit (APS only selects entries). x and all its
    transformed copies of one shape go through one call."""
    b = 3
    x = _map(8, size, kind, G, channels=2, batch=b)
    shifts = list(np.ndindex(*size))
    by_shape = {}
    for g in range(G.order):
        copies = [_act(G, kind, np.roll(x, d, axis=(1, 2)), g) for d in shifts]
        by_shape.setdefault(copies[0].shape, []).append((g, copies))
    outputs = {}
    for shape, groups in by_shape.items():
        stack = np.concatenate([x] * (shape == x.shape) + [c for _, copies in groups for c in copies])
        y_all, p_all = map(np.asarray, _aps(stack, criterion))
        if shape == x.shape:
            outputs["ref"] = (y_all[:b], p_all[:b])
            y_all, p_all = y_all[b:], p_all[b:]
        for i, (g, _) in enumerate(groups):
            rows = slice(i * len(shifts) * b, (i + 1) * len(shifts) * b)
            outputs[g] = (y_all[rows].reshape((len(shifts), b) + y_all.shape[1:]),
                          p_all[rows].reshape(len(shifts), b, 2))
    y, p = outputs["ref"]
    for g in range(G.order):
        got_y, got_p = outputs[g]
        for n, d in enumerate(shifts):
            perm = _phase_action(G, g, size, d)
            for i in range(b):
                t = ((d[0] + p[i, 0]) // 2, (d[1] + p[i, 1]) // 2)
                want = _act(G, kind, np.roll(y[i:i + 1], t, axis=(1, 2)), g)[0]
                np.testing.assert_array_equal(got_y[n, i], want)
                q = perm[2 * p[i, 0] + p[i, 1]]
                assert tuple(got_p[n, i]) == (q // 2, q % 2)


def test_phase_action_of_rot90_and_flip():
    """The docstring's claim: rot90 maps phase (i, j) to (1 - j, i); the mirror to (i, 1 - j)."""
    rot, mirror = D4.element(1, 0), D4.element(0, 1)
    for i in range(2):
        for j in range(2):
            assert _phase_action(D4, rot, (8, 8))[2 * i + j] == 2 * (1 - j) + i
            assert _phase_action(D4, mirror, (8, 8))[2 * i + j] == 2 * i + (1 - j)
    # and aps_pool follows it on a map with one bright pixel per phase, brightest at (1, 0)
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 1, 0], x[0, 0, 1], x[0, 0, 0], x[0, 1, 1] = 4, 3, 2, 1
    _, p = _aps(np.concatenate([x, D4.transform_image(x, rot)]))
    assert tuple(np.asarray(p[0])) == (1, 0)
    assert tuple(np.asarray(p[1])) == (1, 1)  # (1 - 0, 1)


@pytest.mark.parametrize("G,filter_size", [(D4, 3), (D4, 4)], ids=["D4-3", "D4-4"])
def test_aps_with_blur_is_invariant_after_global_pooling(G, filter_size):
    """Blurred APS: an odd filter keeps aps(g.x) == g.aps(x); an even one shifts by half a pixel,
    so only equivariance up to a circular shift holds, and a global pooling is exactly invariant."""
    x = _map(9, (8, 8), "regular", G, batch=1)
    fn = jax.jit(lambda z: F.global_pool(jnp.tanh(F.aps_pool(z, filter_size=filter_size)) ** 2))
    shifts = list(np.ndindex(8, 8))
    batch = np.concatenate([x] + [_act(G, "regular", np.roll(x, d, axis=(1, 2)), g)
                                  for g in range(G.order) for d in shifts])
    out = np.asarray(fn(batch))
    np.testing.assert_allclose(out[1:], np.broadcast_to(out[:1], out[1:].shape), rtol=1e-5, atol=1e-7)
    aps = jax.jit(lambda z: F.aps_pool(z, filter_size=filter_size))
    errors = equivariance_errors(aps, x, G, input="regular", output="regular")
    if filter_size % 2:
        assert max(errors.values()) < 1e-6, errors
    else:
        assert max(errors.values()) > 1e-2  # exact only up to a circular shift of the output


# --- tie-breaking -------------------------------------------------------------------------------
def _tied_binary_map(seed, ones_per_phase=6):
    """8x8 binary map with the same number of ones in each polyphase component: l2, l1 and linf
    all tie, so only the structural keys can decide."""
    rng = np.random.default_rng(seed)
    x = np.zeros((8, 8), np.float32)
    for i in range(2):
        for j in range(2):
            pos = rng.choice(16, ones_per_phase, replace=False)
            sub = np.zeros(16, np.float32)
            sub[pos] = 1
            x[i::2, j::2] = sub.reshape(4, 4)
    return x[None, :, :, None]


def _naive_first_index_phase(x):
    norms = np.asarray(jnp.sum(_polyphase(jnp.asarray(x)) ** 2, axis=(2, 3, 4)))
    idx = np.argmax(norms, axis=1)  # ties: the first index, as torch.argmax in the APS code
    return np.stack([idx // 2, idx % 2], axis=-1).astype(np.int32)


def _canonical(z):
    """Canonical form of a 2D component under circular shifts and D4 (brute force)."""
    return max(tuple(np.roll(D4.transform_image(z, g, axes=(0, 1)), d, axis=(0, 1)).ravel())
               for g in range(8) for d in np.ndindex(*z.shape))


def test_ties_are_broken_consistently_with_shifts_and_the_group():
    """Binary 8x8 maps whose four components have equal l2, l1 and linf norms: the structural
    keys decide, consistently with every shift and every D4 element; index-order tie-breaking
    (the reference implementation's argmax) is not consistent (negative control)."""
    G, n_maps = D4, 16
    x = np.concatenate([_tied_binary_map(seed) for seed in range(n_maps)])
    poly = _polyphase(jnp.asarray(x))
    norms = np.stack([np.asarray(k) for k in _phase_keys(poly, "l2")], -1)
    assert np.all(norms == norms[:, :1])  # every norm ties across the four components
    keys = np.concatenate([np.stack([np.asarray(k) for k in _phase_keys(poly, "l2")], -1),
                           np.moveaxis(np.asarray(_structural_keys(poly)), 0, -1)], -1)
    winners = [[i for i in range(4) if tuple(keys[b, i]) == max(map(tuple, keys[b]))] for b in range(n_maps)]
    unique = [len(w) == 1 for w in winners]
    assert sum(unique) >= n_maps - 3 and not all(unique)  # both situations are exercised
    comps = np.asarray(poly)[..., 0]
    for b, w in enumerate(winners):  # full ties are between equivalent components here
        assert len({_canonical(comps[b, i]) for i in w}) == 1

    rngs = nnx.Rngs(0)
    lift = nn.LiftingConv(1, 6, 3, group=G, padding="CIRCULAR", rngs=rngs)
    lift.bias[...] = jnp.linspace(-0.5, 0.2, 6)
    head = lambda z: F.global_pool(jax.nn.relu(lift(z)), group_mode="max")  # shift- and D4-invariant
    ours = jax.jit(lambda z: (head(F.aps_pool(z)), F.aps_pool(z, return_phase=True)[1]))
    naive = jax.jit(lambda z, p: head(F.aps_pool(z, phase=p)))
    shifts = list(np.ndindex(8, 8))
    batch = np.concatenate([_act(G, "plain", np.roll(x, d, axis=(1, 2)), g) for g in range(8) for d in shifts])
    out, phases = map(np.asarray, ours(np.concatenate([x, batch])))
    ref, p, got, pb = out[:n_maps], phases[:n_maps], out[n_maps:], phases[n_maps:]
    got = got.reshape((8 * 64,) + ref.shape)
    rel = np.linalg.norm(got - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert rel.max() < 1e-5, rel.max()
    both = np.concatenate([x, batch])
    out_naive = np.asarray(naive(both, _naive_first_index_phase(both)))
    ref_naive, got_naive = out_naive[:n_maps], out_naive[n_maps:].reshape(got.shape)
    rel_naive = np.linalg.norm(got_naive - ref_naive, axis=-1) / np.linalg.norm(ref_naive, axis=-1)
    assert rel_naive.max() > 1e-2, rel_naive.max()
    # where the keys single out a component, the chosen phase follows the shifts and the group
    pb = pb.reshape(8, 64, n_maps, 2)
    for g in range(8):
        for n, d in enumerate(shifts):
            perm = _phase_action(G, g, (8, 8), d)
            for b in np.flatnonzero(unique):
                q = perm[2 * p[b, 0] + p[b, 1]]
                assert tuple(pb[g, n, b]) == (q // 2, q % 2)


def test_symmetric_input_limits_layer_equivariance_but_not_invariance():
    """For x with rot90.x == x, the 4 components are rotations of each other: every key ties and
    aps(g.x) == aps(x) != g.aps(x) (documented impossibility), while invariant heads are exact."""
    base = np.round(4 * _map(10, (8, 8), "plain", C4, channels=1, batch=1))  # integers: exact sums
    x = sum(_act(C4, "plain", base, g) for g in range(4))
    np.testing.assert_array_equal(_act(C4, "plain", x, 1), x)
    y = np.asarray(_aps(x)[0])
    rot = np.asarray(_aps(_act(C4, "plain", x, 1))[0])
    np.testing.assert_allclose(rot, y, rtol=1e-6)  # the input did not change
    assert np.abs(_act(C4, "plain", y, 1) - y).max() > 1e-2  # so g.aps(x) differs from aps(g.x)
    head = jax.jit(lambda z: F.global_pool(jnp.tanh(F.aps_pool(z)) ** 2))
    assert equivariance_error(head, x, C4, output="invariant") < 1e-6


def test_phase_argument_and_unpool():
    x = _map(11, (8, 8), "regular", D4, batch=2)

    layer = nn.APSPool(return_phase=True)

    @jax.jit
    def run(x):
        y, p = F.aps_pool(x, return_phase=True)
        other = (p + 1) % 2
        ym, pm = layer(x)  # the module form
        return (y, p, F.aps_pool(x, phase=p), other, F.aps_pool(x, phase=other), F.aps_unpool(y, p),
                ym, pm, layer(x, phase=other)[0])

    y, p, y2, other, y_other, u, ym, pm, ym_other = map(np.asarray, run(x))
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(ym, y)
    np.testing.assert_array_equal(pm, p)
    np.testing.assert_array_equal(ym_other, y_other)
    np.testing.assert_array_equal(y_other[0], x[0, other[0, 0]::2, other[0, 1]::2])
    assert u.shape == x.shape
    i, j = p[1]
    np.testing.assert_array_equal(u[1, i::2, j::2], x[1, i::2, j::2])
    assert np.count_nonzero(u[1]) == np.count_nonzero(x[1, i::2, j::2])
    # unpool(aps(x)) commutes exactly with every shift and every element of D4
    fn = jax.jit(lambda z: F.aps_unpool(*F.aps_pool(z, return_phase=True)))
    assert_equivariant(fn, x, D4, input="regular", output="regular")
    assert_translation_equivariant(fn, x, input="regular", output="regular")


# --- jit / vmap / grad -------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::equilib.ExactnessWarning")
def test_jit_vmap_grad():
    x = jnp.asarray(_map(12, (8, 8), "regular", C4))
    fns = {
        "max_pool": lambda z: F.max_pool(z, 3, 2, "SAME"),
        "avg_pool": lambda z: F.avg_pool(z, 3, 2, "SAME", count_include_pad=False),
        "blur_pool": lambda z: F.blur_pool(z, 4, 2, "reflect"),
        "max_blur_pool": lambda z: F.max_blur_pool(z, 2, 3, 2, "circular"),
        "aps_pool": lambda z: F.aps_pool(z, criterion="l1", filter_size=3),
        "aps_unpool": lambda z: F.aps_unpool(*F.aps_pool(z, return_phase=True)),
        "global_pool": lambda z: F.global_pool(z, "max", group_mode="norm"),
    }
    stacked = jnp.stack([x, 2 * x])

    def check(fn):  # one program: the function, its vmap and its gradient
        return fn(x), jax.vmap(fn)(stacked), jax.grad(lambda z: jnp.sum(fn(z) ** 2))(x)

    for name, fn in fns.items():
        y, yv, g = jax.jit(functools.partial(check, fn))()
        np.testing.assert_allclose(yv[0], y, rtol=1e-5, atol=1e-6, err_msg=name)
        assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g))), name
        assert float(jnp.abs(g).sum()) > 0, name
    # eager (no jit) agrees with jit
    np.testing.assert_array_equal(fns["max_pool"](x), jax.jit(fns["max_pool"])(x))


# --- errors -------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors():
    x = jnp.ones((1, 16, 16, 2))
    with pytest.raises(ValueError, match=r"aps_pool with stride 2 needs an even spatial size \(H, W\), got H=15, W=16"):
        F.aps_pool(jnp.ones((1, 15, 16, 2)))
    with pytest.raises(ValueError, match=r"even spatial size .* got H=16, W=9"):
        nn.APSPool()(jnp.ones((1, 16, 9, 2, 4)))
    with pytest.raises(ValueError, match=r"`stride` must be 2 for APS .* got 3"):
        F.aps_pool(x, 3)
    with pytest.raises(ValueError, match=r"`stride` must be 2 for APS .* got 4"):
        nn.APSPool(4)
    with pytest.raises(ValueError, match=r"`stride` must be 2 for APS .* got 1"):
        nn.APSPool(stride=1)
    with pytest.raises(ValueError, match=r"`criterion` must be one of \('l2', 'l1', 'linf'\), got 'l3'"):
        nn.APSPool(criterion="l3")
    with pytest.raises(ValueError, match=r"`criterion` must be one of .* got 'max'"):
        F.aps_pool(x, criterion="max")
    with pytest.raises(ValueError, match=r"`padding` must be one of \('reflect', 'circular', 'zeros'\), got 'same'"):
        nn.BlurPool(padding="same")
    with pytest.raises(ValueError, match=r"`padding` must be one of \('reflect', 'circular', 'zeros'\), got 'wrap'"):
        F.max_blur_pool(x, padding="wrap")
    with pytest.raises(ValueError, match=r"`padding` must be one of \('SAME', 'VALID', 'CIRCULAR'\), got 'REFLECT'"):
        nn.MaxPool(2, padding="REFLECT")
    with pytest.raises(ValueError, match=r"`padding` must be one of \('SAME', 'VALID', 'CIRCULAR'\), got 'zeros'"):
        F.avg_pool(x, padding="zeros")
    with pytest.raises(ValueError, match=r"`filter_size` must be in 1..7, got 9"):
        nn.BlurPool(9)
    with pytest.raises(ValueError, match=r"`filter_size` must be in 1..7, got 0"):
        F.aps_pool(x, filter_size=0)
    with pytest.raises(ValueError, match=r"`filter_size` must be in 1..7, got 8"):
        F.binomial_filter(8)
    with pytest.raises(TypeError, match=r"`filter_size` must be an int in 1..7, got float \(3.0\)"):
        nn.MaxBlurPool(filter_size=3.0)
    with pytest.raises(ValueError, match=r"`window` must be an integer >= 1, got 0"):
        nn.MaxPool(0)
    with pytest.raises(ValueError, match=r"`window` must be an int or a pair of equal ints .* got \(2, 3\)"):
        F.max_pool(x, (2, 3))
    with pytest.raises(ValueError, match=r"`stride` must be an integer >= 1, got 0"):
        nn.AvgPool(2, 0)
    with pytest.raises(ValueError, match=r"max_pool: `window` \(=5\) is larger than the input \(H=4\) "
                                         r"with padding='VALID'"):
        F.max_pool(jnp.ones((1, 4, 4, 1)), 5)
    with pytest.raises(ValueError, match=r"`padding`='reflect' needs the pads \(3, 3\) of filter_size=7 to be "
                                         r"smaller than the input \(H=3\)"):
        F.blur_pool(jnp.ones((1, 3, 3, 1)), 7, 1)
    with pytest.raises(ValueError, match=r"APSPool expects a plain map \(batch, H, W, C\) or a regular map .* "
                                         r"got shape \(16, 16, 2\)"):
        nn.APSPool()(jnp.ones((16, 16, 2)))
    with pytest.raises(ValueError, match=r"max_pool expects .* rank 4 or 5, got shape \(1, 2, 8, 8, 2, 4\)"):
        F.max_pool(jnp.ones((1, 2, 8, 8, 2, 4)))
    with pytest.raises(ValueError, match=r"`phase` must be an integer array of shape \(batch, 2\) = \(1, 2\)"):
        F.aps_pool(x, phase=jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"`phase` must be an integer array"):
        F.aps_unpool(jnp.ones((1, 4, 4, 1)), jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"`mode` must be one of \('mean', 'max'\), got 'sum'"):
        nn.GlobalPool("sum")
    with pytest.raises(ValueError, match=r"`group_mode` must be None or one of \('max', 'mean', 'norm'\), got 'l2'"):
        nn.GlobalPool(group_mode="l2")
    with pytest.raises(ValueError, match=r"`group_mode` pools the group axis of a regular map .* "
                                         r"expected group_mode=None"):
        F.global_pool(x, group_mode="max")
    with pytest.raises(ValueError, match=r"`group_mode` must be None or one of .* got 'sum'"):
        F.global_pool(jnp.ones((1, 2, 2, 1, 4)), group_mode="sum")
    with pytest.raises(TypeError, match=r"max_pool expects a real .* got dtype bool"):
        F.max_pool(jnp.ones((1, 4, 4, 1), bool))


# --- the networks of the issue: exact shift invariance, also with rotations ----------------------
@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)


def _predictor(model):
    """A jitted ``x -> model(x)``; models with the same structure share one compiled program."""
    graphdef, state = nnx.split(model)
    return lambda x: _apply(graphdef, state, x)


class GroupAPSNet(nnx.Module):
    """LiftingConv(CIRCULAR) -> relu -> APSPool -> GroupConv(CIRCULAR) -> relu -> APSPool ->
    GlobalPool (group max, spatial mean) -> Linear."""

    def __init__(self, group, *, width=3, classes=5, rngs):
        self.lift = nn.LiftingConv(1, width, 3, group=group, padding="CIRCULAR", rngs=rngs)
        self.gconv = nn.GroupConv(width, width, 3, group=group, padding="CIRCULAR", rngs=rngs)
        self.aps1, self.aps2 = nn.APSPool(), nn.APSPool()
        self.pool = nn.GlobalPool("mean", group_mode="max")
        self.head = nnx.Linear(width, classes, rngs=rngs)
        self.lift.bias[...] = jnp.linspace(-0.3, 0.3, width)  # non-trivial relu patterns

    def __call__(self, x):
        x = self.aps1(jax.nn.relu(self.lift(x)))
        x = self.aps2(jax.nn.relu(self.gconv(x)))
        return self.head(self.pool(x))


def _joint_errors(predict, x, group):
    """Max relative change of the outputs over every circular shift x every group element; each
    element's shifted copies (x the batch) go through one call. The first copy (identity, no
    shift) is the reference."""
    shifts = list(np.ndindex(x.shape[1], x.shape[2]))
    outs = []
    for g in range(group.order):
        batch = np.concatenate([_act(group, "plain", np.roll(x, d, axis=(1, 2)), g) for d in shifts])
        outs.append(np.asarray(predict(batch)).reshape((len(shifts), x.shape[0], -1)))
    outs = np.concatenate(outs)
    ref = outs[0]
    return float((np.linalg.norm(outs - ref, axis=-1) / np.linalg.norm(ref, axis=-1)).max())


@pytest.mark.parametrize("G", GROUPS, ids=str)
def test_group_aps_network_is_jointly_shift_and_rotation_invariant(G):
    """All 256 circular shifts of 16x16 inputs, composed with every element of G: outputs change
    by < 1e-5 (relative), untrained and after a few Adam steps; 100 % shift consistency."""
    import optax

    model = GroupAPSNet(G, rngs=nnx.Rngs(0))
    x = _map(1, (16, 16), "plain", channels=1)
    assert equilib.check_exact(model, x.shape) == []
    predict = _predictor(model)
    err_untrained = _joint_errors(predict, x, G)
    assert err_untrained < 1e-5, err_untrained

    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    xt = jnp.asarray(_map(2, (16, 16), "plain", channels=1, batch=8))
    labels = jnp.arange(8) % 5

    @nnx.jit
    def step(model, opt):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(xt), labels).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(4)]
    assert losses[-1] < losses[0]
    predict = _predictor(model)
    err_trained = _joint_errors(predict, x, G)
    assert err_trained < 1e-5, err_trained
    shifts = list(np.ndindex(16, 16))
    assert equilib.metrics.shift_consistency(predict, x, shifts, batch_size=len(x) * 256) == 100.0


# --- volumes (spatial_dims=3) -------------------------------------------------------------------
O24 = Octahedral()


def _volume(key, size, regular=False, channels=2, batch=1):
    shape = (batch, *size, channels) + ((O24.order,) if regular else ())
    return np.random.default_rng(key).standard_normal(shape).astype(np.float32)


def _same_pads(n, k, s):
    """The "SAME" pads of one axis, written out: ceil(n/s) outputs, the odd pixel at the end."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pool3d_reference(x, window, stride, padding, op, count_include_pad=True):
    """Max/avg pooling of a volume by explicit loops over the output voxels (numpy, float64)."""
    x = np.asarray(x, np.float64)
    pads = [(0, 0) if padding == "VALID" else _same_pads(n, window, stride) for n in x.shape[1:4]]
    widths = [(0, 0), *pads] + [(0, 0)] * (x.ndim - 4)
    if padding == "CIRCULAR":
        xp, valid = np.pad(x, widths, mode="wrap"), np.ones([n + sum(p) for n, p in zip(x.shape[1:4], pads)])
    else:
        xp = np.pad(x, widths, constant_values=-np.inf if op == "max" else 0.0)
        valid = np.pad(np.ones(x.shape[1:4]), pads)
    outs = [(n - window) // stride + 1 for n in xp.shape[1:4]]
    out = np.empty((x.shape[0], *outs) + x.shape[4:])
    for i, j, k in np.ndindex(*outs):
        sl = tuple(slice(a * stride, a * stride + window) for a in (i, j, k))
        win = xp[(slice(None),) + sl]
        if op == "max":
            out[:, i, j, k] = win.max(axis=(1, 2, 3))
        else:
            out[:, i, j, k] = win.sum(axis=(1, 2, 3)) / (window**3 if count_include_pad else valid[sl].sum())
    return out


def _blur3d_reference(x, k, stride, padding):
    """The 1D binomial taps along D, H and W in turn (np.pad), each followed by subsampling."""
    taps = np.array([math.comb(k - 1, i) for i in range(k)], np.float64) / 2 ** (k - 1)
    mode = {"reflect": "reflect", "circular": "wrap", "zeros": "constant"}[padding]
    y = np.asarray(x, np.float64)
    for axis in (1, 2, 3):
        widths = [(0, 0)] * y.ndim
        widths[axis] = _same_pads(y.shape[axis], k, stride)
        yp = np.pad(y, widths, mode=mode)
        m = yp.shape[axis] - k + 1
        full = sum(t * np.take(yp, np.arange(a, a + m), axis=axis) for a, t in enumerate(taps))
        y = np.take(full, np.arange(0, m, stride), axis=axis)
    return y


def test_max_and_avg_pool_3d_match_numpy_references():
    x = _volume(20, (7, 8, 9), batch=2)
    # window 2, stride 2, VALID: a reshape and a reduction (the trailing odd slices dropped)
    tiles = x[:, :6, :8, :8].reshape(2, 3, 2, 4, 2, 4, 2, 2)
    np.testing.assert_array_equal(F.max_pool(x, spatial_dims=3), tiles.max(axis=(2, 4, 6)))
    np.testing.assert_allclose(F.avg_pool(x, spatial_dims=3), tiles.mean(axis=(2, 4, 6)), rtol=1e-6, atol=1e-7)
    for window, stride, padding in [(3, 1, "SAME"), (3, 1, "CIRCULAR"), (3, 2, "SAME"), (2, 1, "VALID")]:
        ref = functools.partial(_pool3d_reference, x, window, stride, padding)
        np.testing.assert_array_equal(F.max_pool(x, window, stride, padding, spatial_dims=3), ref("max"))
        np.testing.assert_allclose(F.avg_pool(x, window, stride, padding, spatial_dims=3), ref("avg"),
                                   rtol=1e-5, atol=1e-6, err_msg=f"{window} {stride} {padding}")
        np.testing.assert_allclose(
            F.avg_pool(x, window, stride, padding, count_include_pad=False, spatial_dims=3),
            ref("avg", count_include_pad=False), rtol=1e-5, atol=1e-6, err_msg=f"{window} {stride} {padding}")
    # a regular volume: the group axis pooled like a channel; integers
    xr = _volume(21, (4, 5, 4), regular=True)
    xi = (np.arange(64, dtype=np.int32) - 40).reshape(1, 4, 4, 4, 1)
    for z in (xr, xi):
        np.testing.assert_array_equal(F.max_pool(z, 3, 2, "SAME", spatial_dims=3),
                                      _pool3d_reference(z, 3, 2, "SAME", "max"))
    assert F.avg_pool(xi, spatial_dims=3).dtype == jnp.float32


@pytest.mark.parametrize("padding", ["reflect", "circular", "zeros"])
def test_blur_pool_3d_matches_separable_reference(padding):
    x = _volume(22, (9, 8, 7))
    xr = _volume(23, (5, 6, 5), regular=True, channels=1)
    configs = [(1, 2), (3, 2), (4, 2), (5, 1), (7, 2)]
    outs = jax.jit(lambda a, b: [(F.blur_pool(a, k, s, padding, spatial_dims=3),
                                  F.blur_pool(b, k, s, padding, spatial_dims=3)) for k, s in configs])(x, xr)
    for (k, stride), (y, yr) in zip(configs, outs):
        np.testing.assert_allclose(y, _blur3d_reference(x, k, stride, padding), rtol=1e-5, atol=1e-6,
                                   err_msg=f"k={k} stride={stride}")
        np.testing.assert_allclose(yr, _blur3d_reference(xr, k, stride, padding), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outs[0][0], x[:, ::2, ::2, ::2])  # filter 1: subsampling


SYMMETRIC_3D = [  # (name, factory, size): symmetric sampling, exact under the 24 rotations
    ("MaxPool(2)", lambda: nn.MaxPool(2, spatial_dims=3), 8),
    ("MaxPool(3,1,CIRCULAR)", lambda: nn.MaxPool(3, 1, "CIRCULAR", spatial_dims=3), 6),
    ("AvgPool(2)", lambda: nn.AvgPool(2, spatial_dims=3), 8),
    ("AvgPool(3,2,SAME,excl)", lambda: nn.AvgPool(3, 2, "SAME", count_include_pad=False, spatial_dims=3), 9),
    ("BlurPool(3,2,reflect)", lambda: nn.BlurPool(3, 2, "reflect", spatial_dims=3), 9),
    ("BlurPool(4,2,zeros)", lambda: nn.BlurPool(4, 2, "zeros", spatial_dims=3), 8),
    ("BlurPool(5,1,circular)", lambda: nn.BlurPool(5, 1, "circular", spatial_dims=3), 6),
]


def _octahedral_errors(layer, x, regular):
    """Max |layer(g.x) - g.layer(x)| for each of the 24 rotations; all copies in one jitted call."""
    act = (lambda z, g: O24.transform_regular(z, g)) if regular else \
        (lambda z, g: O24.transform_image(z, g, axes=(1, 2, 3)))
    b = x.shape[0]
    ys = np.asarray(jax.jit(lambda z: layer(z))(np.concatenate([x] + [act(x, g) for g in range(24)])))
    return [float(np.abs(ys[b * (g + 1):b * (g + 2)] - act(ys[:b], g)).max()) for g in range(24)]


@pytest.mark.filterwarnings("error::equilib.ExactnessWarning")
@pytest.mark.parametrize("name,factory,size", SYMMETRIC_3D, ids=[s[0] for s in SYMMETRIC_3D])
def test_3d_pooling_is_exactly_octahedral_equivariant(name, factory, size):
    """Plain and Octahedral-regular volumes: max pooling to the bit, sums to fp32 rounding (a
    rotation that permutes the axes reorders them)."""
    layer = factory()
    for regular in (False, True):
        x = _volume(len(name) + size, (size,) * 3, regular=regular)
        errors = _octahedral_errors(layer, x, regular)
        assert max(errors) < (1e-12 if name.startswith("MaxPool") else 1e-6), (regular, errors)


@pytest.mark.parametrize("factory,size,match", [
    (lambda: nn.MaxPool(2, spatial_dims=3), 9, "MaxPool: input size D=9, H=9, W=9 with kernel_size=2, stride=2"),
    (lambda: nn.AvgPool(3, 2, "SAME", spatial_dims=3), 8, "AvgPool: input size D=8, H=8, W=8"),
    (lambda: nn.BlurPool(3, 2, "reflect", spatial_dims=3), 8, r"BlurPool\(padding='reflect'.* D=8"),
])
def test_3d_asymmetric_sampling_warns_and_is_not_exact(factory, size, match):
    layer = factory()
    x = _volume(24, (size,) * 3)
    with pytest.warns(equilib.ExactnessWarning, match=match):
        layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", equilib.ExactnessWarning)
        assert max(_octahedral_errors(layer, x, False)) > 1e-3


def test_3d_pooling_modules_under_jit_and_the_tiled_max_gradient():
    from equilib.functional._spatial_pool import _reduce_window

    x = jnp.asarray(_volume(25, (8, 8, 8), regular=True, channels=1))
    layers = [(nn.MaxPool(2, spatial_dims=3), F.max_pool(x, spatial_dims=3)),
              (nn.AvgPool(2, spatial_dims=3), F.avg_pool(x, spatial_dims=3)),
              (nn.BlurPool(3, 1, "circular", spatial_dims=3), F.blur_pool(x, 3, 1, "circular", spatial_dims=3))]
    for layer, eager in layers:
        y = jax.jit(lambda z, layer=layer: layer(z))(x)
        assert y.shape == eager.shape == ((1, 4, 4, 4, 1, 24) if layer.stride == 2 else x.shape)
        np.testing.assert_allclose(y, eager, rtol=1e-6, atol=1e-7)
    # the 3D reshape path of max_pool has reduce_window's values, and its gradient where no ties
    reference = lambda z: _reduce_window(z, -jnp.inf, jax.lax.max, 2, 2, [(0, 0)] * 3)
    pooled = lambda z: F.max_pool(z, spatial_dims=3)
    np.testing.assert_array_equal(pooled(x), reference(x))
    grad = lambda f: jax.jit(jax.grad(lambda z: jnp.sum(f(z) ** 2)))(x)
    np.testing.assert_array_equal(grad(pooled), grad(reference))


def test_3d_pooling_bad_inputs_raise_clear_errors():
    flat, vol = jnp.ones((1, 8, 8, 2)), jnp.ones((1, 4, 4, 4, 2))
    for fn in (F.max_pool, F.avg_pool, F.blur_pool):
        with pytest.raises(ValueError, match=fn.__name__ + r" with spatial_dims=3 expects a plain volume .* "
                                                           r"rank 5 or 6, got shape \(1, 8, 8, 2\)"):
            fn(flat, spatial_dims=3)
        with pytest.raises(ValueError, match=r"`spatial_dims` must be 2 .* or 3 .* got 4"):
            fn(vol, spatial_dims=4)
    for cls in (nn.MaxPool, nn.AvgPool, nn.BlurPool):
        with pytest.raises(ValueError, match=r"`spatial_dims` must be 2 .* got 1"):
            cls(spatial_dims=1)
        with pytest.raises(ValueError, match=cls.__name__ + r" with spatial_dims=3 expects .* shape \(1, 8, 8, 2\)"):
            cls(spatial_dims=3)(flat)
    with pytest.raises(ValueError, match=r"max_pool: `window` \(=3\) is larger than the input \(D=2\)"):
        F.max_pool(jnp.ones((1, 2, 4, 4, 1)), 3, spatial_dims=3)
    with pytest.raises(ValueError, match=r"`padding`='reflect' needs the pads \(1, 1\) .* input \(D=1\)"):
        F.blur_pool(jnp.ones((1, 1, 4, 4, 1)), 3, 1, spatial_dims=3)
