"""Claims about the softmax family, read from the stored rows of its study."""

from __future__ import annotations

import pandas as pd

from precision.core.formats import get_format
from precision.report.claims.base import (
    HOLDS,
    NOT_MEASURED,
    QUALIFIED,
    SOFTMAX_FAMILY,
    Finding,
    Tables,
    formats_in,
    judged,
    listed,
    never_ran,
    number,
    ran_only,
    ran_share,
    rows_of,
    span,
)
from precision.report.summary import overflow_thresholds, overview


def stability_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per problem x variant x format: `precision.report.summary.overview`'s counts, errors and
    bound checks, with the largest max|x| among the ok rows."""
    stats = overview(rows)
    stats["largest max|x| handled"] = (
        rows[rows["outcome"] == "ok"]
        .groupby(["problem", "variant", "format"], observed=True)["magnitude"]
        .max()
        .reindex(pd.MultiIndex.from_frame(stats[["problem", "variant", "format"]]))
        .to_numpy()
    )
    return stats[
        [
            "problem",
            "variant",
            "format",
            "count",
            "failure_fraction",
            "median_err_over_u",
            "max_err_over_u",
            "bound_checked",
            "bound_violations",
            "largest max|x| handled",
        ]
    ]


def stable_forms_finding(tables: Tables) -> Finding:
    """Holds per non-naive variant and format with no inf or nan result and no bound
    violation; results that underflowed to 0 are reported apart."""
    rows = ran_only(rows_of(tables, *SOFTMAX_FAMILY))
    keys = ["problem", "variant", "format"]
    table = stability_table(rows).merge(
        outcome_table(rows)[[*keys, "inf_or_nan", "underflowed"]], on=keys
    )
    stable = table[table["variant"] != "naive"]
    naive = table[table["variant"] == "naive"]
    # Stability here means no overflow (no inf or nan) and errors within the first-order
    # bounds; a result that underflowed to 0 is a tiny exact value lost to cancellation, which
    # the text reports apart.
    cases = {
        f"{r.problem} {r.variant} {r.format}": r.inf_or_nan == 0 and r.bound_violations == 0
        for r in stable.itertuples()
    }
    underflowing = stable[stable["underflowed"] > 0]
    naive_list = listed(
        f"{r.problem} {r.format} {number(100 * r.inf_or_nan)}%" for r in naive.itertuples()
    )
    text = (
        f"Stable forms ({listed(sorted(set(stable['variant'])))}): inf or nan in "
        f"{number(100 * stable['inf_or_nan'].max())}% of the rows at most, "
        f"{int(stable['bound_violations'].sum())} first-order bound violations in "
        f"{int(stable['bound_checked'].sum())} checked rows, largest error "
        f"{number(stable['max_err_over_u'].max())} u, on inputs up to max|x| = "
        f"{number(stable['largest max|x| handled'].max())}. Naive forms return inf or nan in "
        f"{naive_list} of their rows."
    )
    if len(underflowing):
        text += (
            " Results that underflowed to 0 (an exact value below the format's range, or a "
            "small log-sum-exp cancelled in a + log(s)): "
            + listed(
                f"{r.problem} {r.variant} {r.format} {number(100 * r.underflowed)}%"
                for r in underflowing.itertuples()
            )
            + "."
        )
    return judged(cases, text, table)


def naive_overflow_finding(tables: Tables) -> Finding:
    """Holds per naive variant and format when ln(max) lies between the largest
    log-sum-exp of its ok rows and the smallest of its overflowed rows (to 4u)."""
    rows = rows_of(tables, *SOFTMAX_FAMILY)
    rows = rows[rows["variant"] == "naive"]
    table = overflow_thresholds(rows)
    table = table[["problem", "variant", "format", "max_lse_ok", "min_lse_overflow", "ln_max"]]
    measured = table.dropna(subset=["min_lse_overflow"])
    # lse(x) <= ln(max) keeps every exp(x_i) <= max and their sum finite up to rounding.
    cases = {
        f"{r.problem} {r.format}": r.max_lse_ok <= r.ln_max * (1 + 4 * get_format(r.format).u)
        and r.min_lse_overflow > r.ln_max * (1 - 4 * get_format(r.format).u)
        for r in measured.itertuples()
    }
    text = "; ".join(
        f"{r.problem} {r.format}: ok up to lse(x) = {number(r.max_lse_ok)}, overflowed from "
        f"{number(r.min_lse_overflow)} (ln max = {number(r.ln_max)})"
        for r in measured.itertuples()
    )
    if not cases:
        return Finding(NOT_MEASURED, "no naive row overflowed in the stored tables", table)
    return judged(cases, text + ".", table)


def outcome_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per problem x variant x format: rows, the fraction returning inf or nan, the fraction
    underflowing to 0, the fraction the error statistics cover (certified ok rows), and the
    median and worst error in u of those rows."""
    stats = overview(rows)[["problem", "variant", "format", "count"]]
    flags = rows.assign(
        inf_or_nan=rows["outcome"].isin(["overflow", "nan"]),
        underflowed=rows["outcome"] == "underflow",
        in_errors=(rows["outcome"] == "ok") & rows["certified"].fillna(False).astype(bool),
    )
    fractions = flags.groupby(["problem", "variant", "format"], observed=True)[
        ["inf_or_nan", "underflowed", "in_errors"]
    ].mean()
    errors = overview(rows).set_index(["problem", "variant", "format"])
    out = stats.set_index(["problem", "variant", "format"]).join(fractions)
    out = out.join(errors[["median_err_over_u", "max_err_over_u"]])
    return out.reset_index()


