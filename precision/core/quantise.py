"""Quantisation into scaled low-precision formats, with exact rounding.

A quantised tensor is ``element * block_scale * tensor_scale``: small element formats (OCP FP8,
FP6, FP4) share a scale per block of consecutive values along the last axis. Three schemes:

* **MX** (OCP Microscaling Formats v1.0): blocks of 32 sharing an E8M0 scale ``2**s``. The
  spec's rule (section 6.3) is ``s = floor(log2(amax)) - emax_elem``, elements rounded to nearest
  even and saturated to the element's largest normal. Its amax can exceed the element range
  (up to ``2**(emax_elem + 1)``) and then saturates; the round-up rule (Mishra et al., "Recipes
  for pre-training LLMs with MXFP8", 2025) takes ``s = ceil(log2(amax / max_elem))`` instead, so
  ``amax / 2**s <= max_elem`` and nothing saturates.
* **NVFP4**: E2M1 elements, blocks of 16, a block scale rounded to E4M3 and a float32 tensor
  scale ``amax / (448 * 6)``.
* **Per-tensor scaled FP8** (current scaling): one float32 scale ``amax / max_elem``.

"Tensor" means one input of the batch: every scale is computed from one row (all leading axes
index rows), so rows stay independent. A last axis that is not a multiple of the block size
ends with a shorter tail block, scaled by its own amax.

Every rounding here is one correct rounding of the exact value: which neighbour the quotient
``x / scale`` rounds to is decided by an exact comparison, not by rounding a rounded float64
quotient; see `round_quotient_to_element`. The products ``element * scales`` are exact in
float64 (at most 2 + 4 + 24 significant bits), so the dequantised tensor is exact.

Measured facts about ml_dtypes' own casts (ml_dtypes 0.7; tests/core/test_quantise.py measures
them on every run): float64 -> FP4/FP6 saturates values beyond max (and inf) but turns NaN into a
signed zero; float64 -> float8_e4m3fn overflows to NaN and float8_e5m2 to inf, the OCP FP8
non-saturating mode, not MX's saturation.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from precision.core.formats import Format, round_to_format
from precision.core.metrics import normwise_relative_error

__all__ = [
    "E8M0_EMAX",
    "E8M0_EMIN",
    "E8M0_NAN_EXPONENT",
    "ELEMENT_FORMATS",
    "SCHEMES",
    "ElementFormat",
    "Quantised",
    "e8m0_codes",
    "get_element_format",
    "quantisation_error",
    "quantise",
    "quantise_mx",
    "quantise_nvfp4",
    "quantise_per_tensor",
    "round_quotient_to_element",
    "round_to_element",
    "round_to_element_array",
    "to_element_dtype",
]

E8M0_EMIN, E8M0_EMAX = -127, 127  # E8M0 encodes 2**(code - 127) for codes 0..254
E8M0_NAN_EXPONENT = 128  # code 255 is E8M0's only NaN; exponent 128 is that code
SCALE_RULES = ("ocp", "round_up")


@dataclass(frozen=True)
class ElementFormat:
    """A small binary floating-point element format (OCP OFP8 / MX v1.0 element types).

    Normals are ``m * 2**e``, ``1 <= m < 2``, ``emin <= e <= emax``, with ``p`` significand bits;
    subnormals fill ``[0, 2**emin)`` with quantum ``2**(emin - p + 1)``; signed zeros exist in
    all of them.

    Parameters
    ----------
    name : str
        The ml_dtypes name (``"float4_e2m1fn"``).
    dtype : numpy.dtype
        The ml_dtypes dtype storing it (one byte per value, also for FP4 and FP6).
    p, emin, emax : int
        Precision (implicit bit included) and normal exponent range (OCP MX v1.0, table 1).
    width : int
        Encoding width in bits (4, 6 or 8).
    max_significand : int
        Largest integral significand at ``emax`` (E4M3: 0b1110, since 0b1111 is NaN there).
    special : str
        What the format holds beyond its finite values, which decides non-saturating overflow:
        ``"inf"`` (E5M2: infinities and NaN), ``"nan"`` (E4M3: NaN only), ``"none"`` (FP6, FP4).
    """

    name: str
    dtype: np.dtype
    p: int
    emin: int
    emax: int
    width: int
    max_significand: int
    special: str

    @property
    def u(self) -> float:
        """Unit roundoff ``2**-p``."""
        return 2.0**-self.p

    @property
    def max(self) -> float:
        """Largest finite value ``max_significand * 2**(emax - p + 1)``."""
        return float(np.ldexp(self.max_significand, self.emax - self.p + 1))

    @property
    def min_normal(self) -> float:
        """Smallest positive normal ``2**emin``."""
        return 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        """Smallest positive subnormal ``2**(emin - p + 1)``."""
        return 2.0 ** (self.emin - self.p + 1)

    def values(self) -> np.ndarray:
        """Every non-negative finite value, ascending (float64, exact): the format's value set."""
        quantum = self.emin - self.p + 1
        subnormals = np.arange(0, 2 ** (self.p - 1))  # significands below the implicit bit
        normals = [
            np.arange(2 ** (self.p - 1), 2**self.p) * 2 ** (e - self.emin)
            for e in range(self.emin, self.emax + 1)
        ]
        sig = np.concatenate([subnormals, *normals])
        top = self.max_significand * 2 ** (self.emax - self.emin)
        return np.ldexp(sig[sig <= top].astype(np.float64), quantum)

    def as_format(self) -> Format:
        """The same value grid as a registry `Format` held in float64, with IEEE overflow to
        inf, so that `precision.core.formats.round_to_format` rounds exact values onto it."""
        return Format(
            self.name,
            np.dtype(np.float64),
            p=self.p,
            emin=self.emin,
            emax=self.emax,
            max_significand=self.max_significand,
        )

    def __str__(self) -> str:
        return self.name


