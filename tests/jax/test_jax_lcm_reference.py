"""tcd_jax's LCM (FlaxLCMScheduler, sample_lcm) against diffusers' LCMScheduler, with the noise
JAX draws (step i: ``normal(fold_in(key, i))``) injected into the reference's ``randn_tensor``."""

from __future__ import annotations

import float32_bound as fb
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import LCMScheduler
from diffusers.schedulers import scheduling_lcm
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples
from jax_helpers import (
    JAX,
    TORCH_DTYPES,
    assert_close,
    configs,
    injected_noise,
    jax_noise,
    lcm_reference_bounds,
    reference_table,
    toy_model_jax,
    toy_model_torch,
)

import tcd_jax
from tcd_core import TCDConfig, lcm_timesteps, tcd_timesteps

SHAPE = (2, 3, 4, 4)


def _latents(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def lcm_reference_run(
    config: TCDConfig,
    latents: np.ndarray,
    key,
    dtype: str = "float32",
    begin_index: int | None = None,
    **plan_kwargs,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int], LCMScheduler]:
    """diffusers' LCMScheduler fed tcd_jax's noise: every prev_sample, every denoised, the step
    indices where it drew, and the scheduler."""
    scheduler = LCMScheduler(**config.to_dict())
    scheduler.set_timesteps(**plan_kwargs)
    timesteps = scheduler.timesteps
    if begin_index is not None:
        scheduler.set_begin_index(begin_index)
        timesteps = timesteps[begin_index:]
    x = torch.from_numpy(np.asarray(latents, dtype=np.float32)).to(TORCH_DTYPES[dtype])
    drawn: list[int] = []
    outputs, denoised = [], []
    with injected_noise(scheduler, jax_noise(key, latents.shape, dtype), drawn, scheduling_lcm):
        for t in timesteps:
            out = scheduler.step(toy_model_torch(x, t), t, x)
            x = out.prev_sample
            outputs.append(x)
            denoised.append(out.denoised)
    return outputs, denoised, drawn, scheduler


def scheduler_loop(
    config, latents, key, dtype="float32", begin_index=None, host_t=True, **plan_kwargs
):
    """FlaxLCMScheduler step by step (eager): every output. ``host_t``: Python int timesteps
    (double-precision c_skip/c_out, as the reference with an int) or int32 arrays (float32, as
    the reference with a tensor and as the Flax pipelines call it)."""
    scheduler = tcd_jax.FlaxLCMScheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(key=key), **plan_kwargs)
    timesteps = np.asarray(state.timesteps)
    if begin_index is not None:
        state = scheduler.set_begin_index(state, begin_index)
        timesteps = timesteps[begin_index:]
    x = jnp.asarray(latents).astype(dtype)
    outputs = []
    for t in timesteps.tolist():
        t_in = t if host_t else jnp.asarray(t, dtype=jnp.int32)
        out = scheduler.step(state, toy_model_jax(x, t), t_in, x)
        x, state = out.prev_sample, out.state
        outputs.append(out)
    return outputs, state


@st.composite
def lcm_configs(draw) -> TCDConfig:
    """The TCD test configs, plus the fields LCM reads that TCD does not: timestep_scaling."""
    config = draw(configs())
    return config.replace(timestep_scaling=draw(st.sampled_from([10.0, 1.0, 0.1, 100.0])))


