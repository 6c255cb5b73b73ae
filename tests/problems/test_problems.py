"""Tests for precision.problems: dtypes, pinned inputs, first-order bounds, condition numbers.

Every expected value comes from mpmath (``precision.truth.exact.ground_truth``, or an independent
evaluation here) and every tolerance from the variant's own documented first-order bound
``bound(x, fmt)``, widened only by the second-order factor ``1 + n u``. Inputs are rounded to the
format first (``formats.cast``): the reference is the exact function of the input as the
algorithm received it.
"""

from __future__ import annotations

import math
import zlib
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import scipy.special
from members import bound_problem, members
from same_bits import nan_blind

from precision.core.formats import cast, get_format, round_to_format
from precision.core.metrics import Exact, normwise_relative_error, relative_error
from precision.problems import DEFAULT_VARIANTS, PROBLEMS, logits
from precision.problems.base import Computed, Unsupported
from precision.problems.logsumexp import logsumexp_reference
from precision.run.measure import measure_variant
from precision.truth.exact import ground_truth, to_mpf_array

FORMATS = ["float16", "bfloat16", "float32", "float64"]
# Each problem's own variants; emulated and library variants: tests/core/test_emulate.py and
# tests/problems/test_frameworks.py.
VARIANTS = [
    (p, label)
    for p in PROBLEMS
    for label, member in members(PROBLEMS[p].variants).items()
    if member.name in DEFAULT_VARIANTS[p]
]
"""(problem, variant label) of every default variant, each member of a family apart."""
N_SAMPLE = 7  # vector length for the dtype and proposal tests

# The library variants and the library call each one makes, on a format's array. What the
# library returns (or raises) is measured by calling it directly, never recorded from one
# version: scipy.special.logsumexp returned float64 for bfloat16 with ml_dtypes 0.6 and raises
# a TypeError with 0.7 (../shared/NUMERICS.md); softmax keeps the dtype in both.
LIBRARY_CALLS = {
    ("softmax", "scipy"): lambda x: scipy.special.softmax(x),
    ("logsumexp", "scipy"): lambda x: np.asarray(scipy.special.logsumexp(x)),
}


def library_behaviour(key: tuple[str, str], fmt: str) -> tuple[str | None, str | None]:
    """(dtype the library returns, None) or (None, exception type) for the library's own call
    on an array of ``fmt``, called here directly."""
    x = cast(np.array([0.5, -1.0, 2.0, 0.25, -3.0, 1.5, 0.0]), fmt)
    try:
        return LIBRARY_CALLS[key](x).dtype.name, None
    except Exception as exc:
        return None, type(exc).__name__


# Issue 6 (optimisation and calculus): outputs other than one value per input element, and
# variants whose output is wider than the format by design (float32 master weights).
OUTPUT_SHAPE = {
    # Issue 17: elementwise activations, one output per input element
    "gelu": (N_SAMPLE,),
    "silu": (N_SAMPLE,),
    "adam_update": (N_SAMPLE,),  # issue 17: the update of every element
    "fd_hessian": (N_SAMPLE * N_SAMPLE,),
    "quadratic": (N_SAMPLE,),
    "critical_point": (N_SAMPLE,),
    "constrained_ls": (N_SAMPLE,),
    # Issue 4 (linear algebra): solutions of n unknowns; kappa_2(A) is one value.
    "linear_system": (N_SAMPLE,),
    "matrix_condition": (1,),
    "least_squares": (N_SAMPLE,),
    "least_squares_residual": (N_SAMPLE,),
    "ridge": (N_SAMPLE,),
    # Issue 17: LayerNorm and RMSNorm normalise the row
    "layer_norm": (N_SAMPLE,),
    "rms_norm": (N_SAMPLE,),
    "attention": (16,),  # issue 17: one query's output, d = 16
}
_NUMPY_LINALG = {  # numpy.linalg computes every dtype in float64 (and refuses float16)
    ("linear_system", "numpy_solve"),
    ("linear_system", "numpy_inv"),
    ("matrix_condition", "numpy_svd"),
    ("matrix_condition", "numpy_cond"),
    ("least_squares", "numpy_lstsq"),
    ("least_squares_residual", "numpy_lstsq"),
    ("ridge", "numpy_solve"),
}
WIDER_OUTPUT = {
    **dict.fromkeys(_NUMPY_LINALG, lambda fmt: "float64"),
    ("linear_system", "scipy_solve"): lambda fmt: {"float16": "float32"}.get(
        fmt, "float64" if fmt == "bfloat16" else fmt
    ),
    ("quadratic", "gd_master32"): lambda fmt: "float64" if fmt == "float64" else "float32",
    ("quadratic", "scipy_bfgs"): lambda fmt: "float64",
    ("constrained_ls", "numpy_solve"): lambda fmt: "float64",  # the ridge problem's variant
    # Issue 17: a GEMM leaves its accumulator's value in float32
    ("dot", "float32_accumulator"): lambda fmt: "float32",
    ("dot", "limited_accumulator"): lambda fmt: "float32",
    # Issue 17: the weight gradient is accumulated and unscaled in float32
    **dict.fromkeys(
        [("loss_scaling", v) for v in ("unscaled", "static_scale", "dynamic_scale")],
        lambda fmt: "float64" if fmt == "float64" else "float32",
    ),
}
UNSUPPORTED = {
    ("critical_point", "numpy_eigvalsh"): {"float16", "bfloat16"},
    ("constrained_ls", "numpy_solve"): {"float16"},
    **dict.fromkeys(_NUMPY_LINALG, {"float16"}),
    ("dot", "limited_accumulator"): {"float64"},  # products of 53-bit inputs are not exact
    ("dot", "float32_accumulator"): {"float64"},  # a float32 accumulator would round the input
    ("layer_norm", "float32_statistics"): {"float64"},  # float32 would round the input
    ("rms_norm", "float32_statistics"): {"float64"},
    # Issue 17: attention with float32 statistics would round a float64 input
    **dict.fromkeys(
        [
            ("attention", "two_pass float32_stats=1"),
            ("attention", "online float32_stats=1"),
            ("attention", "blockwise float32_stats=1 kv_block=16"),
            ("attention", "blockwise float32_stats=1 kv_block=128"),
        ],
        {"float64"},
    ),
}
"""Variants that raise Unsupported (their rows: outcome unsupported) in these formats."""
PROPOSED_INPUTS = (
    "fd_exp",
    "fd_softplus",
    "fd_network",
    "fd_hessian",
    "quadratic",
    "critical_point",
    "constrained_ls",
    "linear_system",
    "matrix_condition",
    "least_squares",
    "least_squares_residual",
    "ridge",
    "dot",
    "adam_update",
    "attention",
    "loss_scaling",
)
"""Problems whose well-scaled test inputs are their own proposals (not Gaussian vectors)."""

