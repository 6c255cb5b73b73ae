"""Tests for precision.core.metrics: ulps, bits, relative / absolute / normwise errors, outcomes.

Ground truth comes from mpmath, always inside ``workprec`` blocks (the global precision is never
assigned). Float values of a format are drawn as random bit patterns of its width, so every
binade, the subnormals, both zeros and both infinities are reachable.
"""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precision.core.formats import cast, get_format, round_to_format
from precision.core.metrics import (
    EXP_LIMIT,
    OUTCOMES,
    Exact,
    absolute_error,
    bits_of_error,
    classify,
    error_in_u,
    normwise_relative_error,
    ordinal,
    relative_error,
    result_outcome,
    ulp_distance,
    ulp_span,
)

try:
    from numpy.testing import nulp_diff
except ImportError:  # numpy >= 2 keeps it private (assert_array_max_ulp uses it)
    from numpy.testing._private.utils import nulp_diff

FORMATS = ["float16", "bfloat16", "float32", "float64"]
UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}
# Bit pattern of +inf in each format: ordinal(inf), and half of ulp_span.
INF_BITS = {"float16": 0x7C00, "bfloat16": 0x7F80, "float32": 0x7F800000, "float64": 0x7FF << 52}

PREC = 400  # working precision of the mpmath ground truth (bits)
# The double-double reference of an Exact is within ~2**-106 of the mpf, so an error measured
# against it can be off by that much (in units of |exact|) however well it is computed.
DD_SLACK = 2.0**-100
SUBNORMAL = 2.0**-1074

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------
# helpers and strategies


def fmt_dtype(fmt: str) -> np.dtype:
    return get_format(fmt).dtype


def from_bits(bits: int, fmt: str) -> np.ndarray:
    """The 0-d array of format ``fmt`` whose bit pattern is ``bits``."""
    width = get_format(fmt).bits
    return np.array(bits, dtype=UINT[width]).view(fmt_dtype(fmt))


def to_bits(x: np.ndarray) -> int:
    x = np.asarray(x)
    return int(x.view(UINT[x.dtype.itemsize * 8]))


def next_up(x: np.ndarray, fmt: str) -> np.ndarray:
    """The next float of ``fmt`` towards +inf (np.nextafter, or a bit step for bfloat16)."""
    x = np.asarray(x, dtype=fmt_dtype(fmt))
    if fmt != "bfloat16":
        with np.errstate(over="ignore"):
            return np.nextafter(x, np.array(np.inf, dtype=x.dtype))
    bits = to_bits(x)
    if bits == 0x8000:  # -0 -> smallest positive subnormal
        return from_bits(0x0001, fmt)
    return from_bits(bits - 1 if bits & 0x8000 else bits + 1, fmt)


def floats(fmt: str, *, finite: bool = False):
    """Non-NaN values of ``fmt`` as 0-d arrays, drawn as random bit patterns."""
    width = get_format(fmt).bits

    def ok(x):
        return not np.isnan(float(x)) and (not finite or np.isfinite(float(x)))

    return st.integers(0, 2**width - 1).map(lambda b: from_bits(b, fmt)).filter(ok)


@st.composite
def mpfs(draw, min_exp: int, max_exp: int, man_bits: int = 120):
    """A nonzero mpf with up to ``man_bits`` significant bits and binade in [min_exp, max_exp]."""
    man = draw(st.integers(1, 2**man_bits - 1))
    e = draw(st.integers(min_exp, max_exp))
    negative = draw(st.booleans())
    with mpmath.workprec(man_bits + 10):
        v = mpmath.ldexp(mpmath.mpf(man), e - man.bit_length() + 1)  # exact
        return -v if negative else v


@st.composite
def computed_for(draw, exact: mpmath.mpf, fmt: str):
    """A computed value in ``fmt`` for an exact value: its rounding, a perturbation, or junk."""
    kind = draw(st.sampled_from(["rounded", "perturbed", "ulps", "random", "zero"]))
    dtype = fmt_dtype(fmt)
    if kind == "rounded":
        return np.array(round_to_format(exact, fmt), dtype=dtype)
    if kind == "perturbed":
        k = draw(st.integers(1, 60))
        sign = draw(st.sampled_from([-1, 1]))
        with mpmath.workprec(PREC):
            return np.array(round_to_format(exact * (1 + sign * mpmath.ldexp(1, -k)), fmt), dtype)
    if kind == "ulps":
        x = np.array(round_to_format(exact, fmt), dtype=dtype)
        for _ in range(draw(st.integers(1, 3))):
            if np.isfinite(float(x)):
                x = next_up(x, fmt)
        return x
    if kind == "zero":
        return np.zeros((), dtype)
    return draw(floats(fmt))


def as_mpf(x) -> mpmath.mpf:
    """An exact mpf of a float of any registry format (through float(), which is exact)."""
    return mpmath.mpf(float(x))


