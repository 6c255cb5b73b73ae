"""The dot-product problem: its exact reference, the limited accumulator's two roundings checked
against rational arithmetic, the accumulators it must reproduce (float32 at 24 bits, float16's
rounding at 11), promotion, the bounds, and the batch contract.

Every expected value is computed here independently: Python's ``Fraction`` for the reference
and for each accumulator step, numpy's own float32 and float16 arithmetic for the accumulators
the emulation must equal bit for bit. Sizes are small (K <= 512): ground truth at K = 16384 is
cheap (integers), but the emulated accumulator takes about 0.15 s per 4096 products and
variant, which the study (studies/dot.toml), not the test suite, pays.
"""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from precision.core.formats import cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.problems import PROBLEMS
from precision.problems.base import Unsupported
from precision.problems.dot import (
    SCALAR_ROWS,
    TRUNCATION_FACTOR_NARROW,
    TRUNCATION_FACTOR_WIDE,
    dot_reference,
    limited_accumulator_dot,
    limited_sum,
    nearest_add,
    truncated_add,
)
from precision.truth.exact import ground_truth, to_mpf_array

DOT = PROBLEMS["dot"]
INPUT_FORMATS = ["float8_e4m3fn", "float8_e5m2", "bfloat16"]


def _limited(X, bits, truncate=0, every=0):
    return limited_accumulator_dot(X, acc_bits=bits, acc_truncate=truncate, promote_every=every)


