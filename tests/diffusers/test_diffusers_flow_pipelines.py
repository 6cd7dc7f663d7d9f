"""Real diffusers flow-matching pipelines (FLUX.1, FLUX.1 img2img, SD3, Wan 2.1) run with
``tcd_diffusers.FlowMatchTCDScheduler`` and with diffusers' ``FlowMatchEulerDiscreteScheduler``.

The pipelines are built offline from tiny random-weight components (flow_components), each with
the Euler scheduler configured as its real model ships it. Each run swaps in a fresh scheduler
with the one-line ``from_config(pipe.scheduler.config, ...)`` and compares final latents bit for
bit: at η = 0 ours is Euler; at η = 1 it is Euler with ``stochastic_sampling=True``. These
pipelines pass no generator to ``scheduler.step``, so the step noise comes from torch's global
RNG: both runs seed it the same way right before the call (``step_seed``), and the initial noise
comes from the pipeline's own generator (``seed``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from flow_components import (
    FLUX_DEV_SCHEDULER,
    SD3_SCHEDULER,
    WAN_SCHEDULER,
    flux_img2img_pipeline,
    flux_pipeline,
    run_flux,
    run_flux_img2img,
    run_sd3,
    run_wan,
    sd3_pipeline,
    wan_pipeline,
)

from tcd_diffusers import FlowMatchTCDScheduler

SEED = 1234  # the pipeline's generator: initial noise (and img2img's VAE sample)
STEP_SEED = 99  # torch's global RNG, seeded right before the call: a stochastic step's noise


@dataclass(frozen=True)
class Case:
    build: Callable
    run: Callable
    shipped: dict  #: the real model's scheduler config
    call: dict = field(default_factory=dict)  #: extra call options


CASES = {
    "flux": Case(flux_pipeline, run_flux, FLUX_DEV_SCHEDULER),
    "flux-img2img": Case(flux_img2img_pipeline, run_flux_img2img, FLUX_DEV_SCHEDULER),
    "flux-img2img-strength0.6": Case(
        flux_img2img_pipeline, run_flux_img2img, FLUX_DEV_SCHEDULER, {"strength": 0.6}
    ),
    "sd3": Case(sd3_pipeline, run_sd3, SD3_SCHEDULER),
    "wan": Case(wan_pipeline, run_wan, WAN_SCHEDULER),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request):
    """(the case, its pipeline): one tiny pipeline per case, shared by the module's tests."""
    this = CASES[request.param]
    return this, this.build()


def _run(case, scheduler, seed: int = SEED, **kwargs) -> np.ndarray:
    this, pipe = case
    return this.run(pipe, scheduler, seed, **this.call, **kwargs)


def _config(case):
    return case[1].scheduler.config


def assert_identical(ref: np.ndarray, ours: np.ndarray) -> None:
    assert ref.shape == ours.shape and ref.dtype == ours.dtype
    assert np.isfinite(ref).all()
    assert np.array_equal(ref, ours), float(np.abs(ref - ours).max())


# --- the comparisons are meaningful (run now, with diffusers' scheduler alone) -----------------


def test_the_pipeline_ships_the_real_models_scheduler_config(case) -> None:
    this, pipe = case
    assert type(pipe.scheduler) is FlowMatchEulerDiscreteScheduler
    for key, value in this.shipped.items():
        assert pipe.scheduler.config[key] == value, key


def test_euler_runs_are_reproducible_and_seeded(case) -> None:
    config = _config(case)
    first = _run(case, FlowMatchEulerDiscreteScheduler.from_config(config))
    again = _run(case, FlowMatchEulerDiscreteScheduler.from_config(config))
    other = _run(case, FlowMatchEulerDiscreteScheduler.from_config(config), seed=SEED + 1)
    assert np.isfinite(first).all()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert type(case[1].scheduler) is FlowMatchEulerDiscreteScheduler  # put back after each run


def test_stochastic_euler_step_noise_follows_the_global_seed(case) -> None:
    """The η = 1 reference: reproducible under the same step seed, changed by another, and not
    the deterministic Euler's output (so its step noise reaches the result)."""
    config = _config(case)
    stochastic = lambda: FlowMatchEulerDiscreteScheduler.from_config(
        config, stochastic_sampling=True
    )
    first = _run(case, stochastic(), step_seed=STEP_SEED)
    again = _run(case, stochastic(), step_seed=STEP_SEED)
    other = _run(case, stochastic(), step_seed=STEP_SEED + 1)
    euler = _run(case, FlowMatchEulerDiscreteScheduler.from_config(config), step_seed=STEP_SEED)
    assert np.isfinite(first).all()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, euler)


# --- FlowMatchTCDScheduler against the references -----------------------------------------------


def test_eta_zero_is_euler(case) -> None:
    config = _config(case)
    ref = _run(case, FlowMatchEulerDiscreteScheduler.from_config(config))
    ours = _run(case, FlowMatchTCDScheduler.from_config(config, eta=0.0))
    assert_identical(ref, ours)


def test_eta_one_is_stochastic_euler(case) -> None:
    config = _config(case)
    ref = _run(
        case,
        FlowMatchEulerDiscreteScheduler.from_config(config, stochastic_sampling=True),
        step_seed=STEP_SEED,
    )
    ours = _run(case, FlowMatchTCDScheduler.from_config(config, eta=1.0), step_seed=STEP_SEED)
    assert_identical(ref, ours)


def test_eta_between_runs_and_changes_the_result(case) -> None:
    config = _config(case)
    euler = _run(case, FlowMatchEulerDiscreteScheduler.from_config(config))
    zero = _run(case, FlowMatchTCDScheduler.from_config(config, eta=0.0), step_seed=STEP_SEED)
    ours = _run(case, FlowMatchTCDScheduler.from_config(config, eta=0.3), step_seed=STEP_SEED)
    again = _run(case, FlowMatchTCDScheduler.from_config(config, eta=0.3), step_seed=STEP_SEED)
    assert ours.shape == euler.shape and ours.dtype == euler.dtype
    assert np.isfinite(ours).all()
    assert np.array_equal(ours, again)
    assert not np.array_equal(ours, zero)


def test_a_held_generator_makes_the_image_reproducible_from_its_seed(case) -> None:
    """The documented way to reproducible images: a generator the scheduler holds. The global
    RNG's state (different step seeds here) then no longer matters; another held seed does."""

    def held(seed: int) -> FlowMatchTCDScheduler:
        scheduler = FlowMatchTCDScheduler.from_config(_config(case), eta=0.5)
        scheduler.generator = torch.Generator().manual_seed(seed)
        return scheduler

    first = _run(case, held(7), step_seed=STEP_SEED)
    again = _run(case, held(7), step_seed=STEP_SEED + 1)
    other = _run(case, held(8), step_seed=STEP_SEED)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
