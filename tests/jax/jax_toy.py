"""The toy denoiser of the JAX tests, for NumPy and JAX: a module without torch or diffusers, so
the 8-device subprocess (sharding_check.py) starts in a second instead of six. ``jax_helpers``
re-exports both and adds the torch version."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def toy_model_np(x: np.ndarray, t) -> np.ndarray:
    """A smooth, t-dependent denoiser written once for both backends (via the array's ops)."""
    return 0.5 * x + 0.25 * x / (1.0 + x * x) * (t / 1000.0)


def toy_model_jax(x: jax.Array, t) -> jax.Array:
    t = jnp.asarray(t).astype(jnp.float32)
    if t.ndim == 1:
        t = t.reshape((-1,) + (1,) * (x.ndim - 1))
    return (0.5 * x + 0.25 * x / (1.0 + x * x) * (t / 1000.0)).astype(x.dtype)
