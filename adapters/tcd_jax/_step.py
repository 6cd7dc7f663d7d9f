"""The TCD step on JAX arrays, shared by the scheduler and the functional loop (private).

Everything that touches latents is :func:`tcd_core.tcd_step`; this module only adds what a jitted,
key-driven loop needs around it:

* η arrives as a traced float32 array (so that changing it never retraces), but the reference
  rounds ``1 − η`` *once*, from a double, to float32. A float32 η rounds twice and gives a
  different s = ⌊f32(1−η)·p⌋ for some (η, p) pairs (η = 0.33, 0.8, …). So host η values are turned
  into ``f32(1 − η)`` on the host, exactly, and s is formed from that in the graph.
* tcd_core's ``tcd_step`` takes η, not s, so the step is called as the DDIM jump t → s
  (``prev_timestep=s, eta=0``, for which s' = ⌊1·s⌋ = s and no noise enters), and the
  re-noising x_p = √(ᾱ_p/ᾱ_s)·x_s + √(1 − ᾱ_p/ᾱ_s)·z of the same core step follows here.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tcd_core import TCDConfig, TCDStepOutput, check_eta, tcd_step

__all__ = ["eta_arrays", "intermediate", "is_host", "jax_tcd_step"]


def is_host(x: Any) -> bool:
    """Python/NumPy values: known on the host, validated and converted exactly there."""
    return isinstance(x, (numbers.Number, np.generic, np.ndarray, list, tuple))


def eta_arrays(eta: Any) -> tuple[jax.Array, jax.Array]:
    """(η as float32, f32(1 − η)) as JAX arrays.

    Host η (a Python float or a NumPy array) is checked against [0, 1] (``ValueError``) and
    ``1 − η`` is evaluated in float64 and rounded once, as the reference does. A JAX array η is
    used as given (no device read, no check): ``1 − η`` is then evaluated in float32.
    """
    if is_host(eta):
        host = np.asarray(eta, dtype=np.float64)
        if host.ndim > 1:
            raise ValueError(f"`eta` must be a scalar or a 1-D per-batch array, got shape {host.shape}")
        check_eta(host if isinstance(eta, (list, tuple)) else eta)
        return jnp.asarray(host, dtype=jnp.float32), jnp.asarray(np.float32(1.0 - host))
    eta = jnp.asarray(eta)
    if eta.ndim > 1:
        raise ValueError(f"`eta` must be a scalar or a 1-D per-batch array, got shape {eta.shape}")
    eta = eta.astype(jnp.float32)
    return eta, 1.0 - eta


def intermediate(prev_timestep: Any, one_minus_eta: jax.Array) -> jax.Array:
    """s = ⌊f32(1−η)·f32(p)⌋ as int32 (``tcd_core.intermediate_timestep`` from a given f32(1−η))."""
    p = jnp.asarray(prev_timestep).astype(jnp.float32)
    return jnp.floor(one_minus_eta * p).astype(jnp.int32)


def _coefficient(table: jax.Array, index: jax.Array, ndim: int) -> jax.Array:
    value = table[index]
    if value.ndim == 1:
        value = value.reshape(value.shape + (1,) * (ndim - 1))
    return value


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
    p = jnp.asarray(prev_timestep)
    s = intermediate(p, one_minus_eta)
    if s.ndim == 1 and s.shape[0] != (sample.shape[0] if sample.ndim else 1):
        raise ValueError(
            f"per-batch `eta`/timesteps must have one entry per batch element "
            f"({sample.shape[0] if sample.ndim else 1}), got {s.shape[0]}"
        )
    jump = tcd_step(model_output, timestep, sample, s, alphas_cumprod, 0.0, None, config)
    if noise is None:
        return jump
    ndim = sample.ndim
    ratio = _coefficient(alphas_cumprod, p, ndim) / _coefficient(alphas_cumprod, s, ndim)
    if draw is not None:
        noise = jnp.where(_broadcast(draw, ndim), noise, jnp.zeros((), noise.dtype))
    x_p = jnp.sqrt(ratio) * jump.pred_noised_sample + jnp.sqrt(1 - ratio) * noise
    return TCDStepOutput(x_p.astype(sample.dtype), jump.pred_noised_sample, jump.pred_original_sample)
