"""Variance algorithms: exact references, what numpy computes, bounds, and the study's own rows.

Expected values come from exact rational arithmetic on the floats; tolerances are the
algorithms' own bounds. The variance problem of studies/variance.toml runs (quick) once per
module; the full study under ``pytest -m slow``.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest
from same_bits import check_batch_contract

from precision.core.formats import STUDY_FORMATS, cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.problems.variance import (
    STATISTICS,
    VARIANCE,
    constant_batch_example,
    propose_batches,
    variance_condition64,
    welford,
)
from precision.run.spec import load_spec
from precision.run.study import run
from precision.truth.exact import ground_truth

STUDY = Path(__file__).resolve().parents[2] / "studies" / "variance.toml"


def _exact_variance(x: np.ndarray) -> Fraction:
    values = [Fraction(v) for v in np.asarray(x, dtype=np.float64).tolist()]
    mean = sum(values, Fraction(0)) / len(values)
    return sum(((v - mean) ** 2 for v in values), Fraction(0)) / len(values)


def _quiet():
    return np.errstate(all="ignore")


@pytest.mark.parametrize("engine", ["mpmath", "arb"])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_reference_is_the_exact_population_variance(fmt, engine):
    rng = np.random.default_rng(STUDY_FORMATS.index(fmt))
    for kappa in (1.5, 1e3, 1e6):
        x = cast(propose_batches(rng, n=37, magnitude=3.0, cond=kappa, size=1)[0], fmt)
        gt = ground_truth(VARIANCE, x, fmt, engine=engine)
        exact = _exact_variance(x)
        assert gt.certified
        assert (
            Fraction(float(gt.exact.rounded[0]))
            == Fraction(float(cast(np.array([float(exact)]), fmt)[0]))
            or exact == 0
        )
        if exact:
            x64 = np.asarray(x, dtype=np.float64)
            kappa_exact = np.sqrt(
                float(sum(Fraction(v) ** 2 for v in x64.tolist()) / (exact * x64.size))
            )
            assert gt.cond == pytest.approx(kappa_exact, rel=1e-12)


def test_constant_batch_has_zero_variance_and_infinite_condition():
    y, cond = VARIANCE.reference(np.full(100, 0.1))
    assert y[0] == 0 and cond == mpmath.inf
    gt = ground_truth(VARIANCE, np.full(100, 0.1), "float64", engine="arb")
    assert gt.certified and float(gt.exact.rounded[0]) == 0.0


def test_condition_estimate_matches_the_reference():
    X = propose_batches(np.random.default_rng(3), n=50, magnitude=2.0, cond=100.0, size=5)
    for x, estimate in zip(X, variance_condition64(X), strict=True):
        assert estimate == pytest.approx(ground_truth(VARIANCE, x, "float64").cond, rel=1e-9)


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize("variant", list(VARIANCE.variants))
def test_output_dtype_and_shape(variant, fmt):
    x = cast(
        propose_batches(np.random.default_rng(4), n=16, magnitude=1.0, cond=10.0, size=1)[0], fmt
    )
    y = VARIANCE.variants[variant].compute(x)
    assert y.shape == (1,) and y.dtype == get_format(fmt).dtype


def test_numpy_var_of_a_float16_constant_batch_overflows():
    """NUMERICS: np.var(np.full(100, 1000, float16)) is inf (the true value is 0)."""
    table = constant_batch_example().set_index("algorithm")
    assert table.loc["numpy", "float16"] == np.inf
    assert table.loc["numpy", "bfloat16"] == 408.0  # a bfloat16 sum stalls: the mean is wrong
    assert table.loc["numpy_float32", "float16"] == 0.0 == table.loc["welford", "bfloat16"]


ALL_FORMATS = [*STUDY_FORMATS, "float8_e4m3fn", "float8_e5m2"]


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("variant", list(VARIANCE.variants))
def test_batch_rows_are_the_one_batch_results(variant, fmt):
    """(B, N) -> (B, 1), row i bit for bit the kernel on row i alone (NaNs by bits) and on the
    vector (N,) alone (`same_bits.nan_blind`); overflow at magnitude 1e4 in float16 and float8
    included. The batched bound is each row's bound."""
    v = VARIANCE.variants[variant]
    assert v.batched
    rng = np.random.default_rng(12)
    for n in (1, 7, 100, 1024):
        X = np.concatenate(
            [propose_batches(rng, n=n, magnitude=m, cond=1e2, size=2) for m in (1e-2, 3.0, 1e4)]
        )
        with _quiet():
            check_batch_contract(v, cast(X, fmt), fmt)


