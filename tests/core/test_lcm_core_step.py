"""lcm_step against diffusers' LCMScheduler.step: torch bit-identical (float32/16/bf16/64, tensor and
int timesteps, clipping and thresholding), other backends within tolerance, per-batch arrays,
jax.jit / torch.compile, purity."""

from __future__ import annotations

import float32_bound as fb
import jax
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
    namespace_of,
    to_backend,
    to_numpy,
)
from core_strategies import configs, examples, plan_kwargs
from diffusers import LCMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from tcd_core import (
    TCDConfig,
    alphas_cumprod,
    lcm_step,
    lcm_step_coefficients,
    lcm_timesteps,
    lcm_update,
    noise_schedule,
)

SHAPES = st.sampled_from(((1, 4, 8, 8), (2, 4, 4, 4), (3, 2, 5), (1, 3)))
MAX_STEPS_PER_EXAMPLE = 6


def lcm_reference(config: TCDConfig) -> LCMScheduler:
    return LCMScheduler(**config.to_dict())


def _valid_lcm_kwargs(config):
    def ok(kwargs):
        kwargs = dict(kwargs)
        n = kwargs.pop("num_inference_steps", None)
        try:
            return len(lcm_timesteps(config, n, **kwargs).timesteps) > 0
        except ValueError:
            return False

    return plan_kwargs(config).filter(ok)


