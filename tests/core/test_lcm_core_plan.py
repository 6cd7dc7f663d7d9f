"""lcm_timesteps equals diffusers' LCMScheduler.set_timesteps: timesteps, errors and warnings.

The LCM plan is not TCD's: these tests run against the installed ``LCMScheduler`` itself, and one
test pins the inputs where the two references disagree.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from core_helpers import OUR_LOGGER, captured_warnings
from core_strategies import configs, examples, plan_kwargs
from diffusers import LCMScheduler, TCDScheduler
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tcd_core import (
    LCMPlan,
    TCDConfig,
    lcm_final_step,
    lcm_previous_timesteps,
    lcm_timesteps,
    tcd_timesteps,
)

LCM_LOGGER = "diffusers.schedulers.scheduling_lcm"


def lcm_reference(config: TCDConfig) -> LCMScheduler:
    return LCMScheduler(**config.to_dict())


def ref_lcm_plan(config: TCDConfig, **kwargs):
    """(timesteps, num_inference_steps, warnings) of the LCM reference, or the exception."""
    sched = lcm_reference(config)
    with captured_warnings(LCM_LOGGER) as msgs:
        try:
            sched.set_timesteps(**kwargs)
        except Exception as err:
            return err, None, list(msgs)
    return sched.timesteps.numpy(), sched.num_inference_steps, list(msgs)


def our_lcm_plan(config: TCDConfig, **kwargs):
    kwargs = dict(kwargs)
    n = kwargs.pop("num_inference_steps", None)
    with captured_warnings(OUR_LOGGER) as msgs:
        try:
            plan = lcm_timesteps(config, n, **kwargs)
        except Exception as err:
            return err, list(msgs)
    return plan, list(msgs)


@st.composite
def lcm_cases(draw):
    """A config and set_timesteps kwargs; sometimes an explicit original_inference_steps above N
    (an error for LCM, accepted by TCD) and step counts above N."""
    config = draw(configs())
    kwargs = draw(plan_kwargs(config))
    n_train = config.num_train_timesteps
    if draw(st.integers(0, 7)) == 0:
        kwargs["original_inference_steps"] = draw(st.integers(n_train + 1, n_train + 50))
    if "num_inference_steps" in kwargs and draw(st.integers(0, 9)) == 0:
        kwargs["num_inference_steps"] = draw(st.integers(n_train + 1, n_train + 10))
    return config, kwargs


@settings(max_examples=examples(150))  # cheap: no tensors
@given(lcm_cases())
def test_lcm_plan_matches_reference_everywhere(case):
    """Same timesteps, num_inference_steps, warnings (verbatim), ValueErrors (same message)."""
    config, kwargs = case
    ref_ts, ref_n, ref_msgs = ref_lcm_plan(config, **kwargs)
    ours, our_msgs = our_lcm_plan(config, **kwargs)
    event("custom timesteps" if "timesteps" in kwargs else "num_inference_steps")
    event("explicit original" if "original_inference_steps" in kwargs else "config original")
    event("reference ValueError" if isinstance(ref_ts, Exception) else f"{len(ref_msgs)} warnings")
    if isinstance(ref_ts, Exception):
        assert isinstance(ref_ts, ValueError), f"reference raised {ref_ts!r} in the accepted space"
        assert isinstance(ours, ValueError), f"reference raised {ref_ts!r}, ours gave {ours!r}"
        # verbatim, but naming the argument `timesteps` as the caller does
        assert str(ours) == str(ref_ts).replace("`custom_timesteps`", "`timesteps`")
        return
    if len(ref_ts) == 0:
        # custom timesteps with int(n * strength) == 0: the reference silently keeps no step
        assert isinstance(ours, ValueError) and "strength" in str(ours)
        return
    assert isinstance(ours, LCMPlan), ours
    assert ours.timesteps.dtype == np.int64 and ours.prev_timesteps.dtype == np.int64
    np.testing.assert_array_equal(ours.timesteps, ref_ts)
    assert ours.num_inference_steps == ref_n
    assert ours.custom_timesteps == ("timesteps" in kwargs)
    np.testing.assert_array_equal(ours.prev_timesteps, np.append(ref_ts[1:], ref_ts[-1]))
    assert our_msgs == ref_msgs


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"num_inference_steps": 1}, [999]),
        ({"num_inference_steps": 2}, [999, 499]),
        ({"num_inference_steps": 4}, [999, 759, 499, 259]),
        ({"num_inference_steps": 8}, [999, 879, 759, 639, 499, 379, 259, 139]),
        ({"num_inference_steps": 4, "strength": 0.5}, [499, 379, 259, 139]),
        ({"num_inference_steps": 4, "original_inference_steps": 50}, [999, 759, 499, 259]),
        (
            {"num_inference_steps": 8, "original_inference_steps": 100},
            [999, 879, 749, 629, 499, 379, 249, 129],
        ),
        ({"timesteps": [999, 500, 100], "strength": 0.5}, [100]),
    ],
)
def test_lcm_golden_plans(kwargs, expected):
    ref_ts, _, _ = ref_lcm_plan(TCDConfig(), **kwargs)
    assert ref_ts.tolist() == expected  # the reference itself, measured
    n = kwargs.pop("num_inference_steps", None)
    assert lcm_timesteps(TCDConfig(), n, **kwargs).timesteps.tolist() == expected


def test_where_lcm_and_tcd_plans_differ():
    """Measured on both references: an explicit original_inference_steps keeps LCM on the
    [k−1, 2k−1, …] grid (TCD switches to range(0, N)); > N is an error only for LCM."""
    cfg = TCDConfig()
    for kw in ({"original_inference_steps": 50}, {"original_inference_steps": 100}):
        lcm, tcd = LCMScheduler(), TCDScheduler()
        lcm.set_timesteps(8, **kw)
        tcd.set_timesteps(8, **kw)
        assert lcm.timesteps.tolist() != tcd.timesteps.tolist()
        assert lcm_timesteps(cfg, 8, **kw).timesteps.tolist() == lcm.timesteps.tolist()
        assert tcd_timesteps(cfg, 8, **kw).timesteps.tolist() == tcd.timesteps.tolist()
    with pytest.raises(ValueError, match="original_steps"):
        LCMScheduler().set_timesteps(4, original_inference_steps=2000)
    with pytest.raises(ValueError, match="original_steps"):
        lcm_timesteps(cfg, 4, original_inference_steps=2000)
    TCDScheduler().set_timesteps(4, original_inference_steps=2000)  # accepted by TCD
    assert lcm_timesteps(cfg, 4).prev_timesteps.tolist() == [759, 499, 259, 259]
    assert tcd_timesteps(cfg, 4).prev_timesteps.tolist() == [759, 499, 259, 0]


def test_final_step_and_noise_mask():
    plan = lcm_timesteps(TCDConfig(), 4)
    assert plan.final_steps().tolist() == [False, False, False, True]
    assert plan.noise_mask().tolist() == [True, True, True, False]
    assert plan.final_steps(begin_index=2).tolist() == [False, True]
    assert lcm_timesteps(TCDConfig(), 1).noise_mask().tolist() == [False]
    # custom timesteps trimmed by strength keep the untrimmed count: no step is final
    trimmed = lcm_timesteps(TCDConfig(), timesteps=[999, 759, 499, 259], strength=0.5)
    assert trimmed.timesteps.tolist() == [499, 259]
    assert trimmed.num_inference_steps == 4
    assert trimmed.final_steps().tolist() == [False, False]
    assert [lcm_final_step(i, 4) for i in range(4)] == [False, False, False, True]
    assert lcm_previous_timesteps([7]).tolist() == [7]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),  # reference: ZeroDivisionError
        ({"num_inference_steps": 4, "original_inference_steps": 0}, "original_inference_steps"),
        ({"num_inference_steps": 4, "original_inference_steps": -3}, "original_inference_steps"),
        ({"num_inference_steps": 4, "strength": 0.0}, "strength"),
        ({"num_inference_steps": 4, "strength": 2.0}, "strength"),  # reference: [1999, …]
        ({"num_inference_steps": 4.0}, "num_inference_steps"),
        ({"timesteps": [999, 500, -5]}, "timesteps"),  # reference: wraps around when indexing
        ({"timesteps": []}, "timesteps"),
        ({"timesteps": [999, 500.5]}, "timesteps"),
        ({"timesteps": [999, 759], "strength": 0.4}, "strength"),  # reference: empty plan
    ],
)
def test_lcm_plan_rejects_what_the_reference_accepts_or_crashes_on(kwargs, name):
    n = kwargs.pop("num_inference_steps", None)
    with pytest.raises(ValueError, match=name):
        lcm_timesteps(TCDConfig(), n, **kwargs)


def test_tcd_config_is_lcm_config():
    """TCDConfig serves both schedulers: LCMScheduler's constructor has exactly its fields, in its
    order, with its defaults (and a config saved by one loads in the other)."""
    params = list(inspect.signature(LCMScheduler.__init__).parameters.values())[1:]
    assert [p.name for p in params] == list(TCDConfig.field_names())
    defaults = TCDConfig().to_dict()
    for p in params:
        assert p.default == defaults[p.name], p.name
    assert TCDConfig.from_dict(LCMScheduler(timestep_scaling=2.5).config).timestep_scaling == 2.5
