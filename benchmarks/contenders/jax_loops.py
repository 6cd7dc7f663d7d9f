"""The JAX contenders: the JAX floors and ``tcd_jax.sample``, noise ``normal(fold_in(key, i))``
from a threefry or rbg key (the same key and scheme in the floor and the loop, so their final
latents are compared).

``tcd_jax.sample`` is timed the two ways a user runs it:

- a plain call, ``tcd_jax.sample(model_fn, latents, key, plan, eta)``: the loop itself is compiled
  (cached after the first call), and every call also pays the host-side preparation (plan and η
  arrays, the ᾱ table, dispatch);
- inside the caller's own ``jax.jit`` (how a pipeline embeds it): the preparation happens once, at
  trace time, and a call is just the compiled loop. The model output enters as an argument, so
  XLA cannot fold it into constants.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tcd_core import tcd_timesteps

from ..workloads import Inputs, floor_coefficients
from .base import Contender, Loop, Unavailable, import_or_unavailable

__all__ = ["JAX_IMPLS", "FloorJax", "TcdJaxLoop"]

# Short names in keys and tables; JAX's names for the key implementations.
JAX_IMPLS = {"threefry": "threefry2x32", "rbg": "rbg"}


def _jax_key(jax: Any, seed: int, impl: str) -> Any:
    return jax.random.key(seed, impl=JAX_IMPLS[impl])


class FloorJax(Contender):
    """The JAX floor. ``every_step``: a variant that draws at every step, also where the
    reference draws none (the cost of a fixed-shape scan that always draws and masks)."""

    def __init__(self, impl: str, every_step: bool = False) -> None:
        super().__init__(
            f"floor-jax-{impl}" + ("-every" if every_step else ""),
            f"floor, jax ({impl})" + (", draw every step" if every_step else ""),
            "jax",
            f"floor-jax-{impl}" + ("-every" if every_step else ""),
            f"jax.jit of: normal(fold_in({impl} key, i)) "
            + ("at every step" if every_step else "where the reference draws")
            + " + a*x + b*eps + c*z (XLA fuses the update into one loop; steps unrolled)",
            compare_with=f"floor-jax-{impl}" if every_step else None,
            is_floor=True,
        )
        self.impl = impl
        self.every_step = every_step
        self.jax: Any = None
        # One compiled loop per (shape, which steps draw): the coefficients are arguments.
        self.compiled: dict[tuple, Any] = {}

    def load(self) -> None:
        self.jax = import_or_unavailable("jax")

    def _loop(self, shape: tuple[int, ...], draws: tuple[bool, ...]) -> Any:
        jax = self.jax
        jnp = jax.numpy

        @jax.jit
        def loop(x: Any, e: Any, key: Any, coef: Any) -> Any:
            for i, d in enumerate(draws):
                a, b, c = coef[i, 0], coef[i, 1], coef[i, 2]
                y = a * x + b * e
                if d:  # c = 0 where the reference draws none
                    z = jax.random.normal(jax.random.fold_in(key, i), shape, dtype=jnp.float32)
                    y = y + c * z
                x = y
            return x

        return loop

    def prepare(self, inputs: Inputs) -> Loop:
        jax = self.jax
        jnp = jax.numpy
        wl = inputs.workload
        a, b, c, draws = floor_coefficients(inputs.config, wl.steps, wl.eta)
        if self.every_step:
            draws = [True] * len(draws)
        coef = jnp.asarray(np.stack([a, b, c], axis=1), dtype=jnp.float32)
        x0 = jnp.asarray(inputs.latents)
        eps = jnp.asarray(inputs.model_output)
        key = _jax_key(jax, inputs.seed, self.impl)
        cache_key = (wl.shape, tuple(draws))
        compile_s = None
        loop = self.compiled.get(cache_key)
        if loop is None:
            loop = self.compiled[cache_key] = self._loop(wl.shape, tuple(draws))
            t0 = time.perf_counter()
            loop(x0, eps, key, coef).block_until_ready()
            compile_s = time.perf_counter() - t0
        return Loop(
            lambda: loop(x0, eps, key, coef).block_until_ready(), np.asarray, compile_s=compile_s
        )


class TcdJaxLoop(Contender):
    """The tcd_jax compiled sampling loop, called plainly or inside the caller's jax.jit."""

    def __init__(self, impl: str, jit: bool, traced_eta: bool = False) -> None:
        how = "inside jax.jit" if jit else "plain call"
        if traced_eta:
            how += ", η a traced argument of the jitted function"
        super().__init__(
            f"tcd-jax-{'jit-' if jit else ''}{'eta-' if traced_eta else ''}{impl}",
            f"tcd_jax loop ({impl}, {'jit' if jit else 'call'}{', traced η' if traced_eta else ''})",
            "jax",
            f"floor-jax-{impl}",
            f"tcd_jax.sample(model_fn, latents, key, plan, eta) ({how}): the whole loop "
            f"compiled (lax.scan), {impl} key"
            + (
                "; per call only the compiled loop runs"
                if jit
                else "; each call also prepares its inputs on the host"
            )
            + (
                "; whether a step draws is decided on the device (lax.cond on any(η > 0))"
                if traced_eta
                else ""
            ),
            compare_with=f"floor-jax-{impl}",  # same key, same normal(fold_in(key, i))
        )
        self.impl = impl
        self.jit = jit
        self.traced_eta = traced_eta
        self.jax: Any = None
        self.tcd_jax: Any = None

    def load(self) -> None:
        self.jax = import_or_unavailable("jax")
        import_or_unavailable("tcd_jax", "sample")  # raises Unavailable when missing
        self.tcd_jax = import_or_unavailable("tcd_jax")

    def prepare(self, inputs: Inputs) -> Loop:
        jax, tcd_jax = self.jax, self.tcd_jax
        jnp = jax.numpy
        wl, cfg = inputs.workload, inputs.config
        x0 = jnp.asarray(inputs.latents)
        eps = jnp.asarray(inputs.model_output)
        key = _jax_key(jax, inputs.seed, self.impl)
        plan = tcd_timesteps(cfg, wl.steps)

        if self.jit and self.traced_eta:
            # η enters the compiled function as an array: one compilation serves every η, and
            # whether a step draws noise is decided on the device.
            eta = jnp.float32(wl.eta)

            @jax.jit
            def loop_eta(x: Any, k: Any, e: Any, eta: Any) -> Any:
                return tcd_jax.sample(lambda x, t: e, x, k, plan, eta, config=cfg)

            def run() -> Any:
                return jax.block_until_ready(loop_eta(x0, key, eps, eta))

        elif self.jit:

            @jax.jit
            def loop(x: Any, k: Any, e: Any) -> Any:
                return tcd_jax.sample(lambda x, t: e, x, k, plan, wl.eta, config=cfg)

            def run() -> Any:
                return jax.block_until_ready(loop(x0, key, eps))

        else:

            def model_fn(x: Any, t: Any) -> Any:
                return eps

            def run() -> Any:
                return jax.block_until_ready(
                    tcd_jax.sample(model_fn, x0, key, plan, wl.eta, config=cfg)
                )

        try:
            t0 = time.perf_counter()
            run()
            compile_s = time.perf_counter() - t0
        except Exception as exc:
            raise Unavailable(f"tcd_jax.sample call failed: {type(exc).__name__}: {exc}") from exc
        return Loop(run, np.asarray, compile_s=compile_s)
