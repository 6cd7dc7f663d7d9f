"""tests/jax: the proof of tcd_jax (issue 4) against diffusers' TCDScheduler.

Helpers live next to the tests as plain modules (``jax_helpers``); this conftest puts this
directory on ``sys.path``. Test files are named ``test_jax_*.py`` so their basenames cannot collide
with other test directories (no ``__init__.py``, pytest's default import mode).
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
