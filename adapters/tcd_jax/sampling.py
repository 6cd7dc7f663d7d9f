"""The whole sampling loop as one compiled function (``lax.scan``), for TCD and LCM.

``sample(model_fn, latents, key, plan, eta)`` (TCD) and ``sample_lcm(model_fn, latents, key,
plan)`` (LCM) are two named configurations of one loop (``_loop.run``). Each traces once per
(model, config's step fields, shapes, dtypes, shardings): η, the key, the latents' values and the
plan's values are all traced arguments, so changing them reuses the compiled loop. η may be one
value or one per batch element, and a plan may give every batch element its own timesteps
(``(steps, B)`` arrays, e.g. img2img with a strength per image), as long as all have the same
number of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from tcd_core import LCM, TCD, Algorithm, Plan, TCDConfig, plan_timesteps

from ._loop import DEFAULT_CONFIG, checked_config, loop_inputs, run
from ._step import eta_arrays

__all__ = [
    "LCMSamplingPlan",
    "SamplingPlan",
    "lcm_sampling_plan",
    "sample",
    "sample_lcm",
    "sampling_plan",
    "stack_plans",
]

# An algorithm is static data of a plan's pytree (no leaves): plans of different algorithms are
# different trees, and a compiled loop is specialised to its algorithm.
jax.tree_util.register_static(Algorithm)


class SamplingPlan(NamedTuple):
    """A timestep plan as fixed-shape arrays (a pytree; its values are traced, not static), for
    either algorithm.

    Attributes:
        timesteps: int32 ``(steps,)``, or ``(steps, B)`` for one plan per batch element.
        next_timesteps: int32, same shape: each step's next timestep (0 after TCD's last step,
            the last timestep itself for LCM: :func:`tcd_core.next_timesteps`). Also
            ``prev_timesteps``, its former name.
        final: bool, same shape: the reference's final step (``step_index ==
            num_inference_steps − 1``), where it draws no noise (and LCM returns its denoised
            sample). A custom plan trimmed by ``strength`` has none.
        begin_index: the reference's step index of the first row (0 unless the plan starts part
            way, as img2img pipelines do with ``set_begin_index``); step i draws its noise from
            ``fold_in(key, begin_index + i)``, as the Flax schedulers' ``step`` does.
        algorithm: :data:`tcd_core.TCD` or :data:`tcd_core.LCM` (static: no leaves).
    """

    timesteps: Any
    next_timesteps: Any
    final: Any
    begin_index: Any = 0
    algorithm: Algorithm = TCD

    @property
    def prev_timesteps(self) -> Any:
        """:attr:`next_timesteps` under its former name."""
        return self.next_timesteps

    @property
    def num_steps(self) -> int:
        """The number of rows (steps) the loop runs."""
        return int(self.timesteps.shape[0])

    @classmethod
    def from_plan(cls, plan: Plan, begin_index: int = 0) -> SamplingPlan:
        """From a host :class:`tcd_core.Plan` (of either algorithm), optionally starting at
        ``begin_index``.

        Example:
            >>> from tcd_core import TCDConfig, lcm_timesteps
            >>> from tcd_jax import SamplingPlan
            >>> plan = SamplingPlan.from_plan(lcm_timesteps(TCDConfig(), 4), begin_index=1)
            >>> plan.timesteps.tolist(), plan.final.tolist()
            ([759, 499, 259], [False, False, True])
        """
        if not isinstance(plan, Plan):
            raise ValueError(
                f"`plan` must be a tcd_core.Plan (tcd_core.tcd_timesteps or "
                f"tcd_core.lcm_timesteps), got {type(plan).__name__}"
            )
        n = len(plan.timesteps)
        if not 0 <= begin_index < n:
            raise ValueError(f"`begin_index` must be in [0, {n}), got {begin_index}")
        return cls(
            np.asarray(plan.timesteps[begin_index:], dtype=np.int32),
            np.asarray(plan.next_timesteps[begin_index:], dtype=np.int32),
            plan.final_steps(begin_index),
            begin_index,
            plan.algorithm,
        )

    @classmethod
    def stack(cls, plans: Sequence[SamplingPlan | Plan]) -> SamplingPlan:
        """One plan per batch element, stacked into ``(steps, B)`` arrays (:func:`stack_plans`)."""
        return stack_plans(plans)


#: The plan type under its former name (one type serves both algorithms).
LCMSamplingPlan = SamplingPlan


def stack_plans(plans: Sequence[SamplingPlan | Plan]) -> SamplingPlan:
    """One plan per batch element, stacked into ``(steps, B)`` arrays (equal step counts, begin
    indices and algorithms)."""
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
    algorithms = {p.algorithm for p in converted}
    if len(algorithms) != 1:
        raise ValueError(
            f"per-sample plans must share their algorithm, got {sorted(map(repr, algorithms))}"
        )
    timesteps, next_timesteps, final = (
        np.stack([np.asarray(p[i]) for p in converted], axis=1) for i in range(3)
    )
    return SamplingPlan(timesteps, next_timesteps, final, begins[0], algorithms.pop())


def _planned(
    algorithm: Algorithm,
    config: TCDConfig | None,
    num_inference_steps: int | None,
    strength: float | Sequence[float] = 1.0,
    **options: Any,
) -> SamplingPlan:
    """``algorithm``'s host plan (:func:`tcd_core.plan_timesteps`; ``options``:
    ``original_inference_steps``, ``timesteps``) as a sampling plan, or one per strength
    (stacked) when ``strength`` is a sequence."""
    config = DEFAULT_CONFIG if config is None else config

    def plan_for(strength: float) -> SamplingPlan:
        host = plan_timesteps(algorithm, config, num_inference_steps, strength=strength, **options)
        return SamplingPlan.from_plan(host)

    if isinstance(strength, (list, tuple, np.ndarray)):
        return stack_plans([plan_for(float(s)) for s in strength])
    return plan_for(strength)  # type: ignore[arg-type]


def sampling_plan(
    config: TCDConfig | None = None, num_inference_steps: int | None = None, **options: Any
) -> SamplingPlan:
    """The reference's TCD plan (:func:`tcd_core.tcd_timesteps`; ``options``:
    ``original_inference_steps``, ``timesteps``, ``strength``) for :func:`sample`.

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
    return _planned(TCD, config, num_inference_steps, **options)


