"""Logit vectors: the shared input generator and exact helpers of the softmax family.

Softmax, log-sum-exp, log_softmax and cross-entropy all take a vector x of logits. Their
condition numbers differ, so each problem picks candidates with its own estimate; the
candidates come from one generator that can aim a vector at a chosen log-sum-exp value with a
chosen spread, which is what moves all four condition numbers.
"""

from __future__ import annotations

import mpmath
import numpy as np

from precision.formats import Format

# ---------------------------------------------------------------- candidates (float64)


def propose_logits(
    rng: np.random.Generator, *, n: int, magnitude: float, cond: float, size: int
) -> np.ndarray:
    """Candidate logit vectors, shape (size, n), aimed at max|x| ~ magnitude and cond ~ cond.

    Each candidate is ``x = y - lse(y) + L``: a random shape y with spread ``f * magnitude``
    (f log-uniform in [1e-4, 2]) moved so that ``lse(x) = L``. Small ``|L|`` relative to the
    spread makes log-sum-exp ill-conditioned (kappa_lse ~ spread / |L|), ``|L| ~ magnitude``
    well-conditioned. ``L`` is drawn around ``+-magnitude / cond``, with a random sign.
    """
    spread = magnitude * 10.0 ** rng.uniform(-4, np.log10(2.0), size=(size, 1))
    shape = rng.standard_normal((size, n))
    shape /= np.maximum(np.abs(shape).max(axis=1, keepdims=True), 1e-300)
    y = spread * shape
    target = magnitude / cond * 10.0 ** rng.uniform(-1, 1, size=(size, 1))
    sign = rng.choice([-1.0, 1.0], size=(size, 1))
    return y - lse64(y)[:, None] + sign * target


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


def max_abs(x: np.ndarray) -> float:
    """Magnitude of a logit vector: max_i |x_i| (exact)."""
    return float(np.max(np.abs(np.asarray(x, dtype=np.float64))))


def logit_extras(x: np.ndarray) -> dict[str, float]:
    """Per-input columns that locate overflow: max_i x_i and log-sum-exp(x) (float64)."""
    x64 = np.asarray(x, dtype=np.float64)
    return {"x_max": float(x64.max()), "lse": float(lse64(x64))}


# ---------------------------------------------------------------- exact helpers (mpmath)


def mp_exp_terms(x) -> tuple[mpmath.mpf, list, mpmath.mpf]:
    """a = max x, e_i = exp(x_i - a) and s = sum e_i at the working precision.

    Shifting by the exact maximum keeps every term in (0, 1]: mpmath has no overflow, but the
    shift keeps s near 1, so relative accuracy does not depend on max(x).
    """
    xs = list(x)
    a = max(xs)
    e = [mpmath.exp(v - a) for v in xs]
    return a, e, mpmath.fsum(e)


def mp_weighted_abs(x, g) -> mpmath.mpf:
    """S = sum_i |x_i| g_i."""
    return mpmath.fsum(abs(xi) * gi for xi, gi in zip(x, g, strict=True))


# ---------------------------------------------------------------- bound ingredients (float64)


def shift_terms64(x: np.ndarray, fmt: Format) -> dict[str, float]:
    """Quantities the first-order bounds of the shifted algorithms need, in float64.

    ``z = x - max(x)``; ``s = sum exp(z)`` (>= 1); ``gz = sum g_i |z_i|``; ``zmax = max|z|``;
    ``sub = n * min_subnormal``: the most that underflow of the n terms can lose in total.
    """
    x64 = np.asarray(x, dtype=np.float64)
    z = x64 - x64.max()
    g = softmax64(x64)
    return {
        "n": x64.size,
        "s": float(np.exp(z).sum()),
        "gz": float((g * np.abs(z)).sum()),
        "zmax": float(np.abs(z).max()),
        "gmax": float(g.max()),
        "gmin": float(g.min()),
        "sub": x64.size * fmt.min_subnormal,
        "u": fmt.u,
    }


def naive_overflows(x: np.ndarray, fmt: Format) -> bool:
    """True when exp(max x) or sum exp(x) exceeds the format's max (the naive forms fail)."""
    x64 = np.asarray(x, dtype=np.float64)
    return bool(lse64(x64) > np.log(fmt.max) or x64.max() > np.log(fmt.max))
