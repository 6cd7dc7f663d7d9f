"""quantile = torch.quantile, dynamic_threshold = DDPM's _threshold_sample, and a clipped or
thresholded η=0 TCD step = DDIMScheduler.step on the same t → p jump."""

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
    namespace_of,
    to_backend,
    to_numpy,
)
from core_strategies import examples
from diffusers import DDIMScheduler, DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tcd_core import TCDConfig, alphas_cumprod, clip_sample, dynamic_threshold, quantile, tcd_step

finite32 = st.floats(-1e4, 1e4, width=32, allow_subnormal=False)
rows = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 4), st.integers(1, 300)),
    elements=finite32,
)
qs = st.one_of(st.sampled_from((0.0, 0.5, 0.995, 1.0, 0.9, 0.25)), st.floats(0.0, 1.0))


@given(rows, qs)
def test_quantile_equals_torch_quantile_float32(x, q):
    want = torch.quantile(torch.from_numpy(x), q, dim=1)
    got_t = quantile(torch.from_numpy(x), q, axis=1)
    assert torch.equal(got_t, want)
    np.testing.assert_array_equal(quantile(x, q, axis=1), want.numpy())


@pytest.mark.parametrize("backend", ("jax", "array_api_strict"))
@settings(max_examples=examples(20))
@given(x=rows, q=qs)
def test_quantile_other_backends(backend, x, q):
    want = torch.quantile(torch.from_numpy(x), q, dim=1)
    got = quantile(to_backend(x, backend, "float32"), q, axis=1)
    if backend == "array_api_strict":  # float64 exists: the emulated fused lerp is exact
        np.testing.assert_array_equal(to_numpy(got), want.double().numpy())
    else:  # the derived bound (tests/float32_bound.py)
        bound = fb.quantile(fb.Bounded.exact(x, fb.deviation(backend)), q).err
        assert_bounded(got, want, bound, "quantile")


@settings(max_examples=examples(25))
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 3), st.integers(1, 200)),
        elements=st.floats(-1e4, 1e4, allow_subnormal=False),
    ),
    qs,
)
def test_quantile_float64(x, q):
    want = torch.quantile(torch.from_numpy(x), q, dim=1).numpy()
    got = quantile(x, q, axis=1)
    np.testing.assert_allclose(got, want, rtol=4e-16, atol=1e-300)


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
    x = (3 * torch.randn(64, n, generator=torch.Generator().manual_seed(seed))).double().abs()
    ref = torch.quantile(x, q, dim=1)
    got = quantile(to_backend(x, backend, "float64"), q, axis=1)
    np.testing.assert_array_equal(to_numpy(got), ref.numpy())


def test_quantile_axis_nan_and_validation():
    x = torch.tensor([[3.0, float("nan"), 1.0], [1.0, 2.0, 3.0]])
    assert torch.equal(
        torch.isnan(quantile(x, 0.5, axis=1)), torch.isnan(torch.quantile(x, 0.5, dim=1))
    )
    y = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(quantile(y, 0.3, axis=0), torch.quantile(y, 0.3, dim=0))
    with pytest.raises(ValueError, match="q"):
        quantile(y, 1.5)


@st.composite
def threshold_cases(draw):
    b = draw(st.integers(1, 5))
    shape = (b, draw(st.integers(1, 4)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    ratio = draw(st.sampled_from((0.995, 0.9, 0.5, 0.0, 1.0)) | st.floats(0.0, 1.0))
    max_value = draw(st.sampled_from((1.0, 1.5, 3.0, 0.5)) | st.floats(0.1, 20.0))
    scale = draw(st.sampled_from((0.5, 1.0, 4.0, 40.0)))
    dtype = draw(st.sampled_from(("float32", "float16", "bfloat16", "float64")))
    return shape, ratio, max_value, scale, dtype, draw(st.integers(0, 2**31 - 1))


def ddpm_threshold(x, ratio, max_value):
    sched = DDPMScheduler(
        thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=max_value
    )
    return sched._threshold_sample(x)


@given(threshold_cases())
def test_dynamic_threshold_is_ddpm_threshold_sample_on_torch(case):
    shape, ratio, max_value, scale, dtype, seed = case
    x = (scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))).to(
        TORCH_DTYPES[dtype]
    )
    x_before = x.clone()
    want = ddpm_threshold(x.clone(), ratio, max_value)
    got = dynamic_threshold(x, ratio, max_value)
    assert got.dtype == want.dtype
    assert torch.equal(got, want)
    assert torch.equal(x, x_before)


