"""Ground truth of a batch at once (precision.truth.batch): every input gets what the
per-input engine gives it, field for field and bit for bit, for exp's declared batch evaluator,
for any reference batched row by row, and for the other problems through the per-input path."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from same_bits import truth_bits
from truth_inputs import FORMATS, ordinary_input, vectorised_inputs

from precision.core.double_double import EXP_DOMAIN as DD_EXP_DOMAIN
from precision.core.formats import cast, get_format
from precision.problems import PROBLEMS
from precision.truth.batch import BatchTruths, ground_truths_batch, register_batch_reference
from precision.truth.enclosed import DD_PREC
from precision.truth.exact import ENGINES, PRECISIONS, UndefinedResult, ground_truths


def _assert_batch_is_per_input(problem, X, fmts, **options) -> BatchTruths:
    """`ground_truths_batch` gives every input what `ground_truths` gives it, field for field
    and bit for bit (seconds apart); an undefined input is None in both."""
    batch = ground_truths_batch(problem, X, fmts, **options)
    assert len(batch) == len(X) and batch.formats == tuple(get_format(f).name for f in fmts)
    for b, x in enumerate(X):
        try:
            expected = ground_truths(problem, x, fmts, **options)
        except UndefinedResult:
            expected = None
        found = batch.truths(b)
        if expected is None:
            assert found is None, (problem.name, x)
            continue
        assert list(found) == list(expected)
        for name in expected:
            assert truth_bits(found[name]) == truth_bits(expected[name]), (problem.name, x, name)
    return batch


def _exp_thresholds(fmt: str) -> np.ndarray:
    """Inputs x whose exp lies on or next to a boundary of ``fmt``: RN(ln t) in float64 (ln
    taken at 200 bits) of its overflow boundary t = max + half an ulp, of half its smallest
    subnormal (below it, 0), of its smallest normal, and of the rounding ties 1 + 2**-p and
    1 - 2**-(p+1) on either side of 1 (exp(x) then lies within about 2**-53 |x| of the tie:
    too near for numpy to decide in float64 outputs), each with its two float64 neighbours."""
    f = get_format(fmt)
    with mpmath.workprec(200):
        two = mpmath.mpf(2)
        targets = [
            mpmath.mpf(float(f.max)) + two ** (f.emax - f.p + 1) / 2,
            mpmath.mpf(float(f.min_subnormal)) / 2,
            mpmath.mpf(float(f.min_normal)),
            1 + two**-f.p,
            1 - two ** -(f.p + 1),
        ]
        x = np.array([float(mpmath.log(t)) for t in targets])
    return np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])


def _exp_inputs() -> np.ndarray:
    """Random scalars over every magnitude (exp beyond float64's range included), exact zeros
    of both signs, the thresholds and near-ties of every format, and non-finite values."""
    rng = np.random.default_rng(141)
    every = [*FORMATS, "float8_e4m3fn", "float8_e5m2"]
    values = [
        rng.uniform(-20, 20, 200),
        rng.standard_normal(100) * 10.0 ** rng.uniform(-5, 4.5, 100),
        [0.0, -0.0, 1.0, -1.0, 1e5, -1e5, 1e300, -1e300, 5e-324],
        *(_exp_thresholds(fmt) for fmt in every),
        [np.inf, -np.inf, np.nan],
    ]
    return np.concatenate([np.asarray(v, dtype=np.float64) for v in values])[:, None]


@pytest.mark.parametrize("shortcut", [True, False])
@pytest.mark.parametrize("fmt", [*FORMATS, "float8_e4m3fn", "float8_e5m2"])
def test_exp_batch_is_the_per_input_path_in_each_format(fmt, shortcut):
    """exp's batch paths (evaluated and certified at once in numpy: in double-double, and with
    ``shortcut=False`` in Arb balls) give every input, as rounded to each format, its per-input
    ground truth: random, thresholds, near-ties, zeros, non-finite inputs; almost all inputs
    are settled by the batch (the others take the exact per-input path)."""
    with np.errstate(over="ignore"):
        X = cast(_exp_inputs(), fmt)
    exp = PROBLEMS["exp"]
    batch = _assert_batch_is_per_input(exp, X, [fmt], engine="arb", shortcut=shortcut)
    x = np.abs(X.astype(np.float64)).ravel()
    assert batch.certified[np.isfinite(x)].all()
    huge = np.isfinite(x) & (x >= 1e300)
    assert (batch.prec[huge] > 256).all()
    if shortcut:
        # Within the double-double evaluation's domain, |x| <= 2**19, its radius (2**-100
        # relative) settles every input but those whose exp lies within about 2**-99 of a
        # rounding boundary: only the near-ties of float64 (x ~ +-2**-53), which climb in Arb.
        near_tie = (x > 0) & (x < 2.0**-50)
        assert (batch.prec[(x <= DD_EXP_DOMAIN) & ~near_tie] == DD_PREC).all()
        assert fmt == "float64" or (batch.prec[near_tie] == DD_PREC).all()
    else:
        # Arb's exp loses about log2|x| bits to the argument reduction: |x| up to 1e5 costs 17
        # of the 33 that 113 bits hold beyond AGREEMENT, |x| near 1e300 about 1000 more bits.
        assert (batch.prec[x <= 1e5] == PRECISIONS[0]).all()


def test_exp_batch_is_the_per_input_path_for_several_formats_at_once():
    """One batch certified for every format at once (inputs common to all of them, as the
    runner shares them), and at a ladder whose first precision certifies nothing, so that
    every input climbs to the second through the per-input path."""
    X = _exp_inputs()
    exp = PROBLEMS["exp"]
    every = [*FORMATS, "float8_e4m3fn", "float8_e5m2"]
    _assert_batch_is_per_input(exp, X, every, engine="arb")
    low = _assert_batch_is_per_input(
        exp, X, FORMATS, engine="arb", precisions=(20, 113), shortcut=False
    )
    # At 20 bits a ball's radius is about 2**-20 of exp(x) = 1 + x + ..., within AGREEMENT only
    # where |x| < 2**-80 (0, 5e-324); |x| >= 1e300 needs far more than 113 bits.
    x = np.abs(X).ravel()
    climbs = (x > 2.0**-70) & (x < 1e300)
    assert (low.prec[climbs] == 113).all() and low.certified[climbs].all()
    assert (low.prec[x < 2.0**-80] == 20).all() and not low.certified[
        np.isfinite(x) & (x >= 1e300)
    ].any()


def test_exp_batch_settles_nearly_every_input_in_numpy(monkeypatch):
    """The per-input path is taken only by inputs the batch does not settle: on random inputs
    (no near-ties), none at all."""
    from precision.truth import batch as batch_module

    calls = []
    monkeypatch.setattr(
        batch_module, "ground_truths", lambda *a, **k: calls.append(a) or ground_truths(*a, **k)
    )
    X = np.random.default_rng(142).uniform(-700, 700, (500, 1))
    batch = ground_truths_batch(PROBLEMS["exp"], X, FORMATS, engine="arb")
    assert not calls and batch.certified.all() and batch.seconds.sum() > 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "problem_name", ["softmax", "logsumexp", "cross_entropy", "summation", "linear_system"]
)
def test_batches_of_other_problems_are_their_per_input_truths(problem_name, engine):
    """Problems without a batch reference (and the mpmath engine) take `ground_truths` input by
    input: the same columns, an exactly singular matrix undefined."""
    problem = PROBLEMS[problem_name]
    X = np.stack([ordinary_input(problem, "float32", seed) for seed in range(3)])
    if problem_name == "linear_system":
        X[1, :, :2] = 1.0  # two equal columns: exactly singular
    batch = _assert_batch_is_per_input(problem, X, ["float32", "float16"], engine=engine)
    assert batch.defined.tolist() == [True, problem_name != "linear_system", True]


@pytest.mark.parametrize(
    "problem_name", ["softmax", "log_softmax", "logsumexp", "cross_entropy", "linear_system"]
)
def test_a_reference_declared_cheap_is_batched_row_by_row_without_changing_a_bit(
    problem_name, monkeypatch
):
    """`register_batch_reference` with no evaluator batches any reference input by input
    (`_rowwise`): the same truths, bit for bit, also for extreme and singular inputs."""
    from precision.truth import batch as batch_module

    problem = PROBLEMS[problem_name]
    monkeypatch.setattr(batch_module, "BATCH_REFERENCES", {})
    register_batch_reference(problem.reference)
    if problem_name == "linear_system":
        X = np.stack([ordinary_input(problem, "float64", seed) for seed in range(4)])
        X[2, :, :2] = 1.0  # exactly singular
    else:
        X = np.stack([x[..., :32] for x in vectorised_inputs(problem_name)])
    batch = _assert_batch_is_per_input(problem, X, FORMATS, engine="arb")
    assert batch.defined.sum() == len(X) - (problem_name == "linear_system")


def test_an_empty_batch_has_no_rows():
    batch = ground_truths_batch(PROBLEMS["exp"], np.zeros((0, 1)), FORMATS, engine="arb")
    assert len(batch) == 0 and batch.hi.shape[0] == 0


def test_repeated_inputs_of_a_batch_are_evaluated_once(monkeypatch):
    """bfloat16 scalars repeat values (256 per binade): each distinct input (by its bits, -0
    apart from +0) is evaluated once and its truth given to every repeat, bit for bit."""
    from precision.problems.exp import exp_reference
    from precision.truth import batch as batch_module

    evaluate = batch_module.BATCH_REFERENCES[exp_reference]
    seen = []
    monkeypatch.setitem(
        batch_module.BATCH_REFERENCES,
        exp_reference,
        lambda X, prec: seen.append(len(X)) or evaluate(X, prec),
    )
    rng = np.random.default_rng(143)
    X = cast(np.concatenate([rng.uniform(-2, 2, 3000), [0.0, -0.0, 0.0]])[:, None], "bfloat16")
    _assert_batch_is_per_input(
        PROBLEMS["exp"], X, ["bfloat16", "float32"], engine="arb", shortcut=False
    )
    assert seen == [len(np.unique(X.astype(np.float64).view(np.uint64)))] and seen[0] < len(X) / 2
