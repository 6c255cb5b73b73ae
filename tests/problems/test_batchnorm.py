"""Batch normalisation: exact references for both eps rules, zero variance, bounds, and the
batch-norm problems of studies/variance.toml (quick; the full study under ``pytest -m slow``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest
from same_bits import nan_blind

from precision.core.formats import STUDY_FORMATS, cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.problems.batchnorm import (
    BATCHNORM,
    BATCHNORM_FINFO_EPS,
    EPS,
    condition64,
    eps_in,
    small_variance_example,
)
from precision.problems.variance import propose_batches
from precision.run.spec import load_spec
from precision.run.study import run
from precision.truth.exact import ground_truth

STUDY = Path(__file__).resolve().parents[2] / "studies" / "variance.toml"
PROBLEMS = {"batchnorm": BATCHNORM, "batchnorm_finfo_eps": BATCHNORM_FINFO_EPS}


def _independent(x: np.ndarray, eps) -> list:
    """(x - m) / sqrt(v + eps) at 400 bits from the textbook formula."""
    with mpmath.workprec(400):
        v = [mpmath.mpf(float(t)) for t in np.asarray(x, dtype=np.float64).tolist()]
        m = mpmath.fsum(v) / len(v)
        var = mpmath.fsum((t - m) ** 2 for t in v) / len(v)
        return [(t - m) / mpmath.sqrt(var + mpmath.mpf(eps.numerator) / eps.denominator) for t in v]


@pytest.mark.parametrize("engine", ["mpmath", "arb"])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_reference_against_the_textbook_formula(name, fmt, engine):
    problem = PROBLEMS[name]
    f = get_format(fmt)
    eps = EPS if name == "batchnorm" else type(EPS)(2) ** (1 - f.p)
    x = cast(
        propose_batches(np.random.default_rng(1), n=24, magnitude=2.0, cond=30.0, size=1)[0], fmt
    )
    gt = ground_truth(problem, x, fmt, engine=engine)
    assert gt.certified
    expected = _independent(x, eps)
    with mpmath.workprec(400):
        for i, value in enumerate(expected):
            got = mpmath.ldexp(
                mpmath.mpf(gt.exact.hi[i]) + mpmath.mpf(gt.exact.lo[i]), int(gt.exact.exp[i])
            )
            assert abs(got - value) <= 2.0**-80 * abs(value)


def test_finfo_eps_depends_on_the_format():
    x = np.array([1.0, 1.0, 1.0, 1.0 + 2.0**-10])  # v ~ 1e-7: comparable to float32's eps
    y16, _ = BATCHNORM_FINFO_EPS.reference(x.astype(np.float16))
    y32, _ = BATCHNORM_FINFO_EPS.reference(x.astype(np.float32))
    assert abs(float(y16[3]) - float(y32[3])) > 0.1


def test_constant_feature_normalises_to_zero_with_infinite_condition():
    y, cond = BATCHNORM.reference(np.full(16, 0.1))
    assert all(v == 0 for v in y) and cond == mpmath.inf
    x = cast(np.full(16, 0.1), "float16")
    for variant in BATCHNORM.variants.values():
        with np.errstate(all="ignore"):
            assert np.all(variant.compute(x) == 0)  # N = 16: every mean is exact
        assert np.isnan(variant.bound(x, get_format("float16")))


def test_small_variance_example_computes_exact_and_broken_outputs():
    table = small_variance_example().set_index(["batch", "statistics"])
    constant = table.loc["constant 0.1 (N = 100)"]
    assert (constant.loc["exact"] == 0).all()
    assert (constant.loc["welford"] == 0).all()
    assert constant.loc["numpy", "bfloat16"] > 0.1  # a wrong mean divided by sqrt(eps)


def test_eps_rounds_to_a_subnormal_in_float16():
    e = eps_in(np.dtype(np.float16), EPS)
    assert float(e) != 1e-5 and abs(float(e) - 1e-5) <= 2.0**-25


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize("variant", list(BATCHNORM.variants))
def test_output_dtype_and_shape(variant, fmt):
    x = cast(
        propose_batches(np.random.default_rng(4), n=16, magnitude=1.0, cond=10.0, size=1)[0], fmt
    )
    y = BATCHNORM.variants[variant].compute(x)
    assert y.shape == (16,) and y.dtype == get_format(fmt).dtype


@pytest.mark.parametrize("fmt", [*STUDY_FORMATS, "float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_batch_rows_are_the_one_feature_results(name, fmt):
    """(B, N) -> (B, N), row i bit for bit the kernel on row i alone (NaNs by bits) and on the
    vector (N,) alone (`same_bits.nan_blind`); the batched bound (B,) is each row's bound."""
    f = get_format(fmt)
    rng = np.random.default_rng(13)
    X = np.concatenate(
        [
            propose_batches(rng, n=100, magnitude=m, cond=c, size=2)
            for m in (0.1, 1e4)
            for c in (2.0, 1e5)
        ]
        + [np.full((1, 100), 0.1)]
    )
    X = cast(X, fmt)
    for variant in PROBLEMS[name].variants.values():
        assert variant.batched
        with np.errstate(all="ignore"):
            Y, bounds = variant.kernel(X), variant.bound(X, f)
            assert Y.shape == X.shape and Y.dtype == X.dtype and bounds.shape == (len(X),)
            for i, x in enumerate(X):
                one_row = variant.kernel(X[i : i + 1])[0]
                assert Y[i].tobytes() == one_row.tobytes()
                assert nan_blind(variant.kernel(x), fmt) == nan_blind(Y[i], fmt)
                one = variant.bound(x, f)
                assert one == bounds[i] or (np.isnan(one) and np.isnan(bounds[i]))


