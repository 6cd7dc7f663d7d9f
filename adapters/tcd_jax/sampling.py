"""The whole TCD sampling loop as one compiled function (``lax.scan``).

``sample(model_fn, latents, key, plan, eta)`` traces once per (model, config, shapes, dtypes,
shardings): η, the key, the latents' values and the plan's values are all traced arguments, so
changing them reuses the compiled loop. η may be one value or one per batch element, and a plan
may give every batch element its own timesteps (``(steps, B)`` arrays, e.g. img2img with a
strength per image), as long as all have the same number of steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tcd_core import TCDConfig, TCDPlan, tcd_timesteps

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
from ._step import eta_arrays, jax_tcd_step, jax_tcd_step_keyed

__all__ = ["SamplingPlan", "sample", "sampling_plan", "stack_plans"]


class SamplingPlan(NamedTuple):
    """A timestep plan as fixed-shape arrays (a pytree; its values are traced, not static).

    Attributes:
        timesteps: int32 ``(steps,)``, or ``(steps, B)`` for one plan per batch element.
        prev_timesteps: int32, same shape: each step's next timestep p (0 after the last).
        final: bool, same shape: the reference's last step (``step_index ==
            num_inference_steps − 1``), where it draws no noise whatever η is.
        begin_index: the reference's step index of the first row (0 unless the plan starts part
            way, as img2img pipelines do with ``set_begin_index``); step i draws its noise from
            ``fold_in(key, begin_index + i)``, as ``FlaxTCDScheduler.step`` does.
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
    def from_plan(cls, plan: TCDPlan, begin_index: int = 0) -> SamplingPlan:
        """From a host :class:`tcd_core.TCDPlan`, optionally starting at ``begin_index``."""
        index = np.arange(checked_begin(plan, begin_index), len(plan.timesteps))
        return cls(*host_rows(plan, begin_index, index == plan.num_inference_steps - 1))


def stack_plans(plans: Sequence[SamplingPlan | TCDPlan]) -> SamplingPlan:
    """One plan per batch element, stacked into ``(steps, B)`` arrays (equal step counts)."""
    converted = [p if isinstance(p, SamplingPlan) else SamplingPlan.from_plan(p) for p in plans]
    if not converted:
        raise ValueError("`plans` must not be empty")
    lengths = sorted({int(np.shape(p.timesteps)[0]) for p in converted})
    if len(lengths) != 1 or any(np.ndim(p.timesteps) != 1 for p in converted):
        raise ValueError(
            f"per-sample plans must be 1-D and have the same number of steps, got lengths {lengths}"
        )
    begins = sorted({int(p.begin_index) for p in converted})
    if len(begins) != 1:
        raise ValueError(f"per-sample plans must share their begin_index, got {begins}")
    timesteps, prev, final = (
        np.stack([np.asarray(p[i]) for p in converted], axis=1) for i in range(3)
    )
    return SamplingPlan(timesteps, prev, final, begins[0])


def sampling_plan(
    config: TCDConfig | None = None,
    num_inference_steps: int | None = None,
    *,
    original_inference_steps: int | None = None,
    timesteps: Sequence[int] | None = None,
    strength: float | Sequence[float] = 1.0,
) -> SamplingPlan:
    """The reference's timestep plan (:func:`tcd_core.tcd_timesteps`) for :func:`sample`.

    ``strength`` may be a sequence, one value per batch element: the result then has ``(steps,
    B)`` arrays (every strength must give the same number of steps, which the standard path
    does: n steps out of ⌊original_steps·strength⌋). Errors are the core's ``ValueError`` ones.

    Example:
        >>> import tcd_jax
        >>> tcd_jax.sampling_plan(num_inference_steps=4).timesteps.tolist()
        [999, 759, 499, 259]
        >>> tcd_jax.sampling_plan(num_inference_steps=2, strength=[1.0, 0.5]).timesteps.tolist()
        [[999, 499], [499, 259]]
    """
    return loop_plan(
        tcd_timesteps,
        SamplingPlan.from_plan,
        stack_plans,
        config,
        num_inference_steps,
        original_inference_steps,
        timesteps,
        strength,
    )


