"""A real UNet: the tiny SD UNet of tests/diffusers, wrapped as a k-diffusion ε-denoiser and
sampled with sample_tcd, gives the latents of diffusers' StableDiffusionPipeline with its own
TCDScheduler (``output_type="latent"``), within |Δ| ≤ 1e-5·(1+max|ref|).

The UNet sees the same conditioning: the pipeline's own ``encode_prompt`` output, concatenated
[negative, positive] under classifier-free guidance as the pipeline does, and the guidance
ε_u + w·(ε_c − ε_u) before the k-diffusion wrapper forms x̂₀ = x − σ·ε. The initial latents are
the pipeline's z (same seed) in k-diffusion's scaling, x = z/√ᾱ_{t₀}; the step noise comes from
the same generator, after z.
"""

from __future__ import annotations

import diffusers
import pytest
import torch
from diffusers_components import sd_components
from kdiffusion_helpers import CFGWrapper, DiscreteDenoiser, assert_close

from tcd_kdiffusion import get_sigmas_tcd, sample_tcd

SIZE = 64
PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def pipe():
    pipe = diffusers.StableDiffusionPipeline(
        scheduler=diffusers.TCDScheduler(steps_offset=1), **sd_components()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class GuidedUNet(torch.nn.Module):
    """ε(x_t, t) of the pipeline's UNet with the pipeline's prompt embeddings and guidance."""

    def __init__(self, unet, prompt_embeds: torch.Tensor, guidance_scale: float, cfg: bool):
        super().__init__()
        self.unet, self.embeds, self.scale, self.cfg = unet, prompt_embeds, guidance_scale, cfg
        self.timesteps: list[int] = []

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1)[0]  # one timestep for the batch, as the pipeline passes it
        self.timesteps.append(int(t))
        x_in = torch.cat([x_t] * 2) if self.cfg else x_t
        eps = self.unet(x_in, t, encoder_hidden_states=self.embeds, return_dict=False)[0]
        if self.cfg:
            uncond, text = eps.chunk(2)
            eps = uncond + self.scale * (text - uncond)
        return eps


def run_both(pipe, eta: float | None, guidance_scale: float, images: int, steps: int = 4):
    seed = 1234
    call = dict(
        prompt=PROMPT,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        num_images_per_prompt=images,
        height=SIZE,
        width=SIZE,
        output_type="latent",
        generator=torch.Generator().manual_seed(seed),
    )
    if eta is not None:
        call["eta"] = eta
    pipe.scheduler = diffusers.TCDScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        ref = pipe(**call).images
    ref_timesteps = pipe.scheduler.timesteps.tolist()

    cfg = guidance_scale > 1.0 and pipe.unet.config.time_cond_proj_dim is None
    with torch.no_grad():
        positive, negative = pipe.encode_prompt(PROMPT, "cpu", images, cfg)
    embeds = torch.cat([negative, positive]) if cfg else positive
    ac = pipe.scheduler.alphas_cumprod
    net = GuidedUNet(pipe.unet, embeds, guidance_scale, cfg)
    model = CFGWrapper(DiscreteDenoiser(net, ac, "epsilon"))

    g = torch.Generator().manual_seed(seed)
    side = SIZE // pipe.vae_scale_factor
    shape = (images, pipe.unet.config.in_channels, side, side)
    z = torch.randn(shape, generator=g)
    sigmas = get_sigmas_tcd(steps, ac)
    x = z / ac[ref_timesteps[0]].sqrt()
    out = sample_tcd(
        model,
        x,
        sigmas,
        noise_sampler=lambda sigma, sigma_next: torch.randn(shape, generator=g),
        eta=0.0 if eta is None else eta,  # pipelines send η = 0 when it is not passed
        disable=True,
    )
    assert net.timesteps == ref_timesteps  # the wrapper's σ → t found diffusers' timesteps
    return out, ref


@pytest.mark.parametrize("eta", [0.3, None])
def test_stable_diffusion_latents(pipe, eta) -> None:
    out, ref = run_both(pipe, eta, guidance_scale=0.0, images=1)
    assert_close(out, ref, "SD pipeline latents")


def test_with_guidance_and_a_batch(pipe) -> None:
    out, ref = run_both(pipe, 0.3, guidance_scale=2.0, images=2, steps=6)
    assert_close(out, ref, "SD pipeline latents")


def test_eta_changes_the_latents(pipe) -> None:
    """Guards the tests above: the stochastic path is really exercised (η = 0.3 ≠ η = 0)."""
    noisy, _ = run_both(pipe, 0.3, guidance_scale=0.0, images=1)
    plain, _ = run_both(pipe, None, guidance_scale=0.0, images=1)
    assert float((noisy - plain).abs().max()) > 1e-2
