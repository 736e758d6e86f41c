"""experiments.mnist_rot in pieces: a killed run resumes to the same numbers, and pieces (one model
and seed at a time) merge into one results file."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from experiments.mnist_rot.run import keep_earlier, merge, table

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 600


def _piece(name: str, seeds: list[int], errors: list[float], *, epochs: int = 100, n_test: int = 50_000,
           command: str = "cmd") -> dict:
    """A results dict as one run of ``experiments.mnist_rot`` writes it (the fields merge reads)."""
    per_seed = {"test_error": errors, "seeds": seeds, "train_seconds_per_seed": [10.0] * len(seeds),
                "epoch_seconds": [[1.0]] * len(seeds), "recalibration_seconds": [1.0] * len(seeds),
                "eval_seconds": [1.0] * len(seeds), "test_loss": [0.1] * len(seeds),
                "final_train_error": [1.0] * len(seeds), "curves": [{"epoch": [1], "train_error": [1.0]}] * len(seeds)}
    model = {"params": 24_680, "epochs": epochs, "batch_size": 128, "learning_rate": 1e-3, "lr_decay_epochs": [],
             "augment": True, "input_size": 28, "width_scale": None, "published_test_error": 2.28,
             "published_epochs": 100, "train_seconds": 10.0 * len(seeds), **per_seed}
    protocol = {"dataset": "MNIST-rot", "train_split": "train+val", "n_train": 12_000, "n_test": n_test,
                "full_sizes": {"train": 12_000, "test": 50_000}, "augmentation": "random rotation",
                "optimizer": "adam", "bn_recalibration": True, "seeds": seeds, "monitor": None}
    return {"models": {name: model}, "protocol": protocol, "command": command, "wall_seconds": 60.0,
            "published_test_error": {}, "test_error_units": "percent"}


def test_pieces_merge_by_model_and_seed():
    merged = merge([_piece("P4CNN", [0], [2.5], command="a"), _piece("Z2CNN", [0], [5.0], command="b"),
                    _piece("P4CNN", [2, 1], [2.3, 2.4], command="c")])
    p4 = merged["models"]["P4CNN"]
    assert p4["seeds"] == [0, 1, 2] and p4["test_error"] == [2.5, 2.4, 2.3]
    assert p4["train_seconds"] == 30.0 and len(p4["curves"]) == 3
    assert [r["command"] for r in p4["runs"]] == ["a", "c"] and p4["runs"][1]["seeds"] == [2, 1]
    assert list(merged["models"]) == ["P4CNN", "Z2CNN"] and merged["protocol"]["seeds"] == [0, 1, 2]
    assert "2.40 ± 0.10 (n = 3)" in table(merged)
    # a seed run twice: the later piece's number
    again = merge([merged, _piece("P4CNN", [1], [9.0], command="d")])
    assert again["models"]["P4CNN"]["test_error"] == [2.5, 9.0, 2.3]
    # merging a merged result keeps its runs
    assert [r["command"] for r in again["models"]["P4CNN"]["runs"]] == ["a", "c", "d"]


def test_pieces_of_other_protocols_or_schedules_do_not_merge():
    with pytest.raises(ValueError, match=r"different protocols \(they differ in \['n_test'\]\)"):
        merge([_piece("P4CNN", [0], [2.5]), _piece("P4CNN", [1], [2.5], n_test=500)])
    with pytest.raises(ValueError, match=r"model 'P4CNN': the parts differ in \['epochs'\]"):
        merge([_piece("P4CNN", [0], [2.5]), _piece("P4CNN", [1], [2.5], epochs=7)])


def test_a_piece_keeps_the_earlier_pieces_of_its_workdir(tmp_path, capsys):
    first = _piece("P4CNN", [0], [2.5], command="a")
    assert keep_earlier(first, tmp_path) is first  # nothing earlier
    (tmp_path / "results.json").write_text(json.dumps(first))
    kept = keep_earlier(_piece("Z2CNN", [0], [5.0], command="b"), tmp_path)
    assert list(kept["models"]) == ["P4CNN", "Z2CNN"]
    assert "kept the models and seeds" in capsys.readouterr().out
    other = _piece("Z2CNN", [0], [5.0], n_test=500)
    assert keep_earlier(other, tmp_path) is other  # another protocol: replaced, said so
    assert "holds another protocol" in capsys.readouterr().out


def _command(workdir: pathlib.Path) -> list[str]:
    # smoke data, one model, two epochs (16 steps each) with a checkpoint after each: long enough to
    # be killed mid-epoch
    return [sys.executable, "-m", "experiments.mnist_rot", "--config", "smoke", "--workdir", str(workdir),
            "--set", "n_train=1024", "--set", "checkpoint_every=1", "--set", 'models={"P4CNN": {"epochs": 2}}']


def _env() -> dict:
    return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


@pytest.mark.experiment
def test_a_killed_run_resumes_to_the_same_numbers(tmp_path):
    """kill -9 in the middle of the second epoch, then the same command again: the same test
    error, test loss and curves as a run that was not interrupted."""
    # Both runs use the same workdir path, so that the run to be killed loads its compiled steps
    # from the compilation cache the uninterrupted run filled (fit keeps it in the workdir; its
    # keys depend on the folder's path): the uninterrupted run's workdir is moved aside, and the
    # killed run starts from an empty workdir that holds only that cache.
    cut = tmp_path / "run"
    subprocess.run(_command(cut), cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=TIMEOUT)
    whole = cut.rename(tmp_path / "whole")
    cache = pathlib.Path("P4CNN", "seed0", "jax_cache")
    (cut / cache).parent.mkdir(parents=True)
    (whole / cache).rename(cut / cache)
    proc = subprocess.Popen(_command(cut), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = cut / "P4CNN" / "seed0" / "checkpoints" / "1"
    deadline = time.monotonic() + TIMEOUT
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch (16 steps)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert first.exists() and not (cut / "results.json").exists()  # killed after epoch 1, before the end
    assert not (cut / "P4CNN" / "seed0" / "checkpoints" / "2").exists()
    subprocess.run(_command(cut), cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=TIMEOUT)
    a, b = (json.loads((d / "results.json").read_text())["models"]["P4CNN"] for d in (whole, cut))
    for key in ("test_error", "test_loss", "final_train_error", "curves"):
        assert a[key] == b[key], key
    assert a["epochs"] == b["epochs"] == 2
