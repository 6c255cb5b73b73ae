"""Claims about conditioning: linear systems, least squares, gradient descent, Newton's
method and critical points, from slopes of error (or iterations) against the condition number
in the stored rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.core.formats import get_format
from precision.report.claims.base import (
    CRITICAL_POINTS,
    NOT_COMPUTED,
    QUADRATICS,
    Finding,
    Tables,
    formats_in,
    judged,
    number,
    ran_only,
    rows_of,
    span,
)
from precision.report.summary import FAILURES, error_lines, labelled


def condition_slopes(table: pd.DataFrame, *, value: str = "err_over_u") -> pd.DataFrame:
    """Fitted slope of log10(median ``value``) against log10(median condition number), per
    problem x variant x format, over the condition decades (all sizes pooled) where the error
    grows above one rounding and is not yet saturated.

    ``value`` "err_over_u": points with 1 <= median error / u and median relative error <=
    0.1 (beyond that, no correct digit is left and the error stops growing). ``value``
    "iterations": points with a positive median iteration count. At least 3 points spanning 2
    decades are needed; otherwise the slope is missing. A first-order bound proportional to
    kappa^k u gives slope k. ``slope_low`` and ``slope_high`` bound its 95% confidence
    interval (Student's t with points - 2 degrees of freedom; missing with 3 points or fewer
    collinear ones it is still given, and wide: t = 12.7 for one degree of freedom).
    """
    table = labelled(table)  # one line per member of a family (``gd lr=0.1``)
    lines = error_lines(table, "cond_decade") if value == "err_over_u" else _iteration_lines(table)
    out = []
    for (problem, variant, fmt), group in lines.groupby(
        ["problem", "variant", "format"], observed=True, sort=True
    ):
        y = group["median_value"] if value != "err_over_u" else group["median_err_over_u"]
        usable = y > 0
        if value == "err_over_u":
            usable &= (y >= 1) & (y * get_format(fmt).u <= 0.1)
        x = np.log10(group.loc[usable, "median_cond"].astype(float))
        slope, low, high = np.nan, np.nan, np.nan
        if usable.sum() >= 3 and x.max() - x.min() >= 2:
            slope, low, high = _fit(x.to_numpy(), np.log10(y[usable].astype(float)).to_numpy())
        out.append(
            {
                "problem": problem,
                "variant": variant,
                "format": fmt,
                "points": int(usable.sum()),
                "slope": slope,
                "slope_low": low,
                "slope_high": high,
            }
        )
    columns = ["problem", "variant", "format", "points", "slope", "slope_low", "slope_high"]
    return pd.DataFrame(out, columns=columns)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope of y against x and its 95% confidence interval."""
    from scipy import stats

    fit = stats.linregress(x, y)
    # With three points a slope has one degree of freedom: its interval is honest and wide.
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def _iteration_lines(table: pd.DataFrame) -> pd.DataFrame:
    """Median iterations and condition number per problem x variant x format x n x cond decade,
    over rows that converged (outcome ok)."""
    from precision.report.summary import with_bins

    rows = with_bins(table)
    rows = rows[(rows["outcome"] == "ok") & rows["iterations"].notna() & rows["cond"].gt(0)]
    keys = ["problem", "variant", "format", "n", "cond_decade"]
    stats = rows.groupby(keys, observed=True).agg(
        median_value=("iterations", "median"), median_cond=("cond", "median")
    )
    return stats.reset_index()


def _slope_cases(slopes: pd.DataFrame, expected: dict[str, tuple[float, float]]) -> dict:
    """Per (variant class, format): whether the fitted slope lies in the expected range.
    ``expected`` maps a substring of variant names to its (low, high) slope range."""
    cases = {}
    for r in slopes.dropna(subset=["slope"]).itertuples():
        for key, (low, high) in expected.items():
            if key in r.variant:
                cases[f"{r.variant} {r.format}"] = low <= r.slope <= high
    return cases


def _slope_text(slopes: pd.DataFrame) -> str:
    fitted = slopes.dropna(subset=["slope"])
    if fitted.empty:
        return "too few unsaturated condition decades to fit a slope"
    return "; ".join(
        f"{r.problem} {r.variant} {r.format}: slope {number(r.slope, 3)} (95% CI "
        f"{number(r.slope_low, 3)} to {number(r.slope_high, 3)}, {r.points} points)"
        for r in fitted.itertuples()
    )


