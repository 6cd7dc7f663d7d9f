"""The verdicts: the headline ratios the issues set targets for, met or missed, the JAX loop's
target, judged on the η = 0 study's conv stand-in (``benchmarks.eta_zero``), and the flow-matching
target (issue 18): FlowMatchTCDScheduler no slower than FlowMatchEulerDiscreteScheduler at equal
work."""

from __future__ import annotations

from typing import Any

# The JAX loop's target and its verdicts (eta_zero imports no jax at import time).
from .. import eta_zero
from .format import (
    HEADLINE_ETA,
    contender_names,
    find_row,
    fmt_ratio,
    fmt_us,
    md_table,
    ok_rows,
)
from .tables import flow_results_table

__all__ = [
    "FLOW_OURS",
    "FLOW_TARGET",
    "flow_section",
    "flow_verdicts",
    "flow_verdicts_table",
    "headline",
    "headline_table",
    "jax_loop_section",
]

#: Our flow scheduler's key in a flow run, and its target: time per step over the reference's
#: (ratio of medians) at most this, at equal work.
FLOW_OURS, FLOW_TARGET = "flow-tcd", 1.0
#: The η at which ours does the reference's work: the Euler step (0) and the stochastic one (1).
FLOW_EQUAL_WORK_ETAS = (0.0, 1.0)


