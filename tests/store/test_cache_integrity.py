"""A cache and parts that check themselves (issue 16, items 1 and 3).

A ground-truth record or a chunk part that does not check out (edited, damaged, copied, of an
older format) is recomputed, never used: the table stays byte-identical to a run without a
cache or without interruption. A cache file that cannot be used (garbage, truncated, locked by
another process, in a folder that cannot be made) costs at most a few seconds and one warning
line naming the file and ``--no-cache``; the run succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_specs import TINY

from precision import store
from precision.cli import run_captured
from precision.run.execute import _run_chunk, execute
from precision.run.spec import load_spec
from precision.run.study import chunks, run, run_chunk

CACHE_FILE = "ground_truth.sqlite"  # in the --cache folder (see precision.cli._cache_file)

# Holds an exclusive lock on a SQLite file, as another program might, until it is killed.
HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(120)
"""


def spec_file(folder: Path) -> Path:
    path = folder / "tiny.toml"
    if not path.exists():
        path.write_text(TINY)
    return path


def run_cli(folder: Path, out: Path, *options: str) -> tuple[int, str, str]:
    """``precision run`` of the tiny spec in-process: (exit status, stdout, stderr)."""
    argv = ["run", str(spec_file(folder)), "--out", str(out), "--no-plots", "--no-progress"]
    return run_captured([*argv, "--executor", "serial", *options])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    """errors.parquet of the tiny spec run without a cache."""
    folder = tmp_path_factory.mktemp("reference")
    code, _, err = run_cli(folder, folder / "out", "--no-cache")
    assert code == 0, err
    return (folder / "out" / "errors.parquet").read_bytes()


def filled_cache(folder: Path) -> Path:
    """A cache folder filled by a run of the tiny spec; returns the cache file."""
    code, _, err = run_cli(folder, folder / "filling", "--cache", str(folder / "cache"))
    assert code == 0, err
    return folder / "cache" / CACHE_FILE


def assert_one_warning(err: str, cache: Path) -> str:
    """stderr is one line, naming the cache file and --no-cache; returns it."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "warning" in lines[0] and str(cache) in lines[0] and "--no-cache" in lines[0]
    return lines[0]


# ------------------------------------------------------------------ records that do not check out


def edit_records(path: Path, edit) -> int:
    """Replace every stored record's text by ``edit(key, text, texts)``; returns how many."""
    with sqlite3.connect(path, isolation_level=None) as connection:
        rows = connection.execute("SELECT key, record FROM truths ORDER BY key").fetchall()
        texts = [text for _, text in rows]
        for key, text in rows:
            new = edit(key, text, texts)
            connection.execute("UPDATE truths SET record = ? WHERE key = ?", (new, key))
    connection.close()
    return len(rows)


