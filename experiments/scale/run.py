"""MNIST-scale (the SESN recipe): a plain CNN, the same CNN with scale augmentation, and a
scale-equivariant SESN-style network; test error per realisation next to the published table,
and accuracy against the scale of the test digits.

Data: :func:`equilib.data.mnist_scale` regenerates one *realisation* per seed (10,000 train /
2,000 val / 50,000 test digits, each shrunk about the centre by a factor ~ U[0.3, 1], bicubic).
Every model is trained on (the first ``n_train`` of) the train split of each realisation (Adam,
step decay, batch norm), monitored on its val split, and its error is measured after the last
epoch on (the first ``n_test`` of) the test split. Parameters are initialised and batches drawn
from ``seed + realisation``.

Models (all defined here; ``configs.py`` sets their sizes):

* **CNN**: the shape of the SESN paper's baseline, narrower: three 7x7 convolutions (SAME),
  batch norm, ReLU, a 2x2 max-pool after the first two, global max-pool over space, a linear
  classifier (optionally a hidden layer with dropout, as SESN's FC 256 + dropout 0.7).
* **CNN + scale augmentation**: the same network; each training digit is rescaled again on the
  fly by a factor log-uniform in [``min_factor``, ``max_factor``] (bicubic, zero fill).
* **SESN**: :class:`equilib.nn.ScaleLiftingConv` (28x28) -> 2x2 max-pool ->
  :class:`equilib.nn.ScaleConv` (14x14) -> 2x2 max-pool -> :class:`equilib.nn.ScaleConv1x1`
  (7x7), on scale maps ``(B, H, W, C, S)`` with batch norm per channel (shared over space and
  scales) and ReLU -> :class:`equilib.nn.ScalePool` (max over scales) -> global max-pool over
  space -> the same head. Filters are combinations of a Hermite-Gaussian basis dilated to every
  scale (envelope width ``sigma * scale`` px, the smallest kernel holding it at the largest
  scale).

Scale sweep: the *upright* MNIST digits behind the realisation's test split (never seen in
training, in any size) rescaled by each factor of ``sweep_factors`` (bicubic about the centre,
zero fill; < 1 shrinks, > 1 enlarges and crops at the 28x28 border), accuracy per factor.
Training covers factors 0.3..1 (wider for the augmented CNN); above 1 every model extrapolates.
"""

from __future__ import annotations

import math
import os
import pathlib
import time

import numpy as np

from experiments.common import (
    MNIST_CHANCE_PERCENT,
    as_float_images,
    chance_line,
    legend_outside,
    mean_std,
    pyplot,
    save_figure,
)
from experiments.scale.configs import FULL, MODELS, Config

# the protocol line under the paper's table (experiments.reproduce)
TABLE_PROTOCOL = "the SESN paper's MNIST-scale, shortened as the column \"protocol\" says for each row."
RESULT_KEYS = ("sweep_factors", "realisations", "published", "published_note", "models")

# Published MNIST-scale test errors (%) of the SESN paper's Table 2 (Sosnovik et al. 2020), mean
# over 6 realisations, recalled with low confidence: check them against the paper before
# publishing. Their CNN has 494,549 parameters.
PUBLISHED = {"CNN": 2.56, "CNN + scale augmentation": None, "SESN": 1.68}
PUBLISHED_NOTE = ("SESN paper (Sosnovik et al. 2020), MNIST-scale 28x28, mean of 6 realisations, 60 epochs, "
                  "best-val checkpoint, CNN of 494,549 parameters; values recalled (low confidence), to be verified")


# --- models ------------------------------------------------------------------------------------
def _head(in_features: int, hidden: int, dropout: float, rngs, num_classes: int = 10):
    from flax import nnx

    class Head(nnx.Module):
        """Linear classifier, or Linear -> ReLU -> Dropout -> Linear when ``hidden`` > 0."""

        def __init__(self):
            self.hidden = nnx.Linear(in_features, hidden, rngs=rngs) if hidden else None
            self.dropout = nnx.Dropout(dropout, rngs=rngs) if hidden and dropout else None
            self.out = nnx.Linear(hidden or in_features, num_classes, rngs=rngs)

        def __call__(self, x):
            import jax

            if self.hidden is not None:
                x = jax.nn.relu(self.hidden(x))
                if self.dropout is not None:
                    x = self.dropout(x)
            return self.out(x)

    return Head()


