"""Tests for precision.core.numbers and the Arb ground-truth engine
(``ground_truth(engine="arb")``).

Each problem's reference is written once against `NumberSystem`. Evaluated in Arb balls it must
reproduce the mpmath engine's ground truth: the same rounding to the format bit for bit, hi/lo
within 2**-80 relative, the condition number within COND_ACCURACY relative (the accuracy the
engine certifies it to), both certified; on seeded proposals of every problem and format and on
the hard inputs of test_exact / test_problems. The extreme singular values behind the
linear-algebra condition numbers are enclosures: they must contain mpmath's 2400-bit values on
random, ill-conditioned, clustered, scaled and rank-deficient matrices, also when built from
deliberately poor approximations.
Where the two differ, the mpmath engine is the one that is wrong, and the tests at the end of
the engine section pin the cases found (an exact tie below the working precision, condition
numbers that cancel). Neither engine may leave the global mpmath or flint precision changed (a
fixture checks).
"""

from __future__ import annotations

import math
import operator
import zlib
from fractions import Fraction

import flint
import mpmath
import numpy as np
import pytest
from members import bound_problem

from precision.core import arb_linalg, arb_singular_values
from precision.core.arb_singular_values import (
    ENCLOSURE_ACCURACY,
    _largest_singular_value,
    _smallest_singular_value,
)
from precision.core.formats import cast, get_format, round_to_format
from precision.core.metrics import Exact
from precision.core.numbers import ARB, MPMATH
from precision.problems import PROBLEMS
from precision.problems.cross_entropy import ce_and_sensitivity64
from precision.problems.linalg import randsvd
from precision.truth.enclosed import DD_PREC
from precision.truth.exact import (
    COND_ACCURACY,
    PRECISIONS,
    _ball,
    _split_dyadic,
    ground_truth,
    to_mpf_array,
)

FORMATS = ["float16", "bfloat16", "float32", "float64"]
SYSTEMS = {"mpmath": MPMATH, "arb": ARB}
HIGH = 400  # bits of the independent evaluations


pytestmark = pytest.mark.usefixtures("global_precision_unchanged")


def _fraction(v) -> Fraction:
    """The exact value of an mpf or an exact arb ball."""
    if isinstance(v, flint.arb):
        assert v.rad() == 0
        man, exp = v.mid().man_exp()
        return Fraction(int(man)) * Fraction(2) ** int(exp)
    man, exp = v.man_exp
    return Fraction(int(man) * (-1 if v < 0 else 1)) * Fraction(2) ** int(exp)


# ---------------------------------------------------------------------- number systems


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_exact_conversion_keeps_every_bit_inside_a_low_working_precision(system):
    ctx = SYSTEMS[system]
    values = [1.0 + 2.0**-52, -(2.0**-1074), 1.0 / 3.0, 1.7976931348623157e308, 0.0]
    with ctx.workprec(20):
        converted = [ctx.exact(v) for v in values]
    assert [_fraction(c) for c in converted] == [Fraction(v) for v in values]