@st.composite
def lcm_configs(draw):
    """The whole config space of tests/core plus LCM's honoured clipping and thresholding."""
    config = draw(configs())
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
def step_cases(draw, dtypes=("float32",)):
    """A reference scheduler state at a random step of a random valid LCM plan, with inputs."""
    config = draw(lcm_configs())
    kwargs = draw(_valid_lcm_kwargs(config))
    n = kwargs.pop("num_inference_steps", None)
    plan = lcm_timesteps(config, n, **kwargs)
    shape = draw(SHAPES)
    if config.thresholding and len(shape) < 3:
        # the reference's _threshold_sample crashes on 2-D samples (np.prod(()) is a float
        # reshape size); ours thresholds them (test_core_thresholding)
        shape = (2, 4, 4, 4)
    return {
        "config": config,
        "plan_kwargs": dict(kwargs, num_inference_steps=n) if n else kwargs,
        "plan": plan,
        "index": draw(st.integers(0, len(plan.timesteps) - 1)),
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
    plan, start = case["plan"], case["index"]
    dtype = TORCH_DTYPES[case["dtype"]]
    sched = lcm_reference(case["config"])
    sched.set_timesteps(**case["plan_kwargs"])
    np.testing.assert_array_equal(sched.timesteps.numpy(), plan.timesteps)
    sched.set_begin_index(start)
    g = torch.Generator().manual_seed(case["seed"])
    sample = (case["scale"] * torch.randn(case["shape"], generator=g)).to(dtype)
    mask = plan.noise_mask()
    records = []
    for i in range(start, min(start + MAX_STEPS_PER_EXAMPLE, len(plan.timesteps))):
        model_output = (case["scale"] * torch.randn(case["shape"], generator=g)).to(dtype)
        t = sched.timesteps[i] if case["tensor_timestep"] else int(plan.timesteps[i])
        before = g.get_state()
        out = sched.step(model_output, t, sample, generator=g)
        drew = not torch.equal(before, g.get_state())
        assert drew == bool(mask[i]), (i, plan)  # the plan knows where the reference draws
        noise = None
        if drew:
            clone = torch.Generator().set_state(before)
            noise = torch.randn(case["shape"], generator=clone, dtype=out.denoised.dtype)
        records.append((i, t, model_output, sample, noise, out))
        sample = out.prev_sample
    return records


def run_ours(case, backend, i, t, model_output, sample, noise, *, table="own"):
    config, plan = case["config"], case["plan"]
    dt = case["dtype"]
    xp = namespace_of(backend)
    if table == "own":
        ac = noise_schedule(config, xp).alphas_cumprod
    else:
        ac = to_backend(lcm_reference(config).alphas_cumprod.numpy(), backend, "float32")
    if backend == "torch":
        args = (model_output, sample, noise)
    else:
        args = [
            None if a is None else to_backend(a, backend, dt) for a in (model_output, sample, noise)
        ]
        if isinstance(t, torch.Tensor):
            t = to_backend(t, backend)
    out = lcm_step(
        args[0],
        t,
        args[1],
        int(plan.prev_timesteps[i]),
        ac,
        args[2],
        final=bool(plan.final_steps()[i]),
        config=config,
    )
    for x in out:
        assert dtype_name(x) == dt
    return out


@given(step_cases(dtypes=("float32", "float16", "bfloat16", "float64")))
def test_torch_lcm_step_is_bit_identical_to_the_reference(case):
    for i, t, model_output, sample, noise, ref in run_reference(case):
        mo0, x0 = model_output.clone(), sample.clone()
        ours = run_ours(case, "torch", i, t, model_output, sample, noise)
        assert_identical(ours.prev_sample, ref.prev_sample, f"prev_sample at step {i}")
        assert_identical(ours.denoised, ref.denoised, f"denoised at step {i}")
        assert torch.equal(model_output, mo0) and torch.equal(sample, x0)  # inputs not mutated


def step_bound(case, tab, i, t, model_output, sample, noise):
    """The derived bounds (tests/float32_bound.py) on |ours − reference| for prev_sample and
    denoised of one step from the reference's input state, on the tables ``tab``
    (:func:`bound_table`)."""
    config, plan = case["config"], case["plan"]
    x = fb.Bounded.exact(to_numpy(sample), tab.dev)
    z = None if noise is None else to_numpy(noise)
    prev, denoised = fb.lcm_step(
        config.prediction_type,
        to_numpy(model_output),
        x,
        z,
        tab,
        int(t),
        int(plan.prev_timesteps[i]),
        noise is not None,
        config,
    )
    return prev.err, denoised.err


def check_other_backend(case, backend) -> float:
    """One example of the family below; returns the worst |Δ|/bound (float32 and float64)."""
    tab = bound_table(lcm_reference(case["config"]).alphas_cumprod, case["config"], backend)
    config, dtype = case["config"], case["dtype"]
    clipped_half = dtype in ("float16", "bfloat16") and (config.clip_sample or config.thresholding)
    worst = 0.0
    for i, t, model_output, sample, noise, ref in run_reference(case):
        ours = run_ours(case, backend, i, t, model_output, sample, noise)
        if dtype in ("float32", "float64"):
            b_prev, b_den = step_bound(case, tab, i, t, model_output, sample, noise)
            worst = max(
                worst,
                assert_bounded(ours.prev_sample, ref.prev_sample, b_prev, f"prev, step {i}"),
                assert_bounded(ours.denoised, ref.denoised, b_den, f"denoised, step {i}"),
            )
        elif clipped_half:
            scale = _unclipped_scale(config, int(case["plan"].timesteps[i]), model_output, sample)
            for a, b in ((ours.prev_sample, ref.prev_sample), (ours.denoised, ref.denoised)):
                _assert_close_on_scale(a, b, dtype, scale, f"step {i}")
        else:
            assert_close_scaled(ours.prev_sample, ref.prev_sample, dtype, f"prev, step {i}")
            assert_close_scaled(ours.denoised, ref.denoised, dtype, f"denoised, step {i}")
    return worst


@pytest.mark.parametrize("backend", NON_TORCH)
@settings(max_examples=examples(30))
@given(data=st.data())
def test_other_backends_match_the_lcm_reference_within_tolerance(backend, data):
    """Each step from the reference's own input state: float32/float64 within the derived bound
    (tests/float32_bound.py), each backend on its own ᾱ table (zero-SNR included); halves within
    a few ulps of their dtype."""
    check_other_backend(data.draw(step_cases(dtypes=DTYPES[backend])), backend)


@pytest.mark.parametrize("backend", NON_TORCH)
def test_the_lcm_step_bound_is_neither_violated_nor_vacuous(backend):
    """Over the float32 family above, the worst |Δ|/bound lies in [1/TIGHTNESS, 1]."""
    fb.assert_tight_over(
        lambda case: check_other_backend(case, backend), step_cases(("float32",)), 30
    )


#: the largest |Δ| / (1 + max(|ref|, |x̂₀ before clipping|)) seen for clipped half precision
CLIPPED_HALF_MEASURED: dict[str, float] = {}


def _unclipped_scale(config, t, model_output, sample) -> float:
    """max |x̂₀| before clipping/thresholding, in float64 from the reference's ᾱ table."""
    alpha = float(lcm_reference(config).alphas_cumprod[t])
    mo, x = model_output.double(), sample.double()
    if config.prediction_type == "epsilon":
        x0 = (x - (1 - alpha) ** 0.5 * mo) / alpha**0.5
    elif config.prediction_type == "sample":
        x0 = mo
    else:
        x0 = alpha**0.5 * x - (1 - alpha) ** 0.5 * mo
    return float(x0.abs().max())


def _assert_close_on_scale(ours, ref, dtype, unclipped, what):
    """Half precision with clipping or thresholding: the reference forms x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ
    with a rounding to half after every operation, at the magnitude of x and ε, and only then
    clips it to ±clip_sample_range (or divides it by s ≥ 1). Its rounding errors are ulps of
    that pre-clip magnitude, which the clipped output no longer shows, so the same TOL is taken
    on 1 + max(|ref|, |x̂₀ before clipping|): the scale the reference actually rounded at.
    (NumPy/JAX compute in float32 and round once; they are the more accurate side.)"""
    a, b = to_numpy(ours), to_numpy(ref)
    finite = np.isfinite(b)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}: nan pattern")
    if not finite.any():
        return
    scale = 1.0 + max(float(np.max(np.abs(b[finite]))), unclipped)
    err = float(np.max(np.abs(a[finite] - b[finite]))) / scale
    CLIPPED_HALF_MEASURED[dtype] = max(CLIPPED_HALF_MEASURED.get(dtype, 0.0), err)
    assert err <= TOL[dtype], f"{what}: {err:.3g} > {TOL[dtype]:.3g} ({dtype}, clipped)"


