"""sample_tcd's fast path: each step is x' = a·x + b·x̂₀ + c·z with (a, b, c) folded on the host
from the core's step, and the plan is cached per (table, sigmas, η).

What is proven here: the folded weights are the core's unfolded step (tcd_core's
step_coefficients + tcd_update in diffusers' scaling, then /√ᾱ_p) up to rounding each weight
once to float32; the caches never hide an error, never serve a plan for changed values and never
hand out shared tensors; and the step writes into no tensor that the caller, the model or the
noise sampler can see.
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from kdiffusion_helpers import DiscreteDenoiser, toy_net
from kdiffusion_strategies import ETAS, configs

from tcd_core import (
    TCDConfig,
    alphas_cumprod,
    intermediate_timestep,
    step_coefficients,
    tcd_update,
)
from tcd_kdiffusion import get_sigmas_tcd, sample_tcd
from tcd_kdiffusion.sampling import _folded_weights

AC = torch.from_numpy(alphas_cumprod(TCDConfig()))
X0_PREDICTION = TCDConfig(prediction_type="sample")


def unfolded_step(ac, t, p, eta, x, denoised, noise, final):
    """The step as the docstring states it, in float64 with the core's functions unfolded:
    x_t = √ᾱ_t·x, the core's update with x̂₀ as an x₀-prediction, then x_p/√ᾱ_p (x_s when the
    step ends at σ = 0)."""
    c = step_coefficients(ac, t, p, eta)
    x_t = np.sqrt(ac[t]) * x
    out = tcd_update(c, denoised, x_t, noise, X0_PREDICTION)
    return out.pred_noised_sample if final else out.prev_sample / np.sqrt(ac[p])


@given(
    cfg=configs(prediction_types=("epsilon",)),
    data=st.data(),
)
def test_folded_weights_are_the_cores_step(cfg: dict, data: st.DataObject) -> None:
    ac = diffusers.TCDScheduler(**cfg).alphas_cumprod.double().numpy()
    n_train = len(ac)
    usable = np.flatnonzero(ac > 0)  # σ = ∞ (zero-terminal SNR) is not a k-diffusion step
    t = int(data.draw(st.sampled_from(usable[1:].tolist()), label="t"))
    final = data.draw(st.booleans(), label="final")
    p = 0 if final else int(data.draw(st.integers(0, t - 1), label="p"))
    eta = data.draw(ETAS, label="eta")
    s = intermediate_timestep(np.array([[p]]), eta)
    (weights,) = _folded_weights(ac, np.array([t]), np.array([p]), s, np.array([final]))[:, 0]
    assert weights.dtype == np.float32 and n_train == len(ac)

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x, denoised, noise = rng.standard_normal((3, 64))
    x = x * np.sqrt((1 - ac[t]) / ac[t])  # k-diffusion's scale at σ_t
    ref = unfolded_step(ac, t, p, eta, x, denoised, noise, final)
    a, b, c = weights.astype(np.float64)
    ours = a * x + b * denoised + c * noise
    # each weight rounded once to float32 (relative 2^-24), the rest float64
    bound = 2.0**-24 * (abs(a * x) + abs(b * denoised) + abs(c * noise)) + 1e-12 * (1 + abs(ref))
    assert np.all(np.abs(ours - ref) <= bound)
    if final or eta == 0:
        assert c == 0  # no re-noising: nothing is drawn there


def test_weights_of_the_default_plan() -> None:
    """Spot values, computed by hand from the maths: with η = 0 the step is DDIM in σ space,
    x' = x̂₀ + (σ_p/σ_t)·(x − x̂₀), i.e. a = σ_p/σ_t and b = 1 − σ_p/σ_t."""
    ac = AC.double().numpy()
    sig = np.sqrt((1 - ac) / ac)
    t, p = np.array([999, 759]), np.array([759, 499])
    s = intermediate_timestep(p[:, None], 0.0)
    w = _folded_weights(ac, t, p, s, np.array([False, False]))[:, 0].astype(np.float64)
    ratio = sig[p] / sig[t]
    np.testing.assert_allclose(w[:, 0], ratio, rtol=2e-7)
    np.testing.assert_allclose(w[:, 1], 1 - ratio, rtol=2e-7)
    assert np.all(w[:, 2] == 0)


