"""Line figures against sequence length and input magnitude (issue 17): each checked on a small
table built here, the lines' y data compared with medians computed here from the rows, and the
failure strips with the failed shares counted here."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from test_distributions import _rows, _table
from test_plots import overlapping_texts

from precision.report import plots

LENGTHS = (16, 128, 1024)
"""Sequence lengths of the attention tables built here."""


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _quiet(draw, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty log panel cannot autoscale
        return draw(*args, **kwargs)


def _line(ax, label: str):
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return line


def _panel(fig: plt.Figure, title: str):
    (ax,) = [ax for ax in fig.axes if ax.get_visible() and ax.get_title() == title]
    return ax


# ---------------------------------------------------------------- error versus L


def _attention(seed: int = 0) -> pd.DataFrame:
    """Two variants x two formats x three lengths x two condition decades (kappa 2 and 300),
    seven random ok rows each, and per group one overflow row with a huge error that no
    median may hold."""
    rng = np.random.default_rng(seed)
    parts = []
    for variant in ("two_pass", "online"):
        for fmt in ("float16", "bfloat16"):
            for n in LENGTHS:
                for cond in (2.0, 300.0):
                    errors = rng.uniform(0.1, 50.0, size=7)
                    parts.append(_rows(variant, fmt, errors, cond=cond, n=n, problem="attention"))
                    parts.append(
                        _rows(
                            variant,
                            fmt,
                            [1e9],
                            cond=cond,
                            n=n,
                            problem="attention",
                            outcome="overflow",
                        )  # fmt: skip
                    )
    return _table(*parts)


def test_the_length_lines_are_the_medians_of_ok_rows_per_condition_decade():
    table = _attention()
    (fig,) = _quiet(plots.length_figures, table, "attention").values()
    ok = table[table["outcome"] == "ok"]
    for variant in ("two_pass", "online"):
        for fmt in ("float16", "bfloat16"):
            for decade, cond in ((0, 2.0), (2, 300.0)):
                line = _line(_panel(fig, f"{fmt}, kappa in [1e{decade}, 1e{decade + 1})"), variant)
                mine = ok[(ok["variant"] == variant) & (ok["format"] == fmt) & (ok["cond"] == cond)]
                expected = [np.median(mine.loc[mine["n"] == n, "err_over_u"]) for n in LENGTHS]
                assert list(line.get_xdata()) == list(LENGTHS)
                np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)


def test_changing_the_rows_changes_the_length_lines():
    """Another draw of the errors moves every median: the figure is drawn from the rows."""
    first = _quiet(plots.lines_versus_length, _attention(seed=0), "attention")
    second = _quiet(plots.lines_versus_length, _attention(seed=1), "attention")
    title = "float16, kappa in [1e0, 1e1)"
    a = _line(_panel(first, title), "online").get_ydata()
    b = _line(_panel(second, title), "online").get_ydata()
    assert not np.any(np.isclose(a, b))


def test_the_length_figure_says_which_rows_enter_and_splits_at_max_panels(monkeypatch):
    table = _attention()
    (fig,) = _quiet(plots.length_figures, table, "attention").values()
    assert "one row per condition decade" in fig.get_suptitle()
    assert "all certified ok rows" in fig.get_suptitle()
    monkeypatch.setattr(plots.common, "MAX_PANELS", 2)  # one condition decade of two formats each
    drawn = _quiet(plots.length_figures, table, "attention")
    assert list(drawn) == ["lines_attention_n", "lines_attention_n_2"]
    titles = [sorted(ax.get_title() for ax in f.axes if ax.get_title()) for f in drawn.values()]
    assert titles[0] == ["bfloat16, kappa in [1e0, 1e1)", "float16, kappa in [1e0, 1e1)"]
    assert titles[1] == ["bfloat16, kappa in [1e2, 1e3)", "float16, kappa in [1e2, 1e3)"]


# ---------------------------------------------------------------- error versus |x|

MAGNITUDES = (0.3, 3.0, 30.0, 300.0)
"""One magnitude per decade -1 .. 2."""


def _norms(*, in_format_fails_from: float = 300.0) -> pd.DataFrame:
    """layer_norm, two variants x two formats, five ok rows of kappa 2 per magnitude decade
    with errors growing with the decade, plus rows a median must leave out: an ill-conditioned
    ok row (kappa 1e4, error 1e6) and, for in_format in float16 from
    ``in_format_fails_from`` on, overflow rows in place of the ok ones."""
    parts = []
    for variant in ("in_format", "float32_statistics"):
        for fmt in ("float16", "float32"):
            for k, magnitude in enumerate(MAGNITUDES):
                errors = (k + 1) * np.array([0.5, 1.0, 2.0, 4.0, 8.0])
                fails = variant == "in_format" and fmt == "float16"
                outcome = "overflow" if fails and magnitude >= in_format_fails_from else "ok"
                rows = _rows(variant, fmt, errors, cond=2.0, problem="layer_norm",
                             outcome=outcome)  # fmt: skip
                wide = _rows(variant, fmt, [1e6], cond=1e4, problem="layer_norm")
                parts += [rows.assign(magnitude=magnitude), wide.assign(magnitude=magnitude)]
    return _table(*parts)


def _strip(fig: plt.Figure, column: int):
    """The failure strip under the panel of the ``column``-th format."""
    return [ax for ax in fig.axes if ax.get_ylabel() == "failed"][column]


def _cell(strip, variant: str, decade: int):
    (cell,) = [p for p in strip.patches if p.get_gid() == f"failed {variant} {decade}"]
    return cell


def test_the_magnitude_lines_are_medians_of_well_conditioned_ok_rows():
    table = _norms()
    (fig,) = _quiet(plots.magnitude_figures, table, "layer_norm").values()
    held = table[(table["outcome"] == "ok") & (table["cond"] < plots.WELL_CONDITIONED)]
    for fmt in ("float16", "float32"):
        ax = _panel(fig, fmt)
        for variant in ("in_format", "float32_statistics"):
            mine = held[(held["variant"] == variant) & (held["format"] == fmt)]
            by_decade = mine.groupby(np.floor(np.log10(mine["magnitude"])))
            line = _line(ax, variant)
            np.testing.assert_allclose(line.get_xdata(), by_decade["magnitude"].median())
            np.testing.assert_allclose(line.get_ydata(), by_decade["err_over_u"].median())
    # in_format in float16 overflows from 300 on: its line ends at the decade below.
    assert _line(_panel(fig, "float16"), "in_format").get_xdata()[-1] == 30.0


def test_the_strip_gives_the_failed_share_and_marks_decades_without_a_point():
    table = _norms(in_format_fails_from=30.0)
    (fig,) = _quiet(plots.magnitude_figures, table, "layer_norm").values()
    strip = _strip(fig, column=0)  # float16
    for k, magnitude in enumerate(MAGNITUDES):
        decade = k - 1
        # Five overflow rows of six (the sixth is the ill-conditioned ok row) fail where it fails.
        fails = magnitude >= 30.0
        cell = _cell(strip, "in_format", decade)
        assert (cell.get_hatch() == "///") == fails  # no row in the medians: no point there
        assert (tuple(cell.get_facecolor()[:3]) == (1.0, 1.0, 1.0)) == (not fails)
        assert _cell(strip, "float32_statistics", decade).get_hatch() is None
    shares = sorted(t.get_text() for t in strip.texts)
    assert shares == [plots.common._share(5 / 6)] * 2
    float32 = _strip(fig, column=1)
    assert not float32.texts  # nothing failed in float32: no percentage written


def test_a_decade_that_only_failed_is_marked_even_when_every_row_failed():
    """All rows of in_format float16 at 300 overflow (the ill-conditioned one too): 100%."""
    table = _norms()
    last = (table["variant"] == "in_format") & (table["format"] == "float16")
    table.loc[last & (table["magnitude"] == 300.0), "outcome"] = "overflow"
    (fig,) = _quiet(plots.magnitude_figures, table, "layer_norm").values()
    strip = _strip(fig, column=0)
    assert [t.get_text() for t in strip.texts] == ["100%"]
    assert _cell(strip, "in_format", 2).get_hatch() == "///"


def test_inputs_that_overflowed_on_rounding_are_counted_in_the_title():
    table = _norms()
    overflowed = _rows("in_format", "float16", [np.nan] * 3, problem="layer_norm",
                       outcome="input_overflow").assign(magnitude=np.inf)  # fmt: skip
    (fig,) = _quiet(plots.magnitude_figures, _table(table, overflowed), "layer_norm").values()
    (title,) = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("float16")]
    assert "3 rows with |x| = inf not binned: input_overflow 3" in title


def test_magnitude_figures_split_at_max_boxes_and_draw_no_text_over_text(monkeypatch):
    table = _norms(in_format_fails_from=30.0)
    (fig,) = _quiet(plots.magnitude_figures, table, "layer_norm").values()
    assert not overlapping_texts(fig)
    monkeypatch.setattr(plots.common, "MAX_BOXES", 1)
    drawn = _quiet(plots.magnitude_figures, table, "layer_norm")
    assert list(drawn) == ["lines_layer_norm_magnitude", "lines_layer_norm_magnitude_2"]


def test_study_figures_choose_the_new_figures_by_the_declared_tuples():
    table = _table(_attention(), _norms())
    figures = _quiet(plots.study_figures, table)
    assert {"lines_attention_n", "lines_layer_norm_magnitude"} <= set(figures)
    assert "attention" in plots.VERSUS_LENGTH and "layer_norm" in plots.VERSUS_MAGNITUDE
    assert not overlapping_texts(figures["lines_attention_n"])
