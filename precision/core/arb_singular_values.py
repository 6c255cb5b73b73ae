"""Certified extreme singular values in Arb (``arb_extreme_singular_values``), for the
references' condition numbers (`precision.core.numbers`).

Rigorous balls around sigma_max and sigma_min from float64 approximations that Arb checks with a
few matrix products, to `ENCLOSURE_ACCURACY` where the values only feed a condition number;
certified eigenvalues of A^T A cost twenty times the solve at n = 200. From
`FLOAT64_NORMS_MIN_N` columns on, the well-conditioned norms are bounded from float64 products
with a priori rounding-error bounds (``float64_largest_singular_value``) instead of Arb's.

Split from `precision.core.arb_linalg` (working precision, symmetric eigenvalues, exact rational
systems, refined solves), whose helpers it uses.
"""

from __future__ import annotations

import functools
import math

import flint
import numpy as np

from precision.core.arb_linalg import (
    _TINY,
    _arb_rationals,
    _exact_mat,
    _frobenius_upper,
    _midpoints,
    arb_symmetric_eigenvalues,
    arb_workprec,
    exactly_rank_deficient,
    gradual_underflow,
)

# ------------------------------------------------ extreme singular values in Arb, from float64

ENCLOSURE_ACCURACY = 2.0**-30
"""Relative radius up to which `ArbNumbers.extreme_singular_values` accepts its cheap
enclosures of values that only feed a condition number (the engine asks 2**-20 of the
condition number as a whole: kappa = sigma_max / sigma_min adds the two radii, Wedin's least
squares number about triples them); a wider one takes the expensive path."""

NEWTON_STEPS = 6
"""Most refinements X <- X + (I - X A) X of an approximate left inverse: each squares the
residual until it reaches n kappa 2**-prec, so from float64 (residual about n kappa 2**-53)
two or three reach any accuracy the working precision allows."""


# ------------------------------------------ float64 products with rigorous error bounds

FLOAT64_NORMS_MIN_N = 100
"""Fewest columns from which `arb_extreme_singular_values` bounds the well-conditioned norms
(sigma_max of B and of its approximate inverse) from float64 products with a priori error
bounds (`float64_largest_singular_value`, one BLAS product each, about 100 times faster than
Arb's at n = 200) instead of Arb's products. Smaller matrices keep Arb's products: their
condition numbers (of the n = 10 and 50 study tables) stay bit for bit what they were; both
enclosures are rigorous and far inside ENCLOSURE_ACCURACY."""

_UNIT = 2.0**-53


class _NoFloats:
    """Marks a call in float64-norm mode without a float64 copy of the approximate inverse."""


_NO_FLOATS = _NoFloats()


def _gamma(k: int) -> flint.arb:
    """gamma_k = k u / (1 - k u), u = 2**-53, as a ball (Higham, eq. 3.8)."""
    ku = flint.arb(k) * _UNIT
    return ku / (1 - ku)


def _underflow(k: int) -> flint.arb:
    """k 2**-1074: what gradual underflow can add to the error of k float64 operations
    (each product loses at most half a subnormal spacing; subnormal sums are exact)."""
    return flint.arb(k) * _TINY


def frobenius_upper_float64(m: np.ndarray) -> flint.arb:
    """An upper bound of ||M||_F of a float64 array, from its float64 sum of squares s.

    Every term is >= 0, so in any order of summation, with or without fused multiply-adds,
    |s - sum m_ij^2| <= gamma_N sum m_ij^2 + N 2**-1074 (N terms; Higham thm 3.1 with
    underflow), hence sum m_ij^2 <= (s + N 2**-1074) / (1 - gamma_N).
    """
    v = np.ascontiguousarray(m, dtype=np.float64).ravel()
    total = float(np.dot(v, v))
    if not math.isfinite(total):
        return flint.arb("nan")
    count = v.size + 1
    return ((flint.arb(total) + _underflow(count)) / (1 - _gamma(count))).sqrt().upper()


