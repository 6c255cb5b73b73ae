"""Number systems the exact references are written over: mpmath and Arb ball arithmetic.

A problem's reference is written once, as ``reference(x, ctx)``, against the small interface
of `NumberSystem`: exact conversion of the input floats (``ctx.exact``, ``ctx.exact_list``),
the elementary functions the references need (``exp``, ``log1p``, ``log``, ``sqrt``, ``abs``,
``max``, ``min``), a sum of an iterable (``fsum``), ``inf``, the matrix operations of the
linear-algebra references (``matmul``, ``solve``, ``symmetric_eigenvalues``,
``extreme_singular_values`` on lists of rows), and ordinary arithmetic through the operators
of the numbers themselves. Two systems implement it:

* `MPMATH`: mpmath numbers at the caller's working precision (``MPMATH.workprec(bits)`` is
  ``mpmath.workprec``). The reference engine: its results are certified by agreement of two
  precisions (`precision.truth.exact`).
* `ARB`: python-flint's ``arb`` balls (Arb, Johansson 2017): each number is a midpoint and a
  rigorous radius, so one evaluation says how accurate it is. Its working precision is the
  global ``flint.ctx.prec``, which ``ARB.workprec(bits)`` sets and always restores.

Comparisons of balls are three-valued (``a != 0`` is False for a ball that contains 0), so the
references take decisions from the input floats themselves (the argmax of the logits), never
from comparing computed balls.

A system whose numbers carry rigorous error bounds (``encloses``: Arb) also exports them as
float64 bounds (`NumberSystem.float_bounds`) and takes a float64 interval back
(`NumberSystem.from_bounds`), so that a reference can bound a condition number, which needs only
a few significant digits, with numpy's interval arithmetic instead of thousands of ball
operations (`precision.problems.logits`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable
from typing import Any

import flint
import mpmath
import numpy as np

from precision.core.arb_linalg import (
    arb_symmetric_eigenvalues,
    arb_workprec,
    exactly_rank_deficient,
    gradual_underflow,
    mpf_rationals,
    rational_matrix,
    refined_solve,
)
from precision.core.arb_singular_values import arb_extreme_singular_values

Number = Any
"""An exact or high-precision number of one system (``mpmath.mpf`` or ``flint.arb``)."""

__all__ = ["ARB", "MPMATH", "Number", "NumberSystem", "gradual_underflow"]


class NumberSystem:
    """The operations a reference needs, for one kind of number (see the module docstring).

    Subclasses define ``name``, ``inf``, `exact`, the elementary functions and `workprec`;
    ``+ - * /`` and unary minus are the numbers' own operators.
    """

    name: str
    inf: Number
    encloses: bool = False
    """Whether every number is an enclosure with a rigorous radius (`float_bounds` and
    `from_bounds` then work)."""

    def exact(self, value: float) -> Number:
        """The Python float ``value`` as an exact number (no rounding at any precision)."""
        raise NotImplementedError

    def exact_list(self, x) -> list:
        """Exact numbers of every value of an array, in C order.

        A float array of any registry format is viewed as float64 first (exact: every format
        is a subset of float64) and its ``tolist()`` gives Python floats; an object array is
        passed element by element to `exact` (see `MpmathNumbers.exact`).
        """
        values = np.asarray(x)
        if values.dtype != object:
            with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the flag
                values = values.astype(np.float64)
        return [self.exact(v) for v in values.ravel().tolist()]

    def workprec(self, bits: int) -> contextlib.AbstractContextManager:
        """A context in which this system computes with ``bits`` bits."""
        raise NotImplementedError

    def exp(self, v: Number) -> Number:
        raise NotImplementedError

    def exp_list(self, values: Iterable[Number]) -> list:
        """`exp` of every value, in order."""
        return [self.exp(v) for v in values]

    def log(self, v: Number) -> Number:
        raise NotImplementedError

    def log1p(self, v: Number) -> Number:
        raise NotImplementedError

    def fsum(self, values: Iterable[Number]) -> Number:
        """The sum of ``values`` (0 for none)."""
        raise NotImplementedError

    def abs(self, v: Number) -> Number:
        return abs(v)

    def max(self, values: Iterable[Number]) -> Number:
        """The largest of ``values`` (at least one)."""
        raise NotImplementedError

    def min(self, values: Iterable[Number]) -> Number:
        """The smallest of ``values`` (at least one)."""
        raise NotImplementedError

    def sqrt(self, v: Number) -> Number:
        """The square root of a quantity known to be >= 0 (a norm, an eigenvalue of A^T A)."""
        raise NotImplementedError

    # Rigorous float64 bounds (``encloses`` systems only).

    def float_bounds(
        self, values: list, *, radius: float | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """float64 arrays (lo, hi) with lo_i <= v <= hi_i for every point v of number i.

        Without ``radius``, each bound is within 8 max(w_i, 2**-52) relative of the number, w_i
        its relative width, and None is returned when a number is not finite or wider than
        FLOAT_BOUNDS_ACCURACY relative. With ``radius``, a float at least the radius of every
        number (known to the caller: the radius of a sum is at least the sum of its terms'
        radii), the bounds are within 2**-49 relative plus 2 ``radius`` of it, and only
        numbers that are not finite give None. Always None for a system that does not enclose.
        """
        return None

    def bound(self, v: Number) -> tuple[float, float] | None:
        """Floats (lo, hi) with lo <= v <= hi for every point of ``v`` (its endpoints rounded
        outward); None when ``v`` is not finite or the system does not enclose."""
        return None

    def radius(self, v: Number) -> float | None:
        """A float at least the radius of ``v``; None when it is not finite or the system does
        not enclose."""
        return None

    def from_bounds(self, lo: float, hi: float) -> Number:
        """A number that encloses the interval [lo, hi] of floats (``encloses`` systems)."""
        raise NotImplementedError

    # Matrix operations (the linear-algebra references). A matrix is a list of rows of numbers
    # of this system; a vector is a list.

    def matmul(self, a: list[list[Number]], b: list[list[Number]]) -> list[list[Number]]:
        """The product of two matrices at the working precision."""
        raise NotImplementedError

    def solve(
        self, a: list[list[Number]], b: list[Number], *, smallest_singular_value: Number = None
    ) -> list[Number]:
        """x with A x = b for a square A, at the working precision (NaNs when A is singular,
        or too close to singular for the working precision to tell).

        ``smallest_singular_value``, keyword-only: sigma_min(A) from `extreme_singular_values`
        when the caller has it; a system may use it to bound its error more cheaply (Arb),
        never to change the result."""
        raise NotImplementedError

    def symmetric_eigenvalues(self, a: list[list[Number]]) -> list[Number]:
        """The eigenvalues of a symmetric matrix, in no particular order (NaNs when the working
        precision cannot separate them)."""
        raise NotImplementedError

    def extreme_singular_values(
        self, a: list[list[Number]], *, tight: bool = False
    ) -> tuple[Number, Number]:
        """The largest and smallest singular values of a matrix, its entries taken as exact.

        Parameters
        ----------
        a : list of rows
            An m x n matrix, m >= n, of numbers of this system.
        tight : bool, keyword-only
            False: the values only feed a condition number (rows are binned by its decade and
            plotted against it), and Arb encloses them to ENCLOSURE_ACCURACY relative, cheaply.
            True: they are an output (`precision.problems.matrix_condition`), computed as
            accurately as the working precision allows.

        Returns
        -------
        sigma_max, sigma_min : Number
            sigma_min is exactly 0 when the matrix is exactly rank deficient (decided in exact
            rational arithmetic, not by a tolerance).
        """
        raise NotImplementedError


class MpmathNumbers(NumberSystem):
    """mpmath at the caller's working precision (``mpmath.workprec``)."""

    name = "mpmath"
    inf = mpmath.inf

    def exact(self, value: float | mpmath.mpf) -> mpmath.mpf:
        """``mpmath.mpf(value)`` would round to the working precision (below 53 bits inside a
        low ``workprec``); ``from_float`` converts at 53 bits, exactly. An mpf is returned as
        it is, so references also take the object arrays of `precision.truth.exact.to_mpf_array`."""
        if isinstance(value, mpmath.mpf):
            return value
        return mpmath.mp.make_mpf(mpmath.libmp.from_float(float(value)))

    def workprec(self, bits: int) -> contextlib.AbstractContextManager:
        return mpmath.workprec(bits)

    def exp(self, v: mpmath.mpf) -> mpmath.mpf:
        return mpmath.exp(v)

    def log(self, v: mpmath.mpf) -> mpmath.mpf:
        return mpmath.log(v)

    def log1p(self, v: mpmath.mpf) -> mpmath.mpf:
        return mpmath.log1p(v)

    def fsum(self, values: Iterable[mpmath.mpf]) -> mpmath.mpf:
        """``mpmath.fsum``: the terms are added exactly, then rounded once."""
        return mpmath.fsum(values)

    def max(self, values: Iterable[mpmath.mpf]) -> mpmath.mpf:
        return max(values)

    def min(self, values: Iterable[mpmath.mpf]) -> mpmath.mpf:
        return min(values)

    def sqrt(self, v: mpmath.mpf) -> mpmath.mpf:
        return mpmath.sqrt(v)

    def matmul(self, a, b):
        """``mpmath.matrix`` product: each entry is a sum of products rounded at every step
        to the working precision (certified, like everything here, by agreement)."""
        return (mpmath.matrix(a) * mpmath.matrix(b)).tolist()

    def solve(self, a, b, *, smallest_singular_value=None):
        """``mpmath.lu_solve`` (LU with partial pivoting at the working precision); NaNs when
        mpmath finds the matrix numerically singular (``smallest_singular_value`` is not
        used)."""
        try:
            return list(mpmath.lu_solve(mpmath.matrix(a), mpmath.matrix(b)))
        except ZeroDivisionError:
            return [mpmath.nan] * len(b)

    def symmetric_eigenvalues(self, a):
        """``mpmath.eigsy`` (Householder tridiagonalisation and implicit QL at the working
        precision)."""
        return list(mpmath.eigsy(mpmath.matrix(a), eigvals_only=True))

    def extreme_singular_values(self, a, *, tight=False):
        """``mpmath.svd_r`` at the working precision (``tight`` changes nothing: two
        precisions agreeing certify an output, and a condition number is not checked).

        The singular values of A itself, whose relative error is about kappa 2**-prec, where
        the eigenvalues of A^T A lose kappa**2 2**-prec. A smallest value within
        n 2**(16 - prec) sigma_max of 0 is what rounding leaves of an exact 0, so the rank is
        then decided exactly (`exactly_rank_deficient`) and a deficient matrix gets sigma_min
        exactly 0.
        """
        matrix = mpmath.matrix(a)
        sigma = mpmath.svd_r(matrix, compute_uv=False)
        largest, smallest = max(sigma), min(sigma)
        noise = largest * matrix.cols * mpmath.ldexp(1, 16 - mpmath.mp.prec)
        if smallest <= noise and exactly_rank_deficient(mpf_rationals(a)):
            smallest = mpmath.mpf(0)
        return largest, smallest


