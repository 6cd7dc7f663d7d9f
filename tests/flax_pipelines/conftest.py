"""tests/flax_pipelines: ``FlaxTCDScheduler`` in diffusers' own Flax pipelines (issue 10).

diffusers removed its Flax pipelines in 0.40, and the main test environment pins the reference
diffusers 0.42.1. These tests therefore run in a second environment, built by
``.ci/flax-env.sh`` (diffusers 0.39.0, transformers 4.x, flax, jax; pins in
``constraints-flax.txt``) and called from ``.ci/run``. In any other environment this directory
collects nothing (the main ``python -m pytest`` passes over it); ``.ci/flax-env.sh`` fails if it
does not collect its tests.

The pipelines' ``jit=True`` path ``pmap``s over the local devices: this environment asks XLA for
two host CPU devices (before JAX starts) so that path runs on more than one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys


def _flax_pipelines_environment() -> bool:
    try:
        diffusers_version = importlib.metadata.version("diffusers")
        transformers_version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return False
    if importlib.util.find_spec("flax") is None:
        return False
    major_minor = tuple(int(p) for p in diffusers_version.split(".")[:2])
    return major_minor < (0, 40) and int(transformers_version.split(".")[0]) < 5


FLAX_ENVIRONMENT = _flax_pipelines_environment()

if FLAX_ENVIRONMENT:
    _HERE = os.path.dirname(os.path.abspath(__file__))
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    if "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
        ).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
else:
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter) -> None:
    """The largest scaled difference each comparison measured (|Δ|/(1 + max|ref|))."""
    module = sys.modules.get("test_flax_pipelines_sd")
    measured = getattr(module, "MEASURED", None)
    if not measured:
        return
    largest: dict[str, float] = {}
    for what, value in measured:
        largest[what] = max(value, largest.get(what, 0.0))
    terminalreporter.section("largest |Δ|/(1 + max|ref|) per comparison (bound 1e-5)")
    for what, value in sorted(largest.items()):
        terminalreporter.write_line(f"{value:.2e}  {what}")