def make_cnn(channels, kernel_size: int, rngs, hidden: int = 0, dropout: float = 0.0):
    from flax import nnx

    from equilib import nn
    from equilib.functional import max_pool

    class CNN(nnx.Module):
        """Conv-BN-ReLU x 3 (2x2 max-pool after the first two), global max-pool, head."""

        def __init__(self):
            widths = [1] + list(channels)
            self.convs = nnx.List([nn.Conv(widths[i], widths[i + 1], kernel_size, rngs=rngs) for i in range(3)])
            self.bns = nnx.List([nnx.BatchNorm(widths[i + 1], momentum=0.9, rngs=rngs) for i in range(3)])
            self.head = _head(widths[-1], hidden, dropout, rngs)

        def __call__(self, x):
            import jax

            for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
                x = jax.nn.relu(bn(conv(x)))
                if i < 2:
                    x = max_pool(x)
            return self.head(x.max(axis=(1, 2)))

    return CNN()


def min_kernel_size(sigma: float, scales) -> int:
    """The smallest odd kernel holding the basis at the largest scale (support radius 2.5 envelope
    widths, ``sigma * scales[-1]``)."""
    return 2 * math.ceil(2.5 * sigma * max(scales) - 1e-9) + 1


def make_sesn(channels, scales, sigma: float, max_order: int, scale_size: int, rngs, hidden: int = 0,
              dropout: float = 0.0):
    from flax import nnx

    from equilib import nn
    from equilib.functional import max_pool

    class ScaleBatchNorm(nnx.Module):
        """Batch norm of a scale map (B, H, W, C, S): statistics and affine per channel, shared over
        space and scales (SESN's BatchNorm3d), so it commutes with the scale action."""

        def __init__(self, c):
            self.bn = nnx.BatchNorm(c, momentum=0.9, rngs=rngs)

        def __call__(self, x):
            return self.bn(x.swapaxes(-1, -2)).swapaxes(-1, -2)

    class SESN(nnx.Module):
        """ScaleLiftingConv (28x28) -> 2x2 max-pool -> ScaleConv (14x14) -> 2x2 max-pool ->
        ScaleConv1x1 (7x7), each followed by batch norm and ReLU -> ScalePool (max over scales) ->
        global max-pool over space -> head. Both spatial layers: the smallest kernel holding the
        basis at the largest scale."""

        def __init__(self):
            c, sc = list(channels), tuple(scales)
            k = min_kernel_size(sigma, sc)
            kw = dict(scales=sc, sigma=sigma, max_order=max_order, rngs=rngs)
            self.lift = nn.ScaleLiftingConv(1, c[0], k, **kw)
            self.conv = nn.ScaleConv(c[0], c[1], k, scale_size=scale_size, **kw)
            self.mix = nn.ScaleConv1x1(c[1], c[2], rngs=rngs)
            self.bns = nnx.List([ScaleBatchNorm(c[i]) for i in range(3)])
            self.pool = nn.ScalePool("max")
            self.head = _head(c[-1], hidden, dropout, rngs)

        @staticmethod
        def _max_pool(x):
            """2x2 / stride 2 max-pool of a scale map (B, H, W, C, S), as the plain map (B, H, W, C*S):
            the same result as pooling the 5-D map, and the XLA program the published numbers came
            from (pooling the 5-D map fuses the batch norm before it differently; float rounding
            that Adam amplifies into other smoke numbers)."""
            b, h, w = x.shape[:3]
            return max_pool(x.reshape(b, h, w, -1)).reshape((b, h // 2, w // 2) + x.shape[3:])

        def __call__(self, x):
            import jax

            x = self._max_pool(jax.nn.relu(self.bns[0](self.lift(x))))
            x = self._max_pool(jax.nn.relu(self.bns[1](self.conv(x))))
            x = jax.nn.relu(self.bns[2](self.mix(x)))
            return self.head(self.pool(x).max(axis=(1, 2)))

    return SESN()


def model_fn(name: str, config: Config):
    """``rngs -> model`` for one of :data:`MODELS` with the sizes of ``config``."""
    if name in ("CNN", "CNN + scale augmentation"):
        c = config.cnn
        return lambda rngs: make_cnn(c.channels, c.kernel_size, rngs, c.hidden, c.dropout)
    if name == "SESN":
        s = config.sesn
        return lambda rngs: make_sesn(s.channels, s.scales, s.sigma, s.max_order, s.scale_size, rngs, s.hidden,
                                      s.dropout)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


# --- data --------------------------------------------------------------------------------------
def upright_test_digits(seed: int, n: int, test_labels: np.ndarray):
    """The upright MNIST digits behind the first ``n`` digits of ``mnist_scale(seed)``'s test split,
    float32 in [0, 1] ``(n, 28, 28, 1)``, and their labels.

    ``mnist_scale`` does not return its source indices, so this replays its split (the recipe's
    seeded ``stratified_split`` of the 70,000-digit pool) and checks every label against the
    realisation's test labels: a change of the recipe raises instead of silently mixing
    training digits into the sweep."""
    from equilib.data import mnist, stratified_split
    from equilib.data._derived import RECIPES, SIZES

    xtr, ytr = mnist("train")
    xte, yte = mnist("test")
    pool_x, pool_y = np.concatenate([xtr, xte]), np.concatenate([ytr, yte])
    rng = np.random.default_rng(np.random.SeedSequence([seed, RECIPES["mnist_scale"]["stream"]]))
    _, test = stratified_split(rng, pool_y, [SIZES["train"] + SIZES["val"], SIZES["test"]])
    if not np.array_equal(pool_y[test].astype(np.int32), np.asarray(test_labels, np.int32)):
        raise RuntimeError("could not replay mnist_scale's test split (did its recipe change?): the labels differ")
    return pool_x[test[:n]].astype(np.float32)[..., None] / 255.0, pool_y[test[:n]].astype(np.int32)


def decay_epochs(epochs: int, fractions) -> tuple[int, ...]:
    """The epochs after which the learning rate drops (x0.1): ``round(f * epochs)`` for each
    fraction, kept within 1..epochs-1. SESN: 60 epochs, fractions (1/3, 2/3) -> (20, 40)."""
    return tuple(sorted({e for e in (round(f * epochs) for f in fractions) if 1 <= e < epochs}))


# --- experiment --------------------------------------------------------------------------------
def run(config: Config, workdir: pathlib.Path) -> dict:
    old_impl = os.environ.get("EQUILIB_CONV_IMPL")
    if config.conv_impl:  # read by equilib.functional.conv2d when traced; None = library default
        os.environ["EQUILIB_CONV_IMPL"] = config.conv_impl
    try:
        return _run(config, workdir)
    finally:
        if old_impl is None:
            os.environ.pop("EQUILIB_CONV_IMPL", None)
        else:
            os.environ["EQUILIB_CONV_IMPL"] = old_impl


def _run(config: Config, workdir: pathlib.Path) -> dict:
    import warnings

    from equilib import ExactnessWarning

    warnings.filterwarnings("ignore", category=ExactnessWarning)  # rot90 exactness is not the point here
    results: dict = {"sweep_factors": [float(f) for f in config.sweep_factors],
                     "realisations": [int(r) for r in config.realisations],
                     "published": PUBLISHED, "published_note": PUBLISHED_NOTE, "models": {}}
    for name, spec in config.models.items():
        results["models"][name] = {"epochs": spec.epochs,
                                   "lr_decay_epochs": list(decay_epochs(spec.epochs, config.lr_decay_at)),
                                   "test_error": [], "val_error": [], "train_accuracy": [], "sweep_accuracy": [],
                                   "epoch_seconds": [], "train_seconds": [], "eval_seconds": []}
    for r in results["realisations"]:
        data = _realisation(r, config)
        for name, spec in config.models.items():
            _train_and_test(results["models"][name], name, spec, r, config, data,
                            factors=results["sweep_factors"], workdir=workdir)
    return results


def _realisation(r: int, config: Config) -> dict:
    """The arrays of realisation ``r`` (train / val / test, the upright sweep digits, raw in
    [0, 1]), its :class:`~equilib.transforms.Normalize` and the scale augmentation."""
    from equilib.data import mnist_scale
    from equilib.transforms import Normalize, RandomScale, normalized_augment

    data = mnist_scale(r)
    out = {split: (as_float_images(data[split][0][:n]), data[split][1][:n])
           for split, n in (("train", config.n_train), ("val", config.n_val), ("test", config.n_test))}
    out["upright"] = upright_test_digits(r, config.n_sweep, data["test"][1])
    # one global mean / std: a per-pixel one would not commute with rescaling
    out["normalize"] = normalize = Normalize.fit(out["train"][0])
    aug = config.augmentation
    scaling = RandomScale(aug.min_factor, aug.max_factor, method="bicubic", log_uniform=aug.log_uniform)
    out["augment"] = normalized_augment(scaling, normalize)  # rescale the raw digits (zero fill = background)
    return out


def _train_and_test(m: dict, name: str, spec, r: int, config: Config, data: dict, *, factors, workdir) -> None:
    """Train one model on realisation ``r``; add its test error and scale sweep to ``m``."""
    import jax.numpy as jnp

    from equilib.functional import rescale
    from equilib.training import count_params, evaluate, fit

    normalize = data["normalize"]
    x_test, y_test = data["test"]
    x_up, y_up = data["upright"]
    n_val = config.n_val
    cfg = spec.train_config(config, lr_decay_epochs=tuple(m["lr_decay_epochs"]), seed=config.seed + r)
    fitted = fit(model_fn(name, config), (normalize(data["train"][0]), data["train"][1]), cfg,
                 workdir=workdir / f"r{r}_{name.replace(' + ', '_').replace(' ', '_')}",
                 val=(normalize(data["val"][0]), data["val"][1]) if n_val else None,
                 augment=data["augment"] if "augmentation" in name else None)
    t0 = time.perf_counter()
    # batches of at most 1,000 (a smaller set is not padded up to 1,000)
    test = evaluate(fitted.model, normalize(x_test), y_test, batch_size=min(1000, config.n_test))
    sweep = evaluate(fitted.model, x_up, y_up, batch_size=min(1000, len(x_up)),
                     transform=lambda x, f: normalize(rescale(x, f, method="bicubic", axes=(1, 2))),
                     params=[jnp.float32(f) for f in factors])
    m["eval_seconds"].append(time.perf_counter() - t0)
    m["params"] = count_params(fitted.model)
    m["test_error"].append(100.0 * (1.0 - test["accuracy"]))
    m["val_error"].append(100.0 * (1.0 - fitted.history[-1]["val_accuracy"]) if n_val else None)
    if n_val:
        curve = [100.0 * (1.0 - h["val_accuracy"]) for h in fitted.history]
        m.setdefault("val_curve", []).append(curve)
        m.setdefault("val_trend_last_20pct", []).append(late_trend(curve))
    m["train_accuracy"].append(fitted.history[-1]["train_accuracy"])
    m["sweep_accuracy"].append([p["accuracy"] for p in sweep])
    m["epoch_seconds"].append([h["epoch_seconds"] for h in fitted.history])
    m["train_seconds"].append(sum(h["epoch_seconds"] for h in fitted.history))
    acc = m["sweep_accuracy"][-1]
    val = f" (val {m['val_error'][-1]:.2f} %)" if n_val else ""
    print(f"realisation {r}, {name}: {m['params']:,} params, test error {m['test_error'][-1]:.2f} %{val}, "
          f"sweep accuracy {100 * min(acc):.1f}..{100 * max(acc):.1f} %, "
          f"train {m['train_seconds'][-1]:.0f} s, eval {m['eval_seconds'][-1]:.0f} s", flush=True)


def late_trend(curve) -> float:
    """The change of the validation error (points) over the last 20 % of the epochs, from a
    least-squares line through them (at least 2 epochs): a converged run's is near 0; a run still
    improving has a clearly negative one. Noise alone moves a 2,000-digit validation error by
    ~0.4 points at 3 % error, so a line, not the end points."""
    n = max(2, int(round(0.2 * len(curve))))
    if len(curve) < 2:
        return float("nan")
    y = np.asarray(curve[-n:], dtype=np.float64)
    slope = np.polyfit(np.arange(len(y), dtype=np.float64), y, 1)[0]
    return float(slope * (len(y) - 1))


# --- outputs -----------------------------------------------------------------------------------
def _mean_std(values) -> str:
    mu, sd = mean_std(values)
    return f"{mu:.2f} ± {sd:.2f}" if len(values) > 1 else f"{mu:.2f}"


def _sweep_cols(factors):
    return [f for f in (0.3, 0.5, 1.0, 1.5) if any(abs(f - g) < 1e-6 for g in factors)]


# the published model sizes (SESN paper; benchmarks.md): the CNN's is computed from its widths
PUBLISHED_PARAMS = {"CNN": 494_549, "CNN + scale augmentation": 494_549}


def row_protocol(name: str, m: dict, cfg: dict) -> str:
    """``shortened: <what differs from the SESN paper's protocol>`` for one model's row (the
    ``full`` config's remaining differences, such as the last-epoch rather than best-validation
    model, hold for every row and are listed under the table)."""
    diffs = []
    if m["epochs"] < FULL.models[name].epochs:
        diffs.append(f"{m['epochs']} of {FULL.models[name].epochs} epochs")
    if cfg and len(cfg["realisations"]) < len(FULL.realisations):
        diffs.append(f"{len(cfg['realisations'])} of {len(FULL.realisations)} realisations")
    if cfg and cfg.get("n_train", FULL.n_train) < FULL.n_train:
        diffs.append(f"{cfg['n_train']:,} of {FULL.n_train:,} training digits")
    if cfg and cfg["n_test"] < FULL.n_test:
        diffs.append(f"{cfg['n_test']:,} of {FULL.n_test:,} test digits")
    pub = PUBLISHED_PARAMS.get(name)
    if pub and m["params"] < pub / 2:
        diffs.append(f"{m['params']:,} of {pub:,} params")
    elif name == "SESN" and cfg and tuple(cfg["sesn"]["channels"]) != FULL.sesn.channels:
        diffs.append(f"widths {'/'.join(map(str, cfg['sesn']['channels']))} "
                     f"(full config {'/'.join(map(str, FULL.sesn.channels))})")
    if name not in PUBLISHED_PARAMS and name != "SESN":
        return "no published row" + (f"; {', '.join(diffs)}" if diffs else "")
    return "shortened: " + ", ".join(diffs) if diffs else "published protocol (with the notes below)"


def table(results: dict) -> str:
    """Markdown: test error (%) per realisation and mean ± std next to the published numbers, the
    sweep accuracy at a few test-time scales, and each row's protocol (what differs from the
    paper's); then the protocol notes and the command with its wall time."""
    cfg = results.get("config", {})
    factors = results["sweep_factors"]
    cols = _sweep_cols(factors)
    trends = any(m.get("val_trend_last_20pct") for m in results["models"].values())
    lines = ["| model | params | epochs | test error % per realisation | mean ± std | SESN paper % | "
             + " | ".join(f"acc. at x{f:g} %" for f in cols) + (" |" if cols else "|")
             + (" val. error trend, last 20 % of epochs |" if trends else "") + " train s | protocol |",
             "|---|---:|---:|---|---:|---:|" + "---:|" * len(cols) + ("---|" if trends else "") + "---:|---|"]
    for name, m in results["models"].items():
        pub = results["published"].get(name)
        acc = np.asarray(m["sweep_accuracy"]).mean(0)
        idx = [min(range(len(factors)), key=lambda i: abs(factors[i] - f)) for f in cols]
        trend = ", ".join(f"{t:+.2f}" for t in m.get("val_trend_last_20pct", []))
        lines.append(f"| {name} | {m['params']:,} | {m['epochs']} | {', '.join(f'{e:.2f}' for e in m['test_error'])} | "
                     f"{_mean_std(m['test_error'])} | {'—' if pub is None else f'{pub:.2f}'} | "
                     + "".join(f"{100 * acc[i]:.1f} | " for i in idx) + (f"{trend or '—'} | " if trends else "")
                     + f"{np.mean(m['train_seconds']):.0f} | {row_protocol(name, m, cfg)} |")
    seeds = ", ".join(str(r) for r in results["realisations"])
    decays = sorted({tuple(m.get("lr_decay_epochs", ())) for m in results["models"].values()})
    decay = "; ".join(", ".join(str(e) for e in d) or "none" for d in decays)
    ours = (f"Ours: realisations (seeds) {seeds}; {cfg['n_train']:,} of the 10,000 training digits; error on "
            f"{cfg['n_test']:,} of the 50,000 test digits after the last epoch (no best-val checkpoint); Adam, "
            f"lr {cfg['learning_rate']:g}, x0.1 after epoch(s) {decay}; batch {cfg['batch_size']}; "
            f"acc. at xf: {cfg['n_sweep']:,} upright test digits rescaled by f (training: 0.3..1); "
            f"train s: mean per realisation." if cfg else "")
    lines += ["", ours, "", f"Published: {results['published_note']}."]
    return "\n".join(lines)


def plot(results: dict, stem: pathlib.Path) -> list[pathlib.Path]:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.8, 1]})
    f = np.asarray(results["sweep_factors"])
    ax.axvspan(0.3, 1.0, color="0.93", zorder=0, label="MNIST-scale training factors")
    for i, (name, m) in enumerate(results["models"].items()):
        acc = 100 * np.asarray(m["sweep_accuracy"])  # (realisations, factors)
        ax.plot(f, acc.mean(0), marker="o", ms=3, color=f"C{i}", label=f"{name} ({m['params'] / 1e3:.0f}k params)")
        if len(acc) > 1:
            ax.fill_between(f, acc.min(0), acc.max(0), alpha=0.2, color=f"C{i}", lw=0)
    ax.set_xlabel("scale factor of the upright test digits")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlim(f.min(), f.max())
    ax.set_ylim(0, 100)
    chance_line(ax, MNIST_CHANCE_PERCENT)
    ax.grid(alpha=0.3)
    legend_outside(ax, below=True, ncol=2)
    ax.set_title("Accuracy against the test-time scale (band: min-max over realisations)", fontsize=9)

    names = list(results["models"])
    for i, name in enumerate(names):
        errs = np.asarray(results["models"][name]["test_error"])
        bx.scatter(np.full(len(errs), i - 0.12), errs, color=f"C{i}", s=18, zorder=3,
                   label="ours, per realisation" if i == 0 else None)
        bx.hlines(errs.mean(), i - 0.27, i + 0.03, color=f"C{i}", zorder=2)
        pub = results["published"].get(name)
        if pub is not None:
            bx.scatter(i + 0.15, pub, marker="*", s=90, color="k", zorder=3,
                       label="SESN paper (recalled)" if i == 0 else None)
    bx.set_xticks(range(len(names)), [n.replace(" + ", "\n+ ") for n in names], fontsize=8)
    bx.set_xlim(-0.6, len(names) - 0.4)
    bx.set_ylabel("MNIST-scale test error (%)")
    bx.set_ylim(bottom=0)
    chance_line(bx, 100 - MNIST_CHANCE_PERCENT)  # the test error of guessing
    bx.grid(alpha=0.3, axis="y")
    legend_outside(bx, below=True)
    bx.set_title("Test error: ours vs published", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem, table(results), results)
