"""Exact shortcuts over a whole batch (precision.truth.batch_shortcuts): every input of a batch
gets what `ground_truths` gives it alone, field for field and bit for bit, in every format the
dot and summation studies use, hostile inputs included; the inputs the shortcut declines (an
infinity or NaN, factors outside TwoProduct's range, a value within Arb's radius of a rounding
boundary) and only those take `ground_truths`.

The row-wise extraction (`shortcuts.extract_row_sums_in_place`) is checked against Python's
Fractions, which add floats with no rounding at all: each row's sum is exact whatever the other
rows of the batch hold."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from same_bits import truth_bits

from precision.core.formats import cast, get_format
from precision.problems import PROBLEMS
from precision.truth import batch as batch_module
from precision.truth import shortcuts
from precision.truth.batch import ground_truths_batch
from precision.truth.exact import ground_truths

DOT_FORMATS = ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"]
"""Every format of the studies with dot products (studies/dot.toml, block_formats.toml)."""

SUM_FORMATS = ["float16", "bfloat16", "float32", "float64"]
"""Every format of the studies with sums (studies/summation.toml, rounding.toml)."""


def _fraction(d: shortcuts.Dyadic) -> Fraction:
    return Fraction(d.man) * Fraction(2) ** d.exp


def _batch_with_calls(problem, X: np.ndarray, fmts, monkeypatch) -> tuple[object, list[int]]:
    """`ground_truths_batch` of X, and the rows that it left to `ground_truths`."""
    calls = []

    def counted(problem, x, fmts, **options):
        calls.append(next(b for b in range(len(X)) if X[b] is x or np.shares_memory(X[b], x)))
        return ground_truths(problem, x, fmts, **options)

    monkeypatch.setattr(batch_module, "ground_truths", counted)
    return ground_truths_batch(problem, X, fmts, engine="arb"), calls


def _assert_rows_are_per_input(problem, X: np.ndarray, fmts, batch) -> None:
    """Row b of the batch is `ground_truths` of X[b], field for field and bit for bit."""
    for b in range(len(X)):
        expected = ground_truths(problem, X[b], fmts, engine="arb")
        found = batch.truths(b)
        assert list(found) == list(expected)
        for name in expected:
            assert truth_bits(found[name]) == truth_bits(expected[name]), (problem.name, b, name)


# ---------------------------------------------------------------- inputs


def _dot_rows(fmt: str, n: int, rng) -> tuple[np.ndarray, list[int]]:
    """A batch ``(B, 2, n)`` in ``fmt`` of ordinary and hostile pairs, and the rows the
    shortcut must decline (then `ground_truths` takes them)."""
    f = get_format(fmt)
    big, tiny = float(f.max), float(f.min_subnormal)
    wide = min(float(f.emax), 60.0)
    normal = rng.standard_normal((2, n))
    spread = normal * 2.0 ** rng.uniform(-wide, wide / 2, (2, n))
    cancelling = np.stack([np.repeat(normal[0, : n // 2], 2), np.tile([1.0, -1.0], n // 2)])
    subnormal = np.stack([tiny * rng.integers(-3, 4, n), normal[1]])
    huge = big * rng.uniform(0.5, 1.0, (2, n))
    rows = [normal, spread, np.zeros((2, n)), cancelling, subnormal, huge, normal]
    # float64 factors beyond TwoProduct's range: subnormals, and products near overflow.
    declined = [4, 5] if fmt == "float64" else []
    if f.emin < -100:  # a sum just above a float16 tie, by less than Arb's radius at 113 bits
        tie = np.zeros((2, n))
        tie[:, :3] = [[1.0, 2.0**-11, 2.0**-100], [1.0, 1.0, 2.0**-100]]
        rows.append(tie)
        declined.append(len(rows) - 1)
    if fmt == "float64":  # 17 scales 60 bits apart: more passes than extraction makes
        scales = np.zeros((2, n))
        scales[:, :17] = 2.0 ** (240 - 30 * np.arange(17))
        rows.append(scales)
    for bad in (np.nan, np.inf):
        poisoned = normal.copy()
        poisoned[0, n // 3] = bad
        rows.append(poisoned)
        declined.append(len(rows) - 1)
    with np.errstate(over="ignore", invalid="ignore"):
        return cast(np.stack(rows), fmt), declined


def _sum_rows(fmt: str, n: int, rng) -> tuple[np.ndarray, list[int]]:
    """A batch ``(B, n)`` in ``fmt`` of ordinary and hostile vectors, and the rows the shortcut
    must decline."""
    f = get_format(fmt)
    big, tiny = float(f.max), float(f.min_subnormal)
    wide = min(float(f.emax), 60.0)
    normal = rng.standard_normal(n)
    rows = [
        normal,
        normal * 2.0 ** rng.uniform(-wide, wide, n),
        np.zeros(n),
        np.concatenate([normal[: n // 2], -normal[: n // 2]]),  # an exact 0
        tiny * rng.integers(-3, 4, n),  # subnormals (float64's leave extraction's range)
        big * rng.uniform(0.9, 1.0, n),  # a sum beyond the format's range
        normal,
    ]
    declined = []
    if f.emin < -100:
        tie = np.zeros(n)
        tie[:3] = [1.0, 2.0**-11, 2.0**-130]  # 131 bits: more than 113
        rows.append(tie)
        declined.append(len(rows) - 1)
    if fmt == "float64":
        scales = np.zeros(n)
        scales[:19] = 2.0 ** (900 - 100 * np.arange(19))
        rows.append(scales)
    for bad in (np.nan, -np.inf):
        poisoned = normal.copy()
        poisoned[n // 2] = bad
        rows.append(poisoned)
        declined.append(len(rows) - 1)
    with np.errstate(over="ignore", invalid="ignore"):
        return cast(np.stack(rows), fmt), declined


# ---------------------------------------------------------------- the batch is per input


@pytest.mark.parametrize("fmt", DOT_FORMATS)
def test_dot_batch_is_the_per_input_path(fmt, monkeypatch):
    X, declined = _dot_rows(fmt, 96, np.random.default_rng(7))
    fmts = [fmt, "float16"] if fmt != "float16" else [fmt]
    batch, calls = _batch_with_calls(PROBLEMS["dot"], X, fmts, monkeypatch)
    assert sorted(calls) == declined
    _assert_rows_are_per_input(PROBLEMS["dot"], X, fmts, batch)
    assert batch.certified[:-2].all()  # all but the NaN and inf rows (Arb's NaN balls)


@pytest.mark.parametrize("fmt", SUM_FORMATS)
@pytest.mark.parametrize("name", ["summation", "weight_update"])
def test_sum_batch_is_the_per_input_path(name, fmt, monkeypatch):
    X, declined = _sum_rows(fmt, 80, np.random.default_rng(8))
    fmts = [fmt, "float16"] if fmt != "float16" else [fmt]
    batch, calls = _batch_with_calls(PROBLEMS[name], X, fmts, monkeypatch)
    assert sorted(calls) == declined
    _assert_rows_are_per_input(PROBLEMS[name], X, fmts, batch)


@pytest.mark.parametrize("fmt", SUM_FORMATS)
def test_difference_batch_is_the_per_input_path(fmt, monkeypatch):
    """Pairs (a, b) whose difference cancels exactly, to a subnormal, or overflows; a NaN."""
    f = get_format(fmt)
    rng = np.random.default_rng(9)
    pairs = np.concatenate(
        [
            rng.standard_normal((20, 2)),
            [[1.5, 1.5], [-0.0, 0.0], [float(f.max), -float(f.max)], [np.nan, 1.0]],
            [[float(f.min_normal), float(f.min_normal) + float(f.min_subnormal)]],
        ]
    )
    X = cast(pairs, fmt)
    batch, calls = _batch_with_calls(PROBLEMS["cancellation"], X, [fmt], monkeypatch)
    assert calls == [23]
    _assert_rows_are_per_input(PROBLEMS["cancellation"], X, [fmt], batch)


@pytest.mark.parametrize(
    ("fmt", "stored"), [("float32", "float32"), ("float64", "float64"), ("float64", "float32")]
)
def test_long_random_dot_batches_are_the_per_input_path(fmt, stored):
    """Benchmark-sized inputs (n = 1000) over many magnitudes and signs; float64 arrays of
    float32 values (data stored in float32) take the exact products, TwoProduct the others."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((6, 2, 1000)) * 10.0 ** rng.uniform(-8, 8, (6, 2, 1))
    x[:, 1, :500] = -x[:, 0, 500:] * x[:, 1, 500:] / x[:, 0, :500]  # heavy cancellation
    X = cast(cast(x, stored), fmt)
    batch = ground_truths_batch(PROBLEMS["dot"], X, [fmt], engine="arb")
    _assert_rows_are_per_input(PROBLEMS["dot"], X, [fmt], batch)