def float64_largest_singular_value(c: np.ndarray, q: np.ndarray) -> tuple[flint.arb, flint.arb]:
    """A ball containing sigma_max(C) of an exact float64 matrix C (m x n, max |c_ij| in
    [1/2, 1)), and g >= ||Q^T Q - I||_F, from float64 BLAS products with a priori bounds.

    The theorems of `_largest_singular_value` (Rayleigh lower bound T_00 / G_00; Ostrowski
    and Weyl: lambda_max <= (max_i T_ii + ||T - diag T||_F) / (1 - ||G - I||_F)) applied to
    T = (C Q)^T (C Q) and G = Q^T Q, which float64 forms as T~, G~. An inner product of
    length k computed in float64 (any order of summation, fused multiply-adds or not, round
    to nearest, gradual underflow) errs by at most gamma_k |x|^T |y| + k 2**-1074 (Higham,
    *Accuracy and Stability of Numerical Algorithms*, 2nd ed., sec. 3.1 and eq. 3.13). With
    ||A B||_F <= ||A||_F ||B||_F that gives, for P~ = fl(C Q),
    ||P~ - C Q||_F <= dP = gamma_n || |C| |Q| ||_F + m n^2 2**-1074, and
    ||T~ - T||_F <= dT = gamma_m ||P~||_F^2 + 2 ||P~||_F dP + dP^2 + m n^2 2**-1074 (the
    rounding of P~^T P~, then P~ against C Q), ||G~ - G||_F <= gamma_n ||Q||_F^2 + n^3 2**-1074;
    dP is formed entrywise from fl(|C| |Q|), sqrt(n) times tighter than from ||C||_F ||Q||_F.
    Every entry of T lies within dT of T~'s, and ||T - diag T||_F <= ||T~ - diag T~||_F + dT.
    The width is about 2 n^2 u relative (measured 1e-11 at n = 200): far inside
    ENCLOSURE_ACCURACY, wider than Arb's (which is why the output path keeps Arb's).
    Assumes IEEE binary64 arithmetic in BLAS and numpy (`gradual_underflow` is
    checked by the caller).
    """
    m, n = c.shape
    p = c @ q
    t = p.T @ p
    gram = q.T @ q
    if not (np.isfinite(t).all() and np.isfinite(gram).all()):
        return flint.arb("nan"), flint.arb("nan")
    q_norm = frobenius_upper_float64(q)
    p_norm = frobenius_upper_float64(p)
    # |P~ - C Q| <= gamma_n |C| |Q| entrywise; fl(|C| |Q|) >= (1 - gamma_n) |C| |Q| less
    # the underflow of its own n terms, so its Frobenius norm bounds the error's.
    magnitudes = frobenius_upper_float64(np.abs(c) @ np.abs(q)) + _underflow(m * n * n)
    dp = _gamma(n) * magnitudes / (1 - _gamma(n)) + _underflow(m * n * n)
    dt = _gamma(m) * p_norm * p_norm + 2 * p_norm * dp + dp * dp + _underflow(m * n * n)
    dg = _gamma(n) * q_norm * q_norm + _underflow(n * n * n)
    # G~ - I: a diagonal entry near 1 loses nothing (Sterbenz); in general the subtraction
    # errs by at most u relative, hence the division by 1 - u.
    shifted = gram.copy()
    np.fill_diagonal(shifted, np.diagonal(gram) - 1.0)
    g = (frobenius_upper_float64(shifted) / (1 - flint.arb(_UNIT)) + dg).upper()
    if not g < 1:  # Q is not certainly nonsingular: no bound
        return flint.arb("nan"), g
    off = t.copy()
    np.fill_diagonal(off, 0.0)
    top = flint.arb(float(np.max(np.diagonal(t)))) + dt
    upper = ((top + frobenius_upper_float64(off) + dt) / (1 - g)).upper()
    lower = ((flint.arb(float(t[0, 0])) - dt) / (flint.arb(float(gram[0, 0])) + dg)).lower()
    return _sqrt_interval(lower, upper), g


