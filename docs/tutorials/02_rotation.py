# %% [markdown]
# # 2. Your first rotation-equivariant network
#
# Tutorial 1 showed that a plain CNN is not robust to rotations. A *group convolution* (Cohen &
# Welling 2016) shares its weights over rotations as well as positions: it applies every filter
# in every orientation of a group `G` and keeps the orientation as an extra axis of the feature
# map. This tutorial builds the classic three-layer recipe
#
# `LiftingConv` (image -> map over `G`) -> `GroupConv` (map over `G` -> map over `G`) ->
# `GroupPool` (max over `G`) -> mean over space,
#
# and checks with `equilib.testing` that it is exactly invariant to rotations by 90 degrees
# (and, with `Dihedral(4)`, to mirrors), then looks at a group with off-grid rotations (C8) and
# at the input sizes that break exactness.

# %%
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from equilib import Cyclic, Dihedral, ExactnessWarning, check_exact, nn
from equilib.testing import assert_equivariant, equivariance_errors, smooth_random

forward = nnx.jit(lambda model, x: model(x))
# the figures go next to this page (docs/tutorials/figures/), or where the tests point
FIGURES = Path(os.environ.get("EQUILIB_TUTORIAL_FIGURES") or Path(__file__).resolve().parent / "figures")


def save(fig, name):
    """Write a matplotlib ``Figure`` (drawn by Agg: no window opens) to ``FIGURES / name``."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, metadata={"Software": None})  # no version stamp in the file


def letters(size=29):
    """Two test images (2, size, size, 1): the letters F and L, which no rotation maps to themselves."""
    img = np.zeros((2, size, size, 1), np.float32)
    c = size // 2
    img[0, c - 7:c + 8, c - 5:c - 2] = img[0, c - 7:c - 4, c - 5:c + 6] = img[0, c - 1:c + 2, c - 5:c + 3] = 1
    img[1, c - 7:c + 8, c - 4:c - 1] = img[1, c + 5:c + 8, c - 4:c + 6] = 1
    return jnp.asarray(img)


def fmt(errors, spec=".1e"):
    return ", ".join(f"{g}: {e:{spec}}" for g, e in errors.items())

# %% [markdown]
# ## The group and how it acts
#
# `Cyclic(4)` is C4, the rotations by 0, 90, 180 and 270 degrees. Element `k` rotates by
# `2*pi*k/4` **counter-clockwise as the image is displayed** (row index pointing down), which is
# `numpy.rot90`. `transform_image` applies an element to the spatial axes of a `(B, H, W, C)` array.

# %%
G = Cyclic(4)
print(G, "order", G.order, "angles (deg):", [round(np.degrees(G.angle(g))) for g in range(G.order)])
img = np.arange(9.0).reshape(1, 3, 3, 1)  # a 3x3 image with pixels 0..8, row by row
print("image:\n", img[0, :, :, 0])
print("element 1 (90 degrees counter-clockwise):\n", np.asarray(G.transform_image(img, 1))[0, :, :, 0])
assert np.array_equal(G.transform_image(img, 1), np.rot90(img, 1, axes=(1, 2)))

# %% [markdown]
# ## A lifting convolution
#
# `LiftingConv(in_channels, out_channels, kernel_size, group=G)` maps `(B, H, W, C)` to a *regular*
# map `(B, H, W, C_out, |G|)`: channel `o` at group index `h` is the response to filter `o`
# rotated by `h`. Channel counts count fields, so 8 output channels over C4 are 8 x 4 maps
# and the layer has the parameters of a plain `Conv(1, 8, 3)`.
#
# Rotating the input by `g` rotates each map *and* cyclically shifts the group axis
# (`(g.f)(h) = f(g^-1 h)`, the regular representation); `G.transform_regular` does both, and the
# harness compares `lift(g.x)` with `g.lift(x)` for every element.

# %%
x = letters(29)
lift = nn.LiftingConv(1, 8, 3, group=G, rngs=nnx.Rngs(0))
y = forward(lift, x)
print("lifting conv:", x.shape, "->", y.shape)
print("group-axis permutation of element 1:", G.regular_permutation(1))
g = 1
err = float(jnp.linalg.norm(forward(lift, G.transform_image(x, g)) - G.transform_regular(y, g))
            / jnp.linalg.norm(y))
print(f"lift(g.x) vs g.lift(x) for g = 1: relative error {err:.1e}")
errors = equivariance_errors(lambda v: forward(lift, v), x, G, output="regular")
print("all elements:", fmt(errors))

# %% [markdown]
# The picture: one output channel of the lifting conv on the letter F and on the F rotated by
# 90 degrees, next to a plain `Conv` with the same filter (it computes the `h = 0` map only).

# %% tags=["hide-input"]
plain_conv = nn.Conv(1, 8, 3, rngs=nnx.Rngs(0))  # the same initial filter as `lift`'s h = 0
inputs = [x[:1], G.transform_image(x[:1], g)]
lifted = [np.asarray(forward(lift, v))[0] for v in inputs]  # (29, 29, 8, 4) each
plain_maps = [np.asarray(forward(plain_conv, v))[0] for v in inputs]  # (29, 29, 8) each
assert np.allclose(plain_maps[0], lifted[0][..., 0], atol=1e-6)
o = int(np.argmax(lifted[0].std(axis=-1).mean(axis=(0, 1))))  # the channel whose 4 maps differ most
c = slice(4, 25)  # rows and columns of the letter and a margin
colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]  # one per filter orientation h
perm = G.regular_permutation(g)  # bottom map h is the top map perm[h], rotated
vmax = max(np.abs(maps[..., o, :]).max() for maps in lifted)

fig = Figure(figsize=(12.8, 6.0), dpi=100)
axes = fig.subplots(2, 6, gridspec_kw={"wspace": 0.08, "hspace": 0.42, "left": 0.05, "right": 0.93,
                                      "top": 0.82, "bottom": 0.02})
for r, name in enumerate(["input x", "rotated input g.x"]):
    axes[r, 0].imshow(np.asarray(inputs[r])[0, c, c, 0], cmap="gray_r")
    axes[r, 0].set_ylabel(name + ("\n(g: 90 deg)" if r else ""), fontsize=10)
    axes[r, 1].imshow(plain_maps[r][c, c, o], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    for h in range(G.order):
        ax = axes[r, 2 + h]
        im = ax.imshow(lifted[r][c, c, o, h], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        src = h if r == 0 else int(perm[h])  # which top map this one is, rotated
        for side in ax.spines.values():
            side.set_edgecolor(colors[src])
            side.set_linewidth(3.5)
        ax.set_title(f"h = {h}\nfilter rotated by {90 * h} deg" if r == 0 else f"h = {h}\n= rot90 of h = {src} above",
                     fontsize=10)
for side in axes[0, 1].spines.values():  # the plain conv's filter is h = 0's
    side.set_edgecolor(colors[0])
    side.set_linewidth(3.5)
for side in axes[1, 1].spines.values():
    side.set_edgecolor(colors[int(perm[0])])
    side.set_linewidth(3.5)
axes[0, 0].set_title("image", fontsize=10)
axes[0, 1].set_title("plain conv\n(the filter of h = 0)", fontsize=10)
axes[1, 1].set_title("plain conv: not rot90 of above\nbut of h = 3, a filter\nthe plain conv lacks", fontsize=10)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Rotate the input by 90 deg: each orientation map rotates and the group axis cycles, h -> h + 1",
             fontsize=13, y=0.985)
fig.colorbar(im, ax=axes[:, 1:], fraction=0.015, pad=0.01, label="response")
left, right = axes[0, 2].get_position(), axes[0, 5].get_position()
fig.text((left.x0 + right.x1) / 2, 0.915, "C4 lifting conv: the |G| = 4 orientation maps of one channel",
         ha="center", fontsize=11.5)
save(fig, "02_rotation_lifting.png")

# %% [markdown]
# ![One channel of a C4 lifting conv and of a plain conv on the letter F (top) and on the F
# rotated by 90 degrees (bottom); each bottom map is the top map of the same frame colour,
# rotated](figures/02_rotation_lifting.png)
#
# Top row: the four orientation maps `h = 0..3` are the responses to the filter rotated by
# 0, 90, 180 and 270 degrees; the frame colour marks the filter orientation. Bottom row, the F
# rotated by 90 degrees: every map is a top map rotated by 90 degrees, moved one step along the
# group axis (`h = 1` holds what `h = 0` held). Nothing is lost, only rotated and permuted.
# The plain conv has the `h = 0` filter only: on the rotated F it gives the rotated response of
# the `h = 3` filter, a map it could never have produced on the upright F.

# %% [markdown]
# ## The network
#
# Stack the layers with `nn.Sequential` (an `nnx.Sequential` that refuses layers built for
# different groups). `GroupBatchNorm` shares its statistics over the group axis, `jax.nn.relu`
# acts pixel by pixel (so it commutes with the permutations), `GroupPool("max")` takes the max
# over the group axis (rotation-invariant per pixel) and the spatial mean removes position.
# `assert_equivariant(..., output="invariant")` raises unless every element's error is below
# `rtol=1e-5`, and returns the errors.

# %%
rngs = nnx.Rngs(0)
model = nn.Sequential(
    nn.LiftingConv(1, 8, 3, group=G, rngs=rngs),  # (B, H, W, 1)    -> (B, H, W, 8, 4)
    nn.GroupBatchNorm(8, group=G, rngs=rngs),
    jax.nn.relu,
    nn.GroupConv(8, 8, 3, group=G, rngs=rngs),    # (B, H, W, 8, 4) -> (B, H, W, 8, 4)
    nn.GroupPool("max"),                          # (B, H, W, 8, 4) -> (B, H, W, 8)
    lambda v: jnp.mean(v, axis=(1, 2)),           # -> (B, 8)
)
model.eval()  # batch norm with running statistics, as at inference
errors = assert_equivariant(lambda v: forward(model, v), x, G, output="invariant")
print("P4 network, invariance error per element:", fmt(errors))


def n_params(m):
    return sum(p.size for p in jax.tree.leaves(nnx.state(m, nnx.Param)))


rngs = nnx.Rngs(0)
plain = nn.Sequential(
    nn.Conv(1, 16, 3, rngs=rngs), jax.nn.relu, nn.Conv(16, 16, 3, rngs=rngs),
    lambda v: jnp.mean(v, axis=(1, 2)),
)
plain_errors = equivariance_errors(lambda v: forward(plain, v), x, G, output="invariant")
print("plain CNN,  invariance error per element:", fmt(plain_errors))
print(f"parameters: P4 network {n_params(model)}, plain CNN {n_params(plain)}")

# %% [markdown]
# The plain CNN's pooled features change by only 1 to 3% because the spatial mean hides most of
# the change: its feature maps themselves change by 86% under a 90-degree rotation (last section).
# Small as they look, such changes are what a classifier trained on upright digits must learn
# to ignore; the P4 network's are float rounding.
#
# The same recipe over `Dihedral(4)` (D4: the four rotations and their mirrors, 8 elements,
# element `g = f*4 + k` is the rotation `k` after `f` mirrors of the width axis) is invariant
# to mirrored digits as well.

# %%
D4 = Dihedral(4)
rngs = nnx.Rngs(0)
model_d4 = nn.Sequential(
    nn.LiftingConv(1, 8, 3, group=D4, rngs=rngs), jax.nn.relu,
    nn.GroupConv(8, 8, 3, group=D4, rngs=rngs), nn.GroupPool("max"),
    lambda v: jnp.mean(v, axis=(1, 2)),
)
errors = assert_equivariant(lambda v: forward(model_d4, v), x, D4, output="invariant")
print("D4 network, invariance error per element:", fmt(errors))

# %% [markdown]
# ## Off-grid rotations: C8
#
# Rotations by 45 degrees do not map the pixel grid to itself, so no layer on a grid can be
# exactly equivariant to them. equilib rotates band-limited filters analytically for such groups
# and the harness measures the error instead of passing it silently: the transformed input is
# interpolated, so `assert_equivariant` needs an explicit `off_grid_rtol` for those elements.
# Inputs are smooth (`smooth_random`), masked by a disk, and the error is read inside a central
# disk. The multiples of 90 degrees stay exact.

# %%
C8 = Cyclic(8)
xs = smooth_random(jax.random.key(1), (2, 33, 33, 1), sigma=1.5)
lift8 = nn.LiftingConv(1, 8, 3, group=C8, rngs=nnx.Rngs(0))
conv = nn.Conv(1, 8, 3, rngs=nnx.Rngs(0))
errors8 = assert_equivariant(lambda v: forward(lift8, v), xs, C8, output="regular", off_grid_rtol=0.1)
print("C8 lifting conv, error per element (45-degree steps):")
print("  ", fmt(errors8, ".3f"))
conv_errors = equivariance_errors(lambda v: forward(conv, v), xs, Cyclic(8), elements=[1, 2])
print(f"plain conv for comparison: 45 deg {conv_errors[1]:.3f}, 90 deg {conv_errors[2]:.3f}")

# %% [markdown]
# ## What breaks exactness: the sampling grid
#
# Exactness also needs every layer to sample its input symmetrically about the centre: an odd
# kernel, and stride 1 or an odd input size with stride 2. A stride-2 layer on an even-sized
# input samples pixels 0, 2, ..., 26 of 28, which rotate onto pixels 1, 3, ..., 27. The layers
# warn (`ExactnessWarning`) when traced on such a size, and `check_exact(model, input_shape)`
# lists the offending layers without running the model.

# %%
rngs = nnx.Rngs(0)
strided = nn.Sequential(
    nn.LiftingConv(1, 8, 3, group=G, stride=2, rngs=rngs), jax.nn.relu,
    nn.GroupConv(8, 8, 3, group=G, rngs=rngs), nn.GroupPool("max"),
    lambda v: jnp.mean(v, axis=(1, 2)),
)
print("29x29:", check_exact(strided, (1, 29, 29, 1)))
for problem in check_exact(strided, (1, 28, 28, 1)):
    print("28x28:", problem)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ExactnessWarning)  # we know: that is the point here
    err_even = max(equivariance_errors(strided, x[:, :28, :28], G, output="invariant").values())
err_odd = max(equivariance_errors(strided, x, G, output="invariant").values())
print(f"measured: 29x29 input {err_odd:.1e}, 28x28 input {err_even:.1e}")
assert err_odd < 1e-5 < err_even
