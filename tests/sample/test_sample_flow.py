"""The toy problem on the flow-matching path (``tcd_core.FLOW``, ``tcd-sample --path flow``): the
exact velocity against independent closed forms and Monte Carlo, the ODE solve, the ideal
distilled model's Euler jump, the loop against diffusers' ``FlowMatchEulerDiscreteScheduler``,
the Euler sampler's convergence, the exactness in distribution of η = 1, and the CLI.

Measured (``ring``, numpy float32; √N·D is the largest Kolmogorov–Smirnov statistic over 8
directions against the exact projected CDF, 2000 samples, three seeds each):

* exact samples: √N·D 0.79–1.18
* distilled, η = 1: 2, 4, 8 steps 0.80–1.79 (exact in distribution)
* distilled, η = 0, 4 steps: 3.26–3.51; teacher, η = 1, 4 steps: 7.84–8.00
* teacher, η = 0 (Euler on the exact velocity), 4000 samples, median distance to the ODE's end
  point from the same x_T: 0.51, 0.12, 0.046, 0.026, 0.014 for 4, 8, 16, 32, 64 steps (first
  order); SW₁ 0.81 at 2 steps, 0.043 at 32 (exact vs exact 0.02)
"""

import json
import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from tcd_core import FLOW, LCM, TCD, TCDConfig, parameterise
from tcd_core.parameterization import FRESH
from tcd_sample import cli
from tcd_sample.toy import (
    PRESETS,
    DistilledModel,
    GaussianMixture,
    TeacherModel,
    flow_sigmas,
    preset,
    probability_flow,
    sample,
    sliced_wasserstein,
    teacher_epsilon,
    teacher_velocity,
    velocity_to_prediction,
)
from tcd_sample.toy._backend import load_backend, to_numpy

N = 4000
FLOW_CONFIG = TCDConfig(prediction_type="flow_prediction")
MODELS = {"teacher": TeacherModel, "distilled": DistilledModel}


def run(model, steps, num_samples, seed, *options, eta=0.3, **keywords):
    """The demo's one loop on the flow path, TCD at η = 0.3 unless ``eta`` is given."""
    return sample(
        TCD, model, FLOW_CONFIG, steps, num_samples, seed, *options, eta=eta, path=FLOW, **keywords
    )


def _grad_log_density(mixture, x, h=1e-5):
    """Central finite differences of log p (host, float64)."""
    out = np.empty_like(x)
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        out[:, j] = (mixture.log_density(x + e) - mixture.log_density(x - e)) / (2 * h)
    return out


# ------------------------------------------------------------------------- the exact velocity


@settings(max_examples=examples(20))
@given(st.sampled_from(sorted(PRESETS)), st.floats(0.01, 0.99), st.integers(0, 2**31 - 1))
def test_velocity_is_tweedie_on_the_noised_density(name, sigma, seed):
    # Independent of the posterior code: for x = a·x₀ + b·ε, Tweedie gives E[ε | x] = −b·∇log p
    # and E[x₀ | x] = (x + b²·∇log p)/a, with p the marginal (finite differences of its log).
    m = preset(name)
    x = np.random.default_rng(seed).standard_normal((32, 2)) * 2.5
    score = _grad_log_density(m.on_path(1 - sigma, sigma), x)
    expected = -sigma * score - (x + sigma**2 * score) / (1 - sigma)
    got = teacher_velocity(m, x, sigma)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 / (1 - sigma))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_velocity_at_the_ends_of_the_path(name):
    # σ = 1: x is the noise, x₀ independent of it: v* = x − E[x₀]. σ = 0: x is x₀, ε
    # independent of it: v* = −x. Finite, no division by 1 − σ or σ.
    m = preset(name)
    x = np.random.default_rng(0).standard_normal((50, 2)) * 3
    mean = np.asarray(m.weights) @ np.asarray(m.means)
    np.testing.assert_allclose(teacher_velocity(m, x, 1.0), x - mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(teacher_velocity(m, x, 0.0), -x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.3, 0.6, 0.9])
