"""Softmax, g_i = exp(x_i) / sum_j exp(x_j).

Reference: Blanchard, Higham & Higham, IMA J. Numer. Anal. 41(4), 2021 (BHH21). The condition
number used here is the mixed one that matches the normwise error of the rows: relative
componentwise perturbations of x, inf-norm relative change of g,
kappa = max_j g_j (|x_j| + S - 2 |x_j| g_j) / max_j g_j with S = sum_i |x_i| g_i (<= 2 max|x|).
"""

from __future__ import annotations

import numpy as np
import scipy.special

from precision.core.formats import Format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.core.ops import NUMPY, Ops
from precision.problems import logits
from precision.problems.base import Problem, Variant, kernel_error, numpy_sum_accumulator


def softmax_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact softmax and its mixed condition number (module docstring)."""
    terms = logits.exp_terms(x, ctx)
    g = terms.expand([ei / terms.s for ei in terms.e_distinct])
    return logits.object_array(g), softmax_condition(terms, g, ctx)


def softmax_condition(terms: logits.ExpTerms, g: list, ctx: NumberSystem) -> Number:
    """max_j g_j R_j / max_j g_j with the rows R_j of `logits.row_sensitivities`.

    In float64 bounds where ``ctx`` encloses (`logits.enclose`): g_m = 1 / s is the largest
    g_j (e_j <= 1), so the quotient is max_j e_j R_j. Otherwise in ``ctx``.
    """
    enclosure = logits.enclose(terms, ctx)
    cond = None if enclosure is None else softmax_condition_enclosed(enclosure)
    if cond is not None:
        return cond
    sensitivities = logits.row_sensitivities(terms, g, ctx)
    rows = [gj * rj for gj, rj in zip(g, sensitivities, strict=True)]
    return ctx.max(rows) / ctx.max(g)


def softmax_condition_enclosed(enclosure: logits.Enclosure) -> Number | None:
    """`softmax_condition` from float64 bounds (`logits.Enclosure`): max_j e_j R_j, or None
    where the interval is too wide (the caller forms it in its number system); for a batch
    enclosure, a list of them."""
    rows_lo, rows_hi = enclosure.rows()
    return enclosure.ball(
        np.max(logits.down(enclosure.e_lo * rows_lo), axis=-1),
        np.max(logits.up(enclosure.e_hi * rows_hi), axis=-1),
    )


def softmax_condition64(X: np.ndarray) -> np.ndarray:
    """max_j g_j (|x_j| + S - 2 |x_j| g_j) / max_j g_j (module docstring), in float64, in
    place (the operations of that expression, in its order)."""
    g = logits.softmax64(X)
    a = logits.row_sensitivities64(X, g)
    a *= g
    return a.max(axis=-1) / g.max(axis=-1)


def softmax_max_cond(n: int, magnitude: float) -> float:
    """The most `estimate_softmax` returns for n logits with max|x| <= M: kappa <= 2 M, since
    row j is g_j (|x_j| + S - 2 |x_j| g_j) <= g_j (|x_j| + S) <= 2 M g_max (S <= M sum g = M),
    times the float64 rounding allowance (`logits.rounding`)."""
    return 2.0 * magnitude * logits.rounding(n)


@logits.estimate_with(magnitude=logits.row_max_abs, max_cond=softmax_max_cond)
def estimate_softmax(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return softmax_condition64(X), logits.row_max_abs(X)


def softmax_naive(x: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` as written, along the last axis (one input ``(n,)`` or a batch
    ``(batch, n)``, rows independent): nan (inf/inf) once max(x) > ln(max).

    Written once over an arithmetic ``ops`` (`precision.core.ops`): numpy's in the format by
    default (its ``np.sum``), every operation rounded with an `Emulator`. Normwise relative
    error <= (n + 3) u while nothing overflows or underflows (BHH21; `naive_bound`).
    """
    e = ops.exp(ops.values(x))
    return ops.result(ops.div(e, ops.sum(e)))


def softmax_shifted(x: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """``exp(x - a) / sum(exp(x - a))`` with a = max(x), along the last axis (one input or a
    batch): the largest term is exactly 1, so the sum cannot overflow.

    One body for every arithmetic ``ops`` (`precision.core.ops`): numpy's in the format by
    default (``np.sum``: float16 accumulates in float32), or an `Emulator` (every operation
    and every addition of the sum, left to right, rounded to the format: the
    ``shifted_emulated`` variant). Normwise relative error <= (n + 2 + 2 (max x - min x)) u
    to first order (BHH21; `shifted_bound`).
    """
    v = ops.values(x)
    e = ops.exp(ops.sub(v, ops.max(v)))
    return ops.result(ops.div(e, ops.sum(e)))


def softmax_scipy(x: np.ndarray) -> np.ndarray:
    """``scipy.special.softmax`` as is, along the last axis (one input or a batch)."""
    return scipy.special.softmax(x, axis=-1)


def naive_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """Normwise (n + 3) u (BHH21), written with the exp kernel's accuracy e_exp as
    (n + 1) u + 2 e_exp, plus what underflow of the terms and of the quotients can lose; NaN
    when exp(max x) or the sum overflows, or the sum underflows below min normal. Along the
    last axis: a float for one input, a ``(batch,)`` array for a batch."""
    with np.errstate(all="ignore"):  # rows the bound does not apply to are computed, then NaN
        x64 = np.asarray(x, dtype=np.float64)
        s = np.exp(logits.lse64(x64))
        t = logits.shift_terms64(x, fmt)
        underflow = (t["sub"] / s + fmt.min_subnormal) / t["gmax"]
        bound = (t["n"] + 1) * fmt.u + 2 * kernel_error("exp", fmt) + underflow
        fails = logits.naive_overflows(x, fmt) | (s < fmt.min_normal)
    return logits.per_input(np.where(fails, np.nan, bound))


def shifted_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """Normwise (n + 2 + 2 (max x - min x)) u (BHH21), written with the exp kernel's accuracy
    as (n + 2 (max x - min x)) u + 2 e_exp, plus underflow of terms and quotients. Along the
    last axis: a float for one input, a ``(batch,)`` array for a batch."""
    with np.errstate(all="ignore"):
        t = logits.shift_terms64(x, fmt)
        underflow = (t["sub"] + fmt.min_subnormal) / t["gmax"]
        e_exp = kernel_error("exp", fmt)
        bound = (t["n"] + 2 * t["zmax"]) * fmt.u + 2 * e_exp + underflow
    # gmax >= 1/n or NaN: never 0 (a zero would have been a ZeroDivisionError, a NaN row).
    return logits.per_input(np.where(t["gmax"] == 0, np.nan, bound))


SOFTMAX = Problem(
    name="softmax",
    description="softmax exp(x_i) / sum_j exp(x_j) of a logit vector",
    reference=softmax_reference,
    magnitude=logits.max_abs,
    propose=logits.propose_logits,
    estimate=estimate_softmax,
    variants={
        "naive": Variant("naive", softmax_naive, naive_bound, numpy_sum_accumulator, batched=True),
        "shifted": Variant(
            "shifted", softmax_shifted, shifted_bound, numpy_sum_accumulator, batched=True
        ),
        "scipy": Variant(
            "scipy", softmax_scipy, shifted_bound, numpy_sum_accumulator, "scipy", batched=True
        ),
    },
    extras=logits.logit_extras,
    batched=True,
    from_logits=lambda x: x,
)
