"""``sample_tcd``: TCD's Strategic Stochastic Sampling as a k-diffusion sampler.

How a step is computed (the fast path). In k-diffusion's scaling a TCD step t → s → p is linear
in the step's input x, the denoiser's x̂₀ and the noise z:

    x_t = √ᾱ_t·x                                  (into diffusers' scaling)
    ε̂   = (x_t − √ᾱ_t·x̂₀)/√(1−ᾱ_t)                (x̂₀ as an x₀-prediction)
    x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂                     (the DDIM jump to s)
    x_p = √(ᾱ_p/ᾱ_s)·x_s + √(1−ᾱ_p/ᾱ_s)·z           (re-noising to p)
    x'  = x_p/√ᾱ_p                                 (back to k-diffusion's scaling)

so x' = a·x + b·x̂₀ + c·z with three numbers per step that depend only on (t, s, p). They are
computed once per plan on the host, by running the core's own step on the basis (x, x̂₀, z):
:func:`tcd_core.step_coefficients` and :func:`tcd_core.tcd_update` in float64, rounded once to
float32 (:func:`_folded_weights`). Each step on the device is then two multiplications and an
addition (two more with noise), into the step's new output and one reused scratch buffer: no
per-step validation, no 0-d tensor arithmetic, no host read. A per-batch η gives (B, 1, …, 1) weights and the very same
operations, so a batch row equals the run with that row's η bit for bit.

The result equals the unfolded step (and diffusers' ``TCDScheduler`` loop) within float32
rounding; tests/kdiffusion measure it against the installed reference.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch

from tcd_core import (
    FLOW,
    TCD,
    TCDConfig,
    check_eta,
    coefficients,
    intermediate_timestep,
    step_coefficients,
    tcd_update,
    update,
)

from .model_sampling import LCM_SIGMA_DATA, LCM_TIMESTEP_SCALING, FlowSchedule, resolve_schedule
from .noise import NoiseSampler, check_step_noise, step_noise_sampler
from .schedule import Table, host_1d, timesteps_of

__all__ = ["sample_tcd"]

# The denoiser returns x̂₀, so in diffusers' terms the step sees an x₀ ("sample") prediction.
_X0_PREDICTION = TCDConfig(prediction_type="sample")

# The basis the host plan runs the core's step on: rows x, x̂₀, z.
_X, _DENOISED, _NOISE = np.eye(3)

_PLAN_CACHE_SIZE = 64


class _Folded(NamedTuple):
    """The folded weights of one (table, sigmas, η)'s steps, prepared on the host (cached;
    never mutated).

    Attributes:
        weights: float32, shape (steps, batch, 3): per step and batch row, (a, b, c) of
            x' = a·x + b·x̂₀ + c·z; batch is 1 for a scalar η.
        scalars: for a scalar η, each step's (a, b, c) as Python floats; else None.
        draws_noise: per step, whether z is drawn (η > 0 and the step does not end at σ = 0).
    """

    weights: np.ndarray
    scalars: tuple[tuple[float, float, float], ...] | None
    draws_noise: tuple[bool, ...]


def _host_sigmas(sigmas: Any) -> np.ndarray:
    """The σ's as a read-only float64 host array, validated (cached by value)."""
    host = host_1d(sigmas, "`sigmas`", "a 1-D tensor of noise levels")
    return _checked_sigmas(host.tobytes())


@functools.lru_cache(maxsize=_PLAN_CACHE_SIZE)
def _checked_sigmas(values: bytes) -> np.ndarray:
    host = np.frombuffer(values, dtype=np.float64)
    if not np.all(np.isfinite(host)) or np.any(host < 0):
        raise ValueError(f"`sigmas` must be finite and non-negative, got {host.tolist()}")
    if np.any(np.diff(host) >= 0):
        i = int(np.argmax(np.diff(host) >= 0))
        raise ValueError(
            f"`sigmas` must be strictly decreasing (k-diffusion's convention: from σ_max down "
            f"to 0), but sigmas[{i}] = {host[i]:.7g} <= sigmas[{i + 1}] = {host[i + 1]:.7g}"
        )
    return host


