"""Every docstring example in tcd_core runs and prints what it claims (no rot)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tcd_core

# every module and subpackage except a __main__ (the tcd_core.toy alias has no examples of its
# own: the demo's run in tests/sample/test_sample_doctests.py)
MODULES = ["tcd_core"] + sorted(
    info.name
    for info in pkgutil.walk_packages(tcd_core.__path__, prefix="tcd_core.")
    if not info.name.endswith("__main__")
)
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_public_api_documented_with_examples():
    """Each public function/class re-exported from tcd_core has a docstring; each function that
    computes something has a runnable example."""
    missing_doc, missing_example = [], []
    for name in tcd_core.__all__:
        obj = getattr(tcd_core, name)
        if isinstance(obj, (str, tuple)):
            continue
        doc = obj.__doc__ or ""
        if not doc.strip():
            missing_doc.append(name)
        elif callable(obj) and not isinstance(obj, type) and ">>>" not in doc:
            missing_example.append(name)
    assert not missing_doc, missing_doc
    assert not missing_example, missing_example
    total = sum(len(doctest.DocTestFinder().find(importlib.import_module(m))) for m in MODULES)
    assert total > 0
