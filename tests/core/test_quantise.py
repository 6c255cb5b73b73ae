"""Tests of precision.core.quantise: element formats, exact rounding, scaled quantisation.

Rounding to each 4-, 6- and 8-bit element format is checked exhaustively: every value, every
midpoint between neighbours (ties to the even code), points just below and above every
midpoint, the overflow boundary and beyond, both signs. The points just off a midpoint sit
2**-40 of a gap away, below float32's resolution there, so a cast that went through float32
would round them twice: comparing ml_dtypes' casts on them measures whether it rounds once.
Block scaling is checked against scalar references written with Fractions, by the bounds of
the analysis (in units of u) and by hypothesis properties (power-of-two scaling, independent
rows). Values are compared as bit patterns, so -0.0 differs from +0.0.
"""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from precision.core.formats import round_to_format
from precision.core.quantise import (
    E8M0_EMAX,
    E8M0_EMIN,
    E8M0_NAN_EXPONENT,
    ELEMENT_FORMATS,
    SCHEMES,
    e8m0_codes,
    get_element_format,
    quantisation_error,
    quantise,
    quantise_mx,
    quantise_nvfp4,
    quantise_per_tensor,
    round_quotient_to_element,
    round_to_element,
    round_to_element_array,
    to_element_dtype,
)

NAMES = list(ELEMENT_FORMATS)
MX = [name for name, (kind, _, _) in SCHEMES.items() if kind == "mx"]
TINY = 2.0**-40  # offset from a midpoint, in gaps: far below float32's 2**-24 relative


def _bits(x) -> np.ndarray:
    """float64 bit patterns, so that -0.0 and +0.0 differ and NaNs compare equal to NaNs."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isnan(x), np.nan, x).view(np.int64)


def _assert_same(got, want, points=None) -> None:
    got, want = _bits(got), _bits(want)
    bad = np.flatnonzero(got != want)
    if bad.size:
        where = "" if points is None else f" at {np.asarray(points).ravel()[bad[:5]]}"
        got_v, want_v = got.view(np.float64).ravel(), want.view(np.float64).ravel()
        raise AssertionError(
            f"{bad.size} differ{where}: got {got_v[bad[:5]]}, want {want_v[bad[:5]]}"
        )


def _codes(name: str) -> np.ndarray:
    """Every code of the format decoded by ml_dtypes (float64), code order."""
    fmt = ELEMENT_FORMATS[name]
    with np.errstate(invalid="ignore"):
        return np.arange(2**fmt.width, dtype=np.uint8).view(fmt.dtype).astype(np.float64)


def _top_gap(name: str) -> float:
    """Spacing of the format's top binade, ``2**(emax - p + 1)``."""
    fmt = ELEMENT_FORMATS[name]
    return 2.0 ** (fmt.emax - fmt.p + 1)


