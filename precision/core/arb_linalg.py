"""Certified linear algebra in Arb for the references' matrix operations (`precision.core.numbers`).

* Arb's working precision (``arb_workprec``) and certified eigenvalues of symmetric matrices
  (``arb_symmetric_eigenvalues``), with the extra bits Arb's eigenvalue search needs
  (``eigen_extra_bits``).
* Exact rational systems (``rational_matrix``): when every entry is an exact float, a system is
  solved in ``fmpq_mat`` and each component rounded once; the exact rank test
  (``exactly_rank_deficient``) of exact entries (``mpf_rationals``, ``_arb_rationals``).
* Solutions refined from float64 (``refined_solve``): the rational solve's balls, bit for bit,
  without the rational solve where float64's iterative refinement and sigma_min decide them.
* The small ball-matrix helpers these share with `precision.core.arb_singular_values` (the
  certified extreme singular values, which build on this module).

Split from `precision.core.numbers` so that the number systems' interface stays short.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import flint
import mpmath
import numpy as np


@contextlib.contextmanager
def arb_workprec(bits: int) -> Iterator[None]:
    """Set flint's global precision to ``bits`` for the block and restore it after, also
    when the block raises: every arb operation rounds to ``flint.ctx.prec``, and a changed
    global would silently change every later computation in the process. Like
    ``mpmath.workprec`` it is not thread-safe (one global per process); the study runner
    uses processes."""
    saved = flint.ctx.prec
    flint.ctx.prec = bits
    try:
        yield
    finally:
        flint.ctx.prec = saved


def arb_symmetric_eigenvalues(a) -> list[flint.arb]:
    """``arb_mat.eig`` (certified enclosures, as ``acb_mat.eig``) of the symmetric matrix
    ``a`` (rows of balls): the real parts of the isolated eigenvalue balls; with
    ``nonstop=True`` an eigenvalue Arb cannot isolate comes back as a NaN ball instead of
    raising (the engine then climbs).

    Arb's eigenvalue search needs about log2(lambda_max / lambda_min) bits beyond those of
    the result to isolate the small eigenvalues of an ill-conditioned matrix: at 113 bits
    the Gram matrix of a 50 x 50 matrix of kappa 1e8 fails, though its entries' radii
    (2**-113 relative) bound the eigenvalues far more tightly. The search therefore runs
    with that many more bits, estimated from the midpoints in float64 (a cost decision
    only: the enclosures are rigorous whatever precision finds them).
    """
    matrix = flint.arb_mat(a)
    with arb_workprec(flint.ctx.prec + eigen_extra_bits(matrix)):
        values = matrix.eig(nonstop=True)
    return [v.real if v.is_finite() else flint.arb("nan") for v in values]


def rational_matrix(a, b):
    """(A, B) as ``fmpq_mat`` when every entry of both is an exact finite ball, else None."""
    rows = []
    for matrix in (a, b):
        values = []
        for row in matrix:
            for v in row:
                if not (v.is_exact() and v.is_finite()):
                    return None
                man, exp = (int(part) for part in v.mid().man_exp())
                values.append(flint.fmpq(man << exp) if exp >= 0 else flint.fmpq(man, 1 << -exp))
        rows.append(flint.fmpq_mat(len(matrix), len(matrix[0]), values))
    return rows[0], rows[1]


def eigen_extra_bits(matrix: flint.arb_mat) -> int:
    """log2(lambda_max / |lambda_min|) of a symmetric matrix's midpoints, estimated in float64
    (``numpy.linalg.eigvalsh``), plus a margin; 0 for a well-conditioned one."""
    mids = np.array([[float(v.mid()) for v in row] for row in matrix.tolist()])
    if not np.isfinite(mids).all():
        return 0
    values = np.abs(np.linalg.eigvalsh(mids))
    largest = values.max(initial=0.0)
    if largest == 0:
        return 0
    # float64 resolves eigenvalues down to about 2**-52 lambda_max; below, assume the worst.
    spread = largest / max(values.min(), largest * 2.0**-200)
    return 0 if spread < 2.0**20 else int(math.log2(spread)) + 32


# ------------------------------------------ solutions from float64, rounded as fmpq would be

REFINEMENTS = 12
"""Most refinement steps of `refined_solve`: each gains about 53 - log2(n kappa) bits, so
that 113 bits and a margin take three at kappa 1e3 and ten at kappa 1e10; beyond that, or
when a step stops gaining, the exact rational solve decides."""

MARGIN_BITS = 20
"""Bits beyond the working precision that a refinement aims at before it tries to decide
every component's rounding (a component is decided when its whole enclosure truncates to one
value)."""


_TINY = 2.0**-1074


def gradual_underflow() -> bool:
    """Whether numpy's float64 arithmetic keeps subnormal operands and results (IEEE 754's
    default). With flush-to-zero or denormals-are-zero set (a library built with fast-math can
    set them for the whole process) a result below 2**-1022 may become 0: float64 bounds whose
    margins assume gradual underflow (`refined_solve`, the float64 products of
    `precision.core.arb_singular_values`, `ArbNumbers.float_bounds`, `precision.problems.logits`)
    are then not formed."""
    tiny = np.array([_TINY])
    return bool((tiny + tiny)[0] == 2 * _TINY)


def refined_solve(a: flint.arb_mat, b: flint.arb_mat, sigma_min: flint.arb) -> list | None:
    """``[arb(x_i) for x = A^-1 b]`` exactly as ``fmpq_mat.solve`` followed by ``arb(fmpq)``
    gives it at the working precision p, for an A and b of exact float64 entries, without
    the exact rational solve (0.35 s at n = 200: its denominators have 12,000 bits); None
    where it cannot decide (the caller then solves exactly).

    ``arb(q)`` of a rational q is q truncated toward zero to p bits with radius one ulp,
    2**(e - p) for |mid| in [2**(e-1), 2**e), or q itself with radius 0 when q has at most p
    bits (checked against python-flint in tests/core/test_numbers.py). Here x is refined in
    float64 from an LU factorisation (Wilkinson's iterative refinement: x_{k+1} = x_k +
    A~^-1 r_k), the residual r = b - A x of the exact sum x of the float64 steps enclosed by
    Arb at 2p + 64 bits, and the error bounded by ||A^-1 r||_2 <= ||r||_2 / sigma_min
    (``sigma_min``: a ball containing sigma_min(A), from
    `precision.core.arb_singular_values.arb_extreme_singular_values`).
    Component i is decided when the interval x_i -/+ that bound excludes every p-bit number
    (then x_i is not one, and every point truncates to the same value): its ball is that
    value with radius one ulp, which is ``arb(fmpq)``'s. A component that is a p-bit number
    (0 included) is never decided: the exact solve gives it radius 0.
    """
    prec = flint.ctx.prec
    n = a.nrows()
    if not (sigma_min.is_finite() and sigma_min.lower() > 0) or not gradual_underflow():
        return None
    mids, rhs = _midpoints(a), _midpoints(b)[:, 0]
    if not (np.isfinite(mids).all() and np.isfinite(rhs).all()):
        return None
    if not (a == _exact_mat(mids) and b == _exact_mat(rhs[:, None])):
        return None
    try:
        inverse = np.linalg.inv(mids)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(inverse).all():
        return None
    with arb_workprec(2 * prec + 64):
        x = flint.arb_mat(n, 1)
        correction = inverse @ rhs
        previous = None
        for _ in range(REFINEMENTS):
            if not np.isfinite(correction).all():
                return None
            x = (x + _exact_mat(correction[:, None])).mid()
            residual = b - a * x
            bound = (_frobenius_upper(residual) / sigma_min.lower()).upper()
            decided = _truncations(x, bound, prec)
            if decided is not None:
                return decided
            if previous is not None and not bound < previous * 2.0**-8:
                return None  # stalled: kappa too large for float64's corrections
            previous = bound
            correction = inverse @ _midpoints(residual)[:, 0]
    return None


def _truncations(x: flint.arb_mat, bound: flint.arb, prec: int) -> list | None:
    """The balls ``arb(x*_i)`` at ``prec`` bits for every x* with |x*_i - x_i| <= bound
    (x exact), or None when one of them is not decided (`refined_solve`)."""
    if not bound.is_finite():
        return None
    bound_man, bound_exp = (int(v) for v in bound.man_exp())
    balls = []
    for i in range(x.nrows()):
        man, exp = (int(v) for v in x[i, 0].mid().man_exp())
        base = min(exp, bound_exp)
        centre, width = man << (exp - base), bound_man << (bound_exp - base)
        low = _truncated(centre - width, base, prec)
        high = _truncated(centre + width, base, prec)
        # Both ends truncate to one p-bit value d that neither end equals: no p-bit number lies
        # in the interval (d is below it in magnitude, its successor beyond), and the signs
        # agree, so the interval excludes 0 too.
        if low is None or low != high or low[0] == 0:
            return None
        d_man, d_exp = low
        top = d_exp + abs(d_man).bit_length()
        balls.append(flint.arb((d_man, d_exp), (1, top - prec)))
    return balls


def _truncated(man: int, exp: int, prec: int) -> tuple[int, int] | None:
    """man 2**exp truncated toward zero to ``prec`` significant bits, normalised (odd
    mantissa, or (0, 0)); None when that is exact (the value has at most ``prec`` bits)."""
    size = abs(man).bit_length()
    shift = size - prec
    if shift <= 0:
        return None
    magnitude = abs(man) >> shift
    if magnitude << shift == abs(man):
        return None
    trailing = (magnitude & -magnitude).bit_length() - 1
    magnitude >>= trailing
    return (-magnitude if man < 0 else magnitude), exp + shift + trailing


# --------------------------------------- helpers, shared with precision.core.arb_singular_values


def _midpoints(b: flint.arb_mat) -> np.ndarray:
    """The midpoints as float64 (rounded: approximations only)."""
    return np.array([float(v) for v in b.entries()]).reshape(b.nrows(), b.ncols())


def _exact_mat(x: np.ndarray) -> flint.arb_mat:
    """A float64 matrix as an exact ball matrix."""
    return flint.arb_mat(np.asarray(x, dtype=np.float64).tolist())


def _frobenius_upper(e: flint.arb_mat) -> flint.arb:
    """An exact upper bound of ||E||_F for every E in the ball matrix (one inner product of
    its entries with themselves: Arb's product is C, a loop over n^2 balls is not)."""
    v = flint.arb_mat(1, e.nrows() * e.ncols(), e.entries())
    return (v * v.transpose())[0, 0].nonnegative_part().sqrt().upper()


def exactly_rank_deficient(matrix: flint.fmpq_mat | None) -> bool:
    """Whether an exact rational matrix (m >= n) has rank below n; False for None (a matrix
    with inexact entries, whose rank the entries do not decide)."""
    return matrix is not None and matrix.rank() < matrix.ncols()


def _arb_rationals(b: flint.arb_mat) -> flint.fmpq_mat | None:
    """The ball matrix as an ``fmpq_mat`` when every entry is exact, else None."""
    values = []
    for v in b.entries():
        if not (v.is_exact() and v.is_finite()):
            return None
        man, exp = (int(part) for part in v.mid().man_exp())
        values.append(_dyadic(man, exp))
    return flint.fmpq_mat(b.nrows(), b.ncols(), values)


def mpf_rationals(a) -> flint.fmpq_mat | None:
    """Rows of finite mpf (exact binary numbers) as an ``fmpq_mat``, else None."""
    values = []
    for row in a:
        for v in row:
            if not mpmath.isfinite(v):
                return None
            man, exp = v.man_exp
            values.append(_dyadic(-int(man) if v < 0 else int(man), int(exp)))
    return flint.fmpq_mat(len(a), len(a[0]), values)


def _dyadic(man: int, exp: int) -> flint.fmpq:
    """man * 2**exp exactly."""
    return flint.fmpq(man << exp) if exp >= 0 else flint.fmpq(man, 1 << -exp)
