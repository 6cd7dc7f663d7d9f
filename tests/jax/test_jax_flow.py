"""tcd_jax on the flow-matching path (issue 18): the compiled loop with a flow plan
(``tcd_jax.sample`` + ``flow_sampling_plan``) and ``FlaxFlowMatchTCDScheduler`` (MaxDiffusion's
``FlaxFlowMatchScheduler`` convention), against ``tcd_diffusers.FlowMatchTCDScheduler`` fed the
noise JAX draws (step i: ``normal(fold_in(key, i))``), within the float32 bound derived from the
computation (tests/float32_bound.py) and the issue's contract |Δ| ≤ 1e-5·(1 + max|ref|).

MaxDiffusion itself is not needed: its convention (the step looks its index up from the
timestep, returns the state unchanged, ``set_timesteps(state, n, shape=…, shift=μ)``) is checked
through the calls its loops make."""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Callable
from typing import Any, NamedTuple

import float32_bound as fb
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples
from jax_helpers import assert_close, toy_model_jax, toy_model_torch

import tcd_diffusers.flow as torch_flow
import tcd_jax
from tcd_core import FlowConfig, TCDConfig, flow_plan
from tcd_diffusers import FlowMatchTCDScheduler

#: FLUX.1-dev's scheduler config (its scheduler_config.json): shift 3, dynamic shifting by μ.
FLUX = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}
FLUX_MU = 1.15  # the μ FLUX pipelines compute for a 1024×1024 image
SHAPE = (2, 4, 8, 8)
JAX = fb.deviation("jax")  # one float32 XLA evaluation against torch's
CONTRACT = 1e-5  # the issue's |Δ| ≤ 1e-5·(1 + max|reference|)


