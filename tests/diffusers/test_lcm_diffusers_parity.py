"""tcd_diffusers.LCMScheduler against diffusers' LCMScheduler: the same calls on both, compared
bit for bit after every call (outputs, generator state, scheduler state), plus the class surface.
"""

from __future__ import annotations

import inspect

import diffusers
import numpy as np
import pytest
import torch
from diffusers.schedulers.scheduling_lcm import LCMSchedulerOutput
from diffusers_helpers import assert_same, toy_model
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

import tcd_diffusers
from tcd_diffusers import LCMScheduler, TCDScheduler
from tcd_diffusers.lcm import _output

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
KINDS = ("view", "int", "numpy int", "tensor copy")


@st.composite
def configs(draw) -> dict:
    n_train = draw(st.one_of(st.just(1000), st.integers(60, 1200)))
    config = {
        "num_train_timesteps": n_train,
        "beta_schedule": draw(st.sampled_from(("scaled_linear", "linear", "squaredcos_cap_v2"))),
        "prediction_type": draw(st.sampled_from(("epsilon", "sample", "v_prediction"))),
        "original_inference_steps": draw(st.sampled_from((50, 30, 8, 100))),
        "set_alpha_to_one": draw(st.booleans()),
        "rescale_betas_zero_snr": draw(st.booleans()),
        "timestep_scaling": draw(st.sampled_from((10.0, 1.0, 2.5))),
    }
    if draw(st.booleans()):
        config["beta_start"], config["beta_end"] = 0.0001, 0.02
    post = draw(st.sampled_from(("none", "none", "clip", "threshold")))
    if post == "clip":
        config["clip_sample"] = True
        config["clip_sample_range"] = draw(st.sampled_from((1.0, 0.5, 2.0)))
    elif post == "threshold":
        config["thresholding"] = True
        config["sample_max_value"] = draw(st.sampled_from((1.0, 1.5, 3.0)))
        config["dynamic_thresholding_ratio"] = draw(st.sampled_from((0.995, 0.9)))
    return config


@st.composite
def scenarios(draw) -> dict:
    config = draw(configs())
    n_train = config["num_train_timesteps"]
    kwargs: dict = {}
    if draw(st.booleans()):
        kwargs["original_inference_steps"] = draw(st.sampled_from((50, 20, 100)))
    if draw(st.integers(0, 3)) == 0:
        picked = draw(st.sets(st.integers(0, n_train - 1), min_size=1, max_size=8))
        kwargs["timesteps"] = sorted(picked, reverse=True)
        if draw(st.booleans()):
            kwargs["strength"] = draw(st.sampled_from((0.5, 0.75)))
    else:
        kwargs["num_inference_steps"] = draw(st.sampled_from((1, 2, 4, 6, 8)))
        if draw(st.booleans()):
            kwargs["strength"] = draw(st.sampled_from((1.0, 0.5, 0.3)))
    return {
        "config": config,
        "plan": kwargs,
        "dtype": draw(st.sampled_from(DTYPES)),
        "kind": draw(st.sampled_from(KINDS)),
        "begin": draw(st.integers(0, 3)),  # img2img: slice the timesteps, set a begin index
        "shape": draw(st.sampled_from(((1, 4, 8, 8), (2, 4, 6, 6), (3, 2, 5, 5)))),
        "scale": draw(st.sampled_from((1.0, 3.0))),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "return_dict": draw(st.booleans()),
    }


STATE = ("step_index", "begin_index", "num_inference_steps", "custom_timesteps", "init_noise_sigma")


def assert_same_state(ours, ref) -> None:
    for name in STATE:
        assert getattr(ours, name) == getattr(ref, name), name
    assert_same(ours.timesteps, ref.timesteps)
    for name in ("betas", "alphas", "alphas_cumprod", "final_alpha_cumprod"):
        assert_same(getattr(ours, name), getattr(ref, name))


def _timestep(scheduler, i: int, kind: str):
    t = scheduler.timesteps[i]
    if kind == "int":
        return int(t)
    if kind == "numpy int":
        return np.int64(int(t))
    if kind == "tensor copy":
        return t.clone()  # a tensor that is not a view of scheduler.timesteps
    return t


