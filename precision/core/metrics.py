"""Error measures between computed floating-point results and exact references.

Every function here is vectorised over numpy arrays and states its unit. Computed values are
numpy arrays of any registry format (float16, bfloat16, float32, float64, float8). References are
one of

* a float ``numpy.ndarray``: taken as exact numbers (the value each float denotes);
* a sequence (or object array) of ``mpmath.mpf``: exact high-precision values;
* an :class:`Exact`: a pre-split reference (made once per ground truth, shared by every variant).

The units are ulps (distance in representable numbers of the computed value's format), bits
(log2(1 + ulps), the Herbie / FPBench convention: 0 means correctly rounded), relative error
(unitless, |computed - exact| / |exact|) and relative error in units of u (relative error divided
by the format's unit roundoff, which puts all formats on one scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mpmath
import numpy as np

from precision.core.formats import Format, get_format, round_to_format, round_to_format_array

__all__ = [
    "OUTCOMES",
    "Exact",
    "absolute_error",
    "bits_of_error",
    "classify",
    "error_in_u",
    "normwise_relative_error",
    "ordinal",
    "relative_error",
    "result_outcome",
    "ulp_distance",
    "ulp_span",
]

OUTCOMES = ("ok", "exact_zero", "underflow", "overflow", "nan")
"""Outcome labels, from best to worst. ``exact_zero`` is not a failure: the exact result is 0,
so the relative error is undefined and the result is judged by its absolute error."""

_UINT_OF_WIDTH = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _as_float64(x) -> np.ndarray:
    """x as float64 (exact for every registry format) without a warning for signalling NaNs.

    Casting a signalling NaN of float32, bfloat16 or float8 raises the invalid flag, which numpy
    reports as a RuntimeWarning (an error under this project's test settings).
    """
    with np.errstate(invalid="ignore"):
        return np.asarray(x).astype(np.float64)


def ordinal(x: np.ndarray) -> np.ndarray:
    """Map floats to int64 so that adjacent floats of their format differ by exactly 1.

    ``ordinal(+0) == ordinal(-0) == 0``, positive floats count up from 0 and negative floats
    down, so ``|ordinal(a) - ordinal(b)|`` is the number of floats between a and b (plus one)
    even across zero. An infinity is one ordinal past the largest finite value. The ordinals are
    int64 for every width: subtracting in the input's own integer width (as
    ``numpy.testing.nulp_diff`` does) wraps around across a sign change. For float64 the
    difference of two ordinals can itself exceed int64 (2.0 and -2.0 are 2**63 apart): use
    `ulp_distance`, which returns it exactly.

    Parameters
    ----------
    x : numpy.ndarray
        Floats of one registry format. NaN has no ordinal: a ``ValueError`` is raised.

    Returns
    -------
    numpy.ndarray of int64
    """
    x = np.asarray(x)
    width = get_format(x.dtype).bits
    if np.isnan(_as_float64(x)).any():
        raise ValueError("ordinal: NaN has no ordinal; filter it or use ulp_distance(nan=...)")
    unsigned = _UINT_OF_WIDTH[x.dtype.itemsize]
    bits = x.view(unsigned)
    magnitude = (bits & unsigned((1 << (width - 1)) - 1)).astype(np.int64)
    negative = (bits >> unsigned(width - 1)) != 0
    return np.where(negative, -magnitude, magnitude)


def ulp_span(fmt: Format | str) -> int:
    """Ordinal distance from -inf to +inf in ``fmt``: the largest possible ulp distance."""
    fmt = get_format(fmt)
    top = np.inf if fmt.has_inf else fmt.max
    return 2 * int(ordinal(np.array([top], dtype=fmt.dtype))[0])


def ulp_distance(a: np.ndarray, b: np.ndarray, *, nan: str = "raise") -> np.ndarray:
    """Number of representable steps between a and b, both in the same format (int64, ulps).

    ``ulp_distance(x, x) == 0``; +0 and -0 are 0 apart; distances across zero count the floats on
    both sides (float16 65504 and -65504 are 63486 apart); an infinity is one step past max.

    Parameters
    ----------
    a, b : numpy.ndarray
        Arrays of the same dtype (broadcastable).
    nan : {"raise", "max"}, keyword-only
        NaN handling. ``"raise"`` (default) raises ``ValueError``. ``"max"`` scores a pair with one
        NaN as ``ulp_span(format)`` (so ``bits_of_error`` gives about the format's width, Herbie's
        convention for NaN) and a pair of two NaNs as 0.

    Returns
    -------
    numpy.ndarray of int64, or of uint64 for 64-bit formats
        float64 distances reach ``ulp_span("float64") = 2**64 - 2**53``, beyond int64.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype:
        raise TypeError(f"ulp_distance needs one format, got {a.dtype} and {b.dtype}")
    if nan not in ("raise", "max"):
        raise ValueError(f"ulp_distance: nan must be 'raise' or 'max', got {nan!r}")
    a, b = np.broadcast_arrays(a, b)
    a_nan, b_nan = np.isnan(_as_float64(a)), np.isnan(_as_float64(b))
    if nan == "raise" and (a_nan.any() or b_nan.any()):
        raise ValueError("ulp_distance: NaN input; pass nan='max' to score it")
    zero = np.zeros((), dtype=a.dtype)
    ord_a = ordinal(np.where(a_nan, zero, a))
    ord_b = ordinal(np.where(b_nan, zero, b))
    # |ord_a - ord_b| < 2**64 always, so it is exact in uint64 (modular subtraction of the
    # smaller from the larger); in int64 it wraps for float64 (2.0 vs -2.0 is 2**63 ulps).
    wide_a, wide_b = ord_a.astype(np.uint64), ord_b.astype(np.uint64)
    distance = np.where(ord_a >= ord_b, wide_a - wide_b, wide_b - wide_a)
    distance = np.where(a_nan != b_nan, np.uint64(ulp_span(a.dtype)), distance)
    distance = np.where(a_nan & b_nan, np.uint64(0), distance)
    return distance.astype(np.uint64 if a.dtype.itemsize >= 8 else np.int64)


