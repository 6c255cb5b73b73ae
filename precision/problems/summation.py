"""Summation, s = sum_i x_i: order, compensation and accumulator precision.

Condition number kappa_sum = sum_i |x_i| / |sum_i x_i| (infinite when the sum is 0); magnitude
max_i |x_i|. Bounds on |s^ - s| (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd
ed. 2002, ch. 4; ../shared/NUMERICS.md), with gamma_k = k u / (1 - k u): recursive summation in
any order gamma_{n-1} sum|x_i|; pairwise summation gamma_{ceil(log2 n)} sum|x_i|; Kahan's
compensated summation (2u + O(n u^2)) sum|x_i| (Knuth, TAOCP vol. 2, 4.2.2). Divided by |s| they
bound the relative error by gamma * kappa_sum.

The variants are batch kernels (`precision.problems.base.Variant` with ``batched=True``): each
sums along the last axis, a vector (n,) to (1,) and a batch (B, n) to (B, 1), every row with the
operations, order and dtype it meets alone; the bounds give a float for a vector and a (B,)
array for a batch.

The reference is exact: a sum of floats is a sum of integers times powers of two, added here in
Python's integers (`exact_sum`) and handed to the number system as a few exact 53-bit pieces
(`dyadic`), so neither engine can lose a term (``mpmath.fsum`` silently drops terms more than
2 * prec bits below the running sum) and 10^5 terms cost milliseconds.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import numpy as np
import pandas as pd

from precision.core.formats import FORMATS, STUDY_FORMATS, Format, get_format, round_to_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.core.ops import NUMPY, Ops
from precision.problems.base import Problem, Variant, numpy_sum_accumulator, same_as_format

# ---------------------------------------------------------------- exact sums of floats


def dyadic_parts(x) -> tuple[np.ndarray, np.ndarray]:
    """Integers (m, e) with x_i = m_i * 2**e_i exactly, |m_i| < 2**53 (int64 arrays).

    ``frexp`` splits each float64 (every registry format is a subset) into a significand in
    [0.5, 1) and an exponent; 2**53 times the significand is an integer. An object array of
    mpf (`precision.truth.exact.to_mpf_array`) is taken through ``float``, which must be exact.
    """
    values = np.asarray(x)
    if values.dtype == object:
        floats = np.array([float(v) for v in values.ravel()], dtype=np.float64)
        if any(f != v for f, v in zip(floats.tolist(), values.ravel(), strict=True)):
            raise ValueError("dyadic_parts: an mpf input is not a float64 value")
        values = floats
    if not np.isfinite(values.astype(np.float64)).all():
        raise ValueError("dyadic_parts: infinities and NaN have no integer form")
    significand, exponent = np.frexp(values.astype(np.float64).ravel())
    return (significand * 2.0**53).astype(np.int64), exponent.astype(np.int64) - 53


def exact_sum(m: np.ndarray, e: np.ndarray) -> tuple[int, int]:
    """sum_i m_i * 2**e_i as (M, E) with M * 2**E exact (Python integers).

    Terms are grouped by exponent; each group is summed in int64 after splitting m_i into a
    high part (< 2**27) and a low part (< 2**26), so that 10^6 terms cannot overflow, and the
    groups are then shifted onto the smallest exponent in Python's unbounded integers.
    """
    if m.size == 0:
        return 0, 0
    order = np.argsort(e, kind="stable")
    m, e = m[order], e[order]
    starts = np.flatnonzero(np.r_[True, np.diff(e) != 0])
    high, low = m >> 26, m & ((1 << 26) - 1)  # m = high * 2**26 + low, low >= 0
    high_sums, low_sums = np.add.reduceat(high, starts), np.add.reduceat(low, starts)
    base = int(e[0])
    total = 0
    groups = zip(high_sums.tolist(), low_sums.tolist(), e[starts].tolist(), strict=True)
    for h, lo_, exponent in groups:
        total += ((h << 26) + lo_) << (exponent - base)
    return total, base


def float_sum(x) -> tuple[int, int]:
    """The exact sum of the floats of ``x`` as (M, E): value M * 2**E."""
    return exact_sum(*dyadic_parts(x))


def float_abs_sum(x) -> tuple[int, int]:
    """The exact sum of |x_i| as (M, E)."""
    m, e = dyadic_parts(x)
    return exact_sum(np.abs(m), e)


def power_of_two(k: int, ctx: NumberSystem) -> Number:
    """2**k exactly in ``ctx``, as a product of float powers of two within float64's range."""
    value = ctx.exact(1.0)
    while k:
        step = max(-1000, min(1000, k))
        value = value * ctx.exact(2.0**step)  # a power of two: exact in mpmath and Arb
        k -= step
    return value


