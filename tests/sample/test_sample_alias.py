"""``tcd_core.toy``, the demo's old home, is a deprecated alias of ``tcd_sample.toy``: old imports
give the very same objects and modules, and no warning."""

import importlib
import subprocess
import sys

import pytest

import tcd_sample.toy

SUBMODULES = ("metrics", "mixture", "models", "sampling")


def test_the_alias_exports_the_same_names_and_objects():
    alias = importlib.import_module("tcd_core.toy")
    assert alias.__all__ == tcd_sample.toy.__all__
    for name in tcd_sample.toy.__all__:
        assert getattr(alias, name) is getattr(tcd_sample.toy, name), name


@pytest.mark.parametrize("name", SUBMODULES)
def test_the_alias_submodules_are_the_demo_modules(name):
    new = importlib.import_module(f"tcd_sample.toy.{name}")
    assert importlib.import_module(f"tcd_core.toy.{name}") is new
    assert getattr(importlib.import_module("tcd_core.toy"), name) is new
    for public in new.__all__:
        old = getattr(importlib.import_module(f"tcd_core.toy.{name}"), public)
        assert old is getattr(new, public), (name, public)


def test_old_import_statements_work_in_a_fresh_process_without_warnings():
    # fresh: nothing imported yet, so the alias itself must register the submodules
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "import tcd_core.toy.mixture\n"
        "from tcd_core.toy.sampling import tcd_sample\n"
        "from tcd_core.toy import DistilledModel, preset\n"
        "from tcd_core import toy\n"
        "import tcd_sample.toy as new\n"
        "assert tcd_core.toy.mixture is new.mixture\n"
        "assert tcd_sample is new.tcd_sample and toy.preset is preset is new.preset\n"
        "assert DistilledModel is new.models.DistilledModel\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr == ""
