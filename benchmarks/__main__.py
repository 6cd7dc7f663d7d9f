"""``python -m benchmarks``: see ``--help``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS_PAGE = REPO / "docs" / "performance.md"
DOCS_PLOT = REPO / "docs" / "img" / "performance.png"
RESULTS_DIR = REPO / "benchmarks" / "results"

# One thread per backend for the CPU comparison. XLA reads its flags once, when jax is first
# imported, so they are set before anything imports jax.
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark tcd-core against diffusers' TCDScheduler and the per-backend "
        "floor (noise draw + one fused update per step), side by side in one process.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 small latents, 4 steps, few repeats (< 2 min on 2 cores); "
        "does not touch docs/",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the results: cpu.json (or gpu.json), plus performance.png "
        "and performance.md unless a full run writes those to docs/ (default: "
        "benchmarks/results for full and GPU runs, ./out/bench-quick for --quick)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the GPU benchmark (CUDA events, sync counts, CUDA graph, JAX on "
        "the GPU; < 5 min); fails with exit status 2 without CUDA",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed samples per cell")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (and XLA single-threaded when 1); 0 = leave "
        "the libraries' defaults (default: 1)",
    )
    p.add_argument("--no-jax", action="store_true", help="skip the JAX contenders")
    p.add_argument(
        "--only",
        choices=("flow",),
        default=None,
        help="run one part of the CPU benchmark alone: flow = the flow-matching grid "
        "(FlowMatchTCDScheduler vs FlowMatchEulerDiscreteScheduler; with --quick its quick "
        "cells); writes flow.json (default folder: ./out/bench-flow), prints its verdicts and "
        "does not touch docs/ (--render-docs ... --flow flow.json merges it into the page)",
    )
    p.add_argument(
        "--no-docs",
        action="store_true",
        help="full run: do not rewrite docs/performance.md and docs/img/",
    )
    p.add_argument(
        "--render-docs",
        type=Path,
        metavar="RESULTS_JSON",
        default=None,
        help="only regenerate docs/performance.md (+ plot) from a results JSON",
    )
    p.add_argument(
        "--gpu",
        type=Path,
        metavar="GPU_JSON",
        default=None,
        help="with --render-docs: add a GPU section from a --device cuda run",
    )
    p.add_argument(
        "--flow",
        type=Path,
        metavar="FLOW_JSON",
        default=None,
        help="with --render-docs: the flow-matching section from a --only flow run (instead "
        "of the one in RESULTS_JSON)",
    )
    return p


def render_docs_files(
    results: dict, gpu: dict | None = None, page: Path = DOCS_PAGE, plot_file: Path = DOCS_PLOT
) -> Path:
    """Write the docs page and its plot for ``results``."""
    from .report import plot, render_docs

    made = plot(results, plot_file)
    rel = os.path.relpath(plot_file, page.parent) if made else None
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_docs(results, rel, gpu=gpu), encoding="utf-8")
    return page


def _run_gpu(args: argparse.Namespace) -> int:
    from .gpu import CudaUnavailable, gpu_markdown, run_gpu

    try:
        gpu = run_gpu(repeats=args.repeats or 30, log=lambda s: print(s, file=sys.stderr))
    except CudaUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu.json"
    import json

    path.write_text(json.dumps(gpu, indent=1) + "\n", encoding="utf-8")
    print(gpu_markdown(gpu))
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


def run_jax_loop(quick: bool, repeats: int | None, log) -> dict:
    """The η = 0 study of ``benchmarks.eta_zero`` (constant and conv stand-ins), whose rows give
    the JAX loop's verdicts; a failure is recorded, not raised."""
    from . import eta_zero

    try:
        study = eta_zero.run(
            eta_zero.QUICK_SHAPES if quick else eta_zero.SHAPES,
            repeats=repeats or (3 if quick else 15),
            log=lambda s: log(f"  {s}"),
        )
    except Exception as exc:  # jax missing or failing: the rest of the run stands
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", "results": study}


def run_flow_section(quick: bool, threads: int | None, log, **settings) -> dict:
    """The flow-matching grid (``runner.run_flow``) as the results' ``flow`` section; a failure
    is recorded, not raised."""
    from .runner import run_flow

    try:
        flow = run_flow(quick, threads=threads, log=lambda s: log(f"  {s}"), **settings)
    except Exception as exc:  # the rest of the run stands
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", "results": flow}


