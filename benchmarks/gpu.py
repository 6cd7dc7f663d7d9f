"""``python -m benchmarks --device cuda``: the GPU benchmark (designed to finish in < 5 minutes).

For each contender (diffusers' TCDScheduler, our adapter, the core in torch eager and under
torch.compile, the torch floor; and diffusers' LCMScheduler with our LCM adapter, at η = 0.3
only since LCM has no η), on 1×4×64×64, 1×4×128×128 and 4×4×128×128 latents, 4 steps,
η = 0.3 and 0:

- device time per step: CUDA events around every ``step`` call, median over repeats;
- host wall time per step (the loop timed on the host, synchronised at the end);
- host synchronisations: ``torch.cuda.set_sync_debug_mode("warn")`` and the warnings counted,
  separately for ``set_timesteps`` and for the steps (reported per step);
- the whole 4-step loop captured as one CUDA graph and replayed, with our adapter (the result
  compared with an eager run of the same seed) and with the reference, whose capture is expected
  to fail (host synchronisation inside ``step``): the exception is the recorded result; our LCM
  adapter's loop is captured the same way;
- JAX on the GPU: ``benchmarks/jax_gpu.py`` (written with the tcd_jax adapter) and the η = 0
  strategy study ``benchmarks/eta_zero.py``, each run in a subprocess when present, their output
  recorded.

Without CUDA this fails at once with :class:`CudaUnavailable` (exit status 2 from the CLI).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tcd_core import TCDConfig, alphas_cumprod, tcd_step, tcd_timesteps

from .machine import describe_machine
from .workloads import SEED, Workload, floor_coefficients, grid, make_inputs

__all__ = ["GPU_GRID", "CudaUnavailable", "gpu_markdown", "require_cuda", "run_gpu"]

GPU_SCHEMA = "tcd-core-benchmark-gpu/1"
GPU_GRID = grid(shapes=((1, 4, 64, 64), (1, 4, 128, 128), (4, 4, 128, 128)), steps=(4,))


class CudaUnavailable(RuntimeError):
    """The GPU mode was asked for on a machine where torch sees no CUDA device."""


def require_cuda() -> Any:
    """Return the torch module if CUDA is usable, else raise CudaUnavailable saying why."""
    try:
        torch = importlib.import_module("torch")
    except ImportError as exc:
        raise CudaUnavailable(f"--device cuda needs torch: {exc}") from exc
    if not torch.cuda.is_available():
        raise CudaUnavailable(
            f"--device cuda needs a CUDA GPU, but torch {torch.__version__} "
            f"(built with CUDA {torch.version.cuda}) reports torch.cuda.is_available() == False. "
            "Run the CPU benchmark instead: python -m benchmarks"
        )
    return torch


# A GPU loop is (begin, step): begin() re-seeds and returns the loop state (set_timesteps runs
# here for the schedulers), step(state, i) advances the state's "x" by one step.
Begin = Callable[[], dict]
Step = Callable[[dict, int], None]


# The schedulers timed, as (key, module, class name); each LCM row is checked against the LCM
# reference, every other row against the TCD reference.
SCHEDULERS = (
    ("reference", "diffusers", "TCDScheduler"),
    ("adapter", "tcd_diffusers", "TCDScheduler"),
    ("lcm-reference", "diffusers", "LCMScheduler"),
    ("lcm-adapter", "tcd_diffusers", "LCMScheduler"),
)


def baseline_of(contender: str) -> str:
    """The reference a contender's time and final latents are compared with."""
    return "lcm-reference" if contender.startswith("lcm-") else "reference"


def _step_kwargs(cls: Any, wl: Workload) -> dict[str, Any]:
    """TCD's step takes η; LCM's has none (it draws at every step but the last)."""
    return {} if cls.__name__ == "LCMScheduler" else {"eta": wl.eta}


