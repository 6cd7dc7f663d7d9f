"""The step of both algorithms (``tcd_core.step``) against its reference's step (diffusers'
TCDScheduler.step, LCMScheduler.step): torch bit-identical (float32/16/bf16/64, every prediction
type and schedule, LCM's clipping and thresholding, tensor and int timesteps), other backends
within the derived bound, whole pipeline loops, per-batch arrays, purity, where noise matters;
then each algorithm's own checks (TCD's float32 floor of s, LCM's boundary conditions)."""

from __future__ import annotations

from typing import Any, NamedTuple

import float32_bound as fb
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from core_helpers import (
    BACKENDS,
    DTYPES,
    NON_TORCH,
    TOL,
    TORCH_DTYPES,
    assert_bounded,
    assert_close_scaled,
    assert_identical,
    bound_table,
    dtype_name,
    each_algorithm,
    namespace_of,
    reference,
    to_backend,
    to_numpy,
)
from core_strategies import configs, etas, examples, f32_exact_etas, valid_plan_kwargs
from hypothesis import given, settings
from hypothesis import strategies as st

from tcd_core import (
    LCM,
    TCD,
    TCDConfig,
    alphas_cumprod,
    coefficients,
    intermediate_timestep,
    noise_schedule,
    plan_timesteps,
    step,
    update,
)

SHAPES = st.sampled_from(((1, 4, 8, 8), (2, 4, 4, 4), (3, 2, 5), (1, 3)))
ALL_DTYPES = ("float32", "float16", "bfloat16", "float64")
MAX_STEPS_PER_EXAMPLE = 6


def own(algorithm, value=None) -> dict:
    """The step's argument of the algorithm's own: TCD's η (0.3 unless given), LCM's final flag
    (False unless given)."""
    if algorithm.has_eta:
        return {"eta": 0.3 if value is None else value}
    return {"final": False if value is None else value}


@st.composite
def algorithm_configs(draw, algorithm):
    """The whole config space of tests/core; for LCM also clipping and thresholding, which its
    reference honours (TCD's ignores both)."""
    config = draw(configs())
    if algorithm.has_eta:
        return config
    post = draw(st.sampled_from(("none", "none", "clip", "threshold")))
    if post == "clip":
        config = config.replace(
            clip_sample=True, clip_sample_range=draw(st.sampled_from((1.0, 0.5, 2.0)))
        )
    elif post == "threshold":
        config = config.replace(
            thresholding=True,
            dynamic_thresholding_ratio=draw(st.sampled_from((0.995, 0.9, 0.5))),
            sample_max_value=draw(st.sampled_from((1.0, 1.5, 3.0))),
        )
    return config


@st.composite
def step_cases(draw, algorithm, dtypes=("float32",)):
    """A reference scheduler state at a random step of a random valid plan, with inputs."""
    config = draw(algorithm_configs(algorithm))
    kwargs = draw(valid_plan_kwargs(config, algorithm))
    n = kwargs.pop("num_inference_steps", None)
    plan = plan_timesteps(algorithm, config, n, **kwargs)
    shape = draw(SHAPES)
    if config.thresholding and len(shape) < 3:
        # the reference's _threshold_sample crashes on 2-D samples (np.prod(()) is a float
        # reshape size); ours thresholds them (test_core_thresholding)
        shape = (2, 4, 4, 4)
    return {
        "algorithm": algorithm,
        "config": config,
        "plan_kwargs": dict(kwargs, num_inference_steps=n) if n else kwargs,
        "plan": plan,
        "index": draw(st.integers(0, len(plan.timesteps) - 1)),
        "eta": draw(etas) if algorithm.has_eta else None,
        "tensor_timestep": draw(st.booleans()),  # pipelines pass tensors; users may pass ints
        "shape": shape,
        "dtype": draw(st.sampled_from(dtypes)),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "scale": draw(st.sampled_from((1.0, 0.1, 10.0))),
    }


