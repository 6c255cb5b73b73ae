"""Double-double ("double-word") arithmetic on numpy arrays, with proved error bounds.

A double-double is an unevaluated sum ``hi + lo`` of two float64 arrays with
``hi = RN(hi + lo)``: about 106 bits. Every function here works elementwise on whole arrays
(no Python loop per element), which is what makes certified enclosures of the softmax family
cost a few numpy passes instead of a ball operation per element (`precision.truth.enclosed`).

The error-free transformations are exact (no rounding error at all) while nothing overflows and,
for the products, the factors' exponents keep the partial products normal:

* `two_sum` (Knuth; Møller): s + e = a + b exactly, s = RN(a + b), any a, b.
* `fast_two_sum` (Dekker): the same when |a| >= |b| (or a = 0).
* `two_prod` (Dekker, with Veltkamp's split): p + e = a b exactly, p = RN(a b), for
  |a|, |b| < 2**995 and |a b| above 2**-969 (every partial product normal), or a b = 0.

The double-double operations round; their relative error bounds are those proved by Joldes,
Muller and Popescu, "Tight and rigorous error bounds for basic building blocks of double-word
arithmetic", ACM TOMS 44(2), 2017 (u = 2**-53, results normal), which `ERROR` rounds up:

* `add` (their Algorithm 6, AccurateDWPlusDW): 3 u**2 + 13 u**3.
* `add_float` (Algorithm 4, DWPlusFP): 2 u**2.
* `mul_float` (Algorithm 7, DWTimesFP1): 1.5 u**2 + 4 u**3.
* `mul` (Algorithm 10, DWTimesDW1): 7 u**2.

Inputs must be double-doubles themselves (``|lo| <= ulp(hi) / 2``), as every result is.
"""

from __future__ import annotations

import functools
import math

import flint
import numpy as np

from precision.core.arb_linalg import arb_workprec

__all__ = [
    "ERROR",
    "EXP_DOMAIN",
    "EXP_ERROR",
    "U",
    "add",
    "add_float",
    "exp_scaled",
    "fast_two_sum",
    "mul",
    "mul_float",
    "two_prod",
    "two_sum",
]

U = 2.0**-53
"""Unit roundoff of float64 (rounding to nearest)."""

ERROR = 8 * U * U
"""A bound on the relative error of every double-double operation of this module: the largest
proved bound (7 u**2, `mul`) rounded up."""

_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's constant for 53-bit floats


def two_sum(a, b):
    """(s, e) with s = RN(a + b) and s + e = a + b exactly (Knuth's TwoSum, 6 operations)."""
    s = a + b
    b_virtual = s - a
    e = (a - (s - b_virtual)) + (b - b_virtual)
    return s, e


def fast_two_sum(a, b):
    """(s, e) with s = RN(a + b) and s + e = a + b exactly, given |a| >= |b| or a = 0
    (Dekker's Fast2Sum, 3 operations)."""
    s = a + b
    return s, b - (s - a)