def _element(name: str, *, p: int, emin: int, emax: int, width: int, top: int, special: str):
    dtype = np.dtype(getattr(ml_dtypes, name))
    return ElementFormat(name, dtype, p, emin, emax, width, top, special)


ELEMENT_FORMATS: dict[str, ElementFormat] = {
    f.name: f
    for f in (
        _element("float8_e4m3fn", p=4, emin=-6, emax=8, width=8, top=0b1110, special="nan"),
        _element("float8_e5m2", p=3, emin=-14, emax=15, width=8, top=0b111, special="inf"),
        _element("float6_e2m3fn", p=4, emin=0, emax=2, width=6, top=0b1111, special="none"),
        _element("float6_e3m2fn", p=3, emin=-2, emax=4, width=6, top=0b111, special="none"),
        _element("float4_e2m1fn", p=2, emin=0, emax=2, width=4, top=0b11, special="none"),
    )
}
"""The MX / NVFP4 element formats by ml_dtypes name. Kept apart from ``formats.FORMATS``: the
studies iterate that registry, and these formats only make sense with a scale."""

# float32 as an element grid: the tensor scales of NVFP4 and per-tensor FP8 are rounded onto it.
_FLOAT32 = ElementFormat("float32", np.dtype(np.float32), 24, -126, 127, 32, 2**24 - 1, "inf")


def get_element_format(fmt: str | ElementFormat) -> ElementFormat:
    """Look an element format up by name; ``KeyError`` names the choices."""
    if isinstance(fmt, ElementFormat):
        return fmt
    if fmt in ELEMENT_FORMATS:
        return ELEMENT_FORMATS[fmt]
    raise KeyError(f"unknown element format {fmt!r}; known: {', '.join(ELEMENT_FORMATS)}")


# ----------------------------------------------------------------------------- exact rounding


def _overflowed(magnitude: np.ndarray, fmt: ElementFormat, *, saturate: bool) -> np.ndarray:
    """The value of a magnitude that rounded past ``fmt.max`` (or was infinite).

    Saturating (MX's rule, OCP MX v1.0 section 6.3, and the only choice for FP6/FP4, which have
    neither infinity nor NaN): ``max``. Otherwise OCP FP8's non-saturating mode: inf for E5M2,
    NaN for E4M3.
    """
    if saturate or fmt.special == "none":
        return np.full_like(magnitude, fmt.max)
    return np.full_like(magnitude, np.inf if fmt.special == "inf" else np.nan)


