"""Run the tutorials cell by cell, record their outputs, and check recorded outputs.

A tutorial is a plain Python script in the "percent" format of Jupytext / VS Code: cells start
with ``# %%``, prose cells with ``# %% [markdown]`` (their lines are ``# `` comments, Markdown).
``python docs/tutorials/01_translation.py`` runs it as any script; this runner executes the same
code cells one after the other in one namespace and records what each prints, so that the
documentation can show each cell's output under it. A code cell whose header carries the
Jupyter tag ``hide-input`` (``# %% tags=["hide-input"]``, as Jupytext writes it) runs like any
other; the page folds its code (plotting code: the page shows the figure it draws).

Figures: a tutorial writes its figures (PNG) to ``$EQUILIB_TUTORIAL_FIGURES``, by default
``docs/tutorials/figures/``, where the pages show them from (they are committed: the site builds
offline from the repository, without running anything). ``--write`` regenerates them there with
the outputs; ``--check`` and ``--json`` write them to a temporary directory (or ``--figures DIR``),
so that checking never changes the repository.

    python docs/tutorials/_run.py --write [NAME ...]   # run, and (re)write NAME.out and its figures
    python docs/tutorials/_run.py --check [NAME ...]   # run, and compare with NAME.out
    python docs/tutorials/_run.py --json NAME          # run, print the outputs as JSON
    python docs/tutorials/_run.py --check --figures DIR  # ... and keep the figures in DIR

``NAME.out`` files are written only by this runner (never by hand). The comparison
(:func:`compare`) asks for the same text, the same integers, and floats equal to a relative 5%
(absolute 1e-5, so that float-rounding-level errors such as 3e-8 vs 5e-8 agree): the numbers
are computed, and the same computation on another CPU or JAX version may round differently.
The tutorials also assert their key claims themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"  # where the pages find the figures (committed)
FIGURES_ENV = "EQUILIB_TUTORIAL_FIGURES"  # the tutorials write their figures there if set
FIGURE_LINK = re.compile(r"!\[[^\]]*\]\(figures/([^)\s]+\.png)\)")  # ![alt](figures/NAME.png)
CELL = re.compile(r"^# %%(.*)$")
OUT_HEADER = "# recorded by `python docs/tutorials/_run.py --write`: outputs of the code cells, do not edit"
OUT_CELL = re.compile(r"^# --- cell (\d+)$")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b")
RTOL, ATOL = 0.05, 1e-5


def tutorials() -> list[Path]:
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def script_path(name: str) -> Path:
    p = Path(name)
    if p.suffix != ".py":
        p = p.with_suffix(".py")
    return p if p.exists() else HERE / p.name


class Cell(NamedTuple):
    kind: str  # "markdown" or "code"
    text: str  # markdown: without the comment markers
    folded: bool = False  # a code cell tagged "hide-input": the page folds its code


def cells(path: Path) -> list[Cell]:
    """The cells of a tutorial, in order (empty cells left out)."""
    out: list[tuple[str, bool, list[str]]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = CELL.match(line)
        if m:
            header = m.group(1)
            out.append(("markdown" if "[markdown]" in header else "code", "hide-input" in header, []))
            continue
        if not out:
            out.append(("code", False, []))
        out[-1][2].append(line)
    result = []
    for kind, folded, lines in out:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        text = "\n".join(lines).strip("\n")
        if text.strip():
            result.append(Cell(kind, text, folded))
    return result


def figure_names(path: Path) -> list[str]:
    """The figures a tutorial's prose shows (``![alt](figures/NAME.png)``), in order."""
    return [name for cell in cells(path) if cell.kind == "markdown" for name in FIGURE_LINK.findall(cell.text)]


def run(path: Path, figures: Path | None = None) -> list[str]:
    """Execute the code cells of ``path`` in one namespace; the stdout of each code cell.

    The figures go to ``figures`` (default: ``docs/tutorials/figures/``).
    """
    namespace = {"__name__": "__main__", "__file__": str(path)}
    outputs = []
    saved = os.environ.get(FIGURES_ENV)
    os.environ[FIGURES_ENV] = str(figures or FIGURES)
    try:
        for i, cell in enumerate(c for c in cells(path) if c.kind == "code"):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(cell.text + "\n", f"{path.name} (cell {i + 1})", "exec"), namespace)
            outputs.append(buf.getvalue())
    finally:
        if saved is None:
            del os.environ[FIGURES_ENV]
        else:
            os.environ[FIGURES_ENV] = saved
    return outputs


