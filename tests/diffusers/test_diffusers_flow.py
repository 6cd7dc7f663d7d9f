"""``tcd_diffusers.FlowMatchTCDScheduler`` against diffusers' ``FlowMatchEulerDiscreteScheduler``
(issue 18): the same plans and the same forward process; η = 0 its Euler step bit for bit; η = 1
its stochastic step bit for bit, generator state included; the γ between within
1e-5·(1+max|ref|) of a float64 implementation on the same noise; the config round trip, the held
generator, and the errors. Real pipelines: test_diffusers_flow_pipelines.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from tcd_diffusers import FlowMatchTCDScheduler

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@st.composite
def configs(draw):
    """Euler scheduler configs over every option the plans take (at most one σ conversion)."""
    config = {"shift": draw(st.sampled_from([1.0, 3.0, draw(st.floats(0.5, 8.0))]))}
    if draw(st.booleans()):
        config["use_dynamic_shifting"] = True
        config["time_shift_type"] = draw(st.sampled_from(["exponential", "linear"]))
    if draw(st.booleans()):
        config["shift_terminal"] = draw(st.floats(0.01, 0.5))
    conversion = draw(st.sampled_from([None, "karras", "exponential", "beta"]))
    if conversion:
        config[f"use_{conversion}_sigmas"] = True
    return config


@st.composite
def set_timesteps_calls(draw, config):
    """(kwargs of set_timesteps): a step count, custom σ, custom timesteps, or both; ``mu`` when
    the config shifts dynamically (positive: the linear shift's mu must be)."""
    n = draw(st.integers(1, 12))
    kwargs: dict = {}
    form = draw(st.sampled_from(["steps", "sigmas", "timesteps", "both"]))
    # distinct values: a repeated timestep sends the reference's first index_for_timestep to the
    # second match (and its loop off the end of the plan), so plans repeat none
    distinct = st.lists(st.integers(50, 1000), min_size=n, max_size=n, unique=True)
    if form in ("sigmas", "both"):
        kwargs["sigmas"] = [k / 1000 for k in sorted(draw(distinct), reverse=True)]
    if form in ("timesteps", "both"):
        kwargs["timesteps"] = [float(k) for k in sorted(draw(distinct), reverse=True)]
    if form == "steps" or draw(st.booleans()):
        kwargs["num_inference_steps"] = n
    if config.get("use_dynamic_shifting"):
        kwargs["mu"] = draw(st.floats(0.1, 2.0))
    return kwargs


def _planned(*schedulers, **call) -> bool:
    """``set_timesteps(**call)`` on the reference, then ours. False where ours refuses the plan
    (a ValueError naming the argument), which is only allowed where the reference's plan is
    nonsense: an exception, non-finite σ, or σ outside [0, 1] beyond rounding."""
    ref, *ours = schedulers
    try:
        ref.set_timesteps(**call)
        sane = bool(torch.isfinite(ref.sigmas).all()) and bool(
            ((ref.sigmas >= -(2.0**-10)) & (ref.sigmas <= 1 + 2.0**-10)).all()
        )
    except Exception:
        sane = False
    try:
        for scheduler in ours:
            scheduler.set_timesteps(**call)
    except ValueError:
        assert not sane, f"refused a plan the reference computes: {call}"
        return False
    return True


def _pair(config, eta, **extra):
    ref = FlowMatchEulerDiscreteScheduler(**config, stochastic_sampling=eta == 1.0, **extra)
    return ref, FlowMatchTCDScheduler.from_config(ref.config, eta=eta)


def _velocity(x):
    """A fixed, nonlinear stand-in for the transformer (in the sample's dtype)."""
    return (0.6 * torch.tanh(x.float()) - 0.2 * x.float() + 0.1).to(x.dtype)


# ------------------------------------------------------------------ plans and the forward process
@settings(max_examples=examples(60))
@given(st.data())
def test_plans_are_the_references_bit_for_bit(data):
    config = data.draw(configs())
    call = data.draw(set_timesteps_calls(config))
    ref, ours = _pair(config, 0.3 if not config.get("invert_sigmas") else 0.0)
    assume(_planned(ref, ours, **call))
    for name in ("timesteps", "sigmas"):
        want, got = getattr(ref, name), getattr(ours, name)
        assert got.dtype == want.dtype and torch.equal(got, want), name
    assert ours.num_inference_steps == ref.num_inference_steps
    assert (ours.sigma_min, ours.sigma_max) == (ref.sigma_min, ref.sigma_max)


def test_set_shift_and_the_untouched_scheduler_match_the_reference():
    ref, ours = _pair({"shift": 3.0}, 0.3)
    assert torch.equal(ours.sigmas, ref.sigmas) and torch.equal(ours.timesteps, ref.timesteps)
    ref.set_shift(5.0)
    ours.set_shift(5.0)
    assert ours.shift == ref.shift == 5.0
    ref.set_timesteps(6)
    ours.set_timesteps(6)
    assert torch.equal(ours.sigmas, ref.sigmas) and torch.equal(ours.timesteps, ref.timesteps)


@pytest.mark.parametrize("begin", [None, 0, 2])
def test_scale_noise_is_the_references(begin):
    ref, ours = _pair({"shift": 3.0}, 0.3)
    for s in (ref, ours):
        s.set_timesteps(5)
        if begin is not None:
            s.set_begin_index(begin)
    g = torch.Generator().manual_seed(0)
    sample, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = ref.timesteps[begin or 1].repeat(2)
    assert torch.equal(ours.scale_noise(sample, t, noise), ref.scale_noise(sample, t, noise))


# ------------------------------------------------------------------ the step
@settings(max_examples=examples(40))
@given(
    st.data(),
    st.sampled_from(sorted(DTYPES)),
    st.sampled_from([0.0, 1.0]),
    st.integers(0, 2**31 - 1),
)
def test_the_ends_are_euler_and_stochastic_euler_bit_for_bit(data, dtype_name, eta, seed):
    """A whole plan: every prev_sample equal, the generator's state equal afterwards, the same
    output dtype (the model output's)."""
    config = data.draw(configs())
    call = data.draw(set_timesteps_calls(config))
    ref, ours = _pair(config, eta)
    assume(_planned(ref, ours, **call))
    dtype = DTYPES[dtype_name]
    x = torch.randn(2, 16, 4, generator=torch.Generator().manual_seed(seed)).to(dtype)
    g_ref, g_ours = (torch.Generator().manual_seed(seed + 1) for _ in range(2))
    a = b = x
    for t in ref.timesteps:
        a = ref.step(_velocity(a), t, a, generator=g_ref).prev_sample
        b = ours.step(_velocity(b), t, b, generator=g_ours).prev_sample
        assert b.dtype == a.dtype and torch.equal(a, b)
    assert torch.equal(g_ref.get_state(), g_ours.get_state())
    assert ours.step_index == ref.step_index


@settings(max_examples=examples(40))
@given(st.data(), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_between_the_ends_within_1e5_of_float64(data, eta, seed):
    """Step by step against the issue's maths in float64, on the noise the scheduler drew
    (replayed from a twin generator: one randn of the sample's shape per step, η > 0)."""
    config = data.draw(configs())
    call = data.draw(set_timesteps_calls(config))
    ours = FlowMatchTCDScheduler(**config, eta=eta)
    assume(_planned(FlowMatchEulerDiscreteScheduler(**config), ours, **call))
    x = torch.randn(1, 32, 8, generator=torch.Generator().manual_seed(seed))
    g, twin = (torch.Generator().manual_seed(seed + 1) for _ in range(2))
    sigmas = ours.sigmas.double()
    for i, t in enumerate(ours.timesteps):
        v = _velocity(x)
        out = ours.step(v, t, x, generator=g).prev_sample
        z = torch.randn(x.shape, generator=twin).double() if eta > 0 else 0.0
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        s = float(np.float32(np.float32(1.0 - eta) * np.float32(sigma_next)))
        x_s = x.double() + (s - sigma) * v.double()
        if s == sigma_next:  # the identity transition (also where σ_s = σ_next = 1)
            want = x_s
        else:
            a = (1 - sigma_next) / (1 - s)
            want = a * x_s + torch.sqrt(torch.clamp(sigma_next**2 - a**2 * s**2, min=0)) * z
        scale = 1 + want.abs().max().item()
        assert (out.double() - want).abs().max().item() <= 1e-5 * scale, (i, eta)
        x = out
    assert torch.equal(g.get_state(), twin.get_state())  # one draw per step when η > 0


def test_eta_argument_overrides_the_config_for_one_step():
    ref, ours = _pair({"shift": 3.0}, 0.0)
    for s in (ref, ours):
        s.set_timesteps(4)
    x = torch.randn(1, 16, 4, generator=torch.Generator().manual_seed(0))
    t = ref.timesteps[0]
    stochastic = FlowMatchEulerDiscreteScheduler(shift=3.0, stochastic_sampling=True)
    stochastic.set_timesteps(4)
    want = stochastic.step(_velocity(x), t, x, generator=torch.Generator().manual_seed(1))
    got = ours.step(_velocity(x), t, x, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(got.prev_sample, want.prev_sample)
    assert ours.config.eta == 0.0


def test_a_held_generator_is_used_when_step_gets_none():
    """scheduler.generator: reproducible step noise without touching the global RNG; the global
    RNG stays the default (so η = 1 is stochastic Euler in pipelines), a step's generator wins."""

    def run(held_seed, global_seed, step_generator=None):
        s = FlowMatchTCDScheduler(shift=3.0, eta=0.5)
        s.set_timesteps(4)
        if held_seed is not None:
            s.generator = torch.Generator().manual_seed(held_seed)
        torch.manual_seed(global_seed)
        x = torch.ones(1, 8, 4)
        for t in s.timesteps:
            x = s.step(_velocity(x), t, x, generator=step_generator).prev_sample
        return x

    with torch.random.fork_rng():
        assert torch.equal(run(3, 10), run(3, 11))
        assert not torch.equal(run(3, 10), run(4, 10))
        assert not torch.equal(run(None, 10), run(None, 11))
        given_ = [run(3, 10, torch.Generator().manual_seed(9)) for _ in range(2)]
        assert torch.equal(*given_) and not torch.equal(given_[0], run(3, 10))


def test_config_round_trip_and_from_config_of_a_pipeline_scheduler(tmp_path):
    euler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    ours = FlowMatchTCDScheduler.from_config(euler.config, eta=0.4)
    assert ours.config.eta == 0.4 and ours.config.use_dynamic_shifting
    assert FlowMatchTCDScheduler.from_config(euler.config).config.eta == 0.3  # the default
    ours.save_pretrained(tmp_path)
    again = FlowMatchTCDScheduler.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
    assert public(again.config) == public(ours.config)
    back = FlowMatchEulerDiscreteScheduler.from_config(ours.config)
    assert back.config.shift == 3.0
    assert FlowMatchTCDScheduler.from_config(
        FlowMatchEulerDiscreteScheduler(stochastic_sampling=True).config, eta=1.0
    ).config.stochastic_sampling


def test_begin_index_and_index_for_timestep():
    ref, ours = _pair({"shift": 3.0}, 0.0)
    for s in (ref, ours):
        s.set_timesteps(6)
    for t in ref.timesteps:
        assert ours.index_for_timestep(t) == ref.index_for_timestep(t)
    ours.set_begin_index(2)
    x = torch.zeros(1, 4, 4)
    ours.step(_velocity(x), ours.timesteps[2], x)
    assert ours.step_index == 3 and ours.begin_index == 2


# ------------------------------------------------------------------ errors
def test_errors_are_clear():
    with pytest.raises(ValueError, match="`eta` must be in"):
        FlowMatchTCDScheduler(eta=1.5)
    with pytest.raises(ValueError, match="stochastic_sampling=True` is TCD's eta=1"):
        FlowMatchTCDScheduler(stochastic_sampling=True)
    with pytest.raises(ValueError, match="invert_sigmas=True"):
        FlowMatchTCDScheduler(invert_sigmas=True, eta=0.3)
    s = FlowMatchTCDScheduler(shift=3.0, eta=0.3)
    x = torch.zeros(1, 4, 4)
    with pytest.raises(ValueError, match="call `set_timesteps` before `step`"):
        s.step(x, 1000.0, x)
    s.set_timesteps(2)
    with pytest.raises(ValueError, match="integer indices"):
        s.step(x, 0, x)
    with pytest.raises(ValueError, match="is not in the timestep schedule"):
        s.step(x, 123.5, x)
    with pytest.raises(ValueError, match="`eta` must be in"):
        s.step(x, s.timesteps[0], x, eta=-0.1)
    with pytest.raises(TypeError, match=r"`model_output` must be a torch\.Tensor"):
        s.step(x.numpy(), s.timesteps[0], x)
    for t in s.timesteps:
        x = s.step(x, t, x).prev_sample
    with pytest.raises(ValueError, match="past the plan's last step"):
        s.step(x, s.timesteps[-1], x)
    with pytest.raises(ValueError, match=r"`shift` must be in \[0.01, "):
        s.set_shift(0.0)
    with pytest.raises(ValueError, match="`begin_index` must be an integer >= 0"):
        s.set_begin_index(-1)
    with pytest.raises(ValueError, match="`mu` must be passed"):
        FlowMatchTCDScheduler(use_dynamic_shifting=True).set_timesteps(4)


def test_the_plan_cache_is_invisible():
    """set_timesteps caches the host plan per call: each call still gets tensors of its own, a
    changed shift or config plans anew, and the reference's timesteps-only warning is logged at
    every call, as the reference logs it."""
    import logging

    ref, ours = _pair({"shift": 3.0}, 0.3)
    sigmas = np.linspace(1, 0.25, 4)
    ours.set_timesteps(sigmas=sigmas)
    first = ours.timesteps
    first.fill_(0.0)  # a caller writing into the tensor it was given
    ours.set_timesteps(sigmas=sigmas)
    ref.set_timesteps(sigmas=sigmas)
    assert ours.timesteps is not first and torch.equal(ours.timesteps, ref.timesteps)
    for s in (ref, ours):
        s.set_shift(5.0)
        s.set_timesteps(sigmas=sigmas)
    assert torch.equal(ours.sigmas, ref.sigmas)
    other = FlowMatchTCDScheduler.from_config(ours.config, shift=2.0)
    reference = FlowMatchEulerDiscreteScheduler(shift=2.0)
    other.set_timesteps(sigmas=sigmas)
    reference.set_timesteps(sigmas=sigmas)
    assert torch.equal(other.sigmas, reference.sigmas)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tcd_core")
    logger.addHandler(handler)
    try:
        for _ in range(2):
            ours.set_timesteps(timesteps=[900.0, 500.0])
    finally:
        logger.removeHandler(handler)
    assert sum("were passed without `sigmas`" in r.getMessage() for r in records) == 2
