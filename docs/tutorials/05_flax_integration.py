# %% [markdown]
# # 5. equilib layers in your own Flax model (NNX or Linen), and `export()` for inference
#
# equilib's layers are ordinary Flax NNX modules (`equilib.nn`) that own `nnx.Param`s, plus Linen
# versions of the group layers (`equilib.linen`), so they mix with Flax's own layers, `optax`
# and `nnx.jit` like any other module. This tutorial writes a small NNX classifier around them,
# trains it for a few steps on a synthetic task, writes the same network in Linen, and exports
# the group convolutions to plain `nnx.Conv` layers for inference.

# %%
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen
from flax import nnx

import equilib.linen as eqlinen
from equilib import Cyclic, FieldType, SO2, nn
from equilib.testing import assert_equivariant

G = Cyclic(4)

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
print("LiftingConv weight", model.lift.weight.shape, "| GroupConv weight", model.conv.weight.shape)

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


# %% [markdown]
# Training changes the weights, not the structure: the trained model is still exactly invariant,
# so it classifies rotated letters, which it never saw, exactly as it classifies upright ones.
#
# ## The same network in Linen
#
# `equilib.linen` has `LiftingConv`, `GroupConv` and `GroupBatchNorm` with the same maths,
# shapes, parameter names (`weight`, `bias`) and initialisation. Batch statistics live in the
# `"batch_stats"` collection, as for `flax.linen.BatchNorm`.

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
# A group convolution is a plain convolution with a structured kernel. `kernel()` returns the
# expanded HWIO kernel and `export()` a `flax.nnx.Conv` that computes the same function, with no
# dependency on equilib at inference time. The exported lifting conv outputs the flattened map
# `(B, H, W, C*|G|)` (channel `c*|G| + g`, escnn's order); reshape it to `(B, H, W, C, |G|)`.
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

in_type = FieldType(SO2(), [SO2().trivial_rep])
out_type = FieldType(SO2(), [SO2().irrep(1)] * 2)
steer = nn.SteerableConv(in_type, out_type, 5, rngs=nnx.Rngs(0))
diff = float(jnp.max(jnp.abs(steer(x) - steer.export()(x))))
print(f"SteerableConv vs exported: max abs difference {diff:.1e}")
