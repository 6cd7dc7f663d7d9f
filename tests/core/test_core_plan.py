"""Both algorithms' plans (``plan_timesteps``) equal their references' ``set_timesteps``
(diffusers' TCDScheduler, LCMScheduler): timesteps, next timesteps, errors and warnings; where the
two plans differ; TCD's intermediate timestep s = ⌊f32(1−η)·f32(p)⌋ and its noise rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from core_helpers import OUR_LOGGER, captured_warnings, each_algorithm, ref_plan, reference
from core_strategies import configs, edge_eta_for, etas, examples, plan_kwargs
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tcd_core import LCM, TCD, TCDConfig, draws_noise, intermediate_timestep, plan_timesteps

#: the η each algorithm's ``noise_mask`` takes (LCM has none)
ETA = {TCD: 0.3, LCM: None}


def our_plan(config, algorithm, **kwargs):
    kwargs = dict(kwargs)
    n = kwargs.pop("num_inference_steps", None)
    with captured_warnings(OUR_LOGGER) as msgs:
        try:
            plan = plan_timesteps(algorithm, config, n, **kwargs)
        except Exception as err:
            return err, list(msgs)
    return plan, list(msgs)


@st.composite
def plan_cases(draw):
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


@each_algorithm
@settings(max_examples=examples(150))  # cheap: no tensors
@given(plan_cases())
def test_plan_matches_reference_everywhere(algorithm, case):
    """Same timesteps, num_inference_steps, warnings (verbatim), ValueErrors (same message); the
    next timesteps by the reference's rule (after the last: 0 for TCD, itself for LCM)."""
    config, kwargs = case
    ref_ts, ref_n, ref_msgs = ref_plan(config, algorithm, **kwargs)
    ours, our_msgs = our_plan(config, algorithm, **kwargs)
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
    assert not isinstance(ours, Exception), ours
    assert ours.algorithm is algorithm
    assert ours.timesteps.dtype == np.int64 and ours.next_timesteps.dtype == np.int64
    np.testing.assert_array_equal(ours.timesteps, ref_ts)
    assert ours.num_inference_steps == ref_n
    assert ours.custom_timesteps == ("timesteps" in kwargs)
    after_last = ref_ts[-1] if algorithm is LCM else 0
    np.testing.assert_array_equal(ours.next_timesteps, np.append(ref_ts[1:], after_last))
    assert our_msgs == ref_msgs


# (config overrides, set_timesteps kwargs, TCD's plan, LCM's where it differs), all measured on
# the references (the test checks them there too)
GOLDEN = [
    ({}, {"num_inference_steps": 1}, [999], None),
    ({}, {"num_inference_steps": 2}, [999, 499], None),
    ({}, {"num_inference_steps": 4}, [999, 759, 499, 259], None),
    ({}, {"num_inference_steps": 8}, [999, 879, 759, 639, 499, 379, 259, 139], None),
    ({}, {"num_inference_steps": 4, "strength": 0.5}, [499, 379, 259, 139], None),
    (
        {},
        {"num_inference_steps": 4, "original_inference_steps": 50},
        [999, 749, 499, 249],
        [999, 759, 499, 259],
    ),
    (
        {},
        {"num_inference_steps": 8, "original_inference_steps": 100},
        [999, 874, 749, 624, 499, 374, 249, 124],
        [999, 879, 749, 629, 499, 379, 249, 129],
    ),
    ({}, {"timesteps": [999, 500, 100], "strength": 0.5}, [100], None),
    ({"original_inference_steps": 30}, {"num_inference_steps": 4}, [989, 758, 494, 263], None),
]


@each_algorithm
@pytest.mark.parametrize(("overrides", "kwargs", "tcd", "lcm"), GOLDEN)
def test_golden_plans(algorithm, overrides, kwargs, tcd, lcm):
    expected = lcm if algorithm is LCM and lcm is not None else tcd
    config = TCDConfig(**overrides)
    ref_ts, _, _ = ref_plan(config, algorithm, **kwargs)
    assert ref_ts.tolist() == expected  # the reference itself, measured
    kwargs = dict(kwargs)
    plan = plan_timesteps(algorithm, config, kwargs.pop("num_inference_steps", None), **kwargs)
    assert plan.timesteps.tolist() == expected
    after_last = expected[-1] if algorithm is LCM else 0
    assert plan.next_timesteps.tolist() == expected[1:] + [after_last]


