"""jit, lax.fori_loop, lax.scan and vmap with the scheduler state as carry; trace counts; keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_helpers import toy_model_jax

import tcd_jax
from tcd_core import TCDConfig

CONFIG = TCDConfig()
SHAPE = (3, 2, 4, 4)


def _x(seed: int = 0, shape=SHAPE) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape)


def _rel_close(a, b, tol: float = 1e-6) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.max(np.abs(a - b)) <= tol * (1 + np.max(np.abs(b))), np.max(np.abs(a - b))


# The compiled loop traces the model twice: once in the scan body (every step but the last) and
# once for the last step, which runs after the scan without drawing noise.
MODEL_TRACES_PER_COMPILE = 2


def test_sample_traces_once_across_eta_keys_latents_and_schedules():
    traces = []

    def model(x, t):
        traces.append(1)  # runs only while tracing
        return toy_model_jax(x, t)

    plan = tcd_jax.sampling_plan(CONFIG, 4)
    results = []
    for seed, eta in enumerate([0.3, 0.0, 1.0, 0.77]):
        y = tcd_jax.sample(model, _x(seed), jax.random.key(seed), plan, eta)
        results.append(np.asarray(y))
    # A different noise schedule is an argument, not part of the trace.
    linear = CONFIG.replace(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    tcd_jax.sample(
        model, _x(9), jax.random.key(9), tcd_jax.sampling_plan(linear, 4), 0.5, config=linear
    )
    assert len(traces) == MODEL_TRACES_PER_COMPILE
    assert not np.allclose(results[0], results[1])  # the arguments really changed the result
    # Per-batch η is a new shape: one more trace, then none for new values.
    for values in ([0.1, 0.2, 0.3], [0.9, 0.0, 0.5]):
        tcd_jax.sample(model, _x(), jax.random.key(0), plan, np.asarray(values))
    assert len(traces) == 2 * MODEL_TRACES_PER_COMPILE


def test_one_step_plans_compile_and_draw_nothing():
    # A one-step plan is only the final step: the scan runs zero rows and no key is consumed,
    # so any key gives the same (deterministic) result, as in the reference.
    plan = tcd_jax.sampling_plan(CONFIG, 1)
    a = tcd_jax.sample(toy_model_jax, _x(3), jax.random.key(0), plan, 0.3)
    b = tcd_jax.sample(toy_model_jax, _x(3), jax.random.key(1), plan, 0.3)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_scheduler_loop_under_jit_traces_once_across_eta_and_keys():
    traces = []
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    state0 = scheduler.set_timesteps(scheduler.create_state(), 4)

    @jax.jit
    def run(state, x, key, eta):
        traces.append(1)

        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            out = scheduler.step(state, toy_model_jax(x, t), t, x, key=key, eta=eta)
            return out.prev_sample, out.state

        return jax.lax.fori_loop(0, 4, body, (x, state))

    for seed, eta in enumerate([0.3, 0.6, 0.0]):
        _, state = run(state0, _x(seed), jax.random.key(seed), jnp.float32(eta))
        assert int(state.step_index) == 4
    assert len(traces) == 1


def _scheduler_loop_python(scheduler, state, x, key, eta):
    for t in np.asarray(state.timesteps).tolist():
        out = scheduler.step(state, toy_model_jax(x, t), t, x, key=key, eta=eta)
        x, state = out.prev_sample, out.state
    return x, state


def test_fori_loop_scan_and_python_loop_agree_with_the_compiled_sample():
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    state0 = scheduler.set_timesteps(scheduler.create_state(), 4)
    x0, key, eta = _x(1), jax.random.key(1), 0.3
    eager, _ = _scheduler_loop_python(scheduler, state0, x0, key, eta)

    def fori(x, state):
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            out = scheduler.step(state, toy_model_jax(x, t), t, x, key=key, eta=eta)
            return out.prev_sample, out.state

        return jax.lax.fori_loop(0, 4, body, (x, state))

    def scan(x, state):
        def body(carry, t):
            x, state = carry
            x, state = scheduler.step(
                state, toy_model_jax(x, t), t, x, key=key, eta=eta, return_dict=False
            )
            return (x, state), x

        (x, state), trajectory = jax.lax.scan(body, (x, state), state.timesteps)
        return x, state, trajectory

    x_fori, s_fori = jax.jit(fori)(x0, state0)
    x_scan, s_scan, trajectory = jax.jit(scan)(x0, state0)
    x_sample = tcd_jax.sample(toy_model_jax, x0, key, tcd_jax.sampling_plan(CONFIG, 4), eta)
    for y in (x_fori, x_scan, x_sample):
        _rel_close(y, eager)
    assert trajectory.shape == (4,) + SHAPE
    assert int(s_fori.step_index) == int(s_scan.step_index) == 4


def test_state_shapes_and_dtypes_are_stable_through_step():
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    state = scheduler.set_timesteps(scheduler.create_state(), 8)
    x = _x()
    out = jax.eval_shape(
        lambda s, x, k: scheduler.step(s, x, s.timesteps[0], x, key=k, eta=0.3).state,
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


def test_vmap_over_per_sample_eta_and_keys_equals_the_batched_call():
    """vmap over (latents, key, η) per sample — through the scheduler and through sample() —
    equals one batched sample() call with per-sample keys and η."""
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    state0 = scheduler.set_timesteps(scheduler.create_state(), 4)
    plan = tcd_jax.sampling_plan(CONFIG, 4)
    x = _x(2)
    keys = jax.random.split(jax.random.key(2), SHAPE[0])
    etas = jnp.asarray([0.0, 0.3, 0.9], dtype=jnp.float32)

    def one(x, key, eta):  # x: one sample, no batch axis
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            out = scheduler.step(state, toy_model_jax(x, t), t, x, key=key, eta=eta)
            return out.prev_sample, out.state

        return jax.lax.fori_loop(0, 4, body, (x, state0))[0]

    via_scheduler = jax.jit(jax.vmap(one))(x, keys, etas)
    via_sample = jax.vmap(lambda x, k, e: tcd_jax.sample(toy_model_jax, x, k, plan, e))(
        x, keys, etas
    )
    batched = tcd_jax.sample(toy_model_jax, x, keys, plan, etas)
    _rel_close(via_scheduler, batched)
    _rel_close(via_sample, batched)
    # η = 0 for sample 0: deterministic, whatever its key.
    other = tcd_jax.sample(toy_model_jax, x, jax.random.split(jax.random.key(7), 3), plan, etas)
    np.testing.assert_array_equal(np.asarray(other[0]), np.asarray(batched[0]))
    assert not np.allclose(np.asarray(other[1]), np.asarray(batched[1]))


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_prng_implementations(impl):
    """Any key implementation runs; scheduler and sample() use the same per-step noise."""
    key = tcd_jax.prng_key(5, impl=impl)
    assert key.dtype == jax.random.key(0, impl=impl).dtype != jax.random.key(0).dtype
    plan = tcd_jax.sampling_plan(CONFIG, 4)
    x = _x(5)
    y = tcd_jax.sample(toy_model_jax, x, key, plan, 0.3)
    again = tcd_jax.sample(toy_model_jax, x, tcd_jax.prng_key(5, impl=impl), plan, 0.3)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(again))
    threefry = tcd_jax.sample(toy_model_jax, x, tcd_jax.prng_key(5), plan, 0.3)
    assert not np.allclose(np.asarray(y), np.asarray(threefry))
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    state = scheduler.set_timesteps(scheduler.create_state(), 4)
    eager, _ = _scheduler_loop_python(scheduler, state, x, key, 0.3)
    _rel_close(y, eager)


def test_raw_uint32_keys_are_threefry_keys():
    plan = tcd_jax.sampling_plan(CONFIG, 2)
    x = _x(6)
    typed = tcd_jax.sample(toy_model_jax, x, jax.random.key(6), plan, 0.5)
    raw = tcd_jax.sample(toy_model_jax, x, jax.random.PRNGKey(6), plan, 0.5)
    np.testing.assert_array_equal(np.asarray(typed), np.asarray(raw))
    z = tcd_jax.step_noise(jax.random.PRNGKey(6), 0, (2, 3), "float32")
    np.testing.assert_array_equal(
        np.asarray(z), np.asarray(tcd_jax.step_noise(jax.random.key(6), 0, (2, 3), "float32"))
    )


@pytest.mark.parametrize(
    "config",
    [
        TCDConfig(prediction_type="sample", clip_sample=True, clip_sample_range=0.5),
        TCDConfig(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
    ],
    ids=["clip_sample", "thresholding"],
)
def test_clipping_and_thresholding_follow_the_core_step(config):
    """Config knobs the reference ignores but the core honours reach the compiled loop: it
    equals a NumPy loop of tcd_core.tcd_step fed the same noise."""
    from tcd_core import alphas_cumprod, tcd_step

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
