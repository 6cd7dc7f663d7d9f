"""The contenders of the CPU benchmark: each turns a workload's shared inputs into one callable
that runs a whole generation loop (timestep plan + every step, noise drawn from a freshly seeded
generator, a model stub that returns a fixed tensor) and returns the final latents.

Contenders whose package is missing or incomplete are reported as unavailable, with the reason,
instead of stopping the run (the adapters are developed alongside this harness).

Modules, one way: ``base`` (``Contender``, ``Loop``, ``Unavailable``), then one per ecosystem:
``torch_loops`` (diffusers' schedulers, our adapter, the core in torch eager and compiled, the
torch floors), ``numpy_loops``, ``jax_loops`` (the JAX floors, ``tcd_jax.sample``) and
``kdiffusion_loops`` (``tcd_kdiffusion.sample_tcd``, on torch), and ``flow_loops`` (the
flow-matching grid's contenders: diffusers' FlowMatchEulerDiscreteScheduler, plain and stochastic,
and our FlowMatchTCDScheduler, on torch); this module lists them all.
"""

from __future__ import annotations

from .base import Contender, Loop, Unavailable
from .flow_loops import flow_contenders, flow_reference
from .jax_loops import FloorJax, TcdJaxLoop
from .kdiffusion_loops import KDiffusionSampleTCD
from .numpy_loops import CoreNumpy, FloorNumpy
from .torch_loops import (
    CoreTorchCompile,
    CoreTorchEager,
    DiffusersScheduler,
    FloorTorch,
    FloorTorchCompile,
)

__all__ = [
    "Contender",
    "Loop",
    "Unavailable",
    "cpu_contenders",
    "flow_contenders",
    "flow_reference",
]


def cpu_contenders(include_jax: bool = True) -> list[Contender]:
    """All CPU contenders, the reference first (ratios are taken against it)."""
    out: list[Contender] = [
        DiffusersScheduler(
            "reference",
            "diffusers TCDScheduler (reference)",
            "diffusers",
            "diffusers.TCDScheduler: set_timesteps + step(eta, generator) as a pipeline calls it",
        ),
        DiffusersScheduler(
            "adapter",
            "tcd_diffusers TCDScheduler",
            "tcd_diffusers",
            "tcd_diffusers.TCDScheduler (our drop-in adapter), driven exactly like the reference",
        ),
        # issue 12: multistep consistency sampling (LCM), against its own reference
        DiffusersScheduler(
            "reference-lcm",
            "diffusers LCMScheduler (LCM reference)",
            "diffusers",
            "diffusers.LCMScheduler: set_timesteps + step(generator) as a pipeline calls it "
            "(no η: LCM draws noise at every step but the last)",
            cls_name="LCMScheduler",
            compare_with=None,
        ),
        DiffusersScheduler(
            "adapter-lcm",
            "tcd_diffusers LCMScheduler",
            "tcd_diffusers",
            "tcd_diffusers.LCMScheduler (our drop-in adapter), driven exactly like diffusers' "
            "LCMScheduler",
            cls_name="LCMScheduler",
            compare_with="reference-lcm",
        ),
        CoreTorchEager(),
        CoreTorchCompile(),
        CoreNumpy(),
        FloorTorch(),
        FloorTorchCompile(),
        FloorNumpy(),
        KDiffusionSampleTCD(),  # issue 11
    ]
    if include_jax:
        out += [
            TcdJaxLoop("threefry", jit=False),
            TcdJaxLoop("threefry", jit=True),
            TcdJaxLoop("threefry", jit=True, traced_eta=True),  # issue 10: η = 0 skips the draw
            TcdJaxLoop("rbg", jit=True),
            FloorJax("threefry"),
            FloorJax("rbg"),
            FloorJax("threefry", every_step=True),
        ]
    return out
