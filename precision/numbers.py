"""Number systems the exact references are written over: mpmath and Arb ball arithmetic.

A problem's reference is written once, as ``reference(x, ctx)``, against the small interface
of `NumberSystem`: exact conversion of the input floats (``ctx.exact``, ``ctx.exact_list``),
the elementary functions the references need (``exp``, ``log1p``, ``log``, ``sqrt``, ``abs``,
``max``, ``min``), a sum of an iterable (``fsum``), ``inf``, the matrix operations of the
linear-algebra references (``matmul``, ``solve``, ``symmetric_eigenvalues`` on lists of rows),
and ordinary arithmetic through the operators of the numbers themselves. Two systems implement
it:

* `MPMATH`: mpmath numbers at the caller's working precision (``MPMATH.workprec(bits)`` is
  ``mpmath.workprec``). The reference engine: its results are certified by agreement of two
  precisions (`precision.exact`).
* `ARB`: python-flint's ``arb`` balls (Arb, Johansson 2017): each number is a midpoint and a
  rigorous radius, so one evaluation says how accurate it is. Its working precision is the
  global ``flint.ctx.prec``, which ``ARB.workprec(bits)`` sets and always restores.

Comparisons of balls are three-valued (``a != 0`` is False for a ball that contains 0), so the
references take decisions from the input floats themselves (the argmax of the logits), never
from comparing computed balls.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import flint
import mpmath
import numpy as np

Number = Any
"""An exact or high-precision number of one system (``mpmath.mpf`` or ``flint.arb``)."""

__all__ = ["ARB", "MPMATH", "Number", "NumberSystem"]


class NumberSystem:
    """The operations a reference needs, for one kind of number (see the module docstring).

    Subclasses define ``name``, ``inf``, `exact`, the elementary functions and `workprec`;
    ``+ - * /`` and unary minus are the numbers' own operators.
    """

    name: str
    inf: Number

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

    # Matrix operations (the linear-algebra references). A matrix is a list of rows of numbers
    # of this system; a vector is a list.

    def matmul(self, a: list[list[Number]], b: list[list[Number]]) -> list[list[Number]]:
        """The product of two matrices at the working precision."""
        raise NotImplementedError

    def solve(self, a: list[list[Number]], b: list[Number]) -> list[Number]:
        """x with A x = b for a square A, at the working precision (NaNs when A is singular,
        or too close to singular for the working precision to tell)."""
        raise NotImplementedError

    def symmetric_eigenvalues(self, a: list[list[Number]]) -> list[Number]:
        """The eigenvalues of a symmetric matrix, in no particular order (NaNs when the working
        precision cannot separate them)."""
        raise NotImplementedError


class MpmathNumbers(NumberSystem):
    """mpmath at the caller's working precision (``mpmath.workprec``)."""

    name = "mpmath"
    inf = mpmath.inf

    def exact(self, value: float | mpmath.mpf) -> mpmath.mpf:
        """``mpmath.mpf(value)`` would round to the working precision (below 53 bits inside a
        low ``workprec``); ``from_float`` converts at 53 bits, exactly. An mpf is returned as
        it is, so references also take the object arrays of `precision.exact.to_mpf_array`."""
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

    def solve(self, a, b):
        """``mpmath.lu_solve`` (LU with partial pivoting at the working precision); NaNs when
        mpmath finds the matrix numerically singular."""
        try:
            return list(mpmath.lu_solve(mpmath.matrix(a), mpmath.matrix(b)))
        except ZeroDivisionError:
            return [mpmath.nan] * len(b)

    def symmetric_eigenvalues(self, a):
        """``mpmath.eigsy`` (Householder tridiagonalisation and implicit QL at the working
        precision)."""
        return list(mpmath.eigsy(mpmath.matrix(a), eigvals_only=True))


class ArbNumbers(NumberSystem):
    """python-flint ``arb`` balls at ``flint.ctx.prec`` (set by `workprec`, then restored)."""

    name = "arb"
    inf = flint.arb.pos_inf()

    def exact(self, value: float) -> flint.arb:
        """``arb(float)`` is an exact ball (radius 0) at every precision."""
        return flint.arb(float(value))

    @contextlib.contextmanager
    def workprec(self, bits: int) -> Iterator[None]:
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

    def exp(self, v: flint.arb) -> flint.arb:
        return v.exp()

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

    def matmul(self, a, b):
        """``arb_mat`` product: rigorous balls at the working precision."""
        return (flint.arb_mat(a) * flint.arb_mat(b)).tolist()

    def solve(self, a, b):
        """``arb_mat.solve``: a rigorous enclosure of the solution; NaN balls when Arb cannot
        prove the matrix nonsingular at the working precision (the engine then climbs).

        When every entry is exact (radius 0: the input floats themselves), the system is
        solved exactly in rationals (``fmpq_mat.solve``, as fast at n = 50) and each component
        rounded once: a solution component that is exactly 0 is then an exact ball, which a
        ball Gaussian elimination never proves (its radius stays positive at any precision).
        """
        exact = _rational_matrix(a, [[v] for v in b])
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
        """``arb_mat.eig`` (certified enclosures, as ``acb_mat.eig``): the real parts of the
        isolated eigenvalue balls; with ``nonstop=True`` an eigenvalue Arb cannot isolate comes
        back as a NaN ball instead of raising (the engine then climbs).

        Arb's eigenvalue search needs about log2(lambda_max / lambda_min) bits beyond those of
        the result to isolate the small eigenvalues of an ill-conditioned matrix: at 113 bits
        the Gram matrix of a 50 x 50 matrix of kappa 1e8 fails, though its entries' radii
        (2**-113 relative) bound the eigenvalues far more tightly. The search therefore runs
        with that many more bits, estimated from the midpoints in float64 (a cost decision
        only: the enclosures are rigorous whatever precision finds them).
        """
        matrix = flint.arb_mat(a)
        with self.workprec(flint.ctx.prec + _eigen_extra_bits(matrix)):
            values = matrix.eig(nonstop=True)
        return [v.real if v.is_finite() else flint.arb("nan") for v in values]


def _rational_matrix(a, b):
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


def _eigen_extra_bits(matrix: flint.arb_mat) -> int:
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


MPMATH = MpmathNumbers()
"""The reference engine's number system."""

ARB = ArbNumbers()
"""Rigorous ball arithmetic (python-flint's Arb)."""