def cross_entropy_finding(tables: Tables) -> Finding:
    """Holds per format when the logits form never returns inf or nan; qualified when the
    probabilities form never failed either (the contrast was not exercised)."""
    every = tables.get("cross_entropy", pd.DataFrame())
    rows = ran_only(every)
    table = outcome_table(rows)
    cases, parts, exercised = {}, [], False
    for fmt in formats_in(rows):
        per = table[table["format"] == fmt].set_index("variant")
        if not {"from_logits", "from_probabilities"} <= set(per.index):
            continue
        logits, probs = per.loc["from_logits"], per.loc["from_probabilities"]
        # The claim holds where the logits form never returns inf or nan; where no probability
        # underflowed in the inputs, the other form's failure is simply not exercised.
        cases[fmt] = logits["inf_or_nan"] == 0
        exercised |= probs["inf_or_nan"] > 0
        parts.append(
            f"{fmt}: inf or nan in {number(100 * probs['inf_or_nan'])}% of the rows from "
            f"probabilities and {number(100 * logits['inf_or_nan'])}% from logits (whose loss "
            f"underflowed to 0 in {number(100 * logits['underflowed'])}%, a true loss below the "
            f"format's range); median error of the rows that did not fail: from probabilities "
            f"{_median_of(probs)}, from logits {_median_of(logits)}"
        )
    text = (
        "Criterion: per format, holds when the logits form returns no inf or nan; formats "
        f"where neither form ran are not counted. Inputs: {span(rows)}. "
        + "; ".join(parts)
        + f". Never ran (not counted): {listed(never_ran(every))}."
    )
    finding = judged(cases, text, table)
    if finding.verdict == HOLDS and not exercised:
        return Finding(
            QUALIFIED,
            "The logits form never failed, but no stored input made the probabilities form "
            "fail either (no probability underflowed), so the contrast is not shown: "
            + finding.measured,
            table,
        )
    return finding


def _median_of(row) -> str:
    """A median error with the share of rows it covers (the others failed or are uncertified)."""
    return f"{number(row['median_err_over_u'])} u ({number(100 * row['in_errors'])}% of the rows)"


LIBRARY_VARIANTS = ("torch", "torch_cuda", "jax", "tensorflow")
"""Variants that call a deep-learning framework's own kernel."""


def library_finding(tables: Tables) -> Finding:
    """The framework kernels (torch, JAX, TensorFlow) of the softmax family and cross-entropy:
    inf or nan, worst error, and the dtype they really computed in."""
    rows = rows_of(tables, *SOFTMAX_FAMILY, "cross_entropy")
    rows = rows[rows["variant"].isin(LIBRARY_VARIANTS)]
    if rows.empty:
        return Finding(
            NOT_MEASURED,
            "not measured: run make study-frameworks (no framework kernel in the stored rows)",
            pd.DataFrame(),
        )
    keys = ["problem", "variant", "format"]
    table = outcome_table(rows)
    # Only rows that computed something are evidence: a combination whose every row was
    # refused (unsupported), raised (error) or had no representable input never ran, and a
    # combination that "held" there would be a verdict resting on a format that never ran.
    ran = ran_share(rows).rename("ran")
    raised = rows[rows["outcome"] == "error"].groupby(keys, observed=True).size()
    dtypes = rows.groupby(keys, observed=True)["compute_dtype"].agg(
        lambda d: ", ".join(sorted(set(d.dropna()) - {""}))
    )
    table = table.set_index(keys).join(ran).join(dtypes).reset_index()
    measured = table[table["ran"] > 0]
    cases = {
        f"{r.problem} {r.variant} {r.format}": r.inf_or_nan == 0 for r in measured.itertuples()
    }
    refused = table[table["ran"] == 0]
    partly = measured[measured["ran"] < 1]
    text = (
        "Criterion: a kernel x format combination holds when none of its rows returns inf or "
        "nan; only combinations that computed at least one result count. "
        f"Over {len(measured)} kernel x format combinations that ran: inf or nan in "
        f"{number(100 * measured['inf_or_nan'].max())}% of the rows at most; worst error "
        f"{number(measured['max_err_over_u'].max())} u. Upcast: "
        + listed(
            f"{r.problem} {r.variant} {r.format} -> {r.compute_dtype}"
            for r in measured.itertuples()
            if r.compute_dtype and r.compute_dtype != r.format
        )
        + ". Ran on part of their rows only (share computed): "
        + listed(
            f"{r.problem} {r.variant} {r.format} {number(100 * r.ran)}%"
            for r in partly.itertuples()
        )
        + ". Never ran (refused the format, raised, or no representable input; not counted): "
        + listed(
            f"{r.problem} {r.variant} {r.format}"
            + (" (raised)" if (r.problem, r.variant, r.format) in raised.index else "")
            for r in refused.itertuples()
        )
        + "."
    )
    return judged(cases, text, table)
