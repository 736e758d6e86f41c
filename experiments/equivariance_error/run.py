"""Relative equivariance error against the rotation angle, for layers and whole networks.

Measured with :mod:`equilib.testing` on MNIST test digits, low-pass filtered for the layer curves
(Gaussian of ``input_blur_sigma`` pixels; raw 28x28 digits have edges so sharp that bilinear
rotation alone gives every layer, even an isotropic filter, an error of ~0.12 at 5 degrees, which
would hide the differences between layers): for every angle 0, 5, ..., 355
degrees (the elements of C72) the input is rotated (exactly for quarter turns, bilinearly
otherwise, inside a central disk) and the error is ``|f(g.x) - g.f(x)| / |g.f(x)|``, for spatial
outputs inside a central disk of 0.6 of the radius.

* Layers (random 5x5 / 7x7 kernels, no bias, RMS over ``layer_seeds`` initialisations), each
  followed by an invariant read-out per pixel so that the output is a plain map that rotates with
  the input at every angle: plain conv; lifting conv over C4, D4, C8, C16 + max over the group;
  SO(2)-steerable conv to the irreps of frequency <= 2 + the norm of each field; and escnn's own
  C8, C16 and SO(2) layers (their exported filters, ``tests/fixtures/escnn/layers.npz``) next to
  ours with the same field types.
* Networks (invariant logits): Z2CNN, P4CNN, P4MCNN and the C8 G-CNN of ``equilib.models``, at
  initialisation and after ``epochs`` of training on ``n_train`` upright digits.
"""

from __future__ import annotations

import pathlib

import numpy as np

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "escnn" / "layers.npz"


def _gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """``(N, H, W, 1)`` images smoothed by a Gaussian of ``sigma`` pixels (zero padding)."""
    from equilib import functional as F

    size = 2 * int(np.ceil(3 * sigma)) + 1
    return np.asarray(F.conv2d(x, _gaussian_kernel(sigma, size)[:, :, None, None], impl="xla"))


def _rms(errors_per_seed):
    return np.sqrt(np.mean(np.square(np.asarray(errors_per_seed)), axis=0)).tolist()