class ArbNumbers(NumberSystem):
    """python-flint ``arb`` balls at ``flint.ctx.prec`` (set by `workprec`, then restored)."""

    name = "arb"
    inf = flint.arb.pos_inf()
    encloses = True

    def exact(self, value: float) -> flint.arb:
        """``arb(float)`` is an exact ball (radius 0) at every precision."""
        return flint.arb(float(value))

    def exact_list(self, x) -> list:
        """`NumberSystem.exact_list`, with ``arb`` mapped over the Python floats of a float
        array in one pass (the same exact balls, at a third less cost than `exact` per value)."""
        values = np.asarray(x)
        if values.dtype == object:
            return super().exact_list(values)
        with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the flag
            floats = values.astype(np.float64).ravel().tolist()
        return list(map(flint.arb, floats))

    def workprec(self, bits: int) -> contextlib.AbstractContextManager:
        """Set flint's global precision to ``bits`` for the block and restore it after, also
        when the block raises (`precision.core.arb_linalg.arb_workprec`)."""
        return arb_workprec(bits)

    def exp(self, v: flint.arb) -> flint.arb:
        return v.exp()

    def exp_list(self, values: Iterable[flint.arb]) -> list:
        """``arb.exp`` mapped over the balls (the same balls as `exp` one by one)."""
        return list(map(flint.arb.exp, values))

    def log(self, v: flint.arb) -> flint.arb:
        return v.log()

    def log1p(self, v: flint.arb) -> flint.arb:
        return v.log1p()

    def fsum(self, values: Iterable[flint.arb]) -> flint.arb:
        """Left-to-right sum: each addition rounds the midpoint and adds its error to the
        radius, so the ball stays rigorous (no compensated summation is needed for that)."""
        return sum(values, flint.arb(0))

    def max(self, values: Iterable[flint.arb]) -> flint.arb:
        """A ball containing the maximum (``arb.max``), not a choice by comparing balls."""
        return functools.reduce(flint.arb.max, values)

    def min(self, values: Iterable[flint.arb]) -> flint.arb:
        """A ball containing the minimum (``arb.min``)."""
        return functools.reduce(flint.arb.min, values)

    def sqrt(self, v: flint.arb) -> flint.arb:
        """sqrt of the ball's nonnegative part: a ball around a norm or an eigenvalue of
        A^T A that is exactly >= 0 may still reach below 0 (a residual that is exactly 0
        computes as [0 +/- eps]), and ``arb.sqrt`` of such a ball is NaN."""
        return v.nonnegative_part().sqrt()

    def float_bounds(self, values, *, radius=None):
        """float64 bounds of every ball from one C call per ball, f = float(mid), and the
        ``radius`` given or, without it, a second one: the ball's relative accuracy
        (``arb.rel_accuracy_bits``; `_float_bounds`)."""
        n = len(values)
        mids = np.fromiter(map(float, values), np.float64, n)
        if radius is not None:
            return _float_bounds(mids, 1 << 62, radius)
        accuracy = min(map(flint.arb.rel_accuracy_bits, values), default=1 << 62)
        return _float_bounds(mids, accuracy, 0.0)

    def bound(self, v: flint.arb) -> tuple[float, float] | None:
        """The exact endpoints (``arb.lower``, ``arb.upper``) converted to float and moved two
        floats outward: the conversion is within one float of them, whatever its rounding
        (nearest, or toward zero in older python-flint), below float64's range too."""
        if not v.is_finite():
            return None
        lo, hi = float(v.lower()), float(v.upper())
        lo = math.nextafter(math.nextafter(lo, -math.inf), -math.inf)
        hi = math.nextafter(math.nextafter(hi, math.inf), math.inf)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        return lo, hi

    def radius(self, v: flint.arb) -> float | None:
        """``arb.rad`` (exact) converted to float and moved two floats up."""
        if not v.is_finite():
            return None
        rad = math.nextafter(math.nextafter(float(v.rad()), math.inf), math.inf)
        return rad if math.isfinite(rad) else None

    def from_bounds(self, lo: float, hi: float) -> flint.arb:
        """``arb.union`` of the two exact floats: a ball containing both, hence the interval."""
        return flint.arb(lo).union(flint.arb(hi))

    def matmul(self, a, b):
        """``arb_mat`` product: rigorous balls at the working precision."""
        return (flint.arb_mat(a) * flint.arb_mat(b)).tolist()

    def solve(self, a, b, *, smallest_singular_value=None):
        """``arb_mat.solve``: a rigorous enclosure of the solution; NaN balls when Arb cannot
        prove the matrix nonsingular at the working precision (the engine then climbs).

        When every entry is exact (radius 0: the input floats themselves), the system is
        solved exactly in rationals (``fmpq_mat.solve``, as fast at n = 50) and each component
        rounded once: a solution component that is exactly 0 is then an exact ball, which a
        ball Gaussian elimination never proves (its radius stays positive at any precision).
        With ``smallest_singular_value`` (a ball containing sigma_min(A)) and float64 entries,
        the same balls come first from float64 iterative refinement whose error Arb bounds
        by ||r|| / sigma_min (`refined_solve`: 0.03 s where the rational solve takes 0.35 s
        at n = 200); where it cannot decide every component, the rational solve does.
        """
        if smallest_singular_value is not None:
            refined = refined_solve(
                flint.arb_mat(a), flint.arb_mat([[v] for v in b]), smallest_singular_value
            )
            if refined is not None:
                return refined
        exact = rational_matrix(a, [[v] for v in b])
        if exact is not None:
            matrix, rhs = exact
            try:
                x = matrix.solve(rhs)
            except ZeroDivisionError:  # exactly singular
                return [flint.arb("nan")] * len(b)
            return [flint.arb(x[i, 0]) for i in range(len(b))]
        try:
            x = flint.arb_mat(a).solve(flint.arb_mat([[v] for v in b]))
        except ZeroDivisionError:
            return [flint.arb("nan")] * len(b)
        return [x[i, 0] for i in range(len(b))]

    def symmetric_eigenvalues(self, a):
        """Certified eigenvalues of a symmetric matrix, NaN balls where Arb cannot isolate
        them (`precision.core.arb_linalg.arb_symmetric_eigenvalues`)."""
        return arb_symmetric_eigenvalues(a)

    def extreme_singular_values(self, a, *, tight=False):
        """Rigorous balls around (sigma_max, sigma_min), from float64 approximations that Arb
        checks (`arb_extreme_singular_values`): a few matrix products, where certified
        eigenvalues of A^T A (`symmetric_eigenvalues`) cost twenty times the solve at
        n = 200."""
        return arb_extreme_singular_values(flint.arb_mat(a), tight=tight)


