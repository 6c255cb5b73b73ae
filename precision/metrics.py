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

from precision.formats import Format, get_format, round_to_format

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

OUTCOMES = ("ok", "underflow", "overflow", "nan")
"""Outcome labels, from best to worst."""

_UINT_OF_WIDTH = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def ordinal(x: np.ndarray) -> np.ndarray:
    """Map floats to int64 so that adjacent floats of their format differ by exactly 1.

    ``ordinal(+0) == ordinal(-0) == 0``, positive floats count up from 0 and negative floats
    down, so ``|ordinal(a) - ordinal(b)|`` is the number of floats between a and b (plus one)
    even across zero. An infinity is one ordinal past the largest finite value. The arithmetic is
    done in int64 for every width: subtracting in the input's own integer width (as
    ``numpy.testing.nulp_diff`` does) wraps around across a sign change.

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
    if np.isnan(x.astype(np.float64)).any():
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
    numpy.ndarray of int64
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype:
        raise TypeError(f"ulp_distance needs one format, got {a.dtype} and {b.dtype}")
    if nan not in ("raise", "max"):
        raise ValueError(f"ulp_distance: nan must be 'raise' or 'max', got {nan!r}")
    a, b = np.broadcast_arrays(a, b)
    a_nan, b_nan = np.isnan(a.astype(np.float64)), np.isnan(b.astype(np.float64))
    if nan == "raise" and (a_nan.any() or b_nan.any()):
        raise ValueError("ulp_distance: NaN input; pass nan='max' to score it")
    zero = np.zeros((), dtype=a.dtype)
    distance = np.abs(ordinal(np.where(a_nan, zero, a)) - ordinal(np.where(b_nan, zero, b)))
    distance = np.where(a_nan != b_nan, ulp_span(a.dtype), distance)
    return np.where(a_nan & b_nan, 0, distance).astype(np.int64)


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
            hi[i], lo[i], exp[i] = _split_mpf(mpmath.mpf(v))
        rounded = None
        if fmt is not None:
            rounded = np.array([round_to_format(v, fmt) for v in flat], dtype=get_format(fmt).dtype)
            rounded = rounded.reshape(shape)
        return cls(hi.reshape(shape), lo.reshape(shape), exp.reshape(shape), rounded)

    @classmethod
    def from_float(cls, values: np.ndarray) -> Exact:
        """Take float values as exact numbers (no rounding happens)."""
        values = np.asarray(values)
        x = values.astype(np.float64)
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

    def rounded_to(self, dtype: np.dtype) -> np.ndarray:
        """The exact values rounded to ``dtype``: stored rounding, else rounded from hi + lo."""
        if self.rounded is not None and self.rounded.dtype == dtype:
            return self.rounded
        fmt = get_format(dtype)
        out = np.empty(self.hi.shape, dtype=fmt.dtype)
        for i in np.ndindex(self.hi.shape):
            out[i] = round_to_format(self._fraction(i), fmt)
        return out

    def _fraction(self, i):
        from fractions import Fraction

        hi, lo, e = float(self.hi[i]), float(self.lo[i]), int(self.exp[i])
        if not np.isfinite(hi):
            return hi
        return (Fraction(hi) + Fraction(lo)) * Fraction(2) ** e


def _split_mpf(v: mpmath.mpf) -> tuple[float, float, int]:
    if not mpmath.isfinite(v):
        return float(v), 0.0, 0
    if v == 0:
        return 0.0, 0.0, 0
    mantissa, exponent = mpmath.frexp(v)  # v = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    hi = float(mantissa)
    # mantissa - hi is computed exactly at a precision that holds both.
    with mpmath.workprec(max(mpmath.mp.prec, mantissa.context.prec, 200) + 60):
        lo = float(mantissa - hi)
    return hi, lo, int(exponent)


def _is_mpf_sequence(exact) -> bool:
    if isinstance(exact, np.ndarray):
        return exact.dtype == object
    return isinstance(exact, Sequence) and any(isinstance(v, mpmath.mpf) for v in exact)


def _scaled_difference(computed: np.ndarray, exact: Exact) -> np.ndarray:
    """(computed - exact) / 2**exact.exp, in float64, accurate to ~2**-52 relative."""
    c = np.asarray(computed).astype(np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        scaled = np.ldexp(c, -np.clip(exact.exp, -2000, 2000).astype(np.int32))
        # c and hi agree in their leading bits when the error is small, so c - hi is exact
        # (Sterbenz) and the low part is then subtracted with one rounding.
        return (scaled - exact.hi) - exact.lo


def absolute_error(computed: np.ndarray, exact) -> np.ndarray:
    """Componentwise ``|computed - exact|`` (float64, in the units of the data).

    ``exact`` may be a float array (exact values), mpmath numbers, or an `Exact`. The difference
    is formed in float64 from a double-double reference, so it is itself accurate to about
    2**-52 relative; it overflows to inf only when the true error exceeds float64's range.
    """
    exact = Exact.coerce(exact)
    diff = np.abs(_scaled_difference(computed, exact))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        error = np.ldexp(diff, np.clip(exact.exp, -2000, 2000).astype(np.int32))
    return _special_cases(np.asarray(computed), exact, error, same_value=0.0)


def relative_error(computed: np.ndarray, exact) -> np.ndarray:
    """Componentwise relative error ``|computed - exact| / |exact|`` (unitless, float64).

    Undefined cases are explicit: where ``exact == 0`` the result is 0 if the computed value is
    also 0 and inf otherwise; where exact is infinite it is 0 for the same infinity and inf
    otherwise; a NaN on either side gives NaN. ``exact`` may be a float array (exact values),
    mpmath numbers, or an `Exact`; errors are evaluated with a double-double reference, so the
    reported error is accurate to about 2**-52 relative, for references of any magnitude.
    """
    exact = Exact.coerce(exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(_scaled_difference(computed, exact)) / np.abs(exact.hi + exact.lo)
    return _special_cases(np.asarray(computed), exact, rel, same_value=0.0)


def _special_cases(computed, exact: Exact, error, *, same_value: float) -> np.ndarray:
    c = computed.astype(np.float64)
    e_zero = (exact.hi == 0) & (exact.lo == 0)
    e_inf = np.isinf(exact.hi)
    c_inf = np.isinf(c)
    error = np.where(e_zero, np.where(c == 0, same_value, np.inf), error)
    error = np.where(e_inf, np.where(c == exact.hi, same_value, np.inf), error)
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
    diff = np.abs(_scaled_difference(computed, exact))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        shift = np.clip(exact.exp - top_exp, -2000, 2000).astype(np.int32)
        scaled = np.ldexp(diff, shift) / top_mag
        scaled = _special_cases(computed, exact, scaled, same_value=0.0)
    result = np.max(scaled, axis=axis)  # NaN propagates
    return float(result) if axis is None else result


def error_in_u(relative: np.ndarray | float, fmt: Format | str) -> np.ndarray | float:
    """Relative error in units of the format's unit roundoff u = 2**-p (unitless)."""
    return np.asarray(relative) / get_format(fmt).u


