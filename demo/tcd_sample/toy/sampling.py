"""The sampling loop on the toy problem: tcd_core's plan and step around an exact model.

:func:`sample` is one loop for either algorithm (``plan_timesteps`` + ``step``);
:func:`tcd_sample` (TCD's Strategic Stochastic Sampling, Algorithm 4 of the TCD paper) and
:func:`lcm_sample` (multistep consistency sampling, Algorithm 1 of the consistency-models paper,
diffusers' ``LCMScheduler``) are its two configurations. Both draw their random numbers the same
way, so the same seed gives both the same x_T.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from tcd_core import LCM, TCD, Algorithm, TCDConfig, alphas_cumprod, plan_timesteps, step

from ._backend import to_numpy
from .models import epsilon_to_prediction

__all__ = ["SampleRun", "lcm_sample", "sample", "tcd_sample"]


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


def sample(
    algorithm: Algorithm,
    model: Callable[[Any, int], Any],
    config: TCDConfig,
    num_inference_steps: int,
    num_samples: int,
    seed: int,
    xp: Any = None,
    device: Any = None,
    trajectory: int = 0,
    *,
    eta: float | None = None,
) -> SampleRun:
    """Sample with ``algorithm`` (:data:`tcd_core.TCD`, with ``eta``, or :data:`tcd_core.LCM`):
    x_T ~ N(0, I), then :func:`tcd_core.step` along :func:`tcd_core.plan_timesteps`.

    ``model(x, t)`` returns an ε-prediction; it is rewritten in ``config.prediction_type`` form
    (:func:`~tcd_sample.toy.epsilon_to_prediction`) before the step, so the step's own
    conversion is exercised. All random numbers come from ``numpy.random.default_rng(seed)`` on
    the host (x_T first, then one N(0, I) draw per step where the reference draws one,
    :meth:`tcd_core.Plan.noise_mask`) and are copied to the backend as float32: every backend,
    and both algorithms, see the same x_T. ``trajectory`` keeps host copies of the first
    ``trajectory`` samples before each step and after the last.

    Example:
        >>> from tcd_core import LCM, TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import DistilledModel, preset, sample
        >>> cfg = TCDConfig()
        >>> model = DistilledModel(preset("ring"), alphas_cumprod(cfg))
        >>> run = sample(LCM, model, cfg, 2, num_samples=100, seed=0, trajectory=1)
        >>> run.samples.shape, run.timesteps.tolist(), run.trajectory.shape
        ((100, 2), [999, 499], (3, 1, 2))
    """
    plan = plan_timesteps(algorithm, config, num_inference_steps)
    draws = plan.noise_mask(eta).tolist()
    final = plan.final_steps().tolist()
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
    for i, t in enumerate(plan.timesteps.tolist()):
        eps = model(x, t)
        out = epsilon_to_prediction(eps, x, float(host_table[t]), config.prediction_type)
        z = draw() if draws[i] else None
        p = int(plan.next_timesteps[i])
        x = step(
            algorithm, out, t, x, p, table, eta=eta, noise=z, final=final[i], config=config
        ).next_sample
        if path is not None:
            path.append(to_numpy(x[:trajectory, :]))
    to_numpy(x)  # wait for the device
    seconds = time.perf_counter() - start
    traj = np.stack(path) if path is not None else None
    return SampleRun(x, plan.timesteps, traj, seconds)


def tcd_sample(
    model: Callable[[Any, int], Any],
    config: TCDConfig,
    num_inference_steps: int,
    eta: float,
    num_samples: int,
    seed: int,
    *options: Any,
    **keywords: Any,
) -> SampleRun:
    """:func:`sample` with TCD (Strategic Stochastic Sampling, Algorithm 4 of the TCD paper) and
    its ``eta``; ``options`` are :func:`sample`'s ``xp``, ``device``, ``trajectory``.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import DistilledModel, preset, tcd_sample
        >>> cfg = TCDConfig()
        >>> model = DistilledModel(preset("ring"), alphas_cumprod(cfg))
        >>> run = tcd_sample(model, cfg, 2, eta=0.3, num_samples=100, seed=0)
        >>> run.samples.shape, run.timesteps.tolist()
        ((100, 2), [999, 499])
    """
    return sample(
        TCD, model, config, num_inference_steps, num_samples, seed, *options, eta=eta, **keywords
    )


def lcm_sample(
    model: Callable[[Any, int], Any],
    config: TCDConfig,
    num_inference_steps: int,
    num_samples: int,
    seed: int,
    *options: Any,
    **keywords: Any,
) -> SampleRun:
    r""":func:`sample` with multistep consistency sampling (LCM, Algorithm 1 of the
    consistency-models paper, diffusers' ``LCMScheduler``); ``options`` as in
    :func:`tcd_sample`.

    Each step maps x_t to the consistency function's estimate
    denoised = c_out·x̂₀ + c_skip·x_t and, except at the final step, forward-noises it to the
    next timestep with fresh z: x = √ᾱ_next·denoised + √(1−ᾱ_next)·z. The final step returns
    ``denoised`` itself, an estimate of x₀ (TCD's last step instead lands on timestep 0, at
    ᾱ₀). There is no η.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import DistilledModel, lcm_sample, preset
        >>> cfg = TCDConfig()
        >>> model = DistilledModel(preset("ring"), alphas_cumprod(cfg))
        >>> run = lcm_sample(model, cfg, 4, num_samples=100, seed=0)
        >>> run.samples.shape, run.timesteps.tolist()
        ((100, 2), [999, 759, 499, 259])
    """
    return sample(LCM, model, config, num_inference_steps, num_samples, seed, *options, **keywords)