@pytest.mark.parametrize("system", list(SYSTEMS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_exact_list_converts_every_format_exactly(system, fmt):
    ctx = SYSTEMS[system]
    x = cast(np.random.default_rng(0).standard_normal((2, 5)) * 100, fmt)
    expected = [Fraction(v) for v in x.astype(np.float64).ravel().tolist()]
    assert [_fraction(c) for c in ctx.exact_list(x)] == expected


def test_mpmath_exact_list_passes_mpf_through():
    """Legacy callers hand references an object array of mpf (to_mpf_array)."""
    x = to_mpf_array(np.array([0.5, -3.0, 2.0**-60]))
    assert all(a is b for a, b in zip(MPMATH.exact_list(x), x, strict=True))


def test_arb_workprec_restores_flint_precision_after_an_error():
    with pytest.raises(ZeroDivisionError), ARB.workprec(300):
        assert flint.ctx.prec == 300
        raise ZeroDivisionError
    assert flint.ctx.prec == 53


def test_arb_operations_contain_the_exact_values():
    """Each ARB wrapper returns a ball that contains the 400-bit mpmath value and is tight."""
    v = [0.75, -2.5, 1e-20]
    with ARB.workprec(113):
        a = ARB.exact_list(np.array(v))
        balls = [ARB.exp(a[1]), ARB.log(a[0]), ARB.log1p(a[2]), ARB.fsum(a)]
        balls += [ARB.max(a), ARB.abs(a[1]), ARB.fsum([])]
    with mpmath.workprec(HIGH):
        m = [mpmath.mpf(value) for value in v]
        exact = [mpmath.exp(m[1]), mpmath.log(m[0]), mpmath.log1p(m[2]), mpmath.fsum(m)]
        exact += [max(m), abs(m[1]), mpmath.mpf(0)]
    for ball, value in zip(balls, exact, strict=True):
        mid, rad = _fraction(ball.mid()), _fraction(ball.rad())
        assert abs(_fraction(value) - mid) <= rad
        assert rad <= Fraction(2) ** -100 * abs(mid)


@pytest.mark.parametrize("problem_name", list(PROBLEMS))
def test_reference_defaults_to_mpmath_and_takes_mpf_arrays(problem_name):
    """``problem.reference(x)`` keeps working: float input, mpf input and ctx=MPMATH agree
    (with the default values of the parameters a reference takes, `Problem.reference_params`)."""
    problem = bound_problem(PROBLEMS[problem_name])
    x = problem.propose(np.random.default_rng(2), n=7, magnitude=3.0, cond=10.0, size=1)[0]
    with mpmath.workprec(113):
        results = [
            problem.reference(x, **problem.params),
            problem.reference(to_mpf_array(x), **problem.params),
            problem.evaluate_reference(x, MPMATH),
        ]
    (y0, c0), *rest = results
    for y, c in rest:
        assert list(y) == list(y0) and c == c0


# ------------------------------------------------------------ extreme singular values


def _truth(a: np.ndarray, bits: int = 2400) -> tuple[mpmath.mpf, mpmath.mpf]:
    """(sigma_max, sigma_min) of the float matrix, mpmath's SVD at ``bits`` on its exact
    entries (kappa <= 2**700 here, so at least 1700 bits stay correct)."""
    with mpmath.workprec(bits):
        sigma = mpmath.svd_r(
            mpmath.matrix(np.asarray(a, dtype=np.float64).tolist()), compute_uv=False
        )
        return max(sigma), min(sigma)


def _contains(ball: flint.arb, value: mpmath.mpf) -> bool:
    """|value - mid| <= rad, decided in 3000-bit mpmath on the ball's exact mid and radius."""
    if not ball.is_finite():
        return False
    (man, exp), (rman, rexp) = ball.mid().man_exp(), ball.rad().man_exp()
    with mpmath.workprec(3000):
        mid = mpmath.ldexp(int(man), int(exp))
        return abs(value - mid) <= mpmath.ldexp(int(rman), int(rexp))


def _relative_radius(ball: flint.arb) -> float:
    return float(ball.rad()) / abs(float(ball.mid()))


def _randsvd(n: int, m: int, kappa: float, seed: int, norm: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return randsvd(rng, m=m, n=n, cond=np.array([kappa]), norm=np.array([norm]))[0]


def _hadamard(n: int) -> np.ndarray:
    """Sylvester's Hadamard matrix (entries +-1, H^T H = n I): every singular value is
    exactly sqrt(n), a cluster no float64 rounding separates."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _clustered(seed: int) -> np.ndarray:
    """Singular values (1, 1, 1, 0.5, 1e-6, 1e-6, 1e-6): repeated at both ends (up to the
    float64 rounding of U diag V^T)."""
    rng = np.random.default_rng(seed)
    sigma = np.array([1.0, 1.0, 1.0, 0.5, 1e-6, 1e-6, 1e-6])
    u = np.linalg.qr(rng.standard_normal((9, 7)))[0]
    v = np.linalg.qr(rng.standard_normal((7, 7)))[0]
    return (u * sigma) @ v.T


def _fibonacci(k: int = 75) -> np.ndarray:
    """[[F_k+1, F_k], [F_k, F_k-1]]: integers below 2**53 with determinant +-1, so kappa is
    about F_k**2 ~ 2**104, beyond what float64 can invert (the expensive path)."""
    f = [0, 1]
    while len(f) < k + 2:
        f.append(f[-1] + f[-2])
    return np.array([[f[k + 1], f[k]], [f[k], f[k - 1]]], dtype=np.float64)


SINGULAR_VALUE_CASES = {
    **{
        f"randsvd n={n} m={m} kappa={kappa:g}": _randsvd(n, m, kappa, seed=n + m)
        for n, m in ((1, 1), (1, 4), (2, 2), (7, 7), (12, 12), (6, 12), (20, 40))
        for kappa in (1.0, 10.0, 1e4, 1e8, 1e12, 1e15)
    },
    "kappa 1e30 in float64 (rounding leaves about 1e17)": _randsvd(9, 9, 1e30, seed=4),
    "hadamard 8 (all singular values equal)": _hadamard(8),
    "hadamard 16 x 8 columns": _hadamard(16)[:, :8],
    "clustered at both ends": _clustered(5),
    "fibonacci (kappa ~ 2**104)": _fibonacci(),
    "scales 1 and 2**-600": np.diag([1.0, 2.0**-600, 0.5]),
    "subnormal entries": _randsvd(5, 5, 100.0, seed=2) * 2.0**-1060,
    "entries near 1e300": _randsvd(6, 8, 1e5, seed=3, norm=1e300),
}


@pytest.mark.parametrize("tight", [False, True])
@pytest.mark.parametrize("name", list(SINGULAR_VALUE_CASES))
def test_singular_value_enclosures_contain_the_true_values(name, tight):
    """Both balls contain mpmath's 2400-bit singular values; a condition number's enclosure
    is within ENCLOSURE_ACCURACY (2**-30) relative whatever the spectrum (clusters included),
    an output's (``tight``) within 2**-84 where the extreme values are separated."""
    a = SINGULAR_VALUE_CASES[name]
    with ARB.workprec(113):
        largest, smallest = ARB.extreme_singular_values(_rows(a), tight=tight)
    true_max, true_min = _truth(a)
    assert _contains(largest, true_max), (name, largest, true_max)
    assert _contains(smallest, true_min), (name, smallest, true_min)
    widths = _relative_radius(largest), _relative_radius(smallest)
    if not tight:
        assert max(widths) <= ENCLOSURE_ACCURACY, (name, widths)
    elif "hadamard" not in name and "clustered" not in name and "kappa=1 " not in name + " ":
        assert max(widths) <= 2.0**-84, (name, widths)


def _rows(a: np.ndarray) -> list[list]:
    return [[ARB.exact(v) for v in row] for row in np.asarray(a, dtype=np.float64).tolist()]


def test_condition_number_enclosure_needs_no_eigenvalues(monkeypatch):
    """The cheap path is products, a float64 SVD and a Newton-refined inverse only: the
    certified eigenvalues (twenty times the solve at n = 200) are never computed for a
    condition number, clusters and kappa 1e15 included."""

    def forbidden(self, a):
        raise AssertionError("symmetric_eigenvalues called")

    monkeypatch.setattr(type(ARB), "symmetric_eigenvalues", forbidden)
    for name in ("hadamard 8 (all singular values equal)", "clustered at both ends"):
        with ARB.workprec(113):
            largest, smallest = ARB.extreme_singular_values(_rows(SINGULAR_VALUE_CASES[name]))
        assert max(_relative_radius(largest), _relative_radius(smallest)) <= ENCLOSURE_ACCURACY
    a = _randsvd(30, 30, 1e15, seed=9)
    with ARB.workprec(113):
        kappa = operator.truediv(*ARB.extreme_singular_values(_rows(a)))
    assert _relative_radius(kappa) <= 2.0**-20


@pytest.mark.parametrize("tight", [False, True])
@pytest.mark.parametrize("noise", [1e-2, 1e-5, 1e-9])
def test_enclosures_hold_for_poor_approximations(noise, tight):
    """The bounds are rigorous for any approximate singular vectors and any approximate
    inverse, not only for float64's good ones: with V and the pseudo-inverse perturbed by
    ``noise`` (so the orthogonality, off-diagonal and residual terms of the bounds are of
    that size, not 2**-50) the balls still contain the 2400-bit values, and are about
    ``noise`` wide (``noise``**2 to second order, with ``tight``)."""
    a = _randsvd(7, 9, 1e3, seed=11)
    true_max, true_min = _truth(a)
    rng = np.random.default_rng(12)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    v = vt.T * (1 + noise * rng.standard_normal(vt.shape))
    # (I + noise N) B^+ with N of norm about 1: the residual I - X0 B is about noise.
    x0 = (np.eye(7) + noise / 7 * rng.standard_normal((7, 7))) @ ((vt.T / s) @ u.T)
    b = flint.arb_mat(_rows(a))
    with ARB.workprec(113):
        largest, _, _ = _largest_singular_value(b, v, tight=tight)
        smallest = _smallest_singular_value(b, flint.arb_mat(x0.tolist()), tight=tight)
    assert _contains(largest, true_max) and _contains(smallest, true_min)
    assert _relative_radius(largest) <= 1e3 * noise**2 if tight else 100 * noise
    assert _relative_radius(smallest) <= 100 * noise


RANK_DEFICIENT = {
    "repeated column": np.array([[1.0, 2.0, 1.0], [3.0, -1.0, 3.0], [0.5, 4.0, 0.5]]),
    "zero column, tall": np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]),
    "zero matrix": np.zeros((3, 3)),
    # [[1, 1], [1, 1 + 2**-12]] is nonsingular; float16 rounds 1 + 2**-12 to 1.
    "singular once rounded to float16": cast(
        np.array([[1.0, 1.0], [1.0, 1.0 + 2.0**-12]]), "float16"
    ),
    "rank 2 of 5": np.outer([1.0, 2.0, -1.0, 0.5, 3.0], [1.0, -2.0, 0.25, 4.0, 1.0])
    + np.outer([0.0, 1.0, 1.0, -2.0, 0.5], [2.0, 1.0, 0.0, -1.0, 0.5]),
}


@pytest.mark.parametrize("system", list(SYSTEMS))
@pytest.mark.parametrize("name", list(RANK_DEFICIENT))
def test_exactly_rank_deficient_matrices_have_sigma_min_exactly_zero(name, system):
    """Decided in exact rational arithmetic (the float64 SVD only says "numerically
    singular"): sigma_min is exactly 0 in both systems, sigma_max still right."""
    ctx = SYSTEMS[system]
    a = RANK_DEFICIENT[name]
    with ctx.workprec(113):
        largest, smallest = ctx.extreme_singular_values([ctx.exact_list(r) for r in a])
        assert smallest == 0
    true_max, _ = _truth(a)
    if system == "arb":
        assert _contains(largest, true_max)
    else:
        with mpmath.workprec(113):
            assert abs(largest - true_max) <= 2.0**-100 * true_max


def test_nearly_singular_is_not_called_singular():
    """kappa ~ 2**104 (Fibonacci): float64 sees a singular matrix, exact arithmetic does not;
    mpmath at 113 bits keeps its computed sigma_min, Arb encloses it."""
    a = _fibonacci()
    with mpmath.workprec(113):
        _, smallest = MPMATH.extreme_singular_values([MPMATH.exact_list(r) for r in a])
        assert smallest > 0
    with ARB.workprec(113):
        _, ball = ARB.extreme_singular_values(_rows(a))
    assert ball > 0 and _contains(ball, _truth(a)[1])


def test_mpmath_singular_values_are_of_a_not_of_a_t_a():
    """kappa 1e12 at 113 bits: the singular values of A keep about 113 - 40 bits; the
    eigenvalues of A^T A (kappa**2 = 2**80) would keep 33."""
    a = _randsvd(8, 8, 1e12, seed=6)
    true_max, true_min = _truth(a)
    with mpmath.workprec(113):
        largest, smallest = MPMATH.extreme_singular_values([MPMATH.exact_list(r) for r in a])
        assert abs(smallest - true_min) <= 2.0**-60 * true_min
        assert abs(largest - true_max) <= 2.0**-100 * true_max


# ------------------------------------------------------------------- arb vs mpmath engine


def _exact_value(exact: Exact, i: int) -> mpmath.mpf:
    """(hi + lo) * 2**exp of component i, exactly (inside a high workprec)."""
    hi, lo = mpmath.mpf(float(exact.hi[i])), mpmath.mpf(float(exact.lo[i]))
    return mpmath.ldexp(hi + lo, int(exact.exp[i]))


def _assert_same_truth(problem_name: str, x: np.ndarray, fmt: str) -> None:
    problem = bound_problem(PROBLEMS[problem_name])
    reference = ground_truth(problem, x, fmt)
    gt = ground_truth(problem, x, fmt, engine="arb")
    where = (problem_name, fmt, x.tolist())
    assert reference.certified and gt.certified, where
    assert (reference.engine, gt.engine) == ("mpmath", "arb")
    assert gt.exact.rounded.dtype == reference.exact.rounded.dtype
    assert gt.exact.rounded.tobytes() == reference.exact.rounded.tobytes(), where
    if math.isinf(reference.cond):
        assert gt.cond == reference.cond, where
    else:
        # The arb engine certifies a condition number to COND_ACCURACY, no further (the
        # mpmath engine's is as accurate as its working precision).
        assert gt.cond == pytest.approx(reference.cond, rel=COND_ACCURACY), where
    with mpmath.workprec(HIGH):
        for i in range(reference.exact.hi.size):
            a, b = _exact_value(gt.exact, i), _exact_value(reference.exact, i)
            assert abs(a - b) <= 2.0**-80 * abs(b), (where, i)


MATRIX_OUTPUTS = {"fd_hessian"}
"""Vector-input problems whose reference builds an n x n matrix (the Hessian of log-sum-exp)."""


def _is_matrix_problem(problem) -> bool:
    return problem.name in MATRIX_OUTPUTS or np.prod(problem.input_shape(10)) > 20


def _sizes(problem) -> tuple[int, int]:
    """Vector problems: n in [10, 100]. Matrix problems (more than 2n input values, or a matrix
    reference): n in [2, 6], where the mpmath engine's eigenvalues and solves take milliseconds,
    not minutes."""
    return (2, 7) if _is_matrix_problem(problem) else (10, 101)


def _conds(problem) -> tuple[float, ...]:
    """Targets of the condition number. Matrix problems start at 2: a target of exactly 1 gives
    a randsvd matrix with all singular values equal (to rounding), and matrix_condition's
    output kappa_2 = 1 then stays uncertified, by design: its enclosure is first-order there,
    about 2**-50 wide, and Arb's certified eigenvalues cannot isolate repeated ones. (As a
    condition number, for binning, such a kappa_2 is certified: see
    test_condition_number_enclosure_needs_no_eigenvalues.)"""
    return (2.0, 1e4, 1e10) if _is_matrix_problem(problem) else (1.0, 1e4, 1e10)


def _proposals(problem_name: str, fmt: str):
    """Seeded proposals of the problem itself at several sizes (`_sizes`), magnitudes (exp
    overflows and underflows every format at 500) and condition numbers."""
    problem = PROBLEMS[problem_name]
    # Seeded by the problem's name, not its place in the registry: registering a problem
    # must not change the inputs another problem's test draws.
    seed = (zlib.crc32(problem_name.encode()), FORMATS.index(fmt))
    rng = np.random.default_rng(seed)
    for magnitude in (0.5, 5.0, 50.0, 500.0):
        for cond in _conds(problem):
            n = int(rng.integers(*_sizes(problem)))
            x = problem.propose(rng, n=n, magnitude=magnitude, cond=cond, size=1)[0]
            yield cast(x, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("problem_name", list(PROBLEMS))
def test_arb_engine_matches_mpmath_on_proposals(problem_name, fmt):
    """On the problem's own proposals: wherever the mpmath reference certifies its truth, the
    Arb engine certifies the same. A proposal rounded to an exactly singular matrix, or whose
    exact output sits on a rounding tie, leaves the mpmath engine uncertified (it evaluates in
    floating point); such inputs are skipped, but they may not be the rule."""
    drawn = list(_proposals(problem_name, fmt))
    problem = bound_problem(PROBLEMS[problem_name])
    certified = [x for x in drawn if ground_truth(problem, x, fmt).certified]
    assert len(certified) >= 0.75 * len(drawn), (len(certified), len(drawn))
    for x in certified:
        _assert_same_truth(problem_name, x, fmt)


def _hard_inputs():
    """Inputs of test_problems / test_exact whose references need care: a term far below the
    working precision ([0, -200]), outputs that underflow or overflow the format, exact
    outputs (lse([12]) = 12, softmax of ties), the exp overflow thresholds."""
    for fmt in FORMATS:
        for problem_name in ("logsumexp", "log_softmax", "softmax"):
            for values in ([0.0, -200.0], [0.0, -30.0, -200.0, 5.0], [12.0], [1000.0] * 3):
                yield problem_name, _cast(values, fmt), fmt
        for values in ([[0.0, -200.0], [1.0, 0.0]], [[40.0, 0.0], [1.0, 0.0]], [[0, -20], [0, 1]]):
            yield "cross_entropy", _cast(values, fmt), fmt
        for value in (11.0, 11.1, 88.5, 89.0, 709.78, 709.79, -20.0, -800.0, 0.0):
            yield "exp", _cast([value], fmt), fmt


def _cast(values, fmt: str) -> np.ndarray:
    return cast(np.asarray(values, dtype=np.float64), fmt)


@pytest.mark.parametrize(("problem_name", "x", "fmt"), list(_hard_inputs()))
def test_arb_engine_matches_mpmath_on_hard_inputs(problem_name, x, fmt):
    _assert_same_truth(problem_name, x, fmt)


@pytest.mark.parametrize("fmt", ["float32", "float64"])
@pytest.mark.parametrize("shortcut", [True, False])
def test_arb_engine_keeps_a_term_far_below_the_working_precision(fmt, shortcut):
    """x = [0, -200]: lse = log1p(e^-200) ~ 1.4e-87, at the first evaluation: the
    double-double enclosure, or (``shortcut=False``) Arb's balls at 113 bits."""
    x = _cast([0.0, -200.0], fmt)
    gt = ground_truth(PROBLEMS["logsumexp"], x, fmt, engine="arb", shortcut=shortcut)
    with mpmath.workprec(HIGH):
        expected = mpmath.log1p(mpmath.exp(-200))
        assert gt.certified and gt.prec == (DD_PREC if shortcut else PRECISIONS[0])
        assert abs(_exact_value(gt.exact, 0) - expected) <= 2.0**-80 * expected


TIE = [932.0, 266.0]  # bfloat16 numbers 666 apart; 666 is halfway between bfloat16's 664 and 668


def _tie_cases():
    """Outputs exactly 666 + log1p(e**-666) from the exact tie 666: log_softmax_1 and the
    cross-entropy of class 1 (their exact values round away from the tie, to 668 in
    magnitude)."""
    x = _cast(TIE, "bfloat16")
    with mpmath.workprec(3000):
        tiny = mpmath.log1p(mpmath.exp(-666))
        yield "log_softmax", x, [round_to_format(-tiny, "bfloat16"), -668.0]
        yield "cross_entropy", _cast([TIE, [0.0, 1.0]], "bfloat16"), [668.0]


@pytest.mark.parametrize(
    "engine",
    [
        "mpmath",
        "arb",
    ],
)
def test_an_exact_tie_below_the_working_precision_is_seen(engine):
    """The ball around 666 contains the tie, so the arb engine escalates (to 1024 bits, where
    e**-666 ~ 2**-961 is resolved) and rounds to 668."""
    for problem_name, x, expected in _tie_cases():
        gt = ground_truth(PROBLEMS[problem_name], x, "bfloat16", engine=engine)
        assert gt.certified
        assert gt.exact.rounded.astype(np.float64).tolist() == [float(v) for v in expected]


@pytest.mark.parametrize("engine", ["mpmath", "arb", "arb balls"])
@pytest.mark.parametrize("top", [100.0, 500.0])
def test_condition_number_does_not_cancel_for_a_dominant_class(top, engine):
    """Cross-entropy of logits [top, 1], class 0: kappa = (top r + r) / CE with r ~ e**(1 - top).
    Forming |g_0 - 1| as written cancels (113 bits gave 100.99987 and 1.0 for 101 and 501);
    the reference forms it as r / s, so every engine gets it at its first evaluation (the arb
    engine's double-double enclosure, or its balls at 113 bits with ``shortcut=False``)."""
    xt = np.array([[top, 1.0], [1.0, 0.0]])
    balls = engine == "arb balls"
    gt = ground_truth(
        PROBLEMS["cross_entropy"], xt, "float64", engine=engine.split()[0], shortcut=not balls
    )
    ce, sensitivity = ce_and_sensitivity64(xt[0], xt[1])
    first = {"mpmath": 160, "arb": DD_PREC, "arb balls": 113}
    assert gt.certified and gt.prec == first[engine]
    assert gt.cond == pytest.approx(sensitivity / ce, rel=1e-12)


def test_arb_engine_scopes_and_restores_flint_precision():
    """A caller's own flint precision is kept, not reset to the default, and does not change
    the result (the engine sets its own)."""
    problem, x = PROBLEMS["softmax"], _cast([0.5, -1.0, 2.0], "float32")
    expected = ground_truth(problem, x, "float32", engine="arb")
    flint.ctx.prec = 30
    try:
        gt = ground_truth(problem, x, "float32", engine="arb")
        assert flint.ctx.prec == 30
    finally:
        flint.ctx.prec = 53
    assert gt.exact.rounded.tobytes() == expected.exact.rounded.tobytes()
    assert gt.prec == expected.prec and gt.certified


@pytest.mark.parametrize("precisions", [(20,), (20, 24), (24, 40)])
@pytest.mark.parametrize(
    # summation and cancellation add floats exactly in integers: a short exact sum is an
    # exact ball (radius 0) at 20-40 bits, rightly certified (weight_update shares summation's
    # reference), and so does dot with its products (exact in integers); so is
    # critical_point's inertia (eigenvalue signs from an exact characteristic polynomial)
    # with its exact condition
    "problem_name",
    [
        p
        for p in PROBLEMS
        if p not in ("summation", "cancellation", "critical_point", "dot", "loss_scaling")
        and PROBLEMS[p].reference is not PROBLEMS["summation"].reference
    ],
)
def test_arb_engine_with_a_too_low_cap_is_not_certified(problem_name, precisions):
    """Balls of 20-40 bits are far wider than 2**-80 relative: never certified, but still
    returned, evaluated at the cap."""
    fmt = "float16"
    x = next(_proposals(problem_name, fmt))
    problem = bound_problem(PROBLEMS[problem_name])
    gt = ground_truth(problem, x, fmt, precisions=precisions, engine="arb")
    assert not gt.certified
    assert gt.prec == precisions[-1]
    assert gt.exact.rounded.dtype == get_format(fmt).dtype


# ------------------------------------------------------------------ ball certification


def _arb(mid: Fraction, rad: Fraction) -> flint.arb:
    """A ball with the exact given midpoint and radius (dyadic rationals)."""
    with ARB.workprec(400):
        mid_ball = flint.arb(flint.fmpq(mid.numerator, mid.denominator))
        rad_ball = flint.arb(flint.fmpq(rad.numerator, rad.denominator))
        assert mid_ball.rad() == 0 and rad_ball.rad() == 0
        return flint.arb(mid_ball.mid(), rad_ball.mid())


TWO = Fraction(2)
BALLS = [
    # (midpoint, radius, format, certified, rounded)
    (Fraction(0), Fraction(0), "float64", True, 0.0),  # exactly 0
    (Fraction(1 / 3), TWO**-120, "float32", True, float(np.float32(1 / 3))),
    (Fraction(1 / 3), TWO**-70, "float32", False, float(np.float32(1 / 3))),  # too wide
    (1 + TWO**-24, TWO**-120, "float32", False, 1.0),  # straddles a tie of float32
    (1 + TWO**-24 + TWO**-100, TWO**-120, "float32", True, 1 + 2.0**-23),
    (Fraction(0), TWO**-200, "float64", False, 0.0),  # contains 0
    (Fraction(70000), TWO**-100, "float16", True, math.inf),  # rounds past max: overflow
    (-(TWO**-30), TWO**-120, "float16", True, -0.0),  # underflows to -0 in float16
]


@pytest.mark.parametrize(("mid", "rad", "fmt", "certified", "rounded"), BALLS)
def test_ball_certification(mid, rad, fmt, certified, rounded):
    ball = _ball(_arb(mid, rad), get_format(fmt))
    assert ball.certified is certified
    assert float(ball.rounded) == rounded
    assert math.copysign(1, float(ball.rounded)) == math.copysign(1, rounded)
    assert ball.rounded == round_to_format(mid, fmt) or not certified


def test_ball_that_is_not_finite_is_not_certified():
    ball = _ball(flint.arb(1, math.inf), get_format("float64"))
    assert not ball.certified


def _split_mpf(man: int, exp: int):
    with mpmath.workprec(max(53, abs(man).bit_length())):
        value = mpmath.ldexp(mpmath.mpf(man), exp)
    exact = Exact.from_mpf([value])
    return float(exact.hi[0]), float(exact.lo[0]), int(exact.exp[0])


def test_split_dyadic_is_the_split_of_exact_from_mpf():
    """Bit for bit, on random mantissas of 1..400 bits and exponents far outside float64,
    and on mantissas whose hi rounds up to 1 (all ones) or ties (hi's last bit)."""
    rng = np.random.default_rng(7)
    cases = [(0, 0), (1, 0), (-1, -5000), ((1 << 120) - 1, -120), ((1 << 54) + 1, 3)]
    cases += [((1 << 53) + 1, 0), ((1 << 53) + 3, -2000)]  # ties: hi rounds to even
    for _ in range(300):
        bits = int(rng.integers(1, 400))
        man = int(rng.integers(1, 2**62)) << max(bits - 62, 0) | int(rng.integers(0, 2**31))
        cases.append((man * (-1 if rng.random() < 0.5 else 1), int(rng.integers(-5000, 5000))))
    for man, exp in cases:
        assert _split_dyadic(man, exp) == _split_mpf(man, exp), (man, exp)


# ------------------------------------------------ float64 norms and refined solves (issue 14)


@pytest.mark.parametrize("name", list(SINGULAR_VALUE_CASES))
def test_float64_norm_enclosures_contain_the_true_values(name, monkeypatch):
    """With the float64 products (`float64_largest_singular_value`) switched on at every
    size, the condition-number enclosures still contain mpmath's 2400-bit singular values
    and stay within ENCLOSURE_ACCURACY: subnormal entries, entries near 1e300, clusters and
    kappa 1e30 included (matrices whose float64 copy is not B itself keep Arb's products)."""
    monkeypatch.setattr(arb_singular_values, "FLOAT64_NORMS_MIN_N", 1)
    a = SINGULAR_VALUE_CASES[name]
    with ARB.workprec(113):
        largest, smallest = ARB.extreme_singular_values(_rows(a))
    true_max, true_min = _truth(a)
    assert _contains(largest, true_max), (name, largest, true_max)
    assert _contains(smallest, true_min), (name, smallest, true_min)
    assert max(_relative_radius(largest), _relative_radius(smallest)) <= ENCLOSURE_ACCURACY


@pytest.mark.parametrize("noise", [1e-3, 1e-7])
def test_float64_norm_bound_holds_for_poor_vectors(noise):
    """The float64 bound is rigorous for any Q, not only LAPACK's: with perturbed singular
    vectors it still contains sigma_max and is about ``noise`` wide."""
    a = _randsvd(9, 12, 1e3, seed=21)
    a = a / 2.0 ** math.frexp(np.abs(a).max())[1]  # max |a_ij| in [1/2, 1), as required
    true_max, _ = _truth(a)
    rng = np.random.default_rng(22)
    v = np.linalg.svd(a)[2].T * (1 + noise * rng.standard_normal((9, 9)))
    with ARB.workprec(113):
        largest, g = arb_singular_values.float64_largest_singular_value(a, v)
    assert _contains(largest, true_max)
    assert _relative_radius(largest) <= 100 * noise


def _solve_cases():
    rng = np.random.default_rng(31)
    cases = {}
    for n, kappa in ((3, 1.0), (12, 1e3), (40, 1e8), (120, 1e2), (25, 1e12)):
        a = randsvd(rng, m=n, n=n, cond=np.array([kappa]), norm=np.array([3.0]))[0]
        cases[f"randsvd n={n} kappa={kappa:g}"] = (a, a @ rng.standard_normal(n))
    eye = np.eye(4)
    cases["dyadic solution (exact balls)"] = (eye * 2.0, np.array([1.0, 3.0, 0.0, -5.0]))
    cases["one component exactly 0"] = (
        np.array([[2.0, 1.0], [1.0, 3.0]]),
        np.array([2.0, 1.0]),  # x = (1, 0)
    )
    cases["thirds"] = (np.array([[3.0, 0.0], [1.0, 3.0]]), np.array([1.0, 1.0]))
    return cases


SOLVE_CASES = _solve_cases()


@pytest.mark.parametrize("prec", [113, 160, 300])
@pytest.mark.parametrize("name", list(SOLVE_CASES))
def test_refined_solve_gives_the_rational_solves_balls(name, prec):
    """With sigma_min, `ArbNumbers.solve` returns the very balls of the exact rational solve
    (fmpq_mat.solve, then arb(fmpq): midpoint truncated toward zero, radius one ulp or 0),
    bit for bit, whether `refined_solve` decides them or hands back to the rational solve
    (exact components, kappa beyond float64's refinement)."""
    a, b = SOLVE_CASES[name]
    with ARB.workprec(prec):
        rows = [ARB.exact_list(r) for r in a]
        column = ARB.exact_list(b)
        _, sigma_min = ARB.extreme_singular_values(rows)
        fast = ARB.solve(rows, column, smallest_singular_value=sigma_min)
        exact = ARB.solve(rows, column)
    for p, q in zip(fast, exact, strict=True):
        assert p.mid() == q.mid() and p.rad() == q.rad(), (name, p, q)


def test_refined_solve_decides_well_conditioned_systems_and_leaves_exact_ones():
    """`refined_solve` decides a random system (no rational solve needed) and returns None
    (the rational solve decides) where a component is a 113-bit number, which only the exact
    solve can give radius 0."""
    with ARB.workprec(113):
        for name, decided in (("randsvd n=120 kappa=100", True), ("thirds", True)):
            a, b = SOLVE_CASES[name]
            rows = flint.arb_mat([ARB.exact_list(r) for r in a])
            _, sigma_min = ARB.extreme_singular_values(rows.tolist())
            found = arb_linalg.refined_solve(rows, flint.arb_mat([[v] for v in b]), sigma_min)
            assert (found is not None) == decided, name
        a, b = SOLVE_CASES["one component exactly 0"]
        rows = flint.arb_mat([ARB.exact_list(r) for r in a])
        _, sigma_min = ARB.extreme_singular_values(rows.tolist())
        assert arb_linalg.refined_solve(rows, flint.arb_mat([[v] for v in b]), sigma_min) is None


@pytest.mark.parametrize("prec", [2, 53, 113])
def test_truncation_is_arbs_rounding_of_a_rational(prec):
    """`_truncated` is arb(fmpq)'s midpoint: |q| truncated to ``prec`` bits (checked on 500
    random rationals against python-flint), and None exactly when q has at most prec bits."""
    rng = np.random.default_rng(prec)
    with ARB.workprec(prec):
        for _ in range(500):
            num = int(rng.integers(-(2**62), 2**62)) << int(rng.integers(0, 80))
            exp = -int(rng.integers(0, 200))
            got = arb_linalg._truncated(num, exp, prec)
            ball = flint.arb(flint.fmpq(num, 1) / flint.fmpq(2) ** -exp)
            if got is None:
                assert ball.rad() == 0
            else:
                assert ball.mid() == flint.arb(got) and ball.rad() > 0