def _latents(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _noise(key, shape, dtype="float32") -> Callable[[int], np.ndarray]:
    """Step i's noise exactly as tcd_jax draws it (in ``dtype``), as float32 NumPy."""
    return lambda i: np.asarray(tcd_jax.step_noise(key, i, shape, dtype).astype(jnp.float32))


@contextlib.contextmanager
def injected(scheduler: Any, noise_for_step: Callable[[int], np.ndarray], drawn: list[int]):
    """``FlowMatchTCDScheduler`` drawing the noise JAX draws for its current step (its draw,
    ``tcd_diffusers.flow.step_noise``, replaced), recording the steps that drew."""
    original = torch_flow.step_noise

    def fake(model_output, generator, dtype):
        index = scheduler.step_index
        drawn.append(index)
        z = torch.from_numpy(np.array(noise_for_step(index), dtype=np.float32))
        assert tuple(z.shape) == tuple(model_output.shape)
        return z.to(dtype)

    torch_flow.step_noise = fake
    try:
        yield
    finally:
        torch_flow.step_noise = original


class Reference(NamedTuple):
    """A torch reference run: every step's ``prev_sample``, where it drew, its plan, and the
    derived float32 bounds on |tcd_jax − reference| per step (float32 runs)."""

    outputs: list[torch.Tensor]
    drawn: list[int]
    timesteps: list[float]
    sigmas: list[float]
    bounds: list[np.ndarray] | None


def reference_run(
    config: dict, latents: np.ndarray, key, eta: float, dtype: str = "float32", **plan
) -> Reference:
    """``FlowMatchTCDScheduler`` over the toy velocity model with tcd_jax's noise."""
    scheduler = FlowMatchTCDScheduler.from_config(config, eta=eta)
    scheduler.set_timesteps(**plan)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    x = torch.from_numpy(latents.copy()).to(torch_dtype)
    drawn: list[int] = []
    outputs = []
    with injected(scheduler, _noise(key, latents.shape, dtype), drawn):
        for t in scheduler.timesteps:
            x = scheduler.step(toy_model_torch(x, t), t, x).prev_sample
            outputs.append(x)
    timesteps = scheduler.timesteps.tolist()
    sigmas = scheduler.sigmas.tolist()
    bounds = None
    if dtype == "float32":
        bounds = flow_bounds(latents, timesteps, sigmas, eta, _noise(key, latents.shape))
    return Reference(outputs, drawn, timesteps, sigmas, bounds)


def flow_bounds(
    latents: np.ndarray,
    timesteps: list[float],
    sigmas: list[float],
    eta: float,
    noise_for_step: Callable[[int], np.ndarray],
    begin: int = 0,
) -> list[np.ndarray]:
    """Per step: the derived bound on |tcd_jax − reference| of the next sample, for the float32
    flow loop over the toy model, in the reference's order of operations (``tcd_core.update``
    on :data:`tcd_core.FLOW`): σ_s = f32(1−η)·σ_next, x_s = x + (σ_s − σ)·v, then
    keep = (1−σ_next)/(1−σ_s), noise = √((σ_next − σ_s)·(σ_next + keep·σ_s)/(1−σ_s)) and
    keep·x_s + noise·z where z enters (η > 0 and σ_next > 0; elsewhere both sides give x_s)."""
    x = fb.Bounded.exact(latents, JAX)
    one_minus = np.float32(1.0 - np.float64(eta))
    out = []
    for i in range(begin, len(timesteps)):
        sigma, sigma_next = x._of(np.float32(sigmas[i])), x._of(np.float32(sigmas[i + 1]))
        v = fb.toy_model(x, timesteps[i])
        s = x._of(one_minus) * sigma_next
        x_s = x + (s - sigma) * v
        if eta > 0 and sigmas[i + 1] > 0:
            keep = (1 - sigma_next) / (1 - s)
            spread = (sigma_next - s) * (sigma_next + keep * s) / (1 - s)
            x = keep * x_s + spread.sqrt() * x._of(noise_for_step(i))
        else:
            x = x_s
        out.append(x.err)
    return out


def assert_contract(actual, reference, what: str) -> float:
    """The issue's |Δ| ≤ 1e-5·(1 + max|reference|); returns max|Δ|/(1 + max|reference|)."""
    a = np.asarray(jnp.asarray(actual).astype(jnp.float32), dtype=np.float64)
    r = reference.to(torch.float64).numpy() if isinstance(reference, torch.Tensor) else reference
    rel = float(np.max(np.abs(a - r)) / (1.0 + np.max(np.abs(r))))
    assert rel <= CONTRACT, f"{what}: max|Δ|/(1 + max|ref|) = {rel:.3g}"
    return rel


def scheduler_run(config: dict, latents, key, eta, dtype="float32", int_t=False, **plan):
    """``FlaxFlowMatchTCDScheduler`` step by step (eager), as MaxDiffusion's loops call it: no
    key and no η to ``step`` (the state's), the state returned by ``step`` thrown away.
    ``int_t``: the timesteps passed as int32 arrays (Wan's loops cast them)."""
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler.from_config(config, eta=eta)
    state = scheduler.set_timesteps(scheduler.create_state(key=key), **plan)
    x = jnp.asarray(latents).astype(dtype)
    outputs = []
    for t in state.timesteps:
        t_in = t.astype(jnp.int32) if int_t else t
        x, same = scheduler.step(state, toy_model_jax(x, t), t_in, x, return_dict=False)
        assert same is state
        outputs.append(x)
    return outputs, state


def check_family(config, n, eta, seed, mu=None, compiled=True, int_t=False) -> float:
    """One example: the scheduler's every step and the compiled loop's result within the derived
    bounds and the contract; returns the worst |Δ|/bound."""
    latents, key = _latents(seed), jax.random.key(seed)
    plan = dict(num_inference_steps=n, mu=mu)
    ref = reference_run(config, latents, key, eta, **plan)
    assert ref.drawn == (list(range(n)) if eta > 0 else [])  # every step, the last included
    ours, state = scheduler_run(config, latents, key, eta, int_t=int_t, **plan)
    assert np.asarray(state.timesteps).tolist() == ref.timesteps
    worst = 0.0
    for i, (got, want) in enumerate(zip(ours, ref.outputs, strict=True)):
        assert got.dtype == jnp.float32
        worst = max(worst, assert_close(got, want, what=f"step {i}", bound=ref.bounds[i]))
        assert_contract(got, want, f"scheduler step {i}")
    if compiled:
        loop_plan = tcd_jax.flow_sampling_plan(config, n, mu=mu)
        assert np.asarray(loop_plan.timesteps).tolist() == ref.timesteps
        final = tcd_jax.sample(toy_model_jax, jnp.asarray(latents), key, loop_plan, eta)
        assert final.dtype == jnp.float32
        ratio = assert_close(final, ref.outputs[-1], what="compiled loop", bound=ref.bounds[-1])
        worst = max(worst, ratio)
        assert_contract(final, ref.outputs[-1], "compiled loop")
    return worst


# ------------------------------------------------------------------ parity with the torch scheduler
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_flux_config_matches_the_torch_scheduler(eta):
    """FLUX.1-dev's config (shift 3, dynamic shifting with μ), η ∈ {0, 0.3, 1}: the compiled loop
    and the Flax scheduler (every step, int32 timesteps as Wan's loops pass them) within the
    derived bound and the contract of ``FlowMatchTCDScheduler`` given the same noise."""
    check_family(FLUX, 4, eta, seed=7, mu=FLUX_MU)
    check_family(FLUX, 4, eta, seed=8, mu=0.5, compiled=False, int_t=True)


@st.composite
def flow_configs(draw) -> dict:
    """diffusers flow configs: static shifts, dynamic shifting, a terminal stretch, Karras."""
    config: dict = {"shift": draw(st.sampled_from([1.0, 3.0, 5.0]))}
    if draw(st.booleans()):
        config["use_dynamic_shifting"] = True
        config["time_shift_type"] = draw(st.sampled_from(["exponential", "linear"]))
    if draw(st.booleans()):
        config["shift_terminal"] = draw(st.sampled_from([0.02, 0.1]))
    elif draw(st.integers(0, 3)) == 0:
        config["use_karras_sigmas"] = True
    return config


#: η values that matter (the ends, the recommended 0.3, ones whose f32(1 − η) rounds unlike a
#: float32 η's) and arbitrary ones.
etas = st.one_of(
    st.sampled_from([0.0, 0.3, 0.33, 0.8, 1.0]),
    st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False),
)
FAMILY = dict(
    config=flow_configs(),
    n=st.sampled_from([1, 4, 4, 8]),
    eta=etas,
    seed=st.integers(0, 2**16),
)