def merge_flow(results: dict, flow: dict, source: str | None = None) -> dict:
    """``results`` with its flow section replaced by the results of a ``--only flow`` run, read
    from ``source`` (recorded, for the page to say where the section came from)."""
    from .report import validate

    validate(flow)
    section: dict = {"status": "ok", "results": flow}
    if source is not None:
        section["merged_from"] = source
    merged = dict(results, flow=section)
    validate(merged)
    return merged


def _repo_relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _settings(quick: bool, repeats: int | None) -> dict:
    if quick:
        return dict(repeats=repeats or 5, warmup=2, min_sample_s=0.003)
    return dict(repeats=repeats or 21, warmup=3, min_sample_s=0.02)


def _run_flow_only(args: argparse.Namespace) -> int:
    from .report import flow_section, write_json

    log = lambda s: print(s, file=sys.stderr, flush=True)
    log(f"tcd-core benchmark, flow-matching grid ({'quick' if args.quick else 'full'})")
    section = run_flow_section(
        args.quick, args.threads or None, log, **_settings(args.quick, args.repeats)
    )
    if section["status"] != "ok":
        print(f"error: {section['reason']}", file=sys.stderr)
        return 1
    out = args.out or Path("out/bench-flow")
    path = write_json(section["results"], out / "flow.json")
    print(flow_section({"flow": section}))
    log(f"wrote {path} in {section['results']['elapsed_s']:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render_docs is not None:
        import json

        from .report import read_json

        results = read_json(args.render_docs)
        if args.flow is not None:
            results = merge_flow(results, read_json(args.flow), _repo_relative(args.flow))
        gpu = json.loads(args.gpu.read_text(encoding="utf-8")) if args.gpu else None
        print(f"wrote {render_docs_files(results, gpu)}")
        return 0
    if args.device == "cuda":
        return _run_gpu(args)
    if args.only == "flow":
        return _run_flow_only(args)

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if args.threads == 1 and "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        if "intra_op_parallelism_threads" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD_XLA}".strip()

    from .contenders import cpu_contenders
    from .report import (
        flow_section,
        headline_table,
        jax_loop_section,
        plot,
        render_docs,
        results_table,
        write_json,
    )
    from .runner import run_cpu
    from .workloads import FULL_GRID, QUICK_GRID

    quick = args.quick
    settings = _settings(quick, args.repeats)
    workloads, mode = (QUICK_GRID, "quick") if quick else (FULL_GRID, "full")
    out = args.out or (Path("out/bench-quick") if quick else RESULTS_DIR)
    t0 = time.perf_counter()
    log = lambda s: print(s, file=sys.stderr, flush=True)
    log(
        f"tcd-core benchmark ({mode}): {len(workloads)} workloads, torch threads = "
        f"{args.threads or 'default'}, XLA_FLAGS = {os.environ.get('XLA_FLAGS', '')!r}"
    )
    results = run_cpu(
        workloads,
        threads=args.threads or None,
        contenders=cpu_contenders(include_jax=not args.no_jax),
        mode=mode,
        log=log,
        **settings,
    )
    if not args.no_jax:
        log("JAX loop target: the η = 0 study (benchmarks.eta_zero), constant and conv stand-ins")
        t_study = time.perf_counter()
        results["jax_loop"] = run_jax_loop(quick, args.repeats, log)
        results["elapsed_s"] += time.perf_counter() - t_study
    log("flow matching: FlowMatchTCDScheduler vs FlowMatchEulerDiscreteScheduler (issue 18)")
    t_flow = time.perf_counter()
    results["flow"] = run_flow_section(quick, args.threads or None, log, **settings)
    results["elapsed_s"] += time.perf_counter() - t_flow
    json_path = write_json(results, out / "cpu.json")
    docs = not quick and not args.no_docs
    if args.out is not None or not docs:  # a full default run's page and plot go to docs/
        png = plot(results, out / "performance.png")
        (out / "performance.md").write_text(
            render_docs(results, "performance.png" if png else None), encoding="utf-8"
        )
    print(
        f"torch.set_num_threads({args.threads}) for the CPU comparison"
        if args.threads
        else "library default thread counts"
    )
    print()
    print(headline_table(results))
    print()
    if "jax_loop" in results:
        print(jax_loop_section(results))
        print()
    print(flow_section(results))
    print()
    print(results_table(results))
    if docs:
        page = render_docs_files(results)
        log(f"wrote {page} and {DOCS_PLOT}")
    log(f"wrote {json_path} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
