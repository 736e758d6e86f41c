"""Circular-shift consistency of max-pool, MaxBlurPool and APS networks, plain and C4, on MNIST.

Six small networks that differ only in their group (plain convolutions, or C4 lifting + group
convolutions) and in their two stride-2 downsamplings:

* ``max-pool``: 2x2 max-pool, stride 2 (commutes only with shifts by multiples of 2);
* ``MaxBlurPool`` (Zhang 2019): 2x2 max with stride 1, then a binomial blur and stride 2;
* ``APS`` (Chaman & Dokmanic 2021): 2x2 max with stride 1, then adaptive polyphase sampling
  (keep the polyphase component of largest l2 norm), as the APS paper replaces max-pooling.

Every convolution, max and blur uses circular padding, batch norm is per channel (per field for
C4, shared over the group axis) and in eval mode uses the running statistics, i.e. it is a
per-channel affine map; the head is a global mean over space and a linear layer (for C4, by
default on all field x rotation channels, ``c4_head="group"``; ``"invariant"`` also averages the
rotations first). So the APS networks are exactly invariant to every circular shift of the 28x28
input, and the max-pool and MaxBlurPool networks exactly to shifts by multiples of 4 (two
stride-2 stages).

Batch-norm statistics are recalibrated before measuring (``bn_recalibration``, the G-CNN
protocol's pass: one pass over the training digits with the final weights,
:func:`equilib.training.recalibrate_batch_norm`). Without it the running averages (momentum 0.9)
lag the weights of the last steps; measured on the C4 max-pool network at 30,000 digits x 3
epochs: 69.55 % test accuracy in eval mode with the running averages, 94.6 % with batch
statistics, 94.75 % after the recalibration pass (the last batch norm's running mean was off by
up to half a standard deviation).

Why the C4 head keeps the rotation axis: with a mean over space *and* rotations before the
linear layer (invariant features), these three-layer C4 networks reached 38-56 % test accuracy at
15,000 digits x 2 epochs against 88-90 % for the plain ones (``c4_head="invariant"``, measured
with the running batch-norm averages); with the rotation axis kept into the head, 84-92 % for
both arms. The shift question needs no rotation invariance.

All six are trained with :func:`equilib.training.fit` on the same MNIST digits, with the same
seed and schedule. Measured on the same trained models:

1. test accuracy;
2. circular-shift consistency, the APS protocol (the official ``evaluate_circular``): the test
   set in batches of ``consistency_batch`` digits, each batch with one random pair of shifts
   ``(dy1, dx1), (dy2, dx2)``, every component uniform in ``[-max_shift, max_shift)``
   (``numpy.random.default_rng(seed + 1)``, the same pairs for every model), rolled with
   ``mode="circular"``; the % of (digit, pair) cases whose top-1 class is the same under both
   shifts (:func:`equilib.metrics.shift_consistency`), over ``consistency_repeats`` passes;
3. the largest relative change ``|l(roll(x, s)) - l(x)| / |l(x)|`` of the logit vector over
   **all** ``28 * 28`` circular shifts ``s`` of ``n_exact_images`` test digits, for the trained
   network and at initialisation, also restricted to shifts by multiples of 4;
4. the same relative change under rotations by 90, 180, 270 degrees of those digits (the C4
   networks are exactly invariant to them when every stage samples symmetrically).
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
from flax import nnx

from experiments.common import MNIST_CHANCE_PERCENT, chance_line, legend_outside, pyplot, save_figure
from experiments.shift_consistency.configs import GROUPS, MODELS, POOLS, Config

# the protocol line under the paper's table (experiments.reproduce)
TABLE_PROTOCOL = ("ours (MNIST, small networks, short training; the published rows: their own datasets and "
            "full schedules, as listed above them).")
RESULT_KEYS = ("models", "protocol", "stride_product", "checks")
STRIDE_PRODUCT = 4  # two stride-2 stages: every model is exactly invariant to shifts by multiples of 4
ZERO_FLOOR = 1e-9   # exact zeros are drawn at this height on log axes


def _parse(name: str) -> tuple[str, str]:
    group, _, pool = name.partition(" ")
    if group not in GROUPS or pool not in POOLS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return group, pool


def _downsample(pool: str, blur_filter_size: int):
    from equilib import nn

    if pool == "max-pool":
        return nn.MaxPool(2)  # 2x2, stride 2, no padding (28 -> 14 -> 7: no pads needed)
    if pool == "MaxBlurPool":
        return nn.MaxBlurPool(2, filter_size=blur_filter_size, stride=2, padding="circular")
    # as the APS paper replaces a max-pool: circular 2x2 max with stride 1, then APS
    return nn.Sequential(nn.MaxPool(2, stride=1, padding="CIRCULAR"), nn.APSPool(2, criterion="l2"))


class ShiftNet(nnx.Module):
    """The network ``name`` (one of :data:`MODELS`): ``(B, 28, 28, 1)`` images -> ``(B, 10)`` logits.

    plain: 5x5 conv (``width``) -> 3x3 conv (``2*width``) -> 3x3 conv (``2*width``);
    C4: LiftingConv (``width//2`` fields) -> GroupConv (``width``) -> GroupConv (``width``), i.e.
    half the fields of the plain channels, which gives about the same number of parameters
    (a GroupConv filter sees 4x the inputs of a plain one). Every convolution is circular and
    followed by batch norm and ReLU; the first two by the downsampling; then a global mean over
    space and a linear layer: for C4 with ``c4_head="group"`` on the ``width x 4`` (field,
    rotation) channels, with ``"invariant"`` on the fields averaged over the rotations too.
    """

    def __init__(self, name: str, width: int, blur_filter_size: int = 3, *, c4_head: str = "group",
                 rngs: nnx.Rngs):
        from equilib import nn
        from equilib.groups import Cyclic

        group, pool = _parse(name)
        if group == "C4" and width % 2:
            raise ValueError(f"`width` must be even for the C4 networks (width//2 fields in the first "
                             f"layer), got {width}")
        if group == "plain":
            c = [width, 2 * width, 2 * width]
            self.convs = nnx.List([nn.Conv(1, c[0], 5, padding="CIRCULAR", rngs=rngs),
                                   nn.Conv(c[0], c[1], 3, padding="CIRCULAR", rngs=rngs),
                                   nn.Conv(c[1], c[2], 3, padding="CIRCULAR", rngs=rngs)])
            self.bns = nnx.List([nnx.BatchNorm(ci, momentum=0.9, rngs=rngs) for ci in c])
        else:
            G = Cyclic(4)
            c = [width // 2, width, width]
            self.convs = nnx.List([nn.LiftingConv(1, c[0], 5, group=G, padding="CIRCULAR", rngs=rngs),
                                   nn.GroupConv(c[0], c[1], 3, group=G, padding="CIRCULAR", rngs=rngs),
                                   nn.GroupConv(c[1], c[2], 3, group=G, padding="CIRCULAR", rngs=rngs)])
            self.bns = nnx.List([nn.GroupBatchNorm(ci, group=G, momentum=0.9, rngs=rngs) for ci in c])
        self.pools = nnx.List([_downsample(pool, blur_filter_size), _downsample(pool, blur_filter_size)])
        if c4_head not in ("group", "invariant"):
            raise ValueError(f"`c4_head` must be 'group' or 'invariant', got {c4_head!r}")
        # plain, or C4 "invariant": the mean over space (and the rotations); C4 "group": over space only
        self.keep_rotations = group == "C4" and c4_head == "group"
        self.pool = nn.GlobalPool("mean")
        self.head = nnx.Linear(c[-1] * (4 if self.keep_rotations else 1), 10, rngs=rngs)

    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != 1:
            raise ValueError(f"ShiftNet expects images of shape (batch, H, W, 1), got {tuple(x.shape)}")
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = jax.nn.relu(bn(conv(x)))
            if i < 2:
                x = self.pools[i](x)
        if self.keep_rotations:  # (B, H, W, C, 4) -> (B, C * 4), channel c * 4 + g
            return self.head(x.mean(axis=(1, 2)).reshape(x.shape[0], -1))
        return self.head(self.pool(x))


@jax.jit
def _apply(graphdef_state, x):
    graphdef, state = graphdef_state
    return nnx.merge(graphdef, state)(x)


def _logits_fn(model, batch_size: int):
    """Jitted, data-parallel ``numpy (N, H, W, 1) -> numpy (N, 10)`` of ``model`` in eval mode.

    Every call runs batches of exactly ``batch_size`` (rounded up to the device count; the last
    one padded), so each architecture compiles its forward pass once, for the untrained and
    the trained weights alike (the graph definition is static, the state is an argument)."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from equilib.training import data_mesh

    model.eval()
    mesh = data_mesh()
    n_dev = mesh.devices.size
    bs = -(-batch_size // n_dev) * n_dev
    graphdef, state = nnx.split(model)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    sharded = NamedSharding(mesh, P("data"))

    def logits(x):
        x = np.asarray(x, np.float32)
        out = []
        for j in range(0, len(x), bs):
            chunk = x[j:j + bs]
            m = len(chunk)
            if m < bs:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - m, axis=0)])
            out.append(np.asarray(_apply((graphdef, state), jax.device_put(chunk, sharded)))[:m])
        return np.concatenate(out)

    return logits


