"""Exact shortcuts: ground truth of sums, differences, variances and dot products without ball
arithmetic.

Every float is a dyadic rational m * 2**e with |m| < 2**53, so a sum of floats is exact in
integers once the terms are put on a common exponent, and a population variance is the exact
rational (N B - A^2) / N^2 (A = sum a_i, B = sum a_i^2 on that exponent). Here those integers are
formed over a whole input vector in numpy (`extract_sums`: Rump, Ogita and Oishi's error-free
extraction, a few passes of five array operations each; `exact_sum`: int64 significand halves summed
per exponent with ``numpy.bincount``, exact below 2**26 terms, where extraction declines;
`exact_square_sum`: Dekker's TwoProduct), and Python's integers only join the few totals. A dot
product of float32-valued factors (every format below float64) needs no TwoProduct: each
product is exact in float64 (`exact_dot`).

A shortcut must give the stored rows of the Arb engine bit for bit (`precision.truth.exact`):
the midpoint Arb would hold at the first working precision, the `Exact` split of that midpoint,
its rounding to every format, the same condition number and ``prec``. The problems' references
(`precision.problems.summation.summation_reference`, ``cancellation.difference_reference``,
``variance.variance_reference``, ``dot.dot_reference``) hand an exact integer to Arb as 53-bit
pieces added left to right (``summation.dyadic``) and divide balls; each Arb operation rounds
its midpoint toward zero (``ARB_RND = ARF_RND_DOWN``) to the working precision. `arb_dyadic`
and `arb_quotient` replay exactly those roundings in integers (tests/truth/test_shortcuts.py
compares them with python-flint), and each inexact midpoint carries a bound on Arb's radius
(`RADIUS_ULPS_PER_OPERATION` ulps per operation), so that `precision.truth.exact` certifies
with that bound and falls back to the Arb engine wherever the bound cannot decide.

A shortcut returns None (use the Arb engine) for inputs it does not cover: an infinity or NaN,
more than `MAX_TERMS` terms, a condition number
within 2**-`COND_TIE_BITS` (relative) of a float64 rounding boundary that Arb's own rounding
could decide either way.

Batch normalisation is not covered: its outputs divide by a square root (irrational), so no
integer form exists and the Arb engine remains the cheapest certified path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from precision.problems import cancellation, dot, summation, variance
from precision.problems.base import Problem

__all__ = [
    "Dyadic",
    "Shortcut",
    "SHORTCUTS",
    "arb_dyadic",
    "arb_quotient",
    "dot_shortcut",
    "exact_dot",
    "exact_square_sum",
    "exact_sum",
    "extract_row_sums_in_place",
    "shortcut_for",
]

MAX_TERMS = 1 << 26
"""Most terms `exact_sum` adds: per exponent it sums significand halves below 2**27 in
float64 (``numpy.bincount``'s weights), exact while the total stays below 2**53."""

PIECE_BITS = 53
"""Width of the pieces ``summation.dyadic`` hands to the number system (exact floats)."""

RADIUS_ULPS_PER_OPERATION = 4
"""Bound on the radius Arb adds per rounded operation, in ulps of the result at the working
precision: Arb adds one ulp (``arf_mag_add_ulp``) and rounds magnitudes up by at most 2**-29;
four leaves a factor of two beyond propagated radii. Only a bound that is too small could make
a row differ from the Arb engine's (a certification Arb would not grant), which the comparison
tests would show; a bound too large only sends an input back to the Arb engine."""

COND_TIE_BITS = 90
"""A relative distance of 2**-COND_TIE_BITS to a float64 rounding boundary below which a
square-root condition number is left to Arb: Arb's midpoint of exp(log(r) / 2) at 113 bits
lies within about 2**-100 relative of the exact value, and its rounding to float64 may go
either way that close."""


@dataclass(frozen=True)
class Dyadic:
    """The exact value man * 2**exp (Python integers)."""

    man: int
    exp: int


@dataclass(frozen=True)
class Shortcut:
    """A shortcut's result: what the Arb engine's evaluation at ``prec`` bits would hold.

    Attributes
    ----------
    outputs : list of (Dyadic, int or None)
        Per output element, Arb's midpoint and the exponent r of a bound 2**r on its radius
        (None: the ball is exact, radius 0).
    cond : float
        ``float(cond.mid())`` of Arb's condition-number ball (inf for an exact zero result).
    """

    outputs: list[tuple[Dyadic, int | None]]
    cond: float


# ---------------------------------------------------------------- exact sums in numpy


def float_integers(x) -> tuple[np.ndarray, np.ndarray]:
    """int64 arrays (m, e) with x_i = m_i * 2**e_i exactly, |m_i| < 2**53, as
    ``summation.dyadic_parts`` forms them (a zero has m = 0, e = -53)."""
    x64 = np.asarray(x, dtype=np.float64).ravel()
    significand, exponent = np.frexp(x64)
    return (significand * 2.0**53).astype(np.int64), exponent.astype(np.int64) - 53


def exact_sum(m: np.ndarray, e: np.ndarray) -> Dyadic:
    """sum_i m_i * 2**e_i exactly, on the exponent min_i e_i (zeros included).

    Each |m_i| < 2**53 is split as m_i = h_i * 2**26 + l_i with |h_i| < 2**27 and 0 <= l_i <
    2**26; ``numpy.bincount`` sums h and l per exponent in float64, exactly since at most
    MAX_TERMS = 2**26 terms give partial sums below 2**53. Only the per-exponent totals meet
    Python's integers. No rounding anywhere: the result is the exact sum.
    """
    return exact_sums(m, e, [None])[0]


SMALL = 24
"""Fewest terms summed in numpy; below, a loop over Python integers costs less (measured)."""


def exact_sums(m: np.ndarray, e: np.ndarray, signs: list) -> list[Dyadic]:
    """`exact_sum` of sign_k * m (sign_k None: m itself; ``"abs"``: |m|) for each entry of
    ``signs``, with one ``numpy.bincount`` for all of them."""
    if m.size > MAX_TERMS:
        raise ValueError(f"exact_sum: at most {MAX_TERMS} terms, got {m.size}")
    if m.size == 0:
        return [Dyadic(0, 0) for _ in signs]
    base = int(e.min())
    columns = [np.abs(m) if sign == "abs" else m for sign in signs]
    if m.size < SMALL:
        shifts = (e - base).tolist()
        return [
            Dyadic(sum(v << k for v, k in zip(c.tolist(), shifts, strict=True)), base)
            for c in columns
        ]
    bins = e - base
    width = int(bins.max()) + 1
    # Column k's high halves go to bins [2k w, 2k w + w), its low halves to the next w.
    offsets = np.arange(2 * len(columns), dtype=np.int64) * width
    halves = [part for c in columns for part in (c >> 26, c & ((1 << 26) - 1))]
    totals = np.bincount(
        (bins[None, :] + offsets[:, None]).ravel(),
        weights=np.concatenate(halves).astype(np.float64),
        minlength=len(offsets) * width,
    ).reshape(len(columns), 2, width)
    return [_join(high, low, base) for high, low in totals]


def _join(high: np.ndarray, low: np.ndarray, base: int) -> Dyadic:
    """sum_k (high_k 2**26 + low_k) 2**(base + k) in Python integers (float64 holding exact
    integers below 2**53)."""
    used = np.flatnonzero((high != 0) | (low != 0))
    highs, lows = high[used].astype(np.int64).tolist(), low[used].astype(np.int64).tolist()
    total = 0
    for shift, h, lo in zip(used.tolist(), highs, lows, strict=True):
        total += ((h << 26) + lo) << shift
    return Dyadic(total, base)


MAX_PASSES = 8
"""Most extraction passes `extract_sums` makes (each takes 51 - log2 n bits of every term)
before it leaves the input to `exact_sums`: eight cover about 300 bits at n = 1000."""


def extract_sums(rows: np.ndarray) -> list[Dyadic] | None:
    """The exact sum of each row of a 2-D float64 array by error-free extraction, or None.

    Rump, Ogita & Oishi's ExtractVector (SIAM J. Sci. Comput. 31(1), 2008, Lemma 3.3): with
    sigma = 2**M, M = (frexp exponent of max|p|) + ceil(log2 n) + 1, so that |p_i| < sigma / 2n,
    q_i = fl(fl(sigma + p_i) - sigma) is exact (Sterbenz) and a multiple of 2**-53 sigma, and
    r_i = fl(p_i - q_i) = p_i - q_i exactly (the error of an addition is a float). The q_i
    sum to less than sigma in magnitude, so in units of 2**-53 sigma every partial sum, in any
    order, is an integer below 2**53: ``numpy.sum`` of the q_i is exact. The remainders r_i
    (|r_i| <= 2**-53 sigma) take the next pass, until all are 0, and each pass's integer joins
    the previous ones as ``total << (unit drop) + count``: no rounding anywhere. One sigma
    serves every row (the largest row's; a larger sigma only extracts fewer bits of a smaller
    row), since a scalar is cheaper to broadcast than a column. None when more than
    MAX_PASSES passes would be needed or sigma leaves [2**-960, 2**1000] (float64's normal
    range with margin for the unit 2**(M - 53)).
    """
    return _extract_in_place(np.array(rows, dtype=np.float64))  # a copy: the passes overwrite it


def _extract_in_place(p: np.ndarray, *, top: float | None = None) -> list[Dyadic] | None:
    """`extract_sums` of the rows of ``p``, which the passes overwrite (no copy); ``top``:
    max|p| where the caller has it."""
    extra = math.ceil(math.log2(max(p.shape[1], 2))) + 1
    counts, unit = [0] * len(p), 0
    for passes in range(MAX_PASSES + 1):
        if top is None or passes > 0:
            top = float(np.abs(p).max(initial=0.0))
        if top == 0.0:
            return [Dyadic(count, unit) for count in counts]
        if passes == MAX_PASSES:
            return None
        exponent = math.frexp(top)[1] + extra
        if not -960 <= exponent <= 1000:
            return None
        sigma = math.ldexp(1.0, exponent)
        q = p + sigma
        q -= sigma  # exact (Sterbenz): q_i is p_i rounded to a multiple of 2**(exponent - 53)
        p -= q  # exact: the rounding error of sigma + p_i
        # Each row's sum of q is an integer number of units 2**(exponent - 53), below 2**53:
        # scaling by a power of two and converting to int is exact.
        parts = (q.sum(axis=1) * 2.0 ** (53 - exponent)).tolist()
        shift = unit - (exponent - 53) if any(counts) else 0
        counts = [(count << shift) + int(part) for count, part in zip(counts, parts, strict=True)]
        unit = exponent - 53
    raise AssertionError("unreachable: the loop returns")


def extract_row_sums_in_place(
    p: np.ndarray, s: np.ndarray, *, tops: list | None = None
) -> list[tuple[Dyadic, Dyadic] | None]:
    """(sum_i p_ri, sum_i s_ri p_ri) exactly for each row r of a 2-D float64 array of finite
    values, each row on its own sigma, with signs s_ri in {-1, 0, 1} (s = sign(p): the sum and
    the sum of magnitudes); the passes overwrite ``p``. None for a row that extraction leaves
    (then sum it by `exact_sums`).

    `_extract_in_place` with a sigma per row: row r takes sigma_r = 2**M_r, M_r = (frexp
    exponent of max_i |p_ri|) + ceil(log2 n) + 1, so Rump, Ogita & Oishi's Lemma 3.3 (SIAM J.
    Sci. Comput. 31(1), 2008) holds row by row: q_ri = fl(fl(sigma_r + p_ri) - sigma_r) is
    exact, p_ri - q_ri is exactly a float, and sum_i |q_ri| < sigma_r, so sum_i q_ri and
    sum_i s_ri q_ri (exact products) are integer numbers of units 2**(M_r - 53) below 2**53
    in every partial sum: ``numpy.sum`` of a row is exact in any order, whatever the other rows
    hold. The signed sum needs no second row: s_ri (p_ri - q_ri) is what a row of s_ri p_ri
    would leave, the remainders being extracted on the same sigma. No rounding anywhere. A row
    is left (None) when it needs more than MAX_PASSES passes or M_r leaves [-960, 1000], as
    `_extract_in_place` leaves a whole input.

    Parameters
    ----------
    p : numpy.ndarray
        ``(rows, n)`` float64, finite (a row of zeros stands for a declined input); overwritten.
    s : numpy.ndarray
        ``(rows, n)`` float64 of -1, 0 and 1.
    tops : list of float, optional, keyword-only
        max_i |p_ri| per row, where the caller has it (saves the first pass a look).

    Returns
    -------
    list of (Dyadic, Dyadic) or None
        Per row, the two exact sums on a common exponent.
    """
    extra = math.ceil(math.log2(max(p.shape[1], 2))) + 1
    counts = [[0, 0, 0] for _ in range(len(p))]  # sum p, sum s p, in units 2**unit
    left = [False] * len(p)
    for passes in range(MAX_PASSES + 1):
        if tops is None:
            tops = np.abs(p).max(axis=1, initial=0.0).tolist()
        exponents = [math.frexp(top)[1] + extra if top else None for top in tops]
        if passes == MAX_PASSES or all(e is None for e in exponents):
            left = [gone or e is not None for gone, e in zip(left, exponents, strict=True)]
            break
        for r, e in enumerate(exponents):
            if e is not None and not -960 <= e <= 1000:
                p[r], exponents[r], left[r] = 0.0, None, True
        _extract_pass(p, s, exponents, counts)
        tops = None
    return [
        None if gone else (Dyadic(c[0], c[2]), Dyadic(c[1], c[2]))
        for c, gone in zip(counts, left, strict=True)
    ]


def _extract_pass(p: np.ndarray, s: np.ndarray, exponents: list, counts: list) -> None:
    """One extraction pass of every row of ``p`` on sigma_r = 2**exponents_r (None: a row with
    nothing left, which any sigma leaves at 0); each such row joins its two extracted integers
    to ``counts`` [sum p, sum s p, unit exponent], in place."""
    sigma = np.array([math.ldexp(1.0, 0 if e is None else e) for e in exponents])[:, None]
    q = p + sigma
    q -= sigma  # exact (Sterbenz): q_ri is p_ri rounded to a multiple of 2**(M_r - 53)
    p -= q  # exact: the rounding error of sigma_r + p_ri
    sums = q.sum(axis=1).tolist()
    q *= s  # exact: a change of sign or a zero
    signed = q.sum(axis=1).tolist()
    for count, e, total, signed_total in zip(counts, exponents, sums, signed, strict=True):
        if e is None:
            continue
        # Each row's sums are integer numbers of units 2**(e - 53) below 2**53: scaling by a
        # power of two and converting to int is exact. Each pass's unit is finer than the last
        # (the remainders lie below it), so the earlier counts shift left.
        unit = e - 53
        shift = count[2] - unit if count[0] or count[1] else 0
        count[0] = (count[0] << shift) + int(math.ldexp(total, -unit))
        count[1] = (count[1] << shift) + int(math.ldexp(signed_total, -unit))
        count[2] = unit


def exact_square_sum(x64: np.ndarray) -> Dyadic:
    """sum_i x_i**2 exactly.

    Dekker's TwoProduct (Veltkamp's split with factor 2**27 + 1) gives x**2 = p + q exactly
    when no step overflows or underflows (Dekker 1971; Higham 2002, sec. 4.4), which holds for
    2**-450 <= |x| <= 2**500: those 2n floats p, q are summed by `exact_sum`. The squares of
    the rest (zeros aside) are formed in Python's integers, m**2 * 2**(2e).
    """
    a = np.abs(x64)
    far = (a != 0) & ((a < 2.0**-450) | (a > 2.0**500))
    near = x64[~far]
    p, q = two_product(near, near)
    total = exact_sum(*float_integers(np.concatenate([p, q])))
    m, e = float_integers(x64[far])
    for mi, ei in zip(m.tolist(), e.tolist(), strict=True):
        total = add_exact(total, Dyadic(mi * mi, 2 * ei))
    return total


def two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker's TwoProduct: p = fl(a b) and q with a b = p + q exactly (no overflow or
    underflow in any step; callers check the exponent range)."""
    p = a * b
    a_hi, a_lo = _veltkamp(a)
    b_hi, b_lo = _veltkamp(b)
    q = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, q


def _veltkamp(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a = hi + lo with hi and lo of at most 26 significant bits each (Veltkamp's split)."""
    c = a * 134217729.0  # 2**27 + 1
    hi = c - (c - a)
    return hi, a - hi


