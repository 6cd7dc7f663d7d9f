"""Property tests: tcd_diffusers' TCDScheduler and LCMScheduler against diffusers' classes, step by
step. Each test runs once per algorithm (ids ``tcd``, ``lcm``); LCM-only checks are at the end.

Over the accepted config space (beta schedules, trained betas, zero-terminal-SNR, prediction
types, original_inference_steps, set_alpha_to_one, timestep_scaling; clipping and thresholding
where the reference applies them) and argument space (step counts, explicit
original_inference_steps, strength, custom timesteps, set_begin_index, starting mid-schedule, η,
timesteps passed as views / ints / NumPy ints / fresh tensors, generators: none, one, a list,
both return forms), every step's outputs are bit-identical, the step index follows the
reference's, the generators end in the same state, the scheduler state matches after every call,
and a plan the reference rejects raises its ValueError verbatim.
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from diffusers_helpers import LCM, PAIRS, TCD, Pair, assert_same, lockstep, toy_model
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from tcd_diffusers import LCMScheduler

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
ETAS = st.one_of(
    st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)
FORMS = ("view", "int", "numpy int", "tensor", "tensor copy")


@st.composite
def configs(draw: st.DrawFn, pair: Pair) -> dict:
    n_train = draw(st.one_of(st.sampled_from([1000, 1000, 500, 120]), st.integers(60, 1200)))
    cfg: dict = {
        "num_train_timesteps": n_train,
        "prediction_type": draw(st.sampled_from(["epsilon", "sample", "v_prediction"])),
        "original_inference_steps": draw(st.sampled_from([50, 30, 25, 10, 8, 100])),
        "set_alpha_to_one": draw(st.booleans()),
        "rescale_betas_zero_snr": draw(st.booleans()),
        "timestep_scaling": draw(st.sampled_from([10.0, 1.0, 2.5])),
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
    # diffusers' TCDScheduler ignores clipping and thresholding (ours applies them:
    # test_diffusers_core_delegation.py); its LCMScheduler applies them, so they are compared
    post = draw(st.sampled_from(["none", "none", "clip", "threshold"])) if pair is LCM else "none"
    if post == "clip":
        cfg["clip_sample"] = True
        cfg["clip_sample_range"] = draw(st.sampled_from([1.0, 0.5, 2.0]))
    elif post == "threshold":
        cfg["thresholding"] = True
        cfg["sample_max_value"] = draw(st.sampled_from([1.0, 1.5, 3.0]))
        cfg["dynamic_thresholding_ratio"] = draw(st.sampled_from([0.995, 0.9]))
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
        kwargs: dict = {"timesteps": sorted(set(values), reverse=True), "strength": strength}
    else:
        kwargs = {"num_inference_steps": draw(st.integers(1, 12)), "strength": strength}
    if draw(st.integers(0, 2)) == 0:
        kwargs["original_inference_steps"] = draw(st.sampled_from([original, 20, 50, 100]))
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


def _timestep(scheduler, k: int, form: str):
    t = scheduler.timesteps[k]
    if form == "int":
        return int(t)
    if form == "numpy int":
        return np.int64(int(t))
    if form == "tensor":
        return torch.tensor(int(t))
    if form == "tensor copy":
        return t.clone()  # a tensor that is not a view of scheduler.timesteps
    return t


STATE = ("step_index", "begin_index", "num_inference_steps", "custom_timesteps", "init_noise_sigma")


def assert_same_state(ours, ref) -> None:
    for name in STATE:
        assert getattr(ours, name) == getattr(ref, name), name
    assert_same(ours.timesteps, ref.timesteps)  # int64 like the reference's
    for name in ("betas", "alphas", "alphas_cumprod", "final_alpha_cumprod"):
        assert_same(getattr(ours, name), getattr(ref, name))


def _outputs(pair: Pair, out, return_dict: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if return_dict:
        assert isinstance(out, pair.output)
        return out.prev_sample, getattr(out, pair.second)
    assert isinstance(out, tuple) and len(out) == 2
    return out


def run_both(pair: Pair, data: st.DataObject, dtype: torch.dtype) -> None:
    """The same calls on our class and diffusers', compared after every call."""
    cfg = data.draw(configs(pair), label="config")
    plan = data.draw(plans(cfg["num_train_timesteps"], cfg["original_inference_steps"]))
    ours, ref = pair.ours(**cfg), pair.ref(**cfg)
    try:
        ref.set_timesteps(**plan)
    except ValueError as err:
        event("set_timesteps ValueError")
        with pytest.raises(ValueError) as info:
            ours.set_timesteps(**plan)
        # verbatim, but naming the argument `timesteps` as the caller does
        assert str(info.value) == str(err).replace("`custom_timesteps`", "`timesteps`")
        return
    except ZeroDivisionError:  # the reference crashes where we refuse the plan
        with pytest.raises(ValueError):
            ours.set_timesteps(**plan)
        return
    if len(ref.timesteps) == 0:  # custom timesteps trimmed to nothing: ours refuses the plan
        with pytest.raises(ValueError, match="strength"):
            ours.set_timesteps(**plan)
        return
    event("ran the loop")
    ours.set_timesteps(**plan)
    assert_same_state(ours, ref)

    n = len(ref.timesteps)
    start = data.draw(st.integers(0, n - 1), label="start")
    if data.draw(st.booleans(), label="set_begin_index"):
        ours.set_begin_index(start)
        ref.set_begin_index(start)
    assert ours.begin_index == ref.begin_index
    form = data.draw(st.sampled_from(FORMS), label="timestep form")
    eta = data.draw(ETAS, label="eta")
    batch = data.draw(st.integers(1, 3), label="batch")
    kind = data.draw(st.sampled_from(["none", "one", "list"]), label="generator")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    shape = data.draw(st.sampled_from([(4, 8, 8), (3, 4, 6), (4, 6, 6), (2, 5, 5)]), label="shape")
    scale = data.draw(st.sampled_from([1.0, 3.0]), label="scale")
    return_dict = data.draw(st.booleans(), label="return_dict")

    g_ours, g_ref = _generators(kind, seed, batch)
    gen = torch.Generator().manual_seed(seed)
    sample = (scale * torch.randn((batch, *shape), generator=gen)).to(dtype)
    x_ours = x_ref = sample
    for k in range(start, n):
        model_output = (scale * toy_model(x_ref.float(), int(ref.timesteps[k]))).to(dtype)
        call = {"eta": eta, "return_dict": return_dict}
        if kind == "none":
            torch.manual_seed(seed + k)
        out_ref = pair.step(
            ref, model_output, _timestep(ref, k, form), x_ref, **call, generator=g_ref
        )
        if kind == "none":
            state_after_ref = torch.random.get_rng_state()
            torch.manual_seed(seed + k)
        out_ours = pair.step(
            ours, model_output, _timestep(ours, k, form), x_ours, **call, generator=g_ours
        )
        if kind == "none":  # the global generator advanced exactly as much
            assert torch.equal(torch.random.get_rng_state(), state_after_ref)
        assert type(out_ours) is type(out_ref)
        x_ours, second = _outputs(pair, out_ours, return_dict)
        x_ref, ref_second = _outputs(pair, out_ref, return_dict)
        assert_same(second, ref_second)
        assert_same(x_ours, x_ref)
        assert ours.step_index == ref.step_index, k
    for a, b in zip(_states(g_ours), _states(g_ref)):  # noise drawn exactly where the ref draws
        assert torch.equal(a, b)
    assert_same_state(ours, ref)


