"""Tests for precision.truth.balls: the vectorised certification agrees with the exact per-ball
rule.

The exact rule is ``precision.truth.exact._ball`` (integer arithmetic on the ball's midpoint and
radius). Every decision `balls.decide` takes must be that rule's answer bit for bit: the split,
the rounding to every format, certified or not. Balls are built exactly from integers
(``arf((man, exp))``), around the places where a float64 shortcut would go wrong: rounding
boundaries and ties of each format (hit exactly and missed by 2**-1 .. 2**-200 of a quantum),
the overflow threshold, the subnormal range, powers of two, radii at the agreement tolerance,
midpoints far outside float64's range, NaN and infinite balls.
"""

from __future__ import annotations

from fractions import Fraction

import flint
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precision.core.formats import FORMATS as REGISTRY
from precision.core.formats import get_format
from precision.core.metrics import EXP_LIMIT
from precision.core.numbers import ARB
from precision.truth import balls
from precision.truth.exact import AGREEMENT, PRECISIONS, _ArbOutputs, _ball, _denominator

FORMATS = ["float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"]


def _arb(man: int, exp: int, rad_man: int = 0, rad_exp: int = 0) -> flint.arb:
    """The ball man * 2**exp +/- rad_man * 2**rad_exp (radius rounded up to Arb's 30 bits)."""
    with ARB.workprec(PRECISIONS[-1] * 4):
        return flint.arb(flint.arf((man, exp)), flint.arf((rad_man, rad_exp)))


def _bits(value) -> bytes:
    return np.asarray(value).tobytes()


def _check(ball_list: list, fmts: list[str]) -> balls.Decisions:
    """Every decision of `balls.decide` is `_ball`'s, and `_ArbOutputs` returns what the
    per-ball rule returns; the decisions, for tests that also ask how many were taken."""
    formats = [get_format(f) for f in fmts]
    decided = balls.decide(balls.export(ball_list), formats, _denominator(AGREEMENT))
    exact = [[_ball(b, f) for f in formats] for b in ball_list]
    for i, (b, per_format) in enumerate(zip(ball_list, exact, strict=True)):
        where = (b.str(40, radius=True), fmts)
        if decided.settled[i]:
            hi, lo, exp = per_format[0].split
            assert _bits(decided.hi[i]) == _bits(np.float64(hi)), where
            assert _bits(decided.lo[i]) == _bits(np.float64(lo)), where
            assert decided.exp[i] == exp, where
            for j, (fmt, ball) in enumerate(zip(formats, per_format, strict=True)):
                fast = np.array([decided.rounded[j, i]]).astype(fmt.dtype)
                assert _bits(fast) == _bits(np.array([ball.rounded], dtype=fmt.dtype)), where
        if decided.certified[i]:
            assert decided.settled[i]
            assert all(ball.certified for ball in per_format), where
        if decided.refuted[i]:
            assert not any(ball.certified for ball in per_format), where
    _check_outputs(ball_list, formats, exact)
    return decided


def _check_outputs(ball_list, formats, exact) -> None:
    """`_ArbOutputs` (numpy where settled, `_ball` elsewhere) against `_ball` alone."""
    outputs = _ArbOutputs(ball_list, formats)
    assert outputs.certified() == all(b.certified for per_format in exact for b in per_format)
    hi, lo, exp, rounded = outputs.values()
    splits = [per_format[0].split for per_format in exact]
    assert _bits(hi) == _bits(np.array([s[0] for s in splits], dtype=np.float64))
    assert _bits(lo) == _bits(np.array([s[1] for s in splits], dtype=np.float64))
    assert exp.dtype == np.int64 and exp.tolist() == [s[2] for s in splits]
    for j, fmt in enumerate(formats):
        expected = np.array([per_format[j].rounded for per_format in exact], dtype=fmt.dtype)
        assert rounded[j].dtype == fmt.dtype and _bits(rounded[j]) == _bits(expected)


# ------------------------------------------------------------------------ strategies


