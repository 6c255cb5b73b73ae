"""Sample variance (the batch statistics of batch normalisation): v = S / N, S = sum (x_i - m)^2.

Population variance (ddof = 0, as np.var and batch normalisation use it) of a batch of N values
with mean m. Condition number (Chan, Golub & LeVeque, "Algorithms for computing the sample
variance: analysis and recommendations", Amer. Statist. 37(3), 1983; CGL83)
kappa_var = ||x||_2 / sqrt(S) = sqrt(1 + N m^2 / S); magnitude |m|. CGL83's error orders: the
textbook one-pass E[x^2] - E[x]^2 ~ N kappa^2 u, two-pass ~ N u + N^2 kappa^2 u^2, Welford's
updating ~ N kappa u (N becomes log2 N with pairwise sums, as here).

Each algorithm computes the mean and the variance in the format and carries an absolute error
bound for both (`Statistics`), derived here in the standard model fl(a op b) = (a op b)(1 + d),
|d| <= u, to first order, with the second-order terms that dominate at large kappa kept (the
N (m - m^)^2 of the two-pass form). Batch normalisation (`precision.problems.batchnorm`) reuses
them. A relative bound of 1 or more guarantees no digit and is reported as NaN.

The algorithms work along the last axis, so the variants are batch kernels (B, N) -> (B, 1),
every row computed with the operations, order and dtype it meets alone; the bounds take the
rows one at a time (`bound_per_row`). One batch (N,) runs exactly the one-vector code of
before, numpy scalars included. B batches run the scalar steps (Welford's loop, the tails of
the textbook and corrected two-pass forms) on (B,) arrays, which differs only outside the
values, in ml_dtypes' formats: in float8 a NaN met in an addition or subtraction as the second
operand keeps its sign in ml_dtypes' scalar arithmetic but becomes +NaN in its array loops;
and ml_dtypes' scalar arithmetic reports no IEEE flags where its array loops do (overflow,
invalid, underflow in bfloat16 and float8).

The reference is exact rational arithmetic on the floats' integers: with x_i = a_i 2**E,
A = sum a_i and B = sum a_i^2, v = (N B - A^2) / N^2 * 2**(2E) and kappa^2 = N B / (N B - A^2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import pandas as pd

from precision.core.formats import FORMATS, STUDY_FORMATS, Format, cast
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant, numpy_sum_accumulator, same_as_format
from precision.problems.summation import (
    dyadic,
    dyadic_parts,
    gamma,
    numpy_sum_depth,
    pairwise_sum,
)

# ---------------------------------------------------------------- exact moments


class Integers(NamedTuple):
    """A batch as integers: x_i = a_i * 2**exp exactly; n, A = sum a_i, B = sum a_i^2."""

    a: list[int]
    exp: int
    n: int
    A: int
    B: int


def batch_integers(x) -> Integers:
    """The exact integer form of a batch (see `Integers`)."""
    m, e = dyadic_parts(x)
    base = int(e.min()) if e.size else 0
    a = [mi << (ei - base) for mi, ei in zip(m.tolist(), e.tolist(), strict=True)]
    return Integers(a, base, len(a), sum(a), sum(v * v for v in a))


def finite(x) -> bool:
    """Whether every value of a float (or mpf) array is finite; the integer forms need it. A
    batch with an infinity or NaN has no variance: the references return NaN for it."""
    values = np.asarray(x)
    if values.dtype == object:
        return all(math.isfinite(float(v)) for v in values.ravel())
    with np.errstate(invalid="ignore"):
        return bool(np.isfinite(values.astype(np.float64)).all())


def sqrt(v: Number, ctx: NumberSystem) -> Number:
    """sqrt(v) = exp(log(v) / 2) for v > 0 (the number systems have exp and log)."""
    return ctx.exp(ctx.log(v) / 2)


def ratio(num: int, den: int, ctx: NumberSystem) -> Number:
    """num / den in ``ctx`` (one rounding at the working precision)."""
    return dyadic(num, 0, ctx) / dyadic(den, 0, ctx)


def variance_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact v = (N B - A^2) / N^2 * 2**(2E) and kappa_var = sqrt(N B / (N B - A^2)) (inf for a
    constant batch, whose variance is exactly 0)."""
    if not finite(x):
        return np.array([ctx.exact(math.nan)], dtype=object), ctx.inf
    q = batch_integers(x)
    s_num = q.n * q.B - q.A * q.A  # N S / 2**(2E), an exact integer >= 0
    v = dyadic(s_num, 2 * q.exp, ctx) / dyadic(q.n * q.n, 0, ctx)
    cond = sqrt(ratio(q.n * q.B, s_num, ctx), ctx) if s_num else ctx.inf
    return np.array([v], dtype=object), cond