# Variants whose first-order bound must hold on every well-scaled input (finite, not NaN).
STABLE = {
    "exp": ["numpy"],
    "softmax": ["shifted", "scipy"],
    "logsumexp": ["shifted", "log1p"],
    "log_softmax": ["shifted"],
    "cross_entropy": ["from_logits"],
}


@pytest.fixture(autouse=True)
def _mpmath_precision_unchanged():
    assert mpmath.mp.prec == 53
    yield
    assert mpmath.mp.prec == 53


def _quiet():
    """Overflow, 0/0 and log(0) are the behaviour under test in the naive variants."""
    return np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")


def _bound(problem_name: str, variant_name: str, x: np.ndarray, fmt: str) -> float:
    """The variant's bound, called as the study runner calls it (floating-point exceptions
    ignored: a bound may overflow on its way to NaN)."""
    with np.errstate(all="ignore"):
        return PROBLEMS[problem_name].variants[variant_name].bound(x, get_format(fmt))


def _input(x, fmt: str) -> np.ndarray:
    return cast(np.asarray(x, dtype=np.float64), fmt)


def _size(x: np.ndarray) -> int:
    """n of the first-order bounds: the vector length (row length for cross-entropy)."""
    return x.shape[-1]


def _check_bound(problem_name, variant_name, x, fmt, gt=None):
    """Assert the variant's normwise error is within bound * (1 + n u); return (y, err, bound)."""
    problem = PROBLEMS[problem_name]
    variant = problem.variants[variant_name]
    f = get_format(fmt)
    gt = ground_truth(problem, x, f) if gt is None else gt
    assert gt.certified
    with _quiet():
        y = variant.compute(x)
    err = normwise_relative_error(y, gt.exact)
    bound = _bound(problem_name, variant_name, x, fmt)
    assert np.isfinite(bound), f"{problem_name}/{variant_name} bound is {bound} for {x!r}"
    limit = bound * (1 + _size(x) * f.u)
    assert err <= limit, (
        f"{problem_name}/{variant_name} in {fmt}: error {err / f.u:.3g} u "
        f"> bound {limit / f.u:.3g} u for x={x!r}"
    )
    return y, err, bound


