"""The install instructions say what works today: tcd-core is not on the package index, so every
`pip install tcd-core…` line from the index is labelled as what will work once released, and the
README opens with the two commands from a checkout."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FROM_INDEX = re.compile(r"""pip install\s+["']?tcd-core\b""")
RELEASED = "Once tcd-core is released"

FIRST_TWO = """\
# tcd-core

```bash
pip install -c constraints.txt -e ".[sample]" && tcd-sample
pip install -c constraints.txt -e ".[test]" && python -m pytest
```
"""


def _bash_blocks(text):
    """(the prose just before, the block) for every ```bash block."""
    out = []
    for m in re.finditer(r"```bash\n(.*?)```", text, re.S):
        out.append((text[max(0, m.start() - 300) : m.start()], m.group(1)))
    return out


def test_the_readme_opens_with_the_two_commands():
    assert (ROOT / "README.md").read_text(encoding="utf-8").startswith(FIRST_TWO)


def test_index_installs_are_labelled_as_after_the_release():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    unlabelled = []
    for page in pages:
        for before, block in _bash_blocks(page.read_text(encoding="utf-8")):
            for line in block.splitlines():
                if FROM_INDEX.search(line) and RELEASED not in before and "released" not in line:
                    unlabelled.append(f"{page.relative_to(ROOT)}: {line.strip()}")
    assert not unlabelled, "\n".join(unlabelled)


def test_the_readme_says_how_to_install_today():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    install = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "not on PyPI yet" in install
    for extra in ("diffusers", "jax", "kdiffusion"):
        assert f'pip install -c constraints.txt -e ".[{extra}]"' in install
    assert "python -m build" in install
    assert re.search(r'pip install "dist/tcd_core-[^"]+-py3-none-any\.whl\[jax\]"', install)
