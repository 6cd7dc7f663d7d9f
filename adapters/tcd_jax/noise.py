"""PRNG keys and the per-step noise of the TCD loop.

The reference draws z ~ N(0, I) from one ``torch.Generator`` that advances at every step which
draws. JAX keys do not advance: step ``i`` uses ``fold_in(key, i)``, so the noise of a step
depends only on the key and the step index (not on which earlier steps drew), and a loop can be
restarted at any step. A key may be one key for the whole batch (one draw of the batch's shape,
as the reference does) or one key per batch element (shape ``(B,)``: each sample's noise is then
independent of the batch it is in, which is what ``jax.vmap`` over samples gives).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["PRNG_IMPLS", "prng_key", "step_noise"]

#: Key implementations accepted by :func:`prng_key` (``jax.random.key(seed, impl=...)``).
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
"""The PRNG implementations :func:`prng_key` accepts: JAX's default ``threefry2x32``, or
``rbg``/``unsafe_rbg`` (XLA's ``RngBitGenerator``, meant for accelerators; other streams)."""


def prng_key(seed: int, impl: str = "threefry2x32") -> jax.Array:
    """A typed PRNG key: ``jax.random.key(seed, impl=impl)``.

    ``threefry2x32`` (JAX's default) is counter-based and invariant under sharding. ``rbg`` and
    ``unsafe_rbg`` draw through XLA's ``RngBitGenerator``, meant for accelerators; on XLA:CPU it
    measured 1.7–2× *slower* than threefry (``docs/guides/jax.md``), so measure on your device
    with ``benchmarks/jax_gpu.py``. Their streams differ from threefry's.

    Example:
        >>> import tcd_jax
        >>> tcd_jax.prng_key(0, impl="rbg").dtype
        key<rbg>
    """
    if impl not in PRNG_IMPLS:
        raise ValueError(f"`impl` must be one of {', '.join(map(repr, PRNG_IMPLS))}; got {impl!r}")
    return jax.random.key(seed, impl=impl)


def as_typed_key(key: Any) -> jax.Array:
    """A typed key array; raw ``uint32`` threefry keys (``jax.random.PRNGKey``) are wrapped."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype != jnp.uint32 or key.ndim < 1 or key.shape[-1] != 2:
        raise ValueError(
            "`key` must be a typed PRNG key (jax.random.key) or a raw uint32 threefry key "
            f"(jax.random.PRNGKey) of shape (2,) or (B, 2); got {key.dtype}{tuple(key.shape)}"
        )
    return jax.random.wrap_key_data(key)


def step_noise(key: Any, step_index: Any, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """z ~ N(0, I) of ``shape`` and ``dtype`` for step ``step_index``: ``normal(fold_in(key, i))``.

    ``key`` is one key (shape ``()``) or one per batch element (shape ``(B,)``, B = ``shape[0]``).

    Example:
        >>> import jax, tcd_jax
        >>> z = tcd_jax.step_noise(jax.random.key(0), 2, (1, 4, 8, 8), "float32")
        >>> z.shape, str(z.dtype)
        ((1, 4, 8, 8), 'float32')
    """
    key = as_typed_key(key)
    shape = tuple(shape)
    if key.ndim == 0:
        return jax.random.normal(jax.random.fold_in(key, step_index), shape, dtype)
    if key.ndim == 1 and len(shape) >= 1 and key.shape[0] == shape[0]:
        draw = lambda k: jax.random.normal(jax.random.fold_in(k, step_index), shape[1:], dtype)
        return jax.vmap(draw)(key)
    raise ValueError(
        f"`key` must be a single key or one key per batch element ({shape[0] if shape else 1}), "
        f"got key shape {tuple(key.shape)}"
    )
