"""Activations: GELU, exact and approximated, and SiLU, elementwise on rows (batch, n).

The question (issue 17): deep-learning code computes GELU(x) = x Phi(x) = x (1 + erf(x/sqrt 2))/2
(Hendrycks & Gimpel, *Gaussian Error Linear Units*, arXiv:1606.08415, 2016) either with erf or
with one of the paper's two approximations,

* ``tanh``: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), maximum absolute error about
  4.7e-4 on [-10, 10] against the exact GELU;
* ``sigmoid``: x sigmoid(1.702 x), about 2e-2;

and a reader needs to see when the approximation, not the format, dominates a row's error. So
every variant of the ``gelu`` problem, the approximations included, is measured against the
EXACT GELU of the input it received: a row's ``rel_error`` is the approximation's error plus the
format's, and the erf variant in the same format shows the format's part alone. The
approximations' own errors on [-10, 10] are measured by tests/problems/test_activations.py.

SiLU(x) = x sigmoid(x) (Elfwing, Uchibe & Doya 2018; "swish" with beta = 1) is a different
function, hence its own problem ``silu`` with its own exact reference.

An input is a row of n values; its output the n activations. Condition number (mixed, matching
the normwise inf-norm relative error of the rows, as for softmax): componentwise relative
perturbations of x, inf-norm relative change of f(x),
kappa = max_i |x_i f'(x_i)| / max_i |f(x_i)|, with f'(x) = Phi(x) + x phi(x) for GELU
(phi the standard normal density) and sigma(x) (1 + x (1 - sigma(x))) for SiLU; kappa = 1 for a
row of zeros (the limit of |x f'(x) / f(x)| at 0). One element at x = -a < -0.75 alone has
kappa ~ a^2 for GELU (Phi(-a) ~ phi(a) / a) and ~ a for SiLU: large kappa needs rows that are
all far below zero, where f is tiny and underflows.

Variants, in the input's format (numpy and ml_dtypes evaluate float16/bfloat16 elementary
functions in float32 and round once, and so does ``erf`` here, which scipy offers only for
float32/float64: `erf_in_format`). The ``accumulator`` column of these variants
(`elementary_precision`) is the precision the elementary functions are evaluated in, float32 for
formats narrower than float32, the format otherwise; there is no reduction.
"""

from __future__ import annotations

import math

import flint
import mpmath
import numpy as np
import scipy.special

from precision.core.formats import Format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant

# ---------------------------------------------------------------- special functions over ctx


def erfc(v: Number, ctx: NumberSystem) -> Number:
    """erfc(v) in ``ctx`` at its working precision: mpmath's ``erfc`` (accurate to the working
    precision, so the truth engine's agreement of two precisions certifies it) or Arb's
    rigorous ``arb.erfc`` ball.

    `NumberSystem` has no erf/erfc. A series written here from exp and sqrt would need its own
    truncation bound added to every Arb ball, and erfc(z) = 1 - erf(z) loses z^2 log2(e) bits
    for z > 0; both libraries already evaluate erfc directly, with their own accuracy
    guarantees, so the reference dispatches on the system's name.

    Raises
    ------
    NotImplementedError
        For a number system other than mpmath and Arb.
    """
    if ctx.name == "mpmath":
        return mpmath.erfc(v)
    if ctx.name == "arb":
        return v.erfc()
    raise NotImplementedError(f"erfc is not available in number system {ctx.name!r}")


def pi(ctx: NumberSystem) -> Number:
    """pi at the working precision of ``ctx`` (mpmath's constant, or Arb's ball)."""
    if ctx.name == "mpmath":
        return +mpmath.pi  # unary plus evaluates the lazy constant at the working precision
    if ctx.name == "arb":
        return flint.arb.pi()
    raise NotImplementedError(f"pi is not available in number system {ctx.name!r}")


def normal_cdf(v: Number, ctx: NumberSystem) -> Number:
    """Phi(v) = erfc(-v / sqrt 2) / 2: relative accuracy for every v (for v << 0 the form
    (1 + erf(v / sqrt 2)) / 2 would cancel to nothing)."""
    return erfc(-v / ctx.sqrt(ctx.exact(2.0)), ctx) / 2


def normal_pdf(v: Number, ctx: NumberSystem) -> Number:
    """phi(v) = exp(-v^2 / 2) / sqrt(2 pi)."""
    return ctx.exp(-(v * v) / 2) / ctx.sqrt(2 * pi(ctx))


