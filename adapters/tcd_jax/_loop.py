"""The compiled sampling loop, written once for every algorithm and path (private): the checks and
dtype conversions of a loop's inputs, the scan over a plan's rows, and the jitted loop itself
(:func:`run`), which :func:`tcd_jax.sample` and :func:`tcd_jax.sample_lcm` configure.

The path is a value of the loop's arguments: :class:`tcd_core.VPPath` over the config's ᾱ table
for the VP plans (integer timesteps, which the model also receives), :data:`tcd_core.FLOW` for
flow plans (a plan with ``sigmas``: the step runs on σ, the model receives the plan's model
times).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from tcd_core import FLOW, Algorithm, TCDConfig
from tcd_core.paths import as_path

from ._scheduler_base import host_schedule
from ._step import jax_step, keyed_step, step_config

__all__ = [
    "DEFAULT_CONFIG",
    "FLOW_FIELDS",
    "FULL_UNROLL_MAX_STEPS",
    "VP_FIELDS",
    "checked_config",
    "loop_inputs",
    "run",
    "scan_rows",
]

DEFAULT_CONFIG = TCDConfig()
#: Loops with at most this many scanned steps are fully unrolled (longer ones stay a rolled scan,
#: to bound compile time).
FULL_UNROLL_MAX_STEPS = 16


def checked_config(config: Any) -> TCDConfig:
    """``config``, default ``TCDConfig()``; ValueError for anything but a TCDConfig."""
    config = DEFAULT_CONFIG if config is None else config
    if not isinstance(config, TCDConfig):
        raise ValueError(f"`config` must be a tcd_core.TCDConfig, got {type(config).__name__}")
    return config


_Rows = TypeVar("_Rows", bound=tuple[Any, ...])


def loop_inputs(latents: Any, plan: _Rows) -> tuple[jax.Array, _Rows, int]:
    """(latents, plan, batch size) for a compiled loop: the latents checked (floating point),
    the plan's shape checked against them, and its rows in the loop's dtypes (int32 timesteps
    for the VP path; float32 model times and σ for a flow plan, one with ``sigmas``)."""
    latents = jnp.asarray(latents) if not isinstance(latents, jax.Array) else latents
    if not jnp.issubdtype(latents.dtype, jnp.floating):
        raise ValueError(f"`latents` must be a floating-point array, got {latents.dtype}")
    timesteps = plan[0]
    batch = latents.shape[0] if latents.ndim else 1
    if np.ndim(timesteps) == 2 and timesteps.shape[1] != batch:
        raise ValueError(f"per-sample plan has {timesteps.shape[1]} columns for a batch of {batch}")
    if np.ndim(timesteps) not in (1, 2):
        raise ValueError(f"plan arrays must be (steps,) or (steps, B), got {np.shape(timesteps)}")
    # Host (NumPy) plans and tables go to the jitted loop as they are: its dispatch transfers
    # them, which costs less than converting each with jnp.asarray first.
    xp = np if all(isinstance(a, np.ndarray) for a in plan[:3]) else jnp
    sigmas = getattr(plan, "sigmas", None)
    if sigmas is None:
        rows = cast(Any, plan)._replace(
            timesteps=xp.asarray(plan[0], dtype=np.int32),
            next_timesteps=xp.asarray(plan[1], dtype=np.int32),
            final=xp.asarray(plan[2], dtype=bool),
            begin_index=xp.asarray(plan[3], dtype=np.int32),
        )
        return latents, rows, batch
    rows = cast(Any, plan)._replace(
        timesteps=xp.asarray(plan[0], dtype=np.float32),
        next_timesteps=xp.asarray(plan[1], dtype=np.float32),
        final=xp.asarray(plan[2], dtype=bool),
        begin_index=xp.asarray(plan[3], dtype=np.int32),
        sigmas=xp.asarray(sigmas, dtype=np.float32),
        next_sigmas=xp.asarray(cast(Any, plan).next_sigmas, dtype=np.float32),
    )
    return latents, rows, batch


#: One step of a compiled loop: ``step(x, i, *row) -> x`` for the step index i (the reference's,
#: counting from the plan's begin index) and the plan's row: (t, p, final) for the VP path's
#: default ``fields``, (t, σ, σ_next, final) for a flow plan's.
RowStep = Callable[..., jax.Array]

#: The plan fields of a VP row, and of a flow row (the model's time, then the step's σ).
VP_FIELDS = ("timesteps", "next_timesteps", "final")
FLOW_FIELDS = ("timesteps", "sigmas", "next_sigmas", "final")


def scan_rows(
    step: RowStep,
    latents: jax.Array,
    plan: Any,
    *,
    scan_last: bool,
    fields: tuple[str, ...] = VP_FIELDS,
) -> jax.Array:
    """x after ``step`` over the rows of a sampling plan in one ``lax.scan``, with
    i = ``plan.begin_index`` + the row number and the row's ``fields`` of the plan: every row
    when ``scan_last``, else every row but the last (the caller runs that one).

    Few-step loops (2-8 steps) are fully unrolled (at most ``FULL_UNROLL_MAX_STEPS`` scanned
    rows): XLA then schedules the steps' draws and updates together, which measured 1.2x
    (threefry) to 2.5x (rbg) faster per step on CPU.
    """
    steps = plan.timesteps.shape[0]
    index = plan.begin_index + jnp.arange(steps, dtype=jnp.int32)
    rows = (index, *(getattr(plan, name) for name in fields))
    if not scan_last:
        rows = tuple(r[:-1] for r in rows)

    def body(x: jax.Array, row: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
        i, *values = row
        return step(x, i, *values), None

    scanned = steps if scan_last else steps - 1
    x, _ = jax.lax.scan(body, latents, rows, unroll=scanned <= FULL_UNROLL_MAX_STEPS)
    return x


def run(
    algorithm: Algorithm,
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    latents: jax.Array,
    key: jax.Array,
    plan: Any,
    eta: Any,
    one_minus_eta: Any,
    config: TCDConfig,
) -> jax.Array:
    """The whole loop of ``algorithm`` over a checked sampling plan (``eta`` and
    ``one_minus_eta`` None for LCM), compiled once per (algorithm, model, step config, path,
    shapes): on the VP path over ``config``'s ᾱ table, or on the flow path for a plan with
    ``sigmas``."""
    if getattr(plan, "sigmas", None) is None:
        path = as_path(host_schedule(config).alphas_cumprod)
    else:
        path = FLOW
    return _loop(
        algorithm,
        model_fn,
        step_config(config, algorithm),
        latents,
        key,
        plan,
        eta,
        one_minus_eta,
        path,
    )


@functools.partial(jax.jit, static_argnames=("algorithm", "model_fn", "config"))
def _loop(
    algorithm: Algorithm,
    model_fn: Callable[[jax.Array, jax.Array], jax.Array],
    config: TCDConfig,
    latents: jax.Array,
    key: jax.Array,
    plan: Any,
    eta: jax.Array | None,
    one_minus_eta: jax.Array | None,
    path: Any,
) -> jax.Array:
    """:func:`run`'s loop, traced. A row's model receives its time t; its step runs on ``path``
    from t to p (VP plans) or, for a flow plan (one with ``sigmas``, run by TCD only), from σ
    to σ_next on :data:`tcd_core.FLOW`."""
    has_eta = algorithm.has_eta

    def step(
        x: jax.Array,
        i: jax.Array,
        t: jax.Array,
        start: jax.Array,
        end: jax.Array,
        final: jax.Array,
    ) -> jax.Array:
        """x after a scanned row: the model at t, then the keyed step from ``start`` to ``end``
        (t to p, or σ to σ_next)."""
        model_output = model_fn(x, t)
        # No batch element draws (η = 0, or a final row): the step runs without the normal draw.
        draw = algorithm.draws(eta, final)
        out = keyed_step(
            algorithm, model_output, start, x, end, path, one_minus_eta,
            None if has_eta else final, draw, key, i, config,
        )  # fmt: skip
        return out.next_sample

    def last_step(x: jax.Array, t: jax.Array, start: jax.Array, end: jax.Array) -> jax.Array:
        """x after TCD's last row, run after the scan without drawing. That row ends at p = 0
        (VP) or at the terminal σ = 0 (flow), hence s = 0 / σ_s = 0 and a transition that is
        exactly the identity: its noise term is exactly zero whatever is drawn (the reference
        draws there), and the draw would cost as much as the rest of the step."""
        last = jax_step(
            algorithm, model_fn(x, t), start, x, end, path, one_minus_eta, None, None, None,
            None, config,
        )  # fmt: skip
        return last.next_sample

    if getattr(plan, "sigmas", None) is not None:
        x = scan_rows(step, latents, plan, scan_last=False, fields=FLOW_FIELDS)
        return last_step(x, plan.timesteps[-1], plan.sigmas[-1], plan.next_sigmas[-1])

    def vp_step(
        x: jax.Array, i: jax.Array, t: jax.Array, p: jax.Array, final: jax.Array
    ) -> jax.Array:
        # a VP row's step starts at the model's own time t
        return step(x, i, t, t, p, final)

    if algorithm.next_after_last != "zero":
        # LCM: the last row of a plan is not always noise-free (a custom plan trimmed by strength
        # renoises there), so every row runs in the scan; a final row skips its draw in the cond.
        return scan_rows(vp_step, latents, plan, scan_last=True)
    x = scan_rows(vp_step, latents, plan, scan_last=False)
    t = plan.timesteps[-1]
    return last_step(x, t, t, plan.next_timesteps[-1])