def run_reference(case):
    """The reference from step case['index'] for up to MAX_STEPS_PER_EXAMPLE steps: one record
    (i, timestep as passed, model_output, sample, noise, output) per step; the noise is redrawn
    from a clone of the generator state captured before ``step`` (None when none was drawn)."""
    algorithm, plan, start = case["algorithm"], case["plan"], case["index"]
    dtype = TORCH_DTYPES[case["dtype"]]
    sched = reference(case["config"], algorithm)
    sched.set_timesteps(**case["plan_kwargs"])
    np.testing.assert_array_equal(sched.timesteps.numpy(), plan.timesteps)
    sched.set_begin_index(start)
    g = torch.Generator().manual_seed(case["seed"])
    sample = (case["scale"] * torch.randn(case["shape"], generator=g)).to(dtype)
    eta = {"eta": case["eta"]} if algorithm.has_eta else {}
    mask = plan.noise_mask(case["eta"])
    records = []
    for i in range(start, min(start + MAX_STEPS_PER_EXAMPLE, len(plan.timesteps))):
        model_output = (case["scale"] * torch.randn(case["shape"], generator=g)).to(dtype)
        t = sched.timesteps[i] if case["tensor_timestep"] else int(plan.timesteps[i])
        before = g.get_state()
        out = sched.step(model_output, t, sample, generator=g, **eta)
        drew = not torch.equal(before, g.get_state())
        assert drew == bool(mask[i]), (i, plan)  # the plan knows where the reference draws
        noise = None
        if drew:  # redraw the very same z from a clone of the generator
            clone = torch.Generator().set_state(before)
            estimate = getattr(out, algorithm.estimate)
            noise = torch.randn(case["shape"], generator=clone, dtype=estimate.dtype)
        records.append((i, t, model_output, sample, noise, out))
        sample = out.prev_sample
    return records


def run_ours(case, backend, i, t, model_output, sample, noise):
    algorithm, config, plan = case["algorithm"], case["config"], case["plan"]
    dt = case["dtype"]
    ac = noise_schedule(config, namespace_of(backend)).alphas_cumprod
    if backend == "torch":
        args = (model_output, sample, noise)
    else:
        args = [
            None if a is None else to_backend(a, backend, dt) for a in (model_output, sample, noise)
        ]
        if isinstance(t, torch.Tensor):
            t = to_backend(t, backend)
    mine = own(algorithm, case["eta"] if algorithm.has_eta else bool(plan.final_steps()[i]))
    p = int(plan.next_timesteps[i])
    out = step(algorithm, args[0], t, args[1], p, ac, noise=args[2], config=config, **mine)
    for x in out:
        assert dtype_name(x) == dt
    return out


@each_algorithm
@given(data=st.data())
def test_torch_step_is_bit_identical_to_the_reference(algorithm, data):
    case = data.draw(step_cases(algorithm, ALL_DTYPES))
    for i, t, model_output, sample, noise, ref in run_reference(case):
        mo0, x0 = model_output.clone(), sample.clone()
        ours = run_ours(case, "torch", i, t, model_output, sample, noise)
        assert_identical(ours.next_sample, ref.prev_sample, f"next sample at step {i}")
        estimate = getattr(ref, algorithm.estimate)
        assert_identical(ours.estimate, estimate, f"{algorithm.estimate} at step {i}")
        assert torch.equal(model_output, mo0) and torch.equal(sample, x0)  # inputs not mutated