def _criterion(expected: dict[str, tuple[float, float]]) -> str:
    ranges = ", ".join(
        f"{key} {number(low)} to {number(high)}" for key, (low, high) in expected.items()
    )
    return (
        "Criterion: holds per variant and format when the slope of log10(median error / u) "
        f"against log10(kappa) lies in its range ({ranges}); fitted over the condition "
        "decades where 1 <= median error / u and median relative error <= 0.1, with at least "
        "3 points spanning 2 decades (fewer: not judged). "
    )


def slope_finding(keywords, expected: dict[str, tuple[float, float]], value="err_over_u"):
    """A claim function judging fitted slopes of log error against log kappa: ``expected``
    maps a substring of variant names to its (low, high) slope range."""

    def measure(tables: Tables) -> Finding:
        """Judge the slopes of the rows that computed in their own format."""
        rows = ran_only(rows_of(tables, *keywords))
        # A library that computed in a wider format says nothing about the format's behaviour.
        rows = rows[(rows["compute_dtype"].fillna("") == rows["format"]) | (value != "err_over_u")]
        slopes = condition_slopes(rows, value=value)
        text = _criterion(expected) + f"Inputs: {span(rows)}. " + _slope_text(slopes) + "."
        return judged(_slope_cases(slopes, expected), text, slopes)

    return measure


PLAIN_DESCENT = "gd"
"""Family of the plain gradient-descent variants of the quadratic problem; the ``lr`` column
holds their learning rate (times lambda_max(H), which the inputs set to 1: the stability
limit is 2)."""


