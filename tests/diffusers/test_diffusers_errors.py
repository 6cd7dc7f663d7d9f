"""Bad input: clear ValueErrors where the reference asserts, fails obscurely or accepts nonsense
(both schedulers: tests parametrised over ``pair`` or ``cls``; η is TCD's alone)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers_helpers import BOTH, LCM, PAIRS, Pair

from tcd_diffusers import LCMScheduler, TCDScheduler

SCHEDULERS = (TCDScheduler, LCMScheduler)


def _ready(cls: type = TCDScheduler, n: int = 4) -> TCDScheduler | LCMScheduler:
    scheduler = cls()
    scheduler.set_timesteps(n)
    return scheduler


@pytest.mark.parametrize("eta", [-0.1, 1.0000001, 2.0, math.nan, -math.inf, torch.tensor(1.5)])
def test_eta_outside_unit_interval(eta) -> None:
    scheduler = _ready()
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match="eta"):
        scheduler.step(x, scheduler.timesteps[0], x, eta=eta)
    assert scheduler.step_index is None  # nothing changed: the step can be retried
    scheduler.step(x, scheduler.timesteps[0], x, eta=0.3)
    assert scheduler.step_index == 1


@pytest.mark.parametrize("eta", [0, 1, 0.0, 1.0, torch.tensor(0.3)])
def test_eta_edges_and_forms_accepted(eta) -> None:
    scheduler = _ready()
    x = torch.zeros(1, 4, 8, 8)
    out = scheduler.step(x, scheduler.timesteps[0], x, eta=eta)
    assert out.prev_sample.shape == x.shape


@pytest.mark.parametrize("pair", PAIRS)
def test_step_before_set_timesteps_gives_the_reference_error(pair: Pair) -> None:
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError) as ref:
        pair.ref().step(x, 999, x)
    with pytest.raises(ValueError) as ours:
        pair.ours().step(x, 999, x)
    assert str(ours.value) == str(ref.value)


@pytest.mark.parametrize("timestep", [500, torch.tensor(998), torch.tensor([998])])
@pytest.mark.parametrize("cls", SCHEDULERS)
def test_first_timestep_not_in_schedule(cls: type, timestep) -> None:
    """diffusers: an IndexError. A failed call leaves the scheduler unchanged."""
    scheduler = _ready(cls)
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(
        ValueError, match=r"timestep (998|500) is not in the timestep schedule"
    ) as err:
        scheduler.step(x, timestep, x)
    if not (isinstance(timestep, torch.Tensor) and timestep.ndim == 1):
        assert "[999, 759, 499, 259]" in str(err.value)
    assert scheduler.step_index is None


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_index_for_timestep_names_the_missing_timestep(cls: type) -> None:
    with pytest.raises(ValueError, match=r"timestep 5 is not in the timestep schedule \[999"):
        _ready(cls).index_for_timestep(5)


REFERENCE_ERRORS = [
    {},
    {"num_inference_steps": 4, "timesteps": [999, 499]},
    {"num_inference_steps": 51},
    {"num_inference_steps": 2000},
    {"timesteps": [499, 999]},
    {"timesteps": [1000, 10]},
]


@pytest.mark.parametrize(
    ("pair", "kwargs"),
    [
        pytest.param(p, kwargs, id=f"{p.name}-{i}")
        for p in BOTH
        for i, kwargs in enumerate(REFERENCE_ERRORS)
    ]
    # LCM only: an explicit original_inference_steps > N (TCD's switches to the custom grid)
    + [pytest.param(LCM, {"num_inference_steps": 4, "original_inference_steps": 2000}, id="lcm-6")],
)
def test_set_timesteps_errors_like_the_reference(pair: Pair, kwargs: dict) -> None:
    with pytest.raises(ValueError) as ref:
        pair.ref().set_timesteps(**kwargs)
    with pytest.raises(ValueError) as ours:
        pair.ours().set_timesteps(**kwargs)
    # verbatim, but naming the argument `timesteps` as the caller does
    assert str(ours.value) == str(ref.value).replace("`custom_timesteps`", "`timesteps`")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_inference_steps": 4, "strength": 0.0}, "strength"),
        ({"num_inference_steps": 4, "strength": 1.5}, "strength"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"timesteps": [999, 500, -1]}, "timesteps"),
        ({"timesteps": [999, 500], "strength": 0.2}, "strength"),
        ({"num_inference_steps": 4, "original_inference_steps": 0}, "original_inference_steps"),
    ],
)
@pytest.mark.parametrize("cls", SCHEDULERS)
def test_set_timesteps_rejects_what_the_reference_accepts(cls: type, kwargs: dict, name) -> None:
    """Nonsense the reference runs with (strength 1.5 gives timesteps ≥ 1000, negative custom
    timesteps wrap around, strength 0.2 keeps no custom step), crashes on (n = 0, LCM's
    original_inference_steps = 0: ZeroDivisionError) or refuses with a misleading message
    (strength 0, TCD's original_inference_steps = 0): a ValueError naming the argument."""
    with pytest.raises(ValueError, match=name):
        cls().set_timesteps(**kwargs)


@pytest.mark.parametrize(
    "config",
    [
        {"beta_schedule": "cosine"},
        {"prediction_type": "x0"},
        {"num_train_timesteps": 0},
        {"trained_betas": [0.1, 0.2]},
        {"dynamic_thresholding_ratio": 1.5},
    ],
)
@pytest.mark.parametrize("cls", SCHEDULERS)
def test_invalid_config_values(cls: type, config: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(config))):
        cls(**config)


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_mismatched_shapes_change_nothing(cls: type) -> None:
    scheduler = _ready(cls)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    with pytest.raises(ValueError, match="shape"):
        scheduler.step(torch.zeros(1, 4, 8, 8), 999, torch.zeros(1, 4, 4, 4), generator=g)
    assert scheduler.step_index is None
    assert torch.equal(g.get_state(), state)  # no noise drawn


