"""The unmodified diffusers 0.39 ``FlaxStableDiffusionXLPipeline`` driving ``FlaxTCDScheduler``.

Its loop is the SD one (``set_timesteps`` on ``params["scheduler"]``, ``step(...).to_tuple()``
in ``lax.fori_loop``, ``pmap`` with ``jit=True``), with two text encoders and size conditioning;
``output_type="latent"`` returns the loop's final latents directly.
"""

from __future__ import annotations

import flax_components as fc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.jax_utils import replicate
from flax.training.common_utils import shard
from test_flax_pipelines_sd import GUIDANCE, LATENTS_SHAPE, PROMPTS, SCHEDULE, STEPS, assert_close

import tcd_jax


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    scheduler = tcd_jax.FlaxTCDScheduler(**SCHEDULE)
    pipe, params = fc.sdxl_pipeline(
        tmp_path_factory.mktemp("sdxl"), scheduler, scheduler.create_state()
    )
    ids = pipe.prepare_inputs(PROMPTS)  # (batch, 2 encoders, tokens)

    latents = fc.sdxl_latents(pipe, params, ids, STEPS, GUIDANCE)
    model_fn = fc.sdxl_cfg_unet(pipe, params, ids, GUIDANCE)
    return scheduler, pipe, params, ids, latents, model_fn


def test_sdxl_latents_follow_the_state_and_equal_tcd_jax_sample(sdxl):
    scheduler, _pipe, _params, _ids, latents, model_fn = sdxl
    seed = jax.random.key(0)
    key = jax.random.key(31)
    state = scheduler.create_state(key=key, eta=0.3)
    out = np.asarray(latents(state, seed))
    assert out.shape == LATENTS_SHAPE and np.isfinite(out).all()
    start = jax.random.normal(seed, LATENTS_SHAPE, dtype=jnp.float32)
    plan = tcd_jax.sampling_plan(scheduler.config, STEPS)
    expected = tcd_jax.sample(model_fn, start, key, plan, 0.3, config=scheduler.config)
    assert_close(out, expected, "SDXL pipeline vs tcd_jax.sample")
    np.testing.assert_array_equal(np.asarray(latents(state, seed)), out)
    other = np.asarray(latents(state.replace(key=jax.random.key(32)), seed))
    assert not np.allclose(other, out, atol=1e-3)
    # η = 0: the same latents for every key.
    a = latents(scheduler.create_state(key=jax.random.key(1), eta=0.0), seed)
    b = latents(scheduler.create_state(key=jax.random.key(2), eta=0.0), seed)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert latents._cache_size() == 1  # keys and η are state values: one compile


def test_sdxl_call_with_jit_over_the_devices(sdxl):
    scheduler, pipe, params, ids, _latents, _model_fn = sdxl
    devices = jax.local_device_count()
    state = scheduler.create_state(key=jax.random.key(33), eta=0.3)
    prompt_ids = shard(np.concatenate([np.asarray(ids[:1])] * devices))  # (devices, 1, 2, tokens)
    seeds = jax.random.split(jax.random.key(0), devices)
    replicated = replicate(dict(params, scheduler=state))
    images = np.asarray(
        pipe(prompt_ids, replicated, seeds, STEPS, guidance_scale=GUIDANCE, jit=True).images
    )
    assert images.shape == (devices, 1, fc.SIZE, fc.SIZE, 3)
    assert np.isfinite(images).all()
    assert not np.allclose(images[0], images[1], atol=1e-4)  # other seeds on the other device