def run(cls, s: dict):
    """One scenario on one class: every output, then the generator and scheduler state."""
    scheduler = cls(**s["config"])
    try:
        scheduler.set_timesteps(**s["plan"])
    except Exception as err:  # compared by the caller
        return err, None, scheduler
    if len(scheduler.timesteps) == 0:  # diffusers: custom timesteps trimmed to nothing
        return [], None, scheduler
    g = torch.Generator().manual_seed(s["seed"])
    dtype = s["dtype"]
    sample = (s["scale"] * torch.randn(s["shape"], generator=g)).to(dtype)
    begin = min(s["begin"], len(scheduler.timesteps) - 1)
    if begin:
        scheduler.set_begin_index(begin)
    outputs = []
    for i in range(begin, len(scheduler.timesteps)):
        t = _timestep(scheduler, i, s["kind"])
        model_output = (s["scale"] * toy_model(sample.float(), int(t))).to(dtype)
        out = scheduler.step(model_output, t, sample, generator=g, return_dict=s["return_dict"])
        prev, denoised = (out.prev_sample, out.denoised) if s["return_dict"] else out
        outputs.append((prev, denoised, scheduler.step_index))
        sample = prev
    return outputs, g.get_state(), scheduler


@settings(max_examples=examples(60))
@given(scenarios())
def test_lcm_scheduler_is_bit_identical_to_diffusers(s) -> None:
    ref_out, ref_g, ref = run(diffusers.LCMScheduler, s)
    out, g, ours = run(LCMScheduler, s)
    event("set_timesteps ValueError" if isinstance(ref_out, Exception) else "ran the loop")
    if isinstance(ref_out, Exception):
        assert isinstance(ref_out, ValueError), ref_out
        # verbatim, but naming the argument `timesteps` as the caller does
        expected = str(ref_out).replace("`custom_timesteps`", "`timesteps`")
        assert isinstance(out, ValueError) and str(out) == expected
        return
    if len(ref.timesteps) == 0:  # custom timesteps trimmed to nothing: ours refuses the plan
        assert isinstance(out, ValueError) and "strength" in str(out)
        return
    assert not isinstance(out, Exception), out
    assert len(out) == len(ref_out)
    for i, ((p, d, k), (rp, rd, rk)) in enumerate(zip(out, ref_out)):
        assert_same(p, rp)
        assert_same(d, rd)
        assert k == rk, i
    assert torch.equal(g, ref_g)  # noise drawn exactly where the reference draws it
    assert_same_state(ours, ref)


def test_pipeline_style_loops_every_dtype_and_prediction_type() -> None:
    """Deterministic companions of the property test: 1/2/4/8 steps, all dtypes and parameter-
    isations, timesteps passed as pipelines pass them (views), one generator for everything."""
    for prediction_type in ("epsilon", "sample", "v_prediction"):
        for dtype in DTYPES:
            for n in (1, 2, 4, 8):
                s = {
                    "config": {"prediction_type": prediction_type},
                    "plan": {"num_inference_steps": n},
                    "dtype": dtype,
                    "kind": "view",
                    "begin": 0,
                    "shape": (2, 4, 8, 8),
                    "scale": 1.0,
                    "seed": n,
                    "return_dict": True,
                }
                ref_out, ref_g, ref = run(diffusers.LCMScheduler, s)
                out, g, ours = run(LCMScheduler, s)
                for (p, d, _), (rp, rd, _) in zip(out, ref_out):
                    assert_same(p, rp)
                    assert_same(d, rd)
                assert torch.equal(g, ref_g)
                assert_same_state(ours, ref)
                # the final step returns the denoised sample itself; noise otherwise
                assert out[-1][0] is out[-1][1]
                assert all(not torch.equal(p, d) for p, d, _ in out[:-1])


# ------------------------------------------------------------------ the class surface


