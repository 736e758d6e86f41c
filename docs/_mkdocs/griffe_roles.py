"""Griffe extension for the API reference: equilib's docstrings, read as Markdown.

equilib's docstrings are plain text with a few Sphinx habits. Markdown renders most of them as
intended (````code```` is a code span in both), except

* cross-reference roles, ``:class:`X```, ``:func:`~equilib.x.f```, ``:meth:`Group.transform_regular```:
  each becomes a link to the documented object when the target resolves (from the docstring's
  own scope, then from the public modules) to an object that the API pages render, and a
  plain code span otherwise (private helpers, objects documented nowhere). Links are emitted
  only to rendered objects, so ``mkdocs build --strict`` never meets an unresolved reference.
* literal-block markers: a paragraph ending in ``::`` before an indented block ends in ``:``.

The set of rendered objects is read from the ``::: identifier`` lines of ``docs/api/*.md``.
Loaded by mkdocstrings (``extensions`` in ``mkdocs.yml``); nothing in the library depends on it.
"""

from __future__ import annotations

import re
from pathlib import Path

import griffe

API_DIR = Path(__file__).resolve().parents[1] / "api"
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|py:\w+):`(~?)([^`<>]+?)`")
DIRECTIVE = re.compile(r"^:::\s+(\S+)", re.M)
PUBLIC_MODULES = ("equilib", "equilib.groups", "equilib.nn", "equilib.functional", "equilib.testing",
                  "equilib.fields", "equilib.reps", "equilib.data", "equilib.transforms",
                  "equilib.metrics", "equilib.models", "equilib.training", "equilib.linen")


def _final(obj):
    try:
        return obj.final_target if obj.is_alias else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _lookup(scope, dotted: str):
    try:
        return _final(scope[dotted])
    except (KeyError, ValueError, IndexError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _walk(obj, seen: set):
    """Yield every non-alias object of the tree under ``obj`` (each once)."""
    if obj.is_alias or id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    for member in list(obj.members.values()):
        yield from _walk(member, seen)


class DocstringRoles(griffe.Extension):
    """Rewrite Sphinx roles into autorefs links (or code spans) once ``equilib`` is loaded."""

    def on_package(self, *, pkg, loader=None, **kwargs) -> None:
        if pkg.path != "equilib":
            return
        self.pkg = pkg
        self.rendered = self._rendered_paths()
        for obj in _walk(pkg, set()):
            if obj.docstring is not None and obj.docstring.value:
                obj.docstring.value = self._rewrite(obj, obj.docstring.value)

    # --- which objects have an anchor in the built site -------------------------------------
    def _rendered_paths(self) -> set[str]:
        paths: set[str] = set()
        for page in sorted(API_DIR.glob("*.md")):
            for ident in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
                obj = self._absolute(ident)
                if obj is None:
                    continue
                paths.add(ident)
                paths.add(obj.path)
                if obj.is_class:  # a class is rendered with its public members
                    for name, member in obj.members.items():
                        target = _final(member)
                        if target is not None and not name.startswith("_"):
                            paths.add(target.path)
        return paths

    def _absolute(self, dotted: str):
        if dotted == "equilib":
            return self.pkg
        if not dotted.startswith("equilib."):
            return None
        return _lookup(self.pkg, dotted[len("equilib."):])

    # --- resolving a role's target ----------------------------------------------------------
    def _resolve(self, obj, target: str):
        found = self._absolute(target)
        if found is not None:
            return found
        scope = obj
        while scope is not None:  # the docstring's own scope, then its parents
            found = _lookup(scope, target)
            if found is not None:
                return found
            scope = scope.parent
        for module in PUBLIC_MODULES:
            found = self._absolute(module) if module != "equilib" else self.pkg
            found = _lookup(found, target) if found is not None else None
            if found is not None:
                return found
        return None

    def _link(self, obj, match: re.Match) -> str:
        short, target = match.group(1) == "~", match.group(2).strip()
        text = target.rsplit(".", 1)[-1] if short else target
        found = self._resolve(obj, target)
        if found is not None and found.path in self.rendered:
            return f"[`{text}`][{found.path}]"
        return f"`{text}`"

    def _rewrite(self, obj, text: str) -> str:
        text = ROLE.sub(lambda m: self._link(obj, m), text)
        # reST literal blocks: "text::" + blank line + indented block -> "text:"
        text = re.sub(r"(\S)::\n(\s*\n)", r"\1:\n\2", text)
        return _fence_doctests(text)


DOCTEST = re.compile(r"^([ \t]*)>>>")


def _fence_doctests(text: str) -> str:
    """Doctest blocks (a ``>>>`` line up to the next blank line) -> fenced ``pycon`` code.

    An ``Example:`` section is Markdown to griffe, which would read ``>>>`` as nested block
    quotes and a printed ``[0, 1][0]`` as a link."""
    lines, out, i, fenced = text.split("\n"), [], 0, False
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else DOCTEST.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        out.append(f"{match.group(1)}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(f"{match.group(1)}```")
    return "\n".join(out)
