"""Tests for precision.truth.records: cache keys, the truth-code fingerprint and JSON records.

A record read back is the ground truth bit for bit; a key changes with everything the truth
depends on; the fingerprint hashes every module the truth stage computes with.
"""

from __future__ import annotations

import numpy as np

from precision.problems import PROBLEMS
from precision.truth.exact import ground_truths
from precision.truth.records import cache_key, truth_record, truths_from_record


def test_truth_record_round_trips_through_json():
    import json

    problem = PROBLEMS["softmax"]
    x = np.array([0.5, -3.0, 2.25], dtype=np.float32)
    truths = ground_truths(problem, x, ["float32", "float64"], engine="arb")
    back = truths_from_record(json.loads(json.dumps(truth_record(truths))))
    for name, truth in truths.items():
        again = back[name]
        assert again.exact.rounded.dtype == truth.exact.rounded.dtype
        assert again.exact.rounded.tobytes() == truth.exact.rounded.tobytes()
        for part in ("hi", "lo", "exp"):
            assert np.array_equal(getattr(again.exact, part), getattr(truth.exact, part))
        assert (again.cond, again.prec, again.certified) == (truth.cond, truth.prec, True)


def test_cache_key_names_everything_the_truth_depends_on():
    problem = PROBLEMS["logsumexp"]
    x = np.array([1.0, 2.0], dtype=np.float32)
    key = cache_key(problem, x, ["float32"], engine="arb")
    assert key == cache_key(problem, x.astype(np.float64), ["float32"], engine="arb")
    others = [
        cache_key(PROBLEMS["softmax"], x, ["float32"], engine="arb"),
        cache_key(problem, np.array([1.0, 2.5]), ["float32"], engine="arb"),
        cache_key(problem, x, ["float64"], engine="arb"),
        cache_key(problem, x, ["float32", "float64"], engine="arb"),
        cache_key(problem, x, ["float32"], engine="mpmath"),
        cache_key(problem, x, ["float32"], engine="arb", precisions=(113, 256)),
    ]
    assert len({key, *others}) == len(others) + 1


def test_the_fingerprint_covers_every_core_module_the_truth_stage_imports():
    """A change to any module ground truth computes with invalidates cached truths: every
    precision.core module imported by the truth stage or by those core modules, transitively,
    is hashed (core/arb_linalg.py, split out of numbers.py, once was not)."""
    import ast
    from pathlib import Path

    from precision.truth.records import reference_files

    package = Path(__file__).resolve().parents[2] / "precision"
    hashed = {path.resolve() for path in reference_files()}
    todo = sorted((package / "truth").glob("*.py"))
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "precision.core."
            ):
                module = package / "core" / (node.module.split(".")[2] + ".py")
                assert module.resolve() in hashed, f"{path.name} imports unhashed {module.name}"
                todo.append(module)
    assert package / "core" / "arb_linalg.py" in seen


def test_the_fingerprint_covers_every_module_of_the_truth_stage():
    """The records are fingerprinted with the code that computes them: every module of
    precision.truth (the engines, exact.py and this one's records.py included) is hashed."""
    from pathlib import Path

    from precision.truth.records import reference_files

    package = Path(__file__).resolve().parents[2] / "precision"
    hashed = {path.resolve() for path in reference_files()}
    truth = {path.resolve() for path in (package / "truth").glob("*.py")}
    assert {package / "truth" / "exact.py", package / "truth" / "records.py"} <= truth
    assert truth <= hashed