# ---------------------------------------------------------------- Arb's roundings, replayed


def truncate(value: Dyadic, prec: int) -> tuple[Dyadic, bool]:
    """value rounded toward zero to ``prec`` significant bits (Arb's ``ARF_RND_DOWN``), and
    whether that dropped a nonzero bit."""
    size = abs(value.man).bit_length()
    if size <= prec:
        return value, False
    shift = size - prec
    magnitude = abs(value.man) >> shift
    dropped = abs(value.man) & ((1 << shift) - 1) != 0
    return Dyadic(-magnitude if value.man < 0 else magnitude, value.exp + shift), dropped


def add_exact(a: Dyadic, b: Dyadic) -> Dyadic:
    """a + b exactly, on the smaller exponent."""
    base = min(a.exp, b.exp)
    return Dyadic((a.man << (a.exp - base)) + (b.man << (b.exp - base)), base)


def arb_dyadic(value: Dyadic, prec: int) -> tuple[Dyadic, int]:
    """Arb's midpoint of ``summation.dyadic(man, exp, ARB)`` at ``prec`` bits, and the number
    of rounded additions (0: exact).

    The reference cuts |man| into 53-bit pieces from bit 0 up (zero pieces skipped) and adds
    them from the top down to an exact 0, each addition truncated to ``prec`` bits. Partial sums
    of same-signed pieces are top parts of man, so when man spans at most ``prec`` bits (from
    its top bit to its lowest set bit) every addition is exact.
    """
    magnitude = abs(value.man)
    if magnitude == 0 or _span(magnitude) <= prec:
        return value, 0
    sign = -1 if value.man < 0 else 1
    pieces, shift = [], 0
    while magnitude:
        chunk = magnitude & ((1 << PIECE_BITS) - 1)
        if chunk:
            pieces.append(Dyadic(sign * chunk, value.exp + shift))
        magnitude >>= PIECE_BITS
        shift += PIECE_BITS
    total, rounded = Dyadic(0, 0), 0
    for piece in reversed(pieces):
        total, inexact = truncate(add_exact(total, piece), prec)
        rounded += inexact
    return total, rounded


