"""Property tests: tcd_diffusers.TCDScheduler against diffusers' TCDScheduler, step by step.

Over the accepted config space (beta schedules, trained betas, zero-terminal-SNR, prediction
types, original_inference_steps, set_alpha_to_one) and argument space (step counts, explicit
original_inference_steps, strength, custom timesteps, set_begin_index, starting mid-schedule,
η, timesteps passed as views / ints / fresh tensors, generators: none, one, a list), every step's
prev_sample and pred_noised_sample are bit-identical, the step index follows the reference's and
the generators end in the same state.
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from diffusers_helpers import assert_same, toy_model
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from tcd_diffusers import TCDScheduler

ETAS = st.one_of(
    st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)


@st.composite
def configs(draw: st.DrawFn) -> dict:
    n_train = draw(st.sampled_from([1000, 1000, 500, 120]))
    cfg: dict = {
        "num_train_timesteps": n_train,
        "prediction_type": draw(st.sampled_from(["epsilon", "sample", "v_prediction"])),
        "original_inference_steps": draw(
            st.sampled_from([s for s in (50, 30, 25, 10, 100) if s <= n_train])
        ),
        "set_alpha_to_one": draw(st.booleans()),
        "rescale_betas_zero_snr": draw(st.booleans()),
    }
    kind = draw(st.sampled_from(["scaled_linear", "linear", "squaredcos_cap_v2", "trained"]))
    if kind == "trained":
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        cfg["trained_betas"] = np.sort(rng.uniform(1e-4, 0.03, n_train)).tolist()
    else:
        cfg["beta_schedule"] = kind
        if kind != "squaredcos_cap_v2" and draw(st.booleans()):
            cfg["beta_start"] = draw(st.sampled_from([1e-4, 0.00085, 0.001]))
            cfg["beta_end"] = draw(st.sampled_from([0.012, 0.02]))
    return cfg


@st.composite
def plans(draw: st.DrawFn, n_train: int, original: int) -> dict:
    """set_timesteps keyword arguments (possibly ones the reference rejects)."""
    strength = draw(st.sampled_from([1.0, 1.0, 0.75, 0.5, 0.3]))
    if draw(st.integers(0, 3)) == 0:
        size = draw(st.integers(1, 8))
        values = draw(
            st.lists(st.integers(0, n_train - 1), min_size=size, max_size=size, unique=True)
        )
        if draw(st.booleans()):
            values[0] = n_train - 1
        timesteps = sorted(set(values), reverse=True)
        return {"timesteps": timesteps, "strength": strength}
    kwargs: dict = {"num_inference_steps": draw(st.integers(1, 12)), "strength": strength}
    if draw(st.integers(0, 3)) == 0:
        kwargs["original_inference_steps"] = draw(st.sampled_from([original, 20, 50]))
    return kwargs


def _generators(kind: str, seed: int, batch: int):
    if kind == "none":
        return None, None
    if kind == "one":
        return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    return (
        [torch.Generator().manual_seed(seed + i) for i in range(batch)],
        [torch.Generator().manual_seed(seed + i) for i in range(batch)],
    )


def _states(gen) -> list[torch.Tensor]:
    if gen is None:
        return []
    gens = gen if isinstance(gen, list) else [gen]
    return [g.get_state() for g in gens]


def run_both(cfg: dict, plan: dict, data: st.DataObject, dtype: torch.dtype) -> None:
    ours, ref = TCDScheduler(**cfg), diffusers.TCDScheduler(**cfg)
    try:
        ref.set_timesteps(**plan)
    except (ValueError, ZeroDivisionError):
        with pytest.raises(ValueError):
            ours.set_timesteps(**plan)
        return
    if len(ref.timesteps) == 0:  # the reference keeps no step; we refuse such a plan
        with pytest.raises(ValueError):
            ours.set_timesteps(**plan)
        return
    ours.set_timesteps(**plan)
    assert torch.equal(ours.timesteps, ref.timesteps) and ours.timesteps.dtype == torch.int64
    assert ours.num_inference_steps == ref.num_inference_steps
    assert ours.custom_timesteps == ref.custom_timesteps

    n = len(ref.timesteps)
    start = data.draw(st.integers(0, n - 1), label="start")
    use_begin = data.draw(st.booleans(), label="set_begin_index")
    if use_begin:
        ours.set_begin_index(start)
        ref.set_begin_index(start)
    assert ours.begin_index == ref.begin_index
    how = data.draw(st.sampled_from(["view", "int", "tensor"]), label="timestep form")
    eta = data.draw(ETAS, label="eta")
    batch = data.draw(st.integers(1, 2), label="batch")
    kind = data.draw(st.sampled_from(["none", "one", "list"]), label="generator")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    shape = (batch, 4, 8, 8) if data.draw(st.booleans(), label="square") else (batch, 3, 4, 6)

    g_ours, g_ref = _generators(kind, seed, batch)
    sample = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    x_ours = x_ref = sample
    for k in range(start, n):
        t = ref.timesteps[k]
        t_ours = {"view": ours.timesteps[k], "int": int(t), "tensor": torch.tensor(int(t))}[how]
        model_output = toy_model(x_ref, int(t)).to(dtype)
        if kind == "none":
            torch.manual_seed(seed + k)
        out_ref = ref.step(model_output, t, x_ref, eta=eta, generator=g_ref)
        if kind == "none":
            state_after_ref = torch.random.get_rng_state()
            torch.manual_seed(seed + k)
        out_ours = ours.step(model_output, t_ours, x_ours, eta=eta, generator=g_ours)
        if kind == "none":  # the global generator advanced exactly as much
            assert torch.equal(torch.random.get_rng_state(), state_after_ref)
        assert type(out_ours) is type(out_ref)
        assert_same(out_ours.pred_noised_sample, out_ref.pred_noised_sample)
        assert_same(out_ours.prev_sample, out_ref.prev_sample)
        assert ours.step_index == ref.step_index
        x_ours, x_ref = out_ours.prev_sample, out_ref.prev_sample
    for a, b in zip(_states(g_ours), _states(g_ref)):
        assert torch.equal(a, b)


@given(cfg=configs(), data=st.data())
@settings(max_examples=examples(60))
def test_loops_bit_identical_float32(cfg: dict, data: st.DataObject) -> None:
    plan = data.draw(plans(cfg["num_train_timesteps"], cfg["original_inference_steps"]))
    run_both(cfg, plan, data, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@given(cfg=configs(), data=st.data())
@settings(max_examples=examples(15))
def test_loops_bit_identical_other_dtypes(cfg: dict, data: st.DataObject, dtype) -> None:
    assume(not cfg["rescale_betas_zero_snr"] or cfg["prediction_type"] != "epsilon")
    plan = data.draw(plans(cfg["num_train_timesteps"], cfg["original_inference_steps"]))
    run_both(cfg, plan, data, dtype)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_default_loops_and_return_tuple(prediction_type: str, eta: float, steps: int) -> None:
    """The pipelines' case, exhaustively: default config, views of timesteps, one generator,
    both return forms."""
    ours = TCDScheduler(prediction_type=prediction_type)
    ref = diffusers.TCDScheduler(prediction_type=prediction_type)
    ours.set_timesteps(steps)
    ref.set_timesteps(steps)
    g_ours, g_ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    x_ours = x_ref = x
    for i, (t_ours, t_ref) in enumerate(zip(ours.timesteps, ref.timesteps)):
        model_output = toy_model(x_ref, int(t_ref))
        as_dict = i % 2 == 0
        a = ours.step(model_output, t_ours, x_ours, eta=eta, generator=g_ours, return_dict=as_dict)
        b = ref.step(model_output, t_ref, x_ref, eta=eta, generator=g_ref, return_dict=as_dict)
        if not as_dict:
            assert isinstance(a, tuple) and len(a) == 2
            a = diffusers.schedulers.scheduling_tcd.TCDSchedulerOutput(*a)
            b = diffusers.schedulers.scheduling_tcd.TCDSchedulerOutput(*b)
        assert_same(a.prev_sample, b.prev_sample)
        assert_same(a.pred_noised_sample, b.pred_noised_sample)
        x_ours, x_ref = a.prev_sample, b.prev_sample
    assert torch.equal(g_ours.get_state(), g_ref.get_state())


def test_loop_runs_twice_with_cached_plan_and_coefficients() -> None:
    """A second identical generation (plan and coefficients now cached) is still identical."""
    ours, ref = TCDScheduler(), diffusers.TCDScheduler()
    for _ in range(2):
        for eta in (0.3, 0.7):
            ours.set_timesteps(4)
            ref.set_timesteps(4)
            g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
            x1 = x2 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
            for t1, t2 in zip(ours.timesteps, ref.timesteps):
                m = toy_model(x2, int(t2))
                x1 = ours.step(m, t1, x1, eta=eta, generator=g1).prev_sample
                x2 = ref.step(m, t2, x2, eta=eta, generator=g2).prev_sample
                assert_same(x1, x2)


def test_step_past_the_end_matches_reference() -> None:
    """Extra steps after the last timestep: p = 0 and noise is drawn, as in the reference."""
    ours, ref = TCDScheduler(), diffusers.TCDScheduler()
    ours.set_timesteps(2)
    ref.set_timesteps(2)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 8, 8)
    for t in [999, 499, 499, 499]:
        m = toy_model(x, t)
        a = ours.step(m, t, x, eta=0.3, generator=g1)
        b = ref.step(m, t, x, eta=0.3, generator=g2)
        assert_same(a.prev_sample, b.prev_sample)
        x = b.prev_sample
    assert torch.equal(g1.get_state(), g2.get_state())


def test_timestep_that_differs_from_the_counter_uses_its_own_alpha() -> None:
    """The reference takes ᾱ_t from the timestep argument and p, s from its counter."""
    ours, ref = TCDScheduler(), diffusers.TCDScheduler()
    ours.set_timesteps(4)
    ref.set_timesteps(4)
    ours.set_begin_index(1)
    ref.set_begin_index(1)
    x = torch.randn(1, 4, 8, 8)
    for t_ours, t_ref in [(ours.timesteps[0], ref.timesteps[0]), (321, 321)]:
        m = toy_model(x, 500)
        a = ours.step(m, t_ours, x, eta=0.0)
        b = ref.step(m, t_ref, x, eta=0.0)
        assert_same(a.prev_sample, b.prev_sample)


@given(cfg=configs(), data=st.data())
@settings(max_examples=examples(25))
def test_add_noise_and_velocity_match(cfg: dict, data: st.DataObject) -> None:
    ours, ref = TCDScheduler(**cfg), diffusers.TCDScheduler(**cfg)
    dtype = data.draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    batch = data.draw(st.integers(1, 3))
    n_train = cfg["num_train_timesteps"]
    timesteps = st.lists(st.integers(0, n_train - 1), min_size=batch, max_size=batch)
    ts = torch.tensor(data.draw(timesteps))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
    x = torch.randn(batch, 4, 5, 5, generator=gen).to(dtype)
    z = torch.randn(batch, 4, 5, 5, generator=gen).to(dtype)
    assert_same(ours.add_noise(x, z, ts), ref.add_noise(x, z, ts))
    assert_same(ours.get_velocity(x, z, ts), ref.get_velocity(x, z, ts))
    assert ours.alphas_cumprod.device == ref.alphas_cumprod.device


@given(cfg=configs())
@settings(max_examples=examples(25))
def test_tables_and_attributes_match(cfg: dict) -> None:
    ours, ref = TCDScheduler(**cfg), diffusers.TCDScheduler(**cfg)
    for name in ("betas", "alphas", "alphas_cumprod", "final_alpha_cumprod", "timesteps"):
        assert_same(getattr(ours, name), getattr(ref, name))
    for name in (
        "init_noise_sigma",
        "order",
        "num_inference_steps",
        "custom_timesteps",
        "step_index",
        "begin_index",
    ):
        assert getattr(ours, name) == getattr(ref, name), name
    assert len(ours) == len(ref)
    x = torch.randn(1, 4, 2, 2)
    assert ours.scale_model_input(x, 3) is x
    # before set_timesteps, previous_timestep is t - 1 in both
    assert ours.previous_timestep(10) == ref.previous_timestep(10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_inference_steps": 4},
        {"num_inference_steps": 8, "strength": 0.5},
        {"timesteps": [999, 700, 300, 50]},
        {"timesteps": [800, 600], "strength": 0.5},
    ],
)
def test_bookkeeping_methods_match(kwargs: dict) -> None:
    ours, ref = TCDScheduler(), diffusers.TCDScheduler()
    ours.set_timesteps(**kwargs)
    ref.set_timesteps(**kwargs)
    for t in ref.timesteps:
        for arg in (t, int(t)):
            assert ours.index_for_timestep(arg) == ref.index_for_timestep(arg)
            a, b = ours.previous_timestep(arg), ref.previous_timestep(arg)
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    sched = torch.tensor([5, 4, 4, 3])
    assert ours.index_for_timestep(4, sched) == ref.index_for_timestep(4, sched) == 2
    ours.set_begin_index(2)
    ref.set_begin_index(2)
    assert ours.begin_index == ref.begin_index == 2
    ours.set_begin_index()
    assert ours.begin_index == 0


def test_timesteps_assigned_by_hand_are_followed() -> None:
    """diffusers' step reads whatever scheduler.timesteps holds; so does ours."""
    ours, ref = TCDScheduler(), diffusers.TCDScheduler()
    for scheduler in (ours, ref):
        scheduler.set_timesteps(4)
        scheduler.timesteps = torch.tensor([999, 600, 300, 100])
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    x1 = x2 = torch.randn(1, 4, 8, 8)
    for t1, t2 in zip(ours.timesteps, ref.timesteps):
        m = toy_model(x2, int(t2))
        x1 = ours.step(m, t1, x1, eta=0.5, generator=g1).prev_sample
        x2 = ref.step(m, t2, x2, eta=0.5, generator=g2).prev_sample
        assert_same(x1, x2)
    assert ours.index_for_timestep(600) == 1


def test_numpy_integer_timesteps() -> None:
    ours, ref = TCDScheduler(), diffusers.TCDScheduler()
    ours.set_timesteps(2)
    ref.set_timesteps(2)
    x = torch.randn(1, 4, 8, 8)
    for t in ref.timesteps.numpy():
        m = toy_model(x, int(t))
        a = ours.step(m, np.int64(t), x, eta=0.0).prev_sample
        b = ref.step(m, int(t), x, eta=0.0).prev_sample
        assert_same(a, b)
        x = b
