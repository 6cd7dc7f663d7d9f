"""The flow-matching rows of the benchmark (issue 18): FlowMatchTCDScheduler against diffusers'
FlowMatchEulerDiscreteScheduler, plain and stochastic. A tiny flow grid run in-process: each
contender runs in its cells, ours gives its reference's latents bit for bit at equal work, the
ratios, verdicts, schema, page and CLI.

No test looks at how long anything took: only at what the harness records.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO))

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import benchmarks.__main__ as cli  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.contenders import flow_contenders, flow_reference  # noqa: E402
from benchmarks.runner import run_flow  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    FLOW_GRID,
    QUICK_FLOW_GRID,
    Workload,
    flux_mu,
    flux_sigmas,
    grid,
    make_inputs,
)

ETAS = (0.0, 0.3, 1.0)
# Tiny latents, both dtypes, every η: each cell runs in milliseconds.
GRID = grid(shapes=((1, 16, 64),), steps=(4,), etas=ETAS, dtypes=("float32", "bfloat16"))
OURS, EULER, STOCHASTIC = "flow-tcd", "flow-euler", "flow-euler-stochastic"
CPU_JSON = REPO / "benchmarks" / "results" / "cpu.json"


@pytest.fixture(scope="module")
def flow():
    out = run_flow(
        True, workloads=GRID, repeats=2, warmup=1, min_sample_s=0.0, threads=1, log=lambda s: None
    )
    assert gc.get_freeze_count() == 0, "run_flow must unfreeze the heap it froze"
    return out


def _cells(flow):
    cells: dict[tuple, dict[str, dict]] = {}
    for r in flow["results"]:
        w = r["workload"]
        cells.setdefault((w["dtype"], w["eta"]), {})[r["contender"]] = r
    return cells


def test_each_contender_runs_in_its_cells(flow):
    report.validate(flow)
    assert flow["mode"] == "flow-quick"
    assert [c["key"] for c in flow["contenders"]] == [EULER, STOCHASTIC, OURS]
    cells = _cells(flow)
    assert sorted(cells) == sorted((d, e) for d in ("float32", "bfloat16") for e in ETAS)
    for (_dtype, eta), rows in cells.items():
        reference = EULER if eta == 0 else STOCHASTIC
        assert set(rows) == {reference, OURS}
        for key, row in rows.items():
            assert row["status"] == "ok", (key, row.get("reason"))
            assert row["reference"] == reference
            assert row["vs_floor"] is None  # no floor on the flow rows
        assert rows[reference]["vs_reference"] == 1.0
        ours, ref = rows[OURS], rows[reference]
        assert ours["vs_reference"] == pytest.approx(
            ours["per_step_us"]["median"] / ref["per_step_us"]["median"]
        )
        assert ours["vs_reference_min"] == pytest.approx(
            ours["per_step_us"]["min"] / ref["per_step_us"]["min"]
        )


def test_ours_gives_the_references_latents_at_equal_work(flow):
    """η = 0: the Euler step's latents, η = 1: the stochastic Euler step's (same generator), bit
    for bit, in float32 and bfloat16; η = 0.3 is not checked (different latents by design)."""
    for (_dtype, eta), rows in _cells(flow).items():
        check = rows[OURS]["check"]
        if eta == 0.3:
            assert check is None
            continue
        assert check == {
            "identical": True,
            "max_abs_diff": 0.0,
            "within_tolerance": True,
            "against": EULER if eta == 0 else STOCHASTIC,
        }
        for key in (EULER, STOCHASTIC):
            if key in rows:
                assert rows[key]["check"] is None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_loops_compute_what_the_checks_claim(dtype):
    """The contenders' loops directly: equal latents where the harness says so, different ones
    where it must (the checks would be vacuous otherwise), in the latents' dtype."""
    contenders = {c.key: c for c in flow_contenders()}
    for c in contenders.values():
        c.load()
    finals = {}
    for eta in ETAS:
        inputs = make_inputs(Workload((1, 16, 64), 4, eta, dtype))
        for key in (flow_reference(inputs.workload), OURS):
            x = contenders[key].prepare(inputs).run()
            assert x.dtype == getattr(torch, dtype) and x.shape == (1, 16, 64)
            assert torch.equal(x, contenders[key].prepare(inputs).run()), "not reproducible"
            finals[key, eta] = x
    assert torch.equal(finals[OURS, 0.0], finals[EULER, 0.0])
    assert torch.equal(finals[OURS, 1.0], finals[STOCHASTIC, 1.0])
    assert not torch.equal(finals[OURS, 0.3], finals[STOCHASTIC, 0.3])
    assert not torch.equal(finals[OURS, 0.3], finals[OURS, 0.0])
    assert not torch.equal(finals[STOCHASTIC, 1.0], finals[EULER, 0.0])


