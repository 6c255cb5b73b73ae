"""A claim about Adam's update in float16 (issue 17), read from the stored rows of the adam study
(`precision.problems.adam`).

The statement: with eps = 1e-8, an Adam step computed in float16 breaks for small gradients
(eps rounds to 0 there, and the gradient's share of the second moment underflows, leaving
0 / 0 or m / 0), while a float32 state with the update rounded to float16 does not, and
bfloat16, which keeps eps, does not either. The criterion is fixed here, before any run.
"""

from __future__ import annotations

import pandas as pd

from precision.core.schema import FAILURES
from precision.problems.adam import EPS
from precision.report.claims.base import NOT_MEASURED, Finding, Tables, judged, number, ran_only

SMALL_GRADIENT_DECADE = -2
"""Cells whose gradient magnitude max(|g|, |m|) lies below 10^-2 are "small gradients": float16's
(1 - b2) g^2 underflows below |g| = 5.5e-3 (measured in tests/problems/test_adam.py)."""

MOSTLY = 0.5
"""In-format float16 "breaks" on small gradients when at least this share of their rows fails
(outcome in `precision.core.schema.FAILURES`)."""


def _failure_share(rows: pd.DataFrame) -> tuple[float, int]:
    return float(rows["outcome"].isin(FAILURES).mean()), len(rows)


def float16_adam_finding(tables: Tables) -> Finding:
    """Holds when (1) in-format float16 fails on at least `MOSTLY` of the rows with gradient
    magnitude below 10^`SMALL_GRADIENT_DECADE`, (2) the float32 state in float16 fails on no
    row, and (3) in-format bfloat16 fails on no row; each is a case of the verdict. Only the
    rows with eps = 1e-8 (`precision.problems.adam.EPS`) are read: the statement is about
    that eps (tables written before eps was a column hold only those rows)."""
    rows = ran_only(tables.get("adam_update", pd.DataFrame()))
    if "eps" in rows:
        rows = rows[rows["eps"] == float(EPS)]
    if rows.empty:
        return Finding(
            NOT_MEASURED,
            "not measured: no adam_update row with eps = 1e-8 is stored.",
            pd.DataFrame(),
        )
    small = rows["cell_log10_magnitude"] < SMALL_GRADIENT_DECADE
    selections = {
        "in_format float16, small gradients": (rows["variant"] == "in_format")
        & (rows["format"] == "float16")
        & small,
        "float32_state float16": (rows["variant"] == "float32_state")
        & (rows["format"] == "float16"),
        "in_format bfloat16": (rows["variant"] == "in_format") & (rows["format"] == "bfloat16"),
    }
    cases, parts, evidence = {}, [], []
    for case, chosen in selections.items():
        if not chosen.any():
            continue
        share, count = _failure_share(rows[chosen])
        cases[case] = share >= MOSTLY if case.endswith("small gradients") else share == 0
        parts.append(f"{case}: {number(100 * share, 3)}% of {count} rows failed")
        evidence.append({"case": case, "failure_share": share, "rows": count})
    text = (
        "Criterion (rows with eps = 1e-8): holds when in-format float16 fails (nan, overflow, "
        f"underflow) on at least "
        f"{number(100 * MOSTLY)}% of the rows with max(|g|, |m|) below "
        f"1e{SMALL_GRADIENT_DECADE}, while the float32 state rounded to float16 and in-format "
        "bfloat16 fail on none. Measured: " + "; ".join(parts) + "."
    )
    return judged(cases, text, pd.DataFrame(evidence))
