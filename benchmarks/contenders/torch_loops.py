"""The torch contenders: diffusers' schedulers (the reference) and our adapter driven as a
pipeline drives them, the core in torch eager and under torch.compile, and the two torch floors.
Noise comes from a ``torch.Generator`` re-seeded per loop, where the reference draws it."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from tcd_core import alphas_cumprod, tcd_step, tcd_timesteps

from ..timing import torch_peak_bytes
from ..workloads import Inputs, floor_coefficients
from .base import Contender, Loop, Unavailable, import_or_unavailable

__all__ = [
    "CoreTorchCompile",
    "CoreTorchEager",
    "DiffusersScheduler",
    "FloorTorch",
    "FloorTorchCompile",
    "TorchContender",
    "compiled_loop",
    "eager_loop",
    "torch_inputs",
]


def torch_inputs(inputs: Inputs) -> tuple[Any, Any, Any]:
    """(torch, initial latents, model output) as CPU tensors, copies of the shared inputs."""
    import torch

    x0 = torch.from_numpy(inputs.latents.copy())
    eps = torch.from_numpy(inputs.model_output.copy())
    return torch, x0, eps


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy()


def eager_loop(run: Callable[[], Any]) -> Loop:
    """An eager torch loop, whose memory is the operators' peak allocation."""
    return Loop(run, _to_numpy, memory=lambda: torch_peak_bytes(run))


def compiled_loop(run: Callable[[], Any], compile_s: float | None) -> Loop:
    """A loop of torch.compile'd code (its memory is out of sight)."""
    return Loop(run, _to_numpy, compile_s=compile_s)


class TorchContender(Contender):
    """A contender on torch tensors (it needs torch), compared with the torch eager floor unless
    it names another floor."""

    def __init__(self, key: str, name: str, description: str, **kwargs: Any) -> None:
        kwargs.setdefault("floor", "floor-torch")
        super().__init__(key, name, "torch", description=description, **kwargs)

    def load(self) -> None:
        import_or_unavailable("torch")


class DiffusersScheduler(TorchContender):
    """A diffusers-style scheduler driven exactly as a pipeline drives it. ``cls_name`` picks
    TCD (``step(..., eta=, generator=)``) or LCM (``step(..., generator=)``, no η); an adapter is
    checked against its own reference (``compare_with``)."""

    def __init__(
        self,
        key: str,
        name: str,
        module: str,
        description: str,
        cls_name: str = "TCDScheduler",
        compare_with: str | None = "reference",
    ) -> None:
        super().__init__(
            key, name, description, compare_with=None if key == "reference" else compare_with
        )
        self.module = module
        self.cls_name = cls_name
        self.cls: Any = None

    def load(self) -> None:
        self.cls = import_or_unavailable(self.module, self.cls_name)

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps = torch_inputs(inputs)
        wl = inputs.workload
        try:
            sched = self.cls.from_config(inputs.config.to_dict())
        except Exception as exc:
            raise Unavailable(f"{self.module}.{self.cls_name}.from_config failed: {exc!r}") from exc
        g = torch.Generator().manual_seed(inputs.seed)
        step_kwargs = {"eta": wl.eta} if self.cls_name == "TCDScheduler" else {}

        def model(x: Any, t: Any) -> Any:
            return eps

        def run() -> Any:
            g.manual_seed(inputs.seed)
            sched.set_timesteps(wl.steps)
            x = x0
            for t in sched.timesteps:
                x = sched.step(model(x, t), t, x, generator=g, **step_kwargs).prev_sample
            return x

        return eager_loop(run)


def _core_setup(inputs: Inputs) -> tuple[Any, Any, Any, Any, Any]:
    """(torch, x0, eps, the ᾱ table as a torch tensor, a generator seeded like the reference's)."""
    import array_api_compat

    torch, x0, eps = torch_inputs(inputs)
    ac = alphas_cumprod(inputs.config, xp=array_api_compat.array_namespace(x0))
    return torch, x0, eps, ac, torch.Generator().manual_seed(inputs.seed)


class CoreTorchEager(TorchContender):
    def __init__(self) -> None:
        super().__init__(
            "core-torch",
            "core, torch eager",
            "tcd_core.tcd_timesteps + tcd_step on torch tensors, host-int timesteps, "
            "torch.randn(generator=g) where the reference draws",
            compare_with="reference",
        )

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps, ac, g = _core_setup(inputs)
        cfg, wl = inputs.config, inputs.workload

        def model(x: Any, t: Any) -> Any:
            return eps

        def run() -> Any:
            g.manual_seed(inputs.seed)
            plan = tcd_timesteps(cfg, wl.steps)
            draws = plan.noise_mask(wl.eta)
            x = x0
            for i, (t, p) in enumerate(zip(plan.timesteps.tolist(), plan.next_timesteps.tolist())):
                noise = torch.randn(x.shape, generator=g, dtype=x.dtype) if draws[i] else None
                x = tcd_step(model(x, t), t, x, p, ac, wl.eta, noise, cfg).prev_sample
            return x

        return eager_loop(run)


