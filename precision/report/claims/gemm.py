"""Claims about dot products with a limited accumulator (the FP8 GEMM of DeepSeek-V3), read from
the stored rows of the dot study (`precision.problems.dot`).

DeepSeek-V3's technical report (sec. 3.3.2) says that FP8 GEMM on H800 GPUs accumulates with
"around 14 bits", which gives "a maximum relative error of nearly 2%" at K = 4096, and that
promoting the partial sums to float32 every N_C = 128 products removes the problem. Which
accumulator models reproduce the figure is measured here, never fitted: every model the study
ran is listed with its largest error, and the verdict says which ones land near 2%.
"""

from __future__ import annotations

import pandas as pd

from precision.report.claims.base import NOT_MEASURED, Finding, Tables, judged, number, ran_only
from precision.report.summary import accumulator_errors, accumulator_label

PUBLISHED_K = 4096
"""The inner dimension of the published figure."""

NEARLY = (0.02 / 1.5, 0.02 * 1.5)
"""What "nearly 2%" admits: a largest relative error within a factor 1.5 of 2%, from 1.33% to
3%. Fixed before looking at any measurement; the text always gives the measured values."""

PUBLISHED_BITS = 14
"""The accumulator width the report gives ("around 14 bits")."""

FLOAT32_BITS = 24
"""float32's significand: a limited accumulator this wide loses nothing that promotion to
float32 could recover, so the promotion claim is about narrower ones."""

PROMOTION_GAIN = 10.0
"""Promotion "removes the problem" when it divides the largest error by at least this."""


def _at_published_k(tables: Tables) -> tuple[pd.DataFrame, str]:
    """The accumulator errors at K = 4096 (kappa < 10), or an empty table and why."""
    rows = ran_only(tables.get("dot", pd.DataFrame()))
    errors = accumulator_errors(rows) if not rows.empty else pd.DataFrame()
    if errors.empty:
        return errors, "no certified dot-product row with kappa < 10 is stored"
    if PUBLISHED_K not in set(errors["n"].astype(int)):
        largest = int(errors["n"].max())
        return errors.iloc[0:0], (
            f"the stored rows stop at K = {largest} (the quick study); run make study-dot for "
            f"K = {PUBLISHED_K}"
        )
    at = errors[errors["n"] == PUBLISHED_K]
    return at.assign(model=at.apply(accumulator_label, axis=1)), ""


def _near(value: float) -> bool:
    return NEARLY[0] <= value <= NEARLY[1]


def accumulator_figure_finding(tables: Tables) -> Finding:
    """Holds per format and rounding when the 14-bit limited accumulator without promotion has
    a largest relative error at K = 4096 (inputs with kappa < 10) within a factor 1.5 of 2%;
    the text names every model that lands there and every one that does not."""
    errors, missing = _at_published_k(tables)
    if missing:
        return Finding(NOT_MEASURED, f"not measured: {missing}.", pd.DataFrame())
    plain = errors[errors["acc_bits"].notna() & (errors["promote_every"].fillna(0) == 0)]
    table = plain[["model", "format", "n", "max_rel_error", "median_rel_error", "count"]]
    cases, near, far = {}, [], []
    for (model, fmt), group in plain.groupby(["model", "format"], sort=False):
        value = float(group["max_rel_error"].max())
        (near if _near(value) else far).append(f"{model} in {fmt} {number(100 * value, 3)}%")
        if group["acc_bits"].iloc[0] == PUBLISHED_BITS:
            cases[f"{model} in {fmt}"] = _near(value)
    counts = sorted(set(plain["count"].astype(int)))
    text = (
        f"Criterion: per input format and rounding, holds when a {PUBLISHED_BITS}-bit "
        f"accumulator without promotion has a largest relative error at K = {PUBLISHED_K} "
        f"within a factor 1.5 of 2% ({number(100 * NEARLY[0], 3)}% to "
        f"{number(100 * NEARLY[1], 3)}%), over certified rows with kappa < 10 "
        f"({'/'.join(map(str, counts))} inputs per model and format; the published figure is a "
        "maximum over a real GEMM whose kappa it does not give, and the largest error here "
        "grows with the number of inputs drawn). Models near 2%: "
        + (", ".join(near) or "none")
        + ". Models not near 2%: "
        + (", ".join(far) or "none")
        + "."
    )
    return judged(cases, text, table.reset_index(drop=True))


def promotion_finding(tables: Tables) -> Finding:
    """Holds per format and limited accumulator narrower than float32 when promoting the partial sum
    to float32 every N_C products divides the largest relative error at K = 4096 (kappa < 10) by at
    least `PROMOTION_GAIN`."""
    errors, missing = _at_published_k(tables)
    if missing:
        return Finding(NOT_MEASURED, f"not measured: {missing}.", pd.DataFrame())
    limited = errors[errors["acc_bits"] < FLOAT32_BITS]  # NaN (not limited) compares False
    promoted = limited["promote_every"].fillna(0) > 0
    keys = ["model", "format"]
    before = limited[~promoted].set_index(keys)["max_rel_error"]
    after = limited[promoted].groupby(keys)["max_rel_error"].max()
    every = sorted(set(limited.loc[promoted, "promote_every"].astype(int)))
    pairs = pd.concat({"unpromoted": before, "promoted": after}, axis=1).dropna().reset_index()
    # A model that already computes without error gains nothing to divide: it is left out.
    pairs = pairs[pairs["unpromoted"] > 0]
    pairs = pairs.assign(gain=pairs["unpromoted"] / pairs["promoted"])
    cases, parts = {}, []
    for row in pairs.itertuples():
        cases[f"{row.model} in {row.format}"] = bool(row.gain >= PROMOTION_GAIN)
        parts.append(
            f"{row.model} in {row.format}: {number(100 * row.unpromoted, 3)}% -> "
            f"{number(100 * row.promoted, 3)}%"
        )
    text = (
        f"Criterion: per input format and limited accumulator narrower than float32's "
        f"{FLOAT32_BITS} bits, holds when promoting the "
        f"partial sum to float32 every {'/'.join(map(str, every)) or 'N_C'} products divides "
        f"the largest relative error at K = {PUBLISHED_K} (kappa < 10) by at least "
        f"{number(PROMOTION_GAIN)}. Largest error without -> with promotion: "
        + "; ".join(parts)
        + "."
    )
    return judged(cases, text, pairs.reset_index(drop=True))
