"""Tests of precision.store: atomic writes, deterministic Parquet bytes, provenance.

Writes go to a temporary file in the target folder and are renamed into place; whatever goes
wrong, the previous file stays intact and no temporary file is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from precision import store
from precision.run.spec import parse_spec


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def sample_table() -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "problem": pd.array(["softmax", "logsumexp", "softmax"], dtype="string"),
            "n": pd.array([10, 100, None], dtype="Int64"),
            "rel_error": [1e-3, np.nan, 2.5e-8],
            "ulps": pd.array([0, 2**64 - 2**53, 7], dtype="UInt64"),
            "certified": pd.array([True, None, False], dtype="boolean"),
        }
    )
    table.attrs["timing"] = {"seconds": 1.25, "ground_truth_seconds": 0.5}
    return table


# ------------------------------------------------------------------ atomic writes


def test_atomic_write_creates_folder_and_file(tmp_path: Path):
    target = tmp_path / "a" / "b" / "out.bin"
    store.atomic_write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert listing(target.parent) == ["out.bin"]


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path):
    target = tmp_path / "out.bin"
    for i in range(5):
        store.atomic_write_bytes(target, bytes([i]) * (i + 1))
    assert target.read_bytes() == bytes([4]) * 5
    assert listing(tmp_path) == ["out.bin"]


def test_atomic_write_gives_the_mode_of_a_plain_write(tmp_path: Path):
    """mkstemp's 0600 must not leak into results other users need to read."""
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    atomic = tmp_path / "atomic.bin"
    store.atomic_write_bytes(atomic, b"x")
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch, failing: str):
    target = tmp_path / "out.bin"
    store.atomic_write_bytes(target, b"previous contents")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(OSError, match="No space left"):
        store.atomic_write_bytes(target, b"new contents that never land")
    monkeypatch.undo()
    assert target.read_bytes() == b"previous contents"
    assert listing(tmp_path) == ["out.bin"]


def test_interrupted_write_keeps_previous_file(tmp_path: Path, monkeypatch):
    """Not only OSError: a KeyboardInterrupt mid-write also cleans up."""
    target = tmp_path / "out.bin"
    store.atomic_write_bytes(target, b"previous")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"previous"
    assert listing(tmp_path) == ["out.bin"]


def test_failed_write_study_keeps_earlier_results(tmp_path: Path, monkeypatch):
    """A study write that fails part-way leaves every file it had not replaced untouched and
    no temporary files."""
    table = sample_table()
    summary = pd.DataFrame({"problem": ["softmax"], "count": [3]})
    args = {"table": table, "summary": summary, "digest": "# old\n", "meta": {"seed": 1}}
    written = store.write_study(tmp_path, **args)
    assert [p.name for p in written] == [
        "errors.parquet",
        "summary.csv",
        "summary.md",
        "meta.json",
    ]
    before = {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)}

    real_replace = os.replace

    def fail_on_digest(src, dst):
        if Path(dst).name == "summary.md":
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_digest)
    with pytest.raises(OSError):
        store.write_study(tmp_path, **(args | {"digest": "# new\n", "meta": {"seed": 2}}))
    monkeypatch.undo()
    assert listing(tmp_path) == sorted(before)
    assert (tmp_path / "summary.md").read_bytes() == before["summary.md"]
    assert (tmp_path / "meta.json").read_bytes() == before["meta.json"]


# ------------------------------------------------------------------ table_bytes


def test_table_bytes_deterministic():
    a = store.table_bytes(sample_table())
    b = store.table_bytes(sample_table())
    assert a == b
    assert a[:4] == b"PAR1"


def test_table_bytes_ignore_attrs():
    with_attrs = sample_table()
    without = sample_table()
    without.attrs = {}
    other_attrs = sample_table()
    other_attrs.attrs["timing"] = {"seconds": 99.0}
    assert store.table_bytes(with_attrs) == store.table_bytes(without)
    assert store.table_bytes(with_attrs) == store.table_bytes(other_attrs)
    assert b"timing" not in store.table_bytes(with_attrs)
    # The caller's table keeps its attrs.
    assert with_attrs.attrs["timing"]["seconds"] == 1.25


