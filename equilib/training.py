"""A small, deterministic, data-parallel trainer for Flax NNX classifiers.

* jit-compiled train and eval steps; the whole model + optimizer state is one pytree.
* Data parallel over ``jax.devices()`` with ``jax.sharding``: the batch is split along a
  ``"data"`` mesh axis, the state is replicated; XLA inserts the reductions, so batch-norm
  statistics are those of the global batch and a 1-device and a 2-device run compute the same
  function (up to float summation order). Force two CPU devices with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (set before importing jax); on a busy
  machine also raise XLA:CPU's 40 s collective timeout
  (``--xla_cpu_collective_call_terminate_timeout_seconds=600``), as ``experiments`` does.
* Multi-process runs (one process per host; :mod:`equilib.distributed`,
  ``python -m equilib.launch``) work unchanged: the mesh spans every process' devices, each
  process feeds only its devices' rows of every global batch (the same batches and keys as one
  process), metrics are global, only process 0 writes ``config.json``, ``metrics.jsonl`` and the
  progress line, and orbax writes the checkpoints from all processes together.
* A mixed-precision policy, ``TrainConfig(compute_dtype="bfloat16")``: bfloat16 compute,
  float32 parameters, optimizer state, batch-norm statistics and loss.
* A workdir with ``config.json``, ``metrics.jsonl`` (one line per epoch) and orbax checkpoints
  (every ``checkpoint_every`` epochs, the last two kept). ``fit`` on a workdir that holds a
  checkpoint resumes from it; every source of randomness (initialisation, shuffling,
  augmentation, dropout) derives from ``seed`` and the epoch/step, so a run killed and resumed
  ends with the same metrics as an uninterrupted one.
* A progress line with images/s (tqdm when installed).
* JAX's persistent compilation cache (:func:`use_compilation_cache`), on by default in
  ``workdir/jax_cache``: a run started again in a new process loads its compiled steps instead
  of compiling them.
* :func:`recalibrate_batch_norm`: batch-norm statistics from one pass over the training set
  with the final weights (the G-CNN protocol's pass before testing).

Inputs are numpy arrays in host memory: images ``(N, H, W, C)`` (volumes ``(N, D, H, W, C)``) float32,
labels ``(N,)`` int.
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

__all__ = ["TrainConfig", "FitResult", "fit", "recalibrate_batch_norm", "evaluate", "predict", "data_mesh",
           "count_params", "use_compilation_cache"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit` (all JSON-serialisable; saved as ``config.json``).

    Frozen: a run's config is recorded in its workdir, and resuming needs the same config (only
    ``epochs`` may grow).

    Args:
        epochs: the number of epochs (int >= 1).
        batch_size: training images per step (int >= 1), a multiple of the number of devices;
            each epoch takes ``N // batch_size`` full steps (the rest of the permutation is left out).
        learning_rate: the initial learning rate (> 0).
        optimizer: ``"adam"`` (``optax.adam``, or ``optax.adamw`` with ``weight_decay``) or
            ``"sgd"`` (momentum 0.9; ``weight_decay`` times the weights added to the gradient).
        weight_decay: the weight decay (0: none).
        lr_decay_epochs: multiply the learning rate by ``lr_decay`` after each of these epochs.
        lr_decay: the factor of each decay.
        seed: the seed of every source of randomness (initialisation, shuffling, augmentation,
            dropout).
        eval_batch_size: images per evaluation step (int >= 1).
        checkpoint_every: write a checkpoint every this many epochs (and after the last);
            0 disables checkpoints.
        compute_dtype: the mixed-precision policy: None (default) computes in the model's own
            dtypes; ``"bfloat16"`` casts the floating parameters and the images to bfloat16
            inside each step (forward and backward in bfloat16, for GPUs and TPUs) while the
            parameters, the optimizer state, the batch-norm statistics and the loss stay
            float32; ``"float32"`` casts to float32. The validation during training uses it
            too; the returned model holds float32 parameters.

    Raises:
        ValueError: ``epochs``, ``batch_size`` or ``eval_batch_size`` not a positive integer,
            an unknown ``optimizer`` or ``compute_dtype``, or ``learning_rate`` not > 0.

    Example:
        >>> from equilib.training import TrainConfig
        >>> config = TrainConfig(epochs=30, batch_size=64, optimizer="sgd", lr_decay_epochs=[20])
        >>> config.lr_decay_epochs, config.to_json()["optimizer"]
        ((20,), 'sgd')
        >>> TrainConfig(batch_size=0)
        Traceback (most recent call last):
            ...
        ValueError: `batch_size` must be a positive integer, got 0
    """

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
    compute_dtype: str | None = None  # None | "float32" | "bfloat16"

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"`optimizer` must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate!r}")
        if self.compute_dtype is not None:
            object.__setattr__(self, "compute_dtype", _policy_name(self.compute_dtype))
        object.__setattr__(self, "lr_decay_epochs", tuple(int(e) for e in self.lr_decay_epochs))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


