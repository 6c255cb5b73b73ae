"""Tests for the softmax family's condition numbers bounded in float64 intervals (issue 14).

Where the number system encloses (Arb), `precision.problems.logits` bounds the condition numbers
of softmax, log-sum-exp, log_softmax and cross-entropy in numpy from float64 bounds of the balls
e_i = exp(x_i - max x), s and r, instead of some ten ball operations per logit, and returns a
ball around the interval. What must hold:

* every float64 step is a rigorous bound: `up`, `down`, `signed_up`, `signed_down` and
  `sum_bounds` against exact rational arithmetic, subnormal range included; the float bounds of
  balls (`ARB.float_bounds`, `ARB.bound`, `ARB.radius`) contain the balls;
* the condition number's ball contains the value of the formula evaluated in mpmath at 1000
  bits, on proposals and on adversarial rows (ties, one dominant logit, huge tails whose terms
  underflow float64, subnormal outputs, soft targets), and the float64 path is the one taken;
* the outputs are the same balls, midpoint and radius, as those of the formulas in balls (the
  path every input took before), and the two condition-number balls overlap;
* the shifted logits formed from float64 differences are the balls the subtraction gives.
"""

from __future__ import annotations

from fractions import Fraction

import flint
import mpmath
import numpy as np
import pytest

from precision.core.formats import cast
from precision.core.numbers import ARB, MPMATH, gradual_underflow
from precision.problems import PROBLEMS, logits
from precision.truth.exact import to_mpf_array

FAMILY = ["softmax", "logsumexp", "log_softmax", "cross_entropy"]
HIGH = 1000  # bits of the mpmath evaluations


pytestmark = pytest.mark.usefixtures("global_precision_unchanged")


def _exact(v) -> Fraction:
    return Fraction(float(v))


def _floats(rng, size, *, signed=False) -> np.ndarray:
    """Floats spread over float64's whole range, subnormals, zeros and powers of two included."""
    values = rng.uniform(1, 2, size) * 2.0 ** rng.integers(-1074, 1000, size).astype(float)
    values[::7] = 2.0 ** rng.integers(-1074, -1000, len(values[::7])).astype(float)
    values[::11] = 0.0
    values[::13] = 2.0 ** rng.integers(-60, 60, len(values[::13])).astype(float)
    if signed:
        values *= rng.choice([-1.0, 1.0], size)
    return values


# ---------------------------------------------------------------- float64 steps


@pytest.mark.parametrize("op", ["mul", "div", "add"])
def test_up_and_down_bound_one_rounding_of_nonnegative_values(op):
    rng = np.random.default_rng(1)
    a, b = _floats(rng, 4000), _floats(rng, 4000)
    if op == "div":
        b[b == 0] = 1.0
    with np.errstate(all="ignore"):
        v = {"mul": a * b, "div": a / b, "add": a + b}[op]
        lo, hi = logits.down(v), logits.up(v)
    for ai, bi, vi, li, hi_ in zip(a, b, v, lo, hi, strict=True):
        if not np.isfinite(vi):
            continue
        x, y = Fraction(ai), Fraction(bi)
        exact = {"mul": x * y, "div": x / y if y else 0, "add": x + y}[op]
        assert Fraction(li) <= exact <= Fraction(hi_), (op, ai, bi)
        assert li >= 0


def test_signed_steps_bound_one_rounding_of_a_difference():
    rng = np.random.default_rng(2)
    a, b = _floats(rng, 4000, signed=True), _floats(rng, 4000, signed=True)
    with np.errstate(all="ignore"):
        v = a - b
        lo, hi = logits.signed_down(v), logits.signed_up(v)
        products = a * b
        plo, phi = logits.signed_down(products), logits.signed_up(products)
    for ai, bi, li, hi_, pl, ph, vi, pi in zip(a, b, lo, hi, plo, phi, v, products, strict=True):
        if np.isfinite(vi):
            assert Fraction(li) <= Fraction(ai) - Fraction(bi) <= Fraction(hi_)
        if np.isfinite(pi):
            assert Fraction(pl) <= Fraction(ai) * Fraction(bi) <= Fraction(ph)


def test_down_of_a_difference_that_is_negative_is_zero():
    """Bounds of 1 - 2 g_j reach below 0 when g_j ~ 1/2: the clamp keeps a bound of a
    quantity known to be >= 0."""
    assert logits.down(np.float64(1.0) - 2.0 * 0.5000001) == 0.0


