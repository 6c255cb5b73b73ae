"""Minimising a quadratic f(theta) = 1/2 theta^T H theta - b^T theta in each format.

The minimiser of a positive definite H is theta* = H^-1 b. An input is the matrix [H | b]
(n x (n + 1)) as the format holds it; the exact output is H^-1 b of that rounded input, solved
in exact rational arithmetic and handed to the reference number system as num / den. The
condition number is kappa_2(H) = |lambda|_max / |lambda|_min, from float64 eigenvalues of the
rounded H (``numpy.linalg.eigvalsh``: accurate to about kappa * 1e-16 relative, plenty for a
column binned by decade); the magnitude is max |theta*_i| (the "scale" of the solution).
Inputs are drawn with lambda_max(H) = 1 (before rounding), so a learning rate alpha is also
alpha * lambda_max, and the stability limit of gradient descent is alpha < 2.

Every optimiser runs in the input's format and is iterative with a bounded number of
iterations (`precision.problems.optimisers`); rows record the iterations and non-convergence
(outcome ``no_convergence``), and their backward_error column is the normwise backward error
of theta as a solution of H theta = b (Rigal & Gaches 1967), evaluated exactly.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd

from precision.core.formats import cast
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant
from precision.problems.optimisers import GD_RULES, OPTIMISERS, trajectory
from precision.problems.summation import dyadic

# ---------------------------------------------------------------- exact linear algebra


def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, b) of an input [H | b]."""
    n = x.shape[0]
    return x[:, :n], x[:, n]


def to_fractions(a: np.ndarray) -> list:
    """Exact rationals of a float array (nested lists), through float64 (exact for every
    format)."""
    return np.vectorize(Fraction, otypes=[object])(np.asarray(a, dtype=np.float64)).tolist()


def exact_solve(H: list[list[Fraction]], b: list[Fraction]) -> list[Fraction] | None:
    """H^-1 b by Gaussian elimination in exact rationals (any nonzero pivot is exact); None
    when H is singular."""
    n = len(b)
    rows = [list(H[i]) + [b[i]] for i in range(n)]
    for k in range(n):
        pivot = next((i for i in range(k, n) if rows[i][k] != 0), None)
        if pivot is None:
            return None
        rows[k], rows[pivot] = rows[pivot], rows[k]
        for i in range(k + 1, n):
            factor = rows[i][k] / rows[k][k]
            if factor:
                rows[i] = [a - factor * c for a, c in zip(rows[i], rows[k], strict=True)]
    theta = [Fraction(0)] * n
    for i in reversed(range(n)):
        tail = sum((rows[i][j] * theta[j] for j in range(i + 1, n)), Fraction(0))
        theta[i] = (rows[i][n] - tail) / rows[i][i]
    return theta


def rational(value: Fraction, ctx: NumberSystem) -> Number:
    """A rational in ``ctx``: numerator and denominator exact, one rounding in the division."""
    return dyadic(value.numerator, 0, ctx) / dyadic(value.denominator, 0, ctx)


def kappa64(H: np.ndarray) -> float:
    """kappa_2(H) of a symmetric matrix from float64 eigenvalues (inf when one is 0)."""
    eig = np.abs(np.linalg.eigvalsh(np.asarray(H, dtype=np.float64)))
    return float(eig.max() / eig.min()) if eig.min() > 0 else math.inf


def quadratic_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """theta* = H^-1 b exactly (NaN when the rounded H is singular) and kappa_2(H)."""
    H, b = split(np.asarray(x, dtype=np.float64))
    theta = exact_solve(to_fractions(H), to_fractions(b))
    if theta is None:
        return np.array([ctx.exact(math.nan)] * len(b), dtype=object), ctx.inf
    return np.array([rational(t, ctx) for t in theta], dtype=object), ctx.exact(kappa64(H))


def backward_error(x: np.ndarray, y: np.ndarray) -> float:
    """||b - H theta||_inf / (||H||_inf ||theta||_inf + ||b||_inf), exactly (Rigal-Gaches)."""
    H, b = (to_fractions(part) for part in split(np.asarray(x, dtype=np.float64)))
    theta = to_fractions(np.asarray(y, dtype=np.float64))
    residual = max(
        abs(bi - sum(h * t for h, t in zip(row, theta, strict=True)))
        for row, bi in zip(H, b, strict=True)
    )
    scale = max(sum(abs(h) for h in row) for row in H) * max(abs(t) for t in theta)
    scale += max(abs(bi) for bi in b)
    return float(residual / scale) if scale else math.nan


def solution_magnitude(x: np.ndarray) -> float:
    """max |theta*_i| from a float64 solve (binning only; rows carry the exact output): the
    sampler's own estimate, so that a row's magnitude is the one its cell was chosen by."""
    return float(estimate_quadratics(np.asarray(x, dtype=np.float64)[None])[1][0])


# ---------------------------------------------------------------- inputs


def propose_quadratics(rng, *, n: int, magnitude: float, cond: float, size: int) -> np.ndarray:
    """[H | b] with H = Q diag(lambda) Q^T, lambda log-spaced from 1 down to 1 / cond (both
    ends included), Q a random orthogonal matrix, and b = H theta* for a random theta* with
    max |theta*_i| = magnitude."""
    out = np.empty((size, n, n + 1))
    lam = np.logspace(0.0, -np.log10(cond), n)
    for s in range(size):
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        H = (Q * lam) @ Q.T
        H = (H + H.T) / 2  # symmetric to the last bit
        theta = rng.uniform(-1.0, 1.0, n)
        theta *= magnitude / np.abs(theta).max()
        out[s, :, :n], out[s, :, n] = H, H @ theta
    return out


