"""JAX's persistent compilation cache through :func:`equilib.training.use_compilation_cache` and
``fit(cache_dir=...)``: a second process loads what the first compiled (counted by JAX's own
``/jax/compilation_cache/cache_hits`` events, not timed)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from equilib.training import TrainConfig, fit, use_compilation_cache

PROBE = """
import json, sys
import equilib
import jax
from flax import nnx
from equilib.models import P4CNN
from equilib.training import use_compilation_cache
hits = []
jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name))
if sys.argv[1] != "-":
    use_compilation_cache(sys.argv[1])
model = P4CNN(rngs=nnx.Rngs(0))
model.eval()
jax.block_until_ready(nnx.jit(lambda m, x: m(x))(model, jax.numpy.ones((2, 28, 28, 1))))
print(json.dumps({"hits": hits.count("/jax/compilation_cache/cache_hits")}))
"""


def _run(cache) -> int:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(cache)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["hits"]


def test_a_second_process_loads_the_compiled_model(tmp_path):
    cache = tmp_path / "cache"
    assert _run(cache) == 0  # the first process compiles and writes
    assert any(cache.iterdir())
    assert _run(cache) > 0  # the second loads
    assert _run("-") == 0  # negative control: without the cache nothing is loaded


def test_fit_caches_under_its_workdir_by_default(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, 5, 5, 1)).astype(np.float32), rng.integers(0, 3, 8))

    def model_fn(rngs):
        from flax import nnx

        class Linear(nnx.Module):
            def __init__(self, rngs):
                self.dense = nnx.Linear(25, 3, rngs=rngs)

            def __call__(self, x):
                return self.dense(x.reshape(x.shape[0], -1))

        return Linear(rngs)

    config = TrainConfig(epochs=1, batch_size=4, checkpoint_every=0)
    fit(model_fn, data, config, workdir=tmp_path / "run", progress=False)
    assert any((tmp_path / "run" / "jax_cache").iterdir())
    fit(model_fn, data, config, workdir=tmp_path / "run2", progress=False, cache_dir=tmp_path / "elsewhere")
    assert any((tmp_path / "elsewhere").iterdir()) and not (tmp_path / "run2" / "jax_cache").exists()


def test_cache_dir_must_be_a_path():
    with pytest.raises(TypeError, match="`cache_dir`"):
        use_compilation_cache(3)