@st.composite
def _anchored(draw, fmt_name: str):
    """A ball near a value, tie or overflow threshold of ``fmt``: the anchor is (k / 2) quanta
    of binade e (odd k is a tie), moved by 0 or +-2**-j quanta, with a radius of 0, of
    2**-j relative, exactly at the agreement tolerance, or absolutely tiny."""
    f = get_format(fmt_name)
    e = draw(st.integers(f.emin - f.p - 3, f.emax + 2))
    k = draw(st.integers(0, 2 ** (f.p + 1) + 2))
    quantum_exp = max(e, f.emin) - f.p + 1
    shift = draw(st.one_of(st.none(), st.integers(1, 200)))
    sign = draw(st.sampled_from([1, -1]))
    # mid = sign * (k / 2 + delta) * 2**quantum_exp on the common exponent of its parts
    low = quantum_exp - 1 - (shift or 0)
    man = k << (shift or 0)
    if shift is not None:
        man = 2 * man + draw(st.sampled_from([1, -1])) * 2 + draw(st.integers(-1, 1))
        low -= 1
    man *= sign
    return _with_radius(draw, man, low)


def _with_radius(draw, man: int, exp: int) -> flint.arb:
    """The ball man * 2**exp with a drawn radius (see `_anchored`)."""
    top = exp + abs(man).bit_length()
    kind = draw(st.sampled_from(["zero", "relative", "tolerance", "tiny"]))
    if kind == "zero" or man == 0:
        return _arb(man, exp)
    if kind == "relative":
        return _arb(man, exp, 1, top - draw(st.integers(0, 200)))
    if kind == "tolerance":  # rad = |mid| * 2**-80 exactly (Arb keeps it: few bits), +-1 unit
        tweak = draw(st.integers(-1, 1))
        return _arb(man, exp, (abs(man) << 2) + tweak, exp - 82)
    return _arb(man, exp, 1, draw(st.integers(-1400, -1100)))


@st.composite
def _wide(draw):
    """A ball of 1 .. 300 midpoint bits anywhere from 2**-30000 to 2**30000, or far beyond
    (exponents of +-10**6), across float64's subnormal range and overflow threshold."""
    bits = draw(st.integers(1, 300))
    man = draw(st.integers(2 ** (bits - 1), 2**bits - 1)) * draw(st.sampled_from([1, -1]))
    top = draw(
        st.one_of(
            st.integers(-1200, 1100),
            st.integers(-1090, -1060),
            st.integers(1020, 1030),
            st.integers(-30000, 30000),
            st.sampled_from([-(10**6), 10**6]),
        )
    )
    return _with_radius(draw, man, top - bits)


def _specials() -> list:
    return [
        flint.arb("nan"),
        flint.arb(1, float("inf")),
        ARB.inf,
        -ARB.inf,
        flint.arb(0),
        _arb(0, 0, 1, -200),  # contains 0
        _arb(1, 0, 1, 0),  # radius as large as the midpoint
        _arb(3, 10**6, 1, 10**6 + 200),  # radius far above a huge midpoint
    ]


# ------------------------------------------------------------------------ tests


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_decisions_near_boundaries_are_the_exact_rule(fmt, data):
    ball_list = data.draw(st.lists(_anchored(fmt), min_size=1, max_size=12))
    _check(ball_list, [fmt])
    _check(ball_list, FORMATS)


@settings(max_examples=300, deadline=None)
@given(st.lists(_wide(), min_size=1, max_size=12))
def test_decisions_across_every_magnitude_are_the_exact_rule(ball_list):
    for fmts in (FORMATS, ["float64"], ["float16"], ["float8_e4m3fn", "bfloat16"]):
        _check(ball_list, fmts)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(range(8)), min_size=1, max_size=6), st.data())
def test_nan_and_infinite_balls_take_the_exact_path(picks, data):
    specials = _specials()
    ball_list = [specials[i] for i in picks] + data.draw(st.lists(_wide(), max_size=4))
    decided = _check(ball_list, FORMATS)
    for i in range(len(picks)):
        b = ball_list[i]
        if not b.is_finite() or (b.mid() == 0 and not b.is_exact()):
            assert not decided.settled[i] and not decided.certified[i]


def test_every_registry_format_is_tested():
    assert sorted(FORMATS) == sorted(REGISTRY)


