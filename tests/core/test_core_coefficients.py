"""The split of the step into its 0-d coefficients and its tensor-sized update."""

import array_api_compat
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tcd_core
from tcd_core import (
    TCDConfig,
    alphas_cumprod,
    intermediate_timestep,
    step_coefficients,
    tcd_step,
    tcd_update,
)


@given(
    p=st.integers(0, 999),
    eta=st.floats(0.0, 1.0, allow_nan=False),
)
def test_one_minus_eta_under_jit_keeps_the_reference_rounding(p, eta):
    """A host f32(1 - eta) passed into a jitted function gives the host (reference) s."""
    expected = int(intermediate_timestep(p, eta))
    traced = jax.jit(lambda q, om: intermediate_timestep(q, one_minus_eta=om))
    got = traced(jnp.asarray(p), jnp.asarray(np.float32(1.0 - eta)))
    assert int(got) == expected


def test_float32_eta_array_can_round_differently_which_is_why_one_minus_eta_exists():
    # eta = 0.33: f32(1 - f32(0.33)) != f32(1 - 0.33) changes floor(. * p) for some p.
    diffs = [
        p
        for p in range(1, 1000)
        for eta in (0.33, 0.8)
        if int(intermediate_timestep(jnp.asarray(p), jnp.float32(eta)))
        != int(intermediate_timestep(p, eta))
    ]
    assert diffs, "expected at least one (p, eta) where float32 eta rounds differently"


def test_exactly_one_of_eta_and_one_minus_eta():
    with pytest.raises(ValueError, match="exactly one"):
        intermediate_timestep(10)
    with pytest.raises(ValueError, match="exactly one"):
        intermediate_timestep(10, 0.3, one_minus_eta=np.float32(0.7))
    ac = alphas_cumprod(TCDConfig())
    with pytest.raises(ValueError, match="exactly one"):
        step_coefficients(ac, 999, 759)
    with pytest.raises(ValueError, match="eta"):
        step_coefficients(ac, 999, 759, eta=1.5)


@given(
    t_index=st.integers(0, 7),
    eta=st.floats(0.0, 1.0, allow_nan=False),
    prediction_type=st.sampled_from(tcd_core.PREDICTION_TYPES),
)
def test_coefficients_then_update_is_the_step_bit_for_bit_on_torch(t_index, eta, prediction_type):
    cfg = TCDConfig(prediction_type=prediction_type)
    ac = alphas_cumprod(cfg, torch)
    plan = tcd_core.tcd_timesteps(cfg, 8)
    t, p = int(plan.timesteps[t_index]), int(plan.prev_timesteps[t_index])
    gen = torch.Generator().manual_seed(t_index)
    x, eps, z = (torch.randn(2, 4, 8, 8, generator=gen) for _ in range(3))
    whole = tcd_step(eps, t, x, p, ac, eta=eta, noise=z, config=cfg)
    s = int(intermediate_timestep(p, eta))
    split = tcd_update(step_coefficients(ac, t, p, intermediate=s, ndim=4), eps, x, z, cfg)
    for a, b in zip(whole, split):
        assert torch.equal(a, b)


def test_plain_module_namespaces_are_accepted():
    ref = alphas_cumprod(TCDConfig(), array_api_compat.array_namespace(torch.empty(0)))
    assert torch.equal(alphas_cumprod(TCDConfig(), torch), ref)
