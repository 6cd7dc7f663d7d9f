"""``tcd-sample`` end to end: exit codes, table, files, JSON schema, determinism, backends."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tcd_sample import cli

FAST = ["--samples", "300", "--steps", "1", "2", "--no-progress"]


def _run(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _png_pixels(path):
    from matplotlib.image import imread

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def test_writes_table_figure_and_json(capsys, tmp_path):
    png, js = tmp_path / "fig.png", tmp_path / "out.json"
    code, out, err = _run(capsys, *FAST, "--eta", "0", "0.5", "--out", str(png), "--json", str(js))
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    rows = [ln for ln in lines if ln.startswith(("teacher ", "distilled "))]
    assert len(rows) == 2 * 2 * 2  # models x steps x etas
    assert any(ln.startswith("exact ") for ln in lines)
    assert f"figure: {png}" in out and f"json: {js}" in out

    pixels = _png_pixels(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert pixels[..., :3].std() > 0.05  # not a blank canvas

    doc = json.loads(js.read_text())
    assert doc["tool"] == "tcd-sample" and doc["backend"] == "numpy" and doc["preset"] == "ring"
    assert doc["samples"] == 300 and doc["seed"] == 0
    assert doc["alpha_bar_0"] == pytest.approx(0.99915, abs=1e-6)
    assert doc["config"]["prediction_type"] == "epsilon"
    assert len(doc["mixture"]["means"]) == len(doc["mixture"]["weights"]) == 8
    assert set(doc["exact"]) == {"swd", "share", "off_mode"}
    assert doc["samplers"] == ["tcd"]
    assert len(doc["results"]) == 8
    for r in doc["results"]:
        assert set(r) == {
            "model",
            "sampler",
            "steps",
            "eta",
            "timesteps",
            "swd",
            "share",
            "off_mode",
            "seconds",
        }
        assert r["model"] in ("teacher", "distilled") and r["eta"] in (0.0, 0.5)
        assert r["sampler"] == "tcd"
        assert len(r["timesteps"]) == r["steps"] and r["timesteps"][0] == 999
        assert len(r["share"]) == 8
        assert sum(r["share"]) + r["off_mode"] == pytest.approx(1.0)
        assert r["swd"] >= 0 and r["seconds"] >= 0
    # the table prints what the JSON holds
    first = doc["results"][0]
    assert f"{first['swd']:.4f}" in rows[0]


def test_the_default_settings_tell_the_story(capsys, tmp_path):
    # the README's first command, minus the figure: distilled good in 1 step, teacher not
    js = tmp_path / "d.json"
    code, _out, err = _run(capsys, "--no-figure", "--json", str(js), "--no-progress")
    assert code == 0, err
    doc = json.loads(js.read_text())
    res = {(r["model"], r["steps"]): r for r in doc["results"]}
    assert set(res) == {(m, s) for m in ("teacher", "distilled") for s in (1, 2, 4, 8)}
    assert all(r["eta"] == 0.3 for r in res.values()) and doc["samples"] == 2000
    assert res["teacher", 1]["swd"] > 0.8 and res["teacher", 1]["off_mode"] == 1.0
    for s in (1, 2, 4, 8):
        assert res["distilled", s]["swd"] < 0.1
        assert res["distilled", s]["swd"] < res["teacher", s]["swd"]


def test_same_seed_same_output(capsys, tmp_path):
    docs = []
    for i in range(2):
        js = tmp_path / f"r{i}.json"
        args = [*FAST, "--sampler", "tcd", "lcm", "--no-figure", "--seed", "3", "--json", str(js)]
        assert _run(capsys, *args)[0] == 0
        doc = json.loads(js.read_text())
        for r in doc["results"]:
            r.pop("seconds")
        docs.append(doc)
    assert docs[0] == docs[1]
    assert {r["sampler"] for r in docs[0]["results"]} == {"tcd", "lcm"}
    js = tmp_path / "other.json"
    args = [*FAST, "--sampler", "tcd", "lcm", "--no-figure", "--seed", "4", "--json", str(js)]
    assert _run(capsys, *args)[0] == 0
    other = json.loads(js.read_text())
    for a, b in zip(other["results"], docs[0]["results"]):
        assert a["swd"] != b["swd"]  # every row, LCM's included, follows the seed


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_backends_agree_with_numpy(capsys, tmp_path, backend):
    swd = {}
    for b in ("numpy", backend):
        js = tmp_path / f"{b}.json"
        code, _, err = _run(
            capsys,
            *FAST,
            "--sampler",
            "tcd",
            "lcm",
            "--preset",
            "pair",
            "--no-figure",
            "--backend",
            b,
            "--json",
            str(js),
        )
        assert code == 0, err
        rows = json.loads(js.read_text())["results"]
        swd[b] = [(r["swd"], r["share"]) for r in rows]
        assert [r["sampler"] for r in rows].count("lcm") == 2 * 2  # models x steps
    assert len(swd["numpy"]) == len(swd[backend]) == 2 * 2 * 2
    for (a, sa), (b, sb) in zip(swd["numpy"], swd[backend]):
        assert a == pytest.approx(b, abs=1e-4)
        np.testing.assert_allclose(sa, sb, atol=2 / 300)  # at most one point changes side


@pytest.mark.parametrize("kind", ["sample", "v_prediction"])
def test_prediction_type_option(capsys, tmp_path, kind):
    js = tmp_path / "p.json"
    code, out, err = _run(
        capsys, *FAST, "--no-figure", "--prediction-type", kind, "--json", str(js)
    )
    assert code == 0, err
    assert json.loads(js.read_text())["config"]["prediction_type"] == kind
    assert f"prediction_type {kind}" in out


def test_config_file_and_presets_and_trajectories(capsys, tmp_path):
    cfg = tmp_path / "scheduler_config.json"
    cfg.write_text(
        json.dumps(
            {
                "_class_name": "TCDScheduler",
                "beta_schedule": "linear",
                "beta_start": 0.0001,
                "beta_end": 0.02,
            }
        )
    )
    png, js = tmp_path / "t.png", tmp_path / "t.json"
    code, out, err = _run(
        capsys,
        *FAST,
        "--config",
        str(cfg),
        "--preset",
        "grid",
        "--model",
        "distilled",
        "--trajectories",
        "4",
        "--out",
        str(png),
        "--json",
        str(js),
    )
    assert code == 0, err
    doc = json.loads(js.read_text())
    assert doc["config"]["beta_schedule"] == "linear" and doc["preset"] == "grid"
    assert doc["alpha_bar_0"] == pytest.approx(0.9999, abs=1e-6)
    assert "min" in out  # 16 components: the table shows min/max shares
    assert _png_pixels(png).size > 0


BAD = [
    (["--steps", "0"], "--steps must be >= 1"),
    (["--steps", "51"], "--steps must be <= 50 with this config (its original_inference_steps)"),
    (["--steps", "100"], "--steps must be <= 50 with this config (its original_inference_steps)"),
    (["--steps", "two"], "invalid int value"),
    (["--eta", "1.5"], "--eta must be in [0, 1]"),
    (["--eta", "nan"], "--eta must be in [0, 1]"),
    (["--eta", "-0.1"], "--eta must be in [0, 1]"),
    (["--samples", "1"], "--samples must be in"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--backend", "cupy"], "invalid choice"),
    (["--sampler", "ddim"], "invalid choice"),
    (["--sampler", "lcm", "--eta", "0.5"], "--eta applies to --sampler tcd only"),
    (["--sampler", "lcm", "--steps", "51"], "--steps must be <= 50"),
    (["--sampler", "tcd", "lcm", "--eta", "2"], "--eta must be in [0, 1]"),
    (["--model", "student"], "invalid choice"),
    (["--preset", "moons"], "invalid choice"),
    (["--prediction-type", "x0"], "invalid choice"),
    (["--out", "figure.txt"], "--out must end in"),
    (["--out", "/nonexistent-dir/f.png"], "does not exist"),
    (["--json", "/nonexistent-dir/f.json"], "does not exist"),
    (["--config", "/nonexistent-dir/c.json"], "cannot read"),
    (["--trajectories", "-2"], "--trajectories"),
    (["--frobnicate"], "unrecognized arguments"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_exit_2_with_one_line(capsys, args, message):
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("tcd-sample: error: ") and message in err
    assert "Traceback" not in err


def test_too_many_steps_names_the_limit_not_strength(capsys, tmp_path):
    # the core's plan said "increase `strength` to a value higher than 2.0": an option the CLI
    # does not have. The limit is the config's original_inference_steps, and the limit runs.
    code, _, err = _run(capsys, "--steps", "4", "100", "--no-figure")
    assert code == 2 and "strength" not in err
    assert "--steps must be <= 50" in err and "got 100" in err
    fast = ["--model", "teacher", "--samples", "20", "--no-figure", "--no-progress"]
    assert _run(capsys, *fast, "--steps", "50", "--sampler", "tcd", "lcm")[0] == 0
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"original_inference_steps": 20}))
    code, _, err = _run(capsys, *fast, "--config", str(cfg), "--steps", "21")
    assert code == 2 and "--steps must be <= 20" in err and "strength" not in err
    assert _run(capsys, *fast, "--config", str(cfg), "--steps", "20")[0] == 0
    assert cli.max_steps(cli.TCDConfig(original_inference_steps=20)) == 20


def test_the_table_says_what_the_exact_row_is(capsys):
    # a distilled row below the exact row puzzled readers: the footnote says it is the noise floor
    code, out, err = _run(capsys, *FAST, "--no-figure")
    assert code == 0, err
    lines = out.splitlines()
    after = lines[next(i for i, ln in enumerate(lines) if ln.startswith("target ")) + 1 :]
    note = " ".join(after)
    assert note.startswith("exact: 300 other exact samples")
    assert "noise floor of SW1 with 300 samples" in note and "not better than exact" in note
    width = len(next(ln for ln in lines if ln.startswith("model ")))
    assert all(len(ln) <= width for ln in after)


def test_bad_config_contents_exit_2(capsys, tmp_path):
    for text, message in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"beta_schedule": "cosine"}', "beta_schedule"),
        ('{"rescale_betas_zero_snr": true}', "zero-terminal-SNR"),
    ]:
        cfg = tmp_path / "c.json"
        cfg.write_text(text)
        code, _, err = _run(capsys, "--config", str(cfg), "--no-figure", "--samples", "10")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_missing_matplotlib_is_one_line_exit_1(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    code, out, err = _run(capsys, *FAST, "--out", str(tmp_path / "f.png"))
    assert code == 1 and out == ""
    assert err.strip() == (
        "tcd-sample: error: the figure needs matplotlib: pip install 'tcd-core[sample]' "
        "(or pass --no-figure)"
    )
    assert not (tmp_path / "f.png").exists()
    # ...and --no-figure works without it
    assert _run(capsys, *FAST, "--no-figure")[0] == 0


def test_missing_backend_is_one_line_exit_1(capsys, monkeypatch):
    def missing(name):
        raise ImportError(name)

    monkeypatch.setattr(cli, "load_backend", missing)
    code, _, err = _run(capsys, *FAST, "--no-figure", "--backend", "jax")
    assert code == 1
    assert err.strip() == (
        "tcd-sample: error: backend 'jax' is not installed: pip install 'tcd-core[jax]'"
    )


def test_help_and_version_exit_0(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "--backend" in out and "--eta" in out
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.startswith("tcd-sample ")


def test_progress_bar():
    stream = io.StringIO()
    bar = cli.Progress(4, stream, enabled=True, width=8)
    bar.show("first")
    bar.advance("second")
    bar.close()
    text = stream.getvalue()
    assert "[--------] 0/4 first" in text and "[##------] 1/4 second" in text
    quiet = io.StringIO()
    bar = cli.Progress(4, quiet, enabled=False)
    bar.advance("x")
    bar.close()
    assert quiet.getvalue() == ""


def _subprocess(*args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_console_script_and_module_run_in_a_fresh_process(tmp_path):
    # the installed console script: a real run, files in the working directory by default
    exe = os.path.join(os.path.dirname(sys.executable), "tcd-sample")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "tcd_sample"]
    proc = _subprocess(*cmd, "--samples", "200", "--steps", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "distilled" in proc.stdout and (tmp_path / "tcd-sample.png").stat().st_size > 10_000
    # python -m tcd_sample, bad argument: exit 2, one line, no traceback
    proc = _subprocess(sys.executable, "-m", "tcd_sample", "--eta", "2", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tcd-sample: error: --eta must be in [0, 1], got 2.0 (see tcd-sample --help)"
    ]


def _overlaps(a, b):
    return not (a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0)


def _figure_runs(n_runs, samplers):
    rng = np.random.default_rng(0)
    runs = []
    for i in range(n_runs):
        sampler = samplers[i % len(samplers)]
        eta = None if sampler == "lcm" else 0.3
        row = {"model": "distilled", "sampler": sampler, "steps": 8, "eta": eta, "swd": 0.05}
        runs.append({"samples": rng.normal(size=(50, 2)), "trajectory": None, "row": row})
    return runs


@pytest.mark.parametrize("samplers", [("tcd",), ("tcd", "lcm"), ("lcm",)])
@pytest.mark.parametrize("n_runs", [1, 2, 4, 8, 16])
def test_figure_title_clears_the_panel_titles(n_runs, samplers):
    # tight_layout ignored the suptitle: in a 4 x 4 sweep it sat on the first row's titles. With
    # LCM the title gains a line; with one or two panels it is wrapped to the figure's width
    # (one line of it was 540 px wide on a 320 px figure).
    from tcd_sample.toy import preset

    runs = _figure_runs(n_runs, samplers)
    fig = cli._build_figure(runs, preset("rings"), 0.99915, False, samplers)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    panels = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    assert len(panels) == n_runs
    assert title.y0 > max(p.y1 for p in panels)  # above every panel title, not just disjoint
    assert not any(_overlaps(title, p) for p in panels)
    assert title.y1 <= fig.bbox.y1  # and still inside the figure
    assert title.x0 >= 0 and title.x1 <= fig.bbox.x1  # across too
    for p in panels:
        assert p.x0 >= 0 and p.x1 <= fig.bbox.x1
    text = fig._suptitle.get_text()
    assert ("Algorithm 1" in text) == ("lcm" in samplers)


def test_figure_panels_name_their_sampler_when_lcm_is_in_the_sweep():
    from tcd_sample.toy import preset

    mixed = cli._build_figure(
        _figure_runs(2, ("tcd", "lcm")), preset("ring"), 0.99915, False, ("tcd", "lcm")
    )
    titles = [ax.get_title() for ax in mixed.axes]
    assert titles[0].startswith("distilled, TCD, 8 steps, η=0.3\n")
    assert titles[1].startswith("distilled, LCM, 8 steps\n") and "η" not in titles[1]
    tcd_only = cli._build_figure(_figure_runs(1, ("tcd",)), preset("ring"), 0.99915, False)
    assert tcd_only.axes[0].get_title() == "distilled, 8 steps, η=0.3\nSW₁ 0.050"


def test_times_are_printed_in_milliseconds(capsys):
    # the teacher's steps take well under 10 ms: a seconds column printed them as 0.00 s
    code, out, err = _run(capsys, *FAST, "--no-figure")
    assert code == 0, err
    rows = [ln for ln in out.splitlines() if ln.startswith(("teacher ", "distilled "))]
    assert rows and all(ln.endswith(" ms") for ln in rows)
    times = [float(ln.split()[-2]) for ln in rows]
    assert all(t > 0 for t in times)  # nothing rounds to zero any more


def test_duration_format():
    assert cli._duration(0.000123) == "0.1 ms"
    assert cli._duration(0.0421) == "42.1 ms"
    assert cli._duration(9.99) == "9990.0 ms"
    assert cli._duration(12.34) == "12.3 s"


def _table_rows(out):
    return [ln for ln in out.splitlines() if ln.startswith(("teacher ", "distilled "))]


def test_lcm_rows_beside_tcd_rows_in_table_json_and_figure(capsys, tmp_path):
    from tcd_core import lcm_timesteps, tcd_timesteps

    png, js = tmp_path / "both.png", tmp_path / "both.json"
    args = [*FAST, "--sampler", "tcd", "lcm", "--eta", "0", "0.5", "--out", str(png)]
    code, out, err = _run(capsys, *args, "--json", str(js))
    assert code == 0, err
    lines = out.splitlines()
    head = next(ln for ln in lines if ln.startswith("model "))
    assert head.split()[:4] == ["model", "sampler", "steps", "eta"]
    rows = _table_rows(out)
    # per model: TCD for 2 steps x 2 etas, then LCM once per steps value (no η)
    assert len(rows) == 2 * (2 * 2 + 2)
    lcm_rows = [ln for ln in rows if ln.split()[1] == "LCM"]
    assert len(lcm_rows) == 4 and all(ln.split()[3] == "–" for ln in lcm_rows)
    assert all(ln.split()[1] == "TCD" for ln in rows if ln not in lcm_rows)
    assert all(len(ln) == len(head) for ln in rows)  # the columns line up
    assert any(ln.startswith("exact ") for ln in lines)

    doc = json.loads(js.read_text())
    assert doc["samplers"] == ["tcd", "lcm"]
    order = [(r["model"], r["sampler"], r["steps"], r["eta"]) for r in doc["results"]]
    assert order == [
        (m, k, s, e)
        for m in ("teacher", "distilled")
        for k in ("tcd", "lcm")
        for s in (1, 2)
        for e in ((0.0, 0.5) if k == "tcd" else (None,))
    ]
    config = cli.TCDConfig()
    for r, line in zip(doc["results"], rows):
        plan = (lcm_timesteps if r["sampler"] == "lcm" else tcd_timesteps)(config, r["steps"])
        assert r["timesteps"] == plan.timesteps.tolist()
        assert sum(r["share"]) + r["off_mode"] == pytest.approx(1.0)
        assert f"{r['swd']:.4f}" in line  # the table prints what the JSON holds
    assert _png_pixels(png).shape[0] > 900  # 12 panels: three rows of four

    # adding LCM leaves the TCD rows as they were
    tcd_js = tmp_path / "tcd.json"
    assert _run(capsys, *FAST, "--eta", "0", "0.5", "--no-figure", "--json", str(tcd_js))[0] == 0
    alone = list(json.loads(tcd_js.read_text())["results"])
    beside = [r for r in doc["results"] if r["sampler"] == "tcd"]
    for a, b in zip(alone, beside, strict=True):
        a.pop("seconds"), b.pop("seconds")
        assert a == b


def test_lcm_rows_come_from_the_cores_lcm_loop(capsys, tmp_path):
    # the CLI's LCM row is lcm_sample's samples, measured against the same exact samples
    from tcd_sample.toy import DistilledModel, lcm_sample, preset, sliced_wasserstein

    js = tmp_path / "l.json"
    args = ["--sampler", "lcm", "--model", "distilled", "--steps", "3", "--samples", "300"]
    code, _out, err = _run(capsys, *args, "--seed", "7", "--no-figure", "--json", str(js))
    assert code == 0, err
    doc = json.loads(js.read_text())
    (row,) = doc["results"]
    assert row["sampler"] == "lcm" and row["eta"] is None and doc["samplers"] == ["lcm"]
    config = cli.TCDConfig()
    table = cli.alphas_cumprod(config)
    mixture = preset("ring")
    target = mixture.noised(float(table[0]))
    seeds = np.random.SeedSequence(7).spawn(2)
    reference, _ = target.sample(300, np.random.default_rng(seeds[0]))
    run = lcm_sample(DistilledModel(mixture, table), config, 3, 300, 7)
    assert row["swd"] == sliced_wasserstein(run.samples.astype(np.float64), reference)
    assert row["timesteps"] == run.timesteps.tolist() == [999, 679, 339]


def test_the_default_run_keeps_its_documented_layout(capsys):
    # the README's first command is TCD only; its table is pasted in docs/sample.md
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "sample.md")
    with open(docs, encoding="utf-8") as f:
        text = f.read()
    block = text.split("## The default run", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    documented = block.strip().splitlines()
    code, out, err = _run(capsys, "--no-figure", "--no-progress", "--samples", "300")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1] == documented[1]  # the header: no sampler column
    labels = [ln.split()[:3] for ln in _table_rows(out)]
    assert labels == [ln.split()[:3] for ln in documented if ln.startswith(("teacher", "distil"))]
    assert all(label[2] == "0.30" for label in labels)
