"""Where a plain CNN fails under rotation, and how augmentation or group convolutions fix it.

Every model is trained on upright MNIST digits only and tested on the test digits rotated by
0, 5, ..., 355 degrees (bilinear, zero fill, about the centre). Models (Cohen & Welling 2016
architectures, ``equilib.models``): Z2CNN (plain), Z2CNN trained with random rotations
U[0, 360), P4CNN (C4: exactly invariant to quarter turns), and a C8 G-CNN (band-limited kernels:
exact at quarter turns, approximately invariant at 45 degrees).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

MODELS = ("Z2CNN", "Z2CNN + rotation augmentation", "P4CNN", "C8 G-CNN")


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


def run(config: dict, workdir: pathlib.Path) -> dict:
    import jax.numpy as jnp

    from equilib.functional import rotate
    from equilib.training import TrainConfig, count_params, evaluate, fit
    from equilib.transforms import RandomRotation, apply_batch
    from experiments.common import load_mnist

    data = load_mnist(config["n_train"], config["n_test"])
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    # one global mean/std over all pixels keeps the normalisation rotation-invariant
    mean, std = float(x_train.mean()), float(x_train.std())

    def normalize(x):
        return (x - mean) / std

    rotation = RandomRotation()

    def augment(key, x):  # rotate the raw digits (zero fill = background), then normalise
        return normalize(apply_batch(rotation, key, x * std + mean))

    angles = list(range(0, 360, config["angle_step_degrees"]))
    results = {"angles": angles, "models": {}}
    for name, epochs in config["models"].items():
        cfg = TrainConfig(epochs=epochs, batch_size=config["batch_size"], learning_rate=config["learning_rate"],
                          seed=config["seed"])
        fitted = fit(_model_fn(name), (normalize(x_train), y_train), cfg,
                     workdir=workdir / name.replace(" ", "_").replace("+", "plus"),
                     augment=augment if "augmentation" in name else None)
        sweep = evaluate(fitted.model, x_test, y_test, batch_size=1000,
                         transform=lambda x, a: normalize(rotate(x, a * (math.pi / 180), axes=(1, 2))),
                         params=[jnp.float32(a) for a in angles])
        acc = [r["accuracy"] for r in sweep]
        results["models"][name] = {
            "accuracy": acc, "params": count_params(fitted.model), "epochs": epochs,
            "train_seconds": sum(h["epoch_seconds"] for h in fitted.history),
            "train_accuracy": fitted.history[-1]["train_accuracy"],
        }
        print(f"{name}: {count_params(fitted.model):,} params, accuracy at 0/45/90 deg "
              f"{acc[0]:.4f}/{acc[angles.index(45)] if 45 in angles else float('nan'):.4f}/"
              f"{acc[angles.index(90)]:.4f}, min {min(acc):.4f}", flush=True)
    return results


def table(results: dict) -> str:
    """A markdown table: accuracy (%) at selected angles, the minimum over all angles."""
    angles = results["angles"]
    cols = [a for a in (0, 45, 90, 135, 180, 270) if a in angles]
    lines = ["| model | params | " + " | ".join(f"{a} deg" for a in cols) + " | min over angles | train s |",
             "|---|---:|" + "---:|" * (len(cols) + 2)]
    for name, m in results["models"].items():
        acc = m["accuracy"]
        lines.append(f"| {name} | {m['params']:,} | " + " | ".join(f"{100 * acc[angles.index(a)]:.2f}" for a in cols)
                     + f" | {100 * min(acc):.2f} | {m['train_seconds']:.0f} |")
    return "\n".join(lines)


def plot(results: dict, stem: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.common import save_figure

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, m in results["models"].items():
        ax.plot(results["angles"], 100 * np.asarray(m["accuracy"]), marker="o", ms=2.5, label=name)
    ax.set_xlabel("rotation of the test digits (degrees, counter-clockwise)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(range(0, 361, 45))
    ax.set_xlim(0, 360)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Trained on upright MNIST, tested rotated")
    return save_figure(fig, stem, table(results))
