"""Smoke tests of the benchmark harness: a tiny grid run in-process, the JSON schema, the tables,
the docs page, the plot, the timing and memory helpers, and the GPU mode's failure without CUDA.

No test looks at how long anything took: only at what the harness records.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO))

torch = pytest.importorskip("torch")

from benchmarks import report  # noqa: E402
from benchmarks.__main__ import main, render_docs_files  # noqa: E402
from benchmarks.contenders import cpu_contenders  # noqa: E402
from benchmarks.gpu import (  # noqa: E402
    SCHEDULERS,
    CudaUnavailable,
    _scheduler_loop,
    baseline_of,
    gpu_markdown,
    require_cuda,
)
from benchmarks.runner import SCHEMA, run_cpu  # noqa: E402
from benchmarks.timing import measure, numpy_peak_bytes, torch_peak_bytes  # noqa: E402
from benchmarks.workloads import Workload, floor_coefficients  # noqa: E402
from tcd_core import TCDConfig  # noqa: E402

WORKLOAD = Workload((1, 4, 8, 8), 4, 0.3)  # the headline loop (4 steps, η = 0.3), smallest
HARNESS_OWNED = {
    "reference",
    "core-torch",
    "core-compile",
    "core-numpy",
    "floor-torch",
    "floor-compile",
    "floor-numpy",
    "floor-jax-threefry",
    "floor-jax-rbg",
    "floor-jax-threefry-every",
}


@pytest.fixture(scope="module")
def results():
    threads = torch.get_num_threads()
    out = run_cpu(
        [WORKLOAD],
        repeats=2,
        warmup=1,
        min_sample_s=0.0,
        threads=1,
        mode="test",
        log=lambda s: None,
    )
    assert torch.get_num_threads() == threads, "run_cpu must restore torch's thread count"
    return out


def _rows(results):
    return {r["contender"]: r for r in results["results"]}


def test_one_row_per_contender_and_schema(results, tmp_path):
    report.validate(results)
    assert results["schema"] == SCHEMA
    keys = [c["key"] for c in results["contenders"]]
    assert keys == [c.key for c in cpu_contenders()]
    assert sorted(r["contender"] for r in results["results"]) == sorted(keys)
    path = report.write_json(results, tmp_path / "cpu.json")
    assert report.read_json(path) == json.loads(json.dumps(results))


def test_statuses(results):
    rows = _rows(results)
    for key, row in rows.items():
        if key in HARNESS_OWNED or key == "reference":
            assert row["status"] == "ok", (key, row.get("reason"))
        else:  # the adapters may be missing (developed alongside), but run when present
            module, attr = (
                ("tcd_jax", "sample") if "jax" in key else ("tcd_diffusers", "TCDScheduler")
            )
            present = hasattr(importlib.import_module(module), attr)
            assert row["status"] == ("ok" if present else "unavailable"), (key, row.get("reason"))
        if row["status"] == "ok":
            assert row["repeats"] == 2
            assert row["workload"]["steps"] == 4 and row["workload"]["eta"] == 0.3


def test_ratios(results):
    rows = _rows(results)
    assert rows["reference"]["vs_reference"] == 1.0
    by_key = {c["key"]: c for c in results["contenders"]}
    for key, row in rows.items():
        if row["status"] != "ok":
            continue
        if by_key[key]["is_floor"]:
            assert row["vs_floor"] == 1.0
        floor = rows[by_key[key]["floor"]]
        expected = row["per_step_us"]["median"] / floor["per_step_us"]["median"]
        assert row["vs_floor"] == pytest.approx(expected)
        expected_min = row["per_step_us"]["min"] / floor["per_step_us"]["min"]
        assert row["vs_floor_min"] == pytest.approx(expected_min)
        ref = rows["reference"]["per_step_us"]["median"]
        assert row["vs_reference"] == pytest.approx(row["per_step_us"]["median"] / ref)
        assert row["loop_us"]["median"] == pytest.approx(row["per_step_us"]["median"] * 4)


def test_outputs_agree_with_the_reference(results):
    rows = _rows(results)
    # Same torch generator stream as the reference: the core is bit-identical, the floors (TCD's
    # coefficients folded in float64) agree within float32 rounding.
    assert rows["core-torch"]["check"]["identical"] is True
    assert rows["core-compile"]["check"]["within_tolerance"] is True
    assert rows["floor-torch"]["check"]["within_tolerance"] is True
    assert rows["floor-compile"]["check"]["within_tolerance"] is True
    if rows["adapter"]["status"] == "ok":  # recorded; its correctness is tests/diffusers' job
        assert set(rows["adapter"]["check"]) == {
            "identical",
            "max_abs_diff",
            "within_tolerance",
            "against",
        }
    assert rows["reference"]["check"] is None and rows["core-numpy"]["check"] is None
    # JAX: the same key and fold_in scheme, so the floor that draws at every step (with zero
    # weight where the reference draws none) must land where the floor does.
    assert rows["floor-jax-threefry-every"]["check"]["against"] == "floor-jax-threefry"
    assert rows["floor-jax-threefry-every"]["check"]["within_tolerance"] is True
    for key in ("tcd-jax-threefry", "tcd-jax-jit-threefry", "tcd-jax-jit-rbg"):
        if rows[key]["status"] == "ok":  # recorded; correctness is tests/jax's job
            assert rows[key]["check"]["against"] == key.replace("tcd-jax-jit", "floor-jax").replace(
                "tcd-jax", "floor-jax"
            )


def test_memory_is_recorded_where_measurable(results):
    rows = _rows(results)
    # The torch floor holds the step's noise and its output at once: at least 2 latents.
    assert rows["floor-torch"]["peak_extra_latents"] >= 2.0
    assert rows["floor-numpy"]["peak_extra_latents"] >= 2.0
    assert rows["reference"]["peak_extra_bytes"] >= rows["floor-torch"]["peak_extra_bytes"]
    assert rows["core-compile"]["peak_extra_bytes"] is None  # compiled code: not measurable
    assert rows["core-compile"]["recompiled"] is False
    assert set(results["compile_s"]) >= {"core-compile", "floor-compile"}


def test_tables_and_docs(results, tmp_path):
    table = report.results_table(results)
    lines = table.splitlines()
    assert len(lines) == 2 + len(results["results"])
    assert len({line.count("|") for line in lines}) == 1, "ragged markdown table"
    for c in results["contenders"]:
        assert c["name"] in table
    head = report.headline_table(results)
    adapter_row = next(line for line in head.splitlines() if "adapter ≤ 0.30×" in line)
    assert ("not measured" in adapter_row) == (_rows(results)["adapter"]["status"] != "ok")
    page = render_docs_files(
        results, page=tmp_path / "performance.md", plot_file=tmp_path / "img" / "performance.png"
    )
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Performance")
    assert results["machine"]["cpu_model"] in text
    assert "torch threads" in text and "](img/performance.png)" in text
    assert (tmp_path / "img" / "performance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_rejects_malformed(results):
    bad = json.loads(json.dumps(results))
    del bad["machine"]
    with pytest.raises(ValueError, match="machine"):
        report.validate(bad)
    bad = json.loads(json.dumps(results))
    row = next(r for r in bad["results"] if r["status"] == "ok")
    row["per_step_us"]["min"] = row["per_step_us"]["max"] + 1
    with pytest.raises(ValueError, match="min <= median <= max"):
        report.validate(bad)
    bad = json.loads(json.dumps(results))
    bad["results"][0]["contender"] = "nobody"
    with pytest.raises(ValueError, match="unknown contender"):
        report.validate(bad)


def test_measure_calls_and_stats():
    calls = {"a": 0, "b": 0}

    def make(name):
        def fn():
            calls[name] += 1

        return fn

    stats = measure({"a": make("a"), "b": make("b")}, repeats=3, warmup=2, min_sample_s=0.0)
    for name in ("a", "b"):
        assert stats[name]["repeats"] == 3 and stats[name]["inner"] == 1
        assert calls[name] == 2 + 3
        assert stats[name]["min"] <= stats[name]["median"] <= stats[name]["max"]


def test_torch_peak_bytes_counts_fresh_storage_only():
    base = torch.zeros(1000)

    def fn():
        a = torch.empty(1000)  # 4000 bytes
        b = a.view(10, 100)  # a view: nothing new
        c = base.mul(2)  # 4000 bytes
        c.add_(1)  # in place: nothing new
        del a, b
        d = torch.empty(500)  # a's 4000 bytes are free again
        return c, d

    assert torch_peak_bytes(fn) == 8000


def test_numpy_peak_bytes():
    assert numpy_peak_bytes(lambda: np.ones(100_000)) >= 800_000


def test_floor_coefficients_shape_the_noise_like_the_reference():
    _a, _b, c, draws = floor_coefficients(TCDConfig(), 4, 0.3)
    assert draws == [True, True, True, False]  # no noise on the last step
    assert c[-1] == 0.0 and all(ci > 0 for ci in c[:-1])
    _a0, _b0, c0, d0 = floor_coefficients(TCDConfig(), 4, 0.0)
    assert not any(d0) and c0 == [0.0] * 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure without CUDA")
def test_gpu_mode_fails_clearly_without_cuda(capsys):
    with pytest.raises(CudaUnavailable, match="is_available"):
        require_cuda()
    assert main(["--device", "cuda"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("eta", [0.3, 0.0])
def test_gpu_scheduler_loops_run_on_cpu_and_match_their_reference(eta):
    """The GPU mode's per-scheduler loops (TCD and LCM, ours and diffusers'), run on the CPU: each
    adapter's final latents equal its own algorithm's reference bit for bit, and the two
    algorithms differ (so an LCM row checked against the TCD reference would fail)."""
    import importlib

    from benchmarks.workloads import make_inputs

    wl = Workload((1, 4, 8, 8), 4, eta)
    inputs = make_inputs(wl)
    x0, eps = torch.from_numpy(inputs.latents), torch.from_numpy(inputs.model_output)
    finals = {}
    for key, module, name in SCHEDULERS:
        cls = getattr(importlib.import_module(module), name)
        begin, step, _, _ = _scheduler_loop(torch, cls, TCDConfig(), wl, x0, eps, "cpu")
        state = begin()
        for i in range(wl.steps):
            step(state, i)
        finals[key] = state["x"]
    for key in finals:
        assert torch.equal(finals[key], finals[baseline_of(key)]), key
    assert not torch.equal(finals["adapter"], finals["lcm-adapter"])
    assert [baseline_of(k) for k, _, _ in SCHEDULERS] == [
        "reference",
        "reference",
        "lcm-reference",
        "lcm-reference",
    ]


def test_gpu_markdown_renders_a_recorded_run():
    wl = Workload((1, 4, 64, 64), 4, 0.3).to_dict()
    ok = {
        "status": "ok",
        "device_us_per_step": {"median": 10.0},
        "host_us_per_step": {"median": 30.0},
        "syncs_set_timesteps": 1,
        "syncs_per_step": 0.0,
    }
    gpu = {
        "gpu": "Some GPU",
        "created": "now",
        "results": [
            dict(ok, workload=wl, contender="reference", syncs_per_step=2.0),
            dict(
                ok,
                workload=wl,
                contender="adapter",
                identical_to_reference=True,
                max_abs_diff=0.0,
                device_vs_reference=0.5,
            ),
        ],
        "cuda_graphs": [
            {
                "workload": wl,
                "contender": "adapter",
                "captured": True,
                "device_us_per_step": {"median": 3.0},
                "replay_equals_eager": True,
            },
            {
                "workload": wl,
                "contender": "reference",
                "captured": False,
                "error": "RuntimeError: operation not permitted when stream is capturing",
            },
        ],
        "jax": {"status": "unavailable", "reason": "benchmarks/jax_gpu.py is not present"},
    }
    text = gpu_markdown(gpu)
    assert "| 1x4x64x64 | 0.3 | adapter | 10.0 | 30.0 | 0.50× | 1 | 0.00 | bit-identical |" in text
    assert "stream is capturing" in text and "jax_gpu.py is not present" in text
    assert "η = 0 with a traced η" not in text  # recorded before the study existed
    # The η = 0 strategy study, recorded by a GPU run: its table is rendered.
    cells = [
        {"model": "conv", "shape": [1, 4, 64, 64], "eta": 0.0, "strategy": name}
        | {"us_per_step": us, "over_floor": us / 10.0, "compile_s": 1.0}
        for name, us in (
            ("floor", 10.0),
            ("always-draw", 12.0),
            ("step-cond", 25.0),
            ("loop-cond", 11.0),
        )
    ]
    gpu["jax_eta_zero"] = {"status": "ok", "results": {"rows": cells}}
    text = gpu_markdown(gpu)
    assert "η = 0 with a traced η" in text
    assert (
        "| conv | 1×4×64×64 | 0 | 10.0 (1.00×; 1.00 s) | — | 12.0 (1.20×; 1.00 s) | "
        "25.0 (2.50×; 1.00 s) | 11.0 (1.10×; 1.00 s) |"
    ) in text  # recorded before the static-η strategy existed: its column reads "—"
    assert (
        "| conv | 1×4×64×64 | 0 | tcd_jax loop (threefry, jit, traced η) | 25.0 | 10.0 | 2.50× "
        in (text)
        and "**missed**" in text
    )


def test_adapter_target_requires_identical_output(results):
    fake = json.loads(json.dumps(results))
    rows = [r for r in fake["results"] if r["contender"] != "adapter"]
    adapter = dict(next(r for r in rows if r["contender"] == "core-torch"), contender="adapter")
    ref_us = next(r for r in rows if r["contender"] == "reference")["per_step_us"]["median"]
    adapter["per_step_us"] = {"median": ref_us * 0.1, "min": ref_us * 0.1, "max": ref_us * 0.1}
    fake["results"] = rows + [adapter]
    for identical, met in ((True, True), (False, False)):
        adapter["check"] = {"identical": identical, "max_abs_diff": 0.0, "within_tolerance": True}
        first = report.headline(fake)[0]
        assert (first["contender"], first["shape"], first["target"]) == ("adapter", "1x4x8x8", 0.3)
        assert first["ratio"] == pytest.approx(0.1)
        assert first["met"] is met


def _jax_loop(us: dict[tuple[str, float, str], float]) -> dict:
    rows = [
        {
            "model": model,
            "shape": [1, 4, 64, 64],
            "eta": eta,
            "strategy": strategy,
            "us_per_step": t,
            "over_floor": t / us[(model, eta, "floor")],
            "compile_s": 0.5,
            "max_abs_diff": 0.0,
            "agrees": True,
        }
        for (model, eta, strategy), t in us.items()
    ]
    return {"status": "ok", "results": {"rows": rows}}


def test_jax_loop_verdicts_on_the_docs_page(results, tmp_path):
    """The JAX loop's verdicts come from the conv stand-in's rows (synthetic numbers here), at
    every η; the constant stand-in's rows and the main grid's JAX rows get none."""
    from benchmarks import eta_zero

    fake = json.loads(json.dumps(results))
    fake["jax_loop"] = _jax_loop(
        {
            ("constant", 0.0, "floor"): 4.0,
            ("constant", 0.0, "static-eta"): 9.0,  # 2.25×: information only
            ("constant", 0.0, "step-cond"): 9.0,
            ("conv", 0.0, "floor"): 700.0,
            ("conv", 0.0, "static-eta"): 690.0,  # met
            ("conv", 0.0, "step-cond"): 1000.0,  # 1.43×: missed
            ("conv", 0.3, "floor"): 800.0,
            ("conv", 0.3, "static-eta"): 850.0,  # met
            ("conv", 0.3, "step-cond"): 900.0,  # met
        }
    )
    report.validate(fake)
    text = report.render_docs(fake, None)
    section = text[text.index("## JAX loop target") : text.index("## Scaling")]
    assert section.splitlines()[0].endswith("{#jax-loop-target}")  # the JAX guide links it
    assert f"≤ {eta_zero.TARGET:g}× its floor at every η" in section
    assert (
        "| conv | 1×4×64×64 | 0 | tcd_jax loop (threefry, jit, traced η) | 1000.0 | 700.0 | "
        in (section)
    )
    assert section.count("**missed**") == 1 and section.count("| met |") == 3
    assert section.count("(information only)") == 2
    for h in report.headline(fake):  # the constant stand-in's JAX rows: no target, no verdict
        if h["contender"].startswith("tcd-jax"):
            assert h["target"] is None and h["met"] is None, h
            if h["contender"].startswith("tcd-jax-jit") and h["baseline"] in (
                "floor-jax-threefry",
                "floor-jax-rbg",
            ):
                assert "constant stand-in: information only" in h["what"], h
    # No study in the run (--no-jax, or an older results file): the section says so.
    assert "Not measured in this run" in report.render_docs(results, None)
    bad = json.loads(json.dumps(fake))
    del bad["jax_loop"]["results"]["rows"][0]["us_per_step"]
    with pytest.raises(ValueError, match="us_per_step"):
        report.validate(bad)
    bad["jax_loop"] = {"status": "error"}
    with pytest.raises(ValueError, match="reason"):
        report.validate(bad)
