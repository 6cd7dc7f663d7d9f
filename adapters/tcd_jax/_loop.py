"""What the compiled loops of :func:`tcd_jax.sample` and :func:`tcd_jax.sample_lcm` share
(private): host plans per strength and their sampling plans, the plan argument's conversion, a
plan's rows from its begin index, the checks and dtype conversions of a loop's inputs, the config
fields a traced step reads, and the scan over a plan's rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from tcd_core import LCMPlan, TCDConfig, TCDPlan

__all__ = [
    "DEFAULT_CONFIG",
    "FULL_UNROLL_MAX_STEPS",
    "as_loop_plan",
    "checked_begin",
    "checked_config",
    "host_rows",
    "loop_inputs",
    "loop_plan",
    "scan_rows",
    "step_config",
]

DEFAULT_CONFIG = TCDConfig()
_P = TypeVar("_P", TCDPlan, LCMPlan)
_L = TypeVar("_L")
#: Loops with at most this many scanned steps are fully unrolled (longer ones stay a rolled scan,
#: to bound compile time).
FULL_UNROLL_MAX_STEPS = 16


def checked_begin(plan: TCDPlan | LCMPlan, begin_index: int) -> int:
    """``begin_index``; ValueError unless it is a row of ``plan``."""
    n = len(plan.timesteps)
    if not 0 <= begin_index < n:
        raise ValueError(f"`begin_index` must be in [0, {n}), got {begin_index}")
    return begin_index


def host_rows(
    plan: TCDPlan | LCMPlan, begin_index: int, final: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The rows of a host plan from ``begin_index`` on, as a sampling plan's fields."""
    return (
        np.asarray(plan.timesteps[begin_index:], dtype=np.int32),
        np.asarray(plan.prev_timesteps[begin_index:], dtype=np.int32),
        final,
        begin_index,
    )


def host_plans(
    plan_function: Callable[..., _P],
    config: TCDConfig | None,
    num_inference_steps: int | None,
    original_inference_steps: int | None,
    timesteps: Sequence[int] | None,
    strength: float | Sequence[float],
) -> _P | list[_P]:
    """``plan_function``'s host plan, or one per strength when ``strength`` is a sequence."""
    config = DEFAULT_CONFIG if config is None else config

    def plan_for(strength: float) -> _P:
        return plan_function(
            config,
            num_inference_steps,
            original_inference_steps=original_inference_steps,
            timesteps=timesteps,
            strength=strength,
        )

    if isinstance(strength, (list, tuple, np.ndarray)):
        return [plan_for(float(s)) for s in strength]
    return plan_for(cast(float, strength))


def loop_plan(
    plan_function: Callable[..., _P],
    from_plan: Callable[[_P], _L],
    stack: Callable[[list[_P]], _L],
    config: TCDConfig | None,
    num_inference_steps: int | None,
    original_inference_steps: int | None,
    timesteps: Sequence[int] | None,
    strength: float | Sequence[float],
) -> _L:
    """A loop's sampling plan: ``plan_function``'s host plan converted by ``from_plan`` or, when
    ``strength`` is a sequence, one host plan per strength, stacked by ``stack``."""
    plans = host_plans(
        plan_function, config, num_inference_steps, original_inference_steps, timesteps, strength
    )
    if isinstance(plans, list):
        return stack(plans)
    return from_plan(plans)


def as_loop_plan(plan: Any, host_type: type, loop_type: Any, accepted: str, note: str = "") -> Any:
    """``plan`` as the loop's plan type ``loop_type``: a ``host_type`` plan (a
    :class:`tcd_core.TCDPlan` or :class:`tcd_core.LCMPlan`) converted with
    ``loop_type.from_plan``, a ``loop_type`` plan as it is; otherwise ValueError saying what is
    ``accepted`` (and ``note``)."""
    if isinstance(plan, host_type):
        return loop_type.from_plan(plan)
    if isinstance(plan, loop_type):
        return plan
    raise ValueError(f"`plan` must be {accepted}, got {type(plan).__name__}{note}")


