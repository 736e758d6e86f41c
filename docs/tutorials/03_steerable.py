# %% [markdown]
# # 3. Steerable fields
#
# A regular group map (tutorial 2) stores one value per group element, which is `|G|` times the
# memory of a plain map and does not exist for the continuous rotation group SO(2). *Steerable*
# networks (Weiler & Cesa 2019, the theory behind escnn) describe the channels of a feature map
# by how they transform instead: a scalar does not change under a rotation, a vector rotates
# with it, a frequency-2 field rotates twice as fast. The description is a **field type**, a
# group and one representation per field, and every layer is built so that its output has the
# type it declares. This tutorial builds field types of SO(2), watches a vector field rotate,
# and assembles a steerable convolution with norm and gated nonlinearities.

# %%
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib import SO2, Cyclic, FieldType, nn
from equilib.testing import assert_field_equivariant, field_equivariance_errors, smooth_random

forward = nnx.jit(lambda model, x: model(x))


def fmt(errors, group, spec=".1e"):
    return ", ".join(f"{np.degrees(group.angle(g)):g} deg: {e:{spec}}" for g, e in errors.items())


# %% [markdown]
# ## Representations and field types
#
# `SO2()` is the group of all planar rotations. Its irreducible representations are
# `irrep(0)` (trivial, 1x1) and, for each frequency `k >= 1`, the 2x2 rotation by `k` times the
# angle. A `Rep` is evaluated on an element (for SO(2), an angle in radians; positive is
# counter-clockwise as displayed).

# %%
G = SO2()
scalar, vector, freq2 = G.trivial_rep, G.irrep(1), G.irrep(2)
print(vector, "at 90 degrees:\n", np.round(vector(np.pi / 2), 6))
print(freq2, "at 90 degrees:\n", np.round(freq2(np.pi / 2), 6))

ft = FieldType(G, [scalar, scalar, vector, freq2])
print(ft)
print("fields:", len(ft), " channels:", ft.size, " channels of field 2:", ft.field_slice(2))

# %% [markdown]
# A map of this type is an ordinary array `(B, H, W, 6)`; there is no wrapper object. The
# type tells how an element acts on it: `ft.transform(x, angle)` moves the pixels (exactly for
# multiples of 90 degrees, by interpolation otherwise) and multiplies each field by its matrix.
#
# ## A vector field you know: the image gradient
#
# The gradient of a scalar image is a vector field. In equilib's plane coordinates `x` points
# right (columns) and `y` points **up** (rows point down), so the gradient is
# `(d/dcol, -d/drow)`. Rotating the image and then taking the gradient gives the rotated
# gradient field, with the vector rotated by the `irrep(1)` matrix: that is what "the field
# has type `vector`" means.

# %%
def gradient(img):
    """(B, H, W, 1) scalar image -> (B, H, W, 2) vector field (x right, y up)."""
    d_row, d_col = jnp.gradient(img[..., 0], axis=(1, 2))
    return jnp.stack([d_col, -d_row], axis=-1)


scalar_type = FieldType(G, [scalar])
vector_type = FieldType(G, [vector])
img = smooth_random(jax.random.key(0), (1, 33, 33, 1))
for degrees in (90, 180):
    angle = np.deg2rad(degrees)
    lhs = gradient(scalar_type.transform(img, angle))
    rhs = vector_type.transform(gradient(img), angle)
    print(f"{degrees} deg: |grad(rotate(img)) - rotate_field(grad(img))| / |grad| = "
          f"{float(jnp.linalg.norm(lhs - rhs) / jnp.linalg.norm(rhs)):.1e}")
errors = field_equivariance_errors(gradient, img, scalar_type, vector_type, group=Cyclic(4))
assert max(errors.values()) < 1e-5

# %% [markdown]
# ## A steerable convolution
#
# `SteerableConv(in_type, out_type, kernel_size)` learns only kernels `k` that satisfy
# `k(g d) = rho_out(g) k(d) rho_in(g)^T` for every rotation `g`: a linear combination of a fixed
# basis (Gaussian rings times angular harmonics, escnn's construction). The weights are the
# coefficients. Here a scalar image is mapped to two scalar fields, two vector fields and one
# frequency-2 field.
#
# Rotations by multiples of 90 degrees are exact; other angles are measured (`Cyclic(16)` tests
# multiples of 22.5 degrees; the input is smooth and masked by a disk, the error is read in a
# central disk), as for the C8 group convolution in tutorial 2.

