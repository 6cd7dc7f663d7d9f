"""The report's formatting: times, ratios, bytes, the final-latents check, Markdown tables, and
finding the row of a (contender, latent, steps, η) cell in a run's results."""

from __future__ import annotations

from typing import Any

__all__ = [
    "HEADLINE_ETA",
    "HEADLINE_STEPS",
    "contender_names",
    "find_row",
    "fmt_bytes",
    "fmt_check",
    "fmt_memory",
    "fmt_ratio",
    "fmt_us",
    "md_table",
    "ok_rows",
]

HEADLINE_STEPS, HEADLINE_ETA = 4, 0.3


def fmt_us(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    if v >= 100:
        return f"{v:.0f} µs"
    return f"{v:.1f} µs"


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def fmt_memory(row: dict[str, Any]) -> str:
    if row.get("peak_extra_bytes") is None:
        return "n/a"
    return f"{fmt_bytes(row['peak_extra_bytes'])} ({row['peak_extra_latents']:.1f} lat.)"


def fmt_check(row: dict[str, Any], names: dict[str, str]) -> str:
    """The final-latents check; the contender checked against is named unless it is the row's
    reference."""
    c = row.get("check")
    if not c:
        return "—"
    against = (
        ""
        if c.get("against", "reference") == row.get("reference", "reference")
        else f" vs {names.get(c['against'], c['against'])}"
    )
    if c["identical"]:
        return "bit-identical" + against
    mark = "within 1e-5" if c["within_tolerance"] else "DIFFERS"
    return f"{mark} (Δ={c['max_abs_diff']:.1e}){against}"


def contender_names(results: dict[str, Any]) -> dict[str, str]:
    return {c["key"]: c["name"] for c in results["contenders"]}


def ok_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results["results"] if r["status"] == "ok"]


def find_row(results, key, shape_label, steps=HEADLINE_STEPS, eta=HEADLINE_ETA):
    for r in ok_rows(results):
        w = r["workload"]
        if (r["contender"], w["shape_label"], w["steps"], w["eta"]) == (
            key,
            shape_label,
            steps,
            eta,
        ):
            return r
    return None


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
