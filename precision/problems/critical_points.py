"""Classifying a critical point from its Hessian's eigenvalues, computed in each format.

At a critical point of a smooth f, the Hessian H decides: all eigenvalues positive, a
minimum; all negative, a maximum; mixed signs, a saddle (a zero eigenvalue: degenerate). The
input is a symmetric H (n x n); the output is the classification as the sorted sign vector
(sign(lambda_1) <= ... <= sign(lambda_n), entries -1, 0, +1: the inertia), in the format. The
exact output is the inertia of the rounded H, computed exactly: the characteristic polynomial
det(t I - H) in rational arithmetic (Faddeev-LeVerrier), whose roots are all real, so that
Descartes' rule of signs counts its positive and negative roots exactly.

What the error means: the output vector is right or wrong, so its normwise relative error is 0
for a correct classification and 1 (an eigenvalue's sign lost to 0) or 2 (a sign flipped) for a
wrong one; the misclassification rate is the fraction of rows with rel_error > 0. The condition
number is kappa = ||H||_2 / min |lambda_i| (float64 eigenvalues of the rounded H, accurate to
about kappa 1e-16 relative), the inverse of the relative distance to the nearest matrix of
different inertia (Weyl): a backward-stable eigensolver (|d lambda| <= c(n) u ||H||_2) keeps
every sign while kappa c(n) u < 1 and may lose the smallest one beyond; magnitude ||H||_2.

Variants, all in the format: ``jacobi`` (cyclic Jacobi rotations, Golub & Van Loan 2013,
alg. 8.5.3; backward stable; capped at JACOBI_MAX_SWEEPS, non-convergence recorded), ``ldlt``
(the signs of the pivots of symmetric Gaussian elimination without pivoting: Sylvester's law
of inertia; cheap and unstable: a tiny pivot can flip), and ``numpy_eigvalsh`` (LAPACK;
float32 and float64 only: numpy.linalg refuses float16 and would compute bfloat16 in float64,
so those rows are ``unsupported``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from precision.core.formats import get_format
from precision.core.numbers import MPMATH, NumberSystem
from precision.problems.base import Computed, Problem, Unsupported, Variant, square_matrix
from precision.problems.quadratic import to_fractions

JACOBI_MAX_SWEEPS = 30
"""Cyclic Jacobi converges quadratically: 6 to 10 sweeps for n <= 10 in float64."""


# ---------------------------------------------------------------- exact inertia


def characteristic_polynomial(H: list[list[Fraction]]) -> list[Fraction]:
    """Coefficients c_0 = 1, c_1, ..., c_n of det(t I - H) = sum_k c_k t^(n - k), exactly
    (Faddeev-LeVerrier: M_k = H M_(k-1) + c_(k-1) I, c_k = -trace(H M_k) / k)."""
    n = len(H)
    coefficients = [Fraction(1)]
    M = [[Fraction(0)] * n for _ in range(n)]
    for k in range(1, n + 1):
        M = [
            [sum((H[i][m] * M[m][j] for m in range(n)), Fraction(0)) for j in range(n)]
            for i in range(n)
        ]
        for i in range(n):
            M[i][i] += coefficients[-1]
        trace = sum((H[i][m] * M[m][i] for i in range(n) for m in range(n)), Fraction(0))
        coefficients.append(-trace / k)
    return coefficients


def sign_changes(values: list[Fraction]) -> int:
    """Sign changes in a sequence, zeros skipped (Descartes)."""
    signs = [v > 0 for v in values if v != 0]
    return sum(a != b for a, b in zip(signs, signs[1:], strict=False))


def exact_inertia(H: list[list[Fraction]]) -> tuple[int, int, int]:
    """(negative, zero, positive) eigenvalue counts of a symmetric rational matrix: for a
    polynomial with only real roots, Descartes' rule counts the positive roots exactly, and
    p(-t) the negative ones; the zero roots are the trailing zero coefficients."""
    c = characteristic_polynomial(H)
    n = len(c) - 1
    zero = next((k for k in range(n + 1) if c[n - k] != 0), n)
    positive = sign_changes(c)
    negative = sign_changes([ck * (-1) ** (n - k) for k, ck in enumerate(c)])
    assert negative + zero + positive == n, "the characteristic polynomial has complex roots"
    return negative, zero, positive


def sign_pattern(negative: int, zero: int, positive: int) -> list[int]:
    return [-1] * negative + [0] * zero + [1] * positive


def kappa_inertia64(H: np.ndarray) -> tuple[float, float]:
    """(||H||_2 / min |lambda|, ||H||_2) from float64 eigenvalues."""
    eig = np.abs(np.linalg.eigvalsh(np.asarray(H, dtype=np.float64)))
    return (float(eig.max() / eig.min()) if eig.min() > 0 else math.inf), float(eig.max())


def critical_point_reference(x: np.ndarray, ctx: NumberSystem = MPMATH):
    """The exact sorted sign vector of the rounded H, and kappa (module docstring)."""
    counts = exact_inertia(to_fractions(np.asarray(x, dtype=np.float64)))
    signs = np.array([ctx.exact(float(s)) for s in sign_pattern(*counts)], dtype=object)
    return signs, ctx.exact(kappa_inertia64(x)[0])


# ---------------------------------------------------------------- in-format eigenvalues


def _rotate(A: np.ndarray, p: int, q: int) -> None:
    """One Jacobi rotation zeroing A[p, q], in place, every operation in A's format."""
    one, two = A.dtype.type(1), A.dtype.type(2)
    theta = (A[q, q] - A[p, p]) / (two * A[p, q])
    # t = sign(theta) / (|theta| + sqrt(theta^2 + 1)): the smaller root, |t| <= 1, so the
    # rotation angle is at most pi / 4 (the choice that makes Jacobi converge).
    if np.abs(theta) >= A.dtype.type(2.0 ** (get_format(A.dtype).p / 2)):
        # sqrt(theta^2 + 1) rounds to |theta| there, and theta^2 could overflow.
        t = one / (two * theta)
    else:
        sign = one if theta >= 0 else -one
        t = sign / (np.abs(theta) + np.sqrt(theta * theta + one))
    c = one / np.sqrt(t * t + one)
    s = t * c
    column_p, column_q = A[:, p].copy(), A[:, q].copy()
    A[:, p], A[:, q] = c * column_p - s * column_q, s * column_p + c * column_q
    row_p, row_q = A[p, :].copy(), A[q, :].copy()
    A[p, :], A[q, :] = c * row_p - s * row_q, s * row_p + c * row_q
    A[p, q] = A[q, p] = 0  # its exact value after the rotation; the formulas leave noise


