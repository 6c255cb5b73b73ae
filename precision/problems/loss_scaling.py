"""The weight gradient of a linear layer in mixed precision, with and without loss scaling.

The question (issue 17): gradients of a network trained in float16 are small (1e-4 to 1e-10 is
common), and float16 holds nothing below its smallest subnormal 2^-24 (about 6e-8): an
upstream gradient below 2^-25 is stored as 0 and its share of the weight gradient is lost.
Loss scaling (Micikevicius et al., "Mixed precision training", ICLR 2018, section 3.2)
multiplies the loss by s, so that every gradient of the backward pass is computed as s times
itself, and divides the weight gradient by s in float32 before the update. A static s that is
too large overflows; ``torch.cuda.amp.GradScaler`` starts at s = 2^16, and halves s (skipping
the step) whenever a scaled gradient holds an inf or NaN.

The kernel: dW = sum_i dy_i x_i, the gradient of one weight over a batch of n examples (a dot
product across the batch; the full matrix dW = dY^T X is one such product per weight). An
input is three rows [x; g; e] of shape (3, n) (a batch: (batch, 3, n)):

- x: the layer's input activations, in the format (as autocast stores them);
- g, e: the upstream gradient dy_i = g_i 2^{e_i}, a significand g_i in the format and an integer
  exponent e_i. So the input is dy *as the format's significand holds it, with an unlimited
  exponent range*: rounding the row to a format rounds dy_i to p bits relative, never to 0.
  That is the gradient the backward pass holds before it is stored in the format; what storing
  it loses (underflow, overflow) is the kernel's error, measured against the exact sum of the
  received dy_i x_i. `propose_gradients` takes e_i a multiple of 8 in [-64, 64] and |g_i| in
  [1, 256): every such e_i and every such g_i's exponent is exact in each format of the
  registry down to float8_e5m2 (tests/problems/test_loss_scaling.py checks it exhaustively),
  so the rounding of a row changes only the p-bit significands.

The backward pass at loss scale s = 2^k (k an integer: scaling is exact), as mixed-precision
training computes it (`scaled_weight_gradient`):

1. the scaled upstream gradient s dy_i is stored in the format: one correct rounding (exact in
   the normal range, since dy_i has p bits; to the subnormal grid below 2^emin, to 0 at or
   below half the smallest subnormal; beyond the format's max to inf, or NaN in
   float8_e4m3fn);
2. products and a left-to-right sum in float32 (float64 for float64 input), as a
   mixed-precision GEMM accumulates (products of two p <= 12 bit numbers are exact there);
3. the float32 sum times 1/s in float32 (exact for a power of two in float32's normal range),
   the float32 gradient the optimiser's master weights receive, as ``GradScaler.unscale_``
   computes it. The result is float32 (compute_dtype), for every format of at most 24 bits.

Variants (batch kernels, rows independent, result shape (..., 1) in float32):

- ``unscaled``: s = 1.
- ``static_scale``: s = 2^log2_scale, a fixed loss scale (family; default grid 8, 16, 24). A
  scaled gradient beyond the format's max is inf (NaN where infinities of both signs meet in
  the sum): the row's outcome says overflow or nan, never a plausible value.
- ``dynamic_scale``: GradScaler's rule on one step (`dynamic_log2_scale`): s = 2^16 first, then
  halved while the result holds an inf or NaN (each halving a skipped step), down to
  2^`MIN_LOG2_SCALE`. The row's ``iterations`` column is the number of steps taken, skipped
  ones included: the scale used is 2^(17 - iterations). Its steady-state growth (s doubled
  after 2000 steps without overflow) is not modelled: the static 2^24 rows show what a larger
  scale gives.

Condition number kappa = sum|dy_i x_i| / |sum dy_i x_i| (the dot product's, `dot_reference`);
magnitude max|dy_i|, the study's magnitude axis. Bound: `loss_scaled_bound`, rigorous, with
the underflow of step 1 as an absolute term.
"""

