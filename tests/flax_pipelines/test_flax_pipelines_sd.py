"""Unmodified diffusers 0.39 Flax Stable Diffusion pipelines driving ``FlaxTCDScheduler`` and
``FlaxLCMScheduler``.

The pipelines call ``scheduler.step(state, noise_pred, t, latents).to_tuple()`` inside
``lax.fori_loop`` (and ``pmap`` with ``jit=True``), passing no key and no η: the state's are used.
Each run is compared with the compiled loop of the scheduler's algorithm (``tcd_jax.sample``,
``tcd_jax.sample_lcm``) driving the same UNet closure with the same key, and diffusers' own
``FlaxDDIMScheduler`` runs through the same harness as a control. A property both schedulers
have is one test parametrised over them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax_components as fc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusers import FlaxDDIMScheduler, FlaxStableDiffusionPipeline
from flax.jax_utils import replicate
from flax.training.common_utils import shard

import tcd_jax
from tcd_core import LCM, TCD, Algorithm, plan_timesteps

#: The SD schedule, spelled out so that diffusers' schedulers and ours share it.
SCHEDULE = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
STEPS = 4
GUIDANCE = 7.5
PROMPTS = ["the cat", "and the"]
LATENTS_SHAPE = (len(PROMPTS), 4, fc.SIZE // 2, fc.SIZE // 2)


class Algo(NamedTuple):
    """An algorithm as these tests drive it: its Flax scheduler and state, and the compiled loop
    and plan the pipelines are compared with."""

    core: Algorithm
    scheduler: type
    state: type
    loop: Callable[..., Any]
    plan: Callable[..., Any]

    def eta(self, value: Any) -> dict[str, Any]:
        """``{"eta": value}`` for TCD (to ``create_state``), nothing for LCM (it has no η)."""
        return {"eta": value} if self.core.has_eta else {}

    def sample(self, model_fn, latents, key, plan, eta: Any = 0.3, **kwargs) -> Any:
        """The compiled loop; ``eta`` is TCD's, LCM's loop takes none."""
        if not self.core.has_eta:
            return self.loop(model_fn, latents, key, plan, **kwargs)
        return self.loop(model_fn, latents, key, plan, eta, **kwargs)


TCD_FLAX = Algo(
    TCD, tcd_jax.FlaxTCDScheduler, tcd_jax.FlaxTCDSchedulerState, tcd_jax.sample,
    tcd_jax.sampling_plan,
)  # fmt: skip
LCM_FLAX = Algo(
    LCM, tcd_jax.FlaxLCMScheduler, tcd_jax.FlaxLCMSchedulerState, tcd_jax.sample_lcm,
    tcd_jax.lcm_sampling_plan,
)  # fmt: skip
over_algorithms = pytest.mark.parametrize(
    "algo", [pytest.param(TCD_FLAX, id="TCD"), pytest.param(LCM_FLAX, id="LCM")]
)


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

    @functools.cached_property
    def reference_model(self):
        """:meth:`model_fn` made once: one closure, so the compiled loop compiles once."""
        return self.model_fn()

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
def harness(tmp_path_factory):
    """``harness(scheduler_class)``: the module's one :class:`Harness` of that scheduler."""
    return functools.cache(
        lambda cls: Harness(tmp_path_factory.mktemp(cls.__name__), cls(**SCHEDULE))
    )


def reference_latents(algo, sd, key, eta=0.3, seed: int = 0):
    """The compiled loop on the same UNet closure, from the latents the pipeline draws."""
    latents = jax.random.normal(jax.random.key(seed), LATENTS_SHAPE, dtype=jnp.float32)
    config = sd.scheduler.config
    plan = algo.plan(config, STEPS)
    return np.asarray(algo.sample(sd.reference_model, latents, key, plan, eta, config=config))


@over_algorithms
def test_generate_eagerly_with_the_default_state(algo, harness):
    """The failure issue 10 reported: ``_generate`` called as is (eager, its own fori_loop), the
    state straight from ``create_state()`` with no key or η given: the state's defaults run (the
    fixed default key, TCD's η = 0.3) and equal the compiled loop with them."""
    sd = harness(algo.scheduler)
    state = sd.scheduler.create_state()
    params = dict(sd.params, scheduler=state)
    pipe = sd.pipe
    images = pipe._generate(sd.prompt_ids, params, jax.random.key(0), STEPS, 16, 16, GUIDANCE)
    latents = np.asarray(sd.recording.decoded[-1]) * pipe.vae.config.scaling_factor
    assert np.isfinite(np.asarray(images)).all()
    default_key = jax.random.key(0)  # create_state's fixed default key (and η = 0.3)
    assert_close(latents, reference_latents(algo, sd, default_key, 0.3), "eager _generate")
    jitted_images, _ = sd(state)
    assert_close(images, jitted_images, "eager vs jit")


