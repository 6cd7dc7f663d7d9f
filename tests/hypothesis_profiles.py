"""Hypothesis profiles, and :func:`examples` to scale a test's example count with them.

Select with ``HYPOTHESIS_PROFILE=...``:

* ``dev`` (the default: the README's ``python -m pytest``): a quarter of CI's examples, and XLA's
  backend unoptimised (:data:`DEV_XLA_FLAG`), so the whole suite runs in about three minutes on
  2 cores.
* ``ci`` (what ``.ci/run`` sets): every property test at its full count (40 by default), XLA
  compiling as for users.
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


#: Under ``dev`` only, XLA's LLVM backend compiles without optimisation: the JAX-heavy tests run
#: about 2.5x faster (XLA compiling is most of their time). Nothing a test checks depends on it:
#: the HLO passes (fusion, conditionals, sharding) still run, two programs compared bit for bit
#: are compiled alike, and the comparisons with the reference allow XLA any FMA contraction
#: (tests/float32_bound.py). ``ci`` and ``thorough`` compile as users do.
DEV_XLA_FLAG = "--xla_backend_optimization_level=0"


def load() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (default ``dev``); returns its name.
    Under ``dev`` also add :data:`DEV_XLA_FLAG` to ``XLA_FLAGS`` (inherited by the xdist
    workers and the subprocesses tests start) unless the caller set an optimisation level."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    settings.load_profile(name)
    flags = os.environ.get("XLA_FLAGS", "")
    if name == "dev" and "--xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DEV_XLA_FLAG}".strip()
    return name


def examples(n: int) -> int:
    """``n`` examples under the ``ci`` profile, scaled with the loaded one (``dev``: n/4,
    ``thorough``: 10n), at least 1."""
    return max(1, n * settings.default.max_examples // CI)