def test_problems_without_a_batched_shortcut_take_the_per_input_path(monkeypatch):
    """The variance shortcut is not batched, nor a batch of one input: every row goes to
    `ground_truths`."""
    X = cast(np.random.default_rng(11).standard_normal((3, 8)), "float32")
    _, calls = _batch_with_calls(PROBLEMS["variance"], X, ["float32"], monkeypatch)
    assert calls == [0, 1, 2]
    _, calls = _batch_with_calls(PROBLEMS["dot"], X.reshape(3, 2, 4)[:1], ["float32"], monkeypatch)
    assert calls == [0]  # a single input: `ground_truths` costs less


# ---------------------------------------------------------------- row-wise extraction


def _fraction_sums(row: np.ndarray, signs: np.ndarray) -> tuple[Fraction, Fraction]:
    terms = [Fraction(v) for v in row.tolist()]
    signed = [t * int(si) for t, si in zip(terms, signs.tolist(), strict=True)]
    return sum(terms, Fraction(0)), sum(signed, Fraction(0))


def test_row_extraction_is_exact_row_by_row():
    """Rows of every magnitude side by side, a zero row among them, with their signs and with
    random signs: each row's two sums are the Fraction sums, the same as that row's extracted
    alone, and the same where the caller tells each row's maximum."""
    rng = np.random.default_rng(12)
    rows = np.array(
        [
            rng.standard_normal(300),
            rng.standard_normal(300) * 2.0 ** rng.integers(-80, 80, 300),  # several passes
            np.zeros(300),
            rng.standard_normal(300) * 1e-250,
            np.concatenate([np.full(150, 2.0**600), np.full(150, -(2.0**600))]),
        ]
    )
    tops = np.abs(rows).max(axis=1).tolist()
    for signs in (np.sign(rows), rng.integers(-1, 2, rows.shape).astype(np.float64)):
        found = shortcuts.extract_row_sums_in_place(rows.copy(), signs)
        told = shortcuts.extract_row_sums_in_place(rows.copy(), signs, tops=tops)
        assert found == told
        for row, sign, sums in zip(rows, signs, found, strict=True):
            alone = shortcuts.extract_row_sums_in_place(row[None, :].copy(), sign[None, :])[0]
            assert sums is not None and alone is not None
            exact = _fraction_sums(row, sign)
            assert tuple(map(_fraction, sums)) == tuple(map(_fraction, alone)) == exact


