"""The per-channel sums and broadcasts of ``equilib._src.sums`` (batch norm's statistics and
gradient, the conv bias): the same values as ``jnp.sum`` / broadcasting, with the rounding
error of a pairwise sum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilib import functional as F
from equilib._src import sums

EPS = float(np.finfo(np.float32).eps)


def _tree_bound(rows, abs_sum):
    # each level of the CHUNK-ary tree adds at most CHUNK - 1 (plus a remainder of at most
    # CHUNK - 1) numbers to each partial sum: gamma of 2 * CHUNK per level bounds it
    levels = max(1, int(np.ceil(np.log(max(rows, 2)) / np.log(sums.CHUNK))))
    n = 2 * sums.CHUNK * levels
    return n * EPS / (1 - n * EPS) * abs_sum


@pytest.mark.parametrize("rows", [0, 1, 2, 7, 8, 9, 63, 64, 65, 1000, 43264])
def test_row_sums_are_the_column_sums(rows):
    rng = np.random.default_rng(rows)
    a = rng.normal(size=(rows, 5)).astype(np.float32) + 3.0
    b = rng.normal(size=(rows, 5)).astype(np.float32)
    got = sums.row_sums(jnp.asarray(a), jnp.asarray(b))
    for g, v in zip(got, (a, b)):
        assert g.shape == (5,) and g.dtype == jnp.float32
        exact = v.astype(np.float64).sum(axis=0)
        err = np.abs(np.asarray(g, np.float64) - exact)
        assert np.all(err <= _tree_bound(rows, np.abs(v).astype(np.float64).sum(axis=0))), (rows, err)


def test_row_sums_are_pairwise_and_a_long_sum_is_not():
    # 2**24 then ones: float32 adds 1 to 2**24 as 0 (the spacing there is 2), so a left-to-right
    # sum loses every one; the tree adds the ones to each other first
    v = np.ones((4097, 1), np.float32)
    v[0] = 2.0**24
    exact = 2.0**24 + 4096
    bound = _tree_bound(len(v), exact)
    tree = float(sums.row_sums(jnp.asarray(v))[0][0])
    assert abs(tree - exact) <= bound
    long = np.float32(0)
    for value in v[:, 0]:  # the negative control: a long float32 sum fails the same bound
        long = np.float32(long + value)
    assert abs(float(long) - exact) > bound


def test_an_empty_batch():
    x = jnp.ones((0, 3, 3, 2, 4))
    assert sums.columns(x, 3).shape == (0, 8)
    assert F.normalize(x, jnp.zeros(2), jnp.ones(2)).shape == x.shape


def test_feature_sums_and_per_column_on_a_regular_map():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 5, 6, 4)), jnp.float32)
    s1, s2 = sums.feature_sums(x, 3, lambda c: c, jnp.square)
    np.testing.assert_allclose(s1, jnp.sum(x, axis=(0, 1, 2, 4)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s2, jnp.sum(x**2, axis=(0, 1, 2, 4)), rtol=1e-5)
    v = jnp.arange(6.0)
    cols = sums.columns(x, 3) + sums.per_column(v, x, 3)
    np.testing.assert_array_equal(cols.reshape(x.shape), x + v.reshape(1, 1, 1, 6, 1))


@pytest.mark.parametrize("shared", [0, 1])
def test_add_channel_bias_value_and_gradient(shared):
    shape = (2, 5, 5, 3, 4) if shared else (2, 5, 5, 3)
    y = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)
    bias = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    ref = y + bias.reshape((1, 1, 1, 3, 1) if shared else (1, 1, 1, 3))
    np.testing.assert_array_equal(sums.add_channel_bias(y, bias, shared=shared), ref)
    g = jax.grad(lambda b: jnp.sum(jnp.sin(sums.add_channel_bias(y, b, shared=shared))))(bias)
    axes = tuple(a for a in range(len(shape)) if a != 3)
    np.testing.assert_allclose(g, jnp.sum(jnp.cos(ref), axis=axes), rtol=1e-5)


def _reduction_ranks(fn, *args):
    """The ranks of the operands of every reduction in ``fn``'s jaxpr, nested jaxprs included."""
    ranks = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name.startswith("reduce"):
                ranks.extend(v.aval.ndim for v in eqn.invars)
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return ranks


def test_batch_norm_reduces_only_matrix_views():
    """The fast formulation is the one used: no reduction in F.batch_norm's forward or backward
    pass runs on the 5-D map itself (XLA:CPU runs those ~10x slower, benchmarks/RESULTS.md)."""
    x, g = jnp.ones((4, 6, 6, 3, 4)), jnp.ones((4, 6, 6, 3, 4))
    scale, bias = jnp.ones(3), jnp.zeros(3)

    def fwd_bwd(x, g):
        y, vjp = jax.vjp(lambda x: F.batch_norm(x, scale, bias)[0], x)
        return y, vjp(g)

    ranks = _reduction_ranks(fwd_bwd, x, g)
    assert ranks and max(ranks) <= 3, ranks  # (rows / CHUNK, CHUNK, cols) at most

    def textbook(x, g):  # the negative control: moments over the 5-D map's axes
        def bn(x):
            mean = jnp.mean(x, axis=(0, 1, 2, 4), keepdims=True)
            return (x - mean) * jax.lax.rsqrt(jnp.var(x, axis=(0, 1, 2, 4), keepdims=True) + 1e-5)
        y, vjp = jax.vjp(bn, x)
        return y, vjp(g)

    assert max(_reduction_ranks(textbook, x, g)) == 5
