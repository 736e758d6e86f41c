"""Reference models: the published parameter counts, and exact invariance of the group models."""

import jax
import pytest
from flax import nnx

from equilib import check_exact
from equilib.groups import Cyclic, Dihedral
from equilib.models import GCNN, P4CNN, P4MCNN, Z2CNN, P4CNNRotationPooling
from equilib.testing import assert_equivariant, equivariance_error
from equilib.training import count_params


@pytest.mark.parametrize("model_cls,params", [(Z2CNN, 21_750), (P4CNN, 24_680), (P4CNNRotationPooling, 21_750),
                                              (P4MCNN, 26_799)])
def test_parameter_counts(model_cls, params):
    """Cohen & Welling 2016: 21,750 / 24,680 / 21,750 (matched exactly)."""
    assert count_params(model_cls(rngs=nnx.Rngs(0))) == params


@pytest.mark.parametrize("model_cls,group", [(P4CNN, Cyclic(4)), (P4CNNRotationPooling, Cyclic(4)),
                                             (P4MCNN, Dihedral(4))], ids=["P4CNN", "P4CNN-RP", "P4MCNN"])
def test_group_models_are_exactly_invariant(model_cls, group):
    model = model_cls(rngs=nnx.Rngs(0))
    model.eval()
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    assert check_exact(model, x.shape) == []
    fwd = nnx.jit(lambda m, x: m(x))
    assert_equivariant(lambda x: fwd(model, x), x, group, output="invariant")


def test_plain_model_is_not_invariant_and_c8_is_exact_on_quarter_turns():
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    z2 = Z2CNN(rngs=nnx.Rngs(0))
    z2.eval()
    assert equivariance_error(z2, x, Cyclic(4), output="invariant") > 1e-2
    c8 = GCNN(Cyclic(8), width=4, rngs=nnx.Rngs(0))
    c8.eval()
    assert_equivariant(c8, x, Cyclic(8), output="invariant", elements=[0, 2, 4, 6])


def test_bad_images():
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, H, W, 1\), got \(2, 28, 28\)"):
        P4CNN(rngs=nnx.Rngs(0))(jax.numpy.ones((2, 28, 28)))


@pytest.mark.parametrize("group,restrict", [(Cyclic(8), None), (Dihedral(8), 3)], ids=["C8", "D8->C8"])
def test_steerable_cnn_is_invariant_on_quarter_turns(group, restrict):
    from equilib.models import SteerableCNN

    model = SteerableCNN(group, width_scale=0.125, restrict_after=restrict, rngs=nnx.Rngs(0))
    model.eval()
    x = jax.random.normal(jax.random.key(0), (2, 29, 29, 1))
    assert check_exact(model, x.shape) == []
    fwd = nnx.jit(lambda m, x: m(x))
    elements = [0, 2, 4, 6]  # the rot90 subgroup (the mirror is lost after the restriction)
    assert_equivariant(lambda x: fwd(model, x), x, Cyclic(8), output="invariant", elements=elements)
    with pytest.raises(ValueError, match="`restrict_after` must be in 1..5 or None, got 6"):
        SteerableCNN(group, restrict_after=6, rngs=nnx.Rngs(0))
