"""The SIGMAS of diffusers' TCD plan: what a UI feeds :func:`~tcd_kdiffusion.sample_tcd`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tcd_core import TCDConfig, tcd_timesteps

from .schedule import Table, table_from_alphas_cumprod

__all__ = ["get_sigmas_tcd"]


@functools.lru_cache(maxsize=16)
def _config(num_train_timesteps: int, original_inference_steps: Any) -> TCDConfig:
    return TCDConfig(
        num_train_timesteps=num_train_timesteps, original_inference_steps=original_inference_steps
    )


def get_sigmas_tcd(
    num_inference_steps: int | None,
    alphas_cumprod: Any,
    *,
    original_inference_steps: int = 50,
    strength: float = 1.0,
    timesteps: Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """σ_t = √((1−ᾱ_t)/ᾱ_t) for each timestep t of diffusers' TCD plan, then a trailing 0.

    The plan is :func:`tcd_core.tcd_timesteps`, i.e. diffusers' ``TCDScheduler.set_timesteps``:
    the same integers, the same ``ValueError``\\ s and the same warnings (logged on the
    ``tcd_core`` logger). ``original_inference_steps`` plays the part of the scheduler's
    *config* value, so

    ``get_sigmas_tcd(n, ac, original_inference_steps=k, strength=s)``

    gives the σ's of ``TCDScheduler(original_inference_steps=k).set_timesteps(n, strength=s)``
    (default: ``TCDScheduler().set_timesteps(n)``, the plan every diffusers user gets:
    [999, 759, 499, 259] for 4 steps). diffusers builds a different grid when the argument is
    passed to ``set_timesteps`` itself (``set_timesteps(4, original_inference_steps=50)`` gives
    [999, 749, 499, 249]); pass those integers as ``timesteps`` to get that plan here.
    ``strength`` < 1 gives the image-to-image tail of the grid; custom ``timesteps`` are
    trimmed by it as diffusers trims them.

    σ is computed in float64 from the table's values and rounded to float32 (from diffusers'
    float32 table: the σ's k-diffusion's wrappers compute; from
    :func:`~tcd_kdiffusion.alphas_cumprod_from_sigmas` of a σ table: that table's own σ's). The
    number of training timesteps N is ``len(alphas_cumprod)``.

    Args:
        num_inference_steps: n, or None with ``timesteps``.
        alphas_cumprod: the model's ᾱ table (tensor, array or sequence). From a σ table
            (ComfyUI): :func:`~tcd_kdiffusion.alphas_cumprod_from_sigmas`.
        original_inference_steps: the distillation grid's length (the scheduler config's value).
        strength: in (0, 1].
        timesteps: custom descending integer timesteps instead of ``num_inference_steps``.
        device: where the result lives.

    Returns:
        A float32 1-D tensor of length (number of steps + 1), decreasing, ending in 0.

    Raises:
        ValueError: the plan's errors (see :func:`tcd_core.tcd_timesteps`), a malformed table,
            or a planned timestep whose ᾱ is 0 (σ = ∞: a zero-terminal-SNR table cannot be
            sampled in σ space; clamp its last ᾱ to a tiny positive value as ComfyUI does).

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> ac = alphas_cumprod(TCDConfig())
        >>> [round(s, 4) for s in get_sigmas_tcd(4, ac).tolist()]
        [14.6146, 4.2606, 1.6129, 0.7194, 0.0]
    """
    table = table_from_alphas_cumprod(alphas_cumprod, "`alphas_cumprod`")  # validated, cached
    if timesteps is None:
        host = _standard_sigmas(table, num_inference_steps, original_inference_steps, strength)
    else:  # custom plans are not cached: the core logs the reference's warnings on every call
        config = _config(len(table.alphas_cumprod), original_inference_steps)
        plan = tcd_timesteps(config, num_inference_steps, timesteps=timesteps, strength=strength)
        host = _plan_sigmas(table.alphas_cumprod, plan.timesteps)
    return torch.from_numpy(host.copy()).to(device)


@functools.lru_cache(maxsize=64, typed=True)
def _standard_sigmas(
    table: Table, num_inference_steps: Any, original_inference_steps: Any, strength: Any
) -> np.ndarray:
    """The σ's of a standard plan (no warnings to log), cached: a UI asks for the same plan call
    after call. ``typed``: 4 and 4.0 (or True) are different arguments, as for the core."""
    config = _config(len(table.alphas_cumprod), original_inference_steps)
    plan = tcd_timesteps(config, num_inference_steps, strength=strength)
    host = _plan_sigmas(table.alphas_cumprod, plan.timesteps)
    host.flags.writeable = False
    return host


def _plan_sigmas(ac: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
    """float32 σ_t = √((1−ᾱ_t)/ᾱ_t) (float64 maths) for the plan's timesteps, then 0."""
    picked = ac[timesteps]
    if np.any(picked <= 0):
        bad = timesteps[picked <= 0].tolist()
        raise ValueError(
            f"`alphas_cumprod` is 0 at timestep(s) {bad} of the plan: σ = √((1−ᾱ)/ᾱ) is infinite "
            f"there (a zero-terminal-SNR schedule); clamp those ᾱ to a tiny positive value "
            f"(ComfyUI uses 4.8973451890853435e-08) to sample in σ space"
        )
    sigmas = np.sqrt((1.0 - picked) / picked).astype(np.float32)
    return np.append(sigmas, np.float32(0.0))
