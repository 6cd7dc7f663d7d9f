"""tests/core: the proof of the core against diffusers' TCDScheduler (issue 2).

Shared helpers live next to the tests as plain modules (``core_helpers``, ``core_strategies``);
this conftest puts this directory on ``sys.path`` so the tests import them by name. Test files are
named ``test_core_*.py`` so their basenames cannot collide with other test directories (pytest's
default "prepend" import mode requires unique basenames where there is no ``__init__.py``).
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_terminal_summary(terminalreporter):
    """Report the largest scaled difference from the reference measured per dtype."""
    helpers = sys.modules.get("core_helpers")
    if helpers is None or not helpers.MEASURED:
        return
    terminalreporter.section(
        "tcd_core vs reference: max |Δ|/(1+max|ref|) (non-torch / tolerance checks)"
    )
    for dtype, err in sorted(helpers.MEASURED.items()):
        terminalreporter.write_line(f"{dtype:>9}: {err:.3g} (bound {helpers.TOL[dtype]:.3g})")