def _inputs(fmt: str, *, k: int, cond: float, size: int, seed: int, magnitude=3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = DOT.propose(rng, n=k, magnitude=magnitude, cond=cond, size=size)
    return cast(X, fmt)


# ------------------------------------------------------------------------- exact reference


def _fraction_dot(xy) -> tuple[Fraction, Fraction]:
    x, y = (np.asarray(r, dtype=np.float64).tolist() for r in xy)
    products = [Fraction(a) * Fraction(b) for a, b in zip(x, y, strict=True)]
    return sum(products, Fraction(0)), sum((abs(p) for p in products), Fraction(0))


@pytest.mark.parametrize("fmt", ["float8_e5m2", "bfloat16", "float32", "float64"])
def test_reference_is_the_exact_dot_product(fmt):
    """The certified truth rounds the exact rational sum of products; kappa is sum|xy| / |s|.
    float64 inputs check the three-piece split of 106-bit products (`product_parts`)."""
    rng = np.random.default_rng(7)
    for cond in (1.0, 1e3, 1e8):
        X = cast(DOT.propose(rng, n=33, magnitude=5.0, cond=cond, size=3), fmt)
        for xy in X:
            total, abs_total = _fraction_dot(xy)
            truth = ground_truth(DOT, xy, "float64", engine="arb")
            assert truth.certified
            assert truth.exact.rounded[0] == float(total)  # float(Fraction) rounds once, RN
            if total:
                assert truth.cond == pytest.approx(float(abs_total / abs(total)), rel=2.0**-20)


def test_reference_of_an_exactly_cancelling_input_is_zero():
    x = np.array([1.5, -1.5, 3.0, 2.0**-40])
    xy = np.stack([x, np.array([2.0, 2.0, 0.0, 0.0])])
    (value,), cond = dot_reference(to_mpf_array(xy))
    assert value == 0 and cond == math.inf


# ------------------------------------------------------------------ one accumulator step


def _binade(v: Fraction) -> int:
    """e with 2**(e-1) <= |v| < 2**e (frexp's exponent), for v != 0."""
    e = abs(v).numerator.bit_length() - abs(v).denominator.bit_length()
    while Fraction(2) ** e <= abs(v):
        e += 1
    while Fraction(2) ** (e - 1) > abs(v):
        e -= 1
    return e


def _nearest(v: Fraction, t: int) -> Fraction:
    """v rounded to t significant bits, to nearest, ties to even."""
    if v == 0:
        return v
    q = Fraction(2) ** (_binade(v) - t)
    n, rest = divmod(abs(v), q)
    n = int(n) + (rest > q / 2 or (rest == q / 2 and n % 2 == 1))
    return math.copysign(1, v) * n * q


def _truncated(s: Fraction, a: Fraction, t: int) -> Fraction:
    """Both operands cut toward zero to the grid of the larger's binade, added, a carry cut."""
    if s == 0 and a == 0:
        return Fraction(0)
    q = Fraction(2) ** (max(_binade(v) for v in (s, a) if v) - t)
    n = sum(int(v / q) for v in (s, a))  # int() truncates toward zero
    if abs(n) >= 2**t:
        n = 2 * int(Fraction(n, 2))
    return n * q


def _pairs(rng: np.random.Generator, t: int, count: int, *, addend_bits: int):
    """(s, a): s on the t-bit grid, a with ``addend_bits`` bits, exponent gaps of -40..40
    (alignment shifts past both significands), mixed signs, exact cancellations, and sums
    that float64 rounds onto a midpoint of the t-bit grid while the exact sum is off it."""
    s = rng.integers(2 ** (t - 1), 2**t, count) * 2.0 ** rng.integers(-20, 20, count)
    a = rng.integers(2 ** (addend_bits - 1), 2**addend_bits, count) * 2.0 ** (
        rng.integers(-40, 40, count) - addend_bits
    )
    s *= rng.choice([-1.0, 1.0], count)
    a *= rng.choice([-1.0, 1.0], count)
    a[::7] = -s[::7]  # exact cancellation
    # a = half a grid step of s plus 2**-70 s: s + a is a midpoint in float64, not exactly
    e = np.frexp(s)[1]
    half = np.ldexp(np.ones(count), e - t - 1) * np.sign(s)
    a[3::7] = (half + s * 2.0**-70)[3::7]
    a[5::7] = -(half - s * 2.0**-70)[5::7]
    return s, a


@pytest.mark.parametrize("t", [3, 11, 14, 24])
def test_nearest_step_is_one_correct_rounding_of_the_exact_sum(t):
    s, a = _pairs(np.random.default_rng(t), t, 3000, addend_bits=16)
    got = nearest_add(s, a, t)
    for si, ai, g in zip(s.tolist(), a.tolist(), got.tolist(), strict=True):
        assert Fraction(g) == _nearest(Fraction(si) + Fraction(ai), t), (si, ai)


@pytest.mark.parametrize(("t", "addend_bits"), [(3, 3), (11, 8), (14, 16), (14, 6), (24, 16)])
def test_truncating_step_is_exact_and_within_its_per_step_bound(t, addend_bits):
    """The float64 steps equal the rational algorithm; the error never exceeds the factor the
    bound assumes (4 * 2^-t of |s| + |a| when a has at most t bits, 6 otherwise); with both
    operands of one sign the result never exceeds the exact sum in magnitude."""
    s, a = _pairs(np.random.default_rng(100 + t), t, 3000, addend_bits=addend_bits)
    got = truncated_add(s, a, t)
    factor = TRUNCATION_FACTOR_NARROW if addend_bits <= t else TRUNCATION_FACTOR_WIDE
    worst = Fraction(0)
    for si, ai, g in zip(s.tolist(), a.tolist(), got.tolist(), strict=True):
        fs, fa, fg = Fraction(si), Fraction(ai), Fraction(g)
        assert fg == _truncated(fs, fa, t), (si, ai)
        worst = max(worst, abs(fg - fs - fa) / (abs(fs) + abs(fa)) * 2**t)
        if si * ai >= 0:
            assert abs(fg) <= abs(fs + fa)
    assert worst <= factor


def test_truncation_never_rounds_up_in_magnitude():
    """Same-signed products (kappa = 1): the truncating accumulator's sum never exceeds the
    exact sum, at any width, with or without promotion (float32's rounding to nearest after
    promotion may: checked only without it)."""
    X = _inputs("float8_e4m3fn", k=300, cond=1.0, size=8, seed=3)
    products = X[:, 0, :].astype(np.float64) * X[:, 1, :].astype(np.float64)
    assert np.all((products >= 0).all(axis=1) | (products <= 0).all(axis=1))
    exact = [_fraction_dot(xy)[0] for xy in X]
    for bits in (4, 12, 14, 24):
        Y = _limited(X, bits, truncate=1)
        assert all(abs(Fraction(float(y[0]))) <= abs(e) for y, e in zip(Y, exact, strict=True))


def _folded(terms: np.ndarray, t: int, truncate: bool) -> np.ndarray:
    """The vectorised step folded over the columns, all rows at once (`limited_sum`'s path for
    many rows)."""
    add = truncated_add if truncate else nearest_add
    s = np.zeros(terms.shape[:-1])
    for a in np.moveaxis(terms, -1, 0):
        s = add(s, a, t)
    return s


def _adversarial_rows(rng: np.random.Generator, t: int) -> np.ndarray:
    """Rows of terms that exercise every branch of a step: the `_pairs` sequences (exponent
    gaps past both significands, exact cancellations, float64 sums on a t-bit midpoint),
    small integers (exact ties at narrow t), 0 and -0, terms near 2**128 (overflow to inf,
    and inf - inf), float32's subnormals, and infinities and NaN."""
    s, a = _pairs(rng, t, 600, addend_bits=min(t + 2, 24))
    rows = [np.stack([s, a], axis=1).reshape(4, 300)]
    rows.append(np.round(rng.standard_normal((4, 300)) * 64) / 8)
    specials = [0.0, -0.0, 1.0, -1.0, 2.0**-149, -(2.0**-140), 2.0**127, -(2.0**127), 1.5]
    rows.append(rng.choice(specials, (6, 300)))
    rows.append(rng.choice([*specials, math.inf, -math.inf, math.nan], (6, 40)))
    return rows


@pytest.mark.parametrize("truncate", [False, True])
@pytest.mark.parametrize("t", [2, 3, 8, 11, 13, 14, 16, 24])
def test_scalar_row_sums_equal_the_vectorised_steps_bit_for_bit(t, truncate):
    """A few rows run on Python floats (`limited_sum` below `SCALAR_ROWS`), many on the
    vectorised step: the same sums, bit for bit (sign of zero included), on adversarial terms;
    NaN where the steps give NaN (the sign of a NaN from NaN + NaN is the compiler's choice
    of operand order, in numpy's own loops too)."""
    rng = np.random.default_rng(1000 * t + truncate)
    for terms in _adversarial_rows(rng, t):
        with np.errstate(all="ignore"):
            want = _folded(terms, t, truncate)
            got = limited_sum(terms, t=t, truncate=truncate)
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(got), nan)
        assert got[~nan].tobytes() == want[~nan].tobytes()


