"""Where a plain 3D CNN fails under rotation, what fixes it, and what an O(3)-invariant model cannot tell.

Data: 3D Tetris (:func:`equilib.data.polycubes`): eight tetracubes, among them a chiral pair
(the left and right twist, mirror images of each other), each at a random size (cube edge
uniform in ``scale_range`` voxels) and position in a ``volume_size``^3 grid, rendered as voxel
coverage from 4^3 sample points per voxel (``polycubes(orientation=R)``; the identity for the
training and upright test volumes, so that every condition goes through the same renderer).
Every model is trained on upright volumes only (one fixed orientation per shape)
and tested on the test volumes under each condition: (a) each of the 24 rotations of the cube
(``Octahedral()``, exact on the grid; the first is the identity, i.e. upright), (b)
``n_random_rotations`` uniform random rotations (``SO3().random_elements``): the same test shapes
(sizes, positions) rendered turned about the grid's centre (``polycubes(orientation=R)``: coverage
from 4^3 samples per voxel; every shape lies within ``size / 2 - 1`` voxels of the centre, so
nothing is cut off). Rendering, not resampling the upright voxels: trilinear interpolation would
blur shapes whose cubes are one voxel wide, a change of the data rather than of its pose.

Models (all defined here, the same topology, ~10k parameters each, counted in ``params``):
four 3D convolutions, the first 5^3 and the others 3^3, each followed by a nonlinearity
(after a batch norm in the plain CNN and the G-CNN; none after the steerable models' last, whose
invariants are read directly); the first and the third downsample by 2 (9^3 -> 5^3 -> 3^3:
a stride-1 convolution keeping every other voxel, the same function as stride 2 on an odd
size, which XLA:CPU differentiates 2-4x faster); a global mean over space (after the max over
the group, for the G-CNN) to features that are invariant for the equivariant models; a batch norm
over those features; a linear classifier. The batch norm of the head matters: the invariant
features vary little between volumes (mostly empty, and for the G-CNN maxima over 24
orientations), and without it the G-CNN did not fit 64 training volumes in 80 steps, where the
plain CNN reached 100 %.

* **Plain 3D CNN**: :class:`equilib.nn.Conv` with 6, 8, 12, 16 channels, ``nnx.BatchNorm``, ReLU.
* **Plain 3D CNN + rotation augmentation**: the same network; each training volume is turned by
  a uniformly drawn one of the 24 grid rotations, on the fly (exact: a gather with precomputed
  index tables, one row per rotation). The same 24 rotations the G-CNN builds in, learnt
  instead of built in; random SO(3) rotations stay unseen, as for every model.
* **Octahedral G-CNN**: :class:`equilib.nn.LiftingConv` then :class:`equilib.nn.GroupConv` over
  ``Octahedral()`` with 2, 2, 2, 4 regular fields (24 channels each),
  :class:`equilib.nn.GroupBatchNorm`, ReLU, then the mean over space and the max over the group:
  invariant to the 24 grid rotations exactly.
* **SO(3) steerable CNN**: :class:`equilib.nn.SteerableConv` on ``FieldType3D(SO3(), ...)`` with
  scalar and vector fields (degrees 0 and 1; 8+8, 12+12, 16+16, 48+48 of them), ReLU on the
  scalars and the norm ReLU (:class:`equilib.nn.NormNonlinearity`) on the vectors, then the
  invariants of the last layer's fields: the scalars, the vectors' norms
  (:class:`equilib.nn.NormPool`) and the triple products ``det(v_i, v_i+1, v_i+2)`` of
  consecutive unit vectors, which are rotation-invariant but change sign under a reflection.
  Exactly invariant to the grid rotations, approximately to the others. Its kernels also hold
  the parity-odd couplings (a vector to a vector through the cross product), but in development
  those alone, read out through norms, separated the chiral pair barely (~53 % on the pair after
  7 epochs of 2,048 volumes, the other shapes ~94 %); with the triple products, ~80 %.
* **O(3) steerable CNN**: the same on ``FieldType3D(O3(), ...)`` (true scalars and vectors;
  8+8, 12+12, 18+18, 52+52 fields, to match the parameters) without the triple products (not
  invariant under O(3)): kernels and invariants are also invariant under the inversion, so the
  model gives a shape and its mirror image the same logits. On the chiral pair it can at best
  guess: ~50 %.

The steerable models have no normalisation inside (``equilib.nn`` has no batch norm for
:class:`~equilib.fields3d.FieldType3D` yet), only the head's.

``results.json``: ``{"classes": [8 names], "chiral_pair": [2 names], "conditions": [names],
"condition_kinds": ["grid" | "random" per condition], "condition_angles": [degrees],
"models": {name: {"accuracy": [per condition], "chiral_accuracy": {class: [per condition]},
"achiral_accuracy": [per condition], "params", "epochs", "lr_decay_epochs", "train_seconds",
"test_seconds", "train_accuracy", "grid_invariance_error", "inversion_invariance_error"}}}``.
The invariance errors are the largest change of the logits, relative to their largest magnitude
over the test set, between a test volume and the same volume turned by a grid rotation (over all
24), or inverted (``p -> -p``, a reflection: zero for an O(3)-invariant model).
"""