@dataclass(frozen=True)
class Exact:
    """An exact reference split for fast, overflow-safe error arithmetic in float64.

    Each value equals ``(hi + lo) * 2**exp`` to about 2**-106 relative (a double-double
    significand with ``0.5 <= |hi| < 1`` and an unbounded int64 exponent), so values far outside
    float64's range (exp(1000), softmax components of 1e-400) keep their magnitude. ``rounded``
    optionally holds the exact values correctly rounded, once, to one format (``rounded_format``):
    the ulp and bit measures need that rounding and it is cheapest made from the mpmath value.
    """

    hi: np.ndarray
    lo: np.ndarray
    exp: np.ndarray
    rounded: np.ndarray | None = None

    @classmethod
    def from_mpf(cls, values, *, fmt: Format | str | None = None) -> Exact:
        """Split mpmath values (any precision); also round them once to ``fmt`` if given."""
        flat = list(np.asarray(values, dtype=object).ravel())
        shape = np.shape(np.asarray(values, dtype=object))
        hi, lo, exp = np.empty(len(flat)), np.empty(len(flat)), np.zeros(len(flat), np.int64)
        for i, v in enumerate(flat):
            hi[i], lo[i], exp[i] = _split_mpf(_exact_mpf(v))
        rounded = None
        if fmt is not None:
            rounded = np.array([round_to_format(v, fmt) for v in flat], dtype=get_format(fmt).dtype)
            rounded = rounded.reshape(shape)
        return cls(hi.reshape(shape), lo.reshape(shape), exp.reshape(shape), rounded)

    @classmethod
    def from_float(cls, values: np.ndarray) -> Exact:
        """Take float values as exact numbers (no rounding happens)."""
        values = np.asarray(values)
        x = _as_float64(values)
        finite = np.isfinite(x)
        mantissa, exponent = np.frexp(np.where(finite, x, 1.0))
        hi = np.where(finite, mantissa, x)
        return cls(hi, np.zeros_like(hi), np.where(finite, exponent, 0).astype(np.int64), values)

    @classmethod
    def coerce(cls, exact) -> Exact:
        """Accept an `Exact`, a float array, or a sequence of mpmath numbers."""
        if isinstance(exact, Exact):
            return exact
        arr = np.asarray(exact) if not _is_mpf_sequence(exact) else None
        if arr is not None and arr.dtype != object:
            return cls.from_float(arr)
        return cls.from_mpf(exact)

    @classmethod
    def stack(cls, exacts: Sequence[Exact]) -> Exact:
        """One `Exact` of shape ``(len(exacts), size)`` from results of one size each (a
        batch of flattened exact results); the stored roundings are kept when all have one
        of the same format."""
        rounded = [e.rounded for e in exacts]
        same = all(r is not None for r in rounded) and len({r.dtype for r in rounded}) == 1
        return cls(
            np.stack([np.ravel(e.hi) for e in exacts]),
            np.stack([np.ravel(e.lo) for e in exacts]),
            np.stack([np.ravel(e.exp) for e in exacts]),
            np.stack([np.ravel(r) for r in rounded]) if same and exacts else None,
        )

    def take(self, rows: np.ndarray) -> Exact:
        """The exact results of the rows ``rows`` of a batch (first axis)."""
        rounded = None if self.rounded is None else self.rounded[rows]
        return Exact(self.hi[rows], self.lo[rows], self.exp[rows], rounded)

    def reshape(self, *shape: int) -> Exact:
        """The same values in another shape (e.g. ``(1, -1)``: a batch of one)."""
        rounded = None if self.rounded is None else self.rounded.reshape(*shape)
        return Exact(
            self.hi.reshape(*shape), self.lo.reshape(*shape), self.exp.reshape(*shape), rounded
        )

    def rounded_to(self, dtype: np.dtype) -> np.ndarray:
        """The exact values rounded to ``dtype``: stored rounding, else rounded from hi + lo."""
        if self.rounded is not None and self.rounded.dtype == dtype:
            return self.rounded
        fmt = get_format(dtype)
        out = np.empty(self.hi.shape, dtype=fmt.dtype)
        for i in np.ndindex(self.hi.shape):
            out[i] = round_to_format(self._value(i), fmt)
        return out

    def _value(self, i) -> mpmath.mpf | float:
        """(hi + lo) * 2**exp exactly, as an mpf: a Fraction of 2**exp would take memory in
        proportion to exp (gigabytes for exp(-1e15)); an mpf keeps the exponent apart."""
        hi, lo, e = float(self.hi[i]), float(self.lo[i]), int(self.exp[i])
        if not np.isfinite(hi):
            return hi
        return mpmath.ldexp(mpmath.fadd(hi, lo, exact=True), e)


