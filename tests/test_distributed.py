"""Multi-process training on localhost (equilib.distributed, equilib.training under
``python -m equilib.launch``): two processes of one CPU device each (gloo collectives) against one
process with two devices, on the same global batches."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from equilib.distributed import ENV_NUM_PROCESSES, ENV_ON, ENV_PROCESS_ID, initialize_from_env, launch, main

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")
ROOT = WORKER.parent.parent
TIMEOUT = 180  # seconds for one run of the worker; a hang fails the test instead of CI


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EQUILIB_") or k == "EQUILIB_DATA_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def _worker(out, workdir, epochs, cache, *extra) -> list[str]:
    return [sys.executable, str(WORKER), str(out), str(workdir), str(epochs), "--cache", str(cache), *extra]


def _run_single(tmp, epochs, cache) -> dict:
    """One process, two CPU devices: the reference (and, in the same process, the negative control)."""
    out = tmp / "single.npz"
    subprocess.run(_worker(out, tmp / "single", epochs, cache, "--control"), check=True, timeout=TIMEOUT,
                   env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    return dict(np.load(out))


def _run_launched(workdir, out, epochs, cache, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "equilib.launch", "--processes", "2", "--timeout", str(TIMEOUT), "--",
           *_worker(out, workdir, epochs, cache, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 30, env=_env())


def _params(result: dict, prefix: str = "arr_") -> list[np.ndarray]:
    return [result[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in result))]


def _assert_same_params(a: dict, b: dict) -> None:
    pa, pb = _params(a), _params(b)
    assert len(pa) == len(pb) > 0
    for x, y in zip(pa, pb):
        # fp32 rounding: the two runs sum the same per-device partial results (an all-reduce of two)
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def _assert_same_outputs(a: dict, b: dict) -> None:
    """recalibrate_batch_norm, evaluate and predict on the trained models agree too."""
    for key in ("stats", "eval", "logits"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert a["logits"].shape == (10, 10)


def test_two_processes_on_localhost(tmp_path):
    """One test, so that one worker runs the three runs it compares (under pytest-xdist a module
    fixture would run on each worker): the reference (one process, two devices, two epochs); two
    processes of one device each whose second is killed after epoch 1; the same two processes
    started again on that workdir, which finish epoch 2 and must land on the reference."""
    cache = tmp_path / "jax_cache"  # shared: the second launch of the same program loads its steps
    single = _run_single(tmp_path, 2, cache)
    assert int(single["processes"]) == 1 and int(single["devices"]) == 2
    # negative control: the comparison tells the parameters after one epoch from those after two
    control = {f"arr_{i}": a for i, a in enumerate(_params(single, "control_"))}
    assert len(control) == len(_params(single))
    with pytest.raises(AssertionError):
        _assert_same_params(control, single)

    # a killed process stops the run at once, with an error that says which and how
    workdir = tmp_path / "multi"
    killed = _run_launched(workdir, tmp_path / "killed.npz", 2, cache, "--die-after-epoch", "1")
    assert killed.returncode == 128 + 9, killed.stderr[-3000:]
    assert "equilib.launch: process 1 of 2 was killed by SIGKILL; stopping the others" in killed.stderr
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1"]

    # started again, the two processes resume from epoch 1 and train the same parameters as one
    # process with as many devices (the all-reduce of two partial sums is the same sum)
    resumed = _run_launched(workdir, tmp_path / "multi.npz", 2, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = dict(np.load(tmp_path / "multi.npz"))
    assert int(result["processes"]) == 2 and int(result["devices"]) == 2 and int(result["resumed"]) == 1
    _assert_same_params(result, single)
    _assert_same_outputs(result, single)

    # one set of files: checkpoints 1 and 2, each epoch once in metrics.jsonl (not once per process)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1", "2"]
    epochs = [json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert not list(workdir.glob("*.tmp*"))


# --- the launcher and the environment, without a run -----------------------------------------
def test_launch_returns_the_status_of_the_failed_process_and_stops_the_others(tmp_path):
    code = ("import os, sys, time\n"
            "if os.environ['EQUILIB_PROCESS_ID'] == '1': sys.exit(3)\n"
            "time.sleep(60)\n")
    status = launch([sys.executable, "-c", code], 2, grace_seconds=2)
    assert status == 3


def test_launch_sets_the_environment_of_each_process(tmp_path):
    code = ("import os, pathlib\n"
            f"e = os.environ; pathlib.Path(r'{tmp_path}', e['{ENV_PROCESS_ID}']).write_text("
            f"e['{ENV_NUM_PROCESSES}'] + ' ' + e['{ENV_ON}'] + ' ' + e['XLA_FLAGS'])\n")
    assert launch([sys.executable, "-c", code], 3, devices_per_process=2) == 0
    for i in range(3):
        num, on, flags = (tmp_path / str(i)).read_text().split(" ", 2)
        assert (num, on) == ("3", "1")
        assert flags.split().count("--xla_force_host_platform_device_count=2") == 1


def test_launch_times_out():
    assert launch([sys.executable, "-c", "import time; time.sleep(60)"], 1, timeout=1, grace_seconds=1) == 124


@pytest.mark.parametrize("kwargs, match", [
    ({"processes": 0}, "`processes` must be a positive integer, got 0"),
    ({"processes": 2, "devices_per_process": 0}, "`devices_per_process` must be a positive integer, got 0"),
    ({"processes": 1, "command": []}, "`command` must name a program"),
])
def test_launch_rejects_bad_arguments(kwargs, match):
    kwargs = {"command": [sys.executable, "-c", "pass"], **kwargs}
    with pytest.raises(ValueError, match=match):
        launch(kwargs.pop("command"), **kwargs)


def test_the_launch_command_needs_a_command(capsys):
    with pytest.raises(SystemExit):
        main(["--processes", "2"])
    assert "no command given" in capsys.readouterr().err


def test_import_joins_a_run_only_when_asked():
    assert initialize_from_env({}) is False
    assert initialize_from_env({ENV_ON: "0", ENV_PROCESS_ID: "1"}) is False
    with pytest.raises(ValueError, match="EQUILIB_NUM_PROCESSES must be an integer, got 'two'"):
        initialize_from_env({ENV_ON: "1", ENV_NUM_PROCESSES: "two"})
