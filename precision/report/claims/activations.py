"""A claim about GELU's approximations (issue 17), read from the stored rows of the activations
study (`precision.problems.activations`).

Every ``gelu`` variant is measured against the EXACT GELU of the input it received, so a row's
error is the approximation's plus the format's, and the ``erf`` variant in the same format shows
the format's part alone. The approximation dominates a format when it makes the error clearly
larger than the format's own: the statement below says where that should happen, from the
approximations' known maximum absolute errors on [-10, 10] (tanh about 4.7e-4, x sigmoid(1.702 x)
about 2e-2; Hendrycks & Gimpel 2016) beside each format's unit roundoff u (bfloat16 3.9e-3,
float16 4.9e-4, float32 6.0e-8). float16 is reported but is not a case: tanh's error and u are
of one size there, so either answer is plausible. The criterion is fixed here, before any run.
"""

from __future__ import annotations

import numpy as np
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

DOMINATES = 2.0
"""An approximation dominates a format when its median error is more than this many times the
median error of ``erf`` in that format over the same inputs: its own error is then at least as
large as the format's (e_approx + e_format > 2 e_format)."""

INPUT = ["source", "n", "cell_log10_cond", "cell_log10_magnitude", "sample"]
"""The columns that identify one input of a study: every variant of a format ran on it."""

EXPECTED = {
    ("tanh", "bfloat16"): False,
    ("tanh", "float32"): True,
    ("sigmoid", "bfloat16"): True,
    ("sigmoid", "float16"): True,
    ("sigmoid", "float32"): True,
}
"""Whether each approximation should dominate each format: the cases of the verdict."""

REPORTED = (("tanh", "float16"),)
"""Measured and printed, not judged (the approximation's error and u are of one size)."""


def _medians(rows: pd.DataFrame) -> pd.DataFrame:
    """Median relative error per variant x format over the inputs on which every variant of
    that format computed a finite, certified result (outcome ``ok``), so that the medians
    compare the same inputs."""
    # The textbook variants only: a library's GELU (torch, jax, ...) is not part of the claim.
    ok = rows[(rows["outcome"] == "ok") & rows["variant"].isin(["erf", "tanh", "sigmoid"])]
    variants = ok.groupby("format")["variant"].transform("nunique")
    complete = ok.groupby(["format", *INPUT], dropna=False)["variant"].transform("nunique")
    shared = ok[complete == variants]
    medians = shared.groupby(["variant", "format"])["rel_error"].median()
    counts = shared.groupby(["variant", "format"])["rel_error"].size()
    return pd.DataFrame({"median_rel_error": medians, "rows": counts}).reset_index()


def gelu_approximation_finding(tables: Tables) -> Finding:
    """Holds when, in each case of `EXPECTED`, the approximation's median error over the shared
    ok inputs exceeds `DOMINATES` times erf's in the same format exactly where `EXPECTED` says
    it should."""
    rows = ran_only(tables.get("gelu", pd.DataFrame()))
    if rows.empty:
        return Finding(NOT_MEASURED, "not measured: no gelu row is stored.", pd.DataFrame())
    medians = _medians(rows).set_index(["variant", "format"])
    cases, parts, evidence = {}, [], []
    for variant, fmt in (*EXPECTED, *REPORTED):
        if (variant, fmt) not in medians.index or ("erf", fmt) not in medians.index:
            continue
        approx = float(medians.loc[(variant, fmt), "median_rel_error"])
        exact = float(medians.loc[("erf", fmt), "median_rel_error"])
        ratio = approx / exact if exact > 0 else np.inf
        dominates = bool(ratio > DOMINATES)
        case = f"{variant} in {fmt}"
        if (variant, fmt) in EXPECTED:
            cases[case] = dominates == EXPECTED[(variant, fmt)]
        parts.append(
            f"{case}: median {number(approx, 3)} against erf's {number(exact, 3)} "
            f"(ratio {number(ratio, 3)}: {'dominates' if dominates else 'hidden'})"
        )
        evidence.append(
            {
                "variant": variant,
                "format": fmt,
                "median_rel_error": approx,
                "erf_median_rel_error": exact,
                "ratio": ratio,
                "dominates": dominates,
                "expected": EXPECTED.get((variant, fmt)),
                "rows": int(medians.loc[(variant, fmt), "rows"]),
            }
        )
    text = (
        "Criterion: an approximation dominates a format when its median relative error "
        f"against exact GELU is more than {number(DOMINATES)} times the erf variant's in that "
        "format, over the inputs on which every variant computed a certified finite result; "
        "holds when tanh is hidden in bfloat16 and dominates float32, and sigmoid dominates "
        "bfloat16, float16 and float32 (tanh in float16 is reported, not judged). Measured ("
        + span(rows)
        + "): "
        + "; ".join(parts)
        + "."
    )
    return judged(cases, text, pd.DataFrame(evidence))
