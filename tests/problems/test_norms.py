"""LayerNorm and RMSNorm (precision.problems.norms): references against mpmath, the RMSNorm
condition number against its Jacobian in rational arithmetic, the float16 overflow threshold of
the sum of squares (issue 17: |x| = 256), the pre-scaling's eps, the bounds on seeded inputs,
the batch contract and torch's kernels where torch is installed.

Every expected value is computed here independently: mpmath at 300 bits from the textbook
formula, Python's ``Fraction`` for the Jacobian, numpy's float16 arithmetic for the threshold.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from precision.core.formats import STUDY_FORMATS, cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.problems.base import Unsupported
from precision.problems.batchnorm import EPS, eps_in
from precision.problems.norms import (
    LAYER_NORM,
    RMS_NORM,
    TORCH_KERNELS,
    estimate_layer,
    estimate_rms,
    outlier_example,
    power_of_two_scale,
    rms_condition,
    worked_examples,
)
from precision.problems.variance import batch_integers
from precision.truth.exact import ground_truth

PROBLEMS = {p.name: p for p in (LAYER_NORM, RMS_NORM)}


def _rows(problem, fmt: str, *, n: int, magnitude: float, cond: float, size: int, seed: int):
    rng = np.random.default_rng(seed)
    return cast(problem.propose(rng, n=n, magnitude=magnitude, cond=cond, size=size), fmt)


def _exact(gt) -> list:
    """The certified reference values as mpf (hi + lo, times 2**exp)."""
    e = gt.exact
    return [
        mpmath.ldexp(mpmath.mpf(e.hi[i]) + mpmath.mpf(e.lo[i]), int(e.exp[i]))
        for i in range(len(e.hi))
    ]


def _textbook(name: str, x) -> list:
    """The formula in mpmath at the working precision, from the floats converted exactly."""
    v = [mpmath.mpf(float(t)) for t in np.asarray(x).tolist()]
    eps = mpmath.mpf(EPS.numerator) / EPS.denominator
    n = len(v)
    if name == "rms_norm":
        r = mpmath.sqrt(mpmath.fsum(t * t for t in v) / n + eps)
        return [t / r for t in v]
    m = mpmath.fsum(v) / n
    var = mpmath.fsum((t - m) ** 2 for t in v) / n
    return [(t - m) / mpmath.sqrt(var + eps) for t in v]


# ------------------------------------------------------------------------- references


@pytest.mark.parametrize("engine", ["mpmath", "arb"])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_reference_against_mpmath_at_300_bits(name, fmt, engine):
    x = _rows(PROBLEMS[name], fmt, n=24, magnitude=40.0, cond=30.0, size=1, seed=1)[0]
    gt = ground_truth(PROBLEMS[name], x, fmt, engine=engine)
    assert gt.certified
    with mpmath.workprec(300):
        for got, value in zip(_exact(gt), _textbook(name, x), strict=True):
            assert abs(got - value) <= 2.0**-100 * abs(value)


def _jacobian_condition(x) -> Fraction:
    """max_i sum_j |dy_i/dx_j| |x_j| / ||y||_inf of RMSNorm, times r = sqrt(w) on both sides:
    r dy_i/dx_j = delta_ij - x_i x_j / (n w), a rational; ||y||_inf r = max|x|."""
    v = [Fraction(t) for t in np.asarray(x, dtype=np.float64).tolist()]
    n = len(v)
    w = sum(t * t for t in v) / n + EPS
    rows = [
        sum(abs((i == j) - v[i] * v[j] / (n * w)) * abs(v[j]) for j in range(n)) for i in range(n)
    ]
    return max(rows) / max(abs(t) for t in v)


@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 300.0])
def test_rms_condition_is_the_jacobian_sum_exactly_and_below_two(magnitude):
    for x in _rows(RMS_NORM, "float64", n=9, magnitude=magnitude, cond=1.0, size=5, seed=2):
        q = batch_integers(x)
        w = Fraction(q.B, q.n) * Fraction(2) ** (2 * q.exp) + EPS
        exact = rms_condition(q.a, q.exp, w)
        assert exact == _jacobian_condition(x)
        assert exact < 2
        assert float(estimate_rms(x[None])[0][0]) == pytest.approx(float(exact), rel=1e-12)


def test_rms_condition_of_a_zero_row_is_infinite_and_output_zero():
    gt = ground_truth(RMS_NORM, np.zeros(5), "float64")
    assert gt.cond == math.inf
    assert (np.asarray(gt.exact.rounded) == 0).all()


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_condition_estimates_match_the_references(name):
    problem = PROBLEMS[name]
    X = _rows(problem, "float64", n=16, magnitude=5.0, cond=20.0, size=6, seed=3)
    cond, magnitude = (estimate_layer if name == "layer_norm" else estimate_rms)(X)
    for i, x in enumerate(X):
        gt = ground_truth(problem, x, "float64")
        assert float(cond[i]) == pytest.approx(gt.cond, rel=1e-9)
        assert magnitude[i] == problem.magnitude(x) == np.abs(x).max()


@pytest.mark.parametrize("target", [10.0, 1e3, 1e5])
def test_layer_norm_proposals_reach_their_condition_decade(target):
    """Some of 64 candidates land in the target decade (the sampler keeps the nearest)."""
    X = LAYER_NORM.propose(np.random.default_rng(4), n=64, magnitude=8.0, cond=target, size=64)
    cond, magnitude = estimate_layer(X)
    assert (np.floor(np.log10(cond)) == math.log10(target)).any()
    assert ((magnitude >= 4.0) & (magnitude < 16.0)).all()  # one power of two from the target


def test_rms_estimate_declares_cells_above_the_first_decade_empty():
    assert estimate_rms.reachable(16, 0, 2) and estimate_rms.reachable(16, -1, 0)
    assert not estimate_rms.reachable(16, 1, 0)


# ------------------------------------------------------------ the float16 overflow at 256


def test_float16_square_overflows_exactly_from_256():
    """Exhaustively over the positive finite float16 values: t * t is finite for t <= 255.875
    (65472.02 rounds to 65472) and inf for t >= 256 (65536 > 65504)."""
    t = np.arange(1, 0x7C00, dtype=np.uint16).view(np.float16)  # every positive finite float16
    with np.errstate(over="ignore"):
        overflowed = ~np.isfinite(t * t)
    first = t[overflowed].min()
    assert first == 256 and overflowed[t >= 256].all() and not overflowed[t < 256].any()
    assert np.float16(255.875) * np.float16(255.875) == 65472


@pytest.mark.parametrize("n", [8, 64])
def test_in_format_rms_norm_breaks_at_one_element_of_256_and_the_others_do_not(n):
    """Row [t, 1/8, ..., 1/8] (the small squares add less than 1): at t = 255.875 in_format is
    finite with error below its first-order value ((d + 3) / 2 + 2) u, d = log2 n (its bound
    is NaN there: sum x^2 (1 + g) may pass 65504); at t = 256 the float16 sum of squares is
    inf and in_format returns y = 0 for every element (a finite, silent, 100% error), while
    float32 statistics and pre-scaling stay within their bounds at both."""
    fmt = get_format("float16")
    first_order = ((math.log2(n) + 3) / 2 + 2) * fmt.u
    for t in (255.875, 256.0):
        x = np.full(n, 0.125, dtype=np.float16)
        x[0] = t
        gt = ground_truth(RMS_NORM, x, fmt)
        for name, variant in RMS_NORM.variants.items():
            with np.errstate(all="ignore"):
                y = variant.compute(x)
            err = normwise_relative_error(y, gt.exact)
            bound = variant.bound_of(x, fmt)
            if name != "in_format":
                assert np.isfinite(y).all() and err <= bound, (name, t)
            elif t == 256:
                assert (y == 0).all() and err == 1.0 and math.isnan(bound)
            else:
                assert (y != 0).all() and err <= first_order


def test_float16_layer_norm_mean_overflows_before_the_squares():
    """n = 4096 values alternating 16 and 17: |x - m| <= 0.5, but sum x = 67584 > 65504, so the
    float16 mean is inf and in_format gives NaN; pre-scaling (s = 16) and float32 statistics
    stay within their bounds."""
    fmt = get_format("float16")
    x = np.tile(np.array([16.0, 17.0], dtype=np.float16), 2048)
    gt = ground_truth(LAYER_NORM, x, fmt)
    with np.errstate(all="ignore"):
        assert np.isnan(LAYER_NORM.variants["in_format"].compute(x)).all()
    assert math.isnan(LAYER_NORM.variants["in_format"].bound_of(x, fmt))
    for name in ("prescaled", "float32_statistics"):
        variant = LAYER_NORM.variants[name]
        err = normwise_relative_error(variant.compute(x), gt.exact)
        assert err <= variant.bound_of(x, fmt), name


def test_prescaled_layer_norm_of_a_constant_float16_row_is_zero_over_zero():
    """A constant row of 100 (s = 64): the exact output is 0, in_format gives 0 / sqrt(eps) = 0,
    prescaled 0 / sqrt(0 + eps / 64 / 64) = 0 / 0 (eps / s^2 underflows to 0) = NaN."""
    x = np.full(8, 100.0, dtype=np.float16)
    with np.errstate(all="ignore"):
        assert (LAYER_NORM.variants["in_format"].compute(x) == 0).all()
        assert np.isnan(LAYER_NORM.variants["prescaled"].compute(x)).all()
        assert (LAYER_NORM.variants["prescaled"].compute(x.astype(np.float32)) == 0).all()


def test_prescaled_eps_rounds_from_s_4_and_vanishes_from_s_32_in_float16():
    """eps = 1e-5 rounds to 168 * 2**-24 (subnormal); eps / s / s is exact for s <= 2, rounded
    for s in [4, 16], and 0 from s = 32: what `rms_bound` and `layer_bound` take as eps^."""
    eps = eps_in("float16", EPS)
    assert Fraction(float(eps)) == 168 * Fraction(2) ** -24
    for k in range(8):
        s = np.float16(2.0**k)
        with np.errstate(under="ignore"):
            scaled = eps / s / s
        assert (Fraction(float(scaled)) == Fraction(float(eps)) / 4**k) == (k <= 1)
        assert (scaled == 0) == (k >= 5)


def test_power_of_two_scale_scales_down_only():
    X = np.array([[0.3, -0.2], [1.0, 0.5], [-300.0, 2.0], [0.0, 0.0]], dtype=np.float16)
    assert power_of_two_scale(X)[:, 0].tolist() == [1.0, 1.0, 256.0, 1.0]
    assert power_of_two_scale(X).dtype == np.float16


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_prescaled_is_in_format_bit_for_bit_below_two(name, fmt):
    """Where max|x| < 2 the scale is 1: x / 1 and eps / 1 / 1 are exact, the same operations."""
    variants = PROBLEMS[name].variants
    X = _rows(PROBLEMS[name], fmt, n=20, magnitude=0.7, cond=10.0, size=8, seed=5)
    assert (np.abs(X.astype(np.float64)).max(axis=1) < 2).all()
    with np.errstate(all="ignore"):
        a, b = variants["prescaled"].kernel(X), variants["in_format"].kernel(X)
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


# ------------------------------------------------------------------------- variants


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_float32_statistics_is_in_format_in_float32_and_refuses_float64(name):
    variants = PROBLEMS[name].variants
    X = _rows(PROBLEMS[name], "float32", n=20, magnitude=3.0, cond=10.0, size=4, seed=6)
    a, b = variants["float32_statistics"].kernel(X), variants["in_format"].kernel(X)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    with pytest.raises(Unsupported):
        variants["float32_statistics"].kernel(X.astype(np.float64))
    assert variants["float32_statistics"].accumulator(get_format("float16")) == "float32"


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn"])
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_rows_are_independent_and_keep_the_format(name, fmt):
    problem = PROBLEMS[name]
    X = np.ascontiguousarray(
        np.concatenate(
            [_rows(problem, fmt, n=7, magnitude=m, cond=10.0, size=3, seed=7) for m in (1e-2, 3e2)]
        )
    )
    for variant in problem.variants.values():
        try:
            with np.errstate(all="ignore"):
                Y = variant.kernel(X)
        except Unsupported:
            continue
        assert Y.shape == X.shape and Y.dtype == X.dtype
        for i in range(len(X)):
            with np.errstate(all="ignore"):
                row = variant.kernel(X[i : i + 1])[0]
            assert np.array_equal(row.view(np.uint8), Y[i].view(np.uint8)), (variant.name, i)


BOUND_CASES = [(name, fmt) for name in PROBLEMS for fmt in STUDY_FORMATS]


@pytest.mark.parametrize(("name", "fmt"), BOUND_CASES)
def test_errors_within_bounds_on_seeded_inputs(name, fmt):
    """Every finite bound holds on rows of every magnitude and condition (float16's overflow
    region included, where in_format's bound is NaN and the others must hold); at least
    half of the bounds are finite."""
    problem, f = PROBLEMS[name], get_format(fmt)
    rng = np.random.default_rng(8)
    failures, finite = [], 0
    cases = [(m, c) for m in (0.05, 3.0, 300.0, 5e3) for c in (1.0, 30.0, 3e3)]
    for magnitude, cond in cases:
        X = cast(problem.propose(rng, n=33, magnitude=magnitude, cond=cond, size=2), fmt)
        for x in X:
            gt = ground_truth(problem, x, f)
            for variant in problem.variants.values():
                bound = variant.bound_of(x, f)
                if not np.isfinite(bound):
                    continue
                finite += 1
                with np.errstate(all="ignore"):
                    err = normwise_relative_error(variant.compute(x), gt.exact)
                if not err <= bound:
                    failures.append((variant.name, magnitude, cond, err / f.u, bound / f.u))
    assert not failures, failures[:3]
    assert finite >= len(cases) * 2 * len(problem.variants) // 2


# ------------------------------------------------------------------------- torch


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_torch_kernels_compute_half_formats_in_float32(name):
    """torch's CPU layer_norm / rms_norm keep float16 and bfloat16 but compute in float32: a
    row with an element of 256 stays finite and within the float32-statistics bound plus one
    more rounding; float8 is refused (NotImplementedError)."""
    torch = pytest.importorskip("torch")
    from precision.problems.frameworks import from_torch, to_torch

    _, call = TORCH_KERNELS[name]
    for fmt in ("float16", "bfloat16"):
        x = np.ones((1, 8), dtype=get_format(fmt).dtype)
        x[0, 0] = 256
        y = from_torch(call(torch, to_torch(x)))
        assert y.dtype == x.dtype and np.isfinite(y.astype(np.float64)).all()
        gt = ground_truth(PROBLEMS[name], x[0], fmt)
        bound = PROBLEMS[name].variants["float32_statistics"].bound_of(x[0], get_format(fmt))
        assert normwise_relative_error(y[0], gt.exact) <= 2 * bound
    with pytest.raises(NotImplementedError):
        call(torch, to_torch(np.ones((1, 3), dtype=get_format("float8_e4m3fn").dtype)))


def test_outlier_example_shows_the_silent_zero_at_256():
    table = outlier_example().set_index(["t", "variant"])
    assert table.loc[(256.0, "in_format"), "float16"] == 0
    for variant in ("float32_statistics", "prescaled"):
        for t in (255.875, 256.0):
            exact = table.loc[(t, "exact"), "float16"]
            got = table.loc[(t, variant), "float16"]
            assert abs(got - exact) <= 4 * get_format("float16").u * exact
    title, text, shown = worked_examples()[0]
    assert "y_0 = 0 " in text and len(shown) == len(table)
