"""One step of Adam's update from a state (m, v) and a gradient g, elementwise.

Adam (Kingma and Ba, "Adam: a method for stochastic optimization", ICLR 2015, algorithm 1), at
step t with fixed constants (`BETA1`, `BETA2`, `STEP`, `LR`) and eps a parameter of every variant
(the ``eps`` column; PyTorch's default `EPS` = 1e-8 unless a spec gives others):

    M = b1 m + (1 - b1) g,   V = b2 v + (1 - b2) g^2,
    update = lr M / (1 - b1^t) / (sqrt(V / (1 - b2^t)) + eps)

(the step subtracted from the weight; the new state M, V is not part of the output). An input
is the three rows [g; m; v] of shape (3, n) (a batch: (batch, 3, n)), v >= 0; its output is the
update, shape (n,). Magnitude: max(|g_i|, |m_i|), the gradient's scale (v holds squares).

The exact update depends on eps, so eps is a reference parameter (`Problem.reference_params`):
a row is measured against the exact update with its own eps, taken as the shortest decimal of the
float the spec gives (1e-8 is exactly 1/10^8, `exact_eps`), while the kernel computes with that
float rounded to its format.

The question (issue 17): in float16, eps = 1e-8 rounds to 0 (the smallest subnormal is 2^-24,
about 6e-8), so a zero gradient with a zero state gives 0/0; and the second moment loses small
gradients: (1 - b2) g^2 underflows to 0 below a threshold of |g| that tests/problems/test_adam.py
measures in each format (`second_moment_underflow_threshold`).

Variants (batch kernels along the last axis, rows independent), in the order PyTorch's
``torch.optim.Adam`` (single-tensor path) writes the step: ``denom = sqrt(V) / sqrt(1 - b2^t)
+ eps``, ``update = (lr / (1 - b1^t)) * (M / denom)``, with the constants correctly rounded
to float64 (`CONSTANTS`) and then to the format:

- ``in_format``: state, constants and every operation in the input's format (numpy rounds each
  float16 / bfloat16 + - * / sqrt correctly: NUMERICS.md). Bound: `in_format_bound`.
- ``float32_state``: the same operations in float32 (float64 for float64 input: the wider of
  float32 and the format), the inputs converted exactly, the update rounded once to the
  format, as a mixed-precision optimiser that keeps its state in float32 and writes the update
  in the weights' format. Bound: `float32_state_bound`.

Condition number (componentwise relative perturbations |dx_j| <= e |x_j| of g, m, v; the
inf-norm of the update; Higham 2002, section 7.2): kappa = max_i c_i / max_i |u_i| with c_i =
sum_j |du_i / dx_j| |x_j| = (L / d_i) (b1 |m_i| + |g_i| |(1 - b1) - (1 - b2) g_i M_i / (r
sqrt(V_i) d_i)| + b2 v_i |M_i| / (2 r sqrt(V_i) d_i)), L = lr / (1 - b1^t), r = sqrt(1 - b2^t),
d_i = sqrt(V_i) / r + eps (the g and v terms are 0 where V_i = 0, i.e. g_i = v_i = 0). c_i
stays finite where M_i = 0; kappa is infinite when every M_i is 0 (the update is then 0 and no
relative error exists).
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np

from precision.core.formats import Format, cast, get_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant
from precision.problems.summation import _per_input

BETA1 = Fraction(9, 10)
BETA2 = Fraction(999, 1000)
STEP = 10
"""Adam's defaults (Kingma and Ba 2015), at step t = 10: early enough that the bias
corrections (1 - b1^t = 0.651, 1 - b2^t = 0.00996) still matter."""
LR = Fraction(1, 1000)
"""Learning rate: PyTorch's default (fixed)."""
EPS = Fraction(1, 10**8)
"""PyTorch's default eps, the default grid of the ``eps`` parameter (`VARIANTS`)."""

C1 = 1 - BETA1**STEP
C2 = 1 - BETA2**STEP


