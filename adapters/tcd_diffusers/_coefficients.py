"""The allocation-lean tensor updates of the diffusers adapter (private): TCD's, then LCM's.

This module is the adapter's fast path. The 0-d coefficients come from
:func:`tcd_core.step_coefficients` (the adapter caches them per (t, p, η), since they cost more
than the update itself on a small latent); the functions here apply :func:`tcd_core.tcd_update`'s
operations to latent-sized tensors, in the core's order, writing temporaries in place with
``out=`` instead of into fresh tensors. That saves allocations on large latents and is the only
thing this module adds: it is the core's update, executed with torch's ``out=`` (which the Array
API does not have).

Bit-identity contract: every tensor-sized operation below is the same torch kernel with the same
operands in the same order as in :func:`tcd_core.tcd_update` /
:func:`tcd_core.original_and_noise_from_roots` (and hence the reference). Never use the
``x.mul_(c)`` methods: for half dtypes ``x.mul_(c)`` with a float32 0-d ``c`` rounds differently
from ``c * x``, while ``torch.mul(c, x, out=x)`` is the same kernel as ``c * x``.
``tests/diffusers/test_diffusers_core_delegation.py`` checks this module against
``tcd_core.tcd_step`` bit for bit for every prediction type and float dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from tcd_core import LCMCoefficients, StepCoefficients


def noised_sample(
    c: StepCoefficients, model_output: torch.Tensor, sample: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_s = √ᾱₛ·x̂₀ + √(1−ᾱₛ)·ε̂ (``pred_noised_sample``), and a scratch tensor of its shape and
    dtype that :func:`renoise` may use as its output. ``model_output`` and ``sample`` share a
    floating dtype and a shape."""
    if prediction_type == "epsilon":
        # x0 = (x - √(1-ᾱt)·ε) / √ᾱt, eps = ε
        buf = torch.mul(c.sqrt_beta_t, model_output)
        torch.sub(sample, buf, out=buf)
        torch.div(buf, c.sqrt_alpha_t, out=buf)  # buf = x0
        x_s = torch.mul(c.sqrt_alpha_s, buf)
        torch.mul(c.sqrt_beta_s, model_output, out=buf)
    elif prediction_type == "sample":
        # x0 = model_output, eps = (x - √ᾱt·x0) / √(1-ᾱt)
        buf = torch.mul(c.sqrt_alpha_t, model_output)
        torch.sub(sample, buf, out=buf)
        torch.div(buf, c.sqrt_beta_t, out=buf)  # buf = eps
        x_s = torch.mul(c.sqrt_alpha_s, model_output)
        torch.mul(c.sqrt_beta_s, buf, out=buf)
    else:  # v_prediction
        # x0 = √ᾱt·x - √(1-ᾱt)·v ; eps = √ᾱt·v + √(1-ᾱt)·x
        buf = torch.mul(c.sqrt_alpha_t, sample)
        tmp = torch.mul(c.sqrt_beta_t, model_output)
        torch.sub(buf, tmp, out=buf)
        x_s = torch.mul(c.sqrt_alpha_s, buf)
        torch.mul(c.sqrt_alpha_t, model_output, out=buf)
        torch.mul(c.sqrt_beta_t, sample, out=tmp)
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


# ---------------------------------------------------------------------- LCM (Algorithm 1)
# The same contract for :func:`tcd_core.lcm_update`: its operations, operands and order, with
# ``out=``. c_skip/c_out are Python floats for an ``int`` timestep (the reference's operand type
# then) and 0-d float32 tensors for a tensor timestep; a Python number goes second in
# ``torch.mul``, which is the kernel ``c * x`` dispatches to.


def _times(c: Any, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(c, torch.Tensor):
        return torch.mul(c, x, out=out)
    return torch.mul(x, c, out=out)


def lcm_denoised(
    c: LCMCoefficients, model_output: torch.Tensor, sample: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """denoised = c_out·x̂₀ + c_skip·x_t, and a scratch tensor of its shape and dtype that
    :func:`lcm_renoise` may use as its output. ``model_output`` and ``sample`` share a floating
    dtype and a shape."""
    scratch: torch.Tensor | None
    if prediction_type == "epsilon":
        # x0 = (x - √(1-ᾱt)·ε) / √ᾱt
        scratch = torch.mul(c.sqrt_beta_t, model_output)
        torch.sub(sample, scratch, out=scratch)
        x0 = torch.div(scratch, c.sqrt_alpha_t, out=scratch)
    elif prediction_type == "sample":
        x0, scratch = model_output, None
    else:  # v_prediction: x0 = √ᾱt·x - √(1-ᾱt)·v
        scratch = torch.mul(c.sqrt_alpha_t, sample)
        tmp = torch.mul(c.sqrt_beta_t, model_output)
        x0 = torch.sub(scratch, tmp, out=scratch)
    denoised = _times(c.c_out, x0)
    scratch = _times(c.c_skip, sample, out=scratch)
    return torch.add(denoised, scratch, out=denoised), scratch


def lcm_renoise(
    c: LCMCoefficients, denoised: torch.Tensor, noise: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """√ᾱ_prev·denoised + √(1−ᾱ_prev)·z, written into ``out``; ``noise`` is overwritten."""
    torch.mul(c.sqrt_alpha_prev, denoised, out=out)
    torch.mul(c.sqrt_beta_prev, noise, out=noise)
    return torch.add(out, noise, out=out)
