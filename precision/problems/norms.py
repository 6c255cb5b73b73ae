"""LayerNorm and RMSNorm of a row: y = (x - m) / sqrt(v + eps) and y = x / sqrt(mean(x^2) + eps).

Each row x of n features is normalised on its own (Ba, Kiros & Hinton, *Layer Normalization*,
arXiv:1607.06450, 2016; Zhang & Sennrich, *Root Mean Square Layer Normalization*, NeurIPS
2019), with m = sum x_i / n, v = sum (x_i - m)^2 / n (population variance), eps = 1e-5 (the
exact decimal, `precision.problems.batchnorm.EPS`; the kernels use its rounding to the format)
and no affine weights (unit gain, zero bias: torch's initial values, exact operations).

The question (issue 17): in float16 the sum of squares overflows once one element reaches
|x| = 256 (256^2 = 65536 > 65504 = float16's max; 255.875^2 = 65472.02 rounds to the float
65472): RMSNorm and the one-pass variance fail on activations that float16 holds without
trouble (T5's reach 2.77e5, which is beyond float16 itself). A row of n comparable elements
overflows much earlier, once sum x^2 passes 65504 (max|x| about 256 / sqrt(n)); and in
LayerNorm the float16 sum of the mean overflows first, once |sum x| passes 65504 (4096 values
alternating 16 and 17: NaN). Variants:

- ``in_format``: statistics and output in the format as written, pairwise sums in the format
  (`precision.problems.summation.pairwise_sum`); LayerNorm's variance is two-pass.
- ``float32_statistics``: the input converted exactly to float32, statistics and output computed
  there, the output rounded once to the format (what torch's CPU kernels do for float16 and
  bfloat16). Its accumulator is float32. float64 input raises `Unsupported` (float32 statistics
  would first round the input).
- ``prescaled``: the row divided by s = 2**floor(log2 max|x|) where max|x| >= 1 (exact: a power
  of two, unless an element falls below the format's normal range), normalised with eps / s^2,
  which gives the same y: (x / s) / sqrt(ms(x / s) + eps / s^2) = x / sqrt(ms(x) + eps). The
  scaled squares are below 4, so the sum of squares cannot overflow float16 below n = 16376.
  eps / s^2 is computed in the format: in float16 eps = 168 * 2**-24 is itself subnormal, so
  eps / s / s rounds once s >= 4 and is 0 once s >= 32 (measured in the tests); the variant
  then errs by up to about eps / (2 w), visible only where the variance (LayerNorm) or the
  mean square (RMSNorm) is within a few thousand eps. The bounds take the kernel's eps^. A
  LayerNorm row that is constant in float16 (or whose scaled deviations square to 0) then
  gives 0 / 0 = NaN where ``in_format`` gives 0 / sqrt(eps) = 0: pre-scaling needs eps kept
  in a wider type (measured in the tests).
- torch's ``torch.nn.functional.layer_norm`` and ``rms_norm`` (`TORCH_KERNELS`), as library
  variants in `precision.problems.frameworks` (registered there, run only where torch is
  installed and a spec names them).

Condition numbers (mixed: componentwise relative perturbations of x, inf-norm of y). LayerNorm
is batch normalisation of one row: `precision.problems.batchnorm.normalise_reference` gives y
and its O(n) upper bound on the condition number. RMSNorm: with r^2 = w = T / n + eps,
T = sum x_j^2, dy_i/dx_j = delta_ij / r - x_i x_j / (n r^3), and since x_i^2 <= T < n w the
diagonal term is positive, so sum_j |dy_i/dx_j| |x_j| = |x_i| (1 + (T - 2 x_i^2) / (n w)) / r
exactly and kappa_rms = max_i |x_i| (1 + (T - 2 x_i^2) / (n w)) / max|x| < 2 (exact rational,
no square root): RMSNorm is always well conditioned; its errors are the format's (overflow,
underflow, rounding). A row of zeros has y = 0 and an infinite condition number. Magnitude of
both problems: max|x| (the overflow threshold is a threshold in max|x|).

Bounds (first order, normwise relative error; NaN where an intermediate could overflow or the
bound reaches 1): `layer_bound`, `rms_bound`, each applied to the variant's actual statistics
format and eps (`float32_statistics` adds the output's rounding u (1 + b)).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd

from precision.core.formats import FORMATS, Format, cast, get_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Unsupported, Variant
from precision.problems.batchnorm import EPS, condition64, eps_in, normalise, normalise_reference
from precision.problems.summation import _per_input, dyadic, pairwise_sum
from precision.problems.variance import (
    STATISTICS,
    batch_integers,
    bound_per_row,
    count,
    count_error,
    finite,
    moments,
    two_pass_errors,
)

FLOAT32 = FORMATS["float32"]
TWO_PASS = STATISTICS["two_pass"]

# ---------------------------------------------------------------- references


def layer_norm_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact LayerNorm of one row with eps = 1e-5 and its condition bound: batch normalisation of
    the row (`precision.problems.batchnorm.normalise_reference`)."""
    return normalise_reference(x, EPS, ctx)


