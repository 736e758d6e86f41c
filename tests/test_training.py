"""The trainer: deterministic resume after a kill, and the same metrics on 1 and 2 devices."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

from equilib.models import P4CNN, Z2CNN
from equilib.training import TrainConfig, count_params, evaluate, fit, predict, recalibrate_batch_norm

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import jax, numpy as np
    from equilib.models import {model}
    from equilib.training import TrainConfig, fit
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    kill_at = int(sys.argv[2])
    def on_epoch_end(epoch, metrics):
        if epoch == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no exception handling
    aug = lambda key, x: x + 0.1 * jax.random.normal(key, x.shape)
    r = fit(lambda rngs: {model}(rngs=rngs), (x, y), TrainConfig(epochs=3, batch_size=64),
            workdir=sys.argv[1], val=(x[:100], y[:100]), augment=aug, progress=False,
            on_epoch_end=on_epoch_end)
    print(json.dumps({{"devices": len(jax.devices()), "history": r.history}}))
""")


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(256, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 256)


def run_script(workdir, kill_at, model="Z2CNN", devices=1):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.run([sys.executable, "-c", SCRIPT.format(model=model), str(workdir), str(kill_at)],
                          env=env, capture_output=True, text=True, timeout=600)


def strip_times(history):
    return [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")} for h in history]


def test_killed_run_resumes_to_identical_metrics(tmp_path):
    """Z2CNN (dropout) with on-device augmentation: every random stream is restored."""
    killed = run_script(tmp_path / "a", kill_at=2)
    assert killed.returncode == -9, killed.stderr[-2000:]
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # epochs 1 and 2 were logged and checkpointed before the kill
    x, y = data()
    aug = lambda key, x: x + 0.1 * jax.random.normal(key, x.shape)
    cfg = TrainConfig(epochs=3, batch_size=64)
    resumed = fit(lambda rngs: Z2CNN(rngs=rngs), (x, y), cfg, workdir=tmp_path / "a", val=(x[:100], y[:100]),
                  augment=aug, progress=False)
    fresh = fit(lambda rngs: Z2CNN(rngs=rngs), (x, y), cfg, workdir=tmp_path / "b", val=(x[:100], y[:100]),
                augment=aug, progress=False)
    assert resumed.resumed_from_epoch == 2 and fresh.resumed_from_epoch == 0
    assert strip_times(resumed.history) == strip_times(fresh.history)
    saved = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in saved] == [1, 2, 3]
    np.testing.assert_array_equal(predict(resumed.model, x[:50]), predict(fresh.model, x[:50]))


STEP_SCRIPT = textwrap.dedent("""
    import json
    import equilib, jax, numpy as np, optax
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
    leaves = list(zip(jax.tree.leaves(one), jax.tree.leaves(two)))
    scale = max(float(np.max(np.abs(a))) for a, _ in leaves[1:])  # the largest gradient entry
    norm = lambda a: float(np.max(np.abs(a)))
    errors = [norm(a - b) / (norm(a) if norm(a) > 1e-4 * scale else scale) for a, b in leaves]
    print(json.dumps({"devices": len(jax.devices()), "errors": errors}))
""")


def test_one_train_step_is_the_same_function_on_one_and_two_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    p = subprocess.run([sys.executable, "-c", STEP_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.splitlines()[-1])
    assert r["devices"] == 2
    # the loss and every parameter's gradient (P4CNN, batch 64 on one device vs split over two):
    # equal up to the order of the sums over the batch, relative to the leaf's largest entry, or
    # to the largest gradient entry for the leaves whose true gradient is 0 (the conv biases in
    # front of a batch norm: their computed gradient is rounding, ~1e-7, and differs entirely;
    # measured: kernels 1e-6 apart, those biases 1.5e-6 of the largest entry)
    assert max(r["errors"]) < 1e-5, r["errors"]


def test_same_metrics_on_one_and_two_devices(tmp_path):
    one = run_script(tmp_path / "one", kill_at=-1, model="P4CNN", devices=1)
    two = run_script(tmp_path / "two", kill_at=-1, model="P4CNN", devices=2)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    r1, r2 = json.loads(one.stdout.splitlines()[-1]), json.loads(two.stdout.splitlines()[-1])
    assert (r1["devices"], r2["devices"]) == (1, 2)
    for a, b in zip(r1["history"], r2["history"]):
        # One step is the same function on 1 and 2 devices (the test above); over epochs the
        # runs drift apart because Adam amplifies rounding: its first steps move every weight by
        # about lr * sign(gradient), and the conv biases in front of a batch norm have a true
        # gradient of 0, so their sign (and their step) comes from the order of the sums.
        # Measured (jax/jaxlib 0.10.2, 2026-12-01, P4CNN, 3 epochs of 4 steps): train loss
        # 0-9e-6, 4e-5-1.3e-4, 4e-5-3e-4 apart across code paths (the im2col path before
        # happened to give bit-identical sums: 6e-8); validation loss up to 1.4e-3.
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=2e-3)
        np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-2)
        # at most two of the 100 validation images flip (compared in images: 0.01 is not exact in binary)
        assert round(abs(a["val_accuracy"] - b["val_accuracy"]) * 100) <= 2


def test_evaluate_under_rotation_and_bad_config(tmp_path):
    x, y = data()
    r = fit(lambda rngs: P4CNN(rngs=rngs), (x, y), TrainConfig(epochs=1, batch_size=64, checkpoint_every=0),
            progress=False)
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
    fit(lambda rngs: Z2CNN(rngs=rngs), (x, y), TrainConfig(epochs=1, batch_size=128), workdir=tmp_path,
        progress=False)
    with pytest.raises(ValueError, match="holds a run with another config"):
        fit(lambda rngs: Z2CNN(rngs=rngs), (x, y), TrainConfig(epochs=1, batch_size=64), workdir=tmp_path,
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
    z2 = fit(lambda rngs: Z2CNN(width=4, rngs=rngs), (x, y), config, progress=False).model
    eps = float(jax.numpy.finfo(jax.numpy.bfloat16).eps)  # 2**-7
    for model, invariant in ((p4, True), (z2, False)):  # Z2CNN: the negative control
        logits = predict(model, x[:32], compute_dtype="bfloat16")
        scale = np.abs(logits).max()
        for k in (1, 2, 3):
            turned = predict(model, np.rot90(x[:32], k, axes=(1, 2)).copy(), compute_dtype="bfloat16")
            err = np.abs(turned - logits).max() / scale
            if invariant:
                assert err <= 2 * eps, (k, err)  # bfloat16 rounding of the sums, nothing more
            else:
                assert err > 0.1, (k, err)
    # the float32 model computes other logits than its bfloat16 view: the policy is applied
    assert np.abs(predict(p4, x[:8]) - predict(p4, x[:8], compute_dtype="bfloat16")).max() > 1e-4


@pytest.mark.parametrize("dtype, match", [("float16", "float16 would need loss scaling"),
                                          ("int8", "got 'int8'"), ("half-precision", "got 'half-precision'")])
def test_the_policy_rejects_other_dtypes(dtype, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(compute_dtype=dtype)
    with pytest.raises(ValueError, match=match):
        evaluate(nnx.Linear(4, 2, rngs=nnx.Rngs(0)), np.zeros((2, 2, 2, 1)), np.zeros(2), compute_dtype=dtype)
