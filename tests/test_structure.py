"""The package's shape, checked so that it stays easy to carry on.

* no module imports an underscore-prefixed name from another module (shared internals live in
  ``equilib/_src`` under public names);
* no import cycle among equilib's modules, counting imports inside functions;
* no function longer than 80 lines of code (its docstring not counted);
* every public name re-exported by a public module has a docstring with ``Args:`` (where it
  takes arguments), ``Returns:`` (where it returns something) and a runnable ``>>>`` example.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "equilib"
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = ast.parse(path.read_text(), filename=str(path))
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (ROOT.parent / name.replace(".", "/") / "__init__.py").exists()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, tree: ast.Module):
    """(target module, imported name or None, line) for every import in ``module``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # `from equilib import nn` imports a module
                    yield sub, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def test_the_checks_see_the_package():
    assert "equilib.nn" in MODULES and "equilib.groups" in MODULES
    assert any(t == "equilib.groups" for t, _, _ in _imports("equilib.nn._conv", MODULES["equilib.nn._conv"])) or \
        any(t.startswith("equilib") for t, _, _ in _imports("equilib.nn._conv", MODULES["equilib.nn._conv"]))


def test_no_underscore_name_is_imported_from_another_module():
    bad = [f"{m}:{line} imports {name!r} from {target}"
           for m, tree in MODULES.items() for target, name, line in _imports(m, tree)
           if name is not None and name.startswith("_") and not name.startswith("__")]
    assert not bad, "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, tree in MODULES.items():
        for target, _, _ in _imports(m, tree):
            # a package's __init__ importing its own submodules is how re-exports work
            if target in MODULES and target != m and not target.startswith(m + "."):
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    # negative control for the check below
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_no_import_cycle_among_modules():
    graph = _graph()
    # a package importing a module that imports the package back (to reach a sibling) is the
    # common way cycles creep in; only real module-to-module edges are counted
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _code_start(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """First line of the function counted against the limit: its signature, or the first statement
    after its docstring (a docstring is the contract, not code to read past)."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1].lineno
    return node.lineno


def test_no_function_is_longer_than_80_lines():
    long = []
    for m, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - _code_start(node) + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name} (line {node.lineno}): {n} lines")
    assert not long, "\n".join(long)


PUBLIC_MODULES = ["equilib", "equilib.groups", "equilib.reps", "equilib.fields", "equilib.functional",
                  "equilib.nn", "equilib.linen", "equilib.testing", "equilib.metrics", "equilib.data",
                  "equilib.transforms", "equilib.models", "equilib.training"]


def _public_objects():
    seen = set()
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            yield f"{name}.{attr}", obj


def _returns_something(fn) -> bool:
    try:
        tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return True
    body = tree.body[0]
    return any(isinstance(n, ast.Return) and n.value is not None for n in ast.walk(body)) or \
        any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in ast.walk(body))


def _missing_sections(qualname: str, obj) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    missing = []
    if not doc:
        return ["docstring"]
    if ">>>" not in doc:
        missing.append("Example (>>>)")
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        params = []
    if inspect.isclass(obj) and not str(getattr(target, "__module__", "") or "").startswith("equilib"):
        params = []  # inherited from Python or Flax (a warning class, a plain subclass)
    if params and "Args:" not in doc and "Attributes:" not in doc:
        # a class documents its constructor's arguments in its own docstring, as Flax does
        init_doc = inspect.getdoc(target) if inspect.isclass(obj) else ""
        if "Args:" not in (init_doc or ""):
            missing.append("Args:")
    if inspect.isfunction(obj) and _returns_something(obj) and "Returns:" not in doc and "Yields:" not in doc:
        missing.append("Returns:")
    return missing


def test_every_public_name_documents_args_returns_and_an_example():
    problems = [f"{q}: missing {', '.join(m)}" for q, obj in _public_objects()
                if (m := _missing_sections(q, obj))]
    assert not problems, f"{len(problems)} public names lack docstring sections:\n" + "\n".join(problems)


@pytest.mark.parametrize("bad", ["no docstring", "no example"])
def test_docstring_check_rejects_incomplete_docstrings(bad):
    def f(x):
        return x

    f.__doc__ = None if bad == "no docstring" else "Identity.\n\nArgs:\n  x: input.\n\nReturns:\n  x."
    assert _missing_sections("f", f)


def _documented_args(doc: str) -> list[str]:
    """Names in a Google-style ``Args:`` section; ``a, b: ...`` documents two arguments."""
    names, in_args, indent = [], False, None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:"):
            in_args, indent = True, None
            continue
        if not in_args:
            continue
        if stripped and not line.startswith(" "):
            break  # the next section
        if not stripped:
            continue
        cur = len(line) - len(line.lstrip())
        indent = cur if indent is None else indent
        if cur == indent and ":" in stripped:
            head = stripped.split(":", 1)[0]
            head = head.split("(", 1)[0]  # `x (Array): ...`
            names += [n.strip().lstrip("*") for n in head.split(",") if n.strip()]
    return names


def test_documented_arguments_exist():
    problems = []
    for q, obj in _public_objects():
        target = obj.__init__ if inspect.isclass(obj) else obj
        try:
            params = set(inspect.signature(target).parameters)
        except (TypeError, ValueError):
            continue
        if inspect.isclass(obj) and dataclasses_fields(obj):
            params |= dataclasses_fields(obj)
        unknown = [n for n in _documented_args(inspect.getdoc(obj) or "") if n not in params]
        if unknown:
            problems.append(f"{q}: documents {unknown}, not in {sorted(params)}")
    assert not problems, "\n".join(problems)


def dataclasses_fields(cls) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def test_documented_arguments_check_catches_a_renamed_argument():
    doc = "Do it.\n\nArgs:\n    x, y: inputs.\n    old (int): gone.\n\nReturns:\n    z."
    assert _documented_args(doc) == ["x", "y", "old"]
