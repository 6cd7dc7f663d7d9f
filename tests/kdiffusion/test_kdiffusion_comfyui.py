"""The ComfyUI node pack (issue 19) on stand-ins written from ComfyUI's conventions
(``comfy_standins``; tests/comfyui/check_real_comfyui.py runs the same checks on real ComfyUI).

* the pack: mappings, node interfaces, loaded as ComfyUI's loader loads a file (a top-level
  module from a path), the one-command install;
* every model sampling: SD-style ε/v against diffusers' TCDScheduler through KSAMPLER for both
  step-noise modes, the lcm patch (the timesteps the network sees, against diffusers and the
  unpatched model), flow models (CONST, Cosmos) at η = 0 against ComfyUI's euler and at η = 1
  against its lcm, between them against the formula in float64, and a ValueError before the
  first model call for the continuous-time classes;
* the TCD Sigmas node's grids, and the step noise for a seed.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch
from comfy_standins import (
    CONST,
    COSMOS_RFLOW,
    EPS,
    KSAMPLER,
    LCM,
    V_PREDICTION,
    X0,
    BaseModel,
    Model,
    ModelSamplingContinuousEDM,
    ModelSamplingContinuousV,
    ModelSamplingCosmosRFlow,
    ModelSamplingDiscrete,
    ModelSamplingDiscreteDistilled,
    ModelSamplingDiscreteEDM,
    ModelSamplingDiscreteFlow,
    ModelSamplingFlux,
    StableCascadeSampling,
    comfy_modules,
    flow_net,
    model_sampling,
    prepare_noise,
    run,
    sample_euler,
    sample_lcm,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples
from kdiffusion_helpers import assert_close, reference_loop, toy_net

import tcd_kdiffusion.comfyui as pack
from tcd_kdiffusion import (
    FlowSchedule,
    get_sigmas_tcd,
    model_sampling_sigmas,
    resolve_model_sampling,
    sample_tcd,
)
from tcd_kdiffusion.comfyui import install as installer

SHAPE = (1, 4, 8, 8)
SEED = 42


@pytest.fixture
def comfy(monkeypatch):
    """ComfyUI's ``comfy.samplers`` and ``comfy.k_diffusion.sampling``, stood in."""
    modules = comfy_modules()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return modules


def tcd_sampler(eta: float, step_noise: str = "comfyui") -> KSAMPLER:
    (sampler,) = pack.SamplerTCD().get_sampler(eta=eta, step_noise=step_noise)
    return sampler


def sigmas_node(model: Model, steps: int, denoise: float = 1.0) -> torch.Tensor:
    return pack.TCDSigmas().get_sigmas(model, steps, denoise)[0]


def table_of(sampling) -> torch.Tensor:
    return 1 / (1 + sampling.sigmas.double() ** 2)


# --------------------------------------------------------------------------------------------
# the pack


def test_mappings_and_node_interfaces():
    assert set(pack.NODE_CLASS_MAPPINGS) == {"SamplerTCD", "TCDSigmas"}
    assert pack.NODE_DISPLAY_NAME_MAPPINGS == {
        "SamplerTCD": "Sampler TCD",
        "TCDSigmas": "TCD Sigmas",
    }
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        assert callable(getattr(cls(), cls.FUNCTION))
        assert cls.CATEGORY.startswith("sampling/custom_sampling/")
    sampler = pack.SamplerTCD.INPUT_TYPES()["required"]
    assert pack.SamplerTCD.RETURN_TYPES == ("SAMPLER",)
    assert sampler["eta"][0] == "FLOAT" and sampler["eta"][1]["default"] == 0.3
    assert (sampler["eta"][1]["min"], sampler["eta"][1]["max"]) == (0.0, 1.0)
    assert sampler["step_noise"][0] == ["comfyui", "diffusers"]
    sigmas = pack.TCDSigmas.INPUT_TYPES()["required"]
    assert pack.TCDSigmas.RETURN_TYPES == ("SIGMAS",)
    assert sigmas["model"] == ("MODEL",) and sigmas["steps"][0] == "INT"
    assert sigmas["denoise"][0] == "FLOAT" and sigmas["denoise"][1]["default"] == 1.0
    # The text ComfyUI shows for a node is its docstring, on one line.
    assert pack.SamplerTCD.DESCRIPTION.startswith("TCD (Trajectory Consistency Distillation)")
    assert "eta is TCD's gamma" in pack.SamplerTCD.DESCRIPTION
    assert pack.TCDSigmas.DESCRIPTION.startswith("TCD's sigmas:")
    assert "\n" not in pack.SamplerTCD.DESCRIPTION + pack.TCDSigmas.DESCRIPTION