def _consistency(logits, x, config: Config) -> dict:
    """The APS protocol: one random pair of circular shifts per batch of test digits."""
    from equilib.metrics import shift_consistency

    cb, ms = config.consistency_batch, config.max_shift
    rng = np.random.default_rng(config.seed + 1)  # the same pairs for every model
    agree = cases = 0.0
    for _ in range(config.consistency_repeats):
        for j in range(0, len(x), cb):
            chunk = x[j:j + cb]
            pair = rng.integers(-ms, ms, size=(1, 2, 2))
            # both shifts of the pair in one call of `logits`
            c = shift_consistency(logits, chunk, pair, mode="circular", batch_size=2 * len(chunk))
            agree += c * len(chunk)
            cases += len(chunk)
    return {"shift_consistency": agree / cases, "consistency_cases": int(cases)}


def _all_shift_changes(logits, xs) -> np.ndarray:
    """``(n, H, W)``: relative change of the logits of each digit under every circular shift."""
    n, h, w = xs.shape[:3]
    dy, dx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.empty((n, h, w))
    for i in range(n):
        stack = np.stack([np.roll(xs[i], (a, b), axis=(0, 1)) for a, b in zip(dy.ravel(), dx.ravel())])
        lg = logits(stack).astype(np.float64)  # row 0 is shift (0, 0)
        out[i] = (np.linalg.norm(lg - lg[:1], axis=1) / max(np.linalg.norm(lg[0]), 1e-30)).reshape(h, w)
    return out