def _family(example: dict, compiled: bool = True) -> float:
    config = example["config"]
    mu = 0.9 if config.get("use_dynamic_shifting") else None
    if config.get("shift_terminal") and example["n"] == 1:
        example = {**example, "n": 4}  # one default step is σ = 1: no terminal stretch exists
    return check_family(mu=mu, compiled=compiled, **example)


@settings(max_examples=examples(24))
@given(example=st.fixed_dictionaries(FAMILY))
def test_float32_flow_loop_matches_the_torch_scheduler(example):
    """Over configs, step counts, η and latents: every step of the scheduler and the compiled
    loop's result within the derived bound of the reference fed the same noise, which it draws at
    every step where η > 0 (the last included)."""
    _family(example)


def test_the_flow_bound_is_neither_violated_nor_vacuous():
    """Over the family above, the worst |Δ|/bound lies in [1/TIGHTNESS, 1]."""
    fb.assert_tight_over(_family, st.fixed_dictionaries(FAMILY), 12)


def test_per_batch_eta_and_keys_match_per_sample_reference_runs():
    """η per batch element with one key per element: each element equals the reference run
    alone at its η with its own noise, in the compiled loop and in the scheduler (η per element
    in its state); η = 0 elements are the Euler step."""
    etas_ = [0.0, 0.3, 1.0]
    latents = _latents(3, (3, 4, 8, 8))
    keys = jax.random.split(jax.random.key(3), 3)
    plan = tcd_jax.flow_sampling_plan(FLUX, 4, mu=FLUX_MU)
    batched = tcd_jax.sample(toy_model_jax, jnp.asarray(latents), keys, plan, etas_)
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(FLUX)
    state = scheduler.create_state(key=keys, eta=np.asarray(etas_))
    state = scheduler.set_timesteps(state, 4, shift=FLUX_MU)  # MaxDiffusion's μ
    x = jnp.asarray(latents)
    for t in state.timesteps:
        x = scheduler.step(state, toy_model_jax(x, t), t, x).prev_sample
    for b, eta in enumerate(etas_):
        element = latents[b : b + 1]
        noise = lambda i, b=b: np.asarray(
            tcd_jax.step_noise(keys[b], i, latents.shape[1:], "float32")
        )[None]
        ref = reference_run_with(FLUX, element, noise, eta, num_inference_steps=4, mu=FLUX_MU)
        for got in (batched[b : b + 1], x[b : b + 1]):
            assert_close(got, ref.outputs[-1], what=f"element {b}", bound=ref.bounds[-1])
            assert_contract(got, ref.outputs[-1], f"element {b}")


def reference_run_with(config, latents, noise_for_step, eta, **plan) -> Reference:
    """:func:`reference_run` with a given noise function (per-element keys)."""
    scheduler = FlowMatchTCDScheduler.from_config(config, eta=eta)
    scheduler.set_timesteps(**plan)
    x = torch.from_numpy(latents.copy())
    drawn: list[int] = []
    outputs = []
    with injected(scheduler, noise_for_step, drawn):
        for t in scheduler.timesteps:
            x = scheduler.step(toy_model_torch(x, t), t, x).prev_sample
            outputs.append(x)
    timesteps, sigmas = scheduler.timesteps.tolist(), scheduler.sigmas.tolist()
    bounds = flow_bounds(latents, timesteps, sigmas, eta, noise_for_step)
    return Reference(outputs, drawn, timesteps, sigmas, bounds)


