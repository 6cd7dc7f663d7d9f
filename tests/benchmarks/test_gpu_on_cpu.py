"""The GPU benchmark's own code, run on the CPU: ``python -m benchmarks --device cuda`` with a
stand-in for ``torch.cuda``, and ``benchmarks/jax_gpu.py`` on JAX's CPU device.

Neither has ever run on a GPU (no session so far was lent one). A session that is lent one gets
15 minutes of device time, so everything but the CUDA calls themselves is proven here first:
the loops, the row and graph records, the reference checks, the JSON the CLI writes and the docs
section rendered from it. The stand-in implements only what ``benchmarks/gpu.py`` calls (events
timed with ``perf_counter``; synchronisation, streams, graphs and the sync debug mode as no-ops
or eager runs), so the numbers mean nothing and no test reads them as times.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO))

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks import gpu  # noqa: E402
from benchmarks.workloads import Workload  # noqa: E402

TINY = [Workload((1, 4, 8, 8), 4, 0.3), Workload((1, 4, 8, 8), 4, 0.0)]


class _Event:
    def __init__(self, enable_timing: bool = False) -> None:
        self.at = 0.0

    def record(self) -> None:
        self.at = time.perf_counter()

    def elapsed_time(self, end: _Event) -> float:
        return (end.at - self.at) * 1e3  # milliseconds, as CUDA events report them


class _Stream:
    def wait_stream(self, other: _Stream) -> None:
        pass


class _Graph:
    """Captures nothing: the body runs eagerly inside ``graph(...)``, and a replay leaves its
    outputs as they are. That is a real replay only where no noise is drawn: a real replay
    re-draws from the re-seeded generator, while the stand-in's capture drew from wherever the
    generator was."""

    def register_generator_state(self, generator: Any) -> None:
        pass

    def replay(self) -> None:
        pass


def _fake_cuda(calls: list[str]) -> SimpleNamespace:
    def note(name: str) -> Any:
        return lambda *args, **kwargs: calls.append(name)

    return SimpleNamespace(
        is_available=lambda: True,
        synchronize=note("synchronize"),
        set_sync_debug_mode=note("set_sync_debug_mode"),
        Event=_Event,
        Stream=_Stream,
        current_stream=_Stream,
        stream=lambda s: contextlib.nullcontext(),
        CUDAGraph=_Graph,
        graph=lambda g: contextlib.nullcontext(),
        get_device_name=lambda i: "CPU stand-in",
    )


class _TorchOnCpu:
    """torch, with ``torch.cuda`` the stand-in, the device "cuda" mapped to the CPU, and
    ``torch.compile`` the identity (compiling is proven by the torch.compile tests; here it would
    only cost minutes)."""

    def __init__(self, calls: list[str]) -> None:
        self.cuda = _fake_cuda(calls)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def device(name: Any) -> Any:
        return torch.device("cpu" if str(name).startswith("cuda") else name)

    @staticmethod
    def compile(fn: Any, **options: Any) -> Any:
        return fn


@pytest.fixture
def on_cpu(monkeypatch) -> SimpleNamespace:
    """What the benchmark called: CUDA functions (``calls``) and JAX studies (``studies``)."""
    seen = SimpleNamespace(calls=[], studies=[])
    monkeypatch.setattr(gpu, "require_cuda", lambda: _TorchOnCpu(seen.calls))
    monkeypatch.setattr(gpu, "GPU_GRID", TINY)

    def no_subprocess(timeout_s: float, module: str = "jax_gpu") -> dict[str, Any]:
        seen.studies.append(module)  # jax_gpu.py runs in-process below; eta_zero has its tests
        return {"status": "unavailable", "reason": f"not run on the CPU stand-in ({module})"}

    monkeypatch.setattr(gpu, "_run_jax_gpu", no_subprocess)
    return seen


def test_the_gpu_benchmark_runs_end_to_end_on_a_cpu_stand_in(on_cpu, tmp_path, capsys):
    assert cli.main(["--device", "cuda", "--out", str(tmp_path), "--repeats", "2"]) == 0
    result = json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))
    assert result["schema"] == gpu.GPU_SCHEMA and result["gpu"] == "CPU stand-in"
    assert result["unavailable"] == {}
    # every contender ran on every cell; LCM only where η > 0 (it has no η)
    keys = {key for key, _, _ in gpu.SCHEDULERS} | {"core-torch", "core-compile", "floor-torch"}
    for wl in TINY:
        label = wl.to_dict()
        got = {r["contender"] for r in result["results"] if r["workload"] == label}
        want = keys if wl.eta > 0 else {k for k in keys if not k.startswith("lcm-")}
        assert got == want, wl.label
    for row in result["results"]:
        assert row["status"] == "ok", row
        assert row["device_us_per_step"]["median"] > 0 and row["host_us_per_step"]["min"] > 0
        assert row["baseline"] == gpu.baseline_of(row["contender"])
        if row["contender"] != row["baseline"]:
            assert "device_vs_reference" in row
        if row["contender"] in ("adapter", "lcm-adapter", "core-torch", "core-compile"):
            # the same noise from the same generator: the reference's result, bit for bit
            assert row["identical_to_reference"] is True, row
            assert row["max_abs_diff"] == 0.0
        if row["contender"] == "floor-torch":  # folded coefficients: rounding, not the same bits
            assert row["max_abs_diff"] < 1e-5
    # one capture per adapter and 4-step cell, and the reference's once, last of all
    graphs = result["cuda_graphs"]
    assert [g["contender"] for g in graphs] == ["adapter", "lcm-adapter", "adapter", "reference"]
    for g in graphs:
        assert g["captured"] is True and isinstance(g["replay_equals_eager"], bool), g
        assert g["device_us_per_step"]["median"] >= 0 and "error" not in g
        if g["workload"]["eta"] == 0:  # no noise: the stand-in's eager capture is the replay
            assert g["replay_equals_eager"] is True and g["replay_max_abs_diff"] == 0.0
    assert result["jax"]["status"] == result["jax_eta_zero"]["status"] == "unavailable"
    assert on_cpu.studies == ["jax_gpu", "eta_zero"]
    assert {"set_sync_debug_mode", "synchronize"} <= set(on_cpu.calls)
    # the markdown the CLI prints, and the docs page's GPU section from the written JSON
    out = capsys.readouterr().out
    assert "CPU stand-in" in out
    from benchmarks.report import read_json, render_docs

    cpu = read_json(REPO / "benchmarks" / "results" / "cpu.json")
    page = render_docs(cpu, None, gpu=result)
    assert gpu.gpu_markdown(result).strip() in page


def test_jax_gpu_study_runs_on_jax_cpu(monkeypatch, tmp_path):
    pytest.importorskip("jax")
    from benchmarks import jax_gpu

    monkeypatch.setattr(jax_gpu, "SHAPES", ((1, 4, 8, 8),))
    path = tmp_path / "jax_gpu.json"
    result = jax_gpu.main(["--repeats", "2", "--json", str(path)])
    assert json.loads(path.read_text(encoding="utf-8")) == result
    assert [(r["shape"], r["prng"]) for r in result["rows"]] == [
        ([1, 4, 8, 8], "threefry2x32"),
        ([1, 4, 8, 8], "rbg"),
    ]
    for row in result["rows"]:
        for key in ("loop_us_per_step", "floor_us_per_step", "draw_us_per_step"):
            assert row[key] > 0
        assert row["loop_over_floor"] == row["loop_us_per_step"] / row["floor_us_per_step"]
