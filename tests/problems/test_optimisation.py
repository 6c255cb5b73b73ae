"""Newton, BFGS and gradient descent against kappa(H); critical-point classification; KKT
residuals of constrained least squares. Unit checks of the exact references and in-format
kernels, then assertions on the rows of studies/optimisation.toml (quick, run once)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from precision.core.formats import cast, get_format
from precision.problems.constrained import (
    CONSTRAINED_LS,
    exact_ridge,
    kkt_example,
    kkt_residuals,
)
from precision.problems.critical_points import (
    CRITICAL_POINT,
    exact_inertia,
    jacobi_eigenvalues,
    propose_hessians,
)
from precision.problems.least_squares import propose_ridge
from precision.problems.optimisers import lu_solve
from precision.problems.quadratic import propose_quadratics, to_fractions
from precision.run.spec import load_spec
from precision.run.study import run
from precision.truth.exact import ground_truth

STUDY = Path(__file__).resolve().parents[2] / "studies" / "optimisation.toml"
CONSTRAINED_STUDY = STUDY.with_name("constrained.toml")


# ------------------------------------------------------------------ kernels and references


def test_exact_inertia_counts_signs_and_zeros():
    singular = [[Fraction(1), Fraction(1)], [Fraction(1), Fraction(1)]]  # eigenvalues 0 and 2
    assert exact_inertia(singular) == (0, 1, 1)
    rng = np.random.default_rng(2)
    for _ in range(5):
        H = propose_hessians(rng, n=5, magnitude=1.0, cond=100.0, size=1)[0]
        eig = np.linalg.eigvalsh(H)
        assert exact_inertia(to_fractions(H)) == ((eig < 0).sum(), 0, (eig > 0).sum())


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32", "float64"])
def test_jacobi_is_backward_stable_in_the_format(fmt):
    """|lambda_jacobi - lambda| <= sweeps n (n - 1) / 2 u ||H||_2 against float64 eigenvalues
    of the same rounded matrix: each rotation is an orthogonal similarity with a backward error
    of about u ||A||_2, and Weyl turns the sum of them into eigenvalue errors."""
    rng = np.random.default_rng(4)
    H = cast(propose_hessians(rng, n=6, magnitude=3.0, cond=1e3, size=1)[0], fmt)
    eigenvalues, sweeps, converged = jacobi_eigenvalues(H)
    assert eigenvalues.dtype == get_format(fmt).dtype and converged and sweeps <= 10
    exact = np.linalg.eigvalsh(H.astype(np.float64))
    error = np.abs(np.sort(eigenvalues.astype(np.float64)) - exact).max()
    assert error <= sweeps * 15 * get_format(fmt).u * np.abs(exact).max()


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_numpy_eigvalsh_does_not_stand_in_for_low_precision(fmt):
    H = cast(np.eye(3), fmt)
    gt = ground_truth(CRITICAL_POINT, H, fmt)
    from precision.run.measure import measure_variant

    _, row = measure_variant(CRITICAL_POINT, "numpy_eigvalsh", H, get_format(fmt), gt.exact)
    assert row["outcome"] == "unsupported"


def test_lu_solve_keeps_the_format_and_solves():
    x = cast(
        propose_quadratics(np.random.default_rng(0), n=6, magnitude=1.0, cond=10.0, size=1)[0],
        "bfloat16",
    )
    H, b = x[:, :6], x[:, 6]
    theta = lu_solve(H, b)
    assert theta.dtype == x.dtype
    exact = np.linalg.solve(H.astype(np.float64), b.astype(np.float64))
    assert np.abs(theta.astype(np.float64) - exact).max() <= 6 * 10 * 2.0**-8 * np.abs(exact).max()


def test_kkt_residuals_vanish_at_the_exact_solution_only():
    x = propose_ridge(np.random.default_rng(5), n=4, magnitude=100.0, cond=30.0, size=1)[0]
    X = to_fractions(x[:-1, :-1])
    y = [row[0] for row in to_fractions(x[:-1, -1:])]
    w = np.array([float(t) for t in exact_ridge(X, y, Fraction(float(x[-1, 0])))])
    residuals = kkt_residuals(x, w)
    assert max(residuals.values()) <= 4 * 2.0**-53  # w* rounded to float64
    scaled = kkt_residuals(x, w * (1 + 1e-6))  # ||w||^2 = C (1 + 2e-6): infeasible
    assert scaled["feasibility"] == pytest.approx(2e-6, rel=1e-3)
    assert scaled["slackness"] == pytest.approx(2e-6, rel=1e-3)


def test_constrained_problem_shares_the_ridge_reference():
    x = cast(
        propose_ridge(np.random.default_rng(6), n=4, magnitude=10.0, cond=5.0, size=1)[0], "float32"
    )
    gt = ground_truth(CONSTRAINED_LS, x, "float32")
    X = to_fractions(x[:-1, :-1].astype(np.float64))
    y = [row[0] for row in to_fractions(x[:-1, -1:].astype(np.float64))]
    exact = exact_ridge(X, y, Fraction(float(x[-1, 0])))
    assert [float(v) for v in gt.exact.rounded] == [float(np.float32(float(t))) for t in exact]


def test_kkt_worked_example_orders_the_solvers():
    """Augmented QR (backward stable) has a stationarity residual of a few u in every format;
    the explicit inverse of the normal equations is the worst in float16 and bfloat16."""
    table = kkt_example().set_index(["format", "variant"])
    for fmt in ("float16", "bfloat16", "float32", "float64"):
        assert table.loc[(fmt, "augmented_qr"), "stationarity"] <= 8 * get_format(fmt).u
    for fmt in ("float16", "bfloat16"):
        inverse = table.loc[(fmt, "normal_inv"), "slackness"]
        assert inverse > 10 * table.loc[(fmt, "augmented_qr"), "slackness"]


# ------------------------------------------------------------------ the study's own rows


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return run(load_spec(STUDY, quick=True))


def _rows(table, problem, variant=None, fmt=None):
    rows = table[table["problem"] == problem]
    if variant is not None:
        rows = rows[rows["variant"] == variant]
    return rows if fmt is None else rows[rows["format"] == fmt]


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_newton_attains_kappa_u(table, fmt):
    """An in-format LU solve is backward stable (backward error a few u), so its forward error
    is at most about kappa u; measured at most 1.0 kappa u."""
    rows = _rows(table, "quadratic", "newton", fmt)
    assert (rows["outcome"] == "ok").all()
    assert (rows["err_over_u"] <= 2 * rows["cond"]).all()
    assert (rows["backward_error"] <= 4 * get_format(fmt).u).all()


def test_gradient_descent_cannot_reach_ill_conditioned_minimisers(table):
    """alpha = 1.9 / lambda_max needs ~kappa ln(1 / tol) iterations: beyond kappa ~ 1e4 the
    20,000-iteration cap ends every float64 run unconverged, where Newton is done in one."""
    gd = _rows(table, "quadratic", "gd", "float64")
    assert (gd["lr"] == 1.9).all()
    newton = _rows(table, "quadratic", "newton", "float64")
    hard = gd["cond"] >= 1e4
    assert hard.sum() >= 1 and (gd.loc[hard, "outcome"] == "no_convergence").all()
    assert (newton.loc[newton["cond"] >= 1e4, "iterations"] <= 2).all()


def test_scipy_bfgs_rows_say_they_computed_in_float64(table):
    rows = _rows(table, "quadratic", "scipy_bfgs")
    assert (rows["compute_dtype"] == "float64").all() and (rows["library"] == "scipy").all()


def test_scipy_bfgs_line_search_stalls_above_newton(table):
    """scipy's Wolfe line search compares values of f, whose changes near the minimiser fall
    below float64's resolution: its float64 runs end with 'precision loss' far above Newton's
    kappa u (median ratio at least 10; measured 30 to 1e5)."""
    scipy = _rows(table, "quadratic", "scipy_bfgs", "float64").set_index("cond")["rel_error"]
    newton = _rows(table, "quadratic", "newton", "float64").set_index("cond")["rel_error"]
    assert (scipy / newton).median() >= 10
    assert (_rows(table, "quadratic", "scipy_bfgs", "float64")["outcome"] == "no_convergence").any()


def _misclassified(rows: pd.DataFrame) -> pd.Series:
    return rows["rel_error"] > 0


@pytest.mark.parametrize("variant", ["jacobi", "numpy_eigvalsh"])
def test_classification_is_right_while_kappa_n_u_is_small(table, variant):
    """A backward-stable eigensolver moves each eigenvalue by at most c(n) u ||H||, so every
    sign is right while kappa c(n) u < 1; with c(n) = n, kappa n u <= 0.1 leaves room."""
    rows = _rows(table, "critical_point", variant)
    rows = rows[rows["outcome"] != "unsupported"]
    u = rows["format"].map(lambda f: get_format(f).u)
    safe = rows[rows["cond"] * u * rows["n"].astype(float) <= 0.1]
    assert len(safe) >= 20 and not _misclassified(safe).any()


def test_misclassification_sets_in_as_kappa_passes_1_over_u(table):
    """Where kappa u >= 10, rounding errors of the size of u ||H|| exceed min |lambda|: in
    float16 and bfloat16, Jacobi misclassifies a substantial fraction (measured 0.5 to 1)."""
    rows = _rows(table, "critical_point", "jacobi")
    rows = rows[rows["format"].isin(["float16", "bfloat16"])]
    u = rows["format"].map(lambda f: get_format(f).u)
    far = rows[rows["cond"] * u >= 10]
    assert len(far) >= 3 and _misclassified(far).mean() >= 0.3


def test_classification_error_is_a_sign_error(table):
    """The output is a sign vector: its normwise error is 0, 1 or 2 (or NaN for a NaN result)."""
    errors = _rows(table, "critical_point")["rel_error"].dropna()
    assert set(np.unique(errors)) <= {0.0, 1.0, 2.0}


def test_every_iterative_row_is_bounded(table):
    jacobi = _rows(table, "critical_point", "jacobi")
    assert jacobi["iterations"].notna().all() and (jacobi["iterations"] <= 30).all()
    quadratic = _rows(table, "quadratic")
    assert quadratic["iterations"].notna().all() and (quadratic["iterations"] <= 20_000).all()


def test_constrained_rows_carry_the_kkt_residual():
    """studies/constrained.toml (quick): every computed row has its largest normalised KKT
    residual; for augmented QR it stays within gamma_mn kappa u, the first-order form of
    Householder QR's least-squares bound (Higham, Accuracy and Stability, Thm 20.3:
    ||dA|| <= c m n u ||A||, constant c taken as 1) for the 2n x n data with n = 6. Measured
    largest ratio to kappa u on the quick rows: 9.1 (bfloat16, ||X|| ~ 1e3), against m n = 72."""
    rows = run(load_spec(CONSTRAINED_STUDY, quick=True))
    rows = rows[rows["outcome"] == "ok"]
    assert len(rows) and rows["backward_error"].notna().all()
    qr = rows[rows["variant"] == "augmented_qr"]
    u = np.array([get_format(f).u for f in qr["format"]])
    m, n = 2 * qr["n"].to_numpy(float), qr["n"].to_numpy(float)
    assert (qr["backward_error"] <= m * n * u * np.maximum(qr["cond"], 1)).all()
    inverse = rows[rows["variant"] == "normal_inv"].set_index(["format", "cond"])
    assert inverse["backward_error"].max() > 100 * qr["backward_error"].median()


def test_the_quick_study_runs_every_problem(table):
    assert set(table["problem"]) == {"quadratic", "critical_point"}
    assert math.isfinite(float(table["cond"].max()))