def _load_like_comfyui(path: str, name: str):
    """nodes.load_custom_node: the folder's __init__.py run as a top-level module named after
    its path (so only absolute imports work)."""
    spec = importlib.util.spec_from_file_location(name, f"{path}/__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_loads_from_its_installed_location_as_comfyui_loads_it():
    folder = pack.__file__.rsplit("/", 1)[0]
    module = _load_like_comfyui(folder, folder.replace(".", "_x_"))
    assert module.NODE_CLASS_MAPPINGS["SamplerTCD"] is pack.SamplerTCD
    assert module.NODE_DISPLAY_NAME_MAPPINGS == pack.NODE_DISPLAY_NAME_MAPPINGS


def test_install_writes_the_folder_comfyui_loads(tmp_path, capsys):
    (tmp_path / "custom_nodes").mkdir()
    assert installer.main([str(tmp_path)]) == 0
    written = tmp_path / "custom_nodes" / installer.FOLDER / "__init__.py"
    assert written.read_text() == installer.SHIM
    assert "Sampler TCD" in capsys.readouterr().out
    module = _load_like_comfyui(str(written.parent), str(written.parent).replace(".", "_x_"))
    assert module.NODE_CLASS_MAPPINGS is pack.NODE_CLASS_MAPPINGS
    # again (an update), and into custom_nodes itself
    assert installer.install(tmp_path / "custom_nodes") == written


def test_install_refuses_what_it_did_not_write(tmp_path, capsys):
    assert installer.main([str(tmp_path)]) == 1  # no custom_nodes
    assert "not a ComfyUI folder" in capsys.readouterr().err
    target = tmp_path / "custom_nodes" / installer.FOLDER
    target.mkdir(parents=True)
    (target / "__init__.py").write_text("# someone else's\n")
    with pytest.raises(ValueError, match="was not written by"):
        installer.install(tmp_path)
    installer.install(tmp_path, force=True)
    assert (target / "__init__.py").read_text() == installer.SHIM


def test_sampler_node_builds_comfyuis_ksampler(comfy):
    sampler = tcd_sampler(0.25, "diffusers")
    assert isinstance(sampler, comfy["comfy.samplers"].KSAMPLER)
    assert sampler.sampler_function is sample_tcd  # the node's choices are its extra options
    assert pack.sample_tcd_comfyui is sample_tcd  # the former name
    assert sampler.extra_options == {"eta": 0.25, "step_noise": "diffusers"}
    with pytest.raises(ValueError, match="step_noise"):
        pack.SamplerTCD().get_sampler(eta=0.3, step_noise="numpy")


# --------------------------------------------------------------------------------------------
# SD-style models against diffusers


def _sd_model(kind, prediction: str, **settings) -> tuple[Model, torch.Tensor]:
    sampling = model_sampling(ModelSamplingDiscrete, kind, **settings)
    ac = table_of(sampling)
    return Model(BaseModel(toy_net(ac, prediction), sampling)), ac


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("step_noise", ["comfyui", "diffusers"])
@pytest.mark.parametrize(("kind", "prediction"), [(EPS, "epsilon"), (V_PREDICTION, "v_prediction")])
def test_sd_models_equal_diffusers_per_seed(comfy, kind, prediction, step_noise, eta):
    """SamplerCustom's seed: the initial noise as ComfyUI draws it; the step noise from a fresh
    generator for the seed (comfyui) or after the latents from the same one (diffusers: a
    pipeline's generator)."""
    model, ac = _sd_model(kind, prediction)
    sigmas = sigmas_node(model, 4)
    z = prepare_noise(torch.zeros(SHAPE), SEED)
    ours, calls = run(model, tcd_sampler(eta, step_noise), sigmas, z, SEED)
    generator = torch.Generator().manual_seed(SEED)
    if step_noise == "diffusers":
        assert torch.equal(torch.randn(SHAPE, generator=generator), z)
    cfg = {"prediction_type": prediction}
    ref, _ = reference_loop(
        cfg,
        {"num_inference_steps": 4},
        toy_net(ac, prediction),
        z,
        eta,
        generator,
        alphas_cumprod=ac.float(),
    )
    assert_close(ours, ref, f"comfyui {prediction} seed")
    assert calls == 4


def test_same_seed_same_image_different_seed_different_image(comfy):
    model, _ = _sd_model(EPS, "epsilon")
    sigmas = sigmas_node(model, 4)
    z = prepare_noise(torch.zeros(SHAPE), SEED)
    a, _ = run(model, tcd_sampler(0.3), sigmas, z, SEED)
    b, _ = run(model, tcd_sampler(0.3), sigmas, z, SEED)
    c, _ = run(model, tcd_sampler(0.3), sigmas, z, SEED + 1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_comfyui_step_noise_is_comfyuis_own_sampler(comfy, monkeypatch):
    drawn = []
    own = comfy["comfy.k_diffusion.sampling"].default_noise_sampler

    def spy(x, seed=None):
        drawn.append(seed)
        return own(x, seed=seed)

    monkeypatch.setattr(comfy["comfy.k_diffusion.sampling"], "default_noise_sampler", spy)
    model, _ = _sd_model(EPS, "epsilon")
    run(model, tcd_sampler(0.3), sigmas_node(model, 4), torch.zeros(SHAPE), 7)
    assert drawn == [7]


def test_diffusers_step_noise_needs_a_seed():
    model, _ = _sd_model(EPS, "epsilon")
    sigmas = sigmas_node(model, 2)
    with pytest.raises(ValueError, match="seed"):
        pack.sample_tcd_comfyui(
            lambda x, s, **k: x, torch.zeros(SHAPE), sigmas, step_noise="diffusers"
        )
    with pytest.raises(ValueError, match="step_noise"):
        pack.sample_tcd_comfyui(lambda x, s, **k: x, torch.zeros(SHAPE), sigmas, step_noise="x")


def test_x0_model_and_image_to_image(comfy):
    """X0 (the network returns x̂₀) and denoise < 1: diffusers' set_timesteps(n, strength)
    from add_noise(latent), which ComfyUI's noise_scaling (latent + σ·z) is."""
    model, ac = _sd_model(X0, "sample")
    sigmas = sigmas_node(model, 4, 0.5)
    latent = torch.tanh(torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)))
    z = prepare_noise(latent, SEED)
    ours, _ = run(model, tcd_sampler(0.3, "diffusers"), sigmas, z, SEED, latent)
    generator = torch.Generator().manual_seed(SEED)
    torch.randn(SHAPE, generator=generator)
    import diffusers

    scheduler = diffusers.TCDScheduler(prediction_type="sample")
    scheduler.alphas_cumprod = ac.float()
    scheduler.set_timesteps(4, strength=0.5)
    x = scheduler.add_noise(latent, z, scheduler.timesteps[:1])
    net = toy_net(ac, "sample")
    for t in scheduler.timesteps:
        x = scheduler.step(net(x, int(t)), t, x, eta=0.3, generator=generator).prev_sample
    assert_close(ours, x, "comfyui img2img")


