"""Real diffusers pipelines, run with our schedulers and with diffusers' own: identical images.

The pipelines are built offline from tiny random-weight components (diffusers_components); the
LCM pipelines get a UNet with a guidance-embedding input (``time_cond_proj_dim``), as
LCM-distilled UNets have. Each run uses a fresh scheduler made with the one-line swap
``from_config(pipe.scheduler.config)`` and the same seed, so the initial latents and every step's
noise come from the same generator. Shared tests run per algorithm (TCD with η = 0.3 and with η
not passed, when pipelines send η = 0; LCM's step has no η); LCM's own pipelines are at the end.
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from diffusers_components import sd_components, sdxl_components, tiny_unet
from diffusers_helpers import LCM, PAIRS, TCD, Pair

SIZE = 64
STEPS = 4
#: (pair, η): η = None passes no η (TCD's pipelines then send 0; LCM's step takes none)
VARIANTS = [
    pytest.param(TCD, 0.3, id="tcd-eta0.3"),
    pytest.param(TCD, None, id="tcd-eta-none"),
    pytest.param(LCM, None, id="lcm"),
]

#: (pair, a text-to-image pipeline made for it, the fixture with its components, call options)
OWN_PIPELINES = [
    pytest.param(
        TCD, diffusers.StableDiffusionPipeline, "sd_parts", {"eta": 0.3, "guidance_scale": 0.0}
    ),
    pytest.param(LCM, diffusers.LatentConsistencyModelPipeline, "lcm_parts", {}),
]


@pytest.fixture(scope="module")
def sd_parts():
    return sd_components()


@pytest.fixture(scope="module")
def sdxl_parts():
    return sdxl_components()


@pytest.fixture(scope="module")
def lcm_parts():
    parts = sd_components(0)
    torch.manual_seed(1)
    parts["unet"] = tiny_unet(time_cond_proj_dim=32).eval()
    return parts


def _pipe(cls, components, pair: Pair, **config):
    pipe = cls(scheduler=pair.ref(**config), **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, SIZE, SIZE, generator=g)


def _mask() -> torch.Tensor:
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., SIZE // 4 : 3 * SIZE // 2, SIZE // 4 : 3 * SIZE // 4] = 1.0
    return mask


def _generators(seeds: int | tuple[int, ...]):
    if isinstance(seeds, int):
        return torch.Generator().manual_seed(seeds)
    return [torch.Generator().manual_seed(s) for s in seeds]


def run_both(
    pair: Pair, pipe, eta: float | None = None, seeds: int | tuple[int, ...] = 1234, **kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """The same call with diffusers' scheduler and with ours (one-line swap each time); η is
    passed only to a scheduler that takes it."""
    images = []
    for cls in (pair.ref, pair.ours):
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
        call = {
            "prompt": "a photo of a cat",
            "num_inference_steps": STEPS,
            "generator": _generators(seeds),
            "output_type": "np",
            **kwargs,
        }
        if eta is not None and pair.has_eta:
            call["eta"] = eta
        images.append(pipe(**call).images)
    assert type(pipe.scheduler) is pair.ours
    return images[0], images[1]


def assert_identical(ref: np.ndarray, ours: np.ndarray) -> None:
    assert ref.shape == ours.shape and ref.dtype == ours.dtype
    assert np.isfinite(ref).all()
    assert np.array_equal(ref, ours), float(np.abs(ref - ours).max())


@pytest.mark.parametrize(("pair", "eta"), VARIANTS)
def test_stable_diffusion(sd_parts, pair: Pair, eta) -> None:
    pipe = _pipe(diffusers.StableDiffusionPipeline, sd_parts, pair, steps_offset=1)
    ref, ours = run_both(pair, pipe, eta, height=SIZE, width=SIZE, guidance_scale=0.0)
    assert_identical(ref, ours)


@pytest.mark.parametrize("pair", PAIRS)
def test_stable_diffusion_with_guidance_and_batch(sd_parts, pair: Pair) -> None:
    """CFG doubles the batch (LCM-LoRA style for LCM: a plain SD pipeline, scheduler swapped)."""
    pipe = _pipe(diffusers.StableDiffusionPipeline, sd_parts, pair, steps_offset=1)
    ref, ours = run_both(
        pair,
        pipe,
        0.3,
        height=SIZE,
        width=SIZE,
        guidance_scale=2.0,
        num_images_per_prompt=2,
        seeds=(1, 2),
    )
    assert_identical(ref, ours)


@pytest.mark.parametrize(("pair", "eta"), VARIANTS)
def test_stable_diffusion_xl(sdxl_parts, pair: Pair, eta) -> None:
    pipe = _pipe(diffusers.StableDiffusionXLPipeline, sdxl_parts, pair)
    ref, ours = run_both(pair, pipe, eta, height=SIZE, width=SIZE, guidance_scale=0.0)
    assert_identical(ref, ours)


@pytest.mark.parametrize(("pair", "eta"), VARIANTS)
def test_stable_diffusion_xl_img2img(sdxl_parts, pair: Pair, eta) -> None:
    """strength < 1: the pipeline slices the timesteps, calls set_begin_index and add_noise."""
    pipe = _pipe(diffusers.StableDiffusionXLImg2ImgPipeline, sdxl_parts, pair)
    ref, ours = run_both(pair, pipe, eta, image=_image(0), strength=0.6, guidance_scale=0.0)
    assert_identical(ref, ours)
    assert pipe.scheduler.begin_index is not None and pipe.scheduler.begin_index > 0


@pytest.mark.parametrize(("pair", "eta"), VARIANTS)
def test_stable_diffusion_xl_inpaint(sdxl_parts, pair: Pair, eta) -> None:
    pipe = _pipe(diffusers.StableDiffusionXLInpaintPipeline, sdxl_parts, pair)
    ref, ours = run_both(
        pair,
        pipe,
        eta,
        image=_image(1),
        mask_image=_mask(),
        strength=0.8,
        height=SIZE,
        width=SIZE,
        guidance_scale=0.0,
    )
    assert_identical(ref, ours)


def _fixed_latents_image(pipe, seed: int, **call) -> np.ndarray:
    """One image from fixed initial latents: only the scheduler's step noise depends on the seed."""
    latents = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    call.update(prompt="a cat", num_inference_steps=STEPS, output_type="np", latents=latents)
    generator = torch.Generator().manual_seed(seed)
    return pipe(height=SIZE, width=SIZE, generator=generator, **call).images


