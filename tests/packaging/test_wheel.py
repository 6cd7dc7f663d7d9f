"""The built wheel and sdist hold the whole source tree: every package, py.typed, the entry point,
one version. An editable install hides a package the wheel leaves out (it once left out
tcd_core.toy, now tcd_sample.toy, and `pip install .` then `tcd-sample` failed); these tests build
the real artefacts.

`.ci/run` goes further: it installs the wheel into a fresh venv with only the core's requirements
and runs `tcd-sample` and `.ci/wheel_smoke.py` there.
"""

from __future__ import annotations

import configparser
import email
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import tcd_core

REPO = Path(__file__).resolve().parents[2]


def _top_level_in(source_root: str) -> list[Path]:
    return [d for d in sorted((REPO / source_root).iterdir()) if (d / "__init__.py").is_file()]


def _adapters() -> list[str]:
    """The adapter packages: the top-level packages of the adapters/ source root."""
    return [d.name for d in _top_level_in("adapters")]


def _source_packages() -> dict[str, Path]:
    """Import name -> directory, for every package of the source tree (adapters/ and demo/ are
    roots)."""
    roots = [(REPO / "tcd_core", "tcd_core")]
    roots += [
        (d, d.name) for source_root in ("adapters", "demo") for d in _top_level_in(source_root)
    ]
    found = {}
    for root, name in roots:
        for init in root.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(root)
            found[".".join((name, *rel.parts))] = init.parent
    return found


#: What is never source, where git cannot say (an unpacked sdist): build outputs, caches, venvs.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".venv*"
)


def _copy_source(tree: Path) -> None:
    """The tree's source files (git's tracked and untracked-but-not-ignored ones) into ``tree``."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
        )
    except OSError:  # no git
        listed = None
    if listed is None or listed.returncode != 0:
        shutil.copytree(REPO, tree, ignore=_NOT_SOURCE)
        return
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():  # a tracked file deleted in the working tree is not there
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)


def _build(kind: str, out: Path) -> Path:
    """Build from a copy of the source: setuptools builds in ``./build``, so two builds in the
    tree at once (two pytest-xdist workers, or a ``pip install .`` beside the tests) race there,
    and one once came out holding only metadata; and a stale ``build/lib`` would leak files the
    tree no longer has into the wheel."""
    tree = out.parent / f"{out.name}-tree"
    _copy_source(tree)
    code = f"import sys; from setuptools import build_meta as b; print(b.build_{kind}(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    return zipfile.ZipFile(_build("wheel", tmp_path_factory.mktemp("wheel")))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tarfile.TarFile:
    return tarfile.open(_build("sdist", tmp_path_factory.mktemp("sdist")))


def test_source_tree_has_the_packages_we_expect():
    # guards the discovery helper itself: it must see subpackages and every adapter
    packages = _source_packages()
    assert {"tcd_core", "tcd_diffusers", "tcd_jax", "tcd_sample", "tcd_sample.toy"} <= set(packages)
    assert "tcd_core.toy" in packages  # the deprecated alias of tcd_sample.toy ships too
    assert {"tcd_diffusers", "tcd_jax", "tcd_kdiffusion"} <= set(_adapters())


def test_wheel_holds_every_module_of_every_package(wheel):
    names = set(wheel.namelist())
    for package, directory in _source_packages().items():
        for module in directory.glob("*.py"):
            path = "/".join((*package.split("."), module.name))
            assert path in names, f"{path} is missing from the wheel"


def test_every_top_level_package_is_typed(wheel):
    names = set(wheel.namelist())
    tops = {p for p in _source_packages() if "." not in p}
    for top in tops:
        assert f"{top}/py.typed" in names


def test_wheel_holds_nothing_but_the_packages(wheel):
    tops = {p for p in _source_packages() if "." not in p}
    for name in wheel.namelist():
        first = name.split("/")[0]
        assert first in tops or first.endswith(".dist-info"), name


def _dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_wheel_metadata_version_entry_point_and_extras(wheel):
    meta = email.message_from_string(_dist_info(wheel, "METADATA"))
    assert meta["Name"] == "tcd-core"
    assert meta["Version"] == tcd_core.__version__  # one source: tcd_core/_version.py
    assert meta["License-Expression"] == "Apache-2.0"
    extras = set(meta.get_all("Provides-Extra"))
    # every adapter package has an extra of its own name, the one its ImportError names
    for package in _adapters():
        assert package.removeprefix("tcd_") in extras, package
    assert "sample" in extras  # the demo's figure (matplotlib): what tcd-sample's error names
    requires = meta.get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    assert sorted(r.split(">")[0] for r in core) == ["array-api-compat", "numpy"]
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_dist_info(wheel, "entry_points.txt"))
    assert entry_points["console_scripts"]["tcd-sample"] == "tcd_sample.cli:main"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel.namelist())


def test_sdist_holds_the_sources_and_the_project_files(sdist):
    names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for must in ("pyproject.toml", "README.md", "LICENSE"):
        assert must in names
    for directory in _source_packages().values():
        for module in directory.glob("*.py"):
            assert str(module.relative_to(REPO)) in names, module


def test_adapters_name_their_extra_when_the_framework_is_missing(tmp_path):
    # what the wheel smoke test checks in a venv without frameworks, here by hiding them
    for package in _adapters():
        code = (
            "import sys\n"
            "for m in ('torch', 'jax', 'diffusers', 'flax'):\n"
            "    sys.modules[m] = None\n"
            "try:\n"
            f"    import {package}\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
            "else:\n"
            "    print('imported')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        extra = package.removeprefix("tcd_")
        assert f'pip install "tcd-core[{extra}]"' in done.stdout, (package, done.stdout)