def _points(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exhaustive test points (non-negative) with their correctly rounded values.

    ``values``: every value; ``ties``: every midpoint, to the neighbour with the even code
    (positive codes count the values upwards, checked in the registry test); ``below`` and
    ``above``: each midpoint -+ 2**-40 gaps, to the nearer neighbour.
    """
    v = ELEMENT_FORMATS[name].values()
    mids = (v[:-1] + v[1:]) / 2  # exact: p + 1 bits
    offset = (v[1:] - v[:-1]) * TINY
    even = np.arange(len(v) - 1) % 2 == 0
    return {
        "values": (v, v),
        "ties": (mids, np.where(even, v[:-1], v[1:])),
        "below": (mids - offset, v[:-1]),
        "above": (mids + offset, v[1:]),
    }


def _all_points(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Every point of `_points` with both signs (a negative zero rounds to itself)."""
    xs, want = zip(*_points(name).values(), strict=True)
    x, w = np.concatenate(xs), np.concatenate(want)
    return np.concatenate([x, -x]), np.concatenate([w, -w])


# ----------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", NAMES)
def test_registry_matches_ml_dtypes_finfo(name):
    fmt, info = ELEMENT_FORMATS[name], ml_dtypes.finfo(ELEMENT_FORMATS[name].dtype)
    assert fmt.max == float(info.max)
    assert fmt.min_normal == float(info.smallest_normal)
    assert fmt.min_subnormal == float(info.smallest_subnormal)
    assert 2.0 * fmt.u == float(info.eps)  # eps = 2**(1 - p)


@pytest.mark.parametrize("name", NAMES)
def test_value_set_is_every_finite_code(name):
    """Exhaustive over the codes: the positive codes 0, 1, ... decode to values() in order,
    and the finite codes (both signs) are exactly values() and their negatives."""
    fmt, decoded, v = ELEMENT_FORMATS[name], _codes(name), ELEMENT_FORMATS[name].values()
    _assert_same(decoded[: len(v)], v)
    finite = decoded[np.isfinite(decoded)]
    assert sorted(set(finite.tolist())) == sorted(set(v.tolist()) | set((-v).tolist()))
    specials = {"none": 0, "nan": 2, "inf": 8}[fmt.special]  # E5M2: 2 infinities, 6 NaNs
    assert np.count_nonzero(~np.isfinite(decoded)) == specials
    assert np.count_nonzero(np.isinf(decoded)) == (2 if fmt.special == "inf" else 0)


def test_element_registry_is_apart_from_the_study_registry():
    from precision.core.formats import FORMATS

    assert not {"float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn"} & set(FORMATS)
    assert get_element_format("float4_e2m1fn") is ELEMENT_FORMATS["float4_e2m1fn"]
    with pytest.raises(KeyError, match="float4_e2m1fn"):
        get_element_format("float4")


def test_e8m0_codes_decode_to_every_power_of_two():
    """Exhaustive over E8M0's 256 codes: exponent e is code e + 127, 128 is the NaN code."""
    exponents = np.arange(E8M0_EMIN, E8M0_NAN_EXPONENT + 1)
    decoded = e8m0_codes(exponents).view(ml_dtypes.float8_e8m0fnu).astype(np.float64)
    _assert_same(decoded[:-1], np.ldexp(1.0, exponents[:-1]))
    assert np.isnan(decoded[-1]) and E8M0_EMAX == 127
    with pytest.raises(ValueError, match="exponents"):
        e8m0_codes(np.array([-128]))


# ----------------------------------------------------------------------------- exact rounding


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["values", "ties", "below", "above"])
def test_rounding_is_exhaustively_correct(name, kind):
    x, want = _points(name)[kind]
    _assert_same(round_to_element_array(x, name), want, x)
    _assert_same(round_to_element_array(-x, name), -want, -x)


@pytest.mark.parametrize("name", NAMES)
def test_scalar_exact_rounding_agrees_and_rounds_rationals(name):
    """round_to_element (Fractions, through formats.round_to_format) gives the same on every
    point, and rounds points 2**-200 of a gap off a midpoint (no float64 holds them) right."""
    x, want = _all_points(name)
    got = [round_to_element(Fraction(float(xi)), name) for xi in x]
    _assert_same(np.where(x == 0, x, got), want, x)  # a Fraction has no signed zero
    v = ELEMENT_FORMATS[name].values()
    mids = [(Fraction(a) + Fraction(b)) / 2 for a, b in zip(v[:-1], v[1:], strict=True)]
    off = [(Fraction(b) - Fraction(a)) / 2**200 for a, b in zip(v[:-1], v[1:], strict=True)]
    _assert_same([round_to_element(m - o, name) for m, o in zip(mids, off, strict=True)], v[:-1])
    _assert_same([round_to_element(m + o, name) for m, o in zip(mids, off, strict=True)], v[1:])


@pytest.mark.parametrize("name", NAMES)
def test_signed_zeros_and_underflow(name):
    fmt = ELEMENT_FORMATS[name]
    half = fmt.min_subnormal / 2  # a tie between 0 (even) and the least subnormal
    x = np.array([0.0, -0.0, half, -half, half * (1 + TINY), 5e-324, -5e-324, -1e-300])
    want = np.array([0.0, -0.0, 0.0, -0.0, fmt.min_subnormal, 0.0, -0.0, -0.0])
    _assert_same(round_to_element_array(x, name), want, x)


