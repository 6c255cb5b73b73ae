"""Linear least squares min ||X beta - y||_2, the tutorial's three ways and the standard ones,
and ridge regression.

Input: one float array [X | y] of shape (m, n + 1), m = 2n, rounded to the format as a whole.
The exact output is the least-squares solution beta of the rounded data. Its condition number
depends on the residual r = y - X beta, not only on kappa = kappa_2(X) (Wedin; Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., thm 20.1):

    ||d beta|| / ||beta|| <~ eps (kappa + kappa^2 ||r|| / (||X|| ||beta||))

for relative perturbations eps of X and y (Higham's bound carries 2 kappa and (kappa + 1)
kappa; its first-order terms are kept here without the constant 2). That is the ``cond`` of
each row. A backward stable method (Householder QR, SVD) has forward error about cond * u; the
normal equations X^T X beta = X^T y square the conditioning, kappa^2 u, whatever the residual
(Higham sec. 20.4). With a zero residual (`LEAST_SQUARES`: y = X beta exactly in float64, so
only the rounding of y to the format leaves a residual) cond ~ kappa and QR's kappa u and the
normal equations' kappa^2 u part; with a residual as large as X beta
(`LEAST_SQUARES_RESIDUAL`) cond ~ kappa^2 and no method can do better than kappa^2 u.

Variants, all in the format (`precision.problems.linalg`, pairwise in-format sums):
``normal_inv`` (the tutorial's inv(X^T X) X^T y), ``normal_cholesky``, ``qr_inv`` (the
tutorial's inv(R) Q^T y), ``qr_solve`` (back substitution with R); and ``numpy_lstsq``
(LAPACK gelsd, SVD-based; numpy.linalg computes in float64 for every dtype and refuses
float16, so its rows return float64).

Ridge (`RIDGE`): beta = (X^T X + lambda I)^-1 X^T y. The input is [X | y] with one more row
[lambda, 0, ..., 0] (shape (m + 1, n + 1)), so that lambda is rounded to the format with the
data; its "magnitude" is ||X||_2^2 / lambda (large: weak regularisation) and its cond
kappa_2(X^T X + lambda I) = (sigma_max^2 + lambda) / (sigma_min^2 + lambda)
<= 1 + ||X||^2 / lambda: the larger lambda, the better conditioned, and the cells with a
condition number beyond 1 + magnitude stay empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.core.formats import STUDY_FORMATS, cast
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems import linalg
from precision.problems.base import MeasureOne, Problem, Variant
from precision.problems.linear_systems import (
    float64_accumulator,
    in_numpy_linalg_precision,
    nan_when_singular,
)

# ---------------------------------------------------------------- reference


def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X and y from the packed input [X | y]."""
    return x[:, :-1], x[:, -1]


def least_squares_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """beta from the normal equations solved at the working precision (exact data, so only
    the working precision limits it; the engine certifies it), and the Wedin condition number
    kappa + kappa^2 ||r|| / (||X|| ||beta||) with kappa = kappa_2(X) and ||X||_2 from X's
    extreme singular values, to the accuracy a condition number needs
    (`linalg.spectral_condition`). An exactly rank-deficient X raises ZeroDivisionError (the
    engine's UndefinedResult: beta is not unique)."""
    rows = linalg.exact_matrix(x, ctx)
    a, y = [r[:-1] for r in rows], [r[-1] for r in rows]
    kappa, norm = linalg.spectral_condition(a, ctx)
    at = linalg.transpose(a)
    gram = ctx.matmul(at, a)
    beta = ctx.solve(gram, [row[0] for row in ctx.matmul(at, linalg.column(y))])
    fitted = [row[0] for row in ctx.matmul(a, linalg.column(beta))]
    residual = linalg.two_norm([yi - fi for yi, fi in zip(y, fitted, strict=True)], ctx)
    cond = kappa + kappa * kappa * residual / (norm * linalg.two_norm(beta, ctx))
    return np.array(beta, dtype=object), cond


# ---------------------------------------------------------------- variants in the format


def normal_inv(x: np.ndarray) -> np.ndarray:
    """The tutorial's beta = inv(X^T X) @ X^T @ y, in the format (inverse by LU)."""
    a, y = split(x)
    at = np.ascontiguousarray(a.T)
    return linalg.matmul(linalg.inverse(linalg.matmul(at, a)), linalg.matmul(at, y))


def normal_cholesky(x: np.ndarray) -> np.ndarray:
    """X^T X = L L^T by Cholesky, then L z = X^T y and L^T beta = z, in the format."""
    a, y = split(x)
    at = np.ascontiguousarray(a.T)
    lower = linalg.cholesky(linalg.matmul(at, a))
    return linalg.solve_upper(lower.T, linalg.solve_lower(lower, linalg.matmul(at, y)))


