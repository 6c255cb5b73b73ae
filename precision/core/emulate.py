"""Emulated low-precision arithmetic: every operation rounded to the format, reductions included.

numpy and ml_dtypes do not compute float16 the way the format's name suggests: an elementwise
float16 operation is computed in float32 and rounded once (for + - * / sqrt that is the
correctly rounded float16 result), but ``np.sum`` of float16 accumulates in float32 and rounds
once at the end (../shared/NUMERICS.md). The `Emulator` here rounds after *every* operation,
including each addition of a reduction, so that a study can put pure float16 accumulation
beside numpy's native behaviour (the row's ``compute_mode`` says which).

How an operation is emulated: its operands are values of the format held in float64, the
operation is computed in float64 and the result rounded to the format by `round_nearest` (one
correct rounding from the float64 value) or `round_stochastic`.

Exactness. For + - * / and sqrt the float64 result is the exact result rounded once to 53 bits,
and rounding that again to a format of precision p gives the correctly rounded result whenever
53 >= 2p + 2 (Figueroa, "When is double rounding innocuous?", SIGNUM Newsletter 30(3), 1995;
Roux, "Innocuousness of double rounding for basic arithmetic operations", J. Formalized
Reasoning 7(1), 2014): float16 (p = 11), bfloat16 (8), float8 (4, 3) and float32 (24) all
qualify, so these five operations are exactly IEEE's in every registry format. For exp, log and
log1p the float64 libm result is not correctly rounded (within about one float64 ulp), so the
emulated result can differ from the correctly rounded one when the exact value lies within
about 2**-52 relative of a midpoint of the format: with probability about 2**(p - 52) per
operation, never observed in float16 by the tests, but not excluded.

Stochastic rounding (`round_stochastic`) rounds x to the neighbour above with probability
(x - lo) / (hi - lo) and below otherwise (Connolly, Higham & Mary, "Stochastic rounding and its
probabilistic backward error analysis", SIAM J. Sci. Comput. 43(1), 2021: "mode 1"). It is
unbiased, E[SR(x)] = x, and so does not stagnate where round-to-nearest drops every small
addend. The probability is computed exactly from the float64 value; for float16 sums and
products that value is exact (float64 holds them), elsewhere it is the exact result rounded to
53 bits, which changes the probability by at most 2**(p - 53). Stochastic rounding *to float64*
needs the exact result, which float64 arithmetic does not hold: the recursive sum finds it by
TwoSum (`_float64_stochastic_add`); elementwise float64 SR of a float64 value is the value.
Draws come from a seeded ``numpy.random.Generator`` in a fixed order (one uniform per
rounding), so the same input and seed give the same result on any machine and executor.

Batches. Every operation and both reductions work along the last axis: a batch of rows
``(batch, n)`` is computed at once, each row exactly as it would be alone (the sequential sum
loops over the n terms, vectorised across the rows). A stochastically rounded batch whose rows
are seeded each on its own takes its uniforms from one generator per row (`row_draws`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from precision.core.formats import Format, get_format
from precision.core.ops import SumOrder, check_order, pairwise_tree

__all__ = [
    "Emulator",
    "neighbours",
    "quantum",
    "round_nearest",
    "round_stochastic",
    "row_draws",
]

RoundingMode = Literal["nearest", "stochastic"]
ROUNDING_MODES: tuple[str, ...] = ("nearest", "stochastic")

SCALAR_ROWS = 16
"""Up to this many rows `Emulator.sum_recursive` loops over Python floats row by row (about
1.5 us a term); beyond, one loop over the terms vectorised across the rows (about 30 us a
term, whatever the number of rows). Both give the same sums, bit for bit."""


def quantum(x, fmt: Format | str) -> np.ndarray:
    """The spacing of ``fmt`` at each |x|: 2**(max(e, emin) - p + 1) with 2**e <= |x| < 2**(e+1).

    Below the normal range the spacing is the subnormal quantum 2**(emin - p + 1). Parameters
    as `round_nearest`; the result is a float64 array of powers of two (exact).
    """
    fmt = get_format(fmt)
    x = np.asarray(x, dtype=np.float64)
    _, e = np.frexp(x)  # x = m 2**e with 0.5 <= |m| < 1, so the binade exponent is e - 1
    return np.ldexp(1.0, np.maximum(e - 1, fmt.emin) - fmt.p + 1)


def _overflowed(r: np.ndarray, fmt: Format) -> np.ndarray:
    """Replace magnitudes beyond ``fmt.max`` by the format's overflow value (inf, or NaN where
    the format has no infinity); NaN and infinities of the input map to the format's."""
    too_big = np.abs(r) > fmt.max
    if fmt.has_inf:
        return np.where(too_big, np.copysign(np.inf, r), r)
    return np.where(too_big | ~np.isfinite(r), np.nan, r)