# --------------------------------------------------------------------------------------------
# the lcm patch


@pytest.mark.parametrize("zsnr", [False, True])
def test_lcm_patch_is_the_unpatched_model(comfy, zsnr):
    """ModelSamplingDiscrete 'lcm': 50 σ's, the network at 999, 759, 499, 259 (not 49, 37, 24,
    12), its boundary condition undone: the image of the same model unpatched."""
    patched_sampling = model_sampling(ModelSamplingDiscreteDistilled, LCM, zsnr=zsnr)
    full_sampling = model_sampling(ModelSamplingDiscrete, EPS, zsnr=zsnr)
    net = toy_net(table_of(full_sampling), "epsilon")
    patched = Model(BaseModel(net, patched_sampling))
    plain = Model(BaseModel(net, full_sampling))
    assert len(patched_sampling.sigmas) == 50
    sigmas = sigmas_node(patched, 4)
    assert torch.equal(sigmas, sigmas_node(plain, 4))
    z = prepare_noise(torch.zeros(SHAPE), SEED)
    ours, calls = run(patched, tcd_sampler(0.3), sigmas, z, SEED)
    ref, _ = run(plain, tcd_sampler(0.3), sigmas, z, SEED)
    assert patched.model.timesteps == [[999], [759], [499], [259]] and calls == 4
    assert_close(ours, ref, "lcm patch vs unpatched")