@pytest.mark.parametrize("eta", [0.0, 0.3])
def test_bfloat16_latents_keep_their_dtype_and_match_the_reference(eta):
    """bfloat16 latents and velocities: the loop and the scheduler return bfloat16 (computing in
    float32), within bfloat16's tolerance of the torch scheduler (which rounds the velocity term
    to bfloat16) given the same bfloat16 noise."""
    latents, key = _latents(11), jax.random.key(11)
    ref = reference_run(FLUX, latents, key, eta, "bfloat16", num_inference_steps=4, mu=FLUX_MU)
    plan = tcd_jax.flow_sampling_plan(FLUX, 4, mu=FLUX_MU)
    x = jnp.asarray(latents).astype(jnp.bfloat16)
    final = tcd_jax.sample(toy_model_jax, x, key, plan, eta)
    ours, _ = scheduler_run(FLUX, latents, key, eta, "bfloat16", num_inference_steps=4, mu=FLUX_MU)
    for got in (final, ours[-1]):
        assert got.dtype == jnp.bfloat16
        assert_close(got, ref.outputs[-1], "bfloat16", what="bfloat16 run")


def test_begin_index_and_custom_sigmas_like_img2img():
    """img2img: a plan started at ``begin_index`` draws ``fold_in(key, begin_index + i)`` as the
    reference's step index says, and custom σ (a pipeline's ``sigmas=``) are diffusers' plan."""
    config, sigmas = {"shift": 3.0}, [1.0, 0.75, 0.5, 0.25]
    latents, key = _latents(5), jax.random.key(5)
    scheduler = FlowMatchTCDScheduler.from_config(config, eta=0.3)
    scheduler.set_timesteps(sigmas=sigmas)
    scheduler.set_begin_index(2)
    x = torch.from_numpy(latents.copy())
    drawn: list[int] = []
    with injected(scheduler, _noise(key, SHAPE), drawn):
        for t in scheduler.timesteps[2:]:
            x = scheduler.step(toy_model_torch(x, t), t, x).prev_sample
    assert drawn == [2, 3]
    plan = tcd_jax.flow_sampling_plan(config, sigmas=sigmas, begin_index=2)
    assert plan.begin_index == 2 and np.asarray(plan.final).tolist() == [False, True]
    got = tcd_jax.sample(toy_model_jax, jnp.asarray(latents), key, plan, 0.3)
    timesteps, all_sigmas = scheduler.timesteps.tolist(), scheduler.sigmas.tolist()
    bound = flow_bounds(latents, timesteps, all_sigmas, 0.3, _noise(key, SHAPE), begin=2)[-1]
    assert_close(got, x, what="begin_index 2", bound=bound)


def test_inverted_sigmas_run_the_euler_step_at_eta_zero():
    """``invert_sigmas`` (σ rising to 1) is defined only at η = 0, the Euler step: finite, equal
    to the reference; η > 0 is refused (next test)."""
    config = {"shift": 3.0, "invert_sigmas": True}
    latents, key = _latents(2), jax.random.key(2)
    ref = reference_run(config, latents, key, 0.0, num_inference_steps=4)
    plan = tcd_jax.flow_sampling_plan(config, 4)
    got = tcd_jax.sample(toy_model_jax, jnp.asarray(latents), key, plan, 0.0)
    assert_close(got, ref.outputs[-1], what="inverted", bound=ref.bounds[-1])
    ours, _ = scheduler_run(config, latents, key, 0.0, num_inference_steps=4)
    assert_close(ours[-1], ref.outputs[-1], what="inverted scheduler", bound=ref.bounds[-1])
    traced = jax.jit(lambda e: tcd_jax.sample(toy_model_jax, jnp.asarray(latents), key, plan, e))
    assert bool(jnp.isfinite(traced(jnp.float32(0.0))).all())