def test_scalar_and_vectorised_paths_agree_on_study_inputs():
    """Both paths of `limited_sum` on float8 and bfloat16 products of the study's kind, with
    promotion (one row per chunk: many rows, the vectorised path) and without."""
    for fmt in INPUT_FORMATS:
        X = _inputs(fmt, k=700, cond=1e3, size=3, seed=11)
        products = X[:, 0, :].astype(np.float64) * X[:, 1, :].astype(np.float64)
        for t in (12, 14, 24):
            for truncate in (False, True):
                want = _folded(products, t, truncate)
                assert limited_sum(products, t=t, truncate=truncate).tobytes() == want.tobytes()
                chunks = products[:, :640].reshape(-1, 10)  # 192 rows > SCALAR_ROWS
                assert len(chunks) > SCALAR_ROWS
                got = limited_sum(chunks, t=t, truncate=truncate)
                rows = [limited_sum(c[None], t=t, truncate=truncate) for c in chunks]
                assert got.tobytes() == np.concatenate(rows).tobytes()


# ------------------------------------------------------- accumulators it must reproduce


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "bfloat16", "float16"])
def test_24_bits_to_nearest_is_the_float32_accumulator_bit_for_bit(fmt):
    """Products of p <= 12 bits are exact in float32 (2p <= 24) inside its normal range, so
    float32's recursive sum rounds exactly as a 24-bit accumulator does; every magnitude here
    keeps products and partial sums inside float32's normal range."""
    float32 = PROBLEMS["dot"].variants["float32_accumulator"].kernel
    for cond, seed in ((1.0, 1), (1e2, 2), (1e6, 3)):
        X = _inputs(fmt, k=257, cond=cond, size=6, seed=seed)
        for every in (0, 64):
            Y = _limited(X, 24, 0, every)
            if every == 0:
                assert Y.dtype == np.float32
                assert Y.tobytes() == float32(X).tobytes()
            else:  # chunks of 64 then float32: the same as float32 chunk sums added in float32
                P = X[:, 0, :].astype(np.float32) * X[:, 1, :].astype(np.float32)
                P = np.concatenate([P, np.zeros((len(P), 63), np.float32)], axis=1)
                chunks = np.add.accumulate(P.reshape(len(P), 5, 64), axis=-1)[..., -1]
                assert Y.tobytes() == np.add.accumulate(chunks, axis=-1)[:, -1:].tobytes()


