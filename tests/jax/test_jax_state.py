"""The Flax pipeline convention (issue 10): the key (and TCD's η) in the scheduler state,
``to_tuple()``, ``dtype=``, and the skipped draw when no batch element needs one."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples
from jax_helpers import (
    ALGORITHMS,
    TCD_JAX,
    assert_close,
    configs,
    eta_kwargs,
    etas,
    loop_bound,
    reference_run,
    toy_model_jax,
)

import tcd_jax
from tcd_core import TCDConfig

CONFIG = TCDConfig()
SHAPE = (2, 3, 4, 4)
over_algorithms = pytest.mark.parametrize("algo", ALGORITHMS)


def _x(seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), SHAPE)


def pipeline_loop(scheduler, state, x, steps: int, start: int = 0):
    """diffusers 0.39's Flax pipeline loop, line for line: no key, no η passed to ``step``."""

    def body(i, carry):
        latents, state = carry
        t = jnp.array(state.timesteps, dtype=jnp.int32)[i]
        latents_in = scheduler.scale_model_input(state, latents, t)
        noise_pred = toy_model_jax(latents_in, t)
        return scheduler.step(state, noise_pred, t, latents).to_tuple()

    state = scheduler.set_timesteps(state, num_inference_steps=steps, shape=x.shape)
    x = x * state.init_noise_sigma
    return jax.lax.fori_loop(start, steps, body, (x, state))


def test_create_state_defaults_and_fields():
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    state = scheduler.create_state()
    np.testing.assert_array_equal(
        jax.random.key_data(state.key), jax.random.key_data(jax.random.key(0))
    )
    assert state.eta.dtype == jnp.float32 and state.eta.shape == ()
    assert float(state.eta) == np.float32(0.3)
    # 1 − η is formed in double precision and rounded once, as the reference does.
    assert state.one_minus_eta.dtype == jnp.float32
    assert np.asarray(state.one_minus_eta) == np.float32(1.0 - 0.3)
    assert not any(getattr(a, "weak_type", False) for a in jax.tree.leaves(state))
    # A raw uint32 key is a threefry key; per-sample keys and per-sample η are kept as given.
    raw = scheduler.create_state(key=jax.random.PRNGKey(5), eta=[0.0, 0.5])
    assert jax.dtypes.issubdtype(raw.key.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.key_data(raw.key), jax.random.key_data(jax.random.key(5))
    )
    assert raw.eta.shape == (2,)
    keys = jax.random.split(jax.random.key(1), 2)
    assert scheduler.create_state(key=keys).key.shape == (2,)


@settings(max_examples=examples(60))
@given(eta=etas)
def test_state_eta_keeps_the_references_rounding(eta):
    """η set through the state (create_state, set_timesteps, replace) carries f32(1 − η) from
    float64, so s = ⌊f32(1 − η)·p⌋ is the reference's even where a float32 η would round twice."""
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    expected = np.float32(1.0 - eta)
    for state in (
        scheduler.create_state(eta=eta),
        scheduler.set_timesteps(scheduler.create_state(), 4, eta=eta),
        scheduler.create_state().replace(eta=eta),
    ):
        assert np.asarray(state.one_minus_eta) == expected
        assert np.asarray(state.eta) == np.float32(eta)


def test_eta_0_33_is_where_a_float32_eta_would_differ():
    """The reason one_minus_eta is kept: with η = 0.33 a float32 subtraction gives another s."""
    from tcd_core import intermediate_timestep

    p = np.arange(1, 1000)
    host = np.asarray(intermediate_timestep(p, one_minus_eta=np.float32(1.0 - 0.33)))
    f32 = np.asarray(intermediate_timestep(p, one_minus_eta=np.float32(1) - np.float32(0.33)))
    assert (host != f32).any()
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    state = scheduler.create_state(eta=0.33)
    s = tcd_jax._step.intermediate(jnp.asarray(p), state.one_minus_eta)
    np.testing.assert_array_equal(np.asarray(s), host)


