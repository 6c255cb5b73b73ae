"""Dense linear algebra computed in the format of its input, and the shared pieces of the
linear-algebra problems (randsvd inputs, exact references, the Rigal-Gaches backward error).

Why these exist: ``numpy.linalg`` raises ``TypeError`` on float16 and computes every other
dtype in float64 (float32 too: its ``_commonType`` returns double, and the float32 result is
that float64 result rounded); ``scipy.linalg`` upcasts float16 to float32 and bfloat16 to
float64 (measured here, scipy 1.17; ../shared/NUMERICS.md). The
algorithms below are the textbook ones (Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., 2002; "Higham" below) written with numpy elementwise operations, which
keep the dtype and are correctly rounded in every registry format (float16 and bfloat16 are
evaluated in float32 and rounded once, and 24 >= 2p + 2). Reductions never go through
``np.sum``/``np.dot``/``@``, whose float16 and bfloat16 accumulators are wider than the format
(measured here, numpy 2.4 / ml_dtypes 0.6: float16 ``2048 + 1 + 1 + 1`` by ``np.dot`` and by
``@`` gives 2052, the single rounding of 2051, where float16 accumulation gives 2048 left to
right or 2050 pairwise; bfloat16 ``np.dot`` of 256 + 16 ones gives 272, beyond bfloat16
accumulation too, and bfloat16 ``@`` returns float32). Every sum here is
`pairwise_sum` along one axis, every partial sum rounded to the format, so an inner product of
length k carries the bound gamma_{ceil(log2 k)} (Higham eq. 3.6 with pairwise summation).

Where LAPACK scales, so does this code, by exact powers of two: the Householder vector's norm
(`scaled_norm`, as dnrm2/dlarfg) and the one-sided Jacobi SVD (as dgesvj); unscaled, float16
squares of entries below 2**-12 are 0 and a QR of a matrix of norm 1 and kappa 1e3 breaks
down. The normal equations form X^T X as the tutorial writes them, unscaled: their overflow
and underflow at extreme magnitudes are part of what the study measures.
"""

from __future__ import annotations

import math

import numpy as np

from precision.core.formats import get_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.summation import dyadic_parts

# ---------------------------------------------------------------- reductions in the format