def _host_eta(eta: Any, batch: int) -> float | np.ndarray:
    """η as a Python float, or a float64 host array with one entry per batch element."""
    if isinstance(eta, bool):
        raise ValueError(f"`eta` must be a number in [0, 1] or a 1-D tensor, got {eta!r}")
    if isinstance(eta, numbers.Real):
        check_eta(float(eta))
        return float(eta)
    if isinstance(eta, torch.Tensor):
        host = eta.detach().to("cpu", torch.float64).numpy()
    elif isinstance(eta, (np.ndarray, np.generic, list, tuple)):
        host = np.asarray(eta, dtype=np.float64)
    else:
        raise ValueError(
            f"`eta` must be a number in [0, 1] or a 1-D tensor, got {type(eta).__name__}"
        )
    if host.ndim == 0:
        check_eta(float(host))
        return float(host)
    if host.ndim != 1 or host.shape[0] != batch:
        raise ValueError(
            f"`eta` must be a number or a 1-D tensor with one entry per batch element "
            f"({batch}), got shape {tuple(host.shape)}"
        )
    if np.any(np.isnan(host)):
        raise ValueError(f"`eta` must be in [0, 1], got {host.tolist()}")
    check_eta(host)
    return host


def _steps(n: int, disable: bool | None) -> Iterable[int]:
    """k-diffusion's progress bar (``trange(n, disable=disable)``); a plain range when it is
    disabled (the same behaviour, without tqdm's per-call cost) or tqdm is not installed."""
    if disable:
        return range(n)
    try:
        from tqdm.auto import trange
    except ImportError:
        return range(n)
    return trange(n, disable=disable)


def _folded_weights(
    alphas_cumprod: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    s: np.ndarray,
    final: np.ndarray,
    dtype: Any = np.float32,
) -> np.ndarray:
    """(a, b, c) of x' = a·x + b·x̂₀ + c·z for steps t → s → p, from the core's step.

    ``t``, ``p``, ``final`` have one entry per step, ``s`` is (steps, rows) (one row per η).
    :func:`tcd_core.step_coefficients` and :func:`tcd_core.tcd_update` run in float64 on the
    basis: the sample x_t = √ᾱ_t·x is the row (√ᾱ_t, 0, 0), the x₀-prediction is (0, 1, 0), the
    noise (0, 0, 1); the update's x_p, divided by √ᾱ_p, is then (a, b, c). A final step (to
    σ = 0) returns x_s, diffusers' last ``prev_sample``, in diffusers' scaling. Returns float32
    of shape (steps, rows, 3), each weight rounded once (``dtype=np.float64``: not rounded).
    """
    steps, rows = s.shape
    index = np.repeat(np.arange(steps), rows)  # flat (step, row) pairs
    c = step_coefficients(alphas_cumprod, t[index], p[index], intermediate=s.reshape(-1), ndim=2)
    out = tcd_update(c, _DENOISED, c.sqrt_alpha_t * _X, _NOISE, _X0_PREDICTION)
    sqrt_alpha_p = np.sqrt(alphas_cumprod[p[index]])[:, None]
    weights = np.where(
        final[index][:, None], out.pred_noised_sample, out.prev_sample / sqrt_alpha_p
    )
    return np.asarray(weights, dtype=dtype).reshape(steps, rows, 3)


def _undo_lcm_boundary(weights: np.ndarray, t: np.ndarray, source: str) -> np.ndarray:
    """Weights for a denoiser that returns ComfyUI's LCM boundary condition
    d = c_skip·x + c_out·x̂₀ (τ = 10·t, σ_data = 0.5) instead of x̂₀: with x̂₀ = (d − c_skip·x)/c_out,
    a·x + b·x̂₀ = (a − b·c_skip/c_out)·x + (b/c_out)·d."""
    if np.any(t <= 0):
        raise ValueError(
            f"the model's denoiser ({source}) applies LCM's boundary condition, which at timestep "
            f"0 returns the input itself: a TCD step cannot start at t = 0"
        )
    tau = LCM_TIMESTEP_SCALING * t.astype(np.float64)
    c_skip = LCM_SIGMA_DATA**2 / (tau**2 + LCM_SIGMA_DATA**2)
    c_out = tau / np.sqrt(tau**2 + LCM_SIGMA_DATA**2)
    out = weights.copy()
    out[..., 0] -= weights[..., 1] * (c_skip / c_out)[:, None]
    out[..., 1] /= c_out[:, None]
    return out


