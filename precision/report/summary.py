"""Summaries of a study table: per-cell statistics, overflow thresholds and a Markdown digest.

Pure functions of the tidy table. Error statistics use only rows whose ground truth was
certified and whose outcome is ``ok``; failures are counted, never averaged into errors. Rows
whose exact result is 0 (outcome ``exact_zero``) have no relative error: they are counted
apart, with their worst absolute error, and are neither ok nor failed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.core.formats import get_format
from precision.core.schema import (
    FAILURES,
    PARAMETERS,
    QUANTISATION_KEYS,
    VARIANT_KEYS,
    format_parameter,
)
from precision.problems import PROBLEMS
from precision.problems.emulated import seed_spread, stochastic_rows
from precision.store.results import worked_examples

KEYS = ["problem", *VARIANT_KEYS, "format", *QUANTISATION_KEYS]
"""What the statistics are per: problem, variant with its parameters (NaN where none applies:
every groupby keeps NaN keys), format, and how the input was quantised before it (missing
where it was not)."""
EXACT_ZERO = "exact_zero"
"""The outcome of a row whose exact result is 0 (`precision.core.metrics.result_outcome`)."""


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    """A float column, or NaN where the table predates it (a hand-made or older table)."""
    if name in table:
        return table[name].astype("float64")
    return pd.Series(np.nan, index=table.index, dtype="float64")


def decade(values: pd.Series) -> pd.Series:
    """floor(log10(value)) as a nullable integer (the heatmap bins); missing for values that
    are not positive and finite (an infinite condition number: the exact result is 0)."""
    values = values.astype("float64")
    usable = values.where((values > 0) & np.isfinite(values))
    return np.floor(np.log10(usable)).astype("Int64")


def with_bins(table: pd.DataFrame) -> pd.DataFrame:
    """The table with ``cond_decade`` and ``magnitude_decade`` of the *measured* values."""
    return with_parameters(table).assign(
        cond_decade=decade(table["cond"]), magnitude_decade=decade(table["magnitude"])
    )


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with each variant's parameters in its ``variant`` (``gd lr=0.1``,
    `precision.core.schema.variant_label`), for figures and verdicts that draw or judge one line
    per variant: every member of a family gets its own facet, line and legend entry. The
    parameter columns stay as they are."""
    label = table["variant"].astype(str)
    for key in PARAMETERS:
        if key not in table.columns or not table[key].notna().any():
            continue
        values = table[key].astype(float)
        shown = {v: f" {key}={format_parameter(v)}" for v in values.dropna().unique()}
        label = label + values.map(shown).fillna("")
    if "quantised" in table.columns and table["quantised"].notna().any():
        label = label + _quantisation_labels(table)
    return table.assign(variant=label)


def _quantisation_labels(table: pd.DataFrame) -> pd.Series:
    """`` on mxfp8_e4m3 block_size=32 ocp`` for a quantised row, "" for the others."""
    parts = [" on " + table["quantised"].astype("string")]
    if "block_size" in table.columns:
        block = table["block_size"].astype(float)
        shown = {v: f" block_size={format_parameter(v)}" for v in block.dropna().unique()}
        parts.append(block.map(shown).fillna("").astype("string"))
    if "scale_rule" in table.columns:
        parts.append((" " + table["scale_rule"].astype("string")).fillna(""))
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + part
    return joined.fillna("").astype(str)


