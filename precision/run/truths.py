"""Certified ground truth of a chunk's inputs, through the cache, as columns per received input.

Per input, the received inputs that are identical (always with shared_inputs; often float32 and
float64 for data stored in float32) share one evaluation, certified for all of their formats;
the inputs with the same grouping are certified together, one batch per group
(`precision.truth.batch.ground_truths_batch`). The runner reads the columns
(`FormatTruths`): no object per input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from precision.core import metrics
from precision.core.formats import get_format
from precision.run.spec import StudySpec
from precision.truth.batch import BatchTruths, ground_truths_batch
from precision.truth.exact import GroundTruth
from precision.truth.records import cache_key, truth_record, truths_from_record


def chunk_ground_truths(
    spec: StudySpec, problem, inputs: dict[str, np.ndarray], cache, *, formats=None
) -> tuple[dict[str, FormatTruths], float]:
    """Certified ground truth of every input of a chunk per received input (`Received.key`),
    as columns (`FormatTruths`), and the seconds spent; ``inputs`` maps each key to its batch
    ``(batch, *shape)`` and ``formats`` each key to its format (default: the key itself).

    Per input, the keys whose inputs are identical (always with shared_inputs; often float32
    and float64 for data stored in float32) share one evaluation, certified for all of their
    formats, unless the problem's reference reads the format of its input
    (``Problem.reference_reads_format``). The inputs with the same grouping of keys are
    certified together, a batch per group (`_group_truths`: `ground_truths_batch`, through the
    cache), so a chunk makes a few calls, not one per input. A key whose input is not finite in
    a row is absent there. The seconds count every evaluation, those of inputs without an
    exact result included.
    """
    formats = formats or {}
    keys = list(inputs)
    batch = len(next(iter(inputs.values()))) if keys else 0
    leaders = _group_leaders([inputs[k] for k in keys], batch)
    if problem.reference_reads_format:  # equal inputs of two formats have different truths
        leaders = np.where(leaders >= 0, np.arange(len(keys))[:, None], -1)
    parts: dict[str, list] = {k: [] for k in keys}
    seconds = 0.0
    patterns, where = np.unique(leaders.T, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        rows = np.flatnonzero(where.ravel() == p)
        for lead in np.unique(pattern[pattern >= 0]).tolist():
            group = [keys[i] for i in np.flatnonzero(pattern == lead).tolist()]
            names = list(dict.fromkeys(formats.get(k, k) for k in group))
            found, spent = _group_truths(spec, problem, inputs[keys[lead]][rows], names, cache)
            seconds += spent
            for k in group:
                parts[k].append((rows, found))
    truths = {
        k: FormatTruths.gather(formats.get(k, k), leaders[i] >= 0, parts[k])
        for i, k in enumerate(keys)
    }
    return truths, seconds


def _group_leaders(batches: list[np.ndarray], batch: int) -> np.ndarray:
    """``(keys, batch)`` int: for each key and input, the first key whose input is the same
    (the same float64 bits, as ``tobytes`` compares them), or -1 where it is not finite."""
    flat = []
    for X in batches:
        with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
            flat.append(np.ascontiguousarray(np.asarray(X).astype(np.float64)).reshape(batch, -1))
    finite = [np.isfinite(x).all(axis=1) for x in flat]
    leaders = np.full((len(flat), batch), -1, dtype=np.int64)
    for i, x in enumerate(flat):
        leaders[i][finite[i]] = i
        for j in range(i):
            same = (
                finite[j]
                & (leaders[i] == i)
                & (x.view(np.uint64) == flat[j].view(np.uint64)).all(axis=1)
            )
            leaders[i][same] = leaders[j][same]
    return leaders


def _group_truths(spec: StudySpec, problem, X: np.ndarray, names: list[str], cache):
    """`ground_truths_batch` of inputs ``X`` in formats ``names``, and the seconds spent.
    Cached records are reused, new ones are added to the cache (one record per input)."""
    if cache is None:
        found = ground_truths_batch(problem, X, names, engine=spec.engine)
        return found, float(found.seconds.sum())
    keys = [cache_key(problem, x, names, engine=spec.engine) for x in X]
    records = [cache.get(key) for key in keys]
    missing = [b for b, record in enumerate(records) if record is None]
    computed = ground_truths_batch(problem, X[missing], names, engine=spec.engine)
    per_input = [truths_from_record(r) if r is not None else None for r in records]
    for i, b in enumerate(missing):
        per_input[b] = computed.truths(i)
        if per_input[b] is not None:
            cache.put(keys[b], truth_record(per_input[b], problem=problem, x=X[b]))
    return BatchTruths.from_truths(per_input, names), float(computed.seconds.sum())


@dataclass(frozen=True)
class FormatTruths:
    """The ground truths of one received input over a chunk, in its format, as columns
    (`BatchTruths` in one format): rows ``present`` (the input is finite) and ``defined``
    (it has an exact result) hold values; the others zeros."""

    name: str
    present: np.ndarray
    defined: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    exp: np.ndarray
    rounded: np.ndarray
    cond: np.ndarray
    prec: np.ndarray
    certified: np.ndarray
    engine: str

    @classmethod
    def gather(cls, name: str, present: np.ndarray, parts: list) -> FormatTruths:
        """The rows of the (rows, `BatchTruths`) parts, each in its place."""
        batch = len(present)
        filled = [(rows, t) for rows, t in parts if t.defined.any()]
        m = filled[0][1].hi.shape[1] if filled else 0
        dtype = get_format(name).dtype
        hi, lo = np.zeros((batch, m)), np.zeros((batch, m))
        exp, rounded = np.zeros((batch, m), np.int64), np.zeros((batch, m), dtype)
        cond, prec = np.zeros(batch), np.zeros(batch, np.int64)
        certified, defined = np.zeros(batch, bool), np.zeros(batch, bool)
        for rows, t in parts:
            defined[rows] = t.defined
        for rows, t in filled:
            hi[rows], lo[rows], exp[rows] = t.hi, t.lo, t.exp
            rounded[rows], cond[rows] = t.rounded[name], t.cond
            prec[rows], certified[rows] = t.prec, t.certified
        engine = filled[0][1].engine if filled else ""
        return cls(name, present, defined, hi, lo, exp, rounded, cond, prec, certified, engine)

    def exact(self, rows: np.ndarray) -> metrics.Exact:
        """The `Exact` of rows ``rows`` with their rounding to the format (as ``Exact.stack``
        of those inputs' ground truths)."""
        return metrics.Exact(self.hi[rows], self.lo[rows], self.exp[rows], self.rounded[rows])

    def truth(self, b: int) -> GroundTruth | None:
        """Row ``b`` as a `GroundTruth` (None: no exact result; seconds are not kept)."""
        if not self.defined[b]:
            return None
        exact = metrics.Exact(self.hi[b], self.lo[b], self.exp[b], self.rounded[b])
        cond, prec, certified = float(self.cond[b]), int(self.prec[b]), bool(self.certified[b])
        return GroundTruth(exact, cond, prec, certified, 0.0, self.engine)
