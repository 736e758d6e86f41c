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

import functools
import pathlib

import numpy as np

from experiments.common import legend_outside, pyplot, save_figure
from experiments.equivariance_error.configs import Config

# the protocol line under the paper's table (experiments.reproduce)
TABLE_PROTOCOL = ("ours (no published counterpart); the escnn rows are escnn's layers measured on the same "
            "inputs in its own venv (tools/escnn_reference.py).")
RESULT_KEYS = ("angles", "layers", "escnn", "networks")
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


def _curve(fn, x, circle, output: str) -> list[float]:
    """The relative equivariance error of ``fn`` at every element of ``circle`` (a rotation group)."""
    from equilib.testing import equivariance_errors

    errs = equivariance_errors(fn, x, circle, input="plain", output=output)
    return [errs[g] for g in range(circle.order)]


def _field_norms(y):
    """|field| per pixel: the invariant read-out of irrep fields of sizes 1, 2, 2."""
    import jax.numpy as jnp

    return jnp.stack([jnp.abs(y[..., 0]), jnp.linalg.norm(y[..., 1:3], axis=-1),
                      jnp.linalg.norm(y[..., 3:5], axis=-1)], axis=-1)


def _at_45(errors, angles) -> float:
    return errors[angles.index(45)] if 45 in angles else float("nan")


def run(config: Config, workdir: pathlib.Path) -> dict:
    from equilib.groups import Cyclic
    from equilib.transforms import Normalize
    from experiments.common import load_mnist

    data = load_mnist(config.n_train, config.n_digits)
    x_train, y_train = data["train"]
    normalize = Normalize.fit(x_train)
    digits = data["test"][0]
    # pad 28 -> 33 (odd: a pixel at the rotation centre) with background
    x = np.asarray(normalize(np.pad(digits, ((0, 0), (2, 3), (2, 3), (0, 0)))), np.float32)
    if config.input_blur_sigma > 0:  # band-limited digits: the measurement's own error drops below the layers'
        x = _gaussian_blur(x, config.input_blur_sigma)
    angles = list(range(0, 360, config.angle_step_degrees))
    circle = Cyclic(360 // config.angle_step_degrees)
    seeds = range(config.seed, config.seed + config.layer_seeds)
    results: dict = {"angles": angles, "layers": {}, "escnn": {}, "networks": {}}
    for name, make in _layers().items():
        e = results["layers"][name] = _rms([_curve(make(s), x, circle, "plain") for s in seeds])
        print(f"{name}: error at 45 deg {_at_45(e, angles):.3f}, max {max(e):.3f}", flush=True)
    if FIXTURES.exists():
        results["escnn"] = _escnn_curves(x, circle, config.layer_seeds, angles)
    x28 = np.asarray(normalize(digits), np.float32)
    results["networks"] = _network_curves(config, (normalize(x_train), y_train), x28, circle, angles)
    return results


def _layers() -> dict:
    """``name -> (seed -> jitted layer + per-pixel invariant read-out)``: random 5x5 / 7x7 kernels
    without bias, whose output is a plain map that rotates with the input at every angle."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from equilib import FieldType, nn
    from equilib import functional as F
    from equilib.groups import SO2, Cyclic, Dihedral
    from equilib.reps import irrep, regular_rep, trivial_rep

    def group_layer(group, k):
        def make(seed):
            layer = nn.LiftingConv(1, 4, k, group=group, use_bias=False, rngs=nnx.Rngs(seed))
            return jax.jit(lambda x: F.group_pool(layer(x), "max"))
        return make

    def plain_layer(seed):
        return jax.jit(nn.Conv(1, 4, 5, use_bias=False, rngs=nnx.Rngs(seed)))

    so2 = SO2()
    so2_in = FieldType(so2, [trivial_rep(so2)])
    so2_out = FieldType(so2, [irrep(so2, 0), irrep(so2, 1), irrep(so2, 2)])

    def so2_layer(seed):
        layer = nn.SteerableConv(so2_in, so2_out, 7, use_bias=False, rngs=nnx.Rngs(seed))
        return jax.jit(lambda x: _field_norms(layer(x)))

    def steerable_regular(group, fields, k):
        tin = FieldType(group, [trivial_rep(group)])
        tout = FieldType(group, [regular_rep(group)] * fields)

        def make(seed):
            layer = nn.SteerableConv(tin, tout, k, use_bias=False, rngs=nnx.Rngs(seed))
            return jax.jit(lambda x: layer(x).reshape(x.shape[:3] + (fields, group.order)).max(-1))
        return make

    def isotropic_layer(seed):  # a rotation-invariant filter: the measurement's floor
        del seed
        g = _gaussian_kernel(1.0, 5)
        return jax.jit(lambda x: F.conv2d(x, jnp.asarray(g[:, :, None, None])))

    return {
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


def _escnn_curves(x, circle, layer_seeds: int, angles) -> dict:
    """escnn's layers (their exported filters) with the same read-out as ours."""
    import jax
    import jax.numpy as jnp

    from equilib import functional as F

    fx = np.load(FIXTURES)
    cases = {
        "C8 steerable 5x5 (4 regular fields)": ("c8_triv_reg_k5", lambda y: y.reshape(y.shape[:3] + (4, 8)).max(-1)),
        "C16 steerable 7x7 (2 regular fields)": ("c16_triv_reg_k7", lambda y: y.reshape(y.shape[:3] + (2, 16)).max(-1)),
        "SO(2) steerable 7x7 (irreps 0-2)": ("so2_triv_irreps_k7", _field_norms),
    }
    out = {}
    for name, (key, readout) in cases.items():
        per_seed = []
        for w in fx[f"{key}_seed_filters"][:layer_seeds]:
            wj = jnp.asarray(w)
            f = jax.jit(lambda z, wj=wj, readout=readout: readout(F.conv2d(z, wj)))
            per_seed.append(_curve(f, x, circle, "plain"))
        out[name] = _rms(per_seed)
        print(f"escnn {name}: error at 45 deg {_at_45(out[name], angles):.3f}", flush=True)
    return out


def _network_curves(config: Config, train, x28, circle, angles) -> dict:
    """Networks with invariant logits, at initialisation and after training."""
    from flax import nnx

    from equilib.groups import Cyclic
    from equilib.models import GCNN, P4CNN, P4MCNN, Z2CNN
    from equilib.training import TrainConfig, fit

    nets = {"Z2CNN": lambda r: Z2CNN(rngs=r), "P4CNN": lambda r: P4CNN(rngs=r),
            "P4MCNN": lambda r: P4MCNN(rngs=r), "C8 G-CNN": lambda r: GCNN(Cyclic(8), width=7, rngs=r)}
    out = {}
    for name, model_fn in nets.items():
        init = model_fn(nnx.Rngs(params=config.seed, dropout=config.seed + 1))
        init.eval()
        fwd = nnx.jit(lambda m, z: m(z))
        before = _curve(functools.partial(fwd, init), x28, circle, "invariant")
        cfg = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                          seed=config.seed, checkpoint_every=0)
        trained = fit(model_fn, train, cfg, progress=False).model
        after = _curve(functools.partial(fwd, trained), x28, circle, "invariant")
        out[name] = {"init": before, "trained": after}
        print(f"{name}: logit change at 45 deg {_at_45(before, angles):.3f} (init) "
              f"{_at_45(after, angles):.3f} (trained)", flush=True)
    return out


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
    plt = pyplot()
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
    legend_outside(axes[0], below=True, fontsize=6, ncol=2)
    legend_outside(axes[1], below=True, fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, stem, table(results), results)