def test_table_bytes_round_trip(tmp_path: Path):
    table = sample_table()
    path = tmp_path / "errors.parquet"
    store.atomic_write_bytes(path, store.table_bytes(table))
    back = pd.read_parquet(path)
    assert back.attrs == {}
    expected = table.copy()
    expected.attrs = {}
    pd.testing.assert_frame_equal(back, expected)


def test_table_bytes_differ_for_different_tables():
    table = sample_table()
    changed = sample_table()
    changed.loc[0, "rel_error"] = 1.0000000000000002e-3
    assert store.table_bytes(table) != store.table_bytes(changed)


# ------------------------------------------------------------------ provenance


def test_flush_to_zero_is_false_here():
    result = store.flush_to_zero()
    assert isinstance(result, bool)
    assert result is False
    assert np.float64(2.0) ** -1073 > 0  # subnormals survive on this machine


def test_provenance_is_json_and_complete():
    raw = {
        "name": "tiny",
        "seed": 5,
        "formats": ["float16"],
        "problems": ["softmax"],
        "grid": {
            "log10_cond": [0, 1],
            "log10_magnitude": [0, 1],
            "sizes": [4],
            "samples_per_cell": 1,
        },
    }
    spec = parse_spec(raw)
    meta = store.provenance(spec, {"seconds": 1.0})
    back = json.loads(json.dumps(meta))
    assert back["seed"] == 5 and back["study"] == "tiny"
    assert back["spec"] == raw
    assert "git_commit" in back
    assert back["git_commit"] is None or isinstance(back["git_commit"], str)
    assert isinstance(back["flush_to_zero"], bool)
    assert back["versions"]["numpy"] == np.__version__
    assert {"python", "mpmath", "pandas", "pyarrow", "ml_dtypes"} <= set(back["versions"])
    assert back["timing"] == {"seconds": 1.0}
    assert len(back["spec_sha256"]) == 64
    # Same spec, same digest.
    assert store.provenance(parse_spec(raw))["spec_sha256"] == back["spec_sha256"]


def test_ground_truth_cache_persists_records_across_connections(tmp_path):
    path = tmp_path / "cache" / "ground_truth.sqlite"
    cache = store.GroundTruthCache(path)
    assert len(cache) == 0 and cache.get("k") is None
    cache.put("k", {"hi": [0.5], "cond": float("inf")})
    cache.put("k", {"hi": [0.25]})  # first record wins: a key names one certified truth
    again = store.GroundTruthCache(path)
    assert again.get("k") == {"hi": [0.5], "cond": float("inf")}
    assert len(again) == 1


def test_ground_truth_cache_travels_to_workers_as_a_path(tmp_path):
    import pickle

    cache = store.GroundTruthCache(tmp_path / "gt.sqlite")
    cache.put("k", {"v": 1})
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.get("k") == {"v": 1}


class _BusyOnce:
    """A connection whose first ``busy`` statements fail the way SQLite's WAL races do."""

    def __init__(self, connection, busy: int, message: str = "database is locked"):
        self.connection, self.busy, self.message = connection, busy, message

    def execute(self, sql, parameters=()):
        import sqlite3

        if self.busy:
            self.busy -= 1
            raise sqlite3.OperationalError(self.message)
        return self.connection.execute(sql, parameters)

    def close(self):
        self.connection.close()


def test_ground_truth_cache_retries_a_busy_database(tmp_path):
    # SQLite answers SQLITE_BUSY without its busy handler when a connection opens while the
    # last one cleans up the WAL; CI met it once as "database is locked" in a 2-worker run.
    cache = store.GroundTruthCache(tmp_path / "gt.sqlite")
    cache.prepare()
    cache._connection = _BusyOnce(cache._db(), busy=3)
    cache.put("k", {"v": 1})
    cache._connection = _BusyOnce(cache._connection.connection, busy=2, message="database is busy")
    assert cache.get("k") == {"v": 1}


