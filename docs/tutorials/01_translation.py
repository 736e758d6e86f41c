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
import os
import warnings
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from equilib import ExactnessWarning, nn
from equilib import functional as F
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
# the figures go next to this page (docs/tutorials/figures/), or where the tests point
FIGURES = Path(os.environ.get("EQUILIB_TUTORIAL_FIGURES") or Path(__file__).resolve().parent / "figures")


def save(fig, name):
    """Write a matplotlib ``Figure`` (drawn by Agg: no window opens) to ``FIGURES / name``."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, metadata={"Software": None})  # no version stamp in the file

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

# %% tags=["hide-input"]
maps = {name: [np.asarray(forward(conv, v))[0, :, :, 0] for v in (x, shifted)]  # channel 0 of image 0
        for name, conv in [("circular", conv_circ), ("zero", conv_zero)]}
peak = np.unravel_index(np.argmax(maps["circular"][0]), (32, 32))  # a landmark: the strongest response
fig = Figure(figsize=(12.0, 7.6), dpi=100)
axes = fig.subplots(2, 3, gridspec_kw={"wspace": 0.35, "hspace": 0.22, "left": 0.02, "right": 0.94,
                                      "top": 0.88, "bottom": 0.02})
vmax = np.abs(maps["circular"][0]).max()
for r, (image, label) in enumerate([(x, "input x"), (shifted, f"shifted input: {shift[0]} rows down, "
                                                              f"{shift[1]} columns right")]):
    axes[r, 0].imshow(np.asarray(image)[0, :, :, 0], cmap="gray")
    axes[r, 0].set_title(label, fontsize=11)
    im = axes[r, 1].imshow(maps["circular"][r], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    axes[r, 1].set_title("conv(x), channel 0" if r == 0 else "conv(shifted input)\n= conv(x), shifted", fontsize=11)
    p = (np.array(peak) + (np.array(shift) if r else 0)) % 32
    for ax in axes[r, :2]:
        ax.plot(p[1], p[0], "o", ms=16, mfc="none", mec="gold", mew=2.5)
fig.colorbar(im, ax=axes[:, 1], fraction=0.05, pad=0.02, label="response")
for r, name in enumerate(["circular", "zero"]):
    conv_map, conv_shifted = maps[name]
    diff = np.abs(conv_shifted - np.roll(conv_map, shift, axis=(0, 1)))
    im = axes[r, 2].imshow(diff, cmap="magma", vmin=0, vmax=vmax)
    axes[r, 2].set_title(f"|conv(shift x) - shift(conv x)|,\n{name} padding: largest {diff.max():.1e}",
                         fontsize=11)
fig.colorbar(im, ax=axes[:, 2], fraction=0.05, pad=0.02, label="absolute difference")
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("A convolution is translation-equivariant: shift the input and the feature map shifts with it",
             fontsize=13)
save(fig, "01_translation_shift.png")

# %% [markdown]
# ![An image, the image shifted by 3 rows and 5 columns, a conv's feature map of each (the
# circled landmark moves by the same shift), and the difference between the conv of the shifted
# image and the shifted feature map: zero with circular padding, nonzero near the borders with
# zero padding](figures/01_translation_shift.png)
#
# The circled landmark, the strongest response, moves with the input. With circular padding the
# feature map of the shifted input is the shifted feature map, exactly; with zero padding they
# differ in bands along the borders, where the shift wrapped pixels around.

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
    errs = translation_errors(partial(forward, net), x, shifts, output="invariant")
    table[name] = errs
    print(f"{name:14s} " + "".join(f"{errs[s]:9.1e}" for s in shifts))
assert max(table["max-pool 2x2"].values()) > 1e-2  # max-pooling is far from invariant
assert max(table["APS"].values()) < 1e-5           # APS is exactly invariant

# %% tags=["hide-input"]
more = [(0, s) for s in range(1, 17)]  # 1 to 16 pixels: 16 is four whole pixels of the last map
fig = Figure(figsize=(9.0, 4.6), dpi=100)
ax = fig.subplots(gridspec_kw={"left": 0.1, "right": 0.72, "top": 0.86, "bottom": 0.13})
for (name, net), marker in zip(nets.items(), "osD^"):
    errs = translation_errors(partial(forward, net), x, more, output="invariant")
    # below 1e-6 the value is float rounding, which differs between CPUs: drawn at one level
    ax.semilogy([s[1] for s in more], [1e-7 if errs[s] < 1e-6 else errs[s] for s in more], marker + "-", ms=5,
                label=name)
ax.axhspan(1e-9, 1e-6, color="0.9")
ax.text(8.5, 4e-9, "float rounding (below 1e-6, drawn at 1e-7)", ha="center", va="center", fontsize=9)
ax.set_ylim(1e-9, 1)
ax.set_xticks(range(0, 17, 2))
ax.set_xlim(0, 17)
ax.set_xlabel("circular shift of the input along the width (pixels)")
ax.set_ylabel("relative change of the pooled features")
ax.grid(alpha=0.3)
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=10, title="downsampling", frameon=False)
ax.set_title("Conv-pool-conv-pool-mean: how much a shift changes the features", fontsize=12)
save(fig, "01_translation_pooling.png")

# %% [markdown]
# ![Relative change of the pooled features against the shift, log scale: max-pooling about 3%
# except at multiples of 4 pixels, max-blur-pooling about 0.5% at odd shifts, no pooling and APS
# at float rounding for every shift](figures/01_translation_pooling.png)
#

# %% [markdown]
# Two pooling layers subsample by 4, so a shift by 4 pixels is a whole-pixel shift of the last
# map and keeps every variant exact. In between, max-pooling changes the features by about 3%,
# max-blur-pooling by about 0.5% (at odd shifts), APS not at all.
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

# %% tags=["hide-input"]
angles = np.arange(0, 95, 5)
fig = Figure(figsize=(9.0, 4.6), dpi=100)
ax = fig.subplots(gridspec_kw={"left": 0.1, "right": 0.72, "top": 0.86, "bottom": 0.13})
for (name, marker) in [("no pooling", "o"), ("max-pool 2x2", "s")]:
    base = forward(nets[name], xm)
    ax.plot(angles, [100 * rel(forward(nets[name], F.rotate(xm, np.deg2rad(a))), base) for a in angles],
            marker + "-", ms=5, label=name)
ax.set_xticks(range(0, 91, 15))
ax.set_ylim(0, None)
ax.set_xlabel("rotation of the (disk-masked) input (degrees)")
ax.set_ylabel("relative change of the pooled features (%)")
ax.grid(alpha=0.3)
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=10, frameon=False)
ax.set_title("The same networks under rotations: 5 degrees changes them, 90 as much", fontsize=12)
save(fig, "01_translation_rotation.png")

# %% [markdown]
# ![Relative change of the pooled features against the rotation angle, 0 to 90 degrees, for no
# pooling and max-pooling: both jump to 6 to 8% at 5 degrees and stay between 5 and 10%, 90
# degrees included](figures/01_translation_rotation.png)
