"""Measuring a variant on a batch (`precision.run.measure`): one kernel call per batch, and rows
that still record only what their own computation did (IEEE exceptions, errors, refusals)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precision.core.formats import cast, get_format
from precision.core.metrics import Exact, result_outcome
from precision.problems import PROBLEMS
from precision.problems.base import Computed, Problem, Unsupported, Variant
from precision.run.measure import measure_batch, measure_variant

FORMATS = ["float16", "bfloat16", "float32", "float64"]


def _toy(kernel, *, batched: bool, bound=None) -> Problem:
    """A problem with one variant ``v`` (the measure needs only the variants)."""
    base = PROBLEMS["softmax"]
    variant = Variant("v", kernel, bound, batched=batched)
    return dataclasses.replace(base, variants={"v": variant})


def _exp_rows(x):
    """exp along the last axis: overflows exactly in the rows holding a large value."""
    return np.exp(x)


def _batch(fmt: str, rows: int = 8, n: int = 5, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cast(rng.uniform(-3.0, 3.0, size=(rows, n)), fmt)


def _exact_exp(X) -> Exact:
    import mpmath

    return Exact.stack(
        [Exact.from_mpf([mpmath.exp(mpmath.mpf(float(v))) for v in row]) for row in X]
    )


@pytest.mark.parametrize("fmt", ["float16", "float32"])
def test_each_row_records_only_its_own_ieee_exceptions(fmt):
    """Rows 2 and 5 overflow; the others raise nothing. One batched call raises overflow, and
    the runner finds which rows did by calling halves: the rows agree with one-row calls."""
    X = _batch(fmt)
    X[2, 1] = X[5, 4] = get_format(fmt).dtype.type(100.0)  # exp(100) overflows both formats
    exact = _exact_exp(X)
    calls = []

    def kernel(x):
        calls.append(len(x))
        return _exp_rows(x)

    batched = _toy(kernel, batched=True)
    run, columns = measure_batch(batched, "v", X, get_format(fmt), exact)
    assert calls[0] == len(X) and len(calls) < 2 * len(X)
    overflowed = [i for i, flags in enumerate(run.raised) if "overflow" in flags]
    assert overflowed == [2, 5]
    assert list(np.flatnonzero(columns["outcome"] == "overflow")) == [2, 5]
    per_row = _toy(_exp_rows, batched=False)
    for i in range(len(X)):
        _, row = measure_variant(per_row, "v", X[i], get_format(fmt), exact.take([i]))
        assert row["fp_exceptions"] == columns["fp_exceptions"][i]
        assert row["outcome"] == columns["outcome"][i]
        assert row["ulps"] == columns["ulps"][i]
        assert np.array_equal(row["rel_error"], columns["rel_error"][i], equal_nan=True)
    assert (columns["batch"] == len(X)).all()


def test_a_batch_that_raises_is_run_row_by_row():
    """Only the row that makes the kernel raise records ``error``; the others are measured from
    their own one-row calls (batch 1)."""
    X = _batch("float32")
    X[3, 0] = np.float32(-2.5)

    def kernel(x):
        if (x == np.float32(-2.5)).any():
            raise RuntimeError("bad row")
        return _exp_rows(x)

    run, columns = measure_batch(
        _toy(kernel, batched=True), "v", X, get_format("float32"), _exact_exp(X)
    )
    assert list(columns["outcome"]) == ["ok"] * 3 + ["error"] + ["ok"] * 4
    assert columns["exception"][3] == "RuntimeError: bad row"
    assert "RuntimeError" in run.tracebacks[3]
    assert (columns["batch"] == 1).all()


def test_a_refusal_refuses_every_row_of_the_batch():
    def kernel(x):
        raise Unsupported("no float16 here")

    X = _batch("float16")
    _, columns = measure_batch(
        _toy(kernel, batched=True), "v", X, get_format("float16"), _exact_exp(X)
    )
    assert (columns["outcome"] == "unsupported").all()
    assert (columns["exception"] == "no float16 here").all()
    assert np.isnan(columns["rel_error"]).all()


def test_a_kernel_that_drops_the_batch_axis_is_an_error_row():
    X = _batch("float64")
    _, columns = measure_batch(
        _toy(lambda x: x.sum(), batched=True), "v", X, get_format("float64"), _exact_exp(X)
    )
    assert (columns["outcome"] == "error").all()
    assert all(str(e).startswith("KernelShapeError") for e in columns["exception"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_batched_and_row_by_row_give_the_same_columns(fmt):
    """The same kernel declared batched or per-row: every measured column agrees."""
    X = _batch(fmt, rows=6, seed=1)
    exact = _exact_exp(X)

    def bound(x, f):
        return np.full(np.shape(x)[:-1], f.u)

    _, one = measure_batch(
        _toy(_exp_rows, batched=True, bound=bound), "v", X, get_format(fmt), exact
    )
    _, rows = measure_batch(
        _toy(_exp_rows, batched=False, bound=lambda x, f: f.u), "v", X, get_format(fmt), exact
    )
    for key in one:
        if key in ("batch", "_traceback"):
            continue
        a, b = np.asarray(one[key]), np.asarray(rows[key])
        if a.dtype == object:
            assert list(a) == list(b), key
        else:
            assert np.array_equal(a, b, equal_nan=True), key
    assert (one["batch"] == len(X)).all() and (rows["batch"] == 1).all()


def test_iterations_and_convergence_come_back_per_row():
    def kernel(x):
        stalled = x[:, 0] > 0
        return Computed(_exp_rows(x), iterations=np.where(stalled, 50, 3), converged=~stalled)

    X = _batch("float64")
    _, columns = measure_batch(
        _toy(kernel, batched=True), "v", X, get_format("float64"), _exact_exp(X)
    )
    stalled = X[:, 0] > 0
    assert list(columns["iterations"]) == list(np.where(stalled, 50.0, 3.0))
    assert list(columns["outcome"] == "no_convergence") == list(stalled)


# ------------------------------------------------------------------ outcomes over a batch axis

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
special = st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.0])


@settings(max_examples=200, deadline=None)
@given(
    computed=st.lists(st.lists(finite | special, min_size=3, max_size=3), min_size=1, max_size=6),
    exact=st.lists(st.lists(finite | special, min_size=3, max_size=3), min_size=1, max_size=6),
    overflow=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_outcomes_over_the_batch_axis_equal_one_result_at_a_time(computed, exact, overflow):
    rows = min(len(computed), len(exact))
    C = np.array(computed[:rows], dtype=np.float32)
    E = np.array(exact[:rows], dtype=np.float64)
    E = np.where(np.isnan(E), 1.0, E)  # an exact value is never NaN
    flags = [{"overflow"} if o else set() for o in overflow[:rows]]
    batch = result_outcome(C, E, fp_exceptions=flags, axis=-1)
    one = [result_outcome(C[i], E[i], fp_exceptions=flags[i]) for i in range(rows)]
    assert list(batch) == one


@settings(max_examples=60, deadline=None)
@given(raising=st.lists(st.booleans(), min_size=1, max_size=40))
def test_flag_attribution_finds_exactly_the_raising_rows(raising):
    """Whatever rows overflow, each row's fp_exceptions equal those of its own call, and the
    kernel is called at most about twice per row."""
    X = np.where(np.array(raising)[:, None], np.float32(100.0), np.float32(1.0))
    X = np.ascontiguousarray(np.repeat(X, 3, axis=1).astype(np.float32))
    calls = []

    def kernel(x):
        calls.append(len(x))
        return np.exp(x)

    run, _ = measure_batch(_toy(kernel, batched=True), "v", X, get_format("float32"), _exact_exp(X))
    assert [("overflow" in r) for r in run.raised] == raising
    assert len(calls) <= 2 * len(X) + 1


def test_ulp_distances_beyond_2_63_reach_the_table_exactly():
    """A float64 result of the wrong sign is about 2**63 ulps away: the column keeps every bit
    on its way from the measure to the typed table (never through float64)."""
    import pandas as pd

    from precision.core.metrics import ulp_distance
    from precision.run.study import _column_part, _typed_column

    X = _batch("float64", rows=3)
    exact = _exact_exp(X)
    _, columns = measure_batch(
        _toy(lambda x: -_exp_rows(x), batched=True), "v", X, get_format("float64"), exact
    )
    expected = [
        int(ulp_distance(-np.exp(row), exact.rounded_to(np.float64)[i]).max())
        for i, row in enumerate(X)
    ]
    assert min(expected) > 2**63
    column = pd.Series(_typed_column(_column_part(columns["ulps"], 3, "UInt64"), "UInt64"))
    assert column.tolist() == expected