def test_velocity_is_the_posterior_mean_by_monte_carlo(sigma):
    # Self-normalised importance sampling of the posterior of x₀ given x_σ, from prior samples:
    # weights N(x; (1−σ)·x₀, σ²·I), ε = (x − (1−σ)·x₀)/σ. Independent of the closed form; the
    # tolerance is 5 standard errors of the weighted mean.
    m = preset("pair")
    rng = np.random.default_rng(int(100 * sigma))
    x0, _ = m.sample(400_000, rng)
    points = np.array([[0.2, 0.1], [-1.2, 0.3], [1.0, -0.4]])
    a, b = 1 - sigma, sigma
    for point in points:
        logw = -0.5 * np.sum((point - a * x0) ** 2, axis=1) / b**2
        w = np.exp(logw - logw.max())
        w /= w.sum()
        v = (point - a * x0) / b - x0  # ε − x₀ of every prior sample, given x_σ = point
        mc = w @ v
        se = np.sqrt(w**2 @ (v - mc) ** 2)
        assert 1 / np.sum(w**2) > 1000  # enough effective samples for the normal approximation
        np.testing.assert_array_less(
            np.abs(teacher_velocity(m, point[None], sigma)[0] - mc), 5 * se + 1e-9
        )


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("alpha_bar", [0.01, 0.5, 0.999])
def test_the_posterior_on_the_vp_path_is_the_teachers_epsilon(name, alpha_bar):
    # posterior_mean is written once for any path's roots (a, b): at the VP path's it gives the
    # VP teacher's ε, computed in y-space by weighted_offset (the other code path)
    m = preset(name)
    x = np.random.default_rng(1).standard_normal((64, 2)) * 2
    a, b = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    got = m.posterior_mean(x, a, b, of=(0.0, 1.0))
    np.testing.assert_allclose(got, teacher_epsilon(m, x, alpha_bar), rtol=1e-9, atol=1e-12)


def test_posterior_mean_per_sample_levels_and_marginal():
    m = preset("rings")
    x = np.random.default_rng(2).standard_normal((6, 2))
    sigmas = np.array([0.0, 0.1, 0.4, 0.7, 0.95, 1.0])
    batched = teacher_velocity(m, x, sigmas[:, None])
    single = np.concatenate(
        [teacher_velocity(m, x[i : i + 1], float(s)) for i, s in enumerate(sigmas)]
    )
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-14)
    assert m.on_path(1.0, 0.0) == m  # σ = 0: the mixture itself, bit for bit
    flat = m.on_path(0.0, 1.0)
    assert set(flat.stds) == {1.0} and set(flat.means) == {(0.0, 0.0)}
    with pytest.raises(ValueError, match="not both 0"):
        m.on_path(0.0, 0.0)


# ---------------------------------------------------------------------------- the ODE solve


def test_single_gaussian_flow_is_the_exact_affine_map():
    # One component: x − (1−σ)·μ scales with the marginal std √((1−σ)²·s² + σ²), from pure noise
    # (σ = 1) to the data (σ = 0) and between any two levels.
    mu, s = np.array([0.5, 1.0]), 0.2
    m = GaussianMixture((tuple(mu),), (s,), (1.0,))
    x = np.random.default_rng(2).standard_normal((50, 2))

    def std(sig):
        return math.sqrt((1 - sig) ** 2 * s * s + sig * sig)

    for start, end in [(1.0, 0.0), (0.7, 0.05), (0.02, 0.9)]:
        exact = (1 - end) * mu + (x - (1 - start) * mu) * std(end) / std(start)
        np.testing.assert_allclose(
            probability_flow(m, x, start, end, path=FLOW), exact, rtol=0, atol=2e-5
        )
        fine = probability_flow(m, x, start, end, max_step=0.01, path=FLOW)
        np.testing.assert_allclose(fine, exact, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_flow_agrees_with_a_much_finer_solve_and_with_the_vp_solver(name):
    m = preset(name)
    x = np.random.default_rng(3).standard_normal((200, 2))
    coarse = probability_flow(m, x, 1.0, 0.0, path=FLOW)
    fine = probability_flow(m, x, 1.0, 0.0, max_step=0.01, path=FLOW)
    # measured against 20x finer steps: max |Δ| ≤ 5.5e-4 on every preset from σ = 1, 0.5, 0.1
    # or 0.03 (48–66 RK4 steps from σ = 1)
    assert np.max(np.abs(coarse - fine)) < 1e-3
    # Between interior levels the flow ODE is the VP ODE in y = x/(1−σ), σ_y = σ/(1−σ), i.e. at
    # ᾱ = 1/(1 + σ_y²): the other solver, in other variables, gives the same points.
    start, end = 0.9, 0.05

    def alpha(sig):
        return (1 - sig) ** 2 / ((1 - sig) ** 2 + sig**2)

    x_start = 0.5 * x[:50]
    ours = probability_flow(m, x_start, start, end, max_step=0.01, path=FLOW)
    y = probability_flow(
        m, x_start * math.sqrt(alpha(start)) / (1 - start), alpha(start), alpha(end), max_step=0.02
    )
    theirs = y / math.sqrt(alpha(end)) * (1 - end)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)


