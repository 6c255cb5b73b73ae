"""Tests for precision.truth.shortcuts: exact ground truth of sums, differences, variances and
dot products.

Three layers. The exact integer sums (bincount, extraction, TwoProduct) are checked against
Python's Fractions, which add floats with no rounding at all. The replay of Arb's roundings
(`arb_dyadic`, `arb_quotient`) is checked against python-flint itself at the engine's first
precision. And every covered problem's shortcut must give the Arb engine's cache record bit for
bit (hi, lo, exp, every format's rounding, cond, prec, certified, engine), and agree with the
mpmath reference engine within the tolerances the engines promise: the same correct rounding
in every format, the split within AGREEMENT (2**-80) relative, the condition number within
COND_ACCURACY (2**-20) relative.
"""

from __future__ import annotations

import math
from fractions import Fraction

import flint
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from precision.core.formats import STUDY_FORMATS, cast, round_to_format
from precision.core.numbers import ARB
from precision.problems import PROBLEMS, Problem
from precision.problems.summation import dyadic
from precision.truth import shortcuts
from precision.truth.exact import AGREEMENT, COND_ACCURACY, PRECISIONS, ground_truths
from precision.truth.records import truth_record

COVERED = ("summation", "weight_update", "cancellation", "variance", "dot")
FORMATS = list(STUDY_FORMATS)
PREC = PRECISIONS[0]

finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)


def fraction_sum(values) -> Fraction:
    return sum((Fraction(float(v)) for v in values), Fraction(0))


def value(d: shortcuts.Dyadic) -> Fraction:
    return Fraction(d.man) * Fraction(2) ** d.exp


# ---------------------------------------------------------------- exact integer sums


@settings(max_examples=200, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=60))
def test_exact_sums_are_exact(xs):
    x = np.array(xs)
    m, e = shortcuts.float_integers(x)
    total, abs_total = shortcuts.exact_sums(m, e, [None, "abs"])
    assert value(total) == fraction_sum(xs)
    assert value(abs_total) == fraction_sum(abs(v) for v in xs)
    assert total.exp == int(e.min())  # the reference's exponent: Arb's pieces depend on it


@settings(max_examples=200, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=60))
def test_extraction_is_exact_or_declines(xs):
    x = np.array(xs)
    found = shortcuts.extract_sums(np.stack([x, np.abs(x)]))
    if found is not None:
        assert value(found[0]) == fraction_sum(xs)
        assert value(found[1]) == fraction_sum(abs(v) for v in xs)


