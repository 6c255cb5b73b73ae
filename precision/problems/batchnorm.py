"""Batch normalisation of one feature: y = (x - m) / sqrt(v + eps) * gamma + beta.

x is the feature's batch (N values), m and v its mean and population variance, written as in
the tutorial and computed in the format, with gamma = 1 and beta = 0 (torch.nn.BatchNorm's
initial values; both operations are then exact). The variants differ in the algorithm of the
batch statistics (`precision.problems.variance.STATISTICS`). Two problems differ in eps, which
the exact output depends on: `BATCHNORM` uses eps = 1e-5 (the tutorial's, the exact decimal;
the variants use its rounding to the format, subnormal in float16), `BATCHNORM_FINFO_EPS` uses
eps = finfo(format).eps = 2**(1 - p), read from the dtype of the input the reference receives.

Condition number: the mixed one (componentwise relative perturbations of x, inf-norm of y) is
max_i sum_j |dy_i/dx_j| |x_j| / ||y||_inf with dy_i/dx_j = (delta_ij - 1/N - z_i z_j / N) / s,
z = (x - m) / s, s = sqrt(v + eps). Its sum over j costs N^2; the rows carry the O(N) upper bound
max_i (|x_i| + sum|x| / N + |z_i| sum_j |z_j| |x_j| / N) / (s ||z||_inf) (triangle inequality;
within a small factor of the exact value), an exact rational that needs no square root.
Magnitude |m|. A constant feature (v = 0) has y = 0 exactly and an infinite condition number.

The variants are batch kernels: B features' batches (B, N) give (B, N), each row normalised with
its own statistics (`precision.problems.variance`, along the last axis) exactly as it is alone.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd

from precision.core.formats import STUDY_FORMATS, Format, cast, get_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant
from precision.problems.summation import dyadic
from precision.problems.variance import (
    STATISTICS,
    Statistics,
    batch_integers,
    bound_per_row,
    finite,
    mean_magnitude,
    mean_magnitudes,
    moments,
    propose_batches,
    sqrt,
)

EPS = Fraction(1, 100_000)
"""The tutorial's eps = 1e-5, as the exact decimal."""

GAMMA, BETA = 1.0, 0.0
"""Scale and shift (torch.nn.BatchNorm's initial values)."""


def format_eps(fmt: Format) -> Fraction:
    """finfo(format).eps = 2**(1 - p): the gap between 1 and the next float."""
    return Fraction(2) ** (1 - fmt.p)


def input_format(x: np.ndarray) -> Format:
    """The format of the array the reference receives (an object array of mpf: float64)."""
    dtype = np.asarray(x).dtype
    return get_format("float64" if dtype.kind == "O" else dtype)


# ---------------------------------------------------------------- reference


def normalise_reference(x: np.ndarray, eps: Fraction, ctx: NumberSystem):
    """Exact y_i = D_i 2**E / (N s) with D_i = N a_i - A (x_i = a_i 2**E, A = sum a_i) and
    s^2 = w = v + eps a rational; the condition bound of the module docstring, exactly."""
    if not finite(x):
        nan = ctx.exact(math.nan)
        return np.array([nan] * np.size(x), dtype=object), ctx.inf
    q = batch_integers(x)
    n, d = q.n, [q.n * a - q.A for a in q.a]
    w = Fraction(q.n * q.B - q.A * q.A, n * n) * Fraction(2) ** (2 * q.exp) + eps
    s = sqrt(dyadic(w.numerator, 0, ctx) / dyadic(w.denominator, 0, ctx), ctx)
    scale = dyadic(n, 0, ctx) * s
    y = [dyadic(di, q.exp, ctx) / scale for di in d]
    return np.array(y, dtype=object), _condition(q, d, w, ctx)


def _condition(q, d: list[int], w: Fraction, ctx: NumberSystem) -> Number:
    """(N |a_i| + sum|a| + N |D_i| K) / max|D| at the maximising i, K = 2**(2E) sum|D_j||a_j| /
    (N^3 w); the argmax is taken on exact integers."""
    top = max(abs(v) for v in d)
    if top == 0:
        return ctx.inf
    k = Fraction(sum(abs(dj) * abs(aj) for dj, aj in zip(d, q.a, strict=True))) / (q.n**3 * w)
    k *= Fraction(2) ** (2 * q.exp)
    best = max(
        q.n * abs(aj) * k.denominator + q.n * abs(dj) * k.numerator
        for aj, dj in zip(q.a, d, strict=True)
    )
    value = (Fraction(best, k.denominator) + sum(abs(a) for a in q.a)) / top
    return dyadic(value.numerator, 0, ctx) / dyadic(value.denominator, 0, ctx)


