"""Claims about finite-difference derivatives: where the best step size lies.

Forward differences (f(x + h) - f(x)) / h err by about h |f''| / 2 (truncation) plus
2 u |f| / h (rounding), smallest near h = 2 sqrt(u |f| / |f''|); central differences by
h^2 |f'''| / 6 plus u |f| / h, smallest near h = (3 u |f| / |f'''|)^(1/3) (Higham 2002, sec.
1.14; NUMERICS.md). For exp the ratios |f| / |f''| and |f| / |f'''| are 1, so the optimum steps
are 2 sqrt(u) and (3u)^(1/3).
"""

from __future__ import annotations

import math

import pandas as pd

from precision.core.formats import get_format
from precision.report.claims.base import Finding, Tables, judged, number, rows_of

FINITE_DIFFERENCES = ("fd_exp", "fd_softplus", "fd_network")
SCHEMES = ("forward", "central")
"""Families of the step sweep whose optimum is predicted; each row's step is its ``h``."""

TOLERANCE = 4.0
"""A measured optimum within this factor of the predicted one agrees with it (the sweep's
steps are powers of 2, and |f| / |f''| varies over the inputs)."""


def optimal_steps(rows: pd.DataFrame) -> pd.DataFrame:
    """Per problem x format x scheme: the step h = 2**-k whose median relative error over the
    certified ok rows is smallest, that error, the predicted optimum (2 sqrt(u) forward,
    (3u)^(1/3) central) and their ratio."""
    good = rows["outcome"].eq("ok") & rows["certified"].fillna(False).astype(bool)
    swept = rows["variant"].isin(SCHEMES).fillna(False) & rows["h"].notna()
    rows = rows.assign(scheme=rows["variant"])[swept & good]
    medians = (
        rows.groupby(["problem", "format", "scheme", "h"], observed=True)["rel_error"]
        .median()
        .reset_index()
        # Largest step first within each group, so that idxmin breaks a tie between equal
        # medians towards the largest step, as it always has (the sweep ran k = 1, 2, ...).
        .sort_values(["problem", "format", "scheme", "h"], ascending=[True, True, True, False])
    )
    best = medians.loc[medians.groupby(["problem", "format", "scheme"])["rel_error"].idxmin()]
    best = best.rename(columns={"rel_error": "smallest_median_rel_error", "h": "best_h"})
    best = best[["problem", "format", "scheme", "smallest_median_rel_error", "best_h"]]
    best["predicted_h"] = [
        _predicted(s, f) for s, f in zip(best["scheme"], best["format"], strict=True)
    ]
    best["ratio"] = best["best_h"] / best["predicted_h"]
    return best.reset_index(drop=True)


def _predicted(scheme: str, fmt: str) -> float:
    u = get_format(fmt).u
    return 2 * math.sqrt(u) if scheme == "forward" else (3 * u) ** (1 / 3)


def step_finding(tables: Tables) -> Finding:
    """Holds per problem, scheme and format when the measured best step is within
    `TOLERANCE` of the predicted one."""
    table = optimal_steps(rows_of(tables, *FINITE_DIFFERENCES))
    cases = {
        f"{r.problem} {r.scheme} {r.format}": 1 / TOLERANCE <= r.ratio <= TOLERANCE
        for r in table.itertuples()
    }
    text = (
        f"Criterion: holds per problem, scheme and format when the step with the smallest "
        f"median relative error is within a factor {number(TOLERANCE)} of the predicted "
        f"optimum (ratio {number(1 / TOLERANCE)} to {number(TOLERANCE)}: the sweep's steps are "
        "powers of 2 and |f| / |f''| varies over the inputs, so a ratio of 4 passes and one of "
        "5.66 does not). "
    ) + "; ".join(
        f"{r.problem} {r.scheme} {r.format}: best h = {number(r.best_h)} (error "
        f"{number(r.smallest_median_rel_error)}), predicted {number(r.predicted_h)}, "
        f"ratio {number(r.ratio, 3)}"
        for r in table.itertuples()
    )
    return judged(cases, text + ".", table)