def _plain_descent(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of plain gradient descent at a declared learning rate."""
    return rows[rows["variant"].eq(PLAIN_DESCENT).fillna(False) & rows["lr"].notna()]


def _learning_rate_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per plain gradient-descent variant x format: its learning rate alpha lambda_max, the
    share of rows that converged, diverged (inf or nan) or hit the iteration cap, and the
    median iterations of the converged rows."""
    rows = _plain_descent(rows)
    flags = rows.assign(
        converged=rows["outcome"] == "ok",
        diverged=rows["outcome"].isin(["overflow", "nan"]),
        capped=rows["outcome"] == "no_convergence",
        converged_iterations=rows["iterations"].where(rows["outcome"] == "ok").astype(float),
    )
    return (
        flags.groupby(["variant", "format", "lr"], observed=True)
        .agg(
            rows=("converged", "size"),
            converged=("converged", "mean"),
            diverged=("diverged", "mean"),
            hit_cap=("capped", "mean"),
            median_iterations=("converged_iterations", "median"),
        )
        .reset_index()
        .sort_values(["format", "lr"], kind="stable")
    )


def descent_finding(tables: Tables) -> Finding:
    """Holds per format when learning rates below 2 / lambda_max never diverge and those
    above never converge, and per variant when iterations grow like kappa (slope 0.5 to
    1.5)."""
    rows = ran_only(rows_of(tables, *QUADRATICS))
    rates = _learning_rate_table(rows)
    plain = _plain_descent(rows)
    slopes = condition_slopes(plain, value="iterations")
    cases, parts = {}, []
    for fmt in formats_in(rates):
        per = rates[rates["format"] == fmt]
        stable, unstable = per[per["lr"] < 2], per[per["lr"] > 2]
        cases[f"learning rate {fmt}"] = bool(
            (stable["diverged"] == 0).all() and (unstable["converged"] == 0).all()
        )
        parts.append(
            f"{fmt}: "
            + ", ".join(
                f"alpha lambda_max = {number(r.lr)} converged in {number(100 * r.converged)}% "
                f"(diverged {number(100 * r.diverged)}%)"
                for r in per.itertuples()
            )
        )
    for r in slopes.dropna(subset=["slope"]).itertuples():
        cases[f"iterations ~ kappa {r.variant} {r.format}"] = 0.5 <= r.slope <= 1.5
    text = (
        "Criterion: per format, holds when every learning rate below 2 / lambda_max never "
        "diverges and every one above never converges; per variant and format, when the slope "
        "of log10(median iterations) against log10(kappa(H)) lies in 0.5 to 1.5 (3 points over "
        f"2 decades at least). Inputs: {span(rows)}. "
        + "; ".join(parts)
        + ". Median iterations of converged runs versus kappa(H): "
        + _slope_text(slopes)
        + " (runs that hit the iteration cap, more frequent as kappa grows, are left out, so "
        "the slopes understate the growth)."
    )
    evidence = pd.concat(
        [rates.assign(table="learning rates"), slopes.assign(table="iterations vs kappa")],
        ignore_index=True,
    )
    return judged(cases, text, evidence)


def newton_finding(tables: Tables) -> Finding:
    """Holds per format when Newton's method converged on every row within 10
    iterations."""
    rows = ran_only(rows_of(tables, *QUADRATICS))
    newton = rows[rows["variant"] == "newton"]
    slopes = condition_slopes(newton, value="iterations")
    accuracy = condition_slopes(newton[newton["compute_dtype"] == newton["format"]])
    per = (
        newton.assign(converged=newton["outcome"] == "ok")
        .groupby("format", observed=True)
        .agg(
            rows=("converged", "size"),
            converged=("converged", "mean"),
            median_iterations=("iterations", "median"),
            max_iterations=("iterations", "max"),
        )
        .reset_index()
    )
    cases = {
        f"newton {r.format}": r.converged == 1 and r.max_iterations <= 10 for r in per.itertuples()
    }
    text = (
        "Criterion: per format, holds when Newton's method converged on every row within 10 "
        f"iterations. Inputs: {span(newton)}. "
        + "; ".join(
            f"{r.format}: converged in {number(100 * r.converged)}% of the rows, median "
            f"{number(r.median_iterations)} and at most {number(r.max_iterations)} iterations"
            for r in per.itertuples()
        )
        + ". Its error versus kappa(H): "
        + _slope_text(accuracy)
        + " (a solve's kappa u would give slope 1)."
    )
    evidence = pd.concat(
        [
            per.assign(table="iterations"),
            slopes.assign(table="iterations vs kappa"),
            accuracy.assign(table="error vs kappa"),
        ],
        ignore_index=True,
    )
    return judged(cases, text, evidence)


SAFE_KAPPA_U = 0.01
"""Below this kappa u (kappa = ||H||_2 / min |lambda|) a backward-stable eigensolver's error
c(n) u ||H||_2 stays far from the smallest eigenvalue, so no sign may be lost."""


def critical_finding(tables: Tables) -> Finding:
    """Holds per eigenvalue-based variant and format when no critical point with
    kappa u < `SAFE_KAPPA_U` was misclassified (LDL^T pivots are reported, not judged)."""
    rows = rows_of(tables, *CRITICAL_POINTS)
    rows = rows[~rows["outcome"].isin(NOT_COMPUTED)]  # nothing was computed
    # The output is the sorted sign vector: any error is a misclassification.
    wrong = rows["outcome"].isin(FAILURES) | (rows["rel_error"].fillna(0) > 0)
    u = rows["format"].map(lambda f: get_format(f).u)
    safe = rows["cond"].astype(float) * u < SAFE_KAPPA_U
    region = np.where(safe, f"kappa u < {SAFE_KAPPA_U:g}", f"kappa u >= {SAFE_KAPPA_U:g}")
    table = (
        rows.assign(wrong=wrong, region=region)
        .groupby(["variant", "format", "region"], observed=True)
        .agg(rows=("wrong", "size"), misclassified=("wrong", "mean"))
        .reset_index()
    )
    # The statement is about eigenvalues: the LDL^T pivot signs are reported, not judged.
    judged_rows = table[table["region"].str.contains("<")]
    cases = {
        f"{r.variant} {r.format}": r.misclassified == 0
        for r in judged_rows.itertuples()
        if "ldl" not in r.variant
    }
    text = "; ".join(
        f"{r.variant} {r.format} ({r.region}): {number(100 * r.misclassified)}% of {r.rows} "
        "misclassified"
        for r in table.itertuples()
    )
    return judged(cases, text + ".", table)