def _norm_from_float64(
    x: flint.arb_mat, exact: np.ndarray | None
) -> tuple[flint.arb, flint.arb_mat] | None:
    """(a ball containing ||X||_2, X's approximate top left singular vector as an exact
    column) for the ball matrix X (n x m), by `float64_largest_singular_value` on X^T
    rounded to float64 and scaled by a power of two, plus delta >= ||X - X~||_F for every
    X in the balls (Weyl: sigma_max moves by at most the 2-norm of the perturbation).
    ``exact``: X as float64 when it is that (delta is then 0 unless scaling underflows).
    None when an entry is not finite."""
    mids = exact if exact is not None else _midpoints(x)
    largest = float(np.max(np.abs(mids))) if np.isfinite(mids).all() else math.inf
    if not 0 < largest < math.inf:
        return None
    shift = math.frexp(largest)[1]
    c = np.ldexp(mids.T, -shift)
    if exact is not None and np.array_equal(np.ldexp(c, shift), mids.T):
        delta = flint.arb(0)
    else:
        delta = _frobenius_upper(x - _exact_mat(np.ldexp(c, shift).T))
    q = np.linalg.svd(mids, full_matrices=False)[0]
    sigma, _ = float64_largest_singular_value(c, q)
    if not (sigma.is_finite() and delta.is_finite()):
        return None
    scale = flint.arb(2) ** shift
    return sigma * scale + (-delta).union(delta), _exact_mat(q[:, :1])


# ---------------------------------------------- the enclosure: Arb checks float64's answers


