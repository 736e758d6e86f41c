"""The trainer: deterministic resume after a kill, and the same metrics on 1 and 2 devices."""

import dataclasses
import inspect
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib.models import P4CNN, Z2CNN
from equilib.training import TrainConfig, count_params, evaluate, fit, predict, recalibrate_batch_norm


class SmallCNN(nnx.Module):
    """Z2CNN's ingredients at a fraction of its compile time: a convolution, batch norm, the
    maximum over space, dropout and a linear head. (On XLA:CPU the compile time of random bits
    grows with their number: Z2CNN's train step, with dropout on 5 feature maps, takes ~30 s to
    compile, ~10 s without dropout; here dropout acts on the pooled features.)"""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), padding="VALID", rngs=rngs)
        self.bn = nnx.BatchNorm(4, momentum=0.9, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.head = nnx.Linear(4, 10, rngs=rngs)

    def __call__(self, x):
        x = jnp.max(jax.nn.relu(self.bn(self.conv(x))), axis=(1, 2))
        return self.head(self.dropout(x))


def augment(key, x):
    """A random brightness per image (one random number per image: cheap to compile)."""
    return x * (1.0 + 0.1 * jax.random.normal(key, (x.shape[0], 1, 1, 1)))


# fits a model (SmallCNN, or P4CNN of width 4) on a mesh of each of the given sizes, killing itself
# (SIGKILL) after epoch `kill_at`; argv: workdir, kill_at, model, mesh sizes ("1" or "1,2")
SCRIPT = textwrap.dedent("""
    import json, os, pathlib, signal, sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from equilib.models import P4CNN
    from equilib.training import TrainConfig, data_mesh, fit
""") + inspect.getsource(SmallCNN) + inspect.getsource(augment) + textwrap.dedent("""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    workdir, kill_at, model = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    model_fn = {"SmallCNN": SmallCNN, "P4CNN": lambda rngs: P4CNN(width=4, rngs=rngs)}[model]
    def on_epoch_end(epoch, metrics):
        if epoch == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no exception handling
    histories = {}
    for n in map(int, sys.argv[4].split(",")):
        r = fit(model_fn, (x, y), TrainConfig(epochs=3, batch_size=64), workdir=workdir / str(n),
                val=(x[:100], y[:100]), augment=augment, progress=False, on_epoch_end=on_epoch_end,
                mesh=data_mesh(jax.devices()[:n]))
        histories[n] = r.history
    print(json.dumps({"devices": len(jax.devices()), "histories": histories}))
""")


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(256, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 256)


def run_script(workdir, kill_at, model="SmallCNN", devices=1, meshes="1"):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.run([sys.executable, "-c", SCRIPT, str(workdir), str(kill_at), model, meshes],
                          env=env, capture_output=True, text=True, timeout=600)


def strip_times(history):
    return [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")} for h in history]


def test_killed_run_resumes_to_identical_metrics(tmp_path):
    """A model with dropout and batch norm (SmallCNN), with on-device augmentation: every random
    stream (initialisation, shuffling, augmentation, dropout) and the batch-norm statistics are
    restored."""
    killed = run_script(tmp_path, kill_at=2)  # its workdir: tmp_path / "1" (the run on 1 device)
    assert killed.returncode == -9, killed.stderr[-2000:]
    lines = (tmp_path / "1" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # epochs 1 and 2 were logged and checkpointed before the kill
    x, y = data()
    cfg = TrainConfig(epochs=3, batch_size=64)
    resumed = fit(SmallCNN, (x, y), cfg, workdir=tmp_path / "1", val=(x[:100], y[:100]), augment=augment,
                  progress=False)
    # an uninterrupted run (its steps loaded from the compilation cache the runs above filled)
    fresh = fit(SmallCNN, (x, y), cfg, workdir=tmp_path / "fresh", val=(x[:100], y[:100]), augment=augment,
                progress=False, cache_dir=tmp_path / "1" / "jax_cache")
    assert resumed.resumed_from_epoch == 2 and fresh.resumed_from_epoch == 0
    assert strip_times(resumed.history) == strip_times(fresh.history)
    saved = [json.loads(line) for line in (tmp_path / "1" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in saved] == [1, 2, 3]
    np.testing.assert_array_equal(predict(resumed.model, x[:50]), predict(fresh.model, x[:50]))


STEP_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)  # for the float64 reference only; the model runs in float32
    import equilib, numpy as np, optax, jax.numpy as jnp
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from equilib.models import P4CNN
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 64)
    def loss(model, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
    step = nnx.jit(nnx.value_and_grad(loss))
    one = step(P4CNN(rngs=nnx.Rngs(0)), x, y)
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))
    put = lambda t, spec: jax.device_put(t, NamedSharding(mesh, spec))
    model = P4CNN(rngs=nnx.Rngs(0))
    nnx.update(model, put(nnx.state(model), P()))
    two = step(model, put(x, P("data")), put(y, P("data")))
    model = P4CNN(rngs=nnx.Rngs(0))
    nnx.update(model, jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                                   nnx.state(model)))
    ref = step(model, x.astype(np.float64), y)
    scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(ref)[1:])  # the largest gradient entry
    norm = lambda a: float(np.max(np.abs(a)))
    def errors(a, b):
        return [norm(np.asarray(u, np.float64) - np.asarray(v, np.float64)) / (norm(u) if norm(u) > 1e-4 * scale
                else scale) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    print(json.dumps({"devices": len(jax.devices()), "one_two": errors(one, two), "one_ref": errors(ref, one),
                      "two_ref": errors(ref, two)}))
""")


def _step_errors(**env_extra):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", **env_extra}
    p = subprocess.run([sys.executable, "-c", STEP_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.splitlines()[-1])
    assert r["devices"] == 2
    return r


def test_one_train_step_is_the_same_function_on_one_and_two_devices():
    """The loss and every parameter's gradient (P4CNN, batch 64 on one device vs split over two),
    relative to the leaf's largest entry, or to the largest gradient entry for the leaves whose true
    gradient is 0 (the conv biases in front of a batch norm: their computed gradient is rounding),
    and both against a float64 reference, with equilib's default XLA flag and without it
    (``EQUILIB_XLA_FLAGS=0``, XLA:CPU's YNNPACK fusions on).

    Measured (jax/jaxlib 0.10.2, AMD EPYC, 2026-12-02): one vs two devices 1.2e-6 (YNNPACK on)
    and 4.5e-6 (default), each 1e-6 to 9e-6 from float64. Bounds 2e-5 and 5e-5. Before batch
    norm's sums were pairwise (``equilib._src.sums.row_sums``), one long float32 sum over the
    batch moved the two-device gradients by 6.6e-3 on this CPU (benchmarks/RESULTS.md,
    section 3): the bounds catch that."""
    for env in ({"EQUILIB_XLA_FLAGS": "0"}, {}):
        r = _step_errors(**env)
        assert r["one_two"][0] < 1e-6, (env, r)  # the loss
        assert max(r["one_two"]) < 2e-5, (env, r["one_two"])
        assert max(r["one_ref"]) < 5e-5 and max(r["two_ref"]) < 5e-5, (env, r)


def test_same_metrics_on_one_and_two_devices(tmp_path):
    # one process with two devices fits the same P4CNN on a mesh of one device and on both
    p = run_script(tmp_path, kill_at=-1, model="P4CNN", devices=2, meshes="1,2")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.splitlines()[-1])
    assert r["devices"] == 2
    one, two = r["histories"]["1"], r["histories"]["2"]
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        # One step is the same function on 1 and 2 devices (the test above); over epochs the
        # runs drift apart because Adam amplifies rounding: its first steps move every weight by
        # about lr * sign(gradient), and the conv biases in front of a batch norm have a true
        # gradient of 0, so their sign (and their step) comes from the order of the sums.
        # Measured (jax/jaxlib 0.10.2, 2026-12-01, P4CNN, 3 epochs of 4 steps): train loss
        # 0-9e-6, 4e-5-1.3e-4, 4e-5-3e-4 apart across code paths (the im2col path before
        # happened to give bit-identical sums: 6e-8); validation loss up to 1.4e-3.
        # 2026-12-02, P4CNN(width=4) as here (1 and 2 devices in one process or in two gave the
        # same numbers): train loss 0, 1e-7, 7e-7 apart, validation loss 6e-5, 3e-5, 4e-4, one
        # validation image flipped in epoch 3; the default width 10 then gave 0, 4e-5, 2e-4,
        # up to 8e-4, two images.
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=2e-3)
        np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-2)
        # at most two of the 100 validation images flip (compared in images: 0.01 is not exact in binary)
        assert round(abs(a["val_accuracy"] - b["val_accuracy"]) * 100) <= 2


def test_evaluate_under_rotation_and_bad_config(tmp_path):
    x, y = data()
    config = TrainConfig(epochs=1, batch_size=64, checkpoint_every=0)
    r = fit(lambda rngs: P4CNN(rngs=rngs), (x, y), config, workdir=tmp_path, progress=False)
    assert count_params(r.model) == 24_680
    from equilib.functional import rotate
    res = evaluate(r.model, x[:100], y[:100], transform=lambda x, a: rotate(x, a, axes=(1, 2)),
                   params=[0.0, np.pi / 2, np.pi, 0.4])
    # P4CNN is exactly invariant to quarter turns: identical metrics at 0, 90, 180 degrees
    assert res[0]["accuracy"] == res[1]["accuracy"] == res[2]["accuracy"]
    np.testing.assert_allclose(res[0]["loss"], res[1]["loss"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"`optimizer` must be 'adam' or 'sgd', got 'lamb'"):
        TrainConfig(optimizer="lamb")
    # the workdir holds the run above: another config is refused (before anything is compiled)
    with pytest.raises(ValueError, match="holds a run with another config"):
        fit(lambda rngs: P4CNN(rngs=rngs), (x, y), dataclasses.replace(config, batch_size=128), workdir=tmp_path,
            progress=False)


class _BNDropout(nnx.Module):
    def __init__(self, rngs):
        self.bn = nnx.BatchNorm(3, momentum=0.9, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.dropout(self.bn(x))


def _bn_data():
    rng = np.random.default_rng(1)
    return (rng.normal(size=(64, 5, 5, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 0.5]).astype(np.float32)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_recalibrate_batch_norm_sets_the_data_statistics_and_keeps_the_mode(mode):
    x = _bn_data()
    model = _BNDropout(nnx.Rngs(0))
    getattr(model, mode)()
    recalibrate_batch_norm(model, x, batch_size=16)
    # the running statistics are the mean over the 4 batches of each batch's statistics
    per_batch = x.reshape(4, 16 * 5 * 5, 3)
    np.testing.assert_allclose(model.bn.mean[...], per_batch.mean(1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.bn.var[...], per_batch.var(1).mean(0), rtol=1e-4)
    assert model.bn.momentum == 0.9
    assert model.bn.use_running_average == model.dropout.deterministic == (mode == "eval")


class _FailsOnSecondBatch:
    """Images whose second batch cannot be read: the pass fails after the first batch ran."""

    def __init__(self, x):
        self.x, self.reads = x, 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        self.reads += 1
        if self.reads == 2:
            raise RuntimeError("the data went away")
        return self.x[index]


def test_recalibrate_batch_norm_restores_the_model_when_interrupted():
    x = _bn_data()
    model = _BNDropout(nnx.Rngs(0))
    fit_like = _BNDropout(nnx.Rngs(0))
    recalibrate_batch_norm(fit_like, x[:16], batch_size=16)  # what one batch does
    assert not np.allclose(fit_like.bn.mean[...], model.bn.mean[...])
    model.eval()
    before = {k: np.asarray(model.bn.__dict__[k][...]) for k in ("mean", "var")}
    data = _FailsOnSecondBatch(x)
    with pytest.raises(RuntimeError, match="the data went away"):
        recalibrate_batch_norm(model, data, batch_size=16)
    assert data.reads == 2  # the first batch did run
    np.testing.assert_array_equal(model.bn.mean[...], before["mean"])
    np.testing.assert_array_equal(model.bn.var[...], before["var"])
    assert model.bn.momentum == 0.9 and model.bn.use_running_average and model.dropout.deterministic
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer, got 0"):
        recalibrate_batch_norm(model, x, batch_size=0)


class _PixelClassifier(nnx.Module):
    """Per-pixel logits (B, H, W, 2) from a 1x1 convolution."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 2, (1, 1), rngs=rngs)

    def __call__(self, x):
        return self.conv(x)


def _segmentation_data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 6, 6, 1)).astype(np.float32)
    y = (x[..., 0] > 0).astype(np.int32)  # the label of a pixel is its sign
    return x, y


