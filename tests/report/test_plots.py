"""Figures: what the heatmap colour means, one colour scale per study, panels per figure, and
no text drawn over other text (the report is read at 1400 px)."""

from __future__ import annotations

import itertools
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from precision.report import plots
from precision.run.spec import parse_spec
from precision.run.study import run

TINY = {
    "name": "figures",
    "seed": 11,
    "formats": ["float16", "bfloat16", "float64"],
    "problems": ["summation", "logsumexp"],
    "variants": {
        "summation": ["recursive", "pairwise", "kahan", "random_order"],
        "logsumexp": ["naive", "shifted", "log1p"],
    },
    "params": {"summation": {"seed": [0, 1]}},
    "grid": {
        "log10_cond": [0, 3],
        "log10_magnitude": [0, 2],
        "sizes": [10, 300],
        "samples_per_cell": 2,
    },
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return run(parse_spec(TINY))


@pytest.fixture(scope="module")
def figures(table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty log panel cannot autoscale
        drawn = plots.report_figures(table)
    yield drawn
    plt.close("all")


def _drawn_texts(fig: plt.Figure) -> list:
    """Every piece of text the figure draws: titles, axis labels, tick labels of ticks inside
    the view (matplotlib keeps label objects for ticks it does not draw), cell annotations,
    legends."""
    texts = list(fig.texts)
    for ax in fig.axes:
        if not ax.get_visible():
            continue  # an unused panel of a grid: nothing of it is drawn
        for axis in (ax.xaxis, ax.yaxis):
            if not axis.get_visible():
                continue  # e.g. the x axis of a twin (the distributions' counts), not drawn
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if low <= tick.get_loc() <= high:
                    texts += [tick.label1, tick.label2]
            texts.append(axis.label)
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    for legend in fig.legends:
        texts += legend.get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def overlapping_texts(fig: plt.Figure) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose bounding boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
    return [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b)
    ]


def test_no_figure_draws_text_over_text(figures):
    assert {"heatmap_summation", "heatmap_logsumexp", "lines_summation_kappa"} <= set(figures)
    assert {"distributions_summation", "distributions_logsumexp"} <= set(figures)
    for stem, fig in figures.items():
        assert not overlapping_texts(fig), (stem, overlapping_texts(fig)[:5])


def test_the_overlap_check_sees_an_overlap():
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.52, 0.5, "another label")
    assert overlapping_texts(fig)
    plt.close(fig)


def test_the_colour_is_the_error_over_what_conditioning_forces(table):
    """log10(median of rel_error / (max(kappa, 1) u)) per cell, from the rows themselves."""
    cells = plots.heatmap_cells(table)
    rows = table[(table["outcome"] == "ok") & table["certified"].astype(bool)]
    rows = rows[(rows["problem"] == "summation") & (rows["variant"] == "pairwise")]
    rows = rows.assign(
        cond_decade=np.floor(np.log10(rows["cond"])),
        magnitude_decade=np.floor(np.log10(rows["magnitude"])),
        forced=rows["err_over_u"] / np.maximum(rows["cond"], 1.0),
    )
    expected = rows.groupby(["format", "cond_decade", "magnitude_decade"])["forced"].median()
    mine = cells[(cells["problem"] == "summation") & (cells["variant"] == "pairwise")]
    mine = mine.set_index(["format", "cond_decade", "magnitude_decade"])
    for key, value in expected.items():
        shown = mine.loc[(key[0], int(key[1]), int(key[2])), "log10_err_over_kappa_u"]
        assert shown == pytest.approx(np.log10(max(value, 10.0**plots.FLOOR)))


def test_every_heatmap_of_a_study_shares_one_colour_scale(figures):
    limits = {
        stem: fig.axes[-1].get_ylim()  # the colour bar's axis spans the scale
        for stem, fig in figures.items()
        if stem.startswith("heatmap")
    }
    assert len(limits) >= 2 and len(set(limits.values())) == 1, limits


def test_a_problem_with_many_panels_is_split(table, monkeypatch):
    monkeypatch.setattr(plots.common, "MAX_PANELS", 6)  # two variants of three formats per figure
    drawn = plots.heatmap_figures(table, "summation")
    # recursive, pairwise, kahan and random_order at seeds 0 and 1: five rows of panels.
    assert list(drawn) == ["heatmap_summation", "heatmap_summation_2", "heatmap_summation_3"]
    panels = [len([ax for ax in fig.axes if ax.get_title()]) for fig in drawn.values()]
    assert panels == [6, 6, 3]
    plt.close("all")


