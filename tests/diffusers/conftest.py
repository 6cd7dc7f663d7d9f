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
