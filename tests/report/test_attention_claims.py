"""The attention float32-statistics claim on hand-made attention rows: its verdict follows the
stored errors and changes when they do."""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.report.claims import attention
from precision.report.claims.base import FAILS, HOLDS, NOT_MEASURED, QUALIFIED

LENGTHS = (16, 1024)


def attention_rows(*, in_format_growth: float = 4.0) -> pd.DataFrame:
    """float32-statistics rows at 0.5 u; in-format rows at 0.5 u times growth per factor 8 of L
    (so 0.5 * growth^(10/3) u at L = 1024: 50 u for growth 4)."""
    rows = []
    for fmt in ("bfloat16", "float16"):
        for n in LENGTHS:
            for variant in ("two_pass", "online", "blockwise"):
                for stats in (0.0, 1.0):
                    error = 0.5 if stats else 0.5 * in_format_growth ** (np.log2(n / 8) / 3)
                    rows += [
                        {
                            "problem": "attention",
                            "variant": variant,
                            "float32_stats": stats,
                            "format": fmt,
                            "n": n,
                            "cond": 2.0,
                            "magnitude": 5.0,
                            "outcome": "ok",
                            "err_over_u": error * (1 + 0.01 * k),
                        }
                        for k in range(3)
                    ]
    return pd.DataFrame(rows)


def _finding(rows):
    return attention.float32_statistics_finding({"attention": rows})


def test_float32_statistics_within_one_u_and_in_format_losing_holds():
    finding = _finding(attention_rows())
    assert finding.verdict == HOLDS
    assert "bfloat16, L = 1024: float32 statistics median 0.505 u" in finding.measured


def test_a_float32_statistics_row_group_above_one_u_qualifies_it():
    rows = attention_rows()
    chosen = (rows["float32_stats"] == 1) & (rows["n"] == 16) & (rows["format"] == "float16")
    rows.loc[chosen, "err_over_u"] = 3.0
    finding = _finding(rows)
    assert finding.verdict == QUALIFIED
    assert "False for: float32 statistics in float16 at L = 16" in finding.measured


def test_no_growth_in_the_format_fails_the_loss_cases():
    finding = _finding(attention_rows(in_format_growth=1.0))
    assert finding.verdict == QUALIFIED  # the float32 cases still hold
    assert set(finding.measured.split("False for: ")[1].split(".")[0].split(", ")) == {
        "in-format two_pass in bfloat16 at L = 1024",
        "in-format two_pass in float16 at L = 1024",
    }
    rows = attention_rows(in_format_growth=1.0)
    rows["err_over_u"] *= 4  # 2 u: no case holds
    assert _finding(rows).verdict == FAILS


def test_failed_rows_do_not_enter_the_medians():
    rows = attention_rows()
    chosen = (rows["float32_stats"] == 1) & (rows["format"] == "bfloat16")
    rows.loc[chosen & (rows.index % 3 == 0), ["outcome", "err_over_u"]] = ["overflow", np.inf]
    assert _finding(rows).verdict == HOLDS


def test_no_attention_rows_is_not_measured():
    assert _finding(pd.DataFrame()).verdict == NOT_MEASURED
