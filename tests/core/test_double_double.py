"""Double-double arithmetic (precision.core.double_double): the error-free transformations are
exact and every operation stays within its proved bound, checked in exact rational arithmetic;
exp_scaled stays within EXP_ERROR of Arb's enclosure of exp, on random and adversarial inputs."""

from __future__ import annotations

import math
from fractions import Fraction

import flint
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precision.core import double_double as dd

U = Fraction(1, 2**53)

# Finite floats whose products and sums stay in the range the module's bounds are proved for.
moderate = st.floats(min_value=-(2.0**500), max_value=2.0**500, allow_nan=False).filter(
    lambda v: v == 0 or abs(v) > 2.0**-400
)


@st.composite
def double_doubles(draw):
    """A normalised double-double (hi = RN(hi + lo)) of moderate range."""
    hi = draw(moderate)
    lo = draw(st.floats(min_value=-1.0, max_value=1.0)) * math.ulp(hi) / 2
    s, e = dd.two_sum(np.float64(hi), np.float64(lo))
    return float(s), float(e)


def _value(pair) -> Fraction:
    return Fraction(pair[0]) + Fraction(pair[1])


def _relative(approx: Fraction, exact: Fraction) -> Fraction:
    return abs(approx - exact) / abs(exact) if exact else abs(approx)


@settings(max_examples=400, deadline=None)
@given(moderate, moderate)
def test_two_sum_is_exact_and_rounds_to_nearest(a, b):
    s, e = dd.two_sum(np.float64(a), np.float64(b))
    assert Fraction(float(s)) + Fraction(float(e)) == Fraction(a) + Fraction(b)
    assert float(s) == a + b


@settings(max_examples=400, deadline=None)
@given(moderate, moderate)
def test_fast_two_sum_is_exact_when_the_first_is_larger(a, b):
    a, b = (a, b) if abs(a) >= abs(b) else (b, a)
    s, e = dd.fast_two_sum(np.float64(a), np.float64(b))
    assert Fraction(float(s)) + Fraction(float(e)) == Fraction(a) + Fraction(b)


@settings(max_examples=400, deadline=None)
@given(
    st.floats(min_value=-(2.0**400), max_value=2.0**400).filter(lambda v: abs(v) > 2.0**-250),
    st.floats(min_value=-(2.0**400), max_value=2.0**400).filter(lambda v: abs(v) > 2.0**-250),
)
def test_two_prod_is_exact(a, b):
    p, e = dd.two_prod(np.float64(a), np.float64(b))
    assert Fraction(float(p)) + Fraction(float(e)) == Fraction(a) * Fraction(b)
    assert float(p) == a * b


# The bounds of Joldes, Muller and Popescu (2017), as the module docstring states them.
BOUNDS = {
    "add": 3 * U**2 + 13 * U**3,
    "add_float": 2 * U**2,
    "mul_float": Fraction(3, 2) * U**2 + 4 * U**3,
    "mul": 7 * U**2,
}


@settings(max_examples=500, deadline=None)
@given(double_doubles(), double_doubles())
def test_double_double_operations_stay_within_their_bounds(x, y):
    xs, ys = (np.float64(v) for v in x), (np.float64(v) for v in y)
    x_hi, x_lo = xs
    y_hi, y_lo = ys
    results = {
        "add": (dd.add(x_hi, x_lo, y_hi, y_lo), _value(x) + _value(y)),
        "add_float": (dd.add_float(x_hi, x_lo, y_hi), _value(x) + Fraction(y[0])),
        "mul_float": (dd.mul_float(x_hi, x_lo, y_hi), _value(x) * Fraction(y[0])),
        "mul": (dd.mul(x_hi, x_lo, y_hi, y_lo), _value(x) * _value(y)),
    }
    for name, (pair, exact) in results.items():
        got = (float(pair[0]), float(pair[1]))
        assert _relative(_value(got), exact) <= BOUNDS[name], name
        assert BOUNDS[name] <= Fraction(dd.ERROR)


def _exp_error(x_hi: np.ndarray, x_lo: np.ndarray) -> float:
    """The largest relative distance of exp_scaled from exp (an Arb upper bound at 300 bits)."""
    k, hi, lo = dd.exp_scaled(x_hi, x_lo)
    worst = 0.0
    saved = flint.ctx.prec
    flint.ctx.prec = 300
    try:
        rows = zip(x_hi.tolist(), x_lo.tolist(), k.tolist(), hi.tolist(), lo.tolist(), strict=True)
        for xh, xl, ki, h, low in rows:
            exact = (flint.arb(xh) + flint.arb(xl)).exp()
            approx = (flint.arb(h) + flint.arb(low)) * flint.arb(2) ** ki
            worst = max(worst, float(abs(approx / exact - 1).upper()))
    finally:
        flint.ctx.prec = saved
    return worst


def _adversarial_exp_arguments() -> np.ndarray:
    """Arguments at the seams of the reduction: multiples of ln 2 (k changes, r ~ +-ln 2 / 2),
    table steps (j changes), the domain's edges, zeros and the smallest floats."""
    ln2 = math.log(2.0)
    k = np.arange(-40, 41, dtype=np.float64)
    seams = np.concatenate([(k + 0.5) * ln2, k * ln2, (k + 0.5) * ln2 + 1e-12])
    steps = (np.arange(-1420, 1421, 7) + 0.5) / 4096
    edges = np.array([dd.EXP_DOMAIN, -dd.EXP_DOMAIN, 0.0, -0.0, 5e-324, -5e-324, 2.0**-1022])
    values = np.concatenate([seams, steps, edges])
    return np.concatenate([values, np.nextafter(values, np.inf), np.nextafter(values, -np.inf)])


def test_exp_scaled_is_within_its_bound_on_random_and_adversarial_arguments():
    rng = np.random.default_rng(20261206)
    x = np.concatenate(
        [
            rng.uniform(-1, 1, 3000),
            rng.uniform(-750, 750, 3000),
            rng.standard_normal(2000) * 10.0 ** rng.uniform(-8, 5, 2000),
            _adversarial_exp_arguments(),
        ]
    )
    x = np.clip(x, -dd.EXP_DOMAIN, dd.EXP_DOMAIN)
    worst = _exp_error(x, np.zeros_like(x))
    assert worst <= dd.EXP_ERROR
    # Double-double arguments: exact differences x - y of logits (the softmax family's shift).
    a, b = rng.uniform(-300, 0, 3000), rng.uniform(-300, 0, 3000) * (1 + 1e-7)
    d_hi, d_lo = dd.two_sum(a, -b)
    assert (d_lo != 0).any()
    assert _exp_error(d_hi, d_lo) <= dd.EXP_ERROR


def test_exp_scaled_results_are_normalised_and_in_range():
    x = np.random.default_rng(3).uniform(-dd.EXP_DOMAIN, dd.EXP_DOMAIN, 10000)
    k, hi, lo = dd.exp_scaled(x, np.zeros_like(x))
    assert k.dtype == np.int64
    assert ((hi >= 0.70) & (hi <= 1.43)).all()
    assert (hi + lo == hi).all()  # hi = RN(hi + lo)


@pytest.mark.parametrize("bad", [np.inf, np.nan, dd.EXP_DOMAIN * 2])
def test_exp_scaled_refuses_arguments_beyond_its_domain(bad):
    with pytest.raises(ValueError, match="EXP_DOMAIN"):
        dd.exp_scaled(np.array([0.0, bad]), np.zeros(2))
