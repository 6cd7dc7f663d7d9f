"""The NumPy contenders: the core on NumPy arrays and the NumPy floor, noise from
``np.random.default_rng(seed)`` (their own stream: no other contender draws the same noise)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tcd_core import alphas_cumprod, tcd_step, tcd_timesteps

from ..timing import numpy_peak_bytes
from ..workloads import Inputs, floor_coefficients
from .base import Contender, Loop

__all__ = ["CoreNumpy", "FloorNumpy"]


class CoreNumpy(Contender):
    def __init__(self) -> None:
        super().__init__(
            "core-numpy",
            "core, numpy",
            "numpy",
            "floor-numpy",
            "tcd_core.tcd_timesteps + tcd_step on numpy arrays, noise from "
            "np.random.default_rng(seed).standard_normal(dtype=float32)",
        )

    def load(self) -> None:
        pass

    def prepare(self, inputs: Inputs) -> Loop:
        cfg, wl = inputs.config, inputs.workload
        x0, eps = inputs.latents, inputs.model_output
        ac = alphas_cumprod(cfg)

        def run() -> Any:
            rng = np.random.default_rng(inputs.seed)
            plan = tcd_timesteps(cfg, wl.steps)
            draws = plan.noise_mask(wl.eta)
            x = x0
            for i, (t, p) in enumerate(zip(plan.timesteps.tolist(), plan.next_timesteps.tolist())):
                noise = rng.standard_normal(x.shape, dtype=np.float32) if draws[i] else None
                x = tcd_step(eps, t, x, p, ac, wl.eta, noise, cfg).prev_sample
            return x

        return Loop(run, np.asarray, memory=lambda: numpy_peak_bytes(run))


class FloorNumpy(Contender):
    def __init__(self) -> None:
        super().__init__(
            "floor-numpy",
            "floor, numpy",
            "numpy",
            "floor-numpy",
            "rng.standard_normal(dtype=float32) where the reference draws + y = a*x; "
            "y += b*eps; y += c*z",
            is_floor=True,
        )

    def load(self) -> None:
        pass

    def prepare(self, inputs: Inputs) -> Loop:
        wl = inputs.workload
        x0, eps = inputs.latents, inputs.model_output
        steps = list(zip(*floor_coefficients(inputs.config, wl.steps, wl.eta)))

        def run() -> Any:
            rng = np.random.default_rng(inputs.seed)
            x = x0
            for a, b, c, d in steps:
                y = x * np.float32(a)
                y += np.float32(b) * eps
                if d:
                    y += np.float32(c) * rng.standard_normal(x.shape, dtype=np.float32)
                x = y
            return x

        return Loop(run, np.asarray, memory=lambda: numpy_peak_bytes(run))