def step_bound(case, tab, i, t, model_output, sample, noise):
    """The derived bounds (tests/float32_bound.py) on |ours − reference| for the next sample and
    the estimate of one step from the reference's input state, on the tables ``tab``
    (:func:`bound_table`)."""
    config, plan = case["config"], case["plan"]
    x = fb.Bounded.exact(to_numpy(sample), tab.dev)
    z = None if noise is None else to_numpy(noise)
    p = int(plan.next_timesteps[i])
    mo, drew = to_numpy(model_output), noise is not None
    if case["algorithm"].has_eta:
        s = int(intermediate_timestep(p, case["eta"]))
        nxt, estimate = fb.tcd_step(config.prediction_type, mo, x, z, tab, int(t), s, p, drew)
    else:
        nxt, estimate = fb.lcm_step(config.prediction_type, mo, x, z, tab, int(t), p, drew, config)
    return nxt.err, estimate.err


def check_other_backend(case, backend) -> float:
    """One example of the family below; returns the worst |Δ|/bound (float32 and float64)."""
    algorithm, config, dtype = case["algorithm"], case["config"], case["dtype"]
    tab = bound_table(reference(config, algorithm).alphas_cumprod, config, backend)
    clipped_half = dtype in ("float16", "bfloat16") and (config.clip_sample or config.thresholding)
    worst = 0.0
    for i, t, model_output, sample, noise, ref in run_reference(case):
        ours = run_ours(case, backend, i, t, model_output, sample, noise)
        pairs = (
            (ours.next_sample, ref.prev_sample),
            (ours.estimate, getattr(ref, algorithm.estimate)),
        )
        if dtype in ("float32", "float64"):
            bounds = step_bound(case, tab, i, t, model_output, sample, noise)
            for (a, b), bound, what in zip(pairs, bounds, ("next", algorithm.estimate)):
                worst = max(worst, assert_bounded(a, b, bound, f"{what}, step {i}"))
        elif clipped_half:
            scale = _unclipped_scale(config, int(case["plan"].timesteps[i]), model_output, sample)
            for a, b in pairs:
                _assert_close_on_scale(a, b, dtype, scale, f"step {i}")
        else:
            for (a, b), what in zip(pairs, ("next", algorithm.estimate)):
                assert_close_scaled(a, b, dtype, f"{what}, step {i}")
    return worst


@each_algorithm
@pytest.mark.parametrize("backend", NON_TORCH)
@settings(max_examples=examples(30))
@given(data=st.data())
def test_other_backends_match_the_reference_within_tolerance(algorithm, backend, data):
    """Each step from the reference's own input state, so per-step errors do not compound:
    float32/float64 within the derived bound (tests/float32_bound.py), each backend on its own
    ᾱ table (with zero-SNR it differs from torch's by the rescale's amplified sqrt ulps, an input
    difference the bound carries through the step); halves within a few ulps of their dtype."""
    check_other_backend(data.draw(step_cases(algorithm, DTYPES[backend])), backend)


@each_algorithm
@pytest.mark.parametrize("backend", NON_TORCH)
def test_the_step_bound_is_neither_violated_nor_vacuous(algorithm, backend):
    """Over the float32 family above, the worst |Δ|/bound lies in [1/TIGHTNESS, 1]."""
    fb.assert_tight_over(
        lambda case: check_other_backend(case, backend), step_cases(algorithm, ("float32",)), 30
    )


#: the largest |Δ| / (1 + max(|ref|, |x̂₀ before clipping|)) seen for clipped half precision
CLIPPED_HALF_MEASURED: dict[str, float] = {}


def _unclipped_scale(config, t, model_output, sample) -> float:
    """max |x̂₀| before clipping/thresholding, in float64 from the reference's ᾱ table."""
    alpha = float(reference(config, LCM).alphas_cumprod[t])
    mo, x = model_output.double(), sample.double()
    if config.prediction_type == "epsilon":
        x0 = (x - (1 - alpha) ** 0.5 * mo) / alpha**0.5
    elif config.prediction_type == "sample":
        x0 = mo
    else:
        x0 = alpha**0.5 * x - (1 - alpha) ** 0.5 * mo
    return float(x0.abs().max())