def test_lcm_patch_equals_diffusers(comfy):
    sampling = model_sampling(ModelSamplingDiscreteDistilled, LCM)
    ac = table_of(model_sampling(ModelSamplingDiscrete, EPS))
    model = Model(BaseModel(toy_net(ac, "epsilon"), sampling))
    z = prepare_noise(torch.zeros(SHAPE), SEED)
    for steps in (4, 8, 50):  # 50 steps reach t = 19, where c_skip is largest
        ours, _ = run(model, tcd_sampler(0.3, "diffusers"), sigmas_node(model, steps), z, SEED)
        generator = torch.Generator().manual_seed(SEED)
        torch.randn(SHAPE, generator=generator)
        ref, _ = reference_loop(
            {},
            {"num_inference_steps": steps},
            toy_net(ac, "epsilon"),
            z,
            0.3,
            generator,
            alphas_cumprod=ac.float(),
        )
        assert_close(ours, ref, "lcm patch vs diffusers")


def test_lcm_patch_refuses_sigmas_it_cannot_evaluate(comfy):
    sampling = model_sampling(ModelSamplingDiscreteDistilled, LCM)
    model = Model(BaseModel(toy_net(table_of(sampling), "epsilon"), sampling))
    ac = table_of(model_sampling(ModelSamplingDiscrete, EPS))
    off_grid = get_sigmas_tcd(None, ac, timesteps=[999, 749, 499, 249])  # 749 is not kept
    with pytest.raises(ValueError, match="not a σ of the model's noise schedule"):
        run(model, tcd_sampler(0.3), off_grid, torch.zeros(SHAPE), SEED)
    assert model.model.timesteps == []


def test_lcm_patch_with_an_unknown_schedule_is_refused(comfy):
    sampling = model_sampling(ModelSamplingDiscreteDistilled, LCM)
    sampling.linear_end = 0.02  # the settings no longer give back its 50 σ's
    model = Model(BaseModel(toy_net(table_of(sampling), "epsilon"), sampling))
    with pytest.raises(ValueError, match="match none of ComfyUI's beta schedules"):
        run(model, tcd_sampler(0.3), sampling.sigmas.flip(0)[::12], torch.zeros(SHAPE), SEED)
    with pytest.raises(ValueError, match="match none"):
        sigmas_node(model, 4)
    assert model.model.timesteps == []


def test_sqrt_linear_lcm_patch(comfy):
    """Another of ComfyUI's beta schedules (sqrt_linear: linear β, as SD 2 inpainting's)."""
    settings = dict(beta_schedule="sqrt_linear", linear_start=0.0001, linear_end=0.02)
    patched = model_sampling(ModelSamplingDiscreteDistilled, LCM, **settings)
    full = model_sampling(ModelSamplingDiscrete, EPS, **settings)
    table = resolve_model_sampling(patched)
    np.testing.assert_array_equal(table.alphas_cumprod, resolve_model_sampling(full).alphas_cumprod)


# --------------------------------------------------------------------------------------------
# flow models against ComfyUI's euler and lcm


def _flow_models():
    return {
        "SD3 shift 3": model_sampling(ModelSamplingDiscreteFlow, CONST, shift=3.0),
        "AuraFlow": model_sampling(ModelSamplingDiscreteFlow, CONST, shift=1.73, multiplier=1.0),
        "FLUX": model_sampling(ModelSamplingFlux, CONST, shift=1.15),
        "Cosmos": model_sampling(ModelSamplingCosmosRFlow, COSMOS_RFLOW, sigma_max=80.0),
    }


@pytest.mark.parametrize("name", ["SD3 shift 3", "AuraFlow", "FLUX", "Cosmos"])
@pytest.mark.parametrize("denoise", [1.0, 0.6])
def test_flow_eta_0_is_euler_and_eta_1_is_lcm(comfy, name, denoise):
    sampling = _flow_models()[name]
    model = Model(BaseModel(flow_net, sampling))
    sigmas = sigmas_node(model, 4, denoise)
    latent = torch.zeros(SHAPE)
    if denoise < 1:
        latent = torch.tanh(torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)))
    z = prepare_noise(latent, SEED)
    for eta, reference in ((0.0, sample_euler), (1.0, sample_lcm)):
        ours, calls = run(model, tcd_sampler(eta), sigmas, z, SEED, latent)
        ref, _ = run(model, KSAMPLER(reference), sigmas, z, SEED, latent)
        assert_close(ours, ref, f"flow eta={eta:g} vs {reference.__name__}")
        assert calls == 4


