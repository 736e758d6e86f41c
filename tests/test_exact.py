"""check_exact and the trace-time ExactnessWarning catch sizes that break exact rot90 equivariance."""

import warnings

import jax
import pytest
from flax import nnx

import equilib
from equilib import nn
from equilib.groups import Cyclic
from equilib.testing import equivariance_error


def model(stride, rngs):
    G = Cyclic(4)
    return nn.Sequential(nn.LiftingConv(1, 3, 3, group=G, stride=stride, rngs=rngs), jax.nn.relu,
                         nn.GroupConv(3, 3, 3, group=G, stride=stride, rngs=rngs), nn.GroupPool())


@pytest.mark.parametrize("size", [27, 28, 29, 30])
def test_check_exact_agrees_with_measured_equivariance(size):
    m = model(2, nnx.Rngs(0))
    problems = equilib.check_exact(m, (1, size, size, 1))
    x = jax.random.normal(jax.random.key(0), (1, size, size, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", equilib.ExactnessWarning)
        err = equivariance_error(lambda x: m(x).mean((1, 2)), x, Cyclic(4), output="invariant")
    if problems:
        assert err > 1e-3, problems
        assert "stride=2" in problems[0] and "use an odd input size" in problems[0]
    else:
        assert err < 1e-5
    # 29 -> 15 -> 8: odd sizes all the way is exact; 27 -> 14 breaks at the second layer
    assert bool(problems) == (size != 29)


def test_check_exact_accepts_layer_lists_and_callables():
    rngs = nnx.Rngs(0)
    layers = [nn.LiftingConv(1, 3, 3, group=Cyclic(4), stride=2, rngs=rngs), nn.GroupPool()]
    assert equilib.check_exact(layers, (1, 9, 9, 1)) == []
    assert len(equilib.check_exact(layers, (1, 10, 10, 1))) == 1
    assert len(equilib.check_exact(lambda x: layers[1](layers[0](x)), (1, 10, 10, 1))) == 1


def test_warning_at_call_time():
    layer = nn.LiftingConv(1, 3, 3, group=Cyclic(4), stride=2, rngs=nnx.Rngs(0))
    with pytest.warns(equilib.ExactnessWarning, match=r"input size H=10, W=10 .* stride=2"):
        layer(jax.numpy.ones((1, 10, 10, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(jax.numpy.ones((1, 11, 11, 1)))  # no warning
