"""Tests of the cells the sampler skips and of the shortcuts that must not change what it draws.

`precision.run.sampling.sample_cell` proposes nothing for a cell whose problem's estimate proves it
empty (``estimate.reachable``): each bound below must hold for every condition number the
float64 estimate *returns* (rounding included), over thousands of proposals aimed anywhere and
over inputs built to approach the bound. The shortcuts (skipped cells, condition numbers
estimated only in the magnitude decade, the in-place generator) must leave every drawn input
bit for bit what the plain computation draws.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from precision.problems import PROBLEMS, logits
from precision.run.sampling import cell_rng, reachable, sample_cell, sample_in_cell

SEED = 20261125
FAMILY = ("softmax", "logsumexp", "log_softmax", "cross_entropy")
SIZES = (2, 3, 7, 8, 10, 100, 1000)


def max_cond(name: str):
    return PROBLEMS[name].estimate.reachable.max_cond


def estimated(name: str, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        return PROBLEMS[name].estimate(X)


def with_targets(name: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logit rows x as inputs of the problem: cross-entropy gets a one-hot target, the argmax
    (the confident case, where CE is smallest) for half the rows and a random class for the
    others, as its generator makes them."""
    if name != "cross_entropy":
        return x
    size, n = x.shape
    labels = np.where(np.arange(size) % 2 == 0, x.argmax(axis=1), rng.integers(0, n, size))
    t = np.zeros_like(x)
    t[np.arange(size), labels] = 1.0
    return np.stack([x, t], axis=1)


def assert_within_bound(name: str, X: np.ndarray) -> int:
    """Every finite estimated condition number is at most the bound at the row's own
    magnitude, up to the float64 roundings of the two evaluations: at most n + 8 operations
    each, every one within u relative plus half the smallest subnormal absolute (which is what
    matters for subnormal logits: 20 logits of 2.2e-313 give an estimate one subnormal ulp
    above the bound's own evaluation, found by hypothesis). Returns how many rows were
    checked."""
    cond, mag = estimated(name, X)
    n = X.shape[-1]
    bound = np.array([max_cond(name)(n, m) for m in mag])
    slack = (n + 8) * 2.0**-53 * bound + (n + 8) * 2.0**-1074 / 2  # (2**-1075 is 0)
    finite = np.isfinite(cond)
    over = finite & ~(cond <= bound + slack)
    assert not over.any(), (name, n, cond[over][:3], mag[over][:3], bound[over][:3])
    return int(finite.sum())


# ------------------------------------------------------------------ the bounds


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("n", SIZES)
def test_bound_holds_for_proposals_aimed_anywhere(name: str, n: int):
    """Proposals with targets log-uniform over magnitudes 1e-3..1e5 and condition numbers
    1e-3..1e12 (far beyond any study's grid) never exceed the bound."""
    rng = np.random.default_rng([n, len(name)])
    size = 4096 if n <= 100 else 1024
    magnitude = 10.0 ** rng.uniform(-3, 5, size)
    cond = 10.0 ** rng.uniform(-3, 12, size)
    X = PROBLEMS[name].propose(rng, n=n, magnitude=magnitude, cond=cond, size=size)
    assert assert_within_bound(name, X) > size // 2


