"""A small, deterministic, data-parallel trainer for Flax NNX classifiers.

* jit-compiled train and eval steps; the whole model + optimizer state is one pytree.
* Data parallel over ``jax.devices()`` with ``jax.sharding``: the batch is split along a
  ``"data"`` mesh axis, the state is replicated; XLA inserts the reductions, so batch-norm
  statistics are those of the global batch and a 1-device and a 2-device run compute the same
  function (up to float summation order). Force two CPU devices with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (set before importing jax); on a busy
  machine also raise XLA:CPU's 40 s collective timeout
  (``--xla_cpu_collective_call_terminate_timeout_seconds=600``), as ``experiments`` does.
* A workdir with ``config.json``, ``metrics.jsonl`` (one line per epoch) and orbax checkpoints
  (every ``checkpoint_every`` epochs, the last two kept). ``fit`` on a workdir that holds a
  checkpoint resumes from it; every source of randomness (initialisation, shuffling,
  augmentation, dropout) derives from ``seed`` and the epoch/step, so a run killed and resumed
  ends with the same metrics as an uninterrupted one.
* A progress line with images/s (tqdm when installed).

Inputs are numpy arrays in host memory: images ``(N, H, W, C)`` float32, labels ``(N,)`` int.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["TrainConfig", "FitResult", "fit", "evaluate", "predict", "data_mesh", "count_params"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit` (all JSON-serialisable; saved as ``config.json``)."""

    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # "adam" | "sgd" (momentum 0.9)
    weight_decay: float = 0.0
    lr_decay_epochs: tuple[int, ...] = ()  # multiply the learning rate by lr_decay at these epochs
    lr_decay: float = 0.1
    seed: int = 0
    eval_batch_size: int = 1000
    checkpoint_every: int = 1  # epochs; 0 disables checkpoints

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"`optimizer` must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate!r}")
        object.__setattr__(self, "lr_decay_epochs", tuple(int(e) for e in self.lr_decay_epochs))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FitResult:
    model: nnx.Module
    history: list[dict]
    train_seconds: float
    resumed_from_epoch: int


