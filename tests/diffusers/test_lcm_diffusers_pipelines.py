"""Real diffusers pipelines with our LCMScheduler and with diffusers' own: identical images.

Tiny random-weight components built offline (diffusers_components); the LCM pipelines get a UNet
with a guidance-embedding input (``time_cond_proj_dim``), as LCM-distilled UNets have. Each run
uses a fresh scheduler made with the one-line swap ``from_config(pipe.scheduler.config)`` and the
same seed, so the initial latents and every step's noise come from the same generator.
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from diffusers_components import sd_components, sdxl_components, tiny_unet

from tcd_diffusers import LCMScheduler

SIZE = 64
STEPS = 4


def _lcm_components(seed: int = 0) -> dict:
    parts = sd_components(seed)
    torch.manual_seed(seed + 1)
    parts["unet"] = tiny_unet(time_cond_proj_dim=32).eval()
    return parts


@pytest.fixture(scope="module")
def lcm_parts():
    return _lcm_components()


@pytest.fixture(scope="module")
def sd_pipe():
    pipe = diffusers.StableDiffusionPipeline(
        scheduler=diffusers.LCMScheduler(steps_offset=1), **sd_components()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl_parts():
    return sdxl_components()


def _pipe(cls, components):
    pipe = cls(scheduler=diffusers.LCMScheduler(), **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(seed: int) -> torch.Tensor:
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _generators(seeds: int | tuple[int, ...]):
    if isinstance(seeds, int):
        return torch.Generator().manual_seed(seeds)
    return [torch.Generator().manual_seed(s) for s in seeds]


def run_both(pipe, seeds: int | tuple[int, ...] = 1234, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The same call with diffusers' LCMScheduler and with ours (one-line swap each time)."""
    images = []
    for cls in (diffusers.LCMScheduler, LCMScheduler):
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
        call = {
            "prompt": "a photo of a cat",
            "num_inference_steps": STEPS,
            "generator": _generators(seeds),
            "output_type": "np",
            **kwargs,
        }
        images.append(pipe(**call).images)
    assert type(pipe.scheduler) is LCMScheduler
    return images[0], images[1]


def assert_identical(ref: np.ndarray, ours: np.ndarray) -> None:
    assert ref.shape == ours.shape and ref.dtype == ours.dtype
    assert np.isfinite(ref).all()
    assert np.array_equal(ref, ours), float(np.abs(ref - ours).max())


@pytest.mark.parametrize("steps", [1, 4, 8])
def test_latent_consistency_model_pipeline(lcm_parts, steps) -> None:
    pipe = _pipe(diffusers.LatentConsistencyModelPipeline, lcm_parts)
    ref, ours = run_both(pipe, height=SIZE, width=SIZE, num_inference_steps=steps)
    assert_identical(ref, ours)


def test_latent_consistency_model_pipeline_batch_guidance_and_original_steps(lcm_parts) -> None:
    pipe = _pipe(diffusers.LatentConsistencyModelPipeline, lcm_parts)
    ref, ours = run_both(
        pipe,
        seeds=(1, 2),
        height=SIZE,
        width=SIZE,
        guidance_scale=4.0,
        num_images_per_prompt=2,
        original_inference_steps=40,
    )
    assert_identical(ref, ours)


def test_latent_consistency_model_pipeline_custom_timesteps(lcm_parts) -> None:
    pipe = _pipe(diffusers.LatentConsistencyModelPipeline, lcm_parts)
    ref, ours = run_both(
        pipe, height=SIZE, width=SIZE, num_inference_steps=None, timesteps=[999, 599, 299, 99]
    )
    assert_identical(ref, ours)


def test_latent_consistency_model_img2img(lcm_parts) -> None:
    """The LCM img2img pipeline passes strength to set_timesteps (the plan's strength path),
    then noises the image to the first timestep with add_noise."""
    pipe = _pipe(diffusers.LatentConsistencyModelImg2ImgPipeline, lcm_parts)
    ref, ours = run_both(pipe, image=_image(0), strength=0.6)
    assert_identical(ref, ours)
    assert pipe.scheduler.timesteps.tolist() == [599, 459, 299, 159]


def test_stable_diffusion_with_lcm(sd_pipe) -> None:
    """LCM-LoRA style: a plain SD pipeline with the scheduler swapped (CFG doubles the batch)."""
    ref, ours = run_both(sd_pipe, height=SIZE, width=SIZE, guidance_scale=1.5)
    assert_identical(ref, ours)


def test_stable_diffusion_xl_with_lcm(sdxl_parts) -> None:
    pipe = _pipe(diffusers.StableDiffusionXLPipeline, sdxl_parts)
    ref, ours = run_both(pipe, height=SIZE, width=SIZE, guidance_scale=0.0)
    assert_identical(ref, ours)


def test_stable_diffusion_xl_img2img_with_lcm(sdxl_parts) -> None:
    pipe = _pipe(diffusers.StableDiffusionXLImg2ImgPipeline, sdxl_parts)
    ref, ours = run_both(pipe, image=_image(1), strength=0.6, guidance_scale=0.0)
    assert_identical(ref, ours)
    assert pipe.scheduler.begin_index is not None and pipe.scheduler.begin_index > 0


def test_the_step_noise_reaches_the_image(lcm_parts) -> None:
    """Guards the comparisons: the noise LCM draws between steps changes the image (a different
    generator state after the initial latents gives a different picture), so identical images
    mean the noise was drawn identically."""
    pipe = _pipe(diffusers.LatentConsistencyModelPipeline, lcm_parts)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    latents = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    call = {"prompt": "a cat", "num_inference_steps": STEPS, "output_type": "np"}
    call.update(height=SIZE, width=SIZE, latents=latents)
    a = pipe(generator=torch.Generator().manual_seed(1), **call).images
    b = pipe(generator=torch.Generator().manual_seed(2), **call).images
    assert not np.array_equal(a, b)


def test_pipeline_save_and_load_keeps_our_scheduler(lcm_parts, tmp_path) -> None:
    pipe = _pipe(diffusers.LatentConsistencyModelPipeline, lcm_parts)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.save_pretrained(tmp_path / "pipe")
    index = (tmp_path / "pipe" / "model_index.json").read_text()
    assert '"tcd_diffusers",\n    "LCMScheduler"' in index
    loaded = diffusers.LatentConsistencyModelPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is LCMScheduler
    call = {"prompt": "a cat", "num_inference_steps": STEPS, "height": SIZE, "width": SIZE}
    before = pipe(generator=torch.Generator().manual_seed(3), output_type="np", **call).images
    after = loaded(generator=torch.Generator().manual_seed(3), output_type="np", **call).images
    assert_identical(before, after)
