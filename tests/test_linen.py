"""The Linen wrappers compute the same functions as the NNX layers, from the same parameters,
declared under the same names with the same initialisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib import linen as eqlinen
from equilib import nn
from equilib.fields import FieldType
from equilib.fields3d import FieldType3D, irrep3d
from equilib.groups import Cyclic, Dihedral
from equilib.groups3d import SO3, Octahedral
from equilib.reps import irrep, regular_rep, trivial_rep
from equilib.testing import assert_equivariant

C4, D4 = Cyclic(4), Dihedral(4)
SCALES = (1.0, 1.2)


def normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape)


def _params(layer):
    """The NNX layer's parameters as the Linen ``params`` collection."""
    return {path[-1]: v[...] for path, v in nnx.to_flat_state(nnx.state(layer, nnx.Param))}


def _randomise_bias(layer, seed):
    if layer.bias is not None:
        layer.bias[...] = normal(seed, layer.bias.shape)


# (NNX layer, Linen wrapper, input shape): every conv, with the same arguments (minus rngs)
def _pair(nnx_class, linen_class, shape, *args, seed=0, **kwargs):
    return (lambda **kw: nnx_class(*args, **kwargs, **kw, rngs=nnx.Rngs(seed)),
            lambda **kw: linen_class(*args, **kwargs, **kw), shape)


_T_IN = FieldType(C4, [trivial_rep(C4), irrep(C4, 1)])
_T3 = FieldType3D(SO3(), [irrep3d(SO3(), 0), irrep3d(SO3(), 1)])
_T_OUT = FieldType(C4, [regular_rep(C4), trivial_rep(C4)])
CONVS = {
    "Conv": _pair(nn.Conv, eqlinen.Conv, (2, 11, 11, 3), 3, 5, (3, 5), stride=2, padding="CIRCULAR"),
    "LiftingConv": _pair(nn.LiftingConv, eqlinen.LiftingConv, (2, 9, 9, 3), 3, 4, 3, group=D4, padding="VALID",
                         seed=1),
    "GroupConv": _pair(nn.GroupConv, eqlinen.GroupConv, (2, 9, 9, 4, 4), 4, 2, 3, group=C4, stride=2, seed=2),
    "SteerableConv": _pair(nn.SteerableConv, eqlinen.SteerableConv, (2, 9, 9, 3), _T_IN, _T_OUT, 5, seed=3),
    "ScaleLiftingConv": _pair(nn.ScaleLiftingConv, eqlinen.ScaleLiftingConv, (2, 11, 11, 2), 2, 3, 7,
                              scales=SCALES, seed=4),
    "ScaleConv": _pair(nn.ScaleConv, eqlinen.ScaleConv, (2, 11, 11, 2, 2), 2, 3, 7, scales=SCALES, scale_size=2,
                       seed=5),
    "ScaleConv1x1": _pair(nn.ScaleConv1x1, eqlinen.ScaleConv1x1, (2, 5, 5, 2, 2), 2, 3, seed=6),
    # volumes: the same wrappers, 3D by the kernel size, the group or the field type
    "Conv 3D": _pair(nn.Conv, eqlinen.Conv, (2, 5, 5, 5, 2), 2, 3, (3, 3, 3), seed=7),
    "LiftingConv 3D": _pair(nn.LiftingConv, eqlinen.LiftingConv, (2, 5, 5, 5, 1), 1, 2, 3, group=Octahedral(),
                            seed=8),
    "GroupConv 3D": _pair(nn.GroupConv, eqlinen.GroupConv, (2, 5, 5, 5, 1, 24), 1, 1, 3, group=Octahedral(),
                          seed=9),
    "SteerableConv 3D": _pair(nn.SteerableConv, eqlinen.SteerableConv, (2, 5, 5, 5, 4), _T3, _T3, 3, seed=10),
}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_every_conv_wrapper_matches_its_nnx_layer(name):
    make_nnx, make_linen, shape = CONVS[name]
    layer, wrapper, x = make_nnx(), make_linen(), normal(10, shape)
    _randomise_bias(layer, 11)
    params = _params(layer)
    assert set(params) == {"kernel", "bias"}
    init = wrapper.init(jax.random.key(0), x)["params"]
    # same parameter names, shapes and dtypes from init ...
    assert jax.tree.map(lambda a: (a.shape, a.dtype), init) == jax.tree.map(lambda a: (a.shape, a.dtype), params)
    # ... the same initialiser (a fresh draw of the same distribution: a comparable scale) ...
    ratio = float(jnp.std(init["kernel"]) / jnp.std(params["kernel"]))
    assert 0.5 < ratio < 2.0, ratio
    # ... and the same function of the same parameters
    np.testing.assert_allclose(wrapper.apply({"params": params}, x), layer(x), rtol=1e-6, atol=1e-6)


def _constant_init(key, shape, dtype=jnp.float32):
    del key
    return jnp.linspace(-1.0, 1.0, int(np.prod(shape)), dtype=dtype).reshape(shape)


