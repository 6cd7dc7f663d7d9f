"""Driving ``tcd_jax.sample`` (kept apart so the adapter's API lives in one place here).

Two ways a user runs the loop, both timed:

- a plain call, ``tcd_jax.sample(model_fn, latents, key, plan, eta)``: the loop itself is compiled
  (cached after the first call), and every call also pays the host-side preparation (plan and η
  arrays, the ᾱ table, dispatch);
- inside the caller's own ``jax.jit`` (how a pipeline embeds it): the preparation happens once, at
  trace time, and a call is just the compiled loop. The model output enters as an argument, so
  XLA cannot fold it into constants.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tcd_core import tcd_timesteps

from .workloads import Inputs


def prepare_tcd_jax_loop(
    jax: Any, tcd_jax: Any, inputs: Inputs, impl: str, jit: bool, traced_eta: bool = False
) -> Any:
    from .contenders import JAX_IMPLS, Loop, Unavailable

    jnp = jax.numpy
    wl, cfg = inputs.workload, inputs.config
    x0 = jnp.asarray(inputs.latents)
    eps = jnp.asarray(inputs.model_output)
    key = jax.random.key(inputs.seed, impl=JAX_IMPLS[impl])
    plan = tcd_timesteps(cfg, wl.steps)

    if jit and traced_eta:
        # η enters the compiled function as an array: one compilation serves every η, and
        # whether a step draws noise is decided on the device.
        eta = jnp.float32(wl.eta)

        @jax.jit
        def loop_eta(x: Any, k: Any, e: Any, eta: Any) -> Any:
            return tcd_jax.sample(lambda x, t: e, x, k, plan, eta, config=cfg)

        def run() -> Any:
            return jax.block_until_ready(loop_eta(x0, key, eps, eta))

    elif jit:

        @jax.jit
        def loop(x: Any, k: Any, e: Any) -> Any:
            return tcd_jax.sample(lambda x, t: e, x, k, plan, wl.eta, config=cfg)

        def run() -> Any:
            return jax.block_until_ready(loop(x0, key, eps))

    else:

        def model_fn(x: Any, t: Any) -> Any:
            return eps

        def run() -> Any:
            return jax.block_until_ready(
                tcd_jax.sample(model_fn, x0, key, plan, wl.eta, config=cfg)
            )

    try:
        t0 = time.perf_counter()
        run()
        compile_s = time.perf_counter() - t0
    except Exception as exc:
        raise Unavailable(f"tcd_jax.sample call failed: {type(exc).__name__}: {exc}") from exc
    return Loop(run, np.asarray, compile_s=compile_s)