def arb_quotient(a: Dyadic, b: Dyadic, prec: int) -> tuple[Dyadic, bool]:
    """Arb's midpoint of a / b (b != 0) at ``prec`` bits: the quotient truncated toward zero,
    and whether it was inexact.

    floor(|a| 2**k / |b|) with k chosen to leave at least prec + 1 bits, then truncated to prec
    bits: a floor of a floor is the floor of the exact quotient, so this is exact truncation.
    """
    num, den = abs(a.man), abs(b.man)
    k = prec + 1 + den.bit_length() - num.bit_length()
    scaled_num, scaled_den = (num << k, den) if k >= 0 else (num, den << -k)
    q, remainder = divmod(scaled_num, scaled_den)
    negative = (a.man < 0) != (b.man < 0)
    result, dropped = truncate(Dyadic(-q if negative else q, a.exp - b.exp - k), prec)
    return result, remainder != 0 or dropped


def _span(magnitude: int) -> int:
    """Bits from the top set bit to the lowest set bit of a positive integer."""
    return magnitude.bit_length() - ((magnitude & -magnitude).bit_length() - 1)


def radius_exponent(mid: Dyadic, operations: int, prec: int) -> int | None:
    """Exponent r of a bound 2**r on the radius of Arb's ball after ``operations`` rounded
    operations whose results are at most |mid| (None when 0: the ball is exact).

    Each rounded operation adds at most RADIUS_ULPS_PER_OPERATION ulps of 2**(top - prec),
    top = floor(log2 |mid|) + 1, to the radius; r rounds the total up to a power of two.
    """
    if operations == 0:
        return None
    top = abs(mid.man).bit_length() + mid.exp
    return top - prec + math.ceil(math.log2(RADIUS_ULPS_PER_OPERATION * (operations + 1)))