def round_nearest(x, fmt: Format | str) -> np.ndarray:
    """Round float64 values to ``fmt`` once, to nearest with ties to even.

    r = rint(x / q) q with q = `quantum` (x / q and the product are exact: q is a power of
    two and |x / q| < 2**p), then magnitudes past ``max`` overflow (IEEE 754: past
    max + q / 2, since ``max`` has an odd significand and the tie goes to the even 2**(emax+1)).

    Parameters
    ----------
    x : array_like
        Values (converted to float64 exactly when they are of a narrower format).
    fmt : Format or str

    Returns
    -------
    numpy.ndarray
        float64 array holding values of ``fmt``: the correctly rounded values (relative error
        at most u = 2**-p in the normal range, absolute at most half the subnormal quantum).
    """
    fmt = get_format(fmt)
    x = np.asarray(x, dtype=np.float64)
    if fmt.p >= 53:
        return x.copy()
    q = quantum(x, fmt)
    # inf / q and NaN pass through; a value near float64's max may round up past it (inf),
    # which is then the format's overflow anyway.
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.rint(x / q) * q
    return np.where(np.isfinite(x), _overflowed(np.copysign(r, x), fmt), _overflowed(x, fmt))


def neighbours(x, fmt: Format | str) -> tuple[np.ndarray, np.ndarray]:
    """The values lo <= x <= hi of ``fmt`` adjacent to each finite float64 x (lo = hi = x when
    x is in the format); hi (or lo) is the overflow value when x lies beyond ``max``."""
    fmt = get_format(fmt)
    x = np.asarray(x, dtype=np.float64)
    q = quantum(x, fmt)
    with np.errstate(invalid="ignore", over="ignore"):  # as in round_nearest
        lo = np.floor(x / q) * q
        hi = np.where(lo == x, lo, lo + q)
    return _overflowed(lo, fmt), _overflowed(hi, fmt)


def round_stochastic(x, fmt: Format | str, rng: np.random.Generator) -> np.ndarray:
    """Stochastic rounding of float64 values to ``fmt``: up with probability (x - lo) / q.

    With q = `quantum`, lo = floor(x / q) q and f = x / q - floor(x / q) (exact: x / q is a
    float64 with at most 53 significant bits, and so is its fractional part), the result is
    lo + q when a uniform draw U in [0, 1) is below f, else lo. Then E[result] = lo + f q = x
    exactly, and the result is always one of the two neighbours. One uniform is drawn per
    element (exact values included), so the stream of draws, and the result, depend only on
    the shape and the generator's seed.

    Parameters
    ----------
    x : array_like
    fmt : Format or str
    rng : numpy.random.Generator
        Source of the uniforms (advanced by ``x.size`` draws).

    Returns
    -------
    numpy.ndarray
        float64 array of values of ``fmt`` (overflow value past ``max``; a zero keeps x's sign).
    """
    fmt = get_format(fmt)
    x = np.asarray(x, dtype=np.float64)
    draws = rng.random(x.shape)
    if fmt.p >= 53:
        return x.copy()
    q = quantum(x, fmt)
    with np.errstate(invalid="ignore", over="ignore"):  # as in round_nearest
        scaled = x / q
        low = np.floor(scaled)
        r = (low + (draws < scaled - low)) * q
    r = np.copysign(r, x)  # -0.3 q rounded up is -0, not +0
    return np.where(np.isfinite(x), _overflowed(r, fmt), _overflowed(x, fmt))