def assert_matches(got: float, truth: mpmath.mpf, slack: float = 0.0, rtol: float = 1e-14):
    """``got`` (float64) agrees with the mpmath value ``truth`` to rtol, plus ``slack``."""
    expected = float(truth)  # correctly rounded; inf beyond float64's range
    if math.isinf(expected):
        assert got == expected, (got, truth)
        return
    assert math.isfinite(got), (got, truth)
    assert abs(got - expected) <= rtol * abs(expected) + slack, (got, expected)


# --------------------------------------------------------------------------------------------
# 1. ordinal / ulp_distance


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data())
def test_ulp_distance_to_itself_is_zero(fmt, data):
    x = data.draw(floats(fmt))
    assert int(ulp_distance(x, x)) == 0


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data())
def test_ulp_distance_is_symmetric(fmt, data):
    a, b = data.draw(floats(fmt)), data.draw(floats(fmt))
    assert int(ulp_distance(a, b)) == int(ulp_distance(b, a))
    assert int(ulp_distance(a, b)) == abs(int(ordinal(a)) - int(ordinal(b)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_signed_zeros_coincide(fmt):
    pos, neg = np.zeros((), fmt_dtype(fmt)), -np.zeros((), fmt_dtype(fmt))
    assert to_bits(neg) != to_bits(pos)  # really the two different zeros
    assert int(ordinal(pos)) == int(ordinal(neg)) == 0
    assert int(ulp_distance(pos, neg)) == 0
    tiny = from_bits(1, fmt)  # smallest positive subnormal
    assert int(ulp_distance(neg, tiny)) == int(ulp_distance(pos, tiny)) == 1
    assert int(ulp_distance(-tiny, tiny)) == 2


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data())
def test_ulp_distance_adds_along_the_line(fmt, data):
    a, b, c = sorted((data.draw(floats(fmt)) for _ in range(3)), key=float)
    d_ac, d_ab, d_bc = (int(ulp_distance(x, y)) for x, y in ((a, c), (a, b), (b, c)))
    assert d_ac == d_ab + d_bc


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data())
def test_next_float_is_one_ulp_away(fmt, data):
    x = data.draw(floats(fmt).filter(lambda v: float(v) != np.inf))
    up = next_up(x, fmt)
    assert float(up) > float(x)
    assert int(ulp_distance(x, up)) == 1
    assert int(ordinal(up)) == int(ordinal(x)) + 1
    # and downwards, by symmetry of the format
    down = -next_up(-x, fmt)
    assert int(ulp_distance(down, x)) == 1


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data())
def test_distance_across_zero_is_twice_the_ordinal(fmt, data):
    x = data.draw(floats(fmt))
    assert int(ordinal(-x)) == -int(ordinal(x))
    assert int(ulp_distance(-x, x)) == 2 * abs(int(ordinal(x)))


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data())
def test_ordinal_is_monotone(fmt, data):
    values = data.draw(st.lists(floats(fmt), min_size=2, max_size=20))
    x = np.array(values, dtype=fmt_dtype(fmt))
    x = x[np.argsort(x.astype(np.float64), kind="stable")]
    steps_in_value = np.diff(x.astype(np.float64))
    steps_in_ordinal = np.diff(ordinal(x))
    assert (steps_in_ordinal >= 0).all()
    np.testing.assert_array_equal(steps_in_ordinal > 0, steps_in_value > 0)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_ordinal_exhaustive_16_bit(fmt):
    """Every 16-bit pattern: the sorted non-NaN values get the ordinals -K..K with no gaps."""
    x = np.arange(2**16, dtype=np.uint16).view(fmt_dtype(fmt))
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        x = x[~np.isnan(x.astype(np.float64))]
    x = x[np.argsort(x.astype(np.float64), kind="stable")]
    ords = ordinal(x)
    assert ords.dtype == np.int64
    assert (np.diff(ords) >= 0).all()
    k = INF_BITS[fmt]
    np.testing.assert_array_equal(np.unique(ords), np.arange(-k, k + 1))
    assert len(ords) == 2 * k + 2  # every value once, zero twice


@pytest.mark.parametrize("fmt", FORMATS)
def test_infinity_is_one_past_max(fmt):
    f = get_format(fmt)
    big = np.array(f.max, dtype=f.dtype)
    inf = np.array(np.inf, dtype=f.dtype)
    assert int(ordinal(inf)) == int(ordinal(big)) + 1 == INF_BITS[fmt]
    assert int(ordinal(-inf)) == -INF_BITS[fmt]
    assert int(ulp_distance(big, inf)) == int(ulp_distance(-big, -inf)) == 1
    assert int(ulp_distance(-inf, inf)) == ulp_span(fmt) == 2 * INF_BITS[fmt]
    assert int(ulp_distance(-big, big)) == ulp_span(fmt) - 2