def sigmoid(v: Number, ctx: NumberSystem) -> Number:
    """sigma(v) = 1 / (1 + exp(-v)) (no cancellation: both terms of the sum are positive)."""
    return 1 / (1 + ctx.exp(-v))


# ---------------------------------------------------------------- exact references


def mixed_condition(
    values: list, y: list, slopes: list, x: np.ndarray, ctx: NumberSystem
) -> Number:
    """max_i |x_i f'(x_i)| / max_i |f(x_i)| (module docstring); 1 for a row of zeros (decided
    on the input floats, never by comparing numbers of ``ctx``)."""
    if not np.any(np.asarray(x, dtype=np.float64)):
        return ctx.exact(1.0)
    return ctx.max(ctx.abs(s) for s in slopes) / ctx.max(ctx.abs(v) for v in y)


def gelu_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact GELU(x_i) = x_i Phi(x_i) and the mixed condition number, with
    x f'(x) = x (Phi(x) + x phi(x)) (module docstring)."""
    values = ctx.exact_list(x)
    cdf = [normal_cdf(v, ctx) for v in values]
    y = [v * c for v, c in zip(values, cdf, strict=True)]
    slopes = [v * (c + v * normal_pdf(v, ctx)) for v, c in zip(values, cdf, strict=True)]
    return np.array(y, dtype=object), mixed_condition(values, y, slopes, x, ctx)


def silu_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact SiLU(x_i) = x_i sigma(x_i) and the mixed condition number, with
    x f'(x) = x sigma(x) (1 + x sigma(-x)) (sigma(-x) = 1 - sigma(x) without cancellation)."""
    values = ctx.exact_list(x)
    s = [sigmoid(v, ctx) for v in values]
    y = [v * si for v, si in zip(values, s, strict=True)]
    slopes = [v * si * (1 + v * sigmoid(-v, ctx)) for v, si in zip(values, s, strict=True)]
    return np.array(y, dtype=object), mixed_condition(values, y, slopes, x, ctx)


# ---------------------------------------------------------------- float64 estimates


def _per_input(values: np.ndarray) -> float | np.ndarray:
    """A float for one input, the (batch,) array for a batch."""
    return float(values) if np.ndim(values) == 0 else values


def max_abs(X: np.ndarray) -> float | np.ndarray:
    """max_i |x_i| along the last axis (exact)."""
    return _per_input(np.abs(np.asarray(X, dtype=np.float64)).max(axis=-1))