def pairwise_sum(x: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Pairwise sum of ``x`` along ``axis`` with every partial sum rounded to x's dtype.

    Adjacent slices are added level by level (an odd level carries its last slice up
    unchanged), so each term passes through at most ceil(log2 k) roundings:
    |s^ - s| <= gamma_{ceil(log2 k)} sum |x_i| (Higham sec. 4.2).
    """
    s = np.asarray(x)
    if axis != 0:  # moveaxis costs more than the additions of a short sum
        s = np.moveaxis(s, axis, 0)
    if s.shape[0] == 0:
        return np.zeros(s.shape[1:], dtype=s.dtype)
    while s.shape[0] > 1:
        half = s.shape[0] // 2
        paired = s[0 : 2 * half : 2] + s[1 : 2 * half : 2]
        s = np.concatenate([paired, s[2 * half :]]) if s.shape[0] % 2 else paired
    return s[0]


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C = A B in the dtype of A and B: products rounded once, sums `pairwise_sum` over k.

    |C^ - C| <= gamma_{ceil(log2 k) + 1} |A| |B| componentwise (Higham eq. 3.13 with pairwise
    summation), k = A.shape[1]. A 1-D ``b`` is a column and gives a 1-D result.
    """
    column = np.ndim(b) == 1
    b2 = b[:, None] if column else b
    products = a[:, :, None] * b2[None, :, :]  # (m, k, n): one rounding each
    c = pairwise_sum(products, axis=1)
    return c[:, 0] if column else c


def dot(x: np.ndarray, y: np.ndarray) -> np.generic:
    """x . y in the format (`pairwise_sum` of the rounded products)."""
    return pairwise_sum(x * y)


# ---------------------------------------------------------------- LU and triangular solves


def lu_factor(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LU factorisation with partial pivoting in the format, P A = L U.

    Right-looking Gaussian elimination (Higham alg. 9.2): the pivot is the largest |a_ik| in
    the column (chosen on the format's own values), multipliers l_ik = a_ik / a_kk, and the
    Schur complement update a_ij - l_ik a_kj with one rounding per operation. Backward error
    (Higham thm 9.3): L^ U^ = P(A + dA), |dA| <= gamma_n |L^| |U^|; with partial pivoting
    |L^| <= 1 and the growth factor rho_n (in practice small) bounds |U^|.

    Returns
    -------
    lu : numpy.ndarray
        L below the diagonal (unit diagonal implied) and U on and above it.
    perm : numpy.ndarray
        Row order: ``a[perm] = L U``.
    """
    lu = np.array(a, copy=True)
    n = lu.shape[0]
    perm = np.arange(n)
    for k in range(n - 1):
        p = k + int(np.argmax(np.abs(lu[k:, k].astype(np.float64))))
        if p != k:
            lu[[k, p]] = lu[[p, k]]
            perm[[k, p]] = perm[[p, k]]
        lu[k + 1 :, k] = lu[k + 1 :, k] / lu[k, k]  # a zero pivot gives inf: a singular matrix
        lu[k + 1 :, k + 1 :] = lu[k + 1 :, k + 1 :] - lu[k + 1 :, k, None] * lu[None, k, k + 1 :]
    return lu, perm


def solve_unit_lower(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with L x = b for the unit lower triangle of ``lower`` (column-oriented forward
    substitution in the format; b may be a matrix of right-hand sides).

    Backward stable (Higham thm 8.5): (L + dL) x^ = b, |dL| <= gamma_n |L|.
    """
    x = np.array(b, copy=True)
    for j in range(x.shape[0] - 1):
        x[j + 1 :] = x[j + 1 :] - _outer(lower[j + 1 :, j], x[j])
    return x


def solve_upper(upper: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with U x = b for the upper triangle of ``upper`` (column-oriented back substitution
    in the format; b may be a matrix). (U + dU) x^ = b, |dU| <= gamma_n |U| (Higham thm 8.5)."""
    x = np.array(b, copy=True)
    for j in range(x.shape[0] - 1, -1, -1):
        x[j] = x[j] / upper[j, j]
        x[:j] = x[:j] - _outer(upper[:j, j], x[j])
    return x


def solve_lower(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with L x = b for the lower triangle of ``lower`` (non-unit diagonal, e.g. Cholesky);
    (L + dL) x^ = b, |dL| <= gamma_n |L| (Higham thm 8.5)."""
    x = np.array(b, copy=True)
    for j in range(x.shape[0]):
        x[j] = x[j] / lower[j, j]
        x[j + 1 :] = x[j + 1 :] - _outer(lower[j + 1 :, j], x[j])
    return x


def _outer(column: np.ndarray, row) -> np.ndarray:
    """column * row for a vector right-hand side (row a scalar) or a matrix one (row a row)."""
    return column * row if np.ndim(row) == 0 else column[:, None] * row[None, :]


def lu_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with A x = b by `lu_factor` and two triangular solves, all in the format.

    Backward error (Higham thm 9.4): (A + dA) x^ = b, |dA| <= gamma_{3n} |L^| |U^|.
    """
    lu, perm = lu_factor(a)
    return solve_upper(lu, solve_unit_lower(lu, b[perm]))


def inverse(a: np.ndarray) -> np.ndarray:
    """A^-1 in the format, by `lu_factor` and the solves of A X = I (Higham sec. 14.3, the
    LAPACK-style method: each column is a backward stable solve, the product X A is not)."""
    lu, perm = lu_factor(a)
    identity = np.eye(a.shape[0], dtype=a.dtype)
    return solve_upper(lu, solve_unit_lower(lu, identity[perm]))


# ---------------------------------------------------------------- Cholesky and QR


def cholesky(m: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor L, M = L L^T, in the format (right-looking, Higham alg. 10.2).

    Backward error (Higham thm 10.3): L^ L^T = M + dM, |dM| <= gamma_{n+1} |L^| |L^T|. A
    pivot <= 0 (M not numerically positive definite in the format) makes sqrt NaN, and the
    NaN reaches the result: the row's outcome is then "nan", the method's breakdown.
    """
    w = np.array(m, copy=True)
    n = w.shape[0]
    for k in range(n):
        w[k, k] = np.sqrt(w[k, k])
        w[k + 1 :, k] = w[k + 1 :, k] / w[k, k]
        w[k + 1 :, k + 1 :] = w[k + 1 :, k + 1 :] - w[k + 1 :, k, None] * w[None, k + 1 :, k]
    return np.tril(w)


def power_of_two_scale(x: np.ndarray) -> np.generic:
    """The power of two 2**floor(log2 max|x|) as a number of x's dtype (1 for a zero x):
    dividing by it is exact (no rounding unless the quotient is subnormal) and brings max|x|
    into [1, 2), so that squares neither overflow nor underflow (LAPACK's dnrm2 scales for the
    same reason)."""
    largest = float(np.max(np.abs(x.astype(np.float64)))) if x.size else 0.0
    if largest == 0 or not math.isfinite(largest):
        return x.dtype.type(1)
    return x.dtype.type(2.0 ** math.floor(math.log2(largest)))


def scaled_norm(x: np.ndarray) -> np.generic:
    """||x||_2 = s sqrt(sum (x_i / s)^2) with s = `power_of_two_scale` (x), in the format:
    the sum of squares is formed on values in [0, 2), so it overflows only when ||x|| itself
    does and keeps its accuracy for tiny x (float16 squares of 1e-4 are 0 unscaled)."""
    s = power_of_two_scale(x)
    y = x / s
    return s * np.sqrt(dot(y, y))


def householder_vector(x: np.ndarray) -> tuple[np.ndarray, np.generic, np.generic]:
    """LAPACK's dlarfg in the format: H = I - tau v v^T with v_1 = 1 maps x to (beta, 0, ..., 0).

    beta = -sign(x_1) ||x||_2 (the sign avoids cancellation in x_1 - beta),
    tau = (beta - x_1) / beta, v_{2:} = x_{2:} / (x_1 - beta). Unlike beta = 2 / (v^T v) with
    v = x - beta e_1, nothing is squared but inside `scaled_norm`. A zero x gives tau = 0
    (H = I).
    """
    norm = scaled_norm(x)
    v = np.zeros_like(x)
    v[0] = 1
    if norm == 0:
        return v, x.dtype.type(0), x[0]
    beta = -norm if x[0] >= 0 else norm
    v[1:] = x[1:] / (x[0] - beta)
    return v, (beta - x[0]) / beta, beta


def householder_qr(a: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.generic]]]:
    """Householder QR of an m x n matrix (m >= n) in the format: A = Q R.

    Column k is reflected by `householder_vector` (LAPACK dgeqr2's dlarfg) and the reflector
    is applied to the trailing columns as A - (tau v)(v^T A), inner products by `matmul`
    (pairwise in-format sums). Backward error (Higham thm 19.4): Q (R^ + dR) = A with
    ||dR e_j|| <= gamma~_{mn} ||a_j|| column by column.

    Returns
    -------
    r : numpy.ndarray
        The n x n upper triangular factor.
    reflectors : list of (v, tau)
        Apply Q^T with `apply_qt`.
    """
    r = np.array(a, copy=True)
    m, n = r.shape
    reflectors = []
    for k in range(n):
        v, tau, beta = householder_vector(r[k:, k])
        w = matmul(v[None, :], r[k:, k + 1 :])[0]
        r[k:, k + 1 :] = r[k:, k + 1 :] - (tau * v)[:, None] * w[None, :]
        r[k, k] = beta
        r[k + 1 :, k] = 0
        reflectors.append((v, tau))
    return np.triu(r[:n]), reflectors


def apply_qt(reflectors, y: np.ndarray) -> np.ndarray:
    """Q^T y in the format from `householder_qr`'s reflectors (each one backward stable)."""
    z = np.array(y, copy=True)
    for k, (v, tau) in enumerate(reflectors):
        z[k:] = z[k:] - (tau * dot(v, z[k:])) * v
    return z


def round_robin(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The n - 1 rounds (n even; an odd n gets a dummy column) of disjoint column pairs that
    together meet every pair once (the circle method; Brent & Luk's parallel Jacobi order)."""
    players = list(range(n + n % 2))
    rounds = []
    for _ in range(len(players) - 1):
        half = len(players) // 2
        pairs = [(players[i], players[-1 - i]) for i in range(half)]
        pairs = [(min(p), max(p)) for p in pairs if max(p) < n]
        rounds.append((np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])))
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def jacobi_singular_values(a: np.ndarray, *, max_sweeps: int = 30) -> tuple[np.ndarray, int, bool]:
    """Singular values of A by one-sided Jacobi (Hestenes 1958) in the format.

    Pairs of columns (a_i, a_j) are rotated until orthogonal: with alpha = ||a_i||^2,
    beta = ||a_j||^2, gamma = a_i . a_j, the rotation tangent is
    t = sign((beta - alpha) gamma) 2|gamma| / (|beta - alpha| + hypot(beta - alpha, 2 gamma)),
    the usual t = sign(zeta) / (|zeta| + sqrt(1 + zeta^2)), zeta = (beta - alpha) / (2 gamma),
    multiplied through by 2|gamma| so that nothing is squared beyond the column norms (zeta^2
    overflows float16 long before the data do). A pair is skipped once
    |gamma| <= sqrt(m) u sqrt(alpha beta) (LAPACK dgesvj's threshold); the sweeps stop when a
    whole sweep skips every pair, and give up (``converged`` False) after max_sweeps or after
    STALLED_SWEEPS sweeps in a row that do not lower the off-diagonal mass sum cos^2 of the
    rotated pairs. Pairs are taken in round-robin order, each round a set of
    disjoint pairs rotated at once. Accuracy: each rotation is backward stable, so the computed
    sigma_i are those of A + dA with ||dA|| = O(u) ||A|| (Demmel & Veselic 1992): absolute error
    O(u) sigma_max on every sigma_i, hence a relative error about kappa u on sigma_min.

    Returns
    -------
    sigma : numpy.ndarray
        The column norms at the end (unsorted), in the format.
    sweeps : int
    converged : bool
    """
    m, n = a.shape
    # An exact power-of-two scaling (kappa is scale-invariant) puts the largest squared column
    # norm near max / 4: squares neither overflow nor fall into float16's subnormals.
    top = a.dtype.type(2.0 ** math.floor(math.log2(math.sqrt(_format_max(a.dtype) / (16 * m)))))
    scale = power_of_two_scale(a)
    w = (a / scale) * top
    tol = _format_unit(w.dtype) * w.dtype.type(math.sqrt(m))
    rounds = round_robin(n)
    # The columns are kept as the rows of a C-ordered copy (n x m): a round gathers and
    # scatters whole contiguous rows. Layout changes no value: every operation below is
    # elementwise or a `pairwise_sum` with the same tree, so the roundings (and the IEEE flags
    # they raise) are those of the column-wise formulation.
    columns = np.ascontiguousarray(w.T)
    sweep, converged, best, stalled = 0, False, math.inf, 0
    converged = n < 2  # one column: its norm is its singular value, nothing to rotate
    while sweep < max_sweeps and not converged and stalled < STALLED_SWEEPS:
        sweep += 1
        off = sum(_rotate_pairs(columns, i, j, tol) for i, j in rounds)
        converged = off == 0
        # Jacobi's off-diagonal mass sum cos^2 falls sweep after sweep (ultimately
        # quadratically); sweeps that no longer lower it are rounding noise going round in
        # circles (float16 near 1/u).
        stalled = 0 if off < best else stalled + 1
        best = min(best, off)
    # Undo the scaling (exact: powers of two) on the column norms.
    return np.sqrt(_row_sums(columns * columns)) / top * scale, sweep, converged


def _format_unit(dtype: np.dtype) -> np.generic:
    """The unit roundoff u = 2**-p of a float dtype, as a number of that dtype."""
    return dtype.type(get_format(dtype).u)


def _format_max(dtype: np.dtype) -> float:
    return float(get_format(dtype).max)


STALLED_SWEEPS = 4
"""Sweeps without progress after which `jacobi_singular_values` gives up (no convergence)."""


def _row_sums(x: np.ndarray) -> np.ndarray:
    """`pairwise_sum` along the last axis of a 2-D array, every partial sum rounded to x's
    dtype: the same tree (adjacent pairs level by level, an odd level carrying its last term
    up unchanged), hence the same additions and the same sums, bit for bit, as
    ``pairwise_sum(x.T, axis=0)``; written for the rows of `jacobi_singular_values`, where
    ``pairwise_sum``'s moveaxis and concatenation cost more than the additions at n = 50."""
    s = x
    while s.shape[-1] > 1:
        half = s.shape[-1] // 2
        paired = s[:, 0 : 2 * half : 2] + s[:, 1 : 2 * half : 2]
        if s.shape[-1] % 2:
            # The odd last term rides up unchanged (no addition: no rounding, no -0 + 0).
            paired = np.concatenate([paired, s[:, 2 * half :]], axis=1)
        s = paired
    return s[:, 0]


def _pairs_to_update(rotate: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray | None:
    """The pairs whose update can change a column: the rotated ones and those with a column
    that is not finite; None when that is every pair (update them all).

    A pair left alone has t = 0, so c = 1 / sqrt(1 + 0) = 1 and s = 1 * 0 = 0 exactly, and its
    "update" is a_i <- 1 a_i - 0 a_j, a_j <- 0 a_i + 1 a_j: every operation exact on finite
    columns (no rounding, hence no IEEE flag), giving the columns back up to the sign of a
    zero entry, which no later value, comparison or flag depends on (squares and |gamma| are
    signless, a zero gamma never rotates) and the singular values (square roots of sums of
    squares) cannot show. Its alpha and beta are finite exactly when both columns are (a
    square of inf or NaN is inf or NaN, and a sum of non-negative terms with one of them
    stays so); an infinite or NaN column keeps the full update, where 0 * inf = NaN and the
    invalid flag are the computation's own. Skipping the rest is what makes a float16 sweep
    cheaper: numpy's float16 arithmetic costs about 50 ns an element here."""
    moved = rotate | ~(np.isfinite(alpha) & np.isfinite(beta))
    return None if moved.all() else np.flatnonzero(moved)


def _rotate_pairs(columns: np.ndarray, i: np.ndarray, j: np.ndarray, tol: np.generic) -> float:
    """One round of `jacobi_singular_values`: rotate the pairs (i_k, j_k) of ``columns`` (the
    matrix's columns as rows, n x m, changed in place) that are not yet orthogonal to working
    accuracy; the sum of cos^2 = gamma^2 / (alpha beta) over the rotated pairs (0: none was
    rotated).

    alpha_k, beta_k and gamma_k are the `_row_sums` of the products a_i * a_i, a_j * a_j and
    a_i * a_j, all 3h of them in one pass (each is a row of its own: stacking them changes no
    operation, only how many numpy calls carry them)."""
    wi, wj = columns[i], columns[j]
    h = len(i)
    sums = _row_sums(np.concatenate([wi * wi, wj * wj, wi * wj]))
    alpha, beta, gamma = sums[:h], sums[h : 2 * h], sums[2 * h :]
    rotate = np.abs(gamma) > tol * np.sqrt(alpha) * np.sqrt(beta)
    if not rotate.any():
        return 0.0
    one = columns.dtype.type(1)
    diff = beta - alpha
    sign = np.where((diff >= 0) == (gamma >= 0), one, -one)
    two_gamma = np.abs(gamma + gamma)
    # Pairs left alone get t = 0; dividing only where rotating avoids 0 / 0 for them.
    t = np.zeros_like(gamma)
    np.divide(sign * two_gamma, np.abs(diff) + np.hypot(diff, two_gamma), out=t, where=rotate)
    c = (one / np.sqrt(one + t * t))[:, None]
    s = c * t[:, None]
    moved = _pairs_to_update(rotate, alpha, beta)
    if moved is not None:  # update only those (see `_pairs_to_update`)
        c, s, wi, wj, i, j = c[moved], s[moved], wi[moved], wj[moved], i[moved], j[moved]
    columns[i] = c * wi - s * wj
    columns[j] = s * wi + c * wj
    with np.errstate(all="ignore"):  # a progress measure only: float64, never the result
        sums64 = sums.astype(np.float64)
        cosines = np.abs(sums64[2 * h :]) / (np.sqrt(sums64[:h]) * np.sqrt(sums64[h : 2 * h]))
    return float(np.sum(np.where(rotate, cosines, 0.0) ** 2))


# ---------------------------------------------------------------- inputs: randsvd


def random_orthonormal(rng: np.random.Generator, size: int, m: int, n: int) -> np.ndarray:
    """``size`` Haar-distributed m x n matrices with orthonormal columns (m >= n): the Q of the
    reduced QR of Gaussian matrices with the signs of R's diagonal moved into Q (Stewart 1980).
    The reduced QR costs m n^2, not the m^3 of a full m x m orthogonal factor."""
    q, r = np.linalg.qr(rng.standard_normal((size, m, n)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def randsvd(
    rng: np.random.Generator, *, m: int, n: int, cond: np.ndarray, norm: np.ndarray
) -> np.ndarray:
    """Matrices U diag(sigma) V^T, shape (size, m, n), with sigma geometric from ``norm`` down to
    ``norm / cond`` (Higham's randsvd, mode 3): ||A||_2 = norm and kappa_2(A) = cond, up to
    float64 rounding. ``cond`` and ``norm`` are arrays of length size."""
    size = len(cond)
    steps = np.arange(n) / max(n - 1, 1)
    sigma = norm[:, None] * cond[:, None] ** -steps[None, :]
    u = random_orthonormal(rng, size, m, n)
    v = random_orthonormal(rng, size, n, n)
    return (u * sigma[:, None, :]) @ np.swapaxes(v, 1, 2)


def random_unit_vectors(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """``size`` random directions in R^n, each of 2-norm 1."""
    z = rng.standard_normal((size, n))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def spectral_estimates(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa_2, ||A||_2) of a batch of matrices in float64 (singular values by LAPACK); only to
    choose candidates, rows carry the certified values."""
    s = np.linalg.svd(a, compute_uv=False)
    with np.errstate(divide="ignore"):
        return s[:, 0] / s[:, -1], s[:, 0]


def spectral_norm(a: np.ndarray) -> float:
    """||A||_2 of one matrix in float64 (inf when an entry is not finite: an input that
    overflowed the format has no finite norm)."""
    a64 = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a64).all():
        return math.inf
    return float(np.linalg.norm(a64, 2))


# ---------------------------------------------------------------- exact pieces


def exact_matrix(a: np.ndarray, ctx: NumberSystem = MPMATH) -> list[list[Number]]:
    """The float matrix ``a`` as rows of exact ``ctx`` numbers."""
    values = ctx.exact_list(a)
    cols = a.shape[1]
    return [values[i : i + cols] for i in range(0, len(values), cols)]


def transpose(rows: list[list[Number]]) -> list[list[Number]]:
    return [list(col) for col in zip(*rows, strict=True)]


def column(values: list[Number]) -> list[list[Number]]:
    return [[v] for v in values]


def two_norm(values: list[Number], ctx: NumberSystem) -> Number:
    """||v||_2 in ``ctx``."""
    return ctx.sqrt(ctx.fsum(v * v for v in values))


def spectral_condition(
    a_rows: list[list[Number]], ctx: NumberSystem, *, tight: bool = False
) -> tuple[Number, Number]:
    """(kappa_2(A), ||A||_2) = (sigma_max / sigma_min, sigma_max) of an m x n matrix, m >= n.

    The extreme singular values come from ``ctx.extreme_singular_values``: in Arb, enclosures
    built from float64 singular vectors and a float64 inverse, checked in ball arithmetic
    (Weyl's and Ostrowski's theorems, a Newton-refined left inverse; see
    `precision.core.arb_singular_values.arb_extreme_singular_values`), to a relative accuracy
    of 2**-30 when they only feed a condition number, to the working precision with ``tight``
    (the value is an output, as in `precision.problems.matrix_condition`). For a symmetric positive
    definite A (the ridge matrix X^T X + lambda I) the singular values are the eigenvalues, and
    kappa_2(A) = lambda_max / lambda_min.

    Raises
    ------
    ZeroDivisionError
        When A is exactly rank deficient (sigma_min exactly 0): kappa_2 is infinite and a
        system with A has no unique solution; the engine reports the input as undefined.
    """
    kappa, sigma_max, _ = spectral_extremes(a_rows, ctx, tight=tight)
    return kappa, sigma_max


def spectral_extremes(
    a_rows: list[list[Number]], ctx: NumberSystem, *, tight: bool = False
) -> tuple[Number, Number, Number]:
    """(kappa_2(A), sigma_max, sigma_min): `spectral_condition` with sigma_min as well (a
    solve bounds its error by ||r|| / sigma_min: `NumberSystem.solve`).

    Raises
    ------
    ZeroDivisionError
        When A is exactly rank deficient (see `spectral_condition`).
    """
    sigma_max, sigma_min = ctx.extreme_singular_values(a_rows, tight=tight)
    if sigma_min == 0:  # exactly 0 (a ball that merely contains 0 compares False)
        raise ZeroDivisionError("the matrix is exactly rank deficient")
    return sigma_max / sigma_min, sigma_max, sigma_min


def _integer_matrix(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Integers M (object array of Python ints) and e with x = M 2**e exactly."""
    x = np.asarray(x)
    mantissa, exponent = dyadic_parts(x)
    base = int(exponent.min()) if exponent.size else 0
    # Python integers (object arrays) hold the shifted mantissas of any exponent range exactly.
    ints = mantissa.astype(object) << (exponent - base).astype(object)
    return ints.reshape(x.shape), base


def rigal_gaches(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    """Normwise backward error of an approximate solution x^ of A x = b, exactly.

    eta(x^) = ||b - A x^|| / (||A|| ||x^|| + ||b||) in the infinity norm (Rigal & Gaches 1967;
    Higham thm 7.1: the smallest eps with (A + dA) x^ = b + db, ||dA|| <= eps ||A||,
    ||db|| <= eps ||b||). Evaluated exactly on the floats' integers and rounded once to
    float64, so it is exact whatever the format of the solution.

    Every quantity is an integer times a power of two (A = M_A 2**e_A, b = M_b 2**e_b,
    x^ = M_x 2**e_x), so with E = min(e_A + e_x, e_b) the residual and the denominator are
    the integers R 2**E and D 2**E, and eta = R / D: Python's integer true division rounds
    that quotient once, correctly (as ``float(Fraction(R, D))`` does; the rational is the
    same), without a Fraction per term.
    """
    ma, ea = _integer_matrix(a)
    mb, eb = _integer_matrix(b)
    mx, ex = _integer_matrix(x)
    base = min(ea + ex, eb)
    shift_ax, shift_b = ea + ex - base, eb - base  # both >= 0: exact left shifts
    # Object arrays of Python integers: every sum and product below is exact.
    ax = ma.dot(mx) << shift_ax
    bs = mb << shift_b
    residual = int(np.abs(bs - ax).max())
    norm_a = int(np.abs(ma).sum(axis=1).max())
    norm_x = int(np.abs(mx).max())
    denominator = ((norm_a * norm_x) << shift_ax) + int(np.abs(bs).max())
    return residual / denominator if denominator else (0.0 if residual == 0 else math.inf)


LINEAR_ALGEBRA_PROBLEMS = (
    "linear_system",
    "matrix_condition",
    "least_squares",
    "least_squares_residual",
    "ridge",
)
"""The problems whose line plots (`precision.report.plots.lines_versus_condition`) carry
`reference_lines`."""


def reference_lines(n: int, kappa: float, fmt) -> dict[str, float]:
    """The first-order orders of growth of the linear-algebra studies, relative error in units
    of u: a backward stable solver (LU with pivoting, QR, SVD) loses kappa u, the normal
    equations kappa^2 u (Higham secs. 7.1, 20.4; constants and factors of n omitted). A line
    stops (NaN) past a relative error of 10, where every digit is gone and the errors
    saturate."""
    return {
        label: value if value * fmt.u <= 10 else math.nan
        for label, value in (("kappa u", kappa), ("kappa^2 u", kappa**2))
    }