def _rot90_change(logits, xs) -> float:
    """Largest relative change of the logits under rotations of ``xs`` by 90, 180, 270 degrees."""
    stack = np.concatenate([np.rot90(xs, k, axes=(1, 2)) for k in range(4)])
    lg = logits(stack).astype(np.float64).reshape(4, len(xs), -1)
    return float(np.max(np.linalg.norm(lg[1:] - lg[:1], axis=-1) / np.linalg.norm(lg[0], axis=-1)))


def _check_architectures(config: Config, image_shape) -> None:
    """Build and trace (no compile) all six networks on the configured ``width``, so that a bad
    config fails before any training, and a smoke run that trains a subset still traces every
    architecture."""
    import warnings

    import jax.numpy as jnp

    from equilib import ExactnessWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExactnessWarning)
        for name in MODELS:
            model = ShiftNet(name, config.width, config.blur_filter_size, c4_head=config.c4_head, rngs=nnx.Rngs(0))
            model.eval()
            graphdef, state = nnx.split(model)
            out = jax.eval_shape(lambda s, x, g=graphdef: nnx.merge(g, s)(x), state,
                                 jax.ShapeDtypeStruct((2,) + tuple(image_shape), jnp.float32))
            if out.shape != (2, 10):
                raise RuntimeError(f"{name}: expected logits of shape (2, 10), got {out.shape}")


