"""One consistency step on JAX arrays, for every algorithm and path: shared by the Flax schedulers
and the compiled loop (private).

Everything that touches latents is tcd_core (:func:`tcd_core.coefficients` then
:func:`tcd_core.update`), on the path given as a value (:class:`tcd_core.VPPath` over an ᾱ table,
or :data:`tcd_core.FLOW`); this module only adds what a jitted, key-driven loop needs around it:

* η arrives as a traced float32 array (so that changing it never retraces), with f32(1 − η)
  computed on the host beside it (:func:`eta_arrays`; why: :func:`tcd_core.intermediate_timestep`);
* the noise is masked to zero where the reference draws none (``draw`` false), which the core's
  coefficients give anyway (TCD's transition is exactly the identity there, LCM's final step
  exactly 1 and 0); the mask makes it explicit and fuses into the update;
* when no batch element draws, the normal draw is skipped altogether: a ``lax.cond`` around the
  noise alone gives zeros instead (:func:`jax_step`). Both give the same values there, and the
  predicate is traced, so switching between drawing and not drawing reuses the compiled code;
* on the flow path, the step runs in float32 as the reference (``FlowMatchTCDScheduler``) runs it
  (the sample upcast, the result cast back to the sample's dtype), and where no noise enters the
  next sample is the estimate itself (the Euler jump), so the re-noising's keep of exactly 1
  there is not left to XLA's division.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tcd_core import (
    FLOW_PREDICTION,
    TCD,
    Algorithm,
    FlowPath,
    StepOutput,
    TCDConfig,
    check_eta,
    coefficients,
    intermediate_level,
    update,
)
from tcd_core import intermediate_timestep as core_intermediate
from tcd_core._array import is_host
from tcd_core._step_common import check_per_batch

from .noise import step_noise

__all__ = [
    "FLOW_STEP_CONFIG",
    "eta_arrays",
    "intermediate",
    "jax_step",
    "keyed_step",
    "step_config",
]


def eta_arrays(eta: Any) -> tuple[Any, Any]:
    """(η as float32, f32(1 − η)): NumPy float32 arrays for host η, JAX arrays otherwise.

    (NumPy for host η: a jitted function takes them as arguments and transfers them on dispatch.)

    Host η is checked (:func:`tcd_core.check_eta`) and f32(1 − η) rounded as the reference
    rounds it (why: :func:`tcd_core.intermediate_timestep`); a JAX array η is used as given (no
    device read, no check), with ``1 − η`` in float32.
    """
    check_eta(eta)  # TypeError for what is not η; host values in [0, 1]
    if is_host(eta):
        host = np.asarray(eta, dtype=np.float64)
        if host.ndim > 1:
            raise ValueError(
                f"`eta` must be a scalar or a 1-D per-batch array, got shape {host.shape}"
            )
        # NumPy float32 arrays: jit transfers them on dispatch (cheaper than jnp.asarray here).
        return host.astype(np.float32), np.asarray(1.0 - host, dtype=np.float32)
    eta = jnp.asarray(eta)
    if eta.ndim > 1:
        raise ValueError(f"`eta` must be a scalar or a 1-D per-batch array, got shape {eta.shape}")
    eta = eta.astype(jnp.float32)
    return eta, 1.0 - eta


def intermediate(next_timestep: Any, one_minus_eta: jax.Array) -> jax.Array:
    """s = ⌊f32(1−η)·f32(p)⌋ from a given f32(1−η) (:func:`tcd_core.intermediate_timestep`)."""
    return core_intermediate(jnp.asarray(next_timestep), one_minus_eta=one_minus_eta)


def _broadcast(mask: jax.Array, ndim: int) -> jax.Array:
    mask = jnp.asarray(mask)
    if mask.ndim == 1:
        mask = mask.reshape(mask.shape + (1,) * (ndim - 1))
    return mask


def jax_step(
    algorithm: Algorithm,
    model_output: jax.Array,
    timestep: Any,
    sample: jax.Array,
    next_timestep: Any,
    path: Any,
    one_minus_eta: jax.Array | None,
    final: Any,
    draw: Any,
    key: jax.Array | None,
    index: Any,
    config: TCDConfig,
) -> StepOutput:
    """One step of ``algorithm`` from t to the next timestep on ``path`` (a
    :class:`tcd_core.VPPath` over the ᾱ table, whose timesteps are its indices, or
    :data:`tcd_core.FLOW`, whose timesteps are σ): TCD takes s from ``one_minus_eta`` (and no
    ``final``), LCM takes ``final``. z = ``normal(fold_in(key, index))`` in the sample's dtype
    enters where ``draw`` is true (0-d or one per batch element, traced).

    On the flow path (TCD only) the step is computed in float32, as the reference computes it:
    the sample is upcast, the result cast back to its dtype; where ``draw`` is false the next
    sample is the estimate x_s itself (η = 0: the Euler step, exactly).

    Only the noise sits in a ``lax.cond``: when no element draws, the branch without the normal
    draw gives zeros (the core's coefficients make the noise term exactly zero there anyway), so
    a compiled loop pays for the draw only where the reference draws; under ``vmap`` with a
    batched ``draw`` the cond becomes a select. The update itself stays outside the cond, where
    XLA fuses it with the rest of the step: measured on CPU, a ``fori_loop`` over the Flax
    schedulers' step runs 2.5x faster at 1×4×8×8 than with the whole step inside the cond.
    ``draw`` None (a step known on the host to draw nothing, such as TCD's last row) has no cond
    and no noise term.
    """
    if model_output.shape != sample.shape:
        raise ValueError(
            f"`model_output` must have the sample's shape {tuple(sample.shape)}, "
            f"got {tuple(model_output.shape)}"
        )
    batch = sample.shape[0] if sample.ndim else 1
    flow = isinstance(path, FlowPath)

    def apply(out: jax.Array, x: jax.Array, noise: jax.Array | None) -> StepOutput:
        if algorithm.has_eta:
            p = jnp.asarray(next_timestep)
            assert one_minus_eta is not None  # TCD's steps get f32(1 − η)
            if flow:  # σ_s = f32(1 − η)·σ_next, no floor
                s = intermediate_level(p, one_minus_eta=one_minus_eta)
            else:
                s = intermediate(p, one_minus_eta)
            if s.ndim == 1 and s.shape[0] != batch:
                raise ValueError(
                    f"per-batch `eta`/timesteps must have one entry per batch element "
                    f"({batch}), got {s.shape[0]}"
                )
            c = coefficients(algorithm, path, jnp.asarray(timestep), p, intermediate=s, ndim=x.ndim)
        else:
            check_per_batch(
                "final", tuple(jnp.shape(final)), batch, "a bool or a 1-D boolean array"
            )
            c = coefficients(
                algorithm, path, timestep, next_timestep, final=final,
                timestep_scaling=config.timestep_scaling, ndim=x.ndim,
            )  # fmt: skip
        if flow:
            return _flow_update(algorithm, c, out, x, noise, draw, config)
        if noise is not None:
            noise = jnp.where(_broadcast(draw, x.ndim), noise, jnp.zeros((), noise.dtype))
        return update(algorithm, c, out, x, noise, config)

    if draw is None:
        return apply(model_output, sample, None)
    draw = jnp.asarray(draw)
    shape, dtype = sample.shape, sample.dtype

    def noisy(key: jax.Array) -> jax.Array:
        return step_noise(key, index, shape, dtype)

    def quiet(key: jax.Array) -> jax.Array:
        return jnp.zeros(shape, dtype)

    return apply(model_output, sample, jax.lax.cond(jnp.any(draw), noisy, quiet, key))


def _flow_update(
    algorithm: Algorithm,
    c: Any,
    model_output: jax.Array,
    sample: jax.Array,
    noise: jax.Array | None,
    draw: Any,
    config: TCDConfig,
) -> StepOutput:
    """The flow path's update in float32 (``FlowMatchTCDScheduler`` upcasts the sample; the
    float32 coefficients promote a half model output and noise), cast back to the sample's
    dtype. Where ``draw`` is false the next sample is the estimate itself: the coefficients'
    keep is exactly 1 and noise 0 there in exact arithmetic (σ_s = σ_next), which a select
    keeps exact whatever XLA's division gives, and which also holds where keep is 0/0 (η = 0 up
    to σ_next = 1, an inverted plan's last step)."""
    x = sample.astype(jnp.float32)
    out = update(algorithm, c, model_output, x, noise, config)
    next_sample, estimate = out.next_sample, out.estimate
    if noise is not None:
        next_sample = jnp.where(_broadcast(draw, x.ndim), next_sample, estimate)
    dtype = sample.dtype
    original = out.pred_original_sample
    return StepOutput(
        next_sample.astype(dtype),
        estimate.astype(dtype),
        None if original is None else original.astype(dtype),
    )


# Jitted so that an eager call (a hand-written Python loop over a Flax scheduler's ``step``)
# compiles the step and its two ``lax.cond`` branches once per shape, dtype, algorithm and config
# instead of tracing and compiling fresh branch closures on every call (about 0.6-1 s per eager
# step). Inside an outer ``jit``/``scan`` the call is inlined as usual.
keyed_step = jax.jit(jax_step, static_argnames=("algorithm", "config"))


#: The flow path's step config when none is given: the model predicts the velocity v = ε − x₀.
FLOW_STEP_CONFIG = TCDConfig(prediction_type=FLOW_PREDICTION)


@functools.lru_cache(maxsize=64)
def step_config(config: TCDConfig, algorithm: Algorithm = TCD) -> TCDConfig:
    """The fields the traced step reads (LCM's also ``timestep_scaling``); the schedule enters as
    an array, so configs that differ only in their noise schedule share one compiled loop (and
    one compiled eager step)."""
    fields = TCDConfig(
        prediction_type=config.prediction_type,
        clip_sample=config.clip_sample,
        clip_sample_range=config.clip_sample_range,
        thresholding=config.thresholding,
        dynamic_thresholding_ratio=config.dynamic_thresholding_ratio,
        sample_max_value=config.sample_max_value,
    )
    if algorithm.skip_connection:
        return fields.replace(timestep_scaling=config.timestep_scaling)
    return fields