def adversarial_logits(n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows built to approach the bounds: constant vectors (kappa_softmax = 2 M (1 - 1/n),
    kappa_lse = M / (log n - M) at x = -M, kappa_log_softmax = 2 M (1 - 1/n) / log n), one
    leader over a far tail (kappa_CE -> 2 M), two levels, near ties, signs +-M, uniform in
    [-M, M], and the smallest lse a magnitude allows; over magnitudes 1e-3..1e5."""
    rows = []
    for M in 10.0 ** np.linspace(-3, 5, 65):
        M = float(M) * (1 + rng.uniform(-1e-3, 1e-3))
        ones = np.ones(n)
        rows += [M * ones, -M * ones, np.r_[M, -M * ones[1:]], np.r_[-M, M * ones[1:]]]
        rows += [np.r_[M, (M - 1e-9 * M) * ones[1:]], np.r_[M, np.zeros(n - 1)]]
        rows += [np.r_[np.zeros(1), -M * ones[1:]], np.r_[-M * ones[: n // 2], M * ones[n // 2 :]]]
        rows += [M * rng.choice([-1.0, 1.0], n) for _ in range(4)]
        rows += [M * rng.uniform(-1, 1, n) for _ in range(4)]
        rows += [
            M * (1 - 10.0 ** rng.uniform(-12, 0, n)) * rng.choice([-1.0, 1.0]) for _ in range(4)
        ]
        # lse close to 0 with |x| <= M: shift a shape so that lse = 0 where M allows it
        y = M * rng.uniform(-1, 0, n)
        rows += [y - logits.lse64(y[None])[0], y - logits.lse64(y[None])[0] + 1e-12]
    X = np.array(rows)
    return X[np.abs(X).max(axis=1) > 0]


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("n", SIZES)
def test_bound_holds_for_adversarial_inputs(name: str, n: int):
    rng = np.random.default_rng([n, 7])
    X = with_targets(name, adversarial_logits(n, rng), rng)
    assert assert_within_bound(name, X) > 0


@pytest.mark.parametrize("name", FAMILY)
@settings(max_examples=300, deadline=None)
@given(
    x=st.integers(2, 24).flatmap(
        lambda n: arrays(np.float64, n, elements=st.floats(-1e5, 1e5, allow_subnormal=True))
    ),
    label=st.integers(0, 23),
)
def test_bound_holds_for_any_logits(name: str, x: np.ndarray, label: int):
    """Any logits (ties, zeros, subnormals, mixed scales), any one-hot target."""
    X = x[None]
    if name == "cross_entropy":
        X = np.stack([x, np.eye(x.size)[label % x.size]])[None]
    assert_within_bound(name, X)


@pytest.mark.parametrize(
    ("name", "x", "kappa"),
    [
        ("softmax", 3.0 * np.ones(10), 2 * 3.0 * 0.9),
        ("logsumexp", -1.5 * np.ones(10), 1.5 / (np.log(10) - 1.5)),
        ("log_softmax", 3.0 * np.ones(10), 2 * 3.0 * 0.9 / np.log(10)),
    ],
)
def test_bound_is_nearly_attained(name: str, x: np.ndarray, kappa: float):
    """The bounds are not loose where they decide cells: the constant vectors reach them
    (up to 1 - 1/n), so a skipped cell is skipped for a reason that is tight."""
    cond, mag = estimated(name, x[None])
    assert cond[0] == pytest.approx(kappa, rel=1e-12)
    assert cond[0] <= max_cond(name)(10, mag[0]) <= cond[0] * 1.12


def test_cross_entropy_bound_is_approached():
    """A confident correct prediction [M, -M, ...]: kappa_CE -> 2 M as e**(-2 M) -> 0."""
    x = np.r_[20.0, -20.0 * np.ones(9)]
    xt = np.stack([x, np.eye(10)[0]])
    cond, _ = estimated("cross_entropy", xt[None])
    assert 2 * 20.0 * 0.999 <= cond[0] <= max_cond("cross_entropy")(10, 20.0)


def test_exp_reaches_only_the_diagonal():
    """exp's condition number is its magnitude: the estimate returns one float for both."""
    problem = PROBLEMS["exp"]
    rng = np.random.default_rng(3)
    X = problem.propose(
        rng, n=1, magnitude=10.0 ** rng.uniform(-8, 8, 50_000), cond=1.0, size=50_000
    )
    cond, mag = problem.estimate(X)
    assert np.array_equal(np.floor(np.log10(cond)), np.floor(np.log10(mag)))
    assert reachable(problem, 1, 2, 2) and not reachable(problem, 1, 3, 2)


# ------------------------------------------------------------------ skipped cells


def test_decisions_on_the_studies_grid():
    """The cells skipped on the softmax study's grid (cond decades -1..4, magnitude -1..3),
    per problem and size: softmax and cross-entropy above 2 max|x| (c >= m + 2), log_softmax
    above 2 max|x| / log n (c >= m + 1 once n >= 8), log-sum-exp above max|x| / (log n - max|x|)
    at max|x| < 1 (m = -1: c >= 0 once n >= 10, c >= 2 at n = 3)."""
    expected = {
        "softmax": lambda c, m, n: c >= m + 2,
        "cross_entropy": lambda c, m, n: c >= m + 2,
        "log_softmax": lambda c, m, n: c >= m + (1 if n >= 8 else 2),
        "logsumexp": lambda c, m, n: m == -1 and 10.0**c > 1 / (np.log(n) - 1),
    }
    for name, skipped in expected.items():
        for n in (3, 10, 100, 1000):
            for c in range(-1, 5):
                for m in range(-1, 4):
                    got = not reachable(PROBLEMS[name], n, c, m)
                    assert got == skipped(c, m, n), (name, n, c, m)


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("n", (3, 10, 100))
def test_skipped_cells_are_empty_when_tried(name: str, n: int):
    """sample_in_cell (which tries every cell) finds nothing in the cells sample_cell skips,
    with many candidates aimed at each."""
    problem = PROBLEMS[name]
    tried = 0
    for c in range(-1, 6):
        for m in range(-1, 4):
            if reachable(problem, n, c, m):
                continue
            rng = cell_rng(SEED, name, n, c, m)
            for _ in range(2):
                x = sample_in_cell(problem, rng, n=n, cond_decade=c, mag_decade=m, candidates=1024)
                assert x is None, (c, m)
            tried += 1
    assert tried > 0


def test_skipped_cell_draws_nothing():
    problem = PROBLEMS["softmax"]
    assert not reachable(problem, 10, 4, -1)
    rng = cell_rng(SEED, "softmax", 10, 4, -1)
    state = rng.bit_generator.state
    assert sample_cell(problem, rng, n=10, cond_decade=4, mag_decade=-1, samples=5) == [None] * 5
    assert rng.bit_generator.state == state


def test_problems_without_bounds_try_every_cell():
    plain = dataclasses.replace(
        PROBLEMS["softmax"], estimate=lambda X: PROBLEMS["softmax"].estimate(X)
    )
    assert reachable(plain, 10, 4, -1)


# ------------------------------------------------------------------ same draws


def plain(problem):
    """The problem with a bare estimate: no skipped cells, every condition number estimated."""
    return dataclasses.replace(problem, estimate=lambda X: problem.estimate(X))


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize(("n", "samples"), [(10, 8), (100, 3), (1000, 1)])
def test_shortcuts_draw_the_same_inputs(name: str, n: int, samples: int):
    """Every cell of the grid gives bit for bit the same inputs (and the same Nones) as the
    plain sampler, which proposes in every cell and estimates every candidate."""
    problem = PROBLEMS[name]
    found = 0
    cells = [(c, m) for c in range(-1, 5) for m in range(-1, 4)]
    if n == 1000:
        cells = cells[::3]
    for c, m in cells:
        fast = sample_cell(
            problem,
            cell_rng(SEED, name, n, c, m),
            n=n,
            cond_decade=c,
            mag_decade=m,
            samples=samples,
        )
        slow = sample_cell(
            plain(problem),
            cell_rng(SEED, name, n, c, m),
            n=n,
            cond_decade=c,
            mag_decade=m,
            samples=samples,
        )
        for a, b in zip(fast, slow, strict=True):
            assert (a is None) == (b is None), (c, m)
            if a is not None:
                assert a.tobytes() == b.tobytes(), (c, m)
                found += 1
    assert found > 0


@pytest.mark.parametrize("name", FAMILY)
def test_estimate_rows_are_independent(name: str):
    """What estimating only some rows relies on: estimate(X[rows]) is estimate(X) at rows,
    bit for bit, and estimate.magnitude is the estimate's magnitude."""
    problem = PROBLEMS[name]
    rng = np.random.default_rng(5)
    for n in (3, 10, 100):
        size = 512
        X = problem.propose(
            rng,
            n=n,
            magnitude=10.0 ** rng.uniform(-2, 4, size),
            cond=10.0 ** rng.uniform(-2, 6, size),
            size=size,
        )
        cond, mag = estimated(name, X)
        assert problem.estimate.magnitude(X).tobytes() == mag.tobytes()
        for rows in (np.arange(0, size, 3), np.array([7]), np.flatnonzero(rng.random(size) < 0.4)):
            sub_cond, sub_mag = estimated(name, X[rows])
            assert sub_cond.tobytes() == cond[rows].tobytes()
            assert sub_mag.tobytes() == mag[rows].tobytes()


def propose_logits_plain(rng, *, n, magnitude, cond, size):
    """propose_logits as first written (issue 13's baseline), each array formed anew."""
    half = size // 2
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))[:, None]
    cond = np.broadcast_to(np.asarray(cond, dtype=np.float64), (size,))[:, None]
    spread = magnitude * 10.0 ** rng.uniform(-4, np.log10(2.0), size=(size, 1))
    gaussian = rng.standard_normal((half, n))
    gaussian /= np.maximum(np.abs(gaussian).max(axis=1, keepdims=True), 1e-300)
    y = np.empty((size, n))
    y[:half] = spread[:half] * gaussian
    mag = magnitude[half:]
    k = np.minimum(np.floor(n ** rng.uniform(0, 1, size=size - half)).astype(int), n)
    jitter = mag * 10.0 ** rng.uniform(-6, 0, size=(size - half, 1))
    tail = -2.0 * mag * 10.0 ** rng.uniform(-3, 0, size=(size - half, 1))
    shapes = tail * rng.uniform(0.0, 1.0, size=(size - half, n))
    cluster = np.arange(n)[None, :] < k[:, None]
    shapes = np.where(cluster, jitter * rng.uniform(-1.0, 1.0, size=(size - half, n)), shapes)
    y[half:] = rng.permuted(shapes, axis=1)
    low = np.log10(magnitude / (10.0 * cond))
    widest = np.maximum(2.0 * magnitude, np.log(n) + 2.0 * magnitude)
    high = np.log10(np.maximum(widest, 10.0 * magnitude / cond))
    level = 10.0 ** rng.uniform(low, high, size=(size, 1))
    sign = rng.choice([-1.0, 1.0], size=(size, 1))
    return y - logits.lse64(y)[:, None] + sign * level


@pytest.mark.parametrize(("n", "size"), [(1, 5), (2, 64), (10, 1024), (100, 384), (1000, 256)])
def test_propose_logits_is_the_plain_formula(n: int, size: int):
    """The in-place generator draws the same numbers as the formula written out, and leaves
    the generator in the same state."""
    for targets in (
        (3.0, 40.0),
        (10.0 ** np.linspace(-1, 3, size), 10.0 ** np.linspace(5, -1, size)),
    ):
        a, b = np.random.default_rng(11), np.random.default_rng(11)
        x = logits.propose_logits(a, n=n, magnitude=targets[0], cond=targets[1], size=size)
        y = propose_logits_plain(b, n=n, magnitude=targets[0], cond=targets[1], size=size)
        assert x.tobytes() == y.tobytes()
        assert a.bit_generator.state == b.bit_generator.state
