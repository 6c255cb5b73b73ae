"""The float16 RMSNorm overflow claim on hand-made rms_norm rows: its verdict follows the stored
outcomes, and changes when they do."""

from __future__ import annotations

import pandas as pd

from precision.report.claims import norms
from precision.report.claims.base import FAILS, HOLDS, NOT_MEASURED, QUALIFIED

MAGNITUDES = (1.0, 20.0, 255.875, 256.0, 4000.0)
VARIANTS = ("in_format", "float32_statistics", "prescaled")


def rms_rows(*, n: int = 64) -> pd.DataFrame:
    """float16 and bfloat16 rows where in-format float16 fails exactly where n max|x|^2 passes
    65504 (the pairwise sum's overflow), every other variant and format computes."""
    rows = []
    for fmt in ("float16", "bfloat16"):
        for variant in VARIANTS:
            for magnitude in MAGNITUDES:
                fails = variant == "in_format" and fmt == "float16" and n * magnitude**2 > 65504
                rows.append(
                    {
                        "problem": "rms_norm",
                        "variant": variant,
                        "format": fmt,
                        "n": n,
                        "cond": 1.5,
                        "magnitude": magnitude,
                        "outcome": "overflow" if fails else "ok",
                        "rel_error": 1.0 if fails else 1e-3,
                    }
                )
    return pd.DataFrame(rows)


def _finding(rows: pd.DataFrame):
    return norms.float16_rms_overflow_finding({"rms_norm": rows})


def _at(rows, variant, magnitude, fmt="float16"):
    return (rows["variant"] == variant) & (rows["magnitude"] == magnitude) & (rows["format"] == fmt)


def test_the_claim_holds_on_rows_that_fail_only_by_overflow():
    finding = _finding(rms_rows())
    assert finding.verdict == HOLDS
    assert set(finding.evidence["failure_share"]) == {0.0, 1.0}
    assert "100% of 2 rows failed" in finding.measured  # 256 and 4000


def test_an_in_format_row_above_256_that_computes_qualifies_the_claim():
    rows = rms_rows()
    rows.loc[_at(rows, "in_format", 4000.0), "outcome"] = "ok"
    finding = _finding(rows)
    assert finding.verdict == QUALIFIED and finding.measured.startswith("True for:")


def test_a_failing_safe_row_or_float32_row_qualifies_it():
    for variant, magnitude in (("in_format", 1.0), ("float32_statistics", 4000.0)):
        rows = rms_rows()
        rows.loc[_at(rows, variant, magnitude), "outcome"] = "nan"
        assert _finding(rows).verdict == QUALIFIED, variant


def test_everything_contrary_fails_it():
    rows = rms_rows()
    half = rows["format"] == "float16"
    rows.loc[half, "outcome"] = "ok"  # in-format never fails ...
    rows.loc[half & (rows["variant"] != "in_format"), "outcome"] = "overflow"  # ... the others do
    rows.loc[_at(rows, "in_format", 1.0), "outcome"] = "nan"
    assert _finding(rows).verdict == FAILS


def test_rows_whose_input_overflowed_do_not_count():
    """A float16 input beyond 65504 (outcome input_overflow) computed nothing in any variant."""
    rows = rms_rows()
    extra = rows[_at(rows, "float32_statistics", 4000.0)].assign(
        magnitude=1e5, outcome="input_overflow"
    )
    assert _finding(pd.concat([rows, extra], ignore_index=True)).verdict == HOLDS


def test_bfloat16_rows_do_not_count():
    rows = rms_rows()
    rows.loc[rows["format"] == "bfloat16", "outcome"] = "overflow"
    assert _finding(rows).verdict == HOLDS


def test_not_measured_without_rows():
    assert _finding(pd.DataFrame()).verdict == NOT_MEASURED
    assert norms.float16_rms_overflow_finding({}).verdict == NOT_MEASURED
