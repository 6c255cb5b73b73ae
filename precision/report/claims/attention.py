"""A claim about attention's softmax statistics (issue 17), read from the stored rows of the
attention study (`precision.problems.attention`).

The statement: with the running maximum, the exponentials, the normaliser and the output
accumulator in float32 (``float32_stats = 1``), attention returns its float16 or bfloat16 output
within about one rounding error at every sequence length measured, whichever of the two-pass,
online or blockwise algorithms computes it; with those statistics in the format
(``float32_stats = 0``) the two-pass form's error grows with the sequence length, by at least a
factor `LOSS` over the float32-statistics form at the longest one. The criterion is fixed here,
before any run.
"""

from __future__ import annotations

import pandas as pd

from precision.report.claims.base import (
    NOT_MEASURED,
    Finding,
    Tables,
    judged,
    number,
    ran_only,
    span,
)

FORMATS = ("bfloat16", "float16")
"""The formats the claim is about (float32 statistics are the format itself in float32)."""

WITHIN = 1.0
"""The float32-statistics median error, in units of u of the format, that counts as "one
rounding error": the output rounded once from a float32 value is within u (plus float32's
own error, 2^-24 relative, far below it)."""

LOSS = 8.0
"""How many times the in-format two-pass median error must exceed the float32-statistics one at
the longest sequence (three bits lost)."""


def _median(rows: pd.DataFrame, chosen: pd.Series) -> tuple[float, int]:
    """Median err/u over the chosen ok rows, and their count."""
    picked = rows.loc[chosen & (rows["outcome"] == "ok"), "err_over_u"]
    return float(picked.median()), len(picked)


def float32_statistics_finding(tables: Tables) -> Finding:
    """Holds when, in bfloat16 and float16 and at every sequence length, the median err/u of
    the float32-statistics rows (all three algorithms) is at most `WITHIN`, and at the longest
    length the in-format two-pass median is at least `LOSS` times the float32-statistics
    two-pass median. Online and blockwise in the format are reported beside it."""
    rows = ran_only(tables.get("attention", pd.DataFrame()))
    if rows.empty or "float32_stats" not in rows:
        return Finding(NOT_MEASURED, "not measured: no attention row is stored.", pd.DataFrame())
    stats = pd.to_numeric(rows["float32_stats"], errors="coerce")
    cases, parts, evidence = {}, [], []
    for fmt in FORMATS:
        mine = rows["format"] == fmt
        if not mine.any():
            continue
        lengths = sorted(set(rows.loc[mine, "n"].astype(int)))
        for n in lengths:
            at = mine & (rows["n"] == n)
            median, count = _median(rows, at & (stats == 1))
            if count:
                cases[f"float32 statistics in {fmt} at L = {n}"] = median <= WITHIN
                evidence.append(_row(fmt, n, "float32_stats=1", median, count))
        longest = mine & (rows["n"] == lengths[-1])
        two_pass = longest & (rows["variant"] == "two_pass")
        wide, wide_count = _median(rows, two_pass & (stats == 1))
        narrow, narrow_count = _median(rows, two_pass & (stats == 0))
        if wide_count and narrow_count:
            ratio = narrow / wide if wide > 0 else float("inf")
            cases[f"in-format two_pass in {fmt} at L = {lengths[-1]}"] = ratio >= LOSS
            evidence.append(
                _row(fmt, lengths[-1], "two_pass float32_stats=0", narrow, narrow_count)
            )
            text = (
                f"{fmt}, L = {lengths[-1]}: float32 statistics median {number(wide, 3)} u, "
                f"in-format two_pass {number(narrow, 3)} u (x{number(ratio, 3)})"
            )
            for variant in ("online", "blockwise"):
                other, other_count = _median(
                    rows, longest & (rows["variant"] == variant) & (stats == 0)
                )
                if other_count:
                    text += f", in-format {variant} {number(other, 3)} u"
                    evidence.append(
                        _row(fmt, lengths[-1], f"{variant} float32_stats=0", other, other_count)
                    )
            parts.append(text)
    worst = max(
        (e["median_err_over_u"] for e in evidence if e["rows_of"] == "float32_stats=1"),
        default=float("nan"),
    )
    text = (
        f"Criterion: holds when the median error of the float32-statistics rows (two-pass, online "
        f"and blockwise) is at most {number(WITHIN)} u at every sequence length in bfloat16 and "
        f"float16, and the in-format two-pass median is at least {number(LOSS)} times the "
        f"float32-statistics two-pass median at the longest length. Measured ({span(rows)}): "
        + "; ".join(parts)
        + f"; the largest float32-statistics median over all lengths is {number(worst, 3)} u."
    )
    return judged(cases, text, pd.DataFrame(evidence))


def _row(fmt: str, n: int, rows_of: str, median: float, count: int) -> dict:
    return {"format": fmt, "n": n, "rows_of": rows_of, "median_err_over_u": median, "rows": count}
