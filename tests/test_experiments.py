"""The experiments: discovered from their folders, typed configs that reject bad keys, and every
smoke config run end to end (``-m experiment``; minutes, so marked and run once by CI).

``pytest -m "not experiment"`` leaves the smoke runs out; ``pytest -m experiment`` runs only them.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from experiments.common import (
    EXPERIMENT_FILES,
    RESULT_COMMON_KEYS,
    SMOKE_TITLE,
    ExperimentConfig,
    ModelSpec,
    discover,
    parse_args,
    provenance,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = discover()
SMOKE_TIMEOUT = 900  # seconds per smoke run (each takes ~1-2 min alone on 2 CPU cores)


def configs(name: str):
    return importlib.import_module(f"experiments.{name}.configs")


# --- discovery ----------------------------------------------------------------------------------
def test_every_experiment_folder_is_discovered():
    folders = sorted(p.name for p in (ROOT / "experiments").iterdir()
                     if p.is_dir() and (p / "run.py").exists())
    assert EXPERIMENTS == folders and len(EXPERIMENTS) >= 6
    listed = subprocess.run([sys.executable, "-m", "experiments", "--list"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    assert listed == EXPERIMENTS


def test_a_half_made_experiment_is_an_error(tmp_path):
    (tmp_path / "complete").mkdir()
    for f in EXPERIMENT_FILES:
        (tmp_path / "complete" / f).write_text("")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "run.py").write_text("")
    (tmp_path / "notes").mkdir()  # no experiment file: not an experiment, not an error
    with pytest.raises(ValueError, match=r"experiments/half .* lacks __main__.py, configs.py"):
        discover(tmp_path)
    (tmp_path / "half" / "run.py").unlink()
    assert discover(tmp_path) == ["complete"]


def test_every_paper_table_states_its_protocol_and_command():
    """Each committed result's table says which protocol its rows follow: a ``protocol`` column
    (MNIST-rot, MNIST-scale: what differs from the paper, per row) or the experiment's
    ``TABLE_PROTOCOL`` line with the command and its recorded wall time (experiments.reproduce)."""
    for path in sorted((ROOT / "paper" / "results").glob("*.json")):
        module = importlib.import_module(f"experiments.{path.stem}.run")
        results = json.loads(path.read_text())
        table = module.table(results)
        per_row = "| protocol |" in table.splitlines()[0]
        line = getattr(module, "TABLE_PROTOCOL", None)
        assert per_row or line, f"{path.stem}: its table marks no protocol"
        if line:
            text = provenance(results, line)
            assert text.startswith(f"Protocol of every row: {line} Reproduce: `python -m experiments.{path.stem} ")
            assert f"--workdir workdirs/{path.stem}`" in text and "recorded wall time" in text
    scale = importlib.import_module("experiments.scale.run")
    full = {"realisations": list(range(6)), "n_test": 50_000, "sesn": {"channels": [64, 232, 384]}}
    assert scale.row_protocol("SESN", {"epochs": 60, "params": 415_938}, full) == \
        "published protocol (with the notes below)"
    assert scale.row_protocol("CNN", {"epochs": 5, "params": 12_810}, {**full, "n_test": 10_000}) == \
        "shortened: 5 of 60 epochs, 10,000 of 50,000 test digits, 12,810 of 494,549 params"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_folder_has_configs_readme_and_result_keys(name):
    module = configs(name)
    assert {"default", "smoke"} <= set(module.CONFIGS)
    for key, config in module.CONFIGS.items():
        assert isinstance(config, module.Config) and isinstance(config, ExperimentConfig)
        assert config.name == key
        assert type(config).from_dict(config.to_json()) == config  # JSON round trip
    readme = (ROOT / "experiments" / name / "README.md").read_text()
    assert f"python -m experiments.{name}" in readme and "--config smoke" in readme
    run = importlib.import_module(f"experiments.{name}.run")
    assert run.RESULT_KEYS and callable(run.table) and callable(run.plot)


# --- typed configs --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_configs_reject_unknown_and_ill_typed_keys(name):
    smoke = configs(name).CONFIGS["smoke"]
    data = smoke.to_json()
    with pytest.raises(ValueError, match=r"unknown key 'n_trian'"):
        type(smoke).from_dict({**data, "n_trian": 1})
    with pytest.raises(ValueError, match=r"`seed` must be int, got '0' \(str\)"):
        type(smoke).from_dict({**data, "seed": "0"})
    missing = dict(data)
    del missing["batch_size"]
    with pytest.raises(ValueError, match=r"missing key 'batch_size'"):
        type(smoke).from_dict(missing)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer, got 0"):
        dataclasses.replace(smoke, batch_size=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        smoke.seed = 1


def test_models_map_names_to_the_same_spec_and_nested_keys_are_checked():
    rotation = configs("rotation").CONFIGS["smoke"]
    assert all(isinstance(spec, ModelSpec) for spec in rotation.models.values())
    assert isinstance(configs("scale").CONFIGS["smoke"].models["SESN"], ModelSpec)
    assert isinstance(configs("mnist_rot").CONFIGS["smoke"].models["P4CNN"], ModelSpec)
    with pytest.raises(ValueError, match=r"`models\['P4CNN'\].epochs` must be int, got 1.5"):
        rotation.override({"models": {"P4CNN": {"epochs": 1.5}}})
    with pytest.raises(ValueError, match=r"unknown key \"models\['P4CNN'\].epoch\""):
        rotation.override({"models": {"P4CNN": {"epoch": 1}}})
    with pytest.raises(ValueError, match=r"unknown model 'P5CNN' in `models`"):
        rotation.override({"models": {"P5CNN": {"epochs": 1}}})
    with pytest.raises(ValueError, match=r"unknown key 'sesn.sigmaa'"):
        configs("scale").CONFIGS["smoke"].override({"sesn.sigmaa": 1.0})
    with pytest.raises(ValueError, match=r"`train_split` must be one of \['train\+val', 'train'\], got 'val'"):
        configs("mnist_rot").CONFIGS["smoke"].override({"train_split": "val"})
    # a mapping is read-only inside the frozen config
    with pytest.raises(TypeError):
        rotation.models["P4CNN"] = ModelSpec(epochs=2)


def test_command_line_overrides_are_typed(tmp_path, capsys):
    cfgs = configs("translation").CONFIGS
    config, args = parse_args("translation", cfgs, ["--config", "smoke", "--set", "epochs=2", "--set",
                                                    "angles=[0, 30]", "--seed", "3"])
    assert (config.name, config.epochs, config.angles, config.seed) == ("smoke", 2, (0, 30), 3)
    assert config == dataclasses.replace(cfgs["smoke"], epochs=2, angles=(0, 30), seed=3)
    for argv, message in ((["--set", "epochs=two"], "`epochs` must be int, got 'two'"),
                          (["--set", "epoch=2"], "unknown key 'epoch'"),
                          (["--config", "tiny"], "--config must be one of ['default', 'smoke'] or a JSON file")):
        with pytest.raises(SystemExit):
            parse_args("translation", cfgs, argv)
        assert message in capsys.readouterr().err
    # a results.json (or a config) reruns its config
    (tmp_path / "results.json").write_text(json.dumps({"experiment": "translation", "config": config.to_json()}))
    again, _ = parse_args("translation", cfgs, ["--config", str(tmp_path / "results.json")])
    assert again == config


# --- smoke runs -----------------------------------------------------------------------------------
@pytest.mark.experiment
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_smoke_config_runs(name, tmp_path):
    """``python -m experiments.<name> --config smoke`` as CI and the READMEs run it: results,
    figure and table are written, and the results have the experiment's keys."""
    workdir = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", f"experiments.{name}", "--config", "smoke", "--workdir",
                           str(workdir)], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                          timeout=SMOKE_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for suffix in (".png", ".pdf", ".md"):
        assert (workdir / f"{name}{suffix}").stat().st_size > 0
    results = json.loads((workdir / "results.json").read_text())
    run = importlib.import_module(f"experiments.{name}.run")
    assert set(RESULT_COMMON_KEYS) | set(run.RESULT_KEYS) <= set(results), sorted(results)
    assert results["experiment"] == name
    smoke = configs(name).CONFIGS["smoke"]
    assert type(smoke).from_dict(results["config"]) == smoke
    assert results["models"] if "models" in results else True
    assert (workdir / f"{name}.md").read_text().startswith(f"**{SMOKE_TITLE}**")
    assert run.table(results).startswith("| ")


