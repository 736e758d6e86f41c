# %% [markdown]
# # 7. Volumes: octahedral and SO(3) equivariance in 3D
#
# Medical volumes, cryo-EM maps and molecular densities are 3D images, and the question of the
# 2D tutorials holds there too: a plain 3D CNN learns one orientation, an equivariant one all of
# them. equilib's layers take a group that knows its dimension: over `Octahedral()` (the 24
# rotations of the cube) or `FullOctahedral()` (48, with the inversion) the same `LiftingConv`,
# `GroupConv` and `GroupBatchNorm` work on volumes `(B, D, H, W, C)` and are exact, because every
# rotation of the cube maps the voxel grid to itself. For all rotations, `SO3()` and `O3()`,
# steerable convolutions use fields of Wigner-D type (`equilib.fields3d`), and band-limited
# functions on SO(3) carry a Fourier nonlinearity. This tutorial checks
# both with `equilib.testing`, next to a plain 3D CNN.

# %%
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from equilib import FullOctahedral, Octahedral, check_exact, nn
from equilib.fields3d import FieldType3D, bandlimited_regular3d, irrep3d
from equilib.groups3d import O3, SO3
from equilib.testing import assert_equivariant, equivariance_errors, field_equivariance_errors, smooth_random

# the figures go next to this page (docs/tutorials/figures/), or where the tests point
FIGURES = Path(os.environ.get("EQUILIB_TUTORIAL_FIGURES") or Path(__file__).resolve().parent / "figures")