def test_flow_runs_backwards_to_where_it_started():
    m = preset("ring")
    x = np.random.default_rng(4).standard_normal((200, 2))
    there = probability_flow(m, x, 0.8, 0.2, max_step=0.01, path=FLOW)
    back = probability_flow(m, there, 0.2, 0.8, max_step=0.01, path=FLOW)
    np.testing.assert_allclose(back, x, atol=1e-6)


# ------------------------------------------------------------------------------- the models


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("sigma", [1.0, 0.5, 0.1])
def test_distilled_euler_jump_lands_on_the_ode_solution(name, sigma):
    # The core's TCD step to σ_next = 0 (any η: its jump goes to σ_s = 0) with the distilled v̂
    # reaches the ODE's end point, checked against an independent finer solve.
    from tcd_core import step

    m = preset(name)
    x = np.random.default_rng(int(10 * sigma)).standard_normal((200, 2))
    model = DistilledModel(m, FLOW)
    jump = step(TCD, model(x, sigma), sigma, x, 0.0, FLOW, eta=0.3, final=True).next_sample
    fine = probability_flow(m, x, sigma, 0.0, max_step=0.01, path=FLOW)
    assert np.max(np.abs(jump - fine)) < 1e-3
    if sigma >= 0.5:  # ...and it is not the teacher's jump, which lands on E[x₀ | x]
        teacher = step(TCD, TeacherModel(m, FLOW)(x, sigma), sigma, x, 0.0, FLOW, eta=0.3)
        assert np.max(np.abs(teacher.next_sample - fine)) > 0.1


def test_distilled_per_sample_sigmas_match_scalar_calls():
    m = preset("rings")
    fine = DistilledModel(m, FLOW, max_step=0.01)
    sigmas = np.array([1.0, 0.5, 0.1, 0.01, 0.0])
    x = np.random.default_rng(5).standard_normal((5, 2))
    batched = fine(x, sigmas)
    single = np.concatenate([fine(x[i : i + 1], float(s)) for i, s in enumerate(sigmas)])
    np.testing.assert_allclose(batched, single, atol=2e-5)
    # σ = 0: the empty jump falls back on the teacher
    teacher = TeacherModel(m, FLOW)
    np.testing.assert_array_equal(DistilledModel(m, FLOW)(x[4:], 0.0), teacher(x[4:], 0.0))
    assert teacher.prediction_type == "flow_prediction" and teacher.table is None
    with pytest.raises(ValueError, match=r"σ must be in \[0, 1\]"):
        teacher(x, 999)


@settings(max_examples=examples(20))
@given(
    st.sampled_from(["sample", "epsilon", "flow_prediction"]),
    st.floats(0.001, 0.999),
    st.integers(0, 2**31 - 1),
)
def test_prediction_conversion_round_trips_through_the_core(kind, sigma, seed):
    x = np.random.default_rng(seed).standard_normal((4, 2))
    v = np.random.default_rng(seed + 1).standard_normal((4, 2))
    out = velocity_to_prediction(v, x, sigma, kind)
    x0, eps, _ = parameterise(FRESH, out, x, 1 - sigma, sigma, kind)
    np.testing.assert_allclose(eps - x0, v, rtol=1e-9, atol=1e-9 / (1 - sigma))