def estimate_quadratics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = X.shape[1]
    eig = np.abs(np.linalg.eigvalsh(X[:, :, :n]))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = eig.max(axis=1) / eig.min(axis=1)
    try:
        theta = np.linalg.solve(X[:, :, :n], X[:, :, n:])[..., 0]
    except np.linalg.LinAlgError:  # a singular candidate: solve one by one
        theta = np.stack([_solve_or_inf(x[:, :n], x[:, n]) for x in X])
    return kappa, np.abs(theta).max(axis=1)


def _solve_or_inf(H: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(H, b)
    except np.linalg.LinAlgError:
        return np.full(b.shape, math.inf)


def check_quadratic(x: np.ndarray) -> None:
    """A user's input must be n x (n + 1): [H | b]."""
    shape = np.shape(x)
    if len(shape) != 2 or shape[1] != shape[0] + 1:
        raise ValueError(f"needs [H | b], an n x (n + 1) matrix, got shape {shape}")


QUADRATIC = Problem(
    name="quadratic",
    description="argmin 1/2 theta^T H theta - b^T theta by gradient descent, Newton and BFGS",
    reference=quadratic_reference,
    magnitude=solution_magnitude,
    magnitude_name="max|theta*|",
    propose=propose_quadratics,
    estimate=estimate_quadratics,
    variants={name: Variant(name, **spec) for name, spec in OPTIMISERS.items()},
    input_shape=lambda n: (n, n + 1),
    check_input=check_quadratic,
    backward_error=backward_error,
)


# ---------------------------------------------------------------- convergence curves

CURVE_KAPPAS = (10.0, 100.0)
CURVE_ITERATIONS = 1500
"""Convergence curves: condition numbers of the two inputs and iterations drawn (alpha = 0.1
needs about 10 kappa ln(1 / error) steps: kappa = 10 reaches every format's floor)."""


def exact_split(theta: list[Fraction]) -> tuple[np.ndarray, np.ndarray]:
    """theta* as float64 pairs hi + lo (hi correctly rounded, lo the rounded rest), so that an
    iterate's error (theta - hi) - lo is accurate far below float64's own u."""
    hi = np.array([float(t) for t in theta])
    lo = np.array([float(t - Fraction(h)) for t, h in zip(theta, hi.tolist(), strict=True)])
    return hi, lo


def convergence_table(
    *,
    variants: tuple[tuple[str, float], ...],
    formats: tuple[str, ...],
    kappas: tuple[float, ...] = CURVE_KAPPAS,
    n: int = 8,
    magnitude: float = 1.0,
    iterations: int = CURVE_ITERATIONS,
    seed: int = 0,
) -> pd.DataFrame:
    """Error versus iteration of gradient-descent variants: one input per kappa (drawn with
    `propose_quadratics` from ``seed``), rounded to each format, replayed by
    `precision.problems.optimisers.trajectory` for ``iterations`` steps. ``variants`` holds
    (family of `GD_RULES`, learning rate) pairs.

    Returns
    -------
    pandas.DataFrame
        Columns kappa (the target), cond (kappa_2 of the rounded H), format, variant, lr,
        iteration and rel_error = ||theta_k - theta*||_inf / ||theta*||_inf (theta* exact).
        Pure: nothing is written; the caller stores or plots it.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for kappa in kappas:
        x64 = propose_quadratics(rng, n=n, magnitude=magnitude, cond=kappa, size=1)[0]
        for fmt in formats:
            x = cast(x64, fmt)
            H, b = split(np.asarray(x, dtype=np.float64))
            theta = exact_solve(to_fractions(H), to_fractions(b))
            if theta is None:
                continue
            hi, lo = exact_split(theta)
            for name, lr in variants:
                # A learning rate past 2 / lambda_max diverges to inf by design: the curve
                # shows it, numpy need not warn about it.
                with np.errstate(invalid="ignore", over="ignore"):
                    path = trajectory(x, GD_RULES[name].rule(x, lr), iterations=iterations)
                    error = np.abs((path - hi) - lo).max(axis=1) / np.abs(hi).max()
                frames.append(
                    pd.DataFrame(
                        {
                            "kappa": kappa,
                            "cond": kappa64(H),
                            "format": fmt,
                            "variant": name,
                            "lr": lr,
                            "iteration": np.arange(iterations + 1),
                            "rel_error": error,
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def convergence_curves(table: pd.DataFrame) -> pd.DataFrame | None:
    """The `convergence_table` of a study's gradient-descent variants and formats (None when
    the study has none): the rows hold final iterates only, so the curves are computed once
    with the study and stored beside it (``convergence.csv``), and figures and reports draw
    them from there."""
    rows = table[table["problem"] == "quadratic"]
    rows = rows[rows["variant"].isin(list(GD_RULES))]
    descent = tuple(dict.fromkeys(zip(rows["variant"], rows["lr"].astype(float), strict=True)))
    if not descent:
        return None
    return convergence_table(variants=descent, formats=tuple(dict.fromkeys(rows["format"])))
