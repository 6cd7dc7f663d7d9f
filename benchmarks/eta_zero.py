"""η = 0 in a compiled loop whose η is traced: what skipping the noise draw costs, by strategy.

``python -m benchmarks.eta_zero`` (``--quick`` for a smoke run, ``--json PATH`` to keep the
numbers). Issue 10, item 5: ``tcd_jax.sample`` inside the caller's ``jax.jit`` with η a traced
argument cannot know at compile time whether any step draws noise. Four ways to run such a loop
are timed side by side, per step of a 4-step loop, at η = 0 and η = 0.3, next to the floor and to
the loop with η known at compile time:

* ``floor``: what the main benchmark calls the floor. It knows η on the host, so it draws only
  where the reference draws and runs x ← a·x + b·model(x) + c·z with coefficients folded in
  float64 (no decision on the device at all).
* ``static-eta``: ``tcd_jax.sample`` inside ``jax.jit`` with η a Python float closed over (the
  main benchmark's ``tcd_jax loop (threefry, jit)``): the cond's predicate is a constant, so XLA
  removes it. One compilation per η, like the floor.
* ``always-draw``: draw a normal at every step but the last and let the exact zero coefficient
  at η = 0 cancel it (what ``tcd_jax.sample`` did before issue 10).
* ``step-cond``: ``tcd_jax.sample`` as shipped: each step's noise draw runs in a ``lax.cond``
  whose second branch, taken when no batch element draws, gives zeros without a draw. The model
  and the update stay outside.
* ``loop-cond``: one ``lax.cond`` on any(η > 0) around two copies of the whole loop, one without
  any draw. The model is traced, compiled and stored twice.

Each strategy runs with two stand-in denoisers:

* ``constant``: the model returns a fixed ε̂, as in ``python -m benchmarks``. Nothing forces the
  latents to memory between steps, so XLA may fuse a draw-free loop into a single pass.
* ``conv``: three 3×3 convolutions (4 → 32 → 32 → 4 channels, SiLU), the smallest thing shaped
  like a real denoiser: its output, like every real model's last layer, is materialised.

``python -m benchmarks`` runs this study too and gives the JAX loop's verdicts from it
(``verdicts``): the tcd_jax loop rows (``static-eta`` and ``step-cond``) with the ``conv``
stand-in must be ≤ ``TARGET`` × the floor of their cell at every η; the ``constant`` stand-in's
rows are information only.

All strategies compute the same latents (checked against ``step-cond``: |Δ| ≤ 1e-5·(1+max|x|)).
Times are wall clock around ``block_until_ready`` of the whole compiled loop, the minimum over
interleaved repeats, divided by the step count; compile seconds are ``lower(...).compile()``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

SHAPES = ((1, 4, 64, 64), (1, 4, 128, 128))
QUICK_SHAPES = ((1, 4, 8, 8),)
MODELS = ("constant", "conv")
STRATEGIES = ("floor", "static-eta", "always-draw", "step-cond", "loop-cond")
# Built per host η (a fresh jit each); the others take η as a traced argument.
HOST_ETA = ("floor", "static-eta")
# The JAX loop's target: its rows (η static, η traced) ≤ TARGET × the floor of their cell, at
# every η, with a stand-in whose output depends on x. The constant stand-in lets XLA fuse the
# draw-free floor's steps into one pass, which no real loop can do: its rows get no verdict.
TARGET = 1.3
TARGET_MODEL = "conv"
LOOPS = {
    "static-eta": "tcd_jax loop (threefry, jit)",
    "step-cond": "tcd_jax loop (threefry, jit, traced η)",
}
ETAS = (0.0, 0.3)
STEPS = 4
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _models(jax: Any, shape: tuple[int, ...]) -> dict[str, Callable[[Any, Any], Any]]:
    """The two stand-ins, ``model(x, eps) -> ε̂``; ``eps`` is the fixed output / the offset."""
    jnp = jax.numpy
    channels = shape[1]
    keys = jax.random.split(jax.random.key(7), 3)
    widths = ((32, channels), (32, 32), (channels, 32))
    weights = [
        0.05 * jax.random.normal(k, (o, i, 3, 3), jnp.float32) for k, (o, i) in zip(keys, widths)
    ]

    def constant(x: Any, eps: Any) -> Any:
        return eps

    def conv(x: Any, eps: Any) -> Any:
        h = x
        for n, w in enumerate(weights):
            h = jax.lax.conv(h, w.astype(x.dtype), (1, 1), "SAME")
            h = jax.nn.silu(h) if n < len(weights) - 1 else h
        return eps + h

    return {"constant": constant, "conv": conv}


def _strategies(jax: Any, tcd_jax: Any, model: Callable[[Any, Any], Any]) -> tuple[Any, Any]:
    """({name: ``make(η)`` → a jitted ``fn(x, key, eps)``} for the strategies built per host η
    (``HOST_ETA``), {name: jitted ``fn(x, key, eps, η)``} for those whose η is traced)."""
    import tcd_core

    from .workloads import floor_coefficients

    jnp = jax.numpy
    config = tcd_core.TCDConfig()
    plan = tcd_core.tcd_timesteps(config, STEPS)
    rows = list(zip(plan.timesteps.tolist(), plan.prev_timesteps.tolist()))
    table = tcd_core.alphas_cumprod(config)  # float32, host

    def step(x: Any, eps: Any, t: int, p: int, ac: Any, one_minus_eta: Any, noise: Any) -> Any:
        s = tcd_core.intermediate_timestep(jnp.int32(p), one_minus_eta=one_minus_eta)
        coefficients = tcd_core.step_coefficients(ac, jnp.int32(t), jnp.int32(p), intermediate=s)
        return tcd_core.tcd_update(coefficients, model(x, eps), x, noise, config).prev_sample

    def loop(x: Any, key: Any, eps: Any, eta: Any, draw: bool) -> Any:
        ac, one_minus_eta = jnp.asarray(table), 1.0 - eta
        for i, (t, p) in enumerate(rows):
            last = i == len(rows) - 1  # p = 0: the ratio is exactly 1, no draw anywhere
            noise = None if last or not draw else tcd_jax.step_noise(key, i, x.shape, x.dtype)
            x = step(x, eps, t, p, ac, one_minus_eta, noise)
        return x

    @jax.jit
    def always_draw(x: Any, key: Any, eps: Any, eta: Any) -> Any:
        return loop(x, key, eps, eta, draw=True)

    @jax.jit
    def step_cond(x: Any, key: Any, eps: Any, eta: Any) -> Any:
        return tcd_jax.sample(lambda x, t: model(x, eps), x, key, plan, eta, config=config)

    @jax.jit
    def loop_cond(x: Any, key: Any, eps: Any, eta: Any) -> Any:
        return jax.lax.cond(
            eta > 0,
            lambda x: loop(x, key, eps, eta, draw=True),
            lambda x: loop(x, key, eps, eta, draw=False),
            x,
        )

    def floor(eta: float) -> Any:
        """The floor for a host η: a fresh jit (its draws and coefficients are constants)."""
        a, b, c, draws = floor_coefficients(config, STEPS, eta)

        @jax.jit
        def run(x: Any, key: Any, eps: Any) -> Any:
            for i in range(STEPS):
                y = a[i] * x + b[i] * model(x, eps)
                if draws[i]:
                    y = y + c[i] * tcd_jax.step_noise(key, i, x.shape, x.dtype)
                x = y
            return x

        return run

    def static_eta(eta: float) -> Any:
        """``tcd_jax.sample`` with η a Python float: a fresh jit per η, no cond left."""

        @jax.jit
        def run(x: Any, key: Any, eps: Any) -> Any:
            return tcd_jax.sample(lambda x, t: model(x, eps), x, key, plan, eta, config=config)

        return run

    traced = {"always-draw": always_draw, "step-cond": step_cond, "loop-cond": loop_cond}
    return {"floor": floor, "static-eta": static_eta}, traced


def run(
    shapes: tuple[tuple[int, ...], ...] = SHAPES, repeats: int = 15, log: Callable = print
) -> dict[str, Any]:
    """Time every (model, shape, η, strategy); returns the rows and the machine facts."""
    import jax
    import numpy as np

    import tcd_jax

    jnp = jax.numpy
    rows: list[dict[str, Any]] = []
    for shape in shapes:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        eps = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        key = tcd_jax.prng_key(1)
        for model_name, model in _models(jax, shape).items():
            host_eta, traced = _strategies(jax, tcd_jax, model)
            compile_s = {}
            for name, fn in traced.items():  # one compilation serves every η
                t0 = time.perf_counter()
                fn.lower(x, key, eps, jnp.float32(0)).compile()
                compile_s[name] = time.perf_counter() - t0
            for eta_value in ETAS:
                eta = jnp.float32(eta_value)
                calls: dict[str, Callable[[], Any]] = {}
                for name, make in host_eta.items():
                    fn = make(eta_value)
                    t0 = time.perf_counter()
                    fn.lower(x, key, eps).compile()
                    compile_s[name] = time.perf_counter() - t0
                    calls[name] = functools.partial(fn, x, key, eps)
                for name, fn in traced.items():
                    calls[name] = functools.partial(fn, x, key, eps, eta)
                outputs = {name: np.asarray(call()) for name, call in calls.items()}
                best = {name: float("inf") for name in calls}
                names = list(calls)
                for r in range(repeats):  # interleaved, rotating, so drift hits all alike
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        t0 = time.perf_counter()
                        jax.block_until_ready(calls[name]())
                        best[name] = min(best[name], time.perf_counter() - t0)
                reference = outputs["step-cond"]
                scale = 1.0 + float(np.abs(reference).max())
                for name in STRATEGIES:
                    delta = float(np.abs(outputs[name] - reference).max())
                    row = {
                        "model": model_name,
                        "shape": list(shape),
                        "eta": eta_value,
                        "strategy": name,
                        "us_per_step": 1e6 * best[name] / STEPS,
                        "over_floor": best[name] / best["floor"],
                        "compile_s": compile_s[name],
                        "max_abs_diff": delta,
                        "agrees": delta <= 1e-5 * scale,
                    }
                    rows.append(row)
                    log(_line(row))
    device = jax.devices()[0]
    return {
        "device": f"{device.platform} {device.device_kind}",
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "steps": STEPS,
        "repeats": repeats,
        "rows": rows,
    }


def _line(row: dict[str, Any]) -> str:
    shape = "x".join(map(str, row["shape"]))
    return (
        f"{row['model']:>9} {shape:>12} η={row['eta']:<4} {row['strategy']:>12} "
        f"{row['us_per_step']:>10.1f} µs/step {row['over_floor']:>6.2f}× floor "
        f"compile {row['compile_s']:.2f} s{'' if row['agrees'] else '  DISAGREES'}"
    )


def _shape(row: dict[str, Any]) -> str:
    return "×".join(map(str, row["shape"]))


def markdown(result: dict[str, Any]) -> str:
    """The results as one Markdown table: µs per step (× floor), compile seconds; "—" for a
    strategy the run did not have (runs recorded before ``static-eta`` existed)."""
    lines = [
        "| stand-in | latents | η | floor | static η | always-draw | step-cond (shipped) "
        "| loop-cond |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    cells: dict[tuple, dict[str, dict[str, Any]]] = {}
    for row in result["rows"]:
        key = (row["model"], _shape(row), row["eta"])
        cells.setdefault(key, {})[row["strategy"]] = row
    for (model, shape, eta), by in cells.items():
        values = [
            f"{by[s]['us_per_step']:.1f} ({by[s]['over_floor']:.2f}×; {by[s]['compile_s']:.2f} s)"
            if s in by
            else "—"
            for s in STRATEGIES
        ]
        lines.append(f"| {model} | {shape} | {eta:g} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def verdicts(result: dict[str, Any], target: float = TARGET) -> list[dict[str, Any]]:
    """The JAX loop's verdicts: one record per tcd_jax loop row (``LOOPS``) of every (stand-in,
    latents, η) cell, ``TARGET_MODEL`` cells first.

    ``ratio`` is the row's µs per step over that of the floor row of the same cell (None when
    the cell has no floor). With ``TARGET_MODEL`` the row ``met`` the target when ratio ≤
    ``target`` and its latents agree with the shipped loop's; other stand-ins get no verdict
    (``target`` and ``met`` None: information only)."""
    floors = {
        (r["model"], tuple(r["shape"]), r["eta"]): r
        for r in result["rows"]
        if r["strategy"] == "floor"
    }
    out = []
    for row in result["rows"]:
        if row["strategy"] not in LOOPS:
            continue
        floor = floors.get((row["model"], tuple(row["shape"]), row["eta"]))
        ratio = row["us_per_step"] / floor["us_per_step"] if floor else None
        judged = row["model"] == TARGET_MODEL
        met = None
        if judged and ratio is not None:
            met = ratio <= target and bool(row.get("agrees", True))
        out.append(
            {
                "model": row["model"],
                "shape": row["shape"],
                "eta": row["eta"],
                "strategy": row["strategy"],
                "loop": LOOPS[row["strategy"]],
                "us_per_step": row["us_per_step"],
                "floor_us_per_step": floor["us_per_step"] if floor else None,
                "ratio": ratio,
                "target": target if judged else None,
                "met": met,
            }
        )
    out.sort(key=lambda v: v["model"] != TARGET_MODEL)  # stable: the run's order otherwise
    return out


def verdicts_markdown(result: dict[str, Any], target: float = TARGET) -> str:
    """``verdicts`` as a Markdown table."""
    lines = [
        "| stand-in | latents | η | loop | µs per step | floor µs per step | × floor | target "
        "| result |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for v in verdicts(result, target):
        if v["target"] is None:
            model, goal, verdict = f"{v['model']} (information only)", "—", "no verdict"
        else:
            model, goal = v["model"], f"≤ {v['target']:.2f}×"
            verdict = "not measured" if v["met"] is None else "met" if v["met"] else "**missed**"
        floor_us = "—" if v["floor_us_per_step"] is None else f"{v['floor_us_per_step']:.1f}"
        ratio = "—" if v["ratio"] is None else f"{v['ratio']:.2f}×"
        lines.append(
            f"| {model} | {_shape(v)} | {v['eta']:g} | {v['loop']} | {v['us_per_step']:.1f} "
            f"| {floor_us} | {ratio} | {goal} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1×4×8×8 only, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    result = run(
        QUICK_SHAPES if args.quick else SHAPES,
        repeats=args.repeats or (3 if args.quick else 15),
    )
    print(markdown(result))
    print(verdicts_markdown(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    # One XLA thread, as in `python -m benchmarks` (XLA reads its flags when jax is imported).
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_XLA}".strip()
    main()