# ------------------------------------------------------------------------- output dtypes


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("problem_name", "variant_name"), VARIANTS)
def test_output_dtype_is_what_the_variant_really_returns(problem_name, variant_name, fmt):
    problem = PROBLEMS[problem_name]
    variant = members(problem.variants)[variant_name]
    # The tables below are keyed by name, or by member where members of a family differ.
    refused = UNSUPPORTED.get(
        (problem_name, variant_name), UNSUPPORTED.get((problem_name, variant.name), ())
    )
    variant_name = variant.name
    rng = np.random.default_rng(1)
    x = cast(problem.propose(rng, n=N_SAMPLE, magnitude=2.0, cond=1.0, size=1)[0], fmt)
    assert x.dtype == get_format(fmt).dtype
    if fmt in refused:
        with pytest.raises(Unsupported):
            variant.compute(x)
        return
    key = (problem_name, variant_name)
    if variant.library != "numpy" and key not in WIDER_OUTPUT:
        # A new library variant must have its library call listed above.
        assert key in LIBRARY_CALLS
        expected, raises = library_behaviour(key, fmt)
        if raises is not None:  # the variant raises as the library does: an error row
            with pytest.raises(Exception) as caught, _quiet():
                variant.compute(x)
            assert type(caught.value).__name__ == raises
            return
    elif key in WIDER_OUTPUT:
        expected = WIDER_OUTPUT[key](fmt)
    else:
        expected = fmt
    with _quiet():
        y = variant.compute(x)
    if isinstance(y, Computed):  # an iterative variant: its result and iteration count
        y = y.y
    assert isinstance(y, np.ndarray)
    assert y.dtype == get_format(expected).dtype, f"{problem_name}/{variant_name} {fmt}"
    vector_output = problem_name in ("softmax", "log_softmax", "batchnorm", "batchnorm_finfo_eps")
    if problem_name in OUTPUT_SHAPE:
        assert y.shape == OUTPUT_SHAPE[problem_name]
        return
    assert y.shape == ((N_SAMPLE,) if vector_output else (1,))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", list(LIBRARY_CALLS))
def test_library_rows_say_what_the_library_did(key, fmt):
    """A library variant's row carries what the installed library really does in ``fmt``,
    measured by calling the library directly: the dtype it returned (an upcast shows in
    compute_dtype), or the exception it raised (outcome error, with its type)."""
    problem_name, variant_name = key
    problem = PROBLEMS[problem_name]
    x = cast(np.array([0.5, -1.0, 2.0, 0.25, -3.0, 1.5, 0.0]), fmt)
    truth = ground_truth(problem, x, fmt)
    _, row = measure_variant(problem, variant_name, x, get_format(fmt), truth.exact)
    dtype, raises = library_behaviour(key, fmt)
    if raises is None:
        assert row["outcome"] == "ok" and row["compute_dtype"] == dtype
    else:
        assert row["outcome"] == "error" and row["compute_dtype"] == ""
        assert row["exception"].startswith(f"{raises}:")
        assert np.isnan(row["bound"]) and "rel_error" not in row


