"""Regenerate the paper's figures and tables from the saved results, or rerun the experiments.

    python -m experiments.reproduce --figures            # paper/results/*.json -> paper/figures/, tables in paper.md
    python -m experiments.reproduce --run rotation       # rerun an experiment's default config into paper/results/
    python -m experiments.reproduce --run                # rerun every experiment (python -m experiments --list)

Each experiment ``experiments/<name>/run.py`` (found by :func:`experiments.common.discover`)
provides ``plot(results, stem)``; a table between ``<!-- table:<name> -->`` and
``<!-- /table:<name> -->`` in ``paper/paper.md`` is replaced by ``table(results)``. Figures are
never drawn by hand.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import re
import shutil
import subprocess
import sys

from experiments.common import discover, provenance

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAPER = ROOT / "paper"


def experiments_with_results(results_dir: pathlib.Path) -> list[str]:
    """The experiments with a ``<name>.json`` in ``results_dir``; a file named after no
    experiment raises a ValueError."""
    names = sorted(p.stem for p in results_dir.glob("*.json"))
    known = discover()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{results_dir} holds results of no experiment: {unknown}; the experiments are {known}")
    return names


def figures(results_dir: pathlib.Path = PAPER / "results", figures_dir: pathlib.Path = PAPER / "figures",
            paper: pathlib.Path = PAPER / "paper.md") -> list[pathlib.Path]:
    written = []
    text = paper.read_text() if paper.exists() else None
    for name in experiments_with_results(results_dir):
        module = importlib.import_module(f"experiments.{name}.run")
        results = json.loads((results_dir / f"{name}.json").read_text())
        written += module.plot(results, figures_dir / name)
        if text is not None and hasattr(module, "table"):
            pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(<!-- /table:{name} -->)", re.S)
            table_md = module.table(results)
            if getattr(module, "TABLE_PROTOCOL", None):
                table_md += "\n\n" + provenance(results, module.TABLE_PROTOCOL)
            text = pattern.sub(lambda m, t=table_md: m.group(1) + t + "\n" + m.group(2), text)
    if text is not None:
        paper.write_text(text)
        written.append(paper)
    return written


def run(name: str, config: str = "default") -> None:
    workdir = ROOT / "workdirs" / name
    subprocess.run([sys.executable, "-m", f"experiments.{name}", "--config", config, "--workdir", str(workdir)],
                   check=True, cwd=ROOT)
    (PAPER / "results").mkdir(parents=True, exist_ok=True)
    shutil.copy(workdir / "results.json", PAPER / "results" / f"{name}.json")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--figures", action="store_true", help="regenerate figures and tables from paper/results")
    p.add_argument("--run", nargs="*", default=None, metavar="NAME",
                   help="rerun experiments (default config); no NAME: all of them")
    p.add_argument("--results-dir", type=pathlib.Path, default=PAPER / "results")
    p.add_argument("--figures-dir", type=pathlib.Path, default=PAPER / "figures")
    p.add_argument("--paper", type=pathlib.Path, default=PAPER / "paper.md")
    args = p.parse_args(argv)
    if args.run is None and not args.figures:
        p.error("nothing to do: pass --figures and/or --run [NAME ...]")
    known = discover()
    names = known if args.run == [] else args.run or []
    for name in names:
        if name not in known:
            p.error(f"unknown experiment {name!r}; expected one of {known}")
    for name in names:
        run(name)
    if args.figures:
        for path in figures(args.results_dir, args.figures_dir, args.paper):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