_POLICY_DTYPES = ("float32", "bfloat16")


def _policy_name(dtype) -> str:
    """The name of a compute dtype of the policy, or a ValueError (float16 would need loss scaling)."""
    try:
        name = jnp.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _POLICY_DTYPES:
        raise ValueError(f"`compute_dtype` must be None, 'float32' or 'bfloat16', got {dtype!r}"
                         + (" (float16 would need loss scaling)" if name == "float16" else ""))
    return name


def _cast_floating(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _in_compute_dtype(model: nnx.Module, dtype) -> nnx.Module:
    """A copy of ``model`` whose floating parameters are ``dtype``; its other state (batch-norm
    statistics, RNG counters) is that of ``model`` (read back with ``nnx.state(copy, nnx.Not(nnx.Param))``)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]
    return nnx.merge(graphdef, _cast_floating(params, dtype), rest)


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Args:
        model: the trained model, in eval mode, its state on the host.
        history: one dict of metrics per epoch (``epoch``, ``train_loss``, ``train_accuracy``,
            ``epoch_seconds``, ``images_per_second``, and ``val_loss``/``val_accuracy`` with
            validation data), including the epochs restored from a checkpoint.
        train_seconds: wall-clock seconds of the epochs run in this call.
        resumed_from_epoch: the epoch of the checkpoint resumed from (0: a fresh run).

    Example:
        >>> import dataclasses
        >>> from equilib.training import FitResult
        >>> [f.name for f in dataclasses.fields(FitResult)]
        ['model', 'history', 'train_seconds', 'resumed_from_epoch']
    """

    model: nnx.Module
    history: list[dict]
    train_seconds: float
    resumed_from_epoch: int


def data_mesh(devices: Sequence | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all).

    :func:`fit`, :func:`evaluate`, :func:`predict` and :func:`recalibrate_batch_norm` split
    each batch along this axis and replicate the model over it.

    Args:
        devices: the JAX devices of the mesh (default ``jax.devices()``).

    Returns:
        A ``jax.sharding.Mesh`` with the single axis ``"data"``.

    Example:
        >>> import jax
        >>> from equilib.training import data_mesh
        >>> mesh = data_mesh(jax.devices()[:1])
        >>> mesh.axis_names, mesh.devices.size
        (('data',), 1)
    """
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def _replicate(tree, mesh: Mesh):
    """``tree`` on every device of ``mesh``, also of other processes (each process passes the same
    values). Typed PRNG keys go as their raw bits: ``device_put`` cannot send them to another
    process' devices."""
    sharding = NamedSharding(mesh, P())

    def put(a):
        if jnp.issubdtype(getattr(a, "dtype", np.float32), jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jax.device_put(jax.random.key_data(a), sharding),
                                            impl=jax.random.key_impl(a))
        return jax.device_put(a, sharding)

    return jax.tree.map(put, tree)


def _global_batch(x: np.ndarray, rows: np.ndarray | None, sharding: NamedSharding) -> jax.Array:
    """``x[rows]`` (``rows`` None: all of ``x``) as one array split along its first axis over the
    mesh; each process reads only the rows of its own devices, so a multi-process run feeds
    every global batch once."""
    n = len(x) if rows is None else len(rows)

    def shard(index):
        first = index[0]
        part = x[first] if rows is None else x[rows[first]]
        return part[(slice(None),) + tuple(index[1:])]

    return jax.make_array_from_callback((n,) + x.shape[1:], sharding, shard)


def _to_host(a: jax.Array) -> np.ndarray:
    """The whole of ``a`` as a numpy array in every process (gathered across processes if needed)."""
    if a.is_fully_addressable or a.is_fully_replicated:
        return np.asarray(a)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves) of ``model``.

    Batch-norm statistics (``nnx.BatchStat``) and other non-parameter state are not counted.

    Args:
        model: a Flax NNX module.

    Returns:
        The total size of its parameters, an int.

    Example:
        >>> from flax import nnx
        >>> from equilib.training import count_params
        >>> count_params(nnx.Linear(16, 3, rngs=nnx.Rngs(0)))  # 16 * 3 weights + 3 biases
        51
    """
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
    if x.ndim not in (4, 5):
        raise ValueError(f"{name}: the images must have shape (N, H, W, C) (or (N, D, H, W, C) for volumes), "
                         f"got {x.shape}")
    if y.ndim < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}: the labels must have shape ({x.shape[0]},) (one per image) or "
                         f"({x.shape[0]}, ...) (one per output position, e.g. (N, H, W) for segmentation), "
                         f"got {y.shape}")
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


def _policy_loss_and_logits(model, x, y, compute_dtype):
    low = _in_compute_dtype(model, compute_dtype)
    logits = low(x.astype(compute_dtype)).astype(jnp.float32)
    # the batch-norm statistics (and RNG counters) it updated, in the model's own dtypes (float32)
    nnx.update(model, jax.tree.map(lambda new, old: new if new.dtype == old.dtype else new.astype(old.dtype),
                                   nnx.state(low, nnx.Not(nnx.Param)), nnx.state(model, nnx.Not(nnx.Param))))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, logits


def _correct(logits, y):
    """Per example, the fraction of its labels predicted right (0 or 1 for one label per example)."""
    hits = jnp.argmax(logits, -1) == y
    return hits if y.ndim == 1 else jnp.mean(hits.reshape(y.shape[0], -1), axis=1)


def _make_train_step(graphdef, augment, joint_augment, compute_dtype=None):
    def step(state, x, y, key):
        model, opt = nnx.merge(graphdef, state)
        model.train()
        if augment is not None:
            x = augment(key, x)
        if joint_augment is not None:
            x, y = joint_augment(key, x, y)
        if compute_dtype is None:
            (loss, logits), grads = nnx.value_and_grad(_loss_and_logits, has_aux=True)(model, x, y)
        else:  # differentiate through the cast: the gradients arrive float32, as the parameters
            (loss, logits), grads = nnx.value_and_grad(_policy_loss_and_logits, has_aux=True)(model, x, y,
                                                                                              compute_dtype)
        opt.update(model, grads)
        return nnx.state((model, opt)), {"loss_sum": loss * y.shape[0], "correct": jnp.sum(_correct(logits, y))}

    return step


def _make_eval_step(graphdef, transform, compute_dtype=None):
    def step(state, x, y, mask, arg):
        model, _ = nnx.merge(graphdef, state)
        model.eval()
        if transform is not None:
            x = transform(x, arg)
        if compute_dtype is not None:
            model, x = _in_compute_dtype(model, compute_dtype), x.astype(compute_dtype)
        logits = model(x)
        if compute_dtype is not None:
            logits = logits.astype(jnp.float32)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        if y.ndim > 1:  # dense labels: each example's mean over its positions
            losses = jnp.mean(losses.reshape(y.shape[0], -1), axis=1)
        return {"loss_sum": jnp.sum(losses * mask), "correct": jnp.sum(_correct(logits, y) * mask),
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


# --- fit, in parts ----------------------------------------------------------------------------
def _check_fit_args(train: tuple, val: tuple | None, config: TrainConfig, mesh: Mesh | None):
    """``(x_train, y_train), val, mesh, steps_per_epoch``, or a TypeError / ValueError."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig, got {type(config).__name__}")
    for name, pair in (("train", train), ("val", val)):
        if pair is not None and (not isinstance(pair, (tuple, list)) or len(pair) != 2):
            raise TypeError(f"`{name}` must be a pair (images, labels), got {type(pair).__name__}")
    train = _check_data(train[0], train[1], "train")
    if val is not None:
        val = _check_data(val[0], val[1], "val")
    mesh = mesh or data_mesh()
    n_dev = mesh.devices.size
    if config.batch_size % n_dev:
        raise ValueError(f"`batch_size` (={config.batch_size}) must be a multiple of the number of "
                         f"devices (={n_dev})")
    steps_per_epoch = len(train[0]) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"`batch_size` (={config.batch_size}) exceeds the training set (={len(train[0])})")
    return train, val, mesh, steps_per_epoch


