"""Least squares and ridge: exact references, residual control, and the study's own rows showing
the normal equations losing kappa^2 u where QR and the SVD lose kappa u.

Expected values come from exact rational arithmetic (python-flint fmpq) or from error analysis
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., ch. 20): with a zero
residual the Wedin condition number is kappa, a backward stable method (QR, SVD) has forward
error ~ kappa u (slope 1 in log error against log kappa), the normal equations ~ kappa^2 u
(slope 2). The fits use rows with kappa >= 100 (below, errors are a constant times n u) and
kappa^power u <= 0.1 (beyond, no digit is left). float16 and bfloat16 cannot reach kappa 100
with the normal equations (kappa^2 u > 1 from kappa 45 and 16): there the test compares the
methods input by input, kappa for kappa.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import flint
import mpmath
import numpy as np
import pandas as pd
import pytest

from precision.core.formats import STUDY_FORMATS, cast, get_format, round_to_format
from precision.core.numbers import ARB, MPMATH
from precision.problems.least_squares import (
    LEAST_SQUARES,
    RIDGE,
    propose_least_squares,
    propose_ridge,
    vandermonde_example,
    vandermonde_fit_input,
)
from precision.run.spec import load_spec, parse_spec
from precision.run.study import measure_one, run
from precision.truth.exact import UndefinedResult, ground_truth

STUDY = Path(__file__).resolve().parents[2] / "studies" / "least_squares.toml"


def fmpq_matrix(rows) -> flint.fmpq_mat:
    return flint.fmpq_mat([[flint.fmpq(*float(v).as_integer_ratio()) for v in r] for r in rows])


def exact_least_squares(x: np.ndarray, lam: float = 0.0) -> list[Fraction]:
    """The exact solution of (X^T X + lam I) beta = X^T y for the packed [X | y]."""
    x64 = np.asarray(x, dtype=np.float64)
    a, y = fmpq_matrix(x64[:, :-1]), fmpq_matrix(x64[:, -1:])
    gram = a.transpose() * a + fmpq_matrix(lam * np.eye(a.ncols()))
    beta = gram.solve(a.transpose() * y)
    return [Fraction(int(beta[i, 0].p), int(beta[i, 0].q)) for i in range(a.ncols())]


@pytest.mark.parametrize("engine", ["arb", "mpmath"])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_reference_is_the_exact_least_squares_solution(fmt, engine):
    rng = np.random.default_rng(STUDY_FORMATS.index(fmt))
    for residual, cond in ((0.0, 30.0), (1.0, 1e4)):
        x = cast(
            propose_least_squares(residual)(rng, n=5, magnitude=2.0, cond=cond, size=1)[0], fmt
        )
        truth = ground_truth(LEAST_SQUARES, x, fmt, engine=engine)
        assert truth.certified
        for got, want in zip(truth.exact.rounded.tolist(), exact_least_squares(x), strict=True):
            assert got == float(round_to_format(want, fmt))


def test_condition_is_wedins():
    """cond = kappa + kappa^2 ||r|| / (||X|| ||beta||), checked against float64 (the exact
    beta, residual by fmpq; kappa by LAPACK, accurate to ~kappa u_64)."""
    propose = propose_least_squares(1.0)
    x = propose(np.random.default_rng(3), n=6, magnitude=2.0, cond=1e3, size=1)[0]
    beta = np.array([float(v) for v in exact_least_squares(x)])
    a, y = x[:, :-1], x[:, -1]
    sigma = np.linalg.svd(a, compute_uv=False)
    kappa = sigma[0] / sigma[-1]
    expected = kappa + kappa**2 * np.linalg.norm(y - a @ beta) / (sigma[0] * np.linalg.norm(beta))
    assert ground_truth(LEAST_SQUARES, x, "float64", engine="arb").cond == pytest.approx(
        expected, rel=1e-9
    )


@pytest.mark.parametrize("engine", ["arb", "mpmath"])
def test_rank_deficient_data_is_undefined(engine):
    """X with a repeated column (exact in every format): beta is not unique, kappa_2(X) is
    infinite, the engine says UndefinedResult; for ridge lambda > 0 keeps it defined."""
    rng = np.random.default_rng(6)
    x = propose_least_squares(1.0)(rng, n=4, magnitude=1.0, cond=10.0, size=1)[0]
    x[:, 1] = cast(x[:, 0], "bfloat16")
    x[:, 2] = x[:, 1]
    for fmt in ("bfloat16", "float64"):
        with pytest.raises(UndefinedResult):
            ground_truth(LEAST_SQUARES, cast(x, fmt), fmt, engine=engine)
    ridge = np.concatenate([x, np.zeros((1, x.shape[1]))])
    ridge[-1, 0] = 0.25
    assert ground_truth(RIDGE, ridge, "float64", engine=engine).certified


@pytest.mark.parametrize("residual", [0.0, 1.0])
@pytest.mark.parametrize("cond", [10.0, 1e5, 1e10])
def test_wedin_condition_ball_contains_the_high_precision_value(residual, cond):
    """The Arb reference's condition number contains the same formula evaluated by mpmath at
    1500 bits (kappa from an SVD of X there), within 2**-20 relative. At 256 bits: at 113 a
    zero residual computed from beta of kappa 1e10 (the normal equations, kappa^2 2**-113 ~
    1e-14) is far wider than the true one, a width the engine climbs past for beta anyway."""
    x = propose_least_squares(residual)(
        np.random.default_rng(9), n=8, magnitude=3.0, cond=cond, size=1
    )[0]
    with ARB.workprec(256):
        _, ball = LEAST_SQUARES.reference(x, ARB)
    with mpmath.workprec(1500):
        _, expected = LEAST_SQUARES.reference(x, MPMATH)
        mid = mpmath.mpf(ball.mid().str(400, radius=False))
        assert abs(mid - expected) <= mpmath.mpf(float(ball.rad())) * (1 + 2.0**-20)
    assert float(ball.rad()) <= 2.0**-20 * float(ball.mid())


@pytest.mark.parametrize("residual", [0.0, 1.0])
def test_targets_have_the_residual_asked_for(residual):
    x = propose_least_squares(residual)(
        np.random.default_rng(4), n=8, magnitude=1.0, cond=1e2, size=3
    )
    for packed in x:
        a, y = packed[:, :-1], packed[:, -1]
        beta = np.linalg.lstsq(a, y, rcond=None)[0]
        r = y - a @ beta
        assert np.linalg.norm(r) == pytest.approx(residual * np.linalg.norm(a @ beta), abs=1e-12)
        assert np.abs(a.T @ r).max() <= 1e-12  # r is orthogonal to the range of X


def test_ridge_reference_and_condition():
    x = propose_ridge(np.random.default_rng(5), n=5, magnitude=1e3, cond=50.0, size=1)[0]
    truth = ground_truth(RIDGE, x, "float64", engine="arb")
    lam = float(x[-1, 0])
    for got, want in zip(
        truth.exact.rounded.tolist(), exact_least_squares(x[:-1], lam), strict=True
    ):
        assert got == float(round_to_format(want, "float64"))
    s = np.linalg.svd(x[:-1, :-1], compute_uv=False)
    assert truth.cond == pytest.approx((s[0] ** 2 + lam) / (s[-1] ** 2 + lam), rel=1e-10)
    assert truth.cond == pytest.approx(50.0, rel=1e-6)


# ---------------------------------------------------------------- the study's own rows


def tiny_spec(problems, *, cond=(0, 9), magnitude=(0, 1), samples=4):
    return parse_spec(
        {
            "name": "least_squares_test",
            "seed": 20261142,
            "formats": list(STUDY_FORMATS),
            "problems": problems,
            "grid": {
                "log10_cond": list(cond),
                "log10_magnitude": list(magnitude),
                "sizes": [10],
                "samples_per_cell": samples,
            },
        }
    )


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    with np.errstate(all="ignore"):
        return run(tiny_spec(["least_squares", "least_squares_residual"], samples=8))


@pytest.fixture(scope="module")
def low_rows() -> pd.DataFrame:
    """Many inputs at the condition numbers float16 and bfloat16 can represent."""
    with np.errstate(all="ignore"):
        return run(tiny_spec(["least_squares"], cond=(0, 3), samples=12))


def usable(table: pd.DataFrame, problem: str, variant: str, fmt: str) -> pd.DataFrame:
    keep = (
        (table["problem"] == problem)
        & (table["variant"] == variant)
        & (table["format"] == fmt)
        & (table["outcome"] == "ok")
        & table["certified"].fillna(False).astype(bool)
    )
    return table[keep]


def fitted_slope(rows: pd.DataFrame, *, power: int, fmt: str, kappa_min: float = 100.0) -> float:
    """Slope of log10(rel_error) against log10(cond) over rows with cond >= kappa_min and
    cond**power * u <= 0.1."""
    u = get_format(fmt).u
    cond, error = rows["cond"].astype(float), rows["rel_error"].astype(float)
    keep = (cond >= kappa_min) & (cond**power * u <= 0.1) & (error > 0)
    assert keep.sum() >= 6, f"too few rows to fit ({keep.sum()})"
    return float(np.polyfit(np.log10(cond[keep]), np.log10(error[keep]), 1)[0])


@pytest.mark.parametrize("fmt", ["float32", "float64"])
@pytest.mark.parametrize("variant", ["qr_solve", "qr_inv"])
def test_qr_loses_kappa_u(rows, variant, fmt):
    slope = fitted_slope(usable(rows, "least_squares", variant, fmt), power=1, fmt=fmt)
    assert 0.7 <= slope <= 1.2


def test_lstsq_loses_kappa_u_in_float64(rows):
    slope = fitted_slope(
        usable(rows, "least_squares", "numpy_lstsq", "float64"), power=1, fmt="float64"
    )
    assert 0.7 <= slope <= 1.2


@pytest.mark.parametrize("fmt", ["float32", "float64"])
@pytest.mark.parametrize("variant", ["normal_inv", "normal_cholesky"])
def test_normal_equations_lose_kappa_squared_u(rows, variant, fmt):
    """Slope 2 within 0.5: float32 leaves only kappa in [10, 1300] (kappa^2 u <= 0.1), two
    decades of scattered errors (fits over four seeds gave 1.58 to 2.05). Fitted from
    kappa >= 10, where kappa^2 u (>= 100 u) already dominates the n u floor. The slope is
    also at least 0.6 above QR's on the same rows."""
    slope = fitted_slope(
        usable(rows, "least_squares", variant, fmt), power=2, fmt=fmt, kappa_min=10.0
    )
    assert 1.5 <= slope <= 2.5
    qr = fitted_slope(usable(rows, "least_squares", "qr_solve", fmt), power=1, fmt=fmt)
    assert slope - qr >= 0.6


