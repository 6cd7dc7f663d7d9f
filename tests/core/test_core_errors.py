"""Bad input: every ValueError of the reference under the same condition, and a ValueError naming
the argument where the reference lets nonsense through or uses a bare assert."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from core_helpers import each_algorithm, namespace_of, reference
from diffusers import TCDScheduler
from diffusers.schedulers.scheduling_tcd import betas_for_alpha_bar as ref_betas_for_alpha_bar

from tcd_core import (
    TCDConfig,
    add_noise,
    alphas_cumprod,
    betas_for_alpha_bar,
    check_eta,
    draws_noise,
    get_velocity,
    intermediate_timestep,
    lcm_step,
    lcm_step_coefficients,
    lcm_timesteps,
    linspace_f32,
    step,
    step_coefficients,
    tcd_step,
    tcd_timesteps,
)

# (config overrides, set_timesteps kwargs): each makes the reference raise ValueError
REFERENCE_VALUE_ERRORS = {
    "neither n nor timesteps": ({}, {}),
    "both n and timesteps": ({}, {"num_inference_steps": 4, "timesteps": [999, 499]}),
    "config original_steps > N": ({"num_train_timesteps": 40}, {"num_inference_steps": 4}),
    "custom not descending": ({}, {"timesteps": [999, 500, 500]}),
    "custom ascending": ({}, {"timesteps": [100, 500]}),
    "custom first >= N": ({}, {"timesteps": [1000, 500]}),
    "n > N": (
        {"num_train_timesteps": 20, "original_inference_steps": 10},
        {"num_inference_steps": 25, "original_inference_steps": 30},
    ),
    "original x strength < n": ({}, {"num_inference_steps": 51}),
    "strength leaves too few": ({}, {"num_inference_steps": 30, "strength": 0.5}),
    "n > explicit original": ({}, {"num_inference_steps": 20, "original_inference_steps": 10}),
    "empty grid (strength)": ({}, {"num_inference_steps": 1, "strength": 0.01}),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_VALUE_ERRORS))
def test_every_reference_value_error_is_reproduced(name):
    overrides, kwargs = REFERENCE_VALUE_ERRORS[name]
    config = TCDConfig(**overrides)
    with pytest.raises(ValueError) as ref_err:
        reference(config).set_timesteps(**kwargs)
    kwargs = dict(kwargs)
    n = kwargs.pop("num_inference_steps", None)
    with pytest.raises(ValueError) as our_err:
        tcd_timesteps(config, n, **kwargs)
    # verbatim, except that the argument is named as the caller names it: `timesteps`
    assert str(our_err.value) == str(ref_err.value).replace("`custom_timesteps`", "`timesteps`")


def test_reference_value_error_unknown_prediction_type_at_config_time():
    """The reference accepts prediction_type='flow' at construction and raises ValueError only in
    step(); we raise at config time (earlier, same type)."""
    sched = TCDScheduler(prediction_type="flow")
    sched.set_timesteps(2)
    with pytest.raises(ValueError, match="prediction_type"):
        sched.step(torch.zeros(1, 1), sched.timesteps[0], torch.zeros(1, 1), eta=0.0)
    with pytest.raises(ValueError, match="prediction_type"):
        TCDConfig(prediction_type="flow")


def test_unknown_alpha_transform():
    with pytest.raises(ValueError):
        ref_betas_for_alpha_bar(10, alpha_transform_type="sigmoid")
    with pytest.raises(ValueError, match="alpha_transform_type"):
        betas_for_alpha_bar(10, alpha_transform_type="sigmoid")


def test_unknown_beta_schedule_is_value_error_not_not_implemented():
    with pytest.raises(NotImplementedError):
        TCDScheduler(beta_schedule="cosine")
    with pytest.raises(ValueError, match="beta_schedule"):
        TCDConfig(beta_schedule="cosine")


# ------------------------------------------------------------------ what the reference lets through


@pytest.mark.parametrize("eta", (-0.1, 1.5, float("nan"), 2, -1e-9, True))
def test_eta_outside_unit_interval(eta):
    if not isinstance(eta, bool) and not np.isnan(eta):
        sched = reference(TCDConfig())
        sched.set_timesteps(2)
        with pytest.raises(AssertionError):  # a bare assert: gone under python -O
            sched.step(torch.zeros(1, 1), sched.timesteps[0], torch.zeros(1, 1), eta=eta)
    with pytest.raises(ValueError, match="eta"):
        check_eta(eta)
    ac = alphas_cumprod(TCDConfig())
    x = np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError, match="eta"):
        tcd_step(x, 999, x, 499, ac, eta=eta)
    if not isinstance(eta, bool):  # host arrays are checked too (they cost no device read)
        with pytest.raises(ValueError, match="eta"):
            tcd_step(x, 999, x, 499, ac, eta=np.asarray([eta], dtype=np.float64))


@pytest.mark.parametrize("strength", (0.0, -0.5, 1.5, 2.0, float("nan")))
def test_strength_outside_zero_one(strength):
    if strength == 2.0:  # the reference silently walks off the training schedule
        sched = reference(TCDConfig())
        sched.set_timesteps(4, strength=2.0)
        assert sched.timesteps[0] >= 1000
    with pytest.raises(ValueError, match="strength"):
        tcd_timesteps(TCDConfig(), 4, strength=strength)
    with pytest.raises(ValueError, match="strength"):
        tcd_timesteps(TCDConfig(), timesteps=[999, 499], strength=strength)


@pytest.mark.parametrize("n", (0, -1, 2.5, "4", True))
def test_num_inference_steps_below_one_or_not_an_integer(n):
    if n == 0 and not isinstance(n, bool):
        with pytest.raises(ZeroDivisionError):
            reference(TCDConfig()).set_timesteps(0)
    with pytest.raises(ValueError, match="num_inference_steps"):
        tcd_timesteps(TCDConfig(), n)


def test_original_inference_steps_argument_validated():
    with pytest.raises(ValueError, match="original_inference_steps"):
        tcd_timesteps(TCDConfig(), 4, original_inference_steps=0)


@pytest.mark.parametrize("timesteps", ([999, -1], [-5], [999, 499.5], [], ["999"]))
def test_bad_custom_timesteps(timesteps):
    if timesteps == [999, -1]:  # the reference accepts it; -1 wraps around when indexing
        sched = reference(TCDConfig())
        sched.set_timesteps(timesteps=timesteps)
        assert sched.timesteps.tolist() == [999, -1]
    with pytest.raises(ValueError, match="timesteps"):
        tcd_timesteps(TCDConfig(), timesteps=timesteps)


def test_strength_that_keeps_no_custom_step():
    sched = reference(TCDConfig())
    sched.set_timesteps(timesteps=[999, 499], strength=0.4)
    assert len(sched.timesteps) == 0  # the reference silently keeps nothing
    with pytest.raises(ValueError, match="strength"):
        tcd_timesteps(TCDConfig(), timesteps=[999, 499], strength=0.4)


@each_algorithm
@pytest.mark.parametrize("backend", ("numpy", "torch"))
def test_shape_mismatches_name_the_argument(algorithm, backend):
    xp = namespace_of(backend)
    ac = alphas_cumprod(TCDConfig(), xp)
    x = xp.zeros((2, 3, 4))

    def call(model_output=x, timestep=999, sample=x, next_timestep=499, **kwargs):
        kwargs = {"eta": 0.3, **kwargs} if algorithm.has_eta else kwargs
        return step(algorithm, model_output, timestep, sample, next_timestep, ac, **kwargs)

    cases = [
        ("model_output", lambda: call(model_output=xp.zeros((2, 3, 5)))),
        ("model_output", lambda: call(model_output=xp.zeros((2, 3)))),
        ("noise", lambda: call(noise=xp.zeros((1, 3, 4)))),
        ("`timestep`", lambda: call(timestep=xp.asarray([999, 999, 999]))),
        ("next_timestep", lambda: call(next_timestep=xp.zeros((2, 2), dtype=xp.int64))),
        ("next_timestep", lambda: call(next_timestep=xp.asarray([1, 2, 3]))),
        ("`timestep`", lambda: call(timestep=-3, next_timestep=0)),
        ("`timestep`", lambda: call(timestep=-1)),
        ("`timestep`", lambda: call(timestep=99.5, next_timestep=0)),
    ]
    if algorithm.has_eta:
        cases.append(("eta", lambda: call(eta=xp.zeros((2, 2)))))
    else:
        cases.append(("final", lambda: call(final=np.zeros(3, bool))))
    for name, bad in cases:
        with pytest.raises(ValueError, match=name):
            bad()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_train_timesteps", "1000"),
        ("num_train_timesteps", 0),
        ("num_train_timesteps", 1000.0),
        ("beta_start", "0.1"),
        ("beta_start", -0.1),
        ("beta_end", float("nan")),
        ("beta_schedule", "cosine"),
        ("trained_betas", [0.1, 0.2]),
        ("trained_betas", "abc"),
        ("original_inference_steps", 0),
        ("clip_sample", "yes"),
        ("clip_sample_range", 0.0),
        ("set_alpha_to_one", 1),
        ("steps_offset", -1),
        ("prediction_type", "flow"),
        ("thresholding", None),
        ("dynamic_thresholding_ratio", 1.5),
        ("sample_max_value", -1.0),
        ("timestep_spacing", "uniform"),
        ("timestep_scaling", 0),
        ("rescale_betas_zero_snr", "false"),
    ],
)
def test_config_wrong_types_and_values(field, value):
    with pytest.raises(ValueError, match=field):
        TCDConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        TCDConfig.from_dict({field: value})


def test_from_dict_rejects_non_mapping_and_unknown_overrides():
    with pytest.raises(ValueError, match="config"):
        TCDConfig.from_dict([("beta_start", 0.1)])
    with pytest.raises(ValueError, match="field"):
        TCDConfig.from_dict({}, not_a_field=1)


def test_linspace_steps():
    with pytest.raises(ValueError, match="steps"):
        linspace_f32(0.0, 1.0, 0)


# ------------------------------------------------------------------ misuse is loud (issue 16)

AC = alphas_cumprod(TCDConfig())
X = np.zeros((2, 3), np.float32)
Z = np.ones((2, 3), np.float32)


@pytest.mark.parametrize("backend", ("numpy", "torch"))
def test_next_timestep_above_t_is_refused(backend):
    """p > t is nonsense (sampling runs downwards); p == t is legitimate (LCM's last step)."""
    xp = namespace_of(backend)
    ac, x = alphas_cumprod(TCDConfig(), xp), xp.zeros((2, 3))
    for call in (
        lambda: tcd_step(x, 759, x, 999, ac, noise=x),
        lambda: lcm_step(x, 759, x, 999, ac, x),
        lambda: step_coefficients(ac, 759, 999, eta=0.3),
        lambda: lcm_step_coefficients(ac, 759, 999),
        lambda: tcd_step(x, np.array([999, 759]), x, np.array([759, 999]), ac, noise=x),
        lambda: step_coefficients(ac, 999, 499, intermediate=600),  # s > p
    ):
        with pytest.raises(ValueError, match="must not exceed"):
            call()
    lcm_step(x, 259, x, 259, ac, final=True)  # equal: allowed
    tcd_step(x, 259, x, 259, ac, eta=0.0)


@pytest.mark.parametrize("backend", ("numpy", "torch"))
def test_timesteps_outside_the_table_name_the_argument_and_range(backend):
    xp = namespace_of(backend)
    ac, x = alphas_cumprod(TCDConfig(), xp), xp.zeros((2, 3))
    cases = {
        "`timestep`": (
            lambda: tcd_step(x, 1500, x, 0, ac),
            lambda: step_coefficients(ac, 1000, 0, eta=0.3),
            lambda: lcm_step(x, 1500, x, 0, ac, final=True),
            lambda: lcm_step_coefficients(ac, 1000, 999),
            lambda: tcd_step(x, np.array([1500, 999]), x, np.array([0, 0]), ac),
            lambda: tcd_step(x, float("nan"), x, 0, ac),
            lambda: tcd_step(x, math.inf, x, 0, ac),
        ),
        "`next_timestep`": (lambda: tcd_step(x, 999, x, -1, ac),),
    }
    for name, calls in cases.items():
        for call in calls:
            with pytest.raises(
                ValueError, match=re.escape(name) + r" must be an integer in \[0, 999\]"
            ):
                call()


def test_alphas_cumprod_must_be_a_1d_array():
    for call in (
        lambda: tcd_step(X, 999, X, 0, AC[None]),
        lambda: step_coefficients(AC[None], 999, 0, eta=0.3),
        lambda: lcm_step(X, 999, X, 999, AC.reshape(10, 100), final=True),
        lambda: add_noise(AC[None], X, Z, 999),
    ):
        with pytest.raises(ValueError, match="`alphas_cumprod` must be a 1-D array"):
            call()
    with pytest.raises(TypeError, match="`alphas_cumprod` must be an array"):
        tcd_step(X, 999, X, 0, AC.tolist())


@pytest.mark.parametrize("eta", ("0.3", None, 0.3j, ["a", "b"], object()))
def test_eta_of_the_wrong_type_is_a_type_error_naming_eta(eta):
    for call in (
        lambda: tcd_step(X, 999, X, 0, AC, eta=eta),
        lambda: check_eta(eta),
        lambda: draws_noise(0, eta, 4),
    ):
        with pytest.raises(TypeError, match="`eta` must be a real number in"):
            call()
    if eta is not None:  # None there means "η given as `one_minus_eta`"
        with pytest.raises(TypeError, match="`eta` must be a real number in"):
            intermediate_timestep(499, eta)


def test_eta_list_values_are_checked_too():
    with pytest.raises(ValueError, match="eta"):
        tcd_step(X, 999, X, 0, AC, eta=[0.3, 1.5])
    with pytest.raises(ValueError, match="eta"):
        intermediate_timestep(499, 2.0)  # would give a negative s


def test_missing_noise_where_the_step_renoises_is_refused():
    """η > 0 and p > 0: the reference draws z there, so a missing `noise` would silently skip
    the re-noising. Where the noise term is exactly zero (η = 0, p = 0) None is fine."""
    with pytest.raises(ValueError, match="`noise` is required"):
        tcd_step(X, 999, X, 759, AC, eta=0.3)
    with pytest.raises(ValueError, match="`noise` is required"):
        tcd_step(X, 999, X, 759, AC, eta=np.array([0.0, 0.3]))
    with pytest.raises(ValueError, match="`noise` is required"):
        lcm_step(X, 999, X, 759, AC)  # not final
    with pytest.raises(ValueError, match="`noise` is required"):
        lcm_step(X, 999, X, 759, AC, final=np.array([True, False]))
    tcd_step(X, 999, X, 759, AC, eta=0.0)
    tcd_step(X, 259, X, 0, AC, eta=0.3)
    lcm_step(X, 259, X, 259, AC, final=True)


def test_arguments_of_the_wrong_type_name_themselves():
    cases = {
        "`model_output`": lambda: tcd_step([0.0] * 3, 999, X, 0, AC),
        "`sample`": lambda: lcm_step(X, 999, None, 999, AC, final=True),
        "`noise`": lambda: tcd_step(X, 999, X, 759, AC, noise=Z.tolist()),
        "`timestep`": lambda: tcd_step(X, "999", X, 0, AC),
        "`next_timestep`": lambda: tcd_step(X, 999, X, np.array([0.0, 0.0]), AC),
        "`config`": lambda: tcd_step(X, 999, X, 0, AC, config={"prediction_type": "sample"}),
        "`final`": lambda: lcm_step(X, 999, X, 999, AC, Z, final="yes"),
    }
    for name, call in cases.items():
        with pytest.raises(TypeError, match=re.escape(name)):
            call()
    for plan in (tcd_timesteps, lcm_timesteps):
        with pytest.raises(TypeError, match="`config`"):
            plan({"num_train_timesteps": 1000}, 4)


@pytest.mark.parametrize("plan", (tcd_timesteps, lcm_timesteps))
def test_plan_errors_name_the_timesteps_argument(plan):
    """The reference's messages say `custom_timesteps`, which is not the argument's name."""
    for kwargs in ({}, {"num_inference_steps": 4, "timesteps": [999]}, {"timesteps": [1, 5]}):
        kwargs = dict(kwargs)
        with pytest.raises(ValueError, match="`timesteps`") as info:
            plan(TCDConfig(), kwargs.pop("num_inference_steps", None), **kwargs)
        assert "custom_timesteps" not in str(info.value)
    with pytest.raises(TypeError, match="`timesteps` must be a sequence"):
        plan(TCDConfig(), timesteps=999)
    with pytest.raises(ValueError, match="`timesteps` must be a 1-D"):
        plan(TCDConfig(), timesteps=np.array([[999, 499]]))


@pytest.mark.parametrize("function", (add_noise, get_velocity))
def test_forward_noising_checks_its_arguments(function):
    for bad in (np.array([1500, 0]), [-1, 0], 1000):
        with pytest.raises(ValueError, match=r"`timesteps` must be an integer in \[0, 999\]"):
            function(AC, X, Z, bad)
    with pytest.raises(TypeError, match="`timesteps`"):
        function(AC, X, Z, np.array([1.5, 0.0]))
    with pytest.raises(ValueError, match="one per batch element"):
        function(AC, X, Z, np.array([999, 0, 1]))
    with pytest.raises(TypeError, match="`noise` must be an array"):
        function(AC, X, None, np.array([999, 0]))


def test_the_former_keyword_prev_timestep_still_works():
    """The next timestep is called ``next_timestep`` now; ``prev_timestep=``, its former name,
    keeps working as a keyword (the same result), and passing both is a TypeError."""
    cases = [
        (tcd_step, (X, 999, X), {"alphas_cumprod": AC, "eta": 0.3, "noise": Z}),
        (lcm_step, (X, 999, X), {"alphas_cumprod": AC, "noise": Z}),
        (step_coefficients, (AC, 999), {"eta": 0.3}),
        (lcm_step_coefficients, (AC, 999), {}),
        (intermediate_timestep, (), {"eta": 0.3}),
    ]
    for function, args, kwargs in cases:
        now = function(*args, next_timestep=759, **kwargs)
        before = function(*args, prev_timestep=759, **kwargs)
        for a, b in zip(np.atleast_1d(now), np.atleast_1d(before)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        with pytest.raises(TypeError, match="pass `next_timestep` only"):
            function(*args, next_timestep=759, prev_timestep=759, **kwargs)