def _open_workdir(workdir: pathlib.Path, config: TrainConfig, state):
    """Record ``config`` in ``workdir/config.json`` (refusing another run's workdir), restore the
    latest checkpoint into ``state`` and keep the metrics of the epochs it covers.

    Returns ``(state, start_epoch, history, checkpoints or None)``."""
    primary = jax.process_index() == 0  # in a multi-process run only process 0 writes files
    if primary:
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
    if primary:
        _write_atomic(cfg_path, json.dumps(existing, indent=2))
    start_epoch, ckpt, history = 0, None, []
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
        if primary:
            _write_atomic(metrics_path, "".join(json.dumps(m) + "\n" for m in history))
    return state, start_epoch, history, ckpt


def _train_epoch(train_step, state, train, root, epoch: int, config: TrainConfig, *, steps_per_epoch: int,
                 sharded, progress: bool):
    """One epoch over a permutation drawn from ``root`` and ``epoch``. Returns ``(state, record)``."""
    x_train, y_train = train
    t0 = time.perf_counter()
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(root, epoch), len(x_train)))
    bar = _Progress(steps_per_epoch * config.batch_size, f"epoch {epoch}/{config.epochs}", progress)
    loss_sum = correct = 0.0
    for i in range(steps_per_epoch):
        idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
        xb = _global_batch(x_train, idx, sharded)
        yb = _global_batch(y_train, idx, sharded)
        key = jax.random.fold_in(jax.random.fold_in(root, 10_000 + epoch), i)
        state, m = train_step(state, xb, yb, key)
        loss_sum += m["loss_sum"]
        correct += m["correct"]
        bar.update(config.batch_size)
    bar.close()
    n = steps_per_epoch * config.batch_size
    loss_sum, correct = float(loss_sum), float(correct)  # waits for the last step
    seconds = time.perf_counter() - t0
    return state, {"epoch": epoch, "train_loss": loss_sum / n, "train_accuracy": correct / n,
                   "epoch_seconds": seconds, "images_per_second": n / seconds}


