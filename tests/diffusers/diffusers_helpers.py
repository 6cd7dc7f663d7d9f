"""Shared helpers for the tcd_diffusers tests: our schedulers paired with diffusers' classes
(:data:`PAIRS`, for tests parametrised over both algorithms), bit-identity, a toy denoiser."""

from __future__ import annotations

from dataclasses import dataclass

import diffusers
import pytest
import torch
from diffusers.schedulers.scheduling_lcm import LCMSchedulerOutput
from diffusers.schedulers.scheduling_tcd import TCDSchedulerOutput

from tcd_diffusers import LCMScheduler, TCDScheduler


@dataclass(frozen=True)
class Pair:
    """One of our schedulers and the diffusers class it reproduces bit for bit."""

    name: str  #: the test id: ``tcd`` or ``lcm``
    ours: type
    ref: type
    output: type  #: the reference's output dataclass
    second: str  #: its second field (after ``prev_sample``)
    has_eta: bool  #: ``step`` takes η (TCD); LCM's step has no such argument

    def step(self, scheduler, model_output, timestep, sample, eta: float = 0.3, **kwargs):
        """``scheduler.step``, passing ``eta`` only where the step takes it."""
        if self.has_eta:
            kwargs["eta"] = eta
        return scheduler.step(model_output, timestep, sample, **kwargs)


TCD = Pair(
    "tcd", TCDScheduler, diffusers.TCDScheduler, TCDSchedulerOutput, "pred_noised_sample", True
)
LCM = Pair("lcm", LCMScheduler, diffusers.LCMScheduler, LCMSchedulerOutput, "denoised", False)
BOTH = (TCD, LCM)
#: ``@pytest.mark.parametrize("pair", PAIRS)``: one test per algorithm, ids ``tcd`` and ``lcm``
PAIRS = [pytest.param(pair, id=pair.name) for pair in BOTH]


def assert_same(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Bit-identical tensors: same dtype, shape, device and values (NaN where the reference has
    NaN, e.g. ε-prediction at ᾱ = 0 with zero-terminal-SNR betas)."""
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.device == ref.device
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(ours), nan), "NaN positions differ"
    if nan.any():
        ours, ref = ours[~nan], ref[~nan]
    if not torch.equal(ours, ref):
        diff = (ours.double() - ref.double()).abs().max().item()
        raise AssertionError(f"tensors differ (max |diff| = {diff:.3e})")


def toy_model(sample: torch.Tensor, t: int) -> torch.Tensor:
    """A deterministic stand-in for a denoiser: depends on the sample and the timestep."""
    return torch.sin(sample * 1.7) * (0.5 + t / 1000.0)


def lockstep(pair: Pair, ours, ref, timesteps, eta: float = 0.3, seed: int = 0) -> None:
    """Step ``ours`` and ``ref`` through ``(t_ours, t_ref)`` from one sample, with the same model
    outputs and generator seed: both outputs of every step bit-identical, the generators in the
    same state at the end."""
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    x_ours = x_ref = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed + 1))
    for t_ours, t_ref in timesteps:
        m = toy_model(x_ref, int(t_ref))
        a = pair.step(ours, m, t_ours, x_ours, eta=eta, generator=g1)
        b = pair.step(ref, m, t_ref, x_ref, eta=eta, generator=g2)
        assert_same(a.prev_sample, b.prev_sample)
        assert_same(getattr(a, pair.second), getattr(b, pair.second))
        x_ours, x_ref = a.prev_sample, b.prev_sample
    assert torch.equal(g1.get_state(), g2.get_state())