def with_parameters(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every parameter and quantisation column (missing where a hand-made
    table, or one written before the column existed, has none)."""
    missing = {key: np.nan for key in (*PARAMETERS, *QUANTISATION_KEYS) if key not in table}
    return table.assign(**missing) if missing else table


def _flags(table: pd.DataFrame) -> pd.DataFrame:
    """Per-row columns the statistics aggregate: errors of usable rows only, and failure flags."""
    certified = table["certified"].fillna(False).astype(bool)
    good = (table["outcome"] == "ok") & certified
    checked = good & table["bound"].notna()
    zero = table["outcome"] == EXACT_ZERO
    cond = _column(table, "cond")
    # What conditioning forces: a perturbation of the input by u moves the exact result by
    # about kappa u, and rounding the result to the format costs u even when kappa < 1.
    forced = np.maximum(cond, 1.0).where(np.isfinite(cond))
    return table.assign(
        _err=table["err_over_u"].where(good),
        _err_forced=(table["err_over_u"] / forced).where(good),
        _bits=table["bits"].where(good),
        _zero=zero,
        _zero_abs=_column(table, "abs_error").where(zero),
        _failed=table["outcome"].isin(FAILURES),
        _checked=checked,
        _violated=checked & (table["rel_error"] > table["bound"]),
        _uncertified=~table["certified"].fillna(True).astype(bool),
        _error=table["outcome"] == "error",
    )


def _aggregate(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    stats = (
        _flags(table)
        .groupby(keys, dropna=False, observed=True, sort=True)
        .agg(
            count=("outcome", "size"),
            median_err_over_u=("_err", "median"),
            median_err_over_kappa_u=("_err_forced", "median"),
            max_err_over_u=("_err", "max"),
            median_bits=("_bits", "median"),
            failure_fraction=("_failed", "mean"),
            exact_zero=("_zero", "sum"),
            max_abs_error_exact_zero=("_zero_abs", "max"),
            bound_checked=("_checked", "sum"),
            bound_violations=("_violated", "sum"),
            uncertified=("_uncertified", "sum"),
            errors=("_error", "sum"),
        )
    )
    return stats.reset_index()


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem x variant x format x cond decade x magnitude decade: count, median and max
    error in units of u, median error over what conditioning forces (``median_err_over_kappa_u``:
    rel_error / (max(kappa, 1) u), so that an algorithm that loses no more than its problem's
    conditioning reads about 1 whatever kappa) and median bits (certified ok rows only),
    failure fraction, rows
    whose exact result is 0 and their worst absolute error, bound checks and violations,
    uncertified rows."""
    return _aggregate(with_bins(table), KEYS + ["cond_decade", "magnitude_decade"])


def overview(table: pd.DataFrame) -> pd.DataFrame:
    """The same statistics per problem x variant x format, over the whole grid."""
    return _aggregate(with_parameters(table), KEYS)


def first_failures(table: pd.DataFrame) -> pd.DataFrame:
    """Where each variant first fails, per problem x variant x format (decades of the measured
    values; missing where it never does): ``fails_from_magnitude`` and ``fails_from_cond``, the
    smallest magnitude and condition decades holding a failed row (`FAILURES`), and
    ``inaccurate_from_cond``, the smallest condition decade whose median relative error over
    certified ok rows is at least 1/2 (not one correct bit left)."""
    rows = _flags(with_bins(table))
    failed = rows[rows["_failed"]]
    by = {"dropna": False, "observed": True}
    out = rows.groupby(KEYS, sort=True, **by).size().rename("rows").to_frame()
    out["fails_from_magnitude"] = failed.groupby(KEYS, **by)["magnitude_decade"].min()
    out["fails_from_cond"] = failed.groupby(KEYS, **by)["cond_decade"].min()
    median = rows.groupby([*KEYS, "cond_decade"], **by)["_err"].median().reset_index()
    u = median["format"].map(lambda f: get_format(f).u)
    lost = median[median["_err"] * u >= 0.5]
    out["inaccurate_from_cond"] = lost.groupby(KEYS, **by)["cond_decade"].min()
    columns = ["fails_from_magnitude", "fails_from_cond", "inaccurate_from_cond"]
    return out.reset_index()[[*KEYS, *columns]].astype({c: "Int64" for c in columns})


def raised(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem x variant x format whose variant raised (outcome ``error``): the number of
    such rows and the first exception (type and message), in table order."""
    rows = with_parameters(table[table["outcome"] == "error"])
    columns = [*KEYS, "rows", "exception"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = rows.groupby(KEYS, dropna=False, observed=True, sort=False)
    out = grouped.size().rename("rows").to_frame()
    out["exception"] = grouped["exception"].first()
    return out.reset_index()[columns]


def overflow_thresholds(table: pd.DataFrame) -> pd.DataFrame:
    """Where each variant starts to overflow, against max(x) and log-sum-exp(x) of its inputs.

    A row counts as overflowed when its result failed (inf or nan) and numpy reported an
    overflow exception while computing it; failures from underflow (0/0, log 0) are counted
    apart. Columns: the largest ``x_max`` and ``lse`` among ok rows, the smallest among
    overflowed rows, and ``ln(max)`` of the format: exp(x) overflows once x passes ln(max)
    (float16 11.09, float32 88.72, float64 709.78), a sum of exponentials once lse(x) does.
    """
    rows = with_parameters(table[table["x_max"].notna()].copy())
    raised = rows["fp_exceptions"].fillna("").str.contains("overflow")
    rows["overflowed"] = rows["outcome"].isin(["overflow", "nan"]) & raised
    rows["other_failure"] = rows["outcome"].isin(FAILURES) & ~rows["overflowed"]
    ok = rows["outcome"] == "ok"

    def stats(g: pd.DataFrame) -> pd.Series:
        good, over = g[ok.loc[g.index]], g[g["overflowed"]]
        return pd.Series(
            {
                "max_x_max_ok": good["x_max"].max(),
                "min_x_max_overflow": over["x_max"].min(),
                "max_lse_ok": good["lse"].max(),
                "min_lse_overflow": over["lse"].min(),
                "overflowed": int(g["overflowed"].sum()),
                "other_failures": int(g["other_failure"].sum()),
                "rows": len(g),
            }
        )

    if rows.empty:  # no exponentials (or no rows): the columns, and nothing under them
        columns = ["max_x_max_ok", "min_x_max_overflow", "max_lse_ok", "min_lse_overflow"]
        columns += ["overflowed", "other_failures", "rows", "ln_max"]
        return pd.DataFrame(columns=[*KEYS, *columns])
    grouped = rows.groupby(KEYS, dropna=False, observed=True)
    out = grouped.apply(stats, include_groups=False).reset_index()
    out["ln_max"] = [float(np.log(get_format(f).max)) for f in out["format"]]
    return out


BAND = (0.1, 0.9)
"""Quantiles of the band drawn around a median line: 80% of the rows lie between them."""


def error_lines(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Line-plot data: per problem x variant x format x n x ``by`` ("n" or "cond_decade"), the
    median of err_over_u and of err_over_u / cond (the error per unit of condition, which a
    bound gamma * kappa turns into gamma / u) with their `BAND` quantiles (``low_*``,
    ``high_*``: 10% and 90%), the median measured cond and the row count, over certified ok
    rows with a finite condition number."""
    rows = with_bins(table)
    certified = rows["certified"].fillna(False).astype(bool)
    cond = rows["cond"].astype("float64")
    rows = rows[(rows["outcome"] == "ok") & certified & np.isfinite(cond) & (cond > 0)]
    rows = rows.assign(_per_cond=rows["err_over_u"] / rows["cond"])
    keys = list(dict.fromkeys([*KEYS, "n", by]))
    low, high = BAND
    stats = rows.groupby(keys, dropna=False, observed=True, sort=True).agg(
        median_err_over_u=("err_over_u", "median"),
        low_err_over_u=("err_over_u", lambda v: v.quantile(low)),
        high_err_over_u=("err_over_u", lambda v: v.quantile(high)),
        median_err_per_cond=("_per_cond", "median"),
        low_err_per_cond=("_per_cond", lambda v: v.quantile(low)),
        high_err_per_cond=("_per_cond", lambda v: v.quantile(high)),
        median_cond=("cond", "median"),
        count=("outcome", "size"),
    )
    return stats.reset_index()


def markdown(
    table: pd.DataFrame, *, title: str, companions: dict[str, pd.DataFrame] | None = None
) -> str:
    """A short Markdown digest of a study: overview table, overflow thresholds (where the study has
    exponentials), and the worked examples its run stored among ``companions``
    (`precision.run.study.companion_tables`; read back by
    `precision.store.results.read_companions`). Nothing here computes an example: without
    ``companions`` the digest shows none."""
    parts = [f"# Study `{title}`", ""]
    parts += [
        f"{len(table)} rows; errors in units of the row format's u, over certified ok rows. "
        "Failures: overflow (an inf, or an intermediate overflowed), nan, underflow (a result "
        "in the underflow range flushed to zero), input_overflow (the input is not "
        "representable in the format), no_convergence (an iterative method hit its cap), "
        "unsupported (the library refuses the format) and error (the variant raised an "
        "exception; `errors` counts them). Rows whose exact result is 0 have no relative "
        "error: `exact_zero` counts them (neither ok nor failed) and "
        "`max_abs_error_exact_zero` gives their worst absolute error.",
        "",
        "## Errors and failures per variant and format",
        "",
        _to_markdown(overview(table)),
        "",
    ]
    errors = raised(table)
    if not errors.empty:
        parts += [
            "## Variants that raised",
            "",
            "Rows with outcome error: the variant raised an exception instead of returning a "
            "result (the first one of each variant and format is shown; every row has its own in "
            "the `exception` column).",
            "",
            _to_markdown(errors),
            "",
        ]
    if table["x_max"].notna().any():
        parts += [
            "## Where the exponentials overflow",
            "",
            "Largest max(x) (and log-sum-exp) among ok rows versus the smallest among rows that "
            "overflowed (an inf or nan result while numpy reported an overflow); other failures "
            "(0/0 or log 0 after underflow) are counted apart. ln(max) is where exp overflows.",
            "",
            _to_markdown(overflow_thresholds(table)),
            "",
        ]
    if stochastic_rows(table).any():
        parts += [
            "## Stochastic rounding: error over seeds",
            "",
            "Per input, the stochastically rounded variants' errors over their seeds (mean, "
            "spread = max - min), averaged over inputs, next to round to nearest on the same "
            "inputs; in units of u (`precision.problems.emulated.seed_spread`).",
            "",
            _to_markdown(seed_spread(table)),
            "",
        ]
    parts += _worked_examples(worked_examples(companions or {}))
    return "\n".join(parts)


def _worked_examples(examples: list) -> list[str]:
    """Stored worked examples (`precision.store.results.worked_examples`) as Markdown sections,
    one per problem."""
    parts: list[str] = []
    for problem, heading, text, frame in examples:
        if f"## Worked examples: {problem}" not in parts:
            parts += [f"## Worked examples: {problem}", ""]
        parts += [f"### {heading}", "", text, "", _to_markdown(frame), ""]
    return parts


def _to_markdown(frame: pd.DataFrame) -> str:
    # A parameter (or quantisation) no row of the frame takes is an empty column: left out.
    optional = (*PARAMETERS, *QUANTISATION_KEYS)
    unused = [key for key in optional if key in frame and frame[key].isna().all()]
    frame = frame.drop(columns=unused)

    def cell(value) -> str:
        if value is pd.NA or value is None:
            return ""
        if isinstance(value, float | np.floating):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


ACCUMULATOR_MODEL = ["variant", "acc_bits", "acc_truncate", "promote_every"]
"""What names one dot-product accumulator model (`precision.problems.dot`): the variant and the
limited accumulator's parameters (NaN for the float32 and in-format accumulators)."""


def accumulator_errors(table: pd.DataFrame, *, max_cond: float = 10.0) -> pd.DataFrame:
    """Per dot-product accumulator model x format x K (``n``): the largest and the median
    relative error over the certified ``ok`` rows whose condition number
    kappa = sum|x_i y_i| / |sum x_i y_i| is below ``max_cond``, and their count.

    A "maximum relative error at K" (DeepSeek-V3, sec. 3.3.2) means something only for
    well-conditioned sums: over every kappa the largest error follows the worst kappa drawn
    (the error bound is proportional to kappa). Columns: ``ACCUMULATOR_MODEL``, format, n,
    max_rel_error, median_rel_error, count (float64 model parameters, NaN where they do not
    apply)."""
    rows = with_parameters(table[table["problem"] == "dot"])
    certified = rows["certified"].fillna(False).astype(bool)
    cond = pd.to_numeric(rows["cond"], errors="coerce")
    good = rows[(rows["outcome"] == "ok") & certified & (cond < max_cond)]
    keys = [*ACCUMULATOR_MODEL, "format", "n"]
    if good.empty:
        return pd.DataFrame(columns=[*keys, "max_rel_error", "median_rel_error", "count"])
    grouped = good.assign(rel_error=good["rel_error"].astype(float)).groupby(
        keys, dropna=False, observed=True, sort=True
    )["rel_error"]
    out = grouped.agg(max_rel_error="max", median_rel_error="median", count="size")
    return out.reset_index()


def accumulator_label(row) -> str:
    """A model's name for legends and prose: ``14-bit nearest``, ``14-bit truncated``, or the
    variant's name for the float32 and in-format accumulators."""
    if pd.isna(row["acc_bits"]):
        return str(row["variant"])
    rounding = "truncated" if row["acc_truncate"] == 1 else "nearest"
    return f"{int(row['acc_bits'])}-bit {rounding}"


def magnitude_name(problems) -> str:
    """What the magnitude column of rows of ``problems`` measures (`Problem.magnitude_name`:
    max|x|, ||A||_2, the logit spread, ...); "magnitude" when they measure different things or
    a problem is not registered in this process."""
    names = {
        PROBLEMS[p].magnitude_name if p in PROBLEMS else "magnitude"
        for p in pd.unique(pd.Series(problems).dropna())
    }
    return names.pop() if len(names) == 1 else "magnitude"
