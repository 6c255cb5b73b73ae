"""Summation: exact references, what numpy really computes, bounds, and the study's own rows.

Expected values come from exact rational arithmetic (``fractions.Fraction`` of the floats) or
from mpmath at 400 bits, never from the code under test; tolerances are the variants' own
bounds. The quick version of studies/summation.toml runs once per module (seconds); the full
study under ``pytest -m slow``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest
from members import members
from same_bits import check_batch_contract, nan_blind

from precision.core.emulate import Emulator
from precision.core.formats import STUDY_FORMATS, cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.core.numbers import ARB, MPMATH
from precision.problems import DEFAULT_VARIANTS, PROBLEMS
from precision.problems.summation import (
    SUMMATION,
    associativity_example,
    dyadic,
    estimate_sums,
    exact_decimal,
    float_sum,
    numpy_pairwise_depth,
    order_spread,
    pairwise_sum,
    propose_sums,
    random_order_sum,
    recursive_sum,
    sum_and_abs_sum64,
)
from precision.report.summary import markdown
from precision.run.spec import load_spec
from precision.run.study import companion_tables, run
from precision.truth.exact import ground_truth, to_mpf_array

STUDY = Path(__file__).resolve().parents[2] / "studies" / "summation.toml"
BOUNDED = ["recursive", "pairwise", "kahan"]
INPUT = ["problem", "format", "n", "cell_log10_cond", "cell_log10_magnitude", "sample"]
"""Columns that identify one input in one format."""


def _fraction_sum(x: np.ndarray) -> Fraction:
    return sum((Fraction(v) for v in np.asarray(x, dtype=np.float64).tolist()), Fraction(0))


def _quiet():
    return np.errstate(all="ignore")


# ------------------------------------------------------------------ exact sums


@pytest.mark.parametrize("fmt", [*STUDY_FORMATS])
def test_exact_sum_equals_the_rational_sum(fmt):
    """Every binade, subnormals and both signs: the integer sum is the rational sum."""
    rng = np.random.default_rng(1)
    f = get_format(fmt)
    x = rng.standard_normal(3000) * 2.0 ** rng.integers(f.emin - f.p, f.emax, 3000)
    x = cast(x, fmt)
    x = x[np.isfinite(x.astype(np.float64))]
    man, exp = float_sum(x)
    assert Fraction(man) * Fraction(2) ** exp == _fraction_sum(x)


@pytest.mark.parametrize("ctx", [MPMATH, ARB], ids=["mpmath", "arb"])
def test_dyadic_is_exact_far_outside_the_float64_range(ctx):
    """2**2000 + 2**0 - 2**-1100: pieces far apart and beyond float64's range, all kept."""
    man, exp = (1 << 3100) + (1 << 1100) - 1, -1100
    with ctx.workprec(3200):
        value = dyadic(man, exp, ctx)
        if ctx is MPMATH:
            got_man, got_exp = value.man_exp
        else:
            assert value.rad() == 0
            got_man, got_exp = value.mid().man_exp()
    assert (
        Fraction(int(got_man)) * Fraction(2) ** int(got_exp) == Fraction(man) * Fraction(2) ** exp
    )


@pytest.mark.parametrize("engine", ["mpmath", "arb"])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_reference_keeps_terms_far_below_the_sum(fmt, engine):
    """[2**k, 1, -2**k] sums to 1 exactly; mpmath.fsum at 113 bits drops the 1 once k > 226."""
    f = get_format(fmt)
    big = 2.0 ** min(f.emax, 300)
    x = cast(np.array([big, 1.0, -big]), fmt)
    gt = ground_truth(SUMMATION, x, fmt, engine=engine)
    assert gt.certified and float(gt.exact.rounded[0]) == 1.0
    assert gt.cond == pytest.approx(2 * big + 1)


def test_reference_of_pinned_inputs_against_mpmath():
    x = np.array([1e16, 1.0, -1e16, 0.5, 2.0**-60])
    gt = ground_truth(SUMMATION, x, "float64")
    with mpmath.workprec(400):
        exact = mpmath.fsum(mpmath.mpf(v) for v in x.tolist())
        assert exact == mpmath.mpf(1.5) + mpmath.mpf(2) ** -60
    assert float(gt.exact.rounded[0]) == 1.5
    assert gt.exact.hi[0] * 2.0 ** gt.exact.exp[0] == 1.5
    with _quiet():
        assert recursive_sum(x)[0] == 0.5  # 1e16 + 1 rounds to 1e16 (spacing 2)