def data_mesh(devices: Sequence | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves) of ``model``."""
    return int(sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))))


def _optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    boundaries = {e * steps_per_epoch: config.lr_decay for e in config.lr_decay_epochs}
    lr = optax.piecewise_constant_schedule(config.learning_rate, boundaries) if boundaries else config.learning_rate
    if config.optimizer == "adam":
        tx = optax.adamw(lr, weight_decay=config.weight_decay) if config.weight_decay else optax.adam(lr)
    else:
        tx = optax.chain(optax.add_decayed_weights(config.weight_decay), optax.sgd(lr, momentum=0.9))
    return tx


def _check_data(x, y, name):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4:
        raise ValueError(f"`{name}` images must have shape (N, H, W, C), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"`{name}` labels must have shape ({x.shape[0]},), got {y.shape}")
    return x.astype(np.float32, copy=False), y.astype(np.int32, copy=False)


# --- checkpoints ------------------------------------------------------------------------------
def _to_saveable(state):
    # typed PRNG keys are stored as their raw bits
    pure = nnx.to_pure_dict(state)
    return jax.tree.map(lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
                        else a, pure)


def _from_saveable(state, restored):
    template = nnx.to_pure_dict(state)
    restored = jax.tree.map(lambda t, r: jax.random.wrap_key_data(r) if jnp.issubdtype(t.dtype, jax.dtypes.prng_key)
                            else jnp.asarray(r, t.dtype), template, restored)
    nnx.replace_by_pure_dict(state, restored)
    return state


class _Checkpoints:
    def __init__(self, directory: pathlib.Path):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.manager = ocp.CheckpointManager(
            directory.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False))

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, epoch: int, state):
        host = jax.tree.map(np.asarray, _to_saveable(state))
        self.manager.save(epoch, args=self._ocp.args.StandardSave(host))
        self.manager.wait_until_finished()

    def restore(self, epoch: int, state):
        target = jax.tree.map(np.asarray, _to_saveable(state))
        restored = self.manager.restore(epoch, args=self._ocp.args.StandardRestore(target))
        return _from_saveable(state, restored)


# --- steps ------------------------------------------------------------------------------------
def _loss_and_logits(model, x, y):
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, logits


def _make_train_step(graphdef, augment):
    def step(state, x, y, key):
        model, opt = nnx.merge(graphdef, state)
        model.train()
        if augment is not None:
            x = augment(key, x)
        (loss, logits), grads = nnx.value_and_grad(_loss_and_logits, has_aux=True)(model, x, y)
        opt.update(model, grads)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        return nnx.state((model, opt)), {"loss_sum": loss * y.shape[0], "correct": correct}

    return step


def _make_eval_step(graphdef, transform):
    def step(state, x, y, mask, arg):
        model, _ = nnx.merge(graphdef, state)
        model.eval()
        if transform is not None:
            x = transform(x, arg)
        logits = model(x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return {"loss_sum": jnp.sum(losses * mask), "correct": jnp.sum((jnp.argmax(logits, -1) == y) * mask),
                "logits": logits}

    return step


class _Progress:
    def __init__(self, total: int, desc: str, enabled: bool):
        self.total, self.desc, self.enabled, self.done = total, desc, enabled, 0
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="img", unit_scale=True, leave=False,
                                dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
            except ImportError:
                self.bar = None

    def update(self, n: int):
        self.done += n
        if not self.enabled:
            return
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.update(n)  # tqdm shows the rate in img/s
        elif self.done == self.total or self.done % max(self.total // 5, 1) < n:
            print(f"  {self.desc}: {self.done}/{self.total} images, {rate:,.0f} img/s", file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --- public API -------------------------------------------------------------------------------
def fit(model_fn: Callable[[nnx.Rngs], nnx.Module], train: tuple, config: TrainConfig, *,
        workdir: str | os.PathLike | None = None, val: tuple | None = None,
        augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
        mesh: Mesh | None = None, progress: bool = True,
        on_epoch_end: Callable[[int, dict], None] | None = None) -> FitResult:
    """Train ``model_fn(nnx.Rngs(seed))`` on ``train = (images, labels)``.

    ``augment(key, images) -> images`` runs on device inside the jitted step, with a key
    derived from ``seed`` and the global step. ``val`` is evaluated after every epoch. With a
    ``workdir``, metrics and checkpoints are written there and an existing checkpoint is resumed.
    ``on_epoch_end(epoch, metrics)`` is called after each epoch's checkpoint is written.
    Returns the trained model (on host-replicated state) and the per-epoch metrics.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig, got {type(config).__name__}")
    x_train, y_train = _check_data(*train, "train")
    if val is not None:
        val = _check_data(*val, "val")
    mesh = mesh or data_mesh()
    n_dev = mesh.devices.size
    if config.batch_size % n_dev:
        raise ValueError(f"`batch_size` (={config.batch_size}) must be a multiple of the number of "
                         f"devices (={n_dev})")
    steps_per_epoch = len(x_train) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"`batch_size` (={config.batch_size}) exceeds the training set (={len(x_train)})")

    root = jax.random.key(config.seed)
    model = model_fn(nnx.Rngs(params=config.seed, dropout=config.seed + 1))
    opt = nnx.Optimizer(model, _optimizer(config, steps_per_epoch), wrt=nnx.Param)
    graphdef, state = nnx.split((model, opt))

    history: list[dict] = []
    start_epoch = 0
    ckpt = None
    if workdir is not None:
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        cfg_path = workdir / "config.json"
        cfg = config.to_json()
        existing = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        old = existing.get("train")
        if old is not None and {k: v for k, v in old.items() if k != "epochs"} != \
                {k: v for k, v in json.loads(json.dumps(cfg)).items() if k != "epochs"}:
            raise ValueError(f"`workdir` ({workdir}) holds a run with another config ({old}); resuming needs "
                             f"the same config (only `epochs` may grow): use a new workdir")
        existing["train"] = cfg
        cfg_path.write_text(json.dumps(existing, indent=2))
        if config.checkpoint_every:
            ckpt = _Checkpoints(workdir / "checkpoints")
            latest = ckpt.latest()
            if latest is not None:
                state = ckpt.restore(latest, state)
                start_epoch = latest
        metrics_path = workdir / "metrics.jsonl"
        if metrics_path.exists():  # keep the epochs the checkpoint covers, drop the rest
            lines = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
            history = [m for m in lines if m["epoch"] <= start_epoch]
            metrics_path.write_text("".join(json.dumps(m) + "\n" for m in history))

    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P("data"))
    state = jax.device_put(state, replicated)
    train_step = jax.jit(_make_train_step(graphdef, augment), donate_argnums=0,
                         out_shardings=(replicated, replicated))
    eval_step = jax.jit(_make_eval_step(graphdef, None))

    t_start = time.perf_counter()
    for epoch in range(start_epoch + 1, config.epochs + 1):
        t0 = time.perf_counter()
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(root, epoch), len(x_train)))
        bar = _Progress(steps_per_epoch * config.batch_size, f"epoch {epoch}/{config.epochs}", progress)
        loss_sum = correct = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
            xb = jax.device_put(x_train[idx], sharded)
            yb = jax.device_put(y_train[idx], sharded)
            key = jax.random.fold_in(jax.random.fold_in(root, 10_000 + epoch), i)
            state, m = train_step(state, xb, yb, key)
            loss_sum += m["loss_sum"]
            correct += m["correct"]
            bar.update(config.batch_size)
        bar.close()
        n = steps_per_epoch * config.batch_size
        loss_sum, correct = float(loss_sum), float(correct)  # waits for the last step
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch, "train_loss": loss_sum / n, "train_accuracy": correct / n,
                  "epoch_seconds": seconds, "images_per_second": n / seconds}
        if val is not None:
            vm = _evaluate_state(eval_step, state, *val, batch_size=config.eval_batch_size, mesh=mesh)
            record.update({"val_loss": vm["loss"], "val_accuracy": vm["accuracy"]})
        history.append(record)
        if workdir is not None:
            with open(workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if ckpt is not None and (epoch % config.checkpoint_every == 0 or epoch == config.epochs):
                ckpt.save(epoch, state)
        if progress:
            msg = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
            print(f"epoch {epoch}: {msg}", file=sys.stderr)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)

    model, _ = nnx.merge(graphdef, jax.device_get(state))
    model.eval()
    return FitResult(model, history, time.perf_counter() - t_start, start_epoch)