def _plan_arguments(sigmas: bytes, eta: float | bytes) -> tuple[np.ndarray, float | np.ndarray]:
    """The σ's and η back from the bytes the plan caches are keyed on (η stays a Python float
    when it is one)."""
    sig = np.frombuffer(sigmas, dtype=np.float64)
    return sig, eta if isinstance(eta, float) else np.frombuffer(eta, dtype=np.float64)


def _frozen_plan(weights64: np.ndarray, eta: float | np.ndarray, final: Iterable[Any]) -> _Folded:
    """A plan's float64 weights (steps, rows, 3) rounded once to float32 and made read-only,
    with the Python-float weights of a scalar η and each step's draw: the reference's rule
    (:meth:`tcd_core.TCD.draws`: η > 0 and the step not ``final``, i.e. not ending at σ = 0),
    where any batch element's η > 0 draws one noise for the batch."""
    weights = weights64.astype(np.float32)
    weights.flags.writeable = False
    positive = float(np.max(eta))
    scalars = None
    if isinstance(eta, float):
        scalars = tuple((float(a), float(b), float(c)) for a, b, c in weights[:, 0].tolist())
    return _Folded(weights, scalars, tuple(TCD.draws(positive, bool(f)) for f in final))


@functools.lru_cache(maxsize=_PLAN_CACHE_SIZE)
def _host_plan(table: Table, sigmas: bytes, eta: float | bytes) -> _Folded:
    """σ's → integer timesteps → each step's weights (all validation). Cached: a UI samples
    with the same table, sigmas and η call after call; the arguments are the values' bytes."""
    sig, eta_host = _plan_arguments(sigmas, eta)
    final = sig[-1] == 0
    ts = timesteps_of(sig[:-1] if final else sig, table)
    if final:
        ts = np.append(ts, 0)  # the reference's p after the last step
    for i in range(len(ts) - 1):
        # a final step from t = 0 to σ = 0 is the reference's last step of a plan ending at 0
        if ts[i] <= ts[i + 1] and not (final and i + 1 == len(ts) - 1 and ts[i] == 0):
            raise ValueError(
                f"`sigmas`[{i}] and `sigmas`[{i + 1}] map to timesteps {ts[i]} and {ts[i + 1]}: "
                f"the timesteps of a TCD plan must strictly decrease"
            )
    t, p = ts[:-1], ts[1:]
    n = len(t)
    is_final = np.zeros(n, dtype=bool)
    is_final[-1] = final
    # s = ⌊f32(1−η)·f32(p)⌋ per step and η: shape (steps, 1) or (steps, batch)
    s = intermediate_timestep(p[:, None], eta_host)
    weights64 = _folded_weights(table.alphas_cumprod, t, p, s, is_final, np.float64)
    if table.lcm_boundary:
        weights64 = _undo_lcm_boundary(weights64, t, table.source)
    return _frozen_plan(weights64, eta_host, is_final)


