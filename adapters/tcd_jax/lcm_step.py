"""The LCM step on JAX arrays, shared by ``FlaxLCMScheduler`` and ``sample_lcm`` (private).

All the maths is :func:`tcd_core.lcm_step` (x̂₀, clipping/thresholding, denoised = c_out·x̂₀ +
c_skip·x_t, prev = √ᾱ_prev·denoised + √(1−ᾱ_prev)·z, prev = denoised at the final step). This
module only adds the key-driven noise of a compiled loop: step i's z is
``normal(fold_in(key, i))`` (:func:`tcd_jax.step_noise`), drawn where the reference draws it,
that is at every step that is not the final one (``step_index == num_inference_steps − 1``).
``final`` is traced, so a ``lax.cond`` gives zeros *without* drawing the normal when no batch
element draws: the final step of a compiled loop costs no draw, and the same compiled code serves
every plan (the core's renoising coefficients are exactly 1 and 0 at a final step, so z does not
change the result there). Only the noise is inside the cond; the step itself is the core's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from tcd_core import LCMStepOutput, TCDConfig, lcm_step

from .noise import step_noise

__all__ = ["jax_lcm_step_keyed", "keyed_noise"]

_Branch = Callable[[jax.Array, jax.Array], jax.Array]


@functools.lru_cache(maxsize=64)
def _noise_branches(shape: tuple[int, ...], dtype: Any) -> tuple[_Branch, _Branch]:
    """(skip, draw) for one (shape, dtype): the same function objects every time, so an eager
    ``lax.cond`` on them is traced and compiled once (fresh closures would recompile it at every
    eager step)."""

    def skip(key: jax.Array, index: jax.Array) -> jax.Array:
        return jnp.zeros(shape, dtype)

    def draw(key: jax.Array, index: jax.Array) -> jax.Array:
        return step_noise(key, index, shape, dtype)

    return skip, draw


def keyed_noise(
    final: Any, key: jax.Array, index: Any, shape: tuple[int, ...], dtype: Any
) -> jax.Array:
    """z = ``normal(fold_in(key, index))`` of ``shape``/``dtype``, or zeros without drawing when
    every batch element is at its final step (``final``: a bool, 0-d or per batch element;
    traced is fine: a ``lax.cond``, a select under ``vmap``)."""
    skip, draw = _noise_branches(tuple(int(d) for d in shape), jnp.dtype(dtype))
    index = jnp.asarray(index, dtype=jnp.int32)
    return jax.lax.cond(jnp.all(jnp.asarray(final)), skip, draw, key, index)


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
    step. When every batch element is final, z is zeros and no normal is drawn
    (:func:`keyed_noise`); the values are the same either way, since the core's renoising
    coefficients are exactly 1 and 0 there.
    """
    z = keyed_noise(final, key, index, sample.shape, sample.dtype)
    return lcm_step(
        model_output, timestep, sample, prev_timestep, alphas_cumprod, z, final=final, config=config
    )