def batchnorm_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact batch normalisation with eps = 1e-5."""
    return normalise_reference(x, EPS, ctx)


def batchnorm_finfo_reference(
    x: np.ndarray, ctx: NumberSystem = MPMATH
) -> tuple[np.ndarray, Number]:
    """Exact batch normalisation with eps = finfo(format of x).eps."""
    return normalise_reference(x, format_eps(input_format(x)), ctx)


# ---------------------------------------------------------------- variants and bounds


def normalise(x: np.ndarray, stats: Statistics, eps: np.generic) -> np.ndarray:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` in the format, with the statistics of
    ``stats``; a negative variance below -eps (textbook) gives NaN, as written. Along the last
    axis: one feature's batch x of shape (N,) gives (N,), B of them (B, N) give (B, N), each
    row normalised with its own statistics."""
    mean, var = stats.compute(x)  # numpy scalars for one batch, (B,) arrays for B
    scale = np.sqrt(var + eps)
    t = x.dtype.type
    return (x - np.expand_dims(mean, -1)) / np.expand_dims(scale, -1) * t(GAMMA) + t(BETA)


def eps_in(fmt: Format | np.dtype, eps: Fraction) -> np.generic:
    """eps rounded once to the format (1e-5 is subnormal in float16: 1.0014e-05)."""
    return cast(np.array([float(eps)]), get_format(fmt))[0]


def normalise_bound(x: np.ndarray, fmt: Format, stats: Statistics, eps: Fraction) -> float:
    """Normwise relative error bound, first order: em / max|x - m| (the mean's error) + 3u (the
    subtraction and division; gamma and beta are exact) + (dv + |eps^ - eps| + u w) / (2w) + u
    (the square root of w^ = fl(v^ + eps^)); em and dv are the statistics' bounds. NaN for a
    constant batch, where the bounds do not apply, or when it reaches 1."""
    q = moments(x)
    errors = stats.errors(q, fmt)
    if q.dev_max == 0 or not math.isfinite(errors.var):
        return math.nan
    v = q.S / q.n
    w = v + float(eps)
    eps_error = abs(float(Fraction(float(eps_in(fmt, eps))) - eps))
    rel = errors.mean / q.dev_max + 4 * fmt.u + (errors.var + eps_error + fmt.u * w) / (2 * w)
    return rel if rel < 1 else math.nan


def batchnorm_variant(stats: Statistics, eps_rule) -> Variant:
    """The variant normalising with ``stats``; ``eps_rule(fmt) -> Fraction`` gives eps. A batch
    kernel: (B, N) -> (B, N), one feature per row; its bound (B, N) -> (B,) takes the rows one
    at a time (`precision.problems.variance.bound_per_row`: exact moments)."""

    def compute(x: np.ndarray) -> np.ndarray:
        return normalise(x, stats, eps_in(x.dtype, eps_rule(get_format(x.dtype))))

    def bound_of_one(x: np.ndarray, fmt: Format) -> float:
        return normalise_bound(x, fmt, stats, eps_rule(fmt))

    def bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
        return bound_per_row(bound_of_one, x, fmt)

    return Variant(stats.name, compute, bound, stats.accumulator, batched=True)


def condition64(X: np.ndarray, eps: float = float(EPS)) -> np.ndarray:
    """The condition bound of the module docstring per row, in float64 (candidates only)."""
    n = X.shape[1]
    m = X.mean(axis=1, keepdims=True)
    s = np.sqrt(((X - m) ** 2).mean(axis=1, keepdims=True) + eps)
    z = (X - m) / s
    per_row = np.abs(X) + np.abs(X).mean(axis=1, keepdims=True)
    per_row += np.abs(z) * (np.abs(z) * np.abs(X)).sum(axis=1, keepdims=True) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return per_row.max(axis=1) / (s[:, 0] * np.abs(z).max(axis=1))


