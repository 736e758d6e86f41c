# %% [markdown]
# # 4. Exact shift invariance with APS, also for group maps
#
# Tutorial 1 showed that subsampling (a 2x2 max-pool, a strided conv) breaks the shift
# invariance that convolutions and global pooling would otherwise give: after subsampling by 2,
# a one-pixel shift of the input is half a pixel of the output. *Adaptive polyphase sampling*
# (APS, Chaman & Dokmanic 2021) fixes this exactly. A stride-2 subsampling keeps one of four
# *polyphase components*, `x[:, i::2, j::2]` for `i, j` in {0, 1}; a fixed choice (0, 0) is what
# breaks invariance. APS keeps, per example, the component of largest norm instead. A circular
# shift of the input permutes the components (and shifts them), the norms move with them, so
# the same content is kept: the output is a circular shift of the unshifted output, and a global
# pooling after it is exactly shift-invariant.
#
# equilib's `APSPool` also works on regular group maps `(B, H, W, C, |G|)`, choosing the
# component jointly over channels and the group axis, so a group CNN with APS is exactly
# invariant to shifts *and* to rotations/mirrors at once.

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

from equilib import Dihedral, ExactnessWarning, nn
from equilib import functional as F
from equilib.metrics import shift_consistency
from equilib.testing import smooth_random, translation_errors

# BlurPool warns that stride 2 on an even size breaks exact *rotation* equivariance; this
# tutorial's plain CNNs are about shifts only.
warnings.filterwarnings("ignore", category=ExactnessWarning, message="BlurPool")
forward = nnx.jit(lambda model, x: model(x))
# the figures go next to this page (docs/tutorials/figures/), or where the tests point
FIGURES = Path(os.environ.get("EQUILIB_TUTORIAL_FIGURES") or Path(__file__).resolve().parent / "figures")


