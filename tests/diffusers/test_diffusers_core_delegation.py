"""The adapter against the core: the in-place fast path is tcd_core.step bit for bit,
clipping/thresholding go through the core, and the step reads nothing back from tensors (both
schedulers: tests parametrised over ``pair``)."""

from __future__ import annotations

import pickle

import diffusers
import pytest
import torch
from diffusers_helpers import LCM, PAIRS, Pair, assert_same, toy_model
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

import tcd_core
from tcd_diffusers import TCDScheduler
from tcd_diffusers._inplace import IN_PLACE

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@given(
    algorithm=st.sampled_from([tcd_core.TCD, tcd_core.LCM]),
    prediction_type=st.sampled_from(["epsilon", "sample", "v_prediction"]),
    dtype=st.sampled_from(DTYPES),
    t=st.integers(0, 999),
    p_fraction=st.floats(0.0, 1.0),
    eta=st.floats(0.0, 1.0),
    final=st.booleans(),
    seed=st.integers(0, 2**16),
    zero_snr=st.booleans(),
)
@settings(max_examples=examples(80))
def test_fast_path_is_the_core_step(
    algorithm, prediction_type, dtype, t, p_fraction, eta, final, seed, zero_snr
):
    """The in-place arithmetic runs the core's one update bit for bit, for both algorithms."""
    config = tcd_core.TCDConfig(prediction_type=prediction_type, rescale_betas_zero_snr=zero_snr)
    table = TCDScheduler(**config.to_dict()).alphas_cumprod
    p = int(p_fraction * t)
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 4, 6, 6, generator=gen).to(dtype)
    model_output = torch.randn(2, 4, 6, 6, generator=gen).to(dtype)
    noise = torch.randn(2, 4, 6, 6, generator=gen).to(dtype)
    given = {"eta": eta} if algorithm.has_eta else {"final": final}

    core = tcd_core.step(
        algorithm, model_output, t, sample, p, table, noise=noise.clone(), config=config, **given
    )
    c = tcd_core.coefficients(algorithm, table, t, p, **given)
    inputs = (model_output.clone(), sample.clone())
    fast = tcd_core.update(
        algorithm, c, model_output, sample, noise.clone(), config, arithmetic=IN_PLACE
    )
    assert_same(fast.estimate, core.estimate)
    assert_same(fast.next_sample, core.next_sample)
    assert fast.pred_original_sample is None
    # it writes only into what it made or owns: never into the model output or the sample
    assert torch.equal(model_output, inputs[0]) and torch.equal(sample, inputs[1])


@pytest.mark.parametrize("pair", PAIRS)
def test_fast_output_is_the_dataclass_output(pair: Pair) -> None:
    a, b = torch.ones(2), torch.zeros(2)
    fast, slow = pair.ours._output(a, b), pair.output(prev_sample=a, **{pair.second: b})
    assert type(fast) is type(slow)
    assert list(fast.keys()) == list(slow.keys()) == ["prev_sample", pair.second]
    assert fast.prev_sample is a and getattr(fast, pair.second) is b
    assert fast["prev_sample"] is a and fast[1] is b
    assert fast.to_tuple() == slow.to_tuple() == (a, b)
    restored = pickle.loads(pickle.dumps(fast))
    assert torch.equal(restored.prev_sample, a) and torch.equal(getattr(restored, pair.second), b)
    fast.prev_sample = b  # BaseOutput keeps attribute and item in sync
    assert fast["prev_sample"] is b


@pytest.mark.parametrize(
    "options",
    [
        {"clip_sample": True, "clip_sample_range": 0.5},
        {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5},
    ],
)
def test_clipping_and_thresholding_are_honoured_through_the_core(options: dict) -> None:
    """The reference ignores these options; we apply them to x̂₀ exactly as the core does."""
    ours = TCDScheduler(**options)
    ref = diffusers.TCDScheduler(**options)
    config = tcd_core.TCDConfig(**options)
    ours.set_timesteps(4)
    ref.set_timesteps(4)
    x = 3.0 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    model_output = toy_model(x, 999)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = tcd_core.tcd_step(
        model_output, 999, x, 759, ours.alphas_cumprod, eta=0.3, noise=noise, config=config
    )
    out = ours.step(
        model_output, ours.timesteps[0], x, eta=0.3, generator=torch.Generator().manual_seed(1)
    )
    assert_same(out.prev_sample, expected.prev_sample)
    assert_same(out.pred_noised_sample, expected.pred_noised_sample)
    unclipped = ref.step(
        model_output, ref.timesteps[0], x, eta=0.3, generator=torch.Generator().manual_seed(1)
    )
    assert not torch.equal(out.pred_noised_sample, unclipped.pred_noised_sample)


