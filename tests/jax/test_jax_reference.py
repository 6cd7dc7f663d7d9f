"""tcd_jax against diffusers' TCDScheduler, with the noise JAX draws injected into the reference."""

from __future__ import annotations

import functools

import float32_bound as fb
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import TCDScheduler
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples
from jax_helpers import (
    assert_close,
    configs,
    etas,
    reference_run,
    tcd_reference_bounds,
    toy_model_jax,
)

import tcd_jax
from tcd_core import TCDConfig, tcd_timesteps

SHAPE = (2, 3, 4, 4)


def _latents(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _scheduler_loop(config, latents, key, eta, dtype="float32", begin_index=None, **plan_kwargs):
    """Our scheduler, step by step (eager), returning every prev_sample."""
    scheduler = tcd_jax.FlaxTCDScheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(), **plan_kwargs)
    timesteps = np.asarray(state.timesteps)
    if begin_index is not None:
        state = scheduler.set_begin_index(state, begin_index)
        timesteps = timesteps[begin_index:]
    x = jnp.asarray(latents).astype(dtype)
    outputs = []
    for t in timesteps:
        out = scheduler.step(state, toy_model_jax(x, int(t)), int(t), x, key=key, eta=eta)
        x, state = out.prev_sample, out.state
        outputs.append(x)
    return outputs, state


@settings(max_examples=examples(30))
@given(
    config=configs(),
    n=st.integers(1, 10),
    explicit_original=st.booleans(),
    strength=st.sampled_from([1.0, 0.9, 0.5, 0.29]),
)
def test_timesteps_identical_to_reference(config, n, explicit_original, strength):
    kwargs = dict(num_inference_steps=n, strength=strength)
    if explicit_original:
        kwargs["original_inference_steps"] = config.original_inference_steps
    reference = TCDScheduler(**config.to_dict())
    try:
        reference.set_timesteps(**kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            scheduler = tcd_jax.FlaxTCDScheduler(config)
            scheduler.set_timesteps(scheduler.create_state(), **kwargs)
        return
    scheduler = tcd_jax.FlaxTCDScheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(), **kwargs)
    assert state.timesteps.dtype == jnp.int32
    assert np.asarray(state.timesteps).tolist() == reference.timesteps.tolist()
    assert int(state.num_inference_steps) == reference.num_inference_steps
    plan = tcd_jax.sampling_plan(config, **kwargs)
    assert np.asarray(plan.timesteps).tolist() == reference.timesteps.tolist()


def check_loop(config, n, eta, seed, compiled=True) -> float:
    """One example of the loop family; returns the worst |Δ|/derived bound over its steps."""
    n = min(n, config.original_inference_steps)
    latents, key = _latents(seed), jax.random.key(seed)
    reference, drawn, ref_sched = reference_run(config, latents, eta, key, num_inference_steps=n)
    bounds = tcd_reference_bounds(config, latents, eta, key, ref_sched, drawn)
    ours, _state = _scheduler_loop(config, latents, key, eta, num_inference_steps=n)
    worst = 0.0
    for i, (a, r, b) in enumerate(zip(ours, reference, bounds, strict=True)):
        assert a.dtype == jnp.float32
        worst = max(worst, assert_close(a, r, what=f"step {i}", bound=b))
    plan = tcd_jax.sampling_plan(config, n)
    assert drawn == [i for i in range(n) if eta > 0 and not plan.final[i]]
    if compiled and n == 4:  # one compiled loop per prediction type keeps this affordable
        final = tcd_jax.sample(toy_model_jax, jnp.asarray(latents), key, plan, eta, config=config)
        assert_close(final, reference[-1], what="compiled loop", bound=bounds[-1])
        # Both are ours: each within bounds[-1] of the reference.
        assert_close(final, ours[-1], what="compiled loop vs scheduler", bound=2 * bounds[-1])
    return worst


LOOPS = dict(
    config=configs(),
    n=st.one_of(st.just(4), st.integers(1, 8)),
    eta=etas,
    seed=st.integers(0, 2**16),
)


@settings(max_examples=examples(30))
@given(**LOOPS)
def test_float32_loop_matches_reference_with_the_same_noise(config, n, eta, seed):
    """Every step of the scheduler, and the compiled loop's result, within the derived bound
    (tests/float32_bound.py); noise drawn at exactly the steps where the reference draws."""
    check_loop(config, n, eta, seed)


