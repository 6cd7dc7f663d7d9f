"""Shared helpers for the tcd_diffusers tests."""

from __future__ import annotations

import torch


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
