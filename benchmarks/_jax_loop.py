"""Driving ``tcd_jax.sample`` (kept apart so the adapter's API lives in one place here)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tcd_core import tcd_timesteps

from .workloads import Inputs


def prepare_tcd_jax_loop(jax: Any, tcd_jax: Any, inputs: Inputs, impl: str) -> Any:
    from .contenders import Loop, Unavailable

    jnp = jax.numpy
    wl, cfg = inputs.workload, inputs.config
    x0 = jnp.asarray(inputs.latents)
    eps = jnp.asarray(inputs.model_output)
    from .contenders import JAX_IMPLS

    key = jax.random.key(inputs.seed, impl=JAX_IMPLS[impl])

    def model_fn(x: Any, t: Any) -> Any:
        return eps

    plan = tcd_timesteps(cfg, wl.steps)

    def run() -> Any:
        out = tcd_jax.sample(model_fn, x0, key, plan, wl.eta, config=cfg)
        out = getattr(out, "prev_sample", out)
        return jax.block_until_ready(out)

    try:
        t0 = time.perf_counter()
        run()
        compile_s = time.perf_counter() - t0
    except Exception as exc:
        raise Unavailable(f"tcd_jax.sample call failed: {type(exc).__name__}: {exc}") from exc
    return Loop(run, np.asarray, compile_s=compile_s)