def _scheduler_loop(torch: Any, cls: Any, cfg: TCDConfig, wl: Workload, x0, eps, dev) -> tuple:
    sched = cls.from_config(cfg.to_dict())
    g = torch.Generator(device=dev)
    kwargs = _step_kwargs(cls, wl)

    def begin() -> dict:
        g.manual_seed(SEED)
        sched.set_timesteps(wl.steps, device=dev)
        return {"x": x0, "ts": list(sched.timesteps)}

    def step(state: dict, i: int) -> None:
        t = state["ts"][i]
        state["x"] = sched.step(eps, t, state["x"], generator=g, **kwargs).prev_sample

    return begin, step, sched, g


def _core_loop(torch: Any, cfg: TCDConfig, wl: Workload, x0, eps, dev, compiled: Any = None):
    import array_api_compat

    ac = alphas_cumprod(cfg, xp=array_api_compat.array_namespace(x0), device=x0.device)
    g = torch.Generator(device=dev)
    zeros = torch.zeros_like(x0)

    def begin() -> dict:
        g.manual_seed(SEED)
        plan = tcd_timesteps(cfg, wl.steps)
        state = {"x": x0, "draws": plan.noise_mask(wl.eta)}
        if compiled is None:
            state["t"] = plan.timesteps.tolist()
            state["p"] = plan.next_timesteps.tolist()
        else:
            state["t"] = torch.from_numpy(plan.timesteps).to(dev, non_blocking=True)
            state["p"] = torch.from_numpy(plan.next_timesteps).to(dev, non_blocking=True)
            state["eta"] = torch.tensor(wl.eta, dtype=torch.float64, device=dev)
        return state

    def step(state: dict, i: int) -> None:
        x = state["x"]
        draw = state["draws"][i]
        if compiled is None:
            noise = torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype) if draw else None
            state["x"] = tcd_step(
                eps, state["t"][i], x, state["p"][i], ac, wl.eta, noise, cfg
            ).prev_sample
        else:
            noise = torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype) if draw else zeros
            state["x"] = compiled(eps, x, state["t"][i], state["p"][i], state["eta"], noise)

    def step_fn(model_output, sample, t, p, eta, noise):
        return tcd_step(model_output, t, sample, p, ac, eta, noise, cfg).prev_sample

    return begin, step, step_fn


def _floor_loop(torch: Any, cfg: TCDConfig, wl: Workload, x0, eps, dev):
    steps = list(zip(*floor_coefficients(cfg, wl.steps, wl.eta)))
    g = torch.Generator(device=dev)

    def begin() -> dict:
        g.manual_seed(SEED)
        return {"x": x0}

    def step(state: dict, i: int) -> None:
        a, b, c, d = steps[i]
        x = state["x"]
        y = torch.mul(x, a).add_(eps, alpha=b)
        if d:
            y.add_(torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype), alpha=c)
        state["x"] = y

    return begin, step