# ------------------------------------------------------------------ traces and programs
def test_one_trace_for_every_eta_key_and_plan_value():
    """η, the key, the latents and the plan's values (other μ, shifts, custom σ, begin index of
    the same length) are traced: one trace of the model for all of them, η = 0 included; the
    Flax scheduler in a jitted scan, with a new key and η in its state, also traces once."""
    traces = []

    def model(x, t):
        traces.append(1)
        return toy_model_jax(x, t)

    x = jnp.asarray(_latents(0))
    plans = [
        tcd_jax.flow_sampling_plan(FLUX, 4, mu=FLUX_MU),
        tcd_jax.flow_sampling_plan(FLUX, 4, mu=0.5),
        tcd_jax.flow_sampling_plan({"shift": 5.0, "shift_terminal": 0.1}, 4),
        tcd_jax.flow_sampling_plan(sigmas=[1.0, 0.9, 0.8, 0.7, 0.6], begin_index=1),
    ]
    for i, plan in enumerate(plans):
        for eta in (0.0, 0.3, 1.0, jnp.float32(0.5)):
            tcd_jax.sample(model, x, jax.random.key(i), plan, eta)
    assert len(traces) == 2  # one trace: the scan's body (traced once) and the last row
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(FLUX)
    scan_traces = []

    @jax.jit
    def run(x, state):
        scan_traces.append(1)

        def body(carry, t):
            x, state = carry
            return scheduler.step(state, toy_model_jax(x, t), t, x).to_tuple(), None

        return jax.lax.scan(body, (x, state), state.timesteps)[0][0]

    state = scheduler.set_timesteps(scheduler.create_state(), 4, mu=FLUX_MU)
    results = [
        run(x, state.replace(key=jax.random.key(k), eta=eta))
        for k, eta in ((0, 0.0), (1, 0.3), (2, 1.0), (3, 0.0))
    ]
    assert len(scan_traces) == 1
    assert bool((results[0] == results[3]).all())  # η = 0: the key does not matter
    assert not bool((results[1] == results[2]).all())


def test_flax_scheduler_in_the_ltx2_scan_equals_the_compiled_loop():
    """MaxDiffusion's LTX-2 loop: a ``lax.scan`` over the timesteps whose body calls ``step``
    with ``return_dict=False`` and throws the state away (the step finds its index from the
    timestep); with the state's key and η it equals the compiled loop with that key, to the
    float32 ulps of two XLA programs."""
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(FLUX, eta=0.3)
    key = jax.random.key(4)
    sigmas = jnp.linspace(1.0, 1.0 / 4, 4, dtype=jnp.float32)  # LTX-2's custom σ
    state = scheduler.set_timesteps_ltx2(
        scheduler.create_state(key=key), num_inference_steps=4, shift=FLUX_MU, sigmas=sigmas
    )
    x = jnp.asarray(_latents(4))

    def body(latents, t):
        latents_step, _ = scheduler.step(state, toy_model_jax(latents, t), t, latents, return_dict=False)  # fmt: skip
        return latents_step, None

    got = jax.jit(lambda x: jax.lax.scan(body, x, state.timesteps)[0])(x)
    plan = tcd_jax.flow_sampling_plan(FLUX, sigmas=np.asarray(sigmas), mu=FLUX_MU)
    assert np.array_equal(np.asarray(plan.timesteps), np.asarray(state.timesteps))
    want = tcd_jax.sample(toy_model_jax, x, key, plan, 0.3)
    scale = 1.0 + float(jnp.max(jnp.abs(want)))
    assert float(jnp.max(jnp.abs(got - want))) <= 16 * 2.0**-24 * scale


def test_both_maxdiffusion_entry_points_take_their_positional_order():
    """MaxDiffusion's ``set_timesteps(state, n, shape, denoising_strength, training, shift)`` and
    ``set_timesteps_ltx2(…, shift, timesteps, sigmas)``: one method serves both, called
    positionally as MaxDiffusion's loops may, with the same plan as the keyword call."""
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(FLUX, eta=0.3)
    names = list(inspect.signature(scheduler.set_timesteps_ltx2).parameters)
    assert names[:8] == [
        "state", "num_inference_steps", "shape", "denoising_strength", "training", "shift",
        "timesteps", "sigmas",
    ]  # fmt: skip
    sigmas = np.linspace(1.0, 1.0 / 4, 4, dtype=np.float32)
    state = scheduler.create_state()
    positional = scheduler.set_timesteps_ltx2(state, 4, (1, 4), 1.0, False, FLUX_MU, None, sigmas)
    keywords = scheduler.set_timesteps(state, 4, shift=FLUX_MU, sigmas=sigmas)
    for field in ("timesteps", "sigmas", "next_sigmas"):
        assert np.array_equal(getattr(positional, field), getattr(keywords, field)), field
    assert not np.array_equal(
        positional.sigmas, scheduler.set_timesteps(state, 4, shift=FLUX_MU).sigmas
    )  # the custom σ were used


