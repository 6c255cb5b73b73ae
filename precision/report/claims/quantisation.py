"""Claims about quantised inputs (OCP MX, NVFP4, per-tensor scaled float8), read from the stored
rows of the block-formats study: each row holds the quantisation error of what its kernel
received (``quant_error``) apart from the kernel's own error (``rel_error``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.report.claims.base import Finding, Tables, judged, number, ran_only, rows_of

MX_PREFIX = "mxfp"
"""The OCP MX schemes' names start so (`precision.core.quantise.SCHEMES`)."""


def _quantised(tables: Tables) -> pd.DataFrame:
    rows = ran_only(rows_of(tables, *tables))
    if rows.empty or "quantised" not in rows:
        return rows.iloc[0:0]
    return rows[rows["quantised"].notna()]


def round_up_finding(tables: Tables) -> Finding:
    """Holds per MX scheme when the round-up scale rule's largest quantisation error is at
    most the OCP rule's, over the same inputs (the rows of every problem and format)."""
    rows = _quantised(tables)
    mx = rows[rows["quantised"].astype(str).str.startswith(MX_PREFIX)]
    # One error per input and scheme: the quantisation does not depend on the kernel.
    per = mx.groupby(["quantised", "scale_rule"], observed=True)["quant_error"]
    table = per.agg(max_quant_error="max", median_quant_error="median", rows="size")
    table = table.reset_index()
    cases, parts = {}, []
    for scheme, group in table.groupby("quantised", sort=False):
        by = group.set_index("scale_rule")
        if not {"ocp", "round_up"} <= set(by.index):
            continue
        ocp, up = by.loc["ocp", "max_quant_error"], by.loc["round_up", "max_quant_error"]
        cases[str(scheme)] = bool(up <= ocp)
        parts.append(f"{scheme}: ocp {number(ocp, 3)}, round_up {number(up, 3)}")
    text = (
        "Criterion: per MX scheme, holds when the largest quantisation error (normwise, of "
        "the input each kernel received against the drawn input) under the round-up scale "
        "rule is at most the OCP rule's, over the same inputs. Largest quantisation errors: "
        + ("; ".join(parts) or "none")
        + ". The OCP rule's scale floor(log2 amax) - emax lets a block's largest value exceed "
        "the element's range and saturate; the round-up rule never does."
    )
    return judged(cases, text, table)


def dominates_finding(tables: Tables) -> Finding:
    """Holds per scheme and compute format when the median quantisation error exceeds the
    median kernel error over the same rows: the format the input was stored in, not the
    arithmetic, sets the accuracy."""
    rows = _quantised(tables)
    good = rows[(rows["outcome"] == "ok") & rows["certified"].fillna(False).astype(bool)]
    keys = ["quantised", "format"]
    table = (
        good.assign(rel_error=good["rel_error"].astype(float))
        .groupby(keys, observed=True)
        .agg(
            median_quant_error=("quant_error", "median"),
            median_rel_error=("rel_error", "median"),
            rows=("rel_error", "size"),
        )
        .reset_index()
    )
    cases = {
        f"{r.quantised} in {r.format}": bool(r.median_quant_error > r.median_rel_error)
        for r in table.itertuples()
        if np.isfinite(r.median_quant_error)
    }
    parts = [
        f"{r.quantised} in {r.format}: {number(r.median_quant_error, 3)} vs "
        f"{number(r.median_rel_error, 3)}"
        for r in table.itertuples()
    ]
    text = (
        "Criterion: per scheme and compute format, holds when the median quantisation error "
        "exceeds the median kernel error (rel_error against the certified truth of the "
        "received input) over the certified ok rows of every problem. Medians, quantisation "
        "vs kernel: " + ("; ".join(parts) or "none") + "."
    )
    return judged(cases, text, table)
