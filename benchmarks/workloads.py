"""What is measured: latent shapes, step counts, η, and the shared inputs of every contender.

Every contender of a cell gets the same initial latents, the same fixed model output (the model
stub returns it at every step, so only the sampler is timed) and the same seed.

Two grids: the VP grid (``FULL_GRID``, ``QUICK_GRID``: TCD on ε-prediction latents of SD shape)
and the flow-matching grid (``FLOW_GRID``, ``QUICK_FLOW_GRID``: FLUX-shaped packed latents,
tokens × channels, in float32 and bfloat16), whose scheduler config and ``mu`` are FLUX.1-dev's
(``FLUX_DEV_SCHEDULER``, ``flux_mu``, ``flux_sigmas``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcd_core import TCDConfig, alphas_cumprod, tcd_timesteps

__all__ = [
    "FLOW_GRID",
    "FLUX_DEV_SCHEDULER",
    "FULL_GRID",
    "QUICK_FLOW_GRID",
    "QUICK_GRID",
    "SEED",
    "Inputs",
    "Workload",
    "floor_coefficients",
    "flux_mu",
    "flux_sigmas",
    "grid",
    "make_inputs",
    "shape_label",
]

SEED = 2024
SHAPES = ((1, 4, 8, 8), (1, 4, 64, 64), (1, 4, 128, 128), (4, 4, 128, 128))
STEPS = (1, 4, 8)
ETAS = (0.3, 0.0)
DTYPES = ("float32",)
_ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}


def shape_label(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class Workload:
    """One cell of the grid: a latent shape, a number of steps, η and the latents' dtype (the
    shared inputs are float32; a contender casts them to ``dtype``)."""

    shape: tuple[int, ...]
    steps: int
    eta: float
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in _ITEMSIZE:
            raise ValueError(f"dtype must be one of {sorted(_ITEMSIZE)}, got {self.dtype!r}")

    @property
    def label(self) -> str:
        dtype = "" if self.dtype == "float32" else f" {self.dtype}"
        return f"{shape_label(self.shape)}{dtype} {self.steps} steps eta={self.eta:g}"

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of one latent of this shape and dtype."""
        return _ITEMSIZE[self.dtype] * self.elements

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "shape_label": shape_label(self.shape),
            "steps": self.steps,
            "eta": self.eta,
            "elements": self.elements,
            "dtype": self.dtype,
        }


def grid(shapes=SHAPES, steps=STEPS, etas=ETAS, dtypes=DTYPES) -> list[Workload]:
    """The cartesian product, ordered shape-major (all cells of one shape share compiled code),
    then by dtype, steps and η."""
    return [
        Workload(tuple(s), n, e, d) for s in shapes for d in dtypes for n in steps for e in etas
    ]


FULL_GRID = grid()
# --quick: the two cheapest shapes, the 4-step loop the issues quote, both η. Still exercises every
# contender, both compile paths and every output (JSON, table, plot, docs page).
QUICK_GRID = grid(shapes=SHAPES[:2], steps=(4,))

# The flow-matching grid (issue 18): FLUX's packed latents are (batch, tokens, 64), 4096 tokens
# for a 1024² image (128² VAE latents in 2×2 patches of 16 channels); 256 tokens (a 256² image)
# is where per-step overhead dominates. η = 0 is the Euler step, η = 1 the stochastic Euler step.
FLOW_SHAPES = ((1, 256, 64), (1, 4096, 64))
FLOW_STEPS = (4, 8)
FLOW_ETAS = (0.0, 0.3, 1.0)
FLOW_DTYPES = ("float32", "bfloat16")
FLOW_GRID = grid(shapes=FLOW_SHAPES, steps=FLOW_STEPS, etas=FLOW_ETAS, dtypes=FLOW_DTYPES)
# --quick: the small latent, 4 steps, every η (each flow contender runs in at least one cell).
QUICK_FLOW_GRID = grid(shapes=FLOW_SHAPES[:1], steps=(4,), etas=FLOW_ETAS, dtypes=("float32",))

#: black-forest-labs/FLUX.1-dev's scheduler config (FlowMatchEulerDiscreteScheduler): shift 3.0
#: and dynamic shifting, whose ``mu`` FluxPipeline computes from the image's token count.
FLUX_DEV_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}


def flux_mu(image_seq_len: int, config: dict[str, Any] = FLUX_DEV_SCHEDULER) -> float:
    """The ``mu`` FluxPipeline passes to ``set_timesteps``: the line through (base_image_seq_len,
    base_shift) and (max_image_seq_len, max_shift) at the latents' token count (1.15 at 4096
    tokens, 0.5 at 256), in FluxPipeline's arithmetic."""
    m = (config["max_shift"] - config["base_shift"]) / (
        config["max_image_seq_len"] - config["base_image_seq_len"]
    )
    b = config["base_shift"] - m * config["base_image_seq_len"]
    return image_seq_len * m + b


def flux_sigmas(steps: int) -> np.ndarray:
    """The ``sigmas`` FluxPipeline passes to ``set_timesteps``: linspace(1, 1/steps, steps)."""
    return np.linspace(1.0, 1 / steps, steps)


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