def _sqrt_to_float(q: Fraction) -> float:
    """sqrt(q) correctly rounded to float64 (mpmath at 200 bits, then one rounding; a tie
    would need sqrt(q) to be a 54-bit number, which 1 - b2^t is not)."""
    with mpmath.workprec(200):
        return float(mpmath.sqrt(mpmath.mpf(q.numerator) / q.denominator))


CONSTANTS = {
    "beta1": float(BETA1),
    "one_minus_beta1": float(1 - BETA1),
    "beta2": float(BETA2),
    "one_minus_beta2": float(1 - BETA2),
    "sqrt_c2": _sqrt_to_float(C2),
    "step_size": float(LR / C1),
}
"""The constants of the kernels, each correctly rounded to float64 (``float(Fraction)`` rounds
once); a kernel rounds them again to its format (at most u + 2^-53 relative in all)."""


# ---------------------------------------------------------------- exact reference


def _rows(x) -> np.ndarray:
    values = np.asarray(x)
    if values.ndim != 2 or values.shape[0] != 3:
        raise ValueError(f"Adam's input is [g; m; v] of shape (3, n), got {values.shape}")
    return values


def check_state(x) -> None:
    """`Problem.check_input`: shape (3, n) and a second moment v >= 0 (its square root)."""
    v = np.asarray(_rows(x)[2], dtype=np.float64)
    if (v < 0).any():
        raise ValueError("Adam's second moment v (third row) must be >= 0")


def _integer(ctx: NumberSystem, n: int) -> Number:
    """The integer n exactly in ``ctx`` (its 52-bit pieces, each an exact float times an exact
    power of two, added; n = 10^30, the denominator of 1 - b2^t, is no float64)."""
    pieces, shift, total = [], 0, ctx.exact(0.0)
    sign, n = (-1 if n < 0 else 1), abs(n)
    while n:
        pieces.append((n & (2**52 - 1), shift))
        n, shift = n >> 52, shift + 52
    for piece, at in pieces:
        total = total + ctx.exact(float(piece)) * ctx.exact(2.0**at)
    return total if sign > 0 else -total


def _ratio(ctx: NumberSystem, q: Fraction) -> Number:
    """The rational q in ``ctx``: exact integers, one division at ``ctx``'s precision."""
    return _integer(ctx, q.numerator) / _integer(ctx, q.denominator)


def _moment_is_zero(g: float, m: float) -> bool:
    """b1 m + (1 - b1) g = 0 exactly, i.e. 9 m + g = 0, decided on rationals."""
    return 9 * Fraction(m) + Fraction(g) == 0


def exact_eps(eps: float) -> Fraction:
    """The eps a spec means by the float ``eps``: its shortest decimal (``repr``), exactly
    (1e-8 is 1/10^8, not the float nearest to it; a power of two is itself)."""
    return Fraction(repr(float(eps)))