def test_full_loops_with_pipeline_timesteps_are_bit_identical():
    """Whole 1-, 2-, 4- and 8-step loops as a pipeline runs them (tensor timesteps, one generator
    for everything), every prediction type: the same final sample and the same generator state."""
    for pt in ("epsilon", "sample", "v_prediction"):
        config = TCDConfig(prediction_type=pt)
        ac = alphas_cumprod(config, namespace_of("torch"))
        for n in (1, 2, 4, 8):
            plan = lcm_timesteps(config, n)
            sched = lcm_reference(config)
            sched.set_timesteps(n)
            g_ref, g_ours = torch.Generator().manual_seed(n), torch.Generator().manual_seed(n)
            x_ref = torch.randn(2, 4, 8, 8, generator=g_ref)
            x = torch.randn(2, 4, 8, 8, generator=g_ours)
            for i, t in enumerate(sched.timesteps):
                x_ref = sched.step(0.3 * x_ref + 0.1, t, x_ref, generator=g_ref).prev_sample
                z = torch.randn(x.shape, generator=g_ours) if plan.noise_mask()[i] else None
                x = lcm_step(
                    0.3 * x + 0.1,
                    t,
                    x,
                    int(plan.prev_timesteps[i]),
                    ac,
                    z,
                    final=bool(plan.final_steps()[i]),
                    config=config,
                ).prev_sample
            assert_identical(x, x_ref, f"{pt}, {n} steps")
            assert torch.equal(g_ours.get_state(), g_ref.get_state())


def test_trimmed_custom_plan_renoises_after_its_last_step_like_the_reference():
    """Custom timesteps cut by strength: no step is final, so the reference draws noise at the
    last kept step and renoises to ᾱ of that step's own timestep; so do the plan and the step."""
    config = TCDConfig()
    plan = lcm_timesteps(config, timesteps=[999, 759, 499, 259], strength=0.5)
    sched = lcm_reference(config)
    sched.set_timesteps(timesteps=[999, 759, 499, 259], strength=0.5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ac = alphas_cumprod(config, namespace_of("torch"))
    for i, t in enumerate(sched.timesteps):
        mo = torch.randn(1, 4, 8, 8, generator=g)
        before = g.get_state()
        ref = sched.step(mo, t, x, generator=g)
        assert not torch.equal(before, g.get_state())  # drew noise, also at the last step
        z = torch.randn(1, 4, 8, 8, generator=torch.Generator().set_state(before))
        ours = lcm_step(mo, t, x, int(plan.prev_timesteps[i]), ac, z, final=False, config=config)
        assert_identical(ours.prev_sample, ref.prev_sample)
        assert not torch.equal(ref.prev_sample, ref.denoised)
        x = ref.prev_sample
    assert plan.prev_timesteps.tolist() == [259, 259]


def test_zero_snr_epsilon_at_last_train_step_divides_by_zero_like_the_reference():
    config = TCDConfig(rescale_betas_zero_snr=True)
    sched = lcm_reference(config)
    sched.set_timesteps(4)
    assert float(sched.alphas_cumprod[-1]) == 0.0
    g = torch.Generator().manual_seed(0)
    sample, mo = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    sample[0, 0, 0, 0] = mo[0, 0, 0, 0] = 0.0  # 0/0 -> nan in one entry, ±inf elsewhere
    before = g.get_state()
    ref = sched.step(mo, sched.timesteps[0], sample, generator=g)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().set_state(before))
    ac = noise_schedule(config, namespace_of("torch")).alphas_cumprod
    ours = lcm_step(mo, sched.timesteps[0], sample, 759, ac, z, config=config)
    assert torch.isnan(ref.denoised).any() and torch.isinf(ref.denoised).any()
    assert_identical(ours.prev_sample, ref.prev_sample)
    assert_identical(ours.denoised, ref.denoised)
    for backend in NON_TORCH:
        o = lcm_step(
            to_backend(mo, backend, "float32"),
            999,
            to_backend(sample, backend, "float32"),
            759,
            noise_schedule(config, namespace_of(backend)).alphas_cumprod,
            to_backend(z, backend, "float32"),
            config=config,
        )
        a, b = to_numpy(o.denoised), ref.denoised.double().numpy()
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