@functools.lru_cache(maxsize=_PLAN_CACHE_SIZE)
def _flow_plan(scaling: str, source: str, sigmas: bytes, eta: float | bytes) -> _Folded:
    """The folded weights of TCD on the flow path (cached like :func:`_host_plan`).

    Each step is :func:`tcd_core.coefficients` and :func:`tcd_core.update` of TCD on
    :data:`tcd_core.FLOW` with the denoiser's x̂₀ as an x₀-prediction, run on the basis
    (x, x̂₀, z): σ_s = f32(1−η)·σ_next, x_s = (1−σ_s)·x̂₀ + σ_s·ε̂ with ε̂ = (x − (1−σ)·x̂₀)/σ,
    x_next = k·x_s + √(σ_next² − k²σ_s²)·z with k = (1−σ_next)/(1−σ_s). η = 0 is ComfyUI's
    ``euler`` on the same sigmas, η = 1 its ``lcm``. For Cosmos (``"cosmos"``) the sampler's
    x = x₀ + σ·ε is the flow sample times 1+σ, with σ_flow = σ/(1+σ).
    """
    sig, eta_host = _plan_arguments(sigmas, eta)
    if scaling == "const":
        if np.any(sig > 1):
            i = int(np.argmax(sig > 1))
            raise ValueError(
                f"`sigmas`[{i}] = {sig[i]:.7g} > 1: a flow-matching model's σ ({source}: CONST, "
                f"x = (1−σ)·x₀ + σ·ε) lies in [0, 1]; use the TCD Sigmas node or a ComfyUI "
                f"scheduler on this model"
            )
        level = sig.astype(np.float32)
    else:
        level = (sig / (1.0 + sig)).astype(np.float32)
    level64 = level.astype(np.float64)
    rows = [eta_host] if isinstance(eta_host, float) else [float(e) for e in eta_host]
    n = len(sig) - 1
    weights64 = np.empty((n, len(rows), 3), dtype=np.float64)
    for i in range(n):
        for r, row_eta in enumerate(rows):
            c = coefficients(TCD, FLOW, level[i], level[i + 1], eta=row_eta)
            out = update(TCD, c, _DENOISED, _X, _NOISE, _X0_PREDICTION).next_sample
            weights64[i, r] = out
    if scaling != "const":  # x_flow = (1−σ_f)·x in, x = x_flow/(1−σ_f') out
        weights64[:, :, 0] *= (1.0 - level64[:-1])[:, None]
        weights64 /= (1.0 - level64[1:])[:, None, None]
    return _frozen_plan(weights64, eta_host, level[1:] == 0)  # a step to σ = 0 draws no noise


def _device_weights(plan: _Folded, x: torch.Tensor) -> list[tuple[Any, Any, Any]]:
    """Each step's (a, b, c): Python floats for a scalar η (torch's scalar path, no device
    tensor), else float32 device tensors of shape (B, 1, …, 1) moved in one transfer."""
    if plan.scalars is not None:
        return list(plan.scalars)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    on_device = torch.from_numpy(plan.weights.transpose(0, 2, 1).copy()).to(x.device)
    return [(a.view(shape), b.view(shape), c.view(shape)) for a, b, c in on_device.unbind(0)]


def _update(
    x: torch.Tensor,
    denoised: torch.Tensor,
    noise: torch.Tensor | None,
    a: Any,
    b: Any,
    c: Any,
    scratch: torch.Tensor,
) -> torch.Tensor:
    """x' = a·x + b·x̂₀ (+ c·z) into a new tensor of x's dtype; ``scratch`` is overwritten.

    Plain products and sums, no fused multiply-add (``add(alpha=)``, ``addcmul``): each
    element's rounding is then the same for Python-float and per-batch tensor weights, and for
    every vectorisation or threading of the kernels.
    """
    out = torch.mul(x, a, out=torch.empty_like(x))
    torch.mul(denoised, b, out=scratch)
    torch.add(out, scratch, out=out)
    if noise is not None:
        torch.mul(noise, c, out=scratch)
        torch.add(out, scratch, out=out)
    return out


