"""Claims about summation, cancellation, variance and batch normalisation, read from the
stored rows of their studies (with the examples `precision.report.claims.micro.measure` handed in
beside them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.report.claims.base import (
    BATCHNORMS,
    FAILS,
    HOLDS,
    QUALIFIED,
    Finding,
    Tables,
    formats_in,
    judged,
    listed,
    number,
    ran_only,
    rows_of,
    span,
)
from precision.report.claims.micro import UNMEASURED, stored
from precision.report.claims.softmax import stability_table
from precision.report.summary import FAILURES, error_lines, first_failures, overview


def summation_finding(tables: Tables) -> Finding:
    """Holds per format when pairwise and Kahan summation have a median error per unit of
    condition (err / (u kappa)) at most recursive summation's at the largest n, and no row
    exceeds its bound."""
    rows = ran_only(tables.get("summation", pd.DataFrame()))
    rows = rows[rows["variant"].isin(["recursive", "pairwise", "kahan"])]
    # Error per unit of condition (err / (u kappa)) at the largest n: the bounds are
    # gamma_(n-1), gamma_(log2 n) and 2u times kappa, so this compares the methods themselves.
    lines = error_lines(rows, "n")
    largest = lines[lines["n"] == lines["n"].max()]
    table = largest[["variant", "format", "n", "median_err_per_cond", "count"]].copy()
    violations = int(stability_table(rows)["bound_violations"].sum())
    cases, parts = {}, []
    for fmt in formats_in(rows):
        per = table[table["format"] == fmt].set_index("variant")["median_err_per_cond"]
        if "recursive" not in per.index:
            continue
        better = [v for v in ("pairwise", "kahan") if v in per.index]
        cases[fmt] = all(per[v] <= per["recursive"] for v in better) and violations == 0
        parts.append(
            f"{fmt}: " + ", ".join(f"{v} {number(per[v])}" for v in ["recursive", *better])
        )
    n = int(table["n"].max()) if len(table) else 0
    # The rows behind the medians: certified ok rows at the largest n with a finite kappa.
    used = rows[(rows["n"] == n) & (rows["outcome"] == "ok")]
    used = used[np.isfinite(used["cond"].astype(float)) & (used["cond"].astype(float) > 0)]
    text = (
        "Criterion: per format, holds when pairwise and Kahan summation have a median error / "
        "(u kappa) at most recursive summation's at the largest n, and no row exceeds its "
        f"bound. Median error / (u kappa) at n = {n}, over the rows that did not fail and have "
        f"a finite kappa ({span(used)}; a median over all kappa, not the stagnation at small "
        "kappa): " + "; ".join(parts) + f". {violations} rows "
        "exceed their bound (gamma_(n-1) kappa, gamma_(log2 n) kappa, 2u kappa)."
    )
    return judged(cases, text, table)


def cancellation_finding(tables: Tables) -> Finding:
    """Qualified when every stored subtraction in Sterbenz's range was exact: the loss is
    real but made by rounding the inputs; fails otherwise."""
    rows = tables.get("cancellation", pd.DataFrame())
    # a == b gives an exact result of 0 (outcome exact_zero): exact when its absolute error is.
    computed = rows["outcome"].isin(["ok", "exact_zero"])
    good = rows[computed & rows["certified"].fillna(False).astype(bool)]
    sterbenz = good[good["bound"] == 0]
    no_error = (sterbenz["rel_error"] == 0) | (
        (sterbenz["outcome"] == "exact_zero") & (sterbenz["abs_error"] == 0)
    )
    table = (
        sterbenz.assign(no_error=no_error)
        .groupby("format", observed=True)
        .agg(
            rows=("rel_error", "size"),
            exact=("no_error", "sum"),
            max_cond=("cond", "max"),
        )
        .reset_index()
    )
    exact = bool(len(table)) and bool((table["exact"] == table["rows"]).all())
    text = (
        f"In the stored rows, a - b with b/2 <= a <= 2b was exact in "
        f"{int(table['exact'].sum())} of {int(table['rows'].sum())} rows (condition numbers "
        f"up to {number(table['max_cond'].max())}): the subtraction loses nothing."
        + _one_minus_sentence(tables)
    )
    # Qualified when the subtraction is exact: the loss is real but comes from the inputs.
    return Finding(QUALIFIED if exact else FAILS, text, table)


def _one_minus_sentence(tables: Tables) -> str:
    """Where the digits go in 1.0 - 0.9999999999999999 (the handed-in ``one_minus``
    measurement), or nothing where it was not handed in."""
    example = stored(tables, "one_minus")
    if example is None:
        return ""
    f64 = example[example["format"] == "float64"].iloc[0]
    return (
        " The digits are lost before it: in float64, 1.0 - 0.9999999999999999 is "
        f"{number(100 * f64['input rounding rel. error'])}% off the decimal answer, all of it from "
        f"rounding 0.9999999999999999 (kappa = {number(f64['kappa'])})."
    )


def variance_finding(tables: Tables) -> Finding:
    """Holds per format where the textbook formula loses all accuracy (or fails) in more
    rows than two-pass and Welford do."""
    rows = ran_only(tables.get("variance", pd.DataFrame()))
    rows = rows[rows["variant"].isin(["textbook", "two_pass", "welford"])]
    bad = rows["outcome"].isin(FAILURES) | ((rows["outcome"] == "ok") & (rows["rel_error"] >= 0.5))
    table = (
        rows.assign(bad=bad)
        .groupby(["format", "variant"], observed=True)
        .agg(rows=("bad", "size"), inaccurate_or_failed=("bad", "mean"))
        .reset_index()
    )
    firsts = first_failures(rows)[["variant", "format", "inaccurate_from_cond"]]
    table = table.merge(firsts, on=["variant", "format"], how="left")
    cases, parts = {}, []
    for fmt in formats_in(rows):
        per = table[table["format"] == fmt].set_index("variant")["inaccurate_or_failed"]
        if "textbook" not in per.index:
            continue
        others = per.drop("textbook")
        if per["textbook"] > 0:
            cases[fmt] = bool((others < per["textbook"]).all())
        parts.append(f"{fmt}: " + ", ".join(f"{v} {number(100 * f)}%" for v, f in per.items()))
    text = (
        "Share of rows with no correct bit (relative error >= 1/2) or a failure: "
        + "; ".join(parts)
        + "."
    )
    if not cases:
        return Finding(FAILS, text + " The textbook formula never lost all accuracy here.", table)
    return judged(cases, text, table)


def batchnorm_finding(tables: Tables) -> Finding:
    """Holds when a constant feature normalises to finite values everywhere and no stored
    batch-normalisation row fails; qualified when rows fail anyway; fails otherwise."""
    rows = rows_of(tables, *BATCHNORMS)
    study = overview(rows)[["problem", "variant", "format", "count", "failure_fraction"]]
    constant = stored(tables, "constant_feature_batchnorm")
    if constant is None:
        return UNMEASURED
    constant = constant[constant["batch"].str.startswith("constant")]
    values = constant.drop(columns=["batch", "statistics"]).astype(float)
    finite = bool(np.isfinite(values.to_numpy()).all())
    failing = study[study["failure_fraction"] > 0]
    text = (
        "A constant feature (variance 0) normalises to finite values with eps = 1e-5 "
        f"{'in every format and algorithm' if finite else 'NOT everywhere'} (largest |y| "
        f"{number(float(np.nanmax(values.to_numpy())))}, exactly 0 expected). In the study's rows, "
        f"{len(failing)} of {len(study)} problem x algorithm x format combinations still fail "
        "somewhere ("
        + listed(
            f"{r.problem} {r.variant} {r.format} {number(100 * r.failure_fraction)}%"
            for r in failing.itertuples()
        )
        + "): eps guards the division, not the variance computation or the format's range."
    )
    verdict = HOLDS if finite and failing.empty else QUALIFIED if finite else FAILS
    evidence = pd.concat(
        [study.assign(source="study rows"), constant.assign(source="constant feature")],
        ignore_index=True,
    )
    return Finding(verdict, text, evidence)