def test_extraction_of_a_long_vector_is_exact():
    """n = 10**5 float64 terms over 60 binades: a few passes, the exact sum."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(100_000) * 2.0 ** rng.integers(-30, 30, 100_000)
    found = shortcuts.extract_sums(x[None, :])
    assert found is not None
    assert value(found[0]) == fraction_sum(x.tolist())


@settings(max_examples=150, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=40))
def test_square_sum_is_exact(xs):
    x = np.array(xs)
    with np.errstate(over="ignore"):
        total = shortcuts.exact_square_sum(x)
    assert value(total) == sum((Fraction(v) ** 2 for v in xs), Fraction(0))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e30, 1e30, allow_nan=False), st.floats(-1e30, 1e30, allow_nan=False)),
        min_size=1,
        max_size=40,
    )
)
def test_dot_product_is_exact(pairs):
    x, y = (np.array(v) for v in zip(*pairs, strict=True))
    found = shortcuts.exact_dot(x, y)
    products = [Fraction(a) * Fraction(b) for a, b in pairs]
    if found is None:  # a factor outside TwoProduct's range: declined, never wrong
        assert any(0 < abs(v) < 2.0**-450 for v in np.concatenate([x, y]))
        return
    assert value(found[0]) == sum(products, Fraction(0))
    assert value(found[1]) == sum((abs(p) for p in products), Fraction(0))


def fraction_dot(x, y) -> tuple[Fraction, Fraction]:
    """(sum x_i y_i, sum |x_i y_i|) in Fractions: no rounding at all."""
    products = [Fraction(float(a)) * Fraction(float(b)) for a, b in zip(x, y, strict=True)]
    return sum(products, Fraction(0)), sum((abs(p) for p in products), Fraction(0))


def adversarial_pairs(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """float32 factor pairs that stress an exact dot product: huge cancellation, subnormal
    factors and products, exponents spanning float32's whole range, zeros and signed zeros,
    n = 1 and n = 16384."""
    f32 = np.float32
    tiny, huge = f32(2.0**-149), f32(np.finfo(np.float32).max)
    x = rng.standard_normal(500)
    y = rng.standard_normal(500)
    span = 2.0 ** rng.integers(-149, 128, 64)
    return [
        (np.array([1.5], f32), np.array([-3.0], f32)),  # n = 1
        (np.array([-0.0], f32), np.array([5.0], f32)),  # a signed zero product
        (np.array([0.0, -0.0, 0.0], f32), np.array([-0.0, -0.0, 7.0], f32)),
        (np.array([tiny, -tiny, tiny], f32), np.array([tiny, tiny, f32(3.0)], f32)),
        (np.array([huge, -huge, tiny], f32), np.array([huge, huge, tiny], f32)),
        # cancelling pairs x_i y_i - x_i y_i and one product 2**-298 below them
        (np.concatenate([x, -x, [tiny]]).astype(f32), np.concatenate([y, y, [tiny]]).astype(f32)),
        # 1e30 * 1e8 cancelled down to a sum of order 1e-30
        (np.array([1e30, -1e30, 1e-30, 3.0], f32), np.array([1e8, 1e8, 1.0, 2.0**-120], f32)),
        (
            (rng.standard_normal(64) * span).astype(f32),
            (rng.standard_normal(64) * span[::-1]).astype(f32),
        ),
        (rng.standard_normal(16384).astype(f32), rng.standard_normal(16384).astype(f32)),
    ]


def test_dot_of_float32_factors_is_exact_on_adversarial_inputs():
    """Each pair through the exact-product path (float32 dtype, and float64 arrays of float32
    values) and through TwoProduct (`_two_products`): the same exact Fractions."""
    rng = np.random.default_rng(21)
    for x, y in adversarial_pairs(rng):
        expected = fraction_dot(x, y)
        narrow = shortcuts.exact_dot(x, y)
        widened = shortcuts.exact_dot(x.astype(np.float64), y.astype(np.float64))
        assert (value(narrow[0]), value(narrow[1])) == expected, x[:3]
        assert (value(widened[0]), value(widened[1])) == expected, x[:3]
        rows = shortcuts._two_products(x.astype(np.float64), y.astype(np.float64))
        if rows is not None:  # factors in TwoProduct's range: the other path agrees
            sums = [shortcuts.exact_sum(*shortcuts.float_integers(row)) for row in rows]
            assert (value(sums[0]), value(sums[1])) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(width=32, allow_nan=False, allow_infinity=False),
            st.floats(width=32, allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"]),
)
def test_dot_of_narrow_formats_is_exact(pairs, fmt):
    """Every finite float32 pair (subnormals and the extremes included), cast to each narrow
    format: products exact in float64 and their sums exact, or declined for a non-finite cast."""
    x, y = (np.array(v, dtype=np.float32) for v in zip(*pairs, strict=True))
    with np.errstate(over="ignore", invalid="ignore"):
        x, y = cast(x, fmt), cast(y, fmt)
    found = shortcuts.exact_dot(x, y)
    if not np.isfinite(np.concatenate([x, y]).astype(np.float64)).all():
        assert found is None
        return
    assert (value(found[0]), value(found[1])) == fraction_dot(x, y)


def test_sum_declines_infinities_and_nan():
    for bad in (np.inf, -np.inf, np.nan):
        assert shortcuts.sum_shortcut(np.array([1.0, bad, 2.0]), PREC) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1))
def test_lowest_exponent_is_the_references(xs):
    """The exponent the sum reference holds its integer on: `float_integers`' smallest,
    zeros (e = -53) and subnormals included."""
    x = np.array(xs)
    _, e = shortcuts.float_integers(x)
    assert shortcuts._lowest_exponent(x, float(np.abs(x).min())) == int(e.min())


def test_dot_shortcut_declines_what_it_does_not_cover():
    """Not a pair of rows, or mpf objects (float64 may not hold them): the Arb engine."""
    assert shortcuts.dot_shortcut(np.ones(4), PREC) is None
    assert shortcuts.dot_shortcut(np.ones((3, 4)), PREC) is None
    assert shortcuts.dot_shortcut(np.ones((2, 2), dtype=object), PREC) is None
    assert shortcuts.dot_shortcut(np.ones((2, 2)), PREC) is not None


def test_dot_of_empty_vectors_is_zero():
    for dtype in (np.float32, np.float64):
        found = shortcuts.exact_dot(np.zeros(0, dtype), np.zeros(0, dtype))
        assert [value(d) for d in found] == [0, 0]


def test_dot_declines_infinities_and_nan():
    one = np.ones(3, np.float32)
    for bad in (np.inf, -np.inf, np.nan):
        x = np.array([1.0, bad, 2.0], np.float32)
        assert shortcuts.exact_dot(x, one) is None
        assert shortcuts.exact_dot(x.astype(np.float64), one.astype(np.float64)) is None


def test_extraction_equals_the_bincount_sums_on_adversarial_rows():
    """`extract_sums` (rows of exact products and their magnitudes) against `exact_sums`
    (integer significands per exponent, the other exact path): the same values; it may decline
    only a vector beyond its reach (`extraction_reach`)."""
    rng = np.random.default_rng(22)
    vectors = [x.astype(np.float64) * y.astype(np.float64) for x, y in adversarial_pairs(rng)]
    vectors += [
        np.array([2.0**-1074, -(2.0**-1074), 2.0**-1060]),  # subnormal terms
        np.array([2.0**1000, 1.0, -(2.0**1000), 2.0**-1000]),  # the whole range, cancelling
        rng.standard_normal(16384) * 2.0 ** rng.integers(-1000, 1000, 16384),
    ]
    taken = 0
    for v in vectors:
        found = shortcuts.extract_sums(np.stack([v, np.abs(v)]))
        expected = shortcuts.exact_sums(*shortcuts.float_integers(v), [None, "abs"])
        if found is None:
            assert not within_extraction_reach(v), v[:3]
            continue
        taken += 1
        assert [value(d) for d in found] == [value(d) for d in expected]
    assert taken >= 7


def within_extraction_reach(v: np.ndarray) -> bool:
    """A sufficient condition for `extract_sums` to finish: each pass lowers sigma's exponent
    M by at least D = 52 - extra bits (extra = ceil(log2 n) + 1) and takes every bit down to
    2**(M - 53), so MAX_PASSES passes reach (MAX_PASSES - 1) D + 53 - extra bits below the
    top's frexp exponent; every sigma must stay in [2**-960, 2**1000]."""
    nonzero = v[v != 0]
    if nonzero.size == 0:
        return True
    extra = math.ceil(math.log2(max(v.size, 2))) + 1
    descent = 52 - extra
    top = math.frexp(float(np.abs(nonzero).max()))[1]
    low = min(_lowest_bit(float(x)) for x in nonzero)
    reach = (shortcuts.MAX_PASSES - 1) * descent + 53 - extra
    return top - low <= reach and top + extra <= 1000 and low - 53 >= -960


