"""Where a plain CNN fails under rotation, and how augmentation or group convolutions fix it.

Every model is trained on upright MNIST digits only and tested on the test digits rotated by
0, 5, ..., 355 degrees (bilinear, zero fill, about the centre). Models (Cohen & Welling 2016
architectures, ``equilib.models``): Z2CNN (plain), Z2CNN trained with random rotations
U[0, 360), P4CNN (C4: exactly invariant to quarter turns), and a C8 G-CNN (band-limited kernels:
exact at quarter turns, approximately invariant at 45 degrees).

``results.json``: ``{"angles": [degrees], "models": {name: {"accuracy": [per angle], "params",
"epochs", "train_seconds", "train_accuracy"}}}``.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from experiments.common import MNIST_CHANCE_PERCENT, chance_line, legend_outside, pyplot, save_figure
from experiments.rotation.configs import MODELS, Config

# the protocol line under the paper's table (experiments.reproduce)
TABLE_PROTOCOL = ("ours, no published counterpart: trained upright, tested rotated (the G-CNN paper's "
            "MNIST-rot trains on rotated digits: see its section).")
RESULT_KEYS = ("angles", "models")
TABLE_ANGLES = (0, 45, 90, 135, 180, 225, 270, 315)  # the figure's ticks


def _model_fn(name: str):
    from equilib.groups import Cyclic
    from equilib.models import GCNN, P4CNN, Z2CNN

    if name.startswith("Z2CNN"):
        return lambda rngs: Z2CNN(rngs=rngs)
    if name == "P4CNN":
        return lambda rngs: P4CNN(rngs=rngs)
    if name == "C8 G-CNN":
        return lambda rngs: GCNN(Cyclic(8), width=7, rngs=rngs)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def run(config: Config, workdir: pathlib.Path) -> dict:
    from equilib.transforms import Normalize, RandomRotation, normalized_augment
    from experiments.common import load_mnist

    data = load_mnist(config.n_train, config.n_test)
    x_train, y_train = data["train"]
    # one global mean/std over all pixels keeps the normalisation rotation-invariant
    normalize = Normalize.fit(x_train)
    augment = normalized_augment(RandomRotation(), normalize)
    angles = list(range(0, 360, config.angle_step_degrees))
    results: dict = {"angles": angles, "models": {}}
    for name, spec in config.models.items():
        results["models"][name] = _train_and_sweep(
            name, spec.train_config(config, seed=config.seed, compute_dtype=config.compute_dtype,
                                    lr_decay_epochs=_decay(spec.epochs, config.lr_decay_last)),
            (normalize(x_train), y_train), data["test"], normalize, angles,
            workdir=workdir / name.replace(" ", "_").replace("+", "plus"),
            augment=augment if "augmentation" in name else None, recalibrate=config.bn_recalibration)
    return results


def _decay(epochs: int, last: int) -> tuple[int, ...]:
    """``lr_decay_epochs`` for the learning rate / 10 in the last ``last`` of ``epochs`` epochs."""
    return (epochs - last,) if 0 < last < epochs else ()


def _train_and_sweep(name, train_config, train, test, normalize, angles, *, workdir, augment,
                     recalibrate: bool = False) -> dict:
    """Train one model (and recalibrate its batch norms), then its accuracy on the test digits
    rotated by each angle."""
    import jax
    import jax.numpy as jnp

    from equilib.functional import rotate
    from equilib.training import count_params, evaluate, fit, recalibrate_batch_norm

    fitted = fit(_model_fn(name), train, train_config, workdir=workdir, augment=augment)
    if recalibrate:
        recalibrate_batch_norm(fitted.model, train[0], batch_size=train_config.batch_size, augment=augment,
                               key=jax.random.key(train_config.seed + 777))
    sweep = evaluate(fitted.model, *test, batch_size=1000,
                     transform=lambda x, a: normalize(rotate(x, a * (math.pi / 180), axes=(1, 2))),
                     params=[jnp.float32(a) for a in angles], compute_dtype=train_config.compute_dtype)
    acc = [r["accuracy"] for r in sweep]
    print(f"{name}: {count_params(fitted.model):,} params, accuracy at 0/45/90 deg "
          f"{acc[0]:.4f}/{acc[angles.index(45)] if 45 in angles else float('nan'):.4f}/"
          f"{acc[angles.index(90)]:.4f}, min {min(acc):.4f}", flush=True)
    return {"accuracy": acc, "params": count_params(fitted.model), "epochs": train_config.epochs,
            "lr_decay_epochs": list(train_config.lr_decay_epochs),
            "train_seconds": sum(h["epoch_seconds"] for h in fitted.history),
            "train_accuracy": fitted.history[-1]["train_accuracy"]}


def table(results: dict) -> str:
    """A markdown table: accuracy (%) at the figure's angles, the minimum over all angles."""
    angles = results["angles"]
    cols = [a for a in TABLE_ANGLES if a in angles]
    lines = ["| model | params | " + " | ".join(f"{a} deg" for a in cols) + " | min over angles | train s |",
             "|---|---:|" + "---:|" * (len(cols) + 2)]
    for name, m in results["models"].items():
        acc = m["accuracy"]
        lines.append(f"| {name} | {m['params']:,} | " + " | ".join(f"{100 * acc[angles.index(a)]:.2f}" for a in cols)
                     + f" | {100 * min(acc):.2f} | {m['train_seconds']:.0f} |")
    return "\n".join(lines)


def plot(results: dict, stem: pathlib.Path) -> list[pathlib.Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, m in results["models"].items():
        ax.plot(results["angles"], 100 * np.asarray(m["accuracy"]), marker="o", ms=2.5, label=name)
    ax.set_xlabel("rotation of the test digits (degrees, counter-clockwise)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(range(0, 361, 45))
    ax.set_xlim(0, 360)
    ax.set_ylim(0, 100)
    chance_line(ax, MNIST_CHANCE_PERCENT)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    ax.set_title("Trained on upright MNIST, tested rotated")
    return save_figure(fig, stem, table(results), results)
