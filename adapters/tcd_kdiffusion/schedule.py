"""σ ↔ ᾱ ↔ t: the discrete VP noise schedule in k-diffusion's σ convention.

k-diffusion and the UIs built on it (ComfyUI, A1111, Forge) describe a discrete DDPM schedule by
its noise levels σ_t = √((1−ᾱ_t)/ᾱ_t), t = 0 … N−1, and scale latents as x = x_t/√ᾱ_t. TCD needs
the integer timesteps behind the σ's (its intermediate timestep s = ⌊(1−η)·p⌋ is an integer), so
this module finds the model's table and maps each σ to the nearest entry in log σ, as
k-diffusion's ``sigma_to_t(quantize=True)`` and ComfyUI's ``model_sampling.timestep`` do.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["SIGMA_RTOL", "alphas_cumprod_from_sigmas", "sigmas_from_alphas_cumprod"]

SIGMA_RTOL = 1e-5
"""How far (relative) a σ may lie from its table entry and still count as that entry: rounding
only, the tolerance ComfyUI uses to decide that a schedule starts at the model's σ_max. Near
ᾱ = 1 a σ computed from a float32 ᾱ is less precise than that (1 − ᾱ keeps few digits), so each
entry also allows the change of σ that two float32 ulps of ᾱ_t make."""

# How deep to look for the table through wrappers' ``inner_model`` attributes: ComfyUI passes
# KSamplerX0Inpaint → CFGGuider → BaseModel (with .model_sampling); A1111 and Forge pass a CFG
# denoiser → k-diffusion / Forge schedule wrapper (with .sigmas and .log_sigmas).
_MAX_DEPTH = 6


def host_1d(values: Any, label: str, what: str = "a 1-D sequence of numbers") -> np.ndarray:
    """A 1-D float64 host copy of a tensor, array or sequence (ValueError naming ``label``: an
    argument's name in backticks, or a model attribute's path; ``what`` it must be)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{label} must be {what}: {err}") from None
    if out.ndim != 1 or out.size == 0:
        raise ValueError(f"{label} must be a non-empty 1-D tensor, got shape {out.shape}")
    return out


def alphas_cumprod_from_sigmas(sigmas: Any) -> torch.Tensor:
    """ᾱ_t = 1/(1+σ_t²) for a model's σ table, as a float64 CPU tensor.

    ComfyUI keeps only ``model_sampling.sigmas`` (no ``alphas_cumprod`` buffer); this recovers the
    table :func:`~tcd_kdiffusion.get_sigmas_tcd` and :func:`~tcd_kdiffusion.sample_tcd` work from.
    It stays in float64 so that :func:`~tcd_kdiffusion.get_sigmas_tcd` gives back the model's own
    σ's (a float32 ᾱ close to 1 keeps too few digits of 1 − ᾱ for that).

    Example:
        >>> import torch
        >>> ac = alphas_cumprod_from_sigmas(torch.tensor([0.5, 1.0, 3.0]))
        >>> ac.tolist(), sigmas_from_alphas_cumprod(ac).tolist()
        ([0.8, 0.5, 0.1], [0.5, 1.0, 3.0])
    """
    sig = host_1d(sigmas, "`sigmas`")
    if not np.all(np.isfinite(sig)) or np.any(sig < 0):
        raise ValueError("`sigmas` must be finite and non-negative")
    return torch.from_numpy(1.0 / (1.0 + sig * sig))


def sigmas_from_alphas_cumprod(alphas_cumprod: Any) -> torch.Tensor:
    """σ_t = √((1−ᾱ_t)/ᾱ_t) (float64 maths on the table's values, float32 result on the CPU);
    ᾱ = 0 gives σ = inf.

    Example:
        >>> import torch
        >>> sigmas_from_alphas_cumprod(torch.tensor([1.0, 0.5, 0.2])).tolist()
        [0.0, 1.0, 2.0]
    """
    ac = check_alphas_cumprod(alphas_cumprod, "alphas_cumprod")
    with np.errstate(divide="ignore"):
        return torch.from_numpy(np.sqrt((1.0 - ac) / ac).astype(np.float32))