def save(fig, name):
    """Write a matplotlib ``Figure`` (drawn by Agg: no window opens) to ``FIGURES / name``."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, metadata={"Software": None})  # no version stamp in the file

# %% [markdown]
# ## The mechanism
#
# A 4x4 example: `aps_pool(..., return_phase=True)` returns the kept component and its phase
# `(row, col)`. Shifting the input by one column moves the largest component to the other
# column phase, and APS follows it: its output is the previous one shifted by one column. A
# fixed phase keeps zeros from the input and the large values from the shifted input.

# %%
x4 = jnp.asarray([[0, 1, 0, 2], [0, 0, 0, 0], [0, 5, 0, 3], [0, 0, 0, 0]], jnp.float32)[None, :, :, None]
y, phase = F.aps_pool(x4, return_phase=True)
print("input:\n", np.asarray(x4[0, :, :, 0]))
print("kept phase", np.asarray(phase[0]), "->\n", np.asarray(y[0, :, :, 0]))
y_s, phase_s = F.aps_pool(jnp.roll(x4, 1, axis=2), return_phase=True)
print("input shifted by one column: kept phase", np.asarray(phase_s[0]), "->\n", np.asarray(y_s[0, :, :, 0]))
print("fixed-phase subsampling x[::2, ::2] keeps\n", np.asarray(x4[0, ::2, ::2, 0]),
      "\nof the input and\n", np.asarray(jnp.roll(x4, 1, axis=2)[0, ::2, ::2, 0]), "\nof the shifted input")

# %% [markdown]
# ## Exact shift invariance of a CNN
#
# Two circular convolutions, each followed by a stride-2 downsampling, then a global mean and a
# linear layer: the logits of an (untrained) classifier. The harness tries every one of the
# 16 x 16 circular shifts of 16x16 inputs.

# %%
class Net(nnx.Module):
    def __init__(self, pool, *, rngs):
        self.conv1 = nn.Conv(1, 8, 3, padding="CIRCULAR", rngs=rngs)
        self.conv2 = nn.Conv(8, 16, 3, padding="CIRCULAR", rngs=rngs)
        self.pool1, self.pool2 = pool(), pool()
        self.head = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = self.pool1(jax.nn.relu(self.conv1(x)))
        x = self.pool2(jax.nn.relu(self.conv2(x)))
        return self.head(jnp.mean(x, axis=(1, 2)))


pools = {
    "max-pool 2x2": lambda: nn.MaxPool(2),
    "blur-pool": lambda: nn.BlurPool(3, padding="circular"),
    "APS": lambda: nn.APSPool(2),
}
nets = {name: Net(pool, rngs=nnx.Rngs(0)) for name, pool in pools.items()}
x = smooth_random(jax.random.key(0), (4, 16, 16, 1), sigma=1.0)
for name, net in nets.items():
    errors = translation_errors(partial(forward, net), x, output="invariant")
    print(f"{name:13s} largest change of the logits over all {len(errors)} shifts: {max(errors.values()):.1e}")
    if name == "APS":
        assert max(errors.values()) < 1e-5

# %% [markdown]
# The picture: the ten logits of one image as it is shifted column by column, all the way round.

# %% tags=["hide-input"]
dxs = np.arange(17)  # 16 is a full turn: the unshifted image again
batch = jnp.concatenate([jnp.roll(x[:1], int(dx), axis=2) for dx in dxs])  # (17, 16, 16, 1)
fig = Figure(figsize=(14.0, 4.6), dpi=100)
axes = fig.subplots(1, 4, gridspec_kw={"wspace": 0.3, "left": 0.05, "right": 0.875, "top": 0.84, "bottom": 0.14})
for ax, (name, net), marker in zip(axes, nets.items(), "osD"):
    logits = np.asarray(forward(net, batch))  # (17, 10)
    ax.plot(dxs, logits, lw=1.5)
    change = np.linalg.norm(logits - logits[0], axis=1) / np.linalg.norm(logits[0])
    axes[3].semilogy(dxs[1:16], np.maximum(change[1:16], 1e-9), marker + "-", ms=4, label=name)
    ax.set_title(f"{name}: the 10 logits", fontsize=11)
    ax.set_ylabel("logit (one line per class)")
    ax.set_xlabel("circular shift of the input (columns)")
    ax.set_xticks(range(0, 17, 4))
    ax.grid(alpha=0.3)
axes[3].set_title("relative change of the logits", fontsize=11)
axes[3].set_xlabel("circular shift of the input (columns)")
axes[3].set_xticks(range(0, 17, 4))
axes[3].set_xlim(0, 16)
axes[3].axhspan(1e-9, 1e-6, color="0.9")
axes[3].text(8, 3e-9, "float rounding", ha="center", va="center", fontsize=9)
axes[3].set_ylim(1e-9, 1)
axes[3].grid(alpha=0.3)
axes[3].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=10, frameon=False)
fig.suptitle("An untrained CNN with two stride-2 downsamplings, one 16x16 input shifted column by column",
             fontsize=13, y=0.99)
save(fig, "04_aps_logits_under_shifts.png")

# %% [markdown]
# ![The ten logits of a CNN against the circular shift of its input, for max-pooling, blur-pooling
# and APS, and their relative change on a log scale: max-pooling's logits wander by up to 20%,
# blur-pooling's by up to 2%, APS's stay flat, at float
# rounding](figures/04_aps_logits_under_shifts.png)
#
# With max-pooling the logits wander as the input moves and return only at multiples of 4
# pixels (two subsamplings by 2); blur-pooling changes them by about 2%, at odd shifts; APS
# draws flat lines: the logits are the same for every shift, up to float rounding (an exact 0
# sits on the bottom edge of the log scale).

# %% [markdown]
# The same in the terms of a classifier: `equilib.metrics.shift_consistency` gives the
# percentage of (image, shift) cases whose predicted class is the one of the unshifted image
# (the APS protocol; here 64 random images and 16 random shifts).

# %%
images = smooth_random(jax.random.key(1), (64, 32, 32, 1), sigma=1.0)
shifts = np.random.default_rng(0).integers(-8, 8, size=(16, 2))
for name, net in nets.items():
    consistency = shift_consistency(partial(forward, net), images, shifts)
    print(f"{name:13s} shift consistency {consistency:5.1f} %")

# %% [markdown]
# ## Group maps: invariant to shifts and to the dihedral group at once
#
# A D4 group CNN with circular padding and `APSPool` on its regular maps `(B, H, W, C, 8)`.
# All the conditions for exact rotation/mirror equivariance hold (odd kernels, stride-1 convs;
# on an even-sized map APS maps each polyphase component to the rotated/mirrored one, and the
# norm, taken jointly over the group axis, is unchanged), so the pooled features do not change
# under any of the 16 x 16 circular shifts combined with any of the 8 elements of D4. The shifted
# copies are evaluated in one batch per element.

# %%
D4 = Dihedral(4)
rngs = nnx.Rngs(0)
gcnn = nn.Sequential(
    nn.LiftingConv(1, 4, 3, group=D4, padding="CIRCULAR", rngs=rngs), jax.nn.relu,
    nn.APSPool(2),                                                    # (B, 16, 16, 4, 8) -> (B, 8, 8, 4, 8)
    nn.GroupConv(4, 8, 3, group=D4, padding="CIRCULAR", rngs=rngs), jax.nn.relu,
    nn.APSPool(2),                                                    # -> (B, 4, 4, 8, 8)
    nn.GlobalPool("mean", group_mode="max"),                          # -> (B, 8)
)
img = np.asarray(smooth_random(jax.random.key(2), (1, 16, 16, 1), sigma=1.0))
base = np.asarray(forward(gcnn, jnp.asarray(img)))
all_shifts = [(dy, dx) for dy in range(16) for dx in range(16)]
worst = {}
for g in range(D4.order):
    moved = np.asarray(D4.transform_image(img, g))
    batch = np.concatenate([np.roll(moved, s, axis=(1, 2)) for s in all_shifts])  # (256, 16, 16, 1)
    out = np.asarray(forward(gcnn, jnp.asarray(batch)))
    worst[g] = float(np.max(np.linalg.norm(out - base, axis=1) / np.linalg.norm(base)))
print("largest change over the 256 shifts, per D4 element:")
print("  " + ", ".join(f"{g}: {e:.1e}" for g, e in worst.items()))
assert max(worst.values()) < 1e-5

# %% [markdown]
# With `nn.MaxPool(2)` in place of `APSPool` the same network stays exactly equivariant to D4
# (a 2x2 window with stride 2 samples an even-sized map symmetrically) but not to shifts:

# %%
rngs = nnx.Rngs(0)
gcnn_max = nn.Sequential(
    nn.LiftingConv(1, 4, 3, group=D4, padding="CIRCULAR", rngs=rngs), jax.nn.relu, nn.MaxPool(2),
    nn.GroupConv(4, 8, 3, group=D4, padding="CIRCULAR", rngs=rngs), jax.nn.relu, nn.MaxPool(2),
    nn.GlobalPool("mean", group_mode="max"),
)
base = np.asarray(forward(gcnn_max, jnp.asarray(img)))
rot = max(float(np.linalg.norm(np.asarray(forward(gcnn_max, jnp.asarray(D4.transform_image(img, g)))) - base)
                / np.linalg.norm(base)) for g in range(D4.order))
errors = translation_errors(lambda v: forward(gcnn_max, v), img, output="invariant")
print(f"max-pool D4 CNN: largest change under D4 {rot:.1e}, under shifts {max(errors.values()):.1e}")
