"""tests/diffusers: the proof of ``tcd_diffusers.TCDScheduler`` against diffusers' own (issue 3).

Shared helpers live next to the tests as plain modules (``diffusers_helpers``,
``diffusers_components``); this conftest puts this directory on ``sys.path`` so the tests import
them by name. Test files are named ``test_diffusers_*.py`` so their basenames cannot collide with
other test directories.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared 2-core runner: intra-op threads only add contention (a pipeline
    call measured 0.2 s with one thread and 5 s with two under load). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
