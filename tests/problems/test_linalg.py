"""The in-format linear algebra of precision.problems.linalg: dtype kept, every operation rounded
to the format, and the backward error bounds of Higham's *Accuracy and Stability of Numerical
Algorithms* (2nd ed.) met componentwise, in units of each format's u.

Residuals of low-precision results are evaluated in float64, where they are exact or nearly so:
a product of two float16/bfloat16/float32 numbers is exact in float64, and the sums of the
tested sizes add at most n u_64 relative, far below the bounds' gamma_n u of those formats.
float64 results are checked in exact rational arithmetic. kappa_2 of the exact references
(`linalg.spectral_condition`) is checked on a matrix whose singular values are known exactly.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest

from precision.core.formats import STUDY_FORMATS, cast, get_format
from precision.core.numbers import ARB, MPMATH
from precision.problems import linalg

LOW = ("float16", "bfloat16", "float32")


def gamma(k: int, fmt: str) -> float:
    """gamma_k = k u / (1 - k u) (Higham eq. 3.8)."""
    u = get_format(fmt).u
    return k * u / (1 - k * u)


def matrix(fmt: str, *, n: int = 8, cond: float = 50.0, seed: int = 0, m: int | None = None):
    rng = np.random.default_rng(seed)
    a = linalg.randsvd(rng, m=m or n, n=n, cond=np.array([cond]), norm=np.array([4.0]))[0]
    return cast(a, fmt)


def f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_every_algorithm_keeps_the_dtype(fmt):
    a = matrix(fmt)
    b = a[:, 0]
    dtype = a.dtype
    lu, _ = linalg.lu_factor(a)
    r, reflectors = linalg.householder_qr(matrix(fmt, m=12))
    sigma, _, _ = linalg.jacobi_singular_values(a)
    results = [
        lu,
        linalg.lu_solve(a, b),
        linalg.inverse(a),
        linalg.cholesky(linalg.matmul(a.T, a)),
        r,
        linalg.apply_qt(reflectors, matrix(fmt, m=12)[:, 0]),
        linalg.matmul(a, a),
        sigma,
    ]
    assert all(result.dtype == dtype for result in results)


def _emulated_pairwise(values: list[float], dtype) -> float:
    """The pairwise tree of `linalg.pairwise_sum`, each addition done exactly in float64 and
    rounded to ``dtype`` once (float16 sums of moderate numbers are exact in float64)."""
    while len(values) > 1:
        pairs = [
            float(np.asarray(values[i] + values[i + 1]).astype(dtype))
            for i in range(0, len(values) - 1, 2)
        ]
        values = pairs + values[len(pairs) * 2 :]
    return values[0]


def test_matmul_accumulates_in_float16_unlike_numpy():
    """2048 + 1 + 1 + 1 = 2051 lies halfway between float16's 2050 and 2052. numpy's float16
    dot and @ accumulate in float32 and round once (2052); the in-format pairwise sum rounds
    2048 + 1 to 2048 first and gives 2050, as the emulation with a rounding per addition."""
    x = np.array([2048.0, 1.0, 1.0, 1.0], dtype=np.float16)
    ones = np.ones_like(x)
    assert float(np.dot(x, ones)) == 2052.0
    assert float((x[None, :] @ ones[:, None])[0, 0]) == 2052.0
    expected = _emulated_pairwise(x.astype(np.float64).tolist(), np.float16)
    assert expected == 2050.0
    assert float(linalg.dot(x, ones)) == expected
    assert float(linalg.matmul(x[None, :], ones[:, None])[0, 0]) == expected


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_matmul_is_every_product_and_sum_rounded(fmt):
    rng = np.random.default_rng(4)
    a, b = cast(rng.uniform(-2, 2, (3, 7)), fmt), cast(rng.uniform(-2, 2, (7, 2)), fmt)
    c = linalg.matmul(a, b)
    for i in range(3):
        for j in range(2):
            products = [float(np.asarray(a[i, k] * b[k, j])) for k in range(7)]
            assert float(c[i, j]) == _emulated_pairwise(products, a.dtype)


@pytest.mark.parametrize("fmt", LOW)
@pytest.mark.parametrize("cond", [2.0, 100.0])
def test_lu_backward_error(fmt, cond):
    """Higham thm 9.3: L^ U^ = P A + dA with |dA| <= gamma_n |L^| |U^|."""
    n = 8
    a = matrix(fmt, n=n, cond=cond)
    lu, perm = linalg.lu_factor(a)
    lower = np.tril(f64(lu), -1) + np.eye(n)
    upper = np.triu(f64(lu))
    residual = np.abs(f64(a)[perm] - lower @ upper)
    assert (residual <= gamma(n, fmt) * (np.abs(lower) @ np.abs(upper))).all()
    assert (np.abs(np.tril(f64(lu), -1)) <= 1).all()  # partial pivoting


@pytest.mark.parametrize("fmt", LOW)
@pytest.mark.parametrize("cond", [2.0, 1e3])
def test_lu_solve_normwise_backward_error(fmt, cond):
    """Higham thm 9.4: (A + dA) x^ = b, |dA| <= gamma_3n |L^| |U^|, so the Rigal-Gaches backward
    error (infinity norm) is at most gamma_3n || |L^| |U^| || / ||A||."""
    n = 8
    a = matrix(fmt, n=n, cond=cond, seed=1)
    b = cast(f64(a) @ np.ones(n), fmt)
    x = linalg.lu_solve(a, b)
    lu, _ = linalg.lu_factor(a)
    lower = np.abs(np.tril(f64(lu), -1) + np.eye(n))
    growth = np.abs(lower @ np.abs(np.triu(f64(lu)))).sum(axis=1).max()
    bound = gamma(3 * n, fmt) * growth / np.abs(f64(a)).sum(axis=1).max()
    assert linalg.rigal_gaches(a, b, x) <= bound


@pytest.mark.parametrize("fmt", LOW)
def test_triangular_solves_backward_error(fmt):
    """Higham thm 8.5: (T + dT) x^ = b with |dT| <= gamma_n |T|, hence
    |b - T x^| <= gamma_n |T| |x^|."""
    n = 8
    lu, _ = linalg.lu_factor(matrix(fmt, n=n, cond=100.0, seed=2))
    b = cast(np.linspace(-1, 1, n), fmt)
    for triangle, solve in (
        (np.triu(f64(lu)), linalg.solve_upper),
        (np.tril(f64(lu)), linalg.solve_lower),
    ):
        x = solve(lu, b)
        residual = np.abs(f64(b) - triangle @ f64(x))
        assert (residual <= gamma(n, fmt) * (np.abs(triangle) @ np.abs(f64(x)))).all()


@pytest.mark.parametrize("fmt", LOW)
def test_cholesky_backward_error(fmt):
    """Higham thm 10.3: L^ L^T = M + dM with |dM| <= gamma_{n+1} |L^| |L^T|."""
    n = 8
    a = matrix(fmt, n=n, cond=3.0, seed=3)
    gram = linalg.matmul(a.T, a)
    lower = f64(linalg.cholesky(gram))
    residual = np.abs(f64(gram) - lower @ lower.T)
    assert (residual <= gamma(n + 1, fmt) * (np.abs(lower) @ np.abs(lower.T))).all()


def test_cholesky_breakdown_is_nan():
    """X^T X of kappa(X) = 1e3 has kappa 1e6 >> 1 / u in bfloat16: a pivot <= 0 appears and
    the factor carries NaN (the row's outcome "nan"), no exception."""
    a = matrix("bfloat16", n=8, cond=1e3)
    with np.errstate(invalid="ignore"):
        assert np.isnan(f64(linalg.cholesky(linalg.matmul(a.T, a)))).any()


def _q_from_reflectors(reflectors, m: int) -> np.ndarray:
    """Q = H_1 ... H_n in float64 from the computed reflectors (exact to float64 rounding)."""
    q = np.eye(m)
    for k, (v, tau) in reversed(list(enumerate(reflectors))):
        v64 = f64(v)
        q[k:] -= float(tau) * np.outer(v64, v64 @ q[k:])
    return q


@pytest.mark.parametrize("fmt", LOW)
@pytest.mark.parametrize("norm", [1e-3, 1.0, 100.0])
def test_householder_qr_backward_error(fmt, norm):
    """Higham thm 19.4: A + dA = Q R^ with ||da_j|| <= gamma~_{mn} ||a_j|| for every column
    (gamma~_k = c k u, c a small constant; c = 1 here), Q the product of the computed
    reflectors; the power-of-two scaling keeps it at norms where float16 squares underflow."""
    m, n = 12, 6
    a = cast(f64(matrix("float64", m=m, n=n, cond=100.0, seed=5)) * norm / 4.0, fmt)
    r, reflectors = linalg.householder_qr(a)
    q = _q_from_reflectors(reflectors, m)
    defect = f64(a) - q[:, :n] @ f64(r)
    column_norms = np.linalg.norm(f64(a), axis=0)
    assert (np.linalg.norm(defect, axis=0) <= gamma(m * n, fmt) * column_norms).all()
    assert np.allclose(q.T @ q, np.eye(m), atol=4 * m * get_format(fmt).u)


def test_float64_lu_backward_error_in_exact_arithmetic():
    n, fmt = 6, "float64"
    a = matrix(fmt, n=n, cond=1e6, seed=6)
    lu, perm = linalg.lu_factor(a)
    q = [[Fraction(v) for v in row] for row in lu.tolist()]
    lower = [[q[i][j] if j < i else Fraction(int(i == j)) for j in range(n)] for i in range(n)]
    upper = [[q[i][j] if j >= i else Fraction(0) for j in range(n)] for i in range(n)]
    g = Fraction(gamma(n, fmt))
    for i in range(n):
        for j in range(n):
            product = sum(lower[i][k] * upper[k][j] for k in range(n))
            magnitude = sum(abs(lower[i][k] * upper[k][j]) for k in range(n))
            assert abs(Fraction(float(a[perm[i], j])) - product) <= g * magnitude


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_jacobi_singular_values(fmt):
    """Backward stable rotations: |sigma^_i - sigma_i| <= c n u sigma_max (Demmel & Veselic);
    c n = 4 n here."""
    a = matrix(fmt, n=10, cond=1e4, seed=7)
    sigma, sweeps, converged = linalg.jacobi_singular_values(a)
    exact = np.linalg.svd(f64(a), compute_uv=False)
    assert converged and sweeps < 20
    error = np.abs(np.sort(f64(sigma))[::-1] - exact)
    assert (error <= 4 * 10 * get_format(fmt).u * exact[0]).all()


def test_round_robin_meets_every_pair_once():
    for n in (5, 8):
        pairs = [(i, j) for rnd in linalg.round_robin(n) for i, j in zip(*rnd, strict=True)]
        assert sorted(pairs) == [(i, j) for i in range(n) for j in range(i + 1, n)]
        for i, j in linalg.round_robin(n):
            assert len(set(i.tolist()) | set(j.tolist())) == 2 * len(i)  # disjoint in a round


def test_rigal_gaches_is_exact():
    a = np.array([[2.0, 1.0], [0.5, 3.0]])
    b = np.array([1.0, -2.0])
    x = np.array([0.75, -0.8125])
    residual = [
        Fraction(1) - (2 * Fraction(x[0]) + Fraction(x[1])),
        Fraction(-2) - (Fraction(1, 2) * Fraction(x[0]) + 3 * Fraction(x[1])),
    ]
    expected = max(map(abs, residual)) / (Fraction(7, 2) * Fraction(0.8125) + 2)
    assert linalg.rigal_gaches(a, b, x) == float(expected)
    exact = np.linalg.solve(np.array([[2.0, 0.0], [0.0, 4.0]]), np.array([2.0, 4.0]))
    assert linalg.rigal_gaches(np.diag([2.0, 4.0]), np.array([2.0, 4.0]), exact) == 0.0


def test_randsvd_hits_condition_and_norm():
    rng = np.random.default_rng(8)
    a = linalg.randsvd(rng, m=20, n=10, cond=np.array([1e3, 10.0]), norm=np.array([5.0, 0.1]))
    kappa, norm = linalg.spectral_estimates(a)
    assert kappa == pytest.approx([1e3, 10.0], rel=1e-10)
    assert norm == pytest.approx([5.0, 0.1], rel=1e-12)


# ---------------------------------------------------------------- kappa_2 of exact matrices


def _known_spectrum() -> np.ndarray:
    """Q diag(8, 4, 2, 1) Q with Q = H / 2 (H the 4 x 4 Hadamard matrix: Q is orthogonal and
    symmetric, entries +-1/2): the entries are exact multiples of 1/4 and the singular values
    are exactly 8, 4, 2, 1, so kappa_2 = 8 and ||A||_2 = 8."""
    h = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
    return h @ np.diag([8.0, 4.0, 2.0, 1.0]) @ h


@pytest.mark.parametrize("tight", [False, True])
def test_spectral_condition_in_arb_contains_the_exact_value(tight):
    """kappa_2 = 8 inside the ball, which is within 2**-30 relative (a condition number) or
    2**-84 (an output, ``tight``) at 113 bits."""
    a = _known_spectrum()
    with ARB.workprec(113):
        kappa, norm = linalg.spectral_condition(linalg.exact_matrix(a, ARB), ARB, tight=tight)
    for ball in (kappa, norm):
        assert ball.contains(8)
        assert ball.rad() <= (2.0**-84 if tight else 2.0**-30) * 8


def test_spectral_condition_in_mpmath_is_the_working_precision_value():
    a = _known_spectrum()
    with mpmath.workprec(113):
        kappa, norm = linalg.spectral_condition(linalg.exact_matrix(a, MPMATH), MPMATH)
        assert abs(kappa - 8) <= 2.0**-100 and abs(norm - 8) <= 2.0**-100


@pytest.mark.parametrize("system", ["mpmath", "arb"])
def test_spectral_condition_of_a_rank_deficient_matrix_raises(system):
    """A repeated column: kappa_2 is infinite, decided exactly, in both number systems."""
    ctx = {"mpmath": MPMATH, "arb": ARB}[system]
    a = np.array([[1.0, 2.0, 1.0], [3.0, -1.0, 3.0], [0.5, 4.0, 0.5], [1.0, 1.0, 1.0]])
    with ctx.workprec(113), pytest.raises(ZeroDivisionError, match="rank deficient"):
        linalg.spectral_condition(linalg.exact_matrix(a, ctx), ctx)