@settings(max_examples=examples(40))
@given(
    config=configs(),
    n=st.integers(1, 12),
    original=st.sampled_from([None, 10, 25, 50, 100, 2000]),
    strength=st.sampled_from([1.0, 0.9, 0.5, 0.29, 0.05]),
)
def test_timesteps_identical_to_reference(config, n, original, strength):
    """Standard plans: the same int timesteps, step count and errors as the reference, in the
    scheduler state and in the compiled loop's plan."""
    kwargs = dict(num_inference_steps=n, strength=strength)
    if original is not None:
        kwargs["original_inference_steps"] = original
    reference = LCMScheduler(**config.to_dict())
    scheduler = tcd_jax.FlaxLCMScheduler(config)
    try:
        reference.set_timesteps(**kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            scheduler.set_timesteps(scheduler.create_state(), **kwargs)
        with pytest.raises(ValueError):
            tcd_jax.lcm_sampling_plan(config, **kwargs)
        return
    state = scheduler.set_timesteps(scheduler.create_state(), **kwargs)
    assert state.timesteps.dtype == state.prev_timesteps.dtype == jnp.int32
    assert np.asarray(state.timesteps).tolist() == reference.timesteps.tolist()
    assert int(state.num_inference_steps) == reference.num_inference_steps
    # The reference's previous timestep: the next entry, the step's own after the last.
    ref_t = reference.timesteps.tolist()
    assert np.asarray(state.prev_timesteps).tolist() == ref_t[1:] + ref_t[-1:]
    plan = tcd_jax.lcm_sampling_plan(config, **kwargs)
    assert np.asarray(plan.prev_timesteps).tolist() == ref_t[1:] + ref_t[-1:]
    assert np.asarray(plan.timesteps).tolist() == reference.timesteps.tolist()
    assert np.asarray(plan.final).tolist() == [
        i == reference.num_inference_steps - 1 for i in range(len(reference.timesteps))
    ]


@st.composite
def custom_plans(draw) -> tuple[list[int], float]:
    timesteps = draw(st.lists(st.integers(0, 999), min_size=1, max_size=8, unique=True))
    strength = draw(st.sampled_from([1.0, 0.75, 0.5, 0.3]))
    assume(int(len(timesteps) * strength) >= 1)  # the core refuses plans that keep no step
    return sorted(timesteps, reverse=True), strength


@settings(max_examples=examples(25))
@given(plan=custom_plans(), seed=st.integers(0, 2**16))
def test_custom_timesteps_match_the_reference_draws_included(plan, seed):
    """Custom plans, also trimmed by strength (no final step there: the reference renoises after
    the last step, towards that step's own timestep): same ints, same draws, same values."""
    custom, strength = plan
    config = TCDConfig()
    latents, key = _latents(seed), jax.random.key(seed)
    kwargs = dict(timesteps=custom, strength=strength)
    reference, _, drawn, ref_sched = lcm_reference_run(config, latents, key, **kwargs)
    bounds, _ = lcm_reference_bounds(config, latents, key, ref_sched, drawn)
    ours, _ = scheduler_loop(config, latents, key, **kwargs)
    plan_arrays = tcd_jax.lcm_sampling_plan(config, **kwargs)
    assert np.asarray(plan_arrays.timesteps).tolist() == ref_sched.timesteps.tolist()
    for i, (a, r, b) in enumerate(zip(ours, reference, bounds, strict=True)):
        assert_close(a.prev_sample, r, what=f"step {i}", bound=b)
    assert drawn == [i for i, final in enumerate(plan_arrays.final) if not final]


def check_loop(config, n, strength, host_t, seed, compiled=True) -> float:
    """One example of the loop family; returns the worst |Δ|/derived bound over its steps."""
    n = min(n, int(config.original_inference_steps * strength))
    latents, key = _latents(seed), jax.random.key(seed)
    kwargs = dict(num_inference_steps=n, strength=strength)
    reference, ref_denoised, drawn, ref_sched = lcm_reference_run(config, latents, key, **kwargs)
    bounds, d_bounds = lcm_reference_bounds(config, latents, key, ref_sched, drawn)
    ours, state = scheduler_loop(config, latents, key, host_t=host_t, **kwargs)
    worst = 0.0
    for i, (a, r, d) in enumerate(zip(ours, reference, ref_denoised, strict=True)):
        assert a.prev_sample.dtype == jnp.float32
        worst = max(
            worst,
            assert_close(a.prev_sample, r, what=f"step {i}", bound=bounds[i]),
            assert_close(a.denoised, d, what=f"denoised {i}", bound=d_bounds[i]),
        )
    assert int(state.step_index) == n
    assert drawn == list(range(n - 1))
    if compiled and n == 4:  # one compiled loop per prediction type keeps this affordable
        plan = tcd_jax.lcm_sampling_plan(config, **kwargs)
        final = tcd_jax.sample_lcm(toy_model_jax, jnp.asarray(latents), key, plan, config=config)
        assert_close(final, reference[-1], what="compiled loop", bound=bounds[-1])
        # Both are ours: each within bounds[-1] of the reference.
        assert_close(final, ours[-1].prev_sample, what="vs scheduler", bound=2 * bounds[-1])
    return worst


LOOPS = dict(
    config=lcm_configs(),
    n=st.one_of(st.just(4), st.integers(1, 8)),
    strength=st.sampled_from([1.0, 1.0, 0.6]),
    host_t=st.booleans(),
    seed=st.integers(0, 2**16),
)


@settings(max_examples=examples(40))
@given(**LOOPS)
def test_float32_loop_matches_reference_with_the_same_noise(config, n, strength, host_t, seed):
    """Every step's prev_sample and denoised within the derived bound (tests/float32_bound.py)
    of the reference fed the same noise; noise drawn at exactly the reference's steps (all but
    the final one)."""
    check_loop(config, n, strength, host_t, seed)


def test_the_loop_bound_is_neither_violated_nor_vacuous():
    """Over the family above, the worst |Δ|/bound lies in [1/TIGHTNESS, 1]."""
    family = lambda example: check_loop(**example, compiled=False)
    fb.assert_tight_over(family, st.fixed_dictionaries(LOOPS), 20)


def test_final_step_returns_denoised_and_one_step_plans_draw_nothing():
    config = TCDConfig()
    latents = _latents(1)
    a, _ = scheduler_loop(config, latents, jax.random.key(0), num_inference_steps=1)
    b, _ = scheduler_loop(config, latents, jax.random.key(1), num_inference_steps=1)
    np.testing.assert_array_equal(np.asarray(a[0].prev_sample), np.asarray(a[0].denoised))
    np.testing.assert_array_equal(np.asarray(a[0].prev_sample), np.asarray(b[0].prev_sample))
    reference, _, drawn, ref_sched = lcm_reference_run(
        config, latents, jax.random.key(0), num_inference_steps=1
    )
    assert drawn == []
    (bound,), _ = lcm_reference_bounds(config, latents, jax.random.key(0), ref_sched, drawn)
    assert_close(a[0].prev_sample, reference[0], bound=bound)
    plan = tcd_jax.lcm_sampling_plan(config, 1)
    y0, y1 = (
        tcd_jax.sample_lcm(toy_model_jax, jnp.asarray(latents), jax.random.key(seed), plan)
        for seed in (0, 1)
    )
    np.testing.assert_array_equal(np.asarray(y0), np.asarray(y1))
    assert_close(y0, reference[0], bound=bound)
    # With more steps the key matters (the earlier steps renoise).
    c, _ = scheduler_loop(config, latents, jax.random.key(0), num_inference_steps=3)
    d, _ = scheduler_loop(config, latents, jax.random.key(1), num_inference_steps=3)
    assert not np.allclose(np.asarray(c[-1].prev_sample), np.asarray(d[-1].prev_sample))


def test_begin_index_like_img2img_pipelines():
    config, latents, key = TCDConfig(), _latents(4), jax.random.key(4)
    reference, _, drawn, ref_sched = lcm_reference_run(
        config, latents, key, begin_index=2, num_inference_steps=6
    )
    bounds, _ = lcm_reference_bounds(config, latents, key, ref_sched, drawn, begin_index=2)
    ours, _ = scheduler_loop(config, latents, key, begin_index=2, num_inference_steps=6)
    for a, r, b in zip(ours, reference, bounds, strict=True):
        assert_close(a.prev_sample, r, bound=b)
    assert drawn == [2, 3, 4]
    plan = tcd_jax.LCMSamplingPlan.from_plan(lcm_timesteps(config, 6), begin_index=2)
    final = tcd_jax.sample_lcm(toy_model_jax, jnp.asarray(latents), key, plan, config=config)
    assert_close(final, reference[-1], bound=bounds[-1])


def test_first_step_finds_its_index_like_the_reference():
    config, latents, key = TCDConfig(), _latents(5), jax.random.key(5)
    scheduler = tcd_jax.FlaxLCMScheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(key=key), 4)
    x = jnp.asarray(latents)
    out = scheduler.step(state, toy_model_jax(x, 499), 499, x)
    assert int(out.state.step_index) == 3
    again = scheduler.step(scheduler.set_begin_index(state, 2), toy_model_jax(x, 499), 499, x)
    np.testing.assert_array_equal(np.asarray(out.prev_sample), np.asarray(again.prev_sample))
    reference = LCMScheduler(**config.to_dict())
    reference.set_timesteps(4)
    drawn: list[int] = []
    x_ref = torch.from_numpy(latents)
    with injected_noise(reference, jax_noise(key, SHAPE, "float32"), drawn, scheduling_lcm):
        ref = reference.step(toy_model_torch(x_ref, 499), 499, x_ref)
    assert drawn == [2]
    x_b = fb.Bounded.exact(latents, JAX)
    noise = jax_noise(key, SHAPE, "float32")(2)
    tab = reference_table(config, reference)
    p = int(reference.timesteps[3])
    bound = fb.lcm_step("epsilon", fb.toy_model(x_b, 499), x_b, noise, tab, 499, p, True, config)
    assert_close(out.prev_sample, ref.prev_sample, bound=bound[0].err)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_half_dtypes_keep_their_dtype_and_match_the_reference(dtype, prediction_type):
    config = TCDConfig(prediction_type=prediction_type)
    latents, key = _latents(6), jax.random.key(6)
    reference, _, _, _ = lcm_reference_run(config, latents, key, dtype, num_inference_steps=4)
    ours, _ = scheduler_loop(config, latents, key, dtype, num_inference_steps=4)
    assert all(o.prev_sample.dtype == jnp.dtype(dtype) for o in ours)
    assert_close(ours[-1].prev_sample, reference[-1], dtype)
    plan = tcd_jax.lcm_sampling_plan(config, 4)
    final = tcd_jax.sample_lcm(toy_model_jax, jnp.asarray(latents, dtype), key, plan, config=config)
    assert final.dtype == jnp.dtype(dtype)
    assert_close(final, reference[-1], dtype)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(prediction_type="sample", clip_sample=True, clip_sample_range=0.5),
        dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
    ],
    ids=["clip_sample", "thresholding"],
)
def test_clipping_and_thresholding_match_the_reference(overrides):
    """LCM's reference honours clip_sample and thresholding: so do the scheduler and the loop
    (and they change the result, so the comparison is not vacuous)."""
    config = TCDConfig(**overrides)
    latents, key = 3.0 * _latents(7), jax.random.key(7)
    reference, _, drawn, ref_sched = lcm_reference_run(config, latents, key, num_inference_steps=3)
    bounds, _ = lcm_reference_bounds(config, latents, key, ref_sched, drawn)
    ours, _ = scheduler_loop(config, latents, key, num_inference_steps=3)
    for a, r, b in zip(ours, reference, bounds, strict=True):
        assert_close(a.prev_sample, r, bound=b)
    plan = tcd_jax.lcm_sampling_plan(config, 3)
    final = tcd_jax.sample_lcm(toy_model_jax, jnp.asarray(latents), key, plan, config=config)
    assert_close(final, reference[-1], bound=bounds[-1])
    plain = tcd_jax.sample_lcm(toy_model_jax, jnp.asarray(latents), key, plan)
    assert not np.allclose(np.asarray(plain), np.asarray(final))