def rms_norm_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact y_i = x_i / sqrt(w), w = T / n + eps, from the row's integers (x_i = a_i 2**E,
    T = B 2**(2E), B = sum a_i^2): w is an exact rational, its square root the only rounding;
    the condition number `rms_condition` exactly."""
    if not finite(x):
        nan = ctx.exact(math.nan)
        return np.array([nan] * np.size(x), dtype=object), ctx.inf
    q = batch_integers(x)
    w = Fraction(q.B, q.n) * Fraction(2) ** (2 * q.exp) + EPS
    r = ctx.sqrt(dyadic(w.numerator, 0, ctx) / dyadic(w.denominator, 0, ctx))
    y = [dyadic(a, q.exp, ctx) / r for a in q.a]
    cond = rms_condition(q.a, q.exp, w)
    if cond is None:
        return np.array(y, dtype=object), ctx.inf
    return np.array(y, dtype=object), dyadic(cond.numerator, 0, ctx) / dyadic(
        cond.denominator, 0, ctx
    )


def rms_condition(a: list[int], exp: int, w: Fraction) -> Fraction | None:
    """kappa_rms = max_i |a_i| (n w + T - 2 a_i^2 4**E) / (n w max|a|) exactly (module
    docstring), None for a row of zeros."""
    top = max(abs(v) for v in a)
    if top == 0:
        return None
    scale = Fraction(2) ** (2 * exp)
    nw_plus_t = len(a) * w + sum(v * v for v in a) * scale
    best = max(abs(v) * (nw_plus_t - 2 * v * v * scale) for v in a)
    return best / (len(a) * w * top)


def rms_condition64(X: np.ndarray, eps: float = float(EPS)) -> np.ndarray:
    """`rms_condition` per row in float64 (candidates only); NaN for a row of zeros."""
    n = X.shape[-1]
    squares = X * X
    nw = squares.sum(axis=-1, keepdims=True) + n * eps
    total = squares.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.abs(X) * (nw + total - 2 * squares) / nw
        return per.max(axis=-1) / np.abs(X).max(axis=-1)


def max_magnitude(x: np.ndarray) -> float | np.ndarray:
    """max|x_i| of a row (a float) or of each row of a batch ((batch,)), exact."""
    return _per_input(np.abs(np.asarray(x, dtype=np.float64)).max(axis=-1))


def estimate_layer(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(LayerNorm condition bound, max|x|) per row in float64."""
    return condition64(X), max_magnitude(X)


