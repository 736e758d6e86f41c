"""NNX modules: the C4/D4 pipeline of the foundation issue, export, init, batch norm, pooling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from equilib import functional as F
from equilib import nn
from equilib._src.init import lecun_normal, variance_scaling
from equilib.fields import FieldType
from equilib.groups import Cyclic, Dihedral, Trivial
from equilib.reps import regular_rep, trivial_rep
from equilib.testing import assert_equivariant, equivariance_error


class Pipeline(nnx.Module):
    """LiftingConv -> GroupBatchNorm -> relu -> GroupConv (-> GroupPool -> spatial mean)."""

    def __init__(self, cin, hidden, cout, group, *, rngs):
        self.lift = nn.LiftingConv(cin, hidden, 3, group=group, rngs=rngs)
        self.bn = nn.GroupBatchNorm(hidden, group=group, rngs=rngs)
        self.gconv = nn.GroupConv(hidden, cout, 3, group=group, rngs=rngs)
        self.pool = nn.GroupPool("max")

    def features(self, x):
        return self.gconv(jax.nn.relu(self.bn(self.lift(x))))

    def __call__(self, x):
        return jnp.mean(self.pool(self.features(x)), axis=(1, 2))


def _fixed_bn(model, hidden):
    model.eval()  # batch norm with fixed running statistics: a deterministic function
    model.bn.mean[...] = jnp.linspace(-0.5, 0.5, hidden)
    model.bn.var[...] = jnp.linspace(0.5, 2.0, hidden)


_forward = nnx.jit(lambda m, x: m(x))
_features = nnx.jit(lambda m, x: m.features(x))


@pytest.mark.parametrize("G", [Cyclic(4), Dihedral(4)], ids=str)
@given(size=st.integers(2, 8).map(lambda n: 2 * n + 1), cin=st.integers(1, 3),
       hidden=st.integers(1, 4), cout=st.integers(1, 3), batch=st.integers(1, 3))
def test_pipeline_invariant_and_equivariant_under_jit(G, size, cin, hidden, cout, batch):
    """Random odd sizes and channel counts: invariant with pooling, equivariant without."""
    model = Pipeline(cin, hidden, cout, G, rngs=nnx.Rngs(size * 100 + cin))
    _fixed_bn(model, hidden)
    # numpy draws the input: jax.random.normal compiles anew for every shape (~1-2 s on XLA:CPU)
    x = jnp.asarray(np.random.default_rng(size + 7 * cin).normal(size=(batch, size, size, cin)), jnp.float32)
    assert_equivariant(lambda x: _forward(model, x), x, G, output="invariant")
    assert_equivariant(lambda x: _features(model, x), x, G, output="regular")


@pytest.mark.parametrize("G", [Cyclic(4), Dihedral(4)], ids=str)
def test_pipeline_invariant_and_equivariant_eagerly(G):
    model = Pipeline(2, 3, 2, G, rngs=nnx.Rngs(0))
    _fixed_bn(model, 3)
    x = jax.random.normal(jax.random.key(1), (2, 13, 13, 2))
    assert_equivariant(model, x, G, output="invariant")
    assert_equivariant(model.features, x, G, output="regular")
    np.testing.assert_allclose(model(x), _forward(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("G", [Cyclic(4), Dihedral(4)], ids=str)
def test_pipeline_in_training_mode_is_invariant(G):
    """With batch statistics (training mode) the normalisation is still equivariant."""
    model = Pipeline(2, 4, 3, G, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (3, 11, 11, 2))
    assert_equivariant(model, x, G, output="invariant")


def test_negative_control_plain_conv_fails_rotation():
    conv = nn.Conv(2, 3, 3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 2))
    with pytest.raises(AssertionError, match="not C4-equivariant"):
        assert_equivariant(conv, x, Cyclic(4))
    assert equivariance_error(conv, x, Cyclic(4)) > 0.3


def test_negative_control_unpermuted_group_axis_fails():
    """A group conv whose kernel is rotated but whose input group axis is not permuted."""
    G = Cyclic(4)
    layer = nn.GroupConv(2, 3, 3, group=G, rngs=nnx.Rngs(0))
    from equilib import functional as F

    def broken(z):
        w = layer.kernel[...]  # (K, K, C, |G|, O)
        per_h = [G.transform_image(w, h, axes=(0, 1)) for h in range(G.order)]  # no permutation
        k = jnp.stack(per_h, axis=-1).reshape(3, 3, 2 * G.order, 3 * G.order)
        y = F.conv2d(z.reshape(z.shape[:3] + (-1,)), k)
        return y.reshape(y.shape[:3] + (3, G.order))

    z = jax.random.normal(jax.random.key(0), (1, 9, 9, 2, G.order))
    assert_equivariant(layer, z, G, input="regular", output="regular")
    with pytest.raises(AssertionError, match="not C4-equivariant"):
        assert_equivariant(broken, z, G, input="regular", output="regular")
    # also: treating a regular output as a plain map (group axis not permuted) must fail
    with pytest.raises(AssertionError):
        assert_equivariant(lambda z: layer(z).reshape(1, 9, 9, -1), z, G, input="regular", output="plain")


@pytest.mark.filterwarnings("ignore::equilib.ExactnessWarning")
@pytest.mark.parametrize("G", [Trivial(), Cyclic(4), Dihedral(4), Cyclic(8)], ids=str)
@pytest.mark.parametrize("padding,stride", [("SAME", 1), ("VALID", 2), ("CIRCULAR", 1), ("CIRCULAR", 2)])
def test_export_reproduces_modules(G, padding, stride):
    rngs = nnx.Rngs(0)
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
    lift = nn.LiftingConv(3, 4, 3, group=G, padding=padding, stride=stride, rngs=rngs)
    lift.bias[...] = jax.random.normal(jax.random.key(1), (4,))
    y = lift(x)
    np.testing.assert_allclose(lift.export()(x).reshape(y.shape), y, rtol=1e-5, atol=1e-5)
    gconv = nn.GroupConv(4, 2, 3, group=G, padding=padding, stride=stride, rngs=rngs)
    gconv.bias[...] = jnp.array([0.5, -1.0])
    y2 = gconv(y)
    flat = y.reshape(y.shape[:3] + (-1,))
    np.testing.assert_allclose(gconv.export()(flat).reshape(y2.shape), y2, rtol=1e-5, atol=1e-5)
    conv = nn.Conv(3, 5, 3, padding=padding, stride=stride, rngs=rngs)
    np.testing.assert_allclose(conv.export()(x), conv(x), rtol=1e-5, atol=1e-5)
    assert isinstance(gconv.export(), nnx.Conv)
    assert gconv.expanded_kernel().shape == (3, 3, 4 * G.order, 2 * G.order)


@pytest.mark.parametrize("G", [Cyclic(4), Dihedral(4), Cyclic(8)], ids=str)
def test_initialisation_keeps_activation_variance_of_a_plain_conv(G):
    x = jax.random.normal(jax.random.key(0), (16, 16, 16, 8))
    ref = float(jnp.std(nn.Conv(8, 16, 3, rngs=nnx.Rngs(1))(x)))
    lift = nn.LiftingConv(8, 16, 3, group=G, rngs=nnx.Rngs(2))
    z = lift(x)
    assert 0.75 < float(jnp.std(z)) / ref < 1.33
    z = z / jnp.std(z)
    y = nn.GroupConv(16, 16, 3, group=G, rngs=nnx.Rngs(3))(z)
    assert 0.75 < float(jnp.std(y)) < 1.33


def test_group_batch_norm_shares_statistics_over_the_group_axis():
    G = Dihedral(4)
    bn = nn.GroupBatchNorm(3, group=G, momentum=0.9, rngs=nnx.Rngs(0))
    x = 2.0 + 3.0 * jax.random.normal(jax.random.key(0), (4, 5, 5, 3, 8))
    y = bn(x)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2, 4)), 1.0, atol=1e-3)
    np.testing.assert_allclose(bn.mean[...], 0.1 * jnp.mean(x, axis=(0, 1, 2, 4)), rtol=1e-5)
    bn.eval()
    y_eval = bn(x)
    mean, var = np.asarray(bn.mean[...])[:, None], np.asarray(bn.var[...])[:, None]  # numpy broadcasts (C, 1)
    np.testing.assert_allclose(y_eval, (np.asarray(x) - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
    assert_equivariant(bn, x, G, input="regular", output="regular")


@pytest.mark.parametrize("feature_axis, shape, with_affine", [(-2, (4, 5, 5, 3, 8), True), (-1, (6, 7, 3), True),
                                                             (-2, (2, 3, 3, 2, 4), False)])
def test_batch_norm_gradient_is_the_autodiff_gradient(feature_axis, shape, with_affine):
    # F.batch_norm's closed-form backward (the moments' cotangents included) against JAX's
    # autodiff through batch_moments + normalize; the forward pass is the same, bit for bit
    x = 2.0 + 3.0 * jax.random.normal(jax.random.key(0), shape)
    c = shape[feature_axis]
    scale, bias = (jnp.linspace(0.5, 2.0, c), jnp.linspace(-1.0, 1.0, c)) if with_affine else (None, None)

    def reference(x, scale, bias):
        mean, var = F.batch_moments(x, feature_axis=feature_axis)
        return F.normalize(x, mean, var, scale, bias, feature_axis=feature_axis), mean, var

    fused = functools.partial(F.batch_norm, feature_axis=feature_axis)
    for a, b in zip(reference(x, scale, bias), fused(x, scale, bias)):
        np.testing.assert_array_equal(a, b)

    def loss(f):  # every output, the moments included, reaches the loss
        return lambda *args: sum(jnp.sum(jnp.sin((i + 1.0) * out)) for i, out in enumerate(f(*args)))

    argnums = (0, 1, 2) if with_affine else (0,)
    for a, b in zip(jax.grad(loss(reference), argnums)(x, scale, bias), jax.grad(loss(fused), argnums)(x, scale, bias)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(a))))


def test_group_pool_and_sequential():
    G = Cyclic(4)
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3, 4))
    np.testing.assert_array_equal(nn.GroupPool("max")(x), jnp.max(x, -1))
    np.testing.assert_allclose(nn.GroupPool("mean")(x), jnp.mean(x, -1), rtol=1e-6)
    np.testing.assert_allclose(nn.GroupPool("norm")(x), jnp.linalg.norm(x, axis=-1), rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda z: nn.GroupPool("norm")(z).sum())(jnp.zeros((1, 1, 1, 1, 4)))
    assert bool(jnp.all(jnp.isfinite(g)))
    for mode in ("max", "mean", "norm"):  # invariant under the regular representation
        assert_equivariant(nn.GroupPool(mode), x, G, input="regular", output="plain")
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.LiftingConv(1, 4, 3, group=G, rngs=rngs), jax.nn.relu,
                          nn.GroupConv(4, 4, 3, group=G, rngs=rngs), nn.GroupPool(),
                          nn.Conv(4, 2, 3, rngs=rngs))
    y = model(jax.random.normal(jax.random.key(1), (2, 9, 9, 1)))
    assert y.shape == (2, 9, 9, 2)


def test_train_step_changes_parameters_and_stays_equivariant():
    """A few optimisation steps keep exact invariance (the weights stay in the equivariant family)."""
    import optax

    G = Dihedral(4)
    model = Pipeline(1, 4, 3, G, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(0), (8, 9, 9, 1))
    labels = jnp.arange(8) % 3

    @nnx.jit
    def step(model, opt, x, labels):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), labels).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    before = model.lift.kernel[...].copy()
    losses = [float(step(model, opt, x, labels)) for _ in range(5)]
    assert losses[-1] < losses[0]
    assert not np.allclose(before, model.lift.kernel[...])
    model.eval()
    assert_equivariant(model, x, G, output="invariant")


def test_initialisation_is_seeded_and_works_traced():
    a = nn.GroupConv(3, 4, 3, group=Cyclic(4), rngs=nnx.Rngs(7))
    b = nn.GroupConv(3, 4, 3, group=Cyclic(4), rngs=nnx.Rngs(7))
    c = nn.GroupConv(3, 4, 3, group=Cyclic(4), rngs=nnx.Rngs(8))
    np.testing.assert_array_equal(a.kernel[...], b.kernel[...])
    assert not np.allclose(a.kernel[...], c.kernel[...])
    assert float(jnp.max(jnp.abs(a.kernel[...]))) <= 2 * np.sqrt(1 / (9 * 3 * 4)) / 0.8796 + 1e-6
    # abstract construction (jit / eval_shape, as in sharded set-ups) traces the key
    abstract = nnx.eval_shape(lambda: nn.LiftingConv(3, 4, 3, group=Dihedral(4), rngs=nnx.Rngs(0)))
    assert abstract.kernel.shape == (3, 3, 3, 4)
    jitted = nnx.jit(lambda: nn.LiftingConv(3, 4, 3, group=Dihedral(4), rngs=nnx.Rngs(0)))()
    assert 0.1 < float(jnp.std(jitted.kernel[...])) < 0.3


# --- the layer scaffold: dtypes, initialisers, keys, Sequential ---------------------------------
C4 = Cyclic(4)
_T1, _TR = FieldType(C4, [trivial_rep(C4)] * 2), FieldType(C4, [regular_rep(C4)] * 2)
DTYPE_LAYERS = {
    "Conv": (lambda **kw: nn.Conv(2, 3, 3, **kw, rngs=nnx.Rngs(0)), (2, 7, 7, 2)),
    "LiftingConv": (lambda **kw: nn.LiftingConv(2, 3, 3, group=C4, **kw, rngs=nnx.Rngs(0)), (2, 7, 7, 2)),
    "GroupConv": (lambda **kw: nn.GroupConv(2, 3, 3, group=C4, **kw, rngs=nnx.Rngs(0)), (2, 7, 7, 2, 4)),
    "SteerableConv": (lambda **kw: nn.SteerableConv(_T1, _TR, 3, **kw, rngs=nnx.Rngs(0)), (2, 7, 7, 2)),
    "ScaleConv": (lambda **kw: nn.ScaleConv(2, 3, 7, scales=(1.0, 1.2), **kw, rngs=nnx.Rngs(0)), (2, 9, 9, 2, 2)),
    "GroupBatchNorm": (lambda **kw: nn.GroupBatchNorm(2, group=C4, **kw, rngs=nnx.Rngs(0)), (2, 7, 7, 2, 4)),
    "FieldBatchNorm": (lambda **kw: nn.FieldBatchNorm(_TR, kind="norm", **kw, rngs=nnx.Rngs(0)), (2, 7, 7, 8)),
}


@pytest.mark.parametrize("name", sorted(DTYPE_LAYERS))
def test_input_dtypes_are_promoted_as_in_flax(name):
    """bf16/uint8/int inputs with float32 parameters compute in float32 (they used to raise
    "conv2d needs x and kernel of the same dtype"); ``dtype=`` sets the computation dtype."""
    make, shape = DTYPE_LAYERS[name]
    layer = make()
    x = jnp.round(4 * jax.random.uniform(jax.random.key(0), shape))  # small integers: exact in every dtype
    ref = layer(x)
    for dt in (jnp.bfloat16, jnp.uint8, jnp.int32):
        y = layer(x.astype(dt))
        assert y.dtype == jnp.float32, dt
        np.testing.assert_array_equal(y, ref)
    y = make(dtype=jnp.bfloat16)(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=0.05, atol=0.1)
    half = make(param_dtype=jnp.bfloat16)
    assert {v.dtype for _, v in nnx.to_flat_state(nnx.state(half, nnx.Param))} == {jnp.dtype(jnp.bfloat16)}
    assert half(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
    with jax.enable_x64(True):
        y = layer(x.astype(jnp.float64))
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_initialisers_honour_in_and_out_axis_as_jax():
    """fan_in = product of the in_axis sizes x the receptive field, fan_out likewise, as
    ``jax.nn.initializers.variance_scaling``; compared through the bound of a uniform draw."""
    shape = (3, 3, 16, 8, 32)
    for mode in ("fan_in", "fan_out", "fan_avg"):
        for in_axis, out_axis in [((-3, -2), -1), (2, (3, 4)), (-2, 0)]:
            ours = variance_scaling(1.0, mode, "uniform", in_axis, out_axis)(jax.random.key(0), shape)
            ref = jax.nn.initializers.variance_scaling(1.0, mode, "uniform", in_axis, out_axis)(
                jax.random.key(0), shape)
            np.testing.assert_allclose(float(jnp.max(jnp.abs(ours))), float(jnp.max(jnp.abs(ref))), rtol=1e-3)
    # the truncated normal of the layers: std within 2 % of sqrt(scale / fan_in)
    w = lecun_normal(2.0, in_axis=(0, 1), out_axis=-1)(jax.random.key(1), (16, 10, 500))
    np.testing.assert_allclose(float(jnp.std(w)), np.sqrt(2.0 / 160), rtol=0.02)


def test_parameter_keys_are_drawn_as_documented():
    """Each conv takes two keys from ``rngs`` (kernel, bias) as nnx.Conv; SteerableConv one (its
    bias key is derived from the kernel's); the norms none: adding a layer moves the keys of the
    layers built after it only by what it draws."""
    def keys_left(make):
        rngs = nnx.Rngs(0)
        make(rngs)
        return rngs.params()

    def after(n):
        rngs = nnx.Rngs(0)
        for _ in range(n):
            rngs.params()
        return rngs.params()

    same = lambda a, b: np.array_equal(jax.random.key_data(a), jax.random.key_data(b))
    assert same(keys_left(lambda r: nn.Conv(1, 2, 3, rngs=r)), after(2))
    assert same(keys_left(lambda r: nn.Conv(1, 2, 3, use_bias=False, rngs=r)), after(1))
    assert same(keys_left(lambda r: nn.SteerableConv(_T1, _TR, 3, rngs=r)), after(1))
    assert same(keys_left(lambda r: nn.GroupBatchNorm(2, group=C4, rngs=r)), after(0))
    assert same(keys_left(lambda r: nn.FieldBatchNorm(_TR, rngs=r)), after(0))
    # a random bias_init on SteerableConv gets its own (derived) key
    conv = nn.SteerableConv(_T1, _TR, 3, bias_init=jax.nn.initializers.normal(1.0), rngs=nnx.Rngs(0))
    assert float(jnp.abs(conv.bias[...]).sum()) > 0


def test_sequential_ends_the_group_part_on_a_layer_property():
    class Invariant(nnx.Module):  # a user's pooling layer: the output has no group axis
        ends_group_axis = True

        def __call__(self, x):
            return jnp.max(x, axis=-1)

    lift = nn.LiftingConv(1, 2, 3, group=C4, rngs=nnx.Rngs(0))
    model = nn.Sequential(lift, Invariant(), nn.LiftingConv(2, 2, 3, group=Dihedral(4), rngs=nnx.Rngs(1)))
    assert model(jnp.ones((1, 7, 7, 1))).shape == (1, 7, 7, 2, 8)
    nn.Sequential(lift, nn.GlobalPool(), lambda v: v[:, None, None, :],
                  nn.LiftingConv(2, 2, 1, group=Dihedral(4), rngs=nnx.Rngs(1)))
    with pytest.raises(ValueError, match="built for group D4 but"):
        nn.Sequential(lift, nn.LiftingConv(2, 2, 3, group=Dihedral(4), rngs=nnx.Rngs(1)))


def test_field_batch_norm_kinds_are_classes():
    from equilib.nn._steerable import FIELD_NORM_KINDS, InnerFieldNorm, NormFieldNorm

    assert FIELD_NORM_KINDS == {"inner": InnerFieldNorm, "norm": NormFieldNorm}
    assert isinstance(nn.FieldBatchNorm(_TR, kind="norm", rngs=nnx.Rngs(0)).spec, NormFieldNorm)
    assert nn.FieldBatchNorm(_TR, rngs=nnx.Rngs(0)).kind == "inner"
    with pytest.raises(ValueError, match=r"`kind` must be 'inner' or 'norm', got 'layer'"):
        nn.FieldBatchNorm(_TR, kind="layer", rngs=nnx.Rngs(0))