def _scalar_rounder(fmt: Format):
    """A fast rounding of one Python float to ``fmt`` (nearest or stochastic given a uniform
    ``draw``), the scalar twin of `round_nearest` / `round_stochastic` for sequential loops,
    and of `_round_sequential` (the same results, bit for bit)."""
    p, emin, top = fmt.p, fmt.emin, fmt.max
    overflow = math.inf if fmt.has_inf else math.nan

    def rounded(v: float, draw: float | None = None) -> float:
        if v == 0.0 or not math.isfinite(v) or p >= 53:
            return v if (math.isfinite(v) or fmt.has_inf) else math.nan
        q = math.ldexp(1.0, max(math.frexp(v)[1] - 1, emin) - p + 1)
        scaled = v / q
        if draw is None:
            r = round(scaled) * q  # Python's round is half-to-even
        else:
            low = math.floor(scaled)
            r = (low + (draw < scaled - low)) * q
        if abs(r) > top:
            return math.copysign(overflow, v)
        return math.copysign(r, v)

    return rounded


def _float64_stochastic_add_scalar(a: float, b: float, draw: float) -> float:
    """`_float64_stochastic_add` of Python floats (the same result, bit for bit)."""
    t = a + b
    if not math.isfinite(t):
        return t
    bb = t - a
    e = (a - (t - bb)) + (b - bb)
    if e == 0.0:
        return t
    nearest_other = math.nextafter(t, math.copysign(math.inf, e))
    return nearest_other if draw < abs(e) / abs(nearest_other - t) else t


def _round_sequential(v: np.ndarray, fmt: Format, draws: np.ndarray | None = None) -> np.ndarray:
    """One step of a sequential reduction: float64 values rounded to ``fmt`` elementwise (to
    nearest, or stochastically given one uniform per element in ``draws``), with the rules the
    recursive sum has always used, bit for bit: a zero and a value of a format of 53 bits or
    more stay themselves; inf and NaN stay themselves, or become a positive NaN in a format
    without infinity; a finite value that rounds past ``max`` becomes the overflow value with
    v's sign (``copysign(nan, v)`` where there is no infinity). Call it with floating-point
    flags ignored (`Emulator.sum_recursive`).

    The common case (every result finite and within ``max``) costs a few array operations, as
    this runs once per term of a row; the rest is fixed up only when a step needs it.
    """
    if fmt.p >= 53:
        return v
    # quantum(v): 2**(max(e - 1, emin) - p + 1) with v = m 2**e, 0.5 <= |m| < 1 (exact)
    q = np.ldexp(2.0**-fmt.p, np.maximum(np.frexp(v)[1], fmt.emin + 1))
    scaled = v / q
    if draws is None:
        r = np.rint(scaled) * q  # half to even; keeps v's sign, -0 included
    else:
        low = np.floor(scaled)
        r = np.copysign((low + (draws < scaled - low)) * q, v)
    if not np.abs(r).max(initial=0.0) <= fmt.max:  # an overflow, an infinity or a NaN
        overflow = np.inf if fmt.has_inf else np.nan
        r = np.where(np.abs(r) > fmt.max, np.copysign(overflow, v), r)
        special = np.where((v == 0.0) | fmt.has_inf, v, np.nan)  # a zero, or inf and NaN
        r = np.where((v == 0.0) | ~np.isfinite(v), special, r)
    return r