@settings(max_examples=examples(25))
@given(config=configs(), n=st.integers(1, 8), eta=etas, seed=st.integers(0, 2**16))
def test_pipeline_loop_with_the_state_key_and_eta_matches_the_reference(config, n, eta, seed):
    """The pipelines' loop (no key, no η at the call) under jit, against diffusers'
    TCDScheduler fed the same noise: within the derived bound, the same steps drawing."""
    scheduler = tcd_jax.FlaxTCDScheduler(config)
    key = jax.random.key(seed)
    try:
        state = scheduler.create_state(key=key, eta=eta)
        scheduler.set_timesteps(state, n)
    except ValueError:
        return  # plans the reference refuses too (test_jax_reference checks the errors)
    latents = np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)
    ours, final_state = jax.jit(pipeline_loop, static_argnums=(0, 3))(
        scheduler, state, jnp.asarray(latents), n
    )
    ref = reference_run(TCD_JAX, config, latents, key, eta, num_inference_steps=n)
    assert_close(ours, ref.outputs[-1], what=f"eta={eta} n={n}", bound=ref.bounds[-1])
    assert int(final_state.step_index) == n


@over_algorithms
def test_step_arguments_override_the_state_for_one_call(algo):
    """``step``'s key (and TCD's η) override the state's for that call only; the default key is
    the fixed ``jax.random.key(0)``; a raw uint32 key is a threefry key; ``set_timesteps`` keeps
    the key and η, or replaces them."""
    scheduler = algo.scheduler(CONFIG)
    x = _x()
    eta = lambda value: eta_kwargs(algo, value)
    base = scheduler.set_timesteps(scheduler.create_state(key=jax.random.key(1), **eta(0.3)), 4)
    t = int(base.timesteps[0])
    key_data = lambda state: jax.random.key_data(state.key).tolist()

    def run(state, **kw):
        out = scheduler.step(state, toy_model_jax(x, t), t, x, **kw)
        return np.asarray(out.prev_sample), out.state

    from_state, after = run(base)
    overridden = base.replace(key=jax.random.key(9), **eta(0.9))
    explicit, _ = run(overridden, key=jax.random.key(1), **eta(0.3))
    np.testing.assert_array_equal(from_state, explicit)
    # The override does not stick: the returned state keeps its own key and η.
    other, kept = run(base, key=jax.random.key(2), **eta(0.6))
    assert not np.allclose(other, from_state)
    assert key_data(kept) == key_data(base)
    assert not algo.core.has_eta or float(kept.eta) == np.float32(0.3)
    via_state, _ = run(base.replace(key=jax.random.key(2), **eta(0.6)))
    np.testing.assert_array_equal(via_state, other)
    raw, _ = run(base, key=jax.random.PRNGKey(2), **eta(0.6))
    np.testing.assert_array_equal(raw, other)
    raw_state, _ = run(scheduler.set_timesteps(base, 4, key=jax.random.PRNGKey(2), **eta(0.6)))
    np.testing.assert_array_equal(raw_state, other)
    assert int(after.step_index) == 1
    # The default key is fixed: a fresh state reproduces the run.
    default, _ = run(scheduler.set_timesteps(scheduler.create_state(**eta(0.3)), 4))
    zero = scheduler.create_state(key=jax.random.key(0), **eta(0.3))
    np.testing.assert_array_equal(default, run(scheduler.set_timesteps(zero, 4))[0])
    assert not np.allclose(default, from_state)
    # set_timesteps keeps the key and η, or replaces them.
    again = scheduler.set_timesteps(after, 4)
    assert key_data(again) == key_data(base) and int(again.step_index) == -1
    assert not algo.core.has_eta or float(again.eta) == np.float32(0.3)
    swapped = scheduler.set_timesteps(after, 4, key=jax.random.key(3), **eta(0.0))
    assert key_data(swapped) == jax.random.key_data(jax.random.key(3)).tolist()
    if algo.core.has_eta:
        assert float(swapped.eta) == 0.0 and float(swapped.one_minus_eta) == 1.0


