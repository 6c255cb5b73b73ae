"""Tests of precision.core.formats: the registry and exact rounding into a format.

The registry is checked against ``ml_dtypes.finfo`` (which covers the numpy dtypes too) and
against the pinned table of NUMERICS.md. ``round_to_format`` is checked exhaustively for the
16-bit formats (every value, every midpoint, just below and just above every midpoint, both
signs), at the overflow and underflow boundaries of every format, against numpy's own single
roundings for float32/float64, and against ml_dtypes for float8. ``cast`` is checked against
``round_to_format_array``, and shown to fix ml_dtypes' double rounding to bfloat16.

Results are compared as bit patterns, so that -0.0 differs from +0.0 and a wrong neighbour
can never hide inside a tolerance.
"""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from precision.core.formats import (
    FORMATS,
    STUDY_FORMATS,
    Format,
    cast,
    common_format,
    get_format,
    round_dyadic,
    round_to_format,
    round_to_format_array,
)

STUDY = ["float16", "bfloat16", "float32", "float64"]
FLOAT8 = ["float8_e4m3fn", "float8_e5m2"]
ALL = STUDY + FLOAT8
SIXTEEN_BIT = ["float16", "bfloat16"]
WITH_INF = ["float16", "bfloat16", "float32", "float64", "float8_e5m2"]
CAST_TARGETS = ["float16", "bfloat16", "float32", "float8_e4m3fn", "float8_e5m2"]

PREC = 512  # working precision (bits) for building exact test points; far above what they need
TINY_BITS = 60  # "tiny" is the gap between two neighbours divided by 2**TINY_BITS

# NUMERICS.md, "Formats": name -> (p, max, min normal, min subnormal).
PINNED = {
    "float16": (11, 65504.0, 2.0**-14, 2.0**-24),
    "bfloat16": (8, float((2**8 - 1) * 2**120), 2.0**-126, 2.0**-133),
    "float32": (24, float((2**24 - 1) * 2**104), 2.0**-126, 2.0**-149),
    "float64": (53, float((2**53 - 1) * 2**971), 2.0**-1022, 2.0**-1074),
    "float8_e4m3fn": (4, 448.0, 2.0**-6, 2.0**-9),
    "float8_e5m2": (3, 57344.0, 2.0**-14, 2.0**-16),
}


# ----------------------------------------------------------------------------- helpers


def _finfo(name: str):
    return ml_dtypes.finfo(FORMATS[name].dtype)


def _uint(dtype) -> np.dtype:
    """The unsigned integer dtype with the width of a float dtype."""
    return np.dtype(f"u{np.dtype(dtype).itemsize}")


def _codes(values, dtype) -> np.ndarray:
    """Bit patterns of values stored in dtype."""
    return np.asarray(values, dtype=dtype).view(_uint(dtype))


def _code(value, name: str) -> int:
    return int(_codes(value, FORMATS[name].dtype))


def _sign_bit(name: str) -> int:
    return 1 << (FORMATS[name].bits - 1)


def _max_code(name: str) -> int:
    return _code(_finfo(name).max, name)