def test_float16_extremes_and_nulp_diff():
    big, neg = np.float16(65504), np.float16(-65504)
    # 0x7BFF = 31743 floats on each side of zero.
    assert int(ulp_distance(big, neg)) == 2 * 0x7BFF == 63486
    # numpy's own ulp count subtracts in the 16-bit width and wraps across the sign change.
    wrong = float(np.ravel(nulp_diff(big, neg))[0])
    assert wrong != 63486
    assert wrong == 2050  # the value NUMERICS.md records for numpy 2.4
    np.testing.assert_array_max_ulp(big, neg, maxulp=3000)  # "within 3000 ulps": wrong


def test_float64_across_zero():
    assert int(ulp_distance(np.float64(5e-324), np.float64(-5e-324))) == 2
    # 2.0 = 0x4000000000000000: 2**62 floats on each side, 2**63 in all (int64 would wrap).
    d = ulp_distance(np.float64(2.0), np.float64(-2.0))
    assert d.dtype == np.uint64
    assert int(d) == 2**63
    big = np.finfo(np.float64).max
    assert int(ulp_distance(np.float64(-big), np.float64(big))) == 2 * 0x7FEFFFFFFFFFFFFF
    inf = np.float64(np.inf)
    assert int(ulp_distance(-inf, inf)) == ulp_span("float64") == 2**64 - 2**53
    assert int(ordinal(np.float64(-1.0))) == -0x3FF0000000000000


def test_bfloat16_through_uint16_view():
    one = from_bits(0x3F80, "bfloat16")
    assert float(one) == 1.0
    after_one = from_bits(0x3F81, "bfloat16")
    assert float(after_one) == 1.0 + 2.0**-7
    assert int(ulp_distance(one, after_one)) == 1
    assert int(ordinal(one)) == 0x3F80
    assert int(ulp_distance(-one, one)) == 2 * 0x3F80
    big = np.array(get_format("bfloat16").max, dtype=fmt_dtype("bfloat16"))
    assert to_bits(big) == 0x7F7F
    assert int(ulp_distance(-big, big)) == 2 * 0x7F7F
    assert ulp_distance(one, after_one).dtype == np.int64


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_raises_by_default(fmt):
    dtype = fmt_dtype(fmt)
    nan, one = np.array([np.nan, 1.0], dtype=dtype), np.array([1.0, 1.0], dtype=dtype)
    with pytest.raises(ValueError, match="NaN"):
        ulp_distance(nan, one)
    with pytest.raises(ValueError, match="NaN"):
        ulp_distance(one, nan)
    with pytest.raises(ValueError, match="NaN"):
        ordinal(nan)
    with pytest.raises(ValueError, match="nan must be"):
        ulp_distance(one, one, nan="ignore")


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_max_scores_the_span(fmt):
    dtype = fmt_dtype(fmt)
    a = np.array([np.nan, 1.0, np.nan, 1.0], dtype=dtype)
    b = np.array([1.0, np.nan, np.nan, -1.0], dtype=dtype)
    d = ulp_distance(a, b, nan="max")
    span = ulp_span(fmt)
    assert [int(v) for v in d] == [span, span, 0, 2 * int(ordinal(np.array(1.0, dtype)))]
    # broadcasting a scalar NaN
    d = ulp_distance(np.array(np.nan, dtype), np.array([0.0, np.nan], dtype), nan="max")
    assert [int(v) for v in d] == [span, 0]


