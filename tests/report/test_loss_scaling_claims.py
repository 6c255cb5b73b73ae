"""The float16 loss-scaling claim on hand-made loss_scaling rows: its verdict follows the stored
errors and outcomes, and changes when they do."""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.report.claims import loss_scaling
from precision.report.claims.base import FAILS, HOLDS, NOT_MEASURED, QUALIFIED

MAGNITUDES = (1e-9, 2.0**-25 * 0.999, 1e-6, 2.0**-24 * 65520.0, 1.0)
U16 = 2.0**-11


def _row(variant, fmt, magnitude, rel_error, outcome="ok", log2_scale=np.nan):
    u = U16 if fmt == "float16" else 2.0**-8
    return {
        "problem": "loss_scaling",
        "variant": variant,
        "log2_scale": log2_scale,
        "format": fmt,
        "n": 64,
        "magnitude": magnitude,
        "outcome": outcome,
        "rel_error": rel_error,
        "err_over_u": rel_error / u if outcome == "ok" else np.inf,
    }


def scaling_rows() -> pd.DataFrame:
    """float16 loses exactly what lies below 2^-25 unscaled, 2^24 overflows from 65520 / 2^24,
    the dynamic scale keeps everything to 0.3 u, bfloat16 keeps everything."""
    rows = []
    for m in MAGNITUDES:
        rows.append(_row("unscaled", "float16", m, 1.0 if m < 2.0**-25 else 0.2 * U16))
        rows.append(_row("dynamic_scale", "float16", m, 0.3 * U16))
        big = m >= 65520.0 * 2.0**-24
        rows.append(
            _row(
                "static_scale",
                "float16",
                m,
                np.nan if big else 0.1 * U16,
                "overflow" if big else "ok",
                24.0,
            )
        )
        rows.append(_row("unscaled", "bfloat16", m, 1e-5))
    return pd.DataFrame(rows)


def _finding(rows):
    return loss_scaling.float16_loss_scaling_finding({"loss_scaling": rows})


def test_the_claim_holds_on_rows_that_lose_exactly_below_the_threshold():
    finding = _finding(scaling_rows())
    assert finding.verdict == HOLDS
    evidence = finding.evidence.set_index("case")
    assert list(evidence["rows"]) == [2, 2, 2, 5]  # below 2^-25: 1e-9 and 0.999 * 2^-25


def test_a_kept_unscaled_gradient_below_the_threshold_qualifies_it():
    rows = scaling_rows()
    chosen = (rows["variant"] == "unscaled") & (rows["format"] == "float16")
    rows.loc[chosen & (rows["magnitude"] == 1e-9), "rel_error"] = 0.5
    finding = _finding(rows)
    assert finding.verdict == QUALIFIED
    assert "False for: unscaled float16, max|dy| < 2^-25: lost." in finding.measured


def test_a_lost_gradient_under_the_dynamic_scale_or_in_bfloat16_qualifies_it():
    rows = scaling_rows()
    rows.loc[(rows["variant"] == "dynamic_scale") & (rows["magnitude"] == 1e-9), "rel_error"] = 1.0
    rows.loc[rows["format"] == "bfloat16", "rel_error"] = 1.0
    assert _finding(rows).verdict == QUALIFIED


def test_a_static_scale_that_never_overflows_fails_the_overflow_case():
    rows = scaling_rows()
    static = rows["variant"] == "static_scale"
    rows.loc[static, ["outcome", "rel_error", "err_over_u"]] = ["ok", 0.1 * U16, 0.1]
    finding = _finding(rows)
    assert finding.verdict == QUALIFIED and "False for: static 2^24" in finding.measured
    # and with nothing true at all
    rows.loc[rows["variant"] == "unscaled", "rel_error"] = 1.0
    rows.loc[rows["variant"] == "dynamic_scale", "rel_error"] = 1.0
    rows.loc[(rows["variant"] == "unscaled") & (rows["magnitude"] < 2.0**-25), "rel_error"] = 0.5
    assert _finding(rows).verdict == FAILS


def test_no_rows_is_not_measured():
    assert _finding(pd.DataFrame()).verdict == NOT_MEASURED
