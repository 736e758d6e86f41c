"""Dense prediction under rotation: a U-Net trained on upright canvases, tested rotated.

Canvases (``canvas`` x ``canvas``, odd) hold 1 to ``max_digits`` MNIST digits at half size
(14x14, 2x2 averages), placed at random without overlap inside the central disk, so that a
rotation moves no digit off the canvas. Each pixel is labelled background or its digit's class;
6 and 9 are one class ("6/9"), since a 6 turned by 180 degrees is a 9 and no rotation-invariant
labelling can tell them apart: 10 classes, mean IoU over the 9 digit classes. Training canvases
use MNIST training digits, test canvases test digits.

Models (``equilib.models.UNet``, parameter counts within 10 %): a plain U-Net, the same trained
with random rotations U[0, 360) of canvas and label map together, a C4 U-Net (regular fields,
exactly equivariant at quarter turns on these sizes) and a steerable C8 U-Net (regular C8 fields,
band-limited steerable kernels: exact at quarter turns, approximate in between). Each is tested on the test canvases
rotated by 0, step, ... < 360 degrees (image: bilinear, zero fill; labels: the label map's
one-hot rotated the same way, then argmax; quarter turns exactly, by ``rot90``), and its output
equivariance error ``|f(g x) - g f(x)| / |g f(x)|`` is measured with
:func:`equilib.testing.equivariance_errors` (off-grid angles inside a central disk).

``results.json``: ``{"angles": [degrees], "models": {name: {"miou": [per angle],
"equivariance_error": [per angle], "params", "train_seconds", "epochs", "width" (fields per level),
"train_accuracy"}}, "class_names", "digits_per_canvas"}``.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from experiments.common import legend_outside, pyplot, save_figure
from experiments.segmentation.configs import MODELS, Config, UNetSpec

# the protocol line under the paper's table (experiments.reproduce)
TABLE_PROTOCOL = "ours (no published counterpart): rotated MNIST canvases, per-pixel labels."
RESULT_KEYS = ("angles", "models", "class_names", "digits_per_canvas")
CLASS_NAMES = ("background", "0", "1", "2", "3", "4", "5", "6/9", "7", "8")
NUM_CLASSES = len(CLASS_NAMES)
DIGIT_CLASS = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 7])  # digit -> class: 6 and 9 share class 7
INK = 0.3  # a half-size digit's pixel belongs to the digit where its intensity exceeds this
TABLE_ANGLES = (0, 45, 90, 180)
EVAL_BATCH = 250


# --- data ---------------------------------------------------------------------------------------
def _half_size_digits(images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each ``(28, 28, 1)`` digit as 2x2 averages cropped to its ink: ``(intensity, mask)``."""
    small = images[..., 0].reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    out = []
    for img in small:
        mask = img > INK
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        out.append((img[crop], mask[crop]))
    return out


def _place(size: int, shape: tuple[int, int], taken: np.ndarray, rng, tries: int = 40):
    """A top-left corner where a box of ``shape`` lies inside the canvas' inscribed disk and
    overlaps no taken pixel (one pixel of margin), or None."""
    h, w = shape
    centre, radius = (size - 1) / 2, (size - 1) / 2 - 0.5
    for _ in range(tries):
        r, c = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        corners = np.array([[r, c], [r, c + w - 1], [r + h - 1, c], [r + h - 1, c + w - 1]], float)
        if np.any(np.hypot(*(corners - centre).T) > radius):
            continue
        if not taken[max(r - 1, 0):r + h + 1, max(c - 1, 0):c + w + 1].any():
            return r, c
    return None


def make_canvases(images: np.ndarray, labels: np.ndarray, n: int, size: int, max_digits: int, seed: int):
    """``n`` canvases ``(n, size, size, 1)`` in [0, 1], their label maps ``(n, size, size)`` and
    the number of digits on each (``(n,)``), drawn with ``seed`` from ``images`` / ``labels``."""
    rng = np.random.default_rng(seed)
    digits = _half_size_digits(images)
    x = np.zeros((n, size, size), np.float32)
    y = np.zeros((n, size, size), np.int32)
    counts = np.zeros(n, np.int32)
    for i in range(n):
        for _ in range(int(rng.integers(1, max_digits + 1))):
            j = int(rng.integers(len(digits)))
            img, mask = digits[j]
            where = _place(size, mask.shape, y[i] > 0, rng)
            if where is None:
                continue
            r, c = where
            h, w = mask.shape
            x[i, r:r + h, c:c + w] = np.maximum(x[i, r:r + h, c:c + w], img)
            y[i, r:r + h, c:c + w][mask] = DIGIT_CLASS[labels[j]]
            counts[i] += 1
    return x[..., None], y, counts


