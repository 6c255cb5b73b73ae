"""Distributions beside the medians, seeds as a band, upcasts drawn apart, and figures split at
MAX_PANELS: each checked on a small table built here, by changing the data and seeing the
figure (or the numbers it is drawn from) change accordingly."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import PathPatch, Rectangle
from test_plots import overlapping_texts

from precision.core.formats import get_format
from precision.report import plots

ERRORS = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0])
"""Errors in units of u of the ok rows of one variant x format (odd count: the median is one of
them)."""


def _rows(
    variant: str,
    fmt: str,
    errors,
    *,
    outcome: str = "ok",
    cond=1.0,
    seed: float = np.nan,
    compute_dtype: str | None = None,
    n: int = 10,
    certified: bool = True,
    problem: str = "summation",
    bound: float = np.nan,
) -> pd.DataFrame:
    """Rows of one variant x format as a study stores them (the columns figures read)."""
    errors = np.asarray(errors, dtype=float)
    u = get_format(fmt).u
    return pd.DataFrame(
        {
            "problem": problem,
            "variant": variant,
            "h": np.nan,
            "lr": np.nan,
            "seed": seed,
            "format": fmt,
            "n": n,
            "cond": np.broadcast_to(np.asarray(cond, dtype=float), errors.shape),
            "magnitude": 1.0,
            "outcome": outcome,
            "certified": certified,
            "err_over_u": errors,
            "rel_error": errors * u,
            "abs_error": errors * u,
            "bits": np.nan,
            "bound": bound,
            "compute_dtype": "" if outcome == "unsupported" else (compute_dtype or fmt),
            "exception": "refused" if outcome == "unsupported" else None,
        }
    )


def _table(*parts: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _figures(draw, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty log panel cannot autoscale
        return draw(*args)


def _notes(fig: plt.Figure) -> list[str]:
    """The texts beside the boxes (right-hand tick labels of every panel)."""
    return [
        t.get_text()
        for ax in fig.axes
        if ax.yaxis.get_ticks_position() == "right"
        for t in ax.get_yticklabels()
    ]


# ---------------------------------------------------------------- distributions


def test_a_box_holds_the_quantiles_of_the_ok_rows_over_kappa_u():
    """Median, quartiles and 10/90% whiskers of log10(err_over_u / max(kappa, 1)): the rows'
    own quantiles, exactly (same interpolation), with kappa dividing every row."""
    cond = np.array([0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    table = _rows("recursive", "float16", ERRORS, cond=cond)
    stats = plots.box_stats(table, "summation").iloc[0]
    values = np.log10(ERRORS / np.maximum(cond, 1.0))
    for name, q in plots.BOX_QUANTILES.items():
        assert stats[name] == pytest.approx(np.quantile(values, q), rel=1e-12, abs=1e-12)
    assert (stats["lowest"], stats["highest"]) == (values.min(), values.max())
    assert stats["ok"] == len(ERRORS) and stats["failed"] == 0 and stats["absent"] == ""


def test_without_a_condition_number_the_box_is_of_err_over_u():
    table = _rows("naive", "float32", ERRORS, cond=np.nan, problem="exp")
    values, per_kappa = plots.distribution_measure(table)
    assert not per_kappa
    np.testing.assert_allclose(values, np.log10(ERRORS), rtol=1e-12)


def test_an_error_of_zero_sits_at_the_floor():
    values, _ = plots.distribution_measure(_rows("recursive", "float64", [0.0, 1.0]))
    assert values.tolist() == [plots.FLOOR, 0.0]


def test_a_failed_row_does_not_move_the_box_but_is_counted():
    ok = _rows("recursive", "float16", ERRORS)
    before = plots.box_stats(ok, "summation").iloc[0]
    # An overflowed row's error is inf, a nan row's nan: neither may enter the quantiles.
    failed = _table(
        ok,
        _rows("recursive", "float16", [np.inf], outcome="overflow"),
        _rows("recursive", "float16", [np.nan], outcome="nan"),
    )
    after = plots.box_stats(failed, "summation").iloc[0]
    for name in [*plots.BOX_QUANTILES, "lowest", "highest", "ok"]:
        assert after[name] == before[name], name
    assert after["failed"] == 2 and after["failed_share"] == pytest.approx(2 / 13)
    fig = _distribution(failed)
    assert _notes(fig) == ["n=11, 15% failed"]
    (median,) = [line for line in fig.axes[0].lines if line.get_gid() == "median"]
    assert median.get_xdata()[0] == pytest.approx(before["median"])


def _distribution(table: pd.DataFrame, problem: str = "summation") -> plt.Figure:
    (fig,) = _figures(plots.distribution_figures, table, problem).values()
    return fig


def _boxes(ax) -> list:
    return [p for p in ax.patches if isinstance(p, PathPatch)]


def test_a_pair_without_certified_ok_rows_is_labelled_absent_not_drawn():
    table = _table(
        _rows("numpy", "float16", ERRORS),
        _rows("numpy", "bfloat16", ERRORS),
        _rows("torch", "float16", ERRORS),
        _rows("torch", "bfloat16", np.full(5, np.nan), outcome="unsupported"),
    )
    stats = plots.box_stats(table, "summation").set_index(["variant", "format"])
    assert stats.loc[("torch", "bfloat16"), "ok"] == 0
    assert stats.loc[("torch", "bfloat16"), "absent"] == "all 5 rows failed (unsupported)"
    fig = _distribution(table)
    float16, bfloat16 = (ax for ax in fig.axes if ax.get_title() in ("float16", "bfloat16"))
    assert len(_boxes(float16)) == 2 and len(_boxes(bfloat16)) == 1
    assert [t.get_text() for t in bfloat16.texts] == ["absent: all 5 rows failed (unsupported)"]
    assert "n=0, 100% failed" in _notes(fig)
    # The same rows certified ok: a box, and no label.
    table.loc[table["outcome"] == "unsupported", ["outcome", "err_over_u"]] = ["ok", 1.0]
    fig = _distribution(table)
    bfloat16 = next(ax for ax in fig.axes if ax.get_title() == "bfloat16")
    assert len(_boxes(bfloat16)) == 2 and not bfloat16.texts


def test_uncertified_or_unrun_pairs_are_absent_with_their_reason():
    table = _table(
        _rows("numpy", "float16", ERRORS, certified=False),
        _rows("kahan", "float32", ERRORS),
    )
    stats = plots.box_stats(table, "summation").set_index(["variant", "format"])
    assert stats.loc[("numpy", "float16"), "absent"] == "none certified ok of 11: uncertified 11"
    assert stats.loc[("numpy", "float32"), "absent"] == "not run"
    texts = [t.get_text() for ax in _distribution(table).axes for t in ax.texts]
    assert sorted(texts) == [
        "absent: none certified ok of 11: uncertified 11",
        "absent: not run",
        "absent: not run",
    ]


def test_a_problem_with_many_variants_is_split_over_figures(monkeypatch):
    monkeypatch.setattr(plots.common, "MAX_BOXES", 2)
    table = _table(*(_rows(f"v{k}", "float32", ERRORS * (k + 1)) for k in range(5)))
    drawn = _figures(plots.distribution_figures, table, "summation")
    assert list(drawn) == [f"distributions_summation{s}" for s in ("", "_2", "_3")]
    counts = [len(_boxes(fig.axes[0])) for fig in drawn.values()]
    assert counts == [2, 2, 1]
    limits = {fig.axes[0].get_xlim() for fig in drawn.values()}
    assert len(limits) == 1  # parts share one x axis, so they compare


# ---------------------------------------------------------------- seeds drawn as a band


def _seeded_table(seeds: int) -> pd.DataFrame:
    """recursive_sr at ``seeds`` seeds (seed s has errors (s + 1) times the base) and
    recursive, over three condition decades."""
    parts = []
    for decade in range(3):
        cond = 10.0**decade * 1.5
        parts.append(_rows("recursive", "float16", ERRORS * cond, cond=cond))
        for s in range(seeds):
            errors = ERRORS * cond * (s + 1)
            parts.append(_rows("recursive_sr", "float16", errors, cond=cond, seed=float(s)))
    return _table(*parts)


def _variant_lines(fig: plt.Figure) -> list[str]:
    return [
        line.get_label()
        for ax in fig.axes
        for line in ax.get_lines()
        if line.get_label().startswith("recursive")
    ]


def test_three_seeds_give_one_line_with_a_band_not_three_lines():
    table = _seeded_table(3)
    fig = _figures(plots.lines_versus_condition, table, "summation")
    assert _variant_lines(fig) == ["recursive", "recursive_sr (3 seeds)"]
    bands = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(bands) == 3  # the 10-90% band of each line, and the seed band
    # The seed band spans the per-seed medians: seed 0 at the bottom, seed 2 at the top.
    envelope = plots.common._seed_envelope(table, "cond_decade")
    for decade, row in envelope.set_index("cond_decade").iterrows():
        base = np.median(ERRORS) * 10.0**decade * 1.5
        assert row["seed_low_err_over_u"] == pytest.approx(base)
        assert row["seed_high_err_over_u"] == pytest.approx(3 * base)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "seeds: median range" in legend


def test_the_seed_line_is_the_median_of_every_seeds_rows():
    data = plots.common._line_data(_seeded_table(3), "cond_decade")
    line = data[data["variant"] == "recursive_sr (3 seeds)"].set_index("cond_decade")
    for decade, row in line.iterrows():
        pooled = np.concatenate([ERRORS * 10.0**decade * 1.5 * (s + 1) for s in range(3)])
        assert row["median_err_over_u"] == pytest.approx(np.median(pooled))
        assert row["count"] == len(pooled)


def test_every_family_with_a_seed_is_pooled_and_one_seed_is_not_a_band():
    """random_order keeps its name; any other seeded family is named with its seed count."""
    table = _table(
        _rows("random_order", "float16", ERRORS, seed=0.0),
        _rows("random_order", "float16", ERRORS, seed=1.0),
        _rows("recursive_sr", "float16", ERRORS, seed=0.0),
    )
    assert sorted(set(plots.common._pooled(table)["variant"])) == [
        "random orders (2 seeds)",
        "recursive_sr",
    ]


# ---------------------------------------------------------------- upcasts drawn apart


def _upcast_table(upcast: bool) -> pd.DataFrame:
    parts = []
    for fmt in ("float16", "float32"):
        for decade in range(3):
            cond = 10.0**decade * 1.5
            wider = "float32" if upcast and fmt == "float16" else fmt
            # A bound, so that bound_lines_versus_condition draws the rows' bounds too.
            bound = 2 * get_format(fmt).u * cond
            parts.append(
                _rows("numpy", fmt, ERRORS * cond, cond=cond, compute_dtype=wider, bound=bound)
            )
            parts.append(_rows("recursive", fmt, ERRORS * cond, cond=cond))
    return _table(*parts)


def _line(fig: plt.Figure, fmt: str, label: str):
    ax = next(ax for ax in fig.axes if ax.get_title().startswith(fmt))
    return next(line for line in ax.get_lines() if line.get_label() == label)


@pytest.mark.parametrize("upcast", [True, False])
def test_an_upcast_variant_is_dashed_hollow_and_labelled_in_line_figures(upcast):
    table = _upcast_table(upcast)
    for fig in (
        _figures(plots.lines_versus_condition, table, "summation"),
        _figures(plots.lines_versus_n, table, "summation"),
        _figures(plots.bound_lines_versus_condition, table, "summation"),
    ):
        mine, other = _line(fig, "float16", "numpy"), _line(fig, "float32", "numpy")
        assert (mine.get_linestyle(), mine.get_markerfacecolor()) == (
            ("--", "none") if upcast else ("-", other.get_markerfacecolor())
        )
        assert (
            other.get_linestyle() == "-"
            and _line(fig, "float16", "recursive").get_linestyle() == "-"
        )
        assert mine.get_color() == other.get_color()  # one colour per variant in every panel
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert ("numpy (upcast: float16->float32)" in legend) == upcast
        assert ("numpy" in legend) == (not upcast)


@pytest.mark.parametrize("upcast", [True, False])
def test_an_upcast_facet_is_framed_and_titled_and_its_box_hollow(upcast):
    table = _upcast_table(upcast)
    (heatmap,) = _figures(plots.heatmap_figures, table, "summation").values()
    facet = next(ax for ax in heatmap.axes if ax.get_title().startswith("numpy · float16"))
    assert ("upcast: returns float32" in facet.get_title()) == upcast
    frames = [p for p in facet.patches if isinstance(p, Rectangle) and p.get_linestyle() == "--"]
    assert len(frames) == int(upcast)
    fig = _distribution(table)
    ax = next(ax for ax in fig.axes if ax.get_title() == "float16")
    numpy_box = _boxes(ax)[0]  # numpy is the first variant of the table
    assert (numpy_box.get_facecolor()[3] == 0) == upcast
    assert (numpy_box.get_linestyle() == "--") == upcast
    assert ("n=33, returns float32" in _notes(fig)) == upcast


# ---------------------------------------------------------------- panels per figure


def test_line_figures_with_more_than_max_panels_are_split(monkeypatch):
    monkeypatch.setattr(plots.common, "MAX_PANELS", 4)  # two sizes of two formats per figure
    table = _table(
        *(
            _rows("recursive", fmt, ERRORS * 1.5, cond=1.5, n=n)
            for fmt in ("float16", "float32")
            for n in (10, 100, 1000)
        )
    )
    drawn = _figures(plots.study_figures, table)
    parts = [stem for stem in drawn if stem.startswith("lines_summation_kappa")]
    assert parts == ["lines_summation_kappa", "lines_summation_kappa_2"]
    for stem in parts:
        panels = [ax for ax in drawn[stem].axes if ax.get_title()]
        assert len(panels) <= 4
    titles = [ax.get_title() for stem in parts for ax in drawn[stem].axes]
    assert titles == [f"{f}, n = {n}" for n in (10, 100, 1000) for f in ("float16", "float32")]


# ---------------------------------------------------------------- heatmap cells


def test_failed_percentages_stay_legible_on_a_long_condition_axis():
    """Four facets of 16 condition decades: 14 cells half failed side by side, one with 1
    failed row in 249 and one all failed: no two labels overlap, a hatched cell carries no
    "100", a small share reads "<1" (not "0")."""
    parts = []
    for fmt in ("float16", "bfloat16", "float32", "float64"):  # four facets: cells 1/16 of one
        for decade in range(14):
            cond = 1.5 * 10.0**decade
            parts.append(_rows("lu_solve", fmt, [1.0, 1.0], cond=cond))
            parts.append(_rows("lu_solve", fmt, [np.inf] * 2, cond=cond, outcome="overflow"))
        parts.append(_rows("lu_solve", fmt, np.ones(248), cond=1.5e14))
        parts.append(_rows("lu_solve", fmt, [np.inf], cond=1.5e14, outcome="overflow"))
        parts.append(_rows("lu_solve", fmt, [np.nan] * 2, cond=1.5e15, outcome="nan"))
    (fig,) = _figures(plots.heatmap_figures, _table(*parts), "summation").values()
    for ax in fig.axes[:4]:
        assert sorted(t.get_text() for t in ax.texts) == ["50"] * 14 + ["<1"]
    assert not overlapping_texts(fig), overlapping_texts(fig)[:3]


def test_a_partial_upcast_is_counted_in_the_label():
    table = _table(
        _rows("scipy_solve", "float32", ERRORS[:8]),
        _rows("scipy_solve", "float32", ERRORS[:3], compute_dtype="float64"),
        _rows("scipy_solve", "float16", ERRORS, compute_dtype="float32"),
        _rows("scipy_solve", "bfloat16", ERRORS[:2], outcome="unsupported"),
    )
    assert plots.line_styles(table).labels["scipy_solve"] == (
        "scipy_solve (upcast: float16->float32, float32->float64 3 of 11)"
    )