# ------------------------------------------------------------------ misuse is loud (issue 16)


@pytest.mark.parametrize("eta", ["0.3", None, [0.3], torch.tensor([0.3, 0.3]), 0.3j])
def test_eta_of_the_wrong_type_is_a_type_error_naming_eta(eta) -> None:
    scheduler = _ready()
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(TypeError, match="`eta` must be a real number"):
        scheduler.step(x, scheduler.timesteps[0], x, eta=eta)
    assert scheduler.step_index is None


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_step_inputs_of_the_wrong_type_name_themselves(cls: type) -> None:
    x = torch.zeros(1, 4, 8, 8)
    cases = {
        "`model_output` must be a torch.Tensor": (None, x, None),
        "`sample` must be a torch.Tensor": (x, x.numpy(), None),
        "`model_output` must be a floating-point tensor": (x.long(), x.long(), None),
        "`generator` must be a torch.Generator": (x, x, "seed"),
    }
    for match, (model_output, sample, generator) in cases.items():
        scheduler = _ready(cls)
        with pytest.raises(TypeError, match=match):
            scheduler.step(model_output, scheduler.timesteps[0], sample, generator=generator)
        assert scheduler.step_index is None


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_begin_index_is_checked(cls: type) -> None:
    scheduler = _ready(cls)
    with pytest.raises(TypeError, match="`begin_index`"):
        scheduler.set_begin_index(1.5)
    with pytest.raises(ValueError, match="`begin_index`"):
        scheduler.set_begin_index(-1)
    x = torch.zeros(1, 4, 8, 8)
    scheduler.set_begin_index(7)  # past the 4 timesteps: refused at the first step
    with pytest.raises(ValueError, match="`begin_index`"):
        scheduler.step(x, 999, x)
    scheduler.set_begin_index(0)  # with a begin index the timestep is not looked up
    with pytest.raises(ValueError, match=r"`timestep` must be an integer in \[0, 999\]"):
        scheduler.step(x, 1500, x)


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_a_bad_device_leaves_the_scheduler_unchanged(cls: type) -> None:
    scheduler = _ready(cls)
    with pytest.raises(ValueError, match="`device`"):
        scheduler.set_timesteps(8, device="nodevice")
    assert scheduler.num_inference_steps == 4
    assert scheduler.timesteps.tolist() == [999, 759, 499, 259]


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_forward_noising_timesteps_are_checked(cls: type) -> None:
    """The reference: an IndexError for 1500, a silent wrap-around for -1."""
    scheduler = _ready(cls)
    x = torch.zeros(2, 3)
    for method in (scheduler.add_noise, scheduler.get_velocity):
        for bad in (torch.tensor([1500, 0]), torch.tensor([-1, 0]), [1500, 0]):
            with pytest.raises(ValueError, match=r"`timesteps` must be (an )?integers? in"):
                method(x, x, bad)
        with pytest.raises(TypeError, match="`timesteps`"):
            method(x, x, torch.tensor([1.5, 0.0]))
        with pytest.raises(ValueError, match="`timesteps`"):
            method(x, x, torch.tensor([999, 0, 1]))
        with pytest.raises(TypeError, match="`noise`"):
            method(x, None, torch.tensor([999, 0]))


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_custom_timesteps_errors_name_the_argument(cls: type) -> None:
    for kwargs in ({}, {"num_inference_steps": 4, "timesteps": [999]}, {"timesteps": [1, 5]}):
        with pytest.raises(ValueError, match="`timesteps`") as info:
            cls().set_timesteps(**kwargs)
        assert "custom_timesteps" not in str(info.value)
    with pytest.raises(TypeError, match="`timesteps` must be a sequence"):
        cls().set_timesteps(timesteps=999)
