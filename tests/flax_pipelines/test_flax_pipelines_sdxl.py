"""The unmodified diffusers 0.39 ``FlaxStableDiffusionXLPipeline`` driving ``FlaxTCDScheduler`` and
``FlaxLCMScheduler`` (LCM-LoRA's main use).

Its loop is the SD one (``set_timesteps`` on ``params["scheduler"]``, ``step(...).to_tuple()``
in ``lax.fori_loop``, ``pmap`` with ``jit=True``), with two text encoders and size conditioning;
``return_latents=True`` gives the loop's final latents directly.
"""

from __future__ import annotations

import flax_components as fc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.jax_utils import replicate
from flax.training.common_utils import shard
from test_flax_pipelines_sd import (
    GUIDANCE,
    LATENTS_SHAPE,
    PROMPTS,
    SCHEDULE,
    STEPS,
    TCD_FLAX,
    assert_close,
    over_algorithms,
)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    """``sdxl(algo)``: the module's one SDXL pipeline with ``algo``'s scheduler, as (scheduler,
    pipe, params, prompt ids, ``latents(state, seed)`` under jit, the CFG UNet closure)."""
    built = {}

    def get(algo):
        if algo not in built:
            scheduler = algo.scheduler(**SCHEDULE)
            folder = tmp_path_factory.mktemp(f"sdxl_{algo.core.name}")
            pipe, params = fc.sdxl_pipeline(folder, scheduler, scheduler.create_state())
            ids = pipe.prepare_inputs(PROMPTS)  # (batch, 2 encoders, tokens)
            latents = fc.sdxl_latents(pipe, params, ids, STEPS, GUIDANCE)
            model_fn = fc.sdxl_cfg_unet(pipe, params, ids, GUIDANCE)
            built[algo] = scheduler, pipe, params, ids, latents, model_fn
        return built[algo]

    return get


@over_algorithms
def test_sdxl_latents_follow_the_state_and_equal_the_compiled_loop(algo, sdxl):
    scheduler, _pipe, _params, _ids, latents, model_fn = sdxl(algo)
    seed = jax.random.key(0)
    key = jax.random.key(31)
    state = scheduler.create_state(key=key, **algo.eta(0.3))
    out = np.asarray(latents(state, seed))
    assert out.shape == LATENTS_SHAPE and np.isfinite(out).all()
    start = jax.random.normal(seed, LATENTS_SHAPE, dtype=jnp.float32)
    plan = algo.plan(scheduler.config, STEPS)
    expected = algo.sample(model_fn, start, key, plan, 0.3, config=scheduler.config)
    assert_close(out, expected, "SDXL pipeline vs compiled loop")
    np.testing.assert_array_equal(np.asarray(latents(state, seed)), out)
    other = np.asarray(latents(state.replace(key=jax.random.key(32)), seed))
    assert not np.allclose(other, out, atol=1e-3)
    if algo.core.has_eta:  # η = 0: the same latents for every key.
        a = latents(scheduler.create_state(key=jax.random.key(1), eta=0.0), seed)
        b = latents(scheduler.create_state(key=jax.random.key(2), eta=0.0), seed)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert latents._cache_size() == 1  # keys and η are state values: one compile


def test_sdxl_call_with_jit_over_the_devices(sdxl):
    scheduler, pipe, params, ids, _latents, _model_fn = sdxl(TCD_FLAX)
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
