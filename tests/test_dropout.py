"""Equivariant dropout: FieldDropout, PointwiseDropout, GroupDropout (NNX and Linen).

Measured (2-core CPU, fp32): with a fixed key FieldDropout and GroupDropout commute with rot90/flips
with error 0.0 (the mask scales whole fields by a position-independent scalar; the transforms move
pixels and apply signed permutations exactly); off-grid (SO(2) fields, C8 at 45/135 deg, bilinear
interpolation by the harness, which commutes with a per-channel scalar) 0.0 too: tolerance 1e-5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib import FieldType, linen, nn, reps
from equilib.groups import SO2, Cyclic, Dihedral
from equilib.testing import assert_equivariant, assert_field_equivariant, smooth_random

C4, D4, C8, S = Cyclic(4), Dihedral(4), Cyclic(8), SO2()


def c4_mixed():
    return FieldType(C4, [reps.irrep(C4, 1), reps.regular_rep(C4), reps.trivial_rep(C4)] * 2)


def d4_mixed():
    return FieldType(D4, [reps.irrep(D4, 1, 1), reps.regular_rep(D4), reps.quotient_rep(D4, Dihedral(1))] * 2)


def noise(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def fixed_key(layer, key):
    """The layer with a fixed key, compiled once (the harness calls it per group element)."""
    return jax.jit(lambda z: layer(z, rngs=key))


# --- FieldDropout --------------------------------------------------------------------------------
def test_field_dropout_with_a_fixed_key_commutes_exactly_with_c4_and_d4():
    key = jax.random.key(3)
    for ft, group in ((c4_mixed(), C4), (d4_mixed(), D4)):
        drop = nn.FieldDropout(ft, 0.5)
        x = noise((2, 9, 9, ft.size))
        errors = assert_field_equivariant(fixed_key(drop, key), x, ft, ft, rtol=1e-5)
        assert sorted(errors) == list(range(group.order))
        y = np.asarray(drop(x, rngs=key))
        assert 0 < np.mean(y == 0) < 1  # some fields dropped, some kept: the test is not vacuous


def test_field_dropout_off_grid_so2():
    ft = FieldType(S, [reps.irrep(S, 1), reps.irrep(S, 2), reps.trivial_rep(S)] * 2)
    x = np.asarray(smooth_random(jax.random.key(0), (1, 17, 17, ft.size), sigma=2.0))
    # measured 0.0 (module docstring): tolerance 1e-5
    assert_field_equivariant(fixed_key(nn.FieldDropout(ft, 0.5), jax.random.key(1)), x, ft, ft, group=C8,
                             elements=[1, 3], off_grid_rtol=1e-5)


def test_field_dropout_drops_whole_fields_and_keeps_about_one_minus_rate():
    ft = FieldType(S, [reps.irrep(S, 1), reps.irrep(S, 3), reps.trivial_rep(S)] * 100)
    rate = 0.3
    drop = nn.FieldDropout(ft, rate, rngs=nnx.Rngs(dropout=0))
    y = np.asarray(drop(jnp.ones((16, 3, 3, ft.size))))
    assert np.all(y == y[:, :1, :1])  # the same mask at every pixel
    assert set(np.unique(y).tolist()) <= {0.0, np.float32(1 / (1 - rate))}
    kept = np.stack([y[:, 0, 0, ft.field_slice(k)] for k in range(len(ft)) if ft.reps[k].size == 2], 1)  # (B, n, 2)
    assert np.all(kept[..., 0] == kept[..., 1])  # both channels of a field together
    per_field = np.array([[y[b, 0, 0, ft.offsets[k]] != 0 for k in range(len(ft))] for b in range(16)])
    assert abs(per_field.mean() - (1 - rate)) < 0.03  # 4800 draws: std 0.007


def test_dropout_eval_train_and_determinism():
    ft = c4_mixed()
    x = jnp.asarray(noise((2, 5, 5, ft.size)))
    model = nnx.Sequential(nn.FieldDropout(ft, 0.5, rngs=nnx.Rngs(dropout=7)))
    model.eval()
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(x))
    model.train()
    y1, y2 = model(x), model(x)
    assert not np.array_equal(np.asarray(y1), np.asarray(x))
    assert not np.array_equal(np.asarray(y1), np.asarray(y2))  # the stream advances
    again = nn.FieldDropout(ft, 0.5, rngs=nnx.Rngs(dropout=7))
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(y1))  # seeded: reproducible
    np.testing.assert_array_equal(np.asarray(again(x, deterministic=True)), np.asarray(x))
    off = nn.FieldDropout(ft, 0.5, deterministic=True)
    np.testing.assert_array_equal(np.asarray(off(x)), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(nnx.view(again, deterministic=True)(x)), np.asarray(x))
    # under nnx.jit the key stream is state that advances too
    step = nnx.jit(lambda m, z: m(z))
    assert not np.array_equal(np.asarray(step(again, x)), np.asarray(step(again, x)))
    assert np.array_equal(np.asarray(nn.FieldDropout(ft, 1.0)(x, rngs=jax.random.key(0))), np.zeros(x.shape))


def test_dropout_errors():
    ft = c4_mixed()
    with pytest.raises(ValueError, match=r"`rate` must be a number in \[0, 1\].*got 1.5"):
        nn.FieldDropout(ft, 1.5)
    with pytest.raises(ValueError, match=r"`rate`"):
        nn.GroupDropout(-0.1)
    with pytest.raises(ValueError, match=r"FieldDropout: `x` has 4 channels but its field type"):
        nn.FieldDropout(ft, 0.5, deterministic=True)(jnp.ones((1, 3, 3, 4)))
    with pytest.raises(ValueError, match=r"FieldDropout: `x` must be a steerable map of rank 4"):
        nn.FieldDropout(ft, 0.5)(jnp.ones((3, 3, ft.size)), rngs=jax.random.key(0))
    with pytest.raises(ValueError, match=r"GroupDropout expects a regular map of rank 5"):
        nn.GroupDropout(0.5)(jnp.ones((1, 3, 3, 4)), rngs=jax.random.key(0))
    with pytest.raises(ValueError, match=r"FieldDropout: `deterministic` is False but no `rngs`"):
        nn.FieldDropout(ft, 0.5)(jnp.ones((1, 3, 3, ft.size)))
    with pytest.raises(ValueError, match=r"`deterministic` is None both in the constructor and in the call"):
        nn.FieldDropout(ft, 0.5, deterministic=None)(jnp.ones((1, 3, 3, ft.size)))
    with pytest.raises(TypeError, match=r"`rngs` must be an nnx.Rngs, an nnx.RngStream or None, got int"):
        nn.GroupDropout(0.5, rngs=0)
    with pytest.raises(TypeError, match=r"`in_type` must be an equilib.fields.FieldType"):
        nn.FieldDropout(4, 0.5)


# --- PointwiseDropout -------------------------------------------------------------------------
def test_pointwise_dropout_refuses_non_permutation_fields():
    with pytest.raises(ValueError, match=r"PointwiseDropout needs fields whose representation permutes channels.* "
                                         r"field 0 of `in_type` is irrep\(1\) of C4; .*use FieldDropout"):
        nn.PointwiseDropout(c4_mixed(), 0.5)
    with pytest.raises(ValueError, match=r"field 1 of `in_type` is irrep\(1\) of SO2"):
        nn.PointwiseDropout(FieldType(S, [reps.trivial_rep(S), reps.irrep(S, 1)]), 0.5)


def test_elementwise_dropout_with_a_fixed_key_is_not_equivariant():
    # negative control: an elementwise mask is equivariant in distribution only
    ft = FieldType(C4, [reps.regular_rep(C4)] * 3)
    x = noise((2, 9, 9, ft.size))
    drop = nn.PointwiseDropout(ft, 0.5)
    with pytest.raises(AssertionError, match="not C4-equivariant"):
        assert_field_equivariant(fixed_key(drop, jax.random.key(0)), x, ft, ft)
    xr = noise((2, 9, 9, 3, 4))
    plain = nnx.Dropout(0.5)
    with pytest.raises(AssertionError, match="not C4-equivariant"):
        assert_equivariant(jax.jit(lambda z: plain(z, rngs=jax.random.key(0))), xr, C4, input="regular",
                           output="regular")
    # in distribution: every element kept with probability 1 - rate, scaled by 1 / (1 - rate)
    y = np.asarray(drop(jnp.ones((8, 9, 9, ft.size)), rngs=jax.random.key(1)))
    assert set(np.unique(y).tolist()) == {0.0, 2.0}
    assert abs(np.mean(y != 0) - 0.5) < 0.03  # 7776 draws: std 0.006


# --- GroupDropout -------------------------------------------------------------------------------
def test_group_dropout_commutes_exactly_with_the_regular_action():
    key = jax.random.key(5)
    drop = nn.GroupDropout(0.5)
    for group in (C4, D4):
        x = noise((2, 9, 9, 6, group.order))
        assert_equivariant(fixed_key(drop, key), x, group, input="regular", output="regular", rtol=1e-5)
    y = np.asarray(drop(jnp.ones((4, 3, 3, 50, 8)), rngs=key))
    assert np.all(y == y[:, :1, :1, :, :1])  # whole fields c, at every pixel
    assert 0.35 < np.mean(y != 0) < 0.65


# --- Linen --------------------------------------------------------------------------------------
def test_linen_dropouts_match_nnx_with_the_same_key():
    key = jax.random.key(11)
    ft = c4_mixed()
    perm = FieldType(C4, [reps.regular_rep(C4)] * 2)
    x, xp, xr = noise((2, 5, 5, ft.size)), noise((2, 5, 5, perm.size)), noise((2, 5, 5, 3, 4))
    pairs = [(linen.FieldDropout(ft, 0.4), nn.FieldDropout(ft, 0.4), x),
             (linen.PointwiseDropout(perm, 0.4), nn.PointwiseDropout(perm, 0.4), xp),
             (linen.GroupDropout(0.4), nn.GroupDropout(0.4), xr)]
    for lin, nnx_layer, inp in pairs:
        y = lin.apply({}, inp, deterministic=False, rng=key)
        np.testing.assert_array_equal(np.asarray(y), np.asarray(nnx_layer(inp, rngs=key)))
        # from the "dropout" stream of apply: reproducible, and the identity when deterministic
        a = lin.apply({}, inp, deterministic=False, rngs={"dropout": key})
        np.testing.assert_array_equal(np.asarray(a), np.asarray(lin.apply({}, inp, deterministic=False,
                                                                          rngs={"dropout": key})))
        assert not np.array_equal(np.asarray(a), inp)
        np.testing.assert_array_equal(np.asarray(lin.apply({}, inp, deterministic=True)), inp)
    with pytest.raises(ValueError, match=r"PointwiseDropout needs fields whose representation permutes channels"):
        linen.PointwiseDropout(ft, 0.5).apply({}, x, deterministic=True)
    with pytest.raises(ValueError, match=r"`rate`"):
        linen.GroupDropout(2.0).apply({}, xr, deterministic=True)