def run(config: Config, workdir: pathlib.Path) -> dict:
    import warnings

    from equilib import ExactnessWarning
    from equilib.transforms import Normalize
    from experiments.common import load_mnist

    data = load_mnist(config.n_train, config.n_test)
    _check_architectures(config, data["test"][0].shape[1:])
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    # one global mean/std: a scalar affine map, which commutes with shifts and rotations
    normalize = Normalize.fit(x_train)
    x_train, x_test = normalize(x_train), normalize(x_test)
    x_exact = x_test[:config.n_exact_images]
    results: dict = {"models": {}, "protocol": _protocol(config, len(x_train), x_test.shape, len(x_exact))}
    with warnings.catch_warnings():
        # MaxBlurPool and the stride-1 max before APS sample asymmetrically on even sizes, which
        # the layers report as inexact rot90 equivariance; we measure that directly instead (4.)
        warnings.simplefilter("ignore", ExactnessWarning)
        for name in config.models:
            results["models"][name] = _measure(name, config, (x_train, y_train), (x_test, y_test), x_exact,
                                               workdir=workdir / name.replace(" ", "_"))
    results["stride_product"] = STRIDE_PRODUCT
    results["checks"] = _checks(results["models"])
    for c in results["checks"]:
        print(("ok: " if c["passed"] else "CHECK FAILED: ") + c["claim"], flush=True)
    return results


def _measure(name: str, config: Config, train, test, x_exact, *, workdir) -> dict:
    """Train the network ``name``; its accuracy, consistency, and logit changes under every
    circular shift (trained and at initialisation) and under quarter turns."""
    from equilib.training import TrainConfig, count_params, fit, recalibrate_batch_norm

    def model_fn(rngs):
        return ShiftNet(name, config.width, config.blur_filter_size, c4_head=config.c4_head, rngs=rngs)

    # 3. at initialisation (same initial weights fit uses: Rngs(params=seed, dropout=seed + 1))
    init_model = model_fn(nnx.Rngs(params=config.seed, dropout=config.seed + 1))
    init_change = _all_shift_changes(_logits_fn(init_model, 2 * config.consistency_batch), x_exact)
    cfg = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                      seed=config.seed)
    fitted = fit(model_fn, train, cfg, workdir=workdir)
    if config.bn_recalibration:  # running averages lag the last steps' weights (see the module docstring)
        recalibrate_batch_norm(fitted.model, train[0], batch_size=config.batch_size)
    logits = _logits_fn(fitted.model, 2 * config.consistency_batch)
    accuracy = float(np.mean(np.argmax(logits(test[0]), -1) == test[1]))  # 1.
    cons = _consistency(logits, test[0], config)  # 2. the APS protocol
    by_shift = _all_shift_changes(logits, x_exact).max(axis=0)  # 3. all circular shifts
    rot = _rot90_change(logits, x_exact)  # 4. rotations by multiples of 90 degrees
    m = {"group": _parse(name)[0], "pool": _parse(name)[1], "params": count_params(fitted.model),
         "accuracy": accuracy, **cons, "max_logit_change": float(by_shift.max()),
         "max_logit_change_stride_multiples": float(by_shift[::STRIDE_PRODUCT, ::STRIDE_PRODUCT].max()),
         "max_logit_change_init": float(init_change.max()),
         "logit_change_by_shift": by_shift.tolist(),  # [dy][dx], max over the digits
         "max_rot90_logit_change": rot,
         "train_seconds": sum(h["epoch_seconds"] for h in fitted.history),
         "train_accuracy": fitted.history[-1]["train_accuracy"] if fitted.history else None}
    print(f"{name}: {m['params']:,} params, accuracy {100 * accuracy:.2f} %, shift consistency "
          f"{m['shift_consistency']:.2f} % ({m['consistency_cases']} cases), max logit change over all "
          f"shifts {m['max_logit_change']:.1e} (multiples of {STRIDE_PRODUCT}: "
          f"{m['max_logit_change_stride_multiples']:.1e}, at init {m['max_logit_change_init']:.1e}), "
          f"rot90 {rot:.1e}, trained in {m['train_seconds']:.0f} s", flush=True)
    return m