def test_to_tuple_is_prev_sample_and_state():
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    state = scheduler.set_timesteps(scheduler.create_state(), 4)
    x = _x(1)
    out = scheduler.step(state, toy_model_jax(x, 999), 999, x)
    prev, new_state = out.to_tuple()
    assert prev is out.prev_sample and new_state is out.state
    plain = scheduler.step(state, toy_model_jax(x, 999), 999, x, return_dict=False)
    np.testing.assert_array_equal(np.asarray(plain[0]), np.asarray(prev))
    assert out.pred_noised_sample.shape == out.pred_original_sample.shape == SHAPE


@over_algorithms
def test_new_key_and_eta_in_the_state_never_retrace(algo):
    """The pipelines' loop under jit (no key or η passed to ``step``): a new key (and TCD's η)
    in the state reuses the one trace, and each run equals the compiled loop given them."""
    traces = []
    scheduler = algo.scheduler(CONFIG)

    @jax.jit
    def run(state, x):
        traces.append(1)
        return pipeline_loop(scheduler, state, x, 4)

    plan = algo.plan(CONFIG, 4)
    results = []
    for seed, eta in enumerate([0.3, 0.0, 1.0, 0.33]):
        key, eta = jax.random.key(seed), algo.eta(eta)
        x, state = run(scheduler.create_state(key=key, **eta_kwargs(algo, eta)), _x())
        results.append(np.asarray(x))
        assert int(state.step_index) == 4
        expected = algo.sample(toy_model_jax, _x(), key, plan, eta)
        assert_close(x, expected, bound=loop_bound(algo, CONFIG, _x(), key, plan, eta))
    assert len(traces) == 1
    assert not np.allclose(results[0], results[1])


def test_eta_zero_in_the_state_ignores_the_key_and_skips_the_draw():
    """η = 0 in the state: the same result whatever the key (the step then takes its cond's
    branch without the draw: test_the_step_draws_in_one_cond_branch_taken_only_where_it_draws)."""
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    x = _x(2)
    loop = jax.jit(pipeline_loop, static_argnums=(0, 3))
    a, _ = loop(scheduler, scheduler.create_state(key=jax.random.key(1), eta=0.0), x, 4)
    b, _ = loop(scheduler, scheduler.create_state(key=jax.random.key(2), eta=0.0), x, 4)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@over_algorithms
def test_the_step_draws_in_one_cond_branch_taken_only_where_it_draws(algo):
    """The scheduler's step is a ``lax.cond`` between a branch that draws the normal and one
    that does not (no draw outside it), on a traced predicate (TCD: some η > 0 and not the last
    step; LCM: not the final step): at the final step the key does not matter, before it it does."""
    scheduler = algo.scheduler(CONFIG)
    state = scheduler.set_timesteps(scheduler.create_state(**eta_kwargs(algo, 0.3)), 4)
    x = _x(2)
    step = lambda s, x: scheduler.step(s, x, s.timesteps[0], x).prev_sample
    jaxpr = jax.make_jaxpr(step)(state, x).jaxpr
    (cond,) = [eqn for eqn in _eqns(jaxpr) if eqn.primitive.name == "cond"]
    draws = sorted(_count(branch.jaxpr, DRAWS) > 0 for branch in cond.params["branches"])
    assert draws == [False, True]
    assert _count_outside_cond(jaxpr, DRAWS) == 0

    def step_at(index, seed):
        started = scheduler.set_begin_index(state.replace(key=jax.random.key(seed)), index)
        t = int(state.timesteps[index])
        return np.asarray(scheduler.step(started, toy_model_jax(x, t), t, x).prev_sample)

    np.testing.assert_array_equal(step_at(3, 0), step_at(3, 1))  # the final step
    assert not np.allclose(step_at(2, 0), step_at(2, 1))


