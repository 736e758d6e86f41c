"""The equilib side of the escnn side-by-side example in docs/escnn.md (run by tests/test_docs.py)."""

import jax
from flax import nnx

from equilib import Cyclic, FieldType, nn
from equilib.reps import regular_rep, trivial_rep
from equilib.testing import assert_field_equivariant, smooth_random

# --8<-- [start:model]
G = Cyclic(8)                                       # escnn: gspaces.rot2dOnR2(N=8)
in_type = FieldType(G, [trivial_rep(G)])            # escnn: enn.FieldType(r2_act, [r2_act.trivial_repr])
hid_type = FieldType(G, [regular_rep(G)] * 8)       # escnn: enn.FieldType(r2_act, 8 * [r2_act.regular_repr])

rngs = nnx.Rngs(0)
model = nn.FieldSequential(                         # checks in_type == previous out_type
    nn.SteerableConv(in_type, hid_type, 5, rngs=rngs),       # padding "SAME" = escnn's padding=2
    nn.FieldBatchNorm(hid_type, kind="inner", rngs=rngs),
    nn.PointwiseNonlinearity(hid_type, "relu"),
    nn.SteerableConv(hid_type, hid_type, 5, rngs=rngs),
    nn.FieldBatchNorm(hid_type, kind="inner", rngs=rngs),
    nn.PointwiseNonlinearity(hid_type, "relu"),
    nn.FieldGroupPool(hid_type),                    # (B, H, W, 64) -> (B, H, W, 8), invariant fields
)

x = smooth_random(jax.random.key(0), (4, 33, 33, 1))      # NHWC array, no GeometricTensor
model.eval()                                        # running batch statistics, as escnn's model.eval()
y = model(x)                                        # a plain array (4, 33, 33, 8)
out_type = model.layers[-1].out_type                # the type travels with the layers, not the array

# escnn: model.check_equivariance(); here: the relative error per element of C8, exact at
# multiples of 90 degrees, measured (and bounded explicitly) at 45 degrees on a smooth input
errors = assert_field_equivariant(model, x, in_type, out_type, off_grid_rtol=0.15)
# --8<-- [end:model]

if __name__ == "__main__":
    print(y.shape, out_type)
    print(" ".join(f"{g}:{e:.3g}" for g, e in errors.items()))
