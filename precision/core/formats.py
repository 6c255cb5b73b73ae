"""The floating-point format registry and exact rounding into a format.

A format is described by its precision ``p`` (significand bits, the implicit bit included) and
its exponent range; everything else (unit roundoff, largest finite value, smallest normal and
subnormal) follows from those and is checked against ``numpy.finfo`` / ``ml_dtypes.finfo`` in
the tests. Rounding an exact value into a format happens **once**, from the exact value: going
through float64 first (or through float32, as ml_dtypes' float64 -> bfloat16 cast does) can
round twice and land on the wrong neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np

__all__ = [
    "FORMATS",
    "Format",
    "cast",
    "common_format",
    "get_format",
    "is_rounding_tie",
    "round_to_format",
    "round_to_format_array",
]


@dataclass(frozen=True)
class Format:
    """A binary floating-point format with round-to-nearest-even arithmetic.

    Parameters
    ----------
    name : str
        Registry name (``"float16"``, ``"bfloat16"``, ...).
    dtype : numpy.dtype
        The numpy / ml_dtypes dtype that stores the format.
    p : int
        Precision in bits, the implicit leading bit included (float16: 11).
    emin, emax : int
        Exponent range of normal numbers: normals are ``m * 2**e`` with ``1 <= m < 2`` and
        ``emin <= e <= emax``.
    has_inf : bool
        False for formats without infinities (float8_e4m3fn): overflow gives NaN there.
    max_significand : int or None
        Largest integral significand at ``emax`` when the format reserves the top codes for NaN
        (float8_e4m3fn: 0b1110 at emax, so max = 1.75 * 2**8 = 448); None when it is ``2**p - 1``.
    """

    name: str
    dtype: np.dtype
    p: int
    emin: int
    emax: int
    has_inf: bool = True
    max_significand: int | None = None

    @property
    def u(self) -> float:
        """Unit roundoff ``2**-p``: the largest relative error of one rounding (normal range)."""
        return 2.0**-self.p

    @property
    def eps(self) -> float:
        """Machine epsilon ``2**(1-p)``: the gap between 1 and the next float."""
        return 2.0 ** (1 - self.p)

    @property
    def max(self) -> float:
        """Largest finite value."""
        significand = self.max_significand or (2**self.p - 1)
        return float(Fraction(significand) * Fraction(2) ** (self.emax - self.p + 1))

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value ``2**emin``."""
        return 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        """Smallest positive subnormal value ``2**(emin - p + 1)``."""
        return 2.0 ** (self.emin - self.p + 1)

    @property
    def bits(self) -> int:
        """Storage width in bits."""
        return self.dtype.itemsize * 8

    def __str__(self) -> str:
        return self.name


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("float16", np.dtype(np.float16), p=11, emin=-14, emax=15),
        Format("bfloat16", np.dtype(ml_dtypes.bfloat16), p=8, emin=-126, emax=127),
        Format("float32", np.dtype(np.float32), p=24, emin=-126, emax=127),
        Format("float64", np.dtype(np.float64), p=53, emin=-1022, emax=1023),
        Format(
            "float8_e4m3fn",
            np.dtype(ml_dtypes.float8_e4m3fn),
            p=4,
            emin=-6,
            emax=8,
            has_inf=False,
            max_significand=0b1110,
        ),
        Format("float8_e5m2", np.dtype(ml_dtypes.float8_e5m2), p=3, emin=-14, emax=15),
    )
}
"""Every supported format by name. The four study formats come first."""

STUDY_FORMATS: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")


