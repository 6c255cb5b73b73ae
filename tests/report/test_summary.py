"""Summaries are computed from the rows: changing a row changes them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.report.summary import decade, markdown, overflow_thresholds, overview, summarize

FORMATS = ["float16", "float64"]


def toy_table() -> pd.DataFrame:
    rows = []
    for fmt in FORMATS:
        for i, (x_max, outcome, err) in enumerate(
            [(5.0, "ok", 1.0), (10.0, "ok", 3.0), (12.0, "nan", np.nan), (20.0, "overflow", np.inf)]
        ):
            rows.append(
                {
                    "problem": "logsumexp",
                    "variant": "naive",
                    "format": fmt,
                    "sample": i,
                    "cond": 10.0**i,
                    "magnitude": x_max,
                    "x_max": x_max,
                    "lse": x_max + 0.1,
                    "rel_error": err * 2.0**-11,
                    "err_over_u": err,
                    "fp_exceptions": "overflow" if outcome != "ok" else "",
                    "bits": 1.0,
                    "outcome": outcome,
                    "bound": 2.0 * 2.0**-11,
                    "certified": True,
                }
            )
    return pd.DataFrame(rows)


def test_decade_bins_measured_values():
    assert decade(pd.Series([0.5, 1.0, 9.99, 10.0, 0.0])).tolist()[:4] == [-1, 0, 0, 1]
    assert decade(pd.Series([0.0, -1.0, np.inf, np.nan])).isna().all()


def test_overview_counts_failures_and_excludes_them_from_errors():
    table = overview(toy_table())
    row = table[table["format"] == "float16"].iloc[0]
    assert row["count"] == 4
    assert row["failure_fraction"] == 0.5
    assert row["median_err_over_u"] == 2.0  # median of the ok rows 1 and 3 only
    assert row["max_err_over_u"] == 3.0
    assert row["bound_violations"] == 1  # err 3u > bound 2u


def test_summary_changes_when_a_row_changes():
    table = toy_table()
    before = summarize(table)
    table.loc[0, "err_over_u"] = 100.0
    after = summarize(table)
    assert not before.equals(after)


def test_overflow_thresholds_locate_the_first_failure():
    thresholds = overflow_thresholds(toy_table())
    row = thresholds[thresholds["format"] == "float16"].iloc[0]
    assert row["max_x_max_ok"] == 10.0
    assert row["min_x_max_overflow"] == 12.0
    assert row["overflowed"] == 2 and row["other_failures"] == 0
    assert np.isclose(row["ln_max"], np.log(65504.0))


def test_markdown_digest_is_a_table():
    text = markdown(toy_table(), title="toy")
    assert text.startswith("# Study `toy`")
    assert "| problem | variant | format |" in text
