"""tcd_jax: TCD sampling for JAX — a Flax-style scheduler and a compiled sampling loop.

* :class:`FlaxTCDScheduler`: diffusers' former Flax scheduler convention (config + immutable
  state pytree; ``step`` works in ``jax.jit``, ``lax.fori_loop``, ``lax.scan`` and ``pmap``). The
  PRNG key and η live in the state, so diffusers 0.39's Flax pipelines run it unmodified
  (``scheduler.step(state, noise_pred, t, latents).to_tuple()``).
* :func:`sample`: the whole loop compiled once (an unrolled ``lax.scan``); per-batch η and timesteps;
  runs unchanged on batches sharded over a ``jax.sharding.Mesh``.
* :class:`FlaxLCMScheduler` and :func:`sample_lcm`: multistep consistency sampling (LCM, the
  consistency models' Algorithm 1) in the same two forms: each scheduler and loop is written once
  for every :class:`tcd_core.Algorithm`, the TCD and LCM names are its two configurations.
* Flow matching (FLUX, SD3, Wan, LTX): :func:`sample` runs TCD on the flow path with a
  :func:`flow_sampling_plan` (diffusers' ``FlowMatchEulerDiscreteScheduler`` plan), and
  :class:`FlaxFlowMatchTCDScheduler` follows MaxDiffusion's ``FlaxFlowMatchScheduler`` convention
  (the step finds its index from the timestep; key and η in the state).
* :func:`prng_key`: choose the PRNG implementation (threefry, or ``rbg`` for accelerators).

All maths is :mod:`tcd_core`'s; numerically diffusers' ``TCDScheduler`` given the same noise.
"""

try:
    import jax  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the wheel test in .ci/run
    raise ImportError(
        f'tcd_jax needs JAX ({exc.name} is missing): pip install "tcd-core[jax]"'
    ) from exc

from tcd_core import TCDConfig

from .flow import (
    FlaxFlowMatchTCDScheduler,
    FlaxFlowMatchTCDSchedulerOutput,
    FlaxFlowMatchTCDSchedulerState,
    FlowMatchTCDConfig,
)
from .lcm import FlaxLCMScheduler, FlaxLCMSchedulerOutput, FlaxLCMSchedulerState
from .noise import PRNG_IMPLS, prng_key, step_noise
from .sampling import (
    LCMSamplingPlan,
    SamplingPlan,
    flow_sampling_plan,
    lcm_sampling_plan,
    sample,
    sample_lcm,
    sampling_plan,
    stack_plans,
)
from .scheduler import (
    FlaxTCDScheduler,
    FlaxTCDSchedulerOutput,
    FlaxTCDSchedulerState,
    jax_schedule,
)

__all__ = [
    "PRNG_IMPLS",
    "FlaxFlowMatchTCDScheduler",
    "FlaxFlowMatchTCDSchedulerOutput",
    "FlaxFlowMatchTCDSchedulerState",
    "FlaxLCMScheduler",
    "FlaxLCMSchedulerOutput",
    "FlaxLCMSchedulerState",
    "FlaxTCDScheduler",
    "FlaxTCDSchedulerOutput",
    "FlaxTCDSchedulerState",
    "FlowMatchTCDConfig",
    "LCMSamplingPlan",
    "SamplingPlan",
    "TCDConfig",
    "flow_sampling_plan",
    "jax_schedule",
    "lcm_sampling_plan",
    "prng_key",
    "sample",
    "sample_lcm",
    "sampling_plan",
    "stack_plans",
    "step_noise",
]
