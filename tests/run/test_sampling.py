"""Tests of precision.run.sampling: per-cell generators, inputs aimed at grid cells, data-set rows.

A cell (c, m) holds inputs whose float64-estimated condition number lies in [10**c, 10**(c+1))
and whose magnitude lies in [10**m, 10**(m+1)). `sample_in_cell` must either hit the cell or
say it cannot (None); it must never hand back an input from a neighbouring cell.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from precision.problems import PROBLEMS, logits
from precision.run import sampling
from precision.run.sampling import cell_rng, dataset_rows, sample_cell, sample_in_cell

SEED = 20261125


def draws(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 2**63, size=8)


def in_cell(problem, x: np.ndarray, cond_decade: int, mag_decade: int) -> bool:
    with np.errstate(all="ignore"):
        cond, mag = problem.estimate(x[None])
    c, m = np.floor(np.log10(cond[0])), np.floor(np.log10(mag[0]))
    return bool(c == cond_decade and m == mag_decade)


# ------------------------------------------------------------------ cell_rng


def test_cell_rng_is_deterministic():
    a = cell_rng(SEED, "softmax", 10, 2, -1)
    b = cell_rng(SEED, "softmax", 10, 2, -1)
    np.testing.assert_array_equal(draws(a), draws(b))


def test_cell_rng_does_not_depend_on_call_order():
    keys = [("softmax", 10, 0, 0), ("logsumexp", 100, 3, 1), ("exp", 1, -1, 2)]
    forward = {key: draws(cell_rng(SEED, *key)) for key in keys}
    # Other order, with other generators created and consumed in between.
    backward = {}
    for key in reversed(keys):
        draws(cell_rng(SEED, "softmax", 1000, 4, 4))
        backward[key] = draws(cell_rng(SEED, *key))
    for key in keys:
        np.testing.assert_array_equal(forward[key], backward[key])


def test_cell_rng_streams_differ_per_coordinate():
    base = (SEED, "softmax", 10, 0, 0)
    variations = [
        (SEED + 1, "softmax", 10, 0, 0),
        (SEED, "logsumexp", 10, 0, 0),
        (SEED, "softmax", 100, 0, 0),
        (SEED, "softmax", 10, 1, 0),
        (SEED, "softmax", 10, -1, 0),
        (SEED, "softmax", 10, 0, 1),
        (SEED, "softmax", 10, 0, -1),
    ]
    reference = draws(cell_rng(*base))
    seen = {tuple(reference)}
    for args in variations:
        stream = tuple(draws(cell_rng(*args)))
        assert stream not in seen, args
        seen.add(stream)
    # Swapping the two decades is another cell, hence another stream.
    assert tuple(draws(cell_rng(SEED, "softmax", 10, 1, 2))) != tuple(
        draws(cell_rng(SEED, "softmax", 10, 2, 1))
    )


# ------------------------------------------------------------------ sample_in_cell

# Cells every problem reaches with these seeds (coverage of the proposal generators).
REACHABLE = [
    ("softmax", 10, 0, 0),
    ("softmax", 10, 1, 1),
    ("softmax", 10, 2, 2),
    ("softmax", 100, 0, 1),
    ("logsumexp", 10, 0, 0),
    ("logsumexp", 10, 3, 0),
    ("logsumexp", 10, -1, 2),
    ("log_softmax", 10, 1, 1),
    ("cross_entropy", 10, 0, 1),
    ("exp", 1, 0, 0),
    ("exp", 1, 2, 2),
]


@pytest.mark.parametrize(("name", "n", "c", "m"), REACHABLE)
def test_sample_lands_in_requested_cell(name: str, n: int, c: int, m: int):
    problem = PROBLEMS[name]
    rng = cell_rng(SEED, name, n, c, m)
    found = [sample_in_cell(problem, rng, n=n, cond_decade=c, mag_decade=m) for _ in range(3)]
    found = [x for x in found if x is not None]
    assert found, "a reachable cell came back empty three times"
    for x in found:
        assert x.dtype == np.float64
        assert x.shape == problem.input_shape(n)
        assert np.isfinite(x).all()
        assert in_cell(problem, x, c, m)


@pytest.mark.parametrize("name", ["softmax", "logsumexp", "log_softmax", "cross_entropy", "exp"])
def test_samples_never_leave_their_cell(name: str):
    """Over a whole grid, every input returned lies in its cell; empty cells give None."""
    problem = PROBLEMS[name]
    n = 10 if problem.takes_sizes else 1
    hits = 0
    for c in range(-1, 5):
        for m in range(-1, 4):
            rng = cell_rng(SEED, name, n, c, m)
            for _ in range(2):
                x = sample_in_cell(problem, rng, n=n, cond_decade=c, mag_decade=m, candidates=64)
                if x is not None:
                    hits += 1
                    assert in_cell(problem, x, c, m), (c, m)
    assert hits > 0


def test_sample_is_deterministic():
    problem = PROBLEMS["softmax"]
    a = sample_in_cell(
        problem, cell_rng(SEED, "softmax", 10, 1, 1), n=10, cond_decade=1, mag_decade=1
    )
    b = sample_in_cell(
        problem, cell_rng(SEED, "softmax", 10, 1, 1), n=10, cond_decade=1, mag_decade=1
    )
    assert a is not None
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(5))
def test_unreachable_softmax_cell_is_empty(seed: int):
    """Softmax's condition number is at most 2 max|x| < 20 when max|x| < 10: cond 1e6 is out of
    reach at magnitude decade 0, so the cell stays empty rather than borrowing inputs."""
    problem = PROBLEMS["softmax"]
    rng = cell_rng(seed, "softmax", 10, 6, 0)
    for _ in range(3):
        assert sample_in_cell(problem, rng, n=10, cond_decade=6, mag_decade=0) is None


def test_softmax_condition_bound_holds_for_candidates():
    """The bound the empty cells rely on: kappa_softmax <= 2 max|x| for any candidate."""
    problem = PROBLEMS["softmax"]
    rng = np.random.default_rng(0)
    for magnitude in (0.5, 5.0, 50.0):
        X = problem.propose(rng, n=10, magnitude=magnitude, cond=1e6, size=256)
        cond, mag = problem.estimate(X)
        assert np.all(cond <= 2 * mag * (1 + 1e-12))


# ------------------------------------------------------------------ dataset_rows


@pytest.fixture
def data() -> np.ndarray:
    # Row i holds i in every column, so rows are distinct and identify their index.
    return np.repeat(np.arange(50, dtype=np.float64)[:, None], 4, axis=1)


def test_dataset_rows_distinct_and_deterministic(data: np.ndarray):
    rows = dataset_rows(data, rows=20, seed=SEED)
    assert rows.shape == (20, 4)
    index = rows[:, 0].astype(int)
    assert len(set(index)) == 20  # without replacement
    assert np.all(np.diff(index) > 0)  # kept in file order
    np.testing.assert_array_equal(rows, data[index])
    np.testing.assert_array_equal(rows, dataset_rows(data, rows=20, seed=SEED))


def test_dataset_rows_depend_on_seed(data: np.ndarray):
    a = dataset_rows(data, rows=20, seed=1)
    b = dataset_rows(data, rows=20, seed=2)
    assert not np.array_equal(a, b)


def test_dataset_rows_all_when_fewer(data: np.ndarray):
    np.testing.assert_array_equal(dataset_rows(data, rows=500, seed=SEED), data)
    np.testing.assert_array_equal(dataset_rows(data, rows=50, seed=SEED), data)


# ------------------------------------------------------------------ cost-only shortcuts
# Issue 13: the inputs phase works on cache-sized blocks of candidates, which may not change a
# drawn input: compared bit for bit.


@pytest.mark.parametrize("name", ["softmax", "logsumexp", "log_softmax", "cross_entropy"])
@pytest.mark.parametrize(("n", "samples"), [(3, 4), (300, 2)])
def test_blocks_do_not_change_the_inputs(monkeypatch, name: str, n: int, samples: int):
    """Candidates and estimates formed in blocks of one row, or of a few rows that do not
    divide the batch, give bit for bit the inputs of one block for everything."""
    problem = PROBLEMS[name]

    def draw():
        out = []
        for c, m in [(0, 0), (1, 1), (2, 1), (-1, 0)]:
            rng = cell_rng(SEED, name, n, c, m)
            out += sample_cell(problem, rng, n=n, cond_decade=c, mag_decade=m, samples=samples)
        return [None if x is None else x.tobytes() for x in out]

    whole = 2**40
    monkeypatch.setattr(sampling, "BLOCK_ELEMENTS", whole)
    monkeypatch.setattr(logits, "BLOCK_ELEMENTS", whole)
    expected = draw()
    assert any(x is not None for x in expected)
    for elements in (1, 7 * 2 * n + 1):
        monkeypatch.setattr(sampling, "BLOCK_ELEMENTS", elements)
        monkeypatch.setattr(logits, "BLOCK_ELEMENTS", elements)
        assert draw() == expected


def test_row_blocks_cover_every_row_once():
    for rows, row_elements in [(0, 10), (1, 10), (5, 10**6), (100, 1), (1000, 327)]:
        for blocks in (
            sampling._row_blocks(rows, row_elements),
            logits.row_blocks(rows, row_elements),
        ):
            covered = np.concatenate([np.arange(rows)[b] for b in blocks]) if blocks else []
            assert list(covered) == list(range(rows))
            assert all(
                (b.stop - b.start) * row_elements <= max(sampling.BLOCK_ELEMENTS, row_elements)
                for b in blocks
            )


def test_fewer_candidates_than_size_pick_what_their_repeats_would():
    """A problem that is not batched may propose fewer rows than asked where more would only
    repeat them (summation at n = 10^5 draws 20 of 128): the sampler picks the nearest
    candidate and a row's copies are equally near, so the input drawn is the one those rows
    repeated to ``size`` would give (the rng is consumed alike)."""
    n, problem = 100_000, PROBLEMS["summation"]
    assert not problem.batched
    proposed = problem.propose(np.random.default_rng(0), n=n, magnitude=1.0, cond=1e8, size=128)
    assert 1 <= len(proposed) < 128

    def repeated(rng, *, size, **targets):
        return np.resize(problem.propose(rng, size=size, **targets), (size, n))

    tiled = dataclasses.replace(problem, propose=repeated)
    for c, m in [(0, 0), (8, 1), (15, -1)]:
        picks = [
            sample_in_cell(p, cell_rng(5, "summation", n, c, m), n=n, cond_decade=c, mag_decade=m)
            for p in (problem, tiled)
        ]
        assert picks[0] is not None and np.array_equal(picks[0], picks[1]), (c, m)
