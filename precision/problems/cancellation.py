"""Catastrophic cancellation: the difference d = a - b of two close numbers.

The input is the pair x = [a, b] as the algorithm received it (rounded to the format). Condition
number kappa = (|a| + |b|) / |a - b| (infinite when a = b), magnitude max(|a|, |b|). The
subtraction itself is exact when a and b have the same sign and b/2 <= a <= 2b (Sterbenz's
lemma; Higham 2002, Thm. 2.5) and otherwise rounds once: relative error at most u. The damage of
cancellation is done before: relative errors of u in a and b (from rounding decimal or
float64 values to the format) become an error of up to u * kappa in a - b, which the rows cannot
see (their ground truth is the difference of the rounded a and b) and `worked_examples`
separates explicitly.

The variant is a batch kernel: a batch of pairs (B, 2) gives (B, 1), one subtraction per row,
and its bound a (B,) array (a pair alone: shape (1,) and a float).

One pair is subtracted as before, in numpy scalars; a batch in arrays. In ml_dtypes' formats
that differs outside the values: in float8 a NaN can come out of a batch with another sign bit
than out of the pair alone (ml_dtypes' float8 array ``a - b`` returns +NaN when only b is NaN,
its scalar ``a - b`` returns b's NaN), and ml_dtypes' scalar arithmetic reports no IEEE flags
where its array loops do. Every value that is not a NaN is the same bit for bit.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd

from precision.core.formats import STUDY_FORMATS, Format, get_format, round_to_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant
from precision.problems.summation import dyadic, exact_decimal, float_abs_sum, float_sum


def difference_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact a - b and kappa = (|a| + |b|) / |a - b| from the floats' integers (inf if a = b)."""
    values = np.asarray(x)
    if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
        a, b = ctx.exact_list(values)  # inf - inf is NaN in both systems
        return np.array([a - b], dtype=object), (ctx.abs(a) + ctx.abs(b)) / ctx.abs(a - b)
    pair = np.array([values[0], -values[1]], dtype=values.dtype)
    man, exp = float_sum(pair)
    abs_man, abs_exp = float_abs_sum(pair)
    d = dyadic(man, exp, ctx)
    cond = dyadic(abs_man, abs_exp, ctx) / ctx.abs(d) if man != 0 else ctx.inf
    return np.array([d], dtype=object), cond


def subtract(x: np.ndarray) -> np.ndarray:
    """``a - b`` in the format, along the last axis: a pair [a, b] gives shape (1,), a batch
    of pairs (B, 2) gives (B, 1), one subtraction per row (numpy scalars for one pair, as
    before; arrays of the B pairs' a and b for a batch)."""
    return np.expand_dims(x[..., 0][()] - x[..., 1][()], -1)


