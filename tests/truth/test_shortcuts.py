"""Tests for precision.truth.shortcuts: exact ground truth of sums, differences and variances.

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
from precision.truth.exact import (
    AGREEMENT,
    COND_ACCURACY,
    PRECISIONS,
    ground_truths,
    truth_record,
)

COVERED = ("summation", "weight_update", "cancellation", "variance")
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
    assert shortcuts.shortcut_for(PROBLEMS["softmax"]) is None