def test_the_loop_bound_is_neither_violated_nor_vacuous():
    """Over the family above, the worst |Δ|/bound lies in [1/TIGHTNESS, 1]."""
    family = lambda example: check_loop(**example, compiled=False)
    fb.assert_tight_over(family, st.fixed_dictionaries(LOOPS), 20)


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_custom_timesteps_trimmed_by_strength(strength):
    """Custom plans: the reference keeps the untrimmed step count, so it draws at the trimmed
    plan's last step too (where the ratio is exactly 1): same draws, same results."""
    config = TCDConfig()
    custom = [999, 879, 759, 639, 499, 379, 259, 139]
    latents, key, eta = _latents(3), jax.random.key(3), 0.3
    kwargs = dict(timesteps=custom, strength=strength)
    reference, drawn, ref_sched = reference_run(config, latents, eta, key, **kwargs)
    bounds = tcd_reference_bounds(config, latents, eta, key, ref_sched, drawn)
    ours, _ = _scheduler_loop(config, latents, key, eta, **kwargs)
    for a, r, b in zip(ours, reference, bounds, strict=True):
        assert_close(a, r, bound=b)
    plan = tcd_jax.sampling_plan(config, **kwargs)
    assert drawn == [i for i in range(len(plan.timesteps)) if not plan.final[i]]
    assert drawn == list(range(len(ref_sched.timesteps)))[: len(drawn)]
    final = tcd_jax.sample(toy_model_jax, jnp.asarray(latents), key, plan, eta, config=config)
    assert_close(final, reference[-1], bound=bounds[-1])


def test_begin_index_like_img2img_pipelines():
    config, latents, key = TCDConfig(), _latents(4), jax.random.key(4)
    reference, drawn, ref_sched = reference_run(
        config, latents, 0.5, key, begin_index=2, num_inference_steps=6
    )
    bounds = tcd_reference_bounds(config, latents, 0.5, key, ref_sched, drawn, begin_index=2)
    ours, _ = _scheduler_loop(config, latents, key, 0.5, begin_index=2, num_inference_steps=6)
    for a, r, b in zip(ours, reference, bounds, strict=True):
        assert_close(a, r, bound=b)
    plan = tcd_jax.SamplingPlan.from_plan(tcd_timesteps(config, 6), begin_index=2)
    assert drawn == [2, 3, 4]
    final = tcd_jax.sample(toy_model_jax, jnp.asarray(latents), key, plan, 0.5, config=config)
    assert_close(final, reference[-1], bound=bounds[-1])


def test_first_step_finds_its_index_like_the_reference():
    """Without set_begin_index, the first step looks its timestep up (reference behaviour)."""
    config, latents, key = TCDConfig(), _latents(5), jax.random.key(5)
    scheduler = tcd_jax.FlaxTCDScheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(), 4)
    x = jnp.asarray(latents)
    out = scheduler.step(state, toy_model_jax(x, 499), 499, x, key=key, eta=0.3)
    assert int(out.state.step_index) == 3
    started = scheduler.set_begin_index(state, 2)
    again = scheduler.step(started, toy_model_jax(x, 499), 499, x, key=key, eta=0.3)
    np.testing.assert_array_equal(np.asarray(out.prev_sample), np.asarray(again.prev_sample))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_half_dtypes_keep_their_dtype_and_match_the_reference(dtype, prediction_type):
    config = TCDConfig(prediction_type=prediction_type)
    latents, key, eta = _latents(6), jax.random.key(6), 0.3
    reference, _, _ = reference_run(config, latents, eta, key, dtype, num_inference_steps=4)
    ours, _ = _scheduler_loop(config, latents, key, eta, dtype, num_inference_steps=4)
    assert all(a.dtype == jnp.dtype(dtype) for a in ours)
    assert_close(ours[-1], reference[-1], dtype)
    plan = tcd_jax.sampling_plan(config, 4)
    final = tcd_jax.sample(
        toy_model_jax, jnp.asarray(latents, dtype), key, plan, eta, config=config
    )
    assert final.dtype == jnp.dtype(dtype)
    assert_close(final, reference[-1], dtype)
    # The tables stay float32 whatever the latents are.
    scheduler = tcd_jax.FlaxTCDScheduler(config)
    assert scheduler.create_state().common.alphas_cumprod.dtype == jnp.float32