class Chain:
    """KSamplerX0Inpaint → CFGGuider → BaseModel, in short (sample_tcd finds the model
    sampling at ``.inner_model.inner_model.model_sampling``)."""

    def __init__(self, base: BaseModel) -> None:
        self.inner_model = type("CFGGuider", (), {"inner_model": base})()
        self.base = base

    def __call__(self, x, sigma, **kwargs):
        return self.base.apply_model(x, sigma)


def _flow_formula(model, x, sigmas, eta, noise):
    """TCD on the flow path from its definition, float64: σ_s = (1−η)·σ', x_s = (1−σ_s)·x̂₀ +
    σ_s·ε̂, x' = a·x_s + √(σ'² − a²σ_s²)·z with a = (1−σ')/(1−σ_s)."""
    x = x.double()
    s_in = torch.ones(x.shape[0])
    for i in range(len(sigmas) - 1):
        sigma, nxt = float(sigmas[i]), float(sigmas[i + 1])
        x0 = model(x.float(), sigmas[i] * s_in).double()
        eps = (x - (1 - sigma) * x0) / sigma
        s = (1 - eta) * nxt
        x_s = (1 - s) * x0 + s * eps
        a = (1 - nxt) / (1 - s)
        x = a * x_s + math.sqrt(max(nxt**2 - a**2 * s**2, 0.0)) * noise[i].double()
    return x.float()


@settings(max_examples=examples(40))
@given(
    eta=st.floats(0.0, 1.0),
    sigmas=st.lists(st.floats(0.02, 1.0), min_size=1, max_size=6, unique=True),
    end=st.sampled_from([0.0, 0.0, 0.01]),
    seed=st.integers(0, 2**16),
)
def test_flow_step_is_the_formula(eta, sigmas, end, seed):
    """Any decreasing σ's in (0, 1] (ending at 0 or not), any η: the flow formula within 1e-5."""
    sampling = model_sampling(ModelSamplingDiscreteFlow, CONST, shift=3.0)
    base = BaseModel(flow_net, sampling)
    sig = torch.tensor(sorted({*sigmas, end}, reverse=True), dtype=torch.float32)
    if len(sig) < 2:
        return
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g)
    noise = [torch.randn(SHAPE, generator=g) for _ in range(len(sig) - 1)]
    draws = iter(noise)
    model = Chain(base)
    ours = sample_tcd(model, x, sig, disable=True, eta=eta, noise_sampler=lambda s, n: next(draws))
    assert_close(ours, _flow_formula(model, x, sig, eta, noise), "flow vs formula")


def test_flow_per_batch_eta_rows_are_runs():
    sampling = model_sampling(ModelSamplingFlux, CONST, shift=1.15)
    model = Chain(BaseModel(flow_net, sampling))
    sigmas = model_sampling_sigmas(sampling, 4)
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    etas = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    batch = sample_tcd(model, x, sigmas, disable=True, eta=etas, noise_sampler=lambda s, n: noise)
    for r in range(3):
        row = sample_tcd(
            model,
            x[r : r + 1],
            sigmas,
            disable=True,
            eta=float(etas[r]),
            noise_sampler=lambda s, n, r=r: noise[r : r + 1],
        )
        assert torch.equal(batch[r : r + 1], row)


def test_flow_draws_where_lcm_draws():
    """η > 0: one draw per step that does not end at σ = 0 (ComfyUI's lcm's draws, so η = 1
    uses the seed's noise as lcm does); η = 0: none."""
    base = BaseModel(flow_net, model_sampling(ModelSamplingDiscreteFlow, CONST, shift=3.0))
    sigmas = model_sampling_sigmas(base.model_sampling, 4)
    for eta, expected in ((0.0, 0), (0.3, 3), (1.0, 3)):
        drawn = []

        def noise(s, n, drawn=drawn):
            drawn.append((float(s), float(n)))
            return torch.zeros(SHAPE)

        sample_tcd(
            Chain(base), torch.zeros(SHAPE), sigmas, disable=True, eta=eta, noise_sampler=noise
        )
        assert len(drawn) == expected and all(n > 0 for _, n in drawn), (eta, drawn)