# ---------------------------------------------------------------- float64 quantities for bounds


class Moments(NamedTuple):
    """Float64 quantities of a batch the bounds need (correctly rounded from exact values where
    it matters): n, mean m, S, T = sum x^2, sum|x|, sum|x - m|, max|x - m|, max|x|, and the
    batch itself in float64 (Welford's running bound needs its prefix means)."""

    n: int
    mean: float
    S: float
    T: float
    abs_sum: float
    dev_abs: float
    dev_max: float
    max_abs: float
    x: np.ndarray


def moments(x) -> Moments:
    """The `Moments` of a finite batch; the floats are numpy float64 scalars, so that a bound
    formula that overflows gives inf (and then NaN) instead of raising as Python floats do."""
    q = batch_integers(x)
    x64 = np.asarray(x, dtype=np.float64).ravel()
    mean = np.float64(math.fsum(x64.tolist()) / q.n)
    dev = np.abs(x64 - mean)
    return Moments(
        n=q.n,
        mean=mean,
        S=np.float64(to_float(Fraction(q.n * q.B - q.A * q.A, q.n), 2 * q.exp)),
        T=np.float64(to_float(Fraction(q.B), 2 * q.exp)),
        abs_sum=np.abs(x64).sum(),
        dev_abs=dev.sum(),
        dev_max=dev.max(),
        max_abs=np.abs(x64).max(),
        x=x64,
    )


def to_float(value: Fraction, exp: int) -> float:
    """value * 2**exp correctly rounded to float64 (inf beyond its range)."""
    try:
        return float(value * Fraction(2) ** exp)
    except OverflowError:
        return math.inf


def count_error(n: int, fmt: Format) -> float:
    """Relative error of N converted to the format: 0 when N is representable, else <= u."""
    return 0.0 if float(cast(np.array([float(n)]), fmt)[0]) == n else fmt.u


def overflows(fmt: Format, *values: float) -> bool:
    """Whether any of the intermediate magnitudes could pass the format's largest value."""
    return max(values) * 1.01 > fmt.max


# ---------------------------------------------------------------- algorithms in the format


class Errors(NamedTuple):
    """Absolute first-order bounds on the computed mean and variance (NaN: none applies)."""

    mean: float
    var: float


@dataclass(frozen=True)
class Statistics:
    """One algorithm for the batch mean and variance.

    Attributes
    ----------
    name : str
    compute : callable
        ``compute(x) -> (mean, var)`` along the last axis, in the input's format: numpy
        scalars for one batch x of shape (N,), arrays of shape (B,) for B batches (B, N), row
        i computed exactly as row i alone.
    errors : callable
        ``errors(q: Moments, fmt) -> Errors``: absolute bounds for one input.
    accumulator : callable
        ``accumulator(fmt) -> str``: the precision its sums accumulate in.
    """

    name: str
    compute: Callable[[np.ndarray], tuple[np.generic, np.generic]]
    errors: Callable[[Moments, Format], Errors]
    accumulator: Callable[[Format], str] = same_as_format
    description: str = ""


# The algorithms work along the last axis: one batch x of shape (N,) gives numpy scalars (mean,
# var), B batches of shape (B, N) give two (B,) arrays, every row computed with the operations,
# order and dtype it meets alone (row independence is tested bit for bit in every format).


