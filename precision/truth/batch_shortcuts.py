"""Exact shortcuts over a whole batch: the exact sums of every input formed in one set of
array operations, then each input's replay of Arb's roundings in Python's integers.

`precision.truth.shortcuts` forms the exact integers of one input with a few dozen numpy
calls on arrays of n or 2n floats, so at n = 1000 and below numpy's fixed cost per call
weighs on each input's certification. Here the terms of a block of inputs are formed at once
(a dot product's exact products or TwoProduct pairs, a sum's terms) in a ``(rows, width)``
array with their signs, and extracted row by row, each row on its own sigma
(`shortcuts.extract_row_sums_in_place`: exact for every row, whatever the others hold, and
the sum of magnitudes from the same passes). Only each input's few integers meet Python:
`shortcuts._on_exponent` puts the exact sums on the reference's exponent, and the replay of
Arb's roundings (`shortcuts._replayed_sum`) and the certification
(`precision.truth.exact._certified_dyadic`) are the very functions `ground_truths` runs, so
every stored field is that of `ground_truths` bit for bit (the sums are exact whichever way
they were formed).

An input the shortcut declines (an infinity or NaN, a float64 factor outside TwoProduct's
range) or whose radius bound does not certify goes to `ground_truths`, which declines it the
same way and takes the Arb engine.

Measured 2026-12-06 on the shared 2-core development machine (load 3.4 to 3.7; float32
inputs; microseconds per input of `ground_truths_batch`, per input -> batched): dot products of
n = 1000, 3 inputs 91 -> 61 and 20 inputs 88 -> 33; sums of n = 1000, 3 inputs 66 -> 49 and
20 inputs 61 -> 22.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from precision.problems.base import Problem
from precision.truth import shortcuts
from precision.truth.exact import _certified_dyadic
from precision.truth.shortcuts import Dyadic

__all__ = ["certify_shortcut_batch"]

Pair = tuple[Dyadic, Dyadic]
"""(sum, sum of magnitudes) of one input, exact; the sum's condition number is their ratio."""

MIN_BATCH = 2
"""Fewest inputs batched: a single input costs less through `ground_truths` (measured
2026-12-06, float32 dots and sums of n = 10 to 10,000 at load 3 to 3.6: 4 to 44% more time
per input through the batch in 7 of 8 cases)."""

BLOCK_VALUES = 1 << 16
"""Most input values whose terms are formed at once: the temporaries (a few float64 arrays of
up to 1 MB) stay in cache, and a long chunk never holds several float64 copies of itself.
Measured 2026-12-06 at load 3.6: blocks of 2**20 values cost 1.9 times as much per input as
blocks of 2**16 for 20 dots of n = 10,000, and 2.2 times for 3 sums of n = 100,000; a block
of 2**16 still holds 32 dots of n = 1000."""


def certify_shortcut_batch(
    problem: Problem, X: np.ndarray, fmts: list, prec: int, columns
) -> np.ndarray | None:
    """Certify a batch of inputs of a problem with an exact shortcut at once, as
    `ground_truths` certifies each of them.

    For each input, s = sum_i t_i and kappa = sum_i |t_i| / |s| (t_i = x_i for sums and
    differences, x_i y_i for dot products; kappa = inf for s = 0), from the exact integers
    (Rump, Ogita & Oishi's extraction, or `shortcuts.exact_sums` where it declines; no
    rounding at all), then Arb's midpoint of the reference at ``prec`` replayed in integers,
    with a bound on Arb's radius (`shortcuts.RADIUS_ULPS_PER_OPERATION` ulps per rounded
    operation), certified by `_ball`'s rule: an input is accepted only where that bound
    certifies every format, so its row is what `ground_truths` returns, bit for bit.

    Parameters
    ----------
    problem : Problem
    X : numpy.ndarray
        ``(batch, *input_shape)``, as `ground_truths_batch` receives it.
    fmts : list of Format
        The output formats.
    prec : int
        The first working precision (``precisions[0]``).
    columns : _BatchColumns
        Receives the accepted inputs (``put_decided``) and their share of the time.

    Returns
    -------
    numpy.ndarray or None
        The indices of the inputs left to `ground_truths`; None when the problem, the shape of
        ``X`` or a batch of fewer than MIN_BATCH inputs has no batched shortcut (then every
        input takes `ground_truths`).
    """
    form = _FORMS.get(shortcuts.shortcut_for(problem))
    if form is None or len(X) < MIN_BATCH:
        return None
    start = time.perf_counter()
    found = _formed_in_blocks(form, np.asarray(X))
    if found is None:
        return None
    pairs, base = found
    rows, balls, conds = [], [], []
    for b, (pair, exponent) in enumerate(zip(pairs, base, strict=True)):
        certified = _certified_pair(pair, exponent, fmts, prec) if pair is not None else None
        if certified is not None:
            rows.append(b)
            balls.append(certified[0])
            conds.append(certified[1])
    if rows:
        _put(columns, np.array(rows), balls, conds, fmts, prec)
        columns.seconds[rows] = (time.perf_counter() - start) / len(rows)
    accepted = set(rows)
    return np.array([b for b in range(len(pairs)) if b not in accepted], dtype=np.int64)


