"""The timestep plan equals the reference's set_timesteps: timesteps, errors and warnings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from core_helpers import OUR_LOGGER, captured_warnings, ref_plan, reference
from core_strategies import configs, edge_eta_for, etas, plan_kwargs
from hypothesis import event, given
from hypothesis import strategies as st

from tcd_core import (
    TCDConfig,
    draws_noise,
    intermediate_timestep,
    previous_timesteps,
    tcd_timesteps,
)


def our_plan(config, **kwargs):
    kwargs = dict(kwargs)
    n = kwargs.pop("num_inference_steps", None)
    with captured_warnings(OUR_LOGGER) as msgs:
        try:
            plan = tcd_timesteps(config, n, **kwargs)
        except Exception as err:
            return err, list(msgs)
    return plan, list(msgs)


@st.composite
def config_and_kwargs(draw):
    config = draw(configs())
    return config, draw(plan_kwargs(config))


@given(config_and_kwargs())
def test_plan_matches_reference_everywhere(case):
    """Same timesteps, same num_inference_steps, same warnings (verbatim), same ValueErrors."""
    config, kwargs = case
    ref_ts, ref_n, ref_msgs = ref_plan(config, **kwargs)
    ours, our_msgs = our_plan(config, **kwargs)
    event("custom timesteps" if "timesteps" in kwargs else "num_inference_steps")
    event(
        "explicit original_inference_steps"
        if "original_inference_steps" in kwargs
        else "config original steps"
    )
    event(
        "reference ValueError" if isinstance(ref_ts, Exception) else f"{len(ref_msgs)} warning(s)"
    )
    if isinstance(ref_ts, Exception):
        assert isinstance(ref_ts, ValueError), (
            f"reference raised {ref_ts!r} inside the accepted space"
        )
        assert isinstance(ours, ValueError), f"reference raised {ref_ts!r}, ours gave {ours!r}"
        # verbatim, but naming the argument `timesteps` as the caller does
        assert str(ours) == str(ref_ts).replace("`custom_timesteps`", "`timesteps`")
        return
    if len(ref_ts) == 0:
        # custom timesteps with int(n * strength) == 0: the reference silently keeps no step
        assert isinstance(ours, ValueError) and "strength" in str(ours)
        return
    assert not isinstance(ours, Exception), ours
    assert ours.timesteps.dtype == np.int64
    np.testing.assert_array_equal(ours.timesteps, ref_ts)
    assert ours.num_inference_steps == ref_n
    assert ours.custom_timesteps == ("timesteps" in kwargs)
    np.testing.assert_array_equal(ours.prev_timesteps, previous_timesteps(ref_ts))
    assert our_msgs == ref_msgs


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"num_inference_steps": 1}, [999]),
        ({"num_inference_steps": 2}, [999, 499]),
        ({"num_inference_steps": 4}, [999, 759, 499, 259]),
        ({"num_inference_steps": 8}, [999, 879, 759, 639, 499, 379, 259, 139]),
        ({"num_inference_steps": 4, "strength": 0.5}, [499, 379, 259, 139]),
        ({"num_inference_steps": 4, "original_inference_steps": 50}, [999, 749, 499, 249]),
    ],
)
def test_known_default_grids(kwargs, expected):
    n = kwargs.pop("num_inference_steps")
    plan = tcd_timesteps(TCDConfig(), n, **kwargs)
    assert plan.timesteps.tolist() == expected
    assert plan.prev_timesteps.tolist() == expected[1:] + [0]


def test_config_original_steps_30():
    plan = tcd_timesteps(TCDConfig(original_inference_steps=30), 4)
    assert plan.timesteps.tolist() == [989, 758, 494, 263]


def test_float64_index_floor_not_integer_division():
    """n=38 over L=1000: the reference's float64 floor picks index 499 at i=19, not (i*L)//n=500."""
    config = TCDConfig()
    for n in range(1, 51):
        ref_ts, _, _ = ref_plan(config, num_inference_steps=n, original_inference_steps=1000)
        ours = tcd_timesteps(config, n, original_inference_steps=1000).timesteps
        np.testing.assert_array_equal(ours, ref_ts)
    idx = np.floor(np.linspace(0, 1000, 38, endpoint=False)).astype(int)
    assert idx[19] == 499 and (19 * 1000) // 38 == 500


