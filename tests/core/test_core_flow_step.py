"""TCD on the flow path (issue 18): the maths pinned, both ends bit-identical to diffusers'
``FlowMatchEulerDiscreteScheduler`` (η = 0: its Euler step; η = 1: its stochastic step), the γ
between within 1e-5·(1+max|ref|) of a float64 implementation on the same noise, the other
prediction types through the path's (a, b), compile-friendliness and the errors.

The flow path is x_σ = (1−σ)·x₀ + σ·ε and the model predicts v = ε − x₀. One step from σ to σ_next:
σ_s = f32(1−η)·σ_next, x_s = x + (σ_s − σ)·v, x_next = a·x_s + √(σ_next² − a²·σ_s²)·z with
a = (1−σ_next)/(1−σ_s).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from tcd_core import (
    FLOW,
    LCM,
    TCD,
    FlowPath,
    TCDConfig,
    alphas_cumprod,
    coefficients,
    intermediate_level,
    step,
)

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def float64_step(v, x, z, sigma, sigma_next, eta):
    """The issue's maths in float64, from the same float32 inputs; σ_s rounded as the core and
    the reference round it (f32(1−η)·σ_next in float32), the rest in double."""
    s = float(np.float32(np.float32(1.0 - eta) * np.float32(sigma_next)))
    sigma, sigma_next = float(sigma), float(sigma_next)
    v, x = np.asarray(v, np.float64), np.asarray(x, np.float64)
    x_s = x + (s - sigma) * v
    if s == sigma_next:  # the identity transition (σ_s = σ_next = 1 included, where a is 0/0)
        return x_s
    a = (1 - sigma_next) / (1 - s)
    return a * x_s + np.sqrt(max(sigma_next**2 - a**2 * s**2, 0.0)) * np.asarray(z, np.float64)


# σ in [0, 1], away from float32 underflow (σ² of a σ below ~1e-19 is 0 in float32): plans
# reach 0 exactly, never a denormal neighbourhood of it
sigmas = st.one_of(st.just(0.0), st.floats(2.0**-20, 1.0, width=32))


@st.composite
def flow_steps(draw, small_eta=False):
    """(σ, σ_next ≤ σ, η, seed): η anywhere in [0, 1], or tiny (where a difference of squares
    would cancel)."""
    a, b = draw(sigmas), draw(sigmas)
    sigma, sigma_next = max(a, b), min(a, b)
    if small_eta:
        eta = draw(st.floats(1e-8, 1e-3))
    else:
        eta = draw(st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.3, 0.5])))
    return sigma, sigma_next, eta, draw(st.integers(0, 2**31 - 1))


def _arrays(seed, shape=(2, 3, 8)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]


# ------------------------------------------------------------------ the maths, pinned
def test_intermediate_sigma_is_the_float32_product_without_a_floor():
    assert float(intermediate_level(0.75, 0.5)) == 0.375
    assert intermediate_level(np.float32(0.3), 0.3) == np.float32(0.7) * np.float32(0.3)
    assert float(intermediate_level(0.8, 0.0)) == np.float32(0.8)  # η = 0: s = p exactly
    assert float(intermediate_level(0.8, 1.0)) == 0.0  # η = 1: s = 0


def test_transition_at_the_ends_is_the_euler_and_the_stochastic_step():
    xp = FLOW.namespace()[0]
    f32 = np.float32
    for to in map(f32, (0.0, 0.1, 0.3, 0.7, 0.999, 1.0)):
        assert FLOW.transition(to, to, xp) == (1.0, 0.0)  # η = 0: identity (σ = 1: not 0/0)
        keep, noise = FLOW.transition(f32(0.0), to, xp)  # η = 1: from the data end
        assert keep == 1 - to and noise == to  # √(σ²) is σ, bit for bit
    keep, noise = FLOW.transition(f32(0.25), f32(0.5), xp)
    assert keep == f32(0.5 / 0.75)
    assert abs(float(noise) - np.sqrt(0.25 - (0.5 / 0.75) ** 2 * 0.0625)) < 1e-7


def test_eta_one_is_the_stochastic_euler_step_and_the_flow_lcm_step():
    v, x, z = _arrays(0)
    out = step(TCD, v, np.float32(0.6), x, np.float32(0.25), FLOW, eta=1.0, noise=z)
    x0 = x.astype(np.float64) - 0.6 * v.astype(np.float64)
    want = 0.75 * x0 + 0.25 * z.astype(np.float64)
    np.testing.assert_allclose(out.next_sample, want, atol=4e-7 * (1 + np.abs(want).max()))
    np.testing.assert_array_equal(out.pred_original_sample, x - np.float32(0.6) * v)


# ------------------------------------------------------------------ against the reference
@settings(max_examples=examples(40))
@given(
    st.sampled_from(sorted(TORCH_DTYPES)),
    st.booleans(),
    st.integers(1, 8),
    st.floats(1.0, 6.0),
    st.integers(0, 2**31 - 1),
)
def test_both_ends_bit_identical_to_flow_match_euler(dtype_name, stochastic, steps, shift, seed):
    """η = 0: the Euler step; η = 1: the stochastic step with the reference's own noise; every
    step of a whole plan, in the reference's dtypes (sample upcast to float32, output in the
    model output's dtype)."""
    dtype = TORCH_DTYPES[dtype_name]
    ref = FlowMatchEulerDiscreteScheduler(shift=shift, stochastic_sampling=stochastic)
    ref.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 16, 4, generator=g).to(dtype)
    twin = torch.Generator().manual_seed(seed + 1)
    g.manual_seed(seed + 1)
    for i, t in enumerate(ref.timesteps):
        v = (0.5 * x.float() + 0.2).to(dtype)
        want = ref.step(v, t, x, generator=g).prev_sample
        z = torch.randn(x.shape, generator=twin) if stochastic else None
        got = step(
            TCD, v, ref.sigmas[i], x.to(torch.float32), ref.sigmas[i + 1], FLOW,
            eta=1.0 if stochastic else 0.0, noise=z,
        ).next_sample.to(v.dtype)  # fmt: skip
        assert torch.equal(got, want), (dtype_name, stochastic, i)
        x = want