def _float16_grid_inputs(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """float8_e4m3fn inputs of magnitude 0 or [2**-4, 8]: multiples of 2**-7, so that every
    product and every exact partial sum is a multiple of 2**-14, float16's smallest normal."""
    values = np.array(
        [float(v) for v in np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)]
    )
    values = values[np.isfinite(values) & ((values == 0) | (np.abs(values) >= 2**-4))]
    values = values[np.abs(values) <= 8]
    return rng.choice(values, size=(size, 2, k)).astype(ml_dtypes.float8_e4m3fn)


def test_11_bits_to_nearest_is_float16_rounding_without_overflow_or_subnormals():
    """An 11-bit accumulator rounds as float16 exactly when no exact partial sum s + a lies
    strictly between 0 and 2**-14 in magnitude (float16's subnormals have a fixed step,
    the emulation keeps 11 bits at every exponent) and no rounded sum exceeds 65504. Here
    every exact partial sum is a multiple of 2**-14 (`_float16_grid_inputs`), and |sum| <=
    K * 64 = 32768. numpy's float16 addition is float32 addition rounded once more, which is
    correctly rounded (24 >= 2 * 11 + 2, NUMERICS.md); the products (8 bits) are exact."""
    X = _float16_grid_inputs(np.random.default_rng(11), 512, 12)
    P = X[:, 0, :].astype(np.float16) * X[:, 1, :].astype(np.float16)
    float16 = np.add.accumulate(P, axis=-1)[:, -1]
    assert np.all(np.abs(float16) <= 65504)
    limited = _limited(X, 11)[:, 0]
    assert np.array_equal(limited, float16.astype(np.float32))


def test_11_bit_step_is_float16_addition_over_every_float16_normal():
    """The step alone, over every positive float16 normal s against 40 float16 addends of
    both signs: equal to numpy's float16 sum wherever the exact sum is 0 or at least 2**-14 and
    the rounded sum is finite (the condition above)."""
    bits = np.arange(0x0400, 0x7C00, dtype=np.uint16)  # positive normals, 2**-14 .. 65504
    s = bits.view(np.float16)
    rng = np.random.default_rng(5)
    a = rng.choice(s, 40) * rng.choice(np.array([-1, 1], np.float16), 40)
    S, A = np.meshgrid(s, a)
    with np.errstate(over="ignore"):
        expected = (S + A).astype(np.float64)
    exact = S.astype(np.float64) + A.astype(np.float64)  # two float16: exact in float64
    valid = ((exact == 0) | (np.abs(exact) >= 2**-14)) & np.isfinite(expected)
    got = nearest_add(S.astype(np.float64), A.astype(np.float64), 11)
    assert valid.sum() > 0.9 * valid.size
    assert np.array_equal(got[valid], expected[valid])


# ------------------------------------------------------------------------------ promotion


@pytest.mark.parametrize("k", [1, 7, 128, 300])
def test_promotion_every_n_at_least_k_is_no_promotion(k):
    X = _inputs("bfloat16", k=k, cond=10.0, size=5, seed=k)
    for bits in (12, 14):
        for truncate in (0, 1):
            never = _limited(X, bits, truncate, 0)
            for every in (k, k + 1, 4096):
                assert _limited(X, bits, truncate, every).tobytes() == never.tobytes()


def test_promotion_is_chunk_sums_added_in_float32():
    """promote_every = N: the K products summed N at a time in the limited accumulator (each
    chunk from 0, the last one shorter), the chunk sums added left to right in float32."""
    X = _inputs("float8_e4m3fn", k=300, cond=1.0, size=4, seed=9)
    P = X[:, 0, :].astype(np.float64) * X[:, 1, :].astype(np.float64)
    for truncate in (False, True):
        chunks = [limited_sum(P[:, i : i + 128], t=14, truncate=truncate) for i in (0, 128, 256)]
        expected = np.add.accumulate(np.stack(chunks, axis=1).astype(np.float32), axis=1)
        assert _limited(X, 14, int(truncate), 128).tobytes() == expected[:, -1:].tobytes()


# --------------------------------------------------------------------------------- bounds


MEMBERS = [m for v in DOT.variants.values() for m in v.expand()]


