"""Dot products s = sum_i x_i y_i with low-precision inputs and a chosen accumulator.

The question (issue 17; DeepSeek-AI, *DeepSeek-V3 Technical Report*, arXiv:2412.19437, 2024,
section 3.3.2): FP8 GEMM on NVIDIA H800 tensor cores keeps "around 14 bits" of the accumulated
sum, which the report says gives a maximum relative error of nearly 2% at K = 4096; promoting
the partial sum to a float32 accumulator every N_C = 128 elements is its remedy. Here the
accumulator is emulated exactly, with its significand width and its rounding as parameters, and
measured against certified truth across K and the condition number.

An input is a pair of rows [x; y] of shape (2, K) (a batch: (batch, 2, K)); its size n is K.
Condition number kappa_dot = sum_i |x_i y_i| / |sum_i x_i y_i| (infinite when the sum is 0),
the condition number of summation applied to the exact products (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed. 2002, section 3.1); magnitude max(|x_i|, |y_i|).

Variants (batch kernels along the last axis, rows independent; the result has shape (..., 1)):

- ``float32_accumulator``: products and a left-to-right sum in float32 (float64 for float64
  input), the result left in float32, as a mixed-precision GEMM writes its accumulator. For
  inputs of p <= 12 bits (float8, bfloat16, float16) a product of two p-bit significands has at
  most 2p <= 24 bits, so it is exact in float32 wherever it lies in float32's normal range;
  only the K - 1 additions round: |E| <= gamma_{K-1}(2^-24) sum|x_i y_i|.
- ``in_format``: products and sum rounded to the input's format (ml_dtypes computes each
  operation in float32 and rounds once), the result in the format: Higham's (3.4),
  |E| <= gamma_K(u) sum|x_i y_i|. In float8 the sum stagnates or overflows; the rows show it.
- ``limited_accumulator``: the exact products added one by one into an accumulator of
  ``acc_bits`` significand bits (implicit bit included; float32 has 24) and float32's exponent
  range, rounded to nearest even (``acc_truncate`` = 0) or by truncating the aligned addend
  (``acc_truncate`` = 1, `truncated_add`); with ``promote_every`` = N > 0 the accumulator is
  cleared every N products after its value is added to a float32 accumulator (round to
  nearest), as DeepSeek-V3 does with N_C = 128; ``promote_every`` = 0 never promotes. The
  result is the float32 value the kernel writes. Bounds: `limited_bound`. The emulation
  keeps t bits at every exponent (no subnormal accumulator values): it can differ from such
  hardware only where a partial sum falls below 2^-126, which float8 inputs cannot reach:
  their products, and so every partial sum, are multiples of 2^-18 (e4m3fn) or 2^-32 (e5m2).

Split-K (K/splits chunks summed apart, then combined in float32) with a limited accumulator and
no promotion inside the chunks is ``limited_accumulator`` with ``promote_every`` = K / splits:
no separate variant.

The reference is exact: each product of two floats is an integer times a power of two, split
into three int64 pieces (`product_parts`) and added in Python's integers
(`precision.problems.summation.exact_sum`), so no term is lost at any K.
"""

from __future__ import annotations

import math

import numpy as np

from precision.core.formats import FORMATS, Format, get_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Unsupported, Variant
from precision.problems.summation import (
    _per_input,
    accurate_row_sums,
    dyadic,
    dyadic_parts,
    exact_sum,
)

FLOAT32 = FORMATS["float32"]

# ---------------------------------------------------------------- exact reference

HALF_BITS = 26
"""A 53-bit significand m is split as m = high * 2**26 + low (high < 2**27, low < 2**26), so
that each of the three partial products below is < 2**54 and fits in int64."""


