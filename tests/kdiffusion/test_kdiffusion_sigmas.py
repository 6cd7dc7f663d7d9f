"""get_sigmas_tcd: the σ's of diffusers' TCD plan, with its integers, errors and warnings.

``get_sigmas_tcd(n, ac, original_inference_steps=k, strength=s, timesteps=...)`` stands for
``TCDScheduler(original_inference_steps=k).set_timesteps(n, strength=s, timesteps=...)``:
``original_inference_steps`` is the scheduler's config value, never the set_timesteps argument
(which switches diffusers to another grid; that plan is reachable through ``timesteps``).
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples
from kdiffusion_helpers import ComfyModelSampling, betas64, captured_warnings
from kdiffusion_strategies import configs, plans, sigma_kwargs

from tcd_core import TCDConfig, alphas_cumprod
from tcd_kdiffusion import (
    alphas_cumprod_from_sigmas,
    get_sigmas_tcd,
    sigmas_from_alphas_cumprod,
)
from tcd_kdiffusion.model_sampling import resolve_schedule as resolve_table
from tcd_kdiffusion.schedule import timestep_of

REF_LOGGER = "diffusers.schedulers.scheduling_tcd"
OUR_LOGGER = "tcd_core"


def expected_sigmas(ac: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    a = ac.double()[timesteps]
    return torch.cat([((1 - a) / a).sqrt().float(), torch.zeros(1)])


@given(cfg=configs(), data=st.data())
@settings(max_examples=examples(80))
def test_same_plan_errors_and_warnings_as_set_timesteps(cfg: dict, data: st.DataObject) -> None:
    plan = data.draw(plans(cfg["num_train_timesteps"], max_steps=60), label="plan")
    ref = diffusers.TCDScheduler(**cfg)
    steps, kwargs = sigma_kwargs(cfg, plan)
    with captured_warnings(REF_LOGGER) as ref_warnings:
        try:
            ref.set_timesteps(**plan)
            failed = len(ref.timesteps) == 0  # diffusers keeps no step; tcd_core refuses
        except (ValueError, ZeroDivisionError):
            failed = True
    with captured_warnings(OUR_LOGGER) as our_warnings:
        if failed:
            with pytest.raises(ValueError):
                get_sigmas_tcd(steps, ref.alphas_cumprod, **kwargs)
            return
        ac = ref.alphas_cumprod
        if (ac[ref.timesteps] == 0).any():  # zero-terminal SNR: σ = ∞ at t = N−1
            with pytest.raises(ValueError, match="alphas_cumprod` is 0"):
                get_sigmas_tcd(steps, ac, **kwargs)
            return
        sigmas = get_sigmas_tcd(steps, ac, **kwargs)
    assert our_warnings == ref_warnings
    assert sigmas.dtype == torch.float32 and sigmas.ndim == 1
    assert torch.equal(sigmas, expected_sigmas(ac, ref.timesteps))
    assert (sigmas[:-1] > sigmas[1:]).all() and sigmas[-1] == 0
    # the σ's map back to diffusers' integers, through the table a k-diffusion wrapper carries
    table = resolve_table(None, ac)
    back = [timestep_of(float(s), table, "sigma") for s in sigmas[:-1]]
    assert back == ref.timesteps.tolist()


@pytest.mark.parametrize(
    "steps, original, expected",
    [
        (1, 50, [999]),
        (2, 50, [999, 499]),
        (4, 50, [999, 759, 499, 259]),
        (8, 50, [999, 879, 759, 639, 499, 379, 259, 139]),
        (4, 30, [989, 758, 494, 263]),
    ],
)
def test_original_inference_steps_is_the_config_value(steps, original, expected) -> None:
    """The default is the plan diffusers users get from ``set_timesteps(n)`` with the config's
    ``original_inference_steps`` (the reference's documented defaults, pinned here)."""
    ac = alphas_cumprod(TCDConfig())
    ours = get_sigmas_tcd(steps, ac, original_inference_steps=original)
    ref = diffusers.TCDScheduler(original_inference_steps=original)
    ref.set_timesteps(steps)
    assert ref.timesteps.tolist() == expected
    assert torch.equal(ours, expected_sigmas(torch.from_numpy(ac), ref.timesteps))


def test_the_set_timesteps_argument_grid_is_reached_through_timesteps() -> None:
    """``set_timesteps(4, original_inference_steps=50)`` gives another grid in diffusers; the
    same plan comes from passing its integers (warnings aside: they are off the config grid)."""
    ref = diffusers.TCDScheduler()
    ref.set_timesteps(4, original_inference_steps=50)
    assert ref.timesteps.tolist() == [999, 749, 499, 249]
    ac = ref.alphas_cumprod
    ours = get_sigmas_tcd(None, ac, timesteps=ref.timesteps.tolist())
    assert torch.equal(ours, expected_sigmas(ac, ref.timesteps))
    assert not torch.equal(ours, get_sigmas_tcd(4, ac))


def test_strength_gives_the_image_to_image_tail() -> None:
    ac = alphas_cumprod(TCDConfig())
    sigmas = get_sigmas_tcd(4, ac, strength=0.5)
    ref = diffusers.TCDScheduler()
    ref.set_timesteps(4, strength=0.5)
    assert ref.timesteps.tolist() == [499, 379, 259, 139]
    assert torch.equal(sigmas, expected_sigmas(torch.from_numpy(ac), ref.timesteps))


def test_device_and_table_forms() -> None:
    ac = alphas_cumprod(TCDConfig())
    base = get_sigmas_tcd(4, ac)
    assert base.device == torch.device("cpu")
    for form in (torch.from_numpy(ac), ac.tolist(), torch.from_numpy(ac).double()):
        assert torch.equal(get_sigmas_tcd(4, form, device="cpu"), base)
    assert get_sigmas_tcd(4, ac, device="meta").device == torch.device("meta")


def test_comfyui_sigma_table_round_trip() -> None:
    """From ComfyUI's σ table (float32 from float64 maths), alphas_cumprod_from_sigmas keeps
    float64, so get_sigmas_tcd returns the table's own σ's, bit for bit, even near σ_min where
    a float32 ᾱ would keep too few digits of 1 − ᾱ."""
    sampling = ComfyModelSampling(betas64({}))
    ac = alphas_cumprod_from_sigmas(sampling.sigmas)
    assert ac.dtype == torch.float64
    assert torch.equal(sigmas_from_alphas_cumprod(ac), sampling.sigmas)
    sigmas = get_sigmas_tcd(None, ac, timesteps=[999, 500, 3, 1, 0])
    assert torch.equal(sigmas[:-1], sampling.sigmas[[999, 500, 3, 1, 0]])
    # through float32 ᾱ the smallest σ's move by more than 1e-5 (relative) ...
    rounded = get_sigmas_tcd(None, ac.float(), timesteps=[1, 0])
    rel = (rounded[:-1].double() - sampling.sigmas[[1, 0]].double()) / sampling.sigmas[[1, 0]]
    assert rel.abs().max() > 1e-5
    # ... and are still recognised as those timesteps: that is float32 rounding of ᾱ, not an
    # off-table σ
    table = resolve_table(None, ac)
    assert [timestep_of(float(s), table, "s") for s in rounded[:-1]] == [1, 0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 51}, "original_steps x strength"),
        ({"num_inference_steps": 4, "strength": 0.0}, "strength"),
        ({"num_inference_steps": 4, "strength": 1.5}, "strength"),
        ({"num_inference_steps": 4, "original_inference_steps": 0}, "original_inference_steps"),
        ({"num_inference_steps": 4, "original_inference_steps": 2000}, "original_steps"),
        ({"num_inference_steps": 4, "timesteps": [999, 500]}, "one of `num_inference_steps`"),
        ({"num_inference_steps": None}, "exactly one of"),
        ({"num_inference_steps": None, "timesteps": [500, 999]}, "descending"),
        ({"num_inference_steps": None, "timesteps": [1000]}, "train_timesteps"),
    ],
)
def test_plan_errors_name_the_argument(kwargs: dict, match: str) -> None:
    ac = alphas_cumprod(TCDConfig())
    kwargs = dict(kwargs)
    steps = kwargs.pop("num_inference_steps")
    with pytest.raises(ValueError, match=match):
        get_sigmas_tcd(steps, ac, **kwargs)


@pytest.mark.parametrize(
    "table, match",
    [
        (np.array([0.9, 1.2, 0.5]), "alphas_cumprod"),
        (np.array([0.9, np.nan, 0.5]), "alphas_cumprod"),
        (np.zeros((2, 3)), "alphas_cumprod"),
        (np.array([]), "alphas_cumprod"),
        ("not a table", "alphas_cumprod"),
    ],
)
def test_bad_tables(table, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_sigmas_tcd(1, table)


def test_zero_terminal_snr_table_needs_clamping() -> None:
    cfg = {"rescale_betas_zero_snr": True}
    ac = diffusers.TCDScheduler(**cfg).alphas_cumprod
    assert ac[-1] == 0
    with pytest.raises(ValueError, match=r"timestep\(s\) \[999\]"):
        get_sigmas_tcd(4, ac)
    clamped = ac.clone()
    clamped[-1] = 4.8973451890853435e-08  # what ComfyUI stores for its zero-SNR schedules
    sigmas = get_sigmas_tcd(4, clamped)
    assert torch.isfinite(sigmas).all() and float(sigmas[0]) > 4000
    assert torch.equal(
        get_sigmas_tcd(4, ac, strength=0.5), get_sigmas_tcd(4, clamped, strength=0.5)
    )