# %%
in_type = FieldType(G, [scalar])
out_type = FieldType(G, [scalar] * 2 + [vector] * 2 + [freq2])
conv = nn.SteerableConv(in_type, out_type, 5, rngs=nnx.Rngs(0))
x = smooth_random(jax.random.key(1), (2, 33, 33, 1), sigma=1.5)
print("steerable conv:", x.shape, "->", forward(conv, x).shape,
      f"| {conv.weight.size} weights (a plain 5x5 conv {in_type.size}->{out_type.size} has "
      f"{5 * 5 * in_type.size * out_type.size})")
C16 = Cyclic(16)
errors = assert_field_equivariant(lambda v: forward(conv, v), x, in_type, out_type, group=C16,
                                  elements=[1, 2, 4], off_grid_rtol=0.15)
print("equivariance error:", fmt(errors, C16, ".3f"))

# %% [markdown]
# ## Nonlinearities
#
# A ReLU applied to each channel does not commute with rotating a vector: `relu((1, -1))` is
# `(1, 0)`, whose rotation by 90 degrees is `(0, 1)`; but `(1, -1)` rotated by 90 degrees is
# `(1, 1)`, and `relu((1, 1)) = (1, 1)`. Only representations that *permute* channels (trivial,
# regular, quotient) allow pointwise functions, and `PointwiseNonlinearity` refuses the others.
# Two equivariant alternatives:
#
# * `NormNonlinearity`: each field is scaled by a function of its norm, `f * relu(|f| - b) / |f|`
#   (the norm of an orthogonal representation is invariant);
# * `GatedNonlinearity`: each field is multiplied by `sigmoid` of a scalar *gate* field, computed
#   by the previous layer alongside it.

# %%
v = forward(conv, x)
relu_errors = field_equivariance_errors(jax.nn.relu, v, out_type, out_type, group=Cyclic(4))
print("plain relu on these fields, 90-degree error:", f"{relu_errors[1]:.2f}")
try:
    nn.PointwiseNonlinearity(out_type, "relu")
except ValueError as e:
    print("PointwiseNonlinearity refuses:", str(e).split(";")[0])

norm_relu = nn.NormNonlinearity(out_type, "n_relu")
errors = assert_field_equivariant(norm_relu, v, out_type, out_type, group=Cyclic(4))
print("NormNonlinearity:", fmt(errors, Cyclic(4)))

gated_in = FieldType(G, [scalar] * 3 + [vector] * 2 + [freq2])  # 3 gates, then 3 gated fields
gate = nn.GatedNonlinearity(gated_in, gates=["gate"] * 3 + ["gated"] * 3)
print("GatedNonlinearity:", gate.in_type, "->", gate.out_type)

# %% [markdown]
# ## An invariant network
#
# `FieldSequential` checks that each layer's `in_type` is the previous layer's `out_type`.
# The network maps a scalar image to gates and vector / frequency-2 fields, gates them,
# convolves again, and ends with `NormPool` (the norm of each field: invariant scalars) and a
# spatial mean: a rotation-invariant descriptor of the image.

# %%
rngs = nnx.Rngs(2)
hidden = FieldType(G, [vector] * 2 + [freq2])
model = nn.FieldSequential(
    nn.SteerableConv(in_type, gated_in, 5, rngs=rngs),
    nn.GatedNonlinearity(gated_in, gates=["gate"] * 3 + ["gated"] * 3),
    nn.SteerableConv(hidden, hidden, 5, rngs=rngs),
    nn.NormNonlinearity(hidden, "n_relu"),
    nn.NormPool(hidden),                       # (B, H, W, 6) -> (B, H, W, 3), invariant
    lambda f: jnp.mean(f, axis=(1, 2)),        # -> (B, 3)
)
errors = assert_field_equivariant(lambda v: forward(model, v), x, in_type, "invariant", group=C16,
                                  elements=[1, 2, 3, 4, 8], off_grid_rtol=0.1)
print("invariance error:", fmt(errors, C16, ".1e"))
