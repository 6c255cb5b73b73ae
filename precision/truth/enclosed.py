"""Certified ground truth of exp over a whole batch in double-double arithmetic, without Arb.

The Arb engine evaluates, exports and certifies one ball per output element, about a
microsecond each, which caps it near a million elements per second (issue 14). For outputs
built from exp, a double-double evaluation with a proved relative error bound
(`precision.core.double_double.exp_scaled`, 2**-100) encloses every output as tightly as Arb at
113 bits would need to, in a few numpy passes over the whole batch. Each output becomes a ball
``mid = (hi + lo) * 2**scale`` with ``rad = eps * |mid|`` (eps the proved bound), and
`precision.truth.balls.decide` certifies and rounds it exactly as it does Arb's exported
balls: the rounding to every format is certain, and the stored `Exact` split is the midpoint's.

An input is accepted only when every one of its balls certifies in every format and its
condition number is accurate, as the Arb engine accepts one; every other input (an element
beyond the evaluation's domain, a midpoint within about 2**-100 of a rounding boundary) takes
the Arb engine. Both `precision.truth.exact.ground_truths` and
`precision.truth.batch.ground_truths_batch` take this path first (the per-input call on a batch
of one), so an input's truth does not depend on which of them computed it. Its rows say
``gt_prec`` = `DD_PREC`.

The midpoints are not Arb's: a truth computed here differs from the Arb engine's in the last
bits of its `Exact` split (both within 2**-99 of the exact value), never in a rounded value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from precision.core import double_double as dd
from precision.core.formats import Format
from precision.problems.base import Problem
from precision.problems.exp import exp_reference
from precision.truth.balls import Decisions, Midpoints, decide

__all__ = ["DD_PREC", "ENCLOSURES", "Enclosed", "certify", "enclosure_for"]

DD_PREC = 106
"""The ``prec`` (``gt_prec``) of a truth certified here: double-double, 2 x 53 bits."""


@dataclass(frozen=True)
class Enclosed:
    """The outputs of a batch of inputs as balls, with their condition numbers.

    Attributes
    ----------
    mids : Midpoints
        ``batch * m`` balls, input by input (`precision.truth.balls`); ``valid`` False where
        the evaluation does not vouch for an output.
    m : int
        Outputs per input.
    cond : numpy.ndarray
        ``(batch,)`` float64: the condition number, as ``float(cond.mid())`` of the reference.
    cond_accurate : numpy.ndarray
        ``(batch,)`` bool: the condition number is within COND_ACCURACY.
    """

    mids: Midpoints
    m: int
    cond: np.ndarray
    cond_accurate: np.ndarray


Evaluator = Callable[[np.ndarray], "Enclosed | None"]

ENCLOSURES: dict[Callable, Evaluator] = {}
"""Reference function -> its double-double evaluator over a batch ``(batch, *input_shape)``
(None where it does not apply to the batch's shape). Keyed by the function itself, so that a
problem with another reference (a user's) never meets it."""


def enclosure_for(problem: Problem) -> Evaluator | None:
    """The double-double evaluator of ``problem``'s reference, or None (an undeclared
    reference, or one bound to parameters)."""
    if problem.params:
        return None
    return ENCLOSURES.get(problem.reference)


def certify(found: Enclosed, fmts: list[Format], tolerance_denominator: int):
    """(accepted, decisions): the inputs whose every ball certifies in every format and whose
    condition number is accurate (``(batch,)`` bool), and `balls.decide`'s `Decisions` of all
    balls (``batch * m``)."""
    decided: Decisions = decide(found.mids, fmts, tolerance_denominator)
    batch = len(found.cond)
    accepted = decided.certified.reshape(batch, found.m).all(axis=1) & found.cond_accurate
    return accepted, decided


def accuracy_of(eps) -> np.ndarray:
    """The `Midpoints.accuracy` of balls of radius ``eps * |mid|``: the integer a with
    2**-(a + 2) < eps < 2**-a (a = floor(-log2 eps) - 1), as Arb's ``rel_accuracy_bits``
    describes a radius."""
    return (np.floor(-np.log2(np.asarray(eps, dtype=np.float64))) - 1).astype(np.int64)


def exp_enclosed(X: np.ndarray) -> Enclosed | None:
    """exp of a batch of scalars ``(batch, 1)``: `dd.exp_scaled`, radius EXP_ERROR
    relative (over 1 - EXP_ERROR, from |true| to |mid|). The condition number is |x|, exact
    (as `exp_reference` forms it); |x| beyond EXP_DOMAIN, an infinity or a NaN is left to
    Arb."""
    if X.ndim != 2 or X.shape[1] != 1:
        return None
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        x = X.astype(np.float64)[:, 0]
    valid = np.abs(x) <= dd.EXP_DOMAIN  # NaN compares False
    k, hi, lo = dd.exp_scaled(np.where(valid, x, 0.0), np.zeros_like(x))
    eps = dd.EXP_ERROR / (1 - dd.EXP_ERROR)
    mids = Midpoints(
        hi=hi,
        lo=lo,
        accuracy=np.full(len(x), accuracy_of(eps), dtype=np.int64),
        valid=valid,
        zero=np.zeros(len(x), dtype=bool),
        scale=k,
    )
    return Enclosed(mids, 1, np.abs(x), np.ones(len(x), dtype=bool))


ENCLOSURES[exp_reference] = exp_enclosed
