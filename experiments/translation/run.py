"""Translation equivariance from weight sharing, (approximate) invariance from pooling.

1. A convolution's feature maps shift with its input: the relative error of
   ``conv(shift(x))`` vs ``shift(conv(x))`` on MNIST digits, ~1e-7 for circular padding (exact up
   to float rounding) and small but nonzero with zero padding (the border).
2. Four small CNNs that differ only in their downsampling (none, 2x2 max-pool, max-blur-pool,
   APS), circular padding, global average pooling and a linear classifier, trained on MNIST:
   the relative change of the pooled features under shifts of 0..6 px, the shift consistency
   (% of test digits whose class survives two random circular shifts in [-3, 3), the APS protocol).
3. The claim that pooling makes a CNN invariant to small rotations and scalings: the same
   networks' feature change and prediction agreement under rotations by 0..45 degrees and
   scalings by 0.7..1.3.
"""

from __future__ import annotations

import pathlib

import numpy as np

POOLS = ("no pooling", "max-pool", "max-blur-pool", "APS")


def make_model(pool: str, width: int, rngs):
    from flax import nnx

    from equilib import nn

    class Net(nnx.Module):
        def __init__(self):
            self.convs = nnx.List([nn.Conv(1, width, 5, padding="CIRCULAR", rngs=rngs),
                                   nn.Conv(width, 2 * width, 5, padding="CIRCULAR", rngs=rngs),
                                   nn.Conv(2 * width, 2 * width, 3, padding="CIRCULAR", rngs=rngs)])
            self.pools = nnx.List([self._pool(), self._pool()])
            self.head = nnx.Linear(2 * width, 10, rngs=rngs)

        @staticmethod
        def _pool():
            if pool == "no pooling":
                return None
            if pool == "max-pool":
                return nn.MaxPool(2)
            if pool == "max-blur-pool":
                return nn.MaxBlurPool(2, filter_size=3, padding="circular")
            return nn.APSPool(2)

        def features(self, x):
            import jax

            for i, conv in enumerate(self.convs):
                x = jax.nn.relu(conv(x))
                if i < 2 and self.pools[i] is not None:
                    x = self.pools[i](x)
            return x.mean(axis=(1, 2))

        def __call__(self, x):
            return self.head(self.features(x))

    return Net()