def test_float16_np_mean_of_a_batch_rounds_twice_but_the_variant_does_not():
    """numpy's float16 mean divides the float32 sum by N in float64: one vector rounds the
    quotient once to float16, an axis of a 2-D array stores it in float32 first (a second
    rounding). 8191 ones, 6 and 2**-10 sum to 8197 + 2**-10, whose quotient by 8193 rounds in
    float32 to 1 + 2**-11, halfway between two float16 numbers. The numpy variant gives every
    row of a batch what np.mean gives it alone."""
    x = np.concatenate([np.ones(8191), [6.0, 2.0**-10]]).astype(np.float16)
    X = np.stack([x, x[::-1]])
    assert np.mean(x) == np.float16(1 + 2**-10)
    assert np.mean(X, axis=-1)[0] == np.float16(1.0)  # numpy's 2-D branch: rounded twice
    mean, _ = STATISTICS["numpy"].compute(X)
    assert mean[0] == np.mean(x) == mean[1] == STATISTICS["numpy"].compute(x)[0]


def test_welford_is_exact_on_small_integers():
    x = np.arange(1.0, 9.0, dtype=np.float32)
    mean, var = welford(x)
    assert mean == 4.5 and var == 5.25


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_every_bound_holds_on_seeded_inputs(fmt):
    f = get_format(fmt)
    rng = np.random.default_rng(10 + STUDY_FORMATS.index(fmt))
    checked, failures = 0, []
    for n in (16, 100, 1000):
        for kappa in (1.1, 10.0, 1e3, 1e5, 1e7):
            for magnitude in (0.01, 1.0, 100.0):
                x = cast(propose_batches(rng, n=n, magnitude=magnitude, cond=kappa, size=1)[0], fmt)
                gt = ground_truth(VARIANCE, x, fmt)
                for name, variant in VARIANCE.variants.items():
                    with _quiet():
                        bound = variant.bound(x, f)
                        err = normwise_relative_error(variant.compute(x), gt.exact)
                    if np.isfinite(bound):
                        checked += 1
                        if not err <= bound * (1 + n * f.u):
                            failures.append((name, n, kappa, magnitude, err / f.u, bound / f.u))
    assert checked > 50 and not failures, failures[:5]


# ------------------------------------------------------------------ the study's own rows


@pytest.fixture(
    scope="module",
    params=[pytest.param(True, id="quick"), pytest.param(False, id="full", marks=pytest.mark.slow)],
)
def table(request) -> pd.DataFrame:
    spec = load_spec(STUDY, quick=request.param)
    return run(dataclasses.replace(spec, problems=("variance",)))


def rows(table, variant, fmt=None):
    selected = table[table["variant"] == variant]
    return selected if fmt is None else selected[selected["format"] == fmt]


INPUT = ["format", "n", "cell_log10_cond", "cell_log10_magnitude", "sample"]


def test_textbook_error_grows_like_kappa_squared_u(table):
    """log10(error / u) against log10(kappa): slope 2 (CGL83: N kappa^2 u), while digits last."""
    r = rows(table, "textbook")
    r = r[r["format"].isin(["float32", "float64"]) & (r["outcome"] == "ok")]
    r = r[(r["cond"] > 10) & (r["rel_error"] > 0) & (r["rel_error"] < 0.1)]
    assert len(r) >= 8
    slope = np.polyfit(np.log10(r["cond"]), np.log10(r["err_over_u"]), 1)[0]
    assert 1.6 < slope < 2.4
    assert (r["err_over_u"] >= 1e-3 * r["cond"] ** 2).mean() > 0.8  # the kappa^2 u order holds


def test_textbook_loses_every_digit_where_two_pass_and_welford_keep_several(table):
    lost = rows(table, "textbook")
    lost = lost[(lost["rel_error"] >= 1) & lost["format"].isin(["float32", "float64"])]
    assert len(lost) > 0
    for name in ("two_pass", "welford"):
        other = lost[INPUT].merge(rows(table, name), on=INPUT)
        good = other[other["rel_error"] <= 1e-3]  # at least three correct digits
        assert len(good) > 0, name
    both = (
        lost[INPUT]
        .merge(rows(table, "two_pass"), on=INPUT)
        .merge(rows(table, "welford"), on=INPUT, suffixes=("_two_pass", "_welford"))
    )
    several = both[(both["rel_error_two_pass"] <= 1e-2) & (both["rel_error_welford"] <= 1e-2)]
    assert len(several) > 0


def test_float16_numpy_var_overflow_is_an_outcome(table):
    r = rows(table, "numpy", "float16")
    assert (r["outcome"] == "overflow").any()
    assert (rows(table, "numpy_float32", "float16")["outcome"] != "overflow").any()


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize("variant", list(VARIANCE.variants))
def test_measured_errors_respect_their_bounds(table, variant, fmt):
    r = rows(table, variant, fmt)
    checked = r[(r["outcome"] == "ok") & r["certified"] & r["bound"].notna()]
    limit = checked["bound"] * (1 + checked["n"].astype(float) * get_format(fmt).u)
    violations = checked[checked["rel_error"] > limit]
    assert violations.empty, violations[["n", "cond", "magnitude", "rel_error", "bound"]]


def test_every_algorithm_is_a_variant():
    assert set(VARIANCE.variants) == set(STATISTICS)
