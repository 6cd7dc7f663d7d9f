"""Configs interchange both ways: from_config of shipped pipelines' scheduler configs,
save_pretrained/from_pretrained round trips between our classes and diffusers', swaps between
TCD and LCM; and the class surface (signatures, attributes, docstring examples). Every test runs
for both schedulers (``pair``: ids ``tcd``, ``lcm``)."""

from __future__ import annotations

import doctest
import inspect
import json

import diffusers
import pytest
import torch
from diffusers_helpers import BOTH, LCM, PAIRS, Pair, assert_same, lockstep

import tcd_diffusers

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


def assert_same_behaviour(pair: Pair, ours, ref) -> None:
    assert type(ours) is pair.ours and type(ref) is pair.ref
    assert public(ours.config) == public(ref.config)
    for name in ("betas", "alphas_cumprod", "final_alpha_cumprod"):
        assert_same(getattr(ours, name), getattr(ref, name))
    ours.set_timesteps(4)
    ref.set_timesteps(4)
    assert torch.equal(ours.timesteps, ref.timesteps)
    lockstep(pair, ours, ref, zip(ours.timesteps, ref.timesteps))


@pytest.mark.parametrize("shipped", [SD15, SD21, SDXL], ids=["sd15", "sd21", "sdxl"])
@pytest.mark.parametrize("pair", PAIRS)
def test_from_config_of_shipped_scheduler_configs(pair: Pair, shipped: dict) -> None:
    ours = pair.ours.from_config(shipped)
    assert ours.config.prediction_type == shipped.get("prediction_type", "epsilon")
    assert ours.config.set_alpha_to_one is False and ours.config.steps_offset == 1
    assert_same_behaviour(pair, ours, pair.ref.from_config(shipped))


@pytest.mark.parametrize("pair", PAIRS)
def test_from_config_of_another_scheduler_instance(pair: Pair) -> None:
    """The pipelines' idiom: from_config(pipe.scheduler.config) with a live FrozenDict."""
    euler = diffusers.EulerDiscreteScheduler.from_config(SDXL)
    ours = pair.ours.from_config(euler.config)
    assert_same_behaviour(pair, ours, pair.ref.from_config(euler.config))


@pytest.mark.parametrize("config", [{}, NON_DEFAULT, {"trained_betas": [0.01] * 1000}])
@pytest.mark.parametrize("pair", PAIRS)
def test_save_ours_load_theirs_and_back(pair: Pair, tmp_path, config: dict) -> None:
    ours = pair.ours(**config)
    ours.save_pretrained(tmp_path / "ours")
    theirs = pair.ref.from_pretrained(tmp_path / "ours")
    assert_same_behaviour(pair, pair.ours(**config), theirs)
    theirs.save_pretrained(tmp_path / "theirs")
    again = pair.ours.from_pretrained(tmp_path / "theirs")
    assert_same_behaviour(pair, again, pair.ref(**config))


@pytest.mark.parametrize("config", [{}, NON_DEFAULT, {"clip_sample": True, "thresholding": True}])
@pytest.mark.parametrize("pair", PAIRS)
def test_saved_config_files_are_identical(pair: Pair, tmp_path, config: dict) -> None:
    pair.ours(**config).save_pretrained(tmp_path / "ours")
    pair.ref(**config).save_pretrained(tmp_path / "theirs")
    ours = json.loads((tmp_path / "ours" / "scheduler_config.json").read_text())
    theirs = json.loads((tmp_path / "theirs" / "scheduler_config.json").read_text())
    assert ours == theirs
    assert ours["_class_name"] == pair.ours.__name__ == pair.ref.__name__


@pytest.mark.parametrize("pair", PAIRS)
def test_from_config_of_their_instance_and_back(pair: Pair) -> None:
    ref = pair.ref(**NON_DEFAULT)
    ours = pair.ours.from_config(ref.config)
    assert public(ours.config) == public(ref.config)
    back = pair.ref.from_config(ours.config)
    assert public(back.config) == public(ref.config)


@pytest.mark.parametrize("pair", PAIRS)
def test_configs_swap_between_algorithms_and_libraries(pair: Pair) -> None:
    """TCD and LCM share their config: one-line swaps in every direction keep every field."""
    base = pair.ref(prediction_type="v_prediction", timestep_scaling=2.5)
    for other in BOTH:
        for cls in (other.ours, other.ref):
            swapped = pair.ours.from_config(cls.from_config(base.config).config)
            assert type(swapped) is pair.ours
            assert public(swapped.config) == public(base.config)


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


@pytest.mark.parametrize(
    ("pair", "name"),
    [pytest.param(p, name, id=f"{p.name}-{name}") for p in BOTH for name in PUBLIC_METHODS]
    + [pytest.param(LCM, "get_scalings_for_boundary_condition_discrete", id="lcm-scalings")],
)
def test_public_methods_have_the_reference_signature(pair: Pair, name: str) -> None:
    """Same parameter names, order, kinds and defaults (annotations aside)."""

    def shape(function):
        return [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]

    assert shape(getattr(pair.ours, name)) == shape(getattr(pair.ref, name))


@pytest.mark.parametrize("pair", PAIRS)
def test_public_attributes_and_properties_exist(pair: Pair) -> None:
    ours, ref = pair.ours(), pair.ref()
    for theirs, mine in ((ref, ours), (pair.ref, pair.ours)):  # instance and class
        public = {n for n in dir(theirs) if not n.startswith("_")}
        missing = sorted(n for n in public if not hasattr(mine, n))
        assert missing == []
    assert ours.order == ref.order == pair.ours.order == 1
    assert isinstance(ours.timesteps, torch.Tensor) and ours.timesteps.dtype == torch.int64
    # the public names: pipelines record (library, class) in model_index.json
    assert pair.ours.__module__ == "tcd_diffusers"
    assert getattr(tcd_diffusers, pair.output.__name__) is pair.output


@pytest.mark.parametrize("pair", PAIRS)
def test_docstring_examples_run(pair: Pair) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    finder = doctest.DocTestFinder()
    tests = finder.find(pair.ours) + finder.find(tcd_diffusers)
    assert any(t.examples for t in tests if t.name.endswith(pair.ours.__name__))
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