class CoreTorchCompile(TorchContender):
    """One compiled step function per latent shape, shared by every η and step count.

    Timesteps and η enter as 0-d tensors (t, p int64; η float64 so that 1 − η rounds exactly as
    the reference's Python double does), the noise always as a tensor (zeros where the reference
    draws none: the re-noise weight is exactly 0 there), so one graph serves the whole grid.
    """

    def __init__(self) -> None:
        super().__init__(
            "core-compile",
            "core, torch.compile",
            "tcd_core.tcd_step under torch.compile(fullgraph=True, dynamic=False), compiled once "
            "per shape (compile time reported separately), noise drawn eagerly from g",
            floor="floor-compile",
            compare_with="reference",
        )
        self.compiled: dict[tuple[int, ...], Any] = {}

    def load(self) -> None:
        torch = import_or_unavailable("torch")
        if not hasattr(torch, "compile"):
            raise Unavailable("torch.compile is missing")

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps, ac, g = _core_setup(inputs)
        cfg, wl = inputs.config, inputs.workload
        zeros = torch.zeros_like(x0)

        def model(x: Any, t: Any) -> Any:
            return eps

        def run_with(step: Any) -> Any:
            g.manual_seed(inputs.seed)
            plan = tcd_timesteps(cfg, wl.steps)
            draws = plan.noise_mask(wl.eta)
            ts = torch.from_numpy(plan.timesteps)
            ps = torch.from_numpy(plan.next_timesteps)
            eta = torch.tensor(wl.eta, dtype=torch.float64)
            x = x0
            for i in range(len(ts)):
                t = ts[i]
                noise = torch.randn(x.shape, generator=g, dtype=x.dtype) if draws[i] else zeros
                x = step(model(x, t), x, t, ps[i], eta, noise)
            return x

        compile_s = None
        step = self.compiled.get(wl.shape)
        if step is None:

            def step_fn(model_output, sample, t, p, eta, noise):
                return tcd_step(model_output, t, sample, p, ac, eta, noise, cfg).prev_sample

            step = torch.compile(step_fn, fullgraph=True, dynamic=False)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                # array_api_compat's lru_cache helpers: dynamo traces through them (harmless).
                warnings.filterwarnings("ignore", message=".*functools.lru_cache.*")
                run_with(step)
            compile_s = time.perf_counter() - t0
            self.compiled[wl.shape] = step
        return compiled_loop(lambda: run_with(step), compile_s)


class FloorTorch(TorchContender):
    def __init__(self) -> None:
        super().__init__(
            "floor-torch",
            "floor, torch eager",
            "torch.randn(generator=g) where the reference draws + one linear update per step "
            "(x.mul(a).add_(eps, alpha=b).add_(z, alpha=c): one allocation, no temporaries)",
            compare_with="reference",
            is_floor=True,
        )

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps = torch_inputs(inputs)
        wl = inputs.workload
        a, b, c, draws = floor_coefficients(inputs.config, wl.steps, wl.eta)
        g = torch.Generator().manual_seed(inputs.seed)
        steps = list(zip(a, b, c, draws))

        def run() -> Any:
            g.manual_seed(inputs.seed)
            x = x0
            for ai, bi, ci, di in steps:
                if di:
                    z = torch.randn(x.shape, generator=g, dtype=x.dtype)
                    x = torch.mul(x, ai).add_(eps, alpha=bi).add_(z, alpha=ci)
                else:
                    x = torch.mul(x, ai).add_(eps, alpha=bi)
            return x

        return eager_loop(run)


class FloorTorchCompile(TorchContender):
    def __init__(self) -> None:
        super().__init__(
            "floor-compile",
            "floor, torch.compile",
            "torch.randn(generator=g) + the update a*x + b*eps + c*z compiled into one kernel "
            "(coefficients as 0-d tensors: one graph per shape)",
            floor="floor-compile",
            compare_with="reference",
            is_floor=True,
        )
        self.compiled: dict[tuple[int, ...], tuple[Any, Any]] = {}

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps = torch_inputs(inputs)
        wl = inputs.workload
        a, b, c, draws = floor_coefficients(inputs.config, wl.steps, wl.eta)
        coef = [tuple(torch.tensor(v, dtype=torch.float32) for v in abc) for abc in zip(a, b, c)]
        g = torch.Generator().manual_seed(inputs.seed)

        def run_with(upd3: Any, upd2: Any) -> Any:
            g.manual_seed(inputs.seed)
            x = x0
            for (ai, bi, ci), di in zip(coef, draws):
                if di:
                    z = torch.randn(x.shape, generator=g, dtype=x.dtype)
                    x = upd3(x, eps, z, ai, bi, ci)
                else:
                    x = upd2(x, eps, ai, bi)
            return x

        compile_s = None
        fns = self.compiled.get(wl.shape)
        if fns is None:

            def update3(x, e, z, ai, bi, ci):
                return ai * x + bi * e + ci * z

            def update2(x, e, ai, bi):
                return ai * x + bi * e

            fns = (
                torch.compile(update3, fullgraph=True, dynamic=False),
                torch.compile(update2, fullgraph=True, dynamic=False),
            )
            t0 = time.perf_counter()
            fns[0](x0, eps, torch.zeros_like(x0), *coef[0])  # z must not alias x: a guard
            fns[1](x0, eps, *coef[0][:2])
            compile_s = time.perf_counter() - t0
            self.compiled[wl.shape] = fns
        return compiled_loop(lambda: run_with(*fns), compile_s)
