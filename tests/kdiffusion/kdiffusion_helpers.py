"""k-diffusion / ComfyUI conventions written from their maths, and diffusers' reference loop.

Nothing here imports k-diffusion or ComfyUI (neither can be installed on these machines). The
wrappers reproduce what those packages compute:

* :class:`DiscreteDenoiser`: k-diffusion's ``DiscreteEpsDDPMDenoiser`` /
  ``DiscreteVDDPMDenoiser`` (σ table σ_t = √((1−ᾱ_t)/ᾱ_t) in the table's dtype, quantized
  σ → t = argmin |log σ − log σ_t|, c_in = 1/√(σ²+1); ε: x̂₀ = x − σ·ε; v: x̂₀ = x/(σ²+1) −
  v·σ/√(σ²+1)), plus an x₀-model (x̂₀ = model output) for diffusers' "sample" prediction.
* :func:`comfy_chain`: ComfyUI's sampler-side objects, KSamplerX0Inpaint → CFGGuider →
  BaseModel with ``model_sampling`` (ModelSamplingDiscrete: ``sigmas``/``log_sigmas`` float32
  buffers computed from float64 betas, ``timestep(σ)`` the nearest log σ).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import diffusers
import numpy as np
import torch

from tcd_core import TCDConfig, betas_for_alpha_bar

#: |Δ| <= TOL·(1 + max|reference|) in float32 (the issue's bound).
TOL = 1e-5

#: key -> (largest scaled error seen, number of comparisons), reported at the end of the run.
MEASURED: dict[str, tuple[float, int]] = {}


def assert_close(ours: torch.Tensor, ref: torch.Tensor, key: str) -> float:
    """|ours − ref| <= TOL·(1 + max|ref|), elementwise max; records the scaled error."""
    assert ours.dtype == ref.dtype and ours.shape == ref.shape, (ours.dtype, ours.shape)
    assert torch.isfinite(ref).all() and torch.isfinite(ours).all()
    scale = 1.0 + float(ref.double().abs().max())
    err = float((ours.double() - ref.double()).abs().max()) / scale
    worst, count = MEASURED.get(key, (0.0, 0))
    MEASURED[key] = (max(worst, err), count + 1)
    assert err <= TOL, f"{key}: |Δ|/(1+max|ref|) = {err:.3e} > {TOL}"
    return err


def toy_net(alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon"):
    """A deterministic stand-in network ``net(x_t, t)`` with a trained denoiser's conditioning.

    Its prediction of the clean sample, x̂₀ = tanh(1.5·√ᾱ_t·x_t)·(0.5 + t/2N), is smooth and
    bounded and depends on x_t only through the signal part √ᾱ_t·x_t, as a real denoiser's does
    (a toy whose x̂₀ reacted strongly to x_t at high noise would amplify float32 rounding step
    after step, in diffusers' convention as in k-diffusion's). It returns that x̂₀ expressed in
    ``prediction_type``: ε = (x_t − √ᾱ_t·x̂₀)/√(1−ᾱ_t), v = √ᾱ_t·ε − √(1−ᾱ_t)·x̂₀, or x̂₀.
    t is an int or a per-batch tensor; both give the same float32 operations.
    """
    # (√ᾱ and √(1−ᾱ) are taken in float64: from a float32 ᾱ near 1, 1 − ᾱ in float32 keeps few
    # digits, and a network "trained" on ComfyUI's float64 schedule should agree with its σ's.)
    ac = torch.as_tensor(alphas_cumprod).double()
    n_train = len(ac)

    def net(x: torch.Tensor, t: Any) -> torch.Tensor:
        t = torch.as_tensor(t).reshape(-1)
        shape = (-1, *([1] * (x.ndim - 1)))
        a = ac[t].sqrt().to(x.dtype).reshape(shape)  # √ᾱ, √(1−ᾱ) from the table's values,
        b = (1 - ac[t]).sqrt().to(x.dtype).reshape(shape)  # rounded once to x's dtype
        x0 = torch.tanh(1.5 * a * x) * (0.5 + t.to(torch.float32).reshape(shape) / (2 * n_train))
        eps = (x - a * x0) / b
        if prediction_type == "epsilon":
            return eps
        if prediction_type == "v_prediction":
            return a * eps - b * x0
        return x0

    return net


# --------------------------------------------------------------------------------------------
# k-diffusion


def _column(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (ndim - 1)))


class DiscreteDenoiser(torch.nn.Module):
    """k-diffusion's discrete DDPM denoiser wrappers, from their maths (see the module doc)."""

    def __init__(self, net: Any, alphas_cumprod: torch.Tensor, prediction_type: str) -> None:
        super().__init__()
        ac = torch.as_tensor(alphas_cumprod)
        sigmas = ((1 - ac) / ac) ** 0.5  # in the table's dtype, as k-diffusion does
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("log_sigmas", sigmas.log())
        self.inner_model = net
        self.prediction_type = prediction_type
        self.calls = 0

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        dists = sigma.log()[None, :] - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls += 1
        s = _column(sigma, x.ndim)
        c_in = 1 / (s**2 + 1) ** 0.5
        out = self.inner_model(x * c_in, self.sigma_to_t(sigma), **kwargs)
        if self.prediction_type == "epsilon":
            return x + out * -s
        if self.prediction_type == "v_prediction":
            return out * (-s / (s**2 + 1) ** 0.5) + x * (1 / (s**2 + 1))
        return out  # an x₀-model


