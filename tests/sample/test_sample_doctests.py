"""Every docstring example in tcd_sample runs and prints what it claims (no rot), as
tests/core does for tcd_core."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tcd_sample

# every module and subpackage except __main__, which runs the CLI when run as a script
MODULES = ["tcd_sample"] + sorted(
    info.name
    for info in pkgutil.walk_packages(tcd_sample.__path__, prefix="tcd_sample.")
    if not info.name.endswith("__main__")
)
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def test_the_modules_are_found():
    assert {"tcd_sample.cli", "tcd_sample.toy", "tcd_sample.toy.sampling"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
