"""Re-derive a sample of a ground-truth cache's records: ``precision cache verify``.

Each record is sealed with a checksum (`precision.store.GroundTruthCache`), which catches a
damaged or naively edited record but not a forged one whose checksum was recomputed. A record
that holds its input (`precision.truth.records.INPUT_FIELDS`) can be checked against the code
itself: its key is recomputed from the stored problem, input, formats and engine, and its truth
is recomputed with `precision.truth.exact.ground_truths` and compared with what is stored, as far
as the engine certifies it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import numpy as np

from precision import store
from precision.core.formats import get_format
from precision.problems import PROBLEMS
from precision.truth.exact import AGREEMENT, COND_ACCURACY, UndefinedResult, ground_truths
from precision.truth.records import (
    INPUT_FIELDS,
    cache_key,
    record_input,
    truth_code_fingerprint,
    truth_record,
)

GOOD, MISMATCH, UNVERIFIABLE, STALE = "good", "mismatch", "unverifiable", "stale"
"""What `check_record` finds: the record is what the code computes; it is not; it cannot be
recomputed (an older record without its input, one failing its checksum, or one of a problem
not registered in this process); it was made by other reference code (a run of this code never
looks it up, since its key differs)."""


class CacheUnreadable(Exception):
    """A cache file that is missing or cannot be read as a ground-truth cache (one line)."""


@dataclass
class Verification:
    """The outcome of `verify_cache`.

    Attributes
    ----------
    checked : int
        Records drawn.
    mismatches : list of str
        One line per record that differs from its recomputation (key first).
    unverifiable : int
        Records that cannot be recomputed (see `check_record`).
    stale : int
        Records made by other reference code.
    """

    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    unverifiable: int = 0
    stale: int = 0

    def summary(self) -> str:
        """The final line of ``precision cache verify``."""
        line = (
            f"verified {self.checked} records: {len(self.mismatches)} mismatched, "
            f"{self.unverifiable} not verifiable (older format)"
        )
        return line + (f", {self.stale} made by other code (never used)" if self.stale else "")


def verify_cache(path: Path, *, sample: int, seed: int) -> Verification:
    """Recompute ``sample`` records drawn at random (``seed``) from the cache file ``path``.

    Raises
    ------
    CacheUnreadable
        When the file is missing or is not a readable ground-truth cache.
    """
    try:
        drawn = store.GroundTruthCache(path).sample(sample, seed=seed)
    except FileNotFoundError as exc:
        raise CacheUnreadable(f"no ground-truth cache at {path}") from exc
    except (sqlite3.Error, OSError) as exc:
        raise CacheUnreadable(f"cannot read the ground-truth cache {path}: {exc}") from exc
    result = Verification(checked=len(drawn))
    for key, record in drawn:
        status, why = check_record(key, record)
        if status == MISMATCH:
            result.mismatches.append(f"{key}: {why}")
        result.unverifiable += status == UNVERIFIABLE
        result.stale += status == STALE
    return result


def check_record(key: str, record: dict | None) -> tuple[str, str]:
    """(status, why) of one record stored under ``key``: GOOD, MISMATCH (why says how),
    UNVERIFIABLE or STALE (see the module's statuses)."""
    needed = set(INPUT_FIELDS) - {"input_f64"}  # or "input": records of older code
    if record is None or not needed <= record.keys() or not {"input_f64", "input"} & record.keys():
        return UNVERIFIABLE, ""
    problem = PROBLEMS.get(record["problem"])
    if problem is None:  # a user's problem whose module this process has not imported
        return UNVERIFIABLE, ""
    try:
        if record.get("params"):  # the reference's parameters the truth was computed with
            problem = problem.with_params(**record["params"])
        return _check(problem, key, record)
    except (ValueError, TypeError, KeyError) as exc:  # a forged record of the wrong shape
        return MISMATCH, f"malformed record ({type(exc).__name__}: {exc})"


def _check(problem, key: str, record: dict) -> tuple[str, str]:
    x = record_input(record)
    formats, engine = list(record["formats"]), record["engine"]
    if cache_key(problem, x, formats, engine=engine) != key:
        if record["code"] != truth_code_fingerprint(problem):
            return STALE, ""
        return MISMATCH, "its key does not match its stored problem, input, formats and engine"
    # Exact: every format of the record received this same input (run.truths groups them so).
    x_fmt = x.astype(get_format(formats[0]).dtype)
    try:
        fresh = truth_record(ground_truths(problem, x_fmt, formats, engine=engine))
    except UndefinedResult:
        return MISMATCH, "the exact result is undefined at its input"
    differing = differences(record, fresh)
    if differing:
        return MISMATCH, f"{record['problem']} differs from its recomputation in {differing}"
    return GOOD, ""


def differences(stored: dict, fresh: dict) -> str:
    """The fields of a stored truth record that differ from a fresh one ("" for none).

    Certified values are compared as far as they are certified: the exact output (hi + lo)
    * 2**exp to 2 * AGREEMENT relative (each is within AGREEMENT of the exact value) and the
    condition number to 2 * COND_ACCURACY (the arb engine's ball radius); the roundings,
    precision, certification and engine exactly. An uncertified record is compared exactly.
    """
    names = [name for name in ("prec", "certified", "engine") if stored[name] != fresh[name]]
    if set(stored["rounded"]) != set(fresh["rounded"]) or not all(
        _same_bits(stored["rounded"][name], values) for name, values in fresh["rounded"].items()
    ):
        names.append("rounded")
    certified = bool(fresh["certified"])
    if not _same_outputs(stored, fresh, 2 * AGREEMENT if certified else 0.0):
        names.append("hi/lo/exp")
    if not _close(float(stored["cond"]), float(fresh["cond"]), 2 * COND_ACCURACY * certified):
        names.append("cond")
    return ", ".join(names)


def _same_bits(a, b) -> bool:
    """Equal float arrays, NaN equal to NaN and the sign of zero counted."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


def _same_outputs(stored: dict, fresh: dict, tolerance: float) -> bool:
    """Whether every output (hi + lo) * 2**exp agrees to ``tolerance`` relative."""
    parts = [
        [np.ravel(np.asarray(r[name], dtype=dtype)) for name, dtype in _SPLIT]
        for r in (stored, fresh)
    ]
    if any(a.shape != b.shape for a, b in zip(*parts, strict=True)):
        return False
    with mpmath.workprec(256):  # hi + lo holds at most 106 bits; the difference is exact
        values = [[_value(*split) for split in zip(*p, strict=True)] for p in parts]
        return all(_close(a, b, tolerance) for a, b in zip(*values, strict=True))


_SPLIT = (("hi", np.float64), ("lo", np.float64), ("exp", np.int64))


def _value(hi: float, lo: float, exp: int):
    return mpmath.ldexp(mpmath.mpf(float(hi)) + mpmath.mpf(float(lo)), int(exp))


def _close(a, b, tolerance: float) -> bool:
    """a == b (NaN equal to NaN), or |a - b| <= tolerance * |b|."""
    if a == b or (a != a and b != b):  # a != a: NaN, in float or mpf
        return True
    finite = mpmath.isfinite(a) and mpmath.isfinite(b)  # else tolerance * inf accepts anything
    return finite and abs(a - b) <= tolerance * abs(b)