def dyadic(man: int, exp: int, ctx: NumberSystem) -> Number:
    """man * 2**exp in ``ctx``, from 53-bit pieces that are exact floats.

    The pieces are added by ``ctx.fsum``: a rigorous ball in Arb; in mpmath one rounding at the
    working precision, except that a piece more than 2 * prec bits below the others (after a
    run of zero pieces) is dropped. That can only move a value lying exactly on a rounding tie
    of the working precision, and a tie is re-evaluated at `precision.truth.exact.ZERO_PREC` bits.
    """
    sign, man = (-1 if man < 0 else 1), abs(man)
    pieces, shift = [], 0
    while man:
        chunk = man & ((1 << 53) - 1)
        if chunk:
            pieces.append(ctx.exact(float(sign * chunk)) * power_of_two(exp + shift, ctx))
        man >>= 53
        shift += 53
    return ctx.fsum(reversed(pieces)) if pieces else ctx.exact(0.0)


# ---------------------------------------------------------------- reference


def summation_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact s = sum x_i and kappa_sum = sum |x_i| / |s| (inf when s = 0), from integers.

    The sum and its sign are decided on exact integers, never by comparing balls; inputs with
    an infinity or NaN fall back to ``ctx.fsum`` of the exact values (which propagates them).
    """
    values = np.asarray(x)
    if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
        terms = ctx.exact_list(values)
        total = ctx.fsum(terms)
        return np.array([total], dtype=object), ctx.fsum(ctx.abs(v) for v in terms) / ctx.abs(total)
    man, exp = float_sum(values)
    abs_man, abs_exp = float_abs_sum(values)
    total = dyadic(man, exp, ctx)
    cond = dyadic(abs_man, abs_exp, ctx) / ctx.abs(total) if man != 0 else ctx.inf
    return np.array([total], dtype=object), cond


def sum_and_abs_sum64(x: np.ndarray) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """(s, sum |x_i|) in float64 along the last axis: s correctly rounded (``math.fsum``, one
    row at a time), sum |x| to ~1e-16 (``np.sum``, pairwise). Floats for one vector, (B,)
    arrays for a batch (B, n).

    s is NaN where ``math.fsum`` raises (an intermediate sum past float64's range, or
    inf - inf): no relative error bound applies there, which is what the runner made of the
    raised OverflowError before bounds took batches.
    """
    x64 = np.ascontiguousarray(np.atleast_1d(np.asarray(x, dtype=np.float64)))
    key = (x64.shape, hashlib.blake2b(x64, digest_size=16).digest())
    if _LAST_SUMS.get("key") != key:
        rows = x64.reshape(-1, x64.shape[-1]).tolist()
        sums = np.array([_fsum(row) for row in rows], dtype=np.float64).reshape(x64.shape[:-1])
        _LAST_SUMS.update(key=key, value=(sums, np.sum(np.abs(x64), axis=-1)))
    sums, abs_sums = _LAST_SUMS["value"]
    return _per_input(sums.copy()), _per_input(abs_sums.copy())  # the caller's to change


_LAST_SUMS: dict = {}
"""The last batch's (key, (s, sum|x|)) in `sum_and_abs_sum64`: the runner bounds every variant
of a format on the same batch, and ``math.fsum`` over 10^5 terms (2-5 ms a row) cost more
than the kernels. Keyed by the batch's shape and a 128-bit digest of its float64 bytes."""


def _fsum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # "intermediate overflow", "-inf + inf in fsum"
        return math.nan


def _per_input(values) -> float | np.ndarray:
    """A bound (or float64 quantity) as bounds return it: a Python float for one input (a 0-d
    result), the float64 array over the batch otherwise."""
    values = np.asarray(values, dtype=np.float64)
    return float(values) if values.ndim == 0 else values