def arb_extreme_singular_values(b: flint.arb_mat, *, tight: bool) -> tuple[flint.arb, flint.arb]:
    """Balls containing sigma_max and sigma_min of every matrix in the ball matrix B.

    float64 (LAPACK's SVD) supplies approximate singular vectors and an approximate inverse;
    Arb proves how good they are with six to ten products of n x n ball matrices, where the
    certified eigenvalues of B^T B (`ArbNumbers.symmetric_eigenvalues`) take twenty times
    the solve at n = 200. With M = B^T B, lambda_max(M) = sigma_max^2 and
    lambda_min(M) = sigma_min^2:

    * sigma_max (`_largest_singular_value`): with the float64 right singular vectors Q,
      T = Q^T M Q and G = Q^T Q computed in Arb, the Rayleigh quotient gives
      lambda_max >= T_00 / G_00, and Ostrowski's and Weyl's theorems give
      lambda_max <= (max_i T_ii + ||T - diag T||_F) / (1 - ||G - I||_F). Both
      off-diagonal parts are float64 rounding: the width is O(n 2**-53) relative for any
      spectrum, repeated singular values included.
    * sigma_min = 1 / ||B^+||_2 (`_smallest_singular_value`): from the float64 pseudo-inverse
      X, refined by Newton's step X + (I - X B) X in Arb where float64 is not accurate
      enough (kappa beyond about 2**22 / n); r >= ||I - X B||_F < 1/2 makes
      Y = (I - R)^-1 X an exact left inverse, so sigma_min >= 1 / ||Y||_2 >= (1 - r) / ||X||_2
      (or, after the step, to second order in r), and ||X||_2 is bounded as sigma_max is;
      the Rayleigh quotient ||B z|| / ||z|| of z = X X^T y (y: X's top left singular vector)
      bounds sigma_min from above.

    The expensive path, where float64 cannot invert B (kappa beyond about 2**50) or the
    result is too wide (`_settled`): an exact rank test, then an approximate inverse from
    Arb at higher precision (`_smallest_singular_value_expensive`). An output (``tight``)
    gets second-order bounds where the extreme singular values are separated
    (`_second_order_bound`), log2(n kappa) more bits for the residual R = I - X B (which
    loses them, as the certified eigenvalues do), and, still too wide (repeated singular
    values), the certified eigenvalues of B^T B, keeping the narrower ball.

    Parameters
    ----------
    b : flint.arb_mat
        m x n, m >= n; the bounds hold for every matrix inside its balls.
    tight : bool, keyword-only
        See `NumberSystem.extreme_singular_values`.

    Returns
    -------
    sigma_max, sigma_min : flint.arb
        sigma_min is exactly 0 for an exact, exactly rank-deficient B; a NaN ball where no
        bound settles (the engine then climbs to the next precision).

    Notes
    -----
    Sources: Weyl's inequalities and Ostrowski's theorem (Horn & Johnson, *Matrix Analysis*,
    2nd ed., thms 4.3.1 and 4.5.9); verified bounds of this kind for singular values (Rump,
    "Verified bounds for singular values, in particular for the spectral norm of a matrix and
    its inverse", BIT 51, 2011); Newton-Schulz refinement of an approximate inverse (Schulz
    1933). Everything runs on B scaled by a power of two (exact) so that float64 neither
    overflows nor underflows on its largest entries; the results are scaled back exactly.
    """
    m, n = b.nrows(), b.ncols()
    if m < n:
        raise ValueError(f"extreme_singular_values: needs m >= n, got {m} x {n}")
    nan = flint.arb("nan")
    scaled = _scaled(b)
    if scaled is None:  # every midpoint is 0, or an entry is not finite
        if all(v.is_exact() and v.is_zero() for v in b.entries()):
            return flint.arb(0), flint.arb(0)
        return nan, nan
    shift, mids = scaled
    scale = flint.arb(2) ** shift  # exact: dividing by it only moves exponents
    bs = b / scale
    if n == 1:  # one column: both singular values are its 2-norm
        norm = (bs.transpose() * bs)[0, 0].nonnegative_part().sqrt()
        return norm * scale, norm * scale
    tolerance = _tolerance(tight)
    try:
        u, s, vt = np.linalg.svd(mids, full_matrices=False)
    except np.linalg.LinAlgError:
        return nan, nan
    floats = (
        not tight
        and n >= FLOAT64_NORMS_MIN_N
        and gradual_underflow()
        and bs == _exact_mat(mids)  # the float64 midpoints are B itself (no radii, no loss)
    )
    if floats:
        largest, g = float64_largest_singular_value(mids, vt.T)
    else:
        largest, _, g = _largest_singular_value(bs, vt.T, tight=tight)
    smallest = None
    # Below 2**-50 s_max the float64 pseudo-inverse is rounding noise (kappa u > 1).
    if s[-1] > s[0] * 2.0**-50:
        extra = math.ceil(math.log2(n * s[0] / s[-1])) + 8 if tight else 0
        with arb_workprec(flint.ctx.prec + extra):
            # The pseudo-inverse V S^-1 U^T: its left singular vectors are V's, reversed.
            inverse = (vt.T / s) @ u.T
            smallest = _smallest_singular_value(
                bs,
                _exact_mat(inverse),
                tight=tight,
                left=(vt.T[:, ::-1], g),
                floats=inverse if floats else None,
            )
    if not _settled(smallest, tolerance):
        smallest = _smallest_singular_value_expensive(
            bs, tight=tight, cheap=smallest, floats=floats
        )
    if tight and not (_settled(largest, tolerance) and _settled(smallest, tolerance)):
        largest, smallest = _narrower_of(
            (largest, smallest), _from_eigenvalues(bs.transpose() * bs)
        )
    return largest * scale, smallest * scale