@each_algorithm
def test_float64_index_floor_not_integer_division(algorithm):
    """n=38 over L=1000: the reference's float64 floor picks index 499 at i=19, not (i*L)//n=500.
    (With original_inference_steps = 1000 both algorithms' grids are range(0, 1000).)"""
    config = TCDConfig()
    for n in range(1, 51):
        ref_ts, _, _ = ref_plan(
            config, algorithm, num_inference_steps=n, original_inference_steps=1000
        )
        ours = plan_timesteps(algorithm, config, n, original_inference_steps=1000).timesteps
        np.testing.assert_array_equal(ours, ref_ts)
    idx = np.floor(np.linspace(0, 1000, 38, endpoint=False)).astype(int)
    assert idx[19] == 499 and (19 * 1000) // 38 == 500


@each_algorithm
def test_custom_strength_keeps_untrimmed_count(algorithm):
    kwargs = {"timesteps": [999, 759, 499, 259], "strength": 0.5}
    plan = plan_timesteps(algorithm, TCDConfig(), **kwargs)
    assert plan.timesteps.tolist() == [499, 259]
    assert plan.num_inference_steps == 4
    ref_ts, ref_n, _ = ref_plan(TCDConfig(), algorithm, **kwargs)
    assert ref_n == 4 and ref_ts.tolist() == [499, 259]
    # no kept step is final (step_index != 4 - 1): noise is drawn at the trimmed last step too
    assert plan.final_steps().tolist() == [False, False]
    assert plan.noise_mask(ETA[algorithm]).tolist() == [True, True]


@each_algorithm
def test_custom_warnings_verbatim(algorithm):
    config = TCDConfig()
    kwargs = {"timesteps": [900, 555, 10]}
    _, _, ref_msgs = ref_plan(config, algorithm, **kwargs)
    _, msgs = our_plan(config, algorithm, **kwargs)
    assert len(ref_msgs) == 2 and msgs == ref_msgs
    long = list(range(999, 999 - 60, -1))
    _, _, ref_msgs = ref_plan(config, algorithm, timesteps=long)
    _, msgs = our_plan(config, algorithm, timesteps=long)
    assert any("exceeds the" in m for m in ref_msgs) and msgs == ref_msgs


@each_algorithm
def test_final_steps_and_noise_mask(algorithm):
    plan = plan_timesteps(algorithm, TCDConfig(), 4)
    assert plan.final_steps().tolist() == [False, False, False, True]
    assert plan.final_steps(begin_index=2).tolist() == [False, True]
    assert plan.noise_mask(ETA[algorithm]).tolist() == [True, True, True, False]
    assert plan.noise_mask(ETA[algorithm], begin_index=2).tolist() == [True, False]
    assert plan_timesteps(algorithm, TCDConfig(), 1).noise_mask(ETA[algorithm]).tolist() == [False]


def test_where_lcm_and_tcd_plans_differ():
    """Measured on both references: an explicit original_inference_steps keeps LCM on the
    [k−1, 2k−1, …] grid (TCD switches to range(0, N)); > N is an error only for LCM."""
    cfg = TCDConfig()
    for kw in ({"original_inference_steps": 50}, {"original_inference_steps": 100}):
        lcm, tcd = reference(cfg, LCM), reference(cfg, TCD)
        lcm.set_timesteps(8, **kw)
        tcd.set_timesteps(8, **kw)
        assert lcm.timesteps.tolist() != tcd.timesteps.tolist()
        assert plan_timesteps(LCM, cfg, 8, **kw).timesteps.tolist() == lcm.timesteps.tolist()
        assert plan_timesteps(TCD, cfg, 8, **kw).timesteps.tolist() == tcd.timesteps.tolist()
    with pytest.raises(ValueError, match="original_steps"):
        reference(cfg, LCM).set_timesteps(4, original_inference_steps=2000)
    with pytest.raises(ValueError, match="original_steps"):
        plan_timesteps(LCM, cfg, 4, original_inference_steps=2000)
    reference(cfg, TCD).set_timesteps(4, original_inference_steps=2000)  # accepted by TCD
    plan_timesteps(TCD, cfg, 4, original_inference_steps=2000)
    assert plan_timesteps(LCM, cfg, 4).next_timesteps.tolist() == [759, 499, 259, 259]
    assert plan_timesteps(TCD, cfg, 4).next_timesteps.tolist() == [759, 499, 259, 0]


@each_algorithm
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
def test_plan_rejects_what_the_reference_accepts_or_crashes_on(algorithm, kwargs, name):
    kwargs = dict(kwargs)
    n = kwargs.pop("num_inference_steps", None)
    with pytest.raises(ValueError, match=name):
        plan_timesteps(algorithm, TCDConfig(), n, **kwargs)


# ------------------------------------------------------------------ TCD: η and s


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