@pytest.mark.parametrize("n", [1, 2, 17, 1000])
def test_sum_bounds_contain_the_exact_sum(n):
    rng = np.random.default_rng(n)
    for trial in range(20):
        values = _floats(rng, n) if trial % 2 else rng.uniform(0, 1, n) * 2.0**-1060
        lo, hi = logits.sum_bounds(values, values)
        exact = sum(map(Fraction, values.tolist()), Fraction(0))
        assert Fraction(float(lo)) <= exact <= Fraction(float(hi))


def test_float64_keeps_subnormals_here():
    """The float64 bounds need gradual underflow (`numbers.gradual_underflow`); flush-to-zero
    would send every condition number to the ball formulas."""
    assert gradual_underflow()


def test_magnitude_bounds():
    assert logits.magnitude_bounds(1.0, 2.0) == (1.0, 2.0)
    assert logits.magnitude_bounds(-2.0, -1.0) == (1.0, 2.0)
    assert logits.magnitude_bounds(-1.0, 2.0) is None
    assert logits.magnitude_bounds(0.0, 2.0) is None


# ---------------------------------------------------------------- float bounds of balls


def _random_balls(rng, count, *, relative=True):
    balls = []
    with ARB.workprec(113):
        for _ in range(count):
            mid = (
                flint.arb(float(rng.uniform(-1, 1)))
                / 3
                * flint.arb(2) ** int(rng.integers(-1100, 1000))
            )
            if relative:
                rad = abs(mid) * flint.arb(2) ** int(-rng.integers(42, 120))
            else:
                rad = flint.arb(2) ** int(-rng.integers(1000, 1200))
            balls.append(mid + flint.arb(0, rad.upper()))
    return balls


def _contained(lo, hi, ball) -> bool:
    return bool(flint.arb(float(lo)) <= ball.lower() and ball.upper() <= flint.arb(float(hi)))


@pytest.mark.parametrize("relative", [True, False])
def test_float_bounds_contain_the_balls(relative):
    rng = np.random.default_rng(3)
    balls = _random_balls(rng, 500, relative=relative)
    balls += [flint.arb(0), flint.arb(2.0**-1074), flint.arb(-(2.0**-1074)), flint.arb(1) / 3]
    if relative:
        bounds = ARB.float_bounds(balls)
    else:
        with ARB.workprec(113):
            radius = ARB.radius(sum((flint.arb(0, b.rad()) for b in balls), flint.arb(0)))
        bounds = ARB.float_bounds(balls, radius=radius)
    assert bounds is not None
    for lo, hi, ball in zip(*bounds, balls, strict=True):
        assert _contained(lo, hi, ball)


def test_float_bounds_refuse_wide_or_infinite_balls():
    assert ARB.float_bounds([flint.arb(1, 2.0**-20)]) is None
    assert ARB.float_bounds([flint.arb("inf")]) is None
    assert ARB.float_bounds([flint.arb(2) ** 2000]) is None  # beyond float64
    assert MPMATH.float_bounds([mpmath.mpf(1)]) is None


def test_bound_and_radius_contain_the_ball():
    rng = np.random.default_rng(4)
    for ball in _random_balls(rng, 300):
        bounds = ARB.bound(ball)
        if bounds is None:  # beyond float64
            assert abs(ball.mid()) > 2**1000
            continue
        assert _contained(*bounds, ball)
        assert flint.arb(ARB.radius(ball)) >= ball.rad()
    assert ARB.bound(flint.arb("nan")) is None and ARB.radius(flint.arb("inf")) is None
    assert MPMATH.bound(mpmath.mpf(1)) is None


# ---------------------------------------------------------------- shifted logits


@pytest.mark.parametrize("prec", [53, 113])
def test_shifted_logits_are_the_balls_of_the_subtraction(prec):
    """Float64 differences where exact (TwoSum), the subtraction elsewhere: the same balls."""
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = 64
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-30, 30, n)
        if trial % 3 == 0:
            x = cast(x, "float32").astype(np.float64)
        m = int(np.argmax(x))
        with ARB.workprec(prec):
            a = ARB.exact(x[m])
            z = logits.shifted_exactly(x, m, a, ARB)
            expected = [ARB.exact(v) - a for v in x]
        for zi, ei in zip(z, expected, strict=True):
            assert zi.mid() == ei.mid() and zi.rad() == ei.rad()


# ---------------------------------------------------------------- condition numbers


