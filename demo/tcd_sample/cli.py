"""``tcd-sample``: TCD sampling of a 2-D Gaussian mixture whose exact answer is known.

Two exact models of the same mixture, under the scheduler config's VP noise schedule: the
**teacher** (the closed-form ε-prediction) and the **distilled** model (the ideal consistency
model: its DDIM jump to t = 0 lands on the exact probability-flow-ODE solution). For every
(model, steps, η) the table shows the sliced Wasserstein distance (SW₁) to fresh exact samples,
the share of samples per mixture component, the share off every mode and the time taken; the
figure shows the samples over the target density, one panel per setting.

``--sampler tcd lcm`` adds multistep consistency sampling (LCM, the consistency models'
Algorithm 1: ``lcm_timesteps`` + ``lcm_step``) beside TCD (Algorithm 4), on the same models, the
same x_T and the same reference samples. LCM has no η: it gives one row per (model, steps), with
the η column shown as "–" (``null`` in the JSON).

``--path flow`` runs the same table and figure on the flow-matching path x_σ = (1−σ)·x₀ + σ·ε
(:data:`tcd_core.FLOW`): the teacher is then the exact velocity v* = E[ε − x₀ | x_σ] and the
distilled model the ideal consistency model whose Euler jump to σ = 0 lands on the ODE's end
point; the plan is :func:`~tcd_sample.toy.flow_sigmas` with ``--shift`` (3 by default), and the
target the mixture itself (σ = 0). TCD only (LCM has no flow form).

Exit status: 0 on success, 2 for bad arguments (one line on stderr, no traceback), 1 when an
optional dependency (a backend, matplotlib) is missing or writing a file fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

import numpy as np

from tcd_core import (
    FLOW,
    FLOW_PREDICTION,
    PREDICTION_TYPES,
    FlowConfig,
    TCDConfig,
    __version__,
    alphas_cumprod,
    check_eta,
    lcm_timesteps,
    tcd_timesteps,
)

from .toy import PRESETS, DistilledModel, TeacherModel, component_shares, sliced_wasserstein
from .toy._backend import BACKENDS, load_backend, to_numpy
from .toy.sampling import DEFAULT_SHIFT, lcm_sample, tcd_sample

__all__ = ["main"]

PROG = "tcd-sample"
MODELS = {"teacher": TeacherModel, "distilled": DistilledModel}
# sampler -> (table label, plan function); LCM's plan rejects the same step counts as TCD's
SAMPLERS = {"tcd": ("TCD", tcd_timesteps), "lcm": ("LCM", lcm_timesteps)}
DEFAULT_ETA = 0.3
PATHS = ("vp", "flow")
#: --steps on the flow path: its plan has no distillation grid; 1000 is the flow models' training
#: grid (σ·1000 timesteps)
MAX_FLOW_STEPS = 1000
NO_ETA = "–"  # the η column of LCM rows
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
MAX_SAMPLES = 1_000_000


class UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


class EnvironmentProblem(Exception):
    """A missing optional dependency or an unwritable file: one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description=(
            "Sample a 2-D Gaussian mixture with TCD (tcd_core), and optionally LCM's multistep "
            "consistency sampling beside it, using its exact teacher and its ideal distilled "
            "model, and compare with the exact answer."
        ),
        epilog=(
            "Several values for --model, --sampler, --steps or --eta give a sweep (one row each). "
            "LCM has no eta: one LCM row per model and steps value, eta shown as '–'. "
            "--path flow samples on the flow-matching path x = (1-σ)·x0 + σ·ε instead, with the "
            "exact velocity (teacher) and the ideal flow consistency model (distilled)."
        ),
    )
    p.add_argument(
        "--path",
        choices=PATHS,
        default="vp",
        help=(
            "noise path: vp (the scheduler config's ᾱ schedule, ε-prediction models) or flow "
            "(rectified flow x = (1-σ)·x0 + σ·ε, velocity models v = ε - x0, the σ plan of "
            "--shift; TCD only) (vp)"
        ),
    )
    p.add_argument(
        "--shift",
        type=float,
        default=None,
        metavar="S",
        help=(
            "--path flow only: the plan's shift, σ = S·u/(1 + (S-1)·u) for u = 1, 1-1/n, ..., 1/n "
            f"(SD3-like: {DEFAULT_SHIFT:g})"
        ),
    )
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="array library (numpy)")
    p.add_argument(
        "--model",
        nargs="+",
        choices=tuple(MODELS),
        default=["teacher", "distilled"],
        help="model(s) to sample with (both)",
    )
    p.add_argument(
        "--sampler",
        nargs="+",
        choices=tuple(SAMPLERS),
        default=["tcd"],
        help="TCD's strategic stochastic sampling and/or LCM's multistep consistency sampling (tcd)",
    )
    p.add_argument(
        "--steps", nargs="+", type=int, default=[1, 2, 4, 8], help="inference steps (1 2 4 8)"
    )
    p.add_argument("--eta", nargs="+", type=float, default=None, help="η in [0, 1], TCD only (0.3)")
    p.add_argument(
        "--prediction-type",
        choices=(*PREDICTION_TYPES, FLOW_PREDICTION),
        default=None,
        help=(
            "what the model outputs (vp: the scheduler config's, epsilon; flow: flow_prediction, "
            "or sample)"
        ),
    )
    p.add_argument("--preset", choices=tuple(PRESETS), default="ring", help="mixture (ring)")
    p.add_argument("--samples", type=int, default=2000, help="samples per setting (2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument(
        "--config", metavar="FILE", help="a scheduler_config.json (diffusers' TCDScheduler)"
    )
    p.add_argument(
        "--out", metavar="FILE", default="tcd-sample.png", help="figure (tcd-sample.png)"
    )
    p.add_argument("--no-figure", action="store_true", help="skip the figure")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--trajectories", type=int, default=0, metavar="K", help="draw K sample paths (0)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