def _split(a):
    """a = hi + lo exactly, hi and lo of at most 26 significant bits (Veltkamp; |a| < 2**995)."""
    c = a * _SPLITTER
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b):
    """(p, e) with p = RN(a b) and p + e = a b exactly (Dekker's TwoProduct; range in the
    module docstring)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, e


def add(x_hi, x_lo, y_hi, y_lo):
    """x + y for double-doubles x and y: relative error at most 3 u**2 + 13 u**3 (Joldes,
    Muller and Popescu 2017, Algorithm 6, AccurateDWPlusDW)."""
    s_hi, s_lo = two_sum(x_hi, y_hi)
    t_hi, t_lo = two_sum(x_lo, y_lo)
    c = s_lo + t_hi
    v_hi, v_lo = fast_two_sum(s_hi, c)
    w = t_lo + v_lo
    return fast_two_sum(v_hi, w)


def add_float(x_hi, x_lo, y):
    """x + y for a double-double x and a float y: relative error at most 2 u**2 (Algorithm 4,
    DWPlusFP)."""
    s_hi, s_lo = two_sum(x_hi, y)
    v = x_lo + s_lo
    return fast_two_sum(s_hi, v)


def mul_float(x_hi, x_lo, y):
    """x y for a double-double x and a float y: relative error at most 1.5 u**2 + 4 u**3
    (Algorithm 7, DWTimesFP1)."""
    c_hi, c_lo1 = two_prod(x_hi, y)
    c_lo2 = x_lo * y
    t_hi, t_lo1 = fast_two_sum(c_hi, c_lo2)
    t_lo2 = t_lo1 + c_lo1
    return fast_two_sum(t_hi, t_lo2)


def mul(x_hi, x_lo, y_hi, y_lo):
    """x y for double-doubles x and y: relative error at most 7 u**2 (Algorithm 10,
    DWTimesDW1)."""
    c_hi, c_lo1 = two_prod(x_hi, y_hi)
    t_lo = x_hi * y_lo
    c_lo2 = t_lo + x_lo * y_hi
    c_lo3 = c_lo1 + c_lo2
    return fast_two_sum(c_hi, c_lo3)


# ---------------------------------------------------------------- exp


EXP_DOMAIN = 2.0**19
"""Largest |x_hi| `exp_scaled` takes: the reduction's k = rint(x / ln 2) then has at most 20
bits, so that k * LN2_PIECES[0] (32 bits) is exact."""

EXP_ERROR = 2.0**-100
"""A bound on the relative error of `exp_scaled`: 2**k (hi + lo) = exp(x) (1 + theta) with
|theta| <= EXP_ERROR. The analysis (`exp_scaled`) gives about 2**-102.2."""

_TABLE_STEP = 4096
"""exp(r) = exp(j / 4096) exp(t), |t| <= 2**-13: `_exp_table` holds exp(j / 4096)."""

_TABLE_ERROR = 2.0**-105
"""Proved at construction (in Arb): each table entry and constant is within this relative
distance of the number it stands for."""

_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(8))  # RN(1 / i!), as Python divides


@functools.cache
def _ln2_pieces() -> tuple[float, float, float]:
    """ln 2 = L1 + L2 + L3 + delta: L1 of 32 significant bits (so that k L1 is exact for
    |k| < 2**21), L2 = RN(ln 2 - L1), L3 = RN(ln 2 - L1 - L2), |delta| <= 2**-135 (checked in
    Arb)."""
    with arb_workprec(512):
        ln2 = flint.arb(2).log()
        l1 = math.floor(float(ln2 * 2**32)) / 2**32
        l2 = float(ln2 - l1)
        l3 = float(ln2 - l1 - l2)
        residual = abs(ln2 - l1 - l2 - l3)
        if not residual < flint.arb(2) ** -135:
            raise ArithmeticError("double_double: ln 2 pieces not within 2**-135")
    return l1, l2, l3


@functools.cache
def _exp_table() -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo): exp(j / 4096) as double-doubles for j = -1424 ... 1424 (index j + 1424),
    each within _TABLE_ERROR relative (checked in Arb, which makes the check rigorous)."""
    js = range(-_TABLE_HALF, _TABLE_HALF + 1)
    hi, lo = np.empty(len(js)), np.empty(len(js))
    with arb_workprec(256):
        for i, j in enumerate(js):
            value = (flint.arb(j) / _TABLE_STEP).exp()
            h = float(value.mid())
            h, low = _normalised(h, float(value - h))
            if not abs(value - h - low) < _TABLE_ERROR * value:
                raise ArithmeticError(f"double_double: exp({j}/4096) not within 2**-105")
            hi[i], lo[i] = h, low
    return hi, lo


_TABLE_HALF = 1424
"""Largest |j| the reduction can produce: |r| <= ln 2 (1/2 + 2**-32) + 2**-34, so
|r * 4096| <= 1419.7 and j = rint of it (checked by `exp_scaled`'s assertion of range)."""


@functools.cache
def _sixth() -> tuple[float, float]:
    """1/6 as a double-double within _TABLE_ERROR relative (checked in Arb)."""
    with arb_workprec(256):
        value = flint.arb(1) / 6
        h = float(value.mid())
        h, low = _normalised(h, float(value - h))
        if not abs(value - h - low) < _TABLE_ERROR * value:
            raise ArithmeticError("double_double: 1/6 not within 2**-105")
    return h, low


def _normalised(hi: float, lo: float) -> tuple[float, float]:
    """The same sum with hi = RN(hi + lo) (Fast2Sum, exact for |hi| >= |lo|)."""
    s = hi + lo
    return s, lo - (s - hi)


