"""The matrix condition number kappa_2(A) = sigma_max / sigma_min, estimated in each format.

Input: a square matrix A (n x n), rounded to the format. Output: kappa_2 of the rounded A.
Its relative condition number is 1 + kappa_2(A): a perturbation with ||dA||_2 <= eps ||A||_2
moves every singular value by at most eps sigma_max (Weyl), so sigma_max changes by a relative
eps and sigma_min by a relative eps kappa, and both bounds are attained. A backward stable SVD
therefore gets kappa with a relative error of about kappa u, and once kappa nears 1/u the
computed sigma_min is rounding noise of size u sigma_max: the estimate saturates near 1/u
(or is infinite where sigma_min comes out 0).

Variants: ``jacobi_svd`` (one-sided Jacobi in the format,
`precision.problems.linalg.jacobi_singular_values`; iterative: it reports its sweeps and
"no_convergence"), and numpy's ``numpy_svd`` (sigma from ``numpy.linalg.svd``) and
``numpy_cond`` (``numpy.linalg.cond``), which compute in float64 for every input dtype
(numpy.linalg's ``_commonType``) and refuse float16; their rows return float64.
"""

from __future__ import annotations

import numpy as np

from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems import linalg
from precision.problems.base import Computed, Problem, Variant, square_matrix
from precision.problems.linear_systems import float64_accumulator, in_numpy_linalg_precision


def condition_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """kappa_2(A) = sigma_max / sigma_min, an output, so computed to the working precision
    (``tight``; `linalg.spectral_condition`), and its condition number 1 + kappa_2(A)
    (module docstring). kappa_2 of an exactly singular A is infinite."""
    try:
        kappa, _ = linalg.spectral_condition(linalg.exact_matrix(x, ctx), ctx, tight=True)
    except ZeroDivisionError:
        return np.array([ctx.inf], dtype=object), ctx.inf
    return np.array([kappa], dtype=object), 1 + kappa


def jacobi_svd(x: np.ndarray) -> Computed:
    """sigma_max / sigma_min from one-sided Jacobi singular values, all in the format."""
    sigma, sweeps, converged = linalg.jacobi_singular_values(x)
    return Computed((sigma.max() / sigma.min()).reshape(1), iterations=sweeps, converged=converged)


def numpy_svd(x: np.ndarray) -> np.ndarray:
    """sigma_max / sigma_min from ``numpy.linalg.svd(A, compute_uv=False)`` (float64; NaN
    where the SVD does not converge)."""
    try:
        sigma = np.linalg.svd(in_numpy_linalg_precision(x), compute_uv=False)
    except np.linalg.LinAlgError:
        return np.full(1, np.nan)
    return (sigma[0] / sigma[-1]).reshape(1)


def numpy_cond(x: np.ndarray) -> np.ndarray:
    """``numpy.linalg.cond(A)`` (2-norm: the same SVD ratio, float64; NaN where the SVD does
    not converge)."""
    try:
        return np.asarray(np.linalg.cond(in_numpy_linalg_precision(x))).reshape(1)
    except np.linalg.LinAlgError:
        return np.full(1, np.nan)


def _one_plus_kappa(kappa: np.ndarray, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 1 + kappa, norm


MATRIX_CONDITION = Problem(
    name="matrix_condition",
    description="kappa_2(A) = sigma_max / sigma_min: one-sided Jacobi in the format; numpy",
    reference=condition_reference,
    magnitude=linalg.spectral_norm,
    magnitude_name="||A||_2",
    propose=lambda rng, *, n, magnitude, cond, size: linalg.randsvd(
        rng, m=n, n=n, cond=np.full(size, cond), norm=np.full(size, magnitude)
    ),
    estimate=lambda X: _one_plus_kappa(*linalg.spectral_estimates(X)),
    variants={
        "jacobi_svd": Variant("jacobi_svd", jacobi_svd),
        "numpy_svd": Variant("numpy_svd", numpy_svd, accumulator=float64_accumulator),
        "numpy_cond": Variant("numpy_cond", numpy_cond, accumulator=float64_accumulator),
    },
    input_shape=lambda n: (n, n),
    check_input=square_matrix,
)