def test_ground_truth_cache_gives_up_after_its_deadline_and_retries_only_busy(tmp_path):
    # Past its deadline (or on any other database error) the cache is done without: it answers
    # "absent" from then on and says why, instead of failing the run.
    cache = store.GroundTruthCache(tmp_path / "gt.sqlite")
    cache.prepare()
    cache.put("k", {"v": 1})
    cache.BUSY_SECONDS = 0.05
    cache._connection = _BusyOnce(cache._db(), busy=10**6)
    assert cache.get("k") is None
    assert "locked" in cache.failure and str(cache.path) in cache.failure
    assert cache.prepare()  # a new run tries again
    busy = _BusyOnce(cache._db(), busy=2, message="disk I/O error")
    cache._connection = busy
    assert cache.get("k") is None and "disk I/O" in cache.failure
    assert busy.busy == 1  # not retried: only "busy" and "locked" are worth a wait


def _fill_cache(path: str, worker: int) -> int:
    cache = store.GroundTruthCache(Path(path))
    for k in range(20):
        cache.get(f"{worker}-{k}")
        cache.put(f"{worker}-{k}", {"worker": worker, "k": k})
    return worker


def test_ground_truth_cache_takes_concurrent_writers_on_a_new_file(tmp_path):
    import multiprocessing

    path = tmp_path / "fresh" / "gt.sqlite"
    # Workers forked from a server that imported the package once start within milliseconds of
    # one another, so all four meet the new file at once (spawned ones arrive seconds apart,
    # each importing the package first, and the first to arrive take most of the writes). Not
    # forks of this process: JAX's threads may be running in it.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["precision.store"])
    with context.Pool(4) as pool:
        assert sorted(pool.starmap(_fill_cache, [(str(path), w) for w in range(8)])) == list(
            range(8)
        )
    cache = store.GroundTruthCache(path)
    assert len(cache) == 8 * 20
    assert cache.get("7-19") == {"worker": 7, "k": 19}


def test_companion_tables_are_written_beside_the_rows_and_read_back_exactly(tmp_path: Path):
    from precision.store.results import read_companions

    curves = pd.DataFrame(
        {"iteration": [0, 1, 2], "format": ["float16"] * 3, "rel_error": [1.0, 0.1 + 0.2, 2**-60]}
    )
    summary = pd.DataFrame({"problem": ["softmax"], "count": [3]})
    written = store.write_study(
        tmp_path,
        table=sample_table(),
        summary=summary,
        digest="# d\n",
        meta={"seed": 1},
        tables={"convergence": curves},
    )
    assert tmp_path / "convergence.csv" in written
    back = read_companions(tmp_path)["convergence"]
    assert back["rel_error"].tolist() == curves["rel_error"].tolist()  # every bit
    assert read_companions(tmp_path / "missing") == {}


def test_a_report_removes_the_temporaries_of_dead_writers_only(tmp_path: Path):
    """A report killed while writing leaves ``.<name>.<pid>-*.tmp`` files; the next one
    removes those of dead processes (and of older names without a PID), not a live one's."""
    out = tmp_path / "report"
    (out / "claims").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [
            out / f".index.html.{dead.pid}-k3j2x9.tmp",
            out / "claims" / f".a.csv.{dead.pid}-a8b7c6.tmp",
            out / ".index.md.k3j2x9.tmp",  # written before temporaries named their writer
        ]
        kept = out / f".index.html.{live.pid}-x1y2z3.tmp"
        for path in [*stale, kept]:
            path.write_bytes(b"half a file")
        store.write_report(
            out,
            texts={"index.html": "<p>x</p>"},
            tables={"claims/a.csv": pd.DataFrame()},
            images={},
        )
    finally:
        live.kill()
        live.wait()
    assert not any(path.exists() for path in stale)
    assert kept.exists()
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        f".index.html.{live.pid}-x1y2z3.tmp",
        "a.csv",
        "index.html",
    ]
