"""The step noise: N(0, I) shaped like the latents, as k-diffusion samplers draw it, as ComfyUI
draws it for a seed, or as a diffusers pipeline draws it from its generator."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "STEP_NOISE",
    "NoiseSampler",
    "default_noise_sampler",
    "diffusers_noise_sampler",
    "step_noise_sampler",
]

NoiseSampler = Callable[[Any, Any], torch.Tensor]
"""``noise_sampler(sigma, sigma_next)`` → z ~ N(0, I) shaped like the latents."""


def default_noise_sampler(x: torch.Tensor, seed: int | None = None) -> NoiseSampler:
    """A ``noise_sampler(sigma, sigma_next)`` drawing z ~ N(0, I) with ``x``'s shape, dtype,
    layout and device.

    Without ``seed`` each call is ``torch.randn_like(x)`` (torch's global generator); with one,
    the draws come from a ``torch.Generator`` on ``x``'s device seeded once with ``seed``: the
    stream ComfyUI's samplers draw from when ``extra_args["seed"]`` is set.

    Example:
        >>> import torch
        >>> x = torch.zeros(2, 4, 8, 8)
        >>> a, b = default_noise_sampler(x, seed=7), default_noise_sampler(x, seed=7)
        >>> torch.equal(a(1.0, 0.5), b(1.0, 0.5)), a(1.0, 0.5).shape
        (True, torch.Size([2, 4, 8, 8]))
    """
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))

    def sample_noise(sigma: Any, sigma_next: Any) -> torch.Tensor:
        return torch.randn(
            x.shape, generator=generator, dtype=x.dtype, layout=x.layout, device=x.device
        )

    return sample_noise


def diffusers_noise_sampler(x: torch.Tensor, seed: int) -> NoiseSampler:
    """Step noise drawn as a diffusers pipeline draws it from ``torch.Generator().manual_seed(seed)``.

    A pipeline called with ``generator=torch.Generator().manual_seed(seed)`` draws its initial
    latents (one ``randn`` of the latents' shape, float32, on the CPU) and then each step's noise
    from that one generator. ComfyUI draws the initial noise the same way (``prepare_noise``: a
    CPU generator seeded with the seed, one ``randn`` of the latent's shape), so this sampler
    draws and discards that first tensor, then gives each step's z as the pipeline's scheduler
    would: float32 on the CPU, moved to ``x``'s device and dtype.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 4, 8, 8)
        >>> g = torch.Generator().manual_seed(5)
        >>> latents, first_step = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
        >>> torch.equal(diffusers_noise_sampler(x, 5)(1.0, 0.5), first_step)
        True
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    torch.randn(x.shape, generator=generator, dtype=torch.float32)  # the pipeline's latents

    def sample_noise(sigma: Any, sigma_next: Any) -> torch.Tensor:
        z = torch.randn(x.shape, generator=generator, dtype=torch.float32)
        return z.to(device=x.device, dtype=x.dtype)

    return sample_noise


#: Where :func:`~tcd_kdiffusion.sample_tcd` draws its step noise from when it is given no
#: ``noise_sampler``: ComfyUI's noise sampler for the seed (k-diffusion's convention), or a
#: diffusers pipeline's generator stream for the seed.
STEP_NOISE = ("comfyui", "diffusers")


def check_step_noise(step_noise: Any) -> None:
    """ValueError unless ``step_noise`` names one of :data:`STEP_NOISE` (one check for the
    sampler and for the node, where the workflow is built)."""
    if step_noise not in STEP_NOISE:
        raise ValueError(f"`step_noise` must be one of {STEP_NOISE}, got {step_noise!r}")


def step_noise_sampler(step_noise: str, x: torch.Tensor, seed: int | None) -> NoiseSampler:
    """The noise sampler ``step_noise`` names, for the latents ``x`` and the workflow's ``seed``.

    ``"comfyui"``: ComfyUI's own ``default_noise_sampler(x, seed)`` when ComfyUI is loaded,
    else :func:`default_noise_sampler` (the same draws: a generator on x's device seeded once, one
    ``randn`` of x's shape per step; without a seed, torch's global generator, as k-diffusion
    draws). ``"diffusers"``: :func:`diffusers_noise_sampler` for ``seed``, which it needs.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 4, 8, 8)
        >>> a, b = step_noise_sampler("diffusers", x, 5), diffusers_noise_sampler(x, 5)
        >>> torch.equal(a(1.0, 0.5), b(1.0, 0.5))
        True
    """
    check_step_noise(step_noise)
    if step_noise == "diffusers":
        if seed is None:
            raise ValueError(
                "step_noise='diffusers' draws the step noise from the workflow's seed, and the "
                "sampler got none (extra_args['seed']; in ComfyUI, sample with SamplerCustom or "
                "SamplerCustomAdvanced)"
            )
        return diffusers_noise_sampler(x, seed)
    # Looked up, not imported: inside ComfyUI its samplers have imported the module already, and
    # elsewhere a failed import would cost ~0.1 ms on every call.
    comfy = sys.modules.get("comfy.k_diffusion.sampling")
    if comfy is None:
        return default_noise_sampler(x, seed)
    sampler: NoiseSampler = comfy.default_noise_sampler(x, seed=seed)
    return sampler
