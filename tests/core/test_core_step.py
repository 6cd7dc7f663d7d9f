"""tcd_step against the reference's step: torch bit-identical, other backends within tolerance."""

from __future__ import annotations

import float32_bound as fb
import numpy as np
import pytest
import torch
from core_helpers import (
    BACKENDS,
    DTYPES,
    NON_TORCH,
    TORCH_DTYPES,
    assert_bounded,
    assert_close_scaled,
    assert_identical,
    bound_table,
    dtype_name,
    namespace_of,
    reference,
    to_backend,
    to_numpy,
)
from core_strategies import configs, etas, examples, f32_exact_etas, valid_plan_kwargs
from hypothesis import given, settings
from hypothesis import strategies as st

from tcd_core import (
    TCDConfig,
    draws_noise,
    intermediate_timestep,
    noise_schedule,
    step_coefficients,
    tcd_step,
    tcd_timesteps,
    tcd_update,
)

SHAPES = st.sampled_from(((1, 4, 8, 8), (2, 4, 4, 4), (3, 2, 5), (1, 3)))


@st.composite
def step_cases(draw, dtypes=("float32",)):
    """A reference scheduler state at a random step of a random valid plan, with inputs."""
    config = draw(configs())
    kwargs = draw(valid_plan_kwargs(config))
    n = kwargs.pop("num_inference_steps", None)
    plan = tcd_timesteps(config, n, **kwargs)
    i = draw(st.integers(0, len(plan.timesteps) - 1))
    return {
        "config": config,
        "plan_kwargs": dict(kwargs, num_inference_steps=n) if n else kwargs,
        "plan": plan,
        "index": i,
        "eta": draw(etas),
        "shape": draw(SHAPES),
        "dtype": draw(st.sampled_from(dtypes)),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "scale": draw(st.sampled_from((1.0, 0.1, 10.0))),
    }


MAX_STEPS_PER_EXAMPLE = 6


def run_reference(case):
    """Run the reference from step case['index'] for up to MAX_STEPS_PER_EXAMPLE steps.

    Returns one record per step: (step index, model_output, sample, noise, reference output),
    where noise is the z the reference drew (None when it drew none), redrawn from a clone of the
    generator state captured before ``step``.
    """
    config, plan, start = case["config"], case["plan"], case["index"]
    dtype = TORCH_DTYPES[case["dtype"]]
    sched = reference(config)
    sched.set_timesteps(**{k: v for k, v in case["plan_kwargs"].items() if v is not None})
    np.testing.assert_array_equal(sched.timesteps.numpy(), plan.timesteps)
    sched.set_begin_index(start)
    g = torch.Generator().manual_seed(case["seed"])
    sample = (case["scale"] * torch.randn(case["shape"], generator=g)).to(dtype)
    records = []
    for i in range(start, min(start + MAX_STEPS_PER_EXAMPLE, len(plan.timesteps))):
        model_output = (case["scale"] * torch.randn(case["shape"], generator=g)).to(dtype)
        before = g.get_state()
        out = sched.step(model_output, sched.timesteps[i], sample, eta=case["eta"], generator=g)
        drew = not torch.equal(before, g.get_state())
        assert drew == draws_noise(i, case["eta"], plan.num_inference_steps)
        noise = None
        if drew:  # redraw the very same z from a clone of the generator
            clone = torch.Generator().set_state(before)
            noise = torch.randn(case["shape"], generator=clone, dtype=dtype)
        records.append((i, model_output, sample, noise, out))
        sample = out.prev_sample
    return records


def run_ours(case, backend, i, model_output, sample, noise, *, table="own"):
    """Our step on ``backend``; ``table="reference"`` uses the reference's ᾱ table moved there."""
    config, plan = case["config"], case["plan"]
    dt = case["dtype"]
    xp = namespace_of(backend)
    if table == "own":
        ac = noise_schedule(config, xp).alphas_cumprod
    else:
        ac = to_backend(reference(config).alphas_cumprod.numpy(), backend, "float32")
    if backend == "torch":
        args = (model_output, sample, noise)
    else:
        args = [
            None if a is None else to_backend(a, backend, dt) for a in (model_output, sample, noise)
        ]
    out = tcd_step(
        args[0],
        int(plan.timesteps[i]),
        args[1],
        int(plan.prev_timesteps[i]),
        ac,
        eta=case["eta"],
        noise=args[2],
        config=config,
    )
    for x in out:
        assert dtype_name(x) == dt
    return out


