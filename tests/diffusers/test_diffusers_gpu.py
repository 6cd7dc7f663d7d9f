"""On a CUDA device: a whole TCD or LCM loop makes no host-device synchronisation and matches
diffusers (skipped without CUDA; test_diffusers_core_delegation.py has the CPU stand-in)."""

from __future__ import annotations

import pytest
import torch
from diffusers_helpers import PAIRS, Pair, assert_same

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("img2img", [False, True])
@pytest.mark.parametrize("pair", PAIRS)
def test_loop_without_sync_and_identical(pair: Pair, dtype, img2img) -> None:
    device = torch.device("cuda")
    ours, ref = pair.ours(), pair.ref()
    x = torch.randn(2, 4, 64, 64, device=device, dtype=dtype)
    outputs = [0.1 * torch.randn_like(x) for _ in range(4)]
    results = []
    for scheduler, strict in ((ref, False), (ours, True)):
        scheduler.set_timesteps(4, device=device)
        start = x
        if img2img:  # what img2img pipelines do: add_noise, then a begin index
            start = scheduler.add_noise(x, outputs[0], scheduler.timesteps[1:2])
            scheduler.set_begin_index(1)
        g = torch.Generator(device).manual_seed(0)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if strict else "default")
        try:
            timesteps = scheduler.timesteps[1:] if img2img else scheduler.timesteps
            sample = start
            for t, m in zip(timesteps, outputs):
                sample = pair.step(scheduler, m, t, sample, eta=0.3, generator=g).prev_sample
        finally:
            torch.cuda.set_sync_debug_mode("default")
        results.append((sample, g.get_state()))
    assert_same(results[1][0], results[0][0])
    assert torch.equal(results[1][1], results[0][1])


@pytest.mark.parametrize("pair", PAIRS)
def test_sync_debug_mode_catches_the_reference(pair: Pair) -> None:
    """Guards the test above: the reference's step does synchronise (its first-step
    ``.item()`` and ``if prev_timestep >= 0``), so "error" mode really is enforced."""
    ref = pair.ref()
    ref.set_timesteps(4, device="cuda")
    x = torch.randn(1, 4, 8, 8, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            pair.step(ref, x, ref.timesteps[0], x, eta=0.3)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_flow_loop_without_sync_and_identical(dtype, eta) -> None:
    """FlowMatchTCDScheduler on CUDA, driven as FluxPipeline drives it (set_begin_index(0)): no
    host-device synchronisation, and η = 0 / η = 1 equal to the Euler / stochastic Euler loop,
    generator state included."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from tcd_diffusers import FlowMatchTCDScheduler

    device = torch.device("cuda")
    config = {"shift": 3.0, "use_dynamic_shifting": True}
    ref = FlowMatchEulerDiscreteScheduler(**config, stochastic_sampling=eta == 1.0)
    ours = FlowMatchTCDScheduler.from_config(ref.config, eta=eta)
    x = torch.randn(1, 4096, 64, device=device, dtype=dtype)
    velocities = [0.1 * torch.randn_like(x) for _ in range(4)]
    results = []
    for scheduler, strict in ((ref, False), (ours, True)):
        scheduler.set_timesteps(4, device=device, mu=1.15)
        scheduler.set_begin_index(0)
        g = torch.Generator(device).manual_seed(0)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if strict else "default")
        try:
            sample = x
            for t, v in zip(scheduler.timesteps, velocities):
                sample = scheduler.step(v, t, sample, generator=g).prev_sample
        finally:
            torch.cuda.set_sync_debug_mode("default")
        results.append((sample, g.get_state()))
    assert torch.equal(results[1][0], results[0][0])
    assert torch.equal(results[1][1], results[0][1])