def run(config: dict, workdir: pathlib.Path) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from equilib import FieldType, nn
    from equilib import functional as F
    from equilib.groups import SO2, Cyclic, Dihedral
    from equilib.models import GCNN, P4CNN, P4MCNN, Z2CNN
    from equilib.testing import equivariance_errors
    from equilib.training import TrainConfig, fit
    from experiments.common import load_mnist

    data = load_mnist(config["n_train"], config["n_digits"])
    x_train, y_train = data["train"]
    mean, std = float(x_train.mean()), float(x_train.std())
    digits = data["test"][0]
    # pad 28 -> 33 (odd: a pixel at the rotation centre) with background
    digits33 = np.pad(digits, ((0, 0), (2, 3), (2, 3), (0, 0)))
    step = config["angle_step_degrees"]
    angles = list(range(0, 360, step))
    circle = Cyclic(360 // step)
    seeds = range(config["seed"], config["seed"] + config["layer_seeds"])

    def curve(fn, x, output):
        errs = equivariance_errors(fn, x, circle, input="plain", output=output)
        return [errs[g] for g in range(circle.order)]

    results: dict = {"angles": angles, "layers": {}, "escnn": {}, "networks": {}}

    # --- layers: conv + per-pixel invariant read-out ------------------------------------------
    def group_layer(group, k):
        def make(seed):
            layer = nn.LiftingConv(1, 4, k, group=group, use_bias=False, rngs=nnx.Rngs(seed))
            return jax.jit(lambda x: F.group_pool(layer(x), "max"))
        return make

    def plain_layer(seed):
        layer = nn.Conv(1, 4, 5, use_bias=False, rngs=nnx.Rngs(seed))
        return jax.jit(layer)

    so2 = SO2()
    so2_in = FieldType(so2, [so2.trivial_rep])
    so2_out = FieldType(so2, [so2.irrep(0), so2.irrep(1), so2.irrep(2)])

    def field_norms(y):  # |field| per pixel: invariant read-out of irrep fields (sizes 1, 2, 2)
        return jnp.stack([jnp.abs(y[..., 0]), jnp.linalg.norm(y[..., 1:3], axis=-1),
                          jnp.linalg.norm(y[..., 3:5], axis=-1)], axis=-1)

    def so2_layer(seed):
        layer = nn.SteerableConv(so2_in, so2_out, 7, use_bias=False, rngs=nnx.Rngs(seed))
        return jax.jit(lambda x: field_norms(layer(x)))

    def steerable_regular(group, fields, k):
        tin = FieldType(group, [group.trivial_rep])
        tout = FieldType(group, [group.regular_rep] * fields)

        def make(seed):
            layer = nn.SteerableConv(tin, tout, k, use_bias=False, rngs=nnx.Rngs(seed))
            return jax.jit(lambda x: layer(x).reshape(x.shape[:3] + (fields, group.order)).max(-1))
        return make

    def isotropic_layer(seed):  # a rotation-invariant filter: the measurement's floor
        del seed
        g = _gaussian_kernel(1.0, 5)
        return jax.jit(lambda x: F.conv2d(x, jnp.asarray(g[:, :, None, None])))

    layers = {
        "isotropic Gaussian 5x5 (equivariant reference)": isotropic_layer,
        "plain conv 5x5": plain_layer,
        "C4 lifting conv 5x5": group_layer(Cyclic(4), 5),
        "D4 lifting conv 5x5": group_layer(Dihedral(4), 5),
        "C8 lifting conv 5x5": group_layer(Cyclic(8), 5),
        "C16 lifting conv 5x5": group_layer(Cyclic(16), 5),
        "C8 steerable 5x5 (4 regular fields)": steerable_regular(Cyclic(8), 4, 5),
        "C16 steerable 7x7 (2 regular fields)": steerable_regular(Cyclic(16), 2, 7),
        "SO(2) steerable 7x7 (irreps 0-2)": so2_layer,
    }
    x = np.asarray((digits33 - mean) / std, np.float32)
    sigma = config.get("input_blur_sigma", 0.0)
    if sigma > 0:  # band-limit the digits: the measurement's own interpolation error drops below the layers'
        x = _gaussian_blur(x, sigma)
    for name, make in layers.items():
        results["layers"][name] = _rms([curve(make(s), x, "plain") for s in seeds])
        e = results["layers"][name]
        print(f"{name}: error at 45 deg {e[angles.index(45)] if 45 in angles else float('nan'):.3f}, "
              f"max {max(e):.3f}", flush=True)

    # --- escnn's layers (exported filters) with the same read-out ------------------------------
    if FIXTURES.exists():
        fx = np.load(FIXTURES)
        escnn_cases = {
            "C8 steerable 5x5 (4 regular fields)": ("c8_triv_reg_k5", lambda y: y.reshape(y.shape[:3] + (4, 8)).max(-1)),
            "C16 steerable 7x7 (2 regular fields)": ("c16_triv_reg_k7", lambda y: y.reshape(y.shape[:3] + (2, 16)).max(-1)),
            "SO(2) steerable 7x7 (irreps 0-2)": ("so2_triv_irreps_k7", field_norms),
        }
        for name, (key, readout) in escnn_cases.items():
            filters = fx[f"{key}_seed_filters"][: config["layer_seeds"]]
            per_seed = []
            for w in filters:
                wj = jnp.asarray(w)
                f = jax.jit(lambda z, wj=wj, readout=readout: readout(F.conv2d(z, wj)))
                per_seed.append(curve(f, x, "plain"))
            results["escnn"][name] = _rms(per_seed)
            e = results["escnn"][name]
            print(f"escnn {name}: error at 45 deg {e[angles.index(45)] if 45 in angles else float('nan'):.3f}",
                  flush=True)

    # --- networks: invariant logits, before and after training ----------------------------------
    nets = {"Z2CNN": lambda r: Z2CNN(rngs=r), "P4CNN": lambda r: P4CNN(rngs=r),
            "P4MCNN": lambda r: P4MCNN(rngs=r), "C8 G-CNN": lambda r: GCNN(Cyclic(8), width=7, rngs=r)}
    x28 = np.asarray((digits - mean) / std, np.float32)
    for i, (name, model_fn) in enumerate(nets.items()):
        init = model_fn(nnx.Rngs(params=config["seed"], dropout=config["seed"] + 1))
        init.eval()
        fwd = nnx.jit(lambda m, z: m(z))
        before = curve(lambda z: fwd(init, z), x28, "invariant")
        cfg = TrainConfig(epochs=config["epochs"], batch_size=config["batch_size"],
                          learning_rate=config["learning_rate"], seed=config["seed"], checkpoint_every=0)
        trained = fit(model_fn, ((x_train - mean) / std, y_train), cfg, progress=False).model
        after = curve(lambda z: fwd(trained, z), x28, "invariant")
        results["networks"][name] = {"init": before, "trained": after}
        print(f"{name}: logit change at 45 deg {before[angles.index(45)] if 45 in angles else float('nan'):.3f} "
              f"(init) {after[angles.index(45)] if 45 in angles else float('nan'):.3f} (trained)", flush=True)
    return results


def table(results: dict) -> str:
    angles = results["angles"]
    cols = [a for a in (5, 22, 30, 45, 90) if a in angles] or angles[:3]
    head = "| layer / network | " + " | ".join(f"{a} deg" for a in cols) + " | max |"
    lines = [head, "|---|" + "---:|" * (len(cols) + 1)]
    for name, e in results["layers"].items():
        lines.append(f"| {name} | " + " | ".join(f"{e[angles.index(a)]:.3f}" for a in cols) + f" | {max(e):.3f} |")
    for name, e in results["escnn"].items():
        lines.append(f"| escnn: {name} | " + " | ".join(f"{e[angles.index(a)]:.3f}" for a in cols)
                     + f" | {max(e):.3f} |")
    for name, m in results["networks"].items():
        for phase in ("init", "trained"):
            e = m[phase]
            lines.append(f"| {name} ({phase}) | " + " | ".join(f"{e[angles.index(a)]:.3f}" for a in cols)
                         + f" | {max(e):.3f} |")
    return "\n".join(lines)


def plot(results: dict, stem: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.common import save_figure

    angles = results["angles"]
    floor = 1e-8  # exact elements sit at float rounding; show them on the log axis
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    for name, e in results["layers"].items():
        axes[0].plot(angles, np.maximum(e, floor), lw=1.2, label=name)
    for name, e in results["escnn"].items():
        axes[0].plot(angles, np.maximum(e, floor), ls="--", lw=1, label=f"escnn: {name}")
    for name, m in results["networks"].items():
        axes[1].plot(angles, np.maximum(m["init"], floor), lw=1.2, label=name)
        axes[2].plot(angles, np.maximum(m["trained"], floor), lw=1.2, label=name)
    titles = ("Layers (+ invariant read-out)", "Networks at initialisation", "Networks after training")
    for ax, title in zip(axes, titles):
        ax.set_yscale("log")
        ax.set_xticks(range(0, 361, 90))
        ax.set_xlim(0, 360)
        ax.set_xlabel("rotation (degrees)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("relative equivariance error")
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem, table(results))