def estimate_rms(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa_rms, max|x|) per row in float64."""
    return rms_condition64(X), max_magnitude(X)


# kappa_rms < 2 (module docstring) and its float64 estimate cannot reach 10: no cell above the
# first decade holds an input (`precision.run.sampling.reachable`).
estimate_rms.reachable = lambda n, cond_decade, mag_decade: cond_decade <= 0


# ---------------------------------------------------------------- inputs


def propose_rows(rng: np.random.Generator, *, n: int, magnitude, cond, size: int) -> np.ndarray:
    """Rows x = m + sigma z of shape (size, n) aimed at max|x| ~ magnitude and a LayerNorm
    condition ~ cond (floats, or one target per candidate, shape (size,)).

    z is standardised Gaussian or uniform noise, a quarter of the rows with one outlier
    element 8 to 64 times the rest (the outlier features of transformer activations);
    |m| / sigma = cond / 1.5 jittered by half a decade (LayerNorm's condition grows like
    |m| / sigma and is about 2 to 3 at m = 0); the sign of m is random. The row is scaled by one
    power of two (exact) so that max|x| lies within a factor 2 of its target. RMSNorm takes the
    same rows: its condition number stays below 2 whatever they are.
    """
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))
    cond = np.broadcast_to(np.asarray(cond, dtype=np.float64), (size,))
    z = rng.standard_normal((size, n))
    uniform = rng.random(size) < 0.5
    z[uniform] = rng.uniform(-1.0, 1.0, size=(int(uniform.sum()), n))
    outlier = rng.random(size) < 0.25
    z[outlier, 0] *= 2.0 ** rng.integers(3, 7, size=int(outlier.sum()))
    z -= z.mean(axis=1, keepdims=True)
    z /= np.maximum(z.std(axis=1, keepdims=True), 1e-300)
    ratio = cond / 1.5 * 10.0 ** rng.uniform(-0.5, 0.5, size=size)
    x = ratio[:, None] * rng.choice([-1.0, 1.0], size=(size, 1)) + z
    x = rng.permuted(x, axis=1)
    peak = np.abs(x).max(axis=1)
    scale = 2.0 ** np.round(np.log2(magnitude / np.where(peak > 0, peak, 1.0)))
    return x * scale[:, None]


# ---------------------------------------------------------------- kernels


def _rms(x: np.ndarray, eps: np.generic) -> np.ndarray:
    """x / sqrt(sum(x * x) / n + eps) along the last axis, every operation in x's dtype and the
    sum pairwise (`pairwise_sum`: ceil(log2 n) roundings per term)."""
    mean_square = pairwise_sum(x * x) / count(x)  # (..., 1)
    return x / np.sqrt(mean_square + eps)


def _layer(x: np.ndarray, eps: np.generic | np.ndarray) -> np.ndarray:
    """(x - m) / sqrt(v + eps), two-pass statistics in x's dtype (`batchnorm.normalise`); eps
    one value or one per row, shape (..., 1)."""
    return normalise(x, TWO_PASS, eps[..., 0] if np.ndim(eps) else eps)


def power_of_two_scale(x: np.ndarray) -> np.ndarray:
    """s = 2**floor(log2 max|x|) per row where max|x| >= 1, else 1: shape (..., 1), in x's
    dtype. s <= max|x| is a float of the format and x / s lies in (-2, 2). Rows are only scaled
    down: scaling a small row up would make eps / s^2 overflow in float16 (s <= 2**-17) and
    gains nothing, since eps = 1e-5 outweighs a sum of squares small enough to underflow.
    Rows holding an infinity or NaN keep s = 1."""
    peak = np.abs(np.asarray(x, dtype=np.float64)).max(axis=-1, keepdims=True)
    usable = np.isfinite(peak) & (peak >= 1)
    _, e = np.frexp(np.where(usable, peak, 1.0))  # peak in [2**(e-1), 2**e)
    return np.ldexp(1.0, e - 1).astype(x.dtype)


def _prescaled(normalise_row, x: np.ndarray, eps: np.generic) -> np.ndarray:
    """``normalise_row(x / s, eps / s / s)``: divisions by a power of two, exact unless the
    quotient is below the format's normal range (an element or eps / s^2 then rounds)."""
    s = power_of_two_scale(x)
    with np.errstate(under="ignore"):
        return normalise_row(x / s, eps / s / s)