def get_format(name_or_dtype: str | np.dtype | type | Format) -> Format:
    """Look a format up by registry name, dtype or scalar type; ``KeyError`` names the choices."""
    if isinstance(name_or_dtype, Format):
        return name_or_dtype
    if isinstance(name_or_dtype, str):
        # Names only: numpy's aliases ("f8" is float64, not float8; "half") would surprise.
        if name_or_dtype in FORMATS:
            return FORMATS[name_or_dtype]
        raise KeyError(f"unknown format {name_or_dtype!r}; known: {', '.join(FORMATS)}")
    try:
        # np.dtype(None) is float64: None must not silently select a format.
        dtype = None if name_or_dtype is None else np.dtype(name_or_dtype)
    except TypeError:
        dtype = None
    for fmt in FORMATS.values():
        if dtype is not None and fmt.dtype == dtype:
            return fmt
    raise KeyError(f"unknown format {name_or_dtype!r}; known: {', '.join(FORMATS)}")


def common_format(fmts) -> Format:
    """The values representable in every one of ``fmts``, as a format stored in float64.

    Its precision is the smallest p, its exponent range the intersection of the ranges
    (float16 and bfloat16 share 8 bits of precision over float16's range), and its largest
    value the largest multiple of its top binade's spacing that no format exceeds: with
    float8_e4m3fn (max 448 = 14 * 2**5, its top codes are NaN) and a wider format, p = 4 and
    emax = 8 would reach 15 * 2**5 = 480 otherwise. A value rounded to it once is exactly
    representable in each of ``fmts``, so they all receive the same input.
    """
    fmts = [get_format(f) for f in fmts]
    if len(fmts) == 1:
        return fmts[0]
    p, emax = min(f.p for f in fmts), min(f.emax for f in fmts)
    spacing = Fraction(2) ** (emax - p + 1)
    largest = min(Fraction(f.max) for f in fmts) // spacing  # each max >= 2**emax: a normal
    return Format(
        name="common(" + ",".join(f.name for f in fmts) + ")",
        dtype=np.dtype(np.float64),
        p=p,
        emin=max(f.emin for f in fmts),
        emax=emax,
        has_inf=all(f.has_inf for f in fmts),
        max_significand=None if largest >= 2**p - 1 else int(largest),
    )


def _round_ratio_half_even(num: int, den: int) -> int:
    """Round the positive rational num/den to the nearest integer, ties to even."""
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q % 2 == 1):
        q += 1
    return q


def round_to_format(x: mpmath.mpf | Fraction | int | float, fmt: Format | str) -> np.generic:
    """Round an exact value to ``fmt`` once, with round-to-nearest-even.

    The value is taken exactly as a ratio of integers (an ``mpmath.mpf`` is ``man * 2**exp``, a
    float or ``Fraction`` is exact too), divided by the quantum of its binade
    (``2**(e - p + 1)``, or the subnormal quantum ``2**(emin - p + 1)`` below the normal range)
    and rounded to an integer with ties to even, in integer arithmetic. Magnitudes that round
    past ``max`` overflow to infinity (NaN for formats without infinities), as IEEE 754
    prescribes for round-to-nearest.

    Parameters
    ----------
    x : mpmath.mpf, Fraction, int or float
        The exact value. mpmath infinities and NaN map to the format's.
    fmt : Format or str
        Target format.

    Returns
    -------
    numpy scalar of ``fmt.dtype``
        The correctly rounded value: relative error at most u in the normal range, absolute error
        at most half the subnormal quantum below it.
    """
    fmt = get_format(fmt)
    far = _far_outside_range(x, fmt)
    if far is not None:
        return far
    ratio = _as_ratio(x)
    if ratio is None:  # NaN or infinity
        return fmt.dtype.type(float(x))
    num, den = ratio
    if num == 0:
        return fmt.dtype.type(-0.0 if _is_negative_zero(x) else 0.0)
    negative = num < 0
    num = abs(num)
    e = _floor_log2(num, den)
    if e > fmt.emax:
        return _overflow(fmt, negative)
    quantum_exp = max(e, fmt.emin) - fmt.p + 1
    if quantum_exp >= 0:
        significand = _round_ratio_half_even(num, den << quantum_exp)
    else:
        significand = _round_ratio_half_even(num << -quantum_exp, den)
    # Rounding may carry into the next binade; compare with max = max_significand * 2**(emax-p+1).
    max_significand = fmt.max_significand or (2**fmt.p - 1)
    if significand > max_significand << (fmt.emax - fmt.p + 1 - quantum_exp):
        return _overflow(fmt, negative)
    # Exactly representable in float64 (every registry format is a subset of it), so ldexp and
    # the cast to the target dtype below are both exact.
    value = math.ldexp(significand, quantum_exp)
    return fmt.dtype.type(-value if negative else value)


