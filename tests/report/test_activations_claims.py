"""The GELU approximation claim on hand-made gelu rows: its verdict follows the stored errors,
compares the variants on the same inputs only, and changes when the errors do."""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.report.claims import activations
from precision.report.claims.base import FAILS, HOLDS, NOT_MEASURED, QUALIFIED

FORMATS = ("float16", "bfloat16", "float32")
U = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24}
APPROXIMATION = {"erf": 0.0, "tanh": 4.7e-4, "sigmoid": 2e-2}
"""Each variant's own error added to the format's (one u): the published maxima."""


def gelu_rows(samples: int = 5) -> pd.DataFrame:
    """Rows where each variant's error is one u of the format plus its approximation's."""
    rows = []
    for fmt in FORMATS:
        for variant, extra in APPROXIMATION.items():
            for sample in range(samples):
                rows.append(
                    {
                        "problem": "gelu",
                        "variant": variant,
                        "format": fmt,
                        "source": "synthetic",
                        "n": 64,
                        "cell_log10_cond": 0,
                        "cell_log10_magnitude": 0,
                        "sample": sample,
                        "cond": 1.5,
                        "magnitude": 1.0,
                        "outcome": "ok",
                        "rel_error": U[fmt] + extra,
                    }
                )
    return pd.DataFrame(rows)


def _finding(rows: pd.DataFrame):
    return activations.gelu_approximation_finding({"gelu": rows})


def test_the_published_errors_give_the_stated_pattern():
    finding = _finding(gelu_rows())
    assert finding.verdict == HOLDS
    evidence = finding.evidence.set_index(["variant", "format"])
    # tanh in float16: 4.7e-4 against u = 4.9e-4, reported and not judged.
    assert pd.isna(evidence.loc[("tanh", "float16"), "expected"])
    ratio = (U["float16"] + 4.7e-4) / U["float16"]
    assert evidence.loc[("tanh", "float16"), "ratio"] == ratio


def test_a_tanh_approximation_ten_times_worse_shows_in_bfloat16():
    rows = gelu_rows()
    tanh = rows["variant"] == "tanh"
    rows.loc[tanh, "rel_error"] = rows.loc[tanh, "format"].map(U) + 4.7e-3
    finding = _finding(rows)
    assert finding.verdict == QUALIFIED
    assert "False for: tanh in bfloat16" in finding.measured


def test_inputs_where_a_variant_failed_are_left_out_of_every_median():
    rows = gelu_rows()
    # On sample 0 the erf variant overflows in float32 and sigmoid's error is huge: the
    # sample is dropped for every float32 variant, so the medians do not move.
    rows.loc[(rows["sample"] == 0) & (rows["format"] == "float32"), "rel_error"] = 1e6
    erf0 = (rows["sample"] == 0) & (rows["format"] == "float32") & (rows["variant"] == "erf")
    rows.loc[erf0, ["outcome", "rel_error"]] = ["overflow", np.nan]
    evidence = _finding(rows).evidence.set_index(["variant", "format"])
    assert evidence.loc[("sigmoid", "float32"), "rows"] == 4
    assert evidence.loc[("sigmoid", "float32"), "median_rel_error"] == U["float32"] + 2e-2


def test_no_approximation_error_fails_every_dominating_case():
    rows = gelu_rows()
    rows["rel_error"] = rows["format"].map(U)
    finding = _finding(rows)
    # Only "tanh in bfloat16 is hidden" still holds.
    assert finding.verdict == QUALIFIED
    assert finding.measured.startswith("True for: tanh in bfloat16. False for:")
    rows = rows[rows["format"] != "bfloat16"]
    assert _finding(rows).verdict == FAILS


def test_no_gelu_rows_is_not_measured():
    assert _finding(pd.DataFrame()).verdict == NOT_MEASURED