def _lowest_bit(x: float) -> int:
    """Exponent of the lowest set bit of a nonzero float."""
    num, den = abs(x).as_integer_ratio()
    return (num & -num).bit_length() - 1 - (den.bit_length() - 1)


# ---------------------------------------------------------------- Arb's roundings replayed


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**400), 2**400), st.integers(-300, 300))
def test_arb_dyadic_is_arbs_midpoint(man, exp):
    """`summation.dyadic` in Arb at the first precision holds the replayed midpoint, and its
    radius is within the bound `radius_exponent` gives (0 when the replay says exact)."""
    with ARB.workprec(PREC):
        ball = dyadic(man, exp, ARB)
    mid, operations = shortcuts.arb_dyadic(shortcuts.Dyadic(man, exp), PREC)
    assert _arb_value(ball) == value(mid)
    bound = shortcuts.radius_exponent(mid, operations, PREC)
    if bound is None:
        assert ball.rad() == 0
    else:
        assert _arb_radius(ball) <= Fraction(2) ** bound


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(2**300), 2**300),
    st.integers(1, 2**300),
    st.integers(-200, 200),
    st.integers(-200, 200),
)
def test_arb_quotient_is_arbs_midpoint(a, b, ea, eb):
    with ARB.workprec(PREC):
        ball = dyadic(a, ea, ARB) / dyadic(b, eb, ARB)
        exact_operands = dyadic(a, ea, ARB).rad() == 0 and dyadic(b, eb, ARB).rad() == 0
    num, _ = shortcuts.arb_dyadic(shortcuts.Dyadic(a, ea), PREC)
    den, _ = shortcuts.arb_dyadic(shortcuts.Dyadic(b, eb), PREC)
    mid, inexact = shortcuts.arb_quotient(num, den, PREC)
    assert _arb_value(ball) == value(mid)
    if exact_operands:
        assert (ball.rad() != 0) == inexact


