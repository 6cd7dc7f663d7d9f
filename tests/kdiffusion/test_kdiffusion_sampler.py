"""sample_tcd's k-diffusion contract: where the table is found, when noise is drawn, the
callback, the progress bar, dtypes, per-batch η, split schedules and the initial-noise
conventions of the UIs."""

from __future__ import annotations

import importlib.abc
import subprocess
import sys

import diffusers
import numpy as np
import pytest
import torch
from kdiffusion_helpers import (
    TOL,
    CFGWrapper,
    ComfyModelSampling,
    DiscreteDenoiser,
    assert_close,
    betas64,
    comfy_chain,
    reference_loop,
    toy_net,
)

import tcd_kdiffusion
from tcd_core import TCDConfig, alphas_cumprod
from tcd_kdiffusion import default_noise_sampler, get_sigmas_tcd, sample_tcd
from tcd_kdiffusion.model_sampling import resolve_schedule as resolve_table

AC = torch.from_numpy(alphas_cumprod(TCDConfig()))
SHAPE = (2, 4, 8, 8)


def denoiser(prediction_type: str = "epsilon") -> DiscreteDenoiser:
    return DiscreteDenoiser(toy_net(AC, prediction_type), AC, prediction_type)


def z_of(seed: int = 0, shape=SHAPE) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


class CountingNoise:
    """A noise sampler over a seeded generator that records the σ pairs it was called with."""

    def __init__(self, seed: int, shape=SHAPE, dtype=torch.float32) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.shape, self.dtype = shape, dtype
        self.calls: list[tuple[float, float]] = []

    def __call__(self, sigma, sigma_next):
        self.calls.append((float(sigma), float(sigma_next)))
        return torch.randn(self.shape, generator=self.g).to(self.dtype)


# --------------------------------------------------------------------------------------------
# the table


def test_table_discovery_paths() -> None:
    sig = get_sigmas_tcd(4, AC)
    comfy = comfy_chain(toy_net(AC), {}, sig)
    found = resolve_table(comfy)
    # not KSamplerX0Inpaint's own `sigmas` (the sampling schedule) but the model's table
    assert found.source == "model.inner_model.inner_model.model_sampling.sigmas"
    assert len(found.alphas_cumprod) == 1000
    assert resolve_table(CFGWrapper(denoiser())).source == "model.inner_model.sigmas"
    assert resolve_table(denoiser()).source == "model.sigmas"

    class LatentDiffusion(torch.nn.Module):  # A1111's sd_model: an alphas_cumprod buffer
        def __init__(self):
            super().__init__()
            self.register_buffer("alphas_cumprod", AC.clone())

    class Wrapper:
        def __init__(self, inner):
            self.inner_model = inner

    ldm = resolve_table(Wrapper(Wrapper(LatentDiffusion())))
    assert ldm.source == "model.inner_model.inner_model.alphas_cumprod"
    assert np.array_equal(ldm.alphas_cumprod, AC.numpy())
    # the argument wins over whatever the model carries
    assert resolve_table(comfy, AC).source == "`alphas_cumprod`"


def test_attributes_that_raise_are_skipped() -> None:
    class Awkward:
        @property
        def model_sampling(self):
            raise RuntimeError("not loaded")

        @property
        def sigmas(self):
            raise RuntimeError("not loaded")

        inner_model = CFGWrapper(denoiser())

    assert resolve_table(Awkward()).source == "model.inner_model.inner_model.sigmas"


def test_comfyui_default_noise_is_seeded_from_extra_args() -> None:
    sig = get_sigmas_tcd(4, AC)
    model = comfy_chain(toy_net(AC), {}, sig)
    x = z_of() * (1 + sig[0] ** 2) ** 0.5
    extra = {"seed": 42, "model_options": {}, "denoise_mask": None}
    a = sample_tcd(model, x, sig, extra, disable=True)
    b = sample_tcd(model, x, sig, dict(extra), disable=True)
    c = sample_tcd(model, x, sig, dict(extra, seed=43), disable=True)
    noise = default_noise_sampler(x, seed=42)
    d = sample_tcd(model, x, sig, dict(extra), disable=True, noise_sampler=noise)
    assert torch.equal(a, b) and torch.equal(a, d) and not torch.equal(a, c)


