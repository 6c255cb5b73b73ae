"""Certified ground truth of a batch of inputs at once, column by column.

`ground_truths_batch` certifies a batch of inputs of one problem with the results
`precision.truth.exact.ground_truths` gives each of them, bit for bit, as columns
(`BatchTruths`): the runner reads them without a Python object per input. A reference cheap
per input (exp: ``arb.exp`` at 113 bits runs about 1.9 million per CPU second, a
`ground_truths` call of one format about 18,000, measured 2026-12-06) is declared with
`register_batch_reference`: the whole batch is evaluated at the first precision and its balls
certified in one `balls.decide` call; only what that leaves takes the per-input engine.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import flint
import numpy as np

from precision.core.formats import Format, get_format
from precision.core.metrics import Exact
from precision.core.numbers import ARB
from precision.problems.base import Problem
from precision.problems.exp import exp_reference
from precision.truth import balls as balls_module
from precision.truth import enclosed, shortcuts
from precision.truth.batch_shortcuts import certify_shortcut_batch
from precision.truth.exact import (
    AGREEMENT,
    ENGINES,
    PRECISIONS,
    GroundTruth,
    UndefinedResult,
    _accurate_condition,
    _denominator,
    ground_truths,
)


@dataclass(frozen=True)
class BatchTruths:
    """Certified ground truths of a batch of inputs of one problem, column by column.

    Row ``b`` holds what `ground_truths` returns for input ``b`` (`truths` rebuilds that dict,
    bit for bit, seconds apart): the runner reads the columns directly, so that a chunk of
    scalar inputs makes no per-input Python objects. Every input has the same number ``m`` of
    outputs (one problem, one input shape).

    Attributes
    ----------
    formats : tuple of str
        The output formats, in the order asked.
    hi, lo : numpy.ndarray
        ``(batch, m)`` float64: the `Exact` split of each output, ``(hi + lo) * 2**exp``.
    exp : numpy.ndarray
        ``(batch, m)`` int64.
    rounded : dict
        Format name -> ``(batch, m)`` array in the format's dtype: each output correctly
        rounded to that format.
    cond : numpy.ndarray
        ``(batch,)`` float64: the condition number (`GroundTruth.cond`).
    prec : numpy.ndarray
        ``(batch,)`` int64: working precision of the accepted evaluation.
    certified : numpy.ndarray
        ``(batch,)`` bool.
    defined : numpy.ndarray
        ``(batch,)`` bool: False where `ground_truths` raises `UndefinedResult` (the other
        columns hold zeros there).
    seconds : numpy.ndarray
        ``(batch,)`` float64: each input's share of the time spent.
    engine : str
    """

    formats: tuple[str, ...]
    hi: np.ndarray
    lo: np.ndarray
    exp: np.ndarray
    rounded: dict[str, np.ndarray]
    cond: np.ndarray
    prec: np.ndarray
    certified: np.ndarray
    defined: np.ndarray
    seconds: np.ndarray
    engine: str

    def __len__(self) -> int:
        return len(self.defined)

    def exact(self, name: str, rows: np.ndarray) -> Exact:
        """The `Exact` of the rows ``rows`` with their rounding to format ``name``: what
        ``Exact.stack`` makes of those inputs' `GroundTruth.exact`."""
        return Exact(self.hi[rows], self.lo[rows], self.exp[rows], self.rounded[name][rows])

    @classmethod
    def from_truths(cls, truths: list, fmts) -> BatchTruths:
        """The columns of per-input `ground_truths` results (None: undefined), e.g. records
        read back from the cache (`precision.truth.records.truths_from_record`)."""
        fmts = [get_format(f) for f in fmts]
        columns = _BatchColumns(len(truths), fmts, "arb")
        for b, found in enumerate(truths):
            if found is not None:
                columns.put(b, {f.name: found[f.name] for f in fmts})
        return columns.finish()

    def truths(self, b: int) -> dict[str, GroundTruth] | None:
        """Input ``b``'s ground truths as `ground_truths` returns them (None: undefined); the
        seconds are booked on the first format."""
        if not self.defined[b]:
            return None
        hi, lo, exp = self.hi[b].copy(), self.lo[b].copy(), self.exp[b].copy()
        return {
            name: GroundTruth(
                Exact(hi, lo, exp, self.rounded[name][b].copy()),
                float(self.cond[b]),
                int(self.prec[b]),
                bool(self.certified[b]),
                float(self.seconds[b]) if j == 0 else 0.0,
                self.engine,
            )
            for j, name in enumerate(self.formats)
        }