def doubled(value):
    """Every float in a JSON value doubled (still valid JSON, still the same shape)."""
    if isinstance(value, dict):
        return {k: doubled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [doubled(v) for v in value]
    return 2 * value if isinstance(value, float) else value


EDITS = {
    "doubled values": lambda key, text, texts: json.dumps(doubled(json.loads(text))),
    # the format older code wrote: the record alone, with no checksum
    "unsealed": lambda key, text, texts: json.dumps(json.loads(text)["record"]),
    "not JSON": lambda key, text, texts: text[: len(text) // 2],
    "another key's record": lambda key, text, texts: texts[(texts.index(text) + 1) % len(texts)],
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_records_that_fail_their_checksum_are_recomputed_not_used(tmp_path, reference, edit):
    cache = filled_cache(tmp_path)
    records = edit_records(cache, edit)
    assert records > 1
    code, out, err = run_cli(tmp_path, tmp_path / "out", "--cache", str(cache.parent))
    assert code == 0 and err == ""
    assert f"recomputed {records} cache records that failed their checksum" in out
    assert (tmp_path / "out" / "errors.parquet").read_bytes() == reference
    # The recomputed records replaced the rejected ones.
    code, out, _ = run_cli(tmp_path, tmp_path / "again", "--cache", str(cache.parent))
    assert code == 0 and "recomputed" not in out
    assert (tmp_path / "again" / "errors.parquet").read_bytes() == reference


@pytest.mark.parametrize("executor", ["serial", "process", "dask"])
def test_rejected_records_are_counted_whatever_the_executor(tmp_path, executor):
    spec = load_spec(spec_file(tmp_path))
    cache = store.GroundTruthCache(tmp_path / CACHE_FILE)
    first, _ = execute(spec, tmp_path / "a", executor="serial", cache=cache)
    records = edit_records(cache.path, EDITS["doubled values"])
    table, report = execute(spec, tmp_path / "b", executor=executor, workers=2, cache=cache)
    assert report.cache_rejected == records and report.cache_problem is None
    assert store.table_bytes(table) == store.table_bytes(first)


# ------------------------------------------------------------------ a cache that cannot be used


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_unreadable_cache_file_is_done_without(tmp_path, reference, damage):
    cache = tmp_path / "cache" / CACHE_FILE
    cache.parent.mkdir()
    if damage == "garbage":
        cache.write_bytes(b"not a database\n" * 200)
    else:  # a cache of 60 pages cut after its first (as by a full disk or a partial copy)
        with contextlib.closing(sqlite3.connect(cache)) as connection:
            connection.execute("CREATE TABLE truths (key TEXT PRIMARY KEY, record TEXT)")
            connection.executemany(
                "INSERT INTO truths VALUES (?, ?)", [(str(k), "x" * 1000) for k in range(200)]
            )
            connection.commit()
        cache.write_bytes(cache.read_bytes()[:4096])
    before = cache.read_bytes()
    code, out, err = run_cli(tmp_path, tmp_path / "out", "--cache", str(cache.parent))
    assert code == 0, err
    assert_one_warning(err, cache)
    assert (tmp_path / "out" / "errors.parquet").read_bytes() == reference
    assert cache.read_bytes() == before  # a user's file is reported, not repaired or replaced


@pytest.mark.parametrize("filled", [True, False], ids=["filled cache", "new cache"])
def test_a_cache_locked_by_another_process_costs_seconds_not_the_run(tmp_path, reference, filled):
    # WAL mode (a filled cache) lets readers past an exclusive lock, but no writer; a new file
    # locked in rollback mode lets nothing past. Either way: a few seconds, then no cache.
    cache = filled_cache(tmp_path) if filled else tmp_path / "cache" / CACHE_FILE
    cache.parent.mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(cache)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        code, out, err = run_cli(tmp_path, tmp_path / "out", "--cache", str(cache.parent))
        seconds = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert code == 0, err
    assert "locked" in assert_one_warning(err, cache)
    assert seconds < 15
    assert (tmp_path / "out" / "errors.parquet").read_bytes() == reference


def test_a_cache_folder_that_cannot_be_made_is_done_without(tmp_path, reference):
    # A cache folder under a regular file cannot be made, even by root (who ignores chmod).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out, err = run_cli(tmp_path, tmp_path / "out", "--cache", str(blocker / "cache"))
    assert code == 0, err
    assert_one_warning(err, blocker / "cache" / CACHE_FILE)
    assert (tmp_path / "out" / "errors.parquet").read_bytes() == reference


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder regardless")
def test_a_read_only_cache_folder_is_done_without(tmp_path, reference):
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, out, err = run_cli(tmp_path, tmp_path / "out", "--cache", str(folder))
    finally:
        folder.chmod(0o755)
    assert code == 0, err
    assert_one_warning(err, folder / CACHE_FILE)
    assert (tmp_path / "out" / "errors.parquet").read_bytes() == reference


class _Full:
    """A connection of a cache whose disk filled up: every write fails as SQLite reports it."""

    def __init__(self, connection):
        self.connection = connection

    def execute(self, sql, parameters=()):
        if sql.startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.connection.execute(sql, parameters)

    def close(self):
        self.connection.close()


def test_a_full_cache_is_done_without_and_the_failure_travels_back(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    cache = store.GroundTruthCache(tmp_path / CACHE_FILE)
    assert cache.prepare()
    cache._connection = _Full(cache._db())
    result, use = _run_chunk(spec, chunks(spec)[0], cache)
    assert "database or disk is full" in use.failure and str(cache.path) in use.failure
    assert use.rejected == 0
    alone = run_chunk(spec, chunks(spec)[0]).table
    assert store.table_bytes(result.table) == store.table_bytes(alone)


def test_a_worker_skips_a_cache_found_unusable_by_its_earlier_chunk(tmp_path):
    cache = store.GroundTruthCache(tmp_path / CACHE_FILE)
    assert cache.prepare()
    sent = pickle.dumps(cache)  # what every task of the run carries to a worker
    first = pickle.loads(sent)
    first.BUSY_SECONDS = 0.01
    first._connection = _Full(first._db())
    first.put("k", {"v": 1.5})
    assert first.failure is not None
    second = pickle.loads(sent)  # the worker's next chunk: no wait, no connection
    assert second.get("k") is None and second.failure == first.failure
    assert second._connection is None
    assert cache.prepare() and cache.failure is None  # the next run tries again


def test_pickled_records_are_never_loaded(tmp_path):
    cache = store.GroundTruthCache(tmp_path / CACHE_FILE)
    cache.put("k", {"v": 1.5})
    payload = pickle.dumps({"v": 3.0})
    with sqlite3.connect(cache.path, isolation_level=None) as connection:
        connection.execute("UPDATE truths SET record = ? WHERE key = 'k'", (payload,))
    connection.close()
    assert cache.get("k") is None and cache.rejected == 1


# ------------------------------------------------------------------ parts that check themselves


def write_every_part(out: Path, spec) -> list[str]:
    """The parts of a whole run, as if it had been killed just before writing its table."""
    parts = store.Parts(out, spec)
    for chunk in chunks(spec):
        timing = {"seconds": 1.0, "ground_truth_seconds": 0.5}
        parts.write(chunk.id, run_chunk(spec, chunk).table, timing)
    return [chunk.id for chunk in chunks(spec)]


def truncate(folder: Path, ids: list[str]) -> None:
    part = folder / f"{ids[1]}.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])


def copy_rows(folder: Path, ids: list[str]) -> None:
    (folder / f"{ids[1]}.parquet").write_bytes((folder / f"{ids[0]}.parquet").read_bytes())


def copy_part(folder: Path, ids: list[str]) -> None:
    copy_rows(folder, ids)
    (folder / f"{ids[1]}.json").write_bytes((folder / f"{ids[0]}.json").read_bytes())


def old_format(folder: Path, ids: list[str]) -> None:
    (folder / f"{ids[1]}.json").write_text(json.dumps({"seconds": 1.0}))  # no chunk, no sha256


def no_record(folder: Path, ids: list[str]) -> None:
    (folder / f"{ids[1]}.json").unlink()


DAMAGES = {
    "truncated": truncate,
    "another chunk's rows": copy_rows,
    "another chunk's part": copy_part,
    "old format": old_format,
    "no record": no_record,
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_part_is_recomputed(tmp_path, damage):
    spec = load_spec(spec_file(tmp_path))
    ids = write_every_part(tmp_path / "out", spec)
    damage(tmp_path / "out" / ".parts", ids)
    table, report = execute(spec, tmp_path / "out", executor="serial")
    assert report.damaged == 1 and report.resumed == len(ids) - 1
    assert store.table_bytes(table) == store.table_bytes(run(spec))


def test_damaged_parts_reach_the_final_line(tmp_path, reference):
    ids = write_every_part(tmp_path / "out", load_spec(spec_file(tmp_path)))
    truncate(tmp_path / "out" / ".parts", ids)
    copy_part(tmp_path / "out" / ".parts", ids[1:])
    code, out, err = run_cli(tmp_path, tmp_path / "out", "--no-cache")
    assert code == 0 and err == ""
    assert f"resumed {len(ids) - 2} of {len(ids)} chunks" in out
    assert "recomputed 2 damaged parts" in out
    assert (tmp_path / "out" / "errors.parquet").read_bytes() == reference


def test_temporary_files_of_dead_runs_are_removed(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    ids = write_every_part(tmp_path / "out", spec)
    folder = tmp_path / "out" / ".parts"
    stale = [folder / f".{ids[0]}.parquet.k3j2x9.tmp", folder / ".manifest.json.a8b7c6.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    table, report = execute(spec, tmp_path / "out", executor="serial")
    assert not any(path.exists() for path in stale)
    assert report.resumed == len(ids) and report.damaged == 0
    assert store.table_bytes(table) == store.table_bytes(run(spec))
