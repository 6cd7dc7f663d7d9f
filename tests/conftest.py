"""Shared test configuration: hypothesis profiles and backend setup.

Profiles (select with HYPOTHESIS_PROFILE=...): ``ci`` (default; bounded examples so the whole
suite stays within CI's budget on 2 cores) and ``thorough`` (10x the examples, for local runs).
"""

import os
import sys

from hypothesis import HealthCheck, settings

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# tests/float32_bound.py (the derived float32 bound) is shared by every test folder.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
