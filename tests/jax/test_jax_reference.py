"""tcd_jax's schedulers and compiled loops against diffusers' TCDScheduler and LCMScheduler, with
the noise JAX draws (step i: ``normal(fold_in(key, i))``) injected into the reference's
``randn_tensor``. A property both algorithms have is one test parametrised over them."""

from __future__ import annotations

import functools

import float32_bound as fb
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples
from jax_helpers import (
    ALGORITHMS,
    LCM_JAX,
    assert_close,
    clip_or_threshold,
    configs,
    eta_kwargs,
    etas,
    injected_noise,
    jax_noise,
    reference_run,
    reference_table,
    step_bounds,
    toy_model_jax,
    toy_model_torch,
)

import tcd_jax
from tcd_core import LCM, TCD, TCDConfig, lcm_timesteps, plan_timesteps, tcd_timesteps

SHAPE = (2, 3, 4, 4)
over_algorithms = pytest.mark.parametrize("algo", ALGORITHMS)


def _latents(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def scheduler_loop(
    algo, config, latents, key, eta=None, dtype="float32", begin_index=None, host_t=True, **plan
):
    """Our scheduler step by step (eager): every step's output, and the last state. TCD is given
    its key and η at each step, LCM keeps its key in the state (as the Flax pipelines do).
    ``host_t``: Python int timesteps (LCM's c_skip/c_out in double precision, as the reference
    with an int) or int32 arrays (float32, as the reference with a tensor and as the Flax
    pipelines call it)."""
    scheduler = algo.scheduler(config)
    if algo.core.has_eta:
        state, step_kwargs = scheduler.create_state(), dict(key=key, eta=eta)
    else:
        state, step_kwargs = scheduler.create_state(key=key), {}
    state = scheduler.set_timesteps(state, **plan)
    timesteps = np.asarray(state.timesteps)
    if begin_index is not None:
        state = scheduler.set_begin_index(state, begin_index)
        timesteps = timesteps[begin_index:]
    x = jnp.asarray(latents).astype(dtype)
    outputs = []
    for t in timesteps.tolist():
        t_in = t if host_t else jnp.asarray(t, dtype=jnp.int32)
        out = scheduler.step(state, toy_model_jax(x, t), t_in, x, **step_kwargs)
        x, state = out.prev_sample, out.state
        outputs.append(out)
    return outputs, state


def assert_steps_match(algo, ours, ref) -> float:
    """Every step's next sample and estimate (TCD's x_s, LCM's denoised) within their derived
    bounds of the reference's; returns the worst |Δ|/bound."""
    assert len(ours) == len(ref.outputs)
    worst = 0.0
    for i, out in enumerate(ours):
        estimate = getattr(out, algo.core.estimate)
        worst = max(
            worst,
            assert_close(out.prev_sample, ref.outputs[i], what=f"step {i}", bound=ref.bounds[i]),
            assert_close(
                estimate, ref.estimates[i], what=f"estimate {i}", bound=ref.estimate_bounds[i]
            ),
        )
    return worst


@over_algorithms
@settings(max_examples=examples(40))
@given(
    config=configs(),
    n=st.integers(1, 12),
    original=st.sampled_from([None, "config", 10, 25, 50, 100, 2000]),
    strength=st.sampled_from([1.0, 0.9, 0.5, 0.29, 0.05]),
)
def test_timesteps_identical_to_reference(algo, config, n, original, strength):
    """Standard plans: the same int timesteps, next timesteps, step count, final step and errors
    as the reference, in the scheduler state and in the compiled loop's plan."""
    kwargs = dict(num_inference_steps=n, strength=strength)
    if original is not None:
        explicit = config.original_inference_steps if original == "config" else original
        kwargs["original_inference_steps"] = explicit
    reference = algo.reference(**config.to_dict())
    scheduler = algo.scheduler(config)
    try:
        reference.set_timesteps(**kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            scheduler.set_timesteps(scheduler.create_state(), **kwargs)
        with pytest.raises(ValueError):
            algo.plan(config, **kwargs)
        return
    state = scheduler.set_timesteps(scheduler.create_state(), **kwargs)
    assert state.timesteps.dtype == state.next_timesteps.dtype == jnp.int32
    ref_t = reference.timesteps.tolist()
    assert np.asarray(state.timesteps).tolist() == ref_t
    assert int(state.num_inference_steps) == reference.num_inference_steps
    # The reference's next timestep: the next entry; after the last, 0 (TCD) or its own (LCM).
    next_t = ref_t[1:] + ([0] if algo.core is TCD else ref_t[-1:])
    assert np.asarray(state.next_timesteps).tolist() == next_t
    plan = algo.plan(config, **kwargs)
    assert np.asarray(plan.next_timesteps).tolist() == next_t
    assert state.prev_timesteps is state.next_timesteps  # the former name
    assert plan.prev_timesteps is plan.next_timesteps
    assert np.asarray(plan.timesteps).tolist() == ref_t
    assert np.asarray(plan.final).tolist() == [
        i == reference.num_inference_steps - 1 for i in range(len(ref_t))
    ]


@st.composite
def custom_plans(draw) -> tuple[list[int], float]:
    timesteps = draw(st.lists(st.integers(0, 999), min_size=1, max_size=8, unique=True))
    strength = draw(st.sampled_from([1.0, 0.75, 0.5, 0.3]))
    assume(int(len(timesteps) * strength) >= 1)  # the core refuses plans that keep no step
    return sorted(timesteps, reverse=True), strength


CUSTOM = [999, 879, 759, 639, 499, 379, 259, 139]


@over_algorithms
@settings(max_examples=examples(25))
@given(plan=custom_plans(), seed=st.integers(0, 2**16))
@example(plan=(CUSTOM, 1.0), seed=3)
@example(plan=(CUSTOM, 0.6), seed=3)
def test_custom_timesteps_match_the_reference_draws_included(algo, plan, seed):
    """Custom plans, also trimmed by strength: the reference keeps the untrimmed step count, so
    a trimmed plan has no final step and the reference draws at its last step too (TCD: where
    the ratio is exactly 1; LCM: renoising towards that step's own timestep). Same ints, same
    draws, same values, in the scheduler and in the compiled loop (the two examples' lengths)."""
    custom, strength = plan
    config, eta = TCDConfig(), algo.eta(0.3)
    latents, key = _latents(seed), jax.random.key(seed)
    kwargs = dict(timesteps=custom, strength=strength)
    ref = reference_run(algo, config, latents, key, eta, **kwargs)
    ours, _ = scheduler_loop(algo, config, latents, key, eta, **kwargs)
    assert_steps_match(algo, ours, ref)
    plan_arrays = algo.plan(config, **kwargs)
    assert np.asarray(plan_arrays.timesteps).tolist() == ref.scheduler.timesteps.tolist()
    assert ref.drawn == [i for i, final in enumerate(plan_arrays.final) if not final]
    assert ref.drawn == list(range(len(ref.scheduler.timesteps)))[: len(ref.drawn)]
    if len(ref.outputs) in (4, 8):  # one compiled loop per plan length keeps this affordable
        final = algo.sample(toy_model_jax, jnp.asarray(latents), key, plan_arrays, eta)
        assert_close(final, ref.outputs[-1], what="compiled loop", bound=ref.bounds[-1])


def check_loop(algo, config, n, seed, eta=None, strength=1.0, host_t=True, compiled=True):
    """One example of the loop family; returns the worst |Δ|/derived bound over its steps."""
    n = min(n, int(config.original_inference_steps * strength))
    latents, key = _latents(seed), jax.random.key(seed)
    kwargs = dict(num_inference_steps=n, strength=strength)
    ref = reference_run(algo, config, latents, key, eta, **kwargs)
    ours, state = scheduler_loop(algo, config, latents, key, eta, host_t=host_t, **kwargs)
    assert all(out.prev_sample.dtype == jnp.float32 for out in ours)
    worst = assert_steps_match(algo, ours, ref)
    assert int(state.step_index) == n
    plan = algo.plan(config, **kwargs)
    noisy = algo.core is LCM or eta > 0  # LCM renoises at every step but the final one
    assert ref.drawn == [i for i in range(n) if noisy and not plan.final[i]]
    assert ref.drawn == (list(range(n - 1)) if noisy else [])
    if compiled and n == 4:  # one compiled loop per prediction type keeps this affordable
        final = algo.sample(toy_model_jax, jnp.asarray(latents), key, plan, eta, config=config)
        assert_close(final, ref.outputs[-1], what="compiled loop", bound=ref.bounds[-1])
        # Both are ours: each within bounds[-1] of the reference.
        last = ours[-1].prev_sample
        assert_close(final, last, what="compiled loop vs scheduler", bound=2 * ref.bounds[-1])
    return worst


@st.composite
def lcm_configs(draw) -> TCDConfig:
    """The TCD test configs, plus the field LCM reads that TCD does not: timestep_scaling."""
    config = draw(configs())
    return config.replace(timestep_scaling=draw(st.sampled_from([10.0, 1.0, 0.1, 100.0])))


#: The loop family of each algorithm: TCD's η; LCM's timestep_scaling, img2img strength and
#: int32-array timesteps (the Flax pipelines').
LOOPS = {
    TCD: dict(
        config=configs(),
        n=st.one_of(st.just(4), st.integers(1, 8)),
        eta=etas,
        seed=st.integers(0, 2**16),
    ),
    LCM: dict(
        config=lcm_configs(),
        n=st.one_of(st.just(4), st.integers(1, 8)),
        strength=st.sampled_from([1.0, 1.0, 0.6]),
        host_t=st.booleans(),
        seed=st.integers(0, 2**16),
    ),
}


@over_algorithms
@settings(max_examples=examples(40))
@given(data=st.data())
def test_float32_loop_matches_reference_with_the_same_noise(algo, data):
    """Every step's next sample and estimate, and the compiled loop's result, within the derived
    bound (tests/float32_bound.py) of the reference fed the same noise; noise drawn at exactly
    the steps where the reference draws."""
    check_loop(algo, **data.draw(st.fixed_dictionaries(LOOPS[algo.core])))


@over_algorithms
def test_the_loop_bound_is_neither_violated_nor_vacuous(algo):
    """Over the family above, the worst |Δ|/bound lies in [1/TIGHTNESS, 1]."""
    family = lambda example: check_loop(algo, **example, compiled=False)
    fb.assert_tight_over(family, st.fixed_dictionaries(LOOPS[algo.core]), 20)


@over_algorithms
def test_one_step_plans_draw_nothing_and_the_final_step_returns_its_estimate(algo):
    """A one-step plan is only the final step: nothing is drawn (in the reference either), so
    any key gives the same result, in the scheduler and in the compiled loop; the final step's
    next sample is its estimate (LCM's denoised, TCD's x_s). With more steps the key matters."""
    config, latents, eta = TCDConfig(), _latents(1), algo.eta(0.3)
    keys = jax.random.key(0), jax.random.key(1)
    a, b = (scheduler_loop(algo, config, latents, k, eta, num_inference_steps=1)[0] for k in keys)
    estimate = getattr(a[0], algo.core.estimate)
    np.testing.assert_array_equal(np.asarray(a[0].prev_sample), np.asarray(estimate))
    np.testing.assert_array_equal(np.asarray(a[0].prev_sample), np.asarray(b[0].prev_sample))
    ref = reference_run(algo, config, latents, keys[0], eta, num_inference_steps=1)
    assert ref.drawn == []
    assert_close(a[0].prev_sample, ref.outputs[0], bound=ref.bounds[0])
    plan = algo.plan(config, 1)
    y0, y1 = (algo.sample(toy_model_jax, jnp.asarray(latents), k, plan, eta) for k in keys)
    np.testing.assert_array_equal(np.asarray(y0), np.asarray(y1))
    assert_close(y0, ref.outputs[0], bound=ref.bounds[0])
    c, d = (scheduler_loop(algo, config, latents, k, eta, num_inference_steps=3)[0] for k in keys)
    estimate = getattr(c[-1], algo.core.estimate)
    np.testing.assert_array_equal(np.asarray(c[-1].prev_sample), np.asarray(estimate))
    assert not np.allclose(np.asarray(c[-1].prev_sample), np.asarray(d[-1].prev_sample))


@over_algorithms
def test_begin_index_like_img2img_pipelines(algo):
    config, latents, key, eta = TCDConfig(), _latents(4), jax.random.key(4), algo.eta(0.5)
    ref = reference_run(algo, config, latents, key, eta, begin_index=2, num_inference_steps=6)
    ours, _ = scheduler_loop(algo, config, latents, key, eta, begin_index=2, num_inference_steps=6)
    assert_steps_match(algo, ours, ref)
    assert ref.drawn == [2, 3, 4]
    plan = tcd_jax.SamplingPlan.from_plan(plan_timesteps(algo.core, config, 6), begin_index=2)
    final = algo.sample(toy_model_jax, jnp.asarray(latents), key, plan, eta, config=config)
    assert_close(final, ref.outputs[-1], bound=ref.bounds[-1])


@over_algorithms
def test_first_step_finds_its_index_like_the_reference(algo):
    """Without set_begin_index, the first step looks its timestep up (reference behaviour)."""
    config, latents, key, eta = TCDConfig(), _latents(5), jax.random.key(5), algo.eta(0.3)
    scheduler = algo.scheduler(config)
    state = scheduler.set_timesteps(scheduler.create_state(key=key, **eta_kwargs(algo, eta)), 4)
    x = jnp.asarray(latents)
    out = scheduler.step(state, toy_model_jax(x, 499), 499, x)
    assert int(out.state.step_index) == 3
    again = scheduler.step(scheduler.set_begin_index(state, 2), toy_model_jax(x, 499), 499, x)
    np.testing.assert_array_equal(np.asarray(out.prev_sample), np.asarray(again.prev_sample))
    reference = algo.reference(**config.to_dict())
    reference.set_timesteps(4)
    drawn: list[int] = []
    x_ref, noise = torch.from_numpy(latents), jax_noise(key, SHAPE, "float32")
    with injected_noise(reference, noise, drawn, algo.module):
        ref = reference.step(toy_model_torch(x_ref, 499), 499, x_ref, **eta_kwargs(algo, eta))
    assert drawn == [2]
    rows, tab = [(2, 499, int(reference.timesteps[3]))], reference_table(config, reference)
    (bound,), _ = step_bounds(algo.core, config, latents, eta, noise, rows, drawn, tab)
    assert_close(out.prev_sample, ref.prev_sample, bound=bound)


@over_algorithms
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_half_dtypes_keep_their_dtype_and_match_the_reference(algo, dtype, prediction_type):
    config = TCDConfig(prediction_type=prediction_type)
    latents, key, eta = _latents(6), jax.random.key(6), algo.eta(0.3)
    ref = reference_run(algo, config, latents, key, eta, dtype, num_inference_steps=4)
    ours, _ = scheduler_loop(algo, config, latents, key, eta, dtype, num_inference_steps=4)
    assert all(out.prev_sample.dtype == jnp.dtype(dtype) for out in ours)
    assert_close(ours[-1].prev_sample, ref.outputs[-1], dtype)
    plan = algo.plan(config, 4)
    final = algo.sample(toy_model_jax, jnp.asarray(latents, dtype), key, plan, eta, config=config)
    assert final.dtype == jnp.dtype(dtype)
    assert_close(final, ref.outputs[-1], dtype)
    # The tables stay float32 whatever the latents are.
    assert algo.scheduler(config).create_state().common.alphas_cumprod.dtype == jnp.float32


@clip_or_threshold
def test_lcm_clipping_and_thresholding_match_the_reference(overrides):
    """LCM's reference honours clip_sample and thresholding: so do the scheduler and the loop
    (and they change the result, so the comparison is not vacuous). TCD's reference ignores
    them: test_jax_transforms checks them against the core's step instead."""
    algo, config = LCM_JAX, TCDConfig(**overrides)
    latents, key = 3.0 * _latents(7), jax.random.key(7)
    ref = reference_run(algo, config, latents, key, num_inference_steps=3)
    ours, _ = scheduler_loop(algo, config, latents, key, num_inference_steps=3)
    for out, r, b in zip(ours, ref.outputs, ref.bounds, strict=True):
        assert_close(out.prev_sample, r, bound=b)
    plan = algo.plan(config, 3)
    final = algo.sample(toy_model_jax, jnp.asarray(latents), key, plan, config=config)
    assert_close(final, ref.outputs[-1], bound=ref.bounds[-1])
    plain = algo.sample(toy_model_jax, jnp.asarray(latents), key, plan)
    assert not np.allclose(np.asarray(plain), np.asarray(final))


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


@over_algorithms
@settings(max_examples=examples(10))
@given(
    strengths=st.lists(st.sampled_from([1.0, 0.8, 0.6, 0.5]), min_size=3, max_size=3),
    eta_values=st.lists(etas, min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_per_sample_plans_match_per_sample_reference_runs(algo, strengths, eta_values, seed):
    """A batch mixing img2img strengths (and TCD's η values) equals each sample's own reference
    run (one key per sample: its noise does not depend on the batch)."""
    config, n = TCDConfig(), 4
    eta_values = [algo.eta(eta) for eta in eta_values]
    latents = _latents(seed, (3, 3, 4, 4))
    keys = jax.random.split(jax.random.key(seed), 3)
    plan = algo.plan(config, n, strength=strengths)
    assert plan.timesteps.shape == plan.final.shape == (n, 3)
    eta = algo.eta(np.asarray(eta_values))
    final = algo.sample(toy_model_jax, jnp.asarray(latents), keys, plan, eta, config=config)
    for b in range(3):
        latent, key = latents[b : b + 1], keys[b : b + 1]
        ref = reference_run(
            algo, config, latent, key, eta_values[b], num_inference_steps=n, strength=strengths[b]
        )
        assert_close(final[b : b + 1], ref.outputs[-1], what=f"sample {b}", bound=ref.bounds[-1])


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