class Progress:
    """A tiny progress bar on a text stream (stderr); silent unless enabled."""

    def __init__(self, total: int, stream: TextIO, enabled: bool, width: int = 24):
        self.total, self.stream, self.enabled, self.width = total, stream, enabled, width
        self.done = 0

    def show(self, label: str) -> None:
        if not self.enabled:
            return
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label}\x1b[K")
        self.stream.flush()

    def advance(self, label: str = "") -> None:
        self.done += 1
        self.show(label)

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _validate(args: argparse.Namespace) -> TCDConfig:
    for s in args.steps:
        if s < 1:
            raise UsageError(f"--steps must be >= 1, got {s}")
    if args.eta is None:
        args.eta = [DEFAULT_ETA]
    elif "tcd" not in args.sampler:
        raise UsageError("--eta applies to --sampler tcd only (LCM has no eta)")
    for e in args.eta:
        if not math.isfinite(e) or not 0.0 <= e <= 1.0:
            raise UsageError(f"--eta must be in [0, 1], got {e}")
    if not 2 <= args.samples <= MAX_SAMPLES:
        raise UsageError(f"--samples must be in [2, {MAX_SAMPLES}], got {args.samples}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if not 0 <= args.trajectories <= args.samples:
        raise UsageError(f"--trajectories must be in [0, --samples], got {args.trajectories}")
    if not args.no_figure:
        if os.path.splitext(args.out)[1].lower() not in FIGURE_SUFFIXES:
            raise UsageError(f"--out must end in {', '.join(FIGURE_SUFFIXES)}, got {args.out!r}")
        _check_dir("--out", args.out)
    if args.json:
        _check_dir("--json", args.json)
    if args.path == "flow":
        return _validate_flow(args)
    if args.shift is not None:
        raise UsageError("--shift applies to --path flow only (the VP plan has no shift)")
    if args.prediction_type == FLOW_PREDICTION:
        raise UsageError(
            "--prediction-type flow_prediction is the flow path's velocity: use it with --path flow"
        )
    config = _load_config(args.config)
    if args.prediction_type is not None:
        config = config.replace(prediction_type=args.prediction_type)
    most = max_steps(config)
    for s in args.steps:
        if s > most:
            field = (
                "original_inference_steps"
                if most == config.original_inference_steps
                else "num_train_timesteps"
            )
            raise UsageError(f"--steps must be <= {most} with this config (its {field}), got {s}")
    for sampler in dict.fromkeys(args.sampler):
        plan = SAMPLERS[sampler][1]
        for s in args.steps:
            try:
                plan(config, s)
            except ValueError as exc:
                raise UsageError(f"--steps {s}: {exc}") from None
    for e in args.eta:
        check_eta(e)
    return config


def _validate_flow(args: argparse.Namespace) -> TCDConfig:
    """The checks of ``--path flow`` (after the common ones); returns the step's config."""
    if "lcm" in args.sampler:
        raise UsageError(
            "--sampler lcm has no flow form (its boundary conditions are defined on the VP path's "
            "timesteps); on --path flow, TCD with --eta 1 is the flow LCM step"
        )
    if args.config is not None:
        raise UsageError(
            "--config is a TCDScheduler config of the VP path; --path flow takes --shift"
        )
    if args.shift is None:
        args.shift = DEFAULT_SHIFT
    try:
        FlowConfig(shift=args.shift)
    except ValueError as exc:
        raise UsageError(f"--shift: {exc}") from None
    kind = args.prediction_type or FLOW_PREDICTION
    if kind == "v_prediction":
        raise UsageError(
            "--prediction-type v_prediction is the VP path's; on --path flow use flow_prediction "
            "(the velocity) or sample"
        )
    if kind == "epsilon":
        raise UsageError(
            "--prediction-type epsilon cannot start the flow plan at σ = 1 (x̂₀ = (x − σ·ε)/(1 − σ) "
            "divides by zero there); on --path flow use flow_prediction or sample"
        )
    for s in args.steps:
        if s > MAX_FLOW_STEPS:
            raise UsageError(f"--steps must be <= {MAX_FLOW_STEPS} on --path flow, got {s}")
    return TCDConfig(prediction_type=kind)


def max_steps(config: TCDConfig) -> int:
    """The largest ``--steps`` the config allows: the plans take n steps out of the distillation
    grid of ``original_inference_steps`` timesteps (n ≤ that, and ≤ ``num_train_timesteps``)."""
    return min(config.original_inference_steps, config.num_train_timesteps)


def _check_dir(option: str, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option}: folder {folder!r} does not exist")


def _load_config(path: str | None) -> TCDConfig:
    if path is None:
        return TCDConfig()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--config: {path!r} is not valid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"--config: {path!r} must hold a JSON object")
    try:
        return TCDConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--config: {exc}") from None


def _load_matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise EnvironmentProblem(
            "the figure needs matplotlib: pip install 'tcd-core[sample]' (or pass --no-figure)"
        ) from None
    return Figure, FigureCanvasAgg


def _shares_text(shares: np.ndarray) -> str:
    """Every share (in %) for up to 8 components, else the smallest and the largest."""
    if len(shares) <= 8:
        return " ".join(f"{100 * s:4.1f}" for s in shares)
    return f"min {100 * shares.min():4.1f} max {100 * shares.max():4.1f}"


def _duration(seconds: float) -> str:
    """A run's time in milliseconds (the teacher's few steps take well under 10 ms), or seconds
    once it passes ten of them."""
    if seconds < 10:
        return f"{1e3 * seconds:.1f} ms"
    return f"{seconds:.1f} s"


def _eta_text(eta: float | None) -> str:
    return NO_ETA if eta is None else f"{eta:.2f}"


def _table(
    rows: list[dict],
    floor: dict,
    mixture: Any,
    stream: TextIO,
    sampler_column: bool = False,
    samples: int = 0,
) -> None:
    """The results table; ``sampler_column`` adds a sampler column (TCD/LCM) after the model's
    (only when LCM is in the sweep, so that TCD-only output keeps its documented layout). A
    footnote says what the ``exact`` row is: the SW₁ of ``samples`` exact samples, the noise
    floor."""
    target = _shares_text(np.asarray(mixture.weights))
    share_head = "share per component %"
    width = max(len(share_head), len(target))

    def lead(model: str, sampler: str, steps: str, eta: str) -> str:
        middle = f" {sampler:<7}" if sampler_column else ""
        return f"{model:<10}{middle} {steps:>5} {eta:>5}"

    head = (
        f"{lead('model', 'sampler', 'steps', 'eta')} {'SW1':>8} {'off-mode %':>10}  "
        f"{share_head:<{width}} {'time':>10}"
    )
    print(head, file=stream)
    print("-" * len(head), file=stream)
    for r in rows:
        shares = _shares_text(np.asarray(r["share"]))
        label = SAMPLERS[r["sampler"]][0]
        print(
            f"{lead(r['model'], label, str(r['steps']), _eta_text(r['eta']))} {r['swd']:>8.4f} "
            f"{100 * r['off_mode']:>10.2f}  {shares:<{width}} {_duration(r['seconds']):>10}",
            file=stream,
        )
    print("-" * len(head), file=stream)
    shares = _shares_text(np.asarray(floor["share"]))
    print(
        f"{lead('exact', '', '', '')} {floor['swd']:>8.4f} {100 * floor['off_mode']:>10.2f}  "
        f"{shares}",
        file=stream,
    )
    print(f"{lead('target', '', '', '')} {'0':>8} {'0.03':>10}  {target:<{width}}", file=stream)
    for line in textwrap.wrap(_exact_note(samples), len(head)):
        print(line, file=stream)


def _exact_note(samples: int) -> str:
    """What the ``exact`` row means, printed under the table: a row at or below it is as good as
    exact sampling, not better than exact."""
    return (
        f"exact: {samples} other exact samples, drawn from the mixture and measured like the rows: "
        f"the noise floor of SW1 with {samples} samples. A row near it is as good as exact "
        "sampling; one below it is sampling noise, not better than exact."
    )


def _save_figure(fig: Any, path: str) -> None:
    """Write the figure :func:`_build_figure` made; an unwritable ``path`` is an environment
    problem (exit status 1)."""
    try:
        fig.savefig(path)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {path!r}: {exc.strerror}") from None


def _panel_title(row: dict, with_sampler: bool) -> str:
    steps = f"{row['steps']} step{'s' if row['steps'] > 1 else ''}"
    sampler = row.get("sampler", "tcd")
    if sampler == "lcm":
        head = f"{row['model']}, LCM, {steps}"
    elif with_sampler:
        head = f"{row['model']}, TCD, {steps}, η={row['eta']:g}"
    else:
        head = f"{row['model']}, {steps}, η={row['eta']:g}"
    return f"{head}\nSW₁ {row['swd']:.3f}"


# the figure's colours, named by its key
SAMPLED_COLOUR = "#d62728"  # red: what the sampler drew
EXACT_COLOUR = "#2ca02c"  # green: drawn from the mixture itself
PATH_COLOUR = "black"
DENSITY_CMAP = "Blues"


def _build_figure(
    runs: list[dict],
    mixture: Any,
    alpha0: float | None,
    trajectories: bool,
    samplers: Sequence[str] = ("tcd",),
    exact: dict | None = None,
    *,
    shift: float | None = None,
) -> Any:
    """One panel per run, samples over the target density; returns the matplotlib Figure.

    ``exact`` ({"samples", "swd"}: exact samples and their SW₁ to the reference, the noise floor)
    adds a panel of them in a column of its own on the left, to compare the others with. A key
    under the panels names the colours. Panels name their sampler (TCD/LCM) when LCM is in the
    sweep; so does the figure's title. The target is the mixture noised to ``alpha0`` (the VP
    path's timestep 0); with ``shift`` (the flow path's plan) it is the mixture itself (σ = 0),
    and the title names the path (``alpha0`` is then unused)."""
    Figure, FigureCanvasAgg = _load_matplotlib()
    n = len(runs)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    first = 1 if exact is not None else 0  # the column of the exact panel
    width = 3.2 * (cols + first)
    lines = [f"tcd-sample: {mixture.name} mixture, samples over the target density"]
    if shift is not None:
        lines.append(f"flow-matching path, shift {shift:g}")
    if "lcm" in samplers:
        names = {"tcd": "TCD (Algorithm 4)", "lcm": "LCM (Algorithm 1)"}
        lines.append(" and ".join(names[s] for s in dict.fromkeys(samplers)))
    # Wrapped to the figure's width: 12 pt characters are about 8.6 px wide at 100 dpi, so one
    # or two panels (320 or 640 px) cannot hold the title's 60-odd characters on one line.
    per_line = max(30, int(0.9 * width * 100 / 8.6))
    title = [part for line in lines for part in textwrap.wrap(line, per_line)]
    # Constrained layout reserves room for the suptitle above the panels' own titles and for the
    # key; each extra line of title gets its own 0.25 in, a key under the panels 0.5 in.
    key_below = exact is None or rows < 2
    height = 3.4 * rows + 0.4 + 0.25 * (len(title) - 1) + (0.5 if key_below else 0.0)
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    # a little more room between rows than the default: a row's titles sit under the x tick
    # labels of the row above
    fig.get_layout_engine().set(h_pad=0.06, hspace=0.04)
    grid_spec = fig.add_gridspec(rows, cols + first)
    means = np.asarray(mixture.means)
    lim = float(np.max(np.abs(means)) + 4 * max(mixture.stds) + 0.3)
    grid = np.linspace(-lim, lim, 200)
    gx, gy = np.meshgrid(grid, grid)
    target = mixture if shift is not None else mixture.noised(alpha0)
    density = np.exp(target.log_density(np.stack([gx, gy], axis=-1)))

    def panel(where: Any, points: np.ndarray, colour: str, heading: str) -> Any:
        ax = fig.add_subplot(where)
        ax.contourf(gx, gy, density, levels=12, cmap=DENSITY_CMAP)
        ax.scatter(points[:, 0], points[:, 1], s=1.5, c=colour, alpha=0.5, linewidths=0)
        ax.set_title(heading, fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        return ax

    if exact is not None:
        heading = f"exact samples\nSW₁ {exact['swd']:.3f} (noise floor)"
        panel(grid_spec[0, 0], np.asarray(exact["samples"]), EXACT_COLOUR, heading)
    for i, run in enumerate(runs):
        where = grid_spec[i // cols, first + i % cols]
        ax = panel(
            where, run["samples"], SAMPLED_COLOUR, _panel_title(run["row"], "lcm" in samplers)
        )
        if trajectories and run["trajectory"] is not None:
            for line in np.transpose(run["trajectory"], (1, 0, 2)):
                ax.plot(line[:, 0], line[:, 1], "-o", color=PATH_COLOUR, lw=0.6, ms=1.8, alpha=0.8)

    fig.suptitle("\n".join(title))
    where = "the data, σ = 0" if shift is not None else f"ᾱ₀ = {alpha0:.5f}"
    _key(fig, grid_spec, rows, exact is not None, trajectories, samplers, where)
    # Constrained layout settles over two passes (tick labels and titles are placed while
    # drawing): the first left a row's titles on the x tick labels of the row above. Lay out once
    # here, so that the figure as saved is the second pass.
    fig.draw_without_rendering()
    return fig


def _key(
    fig: Any,
    grid_spec: Any,
    rows: int,
    exact: bool,
    trajectories: bool,
    samplers: Sequence[str],
    where: str,
) -> None:
    """The figure's key: the density's colour (the target's, ``where``: "ᾱ₀ = …" or the flow
    path's "the data, σ = 0"), the sampled and the exact points', the paths'.
    Under the exact panel where the column has room (two rows of panels or more), else under the
    figure."""
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cmap = matplotlib.colormaps[DENSITY_CMAP]
    names = "/".join(SAMPLERS[s][0] for s in dict.fromkeys(samplers))
    dots: dict[str, Any] = {"ls": "", "marker": "o", "ms": 4}
    key = [
        Patch(color=cmap(0.75), label=f"target density\n({where})"),
        Line2D([], [], color=SAMPLED_COLOUR, label=f"sampled ({names})", **dots),
    ]
    if exact:
        key.append(
            Line2D([], [], color=EXACT_COLOUR, label="exact samples\n(from the mixture)", **dots)
        )
    if trajectories:
        path: dict[str, Any] = {"ls": "-", "marker": "o", "lw": 0.6, "ms": 2.5}
        key.append(
            Line2D([], [], color=PATH_COLOUR, label="a sample's path\nthrough the steps", **path)
        )
    style: dict[str, Any] = {"handles": key, "fontsize": 8, "frameon": False, "labelspacing": 1.0}
    if exact and rows >= 2:
        holder = fig.add_subplot(grid_spec[1:, 0])
        holder.axis("off")
        holder.legend(loc="upper center", **style)
    else:
        fig.legend(loc="outside lower center", ncols=len(key), **style)


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> dict:
    """Run the sweep described by parsed ``args``; print the table; return the JSON document."""
    config = _validate(args)
    if not args.no_figure:
        _load_matplotlib()  # fail before the work, not after
    try:
        xp = load_backend(args.backend)
    except ImportError:
        raise EnvironmentProblem(
            f"backend {args.backend!r} is not installed: pip install 'tcd-core[{args.backend}]'"
        ) from None
    if args.backend != "torch":
        return _sweep(args, config, xp, stdout, stderr)
    # The toy's arrays are tiny (thousands of numbers): torch's intra-op threads only add
    # synchronisation, which costs up to 1000x on a loaded 2-core machine. Restored afterwards,
    # for callers of main() in a longer-lived process.
    torch = importlib.import_module("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _sweep(args, config, xp, stdout, stderr)
    finally:
        torch.set_num_threads(threads)


def _sweep(
    args: argparse.Namespace, config: TCDConfig, xp: Any, stdout: TextIO, stderr: TextIO
) -> dict:
    mixture = PRESETS[args.preset]
    flow = args.path == "flow"
    if flow:
        # the flow path's end is σ = 0: the target is the data itself
        path: Any = FLOW
        alpha0 = None
        target = mixture
    else:
        path = table = to_numpy(alphas_cumprod(config)).astype(np.float64)
        alpha0 = float(table[0])
        target = mixture.noised(alpha0)
    try:
        models = {name: MODELS[name](mixture, path) for name in dict.fromkeys(args.model)}
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    seeds = np.random.SeedSequence(args.seed).spawn(2)
    reference, _ = target.sample(args.samples, np.random.default_rng(seeds[0]))
    other, _ = target.sample(args.samples, np.random.default_rng(seeds[1]))
    floor_shares, floor_off = component_shares(other, target)
    floor = {
        "swd": sliced_wasserstein(other, reference),
        "share": floor_shares.tolist(),
        "off_mode": floor_off,
    }

    # model, then sampler, then steps, then η (TCD only): with the default steps, each row of
    # the figure (4 panels) is one (model, sampler) over 1, 2, 4, 8 steps
    samplers = list(dict.fromkeys(args.sampler))
    etas: dict[str, list[float | None]] = {"tcd": list(dict.fromkeys(args.eta)), "lcm": [None]}
    settings = [
        (m, k, s, e)
        for m in dict.fromkeys(args.model)
        for k in samplers
        for s in dict.fromkeys(args.steps)
        for e in etas[k]
    ]
    enabled = len(settings) > 1 and not args.no_progress and stderr.isatty()
    progress = Progress(len(settings), stderr, enabled)
    rows, runs = [], []
    for name, sampler, steps, eta in settings:
        label = f"{name} {sampler} steps={steps}" + ("" if eta is None else f" eta={eta:g}")
        progress.show(label)
        if eta is None:
            result = lcm_sample(
                models[name],
                config,
                steps,
                args.samples,
                args.seed,
                xp,
                trajectory=args.trajectories,
            )
        else:
            on_flow = {"path": FLOW, "shift": args.shift} if flow else {}
            result = tcd_sample(
                models[name],
                config,
                steps,
                eta,
                args.samples,
                args.seed,
                xp,
                trajectory=args.trajectories,
                **on_flow,
            )
        samples = to_numpy(result.samples).astype(np.float64)
        shares, off = component_shares(samples, target)
        row = {
            "model": name,
            "sampler": sampler,
            "steps": steps,
            "eta": eta,
            "timesteps": result.timesteps.tolist(),
            "swd": sliced_wasserstein(samples, reference),
            "share": shares.tolist(),
            "off_mode": off,
            "seconds": result.seconds,
        }
        rows.append(row)
        runs.append({"row": row, "samples": samples, "trajectory": result.trajectory})
        progress.advance(label)
    progress.close()

    if flow:
        where = f"path flow (shift {args.shift:g}), "
        against = "of the mixture (sigma = 0)"
    else:
        where, against = "", f"at alpha_bar_0 = {alpha0:.5f}"
    print(
        f"tcd-sample {__version__}: {mixture.name} mixture ({mixture.num_components} components), "
        f"{args.samples} samples, seed {args.seed}, backend {args.backend}, {where}"
        f"prediction_type {config.prediction_type}; SW1 = sliced 1-Wasserstein distance to "
        f"{args.samples} fresh exact samples {against}",
        file=stdout,
    )
    _table(rows, floor, mixture, stdout, "lcm" in samplers, args.samples)
    doc = {
        "tool": PROG,
        "version": __version__,
        "backend": args.backend,
        "path": args.path,
        "preset": args.preset,
        "mixture": {
            "means": [list(m) for m in mixture.means],
            "stds": list(mixture.stds),
            "weights": list(mixture.weights),
        },
        "samples": args.samples,
        "seed": args.seed,
        **({"shift": args.shift} if flow else {"alpha_bar_0": alpha0}),
        "config": config.to_dict(),
        "metric": "sliced 1-Wasserstein, 128 directions",
        "samplers": samplers,
        "exact": floor,
        "results": rows,
    }
    if not args.no_figure:
        exact = {"samples": other, "swd": floor["swd"]}
        fig = _build_figure(
            runs,
            mixture,
            alpha0,
            args.trajectories > 0,
            samplers,
            exact,
            shift=args.shift if flow else None,
        )
        _save_figure(fig, args.out)
        print(f"figure: {args.out}", file=stdout)
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write {args.json!r}: {exc.strerror}") from None
        print(f"json: {args.json}", file=stdout)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tcd-sample`` and ``python -m tcd_sample``; returns the exit status."""
    stdout, stderr = sys.stdout, sys.stderr
    try:
        args = _parser().parse_args(argv)
        run(args, stdout, stderr)
    except UsageError as exc:
        print(f"{PROG}: error: {exc} (see {PROG} --help)", file=stderr)
        return 2
    except EnvironmentProblem as exc:
        print(f"{PROG}: error: {exc}", file=stderr)
        return 1
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
