"""Boundary-condition scalings = LCMScheduler's; add_noise / get_velocity = TCDScheduler's;
the parameterisations invert each other."""

from __future__ import annotations

import float32_bound as fb
import numpy as np
import pytest
import torch
from core_helpers import (
    BACKENDS,
    DTYPES,
    TORCH_DTYPES,
    assert_bounded,
    assert_close_scaled,
    namespace_of,
    reference,
    to_backend,
    to_numpy,
)
from core_strategies import configs, examples
from diffusers import LCMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from tcd_core import (
    TCDConfig,
    add_noise,
    alphas_cumprod,
    boundary_condition_scalings,
    get_velocity,
    predict_original_and_noise,
)

SCALINGS = (10.0, 1.0, 0.5, 2.5, 100.0)


@given(st.integers(0, 999), st.sampled_from(SCALINGS))
def test_boundary_scalings_ints(t, scaling):
    lcm = LCMScheduler(timestep_scaling=scaling)
    assert boundary_condition_scalings(
        t, scaling
    ) == lcm.get_scalings_for_boundary_condition_discrete(t)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_boundary_scalings_tensors_and_other_backends(scaling):
    lcm = LCMScheduler(timestep_scaling=scaling)
    ts = torch.tensor([0, 1, 9, 99, 259, 499, 999])
    want = lcm.get_scalings_for_boundary_condition_discrete(ts)
    got = boundary_condition_scalings(ts, scaling)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    for t in ts:  # 0-d tensors too
        for g, w in zip(
            boundary_condition_scalings(t, scaling),
            lcm.get_scalings_for_boundary_condition_discrete(t),
        ):
            assert torch.equal(g, w)
    for backend in ("numpy", "jax", "array_api_strict"):
        got = boundary_condition_scalings(to_backend(ts.numpy(), backend), scaling)
        for g, w in zip(got, want):
            np.testing.assert_allclose(to_numpy(g), w.double().numpy(), rtol=1e-6)
    c_skip, c_out = boundary_condition_scalings(0, scaling)
    assert (c_skip, c_out) == (1.0, 0.0)


@st.composite
def noise_cases(draw):
    config = draw(configs())
    b = draw(st.integers(1, 4))
    ts = draw(st.lists(st.integers(0, config.num_train_timesteps - 1), min_size=b, max_size=b))
    dtype = draw(st.sampled_from(("float32", "float16", "bfloat16", "float64")))
    return config, ts, dtype, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=examples(30))
@given(noise_cases())
def test_add_noise_and_get_velocity_equal_the_reference_on_torch(case):
    config, ts, dtype, seed = case
    ref = reference(config)
    g = torch.Generator().manual_seed(seed)
    shape = (len(ts), 3, 4, 4)
    x0, noise = (torch.randn(shape, generator=g).to(TORCH_DTYPES[dtype]) for _ in range(2))
    t = torch.tensor(ts)
    ac = alphas_cumprod(config, namespace_of("torch"))
    want = ref.add_noise(x0, noise, t)
    got = add_noise(ac, x0, noise, t)
    assert got.dtype == want.dtype and torch.equal(got, want)
    ref = reference(config)
    want = ref.get_velocity(x0, noise, t)
    got = get_velocity(ac, x0, noise, t)
    assert got.dtype == want.dtype and torch.equal(got, want)


@pytest.mark.parametrize("backend", ("numpy", "jax", "array_api_strict"))
@settings(max_examples=examples(10))
@given(case=noise_cases())
def test_add_noise_and_get_velocity_other_backends(backend, case):
    config, ts, dtype, seed = case
    if dtype not in DTYPES[backend]:
        dtype = "float32"
    g = torch.Generator().manual_seed(seed)
    shape = (len(ts), 3, 4, 4)
    x0, noise = (torch.randn(shape, generator=g).to(TORCH_DTYPES[dtype]) for _ in range(2))
    t = torch.tensor(ts)
    ac = alphas_cumprod(config, namespace_of(backend))
    args = (
        to_backend(x0, backend, dtype),
        to_backend(noise, backend, dtype),
        to_backend(t.numpy(), backend),
    )
    # float32/64: the derived bound (tests/float32_bound.py) on √ᾱ·x₀ + √(1−ᾱ)·z and
    # √ᾱ·z − √(1−ᾱ)·x₀, each side on its own table; halves: a few ulps of their dtype.
    tab = fb.table(reference(config).alphas_cumprod.numpy(), to_numpy(ac), fb.deviation(backend))
    a = fb.entry(tab, np.asarray(ts), fb.Bounded.exact(to_numpy(x0), tab.dev))
    xb, zb = fb.Bounded.exact(to_numpy(x0), tab.dev), fb.Bounded.exact(to_numpy(noise), tab.dev)
    bounds = {
        "add_noise": (a.sqrt() * xb + (1 - a).sqrt() * zb).err,
        "get_velocity": (a.sqrt() * zb - (1 - a).sqrt() * xb).err,
    }
    for ours, theirs in ((add_noise, "add_noise"), (get_velocity, "get_velocity")):
        want = getattr(reference(config), theirs)(x0, noise, t)
        got = ours(ac, *args)
        assert str(got.dtype).endswith(dtype)
        if dtype in ("float32", "float64"):
            assert_bounded(got, want, bounds[theirs], theirs)
        else:
            assert_close_scaled(got, want, dtype, theirs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prediction_type", ("epsilon", "sample", "v_prediction"))
def test_parameterisations_recover_x0_and_eps(backend, prediction_type):
    """With the exact target for each parameterisation, (x̂₀, ε̂) recover (x₀, ε)."""
    config = TCDConfig()
    ac = alphas_cumprod(config, namespace_of(backend))
    g = torch.Generator().manual_seed(0)
    x0, eps = (
        to_backend(torch.randn(2, 3, 4, 4, generator=g), backend, "float32") for _ in range(2)
    )
    t = to_backend(np.array([499, 499]), backend)
    xt = add_noise(ac, x0, eps, t)
    target = {"epsilon": eps, "sample": x0, "v_prediction": get_velocity(ac, x0, eps, t)}[
        prediction_type
    ]
    a_t = ac[499]
    x0_hat, eps_hat = predict_original_and_noise(target, xt, a_t, prediction_type)
    np.testing.assert_allclose(to_numpy(x0_hat), to_numpy(x0), atol=2e-5)
    np.testing.assert_allclose(to_numpy(eps_hat), to_numpy(eps), atol=2e-5)
    with pytest.raises(ValueError, match="prediction_type"):
        predict_original_and_noise(target, xt, a_t, "flow")