def _assert_close_on_scale(ours, ref, dtype, unclipped, what):
    """Half precision with clipping or thresholding (LCM): the reference forms
    x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ with a rounding to half after every operation, at the magnitude of x
    and ε, and only then clips it to ±clip_sample_range (or divides it by s ≥ 1). Its rounding
    errors are ulps of that pre-clip magnitude, which the clipped output no longer shows, so the
    same TOL is taken on 1 + max(|ref|, |x̂₀ before clipping|): the scale the reference actually
    rounded at. (NumPy/JAX compute in float32 and round once; they are the more accurate side.)"""
    a, b = to_numpy(ours), to_numpy(ref)
    finite = np.isfinite(b)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: nan pattern")
    if not finite.any():
        return
    scale = 1.0 + max(float(np.max(np.abs(b[finite]))), unclipped)
    err = float(np.max(np.abs(a[finite] - b[finite]))) / scale
    CLIPPED_HALF_MEASURED[dtype] = max(CLIPPED_HALF_MEASURED.get(dtype, 0.0), err)
    assert err <= TOL[dtype], f"{what}: {err:.3g} > {TOL[dtype]:.3g} ({dtype}, clipped)"


@each_algorithm
def test_full_loops_with_pipeline_timesteps_are_bit_identical(algorithm):
    """Whole 1-, 2-, 4- and 8-step loops as a pipeline runs them (tensor timesteps, one generator
    for everything, noise where the plan's noise_mask says), every prediction type: the same
    final sample and the same generator state."""
    eta = 0.3 if algorithm.has_eta else None
    ref_eta = {"eta": eta} if algorithm.has_eta else {}
    for pt in ("epsilon", "sample", "v_prediction"):
        config = TCDConfig(prediction_type=pt)
        ac = alphas_cumprod(config, namespace_of("torch"))
        for n in (1, 2, 4, 8):
            plan = plan_timesteps(algorithm, config, n)
            sched = reference(config, algorithm)
            sched.set_timesteps(n)
            g_ref, g_ours = torch.Generator().manual_seed(n), torch.Generator().manual_seed(n)
            x_ref = torch.randn(2, 4, 8, 8, generator=g_ref)
            x = torch.randn(2, 4, 8, 8, generator=g_ours)
            mask, final = plan.noise_mask(eta), plan.final_steps()
            for i, t in enumerate(sched.timesteps):
                x_ref = sched.step(0.3 * x_ref + 0.1, t, x_ref, generator=g_ref, **ref_eta)
                x_ref = x_ref.prev_sample
                z = torch.randn(x.shape, generator=g_ours) if mask[i] else None
                mine = own(algorithm, eta if algorithm.has_eta else bool(final[i]))
                p = int(plan.next_timesteps[i])
                x = step(algorithm, 0.3 * x + 0.1, t, x, p, ac, noise=z, config=config, **mine)
                x = x.next_sample
            assert_identical(x, x_ref, f"{pt}, {n} steps")
            assert torch.equal(g_ours.get_state(), g_ref.get_state())


@each_algorithm
def test_trimmed_custom_plan_draws_at_its_last_step_like_the_reference(algorithm):
    """Custom timesteps cut by strength: no kept step is final, so the reference draws noise at
    the last kept step too. TCD's draw there changes nothing (p = 0: the transition is the
    identity); LCM's renoises its estimate to ᾱ of that step's own timestep. So do the plan and
    the step."""
    config = TCDConfig()
    kwargs = {"timesteps": [999, 759, 499, 259], "strength": 0.5}
    plan = plan_timesteps(algorithm, config, **kwargs)
    assert plan.next_timesteps.tolist() == [259, 0 if algorithm is TCD else 259]
    sched = reference(config, algorithm)
    sched.set_timesteps(**kwargs)
    ref_eta = {"eta": 0.3} if algorithm.has_eta else {}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ac = alphas_cumprod(config, namespace_of("torch"))
    for i, t in enumerate(sched.timesteps):
        mo = torch.randn(1, 4, 8, 8, generator=g)
        before = g.get_state()
        ref = sched.step(mo, t, x, generator=g, **ref_eta)
        assert not torch.equal(before, g.get_state())  # drew noise, also at the last step
        z = torch.randn(1, 4, 8, 8, generator=torch.Generator().set_state(before))
        p = int(plan.next_timesteps[i])
        ours = step(algorithm, mo, t, x, p, ac, noise=z, config=config, **own(algorithm))
        assert_identical(ours.next_sample, ref.prev_sample)
        assert_identical(ours.estimate, getattr(ref, algorithm.estimate))
        identity = algorithm is TCD and p == 0
        assert torch.equal(ref.prev_sample, getattr(ref, algorithm.estimate)) == identity
        x = ref.prev_sample


