"""Constrained least squares min ||X w - y||^2 subject to ||w||^2 <= C, through its Lagrangian.

L(w, mu) = ||X w - y||^2 + mu (||w||^2 - C). For mu > 0 the KKT conditions are
stationarity X^T (X w - y) + mu w = 0, primal feasibility ||w||^2 <= C, dual feasibility
mu >= 0 and complementary slackness mu (||w||^2 - C) = 0. So the ridge solution
w(mu) = (X^T X + mu I)^-1 X^T y solves the constrained problem with the active constraint
C = ||w(mu)||^2, and mu is its multiplier: the tutorial's L2-regularisation equivalence.

The problem reuses the ridge problem's inputs, exact reference and in-format solvers
(`precision.problems.least_squares.RIDGE`: [X | y] over [mu, 0, ..., 0], rounded to the format
with the data), with C defined exactly as ||w*||^2 of the rounded data. What it adds are the KKT
residuals of a computed w, evaluated exactly in rational arithmetic (`kkt_residuals`),
each normalised to be dimensionless:

* stationarity ||X^T (X w - y) + mu w||_inf / (||X^T||_inf (||X||_inf ||w||_inf + ||y||_inf)
  + mu ||w||_inf) (a normwise backward error of the stationarity equation);
* feasibility max(0, ||w||^2 - C) / C;
* complementary slackness |mu (||w||^2 - C)| / (mu C) (dual feasibility, mu > 0, holds by
  construction).

A row's backward_error column is the largest of the three. To first order, feasibility and
slackness are 2 |<w*, w - w*>| / ||w*||^2, at most twice the forward error, while stationarity
is the backward error: a backward-stable solver (augmented QR) keeps it near u whatever
kappa, the normal equations near kappa u.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pandas as pd

from precision.core.formats import STUDY_FORMATS, cast
from precision.problems.base import Unsupported
from precision.problems.least_squares import RIDGE, propose_ridge
from precision.problems.quadratic import exact_solve, to_fractions


def _split(x: np.ndarray) -> tuple[list, list, Fraction]:
    rows = to_fractions(np.asarray(x, dtype=np.float64))
    return [r[:-1] for r in rows[:-1]], [r[-1] for r in rows[:-1]], rows[-1][0]


def exact_ridge(X: list, y: list, mu: Fraction) -> list[Fraction] | None:
    """w* = (X^T X + mu I)^-1 X^T y in exact rationals (None: singular)."""
    n = len(X[0])
    gram = [[sum((row[i] * row[j] for row in X), Fraction(0)) for j in range(n)] for i in range(n)]
    for i in range(n):
        gram[i][i] += mu
    rhs = [sum((row[i] * yi for row, yi in zip(X, y, strict=True)), Fraction(0)) for i in range(n)]
    return exact_solve(gram, rhs)


def kkt_residuals(x: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """The normalised KKT residuals (module docstring) of ``w`` for the input ``x``, exactly
    (NaN for a non-finite w or a singular system)."""
    w64 = np.asarray(w, dtype=np.float64)
    X, y, mu = _split(x)
    exact = exact_ridge(X, y, mu)
    if exact is None or not np.isfinite(w64).all():
        return dict.fromkeys(("stationarity", "feasibility", "slackness"), float("nan"))
    C = sum(t * t for t in exact)
    wf = to_fractions(w64)
    residual = [xi - yi for xi, yi in zip(_matvec(X, wf), y, strict=True)]
    gradient = [g + mu * wi for g, wi in zip(_matvec_t(X, residual), wf, strict=True)]
    norm_x = max(sum(abs(v) for v in row) for row in X)
    norm_xt = max(sum(abs(row[j]) for row in X) for j in range(len(wf)))
    w_max, y_max = max(abs(v) for v in wf), max(abs(v) for v in y)
    scale = norm_xt * (norm_x * w_max + y_max) + mu * w_max
    gap = sum(v * v for v in wf) - C
    return {
        "stationarity": float(max(abs(g) for g in gradient) / scale) if scale else float("nan"),
        "feasibility": float(max(gap, Fraction(0)) / C) if C else float("nan"),
        "slackness": float(abs(mu * gap) / (mu * C)) if C and mu else float("nan"),
    }


def _matvec(X: list, v: list) -> list:
    return [sum((a * b for a, b in zip(row, v, strict=True)), Fraction(0)) for row in X]


def _matvec_t(X: list, v: list) -> list:
    return [
        sum((row[j] * vi for row, vi in zip(X, v, strict=True)), Fraction(0))
        for j in range(len(X[0]))
    ]


def kkt_backward_error(x: np.ndarray, w: np.ndarray) -> float:
    """The largest normalised KKT residual (the row's backward_error column)."""
    return max(kkt_residuals(x, w).values())


CONSTRAINED_LS = dataclasses.replace(
    RIDGE,
    name="constrained_ls",
    description="min ||Xw - y||^2 s.t. ||w||^2 <= C via its Lagrangian: KKT residuals per format",
    backward_error=kkt_backward_error,
)


# ---------------------------------------------------------------- worked example


def kkt_example(*, n: int = 6, cond: float = 1e3, magnitude: float = 1e4, seed: int = 3):
    """The KKT residuals of every solver on one input, rounded to each format."""
    rng = np.random.default_rng(seed)
    x64 = propose_ridge(rng, n=n, magnitude=magnitude, cond=cond, size=1)[0]
    rows = []
    for fmt in STUDY_FORMATS:
        x = cast(x64, fmt)
        X, y, mu = _split(x)
        exact = np.array([float(t) for t in exact_ridge(X, y, mu)])
        for name, variant in CONSTRAINED_LS.variants.items():
            try:
                with np.errstate(all="ignore"):
                    computed = np.asarray(variant.compute(x))
            except Unsupported:
                continue  # the library refuses the format: nothing to show
            w = computed.astype(np.float64)
            error = float(np.abs(w - exact).max() / np.abs(exact).max())
            about = {"format": fmt, "variant": name, "compute_dtype": computed.dtype.name}
            rows.append(about | {"rel_error": error} | kkt_residuals(x, w))
    return pd.DataFrame(rows)


def worked_examples() -> list[tuple[str, str, pd.DataFrame]]:
    table = kkt_example()
    text = (
        "One constrained least-squares input (n = 6, kappa_2(X^T X + mu I) about 1e3, "
        "||X||^2 / mu about 1e4), with C = ||w*||^2 exact for the data as rounded to each "
        "format: the normalised KKT residuals of each solver's w (exact rational arithmetic). "
        "Stationarity is the backward error of the Lagrangian's gradient; feasibility and "
        "complementary slackness measure ||w||^2 against C, to first order twice the forward "
        "error along w*. compute_dtype: the precision the solver really returned (numpy's "
        "solve computes bfloat16 input in float64)."
    )
    shown = table.map(lambda v: f"{v:.2g}" if isinstance(v, float) else v)
    return [("KKT residuals of constrained least squares (L2 regularisation)", text, shown)]
