"""``import equilib`` selects the fast XLA:CPU path without flags (equilib/_src/xla_flags.py).

Asserted by what is chosen (the flag in ``XLA_FLAGS``, no YNNPACK fusion in the compiled
convolution, ``choose_impl`` picking XLA's convolution), never by a timing: the timings are in
``benchmarks/RESULTS.md`` ("Default path").
"""

import json
import os
import subprocess
import sys
import warnings

import pytest

import equilib
from equilib._src import xla_flags
from equilib._src.xla_flags import FLAG, OPT_OUT_ENV, PerformanceWarning, configure_xla, jaxlib_knows_flag

PROBE = """
import json, os, sys
{before}
import equilib
import jax, jax.numpy as jnp
from equilib import functional as F
x, k = jnp.ones((8, 28, 28, 16)), jnp.ones((3, 3, 16, 32))
hlo = jax.jit(lambda x, k: F.conv2d(x, k, impl="xla")).lower(x, k).compile().as_text()
print(json.dumps({{"setup": equilib.XLA_SETUP, "flags": os.environ.get("XLA_FLAGS", ""),
                  "impl": F.choose_impl(x.shape, k.shape), "ynn": "ynn_fusion" in hlo}}))
"""


def _probe(before: str = "", **env) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", OPT_OUT_ENV, "EQUILIB_CONV_IMPL")}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], capture_output=True, text=True,
                         env=environ, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["stderr"] = out.stderr
    return result


needs_flag = pytest.mark.skipif(not jaxlib_knows_flag(), reason="this jaxlib does not know the flag")


@needs_flag
def test_plain_import_selects_the_fast_path():
    r = _probe()
    assert r["setup"] == "set" and FLAG in r["flags"].split()
    assert not r["ynn"], "the compiled convolution still goes through a YNNPACK fusion"
    assert r["impl"] == "xla"


@needs_flag
def test_users_flags_are_kept_and_the_flag_added():
    r = _probe(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert r["setup"] == "set"
    assert r["flags"].split() == ["--xla_force_host_platform_device_count=2", FLAG]


@needs_flag
def test_opt_out_and_a_users_choice_are_respected():
    r = _probe(**{OPT_OUT_ENV: "0"})
    assert r["setup"] == "opted-out" and r["flags"] == "" and r["ynn"] and r["impl"] == "im2col"
    r = _probe(XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=individual_dot")
    assert r["setup"] == "user" and r["flags"] == "--xla_cpu_experimental_ynn_fusion_type=individual_dot"


@needs_flag
def test_a_started_backend_is_reported_and_left_alone():
    # negative control: the flag cannot take effect once a backend runs, so it must not be
    # claimed (XLA_FLAGS unchanged, im2col kept) and one PerformanceWarning says so
    r = _probe(before="import jax.numpy as jnp; jnp.ones(1).block_until_ready()")
    assert r["setup"] == "too-late" and r["flags"] == ""
    assert r["ynn"] and r["impl"] == "im2col"
    assert "PerformanceWarning" in r["stderr"] and "import equilib first" in r["stderr"]


def test_configure_xla_in_a_running_process_warns_and_changes_nothing():
    import jax.numpy as jnp

    jnp.ones(1).block_until_ready()  # this process' backend runs
    env: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = configure_xla(env)
    if jaxlib_knows_flag():
        assert status == "too-late" and env == {}
        assert [w.category for w in caught] == [PerformanceWarning]
    assert configure_xla({OPT_OUT_ENV: "off"}) == "opted-out"
    assert configure_xla({"XLA_FLAGS": f"--a=1 {FLAG}"}) == "user"


def test_unknown_jaxlib_versions_are_probed_not_assumed(monkeypatch):
    from importlib import metadata

    tested = metadata.version("jaxlib") in xla_flags.TESTED_JAXLIB
    monkeypatch.setattr(xla_flags, "TESTED_JAXLIB", ())
    if tested:  # the scan of jaxlib's shared library finds the flag where it is known to exist
        assert jaxlib_knows_flag() is True
    monkeypatch.setattr(xla_flags, "FLAG_NAME", "xla_cpu_no_such_flag_in_any_build")
    assert jaxlib_knows_flag() is False
    assert configure_xla({}) == "unsupported"


def test_status_is_exported():
    assert equilib.XLA_SETUP in ("set", "user", "opted-out", "unsupported", "too-late", "no-jaxlib")
    assert equilib.PerformanceWarning is PerformanceWarning
