"""Griffe extension for the API pages: ``Example:`` sections are examples, not admonitions.

The docstrings of tcd-core use Google style with an ``Example:`` section holding doctests. Griffe
parses only ``Examples:`` as an examples section (doctest lines rendered as Python code); the
singular is an admonition whose text Markdown would read as nested block quotes, and ``[...]``
outputs as cross-references. This renames the section header before parsing.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADER = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rewrite ``Example:`` to ``Examples:`` in every docstring griffe loads."""

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        doc = getattr(obj, "docstring", None)
        if doc is not None and "Example:" in doc.value:
            doc.value = _HEADER.sub(r"\1Examples:", doc.value)