def gelu_log_terms(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log |f(x)|, log |x f'(x)|) of GELU elementwise in float64, in logarithms so that
    neither underflows for x << 0 (log Phi by ``scipy.special.log_ndtr``):
    |x f'| = |f| |1 + x phi(x) / Phi(x)|."""
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(divide="ignore"):  # log 0 = -inf at x = 0: f(0) = 0
        log_cdf = scipy.special.log_ndtr(X)
        log_f = np.log(np.abs(X)) + log_cdf
        ratio = X * np.exp(-0.5 * X * X - 0.5 * math.log(2 * math.pi) - log_cdf)
        return log_f, log_f + np.log(np.abs(1.0 + ratio))


def silu_log_terms(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log |f(x)|, log |x f'(x)|) of SiLU elementwise in float64: log sigma(x) = -log1p(e^-x)
    (``np.logaddexp``), |x f'| = |f| |1 + x sigma(-x)|."""
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(divide="ignore"):  # log 0 = -inf at x = 0
        log_f = np.log(np.abs(X)) - np.logaddexp(0.0, -X)
        return log_f, log_f + np.log(np.abs(1.0 + X * scipy.special.expit(-X)))


def mixed_condition64(log_f: np.ndarray, log_slope: np.ndarray) -> np.ndarray:
    """max_i |x_i f'_i| / max_i |f_i| from logarithms along the last axis; 1 for rows of
    zeros."""
    with np.errstate(invalid="ignore"):  # -inf - (-inf) for a row of zeros, replaced below
        cond = np.exp(log_slope.max(axis=-1) - log_f.max(axis=-1))
    return np.where(np.isneginf(log_f.max(axis=-1)), 1.0, cond)


def estimate_gelu(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa, magnitude) of each row of a batch in float64, used only to pick candidates."""
    return mixed_condition64(*gelu_log_terms(X)), max_abs(X)


def estimate_silu(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa, magnitude) of each row of a batch in float64, used only to pick candidates."""
    return mixed_condition64(*silu_log_terms(X)), max_abs(X)


# ---------------------------------------------------------------- inputs

MINIMUM_DEPTH = 0.76
"""Just beyond GELU's minimum (x = -0.7518): kappa of one element x = -a grows with a from
here (kappa = 0 at the minimum itself)."""

_DEPTHS = np.geomspace(MINIMUM_DEPTH, 1e5, 2000)


def _depth_table(log_terms) -> tuple[np.ndarray, np.ndarray]:
    """(log kappa(-a), a) over `_DEPTHS`, for interpolating the depth that gives a kappa."""
    log_f, log_slope = log_terms(-_DEPTHS)
    return log_slope - log_f, _DEPTHS


def depth_for(cond: np.ndarray, log_terms) -> np.ndarray:
    """a > 0 with kappa(-a) ~ cond for one element (interpolated in log kappa; kappa(-a) is
    increasing for a > 0.76 for GELU and SiLU)."""
    log_kappa, depths = _depth_table(log_terms)
    return np.interp(np.log(cond), log_kappa, depths)


def propose_activation_rows(
    rng: np.random.Generator, *, n: int, magnitude, cond, size: int, log_terms
) -> np.ndarray:
    """Rows (size, n) aimed at max|x_i| ~ magnitude and the mixed kappa ~ cond (floats, or one
    target per candidate, shape (size,)).

    * kappa <= 1.5: x_i uniform on [-M, M] with one element +M: f(M) ~ M dominates both maxima,
      kappa ~ 1 (below 1 only for rows around GELU's minimum, which these also reach for
      M < 1).
    * kappa > 1.5: every element at or below -a, a = `depth_for` (kappa), x_i uniform on
      [-M, -a] with one element -a (it sets both maxima: |f| and |x f'| decrease beyond it) and
      one -M (it sets the magnitude). a is capped at M: kappa beyond kappa(-M) is out of reach.
    """
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))[:, None]
    cond = np.broadcast_to(np.asarray(cond, dtype=np.float64), (size,))[:, None]
    u = rng.random((size, n))
    mixed = magnitude * (2.0 * u - 1.0)
    mixed[:, 0] = magnitude[:, 0]
    depth = np.minimum(depth_for(np.maximum(cond, 1.0), log_terms), magnitude)
    deep = -(depth + (magnitude - depth) * u)
    deep[:, 0] = -depth[:, 0]
    deep[:, -1] = -magnitude[:, 0]
    X = np.where(cond <= 1.5, mixed, deep)
    return rng.permuted(X, axis=1)


def propose_gelu(rng: np.random.Generator, *, n: int, magnitude, cond, size: int) -> np.ndarray:
    """GELU rows aimed at (kappa, magnitude): `propose_activation_rows`."""
    return propose_activation_rows(
        rng, n=n, magnitude=magnitude, cond=cond, size=size, log_terms=gelu_log_terms
    )


def propose_silu(rng: np.random.Generator, *, n: int, magnitude, cond, size: int) -> np.ndarray:
    """SiLU rows aimed at (kappa, magnitude): `propose_activation_rows`."""
    return propose_activation_rows(
        rng, n=n, magnitude=magnitude, cond=cond, size=size, log_terms=silu_log_terms
    )


# ---------------------------------------------------------------- kernels

TANH_SCALE = math.sqrt(2.0 / math.pi)
"""sqrt(2/pi) of the tanh approximation, in float64 (rounded once more to the format)."""
TANH_CUBIC = 0.044715
"""The cubic coefficient of the tanh approximation (Hendrycks & Gimpel 2016)."""
SIGMOID_SCALE = 1.702
"""The slope of the sigmoid approximation x sigma(1.702 x) (Hendrycks & Gimpel 2016)."""


def elementary_precision(fmt: Format) -> str:
    """Where the elementary functions (erf, tanh, exp) of these kernels are evaluated: float32
    for formats narrower than float32 (numpy, ml_dtypes and `erf_in_format` evaluate there and
    round once to the format), the format itself otherwise."""
    return "float32" if fmt.p < 24 else fmt.name


def _constant(X: np.ndarray, value: float):
    """``value`` in the dtype of ``X`` (one rounding from float64, as a library's constant),
    so that no operation promotes to a wider type (ml_dtypes 0.6 promotes bfloat16 with a
    Python float to float32)."""
    return X.dtype.type(value)


def erf_in_format(t: np.ndarray) -> np.ndarray:
    """erf(t) in the dtype of ``t``: scipy's own loop for float32 and float64 (its float32 loop
    gives erf evaluated in float64 rounded once to float32, checked in the tests); for narrower
    formats, which scipy would silently upcast to float64, evaluated in float32 and rounded
    once to the format (ml_dtypes and numpy do the same for their own tanh and exp)."""
    if t.dtype in (np.float32, np.float64):
        return scipy.special.erf(t)
    return scipy.special.erf(t.astype(np.float32)).astype(t.dtype)