@pytest.mark.parametrize("pair", PAIRS)
@given(data=st.data())
@settings(max_examples=examples(60))
def test_loops_bit_identical_float32(pair: Pair, data: st.DataObject) -> None:
    run_both(pair, data, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES[1:])
@pytest.mark.parametrize("pair", PAIRS)
@given(data=st.data())
@settings(max_examples=examples(15))
def test_loops_bit_identical_other_dtypes(pair: Pair, dtype, data: st.DataObject) -> None:
    run_both(pair, data, dtype)


def _default_loop(pair: Pair, cls: type, prediction_type: str, dtype, steps: int, eta):
    """The pipelines' case: default config, views of timesteps, one generator, both return
    forms (alternating). Returns every step's output, the generator state and the scheduler."""
    scheduler = cls(prediction_type=prediction_type)
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3)).to(dtype)
    outputs = []
    for i, t in enumerate(scheduler.timesteps):
        as_dict = i % 2 == 0
        m = toy_model(x.float(), int(t)).to(dtype)
        out = pair.step(scheduler, m, t, x, eta=eta, generator=g, return_dict=as_dict)
        out = pair.output(*_outputs(pair, out, as_dict))
        outputs.append(out)
        x = out.prev_sample
    return outputs, g.get_state(), scheduler