class CFGWrapper(torch.nn.Module):
    """What A1111/Forge hand the sampler: a guidance wrapper whose ``inner_model`` is the
    schedule-carrying denoiser (here with a single conditioning, so guidance is the identity)."""

    def __init__(self, inner_model: torch.nn.Module) -> None:
        super().__init__()
        self.inner_model = inner_model

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.inner_model(x, sigma, **kwargs)


# --------------------------------------------------------------------------------------------
# ComfyUI


def betas64(cfg: dict) -> np.ndarray:
    """The config's betas in float64, the way ComfyUI computes its schedules (no float32 step)."""
    full = diffusers.TCDScheduler(**cfg).config  # diffusers' defaults for what cfg leaves out
    n = full.num_train_timesteps
    if full.trained_betas is not None:
        return np.asarray(full.trained_betas, dtype=np.float64)
    kind, start, end = full.beta_schedule, full.beta_start, full.beta_end
    if kind == "scaled_linear":
        return np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
    if kind == "linear":
        return np.linspace(start, end, n, dtype=np.float64)
    return np.asarray(betas_for_alpha_bar(n), dtype=np.float64)


class ComfyModelSampling(torch.nn.Module):
    """ModelSamplingDiscrete's state: float32 ``sigmas``/``log_sigmas`` from float64 maths."""

    def __init__(self, betas: np.ndarray) -> None:
        super().__init__()
        ac = torch.cumprod(1.0 - torch.from_numpy(betas), dim=0)
        sigmas = ((1 - ac) / ac) ** 0.5
        self.register_buffer("sigmas", sigmas.float())
        self.register_buffer("log_sigmas", sigmas.log().float())

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def noise_scaling(
        self, sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor, max_denoise: bool
    ) -> torch.Tensor:
        """The KSampler's initial latents: √(1+σ²)·z at full denoise, σ·z + latent otherwise."""
        scaled = noise * torch.sqrt(1.0 + sigma**2.0) if max_denoise else noise * sigma
        return scaled + latent


class ComfyBaseModel(torch.nn.Module):
    """BaseModel: ``apply_model`` scales the input, maps σ → t and forms x̂₀ (EPS / V / X0)."""

    def __init__(self, net: Any, model_sampling: ComfyModelSampling, prediction_type: str):
        super().__init__()
        self.net = net
        self.model_sampling = model_sampling
        self.prediction_type = prediction_type

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = _column(sigma, x.ndim)
        out = self.net(x / (s**2 + 1.0) ** 0.5, self.model_sampling.timestep(sigma))
        if self.prediction_type == "epsilon":
            return x - out * s
        if self.prediction_type == "v_prediction":
            return x * 1.0 / (s**2 + 1.0) - out * s / (s**2 + 1.0) ** 0.5
        return out


class ComfyGuider:
    """CFGGuider (one conditioning): calls the base model."""

    def __init__(self, base: ComfyBaseModel) -> None:
        self.inner_model = base
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, model_options=None, seed=None):
        self.calls += 1
        return self.inner_model.apply_model(x, sigma)


class ComfyX0Inpaint(torch.nn.Module):
    """KSamplerX0Inpaint: what ComfyUI's KSAMPLER passes to a sampler function. It has a
    ``sigmas`` attribute of its own, the *sampling* sigmas, which is not the model's table."""

    def __init__(self, guider: ComfyGuider, sigmas: torch.Tensor) -> None:
        super().__init__()
        self.inner_model = guider
        self.sigmas = sigmas

    def forward(self, x, sigma, denoise_mask=None, model_options=None, seed=None):
        return self.inner_model(x, sigma, model_options=model_options, seed=seed)


def comfy_chain(net: Any, cfg: dict, sampling_sigmas: torch.Tensor) -> ComfyX0Inpaint:
    sampling = ComfyModelSampling(betas64(cfg))
    base = ComfyBaseModel(net, sampling, cfg.get("prediction_type", "epsilon"))
    return ComfyX0Inpaint(ComfyGuider(base), sampling_sigmas)


# --------------------------------------------------------------------------------------------
# diffusers


def reference_loop(
    cfg: dict,
    plan: dict,
    net: Any,
    z: torch.Tensor,
    eta: float,
    generator: torch.Generator | None,
    trajectory: list[torch.Tensor] | None = None,
    alphas_cumprod: torch.Tensor | None = None,
) -> tuple[torch.Tensor, diffusers.TCDScheduler]:
    """diffusers' TCDScheduler loop from x_T = z, as a pipeline runs it; each step's input is
    appended to ``trajectory`` when given. ``alphas_cumprod`` replaces the scheduler's float32
    table (diffusers' step reads ``scheduler.alphas_cumprod``)."""
    scheduler = diffusers.TCDScheduler(**cfg)
    if alphas_cumprod is not None:
        scheduler.alphas_cumprod = alphas_cumprod
    scheduler.set_timesteps(**plan)
    x = z
    for t in scheduler.timesteps:
        if trajectory is not None:
            trajectory.append(x)
        x = scheduler.step(net(x, int(t)), t, x, eta=eta, generator=generator).prev_sample
    return x, scheduler


def tcd_config(cfg: dict) -> TCDConfig:
    return TCDConfig.from_dict(cfg)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def captured_warnings(logger_name: str) -> Iterator[list[str]]:
    """The WARNING+ messages of one logger while the block runs (diffusers' loggers do not
    propagate to the root logger, so pytest's caplog does not see them)."""
    log = logging.getLogger(logger_name)
    handler = _ListHandler()
    old_level = log.level
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.WARNING:
        log.setLevel(logging.WARNING)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
