"""Bad input gives a ValueError/TypeError naming the argument, what was expected and what came."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from equilib import functional as F
from equilib import linen as eqlinen
from equilib import nn
from equilib.fields import FieldType
from equilib.groups import O2, SO2, Cyclic, Dihedral
from equilib.reps import regular_rep, trivial_rep
from equilib.testing import equivariance_error

C4, D4 = Cyclic(4), Dihedral(4)


def rngs():
    return nnx.Rngs(0)


def test_wrong_rank():
    with pytest.raises(ValueError,
                       match=r"LiftingConv expects an input of rank 4 \(batch, H, W, C\), got shape \(9, 9, 3\)"):
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
    # GroupBatchNorm's argument is `num_features`: the message names it
    with pytest.raises(ValueError, match=r"`num_features` \(=2\) does not match the input's channel axis \(=3"):
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
    with pytest.raises(TypeError, match=r"`group` must be a finite group \(Trivial\(\), Cyclic\(n\), .* got str"):
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


def test_valid_padding_on_an_input_smaller_than_the_kernel():
    """It used to return an empty map silently: the layers and the functions raise, naming padding,
    kernel_size and the input size."""
    msg = r"padding='VALID' with kernel_size=5 needs an input of at least 5x5 pixels, got H=3, W=3"
    with pytest.raises(ValueError, match="Conv: " + msg):
        nn.Conv(1, 2, 5, padding="VALID", rngs=rngs())(jnp.ones((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="LiftingConv: " + msg):
        nn.LiftingConv(1, 2, 5, group=C4, padding="VALID", rngs=rngs())(jnp.ones((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="GroupConv: " + msg):
        nn.GroupConv(1, 2, 5, group=C4, padding="VALID", rngs=rngs())(jnp.ones((1, 3, 3, 1, 4)))
    t = FieldType(C4, [trivial_rep(C4)])
    with pytest.raises(ValueError, match="SteerableConv: " + msg):
        nn.SteerableConv(t, t, 5, padding="VALID", rngs=rngs())(jnp.ones((1, 3, 3, 1)))
    with pytest.raises(ValueError, match=r"ScaleLiftingConv: padding='VALID' with kernel_size=7"):
        nn.ScaleLiftingConv(1, 2, 7, scales=(1.0, 1.2), padding="VALID", rngs=rngs())(jnp.ones((1, 6, 9, 1)))
    with pytest.raises(ValueError, match=r"conv2d: padding='VALID' with kernel_size=\(3, 5\) .* got H=4, W=4"):
        F.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 5, 1, 2)), padding="VALID")
    with pytest.raises(ValueError, match="conv2d: " + msg):
        F.lifting_conv(jnp.ones((1, 3, 3, 1)), jnp.ones((5, 5, 1, 2)), C4, padding="VALID")
    with pytest.raises(ValueError, match="conv2d: " + msg):
        F.group_conv(jnp.ones((1, 3, 3, 1, 4)), jnp.ones((5, 5, 1, 4, 2)), C4, padding="VALID")
    # the smallest valid input gives a 1x1 map, and "SAME" never raises
    assert nn.Conv(1, 2, 5, padding="VALID", rngs=rngs())(jnp.ones((1, 5, 5, 1))).shape == (1, 1, 1, 2)
    assert nn.Conv(1, 2, 5, rngs=rngs())(jnp.ones((1, 3, 3, 1))).shape == (1, 3, 3, 2)


def test_continuous_group_in_a_regular_layer_points_to_steerable_layers():
    msg = r"needs a finite group \(Trivial\(\), Cyclic\(n\), Dihedral\(n\)\).* got the continuous group SO2.* " \
          r"use equilib.nn.SteerableConv"
    with pytest.raises(TypeError, match="LiftingConv " + msg):
        nn.LiftingConv(1, 4, 3, group=SO2(), rngs=rngs())
    with pytest.raises(TypeError, match="GroupConv " + msg):
        nn.GroupConv(1, 4, 3, group=SO2(), rngs=rngs())
    with pytest.raises(TypeError, match="GroupBatchNorm " + msg.replace("SO2", "O2")):
        nn.GroupBatchNorm(4, group=O2(), rngs=rngs())
    with pytest.raises(TypeError, match="LiftingConv " + msg):
        eqlinen.LiftingConv(1, 4, 3, group=SO2()).init(jax.random.key(0), jnp.ones((1, 5, 5, 1)))


def test_rngs_is_required_and_keyword_only_for_layers_with_parameters():
    t = FieldType(C4, [regular_rep(C4)])
    for make in (lambda: nn.FieldBatchNorm(t), lambda: nn.NormNonlinearity(t),
                 lambda: nn.GroupBatchNorm(2, group=C4), lambda: nn.SteerableConv(t, t, 3)):
        with pytest.raises(TypeError, match="rngs"):
            make()
    with pytest.raises(TypeError):
        nn.Conv(1, 2, 3, 1, rngs=rngs())  # stride is keyword-only
