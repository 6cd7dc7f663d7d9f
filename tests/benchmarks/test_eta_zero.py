"""The η = 0 strategy study (``python -m benchmarks.eta_zero``): every strategy runs, computes
the shipped loop's latents, and the table renders. No test looks at how long anything took."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO))

pytest.importorskip("jax")

from benchmarks import eta_zero  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("eta_zero") / "eta_zero.json"
    result = eta_zero.main(["--quick", "--repeats", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    return result


def test_every_cell_is_measured(result):
    cells = {(r["model"], tuple(r["shape"]), r["eta"], r["strategy"]) for r in result["rows"]}
    expected = {
        (m, s, e, k)
        for m in eta_zero.MODELS
        for s in eta_zero.QUICK_SHAPES
        for e in eta_zero.ETAS
        for k in eta_zero.STRATEGIES
    }
    assert cells == expected and len(result["rows"]) == len(expected)
    for row in result["rows"]:
        assert row["us_per_step"] > 0 and row["compile_s"] >= 0


def test_over_floor_is_the_ratio_to_the_floor_of_the_same_cell(result):
    """Each row's ``over_floor`` is its time over that of the floor row of its own (stand-in,
    latents, η) cell, recomputed here from ``us_per_step``; there is exactly one floor per cell."""
    floors: dict[tuple, dict] = {}
    for row in result["rows"]:
        if row["strategy"] == "floor":
            cell = (row["model"], tuple(row["shape"]), row["eta"])
            assert cell not in floors, cell
            floors[cell] = row
    for row in result["rows"]:
        floor = floors[(row["model"], tuple(row["shape"]), row["eta"])]
        expected = row["us_per_step"] / floor["us_per_step"]
        assert row["over_floor"] == pytest.approx(expected, rel=1e-9), row


def test_every_strategy_computes_the_shipped_loops_latents(result):
    """The comparison is only meaningful if all four loops compute the same thing: within
    1e-5·(1+max|x|) of ``tcd_jax.sample`` (the floor folds its coefficients in float64)."""
    for row in result["rows"]:
        assert row["agrees"], row


def test_the_strategies_differ_where_they_claim_to():
    """At η = 0.3 the strategies that draw differ from a loop without noise; at η = 0 all equal
    it (so a strategy that silently drew nothing would fail the agreement check above)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import tcd_jax

    shape = eta_zero.QUICK_SHAPES[0]
    model = eta_zero._models(jax, shape)["conv"]
    host_eta, traced = eta_zero._strategies(jax, tcd_jax, model)
    assert set(host_eta) | set(traced) == set(eta_zero.STRATEGIES)
    assert set(host_eta) == set(eta_zero.HOST_ETA)
    x = jnp.ones(shape) * 0.5
    eps = jnp.zeros(shape)
    key = tcd_jax.prng_key(3)
    quiet = np.asarray(host_eta["floor"](0.0)(x, key, eps))
    for name, fn in traced.items():
        np.testing.assert_allclose(np.asarray(fn(x, key, eps, jnp.float32(0.0))), quiet, atol=1e-5)
        noisy = np.asarray(fn(x, key, eps, jnp.float32(0.3)))
        assert np.abs(noisy - quiet).max() > 1e-2, name
    static = host_eta["static-eta"]
    np.testing.assert_allclose(np.asarray(static(0.0)(x, key, eps)), quiet, atol=1e-5)
    assert np.abs(np.asarray(static(0.3)(x, key, eps)) - quiet).max() > 1e-2


def test_markdown_has_one_row_per_cell(result):
    table = eta_zero.markdown(result)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(eta_zero.MODELS) * len(eta_zero.QUICK_SHAPES) * len(eta_zero.ETAS)
    assert "step-cond (shipped)" in lines[0]


