"""Vectorised certification of Arb output balls: the common case decided in numpy.

`precision.truth.exact` certifies every output ball of the Arb engine and rounds its midpoint to
each output format. Done one ball at a time on exact integers (``exact._ball``) that costs more than
the Arb evaluation itself. Here every ball is exported once, with five python-flint calls per
ball (one of which makes a new ball), as three arrays:

* ``hi = RN(mid)``, the midpoint rounded to nearest (``float(arb)``),
* ``lo = RN(mid - hi)``, from an Arb subtraction made exact by its precision (the midpoint's bit
  count, ``arb.bits``), so that ``hi + lo`` is the midpoint to about 2**-106 relative (a
  double-double),
* ``accuracy``, Arb's relative accuracy of the ball (``arb.rel_accuracy_bits``), from which
  2**-(accuracy + 2) |mid| < rad < 2**-accuracy |mid| (`radius_bounds`): enough for every
  decision, whose margins are many orders of magnitude wider than a factor of four, at a
  third of the cost of exporting the radius itself.

A ball whose midpoint is beyond float64's normal range (softmax components of e**-5000,
exp(1e308)) is exported divided by a power of two (`_export_far`).

`decide` then takes, over all balls and formats at once, only the decisions it can take with
certainty, each with a margin that covers every rounding of its own float64 arithmetic; a ball
it cannot settle (a midpoint within about 2**-48 quanta of a rounding boundary, such as an exact
tie; one in float64's subnormal range for a float64 output; a NaN or infinite ball) is left to
the exact per-ball path, which stays the definition of the rule. Whatever is decided here is
therefore the exact path's answer, bit for bit: the rounding of the midpoint to each format, the
`Exact` split of the midpoint, whether the ball certifies (rad <= tolerance * |mid| and both
endpoints round alike) and, for deciding to climb early, whether it certainly does not.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import NamedTuple

import flint
import numpy as np

from precision.core.formats import Format
from precision.core.metrics import EXP_LIMIT
from precision.core.numbers import ARB

__all__ = ["Decisions", "Midpoints", "decide", "export"]

FLOOR = 2.0**-960
"""Smallest |hi| exported as it is. Above it every quantity `decide` forms stays a normal
float64 or underflows harmlessly: the quanta of every format (at least 2**-1012 at this size),
the agreement bound rad * 2**80 of a radius that underflowed, and ``lo`` scaled into the split.
A smaller midpoint (softmax components below 1e-289) is exported scaled (`_export_far`)."""

SLACK = 2.0**-48
"""Relative margin on every computed distance to a rounding boundary. Each distance is at most
four float64 roundings away from the exact one (each within 2**-53 of its result) plus the
double-double's own error (|mid - hi - lo| <= 2**-53 |lo|), so the computed distance is within
2**-50 of the sum of the magnitudes involved; 2**-48 leaves a factor of four."""

TINY = 2.0**-1000
"""Absolute margin (in quanta) for scaled terms that fell into float64's subnormal range."""

EXPORT_PREC = 1 << 16
"""Working precision of the exported ``mid - hi``, and the longest midpoint (bits) exported: the
difference is exact for every midpoint of at most this many bits (`export`), and a longer one is
left to the exact path. Arb's cost of an exact subtraction depends on its operands, not on this
cap (measured: the same at 113 bits and at 2**16)."""


@dataclass(frozen=True)
class Midpoints:
    """Output balls exported as float64 arrays (module docstring), one entry per ball.

    Attributes
    ----------
    hi, lo : numpy.ndarray
        ``RN(mid)`` and ``RN(mid - hi)``; meaningful only where ``valid``.
    accuracy : numpy.ndarray of int64
        ``arb.rel_accuracy_bits``, clipped to +-ACCURACY_CLIP: the radius lies strictly between
        2**-(accuracy + 2) |mid| and 2**-accuracy |mid| (`radius_bounds`; 0 for an exact ball,
        whose accuracy is clipped from above).
    valid : numpy.ndarray of bool
        Finite ball (midpoint and radius) with ``FLOOR <= |hi|``, ``hi`` provably the nearest
        float to the midpoint and ``lo`` the exact difference rounded once (a midpoint of at
        most EXPORT_PREC bits; a ``lo`` of 0 only for an exactly representable midpoint).
    zero : numpy.ndarray of bool
        The ball is exactly 0 (midpoint and radius 0).
    scale : numpy.ndarray of int64
        0 for a ball exported as it is; for one beyond float64's normal range (`_export_far`)
        the exponent S of the power of two it was divided by (hi, lo and accuracy then
        describe ball / 2**S, whose radius Arb may have rounded up), clipped to +-2**61.
    """

    hi: np.ndarray
    lo: np.ndarray
    accuracy: np.ndarray
    valid: np.ndarray
    zero: np.ndarray
    scale: np.ndarray


