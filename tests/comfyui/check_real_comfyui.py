"""The node pack against real ComfyUI: loaded by ComfyUI's own loader, run through SamplerCustom
and SamplerCustomAdvanced, compared with diffusers' TCDScheduler and with ComfyUI's own euler and
lcm samplers. Not a CI test (ComfyUI is not installed there; tests/kdiffusion/
test_kdiffusion_comfyui.py runs the same checks on stand-ins): run it by hand, in an environment
with ComfyUI's requirements, diffusers and tcd-core installed (see tests/comfyui/README.md)::

    python tests/comfyui/check_real_comfyui.py /path/to/ComfyUI

The models are ComfyUI's own BaseModel, model_sampling and ModelPatcher, built from its
supported-model configs, with a tiny deterministic network in place of the UNet/transformer.
Prints one line per check with the measured max|Δ|/(1+max|ref|) and exits non-zero if any check
fails. Nothing of ComfyUI's code is copied here: it is imported and run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.machinery
import logging
import os
import subprocess
import sys
import types
from typing import Any

TOL = 1e-5
RESULTS: list[tuple[str, bool, str]] = []


def record(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name:<58} {detail}", flush=True)


def scaled(ours, ref) -> float:
    return float((ours.double() - ref.double()).abs().max()) / (
        1.0 + float(ref.double().abs().max())
    )


def _stub_torchvision() -> bool:
    """ComfyUI imports torchvision at load; where only a mismatched build exists, stand in an
    empty module (no code path used here touches it). Returns whether the stub was needed."""
    try:
        import torchvision  # noqa: F401

        return False
    except Exception:
        pass

    class _Stub(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return _module(f"{self.__name__}.{name}")

    def _module(name: str) -> types.ModuleType:
        module = _Stub(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__version__ = "0.0"  # type: ignore[attr-defined]
        sys.modules[name] = module
        return module

    for name in list(sys.modules):
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        _module(name)
    return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("comfyui", help="a ComfyUI checkout (its custom_nodes gets the pack)")
    args = parser.parse_args()
    root = os.path.abspath(args.comfyui)
    stubbed = _stub_torchvision()
    sys.path.insert(0, root)
    os.chdir(root)
    sys.argv = [sys.argv[0], "--cpu"]

    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_patcher
    import comfy.model_sampling
    import comfy.supported_models
    import diffusers
    import nodes
    import torch

    torch.set_num_threads(2)
    print(f"ComfyUI {root}; torch {torch.__version__}; diffusers {diffusers.__version__}")
    if stubbed:
        print("(torchvision stubbed: the installed build does not load with this torch)")
    logging.getLogger().setLevel(logging.ERROR)  # the extras that need missing packages
    failed_extras = asyncio.run(nodes.init_builtin_extra_nodes())
    logging.getLogger().setLevel(logging.WARNING)
    print(f"(comfy_extras not loaded for want of packages: {len(failed_extras or [])})")
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    N = nodes.NODE_CLASS_MAPPINGS

    # ---- 1. install and load -----------------------------------------------------------
    installer = os.path.join(os.path.dirname(sys.executable), "tcd-comfyui-install")
    done = subprocess.run([installer, root], capture_output=True, text=True)
    record(
        "tcd-comfyui-install writes custom_nodes/tcd_core_nodes",
        done.returncode == 0,
        done.stdout.strip().splitlines()[0] if done.stdout else done.stderr.strip(),
    )
    shim = os.path.join(root, "custom_nodes", "tcd_core_nodes")
    ok = asyncio.run(nodes.load_custom_node(shim, module_parent="custom_nodes"))
    record("nodes.load_custom_node(custom_nodes/tcd_core_nodes)", ok and "SamplerTCD" in N)
    import tcd_kdiffusion.comfyui as pack

    installed = os.path.dirname(pack.__file__)
    ok = asyncio.run(nodes.load_custom_node(installed, module_parent="custom_nodes"))
    record("nodes.load_custom_node(<site-packages>/tcd_kdiffusion/comfyui)", ok, installed)
    names = {k: nodes.NODE_DISPLAY_NAME_MAPPINGS.get(k) for k in ("SamplerTCD", "TCDSigmas")}
    record(
        "display names",
        names == {"SamplerTCD": "Sampler TCD", "TCDSigmas": "TCD Sigmas"},
        str(names),
    )
    SamplerTCD, TCDSigmas = N["SamplerTCD"], N["TCDSigmas"]

    # ---- the guide's minimal workflow passes ComfyUI's own prompt validation --------------
    import json

    import execution

    guide = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "guides", "kdiffusion.md")
    with open(guide, encoding="utf-8") as file:
        text = file.read()
    block = text.split("### A minimal workflow", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    prompt = json.loads(block)
    made = []
    for folder, key in (("checkpoints", "ckpt_name"), ("loras", "lora_name")):
        name = next(n["inputs"][key] for n in prompt.values() if key in n["inputs"])
        path = os.path.join(root, "models", folder, name)
        if not os.path.exists(path):
            open(path, "wb").close()  # an empty file: validation checks the name only
            made.append(path)
    try:
        valid = asyncio.run(execution.validate_prompt("docs", prompt, None))
    finally:
        for path in made:
            os.remove(path)
    record(
        "the guide's API-format workflow passes validate_prompt",
        valid[0] is True,
        str(valid[1])[:90] if not valid[0] else f"outputs {valid[2]}",
    )

    # ---- the models: ComfyUI's BaseModel with a tiny network ---------------------------
    class Net(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn, self.calls, self.timesteps = fn, 0, []
            self.register_buffer("w", torch.ones(1))

        @property
        def dtype(self):
            return torch.float32

        def forward(self, x, t, context=None, control=None, transformer_options=None, **kw):
            self.calls += 1
            self.timesteps.append([round(v, 4) for v in t.reshape(-1).tolist()])
            return self.fn(x, t)

    def build(config_cls, model_type, fn, unet=None):
        config = config_cls(dict(unet or {}, disable_unet_model_creation=True))
        base = comfy.model_base.BaseModel(config, model_type, device=torch.device("cpu"))
        base.diffusion_model = Net(fn)
        base.latent_format = comfy.latent_formats.LatentFormat()  # scale 1: compare raw latents
        patcher = comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))
        return patcher, base.diffusion_model

    def vp_net(ac, prediction):  # x̂₀ = tanh(1.5·√ᾱ·x_t)·(0.5 + t/2N), as ε or v
        def fn(x_t, t):
            t = t.reshape(-1).round().long()
            a = ac[t].sqrt().float().reshape(-1, 1, 1, 1)
            b = (1 - ac[t]).sqrt().float().reshape(-1, 1, 1, 1)
            x0 = torch.tanh(1.5 * a * x_t) * (0.5 + t.float().reshape(-1, 1, 1, 1) / 2000)
            eps = (x_t - a * x0) / b
            return eps if prediction == "epsilon" else a * eps - b * x0

        return fn

    def flow_fn(x, t):
        t = t.reshape(-1, *([1] * (x.ndim - 1))).float()
        return 0.6 * x + 0.4 * torch.tanh(1.3 * x) + 1e-4 * t * torch.sin(x)

    cond = [[torch.zeros(1, 77, 768), {}]]
    shape = (1, 4, 16, 16)

    def custom(model, sampler, sigmas, seed, latent=None, cfg=1.0):
        latent = torch.zeros(shape) if latent is None else latent
        out = N["SamplerCustom"]().sample(
            model, True, seed, cfg, cond, cond, sampler, sigmas, {"samples": latent}
        )
        return out[0]["samples"]

    def advanced(model, sampler, sigmas, seed, latent=None):
        latent = torch.zeros(shape) if latent is None else latent
        guider = N["BasicGuider"]().get_guider(model, cond)[0]
        noise = N["RandomNoise"]().get_noise(seed)[0]
        out = N["SamplerCustomAdvanced"]().sample(
            noise, guider, sampler, sigmas, {"samples": latent}
        )
        return out[0]["samples"]

    def tcd(eta, step_noise="comfyui"):
        return SamplerTCD().get_sampler(eta=eta, step_noise=step_noise)[0]

    def sigmas_of(model, steps, denoise=1.0):
        return TCDSigmas().get_sigmas(model, steps, denoise)[0]

    def diffusers_tcd(fn, ac, z, eta, generator, prediction="epsilon", strength=1.0, latent=None):
        scheduler = diffusers.TCDScheduler(
            beta_schedule="scaled_linear", prediction_type=prediction
        )
        scheduler.alphas_cumprod = ac.float()  # ComfyUI's table (its float64 σ's)
        scheduler.set_timesteps(4, strength=strength)
        x = z if latent is None else scheduler.add_noise(latent, z, scheduler.timesteps[:1])
        for t in scheduler.timesteps:
            x = scheduler.step(fn(x, t.reshape(1)), t, x, eta=eta, generator=generator).prev_sample
        return x

    # ---- 2. SD-style models vs diffusers -------------------------------------------------
    seed = 42
    for prediction, model_type in (
        ("epsilon", comfy.model_base.ModelType.EPS),
        ("v_prediction", comfy.model_base.ModelType.V_PREDICTION),
    ):
        model, net = build(comfy.supported_models.SD15, model_type, None)
        ms = model.get_model_object("model_sampling")
        ac = 1 / (1 + ms.sigmas.double() ** 2)
        net.fn = vp_net(ac, prediction)
        sigmas = sigmas_of(model, 4)
        z = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        for eta in (0.0, 0.3, 1.0):
            for mode in ("comfyui", "diffusers"):
                net.calls = 0
                ours = custom(model, tcd(eta, mode), sigmas, seed)
                g = torch.Generator().manual_seed(seed)
                if mode == "diffusers":
                    torch.randn(shape, generator=g)  # the pipeline's latents come first
                ref = diffusers_tcd(net.fn, ac, z, eta, g, prediction)
                err = scaled(ours, ref)
                record(
                    f"SD1.5 {prediction} eta={eta} noise={mode} vs diffusers",
                    err <= TOL and net.calls == 4,
                    f"{err:.2e}, {net.calls} model calls",
                )
        # image-to-image
        latent = torch.tanh(torch.randn(shape, generator=torch.Generator().manual_seed(3)))
        ours = custom(model, tcd(0.3, "diffusers"), sigmas_of(model, 4, 0.5), seed, latent)
        g = torch.Generator().manual_seed(seed)
        torch.randn(shape, generator=g)
        ref = diffusers_tcd(net.fn, ac, z, 0.3, g, prediction, strength=0.5, latent=latent)
        err = scaled(ours, ref)
        record(f"SD1.5 {prediction} img2img denoise=0.5 vs strength=0.5", err <= TOL, f"{err:.2e}")
        # SamplerCustomAdvanced, the same seed twice
        a = advanced(model, tcd(0.3), sigmas, seed)
        b = custom(model, tcd(0.3), sigmas, seed)
        c = custom(model, tcd(0.3), sigmas, seed)
        record(
            f"SD1.5 {prediction} SamplerCustomAdvanced == SamplerCustom, reruns equal",
            torch.equal(a, b) and torch.equal(b, c),
        )
        net.calls = 0
        custom(model, tcd(0.3), sigmas, seed, cfg=2.0)
        record(
            f"SD1.5 {prediction} cfg=2: one model call per step",
            net.calls == 4,
            f"{net.calls} calls",
        )

    # zero-terminal SNR (v-prediction), through ComfyUI's ModelSamplingDiscrete node
    model, net = build(comfy.supported_models.SD15, comfy.model_base.ModelType.V_PREDICTION, None)
    model = N["ModelSamplingDiscrete"]().patch(model, "v_prediction", True)[0]
    ms = model.get_model_object("model_sampling")
    ac = 1 / (1 + ms.sigmas.double() ** 2)
    net.fn = vp_net(ac, "v_prediction")
    ours = custom(model, tcd(0.3, "diffusers"), sigmas_of(model, 4), seed)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g)
    ref = diffusers_tcd(net.fn, ac, z, 0.3, g, "v_prediction")
    err = scaled(ours, ref)
    record(
        "SD v zsnr (ModelSamplingDiscrete v_prediction, zsnr) vs diffusers",
        err <= TOL,
        f"{err:.2e}",
    )

    # ---- 3. the lcm patch --------------------------------------------------------------
    for zsnr in (False, True):
        model, net = build(comfy.supported_models.SD15, comfy.model_base.ModelType.EPS, None)
        full = model.get_model_object("model_sampling")
        if zsnr:
            full = (
                N["ModelSamplingDiscrete"]()
                .patch(model, "eps", True)[0]
                .get_model_object("model_sampling")
            )
        ac = 1 / (1 + full.sigmas.double() ** 2)
        net.fn = vp_net(ac, "epsilon")
        patched = N["ModelSamplingDiscrete"]().patch(model, "lcm", zsnr)[0]
        ms = patched.get_model_object("model_sampling")
        sigmas = sigmas_of(patched, 4)
        net.timesteps = []
        ours = custom(patched, tcd(0.3, "diffusers"), sigmas, seed)
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(shape, generator=g)
        ref = diffusers_tcd(net.fn, ac, z, 0.3, g)
        err = scaled(ours, ref)
        steps = [int(t[0]) for t in net.timesteps]
        if zsnr:  # ε at σ_max = 4518: x̂₀ = x − σ·ε cancels in float32 on both sides (a
            # documented limit of ε-prediction at huge σ); the check that matters is the next one
            print(f"      lcm patch (zsnr=True) vs diffusers: {err:.2e} (ε at σ = 4518, float32)")
            record("lcm patch (zsnr=True): timesteps", steps == [999, 759, 499, 259], f"{steps}")
        else:
            record(
                f"lcm patch ({len(ms.sigmas)} sigmas) vs diffusers",
                err <= TOL and steps == [999, 759, 499, 259],
                f"{err:.2e}, timesteps {steps}",
            )
        # the same sigmas on the unpatched model give the same image
        unpatched = model if not zsnr else N["ModelSamplingDiscrete"]().patch(model, "eps", True)[0]
        plain = custom(unpatched, tcd(0.3, "diffusers"), sigmas, seed)
        err = scaled(ours, plain)
        record(f"lcm patch (zsnr={zsnr}) == unpatched model", err <= TOL, f"{err:.2e}")

    # ---- 4. flow models vs ComfyUI's euler and lcm ------------------------------------------
    euler = N["KSamplerSelect"]().get_sampler("euler")[0]
    lcm = N["KSamplerSelect"]().get_sampler("lcm")[0]
    flows = []
    model, net = build(
        comfy.supported_models.SD3, comfy.model_base.ModelType.FLOW, flow_fn, {"in_channels": 4}
    )
    flows.append(("SD3 (DiscreteFlow shift 3)", model, net))
    flows.append(
        ("SD3 + ModelSamplingSD3 shift 5", N["ModelSamplingSD3"]().patch(model, 5.0)[0], net)
    )
    flows.append(
        (
            "AuraFlow (ModelSamplingAuraFlow)",
            N["ModelSamplingAuraFlow"]().patch_aura(model, 1.73)[0],
            net,
        )
    )
    model, net = build(comfy.supported_models.Flux, comfy.model_base.ModelType.FLUX, flow_fn)
    flows.append(("FLUX (ModelSamplingFlux)", model, net))
    flows.append(
        (
            "FLUX + ModelSamplingFlux 1024x1024",
            N["ModelSamplingFlux"]().patch(model, 1.15, 0.5, 1024, 1024)[0],
            net,
        )
    )
    model, net = build(comfy.supported_models.SD15, comfy.model_base.ModelType.EPS, flow_fn)
    flows.append(
        (
            "Cosmos (ContinuousEDM node, cosmos_rflow)",
            N["ModelSamplingContinuousEDM"]().patch(model, "cosmos_rflow", 80.0, 0.002)[0],
            net,
        )
    )
    for name, model, net in flows:
        for label, sigmas in (
            ("TCD Sigmas", sigmas_of(model, 4)),
            ("BasicScheduler simple", N["BasicScheduler"]().get_sigmas(model, "simple", 4, 1.0)[0]),
            ("TCD Sigmas denoise 0.6", sigmas_of(model, 4, 0.6)),
        ):
            latent = None
            if "denoise" in label:
                latent = torch.tanh(torch.randn(shape, generator=torch.Generator().manual_seed(5)))
            for eta, reference in ((0.0, euler), (1.0, lcm)):
                net.calls = 0
                ours = custom(model, tcd(eta), sigmas, seed, latent)
                calls = net.calls
                ref = custom(model, reference, sigmas, seed, latent)
                err = scaled(ours, ref)
                which = "euler" if eta == 0 else "lcm"
                record(
                    f"{name}, {label}: eta={eta:g} vs {which}",
                    err <= TOL and calls == len(sigmas) - 1,
                    f"{err:.2e}, {calls} calls",
                )
        a = custom(model, tcd(0.3), sigmas_of(model, 4), seed)
        b = advanced(model, tcd(0.3), sigmas_of(model, 4), seed)
        record(f"{name}: eta=0.3 SamplerCustomAdvanced == SamplerCustom", torch.equal(a, b))
        print(f"      {name}: TCD Sigmas {[round(v, 4) for v in sigmas_of(model, 4).tolist()]}")

    # ---- 5. model samplings TCD cannot sample: a ValueError before the first model call ----
    model, net = build(comfy.supported_models.SD15, comfy.model_base.ModelType.EPS, flow_fn)
    refused = [
        (
            "ModelSamplingContinuousEDM edm",
            N["ModelSamplingContinuousEDM"]().patch(model, "edm", 120.0, 0.002)[0],
        ),
        (
            "ModelSamplingContinuousEDM v_prediction",
            N["ModelSamplingContinuousEDM"]().patch(model, "v_prediction", 120.0, 0.002)[0],
        ),
        (
            "ModelSamplingContinuousEDM eps",
            N["ModelSamplingContinuousEDM"]().patch(model, "eps", 120.0, 0.002)[0],
        ),
        (
            "ModelSamplingContinuousV",
            N["ModelSamplingContinuousV"]().patch(model, "v_prediction", 500.0, 0.03)[0],
        ),
        ("ModelSamplingStableCascade", N["ModelSamplingStableCascade"]().patch(model, 2.0)[0]),
    ]
    for name, patched in refused:
        net.calls = 0
        sigmas = N["BasicScheduler"]().get_sigmas(patched, "karras", 4, 1.0)[0]
        try:
            custom(patched, tcd(0.3), sigmas, seed)
            record(f"{name}: refused", False, "no error")
        except ValueError as err:
            record(f"{name}: ValueError before the model runs", net.calls == 0, str(err)[:90] + "…")
        try:
            sigmas_of(patched, 4)
            record(f"{name}: TCD Sigmas refused", False, "no error")
        except ValueError:
            record(f"{name}: TCD Sigmas refused", True)

    # ---- 6. every class ComfyUI's model_base builds, as tcd_kdiffusion reads it ----------
    from tcd_kdiffusion import FlowSchedule, resolve_model_sampling

    print("\nmodel_base.model_sampling(config, ModelType.X), read by resolve_model_sampling:")
    for member in comfy.model_base.ModelType:
        config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
        ms = comfy.model_base.model_sampling(config, member)
        bases = [c.__name__ for c in type(ms).__mro__[1:3]]
        try:
            got = resolve_model_sampling(ms)
            what = (
                f"flow ({got.scaling})"
                if isinstance(got, FlowSchedule)
                else (f"discrete table of {len(got.alphas_cumprod)}")
            )
        except ValueError as err:
            what = "ValueError: " + str(err)[:70] + "…"
        print(f"  {member.name:<24} {' + '.join(bases):<52} {what}")

    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
