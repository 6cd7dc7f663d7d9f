"""The core's protocol for every algorithm: the algorithms as values (:data:`TCD`, :data:`LCM`),
their noise rule, the plan's next timesteps and noise mask, the noise path (:class:`VPPath`), the
one Coefficients and StepOutput types under their former names, the step refusing the other
algorithm's argument, and the named configurations (tcd_step, lcm_step, …) being the unified
calls."""

from __future__ import annotations

import dataclasses
import inspect
import math

import jax
import numpy as np
import pytest
import torch
from core_helpers import each_algorithm, namespace_of, reference
from hypothesis import given
from hypothesis import strategies as st

from tcd_core import (
    LCM,
    PREDICTION_TYPES,
    TCD,
    Algorithm,
    Coefficients,
    LCMCoefficients,
    LCMPlan,
    LCMStepOutput,
    Plan,
    StepCoefficients,
    StepOutput,
    TCDConfig,
    TCDPlan,
    TCDStepOutput,
    VPPath,
    alphas_cumprod,
    boundary_condition_scalings,
    coefficients,
    draws_noise,
    intermediate_timestep,
    lcm_final_step,
    lcm_previous_timesteps,
    lcm_step,
    lcm_step_coefficients,
    lcm_timesteps,
    lcm_update,
    next_timesteps,
    plan_timesteps,
    previous_timesteps,
    step,
    step_coefficients,
    tcd_step,
    tcd_timesteps,
    tcd_update,
    update,
)

AC = alphas_cumprod(TCDConfig())
X = np.zeros((2, 3), np.float32)


# ------------------------------------------------------------------ the algorithms


@each_algorithm
def test_an_algorithm_is_a_hashable_frozen_value(algorithm):
    assert repr(algorithm) == algorithm.name.upper() == {TCD: "TCD", LCM: "LCM"}[algorithm]
    assert Algorithm(**dataclasses.asdict(algorithm)) == algorithm
    assert hash(Algorithm(**dataclasses.asdict(algorithm))) == hash(algorithm)
    assert TCD != LCM
    with pytest.raises(dataclasses.FrozenInstanceError):
        algorithm.name = "other"  # type: ignore[misc]
    # a static argument of a compiled function: an equal value reuses its trace
    traces = []

    def plus_has_eta(algorithm, x):
        traces.append(algorithm)  # runs only while tracing
        return x + algorithm.has_eta

    jitted = jax.jit(plus_has_eta, static_argnums=0)
    assert int(jitted(algorithm, 0)) == int(algorithm.has_eta)
    assert int(jitted(Algorithm(**dataclasses.asdict(algorithm)), 1)) == int(algorithm.has_eta) + 1
    assert traces == [algorithm]


@each_algorithm
def test_an_algorithm_names_its_reference_and_its_estimate_there(algorithm):
    """``reference`` is the diffusers class; ``estimate`` the name of the step's estimate in that
    class's output; ``has_eta``: its step takes η."""
    sched = reference(TCDConfig(), algorithm)
    assert type(sched).__name__ == algorithm.reference
    sched.set_timesteps(2)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = sched.step(x, sched.timesteps[0], x, generator=torch.Generator().manual_seed(1))
    assert set(out.keys()) == {"prev_sample", algorithm.estimate}
    assert algorithm.has_eta == ("eta" in inspect.signature(sched.step).parameters)


@given(st.one_of(st.sampled_from((0.0, 0.3, 1.0)), st.floats(0, 1)), st.booleans())
def test_draws_is_the_references_branch_on_host_values(eta, final):
    assert TCD.draws(eta, final) is (eta > 0 and not final)
    assert LCM.draws(None, final) is (not final)


@given(st.integers(0, 60), st.floats(0, 1), st.integers(1, 60))
def test_draws_at_the_final_step_is_draws_noise(i, eta, n):
    assert lcm_final_step(i, n) == (i == n - 1)
    assert TCD.draws(eta, lcm_final_step(i, n)) == draws_noise(i, eta, n)


@pytest.mark.parametrize("xp", (np, torch))
def test_draws_on_arrays_is_elementwise(xp):
    eta = xp.asarray([0.0, 0.3, 0.3, 1.0])
    final = xp.asarray([False, False, True, False])
    for got, want in (
        (TCD.draws(eta, final), [False, True, False, True]),
        (TCD.draws(0.3, final), [True, True, False, True]),
        (LCM.draws(None, final), [True, True, False, True]),
    ):
        assert type(got) is type(final) and got.dtype == final.dtype
        assert got.tolist() == want


# ------------------------------------------------------------------ the plan


@st.composite
def descending(draw):
    return sorted(draw(st.sets(st.integers(0, 1999), min_size=1, max_size=30)), reverse=True)


