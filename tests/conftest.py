import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Deterministic property tests: the same examples on every run and machine.
settings.register_profile(
    "equilib", derandomize=True, deadline=None, max_examples=int(os.environ.get("EQUILIB_HYPOTHESIS_EXAMPLES", 8)),
    suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("equilib")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
