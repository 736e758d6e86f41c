"""Bad input gives a ValueError/TypeError naming the argument, what was expected and what came."""

import jax.numpy as jnp
import pytest
from flax import nnx

from equilib import functional as F
from equilib import linen as eqlinen
from equilib import nn
from equilib.groups import Cyclic, Dihedral
from equilib.testing import equivariance_error

C4, D4 = Cyclic(4), Dihedral(4)


def rngs():
    return nnx.Rngs(0)


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"LiftingConv expects an input of rank 4 \(batch, H, W, C\), got shape \(9, 9, 3\)"):
        nn.LiftingConv(3, 4, 3, group=C4, rngs=rngs())(jnp.ones((9, 9, 3)))
    with pytest.raises(ValueError, match=r"GroupConv expects an input of rank 5 .* got shape \(1, 9, 9, 12\)"):
        nn.GroupConv(3, 4, 3, group=C4, rngs=rngs())(jnp.ones((1, 9, 9, 12)))
    with pytest.raises(ValueError, match="GroupPool expects a regular map of rank 5"):
        nn.GroupPool()(jnp.ones((1, 9, 9, 3)))


def test_channel_mismatch():
    with pytest.raises(ValueError, match=r"`in_channels` \(=3\) does not match the input's channel axis \(=4"):
        nn.LiftingConv(3, 4, 3, group=C4, rngs=rngs())(jnp.ones((1, 9, 9, 4)))
    with pytest.raises(ValueError, match=r"`in_channels` \(=3\) does not match the input's channel axis \(=2"):
        nn.GroupConv(3, 4, 3, group=C4, rngs=rngs())(jnp.ones((1, 9, 9, 2, 4)))
    with pytest.raises(ValueError, match=r"`in_channels` \(=3\) does not match"):
        nn.Conv(3, 4, 3, rngs=rngs())(jnp.ones((1, 9, 9, 1)))
    with pytest.raises(ValueError, match=r"`in_channels` \(=3\) does not match"):
        eqlinen.LiftingConv(3, 4, 3, group=C4).init(nnx.Rngs(0).params(), jnp.ones((1, 9, 9, 1)))
    with pytest.raises(ValueError, match=r"`in_channels` \(=2\) does not match"):
        nn.GroupBatchNorm(2, group=C4, rngs=rngs())(jnp.ones((1, 9, 9, 3, 4)))


def test_group_axis_mismatch():
    with pytest.raises(ValueError, match=r"`group` \(D4, order 8\) does not match the input's group axis \(last, =4"):
        nn.GroupConv(3, 4, 3, group=D4, rngs=rngs())(jnp.ones((1, 9, 9, 3, 4)))
    with pytest.raises(ValueError, match=r"`group` \(C4, order 4\) does not match the input's group axis"):
        nn.GroupBatchNorm(3, group=C4, rngs=rngs())(jnp.ones((1, 9, 9, 3, 8)))
    with pytest.raises(ValueError, match=r"group axis \(last\) has size 8, expected \|C4\| = 4"):
        F.group_conv(jnp.ones((1, 9, 9, 3, 8)), jnp.ones((3, 3, 3, 4, 2)), C4)
    with pytest.raises(ValueError, match=r"`kernel` axis 3 \(input group axis\) must have size \|C4\| = 4, got 8"):
        F.expand_group_kernel(jnp.ones((3, 3, 3, 8, 2)), C4)


def test_even_kernel_that_breaks_exact_rotation():
    with pytest.raises(ValueError, match=r"`kernel_size` \(=4\) is even, which with padding='SAME'"):
        nn.LiftingConv(3, 4, 4, group=C4, rngs=rngs())
    with pytest.raises(ValueError, match=r"`kernel_size` \(=2\) is even, which with padding='CIRCULAR'"):
        nn.GroupConv(3, 4, 2, group=C4, padding="circular", rngs=rngs())
    nn.GroupConv(3, 4, 4, group=C4, padding="VALID", rngs=rngs())  # exact: allowed (the G-CNN's last layer)
    nn.Conv(3, 4, 4, rngs=rngs())  # plain convs are not rotation-equivariant anyway
    with pytest.raises(ValueError, match="must be square"):
        nn.LiftingConv(3, 4, (3, 5), group=C4, rngs=rngs())


def test_layers_built_for_different_groups():
    with pytest.raises(ValueError, match=r"layer 2 \(GroupConv\) is built for group C8 but layer 0 "
                                         r"\(LiftingConv\) before it uses D4: expected D4, got C8"):
        nn.Sequential(nn.LiftingConv(1, 4, 3, group=D4, rngs=rngs()), lambda x: x,
                      nn.GroupConv(4, 4, 3, group=Cyclic(8), rngs=rngs()))
    with pytest.raises(ValueError, match="built for group C4 but"):
        nn.Sequential(nn.LiftingConv(1, 4, 3, group=D4, rngs=rngs()),
                      nn.GroupBatchNorm(4, group=C4, rngs=rngs()))
    # after a GroupPool a new group part may start
    nn.Sequential(nn.LiftingConv(1, 4, 3, group=D4, rngs=rngs()), nn.GroupPool(),
                  nn.LiftingConv(4, 4, 3, group=C4, rngs=rngs()))


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"`group` must be an equilib.groups.Group .* got str"):
        nn.LiftingConv(3, 4, 3, group="C4", rngs=rngs())
    with pytest.raises(ValueError, match=r"`padding` must be one of \('SAME', 'VALID', 'CIRCULAR'\), got 'REFLECT'"):
        nn.GroupConv(3, 4, 3, group=C4, padding="REFLECT", rngs=rngs())
    with pytest.raises(ValueError, match=r"`stride` must be an integer >= 1, got 0"):
        nn.Conv(3, 4, 3, stride=0, rngs=rngs())
    with pytest.raises(ValueError, match=r"`out_channels` must be a positive integer, got 0"):
        nn.LiftingConv(3, 0, 3, group=C4, rngs=rngs())
    with pytest.raises(ValueError, match=r"`mode` must be one of \('max', 'mean', 'norm'\), got 'sum'"):
        nn.GroupPool("sum")
    with pytest.raises(ValueError, match=r"`output` must be one of"):
        equivariance_error(lambda x: x, jnp.ones((1, 5, 5, 1)), C4, output="regulr")