def _end_epoch(record: dict, state, config: TrainConfig, *, workdir, ckpt, progress: bool) -> None:
    """Append the epoch's metrics to ``metrics.jsonl``, checkpoint when due, print a line."""
    epoch = record["epoch"]
    if workdir is not None:
        if jax.process_index() == 0:
            with open(workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if ckpt is not None and (epoch % config.checkpoint_every == 0 or epoch == config.epochs):
            ckpt.save(epoch, state)
    if progress:
        msg = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
        print(f"epoch {epoch}: {msg}", file=sys.stderr)


# --- public API -------------------------------------------------------------------------------
def use_compilation_cache(cache_dir: str | os.PathLike) -> pathlib.Path:
    """Turn on JAX's persistent compilation cache in ``cache_dir`` for this process: every
    computation compiled from now on is written there, and one compiled before, in any process
    with the same jax/jaxlib, backend and ``XLA_FLAGS``, is loaded instead of compiled.

    Unlike JAX's default (only computations that took >= 1 s to compile), every computation is
    cached: a model's first jit is made of many small ones (parameter initialisation, the steps).
    The cache is per process: calling it again with another folder switches to that folder.
    The folder is trusted code: do not share it with users you do not trust.

    Args:
        cache_dir: the folder (created if needed).

    Returns:
        The folder, absolute.

    Raises:
        TypeError: ``cache_dir`` is not a path.

    Example:
        >>> import tempfile, jax, jax.numpy as jnp
        >>> from equilib.training import use_compilation_cache
        >>> folder = use_compilation_cache(tempfile.mkdtemp())
        >>> _ = jax.jit(lambda x: x * 2.0)(jnp.ones(3))  # compiled and written to the folder
        >>> any(folder.iterdir())
        True
    """
    from jax.experimental.compilation_cache import compilation_cache as cc

    if not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"`cache_dir` must be a path (str or os.PathLike), got {type(cache_dir).__name__}")
    path = pathlib.Path(cache_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    if getattr(jax.config, "jax_compilation_cache_dir", None) != str(path):
        jax.config.update("jax_compilation_cache_dir", str(path))
        cc.reset_cache()  # the cache binds its folder once per process; let it bind the new one
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


def fit(model_fn: Callable[[nnx.Rngs], nnx.Module], train: tuple, config: TrainConfig, *,
        workdir: str | os.PathLike | None = None, val: tuple | None = None,
        augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
        mesh: Mesh | None = None, progress: bool = True,
        on_epoch_end: Callable[[int, dict], None] | None = None,
        joint_augment: Callable[[jax.Array, jax.Array, jax.Array], tuple] | None = None,
        cache_dir: str | os.PathLike | None = "auto") -> FitResult:
    """Train ``model_fn(nnx.Rngs(seed))`` on ``train = (images, labels)``.

    ``augment(key, images) -> images`` runs on device inside the jitted step, with a key
    derived from ``seed`` and the global step. ``val`` is evaluated after every epoch. With a
    ``workdir``, metrics and checkpoints are written there and an existing checkpoint is resumed.
    ``on_epoch_end(epoch, metrics)`` is called after each epoch's checkpoint is written.
    Returns the trained model (on host-replicated state) and the per-epoch metrics.

    Args:
        model_fn: builds the model from ``nnx.Rngs(params=seed, dropout=seed + 1)``; the model
            maps images ``(B, H, W, C)`` to logits ``(B, num_classes)`` (or, for dense
            prediction, ``(B, ..., num_classes)``, e.g. per pixel) and is trained with softmax
            cross-entropy, averaged over the labels.
        train: ``(images, labels)``: float images ``(N, H, W, C)`` and int labels ``(N,)`` (or
            ``(N, ...)`` matching the logits without their last axis, e.g. ``(N, H, W)`` for
            segmentation; accuracies are then fractions of labels), numpy arrays in host memory.
        config: the :class:`TrainConfig`.
        workdir: a folder for ``config.json``, ``metrics.jsonl`` and checkpoints (created if
            needed); a checkpoint there is resumed. None: nothing is written.
        val: ``(images, labels)`` evaluated after every epoch, as ``train``.
        augment: ``augment(key, images) -> images`` on each training batch ``(B, H, W, C)``,
            inside the jitted step (e.g. :func:`equilib.transforms.normalized_augment`).
        mesh: a 1-D ``"data"`` mesh (default :func:`data_mesh` over all devices).
        progress: print a progress line and one line per epoch to stderr.
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after each epoch.
        joint_augment: ``joint_augment(key, images, labels) -> (images, labels)``, for dense
            labels that must move with the images (e.g. a rotation of an image and its label
            map); after ``augment`` if both are given.
        cache_dir: JAX's persistent compilation cache (:func:`use_compilation_cache`):
            ``"auto"`` (default) ``workdir/jax_cache`` when there is a workdir (else JAX's
            setting is left as it is), a folder, or None to leave JAX's setting as it is.

    Returns:
        A :class:`FitResult`: the trained model (eval mode) and one metrics dict per epoch.

    Raises:
        TypeError: ``config`` is not a TrainConfig, or ``train``/``val`` not a pair.
        ValueError: images not ``(N, H, W, C)`` / ``(N, D, H, W, C)`` or labels not ``(N, ...)``; ``batch_size`` not a
            multiple of the number of devices or larger than the training set; ``workdir``
            holding a run with another config.

    Example:
        One epoch of a linear classifier on 64 random 8x8 images (two steps of 32):

        >>> import numpy as np
        >>> from flax import nnx
        >>> from equilib.training import TrainConfig, fit
        >>> class Linear(nnx.Module):
        ...     def __init__(self, rngs):  # zeros: softmax regression needs no random start
        ...         self.dense = nnx.Linear(64, 10, kernel_init=nnx.initializers.zeros, rngs=rngs)
        ...
        ...     def __call__(self, x):  # (B, 8, 8, 1) -> (B, 10)
        ...         return self.dense(x.reshape(x.shape[0], -1))
        >>> rng = np.random.default_rng(0)
        >>> images, labels = rng.normal(size=(64, 8, 8, 1)), rng.integers(0, 10, 64)
        >>> config = TrainConfig(epochs=1, batch_size=32, checkpoint_every=0)
        >>> result = fit(Linear, (images, labels), config, progress=False)
        >>> len(result.history), result.history[0]["epoch"], result.resumed_from_epoch
        (1, 1, 0)
    """
    (x_train, y_train), val, mesh, steps_per_epoch = _check_fit_args(train, val, config, mesh)
    progress = progress and jax.process_index() == 0  # one progress line in a multi-process run
    if isinstance(cache_dir, str) and cache_dir == "auto":
        cache_dir = None if workdir is None else pathlib.Path(workdir) / "jax_cache"
    if cache_dir is not None:
        use_compilation_cache(cache_dir)
    root = jax.random.key(config.seed)
    model = model_fn(nnx.Rngs(params=config.seed, dropout=config.seed + 1))
    opt = nnx.Optimizer(model, _optimizer(config, steps_per_epoch), wrt=nnx.Param)
    graphdef, state = nnx.split((model, opt))
    history: list[dict] = []
    start_epoch, ckpt = 0, None
    if workdir is not None:
        workdir = pathlib.Path(workdir)
        state, start_epoch, history, ckpt = _open_workdir(workdir, config, state)

    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P("data"))
    state = _replicate(state, mesh)
    train_step = jax.jit(_make_train_step(graphdef, augment, joint_augment, config.compute_dtype), donate_argnums=0,
                         out_shardings=(replicated, replicated))
    eval_step = jax.jit(_make_eval_step(graphdef, None, config.compute_dtype))

    t_start = time.perf_counter()
    for epoch in range(start_epoch + 1, config.epochs + 1):
        state, record = _train_epoch(train_step, state, (x_train, y_train), root, epoch, config,
                                     steps_per_epoch=steps_per_epoch, sharded=sharded, progress=progress)
        if val is not None:
            vm = _evaluate_state(eval_step, state, *val, batch_size=config.eval_batch_size, mesh=mesh)
            record.update({"val_loss": vm["loss"], "val_accuracy": vm["accuracy"]})
        history.append(record)
        _end_epoch(record, state, config, workdir=workdir, ckpt=ckpt, progress=progress)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)

    model, _ = nnx.merge(graphdef, jax.tree.map(_to_host_state, state))
    model.eval()
    return FitResult(model, history, time.perf_counter() - t_start, start_epoch)


