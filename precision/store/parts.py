"""The chunks a run has finished, streamed to disk so that a killed run resumes where it stopped."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pandas as pd

from precision.store.files import _missing_folders, atomic_write_bytes, table_bytes
from precision.store.meta import RunSpec, code_fingerprint, spec_fingerprint
from precision.store.output import OutputConflict, _remove_empty


class Parts:
    """Finished chunks of a run in progress, one Parquet file each under ``<out>/.parts/``.

    A part appears (atomically) only once its chunk is complete, so a killed run loses at most
    the chunks in flight, and a rerun with the same spec and code resumes from the parts.
    Parts made by other code are discarded; parts of another spec are refused (``force``
    discards them). Each part's ``<chunk id>.json`` names its chunk and the sha256 of its
    Parquet bytes, so that a damaged part (truncated by a full disk, copied from another chunk,
    written before parts carried checksums) is recomputed instead of read (see `finished`).
    """

    def __init__(self, out_dir: Path, spec: RunSpec, *, force: bool = False):
        self.folder = Path(out_dir) / ".parts"
        self.fingerprint = {
            "spec_sha256": spec_fingerprint(spec),
            "code_sha256": code_fingerprint(),
        }
        self.discarded = 0
        self.damaged = 0
        self._made = _missing_folders(self.folder)  # deepest first: removed if left empty
        self._remove_temporaries()
        manifest = self.folder / "manifest.json"
        if manifest.is_file():
            stored = _read_json(manifest)  # None: unreadable, as if made by other code
            if stored is not None and not force:
                if stored.get("spec_sha256") != self.fingerprint["spec_sha256"]:
                    raise OutputConflict(
                        f"{self.folder} holds an unfinished run of a different spec; use "
                        "--force to discard it or --out to write elsewhere"
                    )
            if stored != self.fingerprint:
                self.discarded = len(list(self.folder.glob("*.parquet")))
                self.clear()
        atomic_write_bytes(manifest, json.dumps(self.fingerprint, indent=2).encode())

    def _remove_temporaries(self) -> None:
        """Remove the temporary files (`_stage`'s ``.<name>.*.tmp``) of runs killed mid-write."""
        for path in self.folder.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def finished(self) -> dict[str, dict]:
        """Chunk id -> its timing, for every finished part that checks out.

        A part whose json does not name its chunk, or whose Parquet bytes do not match the
        json's sha256, is deleted (its chunk is then recomputed) and counted in ``damaged``.
        """
        out = {}
        for path in sorted(self.folder.glob("*.parquet")):
            timing = _checked_timing(path)
            if timing is None:
                path.unlink(missing_ok=True)
                path.with_suffix(".json").unlink(missing_ok=True)
                self.damaged += 1
            else:
                out[path.stem] = timing
        return out

    def write(self, chunk_id: str, table: pd.DataFrame, timing: dict) -> None:
        """Store one finished chunk: its record first (chunk id, checksum, timing), then its
        rows (which mark it done)."""
        data = table_bytes(table)
        record = {"chunk_id": chunk_id, "sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_bytes(
            self.folder / f"{chunk_id}.json", json.dumps(record | {"timing": timing}).encode()
        )
        atomic_write_bytes(self.folder / f"{chunk_id}.parquet", data)

    def read(self, chunk_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.folder / f"{chunk_id}.parquet")

    def remove_if_empty(self) -> None:
        """Remove the manifest (and the folders this object made) when no part is finished: a
        run that failed before its first chunk (an unreachable Dask scheduler) leaves nothing."""
        if not self.folder.is_dir() or any(self.folder.glob("*.parquet")):
            return
        for path in [self.folder / "manifest.json", *self.folder.glob("*.json")]:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        _remove_empty([self.folder, *self._made])

    def clear(self) -> None:
        clear_parts(self.folder.parent)


def _read_json(path: Path) -> dict | None:
    """A JSON object read from ``path``; None when it cannot be read or is not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def _checked_timing(part: Path) -> dict | None:
    """The timing recorded beside a part, or None when the part does not check out: its json
    is missing, unreadable, names another chunk, or holds another checksum than its bytes."""
    record = _read_json(part.with_suffix(".json"))
    if record is None or record.get("chunk_id") != part.stem:
        return None
    try:
        data = part.read_bytes()
    except OSError:
        return None
    timing = record.get("timing")
    if record.get("sha256") != hashlib.sha256(data).hexdigest() or not isinstance(timing, dict):
        return None
    return timing


def clear_parts(out_dir: Path) -> None:
    """Remove a run's parts folder (once the study's table is written)."""
    folder = Path(out_dir) / ".parts"
    if folder.is_dir():
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
