"""Property tests: sample_tcd against diffusers' TCDScheduler loop, end to end.

For any config diffusers accepts (beta schedules, trained betas, zero-terminal-SNR, N,
original_inference_steps; ε-, v- and x₀-prediction) and any plan (step counts, strength, custom
timesteps), the SIGMAS of get_sigmas_tcd, a model wrapped the way k-diffusion or ComfyUI wraps
it, the same initial latents (x = x_t/√ᾱ_{t₀}) and the same noise stream: every step's input
and the final sample equal diffusers' within |Δ| ≤ 1e-5·(1+max|ref|) in float32, and the noise
generator ends in diffusers' state. The table comes from each place a UI keeps it: the
``alphas_cumprod`` argument, a k-diffusion ``DiscreteSchedule`` wrapper behind a CFG wrapper
(A1111/Forge), ComfyUI's ``model.inner_model.inner_model.model_sampling``.
"""

from __future__ import annotations

import diffusers
import pytest
import torch
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples
from kdiffusion_helpers import (
    CFGWrapper,
    ComfyModelSampling,
    DiscreteDenoiser,
    assert_close,
    betas64,
    comfy_chain,
    reference_loop,
    toy_net,
)
from kdiffusion_strategies import ETAS, configs, plans, sigma_kwargs

from tcd_kdiffusion import alphas_cumprod_from_sigmas, get_sigmas_tcd, sample_tcd

#: ε-prediction is compared where the plan starts at σ ≤ 20, which holds SD 1.x/2.x and SDXL
#: (σ_max = 14.6), the models TCD was distilled for. Above, x̂₀ = x − σ·ε (k-diffusion's and
#: ComfyUI's ε wrappers, computed in float32 on x of size σ·|z|, with σ itself rounded to
#: float32) carries an absolute error of order σ·|z|·2⁻²⁴ before sample_tcd sees it, and a plan
#: whose first x̂₀ reaches the output (one step, η = 0) passes it on; diffusers' float32
#: (x_t − √(1−ᾱ)·ε)/√ᾱ has the same conditioning. Measured at σ = 64 (squaredcos_cap_v2,
#: t = 989, one step): the two float32 results differ by 1.4e-5 and each is 0.7–1.4e-5 from
#: float64. v- and x₀-prediction have no such cancellation and are compared on every schedule,
#: up to σ ≈ 2e4, so the sampler's own arithmetic is checked there.
EPS_SIGMA_LIMIT = 20.0


def _extra_reference_draws(scheduler: diffusers.TCDScheduler, eta: float) -> int:
    """diffusers draws noise at every step but the one at index num_inference_steps − 1. Custom
    timesteps trimmed by strength keep the untrimmed count, so that index is never reached and
    diffusers also draws at its last step, where the noise's weight is exactly 0. sample_tcd
    draws nothing there: one draw fewer, the same sample."""
    trimmed = len(scheduler.timesteps) < scheduler.num_inference_steps
    return 1 if eta > 0 and trimmed else 0