def sterbenz(a, b):
    """Whether a - b is exact by Sterbenz's lemma (same sign, |b|/2 <= |a| <= 2|b|) or because
    an operand is 0 (a - 0 and 0 - b are exact too). A bool for two numbers, a bool array
    elementwise for arrays (float64 comparisons, as Python floats make them)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(over="ignore"):  # 2 |b| may be inf, as for a Python float
        within = (np.abs(b) / 2 <= np.abs(a)) & (np.abs(a) <= 2 * np.abs(b))
    exact = (a == 0) | (b == 0) | (((a < 0) == (b < 0)) & within)
    return bool(exact) if exact.ndim == 0 else exact


def subtract_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """0 where Sterbenz's lemma makes the subtraction exact, else u (one rounding; exact in
    the subnormal range too). NaN when a = b (relative error undefined) or |a| + |b| could
    overflow. A float for one pair, a (B,) array for a batch of pairs (B, 2)."""
    x64 = np.asarray(x, dtype=np.float64)
    a, b = x64[..., 0], x64[..., 1]
    with np.errstate(over="ignore"):  # |a| + |b| may be inf, as for Python floats
        undefined = (a == b) | (np.abs(a) + np.abs(b) > fmt.max)
    bound = np.where(undefined, np.nan, np.where(sterbenz(a, b), 0.0, fmt.u))
    return float(bound) if bound.ndim == 0 else bound


def propose_pairs(
    rng: np.random.Generator, *, n: int, magnitude: float, cond: float, size: int
) -> np.ndarray:
    """Pairs (a, b = t a) with t = (kappa - 1) / (kappa + 1), so that (|a| + |b|) / |a - b| is
    kappa (t in [0, 1): the same sign; t >= 1/2, i.e. kappa >= 3, is Sterbenz's region), plus a
    few pairs of opposite signs (kappa = 1); |a| log-uniform within a factor 2 of magnitude."""
    kappa = np.maximum(cond * 10.0 ** rng.uniform(-0.3, 0.3, size=size), 1.0)
    t = (kappa - 1.0) / (kappa + 1.0)
    t = np.where(rng.random(size) < 0.1, -rng.uniform(0.0, 1.0, size=size), t)
    a = magnitude * 2.0 ** -rng.uniform(0.0, 1.0, size=size) * rng.choice([-1.0, 1.0], size=size)
    pairs = np.stack([a, a * t], axis=1)
    swap = rng.random(size) < 0.5  # either operand may be the larger one
    pairs[swap] = pairs[swap, ::-1]
    return pairs


def estimate_pairs(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa, max(|a|, |b|)) per row in float64 (a - b of floats is exact when it matters)."""
    with np.errstate(divide="ignore"):
        return np.abs(X).sum(axis=1) / np.abs(X[:, 0] - X[:, 1]), np.abs(X).max(axis=1)


CANCELLATION = Problem(
    name="cancellation",
    description="difference a - b of two numbers: exact subtraction versus input rounding",
    reference=difference_reference,
    magnitude=lambda x: float(np.abs(np.asarray(x, dtype=np.float64)).max()),
    propose=propose_pairs,
    estimate=estimate_pairs,
    variants={"subtract": Variant("subtract", subtract, subtract_bound, batched=True)},
    input_shape=lambda n: (2,),
    takes_sizes=False,
)


# ---------------------------------------------------------------- worked examples


def decomposed_difference(a: str, b: str, fmt: Format) -> dict:
    """a - b for decimal literals in ``fmt``: what is computed, the exact difference of the
    decimals, and the relative error split into the rounding of the inputs and the subtraction.
    """
    exact = Fraction(a) - Fraction(b)
    fa, fb = round_to_format(Fraction(a), fmt), round_to_format(Fraction(b), fmt)
    computed = fa - fb
    of_rounded = Fraction(float(fa)) - Fraction(float(fb))
    return {
        "format": fmt.name,
        "a - b": f"{a} - {b}",
        "fl(b)": exact_decimal(float(fb)),
        "computed": exact_decimal(float(computed)),
        "prints as": repr(float(computed)) if fmt.name == "float64" else str(computed),
        "exact (decimals)": exact_decimal(exact),
        "kappa": float((abs(Fraction(a)) + abs(Fraction(b))) / abs(exact)),
        "input rounding rel. error": float(abs(of_rounded - exact) / abs(exact)),
        "subtraction rel. error": float(abs(Fraction(float(computed)) - of_rounded) / abs(exact)),
    }


def gap_sweep(fmt: Format) -> list[dict]:
    """1 - (1 - 10**-k) for k = 1 .. 17: the input-rounding error grows like u * kappa until
    1 - 10**-k rounds to 1 and the difference is 0; the subtraction error stays 0 (Sterbenz)."""
    return [decomposed_difference("1", f"0.{'9' * k}", fmt) for k in range(1, 18, 2)]


def worked_examples() -> list[tuple[str, str, pd.DataFrame]]:
    """Examples for the study's summary: (title, explanation, table), all computed here."""
    claim = pd.DataFrame(
        [decomposed_difference("1.0", "0.9999999999999999", get_format(f)) for f in STUDY_FORMATS]
    )
    f64 = claim[claim["format"] == "float64"].iloc[0]
    zero = ", ".join(claim.loc[claim["computed"] == "0", "format"])
    text = (
        "The tutorial says `1.0 - 0.9999999999999999` may print 0.0. In float64 (Python's "
        "float) it does not: the literal 0.9999999999999999 = 1 - 1e-16 is not a float and "
        f"rounds to {f64['fl(b)']} = 1 - 2**-53, and 1.0 minus that is exact (Sterbenz), "
        f"{f64['computed']}, printed as {f64['prints as']}. It is "
        f"{100 * f64['input rounding rel. error']:.0f}% away from the decimal answer 1e-16, and "
        "all of that error was made by rounding the input (kappa = "
        f"{f64['kappa']:.0e} amplifies the rounding of b); the subtraction added "
        f"{f64['subtraction rel. error']:g}. In formats with less "
        f"precision ({zero}) the literal rounds to 1.0 itself and the difference is 0."
    )
    sweep = pd.DataFrame([row for f in STUDY_FORMATS for row in gap_sweep(get_format(f))])
    sweep_text = (
        "The same split as the gap closes: the subtraction of the rounded inputs is exact "
        "(error 0) throughout, because b/2 <= a <= 2b; the error of the difference is the "
        "rounding of the inputs, up to u * kappa relative, until b rounds to a and the "
        "difference vanishes (relative error 1)."
    )
    return [
        ("Cancellation: 1.0 - 0.9999999999999999", text, claim),
        ("Cancellation: input rounding versus the subtraction", sweep_text, sweep),
    ]
