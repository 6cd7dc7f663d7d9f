"""Unmodified diffusers 0.39 Flax Stable Diffusion pipelines driving ``FlaxLCMScheduler``.

The same harness as ``FlaxTCDScheduler``'s (``test_flax_pipelines_sd.Harness``: the pipeline's
``_generate`` under ``jax.jit``, returning the images and the latents the VAE decodes). The
pipelines pass no key to ``step``: the state's key drives LCM's renoising. Every run is compared
with ``tcd_jax.sample_lcm`` driving the same UNet closure with the same key.
"""

from __future__ import annotations

import flax_components as fc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusers import FlaxDDIMScheduler
from flax.jax_utils import replicate
from flax.training.common_utils import shard
from test_flax_pipelines_sd import (
    GUIDANCE,
    LATENTS_SHAPE,
    PROMPTS,
    SCHEDULE,
    STEPS,
    Harness,
    Img2Img,
    assert_close,
    generate_loaded,
    save_as_on_the_hub,
)

import tcd_jax
from tcd_core import lcm_timesteps


@pytest.fixture(scope="module")
def lcm(tmp_path_factory):
    harness = Harness(tmp_path_factory.mktemp("lcm"), tcd_jax.FlaxLCMScheduler(**SCHEDULE))
    harness.reference_model = harness.model_fn()  # one closure: sample_lcm compiles once
    return harness


def lcm_latents(harness, key, seed: int = 0) -> np.ndarray:
    """``tcd_jax.sample_lcm`` on the pipeline's UNet closure, from the latents it draws."""
    latents = jax.random.normal(jax.random.key(seed), LATENTS_SHAPE, dtype=jnp.float32)
    config = harness.scheduler.config
    plan = tcd_jax.lcm_sampling_plan(config, STEPS)
    return np.asarray(
        tcd_jax.sample_lcm(harness.reference_model, latents, key, plan, config=config)
    )


def test_generate_eagerly_with_the_default_state(lcm):
    """``_generate`` as a user calls it (eager, its own fori_loop), the state straight from
    ``create_state()``: the fixed default key runs, and equals sample_lcm with that key."""
    state = lcm.scheduler.create_state()
    pipe = lcm.pipe
    images = pipe._generate(
        lcm.prompt_ids,
        dict(lcm.params, scheduler=state),
        jax.random.key(0),
        STEPS,
        fc.SIZE,
        fc.SIZE,
        GUIDANCE,
    )
    latents = np.asarray(lcm.recording.decoded[-1]) * pipe.vae.config.scaling_factor
    assert np.isfinite(np.asarray(images)).all()
    assert_close(latents, lcm_latents(lcm, jax.random.key(0)), "eager _generate")
    jitted_images, _ = lcm(state)
    assert_close(images, jitted_images, "eager vs jit")


def test_state_key_drives_the_pipeline_and_equals_sample_lcm(lcm):
    key = jax.random.key(7)
    state = lcm.scheduler.create_state(key=key)
    images, latents = lcm(state)
    assert images.shape == (len(PROMPTS), fc.SIZE, fc.SIZE, 3)
    assert np.isfinite(images).all() and np.isfinite(latents).all()
    assert_close(latents, lcm_latents(lcm, key), "pipeline vs sample_lcm")
    # Same state: identical. Another key in the state: other noise, another image.
    again, again_latents = lcm(state)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(again_latents, latents)
    other_images, other_latents = lcm(state.replace(key=jax.random.key(8)))
    assert not np.allclose(other_latents, latents, atol=1e-3)
    assert not np.allclose(other_images, images, atol=1e-4)
    assert_close(other_latents, lcm_latents(lcm, jax.random.key(8)), "other key")
    # The key is a state value: new keys reuse the compiled run (the cache does not grow).
    compiled = lcm.run._cache_size()
    lcm(lcm.scheduler.create_state(key=jax.random.key(9)))
    lcm(state.replace(key=jax.random.PRNGKey(10)))
    assert lcm.run._cache_size() == compiled


def test_lcm_is_not_ddim_in_the_same_harness(lcm, tmp_path):
    """The harness sees the scheduler: diffusers' FlaxDDIMScheduler with the same components
    gives another trajectory (so the agreement with sample_lcm above is not vacuous)."""
    ddim = Harness(tmp_path, FlaxDDIMScheduler(**SCHEDULE))
    ddim_images, ddim_latents = ddim(ddim.scheduler.create_state())
    assert np.isfinite(ddim_images).all()
    _, lcm_final = lcm(lcm.scheduler.create_state())
    assert not np.allclose(lcm_final, ddim_latents, atol=1e-3)