def _protocol(config: Config, n_train: int, test_shape, n_exact: int) -> dict:
    w, mx = config.width, config.max_shift
    return {
        "dataset": f"MNIST 28x28: the first {n_train} training and {test_shape[0]} test digits, "
                   f"normalised with one global mean/std",
        "architecture": "circular 5x5 / 3x3 / 3x3 convolutions with batch norm and ReLU, the downsampling "
                        "after the first two, global mean over space"
                        + (" (C4: the rotation axis kept into the head)" if config.c4_head == "group"
                           else " (C4: and over the rotations)") + ", linear; plain "
                        f"{w}/{2 * w}/{2 * w} channels, C4 {w // 2}/{w}/{w} fields (LiftingConv + "
                        "GroupConv over Cyclic(4)); max-pool = 2x2 stride 2; MaxBlurPool = circular 2x2 max "
                        f"stride 1 + binomial blur {config.blur_filter_size} stride 2; APS = circular 2x2 max "
                        "stride 1 + APSPool (l2)",
        "training": f"equilib.training.fit, Adam lr {config.learning_rate}, batch {config.batch_size}, "
                    f"{config.epochs} epoch(s), seed {config.seed}, no augmentation, same for all models"
                    + ("; batch-norm statistics recalibrated over the training digits before measuring"
                       if config.bn_recalibration else "; running batch-norm averages"),
        "consistency": f"APS protocol (Chaman & Dokmanic 2021, evaluate_circular): batches of "
                       f"{config.consistency_batch} test digits, one random pair of circular shifts per "
                       f"batch, each component uniform in [-{mx}, {mx}) "
                       f"(numpy default_rng(seed + 1), the same pairs for every model), "
                       f"{config.consistency_repeats} pass(es) over the test set; % of cases whose top-1 "
                       f"class agrees under both shifts (equilib.metrics.shift_consistency, mode 'circular')",
        "max_logit_change": f"max over the first {n_exact} test digits and all "
                            f"{test_shape[1] * test_shape[2]} circular shifts "
                            f"of |l(roll(x)) - l(x)| / |l(x)| (logit vectors, float64 norms of float32 logits)",
        "rot90_logit_change": "the same relative change under rotations of the digits by 90, 180, 270 degrees",
    }


EXACT_TOL = 1e-5  # relative logit change that counts as exact (float32 rounding is ~1e-7)
ACCURACY_GAP = 2.0  # points: a C4 network at most this far below the plain one with the same pooling


