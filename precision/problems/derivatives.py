"""Finite-difference derivatives: the V curve of error versus step size h.

For a smooth f, the forward difference (f(x + h) - f(x)) / h has truncation error
(h / 2) |f''(x)| and rounding error about 2 u |f(x)| / h (two roundings of f, one of x + h adds
u |x| |f'(x)| / h); their sum is smallest near h* = 2 sqrt(u |f| / |f''|). The central difference
(f(x + h) - f(x - h)) / (2 h) has truncation (h^2 / 6) |f'''| and rounding about u |f| / h, least
near h* = (3 u |f| / |f'''|)^(1/3). On a log-log plot of relative error versus h, the rounding
branch has slope -1 and the truncation branch +1 (forward) or +2 (central) (Nocedal & Wright,
*Numerical Optimization*, 2nd ed. 2006, sec. 8.1; Higham 2002, sec. 1.14). For exp, where
f = f' = f'' = f''', the optima are the textbook 2 sqrt(u) and (3 u)^(1/3).

How h enters the framework: one variant family per method, ``forward`` and ``central``, with
the step as its parameter ``h`` (`sweep_variants`), by default h = 2**-k for k = 1..40 (exact
in every format down to its smallest subnormal; a step below that is 0 and the quotient is
NaN, reported as such). A spec may give other steps (``[params.fd_exp] h = [...]``). The
table's ``variant`` column holds the method and its ``h`` column the step, by which it is
grouped (format, variant, h) and the V fitted per format.

The variants are batch kernels (`precision.problems.base.Variant` with ``batched=True``): one
input of shape (1,) gives shape (1,), a batch of shape (B, 1) gives (B, 1), every row with the
operations, order and dtype it meets alone (the functions are elementwise, and the network's
sum over its four data points runs along the last axis).

Three scalar functions (inputs of shape (1,)): ``fd_exp``; ``fd_softplus``,
softplus(x) = log(1 + e^x) with f' = sigmoid; and ``fd_network``, the loss of a one-unit
network L(w) = mean_i softplus(-t_i a tanh(w z_i)) on four fixed data points, as a function
of its weight w. Their exact derivatives are the analytic ones evaluated in the reference
`precision.core.numbers.NumberSystem`. Condition number: that of the derivative map,
|x f''(x) / f'(x)| (relative change of f' per relative change of x); magnitude |x|.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import mpmath
import numpy as np
import pandas as pd

from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant

STEP_EXPONENTS = tuple(range(1, 41))
"""k of the steps h = 2**-k of the sweep: 0.5 down to 9.1e-13, past float64's forward optimum
(2**-26) far enough to measure its rounding branch."""


# ---------------------------------------------------------------- the test functions, in format


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x, in the input's dtype,
    elementwise (any shape)."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


NETWORK_Z = (0.5, -1.25, 2.0, 0.75)
NETWORK_T = (1.0, 1.0, -1.0, 1.0)
NETWORK_A = 2.0
"""Data (inputs z_i, labels t_i) and output weight a of the one-unit network; all exact in
every format, so the loss is the same function whichever format evaluates it."""


def network_loss(w: np.ndarray) -> np.ndarray:
    """L(w) = mean_i softplus(-t_i a tanh(w z_i)), in the dtype of ``w``: one weight of shape
    (1,) gives shape (1,), a batch (B, 1) gives (B, 1). The four terms of a row are summed along
    the last axis of w * z (shape (4,) or (B, 4), C-contiguous), which numpy reduces row by row
    as it reduces one vector (float16 pairwise in a float32 accumulator, bfloat16 and float8
    left to right in the format), then divided by 4."""
    z = np.array(NETWORK_Z, dtype=w.dtype)
    margin = np.array(NETWORK_T, dtype=w.dtype) * w.dtype.type(NETWORK_A) * np.tanh(w * z)
    terms = softplus(-margin)
    return np.sum(terms, axis=-1, keepdims=True) / w.dtype.type(len(NETWORK_Z))


FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "softplus": softplus,
    "network": network_loss,
}


def forward_difference(f, x: np.ndarray, h: float) -> np.ndarray:
    """(f(x + h) - f(x)) / h, every operation in the dtype of ``x``; elementwise, so one input
    (1,) or a batch (B, 1) alike."""
    step = x.dtype.type(h)
    return (f(x + step) - f(x)) / step


def central_difference(f, x: np.ndarray, h: float) -> np.ndarray:
    """(f(x + h) - f(x - h)) / (2 h), every operation in the dtype of ``x``; one input (1,) or a
    batch (B, 1) alike."""
    step = x.dtype.type(h)
    return (f(x + step) - f(x - step)) / (x.dtype.type(2) * step)


# ---------------------------------------------------------------- exact derivatives


def _sigmoid(v: Number, ctx: NumberSystem) -> Number:
    return 1 / (1 + ctx.exp(-v))


def exp_derivatives(x: Number, ctx: NumberSystem) -> tuple[Number, Number]:
    """(f'(x), f''(x)) of exp."""
    e = ctx.exp(x)
    return e, e


def softplus_derivatives(x: Number, ctx: NumberSystem) -> tuple[Number, Number]:
    """softplus' = sigmoid(x), softplus'' = sigmoid(x) sigmoid(-x)."""
    return _sigmoid(x, ctx), _sigmoid(x, ctx) * _sigmoid(-x, ctx)


def network_derivatives(w: Number, ctx: NumberSystem) -> tuple[Number, Number]:
    """(L'(w), L''(w)) of `network_loss`. With v_i = w z_i, th = tanh v_i, s2 = sech^2 v_i,
    m_i = -t_i a th: L' = mean sigmoid(m_i) (-t_i a) s2 z_i and
    L'' = mean [sigmoid(m_i) sigmoid(-m_i) (t_i a s2 z_i)^2 + sigmoid(m_i) t_i a 2 s2 th z_i^2].
    sech^2 is 4 e^(2v) / (e^(2v) + 1)^2, without the cancellation of 1 - tanh^2."""
    first, second = ctx.exact(0.0), ctx.exact(0.0)
    for z, t in zip(NETWORK_Z, NETWORK_T, strict=True):
        e2 = ctx.exp(2 * w * ctx.exact(z))
        th = 1 - 2 / (e2 + 1)
        s2 = 4 * e2 / ((e2 + 1) * (e2 + 1))
        ta = ctx.exact(t * NETWORK_A)
        m = -ta * th
        g = _sigmoid(m, ctx)
        first = first + g * (-ta) * s2 * z
        second = second + g * _sigmoid(-m, ctx) * (ta * s2 * z) ** 2 + g * ta * 2 * s2 * th * z * z
    count = ctx.exact(float(len(NETWORK_Z)))
    return first / count, second / count


def derivative_reference(derivatives) -> Callable:
    """``reference(x, ctx)``: the exact f'(x) and the condition number |x f''(x) / f'(x)|."""

    def reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
        (v,) = ctx.exact_list(x)
        first, second = derivatives(v, ctx)
        return np.array([first], dtype=object), ctx.abs(v * second / first)

    return reference


# ---------------------------------------------------------------- float64 estimates for sampling


def _derivatives64(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f', f'') in float64 for a batch of scalars (candidate selection only)."""
    if name == "exp":
        return np.exp(x), np.exp(x)
    if name == "softplus":
        s = 1 / (1 + np.exp(-x))
        return s, s * (1 - s)
    z, t = np.array(NETWORK_Z), np.array(NETWORK_T) * NETWORK_A
    th = np.tanh(np.outer(x, z))
    s2 = 1 - th * th
    m = -t * th
    g = 1 / (1 + np.exp(-m))
    first = np.mean(g * (-t) * s2 * z, axis=1)
    second = np.mean(g * (1 - g) * (t * s2 * z) ** 2 + g * t * 2 * s2 * th * z * z, axis=1)
    return first, second


def propose_points(rng, *, n: int, magnitude: float, cond: float, size: int) -> np.ndarray:
    """Points of either sign with |x| near ``magnitude`` (the condition number follows)."""
    sign = rng.choice([-1.0, 1.0], size=(size, 1))
    return sign * magnitude * 10.0 ** rng.uniform(-0.5, 0.5, size=(size, 1))


def estimator(name: str):
    def estimate(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = X[:, 0]
        first, second = _derivatives64(name, x)
        return np.abs(x * second / first), np.abs(x)

    return estimate


# ---------------------------------------------------------------- problems


STEPS = tuple(2.0**-k for k in STEP_EXPONENTS)
"""The default grid of h: 2**-k for every k of `STEP_EXPONENTS`."""


def sweep_variants(f) -> dict[str, Variant]:
    """The families ``forward`` and ``central``, parameter ``h`` (default grid `STEPS`); batch
    kernels ``kernel(X, h=...)`` (module docstring)."""
    return {
        method: Variant(
            method,
            functools.partial(_difference_kernel, difference, f),
            description=f"{method} difference with step h",
            grid={"h": STEPS},
            batched=True,
        )
        for method, difference in (("forward", forward_difference), ("central", central_difference))
    }


def _difference_kernel(difference, f, x: np.ndarray, *, h: float) -> np.ndarray:
    """``difference(f, x, h)`` with h as the keyword a family's kernel takes."""
    return difference(f, x, h)


def _scalar_problem(name: str, derivatives, description: str) -> Problem:
    return Problem(
        name=f"fd_{name}",
        description=description,
        reference=derivative_reference(derivatives),
        magnitude=lambda x: float(np.abs(np.asarray(x, dtype=np.float64)).max()),
        propose=propose_points,
        estimate=estimator(name),
        variants=sweep_variants(FUNCTIONS[name]),
        input_shape=lambda n: (1,),
        takes_sizes=False,
    )


FD_EXP = _scalar_problem("exp", exp_derivatives, "d/dx exp(x) by finite differences, h sweep")
FD_SOFTPLUS = _scalar_problem(
    "softplus", softplus_derivatives, "d/dx softplus(x) by finite differences, h sweep"
)
FD_NETWORK = _scalar_problem(
    "network", network_derivatives, "dL/dw of a one-unit network's loss, h sweep"
)


def theoretical_optimum(method: str, u: float) -> float:
    """The step minimising the textbook error bound for f = exp (where f = f' = f'' = f'''):
    2 sqrt(u) for the forward difference, (3 u)^(1/3) for the central one (module docstring)."""
    if method == "forward":
        return 2.0 * np.sqrt(u)
    if method == "central":
        return (3.0 * u) ** (1.0 / 3.0)
    raise ValueError(f"theoretical_optimum: unknown method {method!r}")


# ---------------------------------------------------------------- fitting the V


class VFit(NamedTuple):
    """A V curve's two branches fitted in log2-log2 and its measured optimum.

    Attributes
    ----------
    slope_rounding, slope_truncation : float
        Fitted slopes of log2 error against log2 h (theory: -1; +1 forward, +2 central).
    argmin : float
        The step of the smallest median error.
    crossing : float
        The step where the two fitted lines cross (the optimum of the fitted model).
    points : tuple of int
        How many steps each fit used (rounding, truncation).
    """

    slope_rounding: float
    slope_truncation: float
    argmin: float
    crossing: float
    points: tuple[int, int]


def fit_v_curve(curve: pd.Series, optimum: float) -> VFit:
    """Fit the branches of a V curve (median relative error indexed by h) around a theoretical
    ``optimum``: the rounding branch on optimum * 2**-12 <= h <= optimum / 4 with error below
    0.1 (before x + h == x saturates it at 1), the truncation branch on
    4 optimum <= h <= 1/8 (where the Taylor remainder's leading term dominates). A branch with
    fewer than two points gives NaN slopes and crossing."""
    h, err = curve.index.to_numpy(dtype=float), curve.to_numpy(dtype=float)
    rounding = (h <= optimum / 4) & (h >= optimum * 2.0**-12) & (err < 0.1) & (err > 0)
    truncation = (h >= 4 * optimum) & (h <= 0.125) & (err > 0)
    points = (int(rounding.sum()), int(truncation.sum()))
    if min(points) < 2:
        nan = float("nan")
        return VFit(nan, nan, float(curve.idxmin()), nan, points)
    s_r, a_r = np.polyfit(np.log2(h[rounding]), np.log2(err[rounding]), 1)
    s_t, a_t = np.polyfit(np.log2(h[truncation]), np.log2(err[truncation]), 1)
    crossing = 2.0 ** ((a_r - a_t) / (s_t - s_r))
    return VFit(float(s_r), float(s_t), float(curve.idxmin()), float(crossing), points)


def v_curve_example(*, points: int = 16) -> pd.DataFrame:
    """The V of d/dx exp(x) at ``points`` fixed x in [0.1, 1] per format and method: median
    relative error against the exact exp(x) (mpmath, 60 digits) at each step, fitted by
    `fit_v_curve`, next to the textbook optimum."""
    from precision.core.formats import STUDY_FORMATS, cast, get_format

    x64 = np.geomspace(0.1, 1.0, points)
    rows = []
    for fmt in STUDY_FORMATS:
        xs = cast(x64, fmt)
        with mpmath.workdps(60):
            exact = np.array([float(mpmath.exp(mpmath.mpf(float(v)))) for v in xs])
        for method, difference in (
            ("forward", forward_difference),
            ("central", central_difference),
        ):
            curve = {}
            for k in STEP_EXPONENTS:
                with np.errstate(all="ignore"):
                    y = np.array(
                        [
                            float(difference(np.exp, xs[i : i + 1], 2.0**-k)[0])
                            for i in range(points)
                        ]
                    )
                curve[2.0**-k] = float(np.median(np.abs(y - exact) / exact))
            theory = theoretical_optimum(method, get_format(fmt).u)
            fit = fit_v_curve(pd.Series(curve).sort_index(), theory)
            rows.append(
                {
                    "format": fmt,
                    "method": method,
                    "theory_h": theory,
                    "argmin_h": fit.argmin,
                    "crossing_h": fit.crossing,
                    "slope_rounding": fit.slope_rounding,
                    "slope_truncation": fit.slope_truncation,
                    "min_error": min(curve.values()),
                }
            )
    return pd.DataFrame(rows)


def worked_examples() -> list[tuple[str, str, pd.DataFrame]]:
    table = v_curve_example()
    text = (
        "d/dx exp(x) at 16 points of [0.1, 1] by forward and central differences with h = 2^-k, "
        "k = 1..40: the median relative error over the points at each h, its two branches fitted "
        "in log-log (theory: slope -1 where rounding dominates, +1 forward / +2 central where "
        "truncation does) and the measured optimum (argmin of the medians, and where the fitted "
        "lines cross) next to the textbook 2 sqrt(u) and (3u)^(1/3). In float16 and bfloat16 "
        "the branches are too short to fit (NaN): the optimum lies at h = 2^-3 to 2^-5."
    )
    shown = table.map(lambda v: f"{v:.3g}" if isinstance(v, float) else v)
    return [("The V curve of finite differences", text, shown)]
