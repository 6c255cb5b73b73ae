"""Certified ground truth for an input exactly as an algorithm received it.

The input is the array after rounding to the format; its floats convert to mpmath exactly
(through Python floats, never through decimal strings). The problem's reference is evaluated at
increasing working precision until two consecutive precisions agree after rounding to the output
format and to about 2**-80 relative (an output of exactly 0 must also persist to ZERO_PREC
bits), so that both the ulp measures and the relative errors built on the reference are
trustworthy. Agreement can still be fooled by a reference formula that loses a term at every
precision (1 + 1e-100 is 1 below ~330 bits), so references avoid such forms (log1p, not
log(1 + r)). A point that does not settle by the precision cap is returned with
``certified=False``; the runner flags it instead of using it silently.

That is the reference engine (``engine="mpmath"``). ``engine="arb"`` evaluates the same
reference formulas (written once against `precision.core.numbers.NumberSystem`) in python-flint's
Arb ball arithmetic, whose radii are rigorous: one evaluation certifies itself when its balls
are tight enough, which with Arb's faster elementary functions makes it several times cheaper.
For sums, differences and variances of floats the arb engine takes an exact shortcut
(`precision.truth.shortcuts`): the same stored values without evaluating a single ball.

A batch of inputs at once: `precision.truth.batch`. How a ground truth is cached (its key,
the fingerprint of the code it depends on, its JSON record): `precision.truth.records`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import NamedTuple

import flint
import mpmath
import numpy as np

from precision.core.formats import (
    Format,
    get_format,
    is_rounding_tie,
    round_dyadic,
    round_to_format,
)
from precision.core.metrics import EXP_LIMIT, Exact
from precision.core.numbers import ARB, MPMATH
from precision.problems.base import Problem
from precision.problems.logits import find_repeats, has_repeats
from precision.truth import balls as balls_module
from precision.truth import enclosed, shortcuts

PRECISIONS = (113, 160, 256, 512, 1024, 2048, 4096)
"""Working precisions (bits) tried in turn; consecutive pairs are compared."""

AGREEMENT = 2.0**-80
"""Largest relative difference between consecutive evaluations accepted as agreement."""

COND_ACCURACY = 2.0**-20
"""Largest relative radius of the condition number's ball the arb engine accepts; a wider ball
is re-evaluated at the next precision. The condition number is used to bin rows by decade and
to draw them against kappa: 2**-20 (six significant digits) is far more than either needs, and
certifying it to float64's 2**-53 cost up to twenty times the output's own evaluation (the
eigenvalues of A^T A for a matrix's kappa_2). The output itself is still certified to
AGREEMENT and correct rounding in every format."""

ZERO_PREC = 4096
"""Lowest precision at which the mpmath engine accepts an output of exactly 0 or one exactly on
a rounding tie (the top of PRECISIONS), and then only once Arb proves it exact
(`_exact_where_suspect`): two precisions can agree on such a value after both lost the same
tiny term. Measured: log_softmax of float64 logits whose output is (x_0 - a) - e**-748 with
x_0 - a a float64 tie was certified at 1024 bits on the tie's even neighbour; the arb engine's
ball straddled the tie until 2048 bits and rounded correctly. A term below 2**-4096 relative
(log_softmax of float16 [1, -2848]) fools even 4096 bits."""


@dataclass(frozen=True)
class GroundTruth:
    """The exact output of one input in one format, with its certification.

    Attributes
    ----------
    exact : Exact
        The output, split for error arithmetic, with its correct rounding to the format.
    cond : float
        The problem's relative condition number at this input (measured, not the target).
    prec : int
        Working precision (bits) of the accepted evaluation.
    certified : bool
        Whether two consecutive precisions agreed (mpmath), or the output balls were tight
        enough and the condition number accurate to COND_ACCURACY (arb; see `ground_truth`).
    seconds : float
        Time spent, for cost accounting.
    engine : str
        The engine that computed it: ``"mpmath"`` or ``"arb"`` (see `ground_truth`).
    """

    exact: Exact
    cond: float
    prec: int
    certified: bool
    seconds: float
    engine: str = "mpmath"


def to_mpf_array(x: np.ndarray) -> np.ndarray:
    """Exact conversion of a float array of any registry format to an object array of mpf.

    ``tolist()`` on the float64 view gives Python floats, which mpmath takes exactly at 53 bits
    or more (``mpmath.mpf`` rounds to the working precision, so it is fixed at 53 here, also
    inside a caller's lower ``workprec``); numpy float16/float32/bfloat16 scalars would be
    rejected by ``mpmath.mpf``.
    """
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        x64 = np.asarray(x).astype(np.float64)
    out = np.empty(x64.shape, dtype=object)
    with mpmath.workprec(53):
        out.ravel()[:] = [mpmath.mpf(v) for v in x64.ravel().tolist()]
    return out


ENGINES = ("mpmath", "arb")
"""Ground-truth engines: mpmath certified by agreement (the reference), Arb balls certified
by their own radius."""


def ground_truth(
    problem: Problem,
    x: np.ndarray,
    fmt: Format | str,
    *,
    precisions=PRECISIONS,
    engine: str = "mpmath",
    shortcut: bool = True,
) -> GroundTruth:
    """Certified reference output and condition number for input ``x`` (already in ``fmt``).

    Parameters
    ----------
    problem : Problem
    x : numpy.ndarray
        The input as the algorithm receives it (dtype of ``fmt``).
    fmt : Format or str
        The output format the reference is rounded to.
    precisions : sequence of int, keyword-only
        Working precisions to try, increasing; the last one is the cap.
    engine : {"mpmath", "arb"}, keyword-only
        ``"mpmath"`` certifies by agreement of two consecutive precisions (module docstring).
        ``"arb"`` evaluates the same reference formula in python-flint's Arb balls and
        certifies from one evaluation when every ball is finite, its two endpoints round to
        the same value of ``fmt`` and its radius is at most ``AGREEMENT * |midpoint|``, and the
        condition number's ball is within COND_ACCURACY; usually at the first precision, where
        mpmath needs two evaluations (see `_arb_ground_truths`).
    shortcut : bool, keyword-only
        With ``engine="arb"``, take the problem's exact shortcut where it has one
        (`precision.truth.shortcuts`; the same values); False forces the ball evaluation.
    """
    fmt = get_format(fmt)
    found = ground_truths(
        problem, x, [fmt], precisions=precisions, engine=engine, shortcut=shortcut
    )
    return found[fmt.name]


def ground_truths(
    problem: Problem,
    x: np.ndarray,
    fmts,
    *,
    precisions=PRECISIONS,
    engine: str = "mpmath",
    shortcut: bool = True,
) -> dict[str, GroundTruth]:
    """One reference evaluation certified for several output formats at once.

    When formats receive the same input (a value representable in all of them), the exact
    output is the same and only its rounding differs: one evaluation, climbing until the
    rounding to *every* format is certified, serves them all. The seconds are booked on the
    first format, so that totals count the work once.

    Returns
    -------
    dict
        Format name -> GroundTruth, in the order of ``fmts``.
    """
    fmts = [get_format(f) for f in fmts]
    if engine not in ENGINES:
        raise ValueError(f"ground_truth: engine must be one of {ENGINES}, got {engine!r}")
    if engine == "arb" and shortcut:
        found = _shortcut_ground_truths(problem, x, fmts, precisions)
        if found is None:
            found = _enclosed_ground_truths(problem, x, fmts, precisions)
        if found is not None:
            return dict(zip([f.name for f in fmts], found, strict=True))
    evaluate = _mpmath_ground_truths if engine == "mpmath" else _arb_ground_truths
    try:
        truths = evaluate(problem, x, fmts, precisions)
    except ZeroDivisionError as exc:  # mpmath divides by an exact 0; Arb balls turn NaN
        raise UndefinedResult(
            f"{problem.name}: the exact result is undefined for this input (a division by "
            "exactly zero: a singular matrix, a zero norm)"
        ) from exc
    return dict(zip([f.name for f in fmts], truths, strict=True))


class UndefinedResult(ValueError):
    """The problem has no exact result at this input (e.g. an exactly singular matrix, which
    a low format's rounding can produce from a nonsingular one). Rows say ``undefined``."""


def _mpmath_ground_truths(problem: Problem, x: np.ndarray, fmts, precisions) -> list:
    """Evaluate at each precision until two consecutive ones agree (module docstring)."""
    start = time.perf_counter()
    previous = None
    for prec in precisions:
        with MPMATH.workprec(prec):
            y, cond = problem.evaluate_reference(x, MPMATH)
            rounded = [[round_to_format(v, fmt) for v in y] for fmt in fmts]
        certified = previous is not None and all(
            _agree((previous[0], r0), (y, r1), prec, fmt)
            for fmt, r0, r1 in zip(fmts, previous[1], rounded, strict=True)
        )
        if certified:
            break
        previous = (y, rounded)
    if certified and prec >= ZERO_PREC:
        certified = _exact_where_suspect(problem, x, y, fmts, prec)
    with mpmath.workprec(prec):
        exact = Exact.from_mpf(list(y))
        cond_value = float(cond)
    seconds = time.perf_counter() - start
    return [
        GroundTruth(
            dataclasses.replace(exact, rounded=np.array(r, dtype=fmt.dtype)),
            cond_value,
            prec,
            certified,
            seconds if i == 0 else 0.0,
            "mpmath",
        )
        for i, (fmt, r) in enumerate(zip(fmts, rounded, strict=True))
    ]


def _agree(previous, current, prec: int, fmt: Format) -> bool:
    (y0, r0), (y1, r1) = previous, current
    same_rounding = all(_same_value(a, b) for a, b in zip(r0, r1, strict=True))
    if not same_rounding:
        return False
    if prec < ZERO_PREC and any(b == 0 or is_rounding_tie(b, fmt) for b in y1):
        # Two precisions that both cancel to exactly 0, or both land exactly on a rounding tie
        # (666 + e**-666 computed as 666), agree without being right: such a value is believed
        # only once it survives an evaluation at ZERO_PREC bits.
        return False
    with mpmath.workprec(prec):
        return all(a == b or abs(a - b) <= AGREEMENT * abs(b) for a, b in zip(y0, y1, strict=True))


def _exact_where_suspect(problem: Problem, x: np.ndarray, y, fmts, prec: int) -> bool:
    """Whether every output of the mpmath evaluation ``y`` that is exactly 0 or exactly on a
    rounding tie of one of ``fmts`` is that value exactly, decided by Arb at ``prec`` bits.

    Agreement of two precisions cannot see a term below 2**-prec relative, not even at the
    top of the ladder: log_softmax of float16 [1, -2848] is (-2849) - log1p(e**-2849), a
    float16 tie minus e**-2849 (about 2**-4110), which rounds away from the tie; mpmath at
    2048 and 4096 bits both give the tie, and certified its even neighbour. Arb's ball of
    radius 0 proves a value exact (here it straddles the tie: the row stays uncertified).
    """
    suspects = [
        i for i, v in enumerate(y) if v == 0 or any(is_rounding_tie(v, fmt) for fmt in fmts)
    ]
    if not suspects:
        return True
    with ARB.workprec(prec):
        balls, _ = problem.evaluate_reference(x, ARB)
    for i in suspects:
        ball = balls[i]
        if not (ball.is_finite() and ball.rad() == 0):
            return False
        man, exp = ball.man_exp()
        with mpmath.workprec(prec):  # an mpf holds the ball's midpoint exactly only this wide
            if mpmath.mpf((int(man), int(exp))) != y[i]:
                return False
    return True


def _same_value(a: np.generic, b: np.generic) -> bool:
    """Equal rounded values, NaN counting as equal to NaN (formats without infinities)."""
    return bool(a == b) or bool(np.isnan(a) and np.isnan(b))


# ------------------------------------------------------------------------ Arb engine


def _arb_ground_truths(problem: Problem, x: np.ndarray, fmts, precisions) -> list:
    """Evaluate in Arb balls at each precision until every output ball certifies in every
    format (`_ball`) and the condition number is accurate (`_accurate_condition`).

    Arb's radii are rigorous bounds, so unlike the mpmath agreement test one evaluation
    suffices, and an output that is exactly 0 with radius 0 is exact (no ZERO_PREC rule).
    The balls are certified and rounded by `_ArbOutputs`: in numpy where that is certain, by
    `_ball` elsewhere, with the same result either way.
    """
    start = time.perf_counter()
    shared = None
    for prec in precisions:
        with ARB.workprec(prec):
            y, cond = problem.evaluate_reference(x, ARB)
        if shared is None:
            shared = len(y) >= VECTORISED_MIN and _repeats_values(x)
        outputs = _ArbOutputs(list(y), fmts, shared=shared)
        certified = _accurate_condition(cond) and outputs.certified()
        if certified:
            break
    hi, lo, exp, rounded = outputs.values()
    seconds = time.perf_counter() - start
    return [
        GroundTruth(
            Exact(hi, lo, exp, per_format),
            float(cond.mid()),
            prec,
            certified,
            seconds if i == 0 else 0.0,
            "arb",
        )
        for i, per_format in enumerate(rounded)
    ]


VECTORISED_MIN = 20
"""Fewest output balls times formats certified in numpy (`balls.decide`). A cost decision only
(both paths give the same result): numpy's fixed cost, about 150 microseconds per evaluation,
exceeds that of `_ball` (about 8 per ball and format) below some 16-20 of them (measured)."""


def _repeats_values(x: np.ndarray) -> bool:
    """Whether a float input holds a value more than once: a reference may then return one
    ball for all of its repeats (`precision.problems.logits.ExpTerms.expand`), which
    `_ArbOutputs` certifies once. A cost decision only (asked for outputs of at least
    VECTORISED_MIN balls)."""
    values = np.asarray(x)
    if values.dtype == object:
        return False
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        floats = values.astype(np.float64).ravel()
    return has_repeats(floats)


class _ArbOutputs:
    """The output balls of one Arb evaluation, certified and rounded for every format.

    `precision.truth.balls` exports the balls once as float64 arrays and settles in numpy whatever
    it can settle with certainty (nearly every ball: all but those within about 2**-48 of a
    quantum of a rounding boundary, such as exact ties, NaN or infinite balls, and a few beyond
    float64's normal range); the rest take the exact `_ball`, which remains the rule. The work
    is done lazily: an evaluation whose condition number is too wide is never looked at, and
    one with a certainly uncertified ball is given up without the others.

    With ``shared``, a ball object that stands at several outputs (the softmax of a repeated
    logit) is exported and decided once: everything is done on the distinct objects
    (``distinct``) and spread to every output (`_spread`).
    """

    def __init__(self, balls: list, fmts: list[Format], *, shared: bool = False):
        self.balls = balls
        self.fmts = fmts
        # One object at several outputs is one ball: identity, not value, decides (comparing
        # balls is three-valued), and costs one C call per ball.
        ids = np.fromiter(map(id, balls), np.int64, len(balls)) if shared else None
        self.repeats = None if ids is None else find_repeats(ids)
        if self.repeats is None:
            self.distinct = balls
        else:
            self.distinct = [balls[i] for i in self.repeats.first.tolist()]
        self._decided: balls_module.Decisions | None = None
        self._exact: dict[int, list[_Ball]] = {}

    def _decisions(self) -> balls_module.Decisions | None:
        """`balls.decide` on the exported distinct balls, None for too few (all take `_ball`)."""
        if self._decided is None and len(self.distinct) * len(self.fmts) >= VECTORISED_MIN:
            mids = balls_module.export(self.distinct)
            denominator = _denominator(AGREEMENT)
            self._decided = balls_module.decide(mids, self.fmts, denominator)
        return self._decided

    def _exact_balls(self, i: int) -> list[_Ball]:
        """`_ball` of distinct ball i in every format (computed once)."""
        if i not in self._exact:
            self._exact[i] = [_ball(self.distinct[i], fmt) for fmt in self.fmts]
        return self._exact[i]

    def certified(self) -> bool:
        """Whether every ball certifies in every format (`_ball`'s rule)."""
        decided = self._decisions()
        if decided is None:
            undecided = range(len(self.distinct))
        elif decided.refuted.any():
            return False
        else:
            undecided = np.flatnonzero(~decided.certified).tolist()
        return all(ball.certified for i in undecided for ball in self._exact_balls(i))

    def values(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
        """(hi, lo, exp) of the `Exact` split and the rounding to each format, per ball."""
        decided = self._decisions()
        if decided is None:
            return self._spread(*self._exact_values())
        unsettled = np.flatnonzero(~decided.settled).tolist()
        hi, lo, exp = decided.hi.copy(), decided.lo.copy(), decided.exp.copy()
        # Unsettled columns hold placeholders; zero them so that no cast overflows.
        finite = np.where(decided.settled, decided.rounded, 0.0)
        rounded = [finite[j].astype(fmt.dtype) for j, fmt in enumerate(self.fmts)]
        for i in unsettled:
            exact_balls = self._exact_balls(i)
            hi[i], lo[i], exp[i] = exact_balls[0].split
            for per_format, ball in zip(rounded, exact_balls, strict=True):
                per_format[i] = ball.rounded
        return self._spread(hi, lo, exp, rounded)

    def _spread(self, hi, lo, exp, rounded):
        """The values of the distinct balls at every output."""
        if self.repeats is None:
            return hi, lo, exp, rounded
        where = self.repeats.inverse
        return hi[where], lo[where], exp[where], [r[where] for r in rounded]

    def _exact_values(self):
        """`values` from `_ball` alone, assembled as the per-ball engine always did."""
        per_ball = [self._exact_balls(i) for i in range(len(self.distinct))]
        splits = [balls[0].split for balls in per_ball]
        hi, lo, exp = (np.array(part) for part in zip(*splits, strict=True))
        rounded = [
            np.array([balls[j].rounded for balls in per_ball], dtype=fmt.dtype)
            for j, fmt in enumerate(self.fmts)
        ]
        return hi, lo, exp.astype(np.int64), rounded


class _Ball(NamedTuple):
    split: tuple[float, float, int]  # the midpoint as `Exact` holds it: (hi, lo, exp)
    rounded: np.generic  # the rounding of the ball (of its midpoint if not certified)
    certified: bool


def _ball(b: flint.arb, fmt: Format) -> _Ball:
    """The midpoint, its rounding to ``fmt`` and the certification of one output ball.

    Certified when the ball is finite, rad <= AGREEMENT * |mid| (the accuracy the mpmath
    engine asks of its hi/lo split and relative errors), and its endpoints mid -/+ rad round
    to the same value of ``fmt`` (then every point of the ball, the exact value included,
    rounds to it). A ball of radius 0 is exact, 0 included. Everything is done on the exact
    integer mantissas and exponents of midpoint and radius: ``arb.lower()`` would round the
    endpoint to the ambient flint precision, and going through mpmath costs more than the
    evaluation itself for vector outputs.
    """
    if not b.is_finite():
        mid = float(b.mid())  # inf or nan: the split and the rounding of that value
        return _Ball((mid, 0.0, 0), fmt.dtype.type(mid), False)
    mid, rad, exp = _integers(b)
    split = _split_dyadic(mid, exp)
    if rad == 0:
        return _Ball(split, round_dyadic(mid, exp, fmt), True)
    if rad * _denominator(AGREEMENT) <= abs(mid):
        low = round_dyadic(mid - rad, exp, fmt)
        high = round_dyadic(mid + rad, exp, fmt)
        if _same_value(low, high):
            return _Ball(split, low, True)
    return _Ball(split, round_dyadic(mid, exp, fmt), False)


def _accurate_condition(cond: flint.arb) -> bool:
    """Whether the condition number's ball is exact (0 and inf included) or has a radius of
    at most COND_ACCURACY times its midpoint.

    A condition number can cancel where the output does not: cross-entropy's |g_k - t_k| for
    the target k of a confident prediction is 1 - g_k ~ r formed from g_k ~ 1, so at 113 bits
    it keeps only 113 - log2(1/r) bits (x = [100, 1], class 0: r = e**-99 leaves none), while
    the output is formed without cancellation. The ball shows it; mpmath's agreement test
    never looks at the condition number.
    """
    if cond.rad() == 0:
        return True
    if not cond.is_finite():
        return False
    mid, rad, _ = _integers(cond)
    return rad * _denominator(COND_ACCURACY) <= abs(mid)


def _denominator(tolerance: float) -> int:
    """1 / tolerance as an integer (AGREEMENT and COND_ACCURACY are powers of two), so that
    rad <= tolerance * |mid| is decided exactly on integer numerators. Read at each call, so
    that a changed constant takes effect everywhere."""
    return round(1 / tolerance)


AGREEMENT_DENOMINATOR = round(1 / AGREEMENT)
COND_ACCURACY_DENOMINATOR = round(1 / COND_ACCURACY)
"""The denominators at import (kept for callers); the engine reads `_denominator` instead."""


def _integers(b: flint.arb) -> tuple[int, int, int]:
    """(mid, rad, exp): a finite ball's midpoint mid * 2**exp and radius rad * 2**exp as
    integers on their common exponent, exactly (``man_exp`` of the exact midpoint and
    radius)."""
    mid_man, mid_exp = (int(v) for v in b.mid().man_exp())
    rad_man, rad_exp = (int(v) for v in b.rad().man_exp())
    rad_man, rad_exp = _stand_in_radius(mid_man, mid_exp, rad_man, rad_exp)
    exp = min(mid_exp, rad_exp)
    return mid_man << (mid_exp - exp), rad_man << (rad_exp - exp), exp


TIE_FLOOR = -1200
"""Below 2**-1200 lies no rounding boundary of any format (float64's finest, half its smallest
subnormal, is 2**-1075)."""


def _stand_in_radius(mid_man: int, mid_exp: int, rad_man: int, rad_exp: int) -> tuple[int, int]:
    """A radius that gives every decision `_ball` and `_accurate_condition` take the same
    answer as the true one, without shifting integers by astronomically many bits.

    A radius whose exponents are far from the midpoint's (softmax of [1, 1e34] gives balls
    1 +/- 2**-1.5e34) would make the common-exponent integers of `_integers` too large to
    form. Every decision is constant for radii in (0, 2**(min(mid_exp, TIE_FLOOR) - 2)): the
    agreement test holds, and mid -/+ rad cannot cross a rounding boundary that mid is not on
    (mid is a multiple of 2**mid_exp and boundaries of 2**TIE_FLOOR or coarser), so such a
    radius is replaced by the largest power of two in that range. A radius far larger than the
    midpoint fails the agreement test whatever its size, so it is capped at 2**(top + 100).
    """
    if rad_man == 0:
        return rad_man, rad_exp
    rad_top = rad_exp + rad_man.bit_length()
    floor = min(mid_exp, TIE_FLOOR) - 2
    if rad_top < floor:
        return 1, floor
    mid_top = mid_exp + abs(mid_man).bit_length()
    if mid_man != 0 and rad_exp > mid_top + 100:
        return 1, mid_top + 100
    return rad_man, rad_exp


def _split_dyadic(man: int, exp: int) -> tuple[float, float, int]:
    """The `Exact` split (hi, lo, e) of man * 2**exp, as ``metrics._split_mpf`` makes it.

    With L the bit length of |man|, the value is (man / 2**L) * 2**(exp + L) and
    0.5 <= |man / 2**L| < 1. Python's int / int is correctly rounded (to nearest, ties to
    even) at any size, so hi = man / 2**L and lo = (man - hi * 2**L) / 2**L, with hi * 2**L
    formed exactly as an integer from hi's 53-bit significand.
    """
    if man == 0:
        return 0.0, 0.0, 0
    length = abs(man).bit_length()
    hi = man / (1 << length)
    hi_53 = int(hi * 2.0**53)  # exact: |hi| <= 1 has at most 53 significant bits
    lo = ((man << 53) - (hi_53 << length)) / (1 << (length + 53))
    # Saturate as metrics._split_mpf does: only values beyond about 10**(3e17), such as
    # exp(1e308), reach the limit, and every format rounds them to inf or 0 all the same.
    return hi, lo, max(-EXP_LIMIT, min(EXP_LIMIT, exp + length))


# ------------------------------------------------------------------------ exact shortcuts


def _shortcut_ground_truths(problem: Problem, x: np.ndarray, fmts, precisions) -> list | None:
    """The arb engine's ground truths from the problem's exact shortcut, or None (no shortcut,
    or an input it leaves to the balls).

    The shortcut replays Arb's evaluation at the first precision in integers
    (`precision.truth.shortcuts`): each output's midpoint with a bound on its radius. The
    midpoint is split and rounded as `_ball` does it, and certified by `_ball`'s rule with the
    bound in place of the radius: a larger radius certifies less, so a bound that certifies
    implies that Arb's own ball certifies at that precision, with the same values. Where the
    bound does not certify (a value within about 2**-100 relative of a rounding boundary of a
    format), None sends the input to the Arb engine, which decides with its true radius.
    """
    start = time.perf_counter()
    evaluate = shortcuts.shortcut_for(problem)
    prec = precisions[0]
    result = evaluate(x, prec) if evaluate is not None else None
    if result is None:
        return None
    balls = [_certified_dyadic(mid, radius_exp, fmts) for mid, radius_exp in result.outputs]
    if any(b is None for b in balls):
        return None
    hi, lo, exp = (np.array(part) for part in zip(*(b[0] for b in balls), strict=True))
    seconds = time.perf_counter() - start
    return [
        GroundTruth(
            Exact(hi, lo, exp.astype(np.int64), np.array([b[1][j] for b in balls], fmt.dtype)),
            result.cond,
            prec,
            True,
            seconds if j == 0 else 0.0,
            "arb",
        )
        for j, fmt in enumerate(fmts)
    ]


def _enclosed_ground_truths(problem: Problem, x: np.ndarray, fmts, precisions) -> list | None:
    """The arb engine's ground truths from the problem's double-double evaluation
    (`precision.truth.enclosed`) on a batch of one, or None (no such evaluation, or a ball it
    cannot certify: the Arb engine decides). `precision.truth.batch` takes the same path, so
    that an input's truth does not depend on the batch it came in."""
    evaluate = enclosed.enclosure_for(problem, precisions=precisions)
    if evaluate is None:
        return None
    start = time.perf_counter()
    found = evaluate(np.asarray(x)[None])
    if found is None:
        return None
    accepted, decided = enclosed.certify(found, fmts, _denominator(AGREEMENT))
    if not accepted[0]:
        return None
    seconds = time.perf_counter() - start
    return [
        GroundTruth(
            Exact(decided.hi, decided.lo, decided.exp, decided.rounded[j].astype(fmt.dtype)),
            float(found.cond[0]),
            enclosed.DD_PREC,
            True,
            seconds if j == 0 else 0.0,
            "arb",
        )
        for j, fmt in enumerate(fmts)
    ]


def _certified_dyadic(
    mid: shortcuts.Dyadic, radius_exp: int | None, fmts
) -> tuple[tuple[float, float, int], list] | None:
    """(`Exact` split, rounding per format) of a ball mid +/- 2**radius_exp (None: exact) by
    `_ball`'s rule, or None where that rule does not certify it."""
    split = _split_dyadic(mid.man, mid.exp)
    if radius_exp is None:
        return split, [round_dyadic(mid.man, mid.exp, fmt) for fmt in fmts]
    exp = min(mid.exp, radius_exp)
    man, rad = mid.man << (mid.exp - exp), 1 << (radius_exp - exp)
    if rad * _denominator(AGREEMENT) > abs(man):
        return None
    rounded = []
    for fmt in fmts:
        low, high = round_dyadic(man - rad, exp, fmt), round_dyadic(man + rad, exp, fmt)
        if not _same_value(low, high):
            return None
        rounded.append(low)
    return split, rounded