def count(x: np.ndarray) -> np.generic:
    """N (the length of the last axis) as a number of the format (rounded when N > 2**p, e.g.
    10,000 in bfloat16)."""
    return x.dtype.type(x.shape[-1])


def _sum(x: np.ndarray) -> np.generic | np.ndarray:
    """The pairwise sum along the last axis: a numpy scalar for one batch (the scalar
    arithmetic that follows is then the one-vector code's, bit and IEEE flag alike), (B,) for
    B batches."""
    return pairwise_sum(x)[..., 0][()]


def _column(m: np.generic | np.ndarray) -> np.ndarray:
    """A per-batch value against its batch's last axis: shape (1,) for one, (B, 1) for B."""
    return np.expand_dims(m, -1)


def textbook(x: np.ndarray) -> tuple[np.generic, np.generic]:
    """One pass, E[x^2] - E[x]^2 with pairwise sums in the format."""
    n = count(x)
    m = _sum(x) / n
    return m, _sum(x * x) / n - m * m


def two_pass(x: np.ndarray) -> tuple[np.generic, np.generic]:
    """m = sum(x) / N, then sum((x - m)^2) / N, pairwise sums in the format."""
    n = count(x)
    m = _sum(x) / n
    d = x - _column(m)
    return m, _sum(d * d) / n


def corrected_two_pass(x: np.ndarray) -> tuple[np.generic, np.generic]:
    """Two-pass with the correction (sum d)^2 / N (Bjorck; CGL83 eq. 1.7), which removes the
    first-order effect of the mean's error: sum (x - m^)^2 - (sum (x - m^))^2 / N = S exactly."""
    n = count(x)
    m = _sum(x) / n
    d = x - _column(m)
    total = _sum(d)
    return m, (_sum(d * d) - total * total / n) / n


def welford(x: np.ndarray) -> tuple[np.generic, np.generic]:
    """Welford's updating algorithm (CGL83's "updating") in the format: d = x_k - M,
    M += d / k, S += d (x_k - M); the counter k is converted to the format. One batch runs with
    numpy scalars; B batches run the same loop over their N columns, every row's M and S
    updated elementwise (the same operations in the same order)."""
    x = np.asarray(x)
    terms = x if x.ndim == 1 else np.ascontiguousarray(np.moveaxis(x, -1, 0))
    mean, s = terms[0], np.zeros(x.shape[:-1], dtype=x.dtype)[()]  # a scalar 0 for one batch
    for value, k in zip(terms[1:], np.arange(2, x.shape[-1] + 1).astype(x.dtype), strict=True):
        d = value - mean
        mean = mean + d / k
        s = s + d * (value - mean)
    return mean, s / count(x)


def numpy_statistics(x: np.ndarray) -> tuple[np.generic, np.generic]:
    """``np.mean`` and ``np.var`` as they are (two passes; float16 sums in a float32 accumulator
    rounded to float16 after each sum, so a sum past 65504 is inf; bfloat16 left to right),
    of each batch along the last axis.

    numpy takes two branches for a float16 mean (numpy/_core/_methods.py, ``_mean``): it sums
    in float32 and divides by the count in float64; for one vector the float64 quotient is
    rounded once to float16, for an axis of a 2-D array it is stored into the float32 sum
    first and rounded twice. To give every row what ``np.mean`` gives it alone, a float16 mean
    is that one-vector branch, written out (`numpy_mean`); the variance is ``np.var(x,
    axis=-1)``, whose branches round alike.
    """
    x = np.ascontiguousarray(x)  # numpy reduces a C-contiguous row as it reduces a vector
    return numpy_mean(x), np.var(x, axis=-1)


def numpy_mean(x: np.ndarray) -> np.generic | np.ndarray:
    """``np.mean`` of each vector along the last axis, as numpy computes it for that vector
    alone: for float16, float32 ``np.add.reduce`` divided by the count (an ``intp``: the
    quotient is float64) and rounded once to float16; ``np.mean(x, axis=-1)`` otherwise (the
    same single rounding of a float64 quotient on both branches)."""
    x = np.ascontiguousarray(x)
    if x.dtype != np.float16:
        return np.mean(x, axis=-1)
    total = np.add.reduce(x, axis=-1, dtype=np.float32)
    return (total / np.intp(x.shape[-1])).astype(np.float16)