def _float32_statistics(normalise_row, x: np.ndarray) -> np.ndarray:
    """``normalise_row`` on x converted exactly to float32, the result rounded once to x's
    format (float32 -> float16 by numpy, -> bfloat16 / float8 by ml_dtypes 0.7: correct)."""
    if get_format(x.dtype).p > FLOAT32.p:
        raise Unsupported("float32_statistics would round float64 input to float32 first")
    y = normalise_row(x.astype(np.float32), eps_in(FLOAT32, EPS))
    return y.astype(x.dtype)


def layer_in_format(x: np.ndarray) -> np.ndarray:
    """LayerNorm in x's format (two-pass statistics): (B, n) -> (B, n)."""
    return _layer(x, eps_in(x.dtype, EPS))


def layer_float32_statistics(x: np.ndarray) -> np.ndarray:
    """LayerNorm computed in float32, rounded to x's format: (B, n) -> (B, n)."""
    return _float32_statistics(_layer, x)


def layer_prescaled(x: np.ndarray) -> np.ndarray:
    """LayerNorm of x / 2**floor(log2 max|x|) with eps / s^2, in x's format."""
    return _prescaled(_layer, x, eps_in(x.dtype, EPS))


def rms_in_format(x: np.ndarray) -> np.ndarray:
    """RMSNorm in x's format: (B, n) -> (B, n)."""
    return _rms(x, eps_in(x.dtype, EPS))


def rms_float32_statistics(x: np.ndarray) -> np.ndarray:
    """RMSNorm computed in float32, rounded to x's format: (B, n) -> (B, n)."""
    return _float32_statistics(_rms, x)


def rms_prescaled(x: np.ndarray) -> np.ndarray:
    """RMSNorm of x / 2**floor(log2 max|x|) with eps / s^2, in x's format."""
    return _prescaled(_rms, x, eps_in(x.dtype, EPS))


# ---------------------------------------------------------------- bounds


def _eps_error(eps: Fraction, eps_hat: float) -> float:
    """|eps^ - eps| exactly, rounded to float64."""
    return float(abs(Fraction(eps_hat) - eps))


def layer_bound(x: np.ndarray, fmt: Format, *, eps: Fraction, eps_hat: float) -> float:
    """Normwise relative bound of two-pass LayerNorm of one row computed in ``fmt`` with the
    kernel's eps^ for the exact eps: em / max|x - m| + 4u + (dv + |eps^ - eps| + u w) / (2w),
    w = v + eps, em and dv the two-pass statistics' absolute bounds
    (`precision.problems.variance.two_pass_errors`) — `batchnorm.normalise_bound`'s formula
    with eps^ given. NaN for a constant row, a possible overflow, or a bound of 1 or more."""
    q = moments(x)
    errors = two_pass_errors(q, fmt)
    if q.dev_max == 0 or not math.isfinite(errors.var):
        return math.nan
    w = q.S / q.n + float(eps)
    dw = errors.var + _eps_error(eps, eps_hat) + fmt.u * w
    rel = errors.mean / q.dev_max + 4 * fmt.u + dw / (2 * w)
    return rel if rel < 1 else math.nan


def rms_bound(x: np.ndarray, fmt: Format, *, eps: Fraction, eps_hat: float) -> float:
    """Normwise relative bound of RMSNorm of one row computed in ``fmt`` with eps^:

    The mean square ms^ = fl(fl(sum fl(x_i^2)) / fl(n)) has relative error at most
    g = (1 + u)^(d + 2) (1 + eta) - 1, d = ceil(log2 n) (squares, pairwise sum, division, n's
    conversion eta; Higham 2002, (4.6)), plus n * min_subnormal where squares underflow; then
    w^ = fl(ms^ + eps^) errs by dw = g ms + n min_sub + |eps^ - eps| + u w, the square root
    halves it and adds u, the division adds u: rel <= dw / (2w) + 2u, plus a half subnormal
    of output against ||y||_inf = max|x| / sqrt(w). NaN where sum x^2 (1 + g) could pass the
    format's largest value, for a row of zeros, or a bound of 1 or more.
    """
    x64 = np.asarray(x, dtype=np.float64).ravel()
    n, u = x64.size, fmt.u
    top = np.abs(x64).max()
    q = batch_integers(x)
    total = float(Fraction(q.B) * Fraction(2) ** (2 * q.exp))  # sum x^2, correctly rounded
    depth = math.ceil(math.log2(max(n, 2)))
    g = (1 + u) ** (depth + 2) * (1 + count_error(n, fmt)) - 1
    if top == 0 or total * (1 + g) * 1.01 > fmt.max:
        return math.nan
    ms = total / n
    w = ms + float(eps)
    dw = g * ms + n * fmt.min_subnormal + _eps_error(eps, eps_hat) + u * w
    rel = dw / (2 * w) + 2 * u + fmt.min_subnormal * math.sqrt(w) / top
    return rel if rel < 1 else math.nan


