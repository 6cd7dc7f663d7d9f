"""ComfyUI's ``model_sampling`` objects, read without importing ComfyUI.

ComfyUI describes a model's noise process with a ``model_sampling`` object whose class mixes a
*base* (the σ table and the σ ↔ timestep mapping) with a *type* (how x, σ and the model output
relate), for example ``class ModelSampling(ModelSamplingDiscrete, EPS)``. The classes are made at
run time (``comfy.model_base.model_sampling``, the ``ModelSampling*`` patch nodes) and custom nodes
subclass them, so they are recognised here by the names along the class's MRO, the names
``comfy/model_sampling.py`` and ``comfy_extras/nodes_model_advanced.py`` give them:

====================================  =====================================================
class in the MRO                       what :func:`~tcd_kdiffusion.sample_tcd` does
====================================  =====================================================
``CONST`` (any base: ``Model‐        TCD on the flow path x = (1−σ)·x₀ + σ·ε, σ ComfyUI's
SamplingDiscreteFlow``, ``Model‐      own (SD3, SD3.5, AuraFlow, FLUX, Wan, HunyuanVideo,
SamplingFlux``)                        LTXV, Lumina, HiDream, Qwen-Image, …)
``COSMOS_RFLOW``                      TCD on the flow path, σ_flow = σ/(1+σ) (Cosmos)
``ModelSamplingDiscreteEDM``,         ValueError: continuous time, no training timesteps
``StableCascadeSampling``,
``ModelSamplingContinuousV``,
``ModelSamplingContinuousEDM``
``ModelSamplingDiscreteDistilled``    TCD on the full 1000-entry table, recovered from the
(the ``lcm`` patch)                   model's settings and checked against its 50 σ's
``LCM`` (the ``lcm`` patch's type)    the consistency boundary condition is undone exactly
``ModelSamplingDiscrete``             TCD on its σ table (SD 1.x/2.x, SDXL, zsnr; ε, v, x₀)
anything else                          its ``sigmas`` read as a discrete VP table
====================================  =====================================================
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any

import numpy as np
import torch

from .schedule import (
    _MAX_DEPTH,
    Table,
    _sigma_table,
    host_1d,
    table_from_alphas_cumprod,
    table_from_sigmas,
)

__all__ = [
    "FlowSchedule",
    "model_sampling_sigmas",
    "resolve_model_sampling",
    "resolve_schedule",
]

#: ComfyUI's LCM type (``comfy_extras.nodes_model_advanced.LCM``): the boundary condition
#: c_skip·x + c_out·x̂₀ with τ = 10·t and σ_data = 0.5.
LCM_TIMESTEP_SCALING = 10.0
LCM_SIGMA_DATA = 0.5

# Bases whose time is continuous: TCD's intermediate s = ⌊(1−γ)·p⌋ has no timesteps to land on.
_CONTINUOUS = (
    ("ModelSamplingDiscreteEDM", "an EDM timestep ¼·log σ"),
    ("StableCascadeSampling", "Stable Cascade's continuous cosine time"),
    ("ModelSamplingContinuousV", "a continuous time 2/π·atan σ"),
    ("ModelSamplingContinuousEDM", "a continuous EDM σ (timestep ¼·log σ)"),
)


@dataclasses.dataclass(frozen=True)
class FlowSchedule:
    """A flow-matching model sampling: x_flow = (1−σ_f)·x₀ + σ_f·ε.

    Attributes:
        scaling: ``"const"`` (ComfyUI's CONST: the sampler's x is x_flow and its σ is σ_f) or
            ``"cosmos"`` (COSMOS_RFLOW: x = x₀ + σ·ε, σ_f = σ/(1+σ), x_flow = x/(1+σ)).
        source: where it was found, for error messages.
    """

    scaling: str
    source: str


def _class_names(obj: Any) -> tuple[str, ...]:
    return tuple(cls.__name__ for cls in type(obj).__mro__)


def resolve_model_sampling(
    model_sampling: Any, source: str = "model_sampling"
) -> Table | FlowSchedule:
    """What :func:`~tcd_kdiffusion.sample_tcd` samples a ComfyUI ``model_sampling`` with: a
    :class:`~tcd_kdiffusion.schedule.Table` (discrete VP timesteps) or a :class:`FlowSchedule`;
    ValueError where TCD has no right answer (see the module's table).
    """
    names = _class_names(model_sampling)
    cls = type(model_sampling).__name__
    if "CONST" in names:
        return FlowSchedule("const", source)
    if "COSMOS_RFLOW" in names:
        return FlowSchedule("cosmos", source)
    for base, time in _CONTINUOUS:
        if base in names:
            raise ValueError(
                f"TCD cannot sample this model: its model_sampling ({cls}, a {base}) has "
                f"{time}, and TCD's intermediate point s = ⌊(1−γ)·p⌋ needs the discrete training "
                f"timesteps of a DDPM model (ModelSamplingDiscrete: SD 1.x/2.x, SDXL) or the "
                f"flow time of a flow-matching one (CONST: SD3, FLUX, Wan, …). Sample this model "
                f"with one of ComfyUI's own samplers"
            )
    lcm = "LCM" in names
    if "ModelSamplingDiscreteDistilled" in names:
        return _distilled_table(model_sampling, source, lcm)
    sigmas = getattr(model_sampling, "sigmas", None)
    if not isinstance(sigmas, torch.Tensor):
        raise ValueError(f"{source} ({cls}) has no `sigmas` table")
    return table_from_sigmas(sigmas, f"{source}.sigmas", lcm_boundary=lcm)


def resolve_schedule(model: Any, alphas_cumprod: Any = None) -> Table | FlowSchedule:
    """The model's noise schedule: ``alphas_cumprod`` when given, else found on the model.

    Looked for on the model and its chain of ``inner_model`` wrappers, nearest first: ComfyUI's
    ``model_sampling`` (read by :func:`~tcd_kdiffusion.model_sampling.resolve_model_sampling`:
    a discrete table, a flow-matching schedule, or a ValueError), a k-diffusion
    ``DiscreteSchedule`` or Forge schedule wrapper (``sigmas`` with ``log_sigmas``), or an
    ``alphas_cumprod`` tensor (A1111's LDM model).
    """

    if alphas_cumprod is not None:
        return table_from_alphas_cumprod(alphas_cumprod, "`alphas_cumprod`")
    obj, path = model, "model"
    for _ in range(_MAX_DEPTH):
        if obj is None:
            break
        try:
            sampling = getattr(obj, "model_sampling", None)
        except Exception:
            sampling = None
        if sampling is not None and isinstance(getattr(sampling, "sigmas", None), torch.Tensor):
            return resolve_model_sampling(sampling, f"{path}.model_sampling")
        sigmas = _sigma_table(obj)
        if sigmas is not None:
            return table_from_sigmas(sigmas, f"{path}.sigmas")
        try:
            ac = getattr(obj, "alphas_cumprod", None)
        except Exception:
            ac = None
        if isinstance(ac, torch.Tensor) and ac.ndim == 1 and ac.numel() > 1:
            return table_from_alphas_cumprod(ac, f"{path}.alphas_cumprod")
        try:
            obj = getattr(obj, "inner_model", None)
        except Exception:
            obj = None
        path += ".inner_model"
    raise ValueError(
        "no noise schedule found: pass `alphas_cumprod` (the model's ᾱ table), or a model that "
        "carries its table the way k-diffusion (`.sigmas`/`.log_sigmas`) or ComfyUI "
        "(`.inner_model.inner_model.model_sampling`) wrappers do"
    )


# --------------------------------------------------------------------------------------------
# The lcm patch: ModelSamplingDiscreteDistilled keeps 50 of the 1000 σ's


def _beta_schedule(kind: str, n: int, start: float, end: float) -> np.ndarray:
    """float64 betas of ComfyUI's named beta schedules (its ``make_beta_schedule`` names; the
    maths of DDPM's schedules: "linear" is linear in √β, diffusers' "scaled_linear")."""
    if kind == "linear":
        return np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
    if kind == "sqrt_linear":
        return np.linspace(start, end, n, dtype=np.float64)
    if kind == "sqrt":
        return np.linspace(start, end, n, dtype=np.float64) ** 0.5
    if kind == "cosine":  # Nichol & Dhariwal's ᾱ(t) = cos²((t/n + s)/(1 + s)·π/2), s = 8e-3
        s = 8e-3
        f = np.cos((np.arange(n + 1, dtype=np.float64) / n + s) / (1 + s) * np.pi / 2) ** 2
        f = f / f[0]
        return np.clip(1 - f[1:] / f[:-1], 0, 0.999)
    # "squaredcos_cap_v2": the same ᾱ(t) with s = 0.008 through β_i = 1 − ᾱ((i+1)/n)/ᾱ(i/n)
    bar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - bar((i + 1) / n) / bar(i / n), 0.999) for i in range(n)])


_BETA_SCHEDULES = ("linear", "sqrt_linear", "sqrt", "cosine", "squaredcos_cap_v2")

# ComfyUI's zero-terminal-SNR schedules end at this ᾱ instead of 0 (σ stays finite).
_ZSNR_LAST_ALPHA_CUMPROD = 4.8973451890853435e-08


def _zero_terminal_snr(sigmas: np.ndarray) -> np.ndarray:
    """Lin et al.'s rescaling of √ᾱ to end at 0 (then ᾱ_T = the tiny value above), on σ's."""
    root = (1 / (sigmas * sigmas + 1)) ** 0.5
    first, last = root[0], root[-1]
    root = (root - last) * (first / (first - last))
    ac = root**2
    ac[-1] = _ZSNR_LAST_ALPHA_CUMPROD
    return ((1 - ac) / ac) ** 0.5


def _full_sigmas(kind: str, n: int, start: float, end: float, zsnr: bool) -> np.ndarray:
    ac = np.cumprod(1 - _beta_schedule(kind, n, start, end))
    sigmas = ((1 - ac) / ac) ** 0.5
    return _zero_terminal_snr(sigmas) if zsnr else sigmas


_DISTILLED_CACHE: collections.OrderedDict[tuple[Any, ...], Table] = collections.OrderedDict()


def _distilled_table(ms: Any, source: str, lcm: bool) -> Table:
    """The full table behind the lcm patch's 50 σ's.

    ``ModelSamplingDiscreteDistilled`` keeps the σ's of timesteps 19, 39, …, 999 only, but TCD's
    intermediate timestep s lands anywhere in 0…999. The full table is rebuilt from the
    schedule settings the object keeps (``num_timesteps``, ``linear_start``, ``linear_end``,
    ``zsnr``; each of ComfyUI's beta schedules is tried) and accepted only if it gives back the
    model's own 50 σ's at the timesteps the model's own ``timestep(σ)`` assigns them. Sampling
    σ's must be among those 50 (the model evaluates nothing else).
    """
    try:
        sig = host_1d(ms.sigmas, f"{source}.sigmas")
        n = int(ms.num_timesteps)
        start, end = float(ms.linear_start), float(ms.linear_end)
        zsnr = bool(getattr(ms, "zsnr", False))
    except (AttributeError, TypeError, ValueError) as err:
        raise ValueError(
            f"{source} ({type(ms).__name__}) is an lcm-patched (distilled) model sampling without "
            f"the schedule settings TCD needs to recover its full table: {err}"
        ) from None
    key = (type(ms), sig.tobytes(), n, start, end, zsnr, lcm, source)
    table = _DISTILLED_CACHE.get(key)
    if table is not None:
        _DISTILLED_CACHE.move_to_end(key)
        return table
    with torch.no_grad():
        grid_t = ms.timestep(ms.sigmas.detach().clone())  # the model's own σ → t
    grid = host_1d(grid_t, f"{source}.timestep(sigmas)")
    if not (
        np.all(grid == np.round(grid))
        and np.all(np.diff(grid) > 0)
        and grid[0] >= 0
        and grid[-1] < n
    ):
        raise ValueError(
            f"{source}.timestep maps the model's σ's to {grid.tolist()[:4]}…, not to increasing "
            f"integer timesteps below num_timesteps = {n}"
        )
    index = grid.astype(np.int64)
    found = None
    for kind in _BETA_SCHEDULES:
        with np.errstate(all="ignore"):
            full = _full_sigmas(kind, n, start, end, zsnr).astype(np.float32).astype(np.float64)
        if np.all(np.isfinite(full)) and np.allclose(full[index], sig, rtol=5e-7, atol=0):
            found = full
            break
    if found is None:
        raise ValueError(
            f"{source} ({type(ms).__name__}) is an lcm-patched model sampling whose 50 σ's match "
            f"none of ComfyUI's beta schedules with linear_start={start}, linear_end={end}, "
            f"num_timesteps={n}, zsnr={zsnr}: TCD needs the full table (its intermediate "
            f"timesteps lie between the 50). Remove the ModelSamplingDiscrete 'lcm' patch (TCD "
            f"does not need it)"
        )
    found[index] = sig  # the model's own σ's, bit for bit
    table = table_from_sigmas(
        found, f"{source} (the lcm patch's table, completed)", lcm_boundary=lcm, only=index
    )
    _DISTILLED_CACHE[key] = table
    while len(_DISTILLED_CACHE) > 8:
        _DISTILLED_CACHE.popitem(last=False)
    return table


# --------------------------------------------------------------------------------------------
# SIGMAS for a model sampling (the TCD Sigmas node)


def model_sampling_sigmas(model_sampling: Any, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """The SIGMAS the *TCD Sigmas* node gives for ``model_sampling``: float32, ending in 0.

    * A discrete (VP) model: :func:`~tcd_kdiffusion.get_sigmas_tcd` on its table (the lcm patch's
      completed), ``denoise`` as diffusers' ``strength`` (``steps`` steps over the noised part):
      diffusers' ``TCDScheduler().set_timesteps(steps, strength=denoise)``.
    * A flow model (CONST): the model's own shifted time grid, σ_i = ``percent_to_sigma(i/N)``
      for i < N (ComfyUI's ``simple`` scheduler, without its table rounding; FluxPipeline's plan
      for FLUX). A Cosmos (COSMOS_RFLOW) model: uniform in flow time from its σ_max. With
      ``denoise`` < 1, as ComfyUI's BasicScheduler: N = int(steps/denoise), the last ``steps``
      steps.
    * ``denoise`` = 0: an empty tensor (ComfyUI then returns the latent unchanged).

    Raises:
        ValueError: the model sampling's errors (:func:`resolve_model_sampling`), the TCD plan's.
    """
    from .sigmas import get_sigmas_tcd

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}")
    if not (isinstance(denoise, (int, float)) and 0.0 <= float(denoise) <= 1.0):
        raise ValueError(f"`denoise` must be in [0, 1], got {denoise!r}")
    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32)
    schedule = resolve_model_sampling(model_sampling)
    if isinstance(schedule, Table):
        return get_sigmas_tcd(steps, schedule.alphas_cumprod, strength=float(denoise))
    total = steps if denoise >= 1.0 else int(steps / denoise)
    if schedule.scaling == "const":
        to_sigma = getattr(model_sampling, "percent_to_sigma", None)
        if not callable(to_sigma):
            raise ValueError(
                f"this flow model's model sampling ({type(model_sampling).__name__}) has no "
                f"percent_to_sigma to build its time grid from: use one of ComfyUI's schedulers "
                f"(simple, beta) for its sigmas"
            )
        grid = [float(to_sigma(i / total)) for i in range(total)]
    else:
        top = float(model_sampling.sigma_max)
        top = top / (1 + top)
        flow = [top * (1 - i / total) for i in range(total)]
        grid = [f / (1 - f) for f in flow]
    out = torch.tensor(grid + [0.0], dtype=torch.float32)
    return out[-(steps + 1) :]