def float_of(value: Dyadic) -> float:
    """The dyadic rounded to the nearest float64, ties to even (``float`` of an arb), +-inf
    beyond float64's range. Python's int / int is correctly rounded at any size."""
    if value.man == 0:
        return 0.0
    try:
        if value.exp >= 0:
            return float(value.man << value.exp)
        return value.man / (1 << -value.exp)
    except OverflowError:
        return math.copysign(math.inf, value.man)


# ---------------------------------------------------------------- the problems


def sum_shortcut(x, prec: int) -> Shortcut | None:
    """``summation.summation_reference`` in Arb at ``prec`` bits: s = sum x_i and
    kappa_sum = sum|x_i| / |s| (inf for s = 0 exactly), from `extract_sums` (`exact_sums`
    where extraction declines)."""
    x64 = np.asarray(x, dtype=np.float64).ravel()
    if x64.size > MAX_TERMS:
        return None
    if x64.size == 0:
        return _replayed_sum(Dyadic(0, 0), Dyadic(0, 0), prec)
    rows = np.empty((2, x64.size))  # filled in place: np.stack costs 5x more
    rows[0] = x64
    np.abs(x64, out=rows[1])
    top = float(rows[1].max())
    if not math.isfinite(top):  # an infinity or NaN (NaN propagates through max)
        return None
    base = _lowest_exponent(x64, float(rows[1].min()))
    sums = _extract_in_place(rows, top=top) or exact_sums(*float_integers(x64), [None, "abs"])
    total, abs_total = (_on_exponent(v, base) for v in sums)
    return _replayed_sum(total, abs_total, prec)