@pytest.mark.parametrize("pair", PAIRS)
def test_config_changed_after_construction_is_followed(pair: Pair) -> None:
    """Pipelines rewrite scheduler configs in place (e.g. SD's steps_offset/clip_sample fix-up);
    the step follows the current config: it is then the step of a scheduler built with it."""
    x = 3.0 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def first_step(scheduler):
        scheduler.set_timesteps(4)
        g = torch.Generator().manual_seed(1)
        out = pair.step(scheduler, toy_model(x, 999), scheduler.timesteps[0], x, generator=g)
        return out.prev_sample, getattr(out, pair.second)

    scheduler = pair.ours()
    plain = first_step(scheduler)
    scheduler.register_to_config(clip_sample=True, clip_sample_range=0.1)
    clipped = first_step(scheduler)
    assert not torch.equal(plain[0], clipped[0]) and not torch.equal(plain[1], clipped[1])
    built = first_step(pair.ours(clip_sample=True, clip_sample_range=0.1))
    assert_same(clipped[0], built[0])
    assert_same(clipped[1], built[1])
    if pair is LCM:  # c_skip ≈ 0 at t = 999, so denoised ≈ the clipped x̂₀
        assert float(clipped[1].abs().max()) <= 0.11


READS = (
    "item",
    "tolist",
    "numpy",
    "nonzero",
    "cpu",
    "__bool__",
    "__int__",
    "__index__",
    "__float__",
)


@pytest.mark.parametrize("pair", PAIRS)
def test_step_reads_no_tensor_value(pair: Pair, monkeypatch) -> None:
    """The CPU stand-in for the GPU test: once set_timesteps ran, a pipeline-style loop (views
    of scheduler.timesteps, a generator) never reads a tensor value back to Python — the same
    code path that, on a GPU, makes no host-device synchronisation — including the first call
    for each timestep, whose coefficients (LCM's c_skip/c_out) are computed on its device."""
    ours, ref = pair.ours(), pair.ref()
    for scheduler in (ours, ref):
        scheduler.set_timesteps(4)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    outputs = [toy_model(x, int(t)) for t in ref.timesteps]  # a model that returns fixed tensors
    x_ref = x
    for t, m in zip(ref.timesteps, outputs):
        x_ref = pair.step(ref, m, t, x_ref, eta=0.3, generator=g2).prev_sample

    def forbidden(*args, **kwargs):
        raise AssertionError("the step read a tensor value")

    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, forbidden)
        x_ours = x
        for t, m in zip(ours.timesteps, outputs):
            x_ours = pair.step(ours, m, t, x_ours, eta=0.3, generator=g1).prev_sample
    assert_same(x_ours, x_ref)
    assert torch.equal(g1.get_state(), g2.get_state())

    # ...and the guard works: the reference's first step reads the timestep (.item()).
    ref.set_timesteps(4)
    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, forbidden)
        with pytest.raises(AssertionError, match="read a tensor value"):
            pair.step(ref, outputs[0], ref.timesteps[0], x, eta=0.3)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("pair", PAIRS)
def test_autograd_through_the_step_matches_the_reference(pair: Pair, prediction_type: str) -> None:
    """Gradient-guided sampling differentiates through step: values and gradients as diffusers'."""
    grads, values = [], []
    for cls in (pair.ours, pair.ref):
        scheduler = cls(prediction_type=prediction_type)
        scheduler.set_timesteps(4)
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        x.requires_grad_(True)
        model_output = toy_model(x, 999)
        out = pair.step(
            scheduler,
            model_output,
            scheduler.timesteps[0],
            x,
            eta=0.3,
            generator=torch.Generator().manual_seed(1),
        )
        (out.prev_sample.square().sum() + getattr(out, pair.second).sum()).backward()
        grads.append(x.grad)
        values.append(out.prev_sample.detach())
    assert_same(values[0], values[1])
    assert_same(grads[0], grads[1])