def test_condition_estimate_matches_the_reference():
    X = propose_batches(np.random.default_rng(5), n=30, magnitude=3.0, cond=50.0, size=4)
    for x, estimate in zip(X, condition64(X), strict=True):
        assert estimate == pytest.approx(ground_truth(BATCHNORM, x, "float64").cond, rel=1e-9)


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_every_bound_holds_on_seeded_inputs(fmt):
    f = get_format(fmt)
    rng = np.random.default_rng(20 + STUDY_FORMATS.index(fmt))
    checked, failures = 0, []
    for name, problem in PROBLEMS.items():
        for n in (16, 100):
            for kappa in (1.1, 10.0, 1e3, 1e5):
                for magnitude in (0.01, 1.0, 30.0):
                    x = cast(
                        propose_batches(rng, n=n, magnitude=magnitude, cond=kappa, size=1)[0], fmt
                    )
                    gt = ground_truth(problem, x, fmt)
                    for variant in problem.variants.values():
                        with np.errstate(all="ignore"):
                            bound = variant.bound(x, f)
                            err = normwise_relative_error(variant.compute(x), gt.exact)
                        if np.isfinite(bound):
                            checked += 1
                            if not err <= bound * (1 + n * f.u):
                                failures.append(
                                    (
                                        name,
                                        variant.name,
                                        n,
                                        kappa,
                                        magnitude,
                                        err / f.u,
                                        bound / f.u,
                                    )
                                )
    assert checked > 50 and not failures, failures[:5]


# ------------------------------------------------------------------ the study's own rows


@pytest.fixture(
    scope="module",
    params=[pytest.param(True, id="quick"), pytest.param(False, id="full", marks=pytest.mark.slow)],
)
def table(request) -> pd.DataFrame:
    spec = load_spec(STUDY, quick=request.param)
    return run(dataclasses.replace(spec, problems=tuple(PROBLEMS)))


@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_measured_errors_respect_their_bounds(table, name, fmt):
    r = table[(table["problem"] == name) & (table["format"] == fmt)]
    checked = r[(r["outcome"] == "ok") & r["certified"] & r["bound"].notna()]
    assert len(checked) > 0
    limit = checked["bound"] * (1 + checked["n"].astype(float) * get_format(fmt).u)
    violations = checked[checked["rel_error"] > limit]
    assert violations.empty, violations[["variant", "n", "cond", "rel_error", "bound"]]


def test_rows_are_certified_vectors_in_every_format(table):
    assert table["certified"].all()
    assert set(table["problem"]) == set(PROBLEMS)
    assert (table["compute_dtype"] == table["format"]).all()