@given(step_cases(dtypes=("float32", "float16", "bfloat16", "float64")))
def test_torch_step_is_bit_identical_to_the_reference(case):
    for i, model_output, sample, noise, ref in run_reference(case):
        mo0, x0 = model_output.clone(), sample.clone()
        ours = run_ours(case, "torch", i, model_output, sample, noise)
        assert_identical(ours.prev_sample, ref.prev_sample, f"prev_sample at step {i}")
        assert_identical(ours.pred_noised_sample, ref.pred_noised_sample, f"x_s at step {i}")
        assert torch.equal(model_output, mo0) and torch.equal(sample, x0)  # inputs not mutated


def step_bound(case, tab, i, model_output, sample, noise):
    """The derived bounds (tests/float32_bound.py) on |ours − reference| for x_p and x_s of one
    step from the reference's input state, on the tables ``tab`` (:func:`bound_table`)."""
    config, plan = case["config"], case["plan"]
    x = fb.Bounded.exact(to_numpy(sample), tab.dev)
    p = int(plan.prev_timesteps[i])
    s = int(intermediate_timestep(p, case["eta"]))
    z = None if noise is None else to_numpy(noise)
    x_p, x_s = fb.tcd_step(
        config.prediction_type,
        to_numpy(model_output),
        x,
        z,
        tab,
        int(plan.timesteps[i]),
        s,
        p,
        noise is not None,
    )
    return x_p.err, x_s.err


def check_other_backend(case, backend) -> float:
    """One example of the family below; returns the worst |Δ|/bound (float32 and float64)."""
    tab = bound_table(reference(case["config"]).alphas_cumprod, case["config"], backend)
    worst = 0.0
    for i, model_output, sample, noise, ref in run_reference(case):
        ours = run_ours(case, backend, i, model_output, sample, noise)
        if case["dtype"] in ("float32", "float64"):
            b_p, b_s = step_bound(case, tab, i, model_output, sample, noise)
            worst = max(
                worst,
                assert_bounded(ours.prev_sample, ref.prev_sample, b_p, f"x_p, step {i}"),
                assert_bounded(ours.pred_noised_sample, ref.pred_noised_sample, b_s, "x_s"),
            )
        else:
            assert_close_scaled(ours.prev_sample, ref.prev_sample, case["dtype"], f"x_p {i}")
            assert_close_scaled(ours.pred_noised_sample, ref.pred_noised_sample, case["dtype"])
    return worst


@pytest.mark.parametrize("backend", NON_TORCH)
@settings(max_examples=examples(30))
@given(data=st.data())
def test_other_backends_match_the_reference_within_tolerance(backend, data):
    """Each step from the reference's own input state, so per-step errors do not compound:
    float32/float64 within the derived bound (tests/float32_bound.py), each backend on its own
    ᾱ table (with zero-SNR it differs from torch's by the rescale's amplified sqrt ulps, an input
    difference the bound carries through the step); halves within a few ulps of their dtype."""
    check_other_backend(data.draw(step_cases(dtypes=DTYPES[backend])), backend)


@pytest.mark.parametrize("backend", NON_TORCH)
def test_the_step_bound_is_neither_violated_nor_vacuous(backend):
    """Over the float32 family above, the worst |Δ|/bound lies in [1/TIGHTNESS, 1]."""
    fb.assert_tight_over(
        lambda case: check_other_backend(case, backend), step_cases(("float32",)), 30
    )


def test_zero_snr_epsilon_at_last_train_step_divides_by_zero_like_the_reference():
    """ᾱ[N−1] = 0 under zero-SNR: epsilon prediction at t = N−1 gives the reference's inf/nan."""
    config = TCDConfig(rescale_betas_zero_snr=True)
    sched = reference(config)
    sched.set_timesteps(4)
    assert float(sched.alphas_cumprod[-1]) == 0.0
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sample[0, 0, 0, 0] = 0.0
    mo = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    mo[0, 0, 0, 0] = 0.0  # 0/0 -> nan in one entry, ±inf elsewhere
    ref = sched.step(mo, sched.timesteps[0], sample, eta=0.0)
    ours = tcd_step(
        mo,
        999,
        sample,
        759,
        noise_schedule(config, namespace_of("torch")).alphas_cumprod,
        eta=0.0,
        config=config,
    )
    assert torch.isnan(ref.prev_sample).any() and torch.isinf(ref.prev_sample).any()
    assert_identical(ours.prev_sample, ref.prev_sample)
    for backend in NON_TORCH:
        xp = namespace_of(backend)
        o = tcd_step(
            to_backend(mo, backend, "float32"),
            999,
            to_backend(sample, backend, "float32"),
            759,
            noise_schedule(config, xp).alphas_cumprod,
            eta=0.0,
            config=config,
        )
        a, b = to_numpy(o.prev_sample), ref.prev_sample.double().numpy()
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_array_equal(a[np.isinf(b)], b[np.isinf(b)])


