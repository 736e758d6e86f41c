"""Per-sample norms (issue 15): FieldNorm (instance norm), GroupNorm and LayerNorm.

Measured (fp32, CPU, D4 mixed fields, 7x7): worst relative equivariance error 2.2e-7 (FieldNorm),
1.2e-7 (GroupNorm), 7e-8 (LayerNorm) over all elements; every case of this file is exact on the
pixel grid (per-sample statistics are invariant), hence rtol 1e-5. Negative controls: a mean over
all channels subtracted (also from vector fields) 0.48; per-channel scale of a regular map 1.07.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib import FieldType, linen, nn, reps
from equilib import functional as F
from equilib.groups import SO2, Cyclic, Dihedral
from equilib.testing import assert_equivariant, assert_field_equivariant, smooth_random

C4, D4 = Cyclic(4), Dihedral(4)


def _mixed(G):
    if G == D4:
        return FieldType(G, [reps.regular_rep(G), reps.irrep(G, 1, 1), reps.trivial_rep(G), reps.irrep(G, 1, 0),
                             reps.irrep(G, 1, 1), reps.regular_rep(G)])
    return FieldType(G, [reps.regular_rep(G), reps.irrep(G, 1), reps.trivial_rep(G), reps.irrep(G, 2),
                         reps.irrep(G, 1), reps.regular_rep(G)])


def _randomise(layer, seed):
    """Non-trivial scale and bias, so that the affine part is tested too."""
    for i, name in enumerate(("scale", "bias")):
        p = getattr(layer, name)
        if p is not None:
            p[...] = 1.0 + jax.random.normal(jax.random.key(seed + i), p.shape)
    return layer


def _x(t, seed=0, shape=(1, 7, 7)):
    # an offset so that the invariant means are not zero
    return smooth_random(jax.random.key(seed), shape + (t.size,)) + 0.5


@pytest.mark.parametrize("G", [C4, D4], ids=["C4", "D4"])
def test_field_norm_is_exactly_equivariant(G):
    t = _mixed(G)
    layer = jax.jit(_randomise(nn.FieldNorm(t, rngs=nnx.Rngs(0)), 1))
    assert_field_equivariant(layer, _x(t), t, t)
    perm = FieldType(G, [reps.regular_rep(G), reps.trivial_rep(G), reps.regular_rep(G)])
    inner = jax.jit(_randomise(nn.FieldNorm(perm, kind="inner", rngs=nnx.Rngs(0)), 3))
    assert_field_equivariant(inner, _x(perm, 1), perm, perm)
    # negative control: the mean over space and all channels subtracted from every channel (also
    # from the vector fields, whose components have no invariant mean)
    with pytest.raises(AssertionError):
        assert_field_equivariant(jax.jit(lambda a: a - a.mean(axis=(1, 2, 3), keepdims=True)), _x(t), t, t)


def test_so2_fields_at_quarter_turns():
    G = SO2()
    t = FieldType(G, [reps.trivial_rep(G), reps.irrep(G, 1), reps.irrep(G, 2), reps.irrep(G, 1)])
    x = _x(t, 2)
    assert_field_equivariant(jax.jit(_randomise(nn.FieldNorm(t, rngs=nnx.Rngs(0)), 4)), x, t, t, group=C4)
    assert_field_equivariant(jax.jit(_randomise(nn.GroupNorm(t, 2, rngs=nnx.Rngs(0)), 5)), x, t, t, group=C4)
    assert_field_equivariant(jax.jit(_randomise(nn.LayerNorm(t, rngs=nnx.Rngs(0)), 6)), x, t, t, group=C4)


@pytest.mark.parametrize("G", [C4, D4], ids=["C4", "D4"])
def test_group_and_layer_norm_are_exactly_equivariant(G):
    x = smooth_random(jax.random.key(3), (1, 7, 7, 4, G.order)) + 0.5
    gn = jax.jit(_randomise(nn.GroupNorm(4, 2, group=G, rngs=nnx.Rngs(0)), 7))
    ln = jax.jit(_randomise(nn.LayerNorm(4, group=G, rngs=nnx.Rngs(0)), 8))
    for f in (gn, ln):
        assert_equivariant(f, x, G, input="regular", output="regular")
    t = _mixed(G)
    for f in (nn.GroupNorm(t, 3, rngs=nnx.Rngs(0)), nn.LayerNorm(t, rngs=nnx.Rngs(0))):
        assert_field_equivariant(jax.jit(_randomise(f, 9)), _x(t, 4), t, t)
    # negative control: each channel of the regular map normalised separately with its own scale and
    # bias (nnx.GroupNorm with one channel per group): not shared over the group axis
    flat = _randomise(nnx.GroupNorm(4 * G.order, 4 * G.order, rngs=nnx.Rngs(0)), 12)
    with pytest.raises(AssertionError):
        assert_equivariant(jax.jit(lambda a: flat(a.reshape(a.shape[:3] + (-1,))).reshape(a.shape)), x, G,
                           input="regular", output="regular")


def test_statistics_match_independent_computations():
    G = C4
    x = _x(FieldType(G, [reps.regular_rep(G)] * 4), 5, (2, 5, 5))
    xn = np.asarray(x, np.float64)
    # instance norm of trivial fields: the textbook per-sample, per-channel formula
    scalars = FieldType(G, [reps.trivial_rep(G)] * 16)
    want = (xn - xn.mean((1, 2), keepdims=True)) / np.sqrt(xn.var((1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(F.field_instance_norm(x, scalars), want, atol=1e-4)
    # on regular fields both kinds agree, and FieldNorm equals GroupNorm with one field per group
    regular = FieldType(G, [reps.regular_rep(G)] * 4)
    a = F.field_instance_norm(x, regular, kind="inner", epsilon=1e-6)
    np.testing.assert_allclose(F.field_instance_norm(x, regular, kind="norm", epsilon=1e-6), a, atol=1e-5)
    np.testing.assert_allclose(F.group_norm(x, 4, in_type=regular), a, atol=1e-5)
    # regular fields as a FieldType or as a regular map: the same GroupNorm / LayerNorm
    xr = x.reshape(2, 5, 5, 4, 4)
    np.testing.assert_allclose(F.group_norm(x, 2, in_type=regular), F.group_norm(xr, 2).reshape(x.shape), atol=1e-5)
    np.testing.assert_allclose(F.layer_norm(x, in_type=regular), F.layer_norm(xr).reshape(x.shape), atol=1e-5)
    # a vector field is not centred: FieldNorm divides by its RMS norm per channel
    vec = FieldType(SO2(), [reps.irrep(SO2(), 1)])
    v = np.asarray(x[..., :2], np.float64)
    rms = np.sqrt((v ** 2).sum(-1, keepdims=True).mean((1, 2), keepdims=True) / 2 + 1e-5)
    np.testing.assert_allclose(F.field_instance_norm(x[..., :2], vec), v / rms, atol=1e-5)
    # per sample: changing sample 1 leaves sample 0 alone
    y0 = nn.GroupNorm(regular, 2, rngs=nnx.Rngs(0))(x)
    y1 = nn.GroupNorm(regular, 2, rngs=nnx.Rngs(0))(x.at[1].multiply(3.0).at[1].add(1.0))
    np.testing.assert_allclose(y1[0], y0[0], atol=1e-6)


@pytest.mark.parametrize("group", [None, C4], ids=["plain", "C4"])
def test_export_equals_flax_norms(group):
    g = 1 if group is None else group.order
    x = smooth_random(jax.random.key(6), (1, 5, 5, 4) + ((g,) if group else ())) + 0.3
    flat = x.reshape(1, 5, 5, 4 * g)
    for layer in (nn.GroupNorm(4, 2, group=group, rngs=nnx.Rngs(0)), nn.LayerNorm(4, group=group, rngs=nnx.Rngs(0))):
        _randomise(layer, 10)
        np.testing.assert_allclose(layer.export()(flat), layer(x).reshape(flat.shape), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="export"):
        nn.LayerNorm(_mixed(C4), rngs=nnx.Rngs(0)).export()


def test_linen_wrappers_equal_the_nnx_layers():
    t = _mixed(C4)
    x = _x(t, 7, (1, 5, 5))
    xr = smooth_random(jax.random.key(8), (1, 5, 5, 2, 4))
    cases = [(nn.FieldNorm(t, rngs=nnx.Rngs(0)), linen.FieldNorm(t), x),
             (nn.GroupNorm(t, 2, rngs=nnx.Rngs(0)), linen.GroupNorm(t, 2), x),
             (nn.LayerNorm(2, group=C4, rngs=nnx.Rngs(0)), linen.LayerNorm(2, group=C4), xr)]
    for layer, module, inp in cases:
        _randomise(layer, 11)
        params = {"scale": layer.scale[...], "bias": layer.bias[...]}
        np.testing.assert_allclose(module.apply({"params": params}, inp), layer(inp), rtol=1e-6, atol=1e-6)


def test_errors_name_the_argument():
    t = _mixed(C4)
    with pytest.raises(ValueError, match="`kind` must be one of"):
        nn.FieldNorm(t, kind="batch", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="kind='inner'"):
        nn.FieldNorm(t, kind="inner", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`epsilon` must be"):
        nn.FieldNorm(t, epsilon=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="has 5 channels"):
        nn.FieldNorm(t, rngs=nnx.Rngs(0))(jnp.ones((1, 3, 3, 5)))
    with pytest.raises(ValueError, match="`num_groups` \\(=4\\) must divide the number of fields \\(=6\\)"):
        nn.GroupNorm(t, 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`num_groups`"):
        nn.GroupNorm(6, 4, group=C4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`group` only with an int"):
        nn.LayerNorm(t, group=C4, rngs=nnx.Rngs(0))
    gn = nn.GroupNorm(4, 2, group=C4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="rank 5"):
        gn(jnp.ones((1, 3, 3, 16)))
    with pytest.raises(ValueError, match="`num_features`"):
        gn(jnp.ones((1, 3, 3, 3, 4)))
    with pytest.raises(ValueError, match="`group`"):
        gn(jnp.ones((1, 3, 3, 4, 8)))
    with pytest.raises(ValueError, match="`scale` must have shape"):
        F.group_norm(jnp.ones((1, 3, 3, 4, 4)), 2, scale=jnp.ones(3))
    with pytest.raises(ValueError, match="plain map .* or a regular map"):
        F.layer_norm(jnp.ones((3, 3, 4)))