@pytest.mark.parametrize("decades", [1, 5, 8, 9, 17, 20, 30, 201])
def test_long_decade_axes_label_every_kth_tick(decades):
    """All decades up to MAX_TICK_LABELS; beyond, at most that many, evenly spaced, 0 among
    them."""
    axis = list(range(-3, -3 + decades))
    labels = plots.common._thinned(axis)
    shown = [d for d, label in zip(axis, labels, strict=True) if label]
    assert all(label in ("", str(d)) for d, label in zip(axis, labels, strict=True))
    if decades <= plots.MAX_TICK_LABELS:
        assert shown == axis
    else:
        assert 2 <= len(shown) <= plots.MAX_TICK_LABELS and 0 in shown
        assert len(set(np.diff(shown))) == 1


def test_line_plots_draw_the_spread_of_the_rows_around_each_median(table, figures):
    """error_lines' band holds the 10% and 90% quantiles of the rows it summarises, and the
    figure fills it (one band per line with more than one point)."""
    from matplotlib.collections import PolyCollection

    from precision.report.summary import error_lines

    lines = error_lines(table[table["problem"] == "summation"], "cond_decade")
    assert (lines["low_err_over_u"] <= lines["median_err_over_u"]).all()
    assert (lines["median_err_over_u"] <= lines["high_err_over_u"]).all()
    rows = table[(table["problem"] == "summation") & (table["outcome"] == "ok")]
    one = lines.iloc[0]
    mine = rows[
        (rows["variant"] == one["variant"])
        & (rows["format"] == one["format"])
        & (rows["n"] == one["n"])
        & (np.floor(np.log10(rows["cond"])) == one["cond_decade"])
    ]
    if not pd.isna(one["seed"]):
        mine = mine[mine["seed"] == one["seed"]]
    assert one["high_err_over_u"] == pytest.approx(mine["err_over_u"].quantile(0.9))
    bands = [c for ax in figures["lines_summation_kappa"].axes for c in ax.collections]
    assert any(isinstance(c, PolyCollection) for c in bands)


def _panels(fig: plt.Figure) -> list:
    """The panels of a figure: its titled axes (colour bars and twins have no title)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]


def test_no_figure_holds_more_than_max_panels(figures):
    for stem, fig in figures.items():
        assert 1 <= len(_panels(fig)) <= plots.MAX_PANELS, (stem, len(_panels(fig)))


STORED_DPI = 110
"""The resolution the store writes figures at (`precision.store.files.png_bytes`)."""


def test_distribution_figures_fit_1400_px(figures):
    for stem, fig in figures.items():
        if stem.startswith("distributions_"):
            assert fig.get_size_inches()[0] * STORED_DPI <= 1400, stem


def test_seeded_families_are_one_line_in_every_line_figure(figures):
    """random_order at seeds 0 and 1 (TINY): one line per panel, named with its seed count,
    never one line per seed."""
    for stem, fig in figures.items():
        if not stem.startswith(("lines_", "bounds_")):
            continue
        for ax in fig.axes:
            labels = [line.get_label() for line in ax.get_lines()]
            assert not any("seed=" in label for label in labels), (stem, labels)
            assert labels.count("random orders (2 seeds)") <= 1
    labels = [t.get_text() for t in figures["lines_summation_kappa"].legends[0].get_texts()]
    assert "random orders (2 seeds)" in labels


def test_the_heatmap_panels_of_a_family_member_show_its_cells(figures):
    """Each member of a family (random_order seed=0, seed=1) is labelled once: its panels
    hold its coloured cells, not the empty facets of a twice-labelled name."""
    from matplotlib.collections import QuadMesh

    members = 0
    for stem, fig in figures.items():
        if not stem.startswith("heatmap_summation"):
            continue
        for ax in fig.axes:
            if "seed=" not in ax.get_title():
                continue
            (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
            assert np.ma.count(mesh.get_array()) > 0, (stem, ax.get_title())
            members += 1
    assert members == 2 * 3  # two seeds, three formats


def test_the_magnitude_axis_names_what_the_problem_measures(table):
    """A heatmap's y axis is the problem's magnitude (`Problem.magnitude_name`): max|x| for
    summation's vectors; the same rows relabelled as a linear system's say ||A||_2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rows = table[table["problem"] == "summation"]
        vector = plots.heatmap_figure(rows, "summation")
        matrix = plots.heatmap_figure(rows.assign(problem="linear_system"), "linear_system")
    labels = [{ax.get_ylabel() for ax in fig.axes} - {""} for fig in (vector, matrix)]
    plt.close("all")
    assert {"log10 max|x|"} <= labels[0] and "log10 ||A||_2" not in labels[0]
    assert {"log10 ||A||_2"} <= labels[1] and "log10 max|x|" not in labels[1]