def test_prediction_type_is_validated_on_the_flow_path():
    with pytest.raises(ValueError, match="flow path"):
        velocity_to_prediction(np.zeros((1, 2)), np.zeros((1, 2)), 0.5, "v_prediction")


# ------------------------------------------------------------------------------ the plan


def test_flow_sigmas():
    assert flow_sigmas(4).dtype == np.float32
    assert flow_sigmas(4).astype(float).round(6).tolist() == [1.0, 0.9, 0.75, 0.5, 0.0]
    np.testing.assert_array_equal(
        flow_sigmas(5, 1.0)[:-1], np.linspace(1, 0.2, 5, dtype=np.float32)
    )
    assert flow_sigmas(1).tolist() == [1.0, 0.0]
    for bad in ({"num_inference_steps": 0}, {"num_inference_steps": 2.5}):
        with pytest.raises(ValueError, match="num_inference_steps"):
            flow_sigmas(**bad)
    for shift in (0.0, -1.0, 0.001, float("nan")):
        with pytest.raises(ValueError, match="shift"):
            flow_sigmas(4, shift)


def test_flow_sigmas_are_the_cores_flow_plan_with_flux_sigmas():
    from tcd_core import FlowConfig, flow_plan

    for n in (1, 2, 3, 8, 50):
        for shift in (1.0, 3.0, 0.7):
            u = np.linspace(1.0, 1.0 / n, n)
            want = flow_plan(FlowConfig(shift=shift), n, sigmas=u).sigmas
            np.testing.assert_array_equal(flow_sigmas(n, shift), want)


# ------------------------------------------------------------------------------ the loop


@pytest.fixture
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _diffusers_flow_loop(monkeypatch, model, steps, eta, num_samples, seed, shift=3.0):
    """diffusers' FlowMatchEulerDiscreteScheduler driving ``model`` on torch float32, η = 0 its
    Euler step, η = 1 its stochastic step, with the toy's host noise (``randn_tensor`` replaced
    by the next N(0, I) draw of ``default_rng(seed)``)."""
    import diffusers

    cls = diffusers.FlowMatchEulerDiscreteScheduler
    rng = np.random.default_rng(seed)

    def host_normal():
        return torch.from_numpy(rng.standard_normal((num_samples, 2)).astype(np.float32))

    def fake_randn(shape, generator=None, device=None, dtype=None, **kwargs):
        assert tuple(shape) == (num_samples, 2) and dtype == torch.float32
        return host_normal()

    monkeypatch.setattr(sys.modules[cls.__module__], "randn_tensor", fake_randn)
    scheduler = cls(shift=shift, stochastic_sampling=eta == 1.0)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps))
    x = host_normal()
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            v = model(x, float(scheduler.sigmas[i]))  # the toy takes σ, not the model time σ·N
            x = scheduler.step(v, t, x).prev_sample
    return x, scheduler.sigmas.numpy()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [1, 4])
def test_sample_is_the_diffusers_flow_scheduler_on_the_toy(
    monkeypatch, one_torch_thread, name, eta, steps
):
    # η = 0 is FlowMatchEulerDiscreteScheduler's Euler step and η = 1 its stochastic step, bit for
    # bit (the core's claim, here through the demo's loop and plan, with the same noise)
    model = MODELS[name](preset("rings"), FLOW)
    ref, ref_sigmas = _diffusers_flow_loop(monkeypatch, model, steps, eta, 200, 5)
    got = run(model, steps, 200, 5, load_backend("torch"), eta=eta)
    np.testing.assert_array_equal(flow_sigmas(steps), ref_sigmas)
    np.testing.assert_array_equal(got.timesteps, ref_sigmas[:-1])
    assert got.samples.dtype == torch.float32
    assert torch.equal(got.samples, ref)