def _row(model, eta, strategy, us, agrees=True):
    return {
        "model": model,
        "shape": [1, 4, 64, 64],
        "eta": eta,
        "strategy": strategy,
        "us_per_step": us,
        "over_floor": float("nan"),  # the verdicts must not read it: they recompute the ratio
        "compile_s": 0.5,
        "max_abs_diff": 0.0,
        "agrees": agrees,
    }


def test_verdicts_follow_the_stated_rule():
    """Synthetic numbers: a tcd_jax loop row with the conv stand-in meets the target when its µs
    per step over its own cell's floor is ≤ TARGET (and its latents agree); the constant
    stand-in's rows get no verdict, however far from the floor."""
    t = eta_zero.TARGET
    rows = [
        _row("constant", 0.0, "floor", 10.0),
        _row("constant", 0.0, "static-eta", 50.0),  # 5×: no verdict
        _row("constant", 0.0, "step-cond", 11.0),
        _row("conv", 0.0, "floor", 100.0),
        _row("conv", 0.0, "static-eta", 100.0 * t),  # at the target: met
        _row("conv", 0.0, "step-cond", 100.0 * t * 1.01),  # just over: missed
        _row("conv", 0.0, "always-draw", 500.0),  # not a loop row: not judged
        _row("conv", 0.3, "floor", 1000.0),  # the other η's floor: must not be used at η = 0
        _row("conv", 0.3, "static-eta", 900.0),
        _row("conv", 0.3, "step-cond", 1000.0, agrees=False),  # fast but wrong: missed
    ]
    got = {(v["model"], v["eta"], v["strategy"]): v for v in eta_zero.verdicts({"rows": rows})}
    assert set(got) == {
        (m, e, s)
        for m, e in (("constant", 0.0), ("conv", 0.0), ("conv", 0.3))
        for s in eta_zero.LOOPS
    }
    assert [v["model"] for v in eta_zero.verdicts({"rows": rows})][:4] == ["conv"] * 4
    expect = {
        ("conv", 0.0, "static-eta"): (t, True),
        ("conv", 0.0, "step-cond"): (t * 1.01, False),
        ("conv", 0.3, "static-eta"): (0.9, True),
        ("conv", 0.3, "step-cond"): (1.0, False),
    }
    for cell, (ratio, met) in expect.items():
        assert got[cell]["ratio"] == pytest.approx(ratio) and got[cell]["met"] is met, cell
        assert got[cell]["target"] == t
    for strategy in eta_zero.LOOPS:
        info = got[("constant", 0.0, strategy)]
        assert info["target"] is None and info["met"] is None and info["ratio"] > 0
    # A stricter target changes the verdict on the same numbers.
    strict = {
        (v["model"], v["eta"], v["strategy"]): v for v in eta_zero.verdicts({"rows": rows}, 1.2)
    }
    assert strict[("conv", 0.0, "static-eta")]["met"] is False
    table = eta_zero.verdicts_markdown({"rows": rows})
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(got)
    assert sum("**missed**" in line for line in lines) == 2
    assert sum("| met |" in line for line in lines) == 2
    assert sum("information only" in line and "no verdict" in line for line in lines) == 2


def test_a_cell_without_its_floor_is_not_judged():
    rows = [_row("conv", 0.0, "step-cond", 1.0), _row("conv", 0.3, "floor", 100.0)]
    (v,) = eta_zero.verdicts({"rows": rows})
    assert v["ratio"] is None and v["met"] is None
    assert "not measured" in eta_zero.verdicts_markdown({"rows": rows})


def test_verdicts_of_a_real_run(result):
    """Structure only: every conv loop row has a verdict computed from its own cell's floor."""
    verdicts = eta_zero.verdicts(result)
    judged = [v for v in verdicts if v["target"] is not None]
    assert len(judged) == len(eta_zero.QUICK_SHAPES) * len(eta_zero.ETAS) * len(eta_zero.LOOPS)
    for v in judged:
        assert v["model"] == eta_zero.TARGET_MODEL
        assert v["met"] is (v["ratio"] <= eta_zero.TARGET)  # every strategy agrees (tested above)
