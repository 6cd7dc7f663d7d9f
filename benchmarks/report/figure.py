"""The plot: time per step against the latent's size, one line per contender (PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .format import HEADLINE_ETA, HEADLINE_STEPS, ok_rows

__all__ = ["plot"]

# A contender and its floor share a colour (the floor dashed); unknown keys get the default cycle.
_COLORS = {
    "reference": "black",
    "adapter": "tab:blue",
    "reference-lcm": "dimgray",
    "adapter-lcm": "tab:cyan",
    "kdiffusion": "tab:pink",
    "core-torch": "tab:green",
    "floor-torch": "tab:green",
    "core-compile": "tab:red",
    "floor-compile": "tab:red",
    "core-numpy": "tab:purple",
    "floor-numpy": "tab:purple",
    "tcd-jax-threefry": "tab:olive",
    "tcd-jax-jit-threefry": "tab:orange",
    "floor-jax-threefry": "tab:orange",
    "tcd-jax-jit-rbg": "tab:brown",
    "floor-jax-threefry-every": "gold",
    "floor-jax-rbg": "tab:brown",
}


def plot(
    results: dict[str, Any], path: str | os.PathLike, steps=HEADLINE_STEPS, eta=HEADLINE_ETA
) -> Path | None:
    """Log-log time per step vs latent elements, one line per contender (floors dashed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.6), dpi=80)
    for c in results["contenders"]:
        pts = sorted(
            (r["workload"]["elements"], r["per_step_us"]["median"])
            for r in ok_rows(results)
            if r["contender"] == c["key"]
            and r["workload"]["steps"] == steps
            and r["workload"]["eta"] == eta
        )
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(
            xs,
            ys,
            "--" if c["is_floor"] else "-",
            marker="o",
            ms=3.5,
            lw=1.3,
            color=_COLORS.get(c["key"]),
            label=c["name"],
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latent elements (1×4×8×8 … 4×4×128×128)")
    ax.set_ylabel("median time per step (µs)")
    threads = results["settings"].get("torch_threads")
    ax.set_title(
        f"TCD sampling, {steps}-step loop, η = {eta:g}, CPU, torch threads = {threads}", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