def test_call_with_jit_pmaps_over_the_devices(lcm):
    """``__call__(..., jit=True)``: replicated params (the state's key is replicated too), one
    prompt and seed per device; each device's image equals ``_generate`` on its inputs."""
    pipe = lcm.pipe
    devices = jax.local_device_count()
    assert devices == 2, "conftest asks XLA for two host devices"
    state = lcm.scheduler.create_state(key=jax.random.key(11))
    prompt_ids = shard(np.concatenate([lcm.prompt_ids[:1]] * devices))  # (devices, 1, tokens)
    seeds = jax.random.split(jax.random.key(0), devices)
    replicated = replicate(dict(lcm.params, scheduler=state))
    out = pipe(prompt_ids, replicated, seeds, STEPS, guidance_scale=GUIDANCE, jit=True)
    images = np.asarray(out.images)
    assert images.shape == (devices, 1, fc.SIZE, fc.SIZE, 3)
    assert np.isfinite(images).all()
    single = jax.jit(
        lambda ids, seed: pipe._generate(
            ids, dict(lcm.params, scheduler=state), seed, STEPS, fc.SIZE, fc.SIZE, GUIDANCE
        )
    )
    for d in range(devices):
        assert_close(images[d], single(prompt_ids[d], seeds[d]), f"device {d}")
    assert not np.allclose(images[0], images[1], atol=1e-4)  # the per-device seeds differ
    again = pipe(prompt_ids, replicated, seeds, STEPS, guidance_scale=GUIDANCE, jit=True)
    np.testing.assert_array_equal(np.asarray(again.images), images)
    # The same seed on both devices: the replicated key renoises both alike (equal images);
    # one key per device (the guide's recipe) gives each device its own stream.
    same_seeds = jnp.stack([seeds[0]] * devices)
    alike = pipe(prompt_ids, replicated, same_seeds, STEPS, guidance_scale=GUIDANCE, jit=True)
    np.testing.assert_array_equal(np.asarray(alike.images[0]), np.asarray(alike.images[1]))
    per_device = dict(replicated)
    per_device["scheduler"] = replicated["scheduler"].replace(
        key=jax.random.split(jax.random.key(12), devices)
    )
    own = pipe(prompt_ids, per_device, same_seeds, STEPS, guidance_scale=GUIDANCE, jit=True)
    own_images = np.asarray(own.images)
    assert np.isfinite(own_images).all()
    assert not np.allclose(own_images[0], own_images[1], atol=1e-4)


def test_img2img_with_strength_below_one(tmp_path):
    """``FlaxStableDiffusionImg2ImgPipeline`` runs the last 2 of 4 steps; the first finds its
    index from the timestep, so step i draws ``fold_in(key, i)`` and the final step (index 3)
    draws nothing: sample_lcm with ``begin_index`` equals it."""
    scheduler = tcd_jax.FlaxLCMScheduler(**SCHEDULE)
    key = jax.random.key(21)
    state = scheduler.create_state(key=key)
    case = Img2Img(tmp_path, scheduler, state)
    assert case.start == 2

    images, latents = (np.asarray(a) for a in case.run(state))
    assert np.isfinite(images).all()
    _, other = case.run(state.replace(key=jax.random.key(22)))
    assert not np.allclose(np.asarray(other), latents, atol=1e-3)

    plan = tcd_jax.LCMSamplingPlan.from_plan(
        lcm_timesteps(scheduler.config, STEPS), begin_index=case.start
    )
    start_latents = case.start_latents(state, plan.timesteps[0])
    expected = tcd_jax.sample_lcm(
        case.model_fn(), start_latents, key, plan, config=scheduler.config
    )
    assert_close(latents, expected, "img2img vs sample_lcm")


def test_saved_pipeline_folder_loads_back_with_the_lcm_scheduler(lcm, tmp_path):
    """A pipeline folder saved by diffusers, ``FlaxLCMScheduler.from_pretrained(folder,
    subfolder="scheduler")`` put in: ``(scheduler, state)``, the same images as in memory."""
    save_as_on_the_hub(lcm, tmp_path)
    scheduler, state = tcd_jax.FlaxLCMScheduler.from_pretrained(
        tmp_path, subfolder="scheduler", dtype=jnp.float32
    )
    assert isinstance(state, tcd_jax.FlaxLCMSchedulerState)
    assert scheduler.config == lcm.scheduler.config
    images = generate_loaded(lcm, tmp_path, scheduler, state.replace(key=jax.random.key(9)))
    in_memory, _ = lcm(lcm.scheduler.create_state(key=jax.random.key(9)))
    assert np.isfinite(images).all()
    assert_close(images, in_memory, "loaded pipeline")
    # Our config written into the folder (diffusers' format, LCMScheduler) reloads.
    scheduler.save_pretrained(tmp_path / "scheduler")
    again, _ = tcd_jax.FlaxLCMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert again == scheduler