SIGNALLING_NAN = {
    "float16": 0x7C01,
    "bfloat16": 0x7F81,
    "float32": 0x7F800001,
    "float64": 0x7FF << 52 | 1,
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_signalling_nan_is_scored_without_warnings(fmt):
    snan = from_bits(SIGNALLING_NAN[fmt], fmt).reshape(1)
    one = np.ones(1, fmt_dtype(fmt))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(ulp_distance(snan, one, nan="max")[0]) == ulp_span(fmt)
        assert int(ulp_distance(snan, snan, nan="max")[0]) == 0
        assert bits_of_error(snan, np.ones(1))[0] == pytest.approx(math.log2(1 + ulp_span(fmt)))
        assert np.isnan(relative_error(snan, np.ones(1))[0])
        assert np.isnan(absolute_error(snan, [mpmath.mpf(1)])[0])
        assert list(classify(snan, np.ones(1))) == ["nan"]
        assert result_outcome(snan, np.ones(1)) == "nan"
        with pytest.raises(ValueError):
            ordinal(snan)


def test_ulp_span_values():
    # float16: +inf is 0x7C00 = 31744, so -inf .. +inf spans 2 * 31744 = 63488 ordinals.
    assert ulp_span("float16") == 2 * 0x7C00 == 63488
    assert ulp_span(get_format("float16")) == 63488
    for fmt in FORMATS:
        assert ulp_span(fmt) == 2 * INF_BITS[fmt]
        assert ulp_span(fmt) == 2 * to_bits(np.array(np.inf, fmt_dtype(fmt)))


def test_dtype_mismatch_raises_type_error():
    with pytest.raises(TypeError):
        ulp_distance(np.float16(1.0), np.float32(1.0))
    with pytest.raises(TypeError):
        ulp_distance(np.array([1.0], np.float32), np.array([1.0], fmt_dtype("bfloat16")))


def test_ulp_distance_dtypes():
    for fmt in ("float16", "bfloat16", "float32"):
        one = np.ones(3, fmt_dtype(fmt))
        assert ulp_distance(one, one).dtype == np.int64
    assert ulp_distance(np.ones(3), np.ones(3)).dtype == np.uint64
    assert ordinal(np.ones(3)).dtype == np.int64


# --------------------------------------------------------------------------------------------
# 2. bits_of_error


def _range(fmt: str) -> tuple[int, int]:
    """Binades to draw exact values from: subnormals and a little past max included."""
    f = get_format(fmt)
    return f.emin - f.p - 1, f.emax + 1


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data())
def test_bits_zero_for_correctly_rounded(fmt, data):
    v = data.draw(mpfs(*_range(fmt)))
    computed = np.array([round_to_format(v, fmt)], dtype=fmt_dtype(fmt))
    assert bits_of_error(computed, [v])[0] == 0.0
    assert bits_of_error(computed, Exact.from_mpf([v], fmt=fmt))[0] == 0.0
    assert bits_of_error(computed, np.array([v], dtype=object))[0] == 0.0
    if np.isfinite(computed[0]):
        up = next_up(computed[0], fmt).reshape(1)
        assert bits_of_error(up, [v])[0] == 1.0  # log2(1 + 1)
        if np.isfinite(up[0]):
            up2 = next_up(up[0], fmt).reshape(1)
            assert bits_of_error(up2, [v])[0] == pytest.approx(math.log2(3))


@pytest.mark.parametrize("fmt", FORMATS)
def test_bits_of_one_ulp(fmt):
    dtype = fmt_dtype(fmt)
    one = np.array([1.0], dtype)
    assert bits_of_error(one, np.array([1.0], dtype))[0] == 0.0
    assert bits_of_error(next_up(one[0], fmt).reshape(1), np.array([1.0], dtype))[0] == 1.0
    # a float64 reference is rounded once to the computed format
    assert bits_of_error(cast(np.array([1 / 3]), fmt), np.array([1 / 3]))[0] == 0.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_bits_of_nan_is_about_the_width(fmt):
    dtype = fmt_dtype(fmt)
    bits = bits_of_error(np.array([np.nan, np.nan, 1.0], dtype), np.array([1.0, np.nan, 1.0]))
    width = get_format(fmt).bits
    assert bits[0] == pytest.approx(math.log2(1 + ulp_span(fmt)))
    assert width - 0.1 < bits[0] <= width
    assert bits[1] == 0.0  # NaN where the reference is NaN: both NaN
    assert bits[2] == 0.0
    with pytest.raises(ValueError):
        bits_of_error(np.array([np.nan], dtype), np.array([1.0]), nan="raise")


def test_bits_of_nan_float16_is_16():
    bits = bits_of_error(np.array([np.nan], np.float16), [mpmath.mpf(1)])
    assert bits[0] == pytest.approx(16, abs=0.05)  # log2(63489) = 15.954


@pytest.mark.parametrize(("fmt", "p"), [("float16", 11), ("float64", 53)])
def test_bits_near_a_tie_round_the_mpf_itself(fmt, p):
    """1 + 2**-p + 2**-200 rounds up; its double-double split is the tie itself (rounds down)."""
    with mpmath.workprec(PREC):
        v = 1 + mpmath.ldexp(1, -p) + mpmath.ldexp(1, -200)
    correct = np.array([1 + 2.0 ** (1 - p)], dtype=fmt_dtype(fmt))
    assert float(round_to_format(v, fmt)) == 1 + 2.0 ** (1 - p)
    assert bits_of_error(correct, [v])[0] == 0.0
    assert bits_of_error(correct, Exact.from_mpf([v], fmt=fmt))[0] == 0.0
    assert bits_of_error(np.array([1.0], fmt_dtype(fmt)), [v])[0] == 1.0


# --------------------------------------------------------------------------------------------
# 3. relative, absolute and normwise errors against mpmath


def _reference(kind: str, exact: list[mpmath.mpf], fmt: str):
    if kind == "float":
        return np.array([float(v) for v in exact])
    if kind == "mpf":
        return list(exact)
    return Exact.from_mpf(exact)  # at the default mp.prec: must still keep every bit


