# %% [markdown]
# # 5. equilib layers in your own Flax model (NNX or Linen), and `export()` for inference
#
# equilib's layers are ordinary Flax NNX modules (`equilib.nn`) that own `nnx.Param`s, plus Linen
# versions of every convolution and batch norm (`equilib.linen`), so they mix with Flax's own layers, `optax`
# and `nnx.jit` like any other module. This tutorial writes a small NNX classifier around them,
# trains it for a few steps on a synthetic task, writes the same network in Linen, and exports
# the group convolutions to plain `nnx.Conv` layers for inference.

# %%
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen, nnx
from matplotlib.figure import Figure

import equilib.linen as eqlinen
from equilib import SO2, Cyclic, FieldType, nn
from equilib.reps import irrep, trivial_rep
from equilib.testing import assert_equivariant

G = Cyclic(4)
# the figures go next to this page (docs/tutorials/figures/), or where the tests point
FIGURES = Path(os.environ.get("EQUILIB_TUTORIAL_FIGURES") or Path(__file__).resolve().parent / "figures")


def save(fig, name):
    """Write a matplotlib ``Figure`` (drawn by Agg: no window opens) to ``FIGURES / name``."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / name, metadata={"Software": None})  # no version stamp in the file

# %% [markdown]
# ## A synthetic task
#
# Two classes, the letters F and L, drawn at random positions with noise. The training set is
# upright; the test set is rotated by 0, 90, 180 or 270 degrees.

# %%
def letters(n, rng, rotate=False, size=17):
    images = np.zeros((n, size, size, 1), np.float32)
    labels = rng.integers(0, 2, n)
    for i, label in enumerate(labels):
        r, c = rng.integers(2, size - 11, 2)
        img = images[i, :, :, 0]
        img[r:r + 10, c:c + 2] = 1                            # the stem
        if label == 0:                                        # F: top bar and middle bar
            img[r:r + 2, c:c + 8] = img[r + 4:r + 6, c:c + 6] = 1
        else:                                                 # L: bottom bar
            img[r + 8:r + 10, c:c + 8] = 1
        if rotate:
            images[i] = np.rot90(images[i], rng.integers(0, 4), axes=(0, 1))
    images += 0.1 * rng.standard_normal(images.shape).astype(np.float32)
    return jnp.asarray(images), jnp.asarray(labels)


rng = np.random.default_rng(0)
train_x, train_y = letters(128, rng)
test_x, test_y = letters(256, rng, rotate=True)
print("train", train_x.shape, "test (rotated)", test_x.shape)

# %% [markdown]
# ## An NNX model
#
# A plain `nnx.Module` whose attributes are equilib layers and a Flax `nnx.Linear` head. The
# group layers keep the orientation axis; `GroupPool` and the spatial mean make the features
# invariant, so the head sees the same vector for every rotation of a digit.

# %%
class Classifier(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.lift = nn.LiftingConv(1, 8, 3, group=G, rngs=rngs)
        self.bn = nn.GroupBatchNorm(8, group=G, momentum=0.9, rngs=rngs)
        self.conv = nn.GroupConv(8, 8, 3, group=G, rngs=rngs)
        self.pool = nn.GroupPool("max")
        self.head = nnx.Linear(8, 2, rngs=rngs)

    def features(self, x):
        x = jax.nn.relu(self.bn(self.lift(x)))   # (B, H, W, 8, 4)
        x = jax.nn.relu(self.conv(x))            # (B, H, W, 8, 4)
        return jnp.mean(self.pool(x), axis=(1, 2))  # (B, 8), rotation-invariant

    def __call__(self, x):
        return self.head(self.features(x))


model = Classifier(rngs=nnx.Rngs(0))
params = nnx.state(model, nnx.Param)
print("parameters:", sum(p.size for p in jax.tree.leaves(params)))
print("LiftingConv kernel", model.lift.kernel.shape, "| GroupConv kernel", model.conv.kernel.shape)

# %% [markdown]
# ## Training with optax
#
# Nothing equilib-specific: `nnx.Optimizer`, `nnx.value_and_grad`, `nnx.jit`. `model.train()` /
# `model.eval()` switch `GroupBatchNorm` between batch and running statistics (its `momentum`
# is 0.9 above so that the running statistics settle within these 60 steps).

# %%
optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def accuracy(model, x, y):
    return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


model.train()
losses = [float(train_step(model, optimizer, train_x, train_y)) for _ in range(60)]
model.eval()
print(f"training loss: step 1 {losses[0]:.3f}, step 60 {losses[-1]:.3f}")
print(f"accuracy: upright training set {float(accuracy(model, train_x, train_y)):.3f}, "
      f"rotated test set {float(accuracy(model, test_x, test_y)):.3f}")
errors = assert_equivariant(model, test_x[:8], G, output="invariant")
print("trained model, invariance error of the logits:", ", ".join(f"{e:.1e}" for e in errors.values()))

# %% tags=["hide-input"]
probs = np.asarray(jax.nn.softmax(model(test_x[:12]), axis=-1))  # (12, 2)
fig = Figure(figsize=(13.0, 3.9), dpi=100)
left, right = fig.subfigures(1, 2, width_ratios=[1, 1.7], wspace=0.02)
ax = left.subplots(gridspec_kw={"left": 0.17, "right": 0.95, "top": 0.86, "bottom": 0.14})
ax.plot(np.arange(1, len(losses) + 1), losses, color="tab:blue", lw=2)
ax.axhline(np.log(2), color="0.5", ls="--", lw=1)
ax.text(len(losses), np.log(2), "chance (log 2)", ha="right", va="bottom", fontsize=9, color="0.3")
ax.set_xlabel("training step (full batch of 128 upright letters)")
ax.set_ylabel("cross-entropy loss")
ax.set_ylim(0, None)
ax.grid(alpha=0.3)
ax.set_title("Training with optax", fontsize=12)
cells = right.subplots(2, 6, gridspec_kw={"wspace": 0.08, "hspace": 0.25, "left": 0.01, "right": 0.99,
                                          "top": 0.84, "bottom": 0.02})
for i, ax in enumerate(cells.flat):
    guess, truth = int(probs[i].argmax()), int(test_y[i])
    ax.imshow(np.asarray(test_x[i, :, :, 0]), cmap="gray_r")
    ax.set_title(f"{'FL'[guess]}, p = {probs[i, guess]:.2f}", fontsize=10,
                 color="tab:green" if guess == truth else "tab:red")
    ax.set_xticks([])
    ax.set_yticks([])
right.suptitle("Rotated test letters (never seen rotated): predicted class and probability", fontsize=12)
save(fig, "05_flax_integration_training.png")

# %% [markdown]
# ![Left: the training loss falls from chance level (log 2) to 0.16 in 60 steps. Right: twelve rotated
# test letters, each titled with the predicted letter and its probability, all
# correct](figures/05_flax_integration_training.png)
#
# Training changes the weights, not the structure: the trained model is still exactly invariant,
# so it classifies rotated letters, which it never saw, exactly as it classifies upright ones.
#
# ## The same network in Linen
#
# `equilib.linen` has every convolution and batch norm (`LiftingConv`, `GroupConv`,
# `GroupBatchNorm`, ...) with the same maths, shapes, parameter names (`kernel`, `bias`) and
# initialisation. Batch statistics live in the `"batch_stats"` collection, as for
# `flax.linen.BatchNorm`.

# %%
class LinenClassifier(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool = False):
        x = eqlinen.LiftingConv(1, 8, 3, group=G)(x)
        x = jax.nn.relu(eqlinen.GroupBatchNorm(8, group=G)(x, use_running_average=not train))
        x = jax.nn.relu(eqlinen.GroupConv(8, 8, 3, group=G)(x))
        x = jnp.mean(jnp.max(x, axis=-1), axis=(1, 2))   # group max-pool, spatial mean
        return linen.Dense(2)(x)


linen_model = LinenClassifier()
variables = linen_model.init(jax.random.key(0), train_x[:1])
print("Linen variables:", jax.tree.map(jnp.shape, variables["params"]["LiftingConv_0"]),
      "| collections:", sorted(variables))
logits, updates = linen_model.apply(variables, train_x, train=True, mutable=["batch_stats"])
variables = {**variables, **updates}
errors = assert_equivariant(lambda v: linen_model.apply(variables, v), test_x[:8], G, output="invariant")
print("Linen model, invariance error:", ", ".join(f"{e:.1e}" for e in errors.values()))

# %% [markdown]
# ## `export()` for inference
#
# A group convolution is a plain convolution with a structured kernel. `expanded_kernel()`
# returns the expanded HWIO kernel and `export()` a `flax.nnx.Conv` that computes the same
# function, with no dependency on equilib at inference time. The exported lifting conv outputs
# the flattened map `(B, H, W, C*|G|)` (channel `c*|G| + g`, escnn's order); reshape it to
# `(B, H, W, C, |G|)`.
# `GroupConv.export()` takes the flattened input. `SteerableConv.export()` works the same way.

# %%
lift_export, conv_export = model.lift.export(), model.conv.export()
print(type(lift_export).__module__ + "." + type(lift_export).__name__,
      "kernel", lift_export.kernel.shape, "|", "GroupConv export kernel", conv_export.kernel.shape)

x = test_x[:4]
y_eq = model.lift(x)
y_ex = lift_export(x).reshape(y_eq.shape)
h = jax.nn.relu(model.bn(y_eq))
z_eq = model.conv(h)
z_ex = conv_export(h.reshape(*h.shape[:3], -1)).reshape(z_eq.shape)
print(f"LiftingConv vs exported: max abs difference {float(jnp.max(jnp.abs(y_eq - y_ex))):.1e}")
print(f"GroupConv   vs exported: max abs difference {float(jnp.max(jnp.abs(z_eq - z_ex))):.1e}")
assert jnp.allclose(y_eq, y_ex, atol=1e-5) and jnp.allclose(z_eq, z_ex, atol=1e-5)

in_type = FieldType(SO2(), [trivial_rep(SO2())])
out_type = FieldType(SO2(), [irrep(SO2(), 1)] * 2)
steer = nn.SteerableConv(in_type, out_type, 5, rngs=nnx.Rngs(0))
diff = float(jnp.max(jnp.abs(steer(x) - steer.export()(x))))
print(f"SteerableConv vs exported: max abs difference {diff:.1e}")