def _float64_stochastic_add(a: np.ndarray, b: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """a + b stochastically rounded to float64, elementwise, from its exact value t + e (Knuth's
    TwoSum: t = fl(a + b), e the rounding error, both exact floats): t moves one ulp towards e
    with probability |e| / ulp (the gap |next - t| is a power of two, so the ratio errs by at
    most 2**-53 relative); an infinite or NaN t, or an exact one (e = 0), stays. Call it with
    floating-point flags ignored."""
    t = a + b
    bb = t - a
    e = (a - (t - bb)) + (b - bb)
    # t is the nearest neighbour; the exact value lies between t and nearest_other.
    nearest_other = np.nextafter(t, np.copysign(np.inf, e))
    up = draws < np.abs(e) / np.abs(nearest_other - t)
    return np.where(np.isfinite(t) & (e != 0.0) & up, nearest_other, t)


@dataclass
class Emulator:
    """Arithmetic in ``fmt`` with a rounding after every operation (module docstring).

    Operands and results are float64 arrays holding values of the format; `values` converts an
    input array of the format exactly, `result` converts back to the format's dtype (exactly:
    every value is representable). An emulator is an ``ops`` object
    (`precision.core.ops.Ops`): a kernel body written once against ``ops`` runs with it as it
    runs with numpy's arithmetic (`precision.core.ops.NUMPY`), every operation rounded.

    Parameters
    ----------
    fmt : Format or str
    rounding : {"nearest", "stochastic"}, keyword-only
    seed : int or sequence of int, keyword-only
        Seed of the stochastic rounding's generator (required for "stochastic").
    """

    fmt: Format
    rounding: RoundingMode = "nearest"
    seed: int | tuple[int, ...] | None = None
    rng: np.random.Generator | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.fmt = get_format(self.fmt)
        if self.rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {self.rounding!r}")
        if self.rounding == "stochastic":
            if self.seed is None:
                raise ValueError("stochastic rounding needs a seed")
            self.rng = np.random.default_rng(self.seed)

    # ------------------------------------------------------------ conversion and rounding

    def values(self, x: np.ndarray) -> np.ndarray:
        """An array of the format as exact float64 values (every registry format fits)."""
        return np.asarray(x).astype(np.float64)

    def result(self, y: np.ndarray) -> np.ndarray:
        """float64 values of the format back in the format's dtype (an exact conversion)."""
        return np.asarray(y, dtype=np.float64).astype(self.fmt.dtype)

    def round(self, y) -> np.ndarray:
        """Round float64 values to the format in this emulator's rounding mode."""
        if self.rounding == "nearest":
            return round_nearest(y, self.fmt)
        return round_stochastic(y, self.fmt, self.rng)

    # ------------------------------------------------------------ operations

    def add(self, a, b) -> np.ndarray:
        """fl(a + b): exact for every registry format (53 >= 2p + 2)."""
        return self.round(np.add(a, b))

    def sub(self, a, b) -> np.ndarray:
        """fl(a - b): exact for every registry format."""
        return self.round(np.subtract(a, b))

    def mul(self, a, b) -> np.ndarray:
        """fl(a * b): exact for every registry format."""
        return self.round(np.multiply(a, b))

    def div(self, a, b) -> np.ndarray:
        """fl(a / b): exact for every registry format."""
        return self.round(np.divide(a, b))

    def sqrt(self, a) -> np.ndarray:
        """fl(sqrt(a)): exact for every registry format."""
        return self.round(np.sqrt(a))

    def exp(self, a) -> np.ndarray:
        """fl(exp(a)) via float64 libm: not always correctly rounded (module docstring)."""
        return self.round(np.exp(a))

    def log(self, a) -> np.ndarray:
        """fl(log(a)) via float64 libm: not always correctly rounded."""
        return self.round(np.log(a))

    def log1p(self, a) -> np.ndarray:
        """fl(log1p(a)) via float64 libm: not always correctly rounded."""
        return self.round(np.log1p(a))

    # ------------------------------------------------------------ reductions

    def max(self, a) -> np.ndarray:
        """max along the last axis, kept (exact: no rounding; a NaN in a row gives NaN)."""
        return np.max(a, axis=-1, keepdims=True)

    def sum(self, a, *, order: SumOrder | None = None) -> np.ndarray:
        """The sum of each row along the last axis with every addition rounded, shape
        ``a.shape[:-1] + (1,)``: `sum_recursive` for ``order`` None (the format accumulator
        left to right is this arithmetic's own reduction) or "recursive", |E| <= gamma_{n-1}
        sum|a_i| with u the format's (Higham 2002, (4.4)); `sum_pairwise` for "pairwise",
        |E| <= gamma_{ceil(log2 n)} sum|a_i| (4.6). Stochastic rounding draws the uniforms of
        `sum_recursive` from this emulator's generator."""
        check_order(order)
        if order == "pairwise":
            return self.sum_pairwise(a)
        return self.sum_recursive(a)

    def sum_recursive(self, x, *, draws: np.ndarray | None = None) -> np.ndarray:
        """Left to right along the last axis, s_k = fl(s_{k-1} + x_k), the accumulator held in
        the format: one sum per row, shape ``x.shape[:-1] + (1,)``, each row on its own.

        Up to `SCALAR_ROWS` rows, each row is summed on its own in Python floats
        (`_scalar_rounder`); for more, one loop runs over the n terms, vectorised across the
        rows, each step rounded by `_round_sequential`: the same rules, bit for bit (an
        overflow in a format without infinity is a NaN of the sum's sign), so a row's sum does
        not depend on the others or on the batch size. Neither raises floating-point flags
        (Python floats raise none, and the vector loop ignores them to match).

        Parameters
        ----------
        x : array_like
            Values of the format (float64 or narrower), one vector or a batch of rows.
        draws : numpy.ndarray, optional, keyword-only
            Stochastic rounding only: the uniforms in [0, 1), shape ``x.shape[:-1] + (n - 1,)``,
            one per addition, in order. By default they are drawn up front from this
            emulator's generator; a batch whose rows must not depend on each other passes each
            row's own draws (`row_draws`).
        """
        x = np.asarray(x, dtype=np.float64)
        n = x.shape[-1]
        if n == 0:
            return np.zeros((*x.shape[:-1], 1))
        if self.rounding == "stochastic" and draws is None:
            draws = self.rng.random((*x.shape[:-1], n - 1))
        if draws is not None:
            draws = np.asarray(draws, dtype=np.float64)
        if x.size // n <= SCALAR_ROWS:
            rows = x.reshape(-1, n)
            per_row = [None] * len(rows) if draws is None else draws.reshape(len(rows), n - 1)
            sums = [self._sum_row(row, d) for row, d in zip(rows, per_row, strict=True)]
            return np.array(sums, dtype=np.float64).reshape(*x.shape[:-1], 1)
        terms = np.ascontiguousarray(np.moveaxis(x, -1, 0))  # terms[j]: the j-th term of each row
        if draws is not None:
            draws = np.ascontiguousarray(np.moveaxis(draws, -1, 0))
        s = terms[0].copy()
        with np.errstate(all="ignore"):
            if self.rounding == "nearest":
                for j in range(1, n):
                    s = _round_sequential(s + terms[j], self.fmt)
            elif self.fmt.p >= 53:
                for j in range(1, n):
                    s = _float64_stochastic_add(s, terms[j], draws[j - 1])
            else:
                for j in range(1, n):
                    s = _round_sequential(s + terms[j], self.fmt, draws[j - 1])
        return s[..., np.newaxis]

    def _sum_row(self, row: np.ndarray, draws: np.ndarray | None) -> float:
        """`sum_recursive` of one row in Python floats (no numpy flags, as the vector loop)."""
        rounded = _scalar_rounder(self.fmt)
        terms = row.tolist()
        s = terms[0]
        if self.rounding == "nearest":
            for v in terms[1:]:
                s = rounded(s + v)
        elif self.fmt.p >= 53:
            for v, draw in zip(terms[1:], draws.tolist(), strict=True):
                s = _float64_stochastic_add_scalar(s, v, draw)
        else:
            for v, draw in zip(terms[1:], draws.tolist(), strict=True):
                s = rounded(s + v, draw)
        return s

    def sum_pairwise(self, x) -> np.ndarray:
        """Adjacent pairs along the last axis added level by level, every partial sum rounded to
        the format (an odd level is padded with an exact +0): at most ceil(log2 n) roundings
        per term. One sum per row, shape ``x.shape[:-1] + (1,)``; the rows of a batch share the
        tree and are computed independently (`precision.core.ops.pairwise_tree`, the tree
        numpy's arithmetic sums with too)."""
        s = np.asarray(x, dtype=np.float64)
        if s.shape[-1] == 0:
            return np.zeros((*s.shape[:-1], 1))
        return pairwise_tree(s, self.add)


def row_draws(seeds, count: int) -> np.ndarray:
    """``count`` uniforms per row from one generator per row, ``default_rng(seeds[i])``: the
    ``draws`` of `Emulator.sum_recursive` for a batch whose rows are seeded each on its own (a
    row's draws are then those of an emulator seeded with its seed alone), shape
    ``(len(seeds), count)``."""
    return np.array([np.random.default_rng(seed).random(count) for seed in seeds]).reshape(
        len(seeds), count
    )
