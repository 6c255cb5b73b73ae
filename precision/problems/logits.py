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
    gaussian = rng.standard_normal((half, n))  # only the first half are Gaussian shapes
    gaussian /= np.maximum(np.abs(gaussian).max(axis=1, keepdims=True), 1e-300)
    y = np.empty((size, n))
    y[:half] = spread[:half] * gaussian
    y[half:] = _clustered_shapes(rng, n=n, magnitude=magnitude[half:], size=size - half)
    low = np.log10(magnitude / (10.0 * cond))
    widest = np.maximum(2.0 * magnitude, np.log(n) + 2.0 * magnitude)
    high = np.log10(np.maximum(widest, 10.0 * magnitude / cond))
    level = 10.0 ** rng.uniform(low, high, size=(size, 1))
    sign = rng.choice([-1.0, 1.0], size=(size, 1))
    return y - lse64(y)[:, None] + sign * level


def _clustered_shapes(rng: np.random.Generator, *, n: int, magnitude, size: int):
    """k near-tied leading entries (jitter log-uniform) above a uniform tail, shuffled
    (``magnitude``: a float or a (size, 1) column)."""
    k = np.minimum(np.floor(n ** rng.uniform(0, 1, size=size)).astype(int), n)
    jitter = magnitude * 10.0 ** rng.uniform(-6, 0, size=(size, 1))
    tail = -2.0 * magnitude * 10.0 ** rng.uniform(-3, 0, size=(size, 1))
    y = tail * rng.uniform(0.0, 1.0, size=(size, n))
    cluster = np.arange(n)[None, :] < k[:, None]
    y = np.where(cluster, jitter * rng.uniform(-1.0, 1.0, size=(size, n)), y)
    return rng.permuted(y, axis=1)


def lse64(x: np.ndarray) -> np.ndarray:
    """log-sum-exp along the last axis in float64 (shifted; for estimates only)."""
    a = x.max(axis=-1, keepdims=True)
    return (a + np.log(np.exp(x - a).sum(axis=-1, keepdims=True)))[..., 0]


def softmax64(x: np.ndarray) -> np.ndarray:
    """softmax along the last axis in float64 (shifted; for estimates only)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def weighted_abs64(x: np.ndarray) -> np.ndarray:
    """S = sum_i |x_i| g_i with g = softmax(x), along the last axis."""
    return (np.abs(x) * softmax64(x)).sum(axis=-1)


def max_abs(x: np.ndarray) -> float | np.ndarray:
    """Magnitude of a logit vector: max_i |x_i| (exact), along the last axis (a float for one
    vector, an array for a batch)."""
    return per_input(np.max(np.abs(np.asarray(x, dtype=np.float64)), axis=-1))


def logit_extras(x: np.ndarray) -> dict[str, float | np.ndarray]:
    """Per-input columns that locate overflow: max_i x_i and log-sum-exp(x) (float64), along
    the last axis."""
    x64 = np.asarray(x, dtype=np.float64)
    return {"x_max": per_input(x64.max(axis=-1)), "lse": per_input(lse64(x64))}


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