VARIANTS = [pytest.param(TCD, eta, id=f"tcd-eta{eta}") for eta in (0.0, 0.3, 1.0)]
VARIANTS.append(pytest.param(LCM, None, id="lcm"))


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize(("pair", "eta"), VARIANTS)
def test_default_loops_every_dtype_and_return_form(pair: Pair, eta, prediction_type) -> None:
    """Deterministic companions of the property tests: 1/2/4/8 steps, every dtype."""
    for dtype in DTYPES:
        for steps in (1, 2, 4, 8):
            out, g, ours = _default_loop(pair, pair.ours, prediction_type, dtype, steps, eta)
            ref_out, ref_g, ref = _default_loop(pair, pair.ref, prediction_type, dtype, steps, eta)
            assert len(out) == len(ref_out) == steps
            for a, b in zip(out, ref_out):
                assert_same(a.prev_sample, b.prev_sample)
                assert_same(getattr(a, pair.second), getattr(b, pair.second))
            assert torch.equal(g, ref_g), (dtype, steps)
            assert_same_state(ours, ref)


@pytest.mark.parametrize("pair", PAIRS)
def test_loop_runs_twice_with_cached_plan_and_coefficients(pair: Pair) -> None:
    """A second identical generation (plan and coefficients now cached) is still identical."""
    ours, ref = pair.ours(), pair.ref()
    for _ in range(2):
        for eta in (0.3, 0.7):
            ours.set_timesteps(4)
            ref.set_timesteps(4)
            lockstep(pair, ours, ref, zip(ours.timesteps, ref.timesteps), eta)


@pytest.mark.parametrize("pair", PAIRS)
def test_step_past_the_end_matches_reference(pair: Pair) -> None:
    """Extra steps after the last timestep: the next timestep is the step's own (TCD: p = 0) and
    noise is drawn, as in the reference."""
    ours, ref = pair.ours(), pair.ref()
    ours.set_timesteps(2)
    ref.set_timesteps(2)
    lockstep(pair, ours, ref, [(t, t) for t in [999, 499, 499, 499]])


@pytest.mark.parametrize("pair", PAIRS)
def test_timestep_that_differs_from_the_counter_uses_its_own_alpha(pair: Pair) -> None:
    """The reference takes ᾱ_t (and LCM's c_skip, c_out) from the timestep argument and the
    next timestep from its counter."""
    ours, ref = pair.ours(), pair.ref()
    ours.set_timesteps(4)
    ref.set_timesteps(4)
    ours.set_begin_index(1)
    ref.set_begin_index(1)
    lockstep(pair, ours, ref, [(ours.timesteps[0], ref.timesteps[0]), (321, 321)], eta=0.0)


@pytest.mark.parametrize("pair", PAIRS)
@given(data=st.data())
@settings(max_examples=examples(25))
def test_add_noise_and_velocity_match(pair: Pair, data: st.DataObject) -> None:
    cfg = data.draw(configs(pair))
    ours, ref = pair.ours(**cfg), pair.ref(**cfg)
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


