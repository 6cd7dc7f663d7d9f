"""The whole sampling loop as one compiled function (``lax.scan``), for TCD and LCM, on the VP
path or (TCD) the flow-matching path.

``sample(model_fn, latents, key, plan, eta)`` (TCD) and ``sample_lcm(model_fn, latents, key,
plan)`` (LCM) are two named configurations of one loop (``_loop.run``). Each traces once per
(model, config's step fields, path, shapes, dtypes, shardings): η, the key, the latents' values
and the plan's values are all traced arguments, so changing them reuses the compiled loop. η may
be one value or one per batch element, and a plan may give every batch element its own timesteps
(``(steps, B)`` arrays, e.g. img2img with a strength per image), as long as all have the same
number of steps.

The path is decided by the plan: :func:`sampling_plan` / :func:`lcm_sampling_plan` give VP
plans (integer timesteps into the ᾱ table), :func:`flow_sampling_plan` a flow plan (the plan of
diffusers' ``FlowMatchEulerDiscreteScheduler``, :func:`tcd_core.flow_plan`: float32
model times for the model, and each step's σ and σ_next), which :func:`sample` runs on
:data:`tcd_core.FLOW`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from tcd_core import (
    FLOW,
    LCM,
    TCD,
    Algorithm,
    FlowConfig,
    FlowPlan,
    Plan,
    TCDConfig,
    flow_plan,
    plan_timesteps,
)
from tcd_core._array import is_host
from tcd_core.paths import as_path

from ._loop import DEFAULT_CONFIG, checked_config, loop_inputs, run
from ._step import FLOW_STEP_CONFIG, eta_arrays

__all__ = [
    "LCMSamplingPlan",
    "SamplingPlan",
    "flow_sampling_plan",
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
    either algorithm on the VP path, or for TCD on the flow path (a plan with ``sigmas``).

    Attributes:
        timesteps: int32 ``(steps,)``, or ``(steps, B)`` for one plan per batch element: what the
            model receives. On a flow plan, float32: the model's time (diffusers'
            ``scheduler.timesteps``, σ·``num_train_timesteps`` unless custom).
        next_timesteps: int32, same shape: each step's next timestep (0 after TCD's last step,
            the last timestep itself for LCM: :func:`tcd_core.next_timesteps`). Also
            ``prev_timesteps``, its former name. On a flow plan, float32: the model time the step
            lands on (the next row's, then the terminal σ's); the step itself reads
            ``next_sigmas``.
        final: bool, same shape: the reference's final step (``step_index ==
            num_inference_steps − 1``), where it draws no noise (and LCM returns its denoised
            sample). A custom plan trimmed by ``strength`` has none.
        begin_index: the reference's step index of the first row (0 unless the plan starts part
            way, as img2img pipelines do with ``set_begin_index``); step i draws its noise from
            ``fold_in(key, begin_index + i)``, as the Flax schedulers' ``step`` does.
        algorithm: :data:`tcd_core.TCD` or :data:`tcd_core.LCM` (static: no leaves).
        sigmas: None on the VP path. A flow plan's float32 σ of each step (same shape as
            ``timesteps``): the step runs on :data:`tcd_core.FLOW` from σ ...
        next_sigmas: ... to σ_next (None on the VP path): the next row's σ, then the terminal
            σ (0; 1 for ``invert_sigmas``).
    """

    timesteps: Any
    next_timesteps: Any
    final: Any
    begin_index: Any = 0
    algorithm: Algorithm = TCD
    sigmas: Any = None
    next_sigmas: Any = None

    @property
    def is_flow(self) -> bool:
        """Whether this is a flow plan (it has ``sigmas``; the loop runs on
        :data:`tcd_core.FLOW`)."""
        return self.sigmas is not None

    @property
    def prev_timesteps(self) -> Any:
        """:attr:`next_timesteps` under its former name."""
        return self.next_timesteps

    @property
    def num_steps(self) -> int:
        """The number of rows (steps) the loop runs."""
        return int(self.timesteps.shape[0])

    @classmethod
    def from_plan(
        cls, plan: Plan | FlowPlan, begin_index: int = 0, *, num_train_timesteps: int = 1000
    ) -> SamplingPlan:
        """From a host :class:`tcd_core.Plan` (of either algorithm), or a flow plan
        (:class:`tcd_core.FlowPlan`, for TCD on the flow path), optionally starting at
        ``begin_index``. ``num_train_timesteps`` (flow plans only) gives the model time of the
        terminal σ, the last ``next_timesteps``.

        Example:
            >>> from tcd_core import TCDConfig, lcm_timesteps
            >>> from tcd_jax import SamplingPlan
            >>> plan = SamplingPlan.from_plan(lcm_timesteps(TCDConfig(), 4), begin_index=1)
            >>> plan.timesteps.tolist(), plan.final.tolist()
            ([759, 499, 259], [False, False, True])
        """
        if isinstance(plan, FlowPlan):
            return _from_flow_plan(plan, begin_index, num_train_timesteps)
        if not isinstance(plan, Plan):
            raise ValueError(
                f"`plan` must be a tcd_core.Plan (tcd_core.tcd_timesteps or "
                f"tcd_core.lcm_timesteps) or a tcd_core.FlowPlan, "
                f"got {type(plan).__name__}"
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
    def stack(cls, plans: Sequence[SamplingPlan | Plan | FlowPlan]) -> SamplingPlan:
        """One plan per batch element, stacked into ``(steps, B)`` arrays (:func:`stack_plans`)."""
        return stack_plans(plans)


#: The plan type under its former name (one type serves both algorithms).
LCMSamplingPlan = SamplingPlan


def _check_begin(begin_index: Any, n: int) -> None:
    if isinstance(begin_index, bool) or not isinstance(begin_index, (int, np.integer)):
        raise ValueError(f"`begin_index` must be an integer in [0, {n}), got {begin_index!r}")
    if not 0 <= begin_index < n:
        raise ValueError(f"`begin_index` must be in [0, {n}), got {begin_index}")


def _from_flow_plan(plan: FlowPlan, begin_index: int, num_train_timesteps: int) -> SamplingPlan:
    """A flow plan's rows from ``begin_index`` on: model times, σ → σ_next, the final row."""
    n = len(plan.timesteps)
    _check_begin(begin_index, n)
    timesteps = np.asarray(plan.timesteps, dtype=np.float32)
    sigmas = np.asarray(plan.sigmas, dtype=np.float32)
    if sigmas.shape != (n + 1,):
        raise ValueError(
            f"a FlowPlan's `sigmas` must have num_inference_steps + 1 = {n + 1} entries (the "
            f"terminal σ last), got shape {sigmas.shape}"
        )
    terminal = np.float32(sigmas[-1]) * np.float32(num_train_timesteps)
    next_timesteps = np.concatenate([timesteps[1:], np.asarray([terminal], dtype=np.float32)])
    final = np.arange(n) == n - 1
    return SamplingPlan(
        timesteps[begin_index:],
        next_timesteps[begin_index:],
        final[begin_index:],
        begin_index,
        TCD,
        sigmas[begin_index:-1],
        sigmas[begin_index + 1 :],
    )


def stack_plans(plans: Sequence[SamplingPlan | Plan | FlowPlan]) -> SamplingPlan:
    """One plan per batch element, stacked into ``(steps, B)`` arrays (equal step counts, begin
    indices and algorithms; all flow plans, or none)."""
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
    flows = {p.is_flow for p in converted}
    if len(flows) != 1:
        raise ValueError("per-sample plans must all be flow plans or all VP plans, got both")
    timesteps, next_timesteps, final = (
        np.stack([np.asarray(p[i]) for p in converted], axis=1) for i in range(3)
    )
    sigmas = next_sigmas = None
    if flows.pop():
        sigmas, next_sigmas = (
            np.stack([np.asarray(getattr(p, name)) for p in converted], axis=1)
            for name in ("sigmas", "next_sigmas")
        )
    return SamplingPlan(
        timesteps, next_timesteps, final, begins[0], algorithms.pop(), sigmas, next_sigmas
    )


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
    """``plan`` (a :class:`SamplingPlan`, a host :class:`tcd_core.Plan` or, for TCD, a host
    :class:`tcd_core.FlowPlan`) as a sampling plan of ``algorithm``; ValueError for
    anything else, for the other algorithm's plan (their plans differ for the same arguments),
    or for a flow plan given to LCM (which has no flow form)."""
    if isinstance(plan, (Plan, FlowPlan)):
        plan = SamplingPlan.from_plan(plan)
    if not isinstance(plan, SamplingPlan):
        raise ValueError(
            f"`plan` must be a SamplingPlan (tcd_jax.{maker}) or a tcd_core.Plan, "
            f"got {type(plan).__name__}"
        )
    if plan.is_flow and not algorithm.has_eta:
        raise ValueError(
            f"`plan` must be {_a(algorithm)} plan (tcd_jax.{maker}), got a flow plan: "
            f"{algorithm!r}'s boundary conditions are defined on the VP path's timesteps, not on "
            "the flow path; there, TCD with eta=1 (tcd_jax.sample) is the flow LCM step"
        )
    if plan.algorithm is not algorithm:
        raise ValueError(
            f"`plan` must be {_a(algorithm)} plan (tcd_jax.{maker}), got {_a(plan.algorithm)} "
            f"plan ({algorithm!r} and {plan.algorithm!r} plans differ for the same arguments)"
        )
    return plan


def flow_sampling_plan(
    config: FlowConfig | Mapping[str, Any] | None = None,
    num_inference_steps: int | None = None,
    *,
    sigmas: Any = None,
    mu: float | None = None,
    timesteps: Any = None,
    shift: float | None = None,
    begin_index: int = 0,
) -> SamplingPlan:
    """The plan of diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps`` (bit for bit:
    :func:`tcd_core.flow_plan`) as a flow plan for :func:`sample`, which runs TCD on
    the flow path with it.

    Args:
        config: a :class:`tcd_core.FlowConfig`, or a diffusers scheduler config mapping
            (``pipe.scheduler.config``, a ``scheduler_config.json``; unknown keys such as
            ``eta`` or ``_class_name`` are ignored); default ``FlowConfig()``.
        num_inference_steps: as in :func:`~tcd_core.flow_plan` (so are the next four).
        sigmas: custom σ per step.
        mu: the time shift, needed with ``use_dynamic_shifting``.
        timesteps: custom model times per step.
        shift: overrides the config's shift (the reference's ``set_shift``).
        begin_index: start at row ``begin_index`` (img2img pipelines' ``set_begin_index``); step
            i still draws ``fold_in(key, begin_index + i)``.

    The result has float32 ``timesteps`` (the model's time, what ``model_fn`` receives),
    ``sigmas`` and ``next_sigmas`` (each step's σ → σ_next, the terminal σ last). Errors are
    :func:`~tcd_core.flow_plan`'s ``ValueError`` naming the argument.

    Example:
        >>> import tcd_jax
        >>> plan = tcd_jax.flow_sampling_plan({"shift": 3.0}, 4)
        >>> [round(t, 1) for t in plan.timesteps.tolist()]
        [1000.0, 857.7, 602.2, 8.9]
        >>> [round(s, 4) for s in plan.next_sigmas.tolist()]
        [0.8577, 0.6022, 0.0089, 0.0]
    """
    if config is None:
        config = FlowConfig()
    elif isinstance(config, Mapping):
        config = FlowConfig.from_config(config)
    elif not isinstance(config, FlowConfig):
        raise ValueError(
            "`config` must be a tcd_core.FlowConfig or a scheduler config mapping, "
            f"got {type(config).__name__}"
        )
    host = flow_plan(
        config, num_inference_steps, sigmas=sigmas, mu=mu, timesteps=timesteps, shift=shift
    )
    return SamplingPlan.from_plan(host, begin_index, num_train_timesteps=config.num_train_timesteps)


def sample(
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    latents: jax.Array,
    key: jax.Array,
    plan: SamplingPlan | Plan | FlowPlan,
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

    **A flow plan** (:func:`flow_sampling_plan`) runs TCD on the flow-matching path instead
    (:data:`tcd_core.FLOW`; FLUX, SD3, Wan): ``model_fn(x, t)`` receives the model's time t
    (float32, 0-d or one per batch element: ``1000·σ`` with the default config, diffusers'
    ``scheduler.timesteps``) and predicts the velocity v = ε − x₀; the step goes from σ to
    σ_next through σ_s = f32(1−η)·σ_next, x_s = x + (σ_s − σ)·v, x_next = a·x_s +
    √(σ_next² − a²σ_s²)·z with a = (1−σ_next)/(1−σ_s), computed in float32 (the latents
    upcast, the result in their dtype), with z = ``normal(fold_in(key, begin_index + i))`` in
    the latents' dtype wherever η > 0 (at the last step σ_next = 0 and z's coefficient is
    exactly 0, so it is not drawn). η = 0 is the Euler step (``FlowMatchEulerDiscreteScheduler``),
    η = 1 its stochastic one; numerically ``tcd_diffusers.FlowMatchTCDScheduler`` given the same
    noise.

    Args:
        model_fn: the denoiser, ``model_fn(x, t) -> model output`` (ε, x₀ or v per the config;
            the velocity on a flow plan). It is a static argument: define it once (a new function
            object compiles anew).
        latents: x at ``plan.timesteps[0]`` (unit Gaussians for text-to-image; ``add_noise``
            output for img2img). Any float dtype; the loop keeps it (coefficients are float32).
            The output keeps its sharding.
        key: a PRNG key (any implementation, see :func:`tcd_jax.prng_key`), or one per batch
            element (shape ``(B,)``).
        plan: :func:`sampling_plan` / :func:`stack_plans` output, or a TCD
            :class:`tcd_core.Plan`; or a flow plan (:func:`flow_sampling_plan`, or a
            :class:`tcd_core.FlowPlan`).
        eta: η ∈ [0, 1], a number or one per batch element. Python/NumPy values are checked
            (ValueError) and rounded exactly like the reference; JAX arrays are used as given.
        config: the scheduler config (prediction type, schedule, clipping); default TCDConfig(),
            and on a flow plan ``TCDConfig(prediction_type="flow_prediction")`` (the
            schedule fields are not read there).

    Example:
        >>> import jax, tcd_jax
        >>> plan = tcd_jax.sampling_plan(num_inference_steps=4)
        >>> model = lambda x, t: 0.1 * x                      # a denoiser goes here
        >>> x = jax.random.normal(jax.random.key(0), (2, 4, 8, 8))
        >>> y = tcd_jax.sample(model, x, jax.random.key(1), plan, eta=[0.3, 0.6])
        >>> y.shape
        (2, 4, 8, 8)
        >>> flow = tcd_jax.flow_sampling_plan({"shift": 3.0}, 4)
        >>> tcd_jax.sample(lambda x, t: 0.1 * x, x, jax.random.key(1), flow, eta=0.3).shape
        (2, 4, 8, 8)
    """
    if config is not None:
        config = checked_config(config)
    plan = _loop_plan(plan, TCD, "sampling_plan")
    config = _path_config(plan, config)
    eta_f32, one_minus = eta_arrays(eta)
    if plan.is_flow:
        _check_flow_direction(plan, eta)
    latents, plan, batch = loop_inputs(latents, plan)
    if eta_f32.ndim == 1 and eta_f32.shape[0] != batch:
        raise ValueError(f"per-batch `eta` has {eta_f32.shape[0]} entries for a batch of {batch}")
    return run(TCD, model_fn, latents, key, plan, eta_f32, one_minus, config)


def _path_config(plan: SamplingPlan, config: TCDConfig | None) -> TCDConfig:
    """The step's config on the plan's path (the velocity by default on a flow plan); ValueError
    for a prediction type that has no meaning on it."""
    if plan.is_flow:
        config = FLOW_STEP_CONFIG if config is None else config
        FLOW.check_prediction(config.prediction_type)
        return config
    config = checked_config(config)
    as_path(None).check_prediction(config.prediction_type)
    return config


def _check_flow_direction(plan: SamplingPlan, eta: Any) -> None:
    """ValueError for a host η > 0 on a flow plan whose σ rise (``invert_sigmas``) for that batch
    element: TCD's re-noising from σ_s up to σ_next is not defined there (only η = 0, the Euler
    step, is)."""
    sigmas, next_sigmas = plan.sigmas, plan.next_sigmas
    if not (is_host(eta) and is_host(sigmas) and is_host(next_sigmas)):
        return
    rising = (np.asarray(next_sigmas) > np.asarray(sigmas)).any(axis=0)  # () or (B,)
    if np.any(rising & (np.asarray(eta, dtype=np.float64) > 0)):
        raise ValueError(
            "`eta` must be 0 on a flow plan whose σ rise (`invert_sigmas=True` runs σ from 0 up "
            f"to 1, where TCD's re-noising is not defined: only the Euler step is), got eta={eta!r}"
        )


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