BatchReference = Callable[[np.ndarray, int], "tuple[list, int, np.ndarray, np.ndarray] | None"]
"""``evaluate(X, prec)``: the Arb output balls of every input of a batch ``X`` at ``prec`` bits,
flattened input by input (``m`` per input), ``m``, and each input's condition number as
``float(cond.mid())`` with whether `_accurate_condition` accepts it; None leaves the whole batch
to the per-input path. The balls must be those of ``problem.reference(x, ARB)``, ball for ball."""

BATCH_REFERENCES: dict[Callable, BatchReference] = {}
"""Reference function -> its batch evaluator: the references cheap enough per input that the
fixed cost of one `ground_truths` call (about 55 microseconds for exp in one format) dominates
them. Keyed by the
function, so a problem with another reference never meets it (as `shortcuts.shortcut_for`)."""


def register_batch_reference(reference: Callable, evaluate: BatchReference | None = None):
    """Declare ``reference`` cheap per input, so that `ground_truths_batch` evaluates a whole
    batch at the first precision and certifies it in one `balls.decide` call.

    ``evaluate`` is a `BatchReference`; None evaluates ``reference`` input by input at the same
    precision (`_rowwise`: it saves the per-input certification, not the evaluation; measured
    0.9-1.1x for the softmax family, fd_exp and gelu, whose evaluations dominate, so none of
    them is declared). Returns ``evaluate``, so that it serves as a decorator:
    ``@register_batch_reference(exp_reference)``.
    """

    def register(function: BatchReference | None) -> BatchReference | None:
        BATCH_REFERENCES[reference] = function or functools.partial(_rowwise, reference)
        return function

    return register(evaluate) if evaluate is not None else register


def _rowwise(reference: Callable, X: np.ndarray, prec: int):
    """`BatchReference` of any reference: evaluated input by input, exported and decided at
    once. None when the inputs' output counts differ. An input whose evaluation divides by an
    exact 0 gets NaN balls, so that `ground_truths` takes it (and raises `UndefinedResult`)."""
    outputs, conds = [], []
    with ARB.workprec(prec):
        for x in X:
            try:
                y, cond = reference(x, ARB)
            except ZeroDivisionError:
                y, cond = None, _NAN_BALL
            outputs.append(None if y is None else list(y))
            conds.append(cond)
    counts = {len(y) for y in outputs if y is not None}
    if len(counts) != 1:
        return None
    (m,) = counts
    balls = [b for y in outputs for b in (y if y is not None else [_NAN_BALL] * m)]
    cond_mid = np.array([float(c.mid()) for c in conds], dtype=np.float64)
    accurate = np.array([_accurate_condition(c) for c in conds], dtype=bool)
    return balls, m, cond_mid, accurate


_NAN_BALL = flint.arb("nan")


@register_batch_reference(exp_reference)
def _exp_batch(X: np.ndarray, prec: int):
    """exp of a batch of scalars ``(batch, 1)``: ``arb.exp`` mapped over the exact balls, as
    `exp_reference` makes them one at a time. Its condition number |x| is an exact ball
    (the absolute value of an exact ball), so ``float(cond.mid())`` is |x| and always
    accurate."""
    if X.ndim != 2 or X.shape[1] != 1:
        return None
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        values = X.astype(np.float64)[:, 0]
    with ARB.workprec(prec):
        balls = list(map(flint.arb.exp, map(flint.arb, values.tolist())))
    return balls, 1, np.abs(values), np.ones(len(values), dtype=bool)