def lcm_sampling_plan(
    config: TCDConfig | None = None, num_inference_steps: int | None = None, **options: Any
) -> SamplingPlan:
    """The reference ``LCMScheduler``'s plan (:func:`tcd_core.lcm_timesteps`; ``options`` and
    a per-sample ``strength`` as in :func:`sampling_plan`) for :func:`sample_lcm`.

    Example:
        >>> import tcd_jax
        >>> tcd_jax.lcm_sampling_plan(num_inference_steps=4).next_timesteps.tolist()
        [759, 499, 259, 259]
        >>> tcd_jax.lcm_sampling_plan(num_inference_steps=2, strength=[1.0, 0.5]).timesteps.tolist()
        [[999, 499], [499, 259]]
    """
    return _planned(LCM, config, num_inference_steps, **options)


def _a(algorithm: Algorithm) -> str:
    """ "a TCD", "an LCM"."""
    return f"{'an' if repr(algorithm)[0] in 'AEFHILMNORSX' else 'a'} {algorithm!r}"


def _loop_plan(plan: Any, algorithm: Algorithm, maker: str) -> SamplingPlan:
    """``plan`` (a :class:`SamplingPlan` or a host :class:`tcd_core.Plan`) as a sampling plan of
    ``algorithm``; ValueError for anything else, or for the other algorithm's plan (their plans
    differ for the same arguments)."""
    if isinstance(plan, Plan):
        plan = SamplingPlan.from_plan(plan)
    if not isinstance(plan, SamplingPlan):
        raise ValueError(
            f"`plan` must be a SamplingPlan (tcd_jax.{maker}) or a tcd_core.Plan, "
            f"got {type(plan).__name__}"
        )
    if plan.algorithm is not algorithm:
        raise ValueError(
            f"`plan` must be {_a(algorithm)} plan (tcd_jax.{maker}), got {_a(plan.algorithm)} "
            f"plan ({algorithm!r} and {plan.algorithm!r} plans differ for the same arguments)"
        )
    return plan


def sample(
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    latents: jax.Array,
    key: jax.Array,
    plan: SamplingPlan | Plan,
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
        plan: :func:`sampling_plan` / :func:`stack_plans` output, or a TCD
            :class:`tcd_core.Plan`.
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
    plan = _loop_plan(plan, TCD, "sampling_plan")
    eta_f32, one_minus = eta_arrays(eta)
    latents, plan, batch = loop_inputs(latents, plan)
    if eta_f32.ndim == 1 and eta_f32.shape[0] != batch:
        raise ValueError(f"per-batch `eta` has {eta_f32.shape[0]} entries for a batch of {batch}")
    return run(TCD, model_fn, latents, key, plan, eta_f32, one_minus, config)


def sample_lcm(
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    latents: jax.Array,
    key: jax.Array,
    plan: SamplingPlan | Plan,
    *,
    config: TCDConfig | None = None,
) -> jax.Array:
    r"""Run the whole LCM loop (Algorithm 1), compiled once with ``lax.scan``; the final latents.

    For step i with timestep t and next timestep p: ``out = model_fn(x, t)`` (t int32, 0-d or
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
        latents: x at ``plan.timesteps[0]``; any float dtype, kept. The output keeps its
            sharding.
        key: a PRNG key, or one per batch element (shape ``(B,)``).
        plan: :func:`lcm_sampling_plan` / :func:`stack_plans` output, or an LCM
            :class:`tcd_core.Plan`.
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
    plan = _loop_plan(plan, LCM, "lcm_sampling_plan")
    latents, plan, _ = loop_inputs(latents, plan)
    return run(LCM, model_fn, latents, key, plan, None, None, config)
