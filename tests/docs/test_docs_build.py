"""The documentation site builds in strict mode: a broken link, anchor, nav entry or API
reference fails the build (this is how CI builds the docs)."""

import html
import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest
from docs_blocks import ROOT


def _mkdocs(*args, cwd=ROOT):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _own_public_methods(cls: type) -> list[str]:
    """Public methods and properties that one of our classes (not diffusers') defines for ``cls``."""
    out = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("tcd_"):
            continue
        for member, value in vars(klass).items():
            if member.startswith("_") or member in out:
                continue
            if callable(value) or isinstance(value, (property, classmethod, staticmethod)):
                out.append(member)
    return out


def _former_name(module: object, name: str, obj: type) -> bool:
    """Whether ``name`` is another exported name of the class ``obj`` (``TCDPlan`` for
    ``Plan``): an alias kept for old code."""
    canonical = obj.__name__
    return canonical != name and canonical in module.__all__ and getattr(module, canonical) is obj


def _heading(page: str, entry: str) -> str:
    """The text of ``entry``'s heading on the built page (tags removed)."""
    start = page.index(f'id="{entry}"')
    heading = page[start : page.index("</h", start)]
    return html.unescape(re.sub(r"<[^>]+>", "", heading))


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    proc = _mkdocs(
        "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    # every public name of every package has its entry (a new export without docs fails here)
    packages = (
        "tcd_core",
        "tcd_sample",
        "tcd_sample.toy",
        "tcd_diffusers",
        "tcd_jax",
        "tcd_kdiffusion",
    )
    for package in packages:
        module = importlib.import_module(package)
        assert module.__all__, package
        for name in module.__all__:
            obj = getattr(module, name)
            foreign = not getattr(obj, "__module__", package).startswith("tcd_")
            if name.startswith("__") or foreign:  # diffusers' output classes, re-exported
                continue
            assert f'id="{package}.{name}"' in api, f"{package}.{name} is not in the API page"
            if isinstance(obj, type) and _former_name(module, name, obj):
                # TCDPlan = Plan: the entry says which name it stands for; the members are that
                # name's, checked under it
                heading = _heading(api, f"{package}.{name}")
                assert f"{name} = {obj.__name__}" in heading, heading
                continue
            if isinstance(obj, type):  # and its public methods, inherited from our bases too
                for member in _own_public_methods(obj):
                    entry = f"{package}.{name}.{member}"
                    assert f'id="{entry}"' in api, f"{entry} is not in the API page"
    concepts = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in concepts  # the maths is typeset, not left as dollars
    architecture = (site / "architecture" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in architecture
    # the diagrams are mermaid blocks for mkdocs-material to draw, not code listings
    assert architecture.count('<pre class="mermaid"><code>flowchart') == 2


def test_strict_mode_fails_on_a_broken_link(tmp_path):
    # the build above proves nothing unless strict mode really rejects broken references
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    for name in ("tcd_core", "adapters", "demo"):
        os.symlink(ROOT / name, copy / name)
    with open(copy / "docs" / "index.md", "a", encoding="utf-8") as f:
        f.write("\nSee [nowhere](no-such-page.md).\n")
    proc = _mkdocs("build", "--strict", "--site-dir", str(tmp_path / "site"), cwd=copy)
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stderr


@pytest.mark.parametrize("page", ["guides/diffusers.md", "guides/jax.md", "performance.md"])
def test_nav_pages_written_elsewhere_exist(page):
    # mkdocs.yml's nav names them; the strict build fails without them, this says which
    assert (ROOT / "docs" / page).is_file(), f"docs/{page} is missing"
