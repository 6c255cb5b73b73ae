"""The activation problems (GELU, SiLU): references against mpmath at high precision, the
condition number against a numerical derivative, kernels against their formulas, rows
independent, the approximations' own errors on [-10, 10] (the issue's figures), and the
approximation's error against the format's.

Every expected value is computed here: mpmath at 60 digits (``mpmath.ncdf``, ``mpmath.diff``)
or float64 with a stated accuracy.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.special

from precision.core.formats import cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.core.numbers import ARB, MPMATH
from precision.problems.activations import (
    GELU,
    SILU,
    erf_in_format,
    gelu_reference,
    gelu_sigmoid,
    gelu_tanh,
    silu_reference,
)
from precision.truth.exact import ground_truth

FORMATS = ["float16", "bfloat16", "float32", "float64"]
PROBLEMS = {"gelu": GELU, "silu": SILU}
ROW = np.array([-30.0, -5.5, -2.7, -0.75, -1e-3, 0.0, 0.5, 2.0, 12.0])


def _gelu_mp(v):
    return v * mpmath.ncdf(v)


def _silu_mp(v):
    return v / (1 + mpmath.exp(-v))


EXACT = {"gelu": (gelu_reference, _gelu_mp), "silu": (silu_reference, _silu_mp)}


# ------------------------------------------------------------------------- references


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_reference_matches_mpmath_at_high_precision(name):
    """Both number systems give f(x_i) to 2^-150 relative of mpmath's own ncdf / exp at 60
    digits (Arb's balls contain the value), including x = -30, where GELU is 5e-197."""
    reference, direct = EXACT[name]
    with mpmath.workdps(60):
        expected = [direct(mpmath.mpf(v)) for v in ROW.tolist()]
    for ctx in (MPMATH, ARB):
        with ctx.workprec(200), mpmath.workprec(200):  # mpmath's too: the exact midpoint
            y, _ = reference(ROW, ctx)
            for got, want in zip(y, expected, strict=True):
                if ctx is ARB:  # the ball's midpoint, exactly, and its radius
                    assert got.rad() <= 2.0**-150 * abs(float(want)) or want == 0
                    got = mpmath.mpf(tuple(int(v) for v in got.mid().man_exp()))
                assert abs(got - want) <= 2.0**-150 * abs(want)


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_condition_number_is_the_mixed_one(name):
    """kappa = max |x f'(x)| / max |f(x)|, f' by mpmath's numerical derivative at 60 digits."""
    reference, direct = EXACT[name]
    row = ROW[1:]  # -30 is fine too, but the derivative there needs far more digits
    with mpmath.workdps(60):
        slopes = [abs(v * mpmath.diff(direct, v)) for v in map(mpmath.mpf, row.tolist())]
        values = [abs(direct(mpmath.mpf(v))) for v in row.tolist()]
        expected = max(slopes) / max(values)
        _, cond = reference(row, MPMATH)
        assert abs(cond - expected) <= 1e-30 * expected


def test_condition_of_a_row_of_zeros_is_one():
    _, cond = gelu_reference(np.zeros(3))
    assert cond == 1


@pytest.mark.parametrize("name", ["gelu", "silu"])
@pytest.mark.parametrize(("cond", "magnitude"), [(1.0, 3.0), (10.0, 30.0), (300.0, 30.0)])
def test_proposals_and_estimates(name, cond, magnitude):
    """Proposals reach their magnitude exactly and kappa within a factor 3 (the median of 20),
    and the float64 estimate equals the certified condition number to 1e-8 relative (log_ndtr
    and the logs are accurate to a few float64 ulps)."""
    problem = PROBLEMS[name]
    reachable = magnitude**2 if name == "gelu" else magnitude
    X = problem.propose(np.random.default_rng(7), n=9, magnitude=magnitude, cond=cond, size=20)
    k, m = problem.estimate(X)
    assert np.all(m == magnitude)
    if cond < reachable:
        assert 1 / 3 <= np.median(k) / cond <= 3
    for row, estimate in zip(X[:3], k[:3], strict=True):
        truth = ground_truth(problem, row, "float64")
        assert abs(estimate - float(truth.cond)) <= 1e-8 * float(truth.cond)


# ------------------------------------------------------------------------- kernels


def test_scipy_float32_erf_is_float64_erf_rounded_once():
    """What `erf_in_format` relies on for its float32 rows: scipy's float32 loop is the
    float64 erf rounded once (checked on 10^5 inputs spread over [-6, 6])."""
    t = np.random.default_rng(1).uniform(-6, 6, 10**5).astype(np.float32)
    expected = scipy.special.erf(t.astype(np.float64)).astype(np.float32)
    assert np.array_equal(scipy.special.erf(t), expected)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_sixteen_bit_erf_within_one_ulp_exhaustively(fmt):
    """erf in float32, rounded once to a 16-bit format: within one ulp of the correctly
    rounded erf for every finite value of |t| <= 4 (beyond, erf rounds to +-1 in both ways).
    Double rounding (float64 -> float32 -> 16 bits) can cost at most that ulp."""
    dtype = get_format(fmt).dtype
    bits = np.arange(2**16, dtype=np.uint16).view(dtype)
    with np.errstate(invalid="ignore"):  # casting bfloat16's signalling NaNs raises the flag
        wide = bits.astype(np.float64)
    t = bits[np.isfinite(wide) & (np.abs(wide) <= 4)]
    got = erf_in_format(t).astype(np.float64)
    with mpmath.workdps(30):
        exact = np.array([float(mpmath.erf(v)) for v in t.astype(np.float64).tolist()])
    rounded = cast(exact, fmt).astype(np.float64)
    ulp = np.spacing(rounded.astype(dtype)).astype(np.float64)
    assert erf_in_format(t).dtype == dtype
    assert np.all(np.abs(got - rounded) <= np.abs(ulp))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_kernels_keep_the_format_and_rows_are_independent(fmt, name):
    """Every variant returns the format's dtype (no promotion of bfloat16) and row i of a
    batch equals the kernel on row i alone, bit for bit."""
    problem = PROBLEMS[name]
    X = cast(problem.propose(np.random.default_rng(3), n=9, magnitude=8.0, cond=5.0, size=4), fmt)
    X[1] = cast(ROW, fmt)
    for variant in problem.variants.values():
        Y = variant.kernel(X)
        assert Y.dtype == get_format(fmt).dtype and Y.shape == X.shape
        for i in range(len(X)):
            assert np.array_equal(Y[i], variant.kernel(X[i : i + 1])[0], equal_nan=True)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_approximation_kernels_follow_their_formulas(name):
    """In float64 each approximation equals its formula evaluated in mpmath within 64 u of the
    largest |x| (a dozen roundings, none amplified: tanh and sigmoid are bounded by 1)."""
    x = np.linspace(-10, 10, 401)
    with mpmath.workdps(40):
        if name == "tanh":
            c = mpmath.sqrt(2 / mpmath.pi)
            f = [v / 2 * (1 + mpmath.tanh(c * (v + mpmath.mpf(0.044715) * v**3))) for v in x]
        else:
            f = [v / (1 + mpmath.exp(mpmath.mpf(-1.702) * v)) for v in x]
        expected = np.array([float(v) for v in f])
    got = (gelu_tanh if name == "tanh" else gelu_sigmoid)(x)
    assert np.max(np.abs(got - expected)) <= 64 * 2.0**-53 * 10


# ------------------------------------------------------------------------- the issue's facts

ISSUE_MAX_ERROR = {"tanh": (4.7e-4, 0.05e-4), "sigmoid": (2e-2, 0.5e-2)}
"""The issue's maximum absolute errors on [-10, 10] and the tolerance its significant digits
state: 4.7e-4 (two digits: +-0.05e-4), "about 2e-2" (one digit: +-0.5e-2)."""


def _max_abs_error(kernel) -> tuple[float, float]:
    """(max |approx(x) - GELU(x)|, argmax) on [-10, 10]: a float64 grid of step 1e-4 (exact
    GELU as x ndtr(x), accurate to 1e-15 absolute there), then the maximum refined in mpmath at
    40 digits by a golden-section search on the grid's bracket."""
    x = np.linspace(-10, 10, 200_001)
    i = int(np.argmax(np.abs(kernel(x) - x * scipy.special.ndtr(x))))
    with mpmath.workdps(40):
        approx = {gelu_tanh: _tanh_mp, gelu_sigmoid: _sigmoid_mp}[kernel]

        def error(v):
            return -abs(approx(v) - _gelu_mp(v))

        lo, hi = mpmath.mpf(x[i - 1]), mpmath.mpf(x[i + 1])
        ratio = (mpmath.sqrt(5) - 1) / 2
        for _ in range(60):
            a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
            lo, hi = (lo, b) if error(a) < error(b) else (a, hi)
        return float(-error(lo)), float(lo)


def _tanh_mp(v):
    c = mpmath.sqrt(2 / mpmath.pi)
    return v / 2 * (1 + mpmath.tanh(c * (v + mpmath.mpf("0.044715") * v**3)))


def _sigmoid_mp(v):
    return v / (1 + mpmath.exp(mpmath.mpf("-1.702") * v))


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_approximation_max_error_on_minus_ten_to_ten(name):
    """The issue's figures, measured: tanh 4.73e-4 at x = -2.70 and sigmoid 2.03e-2 at
    x = -2.27 (measured by this function), within the tolerance of the issue's digits; the
    float64 grid maximum agrees with the mpmath-refined one to 1e-6 relative."""
    kernel = gelu_tanh if name == "tanh" else gelu_sigmoid
    measured, where = _max_abs_error(kernel)
    figure, tolerance = ISSUE_MAX_ERROR[name]
    assert abs(measured - figure) <= tolerance
    x = np.linspace(-10, 10, 200_001)
    grid = np.max(np.abs(kernel(x) - x * scipy.special.ndtr(x)))
    assert abs(grid - measured) <= 1e-6 * measured and -3 < where < -2


def test_approximation_or_format_dominates():
    """Rows of 64 values on [-3, 3] (one at +3): the normwise error of the approximation
    itself, e_a = max|approx - GELU| / max|GELU| (float64, < 4.8e-4 / 2.99), against the
    format's u. A handful of roundings, each at most u |x| <= 1.01 u max|GELU| here, bound the
    format's part by 8 u normwise. So in float32 and float64 the tanh and sigmoid rows measure
    e_a within 8 u (the approximation dominates), and in bfloat16, where e_a < u / 20, the
    tanh row stays within 8 u of 0 like the erf row (the format dominates)."""
    x = np.random.default_rng(0).uniform(-3, 3, 64)
    x[0] = 3.0
    for fmt in ("bfloat16", "float32", "float64"):
        xf = cast(x, fmt)
        u = get_format(fmt).u
        truth = ground_truth(GELU, xf, fmt)
        exact = np.array([float(v) for v in gelu_reference(xf)[0]])
        errors = {
            v: normwise_relative_error(GELU.variants[v].compute(xf), truth.exact)
            for v in GELU.variants
        }
        assert errors["erf"] <= 8 * u
        for name, kernel in (("tanh", gelu_tanh), ("sigmoid", gelu_sigmoid)):
            e_a = np.max(np.abs(kernel(xf.astype(np.float64)) - exact)) / np.max(np.abs(exact))
            assert abs(errors[name] - e_a) <= 8 * u + 1e-12
        if fmt == "bfloat16":
            e_tanh = np.max(np.abs(gelu_tanh(xf.astype(np.float64)) - exact)) / 3.0
            assert e_tanh < u / 20 and errors["tanh"] <= 8 * u
        else:
            assert errors["tanh"] >= 1000 * errors["erf"]
