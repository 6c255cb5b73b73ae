"""Logit vectors: the shared input generator and exact helpers of the softmax family.

Softmax, log-sum-exp, log_softmax and cross-entropy all take a vector x of logits. Their
condition numbers differ, so each problem picks candidates with its own estimate; the
candidates come from one generator that can aim a vector at a chosen log-sum-exp value with a
chosen spread, which is what moves all four condition numbers.

The exact helpers evaluate the references' common parts in any number system; where the system
encloses (Arb), the condition numbers, which need only COND_ACCURACY, are bounded in float64
interval arithmetic instead (`enclose`), while the outputs keep their ball arithmetic bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from precision.core.formats import Format
from precision.core.numbers import Number, NumberSystem, gradual_underflow
from precision.problems.base import kernel_error

# ---------------------------------------------------------------- candidates (float64)


def propose_logits(
    rng: np.random.Generator,
    *,
    n: int,
    magnitude: float | np.ndarray,
    cond: float | np.ndarray,
    size: int,
) -> np.ndarray:
    """Candidate logit vectors, shape (size, n), aimed at max|x| ~ magnitude and cond ~ cond
    (floats, or one target per candidate: arrays of shape (size,)).

    Each candidate is ``x = y - lse(y) + L``: a random shape y moved so that ``lse(x) = L``
    exactly (up to float64 rounding). Half the shapes are Gaussian with spread
    ``f * magnitude`` (f log-uniform in [1e-4, 2]); the other half put a cluster of k near-tied
    leading entries (k log-uniform in 1..n) above a tail spread down to ``-2 * magnitude``:
    the cluster carries the softmax weight, the tail the magnitude, which is what makes
    log-sum-exp ill-conditioned at large magnitude (kappa_lse ~ log k / |L| when L ~ 0).
    ``L`` is log-uniform from ``magnitude / (10 cond)`` up to the larger of ``2 magnitude``,
    ``log n + 2 magnitude`` (all-equal vectors have lse = x + log n) and ``10 magnitude / cond``,
    with a random sign.
    The caller keeps the candidates whose estimated condition number lands in its cell.
    """
    half = size // 2
    # One target per candidate, as a column: the draws below are the same numbers whether a
    # target is a float or an array (numpy scales the same uniform draws either way).
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))[:, None]
    cond = np.broadcast_to(np.asarray(cond, dtype=np.float64), (size,))[:, None]
    spread = magnitude * 10.0 ** rng.uniform(-4, np.log10(2.0), size=(size, 1))
    # The arithmetic below works in place in y (the same operations on the same numbers as
    # forming each array anew): candidates are drawn by the thousand for every grid cell.
    y = np.empty((size, n))
    gaussian = rng.standard_normal(out=y[:half])  # only the first half are Gaussian shapes
    for rows in row_blocks(half, n):
        shape = gaussian[rows]  # a view: the steps below work in place in y
        shape /= np.maximum(np.abs(shape).max(axis=1, keepdims=True), 1e-300)
        shape *= spread[rows]
    _clustered_shapes(rng, n=n, magnitude=magnitude[half:], out=y[half:])
    low = np.log10(magnitude / (10.0 * cond))
    widest = np.maximum(2.0 * magnitude, np.log(n) + 2.0 * magnitude)
    high = np.log10(np.maximum(widest, 10.0 * magnitude / cond))
    level = 10.0 ** rng.uniform(low, high, size=(size, 1))
    sign = rng.choice([-1.0, 1.0], size=(size, 1))
    for rows in row_blocks(size, n):
        block = y[rows]
        block -= lse64(block)[:, None]
        block += sign[rows] * level[rows]
    return y


BLOCK_ELEMENTS = 2**16
"""Elements per block of rows that the candidates' row-wise arithmetic works on at once (a cost
decision only: every step is row by row, so blocks give the same numbers, and a block's
temporaries, 256 KiB each, stay in the CPU's cache between steps: at n = 1000, moving 256
candidates to their log-sum-exp took 1.35 ms in blocks of 32 rows and 2.33 ms at once)."""


def row_blocks(rows: int, row_elements: int) -> list[slice]:
    """Consecutive slices of ``rows`` rows of ``row_elements`` each, BLOCK_ELEMENTS or fewer
    elements per slice (at least one row)."""
    step = max(1, BLOCK_ELEMENTS // max(1, row_elements))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _clustered_shapes(rng: np.random.Generator, *, n: int, magnitude, out: np.ndarray):
    """k near-tied leading entries (jitter log-uniform) above a uniform tail, shuffled, written
    into ``out`` (shape (size, n), C-contiguous; ``magnitude``: a float or a (size, 1) column).

    The draws are those of ``tail * uniform(0, 1, (size, n))`` for the tail and
    ``jitter * uniform(-1, 1, (size, n))`` for the cluster, in that order, made with
    ``random``: numpy's ``uniform(low, high)`` is ``low + (high - low) * random()``, so
    uniform(0, 1) is random() itself and uniform(-1, 1) is 2 random() - 1 (2 r is exact: one
    rounding either way). Only the cluster's entries of the second draw are used.
    """
    size = out.shape[0]
    k = np.minimum(np.floor(n ** rng.uniform(0, 1, size=size)).astype(int), n)
    jitter = magnitude * 10.0 ** rng.uniform(-6, 0, size=(size, 1))
    tail = -2.0 * magnitude * 10.0 ** rng.uniform(-3, 0, size=(size, 1))
    rng.random(out=out)
    out *= tail
    cluster = np.arange(n)[None, :] < k[:, None]
    spread = np.repeat(np.broadcast_to(jitter, (size, 1))[:, 0], k)  # row by row, as cluster
    out[cluster] = spread * (2.0 * rng.random((size, n))[cluster] - 1.0)
    rng.permuted(out, axis=1, out=out)


# The float64 helpers work in place where they can: the estimates run on thousands of candidates
# per grid cell, and a fresh temporary of that size costs more than the arithmetic done in it.
# Each in-place step is the same operation on the same numbers as the expression it replaces.


def lse64(x: np.ndarray) -> np.ndarray:
    """log-sum-exp along the last axis in float64 (shifted; for estimates only)."""
    a = x.max(axis=-1, keepdims=True)
    e = x - a
    np.exp(e, out=e)
    return (a + np.log(e.sum(axis=-1, keepdims=True)))[..., 0]


def softmax64(x: np.ndarray) -> np.ndarray:
    """softmax along the last axis in float64 (shifted; for estimates only)."""
    e = x - x.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


def weighted_abs64(x: np.ndarray) -> np.ndarray:
    """S = sum_i |x_i| g_i with g = softmax(x), along the last axis."""
    terms = softmax64(x)
    terms *= np.abs(x)
    return terms.sum(axis=-1)


def row_sensitivities64(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """|x_j| + S - 2 |x_j| g_j with S = sum_i |x_i| g_i, along the last axis, in float64 (the
    estimate of `row_sensitivities`; ``g`` = softmax(x)). A new array, formed in place in the
    order of that expression."""
    a = np.abs(x)
    twice = a * g
    weighted = twice.sum(axis=-1, keepdims=True)
    np.multiply(2.0, a, out=twice)
    twice *= g  # (2 |x_j|) g_j
    a += weighted
    a -= twice
    return a


def max_abs(x: np.ndarray) -> float | np.ndarray:
    """Magnitude of a logit vector: max_i |x_i| (exact), along the last axis (a float for one
    vector, an array for a batch)."""
    return per_input(np.max(np.abs(np.asarray(x, dtype=np.float64)), axis=-1))


def logit_extras(x: np.ndarray) -> dict[str, float | np.ndarray]:
    """Per-input columns that locate overflow: max_i x_i and log-sum-exp(x) (float64), along
    the last axis."""
    x64 = np.asarray(x, dtype=np.float64)
    return {"x_max": per_input(x64.max(axis=-1)), "lse": per_input(lse64(x64))}


# ---------------------------------------------------------------- reachable cells (estimates)
# The sampler (`precision.run.sampling`) skips a grid cell only where it is proven that no candidate
# can land: it asks ``estimate.reachable(n, cond_decade, mag_decade)``, which the estimates
# below answer from an upper bound on the condition number they can *return* (float64
# rounding included) for vectors with max|x| in the magnitude decade.

EDGE = 1e-9
"""Relative slack at a decade's edges: numpy's float64 log10 is accurate to a few ulps, so a
value v with floor(log10(v)) == d lies in [10**d (1 - EDGE), 10**(d + 1) (1 + EDGE)]."""


def rounding(n: int) -> float:
    """1 + an allowance for the float64 rounding of an estimate over n logits, as a factor.

    The estimates below are sums of n nonnegative terms (relative error at most (n - 1) u
    each, pairwise or not), a softmax (n + 1) u, and a few more roundings: about (4 n + 12) u
    in all. The allowance 32 (n + 8) u is more than four times that.
    """
    return 1.0 + 32.0 * (n + 8) * 2.0**-53


def lse_error(n: int, magnitude: float) -> float:
    """An absolute bound on |lse64(x) - lse(x)| for n logits with max|x| <= magnitude, with
    room for the rounding of log(n) and of the subtraction its callers form it into.

    lse64 forms z_i = x_i - a (error at most 2 M u), e_i = exp(z_i) (relative 2 M u + 2 u),
    s = sum e_i >= 1 ((n - 1) u more), log(s) (absolute (n + 2 + 2 M) u plus 2 u log n) and
    a + log(s) (u |lse| <= u (M + log n)): at most (n + 3 + 3 M + 3 log n) u with log n < n.
    The bound 8 (n + 8 M + 16) u is more than twice that.
    """
    return 8.0 * (n + 8.0 * magnitude + 16.0) * 2.0**-53


def reachable_below(max_cond):
    """``reachable(n, cond_decade, mag_decade)`` for an estimate whose condition number is at
    most ``max_cond(n, M)`` for every vector of n logits with max|x| <= M: False when that
    bound, at the top of the magnitude decade, lies below the condition-number decade."""

    def reachable(n: int, cond_decade: int, mag_decade: int) -> bool:
        top = 10.0 ** (mag_decade + 1) * (1 + EDGE)
        return bool(max_cond(n, top) >= 10.0**cond_decade * (1 - EDGE))

    reachable.max_cond = max_cond
    return reachable


def row_max_abs(X: np.ndarray) -> np.ndarray:
    """max|x_i| of each row of a batch (n,) -> (batch,): the estimates' magnitude."""
    return np.abs(X).max(axis=1)


