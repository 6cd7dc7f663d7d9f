"""Run by test_jax_flow.py in a subprocess with 8 host CPU devices (XLA_FLAGS is read once, at
backend start-up): the flow loop and ``FlaxFlowMatchTCDScheduler`` on sharded batches against one
device. Exits non-zero on failure and prints one JSON line with what it checked."""

from __future__ import annotations

import json
import os
import sys

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jax_toy import toy_model_jax  # noqa: E402

import tcd_jax  # noqa: E402

FLUX = {"shift": 3.0, "use_dynamic_shifting": True}


def main() -> None:
    assert jax.device_count() == 8, jax.devices()
    devices = np.asarray(jax.devices())
    meshes = {
        "1d": NamedSharding(Mesh(devices, ("data",)), P("data")),
        "2d": NamedSharding(Mesh(devices.reshape(4, 2), ("data", "model")), P("data", "model")),
    }
    plan = tcd_jax.flow_sampling_plan(FLUX, 4, mu=1.15)
    x = jax.random.normal(jax.random.key(0), (8, 4, 16, 16))
    report = {}
    runs = {
        "one_key": (jax.random.key(1), 0.3, ("1d", "2d")),
        "per_sample_keys_and_eta": (
            jax.random.split(jax.random.key(1), 8),
            np.linspace(0.0, 1.0, 8),
            ("1d",),
        ),
    }
    for name, (key, eta, mesh_names) in runs.items():
        expected = np.asarray(tcd_jax.sample(toy_model_jax, x, key, plan, eta))
        for mesh_name in mesh_names:
            sharding = meshes[mesh_name]
            y = tcd_jax.sample(toy_model_jax, jax.device_put(x, sharding), key, plan, eta)
            assert y.sharding.is_equivalent_to(sharding, y.ndim), (name, mesh_name, y.sharding)
            equal = np.array_equal(np.asarray(y), expected)
            report[f"loop/{name}/{mesh_name}"] = "equal" if equal else "DIFFERENT"
    # The scheduler in a jitted scan (MaxDiffusion's loops), key and per-sample η in its state.
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(FLUX)
    state = scheduler.create_state(key=jax.random.key(2), eta=jnp.linspace(0.0, 1.0, 8))
    state = scheduler.set_timesteps(state, 4, shift=1.15)

    @jax.jit
    def run(x, state):
        def body(carry, t):
            x, state = carry
            return scheduler.step(state, toy_model_jax(x, t), t, x).to_tuple(), None

        return jax.lax.scan(body, (x, state), state.timesteps)[0][0]

    sharding = meshes["2d"]
    y = run(jax.device_put(x, sharding), state)
    assert y.sharding.is_equivalent_to(sharding, y.ndim), y.sharding
    assert bool(jnp.isfinite(y).all())
    equal = np.array_equal(np.asarray(y), np.asarray(run(x, state)))
    report["scheduler/2d"] = "equal" if equal else "DIFFERENT"
    print(json.dumps(report, sort_keys=True))
    if any(v != "equal" for v in report.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
