"""sample_lcm and FlaxLCMScheduler on batches sharded over 8 host CPU devices: same results as one
device, same output sharding.

The device count is fixed when XLA's CPU backend starts, so the check runs this file as a script
in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (``main`` below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_sharded_lcm_batches_equal_the_unsharded_run_and_keep_their_sharding():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {"scalar/1d", "scalar/2d", "per_sample/1d", "per_sample/2d", "scheduler/2d"}
    assert set(report) == expected, report
    assert all(v == "equal" for v in report.values()), report


def main() -> None:
    """Runs in the subprocess: prints one JSON line, exits non-zero on failure."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
    from jax_toy import toy_model_jax

    import tcd_jax
    from tcd_core import TCDConfig

    assert jax.device_count() == 8, jax.devices()
    devices = np.asarray(jax.devices())
    config = TCDConfig()
    plans = {
        "scalar": tcd_jax.lcm_sampling_plan(config, 4),
        "per_sample": tcd_jax.lcm_sampling_plan(config, 4, strength=[1.0, 0.8, 0.6, 0.5] * 2),
    }
    meshes = {
        "1d": (Mesh(devices, ("data",)), P("data")),
        "2d": (Mesh(devices.reshape(4, 2), ("data", "model")), P("data", "model")),
    }
    x = jax.random.normal(jax.random.key(0), (8, 4, 16, 16))
    keys = jax.random.split(jax.random.key(1), 8)
    report = {}
    for plan_name, plan in plans.items():
        expected = np.asarray(tcd_jax.sample_lcm(toy_model_jax, x, keys, plan))
        for mesh_name, (mesh, spec) in meshes.items():
            sharding = NamedSharding(mesh, spec)
            y = tcd_jax.sample_lcm(toy_model_jax, jax.device_put(x, sharding), keys, plan)
            assert y.sharding.is_equivalent_to(sharding, y.ndim), (mesh_name, y.sharding)
            equal = np.array_equal(np.asarray(y), expected)
            report[f"{plan_name}/{mesh_name}"] = "equal" if equal else "DIFFERENT"
    # The scheduler in a jitted fori_loop (the Flax pipelines' loop) on a sharded batch.
    scheduler = tcd_jax.FlaxLCMScheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(key=jax.random.key(2)), 4)

    @jax.jit
    def run(x, state):
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            return scheduler.step(state, toy_model_jax(x, t), t, x).to_tuple()

        return jax.lax.fori_loop(0, 4, body, (x, state))[0]

    sharding = NamedSharding(*meshes["2d"])
    y = run(jax.device_put(x, sharding), state)
    assert y.sharding.is_equivalent_to(sharding, y.ndim), y.sharding
    unsharded = run(x, state)
    equal = np.array_equal(np.asarray(y), np.asarray(unsharded))
    report["scheduler/2d"] = "equal" if equal else "DIFFERENT"
    assert jnp.isfinite(y).all()
    print(json.dumps(report))


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()