@given(descending())
def test_next_timesteps_of_both_algorithms(ts):
    """After the last timestep: 0 for TCD (the default), the last timestep itself for LCM."""
    for got, after_last in (
        (next_timesteps(ts), 0),
        (next_timesteps(ts, TCD), 0),
        (previous_timesteps(ts), 0),
        (next_timesteps(ts, LCM), ts[-1]),
        (lcm_previous_timesteps(ts), ts[-1]),
    ):
        assert got.dtype == np.int64
        assert got.tolist() == ts[1:] + [after_last]


@each_algorithm
def test_plan_type_and_former_names(algorithm):
    plan = plan_timesteps(algorithm, TCDConfig(), 4)
    assert type(plan) is Plan is TCDPlan is LCMPlan
    assert plan.algorithm is algorithm
    assert plan.prev_timesteps is plan.next_timesteps
    named = {TCD: tcd_timesteps, LCM: lcm_timesteps}[algorithm](TCDConfig(), 4)
    for ours, theirs in zip(plan, named):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(plan.next_timesteps, next_timesteps(plan.timesteps, algorithm))


def test_noise_mask_requires_eta_for_tcd_and_refuses_it_for_lcm():
    tcd, lcm = plan_timesteps(TCD, TCDConfig(), 4), plan_timesteps(LCM, TCDConfig(), 4)
    with pytest.raises(TypeError, match="`eta`"):
        tcd.noise_mask()
    with pytest.raises(ValueError, match="`eta`"):
        tcd.noise_mask(1.5)
    assert tcd.noise_mask(0.0).tolist() == [False] * 4  # η = 0: deterministic
    assert tcd.noise_mask(1.0).tolist() == [True, True, True, False]
    for eta in (0.3, 0.0):
        with pytest.raises(ValueError, match=r"`eta` must be None: an LCM plan has no η"):
            lcm.noise_mask(eta)
    assert lcm.noise_mask().tolist() == [True, True, True, False]


# ------------------------------------------------------------------ the path


def test_vp_path_against_hand_computed_values():
    f32 = np.float32
    path = VPPath(AC)
    xp, device = path.namespace()
    assert xp is namespace_of("numpy")
    level = path.level(999, 0, xp, device)
    assert level == AC[999] and np.ndim(level) == 0
    per_batch = path.level(np.asarray([999, 0]), 4, xp, device)
    assert per_batch.shape == (2, 1, 1, 1)
    np.testing.assert_array_equal(per_batch.ravel(), AC[[999, 0]])
    on_torch = VPPath(torch.from_numpy(AC))
    xp_torch, torch_device = on_torch.namespace()
    assert torch_device == torch.device("cpu")
    level_torch = on_torch.level(np.asarray([999, 0]), 3, xp_torch, torch_device)
    assert isinstance(level_torch, torch.Tensor) and level_torch.shape == (2, 1, 1)
    # (a, b) = (√ᾱ, √(1−ᾱ)); transition (√r, √(1−r)) with r = ᾱ_to/ᾱ_from: on exact levels
    assert VPPath.roots(f32(0.5625), xp) == (0.75, f32(math.sqrt(0.4375)))
    assert VPPath.transition(f32(0.5), f32(0.125), xp) == (0.5, f32(math.sqrt(0.75)))
    for got in (*VPPath.roots(f32(0.5625), xp), *VPPath.transition(f32(0.5), f32(0.125), xp)):
        assert got.dtype == np.float32


def test_coefficients_are_the_paths_values():
    """TCD: roots at t, roots at s, the transition s → p; LCM: roots at t, the boundary
    conditions at t, roots at the next timestep (exactly 1 and 0 at the final step). A path and
    its bare table give the same coefficients."""
    t, p = 999, 759
    s = int(intermediate_timestep(p, 0.3))
    a = {k: AC[k] for k in (t, p, s)}
    r = a[p] / a[s]
    want_tcd = (np.sqrt(a[t]), np.sqrt(1 - a[t]), np.sqrt(a[s]), np.sqrt(1 - a[s]))
    want_tcd += (np.sqrt(r), np.sqrt(1 - r))
    c_skip, c_out = boundary_condition_scalings(t)
    want_lcm = (np.sqrt(a[t]), np.sqrt(1 - a[t]), c_out, c_skip, np.sqrt(a[p]), np.sqrt(1 - a[p]))
    final_lcm = (*want_lcm[:4], 1.0, 0.0)
    for path in (AC, VPPath(AC)):
        assert coefficients(TCD, path, t, p, eta=0.3) == want_tcd
        assert coefficients(TCD, path, t, p, intermediate=s) == want_tcd
        assert coefficients(LCM, path, t, p) == want_lcm
        assert coefficients(LCM, path, t, p, final=True) == final_lcm


# ------------------------------------------------------------------ one type each


