"""A few steps of a small P4CNN with equilib.training.fit, as one process of a run (started by
tests/test_distributed.py, alone or under ``python -m equilib.launch``).

    python tests/distributed_worker.py OUT.npz WORKDIR EPOCHS [--die-after-epoch E] [--cache DIR] [--control]

Process 0 writes the trained parameters and the history to OUT.npz. With ``--die-after-epoch E``
the last process kills itself (SIGKILL) after epoch E's checkpoint is written. With ``--control``
the process also trains the same model for one epoch less (in WORKDIR-control) and writes those
parameters as ``control_*``: the test's negative control, without starting another process.
"""

import argparse
import dataclasses
import json
import os
import signal

import jax
import numpy as np
from flax import nnx

import equilib  # noqa: F401  (joins the multi-process run when launched; before jax starts)
from equilib.distributed import is_primary
from equilib.models import P4CNN
from equilib.training import TrainConfig, evaluate, fit, predict, recalibrate_batch_norm

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("workdir")
p.add_argument("epochs", type=int)
p.add_argument("--die-after-epoch", type=int, default=0)
p.add_argument("--cache", default=None)
p.add_argument("--control", action="store_true")
args = p.parse_args()

rng = np.random.default_rng(0)  # the same data in every process
images = rng.normal(size=(64, 28, 28, 1)).astype(np.float32)
labels = rng.integers(0, 10, 64)
config = TrainConfig(epochs=args.epochs, batch_size=16, seed=3, eval_batch_size=24, checkpoint_every=1)


def on_epoch_end(epoch, metrics):
    if epoch == args.die_after_epoch and jax.process_index() == jax.process_count() - 1:
        os.kill(os.getpid(), signal.SIGKILL)


result = fit(lambda rngs: P4CNN(width=4, rngs=rngs), (images, labels), config, workdir=args.workdir,
             val=(images[:40], labels[:40]), progress=False, on_epoch_end=on_epoch_end, cache_dir=args.cache)
params = [np.asarray(a) for a in jax.tree.leaves(nnx.state(result.model, nnx.Param))]
# the other entry points on the trained model: batch-norm recalibration, evaluation, logits
recalibrate_batch_norm(result.model, images, batch_size=16)
stats = [np.asarray(a) for a in jax.tree.leaves(nnx.state(result.model, nnx.BatchStat))]
metrics = evaluate(result.model, images[:50], labels[:50], batch_size=24)  # 3 batches, the last padded
logits = predict(result.model, images[:10], batch_size=4)
control = {}
if args.control:
    short = fit(lambda rngs: P4CNN(width=4, rngs=rngs), (images, labels),
                dataclasses.replace(config, epochs=args.epochs - 1), workdir=args.workdir + "-control",
                val=(images[:40], labels[:40]), progress=False, cache_dir=args.cache)
    control = {f"control_{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(nnx.state(short.model, nnx.Param)))}
if is_primary():
    np.savez(args.out, *params, **control, history=json.dumps(result.history), processes=jax.process_count(),
             devices=len(jax.devices()), resumed=result.resumed_from_epoch,
             stats=np.concatenate([s.ravel() for s in stats]),
             eval=np.array([metrics["loss"], metrics["accuracy"]]), logits=logits)