@st.composite
def batch_cases(draw):
    config = draw(lcm_configs())
    n_train = config.num_train_timesteps
    b = draw(st.integers(1, 4))
    ts = draw(st.lists(st.integers(1, n_train - 1), min_size=b, max_size=b))
    ps = [draw(st.integers(0, t)) for t in ts]
    finals = draw(st.lists(st.booleans(), min_size=b, max_size=b))
    return config, ts, ps, finals, draw(st.integers(0, 2**31 - 1))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=examples(15))
@given(batch_cases(), st.sampled_from(("float32", "float16", "bfloat16", "float64")))
def test_per_batch_arrays_equal_per_sample_calls(backend, case, dtype):
    """Per-batch t, previous t and final flags equal B separate calls with 0-d array timesteps
    (the array path: float32 c_skip/c_out, as for a pipeline's tensor timestep)."""
    config, ts, ps, finals, seed = case
    if dtype not in DTYPES[backend]:
        dtype = "float32"
    b = len(ts)
    g = torch.Generator().manual_seed(seed)
    mo, x, z = (to_backend(torch.randn(b, 3, 4, 4, generator=g), backend, dtype) for _ in range(3))
    ac = noise_schedule(config, namespace_of(backend)).alphas_cumprod
    batched = lcm_step(
        mo,
        _index_array(ts, backend),
        x,
        _index_array(ps, backend),
        ac,
        z,
        final=_bool_array(finals, backend),
        config=config,
    )
    for k, got in enumerate(batched):
        assert dtype_name(got) == dtype
        singles = [
            to_numpy(
                lcm_step(
                    mo[j : j + 1, ...],
                    _index_array(ts[j], backend),
                    x[j : j + 1, ...],
                    _index_array(ps[j], backend),
                    ac,
                    z[j : j + 1, ...],
                    final=finals[j],
                    config=config,
                )[k]
            )
            for j in range(b)
        ]
        assert_close_scaled(got, np.concatenate(singles), dtype, batched._fields[k])