@over_algorithms
def test_state_key_and_eta_drive_the_pipeline_and_equal_the_compiled_loop(algo, harness):
    sd = harness(algo.scheduler)
    key = jax.random.key(7)
    state = sd.scheduler.create_state(key=key, **algo.eta(0.3))
    images, latents = sd(state)
    assert images.shape == (len(PROMPTS), fc.SIZE, fc.SIZE, 3)
    assert np.isfinite(images).all() and np.isfinite(latents).all()
    assert_close(latents, reference_latents(algo, sd, key, 0.3), "pipeline vs compiled loop")
    # Same state: identical. Another key in the state: other noise, another image.
    again, again_latents = sd(state)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(again_latents, latents)
    other = state.replace(key=jax.random.key(8))
    other_images, other_latents = sd(other)
    assert not np.allclose(other_latents, latents, atol=1e-3)
    assert not np.allclose(other_images, images, atol=1e-4)
    assert_close(other_latents, reference_latents(algo, sd, jax.random.key(8), 0.3), "other key")
    # The key (a raw one too) and η are state values: none recompiles the pipeline.
    sd(state.replace(**algo.eta(0.77)))
    sd(sd.scheduler.create_state(key=jax.random.key(9), **algo.eta(0.1)))
    sd(state.replace(key=jax.random.PRNGKey(10)))
    assert sd.run._cache_size() == 1


def test_eta_zero_is_the_same_for_every_key(harness):
    sd = harness(tcd_jax.FlaxTCDScheduler)
    a_images, a = sd(sd.scheduler.create_state(key=jax.random.key(1), eta=0.0))
    b_images, b = sd(sd.scheduler.create_state(key=jax.random.key(2), eta=0.0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_images, b_images)
    assert np.isfinite(a_images).all()
    assert_close(a, reference_latents(TCD_FLAX, sd, jax.random.key(3), 0.0), "eta = 0")
    # ... and η = 0 is really another trajectory than η = 0.3 with these keys.
    _, noisy = sd(sd.scheduler.create_state(key=jax.random.key(1), eta=0.3))
    assert not np.allclose(noisy, a, atol=1e-3)


def test_per_sample_eta_in_the_state(harness):
    """η may be one value per batch element; sample 0 (η = 0) then ignores the key."""
    sd = harness(tcd_jax.FlaxTCDScheduler)
    eta = np.asarray([0.0, 0.6])
    _, a = sd(sd.scheduler.create_state(key=jax.random.key(4), eta=eta))
    _, b = sd(sd.scheduler.create_state(key=jax.random.key(5), eta=eta))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[1], b[1], atol=1e-3)
    assert_close(a, reference_latents(TCD_FLAX, sd, jax.random.key(4), eta), "per-sample eta")


@over_algorithms
def test_ddim_control_in_the_same_harness(algo, harness):
    """diffusers' own FlaxDDIMScheduler through the same pipeline and harness: reproducible, and
    another trajectory than ours (TCD's at η = 0 too), so the harness sees the scheduler and the
    agreement with the compiled loop above is not vacuous."""
    ddim = harness(FlaxDDIMScheduler)
    images, latents = ddim(ddim.scheduler.create_state())
    again, _ = ddim(ddim.scheduler.create_state())
    assert np.isfinite(images).all()
    np.testing.assert_array_equal(again, images)
    # Same components (same seeds), another scheduler: another trajectory, which the harness sees.
    sd = harness(algo.scheduler)
    _, ours = sd(sd.scheduler.create_state(**algo.eta(0.0)))
    assert not np.allclose(ours, latents, atol=1e-3)


