"""Real diffusers pipelines, run with our scheduler and with diffusers' own: identical images.

The pipelines are built offline from tiny random-weight components (diffusers_components). Each
run uses a fresh scheduler made with the one-line swap ``from_config(pipe.scheduler.config)``
and the same seed, with η = 0.3 and with η not passed (pipelines then send η = 0).
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from diffusers_components import sd_components, sdxl_components

from tcd_diffusers import TCDScheduler

SIZE = 64
STEPS = 4


@pytest.fixture(scope="module")
def sd_pipe():
    pipe = diffusers.StableDiffusionPipeline(
        scheduler=diffusers.TCDScheduler(steps_offset=1), **sd_components()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl_parts():
    return sdxl_components()


def _pipe(cls, components):
    pipe = cls(scheduler=diffusers.TCDScheduler(), **components)
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
    pipe, eta: float | None, seeds: int | tuple[int, ...] = 1234, **kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """The same call with diffusers' scheduler and with ours (one-line swap each time)."""
    images = []
    for cls in (diffusers.TCDScheduler, TCDScheduler):
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
        call = {
            "prompt": "a photo of a cat",
            "num_inference_steps": STEPS,
            "guidance_scale": 0.0,
            "generator": _generators(seeds),
            "output_type": "np",
            **kwargs,
        }
        if eta is not None:
            call["eta"] = eta
        images.append(pipe(**call).images)
    assert type(pipe.scheduler) is TCDScheduler
    return images[0], images[1]


def assert_identical(ref: np.ndarray, ours: np.ndarray) -> None:
    assert ref.shape == ours.shape and ref.dtype == ours.dtype
    assert np.isfinite(ref).all()
    assert np.array_equal(ref, ours), float(np.abs(ref - ours).max())


@pytest.mark.parametrize("eta", [0.3, None])
def test_stable_diffusion(sd_pipe, eta) -> None:
    ref, ours = run_both(sd_pipe, eta, height=SIZE, width=SIZE)
    assert_identical(ref, ours)


def test_stable_diffusion_eta_changes_the_image(sd_pipe) -> None:
    """Guards the tests above: η = 0.3 and η = 0 (not passed) give different images, so the
    comparisons really cover the stochastic path."""
    noisy, _ = run_both(sd_pipe, 0.3, height=SIZE, width=SIZE)
    plain, _ = run_both(sd_pipe, None, height=SIZE, width=SIZE)
    assert not np.array_equal(noisy, plain)


def test_stable_diffusion_with_guidance_and_batch(sd_pipe) -> None:
    ref, ours = run_both(
        sd_pipe,
        0.3,
        height=SIZE,
        width=SIZE,
        guidance_scale=2.0,
        num_images_per_prompt=2,
        seeds=(1, 2),
    )
    assert_identical(ref, ours)


@pytest.mark.parametrize("eta", [0.3, None])
def test_stable_diffusion_xl(sdxl_parts, eta) -> None:
    pipe = _pipe(diffusers.StableDiffusionXLPipeline, sdxl_parts)
    ref, ours = run_both(pipe, eta, height=SIZE, width=SIZE)
    assert_identical(ref, ours)


@pytest.mark.parametrize("eta", [0.3, None])
def test_stable_diffusion_xl_img2img(sdxl_parts, eta) -> None:
    """strength < 1: the pipeline slices the timesteps, calls set_begin_index and add_noise."""
    pipe = _pipe(diffusers.StableDiffusionXLImg2ImgPipeline, sdxl_parts)
    ref, ours = run_both(pipe, eta, image=_image(0), strength=0.6)
    assert_identical(ref, ours)
    assert pipe.scheduler.begin_index is not None and pipe.scheduler.begin_index > 0


@pytest.mark.parametrize("eta", [0.3, None])
def test_stable_diffusion_xl_inpaint(sdxl_parts, eta) -> None:
    pipe = _pipe(diffusers.StableDiffusionXLInpaintPipeline, sdxl_parts)
    ref, ours = run_both(
        pipe, eta, image=_image(1), mask_image=_mask(), strength=0.8, height=SIZE, width=SIZE
    )
    assert_identical(ref, ours)


def test_pipeline_save_and_load_keeps_our_scheduler(sd_pipe, tmp_path) -> None:
    """A pipeline saved with our scheduler records it (library tcd_diffusers) and loads it back
    offline from the folder; the reloaded pipeline gives the same image."""
    sd_pipe.scheduler = TCDScheduler.from_config(sd_pipe.scheduler.config)
    sd_pipe.save_pretrained(tmp_path / "pipe")
    index = (tmp_path / "pipe" / "model_index.json").read_text()
    assert '"tcd_diffusers",\n    "TCDScheduler"' in index
    loaded = diffusers.StableDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is TCDScheduler
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
    assert public(loaded.scheduler.config) == public(sd_pipe.scheduler.config)
    call = {
        "prompt": "a cat",
        "num_inference_steps": STEPS,
        "guidance_scale": 0.0,
        "eta": 0.3,
        "height": SIZE,
        "width": SIZE,
        "output_type": "np",
    }
    before = sd_pipe(generator=torch.Generator().manual_seed(3), **call).images
    after = loaded(generator=torch.Generator().manual_seed(3), **call).images
    assert_identical(before, after)
