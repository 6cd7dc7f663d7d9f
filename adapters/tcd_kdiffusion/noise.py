"""The default noise sampler: N(0, I) shaped like the latents, as k-diffusion samplers draw it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["NoiseSampler", "default_noise_sampler"]

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
