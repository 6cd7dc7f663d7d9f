"""``FlaxLCMScheduler``: multistep consistency sampling (LCM, Algorithm 1) in the shape of
diffusers' former Flax schedulers.

The same convention as :class:`tcd_jax.FlaxTCDScheduler` (config + immutable state pytree; the
step index and the PRNG key *in the state as arrays*, so ``step`` runs inside ``jax.jit``,
``lax.fori_loop``, ``lax.scan`` and ``pmap`` with a traced timestep, and the Flax pipelines of
diffusers ≤ 0.39 run it unmodified). LCM has no η. The plan is :func:`tcd_core.lcm_timesteps`,
the step :func:`tcd_core.lcm_step`; the scheduler itself is written once (``_scheduler_base``,
``_convention``), this module names its configuration.
"""

from __future__ import annotations

from typing import Any

import jax

import tcd_core

from ._convention import ConsistencyState, OutputMixin, pytree_dataclass
from ._scheduler_base import FlaxConsistencyScheduler

__all__ = ["FlaxLCMScheduler", "FlaxLCMSchedulerOutput", "FlaxLCMSchedulerState"]


@pytree_dataclass
class FlaxLCMSchedulerState(ConsistencyState):
    """The LCM scheduler's state: a frozen dataclass registered as a JAX pytree, with exactly the
    fields every scheduler state has (:class:`~tcd_jax._convention.ConsistencyState`: the noise
    schedule, the plan, the step index and the PRNG key). LCM has no η."""


@pytree_dataclass
class FlaxLCMSchedulerOutput(OutputMixin):
    """What :meth:`FlaxLCMScheduler.step` returns (a pytree).

    ``to_tuple()`` gives ``(prev_sample, state)``, the two values diffusers' Flax pipelines unpack.

    Attributes:
        prev_sample: the next model input (``denoised`` itself after the final step).
        state: the scheduler state with the step index advanced.
        denoised: the consistency function's output c_out·x̂₀ + c_skip·x_t (the reference's
            ``denoised``, the image estimate of this step).
        pred_original_sample: x̂₀ after clipping/thresholding.
    """

    prev_sample: jax.Array
    state: FlaxLCMSchedulerState
    denoised: jax.Array
    pred_original_sample: jax.Array


class FlaxLCMScheduler(FlaxConsistencyScheduler[FlaxLCMSchedulerState]):
    r"""Multistep latent consistency sampling (Song et al. 2023, Algorithm 1) for JAX.

    One step at timestep t with previous timestep p (:func:`tcd_core.lcm_step`):
    x̂₀ from the model output; denoised = c_out·x̂₀ + c_skip·x_t (the consistency boundary
    conditions at t); x_p = √ᾱ_p·denoised + √(1−ᾱ_p)·z with z = ``normal(fold_in(key,
    step_index))``, except at the final step (``step_index == num_inference_steps − 1``), which
    returns ``denoised`` and draws nothing. Numerically diffusers' ``LCMScheduler`` given the same
    noise.

    The scheduler holds only its configuration (``scheduler.config``, a
    :class:`tcd_core.TCDConfig`, which has exactly ``LCMScheduler``'s fields) and ``dtype``;
    everything that changes lives in the :class:`FlaxLCMSchedulerState`, the PRNG key included,
    so a loop written for diffusers' Flax schedulers
    (``scheduler.step(state, model_output, t, latents).to_tuple()``) runs it unchanged.

    Args:
        config: a :class:`tcd_core.TCDConfig` or a ``scheduler_config.json``-style mapping;
            keyword arguments set or override single fields.
        dtype: the dtype of ``state.init_noise_sigma`` (diffusers' Flax ``dtype=``); the ᾱ
            tables and step coefficients stay float32, the step keeps the sample's dtype.

    Example (a ``lax.scan`` over the plan, the state as the carry):
        >>> import jax
        >>> from tcd_jax import FlaxLCMScheduler
        >>> scheduler = FlaxLCMScheduler(beta_schedule="scaled_linear")
        >>> state = scheduler.set_timesteps(scheduler.create_state(key=jax.random.key(1)), 4)
        >>> def body(carry, t):
        ...     x, state = carry
        ...     return scheduler.step(state, 0.1 * x, t, x).to_tuple(), None  # model: 0.1 * x
        >>> x0 = jax.random.normal(jax.random.key(0), (1, 4, 8, 8))
        >>> (x, state), _ = jax.lax.scan(body, (x0, state), state.timesteps)
        >>> x.shape, int(state.step_index)
        ((1, 4, 8, 8), 4)
    """

    _class_name = "LCMScheduler"
    _algorithm = tcd_core.LCM
    _output_type = FlaxLCMSchedulerOutput

    # ------------------------------------------------------------------ state
    def create_state(self, key: Any = None) -> FlaxLCMSchedulerState:
        """The initial state: the noise schedule, every training timestep (descending) as
        ``timesteps``, no ``num_inference_steps`` (``step`` refuses to run before
        :meth:`set_timesteps`), and the PRNG ``key`` that ``step`` uses when it is given none.

        Args:
            key: a PRNG key (any implementation; raw ``uint32`` threefry keys are wrapped), one
                or one per batch element. Default: ``jax.random.key(0)``, a fixed key, so runs
                are reproducible; give another key for other noise.
        """
        return FlaxLCMSchedulerState(**self._initial_fields(key))

    # ------------------------------------------------------------------ the step
    def step(
        self,
        state: FlaxLCMSchedulerState,
        model_output: jax.Array,
        timestep: Any,
        sample: jax.Array,
        key: jax.Array | None = None,
        return_dict: bool = True,
    ) -> FlaxLCMSchedulerOutput | tuple[jax.Array, FlaxLCMSchedulerState]:
        r"""One LCM step at ``timestep`` t (:func:`tcd_core.lcm_step`).

        ᾱ_t and the boundary conditions c_skip/c_out are taken at ``timestep`` (a Python int or
        an int array, traced or not; a Python int gives the reference's double-precision
        c_skip/c_out, an array its float32 ones), the previous timestep from the state's step
        index (as in the reference). A fresh state's first step finds its index where
        ``timesteps == timestep`` (index 0 if the timestep is not in the plan, where the reference
        raises).

        ``key`` defaults to ``state.key`` (diffusers' Flax pipelines pass none); given here, it
        overrides the state's for this call only. The noise of step i is
        ``normal(fold_in(key, i))`` in the sample's dtype, drawn where the reference draws it: at
        every step except the final one (``i == num_inference_steps − 1``), where nothing is
        drawn and ``prev_sample`` is ``denoised``.

        Returns ``FlaxLCMSchedulerOutput(prev_sample, state, denoised, pred_original_sample)``
        (``.to_tuple()`` gives ``(prev_sample, state)``) or, with ``return_dict=False``,
        ``(prev_sample, state)``.
        """
        return self._step(state, model_output, timestep, sample, key, None, return_dict)