# ------------------------------------------------------------------ per-batch arrays


@st.composite
def batch_cases(draw):
    config = draw(configs())
    n_train = config.num_train_timesteps
    b = draw(st.integers(1, 4))
    ts = draw(st.lists(st.integers(1, n_train - 1), min_size=b, max_size=b))
    ps = [draw(st.integers(0, t - 1)) for t in ts]
    es = draw(st.lists(f32_exact_etas, min_size=b, max_size=b))
    return config, ts, ps, es, draw(st.integers(0, 2**31 - 1))


def _index_array(values, backend):
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(values, dtype=jnp.int32)
    if backend == "array_api_strict":
        import array_api_strict as xs

        return xs.asarray(values, dtype=xs.int64)
    if backend == "torch":
        return torch.tensor(values, dtype=torch.int64)
    return np.asarray(values, dtype=np.int64)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=examples(15))
@given(batch_cases(), st.sampled_from(("float32", "float16", "bfloat16", "float64")))
def test_per_batch_arrays_equal_per_sample_scalar_calls(backend, case, dtype):
    config, ts, ps, es, seed = case
    if dtype not in DTYPES[backend]:
        dtype = "float32"
    b = len(ts)
    g = torch.Generator().manual_seed(seed)
    mo, x, z = (torch.randn(b, 3, 4, 4, generator=g) for _ in range(3))
    mo, x, z = (to_backend(a, backend, dtype) for a in (mo, x, z))
    xp = namespace_of(backend)
    ac = noise_schedule(config, xp).alphas_cumprod
    eta_arr = to_backend(np.asarray(es, np.float32), backend, "float32")
    batched = tcd_step(
        mo,
        _index_array(ts, backend),
        x,
        _index_array(ps, backend),
        ac,
        eta=eta_arr,
        noise=z,
        config=config,
    )
    for field, got in zip(batched._fields, batched):
        assert dtype_name(got) == dtype
        singles = [
            to_numpy(
                tcd_step(
                    mo[j : j + 1, ...],
                    ts[j],
                    x[j : j + 1, ...],
                    ps[j],
                    ac,
                    eta=es[j],
                    noise=z[j : j + 1, ...],
                    config=config,
                )[batched._fields.index(field)]
            )
            for j in range(b)
        ]
        want = np.concatenate(singles)
        if dtype in ("float32", "float64"):
            # the same operations on the same values: equal to within one rounding of the result
            assert_close_scaled(got, want, "float32" if dtype == "float32" else "float64", field)
        else:
            # per-batch half: float32 coefficient arrays promote, so one final rounding instead of
            # one per operation (see docs/parity.md, "Numerics")
            assert_close_scaled(got, want, dtype, field)


def test_per_batch_float32_is_exact_on_numpy_and_torch():
    """A batch of different (t, p, η) gives exactly the per-sample results in float32."""
    config = TCDConfig()
    ts, ps, es = [999, 759, 499, 259], [759, 499, 259, 0], [0.0, 0.25, 0.5, 1.0]
    for backend in ("numpy", "torch"):
        g = torch.Generator().manual_seed(3)
        mo, x, z = (
            to_backend(torch.randn(4, 4, 8, 8, generator=g), backend, "float32") for _ in range(3)
        )
        ac = noise_schedule(config, namespace_of(backend)).alphas_cumprod
        out = tcd_step(
            mo,
            _index_array(ts, backend),
            x,
            _index_array(ps, backend),
            ac,
            eta=to_backend(np.asarray(es), backend, "float64"),
            noise=z,
            config=config,
        )
        for j in range(4):
            one = tcd_step(
                mo[j : j + 1, ...],
                ts[j],
                x[j : j + 1, ...],
                ps[j],
                ac,
                eta=es[j],
                noise=z[j : j + 1, ...],
                config=config,
            )
            np.testing.assert_array_equal(
                to_numpy(out.prev_sample[j : j + 1, ...]), to_numpy(one.prev_sample)
            )


