"""Both schedulers' config round trips with diffusers, add_noise/get_velocity, bad input, and
the docstring examples."""

from __future__ import annotations

import json
from pathlib import Path

import float32_bound as fb
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, TCDScheduler
from jax_helpers import ALGORITHMS, JAX, TCD_JAX, assert_close, eta_kwargs

import tcd_jax
from tcd_core import TCDConfig, alphas_cumprod, plan_timesteps

over_algorithms = pytest.mark.parametrize("algo", ALGORITHMS)

CUSTOM = dict(
    beta_schedule="linear",
    beta_start=0.0002,
    beta_end=0.018,
    prediction_type="v_prediction",
    original_inference_steps=40,
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
    timestep_scaling=5.0,
)


def _fields(config) -> dict:
    return {name: config[name] for name in TCDConfig.field_names()}


@over_algorithms
def test_folder_saved_by_diffusers_loads_here(algo, tmp_path):
    reference = algo.reference(**CUSTOM)
    reference.save_pretrained(tmp_path / "scheduler")
    scheduler, state = algo.scheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert scheduler.config.to_dict() == _fields(reference.config)
    assert isinstance(state, algo.state) and state.num_inference_steps is None
    # Zero-SNR rescaling goes through NumPy's sqrt here, MKL's in torch: within the rescale's
    # derived bound (tests/float32_bound.py).
    bound = fb.schedule_table(TCDConfig(**_fields(reference.config))).err
    assert_close(state.common.alphas_cumprod, reference.alphas_cumprod, bound=bound)
    same, _ = algo.scheduler.from_pretrained(tmp_path / "scheduler")
    assert same == scheduler
    with pytest.raises(ValueError, match=r"scheduler_config\.json"):
        algo.scheduler.from_pretrained(tmp_path / "missing")


@over_algorithms
def test_folder_saved_here_loads_in_diffusers(algo, tmp_path):
    scheduler = algo.scheduler(**CUSTOM)
    path = scheduler.save_pretrained(tmp_path)
    data = json.loads(Path(path).read_text())
    assert data["_class_name"] == algo.reference.__name__
    reference = algo.reference.from_pretrained(tmp_path)
    assert _fields(reference.config) == scheduler.config.to_dict()
    config = algo.reference.load_config(tmp_path)
    _, unused = algo.reference.from_config(config, return_unused_kwargs=True)
    assert [k for k in unused if not k.startswith("_")] == []  # every field is one diffusers knows
    # And back again, through a dict.
    again, _ = algo.scheduler.from_pretrained(dict(reference.config))
    assert again.config == scheduler.config


def test_trained_betas_round_trip(tmp_path):
    betas = np.linspace(1e-4, 0.02, 1000).tolist()
    tcd_jax.FlaxTCDScheduler(trained_betas=betas).save_pretrained(tmp_path)
    reference = TCDScheduler.from_pretrained(tmp_path)
    _scheduler, state = tcd_jax.FlaxTCDScheduler.from_pretrained(tmp_path)
    np.testing.assert_array_equal(
        np.asarray(state.common.alphas_cumprod), reference.alphas_cumprod.numpy()
    )


def test_from_config_takes_other_schedulers_configs():
    euler = EulerDiscreteScheduler(beta_schedule="scaled_linear", steps_offset=1)
    scheduler = tcd_jax.FlaxTCDScheduler.from_config(euler.config)
    assert scheduler.config.steps_offset == 1 and scheduler.config.original_inference_steps == 50
    assert (
        tcd_jax.FlaxTCDScheduler.from_config(scheduler.config, beta_end=0.02).config.beta_end
        == 0.02
    )
    assert len(scheduler) == 1000 and scheduler.has_state


@over_algorithms
def test_add_noise_get_velocity_and_scale_model_input_match_diffusers(algo):
    reference = algo.reference()
    scheduler = algo.scheduler()
    state = scheduler.create_state()
    rng = np.random.default_rng(0)
    x, noise = (rng.standard_normal((3, 2, 4, 4)).astype(np.float32) for _ in range(2))
    t = np.asarray([999, 500, 3])
    tx, tn, tt = torch.from_numpy(x), torch.from_numpy(noise), torch.from_numpy(t)
    # Derived bounds (tests/float32_bound.py): √ᾱ·x + √(1−ᾱ)·z and √ᾱ·z − √(1−ᾱ)·x in XLA.
    table = np.asarray(alphas_cumprod(TCDConfig()))
    ac = fb.table(table, table, JAX)[t].reshape((-1, 1, 1, 1))
    xb, zb = fb.Bounded.exact(x, JAX), fb.Bounded.exact(noise, JAX)
    bounds = (
        (ac.sqrt() * xb + (1 - ac).sqrt() * zb).err,
        (ac.sqrt() * zb - (1 - ac).sqrt() * xb).err,
    )
    for (ours, ref), bound in zip(
        (
            (
                scheduler.add_noise(state, jnp.asarray(x), jnp.asarray(noise), t),
                reference.add_noise(tx, tn, tt),
            ),
            (
                jax.jit(scheduler.get_velocity)(
                    state, jnp.asarray(x), jnp.asarray(noise), jnp.asarray(t)
                ),
                reference.get_velocity(tx, tn, tt),
            ),
        ),
        bounds,
    ):
        assert ours.dtype == jnp.float32
        assert_close(ours, ref, bound=bound)
    np.testing.assert_array_equal(np.asarray(scheduler.scale_model_input(state, jnp.asarray(x))), x)
    half = scheduler.add_noise(
        state, jnp.asarray(x, jnp.bfloat16), jnp.asarray(noise, jnp.bfloat16), t
    )
    assert half.dtype == jnp.bfloat16