def ground_truths_batch(
    problem: Problem,
    X: np.ndarray,
    fmts,
    *,
    precisions=PRECISIONS,
    engine: str = "mpmath",
    shortcut: bool = True,
) -> BatchTruths:
    """`ground_truths` of every input of a batch ``X`` (shape ``(batch, *input_shape)``).

    Returns the same per-input results, bit for bit (`BatchTruths.truths`), an input without
    an exact result marked undefined instead of raising `UndefinedResult`. With
    ``engine="arb"``, exp and the softmax family are first certified in double-double over the
    whole batch (`precision.truth.enclosed`, as `ground_truths` does input by input). With
    ``engine="arb"`` and a reference declared cheap (`register_batch_reference`; not where an
    exact shortcut applies), the batch is evaluated at the first precision, its output balls
    exported at once and decided in one `balls.decide` call, whose decisions are those of
    `_ball` (`precision.truth.balls`): an input whose every ball certifies in every format and
    whose condition number is accurate is accepted at ``precisions[0]``, exactly as the
    per-input engine accepts it there. Every other input (a ball near a rounding boundary,
    too wide, not finite, an inaccurate condition number) takes `ground_truths`, which
    starts again from the first precision and climbs. With ``engine="arb"`` and an exact
    shortcut (sums, differences, dot products), the exact sums of two or more inputs are formed
    at once (`precision.truth.batch_shortcuts`), with the same results. Other problems and
    engines take `ground_truths` input by input.

    Parameters
    ----------
    problem : Problem
    X : numpy.ndarray
        ``(batch, *input_shape)``: the inputs as the algorithm receives them (dtype of the
        format they were rounded to).
    fmts : sequence of Format or str
        The output formats, every input certified for all of them (as `ground_truths`).
    precisions, engine, shortcut : keyword-only
        As for `ground_truth`.

    Returns
    -------
    BatchTruths
        One row per input, in the order of ``X``.
    """
    fmts = [get_format(f) for f in fmts]
    if engine not in ENGINES:
        raise ValueError(f"ground_truth: engine must be one of {ENGINES}, got {engine!r}")
    X = np.asarray(X)
    columns = _BatchColumns(len(X), fmts, "mpmath" if engine == "mpmath" else "arb")
    todo = np.arange(len(X))
    enclose = enclosed.enclosure_for(
        problem, engine=engine, shortcut=shortcut, precisions=precisions
    )
    if enclose is not None and len(todo):
        todo = todo[_certify_enclosed(enclose, X, fmts, columns)]
    evaluate = _batch_reference(problem, engine=engine, shortcut=shortcut)
    if evaluate is not None and len(todo):
        todo = todo[_certify_batch(evaluate, X[todo], fmts, precisions[0], columns, todo)]
    elif engine == "arb" and shortcut and enclose is None and len(X):
        # Exact shortcuts: the batch's sums at once.
        left = certify_shortcut_batch(problem, X, fmts, precisions[0], columns)
        todo = todo if left is None else left
    for b in todo.tolist():
        start = time.perf_counter()
        try:
            found = ground_truths(
                problem, X[b], fmts, precisions=precisions, engine=engine, shortcut=shortcut
            )
        except UndefinedResult:
            columns.seconds[b] = time.perf_counter() - start
            continue
        columns.put(b, found)
    return columns.finish()


def _batch_reference(problem: Problem, *, engine: str, shortcut: bool) -> BatchReference | None:
    """The batch evaluator of ``problem``'s reference for the arb engine, or None (the mpmath
    engine, an undeclared reference, one bound to parameters (evaluators take none), or one
    whose exact shortcut `ground_truths` would take)."""
    if engine != "arb" or problem.params or (shortcut and shortcuts.shortcut_for(problem)):
        return None
    return BATCH_REFERENCES.get(problem.reference)


def _certify_batch(evaluate: BatchReference, X, fmts, prec: int, columns, at) -> np.ndarray:
    """Evaluate the batch's distinct inputs at ``prec``, certify every ball in numpy and fill
    ``columns`` with the inputs accepted there (row i of ``X`` is row ``at[i]`` of
    ``columns``); returns the indices in ``X`` of the others (for `ground_truths`).

    Identical inputs (the same bits; 16-bit formats repeat many values) are evaluated and
    decided once and spread to each of their rows: the evaluation of an input depends on its
    bits alone, so a repeat gets the same truth as its own evaluation would give it."""
    start = time.perf_counter()
    first, inverse = _distinct_rows(X)
    found = evaluate(X[first], prec)
    if found is None:
        return np.arange(len(X))
    balls, m, cond_mid, cond_accurate = found
    decided = balls_module.decide(balls_module.export(balls), fmts, _denominator(AGREEMENT))
    distinct = len(first)
    # An input is accepted only when all of its m balls certify (as `_ArbOutputs.certified`).
    accepted = (decided.certified.reshape(distinct, m).all(axis=1) & cond_accurate)[inverse]
    _put_accepted(columns, at, accepted, inverse, decided, cond_mid, prec, start)
    return np.flatnonzero(~accepted)


def _certify_enclosed(enclose: enclosed.Evaluator, X, fmts, columns) -> np.ndarray:
    """`_certify_batch` for a double-double evaluator (`precision.truth.enclosed`): its
    accepted inputs fill ``columns`` with ``prec`` DD_PREC; returns the indices of the
    others."""
    start = time.perf_counter()
    first, inverse = _distinct_rows(X)
    found = enclose(X[first])
    if found is None:
        return np.arange(len(X))
    ok, decided = enclosed.certify(found, fmts, _denominator(AGREEMENT))
    accepted = ok[inverse]
    rows = np.arange(len(X))
    _put_accepted(columns, rows, accepted, inverse, decided, found.cond, enclosed.DD_PREC, start)
    return np.flatnonzero(~accepted)


