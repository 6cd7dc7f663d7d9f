"""Griffe extensions for the API pages: document names as the code declares them at runtime.

``CommentDocstrings``: the packages document some module and class attributes with Sphinx's
``#:`` comments (``tcd_core.TCD``, ``tcd_core.FRESH``, the former names such as
``TCDPlan = Plan``). Griffe reads only docstrings, and mkdocstrings leaves undocumented names
out, so those names had no entry. A ``#:`` block becomes the docstring of the assignments that
directly follow it, one per line (``TCDPlan = Plan`` then ``LCMPlan = Plan`` under one comment).
A docstring written after the assignment wins. An attribute assigned ``property(..., doc="...")``
(``Coefficients.sqrt_alpha_t``, a former field name) gets that ``doc`` as its docstring.

``ShadowedSubmodules``: ``from .step import step`` in a package's ``__init__`` rebinds the
package attribute ``step`` from the submodule to the function, so ``tcd_core.step`` *is* the
function at runtime; griffe keeps the submodule under that name (and warns that it shadows the
member), so the function had no entry. The member becomes an alias of the imported object (found
with ``ast`` in the ``__init__``), after every alias of the package is resolved (their paths may
run through the submodule).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
from pathlib import Path
from typing import Any

import griffe

_ASSIGNMENT = re.compile(r"^\s*[A-Za-z_]\w*\s*(:[^=]*)?=")
_COMMENT = re.compile(r"^\s*#:\s?(?P<text>.*)$")


@functools.lru_cache(maxsize=256)
def _lines(path: str) -> tuple[str, ...]:
    return tuple(Path(path).read_text(encoding="utf-8").splitlines())


def _comment_above(lines: tuple[str, ...], lineno: int) -> str | None:
    """The ``#:`` block above line ``lineno`` (1-based), skipping the one-line assignments
    between them; None where there is none."""
    i = lineno - 2
    while i >= 0 and _ASSIGNMENT.match(lines[i]) and not lines[i].rstrip().endswith(("(", "[")):
        i -= 1
    text: list[str] = []
    while i >= 0 and (m := _COMMENT.match(lines[i])):
        text.insert(0, m["text"])
        i -= 1
    return "\n".join(text) if text else None


def _property_doc(node: Any) -> str | None:
    """The ``doc`` of an assignment ``name = property(..., doc="...")``; None otherwise."""
    value = getattr(node, "value", None)
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
        return None
    if value.func.id != "property":
        return None
    for keyword in value.keywords:
        if keyword.arg == "doc" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    return None


class CommentDocstrings(griffe.Extension):
    """``#:`` comments (and ``property(doc=)``) as the docstrings of the attributes below them."""

    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is not None or attr.lineno is None or attr.filepath is None:
            return
        text = _property_doc(node)
        if text is None:
            filepath = attr.filepath[0] if isinstance(attr.filepath, list) else attr.filepath
            text = _comment_above(_lines(str(filepath)), attr.lineno)
        if text is not None:
            attr.docstring = griffe.Docstring(
                text, lineno=attr.lineno, endlineno=attr.lineno, parent=attr
            )


class ShadowedSubmodules(griffe.Extension):
    """A package attribute that its ``__init__`` rebinds from a submodule to an object of the
    same name (``from .step import step``) is documented as that object, as Python sees it."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        shadowed = []
        for name, imported in _rebinding_imports(pkg):
            member = pkg.members.get(name)
            if member is not None and not member.is_alias and member.is_module:
                target = member.members.get(imported)
                if target is not None:
                    shadowed.append((name, target))
        if not shadowed:
            return
        unresolvable = (griffe.AliasResolutionError, griffe.CyclicAliasError)
        for obj in _walk(pkg):
            if obj.is_alias:
                with contextlib.suppress(unresolvable):  # external names (numpy, torch)
                    obj.resolve_target()
        for name, target in shadowed:
            pkg.members[name] = griffe.Alias(name, target, parent=pkg)


def _rebinding_imports(pkg: griffe.Module) -> list[tuple[str, str]]:
    """(bound name, imported name) of each ``from .name import x as name`` at the top level of
    ``pkg``'s ``__init__`` (read with ``ast``, nothing imported): the imports that rebind the
    package attribute of the submodule ``name``."""
    filepath = pkg.filepath[0] if isinstance(pkg.filepath, list) else pkg.filepath
    if filepath is None or Path(filepath).name != "__init__.py":
        return []
    tree = ast.parse("\n".join(_lines(str(filepath))))
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                if (alias.asname or alias.name) == node.module:
                    found.append((node.module, alias.name))
    return found


def _walk(obj: griffe.Object) -> Any:
    """Every member of ``obj``'s tree (aliases are not followed)."""
    for member in list(obj.members.values()):
        yield member
        if not member.is_alias:
            yield from _walk(member)