def test_per_batch_float32_is_exact_on_numpy_and_torch():
    config = TCDConfig()
    ts, ps, finals = [999, 759, 499, 259], [759, 499, 259, 259], [False, False, False, True]
    for backend in ("numpy", "torch"):
        g = torch.Generator().manual_seed(3)
        mo, x, z = (
            to_backend(torch.randn(4, 4, 8, 8, generator=g), backend, "float32") for _ in range(3)
        )
        ac = noise_schedule(config, namespace_of(backend)).alphas_cumprod
        out = lcm_step(
            mo,
            _index_array(ts, backend),
            x,
            _index_array(ps, backend),
            ac,
            z,
            final=np.asarray(finals),
            config=config,
        )
        for j in range(4):
            one = lcm_step(
                mo[j : j + 1, ...],
                _index_array(ts[j], backend),
                x[j : j + 1, ...],
                ps[j],
                ac,
                z[j : j + 1, ...],
                final=finals[j],
                config=config,
            )
            np.testing.assert_array_equal(
                to_numpy(out.prev_sample[j : j + 1, ...]), to_numpy(one.prev_sample)
            )
        np.testing.assert_array_equal(to_numpy(out.prev_sample[3]), to_numpy(out.denoised[3]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_timestep_arrays_work_on_every_backend(backend):
    """NumPy timesteps and final flags with another backend's arrays: moved to the table's
    namespace, the same result as the backend's own index arrays."""
    config = TCDConfig()
    ac = noise_schedule(config, namespace_of(backend)).alphas_cumprod
    g = torch.Generator().manual_seed(5)
    mo, x, z = (to_backend(torch.randn(2, 3, 4, 4, generator=g), backend, "float32") for _ in "abc")
    ts, ps, finals = [999, 259], [759, 259], [False, True]
    host = lcm_step(
        mo, np.asarray(ts), x, np.asarray(ps), ac, z, final=np.asarray(finals), config=config
    )
    native = lcm_step(
        mo,
        _index_array(ts, backend),
        x,
        _index_array(ps, backend),
        ac,
        z,
        final=_bool_array(finals, backend),
        config=config,
    )
    for a, b in zip(host, native):
        assert dtype_name(a) == "float32"
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@settings(max_examples=examples(200))
@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from((0.995, 0.9, 0.5, 0.3)),
    st.integers(2, 300),
    st.sampled_from(("numpy", "torch", "array_api_strict")),
)
def test_float64_quantile_is_torch_quantile_bit_for_bit(seed, q, n, backend):
    """LCM's reference thresholds float64 samples with torch.quantile, whose interpolation is a
    fused multiply-add: the core emulates it in float64 (without it, ~0.3 % of rows were 1 ulp off,
    ~20 % of these 64-row examples, and a thresholded float64 LCM step was not bit-identical)."""
    from tcd_core import quantile

    x = (3 * torch.randn(64, n, generator=torch.Generator().manual_seed(seed))).double().abs()
    ref = torch.quantile(x, q, dim=1)
    got = quantile(to_backend(x, backend, "float64"), q, axis=1)
    np.testing.assert_array_equal(to_numpy(got), ref.numpy())


# ------------------------------------------------------------------ compile-friendliness

CONFIG = TCDConfig(thresholding=True, sample_max_value=3.0)


def _inputs(seed=0, shape=(2, 4, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(3)]


def test_jax_jit_one_trace_serves_every_timestep_and_final_flag():
    traces = []
    ac = alphas_cumprod(CONFIG, jnp)

    @jax.jit
    def step(model_output, t, sample, p, noise, final):
        traces.append(1)  # runs only while tracing
        return lcm_step(model_output, t, sample, p, ac, noise, final=final, config=CONFIG)

    mo, x, z = (to_backend(a, "jax", "float32") for a in _inputs())
    plan = lcm_timesteps(CONFIG, 8)
    ac_np = alphas_cumprod(CONFIG)
    for t, p, fin in zip(plan.timesteps.tolist(), plan.prev_timesteps.tolist(), plan.final_steps()):
        got = step(mo, jnp.asarray(t), x, jnp.asarray(p), z, jnp.asarray(fin))
        want = lcm_step(
            *(to_numpy(a).astype(np.float32) for a in (mo,)),
            np.asarray(t),
            to_numpy(x).astype(np.float32),
            p,
            ac_np,
            to_numpy(z).astype(np.float32),
            final=bool(fin),
            config=CONFIG,
        )
        for a, b in zip(got, want):
            assert a.dtype == jnp.float32
            assert_close_scaled(a, b, "float32", f"jit t={t}")
    assert len(traces) == 1


def test_torch_compile_fullgraph_equals_eager():
    """One torch.compile(fullgraph=True) graph serves every (t, p, final); it equals eager to
    1e-6 (Inductor's float32 sqrt is correctly rounded, eager's MKL one not always)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    ac = alphas_cumprod(CONFIG, namespace_of("torch"))
    mo, x, z = _inputs(2)

    def step(model_output, t, sample, p, noise, final):
        return lcm_step(model_output, t, sample, p, ac, noise, final=final, config=CONFIG)

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    for t, p, fin in ((759, 499, False), (259, 259, True)):
        args = (mo, torch.tensor(t), x, torch.tensor(p), z, torch.tensor(fin))
        got, want = compiled(*args), step(*args)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        plain = step(mo, torch.tensor(t), x, p, z, fin)  # host p and final: the same values
        for a, b in zip(want, plain):
            assert torch.equal(a, b)
    assert counters["stats"]["unique_graphs"] == 1


# ------------------------------------------------------------------ purity, dtypes, noise


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prediction_type", ("epsilon", "sample", "v_prediction"))
def test_pure_deterministic_and_dtype_preserving(backend, prediction_type):
    config = TCDConfig(prediction_type=prediction_type, thresholding=True, sample_max_value=2.0)
    xp = namespace_of(backend)
    ac = noise_schedule(config, xp).alphas_cumprod
    ac_before = to_numpy(ac).copy()
    # the legacy global NumPy generator is what "no randomness of its own" must leave alone
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    torch_state = torch.get_rng_state()
    for dtype in DTYPES[backend]:
        g = torch.Generator().manual_seed(0)
        mo, x, z = (
            to_backend(torch.randn(2, 3, 4, 4, generator=g), backend, dtype) for _ in range(3)
        )
        before = [to_numpy(a).copy() for a in (mo, x, z)]
        first = lcm_step(mo, 759, x, 499, ac, z, config=config)
        second = lcm_step(mo, 759, x, 499, ac, z, config=config)
        for a, b in zip(first, second):
            assert dtype_name(a) == dtype
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
        for a, b in zip(before, (mo, x, z)):
            np.testing.assert_array_equal(to_numpy(b), a)
    np.testing.assert_array_equal(to_numpy(ac), ac_before)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_final_step_returns_denoised_whatever_the_noise(backend):
    ac = noise_schedule(TCDConfig(), namespace_of(backend)).alphas_cumprod
    for dtype in DTYPES[backend]:
        g = torch.Generator().manual_seed(0)
        mo, x, z = (
            to_backend(torch.randn(1, 4, 4, 4, generator=g), backend, dtype) for _ in range(3)
        )
        with_noise = lcm_step(mo, 259, x, 259, ac, z, final=True)
        without = lcm_step(mo, 259, x, 259, ac, final=True)
        for out in (with_noise, without):
            np.testing.assert_array_equal(to_numpy(out.prev_sample), to_numpy(out.denoised))
        # not final: the noise enters, and lcm_step requires it; lcm_update, unchecked, takes
        # None as "no noise term" (the next sample is the estimate, as for every algorithm)
        renoised = lcm_step(mo, 759, x, 499, ac, z)
        assert not np.array_equal(to_numpy(renoised.prev_sample), to_numpy(renoised.denoised))
        with pytest.raises(ValueError, match="`noise`"):
            lcm_step(mo, 759, x, 499, ac)
        c = lcm_step_coefficients(ac, 759, 499)
        quiet = lcm_update(c, mo, x, None)
        np.testing.assert_array_equal(to_numpy(quiet.prev_sample), to_numpy(quiet.denoised))
        np.testing.assert_array_equal(to_numpy(quiet.denoised), to_numpy(renoised.denoised))


def test_boundary_condition_scalings_are_the_references():
    """c_skip, c_out equal get_scalings_for_boundary_condition_discrete for int timesteps
    (Python doubles) and tensor timesteps (float32 tensors)."""
    sched = LCMScheduler(timestep_scaling=2.5)
    ac = alphas_cumprod(TCDConfig(timestep_scaling=2.5), namespace_of("torch"))
    for t in (0, 1, 19, 259, 999):
        ref = sched.get_scalings_for_boundary_condition_discrete(t)
        ours = lcm_step_coefficients(ac, t, 0, timestep_scaling=2.5)
        assert (ours.c_skip, ours.c_out) == ref and isinstance(ours.c_skip, float)
        ref_t = sched.get_scalings_for_boundary_condition_discrete(torch.tensor(t))
        ours_t = lcm_step_coefficients(ac, torch.tensor(t), 0, timestep_scaling=2.5)
        for a, b in zip((ours_t.c_skip, ours_t.c_out), ref_t):
            assert a.dtype == torch.float32
            assert_identical(a, b)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"model_output": np.zeros((2, 3), np.float32)}, "model_output"),
        ({"noise": np.zeros((2, 3), np.float32)}, "noise"),
        ({"final": np.zeros(3, bool)}, "final"),
        ({"timestep": -1}, "timestep"),
        ({"next_timestep": np.asarray([1, 2, 3])}, "next_timestep"),
    ],
)
def test_lcm_step_rejects_bad_input(kwargs, name):
    args = {
        "model_output": np.zeros((2, 4), np.float32),
        "timestep": 999,
        "sample": np.zeros((2, 4), np.float32),
        "next_timestep": 759,
        "alphas_cumprod": alphas_cumprod(TCDConfig()),
        "noise": None,
        "final": False,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        lcm_step(**args)
