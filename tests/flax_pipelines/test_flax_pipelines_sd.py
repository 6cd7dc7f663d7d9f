"""Unmodified diffusers 0.39 Flax Stable Diffusion pipelines driving ``FlaxTCDScheduler``.

The pipelines call ``scheduler.step(state, noise_pred, t, latents).to_tuple()`` inside
``lax.fori_loop`` (and ``pmap`` with ``jit=True``), passing no key and no η: the state's are used.
Each run is compared with ``tcd_jax.sample`` driving the same UNet closure with the same key, and
diffusers' own ``FlaxDDIMScheduler`` runs through the same harness as a control.
"""

from __future__ import annotations

import flax_components as fc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusers import FlaxDDIMScheduler, FlaxStableDiffusionPipeline
from flax.jax_utils import replicate
from flax.training.common_utils import shard

import tcd_jax
from tcd_core import tcd_timesteps

#: The SD schedule, spelled out so that diffusers' schedulers and ours share it.
SCHEDULE = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
STEPS = 4
GUIDANCE = 7.5
PROMPTS = ["the cat", "and the"]
LATENTS_SHAPE = (len(PROMPTS), 4, fc.SIZE // 2, fc.SIZE // 2)


#: (what, max|Δ|/(1 + max|reference|)) of every comparison; conftest prints the largest.
MEASURED: list[tuple[str, float]] = []


def assert_close(actual, reference, what: str = "") -> None:
    """|Δ| ≤ 1e-5·(1 + max|reference|), the float32 bound of the project."""
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    assert actual.shape == reference.shape, (actual.shape, reference.shape)
    err = np.max(np.abs(actual - reference))
    scale = 1.0 + np.max(np.abs(reference))
    MEASURED.append((what, float(err / scale)))
    assert err <= 1e-5 * scale, f"{what}: max|Δ| = {err:.3g} > {1e-5 * scale:.3g}"


class Harness:
    """One tiny SD pipeline, its params and prompts, and ``run``: the pipeline's ``_generate``
    under the caller's ``jax.jit`` (as ``__call__(jit=True)`` wraps it in ``pmap``) returning
    (images, final latents). The scheduler state is an argument: new keys and η reuse the
    compiled run, which the tests check with the jit cache size."""

    def __init__(self, folder, scheduler, img2img: bool = False) -> None:
        self.scheduler = scheduler
        self.pipe, self.params, self.recording = fc.sd_pipeline(
            folder, scheduler, scheduler.create_state(), img2img=img2img
        )
        self.prompt_ids = fc.prompt_ids(self.pipe.tokenizer, PROMPTS)

        def run(state, seed):
            images = self.pipe._generate(
                self.prompt_ids,
                dict(self.params, scheduler=state),
                seed,
                STEPS,
                fc.SIZE,
                fc.SIZE,
                GUIDANCE,
            )
            return images, self.recording.decoded[-1] * self.pipe.vae.config.scaling_factor

        self.run = jax.jit(run)

    def __call__(self, state, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        images, latents = self.run(state, jax.random.key(seed))
        return np.asarray(images), np.asarray(latents)

    def model_fn(self):
        context = fc.sd_context(self.pipe, self.params, self.prompt_ids)
        return fc.cfg_unet(self.pipe, self.params, context, GUIDANCE)


class Img2Img:
    """``FlaxStableDiffusionImg2ImgPipeline`` at strength 0.5 (the last 2 of 4 steps), its
    ``_generate`` under ``jax.jit`` as ``run(state) -> (images, final latents)``, and the same
    start computed outside (:meth:`start_latents`) for the comparison with our own loops."""

    def __init__(self, folder, scheduler, state) -> None:
        self.scheduler = scheduler
        self.pipe, self.params, self.recording = fc.sd_pipeline(
            folder, scheduler, state, img2img=True
        )
        self.prompt_ids = fc.prompt_ids(self.pipe.tokenizer, PROMPTS)
        self.image = jax.random.uniform(
            jax.random.key(2), (len(PROMPTS), 3, fc.SIZE, fc.SIZE), minval=-1
        )
        self.seed = jax.random.key(3)
        self.noise = jax.random.normal(jax.random.key(4), LATENTS_SHAPE)
        self.start = self.pipe.get_timestep_start(STEPS, 0.5)

        def run(state):
            images = self.pipe._generate(
                self.prompt_ids,
                self.image,
                dict(self.params, scheduler=state),
                self.seed,
                self.start,
                STEPS,
                fc.SIZE,
                fc.SIZE,
                GUIDANCE,
                self.noise,
            )
            return images, self.recording.decoded[-1] * self.pipe.vae.config.scaling_factor

        self.run = jax.jit(run)

    def start_latents(self, state, first_timestep):
        """What the pipeline starts its loop from: the image encoded with its seed, noised to
        ``first_timestep`` by the scheduler's ``add_noise``."""
        vae = self.recording
        dist = vae.apply({"params": self.params["vae"]}, self.image, method=vae.encode).latent_dist
        init = vae.config.scaling_factor * dist.sample(key=self.seed).transpose((0, 3, 1, 2))
        t0 = np.full((len(PROMPTS),), first_timestep)
        return self.scheduler.add_noise(state, init, self.noise, t0)

    def model_fn(self):
        context = fc.sd_context(self.pipe, self.params, self.prompt_ids)
        return fc.cfg_unet(self.pipe, self.params, context, GUIDANCE)


NO_CHECKER = {"safety_checker": None, "feature_extractor": None}


def save_as_on_the_hub(harness, folder) -> None:
    """The harness's pipeline saved by diffusers with its own ``FlaxDDIMScheduler``: a pipeline
    folder as users download it."""
    ddim = FlaxDDIMScheduler.from_config(dict(SCHEDULE, clip_sample=False))
    saving = FlaxStableDiffusionPipeline(
        vae=harness.recording._model,
        text_encoder=harness.pipe.text_encoder,
        tokenizer=harness.pipe.tokenizer,
        unet=harness.pipe.unet,
        scheduler=ddim,
        **NO_CHECKER,
    )
    saving.save_pretrained(folder, params=dict(harness.params, scheduler=ddim.create_state()))


def generate_loaded(harness, folder, scheduler, state) -> np.ndarray:
    """Images from the pipeline loaded back from ``folder`` with ``scheduler`` and ``state`` put
    in after loading (diffusers 0.39 accepts only its own classes in ``from_pretrained``)."""
    loaded, loaded_params = FlaxStableDiffusionPipeline.from_pretrained(folder, **NO_CHECKER)
    loaded.scheduler = scheduler
    loaded_params["scheduler"] = state
    images = jax.jit(
        lambda params: loaded._generate(
            harness.prompt_ids, params, jax.random.key(0), STEPS, fc.SIZE, fc.SIZE, GUIDANCE
        )
    )(loaded_params)
    return np.asarray(images)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    harness = Harness(tmp_path_factory.mktemp("sd"), tcd_jax.FlaxTCDScheduler(**SCHEDULE))
    harness.reference_model = harness.model_fn()  # one closure: tcd_jax.sample compiles once
    return harness


def reference_latents(sd, key, eta, seed: int = 0, plan=None):
    """``tcd_jax.sample`` on the same UNet closure, from the latents the pipeline draws."""
    latents = jax.random.normal(jax.random.key(seed), LATENTS_SHAPE, dtype=jnp.float32)
    config = sd.scheduler.config
    plan = tcd_jax.sampling_plan(config, STEPS) if plan is None else plan
    return np.asarray(tcd_jax.sample(sd.reference_model, latents, key, plan, eta, config=config))


def test_generate_eagerly_as_the_issue_reported(sd):
    """The reported failure: ``_generate`` called as is (eager, fori_loop), the scheduler state
    made by ``create_state()`` with no key or η given: the state's defaults run."""
    state = sd.scheduler.create_state()
    params = dict(sd.params, scheduler=state)
    pipe = sd.pipe
    images = pipe._generate(sd.prompt_ids, params, jax.random.key(0), STEPS, 16, 16, GUIDANCE)
    latents = np.asarray(sd.recording.decoded[-1]) * pipe.vae.config.scaling_factor
    assert np.isfinite(np.asarray(images)).all()
    default_key = jax.random.key(0)  # create_state's fixed default key, and η = 0.3
    assert_close(latents, reference_latents(sd, default_key, 0.3), "eager _generate")
    jitted_images, _ = sd(state)
    assert_close(images, jitted_images, "eager vs jit")


def test_state_key_and_eta_drive_the_pipeline_and_equal_tcd_jax_sample(sd):
    key = jax.random.key(7)
    state = sd.scheduler.create_state(key=key, eta=0.3)
    images, latents = sd(state)
    assert images.shape == (len(PROMPTS), fc.SIZE, fc.SIZE, 3)
    assert np.isfinite(images).all() and np.isfinite(latents).all()
    assert_close(latents, reference_latents(sd, key, 0.3), "pipeline vs tcd_jax.sample")
    # Same state: identical. Another key in the state: other noise, another image.
    again, again_latents = sd(state)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(again_latents, latents)
    other = state.replace(key=jax.random.key(8))
    other_images, other_latents = sd(other)
    assert not np.allclose(other_latents, latents, atol=1e-3)
    assert not np.allclose(other_images, images, atol=1e-4)
    assert_close(other_latents, reference_latents(sd, jax.random.key(8), 0.3), "other key")
    # η and the key are state values: neither recompiles the pipeline.
    sd(state.replace(eta=0.77))
    sd(sd.scheduler.create_state(key=jax.random.key(9), eta=0.1))
    assert sd.run._cache_size() == 1


def test_eta_zero_is_the_same_for_every_key(sd):
    a_images, a = sd(sd.scheduler.create_state(key=jax.random.key(1), eta=0.0))
    b_images, b = sd(sd.scheduler.create_state(key=jax.random.key(2), eta=0.0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_images, b_images)
    assert np.isfinite(a_images).all()
    assert_close(a, reference_latents(sd, jax.random.key(3), 0.0), "eta = 0")
    # ... and η = 0 is really another trajectory than η = 0.3 with these keys.
    _, noisy = sd(sd.scheduler.create_state(key=jax.random.key(1), eta=0.3))
    assert not np.allclose(noisy, a, atol=1e-3)


def test_per_sample_eta_in_the_state(sd):
    """η may be one value per batch element; sample 0 (η = 0) then ignores the key."""
    eta = np.asarray([0.0, 0.6])
    _, a = sd(sd.scheduler.create_state(key=jax.random.key(4), eta=eta))
    _, b = sd(sd.scheduler.create_state(key=jax.random.key(5), eta=eta))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[1], b[1], atol=1e-3)
    assert_close(a, reference_latents(sd, jax.random.key(4), eta), "per-sample eta")


def test_ddim_control_in_the_same_harness(tmp_path, sd):
    """diffusers' own FlaxDDIMScheduler through the same pipeline and harness."""
    ddim = Harness(tmp_path, FlaxDDIMScheduler(**SCHEDULE))
    images, latents = ddim(ddim.scheduler.create_state())
    again, _ = ddim(ddim.scheduler.create_state())
    assert np.isfinite(images).all()
    np.testing.assert_array_equal(again, images)
    # Same components (same seeds), another scheduler: another trajectory, which the harness sees.
    _, tcd_latents = sd(sd.scheduler.create_state(eta=0.0))
    assert not np.allclose(tcd_latents, latents, atol=1e-3)


def test_call_with_jit_pmaps_over_the_devices(sd):
    """``__call__(..., jit=True)``: replicated params, one prompt and seed per device. Each
    device's image equals ``_generate`` on that device's inputs with the same state."""
    pipe = sd.pipe
    devices = jax.local_device_count()
    assert devices == 2, "conftest asks XLA for two host devices"
    state = sd.scheduler.create_state(key=jax.random.key(11), eta=0.3)
    prompt_ids = shard(np.concatenate([sd.prompt_ids[:1]] * devices))  # (devices, 1, tokens)
    seeds = jax.random.split(jax.random.key(0), devices)
    replicated = replicate(dict(sd.params, scheduler=state))
    out = pipe(prompt_ids, replicated, seeds, STEPS, guidance_scale=GUIDANCE, jit=True)
    images = np.asarray(out.images)
    assert images.shape == (devices, 1, fc.SIZE, fc.SIZE, 3)
    assert np.isfinite(images).all()
    single = jax.jit(
        lambda ids, seed, state: pipe._generate(
            ids, dict(sd.params, scheduler=state), seed, STEPS, fc.SIZE, fc.SIZE, GUIDANCE
        )
    )
    for d in range(devices):
        assert_close(images[d], single(prompt_ids[d], seeds[d], state), f"device {d}")
    # The same call again: identical.
    again = pipe(prompt_ids, replicated, seeds, STEPS, guidance_scale=GUIDANCE, jit=True)
    np.testing.assert_array_equal(np.asarray(again.images), images)
    # One key per device (the guide's recipe): device d re-noises with keys[d].
    keys = jax.random.split(jax.random.key(12), devices)
    per_device = dict(replicated, scheduler=replicated["scheduler"].replace(key=keys))
    own = np.asarray(
        pipe(prompt_ids, per_device, seeds, STEPS, guidance_scale=GUIDANCE, jit=True).images
    )
    for d in range(devices):
        expected = single(prompt_ids[d], seeds[d], state.replace(key=keys[d]))
        assert_close(own[d], expected, f"device {d}, its own key")
        assert not np.allclose(own[d], images[d], atol=1e-4)


def test_img2img_with_strength_below_one(tmp_path):
    """``FlaxStableDiffusionImg2ImgPipeline`` slices the plan (strength 0.5: the last 2 of 4
    steps) and starts its fori_loop there; the first step finds its index from the timestep, so
    step i still draws ``fold_in(key, i)``: ``tcd_jax.sample`` with ``begin_index`` equals it."""
    scheduler = tcd_jax.FlaxTCDScheduler(**SCHEDULE)
    key = jax.random.key(21)
    state = scheduler.create_state(key=key, eta=0.3)
    case = Img2Img(tmp_path, scheduler, state)
    assert case.start == 2

    images, latents = (np.asarray(a) for a in case.run(state))
    assert np.isfinite(images).all()
    again, _ = case.run(state)
    np.testing.assert_array_equal(np.asarray(again), images)
    _, other = case.run(state.replace(key=jax.random.key(22)))
    assert not np.allclose(np.asarray(other), latents, atol=1e-3)

    # The same start, computed outside: encode, add noise at timesteps[start], sample the rest.
    plan = tcd_jax.SamplingPlan.from_plan(
        tcd_timesteps(scheduler.config, STEPS), begin_index=case.start
    )
    start_latents = case.start_latents(state, plan.timesteps[0])
    expected = tcd_jax.sample(
        case.model_fn(), start_latents, key, plan, 0.3, config=scheduler.config
    )
    assert_close(latents, expected, "img2img vs tcd_jax.sample")


def test_saved_pipeline_folder_loads_back_with_the_tcd_scheduler(sd, tmp_path):
    """A pipeline folder as on the Hub (here saved from the tiny pipeline with a diffusers
    scheduler), loaded back, with ``FlaxTCDScheduler.from_pretrained(folder,
    subfolder="scheduler")`` put in: the same images as the pipeline built in memory."""
    save_as_on_the_hub(sd, tmp_path)
    scheduler, state = tcd_jax.FlaxTCDScheduler.from_pretrained(
        tmp_path, subfolder="scheduler", dtype=jnp.float32
    )
    assert isinstance(state, tcd_jax.FlaxTCDSchedulerState)
    assert scheduler.config == sd.scheduler.config
    # diffusers 0.39 accepts only its own scheduler classes in from_pretrained(scheduler=...)
    with pytest.raises(ValueError, match="FlaxSchedulerMixin"):
        FlaxStableDiffusionPipeline.from_pretrained(tmp_path, scheduler=scheduler, **NO_CHECKER)
    images = generate_loaded(sd, tmp_path, scheduler, state.replace(key=jax.random.key(9)))
    in_memory, _ = sd(sd.scheduler.create_state(key=jax.random.key(9)))
    assert np.isfinite(images).all()
    assert_close(images, in_memory, "loaded pipeline")

    # Our config in the folder's scheduler/ (diffusers' format) reloads into both.
    scheduler.save_pretrained(tmp_path / "scheduler")
    again, _ = tcd_jax.FlaxTCDScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert again == scheduler
    reloaded, _ = FlaxStableDiffusionPipeline.from_pretrained(tmp_path, **NO_CHECKER)
    assert isinstance(reloaded.scheduler, FlaxDDIMScheduler)