def estimate_with(*, magnitude, max_cond):
    """Decorator: the estimate unchanged, carrying what lets the sampler skip work.

    ``estimate.magnitude(X)`` is its magnitude alone (equal to ``estimate(X)[1]``), so that the
    sampler estimates condition numbers only of candidates in the magnitude decade (rows are
    independent: ``estimate(X[rows])`` is ``estimate(X)`` at those rows, bit for bit), and
    ``estimate.reachable`` is `reachable_below` of ``max_cond``.
    """

    def mark(estimate):
        estimate.magnitude = magnitude
        estimate.reachable = reachable_below(max_cond)
        return estimate

    return mark


# ---------------------------------------------------------------- exact helpers (any NumberSystem)


class ExpTerms:
    """The shifted exponentials of a logit vector (see `exp_terms`).

    Attributes
    ----------
    m : int
        Index of the maximum (the first of ties).
    a : Number
        x_m, exact.
    z, e : list
        z_i = x_i - a and e_i = exp(z_i) (e_m = 1 exactly), one per logit.
    z_distinct, e_distinct : list
        The same numbers once per distinct logit (`Repeats`); ``z`` and ``e`` themselves where
        no logit repeats. References evaluate elementwise outputs on these and `expand` them.
    r, s : Number
        r = sum_{i != m} e_i and s = 1 + r.
    floats : numpy.ndarray or None
        The logits in float64 where the condition numbers are bounded in float64 (`enclose`):
        a system that encloses (Arb), at least ENCLOSED_MIN logits, all finite; None where the
        references form everything in ``ctx`` itself.
    repeats : Repeats or None
        Where distinct logits sit among all of them; None where no logit repeats (or
        ``floats`` is None).
    x : list
        The exact logits, formed on first use (the float64 bounds do without them).
    """

    def __init__(self, logits, ctx, m, a, z, e, r, floats, x=None, *, distinct=None):
        self.logits, self.ctx, self.m, self.a, self._z, self.e = logits, ctx, m, a, z, e
        self.r, self.s, self.floats, self._x = r, 1 + r, floats, x
        self.repeats, self.z_distinct, self.e_distinct = distinct or (None, z, e)

    @property
    def z(self) -> list:
        if self._z is None:  # formed on first use where logits repeat (`exp_terms`)
            self._z = self.expand(self.z_distinct)
        return self._z

    @property
    def x(self) -> list:
        if self._x is None:
            self._x = self.ctx.exact_list(self.logits)
        return self._x

    def expand(self, values: list) -> list:
        """One value per logit from one per distinct logit (``values`` itself where no logit
        repeats): an elementwise output evaluated on ``z_distinct``/``e_distinct``."""
        return values if self.repeats is None else self.repeats.expand(values)