def _truth_relative(c, e) -> mpmath.mpf:
    with mpmath.workprec(PREC):
        return abs(as_mpf(c) - e) / abs(e)


def _truth_absolute(c, e) -> mpmath.mpf:
    with mpmath.workprec(PREC):
        return abs(as_mpf(c) - e)


@pytest.mark.parametrize("kind", ["float", "mpf", "exact"])
@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(data=st.data())
def test_relative_and_absolute_error_match_mpmath(fmt, kind, data):
    if kind == "float":  # exact values that are float64 numbers (normal range)
        exact = [
            as_mpf(float(v)) for v in data.draw(st.lists(mpfs(-1020, 1020), min_size=1, max_size=6))
        ]
    else:  # anything, far outside float64's range included
        exact = data.draw(st.lists(mpfs(-3500, 3500), min_size=1, max_size=6))
    computed = np.array([data.draw(computed_for(e, fmt)) for e in exact], fmt_dtype(fmt))
    reference = _reference(kind, exact, fmt)
    rel = relative_error(computed, reference)
    absolute = absolute_error(computed, reference)
    assert rel.dtype == absolute.dtype == np.float64
    assert rel.shape == absolute.shape == computed.shape
    for c, e, r, a in zip(computed, exact, rel, absolute, strict=True):
        assert_matches(r, _truth_relative(c, e), slack=DD_SLACK)
        with mpmath.workprec(PREC):
            slack = float(abs(e) * DD_SLACK) + SUBNORMAL
        assert_matches(a, _truth_absolute(c, e), slack=slack)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(error_in_u(rel, fmt), rel / get_format(fmt).u)


@pytest.mark.parametrize("fmt", FORMATS)
def test_relative_error_of_one_rounding_is_at_most_u(fmt):
    with mpmath.workprec(PREC):
        exact = [mpmath.pi, mpmath.e, mpmath.sqrt(2), mpmath.mpf(1) / 3, mpmath.exp(10)]
        reference = Exact.from_mpf(exact, fmt=fmt)
    computed = reference.rounded
    rel = relative_error(computed, reference)
    assert (rel > 0).all()
    assert (error_in_u(rel, fmt) <= 1).all()
    assert bits_of_error(computed, reference).max() == 0.0


def test_references_far_outside_float64():
    with mpmath.workprec(PREC):
        big, small = mpmath.exp(1000), mpmath.exp(-1000)
        tiny = mpmath.exp(-2000)
    # computed 0 vs exp(-1000): everything is lost, relative error exactly 1
    assert relative_error(np.array([0.0]), [small])[0] == 1.0
    assert relative_error(np.array([0.0], np.float16), Exact.from_mpf([small]))[0] == 1.0
    assert absolute_error(np.array([0.0]), [small])[0] == 0.0  # 5e-435 is below float64
    # any finite float vs exp(1000) is off by ~100%
    for x in (1.0, np.finfo(np.float64).max):
        assert relative_error(np.array([x]), [big])[0] == pytest.approx(1.0, abs=1e-100)
        assert absolute_error(np.array([x]), [big])[0] == np.inf  # 2e434 overflows float64
    assert relative_error(np.array([65504], np.float16), [big])[0] == 1.0
    # inf computed vs finite exact
    assert relative_error(np.array([np.inf]), [big])[0] == np.inf
    assert relative_error(np.array([-np.inf], np.float32), [small])[0] == np.inf
    # the smallest subnormal vs exp(-1000) and exp(-2000): huge, then beyond float64
    with mpmath.workprec(PREC):
        expected = float(mpmath.ldexp(1, -1074) / small)
    assert relative_error(np.array([5e-324]), [small])[0] == pytest.approx(expected, rel=1e-14)
    assert relative_error(np.array([5e-324]), [tiny])[0] == np.inf
    assert relative_error(np.array([1.0]), [tiny])[0] == np.inf
    assert relative_error(np.array([0.0]), [tiny])[0] == 1.0
    assert absolute_error(np.array([5e-324]), [tiny])[0] == 5e-324
    with mpmath.workprec(PREC):
        two_2100 = mpmath.ldexp(1, -2100)
    assert relative_error(np.array([5e-324]), [two_2100])[0] == np.inf


def test_relative_error_special_cases():
    zero = np.zeros(4)
    computed = np.array([0.0, -0.0, 1e-300, np.inf])
    np.testing.assert_array_equal(relative_error(computed, zero), [0.0, 0.0, np.inf, np.inf])
    mp_zero = [mpmath.mpf(0)] * 4
    np.testing.assert_array_equal(relative_error(computed, mp_zero), [0.0, 0.0, np.inf, np.inf])
    # NaN on either side
    rel = relative_error(np.array([np.nan, 1.0, np.nan]), np.array([1.0, np.nan, np.nan]))
    assert np.isnan(rel).all()
    assert np.isnan(relative_error(np.array([np.nan], np.float16), [mpmath.mpf(2)])).all()
    # infinite references
    inf = np.array([np.inf, np.inf, -np.inf])
    np.testing.assert_array_equal(
        relative_error(np.array([np.inf, 1.0, np.inf]), inf), [0.0, np.inf, np.inf]
    )