def test_euler_with_the_exact_velocity_converges_to_the_mixture(ring_flow_reference):
    # η = 0 with the teacher is Euler's method on the probability-flow ODE: from the same x_T
    # it converges to the ODE's end point at first order (the median distance roughly halves per
    # doubling: ×4 from 8 to 32 steps), and the distance to the mixture shrinks with it.
    m, ref = ring_flow_reference
    model = TeacherModel(m, FLOW)
    x_T = np.random.default_rng(0).standard_normal((N, 2)).astype(np.float32)
    end = probability_flow(m, x_T, 1.0, 0.0, path=FLOW).astype(
        np.float64
    )  # within 5e-4: far below the distances
    swd, median = [], []
    for steps in (2, 4, 8, 16, 32):
        x = run(model, steps, N, 0, eta=0.0).samples.astype(np.float64)
        swd.append(sliced_wasserstein(x, ref))
        median.append(float(np.median(np.linalg.norm(x - end, axis=1))))
    assert swd == sorted(swd, reverse=True) and median == sorted(median, reverse=True)
    assert median[4] < median[2] / 3  # 8 -> 32 steps: measured ×4.4
    assert swd[0] > 0.5 and swd[4] < 0.06  # measured 0.81 and 0.043 (exact vs exact: 0.02)


def _max_ks(x, mixture, directions=8):
    """√N times the largest Kolmogorov–Smirnov distance between the projections of ``x`` on
    ``directions`` unit vectors and the mixture's exact projected CDF."""
    erf = np.vectorize(math.erf)
    n = x.shape[0]
    worst = 0.0
    for j in range(directions):
        theta = math.pi * (j + 0.5) / directions
        u = np.array([math.cos(theta), math.sin(theta)])
        p = np.sort(x @ u)
        z = (p[:, None] - np.asarray(mixture.means) @ u) / (np.asarray(mixture.stds) * math.sqrt(2))
        cdf = (0.5 * (1 + erf(z))) @ np.asarray(mixture.weights)
        i = np.arange(1, n + 1)
        worst = max(worst, np.max(i / n - cdf), np.max(cdf - (i - 1) / n))
    return math.sqrt(n) * worst


#: samples per Kolmogorov-Smirnov test
KS_N = 2000
#: the Kolmogorov-Smirnov tests below: 8 directions x 3 step counts
KS_TESTS = 8 * 3
#: their family-wise false-alarm rate
KS_ALPHA = 1e-3
#: The Dvoretzky–Kiefer–Wolfowitz inequality (Massart's constant), exact at every N: for N
#: samples of a distribution F, P(√N·sup|F_N − F| > λ) ≤ 2·exp(−2λ²). Each test at α/KS_TESTS
#: (Bonferroni) gives λ = √(ln(2·KS_TESTS/α)/2) = 2.32: derived from the sample count, not
#: tuned (√N·D of exact samples measured 0.79–1.18).
KS_LIMIT = math.sqrt(math.log(2 * KS_TESTS / KS_ALPHA) / 2)


def test_eta_one_with_the_ideal_model_is_exact_in_distribution():
    # η = 1 jumps to σ_s = 0 with the ideal distilled model (the exact ODE end point, a sample of
    # the data when x is one of x_σ), then re-noises to σ_next: (1−σ_next)·x₀ + σ_next·z is
    # then exactly x at σ_next. Every step count samples the mixture exactly.
    # (one step, final from x_T: test_one_step_is_the_jump_from_x_T_and_draws_no_noise)
    m = preset("ring")
    model = DistilledModel(m, FLOW)
    for steps in (2, 4, 8):
        x = run(model, steps, KS_N, steps, eta=1.0).samples.astype(np.float64)
        assert _max_ks(x, m) < KS_LIMIT, steps
    # the check has teeth: the same model at η = 0 (each Euler jump to σ_next reuses a slope meant
    # for σ = 0) and the teacher at η = 1 (its x̂₀ is E[x₀ | x], not a sample) fail it
    assert _max_ks(run(model, 4, KS_N, 0, eta=0.0).samples.astype(np.float64), m) > KS_LIMIT
    teacher = run(TeacherModel(m, FLOW), 4, KS_N, 0, eta=1.0).samples.astype(np.float64)
    assert _max_ks(teacher, m) > KS_LIMIT