def _rel_change(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def run(config: dict, workdir: pathlib.Path) -> dict:
    import warnings

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from equilib import functional as F
    from equilib.metrics import shift_consistency
    from equilib.testing import translation_errors
    from equilib.training import TrainConfig, count_params, fit, predict
    from experiments.common import load_mnist

    from equilib import ExactnessWarning

    # plain CNNs on 28x28: exact rot90 equivariance is not the point here
    warnings.filterwarnings("ignore", category=ExactnessWarning)
    data = load_mnist(config["n_train"], config["n_test"])
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    mean, std = float(x_train.mean()), float(x_train.std())
    results: dict = {"pools": list(POOLS)}

    # 1. a convolution commutes with shifts
    rng = np.random.default_rng(config["seed"])
    w = jnp.asarray(rng.normal(size=(5, 5, 1, 8)).astype(np.float32))
    xs = x_test[:16]
    shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]
    conv_errors = {}
    for padding in ("CIRCULAR", "SAME"):
        f = jax.jit(lambda x, p=padding: F.conv2d(x, w, padding=p))
        errs = translation_errors(f, xs, shifts)
        conv_errors[padding] = max(errs.values())
    results["conv_shift_error"] = conv_errors
    print(f"conv feature maps under circular shifts of the input: max relative error "
          f"{conv_errors['CIRCULAR']:.1e} (circular padding), {conv_errors['SAME']:.1e} (zero padding)", flush=True)

    # 2.-3. pooled networks
    x_norm = (x_test - mean) / std
    results["models"] = {}
    for i, pool in enumerate(POOLS):
        cfg = TrainConfig(epochs=config["epochs"], batch_size=config["batch_size"],
                          learning_rate=config["learning_rate"], seed=config["seed"])
        fitted = fit(lambda rngs: make_model(pool, config["width"], rngs), ((x_train - mean) / std, y_train), cfg,
                     workdir=workdir / f"model_{i}")
        model = fitted.model
        feats = nnx.jit(lambda m, x: m.features(x))
        logits = nnx.jit(lambda m, x: m(x))

        def features(x):
            return np.concatenate([np.asarray(feats(model, x[j:j + 500])) for j in range(0, len(x), 500)])

        base = features(x_norm)
        shift_change = []
        for s in range(config["max_shift"] + 1):
            shift_change.append(_rel_change(features(np.roll(x_norm, (s, s), axis=(1, 2))), base))
        pairs = np.random.default_rng(config["seed"] + 1).integers(-3, 3, size=(config["consistency_pairs"], 2, 2))
        consistency = shift_consistency(lambda x: logits(model, x), x_norm, pairs, batch_size=500)
        accuracy = float(np.mean(np.argmax(predict(model, x_norm), -1) == y_test))
        pred0 = np.argmax(predict(model, x_norm), -1)

        def transformed(fn):
            xt = np.asarray(jax.jit(fn)(jnp.asarray(x_test)))
            xt = (xt - mean) / std
            return features(xt), np.argmax(predict(model, xt), -1)

        rot_change, rot_agree, rot_acc = [], [], []
        for a in config["angles"]:
            f, p = transformed(lambda x, a=a: F.rotate(x, np.deg2rad(a), axes=(1, 2)))
            rot_change.append(_rel_change(f, base))
            rot_agree.append(float(np.mean(p == pred0)))
            rot_acc.append(float(np.mean(p == y_test)))
        sc_change, sc_agree, sc_acc = [], [], []
        for s in config["scales"]:
            f, p = transformed(lambda x, s=s: F.rescale(x, s, method="bilinear", axes=(1, 2)))
            sc_change.append(_rel_change(f, base))
            sc_agree.append(float(np.mean(p == pred0)))
            sc_acc.append(float(np.mean(p == y_test)))
        results["models"][pool] = {
            "params": count_params(model), "accuracy": accuracy, "shift_consistency": consistency,
            "shift_feature_change": shift_change, "rotation_feature_change": rot_change,
            "rotation_agreement": rot_agree, "rotation_accuracy": rot_acc,
            "scale_feature_change": sc_change, "scale_agreement": sc_agree, "scale_accuracy": sc_acc,
            "train_seconds": sum(h["epoch_seconds"] for h in fitted.history)}
        print(f"{pool}: accuracy {accuracy:.4f}, shift consistency {consistency:.2f} %, feature change at "
              f"1 px {shift_change[1]:.3f}, agreement at {config['angles'][-1]} deg {rot_agree[-1]:.3f}", flush=True)
    results["shifts"] = list(range(config["max_shift"] + 1))
    results["angles"] = config["angles"]
    results["scales"] = config["scales"]
    return results


def table(results: dict) -> str:
    angles, scales = results["angles"], results["scales"]
    a_col = max(a for a in angles if a <= 15) if any(a <= 15 for a in angles) else angles[-1]
    lines = [f"| network | accuracy % | shift consistency % | feature change at 1 px | agreement at {a_col} deg % | "
             f"agreement at scale {min(scales)} % |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in results["models"].items():
        lines.append(f"| {name} | {100 * m['accuracy']:.2f} | {m['shift_consistency']:.2f} | "
                     f"{m['shift_feature_change'][1]:.3f} | {100 * m['rotation_agreement'][angles.index(a_col)]:.1f} | "
                     f"{100 * m['scale_agreement'][scales.index(min(scales))]:.1f} |")
    ce = results["conv_shift_error"]
    lines.append("")
    lines.append(f"Convolution under circular shifts: relative error {ce['CIRCULAR']:.1e} with circular padding, "
                 f"{ce['SAME']:.1e} with zero padding.")
    return "\n".join(lines)


def plot(results: dict, stem: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.common import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for name, m in results["models"].items():
        axes[0].plot(results["shifts"], m["shift_feature_change"], marker="o", ms=3,
                     label=f"{name} ({m['shift_consistency']:.1f} % consistent)")
        axes[1].plot(results["angles"], 100 * np.asarray(m["rotation_agreement"]), marker="o", ms=3, label=name)
        axes[2].plot(results["scales"], 100 * np.asarray(m["scale_agreement"]), marker="o", ms=3, label=name)
    axes[0].set(xlabel="diagonal circular shift (px)", ylabel="relative change of pooled features",
                title="Shifts")
    axes[1].set(xlabel="rotation (degrees)", ylabel="same prediction as unrotated (%)", title="Small rotations")
    axes[2].set(xlabel="scale factor", ylabel="same prediction as unscaled (%)", title="Small scalings")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem, table(results))