@pytest.mark.parametrize("fmt", FORMATS)
def test_ordinary_balls_are_settled_in_numpy(fmt):
    """The point of the module: balls of 113-bit midpoints in float64's range, tight radii,
    settle without the exact path (else the tests above would pass vacuously)."""
    rng = np.random.default_rng(1)
    with ARB.workprec(113):
        values = [flint.arb(v).exp() / 3 for v in rng.uniform(-600, 600, 300).tolist()]
    decided = _check(values, [fmt])
    assert decided.settled.all() and decided.certified.all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_edges_of_each_format(fmt):
    """Fixed edge cases: max, the overflow threshold and just around it, the smallest
    subnormal, half of it (a tie with 0), the smallest normal, powers of two approached from
    below (whose lower rounding neighbour is half as far), each hit exactly and missed by
    2**-30, 2**-90 or 2**-100 relative, with radius 0, 2**-85 and 2**-120 relative."""
    f = get_format(fmt)
    q_max = f.emax - f.p + 1
    top = f.max_significand or 2**f.p - 1
    anchors = [  # (man, exp)
        (top, q_max),
        (2 * top + 1, q_max - 1),  # overflow threshold
        (1, f.emin - f.p + 1),  # smallest subnormal
        (1, f.emin - f.p),  # half of it
        (3, f.emin - f.p),
        (1, f.emin),
        (1, 0),
        (1, f.emax),
        (1, f.emax + 1),
        ((1 << f.p) - 1, -f.p),  # the float below 1
        ((1 << (f.p + 1)) - 1, -f.p - 1),  # the tie below 1
    ]
    ball_list = []
    for man, exp in anchors:
        for shift, miss in [(100, 0), (100, 1), (100, -1), (90, 1), (90, -1), (30, 1), (30, -1)]:
            # missed by 2**-shift relative: a radius of 2**-85 straddles a miss of 2**-90
            offset = miss << (120 + man.bit_length() - shift)
            for sign in (1, -1):
                m, e = sign * ((man << 120) + offset), exp - 120
                top = e + abs(m).bit_length()
                ball_list += [_arb(m, e), _arb(m, e, 1, top - 120), _arb(m, e, 1, top - 85)]
    decided = _check(ball_list, [fmt])
    assert decided.settled.sum() > len(ball_list) // 2


def test_hi_that_is_not_the_nearest_float_is_not_used():
    """`balls.export` proves hi = RN(mid) from lo instead of trusting ``float(arb)`` (older
    python-flint truncated): a lo of half an ulp or more (a quarter below a power of two, on
    the lower side) means another float is as near."""
    ulp = 2.0**-52
    hi = np.array([1.5, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0])
    lo = np.array([0.49, 0.5, -0.51, 0.49, -0.24, -0.25, -0.3, 0.24, 0.26]) * ulp
    expected = [True, False, False, True, True, False, False, True, False]
    assert balls._nearest(hi, lo, np.ones(hi.size, bool)).tolist() == expected


def test_tie_of_hi_with_lo_deciding_is_settled():
    """x_i - max x is often exactly a tie of a coarser format while the output is that
    minus a tiny term: hi is the tie, lo says which neighbour; decided in numpy."""
    ball = _arb(-(421 << 100) - 1, -101, 1, -300)  # -210.5 - 2**-101, a bfloat16 tie
    decided = _check([ball] * 8, ["bfloat16"])
    assert decided.settled.all() and decided.rounded[0, 0] == -211.0  # |mid| is above the tie


def test_agreement_tolerance_is_read_at_call_time(monkeypatch):
    """A changed AGREEMENT changes the vectorised decision as it changes `_ball`'s."""
    from precision.truth import exact as exact

    with ARB.workprec(113):
        ball_list = [flint.arb(v).exp() for v in range(1, 20)]  # radius about 2**-110
    assert _ArbOutputs(ball_list, [get_format("float32")]).certified()
    monkeypatch.setattr(exact, "AGREEMENT", 2.0**-120)
    assert not _ArbOutputs(ball_list, [get_format("float32")]).certified()
    assert not _ball(ball_list[0], get_format("float32")).certified


@pytest.mark.parametrize("fmt", ["float32", "float16", "bfloat16", "float8_e4m3fn"])
def test_double_double_error_is_covered(fmt):
    """hi + lo is the midpoint only to 2**-53 |lo|: the midpoint tie + r - 2**-150 with
    r = 2**-90 (1 + 2**-29) has lo = r, and a radius of r (what Arb makes of 2**-90: it rounds
    radii up to 30 bits) then reaches 2**-150 past the tie. The exact rule refuses it (the
    endpoints round apart); so must the vectorised test, whose radius rounded up by a float
    (and margin) cover that error: taken at face value, hi + lo - rad would put the lower
    endpoint exactly on the tie."""
    p = get_format(fmt).p
    tie = (1 << 160) + (1 << (160 - p))  # 1 + 2**-p in units of 2**-160
    ball = _arb(tie + (1 << 70) + (1 << 41) - (1 << 10), -160, 1, -90)
    assert float(ball.rad()) == 2.0**-90 * (1 + 2.0**-29)
    decided = _check([ball] * 20, [fmt])
    assert float(balls.export([ball]).lo[0]) == float(ball.rad())
    assert not _ball(ball, get_format(fmt)).certified
    assert not decided.certified.any()


