"""What is measured: latent shapes, step counts, η, and the shared inputs of every contender.

Every contender of a cell gets the same initial latents, the same fixed model output (the model
stub returns it at every step, so only the sampler is timed) and the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcd_core import TCDConfig, alphas_cumprod, tcd_timesteps

__all__ = [
    "FULL_GRID",
    "QUICK_GRID",
    "SEED",
    "Inputs",
    "Workload",
    "floor_coefficients",
    "grid",
    "make_inputs",
    "shape_label",
]

SEED = 2024
SHAPES = ((1, 4, 8, 8), (1, 4, 64, 64), (1, 4, 128, 128), (4, 4, 128, 128))
STEPS = (1, 4, 8)
ETAS = (0.3, 0.0)


def shape_label(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class Workload:
    """One cell of the grid: a latent shape, a number of steps and η."""

    shape: tuple[int, ...]
    steps: int
    eta: float

    @property
    def label(self) -> str:
        return f"{shape_label(self.shape)} {self.steps} steps eta={self.eta:g}"

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of one float32 latent of this shape."""
        return 4 * self.elements

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "shape_label": shape_label(self.shape),
            "steps": self.steps,
            "eta": self.eta,
            "elements": self.elements,
        }


def grid(shapes=SHAPES, steps=STEPS, etas=ETAS) -> list[Workload]:
    """The cartesian product, ordered shape-major (all cells of one shape share compiled code)."""
    return [Workload(tuple(s), n, e) for s in shapes for n in steps for e in etas]


FULL_GRID = grid()
# --quick: the two cheapest shapes, the 4-step loop the issues quote, both η. Still exercises every
# contender, both compile paths and every output (JSON, table, plot, docs page).
QUICK_GRID = grid(shapes=SHAPES[:2], steps=(4,))


@dataclass(frozen=True)
class Inputs:
    """Host float32 inputs shared by all contenders of one workload."""

    workload: Workload
    config: TCDConfig
    latents: np.ndarray
    model_output: np.ndarray
    seed: int


def make_inputs(workload: Workload, config: TCDConfig | None = None, seed: int = SEED) -> Inputs:
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal(workload.shape, dtype=np.float32)
    # A plausible ε̂: correlated with the latents, not equal to them.
    model_output = (0.8 * latents + 0.6 * rng.standard_normal(workload.shape)).astype(np.float32)
    return Inputs(workload, config or TCDConfig(), latents, model_output, seed)


def floor_coefficients(
    config: TCDConfig, steps: int, eta: float
) -> tuple[list[float], list[float], list[float], list[bool]]:
    """Per-step (a, b, c, draws) with x_p = a·x + b·ε̂ + c·z (c = 0 where no noise is drawn).

    The TCD step for ε-prediction is linear in (x, ε̂, z); folding its coefficients (in float64,
    from the float32 ᾱ table) leaves the least work any sampler must do per step: one fused
    three-term update (two-term where the reference draws no noise). The floors use these, so they
    compute the same trajectory as the reference up to rounding (checked in the smoke test).
    """
    if config.prediction_type != "epsilon":
        raise ValueError("floor coefficients are derived for epsilon prediction only")
    ac = alphas_cumprod(config).astype(np.float64)
    plan = tcd_timesteps(config, steps)
    s_all = plan.intermediate_timesteps(eta)
    draws = plan.noise_mask(eta)
    a, b, c = [], [], []
    for t, p, s, d in zip(plan.timesteps, plan.prev_timesteps, s_all, draws):
        at, as_, ap = ac[int(t)], ac[int(s)], ac[int(p)]
        big_a = math.sqrt(as_) / math.sqrt(at)
        big_b = math.sqrt(1 - as_) - math.sqrt(as_) * math.sqrt(1 - at) / math.sqrt(at)
        r = ap / as_ if d else 1.0
        a.append(math.sqrt(r) * big_a)
        b.append(math.sqrt(r) * big_b)
        c.append(math.sqrt(1 - r))
    return a, b, c, [bool(d) for d in draws]