def export(balls) -> Midpoints:
    """Export a sequence of ``flint.arb`` balls as `Midpoints`, one pass of C calls each.

    ``float(arb)`` rounds the midpoint to nearest in current python-flint (older versions
    truncated); rather than trusting it, the export proves it: ``|lo| < ulp(hi) / 2`` (a quarter
    ulp below a power of two) holds only for the nearest float. The difference ``mid - hi`` is
    formed by subtracting hi from the ball at EXPORT_PREC bits: for a midpoint of b <= EXPORT_PREC
    bits (``arb.bits``) and a hi in float64's normal range it is exact (a midpoint of b <= 53 bits
    is hi itself; a longer one m * 2**k differs from hi, a multiple of 2**k, by at most half an
    ulp of hi, 2**(k + b - 54): b - 53 bits), so ``float`` of it is ``RN(mid - hi)``.
    """
    balls = list(balls)
    n = len(balls)
    hi = np.fromiter(map(float, balls), np.float64, n)
    accuracy = np.fromiter(map(flint.arb.rel_accuracy_bits, balls), np.int64, n)
    bits = np.fromiter(map(flint.arb.bits, balls), np.int64, n)
    with ARB.workprec(EXPORT_PREC):
        lo = np.fromiter(map(float, map(operator.sub, balls, hi.tolist())), np.float64, n)
    np.clip(accuracy, -ACCURACY_CLIP, ACCURACY_CLIP, out=accuracy)
    # An infinite radius has the lowest accuracy Arb reports (clipped here): such a ball, like
    # one 2**4096 times wider than its midpoint, is the exact path's.
    valid = (accuracy > -ACCURACY_CLIP) & (bits <= EXPORT_PREC)
    valid &= np.isfinite(hi) & np.isfinite(lo) & (np.abs(hi) >= FLOOR)
    # lo = 0 also when 0 < |mid - hi| < 2**-1075: it is exact only for a midpoint of at most
    # 53 bits (then hi is the midpoint; a longer one is not a float, so mid - hi != 0).
    valid &= (lo != 0) | (bits <= 53)
    valid &= _nearest(hi, lo, valid)
    zero = np.zeros(n, bool)
    for i in np.flatnonzero(hi == 0).tolist():
        zero[i] = balls[i].is_zero()
    scale = np.zeros(n, np.int64)
    far = ~zero & (np.isinf(hi) | (np.abs(hi) < FLOOR))
    if far.any():
        _export_far(balls, np.flatnonzero(far).tolist(), hi, lo, accuracy, valid, scale)
    return Midpoints(hi, lo, accuracy, valid, zero, scale)


ACCURACY_CLIP = 1 << 12
"""Bound on the exported accuracy: 2**-4096 |hi| underflows to 0 for every float64 hi, so
clipping from above changes no radius bound (`radius_bounds`) while keeping the exponents within
``numpy.ldexp``'s range (an exact ball has accuracy about 2**62); a ball clipped from below
(an infinite radius, about -2**62) is not exported (`export`)."""