@settings(max_examples=examples(10))
@given(
    strengths=st.lists(st.sampled_from([1.0, 0.8, 0.6, 0.5]), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_per_sample_plans_match_per_sample_reference_runs(strengths, seed):
    """A batch mixing img2img strengths equals each sample's own reference run (one key per
    sample: its noise does not depend on the batch)."""
    config, n = TCDConfig(), 4
    latents = _latents(seed, (3, 3, 4, 4))
    keys = jax.random.split(jax.random.key(seed), 3)
    plan = tcd_jax.lcm_sampling_plan(config, n, strength=strengths)
    assert plan.timesteps.shape == plan.final.shape == (n, 3)
    final = tcd_jax.sample_lcm(toy_model_jax, jnp.asarray(latents), keys, plan, config=config)
    for b in range(3):
        latent, key = latents[b : b + 1], keys[b : b + 1]
        reference, _, drawn, ref_sched = lcm_reference_run(
            config, latent, key, num_inference_steps=n, strength=strengths[b]
        )
        bound = lcm_reference_bounds(config, latent, key, ref_sched, drawn)[0][-1]
        assert_close(final[b : b + 1], reference[-1], what=f"sample {b}", bound=bound)


def test_plans_of_the_two_samplers_are_not_interchangeable():
    """With an explicit original_inference_steps the LCM and TCD plans differ, so each loop
    refuses the other's plan instead of silently sampling the wrong timesteps."""
    config = TCDConfig()
    lcm = tcd_jax.lcm_sampling_plan(config, 4, original_inference_steps=50)
    tcd = tcd_jax.sampling_plan(config, 4, original_inference_steps=50)
    assert lcm.timesteps.tolist() == [999, 759, 499, 259]
    assert tcd.timesteps.tolist() == [999, 749, 499, 249]
    x = jnp.zeros((1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"must be an LCM plan .*got a TCD plan"):
        tcd_jax.sample_lcm(toy_model_jax, x, jax.random.key(0), tcd)
    with pytest.raises(ValueError, match=r"must be a TCD plan .*got an LCM plan"):
        tcd_jax.sample(toy_model_jax, x, jax.random.key(0), lcm)
    # host plans carry their algorithm too
    with pytest.raises(ValueError, match="must be an LCM plan"):
        tcd_jax.sample_lcm(toy_model_jax, x, jax.random.key(0), tcd_timesteps(config, 4))
    with pytest.raises(ValueError, match="must be a TCD plan"):
        tcd_jax.sample(toy_model_jax, x, jax.random.key(0), lcm_timesteps(config, 4))
    with pytest.raises(ValueError, match=r"tcd_core\.Plan"):
        tcd_jax.LCMSamplingPlan.from_plan(tcd_jax.sampling_plan(config, 4))  # type: ignore[arg-type]