def numpy_float32_statistics(x: np.ndarray) -> tuple[np.generic, np.generic]:
    """``np.mean`` and ``np.var`` with ``dtype=float32`` (float64 for float64), rounded once to the
    format, of each batch along the last axis (float32 quotients: both branches of numpy round
    them alike)."""
    x = np.ascontiguousarray(x)  # numpy reduces a C-contiguous row as it reduces a vector
    wide = np.promote_types(x.dtype, np.float32)
    return (
        np.mean(x, axis=-1, dtype=wide).astype(x.dtype),
        np.var(x, axis=-1, dtype=wide).astype(x.dtype),
    )


def _mean_error(q: Moments, u: float, g_sum: float, eta: float) -> float:
    """|m^ - m| for m^ = fl(fl(sum x) / fl(N)): the sum's g_sum sum|x| plus the division's
    rounding and N's conversion, (u + eta) |m|."""
    return g_sum * q.abs_sum / q.n + (u + eta) * abs(q.mean)


def _two_pass_s_error(q: Moments, u: float, g_sum: float, em: float) -> float:
    """|S^ - S| for S^ = sum fl(fl(x_i - m^)^2): sum (x_i - m^)^2 = S + N (m - m^)^2 exactly, each
    term carries 3u, the sum g_sum."""
    shifted = q.S + q.n * em * em
    return (3 * u + g_sum) * shifted + q.n * em * em


def _sub_tiny(q: Moments, fmt: Format) -> float:
    """What underflow can add: half a subnormal quantum per rounded product or sum, N of them."""
    return q.n * fmt.min_subnormal


def textbook_errors(q: Moments, fmt: Format) -> Errors:
    """m^ as `_mean_error`; sum x^2 has (u + g) T, divided by N (u + eta); m^2 adds
    2 |m| em + em^2 + u m^2; the final subtraction u v."""
    u, eta, g = fmt.u, count_error(q.n, fmt), gamma(math.ceil(math.log2(max(q.n, 2))), fmt.u)
    if overflows(fmt, q.T, q.abs_sum, q.max_abs**2):
        return Errors(math.nan, math.nan)
    em = _mean_error(q, u, g, eta)
    square = 2 * abs(q.mean) * em + em * em + u * q.mean**2
    dv = (2 * u + g + eta) * q.T / q.n + square + u * q.S / q.n + _sub_tiny(q, fmt)
    return Errors(em, dv)


def two_pass_errors(q: Moments, fmt: Format) -> Errors:
    """`_two_pass_s_error` / N plus the division's (u + eta) v."""
    u, eta, g = fmt.u, count_error(q.n, fmt), gamma(math.ceil(math.log2(max(q.n, 2))), fmt.u)
    em = _mean_error(q, u, g, eta)
    if overflows(fmt, q.abs_sum, q.S + q.n * em * em):
        return Errors(math.nan, math.nan)
    ds = _two_pass_s_error(q, u, g, em)
    return Errors(em, ds / q.n + (u + eta) * q.S / q.n + _sub_tiny(q, fmt))


def corrected_errors(q: Moments, fmt: Format) -> Errors:
    """The sum of d_i = fl(x_i - m^) is N (m - m^) within eD = (u + g) sum|x_i - m^|; its square
    over N cancels N (m - m^)^2 and leaves 2 em eD + eD^2 / N, each rounded (2u + eta); the
    last subtraction adds u S."""
    u, eta, g = fmt.u, count_error(q.n, fmt), gamma(math.ceil(math.log2(max(q.n, 2))), fmt.u)
    em = _mean_error(q, u, g, eta)
    if overflows(fmt, q.abs_sum, q.S + q.n * em * em):
        return Errors(math.nan, math.nan)
    e_d = (u + g) * (q.dev_abs + q.n * em)
    correction = 2 * em * e_d + e_d * e_d / q.n
    drift = q.n * em * em + correction
    ds = (3 * u + g) * (q.S + q.n * em * em) + correction + (2 * u + eta) * drift + u * q.S
    return Errors(em, ds / q.n + (u + eta) * q.S / q.n + _sub_tiny(q, fmt))