def round_to_element(x, fmt: str | ElementFormat, *, saturate: bool = True) -> float:
    """Round one exact value (float, int, Fraction or mpmath.mpf) to an element format, once.

    Round to nearest, ties to even, on the exact value: the rounding of
    `precision.core.formats.round_to_format` onto ``fmt``'s grid, then the overflow rule.

    Parameters
    ----------
    x : float, int, Fraction or mpmath.mpf
        The exact value.
    fmt : str or ElementFormat
        Target element format.
    saturate : bool, keyword-only
        Magnitudes that round past ``max`` give ``max`` (True, MX) or the format's overflow
        value (False: inf for E5M2, NaN for E4M3; FP6/FP4 always saturate).

    Returns
    -------
    float
        The element value, exact in float64: relative error at most ``u = 2**-p`` in the normal
        range, absolute error at most half the subnormal quantum below it. A NaN input gives NaN
        (which FP6/FP4 cannot encode: see `to_element_dtype`).
    """
    fmt = get_element_format(fmt)
    value = float(round_to_format(x, fmt.as_format()))
    if np.isinf(value):
        value = float(np.copysign(_overflowed(np.array(1.0), fmt, saturate=saturate), value))
    return value


def _significant_bits(d: np.ndarray) -> np.ndarray:
    """Bits between the leading and the trailing 1 of each positive float64, inclusive."""
    mantissa = np.ldexp(np.frexp(d)[0], 53).astype(np.int64)  # integral, odd part = significand
    lowest_one = mantissa & -mantissa
    return 53 - np.log2(lowest_one.astype(np.float64)).astype(np.int64)


def _grid_below(q: np.ndarray, fmt: ElementFormat) -> tuple[np.ndarray, np.ndarray]:
    """``(sig, quantum)`` with ``sig * 2**quantum`` the largest grid value <= q (q >= 0 finite).

    The grid is the format's, continued past ``emax`` with the same precision, so that overflow
    shows up as a value beyond ``max``. Scaling by a power of two and flooring are exact.
    """
    exponent = np.frexp(q)[1].astype(np.int64) - 1  # floor(log2 q), exact (also subnormal q)
    exponent = np.where(q == 0, fmt.emin, exponent)
    quantum = np.maximum(exponent, fmt.emin) - fmt.p + 1
    return np.floor(np.ldexp(q, -quantum)), quantum


def round_quotient_to_element(
    x: np.ndarray, d: np.ndarray | float, fmt: str | ElementFormat, *, saturate: bool = True
) -> np.ndarray:
    """Round ``x / d`` exactly to an element format, elementwise, with one correct rounding.

    The float64 quotient ``q = fl(x / d)`` is within half an ulp of float64 of the exact one, far
    less than the element spacing, so the exact quotient lies between the grid values
    ``lo <= q < hi`` found from ``q`` (or within an ulp of ``lo``, which then is nearest).
    Which of the two is nearest is decided exactly by comparing ``|x|`` with ``mid * d``, where
    ``mid = (lo + hi) / 2`` has ``p + 1`` bits: the product is exact in float64 whenever ``d``
    has at most ``52 - p`` significant bits (checked). Equality is a tie, given to the even
    significand. (Under the same bit condition ``fl(x / d)`` never lands exactly on a midpoint
    unless ``x / d`` is one, since ``|x - mid * d|`` would be below an ulp of ``mid * d``; so
    rounding ``fl(x / d)`` happens to be right too. The comparison makes exactness a check
    rather than a consequence of that argument; the tests measure both on every midpoint.)

    Parameters
    ----------
    x : numpy.ndarray
        Values (float64; any float dtype is converted exactly).
    d : numpy.ndarray or float
        Positive finite divisors, broadcast against ``x``, each with at most ``52 - p``
        significant bits and within ``[2**-900, 2**900]``: a power of two (MX), a float32
        (per-tensor) or an E4M3 times a float32 (NVFP4).
    fmt : str or ElementFormat
        Target element format.
    saturate : bool, keyword-only
        Overflow rule, as in `round_to_element`.

    Returns
    -------
    numpy.ndarray
        float64 element values with the sign of ``x`` (signed zeros kept): the correctly rounded
        ``x / d``, error at most ``u |x / d|`` (normal range) or half the subnormal quantum.
        NaN gives NaN; an infinity is treated as an overflow.
    """
    fmt = get_element_format(fmt)
    x = np.asarray(x, dtype=np.float64)
    d = np.broadcast_to(np.asarray(d, dtype=np.float64), x.shape)
    _check_divisors(d, fmt)
    finite = np.isfinite(x)
    magnitude = np.where(finite, np.abs(x), 0.0)
    with np.errstate(over="ignore"):  # a quotient past float64's range is an overflow anyway
        q = magnitude / d
    q = np.where(np.isfinite(q), q, np.ldexp(1.0, fmt.emax + 2))
    sig, quantum = _grid_below(q, fmt)
    midpoint_times_d = np.ldexp(2 * sig + 1, quantum - 1) * d  # exact: (p + 1) + bits(d) <= 53
    up = (magnitude > midpoint_times_d) | ((magnitude == midpoint_times_d) & (sig % 2 == 1))
    rounded = np.ldexp(sig + up, quantum)
    rounded = np.where(rounded > fmt.max, _overflowed(rounded, fmt, saturate=saturate), rounded)
    rounded = np.where(np.isinf(x), _overflowed(rounded, fmt, saturate=saturate), rounded)
    return np.where(np.isnan(x), np.nan, np.copysign(rounded, x))