def test_constructor_signature_and_public_surface_match() -> None:
    ref_sig = inspect.signature(diffusers.LCMScheduler.__init__).parameters
    our_sig = inspect.signature(LCMScheduler.__init__).parameters
    assert [(p.name, p.default) for p in our_sig.values()] == [
        (p.name, p.default) for p in ref_sig.values()
    ]
    public = {n for n in dir(diffusers.LCMScheduler) if not n.startswith("_")}
    assert public <= set(dir(LCMScheduler)), public - set(dir(LCMScheduler))
    for name in ("step", "set_timesteps", "add_noise", "get_velocity", "scale_model_input"):
        ours = list(inspect.signature(getattr(LCMScheduler, name)).parameters)
        ref = list(inspect.signature(getattr(diffusers.LCMScheduler, name)).parameters)
        assert ours == ref, name
    assert LCMScheduler.order == diffusers.LCMScheduler.order == 1
    assert tcd_diffusers.LCMSchedulerOutput is LCMSchedulerOutput
    assert LCMScheduler.__module__ == "tcd_diffusers"


def test_fast_output_is_the_dataclass_output() -> None:
    a, b = torch.ones(2), torch.zeros(2)
    fast, slow = _output(a, b), LCMSchedulerOutput(prev_sample=a, denoised=b)
    assert type(fast) is type(slow)
    assert list(fast.keys()) == list(slow.keys()) == ["prev_sample", "denoised"]
    assert fast.prev_sample is a and fast.denoised is b and fast[0] is a and fast.to_tuple()[1] is b


@pytest.mark.parametrize("t", [0, 1, 19, 259, 999])
def test_boundary_scalings_match(t) -> None:
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


def test_add_noise_velocity_previous_timestep_and_indices_match() -> None:
    ours, ref = LCMScheduler(), diffusers.LCMScheduler()
    for s in (ours, ref):
        s.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    ts = torch.tensor([999, 500, 3])
    assert_same(ours.add_noise(x, z, ts), ref.add_noise(x, z, ts))
    assert_same(ours.get_velocity(x, z, ts), ref.get_velocity(x, z, ts))
    for t in ref.timesteps:
        assert int(ours.previous_timestep(t)) == int(ref.previous_timestep(t))
        assert ours.index_for_timestep(t) == ref.index_for_timestep(t)
    assert ours.scale_model_input(x, 999) is x
    assert len(ours) == len(ref) == 1000


def test_configs_load_across_classes_and_libraries(tmp_path) -> None:
    """TCD and LCM share their config: one-line swaps in every direction keep every field."""
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
    base = diffusers.LCMScheduler(prediction_type="v_prediction", timestep_scaling=2.5)
    for cls in (LCMScheduler, TCDScheduler, diffusers.TCDScheduler, diffusers.LCMScheduler):
        assert public(LCMScheduler.from_config(cls.from_config(base.config).config).config) == (
            public(base.config)
        )
    ours = LCMScheduler(clip_sample=True, original_inference_steps=30)
    ours.save_pretrained(tmp_path)
    for cls in (LCMScheduler, diffusers.LCMScheduler):
        loaded = cls.from_pretrained(tmp_path)
        assert public(loaded.config) == public(ours.config)


def test_errors_match() -> None:
    for cls in (LCMScheduler, diffusers.LCMScheduler):
        scheduler = cls()
        x = torch.zeros(1, 4, 8, 8)
        with pytest.raises(ValueError, match="Number of inference steps is 'None'"):
            scheduler.step(x, 999, x)
        for kwargs in ({}, {"num_inference_steps": 4, "timesteps": [999]}):
            with pytest.raises(ValueError, match=r"exactly one|only pass one"):
                scheduler.set_timesteps(**kwargs)
        with pytest.raises(ValueError, match="descending"):
            scheduler.set_timesteps(timesteps=[500, 999])
        with pytest.raises(ValueError, match="original_steps"):
            scheduler.set_timesteps(4, original_inference_steps=2000)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),  # diffusers: ZeroDivisionError
        ({"num_inference_steps": 4, "strength": 2.0}, "strength"),  # diffusers: timesteps ≥ N
        ({"timesteps": [999, -5]}, "timesteps"),  # diffusers: wraps around
        ({"num_inference_steps": 4, "original_inference_steps": 0}, "original_inference_steps"),
    ],
)
def test_bad_input_raises_value_error_where_diffusers_does_not(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        LCMScheduler().set_timesteps(**kwargs)


def test_first_timestep_not_in_schedule_is_a_value_error() -> None:
    scheduler = LCMScheduler()
    scheduler.set_timesteps(4)
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match="not in the timestep schedule"):
        scheduler.step(x, 123, x)
    assert scheduler.step_index is None  # a failed call leaves the scheduler unchanged


