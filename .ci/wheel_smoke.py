"""Run inside a fresh venv that holds only the built wheel and the core's requirements.

Imports every module of tcd_core and of the demo, tcd_sample, and checks that each adapter whose
framework is missing fails with an ImportError that names the extra to install. Run from outside
the source tree, so that the installed wheel (not the checkout) is what gets imported. `.ci/run`
calls it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import re
import sys

import tcd_core
import tcd_sample

# The frameworks an adapter may need; none of them may be in this venv.
FRAMEWORKS = ("torch", "jax", "diffusers", "flax", "matplotlib")
# Top-level packages of the wheel that are not adapters (no framework, no extra of their name).
NOT_ADAPTERS = ("tcd_core", "tcd_sample")


def main() -> int:
    for name in FRAMEWORKS:
        if importlib.util.find_spec(name) is not None:
            print(f"wheel smoke: {name} is installed; this venv must hold only the core's needs")
            return 1
    dist = importlib.metadata.distribution("tcd-core")
    for package in (tcd_core, tcd_sample):
        if "site-packages" not in str(package.__file__):
            print(
                f"wheel smoke: {package.__name__} imported from {package.__file__}, not the wheel"
            )
            return 1
    assert tcd_core.__version__ == dist.version, (tcd_core.__version__, dist.version)

    for package in (tcd_core, tcd_sample):
        modules = [package.__name__]
        modules += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
        for name in modules:
            importlib.import_module(name)
        print(
            f"wheel smoke: imported {len(modules)} {package.__name__} modules: {', '.join(modules)}"
        )

    top_level = dist.read_text("top_level.txt") or ""
    adapters = sorted(
        n for n in top_level.split() if n.startswith("tcd_") and n not in NOT_ADAPTERS
    )
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    if not adapters:
        print("wheel smoke: the wheel holds no adapter packages")
        return 1
    for name in adapters:
        extra = name.removeprefix("tcd_")
        if extra not in extras:
            print(f"wheel smoke: adapter {name} has no extra [{extra}] in the metadata")
            return 1
        try:
            importlib.import_module(name)
        except ImportError as exc:
            wanted = f'pip install "tcd-core[{extra}]"'
            if wanted not in str(exc):
                print(f"wheel smoke: import {name} failed without naming {wanted!r}: {exc}")
                return 1
            print(f"wheel smoke: import {name} -> ImportError: {exc}")
        else:
            print(f"wheel smoke: import {name} succeeded without its framework")
            return 1
    if not re.fullmatch(r"\d+\.\d+\.\d+.*", dist.version):
        print(f"wheel smoke: odd version {dist.version!r}")
        return 1
    print(f"wheel smoke: tcd-core {dist.version} OK ({len(adapters)} adapters checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
