"""The benchmark row of issue 11: sample_tcd with the identity denoiser, against its floor.

The harness times it; this checks that what it times is the TCD trajectory. With
model(x, σ) = x the denoiser's x̂₀ is x itself and ε̂ = 0, so each step is, in k-diffusion's
scaling, x ← x + √(1/ᾱ_p − 1/ᾱ_s)·z (x_s/√ᾱ_s = x, re-noised from s to p), and the last step
returns x_s = √ᾱ_s·x with s = 0: evaluated here in float64 from the same noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO))

from benchmarks import report  # noqa: E402
from benchmarks.contenders import cpu_contenders  # noqa: E402
from benchmarks.workloads import Workload, make_inputs  # noqa: E402
from tcd_core import alphas_cumprod, tcd_timesteps  # noqa: E402


def contender():
    (found,) = [c for c in cpu_contenders(include_jax=False) if c.key == "kdiffusion"]
    found.load()
    return found


@pytest.mark.parametrize("steps, eta", [(1, 0.3), (4, 0.3), (8, 0.0), (4, 1.0)])
def test_identity_denoiser_row_computes_the_tcd_trajectory(steps: int, eta: float) -> None:
    c = contender()
    assert c.floor == "floor-torch" and c.backend == "torch"
    inputs = make_inputs(Workload((1, 4, 8, 8), steps, eta))
    loop = c.prepare(inputs)
    out = loop.to_numpy(loop.run())
    again = loop.to_numpy(loop.run())
    assert np.array_equal(out, again)  # the generator is re-seeded per run

    ac = alphas_cumprod(inputs.config).astype(np.float64)
    plan = tcd_timesteps(inputs.config, steps)
    s_all = plan.intermediate_timesteps(eta)
    draws = plan.noise_mask(eta)
    g = torch.Generator().manual_seed(inputs.seed)
    x = inputs.latents.astype(np.float64)
    for i, (p, s) in enumerate(zip(plan.prev_timesteps, s_all)):
        if i == steps - 1:
            x = np.sqrt(ac[s]) * x
        elif draws[i]:
            z = torch.randn(inputs.latents.shape, generator=g).numpy().astype(np.float64)
            x = x + np.sqrt(1 / ac[p] - 1 / ac[s]) * z
    scale = 1 + np.abs(x).max()
    assert np.abs(out - x).max() <= 1e-5 * scale


def test_row_is_reported_against_its_floor() -> None:
    names = [c.key for c in cpu_contenders(include_jax=False)]
    assert "kdiffusion" in names and "floor-torch" in names
    fake = {
        "contenders": [c.describe() for c in cpu_contenders(include_jax=False)],
        "results": [],
    }
    whats = [h["what"] for h in report.headline(fake) if h["contender"] == "kdiffusion"]
    assert "sample_tcd (identity denoiser) vs torch floor" in whats
