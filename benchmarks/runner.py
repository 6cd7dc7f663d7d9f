"""The CPU benchmark: every contender on every workload, side by side, into one results dict;
``run_flow`` runs the flow-matching grid the same way, into a results dict of its own."""

from __future__ import annotations

import datetime as _dt
import gc
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .contenders import (
    Contender,
    Loop,
    Unavailable,
    cpu_contenders,
    flow_contenders,
    flow_reference,
)
from .machine import describe_machine, load_average
from .schema import SCHEMA
from .timing import measure, torch_graph_count
from .workloads import FLOW_GRID, QUICK_FLOW_GRID, SEED, Workload, make_inputs

__all__ = ["SCHEMA", "run_cpu", "run_flow"]


def _check(out: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Agreement of final latents with those of a contender drawing the same noise."""
    diff = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
    scale = 1.0 + float(np.max(np.abs(ref)))
    return {
        "identical": bool(out.dtype == ref.dtype and np.array_equal(out, ref)),
        "max_abs_diff": diff,
        "within_tolerance": bool(diff <= 1e-5 * scale),
    }


def _cell(workload: dict[str, Any]) -> tuple[Any, ...]:
    """A row's cell: (shape, steps, η, dtype)."""
    w = workload
    return (tuple(w["shape"]), w["steps"], w["eta"], w.get("dtype", "float32"))


def _row(wl: Workload, c: Contender, status: str, **extra: Any) -> dict[str, Any]:
    row = {"workload": wl.to_dict(), "contender": c.key, "status": status}
    row.update(extra)
    return row


def run_cpu(
    workloads: Iterable[Workload],
    *,
    repeats: int = 15,
    warmup: int = 3,
    min_sample_s: float = 0.005,
    threads: int | None = 1,
    contenders: list[Contender] | None = None,
    mode: str = "custom",
    log: Callable[[str], None] = print,
    reference: Callable[[Workload], str] | None = None,
) -> dict[str, Any]:
    """Run the grid; returns the JSON-ready results (see ``schema`` for the schema).

    ``threads``: torch intra-op threads while measuring (restored afterwards); None leaves it.
    ``reference``: the key of a cell's reference, whose time the rows' ``vs_reference`` divide
    by (default: ``"reference"`` in every cell). A contender runs in the cells it ``runs_on``
    and is checked against the contender it is ``checked_against`` there.
    """
    import torch

    workloads = list(workloads)
    contenders = cpu_contenders() if contenders is None else contenders
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    load_before = load_average()
    unavailable: dict[str, str] = {}
    for c in contenders:
        try:
            c.load()
        except Unavailable as exc:
            unavailable[c.key] = str(exc)
            log(f"  {c.name}: not available ({exc})")
    compile_s: dict[str, dict[str, float]] = {}
    rows: list[dict[str, Any]] = []
    try:
        for wl in workloads:
            t_cell = time.perf_counter()
            inputs = make_inputs(wl, seed=SEED)
            loops: dict[str, Loop] = {}
            cell = [c for c in contenders if c.runs_on(wl)]
            for c in cell:
                if c.key in unavailable:
                    rows.append(_row(wl, c, "unavailable", reason=unavailable[c.key]))
                    continue
                try:
                    loop = c.prepare(inputs)
                except Unavailable as exc:
                    rows.append(_row(wl, c, "unavailable", reason=str(exc)))
                    continue
                except Exception as exc:
                    rows.append(_row(wl, c, "error", reason=f"{type(exc).__name__}: {exc}"))
                    log(traceback.format_exc())
                    continue
                if loop.compile_s is not None:  # per shape: the longest first call over cells
                    per = compile_s.setdefault(c.key, {})
                    label = wl.to_dict()["shape_label"]
                    per[label] = max(per.get(label, 0.0), loop.compile_s)
                loops[c.key] = loop
            # Compilation happened in prepare(); a graph compiled from here on is a recompile.
            graphs_before = torch_graph_count()
            # Correctness first: one run each; the reference's output is the yardstick.
            outputs: dict[str, np.ndarray] = {}
            for key, loop in list(loops.items()):
                try:
                    outputs[key] = loop.to_numpy(loop.run())
                except Exception as exc:
                    c = next(c for c in contenders if c.key == key)
                    rows.append(_row(wl, c, "error", reason=f"{type(exc).__name__}: {exc}"))
                    log(traceback.format_exc())
                    del loops[key]
            stats = measure(
                {k: loop.run for k, loop in loops.items()},
                repeats=repeats,
                warmup=warmup,
                min_sample_s=min_sample_s,
            )
            recompiled = torch_graph_count() != graphs_before
            ref_key = "reference" if reference is None else reference(wl)
            ref_stats = stats.get(ref_key)
            for c in cell:
                if c.key not in loops:
                    continue
                s = stats[c.key]
                floor = stats.get(c.floor) if c.floor else None
                per_step = {k: s[k] / wl.steps * 1e6 for k in ("median", "min", "max")}
                check = None
                against = c.checked_against(wl)
                if against in outputs:
                    check = _check(outputs[c.key], outputs[against])
                    check["against"] = against
                peak = None
                mem = loops[c.key].memory
                if mem is not None:
                    try:
                        peak = mem()
                    except Exception as exc:  # measuring memory must not sink the timing
                        log(f"  memory of {c.key} failed: {exc!r}")
                rows.append(
                    _row(
                        wl,
                        c,
                        "ok",
                        per_step_us=per_step,
                        loop_us={k: s[k] * 1e6 for k in ("median", "min", "max")},
                        repeats=s["repeats"],
                        inner=s["inner"],
                        reference=ref_key if ref_stats else None,
                        vs_reference=(s["median"] / ref_stats["median"]) if ref_stats else None,
                        vs_floor=(s["median"] / floor["median"]) if floor else None,
                        # The same ratios of the fastest samples: less sensitive to load spikes.
                        vs_reference_min=(s["min"] / ref_stats["min"]) if ref_stats else None,
                        vs_floor_min=(s["min"] / floor["min"]) if floor else None,
                        peak_extra_bytes=peak,
                        peak_extra_latents=(peak / wl.nbytes) if peak is not None else None,
                        check=check,
                        recompiled=recompiled
                        if c.key in ("core-compile", "floor-compile")
                        else None,
                    )
                )
            log(f"  {wl.label}: {len(loops)} contenders, {time.perf_counter() - t_cell:.1f} s")
    finally:
        torch.set_num_threads(old_threads)
    order = {c.key: i for i, c in enumerate(contenders)}
    wl_order = {_cell(w.to_dict()): i for i, w in enumerate(workloads)}
    rows.sort(key=lambda r: (wl_order[_cell(r["workload"])], order[r["contender"]]))
    machine = describe_machine(threads)
    machine["load_average_before"] = load_before
    machine["load_average_after"] = load_average()
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "device": "cpu",
        "machine": machine,
        "settings": {
            "repeats": repeats,
            "warmup": warmup,
            "min_sample_s": min_sample_s,
            "seed": SEED,
            "torch_threads": threads,
            "timed": "one whole loop: timestep plan (set_timesteps) + every step, generator "
            "re-seeded; reported per step = loop time / steps",
        },
        "contenders": [
            dict(c.describe(), available=c.key not in unavailable, reason=unavailable.get(c.key))
            for c in contenders
        ],
        "compile_s": compile_s,
        "results": rows,
        "elapsed_s": time.perf_counter() - started,
    }


def run_flow(
    quick: bool = False,
    *,
    workloads: Iterable[Workload] | None = None,
    log: Callable[[str], None] = print,
    **settings: Any,
) -> dict[str, Any]:
    """The flow-matching grid (``FLOW_GRID``, or ``QUICK_FLOW_GRID`` when ``quick``) with the
    flow contenders, each cell's ratios taken against its reference (``flow_reference``): a
    results dict of the same schema as ``run_cpu``'s, mode ``flow`` or ``flow-quick``.
    ``settings``: ``run_cpu``'s keywords (repeats, warmup, min_sample_s, threads).

    The heap of a process that has imported torch and diffusers (and jax) makes every full
    garbage collection cost a few hundred milliseconds, and the run collects before each timing
    and each memory measurement; the objects alive at the start are frozen out of those
    collections (``gc.freeze``) for the run, so they only walk what the loops allocate.
    """
    if workloads is None:
        workloads = QUICK_FLOW_GRID if quick else FLOW_GRID
    gc.collect()
    gc.freeze()
    try:
        return run_cpu(
            workloads,
            contenders=flow_contenders(),
            reference=flow_reference,
            mode="flow-quick" if quick else "flow",
            log=log,
            **settings,
        )
    finally:
        gc.unfreeze()