# ---------------------------------------------------------------------- bad input
def _ready(algo):
    scheduler = algo.scheduler()
    state = scheduler.set_timesteps(scheduler.create_state(), 4)
    return scheduler, state, jnp.zeros((2, 3, 4, 4))


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan"), True, [0.2, 1.2]])
def test_eta_outside_unit_interval_is_a_value_error(eta):
    scheduler, state, x = _ready(TCD_JAX)
    with pytest.raises(ValueError, match="eta"):
        scheduler.step(state, x, 999, x, key=jax.random.key(0), eta=eta)
    with pytest.raises(ValueError, match="eta"):
        tcd_jax.sample(lambda x, t: x, x, jax.random.key(0), tcd_jax.sampling_plan(None, 4), eta)


@over_algorithms
def test_static_shape_errors_are_raised_at_trace_time(algo):
    scheduler, state, x = _ready(algo)
    key, eta = jax.random.key(0), eta_kwargs(algo, 0.3)
    step = jax.jit(lambda s, m, x: scheduler.step(s, m, s.timesteps[0], x, key=key, **eta))
    with pytest.raises(ValueError, match="model_output"):
        step(state, x[:1], x)
    with pytest.raises(ValueError, match="model_output"):
        scheduler.step(state, x[:1], 999, x)
    with pytest.raises(ValueError, match="timestep"):
        scheduler.step(state, x, jnp.zeros((2, 2), jnp.int32), x, key=key)
    with pytest.raises(ValueError, match="key"):
        scheduler.step(state, x, 999, x, key=jax.random.split(key, 3))
    three_keys = scheduler.set_timesteps(scheduler.create_state(key=jax.random.split(key, 3)), 4)
    with pytest.raises(ValueError, match="key"):  # 3 per-sample keys for a batch of 2
        scheduler.step(three_keys, x, 999, x)
    with pytest.raises(ValueError, match="key"):
        scheduler.create_state(key=jax.random.split(key, 4).reshape(2, 2))
    with pytest.raises(ValueError, match="key"):
        scheduler.create_state(key=jnp.zeros((3,), jnp.float32))
    with pytest.raises(ValueError, match="key"):
        scheduler.create_state(key=jnp.zeros((2, 2, 2), jnp.uint32))
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(scheduler.create_state(), x, 999, x, key=key)
    plan = algo.plan(None, 4)
    with pytest.raises(ValueError, match="model_output"):
        algo.sample(lambda x, t: x[:1], x, key, plan)
    if algo.core.has_eta:
        with pytest.raises(ValueError, match="eta"):
            algo.sample(lambda x, t: x, x, key, plan, np.asarray([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="plan has 3 columns"):
        algo.sample(lambda x, t: x, x, key, algo.plan(None, 4, strength=[1, 1, 1]))
    with pytest.raises(ValueError, match="plan"):
        algo.sample(lambda x, t: x, x, key, [999, 499])
    with pytest.raises(ValueError, match="floating"):
        algo.sample(lambda x, t: x, jnp.zeros((2, 3), jnp.int32), key, plan)
    with pytest.raises(ValueError, match="begin_index"):
        tcd_jax.SamplingPlan.from_plan(plan_timesteps(algo.core, TCDConfig(), 4), begin_index=4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_inference_steps": 4, "timesteps": [999, 499]},
        {"num_inference_steps": 51},
        {"num_inference_steps": 4, "strength": 0.0},
        {"num_inference_steps": 4, "strength": 1.5},
        {"timesteps": [499, 999]},
        {"timesteps": [1000, 10]},
        {"num_inference_steps": 0},
    ],
)
@over_algorithms
def test_plan_errors_are_the_cores(algo, kwargs):
    scheduler, state, _ = _ready(algo)
    with pytest.raises(ValueError) as core:
        plan_timesteps(algo.core, scheduler.config, **kwargs)
    with pytest.raises(ValueError) as ours:
        scheduler.set_timesteps(state, **kwargs)
    assert str(ours.value) == str(core.value)
    with pytest.raises(ValueError):
        algo.plan(scheduler.config, **kwargs)


def test_other_bad_input():
    with pytest.raises(ValueError, match="beta_schedule"):
        tcd_jax.FlaxTCDScheduler(beta_schedule="cosine")
    with pytest.raises(ValueError, match="impl"):
        tcd_jax.prng_key(0, impl="philox")
    with pytest.raises(ValueError, match="same number of steps"):
        tcd_jax.stack_plans([tcd_jax.sampling_plan(None, 4), tcd_jax.sampling_plan(None, 2)])
    with pytest.raises(ValueError, match="strength"):
        # 2 steps out of int(50*0.02) = 1: the core's own error
        tcd_jax.sampling_plan(None, 2, strength=[1.0, 0.02])
    with pytest.raises(ValueError, match="key"):
        tcd_jax.step_noise(jnp.zeros((3,), jnp.float32), 0, (2,), "float32")


@pytest.mark.parametrize(
    "module", ["tcd_jax.lcm", "tcd_jax.scheduler", "tcd_jax.sampling", "tcd_jax.noise"]
)
def test_docstring_examples_run(module):
    """The examples in the modules' docstrings (rendered in the API reference) run: the two
    schedulers' and the one sampling module that serves both algorithms."""
    import doctest
    import importlib

    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testmod(importlib.import_module(module), optionflags=flags)
    assert result.attempted > 0 and result.failed == 0