@each_algorithm
def test_zero_snr_epsilon_at_last_train_step_divides_by_zero_like_the_reference(algorithm):
    """ᾱ[N−1] = 0 under zero-SNR: epsilon prediction at t = N−1 gives the reference's inf/nan
    (TCD at η = 0, LCM with the noise it draws)."""
    config = TCDConfig(rescale_betas_zero_snr=True)
    sched = reference(config, algorithm)
    sched.set_timesteps(4)
    assert float(sched.alphas_cumprod[-1]) == 0.0
    g = torch.Generator().manual_seed(0)
    sample, mo = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    sample[0, 0, 0, 0] = mo[0, 0, 0, 0] = 0.0  # 0/0 -> nan in one entry, ±inf elsewhere
    mine = own(algorithm, 0.0 if algorithm.has_eta else None)
    before = g.get_state()
    ref_eta = mine if algorithm.has_eta else {}
    ref = sched.step(mo, sched.timesteps[0], sample, generator=g, **ref_eta)
    z = None
    if not torch.equal(before, g.get_state()):
        z = torch.randn(1, 4, 8, 8, generator=torch.Generator().set_state(before))
    estimate = getattr(ref, algorithm.estimate)
    assert torch.isnan(estimate).any() and torch.isinf(estimate).any()
    ac = noise_schedule(config, namespace_of("torch")).alphas_cumprod
    ours = step(algorithm, mo, sched.timesteps[0], sample, 759, ac, noise=z, config=config, **mine)
    assert_identical(ours.next_sample, ref.prev_sample)
    assert_identical(ours.estimate, estimate)
    for backend in NON_TORCH:
        o = step(
            algorithm,
            to_backend(mo, backend, "float32"),
            999,
            to_backend(sample, backend, "float32"),
            759,
            noise_schedule(config, namespace_of(backend)).alphas_cumprod,
            noise=None if z is None else to_backend(z, backend, "float32"),
            config=config,
            **mine,
        )
        for ours_, ref_ in ((o.next_sample, ref.prev_sample), (o.estimate, estimate)):
            a, b = to_numpy(ours_), ref_.double().numpy()
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_array_equal(a[np.isinf(b)], b[np.isinf(b)])


# ------------------------------------------------------------------ per-batch arrays


def _index_array(values, backend):
    if backend == "jax":
        return jnp.asarray(values, dtype=jnp.int32)
    if backend == "array_api_strict":
        import array_api_strict as xs

        return xs.asarray(values, dtype=xs.int64)
    if backend == "torch":
        return torch.tensor(values, dtype=torch.int64)
    return np.asarray(values, dtype=np.int64)


def _bool_array(values, backend):
    if backend == "jax":
        return jnp.asarray(values, dtype=bool)
    if backend == "array_api_strict":
        import array_api_strict as xs

        return xs.asarray(values, dtype=xs.bool)
    if backend == "torch":
        return torch.tensor(values, dtype=torch.bool)
    return np.asarray(values, dtype=bool)


