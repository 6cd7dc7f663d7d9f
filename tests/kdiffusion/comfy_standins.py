"""Stand-ins for the ComfyUI objects the node pack meets, written from ComfyUI's conventions.

ComfyUI is not installed on CI (tests/comfyui/check_real_comfyui.py runs the same checks against
the real thing). These classes carry the names ComfyUI gives its model sampling classes, since
``tcd_kdiffusion.model_sampling`` recognises them by name, and compute what they compute:

* the *types* (how the sampler's x, σ and the network output relate): ``EPS`` (x = x₀ + σ·ε,
  network input x/√(σ²+1), x̂₀ = x − σ·out), ``V_PREDICTION``, ``X0``, ``CONST`` (flow:
  x = (1−σ)·x₀ + σ·ε, x̂₀ = x − σ·out), ``COSMOS_RFLOW`` (x = x₀ + σ·ε around a flow of time
  σ/(1+σ)) and the lcm patch's ``LCM`` (x̂₀ replaced by c_skip·x + c_out·x̂₀, τ = 10·t);
* the *bases* (σ table, σ ↔ t): ``ModelSamplingDiscrete`` (σ_t of a DDPM beta schedule in float64,
  stored in float32, t = nearest log σ), the lcm patch's ``ModelSamplingDiscreteDistilled`` (50 of
  those σ's, t = 19, 39, …, 999), ``ModelSamplingDiscreteFlow`` (σ = shift(t/N)),
  ``ModelSamplingFlux`` (σ = e^μ/(e^μ + 1/t − 1)), the continuous ``ModelSamplingContinuousEDM``,
  ``ModelSamplingContinuousV``, ``ModelSamplingDiscreteEDM``, ``StableCascadeSampling`` and
  ``ModelSamplingCosmosRFlow``;
* the sampler side: ``KSAMPLER`` (initial noise through ``noise_scaling``, the sampler function
  called with ``**extra_options``, ``inverse_noise_scaling`` at the end), the model chain it
  passes (KSamplerX0Inpaint → CFGGuider → BaseModel), a MODEL with ``get_model_object``, and the
  k-diffusion ``euler`` and ``lcm`` samplers ComfyUI runs (for the flow-path checks).
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch


def _col(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    sigma = torch.as_tensor(sigma)
    return sigma.reshape(()) if sigma.numel() == 1 else sigma.reshape(-1, *([1] * (ndim - 1)))


# --------------------------------------------------------------------------------------------
# types


class EPS:
    sigma_data = 1.0

    def calculate_input(self, sigma, x):
        return x / (_col(sigma, x.ndim) ** 2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma, out, x):
        return x - out * _col(sigma, out.ndim)

    def noise_scaling(self, sigma, noise, latent, max_denoise=False):
        s = _col(sigma, noise.ndim)
        scale = torch.sqrt(1.0 + s**2.0) if max_denoise else s
        return noise * scale + latent

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class V_PREDICTION(EPS):
    def calculate_denoised(self, sigma, out, x):
        s, d = _col(sigma, out.ndim), self.sigma_data
        return x * d**2 / (s**2 + d**2) - out * s * d / (s**2 + d**2) ** 0.5


class X0(EPS):
    def calculate_denoised(self, sigma, out, x):
        return out


class LCM(EPS):
    """The lcm patch's type: the consistency boundary condition on top of ε's x̂₀."""

    def calculate_denoised(self, sigma, out, x):
        s = _col(sigma, out.ndim)
        tau = _col(self.timestep(sigma), out.ndim) * 10.0
        c_skip = 0.25 / (tau**2 + 0.25)
        c_out = tau / (tau**2 + 0.25) ** 0.5
        return c_out * (x - out * s) + c_skip * x


class CONST:
    def calculate_input(self, sigma, x):
        return x

    def calculate_denoised(self, sigma, out, x):
        return x - out * _col(sigma, out.ndim)

    def noise_scaling(self, sigma, noise, latent, max_denoise=False):
        s = _col(sigma, noise.ndim)
        return s * noise + (1.0 - s) * latent

    def inverse_noise_scaling(self, sigma, latent):
        return latent / (1.0 - _col(sigma, latent.ndim))


class COSMOS_RFLOW:
    def calculate_input(self, sigma, x):
        t = _col(sigma / (sigma + 1), x.ndim)
        return x * (1.0 - t)

    def calculate_denoised(self, sigma, out, x):
        t = _col(sigma / (sigma + 1), out.ndim)
        return x * (1.0 - t) - out * t

    def noise_scaling(self, sigma, noise, latent, max_denoise=False):
        return noise * _col(sigma, noise.ndim) + latent

    def inverse_noise_scaling(self, sigma, latent):
        return latent


# --------------------------------------------------------------------------------------------
# bases


def ddpm_betas(kind: str, n: int, start: float, end: float) -> torch.Tensor:
    if kind == "linear":  # linear in √β (diffusers' scaled_linear)
        return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    if kind == "sqrt_linear":
        return torch.linspace(start, end, n, dtype=torch.float64)
    raise ValueError(kind)


class ModelSamplingDiscrete(torch.nn.Module):
    def __init__(
        self,
        beta_schedule="linear",
        linear_start=0.00085,
        linear_end=0.012,
        timesteps=1000,
        zsnr=False,
    ):
        super().__init__()
        betas = ddpm_betas(beta_schedule, timesteps, linear_start, linear_end)
        ac = torch.cumprod(1 - betas, dim=0)
        self.num_timesteps, self.zsnr = timesteps, zsnr
        self.linear_start, self.linear_end = linear_start, linear_end
        sigmas = ((1 - ac) / ac) ** 0.5
        if zsnr:  # Lin et al.: √ᾱ shifted to end at 0, then ᾱ_T set to a tiny positive value
            root = ac.sqrt()
            root = (root - root[-1]) * (root[0] / (root[0] - root[-1]))
            ac = root**2
            ac[-1] = 4.8973451890853435e-08
            sigmas = ((1 - ac) / ac) ** 0.5
        self.sigma_data = 1.0
        self.set_sigmas(sigmas)

    def set_sigmas(self, sigmas):
        self.register_buffer("sigmas", sigmas.float())
        self.register_buffer("log_sigmas", sigmas.log().float())

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        dist = (sigma.log().reshape(1, -1) - self.log_sigmas[:, None]).abs()
        return dist.argmin(dim=0).view(sigma.shape)

    def sigma(self, timestep):
        t = timestep.float().clamp(0, len(self.sigmas) - 1)
        lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]).exp()

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma(torch.tensor((1.0 - percent) * 999.0)).item()


class ModelSamplingDiscreteDistilled(ModelSamplingDiscrete):
    """The lcm patch: 50 σ's, those of timesteps skip−1, 2·skip−1, …, N−1."""

    original_timesteps = 50

    def __init__(self, **settings):
        super().__init__(**settings)
        self.skip_steps = self.num_timesteps // self.original_timesteps
        keep = torch.arange(self.original_timesteps) * self.skip_steps + self.skip_steps - 1
        self.set_sigmas(self.sigmas[keep].double())

    def timestep(self, sigma):
        return super().timestep(sigma) * self.skip_steps + (self.skip_steps - 1)