def _to_host_state(a):
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):  # keys stay JAX arrays, on this process' first device
        return jax.random.wrap_key_data(jnp.asarray(_to_host(jax.random.key_data(a))), impl=jax.random.key_impl(a))
    return _to_host(a)


def _batch_norms(model: nnx.Module) -> list:
    """The modules of ``model`` that update running statistics as ``ra = momentum * ra +
    (1 - momentum) * batch``: a ``momentum`` and a ``mean`` held as :class:`flax.nnx.BatchStat`."""
    return [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Module) and hasattr(m, "momentum")
            and isinstance(getattr(m, "mean", None), nnx.BatchStat)]


def _modes(model: nnx.Module) -> list[tuple]:
    """``(module, attribute, value)`` of every train/eval switch (``deterministic``,
    ``use_running_average``) in ``model``, to put back later."""
    return [(m, a, getattr(m, a)) for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Module)
            for a in ("deterministic", "use_running_average") if hasattr(m, a)]


def recalibrate_batch_norm(model: nnx.Module, images, *, batch_size: int,
                           augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                           key: jax.Array | None = None, mesh: Mesh | None = None) -> None:
    """Set every batch norm's running mean and variance to the average of its batch statistics
    over one pass over ``images``, with the model's current weights.

    The "finetune" pass of Cohen & Welling's G-CNN code before testing: the model runs in
    training mode (dropout on, as there) with each batch norm's momentum at 0, and the running
    statistics become the mean over the batches of the batch statistics. A batch norm is any
    module with a ``momentum`` and a ``mean`` :class:`flax.nnx.BatchStat` updated as
    ``momentum * running + (1 - momentum) * batch`` (``nnx.BatchNorm`` and equilib's batch
    norms). Afterwards the momenta and every module's train/eval mode (``deterministic``,
    ``use_running_average``) are put back as they were, also when an error interrupts the pass,
    and then the running statistics are put back too. The model's state is replicated over
    ``mesh``.

    Args:
        model: a Flax NNX model with batch norms (without any, nothing happens).
        images: ``(N, H, W, C)`` images as the model takes them (numpy); ``N // batch_size``
            full batches are used (one batch of ``N`` if ``N < batch_size``).
        batch_size: images per batch, a positive multiple of the number of devices of ``mesh``.
        augment: optional ``augment(key, images) -> images`` applied to each batch on device,
            as in :func:`fit`.
        key: PRNG key of ``augment`` (batch ``i`` gets ``fold_in(key, i)``); default ``key(0)``.
        mesh: a 1-D ``"data"`` mesh (default :func:`data_mesh`).

    Returns:
        None: ``model`` is updated in place.

    Raises:
        ValueError: if ``batch_size`` is not a positive integer, ``images`` is empty, or a batch
            does not split evenly over the devices.

    Example:
        >>> import numpy as np
        >>> from flax import nnx
        >>> from equilib.training import recalibrate_batch_norm
        >>> bn = nnx.BatchNorm(1, rngs=nnx.Rngs(0))
        >>> bn.eval()
        >>> images = np.full((8, 4, 4, 1), 3.0, np.float32)
        >>> recalibrate_batch_norm(bn, images, batch_size=4)
        >>> float(bn.mean[0]), bn.use_running_average
        (3.0, True)
    """
    mesh = mesh or data_mesh()
    _check_recalibration(images, batch_size, mesh.devices.size)
    bns = _batch_norms(model)
    if not bns:
        return
    modes, momenta = _modes(model), [m.momentum for m in bns]
    # replicate the state over the mesh first: otherwise the second call sees new shardings and recompiles
    nnx.update(model, _replicate(nnx.state(model), mesh))
    saved = jax.tree.map(lambda a: a, nnx.state(model, nnx.BatchStat))  # a snapshot: state() gives references
    try:
        for m in bns:
            m.momentum = 0.0  # running statistics := this batch's statistics
        model.train()
        _average_batch_stats(model, images, batch_size, augment, jax.random.key(0) if key is None else key, mesh)
    except BaseException:
        nnx.update(model, saved)
        raise
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        for m, attribute, value in modes:
            setattr(m, attribute, value)


