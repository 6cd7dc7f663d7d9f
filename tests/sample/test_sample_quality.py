"""TCD and LCM on the toy problem: the demo's one loop (:func:`tcd_sample.toy.sample`) is each
algorithm's diffusers scheduler driving the same model, bit for bit; the distilled model is good in
few steps, the teacher in one step is not.

Thresholds (SW₁ against fresh exact samples at ᾱ₀, ``ring`` preset, 4000 samples, measured over
seeds 0–2 on numpy float32):

* exact-vs-exact noise floor: 0.025–0.052
* distilled, TCD at η = 0.3: 1 step 0.028–0.039, 2 steps 0.043–0.061, 4 steps 0.041–0.060;
  LCM: 1 step 0.033–0.046, 2 steps 0.029–0.038, 4 steps 0.033–0.036, 8 steps 0.035–0.070
* teacher, TCD at η = 0.3: 1 step 1.141–1.142 (everything collapses onto the mixture's mean),
  8 steps 0.078–0.085; LCM: 1 step 1.163–1.166, 2 steps 0.568–0.575, 4 steps 0.222–0.225,
  8 steps 0.072–0.090
* ``grid`` preset, distilled TCD 4 steps: η = 1 0.027–0.038 (at the floor), η = 0.3 0.147–0.158
* per-mode spread (RMS distance per coordinate to the assigned mode's mean) with 4 steps: LCM
  with the distilled model 0.084–0.085; TCD at η = 1 0.104–0.105; exact samples 0.104–0.105

Hence the thresholds below: distilled ≤ 0.08 in 1–4 (LCM: 1–8) steps, teacher 1 step ≥ 0.8.
"""

import sys

import numpy as np
import pytest
import torch

from tcd_core import LCM, TCD, TCDConfig, alphas_cumprod, plan_timesteps
from tcd_sample.toy import (
    DistilledModel,
    TeacherModel,
    component_shares,
    epsilon_to_prediction,
    lcm_sample,
    preset,
    sample,
    sliced_wasserstein,
    tcd_sample,
)
from tcd_sample.toy._backend import load_backend, to_numpy

N = 4000
DISTILLED_MAX = 0.08
TEACHER_1_STEP_MIN = 0.8
MODELS = {"teacher": TeacherModel, "distilled": DistilledModel}
#: the η each algorithm samples with here (LCM has none)
ETA = {TCD: 0.3, LCM: None}

each_algorithm = pytest.mark.parametrize("algorithm", (TCD, LCM), ids=repr)


def run(algorithm, model, config, steps, num_samples, seed, *options, **keywords):
    """The demo's loop for ``algorithm``, TCD at η = 0.3 unless ``eta`` is given."""
    eta = keywords.pop("eta", ETA[algorithm])
    return sample(algorithm, model, config, steps, num_samples, seed, *options, eta=eta, **keywords)


@pytest.fixture
def one_torch_thread():
    # the toy's arrays are tiny: intra-op threads only add synchronisation (as in tcd-sample)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _diffusers_loop(monkeypatch, algorithm, model, config, steps, num_samples, seed):
    """The algorithm's diffusers scheduler driving ``model`` on torch float32, with the toy's host
    noise.

    ``randn_tensor`` in the scheduler's module is replaced by the next N(0, I) draw of
    ``default_rng(seed)``, the toy's generator, so both loops see the same numbers; the draws the
    scheduler asks for are counted.
    """
    import diffusers

    cls = getattr(diffusers, algorithm.reference)
    rng = np.random.default_rng(seed)

    def host_normal():
        return torch.from_numpy(rng.standard_normal((num_samples, 2)).astype(np.float32))

    calls = []

    def fake_randn(shape, generator=None, device=None, dtype=None, **kwargs):
        assert tuple(shape) == (num_samples, 2) and dtype == torch.float32
        calls.append(len(calls))
        return host_normal()

    monkeypatch.setattr(sys.modules[cls.__module__], "randn_tensor", fake_randn)
    scheduler = cls(**config.to_dict())
    scheduler.set_timesteps(steps)
    table = to_numpy(alphas_cumprod(config)).astype(np.float64)
    eta = {"eta": ETA[algorithm]} if algorithm.has_eta else {}
    x = host_normal()
    with torch.no_grad():
        for t in scheduler.timesteps.tolist():
            eps = model(x, t)
            out = epsilon_to_prediction(eps, x, float(table[t]), config.prediction_type)
            x = scheduler.step(out, t, x, **eta).prev_sample
    return x, scheduler.timesteps.numpy(), len(calls)