@pytest.mark.parametrize("backend", NON_TORCH)
@settings(max_examples=examples(20))
@given(case=threshold_cases())
def test_dynamic_threshold_other_backends(backend, case):
    shape, ratio, max_value, scale, dtype, seed = case
    if dtype not in DTYPES[backend]:
        dtype = "float32"
    x = (scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))).to(
        TORCH_DTYPES[dtype]
    )
    want = ddpm_threshold(x.clone(), ratio, max_value)
    got = dynamic_threshold(to_backend(x, backend, dtype), ratio, max_value)
    assert str(got.dtype).endswith(dtype)
    if dtype == "float32":  # the derived bound (tests/float32_bound.py)
        x_b = fb.Bounded.exact(to_numpy(x), fb.deviation(backend))
        bound = fb.dynamic_threshold(x_b, ratio, max_value).err
        assert_bounded(got, want, bound, "threshold")
    else:
        assert_close_scaled(got, want, dtype, "threshold")


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_sample(backend):
    x = to_backend(np.linspace(-3, 3, 13, dtype=np.float32), backend, "float32")
    np.testing.assert_array_equal(
        to_numpy(clip_sample(x, 2.0)), np.clip(np.linspace(-3, 3, 13, dtype=np.float32), -2, 2)
    )


# ------------------------------------------------------------------ TCD(η=0) == DDIM(η=0)

DDIM_JUMPS = [(t, t - 100) for t in range(900, 0, -100)]  # 900→800 … 100→0


@pytest.mark.parametrize("prediction_type", ("epsilon", "sample", "v_prediction"))
@pytest.mark.parametrize(
    "options",
    [
        {"clip_sample": True, "clip_sample_range": 1.0},
        {"clip_sample": True, "clip_sample_range": 0.5},
        {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 2.0},
        {"thresholding": True, "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0},
        {"clip_sample": False},
    ],
)
@pytest.mark.parametrize("dtype", ("float32", "float16"))
def test_eta0_step_equals_ddim_step_with_the_same_options(prediction_type, options, dtype):
    """DDIM with 10 steps visits 900, 800, ..., 0 (jumps of 100); a TCD step at η=0 from t to p
    with the same clip/threshold config is DDIM's step exactly. Only DDIM's final step (0 → −100,
    which targets final_alpha_cumprod) has no TCD counterpart; set_alpha_to_one plays no role on
    the nine non-final steps compared here."""
    tdtype = TORCH_DTYPES[dtype]
    config = TCDConfig(prediction_type=prediction_type, **options)
    ddim = DDIMScheduler(
        **{
            k: v
            for k, v in config.to_dict().items()
            if k not in ("original_inference_steps", "timestep_scaling")
        }
    )
    ddim.set_timesteps(10)
    assert ddim.timesteps.tolist() == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    ac = alphas_cumprod(config, namespace_of("torch"))
    g = torch.Generator().manual_seed(0)
    for t, p in DDIM_JUMPS:
        sample = (2.0 * torch.randn(2, 4, 8, 8, generator=g)).to(tdtype)
        mo = (2.0 * torch.randn(2, 4, 8, 8, generator=g)).to(tdtype)
        want = ddim.step(mo, t, sample, eta=0.0)
        got = tcd_step(mo, t, sample, p, ac, eta=0.0, config=config)
        assert torch.equal(got.prev_sample, want.prev_sample), (t, p)
        assert torch.equal(got.pred_original_sample, want.pred_original_sample), (t, p)
        # and on the other backends within tolerance
        for backend in DTYPES:
            if backend == "torch" or dtype not in DTYPES[backend]:
                continue
            other = tcd_step(
                to_backend(mo, backend, dtype),
                t,
                to_backend(sample, backend, dtype),
                p,
                alphas_cumprod(config, namespace_of(backend)),
                eta=0.0,
                config=config,
            )
            what = f"{backend} {t}->{p}"
            if dtype == "float16":
                assert_close_scaled(other.prev_sample, want.prev_sample, dtype, what)
                continue
            # float32: the derived bound of DDIM's (= TCD's η = 0) step with these options
            tab = fb.table(to_numpy(ac), to_numpy(ac), fb.deviation(backend))
            x_b = fb.Bounded.exact(to_numpy(sample), tab.dev)
            step = fb.tcd_step(
                prediction_type, to_numpy(mo), x_b, None, tab, t, p, p, False, config
            )
            assert_bounded(other.prev_sample, want.prev_sample, step[0].err, what)


def test_thresholding_actually_changes_the_step():
    """Guard against a vacuous DDIM comparison: the options do act on x̂₀ (the reference ignores
    them; we honour them)."""
    g = torch.Generator().manual_seed(0)
    sample, mo = 3 * torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    ac = alphas_cumprod(TCDConfig(), namespace_of("torch"))
    plain = tcd_step(mo, 500, sample, 400, ac, eta=0.0)
    for cfg in (TCDConfig(clip_sample=True), TCDConfig(thresholding=True, sample_max_value=1.5)):
        out = tcd_step(mo, 500, sample, 400, ac, eta=0.0, config=cfg)
        assert not torch.equal(out.prev_sample, plain.prev_sample)
        assert float(out.pred_original_sample.abs().max()) <= 1.5
