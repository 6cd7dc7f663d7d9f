"""FlaxLCMScheduler and sample_lcm under jit, lax.fori_loop, lax.scan and vmap; trace counts;
keys; the skipped final draw; the Flax-convention surface (save/load, dtype, add_noise)."""

from __future__ import annotations

import json

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import LCMScheduler
from jax_helpers import toy_model_jax

import tcd_core
import tcd_jax
from tcd_core import TCDConfig

CONFIG = TCDConfig()
SHAPE = (3, 2, 4, 4)


def _x(seed: int = 0, shape=SHAPE) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape)


def _rel_close(a, b, tol: float = 1e-6) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.max(np.abs(a - b)) <= tol * (1 + np.max(np.abs(b))), np.max(np.abs(a - b))


def _scheduler_python_loop(scheduler, state, x, key=None):
    for t in np.asarray(state.timesteps).tolist():
        out = scheduler.step(state, toy_model_jax(x, t), t, x, key=key)
        x, state = out.prev_sample, out.state
    return x, state


def test_sample_lcm_traces_once_across_keys_latents_plans_and_schedules():
    """Keys, latents, plan values (strength, custom timesteps, a plan with no final step) and the
    noise schedule are traced arguments: one trace of the model for all of them (the scan body
    is traced once; the final step's skipped draw is a traced lax.cond, not a retrace)."""
    traces = []

    def model(x, t):
        traces.append(1)  # runs only while tracing
        return toy_model_jax(x, t)

    results = []
    for seed, plan in enumerate(
        [
            tcd_jax.lcm_sampling_plan(CONFIG, 4),
            tcd_jax.lcm_sampling_plan(CONFIG, 4, strength=0.5),
            tcd_jax.lcm_sampling_plan(CONFIG, 4, original_inference_steps=25),
            tcd_jax.lcm_sampling_plan(CONFIG, timesteps=[999, 800, 600, 400, 300], strength=0.8),
        ]
    ):
        assert plan.timesteps.shape == (4,)
        results.append(np.asarray(tcd_jax.sample_lcm(model, _x(seed), jax.random.key(seed), plan)))
    assert not np.asarray(
        tcd_jax.lcm_sampling_plan(CONFIG, timesteps=[999, 800, 600, 400, 300], strength=0.8).final
    ).any()
    linear = CONFIG.replace(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    tcd_jax.sample_lcm(
        model, _x(9), jax.random.key(9), tcd_jax.lcm_sampling_plan(linear, 4), config=linear
    )
    assert len(traces) == 1
    assert not np.allclose(results[0], results[1])  # the arguments really changed the result
    # A per-sample plan is a new shape: one more trace, then none for new values.
    for strengths in ([1.0, 0.8, 0.6], [0.5, 0.5, 1.0]):
        plan = tcd_jax.lcm_sampling_plan(CONFIG, 4, strength=strengths)
        tcd_jax.sample_lcm(model, _x(), jax.random.key(0), plan)
    assert len(traces) == 2


def test_same_key_same_result_other_key_other_result():
    plan = tcd_jax.lcm_sampling_plan(CONFIG, 4)
    a = tcd_jax.sample_lcm(toy_model_jax, _x(1), jax.random.key(3), plan)
    b = tcd_jax.sample_lcm(toy_model_jax, _x(1), jax.random.key(3), plan)
    c = tcd_jax.sample_lcm(toy_model_jax, _x(1), jax.random.key(4), plan)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert np.isfinite(np.asarray(a)).all()


def _primitives(jaxpr) -> set[str]:
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            names |= _primitives(sub)
    return names


def _conds(jaxpr) -> list:
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "cond":
            found.append(eqn)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _conds(sub)
    return found


def test_the_step_has_a_branch_without_the_draw_taken_at_the_final_step():
    """The step is a lax.cond between a branch that draws the normal and one that does not; the
    predicate is the traced `final` mask, and both give the same result at a final step."""
    from tcd_jax._step import keyed_step

    ac = jnp.asarray(tcd_jax.jax_schedule(CONFIG).alphas_cumprod)
    x = _x(2)

    def step(final, key):
        return keyed_step(
            tcd_core.LCM, toy_model_jax(x, 259), jnp.int32(259), x, jnp.int32(259), ac, None,
            final, jnp.logical_not(final), key, 3, CONFIG,
        ).prev_sample  # fmt: skip

    jaxpr = jax.make_jaxpr(step)(jnp.bool_(True), jax.random.key(0)).jaxpr
    (cond,) = _conds(jaxpr)
    branch_prims = [_primitives(b.jaxpr) for b in cond.params["branches"]]
    draws = ["random_bits" in p or "threefry2x32" in p for p in branch_prims]
    assert sorted(draws) == [False, True], branch_prims
    final_a = jax.jit(step)(jnp.bool_(True), jax.random.key(0))
    final_b = jax.jit(step)(jnp.bool_(True), jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(final_a), np.asarray(final_b))
    other_a = jax.jit(step)(jnp.bool_(False), jax.random.key(0))
    other_b = jax.jit(step)(jnp.bool_(False), jax.random.key(1))
    assert not np.allclose(np.asarray(other_a), np.asarray(other_b))


def test_scheduler_under_jit_fori_loop_traces_once_across_keys():
    """The pipelines' loop shape: key in the state (none passed to step), traced timestep."""
    traces = []
    scheduler = tcd_jax.FlaxLCMScheduler(CONFIG)
    state0 = scheduler.set_timesteps(scheduler.create_state(), 4)

    @jax.jit
    def run(state, x):
        traces.append(1)

        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            x_in = scheduler.scale_model_input(state, x, t)
            return scheduler.step(state, toy_model_jax(x_in, t), t, x).to_tuple()

        return jax.lax.fori_loop(0, 4, body, (x, state))

    outs = []
    for seed in range(3):
        y, state = run(state0.replace(key=jax.random.key(seed)), _x(seed))
        assert int(state.step_index) == 4
        outs.append(np.asarray(y))
    assert len(traces) == 1
    plan = tcd_jax.lcm_sampling_plan(CONFIG, 4)
    for seed, y in enumerate(outs):
        _rel_close(y, tcd_jax.sample_lcm(toy_model_jax, _x(seed), jax.random.key(seed), plan))


def test_fori_loop_scan_and_python_loop_agree_with_sample_lcm():
    scheduler = tcd_jax.FlaxLCMScheduler(CONFIG)
    key = jax.random.key(1)
    state0 = scheduler.set_timesteps(scheduler.create_state(key=key), 4)
    x0 = _x(1)
    eager, _ = _scheduler_python_loop(scheduler, state0, x0)

    def fori(x, state):
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            return scheduler.step(state, toy_model_jax(x, t), t, x, return_dict=False)

        return jax.lax.fori_loop(0, 4, body, (x, state))

    def scan(x, state):
        def body(carry, t):
            x, state = carry
            out = scheduler.step(state, toy_model_jax(x, t), t, x)
            return (out.prev_sample, out.state), out.denoised

        (x, state), denoised = jax.lax.scan(body, (x, state), state.timesteps)
        return x, state, denoised

    x_fori, s_fori = jax.jit(fori)(x0, state0)
    x_scan, s_scan, denoised = jax.jit(scan)(x0, state0)
    x_sample = tcd_jax.sample_lcm(toy_model_jax, x0, key, tcd_jax.lcm_sampling_plan(CONFIG, 4))
    for y in (x_fori, x_scan, x_sample):
        _rel_close(y, eager)
    np.testing.assert_array_equal(np.asarray(denoised[-1]), np.asarray(x_scan))  # final step
    assert int(s_fori.step_index) == int(s_scan.step_index) == 4


def test_key_argument_overrides_the_state_key_for_that_call_only():
    scheduler = tcd_jax.FlaxLCMScheduler(CONFIG)
    state = scheduler.set_timesteps(scheduler.create_state(), 3)
    x = _x(3)
    via_state, _ = _scheduler_python_loop(
        scheduler, scheduler.set_timesteps(state, 3, key=jax.random.key(8)), x
    )
    via_arg, s2 = _scheduler_python_loop(scheduler, state, x, key=jax.random.key(8))
    np.testing.assert_array_equal(np.asarray(via_state), np.asarray(via_arg))
    assert jax.random.key_data(s2.key).tolist() == jax.random.key_data(state.key).tolist()
    default, _ = _scheduler_python_loop(scheduler, state, x)
    assert not np.allclose(np.asarray(default), np.asarray(via_arg))
    # The default key is fixed: a fresh state reproduces the run.
    again, _ = _scheduler_python_loop(
        scheduler, scheduler.set_timesteps(scheduler.create_state(), 3), x
    )
    np.testing.assert_array_equal(np.asarray(default), np.asarray(again))
    raw, _ = _scheduler_python_loop(
        scheduler, scheduler.set_timesteps(state, 3, key=jax.random.PRNGKey(8)), x
    )
    np.testing.assert_array_equal(np.asarray(raw), np.asarray(via_state))


def test_state_shapes_and_dtypes_are_stable_through_step():
    scheduler = tcd_jax.FlaxLCMScheduler(CONFIG)
    state = scheduler.set_timesteps(scheduler.create_state(), 8)
    x = _x()
    out = jax.eval_shape(lambda s, x: scheduler.step(s, x, s.timesteps[0], x).state, state, x)
    before = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    after = jax.tree.map(lambda a: (a.shape, a.dtype), out)
    assert jax.tree.structure(state) == jax.tree.structure(out)
    assert before == after
    assert state.step_index.dtype == jnp.int32 and state.timesteps.dtype == jnp.int32
    assert not any(getattr(a, "weak_type", False) for a in jax.tree.leaves(state))
    assert not hasattr(state, "eta")  # LCM has no η


def test_vmap_over_per_sample_keys_equals_the_batched_call():
    scheduler = tcd_jax.FlaxLCMScheduler(CONFIG)
    state0 = scheduler.set_timesteps(scheduler.create_state(), 4)
    plan = tcd_jax.lcm_sampling_plan(CONFIG, 4)
    x = _x(2)
    keys = jax.random.split(jax.random.key(2), SHAPE[0])

    def one(x, key):  # one sample, no batch axis
        def body(i, carry):
            x, state = carry
            t = state.timesteps[i]
            return scheduler.step(state, toy_model_jax(x, t), t, x, key=key).to_tuple()

        return jax.lax.fori_loop(0, 4, body, (x, state0))[0]

    via_scheduler = jax.jit(jax.vmap(one))(x, keys)
    via_sample = jax.vmap(lambda x, k: tcd_jax.sample_lcm(toy_model_jax, x, k, plan))(x, keys)
    batched = tcd_jax.sample_lcm(toy_model_jax, x, keys, plan)
    _rel_close(via_scheduler, batched)
    _rel_close(via_sample, batched)
    # The key is per sample: sample 0's result does not depend on the other samples' keys.
    other_keys = keys.at[1:].set(jax.random.split(jax.random.key(9), 2))
    other = tcd_jax.sample_lcm(toy_model_jax, x, other_keys, plan)
    np.testing.assert_array_equal(np.asarray(other[0]), np.asarray(batched[0]))
    assert not np.allclose(np.asarray(other[1]), np.asarray(batched[1]))


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_prng_implementations(impl):
    key = tcd_jax.prng_key(5, impl=impl)
    plan = tcd_jax.lcm_sampling_plan(CONFIG, 4)
    x = _x(5)
    y = tcd_jax.sample_lcm(toy_model_jax, x, key, plan)
    threefry = tcd_jax.sample_lcm(toy_model_jax, x, tcd_jax.prng_key(5), plan)
    assert not np.allclose(np.asarray(y), np.asarray(threefry))
    scheduler = tcd_jax.FlaxLCMScheduler(CONFIG)
    state = scheduler.set_timesteps(scheduler.create_state(key=key), 4)
    eager, _ = _scheduler_python_loop(scheduler, state, x)
    _rel_close(y, eager)


def test_save_and_load_round_trips_through_diffusers(tmp_path):
    config = TCDConfig(
        beta_schedule="scaled_linear", prediction_type="v_prediction", timestep_scaling=5.0
    )
    scheduler = tcd_jax.FlaxLCMScheduler(config, dtype=jnp.bfloat16)
    path = scheduler.save_pretrained(tmp_path / "scheduler")
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["_class_name"] == "LCMScheduler"
    assert (
        LCMScheduler.from_pretrained(tmp_path, subfolder="scheduler").config.timestep_scaling == 5.0
    )
    loaded, state = tcd_jax.FlaxLCMScheduler.from_pretrained(
        tmp_path, subfolder="scheduler", dtype=jnp.bfloat16
    )
    assert loaded == scheduler and loaded.config == config
    assert state.init_noise_sigma.dtype == jnp.bfloat16 and float(state.init_noise_sigma) == 1.0
    assert state.num_inference_steps is None
    # A config diffusers wrote (any scheduler's) loads too.
    LCMScheduler(beta_schedule="linear", original_inference_steps=25).save_config(tmp_path / "d")
    other, _ = tcd_jax.FlaxLCMScheduler.from_pretrained(tmp_path / "d")
    assert other.config.beta_schedule == "linear" and other.config.original_inference_steps == 25
    with pytest.raises(ValueError, match="dtype"):
        tcd_jax.FlaxLCMScheduler(dtype=jnp.int32)
    with pytest.raises(ValueError, match=r"scheduler_config\.json"):
        tcd_jax.FlaxLCMScheduler.from_pretrained(tmp_path / "missing")


def test_add_noise_and_velocity_equal_the_reference():
    scheduler = tcd_jax.FlaxLCMScheduler(CONFIG)
    state = scheduler.create_state()
    x, noise = _x(1), _x(2)
    t = np.asarray([999, 500, 3])
    reference = LCMScheduler(**CONFIG.to_dict())
    to_t = lambda a: torch.from_numpy(np.array(a))
    ref = reference.add_noise(to_t(x), to_t(noise), torch.from_numpy(t))
    _rel_close(scheduler.add_noise(state, x, noise, t), ref.numpy(), 1e-6)
    ref_v = reference.get_velocity(to_t(x), to_t(noise), torch.from_numpy(t))
    _rel_close(scheduler.get_velocity(state, x, noise, t), ref_v.numpy(), 1e-6)


def test_bad_input_raises_value_errors():
    scheduler = tcd_jax.FlaxLCMScheduler(CONFIG)
    x = _x()
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(scheduler.create_state(), x, 999, x)
    with pytest.raises(ValueError, match="key"):
        scheduler.create_state(key=jnp.zeros((2, 2, 2), jnp.uint32))
    state = scheduler.set_timesteps(scheduler.create_state(), 4)
    with pytest.raises(ValueError, match="model_output"):
        scheduler.step(state, x[:1], 999, x)
    with pytest.raises(ValueError, match="strength"):
        scheduler.set_timesteps(state, 4, strength=1.5)
    plan = tcd_jax.lcm_sampling_plan(CONFIG, 4, strength=[1.0, 0.5])
    with pytest.raises(ValueError, match="columns"):
        tcd_jax.sample_lcm(toy_model_jax, x, jax.random.key(0), plan)
    with pytest.raises(ValueError, match="floating"):
        tcd_jax.sample_lcm(
            toy_model_jax,
            jnp.zeros(SHAPE, jnp.int32),
            jax.random.key(0),
            tcd_jax.lcm_sampling_plan(CONFIG, 4),
        )
    with pytest.raises(ValueError, match="begin_index"):
        from tcd_core import lcm_timesteps

        tcd_jax.LCMSamplingPlan.from_plan(lcm_timesteps(CONFIG, 4), begin_index=4)


@pytest.mark.parametrize(
    "module", ["tcd_jax.lcm", "tcd_jax.scheduler", "tcd_jax.sampling", "tcd_jax.noise"]
)
def test_docstring_examples_run(module):
    """The examples in the modules' docstrings (rendered in the API reference) run: the two
    schedulers' and the one sampling module that serves both algorithms."""
    import doctest
    import importlib

    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testmod(importlib.import_module(module), optionflags=flags)
    assert result.attempted > 0 and result.failed == 0