from __future__ import annotations

import math

import numpy as np

from precision.core.formats import FORMATS, Format, cast, get_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Computed, Problem, Variant
from precision.problems.dot import (
    PRODUCT_BITS_MAX,
    dot_reference,
    grown,
    product_parts,
    propose_dots,
)
from precision.problems.summation import _per_input, accurate_row_sums, exact_sum

FLOAT32, FLOAT64 = FORMATS["float32"], FORMATS["float64"]

EXPONENT_STEP = 8
"""The exponents e_i `propose_gradients` gives are multiples of 8..."""
EXPONENT_RANGE = (-64, 64)
"""... in [-64, 64]: every multiple of 8 there is exact in float8_e5m2 (3 significand bits:
8 k = 2^j times 1, 1.25, 1.5 or 1.75) and so in every wider format."""
EXPONENT_LIMIT = 512
"""Largest |e_i| a row may hold (`check_gradient_row`): with |g_i| in float32's range and a
loss scale |k| <= 128, g_i 2^(e_i + k) stays far inside float64's range, so the decoding and
scaling are exact."""

INIT_LOG2_SCALE = 16
"""GradScaler's default init_scale, 2^16 = 65536.0 (torch.amp.GradScaler)."""
MIN_LOG2_SCALE = -24
"""Where the modelled dynamic scaler gives up (converged False, outcome no_convergence): 40
halvings from 2^16. torch has no floor; a result that is not finite even at 2^-24 is a
gradient beyond the format's range, not a scaling problem."""


# ---------------------------------------------------------------- the input


def decode_gradient(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, dy) in float64 from rows [x; g; e] (shape (..., 3, n)): dy_i = g_i 2^{e_i}, exact.

    Raises
    ------
    ValueError
        When an exponent e_i is not an integer or exceeds `EXPONENT_LIMIT`.
    """
    values = np.asarray(X)
    values = values.astype(np.float64) if values.dtype != object else _floats(values)
    x, g, e = values[..., 0, :], values[..., 1, :], values[..., 2, :]
    if not (np.all(e == np.round(e)) and np.all(np.abs(e) <= EXPONENT_LIMIT)):
        raise ValueError(
            f"gradient exponents (third row) must be integers within +-{EXPONENT_LIMIT}"
        )
    return x, np.ldexp(g, e.astype(np.int64))


def _floats(values: np.ndarray) -> np.ndarray:
    """An object array of mpf (`precision.truth.exact.to_mpf_array`) as float64; every value
    came from a float, so ``float`` is exact."""
    return np.array([float(v) for v in values.ravel()], dtype=np.float64).reshape(values.shape)


def encode_gradient(dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g, e) with dy = g 2^e exactly, e a multiple of `EXPONENT_STEP` in `EXPONENT_RANGE` and
    1 <= |g| < 256 unless the clipping of e decides otherwise (then |g| < 1 or >= 256); g = e
    = 0 for dy = 0. ``frexp`` gives dy = f 2^E, 1/2 <= |f| < 1, so floor(log2|dy|) = E - 1."""
    dy = np.asarray(dy, dtype=np.float64)
    _, exponent = np.frexp(dy)
    e = EXPONENT_STEP * np.floor_divide(exponent - 1, EXPONENT_STEP)
    e = np.where(dy == 0, 0, np.clip(e, *EXPONENT_RANGE))
    return np.ldexp(dy, -e), e.astype(np.float64)


def check_gradient_row(x) -> None:
    """`Problem.check_input`: shape (3, n) with integral exponents in the third row."""
    values = np.asarray(x)
    if values.ndim != 2 or values.shape[0] != 3:
        raise ValueError(f"the input is [x; g; e] of shape (3, n), got {values.shape}")
    decode_gradient(values)