@pytest.mark.parametrize(("pair", "pipeline", "parts", "call"), OWN_PIPELINES, ids=["tcd", "lcm"])
def test_the_step_noise_reaches_the_image(request, pair: Pair, pipeline, parts, call) -> None:
    """Guards the comparisons: the noise drawn between steps changes the image (another generator
    state after the same initial latents gives another picture), so identical images mean the
    noise was drawn identically."""
    pipe = _pipe(pipeline, request.getfixturevalue(parts), pair, steps_offset=1)
    pipe.scheduler = pair.ours.from_config(pipe.scheduler.config)
    a = _fixed_latents_image(pipe, 1, **call)
    b = _fixed_latents_image(pipe, 2, **call)
    assert not np.array_equal(a, b)


def test_stable_diffusion_eta_changes_the_image(sd_parts) -> None:
    """TCD: η = 0.3 and η = 0 (not passed) give different images, so the comparisons above really
    cover the stochastic path."""
    pipe = _pipe(diffusers.StableDiffusionPipeline, sd_parts, TCD, steps_offset=1)
    noisy, _ = run_both(TCD, pipe, 0.3, height=SIZE, width=SIZE, guidance_scale=0.0)
    plain, _ = run_both(TCD, pipe, None, height=SIZE, width=SIZE, guidance_scale=0.0)
    assert not np.array_equal(noisy, plain)


@pytest.mark.parametrize(("pair", "pipeline", "parts", "call"), OWN_PIPELINES, ids=["tcd", "lcm"])
def test_pipeline_save_and_load_keeps_our_scheduler(
    request, pair: Pair, pipeline, parts, call, tmp_path
) -> None:
    """A pipeline saved with our scheduler records it (library tcd_diffusers) and loads it back
    offline from the folder; the reloaded pipeline gives the same image."""
    pipe = _pipe(pipeline, request.getfixturevalue(parts), pair, steps_offset=1)
    pipe.scheduler = pair.ours.from_config(pipe.scheduler.config)
    pipe.save_pretrained(tmp_path / "pipe")
    index = (tmp_path / "pipe" / "model_index.json").read_text()
    assert f'"tcd_diffusers",\n    "{pair.ours.__name__}"' in index
    loaded = pipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is pair.ours
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
    assert public(loaded.scheduler.config) == public(pipe.scheduler.config)
    call = {**call, "prompt": "a cat", "num_inference_steps": STEPS, "output_type": "np"}
    call.update(height=SIZE, width=SIZE)
    before = pipe(generator=torch.Generator().manual_seed(3), **call).images
    after = loaded(generator=torch.Generator().manual_seed(3), **call).images
    assert_identical(before, after)


# ------------------------------------------------------------------ LCM's own pipelines


#: LatentConsistencyModelPipeline calls: 1/4/8 steps, a batch with the guidance embedding and an
#: explicit original_inference_steps, custom timesteps
LCM_CALLS = {
    "steps1": {"num_inference_steps": 1},
    "steps4": {"num_inference_steps": 4},
    "steps8": {"num_inference_steps": 8},
    "batch-guidance-original": dict(
        seeds=(1, 2), guidance_scale=4.0, num_images_per_prompt=2, original_inference_steps=40
    ),
    "custom-timesteps": {"num_inference_steps": None, "timesteps": [999, 599, 299, 99]},
}


@pytest.mark.parametrize("kwargs", list(LCM_CALLS.values()), ids=list(LCM_CALLS))
def test_latent_consistency_model_pipeline(lcm_parts, kwargs: dict) -> None:
    pipe = _pipe(diffusers.LatentConsistencyModelPipeline, lcm_parts, LCM)
    ref, ours = run_both(LCM, pipe, height=SIZE, width=SIZE, **kwargs)
    assert_identical(ref, ours)


def test_latent_consistency_model_img2img(lcm_parts) -> None:
    """The LCM img2img pipeline passes strength to set_timesteps (the plan's strength path),
    then noises the image to the first timestep with add_noise."""
    pipe = _pipe(diffusers.LatentConsistencyModelImg2ImgPipeline, lcm_parts, LCM)
    ref, ours = run_both(LCM, pipe, image=_image(0), strength=0.6)
    assert_identical(ref, ours)
    assert pipe.scheduler.timesteps.tolist() == [599, 459, 299, 159]
