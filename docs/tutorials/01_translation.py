# %% [markdown]
# # 1. Translation equivariance and invariance
#
# A convolution shares its weights over positions, so shifting its input shifts its output:
# it is **equivariant** to translations, `conv(shift(x)) == shift(conv(x))`. Averaging a
# feature map over space then gives a vector that does not move at all: the network is
# **invariant**. This tutorial measures both with equilib's harness (`equilib.testing`), then
# shows what the usual downsampling layers (strided convs, max-pooling) do to them, and what
# pooling does *not* buy: invariance to rotations, the subject of the next tutorial.
#
# Everything is untrained: equivariance is a property of the architecture, not of the weights.

# %%
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from equilib import ExactnessWarning
from equilib import functional as F
from equilib import nn
from equilib.testing import disk_mask, smooth_random, translation_errors


def rel(a, b):
    """Relative error ||a - b|| / ||b||, the measure used throughout equilib.testing."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# MaxBlurPool below warns that its samples sit asymmetrically about the centre of a 32x32 map:
# that breaks exact *rotation* equivariance (tutorial 2), not translation, the subject here.
warnings.filterwarnings("ignore", category=ExactnessWarning)
forward = nnx.jit(lambda model, x: model(x))  # one compiled program per model and input shape
x = smooth_random(jax.random.key(0), (4, 32, 32, 1))  # 4 smooth random "images", channels-last
print("input:", x.shape)

# %% [markdown]
# ## A convolution shifts with its input
#
# `jnp.roll` shifts an image circularly. With circular padding the convolution sees exactly the
# same neighbourhoods after the shift, so the equivariance is exact up to float rounding
# (~1e-7 in float32). With the usual zero padding (`"SAME"`) the pixels that wrap around meet
# different zeros at the border: the maps agree inside, not near the border.

# %%
conv_circ = nn.Conv(1, 8, 5, padding="CIRCULAR", rngs=nnx.Rngs(0))
conv_zero = nn.Conv(1, 8, 5, padding="SAME", rngs=nnx.Rngs(0))  # same weights, zero padding

shift = (3, 5)  # rows down, columns right
shifted = jnp.roll(x, shift, axis=(1, 2))
for name, conv in [("circular padding", conv_circ), ("zero padding", conv_zero)]:
    err = rel(forward(conv, shifted), jnp.roll(forward(conv, x), shift, axis=(1, 2)))
    print(f"{name:17s} conv(shift(x)) vs shift(conv(x)): relative error {err:.1e}")

inner = (slice(None), slice(8, -8), slice(8, -8))  # away from the border
err_inner = rel(forward(conv_zero, shifted)[inner], jnp.roll(forward(conv_zero, x), shift, axis=(1, 2))[inner])
print(f"zero padding, 16x16 centre only:                   relative error {err_inner:.1e}")

# every one of the 32 x 32 circular shifts, with the harness:
errors = translation_errors(lambda v: forward(conv_circ, v), x)
print(f"circular conv, all {len(errors)} shifts: largest error {max(errors.values()):.1e}")
assert max(errors.values()) < 1e-5

# %% [markdown]
# ## Global pooling gives invariance
#
# A stack of stride-1 circular convolutions stays equivariant, so averaging its last map over
# space gives features that no shift changes. `GlobalPool` (`equilib.nn`) does the averaging;
# `output="invariant"` tells the harness to compare `f(shift(x))` with `f(x)` itself.

# %%
rngs = nnx.Rngs(1)
invariant_net = nn.Sequential(
    nn.Conv(1, 8, 5, padding="CIRCULAR", rngs=rngs), jax.nn.relu,
    nn.Conv(8, 8, 3, padding="CIRCULAR", rngs=rngs), jax.nn.relu,
    nn.GlobalPool("mean"),  # (B, H, W, C) -> (B, C)
)
errors = translation_errors(lambda v: forward(invariant_net, v), x, output="invariant")
print(f"conv-relu-conv-relu-mean, all {len(errors)} shifts: largest change {max(errors.values()):.1e}")
assert max(errors.values()) < 1e-5

# %% [markdown]
# ## Downsampling breaks it
#
# Real networks subsample: a stride-2 layer keeps every other pixel, so a one-pixel shift of
# the input is half a pixel at the output, which no shifted copy of the output can represent.
# The same small network with a 2x2 max-pool after each conv shows it. `MaxBlurPool` (Zhang 2019)
# low-pass filters before subsampling and reduces the damage; `APSPool` (adaptive polyphase
# sampling, Chaman & Dokmanic 2021) picks the sampling phase from the input and removes it
# exactly (tutorial 4 is about it). The table gives the relative change of the pooled features
# for shifts of 0 to 4 pixels along the width.

# %%
def pooled_net(pool, seed=2):
    rngs = nnx.Rngs(seed)
    return nn.Sequential(
        nn.Conv(1, 8, 5, padding="CIRCULAR", rngs=rngs), jax.nn.relu, pool(),
        nn.Conv(8, 8, 3, padding="CIRCULAR", rngs=rngs), jax.nn.relu, pool(),
        nn.GlobalPool("mean"),
    )


nets = {
    "no pooling": pooled_net(lambda: (lambda v: v)),
    "max-pool 2x2": pooled_net(lambda: nn.MaxPool(2)),
    "max-blur-pool": pooled_net(lambda: nn.MaxBlurPool(2, filter_size=3, padding="circular")),
    "APS": pooled_net(lambda: nn.APSPool(2)),
}
shifts = [(0, s) for s in range(5)]
print("shift (px)     " + "".join(f"{s[1]:>9d}" for s in shifts))
table = {}
for name, net in nets.items():
    errs = translation_errors(lambda v: forward(net, v), x, shifts, output="invariant")
    table[name] = errs
    print(f"{name:14s} " + "".join(f"{errs[s]:9.1e}" for s in shifts))
assert max(table["max-pool 2x2"].values()) > 1e-2  # max-pooling is far from invariant
assert max(table["APS"].values()) < 1e-5           # APS is exactly invariant

# %% [markdown]
# Two pooling layers subsample by 4, so a shift by 4 pixels is a whole-pixel shift of the last
# map and keeps every variant exact. In between, max-pooling changes the features by about 3%,
# max-blur-pooling by about 0.5%, APS not at all.
#
# ## What pooling does not buy: rotations
#
# A common belief is that pooling also makes a CNN robust to small rotations. Measure it: rotate
# the (disk-masked, so that nothing leaves the canvas) input with `equilib.functional.rotate`
# and compare the pooled features. Pooling does not reduce the change, and even the rotation by
# exactly 90 degrees, which moves no pixel off the grid, changes the features as much as 5
# degrees do: a plain CNN must *learn* every orientation of a pattern. Group convolutions
# (tutorial 2) build the rotations into the architecture instead, and their invariant features
# change by ~1e-7 under the 90-degree rotation.

# %%
xm = x * disk_mask(32, 32)[None, :, :, None]
print("rotation (deg) " + "".join(f"{a:>9d}" for a in (5, 15, 45, 90)))
for name in ("no pooling", "max-pool 2x2"):
    net = nets[name]
    base = forward(net, xm)
    changes = [rel(forward(net, F.rotate(xm, np.deg2rad(a))), base) for a in (5, 15, 45, 90)]
    print(f"{name:14s} " + "".join(f"{c:9.3f}" for c in changes))