def save(fig, name):
    """Write a matplotlib ``Figure`` (drawn by Agg: no window opens) to ``FIGURES / name``."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, metadata={"Software": None})  # no version stamp in the file

# %% [markdown]
# ## The groups of the cube
#
# An element is an index; its matrix acts on `(x, y, z)`, with `x` along the width, `y` up the
# rows and `z` along the depth (so each depth slice carries the 2D convention). On a volume every
# element is an axis permutation with flips: exact. A quarter turn about `z` is the 2D quarter turn
# of every slice.

# %%
octa, Oh = Octahedral(), FullOctahedral()
quarter_z = octa.element_from_matrix([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
print(octa, octa.order, "elements;", Oh, Oh.order, "elements; element", quarter_z, "of O is\n", octa.matrix(quarter_z))
x = np.arange(27.0).reshape(1, 3, 3, 3, 1)
print("a quarter turn about z is rot90 on (H, W):",
      bool(np.array_equal(octa.transform_image(x, quarter_z), np.rot90(x, axes=(2, 3)))))

# %% [markdown]
# ## An octahedral G-CNN is invariant under all 24 rotations, a plain 3D CNN is not
#
# The G-CNN lifts the volume to a regular map `(B, D, H, W, C, 24)`, convolves over the group,
# pools the group axis (max) and space (mean). The plain network has the same depth.

# %%
rngs = nnx.Rngs(0)
gcnn = nn.Sequential(nn.LiftingConv(1, 4, 3, group=octa, rngs=rngs), nn.GroupBatchNorm(4, group=octa, rngs=rngs),
                     jax.nn.relu, nn.GroupConv(4, 4, 3, group=octa, stride=2, rngs=rngs), jax.nn.relu,
                     nn.GlobalPool("mean", group_mode="max", spatial_dims=3))
plain = nn.Sequential(nn.Conv(1, 8, (3, 3, 3), rngs=rngs), jax.nn.relu,
                      nn.Conv(8, 8, (3, 3, 3), stride=2, rngs=rngs), jax.nn.relu,
                      nn.GlobalPool("mean", spatial_dims=3))
gcnn.eval()
volume = smooth_random(jax.random.key(0), (2, 9, 9, 9, 1), sigma=1.5, axes=(1, 2, 3))
print("check_exact:", check_exact(gcnn, volume.shape))
errors = assert_equivariant(gcnn, volume, octa, output="invariant", rtol=1e-5)
print(f"G-CNN: {len(errors)} rotations, largest relative change of the output {max(errors.values()):.1e}")
plain_errors = equivariance_errors(plain, volume, octa, output="invariant")
print(f"plain 3D CNN: largest relative change {max(plain_errors.values()):.2f}")

# %% [markdown]
# ## Steerable fields of SO(3)
#
# A field of degree `l` has `2l + 1` channels and turns with the Wigner matrix `D^l(R)`: degree 0
# is a scalar, degree 1 a vector (in the harmonics' `(y, z, x)` order), degree 2 a traceless
# symmetric tensor. `nn.SteerableConv` with `FieldType3D`s solves for the kernels that map one
# type to the other: a handful of coefficients instead of every tap.

# %%
G = SO3()
scalar = FieldType3D(G, [irrep3d(G, 0)])
hidden = FieldType3D(G, [irrep3d(G, 0)] * 2 + [irrep3d(G, 1)] * 2 + [irrep3d(G, 2)])
conv = nn.SteerableConv(scalar, hidden, 5, rngs=nnx.Rngs(1))
print(hidden, "|", conv.kernel.size, "coefficients for a 5x5x5 kernel of", conv.expanded_kernel().size, "taps")

# %% [markdown]
# At the 24 grid rotations the steerable layer is exact; at random rotations the volume has to be
# resampled (trilinear), so the error is measured, not zero. A plain 3D convolution with as many
# output channels, read as the same fields, is far off.

# %%
smooth = smooth_random(jax.random.key(2), (1, 11, 11, 11, 1), sigma=2.0, axes=(1, 2, 3))
grid = [octa.matrix(g) for g in range(24)]
exact = field_equivariance_errors(conv, smooth, scalar, hidden, elements=grid)
rotations = G.random_elements(4, seed=0)
steer = field_equivariance_errors(conv, smooth, scalar, hidden, elements=rotations)
other = equivariance_errors(nn.Conv(1, hidden.size, (5, 5, 5), rngs=nnx.Rngs(1)), smooth, G, elements=rotations)
print(f"steerable, grid rotations: max {max(exact.values()):.1e}")
print("steerable, random rotations:", ", ".join(f"{e:.3f}" for e in steer.values()))
print("plain conv, random rotations:", ", ".join(f"{e:.2f}" for e in other.values()))

# %% tags=["hide-input"]
fig = Figure(figsize=(9.0, 3.2), dpi=100)
left, right = fig.subplots(1, 2, gridspec_kw={"wspace": 0.3, "left": 0.08, "right": 0.98, "bottom": 0.17})
tiny = 1e-8  # errors at float rounding drawn at this floor of the log scale
left.semilogy(range(24), [max(errors[g], tiny) for g in range(24)], "o", label="octahedral G-CNN")
left.semilogy(range(24), [max(plain_errors[g], tiny) for g in range(24)], "s", label="plain 3D CNN")
left.set_xlabel("element of Octahedral()")
left.set_ylabel("relative change of the output")
left.set_title("invariance, the 24 grid rotations", fontsize=10)
left.legend(fontsize=8)
right.bar(np.arange(4) - 0.2, list(steer.values()), width=0.4, label="SO(3) steerable conv")
right.bar(np.arange(4) + 0.2, list(other.values()), width=0.4, label="plain 3D conv")
right.set_xticks(range(4), [f"R{i}" for i in range(4)])
right.set_xlabel("random rotation")
right.set_ylabel("relative equivariance error")
right.set_title("equivariance, random rotations (trilinear)", fontsize=10)
right.legend(fontsize=8)
save(fig, "07_volumes_errors.png")

# %% [markdown]
# ![Left: the octahedral G-CNN's output does not change under any of the 24 rotations of the cube
# (float rounding), the plain 3D CNN's does. Right: at random rotations the SO(3) steerable
# convolution's error is the resampling's, a plain convolution's is an order of magnitude
# larger.](figures/07_volumes_errors.png)

# %% [markdown]
# ## Band-limited functions on SO(3) and a Fourier nonlinearity
#
# The 2D G-CNNs' regular fields are functions on the group, and a ReLU acts on them value by
# value. SO(3) is infinite, so a regular field is kept band-limited: a function on SO(3) with
# Fourier coefficients up to degree `L`, stored as `2l + 1` fields of each degree `l`
# (`bandlimited_regular3d`, escnn's `bl_regular_representation`). `nn.FourierPointwise` samples
# the function at rotations that form orbits of the cube's rotations, applies the nonlinearity,
# and projects back: exact under the 24 grid rotations, approximate in between.

# %%
G2 = SO3(max_frequency=2)
regular = FieldType3D(G2, bandlimited_regular3d(G2) * 2)  # 2 functions, 35 channels each
fourier = nn.FourierPointwise(regular, "relu")
v = smooth_random(jax.random.key(3), (1, 7, 7, 7, regular.size), sigma=2.0, axes=(1, 2, 3))
on_grid = field_equivariance_errors(fourier, v, regular, regular, elements=grid)
off_grid = field_equivariance_errors(fourier, v, regular, regular, elements=rotations)
coefficientwise = field_equivariance_errors(jax.nn.relu, v, regular, regular, elements=rotations)
print(regular.size, "channels,", fourier.samples, "samples per function")
print(f"Fourier ReLU, grid rotations: max {max(on_grid.values()):.1e}")
print("Fourier ReLU, random rotations:", ", ".join(f"{e:.3f}" for e in off_grid.values()))
print("ReLU on the coefficients, random rotations:", ", ".join(f"{e:.2f}" for e in coefficientwise.values()))
assert max(on_grid.values()) < 1e-5 and max(off_grid.values()) < min(coefficientwise.values()) / 5

# %% [markdown]
# ## O(3) and chirality
#
# Over `O3()` a field also has a parity under the inversion `p -> -p`: a vector flips, a
# pseudo-vector (an axial vector, like an angular momentum) does not. A kernel `phi(r) p` maps a
# scalar to a vector; no kernel maps a scalar to a pseudo-vector, so an O(3)-equivariant
# network cannot tell a shape from its mirror image, while an SO(3) one can.

# %%
G3 = O3()
s3 = FieldType3D(G3, [irrep3d(G3, 0)])
vector, axial = FieldType3D(G3, [irrep3d(G3, 1)]), FieldType3D(G3, [irrep3d(G3, 1, pseudo=True)])
print("scalar -> vector:", nn.SteerableConv(s3, vector, 3, rngs=nnx.Rngs(0)).kernel.size, "coefficient(s)")
try:
    nn.SteerableConv(s3, axial, 3, rngs=nnx.Rngs(0))
except ValueError as e:
    print("scalar -> pseudo-vector:", str(e).split(" (")[0])
print("mirror-symmetric G-CNN over Oh is invariant to the inversion too:",
      max(assert_equivariant(nn.Sequential(nn.LiftingConv(1, 2, 3, group=Oh, rngs=rngs), jax.nn.relu,
                                            nn.GlobalPool("mean", group_mode="max", spatial_dims=3)),
                             volume, Oh, output="invariant", rtol=1e-5, elements=[24]).values()) < 1e-5)
print("jnp works too:", jnp.asarray(octa.transform_image(jnp.asarray(x), quarter_z)).shape)
