"""Configs interchange both ways: from_config of shipped pipelines' scheduler configs, and
save_pretrained/from_pretrained round trips between our class and diffusers'."""

from __future__ import annotations

import json

import diffusers
import pytest
import torch
from diffusers_helpers import assert_same, toy_model

from tcd_diffusers import TCDScheduler

# The scheduler_config.json files that Stable Diffusion 1.5, 2.1 and SDXL base 1.0 ship with.
SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SD21 = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
SDXL = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
NON_DEFAULT = {
    "num_train_timesteps": 500,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "original_inference_steps": 25,
    "prediction_type": "sample",
    "set_alpha_to_one": False,
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "timestep_scaling": 5.0,
    "steps_offset": 1,
}


def public(config) -> dict:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def assert_same_behaviour(ours: TCDScheduler, ref: diffusers.TCDScheduler) -> None:
    assert public(ours.config) == public(ref.config)
    for name in ("betas", "alphas_cumprod", "final_alpha_cumprod"):
        assert_same(getattr(ours, name), getattr(ref, name))
    ours.set_timesteps(4)
    ref.set_timesteps(4)
    assert torch.equal(ours.timesteps, ref.timesteps)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    x1 = x2 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for t1, t2 in zip(ours.timesteps, ref.timesteps):
        m = toy_model(x2, int(t2))
        x1 = ours.step(m, t1, x1, eta=0.3, generator=g1).prev_sample
        x2 = ref.step(m, t2, x2, eta=0.3, generator=g2).prev_sample
        assert_same(x1, x2)


@pytest.mark.parametrize("shipped", [SD15, SD21, SDXL], ids=["sd15", "sd21", "sdxl"])
def test_from_config_of_shipped_scheduler_configs(shipped: dict) -> None:
    ours = TCDScheduler.from_config(shipped)
    assert ours.config.prediction_type == shipped.get("prediction_type", "epsilon")
    assert ours.config.set_alpha_to_one is False and ours.config.steps_offset == 1
    assert_same_behaviour(ours, diffusers.TCDScheduler.from_config(shipped))


def test_from_config_of_another_scheduler_instance() -> None:
    """The pipelines' idiom: from_config(pipe.scheduler.config) with a live FrozenDict."""
    euler = diffusers.EulerDiscreteScheduler.from_config(SDXL)
    ours = TCDScheduler.from_config(euler.config)
    assert_same_behaviour(ours, diffusers.TCDScheduler.from_config(euler.config))


@pytest.mark.parametrize("config", [{}, NON_DEFAULT, {"trained_betas": [0.01] * 1000}])
def test_save_ours_load_theirs_and_back(tmp_path, config: dict) -> None:
    ours = TCDScheduler(**config)
    ours.save_pretrained(tmp_path / "ours")
    theirs = diffusers.TCDScheduler.from_pretrained(tmp_path / "ours")
    assert_same_behaviour(TCDScheduler(**config), theirs)
    theirs.save_pretrained(tmp_path / "theirs")
    again = TCDScheduler.from_pretrained(tmp_path / "theirs")
    assert isinstance(again, TCDScheduler)
    assert_same_behaviour(again, diffusers.TCDScheduler(**config))


@pytest.mark.parametrize("config", [{}, NON_DEFAULT])
def test_saved_config_files_are_identical(tmp_path, config: dict) -> None:
    TCDScheduler(**config).save_pretrained(tmp_path / "ours")
    diffusers.TCDScheduler(**config).save_pretrained(tmp_path / "theirs")
    ours = json.loads((tmp_path / "ours" / "scheduler_config.json").read_text())
    theirs = json.loads((tmp_path / "theirs" / "scheduler_config.json").read_text())
    assert ours == theirs
    assert ours["_class_name"] == "TCDScheduler"


def test_from_config_of_their_instance_and_back() -> None:
    ref = diffusers.TCDScheduler(**NON_DEFAULT)
    ours = TCDScheduler.from_config(ref.config)
    assert public(ours.config) == public(ref.config)
    back = diffusers.TCDScheduler.from_config(ours.config)
    assert public(back.config) == public(ref.config)


PUBLIC_METHODS = [
    "__init__",
    "set_timesteps",
    "step",
    "add_noise",
    "get_velocity",
    "previous_timestep",
    "index_for_timestep",
    "set_begin_index",
    "scale_model_input",
    "__len__",
]


@pytest.mark.parametrize("name", PUBLIC_METHODS)
def test_public_methods_have_the_reference_signature(name: str) -> None:
    """Same parameter names, order, kinds and defaults (annotations aside)."""
    import inspect

    def shape(function):
        return [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]

    assert shape(getattr(TCDScheduler, name)) == shape(getattr(diffusers.TCDScheduler, name))


def test_public_attributes_and_properties_exist() -> None:
    ours, ref = TCDScheduler(), diffusers.TCDScheduler()
    public = {n for n in dir(ref) if not n.startswith("_")}
    missing = sorted(n for n in public if not hasattr(ours, n))
    assert missing == []
    assert ours.order == ref.order == 1
    assert isinstance(ours.timesteps, torch.Tensor) and ours.timesteps.dtype == torch.int64