class Batch(NamedTuple):
    """A batch of steps: per element a timestep, a next timestep and the algorithm's own argument
    (``values``: TCD's η, LCM's final flag), with the inputs and the table of one backend."""

    model_output: Any
    timesteps: list
    sample: Any
    next_timesteps: list
    table: Any
    noise: Any
    config: TCDConfig
    values: list

    def step(self, algorithm, backend, eta_dtype="float32"):
        """One step of the whole batch, its per-element arguments as ``backend``'s arrays
        (``"host"``: NumPy; TCD's η of ``eta_dtype``)."""
        if algorithm.has_eta:
            own = {"eta": to_backend(np.asarray(self.values, eta_dtype), backend, eta_dtype)}
        else:
            own = {"final": _bool_array(self.values, backend)}
        ts, ps = (_index_array(v, backend) for v in (self.timesteps, self.next_timesteps))
        mo, x, z = self.model_output, self.sample, self.noise
        return step(algorithm, mo, ts, x, ps, self.table, noise=z, config=self.config, **own)

    def single(self, algorithm, backend, j):
        """Element ``j`` alone, with scalar arguments: TCD's timestep an int, LCM's a 0-d array
        (an int gives its reference's double-precision c_skip/c_out, an array, as in a batch,
        float32 ones)."""
        t = self.timesteps[j]
        t = t if algorithm.has_eta else _index_array(t, backend)
        mo, x, z = (a[j : j + 1, ...] for a in (self.model_output, self.sample, self.noise))
        p, config, value = self.next_timesteps[j], self.config, self.values[j]
        return step(
            algorithm, mo, t, x, p, self.table, noise=z, config=config, **own(algorithm, value)
        )


def random_batch(backend, dtype, config, ts, ps, values, seed, shape=(3, 4, 4)) -> Batch:
    g = torch.Generator().manual_seed(seed)
    inputs = (torch.randn(len(ts), *shape, generator=g) for _ in range(3))
    mo, x, z = (to_backend(a, backend, dtype) for a in inputs)
    ac = noise_schedule(config, namespace_of(backend)).alphas_cumprod
    return Batch(mo, ts, x, ps, ac, z, config, values)


@st.composite
def batch_cases(draw, algorithm):
    config = draw(algorithm_configs(algorithm))
    n_train = config.num_train_timesteps
    b = draw(st.integers(1, 4))
    ts = draw(st.lists(st.integers(1, n_train - 1), min_size=b, max_size=b))
    if algorithm.has_eta:  # p < t, η exact in float32
        ps = [draw(st.integers(0, t - 1)) for t in ts]
        values = draw(st.lists(f32_exact_etas, min_size=b, max_size=b))
    else:  # p ≤ t, final flags
        ps = [draw(st.integers(0, t)) for t in ts]
        values = draw(st.lists(st.booleans(), min_size=b, max_size=b))
    return config, ts, ps, values, draw(st.integers(0, 2**31 - 1))


@each_algorithm
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=examples(15))
@given(data=st.data(), dtype=st.sampled_from(ALL_DTYPES))
def test_per_batch_arrays_equal_per_sample_calls(algorithm, backend, data, dtype):
    """Per-batch t, next t and η (TCD) or final flags (LCM) equal B separate calls. float32 and
    float64: the same operations on the same values, equal to within one rounding of the result;
    halves: float32 coefficient arrays promote, so one final rounding instead of one per
    operation (see docs/parity.md, "Numerics")."""
    if dtype not in DTYPES[backend]:
        dtype = "float32"
    batch = random_batch(backend, dtype, *data.draw(batch_cases(algorithm)))
    batched = batch.step(algorithm, backend)
    for k, got in enumerate(batched):
        assert dtype_name(got) == dtype
        singles = [batch.single(algorithm, backend, j)[k] for j in range(len(batch.timesteps))]
        want = np.concatenate([to_numpy(a) for a in singles])
        assert_close_scaled(got, want, dtype, batched._fields[k])


