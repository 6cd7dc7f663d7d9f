"""The flow-matching contenders (issue 18): diffusers' ``FlowMatchEulerDiscreteScheduler`` (the
Euler step, and its ``stochastic_sampling=True`` step) and our ``FlowMatchTCDScheduler``, each
driven as ``FluxPipeline`` drives its scheduler, with FLUX.1-dev's scheduler config.

The loop: ``set_timesteps(sigmas=linspace(1, 1/n, n), device=, mu=)`` (FluxPipeline's call, with
``mu`` from the latents' token count), ``set_begin_index(0)``, then one
``step(v, t, x, generator=g, return_dict=False)`` per timestep with a model stub that returns a
fixed velocity in the latents' dtype. FluxPipeline passes no generator to ``step``; here every
contender gets the same ``torch.Generator``, re-seeded per loop, so the noise is comparable (the
Euler step draws none).

"Equal work": ours at η = 0 does the Euler step's work and must give its latents bit for bit;
ours at η = 1 the stochastic Euler step's (one ``randn`` per step, the last included), bit for
bit; ours at 0.3 draws the same noise as the stochastic step and adds a little arithmetic, and is
timed against it without a check (its latents differ by design).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..timing import torch_peak_bytes
from ..workloads import FLUX_DEV_SCHEDULER, Inputs, Workload, flux_mu, flux_sigmas
from .base import Contender, Loop, Unavailable, import_or_unavailable
from .torch_loops import TorchContender

__all__ = [
    "FLOW_EULER",
    "FLOW_EULER_STOCHASTIC",
    "FLOW_TCD",
    "FlowEuler",
    "FlowTCD",
    "flow_contenders",
    "flow_reference",
]

FLOW_EULER, FLOW_EULER_STOCHASTIC, FLOW_TCD = "flow-euler", "flow-euler-stochastic", "flow-tcd"


def flow_reference(workload: Workload) -> str:
    """The reference a flow cell's ratios divide by: the Euler step at η = 0, the stochastic
    Euler step at any η > 0 (at η = 1 the same work as ours; at 0.3 the same draws)."""
    return FLOW_EULER if workload.eta == 0 else FLOW_EULER_STOCHASTIC


def _to_numpy(x: Any) -> np.ndarray:
    import torch

    # float32 holds every bfloat16 exactly: equal arrays here are equal latents.
    return x.detach().to(torch.float32).cpu().numpy()


class _FlowLoop(TorchContender):
    """A flow scheduler driven as FluxPipeline drives it (see the module docstring)."""

    module = "diffusers"
    cls_name = "FlowMatchEulerDiscreteScheduler"

    def __init__(self, key: str, name: str, description: str, **kwargs: Any) -> None:
        kwargs.setdefault("floor", None)
        super().__init__(key, name, description, **kwargs)
        self.cls: Any = None

    def load(self) -> None:
        import_or_unavailable("torch")
        self.cls = import_or_unavailable(self.module, self.cls_name)

    def scheduler(self, eta: float) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare(self, inputs: Inputs) -> Loop:
        import torch

        wl = inputs.workload
        dtype = getattr(torch, wl.dtype)
        x0 = torch.from_numpy(inputs.latents.copy()).to(dtype)
        v = torch.from_numpy(inputs.model_output.copy()).to(dtype)
        try:
            sched = self.scheduler(wl.eta)
        except Exception as exc:
            raise Unavailable(f"{self.cls_name}.from_config failed: {exc!r}") from exc
        g = torch.Generator().manual_seed(inputs.seed)
        sigmas = flux_sigmas(wl.steps)
        mu = flux_mu(wl.shape[1])

        def model(x: Any, t: Any) -> Any:
            return v

        def run() -> Any:
            g.manual_seed(inputs.seed)
            sched.set_timesteps(sigmas=sigmas, device="cpu", mu=mu)
            sched.set_begin_index(0)
            x = x0
            for t in sched.timesteps:
                x = sched.step(model(x, t), t, x, generator=g, return_dict=False)[0]
            return x

        return Loop(run, _to_numpy, memory=lambda: torch_peak_bytes(run))


class FlowEuler(_FlowLoop):
    """diffusers' FlowMatchEulerDiscreteScheduler: the Euler step (the η = 0 cells' reference)
    or, with ``stochastic=True``, its stochastic step (the η > 0 cells' reference)."""

    def __init__(self, stochastic: bool) -> None:
        if stochastic:
            super().__init__(
                FLOW_EULER_STOCHASTIC,
                "diffusers FlowMatchEulerDiscreteScheduler, stochastic (reference, η > 0)",
                "FlowMatchEulerDiscreteScheduler(stochastic_sampling=True), FLUX.1-dev config, "
                "driven as FluxPipeline drives it, generator passed to step; runs in the η > 0 "
                "cells",
            )
        else:
            super().__init__(
                FLOW_EULER,
                "diffusers FlowMatchEulerDiscreteScheduler (reference, η = 0)",
                "FlowMatchEulerDiscreteScheduler, FLUX.1-dev config, driven as FluxPipeline "
                "drives it; runs in the η = 0 cells",
            )
        self.stochastic = stochastic

    def runs_on(self, workload: Workload) -> bool:
        return (workload.eta > 0) == self.stochastic

    def scheduler(self, eta: float) -> Any:
        return self.cls.from_config({**FLUX_DEV_SCHEDULER, "stochastic_sampling": self.stochastic})


class FlowTCD(_FlowLoop):
    """tcd_diffusers.FlowMatchTCDScheduler.from_config(euler.config, eta=η), every η; checked
    against the Euler step at η = 0 and the stochastic Euler step at η = 1."""

    module = "tcd_diffusers"
    cls_name = "FlowMatchTCDScheduler"

    def __init__(self) -> None:
        super().__init__(
            FLOW_TCD,
            "tcd_diffusers FlowMatchTCDScheduler",
            "FlowMatchTCDScheduler.from_config(euler.config, eta=η) (our drop-in), driven "
            "exactly like the reference; every η",
        )
        self.euler: Any = None

    def load(self) -> None:
        super().load()
        self.euler = import_or_unavailable("diffusers", "FlowMatchEulerDiscreteScheduler")

    def checked_against(self, workload: Workload) -> str | None:
        if workload.eta in (0.0, 1.0):  # equal work: the reference's latents, bit for bit
            return flow_reference(workload)
        return None

    def scheduler(self, eta: float) -> Any:
        euler = self.euler.from_config(FLUX_DEV_SCHEDULER)
        return self.cls.from_config(euler.config, eta=eta)


def flow_contenders() -> list[Contender]:
    """The flow-matching contenders: the two references first, then ours."""
    return [FlowEuler(stochastic=False), FlowEuler(stochastic=True), FlowTCD()]