def test_diffusers_step_noise_is_the_pipelines_stream_for_the_seed() -> None:
    """``step_noise="diffusers"`` outside ComfyUI (Forge, A1111, a script): the seed in
    ``extra_args`` gives the stream of ``diffusers_noise_sampler``, not the default one; a
    ``noise_sampler`` passed in wins; a name it does not know is refused even then."""
    sig = get_sigmas_tcd(4, AC)
    model = comfy_chain(toy_net(AC), {}, sig)
    x = z_of() * (1 + sig[0] ** 2) ** 0.5
    extra = {"seed": 9, "model_options": {}, "denoise_mask": None}
    run = lambda **kw: sample_tcd(model, x, sig, dict(extra), disable=True, **kw)
    ours = run(step_noise="diffusers")
    assert torch.equal(ours, run(noise_sampler=tcd_kdiffusion.diffusers_noise_sampler(x, 9)))
    assert not torch.equal(ours, run())  # the default: ComfyUI's stream for the seed
    assert torch.equal(run(), run(step_noise="comfyui"))
    custom = run(step_noise="diffusers", noise_sampler=default_noise_sampler(x, seed=9))
    assert torch.equal(custom, run())
    with pytest.raises(ValueError, match="step_noise"):
        run(step_noise="numpy", noise_sampler=default_noise_sampler(x, seed=9))
    with pytest.raises(ValueError, match="seed"):
        sample_tcd(denoiser(), x, sig, disable=True, step_noise="diffusers")
    assert tcd_kdiffusion.STEP_NOISE == ("comfyui", "diffusers")


def test_comfyui_step_noise_outside_comfyui_tries_no_import(monkeypatch) -> None:
    """Outside ComfyUI, ``step_noise="comfyui"`` is our seeded ``default_noise_sampler``, found
    without trying to import ComfyUI: a failed import on every call cost ~0.1 ms."""
    tried: list[str] = []

    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "comfy":
                tried.append(name)
            return None

    for name in [m for m in sys.modules if m.split(".")[0] == "comfy"]:
        monkeypatch.delitem(sys.modules, name)  # stand-ins another test left behind
    monkeypatch.setattr(sys, "meta_path", [Spy(), *sys.meta_path])
    sig = get_sigmas_tcd(4, AC)
    model = comfy_chain(toy_net(AC), {}, sig)
    x = z_of() * (1 + sig[0] ** 2) ** 0.5
    extra = {"seed": 3, "model_options": {}, "denoise_mask": None}
    ours = sample_tcd(model, x, sig, dict(extra), disable=True, step_noise="comfyui")
    noise = default_noise_sampler(x, seed=3)
    assert torch.equal(
        ours, sample_tcd(model, x, sig, dict(extra), disable=True, noise_sampler=noise)
    )
    assert tried == []


# --------------------------------------------------------------------------------------------
# noise, callback, progress bar


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_noise_is_drawn_where_diffusers_draws_it(steps: int, eta: float) -> None:
    sig = get_sigmas_tcd(steps, AC)
    noise = CountingNoise(1)
    sample_tcd(denoiser(), z_of() * sig[0], sig, noise_sampler=noise, eta=eta, disable=True)
    expected = [(float(sig[i]), float(sig[i + 1])) for i in range(steps - 1)] if eta > 0 else []
    assert noise.calls == expected
    # diffusers: one draw per non-final step when η > 0 (its generator advances as ours did)
    g = torch.Generator().manual_seed(1)
    reference_loop({}, {"num_inference_steps": steps}, toy_net(AC), z_of(), eta, g)
    assert torch.equal(g.get_state(), noise.g.get_state())