#: next timesteps and the algorithm's own argument per element, for ts = [999, 759, 499, 259]
PER_BATCH = {
    TCD: ([759, 499, 259, 0], [0.0, 0.25, 0.5, 1.0]),
    LCM: ([759, 499, 259, 259], [False, False, False, True]),
}


@each_algorithm
def test_per_batch_float32_is_exact_on_numpy_and_torch(algorithm):
    """A batch of different (t, p, η or final) gives exactly the per-sample results in float32;
    its last element returns its estimate (TCD: p = 0 at η = 1, the identity transition; LCM: the
    final step)."""
    ps, values = PER_BATCH[algorithm]
    for backend in ("numpy", "torch"):
        batch = random_batch(
            backend, "float32", TCDConfig(), [999, 759, 499, 259], ps, values, 3, (4, 8, 8)
        )
        out = batch.step(algorithm, backend, eta_dtype="float64")
        for j in range(4):
            np.testing.assert_array_equal(
                to_numpy(out.next_sample[j : j + 1, ...]),
                to_numpy(batch.single(algorithm, backend, j).next_sample),
            )
        np.testing.assert_array_equal(to_numpy(out.next_sample[3]), to_numpy(out.estimate[3]))


@each_algorithm
@pytest.mark.parametrize("backend", BACKENDS)
def test_host_timestep_arrays_work_on_every_backend(algorithm, backend):
    """NumPy timesteps and η or final flags with another backend's arrays: moved to the table's
    namespace, the same result as the backend's own arrays."""
    ps, values = {TCD: ([759, 0], [0.25, 1.0]), LCM: ([759, 259], [False, True])}[algorithm]
    batch = random_batch(backend, "float32", TCDConfig(), [999, 259], ps, values, 5)
    for a, b in zip(batch.step(algorithm, "host"), batch.step(algorithm, backend)):
        assert dtype_name(a) == "float32"
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


# ------------------------------------------------------------------ purity, dtypes, noise


@each_algorithm
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prediction_type", ("epsilon", "sample", "v_prediction"))
def test_pure_deterministic_and_dtype_preserving(algorithm, backend, prediction_type):
    config = TCDConfig(prediction_type=prediction_type, thresholding=True, sample_max_value=2.0)
    xp = namespace_of(backend)
    ac = noise_schedule(config, xp).alphas_cumprod
    ac_before = to_numpy(ac).copy()
    # the legacy global NumPy generator is what "no randomness of its own" must leave alone
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    mine = own(algorithm)
    for dtype in DTYPES[backend]:
        g = torch.Generator().manual_seed(0)
        mo, x, z = (
            to_backend(torch.randn(2, 3, 4, 4, generator=g), backend, dtype) for _ in range(3)
        )
        before = [to_numpy(a).copy() for a in (mo, x, z)]
        first = step(algorithm, mo, 759, x, 499, ac, noise=z, config=config, **mine)
        second = step(algorithm, mo, 759, x, 499, ac, noise=z, config=config, **mine)
        for a, b in zip(first, second):
            assert dtype_name(a) == dtype
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
        for a, b in zip(before, (mo, x, z)):
            np.testing.assert_array_equal(to_numpy(b), a)
    np.testing.assert_array_equal(to_numpy(ac), ac_before)
    # no randomness of its own: the global generators did not move
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


#: steps where the reference draws no noise or the noise term is exactly zero: TCD at η = 0 or
#: p = 0, LCM's final step
QUIET = {
    TCD: [(759, 499, {"eta": 0.0}), (259, 0, {"eta": 0.3}), (259, 0, {"eta": 1.0})],
    LCM: [(259, 259, {"final": True})],
}