def test_coefficients_former_attribute_names_are_the_new_fields():
    c = Coefficients(*"abcdef")
    assert Coefficients is StepCoefficients is LCMCoefficients
    assert c._fields == ("alpha_t", "sigma_t", "original", "other", "keep", "noise")
    # fields: alpha_t=a, sigma_t=b, original=c, other=d, keep=e, noise=f
    former = {
        "sqrt_alpha_t": "a",
        "sqrt_beta_t": "b",
        "sqrt_alpha_s": "c",  # TCD's
        "sqrt_beta_s": "d",
        "sqrt_ratio": "e",
        "sqrt_one_minus_ratio": "f",
        "c_out": "c",  # LCM's
        "c_skip": "d",
        "sqrt_alpha_prev": "e",
        "sqrt_beta_prev": "f",
    }
    assert {old: getattr(c, old) for old in former} == former


def test_step_output_former_names_are_properties():
    out = StepOutput("next", "estimate", "x0")
    assert StepOutput is TCDStepOutput is LCMStepOutput
    assert out._fields == ("next_sample", "estimate", "pred_original_sample")
    assert out.prev_sample == "next"
    assert out.pred_noised_sample == out.denoised == "estimate"
    assert len(jax.tree_util.tree_leaves(StepOutput(*np.zeros((3, 1))))) == 3  # a pytree


# ------------------------------------------------------------------ the step


def test_tcd_takes_final_and_does_not_depend_on_it():
    """A loop may pass the plan's `final` to either algorithm: TCD's last step ends at p = 0,
    where the transition is exactly the identity, so its coefficients do not read `final`
    (checked like LCM's: a bool or a boolean array, one per batch element)."""
    z = np.ones_like(X)
    for final in (True, np.True_, np.asarray([True, False])):
        with_final = step(TCD, X, 999, X, 759, AC, eta=0.3, noise=z, final=final)
        without = step(TCD, X, 999, X, 759, AC, eta=0.3, noise=z)
        for a, b in zip(with_final, without):
            np.testing.assert_array_equal(a, b)
        assert coefficients(TCD, AC, 999, 759, eta=0.3, final=final) == coefficients(
            TCD, AC, 999, 759, eta=0.3
        )
    with pytest.raises(TypeError, match="`final`"):
        step(TCD, X, 999, X, 759, AC, eta=0.3, noise=z, final="yes")
    with pytest.raises(ValueError, match="`final`"):
        step(TCD, X, 999, X, 759, AC, eta=0.3, noise=z, final=np.asarray([True, False, True]))


def test_step_refuses_the_other_algorithms_argument_naming_it():
    z = np.ones_like(X)
    calls = {
        "`eta`": (
            lambda: step(LCM, X, 999, X, 759, AC, eta=0.3, noise=z),
            lambda: step(LCM, X, 259, X, 259, AC, eta=0.0, final=True),
            lambda: coefficients(LCM, AC, 999, 759, eta=0.3),
        ),
        "`intermediate`": (lambda: coefficients(LCM, AC, 999, 759, intermediate=500),),
    }
    for name, cases in calls.items():
        for call in cases:
            with pytest.raises(ValueError, match=name):
                call()
    for call in (
        lambda: step("tcd", X, 999, X, 759, AC, eta=0.3, noise=z),
        lambda: coefficients("lcm", AC, 999, 759),
        lambda: plan_timesteps("tcd", TCDConfig(), 4),
    ):
        with pytest.raises(TypeError, match=r"`algorithm` must be tcd_core\.TCD or tcd_core\.LCM"):
            call()


@each_algorithm
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_named_configurations_and_the_split_are_the_unified_step(algorithm, prediction_type):
    """tcd_step/lcm_step, their coefficients and updates, and coefficients() then update() are
    step(algorithm, …) bit for bit on torch, at every step of a plan."""
    cfg = TCDConfig(prediction_type=prediction_type)
    ac = alphas_cumprod(cfg, torch)
    plan = plan_timesteps(algorithm, cfg, 4)
    g = torch.Generator().manual_seed(0)
    for t, p, final in zip(
        plan.timesteps.tolist(), plan.next_timesteps.tolist(), plan.final_steps()
    ):
        mo, x, z = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(3))
        if algorithm is TCD:
            own = {"eta": 0.3}
            named = tcd_step(mo, t, x, p, ac, eta=0.3, noise=z, config=cfg)
            named_c = step_coefficients(ac, t, p, 0.3, ndim=4)
            named_split = tcd_update(named_c, mo, x, z, cfg)
        else:
            own = {"final": bool(final)}
            named = lcm_step(mo, t, x, p, ac, z, final=bool(final), config=cfg)
            named_c = lcm_step_coefficients(ac, t, p, final=bool(final), ndim=4)
            named_split = lcm_update(named_c, mo, x, z, cfg)
        whole = step(algorithm, mo, t, x, p, ac, noise=z, config=cfg, **own)
        c = coefficients(algorithm, ac, t, p, ndim=4, timestep_scaling=cfg.timestep_scaling, **own)
        split = update(algorithm, c, mo, x, z, cfg)
        for a, b in zip(c, named_c):
            assert type(a) is type(b) and (a == b if isinstance(a, float) else torch.equal(a, b))
        for other in (named, split, named_split):
            for a, b in zip(whole, other):
                assert torch.equal(a, b)