def _arb_value(ball: flint.arb) -> Fraction:
    man, exp = (int(v) for v in ball.mid().man_exp())
    return Fraction(man) * Fraction(2) ** exp


def _arb_radius(ball: flint.arb) -> Fraction:
    man, exp = (int(v) for v in ball.rad().man_exp())
    return Fraction(man) * Fraction(2) ** exp


# ---------------------------------------------------------------- shortcut = Arb engine


def inputs(name: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Inputs of every kind the tests name: random data over many binades, ties, exact zeros,
    subnormal and overflowing results, constant batches, n up to 10**5."""
    if name == "cancellation":
        pairs = [
            rng.standard_normal(2),
            np.array([1.0, 1.0]),  # exact zero difference: kappa = inf
            np.array([1.0 + 2.0**-11, 2.0**-30]),  # near float16 ties
            np.array([1.0, -(2.0**-11)]),  # 1 + 2**-11: a float16 tie
            np.array([3.0e-308, 2.9e-308]),  # subnormal in float64
            np.array([6.0e4, -6.0e4]),  # beyond float16's max: overflow
            np.array([1e300, -1e300]),  # beyond float64's max
            rng.standard_normal(2) * 2.0 ** rng.integers(-1000, 1000, 2),
        ]
        return pairs
    if name == "dot":
        return [np.stack(pair) for pair in dot_inputs(rng)]
    vectors = [
        rng.standard_normal(10),
        rng.standard_normal(100) * 10.0 ** rng.uniform(-30, 30, 100),
        rng.standard_normal(7) * 2.0 ** rng.integers(-1070, 1000, 7),
        np.full(16, 1000.0),  # constant: variance exactly 0
        np.array([1.0, -1.0, 2.0, -2.0]),  # sum exactly 0
        np.array([1.0, 2.0**-11]),  # float16 tie (1 + 2**-11)
        np.array([1.0, 2.0**-8, 2.0**-40]),  # just above a bfloat16 tie
        np.array([2.0**-1074, 2.0**-1074, 2.0**-1073]),  # subnormal results
        np.array([6.0e4, 6.0e4, 1.0]),  # the sum overflows float16
        np.array([1.7e308, 1.7e308, -1.7e308]),
        rng.standard_normal(1000).astype(np.float32),
        rng.uniform(0, 1, 100_000),
    ]
    return vectors


def dot_inputs(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Factor pairs (x, y) of the dot problem: random, exactly zero, float16 ties, cancelling
    pairs, subnormal products, factors over many binades, n = 1 and n = 16384 last (the
    mpmath test takes the first ten)."""
    x = rng.standard_normal(100)
    return [
        (rng.standard_normal(10), rng.standard_normal(10)),
        (np.array([1.0, 2.0]), np.array([3.0, -1.5])),  # sum exactly 0: kappa = inf
        (np.array([1.0, 1.0]), np.array([1.0, 2.0**-11])),  # float16 tie (1 + 2**-11)
        (np.array([1.0, 2.0**-8, 2.0**-20]), np.array([1.0, 1.0, 2.0**-20])),  # above a tie
        (np.concatenate([x, -x, [1e-3]]), np.concatenate([x, x, [1.0]])),  # cancellation
        (np.array([2.0**-140, -0.0]), np.array([2.0**-140, 3.0])),  # subnormal in float32
        (np.array([0.0, -0.0]), np.array([-0.0, 5.0])),  # signed zeros
        (np.array([300.0, 300.0]), np.array([300.0, -299.0])),  # x y beyond float16's max
        (rng.standard_normal(50) * 2.0 ** rng.integers(-60, 60, 50), rng.standard_normal(50)),
        (np.array([1.5]), np.array([-2.5])),  # n = 1
        (rng.standard_normal(1000), rng.standard_normal(1000)),
        (rng.standard_normal(16384), rng.standard_normal(16384)),
    ]


@pytest.mark.parametrize("name", COVERED)
def test_shortcut_records_equal_the_arb_engine(name):
    """Every stored field of every covered problem, in every study format, as Arb gives it."""
    problem = PROBLEMS[name]
    rng = np.random.default_rng(11)
    taken = 0
    for x in inputs(name, rng):
        for fmt in FORMATS:
            with np.errstate(over="ignore"):
                x_fmt = cast(x, fmt)
            if not np.isfinite(x_fmt.astype(np.float64)).all():
                continue
            fast = ground_truths(problem, x_fmt, FORMATS, engine="arb")
            slow = ground_truths(problem, x_fmt, FORMATS, engine="arb", shortcut=False)
            assert truth_record(fast, problem=problem, x=x_fmt) == truth_record(
                slow, problem=problem, x=x_fmt
            ), (name, fmt, x_fmt[:4])
            taken += shortcuts.shortcut_for(problem)(x_fmt, PREC) is not None
    assert taken > 0


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(COVERED),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=True), min_size=2),
    st.sampled_from(FORMATS),
)
def test_shortcut_equals_the_arb_engine_on_random_inputs(name, xs, fmt):
    problem = PROBLEMS[name]
    if name == "dot":  # a pair of rows (x; y) of equal length
        xs = np.array(xs[: 2 * (len(xs) // 2)]).reshape(2, -1)
    with np.errstate(over="ignore"):
        x = cast(np.array(xs[:2] if name == "cancellation" else xs), fmt)
    assume(np.isfinite(x.astype(np.float64)).all())  # the runner never asks for the others
    fast = ground_truths(problem, x, FORMATS, engine="arb")
    slow = ground_truths(problem, x, FORMATS, engine="arb", shortcut=False)
    assert truth_record(fast) == truth_record(slow)


@pytest.mark.parametrize("name", COVERED)
def test_shortcut_agrees_with_mpmath(name):
    """The reference engine: the same rounding in every format, the split within AGREEMENT
    relative of mpmath's, kappa within COND_ACCURACY relative (inf for an exact zero)."""
    problem = PROBLEMS[name]
    rng = np.random.default_rng(12)
    for x in inputs(name, rng)[:10]:
        with np.errstate(over="ignore"):
            x64 = cast(x, "float64")
        if not np.isfinite(x64).all():
            continue
        fast = ground_truths(problem, x64, FORMATS, engine="arb")
        reference = ground_truths(problem, x64, FORMATS, engine="mpmath")
        for fmt in FORMATS:
            a, b = fast[fmt], reference[fmt]
            assert a.certified and b.certified
            same = (a.exact.rounded == b.exact.rounded) | (
                np.isnan(a.exact.rounded.astype(np.float64))
                & np.isnan(b.exact.rounded.astype(np.float64))
            )
            assert same.all(), (name, fmt)
        a, b = fast[FORMATS[0]], reference[FORMATS[0]]
        assert (a.exact.exp == b.exact.exp).all()
        assert np.all(np.abs((a.exact.hi + a.exact.lo) - (b.exact.hi + b.exact.lo)) <= AGREEMENT)
        if math.isinf(b.cond):
            assert math.isinf(a.cond)
        else:
            assert abs(a.cond - b.cond) <= 2 * COND_ACCURACY * b.cond


def test_zero_sum_has_infinite_condition_and_certified_zero():
    found = ground_truths(PROBLEMS["summation"], np.array([1.5, -1.5]), FORMATS, engine="arb")
    for truth in found.values():
        assert truth.certified and truth.cond == math.inf
        assert float(truth.exact.rounded[0]) == 0.0 and truth.exact.hi[0] == 0.0


def test_overflowing_sum_rounds_to_infinity_in_float16():
    x = cast(np.array([6.0e4, 6.0e4]), "float16")
    found = ground_truths(PROBLEMS["summation"], x, ["float16", "float64"], engine="arb")
    assert np.isinf(found["float16"].exact.rounded[0])
    expected = round_to_format(Fraction(float(x[0])) * 2, "float64")
    assert found["float64"].exact.rounded[0] == expected


def test_only_the_registered_reference_takes_the_shortcut():
    """A problem named like a covered one but with another reference takes the Arb engine."""
    other = Problem(
        name="summation",
        description="not the built-in sum",
        reference=lambda x, ctx: PROBLEMS["summation"].reference(x, ctx),
        magnitude=lambda x: 1.0,
        propose=PROBLEMS["summation"].propose,
        estimate=PROBLEMS["summation"].estimate,
        variants=PROBLEMS["summation"].variants,
    )
    assert shortcuts.shortcut_for(other) is None
    assert shortcuts.shortcut_for(PROBLEMS["summation"]) is shortcuts.sum_shortcut
    assert shortcuts.shortcut_for(PROBLEMS["dot"]) is shortcuts.dot_shortcut
    assert shortcuts.shortcut_for(PROBLEMS["softmax"]) is None