def gelu_erf(X: np.ndarray) -> np.ndarray:
    """x (1 + erf(x / sqrt 2)) / 2 in the format, written as PyTorch writes it,
    ``x * 0.5 * (1 + erf(x * M_SQRT1_2))``: x / sqrt 2 by multiplication with the format's
    1/sqrt 2, erf by `erf_in_format`. For x << 0 the sum 1 + erf cancels: its relative error
    grows like u |erf| / (1 + erf) ~ u sqrt(pi) |z| exp(z^2), z = x / sqrt 2 (the rows show it)."""
    X = np.asarray(X)
    e = erf_in_format(X * _constant(X, math.sqrt(0.5)))
    return X * _constant(X, 0.5) * (_constant(X, 1.0) + e)


def gelu_tanh(X: np.ndarray) -> np.ndarray:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in the format, as written (x^3 as
    x * x * x). In float16, x^3 overflows for |x| > 40.3; tanh(+-inf) = +-1 gives x and -0,
    which is GELU(x) rounded to float16 there."""
    X = np.asarray(X)
    with np.errstate(over="ignore"):  # x^3 overflows to inf in float16: tanh(inf) = 1 is right
        inner = X + _constant(X, TANH_CUBIC) * X * X * X
        t = np.tanh(_constant(X, TANH_SCALE) * inner)
    return _constant(X, 0.5) * X * (_constant(X, 1.0) + t)


def gelu_sigmoid(X: np.ndarray) -> np.ndarray:
    """x sigma(1.702 x) = x * (1 / (1 + exp(-1.702 x))) in the format, as written."""
    X = np.asarray(X)
    one = _constant(X, 1.0)
    with np.errstate(over="ignore"):  # exp overflows for x << 0: 1 / inf = 0 is the limit
        return X * (one / (one + np.exp(-(_constant(X, SIGMOID_SCALE) * X))))


def silu_sigmoid(X: np.ndarray) -> np.ndarray:
    """x * (1 / (1 + exp(-x))) in the format, as written (sigmoid, then the product)."""
    X = np.asarray(X)
    one = _constant(X, 1.0)
    with np.errstate(over="ignore"):  # exp overflows for x << 0: 1 / inf = 0 is the limit
        return X * (one / (one + np.exp(-X)))


def silu_divide(X: np.ndarray) -> np.ndarray:
    """x / (1 + exp(-x)) in the format: one rounding fewer than `silu_sigmoid`."""
    X = np.asarray(X)
    with np.errstate(over="ignore"):  # exp overflows for x << 0: x / inf = -0 is the limit
        return X / (_constant(X, 1.0) + np.exp(-X))


# ---------------------------------------------------------------- the problems


def _variant(name: str, kernel, description: str) -> Variant:
    return Variant(name, kernel, None, elementary_precision, description=description, batched=True)


GELU = Problem(
    name="gelu",
    description="GELU x Phi(x) with erf and its tanh and sigmoid approximations, all measured "
    "against the exact GELU",
    reference=gelu_reference,
    magnitude=max_abs,
    propose=propose_gelu,
    estimate=estimate_gelu,
    variants={
        "erf": _variant("erf", gelu_erf, "x * 0.5 * (1 + erf(x / sqrt 2)) in the format"),
        "tanh": _variant(
            "tanh",
            gelu_tanh,
            "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): approximation, max abs error "
            "about 4.7e-4 on [-10, 10]",
        ),
        "sigmoid": _variant(
            "sigmoid", gelu_sigmoid, "x sigmoid(1.702 x): approximation, about 2e-2"
        ),
    },
    extras=lambda X: {"x_max": _per_input(np.asarray(X, dtype=np.float64).max(axis=-1))},
    batched=True,
)

SILU = Problem(
    name="silu",
    description="SiLU x sigmoid(x): with the sigmoid, and as one division",
    reference=silu_reference,
    magnitude=max_abs,
    propose=propose_silu,
    estimate=estimate_silu,
    variants={
        "sigmoid": _variant("sigmoid", silu_sigmoid, "x * (1 / (1 + exp(-x))) in the format"),
        "divide": _variant("divide", silu_divide, "x / (1 + exp(-x)) in the format"),
    },
    extras=lambda X: {"x_max": _per_input(np.asarray(X, dtype=np.float64).max(axis=-1))},
    batched=True,
)