def _check_divisors(d: np.ndarray, fmt: ElementFormat) -> None:
    """Raise ValueError unless every divisor keeps ``mid * d`` exact and in float64's range."""
    if d.size == 0:
        return
    if not (np.all(d >= 2.0**-900) and np.all(d <= 2.0**900)):
        raise ValueError("d: divisors must be finite and within [2**-900, 2**900]")
    if np.max(_significant_bits(d)) > 52 - fmt.p:
        raise ValueError(f"d: divisors need at most {52 - fmt.p} significant bits for {fmt}")


def round_to_element_array(
    x: np.ndarray, fmt: str | ElementFormat, *, saturate: bool = True
) -> np.ndarray:
    """Round float64 values to an element format, once each: `round_quotient_to_element`
    with ``d = 1`` (exact quotient), so the same single round-to-nearest-even."""
    return round_quotient_to_element(x, 1.0, fmt, saturate=saturate)


def to_element_dtype(values: np.ndarray, fmt: str | ElementFormat) -> np.ndarray:
    """Store exact element values in ``fmt``'s ml_dtypes dtype (an exact conversion).

    Raises ValueError on a value outside the format (including NaN in FP6/FP4, which ml_dtypes
    would silently store as a zero).
    """
    fmt = get_element_format(fmt)
    values = np.asarray(values, dtype=np.float64)
    if fmt.special == "none" and np.any(np.isnan(values)):
        raise ValueError(f"values: {fmt} has no NaN")
    stored = values.astype(fmt.dtype)
    same = (stored.astype(np.float64) == values) | (np.isnan(values) & np.isnan(stored))
    if not np.all(same):
        raise ValueError(f"values: not all representable in {fmt}")
    return stored


def e8m0_codes(exponents: np.ndarray) -> np.ndarray:
    """E8M0 codes (uint8 ``e + 127``; 255 for NaN) of scale exponents; view as float8_e8m0fnu."""
    exponents = np.asarray(exponents)
    if np.any((exponents < E8M0_EMIN) | (exponents > E8M0_NAN_EXPONENT)):
        raise ValueError(f"exponents: outside E8M0's {E8M0_EMIN}..{E8M0_EMAX} (and NaN)")
    return (exponents.astype(np.int64) + 127).astype(np.uint8)


# ----------------------------------------------------------------------------- block scaling


@dataclass(frozen=True)
class Quantised:
    """A scaled quantisation of a batch: ``element * block_scale * tensor_scale``, exactly.

    Attributes
    ----------
    elements : numpy.ndarray
        ``(*batch, n)`` float64 element values (exact members of the element format).
    block_scales : numpy.ndarray
        ``(*batch, n_blocks)`` float64 block scales: ``2**s`` (MX, NaN for the E8M0 NaN), E4M3
        values (NVFP4), ones (per-tensor).
    tensor_scales : numpy.ndarray
        ``(*batch,)`` float64 per-row scales (float32 values; ones for MX).
    block_size : int
        Values per block along the last axis; the last block may be shorter.
    dequantised : numpy.ndarray
        ``(*batch, n)`` float64 ``elements * block_scale * tensor_scale``: exact, since the
        factors carry at most 2 + 4 + 24 significant bits and stay inside float64's range.
    """

    elements: np.ndarray
    block_scales: np.ndarray
    tensor_scales: np.ndarray
    block_size: int
    dequantised: np.ndarray

    @property
    def scale_exponents(self) -> np.ndarray:
        """``s`` of each MX block scale ``2**s`` (int64; `E8M0_NAN_EXPONENT` for NaN)."""
        s = np.frexp(np.where(np.isnan(self.block_scales), 1.0, self.block_scales))[1] - 1
        return np.where(np.isnan(self.block_scales), E8M0_NAN_EXPONENT, s).astype(np.int64)