@pytest.mark.parametrize("pair", PAIRS)
@given(data=st.data())
@settings(max_examples=examples(25))
def test_tables_and_attributes_match(pair: Pair, data: st.DataObject) -> None:
    cfg = data.draw(configs(pair))
    ours, ref = pair.ours(**cfg), pair.ref(**cfg)
    assert_same_state(ours, ref)
    assert ours.order == ref.order
    assert len(ours) == len(ref) == cfg["num_train_timesteps"]
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
@pytest.mark.parametrize("pair", PAIRS)
def test_bookkeeping_methods_match(pair: Pair, kwargs: dict) -> None:
    ours, ref = pair.ours(), pair.ref()
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


@pytest.mark.parametrize("pair", PAIRS)
def test_timesteps_assigned_by_hand_are_followed(pair: Pair) -> None:
    """diffusers' step reads whatever scheduler.timesteps holds; so does ours."""
    ours, ref = pair.ours(), pair.ref()
    for scheduler in (ours, ref):
        scheduler.set_timesteps(4)
        scheduler.timesteps = torch.tensor([999, 600, 300, 100])
    lockstep(pair, ours, ref, zip(ours.timesteps, ref.timesteps), eta=0.5)
    assert ours.index_for_timestep(600) == 1


@pytest.mark.parametrize("pair", PAIRS)
def test_numpy_integer_timesteps(pair: Pair) -> None:
    ours, ref = pair.ours(), pair.ref()
    ours.set_timesteps(2)
    ref.set_timesteps(2)
    lockstep(pair, ours, ref, [(np.int64(t), int(t)) for t in ref.timesteps.numpy()], eta=0.0)


@pytest.mark.parametrize("pair", PAIRS)
def test_mixed_dtypes_keep_the_sample_dtype_and_the_random_stream(pair: Pair) -> None:
    """Documented difference: float32 model output on a float16 sample gives float16 (diffusers:
    the promoted float32); the values are the reference's rounded once, the generator in step."""
    results = []
    for cls in (pair.ours, pair.ref):
        scheduler = cls()
        scheduler.set_timesteps(4)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 8, 8, generator=g).half()
        out = pair.step(
            scheduler, toy_model(x.float(), 999), scheduler.timesteps[0], x, generator=g
        )
        results.append((out.prev_sample, getattr(out, pair.second), g.get_state()))
    (prev, second, state), (ref_prev, ref_second, ref_state) = results
    assert prev.dtype == second.dtype == torch.float16 and ref_prev.dtype == torch.float32
    assert torch.equal(state, ref_state)
    assert_same(prev, ref_prev.half())
    assert_same(second, ref_second.half())


# ------------------------------------------------------------------ LCM only


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_lcm_final_step_returns_the_denoised_sample(prediction_type: str) -> None:
    """LCM's final step returns ``denoised`` itself and draws nothing; every other step noises
    it (the bit-identity of both is test_default_loops_every_dtype_and_return_form[lcm])."""
    for dtype in DTYPES:
        for steps in (1, 2, 4, 8):
            out, _, _ = _default_loop(LCM, LCMScheduler, prediction_type, dtype, steps, None)
            assert out[-1].prev_sample is out[-1].denoised
            assert all(not torch.equal(o.prev_sample, o.denoised) for o in out[:-1])


@pytest.mark.parametrize("t", [0, 1, 19, 259, 999])
def test_lcm_boundary_scalings_match(t) -> None:
    ours, ref = LCMScheduler(timestep_scaling=2.5), diffusers.LCMScheduler(timestep_scaling=2.5)
    assert ours.get_scalings_for_boundary_condition_discrete(
        t
    ) == ref.get_scalings_for_boundary_condition_discrete(t)
    for a, b in zip(
        ours.get_scalings_for_boundary_condition_discrete(torch.tensor(t)),
        ref.get_scalings_for_boundary_condition_discrete(torch.tensor(t)),
    ):
        assert_same(a, b)
    assert ours.sigma_data == ref.sigma_data == 0.5