@pytest.mark.parametrize(("fmt", "least"), [("float16", 0.5), ("bfloat16", 0.3)])
def test_normal_equations_lose_an_extra_kappa_in_low_precision(low_rows, fmt, least):
    """Input by input, error(normal equations) / error(QR) grows like kappa (kappa^2 u over
    kappa u), over the inputs where both are ok and kappa^2 u <= 1: fitted slope against
    kappa in [least, 1.5]. The slope is 1 asymptotically; bfloat16 leaves kappa <= 16 only,
    where QR's error is still its n u floor rather than kappa u and the ratio's local slope is
    lower (fits over four seeds: 0.48 to 0.94 in bfloat16, 0.81 to 1.05 in float16)."""
    u = get_format(fmt).u
    key = ["cell_log10_cond", "sample"]
    qr = usable(low_rows, "least_squares", "qr_solve", fmt)
    ne = usable(low_rows, "least_squares", "normal_cholesky", fmt)
    both = qr.merge(ne, on=key, suffixes=("", "_ne"))
    both = both[(both["cond"] ** 2 * u <= 1) & (both["rel_error"] > 0)]
    assert len(both) >= 8
    ratio = both["rel_error_ne"].astype(float) / both["rel_error"].astype(float)
    slope = np.polyfit(np.log10(both["cond"].astype(float)), np.log10(ratio), 1)[0]
    assert least <= slope <= 1.5


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_normal_equations_break_down_where_qr_does_not(low_rows, fmt):
    """Past kappa^2 u = 2 (kappa > 23 in bfloat16, > 64 in float16) Cholesky on X^T X meets a
    pivot <= 0 or loses every digit on most inputs, while QR, whose error is about kappa u, is
    ok with an error below 1 on every input with kappa u <= 0.1."""
    u = get_format(fmt).u
    rows = low_rows[low_rows["format"] == fmt]
    ne = rows[(rows["variant"] == "normal_cholesky") & (rows["cond"] ** 2 * u > 2)]
    assert len(ne) >= 4
    assert ((ne["outcome"] != "ok") | (ne["rel_error"] >= 0.1)).mean() >= 0.5
    qr = rows[(rows["variant"] == "qr_solve") & (rows["cond"] * u <= 0.1)]
    assert len(qr) >= 8 and (qr["outcome"] == "ok").all() and (qr["rel_error"] < 1).all()


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_with_a_large_residual_every_method_pays_kappa_squared(rows, fmt):
    """||r|| = ||X beta||: Wedin's cond ~ kappa^2, and QR's error follows cond u (slope 1
    against cond) like the normal equations' (whose kappa^2 u is now cond u too)."""
    for variant in ("qr_solve", "normal_cholesky"):
        table = usable(rows, "least_squares_residual", variant, fmt)
        assert 0.7 <= fitted_slope(table, power=1, fmt=fmt) <= 1.3