def _checks(models: dict) -> list[dict]:
    """The claims of the issue, evaluated on the results (recorded, not raised: a failed claim
    is a finding): APS reads 100.00 % and is exact over all shifts; every model is exact at
    shifts by multiples of 4; each C4 network within ACCURACY_GAP points of the plain one with
    the same pooling; max-pool is below APS in consistency, for the same group."""
    out = []
    for name, m in models.items():
        if m["pool"] == "APS":
            out.append({"claim": f"{name}: consistency reads 100.00 % (got {m['shift_consistency']:.2f} %)",
                        "passed": f"{m['shift_consistency']:.2f}" == "100.00"})
            out.append({"claim": f"{name}: max logit change over all shifts < {EXACT_TOL:.0e} "
                                 f"(got {m['max_logit_change']:.1e}; at init {m['max_logit_change_init']:.1e})",
                        "passed": max(m["max_logit_change"], m["max_logit_change_init"]) < EXACT_TOL})
        out.append({"claim": f"{name}: exact at shifts by multiples of {STRIDE_PRODUCT} "
                             f"(got {m['max_logit_change_stride_multiples']:.1e})",
                    "passed": m["max_logit_change_stride_multiples"] < EXACT_TOL})
    for pool in POOLS:  # the C4 arm is fair: as accurate as the plain network with the same pooling
        plain, c4 = models.get(f"plain {pool}"), models.get(f"C4 {pool}")
        if plain is not None and c4 is not None:
            gap = 100 * (c4["accuracy"] - plain["accuracy"])
            out.append({"claim": f"{pool}: C4 accuracy within {ACCURACY_GAP} points of plain "
                                 f"({100 * c4['accuracy']:.2f} vs {100 * plain['accuracy']:.2f} %)",
                        "passed": gap >= -ACCURACY_GAP})
    for group in GROUPS:
        mp, aps = models.get(f"{group} max-pool"), models.get(f"{group} APS")
        if mp is not None and aps is not None:
            out.append({"claim": f"{group}: max-pool consistency ({mp['shift_consistency']:.2f} %) below APS "
                                 f"({aps['shift_consistency']:.2f} %)",
                        "passed": mp["shift_consistency"] < aps["shift_consistency"]})
    return out


# Published numbers, from ../shared/reference/benchmarks.md (read in the primary sources).
PUBLISHED = [
    ("APS (Chaman & Dokmanic 2021)", "CIFAR-10, ResNets with circular padding",
     "two random circular shifts (torch.roll), integers in [-3, 3) per axis", "100", "-"),
    ("APS (Chaman & Dokmanic 2021)", "the same networks before training", "as above", "100", "-"),
    ("BlurPool (Zhang 2019), baseline", "ImageNet, ResNet-50", "two random shifts (crops)", "89.20", "76.16"),
    ("BlurPool (Zhang 2019), Bin-5 blur", "ImageNet, ResNet-50", "two random shifts (crops)", "91.31", "77.04"),
]


def _fmt_change(v: float) -> str:
    return "0" if v == 0 else f"{v:.1e}"


