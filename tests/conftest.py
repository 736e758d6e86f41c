import os

# Strict JAX for the whole suite, set through the environment before jax is imported so that the
# subprocesses the tests start (tutorials, demo, experiments) run under the same rules:
# * rank promotion raises: broadcasting (B, H, W, C) against (C, G) silently is how layout bugs
#   hide, so every broadcast between different ranks is written out (`x[..., None]`);
# * a NaN produced by any operation raises FloatingPointError where it is produced.
# `JAX_DEBUG_NANS=0 pytest ...` turns the second off for a quick local run.
os.environ.setdefault("JAX_NUMPY_RANK_PROMOTION", "raise")
os.environ.setdefault("JAX_DEBUG_NANS", "true")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# The environment variables above are read when jax is first imported; a plugin may have imported
# it already, so set the flags explicitly too.
jax.config.update("jax_numpy_rank_promotion", os.environ["JAX_NUMPY_RANK_PROMOTION"])
jax.config.update("jax_debug_nans", os.environ["JAX_DEBUG_NANS"].lower() in ("1", "true", "yes", "on"))

# Deterministic property tests: the same examples on every run and machine.
settings.register_profile(
    "equilib", derandomize=True, deadline=None, max_examples=int(os.environ.get("EQUILIB_HYPOTHESIS_EXAMPLES", 8)),
    suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("equilib")


@pytest.fixture
def rng():
    return np.random.default_rng(0)



@pytest.fixture(autouse=True)
def _compilation_cache_per_test():
    """``fit(workdir=...)`` turns JAX's persistent compilation cache on in the workdir, for the
    process; put the setting back so that later tests do not write into a removed tmp dir."""
    before = getattr(jax.config, "jax_compilation_cache_dir", None)
    yield
    if getattr(jax.config, "jax_compilation_cache_dir", None) != before:
        from jax.experimental.compilation_cache import compilation_cache

        jax.config.update("jax_compilation_cache_dir", before)
        compilation_cache.reset_cache()
