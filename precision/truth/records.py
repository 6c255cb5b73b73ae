"""What a cached ground truth is and how it is named: fingerprints, keys and records.

A ground truth (`precision.truth.exact.GroundTruth`) is cached under a key (`cache_key`) that
names everything it depends on: the problem and its parameters, the input's exact bits and
shape, the output formats, the engine, the precision rule, and the code that computes it
(`truth_code_fingerprint`: `reference_fingerprint` over `reference_files`, which are every problem
module, every module of the truth stage, this one included, and `REFERENCE_CORE_MODULES`; and
`outside_reference_fingerprint` for a reference defined outside the package). A record
(`truth_record`) is the truth as JSON, with its input (INPUT_FIELDS) so that ``precision cache
verify`` (`precision.truth.verify`) can recompute it; `truths_from_record` reads it back. The
store (`precision.store.cache`) keeps records under their keys and knows nothing of what they
hold.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

import numpy as np

from precision.core.formats import get_format
from precision.core.metrics import Exact
from precision.problems.base import Problem
from precision.truth import exact
from precision.truth.exact import PRECISIONS, GroundTruth

REFERENCE_CORE_MODULES = (
    "numbers.py",
    "arb_linalg.py",
    "arb_singular_values.py",
    "formats.py",
    "metrics.py",
    "double_double.py",
)
"""The core modules the references and the engines compute with (tests/truth/test_records.py
checks that every core module the truth stage imports is one of them)."""


def reference_files() -> list[Path]:
    """The source files a ground truth depends on: every problem module (the references),
    every module of the truth stage, and `REFERENCE_CORE_MODULES`."""
    package = Path(__file__).resolve().parents[1]
    paths = sorted(package.glob("problems/*.py")) + sorted(package.glob("truth/*.py"))
    return paths + [package / "core" / name for name in REFERENCE_CORE_MODULES]


@functools.lru_cache(maxsize=1)
def reference_fingerprint() -> str:
    """sha256 of the code a ground truth depends on (`reference_files`): the problems'
    references, the number systems, the engines, exact rounding and the `Exact` split. A cached
    ground truth made by other code is never reused."""
    digest = hashlib.sha256()
    for path in reference_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def outside_reference_fingerprint(reference) -> str:
    """sha256 of the source file of a reference defined outside the package (a user's problem),
    "" for the package's own: an edited user reference never reuses stale truths."""
    import inspect

    try:
        path = Path(inspect.getsourcefile(reference) or "").resolve()
    except TypeError:  # not Python code: nothing to fingerprint beyond the package
        return ""
    if not path.is_file() or Path(__file__).resolve().parents[1] in path.parents:
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def truth_code_fingerprint(problem: Problem) -> str:
    """The code a ground truth of ``problem`` depends on: `reference_fingerprint` and, for a
    user's problem, `outside_reference_fingerprint`."""
    return reference_fingerprint() + outside_reference_fingerprint(problem.reference)


def cache_key(problem: Problem, x: np.ndarray, fmts, *, engine: str, precisions=PRECISIONS) -> str:
    """The key of a ground truth: problem, the input's exact bits and shape, output formats,
    engine, precision rule (ladder and tolerances) and `truth_code_fingerprint`."""
    x64 = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    # Read at call time, as the ladder reads them (a patched tolerance is a different rule).
    rule = (tuple(precisions), exact.AGREEMENT, exact.COND_ACCURACY, exact.ZERO_PREC)
    head = repr((problem.name, x64.shape, [get_format(f).name for f in fmts], engine, rule))
    if problem.params:  # a reference bound to parameters (Adam's eps): its truths differ
        head += repr(sorted(problem.params.items()))
    code = truth_code_fingerprint(problem)
    digest = hashlib.sha256(head.encode() + code.encode())
    digest.update(x64.tobytes())
    return digest.hexdigest()


INPUT_FIELDS = ("problem", "input_f64", "shape", "formats", "code")
"""What a record holds besides the truth so that it can be recomputed (`truth_record`): a key
is a hash, and the input cannot be recovered from it. ``input_f64`` is the input's float64
bytes, little-endian, in base64 (`record_input`); records of older code hold ``input``, a
list of floats, instead, and the oldest none of these fields."""


def truth_record(
    truths: dict[str, GroundTruth],
    *,
    problem: Problem | None = None,
    x: np.ndarray | None = None,
) -> dict:
    """A JSON-able record of `ground_truths`' result (floats keep every bit through JSON).

    Parameters
    ----------
    truths : dict
        Format name -> GroundTruth, as `ground_truths` returns it.
    problem : Problem, optional, keyword-only
    x : numpy.ndarray, optional, keyword-only
        The input the truths were computed from. With ``problem``, the record also holds
        INPUT_FIELDS (the problem's name, the input's float64 values and shape, the formats and
        the `truth_code_fingerprint`), and ``params`` for a problem bound to reference parameters,
        so that ``precision cache verify`` can recompute the record and its key.
    """
    record = _truth_fields(truths)
    if problem is not None and x is not None:
        x64 = np.asarray(x, dtype=np.float64)
        record |= {
            "problem": problem.name,
            # Bytes, not a list of floats: json writes a float in ~0.6 us and 24 characters,
            # and a cached summation input of 10^5 terms took 0.13 s and 2.4 MB a record.
            "input_f64": base64.b64encode(x64.astype("<f8").tobytes()).decode("ascii"),
            "shape": list(x64.shape),
            "formats": list(truths),
            "code": truth_code_fingerprint(problem),
        }
        if problem.params:
            record["params"] = dict(problem.params)
    return record


def record_input(record: dict) -> np.ndarray | None:
    """The float64 input of a record made with its input (`truth_record`), in its shape; None
    for a record without it.

    Raises
    ------
    ValueError
        A malformed input field (not base64, or not a whole number of float64 values, or not
        of the record's shape).
    """
    if "input_f64" in record:
        data = base64.b64decode(record["input_f64"], validate=True)
        x = np.frombuffer(data, dtype="<f8").astype(np.float64)
    elif "input" in record:  # records of older code: a list of floats
        x = np.array(record["input"], dtype=np.float64)
    else:
        return None
    return x.reshape(record["shape"])


def _truth_fields(truths: dict[str, GroundTruth]) -> dict:
    first = next(iter(truths.values()))
    return {
        "hi": first.exact.hi.tolist(),
        "lo": first.exact.lo.tolist(),
        "exp": first.exact.exp.tolist(),
        "rounded": {
            name: t.exact.rounded.astype(np.float64).tolist() for name, t in truths.items()
        },
        "cond": first.cond,
        "prec": first.prec,
        "certified": first.certified,
        "engine": first.engine,
    }


def truths_from_record(record: dict) -> dict[str, GroundTruth]:
    """The inverse of `truth_record` (seconds are 0: nothing was computed)."""
    hi, lo = np.array(record["hi"], dtype=np.float64), np.array(record["lo"], dtype=np.float64)
    exp = np.array(record["exp"], dtype=np.int64)
    return {
        name: GroundTruth(
            Exact(hi, lo, exp, np.array(values, dtype=np.float64).astype(get_format(name).dtype)),
            float(record["cond"]),
            int(record["prec"]),
            bool(record["certified"]),
            0.0,
            record["engine"],
        )
        for name, values in record["rounded"].items()
    }
