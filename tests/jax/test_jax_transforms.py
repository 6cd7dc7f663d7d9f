"""The schedulers and compiled loops of both algorithms under jit, lax.fori_loop, lax.scan and
vmap, with the scheduler state as carry; trace counts; keys and PRNG implementations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_helpers import ALGORITHMS, clip_or_threshold, eta_kwargs, toy_model_jax

import tcd_jax
from tcd_core import LCM, TCD, TCDConfig

CONFIG = TCDConfig()
SHAPE = (3, 2, 4, 4)
over_algorithms = pytest.mark.parametrize("algo", ALGORITHMS)


def _x(seed: int = 0, shape=SHAPE) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape)


def _rel_close(a, b, tol: float = 1e-6) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.max(np.abs(a - b)) <= tol * (1 + np.max(np.abs(b))), np.max(np.abs(a - b))


def _python_loop(scheduler, state, x, **step_kwargs):
    for t in np.asarray(state.timesteps).tolist():
        out = scheduler.step(state, toy_model_jax(x, t), t, x, **step_kwargs)
        x, state = out.prev_sample, out.state
    return x, state


#: Model traces per compile of the loop: TCD's scan body and its last step, which runs after the
#: scan without drawing (its p is 0); LCM's scan body only (a custom plan trimmed by strength
#: renoises at its last row, so every row runs in the scan, a final one skipping its draw).
MODEL_TRACES_PER_COMPILE = {TCD: 2, LCM: 1}


@over_algorithms
def test_sample_traces_once_across_keys_latents_eta_plans_and_schedules(algo):
    """Keys, latents, TCD's η, plan values (strength, explicit original steps, a custom plan with
    no final step) and the noise schedule are traced arguments: one compile for all of them (the
    final step's skipped draw is a traced lax.cond, not a retrace)."""
    traces = []

    def model(x, t):
        traces.append(1)  # runs only while tracing
        return toy_model_jax(x, t)

    per_compile = MODEL_TRACES_PER_COMPILE[algo.core]
    plans = [
        algo.plan(CONFIG, 4),
        algo.plan(CONFIG, 4, strength=0.5),
        algo.plan(CONFIG, 4, original_inference_steps=25),
        algo.plan(CONFIG, timesteps=[999, 800, 600, 400, 300], strength=0.8),
    ]
    assert not np.asarray(plans[-1].final).any()
    results = []
    for seed, (plan, eta) in enumerate(zip(plans, [0.3, 0.0, 1.0, 0.77], strict=True)):
        assert plan.timesteps.shape == (4,)
        y = algo.sample(model, _x(seed), jax.random.key(seed), plan, algo.eta(eta))
        results.append(np.asarray(y))
    # A different noise schedule is an argument, not part of the trace.
    linear = CONFIG.replace(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    plan = algo.plan(linear, 4)
    algo.sample(model, _x(9), jax.random.key(9), plan, algo.eta(0.5), config=linear)
    assert len(traces) == per_compile
    assert not np.allclose(results[0], results[1])  # the arguments really changed the result
    # A per-sample plan is a new shape: one more compile, then none for new values.
    for strengths in ([1.0, 0.8, 0.6], [0.5, 0.5, 1.0]):
        plan = algo.plan(CONFIG, 4, strength=strengths)
        algo.sample(model, _x(), jax.random.key(0), plan)
    assert len(traces) == 2 * per_compile
    if algo.core.has_eta:  # per-batch η too
        for values in ([0.1, 0.2, 0.3], [0.9, 0.0, 0.5]):
            algo.sample(model, _x(), jax.random.key(0), plans[0], np.asarray(values))
        assert len(traces) == 3 * per_compile


@over_algorithms
def test_same_key_same_result_other_key_other_result(algo):
    plan = algo.plan(CONFIG, 4)
    a, b, c = (
        np.asarray(algo.sample(toy_model_jax, _x(1), jax.random.key(seed), plan))
        for seed in (3, 3, 4)
    )
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.isfinite(a).all()


@over_algorithms
def test_scheduler_loop_under_jit_traces_once_across_keys_and_eta(algo):
    """The scheduler in a jitted fori_loop (scale_model_input, a traced timestep), the key and
    TCD's traced η passed to ``step``: one trace for all values, equal to the compiled loop."""
    traces = []
    scheduler = algo.scheduler(CONFIG)
    state0 = scheduler.set_timesteps(scheduler.create_state(), 4)

    @jax.jit
    def run(state, x, key, eta):
        traces.append(1)

        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            x_in = scheduler.scale_model_input(state, x, t)
            out = scheduler.step(
                state, toy_model_jax(x_in, t), t, x, key=key, **eta_kwargs(algo, eta)
            )
            return out.to_tuple()

        return jax.lax.fori_loop(0, 4, body, (x, state))

    plan = algo.plan(CONFIG, 4)
    for seed, eta in enumerate([0.3, 0.6, 0.0]):
        key, eta = jax.random.key(seed), algo.eta(jnp.float32(eta))
        y, state = run(state0, _x(seed), key, eta)
        assert int(state.step_index) == 4
        _rel_close(y, algo.sample(toy_model_jax, _x(seed), key, plan, eta))
    assert len(traces) == 1


@over_algorithms
def test_fori_loop_scan_and_python_loop_agree_with_the_compiled_sample(algo):
    scheduler = algo.scheduler(CONFIG)
    state0 = scheduler.set_timesteps(scheduler.create_state(), 4)
    x0, key, eta = _x(1), jax.random.key(1), algo.eta(0.3)
    kwargs = dict(key=key, **eta_kwargs(algo, eta))
    eager, _ = _python_loop(scheduler, state0, x0, **kwargs)

    def fori(x, state):
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            return scheduler.step(state, toy_model_jax(x, t), t, x, return_dict=False, **kwargs)

        return jax.lax.fori_loop(0, 4, body, (x, state))

    def scan(x, state):
        def body(carry, t):
            x, state = carry
            out = scheduler.step(state, toy_model_jax(x, t), t, x, **kwargs)
            estimate = getattr(out, algo.core.estimate)
            return (out.prev_sample, out.state), (out.prev_sample, estimate)

        (x, state), (trajectory, estimates) = jax.lax.scan(body, (x, state), state.timesteps)
        return x, state, trajectory, estimates

    x_fori, s_fori = jax.jit(fori)(x0, state0)
    x_scan, s_scan, trajectory, estimates = jax.jit(scan)(x0, state0)
    x_sample = algo.sample(toy_model_jax, x0, key, algo.plan(CONFIG, 4), eta)
    for y in (x_fori, x_scan, x_sample):
        _rel_close(y, eager)
    assert trajectory.shape == (4,) + SHAPE
    np.testing.assert_array_equal(np.asarray(estimates[-1]), np.asarray(x_scan))  # final step
    assert int(s_fori.step_index) == int(s_scan.step_index) == 4


@over_algorithms
def test_state_shapes_and_dtypes_are_stable_through_step(algo):
    scheduler = algo.scheduler(CONFIG)
    state = scheduler.set_timesteps(scheduler.create_state(), 8)
    x, eta = _x(), eta_kwargs(algo, 0.3)
    out = jax.eval_shape(
        lambda s, x, k: scheduler.step(s, x, s.timesteps[0], x, key=k, **eta).state,
        state,
        x,
        jax.random.key(0),
    )
    before = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    after = jax.tree.map(lambda a: (a.shape, a.dtype), out)
    assert jax.tree.structure(state) == jax.tree.structure(out)
    assert before == after
    assert state.step_index.dtype == jnp.int32 and state.timesteps.dtype == jnp.int32
    assert not any(getattr(a, "weak_type", False) for a in jax.tree.leaves(state))
    assert hasattr(state, "eta") == algo.core.has_eta  # LCM has no η


@over_algorithms
def test_vmap_over_per_sample_keys_and_eta_equals_the_batched_call(algo):
    """vmap over (latents, key, TCD's η) per sample — through the scheduler and through the
    compiled loop — equals one batched call with per-sample keys (and η)."""
    scheduler = algo.scheduler(CONFIG)
    state0 = scheduler.set_timesteps(scheduler.create_state(), 4)
    plan = algo.plan(CONFIG, 4)
    x = _x(2)
    keys = jax.random.split(jax.random.key(2), SHAPE[0])
    etas = algo.eta(jnp.asarray([0.0, 0.3, 0.9], dtype=jnp.float32))

    def one(x, key, eta):  # x: one sample, no batch axis
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            out = scheduler.step(state, toy_model_jax(x, t), t, x, key=key, **eta_kwargs(algo, eta))
            return out.to_tuple()

        return jax.lax.fori_loop(0, 4, body, (x, state0))[0]

    via_scheduler = jax.jit(jax.vmap(one))(x, keys, etas)
    via_sample = jax.vmap(lambda x, k, e: algo.sample(toy_model_jax, x, k, plan, e))(x, keys, etas)
    batched = algo.sample(toy_model_jax, x, keys, plan, etas)
    _rel_close(via_scheduler, batched)
    _rel_close(via_sample, batched)
    # The key is per sample: sample 0's result does not depend on the other samples' keys.
    other_keys = keys.at[1:].set(jax.random.split(jax.random.key(9), 2))
    other = algo.sample(toy_model_jax, x, other_keys, plan, etas)
    np.testing.assert_array_equal(np.asarray(other[0]), np.asarray(batched[0]))
    assert not np.allclose(np.asarray(other[1]), np.asarray(batched[1]))
    if algo.core.has_eta:  # η = 0 for sample 0: deterministic, whatever its key.
        fresh = algo.sample(toy_model_jax, x, jax.random.split(jax.random.key(7), 3), plan, etas)
        np.testing.assert_array_equal(np.asarray(fresh[0]), np.asarray(batched[0]))
        assert not np.allclose(np.asarray(fresh[1]), np.asarray(batched[1]))


@over_algorithms
@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_prng_implementations(algo, impl):
    """Any key implementation runs; the scheduler (key in the state or passed to ``step``) and
    the compiled loop use the same per-step noise."""
    key = tcd_jax.prng_key(5, impl=impl)
    assert key.dtype == jax.random.key(0, impl=impl).dtype != jax.random.key(0).dtype
    plan, x, eta = algo.plan(CONFIG, 4), _x(5), algo.eta(0.3)
    y = algo.sample(toy_model_jax, x, key, plan, eta)
    again = algo.sample(toy_model_jax, x, tcd_jax.prng_key(5, impl=impl), plan, eta)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(again))
    threefry = algo.sample(toy_model_jax, x, tcd_jax.prng_key(5), plan, eta)
    assert not np.allclose(np.asarray(y), np.asarray(threefry))
    scheduler = algo.scheduler(CONFIG)
    keyed = scheduler.set_timesteps(scheduler.create_state(key=key), 4)
    via_state, _ = _python_loop(scheduler, keyed, x, **eta_kwargs(algo, eta))
    _rel_close(y, via_state)
    plain = scheduler.set_timesteps(scheduler.create_state(), 4)
    via_argument, _ = _python_loop(scheduler, plain, x, key=key, **eta_kwargs(algo, eta))
    np.testing.assert_array_equal(np.asarray(via_argument), np.asarray(via_state))


@over_algorithms
def test_raw_uint32_keys_are_threefry_keys(algo):
    plan, x, eta = algo.plan(CONFIG, 2), _x(6), algo.eta(0.5)
    typed = algo.sample(toy_model_jax, x, jax.random.key(6), plan, eta)
    raw = algo.sample(toy_model_jax, x, jax.random.PRNGKey(6), plan, eta)
    np.testing.assert_array_equal(np.asarray(typed), np.asarray(raw))
    z = tcd_jax.step_noise(jax.random.PRNGKey(6), 0, (2, 3), "float32")
    np.testing.assert_array_equal(
        np.asarray(z), np.asarray(tcd_jax.step_noise(jax.random.key(6), 0, (2, 3), "float32"))
    )


@clip_or_threshold
def test_tcd_clipping_and_thresholding_follow_the_core_step(overrides):
    """Config knobs TCD's reference ignores but the core honours reach the compiled loop: it
    equals a NumPy loop of tcd_core.tcd_step fed the same noise. (LCM's reference honours them:
    test_jax_reference checks them against it.)"""
    from tcd_core import alphas_cumprod, tcd_step

    config = TCDConfig(**overrides)
    plan = tcd_jax.sampling_plan(config, 3)
    x0, key, eta = _x(8), jax.random.key(8), 0.4
    model = lambda x, t: 3.0 * x
    ours = tcd_jax.sample(model, x0, key, plan, eta, config=config)
    ac = alphas_cumprod(config)
    x = np.asarray(x0)
    for i, (t, p) in enumerate(zip(plan.timesteps, plan.prev_timesteps)):
        z = None if plan.final[i] else np.asarray(tcd_jax.step_noise(key, i, x.shape, "float32"))
        x = tcd_step(3.0 * x, int(t), x, int(p), ac, eta=eta, noise=z, config=config).prev_sample
    _rel_close(ours, x, 1e-5)
    unclipped = tcd_jax.sample(model, x0, key, plan, eta)
    assert not np.allclose(np.asarray(unclipped), np.asarray(ours))