def _put_accepted(columns, at, accepted, inverse, decided, cond, prec: int, start) -> None:
    """Fill ``columns`` at rows ``at[accepted]`` from the decisions of the distinct inputs
    (``inverse`` maps each row to its distinct input; each has ``m`` balls)."""
    rows = np.flatnonzero(accepted)
    where = inverse[rows]
    distinct = len(cond)
    m = decided.hi.size // max(distinct, 1)
    settled = np.where(decided.settled, decided.rounded, 0.0)  # no cast of a placeholder
    columns.put_decided(
        at[rows],
        decided.hi.reshape(distinct, m)[where],
        decided.lo.reshape(distinct, m)[where],
        decided.exp.reshape(distinct, m)[where],
        [settled[j].reshape(distinct, m)[where] for j in range(len(settled))],
        cond[where],
        prec,
    )
    if len(rows):  # the batch's time, shared by the inputs it settled
        columns.seconds[at[rows]] = (time.perf_counter() - start) / len(rows)


def _distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse): the index of each distinct input's first row, and each row's distinct
    input (``X[first][inverse]`` is X), comparing the float64 bits of whole rows (-0 and +0
    apart, as `precision.truth.records.cache_key` does)."""
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        bits = np.ascontiguousarray(X.astype(np.float64)).reshape(len(X), -1).view(np.uint64)
    if bits.shape[1] == 1:  # scalars: a plain sort, much cheaper than unique rows
        _, first, inverse = np.unique(bits[:, 0], return_index=True, return_inverse=True)
        return first, inverse.ravel()
    # Vectors: their bytes as dictionary keys. np.unique(axis=0) sorts a structured view,
    # 3 ms for six rows of 1000 (measured): more than certifying them.
    seen: dict[bytes, int] = {}
    inverse = np.fromiter(
        (seen.setdefault(row.tobytes(), len(seen)) for row in bits), np.intp, len(bits)
    )
    first = np.full(len(seen), len(bits), dtype=np.intp)
    np.minimum.at(first, inverse, np.arange(len(bits)))
    return first, inverse


class _BatchColumns:
    """`BatchTruths` columns filled input by input or a block at a time; the output count m
    (and with it the arrays) is fixed by the first input filled."""

    def __init__(self, batch: int, fmts: list[Format], engine: str):
        self.batch, self.fmts, self.engine = batch, fmts, engine
        self.cond = np.zeros(batch, dtype=np.float64)
        self.prec = np.zeros(batch, dtype=np.int64)
        self.certified = np.zeros(batch, dtype=bool)
        self.defined = np.zeros(batch, dtype=bool)
        self.seconds = np.zeros(batch, dtype=np.float64)
        self.hi = None

    def _allocate(self, m: int) -> None:
        if self.hi is None:
            self.hi = np.zeros((self.batch, m), dtype=np.float64)
            self.lo = np.zeros((self.batch, m), dtype=np.float64)
            self.exp = np.zeros((self.batch, m), dtype=np.int64)
            self.rounded = [np.zeros((self.batch, m), dtype=f.dtype) for f in self.fmts]

    def put_decided(self, rows, hi, lo, exp, rounded, cond, prec: int) -> None:
        """Inputs ``rows`` accepted by `balls.decide` at ``prec``."""
        self._allocate(hi.shape[1])
        self.hi[rows], self.lo[rows], self.exp[rows] = hi, lo, exp
        for column, values, fmt in zip(self.rounded, rounded, self.fmts, strict=True):
            column[rows] = values.astype(fmt.dtype)
        self.cond[rows], self.prec[rows] = cond, prec
        self.certified[rows] = self.defined[rows] = True

    def put(self, b: int, truths: dict[str, GroundTruth]) -> None:
        """Input ``b``'s `ground_truths`."""
        first = next(iter(truths.values()))
        self._allocate(first.exact.hi.size)
        exact = first.exact  # flattened, as `Exact.stack` makes a batch of them
        self.hi[b], self.lo[b], self.exp[b] = (
            np.ravel(exact.hi),
            np.ravel(exact.lo),
            np.ravel(exact.exp),
        )
        for column, truth in zip(self.rounded, truths.values(), strict=True):
            column[b] = np.ravel(truth.exact.rounded)
        self.cond[b], self.prec[b], self.certified[b] = first.cond, first.prec, first.certified
        self.defined[b] = True
        self.seconds[b] = sum(t.seconds for t in truths.values())
        self.engine = first.engine

    def finish(self) -> BatchTruths:
        self._allocate(0)  # no input defined: no outputs to hold
        names = tuple(f.name for f in self.fmts)
        return BatchTruths(
            names,
            self.hi,
            self.lo,
            self.exp,
            dict(zip(names, self.rounded, strict=True)),
            self.cond,
            self.prec,
            self.certified,
            self.defined,
            self.seconds,
            self.engine,
        )