def _smallest_singular_value_expensive(
    b: flint.arb_mat, *, tight: bool, cheap: flint.arb | None, floats: bool = False
) -> flint.arb:
    """sigma_min where the cheap path failed or is too wide (``cheap``: its result, or None).

    An exact B has its rank decided first, in exact rational arithmetic
    (`exactly_rank_deficient`, 0.08 s at n = 200): deficient, sigma_min is exactly 0 (float64
    cannot tell: LAPACK's s_min of a singular matrix is rounding noise of about n 2**-53
    s_max, as is that of a nonsingular one with kappa beyond 1e15). Otherwise an
    approximate inverse is computed by Arb itself (`_approximate_left_inverse`) at 1, 2
    and 4 times the working precision (plus 64 bits for an output), checked and refined by
    `_smallest_singular_value`, until one settles. Returns the narrowest finite enclosure
    found (``cheap`` included), else a NaN ball.
    """
    if exactly_rank_deficient(_arb_rationals(b)):
        return flint.arb(0)
    prec, tolerance = flint.ctx.prec, _tolerance(tight)
    best = cheap
    for bits in (prec, 2 * prec, 4 * prec):
        with arb_workprec(bits + (64 if tight else 0)):
            x0 = _approximate_left_inverse(b)
            smallest = (
                None
                if x0 is None
                else _smallest_singular_value(
                    b, x0, tight=tight, floats=_NO_FLOATS if floats else None
                )
            )
        best = _narrower(best, smallest)
        if _settled(best, tolerance):
            break
    return flint.arb("nan") if best is None else best


