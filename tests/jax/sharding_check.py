"""Run by test_jax_sharding.py in a subprocess with 8 host CPU devices (XLA_FLAGS is read once,
at backend start-up, so it cannot be set inside the main test process), for the algorithm its
argument names (``tcd`` or ``lcm``). Exits non-zero on failure and prints one JSON line with what
it checked."""

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

#: (compiled loop, its plan, scheduler, whether it takes η) of each algorithm.
ALGORITHMS = {
    "tcd": (tcd_jax.sample, tcd_jax.sampling_plan, tcd_jax.FlaxTCDScheduler, True),
    "lcm": (tcd_jax.sample_lcm, tcd_jax.lcm_sampling_plan, tcd_jax.FlaxLCMScheduler, False),
}
#: (PRNG, plan, keys, meshes): every mesh for the first, fewer compiles for the rest; the second
#: gives every batch element its own plan, key (and TCD's η).
RUNS = (
    ("threefry2x32", "scalar", "one_key", ("1d", "2d", "2d_spatial")),
    ("threefry2x32", "per_sample", "per_sample_keys", ("1d", "2d")),
    ("rbg", "scalar", "one_key", ("1d", "2d")),
)


def main(name: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    loop, make_plan, scheduler_class, has_eta = ALGORITHMS[name]
    devices = np.asarray(jax.devices())
    config = TCDConfig()
    etas = np.linspace(0.0, 1.0, 8)
    # (plan, η): per-sample plans go with TCD's per-sample η.
    plans = {
        "scalar": (make_plan(config, 4), (0.3,) if has_eta else ()),
        "per_sample": (
            make_plan(config, 4, strength=[1.0, 0.8, 0.6, 0.5] * 2),
            (etas,) if has_eta else (),
        ),
    }
    x = jax.random.normal(jax.random.key(0), (8, 4, 16, 16))
    report = {}
    cases = {
        "1d": (Mesh(devices, ("data",)), P("data")),
        "2d": (Mesh(devices.reshape(4, 2), ("data", "model")), P("data", "model")),
        "2d_spatial": (Mesh(devices.reshape(2, 4), ("data", "space")), P("data", None, "space")),
    }
    for impl, plan_name, keys, names in RUNS:
        key = tcd_jax.prng_key(1, impl=impl)
        key = jax.random.split(key, 8) if keys == "per_sample_keys" else key
        plan, eta = plans[plan_name]
        expected = np.asarray(loop(toy_model_jax, x, key, plan, *eta))
        for mesh_name in names:
            mesh, spec = cases[mesh_name]
            sharding = NamedSharding(mesh, spec)
            y = loop(toy_model_jax, jax.device_put(x, sharding), key, plan, *eta)
            assert y.sharding.is_equivalent_to(sharding, y.ndim), (mesh_name, y.sharding)
            equal = bool(np.array_equal(np.asarray(y), expected))
            close = bool(np.allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-6))
            report[f"{impl}/{plan_name}/{keys}/{mesh_name}"] = (
                "equal" if equal else ("close" if close else "DIFFERENT")
            )
    # The scheduler in a jitted fori_loop (the Flax pipelines' loop) on a sharded batch, its key in
    # the state, TCD's η per sample as an array.
    scheduler = scheduler_class(config)
    state = scheduler.set_timesteps(scheduler.create_state(key=jax.random.key(2)), 4)
    step_eta = {"eta": jnp.asarray(etas)} if has_eta else {}

    @jax.jit
    def run(x, state):
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            return scheduler.step(state, toy_model_jax(x, t), t, x, **step_eta).to_tuple()

        return jax.lax.fori_loop(0, 4, body, (x, state))[0]

    sharding = NamedSharding(*cases["2d"])
    y = run(jax.device_put(x, sharding), state)
    assert y.sharding.is_equivalent_to(sharding, y.ndim), y.sharding
    assert bool(jnp.isfinite(y).all())
    report["scheduler/2d"] = (
        "equal" if np.array_equal(np.asarray(y), np.asarray(run(x, state))) else "DIFFERENT"
    )
    print(json.dumps(report, sort_keys=True))
    threefry = {k: v for k, v in report.items() if not k.startswith("rbg")}
    if any(v != "equal" for v in threefry.values()):
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
