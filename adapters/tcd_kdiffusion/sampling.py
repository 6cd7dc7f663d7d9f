"""``sample_tcd``: TCD's Strategic Stochastic Sampling as a k-diffusion sampler."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch

from tcd_core import (
    StepCoefficients,
    TCDConfig,
    check_eta,
    intermediate_timestep,
    step_coefficients,
    tcd_update,
)

from .noise import NoiseSampler, default_noise_sampler
from .schedule import resolve_table, timesteps_of

__all__ = ["sample_tcd"]

# The denoiser returns x̂₀, so in diffusers' terms the step sees an x₀ ("sample") prediction.
_X0_PREDICTION = TCDConfig(prediction_type="sample")


class _Step(NamedTuple):
    """One step t → s → p, prepared before the model is first called."""

    coefficients: StepCoefficients
    draws_noise: bool
    sqrt_alpha_next: torch.Tensor | None  # √ᾱ_p; None on a final step to σ = 0


def _host_sigmas(sigmas: Any) -> np.ndarray:
    if isinstance(sigmas, torch.Tensor):
        host = sigmas.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            host = np.asarray(sigmas, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`sigmas` must be a 1-D tensor of noise levels: {err}") from None
    if host.ndim != 1 or host.size == 0:
        raise ValueError(f"`sigmas` must be a non-empty 1-D tensor, got shape {host.shape}")
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


def _device32(value: Any, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(value, dtype=np.float32)).to(device)


def _plan(
    model: Any, x: torch.Tensor, sig: np.ndarray, eta: float | np.ndarray, alphas_cumprod: Any
) -> list[_Step]:
    """σ's → integer timesteps → the core's coefficients for every step (all validation)."""
    table = resolve_table(model, alphas_cumprod)
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
    # The core's coefficients, computed on the host from the float64 table (one rounding to
    # float32 each; for diffusers' float32 table the same values diffusers computes in float32)
    # and moved to the device in one transfer.
    ac = table.alphas_cumprod
    t, p = ts[:-1], ts[1:]
    n = len(t)
    draws = bool(np.any(np.asarray(eta) > 0))
    if isinstance(eta, float):
        vectors = step_coefficients(ac, t, p, intermediate=intermediate_timestep(p, eta), ndim=1)
        host = np.stack([*vectors, np.sqrt(ac[p])]).astype(np.float32)
        columns = torch.from_numpy(host).to(x.device).unbind(1)
        per_step = [StepCoefficients(*c.unbind(0)[:6]) for c in columns]
        sqrt_alpha_next = [c[6] for c in columns]
    else:  # per-batch η: coefficients shaped (B, 1, …, 1), step by step
        per_step, sqrt_alpha_next = [], []
        for i in range(n):
            s = intermediate_timestep(p[i], eta)
            c = step_coefficients(ac, int(t[i]), int(p[i]), intermediate=s, ndim=x.ndim)
            per_step.append(StepCoefficients(*(_device32(v, x.device) for v in c)))
            sqrt_alpha_next.append(_device32(np.sqrt(ac[p[i]]), x.device))
    last = n - 1 if final else None
    return [
        _Step(per_step[i], draws and i != last, None if i == last else sqrt_alpha_next[i])
        for i in range(n)
    ]


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
) -> torch.Tensor:
    r"""TCD's Strategic Stochastic Sampling (Algorithm 4) with k-diffusion's sampler signature.

    ``model(x, σ·s_in, **extra_args)`` is a k-diffusion denoiser: it takes latents in
    k-diffusion's scaling x = x_t/√ᾱ_t with σ = √((1−ᾱ_t)/ᾱ_t) and returns x̂₀. Each step maps
    σ_i → t and σ_{i+1} → p (the nearest entries of the model's table in log σ; a final σ = 0
    is p = 0, as after the last step of diffusers' plan) and takes one TCD step with
    :func:`tcd_core.step_coefficients` for (t, p, s = ⌊f32(1−η)·f32(p)⌋), evaluated once per
    call on the host from the table in float64 and rounded once to float32:

    1. x_t = √ᾱ_t·x (into diffusers' scaling);
    2. with the denoiser's x̂₀ as an x₀-prediction: ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1−ᾱ_t),
       x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂, x_p = √(ᾱ_p/ᾱ_s)·x_s + √(1−ᾱ_p/ᾱ_s)·z
       (:func:`tcd_core.tcd_update`);
    3. back to k-diffusion's scaling: x = x_p/√ᾱ_p, except on a final step to σ = 0, which
       returns x_s = √ᾱ_0·x̂₀ + √(1−ᾱ_0)·ε̂ itself, the value diffusers' last step returns.

    z = ``noise_sampler(σ_i, σ_{i+1})`` is drawn exactly where diffusers draws: when η > 0
    (for a per-batch η: any entry) and the step does not end at σ = 0. A generator behind the
    noise sampler therefore advances as diffusers' does, and with the same initial latents and
    noise stream the final sample equals diffusers' ``TCDScheduler`` loop within float32 rounding.
    Sigmas that do not end in 0 (a schedule split in two) re-noise on their last step, so the
    two halves run back to back equal the whole.

    Everything is validated before the model is first called.

    Args:
        model: the denoiser, called as ``model(x, sigma * s_in, **extra_args)``.
        x: the initial latents in k-diffusion's scaling (for diffusers' initial latents z:
            z/√ᾱ_{t₀} = √(1+σ₀²)·z).
        sigmas: strictly decreasing 1-D noise levels, each an entry of the model's σ table
            (up to a relative 1e-5), normally ending in 0: :func:`~tcd_kdiffusion.get_sigmas_tcd`.
        extra_args: keyword arguments for the model; ``extra_args["seed"]`` seeds the default
            noise sampler (as in ComfyUI).
        callback: called after each model call with ``{"x", "i", "sigma", "sigma_hat",
            "denoised"}`` (x is the step's input, sigma_hat = sigma).
        disable: disables the tqdm progress bar (there is none when tqdm is not installed).
        noise_sampler: ``noise_sampler(sigma, sigma_next)`` → N(0, I) shaped like x; default
            :func:`~tcd_kdiffusion.default_noise_sampler` (seeded from ``extra_args["seed"]``).
        eta: η ∈ [0, 1] (the paper's γ; 0.3 is the recommended value for 4–8 steps), or a 1-D
            tensor with one η per batch element. For the reference's exact s use a Python float
            or a float64 tensor (a float32 η is rounded before 1 − η is taken).
        alphas_cumprod: the model's ᾱ table; default: found on the model (ComfyUI's
            ``model.inner_model.inner_model.model_sampling``, k-diffusion's ``sigmas``/``log_sigmas``
            wrappers, or an ``alphas_cumprod`` tensor), with ᾱ = 1/(1+σ²).

    Returns:
        The final latents, with ``x``'s dtype.

    Raises:
        ValueError: ``sigmas`` not strictly decreasing, negative, not finite or off the model's
            table; ``eta`` outside [0, 1] or of the wrong shape; no table found;
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
    if extra_args is None:
        extra_args = {}
    elif not isinstance(extra_args, dict):
        raise ValueError(f"`extra_args` must be a dict or None, got {type(extra_args).__name__}")
    sig = _host_sigmas(sigmas)
    eta_host = _host_eta(eta, x.shape[0])
    if len(sig) < 2:
        return x
    steps = _plan(model, x, sig, eta_host, alphas_cumprod)
    if noise_sampler is None:
        noise_sampler = default_noise_sampler(x, extra_args.get("seed"))
    if not isinstance(sigmas, torch.Tensor):
        sigmas = torch.tensor(sig, dtype=torch.float32, device=x.device)

    s_in = x.new_ones([x.shape[0]])
    sigma = sigmas.unbind(0)  # σ_i as 0-d tensors, and σ_i·s_in as k-diffusion forms it
    sigma_in = [sigma[i] * s_in for i in range(len(steps))]
    for i in _steps(len(steps), disable):
        denoised = model(x, sigma_in[i], **extra_args)
        if tuple(denoised.shape) != tuple(x.shape):
            raise ValueError(
                f"the model returned shape {tuple(denoised.shape)}, expected x's {tuple(x.shape)}"
            )
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigma[i], "sigma_hat": sigma[i], "denoised": denoised}
            )
        step = steps[i]
        noise = None
        if step.draws_noise:
            noise = noise_sampler(sigma[i], sigma[i + 1])
            if tuple(noise.shape) != tuple(x.shape):
                raise ValueError(
                    f"`noise_sampler` returned shape {tuple(noise.shape)}, expected x's "
                    f"{tuple(x.shape)}"
                )
        x_t = step.coefficients.sqrt_alpha_t * x
        x_p = tcd_update(step.coefficients, denoised, x_t, noise, _X0_PREDICTION).prev_sample
        x = x_p if step.sqrt_alpha_next is None else x_p.div_(step.sqrt_alpha_next)
    return x
