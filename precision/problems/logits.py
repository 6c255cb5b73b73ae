"""Logit vectors: the shared input generator and exact helpers of the softmax family.

Softmax, log-sum-exp, log_softmax and cross-entropy all take a vector x of logits. Their
condition numbers differ, so each problem picks candidates with its own estimate; the
candidates come from one generator that can aim a vector at a chosen log-sum-exp value with a
chosen spread, which is what moves all four condition numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from precision.formats import Format
from precision.numbers import Number, NumberSystem
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
    gaussian /= np.maximum(np.abs(gaussian).max(axis=1, keepdims=True), 1e-300)
    gaussian *= spread[:half]
    _clustered_shapes(rng, n=n, magnitude=magnitude[half:], out=y[half:])
    low = np.log10(magnitude / (10.0 * cond))
    widest = np.maximum(2.0 * magnitude, np.log(n) + 2.0 * magnitude)
    high = np.log10(np.maximum(widest, 10.0 * magnitude / cond))
    level = 10.0 ** rng.uniform(low, high, size=(size, 1))
    sign = rng.choice([-1.0, 1.0], size=(size, 1))
    y -= lse64(y)[:, None]
    y += sign * level
    return y


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
# The sampler (`precision.sampling`) skips a grid cell only where it is proven that no candidate
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


class ExpTerms(NamedTuple):
    """The shifted exponentials of a logit vector (see `exp_terms`)."""

    x: list
    a: Number
    e: list
    s: Number
    r: Number
    m: int


def exp_terms(x: np.ndarray, ctx: NumberSystem) -> ExpTerms:
    """The exact logits x, a = max x, e_i = exp(x_i - a), s = sum e_i and r = s - 1.

    Shifting by the exact maximum keeps every term in (0, 1]: mpmath and Arb have no overflow,
    but the shift keeps s near 1, so relative accuracy does not depend on max(x). r sums the
    terms other than the maximum's (which is exactly 1) so that log(s) can be formed as
    log1p(r): forming 1 + r first absorbs an r below 2**-prec, and two precisions would then
    *agree* on a wrong log(s) = 0 (x = [0, -200]: log_softmax_0 = -e**-200, not 0).
    The maximum is found among the input floats themselves (``np.argmax``, exact, the first
    of ties): comparing Arb balls is three-valued and cannot choose.

    Parameters
    ----------
    x : numpy.ndarray
        One logit vector as the algorithm received it (or an object array of mpf, `MPMATH`).
    ctx : NumberSystem
        The number system (`precision.numbers`), at the caller's working precision.
    """
    m = int(np.argmax(np.asarray(x)))
    xs = ctx.exact_list(x)
    a = xs[m]
    e = [ctx.exp(v - a) for v in xs]
    r = ctx.fsum(v for i, v in enumerate(e) if i != m)
    return ExpTerms(xs, a, e, 1 + r, r, m)


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
