"""Certified mpmath ground truth for an input exactly as an algorithm received it.

The input is the array after rounding to the format; its floats convert to mpmath exactly
(through Python floats, never through decimal strings). The problem's reference is evaluated at
increasing working precision until two consecutive precisions agree after rounding to the output
format and to about 2**-80 relative (an output of exactly 0 must also persist to ZERO_PREC
bits), so that both the ulp measures and the relative errors built on the reference are
trustworthy. Agreement can still be fooled by a reference formula that loses a term at every
precision (1 + 1e-100 is 1 below ~330 bits), so references avoid such forms (log1p, not
log(1 + r)). A point that does not settle by the precision cap is returned with
``certified=False``; the runner flags it instead of using it silently.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import mpmath
import numpy as np

from precision.formats import Format, get_format, round_to_format
from precision.metrics import Exact
from precision.problems.base import Problem

PRECISIONS = (113, 160, 256, 512, 1024, 2048, 4096)
"""Working precisions (bits) tried in turn; consecutive pairs are compared."""

AGREEMENT = 2.0**-80
"""Largest relative difference between consecutive evaluations accepted as agreement."""

ZERO_PREC = 1024
"""Lowest precision at which an output of exactly 0 is accepted (total cancellation at two low
precisions would otherwise certify a wrong 0)."""


@dataclass(frozen=True)
class GroundTruth:
    """The exact output of one input in one format, with its certification.

    Attributes
    ----------
    exact : Exact
        The output, split for error arithmetic, with its correct rounding to the format.
    cond : float
        The problem's relative condition number at this input (measured, not the target).
    prec : int
        Working precision (bits) of the accepted evaluation.
    certified : bool
        Whether two consecutive precisions agreed (see module docstring).
    seconds : float
        Time spent, for cost accounting.
    """

    exact: Exact
    cond: float
    prec: int
    certified: bool
    seconds: float


def to_mpf_array(x: np.ndarray) -> np.ndarray:
    """Exact conversion of a float array of any registry format to an object array of mpf.

    ``tolist()`` on the float64 view gives Python floats, which mpmath takes exactly at 53 bits
    or more (``mpmath.mpf`` rounds to the working precision, so it is fixed at 53 here, also
    inside a caller's lower ``workprec``); numpy float16/float32/bfloat16 scalars would be
    rejected by ``mpmath.mpf``.
    """
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        x64 = np.asarray(x).astype(np.float64)
    out = np.empty(x64.shape, dtype=object)
    with mpmath.workprec(53):
        out.ravel()[:] = [mpmath.mpf(v) for v in x64.ravel().tolist()]
    return out


def ground_truth(
    problem: Problem, x: np.ndarray, fmt: Format | str, *, precisions=PRECISIONS
) -> GroundTruth:
    """Certified reference output and condition number for input ``x`` (already in ``fmt``).

    Parameters
    ----------
    problem : Problem
    x : numpy.ndarray
        The input as the algorithm receives it (dtype of ``fmt``).
    fmt : Format or str
        The output format the reference is rounded to.
    precisions : sequence of int, keyword-only
        Working precisions to try, increasing; the last one is the cap.
    """
    fmt = get_format(fmt)
    start = time.perf_counter()
    x_mp = to_mpf_array(x)
    previous = None
    for prec in precisions:
        with mpmath.workprec(prec):
            y, cond = problem.reference(x_mp)
            rounded = [round_to_format(v, fmt) for v in y]
        if previous is not None and _agree(previous, (y, rounded), prec):
            return _truth(y, rounded, cond, fmt, prec, True, start)
        previous = (y, rounded)
    return _truth(y, rounded, cond, fmt, prec, False, start)


def _agree(previous, current, prec: int) -> bool:
    (y0, r0), (y1, r1) = previous, current
    same_rounding = all(
        (a == b) or (np.isnan(a) and np.isnan(b)) for a, b in zip(r0, r1, strict=True)
    )
    if not same_rounding:
        return False
    if prec < ZERO_PREC and any(b == 0 for b in y1):
        # Two precisions that both cancel to exactly 0 agree without being right: a zero is
        # believed only once it survives an evaluation at ZERO_PREC bits.
        return False
    with mpmath.workprec(prec):
        return all(a == b or abs(a - b) <= AGREEMENT * abs(b) for a, b in zip(y0, y1, strict=True))


def _truth(y, rounded, cond, fmt: Format, prec, certified, start) -> GroundTruth:
    with mpmath.workprec(prec):
        exact = Exact.from_mpf(list(y))
        cond_value = float(cond)
    exact = dataclasses.replace(exact, rounded=np.array(rounded, dtype=fmt.dtype))
    seconds = time.perf_counter() - start
    return GroundTruth(exact, cond_value, prec, certified, seconds)