def test_absolute_error_special_cases():
    # an exact zero is an ordinary reference for the absolute error
    computed = np.array([0.0, -0.0, 1e-300, 2.5, np.inf, np.nan])
    expected = [0.0, 0.0, 1e-300, 2.5, np.inf, np.nan]
    np.testing.assert_array_equal(absolute_error(computed, np.zeros(6)), expected)
    np.testing.assert_array_equal(absolute_error(np.array([np.inf]), np.array([np.inf])), [0.0])
    assert absolute_error(np.array([np.float16(1.5)]), [mpmath.mpf(1)])[0] == 0.5


def _truth_normwise(c, e) -> mpmath.mpf:
    with mpmath.workprec(PREC):
        return max(abs(as_mpf(ci) - ei) for ci, ei in zip(c, e, strict=True)) / max(
            abs(ei) for ei in e
        )


@st.composite
def tiny_component_vectors(draw):
    """Vectors with components spread over up to 2**±1600 around a random top binade."""
    top = draw(st.integers(-1200, 1200))
    n = draw(st.integers(1, 8))
    return [draw(mpfs(top - draw(st.integers(0, 1600)), top)) for _ in range(n)]


@pytest.mark.parametrize("kind", ["float", "mpf", "exact"])
@pytest.mark.parametrize("fmt", FORMATS)
@SLOW
@given(data=st.data())
def test_normwise_relative_error_matches_mpmath(fmt, kind, data):
    if kind == "float":
        exact = [
            as_mpf(float(v)) for v in data.draw(st.lists(mpfs(-1020, 1020), min_size=1, max_size=6))
        ]
    else:
        exact = data.draw(tiny_component_vectors())
    computed = np.array([data.draw(computed_for(e, fmt)) for e in exact], fmt_dtype(fmt))
    got = normwise_relative_error(computed, _reference(kind, exact, fmt))
    assert isinstance(got, float)
    assert_matches(got, _truth_normwise(computed, exact), slack=DD_SLACK + 4 * SUBNORMAL)
    # never more than the worst componentwise relative error
    assert got <= np.max(relative_error(computed, _reference(kind, exact, fmt))) * (1 + 1e-14)


def test_normwise_with_tiny_and_zero_components():
    with mpmath.workprec(PREC):
        small = mpmath.exp(-1000)
    # a float16 result keeps the smallest subnormal where the exact value is exp(-1000)
    computed = np.array([1.0, 2.0**-24], np.float16)
    assert normwise_relative_error(computed, [mpmath.mpf(1), small]) == pytest.approx(
        2.0**-24, rel=1e-14
    )
    # an exact zero component is not an undefined case when the norm is not zero
    assert normwise_relative_error(np.array([1.0, 1e-20]), np.array([1.0, 0.0])) == 1e-20
    assert normwise_relative_error(np.array([4.0, -3.0]), np.array([2.0, 0.0])) == 1.5
    # an all-zero reference follows relative_error's rule
    assert normwise_relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert normwise_relative_error(np.array([0.0, 1e-300]), np.zeros(2)) == np.inf
    # NaN anywhere, an infinity where the reference is finite
    assert math.isnan(normwise_relative_error(np.array([1.0, np.nan]), np.ones(2)))
    assert math.isnan(normwise_relative_error(np.ones(2), np.array([1.0, np.nan])))
    assert normwise_relative_error(np.array([1.0, np.inf]), np.ones(2)) == np.inf
    # the norm of a far-out reference: exp(1000) dominates, exp(-1000) is irrelevant
    with mpmath.workprec(PREC):
        big = mpmath.exp(1000)
    assert normwise_relative_error(np.array([1e308, 1.0]), [big, small]) == pytest.approx(1.0)


def test_normwise_along_an_axis():
    rng = np.random.default_rng(0)
    exact = rng.standard_normal((5, 7)) * np.exp2(rng.integers(-60, 60, (5, 7)))
    computed = cast(exact, "bfloat16")
    rows = normwise_relative_error(computed, exact, axis=1)
    assert rows.shape == (5,)
    for i in range(5):
        assert rows[i] == normwise_relative_error(computed[i], exact[i])
        assert_matches(rows[i], _truth_normwise(computed[i], [as_mpf(v) for v in exact[i]]))
    # the all-zero rule applies per slice
    mixed = normwise_relative_error(
        np.array([[0.0, 0.0], [1.0, 1e-20], [1e-300, 0.0]]),
        np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]),
        axis=1,
    )
    np.testing.assert_array_equal(mixed, [0.0, 1e-20, np.inf])
    cols = normwise_relative_error(computed, exact, axis=0)
    assert cols.shape == (7,)
    for j in range(7):
        assert cols[j] == normwise_relative_error(computed[:, j], exact[:, j])
    assert normwise_relative_error(computed, exact) == pytest.approx(
        float(_truth_normwise(computed.ravel(), [as_mpf(v) for v in exact.ravel()])), rel=1e-14
    )