@each_algorithm
@pytest.mark.parametrize("backend", BACKENDS)
def test_noise_enters_exactly_where_the_reference_renoises(algorithm, backend):
    """Where no noise is drawn the step returns its estimate, with or without noise; elsewhere
    the noise enters and ``step`` requires it, while ``update``, unchecked, takes None as "no
    noise term" (the next sample is the estimate)."""
    ac = noise_schedule(TCDConfig(), namespace_of(backend)).alphas_cumprod
    mine = own(algorithm)
    for dtype in DTYPES[backend]:
        g = torch.Generator().manual_seed(0)
        mo, x, z = (
            to_backend(torch.randn(1, 4, 4, 4, generator=g), backend, dtype) for _ in range(3)
        )
        for t, p, quiet in QUIET[algorithm]:
            for noise in (z, None):
                out = step(algorithm, mo, t, x, p, ac, noise=noise, **quiet)
                np.testing.assert_array_equal(to_numpy(out.next_sample), to_numpy(out.estimate))
        renoised = step(algorithm, mo, 759, x, 499, ac, noise=z, **mine)
        assert not np.array_equal(to_numpy(renoised.next_sample), to_numpy(renoised.estimate))
        with pytest.raises(ValueError, match="`noise`"):
            step(algorithm, mo, 759, x, 499, ac, **mine)
        unchecked = update(algorithm, coefficients(algorithm, ac, 759, 499, ndim=4, **mine), mo, x)
        np.testing.assert_array_equal(to_numpy(unchecked.next_sample), to_numpy(unchecked.estimate))
        np.testing.assert_array_equal(to_numpy(unchecked.estimate), to_numpy(renoised.estimate))


# ------------------------------------------------------------------ each algorithm's own


@pytest.mark.parametrize(("eta", "p", "s_f32", "s_f64"), [(0.3, 90, 63, 62), (0.9, 10, 1, 0)])
def test_tcd_step_uses_the_float32_floor_where_float64_differs(eta, p, s_f32, s_f64):
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
    ours = step(TCD, mo, 999, x, p, ac, eta=eta, noise=z, config=config)
    assert_identical(ours.next_sample, ref.prev_sample)
    x0 = ours.pred_original_sample
    wrong = ac[s_f64].sqrt() * x0 + (1 - ac[s_f64]).sqrt() * mo
    right = ac[s_f32].sqrt() * x0 + (1 - ac[s_f32]).sqrt() * mo
    assert torch.equal(right, ref.pred_noised_sample) and not torch.equal(
        wrong, ref.pred_noised_sample
    )
    for backend in NON_TORCH:
        got = step(
            TCD,
            to_backend(mo, backend, "float32"),
            999,
            to_backend(x, backend, "float32"),
            p,
            noise_schedule(config, namespace_of(backend)).alphas_cumprod,
            eta=eta,
            noise=to_backend(z, backend, "float32"),
            config=config,
        )
        assert_close_scaled(got.next_sample, ref.prev_sample, "float32", backend)


def test_lcm_boundary_conditions_are_the_references():
    """c_skip, c_out (the coefficients' ``other``, ``original``) equal
    get_scalings_for_boundary_condition_discrete for int timesteps (Python doubles) and tensor
    timesteps (float32 tensors)."""
    sched = reference(TCDConfig(timestep_scaling=2.5), LCM)
    ac = alphas_cumprod(TCDConfig(timestep_scaling=2.5), namespace_of("torch"))
    for t in (0, 1, 19, 259, 999):
        ref = sched.get_scalings_for_boundary_condition_discrete(t)
        ours = coefficients(LCM, ac, t, 0, timestep_scaling=2.5)
        assert (ours.other, ours.original) == ref and isinstance(ours.other, float)
        ref_t = sched.get_scalings_for_boundary_condition_discrete(torch.tensor(t))
        ours_t = coefficients(LCM, ac, torch.tensor(t), 0, timestep_scaling=2.5)
        for a, b in zip((ours_t.other, ours_t.original), ref_t):
            assert a.dtype == torch.float32
            assert_identical(a, b)