def table(results: dict) -> str:
    """Markdown: our six networks (accuracy, consistency with 2 decimals, logit changes), then
    the published numbers of the APS and BlurPool papers, and the protocol differences."""
    models = results["models"]
    k = results.get("stride_product", STRIDE_PRODUCT)
    lines = ["| network | params | accuracy % | shift consistency % | max logit change, all shifts | "
             f"at multiples of {k} px | at init, all shifts | rot90 logit change | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in models.items():
        lines.append(f"| {name} | {m['params']:,} | {100 * m['accuracy']:.2f} | {m['shift_consistency']:.2f} | "
                     f"{_fmt_change(m['max_logit_change'])} | {_fmt_change(m['max_logit_change_stride_multiples'])} | "
                     f"{_fmt_change(m['max_logit_change_init'])} | {_fmt_change(m['max_rot90_logit_change'])} | "
                     f"{m['train_seconds']:.0f} |")
    lines += ["", "Published (not re-run here):", "",
              "| method | dataset, network | shifts | consistency % | accuracy % |",
              "|---|---|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in PUBLISHED]
    cfg = results.get("config", {})
    first = next(iter(models.values()), None)
    cases = first["consistency_cases"] if first else 0
    params = [m["params"] for m in models.values()]
    lines += ["", f"Protocol differences: ours is MNIST (28x28 digits, {cfg.get('n_train', '?')} training / "
              f"{cfg.get('n_test', '?')} test), three-convolution networks of "
              f"{f'{min(params):,}' if min(params) == max(params) else f'{min(params):,}-{max(params):,}'} "
              f"parameters, {cfg.get('epochs', '?')} epoch(s) of Adam without augmentation, one seed; the papers "
              "train ResNets on CIFAR-10 / ImageNet for their full schedules. Our consistency uses the APS "
              f"protocol (circular shifts, one random pair per batch of {cfg.get('consistency_batch', '?')} digits, "
              f"components in [-{cfg.get('max_shift', 3)}, {cfg.get('max_shift', 3)}), {cases} cases); Zhang's "
              "ImageNet numbers use random crops, not circular shifts. The logit changes are relative changes of "
              "the logit vector over all 784 circular shifts of "
              f"{cfg.get('n_exact_images', '?')} test digits (0 = bit-identical)."]
    return "\n".join(lines)


def plot(results: dict, stem: pathlib.Path) -> list[pathlib.Path]:
    """Four panels: accuracy, consistency (bars), max logit change over all shifts (log bars,
    trained and at initialisation), logit change vs horizontal shift (log); writes ``stem.md``
    with :func:`table`."""
    plt = pyplot()
    models = results["models"]
    names = list(models)
    colors = {"max-pool": "tab:red", "MaxBlurPool": "tab:orange", "APS": "tab:green"}
    col = [colors.get(models[n]["pool"], "tab:gray") for n in names]
    hatch = ["" if models[n]["group"] == "plain" else "//" for n in names]
    xpos = np.arange(len(names))
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))

    def bars(ax, values, fmt):
        b = ax.bar(xpos, values, color=col, edgecolor="black", linewidth=0.5)
        for bar, h in zip(b, hatch):
            bar.set_hatch(h)
        for x, v in zip(xpos, values):
            ax.annotate(fmt(v), (x, v), ha="center", va="bottom", fontsize=7, rotation=90,
                        xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(xpos, names, rotation=35, ha="right", fontsize=8)

    acc = [100 * models[n]["accuracy"] for n in names]
    bars(axes[0], acc, lambda v: f"{v:.2f}")
    axes[0].set(ylabel="test accuracy (%)", title="Accuracy", ylim=(max(0.0, min(acc) - 10), 102))
    chance_line(axes[0], MNIST_CHANCE_PERCENT)

    cons = [models[n]["shift_consistency"] for n in names]
    bars(axes[1], cons, lambda v: f"{v:.2f}")
    axes[1].set(ylabel="same class under 2 random shifts (%)", title="Circular-shift consistency",
                ylim=(max(0.0, min(cons) - 3), 101.5))

    trained = [max(models[n]["max_logit_change"], ZERO_FLOOR) for n in names]
    init = [max(models[n]["max_logit_change_init"], ZERO_FLOOR) for n in names]
    w = 0.4
    b_tr = axes[2].bar(xpos - w / 2, trained, w, color=col, edgecolor="black", linewidth=0.5, label="trained")
    b_in = axes[2].bar(xpos + w / 2, init, w, color=col, alpha=0.45, edgecolor="black", linewidth=0.5,
                       label="at initialisation")
    for bar, h in zip(list(b_tr) + list(b_in), hatch + hatch):
        bar.set_hatch(h)
    axes[2].set_yscale("log")
    axes[2].set_xticks(xpos, names, rotation=35, ha="right", fontsize=8)
    axes[2].set(ylabel="max relative logit change", title="All 784 circular shifts")

    for n, c in zip(names, col):
        m = models[n]
        row = np.maximum(np.asarray(m["logit_change_by_shift"])[0], ZERO_FLOOR)  # dy = 0
        axes[3].plot(np.arange(len(row)), row, color=c, ls="-" if m["group"] == "plain" else "--",
                     marker="o", ms=2.5, label=n)
    axes[3].set_yscale("log")
    axes[3].set(xlabel="horizontal circular shift dx (px), dy = 0",
                ylabel="max relative logit change", title="Logit change vs shift")
    legend_outside(axes[3], fontsize=6)
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.text(0.5, 0.01, f"colour: downsampling; plain = solid line / no hatch, C4 = dashed line / hatched; "
             "logit change: dark bars trained, light bars at initialisation; "
             f"exact zeros (bit-identical logits) drawn at {ZERO_FLOOR:.0e}", ha="center", fontsize=8)
    return save_figure(fig, stem, table(results), results)