def _golden_sample() -> jax.Array:
    x = np.arange(768, dtype=np.float32).reshape(3, 8, 8, 4) / 768
    return jnp.asarray(np.transpose(x, (3, 0, 1, 2)))


GOLDEN = [
    (1, {}, 29.8715, 0.0389),
    (10, {}, 181.2040, 0.2359),
    (4, {}, 152.9997, 0.1992),
    (10, {"prediction_type": "v_prediction"}, 65.1090, None),
    (10, {"prediction_type": "sample"}, 657.6091, None),
    (10, {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, 172.3634, None),
    (10, {"beta_schedule": "squaredcos_cap_v2"}, 750.4329, None),
]


@pytest.mark.parametrize("steps, overrides, total, mean", GOLDEN)
def test_golden_values_of_diffusers_tcd_tests(steps, overrides, total, mean):
    """tcd-reference.md §6: dummy model sample·t/(t+1), η = 0.

    The dummy model is evaluated with correctly rounded host arithmetic (as torch does): XLA's
    CPU division is not correctly rounded, and at t = 999 of squaredcos_cap_v2 (ᾱ = 2.4e-9, so
    1 − ᾱ rounds to 1) x̂₀ = (x − ε)/√ᾱ cancels to x/1000, amplifying the model's last-bit
    differences 1000-fold. The scheduler step runs under jax.jit.
    """
    config = TCDConfig(beta_start=0.00085, beta_end=0.012).replace(**overrides)
    scheduler = tcd_jax.FlaxTCDScheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(), steps)
    step = jax.jit(functools.partial(scheduler.step, eta=0.0))
    x = _golden_sample()
    for t in np.asarray(state.timesteps).tolist():
        host = np.asarray(x)
        model_output = jnp.asarray(host * t / (t + 1))  # Python ints: float32, correctly rounded
        out = step(state, model_output, t, x)
        x, state = out.prev_sample, out.state
    # The table's 4 decimals, plus float32 noise on the sum's scale.
    assert abs(float(jnp.sum(jnp.abs(x))) - total) < 5e-5 + 2e-6 * total
    if mean is not None:
        assert abs(float(jnp.mean(jnp.abs(x))) - mean) < 5e-5


@settings(max_examples=examples(10))
@given(
    strengths=st.lists(st.sampled_from([1.0, 0.8, 0.6, 0.5]), min_size=3, max_size=3),
    eta_values=st.lists(etas, min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_per_sample_plans_and_eta_match_per_sample_reference_runs(strengths, eta_values, seed):
    """A batch mixing img2img strengths and η values equals each sample's own reference run
    (one key per sample: its noise does not depend on the batch)."""
    config, n = TCDConfig(), 4
    latents = _latents(seed, (3, 3, 4, 4))
    keys = jax.random.split(jax.random.key(seed), 3)
    plan = tcd_jax.sampling_plan(config, n, strength=strengths)
    assert plan.timesteps.shape == (n, 3)
    final = tcd_jax.sample(
        toy_model_jax, jnp.asarray(latents), keys, plan, np.asarray(eta_values), config=config
    )
    for b in range(3):
        latent, key = latents[b : b + 1], keys[b : b + 1]
        reference, drawn, ref_sched = reference_run(
            config, latent, eta_values[b], key, num_inference_steps=n, strength=strengths[b]
        )
        bound = tcd_reference_bounds(config, latent, eta_values[b], key, ref_sched, drawn)[-1]
        assert_close(final[b : b + 1], reference[-1], what=f"sample {b}", bound=bound)


def test_eta_rounding_is_the_reference_s():
    """Host η gives the reference's s = ⌊f32(1−η)·p⌋ for every p, also for η where 1 − f32(η)
    (a traced float32 η) gives a different s for some p."""
    from tcd_core import intermediate_timestep

    p = np.arange(1000)
    for eta in (0.33, 0.8, 0.91):
        host = intermediate_timestep(p, eta)
        _, one_minus = tcd_jax._step.eta_arrays(eta)
        ours = np.asarray(tcd_jax._step.intermediate(jnp.asarray(p), one_minus))
        np.testing.assert_array_equal(ours, host)
        f32 = np.floor((np.float32(1) - np.float32(eta)) * p.astype(np.float32))
        assert (f32 != host).any(), "the case this guards against"
    ref = torch.floor((1 - 0.33) * torch.arange(1000)).long().numpy()
    np.testing.assert_array_equal(intermediate_timestep(p, 0.33), ref)