@pytest.mark.parametrize("fmt", INPUT_FORMATS)
def test_errors_within_the_bounds(fmt):
    """|s^ - s| / |s| <= bound on the problem's own inputs (kappa 1 to 1e4, K = 300 so that
    promotion every 128 leaves a short last chunk). The bounds are rigorous, not first order;
    the only slack is the float64 evaluation of the bound itself (K * 2^-52 relative). Errors
    are reported in units of the accumulator's u = 2^-acc_bits."""
    f, k = get_format(fmt), 300
    X = np.concatenate([_inputs(fmt, k=k, cond=c, size=3, seed=int(c)) for c in (1, 1e2, 1e4)])
    truths = [ground_truth(DOT, xy, fmt, engine="arb").exact for xy in X]
    checked = 0
    for member in MEMBERS:
        with np.errstate(all="ignore"):
            Y, bounds = member.kernel(X), member.bound(X, f)
        for y, truth, bound in zip(Y, truths, bounds, strict=True):
            if np.isnan(bound):  # in_format in float8: partial sums may overflow
                continue
            error = normwise_relative_error(y, truth)
            u = 2.0 ** -member.params.get("acc_bits", 24)
            assert error <= bound * (1 + k * 2.0**-52), (
                f"{member.name} {dict(member.params)}: {error / u:.3g} u > {bound / u:.3g} u"
            )
            checked += 1
    assert checked >= len(X) * (len(MEMBERS) - 1)


def test_in_format_bound_is_nan_where_float8_partial_sums_may_overflow():
    X = _inputs("float8_e4m3fn", k=300, cond=1.0, size=3, seed=4)
    bounds = DOT.variants["in_format"].bound(X, get_format("float8_e4m3fn"))
    assert np.isnan(bounds).all()  # sum|xy| of 300 products of |x| ~ 3 exceeds 448


# ------------------------------------------------------------------- contracts and options


@pytest.mark.parametrize("fmt", [*INPUT_FORMATS, "float16", "float32"])
def test_rows_are_independent_and_a_single_input_works(fmt):
    X = _inputs(fmt, k=200, cond=30.0, size=5, seed=2)
    f = get_format(fmt)
    for member in MEMBERS:
        with np.errstate(all="ignore"):
            Y, bounds = member.kernel(X), member.bound(X, f)
            assert Y.shape == (5, 1) and bounds.shape == (5,)
            for i, xy in enumerate(X):
                assert member.kernel(X[i : i + 1])[0].tobytes() == Y[i].tobytes()
                assert member.kernel(xy).tobytes() == Y[i].tobytes()
                one = member.bound(xy, f)
                assert isinstance(one, float)
                assert one == bounds[i] or (np.isnan(one) and np.isnan(bounds[i]))


def test_float64_inputs_are_unsupported_by_the_limited_accumulator():
    X = _inputs("float64", k=8, cond=1.0, size=2, seed=0)
    with pytest.raises(Unsupported, match="26 bits"):
        _limited(X, 14)
    assert np.isnan(
        DOT.variants["limited_accumulator"].bound(
            X, get_format("float64"), acc_bits=14, acc_truncate=0, promote_every=0
        )
    ).all()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"acc_bits": 25}, "acc_bits"),
        ({"acc_bits": 13.5}, "acc_bits"),
        ({"acc_truncate": 0.5}, "acc_truncate"),
        ({"promote_every": -1}, "promote_every"),
        ({"promote_every": 2.5}, "promote_every"),
    ],
)
def test_a_bad_option_is_refused_by_name(options, named):
    X = _inputs("bfloat16", k=4, cond=1.0, size=1, seed=0)
    kwargs = {"acc_bits": 14, "acc_truncate": 0, "promote_every": 0} | options
    with pytest.raises(ValueError, match=named):
        limited_accumulator_dot(X, **kwargs)


def test_products_of_eight_bit_inputs_are_exact_in_float32():
    """Why the float32 accumulator adds exact products: every pair of float8_e4m3fn values
    (exhaustively) and of bfloat16 values in [2**-60, 2**60] (sampled) multiplies exactly."""
    e4m3 = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    e4m3 = e4m3[np.isfinite(e4m3)]
    a, b = np.meshgrid(e4m3, e4m3)
    assert np.array_equal((a.astype(np.float32) * b.astype(np.float32)).astype(np.float64), a * b)
    rng = np.random.default_rng(0)
    x = cast(rng.uniform(1, 2, 10**5) * 2.0 ** rng.integers(-60, 60, 10**5), "bfloat16")
    y = cast(rng.uniform(1, 2, 10**5) * 2.0 ** rng.integers(-60, 60, 10**5), "bfloat16")
    wide = x.astype(np.float64) * y.astype(np.float64)
    assert np.array_equal((x.astype(np.float32) * y.astype(np.float32)).astype(np.float64), wide)