def test_eta_zero_draws_nothing_and_is_the_euler_step():
    """η = 0 is the Euler step x + v·(σ_next − σ). The Flax scheduler in a ``lax.scan`` (the
    state thrown away, as LTX-2's loop does) equals, bit for bit, that step written as
    MaxDiffusion's ``FlaxFlowMatchScheduler`` writes it (``sample + model_output * (sigma_next -
    sigma)``, the index looked up from t) in the same scan. The compiled loop with η = 0 closed
    over by the caller's ``jit`` has no random bits and no conditional left, and agrees with it
    to XLA's rounding (another program: XLA fuses the steps in another order)."""
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(FLUX, eta=0.0)
    state = scheduler.set_timesteps(scheduler.create_state(), 4, shift=FLUX_MU)
    x0 = jnp.asarray(_latents(9))

    def ours(x, t):
        return scheduler.step(state, toy_model_jax(x, t), t, x, return_dict=False)[0], None

    def euler(x, t):
        i = jnp.argmin(jnp.abs(state.timesteps - t))
        return x + toy_model_jax(x, t) * (state.next_sigmas[i] - state.sigmas[i]), None

    scan = lambda body: jax.jit(lambda x: jax.lax.scan(body, x, state.timesteps)[0])(x0)
    want = scan(euler)
    assert bool((scan(ours) == want).all())
    plan = tcd_jax.flow_sampling_plan(FLUX, 4, mu=FLUX_MU)
    static = jax.jit(lambda x, k: tcd_jax.sample(toy_model_jax, x, k, plan, 0.0))
    hlo = static.lower(x0, jax.random.key(0)).compile().as_text()
    assert "threefry" not in hlo and " conditional(" not in hlo
    traced = jax.jit(lambda x, k, e: tcd_jax.sample(toy_model_jax, x, k, plan, e))
    scale = 1.0 + float(jnp.max(jnp.abs(want)))
    for got in (static(x0, jax.random.key(0)), traced(x0, jax.random.key(1), jnp.float32(0.0))):
        assert float(jnp.max(jnp.abs(got - want))) <= 16 * 2.0**-24 * scale


# ------------------------------------------------------------------ MaxDiffusion's convention
def test_maxdiffusion_calls_and_config():
    """What MaxDiffusion's pipelines call: ``from_pretrained(folder, subfolder=)`` → (scheduler,
    state), its constructor fields, ``config.get``/attributes, hashing (its LTX-2 loop passes
    ``scheduler.step`` as a static argument), ``set_timesteps(state, n, shape=…)`` and the
    time shift μ as ``shift=`` under dynamic shifting, ``denoising_strength``, ``to_final``,
    ``step_index``, ``add_noise``."""
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        sigma_max=1.0,
        sigma_min=0.003 / 1.002,  # MaxDiffusion's default: the shift-3 table's last σ
        inverse_timesteps=False,
        extra_one_step=False,
        reverse_sigmas=False,
        use_dynamic_shifting=False,
        dtype=jnp.float32,
    )
    assert scheduler.config.get("shift") == scheduler.config.shift == 3.0
    assert scheduler.config.eta == 0.3 and scheduler.has_state and len(scheduler) == 1000
    assert hash(scheduler) == hash(tcd_jax.FlaxFlowMatchTCDScheduler(shift=3.0))
    assert scheduler == tcd_jax.FlaxFlowMatchTCDScheduler(shift=3.0)
    state = scheduler.set_timesteps(scheduler.create_state(), 4, shape=SHAPE)
    host = flow_plan(FlowConfig(shift=3.0), 4)
    assert np.asarray(state.timesteps).tolist() == host.timesteps.tolist()
    assert np.asarray(state.sigmas).tolist() == host.sigmas[:-1].tolist()
    assert np.asarray(state.next_sigmas).tolist() == host.sigmas[1:].tolist()
    # dynamic shifting: μ given as MaxDiffusion's `shift` or as diffusers' `mu`
    flux = tcd_jax.FlaxFlowMatchTCDScheduler.from_config(FLUX)
    a = flux.set_timesteps(flux.create_state(), 4, shift=FLUX_MU)
    b = flux.set_timesteps(flux.create_state(), 4, mu=FLUX_MU)
    assert np.asarray(a.sigmas).tolist() == np.asarray(b.sigmas).tolist()
    assert (
        np.asarray(a.sigmas).tolist()
        == flow_plan(FlowConfig.from_config(FLUX), 4, mu=FLUX_MU).sigmas[:-1].tolist()
    )
    # denoising_strength: the grid starts at σ_min + (σ_max − σ_min)·strength
    weak = scheduler.set_timesteps(scheduler.create_state(), 4, denoising_strength=0.5)
    lo, hi = float(np.float32(0.003 / 1.002)), 1.0
    start = lo + (hi - lo) * 0.5
    expected = flow_plan(FlowConfig(shift=3.0), 4, sigmas=np.linspace(start, lo, 4)).sigmas
    assert np.asarray(weak.sigmas).tolist() == expected[:-1].tolist()
    # the step: index from the closest timestep, or given; to_final; the state unchanged
    x = jnp.asarray(_latents(1))
    v = toy_model_jax(x, state.timesteps[1])
    by_t = scheduler.step(state, v, state.timesteps[1] + 0.3, x)
    by_index = scheduler.step(state, v, 0.0, x, step_index=1)
    assert by_t.state is state
    assert bool((by_t.prev_sample == by_index.prev_sample).all())
    prev, same = by_t.to_tuple()
    assert prev is by_t.prev_sample and same is state
    final = scheduler.step(state, v, state.timesteps[1], x, to_final=True)
    euler_to_zero = np.asarray(x) - np.float32(state.sigmas[1]) * np.asarray(v)
    assert np.allclose(final.prev_sample, euler_to_zero, rtol=0, atol=1e-6)  # Euler to σ = 0
    # per-batch timesteps (Wan broadcasts t to the batch)
    per_batch = scheduler.step(state, v, jnp.broadcast_to(state.timesteps[1], (2,)), x)
    assert bool((per_batch.prev_sample == by_t.prev_sample).all())
    # add_noise: σ·noise + (1−σ)·x₀ at the timestep's σ, per batch element
    noise = jnp.ones_like(x)
    noised = scheduler.add_noise(state, x, noise, jnp.asarray([state.timesteps[0], state.timesteps[2]]))  # fmt: skip
    s2 = state.sigmas[2]
    assert bool((noised[0] == noise[0]).all())
    assert bool((noised[1] == s2 * noise[1] + (1.0 - s2) * x[1]).all())