def test_the_flow_grid():
    """FLUX-shaped latents (4096 tokens, and 256 where overhead dominates), 4 and 8 steps, every
    η, both dtypes; --quick runs every flow contender in at least one cell; FluxPipeline's mu."""
    assert {w.shape for w in FLOW_GRID} == {(1, 256, 64), (1, 4096, 64)}
    assert {w.steps for w in FLOW_GRID} == {4, 8}
    assert {w.eta for w in FLOW_GRID} == set(ETAS)
    assert {w.dtype for w in FLOW_GRID} == {"float32", "bfloat16"}
    assert len(set(FLOW_GRID)) == len(FLOW_GRID) == 24
    for c in flow_contenders():
        assert any(c.runs_on(w) for w in QUICK_FLOW_GRID), c.key
    assert len(QUICK_FLOW_GRID) <= 3
    assert flux_mu(4096) == pytest.approx(1.15) and flux_mu(256) == pytest.approx(0.5)
    assert flux_sigmas(4).tolist() == [1.0, 0.75, 0.5, 0.25]
    wl = Workload((1, 4096, 64), 4, 0.3, "bfloat16")
    assert wl.nbytes == 2 * 4096 * 64 and wl.to_dict()["dtype"] == "bfloat16"
    assert wl.label == "1x4096x64 bfloat16 4 steps eta=0.3"
    assert Workload((1, 4, 8, 8), 4, 0.3).label == "1x4x8x8 4 steps eta=0.3"  # unchanged
    with pytest.raises(ValueError, match="dtype"):
        Workload((1, 4), 4, 0.3, "float64")


def test_verdicts(flow):
    verdicts = report.flow_verdicts(flow)
    ours = [r for r in flow["results"] if r["contender"] == OURS]
    assert len(verdicts) == len(ours)
    for v, row in zip(verdicts, ours, strict=True):
        assert v["ratio"] == row["vs_reference"] and v["baseline"] == row["reference"]
        if v["eta"] == 0.3:
            assert v["target"] is None and v["met"] is None and not v["equal_work"]
        else:
            assert v["target"] == 1.0 and v["met"] == (v["ratio"] <= 1.0)


def _with_times(flow, ours_us: float, ref_us: float, identical: bool = True):
    """``flow`` with every cell's times set: ours ``ours_us`` and the reference ``ref_us`` per
    step (median and min), ratios recomputed; ours' checks read ``identical``."""
    fake = json.loads(json.dumps(flow))
    for r in fake["results"]:
        us = ours_us if r["contender"] == OURS else ref_us
        r["per_step_us"] = {"median": us, "min": us, "max": us}
        r["vs_reference"] = r["vs_reference_min"] = us / ref_us
        if r["contender"] == OURS and r["check"]:
            r["check"]["identical"] = identical
    return fake


def test_verdicts_met_missed_and_identity_required(flow):
    def equal(fake):
        return [v for v in report.flow_verdicts(fake) if v["equal_work"]]

    assert all(v["met"] is True for v in equal(_with_times(flow, 90.0, 100.0)))
    assert all(v["met"] is True for v in equal(_with_times(flow, 100.0, 100.0)))  # no slower
    assert all(v["met"] is False for v in equal(_with_times(flow, 101.0, 100.0)))
    # faster, but not the reference's latents: a speed target only counts with them intact
    assert all(v["met"] is False for v in equal(_with_times(flow, 50.0, 100.0, identical=False)))
    table = report.flow_verdicts_table(_with_times(flow, 50.0, 100.0, identical=False))
    assert table.count("**missed** (final latents differ from the reference)") == 4
    table = report.flow_verdicts_table(_with_times(flow, 80.0, 100.0))
    assert "| 0.80× | 0.80× | 1.25× | ≤ 1.00× | met |" in table
    assert table.count("| met |") == 4 and table.count("| — | — |") == 2  # η = 0.3: no target
    lines = table.splitlines()
    assert len(lines) == 2 + 6 and len({line.count("|") for line in lines}) == 1


