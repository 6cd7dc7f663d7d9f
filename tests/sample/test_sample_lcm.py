"""LCM (multistep consistency sampling, Algorithm 1) on the toy problem, beside TCD.

The LCM rows of ``tcd-sample`` come from :func:`tcd_sample.toy.lcm_sample`, a loop over the
core's ``lcm_timesteps`` and ``lcm_step``. Here that loop is checked against diffusers' own
``LCMScheduler`` driving the same toy model on torch (bit for bit, noise included), against the
other backends, and on the toy's exact answer.

Measured (SW₁ against fresh exact samples at ᾱ₀, ``ring`` preset, 4000 samples, seeds 0–2, numpy
float32; noise floor 0.026–0.052):

* distilled, LCM: 1 step 0.033–0.046, 2 steps 0.029–0.038, 4 steps 0.033–0.036,
  8 steps 0.035–0.070
* teacher, LCM: 1 step 1.163–1.166; 2 steps 0.568–0.575; 4 steps 0.222–0.225;
  8 steps 0.072–0.090
* per-mode spread (RMS distance per coordinate to the assigned mode's mean) with 4 steps: LCM
  with the distilled model 0.084–0.085; TCD at η = 1 0.104–0.105; exact samples 0.104–0.105
"""

import numpy as np
import pytest
import torch

from tcd_core import TCDConfig, alphas_cumprod, lcm_timesteps
from tcd_sample.toy import (
    DistilledModel,
    TeacherModel,
    component_shares,
    epsilon_to_prediction,
    lcm_sample,
    preset,
    sliced_wasserstein,
    tcd_sample,
)
from tcd_sample.toy._backend import load_backend, to_numpy

N = 4000
MODELS = {"teacher": TeacherModel, "distilled": DistilledModel}


def _diffusers_lcm_loop(monkeypatch, model, config, steps, num_samples, seed):
    """diffusers' LCMScheduler driving ``model`` on torch float32, with the toy's host noise.

    ``randn_tensor`` in diffusers' LCM module is replaced by the next N(0, I) draw of
    ``default_rng(seed)``, the toy's generator, so both loops see the same numbers; the draws
    the scheduler asks for are counted.
    """
    from diffusers import LCMScheduler
    from diffusers.schedulers import scheduling_lcm

    rng = np.random.default_rng(seed)

    def host_normal():
        return torch.from_numpy(rng.standard_normal((num_samples, 2)).astype(np.float32))

    calls = []

    def fake_randn(shape, generator=None, device=None, dtype=None, **kwargs):
        assert tuple(shape) == (num_samples, 2) and dtype == torch.float32
        calls.append(len(calls))
        return host_normal()

    monkeypatch.setattr(scheduling_lcm, "randn_tensor", fake_randn)
    scheduler = LCMScheduler(**config.to_dict())
    scheduler.set_timesteps(steps)
    table = to_numpy(alphas_cumprod(config)).astype(np.float64)
    x = host_normal()
    with torch.no_grad():
        for t in scheduler.timesteps.tolist():
            eps = model(x, t)
            out = epsilon_to_prediction(eps, x, float(table[t]), config.prediction_type)
            x = scheduler.step(out, t, x).prev_sample
    return x, scheduler.timesteps.numpy(), len(calls)


@pytest.fixture
def one_torch_thread():
    # the toy's arrays are tiny: intra-op threads only add synchronisation (as in tcd-sample)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DIFFUSERS_CASES = [(name, steps, "epsilon") for name in MODELS for steps in (1, 2, 4, 8)] + [
    (name, 3, kind) for name in MODELS for kind in ("sample", "v_prediction")
]


@pytest.mark.parametrize("name,steps,kind", DIFFUSERS_CASES)
def test_lcm_sample_is_diffusers_lcm_scheduler_on_the_toy(
    monkeypatch, one_torch_thread, name, steps, kind
):
    config = TCDConfig(prediction_type=kind)
    model = MODELS[name](preset("rings"), alphas_cumprod(config))
    ref, ref_timesteps, draws = _diffusers_lcm_loop(monkeypatch, model, config, steps, 200, 5)
    run = lcm_sample(model, config, steps, 200, 5, load_backend("torch"))
    np.testing.assert_array_equal(run.timesteps, ref_timesteps)
    assert draws == steps - 1 == int(lcm_timesteps(config, steps).noise_mask().sum())
    assert run.samples.dtype == torch.float32
    assert torch.equal(run.samples, ref)  # bit for bit: same plan, same step, same noise