def out_path(path: Path) -> Path:
    return path.with_suffix(".out")


def write_outputs(path: Path, outputs: list[str]) -> None:
    lines = [OUT_HEADER]
    for i, text in enumerate(outputs):
        if text:
            lines.append(f"# --- cell {i + 1}")
            lines.extend(text.rstrip("\n").split("\n"))
    out_path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_outputs(path: Path) -> dict[int, str]:
    """Recorded outputs ``{code cell number (1-based): text}`` (cells without output absent)."""
    recorded: dict[int, list[str]] = {}
    current = None
    for line in out_path(path).read_text(encoding="utf-8").splitlines():
        m = OUT_CELL.match(line)
        if m:
            current = int(m.group(1))
            recorded[current] = []
        elif current is not None:
            recorded[current].append(line)
    return {k: "\n".join(v) for k, v in recorded.items()}


def _split(line: str):
    return NUMBER.split(line), NUMBER.findall(line)


def _same_number(a: str, b: str) -> bool:
    if re.fullmatch(r"[-+]?\d+", a) and re.fullmatch(r"[-+]?\d+", b):
        return int(a) == int(b)
    fa, fb = float(a), float(b)
    if fa != fa or fb != fb:
        return fa != fa and fb != fb
    return abs(fa - fb) <= ATOL + RTOL * abs(fb)


def compare(recorded: dict[int, str], outputs: list[str]) -> list[str]:
    """Differences between recorded outputs and fresh ones (empty list: they agree)."""
    problems = []
    fresh = {i + 1: t.rstrip("\n") for i, t in enumerate(outputs) if t}
    for cell in sorted(set(recorded) | set(fresh)):
        want, got = recorded.get(cell), fresh.get(cell)
        if want is None or got is None:
            problems.append(f"cell {cell}: output {'appeared' if want is None else 'vanished'}")
            continue
        wl, gl = want.split("\n"), got.split("\n")
        if len(wl) != len(gl):
            problems.append(f"cell {cell}: {len(gl)} lines, recorded {len(wl)}")
            continue
        for n, (w, g) in enumerate(zip(wl, gl), 1):
            (wt, wn), (gt, gn) = _split(w), _split(g)
            if wt != gt or len(wn) != len(gn) or not all(map(_same_number, gn, wn)):
                problems.append(f"cell {cell}, line {n}:\n  recorded: {w}\n  now:      {g}")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="run and (re)write the .out files and the figures")
    mode.add_argument("--check", action="store_true", help="run and compare with the .out files")
    mode.add_argument("--json", action="store_true", help="run one tutorial, print its outputs as JSON")
    p.add_argument("--figures", type=Path, help="--check/--json: write the figures to this directory "
                   "(default: a temporary one, removed afterwards)")
    p.add_argument("names", nargs="*", help="tutorial scripts (default: all)")
    args = p.parse_args(argv)
    paths = [script_path(n) for n in args.names] or tutorials()
    if args.write and args.figures:
        p.error("--write writes the figures to docs/tutorials/figures/; --figures is for --check/--json")
    if args.json and len(paths) != 1:
        p.error("--json takes exactly one tutorial")
    with contextlib.ExitStack() as stack:
        figures = FIGURES if args.write else args.figures or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if args.json:
            print(json.dumps(run(paths[0], figures)))
            return 0
        failed = 0
        for path in paths:
            if args.write:  # no figure left over from an earlier version of the tutorial
                for old in FIGURES.glob(f"{path.stem}_*.png"):
                    old.unlink()
            outputs = run(path, figures)
            if args.write:
                write_outputs(path, outputs)
                print(f"wrote {out_path(path).relative_to(HERE.parents[1])} and "
                      f"{', '.join(figure_names(path)) or 'no figure'}")
                continue
            problems = compare(read_outputs(path), outputs)
            problems += [f"figure {name} not written" for name in figure_names(path)
                         if not (figures / name).is_file()]
            print(f"{path.name}: {'ok' if not problems else 'DIFFERS'}")
            for line in problems:
                print("  " + line)
            failed += bool(problems)
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
