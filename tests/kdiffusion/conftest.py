"""tests/kdiffusion: the proof of ``tcd_kdiffusion`` against diffusers' TCDScheduler (issue 11).

Shared helpers live next to the tests as plain modules (``kdiffusion_helpers``,
``kdiffusion_strategies``); this conftest puts this directory, and tests/diffusers for the tiny
pipeline components, on ``sys.path``. Test files are named ``test_kdiffusion_*.py`` so their
basenames cannot collide with other test directories.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for path in (_HERE, os.path.join(os.path.dirname(_HERE), "diffusers")):
    if path not in sys.path:
        sys.path.insert(0, path)

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small tensors on a shared 2-core runner: intra-op threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_terminal_summary(terminalreporter):
    """Report the largest scaled difference from diffusers measured per kind of comparison."""
    helpers = sys.modules.get("kdiffusion_helpers")
    if helpers is None or not helpers.MEASURED:
        return
    terminalreporter.section("tcd_kdiffusion vs diffusers: max |Δ|/(1+max|ref|) (bound 1e-5)")
    for key, (err, count) in sorted(helpers.MEASURED.items()):
        terminalreporter.write_line(f"{key:>28}: {err:.3g} over {count} comparisons")
