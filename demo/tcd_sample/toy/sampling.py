"""The sampling loop on the toy problem: tcd_core's plan and step around an exact model.

:func:`sample` is one loop for either algorithm (``plan_timesteps`` + ``step``) on either noise
path, the path a value as in the core's step: the VP path of the config's ᾱ table (the default),
or :data:`tcd_core.FLOW`, the flow-matching path, with the σ plan of :func:`flow_sigmas`.
:func:`tcd_sample` (TCD's Strategic Stochastic Sampling, Algorithm 4 of the TCD paper) and
:func:`lcm_sample` (multistep consistency sampling, Algorithm 1 of the consistency-models paper,
diffusers' ``LCMScheduler``; VP only) are its two configurations. Both draw their random numbers
the same way, so the same seed gives both the same x_T.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from tcd_core import (
    FLOW,
    FLOW_PREDICTION,
    LCM,
    TCD,
    Algorithm,
    FlowConfig,
    FlowPath,
    TCDConfig,
    alphas_cumprod,
    check_eta,
    flow_plan,
    plan_timesteps,
    step,
)

from ._backend import to_numpy
from .models import epsilon_to_prediction, velocity_to_prediction

__all__ = ["DEFAULT_SHIFT", "SampleRun", "flow_sigmas", "lcm_sample", "sample", "tcd_sample"]

#: The flow plan's default shift: SD3's (and FLUX's for its smaller images), which spends more
#: of the steps at high noise.
DEFAULT_SHIFT = 3.0


def flow_sigmas(num_inference_steps: int, shift: float = DEFAULT_SHIFT) -> np.ndarray:
    """The flow plan's σ, float32: u = linspace(1, 1/n, n) (the FLUX pipelines' grid), shifted to
    σ = shift·u/(1 + (shift − 1)·u) (SD3's static shift), then the terminal 0. Step i goes from
    ``sigmas[i]`` to ``sigmas[i + 1]``; the first σ is 1 (pure noise), the last 0 (the data).

    It is the core's :func:`tcd_core.flow_plan` with these ``sigmas``, i.e. diffusers'
    ``FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps(sigmas=u)``, bit for bit
    (ValueError for n < 1 or a shift outside [0.01, float32's largest]).

    Example:
        >>> flow_sigmas(4).astype(float).round(4).tolist()
        [1.0, 0.9, 0.75, 0.5, 0.0]
        >>> flow_sigmas(2, shift=1.0).tolist()
        [1.0, 0.5, 0.0]
    """
    n = num_inference_steps
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {n!r}")
    u = np.linspace(1.0, 1.0 / n, n)
    return flow_plan(FlowConfig(shift=shift), int(n), sigmas=u).sigmas


class _Schedule(NamedTuple):
    """A loop's plan on its path (private): the path value the core's step takes, each step's
    timestep and next timestep (host: ints on VP, σ floats on flow), final and draw flags, and
    the rewriting of the model's output in the config's prediction type."""

    path: Any
    timesteps: np.ndarray
    steps: list[tuple[Any, Any, bool, bool]]  # (t, next, final, draws)
    convert: Callable[[Any, Any, Any], Any]  # (model output, x, t) -> config's prediction type


def _schedule(
    algorithm: Algorithm,
    config: TCDConfig,
    num_inference_steps: int,
    eta: float | None,
    path: Any,
    shift: float,
    xp: ModuleType,
    device: Any,
) -> _Schedule:
    ptype = config.prediction_type
    if isinstance(path, FlowPath):
        if not algorithm.has_eta:
            raise ValueError(
                f"{algorithm!r} has no flow form (its boundary conditions are defined on the VP "
                "path's timesteps); on the flow path TCD with eta=1 is the flow LCM step"
            )
        FLOW.check_prediction(ptype)
        if ptype == "epsilon":
            raise ValueError(
                "`prediction_type` 'epsilon' cannot start the flow plan at σ = 1: "
                "x̂₀ = (x − σ·ε)/(1 − σ) divides by zero there; use 'flow_prediction' or 'sample'"
            )
        check_eta(eta)  # None too: a TypeError naming `eta`
        sigmas = flow_sigmas(num_inference_steps, shift)
        n = len(sigmas) - 1
        final = [i == n - 1 for i in range(n)]
        levels = sigmas.tolist()
        steps = [
            (levels[i], levels[i + 1], final[i], bool(algorithm.draws(eta, final[i])))
            for i in range(n)
        ]
        return _Schedule(
            FLOW,
            sigmas[:-1],
            steps,
            lambda out, x, t: velocity_to_prediction(out, x, t, ptype),
        )
    if path is not None:
        raise TypeError(
            f"`path` must be None (the VP path of the config) or tcd_core.FLOW, got {path!r}"
        )
    plan = plan_timesteps(algorithm, config, num_inference_steps)
    draws = plan.noise_mask(eta).tolist()
    finals = plan.final_steps().tolist()
    table = alphas_cumprod(config, xp, device)
    host_table = to_numpy(table).astype(np.float64)
    nexts = plan.next_timesteps.tolist()
    steps = [(t, int(nexts[i]), finals[i], draws[i]) for i, t in enumerate(plan.timesteps.tolist())]
    return _Schedule(
        table,
        plan.timesteps,
        steps,
        lambda out, x, t: epsilon_to_prediction(out, x, float(host_table[t]), ptype),
    )


class SampleRun(NamedTuple):
    """The result of :func:`tcd_sample` or :func:`lcm_sample`.

    Attributes:
        samples: the final samples, shape (N, 2), in the backend's namespace (float32).
        timesteps: the plan's timesteps: host int64 on the VP path, the σ of every step on the
            flow path (host float32, without the terminal 0).
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
    model: Callable[[Any, Any], Any],
    config: TCDConfig | None,
    num_inference_steps: int,
    num_samples: int,
    seed: int,
    xp: ModuleType | None = None,
    device: Any = None,
    trajectory: int = 0,
    *,
    eta: float | None = None,
    path: Any = None,
    shift: float = DEFAULT_SHIFT,
) -> SampleRun:
    """Sample with ``algorithm`` (:data:`tcd_core.TCD`, with ``eta``, or :data:`tcd_core.LCM`):
    x_T ~ N(0, I), then :func:`tcd_core.step` along the plan, on ``path``.

    ``path`` is None for the VP path of the config's ᾱ table (:func:`tcd_core.plan_timesteps`),
    or :data:`tcd_core.FLOW` for the flow-matching path, along :func:`flow_sigmas`'s plan with
    ``shift`` (TCD only: LCM has no flow form). ``config`` is the step's
    :class:`~tcd_core.TCDConfig`; None is the path's default (``TCDConfig()``, or
    ``TCDConfig(prediction_type="flow_prediction")`` on flow).

    ``model(x, t)`` returns an ε-prediction on VP (t a timestep), a velocity v = ε − x₀ on flow
    (t = σ); it is rewritten in ``config.prediction_type`` form
    (:func:`~tcd_sample.toy.epsilon_to_prediction`,
    :func:`~tcd_sample.toy.velocity_to_prediction`) before the step, so the step's own
    conversion is exercised. All random numbers come from ``numpy.random.default_rng(seed)`` on
    the host (x_T first, then one N(0, I) draw per step where the reference draws one,
    :meth:`tcd_core.Plan.noise_mask`; on flow where η > 0 and the step is not the last) and are
    copied to the backend as float32: every backend, both algorithms and both paths see the same
    x_T. ``trajectory`` keeps host copies of the first ``trajectory`` samples before each step and
    after the last.

    Example:
        >>> from tcd_core import FLOW, LCM, TCD, TCDConfig, alphas_cumprod
        >>> from tcd_sample.toy import DistilledModel, preset, sample
        >>> cfg = TCDConfig()
        >>> model = DistilledModel(preset("ring"), alphas_cumprod(cfg))
        >>> run = sample(LCM, model, cfg, 2, num_samples=100, seed=0, trajectory=1)
        >>> run.samples.shape, run.timesteps.tolist(), run.trajectory.shape
        ((100, 2), [999, 499], (3, 1, 2))
        >>> flow = DistilledModel(preset("ring"), FLOW)
        >>> run = sample(TCD, flow, None, 2, num_samples=100, seed=0, eta=0.3, path=FLOW)
        >>> run.samples.shape, run.timesteps.tolist()
        ((100, 2), [1.0, 0.75])
    """
    if config is None:
        flow = isinstance(path, FlowPath)
        config = TCDConfig(prediction_type=FLOW_PREDICTION) if flow else TCDConfig()
    if xp is None:
        from ._backend import load_backend

        xp = load_backend("numpy")
    plan = _schedule(algorithm, config, num_inference_steps, eta, path, shift, xp, device)
    rng = np.random.default_rng(seed)

    def draw() -> Any:
        return xp.asarray(rng.standard_normal((num_samples, 2)).astype(np.float32), device=device)

    start = time.perf_counter()
    x = draw()
    path_points = [to_numpy(x[:trajectory, :])] if trajectory else None
    for t, p, final, draws in plan.steps:
        out = plan.convert(model(x, t), x, t)
        z = draw() if draws else None
        x = step(
            algorithm, out, t, x, p, plan.path, eta=eta, noise=z, final=final, config=config
        ).next_sample
        if path_points is not None:
            path_points.append(to_numpy(x[:trajectory, :]))
    to_numpy(x)  # wait for the device
    seconds = time.perf_counter() - start
    traj = np.stack(path_points) if path_points is not None else None
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