def test_mixed_dtypes_keep_the_sample_dtype_and_the_random_stream() -> None:
    """Documented difference: float32 model output on a float16 sample gives float16 (diffusers:
    the promoted float32); the values are the reference's rounded once, the generator in step."""
    ours, ref = LCMScheduler(), diffusers.LCMScheduler()
    results = []
    for s in (ours, ref):
        s.set_timesteps(4)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 8, 8, generator=g).half()
        out = s.step(toy_model(x.float(), 999), s.timesteps[0], x, generator=g)
        results.append((out.prev_sample, g.get_state()))
    assert results[0][0].dtype == torch.float16 and results[1][0].dtype == torch.float32
    assert torch.equal(results[0][1], results[1][1])
    assert_same(results[0][0], results[1][0].half())


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_autograd_through_the_step_matches_the_reference(prediction_type: str) -> None:
    grads, values = [], []
    for cls in (LCMScheduler, diffusers.LCMScheduler):
        scheduler = cls(prediction_type=prediction_type)
        scheduler.set_timesteps(4)
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        x.requires_grad_(True)
        out = scheduler.step(
            toy_model(x, 999),
            scheduler.timesteps[0],
            x,
            generator=torch.Generator().manual_seed(1),
        )
        (out.prev_sample.square().sum() + out.denoised.sum()).backward()
        grads.append(x.grad)
        values.append(out.prev_sample.detach())
    assert_same(values[0], values[1])
    assert_same(grads[0], grads[1])


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


def test_step_reads_no_tensor_value(monkeypatch) -> None:
    """The CPU stand-in for the GPU test: once set_timesteps ran, a pipeline-style loop never
    reads a tensor value back to Python (on a GPU: no host-device synchronisation), including
    the first call for each timestep, whose c_skip/c_out are computed on the timestep's device."""
    ours, ref = LCMScheduler(), diffusers.LCMScheduler()
    for scheduler in (ours, ref):
        scheduler.set_timesteps(4)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    outputs = [toy_model(x, int(t)) for t in ref.timesteps]
    x_ref = x
    for t, m in zip(ref.timesteps, outputs):
        x_ref = ref.step(m, t, x_ref, generator=g2).prev_sample

    def forbidden(*args, **kwargs):
        raise AssertionError("the step read a tensor value")

    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, forbidden)
        x_ours = x
        for t, m in zip(ours.timesteps, outputs):
            x_ours = ours.step(m, t, x_ours, generator=g1).prev_sample
    assert_same(x_ours, x_ref)
    assert torch.equal(g1.get_state(), g2.get_state())

    # ...and the guard works: the reference's first step reads the timestep (.item()).
    ref.set_timesteps(4)
    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, forbidden)
        with pytest.raises(AssertionError, match="read a tensor value"):
            ref.step(outputs[0], ref.timesteps[0], x)


def test_config_changes_reach_the_step() -> None:
    """Pipelines rewrite scheduler configs in place; the step follows the current config."""
    scheduler = LCMScheduler()
    scheduler.set_timesteps(4)
    x = 3.0 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = scheduler.step(toy_model(x, 999), scheduler.timesteps[0], x).denoised
    scheduler.register_to_config(clip_sample=True, clip_sample_range=0.1)
    scheduler.set_timesteps(4)
    clipped = scheduler.step(toy_model(x, 999), scheduler.timesteps[0], x).denoised
    assert not torch.equal(plain, clipped) and float(clipped.abs().max()) <= 0.11


def test_docstring_examples_run() -> None:
    import doctest

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder().find(LCMScheduler) + doctest.DocTestFinder().find(tcd_diffusers)
    assert any(t.examples for t in tests if t.name.endswith("LCMScheduler"))
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