def welford_errors(q: Moments, fmt: Format) -> Errors:
    """A running first-order error bound (Higham 2002, sec. 3.3) of the updating recurrences.

    With exact prefix means M_k, d_k = x_k - M_{k-1}, e_k = x_k - M_k = d_k (k - 1) / k, the error
    B_k of M^_k obeys B_k = (1 - 1/k) B_{k-1} + 3u |d_k| / k + u |M_k| (the subtraction, the
    division by fl(k) and the addition), so k B_k = sum_{j<=k} (3u |d_j| + j u |M_j|); each
    update of S adds |d_k| (B_k + u |e_k|) + |e_k| (B_{k-1} + u |d_k|) + u |d_k e_k| + u S_k.
    """
    u, eta, n, x = fmt.u, count_error(q.n, fmt), q.n, q.x
    if n < 2:
        return Errors(0.0, 0.0)
    k = np.arange(1, n + 1, dtype=np.float64)
    prefix = np.cumsum(x) / k
    d = x[1:] - prefix[:-1]
    e = x[1:] - prefix[1:]
    kb = np.cumsum(np.r_[0.0, 3 * u * np.abs(d) + k[1:] * u * np.abs(prefix[1:])])
    b = kb / k  # B_1 = 0 (M_1 = x_1 exactly)
    s_k = np.cumsum(d * e)
    ds = np.sum(
        np.abs(d) * (b[1:] + u * np.abs(e))
        + np.abs(e) * (b[:-1] + u * np.abs(d))
        + u * np.abs(d * e)
        + u * s_k
    )
    if overflows(fmt, q.max_abs, float(s_k[-1]), float(np.abs(d).max()) ** 2):
        return Errors(math.nan, math.nan)
    return Errors(float(b[-1]), ds / n + (u + eta) * q.S / n + _sub_tiny(q, fmt))


def numpy_errors(q: Moments, fmt: Format) -> Errors:
    """np.var is two-pass with numpy's sums: gamma of `numpy_sum_depth` in the accumulator's u,
    and for float16 the rounding of each float32 sum to float16 (u); NaN when a sum can
    overflow float16 (np.var(np.full(100, 1000, float16)) is inf)."""
    u, eta = fmt.u, count_error(q.n, fmt)
    acc_u = FORMATS["float32"].u if fmt.name == "float16" else u
    g = gamma(numpy_sum_depth(q.n, fmt), acc_u) + (u if fmt.name == "float16" else 0.0)
    em = _mean_error(q, u, g, eta)
    if overflows(fmt, q.abs_sum, q.S + q.n * em * em):
        return Errors(math.nan, math.nan)
    ds = _two_pass_s_error(q, u, g, em)
    return Errors(em, ds / q.n + (u + eta) * q.S / q.n + _sub_tiny(q, fmt))


def numpy_float32_errors(q: Moments, fmt: Format) -> Errors:
    """Two-pass in float32 (float64 for float64): casting reductions run in buffers
    (`numpy_sum_depth` buffered), then one rounding of the mean and the variance to the
    format."""
    if fmt.p >= FORMATS["float32"].p:
        return numpy_errors(q, fmt)
    wide = FORMATS["float32"]
    g = gamma(numpy_sum_depth(q.n, wide, buffered=True), wide.u)
    em = _mean_error(q, wide.u, g, count_error(q.n, wide))
    ds = _two_pass_s_error(q, wide.u, g, em)
    dv = ds / q.n + wide.u * q.S / q.n + _sub_tiny(q, wide)
    v = q.S / q.n
    if overflows(fmt, q.abs_sum / q.n, v):
        return Errors(math.nan, math.nan)
    return Errors(em + fmt.u * abs(q.mean), dv + fmt.u * v + fmt.min_subnormal)