def _adversarial(n: int, rng) -> list[np.ndarray]:
    """Rows that stress the bounds (in float64; cast by the caller)."""
    rows = []
    x = rng.standard_normal(n)
    x[n // 2] = x.max()
    rows.append(x)  # a tie at the maximum
    rows.append(np.round(rng.standard_normal(n) * 2))  # many ties
    x = rng.standard_normal(n)
    x[0] = 500.0
    rows.append(x)  # one dominant logit: 1 - g_m ~ e**-500
    x = -np.abs(rng.standard_normal(n)) * 2e4
    x[1] = 3.0
    rows.append(x)  # terms that underflow float64 by thousands of decades
    x = -np.abs(rng.standard_normal(n)) * 800
    x[0] = 0.5
    rows.append(x)  # subnormal float64 outputs
    x = np.linspace(-1, 1, n) + 1e4
    rows.append(x)  # large offset, small spread
    x = rng.standard_normal(n) * 1e-3
    x[2] = 1e3
    x[3] = 1e3
    rows.append(x)  # two dominant, tied
    rows.append(np.full(n, 7.25))  # all equal
    rows.append(rng.standard_normal(n) * 1e30)  # huge logits
    x = rng.standard_normal(n) * 10.0 ** rng.uniform(-20, 20, n)
    rows.append(x)  # float64 differences that are not exact
    return rows


def _cases(name: str, rng):
    """(input, format) pairs: proposals over the grid's magnitudes and targets, and adversarial
    rows (cross-entropy: with one-hot, soft and uniform targets)."""
    problem = PROBLEMS[name]
    cases = []
    for n in (16, 100):
        for magnitude in (1e-2, 1.0, 30.0, 1e3, 1e4):
            for cond in (1.0, 1e6, 1e12):
                for x in problem.propose(rng, n=n, magnitude=magnitude, cond=cond, size=1):
                    cases += [(x, "float32"), (x, "float64")]
        for x in _adversarial(n, rng):
            if name == "cross_entropy":
                for kind in ("argmax", "other", "soft", "uniform"):
                    t = np.zeros(n)
                    if kind == "argmax":
                        t[np.argmax(x)] = 1.0
                    elif kind == "other":
                        t[(np.argmax(x) + 1) % n] = 1.0
                    elif kind == "soft":
                        t[np.argmax(x)] = 0.75
                        t[rng.integers(n)] += 0.25
                    else:
                        t[:] = 1.0 / n
                    cases += [(np.stack([x, t]), "float64"), (np.stack([x, t]), "bfloat16")]
            else:
                cases += [(x, "float64"), (x, "bfloat16")]
    for magnitude in (1.0, 1e3):  # n = 1000, as the studies use
        for x in problem.propose(rng, n=1000, magnitude=magnitude, cond=1e6, size=1):
            cases.append((x, "float32"))
    return [(c, f) for x, f in cases if np.isfinite((c := cast(x, f)).astype(np.float64)).all()]


def _endpoints(ball) -> tuple[mpmath.mpf, mpmath.mpf]:
    """The exact endpoints of a finite ball as mpf (at the caller's working precision)."""
    return tuple(
        mpmath.mpf(tuple(int(part) for part in end.mid().man_exp()))
        for end in (ball.lower(), ball.upper())
    )


@pytest.fixture
def fast_balls(monkeypatch):
    """Counts the condition numbers the float64 bounds returned."""
    taken = []
    original = logits.Enclosure.ball

    def ball(self, lo, hi):
        result = original(self, lo, hi)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(logits.Enclosure, "ball", ball)
    return taken


@pytest.mark.parametrize("name", FAMILY)
def test_condition_ball_contains_the_1000_bit_value(name, fast_balls):
    """The float64-bounded condition number contains the formula's value at 1000 bits (the
    mpmath reference, whose formulas do not cancel), on every case; and it is the float64
    path that produced it on nearly all (the rest: condition numbers beyond float64's range)."""
    problem = PROBLEMS[name]
    cases = _cases(name, np.random.default_rng(6))
    checked = 0
    for x, _ in cases:
        with ARB.workprec(113):
            _, cond = problem.reference(x, ARB)
        if not cond.is_finite():  # an output ball containing 0: inf, never certified
            continue
        with mpmath.workprec(HIGH):
            _, truth = problem.reference(to_mpf_array(x), MPMATH)
            lower, upper = _endpoints(cond)
            assert lower <= truth <= upper, (name, x, cond, truth)
        checked += 1
    assert checked >= 0.9 * len(cases)
    assert sum(fast_balls) >= 0.8 * len(cases), (sum(fast_balls), len(cases))


@pytest.mark.parametrize("name", FAMILY)
def test_outputs_are_the_balls_of_the_ball_formulas(name, monkeypatch):
    """With ENCLOSED_MIN above n every step is formed in balls, as before issue 14: the outputs
    must be the same balls (midpoint and radius), and the two condition numbers overlap."""
    problem = PROBLEMS[name]
    cases = _cases(name, np.random.default_rng(7))[::3]
    with ARB.workprec(113):
        fast = [problem.reference(x, ARB) for x, _ in cases]
        monkeypatch.setattr(logits, "ENCLOSED_MIN", 1 << 30)
        slow = [problem.reference(x, ARB) for x, _ in cases]
    for (y0, c0), (y1, c1) in zip(fast, slow, strict=True):
        assert len(y0) == len(y1)
        for a, b in zip(y0, y1, strict=True):
            assert a.mid() == b.mid() and a.rad() == b.rad()
        assert c0.overlaps(c1) or not (c0.is_finite() and c1.is_finite())


def test_enclosure_needs_a_system_that_encloses_and_enough_finite_logits():
    x = np.linspace(-3, 3, 40)
    with mpmath.workprec(113):
        assert logits.exp_terms(x, MPMATH).floats is None
    with ARB.workprec(113):
        assert logits.exp_terms(x[:8], ARB).floats is None
        y = x.copy()
        y[3] = np.inf
        assert logits.exp_terms(y, ARB).floats is None
        terms = logits.exp_terms(x, ARB)
        assert logits.enclose(terms, ARB) is not None


# ---------------------------------------------------------------- repeated logits


def _repeated_values(rng, n: int) -> np.ndarray:
    """n values with repeats: bfloat16 roundings of Gaussians, zeros of both signs, ties."""
    x = cast(rng.standard_normal(n) * 4, "bfloat16").astype(np.float64)
    x[::9] = 0.0
    x[::13] = -0.0
    return x


def test_find_repeats_indexes_every_value_by_its_bits():
    """``values[first][inverse]`` is ``values`` bit for bit, the values at ``first`` are
    distinct bit patterns (so -0.0 and 0.0 stay apart), and all-distinct arrays give None."""
    rng = np.random.default_rng(11)
    for n in (2, 3, 17, 1000):
        x = _repeated_values(rng, n)
        bits = x.view(np.int64)
        repeats = logits.find_repeats(x)
        if np.unique(bits).size == n:
            assert repeats is None and not logits.has_repeats(x)
            continue
        assert logits.has_repeats(x)
        assert np.unique(bits[repeats.first]).size == repeats.first.size
        assert (bits[repeats.first][repeats.inverse] == bits).all()
        assert repeats.expand(x[repeats.first].tolist()) == x.tolist()
    distinct = np.arange(50.0)
    distinct[0] = -0.0  # distinct bits from 0.0, which is absent
    assert logits.find_repeats(distinct) is None
    both_zeros = np.array([0.0, -0.0, 1.0])
    assert logits.find_repeats(both_zeros) is None


@pytest.mark.parametrize("name", FAMILY)
def test_repeated_logits_share_the_balls_of_the_distinct_path(name, monkeypatch):
    """Outputs and conditions evaluated once per distinct logit (`logits.find_repeats`) are the
    balls that evaluating every logit gives (midpoint and radius, condition number included),
    and a repeated logit's elementwise outputs are one ball."""
    rng = np.random.default_rng(12)
    cases = []
    for n in (16, 100, 1000):
        x = _repeated_values(rng, n)
        if name == "cross_entropy":
            t = np.zeros(n)
            t[int(np.argmax(x))] = 1.0
            x = np.stack([x, t])
        cases.append(x)
    with ARB.workprec(113):
        shared = [PROBLEMS[name].reference(x, ARB) for x in cases]
        monkeypatch.setattr(logits, "find_repeats", lambda values: None)
        each = [PROBLEMS[name].reference(x, ARB) for x in cases]
    for x, (y0, c0), (y1, c1) in zip(cases, shared, each, strict=True):
        assert len(y0) == len(y1)
        for a, b in zip(y0, y1, strict=True):
            assert a.mid() == b.mid() and a.rad() == b.rad()
        assert c0.mid() == c1.mid() and c0.rad() == c1.rad()
        if len(y0) == len(x):  # elementwise outputs: one object per distinct logit
            assert len({id(v) for v in y0}) == np.unique(x.view(np.int64)).size
