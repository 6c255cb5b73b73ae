"""Tests for precision.truth.exact: exact input conversion and certified ground truth.

Expected values are computed here independently: float bit patterns are decoded by hand, and
reference outputs are evaluated at 400 bits from the textbook formulas (no shift, mpmath cannot
overflow), then rounded once with ``formats.round_to_format``. The certification tests run for
both engines (mpmath and Arb). The global mpmath and flint precisions are never assigned; a
fixture checks that nothing leaks.
"""

from __future__ import annotations

import math

import flint
import mpmath
import numpy as np
import pytest
from members import bound_problem
from same_bits import truth_bits
from truth_inputs import FORMATS, ordinary_input, vectorised_inputs

from precision.core.formats import (
    cast,
    common_format,
    get_format,
    is_rounding_tie,
    round_to_format,
    round_to_format_array,
)
from precision.core.metrics import EXP_LIMIT
from precision.problems import PROBLEMS, Problem
from precision.problems.logsumexp import LOGSUMEXP
from precision.truth.enclosed import DD_PREC, enclosure_for
from precision.truth.exact import (
    ENGINES,
    PRECISIONS,
    UndefinedResult,
    ground_truth,
    ground_truths,
    to_mpf_array,
)

UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}
HIGH = 400  # bits of the independent evaluations
SOFTMAX_FAMILY = ["exp", "softmax", "logsumexp", "log_softmax", "cross_entropy"]
"""The problems `_independent` evaluates; the accumulation problems check their exact
references against rational arithmetic in their own test modules."""
FIRST_CERTIFIED = {"mpmath": 160, "arb": 113}  # agreement needs two evaluations, a ball one


@pytest.fixture(autouse=True)
def _precision_unchanged():
    assert mpmath.mp.prec == 53 and flint.ctx.prec == 53
    yield
    assert mpmath.mp.prec == 53 and flint.ctx.prec == 53


# ------------------------------------------------------------------------ to_mpf_array


def _decode(bits: int, fmt) -> mpmath.mpf | None:
    """The exact value of an IEEE bit pattern of ``fmt`` as an mpf (None for NaN), by hand:
    ``ldexp`` of an integer significand is exact in mpmath."""
    width, p = fmt.bits, fmt.p
    w = width - p  # exponent bits (1 sign bit, p - 1 fraction bits)
    sign = -1 if bits >> (width - 1) else 1
    exponent = (bits >> (p - 1)) & ((1 << w) - 1)
    fraction = bits & ((1 << (p - 1)) - 1)
    if exponent == (1 << w) - 1:
        return None if fraction else sign * mpmath.inf
    if exponent == 0:  # zero and subnormals: fraction * 2**(emin - p + 1)
        return mpmath.ldexp(sign * fraction, fmt.emin - p + 1)
    return mpmath.ldexp(sign * ((1 << (p - 1)) | fraction), exponent - fmt.emax - p + 1)


def _check_exact_conversion(patterns: np.ndarray, fmt) -> None:
    values = patterns.view(fmt.dtype).reshape(-1, 2)  # a 2-D array keeps its shape
    converted = to_mpf_array(values)
    assert converted.shape == values.shape and converted.dtype == object
    for bits, value in zip(patterns.tolist(), converted.ravel(), strict=True):
        assert isinstance(value, mpmath.mpf)
        expected = _decode(bits, fmt)
        if expected is None:
            assert mpmath.isnan(value)
        else:
            assert value == expected, (fmt.name, hex(bits), value, expected)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_to_mpf_array_is_exact_for_every_16_bit_value(fmt):
    """All 65,536 patterns: zeros, every subnormal, max, the infinities and NaNs."""
    f = get_format(fmt)
    patterns = np.arange(2**16, dtype=np.uint16)
    _check_exact_conversion(patterns, f)
    # The extremes, by value, as a cross-check of the decoder itself.
    specials = cast(np.array([f.max, -f.max, f.min_subnormal, f.min_normal]), f)
    assert list(to_mpf_array(specials)) == [
        mpmath.mpf(f.max),
        -mpmath.mpf(f.max),
        mpmath.ldexp(1, f.emin - f.p + 1),
        mpmath.ldexp(1, f.emin),
    ]


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_to_mpf_array_is_exact_for_wide_formats(fmt):
    """Random bit patterns (every binade alike) plus the extremes and both zeros."""
    f = get_format(fmt)
    uint = UINT[f.bits]
    rng = np.random.default_rng(0)
    random = rng.integers(0, np.iinfo(uint).max, size=2000, dtype=uint, endpoint=True)
    extremes = np.array([f.max, -f.max, f.min_normal, f.min_subnormal, -0.0, 1.0 + f.eps])
    patterns = np.concatenate([random, extremes.astype(f.dtype).view(uint)])
    _check_exact_conversion(patterns, f)