def gradient_magnitude(X: np.ndarray) -> float | np.ndarray:
    """max|dy_i| of each input (exact): a float for one input, (batch,) for a batch."""
    return _per_input(np.abs(decode_gradient(X)[1]).max(axis=-1))


def loss_scaling_reference(
    xge: np.ndarray, ctx: NumberSystem = MPMATH
) -> tuple[np.ndarray, Number]:
    """Exact dW = sum dy_i x_i and kappa = sum|dy_i x_i| / |dW| of the received input: the dot
    product of the decoded rows (`dot_reference`, exact integers handed to ``ctx``)."""
    x, dy = decode_gradient(xge)
    return dot_reference(np.stack([x, dy]), ctx)


def estimate_gradients(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kappa, max|dy|) of each candidate (batch, 3, n) in float64, to pick candidates: the
    products dy_i x_i in float64 (exact for inputs of at most 26 bits, 2^-53 relative for the
    float64 candidates) summed as in twice the working precision (`accurate_row_sums`, as
    `precision.problems.dot.estimate_dots` does), so cancellation does not hide the sum."""
    x, dy = decode_gradient(X)
    products = x * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.abs(products).sum(axis=-1) / np.abs(accurate_row_sums(products))
    return cond, np.abs(dy).max(axis=-1)


def propose_gradients(
    rng: np.random.Generator, *, n: int, magnitude, cond, size: int
) -> np.ndarray:
    """Candidates [x; g; e] of shape (size, 3, n) aimed at max|dy| ~ magnitude and kappa ~ cond
    (floats, or arrays of shape (size,)).

    x and dy are the two rows of `propose_dots` (Gaussian magnitudes, signs biased or
    cancelling pairs to aim at kappa); x is scaled by a power of two to max|x| in [0.7, 1.4)
    (activations of order 1), dy by magnitude / max|dy| (the pairs share dy_j, so their
    products still cancel exactly), then encoded (`encode_gradient`).
    """
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))
    XY = propose_dots(rng, n=n, magnitude=1.0, cond=cond, size=size)
    x, dy = XY[:, 0, :], XY[:, 1, :]
    x = x * 2.0 ** -np.round(np.log2(_peak(x)))[:, None]
    dy = dy * (magnitude / _peak(dy))[:, None]
    g, e = encode_gradient(dy)
    return np.stack([x, g, e], axis=1)


def _peak(rows: np.ndarray) -> np.ndarray:
    """max|row| of each row, 1 where the row is 0 (nothing to scale)."""
    peak = np.abs(rows).max(axis=-1)
    return np.where(peak > 0, peak, 1.0)


# ---------------------------------------------------------------- the backward pass


def accumulator_format(fmt: Format) -> Format:
    """float32, or float64 for float64 input: where products and sums are formed."""
    return FLOAT64 if fmt.p > FLOAT32.p else FLOAT32


def scaled_weight_gradient(X: np.ndarray, *, log2_scale) -> np.ndarray:
    """dW = (sum_i fl_fmt(s dy_i) x_i) / s with s = 2^log2_scale, as mixed-precision training
    computes it (module docstring; Micikevicius et al. 2018, section 3.2).

    Steps: fl_fmt(s dy_i) (`_store`: one correct rounding, the format's overflow and underflow
    included); the products and their sum left to right in the accumulator (float32, float64
    for float64 input; ``np.add.accumulate``, a sequential loop along each row); the sum times
    2^-log2_scale in the accumulator's dtype. Error bound: `loss_scaled_bound`.

    Parameters
    ----------
    X : numpy.ndarray
        Inputs [x; g; e] in the format, (3, n) or (batch, 3, n).
    log2_scale : int or numpy.ndarray, keyword-only
        k, one for all rows or one integer per row of the batch.

    Returns
    -------
    numpy.ndarray
        Shape (..., 1), float32 (float64 for float64 input); inf or NaN where s dy_i
        overflowed the format.
    """
    X = np.asarray(X)
    fmt = get_format(X.dtype)
    acc = accumulator_format(fmt).dtype
    k = np.asarray(log2_scale, dtype=np.int64)[..., None]
    x, dy = decode_gradient(X)
    stored = _store(np.ldexp(dy, k), fmt)  # the gradient as the backward pass stores it
    products = stored.astype(acc) * X[..., 0, :].astype(acc)
    total = np.add.accumulate(products, axis=-1)[..., -1:]
    return total * np.ldexp(acc.type(1), -k)  # power of two: exact in the normal range


def _store(values: np.ndarray, fmt: Format) -> np.ndarray:
    """``values`` (float64) rounded once to ``fmt``. numpy's own casts to float16, float32 and
    float64 are single correct roundings and report their overflow and underflow to the
    runner (the row's fp_exceptions); other formats go through
    `precision.core.formats.cast`, whose ml_dtypes cast reports nothing."""
    if fmt.dtype in (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)):
        return values.astype(fmt.dtype)
    return cast(values, fmt)


def unscaled_gradient(X: np.ndarray) -> np.ndarray:
    """dW without loss scaling (s = 1), shape (..., 1)."""
    return scaled_weight_gradient(X, log2_scale=0)


def static_scale_gradient(X: np.ndarray, *, log2_scale: float) -> np.ndarray:
    """dW at the fixed loss scale 2^log2_scale, shape (..., 1); inf or NaN where it overflows.

    Raises
    ------
    ValueError
        For a ``log2_scale`` that is not an integer in [-128, 128].
    """
    return scaled_weight_gradient(X, log2_scale=_integer_scale(log2_scale))


def _integer_scale(log2_scale: float) -> int:
    if log2_scale != int(log2_scale) or abs(log2_scale) > 128:
        raise ValueError(f"log2_scale must be an integer in [-128, 128], got {log2_scale!r}")
    return int(log2_scale)


def dynamic_log2_scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, found) per row of a batch (batch, 3, n): the largest k <= `INIT_LOG2_SCALE` and >=
    `MIN_LOG2_SCALE` for which `scaled_weight_gradient` is finite, found by GradScaler's rule
    (start at 2^16, halve on inf or NaN), and whether one was found (else k = MIN_LOG2_SCALE).

    Each row is retried alone with its own scale, so rows stay independent. The overflows of
    the skipped steps are the scaler's business, not results: their IEEE flags are silenced.
    """
    X = np.asarray(X)
    k = np.full(len(X), INIT_LOG2_SCALE, dtype=np.int64)
    pending = np.arange(len(X))
    with np.errstate(all="ignore"):
        while len(pending):
            y = scaled_weight_gradient(X[pending], log2_scale=k[pending])
            finite = np.isfinite(y).all(axis=-1)
            pending = pending[~finite & (k[pending] > MIN_LOG2_SCALE)]
            k[pending] -= 1
        found = np.isfinite(scaled_weight_gradient(X, log2_scale=k)).all(axis=-1)
    return k, found


def dynamic_scale_gradient(X: np.ndarray) -> Computed:
    """dW at the scale `dynamic_log2_scale` chooses, shape (..., 1), as a `Computed` whose
    ``iterations`` are the steps taken (skipped ones included): scale = 2^(17 - iterations)."""
    X = np.asarray(X)
    batch = X.reshape(-1, *X.shape[-2:])
    k, found = dynamic_log2_scale(batch)
    y = scaled_weight_gradient(batch, log2_scale=k)  # the taken step, its IEEE flags reported
    steps = INIT_LOG2_SCALE - k + 1
    return Computed(
        y.reshape(*X.shape[:-2], 1), steps.reshape(X.shape[:-2]), found.reshape(X.shape[:-2])
    )


# ---------------------------------------------------------------- bounds


def loss_scaled_bound(X: np.ndarray, fmt: Format, *, log2_scale) -> float | np.ndarray:
    """Bound on the relative error of `scaled_weight_gradient` at scale s = 2^k:
    (A + gamma (C + A) + s tau) / |S|.

    With S = s sum dy_i x_i and C = s sum|dy_i x_i| (so C / |S| = kappa):

    * storing s dy_i errs only below the format's smallest normal, by at most min(sigma,
      s|dy_i|), sigma = half its smallest subnormal (dy_i has p bits: a normal s dy_i is
      exact; one at most sigma is flushed to 0, an error of s|dy_i|), so the exact sum of the
      stored products is within A = sum_{s|dy_i| < 2^emin} min(sigma, s|dy_i|) |x_i| of S;
    * the products are exact in the accumulator when 2p <= its precision (else one rounding
      each, r = 1), and the n - 1 additions round: gamma = (1 + u_acc)^(n - 1 + r) - 1 times
      the sum of the absolute stored products, at most C + A (Higham 2002, (3.4); `grown`);
    * the product by 2^-k is exact unless it falls below the accumulator's normal range, where
      it errs by at most tau = half the accumulator's smallest subnormal.

    S and C are the exact sums correctly rounded to float64 (`_exact_row_sums`); A and the
    final quotient carry float64 roundings of a few units of 2^-53 relative (the tests allow
    n 2^-52).

    Parameters
    ----------
    X : numpy.ndarray
        Inputs [x; g; e] in the format, (3, n) or (batch, 3, n).
    fmt : Format
        Their format.
    log2_scale : int or numpy.ndarray, keyword-only
        k, one for all rows or one per row.

    Returns
    -------
    float or numpy.ndarray
        The bound per input; NaN where it does not apply: S = 0 (no relative error), a scaled
        gradient beyond the format's max (it may overflow), partial sums that could pass the
        accumulator's max, or a nonzero product below twice the accumulator's smallest normal
        (products may underflow).
    """
    x, dy = decode_gradient(X)
    acc = accumulator_format(fmt)
    s = np.ldexp(1.0, np.asarray(log2_scale, dtype=np.int64))
    scaled = np.abs(dy) * np.asarray(s)[..., None]
    sigma = fmt.min_subnormal / 2
    tiny = (scaled > 0) & (scaled < fmt.min_normal)
    storing = _row_fsum(np.where(tiny, np.minimum(scaled, sigma) * np.abs(x), 0.0))
    total, absolute = (v * s for v in _exact_row_sums(x, dy, fmt))
    growth = grown(np.shape(X)[-1] - 1 + (2 * fmt.p > acc.p), acc.u)
    error = storing + growth * (absolute + storing) + s * acc.min_subnormal / 2
    product = scaled * np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fails = (
            (total == 0)
            | (scaled.max(axis=-1) > fmt.max)
            | ((absolute + storing) * (1 + growth) >= acc.max)
            | ((product > 0) & (product < 2 * acc.min_normal)).any(axis=-1)
        )
        return _per_input(np.where(fails, np.nan, error / np.abs(total)))


def _row_fsum(values: np.ndarray) -> np.ndarray:
    """``math.fsum`` of each row (last axis): correctly rounded, the same value for a row
    alone and in any batch (numpy's pairwise sum of a 2-D array may order a row's terms
    differently)."""
    rows = values.reshape(-1, values.shape[-1]).tolist()
    return np.array([math.fsum(row) for row in rows]).reshape(values.shape[:-1])


def _exact_row_sums(x: np.ndarray, dy: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """(sum x_i dy_i, sum |x_i dy_i|) of each row, each correctly rounded to float64. Inputs
    of at most 26 bits have exact float64 products, summed by `_row_fsum`; wider ones
    (float64) are multiplied exactly in integers (`precision.problems.dot.product_parts`),
    summed exactly (`exact_sum`) and divided once by a power of two (Python's int division
    rounds correctly)."""
    if fmt.p <= PRODUCT_BITS_MAX:
        products = x * dy
        return _row_fsum(products), _row_fsum(np.abs(products))
    rows = zip(x.reshape(-1, x.shape[-1]), dy.reshape(-1, x.shape[-1]), strict=True)
    sums = [_exact_sums_of_row(a, b) for a, b in rows]
    sums = np.array(sums).reshape(*x.shape[:-1], 2)
    return sums[..., 0], sums[..., 1]


def _exact_sums_of_row(x: np.ndarray, dy: np.ndarray) -> tuple[float, float]:
    m, e = product_parts(x, dy)
    return _to_float(*exact_sum(m, e)), _to_float(*exact_sum(np.abs(m), e))


def _to_float(man: int, exp: int) -> float:
    """man 2^exp correctly rounded to float64 (inf beyond its range)."""
    try:
        return man / (1 << -exp) if exp < 0 else float(man << exp)
    except OverflowError:
        return math.copysign(math.inf, man)


def unscaled_bound(X: np.ndarray, fmt: Format) -> float | np.ndarray:
    """`loss_scaled_bound` at s = 1."""
    return loss_scaled_bound(X, fmt, log2_scale=0)


def static_scale_bound(X: np.ndarray, fmt: Format, *, log2_scale: float) -> float | np.ndarray:
    """`loss_scaled_bound` at s = 2^log2_scale."""
    return loss_scaled_bound(X, fmt, log2_scale=_integer_scale(log2_scale))


def dynamic_scale_bound(X: np.ndarray, fmt: Format) -> float | np.ndarray:
    """`loss_scaled_bound` at the scale `dynamic_log2_scale` chooses for each row (NaN where
    none is found: then the result is not finite)."""
    X = np.asarray(X)
    batch = X.reshape(-1, *X.shape[-2:])
    k, found = dynamic_log2_scale(batch)
    bound = np.where(found, loss_scaled_bound(batch, fmt, log2_scale=k), np.nan)
    return _per_input(bound.reshape(X.shape[:-2]))


# ---------------------------------------------------------------- the problem


def float32_or_wider(fmt: Format) -> str:
    """The accumulator column: float32, float64 for float64 input."""
    return accumulator_format(fmt).name


LOG2_SCALES = (8.0, 16.0, 24.0)
"""Default static scales: 2^8 and 2^16 (GradScaler's first scale) lift float16's underflow
threshold from 2^-25 to 2^-33 and 2^-41; 2^24 overflows float16 for gradients above
65520 / 2^24 (about 3.9e-3)."""

VARIANTS = {
    "unscaled": Variant(
        "unscaled",
        unscaled_gradient,
        unscaled_bound,
        float32_or_wider,
        description="dy stored in the format, float32 products and sum, no loss scale",
        batched=True,
    ),
    "static_scale": Variant(
        "static_scale",
        static_scale_gradient,
        static_scale_bound,
        float32_or_wider,
        description="dy stored in the format at the fixed loss scale 2^log2_scale, float32 "
        "products and sum, unscaled in float32",
        grid={"log2_scale": LOG2_SCALES},
        batched=True,
    ),
    "dynamic_scale": Variant(
        "dynamic_scale",
        dynamic_scale_gradient,
        dynamic_scale_bound,
        float32_or_wider,
        description="GradScaler's rule: scale 2^16 halved while the gradient is not finite "
        "(iterations = steps taken; scale 2^(17 - iterations))",
        batched=True,
    ),
}

LOSS_SCALING = Problem(
    name="loss_scaling",
    description="weight gradient sum dy_i x_i of a linear layer with the upstream gradient dy "
    "stored in the format: unscaled, static and dynamic (GradScaler) loss scale",
    reference=loss_scaling_reference,
    magnitude=gradient_magnitude,
    magnitude_name="max|dy|",
    propose=propose_gradients,
    estimate=estimate_gradients,
    variants=VARIANTS,
    input_shape=lambda n: (3, n),
    check_input=check_gradient_row,
    batched=True,
)