def test_sample_loop_draws_only_inside_the_cond():
    """Issue 10, item 5: the compiled loop's normal draw sits in a ``lax.cond`` branch taken
    only when some batch element draws (η > 0 and not a final row); η stays traced, so switching
    η between 0 and > 0 reuses the loop (``test_sample_traces_once_across_keys_latents_eta_
    plans_and_schedules``), and the values are the core's (``test_jax_reference``)."""
    plan = tcd_jax.sampling_plan(CONFIG, 4)
    jaxpr = jax.make_jaxpr(lambda x, key, eta: tcd_jax.sample(toy_model_jax, x, key, plan, eta))(
        _x(), jax.random.key(0), jnp.float32(0.3)
    )
    assert _count_outside_cond(jaxpr.jaxpr, DRAWS) == 0
    assert _count_in_cond(jaxpr.jaxpr, DRAWS) > 0
    # η = 0 everywhere: the same result whatever the key, equal to a loop given no noise at all.
    a = tcd_jax.sample(toy_model_jax, _x(3), jax.random.key(1), plan, 0.0)
    b = tcd_jax.sample(toy_model_jax, _x(3), jax.random.key(2), plan, 0.0)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_model_runs_outside_the_cond():
    """Only the update sits in the per-step ``lax.cond``: a model inside a conditional branch
    would be compiled twice, and XLA:CPU runs convolutions there on a slow path
    (``python -m benchmarks.eta_zero``: 9-10x slower with a small conv net)."""
    kernel = jnp.full((3, 3, 3, 3), 0.01)

    def conv_model(x, t):
        return jax.lax.conv(x, kernel, (1, 1), "SAME")

    plan = tcd_jax.sampling_plan(CONFIG, 4)
    jaxpr = jax.make_jaxpr(lambda x, key, eta: tcd_jax.sample(conv_model, x, key, plan, eta))(
        _x(), jax.random.key(0), jnp.float32(0.3)
    ).jaxpr
    convs = ("conv_general_dilated",)
    assert _count(jaxpr, convs) == 2  # the scan body's model call and the last step's
    assert _count_in_cond(jaxpr, convs) == 0
    assert _count_in_cond(jaxpr, DRAWS) > 0


@pytest.mark.parametrize("eta", [0.0, 0.3])
def test_host_eta_inside_the_callers_jit_compiles_no_conditional(eta):
    """With η a Python float closed over by the caller's ``jax.jit`` the predicate is a constant:
    the compiled loop has no conditional left, and at η = 0 no random bits at all (the JAX
    guide's advice for GPUs, where XLA may read a conditional's predicate on the host)."""
    plan = tcd_jax.sampling_plan(CONFIG, 4)
    key = jax.random.key(0)

    def compiled(eta_arg):
        return jax.jit(lambda x, k: tcd_jax.sample(toy_model_jax, x, k, plan, eta_arg))

    hlo = compiled(eta).lower(_x(), key).compile().as_text()
    assert " conditional(" not in hlo
    assert ("threefry" in hlo) == (eta > 0)
    # Traced η keeps one conditional per scanned step (3 of the 4; the last never draws).
    traced = jax.jit(lambda x, k, e: tcd_jax.sample(toy_model_jax, x, k, plan, e))
    assert traced.lower(_x(), key, jnp.float32(eta)).compile().as_text().count(" conditional(") == 3
    # Same values (XLA folds constants in another order, so to rounding, not bit for bit): two
    # float32 evaluations of one loop, on the same table, within the derived bound.
    bound = loop_bound(TCD_JAX, CONFIG, _x(), key, plan, eta)
    got = compiled(eta)(_x(), key), traced(_x(), key, jnp.float32(eta))
    assert_close(*got, what="host η", bound=bound)


DRAWS = ("random_bits", "threefry2x32")


def _count(jaxpr, names) -> int:
    """Equations named ``names`` anywhere in ``jaxpr``, nested jaxprs included."""
    return sum(
        (eqn.primitive.name in names) + sum(_count(sub, names) for sub in _subs(eqn))
        for eqn in jaxpr.eqns
    )


def _count_in_cond(jaxpr, names) -> int:
    """Equations named ``names`` inside some cond branch of ``jaxpr``."""
    return sum(
        sum(
            _count(sub, names) if eqn.primitive.name == "cond" else _count_in_cond(sub, names)
            for sub in _subs(eqn)
        )
        for eqn in jaxpr.eqns
    )