def test_to_mpf_array_is_exact_inside_a_low_working_precision():
    """mpmath.mpf rounds to the working precision: the conversion must not inherit it."""
    x = np.array([1.0 + 2.0**-52, -(2.0**-1074), 1.0 / 3.0])
    with mpmath.workprec(20):
        converted = to_mpf_array(x)
        assert mpmath.mp.prec == 20
    assert [v == mpmath.mpf(f) for v, f in zip(converted, x.tolist(), strict=True)] == [True] * 3


# ------------------------------------------------------------------------ certification


def test_precision_ladder_starts_at_113_then_160():
    assert PRECISIONS[:2] == (113, 160)
    assert list(PRECISIONS) == sorted(PRECISIONS)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("problem_name", list(PROBLEMS))
def test_ground_truth_certified_at_the_first_pair(problem_name, fmt, engine):
    problem = bound_problem(PROBLEMS[problem_name])
    gt = ground_truth(problem, ordinary_input(problem, fmt, seed=1), fmt, engine=engine)
    assert gt.certified and gt.engine == engine
    # 113 and 160 agreed / the 113-bit balls (or the double-double enclosure) are tight
    enclosed = engine == "arb" and enclosure_for(problem) is not None
    assert gt.prec == (DD_PREC if enclosed else FIRST_CERTIFIED[engine])
    assert math.isfinite(gt.cond) and gt.cond >= 0
    assert gt.seconds >= 0
    assert gt.exact.rounded.dtype == get_format(fmt).dtype


def _tiny_lse_input() -> np.ndarray:
    """Float64 x with lse(x) ~ 1e-31 although every entry is of order 1 (or 40).

    exp(x0) + exp(x1) falls short of 1 by r ~ 1e-17 (x1 is rounded), and x2 = fl(log r) makes up
    the rest to within r * 2**-53 * |x2|: kappa_lse = sum |x_i| g_i / |lse| ~ 1e30.
    """
    with mpmath.workprec(HIGH):
        x0 = -0.5
        x1 = float(mpmath.log(1 - mpmath.exp(x0)))
        remainder = 1 - mpmath.exp(x0) - mpmath.exp(x1)
        if remainder < 0:  # take the float below, so that the remainder is positive
            x1 = float(np.nextafter(x1, -np.inf))
            remainder = 1 - mpmath.exp(x0) - mpmath.exp(x1)
        x2 = float(mpmath.log(remainder))
    return np.array([x0, x1, x2])


def _lse_high(x: np.ndarray):
    with mpmath.workprec(HIGH):
        return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in x.tolist()))


@pytest.mark.parametrize("engine", ENGINES)
def test_ground_truth_escalates_on_an_ill_conditioned_input(engine):
    x = _tiny_lse_input()
    exact = _lse_high(x)
    assert 0 < abs(exact) < 1e-25
    gt = ground_truth(LOGSUMEXP, x, "float64", engine=engine)
    assert gt.certified
    assert gt.prec > 160  # 113/160 cannot resolve 1e-31 against terms of order 1
    assert gt.cond > 1e20
    assert gt.exact.rounded[0] == round_to_format(exact, "float64")
    with mpmath.workprec(HIGH):
        value = (mpmath.mpf(gt.exact.hi[0]) + mpmath.mpf(gt.exact.lo[0])) * mpmath.mpf(2) ** int(
            gt.exact.exp[0]
        )
        assert abs(value - exact) <= 2.0**-80 * abs(exact)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("precisions", [(20, 24), (113, 160)])
def test_ground_truth_below_the_needed_precision_is_not_certified(precisions, engine):
    gt = ground_truth(LOGSUMEXP, _tiny_lse_input(), "float64", precisions=precisions, engine=engine)
    assert not gt.certified
    assert gt.prec == precisions[-1]


@pytest.mark.parametrize("engine", ENGINES)
def test_tiny_precision_cap_never_certifies_an_inexact_result(engine):
    """Even an ordinary input cannot pass the 2**-80 agreement (or radius) with 20/24 bits."""
    problem = PROBLEMS["softmax"]
    x = ordinary_input(problem, "float16", 2)
    gt = ground_truth(problem, x, "float16", precisions=(20, 24), engine=engine)
    assert not gt.certified


