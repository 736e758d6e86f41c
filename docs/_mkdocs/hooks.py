"""MkDocs hook: one page per tutorial script, built from the script and its recorded outputs.

For every ``docs/tutorials/NN_name.py`` the page ``tutorials/NN_name.md`` is generated: the
Markdown cells as prose, each code cell as a Python block followed by the output it printed,
read from ``NN_name.out`` (recorded by ``python docs/tutorials/_run.py --write`` and checked by
``tests/test_docs.py``). Nothing is executed at build time. A tutorial without a recorded
output, or whose recording names a cell the script does not have, fails the build.

Figures: the prose shows them with ``![alt](figures/NN_name_what.png)``, the PNGs the tutorial
wrote (``--write`` regenerates them; they are committed, so the build needs neither JAX nor
matplotlib). A figure the prose shows but the repository lacks fails the build. The code of a
cell tagged ``hide-input`` (plotting code) is folded under a "Code of the figure" box.

It also points ``pymdownx.snippets`` at the repository root, so that the build works from any
working directory.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
IMAGE_ALT = re.compile(r"!\[([^\]]*)\]")


def _runner():
    spec = importlib.util.spec_from_file_location("_equilib_tutorial_runner", TUTORIALS / "_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tutorial_markdown(path: Path, runner) -> str:
    if not runner.out_path(path).exists():
        raise PluginError(f"{path.name}: no recorded output; run `python docs/tutorials/_run.py --write "
                          f"{path.name}`")
    missing = [name for name in runner.figure_names(path) if not (runner.FIGURES / name).is_file()]
    if missing:
        raise PluginError(f"{path.name}: shows figures that docs/tutorials/figures/ lacks: {missing}; run "
                          f"`python docs/tutorials/_run.py --write {path.name}`")
    outputs = runner.read_outputs(path)
    parts, code_cell = [], 0
    for kind, text, folded in runner.cells(path):
        if kind == "markdown":  # an image's alt text may wrap in the script; one line in the page
            parts.append(IMAGE_ALT.sub(lambda m: "![" + " ".join(m.group(1).split()) + "]", text))
            if not code_cell and text.lstrip().startswith("# "):  # after the title
                parts.append(f"!!! note \"Run it\"\n    This page is the script [`{path.name}`]({path.name}) "
                             f"with the output it printed and the figures it drew. Run it with "
                             f"`python docs/tutorials/{path.name}`; `tests/test_docs.py` runs it and compares "
                             f"its output with what is shown here.")
            continue
        code_cell += 1
        if folded:  # collapsed, indented under the box's title (pymdownx.details + superfences)
            body = "\n".join("    " + line if line else "" for line in f"```python\n{text}\n```".split("\n"))
            parts.append(f"??? example \"Code of the figure\"\n\n{body}")
        else:
            parts.append(f"```python\n{text}\n```")
        if code_cell in outputs:
            parts.append(f"```text title=\"output\"\n{outputs.pop(code_cell)}\n```")
    if outputs:
        raise PluginError(f"{path.name}: recorded outputs for cells {sorted(outputs)} that the script "
                          f"does not have; rerun `python docs/tutorials/_run.py --write {path.name}`")
    return "\n\n".join(parts) + "\n"


def on_config(config, **kwargs):
    # snippets paths (``--8<-- "docs/escnn_example.py"``) are relative to the repository root,
    # wherever mkdocs is run from
    root = str(Path(config.config_file_path).resolve().parent)
    config.mdx_configs.setdefault("pymdownx.snippets", {})["base_path"] = [root]
    return config


def on_files(files, config, **kwargs):
    runner = _runner()
    for path in runner.tutorials():
        src_uri = f"tutorials/{path.stem}.md"
        files.append(File.generated(config, src_uri, content=tutorial_markdown(path, runner)))
    return files
