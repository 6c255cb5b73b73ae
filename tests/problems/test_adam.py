"""Adam's update (precision.problems.adam): the reference against an independent mpmath
evaluation, the kernels against the formula rounded step by step, rows independent, the bounds
on the problem's own inputs, and the facts issue 17 states, each measured here: eps = 1e-8
rounds to 0 in float16, so a zero gradient with a zero state gives 0/0; (1 - b2) g^2 underflows
below a threshold of |g| found by scanning every value of float16 and bfloat16.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from precision.core.formats import cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.problems.adam import (
    ADAM,
    BETA1,
    BETA2,
    C1,
    C2,
    EPS,
    LR,
    adam_reference,
    constant,
    eps_in,
    eps_rounding,
    estimate_adam,
    exact_eps,
    float32_state_adam,
    in_format_adam,
    second_moment_underflow_threshold,
)
from precision.truth.exact import ground_truth

FORMATS = ["float16", "bfloat16", "float32", "float64"]
LOW = ["float16", "bfloat16"]
DEFAULT_EPS = float(EPS)
ADAM_DEFAULT = ADAM.with_params(eps=DEFAULT_EPS)
"""The problem with PyTorch's eps = 1e-8, whose exact result the default members measure."""
MEMBERS = [member for variant in ADAM.variants.values() for member in variant.expand()]