def test_dense_labels_and_joint_augmentation():
    x, y = _segmentation_data()
    config = TrainConfig(epochs=8, batch_size=16, learning_rate=0.05, checkpoint_every=0)
    r = fit(_PixelClassifier, (x, y), config, val=(x, y), progress=False)
    assert r.history[-1]["train_accuracy"] > 0.95 and r.history[-1]["val_accuracy"] > 0.95
    res = evaluate(r.model, x, y, batch_size=24)  # 64 = 24 + 24 + 16: a padded, masked last batch
    assert res["accuracy"] == pytest.approx(r.history[-1]["val_accuracy"])
    assert predict(r.model, x[:5]).shape == (5, 6, 6, 2)
    # mirroring images and labels together keeps the task (training batches are scored on the
    # augmented pairs); mirroring only the images leaves labels that no pixel predicts
    mirror_both = lambda key, xb, yb: (xb[:, :, ::-1], yb[:, :, ::-1])  # noqa: E731
    r_both = fit(_PixelClassifier, (x, y), config, joint_augment=mirror_both, progress=False)
    assert r_both.history[-1]["train_accuracy"] > 0.95
    mirror_images = lambda key, xb: xb[:, :, ::-1]  # noqa: E731
    r_bad = fit(_PixelClassifier, (x, y), config, augment=mirror_images, progress=False)
    assert r_bad.history[-1]["train_accuracy"] < 0.7
    with pytest.raises(ValueError, match=r"labels must have shape \(64,\) .* or \(64, ...\)"):
        fit(_PixelClassifier, (x, y[:10]), config, progress=False)


