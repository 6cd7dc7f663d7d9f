"""The nodes of the pack (see :mod:`tcd_kdiffusion.comfyui`). ComfyUI is imported when a node
runs, never at import, so the pack imports (and is tested) without it."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch

from tcd_kdiffusion.model_sampling import model_sampling_sigmas
from tcd_kdiffusion.noise import STEP_NOISE, check_step_noise
from tcd_kdiffusion.sampling import sample_tcd

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "STEP_NOISE",
    "SamplerTCD",
    "TCDSigmas",
    "sample_tcd_comfyui",
]

#: The node's sampler under its former name: :func:`~tcd_kdiffusion.sample_tcd` itself, whose
#: ``step_noise`` option (``"comfyui"`` by default) is the node's.
sample_tcd_comfyui = sample_tcd


class _Node:
    """ComfyUI's node convention, written once: ``INPUT_TYPES()`` gives the class's ``INPUTS``
    as required inputs, and ``DESCRIPTION`` (the text ComfyUI shows for the node) is the class's
    docstring, which is written for the ComfyUI user."""

    INPUTS: ClassVar[dict[str, tuple[Any, ...]]] = {}
    DESCRIPTION: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.DESCRIPTION = " ".join((inspect.getdoc(cls) or "").split())

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": dict(cls.INPUTS)}


class SamplerTCD(_Node):
    """TCD (Trajectory Consistency Distillation) sampling, for SD-style and flow-matching
    models. eta is TCD's gamma: 0 is deterministic (DDIM/Euler), 1 re-noises fully (LCM); 0.3
    for 4-8 steps."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    INPUTS: ClassVar[dict[str, tuple[Any, ...]]] = {
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
                "tooltip": "comfyui: ComfyUI's noise sampler for the seed. diffusers: the step "
                "noise of a diffusers pipeline run with generator=torch.Generator().manual_seed(seed)",
            },
        ),
    }

    def get_sampler(self, eta: float, step_noise: str = "comfyui") -> tuple[Any]:
        check_step_noise(step_noise)
        import comfy.samplers

        options = {"eta": float(eta), "step_noise": step_noise}
        return (comfy.samplers.KSAMPLER(sample_tcd, extra_options=options),)


class TCDSigmas(_Node):
    """TCD's sigmas: diffusers' TCDScheduler plan on SD-style models, the model's shifted time
    grid on flow models. denoise < 1 for image-to-image."""

    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    INPUTS: ClassVar[dict[str, tuple[Any, ...]]] = {
        "model": ("MODEL",),
        "steps": ("INT", {"default": 4, "min": 1, "max": 1000}),
        "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
    }

    def get_sigmas(self, model: Any, steps: int, denoise: float = 1.0) -> tuple[torch.Tensor]:
        sampling = model.get_model_object("model_sampling")
        return (model_sampling_sigmas(sampling, int(steps), float(denoise)),)


NODE_CLASS_MAPPINGS: dict[str, type] = {"SamplerTCD": SamplerTCD, "TCDSigmas": TCDSigmas}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "SamplerTCD": "Sampler TCD",
    "TCDSigmas": "TCD Sigmas",
}
