"""TCDConfig: the references' fields and defaults (TCDScheduler's and LCMScheduler's), dict
round trips both ways, unknown keys ignored, hashable (a jax.jit static argument)."""

from __future__ import annotations

import inspect
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_strategies import configs, examples
from diffusers import (
    DDIMScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    TCDScheduler,
)
from hypothesis import given, settings

from tcd_core import TCDConfig, alphas_cumprod, tcd_timesteps

# scheduler_config.json of Stable Diffusion 1.5 (PNDM) and SDXL base (Euler discrete), verbatim
SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SDXL = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
SD21_V = {
    **SD15,
    "_class_name": "DDIMScheduler",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}


def _ref_fields(config) -> dict:
    """The reference's constructor fields of a diffusers config (from_config also keeps the unknown
    keys it was given, e.g. skip_prk_steps, in ``.config``; the scheduler ignores them)."""
    return {k: v for k, v in dict(config).items() if k in TCDConfig.field_names()}


@pytest.mark.parametrize("cls", (TCDScheduler, LCMScheduler), ids=lambda cls: cls.__name__)
def test_fields_and_defaults_are_the_references(cls):
    """TCDConfig serves both schedulers: each constructor has exactly its fields, in its order,
    with its defaults (and a config saved by one loads in the other)."""
    params = inspect.signature(cls.__init__).parameters
    ref = {name: p.default for name, p in params.items() if name != "self"}
    assert TCDConfig.field_names() == tuple(ref)
    assert TCDConfig().to_dict() == ref
    assert TCDConfig.from_dict(cls(timestep_scaling=2.5).config).timestep_scaling == 2.5


@settings(max_examples=examples(25))
@given(configs())
def test_round_trip_through_the_reference(config):
    """ours -> TCDScheduler(**d).config -> ours, and the reference's dict -> ours -> dict."""
    ref = TCDScheduler(**config.to_dict())
    back = TCDConfig.from_dict(ref.config)
    assert back == config and hash(back) == hash(config)
    assert _ref_fields(TCDScheduler.from_config(back.to_dict()).config) == _ref_fields(ref.config)
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()  # JSON-serialisable
    assert config.replace() == config


@pytest.mark.parametrize("raw", (SD15, SDXL, SD21_V), ids=("sd15", "sdxl", "sd21v"))
def test_other_schedulers_configs_load_like_from_config(raw):
    ours = TCDConfig.from_dict(raw)
    ref = TCDScheduler.from_config(raw)
    assert ours.to_dict() == _ref_fields(ref.config)
    assert ours.steps_offset == 1  # stored, unused by the TCD grid (as in the reference)
    ref.set_timesteps(4)
    np.testing.assert_array_equal(tcd_timesteps(ours, 4).timesteps, ref.timesteps.numpy())


@pytest.mark.parametrize(
    "cls", (PNDMScheduler, EulerDiscreteScheduler, DDIMScheduler, LCMScheduler)
)
def test_live_scheduler_configs(cls):
    """Another scheduler's pipe.scheduler.config, as pipelines pass it to from_config."""
    other = cls.from_config(SDXL)
    ours = TCDConfig.from_dict(other.config)
    ref = TCDScheduler.from_config(other.config)
    assert ours.to_dict() == _ref_fields(ref.config)


def test_overrides_win_and_unknown_keys_are_ignored():
    cfg = TCDConfig.from_dict({**SDXL, "foo": 1, "_use_default_values": ["x"]}, beta_end=0.02)
    assert cfg.beta_end == 0.02 and cfg.beta_start == 0.00085 and cfg.set_alpha_to_one is False


def test_trained_betas_round_trip_and_hash():
    betas = np.linspace(1e-4, 0.02, 1000).tolist()
    cfg = TCDConfig(trained_betas=betas)
    assert isinstance(cfg.trained_betas, tuple) and hash(cfg) == hash(
        TCDConfig(trained_betas=betas)
    )
    assert cfg.to_dict()["trained_betas"] == betas
    assert TCDConfig.from_dict(TCDScheduler(trained_betas=betas).config) == cfg
    assert TCDConfig(trained_betas=np.asarray(betas)) == cfg


def test_frozen_and_hashable_and_jit_static():
    cfg = TCDConfig()
    with pytest.raises(AttributeError):
        cfg.beta_start = 0.1  # type: ignore[misc]
    assert len({cfg, TCDConfig(), TCDConfig(beta_end=0.02)}) == 2
    traces = []

    @jax.jit
    def table_sum(x):
        return x

    def f(x, config):
        traces.append(config)
        return x * config.timestep_scaling

    g = jax.jit(f, static_argnums=1)
    g(jnp.ones(2), TCDConfig())
    g(jnp.ones(2), TCDConfig())
    g(jnp.ones(2), TCDConfig(timestep_scaling=2.0))
    assert len(traces) == 2
    assert table_sum(alphas_cumprod(cfg, jnp)).shape == (1000,)