def test_arb_engine_agrees_with_mpmath_on_the_ill_conditioned_input():
    """lse ~ 1e-31 with kappa ~ 1e30: the same rounding, hi/lo and cond from both engines; the
    arb engine needs one evaluation at 256 bits where mpmath compares 256 with 512."""
    x = _tiny_lse_input()
    reference = ground_truth(LOGSUMEXP, x, "float64")
    gt = ground_truth(LOGSUMEXP, x, "float64", engine="arb")
    assert reference.certified and gt.certified
    assert (reference.prec, gt.prec) == (512, 256)
    assert gt.exact.rounded.tobytes() == reference.exact.rounded.tobytes()
    assert gt.cond == pytest.approx(reference.cond, rel=1e-10)
    with mpmath.workprec(HIGH):
        a, b = _exact_value(gt.exact, 0), _exact_value(reference.exact, 0)
        assert abs(a - b) <= 2.0**-80 * abs(b)


def _exact_value(exact, i: int) -> mpmath.mpf:
    """(hi + lo) * 2**exp of component i, exactly (inside a high workprec)."""
    hi, lo = mpmath.mpf(float(exact.hi[i])), mpmath.mpf(float(exact.lo[i]))
    return mpmath.ldexp(hi + lo, int(exact.exp[i]))


TIES_MISSED_BELOW_THE_CAP = [  # x_1 - x_0 is a tie of the format, e**(x_1 - x_0) < 2**-4096
    ("log_softmax", "float16", [[1.0, -2848.0]]),
    ("log_softmax", "bfloat16", [[8.0, -3072.0]]),
    ("log_softmax", "float32", [[2.0**-12, -4096.0]]),
    ("cross_entropy", "float16", [[1.0, -2848.0], [0.0, 1.0]]),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("problem_name", "fmt", "values"), TIES_MISSED_BELOW_THE_CAP)
def test_a_tie_missed_by_less_than_the_cap_is_not_certified(problem_name, fmt, values, engine):
    """log_softmax's y_1 = d - log1p(e**d) and cross-entropy's -d + log1p(e**d), d = x_1 - x_0,
    lie strictly beyond d, a tie of the format, by less than 2**-4096 relative: every rung of
    the ladder sees the tie, so neither engine may certify its even neighbour (the mpmath
    engine did, until it asked Arb whether the tie is exact)."""
    x = cast(np.array(values), fmt)
    d = mpmath.mpf(float(x.flat[1])) - mpmath.mpf(float(x.flat[0]))
    assert is_rounding_tie(d, fmt)
    assert ground_truth(PROBLEMS[problem_name], x, fmt, engine=engine).certified is False


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("values", "fmt", "want"),
    [
        ([2048.0, 1.0], "float16", 2048.0),  # 2049: a tie of float16, to even
        ([1.0, 2.0**-53], "float64", 1.0),  # a tie of float64: 54 significant bits
        ([3.0, -3.0], "float16", 0.0),
    ],
    ids=["tie", "float64-tie", "zero"],
)
def test_an_exact_tie_or_zero_is_certified(values, fmt, want, engine):
    """A sum of floats that is exactly a tie or exactly 0 is certified by both engines (the
    mpmath engine once Arb proves it exact at the top of the ladder, comparing the two at
    the working precision: a float64 tie has 54 bits)."""
    truth = ground_truth(PROBLEMS["summation"], cast(np.array(values), fmt), fmt, engine=engine)
    assert truth.certified and float(truth.exact.rounded[0]) == want


def test_unknown_engine_is_rejected():
    with pytest.raises(ValueError, match="engine"):
        ground_truth(LOGSUMEXP, np.array([1.0, 2.0]), "float64", engine="flint")


# ------------------------------------------------------------------------ rounded reference


def _independent(problem_name: str, x: np.ndarray) -> list:
    """The exact output at HIGH bits from the textbook formula (no shift)."""
    with mpmath.workprec(HIGH):
        if problem_name == "exp":
            return [mpmath.exp(mpmath.mpf(x.item()))]
        logits_ = x[0] if problem_name == "cross_entropy" else x
        v = [mpmath.mpf(value) for value in logits_.tolist()]
        e = [mpmath.exp(vi) for vi in v]
        total = mpmath.fsum(e)
        lse = mpmath.log(total)
        if problem_name == "softmax":
            return [ei / total for ei in e]
        if problem_name == "logsumexp":
            return [lse]
        if problem_name == "log_softmax":
            return [vi - lse for vi in v]
        t = [mpmath.mpf(value) for value in x[1].tolist()]
        return [-mpmath.fsum(ti * (vi - lse) for ti, vi in zip(t, v, strict=True))]


