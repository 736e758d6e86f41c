# %% [markdown]
# # 6. An equivariant U-Net: dense prediction that rotates with its input
#
# A segmentation network maps an image to a map of per-pixel predictions. If the image turns,
# the prediction map should turn with it: `f(g x) = g f(x)`, equivariance with an output that is
# itself an image. This tutorial builds U-Nets (`equilib.models.UNet`) over the trivial group
# (plain), C4 and D4, checks which input sizes keep them exact, measures their equivariance, trains
# a small one on a toy task, and exports it to plain Flax layers (`equilib.export`). The
# experiment `python -m experiments.segmentation` runs the same comparison on MNIST canvases.

# %%
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from flax import nnx
from matplotlib.figure import Figure
from matplotlib.patches import Patch

import equilib
from equilib import Cyclic, Dihedral, FieldType, Trivial, check_exact, models, nn, reps
from equilib.testing import assert_equivariant, equivariance_errors, smooth_random
from equilib.training import count_params

FIGURES = Path(os.environ.get("EQUILIB_TUTORIAL_FIGURES") or Path(__file__).resolve().parent / "figures")


def save(fig, name):
    """Write a matplotlib ``Figure`` (drawn by Agg: no window opens) to ``FIGURES / name``."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, metadata={"Software": None})  # no version stamp in the file

# %% [markdown]
# ## Three U-Nets and their sizes
#
# `UNet(group, width=F, depth=d)` has `F * 2**l` fields at level `l`: stride-2 convolutions go
# down, bilinear upsampling (`equilib.functional.upsample` with aligned corners) goes up, skip
# connections concatenate, and a 1x1 convolution gives `num_classes` logits per pixel. The group
# models use regular fields (`|G|` channels each) and pool the group axis at the end: their
# outputs are invariant scalars per pixel, so the whole map rotates with the input.

# %%
for group in (Trivial(), Cyclic(4), Dihedral(4)):
    model = models.UNet(group, width=4, depth=2, num_classes=3, rngs=nnx.Rngs(0))
    print(f"{group.name:>3} U-Net: {count_params(model):6,} parameters")

# %% [markdown]
# A stride-2 layer is exactly rot90-equivariant only if it samples its input symmetrically
# about the centre, i.e. on odd sizes (e2cnn#36, escnn#72). A depth-2 U-Net therefore wants
# `H = 4k + 1` (33 -> 17 -> 9); `check_exact` traces the model abstractly and names every layer
# that breaks it:

# %%
c4 = models.UNet(Cyclic(4), width=4, depth=2, num_classes=3, rngs=nnx.Rngs(0))
c4.eval()
print("33x33:", check_exact(c4, (1, 33, 33, 1)))
problems = check_exact(c4, (1, 32, 32, 1))
print(f"32x32: {len(problems)} problems, the first: {problems[0][:70]}...")

# %% [markdown]
# ## Equivariance, measured
#
# `assert_equivariant` applies every element of the group to the input and to the output map
# (`output="plain"`: the logits map is transformed in space) and compares. The C4 U-Net is exact
# at all quarter turns; the D4 one also under mirrors; the plain one is not equivariant at all.

# %%
@nnx.jit
def apply(model, x):  # one compiled call per model instead of op-by-op dispatch
    return model(x)


x = smooth_random(jax.random.key(0), (1, 33, 33, 1))
errors = assert_equivariant(lambda a: apply(c4, a), x, Cyclic(4), output="plain")
print("C4 U-Net, per C4 element:", ", ".join(f"{g}: {e:.1e}" for g, e in errors.items()))
d4 = models.UNet(Dihedral(4), width=2, depth=2, num_classes=3, rngs=nnx.Rngs(0))
d4.eval()
errors = assert_equivariant(lambda a: apply(d4, a), x, Dihedral(4), output="plain")
print("D4 U-Net, per D4 element:", ", ".join(f"{g}: {e:.1e}" for g, e in errors.items()))
plain = models.UNet(Trivial(), width=8, depth=2, num_classes=3, rngs=nnx.Rngs(0))
plain.eval()
errors = equivariance_errors(lambda a: apply(plain, a), x, Cyclic(4), output="plain")
print("plain U-Net, per C4 element:", ", ".join(f"{g}: {e:.2f}" for g, e in errors.items()))

# %% [markdown]
# ## A toy segmentation task
#
# Images with an "L" and a square at random places; the label of a pixel is background, L or
# square.
# We train the C4 U-Net on upright images only for a few dozen steps and look at its
# prediction on a turned image.

# %%
def toy(n, rng, size=17):
    images = np.zeros((n, size, size, 1), np.float32)
    labels = np.zeros((n, size, size), np.int32)
    for i in range(n):
        r, c = rng.integers(1, 7, 2)
        labels[i, r:r + 6, c:c + 2] = labels[i, r + 4:r + 6, c:c + 5] = 1    # an L
        r, c = rng.integers(11, 13), rng.integers(1, 12)
        labels[i, r:r + 4, c:c + 4] = 2                                       # a square
    images[..., 0] = (labels > 0) + 0.2 * rng.standard_normal(labels.shape)
    return jnp.asarray(images), jnp.asarray(labels)


train_x, train_y = toy(32, np.random.default_rng(0))
model = models.UNet(Cyclic(4), width=4, depth=2, num_classes=3, rngs=nnx.Rngs(1))
optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


model.train()
losses = [float(train_step(model, optimizer, train_x, train_y)) for _ in range(60)]
model.eval()
test_x, test_y = toy(16, np.random.default_rng(1))
turned_x, turned_y = jnp.rot90(test_x, 1, axes=(1, 2)), jnp.rot90(test_y, 1, axes=(1, 2))
acc = float(jnp.mean(jnp.argmax(apply(model, test_x), -1) == test_y))
acc_turned = float(jnp.mean(jnp.argmax(apply(model, turned_x), -1) == turned_y))
print(f"loss: step 1 {losses[0]:.3f}, step 60 {losses[-1]:.3f}")
print(f"pixel accuracy: upright {acc:.4f}, turned by 90 degrees {acc_turned:.4f}")

# %% tags=["hide-input"]
pred, pred_turned = np.argmax(apply(model, test_x), -1)[0], np.argmax(apply(model, turned_x), -1)[0]
fig = Figure(figsize=(10.0, 3.3), dpi=100)
axes = fig.subplots(1, 4, gridspec_kw={"wspace": 0.08, "left": 0.01, "right": 0.99, "top": 0.8, "bottom": 0.02})
panels = [(test_x[0, :, :, 0], "upright input", "gray"), (pred, "its prediction", "viridis"),
          (turned_x[0, :, :, 0], "input turned 90 deg", "gray"),
          (pred_turned, "prediction of the turned input", "viridis")]
for ax, (img, title, cmap) in zip(axes, panels):
    ax.imshow(np.asarray(img), cmap=cmap, vmin=0 if cmap == "viridis" else None, vmax=2 if cmap == "viridis" else None)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
colors = [matplotlib.colormaps["viridis"](v / 2) for v in range(3)]
fig.legend([Patch(color=c) for c in colors], ["background", "L", "square"], loc="upper center", ncols=3,
           fontsize=9, frameon=False)
save(fig, "06_unet_prediction.png")

# %% [markdown]
# ![An upright input and the C4 U-Net's prediction (background, L, square), and the same input
# turned by 90 degrees: the prediction turns with it.](figures/06_unet_prediction.png)
#
# Trained on upright images only, the C4 U-Net segments the turned image exactly as the upright
# one: the prediction map turns with the input, pixel for pixel.
#
# ## Typed layers refuse what would break equivariance
#
# On steerable fields whose representation is not a permutation (a vector field, C4 `irrep(1)`),
# channel-wise max pooling is not equivariant; `FieldMaxPool` and `FieldSequential` refuse it and
# point to `NormMaxPool`, which keeps the vector of largest norm:

# %%
vectors = FieldType(Cyclic(4), [reps.irrep(Cyclic(4), 1)] * 2)
try:
    nn.FieldMaxPool(vectors, 2)
except ValueError as e:
    print("FieldMaxPool refuses:", str(e)[:90], "...")
v = smooth_random(jax.random.key(2), (1, 17, 17, vectors.size))
pool = nn.NormMaxPool(vectors, 3, stride=1, padding="SAME")
from equilib.testing import field_equivariance_errors  # noqa: E402

print("NormMaxPool, per C4 element:",
      ", ".join(f"{g}: {e:.1e}" for g, e in field_equivariance_errors(pool, v, vectors, vectors).items()))
print("MaxPool,     per C4 element:",
      ", ".join(f"{g}: {e:.2f}" for g, e in field_equivariance_errors(
          nn.MaxPool(3, 1, "SAME"), v, vectors, vectors).items()))

# %% [markdown]
# ## Export to plain Flax for inference
#
# `equilib.export(model)` returns a copy whose parameters all live in plain Flax layers
# (`nnx.Conv` with the expanded kernels, `nnx.BatchNorm` with the running statistics repeated over
# the group axis), so inference runs no kernel expansion; small adapters reshape between
# `(B, H, W, C, |G|)` and `(B, H, W, C*|G|)`, so the model's own code runs unchanged.

# %%
exported = equilib.export(model)
kinds = sorted({type(m).__name__ for _, m in nnx.iter_graph(exported)
                if isinstance(m, (nnx.Conv, nnx.BatchNorm))})
reference = apply(model, test_x)
diff = float(jnp.max(jnp.abs(apply(exported, test_x) - reference)) / jnp.max(jnp.abs(reference)))
print("plain layers in the exported model:", kinds)
print(f"exported vs model, largest relative difference: {diff:.1e}")