def _shift(shift: float, t):
    return t if shift == 1.0 else shift * t / (1 + (shift - 1) * t)


class ModelSamplingDiscreteFlow(torch.nn.Module):
    def __init__(self, shift=1.0, multiplier=1000, timesteps=1000):
        super().__init__()
        self.shift, self.multiplier = shift, multiplier
        steps = torch.arange(1, timesteps + 1, 1) / timesteps
        self.register_buffer("sigmas", _shift(shift, steps))

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        return sigma * self.multiplier

    def sigma(self, timestep):
        return _shift(self.shift, timestep / self.multiplier)

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return _shift(self.shift, 1.0 - percent)


def _flux_shift(mu: float, t):
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))


class ModelSamplingFlux(torch.nn.Module):
    def __init__(self, shift=1.15, timesteps=10000):
        super().__init__()
        self.shift = shift
        self.register_buffer(
            "sigmas", _flux_shift(shift, torch.arange(1, timesteps + 1) / timesteps)
        )

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        return sigma

    def sigma(self, timestep):
        return _flux_shift(self.shift, timestep)

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return _flux_shift(self.shift, 1.0 - percent)


class ModelSamplingContinuousEDM(torch.nn.Module):
    def __init__(self, sigma_min=0.002, sigma_max=120.0, sigma_data=1.0):
        super().__init__()
        self.sigma_data = sigma_data
        sigmas = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("log_sigmas", sigmas.log())

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        return 0.25 * sigma.log()


class ModelSamplingContinuousV(ModelSamplingContinuousEDM):
    def timestep(self, sigma):
        return sigma.atan() / math.pi * 2


class ModelSamplingCosmosRFlow(ModelSamplingContinuousEDM):
    def timestep(self, sigma):
        return sigma / (sigma + 1)


class ModelSamplingDiscreteEDM(ModelSamplingDiscrete):
    def timestep(self, sigma):
        return 0.25 * sigma.log()


class StableCascadeSampling(ModelSamplingDiscrete):
    def timestep(self, sigma):  # continuous time in (0, 1]; only the class matters here
        return sigma.atan() / math.pi * 2


def model_sampling(base: type, kind: type, **settings: Any) -> Any:
    """``class ModelSampling(base, kind)`` as ComfyUI composes them, instantiated."""

    class ModelSampling(base, kind):  # type: ignore[valid-type, misc]
        pass

    return ModelSampling(**settings)


# --------------------------------------------------------------------------------------------
# the model chain, the MODEL, KSAMPLER and ComfyUI's samplers