@pytest.mark.parametrize("name", NAMES)
def test_overflow_saturates_or_follows_the_format(name):
    """Past max: saturation (MX) gives +-max; non-saturating gives inf (E5M2), NaN (E4M3) or
    still +-max (FP6/FP4 hold neither). The boundary is the midpoint ``max + gap / 2``: a tie
    there goes to the even significand, which is max itself only for E4M3 (0b1110)."""
    fmt = ELEMENT_FORMATS[name]
    boundary = fmt.max + _top_gap(name) / 2
    x = np.array([boundary * (1 - TINY), boundary, boundary * (1 + TINY), 1e300, np.inf])
    for sign in (1.0, -1.0):
        _assert_same(round_to_element_array(sign * x, name), np.full(5, sign * fmt.max))
        over = {"none": sign * fmt.max, "nan": np.nan, "inf": sign * np.inf}[fmt.special]
        tie_overflows = fmt.max_significand % 2 == 1
        want = [sign * fmt.max, over if tie_overflows else sign * fmt.max, over, over, over]
        _assert_same(round_to_element_array(sign * x, name, saturate=False), want, sign * x)
        _assert_same([round_to_element(float(xi), name, saturate=False) for xi in sign * x], want)


@pytest.mark.parametrize("name", NAMES)
def test_nan_stays_nan_and_is_refused_where_there_is_no_code(name):
    assert np.isnan(round_to_element_array(np.array([np.nan]), name)[0])
    if ELEMENT_FORMATS[name].special == "none":
        with pytest.raises(ValueError, match="NaN"):
            to_element_dtype(np.array([np.nan]), name)


@pytest.mark.parametrize("name", NAMES)
def test_to_element_dtype_is_exact(name):
    x, want = _all_points(name)
    _assert_same(to_element_dtype(want, name).astype(np.float64), want)
    with pytest.raises(ValueError, match="representable"):
        to_element_dtype(np.array([ELEMENT_FORMATS[name].max * 2]), name)


# ----------------------------------------------------------------------------- ml_dtypes' casts


@pytest.mark.parametrize("name", NAMES)
def test_ml_dtypes_casts_round_once_in_range(name):
    """ml_dtypes claims round-to-nearest-even: on every in-range point it agrees with the exact
    rounding. The points just off a midpoint would round twice through float32 (checked: the
    float32 route fails on them), so agreement measures a single rounding."""
    x, want = _all_points(name)
    _assert_same(x.astype(ELEMENT_FORMATS[name].dtype).astype(np.float64), want, x)
    via_float32 = round_to_element_array(x.astype(np.float32).astype(np.float64), name)
    assert np.count_nonzero(_bits(via_float32) != _bits(want)) > 0


@pytest.mark.parametrize("name", NAMES)
def test_ml_dtypes_overflow_differs_from_mx_as_documented(name):
    """The facts in quantise.py's docstring, measured: FP6/FP4 casts saturate and turn NaN into
    a zero; E4M3 overflows to NaN and E5M2 to inf (non-saturating), unlike MX's saturation."""
    fmt = ELEMENT_FORMATS[name]
    x = np.array([2 * fmt.max, -2 * fmt.max, np.inf, -np.inf])
    with np.errstate(invalid="ignore", over="ignore"):
        cast = x.astype(fmt.dtype).astype(np.float64)
        nan_cast = np.array([np.nan]).astype(fmt.dtype).astype(np.float64)
    if fmt.special == "none":
        _assert_same(cast, [fmt.max, -fmt.max, fmt.max, -fmt.max])
        assert nan_cast[0] == 0.0  # NaN silently becomes a (signed) zero
    elif fmt.special == "nan":
        assert np.all(np.isnan(cast)) and np.isnan(nan_cast[0])
    else:
        _assert_same(cast, [np.inf, -np.inf, np.inf, -np.inf])
    _assert_same(round_to_element_array(x, name), [fmt.max, -fmt.max, fmt.max, -fmt.max])
    _assert_same(round_to_element_array(x, name, saturate=False), cast)


# ----------------------------------------------------------------------------- exact quotients