def test_one_step_is_the_jump_from_x_T_and_draws_no_noise():
    # one step from σ = 1 to 0 is final: the teacher lands on E[x₀ | x_T] (the mixture's mean,
    # x_T being pure noise), the distilled model on the ODE's end point
    m = preset("pair")
    x_T = np.random.default_rng(3).standard_normal((200, 2)).astype(np.float32)
    mean = np.asarray(m.weights) @ np.asarray(m.means)
    got = run(TeacherModel(m, FLOW), 1, 200, 3).samples
    np.testing.assert_allclose(got, np.broadcast_to(mean, got.shape), rtol=0, atol=1e-6)
    got = run(DistilledModel(m, FLOW), 1, 200, 3, eta=1.0).samples
    np.testing.assert_allclose(
        got, probability_flow(m, x_T, 1.0, 0.0, path=FLOW), rtol=0, atol=1e-6
    )


def test_sample_prediction_type_gives_the_velocity_result():
    model = DistilledModel(preset("ring"), FLOW)
    base = run(model, 3, 500, 0).samples
    other = sample(TCD, model, TCDConfig(prediction_type="sample"), 3, 500, 0, eta=0.3, path=FLOW)
    np.testing.assert_allclose(other.samples, base, atol=2e-5)
    default = sample(TCD, model, None, 3, 500, 0, eta=0.3, path=FLOW)  # None: flow_prediction
    np.testing.assert_array_equal(default.samples, base)


def test_what_the_flow_path_refuses():
    model = TeacherModel(preset("ring"), FLOW)
    with pytest.raises(ValueError, match="divides by zero"):
        sample(TCD, model, TCDConfig(), 2, 10, 0, eta=0.3, path=FLOW)
    with pytest.raises(ValueError, match="no meaning on the flow path"):
        sample(TCD, model, TCDConfig(prediction_type="v_prediction"), 2, 10, 0, eta=0.3, path=FLOW)
    with pytest.raises(ValueError, match="no flow form"):
        sample(LCM, model, FLOW_CONFIG, 2, 10, 0, path=FLOW)
    with pytest.raises(TypeError, match="eta"):
        sample(TCD, model, FLOW_CONFIG, 2, 10, 0, path=FLOW)
    with pytest.raises(TypeError, match="path"):
        sample(TCD, model, FLOW_CONFIG, 2, 10, 0, eta=0.3, path="flow")


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_backends_agree(one_torch_thread, backend, name):
    xp = load_backend(backend)
    model = MODELS[name](preset("rings"), FLOW)
    base = run(model, 3, 400, 0, trajectory=3)
    other = run(model, 3, 400, 0, xp, trajectory=3)
    assert other.samples.dtype == xp.float32
    got = to_numpy(other.samples)
    # float32 end to end, rounding differs (exp, matmul); the VP tests' bounds
    np.testing.assert_allclose(got, base.samples, atol=1e-3)
    assert np.mean(np.abs(got - base.samples) < 1e-5) > 0.98
    np.testing.assert_allclose(other.trajectory, base.trajectory, atol=1e-3)


# ------------------------------------------------------------------------------- the CLI