def test_zero_sum_has_infinite_condition_and_takes_mpf_input():
    x = np.array([3.0, -1.0, -2.0])
    y, cond = SUMMATION.reference(x)
    assert y[0] == 0 and cond == mpmath.inf
    y2, cond2 = SUMMATION.reference(to_mpf_array(x))
    assert y2[0] == 0 and cond2 == mpmath.inf


# ------------------------------------------------------------------ what the variants compute


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_recursive_sum_is_a_left_to_right_loop_in_the_format(fmt):
    """np.add.accumulate rounds every partial sum to the format (NUMERICS: np.sum does not)."""
    x = cast(np.random.default_rng(2).uniform(-1, 1, 3000), fmt)
    s = x.dtype.type(0)
    for v in x:
        s = s + v
    assert recursive_sum(x)[0] == s
    assert recursive_sum(x).dtype == x.dtype


def _numpy_pairwise(a, acc):
    """numpy's pairwise_sum (loops_utils.h) in the accumulator type ``acc``, in Python."""
    n = len(a)
    if n < 8:
        res = acc(0.0)
        for v in a:
            res = acc(res + acc(v))
        return res
    if n <= 128:
        r = [acc(v) for v in a[:8]]
        i = 8
        while i < n - (n % 8):
            r = [acc(r[j] + acc(a[i + j])) for j in range(8)]
            i += 8
        res = acc(
            acc(acc(r[0] + r[1]) + acc(r[2] + r[3])) + acc(acc(r[4] + r[5]) + acc(r[6] + r[7]))
        )
        for v in a[i:]:
            res = acc(res + acc(v))
        return res
    half = n // 2 - (n // 2) % 8
    return acc(_numpy_pairwise(a[:half], acc) + _numpy_pairwise(a[half:], acc))


def _depth(a_size):
    """Largest number of roundings any term meets in `_numpy_pairwise`, counted directly."""
    n = a_size
    if n < 8:
        return max(n - 1, 0)
    if n <= 128:
        return n // 8 - 1 + 3 + n % 8
    half = n // 2 - (n // 2) % 8
    return 1 + max(_depth(half), _depth(n - half))


@pytest.mark.parametrize(
    ("fmt", "acc"), [("float16", np.float32), ("float32", np.float32), ("float64", np.float64)]
)
def test_numpy_sum_is_the_pairwise_algorithm_the_bound_assumes(fmt, acc):
    """np.sum = numpy's pairwise sum in the accumulator (float32 for float16), rounded once."""
    rng = np.random.default_rng(3)
    for n in (1, 7, 8, 100, 129, 1000, 5000):
        x = cast(rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2, n), fmt)
        expected = get_format(fmt).dtype.type(_numpy_pairwise(x, acc))
        assert np.sum(x) == expected
        assert numpy_pairwise_depth(n) == _depth(n)


def test_bfloat16_np_sum_accumulates_left_to_right():
    x = np.ones(10_000, dtype=get_format("bfloat16").dtype)
    assert float(np.sum(x)) == 256.0 == float(recursive_sum(x)[0])


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize("variant", list(members(SUMMATION.variants)))
def test_output_dtype_and_shape(variant, fmt):
    x = cast(
        propose_sums(np.random.default_rng(4), n=50, magnitude=3.0, cond=100.0, size=1)[0], fmt
    )
    y = members(SUMMATION.variants)[variant].compute(x)
    assert y.shape == (1,) and y.dtype == get_format(fmt).dtype


@pytest.mark.parametrize("fmt", ["bfloat16", "float32"])
def test_condition_number_survives_rounding_to_the_format(fmt):
    """The cancelling triples cancel exactly in every format, so rounding the input keeps
    kappa_sum (the residual moves by u only), even at kappa = 1e15."""
    X = propose_sums(np.random.default_rng(8), n=300, magnitude=10.0, cond=1e15, size=8)
    kappa64, _ = estimate_sums(X)
    kappa, _ = estimate_sums(cast(X, fmt).astype(np.float64))
    assert np.allclose(kappa, kappa64, rtol=4 * get_format(fmt).u)