# ------------------------------------------------------------------ purity and dtypes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prediction_type", ("epsilon", "sample", "v_prediction"))
def test_pure_deterministic_and_dtype_preserving(backend, prediction_type):
    config = TCDConfig(prediction_type=prediction_type, thresholding=True, sample_max_value=2.0)
    xp = namespace_of(backend)
    ac = noise_schedule(config, xp).alphas_cumprod
    ac_before = to_numpy(ac).copy()
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    for dtype in DTYPES[backend]:
        g = torch.Generator().manual_seed(0)
        mo, x, z = (
            to_backend(torch.randn(2, 3, 4, 4, generator=g), backend, dtype) for _ in range(3)
        )
        before = [to_numpy(a).copy() for a in (mo, x, z)]
        first = tcd_step(mo, 759, x, 499, ac, eta=0.3, noise=z, config=config)
        second = tcd_step(mo, 759, x, 499, ac, eta=0.3, noise=z, config=config)
        for a, b in zip(first, second):
            assert dtype_name(a) == dtype
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
        for a, b in zip(before, (mo, x, z)):
            np.testing.assert_array_equal(to_numpy(b), a)
    np.testing.assert_array_equal(to_numpy(ac), ac_before)
    # no randomness of its own: the global generators did not move
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_noise_means_x_p_equals_x_s_and_eta0_or_last_step_ignores_noise(backend):
    config = TCDConfig()
    ac = noise_schedule(config, namespace_of(backend)).alphas_cumprod
    g = torch.Generator().manual_seed(0)
    mo, x, z = (
        to_backend(torch.randn(1, 4, 4, 4, generator=g), backend, "float32") for _ in range(3)
    )
    with pytest.raises(ValueError, match="`noise`"):  # η > 0 and p > 0: the step re-noises
        tcd_step(mo, 759, x, 499, ac, eta=0.3, config=config)
    coefficients = step_coefficients(ac, 759, 499, eta=0.3, ndim=4)
    no_noise = tcd_update(coefficients, mo, x, config=config)  # unchecked: x_p = x_s
    np.testing.assert_array_equal(
        to_numpy(no_noise.prev_sample), to_numpy(no_noise.pred_noised_sample)
    )
    for t, p, eta in ((759, 499, 0.0), (259, 0, 0.3), (259, 0, 1.0)):
        a = tcd_step(mo, t, x, p, ac, eta=eta, noise=z, config=config)
        b = tcd_step(mo, t, x, p, ac, eta=eta, config=config)
        np.testing.assert_array_equal(to_numpy(a.prev_sample), to_numpy(b.prev_sample))
    with_noise = tcd_step(mo, 759, x, 499, ac, eta=0.3, noise=z, config=config)
    assert not np.array_equal(to_numpy(with_noise.prev_sample), to_numpy(no_noise.prev_sample))


@pytest.mark.parametrize(("eta", "p", "s_f32", "s_f64"), [(0.3, 90, 63, 62), (0.9, 10, 1, 0)])
def test_step_uses_the_float32_floor_where_float64_differs(eta, p, s_f32, s_f64):
    """A custom plan [999, p]: the reference's intermediate timestep is the float32 floor; our step
    equals it bit for bit on torch (and within tolerance elsewhere), and would not with s_f64."""
    config = TCDConfig()
    sched = reference(config)
    sched.set_timesteps(timesteps=[999, p])
    g = torch.Generator().manual_seed(0)
    mo, x = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    before = g.get_state()
    ref = sched.step(mo, sched.timesteps[0], x, eta=eta, generator=g)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().set_state(before))
    ac = noise_schedule(config, namespace_of("torch")).alphas_cumprod
    ours = tcd_step(mo, 999, x, p, ac, eta=eta, noise=z, config=config)
    assert_identical(ours.prev_sample, ref.prev_sample)
    x0 = ours.pred_original_sample
    wrong = ac[s_f64].sqrt() * x0 + (1 - ac[s_f64]).sqrt() * mo
    right = ac[s_f32].sqrt() * x0 + (1 - ac[s_f32]).sqrt() * mo
    assert torch.equal(right, ref.pred_noised_sample) and not torch.equal(
        wrong, ref.pred_noised_sample
    )
    for backend in NON_TORCH:
        got = tcd_step(
            to_backend(mo, backend, "float32"),
            999,
            to_backend(x, backend, "float32"),
            p,
            noise_schedule(config, namespace_of(backend)).alphas_cumprod,
            eta=eta,
            noise=to_backend(z, backend, "float32"),
            config=config,
        )
        assert_close_scaled(got.prev_sample, ref.prev_sample, "float32", backend)