def _check_recalibration(images, batch_size, n_dev: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if len(images) == 0:
        raise ValueError("`images` must hold at least one image, got an empty array")
    if min(batch_size, len(images)) % n_dev:
        raise ValueError(f"batches of {min(batch_size, len(images))} images (`batch_size`={batch_size}, "
                         f"{len(images)} images) do not split over the {n_dev} devices: use a multiple of {n_dev}")


def _average_batch_stats(model, x, batch_size: int, augment, key, mesh) -> None:
    sharded = NamedSharding(mesh, P("data"))

    @nnx.jit
    def step(model, xb, k):  # momentum 0: the running statistics become this batch's
        if augment is not None:
            xb = augment(k, xb)
        model(xb)

    total, n_batches = None, max(len(x) // batch_size, 1)
    for i in range(n_batches):
        step(model, _global_batch(x[i * batch_size:(i + 1) * batch_size], None, sharded), jax.random.fold_in(key, i))
        # a copy: nnx.state holds the model's own variables, which the next batch overwrites
        stats = jax.tree.map(lambda a: a, nnx.state(model, nnx.BatchStat))
        total = stats if total is None else jax.tree.map(lambda a, b: a + b, total, stats)
    nnx.update(model, jax.tree.map(lambda a: a / n_batches, total))


def _batches(x, y, batch_size: int, n_dev: int):
    """Fixed-size batches (a multiple of the device count); the last one padded, with a mask."""
    bs = int(math.ceil(batch_size / n_dev) * n_dev)
    for i in range(0, len(x), bs):
        xb, yb = x[i:i + bs], y[i:i + bs]
        mask = np.ones(len(xb), np.float32)
        if len(xb) < bs:
            pad = bs - len(xb)
            xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
            yb = np.concatenate([yb, np.zeros((pad,) + yb.shape[1:], yb.dtype)])
            mask = np.concatenate([mask, np.zeros(pad, np.float32)])
        yield xb, yb, mask, len(x[i:i + bs])


def _evaluate_state(step, state, x, y, *, batch_size, mesh, arg=None, return_logits=False):
    sharded = NamedSharding(mesh, P("data"))
    loss_sum = correct = 0.0
    logits = []
    for xb, yb, mask, n in _batches(x, y, batch_size, mesh.devices.size):
        m = step(state, _global_batch(xb, None, sharded), _global_batch(yb, None, sharded),
                 _global_batch(mask, None, sharded), arg)
        loss_sum += float(m["loss_sum"])
        correct += float(m["correct"])
        if return_logits:
            logits.append(_to_host(m["logits"])[:n])
    out: dict = {"loss": loss_sum / len(x), "accuracy": correct / len(x)}
    if return_logits:
        out["logits"] = np.concatenate(logits)
    return out


def _replicated_state(model, mesh):
    graphdef, state = nnx.split((model, nnx.Optimizer(model, optax.identity(), wrt=nnx.Param)))
    return graphdef, _replicate(state, mesh)


def evaluate(model: nnx.Module, images, labels, *, batch_size: int = 1000,
             transform: Callable | None = None, params: Sequence | None = None,
             mesh: Mesh | None = None, compute_dtype: str | None = None) -> dict | list[dict]:
    """Mean loss and accuracy of ``model`` (in eval mode) on ``(images, labels)``.

    With ``transform(images, p) -> images`` and a sequence ``params``, returns one result per
    ``p`` (e.g. accuracy under rotation by each angle); ``p`` is traced, so the step compiles once.

    Args:
        model: a Flax NNX classifier, images ``(B, H, W, C)`` -> logits ``(B, num_classes)``
            (its train/eval mode is left as it was).
        images: ``(N, H, W, C)`` images (numpy; cast to float32).
        labels: ``(N,)`` integer labels, or ``(N, ...)`` dense ones (e.g. ``(N, H, W)`` per pixel,
            for logits ``(B, H, W, num_classes)``; accuracy is then the fraction of labels).
        batch_size: images per step (the last batch is padded and masked).
        transform: ``transform(images, p) -> images`` applied on device to each batch.
        params: the values ``p`` of ``transform``'s second argument, required with it.
        mesh: a 1-D ``"data"`` mesh (default :func:`data_mesh`).
        compute_dtype: None, or ``"float32"``/``"bfloat16"``: the model's floating parameters and
            the images cast to it (``TrainConfig.compute_dtype``); the loss in float32.

    Returns:
        ``{"loss": mean cross-entropy, "accuracy": fraction correct}`` (Python floats), or a
        list of them, one per ``p`` in ``params``.

    Raises:
        ValueError: images not ``(N, H, W, C)`` / ``(N, D, H, W, C)``, labels not ``(N,)``, ``transform`` without
            ``params``, or an unknown ``compute_dtype``.

    Example:
        A classifier with zero weights predicts class 0 with loss ``log(3)``:

        >>> import numpy as np
        >>> from flax import nnx
        >>> from equilib.training import evaluate
        >>> model = nnx.Sequential(lambda x: x.reshape(x.shape[0], -1),
        ...                        nnx.Linear(16, 3, kernel_init=nnx.initializers.zeros, rngs=nnx.Rngs(0)))
        >>> images, labels = np.ones((6, 4, 4, 1), np.float32), np.array([0, 0, 1, 2, 0, 1])
        >>> result = evaluate(model, images, labels, batch_size=4)
        >>> round(result["loss"], 4), result["accuracy"]
        (1.0986, 0.5)
        >>> [r["accuracy"] for r in evaluate(model, images, labels, transform=lambda x, p: p * x,
        ...                                  params=[0.0, 2.0])]
        [0.5, 0.5]
    """
    x, y = _check_data(images, labels, "images/labels")
    compute_dtype = None if compute_dtype is None else _policy_name(compute_dtype)
    mesh = mesh or data_mesh()
    graphdef, state = _replicated_state(model, mesh)
    step = jax.jit(_make_eval_step(graphdef, transform, compute_dtype))
    if transform is None:
        return _evaluate_state(step, state, x, y, batch_size=batch_size, mesh=mesh)
    if params is None:
        raise ValueError("`params` must be given with `transform`: a sequence of values for its second argument")
    return [_evaluate_state(step, state, x, y, batch_size=batch_size, mesh=mesh, arg=jnp.asarray(p))
            for p in params]


def predict(model: nnx.Module, images, *, batch_size: int = 1000, mesh: Mesh | None = None,
            compute_dtype: str | None = None) -> np.ndarray:
    """Logits ``(N, num_classes)`` (or ``(N, ..., num_classes)``, e.g. per pixel) of ``model`` in eval mode.

    Args:
        model: a Flax NNX classifier, images ``(B, H, W, C)`` -> logits ``(B, num_classes)`` or
            ``(B, ..., num_classes)``.
        images: ``(N, H, W, C)`` images (numpy; cast to float32).
        batch_size: images per step (the last batch is padded; the padding is dropped).
        mesh: a 1-D ``"data"`` mesh (default :func:`data_mesh`).
        compute_dtype: None, or ``"float32"``/``"bfloat16"`` as in :func:`evaluate`.

    Returns:
        A float32 numpy array ``(N, num_classes)`` (or ``(N, ..., num_classes)``).

    Example:
        >>> import numpy as np
        >>> from flax import nnx
        >>> from equilib.training import predict
        >>> model = nnx.Sequential(lambda x: x.reshape(x.shape[0], -1), nnx.Linear(16, 3, rngs=nnx.Rngs(0)))
        >>> logits = predict(model, np.ones((5, 4, 4, 1)), batch_size=4)
        >>> logits.shape, logits.dtype
        ((5, 3), dtype('float32'))
    """
    x = np.asarray(images, np.float32)
    compute_dtype = None if compute_dtype is None else _policy_name(compute_dtype)
    mesh = mesh or data_mesh()
    graphdef, state = _replicated_state(model, mesh)
    step = jax.jit(_make_eval_step(graphdef, None, compute_dtype))
    # dummy labels shaped as the logits without their last axis (one per image, or per pixel)
    out = jax.eval_shape(lambda s, xb: nnx.merge(graphdef, s)[0](xb), state,
                         jax.ShapeDtypeStruct((1,) + x.shape[1:], jnp.float32))
    labels = np.zeros((len(x),) + tuple(out.shape[1:-1]), np.int32)
    return _evaluate_state(step, state, x, labels, batch_size=batch_size, mesh=mesh, return_logits=True)["logits"]