def _lowest_exponent(x64: np.ndarray, smallest: float) -> int:
    """The reference's exponent: min_i e_i of `float_integers` (x_i = m_i 2**e_i, e_i = frexp
    exponent - 53; a zero has e = -53), with ``smallest`` = min|x_i|. The frexp exponent grows
    with |x|, so without zeros the minimum is that of the smallest magnitude: no array."""
    if smallest != 0.0:
        return math.frexp(smallest)[1] - 53
    return int(np.frexp(x64)[1].min()) - 53


def _replayed_sum(total: Dyadic, abs_total: Dyadic, prec: int) -> Shortcut:
    """Arb's ``dyadic(total) `` and ``dyadic(abs_total) / |dyadic(total)|`` at ``prec`` bits
    (`arb_dyadic`, `arb_quotient`), as the sum and dot references form them: the output's
    midpoint with its radius bound, and kappa (inf for an exact zero sum)."""
    mid, operations = arb_dyadic(total, prec)
    output = (mid, radius_exponent(mid, operations, prec))
    if total.man == 0:
        return Shortcut([output], math.inf)
    abs_mid, _ = arb_dyadic(abs_total, prec)
    cond, _ = arb_quotient(abs_mid, Dyadic(abs(mid.man), mid.exp), prec)
    return Shortcut([output], float_of(cond))


