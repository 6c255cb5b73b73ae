"""Inputs shared by the tests of the ground-truth engine (test_exact, test_batch)."""

from __future__ import annotations

import numpy as np

from precision.core.formats import cast
from precision.problems import Problem

FORMATS = ["float16", "bfloat16", "float32", "float64"]


def ordinary_input(problem: Problem, fmt: str, seed: int) -> np.ndarray:
    """A small well-conditioned input of ``problem`` in ``fmt`` (12 logits, a 4 x 4 system,
    ...), seeded."""
    rng = np.random.default_rng(seed)
    if problem.name == "exp":
        return cast(np.array([1.3]), fmt)
    if (
        problem.input_shape(12) != (12,)
        and problem.name != "cross_entropy"
        or not problem.takes_sizes
    ):
        # Matrices, [A | b] systems and fixed-size inputs: the problem's own proposal, small
        # and well conditioned (kappa 10, magnitude 1).
        n = 4 if problem.takes_sizes else 1
        return cast(problem.propose(rng, n=n, magnitude=1.0, cond=10.0, size=1)[0], fmt)
    x = rng.standard_normal(12) * 2.0
    if problem.name == "cross_entropy":
        target = np.zeros(12)
        target[rng.integers(12)] = 1.0
        x = np.stack([x, target])
    return cast(x, fmt)


def vectorised_inputs(problem_name: str):
    """Ordinary logits and ones whose outputs are extreme: softmax components below float64's
    subnormals and across them, balls 1 +/- 2**-1.5e34, huge logits, exact ties, cancellation."""
    rng = np.random.default_rng(14)
    vectors = [
        rng.standard_normal(40) * 3,
        rng.standard_normal(40) * 1000,
        np.linspace(-800.0, 0.0, 40),  # components from 1 down through the subnormals
        np.concatenate([[1.0, 1.042515853627696e34], rng.standard_normal(30)]),
        np.concatenate([[1.0, -1e300, 5.0], rng.standard_normal(30)]),
        np.concatenate([np.full(20, 1e4), -np.full(20, 1e4)]),
        np.concatenate([[1.0, 2.0**-11, 2.0**-24], np.zeros(30)]),  # sums on ties
        np.round(rng.standard_normal(40) * 64) / 8,
    ]
    for x in vectors:
        if problem_name == "cross_entropy":
            target = np.zeros(x.size)
            target[3] = 1.0
            x = np.stack([x, target])
        yield x
