"""The nodes of the pack (see :mod:`tcd_kdiffusion.comfyui`). ComfyUI is imported when a node
runs, never at import, so the pack imports (and is tested) without it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tcd_kdiffusion.model_sampling import model_sampling_sigmas
from tcd_kdiffusion.noise import NoiseSampler, default_noise_sampler, diffusers_noise_sampler
from tcd_kdiffusion.sampling import sample_tcd

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "STEP_NOISE",
    "SamplerTCD",
    "TCDSigmas",
    "sample_tcd_comfyui",
]

#: Where the step noise comes from: ComfyUI's noise sampler for the seed, or a diffusers
#: pipeline's generator stream for the seed.
STEP_NOISE = ("comfyui", "diffusers")


def _check_step_noise(step_noise: str) -> None:
    """One check for the node (when the workflow is built) and the sampler (called directly)."""
    if step_noise not in STEP_NOISE:
        raise ValueError(f"`step_noise` must be one of {STEP_NOISE}, got {step_noise!r}")


def _comfyui_noise_sampler(x: torch.Tensor, seed: Any) -> NoiseSampler:
    """ComfyUI's own ``default_noise_sampler(x, seed)`` when ComfyUI is there, else ours (the
    same draws: a generator on x's device seeded once, one ``randn`` of x's shape per step)."""
    try:
        from comfy.k_diffusion.sampling import default_noise_sampler as comfy_noise_sampler
    except ImportError:
        return default_noise_sampler(x, seed)
    sampler: NoiseSampler = comfy_noise_sampler(x, seed=seed)
    return sampler


@torch.no_grad()
def sample_tcd_comfyui(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: Any,
    extra_args: dict[str, Any] | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
    disable: bool | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: Any = 0.3,
    step_noise: str = "comfyui",
) -> torch.Tensor:
    """:func:`~tcd_kdiffusion.sample_tcd` with the step noise the *Sampler TCD* node chose.

    ``step_noise="comfyui"``: ComfyUI's ``default_noise_sampler`` for ``extra_args["seed"]``
    (the workflow's seed; the same seed gives the same image on every run). ``"diffusers"``:
    :func:`~tcd_kdiffusion.diffusers_noise_sampler` for that seed, the step noise of a diffusers
    pipeline called with ``generator=torch.Generator().manual_seed(seed)``. A ``noise_sampler``
    passed in wins over both.
    """
    _check_step_noise(step_noise)
    seed = (extra_args or {}).get("seed") if isinstance(extra_args, dict) else None
    if noise_sampler is None:
        if step_noise == "diffusers":
            if seed is None:
                raise ValueError(
                    "step_noise='diffusers' draws the step noise from the workflow's seed, and "
                    "the sampler got none (extra_args['seed']): sample with SamplerCustom or "
                    "SamplerCustomAdvanced"
                )
            noise_sampler = diffusers_noise_sampler(x, seed)
        else:
            noise_sampler = _comfyui_noise_sampler(x, seed)
    return sample_tcd(model, x, sigmas, extra_args, callback, disable, noise_sampler, eta=eta)


class SamplerTCD:
    """SAMPLER: TCD (Strategic Stochastic Sampling) with ``eta``, for any model whose model
    sampling :mod:`tcd_kdiffusion.model_sampling` accepts (SD-style and flow-matching)."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    DESCRIPTION = (
        "TCD (Trajectory Consistency Distillation) sampling. eta is TCD's gamma: 0 is "
        "deterministic (DDIM/Euler), 1 re-noises fully (LCM); 0.3 for 4-8 steps."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "eta": (
                    "FLOAT",
                    {
                        "default": 0.3,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "TCD's gamma: 0 deterministic, 1 LCM-like; 0.3 for 4-8 steps",
                    },
                ),
                "step_noise": (
                    list(STEP_NOISE),
                    {
                        "default": "comfyui",
                        "tooltip": "comfyui: ComfyUI's noise sampler for the seed. diffusers: the "
                        "step noise of a diffusers pipeline run with "
                        "generator=torch.Generator().manual_seed(seed)",
                    },
                ),
            }
        }

    def get_sampler(self, eta: float, step_noise: str = "comfyui") -> tuple[Any]:
        _check_step_noise(step_noise)
        import comfy.samplers

        options = {"eta": float(eta), "step_noise": step_noise}
        return (comfy.samplers.KSAMPLER(sample_tcd_comfyui, extra_options=options),)


class TCDSigmas:
    """SIGMAS: TCD's plan on the model's own schedule
    (:func:`~tcd_kdiffusion.model_sampling_sigmas`)."""

    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    DESCRIPTION = (
        "TCD's sigmas: diffusers' TCDScheduler plan on SD-style models, the model's shifted "
        "time grid on flow models. denoise < 1 for image-to-image."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "steps": ("INT", {"default": 4, "min": 1, "max": 1000}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }

    def get_sigmas(self, model: Any, steps: int, denoise: float = 1.0) -> tuple[torch.Tensor]:
        sampling = model.get_model_object("model_sampling")
        return (model_sampling_sigmas(sampling, int(steps), float(denoise)),)


NODE_CLASS_MAPPINGS: dict[str, type] = {"SamplerTCD": SamplerTCD, "TCDSigmas": TCDSigmas}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "SamplerTCD": "Sampler TCD",
    "TCDSigmas": "TCD Sigmas",
}