def _on_exponent(value: Dyadic, exp: int) -> Dyadic:
    """The same value with exponent ``exp``, as the reference holds it (the value must be a
    multiple of 2**exp: a sum of multiples of it, whatever exponents its terms were split on)."""
    if value.exp >= exp:
        return Dyadic(value.man << (value.exp - exp), exp)
    man = value.man >> (exp - value.exp)
    if man << (exp - value.exp) != value.man:
        raise ValueError("_on_exponent: the value is not a multiple of 2**exp")
    return Dyadic(man, exp)


def difference_shortcut(x, prec: int) -> Shortcut | None:
    """``cancellation.difference_reference``: the sum of [a, -b] in the input's dtype."""
    values = np.asarray(x)
    if values.shape != (2,):
        return None
    return sum_shortcut(np.array([values[0], -values[1]], dtype=values.dtype), prec)


def variance_shortcut(x, prec: int) -> Shortcut | None:
    """``variance.variance_reference`` in Arb at ``prec`` bits: v = S_num 2**(2E) / N^2 with
    S_num = N B - A^2 (x_i = a_i 2**E, E the smallest exponent, zeros included), and
    kappa_var = sqrt(N B / S_num) (inf for S_num = 0)."""
    x64 = np.asarray(x, dtype=np.float64).ravel()
    if x64.size == 0 or x64.size > MAX_TERMS // 2 or not np.isfinite(x64).all():
        return None
    squares = exact_square_sum(x64)
    m, e = float_integers(x64)
    base, n = int(e.min()), x64.size
    a_sum = _on_exponent(exact_sum(m, e), base).man
    b_sum = _on_exponent(squares, 2 * base).man
    s_num = n * b_sum - a_sum * a_sum
    numerator, operations = arb_dyadic(Dyadic(s_num, 2 * base), prec)
    denominator, _ = arb_dyadic(Dyadic(n * n, 0), prec)
    if s_num == 0:
        return Shortcut([(numerator, None)], math.inf)
    mid, inexact = arb_quotient(numerator, denominator, prec)
    cond = _rounded_sqrt(n * b_sum, s_num)
    if cond is None:
        return None
    return Shortcut([(mid, radius_exponent(mid, operations + inexact, prec))], cond)