def _rows(x: np.ndarray, block_size: int) -> np.ndarray:
    """x as float64, validated: at least one axis, a positive integer block size."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError("x: needs a non-empty last axis (the one that is blocked)")
    if not isinstance(block_size, int | np.integer) or block_size < 1:
        raise ValueError(f"block_size: must be a positive integer, got {block_size!r}")
    return x


def _per_block(values: np.ndarray, block_size: int, reduce) -> np.ndarray:
    """``reduce`` over each block of the last axis; the tail block is padded with zeros, which
    no reduction used here (max of magnitudes, any non-finite) is changed by."""
    n = values.shape[-1]
    n_blocks = -(-n // block_size)
    pad = [(0, 0)] * (values.ndim - 1) + [(0, n_blocks * block_size - n)]
    padded = np.pad(values, pad).reshape(*values.shape[:-1], n_blocks, block_size)
    return reduce(padded, axis=-1)


def _expand(block_values: np.ndarray, block_size: int, n: int) -> np.ndarray:
    """Repeat each block's value over its block and cut the tail to length n."""
    return np.repeat(block_values, block_size, axis=-1)[..., :n]


def _amax(x: np.ndarray, block_size: int) -> np.ndarray:
    """Largest magnitude per block; NaN where the block holds a NaN or an infinity."""
    amax = _per_block(np.abs(np.where(np.isnan(x), 0.0, x)), block_size, np.max)
    bad = _per_block(~np.isfinite(x), block_size, np.any)
    return np.where(bad, np.nan, amax)


def _mx_exponents(amax: np.ndarray, fmt: ElementFormat, scale_rule: str) -> np.ndarray:
    """E8M0 exponents of MX block scales from each block's amax.

    OCP: ``s = floor(log2 amax) - emax_elem``, so ``amax / 2**s`` lies in
    ``[2**emax, 2**(emax + 1))`` and saturates above ``max``. Round-up: ``s + 1`` exactly when
    ``amax / 2**s > max`` (exact: a power-of-two scaling), i.e. ``s = ceil(log2(amax / max))``,
    so no element exceeds ``max``. Clamped to E8M0's ``[-127, 127]``; an all-zero block gets
    ``-127`` (any scale represents it); a non-finite block gets the NaN code.
    """
    finite = np.isfinite(amax) & (amax > 0)
    safe = np.where(finite, amax, 1.0)
    s = np.frexp(safe)[1].astype(np.int64) - 1 - fmt.emax
    if scale_rule == "round_up":
        s = s + (np.ldexp(safe, -s) > fmt.max)
    s = np.where(finite, np.clip(s, E8M0_EMIN, E8M0_EMAX), E8M0_EMIN)
    return np.where(np.isnan(amax), E8M0_NAN_EXPONENT, s)


def quantise_mx(
    x: np.ndarray,
    *,
    element: str | ElementFormat,
    block_size: int = 32,
    scale_rule: str = "ocp",
) -> Quantised:
    """OCP Microscaling (MX v1.0) quantisation along the last axis.

    Each block of ``block_size`` values shares ``X = 2**s`` (E8M0); element ``i`` is
    ``RN_sat(x_i / X)``, rounded once to nearest even and saturated to the element's max
    (OCP MX v1.0 section 6.3); the dequantised value is ``element * X``, exact.

    Parameters
    ----------
    x : numpy.ndarray
        ``(*batch, n)`` values, converted exactly to float64.
    element : str or ElementFormat, keyword-only
        Element format: float8_e4m3fn, float8_e5m2, float6_e2m3fn, float6_e3m2fn, float4_e2m1fn.
    block_size : int, keyword-only
        Values sharing a scale (32 in the spec); a shorter tail block gets its own scale.
    scale_rule : {"ocp", "round_up"}, keyword-only
        ``"ocp"``: ``s = floor(log2 amax) - emax_elem``; a block whose amax has significand
        above ``max / 2**emax`` (E4M3: 1.75) saturates, a relative error up to
        ``1 - max / 2**(emax + 1)`` (E2M1: 25%). ``"round_up"`` (Mishra et al. 2025):
        ``s = ceil(log2(amax / max))``, no saturation, at the cost of up to one binade of
        resolution for the block.

    Returns
    -------
    Quantised
        Every element has relative error at most ``u`` against ``x_i / X`` when that lies in the
        element's normal range and is not saturated. A block holding inf or NaN gets the NaN
        scale and dequantises to NaN throughout.
    """
    fmt = get_element_format(element)
    if scale_rule not in SCALE_RULES:
        raise ValueError(f"scale_rule: must be one of {SCALE_RULES}, got {scale_rule!r}")
    x = _rows(x, block_size)
    exponents = _mx_exponents(_amax(x, block_size), fmt, scale_rule)
    scales = np.where(exponents == E8M0_NAN_EXPONENT, np.nan, np.ldexp(1.0, exponents))
    per_value = _expand(scales, block_size, x.shape[-1])
    elements = round_quotient_to_element(x, np.where(np.isnan(per_value), 1.0, per_value), fmt)
    elements = np.where(np.isnan(per_value), np.nan, elements)
    ones = np.ones(x.shape[:-1])
    return Quantised(elements, scales, ones, block_size, elements * per_value)


