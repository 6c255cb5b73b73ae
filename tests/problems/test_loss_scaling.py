"""The loss-scaling problem: the encoding of the upstream gradient, the exact reference, the
underflow and overflow thresholds each format implies, GradScaler's rule, the bound, the
batch contract and a tiny study.

Every threshold is derived here from the format (`precision.core.formats.Format`): half the
smallest subnormal (the largest magnitude flushed to 0), the smallest normal (below it storing
rounds), max + half an ulp of max (the smallest magnitude rounded to inf or NaN). Expected sums
are exact rationals (``Fraction``), independent of the module's integer reference.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import precision as pr
from precision.core import schema
from precision.core.formats import FORMATS, Format, cast, get_format
from precision.core.metrics import result_outcome
from precision.problems import DEFAULT_VARIANTS, PROBLEMS
from precision.problems.base import Computed
from precision.problems.loss_scaling import (
    EXPONENT_RANGE,
    EXPONENT_STEP,
    INIT_LOG2_SCALE,
    LOSS_SCALING,
    MIN_LOG2_SCALE,
    _exact_row_sums,
    decode_gradient,
    dynamic_log2_scale,
    encode_gradient,
    loss_scaled_bound,
    static_scale_gradient,
    unscaled_gradient,
)
from precision.truth.exact import ground_truth

ALL_FORMATS = ["float16", "bfloat16", "float8_e5m2", "float8_e4m3fn", "float32", "float64"]
"""Every format the rows may be in, for the contracts that must hold in each."""
NARROW_EXPONENT = ["float16", "float8_e5m2", "float8_e4m3fn"]
"""Formats whose range loss scaling is about (bfloat16 shares float32's exponents)."""
MEMBERS = [m for v in LOSS_SCALING.variants.values() for m in v.expand()]
MAGNITUDES = (1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0)


def _label(member) -> str:
    return schema.variant_label(member.name, dict(member.params))


def _proposals(fmt: str, *, n: int, seed: int, conds=(1.0, 1e2)) -> np.ndarray:
    """Proposals at every magnitude of `MAGNITUDES` and condition of ``conds``, rounded."""
    rng = np.random.default_rng(seed)
    X = [
        LOSS_SCALING.propose(rng, n=n, magnitude=m, cond=c, size=2)
        for m in MAGNITUDES
        for c in conds
    ]
    return cast(np.concatenate(X), fmt)


def _row(x, dy, fmt: str) -> np.ndarray:
    """One input [x; g; e] in ``fmt`` from float64 rows whose dy the format's significand
    holds; asserts that the rounding kept x and dy exactly (the premise of the test using it)."""
    g, e = _encode_unclipped(np.asarray(dy, dtype=np.float64))
    row = cast(np.stack([np.asarray(x, dtype=np.float64), g, e]), fmt)
    x_back, dy_back = decode_gradient(row)
    assert np.array_equal(x_back, x) and np.array_equal(dy_back, dy)
    return row


def _encode_unclipped(dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dy = g 2^e with e a multiple of 8 and 1 <= |g| < 256, at any exponent."""
    _, exponent = np.frexp(dy)
    e = np.where(dy == 0, 0, EXPONENT_STEP * np.floor_divide(exponent - 1, EXPONENT_STEP))
    return np.ldexp(dy, -e), e.astype(np.float64)


def _p_bits(values, fmt: str) -> np.ndarray:
    """``values`` rounded to the format's p significant bits with no exponent limit (its
    significand rounded in the format's normal range, the exponent kept): gradients as the
    encoding receives them."""
    g, e = _encode_unclipped(np.asarray(values, dtype=np.float64))
    return np.ldexp(cast(g, fmt).astype(np.float64), e.astype(int))


def _exact_sums(row) -> tuple[Fraction, Fraction]:
    """(sum dy_i x_i, sum |dy_i x_i|) of one received row, in rationals."""
    x, dy = decode_gradient(row)
    products = [Fraction(a) * Fraction(b) for a, b in zip(x.tolist(), dy.tolist(), strict=True)]
    return sum(products, Fraction(0)), sum((abs(p) for p in products), Fraction(0))


def _exact_dot(row) -> Fraction:
    return _exact_sums(row)[0]


def _relative_error(y, exact: Fraction) -> float:
    return float(abs(Fraction(float(y)) - exact) / abs(exact))


def overflow_threshold(fmt: Format) -> float:
    """The smallest magnitude that rounds beyond max (to inf, or NaN in float8_e4m3fn): max
    plus half its ulp, the ulp of max's binade being 2^(floor(log2 max) - p + 1). A tie
    there rounds to the even neighbour, which is past max (max's last bit is 1)."""
    return fmt.max + 2.0 ** (math.floor(math.log2(fmt.max)) - fmt.p)


def _flags(kernel, X) -> tuple[object, set[str]]:
    raised: set[str] = set()
    with np.errstate(all="call", call=lambda kind, _flag: raised.add(kind)):
        return kernel(X), raised


# ------------------------------------------------------------------------------ the input


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_every_exponent_and_significand_binade_of_the_encoding_is_exact(fmt):
    """Exhaustive over the finite set the encoding uses: each exponent e (multiples of 8 in
    [-64, 64]) is a value of the format, and so are 1 and 255 (the significand range [1, 256)
    lies among its normals, so rounding g is a p-bit relative rounding of dy)."""
    f = get_format(fmt)
    exponents = np.arange(EXPONENT_RANGE[0], EXPONENT_RANGE[1] + 1, EXPONENT_STEP, dtype=float)
    assert np.array_equal(cast(exponents, f).astype(np.float64), exponents)
    assert f.min_normal <= 1.0 and 256.0 <= f.max


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_rounding_a_row_rounds_dy_relatively_and_never_flushes_it(fmt):
    """For proposals from 1e-10 to 1: the received dy_i is within u |dy_i| of the drawn one
    (round to nearest, p bits) and 0 only where the drawn one is 0."""
    f = get_format(fmt)
    rng = np.random.default_rng(4)
    X = np.concatenate(
        [LOSS_SCALING.propose(rng, n=64, magnitude=m, cond=10.0, size=3) for m in MAGNITUDES]
    )
    _, drawn = decode_gradient(X)
    _, received = decode_gradient(cast(X, f))
    assert np.all(np.abs(received - drawn) <= f.u * np.abs(drawn))
    assert np.array_equal(received == 0, drawn == 0)


def test_encoding_round_trips_exactly():
    rng = np.random.default_rng(0)
    dy = rng.standard_normal(4000) * 10.0 ** rng.uniform(-15, 15, 4000)
    dy[::9] = 0.0
    g, e = encode_gradient(dy)
    assert np.array_equal(np.ldexp(g, e.astype(int)), dy)
    nonzero = dy != 0
    assert np.all((np.abs(g[nonzero]) >= 1) & (np.abs(g[nonzero]) < 256))
    assert np.all(e % EXPONENT_STEP == 0)


def test_proposals_aim_at_the_magnitude_and_condition():
    """max|dy| is the target (to rounding); kappa lands within a factor 3 of its target."""
    rng = np.random.default_rng(1)
    for magnitude in (1e-10, 3e-5, 0.2):
        for cond in (1.0, 30.0, 1e3):
            X = LOSS_SCALING.propose(rng, n=256, magnitude=magnitude, cond=cond, size=64)
            estimated, mags = LOSS_SCALING.estimate(X)
            assert np.allclose(mags, magnitude, rtol=1e-15)
            assert np.median(np.abs(np.log10(estimated / cond))) < math.log10(3)


@pytest.mark.parametrize("bad", [[0.5, 0.0], [1000.0, 0.0]])
def test_a_row_with_a_bad_exponent_is_refused(bad):
    x = np.array([[1.0, 2.0], [1.0, 1.0], bad])
    with pytest.raises(ValueError, match="exponents"):
        LOSS_SCALING.check_input(x)


# ------------------------------------------------------------------------ the reference


@pytest.mark.parametrize("fmt", ["float16", "float8_e5m2", "bfloat16", "float32", "float64"])
def test_reference_is_the_exact_weight_gradient(fmt):
    """The certified truth rounds the exact rational sum dy_i x_i of the received rows;
    kappa = sum|dy_i x_i| / |sum|."""
    for row in _proposals(fmt, n=33, seed=2, conds=(1.0, 1e3))[::3]:
        exact, absolute = _exact_sums(row)
        truth = ground_truth(LOSS_SCALING, row, "float64", engine="arb")
        assert truth.certified
        assert truth.exact.rounded[0] == float(exact)
        assert truth.cond == pytest.approx(float(absolute / abs(exact)), rel=2.0**-20)


@pytest.mark.parametrize("fmt", ["float16", "float64"])
def test_the_bound_sums_are_the_exact_sums_correctly_rounded(fmt):
    """The bound's S and sum|dy x| (`_exact_row_sums`): float64's correctly rounded fsum of
    exact products for narrow inputs, integers for float64 inputs (whose products float64
    would round); both equal the rational sums rounded once."""
    X = _proposals(fmt, n=40, seed=9, conds=(1.0, 1e4))
    x, dy = decode_gradient(X)
    total, absolute = _exact_row_sums(x, dy, get_format(fmt))
    for row, t, a in zip(X, total, absolute, strict=True):
        exact, exact_absolute = _exact_sums(row)
        assert t == float(exact) and a == float(exact_absolute)


# ---------------------------------------------------------------- underflow (unscaled)


@pytest.mark.parametrize("fmt", ["float16", "float8_e5m2", "bfloat16"])
def test_unscaled_gradient_below_half_the_smallest_subnormal_is_exactly_zero(fmt):
    """Storing dy in the format flushes |dy| <= sigma = min_subnormal / 2 (a tie at sigma goes
    to the even 0): a batch whose every |dy_i| is at most sigma gives dW = 0 exactly and an
    underflow flag for the numpy-cast formats; one element just above sigma (one ulp of its
    p bits) rounds up to the smallest subnormal and dW = that subnormal times its x."""
    f = get_format(fmt)
    sigma = f.min_subnormal / 2
    rng = np.random.default_rng(3)
    n = 40
    x = cast(rng.uniform(0.5, 1.5, n), f).astype(np.float64)
    dy = _p_bits(sigma * rng.uniform(0.25, 1.0, n), fmt)
    dy[0] = sigma  # the tie
    dy *= rng.choice([-1.0, 1.0], n)
    row = _row(x, dy, fmt)
    y, raised = _flags(unscaled_gradient, row)
    assert y.shape == (1,) and y[0] == 0 and _exact_dot(row) != 0
    if fmt == "float16":  # numpy's cast reports it; ml_dtypes' casts report nothing
        assert "underflow" in raised
    dy_up = dy.copy()
    dy_up[0] = sigma * (1 + 2.0 ** (1 - f.p))  # the next p-bit number above sigma
    y = unscaled_gradient(_row(x, dy_up, fmt))
    assert y[0] == np.float32(f.min_subnormal * x[0] * np.sign(dy_up[0]))


@pytest.mark.parametrize("fmt", NARROW_EXPONENT)
def test_a_static_scale_recovers_what_underflows_to_the_float32_accumulation_bound(fmt):
    """|dy_i| in [2^(emin - 16), 2^(emin - p)] (emin: the format's smallest normal exponent;
    2^(emin - p) = sigma): at most sigma, so the unscaled dW is exactly 0 (relative error 1),
    and at scale 2^16 every s dy_i is a normal number, stored exactly; only the float32 sum rounds:
    |E| <= gamma_{n-1}(2^-24) kappa |dW| (Higham 2002, (3.4)), with no underflow term. The
    dynamic scaler takes 2^16 at its first step (no overflow) and gives the same bits."""
    f = get_format(fmt)
    emin = round(math.log2(f.min_normal))
    rng = np.random.default_rng(5)
    n = 500
    x = cast(rng.uniform(-1.5, 1.5, n), f).astype(np.float64)
    high = emin - f.p  # 2^high = sigma: every dy_i is flushed without a scale
    assert 2.0**high == f.min_subnormal / 2
    magnitudes = 2.0 ** rng.uniform(emin - 16, high, n)
    dy = _p_bits(magnitudes * rng.choice([-1.0, 1.0], n), fmt)
    row = _row(x, dy, fmt)
    exact, absolute = _exact_sums(row)
    kappa = float(absolute / abs(exact))
    assert unscaled_gradient(row)[0] == 0
    scaled = static_scale_gradient(row, log2_scale=16)
    gamma = (n - 1) * 2.0**-24 / (1 - (n - 1) * 2.0**-24)
    assert _relative_error(scaled[0], exact) <= gamma * kappa
    dynamic = LOSS_SCALING.variants["dynamic_scale"].kernel(row[None])
    assert dynamic.y.tobytes() == scaled[None].tobytes() and dynamic.iterations[0] == 1


# -------------------------------------------------------------------- overflow (static)


@pytest.mark.parametrize("fmt", NARROW_EXPONENT)
def test_a_too_large_static_scale_overflows_and_the_row_says_so(fmt):
    """A p-bit 2^24 dy_i above max is at least max + ulp(max), past the overflow threshold
    max + ulp / 2: it rounds to inf (NaN in float8_e4m3fn, which has no inf). With every
    product positive the sum is +inf and the outcome overflow (nan in float8_e4m3fn), never a
    finite value; two such dy_i of opposite signs give inf - inf = NaN. max itself is stored
    exactly and the result is finite. The bound is NaN wherever a stored value may overflow."""
    f = get_format(fmt)
    ulp = 2.0 ** (math.floor(math.log2(f.max)) - f.p + 1)
    assert f.max + ulp >= overflow_threshold(f) > f.max
    x = np.array([1.0, 0.75, 1.25, 0.5])
    dy = np.array([f.max + ulp, 1.0, 3.0, 2.0]) * 2.0**-24
    row = _row(x, dy, fmt)
    truth = ground_truth(LOSS_SCALING, row, fmt, engine="arb").exact
    opposite = _row(x, dy * [1, -1, 1, 1] * [1, f.max + ulp, 1, 1], fmt)
    with np.errstate(all="ignore"):
        y = static_scale_gradient(row[None], log2_scale=24)
        cancelled = static_scale_gradient(opposite, log2_scale=24)
    expected = "nan" if fmt == "float8_e4m3fn" else "overflow"
    assert result_outcome(y, truth, axis=-1)[0] == expected
    assert np.isnan(cancelled).all()
    for overflowing in (row, opposite):
        assert np.isnan(loss_scaled_bound(overflowing, f, log2_scale=24))
    below = dy.copy()
    below[0] = f.max * 2.0**-24
    assert np.isfinite(static_scale_gradient(_row(x, below, fmt), log2_scale=24)).all()


@pytest.mark.parametrize("fmt", NARROW_EXPONENT)
def test_dynamic_scale_is_the_largest_power_of_two_that_does_not_overflow(fmt):
    """GradScaler's rule: k = the largest integer <= 16 with 2^k max|dy| below the overflow
    threshold (the float32 sums here stay far below float32's max), found by halving; the
    iterations are the steps taken, 17 - k; the result is the static one at 2^k, bit for bit,
    and the static one at 2^(k+1) is not finite."""
    f = get_format(fmt)
    X = _proposals(fmt, n=64, seed=6)
    _, dy = decode_gradient(X)
    peak = np.abs(dy).max(axis=-1)
    expected = np.array(
        [
            max(
                k
                for k in range(MIN_LOG2_SCALE, INIT_LOG2_SCALE + 1)
                if 2.0**k * p < overflow_threshold(f)
            )
            for p in peak
        ]
    )
    result = LOSS_SCALING.variants["dynamic_scale"].kernel(X)
    assert isinstance(result, Computed) and result.converged.all()
    assert np.array_equal(result.iterations, INIT_LOG2_SCALE - expected + 1)
    assert (expected < INIT_LOG2_SCALE).any() and (expected == INIT_LOG2_SCALE).any()
    for row, k, y in zip(X, expected, result.y, strict=True):
        assert static_scale_gradient(row, log2_scale=k).tobytes() == y.tobytes()
        if k < INIT_LOG2_SCALE:
            with np.errstate(all="ignore"):
                assert not np.isfinite(static_scale_gradient(row, log2_scale=k + 1)).all()


def test_dynamic_scale_gives_up_at_its_floor():
    """A gradient beyond float16's range even at 2^MIN_LOG2_SCALE is never finite: converged
    False (outcome no_convergence), k at the floor."""
    row = _row(np.array([1.0, 1.0]), np.array([2.0**50, 2.0**50]), "float16")
    k, found = dynamic_log2_scale(row[None])
    assert k[0] == MIN_LOG2_SCALE and not found[0]
    with np.errstate(all="ignore"):
        result = LOSS_SCALING.variants["dynamic_scale"].kernel(row[None])
    assert not result.converged[0] and result.iterations[0] == INIT_LOG2_SCALE - MIN_LOG2_SCALE + 1


# ------------------------------------------------------------------------------ bounds


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_errors_within_the_bounds(fmt):
    """|dW^ - dW| / |dW| <= bound for every member, on proposals from 1e-10 to 1 and kappa 1
    and 100. The bound is rigorous (underflow included as an absolute term); the only slack is
    its own float64 evaluation, n 2^-52 relative. Overflowing rows have a NaN bound; every
    other row is checked."""
    f, n = get_format(fmt), 64
    X = _proposals(fmt, n=n, seed=7)
    exact = [_exact_dot(row) for row in X]
    checked = 0
    for member in MEMBERS:
        with np.errstate(all="ignore"):
            Y = member.kernel(X)
            bounds = member.bound(X, f)
        Y = np.asarray(getattr(Y, "y", Y))
        for y, e, bound in zip(Y[:, 0], exact, bounds, strict=True):
            if np.isnan(bound):
                assert not np.isfinite(y) or e == 0, _label(member)
                continue
            error = _relative_error(y, e)
            assert error <= bound * (1 + n * 2.0**-52), f"{_label(member)}: {error} > {bound}"
            checked += 1
    overflowing = 1 if fmt in NARROW_EXPONENT else 0  # static 2^24 only
    assert checked >= len(X) * (len(MEMBERS) - overflowing)


# ----------------------------------------------------------------------------- contracts


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("member", MEMBERS, ids=_label)
def test_rows_are_independent_and_a_single_input_works(member, fmt):
    """Row i of a batch (magnitudes 1e-10 to 1: flushed, subnormal, overflowing and halving
    rows side by side) equals the one-row batch and the single input, bit for bit, with its
    iterations; the bound likewise. The result is float32 (float64 for float64)."""
    f = get_format(fmt)
    X = _proposals(fmt, n=24, seed=8)
    with np.errstate(all="ignore"):
        Y, bounds = member.kernel(X), member.bound(X, f)
        for i, row in enumerate(X):
            for one in (member.kernel(X[i : i + 1]), member.kernel(row)):
                _same_row(one, Y, i)
            single = member.bound(row, f)
            assert isinstance(single, float)
            assert single == bounds[i] or (np.isnan(single) and np.isnan(bounds[i]))
    values = np.asarray(getattr(Y, "y", Y))
    assert values.shape == (len(X), 1) and bounds.shape == (len(X),)
    assert values.dtype == (np.float64 if fmt == "float64" else np.float32)


def _same_row(one, Y, i: int) -> None:
    if isinstance(Y, Computed):
        assert np.ravel(one.y).tobytes() == Y.y[i].tobytes()
        assert np.ravel(one.iterations)[0] == Y.iterations[i]
        assert np.ravel(one.converged)[0] == Y.converged[i]
    else:
        assert np.ravel(one).tobytes() == Y[i].tobytes()


# ------------------------------------------------------------------------- a tiny study


@pytest.fixture
def registered(monkeypatch):
    """The problem and its parameter column in this process, for as long as the registry
    (precision/problems/__init__.py) and the schema do not list them yet."""
    if "log2_scale" not in schema.PARAMETERS:
        text = "log2 of the static loss scale s = 2^log2_scale (static_scale); NaN elsewhere"
        monkeypatch.setitem(schema.PARAMETERS, "log2_scale", text)
        monkeypatch.setitem(schema.COLUMNS, "log2_scale", text)
        monkeypatch.setitem(schema.DTYPES, "log2_scale", "float64")
        monkeypatch.setattr(schema, "VARIANT_KEYS", (*schema.VARIANT_KEYS, "log2_scale"))
    if "loss_scaling" not in PROBLEMS:
        monkeypatch.setitem(PROBLEMS, "loss_scaling", LOSS_SCALING)
        monkeypatch.setitem(DEFAULT_VARIANTS, "loss_scaling", tuple(LOSS_SCALING.variants))


TINY = {
    "name": "tiny_loss_scaling",
    "seed": 5,
    "formats": ["float16", "bfloat16", "float8_e4m3fn"],
    "problems": ["loss_scaling"],
    "grid": {
        "log10_cond": [0, 1],
        "log10_magnitude": [-9, -1],
        "sizes": [16],
        "samples_per_cell": 1,
    },
}


def test_a_tiny_study_measures_underflow_overflow_and_the_scale_used(registered):
    """Through the runner: float16 without a scale loses every gradient of 1e-9 (max|dy| <
    1e-8 < 2^-25: relative error 1, flagged underflow); static 2^24 overflows float16 from
    max|dy| = 1e-2 on (2^24 1e-2 > 65520), and the row says overflow or nan; the dynamic
    rows' iterations are 17 - k with k the largest power that does not overflow (from the
    magnitude column and the format's threshold); every finite row is within its bound."""
    table = pr.run_study(TINY)
    assert len(table) == 8 * 3 * len(MEMBERS)
    fp16 = table[table["format"] == "float16"]
    lost = fp16[(fp16["variant"] == "unscaled") & (fp16["cell_log10_magnitude"] == -9)]
    assert (lost["rel_error"] == 1).all() and lost["fp_exceptions"].str.contains("underflow").all()
    too_large = fp16[(fp16["log2_scale"] == 24) & (fp16["cell_log10_magnitude"] == -2)]
    assert too_large["outcome"].isin(["overflow", "nan"]).all()
    assert too_large["fp_exceptions"].str.contains("overflow").all()
    dynamic = table[table["variant"] == "dynamic_scale"]
    for _, row in dynamic.iterrows():
        threshold = overflow_threshold(get_format(row["format"]))
        k = max(k for k in range(MIN_LOG2_SCALE, 17) if 2.0**k * row["magnitude"] < threshold)
        assert row["iterations"] == INIT_LOG2_SCALE - k + 1
    assert (dynamic["iterations"] > 1).any()  # float8_e4m3fn halves from 1e-2 on
    assert table.loc[table["variant"] != "static_scale", "log2_scale"].isna().all()
    assert set(table["log2_scale"].dropna()) == {8.0, 16.0, 24.0}
    checked = table[table["bound"].notna()]
    assert (checked["rel_error"] <= checked["bound"] * (1 + 16 * 2.0**-52)).all()
    assert len(checked) >= len(table) - len(table[table["log2_scale"] == 24])


def test_the_format_list_names_only_registered_formats():
    assert set(ALL_FORMATS) <= set(FORMATS)