def _exact_mpf(v) -> mpmath.mpf:
    """v as an mpf without rounding it to the ambient precision.

    ``mpmath.mpf(v)`` rounds an mpf (and an int) to ``mp.prec``, 53 bits by default, which would
    throw away the extra precision of a reference made inside a ``workprec`` block.
    """
    if isinstance(v, mpmath.mpf):
        return v
    if isinstance(v, int | np.integer):
        with mpmath.workprec(max(53, int(v).bit_length())):
            return mpmath.mpf(int(v))
    if isinstance(v, float | np.floating):
        return mpmath.mpf(float(v))  # exact: every registry format is a subset of float64
    return mpmath.mpf(v)


EXP_LIMIT = 1 << 60
"""`Exact` exponents saturate at +-EXP_LIMIT (int64 holds them with room for differences).
Only values beyond about 10**(3e17), such as exp(1e308), saturate: every format rounds them to
inf or 0 either way, and every error measure against them comes out the same."""


def _split_mpf(v: mpmath.mpf) -> tuple[float, float, int]:
    if not mpmath.isfinite(v):
        return float(v), 0.0, 0
    if v == 0:
        return 0.0, 0.0, 0
    mantissa, exponent = mpmath.frexp(v)  # v = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    hi = float(mantissa)
    # mantissa - hi exactly, then rounded once to float64.
    lo = float(mpmath.fsub(mantissa, hi, exact=True))
    return hi, lo, max(-EXP_LIMIT, min(EXP_LIMIT, int(exponent)))


def _is_mpf_sequence(exact) -> bool:
    if isinstance(exact, np.ndarray):
        return exact.dtype == object
    return isinstance(exact, Sequence) and any(isinstance(v, mpmath.mpf) for v in exact)


