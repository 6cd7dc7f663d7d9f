"""The sampling loops on the toy problem: tcd_core's plan and step around an exact model.

:func:`tcd_sample` is TCD's Strategic Stochastic Sampling (Algorithm 4 of the TCD paper:
``tcd_timesteps`` + ``tcd_step``); :func:`lcm_sample` is multistep consistency sampling
(Algorithm 1 of the consistency-models paper, diffusers' ``LCMScheduler``: ``lcm_timesteps`` +
``lcm_step``). Both draw their random numbers the same way, so the same seed gives both the same
x_T.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from tcd_core import (
    TCDConfig,
    alphas_cumprod,
    draws_noise,
    lcm_step,
    lcm_timesteps,
    tcd_step,
    tcd_timesteps,
)

from ._backend import to_numpy
from .models import epsilon_to_prediction

__all__ = ["SampleRun", "lcm_sample", "tcd_sample"]


class SampleRun(NamedTuple):
    """The result of :func:`tcd_sample` or :func:`lcm_sample`.

    Attributes:
        samples: the final samples, shape (N, 2), in the backend's namespace (float32).
        timesteps: the plan's timesteps (host int64).
        trajectory: host copies of the first ``trajectory`` samples before each step and after
            the last one, shape (steps + 1, k, 2), or None.
        seconds: wall time of the loop, including the final device-to-host copy.
    """

    samples: Any
    timesteps: np.ndarray
    trajectory: np.ndarray | None
    seconds: float


def tcd_sample(
    model: Callable[[Any, int], Any],
    config: TCDConfig,
    num_inference_steps: int,
    eta: float,
    num_samples: int,
    seed: int,
    xp: Any = None,
    device: Any = None,
    trajectory: int = 0,
) -> SampleRun:
    """Sample with TCD: x_T ~ N(0, I), then ``tcd_step`` along ``tcd_timesteps``.

    ``model(x, t)`` returns an ε-prediction; it is rewritten in ``config.prediction_type`` form
    (:func:`~tcd_sample.toy.epsilon_to_prediction`) before the step, so the step's own
    conversion is exercised. All random numbers come from ``numpy.random.default_rng(seed)`` on
    the host (x_T first, then one N(0, I) draw per step where the reference draws one) and are
    copied to the backend as float32: every backend sees the same noise.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import DistilledModel, preset, tcd_sample
        >>> cfg = TCDConfig()
        >>> model = DistilledModel(preset("ring"), alphas_cumprod(cfg))
        >>> run = tcd_sample(model, cfg, 2, eta=0.3, num_samples=100, seed=0)
        >>> run.samples.shape, run.timesteps.tolist()
        ((100, 2), [999, 499])
    """
    plan = tcd_timesteps(config, num_inference_steps)
    draws = [draws_noise(i, eta, plan.num_inference_steps) for i in range(len(plan.timesteps))]

    def step(i: int, out: Any, x: Any, z: Any, table: Any) -> Any:
        t, p = int(plan.timesteps[i]), int(plan.prev_timesteps[i])
        return tcd_step(out, t, x, p, table, eta=eta, noise=z, config=config).prev_sample

    return _sample_loop(
        model, config, plan.timesteps, draws, step, num_samples, seed, xp, device, trajectory
    )


def lcm_sample(
    model: Callable[[Any, int], Any],
    config: TCDConfig,
    num_inference_steps: int,
    num_samples: int,
    seed: int,
    xp: Any = None,
    device: Any = None,
    trajectory: int = 0,
) -> SampleRun:
    r"""Sample with multistep consistency sampling (LCM): x_T ~ N(0, I), then ``lcm_step`` along
    ``lcm_timesteps``.

    Each step maps x_t to the consistency function's estimate
    denoised = c_out·x̂₀ + c_skip·x_t and, except at the final step, forward-noises it to the
    next timestep with fresh z: x = √ᾱ_prev·denoised + √(1−ᾱ_prev)·z. The final step returns
    ``denoised`` itself, an estimate of x₀ (TCD's last step instead lands on timestep 0, at
    ᾱ₀). There is no η.

    Random numbers as in :func:`tcd_sample`: ``numpy.random.default_rng(seed)`` on the host, x_T
    first, then one N(0, I) draw per step where the reference (diffusers' ``LCMScheduler.step``)
    draws one, :meth:`~tcd_core.LCMPlan.noise_mask`: every step but the final one.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import DistilledModel, lcm_sample, preset
        >>> cfg = TCDConfig()
        >>> model = DistilledModel(preset("ring"), alphas_cumprod(cfg))
        >>> run = lcm_sample(model, cfg, 4, num_samples=100, seed=0)
        >>> run.samples.shape, run.timesteps.tolist()
        ((100, 2), [999, 759, 499, 259])
    """
    plan = lcm_timesteps(config, num_inference_steps)
    draws = plan.noise_mask().tolist()
    final = plan.final_steps().tolist()

    def step(i: int, out: Any, x: Any, z: Any, table: Any) -> Any:
        t, p = int(plan.timesteps[i]), int(plan.prev_timesteps[i])
        return lcm_step(out, t, x, p, table, z, final=final[i], config=config).prev_sample

    return _sample_loop(
        model, config, plan.timesteps, draws, step, num_samples, seed, xp, device, trajectory
    )


def _sample_loop(
    model: Callable[[Any, int], Any],
    config: TCDConfig,
    timesteps: np.ndarray,
    draws: list[bool],
    step: Callable[[int, Any, Any, Any, Any], Any],
    num_samples: int,
    seed: int,
    xp: Any,
    device: Any,
    trajectory: int,
) -> SampleRun:
    """The loop both samplers share: x_T, then per step the model, the noise where ``draws``
    says, and ``step(i, model_output, x, z, table)``."""
    if xp is None:
        from ._backend import load_backend

        xp = load_backend("numpy")
    table = alphas_cumprod(config, xp, device)
    host_table = to_numpy(table).astype(np.float64)
    rng = np.random.default_rng(seed)

    def draw() -> Any:
        return xp.asarray(rng.standard_normal((num_samples, 2)).astype(np.float32), device=device)

    start = time.perf_counter()
    x = draw()
    path = [to_numpy(x[:trajectory, :])] if trajectory else None
    for i, t in enumerate(timesteps.tolist()):
        eps = model(x, t)
        out = epsilon_to_prediction(eps, x, float(host_table[t]), config.prediction_type)
        z = draw() if draws[i] else None
        x = step(i, out, x, z, table)
        if path is not None:
            path.append(to_numpy(x[:trajectory, :]))
    to_numpy(x)  # wait for the device
    seconds = time.perf_counter() - start
    traj = np.stack(path) if path is not None else None
    return SampleRun(x, timesteps, traj, seconds)
