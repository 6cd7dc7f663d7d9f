"""The whole LCM sampling loop (Algorithm 1) as one compiled function (``lax.scan``).

The sibling of :func:`tcd_jax.sample`, with the same properties: ``sample_lcm(model_fn, latents,
key, plan)`` traces once per (model, config's step fields, shapes, dtypes, shardings); the key,
the latents' values and the plan's values are traced arguments, so changing them reuses the
compiled loop. A plan may give every batch element its own timesteps (``(steps, B)`` arrays,
e.g. img2img with a strength per image), as long as all have the same number of steps.

LCM plans are their own type (:class:`LCMSamplingPlan`): an LCM plan differs from TCD's for the
same arguments (explicit ``original_inference_steps``, the "previous" timestep after the last
entry), so :func:`sample_lcm` refuses TCD plans and :func:`tcd_jax.sample` refuses LCM ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from tcd_core import LCMPlan, TCDConfig, lcm_timesteps

from ._loop import (
    as_loop_plan,
    checked_begin,
    checked_config,
    host_rows,
    loop_inputs,
    loop_plan,
    scan_rows,
    step_config,
)
from ._scheduler_base import host_schedule
from .lcm_step import jax_lcm_step_keyed
from .sampling import SamplingPlan, stack_plans

__all__ = ["LCMSamplingPlan", "lcm_sampling_plan", "sample_lcm"]


class LCMSamplingPlan(NamedTuple):
    """An LCM timestep plan as fixed-shape arrays (a pytree; its values are traced, not static).

    Attributes:
        timesteps: int32 ``(steps,)``, or ``(steps, B)`` for one plan per batch element.
        prev_timesteps: int32, same shape: each step's "previous" timestep (the next entry; the
            step's own timestep after the last entry, :func:`tcd_core.lcm_previous_timesteps`).
        final: bool, same shape: the reference's final step (``step_index ==
            num_inference_steps − 1``), which returns ``denoised`` and draws no noise. A custom
            plan trimmed by ``strength`` has none (the reference renoises after its last step).
        begin_index: the reference's step index of the first row (0 unless the plan starts part
            way, as img2img pipelines do with ``set_begin_index``); step i draws its noise from
            ``fold_in(key, begin_index + i)``, as ``FlaxLCMScheduler.step`` does.
    """

    timesteps: Any
    prev_timesteps: Any
    final: Any
    begin_index: Any = 0

    @property
    def num_steps(self) -> int:
        """The number of rows (steps) the loop runs."""
        return int(self.timesteps.shape[0])

    @classmethod
    def from_plan(cls, plan: LCMPlan, begin_index: int = 0) -> LCMSamplingPlan:
        """From a host :class:`tcd_core.LCMPlan`, optionally starting at ``begin_index``.

        Example:
            >>> from tcd_core import TCDConfig, lcm_timesteps
            >>> from tcd_jax import LCMSamplingPlan
            >>> plan = LCMSamplingPlan.from_plan(lcm_timesteps(TCDConfig(), 4), begin_index=1)
            >>> plan.timesteps.tolist(), plan.final.tolist()
            ([759, 499, 259], [False, False, True])
        """
        if not isinstance(plan, LCMPlan):
            raise ValueError(
                f"`plan` must be a tcd_core.LCMPlan (tcd_core.lcm_timesteps), "
                f"got {type(plan).__name__}"
            )
        checked_begin(plan, begin_index)
        return cls(*host_rows(plan, begin_index, plan.final_steps(begin_index)))

    @classmethod
    def stack(cls, plans: Sequence[LCMSamplingPlan | LCMPlan]) -> LCMSamplingPlan:
        """One plan per batch element, stacked into ``(steps, B)`` arrays (equal step counts and
        begin indices; :func:`tcd_jax.stack_plans`'s rules)."""
        converted = [p if isinstance(p, LCMSamplingPlan) else cls.from_plan(p) for p in plans]
        return cls(*stack_plans([SamplingPlan(*p) for p in converted]))


def lcm_sampling_plan(
    config: TCDConfig | None = None,
    num_inference_steps: int | None = None,
    *,
    original_inference_steps: int | None = None,
    timesteps: Sequence[int] | None = None,
    strength: float | Sequence[float] = 1.0,
) -> LCMSamplingPlan:
    """The reference ``LCMScheduler``'s timestep plan (:func:`tcd_core.lcm_timesteps`) for
    :func:`sample_lcm`.

    ``strength`` may be a sequence, one value per batch element: the result then has ``(steps,
    B)`` arrays (every strength must give the same number of steps, which the standard path
    does: n steps out of ⌊original_steps·strength⌋). Errors are the core's ``ValueError`` ones.

    Example:
        >>> import tcd_jax
        >>> tcd_jax.lcm_sampling_plan(num_inference_steps=4).timesteps.tolist()
        [999, 759, 499, 259]
        >>> tcd_jax.lcm_sampling_plan(num_inference_steps=2, strength=[1.0, 0.5]).timesteps.tolist()
        [[999, 499], [499, 259]]
    """
    return loop_plan(
        lcm_timesteps,
        LCMSamplingPlan.from_plan,
        LCMSamplingPlan.stack,
        config,
        num_inference_steps,
        original_inference_steps,
        timesteps,
        strength,
    )


def sample_lcm(
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    latents: jax.Array,
    key: jax.Array,
    plan: LCMSamplingPlan | LCMPlan,
    *,
    config: TCDConfig | None = None,
) -> jax.Array:
    r"""Run the whole LCM loop (Algorithm 1), compiled once with ``lax.scan``; the final latents.

    For step i with timestep t and previous timestep p: ``out = model_fn(x, t)`` (t int32, 0-d or
    one per batch element), then x ← :func:`tcd_core.lcm_step`: x̂₀ from ``out``,
    denoised = c_out·x̂₀ + c_skip·x, and x = √ᾱ_p·denoised + √(1−ᾱ_p)·z with
    z = ``normal(fold_in(key, begin_index + i))`` in the latents' dtype, except at the final step,
    which returns ``denoised`` and draws nothing (a ``lax.cond`` skips the draw). Equal to
    ``FlaxLCMScheduler.step`` in a loop with the same key, and to diffusers' ``LCMScheduler``
    given the same noise.

    Args:
        model_fn: the consistency model, ``model_fn(x, t) -> model output`` (ε, x₀ or v per the
            config). It is a static argument: define it once (a new function object compiles
            anew).
        latents: x at ``plan.timesteps[0]`` (unit Gaussians for text-to-image; ``add_noise``
            output for img2img). Any float dtype; the loop keeps it (coefficients are float32).
            The output keeps its sharding.
        key: a PRNG key (any implementation, see :func:`tcd_jax.prng_key`), or one per batch
            element (shape ``(B,)``).
        plan: :func:`lcm_sampling_plan` / :meth:`LCMSamplingPlan.stack` output, or a
            :class:`tcd_core.LCMPlan`.
        config: the scheduler config (prediction type, schedule, ``timestep_scaling``,
            clipping/thresholding); default ``TCDConfig()`` (LCM's defaults too).

    Example:
        >>> import jax, tcd_jax
        >>> plan = tcd_jax.lcm_sampling_plan(num_inference_steps=4)
        >>> model = lambda x, t: 0.1 * x                      # a consistency model goes here
        >>> x = jax.random.normal(jax.random.key(0), (2, 4, 8, 8))
        >>> tcd_jax.sample_lcm(model, x, jax.random.key(1), plan).shape
        (2, 4, 8, 8)
    """
    config = checked_config(config)
    plan = as_loop_plan(
        plan,
        LCMPlan,
        LCMSamplingPlan,
        "an LCMSamplingPlan (tcd_jax.lcm_sampling_plan) or a tcd_core.LCMPlan",
        " (TCD plans differ from LCM's for the same arguments)",
    )
    latents, plan, _ = loop_inputs(latents, plan)
    alphas_cumprod = host_schedule(config).alphas_cumprod
    return _lcm_loop(model_fn, _lcm_step_config(config), latents, key, plan, alphas_cumprod)


def _lcm_step_config(config: TCDConfig) -> TCDConfig:
    """The fields the traced LCM step reads (TCD's plus ``timestep_scaling``); the schedule
    enters as an array, so configs that differ only in their noise schedule share a loop."""
    return step_config(config).replace(timestep_scaling=config.timestep_scaling)


@functools.partial(jax.jit, static_argnames=("model_fn", "config"))
def _lcm_loop(
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    config: TCDConfig,
    latents: jax.Array,
    key: jax.Array,
    plan: LCMSamplingPlan,
    alphas_cumprod: jax.Array,
) -> jax.Array:
    def step(x: jax.Array, i: jax.Array, t: jax.Array, p: jax.Array, final: jax.Array) -> jax.Array:
        out = jax_lcm_step_keyed(model_fn(x, t), t, x, p, alphas_cumprod, final, key, i, config)
        return out.prev_sample

    # Unlike TCD's, the last row of an LCM plan is not always noise-free (a custom plan trimmed by
    # strength renoises there), so every row runs in the scan; the final row's draw is skipped by
    # the step's lax.cond on the traced `final` mask. Few-step loops are unrolled, as TCD's are.
    return scan_rows(step, latents, plan, scan_last=True)