ALL_FORMATS = [*STUDY_FORMATS, "float8_e4m3fn", "float8_e5m2"]


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("variant", list(members(SUMMATION.variants)))
def test_batch_rows_are_the_one_vector_results(variant, fmt):
    """A batch (B, n) gives (B, 1), row i bit for bit the kernel on row i alone and on the
    vector (n,) alone (`same_bits.nan_blind`: a float8 NaN's sign aside, since kahan runs a
    batch of a few rows on scalars and ml_dtypes' float8 scalar and array additions sign NaNs
    differently), at sizes that exercise odd pairwise levels and numpy's blocking; the batched
    bound is the bound of each row."""
    v = members(SUMMATION.variants)[variant]
    assert v.batched
    rng = np.random.default_rng(9)
    for n in (1, 2, 7, 129, 1000):
        X = np.concatenate(
            [propose_sums(rng, n=n, magnitude=m, cond=1e3, size=3) for m in (1e-2, 3.0, 1e4)]
        )
        with _quiet():
            check_batch_contract(v, cast(X, fmt), fmt)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("body", [recursive_sum, pairwise_sum], ids=["recursive", "pairwise"])
def test_one_body_gives_the_same_sums_in_numpys_arithmetic_and_emulated(body, fmt):
    """recursive_sum and pairwise_sum are one body over an arithmetic ``ops``. numpy adds
    float16, bfloat16 and float8 in float32 and rounds once, the `Emulator` adds in float64 and
    rounds once: both are the correctly rounded sum (double rounding is innocuous when the wide
    format has at least 2p + 2 bits: 24 >= 2 * 11 + 2, 53 >= 2 * 24 + 2), so the default ops
    and the emulator give the same sums, bit for bit (NaN signs aside), in every format,
    overflow, inf and NaN included; and the default is numpy's sequential loop
    (``np.add.accumulate``) for the recursive order."""
    rng = np.random.default_rng(14)
    for n in (1, 2, 7, 129, 1000):
        X = np.concatenate(
            [
                propose_sums(rng, n=n, magnitude=m, cond=c, size=3)
                for m in (1e-2, 3.0, 1e4, 1e6)
                for c in (1.0, 1e3)
            ]
        )
        X[0, -1], X[1, 0] = np.inf, np.nan
        with _quiet():
            X = cast(X, fmt)
            numpy_ops, emulated = body(X), body(X, ops=Emulator(get_format(fmt)))
            if body is recursive_sum:
                assert numpy_ops.tobytes() == np.add.accumulate(X, axis=-1)[:, -1:].tobytes()
        assert numpy_ops.dtype == emulated.dtype == X.dtype
        assert nan_blind(numpy_ops) == nan_blind(emulated), n


def test_numpy_sum_of_a_strided_batch_is_each_rows_sum():
    """np.sum over a strided last axis accumulates float16 in float16 (stagnating at 2048);
    the numpy variant sums a contiguous copy, so every row is its 1-D sum whatever the layout."""
    ones = np.asfortranarray(np.ones((3, 10_000), dtype=np.float16))
    assert (np.sum(ones, axis=-1) == 2048).all()
    y = SUMMATION.variants["numpy"].kernel(ones)
    assert y.shape == (3, 1) and (y == np.sum(np.ones(10_000, dtype=np.float16))).all()


def test_random_orders_are_reproducible_and_differ():
    x = cast(
        propose_sums(np.random.default_rng(5), n=200, magnitude=1.0, cond=1e3, size=1)[0], "float32"
    )
    assert random_order_sum(x, 0)[0] == random_order_sum(x.copy(), 0)[0]
    results = {float(random_order_sum(x, k)[0]) for k in range(8)}
    assert len(results) > 1  # kappa = 1e3 in float32: the orders round differently


def test_stagnation_of_recursive_float16_sums():
    """10^5 uniform(0, 1) terms: the recursive float16 sum stalls at 2048 (spacing 2 there, every
    term rounds away); numpy's float32 accumulator and pairwise summation do not."""
    x = cast(np.random.default_rng(6).uniform(0.0, 1.0, 100_000), "float16")
    exact = float(_fraction_sum(x))
    assert 4.9e4 < exact < 5.1e4
    assert float(recursive_sum(x)[0]) == 2048.0
    for name in ("pairwise", "kahan", "numpy", "float32_accumulator"):
        y = float(SUMMATION.variants[name].compute(x)[0])
        assert abs(y - exact) / exact < 0.01, name