def wide_accumulator(fmt: Format) -> str:
    return "float64" if fmt.name == "float64" else "float32"


STATISTICS: dict[str, Statistics] = {
    s.name: s
    for s in (
        Statistics("textbook", textbook, textbook_errors),
        Statistics("two_pass", two_pass, two_pass_errors),
        Statistics("corrected_two_pass", corrected_two_pass, corrected_errors),
        Statistics("welford", welford, welford_errors),
        Statistics("numpy", numpy_statistics, numpy_errors, numpy_sum_accumulator),
        Statistics(
            "numpy_float32", numpy_float32_statistics, numpy_float32_errors, wide_accumulator
        ),
    )
}
"""The mean-and-variance algorithms, shared by the variance and batch-norm problems."""


def relative_or_nan(error: float, value: float) -> float:
    """error / |value|; NaN for an undefined (value 0) or vacuous (>= 1) relative bound."""
    if value == 0 or not math.isfinite(error):
        return math.nan
    relative = error / abs(value)
    return relative if relative < 1 else math.nan


def bound_per_row(
    bound_of_one: Callable[[np.ndarray, Format], float], x: np.ndarray, fmt: Format
) -> float | np.ndarray:
    """A bound of one batch, along the last axis of ``x``: for x of shape (N,) what
    ``bound_of_one`` returns (or the ArithmeticError it raises); for (B, N) a (B,) float64
    array, NaN for a row whose bound raises ArithmeticError (a Python float overflowing: what
    the runner makes of it for one input). NaN for a batch with an infinity or NaN, which has
    no moments (`moments` would raise ValueError; the references return NaN for it).

    The bounds stay one row at a time: they rest on `moments`, exact rational arithmetic on
    the floats' integers (Python integers, one batch at a time by nature), and their formulas
    are a few scalar operations whose Python-float and numpy-scalar semantics (``max`` with
    NaN, ``float ** 2`` raising) are kept exactly as they were.
    """

    def one(row: np.ndarray) -> float:
        return bound_of_one(row, fmt) if finite(row) else math.nan

    x = np.asarray(x)
    if x.ndim == 1:
        return one(x)
    rows = x.reshape(-1, x.shape[-1])
    bounds = np.empty(len(rows))
    for i, row in enumerate(rows):
        try:
            bounds[i] = one(row)
        except ArithmeticError:
            bounds[i] = np.nan
    return bounds.reshape(x.shape[:-1])


def variance_bound(stats: Statistics) -> Callable[[np.ndarray, Format], float | np.ndarray]:
    def bound_of_one(x: np.ndarray, fmt: Format) -> float:
        q = moments(x)
        return relative_or_nan(stats.errors(q, fmt).var, q.S / q.n)

    def bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
        return bound_per_row(bound_of_one, x, fmt)

    bound.__doc__ = (
        f"The {stats.name} variance's error bound relative to v (`{stats.errors.__name__}`): "
        "a float for one batch (N,), a (B,) array for B batches (B, N)."
    )
    return bound


def variance_variant(stats: Statistics) -> Variant:
    """The variance output of one `Statistics` algorithm, with its relative bound: a batch
    kernel, (B, N) -> (B, 1)."""
    return Variant(
        stats.name,
        lambda x: np.expand_dims(stats.compute(x)[1], -1),
        variance_bound(stats),
        stats.accumulator,
        batched=True,
    )


# ---------------------------------------------------------------- inputs