@pytest.mark.parametrize("name", sorted(CONVS))
def test_same_initialisers_give_the_same_parameters(name):
    """A deterministic ``kernel_init``/``bias_init`` goes through the same declaration in both."""
    make_nnx, make_linen, shape = CONVS[name]
    x = normal(12, shape)
    layer = make_nnx(kernel_init=_constant_init, bias_init=_constant_init)
    wrapper = make_linen(kernel_init=_constant_init, bias_init=_constant_init)
    variables = wrapper.init(jax.random.key(3), x)
    for value in _params(layer).values():  # every conv takes kernel_init and bias_init
        np.testing.assert_array_equal(value, _constant_init(None, value.shape))
    jax.tree.map(np.testing.assert_array_equal, variables["params"], _params(layer))
    np.testing.assert_allclose(wrapper.apply(variables, x), layer(x), rtol=1e-6, atol=1e-6)


NORMS = {
    "GroupBatchNorm": (lambda: nn.GroupBatchNorm(4, group=D4, momentum=0.9, rngs=nnx.Rngs(0)),
                       lambda: eqlinen.GroupBatchNorm(4, group=D4, momentum=0.9), (2, 7, 7, 4, 8)),
    "FieldBatchNorm inner": (
        lambda: nn.FieldBatchNorm(FieldType(C4, [regular_rep(C4)] * 2 + [trivial_rep(C4)]), rngs=nnx.Rngs(0)),
        lambda: eqlinen.FieldBatchNorm(FieldType(C4, [regular_rep(C4)] * 2 + [trivial_rep(C4)])), (2, 7, 7, 9)),
    "FieldBatchNorm norm": (
        lambda: nn.FieldBatchNorm(FieldType(C4, [irrep(C4, 1), regular_rep(C4), trivial_rep(C4)]), kind="norm",
                                  momentum=0.8, rngs=nnx.Rngs(0)),
        lambda: eqlinen.FieldBatchNorm(FieldType(C4, [irrep(C4, 1), regular_rep(C4), trivial_rep(C4)]),
                                       kind="norm", momentum=0.8), (2, 7, 7, 7)),
    "GroupBatchNorm 3D": (lambda: nn.GroupBatchNorm(2, group=Octahedral(), rngs=nnx.Rngs(0)),
                          lambda: eqlinen.GroupBatchNorm(2, group=Octahedral()), (2, 3, 3, 3, 2, 24)),
    "FieldBatchNorm 3D": (lambda: nn.FieldBatchNorm(_T3 + _T3, kind="norm", rngs=nnx.Rngs(0)),
                          lambda: eqlinen.FieldBatchNorm(_T3 + _T3, kind="norm"), (2, 3, 3, 3, 8)),
}


@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_norm_wrapper_matches_its_nnx_layer(name):
    make_nnx, make_linen, shape = NORMS[name]
    bn, wrapper = make_nnx(), make_linen()
    x = 1.5 + 2.0 * normal(20, shape)
    bn.scale[...] = 1.0 + 0.5 * normal(21, bn.scale.shape)
    bn.bias[...] = normal(22, bn.bias.shape)
    variables = wrapper.init(jax.random.key(0), x, use_running_average=False)
    assert jax.tree.map(jnp.shape, variables["params"]) == {"scale": bn.scale.shape, "bias": bn.bias.shape}
    assert jax.tree.map(jnp.shape, variables["batch_stats"]) == {"mean": bn.mean.shape, "var": bn.var.shape}
    # the same initial values (constants)
    np.testing.assert_array_equal(variables["batch_stats"]["var"], bn.var[...])
    variables = {"params": {"scale": bn.scale[...], "bias": bn.bias[...]}, "batch_stats": variables["batch_stats"]}
    # training: batch statistics, and the same update of the running ones
    y, updates = wrapper.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(y, bn(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], bn.mean[...], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(updates["batch_stats"]["var"], bn.var[...], rtol=1e-6, atol=1e-7)
    # evaluation: the running statistics
    bn.eval()
    variables = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    np.testing.assert_allclose(wrapper.apply(variables, x, use_running_average=True), bn(x), rtol=1e-5, atol=1e-5)


def test_linen_model_is_equivariant():
    x = normal(0, (2, 9, 9, 3))
    lift = eqlinen.LiftingConv(3, 4, 3, group=D4, padding="CIRCULAR")
    gconv = eqlinen.GroupConv(4, 2, 3, group=D4)
    p_lift = lift.init(jax.random.key(0), x)
    p_g = gconv.init(jax.random.key(1), lift.apply(p_lift, x))
    f = lambda x: gconv.apply(p_g, jax.nn.relu(lift.apply(p_lift, x)))
    assert_equivariant(f, x, D4, output="regular")


def test_linen_wrappers_check_their_arguments_as_the_nnx_layers():
    from equilib.groups import SO2

    with pytest.raises(TypeError, match="LiftingConv needs a finite group .* use equilib.nn.SteerableConv"):
        eqlinen.LiftingConv(1, 2, 3, group=SO2()).init(jax.random.key(0), jnp.ones((1, 5, 5, 1)))
    with pytest.raises(ValueError, match=r"`num_features` \(=2\) does not match"):
        eqlinen.GroupBatchNorm(2, group=C4).init(jax.random.key(0), jnp.ones((1, 5, 5, 3, 4)),
                                                use_running_average=True)
