"""Hypothesis profiles, and :func:`examples` to scale a test's example count with them.

Select with ``HYPOTHESIS_PROFILE=...``:

* ``dev`` (the default: the README's ``python -m pytest``): a quarter of CI's examples, so the
  whole suite runs in about four minutes on 2 cores.
* ``ci`` (what ``.ci/run`` sets): every property test at its full count (40 by default).
* ``thorough``: ten times CI's, and random instead of derandomised.

All are derandomised except ``thorough``, so a run is reproducible. Every test's count scales
with the profile: a test that wants ``n`` examples under ``ci`` asks for ``examples(n)``; never
pin ``max_examples`` to a number that ignores the profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: examples per profile, for a test that asks for the default count
COUNTS = {"dev": 10, "ci": 40, "thorough": 400}
CI = COUNTS["ci"]

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
for _name, _count in COUNTS.items():
    settings.register_profile(
        _name, max_examples=_count, derandomize=_name != "thorough", **_COMMON
    )


def load() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (default ``dev``); returns its name."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    settings.load_profile(name)
    return name


def examples(n: int) -> int:
    """``n`` examples under the ``ci`` profile, scaled with the loaded one (``dev``: n/4,
    ``thorough``: 10n), at least 1."""
    return max(1, n * settings.default.max_examples // CI)