def _in_format_bound(row_bound):
    """Bound of the in-format variant: ``row_bound`` with the format's eps^, row by row."""

    def one(x: np.ndarray, fmt: Format) -> float:
        return row_bound(x, fmt, eps=EPS, eps_hat=float(eps_in(fmt, EPS)))

    def bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
        return bound_per_row(one, x, fmt)

    return bound


def _float32_bound(row_bound):
    """Bound of the float32-statistics variant: b in float32, then the output's rounding,
    b + u (1 + b); NaN for float64 (the variant raises Unsupported)."""

    def one(x: np.ndarray, fmt: Format) -> float:
        if fmt.p > FLOAT32.p:
            return math.nan
        b = row_bound(x, FLOAT32, eps=EPS, eps_hat=float(eps_in(FLOAT32, EPS)))
        return b + fmt.u * (1 + b)

    def bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
        return bound_per_row(one, x, fmt)

    return bound


def _prescaled_bound(row_bound):
    """Bound of the prescaled variant: ``row_bound`` of x / s (exact in float64) with eps / s^2
    and the kernel's own eps^ / s / s; NaN where x / s is not exact in the format."""

    def one(x: np.ndarray, fmt: Format) -> float:
        s = float(power_of_two_scale(np.asarray(x))[..., 0])
        scaled = np.asarray(x, dtype=np.float64) / s
        if not np.array_equal(cast(scaled, fmt).astype(np.float64), scaled):
            return math.nan
        eps_hat = eps_in(fmt, EPS)
        with np.errstate(under="ignore"):
            eps_scaled = float(eps_hat / fmt.dtype.type(s) / fmt.dtype.type(s))
        return row_bound(cast(scaled, fmt), fmt, eps=EPS / Fraction(s) ** 2, eps_hat=eps_scaled)

    def bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
        return bound_per_row(one, x, fmt)

    return bound


# ---------------------------------------------------------------- torch


def _torch_layer_norm(torch, t):
    """torch.nn.functional.layer_norm over the last axis, eps = 1e-5, no weight or bias."""
    return torch.nn.functional.layer_norm(t, t.shape[-1:], eps=float(EPS))


def _torch_rms_norm(torch, t):
    """torch.nn.functional.rms_norm over the last axis, eps = 1e-5, no weight."""
    return torch.nn.functional.rms_norm(t, t.shape[-1:], eps=float(EPS))


TORCH_KERNELS = {
    "layer_norm": ("torch.nn.functional.layer_norm", _torch_layer_norm),
    "rms_norm": ("torch.nn.functional.rms_norm", _torch_rms_norm),
}
"""Entries for `precision.problems.frameworks.TORCH_KERNELS` (batch kernels along the last
axis; torch's CPU kernels compute float16 and bfloat16 in float32 and refuse float8)."""


# ---------------------------------------------------------------- problems


def float32_or_wider(fmt: Format) -> str:
    """float32 statistics for float32 and narrower formats (float64 raises Unsupported)."""
    return "float64" if fmt.p > FLOAT32.p else "float32"