def _nonneg_finite(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Every finite value >= +0 of a format of at most 16 bits, increasing, with its code."""
    dtype = FORMATS[name].dtype
    codes = np.arange(0, _sign_bit(name), dtype=_uint(dtype))
    with np.errstate(invalid="ignore"):  # ml_dtypes warns when it casts its NaN codes
        values = codes.view(dtype).astype(np.float64)
    finite = np.isfinite(values)
    codes, values = codes[finite], values[finite]
    assert np.all(np.diff(values) > 0)
    assert len(codes) == codes[-1] + 1  # the finite codes are a prefix: 0 .. max
    return codes, values


def _mpf(value: Fraction) -> mpmath.mpf:
    """The exact mpf of a dyadic rational (denominator a power of two)."""
    num, den = value.numerator, value.denominator
    assert den & (den - 1) == 0, value
    if num == 0:
        return mpmath.mpf(0)
    zeros = (num & -num).bit_length() - 1  # trailing zero bits of the numerator
    man, exp = num >> zeros, zeros - (den.bit_length() - 1)
    assert man.bit_length() <= PREC  # so the mpf below holds the value exactly
    with mpmath.workprec(PREC):
        return mpmath.mpf((man, exp))


def _round_codes(points, name: str) -> np.ndarray:
    """round_to_format of each point, as bit patterns."""
    fmt = FORMATS[name]
    out = np.empty(len(points), dtype=fmt.dtype)
    for i, x in enumerate(points):
        result = round_to_format(x, fmt)
        assert result.dtype == fmt.dtype
        out[i] = result
    return out.view(_uint(fmt.dtype))


def _assert_codes_equal(got, want, points, name: str, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    bad = np.flatnonzero(got != want)
    if bad.size:
        dtype = FORMATS[name].dtype
        lines = [
            f"  x={points[i]!r}: got {got[i]:#x} ({got[i : i + 1].view(dtype)[0]}), "
            f"want {want[i]:#x} ({want[i : i + 1].view(dtype)[0]})"
            for i in bad[:5]
        ]
        raise AssertionError(f"{name} {what}: {bad.size} wrong of {got.size}\n" + "\n".join(lines))


def _assert_same_floats(got: np.ndarray, want: np.ndarray, name: str, what: str) -> None:
    """Same dtype, NaN in the same places, identical bit patterns everywhere else."""
    dtype = FORMATS[name].dtype
    assert got.dtype == dtype and want.dtype == dtype
    assert got.shape == want.shape
    got_nan = np.isnan(got.astype(np.float64))
    want_nan = np.isnan(want.astype(np.float64))
    np.testing.assert_array_equal(got_nan, want_nan, err_msg=f"{name} {what}: NaN positions")
    keep = ~got_nan
    _assert_codes_equal(
        got.view(_uint(dtype))[keep], want.view(_uint(dtype))[keep], list(got[keep]), name, what
    )


# ----------------------------------------------------------------------------- registry


def test_registry_order_and_study_formats():
    assert list(FORMATS) == ALL
    assert list(STUDY_FORMATS) == STUDY
    assert list(FORMATS)[:4] == STUDY  # "the four study formats come first"


@pytest.mark.parametrize("name", ALL)
def test_registry_matches_finfo(name):
    fmt = FORMATS[name]
    fi = ml_dtypes.finfo(fmt.dtype)
    assert isinstance(fmt, Format) and fmt.name == name and str(fmt) == name
    assert fmt.p == fi.nmant + 1
    assert fmt.u == 2.0**-fmt.p
    assert fmt.u == float(fi.epsneg)  # epsneg = 2**-p: the gap below 1 is half the gap above
    assert fmt.eps == float(fi.eps) == 2 * fmt.u
    assert fmt.max == float(fi.max)
    assert fmt.min_normal == float(fi.smallest_normal)
    assert fmt.min_subnormal == float(fi.smallest_subnormal)
    assert fmt.emin == fi.minexp
    assert fmt.emax == fi.maxexp - 1
    assert fmt.bits == fi.bits
    # has_inf: whether the dtype can hold an infinity at all (float8_e4m3fn turns it into NaN).
    stored = np.array([np.inf], dtype=np.float32).astype(fmt.dtype).astype(np.float64)[0]
    assert fmt.has_inf == bool(np.isinf(stored))
    assert fmt.has_inf or np.isnan(stored)


@pytest.mark.parametrize("name", ALL)
def test_registry_matches_pinned_table(name):
    p, max_, min_normal, min_subnormal = PINNED[name]
    fmt = FORMATS[name]
    assert (fmt.p, fmt.max, fmt.min_normal, fmt.min_subnormal) == (
        p,
        max_,
        min_normal,
        min_subnormal,
    )
    assert fmt.u == 2.0**-p


def test_e4m3fn_is_the_ocp_format_not_the_ieee_style_one():
    fmt = FORMATS["float8_e4m3fn"]
    assert fmt.max == 448.0  # the IEEE-style E4M3 "fp8" has max 240 and infinities
    assert not fmt.has_inf
    assert fmt.max_significand == 0b1110


@pytest.mark.parametrize("name", SIXTEEN_BIT + FLOAT8)
def test_registry_extremes_by_enumeration(name):
    """max and min_subnormal are the largest and smallest positive finite stored values."""
    fmt = FORMATS[name]
    _, values = _nonneg_finite(name)
    assert values[0] == 0.0
    assert fmt.max == values[-1]
    assert fmt.min_subnormal == values[1]
    normals = values[values >= fmt.min_normal]
    # Subnormals and the first normal binade share one spacing: the smallest subnormal.
    assert normals[0] == fmt.min_normal
    assert normals[1] - normals[0] == values[1] == fmt.min_subnormal


@pytest.mark.parametrize("name", ALL)
def test_get_format_by_name_dtype_and_scalar_type(name):
    fmt = FORMATS[name]
    assert get_format(name) is fmt
    assert get_format(fmt) is fmt
    assert get_format(fmt.dtype) is fmt
    assert get_format(np.dtype(fmt.dtype.type)) is fmt
    assert get_format(fmt.dtype.type) is fmt  # the scalar type: np.float16, ml_dtypes.bfloat16
    assert get_format(np.zeros(3, dtype=fmt.dtype).dtype) is fmt


def test_get_format_scalar_types_explicitly():
    assert get_format(np.float16).name == "float16"
    assert get_format(ml_dtypes.bfloat16).name == "bfloat16"
    assert get_format(np.float32).name == "float32"
    assert get_format(np.float64).name == "float64"
    assert get_format(ml_dtypes.float8_e4m3fn).name == "float8_e4m3fn"
    assert get_format(ml_dtypes.float8_e5m2).name == "float8_e5m2"
    assert get_format(np.dtype("float16")).name == "float16"


@pytest.mark.parametrize(
    "unknown",
    ["fp8", "bf16", "Float16", "float8", "", "int8", "float128", np.int8, np.dtype(np.int32), 3.5],
)
def test_get_format_unknown_raises_keyerror_naming_the_choices(unknown):
    with pytest.raises(KeyError, match="unknown format") as excinfo:
        get_format(unknown)
    message = str(excinfo.value)
    assert repr(unknown) in message
    for name in ALL:
        assert name in message


def test_get_format_none_is_not_float64():
    # np.dtype(None) is float64; a missing format must not silently become float64.
    with pytest.raises(KeyError, match="unknown format None"):
        get_format(None)


# ----------------------------------------------------------------------------- exhaustive 16-bit


@pytest.mark.parametrize("name", SIXTEEN_BIT)
def test_round_to_format_exhaustive(name):
    """Every value, every midpoint and the points just around it, on both signs.

    Values are integers A times the smallest subnormal 2**qexp, so the midpoint of neighbours
    A < B is exactly (A + B) * 2**(qexp - 1), and tiny = (B - A) * 2**(qexp - TINY_BITS) is far
    below the gap. Every point is built from its integer significand at PREC bits, so exactly.
    """
    dtype = FORMATS[name].dtype
    fi = _finfo(name)
    codes, values = _nonneg_finite(name)
    qexp = fi.minexp - fi.nmant  # the smallest subnormal is 2**qexp (float16 -24, bfloat16 -133)
    ints = [int(v) for v in np.ldexp(values, -qexp).tolist()]  # exact: power-of-two scaling
    assert ints[:2] == [0, 1]
    assert ints[-1].bit_length() + 1 + TINY_BITS < PREC  # (a + b) << TINY_BITS fits in PREC

    points = {"exact": [], "midpoint": [], "below": [], "above": []}
    with mpmath.workprec(PREC):
        points["exact"] = [mpmath.mpf((a, qexp)) for a in ints]
        for a, b in zip(ints[:-1], ints[1:], strict=True):
            scaled_mid, tiny = (a + b) << (TINY_BITS - 1), b - a
            points["midpoint"].append(mpmath.mpf((scaled_mid, qexp - TINY_BITS)))
            points["below"].append(mpmath.mpf((scaled_mid - tiny, qexp - TINY_BITS)))
            points["above"].append(mpmath.mpf((scaled_mid + tiny, qexp - TINY_BITS)))
        # mpf has no signed zero: -mpf(0) is +0, so the negated exact values start at 1.
        negated = {key: [-x for x in pts] for key, pts in points.items()}
        negated["exact"] = negated["exact"][1:]

    a_codes, b_codes = codes[:-1], codes[1:]
    # Ties to even: the neighbour whose last significand bit (the code's last bit) is 0.
    tie_codes = np.where(a_codes % 2 == 0, a_codes, b_codes)
    want = {"exact": codes, "midpoint": tie_codes, "below": a_codes, "above": b_codes}
    # The tie rule agrees with numpy / ml_dtypes on these midpoints, which float64 holds exactly
    # (float64 -> float16 rounds once; float64 -> float32 is exact, then float32 -> bfloat16).
    mid_floats = np.ldexp(
        np.array([float(a + b) for a, b in zip(ints[:-1], ints[1:], strict=True)]), qexp - 1
    )
    np.testing.assert_array_equal(_codes(mid_floats.astype(dtype), dtype), tie_codes)

    sign = _uint(dtype).type(_sign_bit(name))
    for key in points:
        got = _round_codes(points[key], name)
        _assert_codes_equal(got, want[key], points[key], name, key)
        got = _round_codes(negated[key], name)
        neg_want = want[key][1:] if key == "exact" else want[key]
        _assert_codes_equal(got, neg_want | sign, negated[key], name, f"negated {key}")


# ----------------------------------------------------------------------------- boundaries


def _boundary_inputs(value: Fraction) -> list:
    """The same exact value as Fraction, mpf and (where float64 holds it) float."""
    inputs = [value, _mpf(value)]
    try:
        if Fraction(float(value)) == value:
            inputs.append(float(value))
    except OverflowError:
        pass
    return inputs


@pytest.mark.parametrize("name", WITH_INF)
def test_round_to_format_overflow_boundary(name):
    """max + ulp(max)/2 overflows to inf exactly (IEEE 754 round to nearest); below it, max."""
    fi = _finfo(name)
    max_ = Fraction(float(fi.max))
    half_ulp = Fraction(2) ** (fi.maxexp - 1 - fi.nmant - 1)
    threshold = max_ + half_ulp
    tiny = half_ulp / 2**TINY_BITS
    max_code, inf_code = _max_code(name), _code(np.inf, name)
    cases = [
        (max_, max_code),
        (max_ + tiny, max_code),
        (threshold - tiny, max_code),
        (threshold, inf_code),
        (threshold + tiny, inf_code),
        (Fraction(2) ** fi.maxexp, inf_code),
        (Fraction(2) ** (fi.maxexp + 1000), inf_code),
    ]
    for value, code in cases:
        for sign in (1, -1):
            want = code | (_sign_bit(name) if sign < 0 else 0)
            for x in _boundary_inputs(sign * value):
                got = _code(round_to_format(x, name), name)
                assert got == want, f"{name}: round({x!r}) = {got:#x}, want {want:#x}"
    for x, code in [(mpmath.inf, inf_code), (-mpmath.inf, inf_code | _sign_bit(name))]:
        assert _code(round_to_format(x, name), name) == code
        assert _code(round_to_format(float(x), name), name) == code


@pytest.mark.parametrize("name", ALL)
def test_round_to_format_subnormals_and_zero(name):
    fi = _finfo(name)
    q = Fraction(float(fi.smallest_subnormal))  # exact
    min_normal = Fraction(float(fi.smallest_normal))
    tiny = q / 2**TINY_BITS
    largest_subnormal_code = _code(fi.smallest_normal, name) - 1
    assert largest_subnormal_code % 2 == 1  # all significand bits set
    cases = [
        (q / 2, 0),  # tie between 0 (even) and q (odd): 0
        (q / 2 - tiny, 0),
        (q / 4, 0),
        (Fraction(1, 2**3000), 0),
        (q / 2 + tiny, 1),
        (q, 1),
        (3 * q / 2, 2),  # tie between q (odd) and 2q (even)
        (5 * q / 2, 2),  # tie between 2q (even) and 3q (odd)
        (5 * q / 2 + tiny, 3),
        (min_normal - q / 2 - tiny, largest_subnormal_code),
        (min_normal - q / 2, largest_subnormal_code + 1),  # tie: rounds up to the min normal
        (min_normal, largest_subnormal_code + 1),
    ]
    for value, code in cases:
        for sign in (1, -1):
            want = code | (_sign_bit(name) if sign < 0 else 0)  # a negative underflow is -0
            for x in _boundary_inputs(sign * value):
                got = _code(round_to_format(x, name), name)
                assert got == want, f"{name}: round({x!r}) = {got:#x}, want {want:#x}"
    # Zero: mpf, Fraction and int have no sign; a float keeps its own.
    for zero in [mpmath.mpf(0), Fraction(0), 0, 0.0]:
        assert _code(round_to_format(zero, name), name) == 0
    assert _code(round_to_format(-0.0, name), name) == _sign_bit(name)
    assert np.isnan(float(round_to_format(mpmath.nan, name)))
    assert np.isnan(float(round_to_format(math.nan, name)))


def test_round_to_format_negative_mpf_keeps_its_sign():
    # mpf.man_exp is unsigned: a regression test for dropping the sign of negative mpf values.
    for name in ALL:
        assert float(round_to_format(mpmath.mpf(-1.5), name)) == -1.5
        assert float(round_to_format(mpmath.mpf(-3), name)) == -3.0
    assert float(round_to_format(-(mpmath.mpf(2) ** -24), "float16")) == -(2.0**-24)
    assert float(round_to_format(mpmath.mpf(-65520), "float16")) == -math.inf


def test_round_to_format_array_shape_dtype_and_values():
    with mpmath.workprec(PREC):
        third = mpmath.mpf(1) / 3
    values = np.array([[third, -third], [Fraction(1, 3), 2.0**-30]], dtype=object)
    for name in ALL:
        out = round_to_format_array(values, name)
        assert out.shape == (2, 2) and out.dtype == FORMATS[name].dtype
        assert out[0, 0] == -out[0, 1] == out[1, 0] == round_to_format(Fraction(1, 3), name)
    # One correct rounding of 1/3 in float64 is Python's own int division, correctly rounded.
    assert float(round_to_format_array([Fraction(1, 3)], "float64")[0]) == 1 / 3


# ----------------------------------------------------------------------------- strategies


@st.composite
def near_midpoints(draw, name: str) -> float:
    """A float64 at, or some float64 ulps around, the midpoint of two neighbours of a format.

    The offsets of a few float64 ulps are the double-rounding cases (float32 cannot tell them
    from the midpoint); codes near 0 give the subnormal midpoints.
    """
    dtype = FORMATS[name].dtype
    fi = ml_dtypes.finfo(dtype)
    top = _max_code(name)
    code = draw(st.one_of(st.integers(0, 2 ** (fi.nmant + 1)), st.integers(0, top - 1)))
    a, b = np.array([code, code + 1], dtype=_uint(dtype)).view(dtype).astype(np.float64)
    midpoint = (a + b) / 2  # exact: p + 1 <= 25 significant bits
    offset = draw(st.one_of(st.integers(-4, 4), st.integers(-(2**40), 2**40)))
    x = float((np.array(midpoint).view(np.int64) + offset).view(np.float64))
    return -x if draw(st.booleans()) else x


@st.composite
def near_overflow(draw, name: str) -> float:
    """A float64 around max, around max + ulp(max)/2 (the overflow threshold), or past it."""
    fi = _finfo(name)
    max_ = float(fi.max)
    threshold = max_ + 2.0 ** (fi.maxexp - 2 - fi.nmant)
    base = draw(st.sampled_from([max_, threshold]))
    offset = draw(st.one_of(st.integers(-4, 4), st.integers(-(2**45), 2**45)))
    x = float((np.array(base).view(np.int64) + offset).view(np.float64))
    x = draw(st.one_of(st.just(x), st.floats(0.25, 8.0).map(lambda f: f * max_)))
    return -x if draw(st.booleans()) else x


def _format_floats(name: str) -> st.SearchStrategy[float]:
    """float64 values that probe a format: anything, its subnormals, midpoints and overflow."""
    min_normal = float(_finfo(name).smallest_normal)
    return st.one_of(
        st.floats(),  # anything, NaN and infinities included
        st.floats(min_value=-min_normal, max_value=min_normal),
        near_midpoints(name),
        near_overflow(name),
        st.sampled_from([0.0, -0.0, math.inf, -math.inf]),
    )


def _f64_code(x: float) -> int:
    return int(np.array(x, dtype=np.float64).view(np.uint64))


# ----------------------------------------------------------------------------- float32, float64


@settings(max_examples=300, deadline=None)
@given(x=st.one_of(st.floats(allow_nan=False), near_midpoints("float32"), near_overflow("float32")))
def test_round_float64_to_float32_matches_numpy(x):
    """numpy's float64 -> float32 cast is one correct rounding: round_to_format must agree."""
    with np.errstate(over="ignore"):
        want = np.float32(x)
    want_code = _code(want, "float32")
    # A float keeps its sign of zero; an mpf has none, so its zero is +0.
    assert _code(round_to_format(x, "float32"), "float32") == want_code
    mpf_want = 0 if x == 0 else want_code
    assert _code(round_to_format(mpmath.mpf(x), "float32"), "float32") == mpf_want


@settings(max_examples=200, deadline=None)
@given(x=st.floats(allow_nan=False))
def test_round_float64_to_float64_is_identity(x):
    assert _f64_code(float(round_to_format(x, "float64"))) == _f64_code(x)
    got = round_to_format(mpmath.mpf(x), "float64")
    assert got.dtype == np.float64
    assert _f64_code(float(got)) == (0 if x == 0 else _f64_code(x))


@st.composite
def wide_dyadics(draw) -> Fraction:
    """m * 2**e with up to 120-bit m, including exact float64 ties and points next to them."""
    kind = draw(st.sampled_from(["wide", "tie", "near tie"]))
    if kind == "wide":
        man = draw(st.integers(1, 2**120))
    else:
        man = 2 * draw(st.integers(2**52, 2**53 - 1)) + 1  # 54 bits, odd: a float64 midpoint
        if kind == "near tie":
            man = (man << 60) + draw(st.sampled_from([-1, 1]))
    exp = draw(st.integers(-1250, 1000))
    value = Fraction(man) * Fraction(2) ** exp
    return -value if draw(st.booleans()) else value


@settings(max_examples=300, deadline=None)
@given(value=wide_dyadics())
def test_round_wide_values_to_float64_matches_python_division(value):
    """CPython's int / int is correctly rounded (ties to even, subnormals, overflow raises)."""
    try:
        want = value.numerator / value.denominator
    except OverflowError:
        want = math.inf if value > 0 else -math.inf
    want_code = _f64_code(want)
    assert _f64_code(float(round_to_format(value, "float64"))) == want_code
    assert _f64_code(float(round_to_format(_mpf(value), "float64"))) == want_code


# ----------------------------------------------------------------------------- cast


@pytest.mark.parametrize("name", CAST_TARGETS)
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_cast_matches_round_to_format_array(name, data):
    x = data.draw(hnp.arrays(np.float64, st.integers(1, 40), elements=_format_floats(name)))
    got = cast(x, name)
    want = round_to_format_array(x, name)
    _assert_same_floats(got, want, name, "cast vs round_to_format_array")


@pytest.mark.parametrize(
    ("x", "midpoint", "plain", "correct"),
    [
        # Just above the midpoint of 1 and 1 + 2**-7; float32 rounds it down onto the midpoint,
        # whose tie goes to the even 1.0: the wrong neighbour.
        (1 + 2**-8 + 2**-30, 1 + 2**-8, 1.0, 1 + 2**-7),
        # Just below the midpoint of 1 + 2**-7 (odd) and 1 + 2**-6 (even); float32 rounds it up
        # onto the midpoint, whose tie goes up: the wrong neighbour again.
        (1 + 3 * 2**-8 - 2**-30, 1 + 3 * 2**-8, 1 + 2**-6, 1 + 2**-7),
        (-(1 + 2**-8 + 2**-30), -(1 + 2**-8), -1.0, -(1 + 2**-7)),
    ],
)
def test_cast_to_bfloat16_avoids_double_rounding(x, midpoint, plain, correct):
    """Through float32 the value lands on a bfloat16 midpoint and rounds the wrong way.
    ml_dtypes 0.6 cast float64 -> bfloat16 that way (twice); 0.7 rounds once. Which one the
    installed ml_dtypes does is measured, not assumed: ``cast`` is correct either way."""
    assert float(np.float32(x)) == midpoint != x  # the first rounding lands on the midpoint
    assert plain != correct
    arr = np.array([x])
    ml_dtypes_cast = float(arr.astype(ml_dtypes.bfloat16)[0])
    assert ml_dtypes_cast in (plain, correct)  # twice through float32, or once
    assert float(cast(arr, "bfloat16")[0]) == correct
    assert float(round_to_format(x, "bfloat16")) == correct
    assert float(round_to_format(_mpf(Fraction(x)), "bfloat16")) == correct


@pytest.mark.parametrize("name", CAST_TARGETS + ["float64"])
def test_cast_shapes_dtypes_and_copies(name):
    dtype = FORMATS[name].dtype
    x = np.array([[1.0, -2.5], [0.0, 3.0]])
    out = cast(x, name)
    assert out.shape == (2, 2) and out.dtype == dtype
    np.testing.assert_array_equal(out.astype(np.float64), x)
    scalar = cast(np.float64(0.5), name)
    assert scalar.shape == () and scalar.dtype == dtype and float(scalar) == 0.5
    same = np.array([1.0, 2.0], dtype=dtype)
    copied = cast(same, name)
    assert copied is not same and not np.shares_memory(copied, same)
    # Narrower input than float64 is rounded once from its exact value too.
    from32 = cast(np.array([1 + 2**-8 + 2**-20], dtype=np.float32), name)
    assert _codes(from32, dtype)[0] == _code(round_to_format(1 + 2**-8 + 2**-20, name), name)


# ----------------------------------------------------------------------------- float8


@pytest.mark.parametrize("name", FLOAT8)
def test_float8_round_to_format_matches_ml_dtypes(name):
    """Every finite value, every midpoint and points around them, and overflow, both signs.

    All of these are exact in float32, and ml_dtypes rounds float32 -> float8 once. Past the
    largest finite value ml_dtypes gives inf for e5m2 and NaN for e4m3fn (no infinities, OCP
    non-saturating conversion), which is what round_to_format intends. For e4m3fn the overflow
    threshold max + ulp(max)/2 = 464 is a tie between 448 (significand 0b1110, even) and the
    NaN code 0b1111: it rounds to 448 in both, and anything above it is NaN.
    """
    dtype = FORMATS[name].dtype
    fi = ml_dtypes.finfo(dtype)
    _, values = _nonneg_finite(name)
    mids = (values[:-1] + values[1:]) / 2
    gaps = np.diff(values)
    max_ = float(fi.max)
    half_ulp = 2.0 ** (fi.maxexp - 2 - fi.nmant)
    threshold = max_ + half_ulp
    positive = np.concatenate(
        [
            values,
            mids,
            mids - gaps / 2**10,
            mids + gaps / 2**10,
            [threshold - half_ulp / 2**10, threshold, threshold + half_ulp / 2**10],
            [2 * threshold],
            [2.0**fi.maxexp, 2.0**100, float(np.finfo(np.float32).max), math.inf],
        ]
    )
    points = np.concatenate([positive, -positive])
    as32 = points.astype(np.float32)
    assert np.all(as32.astype(np.float64) == points)  # every point is exact in float32
    want = as32.astype(dtype)
    # Exact mpf inputs; the zeros stay floats, since an mpf has no -0 to round.
    exact = [
        p if p == 0 else _mpf(Fraction(p)) if math.isfinite(p) else mpmath.mpf(p) for p in points
    ]
    got = np.array([round_to_format(x, name) for x in exact], dtype=dtype)
    _assert_same_floats(got, want, name, "round_to_format vs ml_dtypes from float32")


def test_float8_e4m3fn_overflow_is_nan_and_e5m2_is_inf():
    e4m3 = "float8_e4m3fn"
    assert float(round_to_format(464, e4m3)) == 448.0  # tie at the threshold goes to even 448
    assert float(round_to_format(Fraction(-464), e4m3)) == -448.0
    for x in [Fraction(464) + Fraction(1, 2**40), 480, 512, 1e30, mpmath.inf, -mpmath.inf]:
        assert np.isnan(float(round_to_format(x, e4m3))), x
        assert np.isnan(float(round_to_format(-x, e4m3))), -x
    e5m2 = "float8_e5m2"
    assert float(round_to_format(61440 - Fraction(1, 2**40), e5m2)) == 57344.0
    assert float(round_to_format(61440, e5m2)) == math.inf
    assert float(round_to_format(-61440, e5m2)) == -math.inf


# ----------------------------------------------------------------------------- common format

PAIRS_AND_MORE = [[a, b] for i, a in enumerate(ALL) for b in ALL[i + 1 :]] + [
    STUDY,
    ALL,
    ["float16", "bfloat16", "float8_e4m3fn"],
]


def _representable(value: float, name: str) -> bool:
    """Whether ``value`` is exactly a finite value of the format (its rounding leaves it)."""
    rounded = float(round_to_format(Fraction(value), name))
    return math.isfinite(rounded) and rounded == value


@pytest.mark.parametrize("fmts", PAIRS_AND_MORE, ids=lambda f: "+".join(f))
def test_common_format_max_is_the_largest_value_of_every_format(fmts):
    """The common format's largest value lies in every format, and the next value of its
    grid (one top-binade spacing up) exceeds some format's largest value: float8_e4m3fn's 448
    with a wider format (p = 4, emax = 8), not 480, one of e4m3fn's NaN codes."""
    common = common_format(fmts)
    assert all(_representable(common.max, f) for f in fmts)
    above = common.max + 2.0 ** (common.emax - common.p + 1)
    assert above > min(FORMATS[f].max for f in fmts)
    if "float8_e4m3fn" in fmts:
        assert common.max == 448.0


@settings(max_examples=300, deadline=None)
@given(
    fmts=st.sampled_from(PAIRS_AND_MORE),
    x=st.one_of(st.floats(-600.0, 600.0), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_a_value_rounded_to_the_common_format_is_a_value_of_every_format(fmts, x):
    """Rounded once to the common format, a value is finite in all of ``fmts`` or overflows;
    finite, each format holds it exactly (so every format receives the same input)."""
    rounded = float(round_to_format(Fraction(x), common_format(fmts)))
    if math.isfinite(rounded):
        assert all(_representable(rounded, f) for f in fmts), rounded
    else:
        assert abs(x) > min(FORMATS[f].max for f in fmts)


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn"])
def test_values_far_outside_the_range_round_without_forming_their_ratio(name):
    """exp(1e308) has a 1024-bit binary exponent: its integer ratio cannot be formed, its
    binade alone decides (overflow, or a zero of its sign)."""
    fmt = get_format(name)
    with mpmath.workprec(113):
        huge, tiny = mpmath.exp(mpmath.mpf(1e308)), mpmath.exp(mpmath.mpf(-1e308))
    overflow = float(round_to_format(huge, name))
    assert (math.isinf(overflow) and overflow > 0) if fmt.has_inf else math.isnan(overflow)
    negative = float(round_to_format(-huge, name))
    assert (negative == -math.inf) if fmt.has_inf else math.isnan(negative)
    for value, sign in ((tiny, 1.0), (-tiny, -1.0)):
        zero = float(round_to_format(value, name))
        assert zero == 0.0 and math.copysign(1.0, zero) == sign
    # Just inside the shortcut's limits the exact path still decides.
    assert float(round_to_format(mpmath.mpf(2) ** (fmt.emin - fmt.p), name)) == 0.0  # a tie
    assert float(round_to_format(mpmath.mpf(2) ** (fmt.emin - fmt.p + 1), name)) > 0.0


# ------------------------------------------------------- dyadic rounding (the Arb engine's path)


def _same(a, b) -> bool:
    """Equal including the sign of zero, NaN equal to NaN."""
    if np.isnan(float(a)):
        return bool(np.isnan(float(b)))
    return float(a) == float(b) and math.copysign(1, float(a)) == math.copysign(1, float(b))


def _exact(man: int, exp: int) -> Fraction | int:
    return man << exp if exp >= 0 else Fraction(man, 1 << -exp)


@pytest.mark.parametrize("fmt", ALL)
@settings(max_examples=300, deadline=None)
@given(man=st.integers(-(2**200), 2**200), exp=st.integers(-1300, 1200))
def test_round_dyadic_is_round_to_format(fmt, man, exp):
    assert _same(round_dyadic(man, exp, fmt), round_to_format(_exact(man, exp), fmt))


@pytest.mark.parametrize("fmt", ALL)
def test_round_dyadic_on_ties_and_range_edges(fmt):
    f = get_format(fmt)
    # Midpoints between neighbours (ties to even), both signs, in every binade the format has,
    # from the subnormal quantum up to max, then just past the overflow threshold.
    points = []
    for e in range(f.emin - f.p, f.emax + 1):
        for significand in (2**f.p - 1, 2**f.p + 1, 2 * 2**f.p - 1, 3):
            points.append((significand, e - f.p))
    points.append((2 * (f.max_significand or 2**f.p - 1) + 1, f.emax - f.p))
    for man, exp in points:
        for sign in (1, -1):
            assert _same(
                round_dyadic(sign * man, exp, fmt), round_to_format(_exact(sign * man, exp), fmt)
            )
