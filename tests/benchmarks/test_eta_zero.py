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
    floor_for, traced = eta_zero._strategies(jax, tcd_jax, model)
    x = jnp.ones(shape) * 0.5
    eps = jnp.zeros(shape)
    key = tcd_jax.prng_key(3)
    quiet = np.asarray(floor_for(0.0)(x, key, eps))
    for name, fn in traced.items():
        np.testing.assert_allclose(np.asarray(fn(x, key, eps, jnp.float32(0.0))), quiet, atol=1e-5)
        noisy = np.asarray(fn(x, key, eps, jnp.float32(0.3)))
        assert np.abs(noisy - quiet).max() > 1e-2, name


def test_markdown_has_one_row_per_cell(result):
    table = eta_zero.markdown(result)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(eta_zero.MODELS) * len(eta_zero.QUICK_SHAPES) * len(eta_zero.ETAS)
    assert "step-cond (shipped)" in lines[0]