FLOAT32_NORMAL = st.floats(2.0**-100, 2.0**100, width=32)
# Values whose MX scales stay inside E8M0's range (and whose tensor scales are float32 normals),
# zeros included: the clamped cases have their own test.
IN_RANGE = st.one_of(
    st.just(0.0),
    st.builds(
        lambda sign, m: sign * m,
        st.sampled_from([-1.0, 1.0]),
        st.floats(2.0**-60, 2.0**20, width=32),
    ),
)
E4M3_POSITIVE = st.sampled_from(ELEMENT_FORMATS["float8_e4m3fn"].values()[1:].tolist())


def _reference_quotient(x: float, d: float, name: str) -> float:
    value = round_to_element(Fraction(x) / Fraction(d), name)
    return math.copysign(value, x) if value == 0 else value


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(-(2.0**110), 2.0**110, allow_subnormal=True),
    d=FLOAT32_NORMAL,
    b=E4M3_POSITIVE,
    name=st.sampled_from(NAMES),
)
def test_quotient_rounding_matches_fractions(x, d, b, name):
    got = round_quotient_to_element(np.array([x]), b * d, name)[0]
    _assert_same(got, _reference_quotient(x, b * d, name))


@pytest.mark.parametrize("name", NAMES)
def test_quotient_rounding_next_to_every_midpoint(name):
    """x = mid * d exactly (a tie) and its float64 neighbours, for every midpoint and 50
    float32 divisors: the exact rounding gets all right. Measured as well: rounding the
    float64 quotient fl(x / d) is right on all of them too (it cannot land on a midpoint when
    mid * d fits in 53 bits, the argument in round_quotient_to_element's docstring)."""
    rng = np.random.default_rng(17)
    d = rng.uniform(1, 2, 50).astype(np.float32).astype(np.float64) * 2.0 ** rng.integers(
        -30, 30, 50
    )
    mids, ties = _points(name)["ties"]
    below_v, above_v = _points(name)["below"][1], _points(name)["above"][1]
    x = mids[:, None] * d[None, :]  # exact: (p + 1) + 24 bits
    for shift, want in ((0.0, ties), (-np.inf, below_v), (np.inf, above_v)):
        xs = x if shift == 0.0 else np.nextafter(x, shift)
        got = round_quotient_to_element(xs, d[None, :], name)
        _assert_same(got, np.broadcast_to(want[:, None], got.shape))
    for shift, want in ((-np.inf, below_v), (np.inf, above_v)):
        naive = round_to_element_array(np.nextafter(x, shift) / d[None, :], name)
        _assert_same(naive, np.broadcast_to(want[:, None], naive.shape))


def test_quotient_rejects_divisors_that_break_exactness():
    with pytest.raises(ValueError, match="significant bits"):
        round_quotient_to_element(np.array([1.0]), 1 + 2.0**-50, "float8_e4m3fn")
    with pytest.raises(ValueError, match="within"):
        round_quotient_to_element(np.array([1.0]), 0.0, "float8_e4m3fn")


# ----------------------------------------------------------------------------- block scaling


def _mx_reference(row: np.ndarray, name: str, block_size: int, rule: str):
    """MX of one row, written with math.frexp and Fractions: (exponents, elements)."""
    fmt, exps, elems = ELEMENT_FORMATS[name], [], []
    for start in range(0, len(row), block_size):
        block = row[start : start + block_size]
        amax = max(abs(float(v)) for v in block)
        if amax == 0:
            s = E8M0_EMIN
        else:
            s = math.frexp(amax)[1] - 1 - fmt.emax
            if rule == "round_up" and Fraction(amax) / Fraction(2) ** s > Fraction(fmt.max):
                s += 1
            s = min(max(s, E8M0_EMIN), E8M0_EMAX)
        exps.append(s)
        elems += [_reference_quotient(float(v), 2.0**s, name) for v in block]
    return np.array(exps), np.array(elems)