def _rounded_sqrt(num: int, den: int) -> float | None:
    """sqrt(num / den) (both > 0) rounded to nearest float64, or None when it lies within
    2**-COND_TIE_BITS (relative) of a rounding boundary or outside float64's normal range
    (then Arb's own rounding of its midpoint decides).

    t = isqrt(floor(num 4**k / den)) = floor(sqrt(num / den) 2**k) exactly (isqrt of a floor
    is the floor of the square root), with k giving t at least 128 bits; the bits of t below
    its top 53 decide the rounding, and their distance to half a unit is the distance to the
    boundary, within one unit of t.
    """
    k = max(0, (256 + den.bit_length() - num.bit_length()) // 2 + 1)
    t = math.isqrt((num << (2 * k)) // den)
    shift = t.bit_length() - 53
    rest = t & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if abs(rest - half) <= max(2, t >> COND_TIE_BITS):
        return None
    significand = (t >> shift) + (rest > half)
    exponent = shift - k
    if not -1000 < exponent + 53 < 1000:
        return None
    return math.ldexp(significand, exponent)


def exact_dot(x, y) -> tuple[Dyadic, Dyadic] | None:
    """(sum x_i y_i, sum |x_i y_i|) exactly, or None for an infinity or NaN, or, when a factor
    is not a float32 value, a factor outside TwoProduct's exact range (nonzero |x_i|, |y_i|
    outside [2**-450, 2**500]).

    Factors whose dtype holds only float32 values (float32, float16, bfloat16, the float8
    formats; ``numpy.can_cast(dtype, float32)``) or whose values all are float32 values: the
    float64 product x_i y_i is exact, because two significands of at most 24 bits multiply to
    at most 48 <= 53 bits, and the product's magnitude lies in [2**-298, 2**256) (float32's
    smallest subnormal is 2**-149, its largest value below 2**128), inside float64's normal
    range, so neither underflow nor overflow rounds it. The n exact products are summed by
    `extract_sums` (`exact_sums` where extraction declines). Other factors: every product is
    x_i y_i = p_i + q_i exactly (Dekker's TwoProduct, `two_product`), and the 2n floats are
    summed the same way. The result is the dot product of floats with no rounding at all, and
    the sum of |x_i y_i| for its condition number sum|x_i y_i| / |x . y|.
    """
    a, b = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y))
    if a.shape != b.shape:
        raise ValueError(f"exact_dot: x and y differ in length ({a.size} and {b.size})")
    return _exact_dot64(a, b, narrow=_float32_valued(x, a) and _float32_valued(y, b))


def _exact_dot64(a: np.ndarray, b: np.ndarray, *, narrow: bool) -> tuple[Dyadic, Dyadic] | None:
    """`exact_dot` of float64 vectors; ``narrow``: all of their values are float32 values."""
    form = _exact_products if narrow else _two_products
    rows = form(a, b)
    if rows is None:
        return None
    sums = _extract_in_place(rows)
    if sums is None:  # extraction declined and overwrote the rows: form them again
        sums = [exact_sum(*float_integers(row)) for row in form(a, b)]
    return sums[0], sums[1]


def _float32_valued(original, x64: np.ndarray) -> bool:
    """Whether every value of ``original`` (``x64``: the same values in float64) is a float32
    value: by its dtype where that decides it, else by comparing with a float32 cast."""
    if np.can_cast(np.asarray(original).dtype, np.float32):
        return True
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 casts to inf
        flat = x64.ravel()
        # Full float64 data fails on its first values: a cheap look before the whole cast.
        return all(bool((v.astype(np.float32) == v).all()) for v in (flat[:8], flat))


