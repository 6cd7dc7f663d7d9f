"""The TCD step on JAX arrays, shared by the scheduler and the functional loop (private).

Everything that touches latents is tcd_core (:func:`tcd_core.step_coefficients` then
:func:`tcd_core.tcd_update`); this module only adds what a jitted, key-driven loop needs around it:

* η arrives as a traced float32 array (so that changing it never retraces), but the reference
  rounds ``1 − η`` *once*, from a double, to float32. A float32 η rounds twice and gives a
  different s = ⌊f32(1−η)·p⌋ for some (η, p) pairs (η = 0.33, 0.8, …). So host η values are turned
  into ``f32(1 − η)`` on the host, exactly, and s is formed from that in the graph
  (:func:`tcd_core.intermediate_timestep` with ``one_minus_eta=``).
* the noise is masked to zero where the reference draws none (η = 0, the last step), which the
  core's exact ratio r = 1 would give anyway; the mask makes it explicit and fuses into the update.
* when no batch element draws at a step (η = 0 everywhere, or the last step), the normal draw is
  skipped altogether: :func:`jax_tcd_step_keyed` takes a ``lax.cond`` branch without it. Both
  branches give the same values there (the ratio r is exactly 1), and the predicate is traced, so
  switching η between 0 and > 0 reuses the compiled code.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tcd_core import (
    TCDConfig,
    TCDStepOutput,
    check_eta,
    intermediate_timestep,
    step_coefficients,
    tcd_update,
)

from .noise import step_noise

__all__ = ["eta_arrays", "intermediate", "is_host", "jax_tcd_step", "jax_tcd_step_keyed"]


def is_host(x: Any) -> bool:
    """Python/NumPy values: known on the host, validated and converted exactly there."""
    return isinstance(x, (numbers.Number, np.generic, np.ndarray, list, tuple))


def eta_arrays(eta: Any) -> tuple[Any, Any]:
    """(η as float32, f32(1 − η)): NumPy float32 arrays for host η, JAX arrays otherwise.

    (NumPy for host η: a jitted function takes them as arguments and transfers them on dispatch.)

    Host η (a Python float or a NumPy array) is checked against [0, 1] (``ValueError``) and
    ``1 − η`` is evaluated in float64 and rounded once, as the reference does. A JAX array η is
    used as given (no device read, no check): ``1 − η`` is then evaluated in float32.
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


def intermediate(prev_timestep: Any, one_minus_eta: jax.Array) -> jax.Array:
    """s = ⌊f32(1−η)·f32(p)⌋ from a given f32(1−η) (:func:`tcd_core.intermediate_timestep`)."""
    return intermediate_timestep(jnp.asarray(prev_timestep), one_minus_eta=one_minus_eta)


def _broadcast(mask: jax.Array, ndim: int) -> jax.Array:
    mask = jnp.asarray(mask)
    if mask.ndim == 1:
        mask = mask.reshape(mask.shape + (1,) * (ndim - 1))
    return mask


def jax_tcd_step(
    model_output: jax.Array,
    timestep: Any,
    sample: jax.Array,
    prev_timestep: Any,
    alphas_cumprod: jax.Array,
    one_minus_eta: jax.Array,
    draw: Any,
    noise: jax.Array | None,
    config: TCDConfig,
) -> TCDStepOutput:
    """One TCD step t → p with s from ``one_minus_eta``; ``noise`` enters where ``draw`` is true.

    Where ``draw`` is false (η = 0 or the reference's last step) the ratio ᾱ_p/ᾱ_s is exactly 1
    anyway; the mask makes "no noise there" explicit and costs nothing (it fuses into the update).
    """
    for name, other in (("model_output", model_output), ("noise", noise)):
        if other is not None and tuple(other.shape) != tuple(sample.shape):
            raise ValueError(
                f"`{name}` must have the sample's shape {tuple(sample.shape)}, "
                f"got {tuple(other.shape)}"
            )
    p = jnp.asarray(prev_timestep)
    s = intermediate(p, one_minus_eta)
    if s.ndim == 1 and s.shape[0] != (sample.shape[0] if sample.ndim else 1):
        raise ValueError(
            f"per-batch `eta`/timesteps must have one entry per batch element "
            f"({sample.shape[0] if sample.ndim else 1}), got {s.shape[0]}"
        )
    coefficients = step_coefficients(
        alphas_cumprod, jnp.asarray(timestep), p, intermediate=s, ndim=sample.ndim
    )
    if noise is not None and draw is not None:
        noise = jnp.where(_broadcast(draw, sample.ndim), noise, jnp.zeros((), noise.dtype))
    return tcd_update(coefficients, model_output, sample, noise, config)


# Jitted so that an eager call (a hand-written Python loop over ``FlaxTCDScheduler.step``) compiles
# the step and its two ``lax.cond`` branches once per shape, dtype and config instead of tracing
# and compiling fresh branch closures on every call (about 0.6-1 s per eager step). Inside an
# outer ``jit``/``scan`` the call is inlined as usual.
@functools.partial(jax.jit, static_argnames=("config",))
def jax_tcd_step_keyed(
    model_output: jax.Array,
    timestep: Any,
    sample: jax.Array,
    prev_timestep: Any,
    alphas_cumprod: jax.Array,
    one_minus_eta: jax.Array,
    draw: jax.Array,
    key: jax.Array,
    index: Any,
    config: TCDConfig,
) -> TCDStepOutput:
    """:func:`jax_tcd_step` with z = ``normal(fold_in(key, index))`` where ``draw`` is true.

    ``draw`` (0-d or one per batch element) is traced; when no element draws, a ``lax.cond``
    branch without the normal draw runs (same values: the ratio ᾱ_p/ᾱ_s is exactly 1 there), so a
    compiled loop pays for the draw only where the reference draws. Under ``vmap`` with a batched
    ``draw`` the cond becomes a select and both branches run.
    """
    draw = jnp.asarray(draw)
    operands = (model_output, sample)

    def noisy(operands: tuple[jax.Array, jax.Array]) -> TCDStepOutput:
        out, x = operands
        noise = step_noise(key, index, x.shape, x.dtype)
        return jax_tcd_step(
            out, timestep, x, prev_timestep, alphas_cumprod, one_minus_eta, draw, noise, config
        )

    def quiet(operands: tuple[jax.Array, jax.Array]) -> TCDStepOutput:
        out, x = operands
        return jax_tcd_step(
            out, timestep, x, prev_timestep, alphas_cumprod, one_minus_eta, None, None, config
        )

    return jax.lax.cond(jnp.any(draw), noisy, quiet, operands)