def checked_config(config: Any) -> TCDConfig:
    """``config``, default ``TCDConfig()``; ValueError for anything but a TCDConfig."""
    config = DEFAULT_CONFIG if config is None else config
    if not isinstance(config, TCDConfig):
        raise ValueError(f"`config` must be a tcd_core.TCDConfig, got {type(config).__name__}")
    return config


_Rows = TypeVar("_Rows", bound=tuple[Any, ...])


def loop_inputs(latents: Any, plan: _Rows) -> tuple[jax.Array, _Rows, int]:
    """(latents, plan, batch size) for a compiled loop: the latents checked (floating point),
    the plan's shape checked against them, and its rows in the loop's dtypes (``plan``'s type:
    :class:`SamplingPlan` or ``LCMSamplingPlan``)."""
    latents = jnp.asarray(latents) if not isinstance(latents, jax.Array) else latents
    if not jnp.issubdtype(latents.dtype, jnp.floating):
        raise ValueError(f"`latents` must be a floating-point array, got {latents.dtype}")
    timesteps = plan[0]
    batch = latents.shape[0] if latents.ndim else 1
    if np.ndim(timesteps) == 2 and timesteps.shape[1] != batch:
        raise ValueError(f"per-sample plan has {timesteps.shape[1]} columns for a batch of {batch}")
    if np.ndim(timesteps) not in (1, 2):
        raise ValueError(f"plan arrays must be (steps,) or (steps, B), got {np.shape(timesteps)}")
    # Host (NumPy) plans and tables go to the jitted loop as they are: its dispatch transfers
    # them, which costs less than converting each with jnp.asarray first.
    xp = np if all(isinstance(a, np.ndarray) for a in plan[:3]) else jnp
    make = cast(Callable[..., _Rows], type(plan))  # a NamedTuple class: positional fields
    rows = make(
        xp.asarray(plan[0], dtype=np.int32),
        xp.asarray(plan[1], dtype=np.int32),
        xp.asarray(plan[2], dtype=bool),
        xp.asarray(plan[3], dtype=np.int32),
    )
    return latents, rows, batch


@functools.lru_cache(maxsize=64)
def step_config(config: TCDConfig) -> TCDConfig:
    """The fields the traced step reads; the schedule enters as an array, so configs that differ
    only in their noise schedule share one compiled loop (and one compiled eager step)."""
    return TCDConfig(
        prediction_type=config.prediction_type,
        clip_sample=config.clip_sample,
        clip_sample_range=config.clip_sample_range,
        thresholding=config.thresholding,
        dynamic_thresholding_ratio=config.dynamic_thresholding_ratio,
        sample_max_value=config.sample_max_value,
    )


#: One step of a compiled loop: ``step(x, i, t, p, final) -> x`` for the step index i (the
#: reference's, counting from the plan's begin index) and the plan's row (t, p, final).
RowStep = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def scan_rows(step: RowStep, latents: jax.Array, plan: Any, *, scan_last: bool) -> jax.Array:
    """x after ``step`` over the rows of a sampling plan (``SamplingPlan`` or
    ``LCMSamplingPlan``) in one ``lax.scan``, with i = ``plan.begin_index`` + the row number:
    every row when ``scan_last``, else every row but the last (the caller runs that one).

    Few-step loops (TCD's and LCM's 2-8 steps) are fully unrolled (at most
    ``FULL_UNROLL_MAX_STEPS`` scanned rows): XLA then schedules the steps' draws and updates
    together, which measured 1.2x (threefry) to 2.5x (rbg) faster per step on CPU.
    """
    steps = plan.timesteps.shape[0]
    index = plan.begin_index + jnp.arange(steps, dtype=jnp.int32)
    rows = (index, plan.timesteps, plan.prev_timesteps, plan.final)
    if not scan_last:
        rows = tuple(r[:-1] for r in rows)

    def body(x: jax.Array, row: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
        i, t, p, final = row
        return step(x, i, t, p, final), None

    scanned = steps if scan_last else steps - 1
    x, _ = jax.lax.scan(body, latents, rows, unroll=scanned <= FULL_UNROLL_MAX_STEPS)
    return x
