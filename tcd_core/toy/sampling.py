"""The TCD sampling loop on the toy problem: tcd_core's plan and step around an exact model."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..config import TCDConfig
from ..plan import draws_noise, tcd_timesteps
from ..schedule import alphas_cumprod
from ..step import tcd_step
from ._backend import to_numpy
from .models import epsilon_to_prediction

__all__ = ["SampleRun", "tcd_sample"]


class SampleRun(NamedTuple):
    """The result of :func:`tcd_sample`.

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
    (:func:`~tcd_core.toy.epsilon_to_prediction`) before the step, so the step's own conversion
    is exercised. All random numbers come from ``numpy.random.default_rng(seed)`` on the host
    (x_T first, then one N(0, I) draw per step where the reference draws one) and are copied to
    the backend as float32: every backend sees the same noise.

    Example:
        >>> from tcd_core import TCDConfig, alphas_cumprod
        >>> from tcd_core.toy import DistilledModel, preset, tcd_sample
        >>> cfg = TCDConfig()
        >>> model = DistilledModel(preset("ring"), alphas_cumprod(cfg))
        >>> run = tcd_sample(model, cfg, 2, eta=0.3, num_samples=100, seed=0)
        >>> run.samples.shape, run.timesteps.tolist()
        ((100, 2), [999, 499])
    """
    if xp is None:
        from ._backend import load_backend

        xp = load_backend("numpy")
    plan = tcd_timesteps(config, num_inference_steps)
    table = alphas_cumprod(config, xp, device)
    host_table = to_numpy(table).astype(np.float64)
    rng = np.random.default_rng(seed)

    def draw() -> Any:
        return xp.asarray(rng.standard_normal((num_samples, 2)).astype(np.float32), device=device)

    start = time.perf_counter()
    x = draw()
    path = [to_numpy(x[:trajectory, :])] if trajectory else None
    for i, (t, p) in enumerate(zip(plan.timesteps.tolist(), plan.prev_timesteps.tolist())):
        eps = model(x, t)
        out = epsilon_to_prediction(eps, x, float(host_table[t]), config.prediction_type)
        z = draw() if draws_noise(i, eta, plan.num_inference_steps) else None
        x = tcd_step(out, t, x, p, table, eta=eta, noise=z, config=config).prev_sample
        if path is not None:
            path.append(to_numpy(x[:trajectory, :]))
    to_numpy(x)  # wait for the device
    seconds = time.perf_counter() - start
    traj = np.stack(path) if path is not None else None
    return SampleRun(x, plan.timesteps, traj, seconds)