def product_parts(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Integers (m, e) with x_i y_i = sum of the three m_k 2**e_k of term i, exactly.

    With x_i = a 2**f and y_i = b 2**g (|a|, |b| < 2**53, `dyadic_parts`) and the split
    |a| = a1 2**26 + a0: |a b| = a1 b1 2**52 + (a1 b0 + a0 b1) 2**26 + a0 b0, every piece
    < 2**54 and the same sign as the product. Returns int64 arrays of 3 n entries.
    """
    a, f = dyadic_parts(x)
    b, g = dyadic_parts(y)
    sign = np.sign(a) * np.sign(b)
    a, b = np.abs(a), np.abs(b)
    mask = (1 << HALF_BITS) - 1
    a1, a0, b1, b0 = a >> HALF_BITS, a & mask, b >> HALF_BITS, b & mask
    m = np.concatenate([sign * a1 * b1, sign * (a1 * b0 + a0 * b1), sign * a0 * b0])
    e = np.concatenate([f + g + 2 * HALF_BITS, f + g + HALF_BITS, f + g])
    return m, e


def dot_reference(xy: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact s = sum x_i y_i and kappa_dot = sum |x_i y_i| / |s| (inf when s = 0).

    The sum and its sign are decided on exact integers (`product_parts`, `exact_sum`) and
    handed to ``ctx`` as exact 53-bit pieces (`precision.problems.summation.dyadic`); inputs
    holding an infinity or NaN fall back to ``ctx.fsum`` of the exact products.
    """
    values = np.asarray(xy)
    x, y = values[0], values[1]
    if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
        terms = [a * b for a, b in zip(ctx.exact_list(x), ctx.exact_list(y), strict=True)]
        total = ctx.fsum(terms)
        return np.array([total], dtype=object), ctx.fsum(ctx.abs(v) for v in terms) / ctx.abs(total)
    m, e = product_parts(x, y)
    man, exp = exact_sum(m, e)
    abs_man, abs_exp = exact_sum(np.abs(m), e)
    total = dyadic(man, exp, ctx)
    cond = dyadic(abs_man, abs_exp, ctx) / ctx.abs(total) if man != 0 else ctx.inf
    return np.array([total], dtype=object), cond


def dot_magnitude(xy: np.ndarray) -> float | np.ndarray:
    """max(|x_i|, |y_i|) over both rows (exact): a float for one input, (batch,) for a batch."""
    values = np.abs(np.asarray(xy, dtype=np.float64))
    return _per_input(values.max(axis=(-2, -1)))


def estimate_dots(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa_dot, magnitude) of each input of a batch (batch, 2, K) in float64, used only to
    pick candidates: the float64 products (exact for inputs of at most 26 bits, relative error
    2**-53 for float64 candidates) summed as in twice the working precision
    (`accurate_row_sums`), so that the sum is not lost to cancellation."""
    products = X[:, 0, :] * X[:, 1, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.abs(products).sum(axis=1) / np.abs(accurate_row_sums(products))
    return cond, dot_magnitude(X)


# ---------------------------------------------------------------- inputs


def propose_dots(rng: np.random.Generator, *, n: int, magnitude, cond, size: int) -> np.ndarray:
    """Candidates of shape (size, 2, n) aimed at max(|x|, |y|) ~ magnitude and kappa_dot ~ cond
    (floats, or one target per candidate as arrays of shape (size,)).

    Two constructions (Gaussian magnitudes |x_i|, |y_i| ~ |N(0, 1)|, the data of a layer):

    * *biased signs*, for targets up to sqrt(n) / 2: each product is positive with probability
      (1 + 1/kappa) / 2, so E sum = sum|x y| / kappa; the random sum spreads kappa around the
      target and the sampler keeps the nearest (unbiased signs give kappa ~ sqrt(n)).
    * *cancelling pairs*, above: g pairs (x_j, y_j), (-x_j, y_j) whose products cancel exactly
      in every format (negation is exact) and n - 2g same-signed residual products of total
      R = G / (kappa - 1), G the pairs' sum|x y|, so kappa = (G + R) / R before rounding.

    Positions are shuffled (x and y alike), the sign of the sum is random, and x and y are
    scaled by one power of two (exact) to put the magnitude within a factor 2 of its target.
    """
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))
    cond = np.maximum(np.broadcast_to(np.asarray(cond, dtype=np.float64), (size,)), 1.0)
    x = np.abs(rng.standard_normal((size, n)))
    y = np.abs(rng.standard_normal((size, n)))
    paired = (cond > 0.5 * math.sqrt(n)) & (n >= 3)
    sign = _biased_signs(rng, cond, n)
    x_pairs, y_pairs = _cancelling_pairs(rng, x, y, cond)
    x = np.where(paired[:, None], x_pairs, x * sign)
    y = np.where(paired[:, None], y_pairs, y)
    x *= rng.choice([-1.0, 1.0], size=(size, 1))
    order = rng.permuted(np.broadcast_to(np.arange(n), (size, n)), axis=1)
    X = np.stack([np.take_along_axis(x, order, 1), np.take_along_axis(y, order, 1)], axis=1)
    peak = np.abs(X).max(axis=(1, 2))
    scale = 2.0 ** np.round(np.log2(magnitude / np.where(peak > 0, peak, 1.0)))
    return X * scale[:, None, None]


def _biased_signs(rng: np.random.Generator, cond: np.ndarray, n: int) -> np.ndarray:
    """Signs +1 with probability (1 + 1/cond) / 2, shape (size, n)."""
    positive = rng.random((cond.size, n)) < 0.5 * (1.0 + 1.0 / cond[:, None])
    return np.where(positive, 1.0, -1.0)


def _cancelling_pairs(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, cond: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """x, y rebuilt as g cancelling pairs and a positive residual (see `propose_dots`)."""
    size, n = x.shape
    half = max((n - 1) // 2, 1)
    g = rng.integers(1, half + 1, size=(size, 1))
    column = np.arange(n)[None, :]
    first, second = column < g, (column >= g) & (column < 2 * g)
    partner = np.where(second, column - g, column)  # the second of a pair copies the first
    x = np.take_along_axis(x, partner, 1)
    y = np.take_along_axis(y, partner, 1)
    x = np.where(second, -x, x)
    pairs = first | second
    G = np.where(pairs, np.abs(x * y), 0.0).sum(axis=1)
    residual = np.where(pairs, 0.0, x * y).sum(axis=1)
    R = G / np.maximum(cond - 1.0, 1e-300)
    # both factors scaled by sqrt: residual entries stay as far above underflow as they can
    factor = np.sqrt(R / np.where(residual > 0, residual, 1.0))[:, None]
    return np.where(pairs, x, x * factor), np.where(pairs, y, y * factor)


# ---------------------------------------------------------------- the accumulators


def _operands(X: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """x and y of a batch (..., 2, K), converted exactly to ``dtype``."""
    X = np.asarray(X)
    return X[..., 0, :].astype(dtype), X[..., 1, :].astype(dtype)


def float32_accumulator_dot(X: np.ndarray) -> np.ndarray:
    """Products and a left-to-right sum in float32, result not rounded further: shape
    (..., 1). ``np.add.accumulate`` is a sequential loop along the last axis, row by row.

    Raises
    ------
    Unsupported
        For float64 input: a float32 accumulator would first round the input itself, and
        accumulating in float64 instead would be another variant (``in_format``) under this
        one's name.
    """
    if np.asarray(X).dtype == np.float64:
        raise Unsupported("float32_accumulator takes inputs of at most float32's precision")
    x, y = _operands(X, np.float32)
    return np.add.accumulate(x * y, axis=-1)[..., -1:]


def in_format_dot(X: np.ndarray) -> np.ndarray:
    """Products and a left-to-right sum rounded to the input's format: shape (..., 1)."""
    X = np.asarray(X)
    return np.add.accumulate(X[..., 0, :] * X[..., 1, :], axis=-1)[..., -1:]


ACC_BITS_RANGE = (2, 24)
"""Accumulator significands the emulation takes: at most float32's 24 bits, so that every
accumulator value (t bits, float32's exponent range) is exactly a float32."""

OVERFLOW = 2.0**128
"""The first magnitude beyond float32's exponent range: an accumulator value that reaches it
(after its rounding) is infinite."""

PRODUCT_BITS_MAX = 26
"""Widest input significand whose products the emulation forms exactly in float64 (2 x 26 <=
53): float32 and narrower."""

NO_EXPONENT = -100_000
"""Exponent given to 0 in `truncated_add`, below any float's, so the other operand aligns."""


def nearest_add(s: np.ndarray, a: np.ndarray, t: int) -> np.ndarray:
    """s + a rounded once to t significand bits, to nearest, ties to even (elementwise).

    Exact for t <= 52 and operands of float64 (no float64 overflow): TwoSum gives s + a =
    h + l exactly (h = fl64(s + a)); h is rounded to the t-bit grid of its binade by scaling
    (``ldexp``, exact) and ``rint``. That equals rounding h + l, since the midpoints of the
    t-bit grid are float64 numbers and float64 rounding is monotone: h + l lies on h's side of
    every midpoint, except when h *is* a midpoint, where the sign of l decides (l = 0: a tie,
    to even). Below a power of two h rounds up to it, which h + l (within half a float64 ulp)
    does too.
    """
    h = s + a
    bb = h - s
    low = (s - (h - bb)) + (a - bb)
    frac, e = np.frexp(h)  # h = frac 2**e, 0.5 <= |frac| < 1: the grid step is 2**(e - t)
    r = np.ldexp(frac, t)
    n = np.rint(r)
    tie = (np.abs(r - np.trunc(r)) == 0.5) & (low != 0)
    n = np.where(tie, np.where(low > 0, np.ceil(r), np.floor(r)), n)
    return _overflowed(np.ldexp(n, e - t))


def truncated_add(s: np.ndarray, a: np.ndarray, t: int) -> np.ndarray:
    """s + a in a t-bit accumulator that truncates the aligned addend (elementwise).

    Both operands are aligned to the larger one's binade [2**(E-1), 2**E) and cut to its grid
    q = 2**(E - t) toward zero (the larger one is already on it when it has at most t bits; the
    smaller one loses its bits below q: its magnitude never grows); the two integers n_s, n_a
    (|n| < 2**t) are added exactly, and a carry into bit t+1 is normalised by truncating one
    more bit. Every step is exact in float64: scaling by a power of two (``ldexp``), ``trunc``,
    and a sum of two integers below 2**(t+1).
    """
    e = np.maximum(_exponent(s), _exponent(a))
    n = np.trunc(np.ldexp(s, t - e)) + np.trunc(np.ldexp(a, t - e))
    n = np.where(np.abs(n) >= 2.0**t, 2.0 * np.trunc(0.5 * n), n)  # carry: one more bit cut
    return _overflowed(np.ldexp(n, e - t))


def _exponent(v: np.ndarray) -> np.ndarray:
    """e with |v| in [2**(e-1), 2**e) (``frexp``'s), `NO_EXPONENT` for 0."""
    _, e = np.frexp(v)
    return np.where(v == 0, NO_EXPONENT, e)


def _overflowed(v: np.ndarray) -> np.ndarray:
    """Values beyond float32's range as infinities (the accumulator has float32's exponents)."""
    return np.where(np.abs(v) >= OVERFLOW, np.copysign(np.inf, v), v)


SCALAR_ROWS = 32
"""Up to this many rows (accumulators) `limited_sum` runs each row on Python floats
(`_nearest_row_sum`, `_truncated_row_sum`: about 0.5 us a term, measured); beyond, one numpy
step per term vectorised across the rows (about 20 us a step for up to a few hundred rows).
The two cost the same near 35 rows. Both give the same sums, bit for bit
(tests/problems/test_dot.py)."""


def limited_sum(terms: np.ndarray, *, t: int, truncate: bool) -> np.ndarray:
    """Left-to-right sum along the last axis in a t-bit accumulator starting at 0 (float64
    values on the t-bit grid, shape ``terms.shape[:-1]``). Few rows (a batch without
    promotion) run row by row on Python floats; many (the chunks of a promoting accumulator)
    run one vectorised step per term, all rows at once. The scalar steps are the vectorised
    ones written for Python floats, the same IEEE float64 operations in the same order (Python
    floats are IEEE doubles, each operation correctly rounded, nothing fused), so the sums are
    identical bit for bit."""
    terms = np.asarray(terms, dtype=np.float64)
    rows = terms.reshape(-1, terms.shape[-1])
    if len(rows) <= SCALAR_ROWS:
        row_sum = _truncated_row_sum if truncate else _nearest_row_sum
        sums = [row_sum(row.tolist(), t) for row in rows]
        return np.array(sums, dtype=np.float64).reshape(terms.shape[:-1])
    add = truncated_add if truncate else nearest_add
    columns = np.ascontiguousarray(np.moveaxis(terms, -1, 0))
    s = np.zeros(terms.shape[:-1])
    for a in columns:
        s = add(s, a, t)
    return s


SCALAR_LIMIT = 2.0**127
"""The scalar steps run only while the operands (and s + a) lie below this magnitude: then
no result reaches `OVERFLOW` (a t-bit rounding of |v| < 2**127 is at most 2**127) and no
step meets an infinity or NaN. A step outside (or a NaN) runs the vectorised step itself."""


def _nearest_row_sum(terms: list[float], t: int) -> float:
    """`nearest_add` folded over one row of Python floats from s = 0 (`limited_sum`).

    Step by step the operations of `nearest_add`: h = fl(s + a) = f 2**e (``frexp``),
    r = f 2**t (exact, |r| < 2**t), n = round(r) half to even (Python's ``round`` is numpy's
    ``rint``); only where r's fraction is exactly 0.5 (h a midpoint) the rounding error low of
    h (TwoSum: h + low = s + a exactly) is computed, and its sign, if nonzero, decides;
    result n 2**(e - t) (exact: |n| <= 2**t <= 2**24). h = 0 is kept (n = 0 exactly when h = 0,
    since |r| >= 2**(t-1) otherwise). Below `SCALAR_LIMIT` nothing overflows; a step with
    |h| beyond it, or a NaN, runs `nearest_add` itself.
    """
    frexp, ldexp = math.frexp, math.ldexp
    s = 0.0
    for a in terms:
        h = s + a
        if not -SCALAR_LIMIT < h < SCALAR_LIMIT:
            s = float(nearest_add(np.float64(s), np.float64(a), t))
            continue
        if h == 0.0:
            s = h
            continue
        frac, e = frexp(h)
        r = ldexp(frac, t)
        n = round(r)
        if abs(r - int(r)) == 0.5:  # h is a midpoint: the rounding error of h decides
            bb = h - s
            low = (s - (h - bb)) + (a - bb)
            if low != 0.0:
                n = math.ceil(r) if low > 0.0 else math.floor(r)
        s = ldexp(n, e - t)
    return s


def _truncated_row_sum(terms: list[float], t: int) -> float:
    """`truncated_add` folded over one row of Python floats from s = 0 (`limited_sum`).

    Step by step the operations of `truncated_add`: E the binade exponent (``frexp``) of the
    larger operand in magnitude (``frexp``'s exponent grows with |v|, so it is the larger of
    the two exponents), n = trunc(s 2**(t-E)) + trunc(a 2**(t-E)) (each scaling exact or, for
    an operand far below, an underflow to 0, which ``trunc`` gives anyway), a carry
    (|n| >= 2**t) cut by one more bit, result n 2**(E - t). The integers are exact
    (|n| < 2**(t+1)); a zero result is +0 as in float64 (an exact cancellation, or 0 + 0
    with s = +0: s is never -0). Below `SCALAR_LIMIT` nothing overflows; an operand beyond it,
    or a NaN, runs `truncated_add` itself.
    """
    frexp, ldexp = math.frexp, math.ldexp
    top = 1 << t
    s = 0.0
    for a in terms:
        if not (-SCALAR_LIMIT < s < SCALAR_LIMIT and -SCALAR_LIMIT < a < SCALAR_LIMIT):
            s = float(truncated_add(np.float64(s), np.float64(a), t))
            continue
        big = s if abs(s) >= abs(a) else a
        if big == 0.0:  # both zero: 0 + 0 with s = +0
            s = 0.0
            continue
        e = frexp(big)[1]
        n = int(ldexp(s, t - e)) + int(ldexp(a, t - e))  # int() truncates toward zero
        if not -top < n < top:
            n = 2 * int(0.5 * n)
        s = ldexp(n, e - t)
    return s


def limited_accumulator_dot(
    X: np.ndarray, *, acc_bits: float, acc_truncate: float, promote_every: float
) -> np.ndarray:
    """The dot product through a limited accumulator (module docstring), shape (..., 1),
    float32.

    The products are exact in float64 (inputs of at most 26 bits); with ``promote_every`` = N
    the K products are cut into chunks of N (the last one padded with zeros, which leave a
    t-bit accumulator unchanged under both roundings), each chunk summed in its own t-bit
    accumulator from 0, and the chunk sums (exact in float32) added left to right in float32.
    N >= K is one chunk, the accumulator's own value: the same as never promoting.

    Raises
    ------
    Unsupported
        For inputs wider than 26 bits (float64): their products are not exact in float64.
    ValueError
        For ``acc_bits`` outside `ACC_BITS_RANGE`, ``acc_truncate`` not 0 or 1, or a negative
        or fractional ``promote_every``.
    """
    t, truncate, every = _accumulator_options(acc_bits, acc_truncate, promote_every)
    X = np.asarray(X)
    if get_format(X.dtype).p > PRODUCT_BITS_MAX:
        raise Unsupported(
            f"limited_accumulator emulates inputs of at most {PRODUCT_BITS_MAX} bits exactly; "
            f"{get_format(X.dtype).name} products are not exact in float64"
        )
    x, y = _operands(X, np.float64)
    products = x * y  # at most 2 x 24 bits: exact in float64
    k = products.shape[-1]
    if every == 0 or every >= k:
        return limited_sum(products, t=t, truncate=truncate).astype(np.float32)[..., None]
    chunks = -(-k // every)
    padded = np.zeros((*products.shape[:-1], chunks * every))
    padded[..., :k] = products
    partial = limited_sum(
        padded.reshape(*products.shape[:-1], chunks, every), t=t, truncate=truncate
    )
    return np.add.accumulate(partial.astype(np.float32), axis=-1)[..., -1:]


def _accumulator_options(acc_bits, acc_truncate, promote_every) -> tuple[int, bool, int]:
    """(t, truncate, N) from the float parameters, checked."""
    low, high = ACC_BITS_RANGE
    if acc_bits != int(acc_bits) or not low <= acc_bits <= high:
        raise ValueError(f"acc_bits must be an integer in [{low}, {high}], got {acc_bits!r}")
    if acc_truncate not in (0, 1):
        raise ValueError(f"acc_truncate must be 0 (nearest) or 1 (truncate), got {acc_truncate!r}")
    if promote_every != int(promote_every) or promote_every < 0:
        raise ValueError(
            f"promote_every must be a non-negative integer (0: never), got {promote_every!r}"
        )
    return int(acc_bits), bool(acc_truncate), int(promote_every)


# ---------------------------------------------------------------- bounds


def grown(k: float, u: float) -> float:
    """(1 + u)**k - 1: the relative growth of k roundings of relative error at most u
    (<= gamma_k = k u / (1 - k u) where k u < 1, Higham 2002, lemma 3.1; finite beyond)."""
    return math.expm1(k * math.log1p(u)) if k > 0 else 0.0


def _products64(X: np.ndarray) -> np.ndarray:
    """x_i y_i in float64 (exact for inputs of at most 26 bits)."""
    x, y = _operands(X, np.float64)
    return x * y


def _sum_and_abs_sum(products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sum p_i and sum |p_i| along the last axis, each correctly rounded to float64
    (``math.fsum`` row by row: the same value for a row alone and in any batch, where numpy's
    pairwise sum of a 2-D array may order a row's terms differently); NaN where fsum
    overflows."""
    rows = products.reshape(-1, products.shape[-1]).tolist()
    sums = np.array([[_fsum(row), _fsum(np.abs(row).tolist())] for row in rows])
    sums = sums.reshape(*products.shape[:-1], 2)
    return sums[..., 0], sums[..., 1]


def _fsum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # an intermediate overflow, inf - inf
        return math.nan


def _relative_bound(
    growth: float, X: np.ndarray, *, limit: float, smallest: float
) -> float | np.ndarray:
    """growth * kappa_dot along the batch (a float for one input), NaN where it does not
    apply: the sum is 0 (no relative error), a partial sum could reach ``limit`` (sum|x y|
    (1 + growth) >= limit: overflow), or a nonzero product is below ``smallest`` (it or a
    partial sum could underflow)."""
    products = _products64(X)
    s, abs_sum = _sum_and_abs_sum(products)
    tiny = np.abs(products)
    tiny = ((tiny > 0) & (tiny < smallest)).any(axis=-1)
    with np.errstate(all="ignore"):
        fails = (s == 0) | (abs_sum * (1 + growth) >= limit) | tiny
        return _per_input(np.where(fails, np.nan, growth * abs_sum / np.abs(s)))


def float32_accumulator_bound(X: np.ndarray, fmt: Format) -> float | np.ndarray:
    """(1 + u)^(K-1+r) - 1 times kappa_dot, u = 2^-24: K - 1 additions, and r = 1 rounding
    of each product unless 2p <= 24 (exact products). Higham 2002, (3.4) with exact products;
    NaN where a product lies below float32's normal range."""
    wide = FLOAT32
    k = np.shape(X)[-1]
    rounded_products = 2 * fmt.p > wide.p
    growth = grown(k - 1 + rounded_products, wide.u)
    return _relative_bound(growth, X, limit=wide.max, smallest=wide.min_normal)


def in_format_bound(X: np.ndarray, fmt: Format) -> float | np.ndarray:
    """gamma-type (1 + u)^K - 1 times kappa_dot in the format's u (Higham 2002, (3.4): a product
    and at most K - 1 additions per term); NaN where a partial sum could overflow or a product
    falls below the format's normal range."""
    growth = grown(np.shape(X)[-1], fmt.u)
    return _relative_bound(growth, X, limit=fmt.max, smallest=fmt.min_normal)


TRUNCATION_FACTOR_NARROW = 4
"""Truncating step, products of at most t bits: |fl(s + a) - (s + a)| <= 4 * 2**-t (|s| + |a|).
The smaller operand loses less than q = 2**(E-t) <= 2**(1-t) max(|s|, |a|) (the larger is at
least 2**(E-1)), and a carry cut loses less than 2q <= 2**(1-t) |sum| <= 2**(1-t) (|s| + |a|)
(a carry needs |sum| >= 2**E and operands of one sign). See `limited_bound`."""

TRUNCATION_FACTOR_WIDE = 6
"""As `TRUNCATION_FACTOR_NARROW` when products have more than t bits: the larger operand is
cut too (less than q more), 2**(2-t) + 2**(1-t) = 6 * 2**-t."""


def limited_bound(
    X: np.ndarray, fmt: Format, *, acc_bits: float, acc_truncate: float, promote_every: float
) -> float | np.ndarray:
    """Bound on the relative error of `limited_accumulator_dot`:
    ((1 + u_t)^N (1 + 2^-24)^(m-1) - 1) kappa_dot.

    Each step of the t-bit accumulator errs by at most u_t (|s| + |a|) (|s| the accumulator,
    a the exact product): u_t = 2^-t rounding to nearest (a relative error of s + a), and
    4 * 2^-t or 6 * 2^-t truncating (`TRUNCATION_FACTOR_NARROW`, `..._WIDE`; the "no guard
    digit" model of Higham 2002, section 2.4). Summing the K error terms with
    |s_i| <= (1 + u_t)^i sum_{j<=i} |a_j| gives ((1 + u_t)^N - 1) sum|a| for a chunk of N
    terms (N = K without promotion). A chunk's sum is exact in float32; the m = ceil(K/N)
    chunk sums pass through at most m - 1 float32 roundings. NaN where the input is wider than
    26 bits (no result), the sum is 0, a partial sum could pass float32's range, or a nonzero
    product is below 2^-102 (then the float32 chunk sums need not be exact: a t-bit multiple of
    2^-149 always is).
    """
    t, truncate, every = _accumulator_options(acc_bits, acc_truncate, promote_every)
    k = np.shape(X)[-1]
    if fmt.p > PRODUCT_BITS_MAX:
        return _per_input(np.full(np.shape(X)[:-2], np.nan))
    if truncate:
        u = (TRUNCATION_FACTOR_WIDE if 2 * fmt.p > t else TRUNCATION_FACTOR_NARROW) * 2.0**-t
    else:
        u = 2.0**-t
    chunk = k if every == 0 else min(every, k)
    chunks = -(-k // chunk)
    growth = math.expm1(chunk * math.log1p(u) + (chunks - 1) * math.log1p(FLOAT32.u))
    return _relative_bound(growth, X, limit=FLOAT32.max, smallest=2.0**-102)


# ---------------------------------------------------------------- the problem


def float32_or_wider(fmt: Format) -> str:
    return "float64" if fmt.p > 24 else "float32"


def limited(fmt: Format) -> str:
    """The limited accumulator: its width is the row's ``acc_bits`` column."""
    return "limited (acc_bits)"


ACC_BITS = (12.0, 13.0, 14.0, 16.0, 24.0)
"""Default accumulator widths: 13 and 14 bracket the "around 14 bits" of DeepSeek-V3 (whether
or not it counts the implicit bit); 24 is float32 (with rounding to nearest it reproduces the
float32 accumulator bit for bit)."""

VARIANTS = {
    "float32_accumulator": Variant(
        "float32_accumulator",
        float32_accumulator_dot,
        float32_accumulator_bound,
        float32_or_wider,
        description="products and left-to-right sum in float32, result in float32",
        batched=True,
    ),
    "in_format": Variant(
        "in_format",
        in_format_dot,
        in_format_bound,
        description="products and left-to-right sum rounded to the input's format",
        batched=True,
    ),
    "limited_accumulator": Variant(
        "limited_accumulator",
        limited_accumulator_dot,
        limited_bound,
        limited,
        description="exact products into an acc_bits-bit accumulator (nearest or truncating), "
        "promoted to float32 every promote_every products (0: never)",
        compute_mode="emulated",
        grid={"acc_bits": ACC_BITS, "acc_truncate": (0.0, 1.0), "promote_every": (0.0, 128.0)},
        batched=True,
    ),
}

DOT = Problem(
    name="dot",
    description="dot product x . y of low-precision inputs: float32, in-format and limited "
    "(acc_bits, truncating or not, promoted every N) accumulators",
    reference=dot_reference,
    magnitude=dot_magnitude,
    magnitude_name="max(|x|,|y|)",
    propose=propose_dots,
    estimate=estimate_dots,
    variants=VARIANTS,
    input_shape=lambda n: (2, n),
    batched=True,
)