from __future__ import annotations

import functools
import pathlib
import time

import numpy as np

from experiments.common import chance_line, legend_outside, pyplot, save_figure
from experiments.rotation3d.configs import MODELS, Config

# the protocol line under the paper's table (experiments.reproduce)
TABLE_PROTOCOL = ("ours: voxelised 3D Tetris (Thomas et al. 2018 use the shapes as point sets; no published voxel "
            "numbers to compare).")
RESULT_KEYS = ("classes", "chiral_pair", "conditions", "condition_kinds", "condition_angles", "models")
N_CLASSES = 8
CHANCE_PERCENT = 100.0 / N_CLASSES
SHORT_NAMES = {"Plain 3D CNN": "plain\nCNN", "Plain 3D CNN + rotation augmentation": "plain CNN\n+ augm.",
               "Octahedral G-CNN": "octahedral\nG-CNN", "SO(3) steerable CNN": "SO(3)\nsteerable",
               "O(3) steerable CNN": "O(3)\nsteerable"}  # the bar chart's tick labels

# the widths (channels, fields or (scalar, vector) fields per layer), chosen for ~10k parameters each
PLAIN_WIDTHS = (6, 8, 12, 16)
GCNN_WIDTHS = (2, 2, 2, 4)
SO3_WIDTHS = ((8, 8), (12, 12), (16, 16), (48, 48))
O3_WIDTHS = ((8, 8), (12, 12), (18, 18), (52, 52))
DOWNSAMPLE_AFTER = (0, 2)  # the layers followed by the downsampling by 2


# --- models -------------------------------------------------------------------------------------
def every_other_voxel(x):
    """Keep the voxels of even index along D, H, W: after a stride-1 "SAME" convolution, the same
    function as the stride-2 one on an odd size (the grid's centre is kept: exact under the grid
    rotations)."""
    return x[:, ::2, ::2, ::2]