def _problem(
    name: str, description: str, reference, eps_rule, eps64: float, *, reads_format: bool
) -> Problem:
    """A batch-norm problem; ``eps64`` is the eps its float64 candidate estimates use;
    ``reads_format``: the reference takes eps from its input's format."""
    return Problem(
        name=name,
        description=description,
        reference=reference,
        magnitude=mean_magnitude,
        propose=propose_batches,
        estimate=lambda X: (condition64(X, eps64), mean_magnitudes(X)),
        variants={n: batchnorm_variant(s, eps_rule) for n, s in STATISTICS.items()},
        magnitude_name="|mean x|",
        reference_reads_format=reads_format,
    )


BATCHNORM = _problem(
    "batchnorm",
    "batch normalisation (x - mean) / sqrt(var + 1e-5) of one feature, per variance algorithm",
    batchnorm_reference,
    lambda fmt: EPS,
    float(EPS),
    reads_format=False,
)

BATCHNORM_FINFO_EPS = _problem(
    "batchnorm_finfo_eps",
    "batch normalisation with eps = finfo(format).eps, per variance algorithm",
    batchnorm_finfo_reference,
    format_eps,
    float(format_eps(get_format("float64"))),  # candidates are float64
    reads_format=True,
)


# ---------------------------------------------------------------- worked example


def small_variance_example() -> pd.DataFrame:
    """max |y| of a constant feature (y = 0 exactly) and of one with variance below eps, by
    every statistics algorithm in every format and exactly (on the rounded batch), eps = 1e-5."""
    batches = {
        "constant 0.1 (N = 100)": np.full(100, 0.1),
        "0.1 + 1e-4 z (N = 100): v = 1e-8 < eps": 0.1 + 1e-4 * _unit_normal(100),
    }
    rows = []
    for label, batch in batches.items():
        for name in STUDY_FORMATS:
            x = cast(batch, name)
            exact, _ = batchnorm_reference(x)
            rows.append(_example_row(label, "exact", name, np.array(exact, dtype=np.float64)))
            with np.errstate(all="ignore"):
                for stats in STATISTICS.values():
                    y = normalise(x, stats, eps_in(x.dtype, EPS))
                    rows.append(_example_row(label, stats.name, name, y))
    table = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(["exact", *STATISTICS])}
    wide = table.pivot(index=["batch", "statistics"], columns="format", values="max|y|")
    wide = wide[list(STUDY_FORMATS)].reset_index()
    batch_order = {label: i for i, label in enumerate(batches)}
    keys = wide["batch"].map(batch_order) * len(order) + wide["statistics"].map(order)
    return wide.iloc[np.argsort(keys.to_numpy(), kind="stable")].reset_index(drop=True)


def _example_row(batch: str, statistics: str, fmt: str, y: np.ndarray) -> dict:
    return {
        "batch": batch,
        "statistics": statistics,
        "format": fmt,
        "max|y|": float(np.max(np.abs(y.astype(np.float64)))),
    }


def _unit_normal(n: int) -> np.ndarray:
    z = np.random.default_rng(0).standard_normal(n)
    return (z - z.mean()) / z.std()


def worked_examples() -> list[tuple[str, str, pd.DataFrame]]:
    """Examples for the study's summary: (title, explanation, table), all computed here."""
    table = small_variance_example()
    small = table[table["batch"].str.startswith("0.1 + 1e-4 z")]
    exact64 = small.loc[small["statistics"] == "exact", "float64"].iloc[0]
    text = (
        "A constant feature normalises to exactly 0, whatever eps: any nonzero output is the "
        "error of the computed mean, |x - m^|, divided by sqrt(v^ + eps), i.e. amplified up "
        f"to 1 / sqrt(1e-5) = {1 / math.sqrt(float(EPS)):.0f}-fold (N = 100 is not a power of "
        "two, so sum / N is not exact); a NaN is a variance that came out below -eps or a sum "
        "that overflowed. For the second batch v = 1e-8 is below eps, which then dominates "
        f"the denominator: the exact max|y| is {exact64:.4g} where it would be "
        f"{np.abs(_unit_normal(100)).max():.4g} without eps, and every error of the computed "
        "mean is divided by about sqrt(eps) "
        "rather than by the tiny standard deviation. In float16 and bfloat16 the batch itself "
        "rounds to a few distinct values, so its exact output differs from float64's."
    )
    return [("Batch normalisation of a feature with (near) zero variance", text, shown(table))]


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers as text with 4 significant digits, so that nan and inf stay visible."""
    return table.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
