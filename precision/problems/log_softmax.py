"""log_softmax, y_i = x_i - lse(x) = log(softmax(x)_i).

Condition number (mixed: componentwise relative perturbations of x, inf-norm relative change
of y): dy_j/dx_i = delta_ij - g_i, so kappa = max_j (|x_j| + S - 2 |x_j| g_j) / max_j |y_j|
with g = softmax(x) and S = sum_i |x_i| g_i.
"""

from __future__ import annotations

import numpy as np

from precision.core.formats import Format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.core.ops import NUMPY, Ops
from precision.problems import logits
from precision.problems.base import Problem, Variant, kernel_error, numpy_sum_accumulator
from precision.problems.softmax import softmax_naive


def log_softmax_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact log_softmax (x_i - a) - log1p(r) and its mixed condition number."""
    terms = logits.exp_terms(x, ctx)
    log_s = ctx.log1p(terms.r)
    y = terms.expand([zi - log_s for zi in terms.z_distinct])
    return logits.object_array(y), log_softmax_condition(terms, log_s, y, ctx)


def log_softmax_condition(
    terms: logits.ExpTerms, log_s: Number, y: list, ctx: NumberSystem
) -> Number:
    """max_j R_j / max_j |y_j| with the rows R_j of `logits.row_sensitivities`.

    In float64 bounds where ``ctx`` encloses (`logits.enclose`): every y_j <= 0, so
    max_j |y_j| = (a - min x) + log1p(r). Otherwise in ``ctx``; a largest |y_j| whose ball
    contains 0 gives inf (such an output never certifies).
    """
    enclosure = logits.enclose(terms, ctx)
    log_s_bounds = None if enclosure is None else enclosure.bound(log_s)
    if log_s_bounds is not None:
        cond = log_softmax_condition_enclosed(enclosure, terms.floats, log_s_bounds)
        if cond is not None:
            return cond
    g = [ei / terms.s for ei in terms.e]
    rows = logits.row_sensitivities(terms, g, ctx)
    top = ctx.max(ctx.abs(v) for v in y)
    return ctx.max(rows) / top if top != 0 else ctx.inf


def log_softmax_condition_enclosed(
    enclosure: logits.Enclosure, floats: np.ndarray, log_s_bounds: tuple
) -> Number | None:
    """`log_softmax_condition` from float64 bounds (`logits.Enclosure`, the logits ``floats``
    and bounds of log1p(r)), or None where they are too wide: every y_j <= 0, so
    max_j |y_j| = (a - min x) + log1p(r). For a batch enclosure (bounds as arrays), a list."""
    spread = enclosure.at_m(floats) - floats.min(axis=-1)  # a - min x >= 0, rounded once
    top_lo = logits.down(logits.down(spread) + log_s_bounds[0])
    top_hi = logits.up(logits.up(spread) + log_s_bounds[1])
    top_lo = np.where(top_lo > 0, top_lo, np.nan)  # 0 < max|y_j| unproved: no bound (None)
    rows_lo, rows_hi = enclosure.rows()
    return enclosure.ball(
        logits.down(np.max(rows_lo, axis=-1) / top_hi),
        logits.up(np.max(rows_hi, axis=-1) / top_lo),
    )


def log_softmax_condition64(X: np.ndarray) -> np.ndarray:
    """max_j (|x_j| + S - 2 |x_j| g_j) / max_j |y_j| (module docstring), in float64, in place:
    softmax64 and lse64 at once (the same shifted exponentials and sum)."""
    top = X.max(axis=-1, keepdims=True)
    g = X - top
    np.exp(g, out=g)
    s = g.sum(axis=-1, keepdims=True)
    g /= s
    a = logits.row_sensitivities64(X, g)
    y = X - (top + np.log(s))
    np.abs(y, out=y)
    return a.max(axis=-1) / y.max(axis=-1)


def log_softmax_max_cond(n: int, magnitude: float) -> float:
    """The most `estimate_log_softmax` returns for n logits with max|x| <= M: row j is at most
    |x_j| + S <= 2 M, and max_j |y_j| = lse(x) - min x = -log g_min >= log n (g_min <= 1/n),
    so kappa <= 2 M / log n; with the float64 allowances `logits.rounding` (the rows) and
    `logits.lse_error` (y_j = x_j - lse64, then rounded once more). Unbounded for n = 1."""
    floor = np.log(n) * (1 - 2.0**-50) - logits.lse_error(n, magnitude)
    return 2.0 * magnitude * logits.rounding(n) / floor if floor > 0 else np.inf


@logits.estimate_with(magnitude=logits.row_max_abs, max_cond=log_softmax_max_cond)
def estimate_log_softmax(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return log_softmax_condition64(X), logits.row_max_abs(X)


def log_softmax_naive(x: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """``log(softmax(x))`` with the naive softmax, along the last axis (one input ``(n,)`` or a
    batch ``(batch, n)``, rows independent): -inf where a term underflows, nan on overflow.

    Written once over an arithmetic ``ops`` (`precision.core.ops`, numpy's by default); the
    softmax's result is taken back into ``ops``' values (exact: it holds values of the
    format). Error: `naive_bound`.
    """
    return ops.result(ops.log(ops.values(softmax_naive(x, ops=ops))))


def log_softmax_shifted(x: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """``x - a - log(sum(exp(x - a)))``, along the last axis (one input or a batch): the stable
    form used by PyTorch and TensorFlow.

    One body for every arithmetic ``ops`` (`precision.core.ops`): numpy's in the format by
    default, or an `Emulator` (every operation and addition rounded: ``shifted_emulated``).
    First order |y^_j - y_j| <= u (|z_j| + |y_j|) + the error of log(sum(exp(z)))
    (`shifted_bound`).
    """
    v = ops.values(x)
    z = ops.sub(v, ops.max(v))
    return ops.result(ops.sub(z, ops.log(ops.sum(ops.exp(z)))))


def naive_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """Componentwise naive-softmax error n u + 2 e_exp carried through log, plus e_log |y_j|:
    normwise (n u + 2 e_exp) / ||y|| + e_log ((n + 2) u / ||y|| + u when the kernels round
    correctly). NaN when the naive softmax overflows, or any term exp(x_j) or quotient g_j is
    below the smallest normal number (its log then loses everything). Along the last axis: a
    float for one input, a ``(batch,)`` array for a batch."""
    with np.errstate(all="ignore"):  # rows the bound does not apply to are computed, then NaN
        t = logits.shift_terms64(x, fmt)
        x64 = np.asarray(x, dtype=np.float64)
        exp_min = np.exp(x64.min(axis=-1))
        # min(gmin, exp_min) as Python's min takes it (the first unless the second is smaller)
        smallest = np.where(exp_min < t["gmin"], exp_min, t["gmin"])
        # a term exp(x_j) or a quotient g_j is subnormal: its log is lost
        fails = logits.naive_overflows(x, fmt) | (smallest < fmt.min_normal)
        y = x64 - logits.lse64(x64)[..., np.newaxis]
        e_exp, e_log = kernel_error("exp", fmt), kernel_error("log", fmt)
        bound = (t["n"] * fmt.u + 2 * e_exp) / np.abs(y).max(axis=-1) + e_log
    return logits.per_input(np.where(fails, np.nan, bound))


def shifted_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """First order (derived like BHH21's shifted lse): |y^_j - y_j| <= u (|z_j| + |y_j|) plus
    the error of log(sum(exp(z))) (`logits.shifted_log_sum_error`), z = x - max x; normwise
    relative. Along the last axis: a float for one input, a ``(batch,)`` array for a batch."""
    with np.errstate(all="ignore"):
        t = logits.shift_terms64(x, fmt)
        x64 = np.asarray(x, dtype=np.float64)
        y = x64 - logits.lse64(x64)[..., np.newaxis]
        worst = np.max(np.abs(x64 - x64.max(axis=-1, keepdims=True)) + np.abs(y), axis=-1)
        error = t["u"] * worst + logits.shifted_log_sum_error(t, fmt)
        return logits.per_input(error / np.abs(y).max(axis=-1))


LOG_SOFTMAX = Problem(
    name="log_softmax",
    description="log_softmax x_i - log(sum_j exp(x_j)) of a logit vector",
    reference=log_softmax_reference,
    magnitude=logits.max_abs,
    propose=logits.propose_logits,
    estimate=estimate_log_softmax,
    variants={
        "naive": Variant(
            "naive", log_softmax_naive, naive_bound, numpy_sum_accumulator, batched=True
        ),
        "shifted": Variant(
            "shifted", log_softmax_shifted, shifted_bound, numpy_sum_accumulator, batched=True
        ),
    },
    extras=logits.logit_extras,
    batched=True,
    from_logits=lambda x: x,
)
