"""The Linen wrappers compute the same functions as the NNX modules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib import linen as eqlinen
from equilib import nn
from equilib.groups import Cyclic, Dihedral
from equilib.testing import assert_equivariant


@pytest.mark.parametrize("G", [Cyclic(4), Dihedral(4)], ids=str)
def test_linen_matches_nnx(G):
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
    lift = nn.LiftingConv(3, 4, 3, group=G, padding="CIRCULAR", rngs=nnx.Rngs(0))
    lift.bias[...] = jnp.arange(4.0)
    gconv = nn.GroupConv(4, 2, 3, group=G, stride=2, rngs=nnx.Rngs(1))
    bn = nn.GroupBatchNorm(4, group=G, momentum=0.9, rngs=nnx.Rngs(2))
    bn.scale[...] = jnp.array([1.0, 2.0, 0.5, 1.5])

    l_lift = eqlinen.LiftingConv(3, 4, 3, group=G, padding="CIRCULAR")
    l_gconv = eqlinen.GroupConv(4, 2, 3, group=G, stride=2)
    l_bn = eqlinen.GroupBatchNorm(4, group=G, momentum=0.9)

    # same parameter shapes from init, then copy the NNX values in
    p_lift = l_lift.init(jax.random.key(0), x)["params"]
    assert jax.tree.map(jnp.shape, p_lift) == {"weight": (3, 3, 3, 4), "bias": (4,)}
    p_lift = {"weight": lift.weight[...], "bias": lift.bias[...]}
    z = lift(x)
    np.testing.assert_allclose(l_lift.apply({"params": p_lift}, x), z, rtol=1e-6, atol=1e-6)

    v_bn = l_bn.init(jax.random.key(0), z, use_running_average=False)
    v_bn = {"params": {"scale": bn.scale[...], "bias": bn.bias[...]}, "batch_stats": v_bn["batch_stats"]}
    zb, updates = l_bn.apply(v_bn, z, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(zb, bn(z), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], bn.mean[...], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(updates["batch_stats"]["var"], bn.var[...], rtol=1e-6, atol=1e-7)

    p_g = {"weight": gconv.weight[...], "bias": gconv.bias[...]}
    np.testing.assert_allclose(l_gconv.apply({"params": p_g}, zb), gconv(zb), rtol=1e-5, atol=1e-5)
    assert l_gconv.init(jax.random.key(0), zb)["params"]["weight"].shape == (3, 3, 4, G.order, 2)

    # and the Linen model is equivariant by itself
    f = lambda x: l_gconv.apply({"params": p_g}, jax.nn.relu(l_lift.apply({"params": p_lift}, x)))
    assert_equivariant(f, x, G, output="regular")
