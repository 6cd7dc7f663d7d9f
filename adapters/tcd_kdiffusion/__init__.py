"""tcd_kdiffusion: TCD as a k-diffusion sampler, for ComfyUI, A1111, Forge and k-diffusion.

* :func:`sample_tcd`: one TCD step (Strategic Stochastic Sampling) per σ, with k-diffusion's
  sampler signature ``fn(model, x, sigmas, extra_args, callback, disable, ...)``.
* :func:`get_sigmas_tcd`: the σ's of diffusers' TCD plan, the SIGMAS a UI feeds the sampler.
* :mod:`tcd_kdiffusion.comfyui`: the ComfyUI node pack (``tcd-comfyui-install`` installs it).

Flow-matching models (ComfyUI's CONST model sampling: SD3, FLUX, Wan, …) are sampled on the flow
path; :mod:`tcd_kdiffusion.model_sampling` says what happens for each ComfyUI model sampling.

The maths is :mod:`tcd_core`'s; only the scaling between k-diffusion's convention
(x = x_t/√ᾱ_t, σ = √((1−ᾱ_t)/ᾱ_t), the model returns x̂₀) and diffusers' is new. Torch only:
neither k-diffusion nor ComfyUI is imported.

    >>> from tcd_core import TCDConfig, alphas_cumprod
    >>> from tcd_kdiffusion import get_sigmas_tcd
    >>> len(get_sigmas_tcd(4, alphas_cumprod(TCDConfig())))
    5
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by tests/kdiffusion in a subprocess
    raise ImportError(
        f'tcd_kdiffusion needs torch ({exc.name} is missing): pip install "tcd-core[kdiffusion]"'
    ) from exc

from .model_sampling import FlowSchedule, model_sampling_sigmas, resolve_model_sampling
from .noise import (
    STEP_NOISE,
    NoiseSampler,
    default_noise_sampler,
    diffusers_noise_sampler,
    step_noise_sampler,
)
from .sampling import sample_tcd
from .schedule import SIGMA_RTOL, alphas_cumprod_from_sigmas, sigmas_from_alphas_cumprod
from .sigmas import get_sigmas_tcd

__all__ = [
    "SIGMA_RTOL",
    "STEP_NOISE",
    "FlowSchedule",
    "NoiseSampler",
    "alphas_cumprod_from_sigmas",
    "default_noise_sampler",
    "diffusers_noise_sampler",
    "get_sigmas_tcd",
    "model_sampling_sigmas",
    "resolve_model_sampling",
    "sample_tcd",
    "sigmas_from_alphas_cumprod",
    "step_noise_sampler",
]