def _formed_in_blocks(form: Callable, X: np.ndarray) -> tuple[list, list] | None:
    """``form`` of ``X`` block by block of rows (at most BLOCK_VALUES values each, at least
    one row), joined; None when ``form`` does not cover the batch."""
    step = max(1, BLOCK_VALUES // max(1, X[0].size))
    pairs, base = [], []
    for first in range(0, len(X), step):
        found = form(X[first : first + step])
        if found is None:  # decided by dtype and shape alone: the same for every block
            return None
        pairs += found[0]
        base += found[1]
    return pairs, base


def _certified_pair(pair: Pair, base: int, fmts: list, prec: int):
    """((split, rounding per format), cond) of one input's exact sums on the reference's
    exponent ``base``, as `precision.truth.exact._shortcut_ground_truths` makes them, or None
    where the radius bound does not certify (the Arb engine decides)."""
    total, abs_total = (shortcuts._on_exponent(v, base) for v in pair)
    result = shortcuts._replayed_sum(total, abs_total, prec)
    ((mid, radius_exp),) = result.outputs
    ball = _certified_dyadic(mid, radius_exp, fmts)
    return None if ball is None else (ball, result.cond)


def _put(columns, rows: np.ndarray, balls: list, conds: list, fmts: list, prec: int) -> None:
    """The accepted rows' columns (one output each): Python floats and format scalars into
    arrays, exactly, as `_shortcut_ground_truths` builds its arrays."""
    hi, lo, exp = (np.array(part)[:, None] for part in zip(*(b[0] for b in balls), strict=True))
    rounded = [
        np.array([b[1][j] for b in balls], dtype=fmt.dtype)[:, None] for j, fmt in enumerate(fmts)
    ]
    columns.put_decided(rows, hi, lo, exp.astype(np.int64), rounded, np.array(conds), prec)


# ---------------------------------------------------------------- the exact sums of a batch


def _dot_pairs(X: np.ndarray) -> tuple[list[Pair | None], list[int]] | None:
    """`shortcuts.dot_shortcut`'s exact sums of a batch of pairs of rows ``(batch, 2, n)`` and
    the reference's exponent of each (the smallest product piece, ``dot.product_parts``), or
    None for a batch it does not cover (mpf objects, another shape, no terms).

    Factors of a dtype holding only float32 values: the products are exact in float64 (48
    significant bits at most, magnitudes in [2**-298, 2**256)), and a non-finite factor makes
    a non-finite product (inf * 0 is NaN): the row is declined, as `exact_dot` declines it.
    float64 factors: every product is p + q exactly by Dekker's TwoProduct where every factor
    is 0 or in [2**-450, 2**500] (float32 values, which `exact_dot` multiplies directly, all
    are); other rows are declined, as `exact_dot` declines them.
    """
    if X.dtype == object or X.ndim != 3 or X.shape[1] != 2:
        return None
    if not 0 < X.shape[2] <= shortcuts.MAX_TERMS // 2:
        return None
    v64 = X.astype(np.float64)  # exact: every registry format is a subset of float64
    narrow = _float32_valued(X, v64)
    terms, signs, ok, tops = (_exact_products if narrow else _two_products)(v64)
    sums = shortcuts.extract_row_sums_in_place(terms, signs, tops=tops)
    exponents = np.frexp(v64)[1]
    base = [e - 2 * 53 for e in exponents.sum(axis=1).min(axis=1).tolist()]

    def pair(b: int) -> Pair | None:
        if not ok[b]:
            return None
        if sums[b] is None:  # extraction left it: the per-input path's bincount
            return shortcuts._exact_dot64(v64[b, 0], v64[b, 1], narrow=narrow)
        return sums[b]

    return [pair(b) for b in range(len(X))], base


def _float32_valued(X: np.ndarray, v64: np.ndarray) -> bool:
    """Whether every value of the batch is a float32 value: by its dtype where that decides
    it, else by comparing with a float32 cast (float64 data stored in float32 often is)."""
    if np.can_cast(X.dtype, np.float32):
        return True
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 casts to inf
        return bool((v64.astype(np.float32) == v64).all())


def _exact_products(v64: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[bool], list]:
    """``(batch, n)`` products t_i = a_i b_i of float32-valued factors ``(batch, 2, n)``, their
    signs, which inputs are finite (the others' rows zeroed, so that extraction skips them),
    and max_i |t_i| per row (None: not known)."""
    with np.errstate(invalid="ignore"):  # 0 * inf is NaN, which `_finite_rows` catches
        terms = np.multiply(v64[:, 0], v64[:, 1])
    ok, tops = _finite_rows(terms)
    return terms, np.sign(terms), ok, tops


def _two_products(v64: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[bool], None]:
    """``(batch, 2n)`` terms [p, q] with a_i b_i = p_i + q_i (Dekker's TwoProduct,
    `shortcuts.two_product`), the signs [sign p, sign p], and which inputs lie in its exact
    range (the others' factors zeroed first, so that no step overflows). |a_i b_i| = sign(p_i)
    (p_i + q_i) since |q_i| <= ulp(p_i) / 2 <= |p_i| (and q_i = 0 where p_i = 0)."""
    w = np.abs(v64)
    small = (w < 2.0**-450) & (w != 0.0)
    ok = ((w.max(axis=(1, 2)) <= 2.0**500) & ~small.any(axis=(1, 2))).tolist()  # NaN: False
    if not all(ok):
        v64 = v64.copy()
        v64[np.logical_not(ok)] = 0.0
    p, q = shortcuts.two_product(v64[:, 0], v64[:, 1])
    sign = np.sign(p)
    return np.concatenate([p, q], axis=1), np.concatenate([sign, sign], axis=1), ok, None


def _finite_rows(terms: np.ndarray) -> tuple[list[bool], list[float]]:
    """Which rows of ``terms`` are all finite, and max_i |t_i| per row; the other rows are
    zeroed in place (their maximum 0)."""
    tops = np.abs(terms).max(axis=1).tolist()
    ok = [math.isfinite(top) for top in tops]  # NaN propagates through max: False
    for b in (b for b, finite in enumerate(ok) if not finite):
        terms[b], tops[b] = 0.0, 0.0
    return ok, tops


def _sum_pairs(X: np.ndarray) -> tuple[list[Pair | None], list[int]] | None:
    """`shortcuts.sum_shortcut`'s exact sums (sum x_i, sum |x_i|) of every input of a batch
    (each input's values raveled) and the reference's exponent of each (the smallest
    `float_integers` exponent, a zero's -53 included), or None for a batch it does not cover
    (mpf objects, no terms, more than MAX_TERMS). An input with an infinity or NaN is
    declined, as `sum_shortcut` declines it."""
    if X.dtype == object or X.ndim < 1 or len(X) == 0:
        return None
    x64 = np.array(X.reshape(len(X), -1), dtype=np.float64)  # a copy: extraction overwrites
    if not 0 < x64.shape[1] <= shortcuts.MAX_TERMS:
        return None
    # frexp's exponent grows with |x|, and a zero's is 0: the reference's minimum e_i.
    base = [e - 53 for e in np.frexp(x64)[1].min(axis=1).tolist()]
    ok, tops = _finite_rows(x64)
    sums = shortcuts.extract_row_sums_in_place(x64, np.sign(x64), tops=tops)

    def pair(b: int) -> Pair | None:
        if not ok[b]:
            return None
        if sums[b] is None:  # extraction left it: the per-input path's bincount
            x = np.asarray(X[b], dtype=np.float64)
            found = shortcuts.exact_sums(*shortcuts.float_integers(x), [None, "abs"])
            return found[0], found[1]
        return sums[b]

    return [pair(b) for b in range(len(X))], base


def _difference_pairs(X: np.ndarray) -> tuple[list[Pair | None], list[int]] | None:
    """`shortcuts.difference_shortcut` of a batch of pairs ``(batch, 2)``: the sums of
    [a, -b], negated in the input's dtype (exact) as the shortcut does."""
    if X.ndim != 2 or X.shape[1] != 2:
        return None
    terms = X.copy()
    terms[:, 1] = -X[:, 1]
    return _sum_pairs(terms)


_FORMS: dict[Callable | None, Callable] = {
    shortcuts.dot_shortcut: _dot_pairs,
    shortcuts.sum_shortcut: _sum_pairs,
    shortcuts.difference_shortcut: _difference_pairs,
}
"""Per-input shortcut -> the exact sums of a batch (keyed by the function, as
`shortcuts.SHORTCUTS` is, so that only a problem taking that very shortcut meets it)."""