def test_low_precision_rows_never_come_from_an_upcast(rows):
    low = rows[rows["format"].isin(["float16", "bfloat16"]) & (rows["outcome"] != "unsupported")]
    upcast = low[low["compute_dtype"] != low["format"]]
    assert set(upcast["variant"]) == {"numpy_lstsq"}
    assert (upcast["compute_dtype"] == "float64").all() and (
        upcast["accumulator"] == "float64"
    ).all()
    in_format = low[low["compute_dtype"] == low["format"]]
    assert (in_format["accumulator"] == in_format["format"]).all()
    f16 = rows[(rows["format"] == "float16") & (rows["variant"] == "numpy_lstsq")]
    assert (f16["outcome"] == "unsupported").all()


def test_ridge_error_follows_the_regularised_condition_number():
    """The ridge solvers' error grows with kappa_2(X^T X + lambda I), which lambda caps at
    1 + ||X||^2 / lambda: with the magnitude axis ||X||^2 / lambda below 10 no input reaches
    cond 100, and the errors there are smaller than at weak regularisation."""
    with np.errstate(all="ignore"):
        table = run(tiny_spec(["ridge"], cond=(0, 6), magnitude=(0, 4), samples=1))
    f64 = table[(table["format"] == "float64") & (table["variant"] == "normal_cholesky")]
    ok = f64[f64["outcome"] == "ok"]
    assert (ok[ok["magnitude"] < 10]["cond"] <= 11).all()
    assert 0.6 <= fitted_slope(ok, power=1, fmt="float64", kappa_min=10.0) <= 1.3
    strong = ok[ok["magnitude"] < 10]["rel_error"].median()
    weak = ok[ok["magnitude"] >= 1e3]["rel_error"].median()
    assert strong < weak


