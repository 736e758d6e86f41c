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
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from equilib import SO2, Cyclic, FieldType, nn
from equilib.reps import irrep, trivial_rep
from equilib.testing import assert_field_equivariant, field_equivariance_errors, smooth_random

forward = nnx.jit(lambda model, x: model(x))
# the figures go next to this page (docs/tutorials/figures/), or where the tests point
FIGURES = Path(os.environ.get("EQUILIB_TUTORIAL_FIGURES") or Path(__file__).resolve().parent / "figures")


def save(fig, name):
    """Write a matplotlib ``Figure`` (drawn by Agg: no window opens) to ``FIGURES / name``."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, metadata={"Software": None})  # no version stamp in the file



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
scalar, vector, freq2 = trivial_rep(G), irrep(G, 1), irrep(G, 2)
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
# basis (Gaussian rings times angular harmonics, escnn's construction). The parameter `kernel`
# holds the coefficients. Here a scalar image is mapped to two scalar fields, two vector fields
# and one frequency-2 field.
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
      f"| {conv.kernel.size} weights (a plain 5x5 conv {in_type.size}->{out_type.size} has "
      f"{5 * 5 * in_type.size * out_type.size})")
C16 = Cyclic(16)
errors = assert_field_equivariant(lambda v: forward(conv, v), x, in_type, out_type, group=C16,
                                  elements=[1, 2, 4], off_grid_rtol=0.15)
print("equivariance error:", fmt(errors, C16, ".3f"))

# %% [markdown]
# The picture: one vector field of this convolution's output, as arrows, on the letter F and on
# the F rotated by 45 and 90 degrees.

# %% tags=["hide-input"]
letter = np.zeros((33, 33), np.float32)  # the letter F, blurred: band-limited, so that 45 deg interpolates well
letter[8:25, 11:14] = letter[8:11, 11:22] = letter[15:18, 11:19] = 1
blur = np.exp(-0.5 * (np.arange(-4, 5) / 1.2) ** 2)
letter = np.apply_along_axis(np.convolve, 1, np.apply_along_axis(np.convolve, 0, letter, blur, "same"), blur, "same")
letter = jnp.asarray(letter / letter.max())[None, :, :, None]  # (1, 33, 33, 1)
field = out_type.field_slice(2)  # the channels of the first vector field of `conv`'s output
v0 = forward(conv, letter)[..., field]  # (1, 33, 33, 2): x right, y up
rows, cols = np.mgrid[1:33:3, 1:33:3]  # an arrow every 3 pixels, centre (16, 16) included
i = np.argmax(np.linalg.norm(v0[0, rows, cols], axis=-1))
star = rows.flat[i], cols.flat[i]  # the longest arrow: circled, followed through the rotations

fig = Figure(figsize=(13.5, 5.4), dpi=100)
axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.05, "left": 0.01, "right": 0.99, "top": 0.83, "bottom": 0.08})
for ax, degrees in zip(axes, (0, 45, 90)):
    angle = np.deg2rad(degrees)
    rotated = in_type.transform(letter, angle)
    v = np.asarray(forward(conv, rotated)[..., field])[0]
    moved = np.asarray(vector_type.transform(v0, angle))[0]  # v0's pixels moved and arrows turned
    ax.imshow(np.asarray(rotated)[0, :, :, 0], cmap="gray_r", vmin=0, vmax=2.5)
    keep = np.linalg.norm(moved[rows, cols], axis=-1) > 0.1 * np.abs(v0).max()  # no arrow where the field is ~0
    r, c = rows[keep], cols[keep]
    ax.quiver(c, r, v[r, c, 0], v[r, c, 1], color="tab:orange", angles="uv", pivot="middle", scale=10, width=0.011,
              label="conv(rotated F)")
    if degrees:
        ax.quiver(c, r, moved[r, c, 0], moved[r, c, 1], color="black", angles="uv", pivot="middle", scale=10,
                  width=0.003, label="conv(F), rotated as a vector field: pixels moved, arrows turned")
    px, py = vector(angle) @ [star[1] - 16, 16 - star[0]]  # the circled point, rotated (y up, about the centre)
    ax.plot(16 + px, 16 - py, "o", ms=22, mfc="none", mec="tab:blue", mew=2)
    ax.quiver(16 + px, 16 - py, *(vector(angle) @ np.asarray(v0[0, star[0], star[1]])), color="tab:blue",
              angles="uv", pivot="middle", scale=10, width=0.005)  # its arrow, turned by the angle
    err = np.linalg.norm(v - moved) / np.linalg.norm(moved)
    ax.set_title(f"F rotated by {degrees} deg: relative difference {err:.1e}" if degrees else "the F and one "
                 "vector field of conv(F)", fontsize=11)
    ax.set_xlim(1.5, 30.5)
    ax.set_ylim(30.5, 1.5)
    ax.set_xticks([])
    ax.set_yticks([])
axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=10, frameon=False)
fig.suptitle("An irrep(1) output field of an SO(2) SteerableConv: rotate the input, and every arrow moves and "
             "turns with it", fontsize=13)
save(fig, "03_steerable_vector_field.png")

# %% [markdown]
# ![Arrows of a vector field of the steerable conv on the letter F, and on the F rotated by 45
# and 90 degrees: the arrows computed from the rotated F (orange) lie under the rotated arrows of
# the upright F (black)](figures/03_steerable_vector_field.png)
#
# Orange: the vector field computed from the rotated F. Black: the field of the upright F,
# rotated as a field of type `vector`, `vector_type.transform(v, angle)`: each arrow moves to
# the rotated position *and* turns by the angle, as the circled arrow (blue: moved and turned
# by hand, `vector(angle) @ arrow`) shows. They coincide, exactly at 90 degrees and up to the interpolation of
# the rotated input (2%) at 45 degrees.

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

norm_relu = nn.NormNonlinearity(out_type, "n_relu", rngs=nnx.Rngs(0))  # a bias per field, 0 at first
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
    nn.NormNonlinearity(hidden, "n_relu", rngs=rngs),
    nn.NormPool(hidden),                       # (B, H, W, 6) -> (B, H, W, 3), invariant
    lambda f: jnp.mean(f, axis=(1, 2)),        # -> (B, 3)
)
errors = assert_field_equivariant(lambda v: forward(model, v), x, in_type, "invariant", group=C16,
                                  elements=[1, 2, 3, 4, 8], off_grid_rtol=0.1)
print("invariance error:", fmt(errors, C16, ".1e"))