# Exponents passed to ldexp are clipped to int32; any bound beyond about 2**12 leaves every result
# unchanged (float64 spans 2**-1074 .. 2**1024, so larger shifts already give 0 or inf), whereas a
# bound near the float64 range itself (the old 2000) turns overflowing errors into finite ones.
_EXP_CLIP = 1 << 20


def _ldexp(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """x * 2**e for int64 exponents of any size (saturating to 0 / inf like the exact result)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return np.ldexp(x, np.clip(e, -_EXP_CLIP, _EXP_CLIP).astype(np.int32))


def _scaled_difference(computed: np.ndarray, exact: Exact) -> tuple[np.ndarray, np.ndarray]:
    """``(d, s)`` with ``|computed - exact| = |d| * 2**s``, d in float64 to ~2**-52 relative.

    The scale ``2**s`` is the binade of the larger of |computed| and |exact|, so both scaled
    operands are at most 1 in magnitude and the larger is at least 1/2: nothing overflows, and
    whatever underflows is below 2**-1074 relative to the difference.
    """
    c = _as_float64(computed)
    c_exp = np.frexp(np.where(np.isfinite(c), c, 0.0))[1].astype(np.int64)
    scale = np.where(np.isfinite(c) & (c != 0), np.maximum(exact.exp, c_exp), exact.exp)
    shift = exact.exp - scale
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        # When the error is small, c and hi agree in their leading bits, so c - hi is exact
        # (Sterbenz) and the low part is then subtracted with one rounding.
        diff = (_ldexp(c, -scale) - _ldexp(exact.hi, shift)) - _ldexp(exact.lo, shift)
    return diff, scale


def absolute_error(computed: np.ndarray, exact) -> np.ndarray:
    """Componentwise ``|computed - exact|`` (float64, in the units of the data).

    ``exact`` may be a float array (exact values), mpmath numbers, or an `Exact`. The difference
    is formed in float64 from a double-double reference, so it is itself accurate to about
    2**-52 relative; it overflows to inf only when the true error exceeds float64's range.
    The same infinity on both sides gives 0; a NaN on either side gives NaN.
    """
    exact = Exact.coerce(exact)
    computed = np.asarray(computed)
    diff, scale = _scaled_difference(computed, exact)
    error = _ldexp(np.abs(diff), scale)
    return _special_cases(computed, exact, error, zero_rule=False)


def relative_error(computed: np.ndarray, exact) -> np.ndarray:
    """Componentwise relative error ``|computed - exact| / |exact|`` (unitless, float64).

    Undefined cases are explicit: where ``exact == 0`` the result is 0 if the computed value is
    also 0 and inf otherwise; where exact is infinite it is 0 for the same infinity and inf
    otherwise; a NaN on either side gives NaN. ``exact`` may be a float array (exact values),
    mpmath numbers, or an `Exact`; errors are evaluated with a double-double reference, so the
    reported error is accurate to about 2**-52 relative, for references of any magnitude.
    """
    exact = Exact.coerce(exact)
    computed = np.asarray(computed)
    diff, scale = _scaled_difference(computed, exact)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rel = _ldexp(np.abs(diff), scale - exact.exp) / np.abs(exact.hi + exact.lo)
    return _special_cases(computed, exact, rel, zero_rule=True)


def _special_cases(computed, exact: Exact, error, *, zero_rule) -> np.ndarray:
    """Apply the undefined-case rules. ``zero_rule`` (bool or mask): where the exact value is 0,
    report 0 for a computed 0 and inf otherwise (the relative error's convention)."""
    c = _as_float64(computed)
    e_zero = (exact.hi == 0) & (exact.lo == 0) & zero_rule
    e_inf = np.isinf(exact.hi)
    c_inf = np.isinf(c)
    error = np.where(e_zero, np.where(c == 0, 0.0, np.inf), error)
    error = np.where(e_inf, np.where(c == exact.hi, 0.0, np.inf), error)
    error = np.where(c_inf & ~e_inf, np.inf, error)
    return np.where(np.isnan(c) | np.isnan(exact.hi), np.nan, error)


def normwise_relative_error(computed: np.ndarray, exact, *, axis=None) -> np.ndarray | float:
    """Normwise relative error ``||computed - exact||_inf / ||exact||_inf`` (unitless).

    The inf-norm makes the measure independent of how small the smallest components are (a
    softmax output with components of 1e-30 is judged by its large ones). Computed with the
    same overflow-safe scaling as `relative_error`; NaN anywhere gives NaN, an infinity where
    the reference is finite gives inf, an all-zero reference follows `relative_error`'s rule.

    Parameters
    ----------
    computed : numpy.ndarray
    exact : float array, mpmath numbers or Exact
    axis : int or None, keyword-only
        Reduce over this axis (None: over all elements).
    """
    exact = Exact.coerce(exact)
    computed = np.asarray(computed)
    e_mag = np.abs(exact.hi + exact.lo)
    # Exponent of the largest reference component along the axis, then every error is scaled to it.
    log_mag = np.where(e_mag > 0, exact.exp + np.log2(np.where(e_mag > 0, e_mag, 1.0)), -np.inf)
    top = np.argmax(log_mag, axis=axis, keepdims=axis is not None)
    top_exp = np.take_along_axis(exact.exp, top, axis) if axis is not None else exact.exp.flat[top]
    top_mag = np.take_along_axis(e_mag, top, axis) if axis is not None else e_mag.flat[top]
    diff, scale = _scaled_difference(computed, exact)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        scaled = _ldexp(np.abs(diff), scale - top_exp) / top_mag
    # Exact zeros matter only when the whole reference (along the axis) is zero.
    scaled = _special_cases(computed, exact, scaled, zero_rule=top_mag == 0)
    result = np.max(scaled, axis=axis)  # NaN propagates
    return float(result) if axis is None else result


def error_in_u(relative: np.ndarray | float, fmt: Format | str) -> np.ndarray | float:
    """Relative error in units of the format's unit roundoff u = 2**-p (unitless)."""
    with np.errstate(over="ignore"):  # a relative error beyond max * u is inf in units of u
        scaled = np.asarray(relative, dtype=np.float64) / get_format(fmt).u
    return float(scaled) if scaled.ndim == 0 else scaled


def bits_of_error(computed: np.ndarray, exact, *, nan: str = "max") -> np.ndarray:
    """Bits of error ``log2(1 + ulps(computed, round(exact)))`` (float64, bits).

    ``round(exact)`` is the exact value correctly rounded, once, to the computed values' format,
    so 0 bits means correctly rounded and each further bit doubles the ulp distance. ``exact``
    may be a float array of the same format, mpmath numbers (rounded here), or an `Exact`
    (its stored rounding is used when it matches the format). NaN results score the format's
    full width by default (``nan="max"``, Herbie's convention); see `ulp_distance`.
    """
    computed = np.asarray(computed)
    if not isinstance(exact, Exact) and (
        _is_mpf_sequence(exact) or np.asarray(exact).dtype == object
    ):
        # Round the mpmath values themselves: rounding their double-double split instead can
        # land on the wrong neighbour when a value lies within ~2**-106 of a midpoint.
        reference = round_to_format_array(exact, computed.dtype)
    else:
        reference = Exact.coerce(exact).rounded_to(computed.dtype)
    return np.log2(1.0 + ulp_distance(computed, reference, nan=nan).astype(np.float64))


def classify(computed: np.ndarray, exact) -> np.ndarray:
    """Elementwise outcome: ``"nan"``, ``"overflow"`` (an infinity other than the exact value:
    where the exact value is finite or the opposite infinity), ``"underflow"`` (zero where the
    exact value is not), else ``"ok"``."""
    exact = Exact.coerce(exact)
    c = _as_float64(computed)
    e_zero = (exact.hi == 0) & (exact.lo == 0)
    out = np.full(c.shape, "ok", dtype=object)
    out[(c == 0) & ~e_zero] = "underflow"
    out[np.isinf(c) & (c != exact.hi)] = "overflow"
    out[np.isnan(c)] = "nan"
    return out


def result_outcome(
    computed: np.ndarray, exact, *, fp_exceptions=(), axis: int | None = None
) -> str | np.ndarray:
    """One outcome for a whole result (a scalar or a vector), the worst that applies.

    - ``"nan"``: a component is NaN;
    - ``"overflow"``: a component is an infinity other than the exact value, or an overflow
      exception was raised while computing it (``fp_exceptions``): an intermediate overflowed,
      as in ``exp(x) / sum(exp(x))`` whose sum is inf and whose result is then all zeros;
    - ``"underflow"``: every component is zero while the exact result is not, and the exact
      result's largest component is below the format's smallest normal number: the result
      itself lies in the underflow range;
    - ``"exact_zero"``: the exact result is exactly 0 (every component), so no relative error
      is defined (a sum of rounded inputs that cancel exactly: condition number infinite);
      the result is to be judged by its absolute error, and kept out of relative-error
      statistics;
    - ``"ok"``: otherwise. A zero left by cancellation (log-sum-exp of a vector whose exact value
      is 1e-4) is ``"ok"`` with a relative error of 1: a rounding error, not an exception; a
      vector whose tiny components round to zero is ``"ok"`` as well.

    Parameters
    ----------
    computed : numpy.ndarray
    exact : float array, mpmath numbers or Exact
    fp_exceptions : iterable of str, keyword-only
        IEEE exceptions raised while computing the result, as numpy names them ("overflow",
        "underflow", "invalid", "divide"), e.g. collected with ``numpy.errstate(call=...)``.
        With ``axis``, either that (for every result) or one such iterable per result.
    axis : int or None, keyword-only
        None: ``computed`` is one result and the outcome is a str. An int: ``computed`` is a
        batch of results, each along ``axis`` (e.g. ``(batch, n)`` with ``axis=-1``), and the
        outcomes are an array of str over the other axes.
    """
    computed = np.asarray(computed)
    exact = Exact.coerce(exact)
    if axis is None:
        computed, exact = computed.reshape(1, -1), exact.reshape(1, -1)
        fp_exceptions = [fp_exceptions]
    else:
        move = (lambda a: np.moveaxis(a, axis, -1)) if axis not in (-1, computed.ndim - 1) else None
        if move is not None:
            computed = move(computed)
            exact = Exact(move(exact.hi), move(exact.lo), move(exact.exp))
    outcomes = _outcomes_along_last_axis(computed, exact, fp_exceptions)
    return str(outcomes[0]) if axis is None else outcomes


def _outcomes_along_last_axis(computed: np.ndarray, exact: Exact, fp_exceptions) -> np.ndarray:
    """`result_outcome` of each result along the last axis (the other axes are the batch)."""
    c = _as_float64(computed)
    batch = c.shape[:-1]
    if isinstance(fp_exceptions, str) or not _is_per_result(fp_exceptions, batch):
        raised = np.full(batch, "overflow" in set(fp_exceptions))
    else:
        per_result = fp_exceptions if isinstance(fp_exceptions, np.ndarray) else None
        if per_result is None or per_result.dtype == object:
            per_result = [
                bool(r) if isinstance(r, bool | np.bool_) else "overflow" in set(r)
                for r in (fp_exceptions if per_result is None else per_result.ravel())
            ]
        raised = np.asarray(per_result, dtype=bool).reshape(batch)
    e_zero = (exact.hi == 0) & (exact.lo == 0)
    is_nan = np.isnan(c).any(axis=-1)
    overflow = (np.isinf(c) & (c != exact.hi)).any(axis=-1) | raised
    with np.errstate(over="ignore"):  # beyond float64's range the magnitude is inf: not tiny
        magnitude = np.abs(exact.hi + exact.lo) * np.exp2(np.clip(exact.exp, -1100, 1100))
    tiny = get_format(computed.dtype).min_normal
    flushed = ((c == 0) & ~e_zero).any(axis=-1)
    underflow = (c == 0).all(axis=-1) & flushed & (np.max(magnitude, axis=-1) < tiny)
    out = np.full(batch, "ok", dtype=object)
    out[e_zero.all(axis=-1)] = "exact_zero"
    out[underflow] = "underflow"
    out[overflow] = "overflow"
    out[is_nan] = "nan"
    return out


def _is_per_result(fp_exceptions, batch: tuple) -> bool:
    """Whether ``fp_exceptions`` holds one entry per result (not one set for all)."""
    if isinstance(fp_exceptions, np.ndarray):
        return fp_exceptions.shape == batch
    items = list(fp_exceptions) if not isinstance(fp_exceptions, set | frozenset) else None
    return (
        items is not None
        and len(batch) == 1
        and len(items) == batch[0]
        and all(not isinstance(r, str) for r in items)
    )
