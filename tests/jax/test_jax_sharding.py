"""Sharded sampling on 8 host CPU devices, for both algorithms: same compiled loop, same results,
same sharding.

The device count is fixed when XLA's CPU backend starts, so the check runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (``sharding_check.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["tcd", "lcm"])
def test_sharded_batches_equal_the_unsharded_run_and_keep_their_sharding(algorithm):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "sharding_check.py"), algorithm],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # 1-D data-parallel mesh, 2-D (data × channels) and (data × width) meshes, one plan and key
    # for the batch or one per sample (with TCD's per-sample η), and the scheduler in a
    # fori_loop: bit-equal to one device.
    expected = {
        "threefry2x32/scalar/one_key/1d",
        "threefry2x32/scalar/one_key/2d",
        "threefry2x32/scalar/one_key/2d_spatial",
        "threefry2x32/per_sample/per_sample_keys/1d",
        "threefry2x32/per_sample/per_sample_keys/2d",
        "scheduler/2d",
    }
    rbg = {"rbg/scalar/one_key/1d", "rbg/scalar/one_key/2d"}
    assert set(report) == expected | rbg, report
    assert all(report[k] == "equal" for k in expected), report
    # rbg draws through XLA's RngBitGenerator; measured equal on XLA:CPU, required at least close.
    assert all(report[k] in ("equal", "close") for k in rbg), report