def test_custom_strength_keeps_untrimmed_count():
    plan = tcd_timesteps(TCDConfig(), timesteps=[999, 759, 499, 259], strength=0.5)
    assert plan.timesteps.tolist() == [499, 259]
    assert plan.num_inference_steps == 4
    sched = reference(TCDConfig())
    sched.set_timesteps(timesteps=[999, 759, 499, 259], strength=0.5)
    assert sched.num_inference_steps == 4 and sched.timesteps.tolist() == [499, 259]
    # noise is then drawn at the (trimmed) last step too, since step_index 1 != 4 - 1
    assert plan.noise_mask(0.3).tolist() == [True, True]


def test_custom_warnings_verbatim():
    config = TCDConfig()
    kwargs = {"timesteps": [900, 555, 10]}
    _, _, ref_msgs = ref_plan(config, **kwargs)
    _, msgs = our_plan(config, **kwargs)
    assert len(ref_msgs) == 2 and msgs == ref_msgs
    long = list(range(999, 999 - 60, -1))
    _, _, ref_msgs = ref_plan(config, timesteps=long)
    _, msgs = our_plan(config, timesteps=long)
    assert any("exceeds the" in m for m in ref_msgs) and msgs == ref_msgs


@given(st.integers(0, 2000), etas)
def test_intermediate_timestep_is_the_reference_float32_floor(p, eta):
    ref = torch.floor((1 - eta) * torch.tensor(p)).to(dtype=torch.long)
    assert int(intermediate_timestep(p, eta)) == int(ref)
    assert isinstance(intermediate_timestep(p, eta), np.integer | np.ndarray)


@st.composite
def p_and_edge_eta(draw):
    p = draw(st.integers(1, 1000))
    return p, draw(edge_eta_for(p))


@given(p_and_edge_eta())
def test_intermediate_timestep_edge_etas(case):
    """η = 1 − m/p, where float32 and float64 floors can disagree: always the float32 one."""
    p, eta = case
    ref = int(torch.floor((1 - eta) * torch.tensor(p)).to(dtype=torch.long))
    assert int(intermediate_timestep(p, eta)) == ref
    # on every namespace, with device arrays for p
    assert int(intermediate_timestep(torch.tensor(p), eta)) == ref
    assert int(intermediate_timestep(np.int64(p), np.float64(eta))) == ref


def test_float32_and_float64_floors_differ_and_we_follow_float32():
    assert int(intermediate_timestep(90, 0.3)) == 63 and int(np.floor((1 - 0.3) * 90)) == 62
    assert int(intermediate_timestep(10, 0.9)) == 1 and int(np.floor((1 - 0.9) * 10)) == 0
    # a whole vector of p at once, on the host
    ps = np.arange(0, 1000)
    ref = torch.floor((1 - 0.3) * torch.from_numpy(ps)).long().numpy()
    np.testing.assert_array_equal(intermediate_timestep(ps, 0.3), ref)


@given(st.integers(0, 60), etas, st.integers(1, 60))
def test_draws_noise_is_the_reference_branch(i, eta, n):
    assert draws_noise(i, eta, n) == (eta > 0 and i != n - 1)


def test_float32_eta_arrays_round_twice_float64_arrays_do_not():
    """Documented: a float32 η array is already rounded, so f32(1 − f32(η)) can differ from the
    reference's f32(1 − η). Python floats and float64 arrays (host or device) match exactly."""
    eta, p = 0.19140628724709818, 256
    ref = int(torch.floor((1 - eta) * torch.tensor(p)).long())
    assert ref == 206
    assert int(intermediate_timestep(p, eta)) == ref
    assert int(intermediate_timestep(np.asarray([p]), np.asarray([eta]))[0]) == ref
    assert (
        int(intermediate_timestep(torch.tensor([p]), torch.tensor([eta], dtype=torch.float64))[0])
        == ref
    )
    assert (
        int(intermediate_timestep(torch.tensor([p]), torch.tensor([eta], dtype=torch.float32))[0])
        == 207
    )