def test_the_command_line_passes_the_bfloat16_policy_to_training_and_evaluation(tmp_path, monkeypatch):
    """``--set 'compute_dtype="bfloat16"'`` on an experiment's command line reaches its config, the
    TrainConfig each model is fitted with and the rotation sweep's evaluation; without it, neither
    gets a policy. fit and evaluate are stand-ins that record what they are given (nothing is
    trained): tests/test_training.py checks what the policy does, e.g. that a P4CNN trained and
    evaluated in bfloat16 keeps its quarter-turn invariance."""
    import numpy as np
    from flax import nnx

    import experiments.common
    from equilib import training
    from experiments.rotation.configs import CONFIGS
    from experiments.rotation.run import run

    seen: dict = {}

    def fit(model_fn, train, config, **kwargs):
        seen["fit"] = config
        return training.FitResult(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), [{"epoch_seconds": 0.0, "train_accuracy": 0.0}],
                                  0.0, 0)

    def evaluate(model, images, labels, *, params, compute_dtype=None, **kwargs):
        seen["evaluate"] = compute_dtype
        return [{"loss": 0.0, "accuracy": 0.0} for _ in params]

    def load_mnist(n_train, n_test):
        rng = np.random.default_rng(0)
        return {split: (rng.random((n, 28, 28, 1), np.float32), rng.integers(0, 10, n).astype(np.int32))
                for split, n in (("train", n_train), ("test", n_test))}

    monkeypatch.setattr(training, "fit", fit)
    monkeypatch.setattr(training, "evaluate", evaluate)
    monkeypatch.setattr(experiments.common, "load_mnist", load_mnist)
    argv = ["--config", "smoke", "--workdir", str(tmp_path), "--set", 'models={"P4CNN": {"epochs": 1}}']
    results = experiments.common.main("rotation", CONFIGS, run, lambda results, stem: [],
                                      argv + ["--set", 'compute_dtype="bfloat16"'])
    assert results["config"]["compute_dtype"] == "bfloat16"
    assert json.loads((tmp_path / "results.json").read_text())["config"]["compute_dtype"] == "bfloat16"
    assert list(results["models"]) == ["P4CNN"]
    assert isinstance(seen["fit"], training.TrainConfig) and seen["fit"].epochs == 1
    assert seen["fit"].compute_dtype == "bfloat16" and seen["evaluate"] == "bfloat16"
    seen.clear()  # the default: no policy
    results = experiments.common.main("rotation", CONFIGS, run, lambda results, stem: [], argv)
    assert results["config"]["compute_dtype"] is None
    assert seen["fit"].compute_dtype is None and seen["evaluate"] is None