@over_algorithms
def test_call_with_jit_pmaps_over_the_devices(algo, harness):
    """``__call__(..., jit=True)``: replicated params (the state's key too), one prompt and seed
    per device. Each device's image equals ``_generate`` on that device's inputs with the same
    state; with one key per device (the guide's recipe) device d renoises with its own key."""
    sd = harness(algo.scheduler)
    pipe = sd.pipe
    devices = jax.local_device_count()
    assert devices == 2, "conftest asks XLA for two host devices"
    state = sd.scheduler.create_state(key=jax.random.key(11), **algo.eta(0.3))
    prompt_ids = shard(np.concatenate([sd.prompt_ids[:1]] * devices))  # (devices, 1, tokens)
    seeds = jax.random.split(jax.random.key(0), devices)
    replicated = replicate(dict(sd.params, scheduler=state))
    generate = lambda params, seeds: (
        pipe(prompt_ids, params, seeds, STEPS, guidance_scale=GUIDANCE, jit=True).images
    )
    images = np.asarray(generate(replicated, seeds))
    assert images.shape == (devices, 1, fc.SIZE, fc.SIZE, 3)
    assert np.isfinite(images).all()
    single = jax.jit(
        lambda ids, seed, state: pipe._generate(
            ids, dict(sd.params, scheduler=state), seed, STEPS, fc.SIZE, fc.SIZE, GUIDANCE
        )
    )
    for d in range(devices):
        assert_close(images[d], single(prompt_ids[d], seeds[d], state), f"device {d}")
    assert not np.allclose(images[0], images[1], atol=1e-4)  # the per-device seeds differ
    # The same call again: identical.
    np.testing.assert_array_equal(np.asarray(generate(replicated, seeds)), images)
    # The same seed on both devices: the replicated key renoises both alike.
    same_seeds = jnp.stack([seeds[0]] * devices)
    alike = np.asarray(generate(replicated, same_seeds))
    np.testing.assert_array_equal(alike[0], alike[1])
    # One key per device: device d renoises with keys[d], also from the same seed.
    keys = jax.random.split(jax.random.key(12), devices)
    per_device = dict(replicated, scheduler=replicated["scheduler"].replace(key=keys))
    own = np.asarray(generate(per_device, seeds))
    for d in range(devices):
        expected = single(prompt_ids[d], seeds[d], state.replace(key=keys[d]))
        assert_close(own[d], expected, f"device {d}, its own key")
        assert not np.allclose(own[d], images[d], atol=1e-4)
    own_alike = np.asarray(generate(per_device, same_seeds))
    assert np.isfinite(own_alike).all()
    assert not np.allclose(own_alike[0], own_alike[1], atol=1e-4)


@over_algorithms
def test_img2img_with_strength_below_one(algo, tmp_path):
    """``FlaxStableDiffusionImg2ImgPipeline`` slices the plan (strength 0.5: the last 2 of 4
    steps) and starts its fori_loop there; the first step finds its index from the timestep, so
    step i still draws ``fold_in(key, i)`` (and the final step, index 3, draws nothing): the
    compiled loop with ``begin_index`` equals it."""
    scheduler = algo.scheduler(**SCHEDULE)
    key = jax.random.key(21)
    state = scheduler.create_state(key=key, **algo.eta(0.3))
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
        plan_timesteps(algo.core, scheduler.config, STEPS), begin_index=case.start
    )
    start_latents = case.start_latents(state, plan.timesteps[0])
    expected = algo.sample(case.model_fn(), start_latents, key, plan, config=scheduler.config)
    assert_close(latents, expected, "img2img vs compiled loop")


@over_algorithms
def test_saved_pipeline_folder_loads_back_with_our_scheduler(algo, harness, tmp_path):
    """A pipeline folder as on the Hub (here saved from the tiny pipeline with a diffusers
    scheduler), loaded back, with ``from_pretrained(folder, subfolder="scheduler")`` of our
    scheduler put in: the same images as the pipeline built in memory."""
    sd = harness(algo.scheduler)
    save_as_on_the_hub(sd, tmp_path)
    scheduler, state = algo.scheduler.from_pretrained(
        tmp_path, subfolder="scheduler", dtype=jnp.float32
    )
    assert isinstance(state, algo.state)
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
    again, _ = algo.scheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert again == scheduler
    reloaded, _ = FlaxStableDiffusionPipeline.from_pretrained(tmp_path, **NO_CHECKER)
    assert isinstance(reloaded.scheduler, FlaxDDIMScheduler)