# ------------------------------------------------------------------------- pinned inputs


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value", [1000.0, -1000.0])
def test_softmax_of_equal_large_logits(fmt, value):
    """softmax([v, v, v]) = 1/3 each: shifted and scipy give 1/3 correctly rounded (the only
    rounding is 1/3 itself); naive gives nan: inf/inf for +1000, 0/0 for -1000."""
    x = _input([value] * 3, fmt)
    gt = ground_truth(PROBLEMS["softmax"], x, fmt)
    third = round_to_format(Fraction(1, 3), fmt)  # rounded once, from the exact value
    assert np.array_equal(gt.exact.rounded, np.full(3, third, dtype=get_format(fmt).dtype))
    for name in ("shifted", "scipy"):
        y, _, _ = _check_bound("softmax", name, x, fmt, gt)
        assert np.array_equal(y, gt.exact.rounded)
    with _quiet():
        naive = PROBLEMS["softmax"].variants["naive"].compute(x)
    assert np.isnan(naive.astype(np.float64)).all()
    assert math.isnan(_bound("softmax", "naive", x, fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_logsumexp_of_twelve(fmt):
    """lse([12]) = 12: exp(12) = 162755 overflows float16 (max 65504) only; the shifted forms
    compute 12 + log(1) = 12 exactly in every format."""
    x = _input([12.0], fmt)
    gt = ground_truth(PROBLEMS["logsumexp"], x, fmt)
    assert gt.exact.rounded[0] == 12
    for name in ("shifted", "log1p"):
        y, err, _ = _check_bound("logsumexp", name, x, fmt, gt)
        assert y[0] == 12 and err == 0
    naive = PROBLEMS["logsumexp"].variants["naive"]
    if fmt == "float16":
        with _quiet():
            assert np.isposinf(naive.compute(x)[0])
        assert math.isnan(_bound("logsumexp", "naive", x, fmt))
    else:
        _check_bound("logsumexp", "naive", x, fmt, gt)


EXP_THRESHOLDS = [
    # (format, x below ln(max): finite, x above: overflows)
    ("float16", 11.0, 11.1),
    ("bfloat16", 88.5, 89.0),  # bfloat16 spacing at 88 is 0.5
    ("float32", 88.7, 88.8),
    ("float64", 709.78, 709.79),
]


@pytest.mark.parametrize(("fmt", "finite", "overflows"), EXP_THRESHOLDS)
def test_exp_overflow_threshold(fmt, finite, overflows):
    f = get_format(fmt)
    problem = PROBLEMS["exp"]
    x_fin, x_inf = _input([finite], fmt), _input([overflows], fmt)
    assert float(x_fin[0]) < math.log(f.max) < float(x_inf[0])
    gt_fin, gt_inf = ground_truth(problem, x_fin, f), ground_truth(problem, x_inf, f)
    # The exact exp of the rounded input rounds to a finite value / overflows.
    assert np.isfinite(gt_fin.exact.rounded[0]) and np.isposinf(gt_inf.exact.rounded[0])
    _check_bound("exp", "numpy", x_fin, fmt, gt_fin)
    with _quiet():
        assert np.isposinf(problem.variants["numpy"].compute(x_inf)[0])
    assert math.isnan(_bound("exp", "numpy", x_inf, fmt))


def test_float16_input_11_1_rounds_up_and_overflows():
    x = _input([11.1], "float16")
    assert float(x[0]) == 11.1015625
    with mpmath.workprec(100):
        assert mpmath.exp(mpmath.mpf(float(x[0]))) > get_format("float16").max


def test_float32_exp_within_kernel_bound_at_known_counterexample():
    """np.exp(float32(0.39996788)) is 2 ulps (2.18 u) below the correctly rounded exp with
    numpy's SIMD float32 kernel: the bound must allow the kernel's 2.52 ulps, not one ulp."""
    _check_bound("exp", "numpy", _input([0.39996788], "float32"), "float32")


@pytest.mark.parametrize("fmt", FORMATS)
def test_log_softmax_with_one_dominant_entry(fmt):
    """x = [30, 0, 0, 0]: y_0 = -log1p(3 e^-30) ~ -2.8e-13, y_i = y_0 - 30. The shifted form is
    within its normwise bound and rounds the large components correctly (y_0 itself is lost to
    1 + 3e^-30 = 1, which the normwise measure allows); in float16 exp(30) > 65504, so the naive
    form gives nan (inf/inf) and -inf (log of 1/inf) and its bound says it does not apply."""
    x = _input([30.0, 0.0, 0.0, 0.0], fmt)
    gt = ground_truth(PROBLEMS["log_softmax"], x, fmt)
    y, _, _ = _check_bound("log_softmax", "shifted", x, fmt, gt)
    assert np.isfinite(y.astype(np.float64)).all()
    assert np.array_equal(y[1:], gt.exact.rounded[1:])
    naive = PROBLEMS["log_softmax"].variants["naive"]
    if fmt == "float16":  # exp(30) > 65504
        with _quiet():
            y_naive = naive.compute(x).astype(np.float64)
        assert np.isnan(y_naive[0]) and np.isneginf(y_naive[1:]).all()
        assert math.isnan(_bound("log_softmax", "naive", x, fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_cross_entropy_from_logits_vs_from_probabilities(fmt):
    """logits [0, -20], target class 1: CE = 20 + log1p(e^-20). In float16 p_1 = 2e-9 underflows
    (min subnormal 6e-8), so -log(p_1) = inf; from logits the loss is accurate everywhere."""
    x = _input([[0.0, -20.0], [0.0, 1.0]], fmt)
    gt = ground_truth(PROBLEMS["cross_entropy"], x, fmt)
    _check_bound("cross_entropy", "from_logits", x, fmt, gt)
    variant = PROBLEMS["cross_entropy"].variants["from_probabilities"]
    if fmt == "float16":
        with _quiet():
            assert np.isposinf(variant.compute(x)[0])
        assert math.isnan(_bound("cross_entropy", "from_probabilities", x, fmt))
    else:
        _check_bound("cross_entropy", "from_probabilities", x, fmt, gt)


NAIVE_UNDERFLOW = [
    # (problem, format, input): every / some exp(x_i) is subnormal or zero in the format while
    # no g_i underflows and nothing overflows, so the naive bounds return a finite value.
    ("logsumexp", "float16", [-20.0, -20.0]),  # exp(-20) -> 0, log(0) = -inf
    ("log_softmax", "float32", [-100.0, -101.0]),  # exp(-100) subnormal: error ~6e4 u
    ("log_softmax", "bfloat16", [-100.0, -101.0]),  # subnormal terms, then nan
]


@pytest.mark.parametrize(("problem_name", "fmt", "values"), NAIVE_UNDERFLOW)
def test_naive_bound_is_nan_or_holds_when_terms_underflow(problem_name, fmt, values):
    x = _input(values, fmt)
    if math.isnan(_bound(problem_name, "naive", x, fmt)):
        return
    _check_bound(problem_name, "naive", x, fmt)


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_from_logits_bound_is_finite_for_a_confident_prediction(fmt):
    """logits [40, 0], target class 0: CE = log1p(e^-40) ~ 4.2e-18 > 0, well defined."""
    _check_bound("cross_entropy", "from_logits", _input([[40.0, 0.0], [1.0, 0.0]], fmt), fmt)


# ------------------------------------------------------------- bounds on random inputs


def _well_scaled_inputs(problem_name: str, fmt: str, count: int, seed: int):
    """Seeded well-scaled inputs in the format: Gaussian logits of spread 0.5..8 and
    n in [10, 100]; exp gets scalars whose exp is a normal number of the format."""
    f = get_format(fmt)
    rng = np.random.default_rng(seed)
    for i in range(count):
        if problem_name == "exp":
            lo, hi = 0.9 * math.log(f.min_normal), 0.9 * math.log(f.max)
            yield cast(rng.uniform(lo, hi, size=1), f)
            continue
        if problem_name in PROPOSED_INPUTS:
            problem = PROBLEMS[problem_name]
            yield cast(problem.propose(rng, n=6, magnitude=2.0, cond=2.0, size=1)[0], f)
            continue
        n = int(rng.integers(10, 101))
        x = rng.standard_normal(n) * (0.5, 2.0, 8.0)[i % 3]
        if problem_name == "cross_entropy":
            target = np.zeros(n)
            target[np.argmax(x) if i % 2 else rng.integers(n)] = 1.0
            x = np.stack([x, target])
        if problem_name == "cancellation":  # a pair [a, b]
            x = x[:2]
        yield cast(x, f)


BOUND_CASES = [(fmt, name) for fmt in FORMATS for name in STABLE]


@pytest.mark.parametrize(("fmt", "problem_name"), BOUND_CASES)
def test_stable_variants_within_first_order_bound(fmt, problem_name):
    """error <= bound * (1 + n u) for every stable variant on seeded well-scaled inputs."""
    problem = PROBLEMS[problem_name]
    count = 400 if problem_name == "exp" else 30  # exp's ground truth is cheap
    seed = FORMATS.index(fmt) * 10 + list(STABLE).index(problem_name)
    failures = []
    for x in _well_scaled_inputs(problem_name, fmt, count, seed):
        gt = ground_truth(problem, x, fmt)
        for name in STABLE[problem_name]:
            try:
                _check_bound(problem_name, name, x, fmt, gt)
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, f"{len(failures)} violations, e.g. {failures[:3]}"


# ---------------------------------------------------------------- condition numbers


@pytest.mark.parametrize("problem_name", list(PROBLEMS))
def test_reference_condition_agrees_with_float64_estimate(problem_name):
    problem = bound_problem(PROBLEMS[problem_name])
    checked = 0
    for x in _well_scaled_inputs(problem_name, "float64", 12, seed=11):
        gt = ground_truth(problem, x, "float64")
        cond, magnitude = problem.estimate(x[None])
        assert gt.cond < 1e3  # well-conditioned, so the float64 estimate is accurate
        assert float(cond[0]) == pytest.approx(gt.cond, rel=1e-6)
        assert float(magnitude[0]) == problem.magnitude(x)
        checked += 1
    assert checked == 12


def test_softmax_condition_at_most_twice_max_abs():
    """NUMERICS: kappa_softmax <= 2 max|x|, over proposals of every magnitude and condition."""
    problem = PROBLEMS["softmax"]
    rng = np.random.default_rng(3)
    for magnitude in (0.1, 3.0, 50.0):
        for cond in (1.0, 1e4):
            for x in problem.propose(rng, n=12, magnitude=magnitude, cond=cond, size=4):
                gt = ground_truth(problem, x, "float64")
                assert gt.cond <= 2 * np.abs(x).max() * (1 + 1e-12)


# ---------------------------------------------------------------------- proposals


PROPOSED_SHAPE = {
    "adam_update": (3, N_SAMPLE),
    "gelu": (N_SAMPLE,),
    "silu": (N_SAMPLE,),
    "exp": (1,),
    "softmax": (N_SAMPLE,),
    "logsumexp": (N_SAMPLE,),
    "log_softmax": (N_SAMPLE,),
    "cross_entropy": (2, N_SAMPLE),
    "summation": (N_SAMPLE,),
    "cancellation": (2,),
    "variance": (N_SAMPLE,),
    "batchnorm": (N_SAMPLE,),
    "batchnorm_finfo_eps": (N_SAMPLE,),
    "weight_update": (N_SAMPLE,),
    "fd_exp": (1,),
    "fd_softplus": (1,),
    "fd_network": (1,),
    "fd_hessian": (N_SAMPLE,),
    "quadratic": (N_SAMPLE, N_SAMPLE + 1),
    "critical_point": (N_SAMPLE, N_SAMPLE),
    "constrained_ls": (2 * N_SAMPLE + 1, N_SAMPLE + 1),
    "linear_system": (N_SAMPLE, N_SAMPLE + 1),
    "matrix_condition": (N_SAMPLE, N_SAMPLE),
    "least_squares": (2 * N_SAMPLE, N_SAMPLE + 1),
    "least_squares_residual": (2 * N_SAMPLE, N_SAMPLE + 1),
    "ridge": (2 * N_SAMPLE + 1, N_SAMPLE + 1),
    "dot": (2, N_SAMPLE),
    "layer_norm": (N_SAMPLE,),
    "rms_norm": (N_SAMPLE,),
    "attention": (2 * N_SAMPLE + 1, 16),  # q, then L keys, then L values
    "loss_scaling": (3, N_SAMPLE),  # x, then dy = g 2^e as g and e
}


@pytest.mark.parametrize("problem_name", list(PROBLEMS))
def test_propose_shape_and_finiteness(problem_name):
    problem = PROBLEMS[problem_name]
    rng = np.random.default_rng(5)
    X = problem.propose(rng, n=N_SAMPLE, magnitude=3.0, cond=10.0, size=6)
    assert X.shape == (6, *PROPOSED_SHAPE[problem_name])
    assert X.shape[1:] == problem.input_shape(N_SAMPLE)
    assert X.dtype == np.float64 and np.isfinite(X).all()
    if problem_name == "cross_entropy":  # one-hot targets
        assert set(np.unique(X[:, 1])) <= {0.0, 1.0}
        assert np.array_equal(X[:, 1].sum(axis=1), np.ones(6))
    if problem_name == "exp":  # |x| = magnitude * 10**[-0.05, 0.05]
        assert np.all(np.abs(np.log10(np.abs(X[:, 0]) / 3.0)) <= 0.05 + 1e-12)


class _MidpointGenerator:
    """A stand-in for numpy's Generator whose ``uniform`` draws are known: element k of a draw of
    N values is at fraction (k + 1) / (N + 1) of [low, high]; ``choice`` cycles through its
    options. Everything else comes from a real seeded Generator (it does not move L)."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)

    def uniform(self, low=0.0, high=1.0, size=None):
        shape = () if size is None else tuple(np.atleast_1d(size))
        count = math.prod(shape)
        q = ((np.arange(count) + 1.0) / (count + 1.0)).reshape(shape)
        return low + (high - low) * q  # low and high broadcast against the draw, as numpy's

    def choice(self, options, size=None):
        options = np.asarray(options)
        shape = () if size is None else tuple(np.atleast_1d(size))
        return options[np.arange(math.prod(shape)) % options.size].reshape(shape)

    def __getattr__(self, name):
        return getattr(self._rng, name)


def _exact_lse(x: np.ndarray) -> float:
    with mpmath.workprec(113):
        (y,), _ = logsumexp_reference(to_mpf_array(x))
        return float(y)


@pytest.mark.parametrize(
    ("n", "magnitude", "cond"), [(2, 1.0, 1.0), (10, 5.0, 1e3), (64, 30.0, 1e8)]
)
def test_propose_logits_hits_the_requested_lse(n, magnitude, cond):
    """By construction x = y - lse(y) + L has lse(x) = L up to float64 rounding. L is
    log-uniform (with a random sign) in [magnitude / (10 cond), max(2 magnitude,
    log n + 2 magnitude, 10 magnitude / cond)]; with known uniform draws L is known."""
    size = 8
    low = magnitude / (10 * cond)
    high = max(2 * magnitude, math.log(n) + 2 * magnitude, 10 * magnitude / cond)
    X = logits.propose_logits(_MidpointGenerator(0), n=n, magnitude=magnitude, cond=cond, size=size)
    q = (np.arange(size) + 1.0) / (size + 1.0)
    level = 10.0 ** (np.log10(low) + q * (np.log10(high) - np.log10(low)))
    sign = np.array([-1.0, 1.0])[np.arange(size) % 2]
    for x, target in zip(X, sign * level, strict=True):
        tol = 2.0**-53 * (n + 4) * (1 + np.abs(x).max() + abs(target))
        assert abs(_exact_lse(x) - target) <= tol

    # With a real generator: every lse lies in the documented range, both signs occur.
    X = logits.propose_logits(
        np.random.default_rng(9), n=n, magnitude=magnitude, cond=cond, size=40
    )
    lse = np.array([_exact_lse(x) for x in X])
    tol = 2.0**-53 * (n + 4) * (1 + np.abs(X).max(axis=1) + high)
    assert np.all(np.abs(lse) >= low - tol) and np.all(np.abs(lse) <= high + tol)
    assert (lse > 0).any() and (lse < 0).any()


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_references_keep_a_term_far_below_the_working_precision(fmt):
    """x = [0, -200]: lse = log1p(e^-200) ~ 1.4e-87, log_softmax_0 = -lse, and the cross-entropy
    of the confident class 0 is lse too. Forming log(1 + e^-200) at 160 bits gives 0 at every
    precision below ~300 bits, and two such precisions would agree on the wrong 0."""
    x = cast(np.array([0.0, -200.0]), fmt)
    with mpmath.workprec(400):
        lse = mpmath.log1p(mpmath.exp(-200))
        expected = [lse, -lse, lse]
    truths = [
        ground_truth(PROBLEMS["logsumexp"], x, fmt).exact,
        ground_truth(PROBLEMS["log_softmax"], x, fmt).exact,
        ground_truth(
            PROBLEMS["cross_entropy"], np.stack([x, cast(np.array([1.0, 0.0]), fmt)]), fmt
        ).exact,
    ]
    for truth, value in zip(truths, expected, strict=True):
        assert (
            relative_error(
                np.array([float(value)]), Exact(truth.hi[:1], truth.lo[:1], truth.exp[:1])
            )[0]
            < 1e-15
        )


# ------------------------------------------------------------------ batch kernels

BATCH_PROBLEMS = ["softmax", "logsumexp", "log_softmax", "cross_entropy", "exp"]
BATCH_FORMATS = [*FORMATS, "float8_e4m3fn", "float8_e5m2"]


def _batch_of_inputs(problem_name: str, n: int, fmt: str) -> np.ndarray:
    """Proposals from tiny to overflowing magnitudes, and rows holding inf, NaN, ties, zeros."""
    problem, rng = PROBLEMS[problem_name], np.random.default_rng(n)
    X = np.concatenate(
        [problem.propose(rng, n=n, magnitude=m, cond=10.0, size=3) for m in (1e-2, 3.0, 300.0, 3e4)]
    )
    logit_rows = X[:, 0] if problem_name == "cross_entropy" else X
    logit_rows[0, 0], logit_rows[1, -1] = np.inf, np.nan
    logit_rows[2], logit_rows[3] = 0.0, -0.0
    with np.errstate(invalid="ignore"):
        return cast(X, fmt)


def _same_bound(a, b) -> bool:
    a, b = np.float64(a), np.float64(b)
    return bool(np.isnan(a) and np.isnan(b)) or a.tobytes() == b.tobytes()


@pytest.mark.parametrize("problem_name", BATCH_PROBLEMS)
@pytest.mark.parametrize("fmt", BATCH_FORMATS)
def test_batch_kernels_compute_rows_independently(problem_name, fmt):
    """Every numpy and scipy variant of the softmax family and exp is a batch kernel along the
    last axis: row i of ``kernel(X)`` equals ``kernel(X[i:i+1])[0]`` and the kernel on the
    single input ``X[i]`` (one function body for both), bit for bit, NaNs by bits; the bound of
    the batch is each row's bound. (Library kernels: tests/problems/test_frameworks.py.)"""
    problem, f = PROBLEMS[problem_name], get_format(fmt)
    sizes = (1,) if problem_name == "exp" else (2, 9, 130)
    checked = 0
    for n in sizes:
        X = _batch_of_inputs(problem_name, n, fmt)
        for name, variant in problem.variants.items():
            if variant.library not in ("numpy", "scipy"):
                continue
            assert variant.batched, name
            with np.errstate(all="ignore"):
                try:
                    batch = variant.kernel(X)
                except Exception as exc:  # a library refusing the format refuses every row
                    with pytest.raises(type(exc)):
                        variant.kernel(X[0])
                    continue
                bounds = None if variant.bound is None else variant.bound(X, f)
                for i in range(len(X)):
                    one, single = variant.kernel(X[i : i + 1]), variant.kernel(X[i])
                    assert batch[i].tobytes() == one[0].tobytes() == single.tobytes(), (name, i)
                    assert batch.shape[1:] == single.shape, name
                    if bounds is not None:
                        alone = variant.bound(X[i], f)
                        assert isinstance(alone, float), name
                        assert _same_bound(bounds[i], alone), (name, i, bounds[i], alone)
            assert bounds is None or np.shape(bounds) == (len(X),), name
            checked += 1
    assert checked >= len(sizes)


# ------------------------------------------------------------------ one body, two arithmetics
#
# The kernels of the softmax family are written once over an arithmetic ``ops``
# (`precision.core.ops`). Run with numpy's (the default) they must be the numpy formulas they
# replaced, bit for bit and flag for flag; run with an `Emulator` they must round every
# operation, which is checked against the registry's own correct rounding (``formats.cast``).


def _numpy_softmax_naive(x):
    e = np.exp(x)
    return e / np.sum(e, axis=-1, keepdims=True)


def _numpy_softmax_shifted(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _numpy_logsumexp_shifted(x):
    a = np.max(x, axis=-1, keepdims=True)
    return a + np.log(np.sum(np.exp(x - a), axis=-1, keepdims=True))


def _numpy_log_softmax_shifted(x):
    z = x - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


NUMPY_FORMULAS = {
    ("softmax", "naive"): _numpy_softmax_naive,
    ("softmax", "shifted"): _numpy_softmax_shifted,
    ("logsumexp", "naive"): lambda x: np.log(np.sum(np.exp(x), axis=-1, keepdims=True)),
    ("logsumexp", "shifted"): _numpy_logsumexp_shifted,
    ("log_softmax", "naive"): lambda x: np.log(_numpy_softmax_naive(x)),
    ("log_softmax", "shifted"): _numpy_log_softmax_shifted,
}
"""The numpy kernels as written before they took ``ops``: the textbook formula in numpy."""


def _flagged(kernel, x):
    """``kernel(x)`` and the IEEE exceptions numpy reported (as the runner records them)."""
    raised: set[str] = set()
    with np.errstate(all="call", call=lambda kind, _flag: raised.add(kind)):
        return kernel(x), raised


@pytest.mark.parametrize("fmt", BATCH_FORMATS)
@pytest.mark.parametrize(("problem_name", "variant_name"), list(NUMPY_FORMULAS))
def test_numpy_ops_body_is_the_numpy_formula(problem_name, variant_name, fmt):
    """With the default ops the one body is the numpy formula: the same values bit for bit
    (NaN signs aside in float8) and the same IEEE exceptions, on batches from tiny to
    overflowing magnitudes with inf, NaN and signed zeros."""
    kernel = PROBLEMS[problem_name].variants[variant_name].kernel
    for n in (1, 2, 9, 130):
        X = _batch_of_inputs(problem_name, n, fmt)
        (y, raised), (want, want_raised) = (
            _flagged(f, X) for f in (kernel, NUMPY_FORMULAS[(problem_name, variant_name)])
        )
        assert y.dtype == want.dtype == X.dtype
        assert nan_blind(y, fmt) == nan_blind(want, fmt) and raised == want_raised, n


def _cast64(v: np.ndarray, fmt: str) -> np.ndarray:
    """One correct rounding of float64 values to ``fmt`` (`formats.cast`), back as float64."""
    with np.errstate(over="ignore"):
        return cast(v, fmt).astype(np.float64)


def _rounded_shifted_terms(x: np.ndarray, fmt: str):
    """z = fl(x - max x), e = fl(exp z) and s = sum e left to right, every step rounded to the
    format by `formats.cast` (one row, float64 values of the format)."""
    v = x.astype(np.float64)
    z = _cast64(v - v.max(), fmt)
    e = _cast64(np.exp(z), fmt)
    s = e[0]
    for term in e[1:]:
        s = _cast64(np.array(s + term), fmt)
    return v, z, e, s


ROUNDED_FORMULAS = {
    "softmax": lambda v, z, e, s, fmt: _cast64(e / s, fmt),
    "logsumexp": lambda v, z, e, s, fmt: _cast64(v.max() + _cast64(np.log(s), fmt), fmt),
    "log_softmax": lambda v, z, e, s, fmt: _cast64(z - _cast64(np.log(s), fmt), fmt),
}
"""The shifted forms with each operation rounded once to the format, after the terms."""


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32", "float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("problem_name", list(ROUNDED_FORMULAS))
def test_emulator_runs_the_same_body_with_every_operation_rounded(problem_name, fmt):
    """The ``shifted_emulated`` variant is the shifted body run with an `Emulator`: each
    subtraction, exp, addition of the sum (left to right), log and the final operation
    rounded once to the format, bit for bit as `formats.cast` rounds the float64 result of each
    step (exp and log from the same float64 libm on both sides)."""
    emulated = PROBLEMS[problem_name].variants["shifted_emulated"].kernel
    rng = np.random.default_rng(zlib.crc32(f"{problem_name} {fmt}".encode()))
    for n in (1, 3, 17):
        X = np.concatenate(
            [
                logits.propose_logits(rng, n=n, magnitude=m, cond=10.0, size=4)
                for m in (0.1, 3.0, 30.0)
            ]
        )
        X = cast(X, fmt)
        with np.errstate(all="ignore"):
            Y = emulated(X).astype(np.float64)
            for i, x in enumerate(X):
                want = ROUNDED_FORMULAS[problem_name](*_rounded_shifted_terms(x, fmt), fmt)
                assert Y[i].tobytes() == np.atleast_1d(want).tobytes(), (n, i)


@pytest.mark.parametrize("problem_name", ["softmax", "logsumexp", "log_softmax"])
def test_float64_emulator_body_is_the_float64_formula_summed_left_to_right(problem_name):
    """In float64 an `Emulator` rounds nothing (its rounding is the identity), so the shifted
    body with it is the numpy formula in float64 with the sum taken left to right
    (``np.add.accumulate``) instead of ``np.sum``'s pairwise order: bit for bit."""
    rng = np.random.default_rng(5)
    for rows in (5, 40):  # the emulator sums few rows one by one, many vectorised
        X = logits.propose_logits(rng, n=40, magnitude=30.0, cond=10.0, size=rows)
        a = np.max(X, axis=-1, keepdims=True)
        e = np.exp(X - a)
        s = np.add.accumulate(e, axis=-1)[..., -1:]
        want = {"softmax": e / s, "logsumexp": a + np.log(s), "log_softmax": (X - a) - np.log(s)}
        got = PROBLEMS[problem_name].variants["shifted_emulated"].kernel(X)
        assert got.tobytes() == want[problem_name].tobytes(), rows