@functools.cache
def _modules():
    """The model classes, defined on first use (no JAX at import time: the CLI sets the devices first)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from equilib import nn
    from equilib.fields3d import FieldType3D, irrep3d

    def field_type(group, n_scalars: int, n_vectors: int):
        return FieldType3D(group, [irrep3d(group, 0)] * n_scalars + [irrep3d(group, 1)] * n_vectors)

    class FieldReLU(nnx.Module):
        """ReLU on the scalar fields (invariant: any pointwise function is equivariant on them) and
        the norm ReLU on the vector fields, for a map of ``n_scalars`` scalars then ``n_vectors`` vectors."""

        def __init__(self, group, n_scalars: int, n_vectors: int, *, rngs):
            self.n_scalars = n_scalars
            self.norm = nn.NormNonlinearity(field_type(group, 0, n_vectors), rngs=rngs)

        def __call__(self, x):
            return jnp.concatenate([jax.nn.relu(x[..., :self.n_scalars]), self.norm(x[..., self.n_scalars:])], -1)

    class Invariants(nnx.Module):
        """The invariant part of a map of scalars then vectors: the scalars and the vectors' norms
        (O(3)-invariant for true scalars and vectors) and, with ``triple_products``, the triple
        products ``det(v_i, v_i+1, v_i+2) / (|v_i| |v_i+1| |v_i+2|)`` of consecutive vectors (cyclically):
        rotation-invariant and odd under reflections, the invariants of SO(3) that O(3) lacks."""

        def __init__(self, group, n_scalars: int, n_vectors: int, *, triple_products: bool = False):
            self.n_scalars, self.n_vectors, self.triple_products = n_scalars, n_vectors, triple_products
            self.norms = nn.NormPool(field_type(group, 0, n_vectors))

        @property
        def size(self) -> int:
            return self.n_scalars + self.n_vectors * (2 if self.triple_products else 1)

        def __call__(self, x):
            vectors = x[..., self.n_scalars:]
            parts = [x[..., :self.n_scalars], self.norms(vectors)]
            if self.triple_products:
                v = vectors.reshape(vectors.shape[:-1] + (self.n_vectors, 3))
                v = v / (jnp.linalg.norm(v, axis=-1, keepdims=True) + 1e-6)
                v1, v2 = jnp.roll(v, -1, axis=-2), jnp.roll(v, -2, axis=-2)
                parts.append(jnp.sum(v * jnp.cross(v1, v2), axis=-1))  # the components' order is a rotation
            return jnp.concatenate(parts, -1)

    return nnx, jax, nn, field_type, FieldReLU, Invariants


def build_model(name: str, rngs):
    """The model ``name`` (one of :data:`MODELS`), on volumes ``(B, D, H, W, 1)``, logits ``(B, 8)``."""
    nnx, jax, nn, field_type, FieldReLU, Invariants = _modules()
    from equilib import Octahedral
    from equilib.groups3d import O3, SO3

    def head(n_features: int) -> list:  # batch norm over the invariant features, then the classifier
        return [nnx.BatchNorm(n_features, rngs=rngs), nnx.Linear(n_features, N_CLASSES, rngs=rngs)]

    layers: list = []
    if name.startswith("Plain 3D CNN"):
        widths = (1,) + PLAIN_WIDTHS
        for i in range(len(PLAIN_WIDTHS)):
            layers.append(nn.Conv(widths[i], widths[i + 1], (5, 5, 5) if i == 0 else (3, 3, 3), rngs=rngs))
            layers += [every_other_voxel] if i in DOWNSAMPLE_AFTER else []
            layers += [nnx.BatchNorm(widths[i + 1], rngs=rngs), jax.nn.relu]
        layers += [nn.GlobalPool("mean", spatial_dims=3), *head(widths[-1])]
    elif name == "Octahedral G-CNN":
        octa, widths = Octahedral(), (1,) + GCNN_WIDTHS
        for i in range(len(GCNN_WIDTHS)):
            conv = nn.LiftingConv if i == 0 else nn.GroupConv
            layers.append(conv(widths[i], widths[i + 1], 5 if i == 0 else 3, group=octa, rngs=rngs))
            layers += [every_other_voxel] if i in DOWNSAMPLE_AFTER else []
            layers += [nn.GroupBatchNorm(widths[i + 1], group=octa, rngs=rngs), jax.nn.relu]
        layers += [nn.GlobalPool("mean", group_mode="max", spatial_dims=3), *head(widths[-1])]
    elif name in ("SO(3) steerable CNN", "O(3) steerable CNN"):
        group, fields = (SO3(), SO3_WIDTHS) if name.startswith("SO(3)") else (O3(), O3_WIDTHS)
        types = [field_type(group, 1, 0)] + [field_type(group, *f) for f in fields]
        for i, f in enumerate(fields):
            layers.append(nn.SteerableConv(types[i], types[i + 1], 5 if i == 0 else 3, rngs=rngs))
            layers += [every_other_voxel] if i in DOWNSAMPLE_AFTER else []
            if i < len(fields) - 1:
                layers.append(FieldReLU(group, *f, rngs=rngs))
        invariants = Invariants(group, *fields[-1], triple_products=group == SO3())
        layers += [invariants, nn.GlobalPool("mean", spatial_dims=3), *head(invariants.size)]
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return nn.Sequential(*layers)


# --- data and test conditions -------------------------------------------------------------------
def grid_rotation_tables(size: int) -> np.ndarray:
    """``(24, size**3)`` int32: row ``g`` holds, for each voxel of a volume turned by the grid rotation
    ``g`` (``Octahedral().transform_image``), the flat index of the voxel it comes from."""
    from equilib import Octahedral

    group, index = Octahedral(), np.arange(size**3).reshape(size, size, size)
    return np.stack([group.transform_image(index, g, axes=(0, 1, 2)).reshape(-1)
                     for g in range(group.order)]).astype(np.int32)


def octahedral_augment(size: int):
    """``augment(key, x)`` for :func:`equilib.training.fit`: each volume of ``x`` ``(B, D, H, W, 1)``
    turned by a uniformly drawn one of the 24 grid rotations (a gather with the index tables:
    exact, and one compiled program for all 24)."""
    import jax
    import jax.numpy as jnp

    tables = jnp.asarray(grid_rotation_tables(size))

    def augment(key, x):
        g = jax.random.randint(key, (x.shape[0],), 0, tables.shape[0])
        flat = x.reshape(x.shape[0], tables.shape[1], -1)  # (B, voxels, C)
        return jnp.take_along_axis(flat, tables[g][..., None], axis=1).reshape(x.shape)

    return augment


def _describe_rotation(matrix: np.ndarray) -> tuple[str, float]:
    """A short name (angle and axis, in the (x, y, z) of equilib.groups3d) and the angle in degrees."""
    angle = float(np.degrees(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1.0, 1.0))))
    if angle < 1e-6:
        return "identity", 0.0
    if abs(angle - 180) < 1e-6:
        sym = (matrix + np.eye(3)) / 2  # = a a^T
        axis = sym[int(np.argmax(np.diag(sym)))]
    else:
        axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    axis = axis / np.max(np.abs(axis))
    if abs(angle - 180) < 1e-6 and axis[np.flatnonzero(np.abs(axis) > 1e-6)[0]] < 0:
        axis = -axis  # a half turn about a and about -a are the same: the first nonzero component positive
    whole = np.rint(axis)
    if np.allclose(axis, whole, atol=1e-6) and np.count_nonzero(whole) == 1:
        k = int(np.flatnonzero(whole)[0])
        text = ("-" if whole[k] < 0 else "") + "xyz"[k]
    elif np.allclose(axis, whole, atol=1e-6):
        text = "(" + ",".join(f"{int(v)}" for v in whole) + ")"
    else:
        text = "(" + ",".join(f"{v:.2f}" for v in axis) + ")"
    return f"{angle:.0f} deg about {text}", angle


def test_conditions(x_test: np.ndarray, config: Config, render):
    """The test conditions: names, kinds, angles, the test volumes ``(N, D, H, W, 1)`` under each,
    stacked ``(n_conditions, N, D, H, W, 1)``, and the random rotations' matrices. The grid
    rotations turn the test volumes exactly; a random rotation ``R`` renders the test shapes turned
    by ``R`` (``render(R)``: the voxels a scanner would see, not an interpolation of the upright
    voxels, which would blur shapes one voxel wide)."""
    from equilib import Octahedral
    from equilib.groups3d import SO3

    group = Octahedral()
    mats = SO3().random_elements(config.n_random_rotations, seed=config.seed)
    poses = [("grid", f"grid {g}", group.matrix(g), group.transform_image(x_test, g, axes=(1, 2, 3)))
             for g in range(group.order)]
    poses += [("random", f"random {i + 1}", m, render(m)) for i, m in enumerate(mats)]
    names, kinds, angles, volumes = [], [], [], []
    for kind, label, matrix, volume in poses:
        name, angle = _describe_rotation(matrix)
        names.append(f"{label}: {name}")
        kinds.append(kind)
        angles.append(angle)
        volumes.append(volume)
    return names, kinds, angles, np.stack(volumes).astype(np.float32), mats


# --- run ----------------------------------------------------------------------------------------
def run(config: Config, workdir: pathlib.Path) -> dict:
    from equilib.data import CHIRAL_PAIR, POLYCUBE_SHAPES, polycubes

    def shapes(n: int, seed: int, rotation=None):
        # every volume through the one sampled renderer (training, grid and random poses alike), so the
        # conditions differ in the pose only; the grid poses of it are exact grid transforms
        return polycubes(n, size=config.volume_size, seed=seed, noise=config.noise,
                         orientation=np.eye(3) if rotation is None else rotation,
                         scale_range=(config.scale_range[0], config.scale_range[1]))

    x_train, y_train = shapes(config.n_train, 2 * config.seed)
    x_test, y_test = shapes(config.n_test, 2 * config.seed + 1)
    names, kinds, angles, volumes, mats = test_conditions(
        x_test, config, render=lambda m: shapes(config.n_test, 2 * config.seed + 1, m)[0])
    classes = list(POLYCUBE_SHAPES)
    results: dict = {"classes": classes, "chiral_pair": [classes[c] for c in CHIRAL_PAIR], "conditions": names,
                     "condition_kinds": kinds, "condition_angles": angles, "models": {}}
    augment = octahedral_augment(config.volume_size)
    for name, spec in config.models.items():
        train_config = spec.train_config(config, seed=config.seed, lr_decay_epochs=_decay(spec.epochs,
                                                                                          config.lr_decay_last))
        results["models"][name] = _train_and_test(
            name, train_config, (x_train, y_train), volumes, y_test, classes,
            workdir=workdir / _folder(name), augment=augment if "augmentation" in name else None,
            recalibrate=config.bn_recalibration, rotations=mats, seed=config.seed)
    return results


def _folder(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.replace("+", "plus")).strip("_")


def _decay(epochs: int, last: int) -> tuple[int, ...]:
    """``lr_decay_epochs`` for the learning rate / 10 in the last ``last`` of ``epochs`` epochs."""
    return (epochs - last,) if 0 < last < epochs else ()


def _train_and_test(name, train_config, train, volumes, y_test, classes, *, workdir, augment,
                    recalibrate: bool, rotations, seed: int) -> dict:
    """Train one model (and recalibrate its batch norms), then its accuracy under every condition."""
    import jax
    from flax import nnx

    from equilib import FullOctahedral
    from equilib.data import CHIRAL_PAIR
    from equilib.training import count_params, fit, predict, recalibrate_batch_norm

    fitted = fit(lambda rngs: build_model(name, rngs), train, train_config, workdir=workdir, augment=augment)
    model: nnx.Module = fitted.model
    if recalibrate:
        recalibrate_batch_norm(model, train[0], batch_size=train_config.batch_size, augment=augment,
                               key=jax.random.key(train_config.seed + 777))
    t0 = time.perf_counter()
    n_cond, n = volumes.shape[:2]
    inverted = FullOctahedral().transform_image(volumes[0], 24, axes=(1, 2, 3))  # p -> -p
    logits = predict(model, np.concatenate([volumes.reshape((-1,) + volumes.shape[2:]), inverted]),
                     batch_size=max(train_config.batch_size, 256))
    test_seconds = time.perf_counter() - t0
    by_condition, inverted_logits = logits[:-n].reshape(n_cond, n, -1), logits[-n:]
    correct = np.argmax(by_condition, -1) == y_test[None, :]
    accuracy = correct.mean(axis=1)
    chiral = {classes[c]: correct[:, y_test == c].mean(axis=1).tolist() for c in CHIRAL_PAIR}
    achiral = correct[:, ~np.isin(y_test, CHIRAL_PAIR)].mean(axis=1)
    scale = float(np.max(np.abs(by_condition[0])))
    grid = [k for k in range(n_cond) if k < 24]
    grid_error = float(np.max(np.abs(by_condition[grid] - by_condition[0][None]))) / scale
    inversion_error = float(np.max(np.abs(inverted_logits - by_condition[0]))) / scale
    random_error = float(np.max(np.abs(by_condition[24:] - by_condition[0][None]))) / scale if n_cond > 24 else 0.0
    smooth_error = _smooth_invariance_error(model, rotations, volumes.shape[2:], seed)
    acc = accuracy.tolist()
    print(f"{name}: {count_params(model):,} params, accuracy upright {acc[0]:.4f}, grid rotations mean "
          f"{np.mean(acc[:24]):.4f} min {min(acc[:24]):.4f}, random rotations mean {np.mean(acc[24:]):.4f}; "
          f"chiral pair {', '.join(f'{k} {np.mean(v):.3f}' for k, v in chiral.items())}; invariance errors grid "
          f"{grid_error:.2g}, inversion {inversion_error:.2g}, random {random_error:.2g} (smooth volumes "
          f"{smooth_error:.2g})", flush=True)
    return {"accuracy": acc, "chiral_accuracy": chiral, "achiral_accuracy": achiral.tolist(),
            "params": count_params(model), "epochs": train_config.epochs,
            "lr_decay_epochs": list(train_config.lr_decay_epochs),
            "train_seconds": sum(h["epoch_seconds"] for h in fitted.history), "test_seconds": test_seconds,
            "train_accuracy": fitted.history[-1]["train_accuracy"],
            "grid_invariance_error": grid_error, "inversion_invariance_error": inversion_error,
            "random_invariance_error": random_error, "smooth_random_invariance_error": smooth_error}


def _smooth_invariance_error(model, rotations, shape, seed: int) -> float:
    """The largest change of the logits, relative to their largest magnitude, when 64 smooth random
    volumes (``testing.smooth_random``, sigma 1.5 voxels, zero outside the inscribed ball) are turned
    by the random rotations (trilinear): the model's own off-grid invariance on band-limited inputs,
    to set against its change on the test shapes (about one voxel wide)."""
    import jax

    from equilib.groups3d import SO3
    from equilib.testing import ball_mask, smooth_random
    from equilib.training import predict

    if not len(rotations):
        return 0.0
    x = np.asarray(smooth_random(jax.random.key(seed + 99), (64, *shape), sigma=1.5, axes=(1, 2, 3)))
    x = x * ball_mask(*shape[:3])[None, ..., None]
    turned = [np.asarray(SO3().transform_image(x, m, axes=(1, 2, 3))) for m in rotations]
    logits = predict(model, np.concatenate([x, *turned]), batch_size=256).reshape(len(rotations) + 1, len(x), -1)
    return float(np.max(np.abs(logits[1:] - logits[0][None]))) / float(np.max(np.abs(logits[0])))


# --- table and figure -----------------------------------------------------------------------------
def _summary(results: dict, m: dict) -> dict:
    kinds, acc = results["condition_kinds"], np.asarray(m["accuracy"])
    grid, rand = acc[[k == "grid" for k in kinds]], acc[[k == "random" for k in kinds]]
    chiral = np.mean([np.mean(v) for v in m["chiral_accuracy"].values()])
    return {"upright": acc[0], "grid_mean": grid.mean(), "grid_min": grid.min(),
            "random_mean": rand.mean() if len(rand) else float("nan"),
            "random_min": rand.min() if len(rand) else float("nan"),
            "chiral": chiral, "achiral": float(np.mean(m["achiral_accuracy"]))}


def table(results: dict) -> str:
    """A markdown table: accuracy (%) upright, over the 24 grid rotations and the random rotations
    (mean and worst), on the chiral pair and the six other shapes (mean over all conditions); then
    the protocol."""
    lines = ["| model | params | upright | grid rotations: mean | worst | random rotations: mean | worst "
             "| chiral pair | other 6 shapes | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in results["models"].items():
        s = _summary(results, m)
        lines.append(f"| {name} | {m['params']:,} | " + " | ".join(
            f"{100 * s[k]:.1f}" for k in ("upright", "grid_mean", "grid_min", "random_mean", "random_min",
                                          "chiral", "achiral")) + f" | {m['train_seconds']:.0f} |")
    cfg = results.get("config", {})
    n_grid = sum(k == "grid" for k in results["condition_kinds"])
    n_random = sum(k == "random" for k in results["condition_kinds"])
    lines += ["", f"Protocol: 3D Tetris (`equilib.data.polycubes`: 8 tetracubes, cube edge "
              f"{cfg.get('scale_range', ['?', '?'])[0]}-{cfg.get('scale_range', ['?', '?'])[1]} voxels, random "
              f"position, in a {cfg.get('volume_size', '?')}^3 grid); every model trained on "
              f"{cfg.get('n_train', '?')} upright volumes (Adam, batch {cfg.get('batch_size', '?')}), tested on "
              f"{cfg.get('n_test', '?')} volumes under each of the {n_grid} rotations of the cube (exact on the "
              f"grid; the first is the identity) and {n_random} uniform random rotations (the shapes rendered "
              f"turned). Chiral pair: "
              f"the accuracy on the two twisted tetracubes, mirror images of each other (an O(3)-invariant "
              f"model can only guess between them: ~50 %), mean over all conditions. Chance: "
              f"{CHANCE_PERCENT:g} %."]
    return "\n".join(lines)


def plot(results: dict, stem: pathlib.Path) -> list[pathlib.Path]:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    kinds = results["condition_kinds"]
    n_grid = sum(k == "grid" for k in kinds)
    x = np.arange(len(kinds))
    models = results["models"]
    for name, m in models.items():
        ax.plot(x, 100 * np.asarray(m["accuracy"]), marker="o", ms=3, lw=1, label=name)
    if n_grid < len(kinds):
        ax.axvline(n_grid - 0.5, color="0.5", lw=0.8, ls="--")
    ax.set_xticks([(n_grid - 1) / 2] + ([(n_grid + len(kinds) - 1) / 2] if n_grid < len(kinds) else []))
    random_label = [f"{len(kinds) - n_grid} random rotations\n(rendered turned)"] if n_grid < len(kinds) else []
    ax.set_xticklabels([f"the {n_grid} rotations of the cube\n(exact on the grid; first: upright)"] + random_label)
    ax.set_xlim(-0.7, len(kinds) - 0.3)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    chance_line(ax, CHANCE_PERCENT)
    ax.grid(alpha=0.3, axis="y")
    legend_outside(ax, below=True, ncol=2)
    ax.set_title("Trained upright, tested rotated")

    names = list(models)
    summaries = [_summary(results, models[n]) for n in names]
    pos = np.arange(len(names))
    bx.bar(pos - 0.2, [100 * s["achiral"] for s in summaries], 0.4, label="the six achiral shapes", color="0.6")
    bx.bar(pos + 0.2, [100 * s["chiral"] for s in summaries], 0.4, label="the chiral pair (twist left / right)",
           color="tab:red")
    bx.axhline(50, color="tab:red", ls=":", lw=1.2, label="the most a reflection-invariant model gets on the pair")
    bx.set_xticks(pos)
    bx.set_xticklabels([SHORT_NAMES.get(n, n) for n in names], fontsize=8)
    bx.set_ylim(0, 102)
    bx.set_ylabel("test accuracy (%), mean over all conditions")
    bx.grid(alpha=0.3, axis="y")
    legend_outside(bx, below=True)
    bx.set_title("Telling mirror images apart")
    fig.tight_layout()
    return save_figure(fig, stem, table(results), results)
