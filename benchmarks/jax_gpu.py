"""Per-step time of tcd_jax's compiled TCD loop on whatever ``jax.devices()`` offers.

Standalone: ``python benchmarks/jax_gpu.py`` (GPU/TPU when JAX sees one, else CPU). For each
latent shape (1×4×128×128 and 4×4×128×128, SDXL-sized) and PRNG implementation (threefry2x32,
rbg) it times, per step of a 4-step loop at η = 0.3:

* ``loop``  — ``tcd_jax.sample`` (one compiled loop), model output fixed;
* ``floor`` — the least any TCD loop must do: one normal draw with the same PRNG at every step
  where the reference draws (all but the last), plus one fused update x ← a·x + b·ε + c·z per
  step, steps unrolled;
* ``draw``  — those normal draws alone (summed, so that no element can be skipped).

Times are wall-clock around ``block_until_ready`` of the whole compiled loop divided by the step
count (on an accelerator that is device time plus one dispatch per loop), the minimum over
``--repeats`` interleaved runs. Prints a table and, with ``--json PATH``, writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import tcd_jax
from tcd_core import TCDConfig

SHAPES = ((1, 4, 128, 128), (4, 4, 128, 128))
IMPLS = ("threefry2x32", "rbg")


def _loop(plan: tcd_jax.SamplingPlan, config: TCDConfig, eta: float) -> Callable[..., Any]:
    @jax.jit
    def run(x, key, eps):
        return tcd_jax.sample(lambda x, t: eps, x, key, plan, eta, config=config)

    return run


def _floor(steps: int) -> Callable[..., Any]:
    @jax.jit
    def run(x, key, eps, coefficients):
        a, b, c = coefficients
        for i in range(steps):
            x = a[i] * x + b[i] * eps
            if i < steps - 1:  # the reference draws no noise at the last step
                x = x + c[i] * jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        return x

    return run


def _draw(steps: int) -> Callable[..., Any]:
    @jax.jit
    def run(x, key):
        total = jnp.zeros((), x.dtype)
        for i in range(steps - 1):  # every element must be drawn (a slice would not)
            total = total + jnp.sum(jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype))
        return total

    return run


def _time(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # compile and warm up
        jax.block_until_ready(fn())
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):  # interleaved, so load changes hit every contender alike
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--eta", type=float, default=0.3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    config = TCDConfig()
    plan = tcd_jax.sampling_plan(config, args.steps)
    device = jax.devices()[0]
    print(
        f"device: {device.platform} {device.device_kind} ({jax.device_count()} devices), "
        f"jax {jax.__version__}, {args.steps} steps, eta={args.eta}"
    )
    print(
        f"{'shape':>16} {'prng':>13} {'loop µs/step':>13} {'floor':>9} {'draw':>9} {'loop/floor':>10}"
    )
    rows = []
    ac = np.asarray(tcd_jax.jax_schedule(config).alphas_cumprod)
    # Stand-in coefficients of TCD's size (their values do not change the work done).
    a = np.sqrt(ac[plan.timesteps]).astype(np.float32)
    coefficients = tuple(jnp.asarray(v) for v in (a, 0.1 * a, np.sqrt(1 - a * a)))
    for shape in SHAPES:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        eps = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        for impl in IMPLS:
            key = tcd_jax.prng_key(0, impl=impl)
            loop, floor, draw = _loop(plan, config, args.eta), _floor(args.steps), _draw(args.steps)
            best = _time(
                {
                    "loop": lambda: loop(x, key, eps),
                    "floor": lambda: floor(x, key, eps, coefficients),
                    "draw": lambda: draw(x, key),
                },
                args.repeats,
            )
            us = {k: 1e6 * v / args.steps for k, v in best.items()}
            ratio = us["loop"] / us["floor"]
            rows.append(
                {
                    "shape": list(shape),
                    "prng": impl,
                    **{f"{k}_us_per_step": v for k, v in us.items()},
                    "loop_over_floor": ratio,
                }
            )
            print(
                f"{'x'.join(map(str, shape)):>16} {impl:>13} {us['loop']:>13.1f} {us['floor']:>9.1f} "
                f"{us['draw']:>9.1f} {ratio:>10.2f}"
            )
    result = {
        "device": f"{device.platform} {device.device_kind}",
        "jax": jax.__version__,
        "steps": args.steps,
        "eta": args.eta,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