def test_row_extraction_leaves_only_the_rows_beyond_its_reach():
    """A row of more scales than MAX_PASSES passes reach, and a row of subnormals (sigma below
    2**-960) are left (None); the ordinary row beside them is summed exactly."""
    scales = np.zeros(64)
    scales[:19] = 2.0 ** (900 - 100 * np.arange(19))
    ordinary = np.arange(64.0) - 10.5
    p = np.stack([scales, np.full(64, 5e-324), ordinary])
    found = shortcuts.extract_row_sums_in_place(p, np.sign(p))
    assert found[0] is None and found[1] is None
    assert tuple(map(_fraction, found[2])) == _fraction_sums(ordinary, np.sign(ordinary))


@pytest.mark.parametrize("fmt", ["bfloat16", "float64"])
def test_batch_sums_and_exponents_are_the_references(fmt):
    """Each input's exact sums (sum t_i and sum |t_i|, against Fractions), and the exponent
    they are held on, which decides how Arb cuts them into pieces: the smallest exponent of the
    reference's own integer parts (``dot.product_parts``, ``summation.dyadic_parts``; zeros
    included)."""
    from precision.problems.dot import product_parts
    from precision.problems.summation import dyadic_parts
    from precision.truth import batch_shortcuts

    X, _ = _dot_rows(fmt, 32, np.random.default_rng(13))
    pairs, base = batch_shortcuts._dot_pairs(X)
    for b in range(len(X)):
        if np.isfinite(X[b].astype(np.float64)).all():
            assert base[b] == product_parts(X[b, 0], X[b, 1])[1].min(), b
        if pairs[b] is not None:
            terms = [Fraction(x) * Fraction(y) for x, y in X[b].astype(np.float64).T.tolist()]
            assert _fraction(pairs[b][0]) == sum(terms, Fraction(0)), b
            assert _fraction(pairs[b][1]) == sum(map(abs, terms), Fraction(0)), b
    # The NaN and inf rows are declined; ordinary ones (near-ties decline later) are not.
    assert pairs[-1] is None and pairs[-2] is None
    assert all(pairs[b] is not None for b in (0, 1, 2, 3, 6))
    S, _ = _sum_rows(fmt, 32, np.random.default_rng(13))
    pairs, base = batch_shortcuts._sum_pairs(S)
    for b in range(len(S)):
        if np.isfinite(S[b].astype(np.float64)).all():
            assert base[b] == dyadic_parts(S[b])[1].min(), b
            terms = [Fraction(v) for v in S[b].astype(np.float64).tolist()]
            assert _fraction(pairs[b][0]) == sum(terms, Fraction(0)), b
            assert _fraction(pairs[b][1]) == sum(map(abs, terms), Fraction(0)), b
        else:
            assert pairs[b] is None