def _exact_products(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Rows [a_i b_i; |a_i b_i|] of float32-valued factors (exact products, `exact_dot`), or
    None where an infinity or NaN makes a product non-finite."""
    rows = np.empty((2, a.size))
    with np.errstate(invalid="ignore"):  # 0 * inf is NaN, caught by the test below
        np.multiply(a, b, out=rows[0])
    np.abs(rows[0], out=rows[1])
    if not math.isfinite(rows[1].max(initial=0.0)):  # NaN propagates through max
        return None
    return rows


def _two_products(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Rows [p, q; |p|, sign(p) q] with a_i b_i = p_i + q_i (`two_product`), or None outside
    its exact range: |a_i b_i| = |p_i| + sign(p_i) q_i since |q_i| <= ulp(p_i) / 2 <= |p_i|."""
    if not (_in_two_product_range(a) and _in_two_product_range(b)):
        return None
    p, q = two_product(a, b)
    n = a.size
    rows = np.empty((2, 2 * n))  # filled in place: np.stack of fresh arrays costs 5x more
    rows[0, :n], rows[0, n:], rows[1, n:] = p, q, q
    np.abs(p, out=rows[1, :n])
    np.negative(q, out=rows[1, n:], where=np.signbit(p))
    return rows


def _in_two_product_range(v: np.ndarray) -> bool:
    """Whether every |v_i| is 0 or in [2**-450, 2**500] (NaN and inf are not): there Veltkamp's
    split and TwoProduct neither overflow nor underflow (`exact_square_sum`)."""
    w = np.abs(v)
    if not w.max(initial=0.0) <= 2.0**500:  # NaN compares False too
        return False
    small = w < 2.0**-450
    return not small.any() or not w[small].any()


def dot_shortcut(xy, prec: int) -> Shortcut | None:
    """``dot.dot_reference`` in Arb at ``prec`` bits: s = sum x_i y_i and kappa_dot =
    sum|x_i y_i| / |s| (inf for s = 0 exactly), from `exact_dot`.

    The reference holds both sums on the exponent of its smallest product piece
    (``dot.product_parts``: x_i y_i = a b 2**(f + g) with f, g the exponents of
    `float_integers`, zeros included), which decides how Arb cuts them in pieces.
    """
    values = np.asarray(xy)
    if values.dtype == object:  # mpf values: float64 may not hold them; the balls decide
        return None
    if values.ndim != 2 or values.shape[0] != 2 or values.shape[1] > MAX_TERMS // 2:
        return None
    v64 = values.astype(np.float64)  # exact: every registry format is a subset of float64
    found = _exact_dot64(v64[0], v64[1], narrow=_float32_valued(values, v64))
    if found is None:
        return None
    exponents = np.frexp(v64)[1]
    base = int((exponents[0] + exponents[1]).min()) - 2 * 53
    total, abs_total = (_on_exponent(v, base) for v in found)
    return _replayed_sum(total, abs_total, prec)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class _Entry:
    reference: Callable  # the reference the shortcut replays (checked by identity)
    shortcut: Callable[[np.ndarray, int], Shortcut | None]


SHORTCUTS: dict[str, _Entry] = {
    "summation": _Entry(summation.summation_reference, sum_shortcut),
    "weight_update": _Entry(summation.summation_reference, sum_shortcut),
    "cancellation": _Entry(cancellation.difference_reference, difference_shortcut),
    "variance": _Entry(variance.variance_reference, variance_shortcut),
    "dot": _Entry(dot.dot_reference, dot_shortcut),
}
"""Problem name -> the shortcut of its reference."""


def shortcut_for(problem: Problem) -> Callable[[np.ndarray, int], Shortcut | None] | None:
    """The shortcut of ``problem``, or None: only when its name is registered *and* its
    reference is the very function the shortcut replays (a user's problem of the same name, or
    a changed reference, takes the Arb engine)."""
    entry = SHORTCUTS.get(problem.name)
    if entry is None or problem.reference is not entry.reference:
        return None
    return entry.shortcut