# ------------------------------------------------------------------ bounds on seeded inputs


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_every_bound_holds_on_seeded_inputs(fmt):
    f = get_format(fmt)
    rng = np.random.default_rng(7 + STUDY_FORMATS.index(fmt))
    checked, failures = 0, []
    for n in (3, 10, 100, 1000, 5000):
        for cond in (1.0, 10.0, 1e3, 1e6, 1e12):
            x = cast(
                propose_sums(rng, n=n, magnitude=float(rng.uniform(0.1, 100)), cond=cond, size=1)[
                    0
                ],
                fmt,
            )
            gt = ground_truth(SUMMATION, x, fmt)
            for name, variant in members(SUMMATION.variants).items():
                with _quiet():
                    bound = variant.bound(x, f)
                    err = normwise_relative_error(variant.compute(x), gt.exact)
                if np.isfinite(bound):
                    checked += 1
                    if not err <= bound:
                        failures.append((name, n, cond, err / f.u, bound / f.u))
    assert checked > 100 and not failures, failures[:5]


# ------------------------------------------------------------------ the study's own rows


@pytest.fixture(
    scope="module",
    params=[pytest.param(True, id="quick"), pytest.param(False, id="full", marks=pytest.mark.slow)],
)
def table(request) -> pd.DataFrame:
    return run(load_spec(STUDY, quick=request.param))


def rows(table, variant, fmt=None, problem="summation"):
    selected = table[(table["problem"] == problem) & (table["variant"] == variant)]
    return selected if fmt is None else selected[selected["format"] == fmt]


def test_study_rows_are_certified_and_complete(table):
    assert table["certified"].all()
    assert set(table["format"]) == set(STUDY_FORMATS)
    assert set(table["variant"]) >= set(SUMMATION.variants) | {"subtract"}


def test_recursive_float16_stagnates_on_many_positive_terms(table):
    """kappa = 1 (all terms of one sign), n = 10^5: the recursive float16 sum ends far from the
    true sum while pairwise and Kahan stay within their bounds on the same inputs."""
    positive = (table["n"] == 100_000) & (table["cond"] == 1.0) & (table["format"] == "float16")
    stalled = table[positive & (table["variant"] == "recursive") & (table["outcome"] == "ok")]
    assert len(stalled) > 0, "the study must hold 10^5 same-signed terms"
    assert (stalled["rel_error"] > 0.9).all()  # more than 90% of the sum is lost
    for name in ("pairwise", "kahan"):
        same = stalled[INPUT].merge(table[positive & (table["variant"] == name)], on=INPUT)
        assert len(same) == len(stalled)
        assert (same["rel_error"] <= same["bound"]).all() and (same["rel_error"] < 0.01).all()


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
@pytest.mark.parametrize("variant", list(SUMMATION.variants))
def test_measured_errors_respect_their_bounds(table, variant, fmt):
    """recursive, pairwise and Kahan bounds are checked on many rows; every variant's bound
    holds wherever it applies (NaN: gamma undefined, a partial sum may overflow, sum 0)."""
    r = rows(table, variant, fmt)
    checked = r[(r["outcome"] == "ok") & r["bound"].notna()]
    if variant in BOUNDED and fmt in ("float32", "float64"):
        assert len(checked) >= len(r) // 2
    violations = checked[checked["rel_error"] > checked["bound"]]
    assert violations.empty, violations[["n", "cond", "rel_error", "bound"]]


def test_cancellation_rows_are_exact_in_sterbenz_region(table):
    r = rows(table, "subtract", problem="cancellation")
    exact_region = r[r["bound"] == 0]
    assert len(exact_region) > 0
    assert (exact_region["rel_error"] == 0).all()
    assert (r.loc[r["bound"].notna(), "rel_error"] <= r.loc[r["bound"].notna(), "bound"]).all()


def test_summary_shows_the_worked_examples(table):
    text = markdown(table, title="summation", companions=companion_tables(table))
    assert "## Worked examples: summation" in text
    assert "## Worked examples: cancellation" in text
    assert "0.600000000000000088817841970012523233890533447265625" in text
    assert "1.1102230246251565e-16" in text
    assert "Where the exponentials overflow" not in text  # no exponentials in this study


