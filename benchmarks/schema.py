"""The results file of a CPU run (``cpu.json``): its schema, checked when written and read.

JSON schema ``tcd-core-benchmark/1`` (one object):

- ``schema``, ``created`` (UTC ISO time), ``mode`` ("quick" | "full" | ...), ``device`` ("cpu")
- ``machine``: ``cpu_model``, ``cpu_flags``, ``cpu_count``, ``cpus_usable``, ``platform``, ``python``,
  ``versions`` {numpy, torch, jax, jaxlib, diffusers, array_api_compat}, ``torch_threads``,
  ``xla_flags``, ``load_average_before``/``load_average_after`` (1, 5, 15 min)
- ``settings``: ``repeats``, ``warmup``, ``min_sample_s``, ``seed``, ``torch_threads``, ``timed``
- ``contenders``: [{``key``, ``name``, ``backend``, ``floor`` (key of the floor it is compared
  with), ``description``, ``is_floor``, ``available``, ``reason``}]
- ``compile_s``: {contender key: {latent shape label: seconds of the first (compiling) call}}
- ``results``: one row per (workload, contender that runs in its cell): ``workload`` {``shape``,
  ``shape_label``, ``steps``, ``eta``, ``elements``, ``dtype`` (absent in older files: float32)},
  ``contender``, ``status`` ("ok" | "unavailable" | "error"), ``reason`` (unless ok); for ok
  rows ``per_step_us`` and ``loop_us`` {median, min, max}, ``repeats``, ``inner``,
  ``reference`` (the key of the cell's reference, or null when it did not run; absent in older
  files: "reference"), ``vs_reference``, ``vs_floor`` (ratios of medians, or null),
  ``vs_reference_min``, ``vs_floor_min`` (the same for the fastest samples),
  ``peak_extra_bytes``/``peak_extra_latents`` (or null: not measurable), ``check`` (null, or
  {``identical``, ``max_abs_diff``, ``within_tolerance``, ``against``}: the final latents against
  those of ``against``, a contender drawing the same noise — the reference for torch, the JAX
  floor with the same key for tcd_jax), ``recompiled`` (torch.compile only)
- ``jax_loop`` (absent with ``--no-jax``): the η = 0 study of ``benchmarks.eta_zero`` run in the
  same process, from which the JAX loop's verdicts come: {``status`` ("ok" | "error"),
  ``reason`` (unless ok), ``results`` (ok: ``eta_zero.run``'s dict, ``rows`` of {``model``,
  ``shape``, ``eta``, ``strategy``, ``us_per_step``, ``over_floor``, ``compile_s``,
  ``max_abs_diff``, ``agrees``})}
- ``flow`` (absent when not run): the flow-matching grid (``runner.run_flow``), run in the same
  process or separately (``--only flow``) and merged: {``status`` ("ok" | "error"), ``reason``
  (unless ok), ``results`` (ok: a results dict of this same schema, mode "flow" or "flow-quick",
  whose rows' ratios are taken against each cell's reference: diffusers'
  FlowMatchEulerDiscreteScheduler at η = 0, its stochastic step at η > 0), ``merged_from``
  (only when merged from a separate run: the path of its flow.json)}
- ``elapsed_s``
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA", "read_json", "validate", "write_json"]

SCHEMA = "tcd-core-benchmark/1"

_REQUIRED_TOP = {
    "schema": str,
    "created": str,
    "mode": str,
    "device": str,
    "machine": dict,
    "settings": dict,
    "contenders": list,
    "compile_s": dict,
    "results": list,
}
_REQUIRED_OK_ROW = (
    "per_step_us",
    "loop_us",
    "repeats",
    "vs_reference",
    "vs_floor",
    "vs_reference_min",
    "vs_floor_min",
    "check",
)


def validate(results: dict[str, Any]) -> None:
    """Raise ValueError when ``results`` does not follow the schema described above."""
    for key, typ in _REQUIRED_TOP.items():
        if not isinstance(results.get(key), typ):
            raise ValueError(f"results[{key!r}] must be a {typ.__name__}")
    keys = {c["key"] for c in results["contenders"]}
    for i, row in enumerate(results["results"]):
        where = f"results['results'][{i}]"
        if row.get("contender") not in keys:
            raise ValueError(f"{where}: unknown contender {row.get('contender')!r}")
        wl = row.get("workload", {})
        for k in ("shape", "shape_label", "steps", "eta", "elements"):
            if k not in wl:
                raise ValueError(f"{where}: workload lacks {k!r}")
        if row.get("status") not in ("ok", "unavailable", "error"):
            raise ValueError(f"{where}: bad status {row.get('status')!r}")
        if row["status"] != "ok":
            if not isinstance(row.get("reason"), str):
                raise ValueError(f"{where}: a {row['status']} row needs a reason")
            continue
        for k in _REQUIRED_OK_ROW:
            if k not in row:
                raise ValueError(f"{where}: lacks {k!r}")
        t = row["per_step_us"]
        if not (0 <= t["min"] <= t["median"] <= t["max"]):
            raise ValueError(f"{where}: per_step_us must satisfy 0 <= min <= median <= max")
    if "jax_loop" in results:
        _validate_jax_loop(results["jax_loop"])
    if "flow" in results:
        _validate_flow(results["flow"])


def _section_ok(section: Any, name: str) -> bool:
    """Whether the optional section ``results[name]`` holds results: a dict with status 'ok', or
    one with status 'error' and its reason (then False)."""
    if not isinstance(section, dict) or section.get("status") not in ("ok", "error"):
        raise ValueError(f"results[{name!r}] must be a dict with status 'ok' or 'error'")
    if section["status"] != "ok":
        if not isinstance(section.get("reason"), str):
            raise ValueError(f"results[{name!r}]: an error needs a reason")
        return False
    return True


def _validate_flow(section: Any) -> None:
    if not _section_ok(section, "flow"):
        return
    if not isinstance(section.get("merged_from", ""), str):
        raise ValueError("results['flow']['merged_from'] must be a path")
    flow = section.get("results")
    if not isinstance(flow, dict) or "flow" in flow:
        raise ValueError("results['flow']['results'] must be the flow run's results dict")
    try:
        validate(flow)
    except ValueError as exc:
        raise ValueError(f"results['flow']['results']: {exc}") from exc


_JAX_LOOP_ROW = ("model", "shape", "eta", "strategy", "us_per_step", "over_floor", "agrees")


def _validate_jax_loop(study: Any) -> None:
    if not _section_ok(study, "jax_loop"):
        return
    rows = study.get("results", {}).get("rows")
    if not isinstance(rows, list):
        raise ValueError("results['jax_loop']['results'] lacks its rows")
    for i, row in enumerate(rows):
        for k in _JAX_LOOP_ROW:
            if k not in row:
                raise ValueError(f"results['jax_loop']['results']['rows'][{i}]: lacks {k!r}")


def write_json(results: dict[str, Any], path: str | os.PathLike) -> Path:
    validate(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    results = json.loads(Path(path).read_text(encoding="utf-8"))
    validate(results)
    return results