def _round_scale(amax: np.ndarray, divisor: float) -> np.ndarray:
    """float32 value nearest ``amax / divisor`` (one rounding); 1 for a zero (or non-finite)
    row, and float32's least subnormal where the quotient would round to zero."""
    finite = np.isfinite(amax) & (amax > 0)
    scale = round_quotient_to_element(np.where(finite, amax, divisor), divisor, _FLOAT32)
    return np.where(finite, np.maximum(scale, _FLOAT32.min_subnormal), 1.0)


def quantise_per_tensor(
    x: np.ndarray, *, element: str | ElementFormat = "float8_e4m3fn"
) -> Quantised:
    """Per-tensor (per-row) scaled quantisation, as in FP8 current scaling.

    ``S = RN_float32(amax / max_elem)`` per row, element ``RN_sat(x_i / S)``, dequantised
    ``element * S`` (exact). Since S is rounded, ``amax / S`` can exceed ``max_elem`` by at most
    a float32 rounding (relative ``2**-24``), which rounds back to ``max_elem``. That holds
    while S is a normal float32 (``amax >= max_elem * 2**-126``: 2**-117.2 for E4M3): a
    subnormal S is rounded far more coarsely (amax = 2**-140 gives S = 2**-149, amax / S = 512,
    saturated to 448: 12.5% error); and an amax beyond float32's range saturates S at float32's
    largest value, so such a row (float64 input only) dequantises far below its values.

    Parameters
    ----------
    x : numpy.ndarray
        ``(*batch, n)`` values; each row gets its own scale.
    element : str or ElementFormat, keyword-only
        Element format (float8_e4m3fn or float8_e5m2 in practice).

    Returns
    -------
    Quantised
        With ``block_size = n``, ``block_scales`` ones and ``tensor_scales`` S. Error per element
        at most ``u |x_i|`` where ``x_i / S`` is normal; a row with inf or NaN is NaN throughout.
    """
    fmt = get_element_format(element)
    x = _rows(x, 1)
    n = x.shape[-1]
    amax = _amax(x, n)[..., 0]
    tensor = _round_scale(amax, fmt.max)
    elements = round_quotient_to_element(x, tensor[..., None], fmt)
    elements = np.where(np.isnan(amax)[..., None], np.nan, elements)
    block = np.ones(x.shape[:-1] + (1,))
    return Quantised(elements, block, tensor, n, elements * tensor[..., None])


NVFP4_SCALE = ELEMENT_FORMATS["float8_e4m3fn"]
NVFP4_ELEMENT = ELEMENT_FORMATS["float4_e2m1fn"]


