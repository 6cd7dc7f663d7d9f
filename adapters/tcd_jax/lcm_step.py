"""The LCM step on JAX arrays, shared by ``FlaxLCMScheduler`` and ``sample_lcm`` (private).

All the maths is :func:`tcd_core.lcm_step` (x̂₀, clipping/thresholding, denoised = c_out·x̂₀ +
c_skip·x_t, prev = √ᾱ_prev·denoised + √(1−ᾱ_prev)·z, prev = denoised at the final step). This
module only adds the key-driven noise of a compiled loop: step i's z is
``normal(fold_in(key, i))`` (:func:`tcd_jax.step_noise`), drawn where the reference draws it,
that is at every step that is not the final one (``step_index == num_inference_steps − 1``).
``final`` is traced, so a ``lax.cond`` picks a branch *without* the normal draw when no batch
element draws: the final step of a compiled loop costs no draw, and the same compiled code serves
every plan (the core's coefficients are exactly 1 and 0 at a final step, so both branches give
the same values there).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from tcd_core import LCMStepOutput, TCDConfig, lcm_step

from .noise import step_noise

__all__ = ["jax_lcm_step_keyed"]


def jax_lcm_step_keyed(
    model_output: jax.Array,
    timestep: Any,
    sample: jax.Array,
    prev_timestep: Any,
    alphas_cumprod: jax.Array,
    final: Any,
    key: jax.Array,
    index: Any,
    config: TCDConfig,
) -> LCMStepOutput:
    """:func:`tcd_core.lcm_step` with z = ``normal(fold_in(key, index))`` unless ``final``.

    ``final`` (a bool, 0-d or one per batch element; traced is fine) marks the reference's final
    step. When every batch element is final, a ``lax.cond`` branch without the normal draw runs
    (the values are the same: the core's renoising coefficients are exactly 1 and 0 there).
    Under ``vmap`` with a batched ``final`` the cond becomes a select and both branches run.
    """
    final = jnp.asarray(final)
    operands = (model_output, sample)

    def noisy(operands: tuple[jax.Array, jax.Array]) -> LCMStepOutput:
        out, x = operands
        z = step_noise(key, index, x.shape, x.dtype)
        return lcm_step(
            out, timestep, x, prev_timestep, alphas_cumprod, z, final=final, config=config
        )

    def quiet(operands: tuple[jax.Array, jax.Array]) -> LCMStepOutput:
        out, x = operands
        return lcm_step(out, timestep, x, prev_timestep, alphas_cumprod, final=final, config=config)

    return jax.lax.cond(jnp.all(final), quiet, noisy, operands)