def _data(config: Config):
    from experiments.common import load_mnist

    # enough source digits for 3 per canvas without much reuse, and never more than MNIST has
    data = load_mnist(min(60_000, 3 * config.n_train), min(10_000, 3 * config.n_test))
    train = make_canvases(*data["train"], config.n_train, config.canvas, config.max_digits, config.seed)
    test = make_canvases(*data["test"], config.n_test, config.canvas, config.max_digits, config.seed + 1)
    return train, test


# --- models and augmentation ----------------------------------------------------------------------
def _model_fn(name: str, spec: UNetSpec, config: Config):
    from equilib.groups import Cyclic, Trivial
    from equilib.models import UNet

    groups = {MODELS[0]: Trivial(), MODELS[1]: Trivial(), MODELS[2]: Cyclic(4), MODELS[3]: Cyclic(8)}
    if name not in groups:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return lambda rngs: UNet(groups[name], in_channels=1, num_classes=NUM_CLASSES, width=spec.width,
                             depth=config.depth, head_fields=config.head_fields, steerable="steerable" in name,
                             rngs=rngs)


def _rotate_pairs(normalize):
    """``joint_augment(key, x, y)``: each standardised canvas and its label map rotated by one
    angle ~ U[0, 2 pi) (pixels bilinear with the background as fill; labels by their one-hot)."""
    import jax
    import jax.numpy as jnp

    from equilib.functional import rotate

    def augment(key, x, y):
        angles = jax.random.uniform(key, (x.shape[0],), maxval=2 * math.pi)
        both = jnp.concatenate([normalize.inverse(x), jax.nn.one_hot(y, NUM_CLASSES, dtype=x.dtype)], axis=-1)
        both = jax.vmap(lambda a, b: rotate(b, a, axes=(0, 1)))(angles, both)
        return normalize(both[..., :1]), jnp.argmax(both[..., 1:], axis=-1).astype(y.dtype)

    return augment


# --- evaluation -----------------------------------------------------------------------------------
def _rotated_pairs():
    """``rotate(x, y, radians)``: canvases ``(B, H, W, 1)`` and label maps ``(B, H, W)`` rotated
    counter-clockwise (bilinear; the labels by their one-hot, then argmax), compiled once."""
    import jax
    import jax.numpy as jnp

    from equilib.functional import rotate

    @jax.jit
    def rotate_pair(x, y, radians):
        both = rotate(jnp.concatenate([x, jax.nn.one_hot(y, NUM_CLASSES, dtype=x.dtype)], -1), radians, axes=(1, 2))
        return both[..., :1], jnp.argmax(both[..., 1:], -1).astype(y.dtype)

    def pairs(x, y, degrees: int):
        if degrees % 90 == 0:  # quarter turns exactly
            k = degrees // 90
            return np.rot90(x, k, axes=(1, 2)), np.rot90(y, k, axes=(1, 2))
        return rotate_pair(x, y, np.float32(math.radians(degrees)))

    return pairs