def check_alphas_cumprod(alphas_cumprod: Any, name: str) -> np.ndarray:
    """The ᾱ table as a float64 host copy of its values, checked to lie in [0, 1]."""
    ac = host_1d(alphas_cumprod, f"`{name}`")
    _check_alphas(ac, f"`{name}`")
    return ac


def _check_alphas(ac: np.ndarray, label: str) -> None:
    if not np.all(np.isfinite(ac)) or np.any(ac < 0) or np.any(ac > 1):
        raise ValueError(f"{label} must hold values ᾱ in [0, 1] (a cumulative product of alphas)")


def _check_sigmas(sig: np.ndarray, label: str) -> None:
    if np.any(np.isnan(sig)) or np.any(sig < 0):
        raise ValueError(f"{label} must hold non-negative σ's")


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
    """A resolved noise schedule (host arrays). Hashed by identity: tables are cached per
    source values, and the sampler caches its plans per table.

    Attributes:
        alphas_cumprod: float64 ᾱ, one entry per training timestep, at the precision of the
            source: a float32 table's values exactly, or 1/(1+σ²) of a σ table (ComfyUI's σ's
            are float32 roundings of float64 maths; a float32 ᾱ near 1 would keep too few
            digits of 1 − ᾱ to agree with them).
        log_sigmas: float64 log σ of the table used to quantize σ's (the model's own σ's when it
            has them, so that σ → t agrees with the model wrapper's own mapping).
        log_tolerance: per entry, how far in log σ a σ may lie and still be that entry.
        source: where the table came from, for error messages.
        lcm_boundary: the model's denoiser returns ComfyUI's LCM boundary condition
            c_skip(t)·x + c_out(t)·x̂₀ (the ``lcm`` patch's type), which the sampler undoes.
    """

    alphas_cumprod: np.ndarray
    log_sigmas: np.ndarray
    log_tolerance: np.ndarray
    source: str
    lcm_boundary: bool = False


def _table(
    ac64: np.ndarray, log_sigmas: np.ndarray, source: str, lcm_boundary: bool = False
) -> Table:
    """Tolerances: SIGMA_RTOL plus the change of log σ = ½·log((1−ᾱ)/ᾱ) that two float32 ulps
    of ᾱ make (ulp/(ᾱ(1−ᾱ))), capped at a quarter of the distance to the neighbouring entries
    so that no σ is within tolerance of two entries."""
    ac32 = ac64.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        rounding = np.spacing(ac32).astype(np.float64) / (ac64 * (1.0 - ac64))
        tol = SIGMA_RTOL + np.where(np.isfinite(rounding), rounding, 0.0)
        gaps = np.abs(np.diff(log_sigmas))
        gaps = np.where(np.isfinite(gaps), gaps, np.inf)
    nearest_gap = np.minimum(np.append(gaps, np.inf), np.insert(gaps, 0, np.inf))
    tol = np.minimum(tol, 0.25 * nearest_gap)
    tol = np.where(np.isfinite(log_sigmas), tol, 0.0)
    return Table(ac64, log_sigmas, tol, source, lcm_boundary)


def _sigma_table(obj: Any) -> Any:
    """``obj.sigmas`` when ``obj`` is a σ-table holder (it also has ``log_sigmas``); else None.

    Both attributes are required: ComfyUI's KSamplerX0Inpaint also has a ``sigmas`` attribute,
    but it holds the sampling schedule, not the model's table.
    """
    try:
        sigmas, log_sigmas = getattr(obj, "sigmas", None), getattr(obj, "log_sigmas", None)
    except Exception:  # a property that cannot be evaluated here is no table
        return None
    if not (isinstance(sigmas, torch.Tensor) and isinstance(log_sigmas, torch.Tensor)):
        return None
    return sigmas if sigmas.ndim == 1 and sigmas.numel() > 1 else None