# ------------------------------------------------------------------ worked examples


def test_associativity_example_exact_values():
    table = associativity_example().set_index("format")
    f64 = table.loc["float64"]
    assert f64["fl(0.1)"] == "0.1000000000000000055511151231257827021181583404541015625"
    assert f64["(0.1+0.2)+0.3"] == "0.600000000000000088817841970012523233890533447265625"
    assert f64["0.1+(0.2+0.3)"] == "0.59999999999999997779553950749686919152736663818359375"
    assert (0.1 + 0.2) + 0.3 == float(Fraction(f64["(0.1+0.2)+0.3"]))
    assert 0.1 + (0.2 + 0.3) == float(Fraction(f64["0.1+(0.2+0.3)"]))
    exact = Fraction(0.1) + Fraction(0.2) + Fraction(0.3)
    assert f64["exact sum of the three floats"] == exact_decimal(exact)
    assert f64["correctly rounded"] == f64["0.1+(0.2+0.3)"] and not f64["equal"]
    f32 = table.loc["float32"]
    assert f32["equal"] and np.float32(f32["(0.1+0.2)+0.3"]) == np.float32(0.1) + np.float32(
        0.2
    ) + np.float32(0.3)


def test_exact_decimal_is_every_digit():
    assert exact_decimal(0.1) == "0.1000000000000000055511151231257827021181583404541015625"
    assert exact_decimal(-2.5) == "-2.5" and exact_decimal(3.0) == "3"
    assert Fraction(exact_decimal(2.0**-1074)) == Fraction(2.0**-1074)


def test_order_spread_is_zero_only_when_every_order_agrees():
    spread = order_spread(1000, 1e3, get_format("float32"))
    assert spread["distinct results"] > 1 and spread["spread (ulps)"] > 0
    assert 300 < spread["kappa_sum"] < 3000  # the generator aims within half a decade


def test_registry_lists_the_problem():
    # The registry adds the emulated and stochastic variants after the module's own.
    registered = PROBLEMS["summation"]
    assert registered.reference is SUMMATION.reference
    assert DEFAULT_VARIANTS["summation"] == tuple(SUMMATION.variants)
    assert all(registered.variants[name] is v for name, v in SUMMATION.variants.items())


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_integer_key_sort_is_the_float64_magnitude_sort_on_every_value(name):
    """The sorted variants' order of a narrow format (`summation._magnitude_order`, sorted on
    an integer key) is numpy's stable argsort of float64 |x|, exhaustively: every bit pattern
    of the format (both zeros, subnormals, infinities, every NaN payload) twice, plus repeats,
    shuffled; ties and NaNs keep their input order. Batch rows and a lone vector alike."""
    from precision.problems.summation import _magnitude_order

    dtype = get_format(name).dtype
    width = np.uint16 if dtype.itemsize == 2 else np.uint8
    every = np.arange(np.iinfo(width).max + 1, dtype=width).view(dtype)
    rng = np.random.default_rng(dtype.itemsize)
    x = rng.permutation(np.concatenate([every, every, rng.choice(every, 1000)]))
    X = np.stack([x, rng.permutation(x)])
    with np.errstate(invalid="ignore"):  # float8 NaN to float64, for the expected order only
        want = np.argsort(np.abs(X.astype(np.float64)), axis=-1, kind="stable")
    assert np.array_equal(_magnitude_order(X), want)
    assert np.array_equal(_magnitude_order(X[1]), want[1])


def test_sums_of_the_last_batch_are_reused_only_for_the_same_batch():
    """`sum_and_abs_sum64` keeps the last batch's sums (every variant's bound reads them): a
    batch that differs in one bit, or in shape, gets its own, and changing what it returned
    changes nothing it returns later."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 1000))
    b = a.copy()
    b[2, 7] = np.nextafter(b[2, 7], np.inf)  # one ulp: another batch
    for x in (a, b, a, a, a[:3], b, a.reshape(8, 500)):
        s, abs_s = sum_and_abs_sum64(x)
        expected = [math.fsum(row) for row in x.tolist()]
        assert s.tolist() == expected
        assert abs_s.tolist() == np.sum(np.abs(x), axis=-1).tolist()
        s[:] = np.nan  # the caller's copy
