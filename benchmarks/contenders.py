"""The contenders of the CPU benchmark: each turns a workload's shared inputs into one callable
that runs a whole generation loop (timestep plan + every step, noise drawn from a freshly seeded
generator, a model stub that returns a fixed tensor) and returns the final latents.

Contenders whose package is missing or incomplete are reported as unavailable, with the reason,
instead of stopping the run (the adapters are developed alongside this harness).
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcd_core import alphas_cumprod, tcd_step, tcd_timesteps

from .timing import numpy_peak_bytes, torch_peak_bytes
from .workloads import Inputs, floor_coefficients

__all__ = ["Contender", "Loop", "Unavailable", "cpu_contenders"]


class Unavailable(Exception):
    """Raised by ``Contender.load`` when the contender cannot run here (the message says why)."""


@dataclass
class Loop:
    """One prepared contender on one workload."""

    run: Callable[[], Any]
    to_numpy: Callable[[Any], np.ndarray]
    memory: Callable[[], int] | None = None
    compile_s: float | None = None


@dataclass
class Contender:
    key: str
    name: str
    backend: str
    floor: str | None
    description: str
    # The contender whose final latents this one's must match: one that draws the same noise
    # (the reference's torch generator stream, or the same JAX key and fold_in scheme).
    compare_with: str | None = None
    is_floor: bool = False

    def load(self) -> None:  # pragma: no cover - overridden
        """Import what is needed; raise Unavailable(reason) when it cannot run."""

    def prepare(self, inputs: Inputs) -> Loop:  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "backend": self.backend,
            "floor": self.floor,
            "description": self.description,
            "is_floor": self.is_floor,
        }


def _import(name: str, attr: str | None = None) -> Any:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # ImportError, or the package failing while importing
        raise Unavailable(f"import {name} failed: {type(exc).__name__}: {exc}") from exc
    if attr is None:
        return module
    if not hasattr(module, attr):
        raise Unavailable(f"{name} has no attribute {attr!r} (not implemented yet)")
    return getattr(module, attr)


def _torch_inputs(inputs: Inputs) -> tuple[Any, Any, Any]:
    import torch

    x0 = torch.from_numpy(inputs.latents.copy())
    eps = torch.from_numpy(inputs.model_output.copy())
    return torch, x0, eps


def _torch_to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy()


# --------------------------------------------------------------------------------------------
# torch: the reference, our adapter, the core eager and compiled, and the floors


class DiffusersScheduler(Contender):
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
            key,
            name,
            "torch",
            "floor-torch",
            description,
            compare_with=None if key == "reference" else compare_with,
        )
        self.module = module
        self.cls_name = cls_name
        self.cls: Any = None

    def load(self) -> None:
        self.cls = _import(self.module, self.cls_name)

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps = _torch_inputs(inputs)
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

        return Loop(run, _torch_to_numpy, memory=lambda: torch_peak_bytes(run))


class CoreTorchEager(Contender):
    def __init__(self) -> None:
        super().__init__(
            "core-torch",
            "core, torch eager",
            "torch",
            "floor-torch",
            "tcd_core.tcd_timesteps + tcd_step on torch tensors, host-int timesteps, "
            "torch.randn(generator=g) where the reference draws",
            compare_with="reference",
        )

    def load(self) -> None:
        _import("torch")

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps = _torch_inputs(inputs)
        import array_api_compat

        cfg, wl = inputs.config, inputs.workload
        ac = alphas_cumprod(cfg, xp=array_api_compat.array_namespace(x0))
        g = torch.Generator().manual_seed(inputs.seed)

        def model(x: Any, t: Any) -> Any:
            return eps

        def run() -> Any:
            g.manual_seed(inputs.seed)
            plan = tcd_timesteps(cfg, wl.steps)
            draws = plan.noise_mask(wl.eta)
            x = x0
            for i, (t, p) in enumerate(zip(plan.timesteps.tolist(), plan.prev_timesteps.tolist())):
                noise = torch.randn(x.shape, generator=g, dtype=x.dtype) if draws[i] else None
                x = tcd_step(model(x, t), t, x, p, ac, wl.eta, noise, cfg).prev_sample
            return x

        return Loop(run, _torch_to_numpy, memory=lambda: torch_peak_bytes(run))


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CoreTorchCompile(Contender):
    """One compiled step function per latent shape, shared by every η and step count.

    Timesteps and η enter as 0-d tensors (t, p int64; η float64 so that 1 − η rounds exactly as
    the reference's Python double does), the noise always as a tensor (zeros where the reference
    draws none: the re-noise weight is exactly 0 there), so one graph serves the whole grid.
    """

    def __init__(self) -> None:
        super().__init__(
            "core-compile",
            "core, torch.compile",
            "torch",
            "floor-compile",
            "tcd_core.tcd_step under torch.compile(fullgraph=True, dynamic=False), compiled once "
            "per shape (compile time reported separately), noise drawn eagerly from g",
            compare_with="reference",
        )
        self.compiled: dict[tuple[int, ...], Any] = {}

    def load(self) -> None:
        torch = _import("torch")
        if not hasattr(torch, "compile"):
            raise Unavailable("torch.compile is missing")

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps = _torch_inputs(inputs)
        import array_api_compat

        cfg, wl = inputs.config, inputs.workload
        ac = alphas_cumprod(cfg, xp=array_api_compat.array_namespace(x0))
        g = torch.Generator().manual_seed(inputs.seed)
        zeros = torch.zeros_like(x0)

        def model(x: Any, t: Any) -> Any:
            return eps

        def run_with(step: Any) -> Any:
            g.manual_seed(inputs.seed)
            plan = tcd_timesteps(cfg, wl.steps)
            draws = plan.noise_mask(wl.eta)
            ts = torch.from_numpy(plan.timesteps)
            ps = torch.from_numpy(plan.prev_timesteps)
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
        return Loop(lambda: run_with(step), _torch_to_numpy, compile_s=compile_s)


class FloorTorch(Contender):
    def __init__(self) -> None:
        super().__init__(
            "floor-torch",
            "floor, torch eager",
            "torch",
            "floor-torch",
            "torch.randn(generator=g) where the reference draws + one linear update per step "
            "(x.mul(a).add_(eps, alpha=b).add_(z, alpha=c): one allocation, no temporaries)",
            compare_with="reference",
            is_floor=True,
        )

    def load(self) -> None:
        _import("torch")

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps = _torch_inputs(inputs)
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

        return Loop(run, _torch_to_numpy, memory=lambda: torch_peak_bytes(run))


class FloorTorchCompile(Contender):
    def __init__(self) -> None:
        super().__init__(
            "floor-compile",
            "floor, torch.compile",
            "torch",
            "floor-compile",
            "torch.randn(generator=g) + the update a*x + b*eps + c*z compiled into one kernel "
            "(coefficients as 0-d tensors: one graph per shape)",
            compare_with="reference",
            is_floor=True,
        )
        self.compiled: dict[tuple[int, ...], tuple[Any, Any]] = {}

    def load(self) -> None:
        _import("torch")

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, eps = _torch_inputs(inputs)
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
        return Loop(lambda: run_with(*fns), _torch_to_numpy, compile_s=compile_s)


# --------------------------------------------------------------------------------------------
# numpy


class CoreNumpy(Contender):
    def __init__(self) -> None:
        super().__init__(
            "core-numpy",
            "core, numpy",
            "numpy",
            "floor-numpy",
            "tcd_core.tcd_timesteps + tcd_step on numpy arrays, noise from "
            "np.random.default_rng(seed).standard_normal(dtype=float32)",
        )

    def load(self) -> None:
        pass

    def prepare(self, inputs: Inputs) -> Loop:
        cfg, wl = inputs.config, inputs.workload
        x0, eps = inputs.latents, inputs.model_output
        ac = alphas_cumprod(cfg)

        def run() -> Any:
            rng = np.random.default_rng(inputs.seed)
            plan = tcd_timesteps(cfg, wl.steps)
            draws = plan.noise_mask(wl.eta)
            x = x0
            for i, (t, p) in enumerate(zip(plan.timesteps.tolist(), plan.prev_timesteps.tolist())):
                noise = rng.standard_normal(x.shape, dtype=np.float32) if draws[i] else None
                x = tcd_step(eps, t, x, p, ac, wl.eta, noise, cfg).prev_sample
            return x

        return Loop(run, np.asarray, memory=lambda: numpy_peak_bytes(run))


class FloorNumpy(Contender):
    def __init__(self) -> None:
        super().__init__(
            "floor-numpy",
            "floor, numpy",
            "numpy",
            "floor-numpy",
            "rng.standard_normal(dtype=float32) where the reference draws + y = a*x; "
            "y += b*eps; y += c*z",
            is_floor=True,
        )

    def load(self) -> None:
        pass

    def prepare(self, inputs: Inputs) -> Loop:
        wl = inputs.workload
        x0, eps = inputs.latents, inputs.model_output
        steps = list(zip(*floor_coefficients(inputs.config, wl.steps, wl.eta)))

        def run() -> Any:
            rng = np.random.default_rng(inputs.seed)
            x = x0
            for a, b, c, d in steps:
                y = x * np.float32(a)
                y += np.float32(b) * eps
                if d:
                    y += np.float32(c) * rng.standard_normal(x.shape, dtype=np.float32)
                x = y
            return x

        return Loop(run, np.asarray, memory=lambda: numpy_peak_bytes(run))


# --------------------------------------------------------------------------------------------
# JAX


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
        self.jax = _import("jax")

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
            f"tcd_jax.sample(model_fn, latents, key, TCDPlan, eta) ({how}): the whole loop "
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
        self.jax = _import("jax")
        _import("tcd_jax", "sample")  # raises Unavailable when missing
        self.tcd_jax = _import("tcd_jax")

    def prepare(self, inputs: Inputs) -> Loop:
        from ._jax_loop import prepare_tcd_jax_loop

        return prepare_tcd_jax_loop(
            self.jax, self.tcd_jax, inputs, self.impl, self.jit, self.traced_eta
        )


# --------------------------------------------------------------------------------------------
# k-diffusion convention (issue 11)


class KDiffusionSampleTCD(Contender):
    """``tcd_kdiffusion.sample_tcd`` with the identity denoiser ``model(x, σ) = x``: what the
    sampler itself costs per step in a UI (ComfyUI, A1111, Forge) on top of the model."""

    def __init__(self) -> None:
        super().__init__(
            "kdiffusion",
            "tcd_kdiffusion sample_tcd (identity denoiser)",
            "torch",
            "floor-torch",
            "tcd_kdiffusion.get_sigmas_tcd + sample_tcd(model, x, sigmas, eta=, noise_sampler="
            "torch.randn(generator=g)) with model(x, σ) = x: per call the σ → t quantization and "
            "the core's step folded into x' = a·x + b·x̂₀ + c·z (host weights, cached per table, "
            "sigmas and η), per step 3 torch ops (5 with noise, no fused multiply-add); noise "
            "where diffusers draws it (its own trajectory: checked in tests/kdiffusion)",
        )
        self.fns: tuple[Any, Any] | None = None

    def load(self) -> None:
        self.fns = (
            _import("tcd_kdiffusion", "get_sigmas_tcd"),
            _import("tcd_kdiffusion", "sample_tcd"),
        )

    def prepare(self, inputs: Inputs) -> Loop:
        torch, x0, _eps = _torch_inputs(inputs)
        assert self.fns is not None
        get_sigmas_tcd, sample_tcd = self.fns
        wl = inputs.workload
        ac = torch.from_numpy(alphas_cumprod(inputs.config))
        g = torch.Generator().manual_seed(inputs.seed)

        def noise(sigma: Any, sigma_next: Any) -> Any:
            return torch.randn(x0.shape, generator=g, dtype=x0.dtype)

        def identity(x: Any, sigma: Any) -> Any:
            return x

        def run() -> Any:
            g.manual_seed(inputs.seed)
            sigmas = get_sigmas_tcd(wl.steps, ac)  # the plan, like set_timesteps elsewhere
            return sample_tcd(identity, x0, sigmas, None, None, True, noise, wl.eta, ac)

        return Loop(run, _torch_to_numpy, memory=lambda: torch_peak_bytes(run))


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