def _reference_inputs(problem_name: str, fmt: str):
    """Ordinary inputs, plus ones whose outputs underflow (softmax components far below the
    smallest subnormal) or overflow (exp(100) in float16) in the format."""
    rng = np.random.default_rng(4)
    if problem_name == "exp":
        for value in (-0.75, 3.5, 100.0, -20.0):
            yield cast(np.array([value]), fmt)
        return
    for x in ([0.0, -30.0, -200.0, 5.0], rng.standard_normal(9) * 3, rng.standard_normal(30)):
        x = np.asarray(x, dtype=np.float64)
        if problem_name == "cross_entropy":
            target = np.zeros(x.size)
            target[1] = 1.0
            x = np.stack([x, target])
        yield cast(x, fmt)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("problem_name", SOFTMAX_FAMILY)
def test_rounded_reference_is_the_independent_value_rounded_once(problem_name, fmt, engine):
    for x in _reference_inputs(problem_name, fmt):
        gt = ground_truth(bound_problem(PROBLEMS[problem_name]), x, fmt, engine=engine)
        assert gt.certified
        expected = np.array(
            [round_to_format(v, fmt) for v in _independent(problem_name, x)],
            dtype=get_format(fmt).dtype,
        )
        assert gt.exact.rounded.dtype == expected.dtype
        assert np.array_equal(gt.exact.rounded, expected), (problem_name, fmt, x)


# ------------------------------------------------------------------------ precision leaks


@pytest.mark.parametrize("engine", ENGINES)
def test_no_global_precision_change_leaks_from_a_failing_reference(engine):
    def failing_reference(x, ctx):
        assert ctx.name == engine
        working = mpmath.mp.prec if engine == "mpmath" else flint.ctx.prec
        assert working == PRECISIONS[0]  # evaluated inside the engine's workprec
        raise ZeroDivisionError("reference failed")

    problem = Problem(
        name="failing",
        description="a reference that raises inside workprec",
        reference=failing_reference,
        magnitude=lambda x: 0.0,
        propose=lambda rng, **kwargs: None,
        estimate=lambda X: (X, X),
        variants={},
    )
    with pytest.raises(UndefinedResult, match="undefined"):
        ground_truth(problem, np.array([1.0]), "float64", engine=engine)
    assert mpmath.mp.prec == 53 and mpmath.mp.dps == 15
    assert flint.ctx.prec == 53


@pytest.mark.parametrize("engine", ENGINES)
def test_no_global_precision_change_leaks_from_escalation(engine):
    ground_truth(LOGSUMEXP, _tiny_lse_input(), "float64", engine=engine)
    assert mpmath.mp.prec == 53 and mpmath.mp.dps == 15
    assert flint.ctx.prec == 53


# ------------------------------------------------------------------------ shared and extreme inputs


def test_one_evaluation_certifies_every_format_of_a_shared_input():
    """The same input in several formats: one evaluation, rounded and certified for each."""
    problem = PROBLEMS["log_softmax"]
    x = np.array([0.5, -3.0, 2.25])  # representable in every format
    for engine in ("mpmath", "arb"):
        shared = ground_truths(problem, x, FORMATS, engine=engine)
        for name in FORMATS:
            alone = ground_truth(problem, x.astype(get_format(name).dtype), name, engine=engine)
            assert shared[name].certified
            assert shared[name].exact.rounded.tobytes() == alone.exact.rounded.tobytes()
        assert sum(t.seconds > 0 for t in shared.values()) == 1  # the work is booked once


@pytest.mark.parametrize(
    ("problem", "values"),
    [
        ("softmax", [1.0, 1.042515853627696e34]),  # balls 1 +/- 2**-1.5e34
        ("softmax", [1.0, -1e300, 5.0]),
        ("exp", [1e308]),  # exp(1e308): a binary exponent beyond int64, saturated
        ("exp", [-1e308]),
        ("logsumexp", [0.0, 1e-300]),
    ],
)
def test_engines_agree_on_extreme_inputs(problem, values):
    """The Arb engine (the default) handles radii and exponents of any size as the mpmath
    engine does: same certified roundings in every format, same exact split."""
    x = np.array(values)
    for fmt in ("float16", "bfloat16", "float64"):
        x_fmt = cast(x, fmt)
        if not np.isfinite(x_fmt.astype(np.float64)).all():
            continue
        arb = ground_truth(PROBLEMS[problem], x_fmt, fmt, engine="arb")
        ref = ground_truth(PROBLEMS[problem], x_fmt, fmt, engine="mpmath")
        assert arb.certified and ref.certified
        assert arb.exact.rounded.tobytes() == ref.exact.rounded.tobytes()
        assert np.array_equal(arb.exact.exp, ref.exact.exp)
        # A saturated exponent (a value beyond 2**(2**60)) keeps no meaningful significand.
        kept = np.abs(arb.exact.exp) < EXP_LIMIT
        arb_value, ref_value = (arb.exact.hi + arb.exact.lo), (ref.exact.hi + ref.exact.lo)
        assert np.allclose(arb_value[kept], ref_value[kept], rtol=2**-80, atol=0)


