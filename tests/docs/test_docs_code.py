"""Every ```python block of the README and the docs runs, so no example can rot.

Each file's blocks run in order in one namespace, in a fresh interpreter whose working directory
is a temporary folder (examples may write files). A failure names the file and the block's line.
"""

import json
import os
import subprocess
import sys

import pytest
from docs_blocks import ROOT, blocks, markdown_files, runnable

RUNNER = r"""
import json, sys, traceback
spec = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__main__"}
for line, code in spec["blocks"]:
    try:
        exec(compile(code, f"{spec['file']}:{line}", "exec"), namespace)
    except BaseException:
        print(f"\n--- block at {spec['file']} line {line} failed ---", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""

FILES = [p for p in markdown_files() if runnable(p.read_text(encoding="utf-8"))]


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_python_blocks_run(path, tmp_path):
    spec = {
        "file": str(path.relative_to(ROOT)),
        "blocks": [(b.line, b.code) for b in runnable(path.read_text(encoding="utf-8"))],
    }
    (tmp_path / "blocks.json").write_text(json.dumps(spec), encoding="utf-8")
    (tmp_path / "runner.py").write_text(RUNNER, encoding="utf-8")
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "blocks.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]


def test_the_docs_have_examples_to_run():
    # the README and the core pages must keep runnable examples (a filter gone wrong would
    # silently skip everything)
    names = {str(p.relative_to(ROOT)) for p in FILES}
    for must in (
        "docs/getting-started.md",
        "docs/architecture.md",
        "docs/guides/custom-sampler.md",
        "docs/concepts.md",
        "docs/sample.md",
        "docs/index.md",
    ):
        assert must in names


def test_block_extraction_convention():
    text = (
        "intro\n\n```python\na = 1\n```\n\n```python {.notest}\nimport cupy\n```\n\n"
        "```text\nnot code\n```\n\n- item\n\n    ```python\n    b = a + 1\n    ```\n\n"
        "````markdown\n```python\nnested = 1\n```\n````\n"
    )
    assert [b.info for b in blocks(text)] == [
        "python",
        "python {.notest}",
        "text",
        "python",
        "markdown",
    ]
    assert [b.code for b in runnable(text)] == ["a = 1\n", "b = a + 1\n"]
