"""The faster paths of precision.problems.linalg give the old results bit for bit.

`jacobi_singular_values` keeps the columns as rows and sums alpha, beta and gamma in one
`_row_sums` pass; `rigal_gaches` divides two integers instead of building a Fraction per term.
Neither may change a value of the study tables, so each is checked here against the
formulation it replaced (kept below, verbatim in what it computes): the same singular values
(bytes), sweeps, convergence flag and IEEE exceptions for Jacobi, in every study format, over
condition numbers 1 to 1e16 and magnitudes from the float16 subnormals to past its overflow
(inputs with infinities included); the same float64 backward error for Rigal-Gaches.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from precision.core.formats import STUDY_FORMATS, cast
from precision.problems import linalg

# ------------------------------------------------------------ the replaced formulations


def old_rotate_pairs(w, i, j, tol) -> float:
    """The column-wise round of the old `jacobi_singular_values` (three `pairwise_sum` calls
    along axis 0, rotation of the columns of w in place)."""
    wi, wj = w[:, i], w[:, j]
    alpha = linalg.pairwise_sum(wi * wi, axis=0)
    beta = linalg.pairwise_sum(wj * wj, axis=0)
    gamma = linalg.pairwise_sum(wi * wj, axis=0)
    rotate = np.abs(gamma) > tol * np.sqrt(alpha) * np.sqrt(beta)
    if not rotate.any():
        return 0.0
    one = w.dtype.type(1)
    diff = beta - alpha
    sign = np.where((diff >= 0) == (gamma >= 0), one, -one)
    two_gamma = np.abs(gamma + gamma)
    t = np.zeros_like(gamma)
    np.divide(sign * two_gamma, np.abs(diff) + np.hypot(diff, two_gamma), out=t, where=rotate)
    c = one / np.sqrt(one + t * t)
    s = c * t
    w[:, i] = c * wi - s * wj
    w[:, j] = s * wi + c * wj
    with np.errstate(all="ignore"):
        cosines = np.abs(gamma.astype(np.float64)) / (
            np.sqrt(alpha.astype(np.float64)) * np.sqrt(beta.astype(np.float64))
        )
    return float(np.sum(np.where(rotate, cosines, 0.0) ** 2))


def old_jacobi(a, *, max_sweeps: int = 30):
    m, n = a.shape
    top = a.dtype.type(
        2.0 ** math.floor(math.log2(math.sqrt(linalg._format_max(a.dtype) / (16 * m))))
    )
    scale = linalg.power_of_two_scale(a)
    w = (a / scale) * top
    tol = linalg._format_unit(w.dtype) * w.dtype.type(math.sqrt(m))
    rounds = linalg.round_robin(n)
    sweep, best, stalled = 0, math.inf, 0
    converged = n < 2
    while sweep < max_sweeps and not converged and stalled < linalg.STALLED_SWEEPS:
        sweep += 1
        off = sum(old_rotate_pairs(w, i, j, tol) for i, j in rounds)
        converged = off == 0
        stalled = 0 if off < best else stalled + 1
        best = min(best, off)
    return np.sqrt(linalg.pairwise_sum(w * w, axis=0)) / top * scale, sweep, converged


def old_rigal_gaches(a, b, x) -> float:
    ma, ea = linalg._integer_matrix(a)
    mb, eb = linalg._integer_matrix(b)
    mx, ex = linalg._integer_matrix(x)
    ax = [Fraction(int(v)) * Fraction(2) ** (ea + ex) for v in ma.dot(mx)]
    bs = [Fraction(int(v)) * Fraction(2) ** eb for v in mb]
    residual = max(abs(bi - axi) for bi, axi in zip(bs, ax, strict=True))
    norm_a = max(sum(abs(int(v)) for v in row) for row in ma) * Fraction(2) ** ea
    norm_x = max(abs(int(v)) for v in mx) * Fraction(2) ** ex
    norm_b = max(abs(v) for v in bs)
    denominator = norm_a * norm_x + norm_b
    return float(residual / denominator) if denominator else (0.0 if residual == 0 else math.inf)


# ------------------------------------------------------------ helpers


def with_flags(function, *args):
    """function(*args) and the IEEE exceptions numpy reports meanwhile (as the runner records
    them: `precision.run.measure`)."""
    raised: set[str] = set()
    with np.errstate(all="call", call=lambda kind, _flag: raised.add(kind)):
        result = function(*args)
    return result, raised


def randsvd(seed: int, n: int, cond: float, norm: float, m: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return linalg.randsvd(rng, m=m or n, n=n, cond=np.array([cond]), norm=np.array([norm]))[0]


# ------------------------------------------------------------ tests


@pytest.mark.parametrize("length", [1, 2, 3, 5, 7, 8, 13, 50, 51])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_row_sums_is_pairwise_sum_along_rows(fmt, length):
    """The same tree as `pairwise_sum` (the odd last term carried, never added to 0), so the
    same sums bit for bit, signed zeros, infinities and NaN included."""
    rng = np.random.default_rng(length)
    x = rng.standard_normal((6, length)) * np.exp2(rng.integers(-30, 30, (6, length)))
    x[0] = -0.0
    x[1, 0] = np.inf
    x[2, -1] = np.nan
    with np.errstate(all="ignore"):
        x = cast(x, fmt)
        fast, slow = linalg._row_sums(x), linalg.pairwise_sum(x.T, axis=0)
    assert fast.dtype == slow.dtype and fast.tobytes() == slow.tobytes()


CASES = [
    (n, cond, norm)
    for n in (2, 3, 7, 12)
    for cond in (1.0, 1e4, 1e9, 1e16)
    for norm in (1e-7, 1.0, 1e5)  # float16: subnormal entries; 1e5 > 65504 overflows to inf
]


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize(("n", "cond", "norm"), CASES)
def test_jacobi_is_the_old_jacobi_bit_for_bit(fmt, n, cond, norm):
    """Values (bytes), sweeps, convergence and IEEE exceptions equal the column-wise code's."""
    with np.errstate(all="ignore"):
        a = cast(randsvd(n * 7 + int(math.log10(cond)), n, cond, norm), fmt)
    (sigma, sweeps, converged), flags = with_flags(linalg.jacobi_singular_values, a)
    (old_sigma, old_sweeps, old_converged), old_flags = with_flags(old_jacobi, a)
    assert sigma.dtype == old_sigma.dtype and sigma.tobytes() == old_sigma.tobytes()
    assert (sweeps, converged, flags) == (old_sweeps, old_converged, old_flags)


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_jacobi_is_the_old_jacobi_at_study_size(fmt):
    """n = 50 as in the study, kappa 1e6: many sweeps, float16 stalling included."""
    a = cast(randsvd(50, 50, 1e6, 3.0), fmt)
    (sigma, sweeps, converged), flags = with_flags(linalg.jacobi_singular_values, a)
    (old_sigma, old_sweeps, old_converged), old_flags = with_flags(old_jacobi, a)
    assert sigma.tobytes() == old_sigma.tobytes()
    assert (sweeps, converged, flags) == (old_sweeps, old_converged, old_flags)


