"""Ground truth from double-double enclosures (precision.truth.enclosed): the same rounded
values as the Arb engine in every format, an Exact split within the enclosure's radius of Arb's
midpoint, and the inputs it cannot certify left to Arb."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precision.core.formats import cast
from precision.problems import PROBLEMS
from precision.truth.batch import ground_truths_batch
from precision.truth.enclosed import DD_PREC, accuracy_of, enclosure_for

EVERY = ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"]


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2.0**-1000, max_value=0.25))
def test_accuracy_brackets_the_radius_as_arb_describes_it(eps):
    a = int(accuracy_of(eps))
    assert 2.0 ** -(a + 2) < eps < 2.0**-a


def _compare_with_arb(problem, X, fmts):
    """The enclosure's batch against Arb's (``shortcut=False``): identical rounded values,
    condition numbers and certification; Exact values within 2**-98 relative."""
    fast = ground_truths_batch(problem, X, fmts, engine="arb")
    slow = ground_truths_batch(problem, X, fmts, engine="arb", shortcut=False)
    assert (fast.defined == slow.defined).all() and (fast.certified == slow.certified).all()
    for name in fast.formats:
        a, b = fast.rounded[name], slow.rounded[name]
        assert ((a == b) | (np.isnan(a) & np.isnan(b))).all(), name
    assert (fast.cond == slow.cond).all()
    # Both splits are (hi + lo) 2**exp with hi in [1/2, 1]: the same exp (a value within
    # 2**-98 of a power of two could differ, none here), hi + lo within 2**-98 relative.
    defined = fast.defined[:, None] & np.ones_like(fast.hi, dtype=bool)
    assert (fast.exp == slow.exp)[defined].all()
    gap = np.abs(fast.hi - slow.hi) + np.abs(fast.lo - slow.lo)
    assert (gap <= 2.0**-98 * np.abs(slow.hi))[defined].all()
    return fast


def test_exp_enclosure_agrees_with_arb_in_every_format():
    rng = np.random.default_rng(77)
    x = np.concatenate(
        [rng.uniform(-30, 30, 400), rng.standard_normal(200) * 10.0 ** rng.uniform(-6, 5, 200)]
    )
    exp = PROBLEMS["exp"]
    for fmt in EVERY:
        with np.errstate(over="ignore"):
            X = cast(x[:, None], fmt)
        finite = np.isfinite(X.astype(np.float64)).ravel()
        fast = _compare_with_arb(exp, X[finite], [fmt])
        assert (fast.prec == DD_PREC).mean() > 0.99


def test_an_input_beyond_the_domain_takes_arb():
    X = np.array([[1e6], [1.0], [np.inf]])
    found = ground_truths_batch(PROBLEMS["exp"], X, ["float64"], engine="arb")
    assert found.prec.tolist()[:2] == [113, DD_PREC] and found.certified[:2].all()


def test_a_problem_with_parameters_or_another_reference_has_no_enclosure():
    exp = PROBLEMS["exp"]
    assert enclosure_for(exp) is not None
    assert enclosure_for(PROBLEMS["linear_system"]) is None


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_an_exact_value_is_certified(fmt):
    X = cast(np.array([[0.0], [-0.0]]), fmt)
    found = ground_truths_batch(PROBLEMS["exp"], X, [fmt], engine="arb")
    assert (found.rounded[fmt] == 1.0).all() and (found.prec == DD_PREC).all()
