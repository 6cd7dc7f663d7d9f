"""The verdicts: the headline ratios the issues set targets for, met or missed, and the JAX
loop's target, judged on the η = 0 study's conv stand-in (``benchmarks.eta_zero``)."""

from __future__ import annotations

from typing import Any

# The JAX loop's target and its verdicts (eta_zero imports no jax at import time).
from .. import eta_zero
from .format import HEADLINE_ETA, contender_names, find_row, fmt_ratio, fmt_us, md_table

__all__ = ["headline", "headline_table", "jax_loop_section"]


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
    specs = [(*spec, HEADLINE_ETA) for spec in specs]
    # With η traced, the compiled loop skips the draw on the device when no element needs it.
    # The JAX loop's target is judged with the conv stand-in (``jax_loop_section``), not here.
    specs += [
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
    for key, base, shape, target, what, eta in specs:
        a = find_row(results, key, shape, eta=eta)
        b = find_row(results, base, shape, eta=eta)
        ratio = a["per_step_us"]["median"] / b["per_step_us"]["median"] if a and b else None
        ratio_min = a["per_step_us"]["min"] / b["per_step_us"]["min"] if a and b else None
        # A speed target only counts with the result intact: the adapter must stay bit-identical.
        identical = (
            a["check"]["identical"]
            if a and a.get("check") and key in ("adapter", "adapter-lcm")
            else None
        )
        met = None if ratio is None or target is None else ratio <= target
        if met and identical is False:
            met = False
        out.append(
            {
                "what": what,
                "contender": key,
                "baseline": base,
                "shape": shape,
                "ratio": ratio,
                "ratio_min": ratio_min,
                "target": target,
                "met": met,
                "identical": identical,
                "contender_us": a["per_step_us"]["median"] if a else None,
                "baseline_us": b["per_step_us"]["median"] if b else None,
            }
        )
    return out


def headline_table(results: dict[str, Any]) -> str:
    names = contender_names(results)
    rows = []
    for h in headline(results):
        met = "—" if h["met"] is None else ("met" if h["met"] else "**missed**")
        if h["identical"] is False:
            met += " (final latents differ from the reference)"
        target = "—" if h["target"] is None else f"≤ {h['target']:.2f}×"
        rows.append(
            [
                h["what"],
                h["shape"],
                f"{names.get(h['contender'], h['contender'])} / "
                f"{names.get(h['baseline'], h['baseline'])}",
                f"{fmt_us(h['contender_us'])} / {fmt_us(h['baseline_us'])}",
                "not measured" if h["ratio"] is None else fmt_ratio(h["ratio"]),
                fmt_ratio(h["ratio_min"]),
                target,
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
    study = results.get("jax_loop")
    if study is None:
        return intro + "\n\nNot measured in this run (`--no-jax`, or recorded before the target)."
    if study["status"] != "ok":
        return intro + f"\n\nNot measured: {study['status']}: {study.get('reason')}"
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