def test_vandermonde_example():
    """The degree-14 monomial fit: kappa_2(X) ~ 1e10, certified truth in every format; float64
    QR and SVD keep digits, the normal equations (kappa^2 ~ 1e20 >> 1 / u) keep none."""
    table = vandermonde_example(measure_one)
    assert table["certified"].all()
    f64 = table[table["format"] == "float64"].set_index("variant")
    assert 1e9 <= f64["kappa(X)"].iloc[0] <= 1e11
    kappa_u = f64["kappa(X)"].iloc[0] * get_format("float64").u
    assert f64.loc["qr_solve", "rel_error"] <= kappa_u
    assert f64.loc["numpy_lstsq", "rel_error"] <= kappa_u
    normal = f64.loc[["normal_inv", "normal_cholesky"]]
    assert ((normal["outcome"] != "ok") | (normal["rel_error"] > 0.1)).all()
    low = table[table["format"].isin(["float16", "bfloat16", "float32"])]
    qr = low[low["variant"] == "qr_solve"]
    assert (qr["kappa(X)"] * qr["format"].map(lambda f: get_format(f).u) > 1).all()
    assert (qr["rel_error"] > 0.1).all()  # kappa u > 1: no digit left
    assert vandermonde_fit_input().shape == (100, 16)


def test_quick_spec_parses():
    spec = load_spec(STUDY, quick=True)
    assert set(spec.problems) == {"least_squares", "least_squares_residual", "ridge"}
