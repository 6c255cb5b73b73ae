"""Ground truth from double-double enclosures (precision.truth.enclosed): the same rounded
values as the Arb engine in every format, an Exact split within the enclosure's radius of Arb's
midpoint, and the inputs it cannot certify left to Arb."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from truth_inputs import vectorised_inputs

from precision.core.formats import cast
from precision.problems import PROBLEMS
from precision.truth.batch import ground_truths_batch
from precision.truth.enclosed import DD_PREC, accuracy_of, enclosure_for

EVERY = ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"]
FAMILY = ["softmax", "log_softmax", "logsumexp", "cross_entropy"]
SPLIT = {
    "softmax": 2.0**-98,
    "log_softmax": 2.0**-98,
    "logsumexp": 2.0**-79,
    "cross_entropy": 2.0**-79,
}


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2.0**-1000, max_value=0.25))
def test_accuracy_brackets_the_radius_as_arb_describes_it(eps):
    a = int(accuracy_of(eps))
    assert 2.0 ** -(a + 2) < eps < 2.0**-a


def _compare_with_arb(problem, X, fmts, *, split=2.0**-98):
    """The enclosure's batch against Arb's (``shortcut=False``): identical rounded values and
    certification, condition numbers within 2**-19 (both are within 2**-20), Exact values
    within ``split`` relative: 2**-98 for outputs formed elementwise in double-double, 2**-79
    for one formed in Arb after cancellation (log-sum-exp of a ~ -log1p(r)), where both
    certified midpoints are only known within 2**-80 of the exact value."""
    fast = ground_truths_batch(problem, X, fmts, engine="arb")
    slow = ground_truths_batch(problem, X, fmts, engine="arb", shortcut=False)
    assert (fast.defined == slow.defined).all() and (fast.certified == slow.certified).all()
    for name in fast.formats:
        a, b = fast.rounded[name], slow.rounded[name]
        assert ((a == b) | (np.isnan(a) & np.isnan(b))).all(), name
    # Both condition numbers are within COND_ACCURACY (2**-20) of the exact one; exp's is |x|,
    # exact in both.
    assert (np.abs(fast.cond - slow.cond) <= 2.0**-19 * np.abs(slow.cond))[fast.defined].all()
    # Both splits are (hi + lo) 2**exp with hi in [1/2, 1]: the same exp (a value within
    # ``split`` of a power of two could differ, none here), hi + lo within ``split``.
    defined = fast.defined[:, None] & np.ones_like(fast.hi, dtype=bool)
    assert (fast.exp == slow.exp)[defined].all()
    gap = np.abs(fast.hi - slow.hi) + np.abs(fast.lo - slow.lo)
    assert (gap <= split * np.abs(slow.hi))[defined].all()
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


def _study_inputs(problem, n: int, count: int, seed: int) -> np.ndarray:
    """``count`` inputs of n logits from the problem's own generator, over the magnitudes and
    condition numbers of the softmax study (1e-2 ... 1e4, kappa 1 ... 1e8)."""
    rng = np.random.default_rng(seed)
    rows = [
        problem.propose(rng, n=n, magnitude=10.0**mag, cond=10.0**c, size=1)[0]
        for mag, c in zip(rng.integers(-2, 5, count), rng.integers(0, 9, count), strict=True)
    ]
    return np.stack(rows)


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("n", [2, 10, 300])
def test_softmax_family_enclosure_agrees_with_arb(name, n):
    """The family's double-double path against Arb's: the same rounded values in every
    format, certified alike, splits within 2**-98; nearly every input settled in
    double-double."""
    problem = PROBLEMS[name]
    x = _study_inputs(problem, n, 24, seed=n)
    settled = []
    for fmt in EVERY:
        with np.errstate(over="ignore"):
            X = cast(x, fmt)
        finite = np.isfinite(X.astype(np.float64)).reshape(len(X), -1).all(axis=1)
        fast = _compare_with_arb(problem, X[finite], [fmt], split=SPLIT[name])
        settled.append((fast.prec == DD_PREC).mean())
    assert np.mean(settled) > 0.9


@pytest.mark.parametrize("name", FAMILY)
def test_softmax_family_enclosure_on_extreme_logits(name):
    """Components below float64's subnormals, huge logits, exact ties, cancellation: the
    enclosure certifies what it can (the rest takes Arb), with Arb's rounded values."""
    problem = PROBLEMS[name]
    every = ["float16", "bfloat16", "float32", "float64"]
    for fmt in ["float32", "float64"]:
        for x in vectorised_inputs(name):
            X = cast(x, fmt)[None]
            if np.isfinite(X.astype(np.float64)).all():
                _compare_with_arb(problem, X, every, split=SPLIT[name])