def quantise_nvfp4(x: np.ndarray, *, block_size: int = 16) -> Quantised:
    """NVFP4 quantisation: E2M1 elements, an E4M3 scale per block, a float32 scale per row.

    ``S = RN_float32(amax / (448 * 6))`` per row; per block
    ``s_b = RN_sat_E4M3(amax_b / (6 S))``; element ``RN_sat_E2M1(x_i / (s_b S))``; dequantised
    ``element * s_b * S`` (exact). Every quotient is rounded once from its exact value
    (hardware forms them in float32 with reciprocals; this is the rule they approximate).

    Parameters
    ----------
    x : numpy.ndarray
        ``(*batch, n)`` values.
    block_size : int, keyword-only
        16 in NVFP4; a shorter tail block gets its own scale.

    Returns
    -------
    Quantised
        A block whose ``amax_b / (6 S)`` is at or below half E4M3's least subnormal
        (``2**-10``, i.e. ``amax_b <= amax * 2**-10 / 448``; the tie rounds to even, 0) gets
        scale 0 and dequantises to (signed) zeros; because ``s_b`` is rounded, the block's amax
        can round past 6 and saturate (relative error at most ``2**-4``, E4M3's u) while S is
        a normal float32 (``amax >= 2688 * 2**-126``); a subnormal S, or an amax beyond
        float32's range (S saturates), can err far more, as in `quantise_per_tensor`. A row
        holding inf or NaN is NaN throughout.
    """
    x = _rows(x, block_size)
    n = x.shape[-1]
    amax_row = _amax(x, n)[..., 0]
    tensor = _round_scale(amax_row, 448.0 * 6.0)
    amax = _amax(x, block_size)
    finite = np.isfinite(amax)
    block = round_quotient_to_element(
        np.where(finite, amax, 0.0), 6.0 * tensor[..., None], NVFP4_SCALE
    )
    # S is undefined for a row holding inf or NaN: the whole row is NaN, not only that block.
    block = np.where(finite & np.isfinite(amax_row)[..., None], block, np.nan)
    divisor = _expand(block, block_size, n) * tensor[..., None]  # exact: 4 + 24 bits
    usable = np.isfinite(divisor) & (divisor > 0)
    elements = round_quotient_to_element(x, np.where(usable, divisor, 1.0), NVFP4_ELEMENT)
    elements = np.where(usable, elements, np.where(np.isnan(divisor), np.nan, np.copysign(0.0, x)))
    return Quantised(elements, block, tensor, block_size, elements * divisor)


# ----------------------------------------------------------------------------- schemes by name

SCHEMES: dict[str, tuple[str, str, int]] = {
    "mxfp8_e4m3": ("mx", "float8_e4m3fn", 32),
    "mxfp8_e5m2": ("mx", "float8_e5m2", 32),
    "mxfp6_e2m3": ("mx", "float6_e2m3fn", 32),
    "mxfp6_e3m2": ("mx", "float6_e3m2fn", 32),
    "mxfp4_e2m1": ("mx", "float4_e2m1fn", 32),
    "nvfp4": ("nvfp4", "float4_e2m1fn", 16),
    "float8_e4m3fn_tensor": ("tensor", "float8_e4m3fn", 0),
    "float8_e5m2_tensor": ("tensor", "float8_e5m2", 0),
}
"""Scaled formats by name: (scheme, element format, default block size; 0 = the whole row)."""


def quantise(
    x: np.ndarray, scheme: str, *, block_size: int | None = None, scale_rule: str = "ocp"
) -> Quantised:
    """Quantise with a named scaled format (`SCHEMES`); block size and scale rule as options.

    ``scale_rule`` applies to MX only and ``block_size`` to MX and NVFP4; setting either where
    it means nothing raises ValueError rather than being ignored.
    """
    if scheme not in SCHEMES:
        raise KeyError(f"unknown scaled format {scheme!r}; known: {', '.join(SCHEMES)}")
    kind, element, default_block = SCHEMES[scheme]
    if kind != "mx" and scale_rule != "ocp":
        raise ValueError(f"scale_rule: only MX formats have one, not {scheme!r}")
    if kind == "tensor" and block_size is not None:
        raise ValueError(f"block_size: {scheme!r} has one scale per row")
    size = default_block if block_size is None else block_size
    if kind == "mx":
        return quantise_mx(x, element=element, block_size=size, scale_rule=scale_rule)
    if kind == "nvfp4":
        return quantise_nvfp4(x, block_size=size)
    return quantise_per_tensor(x, element=element)


def quantisation_error(x: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Normwise relative quantisation error of each row: ``||xq - x||_inf / ||x||_inf``.

    Measured against the input ``x`` taken as exact (the quantity a kernel's error is kept apart
    from), with `precision.core.metrics.normwise_relative_error` along the last axis, accurate
    to about ``2**-52`` relative. An all-zero row quantised to zeros gives 0; NaN gives NaN.
    """
    return normwise_relative_error(np.asarray(xq, np.float64), np.asarray(x, np.float64), axis=-1)
