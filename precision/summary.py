"""Summaries of a study table: per-cell statistics, overflow thresholds and a Markdown digest.

Pure functions of the tidy table. Error statistics use only rows whose ground truth was
certified and whose outcome is ``ok``; failures are counted, never averaged into errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.formats import get_format

FAILURES = ("underflow", "overflow", "nan", "input_overflow")
KEYS = ["problem", "variant", "format"]


def decade(values: pd.Series) -> pd.Series:
    """floor(log10(value)) as a nullable integer (the heatmap bins); NaN for non-positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.floor(np.log10(values.astype("float64").where(values > 0)))
    return logs.astype("Int64")


def with_bins(table: pd.DataFrame) -> pd.DataFrame:
    """The table with ``cond_decade`` and ``magnitude_decade`` of the *measured* values."""
    return table.assign(
        cond_decade=decade(table["cond"]), magnitude_decade=decade(table["magnitude"])
    )


def _stats(group: pd.DataFrame) -> pd.Series:
    good = group[(group["outcome"] == "ok") & group["certified"].fillna(False).astype(bool)]
    errors = good["err_over_u"]
    checked = good[good["bound"].notna()]
    return pd.Series(
        {
            "count": len(group),
            "median_err_over_u": errors.median() if len(errors) else np.nan,
            "max_err_over_u": errors.max() if len(errors) else np.nan,
            "median_bits": good["bits"].median() if len(good) else np.nan,
            "failure_fraction": group["outcome"].isin(FAILURES).mean(),
            "bound_checked": len(checked),
            "bound_violations": int((checked["rel_error"] > checked["bound"]).sum()),
            "uncertified": int((~group["certified"].fillna(True).astype(bool)).sum()),
        }
    )


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem x variant x format x cond decade x magnitude decade: count, median and max
    error in units of u, median bits, failure fraction, bound checks and violations."""
    binned = with_bins(table)
    keys = KEYS + ["cond_decade", "magnitude_decade"]
    return (
        binned.groupby(keys, dropna=False, observed=True)
        .apply(_stats, include_groups=False)
        .reset_index()
    )


def overview(table: pd.DataFrame) -> pd.DataFrame:
    """The same statistics per problem x variant x format, over the whole grid."""
    return table.groupby(KEYS, observed=True).apply(_stats, include_groups=False).reset_index()


def overflow_thresholds(table: pd.DataFrame) -> pd.DataFrame:
    """Where each variant starts failing, against max(x) and log-sum-exp(x) of its inputs.

    Columns: the largest ``x_max`` among ok rows and the smallest among failed rows, the same
    for ``lse``, and ``ln(max)`` of the format: naive exponentials overflow once their argument
    passes ln(max) (float16 11.09, float32 88.72, float64 709.78).
    """
    rows = table[table["x_max"].notna()].copy()
    rows["failed"] = rows["outcome"].isin(["overflow", "nan"])
    out = (
        rows.groupby(KEYS, observed=True)
        .apply(
            lambda g: pd.Series(
                {
                    "max_x_max_ok": g.loc[~g["failed"], "x_max"].max(),
                    "min_x_max_failed": g.loc[g["failed"], "x_max"].min(),
                    "max_lse_ok": g.loc[~g["failed"], "lse"].max(),
                    "min_lse_failed": g.loc[g["failed"], "lse"].min(),
                    "failed": int(g["failed"].sum()),
                    "rows": len(g),
                }
            ),
            include_groups=False,
        )
        .reset_index()
    )
    out["ln_max"] = [float(np.log(get_format(f).max)) for f in out["format"]]
    return out


def markdown(table: pd.DataFrame, *, title: str) -> str:
    """A short Markdown digest of a study: overview table and overflow thresholds."""
    parts = [f"# Study `{title}`", ""]
    parts += [
        f"{len(table)} rows; errors in units of the row format's u, over certified ok rows. "
        "Failures: overflow (an inf, or an intermediate overflowed), nan, underflow (a result "
        "in the underflow range flushed to zero) and input_overflow (the input is not "
        "representable in the format).",
        "",
        "## Errors and failures per variant and format",
        "",
        _to_markdown(overview(table)),
        "",
        "## Where the exponentials overflow",
        "",
        "Largest max(x) (and log-sum-exp) among ok rows versus smallest among rows that returned "
        "inf or nan; ln(max) is the format's exp overflow threshold.",
        "",
        _to_markdown(overflow_thresholds(table)),
        "",
    ]
    return "\n".join(parts)


def _to_markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        if isinstance(value, float | np.floating):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])
