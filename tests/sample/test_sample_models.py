"""The toy problem's exact models: the teacher's ε, the ODE solve, the distilled model's jump."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from tcd_core import predict_original_and_noise, tcd_step
from tcd_sample.toy import (
    PRESETS,
    DistilledModel,
    GaussianMixture,
    TeacherModel,
    epsilon_to_prediction,
    preset,
    probability_flow,
    teacher_epsilon,
)


def _grad_log_density(mixture, x, h=1e-5):
    """Central finite differences of log p (host, float64)."""
    out = np.empty_like(x)
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        out[:, j] = (mixture.log_density(x + e) - mixture.log_density(x - e)) / (2 * h)
    return out


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("t", [999, 759, 259, 40, 0])
def test_teacher_is_minus_scaled_score(name, t, table):
    # Tweedie: E[ε | x_t] = −√(1−ᾱ)·∇ log p_t(x_t), with p_t the noised mixture.
    mixture = preset(name)
    a = float(table[t])
    x = np.random.default_rng(t).standard_normal((64, 2)) * 2.5
    eps = TeacherModel(mixture, table)(x, t)
    expected = -math.sqrt(1 - a) * _grad_log_density(mixture.noised(a), x)
    np.testing.assert_allclose(eps, expected, rtol=1e-5, atol=1e-6)


def test_teacher_single_gaussian_closed_form():
    mu, s, a = np.array([1.5, -0.5]), 0.3, 0.2
    m = GaussianMixture((tuple(mu),), (s,), (1.0,))
    x = np.random.default_rng(0).standard_normal((10, 2))
    expected = math.sqrt(1 - a) * (x - math.sqrt(a) * mu) / (a * s * s + 1 - a)
    np.testing.assert_allclose(teacher_epsilon(m, x, a), expected, rtol=1e-12)


def test_teacher_is_the_posterior_mean_of_the_noise():
    # Monte Carlo check of E[ε | x_t] in a thin bin around a point: independent of the formula.
    m, a = preset("pair"), 0.3
    rng = np.random.default_rng(1)
    x0, _ = m.sample(400_000, rng)
    eps = rng.standard_normal(x0.shape)
    xt = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    point = np.array([[0.2, 0.1]])
    near = np.all(np.abs(xt - point) < 0.05, axis=1)
    assert near.sum() > 300  # standard error of the bin mean ≈ 0.03
    mc = eps[near].mean(axis=0)
    np.testing.assert_allclose(teacher_epsilon(m, point, a)[0], mc, atol=0.08)


def test_single_gaussian_flow_is_the_exact_affine_map():
    # One component: y − μ scales by √((s² + σ_to²)/(s² + σ_from²)), y = x/√ᾱ.
    mu, s = np.array([0.5, 1.0]), 0.2
    m = GaussianMixture((tuple(mu),), (s,), (1.0,))
    x = np.random.default_rng(2).standard_normal((50, 2))
    a_from, a_to = 0.01, 0.999
    sig2 = lambda a: (1 - a) / a
    y = x / math.sqrt(a_from)
    exact = math.sqrt(a_to) * (
        mu + (y - mu) * math.sqrt((s * s + sig2(a_to)) / (s * s + sig2(a_from)))
    )
    # RK4: the default λ-steps (≤ 0.1) are within 2e-6, 5x finer steps within 625x less
    np.testing.assert_allclose(probability_flow(m, x, a_from, a_to), exact, rtol=0, atol=5e-6)
    # the levels' former keyword names (before one solver served both paths) still work
    former = probability_flow(m, x, alpha_from=a_from, alpha_to=a_to)
    np.testing.assert_array_equal(former, probability_flow(m, x, a_from, a_to))
    fine = probability_flow(m, x, a_from, a_to, max_step=0.02)
    np.testing.assert_allclose(fine, exact, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_flow_agrees_with_a_much_finer_solve(name, table):
    # The default RK4 (λ-steps ≤ 0.1) against 20x finer steps, float64, from t = 999 to t = 0.
    m = preset(name)
    x = np.random.default_rng(3).standard_normal((500, 2))
    a_t, a_0 = float(table[999]), float(table[0])
    coarse = probability_flow(m, x, a_t, a_0)
    fine = probability_flow(m, x, a_t, a_0, max_step=0.01)
    # measured: max |Δ| ≤ 3e-4 on every preset (component stds are 0.08–0.2)
    assert np.max(np.abs(coarse - fine)) < 1e-3


def test_flow_runs_backwards_to_where_it_started(table):
    m = preset("ring")
    x = np.random.default_rng(4).standard_normal((200, 2))
    a_t, a_s = float(table[700]), float(table[300])
    there = probability_flow(m, x, a_t, a_s, max_step=0.01)
    back = probability_flow(m, there, a_s, a_t, max_step=0.01)
    np.testing.assert_allclose(back, x, atol=1e-6)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("t", [999, 759, 499, 259, 19])
def test_distilled_ddim_jump_lands_on_the_ode_solution(name, t, table):
    # tcd_step's deterministic jump to s = 0 (the last step, p = 0) with the distilled ε̂ must
    # reach the probability-flow-ODE solution at ᾱ₀, checked against an independent finer solve.
    m = preset(name)
    model = DistilledModel(m, table)
    x = np.random.default_rng(t).standard_normal((300, 2)) * math.sqrt(1.0)
    jump = tcd_step(model(x, t), t, x, 0, table, eta=0.3).pred_noised_sample
    fine = probability_flow(m, x, float(table[t]), float(table[0]), max_step=0.01)
    assert np.max(np.abs(jump - fine)) < 1e-3
    # ...and it is not trivially the teacher: the teacher's one-step jump lands elsewhere.
    if t >= 259:
        teacher_jump = tcd_step(TeacherModel(m, table)(x, t), t, x, 0, table).pred_noised_sample
        assert np.max(np.abs(teacher_jump - fine)) > 0.1


def test_distilled_vectorised_timesteps_match_scalar_calls(table):
    m = preset("rings")
    model = DistilledModel(m, table)
    ts = np.array([999, 499, 259, 19, 0])
    x = np.random.default_rng(5).standard_normal((5, 2))
    # per-sample timesteps share one substep count, so compare at matching (fine) resolution
    fine = DistilledModel(m, table, max_step=0.01)
    batched = fine(x, ts)
    single = np.concatenate([fine(x[i : i + 1], int(ts[i])) for i in range(5)])
    np.testing.assert_allclose(batched, single, atol=2e-5)
    # t = 0: the empty jump falls back on the teacher
    np.testing.assert_allclose(model(x[4:], 0), TeacherModel(m, table)(x[4:], 0))


@settings(max_examples=examples(20))
@given(
    st.sampled_from(["sample", "v_prediction", "epsilon"]),
    st.floats(1e-3, 0.999),
    st.integers(0, 2**31 - 1),
)
def test_prediction_conversion_round_trips_through_the_core(kind, a, seed):
    x = np.random.default_rng(seed).standard_normal((4, 2))
    eps = np.random.default_rng(seed + 1).standard_normal((4, 2))
    out = epsilon_to_prediction(eps, x, a, kind)
    _, eps_back = predict_original_and_noise(out, x, a, kind)
    np.testing.assert_allclose(eps_back, eps, rtol=1e-7, atol=1e-7 / math.sqrt(1 - a))


def test_prediction_type_is_validated():
    with pytest.raises(ValueError, match="prediction_type"):
        epsilon_to_prediction(np.zeros((1, 2)), np.zeros((1, 2)), 0.5, "x0")


def test_mixture_validation():
    with pytest.raises(ValueError, match="2-D"):
        GaussianMixture(((0.0, 0.0, 0.0),), (1.0,), (1.0,))
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture(((0.0, 0.0),), (0.0,), (1.0,))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(((0.0, 0.0),), (1.0,), (-1.0,))
    with pytest.raises(ValueError, match="entries"):
        GaussianMixture(((0.0, 0.0),), (1.0, 2.0), (1.0,))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("moons")


def test_zero_terminal_snr_tables_are_refused(config):
    from tcd_core import alphas_cumprod

    table = alphas_cumprod(config.replace(rescale_betas_zero_snr=True))
    with pytest.raises(ValueError, match="zero-terminal-SNR"):
        TeacherModel(preset("ring"), table)


def test_noised_mixture_sampling_matches_its_moments():
    m = preset("pair").noised(0.5)
    x, labels = m.sample(200_000, np.random.default_rng(6))
    assert abs(np.mean(labels == 0) - 0.8) < 0.005
    mean = np.sum(np.asarray(m.weights)[:, None] * np.asarray(m.means), axis=0)
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=0.01)
    assert m.stds[0] == pytest.approx(math.sqrt(0.5 * 0.04 + 0.5))