# --------------------------------------------------------------------------------------------
# the caches


def never_called(x, sigma, **kwargs):
    raise AssertionError("the model was called before the input was validated")


def test_errors_are_raised_on_every_call() -> None:
    """Validation lives inside the cached functions; an exception is never cached."""
    x = torch.zeros(1, 4, 8, 8)
    off_table = torch.tensor([5.0, 0.0])
    bad_table = torch.tensor([0.9, 1.5])
    for _ in range(2):
        with pytest.raises(ValueError, match="is not a σ"):
            sample_tcd(never_called, x, off_table, alphas_cumprod=AC, disable=True)
        with pytest.raises(ValueError, match="strictly decreasing"):
            sample_tcd(never_called, x, torch.tensor([1.0, 2.0]), alphas_cumprod=AC)
        with pytest.raises(ValueError, match=r"`alphas_cumprod` must hold values"):
            sample_tcd(never_called, x, get_sigmas_tcd(2, AC), alphas_cumprod=bad_table)
        with pytest.raises(ValueError, match=r"`alphas_cumprod` must hold values"):
            get_sigmas_tcd(2, bad_table)


def test_the_plan_follows_values_changed_in_place() -> None:
    """Caches are keyed by values, not by tensor identity: a table or sigmas tensor modified in
    place gives the result of a fresh tensor holding the new values."""
    table = AC.clone()
    sig = get_sigmas_tcd(4, table)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sig[0]
    model = lambda x, sigma: 0.5 * x
    first = sample_tcd(model, x, sig, eta=0.0, alphas_cumprod=table, disable=True)
    table.mul_(0.999)  # another schedule, same tensor object
    fresh = table.clone()
    sig_new = get_sigmas_tcd(4, table)
    assert not torch.equal(sig_new, sig)
    sig.copy_(sig_new)  # the sigmas tensor too
    second = sample_tcd(model, x, sig, eta=0.0, alphas_cumprod=table, disable=True)
    expected = sample_tcd(model, x, sig_new.clone(), eta=0.0, alphas_cumprod=fresh, disable=True)
    assert torch.equal(second, expected) and not torch.equal(second, first)


def test_get_sigmas_tcd_hands_out_fresh_tensors_and_types_its_cache() -> None:
    a = get_sigmas_tcd(4, AC)
    a.zero_()
    b = get_sigmas_tcd(4, AC)
    assert float(b[0]) > 14  # the cached plan was not modified through a
    # 4 and True are different arguments (the core refuses a bool step count)
    get_sigmas_tcd(1, AC)
    with pytest.raises(ValueError, match="num_inference_steps"):
        get_sigmas_tcd(True, AC)


# --------------------------------------------------------------------------------------------
# what the steps write to


@pytest.mark.parametrize("eta", [0.3, torch.tensor([0.0, 0.7], dtype=torch.float64)])
def test_no_visible_tensor_is_overwritten(eta) -> None:
    """Each step allocates its result; only a private scratch buffer is reused. The x given to
    the callback, the model's outputs and the noise sampler's draws keep their values."""
    sig = get_sigmas_tcd(4, AC)
    model = DiscreteDenoiser(toy_net(AC), AC, "epsilon")
    outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    draws: list[tuple[torch.Tensor, torch.Tensor]] = []
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    g = torch.Generator().manual_seed(1)

    def recording_model(x, sigma):
        out = model(x, sigma)
        outputs.append((out, out.clone()))
        return out

    def noise(sigma, sigma_next):
        z = torch.randn(2, 4, 8, 8, generator=g)
        draws.append((z, z.clone()))
        return z

    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sig[0]
    x_in = x.clone()
    callback = lambda d: seen.append((d["x"], d["x"].clone()))
    out = sample_tcd(recording_model, x, sig, None, callback, True, noise, eta, AC)
    assert torch.equal(x, x_in)
    assert len(outputs) == len(seen) == 4 and len(draws) == 3
    for kept, copy in outputs + draws + seen:
        assert torch.equal(kept, copy)
    assert all(out.data_ptr() != kept.data_ptr() for kept, _ in outputs + draws + seen)
