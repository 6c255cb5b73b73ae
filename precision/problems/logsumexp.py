"""Log-sum-exp, lse(x) = log(sum_i exp(x_i)).

Reference: Blanchard, Higham & Higham, "Accurately computing the log-sum-exp and softmax
functions", IMA J. Numer. Anal. 41(4), 2021 (BHH21). Condition number
kappa_lse = sum_i |x_i| g_i / |lse(x)| with g = softmax(x).
"""

from __future__ import annotations

import numpy as np
import scipy.special

from precision.core.formats import Format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.core.ops import NUMPY, Ops
from precision.problems import logits
from precision.problems.base import Problem, Variant, kernel_error, numpy_sum_accumulator


def logsumexp_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact lse(x) = a + log1p(r) with a = max x, and kappa_lse = sum |x_i| g_i / |lse(x)|."""
    terms = logits.exp_terms(x, ctx)
    y = terms.a + ctx.log1p(terms.r)
    return np.array([y], dtype=object), logsumexp_condition(terms, y, ctx)


def logsumexp_condition(terms: logits.ExpTerms, y: Number, ctx: NumberSystem) -> Number:
    """kappa_lse = S / |y| with S = sum |x_i| g_i = W / s (`logits.Enclosure.weighted`), in
    float64 bounds where ``ctx`` encloses (`logits.enclose`), else in ``ctx``."""
    enclosure = logits.enclose(terms, ctx)
    y_bounds = None if enclosure is None else enclosure.bound(y)
    if y_bounds is not None:
        cond = logsumexp_condition_enclosed(enclosure, y_bounds)
        if cond is not None:
            return cond
    weighted = logits.weighted_abs(terms.x, [ei / terms.s for ei in terms.e], ctx)
    # A ball that contains 0 is not != 0: its cond is inf, and such an output never certifies.
    return weighted / ctx.abs(y) if y != 0 else ctx.inf


def logsumexp_condition_enclosed(enclosure: logits.Enclosure, y_bounds: tuple) -> Number | None:
    """`logsumexp_condition` from float64 bounds (`logits.Enclosure` and bounds of lse(x)),
    or None where they are too wide or |lse(x)| may be 0; for a batch, a list."""
    size = logits.magnitude_interval(*y_bounds)  # NaN where |lse| may be 0: no ball
    (s_lo, s_hi), (_, (w_lo, w_hi)) = enclosure.s, enclosure.weighted()
    return enclosure.ball(
        logits.down(logits.down(w_lo / s_hi) / size[1]),
        logits.up(logits.up(w_hi / s_lo) / size[0]),
    )


def logsumexp_naive(x: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """``log(sum(exp(x)))`` as written, along the last axis: shape (1,) for one input ``(n,)``,
    ``(batch, 1)`` for a batch (rows independent). exp overflows once max(x) > ln(max).

    Written once over an arithmetic ``ops`` (`precision.core.ops`, numpy's by default).
    BHH21: |lse^ - lse| <= u |lse| + (n + 1) u while nothing overflows (`naive_bound`).
    """
    return ops.result(ops.log(ops.sum(ops.exp(ops.values(x)))))


def logsumexp_shifted(x: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """``a + log(sum(exp(x - a)))`` with a = max(x), along the last axis (one input or a
    batch): every term is in (0, 1], no overflow.

    One body for every arithmetic ``ops`` (`precision.core.ops`): numpy's in the format by
    default, or an `Emulator` (every operation and addition rounded: ``shifted_emulated``).
    First-order bound `shifted_bound`, final rounding of a + log(s) included.
    """
    v = ops.values(x)
    a = ops.max(v)
    return ops.result(ops.add(a, ops.log(ops.sum(ops.exp(ops.sub(v, a))))))


def logsumexp_log1p(x: np.ndarray) -> np.ndarray:
    """``a + log1p(sum_{i != k} exp(x_i - a))``, k = argmax: BHH21's Algorithm 2, along the
    last axis (one input or a batch).

    The term exp(x_k - a) = 1 is left out of the sum and added exactly by log1p, which keeps the
    relative accuracy of a small sum (the plain shifted form rounds 1 + s first). Leaving it out
    is a deletion, not a zeroed term: each row's other n - 1 terms are gathered (in order) into
    a row of n - 1, so the sum runs over the same n - 1 terms in the same pairwise tree as
    ``np.sum(np.delete(x, k))`` on that row alone.
    """
    n = x.shape[-1]
    k = np.argmax(x, axis=-1)[..., np.newaxis]  # the first maximum (the first NaN, if any)
    a = np.take_along_axis(x, k, axis=-1)
    rest = x[np.arange(n) != k].reshape(*x.shape[:-1], n - 1)
    return a + np.log1p(np.sum(np.exp(rest - a), axis=-1, keepdims=True))


def logsumexp_scipy(x: np.ndarray) -> np.ndarray:
    """``scipy.special.logsumexp`` as is, along the last axis (one input or a batch), whatever
    it does with the format: for bfloat16 it returned float64 with ml_dtypes 0.6 (an upcast the
    row's compute_dtype shows) and raises a TypeError inside ``numpy.isdtype`` with ml_dtypes
    0.7 (an ``error`` row)."""
    return np.asarray(scipy.special.logsumexp(x, axis=-1, keepdims=True))


def naive_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """BHH21: |lse^ - lse| <= u |lse| + (n + 1) u, written with the kernels' accuracy
    (e_exp, e_log of `kernel_error`; both u in BHH21): e_log |lse| + n u + e_exp, plus
    n * min_subnormal / s for terms that underflow; relative to |lse|. NaN when exp(max x) or
    the sum overflows, or the sum falls below the smallest normal number. Along the last axis:
    a float for one input, a ``(batch,)`` array for a batch."""
    with np.errstate(all="ignore"):  # rows the bound does not apply to are computed, then NaN
        x64 = np.asarray(x, dtype=np.float64)
        y, n = logits.lse64(x64), x64.shape[-1]
        # the sum overflows, or underflows below the normal range
        fails = logits.naive_overflows(x, fmt) | (y < np.log(fmt.min_normal))
        e_exp, e_log = kernel_error("exp", fmt), kernel_error("log", fmt)
        error = e_log * abs(y) + n * fmt.u + e_exp + n * fmt.min_subnormal / np.exp(y)
        bound = error / abs(y)
    return logits.per_input(np.where(fails, np.nan, bound))


def shifted_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """First order, for the shifted and log1p forms (derivation as in BHH21 section 3):
    |lse^ - lse| <= u |lse| + e_log log s + (n - 1) u + e_exp + u sum g_i |x_i - a|
    + n * min_subnormal, with the kernels' accuracy e_exp, e_log (`kernel_error`); relative to
    |lse|. The u |lse| term is the final rounding of a + log(s), which bounds that omit it miss
    (../shared/NUMERICS.md). Along the last axis: a float for one input, a ``(batch,)`` array
    for a batch."""
    with np.errstate(all="ignore"):
        t = logits.shift_terms64(x, fmt)
        y = logits.lse64(np.asarray(x, dtype=np.float64))
        return logits.per_input((logits.shifted_log_sum_error(t, fmt) + t["u"] * abs(y)) / abs(y))


def logsumexp_max_cond(n: int, magnitude: float) -> float:
    """The most `estimate_logsumexp` returns for n logits with max|x| <= M: S <= M and
    lse(x) >= log n + mean(x) >= log n - M (Jensen), so kappa <= M / (log n - M) while
    M < log n (small logits of a long vector cannot bring lse near 0); unbounded otherwise.
    With the float64 allowances `logits.rounding` (S) and `logits.lse_error` (lse64)."""
    floor = np.log(n) - magnitude - logits.lse_error(n, magnitude)
    return magnitude * logits.rounding(n) / floor if floor > 0 else np.inf


@logits.estimate_with(magnitude=logits.row_max_abs, max_cond=logsumexp_max_cond)
def estimate_logsumexp(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """weighted_abs64(X) / |lse64(X)| from one pass of shifted exponentials (the same numbers
    both helpers form), in place."""
    top = X.max(axis=-1, keepdims=True)
    g = X - top
    np.exp(g, out=g)
    s = g.sum(axis=-1, keepdims=True)
    lse = (top + np.log(s))[..., 0]
    g /= s
    g *= np.abs(X)
    return g.sum(axis=-1) / np.abs(lse), logits.row_max_abs(X)


LOGSUMEXP = Problem(
    name="logsumexp",
    description="log-sum-exp log(sum exp(x_i)) of a logit vector",
    reference=logsumexp_reference,
    magnitude=logits.max_abs,
    propose=logits.propose_logits,
    estimate=estimate_logsumexp,
    variants={
        "naive": Variant(
            "naive", logsumexp_naive, naive_bound, numpy_sum_accumulator, batched=True
        ),
        "shifted": Variant(
            "shifted", logsumexp_shifted, shifted_bound, numpy_sum_accumulator, batched=True
        ),
        "log1p": Variant(
            "log1p", logsumexp_log1p, shifted_bound, numpy_sum_accumulator, batched=True
        ),
        "scipy": Variant(
            "scipy", logsumexp_scipy, None, numpy_sum_accumulator, "scipy", batched=True
        ),
    },
    extras=logits.logit_extras,
    batched=True,
    from_logits=lambda x: x,
)