def _wide_rows(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """Gaussian rows times 2**k per row and per value, spanning many binades, with zeros."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2.0 ** rng.integers(-6, 6, shape)
    x *= 2.0 ** rng.integers(-40, 40, (shape[0], 1))
    x[rng.random(shape) < 0.05] = 0.0
    return x


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rule", ["ocp", "round_up"])
def test_mx_matches_the_scalar_reference(name, rule):
    x = _wide_rows(1, (6, 77))  # blocks of 32: 32, 32 and a tail of 13
    q = quantise_mx(x, element=name, scale_rule=rule)
    for row, exps, elems in zip(x, q.scale_exponents, q.elements, strict=True):
        want_exps, want_elems = _mx_reference(row, name, 32, rule)
        np.testing.assert_array_equal(exps, want_exps)
        _assert_same(elems, want_elems, row)
    assert q.block_scales.shape == (6, 3) and q.tensor_scales.shape == (6,)


def _per_value(q) -> np.ndarray:
    n = q.elements.shape[-1]
    return np.repeat(q.block_scales, q.block_size, axis=-1)[..., :n] * q.tensor_scales[..., None]


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_dequantised_is_exactly_scale_times_element(scheme):
    """Elements are members of the element format, and the dequantised value is the exact
    product (checked in Fractions) of element and scales."""
    x = _wide_rows(2, (4, 50))
    q = quantise(x, scheme)
    fmt = ELEMENT_FORMATS[SCHEMES[scheme][1]]
    assert np.all(np.isin(np.abs(q.elements), fmt.values()))
    exact = [
        Fraction(float(e)) * Fraction(float(s))
        for e, s in zip(q.elements.ravel(), _per_value(q).ravel(), strict=True)
    ]
    assert [Fraction(float(v)) for v in q.dequantised.ravel()] == exact
    _assert_same(np.signbit(q.dequantised), np.signbit(x))


@pytest.mark.parametrize("name", NAMES)
def test_ocp_rule_saturates_exactly_when_documented(name):
    """amax = m * 2**k, m = 1 + j / 1024: under the OCP rule amax / X = m * 2**emax, which
    saturates exactly when m > max / 2**emax, with relative error 1 - max / (m 2**emax); the
    round-up rule never saturates (error at most u)."""
    fmt = ELEMENT_FORMATS[name]
    m = 1 + np.arange(1024) / 1024
    x = np.zeros((1024, 32))
    x[:, 0], x[:, 1] = m * 2.0**5, 2.0**5  # the second value keeps the block non-trivial
    ocp = quantise_mx(x, element=name, scale_rule="ocp")
    up = quantise_mx(x, element=name, scale_rule="round_up")
    saturated = m > fmt.max / 2.0**fmt.emax
    np.testing.assert_array_equal(np.abs(x[:, 0]) > fmt.max * _per_value(ocp)[:, 0], saturated)
    np.testing.assert_array_equal(ocp.elements[saturated, 0], fmt.max)
    err = quantisation_error(x, ocp.dequantised)
    # In Fractions: 1 - max / (m 2**emax) in float64 would cancel (error up to 2**-42 relative).
    want = np.array([float(1 - Fraction(fmt.max) / Fraction(mi * 2.0**fmt.emax)) for mi in m])
    np.testing.assert_allclose(err[saturated], want[saturated], rtol=2.0**-50)
    assert np.all(err[~saturated] <= fmt.u)
    assert np.all(quantisation_error(x, up.dequantised) <= fmt.u)
    assert np.all(np.abs(x) <= fmt.max * _per_value(up))  # amax never beyond max under round_up


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(np.float64, (3, 40), elements=IN_RANGE),
    scheme=st.sampled_from(MX),
    rule=st.sampled_from(["ocp", "round_up"]),
)
def test_mx_error_bounds(x, scheme, rule):
    """Each element: error <= u |x_i| when |x_i| / X is normal and not beyond max, else at most
    half the subnormal quantum times X; normwise <= u (round_up) or, under OCP, at most the
    saturation error 1 - max / 2**(emax + 1). The E8M0 range is not reached (`IN_RANGE`)."""
    fmt = ELEMENT_FORMATS[SCHEMES[scheme][1]]
    q = quantise(x, scheme, scale_rule=rule)
    scale = _per_value(q)
    error = np.abs(q.dequantised - x)  # exact: within a factor 2 (Sterbenz), or dequantised 0
    in_range = (np.abs(x) <= fmt.max * scale) & (np.abs(x) >= fmt.min_normal * scale)
    assert np.all(error[in_range] <= fmt.u * np.abs(x[in_range]))
    small = np.abs(x) < fmt.min_normal * scale
    assert np.all(error[small] <= fmt.min_subnormal / 2 * scale[small])
    worst = fmt.u if rule == "round_up" else max(fmt.u, 1 - fmt.max / 2.0 ** (fmt.emax + 1))
    assert np.all(quantisation_error(x, q.dequantised) <= worst)


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(np.float64, (2, 37), elements=IN_RANGE),
    k=st.integers(-40, 40),
    scheme=st.sampled_from(list(SCHEMES)),
)
def test_scaling_a_row_by_a_power_of_two(x, k, scheme):
    """Scaling by 2**k scales the scales by 2**k and leaves every element unchanged, while the
    scales stay in range (E8M0 for MX, float32 normals for the tensor scales here)."""
    q, qk = quantise(x, scheme), quantise(x * 2.0**k, scheme)
    _assert_same(qk.elements, q.elements)
    if SCHEMES[scheme][0] == "mx":
        zero = q.block_scales == 2.0**E8M0_EMIN  # all-zero blocks keep the least scale
        _assert_same(qk.block_scales, np.where(zero, q.block_scales, q.block_scales * 2.0**k))
    else:
        zero_row = np.all(x == 0, axis=-1)
        _assert_same(qk.block_scales, q.block_scales)
        _assert_same(qk.tensor_scales, np.where(zero_row, 1.0, q.tensor_scales * 2.0**k))
    _assert_same(qk.dequantised, q.dequantised * 2.0**k)


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        np.float64, (4, 45), elements=st.floats(allow_nan=True, allow_infinity=True, width=32)
    ),
    scheme=st.sampled_from(list(SCHEMES)),
    rule=st.sampled_from(["ocp", "round_up"]),
)
def test_rows_are_independent(x, scheme, rule):
    """Row i of a batch's quantisation is the quantisation of row i alone, bit for bit,
    including rows with infinities and NaN."""
    rule = rule if SCHEMES[scheme][0] == "mx" else "ocp"
    q = quantise(x, scheme, scale_rule=rule)
    for i in range(len(x)):
        alone = quantise(x[i], scheme, scale_rule=rule)
        for field in ("elements", "block_scales", "tensor_scales", "dequantised"):
            _assert_same(getattr(alone, field), getattr(q, field)[i])


def test_tail_block_is_scaled_by_itself():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 70)) * 100
    for scheme, size in (("mxfp4_e2m1", 32), ("nvfp4", 16)):
        q = quantise(x, scheme)
        if scheme.startswith("mx"):
            alone = quantise(x[:, 64:], scheme)
            _assert_same(q.block_scales[:, -1], alone.block_scales[:, 0])
            _assert_same(q.elements[:, 64:], alone.elements)
        assert q.block_scales.shape == (2, -(-70 // size))


def test_non_finite_blocks_and_zero_blocks():
    x = np.zeros((1, 96))
    x[0, 40], x[0, 70:] = np.nan, 1.5
    x[0, 5] = -0.0
    q = quantise_mx(x, element="float8_e4m3fn")
    np.testing.assert_array_equal(q.scale_exponents[0], [E8M0_EMIN, E8M0_NAN_EXPONENT, -8])
    assert np.all(np.isnan(q.dequantised[0, 32:64])) and np.all(q.dequantised[0, 70:] == 1.5)
    _assert_same(q.dequantised[0, :32], x[0, :32])  # zeros keep their sign
    assert np.all(np.isnan(quantise_nvfp4(x).dequantised))  # S is undefined for the row
    assert np.all(np.isnan(quantise_per_tensor(x).dequantised))


def test_e8m0_range_clamps_the_scale():
    """Below 2**(emax - 127) the OCP exponent would fall under E8M0's -127: it is clamped, and
    the elements underflow into the subnormals (or to zero); above 2**(127 + emax + 1) it is
    clamped at 127 and the elements saturate."""
    fmt = ELEMENT_FORMATS["float8_e4m3fn"]
    tiny = [2.0**-130, 2.0**-135, 2.0**-137, 3 * 2.0**-138]  # OCP exponent -138, clamped
    x = np.array([tiny + [0.0] * 28, [2.0**200, 1.0] + [0.0] * 30])
    q = quantise_mx(x, element=fmt.name)
    np.testing.assert_array_equal(q.scale_exponents[:, 0], [E8M0_EMIN, E8M0_EMAX])
    # x / 2**-127: a normal, a subnormal, a tie with 0 (to 0), 0.75 of the least subnormal.
    _assert_same(q.elements[0, :4], [2.0**-3, 2.0**-8, 0.0, 2.0**-9])
    assert q.elements[1, 0] == fmt.max and q.dequantised[1, 0] == fmt.max * 2.0**127


def test_nvfp4_matches_the_scalar_reference():
    """S = RN_float32(amax / 2688), s_b = RN_E4M3(amax_b / 6S), e = RN_E2M1(x / (s_b S)), each
    from Fractions; a block below amax * 2**-10 / 448 gets scale 0 and flushes to zero."""
    x = _wide_rows(4, (5, 48))
    x[0, 16:32] = x[0, 16:32] * 2.0**-30  # far below the row's amax: its scale rounds to 0
    q = quantise_nvfp4(x)
    for row, tensor, blocks, elems in zip(
        x, q.tensor_scales, q.block_scales, q.elements, strict=True
    ):
        amax = Fraction(float(np.max(np.abs(row))))
        s = float(round_to_format(amax / 2688, "float32"))
        assert tensor == s
        for b, start in enumerate(range(0, 48, 16)):
            block = row[start : start + 16]
            want_b = round_to_element(
                Fraction(float(np.max(np.abs(block)))) / (6 * Fraction(s)), "float8_e4m3fn"
            )
            assert blocks[b] == want_b
            want = [
                _reference_quotient(float(v), want_b * s, "float4_e2m1fn") if want_b else 0.0 * v
                for v in block
            ]
            _assert_same(elems[start : start + 16], want, block)
    assert q.block_scales[0, 1] == 0.0 and np.all(q.dequantised[0, 16:32] == 0)


def test_per_tensor_scale_and_saturation():
    x = _wide_rows(5, (4, 64))
    for name in ("float8_e4m3fn", "float8_e5m2"):
        fmt = ELEMENT_FORMATS[name]
        q = quantise_per_tensor(x, element=name)
        amax = np.max(np.abs(x), axis=-1)
        want = [
            float(round_to_format(Fraction(float(a)) / Fraction(fmt.max), "float32")) for a in amax
        ]
        _assert_same(q.tensor_scales, want)
        assert (
            np.max(np.abs(q.elements)) == fmt.max
        )  # amax lands on max (within a float32 rounding)
        assert np.all(quantisation_error(x, q.dequantised) <= fmt.u)


def test_quantise_validates_its_options():
    x = np.ones((2, 8))
    with pytest.raises(KeyError, match="mxfp4_e2m1"):
        quantise(x, "mxfp4")
    with pytest.raises(ValueError, match="scale_rule"):
        quantise(x, "nvfp4", scale_rule="round_up")
    with pytest.raises(ValueError, match="scale_rule"):
        quantise_mx(x, element="float4_e2m1fn", scale_rule="up")
    with pytest.raises(ValueError, match="block_size"):
        quantise(x, "float8_e4m3fn_tensor", block_size=16)
    with pytest.raises(ValueError, match="block_size"):
        quantise_mx(x, element="float4_e2m1fn", block_size=0)
    with pytest.raises(ValueError, match="last axis"):
        quantise_mx(np.ones((2, 0)), element="float4_e2m1fn")


def test_quantisation_error_is_the_normwise_relative_error():
    x = np.array([[3.0, -1.0, 0.5], [0.0, 0.0, 0.0], [1e-3, 2e-3, -4e-3]])
    q = quantise_mx(x, element="float4_e2m1fn")
    got = quantisation_error(x, q.dequantised)
    for row, deq, e in zip(x, q.dequantised, got, strict=True):
        top = max(abs(Fraction(float(v))) for v in row)
        diff = max(
            abs(Fraction(float(a)) - Fraction(float(b))) for a, b in zip(deq, row, strict=True)
        )
        want = 0.0 if top == 0 else diff / top
        assert abs(Fraction(float(e)) - Fraction(want)) <= Fraction(want) * Fraction(2) ** -51