def sample(
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    latents: jax.Array,
    key: jax.Array,
    plan: SamplingPlan | TCDPlan,
    eta: Any = 0.3,
    *,
    config: TCDConfig | None = None,
) -> jax.Array:
    r"""Run the whole TCD loop, compiled once with ``lax.scan``, and return the final latents.

    For step i with timestep t and next timestep p: ``out = model_fn(x, t)`` (t int32, 0-d or one
    per batch element), z = ``normal(fold_in(key, begin_index + i))`` in the latents' dtype, and
    x ← :func:`tcd_core.tcd_step` (x̂₀, x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂,
    x_p = √(ᾱ_p/ᾱ_s)·x_s + √(1−ᾱ_p/ᾱ_s)·z, s = ⌊(1−η)·p⌋), with z where the reference draws
    (η > 0, not the last step). Equal to ``FlaxTCDScheduler.step`` in a loop with the same key.

    Args:
        model_fn: the denoiser, ``model_fn(x, t) -> model output`` (ε, x₀ or v per the config).
            It is a static argument: define it once (a new function object compiles anew).
        latents: x at ``plan.timesteps[0]`` (unit Gaussians for text-to-image; ``add_noise``
            output for img2img). Any float dtype; the loop keeps it (coefficients are float32).
            The output keeps its sharding.
        key: a PRNG key (any implementation, see :func:`tcd_jax.prng_key`), or one per batch
            element (shape ``(B,)``).
        plan: :func:`sampling_plan` / :func:`stack_plans` output, or a :class:`tcd_core.TCDPlan`.
        eta: η ∈ [0, 1], a number or one per batch element. Python/NumPy values are checked
            (ValueError) and rounded exactly like the reference; JAX arrays are used as given.
        config: the scheduler config (prediction type, schedule, clipping); default TCDConfig().

    Example:
        >>> import jax, tcd_jax
        >>> plan = tcd_jax.sampling_plan(num_inference_steps=4)
        >>> model = lambda x, t: 0.1 * x                      # a denoiser goes here
        >>> x = jax.random.normal(jax.random.key(0), (2, 4, 8, 8))
        >>> y = tcd_jax.sample(model, x, jax.random.key(1), plan, eta=[0.3, 0.6])
        >>> y.shape
        (2, 4, 8, 8)
    """
    config = checked_config(config)
    plan = as_loop_plan(
        plan, TCDPlan, SamplingPlan, "a SamplingPlan (tcd_jax.sampling_plan) or a tcd_core.TCDPlan"
    )
    eta_f32, one_minus = eta_arrays(eta)
    latents, plan, batch = loop_inputs(latents, plan)
    if eta_f32.ndim == 1 and eta_f32.shape[0] != batch:
        raise ValueError(f"per-batch `eta` has {eta_f32.shape[0]} entries for a batch of {batch}")
    alphas_cumprod = host_schedule(config).alphas_cumprod
    return _sample_loop(
        model_fn, step_config(config), latents, key, plan, eta_f32, one_minus, alphas_cumprod
    )


@functools.partial(jax.jit, static_argnames=("model_fn", "config"))
def _sample_loop(
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    config: TCDConfig,
    latents: jax.Array,
    key: jax.Array,
    plan: SamplingPlan,
    eta: jax.Array,
    one_minus_eta: jax.Array,
    alphas_cumprod: jax.Array,
) -> jax.Array:
    def step(x: jax.Array, i: jax.Array, t: jax.Array, p: jax.Array, final: jax.Array) -> jax.Array:
        model_output = model_fn(x, t)
        # No batch element draws (η = 0, or a final row): the step runs without the normal draw.
        draw = (eta > 0) & jnp.logical_not(final)
        out = jax_tcd_step_keyed(
            model_output, t, x, p, alphas_cumprod, one_minus_eta, draw, key, i, config
        )
        return out.prev_sample

    # Every row but the last runs in the scan. The last row always has p = 0, hence s = 0 and a
    # re-noising ratio of exactly 1: its noise term is exactly zero whatever is drawn, so it runs
    # after the scan without drawing (the draw would cost as much as the rest of the step).
    x = scan_rows(step, latents, plan, scan_last=False)
    t, p = plan.timesteps[-1], plan.prev_timesteps[-1]
    last = jax_tcd_step(model_fn(x, t), t, x, p, alphas_cumprod, one_minus_eta, None, None, config)
    return last.prev_sample