def exp_scaled(x_hi, x_lo):
    """exp(x) of a double-double x as 2**k (hi + lo), elementwise, within EXP_ERROR relative.

    Parameters
    ----------
    x_hi, x_lo : numpy.ndarray
        A double-double array with every |x_hi| <= EXP_DOMAIN (checked: ValueError otherwise;
        the caller keeps other elements out, e.g. by zeroing them and discarding the result).

    Returns
    -------
    k : numpy.ndarray of int64
    hi, lo : numpy.ndarray
        A double-double in [0.70, 1.43].

    Notes
    -----
    Tang's table method in double-double arithmetic (Muller, *Elementary Functions*, 3rd ed.,
    ch. 6), u = 2**-53:

    1. k = rint(x / ln 2) and r = x - k ln 2 with ln 2 = L1 + L2 + L3 (`_ln2_pieces`):
       x_hi - k L1 by TwoSum (exact), k L2 by TwoProduct (exact), k L3 rounded (2**-119);
       three double-double additions of results below 0.36: |r - r_computed| <= 7.1 u**2 * 0.36
       + 2**-119 + 2**-115 <= 2**-104.6 absolute.
    2. j = rint(4096 r_hi), t = (r_hi - j / 4096) + r_lo: the subtraction is exact (Sterbenz:
       r_hi lies within [(j - 1/2), (j + 1/2)] / 4096), |t| <= 2**-13 (1 + 2**-40) = tau.
    3. exp(t) = 1 + t (1 + t (1/2 + t (1/6 + t R(t)))), R(t) = 1/24 + t/120 + t**2/720 +
       t**3/5040 + ..., truncated after t**7: at most tau**8 / 8! e**tau <= 2**-119.3. R is
       evaluated in float64 on t_hi (error <= 3 u / 24 + 2**-72.9 <= 2**-56.3), t R rounded once
       (<= 2**-68.5 in all), which the t**3 in front shrinks to 2**-107.5; the double-double
       steps add at most 2 u**2 (the last addition to 1) and 7 u**2 tau: exp(t) within 2**-104.7.
    4. exp(x) = 2**k exp(j / 4096) exp(t): one double-double product (7 u**2 = 2**-103.2) of the
       table entry (2**-105) and exp(t). In all
       2**-103.2 + 2**-105 + 2**-104.7 + 2**-104.6 (from r) <= 2**-102.2 < EXP_ERROR.
    """
    x_hi = np.asarray(x_hi, dtype=np.float64)
    x_lo = np.asarray(x_lo, dtype=np.float64)
    if not (np.abs(x_hi) <= EXP_DOMAIN).all():
        raise ValueError("exp_scaled: |x| beyond EXP_DOMAIN (or not finite)")
    l1, l2, l3 = _ln2_pieces()
    k = np.rint(x_hi * (1.0 / math.log(2.0)))
    a_hi, a_lo = two_sum(x_hi, -(k * l1))
    b_hi, b_lo = two_prod(k, l2)
    r_hi, r_lo = add(a_hi, a_lo, -b_hi, -b_lo)
    r_hi, r_lo = add_float(r_hi, r_lo, x_lo)
    r_hi, r_lo = add_float(r_hi, r_lo, -(k * l3))
    j = np.rint(r_hi * _TABLE_STEP)
    if not (np.abs(j) <= _TABLE_HALF).all():
        raise ArithmeticError("exp_scaled: reduced argument outside the table")
    t_hi, t_lo = two_sum(r_hi - j / _TABLE_STEP, r_lo)
    c = _TAYLOR
    tail = ((c[7] * t_hi + c[6]) * t_hi + c[5]) * t_hi + c[4]
    h_hi, h_lo = add_float(*_sixth(), t_hi * tail)
    h_hi, h_lo = add_float(*mul(t_hi, t_lo, h_hi, h_lo), 0.5)
    h_hi, h_lo = add_float(*mul(t_hi, t_lo, h_hi, h_lo), 1.0)
    h_hi, h_lo = add_float(*mul(t_hi, t_lo, h_hi, h_lo), 1.0)
    table_hi, table_lo = _exp_table()
    index = j.astype(np.intp) + _TABLE_HALF
    hi, lo = mul(table_hi[index], table_lo[index], h_hi, h_lo)
    return k.astype(np.int64), hi, lo