@functools.lru_cache(maxsize=8)
def _cached_table(
    kind: str, values: bytes, source: str, lcm_boundary: bool = False, only: bytes | None = None
) -> Table:
    """A Table from the float64 bytes of a σ or ᾱ table, validated; cached, since a UI samples
    with the same table call after call (the tables are small, their bytes are the key; a
    ValueError is raised again on every call, never cached). ``only``: the int64 bytes of the
    timesteps a σ may map to (the others are never matched)."""
    host = np.frombuffer(values, dtype=np.float64)
    with np.errstate(divide="ignore"):
        if kind == "sigmas":
            _check_sigmas(host, source)
            ac, log_sigmas = 1.0 / (1.0 + host * host), np.log(host)
        else:
            _check_alphas(host, source)
            ac, log_sigmas = host, 0.5 * np.log((1.0 - host) / host)
    if only is not None:
        keep = np.zeros(len(host), dtype=bool)
        keep[np.frombuffer(only, dtype=np.int64)] = True
        log_sigmas = np.where(keep, log_sigmas, np.inf)
    return _table(ac, log_sigmas, source, lcm_boundary)


def table_from_sigmas(
    sigmas: Any, source: str, *, lcm_boundary: bool = False, only: Any = None
) -> Table:
    """The Table of a σ table (ᾱ = 1/(1+σ²) in float64), cached by value. ``only``: the
    timesteps the model evaluates, when σ's may map to those alone (the lcm patch's)."""
    only_bytes = None if only is None else np.asarray(only, dtype=np.int64).tobytes()
    return _cached_table(
        "sigmas", host_1d(sigmas, source).tobytes(), source, lcm_boundary, only_bytes
    )


def table_from_alphas_cumprod(alphas_cumprod: Any, source: str) -> Table:
    """The Table of an ᾱ table, validated, cached by value."""
    return _from_alphas_cumprod(alphas_cumprod, source)


def _from_alphas_cumprod(alphas_cumprod: Any, source: str) -> Table:
    return _cached_table("alphas_cumprod", host_1d(alphas_cumprod, source).tobytes(), source)


def timesteps_of(sigmas: np.ndarray, table: Table, name: str = "`sigmas`") -> np.ndarray:
    """For each σ > 0 (host float64), the training timestep whose σ is nearest in log σ.

    ValueError naming the first σ that is not its entry up to rounding: a relative difference
    above :data:`SIGMA_RTOL` plus what float32 rounding of ᾱ_t moves σ_t by (1.5e-4 at
    σ = 0.0146, 4e-8 at σ = 1), capped at a quarter of the distance to the neighbours.
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if sigmas.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not (np.all(np.isfinite(sigmas)) and np.all(sigmas > 0)):
        raise ValueError(f"{name} must be finite σ's > 0, got {sigmas.tolist()}")
    dist = np.abs(np.log(sigmas)[:, None] - table.log_sigmas[None, :])
    ts = np.argmin(dist, axis=1)
    ok = dist[np.arange(len(ts)), ts] <= table.log_tolerance[ts]
    if not np.all(ok):
        i = int(np.argmin(ok))
        t = int(ts[i])
        nearest = math.exp(float(table.log_sigmas[t]))
        raise ValueError(
            f"{name}[{i}] = {sigmas[i]:.7g} is not a σ of the model's noise schedule "
            f"({table.source}): the nearest is σ = {nearest:.7g} at timestep {t}. TCD steps "
            f"between the schedule's integer timesteps; build the sigmas with get_sigmas_tcd "
            f"(or take them from the table), not from a continuous scheduler such as Karras'"
        )
    return ts.astype(np.int64)


def timestep_of(sigma: float, table: Table, where: str) -> int:
    """:func:`timesteps_of` for one σ (``where`` names it in the error)."""
    if not (isinstance(sigma, numbers.Real) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{where} must be a finite σ > 0, got {sigma!r}")
    try:
        return int(timesteps_of(np.asarray([sigma]), table)[0])
    except ValueError as err:
        raise ValueError(str(err).replace("`sigmas`[0]", where, 1)) from None