def test_a_batch_formed_in_blocks_is_the_per_input_path(monkeypatch):
    """Blocks of rows (here of one and of three inputs) give the same columns, bit for bit."""
    from precision.truth import batch_shortcuts

    X, declined = _dot_rows("float32", 48, np.random.default_rng(14))
    fmts = ["float32", "float16"]
    whole = ground_truths_batch(PROBLEMS["dot"], X, fmts, engine="arb")
    for values in (1, 3 * X[0].size):
        monkeypatch.setattr(batch_shortcuts, "BLOCK_VALUES", values)
        batch, calls = _batch_with_calls(PROBLEMS["dot"], X, fmts, monkeypatch)
        assert sorted(calls) == declined
        for b, name in ((b, name) for b in range(len(X)) for name in fmts):
            assert truth_bits(batch.truths(b)[name]) == truth_bits(whole.truths(b)[name])


def test_terms_with_a_bit_one_below_the_first_pass_unit_are_exact():
    """float32 terms whose lowest bit lies one bit below the unit 2**(M - 52) of the first
    pass's upper binade (n = 16: sigma = 2**(top + 5); the row [1.5 2**24, 1 + 2**-23] and the
    products of [1.5, 1 + 2**-23] with themselves): the pass leaves that bit as a remainder,
    and the batch keeps it, as the per-input path does."""
    one_ulp = 1.0 + 2.0**-23
    sums = np.array([[1.5 * 2.0**24] * 8 + [one_ulp] * 8] * 2, dtype=np.float32)
    sums[1] *= -1.0
    dots = np.array([[[1.5] * 8 + [one_ulp] * 8] * 2] * 2, dtype=np.float32)
    dots[1, 1] *= -1.0
    for problem, X in ((PROBLEMS["summation"], sums), (PROBLEMS["dot"], dots)):
        batch = ground_truths_batch(problem, X, ["float32"], engine="arb")
        _assert_rows_are_per_input(problem, X, ["float32"], batch)