def _qr_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, y = split(x)
    r, reflectors = linalg.householder_qr(a)
    return r, linalg.apply_qt(reflectors, y)[: a.shape[1]]


def qr_inv(x: np.ndarray) -> np.ndarray:
    """The tutorial's beta = inv(R) @ Q^T @ y: Householder QR, R^-1 by back substitution on
    the identity, then the product, in the format."""
    r, qty = _qr_parts(x)
    r_inv = linalg.solve_upper(r, np.eye(r.shape[0], dtype=r.dtype))
    return linalg.matmul(r_inv, qty)


def qr_solve(x: np.ndarray) -> np.ndarray:
    """Householder QR, then R beta = Q^T y by back substitution, in the format (Higham thm
    20.3: backward stable)."""
    r, qty = _qr_parts(x)
    return linalg.solve_upper(r, qty)


@nan_when_singular
def numpy_lstsq(x: np.ndarray) -> np.ndarray:
    """``numpy.linalg.lstsq`` (LAPACK dgelsd, SVD; float64 for every input dtype)."""
    a, y = split(in_numpy_linalg_precision(x))
    return np.linalg.lstsq(a, y, rcond=None)[0]


LEAST_SQUARES_VARIANTS = {
    "normal_inv": Variant("normal_inv", normal_inv),
    "normal_cholesky": Variant("normal_cholesky", normal_cholesky),
    "qr_inv": Variant("qr_inv", qr_inv),
    "qr_solve": Variant("qr_solve", qr_solve),
    "numpy_lstsq": Variant("numpy_lstsq", numpy_lstsq, accumulator=float64_accumulator),
}


# ---------------------------------------------------------------- inputs


def packed_least_squares(
    rng: np.random.Generator, *, n: int, magnitude: float, kappa: np.ndarray, residual: float
) -> np.ndarray:
    """[X | y] per entry of ``kappa``: X randsvd (2n x n, ||X||_2 = magnitude, kappa_2 = kappa),
    beta a random unit vector and y = X beta + r, r orthogonal to the range of X with
    ||r|| = residual * ||X beta|| (so r is the least-squares residual and beta the solution,
    up to float64 rounding)."""
    size, m = len(kappa), 2 * n
    a = linalg.randsvd(rng, m=m, n=n, cond=kappa, norm=np.full(size, magnitude))
    beta = linalg.random_unit_vectors(rng, size, n)
    y = np.einsum("sij,sj->si", a, beta)
    if residual:
        q = np.linalg.qr(a)[0]
        z = rng.standard_normal((size, m))
        perp = z - np.einsum("sij,sj->si", q, np.einsum("sji,sj->si", q, z))
        scale = residual * np.linalg.norm(y, axis=1) / np.linalg.norm(perp, axis=1)
        y = y + scale[:, None] * perp
    return np.concatenate([a, y[:, :, None]], axis=2)


def propose_least_squares(residual: float):
    """A `Problem.propose` for [X | y] (`packed_least_squares`) aimed at Wedin's condition
    number ``cond``: with a zero residual that is kappa_2(X) = cond; with a residual it grows
    like kappa^2 ||r|| / ||X beta||, so kappa_2(X) is spread log-uniformly from sqrt(cond) / 10
    to cond and the sampler keeps the candidate whose estimated condition number
    (`estimate_least_squares`) is nearest the target."""

    def propose(rng, *, n: int, magnitude: float, cond: float, size: int) -> np.ndarray:
        low = max(np.sqrt(cond) / 10, 1.0) if residual else cond
        kappa = np.exp(rng.uniform(np.log(low), np.log(cond), size=size))
        return packed_least_squares(rng, n=n, magnitude=magnitude, kappa=kappa, residual=residual)

    return propose


