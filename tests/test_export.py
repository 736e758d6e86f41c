"""equilib.export: whole models exported to plain Flax layers compute the same function (after
training-mode calls, so the batch norms hold non-trivial running statistics), every parameter
lives in a plain Flax layer, the argument is untouched, and an unexportable layer is named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib import SO2, Cyclic, Dihedral, FieldType, export, models, nn
from equilib._export import KEPT_AS_IS, PLAIN_LAYERS, RegularAdapter
from equilib.reps import bandlimited_regular_rep, irrep, regular_rep, trivial_rep
from equilib.testing import smooth_random


def _train(model, x):
    """A training-mode call (eager: cheaper than compiling these small models): the batch norms'
    running statistics move away from (0, 1)."""
    model.train()
    model(x * 1.5 + 0.2)


def _random_stats(model, seed=0):
    """Non-trivial running statistics without a training call (small means, variances in
    [0.5, 2]); for layers whose statistics are per field or per channel ("inner" kinds)."""
    rng = np.random.default_rng(seed)
    for _, m in nnx.iter_graph(model):
        if isinstance(getattr(m, "mean", None), nnx.BatchStat):
            m.mean[...] = jnp.asarray(0.1 * rng.standard_normal(m.mean.shape), m.mean.dtype)
            m.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, m.var.shape), m.var.dtype)


def _owners(model):
    """The type of the module holding each parameter / batch statistic."""
    nodes = dict(nnx.iter_graph(model))
    return [type(nodes[path[:-1]]) for path, node in nnx.iter_graph(model)
            if isinstance(node, (nnx.Param, nnx.BatchStat))]


def _jit(model):
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    return lambda x: f(state, x)


def _check_export(model, x, train=True, jit=False):
    """Train (or set random statistics), export, compare in evaluation mode; return the exported model."""
    if train:
        _train(model, x)
    else:
        _random_stats(model)
    plain = export(model)
    model.eval()
    run = _jit if jit else (lambda m: m)  # one compile beats op-by-op for the larger models
    y, y_plain = np.asarray(run(model)(x)), np.asarray(run(plain)(x))
    assert y_plain.shape == y.shape
    assert np.linalg.norm(y_plain - y) <= 1e-5 * np.linalg.norm(y), (np.abs(y_plain - y).max(), np.abs(y).max())
    owners = _owners(plain)
    assert owners and all(issubclass(t, PLAIN_LAYERS + KEPT_AS_IS) for t in owners), set(owners)
    return plain


@pytest.mark.parametrize("build", [
    lambda: models.P4CNN(width=2, rngs=nnx.Rngs(0)),
    lambda: models.P4MCNN(width=1, rngs=nnx.Rngs(1)),
    lambda: models.Z2CNN(width=3, rngs=nnx.Rngs(2)),
], ids=["P4CNN", "P4MCNN", "Z2CNN"])
def test_gcnn_models(build):
    model = build()
    x = smooth_random(jax.random.key(0), (2, 28, 28, 1))
    plain = _check_export(model, x, train=isinstance(model, models.GCNN))
    if isinstance(model, models.GCNN):  # the regular-map layers became adapters around nnx.Conv / BatchNorm
        assert isinstance(plain.lift, RegularAdapter) and isinstance(plain.lift.layer, nnx.Conv)
        assert isinstance(plain.bns[3], RegularAdapter) and isinstance(plain.bns[3].layer, nnx.BatchNorm)
        # the argument is untouched: same layer types, still in training mode
        assert isinstance(model.lift, nn.LiftingConv) and isinstance(model.bns[3], nn.GroupBatchNorm)


def test_steerable_cnn():
    model = models.SteerableCNN(Cyclic(4), width_scale=0.1, rngs=nnx.Rngs(3))
    plain = _check_export(model, smooth_random(jax.random.key(1), (1, 29, 29, 1)), train=False, jit=True)
    assert isinstance(plain.body.layers[0], nnx.Conv) and isinstance(plain.body.layers[1], nnx.BatchNorm)


def test_sequential_regular():
    G = Dihedral(4)
    model = nn.Sequential(
        nn.LiftingConv(1, 3, 3, group=G, rngs=nnx.Rngs(0)), nn.GroupBatchNorm(3, group=G, rngs=nnx.Rngs(0)),
        jax.nn.relu, nn.GroupConv(3, 2, 3, group=G, stride=2, rngs=nnx.Rngs(1)),
        nn.GroupNorm(2, 1, group=G, rngs=nnx.Rngs(2)),
        nn.GroupConvTranspose(2, 2, 3, group=G, stride=2, rngs=nnx.Rngs(3)), nn.GroupPool("max"),
        nn.Conv(2, 2, 3, rngs=nnx.Rngs(4)), nnx.BatchNorm(2, rngs=nnx.Rngs(5)))
    _check_export(model, smooth_random(jax.random.key(2), (2, 9, 9, 1)), jit=True)


def test_field_sequential_norm_kinds_and_kept_layers():
    G = Cyclic(4)
    scalar = FieldType(G, [trivial_rep(G)])
    mixed = FieldType(G, [regular_rep(G), irrep(G, 1), trivial_rep(G), irrep(G, 2)])  # mean on invariant dirs
    regular = FieldType(G, [regular_rep(G)] * 2)
    model = nn.FieldSequential(
        nn.SteerableConv(scalar, mixed, 3, rngs=nnx.Rngs(0)), nn.FieldBatchNorm(mixed, kind="norm", rngs=nnx.Rngs(0)),
        nn.NormNonlinearity(mixed, rngs=nnx.Rngs(0)), nn.SteerableConv(mixed, regular, 3, rngs=nnx.Rngs(1)),
        nn.FieldBatchNorm(regular, rngs=nnx.Rngs(0)), nn.FieldNorm(regular, rngs=nnx.Rngs(0)),
        nn.SteerableConvTranspose(regular, regular, 3, stride=2, rngs=nnx.Rngs(2)),
        nn.FieldLinear(regular, mixed, rngs=nnx.Rngs(3)))
    x = smooth_random(jax.random.key(3), (2, 9, 9, 1))
    _train(model, x)
    assert float(jnp.max(jnp.abs(model.layers[1].mean[...]))) > 1e-3  # non-trivial invariant means
    plain = _check_export(model, x)
    assert isinstance(plain.layers[1], nnx.BatchNorm) and isinstance(plain.layers[2], nn.NormNonlinearity)
    assert isinstance(plain.layers[5], nn.FieldNorm) and isinstance(plain.layers[7], nnx.Linear)


def test_so2_field_batch_norm():
    G = SO2()
    scalar, band = FieldType(G, [trivial_rep(G)]), FieldType(G, [bandlimited_regular_rep(G, 2)] * 2)
    model = nn.FieldSequential(nn.SteerableConv(scalar, band, 3, rngs=nnx.Rngs(0)),
                               nn.FieldBatchNorm(band, kind="norm", rngs=nnx.Rngs(0)), nn.FourierPointwise(band))
    _check_export(model, smooth_random(jax.random.key(4), (2, 9, 9, 1)))


def test_unet_c4():
    model = models.UNet(Cyclic(4), width=1, depth=2, blocks=1, rngs=nnx.Rngs(5))
    plain = _check_export(model, smooth_random(jax.random.key(5), (1, 17, 17, 1)), jit=True)
    assert isinstance(plain.encoder[0][0].conv, RegularAdapter)


class _MyLayer(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones((3,)))

    def __call__(self, x):
        return x * self.w[...]


def test_unexportable_layer_is_named():
    # negative control: a parametrised layer without export() is refused, by its path
    model = nn.Sequential(nn.Conv(1, 3, 3, rngs=nnx.Rngs(0)), _MyLayer())
    with pytest.raises(ValueError, match=r"model\.layers\[1\] \(_MyLayer\).*export\(\)"):
        export(model)

    class Model(nnx.Module):
        def __init__(self):
            self.convs = nnx.List([nn.Conv(1, 3, 3, rngs=nnx.Rngs(0)), nn.Conv(3, 3, 3, rngs=nnx.Rngs(0)),
                                   _MyLayer()])

    with pytest.raises(ValueError, match=r"model\.convs\[2\] \(_MyLayer\)"):
        export(Model())
    with pytest.raises(TypeError, match="model"):
        export(lambda x: x)


def test_exported_as_is_attribute_and_adapter_errors():
    class Kept(_MyLayer):
        exported_as_is = True

    model = nn.Sequential(nn.Conv(1, 3, 3, rngs=nnx.Rngs(0)), Kept())
    assert isinstance(export(model).layers[1], Kept)
    adapter = export(nn.GroupConv(1, 1, 3, group=Cyclic(4), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"\(batch, H, W, C, 4\)"):
        adapter(jnp.ones((1, 5, 5, 4)))