def _count_syncs(torch: Any, fn: Callable[[], Any]) -> int:
    """Host-device synchronisations made by ``fn``, as torch's sync debug mode reports them."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def _time_loop(torch: Any, begin: Begin, step: Step, steps: int, repeats: int, warmup: int):
    for _ in range(warmup):
        state = begin()
        for i in range(steps):
            step(state, i)
    torch.cuda.synchronize()
    device_ms: list[float] = []
    host_s: list[float] = []
    for _ in range(repeats):
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        t0 = time.perf_counter()
        state = begin()
        for i in range(steps):
            events[i][0].record()
            step(state, i)
            events[i][1].record()
        torch.cuda.synchronize()
        host_s.append((time.perf_counter() - t0) / steps)
        device_ms += [a.elapsed_time(b) for a, b in events]
    return {
        "device_us_per_step": {
            "median": statistics.median(device_ms) * 1e3,
            "min": min(device_ms) * 1e3,
            "max": max(device_ms) * 1e3,
        },
        "host_us_per_step": {
            "median": statistics.median(host_s) * 1e6,
            "min": min(host_s) * 1e6,
            "max": max(host_s) * 1e6,
        },
    }


def _capture_loop(
    torch: Any, cls: Any, cfg: TCDConfig, wl: Workload, x0, eps, dev, repeats: int
) -> dict:
    """Capture set-up + the whole loop of ``cls`` as one CUDA graph, replay it, time it."""
    result: dict[str, Any] = {"captured": False}
    sched = cls.from_config(cfg.to_dict())
    gen = torch.Generator(device=dev)
    static_x = x0.clone()
    kwargs = _step_kwargs(cls, wl)

    def body() -> Any:
        x = static_x
        for t in sched.timesteps:
            x = sched.step(eps, t, x, generator=gen, **kwargs).prev_sample
        return x

    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires
            sched.set_timesteps(wl.steps, device=dev)
            gen.manual_seed(SEED)
            eager = body().clone()
        torch.cuda.current_stream().wait_stream(side)
        sched.set_timesteps(wl.steps, device=dev)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        if hasattr(graph, "register_generator_state"):
            graph.register_generator_state(gen)
        with torch.cuda.graph(graph):
            static_out = body()
        result["captured"] = True
        gen.manual_seed(SEED)
        graph.replay()
        torch.cuda.synchronize()
        result["replay_equals_eager"] = bool(torch.equal(static_out, eager))
        result["replay_max_abs_diff"] = float((static_out - eager).abs().max())
        times = []
        for _ in range(repeats):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            graph.replay()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) * 1e3 / wl.steps)
        result["device_us_per_step"] = {
            "median": statistics.median(times),
            "min": min(times),
            "max": max(times),
        }
    except Exception as exc:  # the reference is expected to land here
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        try:
            torch.cuda.synchronize()
        except Exception as exc2:  # pragma: no cover - a broken context after a failed capture
            result["error_after"] = repr(exc2)
    return result


def _run_jax_gpu(timeout_s: float, module: str = "jax_gpu") -> dict[str, Any]:
    """Run ``benchmarks.<module> --json`` (a JAX study) in a subprocess that sees the GPU."""
    script = Path(__file__).with_name(f"{module}.py")
    if not script.exists():
        return {"status": "unavailable", "reason": f"benchmarks/{module}.py is not present"}
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    env.pop("JAX_PLATFORMS", None)
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / f"{module}.json"
        try:
            proc = subprocess.run(
                [sys.executable, "-m", f"benchmarks.{module}", "--json", str(out_json)],
                cwd=script.parent.parent,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            return {
                "status": "error",
                "reason": f"timed out after {timeout_s} s",
                "stdout": exc.stdout[-4000:] if isinstance(exc.stdout, str) else "",
            }
        result = {
            "status": "ok" if proc.returncode == 0 else "error",
            "returncode": proc.returncode,
            "stdout": proc.stdout[-6000:],
            "stderr": proc.stderr[-2000:],
        }
        if out_json.exists():
            try:
                result["results"] = json.loads(out_json.read_text(encoding="utf-8"))
            except ValueError as exc:
                result["results_error"] = repr(exc)
    return result


def run_gpu(
    workloads: list[Workload] | None = None,
    *,
    repeats: int = 30,
    warmup: int = 3,
    jax_timeout_s: float = 150.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The GPU benchmark; raises CudaUnavailable without CUDA. Returns JSON-ready results."""
    torch = require_cuda()
    started = time.perf_counter()
    dev = torch.device("cuda")
    cfg = TCDConfig()
    workloads = GPU_GRID if workloads is None else workloads
    classes: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for key, module, name in SCHEDULERS:
        try:
            classes[key] = getattr(importlib.import_module(module), name)
        except Exception as exc:
            unavailable[key] = f"{type(exc).__name__}: {exc}"
    compiled: dict[tuple, Any] = {}
    compile_s: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    graphs: list[dict[str, Any]] = []
    for wl in workloads:
        inputs = make_inputs(wl)
        x0 = torch.from_numpy(inputs.latents).to(dev)
        eps = torch.from_numpy(inputs.model_output).to(dev)
        loops: dict[str, tuple] = {}
        for key, cls in classes.items():
            if key.startswith("lcm-") and wl.eta == 0:
                continue  # LCM has no η: its rows would repeat the η = 0.3 ones
            begin, step, _, _ = _scheduler_loop(torch, cls, cfg, wl, x0, eps, dev)
            loops[key] = (begin, step)
        begin, step, step_fn = _core_loop(torch, cfg, wl, x0, eps, dev)
        loops["core-torch"] = (begin, step)
        label = wl.to_dict()["shape_label"]
        if wl.shape not in compiled:
            compiled[wl.shape] = torch.compile(step_fn, fullgraph=True, dynamic=False)
        b2, s2, _ = _core_loop(torch, cfg, wl, x0, eps, dev, compiled=compiled[wl.shape])
        try:
            if label not in compile_s:
                t0 = time.perf_counter()
                st = b2()
                for i in range(wl.steps):
                    s2(st, i)
                torch.cuda.synchronize()
                compile_s[label] = time.perf_counter() - t0
            loops["core-compile"] = (b2, s2)
        except Exception as exc:
            unavailable[f"core-compile {label}"] = f"{type(exc).__name__}: {exc}"
        loops["floor-torch"] = _floor_loop(torch, cfg, wl, x0, eps, dev)
        finals: dict[str, Any] = {}
        for key, (begin, step) in loops.items():
            row: dict[str, Any] = {"workload": wl.to_dict(), "contender": key}
            try:
                row.update(_time_loop(torch, begin, step, wl.steps, repeats, warmup))
                state: dict[str, Any] = {}
                row["syncs_set_timesteps"] = _count_syncs(torch, lambda: state.update(begin()))
                row["syncs_per_step"] = (
                    _count_syncs(torch, lambda: [step(state, i) for i in range(wl.steps)])
                    / wl.steps
                )
                finals[key] = state["x"]
                row["status"] = "ok"
            except Exception as exc:
                row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
            rows.append(row)
        ref_us = {
            r["contender"]: r["device_us_per_step"]["median"]
            for r in rows[-len(loops) :]
            if r["contender"] in ("reference", "lcm-reference") and r["status"] == "ok"
        }
        for row in rows[-len(loops) :]:
            base = baseline_of(row["contender"])
            row["baseline"] = base
            fin, ref_final = finals.get(row["contender"]), finals.get(base)
            if ref_final is not None and fin is not None and row["contender"] != base:
                row["identical_to_reference"] = bool(torch.equal(fin, ref_final))
                row["max_abs_diff"] = float((fin - ref_final).abs().max())
            if ref_us.get(base) and row["status"] == "ok":
                row["device_vs_reference"] = row["device_us_per_step"]["median"] / ref_us[base]
        for key in ("adapter", "lcm-adapter"):
            if wl.steps == 4 and key in loops:
                g = _capture_loop(torch, classes[key], cfg, wl, x0, eps, dev, repeats)
                graphs.append({"workload": wl.to_dict(), "contender": key, **g})
        log(f"  {wl.label}: done")
    if "reference" in classes:
        # Last of all, once: a capture that fails half-way may leave the CUDA context unusable.
        wl = next((w for w in workloads if w.steps == 4 and w.eta > 0), workloads[0])
        inputs = make_inputs(wl)
        x0 = torch.from_numpy(inputs.latents).to(dev)
        eps = torch.from_numpy(inputs.model_output).to(dev)
        g = _capture_loop(torch, classes["reference"], cfg, wl, x0, eps, dev, repeats)
        graphs.append({"workload": wl.to_dict(), "contender": "reference", **g})
    log("  JAX on the GPU (subprocess)...")
    jax_result = _run_jax_gpu(jax_timeout_s)
    # Whether XLA:GPU's conditional (a predicate read on the host) makes the per-step cond of a
    # traced-η loop cost more than the draw it skips: the η = 0 study, on the GPU.
    log("  JAX η = 0 strategies on the GPU (subprocess)...")
    eta_zero_result = _run_jax_gpu(jax_timeout_s, "eta_zero")
    return {
        "schema": GPU_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": "cuda",
        "gpu": torch.cuda.get_device_name(0),
        "machine": describe_machine(),
        "settings": {"repeats": repeats, "warmup": warmup, "seed": SEED},
        "unavailable": unavailable,
        "compile_s": compile_s,
        "results": rows,
        "cuda_graphs": graphs,
        "jax": jax_result,
        "jax_eta_zero": eta_zero_result,
        "elapsed_s": time.perf_counter() - started,
    }