DIFFUSERS_CASES = [(name, steps, "epsilon") for name in MODELS for steps in (1, 2, 4, 8)] + [
    (name, 3, kind) for name in MODELS for kind in ("sample", "v_prediction")
]


@each_algorithm
@pytest.mark.parametrize("name,steps,kind", DIFFUSERS_CASES)
def test_sample_is_the_diffusers_scheduler_on_the_toy(
    monkeypatch, one_torch_thread, algorithm, name, steps, kind
):
    config = TCDConfig(prediction_type=kind)
    model = MODELS[name](preset("rings"), alphas_cumprod(config))
    ref, ref_timesteps, draws = _diffusers_loop(
        monkeypatch, algorithm, model, config, steps, 200, 5
    )
    got = run(algorithm, model, config, steps, 200, 5, load_backend("torch"))
    np.testing.assert_array_equal(got.timesteps, ref_timesteps)
    mask = plan_timesteps(algorithm, config, steps).noise_mask(ETA[algorithm])
    assert draws == steps - 1 == int(mask.sum())
    assert got.samples.dtype == torch.float32
    assert torch.equal(got.samples, ref)  # bit for bit: same plan, same step, same noise


@pytest.mark.parametrize(
    ("algorithm", "steps"),
    [(TCD, s) for s in (1, 2, 3, 4)] + [(LCM, s) for s in (1, 2, 4, 8)],
    ids=repr,
)
def test_distilled_reaches_a_small_distance_in_few_steps(
    algorithm, steps, ring_reference, config, table, alpha0
):
    m, ref = ring_reference
    x = run(algorithm, DistilledModel(m, table), config, steps, N, steps).samples
    x = x.astype(np.float64)
    assert sliced_wasserstein(x, ref) < DISTILLED_MAX
    shares, off = component_shares(x, m.noised(alpha0))
    assert off < 0.01
    np.testing.assert_allclose(shares, m.weights, atol=0.03)


@each_algorithm
def test_teacher_with_one_step_does_not(algorithm, ring_reference, config, table, alpha0):
    m, ref = ring_reference
    x = run(algorithm, TeacherModel(m, table), config, 1, N, 1).samples.astype(np.float64)
    assert sliced_wasserstein(x, ref) > TEACHER_1_STEP_MIN
    _, off = component_shares(x, m.noised(alpha0))
    assert off > 0.99  # all samples sit near E[x₀], between the modes


@each_algorithm
def test_teacher_improves_with_steps_but_stays_behind_the_distilled_model(
    algorithm, ring_reference, config, table
):
    m, ref = ring_reference
    model = TeacherModel(m, table)
    d = [
        sliced_wasserstein(run(algorithm, model, config, s, N, 0).samples, ref)
        for s in (1, 2, 4, 8)
    ]
    assert d[0] > TEACHER_1_STEP_MIN
    assert d == sorted(d, reverse=True)
    assert d[-1] > 0.06  # 8 teacher steps: TCD 0.078–0.085, LCM 0.072–0.090 measured


@each_algorithm
@pytest.mark.parametrize("kind", ["sample", "v_prediction"])
def test_prediction_types_give_the_epsilon_result(algorithm, kind, config, table):
    model = DistilledModel(preset("ring"), table)
    base = run(algorithm, model, config, 2, 500, 0).samples
    other = run(algorithm, model, config.replace(prediction_type=kind), 2, 500, 0).samples
    np.testing.assert_allclose(other, base, atol=2e-5)


@each_algorithm
def test_same_seed_same_samples_other_seed_other_samples(algorithm, config, table):
    """Also: tcd_sample and lcm_sample are the one loop with their algorithm."""
    model = DistilledModel(preset("ring"), table)
    a = run(algorithm, model, config, 2, 300, 5).samples
    if algorithm is TCD:
        b = tcd_sample(model, config, 2, 0.3, 300, 5).samples
    else:
        b = lcm_sample(model, config, 2, 300, 5).samples
    c = run(algorithm, model, config, 2, 300, 6).samples
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 0.1


@each_algorithm
@pytest.mark.parametrize("backend", ["torch", "jax", "array_api_strict"])
@pytest.mark.parametrize("name", ["teacher", "distilled"])
def test_backends_agree(one_torch_thread, algorithm, backend, name, config, table):
    if backend == "array_api_strict":
        import array_api_strict as xp
    else:
        xp = load_backend(backend)
    model = MODELS[name](preset("rings"), table)
    base = run(algorithm, model, config, 3, 400, 0, trajectory=3)
    other = run(algorithm, model, config, 3, 400, 0, xp, trajectory=3)
    assert other.samples.dtype == xp.float32
    # float32 end to end, so rounding differs (exp, matmul). Typical |Δ| is ~1e-6; the ODE flow
    # separates points near a boundary between modes, where one point in 800 reached 1.3e-4
    # (JAX, distilled). array_api_strict (NumPy underneath) is bit-identical.
    got = to_numpy(other.samples)
    np.testing.assert_allclose(got, base.samples, atol=1e-3)
    assert np.mean(np.abs(got - base.samples) < 1e-5) > 0.98
    np.testing.assert_allclose(other.trajectory, base.trajectory, atol=1e-3)
    assert other.trajectory.shape == (4, 3, 2)