def test_error_in_u():
    assert error_in_u(2.0**-11, "float16") == 1.0
    assert error_in_u(2.0**-8, get_format("bfloat16")) == 1.0
    np.testing.assert_array_equal(error_in_u(np.array([2.0**-24, 0.0]), "float32"), [1.0, 0.0])
    assert error_in_u(2.0**-52, "float64") == 2.0


# --------------------------------------------------------------------------------------------
# 4. classify / result_outcome


def test_classify_pinned():
    with mpmath.workprec(PREC):
        exact = [mpmath.mpf(1), mpmath.mpf(1e5), mpmath.mpf(1), mpmath.exp(-30), mpmath.mpf(0)]
    computed = np.array([1.0, np.inf, np.nan, 0.0, 0.0], np.float16)
    labels = classify(computed, exact)
    assert list(labels) == ["ok", "overflow", "nan", "underflow", "ok"]
    # an infinity that is the exact value is not an overflow
    assert list(classify(np.array([np.inf]), np.array([np.inf]))) == ["ok"]


@pytest.mark.parametrize(
    ("computed", "exact", "outcome"),
    [
        ([1.0, 2.0], [1.0, 2.0], "ok"),
        ([0.5], [1.0], "ok"),  # wrong, but finite: that is an error, not an outcome
        ([np.inf], [1.0], "overflow"),
        ([np.nan], [1.0], "nan"),
        ([0.0], [1e-30], "underflow"),
        ([0.0, 0.0, 0.0], [1e-30, 1e-31, 0.0], "underflow"),  # everything lost
        ([0.0, 0.0], [0.0, 0.0], "exact_zero"),  # exact zero result: no relative error
        ([2.0**-10], [0.0], "exact_zero"),  # judged by its absolute error, not a failure
        ([np.inf], [0.0], "overflow"),  # an exception still wins over exact_zero
        ([1.0, 0.0, 0.0], [1.0, 1e-30, 1e-40], "ok"),  # only tiny components flushed
        ([np.inf, np.nan], [1.0, 1.0], "nan"),  # worst wins
        ([np.inf, 0.0], [1.0, 1.0], "overflow"),
        ([np.nan, 0.0], [1.0, 1.0], "nan"),
        ([np.inf], [np.inf], "ok"),
    ],
)
def test_result_outcome_pinned(computed, exact, outcome):
    assert result_outcome(np.array(computed, np.float16), np.array(exact)) == outcome
    mp_exact = [mpmath.mpf(v) for v in exact]
    assert result_outcome(np.array(computed, np.float16), mp_exact) == outcome


def test_outcome_order():
    assert OUTCOMES == ("ok", "exact_zero", "underflow", "overflow", "nan")


def test_result_outcome_all_zero_float16_vector():
    # float16 underflows below 2**-25: the whole vector flushed is an underflow ...
    with mpmath.workprec(PREC):
        exact = [mpmath.exp(-20), mpmath.exp(-25)]
    computed = np.array([round_to_format(e, "float16") for e in exact], np.float16)
    assert (computed == 0).all()
    assert result_outcome(computed, exact) == "underflow"
    # ... while one surviving component makes it ok
    exact = [mpmath.mpf(1), *exact]
    computed = np.array([round_to_format(e, "float16") for e in exact], np.float16)
    assert result_outcome(computed, exact) == "ok"
    assert list(classify(computed, exact)) == ["ok", "underflow", "underflow"]


# --------------------------------------------------------------------------------------------
# 5. Exact.from_mpf


@SLOW
@given(v=mpfs(-100_000, 100_000, man_bits=300))
def test_from_mpf_round_trip(v):
    prec_before = mpmath.mp.prec
    exact = Exact.from_mpf([v])  # at the default (53-bit) mpmath precision
    assert mpmath.mp.prec == prec_before
    hi, lo, e = float(exact.hi[0]), float(exact.lo[0]), int(exact.exp[0])
    assert 0.5 <= abs(hi) <= 1.0
    assert abs(lo) <= 2.0**-53 * abs(hi)
    with mpmath.workprec(PREC + 100):
        back = mpmath.ldexp(mpmath.mpf(hi) + mpmath.mpf(lo), e)
        assert abs(back - v) <= mpmath.ldexp(abs(v), -100)