def test_save_and_load_round_trip_through_the_torch_scheduler(tmp_path):
    """``save_pretrained`` writes diffusers' flow fields and ``eta`` as
    ``FlowMatchTCDScheduler``, which loads them; ``from_pretrained`` reads a model folder."""
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(FLUX, eta=0.5)
    path = scheduler.save_pretrained(tmp_path / "scheduler")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    assert data["_class_name"] == "FlowMatchTCDScheduler" and data["eta"] == 0.5
    torch_scheduler = FlowMatchTCDScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert torch_scheduler.config.eta == 0.5 and torch_scheduler.config.shift == 3.0
    loaded, state = tcd_jax.FlaxFlowMatchTCDScheduler.from_pretrained(tmp_path, subfolder="scheduler")  # fmt: skip
    assert loaded == scheduler
    assert state.timesteps is None and float(state.eta) == 0.5
    # MaxDiffusion's reverse_sigmas is diffusers' invert_sigmas
    reverse = tcd_jax.FlaxFlowMatchTCDScheduler(shift=3.0, reverse_sigmas=True, eta=0.0)
    assert reverse.config.invert_sigmas and reverse.flow_config.invert_sigmas


# ------------------------------------------------------------------ errors
def test_errors_name_their_argument():
    x = jnp.asarray(_latents(0))
    plan = tcd_jax.flow_sampling_plan(FLUX, 4, mu=FLUX_MU)
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="`eta`"):
            tcd_jax.sample(toy_model_jax, x, jax.random.key(0), plan, bad)
        with pytest.raises(ValueError, match="`eta`"):
            tcd_jax.FlaxFlowMatchTCDScheduler(eta=bad)
    with pytest.raises(ValueError, match="per-batch `eta` has 3 entries for a batch of 2"):
        tcd_jax.sample(toy_model_jax, x, jax.random.key(0), plan, [0.1, 0.2, 0.3])
    stacked = tcd_jax.stack_plans([plan] * 3)
    with pytest.raises(ValueError, match="plan has 3 columns for a batch of 2"):
        tcd_jax.sample(toy_model_jax, x, jax.random.key(0), stacked, 0.3)
    with pytest.raises(ValueError, match="flow plans or all VP plans"):
        tcd_jax.stack_plans([plan, tcd_jax.sampling_plan(num_inference_steps=4)])
    inverted = tcd_jax.flow_sampling_plan({"invert_sigmas": True}, 4)
    with pytest.raises(ValueError, match="`eta` must be 0 on a flow plan whose σ rise"):
        tcd_jax.sample(toy_model_jax, x, jax.random.key(0), inverted, 0.3)
    with pytest.raises(ValueError, match="`invert_sigmas=True`"):
        tcd_jax.FlaxFlowMatchTCDScheduler(invert_sigmas=True)  # the default η is 0.3
    with pytest.raises(ValueError, match="`eta` must be 0 with `invert_sigmas=True`"):
        tcd_jax.FlaxFlowMatchTCDScheduler(reverse_sigmas=True, eta=0.0).create_state(eta=0.5)
    with pytest.raises(ValueError, match="flow plan: LCM's boundary conditions"):
        tcd_jax.sample_lcm(toy_model_jax, x, jax.random.key(0), plan)
    with pytest.raises(ValueError, match="`prediction_type` 'v_prediction' has no meaning"):
        tcd_jax.sample(toy_model_jax, x, jax.random.key(0), plan, config=TCDConfig(prediction_type="v_prediction"))  # fmt: skip
    with pytest.raises(ValueError, match="`prediction_type` 'flow_prediction' has no meaning"):
        tcd_jax.sample(
            toy_model_jax,
            x,
            jax.random.key(0),
            tcd_jax.sampling_plan(num_inference_steps=4),
            config=TCDConfig(prediction_type="flow_prediction"),
        )
    with pytest.raises(ValueError, match="`mu` must be passed"):
        tcd_jax.flow_sampling_plan(FLUX, 4)
    with pytest.raises(ValueError, match="`config` must be"):
        tcd_jax.flow_sampling_plan("flux", 4)
    with pytest.raises(ValueError, match="`begin_index` must be in"):
        tcd_jax.flow_sampling_plan(FLUX, 4, mu=FLUX_MU, begin_index=4)
    scheduler = tcd_jax.FlaxFlowMatchTCDScheduler(FLUX)
    with pytest.raises(ValueError, match="call `set_timesteps`"):
        scheduler.step(scheduler.create_state(), x, 500.0, x)
    state = scheduler.set_timesteps(scheduler.create_state(), 4, mu=FLUX_MU)
    with pytest.raises(ValueError, match="`step_index` must be in"):
        scheduler.step(state, x, 500.0, x, step_index=4)
    with pytest.raises(ValueError, match="`model_output` must have the sample's shape"):
        scheduler.step(state, x[:1], 500.0, x)
    with pytest.raises(ValueError, match="`mu` or MaxDiffusion's `shift`"):
        scheduler.set_timesteps(state, 4, shift=1.0, mu=1.0)
    with pytest.raises(ValueError, match="`training=True`"):
        scheduler.set_timesteps(state, 4, training=True, mu=1.0)
    with pytest.raises(ValueError, match="`denoising_strength` must be in"):
        scheduler.set_timesteps(state, 4, denoising_strength=0.0, mu=1.0)
    for field in ("inverse_timesteps", "extra_one_step"):
        with pytest.raises(ValueError, match=f"`{field}=True`"):
            tcd_jax.FlaxFlowMatchTCDScheduler(**{field: True})
    with pytest.raises(ValueError, match="`sigma_min` must be the training σ table's end"):
        tcd_jax.FlaxFlowMatchTCDScheduler(shift=1.0, sigma_min=0.003 / 1.002)
    with pytest.raises(ValueError, match="`stochastic_sampling=True` is TCD's eta=1"):
        tcd_jax.FlaxFlowMatchTCDScheduler(stochastic_sampling=True, eta=0.3)
    with pytest.raises(ValueError, match=r"unknown FlaxFlowMatchTCDScheduler field\(s\)"):
        tcd_jax.FlaxFlowMatchTCDScheduler(shfit=3.0)
    with pytest.raises(ValueError, match="`shift`"):
        tcd_jax.FlaxFlowMatchTCDScheduler(shift=0.0)


# ------------------------------------------------------------------ sharding
@pytest.mark.slow
def test_sharded_flow_batches_equal_the_unsharded_run():
    """On 8 host CPU devices (a subprocess, ``sharding_flow_check.py``): the flow loop and the
    Flax scheduler on sharded batches equal one device and keep their sharding."""
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()  # fmt: skip
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, os.path.join(here, "sharding_flow_check.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {
        "loop/one_key/1d": "equal",
        "loop/one_key/2d": "equal",
        "loop/per_sample_keys_and_eta/1d": "equal",
        "scheduler/2d": "equal",
    }, report