class Repeats:
    """The distinct values of a float vector and where each value sits (`find_repeats`).

    Attributes
    ----------
    first : numpy.ndarray
        Index of the first occurrence of each distinct value, in increasing order of the
        values' bit patterns.
    inverse : numpy.ndarray
        For every element, the position of its value in ``first``.
    """

    def __init__(self, first: np.ndarray, inverse: np.ndarray):
        self.first, self.inverse = first, inverse
        self._positions = inverse.tolist()

    def expand(self, values: list) -> list:
        """``[values[j] for j in inverse]``: the same objects, one per element."""
        return list(map(values.__getitem__, self._positions))


def has_repeats(values: np.ndarray) -> bool:
    """Whether a 1-d float64 or int64 array holds some value (compared by its bits) twice."""
    ordered = np.sort(values.view(np.int64))
    return bool((ordered[1:] == ordered[:-1]).any())


def find_repeats(values: np.ndarray) -> Repeats | None:
    """`Repeats` of a 1-d float64 or int64 array whose values repeat, None where every value is
    distinct.

    Values are compared by their bits, so that a repeat is the same float (-0.0 and 0.0 stay
    apart). Low formats repeat values often: 1000 logits rounded to bfloat16 hold a few hundred
    distinct values, and every ball operation on a repeated logit would rebuild the same ball (a
    cost decision only: the balls are the same either way). A sort answers the common case, no
    repeats; only repeats pay for the stable argsort (``np.unique`` with index and inverse
    costs two to three times as much at n = 1000, measured).
    """
    if not has_repeats(values):  # the common answer, from a sort alone
        return None
    bits = values.view(np.int64)
    order = np.argsort(bits, kind="stable")
    ordered = bits[order]
    starts = np.empty(bits.size, dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(bits.size, dtype=np.intp)
    inverse[order] = np.cumsum(starts) - 1
    return Repeats(order[starts], inverse)


def exp_terms(x: np.ndarray, ctx: NumberSystem) -> ExpTerms:
    """The exact logits x, a = max x, e_i = exp(x_i - a), s = sum e_i and r = s - 1.

    Shifting by the exact maximum keeps every term in (0, 1]: mpmath and Arb have no overflow,
    but the shift keeps s near 1, so relative accuracy does not depend on max(x). r sums the
    terms other than the maximum's (which is exactly 1) so that log(s) can be formed as
    log1p(r): forming 1 + r first absorbs an r below 2**-prec, and two precisions would then
    *agree* on a wrong log(s) = 0 (x = [0, -200]: log_softmax_0 = -e**-200, not 0).
    The maximum is found among the input floats themselves (``np.argmax``, exact, the first
    of ties): comparing Arb balls is three-valued and cannot choose.

    In a system that encloses (Arb), from ENCLOSED_MIN finite logits up, z_i = x_i - a is
    converted from its float64 difference wherever that subtraction is exact
    (`shifted_exactly`): the same exact ball as the subtraction of the exact logits, without
    forming them. There z_i and e_i are formed once per distinct logit (`find_repeats`) and the
    same balls stand for every repeat: the sum r still adds every term, in order.

    Parameters
    ----------
    x : numpy.ndarray
        One logit vector as the algorithm received it (or an object array of mpf, `MPMATH`).
    ctx : NumberSystem
        The number system (`precision.core.numbers`), at the caller's working precision.
    """
    values = np.asarray(x)
    m = int(np.argmax(values))
    floats = finite_floats(values) if ctx.encloses and values.size >= ENCLOSED_MIN else None
    if floats is None:
        xs = ctx.exact_list(values)
        a = xs[m]
        z = [v - a for v in xs]
        e = ctx.exp_list(z)
        distinct = None
    else:
        xs = None
        a = ctx.exact(floats[m])
        repeats = find_repeats(floats)
        if repeats is None:
            z = shifted_exactly(floats, m, a, ctx)
            e = ctx.exp_list(z)
            distinct = None
        else:
            only = floats[repeats.first]
            z_distinct = shifted_exactly(only, int(repeats.inverse[m]), a, ctx)
            e_distinct = ctx.exp_list(z_distinct)
            z, e = None, repeats.expand(e_distinct)  # z expanded on use (`ExpTerms.z`)
            distinct = (repeats, z_distinct, e_distinct)
    r = ctx.fsum(e[:m] + e[m + 1 :])
    return ExpTerms(values, ctx, m, a, z, e, r, floats, xs, distinct=distinct)


def object_array(values: list) -> np.ndarray:
    """A 1-d object array of ``values`` (the numbers themselves, not copies).

    ``np.array(values, dtype=object)`` asks every number whether it is a sequence, which for
    1000 balls costs about as much as dividing them; ``np.fromiter`` does not ask (a tenth of
    the time, measured).
    """
    return np.fromiter(values, dtype=object, count=len(values))


def finite_floats(values: np.ndarray) -> np.ndarray | None:
    """A float array as float64 (exact: every format is a subset), None for an object array or
    one with an infinity or a NaN."""
    if values.dtype == object:
        return None
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the flag
        floats = values.astype(np.float64).ravel()
    return floats if np.isfinite(floats).all() else None


def shifted_exactly(floats: np.ndarray, m: int, a: Number, ctx: NumberSystem) -> list:
    """x_i - a for every i, in ``ctx``: the exact float64 difference d_i where it is exact,
    else the subtraction ``ctx.exact(x_i) - a`` at the working precision.

    Exactness is decided by Knuth's TwoSum, whose error term x_i + (-x_m) - d_i is exact in
    float64 (no overflow: d_i finite): it is 0 exactly when d_i is the exact difference. An
    exact difference converts to the exact number the subtraction gives (at any working
    precision >= 53 bits), so the result is that of the subtraction for every i.
    """
    top = floats[m]
    with np.errstate(over="ignore", invalid="ignore"):
        d = floats - top
        back = d - floats
        error = (floats - (d - back)) - (top + back)
    z = ctx.exact_list(d)
    for i in np.flatnonzero(~(np.isfinite(d) & (error == 0))).tolist():
        z[i] = ctx.exact(floats[i]) - a
    return z


def weighted_abs(x: list, g: list, ctx: NumberSystem) -> Number:
    """S = sum_i |x_i| g_i."""
    return ctx.fsum(ctx.abs(xi) * gi for xi, gi in zip(x, g, strict=True))


def row_sensitivities(terms: ExpTerms, g: list, ctx: NumberSystem) -> list:
    """sum_i |x_i| |d g_j / d x_i| / g_j = |x_j| (1 - g_j) + sum_{i != j} |x_i| g_i, per j.

    For the maximum's row 1 - g_m is formed as r / s and the sum excludes m directly: with a
    dominant g_m ~ 1 the textbook form |x_m| + S - 2 |x_m| g_m cancels (logits [500, 1] lost
    every digit at 113 bits).
    """
    x, m = terms.x, terms.m
    weighted = weighted_abs(x, g, ctx)
    rows = [
        ctx.abs(xj) * (1 - gj) + (weighted - ctx.abs(xj) * gj) for xj, gj in zip(x, g, strict=True)
    ]
    others = ctx.fsum(
        ctx.abs(xi) * gi for i, (xi, gi) in enumerate(zip(x, g, strict=True)) if i != m
    )
    rows[m] = ctx.abs(x[m]) * (terms.r / terms.s) + others
    return rows


# ---------------------------------------------------------------- condition numbers in float64
# A condition number is needed to COND_ACCURACY (2**-20, `precision.truth.exact`), the outputs to
# 2**-80: where the system encloses (Arb), the condition numbers are bounded in float64
# interval arithmetic from float64 bounds of the balls e_i, s, r (`Enclosure`), in a few numpy
# passes instead of some ten ball operations per logit, and returned as a ball around the
# interval. Every float64 operation rounds to nearest; each result is moved outward by a
# margin that covers that rounding (`up`, `down`), and sums get Higham's bound (`sum_bounds`).
# Where the interval is wider than ENCLOSED_ACCURACY (an exponent range float64 cannot hold, a
# condition number of 0, a ball that is too wide), the formulas are evaluated in the system
# itself, as for mpmath.

ENCLOSED_MIN = 16
"""Fewest logits for which float64 and numpy take part (`exp_terms`, `enclose`): below, numpy's
fixed cost per call exceeds that of the ball operations it saves (a cost decision only)."""

ENCLOSED_ACCURACY = 2.0**-30
"""Widest relative width of a float64 interval taken as the condition number (the engine asks
COND_ACCURACY = 2**-20 of the ball); a wider one gives way to the formulas in balls."""

_UP, _DOWN, _TINY = 1.0 + 2.0**-50, 1.0 - 2.0**-50, 2.0**-1070
_RELATIVE = 2.0**-50


def up(v):
    """An upper bound of the exact result of the float64 operation that gave v >= 0 (rounded
    to nearest: within 2**-53 |v| above 2**-1022, 2**-1075 below): RN(v (1 + 2**-50)) is at
    least the next float above a normal v, and adding 2**-1070 is exact where v is subnormal.
    An infinity stays infinite."""
    return v * _UP + _TINY


def down(v):
    """A lower bound, clamped at 0, of a quantity known to be >= 0 whose float64 value v came
    from one operation rounded to nearest (the mirror of `up`). Where the operation's exact
    result is below 0 (a difference of bounds), 0 is the bound. An infinite v is not a bound:
    every result built on one is rejected (it is not finite, `Enclosure.ball`)."""
    return np.maximum(v * _DOWN - _TINY, 0.0)


def signed_down(v):
    """`down` for a result of either sign: v - (2**-50 |v| + 2**-1070), rounded to nearest, is
    below every exact value within half a float of v (or exactly v, subnormal)."""
    return v - (np.abs(v) * _RELATIVE + _TINY)


def signed_up(v):
    """The mirror of `signed_down`."""
    return v + (np.abs(v) * _RELATIVE + _TINY)


def sum_bounds(lo: np.ndarray, hi: np.ndarray) -> tuple[float, float]:
    """Bounds of sum_i v_i for nonnegative v_i in [lo_i, hi_i], along the last axis (floats
    for one vector, ``(batch,)`` arrays for a batch).

    ``np.sum`` adds n terms with n - 1 roundings in some order (pairwise); whatever the order,
    the computed sum of nonnegative terms is within gamma_{n-1} = (n - 1) u / (1 - (n - 1) u)
    of the exact one (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
    sec. 4.2; additions with subnormal results are exact), and gamma_{n-1} <= n 2**-52 =: g.
    So the exact sum lies in [RN-sum (1 - g), RN-sum (1 + 2 g)] (g <= 1/2); 1 - g and 1 + 2 g
    are floats, and the products are moved outward by `down` and `up`.
    """
    g = lo.shape[-1] * 2.0**-52
    return (
        per_input(down(np.sum(lo, axis=-1) * (1.0 - g))),
        per_input(up(np.sum(hi, axis=-1) * (1.0 + 2.0 * g))),
    )


def magnitude_interval(lo, hi):
    """Bounds of |v| for v in [lo, hi] (floats, or ``(batch,)`` arrays), NaN where the
    interval contains 0 or is not finite (`magnitude_bounds` elementwise)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    positive = (lo > 0) & np.isfinite(hi)
    negative = (hi < 0) & np.isfinite(lo)
    low = np.where(positive, lo, np.where(negative, -hi, np.nan))
    high = np.where(positive, hi, np.where(negative, -lo, np.nan))
    return per_input(low), per_input(high)


def magnitude_bounds(lo: float, hi: float) -> tuple[float, float] | None:
    """Bounds of |v| for v in [lo, hi]; None when the interval contains 0 (or is not finite)."""
    if lo > 0 and math.isfinite(hi):
        return lo, hi
    if hi < 0 and math.isfinite(lo):
        return -hi, -lo
    return None


class Enclosure:
    """float64 bounds of the ingredients of the softmax family's condition numbers, of one
    logit vector or of a batch of them (every array then has a leading batch axis, and the
    bounds of s and r and the index m are ``(batch,)`` arrays): the same formulas serve both.

    Attributes
    ----------
    ax : numpy.ndarray
        |x_i|, exact.
    e_lo, e_hi : numpy.ndarray
        Bounds of e_i = exp(x_i - a) (exactly 1 at m).
    s, r : tuple of float (or of arrays)
        Bounds of s = sum e_i (>= 1) and r = s - 1 (>= 0).
    m : int (or array of int)
    """

    def __init__(self, ax, e_lo, e_hi, s, r, m, ctx):
        self.ax, self.e_lo, self.e_hi, self.s, self.r, self.m = ax, e_lo, e_hi, s, r, m
        self.ctx = ctx
        self._at = np.asarray(m)[..., None]  # m as an index along the last axis

    def at_m(self, values: np.ndarray):
        """values[..., m]: a float for one vector, ``(batch,)`` for a batch."""
        return per_input(np.take_along_axis(values, self._at, axis=-1)[..., 0])

    def set_m(self, values: np.ndarray, value) -> None:
        """values[..., m] = value, in place (``value`` a float or ``(batch,)``)."""
        np.put_along_axis(values, self._at, np.asarray(value)[..., None], axis=-1)

    def bound(self, v: Number) -> tuple[float, float] | None:
        """Float bounds of a number of the system (`NumberSystem.bound`)."""
        return self.ctx.bound(v)

    def softmax(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of g_i = e_i / s."""
        s_lo, s_hi = (_column(v) for v in self.s)
        return down(self.e_lo / s_hi), up(self.e_hi / s_lo)

    def weighted(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Bounds of W_{-m} = sum_{i != m} |x_i| e_i and of W = W_{-m} + |x_m| (e_m = 1): the
        sum S = sum_i |x_i| g_i of BHH21 is W / s."""
        ax = self.ax
        w_lo, w_hi = down(ax * self.e_lo), up(ax * self.e_hi)
        self.set_m(w_lo, 0.0)
        self.set_m(w_hi, 0.0)
        rest = sum_bounds(w_lo, w_hi)
        ax_m = self.at_m(ax)
        return rest, (per_input(down(rest[0] + ax_m)), per_input(up(rest[1] + ax_m)))

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the rows R_j = |x_j| (1 - g_j) + sum_{i != j} |x_i| g_i of
        `row_sensitivities`, formed without cancellation.

        For j != m, g_j <= 1/2 (g_j <= g_m and g_j + g_m <= 1), so R_j = |x_j| (1 - 2 g_j) + S
        is a sum of nonnegative terms (1 - 2 g_j >= 0 is clamped at 0 where its bounds reach
        below). At m, 1 - g_m = r / s: R_m = (|x_m| r + W_{-m}) / s.
        """
        ax = self.ax
        (s_lo, s_hi), (r_lo, r_hi) = self.s, self.r
        (rest_lo, rest_hi), (w_lo, w_hi) = self.weighted()
        g_lo, g_hi = self.softmax()
        weighted_lo, weighted_hi = down(w_lo / s_hi), up(w_hi / s_lo)
        # 2 g is exact; 1 - 2 g_lo >= 1 - 2 g_j >= 0 for j != m (row m is replaced below).
        rows_lo = down(down(ax * down(1.0 - 2.0 * g_hi)) + _column(weighted_lo))
        rows_hi = up(up(ax * up(1.0 - 2.0 * g_lo)) + _column(weighted_hi))
        ax_m = self.at_m(ax)
        self.set_m(rows_lo, down(down(down(ax_m * r_lo) + rest_lo) / s_hi))
        self.set_m(rows_hi, up(up(up(ax_m * r_hi) + rest_hi) / s_lo))
        return rows_lo, rows_hi

    def ball(self, lo, hi) -> Number | None:
        """The number enclosing [lo, hi] (`NumberSystem.from_bounds`) when 0 < lo, hi is finite
        and hi - lo <= ENCLOSED_ACCURACY lo; else None (the caller uses its ball formulas).
        For a batch, a list: one number (or None) per vector."""
        if np.ndim(lo):
            return [self.ball(a, b) for a, b in zip(np.ravel(lo), np.ravel(hi), strict=True)]
        lo, hi = float(lo), float(hi)
        if not (lo > 0 and math.isfinite(hi) and hi - lo <= ENCLOSED_ACCURACY * lo):
            return None
        return self.ctx.from_bounds(lo, hi)


def _column(v):
    """A per-vector bound made to broadcast against the elements: ``(batch, 1)`` from
    ``(batch,)``; a float stays a float."""
    return v[..., None] if np.ndim(v) else v


def enclose(terms: ExpTerms, ctx: NumberSystem) -> Enclosure | None:
    """The float64 bounds of `Enclosure` from the balls of ``terms``; None where the condition
    numbers are formed in ``ctx`` instead: no ``terms.floats`` (a system that does not
    enclose, fewer than ENCLOSED_MIN logits, or one that is not finite), or balls that are not
    finite or too wide."""
    floats = terms.floats
    if floats is None or not gradual_underflow():  # the margins of `up` and `down` need it
        return None
    s, r, radius = ctx.bound(terms.s), ctx.bound(terms.r), ctx.radius(terms.r)
    if s is None or r is None or radius is None:
        return None
    # The ball r = sum_{i != m} e_i contains every sum of points of the balls e_i, so its
    # radius is at least the sum of theirs: a bound of each one's radius.
    # Once per distinct logit, then spread to every logit (`ExpTerms.repeats`).
    e = ctx.float_bounds(terms.e_distinct, radius=radius)
    if e is None:
        return None
    e_lo, e_hi = e
    if terms.repeats is not None:
        e_lo, e_hi = e_lo[terms.repeats.inverse], e_hi[terms.repeats.inverse]
    np.maximum(e_lo, 0.0, out=e_lo)  # e_i > 0
    e_lo[terms.m] = e_hi[terms.m] = 1.0  # exp(0), exactly
    s = (max(s[0], 1.0), s[1])
    r = (max(r[0], 0.0), r[1])
    return Enclosure(np.abs(floats), e_lo, e_hi, s, r, terms.m, ctx)


# ---------------------------------------------------------------- bound ingredients (float64)


def per_input(values: np.ndarray) -> float | np.ndarray:
    """A bound computed along the last axis: a float for one input, the ``(batch,)`` array for a
    batch (`precision.problems.base.Variant`'s ``bound`` contract)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values) if values.ndim == 0 else values


def shift_terms64(x: np.ndarray, fmt: Format) -> dict[str, float | np.ndarray]:
    """Quantities the first-order bounds of the shifted algorithms need, in float64, along the
    last axis (one value per input: 0-d for one input ``(n,)``, ``(batch,)`` for a batch).

    ``z = x - max(x)``; ``s = sum exp(z)`` (>= 1); ``gz = sum g_i |z_i|``; ``zmax = max|z|``;
    ``sub = n * min_subnormal``: the most that underflow of the n terms can lose in total.
    """
    x64 = np.asarray(x, dtype=np.float64)
    n = x64.shape[-1]
    z = x64 - x64.max(axis=-1, keepdims=True)
    g = softmax64(x64)
    return {
        "n": n,
        "s": np.exp(z).sum(axis=-1),
        "gz": (g * np.abs(z)).sum(axis=-1),
        "zmax": np.abs(z).max(axis=-1),
        "gmax": g.max(axis=-1),
        "gmin": g.min(axis=-1),
        "sub": n * fmt.min_subnormal,
        "u": fmt.u,
    }


def shifted_log_sum_error(t: dict[str, float | np.ndarray], fmt: Format) -> float | np.ndarray:
    """Absolute first-order error of log(sum(exp(x - a))) as the shifted forms compute it:
    each term exp(fl(x_i - a)) has relative error e_exp + |z_i| u, the sum adds (n - 1) u, the
    log adds e_log log s; plus what underflow of the terms can lose. Elementwise over the
    inputs of `shift_terms64`."""
    e_exp, e_log = kernel_error("exp", fmt), kernel_error("log", fmt)
    u = t["u"]
    return e_exp + (t["n"] - 1) * u + u * t["gz"] + e_log * np.log(t["s"]) + t["sub"]


def naive_overflows(x: np.ndarray, fmt: Format) -> np.ndarray:
    """True where exp(max x) or sum exp(x) exceeds the format's max (the naive forms fail),
    along the last axis: a 0-d bool for one input, ``(batch,)`` for a batch."""
    x64 = np.asarray(x, dtype=np.float64)
    return (lse64(x64) > np.log(fmt.max)) | (x64.max(axis=-1) > np.log(fmt.max))