def test_a_model_with_host_state_runs_under_jit():
    # fit returns the model with its state fetched to the host (numpy leaves); closing over such a
    # model in jax.jit must work for every layer, also those that index their statistics
    from equilib import Cyclic, FieldType, nn, reps

    G = Cyclic(4)
    t = FieldType(G, [reps.regular_rep(G), reps.irrep(G, 1)])
    for kind in ("inner", "norm"):
        layer = nn.FieldBatchNorm(t if kind == "norm" else FieldType(G, [reps.regular_rep(G)] * 2), kind=kind,
                                  rngs=nnx.Rngs(0))
        conv = nn.SteerableConv(layer.in_type, layer.in_type, 3, rngs=nnx.Rngs(0))
        model = nnx.Sequential(conv, layer)
        model.eval()
        graphdef, state = nnx.split(model)
        host = nnx.merge(graphdef, jax.device_get(state))
        x = np.ones((1, 5, 5, layer.in_type.size), np.float32)
        np.testing.assert_allclose(jax.jit(lambda a, m=host: m(a))(x), model(x), rtol=1e-6, atol=1e-6)


# --- the mixed-precision policy ----------------------------------------------------------------
class _DtypeProbe(nnx.Module):
    """A P4CNN that records, while traced, the dtypes of its input and of its first parameter."""

    def __init__(self, rngs, seen):
        self.net, self.seen = P4CNN(width=4, rngs=rngs), seen

    def __call__(self, x):
        self.seen.append((x.dtype.name, jax.tree.leaves(nnx.state(self.net, nnx.Param))[0].dtype.name))
        return self.net(x)


