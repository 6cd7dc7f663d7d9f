"""``tcd-sample``'s figure, every kind the CLI draws: no two visible texts collide, every text lies
inside the figure, the key names every colour, and the exact samples have a panel of their own.

Each case runs the real CLI (small sample counts) and inspects the matplotlib Figure it saved."""

import contextlib
import io
import itertools

import pytest

from tcd_sample import cli

KINDS = {
    "default": [],
    "steps x eta": ["--model", "distilled", "--steps", "1", "2", "4", "--eta", "0", "0.5", "1"],
    "tcd and lcm": ["--sampler", "tcd", "lcm"],
    "lcm only": ["--sampler", "lcm", "--steps", "1", "2"],
    "trajectories": ["--trajectories", "5", "--steps", "2", "4"],
    "one panel": ["--model", "distilled", "--steps", "1"],
    "grid preset": ["--preset", "grid", "--steps", "1", "4"],
    "flow path": ["--path", "flow", "--steps", "1", "4", "--trajectories", "3"],
}


@pytest.fixture(scope="module")
def draw(tmp_path_factory):
    """Run ``tcd-sample`` with ``args`` and return the Figure it saved, as saved: not drawn again
    (constrained layout moves things between draws; a second draw hid the collision the saved
    PNG showed). One run per set of arguments, shared by the tests."""
    figures = {}

    def run(args):
        key = tuple(args)
        if key not in figures:
            made = []
            build = cli._build_figure
            png = tmp_path_factory.mktemp("figure") / "f.png"
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(
                    cli, "_build_figure", lambda *a, **k: made.append(build(*a, **k)) or made[-1]
                )
                with contextlib.redirect_stdout(io.StringIO()):
                    code = cli.main([*args, "--samples", "200", "--no-progress", "--out", str(png)])
            assert code == 0
            assert png.stat().st_size > 0
            (figures[key],) = made
        return figures[key]

    return run


def _tick_labels(ax):
    """The tick labels matplotlib draws: visible, of ticks inside the view limits (the locator's
    ticks beyond the limits keep labels that are never drawn)."""
    out = []
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        eps = 1e-9 * (hi - lo)
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            if lo - eps <= tick.get_loc() <= hi + eps:
                out += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    return out


def visible_texts(fig):
    """Every Text the figure draws, with a non-empty string: titles, suptitle, axis labels, tick
    labels, legend texts, annotations."""
    from matplotlib.text import Text

    all_tick_labels = {
        id(t)
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis)
        for tick in axis.get_major_ticks() + axis.get_minor_ticks()
        for t in (tick.label1, tick.label2)
    }
    texts = [
        t
        for t in fig.findobj(Text)
        if id(t) not in all_tick_labels and t.get_visible() and t.get_text().strip()
    ]
    for ax in fig.axes:
        if ax.get_visible() and ax.axison:
            texts += [t for t in _tick_labels(ax) if t.get_text().strip()]
    return texts


def _overlap(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("kind", KINDS)
def test_no_two_texts_overlap(draw, kind):
    fig = draw(KINDS[kind])
    renderer = fig.canvas.get_renderer()
    texts = visible_texts(fig)
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    assert len(boxes) > 10
    clashes = [
        f"{a.get_text()!r} at {ba.bounds} and {b.get_text()!r} at {bb.bounds}"
        for (a, ba), (b, bb) in itertools.combinations(boxes, 2)
        if _overlap(ba, bb)
    ]
    assert not clashes, "\n".join(clashes)
    outside = [t.get_text() for t, b in boxes if not fig.bbox.contains(b.x0, b.y0)]
    outside += [t.get_text() for t, b in boxes if not fig.bbox.contains(b.x1, b.y1)]
    assert not outside, outside


@pytest.mark.parametrize("kind", ["default", "tcd and lcm", "trajectories", "flow path"])
def test_the_key_names_the_colours_and_the_exact_samples_have_a_panel(draw, kind):
    fig = draw(KINDS[kind])
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 1
    labels = " | ".join(t.get_text() for t in legends[0].get_texts())
    assert "target density" in labels and "exact samples" in labels and "sampled" in labels
    assert ("path" in labels) == (kind in ("trajectories", "flow path"))
    assert ("σ = 0" in labels) == (kind == "flow path")  # the flow path's target: the data
    titles = [ax.get_title() for ax in fig.axes]
    (exact,) = [t for t in titles if t.startswith("exact samples")]
    assert "noise floor" in exact
    assert ("flow-matching path, shift 3" in fig._suptitle.get_text()) == (kind == "flow path")