def adam_reference(
    x: np.ndarray, ctx: NumberSystem = MPMATH, *, eps: float
) -> tuple[np.ndarray, Number]:
    """Exact update (object array, shape (n,)) and kappa (module docstring) at ``ctx``'s
    precision: b1, b2, lr and eps enter as exact ratios of integers (9/10, 999/1000, 1/1000,
    `exact_eps`), so only ``ctx``'s own roundings remain. Whether V_i and M_i are 0 is decided on
    the input floats (v_i = g_i = 0; 9 m_i + g_i = 0 in rationals), never on balls."""
    values = _rows(x)
    floats = np.asarray(values, dtype=np.float64) if values.dtype != object else None
    g, m, v = (ctx.exact_list(row) for row in values)
    one = ctx.exact(1.0)
    c1, c2 = _ratio(ctx, C1), _ratio(ctx, C2)
    step_size = _ratio(ctx, LR) / c1
    root_c2 = ctx.sqrt(c2)
    eps = _ratio(ctx, exact_eps(eps))
    updates, scaled_conds = [], []
    for i, (gi, mi, vi) in enumerate(zip(g, m, v, strict=True)):
        fg, _, fv = (float(r[i]) for r in (floats if floats is not None else values))
        # integer weights, one division: an M_i that is exactly 0 is an exact 0 (a ball of
        # radius 0), which b1 = 9/10 as a ball of nonzero radius would never certify
        moment = (9 * mi + gi) / 10
        second = (999 * vi + gi * gi) / 1000
        root = ctx.sqrt(second) if (fv != 0 or fg != 0) else ctx.exact(0.0)
        d = root / root_c2 + eps
        updates.append(step_size * moment / d)
        if fv == 0 and fg == 0:  # V = 0: v and g are 0 and so are their terms
            scaled_conds.append(step_size * 9 * ctx.abs(mi) / (10 * d))
            continue
        through_d = moment / (root_c2 * root * d)  # M / (sqrt(c2) sqrt(V) d)
        term_g = ctx.abs(gi) * ctx.abs(one / 10 - through_d * gi / 1000)
        term_v = ctx.abs(through_d) * 999 * vi / 2000
        scaled_conds.append(step_size * (9 * ctx.abs(mi) / 10 + term_g + term_v) / d)
    zero = all(_moment_is_zero(float(a), float(b)) for a, b in zip(*(values[:2]), strict=True))
    if zero:
        return np.array(updates, dtype=object), ctx.inf
    largest = ctx.max(ctx.abs(u) for u in updates)
    return np.array(updates, dtype=object), ctx.max(scaled_conds) / largest


def adam_magnitude(X: np.ndarray) -> float | np.ndarray:
    """max(|g_i|, |m_i|) (exact): a float for one input, (batch,) for a batch."""
    values = np.abs(np.asarray(X, dtype=np.float64)[..., :2, :])
    return _per_input(values.max(axis=(-2, -1)))