def _run_cli(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_path_flow_prints_the_table_and_writes_json(capsys, tmp_path):
    # (its figure: test_sample_figure.py's "flow path")
    js = tmp_path / "flow.json"
    args = ["--path", "flow", "--samples", "300", "--steps", "1", "2", "--eta", "0", "1"]
    code, out, err = _run_cli(capsys, *args, "--no-progress", "--no-figure", "--json", str(js))
    assert code == 0, err
    lines = out.splitlines()
    assert "path flow (shift 3)" in lines[0] and "prediction_type flow_prediction" in lines[0]
    assert lines[0].endswith("fresh exact samples of the mixture (sigma = 0)")
    assert lines[1].split()[:5] == ["model", "steps", "eta", "SW1", "off-mode"]
    rows = [ln for ln in lines if ln.startswith(("teacher ", "distilled "))]
    assert len(rows) == 2 * 2 * 2
    assert any(ln.startswith("exact ") for ln in lines) and "figure:" not in out
    doc = json.loads(js.read_text())
    assert doc["path"] == "flow" and doc["shift"] == 3.0 and "alpha_bar_0" not in doc
    assert doc["config"]["prediction_type"] == "flow_prediction"
    for r, line in zip(doc["results"], rows, strict=True):
        assert r["timesteps"] == flow_sigmas(r["steps"])[:-1].tolist()
        assert f"{r['swd']:.4f}" in line
    res = {(r["model"], r["steps"], r["eta"]): r for r in doc["results"]}
    assert res["teacher", 1, 0.0]["off_mode"] == 1.0  # E[x₀ | x_T]: the mean, off every mode
    for steps in (1, 2):  # 300 samples: the noise floor is about 0.15
        assert res["distilled", steps, 1.0]["swd"] < 0.25 * res["teacher", 1, 0.0]["swd"]


def test_cli_vp_json_names_its_path(capsys, tmp_path):
    js = tmp_path / "vp.json"
    code, _, err = _run_cli(
        capsys, "--samples", "50", "--steps", "1", "--no-figure", "--json", str(js)
    )
    assert code == 0, err
    doc = json.loads(js.read_text())
    assert doc["path"] == "vp" and "shift" not in doc and "alpha_bar_0" in doc


def test_cli_flow_shift_and_sample_prediction(capsys, tmp_path):
    js = tmp_path / "s.json"
    args = ["--path", "flow", "--shift", "1", "--prediction-type", "sample", "--steps", "2"]
    code, out, err = _run_cli(capsys, *args, "--samples", "100", "--no-figure", "--json", str(js))
    assert code == 0, err
    doc = json.loads(js.read_text())
    assert doc["shift"] == 1.0 and doc["config"]["prediction_type"] == "sample"
    assert doc["results"][0]["timesteps"] == [1.0, 0.5]
    assert "path flow (shift 1)" in out


BAD_FLOW = [
    (["--path", "diffusion"], "argument --path: invalid choice: 'diffusion'"),
    (["--path", "flow", "--sampler", "lcm"], "--sampler lcm has no flow form"),
    (["--path", "flow", "--sampler", "tcd", "lcm"], "--sampler lcm has no flow form"),
    (["--path", "flow", "--prediction-type", "epsilon"], "cannot start the flow plan at σ = 1"),
    (["--path", "flow", "--prediction-type", "v_prediction"], "v_prediction is the VP path's"),
    (["--prediction-type", "flow_prediction"], "use it with --path flow"),
    (["--shift", "3"], "--shift applies to --path flow only"),
    (["--path", "flow", "--shift", "0"], "--shift: `shift` must be"),
    (["--path", "flow", "--shift", "0.001"], "--shift: `shift` must be"),
    (["--path", "flow", "--shift", "nan"], "--shift: `shift` must be"),
    (["--path", "flow", "--steps", "1001"], "--steps must be <= 1000 on --path flow"),
    (["--path", "flow", "--config", "c.json"], "--path flow takes --shift"),
    (["--path", "flow", "--eta", "2"], "--eta must be in [0, 1]"),
]


@pytest.mark.parametrize("args,message", BAD_FLOW, ids=[" ".join(a) for a, _ in BAD_FLOW])
def test_cli_bad_flow_arguments_exit_2_with_one_line(capsys, args, message):
    code, out, err = _run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("tcd-sample: error: ") and message in err
    assert "Traceback" not in err


def test_cli_help_documents_the_path(capsys):
    code, out, _ = _run_cli(capsys, "--help")
    assert code == 0
    assert "--path {vp,flow}" in out and "--shift S" in out and "flow_prediction" in out


def test_jax_compiles_both_posteriors_on_one_mixture():
    # the mixture's tables were cached from inside the first jit trace: its tracers broke the next
    # trace (another sample count, or the other compiled function on the same preset)
    xp = load_backend("jax")
    m = GaussianMixture(((1.0, 0.0), (-1.0, 0.5)), (0.2, 0.3), (1.0, 2.0))
    host = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    x = xp.asarray(host)
    for got, want in [
        (teacher_velocity(m, x, 0.5), teacher_velocity(m, host, 0.5)),
        (teacher_epsilon(m, x, 0.5), teacher_epsilon(m, host, 0.5)),
        (teacher_epsilon(m, x[:3], 0.5), teacher_epsilon(m, host[:3], 0.5)),
        (teacher_velocity(m, x[:2], 0.25), teacher_velocity(m, host[:2], 0.25)),
    ]:
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-5, atol=1e-6)
