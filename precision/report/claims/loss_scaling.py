"""A claim about loss scaling (issue 17), read from the stored rows of the loss-scaling study
(`precision.problems.loss_scaling`: the weight gradient dW = sum_i dy_i x_i with dy stored in
the format, products and sum in float32).

The statement (Micikevicius et al., "Mixed precision training", ICLR 2018, section 3.2): without
a scale, float16 loses every weight gradient whose upstream gradients all lie below half its
smallest subnormal (max|dy| < 2^-25: each dy_i rounds to 0, the result is exactly 0, a relative
error of exactly 1); GradScaler's dynamic scale (2^16, halved on overflow) recovers them; a
static 2^24 overflows once s max|dy| passes float16's largest finite value plus half an ulp
(65520); bfloat16, with float32's exponent range, loses nothing without a scale. The criterion
is fixed here, before any run.
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

FLUSHED = 2.0**-25
"""Every float16 value of magnitude below this rounds to 0 (half the smallest subnormal,
2^-24; the tie 2^-25 itself rounds to even, 0)."""

OVERFLOWS = 65520.0 * 2.0**-24
"""max|dy| from which s dy with s = 2^24 rounds to inf in float16 (65504 + half an ulp, 16)."""

RECOVERED = 10.0
"""The dynamic scale recovers the flushed gradients when their median error is at most this
many u of float16 and none of them is lost (relative error 1)."""


def _lost(rows: pd.DataFrame) -> pd.Series:
    """Rows whose gradient was lost: the result is exactly 0 while the exact one is not, which
    the relative error says exactly (|0 - g| / |g| = 1)."""
    return rows["rel_error"] == 1.0


def _cases(rows: pd.DataFrame) -> list[tuple[str, pd.Series, str]]:
    """(case, the rows it reads, what must hold on every one of them / their median)."""
    half = (rows["format"] == "float16") & ~rows["outcome"].isin(NOT_COMPUTED)
    magnitude = pd.to_numeric(rows["magnitude"], errors="coerce")
    scale = pd.to_numeric(rows.get("log2_scale"), errors="coerce")
    flushed = half & (magnitude < FLUSHED)
    return [
        (
            "unscaled float16, max|dy| < 2^-25: lost",
            flushed & (rows["variant"] == "unscaled"),
            "lost",
        ),
        (
            "dynamic scale float16, max|dy| < 2^-25: recovered",
            flushed & (rows["variant"] == "dynamic_scale"),
            "recovered",
        ),
        (
            f"static 2^24 float16, max|dy| >= {number(OVERFLOWS, 3)}: fails",
            half & (magnitude >= OVERFLOWS) & (rows["variant"] == "static_scale") & (scale == 24),
            "fails",
        ),
        (
            "unscaled bfloat16: nothing lost",
            (rows["format"] == "bfloat16")
            & ~rows["outcome"].isin(NOT_COMPUTED)
            & (rows["variant"] == "unscaled"),
            "kept",
        ),
    ]


def float16_loss_scaling_finding(tables: Tables) -> Finding:
    """Holds when every case of `_cases` holds on its rows: unscaled float16 loses every
    gradient with max|dy| < 2^-25; the dynamic scale loses none of them and their median error
    is at most `RECOVERED` u; static 2^24 fails (overflow, nan) on every float16 row with
    max|dy| >= 65520 / 2^24; unscaled bfloat16 loses none."""
    rows = ran_only(tables.get("loss_scaling", pd.DataFrame()))
    if rows.empty:
        return Finding(NOT_MEASURED, "not measured: no loss_scaling row is stored.", pd.DataFrame())
    cases, parts, evidence = {}, [], []
    for case, chosen, test in _cases(rows):
        picked = rows[chosen]
        if picked.empty:
            continue
        lost = float(_lost(picked).mean())
        failed = float(picked["outcome"].isin(FAILURES).mean())
        # The median error of the rows that computed a finite result (NaN: none did).
        median = float(picked.loc[picked["outcome"] == "ok", "err_over_u"].median())
        if test == "lost":
            cases[case] = lost == 1.0
        elif test == "recovered":
            cases[case] = lost == 0.0 and median <= RECOVERED
        elif test == "fails":
            cases[case] = failed == 1.0
        else:
            cases[case] = lost == 0.0
        parts.append(
            f"{case}: {len(picked)} rows, {number(100 * lost, 3)}% lost, "
            f"{number(100 * failed, 3)}% failed"
            + ("" if median != median else f", median {number(median, 3)} u of the ok rows")
        )
        evidence.append(
            {
                "case": case,
                "rows": len(picked),
                "lost_share": lost,
                "failed_share": failed,
                "median_err_over_u": median,
            }
        )
    text = (
        "Criterion: holds when unscaled float16 returns exactly 0 (relative error 1) for every "
        "gradient with max|dy| < 2^-25, the dynamic scale loses none of them with a median "
        f"error of at most {number(RECOVERED)} u, static 2^24 fails (overflow or nan) on every "
        f"float16 row with max|dy| >= {number(OVERFLOWS, 3)}, and unscaled bfloat16 loses none. "
        "Measured: " + "; ".join(parts) + "."
    )
    return judged(cases, text, pd.DataFrame(evidence))