def _tolerance(tight: bool) -> float:
    """The relative radius an enclosure must reach: ENCLOSURE_ACCURACY for a condition
    number; 2**(-3/4 prec) for an output (at 113 bits 2**-84, within the 2**-80 the engine
    asks of outputs: a wider one is worth the expensive path)."""
    return 2.0 ** -(3 * flint.ctx.prec // 4) if tight else ENCLOSURE_ACCURACY


def _settled(sigma: flint.arb | None, tolerance: float) -> bool:
    """Whether an enclosure is finite and within ``tolerance`` relative (exact 0 is)."""
    if sigma is None or not sigma.is_finite():
        return False
    if sigma.is_exact():
        return True
    return bool(sigma.rad() <= tolerance * abs(sigma.mid()))


def _narrower(a: flint.arb | None, b: flint.arb | None) -> flint.arb | None:
    """The enclosure with the smaller radius (finite ones first; None when both are None).
    Both enclose the same number, so either is right: the narrower is more useful."""
    finite = [v for v in (a, b) if v is not None and v.is_finite()]
    if not finite:
        return a if b is None else b
    return min(finite, key=lambda v: v.rad())


def _narrower_of(pair, other):
    return tuple(_narrower(x, y) for x, y in zip(pair, other, strict=True))


def _from_eigenvalues(gram: flint.arb_mat) -> tuple[flint.arb, flint.arb]:
    """(sigma_max, sigma_min) as square roots of the extreme certified eigenvalues of
    B^T B (`ArbNumbers.symmetric_eigenvalues`; NaN where they are not isolated)."""
    values = arb_symmetric_eigenvalues(gram.tolist())
    if not all(v.is_finite() for v in values):
        return flint.arb("nan"), flint.arb("nan")
    return tuple(
        functools.reduce(pick, values).nonnegative_part().sqrt()
        for pick in (flint.arb.max, flint.arb.min)
    )


def _largest_singular_value(
    c: flint.arb_mat, q: np.ndarray, *, tight: bool, orthogonality: flint.arb | None = None
) -> tuple[flint.arb, flint.arb_mat, flint.arb]:
    """A ball containing sigma_max(C) for every C in the ball matrix ``c`` (k x n), from
    approximate right singular vectors ``q`` (float64 n x n, the top one first); the
    (refined, with ``tight``) top vector y, an exact n x 1 matrix; and g >= ||Q^T Q - I||_F
    (``orthogonality``, when the caller has it: Q^T Q is then not formed).

    With T = Q^T C^T C Q and G = Q^T Q (Arb products: Q's floats are exact):

    * lambda_max(C^T C) >= T_00 / G_00, the Rayleigh quotient of q_0;
    * lambda_max(C^T C) <= lambda_max(T) / lambda_min(G) (Ostrowski's theorem: Q^T M Q has
      the eigenvalues of M, each multiplied by a factor in [lambda_min(G), lambda_max(G)];
      Horn & Johnson, *Matrix Analysis*, thm 4.5.9), with lambda_min(G) >= 1 - ||G - I||_F
      and lambda_max(T) <= max_i T_ii + ||T - diag(T)||_F (Weyl's theorem).

    Both off-diagonal parts are float64 rounding, O(n u) relative to lambda_max whatever the
    spectrum: clustered or repeated singular values cost nothing. That first-order width
    (about 2**-45) suits a condition number; an output (``tight``) gets the second-order
    bound of `_second_order_bound` where the top singular value is separated from the next.
    sigma_max is the square root of the lambda_max interval.
    """
    n = q.shape[1]
    qa = _exact_mat(q)
    y = _column(qa, 0)
    p = c * qa
    t = p.transpose() * p
    if tight or orthogonality is None:
        gram = qa.transpose() * qa
        g = _frobenius_upper(gram - _identity(n))
    else:
        g = orthogonality
    if not g < 1:  # Q is not certainly nonsingular: no bound
        return flint.arb("nan"), y, g
    # The 2-norm of the off-diagonal part is bounded by its Frobenius norm: a rigorous bound
    # from the entries alone, and only sqrt(n) times too large for rounding-sized entries.
    diagonal = [t[i, i] for i in range(n)]
    off = _frobenius_upper(t - _diagonal(diagonal))
    top = functools.reduce(flint.arb.max, diagonal)
    lower = (t[0, 0] / (y.transpose() * y)[0, 0]).lower()
    upper = ((top + off) / (1 - g)).upper()
    if tight:
        refined = _second_order_bound(c, qa, t, gram, g)
        if refined is not None:
            lower, upper, y = refined
    return _sqrt_interval(lower, upper), y, g


def _second_order_bound(c, qa, t, gram, g):
    """(lower, upper, y): lambda_max(C^T C) in [lower, upper] to second order, or None when
    the top eigenvalue is not separated from the rest by more than the first-order width.

    y = q_0 + sum_j c_j q_j, c_j = -(T_j0 - lam G_j0) / (T_jj - lam G_jj), is the
    first-order correction of q_0 (its error squares). In the basis Y = [y, q_1, ...], with
    T' = Y^T M Y and G' = Y^T Y, lambda_max(M) <= mu whenever mu G' - T' is positive
    semidefinite (M's eigenvalues are the pencil's (T', G') when Y is nonsingular). Split
    H = mu G' - T' = [[h00, h^T], [h, H22]]: if lambda_min(H22) >= gap > 0 and
    h00 >= ||h||^2 / gap then H is positive semidefinite (its Schur complement
    h00 - h^T H22^-1 h is >= 0; Haynsworth). H22 = mu G22 - T22 does not involve y, and for
    mu >= mu0 it is >= mu0 G22 - T22 (G22 is a Gram matrix), whose lambda_min Weyl bounds by
    its smallest diagonal entry less the Frobenius norm of its off-diagonal part. So
    mu = mu0 + eta with eta about ||h||^2 / gap, where ||h|| is the (second-order) coupling of y
    to the rest: the bound is as wide as (u / delta)**4 lambda_max for a relative gap delta
    (the form of the Kato-Temple inequality; Kato 1949). Y is nonsingular when
    ||Y^T Y - I||_F < 1. The Schur-complement criterion for semidefiniteness: Horn & Johnson,
    *Matrix Analysis*, 2nd ed., sec. 7.7.
    """
    n = t.nrows()
    lam = float(t[0, 0].mid()) / float(gram[0, 0].mid())
    coef = [1.0]
    for j in range(1, n):
        denominator = float(t[j, j].mid()) - lam * float(gram[j, j].mid())
        numerator = float(t[j, 0].mid()) - lam * float(gram[j, 0].mid())
        coef.append(-numerator / denominator if denominator < 0 else 0.0)
    y = (qa * flint.arb_mat([[v] for v in coef])).mid()
    cy = c * y
    ty = qa.transpose() * (c.transpose() * cy)  # q_j^T M y
    gy = qa.transpose() * y  # q_j^T y
    t00, g00 = (cy.transpose() * cy)[0, 0], (y.transpose() * y)[0, 0]
    mu0 = (t00 / g00).mid()
    h = gram * mu0 - t
    diagonal = [h[i, i] for i in range(n)]
    gap = (
        functools.reduce(flint.arb.min, diagonal[1:]).lower()
        - _frobenius_upper(h - _diagonal(diagonal))
    ).lower()
    if not gap > 0:
        return None

    def coupling(mu):  # ||h(mu)||^2, h_j = mu G'_j0 - T'_j0 for j >= 1
        return sum(((mu * gy[j, 0] - ty[j, 0]) ** 2 for j in range(1, n)), flint.arb(0))

    eta = ((2 * coupling(mu0) / gap + abs(mu0 * g00 - t00)) / g00).upper()
    mu = (mu0 + eta).upper()
    if not mu * g00 - t00 - coupling(mu) / gap >= 0:
        return None
    off_y = sum((gy[j, 0] ** 2 for j in range(1, n)), flint.arb(0))
    if not g * g + 2 * off_y + (g00 - 1) ** 2 < 1:
        return None
    return (t00 / g00).lower(), mu, y


def _smallest_singular_value(
    b: flint.arb_mat,
    x0: flint.arb_mat,
    *,
    tight: bool,
    left: tuple[np.ndarray, flint.arb] | None = None,
    floats: np.ndarray | _NoFloats | None = None,
):
    """A ball containing sigma_min of every matrix in the ball matrix B (m x n), from an
    approximate left inverse X0 (n x m, exact); None when X0 is not good enough.

    With R = I - X B and r >= ||R||_2 (its Frobenius norm) below 1/2, Y = (I - R)^-1 X is an
    exact left inverse (Y B = I), and every left inverse has ||Y||_2 >= ||B^+||_2 =
    1 / sigma_min with equality for a square B; ||x|| = ||Y B x|| <= ||Y|| ||B x|| gives
    sigma_min >= 1 / ||Y||. Either ||Y|| <= ||X|| / (1 - r) (first order, accepted when
    r <= 2**-31), or, with X1 = X + R X (Newton-Schulz step for the inverse; Schulz 1933),
    Y = X1 + R^2 (I - R)^-1 X and ||X|| <= ||X1|| / (1 - r) give
    ||Y|| <= ||X1|| (1 + r^2 / (1 - r)^2). X is refined until r^2 is below the target
    (2**-32 for a condition number, 2**(8 - prec) for an output) or stops shrinking, which
    happens at about n kappa 2**-prec. ||X||_2 is bounded by `_largest_singular_value` of X^T
    with X's float64 left singular vectors, or with ``left`` (X0's approximate left singular
    vectors and the bound on their orthogonality, known to the caller) when X0 is accepted.

    The upper bound is a Rayleigh quotient: sigma_min <= ||B z|| / ||z|| for every z != 0,
    with z = X X^T y for X's top left singular vector y: z is B's bottom right singular
    vector up to (angle of y)^2 sigma_min / sigma_j on component j, accurate to second order
    whatever kappa.

    With ``floats`` (X0 as a float64 array, or `_NO_FLOATS` where the caller has none), ||X||_2
    is bounded from float64 products with rigorous error bounds
    (`float64_largest_singular_value`) instead of Arb's, and ``left`` is not used.
    """
    n = b.ncols()
    eye = _identity(n)
    target = 2.0 ** (8 - flint.ctx.prec) if tight else 2.0**-32
    x, previous = x0, None
    accepted_x0 = False
    for _ in range(NEWTON_STEPS):
        residual = eye - x * b
        r = _frobenius_upper(residual)
        if not r < 0.5:
            return None
        if not tight and r <= 2.0**-31:
            factor, accepted_x0 = 1 / (1 - r), previous is None
            break
        x_next = x + residual * x
        factor = 1 + r * r / ((1 - r) * (1 - r))
        if r * r <= target or (previous is not None and not r < previous * previous * 2**20):
            x = x_next
            break
        # The midpoints are the next approximation: an exact matrix, so that the next
        # residual is that of this matrix and the radii of this step do not accumulate.
        x, previous = x_next.mid(), r
    else:
        x = x_next
    if floats is not None:
        exact = floats if accepted_x0 and floats is not _NO_FLOATS else None
        found = _norm_from_float64(x, exact)
        if found is None:
            return None
        norm, y = found
    else:
        if accepted_x0 and left is not None:
            vectors, orthogonality = left
        else:
            mids = _midpoints(x)
            if not np.isfinite(mids).all():
                return None
            vectors, orthogonality = np.linalg.svd(mids, full_matrices=False)[0], None
        norm, y, _ = _largest_singular_value(
            x.transpose(), vectors, tight=tight, orthogonality=orthogonality
        )
    if not norm.is_finite():
        return None
    lower = (1 / (norm.upper() * factor)).lower()
    # z = X X^T y rather than the float64 bottom right singular vector of B: its components
    # off B's bottom direction shrink by sigma_min / sigma_j, so the Rayleigh quotient is
    # accurate to second order whatever kappa (float64's vector gives n (u kappa)^2 relative,
    # past 2**-30 near kappa 1e10).
    z = (x * (x.transpose() * y)).mid()
    bz = b * z
    upper = ((bz.transpose() * bz)[0, 0] / (z.transpose() * z)[0, 0]).sqrt().upper()
    if not (lower.is_finite() and upper.is_finite()):
        return None
    return lower.union(upper)


def _approximate_left_inverse(b: flint.arb_mat) -> flint.arb_mat | None:
    """An approximate left inverse of B at the working precision, without error bounds
    (``algorithm="approx"``: LU at the working precision): B^-1 for a square B, else
    (B^T B)^-1 B^T. None when the LU meets a zero pivot."""
    n = b.ncols()
    try:
        if b.nrows() == n:
            x = b.solve(_identity(n), algorithm="approx")
        else:
            x = (b.transpose() * b).solve(b.transpose(), algorithm="approx")
    except ZeroDivisionError:
        return None
    return x.mid()


def _scaled(b: flint.arb_mat) -> tuple[int, np.ndarray] | None:
    """(e, midpoints of B / 2**e in float64) with max |mid(b_ij)| in [2**(e-1), 2**e); None
    when every midpoint is 0 or an entry is not finite. From the float64 midpoints where they
    are finite and their largest is normal (the common case), else from the exact ones."""
    mids = _midpoints(b)
    largest = float(np.max(np.abs(mids))) if np.isfinite(mids).all() else math.inf
    if 2.0**-1000 < largest < math.inf:
        shift = math.frexp(largest)[1]
        # ldexp, not / 2.0**shift: a shift past 1023 overflows the power of two itself.
        return shift, np.ldexp(mids, -shift)
    shift = _scale_exponent(b)
    if shift is None:
        return None
    return shift, _midpoints(b / flint.arb(2) ** shift)


def _scale_exponent(b: flint.arb_mat) -> int | None:
    """e with max |mid(b_ij)| in [2**(e-1), 2**e), from the exact midpoints; None when every
    midpoint is 0 or an entry is not finite."""
    top = None
    for v in b.entries():
        if not v.is_finite():
            return None
        man, exp = v.mid().man_exp()
        if man != 0:
            e = int(exp) + int(abs(man)).bit_length()
            top = e if top is None else max(top, e)
    return top


def _identity(n: int) -> flint.arb_mat:
    return _diagonal([1] * n)


def _diagonal(values) -> flint.arb_mat:
    d = flint.arb_mat(len(values), len(values))
    for i, v in enumerate(values):
        d[i, i] = v
    return d


def _column(a: flint.arb_mat, j: int) -> flint.arb_mat:
    return flint.arb_mat([[a[i, j]] for i in range(a.nrows())])


def _sqrt_interval(lower: flint.arb, upper: flint.arb) -> flint.arb:
    """A ball containing [sqrt(max(lower, 0)), sqrt(upper)] (NaN when upper is not finite)."""
    if not (lower.is_finite() and upper.is_finite()):
        return flint.arb("nan")
    return lower.nonnegative_part().sqrt().union(upper.nonnegative_part().sqrt())