def rigal_gaches_cases():
    rng = np.random.default_rng(11)
    for n in (1, 2, 5, 20):
        for log_norm in (-300, -5, 0, 4, 300):
            a = randsvd(int(rng.integers(1 << 30)), n, 10.0 ** rng.uniform(0, 16), 10.0**log_norm)
            x = rng.standard_normal(n)
            b = a @ x
            for fmt in STUDY_FORMATS:
                with np.errstate(all="ignore"):
                    af, bf = cast(a, fmt), cast(b, fmt)
                    xf = cast(x * (1 + 1e-3 * rng.standard_normal(n)), fmt)
                if all(np.isfinite(v.astype(np.float64)).all() for v in (af, bf, xf)):
                    yield af, bf, xf
    yield np.zeros((3, 3)), np.zeros(3), np.zeros(3)  # 0 / 0: defined as 0
    yield np.eye(3), np.zeros(3), np.full(3, 5e-324)  # exponents 1074 bits apart
    yield np.eye(2) * 5e-324, np.array([1e300, -1e300]), np.array([5e-324, 1e-300])
    yield np.zeros((2, 2)), np.array([1.0, 0.0]), np.zeros(2)  # residual over 0 + ||b||


def test_rigal_gaches_is_the_fraction_formula():
    """One correctly rounded division of the same rational: the same float64, bit for bit."""
    count = 0
    for a, b, x in rigal_gaches_cases():
        new, old = linalg.rigal_gaches(a, b, x), old_rigal_gaches(a, b, x)
        assert np.float64(new).tobytes() == np.float64(old).tobytes(), (new, old)
        count += 1
    assert count > 50