def test_lo_below_float64_range_is_not_lost():
    """mid = 2**-500 (1 + 2**-600): mid - hi = 2**-1100 is 0 as a float, but the split's lo,
    2**-601 relative, is not; the export must see that lo = 0 is not exact."""
    ball = _arb((1 << 600) + 1, -1100)
    decided = _check([ball] * 20, ["float64"])
    assert decided.lo[0] == 2.0**-601 or not decided.settled[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_balls_beyond_float64_are_settled_scaled(fmt):
    """+-exp(v) for v from -20000 to 20000 by 400 (softmax components of large logits,
    their overflowing numerators) and a ball near 2**(2**62): exported divided by a power of
    two, they settle as zeros of their sign or as overflows (none lies in float64's subnormal
    range, which a float64 output leaves to the exact path), the last with its exponent
    saturated as ``exact._split_dyadic`` saturates it."""
    with ARB.workprec(113):
        values = [(-1) ** i * flint.arb(v).exp() for i, v in enumerate(range(-20000, 20001, 400))]
    values.append(_arb((1 << 112) + 12345, 2**62, 1, 2**62 - 10))
    decided = _check(values, [fmt])
    far = balls.export(values).scale != 0
    assert far.sum() == len(values) - 3  # all but exp(-400), exp(0) and exp(400)
    assert decided.settled[far].all() and decided.certified[far].all()
    assert decided.exp[-1] == EXP_LIMIT


def test_short_midpoints_far_below_the_range_follow_the_exact_rule():
    """``exact._ball`` stands in 2**(lsb - 2) for a radius below it (lsb: the midpoint's last
    bit, below 2**-1200), which fails the agreement test for a midpoint of fewer than 79 bits
    although the true radius passes: 2**-1300 +/- 2**-1400 is not certified by the rule. The
    vectorised path must give the rule's answer, not the true one."""
    short = [_arb(1, -1300, 1, -1400), _arb(-((1 << 70) + 1), -1370, 1, -1470)]
    long = [_arb((1 << 100) + 1, -1400, 1, -1500)]
    decided = _check((short + long) * 8, ["float32", "float64"])
    assert not any(_ball(b, get_format("float32")).certified for b in short)
    assert _ball(long[0], get_format("float32")).certified and decided.certified[2]


def _fraction(value) -> Fraction:
    """An exact arb (or its midpoint/radius) as a Fraction."""
    man, exp = (int(v) for v in value.mid().man_exp())
    return Fraction(man) * Fraction(2) ** exp


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_wide(), _anchored("float64"), _anchored("float16")), min_size=1))
def test_radius_bounds_contain_the_radius(ball_list):
    """`balls.radius_bounds` of every exported ball (from ``arb.rel_accuracy_bits``) brackets
    the exact radius, and is tight to a factor of four (what Arb's exponents allow)."""
    mids = balls.export(ball_list)
    down, up = balls.radius_bounds(mids.hi, mids.accuracy)
    for i in np.flatnonzero(mids.valid & (mids.scale == 0)).tolist():
        rad = _fraction(ball_list[i].rad())
        assert Fraction(float(down[i])) <= rad, ball_list[i].str(30)
        # An upper bound beyond float64's range is inf: still a bound, not a tight one.
        assert np.isinf(up[i]) or rad <= Fraction(float(up[i])), ball_list[i].str(30)
        if down[i] >= 2.0**-1000 and np.isfinite(up[i]):
            assert up[i] <= 4 * down[i] * (1 + 2.0**-48)


def test_midpoints_longer_than_the_export_precision_take_the_exact_path():
    """``mid - hi`` is exact only for midpoints of at most EXPORT_PREC bits (`balls.export`):
    a longer one is not exported, and the exact rule still decides it."""
    long = _arb((1 << (balls.EXPORT_PREC + 8)) + 1, -(balls.EXPORT_PREC + 8), 1, -200000)
    assert long.bits() > balls.EXPORT_PREC
    mids = balls.export([long] * 4)
    assert not mids.valid.any()
    _check([long] * 4, ["float64", "bfloat16"])
