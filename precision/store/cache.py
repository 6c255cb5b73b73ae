"""The ground-truth cache: sealed records of certified references, shared between runs."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path


class GroundTruthCache:
    """A persistent map from a ground-truth key to its record, in one SQLite file.

    Keys name everything a ground truth depends on (problem and its reference code, the
    input's exact bits, the output format, the engine and the precision rule; see
    `precision.truth.records.cache_key`), so a rerun or an extended study reuses what exists and a
    changed reference never meets an old record. Records are JSON (never pickle). SQLite in WAL
    mode lets several worker processes read and write the same file; each opens it lazily.

    A cache is an optimisation, never a reason to fail or to be wrong:

    - each record is sealed with the sha256 of its key and its canonical JSON (`_seal`); a
      record that does not check out (edited, damaged, or written before records were sealed)
      is deleted, counted in ``rejected`` and answered as absent, so it is recomputed;
    - a file that cannot be opened or written (garbage, truncated, a folder that cannot be
      made, read-only, full, locked by another process for over ``BUSY_SECONDS``) makes the
      cache answer "absent" and store nothing from then on; ``failure`` says why.

    The parent calls `prepare` before workers start, so the one-time switch to WAL and the
    table's creation never race, and a file that cannot be written is found once, there.
    SQLite still answers SQLITE_BUSY without waiting in a few WAL cases (a connection opening
    while the last one closes and cleans up, or while one recovers after a crash), so every
    statement retries on "locked"/"busy" for up to ``BUSY_SECONDS``: long enough for workers'
    single-row writes, short enough that another process's exclusive lock costs seconds.
    """

    BUSY_SECONDS = 5.0

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rejected = 0
        self.failure: str | None = None
        self._connection = None
        self._prepared = False
        self._run = os.urandom(8).hex()  # names this run in `_UNUSABLE_CACHES`

    def __getstate__(self):  # a connection does not travel to worker processes; the path does
        return {
            "path": self.path,
            "rejected": 0,  # a worker's count travels back with its chunk (execute._run_chunk)
            "failure": self.failure,
            "_connection": None,
            "_prepared": False,
            "_run": self._run,
        }

    def prepare(self) -> bool:
        """Create the file in WAL mode with its table and check that it can be written (the
        parent calls it before workers start); returns whether the cache is usable.

        It also starts a new run: a cache that failed before is tried again. Every connection
        creates the table once too, so a cache used without a parent works.
        """
        self.failure, self._run = None, os.urandom(8).hex()
        self._close()
        self._guarded(self._create)
        # A write lock taken and released at once: another process's exclusive lock (or a
        # read-only file) shows up here, before any worker waits on it.
        if self._guarded(self._retrying, "BEGIN IMMEDIATE") is not None:
            self._guarded(self._retrying, "ROLLBACK")
        return self.failure is None

    def get(self, key: str) -> dict | None:
        """The record of ``key``; None when absent, when it fails its checksum (then it is
        deleted and counted in ``rejected``), or when the cache is unusable."""
        rows = self._guarded(self._statement, "SELECT record FROM truths WHERE key = ?", (key,))
        if not rows:
            return None
        record = _unseal(key, rows[0][0])
        if record is None:
            self.rejected += 1
            # Only this text: another worker may have put a good record meanwhile.
            self._guarded(
                self._statement,
                "DELETE FROM truths WHERE key = ? AND record = ?",
                (key, rows[0][0]),
            )
        return record

    def put(self, key: str, record: dict) -> None:
        """Store ``record`` under ``key`` unless a record is there (the first one wins: a key
        names one certified truth); nothing when the cache is unusable."""
        self._guarded(
            self._statement,
            "INSERT OR IGNORE INTO truths (key, record) VALUES (?, ?)",
            (key, _seal(key, record)),
        )

    def __len__(self) -> int:
        rows = self._guarded(self._statement, "SELECT COUNT(*) FROM truths")
        return rows[0][0] if rows else 0

    def sample(self, size: int, *, seed: int) -> list[tuple[str, dict | None]]:
        """Up to ``size`` records drawn at random without replacement, as (key, record) pairs;
        the record is None where it fails its checksum (a run would drop and recompute it).

        ``seed`` makes the draw repeatable. Unlike the run's methods this one only reads (it
        opens the file read-only, creates and deletes nothing) and raises what opening or
        reading raises (FileNotFoundError, sqlite3.Error): a verification must not pass on a
        cache it could not read.
        """
        if not self.path.is_file():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.path))
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=self.BUSY_SECONDS)
        try:
            # Sorted first: SQLite's row order is not part of the draw's contract.
            keys = sorted(row[0] for row in connection.execute("SELECT key FROM truths"))
            drawn = random.Random(seed).sample(keys, min(size, len(keys)))
            select = "SELECT record FROM truths WHERE key = ?"
            return [(k, _unseal(k, connection.execute(select, (k,)).fetchone()[0])) for k in drawn]
        finally:
            connection.close()

    def _guarded(self, method: Callable, *arguments):
        """``method(*arguments)``, or None once the cache is unusable (noting why, once).

        Programming errors (sqlite3.ProgrammingError, InterfaceError) are bugs and propagate.
        """
        self.failure = self.failure or _UNUSABLE_CACHES.get((self.path, self._run))
        if self.failure is not None:
            return None
        try:
            return method(*arguments)
        except sqlite3.ProgrammingError:
            raise
        except (sqlite3.DatabaseError, OSError) as error:
            self._give_up(error)
            return None

    def _give_up(self, error: Exception) -> None:
        self.failure = f"ground-truth cache {self.path} is unusable ({_reason(error)})"
        # Later chunks of this run in this worker process skip it at once.
        _UNUSABLE_CACHES[(self.path, self._run)] = self.failure
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
        self._connection, self._prepared = None, False

    def _create(self) -> None:
        self._retrying("PRAGMA journal_mode=WAL")
        self._retrying(
            "CREATE TABLE IF NOT EXISTS truths (key TEXT PRIMARY KEY, record TEXT NOT NULL)"
        )
        self._prepared = True

    def _db(self):
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(
                self.path, timeout=self.BUSY_SECONDS, isolation_level=None
            )
            # Per connection and lock-free: a crash may lose the last commits, never corrupt.
            self._connection.execute("PRAGMA synchronous=NORMAL")
        return self._connection

    def _statement(self, sql: str, parameters: tuple = ()):
        if not self._prepared:
            self._create()
        return self._retrying(sql, parameters)

    def _retrying(self, sql: str, parameters: tuple = ()):
        deadline = time.monotonic() + self.BUSY_SECONDS
        pause = 0.01
        while True:
            try:
                return self._db().execute(sql, parameters).fetchall()
            except sqlite3.OperationalError as error:
                message = str(error)
                if "locked" not in message and "busy" not in message:
                    raise
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 0.5)


def _reason(error: Exception) -> str:
    """An error in a few words: ``file is not a database``, ``Not a directory: /a/b``."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error) or type(error).__name__


_UNUSABLE_CACHES: dict[tuple[Path, str], str] = {}
"""(cache file, run) -> why the cache is unusable, for the chunks a worker process runs after
the first that met the problem (each gets its own unpickled copy of the cache)."""


def _seal(key: str, record: dict) -> str:
    """The stored text of a record: the record with the checksum of its key and content."""
    return json.dumps({"sha256": _record_checksum(key, record), "record": record})


def _unseal(key: str, text) -> dict | None:
    """The record stored as ``text`` under ``key``; None unless it parses and its checksum
    matches (an edited value, another key's record, or an unsealed record of older code)."""
    try:
        sealed = json.loads(text)
        record = sealed["record"]
        good = sealed["sha256"] == _record_checksum(key, record)
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return record if good and isinstance(record, dict) else None


def _record_checksum(key: str, record) -> str:
    """sha256 of the key and the record's canonical JSON (sorted keys, no spaces; floats are
    written in full by json, so a record read back gives the same text)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(key.encode() + b"\0" + text.encode()).hexdigest()
