"""``FlaxTCDScheduler``: TCD in the shape of diffusers' former Flax schedulers.

diffusers' Flax schedulers (removed in diffusers 0.40; there never was a Flax TCD one) were a
config object plus an immutable state pytree: ``create_state()``, ``set_timesteps(state, …) ->
state``, ``step(state, …) -> Output(prev_sample, state)``. This one follows that convention, with
the step index, the PRNG key and η carried *in the state as arrays*, so ``step`` runs inside
``jax.jit``, ``lax.fori_loop``, ``lax.scan`` and ``pmap`` with a traced timestep, and the Flax
pipelines of diffusers ≤ 0.39 run it unmodified (they pass no key and no η to ``step``). The maths
is :func:`tcd_core.tcd_step`; the convention machinery is shared (``_convention``,
``_scheduler_base``).
"""

from __future__ import annotations

from typing import Any

import jax

import tcd_core

from ._convention import ConsistencyState, OutputMixin, pytree_dataclass, state_eta
from ._scheduler_base import FlaxConsistencyScheduler, host_schedule, jax_schedule

__all__ = [
    "FlaxTCDScheduler",
    "FlaxTCDSchedulerOutput",
    "FlaxTCDSchedulerState",
    "host_schedule",
    "jax_schedule",
]

#: η of a state created without one: the value every official TCD example uses.
DEFAULT_ETA = 0.3


@pytree_dataclass
class FlaxTCDSchedulerState(ConsistencyState):
    """The TCD scheduler's state: a frozen dataclass registered as a JAX pytree, with the fields
    every scheduler state has (:class:`~tcd_jax._convention.ConsistencyState`: the noise schedule,
    the plan, the step index and the PRNG key) and η.

    Attributes:
        eta: float32 η ∈ [0, 1], 0-d or one per batch element: an array, so a new value
            reuses the compiled loop.
        one_minus_eta: float32 f32(1 − η), the factor of s = ⌊f32(1 − η)·p⌋, derived from η on
            the host whenever η is set (``create_state``, ``set_timesteps``, ``replace(eta=)``),
            for the reference's rounding (:func:`tcd_core.intermediate_timestep`); set only
            ``eta``.
    """

    eta: jax.Array
    one_minus_eta: jax.Array

    def replace(self, **changes: Any) -> FlaxTCDSchedulerState:
        """A copy with some fields changed (``flax.struct`` style).

        ``eta=`` also sets ``one_minus_eta`` (exactly as the reference rounds it, for a host η),
        unless ``one_minus_eta`` is given too; ``key=`` accepts raw ``uint32`` threefry keys.
        """
        if "eta" in changes and "one_minus_eta" not in changes:
            changes["eta"], changes["one_minus_eta"] = state_eta(changes["eta"])
        return super().replace(**changes)


@pytree_dataclass
class FlaxTCDSchedulerOutput(OutputMixin):
    """What :meth:`FlaxTCDScheduler.step` returns (a pytree).

    ``to_tuple()`` gives ``(prev_sample, state)``, the two values diffusers' Flax pipelines unpack
    (``latents, state = scheduler.step(state, noise_pred, t, latents).to_tuple()``).

    Attributes:
        prev_sample: x_p, the next model input.
        state: the scheduler state with the step index advanced.
        pred_noised_sample: x_s, the deterministic jump to the intermediate timestep.
        pred_original_sample: x̂₀.
    """

    prev_sample: jax.Array
    state: FlaxTCDSchedulerState
    pred_noised_sample: jax.Array
    pred_original_sample: jax.Array