def test_bfloat16_policy_computes_in_bfloat16_and_keeps_float32_state():
    x, y = data()
    seen = []
    config = TrainConfig(epochs=1, batch_size=64, compute_dtype="bfloat16", checkpoint_every=0)
    result = fit(lambda rngs: _DtypeProbe(rngs, seen), (x, y), config, val=(x[:64], y[:64]), progress=False)
    assert seen == [("bfloat16", "bfloat16")] * 2  # traced twice: the train step and the validation step
    # what is kept between steps stays float32: parameters, batch-norm statistics
    dtypes = {a.dtype.name for a in jax.tree.leaves(nnx.state(result.model, nnx.Param))}
    stats = {a.dtype.name for a in jax.tree.leaves(nnx.state(result.model, nnx.BatchStat))}
    assert dtypes == {"float32"} and stats == {"float32"}
    assert np.isfinite(result.history[0]["train_loss"]) and result.history[0]["train_loss"] < 2.5
    seen.clear()
    fit(lambda rngs: _DtypeProbe(rngs, seen), (x, y), TrainConfig(epochs=1, batch_size=64, checkpoint_every=0),
        progress=False)
    assert seen == [("float32", "float32")]  # without the policy: the model's own dtypes


def test_bfloat16_policy_keeps_p4cnn_invariant_to_quarter_turns():
    x, y = data()
    config = TrainConfig(epochs=1, batch_size=64, compute_dtype="bfloat16", checkpoint_every=0)
    p4 = fit(lambda rngs: P4CNN(width=4, rngs=rngs), (x, y), config, progress=False).model
    # the negative control: a plain CNN (without dropout: its random bits would only add compile time)
    z2 = fit(lambda rngs: Z2CNN(width=4, dropout=0.0, rngs=rngs), (x, y), config, progress=False).model
    eps = float(jax.numpy.finfo(jax.numpy.bfloat16).eps)  # 2**-7
    # the logits of 32 images turned by 0, 1, 2, 3 quarter turns, from one predict call per model
    turns = np.concatenate([np.rot90(x[:32], k, axes=(1, 2)) for k in range(4)])
    p4_logits, z2_logits = (predict(m, turns, compute_dtype="bfloat16").reshape(4, 32, -1) for m in (p4, z2))
    for logits, invariant in ((p4_logits, True), (z2_logits, False)):  # Z2CNN: the negative control
        scale = np.abs(logits[0]).max()
        for k in (1, 2, 3):
            err = np.abs(logits[k] - logits[0]).max() / scale
            if invariant:
                assert err <= 2 * eps, (k, err)  # bfloat16 rounding of the sums, nothing more
            else:
                assert err > 0.1, (k, err)
    # the float32 model computes other logits than its bfloat16 view: the policy is applied
    assert np.abs(predict(p4, x[:8]) - p4_logits[0, :8]).max() > 1e-4


@pytest.mark.parametrize("dtype, match", [("float16", "float16 would need loss scaling"),
                                          ("int8", "got 'int8'"), ("half-precision", "got 'half-precision'")])
def test_the_policy_rejects_other_dtypes(dtype, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(compute_dtype=dtype)
    with pytest.raises(ValueError, match=match):
        evaluate(nnx.Linear(4, 2, rngs=nnx.Rngs(0)), np.zeros((2, 2, 2, 1)), np.zeros(2), compute_dtype=dtype)
