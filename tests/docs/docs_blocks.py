"""Extract the ```python blocks of a Markdown file (shared by the docs tests).

Convention: every block fenced ```python runs; a block whose info string contains ``notest``
(written ```python {.notest}, which pymdownx.superfences renders as a normal Python block) is
shown but not run. Fences may be indented (inside lists or admonitions); the indentation of the
opening fence is removed from the block.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]

_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


class Block(NamedTuple):
    line: int  # 1-based line of the opening fence
    info: str
    code: str


def blocks(text: str) -> list[Block]:
    """Every fenced block, in order (any language)."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        body = []
        j = i + 1
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while j < len(lines) and not close.match(lines[j]):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        out.append(Block(i + 1, info, "\n".join(body) + "\n"))
        i = j + 1
    return out


def is_python(info: str) -> bool:
    lang = info.lstrip("{").lstrip(".").split()[0] if info else ""
    return lang in ("python", "py", "python3")


def runnable(text: str) -> list[Block]:
    """The Python blocks that run: language python, no ``notest`` in the info string."""
    return [b for b in blocks(text) if is_python(b.info) and "notest" not in b.info]


def markdown_files() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    files = [ROOT / "README.md"] if (ROOT / "README.md").exists() else []
    return files + sorted((ROOT / "docs").rglob("*.md"))