FLOAT_BOUNDS_BITS = 40
"""Fewest bits of relative accuracy (``arb.rel_accuracy_bits``) of every ball that
`ArbNumbers.float_bounds` exports: a wider ball gives None (the caller keeps to ball arithmetic).
Arb's own balls are about 2**-100 wide at the engine's precisions."""

FLOAT_BOUNDS_ACCURACY = 2.0**-FLOAT_BOUNDS_BITS


def _float_bounds(
    mids: np.ndarray, accuracy: int, radius: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) with lo_i <= v <= hi_i for every v in ball i, from f_i = float(mid_i) and
    rad_i <= rho |mid_i| + R for every i: rho = 2**-accuracy (``arb.rel_accuracy_bits``: the
    radius's top bit lies ``accuracy`` bits below the midpoint's, a rigorous bound) and R =
    ``radius``. None where accuracy < FLOAT_BOUNDS_BITS, a midpoint is not finite, or float64
    arithmetic flushes subnormals (`gradual_underflow`).

    With rho' = max(rho, 2**-52): |mid - f| <= 2**-52 |f| + 2**-1074 whatever the rounding of
    the conversion (one float, subnormal range included), so
    |v - f| <= 3 rho' |f| + R + 2**-1073 =: D. The bounds are f -/+ q, q = 8 rho' |f| + T with
    T >= 2 R + 2**-1069, all rounded to nearest: |f| 8 rho' is exact but for underflow
    (2**-1075), and q and f -/+ q each lose at most 2**-53 of their size, or nothing where the
    result is subnormal; what is left of q exceeds D by 5 rho' |f| - 2**-53 |f| > 0 and by
    R (1 - 2**-51) + 2**-1071 - 2**-1075 > 0.
    """
    if accuracy < FLOAT_BOUNDS_BITS or not np.isfinite(mids).all() or not gradual_underflow():
        return None
    rho = 2.0 ** -min(accuracy, 52)
    q = np.abs(mids)
    q *= 8.0 * rho
    q += math.nextafter(2.0 * radius + 2.0**-1069, math.inf)
    return mids - q, mids + q


MPMATH = MpmathNumbers()
"""The reference engine's number system."""

ARB = ArbNumbers()
"""Rigorous ball arithmetic (python-flint's Arb)."""
