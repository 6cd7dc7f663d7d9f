"""Per-step 0-d coefficients and the allocation-lean tensor update (private).

This module is the adapter's fast path. It stands in for a core helper that does not exist yet
(proposed: ``tcd_core.step_coefficients`` returning these coefficients, with ``tcd_step`` built
on it, so that this file reduces to calls). :func:`tcd_core.tcd_step` recomputes about a dozen
0-d quantities on every call (√ᾱₜ, √(1−ᾱₜ), √ᾱₛ, ..., r = ᾱₚ/ᾱₛ), which on a small latent
costs more than the update itself. Here they are computed once per (t, p, η) with exactly the
core's operations, on 0-d tensors (the intermediate timestep s comes from
:func:`tcd_core.intermediate_timestep`), and the tensor-sized part applies the core's operations
in the core's order.

Bit-identity contract: every tensor-sized operation below is the same torch kernel with the same
operands in the same order as in :func:`tcd_core.tcd_step` /
:func:`tcd_core.predict_original_and_noise` (and hence the reference). Only where the results go
differs: temporaries are written in place with ``out=`` instead of into fresh tensors (never with
the ``x.mul_(c)`` methods: for half dtypes ``x.mul_(c)`` with a float32 0-d ``c`` rounds
differently from ``c * x``, while ``torch.mul(c, x, out=x)`` is the same kernel as ``c * x``).
``tests/diffusers/test_diffusers_core_delegation.py`` checks this module against
``tcd_core.tcd_step`` bit for bit for every prediction type and float dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from tcd_core import intermediate_timestep


class StepCoefficients(NamedTuple):
    """The 0-d float32 coefficients of one TCD step t → s → p (names follow tcd_core.step).

    ``param_a``/``param_b`` are the parameterisation's coefficients: for ``epsilon``
    (√(1−ᾱₜ), √ᾱₜ) computed with ``sqrt``; for ``sample`` and ``v_prediction`` (ᾱₜ**0.5,
    (1−ᾱₜ)**0.5) computed with ``**``, exactly as :func:`tcd_core.predict_original_and_noise`.
    """

    param_a: torch.Tensor
    param_b: torch.Tensor
    sqrt_alpha_s: torch.Tensor
    sqrt_beta_s: torch.Tensor
    sqrt_ratio: torch.Tensor
    sqrt_one_minus_ratio: torch.Tensor


def step_coefficients(
    alphas_cumprod: torch.Tensor,
    timestep: int,
    prev_timestep: int,
    eta: float,
    prediction_type: str,
) -> StepCoefficients:
    """The coefficients the core's step computes, from host integers t and p and a host η."""
    s = int(intermediate_timestep(prev_timestep, eta))
    alpha_prod_t = alphas_cumprod[timestep]
    alpha_prod_p = alphas_cumprod[prev_timestep]
    alpha_prod_s = alphas_cumprod[s]
    beta_prod_s = 1 - alpha_prod_s
    beta_prod_t = 1 - alpha_prod_t
    if prediction_type == "epsilon":
        param_a, param_b = torch.sqrt(beta_prod_t), torch.sqrt(alpha_prod_t)
    else:
        param_a, param_b = alpha_prod_t**0.5, beta_prod_t**0.5
    ratio = alpha_prod_p / alpha_prod_s
    return StepCoefficients(
        param_a,
        param_b,
        torch.sqrt(alpha_prod_s),
        torch.sqrt(beta_prod_s),
        torch.sqrt(ratio),
        torch.sqrt(1 - ratio),
    )


def noised_sample(
    c: StepCoefficients, model_output: torch.Tensor, sample: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_s = √ᾱₛ·x̂₀ + √(1−ᾱₛ)·ε̂ (``pred_noised_sample``), and a scratch tensor of its shape and
    dtype that :func:`renoise` may use as its output. ``model_output`` and ``sample`` share a
    floating dtype and a shape."""
    if prediction_type in ("epsilon", "sample"):
        # epsilon: x0 = (x - √(1-ᾱt)·ε) / √ᾱt, eps = ε
        # sample:  eps = (x - ᾱt**.5·x0) / (1-ᾱt)**.5, x0 = model_output
        buf = torch.mul(c.param_a, model_output)
        torch.sub(sample, buf, out=buf)
        torch.div(buf, c.param_b, out=buf)
        if prediction_type == "epsilon":  # buf = x0
            x_s = torch.mul(c.sqrt_alpha_s, buf)
            torch.mul(c.sqrt_beta_s, model_output, out=buf)
        else:  # buf = eps
            x_s = torch.mul(c.sqrt_alpha_s, model_output)
            torch.mul(c.sqrt_beta_s, buf, out=buf)
    else:  # v_prediction
        # x0 = ᾱt**.5·x - (1-ᾱt)**.5·v ; eps = ᾱt**.5·v + (1-ᾱt)**.5·x
        buf = torch.mul(c.param_a, sample)
        tmp = torch.mul(c.param_b, model_output)
        torch.sub(buf, tmp, out=buf)
        x_s = torch.mul(c.sqrt_alpha_s, buf)
        torch.mul(c.param_a, model_output, out=buf)
        torch.mul(c.param_b, sample, out=tmp)
        torch.add(buf, tmp, out=buf)
        torch.mul(c.sqrt_beta_s, buf, out=buf)
    torch.add(x_s, buf, out=x_s)  # √ᾱs·x0 + √(1-ᾱs)·eps
    return x_s, buf


def renoise(
    c: StepCoefficients, x_s: torch.Tensor, noise: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """x_p = √r·x_s + √(1−r)·z with r = ᾱₚ/ᾱₛ, written into ``out``; ``noise`` is overwritten."""
    torch.mul(c.sqrt_ratio, x_s, out=out)
    torch.mul(c.sqrt_one_minus_ratio, noise, out=noise)
    return torch.add(out, noise, out=out)
