"""The unmodified diffusers 0.39 ``FlaxStableDiffusionXLPipeline`` driving ``FlaxLCMScheduler``
(LCM-LoRA's main use), with the components of the TCD SDXL tests; ``return_latents=True`` gives
the loop's final latents directly."""

from __future__ import annotations

import flax_components as fc
import jax
import jax.numpy as jnp
import numpy as np
from test_flax_pipelines_sd import GUIDANCE, LATENTS_SHAPE, PROMPTS, SCHEDULE, STEPS, assert_close

import tcd_jax


def test_sdxl_latents_follow_the_state_key_and_equal_sample_lcm(tmp_path):
    scheduler = tcd_jax.FlaxLCMScheduler(**SCHEDULE)
    pipe, params = fc.sdxl_pipeline(tmp_path, scheduler, scheduler.create_state())
    ids = pipe.prepare_inputs(PROMPTS)
    latents = fc.sdxl_latents(pipe, params, ids, STEPS, GUIDANCE)
    seed, key = jax.random.key(0), jax.random.key(41)
    state = scheduler.create_state(key=key)
    out = np.asarray(latents(state, seed))
    assert out.shape == LATENTS_SHAPE and np.isfinite(out).all()
    start = jax.random.normal(seed, LATENTS_SHAPE, dtype=jnp.float32)
    plan = tcd_jax.lcm_sampling_plan(scheduler.config, STEPS)
    model_fn = fc.sdxl_cfg_unet(pipe, params, ids, GUIDANCE)
    expected = tcd_jax.sample_lcm(model_fn, start, key, plan, config=scheduler.config)
    assert_close(out, expected, "SDXL pipeline vs sample_lcm")
    np.testing.assert_array_equal(np.asarray(latents(state, seed)), out)
    other = np.asarray(latents(state.replace(key=jax.random.key(42)), seed))
    assert not np.allclose(other, out, atol=1e-3)
    assert latents._cache_size() == 1  # the key is a state value: one compile
