"""Bad input: a ValueError that names the argument, raised before the model is first called."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from kdiffusion_helpers import DiscreteDenoiser, toy_net

from tcd_core import TCDConfig, alphas_cumprod
from tcd_kdiffusion import get_sigmas_tcd, sample_tcd

AC = torch.from_numpy(alphas_cumprod(TCDConfig()))
SIGMAS = get_sigmas_tcd(4, AC)


def never_called(x, sigma, **kwargs):
    raise AssertionError("the model was called before the input was validated")


def x_like(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(0))


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al.'s continuous schedule: σ's between the table's entries."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)]).float()


@pytest.mark.parametrize(
    "sigmas, match",
    [
        (torch.tensor([1.0, 3.3322, 0.0]), "`sigmas` must be strictly decreasing"),
        (torch.tensor([SIGMAS[0], SIGMAS[0], 0.0]), "`sigmas` must be strictly decreasing"),
        (torch.tensor([SIGMAS[1], 0.0, 0.0]), "`sigmas` must be strictly decreasing"),
        (torch.tensor([SIGMAS[0], -1.0]), "`sigmas` must be finite and non-negative"),
        (torch.tensor([math.inf, 0.0]), "`sigmas` must be finite and non-negative"),
        (torch.tensor([math.nan, 0.0]), "`sigmas` must be finite and non-negative"),
        (torch.zeros(2, 3), "`sigmas` must be a non-empty 1-D tensor"),
        (torch.zeros(0), "`sigmas` must be a non-empty 1-D tensor"),
        (["a", "b"], "`sigmas` must be a 1-D tensor"),
        (karras(4, 0.0292, 14.6146), r"`sigmas`\[1\] = .* is not a σ of the model's noise"),
        (torch.tensor([5.0, 0.0]), r"`sigmas`\[0\] = 5 is not a σ"),
        (torch.tensor([20.0, 0.0]), r"`sigmas`\[0\] = 20 is not a σ"),
    ],
)
def test_bad_sigmas(sigmas, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_tcd(never_called, x_like(), sigmas, alphas_cumprod=AC, disable=True)


def test_karras_first_and_last_sigma_are_on_the_table_but_not_the_rest() -> None:
    """The error names the first σ that is off the table, the one a user must fix."""
    sig = karras(4, float(SIGMAS[-2]), float(SIGMAS[0]))
    with pytest.raises(ValueError, match=r"`sigmas`\[1\]") as info:
        sample_tcd(never_called, x_like(), sig, alphas_cumprod=AC, disable=True)
    assert "get_sigmas_tcd" in str(info.value) and "timestep" in str(info.value)


def test_two_sigmas_on_one_timestep() -> None:
    """Distinct σ's, both within rounding of one table entry, would step from t to t."""
    s = float(SIGMAS[1])
    sig = torch.tensor([s * (1 + 4e-6), s, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"map to timesteps 759 and 759"):
        sample_tcd(never_called, x_like(), sig, alphas_cumprod=AC, disable=True)


@pytest.mark.parametrize(
    "eta, match",
    [
        (-0.1, r"`eta` must be in \[0, 1\]"),
        (1.5, r"`eta` must be in \[0, 1\]"),
        (math.nan, r"`eta` must be in \[0, 1\]"),
        (True, "`eta` must be a number"),
        ("0.3", "`eta` must be a number"),
        (None, "`eta` must be a number"),
        (torch.tensor([0.3, 1.2]), r"`eta` must be in \[0, 1\]"),
        (torch.tensor([0.3, math.nan]), r"`eta` must be in \[0, 1\]"),
        (torch.tensor([0.3, 0.3, 0.3]), r"one entry per batch element \(2\)"),
        (torch.full((2, 1), 0.3), r"one entry per batch element \(2\)"),
        (torch.tensor(1.01), r"`eta` must be in \[0, 1\]"),
        (np.array([0.1, -0.2]), r"`eta` must be in \[0, 1\]"),
    ],
)
def test_bad_eta(eta, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_tcd(never_called, x_like(), SIGMAS, eta=eta, alphas_cumprod=AC, disable=True)


def test_no_table_to_be_found() -> None:
    with pytest.raises(ValueError, match="no noise schedule found: pass `alphas_cumprod`"):
        sample_tcd(never_called, x_like(), SIGMAS, disable=True)


@pytest.mark.parametrize(
    "table",
    [torch.tensor([0.9, 1.5]), torch.tensor([[0.9, 0.5]]), torch.tensor([0.9, math.nan])],
)
def test_bad_table(table) -> None:
    with pytest.raises(ValueError, match="`alphas_cumprod`"):
        sample_tcd(never_called, x_like(), SIGMAS, alphas_cumprod=table, disable=True)


def test_bad_x_and_extra_args() -> None:
    with pytest.raises(ValueError, match="`x` must be a floating-point torch tensor"):
        sample_tcd(never_called, np.zeros((1, 4)), SIGMAS, alphas_cumprod=AC)
    with pytest.raises(ValueError, match="`x` must be a floating-point torch tensor"):
        sample_tcd(never_called, torch.zeros(1, 4, dtype=torch.int64), SIGMAS, alphas_cumprod=AC)
    with pytest.raises(ValueError, match="`extra_args` must be a dict"):
        sample_tcd(never_called, x_like(), SIGMAS, extra_args=[1], alphas_cumprod=AC)


def test_a_model_or_noise_sampler_of_the_wrong_shape() -> None:
    """Shapes the sampler cannot check in advance: ValueError at the first wrong output."""
    wrong = lambda x, sigma: x[:1]
    with pytest.raises(ValueError, match="the model returned shape"):
        sample_tcd(wrong, x_like(), SIGMAS, alphas_cumprod=AC, disable=True)
    model = DiscreteDenoiser(toy_net(AC), AC, "epsilon")
    with pytest.raises(ValueError, match="`noise_sampler` returned shape"):
        sample_tcd(model, x_like(), SIGMAS, noise_sampler=lambda s, n: torch.zeros(1), disable=True)


@pytest.mark.parametrize("name", ["callback", "noise_sampler"])
def test_callables_are_checked_before_the_model_runs(name: str) -> None:
    """A callback or noise sampler that is not callable used to fail after the model ran."""
    with pytest.raises(TypeError, match=f"`{name}` must be callable"):
        sample_tcd(never_called, x_like(), SIGMAS, alphas_cumprod=AC, disable=True, **{name: 3})
    with pytest.raises(TypeError, match="`model` must be callable"):
        sample_tcd(None, x_like(), SIGMAS, alphas_cumprod=AC, disable=True)