@pytest.mark.parametrize("fmt", FORMATS)
@SLOW
@given(data=st.data())
def test_from_mpf_rounding(fmt, data):
    values = data.draw(st.lists(mpfs(*_range(fmt)), min_size=1, max_size=4))
    exact = Exact.from_mpf(values, fmt=fmt)
    assert exact.rounded.dtype == fmt_dtype(fmt)
    expected = [float(round_to_format(v, fmt)) for v in values]
    np.testing.assert_array_equal(exact.rounded.astype(np.float64), expected)
    assert exact.rounded_to(fmt_dtype(fmt)) is exact.rounded


def test_from_mpf_shapes_and_specials():
    values = np.array([[mpmath.mpf(0), mpmath.inf], [mpmath.ninf, mpmath.mpf(-3)]], dtype=object)
    exact = Exact.from_mpf(values, fmt="float16")
    assert exact.hi.shape == exact.lo.shape == exact.exp.shape == exact.rounded.shape == (2, 2)
    np.testing.assert_array_equal(exact.hi, [[0.0, np.inf], [-np.inf, -0.75]])
    np.testing.assert_array_equal(exact.exp, [[0, 0], [0, 2]])
    np.testing.assert_array_equal(exact.rounded.astype(np.float64), [[0, np.inf], [-np.inf, -3]])
    nan = Exact.from_mpf([mpmath.nan])
    assert np.isnan(nan.hi[0])
    # integers and floats are taken exactly, whatever the ambient precision
    exact = Exact.from_mpf([2**80 + 1, 0.1])
    with mpmath.workprec(PREC):
        assert mpmath.ldexp(mpmath.mpf(exact.hi[0]) + exact.lo[0], int(exact.exp[0])) == 2**80 + 1
        assert mpmath.ldexp(mpmath.mpf(exact.hi[1]), int(exact.exp[1])) == mpmath.mpf(0.1)


def test_from_mpf_keeps_precision_beyond_float64():
    with mpmath.workprec(PREC):
        third = mpmath.mpf(1) / 3
        truth = float(abs(mpmath.mpf(1 / 3) - third) / third)
    assert truth > 0
    # made at the default precision, the reference still holds more than 53 bits
    assert relative_error(np.array([1 / 3]), [third])[0] == pytest.approx(truth, rel=1e-14)
    assert relative_error(np.array([1 / 3]), Exact.from_mpf([third]))[0] == pytest.approx(
        truth, rel=1e-14
    )


def test_opposite_infinity_is_an_overflow_and_error_in_u_keeps_scalars():
    labels = classify(np.array([np.inf, -np.inf]), [-mpmath.inf, -mpmath.inf])
    assert labels.tolist() == ["overflow", "ok"]
    assert error_in_u(2.0**-11, "float16") == 1.0
    assert isinstance(error_in_u(2.0**-11, "float16"), float)


def test_zero_by_cancellation_is_a_rounding_error_not_an_underflow():
    # log-sum-exp that cancels to 0 in float16 while the exact value (1e-4) is a normal number
    exact = [mpmath.mpf("1e-4")]
    assert result_outcome(np.zeros(1, np.float16), exact) == "ok"
    assert relative_error(np.zeros(1, np.float16), exact)[0] == 1.0
    # below float16's smallest normal (2**-14) the same zero is an underflow
    assert result_outcome(np.zeros(1, np.float16), [mpmath.mpf("1e-6")]) == "underflow"


def test_an_overflow_exception_makes_an_overflow_outcome():
    # exp(x) / sum(exp(x)) with an overflowed sum returns zeros, finite but wrong
    exact = [mpmath.mpf(1) / 3] * 3
    zeros = np.zeros(3, np.float16)
    assert result_outcome(zeros, exact) == "ok"
    assert result_outcome(zeros, exact, fp_exceptions=["overflow"]) == "overflow"
    assert result_outcome(zeros, exact, fp_exceptions=["underflow"]) == "ok"


def test_exact_of_astronomical_magnitude_rounds_and_measures():
    """exp(1e308) and exp(-1e15): exponents saturate or stay large without costing memory."""
    with mpmath.workprec(113):
        values = [mpmath.exp(mpmath.mpf(1e308)), mpmath.exp(mpmath.mpf(-1e15))]
    exact = Exact.from_mpf(values)
    assert exact.exp[0] == EXP_LIMIT and exact.exp[1] < -(10**15)
    rounded = exact.rounded_to(np.dtype(np.float32))  # from hi, lo, exp: no 2**exp Fraction
    assert rounded[0] == np.inf and rounded[1] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        computed = np.float32([np.finfo(np.float32).max, 0.0])
        assert list(relative_error(computed, exact)) == [1.0, 1.0]
        assert result_outcome(computed, exact) == "ok"
        assert result_outcome(np.float32([np.inf, 0.0]), exact) == "overflow"