def test_default_noise_without_a_seed_is_randn_like() -> None:
    sig = get_sigmas_tcd(4, AC)
    x = z_of() * sig[0]
    torch.manual_seed(5)
    a = sample_tcd(denoiser(), x, sig, disable=True)
    torch.manual_seed(5)
    b = sample_tcd(denoiser(), x, sig, disable=True, noise_sampler=lambda s, n: torch.randn_like(x))
    assert torch.equal(a, b)


def test_callback_and_model_calls() -> None:
    sig = get_sigmas_tcd(4, AC)
    model = denoiser()
    seen = []
    out = sample_tcd(model, z_of() * sig[0], sig, callback=seen.append, disable=True)
    assert model.calls == 4
    assert [d["i"] for d in seen] == [0, 1, 2, 3]
    assert all(set(d) == {"x", "i", "sigma", "sigma_hat", "denoised"} for d in seen)
    assert all(d["sigma"] == d["sigma_hat"] == sig[d["i"]] for d in seen)
    assert all(d["x"].shape == d["denoised"].shape == out.shape for d in seen)
    # each callback's x is the latent the model was called with at that σ
    x0 = seen[1]["x"]
    assert torch.equal(seen[1]["denoised"], model(x0, sig[1] * x0.new_ones(2)))


def test_extra_args_reach_the_model() -> None:
    got = []

    def model(x, sigma, cond=None, seed=None):
        got.append((cond, seed))
        return torch.zeros_like(x)

    sig = get_sigmas_tcd(2, AC)
    sample_tcd(model, z_of(), sig, {"cond": "c", "seed": 3}, alphas_cumprod=AC, disable=True)
    assert got == [("c", 3), ("c", 3)]


def test_progress_bar(capsys) -> None:
    sig = get_sigmas_tcd(4, AC)
    sample_tcd(denoiser(), z_of() * sig[0], sig, disable=True)
    assert "4/4" not in capsys.readouterr().err
    sample_tcd(denoiser(), z_of() * sig[0], sig, disable=False)
    assert "4/4" in capsys.readouterr().err


def test_runs_without_tqdm(monkeypatch) -> None:
    sig = get_sigmas_tcd(4, AC)
    x = z_of() * sig[0]
    ref = sample_tcd(denoiser(), x, sig, noise_sampler=CountingNoise(2), disable=False)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # `from tqdm.auto import ...` fails
    out = sample_tcd(denoiser(), x, sig, noise_sampler=CountingNoise(2), disable=False)
    assert torch.equal(out, ref)


# --------------------------------------------------------------------------------------------
# schedules, η, dtypes


def test_single_sigma_returns_x_without_calling_the_model() -> None:
    x = z_of()
    out = sample_tcd(lambda *a, **k: pytest.fail("called"), x, torch.tensor([0.0]), disable=True)
    assert out is x


def test_sigmas_as_list_array_or_float64_tensor() -> None:
    sig = get_sigmas_tcd(4, AC)
    x = z_of() * sig[0]
    ref = sample_tcd(denoiser(), x, sig, noise_sampler=CountingNoise(3), disable=True)
    for form in (sig.tolist(), sig.numpy(), sig.double()):
        out = sample_tcd(denoiser(), x, form, noise_sampler=CountingNoise(3), disable=True)
        assert_close(out, ref, "sigmas forms")


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("split", [1, 2, 3])
def test_a_split_schedule_equals_the_whole(eta: float, split: int) -> None:
    """ComfyUI's SplitSigmas: the first part ends at σ > 0 and re-noises there; running the two
    parts back to back with one noise stream is the whole run, bit for bit."""
    sig = get_sigmas_tcd(4, AC)
    x = z_of() * sig[0]
    noise = CountingNoise(4)
    whole = sample_tcd(denoiser(), x, sig, noise_sampler=noise, eta=eta, disable=True)
    parts = CountingNoise(4)
    half = sample_tcd(denoiser(), x, sig[: split + 1], noise_sampler=parts, eta=eta, disable=True)
    out = sample_tcd(denoiser(), half, sig[split:], noise_sampler=parts, eta=eta, disable=True)
    assert torch.equal(out, whole)
    assert parts.calls == noise.calls