def estimate_sums(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa_sum, max|x|) of each row in float64, with the sum from `accurate_row_sums`: a
    float64 ``np.sum`` would lose the estimate once kappa passes ~1e13."""
    with np.errstate(divide="ignore"):
        return np.abs(X).sum(axis=1) / np.abs(accurate_row_sums(X)), np.abs(X).max(axis=1)


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: s = fl(a + b) and the rounding error e, a + b = s + e exactly."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def accurate_row_sums(X: np.ndarray) -> np.ndarray:
    """Row sums as accurate as if computed in twice the working precision (Ogita, Rump &
    Oishi's Sum2, with pairwise instead of sequential TwoSums, vectorised over rows): relative
    error about u + (log2 n)^2 u^2 kappa_sum, so float64 estimates hold up to kappa ~ 1e25."""
    s = np.asarray(X, dtype=np.float64)
    errors = np.zeros(s.shape[0])
    while s.shape[1] > 1:
        if s.shape[1] % 2:
            s = np.concatenate([s, np.zeros((s.shape[0], 1))], axis=1)
        s, e = two_sum(s[:, 0::2], s[:, 1::2])
        errors += e.sum(axis=1)
    return s[:, 0] + errors


def max_abs(x: np.ndarray) -> float:
    """max_i |x_i| (exact)."""
    return float(np.max(np.abs(np.asarray(x, dtype=np.float64))))


# ---------------------------------------------------------------- inputs


def propose_sums(
    rng: np.random.Generator, *, n: int, magnitude: float, cond: float, size: int
) -> np.ndarray:
    """Candidate vectors, shape (size, n), aimed at max|x| ~ magnitude and kappa_sum ~ cond.

    Most candidates are *cancelling triples* (p, q, -(p + q)) plus same-signed residual terms:
    the triples carry the magnitude and cancel, the residual (total R = G / (kappa - 1) for
    triples of total G = sum of their |terms|) is what remains, so kappa_sum = (G + R) / R. This
    is Ogita, Rump & Oishi's idea (SIAM J. Sci. Comput. 26(6), 2005: big terms that cancel, small
    ones that remain) made to survive rounding: the bits of p and q are chosen so that the
    triple still cancels exactly after rounding to bfloat16, float16 or float32
    (`_cancelling_triples`), while each format receives full-length significands. Exact
    negatives (a, -a) would do too but hand sorted orders an unfair win: sorting
    by magnitude makes every pair adjacent. Below a target of `SAME_SIGN_BELOW` (and for n < 4)
    the candidates are same-signed uniform(0, 1) vectors instead (kappa = 1, the stagnation case
    of recursive summation). Entries are shuffled, signs flipped at random, and everything is
    scaled by a power of two (exact) to put max|x| within a factor sqrt(2) of magnitude. At most
    `CANDIDATE_ELEMENTS` numbers are drawn: long vectors get fewer candidates than ``size`` (at
    least 16; `Problem` allows fewer for a problem that is not batched).
    """
    distinct = min(size, max(16, CANDIDATE_ELEMENTS // n))
    if cond < SAME_SIGN_BELOW or n < 4:
        X = rng.uniform(0.0, 1.0, size=(distinct, n))
    else:
        X = _cancelling_triples(rng, n, cond * 10.0 ** rng.uniform(-0.3, 0.3, size=distinct))
    X *= rng.choice([-1.0, 1.0], size=(distinct, 1))
    peak = np.abs(X).max(axis=1, keepdims=True)
    X *= 2.0 ** np.round(np.log2(magnitude / np.where(peak > 0, peak, 1.0)))
    return X


CANDIDATE_ELEMENTS = 2_000_000
"""Most numbers `propose_sums` draws per call: long vectors get fewer candidates (at least 16).
They hit their target by construction, and drawing 128 candidates of 10^5 terms cost more than
the rest of the input's work. (They were once repeated to ``size`` rows, which picked the same
inputs, copies being equally near the target, but estimated every copy: 0.8 of the
1.1 s an input of 10^5 terms took to draw.)"""


SAME_SIGN_BELOW = 5.0
"""`propose_sums` aims below this condition number with same-signed uniform data (kappa = 1)."""


KEPT_BITS = (8, 11, 24)
"""Precisions (bits) of bfloat16, float16 and float32, at which the triples must still cancel."""


def _cancelling_triples(rng: np.random.Generator, n: int, cond: np.ndarray) -> np.ndarray:
    """Rows of g_r cancelling triples and a residual (see `propose_sums`), shuffled.

    p and q are random 53-bit integers in [2**52, 2**53) (times a power of two), r = -(p + q).
    For each narrower precision t (`KEPT_BITS`) the first bit that rounding to t bits drops is
    cleared in p and q, so that rounding truncates, and q's last kept bit is set to p's: then
    round_t(p) + round_t(q) lies on the grid of r's binade and round_t(r) = -(round_t(p) +
    round_t(q)) exactly (the dropped parts sum to less than half of r's spacing). Bit 0 agrees
    too, so p + q is even and r exact in float64. Every format thus sums full-length
    significands of its own precision that cancel exactly. Before shuffling, row r holds p in
    columns [0, g_r), q at offset n // 3, r at 2 (n // 3), and the residual elsewhere.
    """
    size, third = cond.size, n // 3
    g = rng.integers(1, (n - 1) // 3 + 1, size=(size, 1))
    in_group = np.arange(third)[None, :] < g
    p_int, q_int = (
        (1 << 52) | rng.integers(0, 1 << 52, size=(size, third), dtype=np.uint64) for _ in range(2)
    )
    for t in KEPT_BITS:
        dropped, kept = np.uint64(1 << (52 - t)), np.uint64(1 << (53 - t))
        p_int, q_int = p_int & ~dropped, q_int & ~dropped
        q_int = (q_int & ~kept) | (p_int & kept)
    q_int = (q_int & ~np.uint64(1)) | (p_int & np.uint64(1))
    r_int = p_int + q_int  # < 2**54 and even: exact in float64
    # binades spread over 2.5 decades (float16's normal range from a magnitude of 0.1 on)
    scale = 2.0 ** -(52 + np.floor(rng.uniform(0.0, 1.0, size=(size, third)) * 8.3))
    sign = np.where(rng.random((size, third)) < 0.5, -1.0, 1.0) * in_group * scale
    p, q, r = (
        sign * p_int.astype(np.float64),
        sign * q_int.astype(np.float64),
        -sign * r_int.astype(np.float64),
    )
    X = np.zeros((size, n))
    X[:, :third], X[:, third : 2 * third], X[:, 2 * third : 3 * third] = p, q, r
    in_triple = np.zeros((size, n), dtype=bool)
    in_triple[:, : 3 * third] = np.tile(in_group, 3)
    residual = np.where(in_triple, 0.0, rng.uniform(0.5, 1.0, size=(size, n)))
    target = 2.0 * np.abs(r).sum(axis=1) / np.maximum(cond - 1.0, 1e-300)
    X += residual * (target / residual.sum(axis=1))[:, None]
    return rng.permuted(X, axis=1)


# ---------------------------------------------------------------- variants (in the format)
#
# Every kernel works along the last axis: one input of shape (n,) gives shape (1,), a batch of
# shape (B, n) gives (B, 1), each row computed on its own with exactly the operations, order
# and dtype it meets alone (row independence is tested bit for bit in every format).


def recursive_sum(x: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """Left to right, s_k = fl(s_{k-1} + x_k), every partial sum rounded to the format, along
    the last axis: |E| <= gamma_{n-1} sum|x_i| (Higham 2002, (4.4); `recursive_bound`).

    One body for every arithmetic ``ops`` (`precision.core.ops`). numpy's (the default) runs
    ``np.add.accumulate``, a sequential loop in the input's dtype for float16, bfloat16,
    float32 and float64 alike (checked against a Python loop in
    tests/problems/test_summation.py), along the last axis of a batch as along a vector,
    unlike ``np.sum``, which is pairwise with a float32 accumulator for float16. An `Emulator`
    rounds each addition itself (``recursive_emulated``). Both additions are correctly rounded
    in every registry format (numpy's via float32, the emulator's via float64: 2p + 2 bits
    suffice), so both give the same sums, NaN signs aside (tested in every format).
    """
    return ops.result(ops.sum(ops.values(x), order="recursive"))


def pairwise_sum(x: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """Adjacent pairs added level by level along the last axis (an odd level is padded with an
    exact +0; `precision.core.ops.pairwise_tree`): every term passes through at most
    ceil(log2 n) roundings in the format, |E| <= gamma_{ceil(log2 n)} sum|x_i| (Higham 2002,
    (4.6)). Shape (n,) gives (1,), (B, n) gives (B, 1): the same tree for every row. One body
    for every arithmetic ``ops``: numpy's in the format by default, an `Emulator` for
    ``pairwise_emulated``."""
    return ops.result(ops.sum(ops.values(x), order="pairwise"))


def _terms(x: np.ndarray) -> np.ndarray:
    """The terms of ``x`` in summation order, first axis first: ``x`` itself for a vector, the
    columns of a batch (copied contiguous, so that each step reads one block of memory)."""
    x = np.asarray(x)
    return x if x.ndim == 1 else np.ascontiguousarray(np.moveaxis(x, -1, 0))


KAHAN_SCALAR_ROWS = 8
"""Batches of at most this many rows run Kahan's loop row by row on scalars."""


def kahan_sum(x: np.ndarray) -> np.ndarray:
    """Kahan's compensated summation in the format, along the last axis: c carries the rounding
    error of each addition (exact when |y| <= |s|) and is subtracted from the next term. A
    vector runs with numpy scalars of the format; a batch runs the same loop over its n
    columns, every row's s and c updated elementwise (the same operations in the same order).

    The values are those of the one-vector scalar loop this replaced, bit for bit, except the
    sign bit of a NaN in float8: ml_dtypes' float8 array ``a + b`` and ``a - b`` return +NaN
    where only b is NaN, its scalar arithmetic returns b's NaN. ml_dtypes' scalar arithmetic
    also reported no IEEE flags (bfloat16, float8); the array loops report them."""
    x = np.asarray(x)
    if x.ndim == 2 and len(x) <= KAHAN_SCALAR_ROWS:
        # The loop costs 4 n numpy calls per batch: on a few rows, n scalar steps per row
        # are cheaper (about 0.1 against 1 microsecond a step) and give the same values.
        return np.stack([kahan_sum(row) for row in x])
    s = c = np.zeros(x.shape[:-1], dtype=x.dtype)[()]  # a scalar 0 for a vector
    for v in _terms(x):
        y = v - c
        t = s + y
        c = (t - s) - y
        s = t
    return np.expand_dims(s, -1)


def sorted_increasing_sum(x: np.ndarray) -> np.ndarray:
    """Recursive summation in order of increasing |x_i| (stable: ties keep their order), row
    by row along the last axis."""
    return recursive_sum(np.take_along_axis(x, _magnitude_order(x), axis=-1))


def sorted_decreasing_sum(x: np.ndarray) -> np.ndarray:
    """Recursive summation in order of decreasing |x_i| (the increasing order reversed), row by
    row along the last axis."""
    return recursive_sum(np.take_along_axis(x, _magnitude_order(x)[..., ::-1], axis=-1))


def _magnitude_order(x: np.ndarray) -> np.ndarray:
    """The stable order of increasing |x_i| along the last axis (NaN last, in input order).

    Formats of 8 or 16 bits are sorted on an integer key instead of float64 |x|, with the same
    result: for non-negative values of a binary format (sign bit cleared, so -0 is +0) the bit
    pattern read as an unsigned integer increases with the value (exponent field above the
    significand field, subnormals below normals, inf above max), equal values have equal
    patterns, and every NaN is given the largest key (numpy sorts NaN last, ties kept in
    order). numpy sorts 8- and 16-bit integers stably by radix sort, about 14 times faster
    than float64 at n = 100,000.
    """
    x = np.asarray(x)
    key_type = _SORT_KEYS.get(x.dtype.itemsize) if x.dtype != np.float64 else None
    if key_type is None:
        return np.argsort(np.abs(x.astype(np.float64)), axis=-1, kind="stable")
    magnitude_bits = x.view(key_type) & key_type(np.iinfo(key_type).max >> 1)
    key = np.where(np.isnan(x), np.iinfo(key_type).max, magnitude_bits).astype(key_type)
    return np.argsort(key, axis=-1, kind="stable")


_SORT_KEYS = {1: np.uint8, 2: np.uint16}
"""Unsigned integer of each narrow format's width: the radix-sortable key of `_magnitude_order`."""


def numpy_sum(x: np.ndarray) -> np.ndarray:
    """``np.sum`` as is, along the last axis: pairwise (blocks of 8 within 128, see
    `numpy_sum_depth`); float16 in a float32 accumulator rounded once; bfloat16 left to right
    in bfloat16. Over the last axis of a C-contiguous batch numpy runs the same inner loop on
    each row as on a vector (measured bit for bit; over a strided axis it would not: float16
    then accumulates elementwise in float16), hence the contiguous copy of any other layout."""
    return np.sum(np.ascontiguousarray(x), axis=-1, keepdims=True)


def float32_accumulator_sum(x: np.ndarray) -> np.ndarray:
    """Left to right in float32 (float64 for float64 input), rounded once to the format, along
    the last axis: what a mixed-precision kernel does with float16/bfloat16 data."""
    wide = np.promote_types(x.dtype, np.float32)
    return np.add.accumulate(x.astype(wide), axis=-1)[..., -1:].astype(x.dtype)


def random_order_sum(x: np.ndarray, k: int) -> np.ndarray:
    """Recursive summation in the k-th random order of this input: the permutation is seeded
    by the input's float64 bytes and k, so every run reproduces it. A batch draws each row's
    permutation from that row alone (`order_rng`, one generator per row), then sums all rows
    in their own orders at once."""
    x = np.asarray(x)
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    orders = np.empty(rows.shape, dtype=np.intp)
    for i, row in enumerate(rows):
        orders[i] = order_rng(row, k).permutation(n)
    return recursive_sum(np.take_along_axis(x, orders.reshape(x.shape), axis=-1))


def order_rng(x: np.ndarray, k: int) -> np.random.Generator:
    """The generator of random order k for one input vector ``x``."""
    digest = hashlib.blake2b(np.asarray(x, dtype=np.float64).tobytes(), digest_size=8).digest()
    return np.random.default_rng([int.from_bytes(digest, "little"), k])


# ---------------------------------------------------------------- bounds


def gamma(k: float, u: float) -> float:
    """gamma_k = k u / (1 - k u); NaN once k u >= 1 (Higham's bounds assume k u < 1)."""
    return k * u / (1.0 - k * u) if k * u < 1.0 else float("nan")


def numpy_pairwise_depth(n: int) -> int:
    """Most roundings any term meets in numpy's pairwise sum of n terms.

    numpy (``loops_utils.h``): below 8 terms a sequential loop (n - 1); up to 128, eight
    interleaved accumulators (n // 8 - 1 each), a 3-level tree and n % 8 sequential rests;
    above, halves of a multiple of 8, one more level each. The leading ``0 +`` is exact.
    """
    if n < 8:
        return max(n - 1, 0)
    if n <= 128:
        return n // 8 - 1 + 3 + n % 8
    half = n // 2 - (n // 2) % 8
    return 1 + max(numpy_pairwise_depth(half), numpy_pairwise_depth(n - half))


def numpy_sum_depth(n: int, fmt: Format, *, buffered: bool = False) -> int:
    """Roundings per term of ``np.sum`` in ``fmt``: n - 1 for bfloat16 (ml_dtypes reduces left to
    right); pairwise otherwise. A reduction that casts (``dtype=float32`` on float16) runs in
    buffers of 8192 terms, pairwise within each and left to right across them."""
    if fmt.name == "bfloat16" and not buffered:
        return max(n - 1, 0)
    if buffered and n > 8192:
        return numpy_pairwise_depth(8192) + math.ceil(n / 8192) - 1
    return numpy_pairwise_depth(n)


def relative_bound(
    error_over_abs_sum: float, x: np.ndarray, fmt: Format, *, in_format: bool = True
) -> float | np.ndarray:
    """gamma-type bound times kappa_sum: error_over_abs_sum * sum|x| / |s|, along the last
    axis (a float for one vector, a (B,) array for a batch). NaN when s = 0 (relative error
    undefined) or, for sums held in the format, when a partial sum could overflow (sum|x|
    beyond max). The same float64 operations as Python floats, row by row (inf and NaN
    without warnings, as Python floats give them)."""
    s, abs_sum = (np.asarray(v) for v in sum_and_abs_sum64(x))
    with np.errstate(all="ignore"):
        undefined = s == 0
        if in_format:
            undefined = undefined | (abs_sum * (1 + error_over_abs_sum) > fmt.max)
        return _per_input(np.where(undefined, np.nan, error_over_abs_sum * abs_sum / np.abs(s)))


def _length(x: np.ndarray) -> int:
    """n: the length of the last axis (the vector; a batch's rows)."""
    return int(np.shape(x)[-1])


# Every bound takes one vector x of shape (n,) (a float back) or a batch (B, n) (a (B,) array
# back, row i the bound of row i alone).


def recursive_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """gamma_{n-1} kappa_sum, for every order (Higham 2002, (4.4))."""
    return relative_bound(gamma(_length(x) - 1, fmt.u), x, fmt)


def pairwise_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """gamma_{ceil(log2 n)} kappa_sum (Higham 2002, (4.6))."""
    return relative_bound(gamma(math.ceil(math.log2(_length(x))), fmt.u), x, fmt)


def kahan_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """(2u + 4 n u^2) kappa_sum: Knuth's |E| <= (2u + O(n u^2)) sum|x_i| (Higham 2002, (4.8)),
    with the second-order constant taken as 4 (not proved here; the tests check it on
    adversarial and on the study's inputs). It matters in float16: n u^2 > u once n > 2048."""
    n, u = _length(x), fmt.u
    return relative_bound(2 * u + 4 * n * u * u, x, fmt)


def numpy_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """gamma_d kappa_sum with d = `numpy_sum_depth`, in the accumulator's u; float16 (float32
    accumulator, no overflow on the way) adds the final rounding u |s|."""
    n = _length(x)
    if fmt.name != "float16":
        return relative_bound(gamma(numpy_sum_depth(n, fmt), fmt.u), x, fmt)
    return _rounded_once(gamma(numpy_pairwise_depth(n), FORMATS["float32"].u), x, fmt)


def float32_accumulator_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """u + (1 + u) gamma^acc_{n-1} kappa_sum for a format narrower than float32 (the sum is
    rounded once to it); gamma_{n-1} kappa_sum otherwise."""
    if fmt.p >= FORMATS["float32"].p:
        return recursive_bound(x, fmt)
    return _rounded_once(gamma(_length(x) - 1, FORMATS["float32"].u), x, fmt)


def _rounded_once(acc_gamma: float, x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """Bound of a sum accumulated in float32 (no overflow for these formats) and rounded once
    to ``fmt``: u + (1 + u) acc_gamma kappa; NaN when the rounded sum could overflow."""
    s, _ = sum_and_abs_sum64(x)
    inner = np.asarray(relative_bound(acc_gamma, x, fmt, in_format=False))
    with np.errstate(all="ignore"):
        overflow = np.abs(s) * (1 + inner) > fmt.max
        return _per_input(np.where(overflow, np.nan, fmt.u + (1 + fmt.u) * inner))


def reference_lines(n: int, kappa: float, fmt: Format) -> dict[str, float]:
    """The bound lines overlaid on the line plots, relative error in units of u."""
    u = fmt.u
    return {
        "gamma_{n-1} kappa": gamma(n - 1, u) * kappa / u,
        "gamma_{log2 n} kappa": gamma(math.ceil(math.log2(n)), u) * kappa / u,
        "2u kappa": 2.0 * kappa,
    }


RANDOM_ORDERS = 4
"""Seeds of the ``random_order`` family by default (parameter ``seed`` = 0 .. 3): each row is
one reproducible random order of the same input."""

VARIANTS = {
    "recursive": Variant("recursive", recursive_sum, recursive_bound, batched=True),
    "pairwise": Variant("pairwise", pairwise_sum, pairwise_bound, batched=True),
    "kahan": Variant("kahan", kahan_sum, kahan_bound, batched=True),
    "sorted_increasing": Variant(
        "sorted_increasing", sorted_increasing_sum, recursive_bound, batched=True
    ),
    "sorted_decreasing": Variant(
        "sorted_decreasing", sorted_decreasing_sum, recursive_bound, batched=True
    ),
    "numpy": Variant("numpy", numpy_sum, numpy_bound, numpy_sum_accumulator, batched=True),
    "float32_accumulator": Variant(
        "float32_accumulator",
        float32_accumulator_sum,
        float32_accumulator_bound,
        lambda fmt: "float64" if fmt.name == "float64" else "float32",
        batched=True,
    ),
    "random_order": Variant(
        "random_order",
        lambda x, *, seed: random_order_sum(x, int(seed)),
        lambda x, fmt, *, seed: recursive_bound(x, fmt),
        same_as_format,
        description="recursive summation in a random order (seed k: seeded by the input and k)",
        grid={"seed": tuple(range(RANDOM_ORDERS))},
        batched=True,
    ),
}

SUMMATION = Problem(
    name="summation",
    description="sum of a vector: recursive, pairwise, Kahan, sorted, numpy, float32 accumulator",
    reference=summation_reference,
    magnitude=max_abs,
    propose=propose_sums,
    estimate=estimate_sums,
    variants=VARIANTS,
)


# ---------------------------------------------------------------- worked examples


def exact_decimal(value) -> str:
    """Every digit of a binary float (or a Fraction with a power-of-two denominator)."""
    q = Fraction(value)
    sign, q = ("-" if q < 0 else ""), abs(q)
    whole, rest = divmod(q.numerator, q.denominator)
    digits = []
    while rest:
        rest *= 10
        digit, rest = divmod(rest, q.denominator)
        digits.append(str(digit))
    return sign + str(whole) + ("." + "".join(digits) if digits else "")


def decimal_in(text: str, fmt: Format) -> np.generic:
    """A decimal literal rounded once, exactly, to ``fmt`` (what parsing it in that format
    gives)."""
    return round_to_format(Fraction(text), fmt)


def associativity_example() -> pd.DataFrame:
    """(0.1 + 0.2) + 0.3 versus 0.1 + (0.2 + 0.3) in each format, with exact values."""
    rows = []
    for name in STUDY_FORMATS:
        fmt = get_format(name)
        a, b, c = (decimal_in(t, fmt) for t in ("0.1", "0.2", "0.3"))
        left, right = (a + b) + c, a + (b + c)
        exact = Fraction(float(a)) + Fraction(float(b)) + Fraction(float(c))
        rows.append(
            {
                "format": name,
                "fl(0.1)": exact_decimal(float(a)),
                "fl(0.2)": exact_decimal(float(b)),
                "fl(0.3)": exact_decimal(float(c)),
                "(0.1+0.2)+0.3": exact_decimal(float(left)),
                "0.1+(0.2+0.3)": exact_decimal(float(right)),
                "equal": bool(left == right),
                "exact sum of the three floats": exact_decimal(exact),
                "correctly rounded": exact_decimal(float(round_to_format(exact, fmt))),
            }
        )
    return pd.DataFrame(rows)


def order_spread(n: int, kappa: float, fmt: Format, *, orders: int = 200, seed: int = 0):
    """Distinct results and their spread in ulps over ``orders`` random orders of one seeded
    input (`propose_sums` at kappa, magnitude 1, rounded to ``fmt``), summed left to right."""
    from precision.core.formats import cast
    from precision.core.metrics import ordinal

    rng = np.random.default_rng([seed, n])
    x = cast(propose_sums(rng, n=n, magnitude=1.0, cond=kappa, size=1)[0], fmt)
    orders_ = np.stack([rng.permutation(n) for _ in range(orders)])
    with np.errstate(over="ignore", invalid="ignore"):
        results = np.add.accumulate(x[orders_], axis=1)[:, -1]
    ords = ordinal(results).astype(np.int64)
    s, abs_sum = sum_and_abs_sum64(x)
    return {
        "format": fmt.name,
        "n": n,
        "kappa_sum": abs_sum / abs(s) if s else float("inf"),
        "distinct results": int(np.unique(ords).size),
        "spread (ulps)": int(ords.max() - ords.min()),
    }


def worked_examples() -> list[tuple[str, str, pd.DataFrame]]:
    """Examples for the study's summary: (title, explanation, table), all computed here."""
    table = associativity_example()
    f64 = table[table["format"] == "float64"].iloc[0]
    left, right, best = f64["(0.1+0.2)+0.3"], f64["0.1+(0.2+0.3)"], f64["correctly rounded"]
    which = {left: "(0.1 + 0.2) + 0.3", right: "0.1 + (0.2 + 0.3)"}.get(best, "neither order")
    unequal = ", ".join(table.loc[~table["equal"], "format"])
    text = (
        "Each decimal is first rounded to the format (columns fl(.)); each addition rounds "
        f"again. In float64, (0.1 + 0.2) + 0.3 = {left} but 0.1 + (0.2 + 0.3) = {right}: "
        "0.1 + 0.2 rounds to the float above 0.3 (it prints as 0.30000000000000004), while "
        "0.2 + 0.3 = 0.5 exactly. The exact sum of the three floats is "
        f"{f64['exact sum of the three floats']}; correctly rounded it is {best}, the result "
        f"of {which}. The two orders differ in: {unequal}."
    )
    spread = pd.DataFrame(
        [
            order_spread(n, kappa, get_format(name))
            for name in STUDY_FORMATS
            for n in (100, 1000, 10_000)
            for kappa in (1.0, 1e3)
        ]
    )
    spread_text = (
        "Recursive summation of one input in 200 random orders: how many different results, "
        "and how far apart (ordinal distance of the smallest and largest, in the format's "
        "ulps). A spread of 0 at kappa = 1 and large n is stagnation: every order stalls at "
        "the same partial sum. The random_order_* variants of the table are "
        f"{RANDOM_ORDERS} such orders per input."
    )
    return [
        ("Non-associativity: (0.1 + 0.2) + 0.3", text, table),
        ("Non-associativity: results over random summation orders", spread_text, spread),
    ]
