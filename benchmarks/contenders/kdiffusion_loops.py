"""The k-diffusion convention (issue 11): ``tcd_kdiffusion.sample_tcd`` on torch tensors."""

from __future__ import annotations

from typing import Any

from tcd_core import alphas_cumprod

from ..workloads import Inputs
from .base import Loop, import_or_unavailable
from .torch_loops import TorchContender, eager_loop, torch_inputs

__all__ = ["KDiffusionSampleTCD"]


class KDiffusionSampleTCD(TorchContender):
    """``tcd_kdiffusion.sample_tcd`` with the identity denoiser ``model(x, σ) = x``: what the
    sampler itself costs per step in a UI (ComfyUI, A1111, Forge) on top of the model."""

    def __init__(self) -> None:
        super().__init__(
            "kdiffusion",
            "tcd_kdiffusion sample_tcd (identity denoiser)",
            "tcd_kdiffusion.get_sigmas_tcd + sample_tcd(model, x, sigmas, eta=, noise_sampler="
            "torch.randn(generator=g)) with model(x, σ) = x: per call the σ → t quantization and "
            "the core's step folded into x' = a·x + b·x̂₀ + c·z (host weights, cached per table, "
            "sigmas and η), per step 3 torch ops (5 with noise, no fused multiply-add); noise "
            "where diffusers draws it (its own trajectory: checked in tests/kdiffusion)",
        )
        self.fns: tuple[Any, Any] | None = None

    def load(self) -> None:
        self.fns = (
            import_or_unavailable("tcd_kdiffusion", "get_sigmas_tcd"),
            import_or_unavailable("tcd_kdiffusion", "sample_tcd"),
        )

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, _eps = torch_inputs(inputs)
        assert self.fns is not None
        get_sigmas_tcd, sample_tcd = self.fns
        wl = inputs.workload
        ac = torch.from_numpy(alphas_cumprod(inputs.config))
        g = torch.Generator().manual_seed(inputs.seed)

        def noise(sigma: Any, sigma_next: Any) -> Any:
            return torch.randn(x0.shape, generator=g, dtype=x0.dtype)

        def identity(x: Any, sigma: Any) -> Any:
            return x

        def run() -> Any:
            g.manual_seed(inputs.seed)
            sigmas = get_sigmas_tcd(wl.steps, ac)  # the plan, like set_timesteps elsewhere
            return sample_tcd(identity, x0, sigmas, None, None, True, noise, wl.eta, ac)

        return eager_loop(run)
