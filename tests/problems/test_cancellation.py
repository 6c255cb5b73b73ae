"""Cancellation a - b: Sterbenz's exact subtraction, the input rounding it cannot undo, and the
tutorial's ``1.0 - 0.9999999999999999``. Expected values are exact rationals."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from precision.core.formats import STUDY_FORMATS, cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.problems.cancellation import (
    CANCELLATION,
    decomposed_difference,
    gap_sweep,
    propose_pairs,
    sterbenz,
    subtract,
    worked_examples,
)
from precision.truth.exact import ground_truth


@pytest.mark.parametrize("engine", ["mpmath", "arb"])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_reference_is_the_exact_difference(fmt, engine):
    x = cast(np.array([3.0, 1e-3]), fmt)
    gt = ground_truth(CANCELLATION, x, fmt, engine=engine)
    a, b = (Fraction(v) for v in x.astype(np.float64).tolist())
    assert gt.certified
    assert Fraction(float(gt.exact.rounded[0])) == Fraction(
        float(cast(np.array([float(a - b)]), fmt)[0])
    )
    assert gt.cond == pytest.approx(float((abs(a) + abs(b)) / abs(a - b)), rel=1e-15)


def test_equal_operands_have_an_infinite_condition_number():
    y, cond = CANCELLATION.reference(np.array([0.5, 0.5]))
    assert y[0] == 0 and cond == float("inf")
    assert np.isnan(
        CANCELLATION.variants["subtract"].bound(np.array([0.5, 0.5]), get_format("float64"))
    )


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_subtraction_is_exact_in_sterbenz_region_and_within_u_outside(fmt):
    f = get_format(fmt)
    rng = np.random.default_rng(STUDY_FORMATS.index(fmt))
    exact_seen = rounded_seen = 0
    for cond in (1.0, 2.0, 3.5, 10.0, 1e3, 1e6):
        for x in propose_pairs(rng, n=2, magnitude=5.0, cond=cond, size=20):
            x = cast(x, fmt)
            a, b = x.astype(np.float64).tolist()
            if a == b:
                continue
            gt = ground_truth(CANCELLATION, x, fmt)
            err = normwise_relative_error(subtract(x), gt.exact)
            bound = CANCELLATION.variants["subtract"].bound(x, f)
            if sterbenz(a, b):
                exact_seen += 1
                assert err == 0 and bound == 0
            else:
                rounded_seen += 1
                assert err <= f.u and bound == f.u
    assert exact_seen > 20 and rounded_seen > 10


def test_sterbenz_region():
    assert sterbenz(1.0, 0.5) and sterbenz(0.5, 1.0) and sterbenz(-3.0, -2.0)
    assert not sterbenz(1.0, 0.49) and not sterbenz(1.0, -1.0)
    assert sterbenz(0.0, 7.0)


def _nan_blind(y, fmt: str) -> bytes:
    """The bytes of ``y``; in float8 with every NaN made alike: ml_dtypes' float8 scalar
    arithmetic (one pair's a - b) keeps a NaN's sign where its array loops (a batch's) give
    +NaN. Other values are compared bit for bit (-0 apart from +0)."""
    y = np.asarray(y)
    if not fmt.startswith("float8"):
        return y.tobytes()
    y64 = y.astype(np.float64)
    return np.where(np.isnan(y64), np.nan, y64).tobytes()


def test_output_dtype_and_shape():
    for fmt in STUDY_FORMATS:
        x = cast(np.array([1.5, 1.25]), fmt)
        y = subtract(x)
        assert y.shape == (1,) and y.dtype == get_format(fmt).dtype


@pytest.mark.parametrize("fmt", [*STUDY_FORMATS, "float8_e4m3fn", "float8_e5m2"])
def test_a_batch_of_pairs_is_subtracted_row_by_row(fmt):
    """(B, 2) -> (B, 1), row i bit for bit the subtraction of pair i alone (NaNs by bits) and of
    the pair (2,) alone (`_nan_blind`); the bound (B,) of each pair, equal operands and
    overflowing sums (NaN) included."""
    f = get_format(fmt)
    rng = np.random.default_rng(11)
    X = np.concatenate(
        [
            propose_pairs(rng, n=2, magnitude=m, cond=c, size=8)
            for m in (1e-2, 5.0, 6e4)
            for c in (1.0, 10.0, 1e6)
        ]
        + [np.array([[0.5, 0.5], [0.0, -7.0], [3.0, 0.0]])]
    )
    X = cast(X, fmt)
    variant = CANCELLATION.variants["subtract"]
    assert variant.batched
    with np.errstate(all="ignore"):
        Y, bounds = subtract(X), variant.bound(X, f)
        assert Y.shape == (len(X), 1) and Y.dtype == X.dtype and bounds.shape == (len(X),)
        for i, x in enumerate(X):
            assert Y[i].tobytes() == subtract(X[i : i + 1])[0].tobytes()
            assert _nan_blind(subtract(x), fmt) == _nan_blind(Y[i], fmt)
            one = variant.bound(x, f)
            assert isinstance(one, float)
            assert one == bounds[i] or (np.isnan(one) and np.isnan(bounds[i]))
    assert np.isnan(bounds[-3]) and bounds[-2] == 0.0 == bounds[-1]


def test_sterbenz_takes_arrays():
    a = np.array([1.0, 1.0, -3.0, 0.0, np.nan])
    b = np.array([0.5, 0.49, -2.0, 7.0, 1.0])
    assert sterbenz(a, b).tolist() == [
        sterbenz(p, q) for p, q in zip(a.tolist(), b.tolist(), strict=True)
    ]


# ------------------------------------------------------------------ the tutorial's claim


def test_one_minus_point_nines_in_float64_is_two_to_the_minus_53():
    """``1.0 - 0.9999999999999999`` prints 1.1102230246251565e-16 in Python, not 0.0."""
    assert 1.0 - 0.9999999999999999 == 2.0**-53
    row = decomposed_difference("1.0", "0.9999999999999999", get_format("float64"))
    assert row["prints as"] == "1.1102230246251565e-16" == repr(1.0 - 0.9999999999999999)
    assert Fraction(row["fl(b)"]) == 1 - Fraction(1, 2**53)
    assert Fraction(row["computed"]) == Fraction(1, 2**53)
    assert row["subtraction rel. error"] == 0.0
    expected = (Fraction(1, 2**53) - Fraction(1, 10**16)) / Fraction(1, 10**16)
    assert row["input rounding rel. error"] == float(expected)  # 0.1102..., all from rounding b


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32"])
def test_one_minus_point_nines_is_zero_in_the_narrow_formats(fmt):
    row = decomposed_difference("1.0", "0.9999999999999999", get_format(fmt))
    assert row["computed"] == "0" and row["fl(b)"] == "1"
    assert row["input rounding rel. error"] == 1.0


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_gap_sweep_separates_input_rounding_from_the_subtraction(fmt):
    f = get_format(fmt)
    for row in gap_sweep(f):
        assert row["subtraction rel. error"] == 0.0  # b/2 <= a <= 2b: exact
        # the rounding of a (exact: 1) and b moves the difference by at most u |b| / |a - b|
        assert row["input rounding rel. error"] <= f.u * row["kappa"] or row["computed"] == "0"


def test_worked_examples_explain_with_computed_values():
    (title, text, table), _ = worked_examples()
    assert "1.0 - 0.9999999999999999" in title
    assert "1.1102230246251565e-16" in text and "float16, bfloat16, float32" in text
    assert list(table["format"]) == list(STUDY_FORMATS)