def headline(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The ratios the issues set targets for (4-step loop, η = 0.3), as records."""
    specs = [
        ("adapter", "reference", "1x4x8x8", 0.30, "issue 3: adapter ≤ 0.30× reference"),
        ("adapter", "reference", "1x4x128x128", 0.70, "issue 3: adapter ≤ 0.70× reference"),
        (
            "adapter-lcm",
            "reference-lcm",
            "1x4x8x8",
            0.30,
            "issue 12: LCM adapter ≤ 0.30× LCM reference",
        ),
        (
            "adapter-lcm",
            "reference-lcm",
            "1x4x128x128",
            0.70,
            "issue 12: LCM adapter ≤ 0.70× LCM reference",
        ),
        ("floor-torch", "reference", "1x4x8x8", None, "torch floor vs reference"),
        ("floor-torch", "reference", "1x4x128x128", None, "torch floor vs reference"),
        ("adapter", "floor-torch", "1x4x8x8", None, "adapter vs torch floor"),
        ("adapter", "floor-torch", "1x4x128x128", None, "adapter vs torch floor"),
        ("core-compile", "reference", "1x4x128x128", None, "torch.compile core vs reference"),
        ("core-compile", "floor-compile", "1x4x128x128", None, "vs compiled torch floor"),
        ("core-compile", "reference", "4x4x128x128", None, "torch.compile core vs reference"),
        ("core-compile", "floor-compile", "4x4x128x128", None, "vs compiled torch floor"),
    ]
    for impl in ("threefry", "rbg"):
        for shape in ("1x4x128x128", "4x4x128x128"):
            specs += [
                (
                    f"tcd-jax-jit-{impl}",
                    "reference",
                    shape,
                    None,
                    "compiled tcd_jax loop vs reference",
                ),
                (
                    f"tcd-jax-jit-{impl}",
                    f"floor-jax-{impl}",
                    shape,
                    None,
                    "compiled tcd_jax loop vs jax floor (constant stand-in: information only)",
                ),
            ]
    for shape in ("1x4x128x128", "4x4x128x128"):
        specs += [
            (
                "tcd-jax-jit-threefry",
                "floor-jax-threefry-every",
                shape,
                None,
                "compiled tcd_jax loop vs a floor that draws at every step",
            ),
            (
                "tcd-jax-threefry",
                "floor-jax-threefry",
                shape,
                None,
                "tcd_jax.sample plain call vs jax floor",
            ),
        ]
    specs += [
        ("floor-jax-rbg", "floor-jax-threefry", s, None, "rbg floor vs threefry floor")
        for s in ("1x4x128x128", "4x4x128x128")
    ]
    # issue 11: the k-diffusion sampler's own cost (identity denoiser), against its floor
    specs += [
        ("kdiffusion", base, shape, None, f"sample_tcd (identity denoiser) vs {what}")
        for shape in ("1x4x8x8", "1x4x128x128")
        for base, what in (("floor-torch", "torch floor"), ("reference", "reference"))
    ]
    judged = [(*spec, HEADLINE_ETA) for spec in specs]
    # With η traced, the compiled loop skips the draw on the device when no element needs it.
    # The JAX loop's target is judged with the conv stand-in (``jax_loop_section``), not here.
    judged += [
        (
            "tcd-jax-jit-eta-threefry",
            "floor-jax-threefry",
            shape,
            None,
            f"compiled tcd_jax loop, traced η = {eta:g}, vs jax floor (constant stand-in: "
            "information only)",
            eta,
        )
        for shape in ("1x4x64x64", "1x4x128x128")
        for eta in (0.0, 0.3)
    ]
    out = []
    for key, base, shape, target, what, eta in judged:
        a = find_row(results, key, shape, eta=eta)
        # The adapters must stay bit-identical; the other contenders have nothing to match.
        identical = (
            a["check"]["identical"]
            if a and a.get("check") and key in ("adapter", "adapter-lcm")
            else None
        )
        labels = {"what": what, "contender": key, "baseline": base, "shape": shape}
        out.append(_judged(a, find_row(results, base, shape, eta=eta), target, identical, labels))
    return out


def _judged(
    row: dict[str, Any] | None,
    baseline: dict[str, Any] | None,
    target: float | None,
    identical: bool | None,
    labels: dict[str, Any],
    *,
    needs_check: bool = False,
) -> dict[str, Any]:
    """One verdict record: ``labels``, then ``row``'s time per step over ``baseline``'s (ratio of
    medians and of minima; None without both rows) and whether it meets ``target``. A speed
    target only counts with the result intact: ``identical`` False fails it, and so does None
    (no check) where ``needs_check``."""
    ours, theirs = (r["per_step_us"] if r else None for r in (row, baseline))
    ratio = ours["median"] / theirs["median"] if ours and theirs else None
    met = None
    if ratio is not None and target is not None:
        met = ratio <= target and (identical is True if needs_check else identical is not False)
    return {
        **labels,
        "ratio": ratio,
        "ratio_min": ours["min"] / theirs["min"] if ours and theirs else None,
        "target": target,
        "met": met,
        "identical": identical,
        "contender_us": ours["median"] if ours else None,
        "baseline_us": theirs["median"] if theirs else None,
    }


def _timing_cells(v: dict[str, Any]) -> list[str]:
    """A verdict's columns of times: per step, ours / the baseline's (medians), then the ratio of
    medians ("not measured" without one) and of minima."""
    return [
        f"{fmt_us(v['contender_us'])} / {fmt_us(v['baseline_us'])}",
        "not measured" if v["ratio"] is None else fmt_ratio(v["ratio"]),
        fmt_ratio(v["ratio_min"]),
    ]


def _fmt_target(target: float | None) -> str:
    return "—" if target is None else f"≤ {target:.2f}×"


def headline_table(results: dict[str, Any]) -> str:
    names = contender_names(results)
    rows = []
    for h in headline(results):
        met = "—" if h["met"] is None else ("met" if h["met"] else "**missed**")
        if h["identical"] is False:
            met += " (final latents differ from the reference)"
        rows.append(
            [
                h["what"],
                h["shape"],
                f"{names.get(h['contender'], h['contender'])} / "
                f"{names.get(h['baseline'], h['baseline'])}",
                *_timing_cells(h),
                _fmt_target(h["target"]),
                met,
            ]
        )
    return md_table(
        [
            "comparison",
            "latent",
            "contender / baseline",
            "per step (medians)",
            "ratio of medians",
            "ratio of minima",
            "target",
            "result",
        ],
        rows,
    )


def jax_loop_section(results: dict[str, Any]) -> str:
    """The JAX loop's target and verdicts (``eta_zero.verdicts``), then the whole study."""
    target, etas = eta_zero.TARGET, ", ".join(f"{e:g}" for e in eta_zero.ETAS)
    intro = (
        f"Target: the compiled tcd_jax loop, η known at compile time or traced, costs ≤ "
        f"{target:g}× its floor at every η ({etas}), measured with the `{eta_zero.TARGET_MODEL}` "
        "stand-in of `benchmarks.eta_zero`: three 3×3 convolutions (4 → 32 → 32 → 4 channels, "
        "SiLU) whose output, like a real model's, depends on x. The floor runs the same model: "
        "it knows η on the host, draws only where the reference draws and runs "
        "x ← a·x + b·model(x) + c·z with folded coefficients. A row meets the target when its "
        "time per step over the floor's, in the same (stand-in, latents, η) cell, is "
        f"≤ {target:g} and its latents agree with the shipped loop's. The `constant` stand-in "
        "(a fixed ε̂, as in the rest of this page) lets XLA fuse the draw-free floor's steps into "
        "one pass over the latents, which no loop with a real model can do: its rows are "
        f"information only. Times: a {eta_zero.STEPS}-step loop, the best of interleaved "
        "repeats, per step, threefry key, in the same process as the rest of this page."
    )
    missing = _unmeasured(results, "jax_loop", intro, "`--no-jax`, or recorded before the target")
    if missing is not None:
        return missing
    study = results["jax_loop"]
    return "\n".join(
        [
            intro,
            "",
            eta_zero.verdicts_markdown(study["results"]).strip(),
            "",
            "Every strategy of the study (µs per step, × floor, compile seconds; information "
            "only: the JAX guide's [η = 0 with a traced η](guides/jax.md#eta-zero-with-a-traced-eta) "
            "explains them):",
            "",
            eta_zero.markdown(study["results"]).strip(),
        ]
    )


def _unmeasured(results: dict[str, Any], key: str, intro: str, why_missing: str) -> str | None:
    """The text of a section of ``results`` that has none: absent from the run
    (``why_missing``), or not run to the end (its status and reason). None when it has results."""
    section = results.get(key)
    if section is None:
        return f"{intro}\n\nNot measured in this run ({why_missing})."
    if section["status"] != "ok":
        return f"{intro}\n\nNot measured: {section['status']}: {section.get('reason')}"
    return None


def _cell(w: dict[str, Any]) -> tuple[Any, ...]:
    return (w["shape_label"], w.get("dtype", "float32"), w["steps"], w["eta"])


def flow_verdicts(flow: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per cell where ours ran, in the run's order: its time per step over its cell's
    reference's (ratio of medians, and of minima). At equal work (η = 0 against the Euler step,
    η = 1 against the stochastic Euler step) the target is ≤ ``FLOW_TARGET``, met only when the
    final latents are bit-identical to the reference's; at other η (the stochastic step's draws
    plus a little arithmetic) the ratio is information only."""
    by_cell = {(_cell(r["workload"]), r["contender"]): r for r in ok_rows(flow)}
    out = []
    for r in flow["results"]:
        if r["contender"] != FLOW_OURS:
            continue
        w = r["workload"]
        ok = r["status"] == "ok"
        base_key = r.get("reference") if ok else None
        base = by_cell.get((_cell(w), base_key)) if base_key else None
        equal = w["eta"] in FLOW_EQUAL_WORK_ETAS
        identical = r["check"]["identical"] if ok and r.get("check") else None
        labels = {
            "shape": w["shape_label"],
            "dtype": w.get("dtype", "float32"),
            "steps": w["steps"],
            "eta": w["eta"],
            "baseline": base_key,
            "equal_work": equal,
        }
        target = FLOW_TARGET if equal else None
        out.append(_judged(r if ok else None, base, target, identical, labels, needs_check=True))
    return out


def flow_verdicts_table(flow: dict[str, Any]) -> str:
    names = contender_names(flow)
    rows = []
    for v in flow_verdicts(flow):
        if v["met"] is None:
            result = "—" if v["target"] is None else "not measured"
        else:
            result = "met" if v["met"] else "**missed**"
        if v["equal_work"] and v["identical"] is False:
            result += " (final latents differ from the reference)"
        speedup = (
            fmt_ratio(v["baseline_us"] / v["contender_us"])
            if v["baseline_us"] and v["contender_us"]
            else "—"
        )
        rows.append(
            [
                v["shape"],
                v["dtype"],
                str(v["steps"]),
                f"{v['eta']:g}",
                names.get(v["baseline"], "—") if v["baseline"] else "—",
                *_timing_cells(v),
                speedup,
                _fmt_target(v["target"]),
                result,
            ]
        )
    return md_table(
        [
            "latent",
            "dtype",
            "steps",
            "η",
            "reference",
            "per step, ours / reference (medians)",
            "ratio of medians",
            "ratio of minima",
            "speed-up (reference / ours)",
            "target",
            "result",
        ],
        rows,
    )


def flow_section(results: dict[str, Any]) -> str:
    """The flow-matching rows (issue 18): how they are measured, the verdicts, and every cell."""
    intro = (
        "The whole loop of `tcd_diffusers.FlowMatchTCDScheduler` against diffusers' "
        "`FlowMatchEulerDiscreteScheduler`, each driven as `FluxPipeline` drives its scheduler "
        "with FLUX.1-dev's scheduler config (shift 3.0, dynamic shifting): "
        "`set_timesteps(sigmas=linspace(1, 1/n, n), mu=mu)` with `mu` computed as FluxPipeline "
        "does from the latents' token count (1.15 at 4096 tokens, 0.5 at 256), "
        "`set_begin_index(0)`, then one `step(v, t, x, generator=g)` per step with a model stub "
        "that returns a fixed velocity. Latents are FLUX-shaped (batch × tokens × 64 channels: "
        "4096 tokens is a 1024² image; 256 tokens, where per-step overhead dominates, a 256² "
        "one), in float32 and bfloat16 (the step computes in float32 and returns the model "
        "output's dtype, as the Euler step does). Pipelines pass no generator; here both "
        "schedulers get the same `torch.Generator`, re-seeded per loop, so they draw the same "
        "noise.\n\n"
        "**Equal work**: ours at η = 0 is the Euler step and at η = 1 the stochastic Euler step "
        "(`stochastic_sampling=True`), each bit for bit (checked on every run: *final latents "
        "vs reference*). Ours at η = 0.3 draws the same noise as the stochastic step (one "
        "`randn` per step) and does a little more arithmetic; it is timed against the "
        "stochastic step for information, with no target and no check (its latents differ by "
        "design). "
        f"Target: at equal work ours is no slower than the reference: its time per step over "
        f"the reference's (ratio of medians, as elsewhere on this page) ≤ {FLOW_TARGET:.2f}×, "
        "i.e. a speed-up (reference / ours) ≥ 1, with bit-identical final latents. The ratio of "
        "minima is shown as well: it is less sensitive to load on a shared machine."
    )
    missing = _unmeasured(results, "flow", intro, "recorded before the flow rows existed")
    if missing is not None:
        return missing
    section = results["flow"]
    flow = section["results"]
    verdicts = [v for v in flow_verdicts(flow) if v["target"] is not None]
    met = sum(1 for v in verdicts if v["met"])
    m, settings = flow["machine"], flow["settings"]
    run = (
        f"Run {flow['created']} (mode `{flow['mode']}`), {settings['repeats']} repeats after "
        f"{settings['warmup']} warm-up calls, ≥ {settings['min_sample_s'] * 1e3:.0f} ms per "
        f"sample, torch threads = {settings.get('torch_threads')}, load average before / after "
        f"{m.get('load_average_before')} / {m.get('load_average_after')}, "
        f"{flow.get('elapsed_s', 0):.0f} s in all."
    )
    if section.get("merged_from"):
        run += (
            " Measured apart from the rest of this page (`python -m benchmarks --only flow`) "
            f"and merged from `{section['merged_from']}`."
        )
    return "\n".join(
        [
            intro,
            "",
            run,
            "",
            flow_verdicts_table(flow),
            "",
            f"Target met in {met} of {len(verdicts)} equal-work cells.",
            "",
            "Every cell of the flow run (peak extra memory as in the last table of this page):",
            "",
            flow_results_table(flow),
        ]
    )