def test_per_batch_eta_equals_one_run_per_eta() -> None:
    etas = [0.0, 0.3, 1.0]
    sig = get_sigmas_tcd(4, AC)
    x = z_of(shape=(3, 4, 8, 8)) * sig[0]
    batch = sample_tcd(
        denoiser(),
        x,
        sig,
        noise_sampler=CountingNoise(6, (3, 4, 8, 8)),
        eta=torch.tensor(etas, dtype=torch.float64),
        disable=True,
    )
    for b, eta in enumerate(etas):
        noise = CountingNoise(6, (3, 4, 8, 8))
        if eta == 0:  # a scalar η = 0 draws nothing; the batched run drew (and weighted by 0)
            noise = lambda s, n: torch.full((3, 4, 8, 8), float("nan"))
        single = sample_tcd(denoiser(), x, sig, noise_sampler=noise, eta=eta, disable=True)
        assert torch.equal(batch[b], single[b]), eta
    # a float32 η tensor and a list of η are accepted too
    for form in (torch.tensor(etas), etas):
        out = sample_tcd(
            denoiser(), x, sig, noise_sampler=CountingNoise(6, (3, 4, 8, 8)), eta=form, disable=True
        )
        assert torch.equal(out, batch)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_is_kept(dtype: torch.dtype) -> None:
    sig = get_sigmas_tcd(4, AC)
    x = z_of() * sig[0]
    ref = sample_tcd(denoiser(), x, sig, noise_sampler=CountingNoise(7), disable=True)
    model = lambda x, sigma: denoiser()(x.float(), sigma).to(x.dtype)
    noise = CountingNoise(7, dtype=dtype)
    out = sample_tcd(model, x.to(dtype), sig, noise_sampler=noise, alphas_cumprod=AC, disable=True)
    assert out.dtype == dtype
    eps = torch.finfo(dtype).eps if dtype != torch.float64 else 1e-6
    scale = 1 + float(ref.abs().max())
    assert float((out.double() - ref.double()).abs().max()) <= 8 * eps * scale


# --------------------------------------------------------------------------------------------
# initial noise: the UIs' conventions


def test_initial_noise_conventions() -> None:
    """diffusers starts from x_T = z. ComfyUI's KSampler scales z by √(1+σ_max²) when the
    schedule starts at the model's σ_max (noise_scaling with max_denoise): the same x_T = z.
    A1111, Forge and plain k-diffusion start from σ_max·z, i.e. x_T = √(1−ᾱ_T)·z: the same
    seed gives a slightly different image, and exactly diffusers' image from √(1−ᾱ_T)·z."""
    steps, eta, seed = 4, 0.3, 11
    sig = get_sigmas_tcd(steps, AC)
    net = toy_net(AC)
    z = z_of(seed)
    ref, _ = reference_loop({}, {"num_inference_steps": steps}, net, z, eta, CountingNoise(8).g)
    sampling = ComfyModelSampling(betas64({}))
    comfy_x = sampling.noise_scaling(sig[0], z, torch.zeros_like(z), max_denoise=True)
    ui_x = z * sig[0]  # A1111 / Forge / k-diffusion
    comfy = sample_tcd(
        denoiser(), comfy_x, sig, noise_sampler=CountingNoise(8), eta=eta, disable=True
    )
    ui = sample_tcd(denoiser(), ui_x, sig, noise_sampler=CountingNoise(8), eta=eta, disable=True)
    assert_close(comfy, ref, "initial noise: ComfyUI")
    scale = 1 + float(ref.abs().max())
    assert float((ui - ref).abs().max()) > 20 * TOL * scale  # a real difference, not rounding
    shrunk = z * (1 - AC[999]).sqrt()
    ref_ui, _ = reference_loop(
        {}, {"num_inference_steps": steps}, net, shrunk, eta, CountingNoise(8).g
    )
    assert_close(ui, ref_ui, "initial noise: σ_max·z")


# --------------------------------------------------------------------------------------------
# the package