def _batches(x, y, batch_size: int, n_dev: int):
    """Fixed-size batches (a multiple of the device count); the last one padded, with a mask."""
    bs = int(math.ceil(batch_size / n_dev) * n_dev)
    for i in range(0, len(x), bs):
        xb, yb = x[i:i + bs], y[i:i + bs]
        mask = np.ones(len(xb), np.float32)
        if len(xb) < bs:
            pad = bs - len(xb)
            xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
            yb = np.concatenate([yb, np.zeros((pad,), yb.dtype)])
            mask = np.concatenate([mask, np.zeros(pad, np.float32)])
        yield xb, yb, mask, len(x[i:i + bs])


def _evaluate_state(step, state, x, y, *, batch_size, mesh, arg=None, return_logits=False):
    sharded = NamedSharding(mesh, P("data"))
    loss_sum = correct = 0.0
    logits = []
    for xb, yb, mask, n in _batches(x, y, batch_size, mesh.devices.size):
        m = step(state, jax.device_put(xb, sharded), jax.device_put(yb, sharded), jax.device_put(mask, sharded), arg)
        loss_sum += float(m["loss_sum"])
        correct += float(m["correct"])
        if return_logits:
            logits.append(np.asarray(m["logits"])[:n])
    out = {"loss": loss_sum / len(x), "accuracy": correct / len(x)}
    if return_logits:
        out["logits"] = np.concatenate(logits)
    return out


def _replicated_state(model, mesh):
    graphdef, state = nnx.split((model, nnx.Optimizer(model, optax.identity(), wrt=nnx.Param)))
    return graphdef, jax.device_put(state, NamedSharding(mesh, P()))


def evaluate(model: nnx.Module, images, labels, *, batch_size: int = 1000,
             transform: Callable | None = None, params: Sequence | None = None,
             mesh: Mesh | None = None) -> dict | list[dict]:
    """Mean loss and accuracy of ``model`` (in eval mode) on ``(images, labels)``.

    With ``transform(images, p) -> images`` and a sequence ``params``, returns one result per
    ``p`` (e.g. accuracy under rotation by each angle); ``p`` is traced, so the step compiles once.
    """
    x, y = _check_data(images, labels, "images")
    mesh = mesh or data_mesh()
    graphdef, state = _replicated_state(model, mesh)
    step = jax.jit(_make_eval_step(graphdef, transform))
    if transform is None:
        return _evaluate_state(step, state, x, y, batch_size=batch_size, mesh=mesh)
    if params is None:
        raise ValueError("`params` must be given with `transform`: a sequence of values for its second argument")
    return [_evaluate_state(step, state, x, y, batch_size=batch_size, mesh=mesh, arg=jnp.asarray(p))
            for p in params]


def predict(model: nnx.Module, images, *, batch_size: int = 1000, mesh: Mesh | None = None) -> np.ndarray:
    """Logits ``(N, num_classes)`` of ``model`` in eval mode."""
    x = np.asarray(images, np.float32)
    mesh = mesh or data_mesh()
    graphdef, state = _replicated_state(model, mesh)
    step = jax.jit(_make_eval_step(graphdef, None))
    return _evaluate_state(step, state, x, np.zeros(len(x), np.int32), batch_size=batch_size, mesh=mesh,
                           return_logits=True)["logits"]