def estimate_least_squares(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Wedin's kappa + kappa^2 ||r|| / (||X|| ||beta||), ||X||_2) of a batch of packed
    [X | y] in float64 (beta by QR), for choosing candidates only."""
    a, y = X[:, :, :-1], X[:, :, -1]
    kappa, norm = linalg.spectral_estimates(a)
    q, r = np.linalg.qr(a)
    beta = np.linalg.solve(r, np.einsum("sji,sj->si", q, y)[:, :, None])[:, :, 0]
    residual = np.linalg.norm(y - np.einsum("sij,sj->si", a, beta), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return kappa + kappa**2 * residual / (norm * np.linalg.norm(beta, axis=1)), norm


def check_packed(x: np.ndarray) -> None:
    """ValueError unless x is [X | y] with more rows than unknowns."""
    shape = np.shape(x)
    if len(shape) != 2 or shape[0] < shape[1] - 1 or shape[1] < 2:
        raise ValueError(f"needs [X | y] of shape (m, n + 1), m >= n; got {shape}")


def least_squares_problem(name: str, residual: float, description: str) -> Problem:
    return Problem(
        name=name,
        description=description,
        reference=least_squares_reference,
        magnitude=lambda x: linalg.spectral_norm(split(x)[0]),
        propose=propose_least_squares(residual),
        estimate=estimate_least_squares,
        variants=LEAST_SQUARES_VARIANTS,
        input_shape=lambda n: (2 * n, n + 1),
        check_input=check_packed,
        magnitude_name="||X||_2",
    )


LEAST_SQUARES = least_squares_problem(
    "least_squares",
    0.0,
    "min ||X b - y|| with a zero residual: normal equations (inv, Cholesky), QR (inv, solve)",
)

LEAST_SQUARES_RESIDUAL = least_squares_problem(
    "least_squares_residual",
    1.0,
    "min ||X b - y|| with ||r|| = ||X b||: every method pays kappa^2 u",
)


# ---------------------------------------------------------------- ridge


def split_ridge(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.generic]:
    """X, y and lambda from [X | y] over [lambda, 0, ..., 0]."""
    return x[:-1, :-1], x[:-1, -1], x[-1, 0]


def ridge_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """beta solving (X^T X + lambda I) beta = X^T y at the working precision, and
    kappa_2(X^T X + lambda I) = lambda_max / lambda_min of that symmetric positive definite
    matrix: its singular values are its eigenvalues (`linalg.spectral_condition`, to the
    accuracy a condition number needs). A singular X^T X + lambda I (lambda rounded to 0 and
    X rank deficient) raises ZeroDivisionError (the engine's UndefinedResult)."""
    rows = linalg.exact_matrix(x, ctx)
    a, y, lam = [r[:-1] for r in rows[:-1]], [r[-1] for r in rows[:-1]], rows[-1][0]
    at = linalg.transpose(a)
    gram = ctx.matmul(at, a)
    for i in range(len(gram)):
        gram[i][i] = gram[i][i] + lam
    kappa, _ = linalg.spectral_condition(gram, ctx)
    beta = ctx.solve(gram, [row[0] for row in ctx.matmul(at, linalg.column(y))])
    return np.array(beta, dtype=object), kappa


def _regularised_normal_equations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X^T X + lambda I and X^T y, in the format."""
    a, y, lam = split_ridge(x)
    at = np.ascontiguousarray(a.T)
    gram = linalg.matmul(at, a)
    gram[np.diag_indices_from(gram)] += lam
    return gram, linalg.matmul(at, y)


def ridge_normal_inv(x: np.ndarray) -> np.ndarray:
    """inv(X^T X + lambda I) @ X^T y, in the format."""
    gram, rhs = _regularised_normal_equations(x)
    return linalg.matmul(linalg.inverse(gram), rhs)


def ridge_cholesky(x: np.ndarray) -> np.ndarray:
    """Cholesky of X^T X + lambda I and two triangular solves, in the format."""
    gram, rhs = _regularised_normal_equations(x)
    lower = linalg.cholesky(gram)
    return linalg.solve_upper(lower.T, linalg.solve_lower(lower, rhs))


def ridge_augmented_qr(x: np.ndarray) -> np.ndarray:
    """Ridge as ordinary least squares on [X; sqrt(lambda) I] beta ~ [y; 0] by Householder QR,
    in the format (the normal equations of that system are the ridge equations)."""
    a, y, lam = split_ridge(x)
    n = a.shape[1]
    augmented = np.concatenate([a, np.sqrt(lam) * np.eye(n, dtype=a.dtype)])
    target = np.concatenate([y, np.zeros(n, dtype=y.dtype)])
    return qr_solve(np.concatenate([augmented, target[:, None]], axis=1))


@nan_when_singular
def ridge_numpy_solve(x: np.ndarray) -> np.ndarray:
    """``numpy.linalg.solve(X^T X + lambda I, X^T y)`` (float64 for every input dtype)."""
    a, y, lam = split_ridge(in_numpy_linalg_precision(x))
    return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y)


def ridge_magnitude(x: np.ndarray) -> float:
    """||X||_2^2 / lambda (float64): the data's scale relative to the regularisation, so that
    kappa_2(X^T X + lambda I) <= 1 + magnitude (inf for lambda = 0)."""
    a, _, lam = split_ridge(x)
    with np.errstate(divide="ignore"):
        return float(np.float64(linalg.spectral_norm(a)) ** 2 / np.float64(lam))


def propose_ridge(rng, *, n: int, magnitude: float, cond: float, size: int) -> np.ndarray:
    """[X | y] over [lambda, 0...]: ||X||_2 = 1, lambda = 1 / magnitude, y = X beta (unit
    beta) plus a residual of a tenth of ||X beta||, and sigma_min(X) chosen so that
    kappa_2(X^T X + lambda I) = cond where that is possible (cond < 1 + 1 / lambda); elsewhere
    X gets kappa 1e8 and the candidate falls outside the cell."""
    lam = 1.0 / magnitude
    sigma_min_sq = (1 + lam) / cond - lam
    kappa_x = 1 / np.sqrt(sigma_min_sq) if sigma_min_sq > 0 else 1e8
    kappa = np.full(size, kappa_x)
    packed = packed_least_squares(rng, n=n, magnitude=1.0, kappa=kappa, residual=0.1)
    last = np.zeros((size, 1, n + 1))
    last[:, 0, 0] = lam
    return np.concatenate([packed, last], axis=1)


def estimate_ridge(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa_2(X^T X + lambda I), ||X||^2 / lambda) in float64, for choosing candidates."""
    s = np.linalg.svd(X[:, :-1, :-1], compute_uv=False)
    lam = X[:, -1, 0]
    return (s[:, 0] ** 2 + lam) / (s[:, -1] ** 2 + lam), s[:, 0] ** 2 / lam


RIDGE = Problem(
    name="ridge",
    description="ridge regression (X^T X + lambda I) b = X^T y: inv, Cholesky, augmented QR",
    reference=ridge_reference,
    magnitude=ridge_magnitude,
    magnitude_name="||X||_2^2/lambda",
    propose=propose_ridge,
    estimate=estimate_ridge,
    variants={
        "normal_inv": Variant("normal_inv", ridge_normal_inv),
        "normal_cholesky": Variant("normal_cholesky", ridge_cholesky),
        "augmented_qr": Variant("augmented_qr", ridge_augmented_qr),
        "numpy_solve": Variant("numpy_solve", ridge_numpy_solve, accumulator=float64_accumulator),
    },
    input_shape=lambda n: (2 * n + 1, n + 1),
)


# ---------------------------------------------------------------- worked example


def vandermonde_fit_input(*, points: int = 100, degree: int = 14) -> np.ndarray:
    """[X | y] for fitting a degree-14 polynomial to exp(sin(4 t)) at 100 equispaced points
    of [0, 1] in the monomial basis: X_ij = t_i^j (a Vandermonde matrix), in float64."""
    t = np.linspace(0.0, 1.0, points)
    return np.concatenate(
        [np.vander(t, degree + 1, increasing=True), np.exp(np.sin(4 * t))[:, None]], axis=1
    )


def vandermonde_example(measure: MeasureOne) -> pd.DataFrame:
    """Relative forward error of every least-squares variant on `vandermonde_fit_input` in every
    format, against the exact least-squares solution of the data as rounded to that format;
    with kappa_2(X) and the Wedin condition number of each rounded problem. ``measure`` is the
    runner's (`precision.run.study.measure_one`): ground truth and measurement sit above the
    problems."""
    rows = []
    for name in STUDY_FORMATS:
        x = cast(vandermonde_fit_input(), name)
        kappa = np.linalg.cond(split(x)[0].astype(np.float64))
        for variant in LEAST_SQUARES_VARIANTS:
            row = measure(LEAST_SQUARES, variant, x, name)
            rows.append(
                {
                    "format": name,
                    "variant": variant,
                    "rel_error": row["rel_error"],
                    "outcome": row["outcome"],
                    "kappa(X)": kappa,
                    "cond": row["cond"],
                    "certified": row["certified"],
                }
            )
    return pd.DataFrame(rows)


def worked_examples(measure: MeasureOne) -> list[tuple[str, str, pd.DataFrame]]:
    """The Vandermonde fit as a summary example (title, explanation, table)."""
    table = vandermonde_example(measure)
    shown = table.assign(
        shown=[
            f"{e:.3g}" if outcome == "ok" else outcome
            for e, outcome in zip(table["rel_error"], table["outcome"], strict=True)
        ]
    )
    wide = shown.pivot(index="variant", columns="format", values="shown")[list(STUDY_FORMATS)]
    about = table.drop_duplicates("format").set_index("format")
    text = (
        "Fitting exp(sin(4t)) at 100 points of [0, 1] by a degree-14 polynomial in the monomial "
        "basis: the Vandermonde matrix has kappa_2 = "
        f"{about.loc['float64', 'kappa(X)']:.2g} in float64 (the Wedin condition number of the "
        f"fit is {about.loc['float64', 'cond']:.2g}). The table gives the relative error of the "
        "coefficients against the exact least-squares solution of the data as rounded to each "
        "format. kappa exceeds 1 / u in every format but float64, so there QR keeps no digit; "
        "in float64 QR's error stays below kappa u, the normal equations (kappa^2 u >> 1) keep "
        "none, and "
        "Cholesky meets a pivot <= 0 (nan). numpy_lstsq computes in float64 whatever the "
        "input (its bfloat16 and float32 columns are float64 solutions of the rounded data) "
        "and refuses float16."
    )
    return [("Vandermonde polynomial fit (degree 14)", text, wide.reset_index())]
