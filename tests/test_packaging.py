"""What a user of the wheel gets: declared dependencies match the imports, the submodules the
README lists are attributes of ``equilib``, ``py.typed`` and the licence ship, the tooling is
configured."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: the `test` extra installs tomli
    tomllib = pytest.importorskip("tomli")

import equilib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "equilib"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]

# import name -> distribution name, where they differ
DISTRIBUTION = {"orbax": "orbax-checkpoint"}


def _dist_name(requirement: str) -> str:
    return re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1).lower().replace("_", "-")


def _is_optional(node: ast.AST, parents: dict) -> bool:
    """Inside a ``try:`` whose handlers catch ImportError: the code runs without the package."""
    while node in parents:
        child, node = node, parents[node]
        if isinstance(node, ast.Try) and child in node.body:
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if caught & {"ImportError", "ModuleNotFoundError", "(ImportError, ModuleNotFoundError)"}:
                return True
    return False


def _third_party_imports() -> dict[str, dict[str, list[str]]]:
    """``{"required"|"optional": {top-level module: [where]}}`` over every module of equilib/."""
    found: dict[str, dict[str, list[str]]] = {"required": {}, "optional": {}}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in ("equilib", "__future__"):
                    continue
                kind = "optional" if _is_optional(node, parents) else "required"
                found[kind].setdefault(top, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_runtime_dependencies_are_exactly_what_equilib_imports():
    imports = _third_party_imports()
    declared = {_dist_name(r) for r in PROJECT["dependencies"]}
    needed = {DISTRIBUTION.get(m, m).lower() for m in imports["required"]}
    assert {"jax", "flax", "numpy", "optax", "orbax-checkpoint"} <= needed  # the scan sees the package
    undeclared = {m: w for m, w in imports["required"].items() if DISTRIBUTION.get(m, m).lower() not in declared}
    assert not undeclared, f"imported by equilib/ but not in [project] dependencies: {undeclared}"
    unused = declared - needed
    assert not unused, f"declared in [project] dependencies but never imported by equilib/: {sorted(unused)}"
    # a package imported under `try: ... except ImportError` is optional: it belongs to an extra
    extras = {_dist_name(r) for reqs in PROJECT["optional-dependencies"].values() for r in reqs}
    stray = {m: w for m, w in imports["optional"].items() if DISTRIBUTION.get(m, m).lower() not in extras | declared}
    assert not stray, f"optional imports in no extra: {stray}"


def test_the_import_scan_tells_optional_from_required():
    tree = ast.parse("import a\ntry:\n    import b\nexcept ImportError:\n    pass\n"
                     "try:\n    import c\nexcept KeyError:\n    pass\n")
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert [(n.names[0].name, _is_optional(n, parents)) for n in imports] == [("a", False), ("b", True), ("c", False)]


def test_tools_ci_runs_are_declared_and_configured():
    dev = {_dist_name(r) for r in PROJECT["optional-dependencies"]["dev"]}
    assert {"ruff", "mypy"} <= dev
    assert "test" in PROJECT["optional-dependencies"]
    assert PYPROJECT["tool"]["mypy"]["files"] == ["equilib"]
    assert "I" in PYPROJECT["tool"]["ruff"]["lint"]["select"]  # import order
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r'^"\$VENV/bin/ruff" check \.$', ci, re.M)
    assert re.search(r'^"\$VENV/bin/mypy"$', ci, re.M)
    assert ".[test,experiments,docs,dev]" in ci


def test_ci_runs_the_readmes_test_command_as_written():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = re.search(r"(EQUILIB_DATA_DIR=\S+) \.venv/bin/python -m pytest -q\n", readme)
    assert command, "the README lost its test command"
    assert command.group(1) == "EQUILIB_DATA_DIR=../shared/data"  # relative, as a fresh clone has it
    # the same command; only the venv's folder differs (CI builds its own, .ci-venv)
    assert f'{command.group(1)} "$VENV/bin/python" -m pytest -q\n' in ci


# --- the package as imported ----------------------------------------------------------------
def _readme_packages() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"^\| `equilib\.(\w+)`", readme, re.M))
                  | set(re.findall(r"^\| `equilib\.\w+`, `equilib\.(\w+)`", readme, re.M)))


def test_every_subpackage_the_readme_lists_is_an_attribute_of_equilib():
    names = _readme_packages()
    assert {"models", "training", "nn", "linen", "data"} <= set(names)
    # a fresh interpreter: `import equilib` alone, no `import equilib.models` anywhere before
    code = ("import sys, equilib\n"
            f"for name in {names!r}:\n"
            "    assert getattr(equilib, name).__name__ == 'equilib.' + name, name\n"
            "print('orbax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    # orbax (seconds to import) waits until a checkpoint is written
    assert out.stdout.split() == ["False"]
    for name in names:
        assert name in equilib.__all__


def test_version_is_single_sourced():
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "equilib.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", equilib.__version__)


# --- what ships -----------------------------------------------------------------------------
def test_license_file_is_the_apache_2_text_and_is_declared():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 190  # the full text
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]


def test_py_typed_is_package_data():
    assert (PACKAGE / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["equilib"]


def _setuptools_can_build() -> bool:
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib.metadata import version

    major = int(version("setuptools").split(".")[0])
    return major >= int(re.search(r"setuptools>=(\d+)", str(PYPROJECT["build-system"]["requires"])).group(1))


@pytest.mark.skipif(not _setuptools_can_build(), reason="needs setuptools>=77 in this environment to build "
                    "offline; .ci/run builds the wheel with pip's isolated build and checks it")
def test_wheel_ships_py_typed_and_license(tmp_path):
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "equilib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("equilib-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "equilib/py.typed" in names and "equilib/data/_mnist.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in metadata
    assert not any(n.startswith(("tests/", "experiments/", "docs/")) for n in names)