@settings(max_examples=examples(60))
@given(flow_steps())
def test_between_the_ends_within_1e5_of_float64(case):
    sigma, sigma_next, eta, seed = case
    v, x, z = _arrays(seed)
    want = float64_step(v, x, z, sigma, sigma_next, eta)
    for backend in ("numpy", "torch"):
        args = [torch.from_numpy(a) for a in (v, x, z)] if backend == "torch" else [v, x, z]
        out = step(TCD, args[0], sigma, args[1], sigma_next, FLOW, eta=eta, noise=args[2])
        got = np.asarray(out.next_sample, dtype=np.float64)
        assert got.dtype == np.float64 and out.next_sample.dtype in (np.float32, torch.float32)
        assert np.abs(got - want).max() <= 1e-5 * (1 + np.abs(want).max()), backend


@settings(max_examples=examples(40))
@given(flow_steps(small_eta=True))
def test_small_eta_keeps_its_digits(case):
    """The re-noising coefficient √(σ_next² − a²·σ_s²) for small η: written as a difference of
    squares it would lose most of float32's digits (an error of ~√u·σ); the core's product form
    keeps it within a few ulps of the float64 value."""
    _, sigma_next, eta, _ = case
    s = np.float32(np.float32(1.0 - eta) * np.float32(sigma_next))
    a = (1 - float(sigma_next)) / (1 - float(s))
    want = np.sqrt(max(float(sigma_next) ** 2 - a**2 * float(s) ** 2, 0.0))
    _, noise = FLOW.transition(s, np.float32(sigma_next), FLOW.namespace()[0])
    assert abs(float(noise) - want) <= 8 * 2.0**-24 * max(float(sigma_next), 1e-30)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_other_prediction_types_give_the_same_step(prediction_type):
    """ε and x̂₀ outputs through the flow path's (a, b) = (1−σ, σ): for a model output that
    describes the same (x₀, ε), the same next sample as the velocity's (up to rounding)."""
    x0, eps, z = (a.astype(np.float64) for a in _arrays(3))
    sigma, sigma_next = 0.8, 0.4
    x = ((1 - sigma) * x0 + sigma * eps).astype(np.float32)
    outputs = {"flow_prediction": eps - x0, "epsilon": eps, "sample": x0}
    results = {}
    for name in ("flow_prediction", prediction_type):
        config = TCDConfig(prediction_type=name)
        m = outputs[name].astype(np.float32)
        results[name] = step(
            TCD, m, sigma, x, sigma_next, FLOW, eta=0.4, noise=z.astype(np.float32), config=config
        ).next_sample
    np.testing.assert_allclose(results[prediction_type], results["flow_prediction"], atol=2e-5)