def _count_outside_cond(jaxpr, names) -> int:
    """Equations named ``names`` in ``jaxpr`` but in no cond branch."""
    return sum(
        (eqn.primitive.name in names) + sum(_count_outside_cond(sub, names) for sub in _subs(eqn))
        for eqn in jaxpr.eqns
        if eqn.primitive.name != "cond"
    )


def _eqns(jaxpr):
    """Every equation of ``jaxpr``, nested jaxprs included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in _subs(eqn):
            yield from _eqns(sub)


def _subs(eqn):
    """The jaxprs nested in an equation (cond branches, scan/while bodies, pjit calls)."""
    for value in eqn.params.values():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
                yield v.jaxpr
            elif hasattr(v, "eqns"):
                yield v


@over_algorithms
def test_dtype_sets_init_noise_sigma_and_keeps_float32_tables(algo, tmp_path):
    scheduler = algo.scheduler(CONFIG, dtype=jnp.bfloat16)
    state = scheduler.create_state()
    assert state.init_noise_sigma.dtype == jnp.bfloat16 and float(state.init_noise_sigma) == 1.0
    assert state.common.alphas_cumprod.dtype == jnp.float32
    assert scheduler.dtype == jnp.bfloat16
    path = scheduler.save_pretrained(tmp_path)
    # dtype is not a config field (diffusers did not save it either).
    assert "dtype" not in Path(path).read_text()
    loaded, loaded_state = algo.scheduler.from_pretrained(tmp_path, dtype="bfloat16")
    assert loaded == scheduler and loaded.config == CONFIG
    assert (
        loaded_state.init_noise_sigma.dtype == jnp.bfloat16
        and float(loaded_state.init_noise_sigma) == 1.0
    )
    assert algo.scheduler.from_config(CONFIG) != scheduler  # float32 by default
    # bfloat16 latents stay bfloat16 through the pipeline loop.
    y, _ = pipeline_loop(scheduler, state, _x().astype(jnp.bfloat16), 2)
    assert y.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        algo.scheduler(CONFIG, dtype=jnp.int32)
    with pytest.raises(ValueError, match="dtype"):
        algo.scheduler(CONFIG, dtype="no-such-dtype")


def test_bad_key_and_eta_in_the_state_are_value_errors():
    scheduler = tcd_jax.FlaxTCDScheduler(CONFIG)
    for eta in (-0.1, 1.5, float("nan"), [[0.1]]):
        with pytest.raises(ValueError, match="eta"):
            scheduler.create_state(eta=eta)
        with pytest.raises(ValueError, match="eta"):
            scheduler.create_state().replace(eta=eta)
    with pytest.raises(ValueError, match="key"):
        scheduler.create_state(key=jnp.zeros((2,), jnp.float32))
    with pytest.raises(ValueError, match="eta"):
        scheduler.set_timesteps(scheduler.create_state(), 4, eta=2.0)


@pytest.mark.parametrize(
    ("scheduler_class", "shape"),
    # shapes no other test compiles
    [(tcd_jax.FlaxTCDScheduler, (1, 3, 5, 7)), (tcd_jax.FlaxLCMScheduler, (1, 3, 5, 9))],
)
def test_eager_steps_compile_once(monkeypatch, scheduler_class, shape):
    # A Python loop over step (no jit around it) must not trace the step's cond branches afresh
    # on every call: it did, and each eager step cost a compilation (~1 s). Both schedulers run
    # the one keyed step, so both compile it once.
    import tcd_jax._step as step_module

    traces = []
    real = step_module.coefficients

    def counting(*args, **kwargs):
        traces.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(step_module, "coefficients", counting)
    scheduler = scheduler_class()
    state = scheduler.set_timesteps(scheduler.create_state(), 4, shape=shape)
    x = jnp.ones(shape)
    per_step = []
    for t in state.timesteps:
        before = len(traces)
        x, state = scheduler.step(state, 0.1 * x, t, x).to_tuple()
        per_step.append(len(traces) - before)
    assert per_step[0] > 0  # the counter sees the trace (both branches)
    assert per_step[1:] == [0, 0, 0]
    assert bool(jnp.all(jnp.isfinite(x)))