def miou_sweep(model, x_raw: np.ndarray, y: np.ndarray, normalize, angles) -> list[float]:
    """Mean IoU over the digit classes of ``model`` on the canvases rotated by each angle."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    model.eval()
    graphdef, state = nnx.split(model)

    @jax.jit
    def confusion(state, xb, yb):
        pred = jnp.argmax(nnx.merge(graphdef, state)(normalize(xb)), -1)
        return jnp.bincount((yb * NUM_CLASSES + pred).reshape(-1), length=NUM_CLASSES ** 2)

    rotated = _rotated_pairs()
    out = []
    for degrees in angles:
        conf = np.zeros(NUM_CLASSES ** 2, np.int64)
        for i in range(0, len(x_raw), EVAL_BATCH):
            xb, yb = rotated(x_raw[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH], int(degrees))
            conf += np.asarray(confusion(state, xb, yb))
        out.append(mean_iou(conf.reshape(NUM_CLASSES, NUM_CLASSES)))
    return out


def mean_iou(confusion: np.ndarray) -> float:
    """The mean over the digit classes (not the background) of ``TP / (TP + FP + FN)``, from the
    confusion matrix ``confusion[truth, prediction]``; classes absent from truth and prediction
    are left out."""
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    digits = np.arange(1, NUM_CLASSES)
    present = digits[union[digits] > 0]
    return float(np.mean(tp[present] / union[present])) if len(present) else float("nan")


def equivariance_sweep(model, x_raw: np.ndarray, normalize, step_degrees: int) -> list[float]:
    """``|f(g x) - g f(x)| / |g f(x)|`` of the logits for each rotation by a multiple of the step."""
    import jax
    from flax import nnx

    from equilib.groups import Cyclic
    from equilib.testing import equivariance_errors

    model.eval()
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda s, a: nnx.merge(graphdef, s)(normalize(a)))
    errors = equivariance_errors(lambda a: logits(state, a), x_raw, Cyclic(360 // step_degrees))
    return [errors[g] for g in sorted(errors)]


# --- the experiment -------------------------------------------------------------------------------
def run(config: Config, workdir: pathlib.Path) -> dict:
    from equilib.training import count_params, fit
    from equilib.transforms import Normalize

    (x_train, y_train, _), (x_test, y_test, counts) = _data(config)
    normalize = Normalize.fit(x_train)
    angles = list(range(0, 360, config.angle_step_degrees))
    results: dict = {"angles": angles, "models": {}, "class_names": list(CLASS_NAMES),
                     "digits_per_canvas": {str(k): int(np.sum(counts == k)) for k in range(config.max_digits + 1)}}
    for name, spec in config.models.items():
        fitted = fit(_model_fn(name, spec, config), (np.asarray(normalize(x_train)), y_train),
                     spec.train_config(config, seed=config.seed),
                     workdir=workdir / name.replace(" ", "_").replace("+", "plus"),
                     joint_augment=_rotate_pairs(normalize) if "augmentation" in name else None)
        miou = miou_sweep(fitted.model, x_test, y_test, normalize, angles)
        err = equivariance_sweep(fitted.model, x_test[:config.equivariance_canvases], normalize,
                                 config.angle_step_degrees)
        m = {"miou": miou, "equivariance_error": err, "params": count_params(fitted.model),
             "train_seconds": sum(h["epoch_seconds"] for h in fitted.history), "epochs": spec.epochs,
             "width": list(spec.width), "train_accuracy": fitted.history[-1]["train_accuracy"]}
        results["models"][name] = m
        print(f"{name}: {m['params']:,} params, mIoU at 0/45/90 deg {miou[0]:.3f}/"
              f"{miou[angles.index(45)] if 45 in angles else float('nan'):.3f}/{miou[angles.index(90)]:.3f}, "
              f"min {min(miou):.3f}; equivariance error at 90 deg {err[angles.index(90)]:.2g}", flush=True)
    return results


def table(results: dict) -> str:
    """A markdown table: mean IoU (%) at some angles, its minimum and mean over all angles, the
    equivariance error at 45 and 90 degrees, parameters and training time."""
    angles = results["angles"]
    cols = [a for a in TABLE_ANGLES if a in angles]
    err_cols = [a for a in (45, 90) if a in angles]
    lines = ["| model | params | " + " | ".join(f"mIoU {a} deg" for a in cols)
             + " | min | mean | " + " | ".join(f"equiv. error {a} deg" for a in err_cols) + " | train s |",
             "|---|---:|" + "---:|" * (len(cols) + 2 + len(err_cols) + 1)]
    for name, m in results["models"].items():
        miou, err = m["miou"], m["equivariance_error"]
        lines.append(f"| {name} | {m['params']:,} | " + " | ".join(f"{100 * miou[angles.index(a)]:.1f}" for a in cols)
                     + f" | {100 * min(miou):.1f} | {100 * float(np.mean(miou)):.1f} | "
                     + " | ".join(f"{err[angles.index(a)]:.2g}" for a in err_cols)
                     + f" | {m['train_seconds']:.0f} |")
    return "\n".join(lines)


def plot(results: dict, stem: pathlib.Path) -> list[pathlib.Path]:
    plt = pyplot()
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    for name, m in results["models"].items():
        ax.plot(results["angles"], 100 * np.asarray(m["miou"]), marker="o", ms=3, label=name)
        # an exact zero (e.g. at 0 degrees) cannot be drawn on a log axis: floored at 1e-8
        ax_err.plot(results["angles"], np.maximum(m["equivariance_error"], 1e-8), marker="o", ms=3, label=name)
    ax.set_xlabel("rotation of the test canvases (degrees, counter-clockwise)")
    ax.set_ylabel("mean IoU over digit classes (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Trained upright, tested rotated")
    ax_err.set_yscale("log")
    ax_err.set_xlabel("rotation (degrees)")
    ax_err.set_ylabel("|f(g x) - g f(x)| / |g f(x)| (floored at 1e-8)")
    ax_err.set_title("Output equivariance error")
    for a in (ax, ax_err):
        a.set_xticks(range(0, 361, 45))
        a.set_xlim(0, 360)
        a.grid(alpha=0.3)
    legend_outside(ax_err)
    return save_figure(fig, stem, table(results), results)
