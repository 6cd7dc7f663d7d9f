"""The tables of a run's every cell, of scaling with the latent's size, of compile times, and of
the flow-matching run's every cell."""

from __future__ import annotations

from typing import Any

from .format import (
    HEADLINE_ETA,
    HEADLINE_STEPS,
    contender_names,
    find_row,
    fmt_check,
    fmt_memory,
    fmt_ratio,
    fmt_us,
    md_table,
)

__all__ = ["compile_table", "flow_results_table", "results_table", "scaling_table"]


def _cells_table(
    results: dict[str, Any], ratios: tuple[tuple[str, str], ...], dtype: bool = False
) -> str:
    """One row per (workload, contender): which cell it is (latent, the dtype where ``dtype``,
    steps, η, contender), then its time per step and spread, the ratios ``ratios`` names as
    (column, row key), its peak extra memory and its final-latents check; a row that did not run
    gives its status and reason in place of its measurements."""
    names = contender_names(results)
    measured = [
        "per step (median)",
        "min – max",
        *(column for column, _ in ratios),
        "peak extra memory",
        "final latents vs reference",
    ]
    rows = []
    for r in results["results"]:
        w = r["workload"]
        lead = [w["shape_label"]]
        if dtype:
            lead.append(w.get("dtype", "float32"))
        lead += [str(w["steps"]), f"{w['eta']:g}", names[r["contender"]]]
        if r["status"] != "ok":
            rows.append(lead + [f"{r['status']}: {r['reason']}"] + ["—"] * (len(measured) - 1))
            continue
        t = r["per_step_us"]
        rows.append(
            lead
            + [
                fmt_us(t["median"]),
                f"{fmt_us(t['min'])} – {fmt_us(t['max'])}",
                *(fmt_ratio(r[key]) for _, key in ratios),
                fmt_memory(r),
                fmt_check(r, names),
            ]
        )
    header = ["latent"] + (["dtype"] if dtype else []) + ["steps", "η", "contender"] + measured
    return md_table(header, rows)


def results_table(results: dict[str, Any]) -> str:
    """Every cell: one row per (workload, contender), timed against the reference and the
    contender's floor."""
    return _cells_table(results, (("× reference", "vs_reference"), ("× floor", "vs_floor")))


def scaling_table(results: dict[str, Any], steps=HEADLINE_STEPS, eta=HEADLINE_ETA) -> str:
    """Per contender and latent size: time per step and its ratio to the contender's floor; then
    how the time grows with the latent's side (64² → 128², 4× the elements) and with the batch
    (1 → 4, 4× the elements), and the time per latent element at the largest size."""
    names = contender_names(results)
    shapes: list[str] = []
    for r in results["results"]:
        if r["workload"]["shape_label"] not in shapes:
            shapes.append(r["workload"]["shape_label"])

    def growth(key: str, small: str, big: str) -> str:
        a, b = find_row(results, key, small, steps, eta), find_row(results, key, big, steps, eta)
        return (
            "—"
            if not (a and b)
            else fmt_ratio(b["per_step_us"]["median"] / a["per_step_us"]["median"])
        )

    rows = []
    for c in results["contenders"]:
        cells, last = [], None
        for s in shapes:
            r = find_row(results, c["key"], s, steps, eta)
            if r is None:
                cells.append("—")
                continue
            last = r
            floor = "" if c["is_floor"] else f" ({fmt_ratio(r['vs_floor'])} floor)"
            cells.append(f"{fmt_us(r['per_step_us']['median'])}{floor}")
        if last is None:
            continue
        per_el = last["per_step_us"]["median"] * 1000 / last["workload"]["elements"]
        rows.append(
            [names[c["key"]]]
            + cells
            + [
                growth(c["key"], "1x4x64x64", "1x4x128x128"),
                growth(c["key"], "1x4x128x128", "4x4x128x128"),
                f"{per_el:.2f} ns",
            ]
        )
    header = ["contender"] + shapes + ["64² → 128²", "batch 1 → 4", "per element (largest)"]
    return md_table(header, rows)


def compile_table(results: dict[str, Any]) -> str:
    """Seconds of the first (compiling) call, per contender and latent shape (the longest over
    the shape's cells: JAX recompiles when a static argument such as the step count changes)."""
    names = contender_names(results)
    shapes = sorted(
        {s for per in results["compile_s"].values() for s in per},
        key=lambda s: [int(d) for d in s.split("x")],
    )
    rows = [
        [names.get(k, k)] + [f"{per[s]:.2f} s" if s in per else "—" for s in shapes]
        for k, per in results["compile_s"].items()
    ]
    return md_table(["contender"] + shapes, rows) if rows else "none"


def flow_results_table(flow: dict[str, Any]) -> str:
    """Every cell of a flow-matching run (``runner.run_flow``): one row per (workload, contender),
    the ratio taken against the cell's reference (the Euler step at η = 0, the stochastic Euler
    step at η > 0)."""
    return _cells_table(flow, (("× reference", "vs_reference"),), dtype=True)
