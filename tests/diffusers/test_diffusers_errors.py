"""Bad input: clear ValueErrors where the reference asserts, fails obscurely or accepts nonsense."""

from __future__ import annotations

import math

import diffusers
import pytest
import torch

from tcd_diffusers import TCDScheduler


def _ready(n: int = 4) -> TCDScheduler:
    scheduler = TCDScheduler()
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


def test_step_before_set_timesteps_gives_the_reference_error() -> None:
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError) as ref:
        diffusers.TCDScheduler().step(x, 999, x)
    with pytest.raises(ValueError) as ours:
        TCDScheduler().step(x, 999, x)
    assert str(ours.value) == str(ref.value)


@pytest.mark.parametrize("timestep", [500, torch.tensor(998), torch.tensor([998])])
def test_first_timestep_not_in_schedule(timestep) -> None:
    scheduler = _ready()
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"998|500") as err:
        scheduler.step(x, timestep, x)
    if not (isinstance(timestep, torch.Tensor) and timestep.ndim == 1):
        assert "[999, 759, 499, 259]" in str(err.value)
    assert scheduler.step_index is None


def test_index_for_timestep_names_the_missing_timestep() -> None:
    with pytest.raises(ValueError, match=r"timestep 5 is not in the timestep schedule \[999"):
        _ready().index_for_timestep(5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_inference_steps": 4, "timesteps": [999, 499]},
        {"num_inference_steps": 51},
        {"num_inference_steps": 2000},
        {"timesteps": [499, 999]},
        {"timesteps": [1000, 10]},
    ],
)
def test_set_timesteps_errors_like_the_reference(kwargs: dict) -> None:
    with pytest.raises(ValueError) as ref:
        diffusers.TCDScheduler().set_timesteps(**kwargs)
    with pytest.raises(ValueError) as ours:
        TCDScheduler().set_timesteps(**kwargs)
    # verbatim, but naming the argument `timesteps` as the caller does
    assert str(ours.value) == str(ref.value).replace("`custom_timesteps`", "`timesteps`")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_inference_steps": 4, "strength": 0.0},
        {"num_inference_steps": 4, "strength": 1.5},
        {"num_inference_steps": 0},
        {"timesteps": [999, 500, -1]},
        {"timesteps": [999, 500], "strength": 0.2},
    ],
)
def test_set_timesteps_rejects_what_the_reference_accepts(kwargs: dict) -> None:
    """Nonsense the reference runs with (strength 1.5 gives timesteps ≥ 1000, negative custom
    timesteps wrap around, strength 0.2 keeps no custom step) or crashes on (n = 0)."""
    with pytest.raises(ValueError):
        TCDScheduler().set_timesteps(**kwargs)


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
def test_invalid_config_values(config: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(config))):
        TCDScheduler(**config)


def test_mismatched_shapes_change_nothing() -> None:
    scheduler = _ready()
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    with pytest.raises(ValueError, match="shape"):
        scheduler.step(torch.zeros(1, 4, 8, 8), 999, torch.zeros(1, 4, 4, 4), generator=g)
    assert scheduler.step_index is None
    assert torch.equal(g.get_state(), state)  # no noise drawn
