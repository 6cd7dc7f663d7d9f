"""Run by test_jax_sharding.py in a subprocess with 8 host CPU devices (XLA_FLAGS is read once,
at backend start-up, so it cannot be set inside the main test process). Exits non-zero on failure
and prints one JSON line with what it checked."""

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
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
from jax_toy import toy_model_jax  # noqa: E402

import tcd_jax  # noqa: E402
from tcd_core import TCDConfig  # noqa: E402


def main() -> None:
    assert jax.device_count() == 8, jax.devices()
    devices = np.asarray(jax.devices())
    config = TCDConfig()
    plan = tcd_jax.sampling_plan(config, 4)
    mixed = tcd_jax.sampling_plan(config, 4, strength=[1.0, 0.8, 0.6, 0.5] * 2)
    x = jax.random.normal(jax.random.key(0), (8, 4, 16, 16))
    etas = np.linspace(0.0, 1.0, 8)
    report = {}
    cases = {
        "1d": (Mesh(devices, ("data",)), P("data")),
        "2d": (Mesh(devices.reshape(4, 2), ("data", "model")), P("data", "model")),
        "2d_spatial": (Mesh(devices.reshape(2, 4), ("data", "space")), P("data", None, "space")),
    }
    runs = (  # (PRNG, plan, meshes): all meshes for threefry, fewer compiles for the rest
        ("threefry2x32", "scalar", tuple(cases)),
        ("threefry2x32", "per_sample", ("1d", "2d")),
        ("rbg", "scalar", ("1d", "2d")),
    )
    plans = {"scalar": (plan, 0.3), "per_sample": (mixed, etas)}
    for impl, plan_name, names in runs:
        key = tcd_jax.prng_key(1, impl=impl)
        the_plan, eta = plans[plan_name]
        expected = np.asarray(tcd_jax.sample(toy_model_jax, x, key, the_plan, eta))
        for name in names:
            mesh, spec = cases[name]
            sharding = NamedSharding(mesh, spec)
            xs = jax.device_put(x, sharding)
            y = tcd_jax.sample(toy_model_jax, xs, key, the_plan, eta)
            assert y.sharding.is_equivalent_to(sharding, y.ndim), (name, y.sharding)
            equal = bool(np.array_equal(np.asarray(y), expected))
            close = bool(np.allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-6))
            report[f"{impl}/{plan_name}/{name}"] = (
                "equal" if equal else ("close" if close else "DIFFERENT")
            )
    # The scheduler in a jitted fori_loop on a sharded batch, eta per sample as an array.
    scheduler = tcd_jax.FlaxTCDScheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(), 4)
    key = jax.random.key(2)

    @jax.jit
    def run(x, state):
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            out = scheduler.step(state, toy_model_jax(x, t), t, x, key=key, eta=jnp.asarray(etas))
            return out.prev_sample, out.state

        return jax.lax.fori_loop(0, 4, body, (x, state))[0]

    sharding = NamedSharding(cases["2d"][0], cases["2d"][1])
    y = run(jax.device_put(x, sharding), state)
    assert y.sharding.is_equivalent_to(sharding, y.ndim), y.sharding
    report["scheduler/2d"] = (
        "equal" if np.array_equal(np.asarray(y), np.asarray(run(x, state))) else "DIFFERENT"
    )
    print(json.dumps(report, sort_keys=True))
    threefry = {k: v for k, v in report.items() if not k.startswith("rbg")}
    if any(v != "equal" for v in threefry.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