def test_schema_of_the_flow_section(flow):
    results = cli.merge_flow(report.read_json(CPU_JSON), flow)
    report.validate(results)
    for bad_section in (
        {"status": "ok"},
        {"status": "error"},
        {"status": "maybe", "reason": "?"},
        {"status": "ok", "results": dict(flow, flow={"status": "ok"})},
        {"status": "ok", "results": flow, "merged_from": 3},
    ):
        with pytest.raises(ValueError, match=r"results\['flow'\]"):
            report.validate(dict(results, flow=bad_section))
    bad = json.loads(json.dumps(results))
    del bad["flow"]["results"]["results"][0]["per_step_us"]
    with pytest.raises(ValueError, match=r"results\['flow'\]\['results'\].*per_step_us"):
        report.validate(bad)
    report.validate(dict(results, flow={"status": "error", "reason": "ImportError: no"}))
    assert "merged_from" not in results["flow"]
    assert cli.merge_flow(results, flow, "x/flow.json")["flow"]["merged_from"] == "x/flow.json"


def test_the_page_has_the_flow_section(flow, tmp_path):
    """Merged into the committed results file (recorded before the flow rows: no dtype or
    reference fields in its rows), the page gains the flow section and keeps the rest."""
    base = report.read_json(CPU_JSON)
    before = report.render_docs(base, None)
    assert "Not measured in this run" in before[before.index("## Flow matching") :]
    text = report.render_docs(cli.merge_flow(base, flow), None)
    section = text[text.index("## Flow matching") : text.index("## Scaling")]
    assert section.splitlines()[0].endswith("{#flow-matching}")
    assert "Target met in" in section and "of 4 equal-work cells" in section
    assert "diffusers FlowMatchEulerDiscreteScheduler, stochastic (reference, η > 0)" in section
    assert "| 1x16x64 | bfloat16 | 4 | 1 | tcd_diffusers FlowMatchTCDScheduler |" in section
    assert "bit-identical |" in section and "DIFFERS" not in section
    assert "mode `flow-quick`" in section

    # outside the flow section, the page is what it was
    def strip(t):
        return t[: t.index("## Flow matching")] + t[t.index("## Scaling") :]

    assert strip(text) == strip(before)


def test_cli_only_flow_then_merge_into_the_page(tmp_path, monkeypatch, capsys):
    assert cli.main(["--only", "flow", "--quick", "--repeats", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Target met in" in out and "of 2 equal-work cells" in out
    flow = report.read_json(tmp_path / "flow.json")
    assert flow["mode"] == "flow-quick" and "flow" not in flow
    assert {r["contender"] for r in flow["results"]} == {OURS, EULER, STOCHASTIC}
    page, plot = tmp_path / "performance.md", tmp_path / "img" / "performance.png"
    render = cli.render_docs_files
    monkeypatch.setattr(
        cli,
        "render_docs_files",
        lambda results, gpu=None: render(results, gpu, page=page, plot_file=plot),
    )
    argv = ["--render-docs", str(CPU_JSON), "--flow", str(tmp_path / "flow.json")]
    assert cli.main(argv) == 0
    text = page.read_text(encoding="utf-8")
    assert "Target met in" in text[text.index("## Flow matching") :]
    assert "--only flow" in text  # the reproduce block names the command
    # where the section came from: the header's command and the section say so
    source = str((tmp_path / "flow.json").resolve())
    assert f"--render-docs benchmarks/results/cpu.json --flow {source}`. -->" in text
    assert f"and merged from `{source}`." in text