def gpu_markdown(gpu: dict[str, Any]) -> str:
    """The GPU section of the docs page (and the CLI's stdout in GPU mode)."""
    lines = [
        f"GPU: {gpu.get('gpu')}, {gpu.get('created')}.",
        "",
        "*× reference* and *final vs reference* compare each row with the diffusers scheduler of "
        "its algorithm: `diffusers.TCDScheduler`, or `diffusers.LCMScheduler` for the `lcm-` rows.",
        "",
        "| latent | η | contender | device µs/step (median) | host µs/step | × reference "
        "(device) | syncs in set_timesteps | syncs per step | final vs reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in gpu["results"]:
        w = r["workload"]
        lead = f"| {w['shape_label']} | {w['eta']:g} | {r['contender']} |"
        if r.get("status") != "ok":
            lines.append(lead + f" {r.get('status')}: {r.get('reason')} | | | | | |")
            continue
        same = (
            "bit-identical"
            if r.get("identical_to_reference")
            else f"Δ={r['max_abs_diff']:.1e}"
            if "max_abs_diff" in r
            else "—"
        )
        ratio = r.get("device_vs_reference")
        lines.append(
            lead + f" {r['device_us_per_step']['median']:.1f} | "
            f"{r['host_us_per_step']['median']:.1f} | "
            f"{'—' if ratio is None else f'{ratio:.2f}×'} | {r['syncs_set_timesteps']} | "
            f"{r['syncs_per_step']:.2f} | {same} |"
        )
    lines += [
        "",
        "Whole 4-step loop as one CUDA graph:",
        "",
        "| latent | η | scheduler | captured | replay µs/step | replay = eager | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in gpu.get("cuda_graphs", []):
        w = g["workload"]
        t = g.get("device_us_per_step", {}).get("median")
        lines.append(
            f"| {w['shape_label']} | {w['eta']:g} | {g['contender']} | {g['captured']} | "
            f"{'—' if t is None else f'{t:.1f}'} | {g.get('replay_equals_eager', '—')} | "
            f"{g.get('error', '')} |"
        )
    jax_result = gpu.get("jax", {})
    lines += [
        "",
        f"JAX on the GPU: {jax_result.get('status')}"
        f"{': ' + jax_result['reason'] if jax_result.get('reason') else ''}",
    ]
    if jax_result.get("stdout"):
        lines += ["", "```", jax_result["stdout"].strip(), "```"]
    eta_zero_result = gpu.get("jax_eta_zero")
    if eta_zero_result is not None:  # runs recorded before the study have no such entry
        lines += [
            "",
            "JAX, η = 0 with a traced η (`python -m benchmarks.eta_zero`; µs per step, × floor, "
            f"compile s): {eta_zero_result.get('status')}"
            f"{': ' + eta_zero_result['reason'] if eta_zero_result.get('reason') else ''}",
        ]
        if isinstance(eta_zero_result.get("results"), dict):
            from .eta_zero import markdown as eta_zero_markdown
            from .eta_zero import verdicts_markdown

            lines += ["", eta_zero_markdown(eta_zero_result["results"]).strip()]
            lines += [
                "",
                "The JAX loop's target on this device (≤ 1.3× its floor at every η, conv "
                "stand-in; the constant stand-in's rows are information only):",
                "",
                verdicts_markdown(eta_zero_result["results"]).strip(),
            ]
        elif eta_zero_result.get("stdout"):
            lines += ["", "```", eta_zero_result["stdout"].strip(), "```"]
    return "\n".join(lines)