def jacobi_eigenvalues(H: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """Eigenvalues of a symmetric H by cyclic Jacobi in its format: (eigenvalues, sweeps,
    converged).

    Threshold Jacobi: an off-diagonal entry with |a_pq| <= u ||A||_F / n is set to 0 instead
    of rotated (a perturbation of at most u ||A||_F in all, so the method stays backward
    stable), and a sweep that rotates nothing ends the iteration (converged). The threshold is
    the one number formed in float64 (from the in-format values); it also keeps
    theta = (a_qq - a_pp) / (2 a_pq) below n / u, far from overflow.
    """
    A, n = H.copy(), H.shape[0]
    u = get_format(H.dtype).u
    for sweep in range(JACOBI_MAX_SWEEPS):
        a64 = A.astype(np.float64)
        if not np.isfinite(a64).all():
            return np.diag(A).copy(), sweep, False
        threshold = u * float(np.sqrt((a64**2).sum())) / n
        rotated = False
        for p in range(n - 1):
            for q in range(p + 1, n):
                if abs(float(A[p, q])) <= threshold:
                    A[p, q] = A[q, p] = 0
                else:
                    _rotate(A, p, q)
                    rotated = True
        if not rotated:
            return np.diag(A).copy(), sweep, True
    return np.diag(A).copy(), JACOBI_MAX_SWEEPS, False


def signs_sorted(eigenvalues: np.ndarray) -> np.ndarray:
    """The sorted sign vector, in the eigenvalues' format (NaN stays NaN)."""
    return np.sort(np.sign(eigenvalues))


def classify_jacobi(x: np.ndarray) -> Computed:
    eigenvalues, sweeps, converged = jacobi_eigenvalues(x)
    return Computed(signs_sorted(eigenvalues), iterations=sweeps, converged=converged)


def ldlt_pivots(H: np.ndarray) -> np.ndarray:
    """The pivots D of H = L D L^T (symmetric elimination without pivoting), in the format;
    a zero pivot gives inf / NaN below it."""
    A, n = H.copy(), H.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(n - 1):
            factors = A[k + 1 :, k] / A[k, k]
            A[k + 1 :, k + 1 :] -= np.multiply.outer(factors, A[k, k + 1 :])
    return np.diag(A).copy()


def classify_ldlt(x: np.ndarray) -> np.ndarray:
    return signs_sorted(ldlt_pivots(x))


def classify_numpy(x: np.ndarray) -> np.ndarray:
    """``numpy.linalg.eigvalsh`` where it computes in the format itself."""
    if x.dtype == np.float16:
        raise Unsupported("numpy.linalg.eigvalsh refuses float16")
    if x.dtype not in (np.float32, np.float64):
        raise Unsupported(f"numpy.linalg.eigvalsh would compute {x.dtype} in float64")
    return signs_sorted(np.linalg.eigvalsh(x)).astype(x.dtype)


# ---------------------------------------------------------------- inputs


def propose_hessians(rng, *, n: int, magnitude: float, cond: float, size: int) -> np.ndarray:
    """Symmetric H = Q diag(lambda) Q^T with |lambda| log-spaced from magnitude down to
    magnitude / cond (both ends included, the smallest one last), random signs (at least one of
    each half the time: minima, maxima and saddles all occur), Q random orthogonal."""
    out = np.empty((size, n, n))
    for s in range(size):
        lam = magnitude * np.logspace(0.0, -np.log10(cond), n) * rng.choice([-1.0, 1.0], n)
        if rng.random() < 0.5:  # a definite matrix (a minimum or maximum) half the time
            lam = np.abs(lam) * rng.choice([-1.0, 1.0])
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        H = (Q * lam) @ Q.T
        out[s] = (H + H.T) / 2
    return out


def estimate_hessians(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    eig = np.abs(np.linalg.eigvalsh(X))
    with np.errstate(divide="ignore"):
        return eig.max(axis=1) / eig.min(axis=1), eig.max(axis=1)


CRITICAL_POINT = Problem(
    name="critical_point",
    description="min / max / saddle from the Hessian's eigenvalue signs (Jacobi, LDL^T, LAPACK)",
    reference=critical_point_reference,
    magnitude=lambda x: float(estimate_hessians(np.asarray(x, dtype=np.float64)[None])[1][0]),
    magnitude_name="max|eig H|",
    propose=propose_hessians,
    estimate=estimate_hessians,
    variants={
        "jacobi": Variant("jacobi", classify_jacobi, description="cyclic Jacobi in the format"),
        "ldlt": Variant("ldlt", classify_ldlt, description="pivot signs of LDL^T, no pivoting"),
        "numpy_eigvalsh": Variant(
            "numpy_eigvalsh", classify_numpy, library="numpy", description="LAPACK syevd"
        ),
    },
    input_shape=lambda n: (n, n),
    check_input=square_matrix,
)