def round_dyadic(man: int, exp: int, fmt: Format | str) -> np.generic:
    """Round the exact dyadic value ``man * 2**exp`` to ``fmt`` once, round-to-nearest-even.

    The same rounding as `round_to_format` (which this must equal for every input), done with
    one shift of the integer mantissa instead of a ratio of integers: the quantum of the
    value's binade is ``2**q`` with ``q = max(e, emin) - p + 1`` and ``e = floor(log2|value|)``,
    so the significand is ``man / 2**(q - exp)``, rounded half to even on the shifted-out bits.
    Used on the midpoints and endpoints of Arb balls, where it is several times cheaper.

    Parameters
    ----------
    man, exp : int
        The value ``man * 2**exp`` (any signs and sizes).
    fmt : Format or str
        Target format.
    """
    fmt = get_format(fmt)
    if man == 0:
        return fmt.dtype.type(0.0)
    negative = man < 0
    man = abs(man)
    e = man.bit_length() - 1 + exp
    if e > fmt.emax:
        return _overflow(fmt, negative)
    if e < fmt.emin - fmt.p - 1:  # below half the smallest subnormal: a zero of its sign
        return fmt.dtype.type(-0.0 if negative else 0.0)
    quantum_exp = max(e, fmt.emin) - fmt.p + 1
    shift = quantum_exp - exp
    if shift <= 0:
        significand = man << -shift
    else:
        significand = man >> shift
        remainder = man - (significand << shift)
        half = 1 << (shift - 1)
        if remainder > half or (remainder == half and significand & 1):
            significand += 1
    max_significand = fmt.max_significand or (2**fmt.p - 1)
    if significand > max_significand << (fmt.emax - fmt.p + 1 - quantum_exp):
        return _overflow(fmt, negative)
    value = math.ldexp(significand, quantum_exp)  # exact: the result is a float64 value
    return fmt.dtype.type(-value if negative else value)


def _far_outside_range(x, fmt: Format) -> np.generic | None:
    """The rounding of an mpmath value far beyond the format's range, else None.

    exp(1e308) is ``man * 2**exp`` with a 1024-bit ``exp``: its integer ratio cannot be formed
    (the shift overflows), but its binade alone decides the result. A value of at least
    ``2**(emax + 1)`` overflows; one below ``2**(emin - p)`` (half the smallest subnormal)
    rounds to a zero of its sign.
    """
    if not isinstance(x, mpmath.mpf) or not mpmath.isfinite(x) or x == 0:
        return None
    man, exp = x.man_exp
    top = int(exp) + int(man).bit_length()  # 2**(top - 1) <= |x| < 2**top
    if top - 1 > fmt.emax:
        return _overflow(fmt, x < 0)
    if top <= fmt.emin - fmt.p:
        return fmt.dtype.type(-0.0 if x < 0 else 0.0)
    return None


def is_rounding_tie(x, fmt: Format | str) -> bool:
    """Whether the exact value ``x`` lies exactly halfway between two neighbours in ``fmt``.

    Ground truth that lands exactly on a tie deserves suspicion: a term absorbed below the
    working precision (``666 + e**-666``) can leave a value that rounds the other way.
    """
    fmt = get_format(fmt)
    if _far_outside_range(x, fmt) is not None:
        return False
    ratio = _as_ratio(x)
    if ratio is None or ratio[0] == 0:
        return False
    num, den = abs(ratio[0]), ratio[1]
    quantum_exp = max(_floor_log2(num, den), fmt.emin) - fmt.p + 1
    if quantum_exp >= 0:
        num, den = num, den << quantum_exp
    else:
        num, den = num << -quantum_exp, den
    return 2 * (num % den) == den