def bits_of_error(computed: np.ndarray, exact, *, nan: str = "max") -> np.ndarray:
    """Bits of error ``log2(1 + ulps(computed, round(exact)))`` (float64, bits).

    ``round(exact)`` is the exact value correctly rounded, once, to the computed values' format,
    so 0 bits means correctly rounded and each further bit doubles the ulp distance. ``exact``
    may be a float array of the same format, mpmath numbers (rounded here), or an `Exact`
    (its stored rounding is used when it matches the format). NaN results score the format's
    full width by default (``nan="max"``, Herbie's convention); see `ulp_distance`.
    """
    computed = np.asarray(computed)
    reference = Exact.coerce(exact).rounded_to(computed.dtype)
    return np.log2(1.0 + ulp_distance(computed, reference, nan=nan).astype(np.float64))


def classify(computed: np.ndarray, exact) -> np.ndarray:
    """Elementwise outcome: ``"nan"``, ``"overflow"`` (an infinity where the exact value is
    finite), ``"underflow"`` (zero where the exact value is not), else ``"ok"``."""
    exact = Exact.coerce(exact)
    c = np.asarray(computed).astype(np.float64)
    e_zero = (exact.hi == 0) & (exact.lo == 0)
    out = np.full(c.shape, "ok", dtype=object)
    out[(c == 0) & ~e_zero] = "underflow"
    out[np.isinf(c) & ~np.isinf(exact.hi)] = "overflow"
    out[np.isnan(c)] = "nan"
    return out


def result_outcome(computed: np.ndarray, exact) -> str:
    """One outcome for a whole result (a scalar or a vector).

    The worst of: ``"nan"`` if any component is NaN; ``"overflow"`` if any is infinite where the
    exact value is finite; ``"underflow"`` if the result lost everything to underflow (every
    component zero while the exact result is not zero); else ``"ok"``. A vector whose tiny
    components round to zero is not an underflow: only the norm of the result matters.
    """
    labels = classify(computed, exact)
    if (labels == "nan").any():
        return "nan"
    if (labels == "overflow").any():
        return "overflow"
    c = np.asarray(computed).astype(np.float64)
    if np.all(c == 0) and (labels == "underflow").any():
        return "underflow"
    return "ok"