class BaseModel(torch.nn.Module):
    """apply_model(x, σ): the network on calculate_input(σ, x) at timestep(σ), then
    calculate_denoised. ``timesteps`` records what the network was given."""

    def __init__(self, net: Any, sampling: Any) -> None:
        super().__init__()
        self.net, self.model_sampling = net, sampling
        self.timesteps: list[list[float]] = []

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = self.model_sampling.timestep(sigma)
        self.timesteps.append(torch.as_tensor(t).reshape(-1).tolist())
        out = self.net(self.model_sampling.calculate_input(sigma, x), t)
        return self.model_sampling.calculate_denoised(sigma, out, x)


class CFGGuider:
    def __init__(self, base: BaseModel) -> None:
        self.inner_model = base
        self.calls = 0

    def __call__(self, x, sigma, model_options=None, seed=None):
        self.calls += 1
        return self.inner_model.apply_model(x, sigma)


class KSamplerX0Inpaint:
    def __init__(self, guider: CFGGuider, sigmas: torch.Tensor) -> None:
        self.inner_model, self.sigmas = guider, sigmas

    def __call__(self, x, sigma, denoise_mask=None, model_options=None, seed=None):
        return self.inner_model(x, sigma, model_options=model_options, seed=seed)


class Model:
    """A MODEL as the nodes get it: ``get_model_object("model_sampling")``."""

    def __init__(self, base: BaseModel) -> None:
        self.model = base

    def get_model_object(self, name: str) -> Any:
        return getattr(self.model, name)


class KSAMPLER:
    def __init__(self, sampler_function, extra_options=None, inpaint_options=None):
        self.sampler_function = sampler_function
        self.extra_options = dict(extra_options or {})

    def sample(self, guider, sigmas, extra_args, callback, noise, latent_image=None):
        sampling = guider.inner_model.model_sampling
        if latent_image is None:
            latent_image = torch.zeros_like(noise)
        top, first = float(sampling.sigma_max), float(sigmas[0])
        max_denoise = math.isclose(top, first, rel_tol=1e-05) or first > top
        x = sampling.noise_scaling(sigmas[0], noise, latent_image, max_denoise)
        model_k = KSamplerX0Inpaint(guider, sigmas)
        out = self.sampler_function(
            model_k,
            x,
            sigmas,
            extra_args=extra_args,
            callback=callback,
            disable=True,
            **self.extra_options,
        )
        return sampling.inverse_noise_scaling(sigmas[-1], out)


def run(model: Model, sampler: KSAMPLER, sigmas, noise, seed, latent_image=None):
    """SamplerCustom, in short: the guider, ``extra_args["seed"]``, the sampler's sample."""
    guider = CFGGuider(model.model)
    out = sampler.sample(
        guider, sigmas, {"model_options": {}, "seed": seed}, None, noise, latent_image
    )
    return out, guider.calls


def default_noise_sampler(x, seed=None):
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(
        x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator
    )


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """k-diffusion's Euler: d = (x − x̂₀)/σ, x + d·(σ' − σ)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """ComfyUI's lcm: x = x̂₀, re-noised to σ' by the model's ``noise_scaling`` (σ' > 0)."""
    extra_args = extra_args or {}
    if noise_sampler is None:
        noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed"))
    s_in = x.new_ones([x.shape[0]])
    sampling = model.inner_model.inner_model.model_sampling
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i] * s_in, **extra_args)
        if sigmas[i + 1] > 0:
            x = sampling.noise_scaling(sigmas[i + 1], noise_sampler(sigmas[i], sigmas[i + 1]), x)
    return x


def prepare_noise(latent: torch.Tensor, seed: int) -> torch.Tensor:
    """ComfyUI's initial noise for a seed: one CPU ``randn`` of the latent's shape."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(latent.size(), dtype=latent.dtype, generator=generator, device="cpu")


def comfy_modules() -> dict[str, types.ModuleType]:
    """``comfy``, ``comfy.samplers`` (KSAMPLER) and ``comfy.k_diffusion.sampling``
    (default_noise_sampler), for ``monkeypatch.setitem(sys.modules, …)``."""
    comfy = types.ModuleType("comfy")
    samplers = types.ModuleType("comfy.samplers")
    samplers.KSAMPLER = KSAMPLER  # type: ignore[attr-defined]
    kdiff = types.ModuleType("comfy.k_diffusion")
    kdiff_sampling = types.ModuleType("comfy.k_diffusion.sampling")
    kdiff_sampling.default_noise_sampler = default_noise_sampler  # type: ignore[attr-defined]
    comfy.samplers = samplers  # type: ignore[attr-defined]
    comfy.k_diffusion = kdiff  # type: ignore[attr-defined]
    kdiff.sampling = kdiff_sampling  # type: ignore[attr-defined]
    return {
        "comfy": comfy,
        "comfy.samplers": samplers,
        "comfy.k_diffusion": kdiff,
        "comfy.k_diffusion.sampling": kdiff_sampling,
    }


def flow_net(x: torch.Tensor, t: Any) -> torch.Tensor:
    """A smooth nonlinear stand-in network (its output read as ComfyUI's type reads it)."""
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return 0.6 * x + 0.4 * torch.tanh(1.3 * x) + 1e-4 * t * torch.sin(x)