@torch.no_grad()
def sample_tcd(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: Any,
    extra_args: dict[str, Any] | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
    disable: bool | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: Any = 0.3,
    alphas_cumprod: Any = None,
    step_noise: str = "comfyui",
) -> torch.Tensor:
    r"""TCD's Strategic Stochastic Sampling (Algorithm 4) with k-diffusion's sampler signature.

    ``model(x, σ·s_in, **extra_args)`` is a k-diffusion denoiser: it takes latents in
    k-diffusion's scaling x = x_t/√ᾱ_t with σ = √((1−ᾱ_t)/ᾱ_t) and returns x̂₀. Each step maps
    σ_i → t and σ_{i+1} → p (the nearest entries of the model's table in log σ; a final σ = 0
    is p = 0, as after the last step of diffusers' plan) and takes one TCD step with
    :func:`tcd_core.step_coefficients` for (t, p, s = ⌊f32(1−η)·f32(p)⌋):

    1. x_t = √ᾱ_t·x (into diffusers' scaling);
    2. with the denoiser's x̂₀ as an x₀-prediction: ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1−ᾱ_t),
       x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂, x_p = √(ᾱ_p/ᾱ_s)·x_s + √(1−ᾱ_p/ᾱ_s)·z
       (:func:`tcd_core.tcd_update`);
    3. back to k-diffusion's scaling: x = x_p/√ᾱ_p, except on a final step to σ = 0, which
       returns x_s = √ᾱ_0·x̂₀ + √(1−ᾱ_0)·ε̂ itself, the value diffusers' last step returns.

    The three stages are linear in (x, x̂₀, z), so each step runs as x = a·x + b·x̂₀ + c·z with
    (a, b, c) computed once per plan on the host by the core's own step (float64, rounded once
    to float32; cached per table, sigmas and η).

    z = ``noise_sampler(σ_i, σ_{i+1})`` is drawn exactly where diffusers draws: when η > 0
    (for a per-batch η: any entry) and the step does not end at σ = 0. A generator behind the
    noise sampler therefore advances as diffusers' does, and with the same initial latents and
    noise stream the final sample equals diffusers' ``TCDScheduler`` loop within float32 rounding.
    Sigmas that do not end in 0 (a schedule split in two) re-noise on their last step, so the
    two halves run back to back equal the whole.

    On a ComfyUI model whose ``model_sampling`` is a flow-matching one (CONST: SD3, FLUX, Wan,
    …; COSMOS_RFLOW), σ is the flow σ and each step is TCD on :data:`tcd_core.FLOW` instead
    (σ_s = f32(1−η)·σ_next; η = 0 is ComfyUI's ``euler``, η = 1 its ``lcm``); a model sampling
    with continuous time (EDM, continuous v, Stable Cascade) is refused
    (:mod:`tcd_kdiffusion.model_sampling` lists them all).

    Everything is validated before the model is first called.

    Args:
        model: the denoiser, called as ``model(x, sigma * s_in, **extra_args)``.
        x: the initial latents in k-diffusion's scaling (for diffusers' initial latents z:
            z/√ᾱ_{t₀} = √(1+σ₀²)·z).
        sigmas: strictly decreasing 1-D noise levels, each an entry of the model's σ table
            (up to a relative 1e-5), normally ending in 0: :func:`~tcd_kdiffusion.get_sigmas_tcd`.
        extra_args: keyword arguments for the model; ``extra_args["seed"]`` seeds the step
            noise (as in ComfyUI).
        callback: called after each model call with ``{"x", "i", "sigma", "sigma_hat",
            "denoised"}`` (x is the step's input, sigma_hat = sigma).
        disable: disables the tqdm progress bar (there is none when tqdm is not installed).
        noise_sampler: ``noise_sampler(sigma, sigma_next)`` → N(0, I) shaped like x; default:
            the one ``step_noise`` names.
        eta: η ∈ [0, 1] (the paper's γ; 0.3 is the recommended value for 4–8 steps), or a 1-D
            tensor with one η per batch element. For the reference's exact s use a Python float
            or a float64 tensor (a float32 η is rounded before 1 − η is taken).
        alphas_cumprod: the model's ᾱ table; default: found on the model (ComfyUI's
            ``model.inner_model.inner_model.model_sampling``, k-diffusion's ``sigmas``/``log_sigmas``
            wrappers, or an ``alphas_cumprod`` tensor), with ᾱ = 1/(1+σ²).
        step_noise: where the step noise comes from without a ``noise_sampler``
            (:func:`~tcd_kdiffusion.step_noise_sampler`): ``"comfyui"``, ComfyUI's noise sampler
            for ``extra_args["seed"]`` (torch's global generator without a seed, as k-diffusion
            draws); ``"diffusers"``, the step noise of a diffusers pipeline called with
            ``generator=torch.Generator().manual_seed(seed)``, which reproduces its image at any η
            (the guide's "Seeds" section says when).

    Returns:
        The final latents, with ``x``'s dtype.

    Raises:
        ValueError: ``sigmas`` not strictly decreasing, negative, not finite or off the model's
            table (on a flow model: above 1); ``eta`` outside [0, 1] or of the wrong shape; no
            table found; a ComfyUI model sampling TCD cannot sample; ``step_noise`` not one of
            :data:`~tcd_kdiffusion.STEP_NOISE`, or ``"diffusers"`` without a seed;
            ``extra_args`` not a dict; ``x`` not a floating tensor. All before the model runs.

    Example:
        >>> import torch
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> from tcd_kdiffusion import get_sigmas_tcd, sample_tcd
        >>> ac = alphas_cumprod(TCDConfig())
        >>> sigmas = get_sigmas_tcd(4, ac)
        >>> def denoiser(x, sigma, **extra_args):  # a model would go here; extra_args has "seed"
        ...     return 0.5 * x / (1 + sigma[:, None, None, None] ** 2) ** 0.5
        >>> x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
        >>> out = sample_tcd(denoiser, x, sigmas, extra_args={"seed": 0}, disable=True,
        ...                  alphas_cumprod=ac)
        >>> out.shape, out.dtype
        (torch.Size([1, 4, 8, 8]), torch.float32)
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 1:
        raise ValueError("`x` must be a floating-point torch tensor with a batch dimension")
    for name, function in (
        ("model", model),
        ("callback", callback),
        ("noise_sampler", noise_sampler),
    ):
        if not callable(function) and (function is not None or name == "model"):
            raise TypeError(f"`{name}` must be callable, got {type(function).__name__}")
    if extra_args is None:
        extra_args = {}
    elif not isinstance(extra_args, dict):
        raise ValueError(f"`extra_args` must be a dict or None, got {type(extra_args).__name__}")
    if noise_sampler is None:
        noise_sampler = step_noise_sampler(step_noise, x, extra_args.get("seed"))
    else:
        check_step_noise(step_noise)
    sig = _host_sigmas(sigmas)
    eta_host = _host_eta(eta, x.shape[0])
    if len(sig) < 2:
        return x
    schedule = resolve_schedule(model, alphas_cumprod)
    eta_key = eta_host if isinstance(eta_host, float) else eta_host.tobytes()
    if isinstance(schedule, FlowSchedule):
        plan = _flow_plan(schedule.scaling, schedule.source, sig.tobytes(), eta_key)
    else:
        plan = _host_plan(schedule, sig.tobytes(), eta_key)
    weights = _device_weights(plan, x)
    if not isinstance(sigmas, torch.Tensor):
        sigmas = torch.tensor(sig, dtype=torch.float32, device=x.device)

    n = len(plan.draws_noise)
    sigma = sigmas.unbind(0)  # σ_i as 0-d tensors, for the callback and the noise sampler
    s_in = x.new_ones([x.shape[0]])
    if sigmas.dtype == x.dtype and sigmas.device == x.device:  # all σ_i·s_in in one product
        sigma_in: Any = (sigmas[:n, None] * s_in).unbind(0)
    else:  # k-diffusion's own expression, for its dtype promotion and device handling
        sigma_in = [sigma[i] * s_in for i in range(n)]
    scratch = torch.empty_like(x)
    for i in _steps(n, disable):
        denoised = model(x, sigma_in[i], **extra_args)
        if denoised.shape != x.shape:
            raise ValueError(
                f"the model returned shape {tuple(denoised.shape)}, expected x's {tuple(x.shape)}"
            )
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigma[i], "sigma_hat": sigma[i], "denoised": denoised}
            )
        noise = None
        if plan.draws_noise[i]:
            noise = noise_sampler(sigma[i], sigma[i + 1])
            if noise.shape != x.shape:
                raise ValueError(
                    f"`noise_sampler` returned shape {tuple(noise.shape)}, expected x's "
                    f"{tuple(x.shape)}"
                )
        x = _update(x, denoised, noise, *weights[i], scratch)
    return x