def test_clipping_on_the_flow_path_acts_on_x0():
    """With clipping, the velocity's step goes through x̂₀ (the general form); a clip range
    that contains x̂₀ changes nothing beyond rounding, one that cuts it does."""
    v, x, z = _arrays(4)
    plain = step(TCD, v, 0.9, x, 0.5, FLOW, eta=0.3, noise=z).next_sample
    wide = TCDConfig(prediction_type="flow_prediction", clip_sample=True, clip_sample_range=1e3)
    narrow = TCDConfig(prediction_type="flow_prediction", clip_sample=True, clip_sample_range=0.1)
    got = step(TCD, v, 0.9, x, 0.5, FLOW, eta=0.3, noise=z, config=wide).next_sample
    np.testing.assert_allclose(got, plain, atol=1e-5)
    cut = step(TCD, v, 0.9, x, 0.5, FLOW, eta=0.3, noise=z, config=narrow)
    assert np.abs(cut.pred_original_sample).max() <= np.float32(0.1)
    assert not np.allclose(cut.next_sample, plain, atol=1e-3)


# ------------------------------------------------------------------ compile-friendliness
def test_jax_jit_one_trace_for_every_sigma_and_eta():
    traces = []

    @jax.jit
    def jitted(v, sigma, x, sigma_next, eta, z):
        traces.append(1)
        return step(TCD, v, sigma, x, sigma_next, FLOW, eta=eta, noise=z).next_sample

    v, x, z = _arrays(5)
    for sigma, sigma_next, eta in [(1.0, 0.75, 0.3), (0.75, 0.5, 0.0), (0.5, 0.0, 1.0)]:
        got = jitted(v, jnp.float32(sigma), x, jnp.float32(sigma_next), jnp.float32(eta), z)
        want = float64_step(v, x, z, sigma, sigma_next, eta)
        assert np.abs(np.asarray(got, np.float64) - want).max() <= 1e-5 * (1 + np.abs(want).max())
    assert len(traces) == 1


def test_per_batch_sigmas_and_eta():
    v, x, z = _arrays(6)
    sig, nxt, eta = np.float32([0.9, 0.6]), np.float32([0.5, 0.1]), np.asarray([0.2, 0.9])
    out = step(TCD, v, sig, x, nxt, FLOW, eta=eta, noise=z).next_sample
    for b in range(2):
        want = float64_step(v[b], x[b], z[b], sig[b], nxt[b], eta[b])
        assert np.abs(out[b] - want).max() <= 1e-5 * (1 + np.abs(want).max())


def test_torch_compile_fullgraph_equals_eager():
    v, x, z = (torch.from_numpy(a) for a in _arrays(7))
    sigma, sigma_next = torch.tensor(0.8), torch.tensor(0.3)

    def one(v, sigma, x, sigma_next, z):
        return step(TCD, v, sigma, x, sigma_next, FLOW, eta=0.3, noise=z).next_sample

    compiled = torch.compile(one, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(
        compiled(v, sigma, x, sigma_next, z), one(v, sigma, x, sigma_next, z)
    )


# ------------------------------------------------------------------ errors
def test_errors_name_the_argument():
    v, x, z = _arrays(8)
    with pytest.raises(ValueError, match="`timestep` must be a σ in \\[0, 1\\]"):
        step(TCD, v, 999.0, x, 0.5, FLOW, eta=0.3, noise=z)
    with pytest.raises(ValueError, match=r"`next_timestep` .* must not exceed `timestep`"):
        step(TCD, v, 0.5, x, 0.7, FLOW, eta=0.3, noise=z)
    with pytest.raises(TypeError, match="`timestep` must be a σ"):
        step(TCD, v, np.asarray([999, 759]), x, 0.5, FLOW, eta=0.3, noise=z)
    with pytest.raises(ValueError, match="`noise` is required"):
        step(TCD, v, 0.9, x, 0.5, FLOW, eta=0.3)
    with pytest.raises(ValueError, match="`eta` must be in \\[0, 1\\]"):
        step(TCD, v, 0.9, x, 0.5, FLOW, eta=1.5, noise=z)
    with pytest.raises(ValueError, match=r"LCM's boundary conditions .* not on the flow path"):
        step(LCM, v, 0.9, x, 0.5, FLOW, final=True)
    with pytest.raises(ValueError, match="not on the flow path"):
        coefficients(LCM, FlowPath(), 0.9, 0.5)
    with pytest.raises(ValueError, match="`prediction_type` 'v_prediction' has no meaning on the"):
        vp_v = TCDConfig(prediction_type="v_prediction")
        step(TCD, v, 0.9, x, 0.5, FLOW, eta=0.3, noise=z, config=vp_v)
    ac = alphas_cumprod(TCDConfig())
    flow = TCDConfig(prediction_type="flow_prediction")
    with pytest.raises(ValueError, match="'flow_prediction' has no meaning on the VP path"):
        step(TCD, v, 999, x, 759, ac, eta=0.3, noise=z, config=flow)
    # no error where η = 0 or σ_next = 0: the noise term is exactly zero there
    step(TCD, v, 0.9, x, 0.5, FLOW, eta=0.0)
    step(TCD, v, 0.9, x, 0.0, FLOW, eta=0.3)