def _variants(in_format, float32_statistics, prescaled, row_bound) -> dict[str, Variant]:
    return {
        "in_format": Variant(
            "in_format",
            in_format,
            _in_format_bound(row_bound),
            description="statistics and output in the format, pairwise sums",
            batched=True,
        ),
        "float32_statistics": Variant(
            "float32_statistics",
            float32_statistics,
            _float32_bound(row_bound),
            float32_or_wider,
            description="input upcast exactly, statistics and output in float32, output "
            "rounded to the format",
            batched=True,
        ),
        "prescaled": Variant(
            "prescaled",
            prescaled,
            _prescaled_bound(row_bound),
            description="x / 2**floor(log2 max|x|) normalised with eps / s^2, in the format",
            batched=True,
        ),
    }


LAYER_NORM = Problem(
    name="layer_norm",
    description="LayerNorm (x - mean) / sqrt(var + 1e-5) of each row: in the format, float32 "
    "statistics, prescaled by max|x|",
    reference=layer_norm_reference,
    magnitude=max_magnitude,
    propose=propose_rows,
    estimate=estimate_layer,
    variants=_variants(layer_in_format, layer_float32_statistics, layer_prescaled, layer_bound),
    batched=True,
)

RMS_NORM = Problem(
    name="rms_norm",
    description="RMSNorm x / sqrt(mean(x^2) + 1e-5) of each row: in the format, float32 "
    "statistics, prescaled by max|x|",
    reference=rms_norm_reference,
    magnitude=max_magnitude,
    propose=propose_rows,
    estimate=estimate_rms,
    variants=_variants(rms_in_format, rms_float32_statistics, rms_prescaled, rms_bound),
    batched=True,
)


# ---------------------------------------------------------------- worked example

EXAMPLE_N = 64
"""Row length of the worked example: one large element and 63 of 1/8 (whose squares add < 1)."""


def outlier_example() -> pd.DataFrame:
    """y_0 of RMSNorm of the row [t, 1/8, ..., 1/8] (n = `EXAMPLE_N`) for t = 255.875 and 256,
    exactly (on the float16 row) and by every variant in float16 and bfloat16."""
    rows = []
    for t in (255.875, 256.0):
        x = np.full(EXAMPLE_N, 0.125)
        x[0] = t
        for name in ("float16", "bfloat16"):
            row = cast(x, name)
            exact, _ = rms_norm_reference(row)
            rows.append({"t": t, "variant": "exact", "format": name, "y_0": float(exact[0])})
            for variant in RMS_NORM.variants.values():
                with np.errstate(all="ignore"):
                    y = variant.kernel(row[None])[0, 0]
                rows.append({"t": t, "variant": variant.name, "format": name, "y_0": float(y)})
    table = pd.DataFrame(rows)
    wide = table.pivot(index=["t", "variant"], columns="format", values="y_0")
    order = ["exact", *RMS_NORM.variants]
    wide = wide.reindex(pd.MultiIndex.from_product([(255.875, 256.0), order])).reset_index()
    wide = wide.rename(columns={"level_0": "t", "level_1": "variant"})
    wide.columns.name = None
    return wide[["t", "variant", "float16", "bfloat16"]]


def worked_examples() -> list[tuple[str, str, pd.DataFrame]]:
    """Examples for the study's summary: (title, explanation, table), all computed here."""
    table = outlier_example()
    broken = table[(table["t"] == 256.0) & (table["variant"] == "in_format")]["float16"].iloc[0]
    exact = table[(table["t"] == 256.0) & (table["variant"] == "exact")]["float16"].iloc[0]
    text = (
        f"RMSNorm of a row of {EXAMPLE_N} values, one of them t and the rest 1/8. In float16, "
        "255.875^2 = 65472.02 rounds to 65472 but 256^2 = 65536 is beyond the largest "
        f"float16, 65504: at t = 256 the in-format sum of squares is inf and y_0 = {broken:g} "
        f"where the exact value is {exact:.6g}; every other element is 0 too, with no NaN to "
        "warn. Float32 statistics and pre-scaling by 2^floor(log2 max|x|) keep the sum finite; "
        "bfloat16, whose range reaches 3.4e38, does not overflow."
    )
    shown = table.map(lambda v: f"{v:.6g}" if isinstance(v, float) else v)
    return [("RMSNorm of a row with one element of 256", text, shown)]