def run_case(
    cfg: dict, plan: dict, source: str, data: st.DataObject, comfy_table: bool = False
) -> None:
    """One comparison. ``comfy_table``: diffusers' loop (and the network) run on the ComfyUI
    model's own schedule, ᾱ = 1/(1+σ²) of its σ's (float32 roundings of float64 maths), instead
    of diffusers' float32 ᾱ table. Near ᾱ = 1 (t ≲ 5) the two differ by up to 7e-4 in 1 − ᾱ
    (relative; one float32 ulp of ᾱ): different schedules, not different samplers, so the
    property compares like with like. test_default_plans compares ComfyUI's path with
    unmodified diffusers on SD's schedule."""
    probe = diffusers.TCDScheduler(**cfg)
    steps, kwargs = sigma_kwargs(cfg, plan)
    try:
        probe.set_timesteps(**plan)
    except (ValueError, ZeroDivisionError):
        with pytest.raises(ValueError):
            get_sigmas_tcd(steps, probe.alphas_cumprod, **kwargs)
        return
    if len(probe.timesteps) == 0:  # the reference keeps no step; tcd_core refuses such a plan
        with pytest.raises(ValueError):
            get_sigmas_tcd(steps, probe.alphas_cumprod, **kwargs)
        return
    ac = probe.alphas_cumprod
    t0 = int(probe.timesteps[0])
    if ac[t0] == 0:  # zero-terminal SNR at the first step: σ = ∞ has no k-diffusion scaling
        with pytest.raises(ValueError, match="alphas_cumprod"):
            get_sigmas_tcd(steps, ac, **kwargs)
        return

    if cfg["prediction_type"] == "epsilon":
        sigma_first = float(((1 - ac[t0]) / ac[t0]) ** 0.5)
        if sigma_first > EPS_SIGMA_LIMIT:
            reject()

    eta = data.draw(ETAS, label="eta")
    batch = data.draw(st.integers(1, 2), label="batch")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    shape = (batch, 4, 8, 8) if data.draw(st.booleans(), label="square") else (batch, 3, 4, 6)
    net = toy_net(ac, cfg["prediction_type"])
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    trajectory: list[torch.Tensor] = []
    g_ref = torch.Generator().manual_seed(seed + 1)
    table = None
    if comfy_table:  # and a network trained on that schedule (toy_net reads ᾱ_t)
        comfy_sigmas = ComfyModelSampling(betas64(cfg)).sigmas.double()
        table = 1 / (1 + comfy_sigmas**2)  # float64: diffusers' step reads it as it is
        net = toy_net(table, cfg["prediction_type"])
    ref, scheduler = reference_loop(cfg, plan, net, z, eta, g_ref, trajectory, table)

    seen: list[torch.Tensor] = []
    callback = lambda d: seen.append(d["x"])
    pred = cfg["prediction_type"]
    if source == "comfyui":
        sampling = ComfyModelSampling(betas64(cfg))
        sigmas = get_sigmas_tcd(steps, alphas_cumprod_from_sigmas(sampling.sigmas), **kwargs)
        model = comfy_chain(net, cfg, sigmas)
        sampling = model.inner_model.inner_model.model_sampling
        x = sampling.noise_scaling(sigmas[0], z, torch.zeros_like(z), max_denoise=True)
        # ComfyUI's extra_args; the default noise sampler is seeded from extra_args["seed"]
        extra = {"seed": seed + 1, "model_options": {}, "denoise_mask": None}
        out = sample_tcd(model, x, sigmas, extra, callback, True, eta=eta)
        scale = (1 / (1 + sigmas[:-1].double() ** 2)) ** 0.5
    else:
        sigmas = get_sigmas_tcd(steps, ac, **kwargs)
        denoiser = DiscreteDenoiser(net, ac, pred)
        g = torch.Generator().manual_seed(seed + 1)
        draw = lambda sigma, sigma_next: torch.randn(shape, generator=g)
        x = z / ac[t0].sqrt()
        if source == "alphas_cumprod":  # a bare function: the table must be passed
            model = lambda x, sigma, **kw: denoiser(x, sigma, **kw)
            out = sample_tcd(
                model, x, sigmas, None, callback, True, draw, eta=eta, alphas_cumprod=ac
            )
        else:  # A1111 / Forge: a CFG wrapper around a k-diffusion DiscreteSchedule denoiser
            out = sample_tcd(CFGWrapper(denoiser), x, sigmas, None, callback, True, draw, eta)
        for _ in range(_extra_reference_draws(scheduler, eta)):
            torch.randn(shape, generator=g)
        assert torch.equal(g.get_state(), g_ref.get_state()), "noise drawn at other steps"
        scale = ac[scheduler.timesteps].double().sqrt()

    assert out.dtype == torch.float32 and out.shape == z.shape
    assert len(seen) == len(trajectory) == len(scheduler.timesteps)
    for i, (x_k, x_t) in enumerate(zip(seen, trajectory)):
        assert_close((x_k.double() * scale[i]).float(), x_t, f"step inputs ({source})")
    assert_close(out, ref, f"final sample ({source})")


@given(cfg=configs(), data=st.data())
@settings(max_examples=examples(150))
def test_matches_diffusers_with_the_table_argument(cfg: dict, data: st.DataObject) -> None:
    plan = data.draw(plans(cfg["num_train_timesteps"]), label="plan")
    run_case(cfg, plan, "alphas_cumprod", data)


@given(cfg=configs(), data=st.data())
@settings(max_examples=examples(100))
def test_matches_diffusers_through_a_kdiffusion_wrapper(cfg: dict, data: st.DataObject) -> None:
    plan = data.draw(plans(cfg["num_train_timesteps"]), label="plan")
    run_case(cfg, plan, "k-diffusion", data)


@given(cfg=configs(), data=st.data())
@settings(max_examples=examples(100))
def test_matches_diffusers_through_comfyui_objects(cfg: dict, data: st.DataObject) -> None:
    # ComfyUI's zero-SNR variant is its own (last ᾱ clamped to 4.9e-8), not diffusers' table
    cfg["rescale_betas_zero_snr"] = False
    plan = data.draw(plans(cfg["num_train_timesteps"]), label="plan")
    run_case(cfg, plan, "comfyui", data, comfy_table=True)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.3, 0.0, 1.0])
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_default_plans(prediction_type: str, eta: float, steps: int) -> None:
    """The cases users run, exhaustively: SD's config, 1–8 steps, η ∈ {0, 0.3, 1}."""
    cfg = {
        "prediction_type": prediction_type,
        "num_train_timesteps": 1000,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
    }

    class Fixed:  # a minimal stand-in for hypothesis' data object
        def __init__(self, values):
            self.values = iter(values)

        def draw(self, strategy, label=None):
            return next(self.values)

    for source in ("alphas_cumprod", "k-diffusion", "comfyui"):
        data = Fixed([eta, 2, 1234, True])
        run_case(cfg, {"num_inference_steps": steps}, source, data)  # type: ignore[arg-type]