def _overflow(fmt: Format, negative: bool) -> np.generic:
    value = np.inf if fmt.has_inf else np.nan
    return fmt.dtype.type(-value if negative else value)


def round_to_format_array(values, fmt: Format | str) -> np.ndarray:
    """Round each exact value of an array-like to ``fmt`` once; see `round_to_format`."""
    fmt = get_format(fmt)
    arr = np.asarray(values, dtype=object)
    out = np.empty(arr.shape, dtype=fmt.dtype)
    for index, value in np.ndenumerate(arr):
        out[index] = round_to_format(value, fmt)
    return out


def cast(x: np.ndarray, fmt: Format | str) -> np.ndarray:
    """Round a float64 (or narrower) array to ``fmt`` with one correct rounding per element.

    numpy's own casts from float64 to float16 and float32 are single correct roundings. The
    ml_dtypes cast to bfloat16 and float8 goes through float32 and so can round twice; it is made
    correct here by first rounding to float32 *to odd* (keeping a sticky bit of the discarded
    part), after which the final round-to-nearest-even is exact (Boldo & Melquiond, 2008: round
    to odd with at least p + 2 bits, then to nearest, equals one rounding to nearest).
    """
    fmt = get_format(fmt)
    x = np.asarray(x)
    if x.dtype == fmt.dtype:
        return x.copy()
    if fmt.dtype in (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)):
        # Overflow to +-inf is the correctly rounded result, not an error: numpy warns on it.
        with np.errstate(over="ignore"):
            return x.astype(fmt.dtype)
    return _float32_round_to_odd(x.astype(np.float64)).astype(fmt.dtype)


def _float32_round_to_odd(x: np.ndarray) -> np.ndarray:
    """Round float64 values to float32 with round-to-odd (inexact results get an odd last bit)."""
    with np.errstate(over="ignore"):
        nearest = x.astype(np.float32)
    bits = nearest.view(np.uint32).copy()
    inexact = (nearest.astype(np.float64) != x) & np.isfinite(nearest)
    even = (bits & 1) == 0
    fix = inexact & even
    # The odd neighbour lies between `nearest` and x: step the magnitude towards x.
    towards_zero = np.abs(nearest.astype(np.float64)) > np.abs(x)
    bits[fix & towards_zero] -= 1
    bits[fix & ~towards_zero] += 1
    # A zero that is inexact keeps x's sign: its odd neighbour is the smallest subnormal.
    return bits.view(np.float32).reshape(x.shape)


def _as_ratio(x) -> tuple[int, int] | None:
    """The exact value of x as (numerator, positive denominator), or None for inf and NaN."""
    if isinstance(x, Fraction):
        return x.numerator, x.denominator
    if isinstance(x, int | np.integer):
        return int(x), 1
    if isinstance(x, mpmath.mpf):
        if not mpmath.isfinite(x):
            return None
        man, exp = x.man_exp
        # man_exp drops the sign (mpmath keeps it apart, in _mpf_[0]): restore it.
        man, exp = (-int(man) if x < 0 else int(man)), int(exp)
        return (man << exp, 1) if exp >= 0 else (man, 1 << -exp)
    value = float(x)
    if not math.isfinite(value):
        return None
    return value.as_integer_ratio()


def _is_negative_zero(x) -> bool:
    if isinstance(x, mpmath.mpf | Fraction | int):
        return False  # mpmath, Fraction and int have no signed zero
    return float(x) == 0.0 and math.copysign(1.0, float(x)) < 0


def _floor_log2(num: int, den: int) -> int:
    """floor(log2(num / den)) for positive integers, exactly."""
    e = num.bit_length() - den.bit_length()
    # The estimate is e or e + 1 too high by at most one: correct it exactly.
    if (num << max(-e, 0)) < (den << max(e, 0)):
        e -= 1
    return e