# ------------------------------------------------------------------------ vectorised certification


@pytest.mark.parametrize(
    "problem_name",
    ["softmax", "log_softmax", "logsumexp", "cross_entropy", "summation", "batchnorm"],
)
def test_vectorised_certification_changes_no_bit(problem_name, monkeypatch):
    """`precision.truth.balls` settles the balls in numpy; forcing every ball through the exact
    per-ball rule (`_ball`) gives the same ground truths bit for bit, alone and for several
    formats at once."""
    from precision.truth import exact as exact_module

    problem = bound_problem(PROBLEMS[problem_name])
    every = [*FORMATS, "float8_e4m3fn", "float8_e5m2"]
    groups = [[f] for f in every] + [FORMATS, every, ["float8_e4m3fn", "float32"]]
    for x in vectorised_inputs(problem_name):
        for fmts in groups:
            # One format: the input rounded to it; several: to the values common to all.
            with np.errstate(over="ignore"):
                x_fmt = round_to_format_array(x, common_format(fmts)).astype(np.float64)
            if len(fmts) == 1:
                x_fmt = x_fmt.astype(get_format(fmts[0]).dtype)
            if not np.isfinite(x_fmt.astype(np.float64)).all():
                continue
            monkeypatch.setattr(exact_module, "VECTORISED_MIN", 1)
            fast = ground_truths(problem, x_fmt, fmts, engine="arb")
            monkeypatch.setattr(exact_module, "VECTORISED_MIN", 10**9)
            slow = ground_truths(problem, x_fmt, fmts, engine="arb")
            for name in fmts:
                assert truth_bits(fast[name]) == truth_bits(slow[name]), (problem_name, fmts, x)


@pytest.mark.parametrize("problem_name", ["softmax", "log_softmax", "logsumexp", "cross_entropy"])
def test_repeated_values_change_no_bit(problem_name, monkeypatch):
    """Inputs that repeat values (bfloat16 and float16 logits of n = 1000 hold a few hundred
    distinct ones) are evaluated and certified once per distinct value (`logits.find_repeats`,
    `_ArbOutputs` with ``shared``): the ground truths are those of evaluating and certifying
    every element, bit for bit, in every format at once."""
    from precision.problems import logits
    from precision.truth import exact as exact_module

    problem = bound_problem(PROBLEMS[problem_name])
    rng = np.random.default_rng(15)
    for fmt, n, scale in [("bfloat16", 1000, 4.0), ("float16", 300, 30.0), ("bfloat16", 40, 1e3)]:
        x = cast(rng.standard_normal(n) * scale, fmt)
        x[::17] = 0.0
        if problem_name == "cross_entropy":
            target = np.zeros(n, dtype=x.dtype)
            target[int(np.argmax(x.astype(np.float64)))] = 1.0
            x = np.stack([x, target])
        assert logits.has_repeats(x.astype(np.float64).ravel())
        shared = ground_truths(problem, x, [fmt, *FORMATS], engine="arb")
        with monkeypatch.context() as patch:
            patch.setattr(logits, "find_repeats", lambda values: None)
            patch.setattr(exact_module, "_repeats_values", lambda values: False)
            each = ground_truths(problem, x, [fmt, *FORMATS], engine="arb")
        for name in each:
            assert truth_bits(shared[name]) == truth_bits(each[name]), (problem_name, fmt, n)


def test_shared_output_balls_are_certified_once():
    """`_ArbOutputs` with ``shared`` exports each distinct ball object once and spreads its
    values: the same values and certification as every ball on its own."""
    from precision.core.numbers import ARB
    from precision.truth.exact import _ArbOutputs

    with ARB.workprec(113):
        distinct = [flint.arb(v).exp() / 7 for v in np.linspace(-50, 50, 30).tolist()]
    picks = np.random.default_rng(16).integers(0, 30, 500).tolist()
    balls = [distinct[i] for i in picks]
    fmts = [get_format(f) for f in FORMATS]
    shared, each = _ArbOutputs(balls, fmts, shared=True), _ArbOutputs(balls, fmts)
    assert len(shared.distinct) == len(set(picks)) and len(each.distinct) == len(balls)
    assert shared.certified() == each.certified()
    for a, b in zip(shared.values()[:3], each.values()[:3], strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for a, b in zip(shared.values()[3], each.values()[3], strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
