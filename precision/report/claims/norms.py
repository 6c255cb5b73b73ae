"""A claim about RMSNorm in float16 (issue 17), read from the stored rows of the norms study
(`precision.problems.norms`).

The statement: computed in float16 as written, RMSNorm's sum of squares overflows once one
element reaches |x| = 256 (256^2 = 65536 > 65504; tests/problems/test_norms.py measures the
threshold exhaustively), while float32 statistics and pre-scaling by a power of two near max|x|
do not fail. The criterion is fixed here, before any run.
"""

from __future__ import annotations

import pandas as pd

from precision.core.schema import FAILURES
from precision.report.claims.base import (
    NOT_COMPUTED,
    NOT_MEASURED,
    Finding,
    Tables,
    judged,
    number,
    ran_only,
)

THRESHOLD = 256.0
"""One float16 element of this magnitude has a square beyond float16's 65504."""

FLOAT16_MAX = 65504.0

SAFE_SHARE = 0.5
"""Rows whose sum of squares is at most n max|x|^2 <= SAFE_SHARE * 65504 cannot overflow (the
pairwise sum's rounding grows it by far less than a factor 2): in-format float16 must not fail
on them, so that its failures above the threshold are the overflow and nothing else."""


def _selections(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """The four groups of rows the criterion reads, by name. Rows that computed nothing (an
    input beyond float16's range, outcome ``input_overflow``) are evidence of nothing."""
    half = (rows["format"] == "float16") & ~rows["outcome"].isin(NOT_COMPUTED)
    in_format = (rows["variant"] == "in_format") & half
    magnitude = pd.to_numeric(rows["magnitude"], errors="coerce")
    squares = rows["n"].astype(float) * magnitude**2
    return {
        f"in_format float16, max|x| >= {number(THRESHOLD)}": in_format & (magnitude >= THRESHOLD),
        f"in_format float16, n max|x|^2 <= {SAFE_SHARE * FLOAT16_MAX:.0f}": in_format
        & (squares <= SAFE_SHARE * FLOAT16_MAX),
        "float32_statistics float16": (rows["variant"] == "float32_statistics") & half,
        "prescaled float16": (rows["variant"] == "prescaled") & half,
    }


def float16_rms_overflow_finding(tables: Tables) -> Finding:
    """Holds when in-format float16 RMSNorm fails (outcome in `FAILURES`) on every row with
    max|x| >= 256 and on no row with n max|x|^2 <= 32752, and the float32-statistics and
    prescaled variants fail on no float16 row; each group is a case of the verdict. Rows whose
    input overflowed float16 (``input_overflow``) are left out of every group."""
    rows = ran_only(tables.get("rms_norm", pd.DataFrame()))
    if rows.empty:
        return Finding(NOT_MEASURED, "not measured: no rms_norm row is stored.", pd.DataFrame())
    cases, parts, evidence = {}, [], []
    for case, chosen in _selections(rows).items():
        if not chosen.any():
            continue
        share = float(rows.loc[chosen, "outcome"].isin(FAILURES).mean())
        cases[case] = share == 1.0 if ">=" in case else share == 0.0
        parts.append(f"{case}: {number(100 * share, 3)}% of {int(chosen.sum())} rows failed")
        evidence.append({"case": case, "failure_share": share, "rows": int(chosen.sum())})
    text = (
        f"Criterion: holds when in-format float16 RMSNorm fails (overflow, nan, ...) on every "
        f"row with max|x| >= {number(THRESHOLD)} and on no row with n max|x|^2 <= "
        f"{SAFE_SHARE * FLOAT16_MAX:.0f}, while float32 statistics and pre-scaling fail on "
        "no float16 row. Measured: " + "; ".join(parts) + "."
    )
    return judged(cases, text, pd.DataFrame(evidence))