def radius_bounds(hi: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Floats (down, up) with down <= rad <= up for the radius of each exported ball.

    Arb's relative error of a ball is ``MAG_EXP(rad) + 1 - ARF_EXP(mid)`` (``arb_rel_error_bits``)
    and its accuracy the negative of that; with ``2**(E - 1) <= |mid| < 2**E`` and
    ``2**(M - 1) <= rad < 2**M`` (Arb's ``arf`` and normalised ``mag`` exponents), that is
    ``2**-(accuracy + 2) |mid| < rad < 2**-accuracy |mid|``. As |mid| <= |hi| (1 + 2**-53),
    ``|hi| (1 + 2**-51)`` rounded to nearest is at least |mid| (and ``|hi| (1 - 2**-51)`` at most),
    the scaling by a power of two is exact or rounds once in the subnormal range, and the
    float one step outward covers that. An exact ball (rad = 0) gets 0 and 2**-1074.
    """
    magnitude = np.abs(hi)
    # A bound beyond float64's range is inf (up) or underflows to 0 (down): still a bound.
    with np.errstate(over="ignore", under="ignore"):
        up = np.nextafter(np.ldexp(magnitude * (1 + 2.0**-51), -accuracy), np.inf)
        down = np.nextafter(np.ldexp(magnitude * (1 - 2.0**-51), -accuracy - 2), 0.0)
    return down, up


FAR_BITS = 79
"""Fewest midpoint bits a ball beyond float64's range needs to be decided here. ``exact._ball``
replaces a radius below a quarter of the midpoint's last bit (and below 2**-1202) by that
quarter; with at least 79 bits that stand-in still passes the agreement test, as the true
radius does, so the exact rule's answer is the true one. A shorter midpoint takes the exact
path."""


def _export_far(balls, far, hi, lo, accuracy, valid, scale) -> None:
    """Export the balls ``far`` (midpoint beyond float64's normal range) divided by a power of
    two, in place.

    The divisor is ``2**S`` with S a multiple of 64 at most the midpoint's top bit (cached, so
    that a vector of softmax components of e**-1000 ... e**-10000 needs few), which brings the
    midpoint to [2**-1, 2**63): its split is then that of the ball's, exponent shifted by S,
    and whether every format rounds it to 0 or overflows follows from the shifted exponent
    (`decide`). Arb multiplies by a power of two exactly (the midpoint has at most EXPORT_PREC
    bits, checked) and rounds the radius up, so the exported accuracy bounds the radius from
    above only.
    """
    kept, shifts = [], []
    for i in far:
        if not balls[i].is_finite():  # NaN or infinite: the exact path's
            continue
        man, exp = balls[i].mid().man_exp()
        bits = man.bit_length()
        if FAR_BITS <= bits <= EXPORT_PREC:
            kept.append(i)
            shifts.append((int(exp) + bits) // 64 * 64)
    if not kept:
        return
    with ARB.workprec(EXPORT_PREC):
        scaled = [balls[i] * _power_of_two(-shift) for i, shift in zip(kept, shifts, strict=True)]
    sub = export(scaled)
    hi[kept], lo[kept], accuracy[kept] = sub.hi, sub.lo, sub.accuracy
    valid[kept] = sub.valid & (sub.scale == 0)
    limit = 1 << 61  # beyond EXP_LIMIT, within int64 once the split's exponent is added
    scale[kept] = [max(-limit, min(limit, shift)) for shift in shifts]


@functools.lru_cache(maxsize=1024)
def _power_of_two(exp: int) -> flint.arb:
    """The exact ball 2**exp (one bit: exact at any precision)."""
    return flint.arb(flint.arf((1, exp)))


def _nearest(hi: np.ndarray, lo: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Whether ``hi`` is provably RN(mid), given ``lo = RN(mid - hi)``.

    ``|lo| < h`` with h half the gap to hi's neighbour on lo's side (a quarter ulp below a
    power of two) implies ``|mid - hi| < h``, since rounding is monotone and h is a float; so
    no other float is as near. A tie (``|lo| == h``) is left to the exact path.
    """
    a = np.where(valid, np.abs(hi), 1.0)
    lo = np.where(valid, lo, 0.0)
    mantissa, exponent = np.frexp(a)
    # Half an ulp, 2**(exponent - 54); at max, that of the next float as if it existed.
    below_power = (mantissa == 0.5) & (lo != 0) & (np.signbit(lo) != np.signbit(hi))
    half_gap = np.ldexp(1.0, exponent - 54 - below_power)
    return np.abs(lo) < half_gap


@dataclass(frozen=True)
class Decisions:
    """What `decide` settled, per ball (columns) and format (rows of ``rounded``).

    Attributes
    ----------
    hi, lo, exp : numpy.ndarray
        The `Exact` split of each midpoint: ``mid = (hi + lo) * 2**exp`` with
        ``2**(exp-1) <= |mid| < 2**exp``, ``hi = RN(mid / 2**exp)`` (which may be +-1),
        ``lo = RN(mid / 2**exp - hi)``; exp saturates at +-EXP_LIMIT, as in ``exact``.
    rounded : numpy.ndarray
        ``(formats, balls)`` float64: the midpoint correctly rounded to each format (overflow
        gives +-inf, or a NaN of the sign for formats without infinities).
    settled : numpy.ndarray of bool
        The split and every format's rounding are known (elsewhere they are placeholders).
    certified : numpy.ndarray of bool
        Certainly certified in every format.
    refuted : numpy.ndarray of bool
        Certainly not certified (the radius exceeds the agreement tolerance).
    """

    hi: np.ndarray
    lo: np.ndarray
    exp: np.ndarray
    rounded: np.ndarray
    settled: np.ndarray
    certified: np.ndarray
    refuted: np.ndarray


def decide(mids: Midpoints, fmts: list[Format], tolerance_denominator: int) -> Decisions:
    """Settle what can be settled with certainty, over all balls and formats at once.

    Parameters
    ----------
    mids : Midpoints
    fmts : list of Format
        Output formats of precision at most 53 bits.
    tolerance_denominator : int
        1 / AGREEMENT: a ball certifies only if ``rad * tolerance_denominator <= |mid|``.

    Returns
    -------
    Decisions
        A ball is settled when its split is exact from the exported floats (`_split`) and in
        every format its midpoint lies farther than the margin from the rounding boundaries
        around it (`_boundaries`; also beyond float64's range, where that means rounding to
        a zero of its sign, or overflowing). It is certified when moreover the agreement test
        holds with the radius rounded up and the whole ball lies strictly between those
        boundaries: then both endpoints round to the midpoint's value, as the exact rule asks.
    """
    valid = mids.valid
    # Placeholders for unsettled balls keep numpy's arithmetic quiet and meaningless there.
    hi = np.where(valid, mids.hi, 1.0)
    lo = np.where(valid, mids.lo, 0.0)
    accuracy = np.where(valid, mids.accuracy, ACCURACY_CLIP)
    sign = np.copysign(1.0, hi)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        split_hi, split_lo, split_exp, split_ok = _split(hi, lo)
        rounded, distances = _boundaries(np.abs(hi), lo * sign, sign, mids.scale, fmts)
        rad_down, rad_up = radius_bounds(hi, accuracy)
        agrees, disagrees = _agreement(np.abs(hi), rad_up, rad_down, tolerance_denominator)
        inside = _inside(distances, None).all(axis=0)
        ball_inside = _inside(distances, rad_up).all(axis=0)
    settled = valid & split_ok & inside
    certified = settled & agrees & ball_inside
    # A scaled radius is an upper bound only: no refutation from it.
    refuted = valid & disagrees & (mids.scale == 0)
    exp = split_exp + mids.scale
    if mids.scale.any():  # saturated as _split_dyadic does (exp(1e308) and beyond)
        exp = np.minimum(np.maximum(exp, -EXP_LIMIT), EXP_LIMIT)
    decided = Decisions(split_hi, split_lo, exp, rounded, settled, certified, refuted)
    return _with_zeros(decided, mids.zero) if mids.zero.any() else decided


def _with_zeros(d: Decisions, zero: np.ndarray) -> Decisions:
    """An exact 0 (radius 0) certifies and rounds to +0 in every format; its split is 0."""
    return Decisions(
        np.where(zero, 0.0, d.hi),
        np.where(zero, 0.0, d.lo),
        np.where(zero, 0, d.exp),
        np.where(zero, 0.0, d.rounded),
        d.settled | zero,
        d.certified | zero,
        d.refuted & ~zero,
    )


def _split(hi: np.ndarray, lo: np.ndarray):
    """The `Exact` split (hi, lo, exp) of the double-double hi + lo, and where it is exact.

    ``exp`` is one more than the binade of the midpoint, not of hi: when hi is a power of two
    that the midpoint lies just below (lo of the other sign), the midpoint's binade is one lower
    and its normalised hi is exactly +-1, as ``exact._split_dyadic`` makes it. Scaling by a
    power of two commutes with rounding to nearest unless a value is subnormal, so the scaled
    lo is exactly ``RN((mid - hi) / 2**exp)`` when lo and the scaled lo are both normal (or lo
    is an exact 0).
    """
    mantissa, exponent = np.frexp(hi)
    # Signs compared by sign bit: lo * hi can underflow to -0.
    below = (np.abs(mantissa) == 0.5) & (lo != 0) & (np.signbit(lo) != np.signbit(hi))
    exp = exponent.astype(np.int64) - below
    split_lo = np.ldexp(lo, -exp.astype(np.int32))
    normal = np.float64(2.0**-1022)
    ok = (lo == 0) | ((np.abs(lo) >= normal) & (np.abs(split_lo) >= normal))
    return np.ldexp(hi, -exp.astype(np.int32)), split_lo, exp, ok


class _Columns(NamedTuple):
    """Per-format constants as ``(formats, 1)`` columns that broadcast against the balls."""

    p: np.ndarray  # precision (int64)
    emin: np.ndarray
    emax: np.ndarray
    top: np.ndarray  # largest significand at emax (float64)
    power: np.ndarray  # 2**(p - 1), the significand of a power of two (float64)
    overflow: np.ndarray  # inf, or NaN for formats without infinities


@functools.lru_cache(maxsize=64)
def _columns(fmts: tuple[Format, ...]) -> _Columns:
    def column(values, dtype=np.float64):
        return np.array(values, dtype=dtype)[:, None]

    return _Columns(
        column([f.p for f in fmts], np.int64),
        column([f.emin for f in fmts], np.int64),
        column([f.emax for f in fmts], np.int64),
        column([f.max_significand or 2**f.p - 1 for f in fmts]),
        column([2.0 ** (f.p - 1) for f in fmts]),
        column([np.inf if f.has_inf else np.nan for f in fmts]),
    )


class _Distances(NamedTuple):
    """Distances (in units ``2**unit``, positive inside) from the midpoint to the lower and
    upper rounding boundary of each format, each with a bound on its computed error, and the
    unit's exponent relative to the ball's scale; ``(formats, balls)`` arrays. The upper
    distance of an overflow is infinite."""

    low: np.ndarray
    low_error: np.ndarray
    high: np.ndarray
    high_error: np.ndarray
    unit: np.ndarray


def _boundaries(a_hi, a_lo, sign, scale, fmts: list[Format]):
    """The midpoint's rounding to each format and its `_Distances` to the boundaries around it.

    Everything is done on the magnitude ``a = (a_hi + a_lo) * 2**scale`` (a_lo carries the
    sign relative to the midpoint) in units of the quantum ``q = 2**(max(e, emin) - p + 1)``
    of hi's binade e, both taken relative to ``2**scale``: ``t = a_hi / q`` is exact (a
    power-of-two scaling of a normal float), and ``k = rint(t)`` (ties to even) is the
    significand of the rounding of hi, or, when hi is a tie and lo is not 0, the neighbour on
    lo's side (the midpoint's rounding). The boundaries of k's rounding interval lie half a
    quantum on either side, except the lower one of a power of two ``k = 2**(p-1)`` above emin,
    whose lower neighbour is a finer quantum away (a quarter), and that of an overflow (k past
    the largest significand at emax, which includes every hi beyond the format's binades):
    from ``top + 1/2`` quanta to infinity. A hi exactly on a boundary (a tie of the format)
    with lo = 0 makes a distance of zero, left to the exact path; any other hi is on the
    midpoint's side of every boundary, as the boundaries are floats and rounding is monotone,
    so the rounding of hi is that of the midpoint.

    A scaled ball (`_export_far`) far below a format's range (k = 0) or far above it (an
    overflow) is measured in a unit clipped to 2**+-900 relative to the scale, so that t stays
    finite: the clipped unit is the smaller quantum below the range (a narrower interval
    around 0) and the larger one above it (a higher overflow boundary), so the distances only
    shrink.

    Returns
    -------
    rounded : numpy.ndarray
        ``(formats, balls)`` float64: the rounding of the midpoint to each format.
    distances : _Distances
    """
    c = _columns(tuple(fmts))
    binade = np.frexp(a_hi)[1].astype(np.int64) - 1
    scaled = scale.any()
    if scaled:  # a format's exponent range, relative to each ball's scale
        emin, emax = c.emin - scale, c.emax - scale
    else:
        emin, emax = c.emin, c.emax
    e = np.minimum(np.maximum(binade, emin), emax)
    q_exp = e - c.p + 1
    unit = q_exp
    if scaled:  # unscaled, q_exp is within the format's range; scaled, a_hi is in [1/2, 2**64)
        unit = np.where(scale == 0, q_exp, np.minimum(np.maximum(q_exp, -900), 900))
    unit = unit.astype(np.int32)
    t = np.ldexp(a_hi, -unit)
    k = np.rint(t)
    frac = t - k  # exact: k is within half of t (Sterbenz, or k = 0)
    # hi exactly on a tie (a difference of floats such as x_i - max x often is) while the
    # midpoint is not: lo says which side the midpoint is on, and it rounds to that neighbour.
    k += np.where((np.abs(frac) == 0.5) & (frac * a_lo > 0), 2.0 * frac, 0.0)
    frac = t - k
    over = (e == emax) & (k > c.top)
    at_power = (k == c.power) & (e > emin)
    # Exact for an ordinary k (|frac| <= 1/2 and a quarter or a half); for an overflow,
    # t - (top + 1/2) is rounded once, within the relative margin.
    low_base = np.where(over, t - (c.top + 0.5), frac + np.where(at_power, 0.25, 0.5))
    high_base = np.where(over, np.inf, 0.5 - frac)
    lo_q = np.ldexp(a_lo, -unit)
    abs_lo_q = np.abs(lo_q)
    distances = _Distances(
        low_base + lo_q,
        SLACK * (np.abs(low_base) + abs_lo_q) + TINY,
        high_base - lo_q,
        SLACK * (high_base + abs_lo_q) + TINY,
        unit,
    )
    # The value k * 2**(q_exp + scale), with q_exp + scale within the format's own range
    # (k is 0 where the unit was clipped, or an overflow). copysign, not a product: the sign
    # of a NaN times -1 is not specified.
    value = np.ldexp(k, (q_exp + scale).astype(np.int32))
    rounded = np.copysign(np.where(over, c.overflow, value), sign)
    return rounded, distances


def _inside(d: _Distances, rad: np.ndarray | None) -> np.ndarray:
    """Whether ``[a - rad, a + rad]`` (the midpoint alone for None) certainly lies strictly
    between the two boundaries.

    The radius is scaled to the unit (exact, or within TINY when subnormal) and enters the
    margin, which bounds the rounding of ``distance - rad`` too. An infinite upper distance
    (overflow) is never crossed.
    """
    if rad is None:
        return (d.low > d.low_error) & ((d.high > d.high_error) | (d.high == np.inf))
    rad_q = np.ldexp(rad, -d.unit)
    above_low = d.low - rad_q > d.low_error + SLACK * rad_q
    below_high = (d.high - rad_q > d.high_error + SLACK * rad_q) | (d.high == np.inf)
    return above_low & below_high


def _agreement(a_hi, rad_up, rad_down, denominator: int):
    """(certainly rad * denominator <= |mid|, certainly rad * denominator > |mid|).

    |mid| is within 2**-53 |hi| of |hi|, and each float64 product rounds by at most 2**-53
    (the denominator itself too when it is not a power of two), so a relative margin of 2**-50
    on |hi| decides both ways with certainty; in between, the exact path decides.
    """
    d = float(denominator)
    certainly = rad_up * d < a_hi * (1 - 2.0**-50)
    certainly_not = rad_down * d > a_hi * (1 + 2.0**-50)
    return certainly, certainly_not