def test_public_api() -> None:
    # ruff's RUF022 order, as in tcd_core: CONSTANTS, then Classes, then functions
    kind = lambda n: 0 if n.isupper() else 1 if n[0].isupper() else 2
    assert tcd_kdiffusion.__all__ == sorted(tcd_kdiffusion.__all__, key=lambda n: (kind(n), n))
    for name in tcd_kdiffusion.__all__:
        assert hasattr(tcd_kdiffusion, name)
    from importlib.resources import files

    assert files("tcd_kdiffusion").joinpath("py.typed").is_file()


def test_import_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import tcd_kdiffusion\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'pip install "tcd-core[kdiffusion]"' in out.stdout and "torch" in out.stdout


def test_sample_tcd_is_a_drop_in_for_kdiffusion_callers() -> None:
    """The positional order of k-diffusion's samplers and ComfyUI's KSAMPLER call."""
    import inspect

    params = list(inspect.signature(sample_tcd).parameters)
    assert params[:7] == [
        "model",
        "x",
        "sigmas",
        "extra_args",
        "callback",
        "disable",
        "noise_sampler",
    ]
    assert inspect.signature(sample_tcd).parameters["eta"].default == 0.3


def test_comfyui_ksampler_call_shape() -> None:
    """What comfy.samplers.KSAMPLER(sample_tcd, extra_options={"eta": η}).sample does: noise
    scaled by the model sampling, then fn(model_k, noise, sigmas, extra_args=..., callback=...,
    disable=..., **extra_options)."""
    sig = get_sigmas_tcd(4, AC)
    model_k = comfy_chain(toy_net(AC), {}, sig)
    sampling = model_k.inner_model.inner_model.model_sampling
    noise = sampling.noise_scaling(sig[0], z_of(), torch.zeros(SHAPE), max_denoise=True)
    steps = []
    out = sample_tcd(
        model_k,
        noise,
        sig,
        extra_args={"seed": 0, "model_options": {}, "denoise_mask": None},
        callback=lambda d: steps.append(d["i"]),
        disable=True,
        eta=0.3,
    )
    assert steps == [0, 1, 2, 3] and out.shape == SHAPE
    ref, _ = reference_loop(
        {}, {"num_inference_steps": 4}, toy_net(AC), z_of(), 0.3, torch.Generator().manual_seed(0)
    )
    assert_close(out, ref, "ComfyUI KSAMPLER call")


def test_v_prediction_through_comfyui_objects_on_sd2_schedule() -> None:
    cfg = {"prediction_type": "v_prediction"}
    sched = diffusers.TCDScheduler(**cfg)
    sig = get_sigmas_tcd(4, sched.alphas_cumprod)
    model = comfy_chain(toy_net(AC, "v_prediction"), cfg, sig)
    x = z_of(3) * (1 + sig[0] ** 2) ** 0.5
    out = sample_tcd(model, x, sig, {"seed": 9}, disable=True)
    ref, _ = reference_loop(
        cfg,
        {"num_inference_steps": 4},
        toy_net(AC, "v_prediction"),
        z_of(3),
        0.3,
        torch.Generator().manual_seed(9),
    )
    assert_close(out, ref, "ComfyUI v-prediction")


@pytest.mark.parametrize("sigma_dtype", [torch.float32, torch.float64])
def test_the_model_gets_sigma_times_s_in(sigma_dtype) -> None:
    """k-diffusion calls model(x, sigmas[i] * x.new_ones([B])): one σ per batch element, in
    the dtype torch's promotion gives a 0-d σ times x's ones (x's dtype)."""
    got = []

    def model(x, sigma):
        got.append(sigma)
        return torch.zeros_like(x)

    sig = get_sigmas_tcd(3, AC).to(sigma_dtype)
    sample_tcd(model, z_of(), sig, alphas_cumprod=AC, disable=True)
    assert [s.shape for s in got] == [torch.Size([2])] * 3
    assert all(s.dtype == torch.float32 for s in got)
    assert [float(s[0]) for s in got] == [float(v) for v in sig[:-1]]