@each_algorithm
def test_one_step_is_the_estimate_from_x_T_and_draws_no_noise(algorithm, config, table):
    """One step is final: TCD's DDIM jump to s = 0, √ᾱ₀·x̂₀ + √(1−ᾱ₀)·ε̂; LCM's consistency
    function, c_out·x̂₀ + c_skip·x_T. From the same x_T (the seed's first draw); its later numbers
    are never used."""
    model = TeacherModel(preset("pair"), table)
    got = run(algorithm, model, config, 1, 200, 3).samples
    x_t = np.random.default_rng(3).standard_normal((200, 2)).astype(np.float32)
    a = float(table[999])
    eps = model(x_t, 999)
    x0 = (x_t - np.sqrt(1 - a) * eps) / np.sqrt(a)
    if algorithm is TCD:
        a0 = float(table[0])
        want = np.sqrt(a0) * x0 + np.sqrt(1 - a0) * eps
    else:
        c_skip = 0.25 / ((999 * 10.0) ** 2 + 0.25)
        c_out = 999 * 10.0 / np.sqrt((999 * 10.0) ** 2 + 0.25)
        want = c_out * x0 + c_skip * x_t
    # float32 loop against float64 maths on the float32 ε: 1/√ᾱ_T ≈ 15 amplifies its rounding
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ each algorithm's own


def test_eta_one_makes_multistep_consistency_sampling_exact(config, table, alpha0):
    # η = 1 jumps to s = 0 (the exact ODE end point), then re-noises to p: every model input
    # follows its exact marginal, so any number of steps stays at the noise floor. At η = 0.3 the
    # jump to s > 0 reuses ε̂ meant for s = 0, which on a grid costs visibly.
    m = preset("grid")
    ref, _ = m.noised(alpha0).sample(N, np.random.default_rng(7))
    model = DistilledModel(m, table)
    exact = sliced_wasserstein(run(TCD, model, config, 4, N, 0, eta=1.0).samples, ref)
    partial = sliced_wasserstein(run(TCD, model, config, 4, N, 0).samples, ref)
    assert exact < 0.06
    assert partial > 2 * exact


def test_lcm_sample_differs_from_tcd_sample(config, table):
    # not the TCD loop under another name: same x_T, but after one renoising they part
    model = DistilledModel(preset("ring"), table)
    lcm = run(LCM, model, config, 2, 300, 0).samples
    tcd = run(TCD, model, config, 2, 300, 0, eta=1.0).samples
    assert np.max(np.abs(lcm - tcd)) > 0.1


def _spread(x, mixture):
    """RMS distance of the on-mode samples to their mode's mean."""
    labels = to_numpy(mixture.assign(x)).astype(np.int64)
    means = np.asarray(mixture.means)
    d = x[labels >= 0] - means[labels[labels >= 0]]
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1) / 2)))


def test_lcm_reads_the_distilled_model_as_an_estimate_of_x0_and_narrows_the_modes(
    ring_reference, config, table, alpha0
):
    # The distilled ε̂ makes the DDIM jump to timestep 0 exact (TCD's parameterisation). LCM's
    # final step returns x̂₀ instead, the same chord extended from σ₀ ≈ 0.029 to σ = 0, which
    # pulls each sample towards its mode: the modes come out narrower than the target's (0.104),
    # narrower even than the clean data's (0.1). TCD at η = 1, the same jumps landing on
    # timestep 0, keeps the target's width. docs/sample.md reports this.
    m, _ = ring_reference
    target = m.noised(alpha0)
    model = DistilledModel(m, table)
    exact, _ = target.sample(N, np.random.default_rng(1))
    lcm = _spread(run(LCM, model, config, 4, N, 0).samples.astype(np.float64), target)
    tcd = _spread(run(TCD, model, config, 4, N, 0, eta=1.0).samples.astype(np.float64), target)
    assert _spread(exact, target) == pytest.approx(0.104, abs=0.003)
    assert tcd == pytest.approx(0.104, abs=0.003)
    assert lcm < 0.092
