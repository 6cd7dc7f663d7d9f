"""Shared test configuration: hypothesis profiles and backend setup.

Profiles (select with HYPOTHESIS_PROFILE=...): ``dev`` (the default), ``ci`` (4x, what .ci/run
runs) and ``thorough`` (40x, random): see ``hypothesis_profiles.py``.
"""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# tests/float32_bound.py (the derived float32 bound) and tests/hypothesis_profiles.py serve every
# test folder.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import hypothesis_profiles  # noqa: E402

hypothesis_profiles.load()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (the 8-device sharding subprocesses, the docs' code) start first: spread over the xdist workers early, they do not leave one
    worker running alone at the end. The order of everything else is unchanged."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
