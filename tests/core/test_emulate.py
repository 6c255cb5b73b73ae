"""Tests for precision.core.emulate, precision.core.ops and the emulated / stochastic / float32
variants.

Rounding functions are checked against the registry's correct rounding (``formats.cast``,
itself tested against numpy and ml_dtypes) and against their definitions; stochastic rounding's
statistics use tolerances derived from Hoeffding's inequality, with fixed seeds so that every
run draws the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from same_bits import nan_blind

from precision.core.emulate import Emulator, neighbours, round_nearest, round_stochastic
from precision.core.formats import FORMATS, cast, get_format
from precision.core.ops import NUMPY
from precision.problems import PROBLEMS
from precision.problems.emulated import (
    pairwise_sum_emulated,
    recursive_sum_emulated,
    seed_spread,
    softmax_shifted_emulated,
)
from precision.problems.summation import pairwise_sum, recursive_sum
from precision.problems.weight_update import stagnation_example

NARROW = ["float16", "bfloat16", "float32", "float8_e4m3fn", "float8_e5m2"]
finite_doubles = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# ------------------------------------------------------------------ rounding functions


@pytest.mark.parametrize("fmt", NARROW)
@given(x=finite_doubles)
@settings(max_examples=300, deadline=None)
def test_round_nearest_is_the_correct_rounding(fmt, x):
    with np.errstate(over="ignore"):
        want = cast(np.array([x]), fmt)
    assert _same(round_nearest(np.array([x]), fmt), want)


@pytest.mark.parametrize("fmt", NARROW)
@given(x=finite_doubles)
@settings(max_examples=200, deadline=None)
def test_round_nearest_is_a_nearest_neighbour(fmt, x):
    f = get_format(fmt)
    lo, hi = neighbours(np.array([x]), f)
    r = round_nearest(np.array([x]), f)[0]
    if not (np.isfinite(lo[0]) and np.isfinite(hi[0])):
        return  # beyond max: overflow, checked against cast above
    assert lo[0] <= x <= hi[0] and r in (lo[0], hi[0])
    assert abs(r - x) <= min(x - lo[0], hi[0] - x)  # nearest (exact: float64 differences)


@pytest.mark.parametrize("fmt", NARROW)
@given(x=finite_doubles, seed=st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_stochastic_rounding_gives_a_neighbour(fmt, x, seed):
    f = get_format(fmt)
    if abs(x) > f.max:
        return
    lo, hi = neighbours(np.array([x]), f)
    r = round_stochastic(np.full(8, x), f, np.random.default_rng(seed))
    assert np.all((r == lo[0]) | (r == hi[0]))
    assert _same(round_stochastic(np.full(8, x), f, np.random.default_rng(seed)), r)  # seeded


@given(x=st.floats(min_value=-1000.0, max_value=1000.0, allow_nan=False))
@settings(max_examples=40, deadline=None)
def test_stochastic_rounding_is_unbiased(x):
    """N draws of SR(x) in float16: each is lo or lo + q, so Hoeffding gives
    P(|mean - x| >= t) <= 2 exp(-2 N t^2 / q^2); t = 4 q / sqrt(N) has probability < 1e-13."""
    n, f = 20_000, get_format("float16")
    lo, hi = neighbours(np.array([x]), f)
    q = hi[0] - lo[0]
    draws = round_stochastic(np.full(n, x), f, np.random.default_rng(int(abs(x) * 1e6)))
    assert abs(draws.mean() - x) <= 4 * q / math.sqrt(n) + 1e-300


def test_stochastic_rounding_probability_is_the_fraction():
    """1 + 2**-12 in float16 lies a quarter of the way from 1 to 1 + 2**-10."""
    draws = round_stochastic(np.full(100_000, 1 + 2.0**-12), "float16", np.random.default_rng(0))
    assert set(np.unique(draws)) == {1.0, 1 + 2.0**-10}
    assert abs(np.mean(draws > 1) - 0.25) <= 4 * 0.5 / math.sqrt(100_000)


def test_overflow_and_formats_without_infinity():
    assert round_nearest(np.array([65520.0]), "float16")[0] == np.inf  # max + half gap: tie up
    assert round_nearest(np.array([65519.0]), "float16")[0] == 65504.0
    assert np.isnan(round_nearest(np.array([480.0]), "float8_e4m3fn")[0])  # no inf in e4m3fn
    assert round_nearest(np.array([-1e-30]), "float16")[0] == 0.0
    assert math.copysign(1, round_nearest(np.array([-1e-30]), "float16")[0]) == -1


# ------------------------------------------------------------------ emulation vs numpy


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float8_e4m3fn"])
def test_emulated_elementwise_ops_reproduce_numpy(fmt):
    """numpy computes float16/bfloat16/float8 + - * / sqrt in float32 and rounds once, which
    is correctly rounded (24 >= 2p + 2): emulation must agree bit for bit."""
    f = get_format(fmt)
    rng = np.random.default_rng(1)
    a, b = (cast(rng.standard_normal(5000) * 4, f) for _ in range(2))
    em = Emulator(f)
    va, vb = em.values(a), em.values(b)
    with np.errstate(all="ignore"):
        pairs = [
            (em.add(va, vb), a + b),
            (em.sub(va, vb), a - b),
            (em.mul(va, vb), a * b),
            (em.div(va, vb), a / b),
            (em.sqrt(np.abs(va)), np.sqrt(np.abs(a))),
        ]
    for emulated, native in pairs:
        assert _same(em.result(emulated), native)


def test_emulated_float16_exp_matches_numpy_on_most_inputs():
    """exp is not exact in emulation (float64 libm then one rounding) nor in numpy (float32
    kernel then one rounding): over every finite float16 input they agree except where one of
    them misrounds; NUMERICS.md counts 4 numpy misroundings."""
    x = np.arange(0, 2**16, dtype=np.uint16).view(np.float16)
    x = x[np.isfinite(x)]
    with np.errstate(all="ignore"):
        native = np.exp(x)
        emulated = Emulator(get_format("float16")).exp(x.astype(np.float64))
    differ = ~((native.astype(np.float64) == emulated) | np.isnan(emulated))
    assert 0 <= differ.sum() <= 8


def test_float16_sums_emulated_versus_numpy():
    """Recursive and pairwise sums in a float16 accumulator: emulation equals numpy's own
    float16 loops (np.add.accumulate, level-by-level pairs), and differs from np.sum, which
    silently accumulates float16 in float32: 10,000 ones give 2048 (stagnation: 2048 + 1 is a
    tie that rounds to even) emulated, 10000 with np.sum."""
    ones = np.ones(10_000, dtype=np.float16)
    assert recursive_sum_emulated(ones)[0] == recursive_sum(ones)[0] == 2048
    assert np.sum(ones) == 10_000
    x = cast(np.random.default_rng(2).uniform(0, 1, 3000), "float16")
    assert recursive_sum_emulated(x)[0] == recursive_sum(x)[0]
    assert pairwise_sum_emulated(x)[0] == pairwise_sum(x)[0]
    assert recursive_sum_emulated(x)[0] != np.sum(x)


def test_emulated_softmax_accumulates_in_the_format():
    """softmax of 4096 zeros: 1/4096 exactly with numpy's float32 sum; the emulated float16
    sum of ones stagnates at 2048, so each output is 1/2048."""
    x = np.zeros(4096, dtype=np.float16)
    assert softmax_shifted_emulated(x)[0] == np.float16(2.0**-11)
    assert PROBLEMS["softmax"].variants["shifted"].compute(x)[0] == np.float16(2.0**-12)


# ------------------------------------------------------------------ stochastic rounding


def test_stochastic_rounding_removes_stagnation():
    """w = 1 plus 4096 updates of 2**-12 (exact 2). Round to nearest: 1 + 2**-12 is a quarter
    of float16's gap 2**-10 above 1, so every update is lost and w stays 1 (error 1). With SR,
    w_k - E[w_k] is a martingale whose steps (rounding errors) lie in intervals of length at
    most the largest gap met, 2**-9 (w < 4), so Azuma-Hoeffding gives
    P(|w - 2| >= t) <= 2 exp(-2 t^2 / (4096 * 2**-18)) = 3e-7 at t = 0.35 per seed, and the
    mean over S independent seeds lies within 0.35 / sqrt(S) of 2 with the same confidence."""
    x = np.concatenate([[1.0], np.full(4096, 2.0**-12)]).astype(np.float16)
    assert recursive_sum(x)[0] == 1.0
    seeds = 20
    results = [float(recursive_sum_emulated(x, seed=(7, k))[0]) for k in range(seeds)]
    assert all(abs(r - 2.0) < 0.35 for r in results)
    assert abs(np.mean(results) - 2.0) < 0.35 / math.sqrt(seeds)
    assert len(set(results)) > 1  # the seeds really differ


def test_stochastic_variants_are_reproducible_and_seed_dependent():
    x = cast(np.random.default_rng(3).uniform(0, 1, 2000), "float16")
    family = PROBLEMS["summation"].variants["recursive_sr"]
    first = [family.with_params(seed=k).compute(x)[0] for k in range(5)]
    again = [family.with_params(seed=k).compute(x.copy())[0] for k in range(5)]
    assert first == again and len(set(first)) > 1
    assert family.grid == {"seed": (0.0, 1.0, 2.0, 3.0, 4.0)}
    assert family.with_params(seed=0).compute_mode == "stochastic"


def test_stagnation_example_and_seed_spread():
    table = stagnation_example(updates=4096, seeds=10).set_index("format")
    assert table.loc["float16", "round to nearest"] == 1.0
    assert table.loc["bfloat16", "round to nearest"] == 1.0
    assert table.loc["float32", "round to nearest"] == 2.0
    assert table.loc["float64", "SR mean over seeds"] == 2.0  # every sum is exact: no draw moves
    assert abs(table.loc["float16", "SR mean over seeds"] - 2.0) < 0.35 / math.sqrt(10)
    from precision.run.spec import parse_spec
    from precision.run.study import run

    spec = parse_spec(
        {
            "name": "t",
            "formats": ["float16"],
            "problems": ["weight_update"],
            "grid": {
                "log10_cond": [0, 1],
                "log10_magnitude": [0, 1],
                "sizes": [2000],
                "samples_per_cell": 2,
            },
        }
    )
    spread = seed_spread(run(spec)).iloc[0]
    assert spread["variant"] == "recursive_sr" and spread["seeds"] == 5
    assert spread["inputs"] == 2 and spread["spread_over_u"] > 0
    # 2000 updates of about f |w| / 2000 < float16's half gap: round to nearest stagnates,
    # SR follows the drift on average.
    assert spread["mean_err_over_u"] < spread["nearest_err_over_u"]


def test_float64_stochastic_sum_from_exact_two_sums():
    """float64 SR needs each exact sum (TwoSum): 1 + 4096 * 2**-54 (a quarter ulp each)
    stagnates at 1 with round to nearest; SR moves by 2**-52 with probability 1/4 per step.
    Each step's rounding error lies in an interval of length 2**-52, so Azuma-Hoeffding gives
    P(|w - (1 + 2**-42)| >= t) <= 2 exp(-2 t^2 / (4096 * 2**-104)) = 3e-7 at t = 0.35 * 2**-43
    (the float16 test below, scaled by 2**-43)."""
    x = np.concatenate([[1.0], np.full(4096, 2.0**-54)])
    assert recursive_sum(x)[0] == 1.0
    results = [recursive_sum_emulated(x, seed=(3, k))[0] for k in range(10)]
    assert all(abs(r - (1 + 2.0**-42)) < 0.35 * 2.0**-43 for r in results)
    assert len(set(results)) > 1


# ------------------------------------------------------------------ float8 in practice


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2"])
def test_float8_registry_matches_ml_dtypes(fmt):
    import ml_dtypes

    f, info = FORMATS[fmt], ml_dtypes.finfo(FORMATS[fmt].dtype)
    assert (f.max, f.min_normal, f.eps) == (float(info.max), float(info.tiny), float(info.eps))
    assert f.min_subnormal == float(info.smallest_subnormal)


def test_float8_numpy_sums_accumulate_in_float8_and_float32_variant_does_not():
    """numpy sums float8 in float8: 100 ones give 16 (e4m3fn) and 8 (e5m2); the float32
    variant computes in float32 and rounds once."""
    assert np.sum(np.ones(100, dtype=FORMATS["float8_e4m3fn"].dtype)) == 16
    assert np.sum(np.ones(100, dtype=FORMATS["float8_e5m2"].dtype)) == 8
    x = np.zeros(64, dtype=FORMATS["float8_e4m3fn"].dtype)  # softmax 1/64 = 2**-6, exact
    widened = PROBLEMS["softmax"].variants["shifted_float32"]
    assert widened.compute(x)[0] == 2.0**-6 and widened.accumulator(FORMATS[x.dtype.name]) == (
        "float32"
    )
    assert PROBLEMS["softmax"].variants["shifted"].compute(x)[0] != 2.0**-6  # sum stalls at 16


# ------------------------------------------------------------------ weight updates


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32", "float64"])
def test_weight_update_variants_within_their_bounds(fmt):
    """Round to nearest, float32 master weight, Kahan and stochastic rounding respect their
    worst-case bounds (SR: gamma_{n-1} with 2u, each rounding erring by less than one gap)
    on seeded inputs, widened by the second-order factor 1 + n u."""
    from precision.core.metrics import normwise_relative_error
    from precision.truth.exact import ground_truth

    problem, f = PROBLEMS["weight_update"], get_format(fmt)
    members = [m for v in problem.variants.values() for m in v.expand()]
    rng = np.random.default_rng(4)
    checked = 0
    for n in (50, 500):
        for magnitude in (0.1, 10.0):
            x = cast(problem.propose(rng, n=n, magnitude=magnitude, cond=1.0, size=1)[0], f)
            gt = ground_truth(problem, x, f)
            for variant in members:
                name = (variant.name, dict(variant.params))
                err = normwise_relative_error(variant.compute(x), gt.exact)
                bound = variant.bound(x, f)
                if np.isfinite(bound):
                    checked += 1
                    assert err <= bound * (1 + n * f.u), (name, n, magnitude, err / f.u)
    assert checked >= 2 * len(members)  # bfloat16 n = 500: n u > 1, no bound


def test_weight_update_proposals_keep_the_sign_and_magnitude():
    X = PROBLEMS["weight_update"].propose(
        np.random.default_rng(5), n=100, magnitude=4.0, cond=1.0, size=20
    )
    w0, total = X[:, 0], X.sum(axis=1)
    assert np.all((np.abs(w0) >= 4.0) & (np.abs(w0) <= 8.0))
    assert np.all(np.sign(total) == np.sign(w0))  # the drift never crosses zero
    assert np.all(np.abs(total) >= 0.5 * np.abs(w0) - 1e-12)


def test_summary_shows_the_spread_over_seeds():
    from precision.report.summary import markdown
    from precision.run.spec import parse_spec
    from precision.run.study import run

    spec = parse_spec(
        {
            "name": "t",
            "formats": ["bfloat16"],
            "problems": ["summation"],
            "variants": {"summation": ["recursive", "recursive_sr"]},
            "params": {"summation": {"seed": [0, 1]}},
            "grid": {
                "log10_cond": [0, 1],
                "log10_magnitude": [0, 1],
                "sizes": [300],
                "samples_per_cell": 1,
            },
        }
    )
    text = markdown(run(spec), title="t")
    assert "## Stochastic rounding: error over seeds" in text
    assert "| summation | bfloat16 | recursive_sr | 1 | 2 |" in text


# ------------------------------------------------------------------ batches


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _hostile_rows(fmt: str, n: int, rows: int, seed: int) -> np.ndarray:
    """Rows of the format that overflow the sum (past max in every format, to inf or NaN by
    sign), hold inf or NaN, cancel, or round: every rule of the sequential rounding."""
    f, rng = get_format(fmt), np.random.default_rng(seed)
    X = rng.standard_normal((rows, n)) * 10.0 ** rng.uniform(-3, 1, (rows, 1))
    X[0] = f.max / 2  # the sum passes max: inf, or NaN in float8_e4m3fn
    X[1] = -f.max / 2  # ... with the sign of the sum
    X[2, ::2], X[2, 1::2] = 1.0, -1.0  # exact cancellation, zeros
    X[3, n // 2] = np.inf
    X[4, 0] = np.nan
    X[5] = rng.uniform(0, 1, n) * 2.0 ** rng.integers(-30, 30, n)  # wide exponent range
    X[6], X[6, -2:] = 0.0, -0.75 * f.max  # the last addition overflows, to -inf or -NaN
    with np.errstate(invalid="ignore"):
        return cast(X, fmt)


@pytest.mark.parametrize("fmt", [*NARROW, "float64"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_vectorised_sum_equals_the_row_by_row_sum_bit_for_bit(fmt, rounding, monkeypatch):
    """`Emulator.sum_recursive` loops over Python floats row by row for small batches and over
    the terms, vectorised across rows, for large ones: both give the same sums, bit for bit
    (NaN signs and -0 included), and neither raises a floating-point flag."""
    from precision.core import emulate as emulate

    X = _hostile_rows(fmt, 37, 24, seed=11).astype(np.float64)
    em = Emulator(get_format(fmt), rounding=rounding, seed=5)
    draws = np.random.default_rng(6).random((len(X), X.shape[1] - 1))
    if rounding == "nearest":
        draws = None
    with np.errstate(all="raise"):
        monkeypatch.setattr(emulate, "SCALAR_ROWS", len(X))
        rows = em.sum_recursive(X, draws=draws)
        monkeypatch.setattr(emulate, "SCALAR_ROWS", 0)
        vector = em.sum_recursive(X, draws=draws)
    assert rows.shape == vector.shape == (len(X), 1)
    assert _bits(rows) == _bits(vector)


@pytest.mark.parametrize("fmt", NARROW)
def test_emulated_kernels_compute_rows_independently(fmt, monkeypatch):
    """The emulated and stochastic batch kernels: row i of a batch (summed by the vectorised
    loop) equals the one-row batch and the single input (summed row by row), bit for bit; a
    stochastic row is seeded by its own bits (`sr_seed`), whatever batch it is in."""
    from precision.core import emulate as emulate

    monkeypatch.setattr(emulate, "SCALAR_ROWS", 4)
    X = _hostile_rows(fmt, 19, 12, seed=12)
    kernels = {
        "summation": [
            "recursive_emulated",
            "pairwise_emulated",
            ("recursive_sr", 0),
            ("recursive_sr", 3),
        ],
        "softmax": ["shifted_emulated", "shifted_float32"],
        "logsumexp": ["shifted_emulated", "shifted_float32"],
        "log_softmax": ["shifted_emulated", "shifted_float32"],
    }
    for problem, names in kernels.items():
        for name in names:
            if isinstance(name, tuple):  # a stochastic-rounding stream: a seed of the family
                variant = PROBLEMS[problem].variants[name[0]].with_params(seed=name[1])
            else:
                variant = PROBLEMS[problem].variants[name]
            assert variant.batched, (problem, name)
            with np.errstate(all="ignore"):
                batch = variant.kernel(X)
                for i in range(len(X)):
                    one = variant.kernel(X[i : i + 1])
                    single = variant.compute(X[i])
                    assert _bits(batch[i]) == _bits(one[0]) == _bits(single), (problem, name, i)


# ------------------------------------------------------------------ ops objects


def _numpy_tree(v: list) -> object:
    """The pairwise tree by its recursive definition on numpy scalars of the format: halves of
    a vector padded with exact zeros to a power of two, sum(v) = sum(left) + sum(right)."""
    if len(v) == 1:
        return v[0]
    half = len(v) // 2
    return _numpy_tree(v[:half]) + _numpy_tree(v[half:])


def _padded(row: np.ndarray) -> list:
    size = 1 << max(len(row) - 1, 0).bit_length()
    return [*row, *[row.dtype.type(0)] * (size - len(row))]


@pytest.mark.parametrize("fmt", [*NARROW, "float64"])
def test_numpy_ops_sums_are_numpys_reductions_and_the_stated_orders(fmt):
    """`NUMPY.sum` is ``np.sum`` along the last axis by default; ``order="recursive"`` is the
    left-to-right loop in the format and ``"pairwise"`` the halving tree, both checked against
    numpy scalar arithmetic of the format written out here (bit for bit, NaN signs aside:
    ml_dtypes' float8 scalars sign a NaN as its operand, its array loops +NaN)."""
    X = _hostile_rows(fmt, 13, 12, seed=21)
    with np.errstate(all="ignore"):
        assert _bits(NUMPY.sum(X)) == _bits(np.sum(X, axis=-1, keepdims=True))
        recursive, pairwise = NUMPY.sum(X, order="recursive"), NUMPY.sum(X, order="pairwise")
        for i, row in enumerate(X):
            s = row[0]
            for v in row[1:]:
                s = s + v
            assert nan_blind(recursive[i]) == nan_blind(np.array([s]))
            assert nan_blind(pairwise[i]) == nan_blind(np.array([_numpy_tree(_padded(row))]))
    assert recursive.shape == pairwise.shape == (len(X), 1)


@pytest.mark.parametrize("fmt", [*NARROW, "float64"])
def test_emulator_is_an_ops_object(fmt):
    """The `Emulator`'s ``max`` is exact and its ``sum`` takes the orders `NUMPY` takes: left to
    right by default and for "recursive" (`Emulator.sum_recursive`), the same tree as numpy's
    for "pairwise"; in every registry format both equal numpy's own loops in the format bit for
    bit (NaNs aside), since numpy's additions there are correctly rounded (computed in float32
    or float64 and rounded once, 24 >= 2p + 2) and so are the emulator's (53 >= 2p + 2)."""
    X = _hostile_rows(fmt, 13, 12, seed=22)
    em = Emulator(get_format(fmt))
    v = em.values(X)
    with np.errstate(all="ignore"):
        assert _bits(em.max(v)) == _bits(np.max(v, axis=-1, keepdims=True))
        assert _bits(em.sum(v)) == _bits(em.sum(v, order="recursive")) == _bits(em.sum_recursive(v))
        assert _bits(em.sum(v, order="pairwise")) == _bits(em.sum_pairwise(v))
        for order in ("recursive", "pairwise"):
            emulated, native = em.result(em.sum(v, order=order)), NUMPY.sum(X, order=order)
            assert nan_blind(emulated) == nan_blind(native), order


@pytest.mark.parametrize("ops", [NUMPY, Emulator(get_format("float16"))], ids=["numpy", "emulator"])
def test_an_unknown_summation_order_is_refused_by_name(ops):
    with pytest.raises(ValueError, match="order must be None or one of.*'sideways'"):
        ops.sum(np.ones((2, 3)), order="sideways")