class FlaxTCDScheduler(FlaxConsistencyScheduler[FlaxTCDSchedulerState]):
    r"""Trajectory Consistency Distillation sampling (Strategic Stochastic Sampling) for JAX.

    One step from t to the next timestep p, through s = ⌊(1−η)·p⌋:
    x̂₀, ε̂ from the model output; x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂;
    x_p = √(ᾱ_p/ᾱ_s)·x_s + √(1−ᾱ_p/ᾱ_s)·z, z ~ N(0, I) drawn from ``fold_in(key, step_index)``
    where the reference draws (η > 0 and not the last step). Numerically diffusers'
    ``TCDScheduler`` given the same noise.

    The scheduler holds only its configuration (``scheduler.config``, a :class:`tcd_core.TCDConfig`,
    hashable) and ``dtype``; everything that changes lives in the :class:`FlaxTCDSchedulerState`,
    the PRNG key and η included, so a loop written for diffusers' Flax schedulers
    (``scheduler.step(state, model_output, t, latents).to_tuple()``) runs it unchanged.

    Args:
        config: a :class:`tcd_core.TCDConfig` or a ``scheduler_config.json``-style mapping;
            keyword arguments set or override single fields.
        dtype: the ``dtype=`` of diffusers' Flax schedulers: the dtype of
            ``state.init_noise_sigma`` (the initial latents are multiplied by it). The ᾱ tables
            and step coefficients stay float32, as in the reference (which keeps float32
            coefficients for half-precision samples); the step keeps the sample's dtype.
            Not saved in the config (diffusers did not save it either).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from tcd_jax import FlaxTCDScheduler
        >>> scheduler = FlaxTCDScheduler(beta_schedule="scaled_linear")
        >>> state = scheduler.create_state(key=jax.random.key(1), eta=0.3)
        >>> state = scheduler.set_timesteps(state, 4)
        >>> x = jax.random.normal(jax.random.key(0), (1, 4, 8, 8))
        >>> def body(i, carry):
        ...     x, state = carry
        ...     t = state.timesteps[i]
        ...     eps = 0.1 * x                               # the model goes here
        ...     return scheduler.step(state, eps, t, x).to_tuple()
        >>> x, state = jax.lax.fori_loop(0, 4, body, (x, state))
        >>> x.shape, int(state.step_index)
        ((1, 4, 8, 8), 4)
    """

    _class_name = "TCDScheduler"
    _algorithm = tcd_core.TCD
    _output_type = FlaxTCDSchedulerOutput

    # ------------------------------------------------------------------ state
    def create_state(self, key: Any = None, eta: Any = DEFAULT_ETA) -> FlaxTCDSchedulerState:
        """The initial state: the noise schedule, every training timestep (descending) as
        ``timesteps``, no ``num_inference_steps`` (``step`` refuses to run before
        :meth:`set_timesteps`), the PRNG ``key`` and ``eta`` that ``step`` uses when it is given
        none.

        Args:
            key: a PRNG key (any implementation; raw ``uint32`` threefry keys are wrapped), one
                or one per batch element. Default: ``jax.random.key(0)``, a fixed key, so runs
                are reproducible; give another key for other noise.
            eta: η ∈ [0, 1], a number or one per batch element (default 0.3, the value of every
                official TCD example). Host values are checked (``ValueError``) and ``1 − η`` is
                rounded as the reference rounds it.
        """
        eta_f32, one_minus = state_eta(eta)
        return FlaxTCDSchedulerState(
            **self._initial_fields(key), eta=eta_f32, one_minus_eta=one_minus
        )

    # ------------------------------------------------------------------ the step
    def step(
        self,
        state: FlaxTCDSchedulerState,
        model_output: jax.Array,
        timestep: Any,
        sample: jax.Array,
        key: jax.Array | None = None,
        eta: Any = None,
        return_dict: bool = True,
    ) -> FlaxTCDSchedulerOutput | tuple[jax.Array, FlaxTCDSchedulerState]:
        r"""One TCD step from ``timestep`` t to the plan's next timestep p.

        ᾱ_t is looked up with ``timestep`` (a Python int or an int array, traced or not), p with
        the state's step index (as in the reference). A fresh state's first step finds its index
        where ``timesteps == timestep`` (index 0 if the timestep is not in the plan, where the
        reference raises).

        ``key`` and ``eta`` default to the state's (``state.key``, ``state.eta``): a loop that
        passes neither, as diffusers' Flax pipelines do, runs with the state's. Given here, they
        override the state's for this call only (the returned state keeps its own). η: a Python
        float (checked against [0, 1], ValueError, and rounded exactly as the reference does) or
        a JAX array (0-d or one per batch element; used as given: ``1 − η`` is then evaluated in
        float32; the state's η keeps the reference's rounding). The noise of step i is
        ``normal(fold_in(key, i))`` in the sample's dtype, entering where the reference draws
        (η > 0 and i ≠ num_inference_steps − 1); when no batch element draws, none is drawn.

        Returns ``FlaxTCDSchedulerOutput(prev_sample, state, …)`` (``.to_tuple()`` gives
        ``(prev_sample, state)``) or, with ``return_dict=False``, ``(prev_sample, state)``.
        """
        return self._step(state, model_output, timestep, sample, key, eta, return_dict)