def test_lcm_sample_differs_from_tcd_sample(config, table):
    # not the TCD loop under another name: same x_T, but after one renoising they part
    model = DistilledModel(preset("ring"), table)
    lcm = lcm_sample(model, config, 2, 300, 0).samples
    tcd = tcd_sample(model, config, 2, 1.0, 300, 0).samples
    assert np.max(np.abs(lcm - tcd)) > 0.1


def test_one_lcm_step_is_the_consistency_function_and_draws_no_noise(config, table):
    # one step is final: denoised = c_out·x̂₀ + c_skip·x_T, from the same x_T as TCD's first
    # draw; the seed's later numbers are never used
    model = TeacherModel(preset("pair"), table)
    run = lcm_sample(model, config, 1, 200, 3)
    x_t = np.random.default_rng(3).standard_normal((200, 2)).astype(np.float32)
    a = float(table[999])
    x0 = (x_t - np.sqrt(1 - a) * model(x_t, 999)) / np.sqrt(a)
    c_skip = 0.25 / ((999 * 10.0) ** 2 + 0.25)
    c_out = 999 * 10.0 / np.sqrt((999 * 10.0) ** 2 + 0.25)
    # float32 loop against float64 maths on the float32 ε: 1/√ᾱ_T ≈ 15 amplifies its rounding
    np.testing.assert_allclose(run.samples, c_out * x0 + c_skip * x_t, rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "jax", "array_api_strict"])
@pytest.mark.parametrize("name", ["teacher", "distilled"])
def test_lcm_backends_agree(one_torch_thread, backend, name, config, table):
    if backend == "array_api_strict":
        import array_api_strict as xp
    else:
        xp = load_backend(backend)
    model = MODELS[name](preset("rings"), table)
    base = lcm_sample(model, config, 3, 400, 0, trajectory=3)
    other = lcm_sample(model, config, 3, 400, 0, xp, trajectory=3)
    assert other.samples.dtype == xp.float32
    # float32 end to end; the same bounds as TCD's backend test (test_sample_quality.py)
    got = to_numpy(other.samples)
    np.testing.assert_allclose(got, base.samples, atol=1e-3)
    assert np.mean(np.abs(got - base.samples) < 1e-5) > 0.98
    np.testing.assert_allclose(other.trajectory, base.trajectory, atol=1e-3)
    assert other.trajectory.shape == (4, 3, 2)


def test_lcm_same_seed_same_samples_other_seed_other_samples(config, table):
    model = DistilledModel(preset("ring"), table)
    a = lcm_sample(model, config, 2, 300, 5).samples
    b = lcm_sample(model, config, 2, 300, 5).samples
    c = lcm_sample(model, config, 2, 300, 6).samples
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 0.1


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_lcm_with_the_distilled_model_stays_near_the_noise_floor(
    steps, ring_reference, config, table, alpha0
):
    m, ref = ring_reference
    x = lcm_sample(DistilledModel(m, table), config, steps, N, seed=steps).samples
    assert sliced_wasserstein(x.astype(np.float64), ref) < 0.08
    shares, off = component_shares(x, m.noised(alpha0))
    assert off < 0.01
    np.testing.assert_allclose(shares, m.weights, atol=0.03)


def test_lcm_with_the_teacher_collapses_in_one_step_and_improves_with_steps(
    ring_reference, config, table
):
    m, ref = ring_reference
    model = TeacherModel(m, table)
    d = [sliced_wasserstein(lcm_sample(model, config, s, N, 0).samples, ref) for s in (1, 2, 4, 8)]
    assert d[0] > 0.8
    assert d == sorted(d, reverse=True)


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
    lcm = _spread(lcm_sample(model, config, 4, N, 0).samples.astype(np.float64), target)
    tcd = _spread(tcd_sample(model, config, 4, 1.0, N, 0).samples.astype(np.float64), target)
    assert _spread(exact, target) == pytest.approx(0.104, abs=0.003)
    assert tcd == pytest.approx(0.104, abs=0.003)
    assert lcm < 0.092