def _float64_terms(X: np.ndarray, eps: float = float(EPS)):
    """(update, sum_j |du_i/dx_j| |x_j|, A_i, d_i, sqrt(V_i / c2)) in float64 along a batch
    (..., 3, n), with ``eps``."""
    X = np.asarray(X, dtype=np.float64)
    g, m, v = X[..., 0, :], X[..., 1, :], X[..., 2, :]
    b1, b2 = float(BETA1), float(BETA2)
    root_c2, step_size = CONSTANTS["sqrt_c2"], CONSTANTS["step_size"]
    moment = b1 * m + CONSTANTS["one_minus_beta1"] * g
    second = b2 * v + CONSTANTS["one_minus_beta2"] * g * g
    root = np.sqrt(second)
    d = root / root_c2 + eps
    spread = b1 * np.abs(m) + CONSTANTS["one_minus_beta1"] * np.abs(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        through_d = np.where(second > 0, moment / (root_c2 * root * d), 0.0)
    term_g = np.abs(g) * np.abs(CONSTANTS["one_minus_beta1"] - through_d * g / 1000)
    term_v = np.abs(through_d) * b2 * v / 2
    scaled = step_size * (b1 * np.abs(m) + term_g + term_v) / d
    return step_size * moment / d, scaled, spread, d, root / root_c2


def estimate_adam(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa, magnitude) of each input of a batch (batch, 3, n) in float64 (the formula of
    the module docstring with the default eps; M_i by cancellation loses up to kappa 2^-53
    relative), used only to pick candidates: the same inputs serve every eps."""
    update, scaled, _, _, _ = _float64_terms(X)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = scaled.max(axis=-1) / np.abs(update).max(axis=-1)
    return cond, adam_magnitude(X)


# ---------------------------------------------------------------- inputs


def propose_adam(rng: np.random.Generator, *, n: int, magnitude, cond, size: int) -> np.ndarray:
    """Candidates [g; m; v] of shape (size, 3, n) aimed at max(|g|, |m|) ~ magnitude and
    kappa ~ cond (floats, or arrays of shape (size,)).

    g ~ N(0, 1); v_i = (1 - b2^(t-1)) g_i^2 w_i with w_i log-uniform in [1/4, 4] (the state
    after t - 1 steps of gradients of about this size). For cond < 2, m_i = (1 - b1^(t-1))
    g_i a_i with a_i ~ U(0, 1) (same sign: A_i / |M_i| = 1, kappa in [1, 2)); above, m_i =
    -r_i (1 - b1) / b1 g_i with r_i = (k_i - 1) / (k_i + 1), k_i = (cond - 1/2) U(0.9, 1):
    M_i cancels to (1 - b1) g_i (1 - r_i) and A_i / |M_i| = k_i. g and m are then scaled by
    one power of two s (v by s^2, both exact) to put the magnitude within a factor 2 of its
    target.
    """
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))[:, None]
    cond = np.broadcast_to(np.asarray(cond, dtype=np.float64), (size,))[:, None]
    b1, b2 = float(BETA1), float(BETA2)
    g = rng.standard_normal((size, n))
    v = (1 - b2 ** (STEP - 1)) * g * g * 4.0 ** rng.uniform(-1.0, 1.0, (size, n))
    k = np.maximum(cond - 0.5, 1.0) * rng.uniform(0.9, 1.0, (size, n))
    r = (k - 1) / (k + 1)
    m = np.where(
        cond < 2, (1 - b1 ** (STEP - 1)) * g * rng.uniform(0, 1, (size, n)), -r * (1 - b1) / b1 * g
    )
    peak = np.maximum(np.abs(g), np.abs(m)).max(axis=1, keepdims=True)
    scale = 2.0 ** np.round(np.log2(magnitude / np.where(peak > 0, peak, 1.0)))
    return np.stack([g * scale, m * scale, v * scale * scale], axis=1)


# ---------------------------------------------------------------- kernels


def constant(name: str, fmt: Format) -> np.ndarray:
    """`CONSTANTS`[name] rounded once more, correctly, to ``fmt`` (a 0-d array of its dtype;
    `precision.core.formats.cast`, not ml_dtypes' cast, which may round twice)."""
    return cast(np.asarray(CONSTANTS[name]), fmt)


def eps_in(eps: float, fmt: Format) -> np.ndarray:
    """eps (a float64) rounded once, correctly, to ``fmt``: 1e-8 becomes 0 in float16."""
    return cast(np.asarray(float(eps)), fmt)


def _adam_step(g: np.ndarray, m: np.ndarray, v: np.ndarray, eps: float) -> np.ndarray:
    """The update in the dtype of g, m, v, every constant and eps rounded to it (torch's
    order)."""

    fmt = get_format(g.dtype)

    def c(name: str) -> np.ndarray:
        return eps_in(eps, fmt) if name == "eps" else constant(name, fmt)

    # 0/0 (g = m = v = 0 with eps rounded to 0) and overflow are results: no warnings
    with np.errstate(all="ignore"):
        moment = c("beta1") * m + c("one_minus_beta1") * g
        second = c("beta2") * v + c("one_minus_beta2") * (g * g)
        denom = np.sqrt(second) / c("sqrt_c2") + c("eps")
        return c("step_size") * (moment / denom)


def in_format_adam(X: np.ndarray, *, eps: float) -> np.ndarray:
    """Adam's update with state, constants, eps and operations in the input's format:
    (..., n)."""
    X = np.asarray(X)
    return _adam_step(X[..., 0, :], X[..., 1, :], X[..., 2, :], eps)


def state_dtype(fmt: Format) -> np.dtype:
    """The wider of float32 and the format: where ``float32_state`` computes."""
    return np.dtype(np.float64) if fmt.p > 24 else np.dtype(np.float32)


def float32_state_adam(X: np.ndarray, *, eps: float) -> np.ndarray:
    """Adam's update computed in float32 (float64 for float64 input) from the exactly
    converted inputs, rounded once to the input's format: (..., n)."""
    X = np.asarray(X)
    wide = X.astype(state_dtype(get_format(X.dtype)))
    with np.errstate(over="ignore"):
        return _adam_step(wide[..., 0, :], wide[..., 1, :], wide[..., 2, :], eps).astype(X.dtype)


# ---------------------------------------------------------------- bounds


def grown(k: float, u: float) -> float:
    """(1 + u)^k - 1 (<= gamma_k = k u / (1 - k u), Higham 2002, lemma 3.1)."""
    return float(np.expm1(k * np.log1p(u)))


def eps_rounding(fmt: Format, eps: float = float(EPS)) -> float:
    """|fl(eps) - eps| / eps in the format (eps: `exact_eps`; fl(eps) rounds the float64 eps
    once more): 1 in float16 for eps = 1e-8, which rounds to 0."""
    exact = exact_eps(eps)
    return float(abs(Fraction(float(eps_in(eps, fmt))) - exact) / exact)


def _step_error(X: np.ndarray, fmt: Format, eps: float) -> np.ndarray:
    """Bound on |u^_i - u_i| of `_adam_step` computed in ``fmt`` (shape (..., n)), NaN where
    an intermediate could overflow or the computed denominator is not bounded away from 0.

    Higham's standard model with underflow (2002, section 2.1): fl(x op y) = (x op y)(1 + delta)
    + eta, |delta| <= u, |eta| <= sigma = min_subnormal / 2 for a product or quotient, eta = 0
    for a sum (a sum in the subnormal range is exact) and for sqrt (its result is normal).
    Every constant is rounded twice (float64, then the format: (1 + u)^2). Then:

    * M^: |M^ - M| <= gamma_4 A + 3 sigma, A = b1 |m| + (1 - b1) |g|;
    * V^ = V + h, |h| <= gamma_5 V + 4 sigma (positive terms), so |sqrt(V^) - sqrt(V)| <=
      Delta = min(|h| / sqrt(V), sqrt(|h|)); with the sqrt and the division by fl(sqrt(c2)),
      |s^ - s| <= gamma_4 s + (1 + gamma_4) Delta / r, s = sqrt(V) / r, r = sqrt(1 - b2^t);
    * d^ = (s^ + eps (1 + eta_eps))(1 + delta), eta_eps the rounding of eps (`eps_rounding`):
      |d^ / d - 1| <= b = (|s^ - s| + |eta_eps| eps)(1 + u) / d + u;
    * the division and the product with fl(L), L = lr / (1 - b1^t), add (1 + u)^4 and
      (1 + L) sigma (1 + u)^3 <= 2 sigma. With F = (1 + u)^4 / (1 - b):
      |u^_i - u_i| <= (L / d_i)(err_M F + |M_i| (F - 1)) + 2 sigma (written so that nothing
      cancels).
    """
    u, sigma = fmt.u, fmt.min_subnormal / 2
    update, _, spread, d, s = _float64_terms(X, eps)
    root_c2, step_size = CONSTANTS["sqrt_c2"], CONSTANTS["step_size"]
    moment = np.abs(update) * d / step_size
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        root_v = s * root_c2
        h = grown(5, u) * root_v**2 + 4 * sigma
        delta = np.where(root_v > 0, np.minimum(h / root_v, np.sqrt(h)), np.sqrt(h))
        s_error = grown(4, u) * s + (1 + grown(4, u)) * delta / root_c2
        b = (s_error + eps_rounding(fmt, eps) * float(exact_eps(eps))) * (1 + u) / d + u
        factor = (1 + u) ** 4 / (1 - b)
        m_error = grown(4, u) * spread + 3 * sigma
        error = step_size / d * (m_error * factor + moment * (factor - 1)) + 2 * sigma
    return np.where((b < 1) & _in_range(X, fmt, eps), error, np.nan)


def _in_range(X: np.ndarray, fmt: Format, eps: float) -> np.ndarray:
    """Whether every intermediate of `_adam_step` stays below the format's max, with a factor
    2 of margin for its roundings; shape (..., n)."""
    X = np.asarray(X, dtype=np.float64)
    g, m, v = np.abs(X[..., 0, :]), np.abs(X[..., 1, :]), np.abs(X[..., 2, :])
    update, _, _, d, s = _float64_terms(X, eps)
    largest = np.maximum.reduce([m, g, g * g, v, s, d, np.abs(update) / CONSTANTS["step_size"]])
    return largest <= fmt.max / 2


def _normwise(error: np.ndarray, X: np.ndarray, eps: float) -> float | np.ndarray:
    """max_i error_i / max_i |u_i| over the last axis (NaN where the update is 0)."""
    update = _float64_terms(X, eps)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        largest = np.abs(update).max(axis=-1)
        worst = error.max(axis=-1)  # NaN anywhere makes the bound NaN
        return _per_input(np.where(largest > 0, worst / largest, np.nan))


def in_format_bound(X: np.ndarray, fmt: Format, *, eps: float) -> float | np.ndarray:
    """Normwise relative error bound of `in_format_adam` (`_step_error` in the format); NaN
    where an intermediate could overflow or the denominator is not bounded away from 0 (in
    float16, whose eps is 0, wherever V's own error could reach V)."""
    return _normwise(_step_error(X, fmt, eps), X, eps)


def float32_state_bound(X: np.ndarray, fmt: Format, *, eps: float) -> float | np.ndarray:
    """Bound of `float32_state_adam`: `_step_error` in float32 (float64 for float64), then
    one rounding to the format: |fl(y) - y| <= u |y| + min_subnormal / 2 with |y| <= |u_i| +
    err_i (subnormal results round absolutely); NaN where the update could overflow."""
    wide = get_format(state_dtype(fmt).name)
    error = _step_error(X, wide, eps)
    update = np.abs(_float64_terms(X, eps)[0])
    final = fmt.u * (update + error) + fmt.min_subnormal / 2
    overflow = update * (1 + 2 * fmt.u) >= fmt.max
    return _normwise(np.where(overflow, np.nan, error + final), X, eps)


# ---------------------------------------------------------------- the problem


def float32_or_wider(fmt: Format) -> str:
    return state_dtype(fmt).name


def second_moment_underflow_threshold(fmt_name: str) -> float:
    """The smallest positive |g| of the format for which fl(fl(1 - b2) fl(g g)) is not 0, as
    `in_format_adam` computes the gradient's share of V, found by scanning every positive
    finite value of a 16-bit format (float16, bfloat16), not from a formula. Measured: 5.459e-3
    in float16, 2.151e-19 in bfloat16 (far below the |g| ~ 3e-8 where sqrt(v_hat) reaches eps,
    so there the loss is harmless)."""
    fmt = get_format(fmt_name)
    dtype = fmt.dtype
    bits = np.arange(1, 2**16, dtype=np.uint16) if dtype.itemsize == 2 else None
    if bits is None:
        raise ValueError("scan only 16-bit formats")
    values = bits.view(dtype)
    with np.errstate(invalid="ignore"):  # the NaN bit patterns among the scanned values
        wide = values.astype(np.float64)
    values = values[np.isfinite(wide) & (wide > 0)]
    with np.errstate(under="ignore", over="ignore"):
        share = constant("one_minus_beta2", fmt) * (values * values)
    kept = values.astype(np.float64)[share.astype(np.float64) > 0]
    return float(kept.min())


VARIANTS = {
    "in_format": Variant(
        "in_format",
        in_format_adam,
        in_format_bound,
        description="state, constants and every operation in the format (torch's order)",
        grid={"eps": (float(EPS),)},
        batched=True,
    ),
    "float32_state": Variant(
        "float32_state",
        float32_state_adam,
        float32_state_bound,
        float32_or_wider,
        description="computed in float32 (float64 for float64), update rounded to the format",
        grid={"eps": (float(EPS),)},
        batched=True,
    ),
}

ADAM = Problem(
    name="adam_update",
    description="one step of Adam's update lr m_hat / (sqrt(v_hat) + eps) from [g; m; v]",
    reference=adam_reference,
    magnitude=adam_magnitude,
    magnitude_name="max(|g|,|m|)",
    propose=propose_adam,
    estimate=estimate_adam,
    variants=VARIANTS,
    input_shape=lambda n: (3, n),
    check_input=check_state,
    batched=True,
    reference_params=("eps",),
)