def propose_batches(
    rng: np.random.Generator, *, n: int, magnitude: float, cond: float, size: int
) -> np.ndarray:
    """Batches x = m + sigma z, shape (size, n), with |m| = magnitude and
    sigma = |m| / sqrt(kappa^2 - 1) so that kappa_var = kappa (z has mean 0 and variance 1
    exactly up to float64 rounding; Gaussian or uniform shape); kappa is jittered by up to half a
    decade around the target."""
    # kappa >= 1.01 keeps sigma <= 7 |m|: the magnitude axis |m| then bounds the data too.
    kappa = np.maximum(cond * 10.0 ** rng.uniform(-0.5, 0.5, size=(size, 1)), 1.01)
    z = rng.standard_normal((size, n))
    uniform = rng.random(size) < 0.5
    z[uniform] = rng.uniform(-1.0, 1.0, size=(int(uniform.sum()), n))
    z -= z.mean(axis=1, keepdims=True)
    z /= np.maximum(z.std(axis=1, keepdims=True), 1e-300)
    mean = magnitude * rng.choice([-1.0, 1.0], size=(size, 1))
    return mean + np.abs(mean) / np.sqrt(kappa**2 - 1.0) * z


def variance_condition64(X: np.ndarray) -> np.ndarray:
    """kappa_var = sqrt(1 + N m^2 / S) per row in float64 (two-pass S; candidates only)."""
    m = X.mean(axis=1, keepdims=True)
    s = ((X - m) ** 2).sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.sqrt(1.0 + X.shape[1] * m[:, 0] ** 2 / s)


def mean_magnitude(x: np.ndarray) -> float:
    """|mean of x| (float64 from the correctly rounded sum)."""
    x64 = np.asarray(x, dtype=np.float64).ravel()
    return abs(math.fsum(x64.tolist()) / x64.size)


def mean_magnitudes(X: np.ndarray) -> np.ndarray:
    """`mean_magnitude` of each row."""
    return np.array([mean_magnitude(row) for row in X])


VARIANCE = Problem(
    name="variance",
    description="population variance of a batch: textbook, two-pass, corrected, Welford, numpy",
    reference=variance_reference,
    magnitude=mean_magnitude,
    magnitude_name="|mean x|",
    propose=propose_batches,
    estimate=lambda X: (variance_condition64(X), mean_magnitudes(X)),
    variants={name: variance_variant(s) for name, s in STATISTICS.items()},
)


def reference_lines(n: int, kappa: float, fmt: Format) -> dict[str, float]:
    """CGL83's orders of growth (constants and factors of N omitted) for the line plots, in
    units of u: textbook kappa^2 u, Welford kappa u, two-pass u + kappa^2 u^2."""
    return {"kappa^2 u": kappa**2, "kappa u": kappa, "u + kappa^2 u^2": 1.0 + kappa**2 * fmt.u}


# ---------------------------------------------------------------- worked example


def constant_batch_example() -> pd.DataFrame:
    """The variance of 100 copies of 1000 (exactly 0) by every algorithm in every format."""
    rows = []
    for name in STUDY_FORMATS:
        x = cast(np.full(100, 1000.0), name)
        with np.errstate(all="ignore"):
            rows += [
                {"format": name, "algorithm": s.name, "variance": float(s.compute(x)[1])}
                for s in STATISTICS.values()
            ]
    return (
        pd.DataFrame(rows)
        .pivot(index="algorithm", columns="format", values="variance")[list(STUDY_FORMATS)]
        .reset_index()
    )


def worked_examples() -> list[tuple[str, str, pd.DataFrame]]:
    """Examples for the study's summary: (title, explanation, table), all computed here."""
    table = constant_batch_example()
    numpy_row = table[table["algorithm"] == "numpy"].iloc[0]
    textbook_row = table[table["algorithm"] == "textbook"].iloc[0]
    text = (
        "Every value is 1000, so the variance is exactly 0. np.var in float16 returns "
        f"{numpy_row['float16']}: its float32 accumulator holds the sum 100000, but numpy "
        "rounds the sum to float16 (max 65504) before dividing, the mean is inf and so is "
        f"everything after it. In bfloat16 it returns {numpy_row['bfloat16']:g}: the sum "
        "accumulates left to right in bfloat16 and stalls, the mean comes out wrong, and "
        "the squared deviations from the wrong mean are not 0. The textbook form gives "
        f"{textbook_row['float16']} in float16, where x^2 = 10^6 alone overflows."
    )
    shown = table.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)  # nan stays visible
    return [("Variance of a constant batch", text, shown)]
