"""What every experiment shares: discovery, typed configs, the CLI, host devices, MNIST loading,
results and figures.

Each experiment is one folder ``experiments/<name>/`` with the same shape, found by
:func:`discover` (nothing lists the experiments by hand):

* ``__main__.py``: the thin CLI, calling :func:`main`;
* ``configs.py``: ``Config``, a frozen dataclass (a subclass of :class:`ExperimentConfig`), and
  ``CONFIGS``, the named configs (at least ``default`` and ``smoke``);
* ``run.py``: ``run(config, workdir) -> results``, ``plot(results, path_stem)``, ``table(results)``
  and ``RESULT_KEYS``, the keys every ``results`` holds;
* ``README.md``: the question, the commands, the figure.

``DIR/results.json`` holds the config, seed, machine and metrics; ``DIR/<name>.png`` / ``.pdf``
the figure, ``DIR/<name>.md`` the table. This module imports no JAX at import time: the CLI
must set the host devices before JAX starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import re
import shlex
import sys
import time
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
EXPERIMENT_FILES = ("__main__.py", "configs.py", "run.py")
RESULT_COMMON_KEYS = ("experiment", "config", "seed", "machine", "wall_seconds", "command")
SMOKE_TITLE = "SMOKE TEST - not a result"
MNIST_CHANCE_PERCENT = 10.0  # ten balanced classes


# --- discovery ----------------------------------------------------------------------------------
def discover(root: pathlib.Path = EXPERIMENTS_DIR) -> list[str]:
    """The experiments' names, sorted: every folder of ``root`` that holds ``__main__.py``,
    ``configs.py`` and ``run.py``. A folder holding some of these files but not all raises a
    ValueError (a half-made experiment is a mistake, not something to skip silently)."""
    names = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        present = [f for f in EXPERIMENT_FILES if (folder / f).is_file()]
        if len(present) == len(EXPERIMENT_FILES):
            names.append(folder.name)
        elif present:
            missing = sorted(set(EXPERIMENT_FILES) - set(present))
            raise ValueError(f"experiments/{folder.name} looks like an experiment ({', '.join(present)}) but lacks "
                             f"{', '.join(missing)}: every experiment folder needs {', '.join(EXPERIMENT_FILES)}")
    return names


# --- typed configs ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class Schema:
    """A frozen dataclass whose fields are checked against their annotations when it is built.

    Supported annotations: ``int``, ``float`` (ints are converted), ``bool``, ``str``, ``None``,
    ``X | Y``, ``Literal[...]``, ``tuple[T, ...]`` (lists are converted), ``dict[str, T]`` (stored
    read-only) and nested :class:`Schema` classes (built from dicts). A value of the wrong type
    raises a ValueError naming the key; :meth:`from_dict` also rejects unknown and missing keys.
    Subclasses add checks across fields in :meth:`validate`.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = _conform(getattr(self, field.name), hints[field.name], field.name)
            object.__setattr__(self, field.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks beyond the types (raise ValueError naming the key); none by default."""

    def require_positive(self, *keys: str) -> None:
        """Raise a ValueError naming the first of ``keys`` whose value is not None and < 1."""
        for key in keys:
            v = getattr(self, key)
            if v is not None and v < 1:
                raise ValueError(f"`{key}` must be a positive integer, got {v!r}")

    def require_names(self, key: str, known) -> None:
        """Raise a ValueError unless the field ``key`` (names, or a mapping keyed by names) is
        non-empty, without repeats, and every name is one of ``known``."""
        names = list(getattr(self, key))
        if not names or len(set(names)) != len(names):
            raise ValueError(f"`{key}` must name distinct models from {tuple(known)}, got {names!r}")
        for name in names:
            if name not in known:
                raise ValueError(f"unknown model {name!r} in `{key}`; expected names from {tuple(known)}")

    @classmethod
    def from_dict(cls, data: Mapping, *, where: str = ""):
        """Build from a JSON-like mapping, naming the key of any unknown, missing or ill-typed value."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where or cls.__name__} must be a mapping of {cls.__name__}'s keys, got {data!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in fields]
        if unknown:
            raise ValueError(f"unknown key {_key(where, unknown[0])!r} for {cls.__name__}; expected one of "
                             f"{sorted(fields)}")
        missing = [name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"missing key {_key(where, missing[0])!r} for {cls.__name__}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _conform(v, hints[k], _key(where, k)) for k, v in data.items()})

    def to_json(self) -> dict:
        """The fields as plain JSON types (tuples as lists, nested schemas as dicts)."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def override(self, assignments: Mapping[str, Any]):
        """A copy with ``{"key": value}`` or ``{"outer.inner": value}`` replaced, checked as
        :meth:`from_dict` checks (an unknown key raises a ValueError naming it)."""
        data = self.to_json()
        for dotted, value in assignments.items():
            node, parts = data, dotted.split(".")
            for i, part in enumerate(parts):
                if not isinstance(node, dict) or part not in node:
                    raise ValueError(f"unknown key {'.'.join(parts[:i + 1])!r} for {type(self).__name__}; "
                                     f"expected one of {sorted(node) if isinstance(node, dict) else []}")
                if i < len(parts) - 1:
                    node = node[part]
            node[parts[-1]] = value
        return type(self).from_dict(data)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentConfig(Schema):
    """What every experiment's config holds: its ``name`` (``default``, ``smoke``, ...; set by
    the CLI) and the ``seed`` everything random derives from."""

    name: str = "custom"
    seed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec(Schema):
    """How one model of an experiment is trained: ``epochs``, and its own ``batch_size`` and
    ``learning_rate`` where they differ from the experiment's (None: the experiment's)."""

    epochs: int
    batch_size: int | None = None
    learning_rate: float | None = None

    def validate(self) -> None:
        self.require_positive("epochs", "batch_size")

    def train_config(self, config, **kwargs):
        """An :class:`equilib.training.TrainConfig` for this model: its epochs, its batch size and
        learning rate or else those of ``config``, and ``kwargs`` (``seed``, ...)."""
        from equilib.training import TrainConfig

        return TrainConfig(epochs=self.epochs,
                           batch_size=config.batch_size if self.batch_size is None else self.batch_size,
                           learning_rate=config.learning_rate if self.learning_rate is None else self.learning_rate,
                           **kwargs)


def _key(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def _describe(tp) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _ill_typed(where: str, tp, value) -> ValueError:
    return ValueError(f"`{where}` must be {_describe(tp)}, got {value!r} ({type(value).__name__})")


def _conform(value, tp, where: str):
    """``value`` checked against the annotation ``tp`` (and normalised: ints to floats, lists to
    tuples, dicts to read-only mappings, dicts to nested schemas)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _conform(value, arg, where)
            except ValueError:
                pass
        raise _ill_typed(where, tp, value)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"`{where}` must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise _ill_typed(where, tp, value)
        return tuple(_conform(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _ill_typed(where, tp, value)
        return types.MappingProxyType({_conform(k, args[0], where): _conform(v, args[1], f"{where}[{k!r}]")
                                       for k, v in value.items()})
    if isinstance(tp, type) and issubclass(tp, Schema):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return tp.from_dict(value, where=where)
        raise _ill_typed(where, tp, value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    raise _ill_typed(where, tp, value)


def _to_json(value):
    if isinstance(value, Schema):
        return value.to_json()
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key=value"`` of ``--set``: the value is read as JSON, or else taken as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set expects KEY=VALUE (VALUE in JSON, e.g. n_train=1000 or "
                         f"'models={{\"Z2CNN\": {{\"epochs\": 1}}}}'), got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def load_config(spec: str, configs: Mapping[str, ExperimentConfig]) -> ExperimentConfig:
    """A named config of ``configs``, or one read from a JSON file: a config, or a
    ``results.json`` whose ``"config"`` is used (to rerun a result)."""
    if spec in configs:
        return configs[spec]
    path = pathlib.Path(spec)
    if not path.is_file():
        raise ValueError(f"--config must be one of {sorted(configs)} or a JSON file, got {spec!r}")
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "config" in data and "experiment" in data:
        data = data["config"]
    return type(configs["default"]).from_dict(data)


# --- CLI ------------------------------------------------------------------------------------------
def use_host_devices() -> None:
    """Split the CPU into one XLA device per core (data parallel: ~2x on 2 cores). Must run
    before jax is imported; a no-op if the user set XLA_FLAGS.

    The collective timeouts are raised from XLA:CPU's 40 s: on a shared machine one device's
    thread can be descheduled long enough for the all-reduce of the other to give up and abort
    the process (seen once here during a training run)."""
    if "jax" in sys.modules:
        return
    n = os.cpu_count() or 1
    flags = (f"--xla_force_host_platform_device_count={n} "
             "--xla_cpu_collective_call_terminate_timeout_seconds=600 "
             "--xla_cpu_collective_timeout_seconds=600")
    # equilib itself adds the XLA:CPU flag that turns off the YNNPACK fusions when it is imported
    # (equilib/_src/xla_flags.py), after this
    os.environ.setdefault("XLA_FLAGS", flags)


def machine() -> dict:
    import jax

    return {"python": platform.python_version(), "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": len(jax.devices()), "device_kind": jax.devices()[0].device_kind,
            "cpus": os.cpu_count(), "platform": platform.platform()}


def parse_args(name: str, configs: Mapping[str, ExperimentConfig],
               argv=None) -> tuple[ExperimentConfig, argparse.Namespace]:
    """The config the command line asks for: ``--config NAME|FILE``, then ``--set KEY=VALUE``
    overrides, then ``--seed``; its ``name`` is the ``--config`` given."""
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}")
    p.add_argument("--config", default="default",
                   help=f"one of {', '.join(sorted(configs))}, or a JSON file (a config, or a results.json to rerun)")
    p.add_argument("--workdir", default=f"workdirs/{name}", help="where results, figure and checkpoints go")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the config (VALUE in JSON; nested keys as outer.inner); repeatable")
    args = p.parse_args(argv)
    try:
        config = load_config(args.config, configs)
        overrides = dict(parse_assignment(a) for a in args.set)
        if args.seed is not None:
            overrides["seed"] = args.seed
        config = config.override({**overrides, "name": args.config if args.config in configs else config.name})
    except ValueError as e:
        p.error(str(e))
    return config, args


def main(name: str, configs: Mapping[str, ExperimentConfig], run: Callable, plot: Callable,
         argv=None, finish: Callable | None = None) -> dict:
    """Run the experiment ``name`` as the command line says; write ``results.json`` and the
    figure into the workdir. ``finish(results, workdir) -> results``, if given, sees the results
    with the run's command and wall time before they are written (e.g. to merge them with
    earlier pieces of a long run). Returns the results."""
    config, args = parse_args(name, configs, argv)
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = run(config, workdir)
    results.update({"experiment": name, "config": config.to_json(), "seed": config.seed, "machine": machine(),
                    "wall_seconds": time.perf_counter() - t0,
                    "command": f"python -m experiments.{name} --config {args.config} --workdir {args.workdir}"
                               + "".join(f" --set {shlex.quote(a)}" for a in args.set)
                               + (f" --seed {args.seed}" if args.seed is not None else "")})
    if finish is not None:
        results = finish(results, workdir)
    if _primary():  # a multi-process run (python -m equilib.launch) writes its results once
        save_json(workdir / "results.json", results)
        figs = plot(results, workdir / name)
        print(f"wrote {workdir / 'results.json'} and {', '.join(str(f) for f in figs)} "
              f"({results['wall_seconds']:.0f} s)")
    return results


def _primary() -> bool:
    """True unless this is a process other than 0 of a multi-process run."""
    from equilib.distributed import is_primary

    return is_primary()


# --- data -----------------------------------------------------------------------------------------
def as_float_images(x):
    """``uint8`` images ``(N, H, W)`` as float32 in [0, 1], ``(N, H, W, 1)``."""
    import numpy as np

    return x.astype(np.float32)[..., None] / 255.0


def load_mnist(n_train: int | None = None, n_test: int | None = None, data_dir=None):
    """MNIST as float32 in [0, 1], ``(N, 28, 28, 1)``, and int32 labels; the first ``n`` of each split."""
    import numpy as np

    from equilib.data import mnist

    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = mnist(split, data_dir)
        out[split] = (as_float_images(x[:n]), y[:n].astype(np.int32))
    return out


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; nan for a single value)."""
    import numpy as np

    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else float("nan"))


# --- results and figures --------------------------------------------------------------------------
def provenance(results: dict, protocol: str) -> str:
    """The line under a paper table: which protocol its rows follow (``protocol``, an experiment
    module's ``TABLE_PROTOCOL``) and the command that produced them, with the wall time recorded
    with the results (a run resumed from checkpoints records its last part) and the cores. The
    workdir is shown as ``workdirs/<experiment>`` (where the run happened to write changes nothing)."""
    line = f"Protocol of every row: {protocol}"
    if results.get("command"):
        name = results.get("experiment", "")
        command = re.sub(r"--workdir \S+", f"--workdir workdirs/{name}", results["command"])
        cores = results.get("machine", {}).get("cpus", "?")
        line += (f" Reproduce: `{command}` (recorded wall time {results['wall_seconds'] / 60:.0f} min on {cores} "
                 f"CPU cores).")
    return line


def save_json(path: pathlib.Path, obj) -> None:
    """Write ``obj`` as JSON, atomically; only process 0 writes in a multi-process run."""
    if not _primary():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def is_smoke(results: dict) -> bool:
    """Whether ``results`` come from a ``smoke`` config (a pipeline check, not a result)."""
    return results.get("config", {}).get("name") == "smoke"


def legend_outside(ax, *, below: bool = False, **kwargs):
    """The legend of ``ax`` off its data: to the right of the axes, or centred below them
    (``below``, under the x label) for a panel with a neighbour on the right."""
    kwargs.setdefault("fontsize", 8)
    kwargs.setdefault("borderaxespad", 0)
    kwargs.setdefault("loc", "upper center" if below else "upper left")
    kwargs.setdefault("bbox_to_anchor", (0.5, -0.22) if below else (1.02, 1.0))
    return ax.legend(**kwargs)


def chance_line(ax, level: float = MNIST_CHANCE_PERCENT) -> None:
    """A dotted line at the accuracy (%) of guessing, labelled for the legend; where the axis
    does not reach it, the y label says so instead. Call after setting the y label and limits."""
    lo, hi = ax.get_ylim()
    if lo <= level <= hi:
        ax.axhline(level, color="0.35", ls=":", lw=1.2, zorder=1.5, label=f"chance ({level:g} %)")
    else:
        ax.set_ylabel(f"{ax.get_ylabel()}\n(chance: {level:g} %, off the axis)")


def savefig(fig, stem: pathlib.Path) -> list[pathlib.Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
    return paths


def save_figure(fig, stem: pathlib.Path, table_md: str, results: dict | None = None) -> list[pathlib.Path]:
    """An experiment's outputs beside ``stem``: the figure as PNG and PDF (then closed) and the
    markdown table as ``stem.md``. The figure of a smoke run (``results``' config ``smoke``) is
    titled :data:`SMOKE_TITLE` in red, and its table says so too. Returns the paths written."""
    plt = pyplot()
    if results is not None and is_smoke(results):
        fig.suptitle(SMOKE_TITLE, color="red", fontsize=14, fontweight="bold", y=1.0, va="bottom")
        table_md = f"**{SMOKE_TITLE}** (config `smoke`: a check of the pipeline)\n\n{table_md}"
    paths = savefig(fig, stem)
    plt.close(fig)
    stem.with_suffix(".md").write_text(table_md + "\n")
    return paths + [stem.with_suffix(".md")]
