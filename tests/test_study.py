"""The softmax study's own rows: overflow thresholds and first-order bounds, end to end.

The quick version of studies/softmax.toml runs once per session (seconds); the full study runs
under ``pytest -m slow`` (minutes). The assertions below are the numerical claims the study
exists to show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from precision.formats import get_format
from precision.spec import load_spec
from precision.study import COLUMNS, run

FORMATS = ["float16", "bfloat16", "float32", "float64"]
STUDY = Path(__file__).resolve().parents[1] / "studies" / "softmax.toml"
STABLE = [
    ("exp", "numpy"),
    ("softmax", "shifted"),
    ("softmax", "scipy"),
    ("logsumexp", "shifted"),
    ("logsumexp", "log1p"),
    ("log_softmax", "shifted"),
    ("cross_entropy", "from_logits"),
]
NAIVE = [("softmax", "naive"), ("logsumexp", "naive"), ("log_softmax", "naive")]
FAILED = ["nan", "overflow"]


@pytest.fixture(
    scope="module",
    params=[pytest.param(True, id="quick"), pytest.param(False, id="full", marks=pytest.mark.slow)],
)
def table(request) -> pd.DataFrame:
    """The study's rows: its --quick version in CI, the full study under ``-m slow``."""
    return run(load_spec(STUDY, quick=request.param))


def rows(table, problem, variant, fmt) -> pd.DataFrame:
    selected = table[
        (table["problem"] == problem) & (table["variant"] == variant) & (table["format"] == fmt)
    ]
    assert len(selected) > 0, f"no rows for {problem}/{variant}/{fmt}"
    return selected


def ln_max(fmt: str) -> float:
    return float(np.log(get_format(fmt).max))


def test_table_is_tidy_and_complete(table):
    assert list(table.columns) == list(COLUMNS)
    assert set(table["format"]) == set(FORMATS)
    assert set(table["source"]) == {"synthetic", "mnist"}
    assert table["certified"].all()
    # One row per input x variant x format: no duplicates of the identifying columns.
    keys = [
        "problem",
        "variant",
        "format",
        "source",
        "sample",
        "n",
        "cell_log10_cond",
        "cell_log10_magnitude",
    ]
    assert not table.duplicated(subset=keys).any()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("problem", "variant"), NAIVE)
def test_naive_forms_fail_once_max_x_passes_ln_max(table, problem, variant, fmt):
    """exp(x) overflows for x > ln(max): 11.09 (float16), 88.72 (bfloat16, float32), 709.78."""
    r = rows(table, problem, variant, fmt)
    # A margin of one part in 1e3 keeps away from the float rounding of the threshold itself.
    above = r[r["x_max"] > ln_max(fmt) * 1.001]
    assert len(above) > 0, "the study must probe beyond the overflow threshold"
    assert above["outcome"].isin(FAILED).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_naive_lse_is_fine_below_the_threshold(table, fmt):
    """Naive log-sum-exp fails exactly when its sum overflows (lse(x) > ln max) or every term
    underflows; below that it returns a finite number."""
    r = rows(table, "logsumexp", "naive", fmt)
    tiny = np.log(get_format(fmt).min_normal)
    safe = r[(r["lse"] < ln_max(fmt) * 0.999) & (r["x_max"] > tiny)]
    assert len(safe) > 0
    # (A result that cancels to zero, lse(x) ~ 0 with kappa ~ 1e4, is finite: not a failure here.)
    assert not safe["outcome"].isin(FAILED).any()
    overflowing_sum = r[r["lse"] > ln_max(fmt) * 1.001]
    assert overflowing_sum["outcome"].isin(FAILED).all()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("problem", "variant"), STABLE)
def test_stable_forms_never_return_nan_or_inf(table, problem, variant, fmt):
    r = rows(table, problem, variant, fmt)
    if problem == "exp":
        r = r[r["x_max"] < ln_max(fmt)]  # exp itself overflows past ln(max): that is its job
    assert not r["outcome"].isin(FAILED).any()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("problem", "variant"), STABLE + NAIVE)
def test_measured_errors_respect_first_order_bounds(table, problem, variant, fmt):
    """rel_error <= bound * (1 + n u): the bound is first order; n u covers the second-order
    terms of gamma_n = n u / (1 - n u)."""
    r = rows(table, problem, variant, fmt)
    checked = r[(r["outcome"] == "ok") & r["certified"] & r["bound"].notna()]
    assert len(checked) > 0, "some ok rows carry a bound"
    u = get_format(fmt).u
    limit = checked["bound"] * (1 + checked["n"].astype(float) * u)
    violations = checked[checked["rel_error"] > limit]
    assert violations.empty, violations[["n", "cond", "magnitude", "rel_error", "bound"]]


def test_rows_record_the_real_compute_dtype(table):
    """scipy's logsumexp returns float64 for bfloat16 input: the row must say so."""
    scipy_bf16 = rows(table, "logsumexp", "scipy", "bfloat16")
    assert (scipy_bf16["compute_dtype"] == "float64").all()
    numpy_rows = table[table["library"] == "numpy"]
    assert (numpy_rows["compute_dtype"] == numpy_rows["format"]).all()


def test_measured_condition_numbers_are_reported_not_targets(table):
    synthetic = table[(table["source"] == "synthetic") & (table["problem"] == "logsumexp")]
    decades = np.floor(np.log10(synthetic["cond"].astype(float)))
    # The generator aims at cells, and most inputs land there; rows carry the measured value.
    hit = (decades == synthetic["cell_log10_cond"].astype(float)).mean()
    assert hit > 0.8