def test_flow_sigmas_above_one_are_refused():
    sampling = model_sampling(ModelSamplingDiscreteFlow, CONST, shift=3.0)
    base = BaseModel(flow_net, sampling)
    with pytest.raises(ValueError, match="lies in \\[0, 1\\]"):
        sample_tcd(Chain(base), torch.zeros(SHAPE), torch.tensor([14.6, 1.0, 0.0]), disable=True)
    assert base.timesteps == []


# --------------------------------------------------------------------------------------------
# model samplings with no right answer: refused before the model runs


@pytest.mark.parametrize(
    "base",
    [
        ModelSamplingContinuousEDM,
        ModelSamplingContinuousV,
        ModelSamplingDiscreteEDM,
        StableCascadeSampling,
    ],
)
@pytest.mark.parametrize("kind", [EPS, V_PREDICTION])
def test_continuous_time_is_refused_before_the_model_runs(comfy, base, kind):
    sampling = model_sampling(base, kind)
    model = Model(BaseModel(flow_net, sampling))
    sigmas = torch.cat([sampling.sigmas.flip(0)[::250], torch.zeros(1)])
    with pytest.raises(ValueError, match=f"TCD cannot sample this model.*{base.__name__}"):
        run(model, tcd_sampler(0.3), sigmas, torch.zeros(SHAPE), SEED)
    assert model.model.timesteps == []
    with pytest.raises(ValueError, match="TCD cannot sample this model"):
        sigmas_node(model, 4)


def test_resolve_model_sampling_names_each_family():
    assert resolve_model_sampling(_flow_models()["FLUX"]) == FlowSchedule("const", "model_sampling")
    assert resolve_model_sampling(_flow_models()["Cosmos"]).scaling == "cosmos"
    table = resolve_model_sampling(model_sampling(ModelSamplingDiscrete, V_PREDICTION))
    assert len(table.alphas_cumprod) == 1000 and not table.lcm_boundary
    patched = resolve_model_sampling(model_sampling(ModelSamplingDiscreteDistilled, LCM))
    assert len(patched.alphas_cumprod) == 1000 and patched.lcm_boundary


# --------------------------------------------------------------------------------------------
# the TCD Sigmas node


def test_sigmas_node_on_sd_models_is_diffusers_plan():
    sampling = model_sampling(ModelSamplingDiscrete, EPS)
    model = Model(BaseModel(None, sampling))
    ac = table_of(sampling)
    assert torch.equal(sigmas_node(model, 4), get_sigmas_tcd(4, ac))
    assert torch.equal(sigmas_node(model, 4, 0.5), get_sigmas_tcd(4, ac, strength=0.5))
    assert set(sigmas_node(model, 4)[:-1].tolist()) <= set(sampling.sigmas.tolist())
    assert sigmas_node(model, 4, 0.0).numel() == 0


def test_sigmas_node_on_flow_models_is_the_shifted_grid():
    sampling = model_sampling(ModelSamplingDiscreteFlow, CONST, shift=3.0)
    model = Model(BaseModel(None, sampling))
    shift = lambda t: 3 * t / (1 + 2 * t)
    expected = torch.tensor([shift(1 - i / 4) for i in range(4)] + [0.0])
    assert torch.equal(sigmas_node(model, 4), expected)
    # denoise < 1: the last `steps` of the grid of int(steps/denoise) steps (BasicScheduler's)
    longer = torch.tensor([shift(1 - i / 5) for i in range(5)] + [0.0])  # int(4/0.7) = 5
    assert torch.equal(sigmas_node(model, 4, 0.7), longer[-5:])
    # ComfyUI's `simple` scheduler reads the same grid off the 1000-entry table
    simple = [float(sampling.sigmas[-(1 + int(i * 1000 / 4))]) for i in range(4)]
    np.testing.assert_allclose(sigmas_node(model, 4)[:-1].numpy(), simple, rtol=1e-6)


@pytest.mark.parametrize(("steps", "denoise"), [(0, 1.0), (True, 1.0), (4, 1.5), (4, -0.1)])
def test_sigmas_node_rejects_bad_inputs(steps, denoise):
    model = Model(BaseModel(None, model_sampling(ModelSamplingDiscrete, EPS)))
    with pytest.raises(ValueError, match=r"steps|denoise"):
        model_sampling_sigmas(model.get_model_object("model_sampling"), steps, denoise)