def _inputs(fmt: str, *, n=8, cond=1.0, magnitude=1.0, size=4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cast(ADAM.propose(rng, n=n, magnitude=magnitude, cond=cond, size=size), fmt)


# ------------------------------------------------------------------------- reference


def _mpmath_update(x, eps: str = "1e-8") -> tuple[list, mpmath.mpf]:
    """The update and kappa written directly from Kingma and Ba's algorithm 1 at 300 bits,
    with the condition number from its definition: for each component the sum over inputs
    of |d u_i / d x_j| |x_j| (derivatives by mpmath.diff), then the inf-norm ratio."""

    def update(g, m, v):
        b1, b2 = mpmath.mpf(9) / 10, mpmath.mpf(999) / 1000
        lr = mpmath.mpf(1) / 1000
        mhat = (b1 * m + (1 - b1) * g) / (1 - b1**10)
        vhat = (b2 * v + (1 - b2) * g**2) / (1 - b2**10)
        return lr * mhat / (mpmath.sqrt(vhat) + mpmath.mpf(eps))

    with mpmath.workprec(300):
        rows = [[mpmath.mpf(float(a)) for a in r] for r in np.asarray(x, dtype=np.float64)]
        out, scaled = [], []
        for g, m, v in zip(*rows, strict=True):
            out.append(update(g, m, v))
            partial = _scaled_partials(update, (g, m, v))
            scaled.append(mpmath.fsum(partial))
        return out, max(scaled) / max(abs(u) for u in out)


def _scaled_partials(f, point) -> list:
    """|d f / d x_j| |x_j| for each argument j of f at ``point`` (mpmath.diff)."""
    partials = []
    for j, xj in enumerate(point):

        def along(t, j=j):
            return f(*point[:j], t, *point[j + 1 :])

        partials.append(abs(mpmath.diff(along, xj)) * abs(xj))
    return partials


@pytest.mark.parametrize("eps", ["1e-8", "1e-5", "0.001"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_reference_is_adams_update_and_its_condition_number(fmt, eps):
    """The certified truth is the update of the rounded input with the decimal eps, correctly
    rounded; kappa agrees with the derivative-based definition to the truth engine's accuracy
    (2^-20)."""
    problem = ADAM.with_params(eps=float(eps))
    for cond in (1.0, 30.0, 1e4):
        for x in _inputs(fmt, n=5, cond=cond, size=2, seed=int(cond)):
            expected, kappa = _mpmath_update(x, eps)
            truth = ground_truth(problem, x, fmt, engine="arb")
            assert truth.certified
            for got, want in zip(truth.exact.rounded, expected, strict=True):
                assert got == cast(np.array([float(want)]), fmt)[0]
            assert truth.cond == pytest.approx(float(kappa), rel=2.0**-18)


def test_mpmath_and_arb_references_agree():
    for x in _inputs("bfloat16", n=6, cond=100.0, size=3, seed=5):
        a = ground_truth(ADAM_DEFAULT, x, "bfloat16", engine="mpmath")
        b = ground_truth(ADAM_DEFAULT, x, "bfloat16", engine="arb")
        assert a.certified and b.certified
        assert a.exact.rounded.tobytes() == b.exact.rounded.tobytes()
        assert a.cond == pytest.approx(b.cond, rel=2.0**-20)


def test_zero_moment_gives_zero_update_and_infinite_condition():
    x = np.array([[9.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # 9 m + g = 0
    y, cond = adam_reference(x, eps=DEFAULT_EPS)
    assert all(v == 0 for v in y) and cond == math.inf


def test_negative_second_moment_is_refused():
    with pytest.raises(ValueError, match="v"):
        ADAM.check_input(np.array([[1.0], [0.0], [-1.0]]))


def test_float64_estimate_matches_certified_condition():
    X = _inputs("float64", n=6, cond=50.0, size=4, seed=3)
    estimated, _ = estimate_adam(X)
    for x, est in zip(X, estimated, strict=True):
        assert est == pytest.approx(ground_truth(ADAM_DEFAULT, x, "float64").cond, rel=1e-9)


@pytest.mark.parametrize("cond", [1.0, 10.0, 1e3, 1e5])
def test_proposals_reach_their_condition_decade(cond):
    """The propose construction aims at kappa within a factor 3 (float64, before rounding);
    the sampler keeps the nearest candidates."""
    estimated, magnitude = estimate_adam(_inputs("float64", n=16, cond=cond, size=50, seed=1))
    assert np.median(np.abs(np.log10(estimated / cond))) < math.log10(3)
    assert np.all((magnitude >= 0.5) & (magnitude <= 2.0))


# ------------------------------------------------------------------------- kernels


def _stepwise(x: np.ndarray) -> np.ndarray:
    """The kernel's formula with every operation done in float64 and then rounded to the
    format by `cast` (exact products of p <= 24-bit operands; a quotient or root rounded
    first to 53 bits rounds correctly to p bits since 53 >= 2 p + 2)."""
    fmt = get_format(x.dtype)

    def r(v):
        return cast(np.asarray(v, dtype=np.float64), fmt).astype(np.float64)

    def k(name):
        return float(eps_in(DEFAULT_EPS, fmt) if name == "eps" else constant(name, fmt))

    g, m, v = (np.asarray(row, dtype=np.float64) for row in x)
    with np.errstate(all="ignore"):
        moment = r(r(k("beta1") * m) + r(k("one_minus_beta1") * g))
        second = r(r(k("beta2") * v) + r(k("one_minus_beta2") * r(g * g)))
        denom = r(r(r(np.sqrt(second)) / k("sqrt_c2")) + k("eps"))
        return r(k("step_size") * r(moment / denom))


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32"])
def test_in_format_is_the_formula_rounded_after_every_operation(fmt):
    X = np.concatenate(
        [
            _inputs(fmt, cond=c, magnitude=mag, seed=i)
            for i, (c, mag) in enumerate([(1.0, 1.0), (1e3, 1e-2), (10.0, 1e-5), (1.0, 50.0)])
        ]
    )
    Y = in_format_adam(X, eps=DEFAULT_EPS).astype(np.float64)
    for x, y in zip(X, Y, strict=True):
        np.testing.assert_array_equal(y, _stepwise(x))


@pytest.mark.parametrize("fmt", LOW)
def test_float32_state_is_the_float32_update_rounded_once(fmt):
    X = _inputs(fmt, cond=100.0, seed=2, size=6)
    wide = in_format_adam(X.astype(np.float32), eps=DEFAULT_EPS)
    np.testing.assert_array_equal(
        float32_state_adam(X, eps=DEFAULT_EPS), cast(wide.astype(np.float64), fmt)
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_rows_are_independent_and_bounds_per_row(fmt):
    X = _inputs(fmt, n=9, cond=100.0, magnitude=0.3, size=5, seed=4)
    f = get_format(fmt)
    for variant in MEMBERS:
        Y, bounds = variant.kernel(X), variant.bound(X, f)
        assert Y.shape == (5, 9) and bounds.shape == (5,)
        for i, x in enumerate(X):
            assert variant.kernel(X[i : i + 1])[0].tobytes() == Y[i].tobytes()
            assert variant.kernel(x).tobytes() == Y[i].tobytes()
            one = variant.bound(x, f)
            assert isinstance(one, float)
            assert one == bounds[i] or (np.isnan(one) and np.isnan(bounds[i]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_errors_within_the_bounds(fmt):
    """normwise error <= bound on the problem's own inputs, kappa 1 to 1e4 and magnitudes
    from 1e-3 to 10. The bounds are rigorous (not first order); the only slack is their own
    float64 evaluation: M's cancellation costs kappa 2^-53 relative in the largest |u_i| they
    divide by (visible in float64 rows only), so the slack is (1 + (kappa + 8) 2^-52). At least
    a third of the rows must have a bound."""
    f = get_format(fmt)
    X = np.concatenate(
        [
            _inputs(fmt, n=12, cond=c, magnitude=mag, size=3, seed=int(c * 10 + mag))
            for c in (1.0, 1e2, 1e4)
            for mag in (1e-3, 0.1, 10.0)
        ]
    )
    truths = [ground_truth(ADAM_DEFAULT, x, fmt, engine="arb") for x in X]
    for variant in MEMBERS:
        Y, bounds = variant.kernel(X), variant.bound(X, f)
        checked = 0
        for y, truth, bound in zip(Y, truths, bounds, strict=True):
            if np.isnan(bound):
                continue
            error = normwise_relative_error(y, truth.exact)
            slack = 1 + (truth.cond + 8) * 2.0**-52
            assert error <= bound * slack, f"{variant.name}: {error} > {bound}"
            checked += 1
        assert checked >= len(X) // 3, f"{variant.name}: only {checked} bounds"


# ------------------------------------------------------------------- facts of issue 17


def test_eps_rounds_to_zero_in_float16_but_not_in_bfloat16():
    """1e-8 is below half of float16's smallest subnormal 2^-24 (5.96e-8), so it rounds to 0;
    bfloat16 (min normal 2^-126) keeps it to within its u."""
    smallest = float(np.nextafter(np.float16(0), np.float16(1)))
    assert smallest == 2.0**-24 and float(EPS) < smallest / 2
    assert float(eps_in(DEFAULT_EPS, get_format("float16"))) == 0.0
    assert eps_rounding(get_format("float16")) == 1.0
    assert eps_rounding(get_format("bfloat16")) <= get_format("bfloat16").u


def test_zero_gradient_and_state_give_nan_in_float16_only():
    """g = m = v = 0: the exact update is 0 (0 / eps). In float16 the kernel computes
    0 / (0 + fl(eps)) = 0 / 0; in bfloat16, and with float32 state, it gets 0."""
    zero = np.zeros((1, 3, 4))
    assert all(v == 0 for v in adam_reference(zero[0], eps=DEFAULT_EPS)[0])
    assert np.isnan(in_format_adam(cast(zero, "float16"), eps=DEFAULT_EPS).astype(np.float64)).all()
    for fmt in ("bfloat16", "float32"):
        assert (in_format_adam(cast(zero, fmt), eps=DEFAULT_EPS).astype(np.float64) == 0).all()
    assert (
        float32_state_adam(cast(zero, "float16"), eps=DEFAULT_EPS).astype(np.float64) == 0
    ).all()


@pytest.mark.parametrize("fmt", LOW)
def test_second_moment_underflow_threshold(fmt):
    """The threshold below which fl(fl(1 - b2) fl(g^2)) = 0, found by scanning every value,
    is where the analysis puts it: (1 - b2) g^2 below half the smallest subnormal, i.e.
    |g| ~ sqrt(2^(emin - p) / fl(0.001)), within 2 u (ties and the two roundings). Below it a
    gradient adds nothing to v: with v = 0 the in-format V is 0, the float32 state's is not."""
    f = get_format(fmt)
    threshold = second_moment_underflow_threshold(fmt)
    share = float(constant("one_minus_beta2", f))
    predicted = math.sqrt(f.min_subnormal / 2 / share)
    assert threshold == pytest.approx(predicted, rel=2 * f.u)
    below = float(np.nextafter(cast(np.array(threshold), f), f.dtype.type(0)))
    x = cast(np.array([[[below, threshold]], [[0.0, 0.0]], [[0.0, 0.0]]]).reshape(1, 3, 2), f)
    with np.errstate(all="ignore"):
        second = constant("one_minus_beta2", f) * (x[0, 0] * x[0, 0])
    assert float(second[0]) == 0.0 and float(second[1]) > 0.0
    # The lost share leaves V = 0, the denominator fl(eps). float16: eps is 0 too, the update
    # is infinite. bfloat16: the threshold is so far below eps that sqrt(v_hat) (about 0.32 |g|
    # here) was negligible beside eps anyway: the update stays within 2 u of the exact one.
    # float32 state keeps the gradient in both.
    with np.errstate(all="ignore"):
        lost = in_format_adam(x, eps=DEFAULT_EPS).astype(np.float64)[0, 0]
    kept = float32_state_adam(x, eps=DEFAULT_EPS).astype(np.float64)[0, 0]
    exact = float(adam_reference(x[0], eps=DEFAULT_EPS)[0][0])
    assert kept == pytest.approx(exact, rel=2 * f.u)
    if fmt == "float16":
        assert lost == math.inf
    else:
        assert threshold < 1e-10 * float(EPS)
        assert lost == pytest.approx(exact, rel=2 * f.u)


def test_constants_are_the_exact_ratios_rounded_once():
    assert float(BETA1) == 0.9 and float(BETA2) == 0.999 and float(LR) == 1e-3
    assert C1 == 1 - Fraction(9, 10) ** 10 and C2 == 1 - Fraction(999, 1000) ** 10


# ------------------------------------------------------------------- eps as a parameter


def test_exact_eps_is_the_decimal_the_float_stands_for():
    assert exact_eps(1e-8) == Fraction(1, 10**8) and Fraction(1e-8) != Fraction(1, 10**8)
    assert exact_eps(2.0**-20) == Fraction(1, 2**20)
    assert float(exact_eps(1e-3)) == 1e-3


def test_a_larger_eps_keeps_the_float16_zero_gradient_finite():
    """eps = 1e-3 is a normal float16 (min normal 6.1e-5): g = m = v = 0 gives 0 / fl(eps) = 0,
    the exact update, where eps = 1e-8 gives 0 / 0."""
    zero = cast(np.zeros((1, 3, 4)), "float16")
    assert float(eps_in(1e-3, get_format("float16"))) > 0
    assert (in_format_adam(zero, eps=1e-3).astype(np.float64) == 0).all()
    assert all(v == 0 for v in adam_reference(zero[0], eps=1e-3)[0])


def test_the_reference_needs_its_eps_and_a_member_binds_it():
    from precision.problems.base import Variant

    with pytest.raises(ValueError, match="eps"):
        ground_truth(ADAM, np.zeros((3, 2), dtype=np.float32), "float32", engine="arb")
    with pytest.raises(ValueError, match="eps"):
        ADAM.with_params(lr=1e-3)
    member = ADAM.variants["in_format"].with_params(eps=1e-5)
    assert ADAM.for_variant(member).params == {"eps": 1e-5}
    unbound = Variant("plain", in_format_adam, batched=True)
    with pytest.raises(ValueError, match="does not bind"):
        ADAM.for_variant(unbound)


def test_each_eps_has_its_own_cache_key_and_record_that_verify_recomputes():
    from precision.truth.exact import ground_truths
    from precision.truth.records import cache_key, truth_record
    from precision.truth.verify import GOOD, MISMATCH, check_record

    x = _inputs("bfloat16", n=4, magnitude=1e-4, size=1, seed=9)[0]
    keys, records = [], []
    for eps in (1e-8, 1e-3):
        problem = ADAM.with_params(eps=eps)
        keys.append(cache_key(problem, x, ["bfloat16"], engine="arb"))
        truths = ground_truths(problem, x, ["bfloat16"], engine="arb")
        records.append(truth_record(truths, problem=problem, x=x))
    assert keys[0] != keys[1] and records[0]["params"] == {"eps": 1e-8}
    assert records[0]["hi"] != records[1]["hi"]
    assert check_record(keys[1], records[1]) == (GOOD, "")
    forged = records[1] | {"params": {"eps": 1e-8}}  # the record of eps 1e-3 under 1e-8
    assert check_record(keys[1], forged)[0] == MISMATCH
