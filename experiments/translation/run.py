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

from experiments.common import pyplot, save_figure
from experiments.translation.configs import Config

POOLS = ("no pooling", "max-pool", "max-blur-pool", "APS")
# the protocol line under the paper's table (experiments.reproduce)
TABLE_PROTOCOL = "ours (no published counterpart): the same small network with four downsampling layers."
RESULT_KEYS = ("pools", "conv_shift_error", "models", "shifts", "angles", "scales")


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


def run(config: Config, workdir: pathlib.Path) -> dict:
    import warnings

    from equilib import ExactnessWarning
    from equilib.transforms import Normalize
    from experiments.common import load_mnist

    # plain CNNs on 28x28: exact rot90 equivariance is not the point here
    warnings.filterwarnings("ignore", category=ExactnessWarning)
    data = load_mnist(config.n_train, config.n_test)
    x_train, y_train = data["train"]
    normalize = Normalize.fit(x_train)
    results: dict = {"pools": list(POOLS), "conv_shift_error": _conv_shift_errors(config.seed, data["test"][0][:16])}
    results["models"] = {}
    for i, pool in enumerate(POOLS):
        results["models"][pool] = _pooled_network(pool, config, (normalize(x_train), y_train), data["test"], normalize,
                                                  workdir=workdir / f"model_{i}")
    results["shifts"] = list(range(config.max_shift + 1))
    results["angles"] = config.angles
    results["scales"] = config.scales
    return results


def _conv_shift_errors(seed: int, xs) -> dict:
    """1. A convolution commutes with shifts: the largest relative error over shifts in [-3, 3]^2,
    with circular and with zero padding."""
    import jax
    import jax.numpy as jnp

    from equilib import functional as F
    from equilib.testing import translation_errors

    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.normal(size=(5, 5, 1, 8)).astype(np.float32))
    shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]
    conv_errors = {}
    for padding in ("CIRCULAR", "SAME"):
        f = jax.jit(lambda x, p=padding: F.conv2d(x, w, padding=p))
        conv_errors[padding] = max(translation_errors(f, xs, shifts).values())
    print(f"conv feature maps under circular shifts of the input: max relative error "
          f"{conv_errors['CIRCULAR']:.1e} (circular padding), {conv_errors['SAME']:.1e} (zero padding)", flush=True)
    return conv_errors


def _pooled_network(pool: str, config: Config, train, test, normalize, *, workdir) -> dict:
    """2.-3. Train one pooled network; its features and predictions under shifts, small
    rotations and small scalings of the test digits."""
    from flax import nnx

    from equilib import functional as F
    from equilib.metrics import shift_consistency
    from equilib.training import TrainConfig, count_params, fit, predict

    x_test, y_test = test
    x_norm = normalize(x_test)
    cfg = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                      seed=config.seed)
    fitted = fit(lambda rngs: make_model(pool, config.width, rngs), train, cfg, workdir=workdir)
    model = fitted.model
    feats = nnx.jit(lambda m, x: m.features(x))
    logits = nnx.jit(lambda m, x: m(x))

    def features(x):
        return np.concatenate([np.asarray(feats(model, x[j:j + 500])) for j in range(0, len(x), 500)])

    base = features(x_norm)
    shift_change = [_rel_change(features(np.roll(x_norm, (s, s), axis=(1, 2))), base)
                    for s in range(config.max_shift + 1)]
    pairs = np.random.default_rng(config.seed + 1).integers(-3, 3, size=(config.consistency_pairs, 2, 2))
    consistency = shift_consistency(lambda x: logits(model, x), x_norm, pairs, batch_size=500)
    accuracy = float(np.mean(np.argmax(predict(model, x_norm), -1) == y_test))
    pred0 = np.argmax(predict(model, x_norm), -1)
    sweep = _Sweep(model, features, normalize, x_test, y_test, base, pred0)
    rot = sweep([lambda x, a=a: F.rotate(x, np.deg2rad(a), axes=(1, 2)) for a in config.angles])
    sc = sweep([lambda x, s=s: F.rescale(x, s, method="bilinear", axes=(1, 2)) for s in config.scales])
    print(f"{pool}: accuracy {accuracy:.4f}, shift consistency {consistency:.2f} %, feature change at "
          f"1 px {shift_change[1]:.3f}, agreement at {config.angles[-1]} deg {rot['agreement'][-1]:.3f}", flush=True)
    return {"params": count_params(model), "accuracy": accuracy, "shift_consistency": consistency,
            "shift_feature_change": shift_change, "rotation_feature_change": rot["change"],
            "rotation_agreement": rot["agreement"], "rotation_accuracy": rot["accuracy"],
            "scale_feature_change": sc["change"], "scale_agreement": sc["agreement"], "scale_accuracy": sc["accuracy"],
            "train_seconds": sum(h["epoch_seconds"] for h in fitted.history)}


class _Sweep:
    """Feature change, agreement with the untransformed predictions and accuracy of ``model``
    under each transform of the raw test digits."""

    def __init__(self, model, features, normalize, x_test, y_test, base, pred0):
        self.model, self.features, self.normalize = model, features, normalize
        self.x_test, self.y_test, self.base, self.pred0 = x_test, y_test, base, pred0

    def __call__(self, transforms) -> dict:
        import jax
        import jax.numpy as jnp

        from equilib.training import predict

        out: dict = {"change": [], "agreement": [], "accuracy": []}
        for fn in transforms:
            xt = self.normalize(np.asarray(jax.jit(fn)(jnp.asarray(self.x_test))))
            p = np.argmax(predict(self.model, xt), -1)
            out["change"].append(_rel_change(self.features(xt), self.base))
            out["agreement"].append(float(np.mean(p == self.pred0)))
            out["accuracy"].append(float(np.mean(p == self.y_test)))
        return out


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
    plt = pyplot()
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
    fig.tight_layout()
    # one legend for the three panels (the same networks), below them
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), fontsize=8)
    return save_figure(fig, stem, table(results), results)
