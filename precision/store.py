"""The only module that writes files: study tables, summaries, figures and provenance.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees a half-written file and an interrupted write leaves the previous one intact.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from precision.spec import StudySpec

PACKAGES = (
    "numpy",
    "mpmath",
    "python-flint",
    "pandas",
    "pyarrow",
    "scipy",
    "ml_dtypes",
    "matplotlib",
    "seaborn",
)

LOCK_FILE = Path(__file__).resolve().parents[1] / "lock" / "py311.txt"
"""The committed lock of a source checkout (absent where the package was installed from a
wheel into someone's own environment)."""


class WriteError(OSError):
    """A file could not be written (a full disk, a read-only folder, a quota).

    ``filename`` is the file that was to be written, not its temporary name; the file it would
    have replaced is left as it was.
    """


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename in the same folder).

    Raises
    ------
    WriteError
        When the folder cannot be made or written; ``path`` is left as it was.
    """
    write_all_or_nothing({Path(path): data})


def write_all_or_nothing(files: dict[Path, bytes]) -> None:
    """Write several files so that a failure replaces none of them.

    Each file is first written and synced to a temporary file beside it (where a full disk or
    a read-only folder shows up); only when all are staged are they renamed into place, in
    order. Renames within a folder need no space, so a failure leaves every earlier file as it
    was and no temporary file (nor a folder it made) behind.

    Raises
    ------
    WriteError
        Naming the file that could not be written.
    """
    new_folders = sorted({f for path in files for f in _missing_folders(path.parent)}, reverse=True)
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            staged.append((_stage(path, data), path))
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _write_error(exc, path) from exc
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        for folder in new_folders:  # deepest first; only the empty folders made here
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _stage(path: Path, data: bytes) -> str:
    """Write ``data`` to a synced temporary file beside ``path``; returns the temporary name."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp makes the file 0600; give it the mode open() would (0666 & ~umask).
            os.chmod(tmp, 0o666 & ~_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_error(exc, path) from exc
        raise
    return tmp


def _write_error(exc: OSError, path: Path) -> WriteError:
    return WriteError(exc.errno, exc.strerror or str(exc), str(path))


def _umask() -> int:
    """The process umask (read by setting it and putting it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def table_bytes(table: pd.DataFrame) -> bytes:
    """Parquet bytes of a table, deterministic for equal tables (no timestamps, no attrs)."""
    clean = table.copy()
    clean.attrs = {}
    return clean.to_parquet(index=False, compression="zstd")


def flush_to_zero() -> bool:
    """True when this CPU flushes float64 subnormals to zero (2**-1073 would vanish)."""
    tiny = np.float64(2.0) ** -1073
    return bool(tiny == 0.0 or tiny * np.float64(0.5) == 0.0)


def provenance(spec: StudySpec, timing: dict | None = None) -> dict:
    """What is needed to rerun and to judge a study: spec, seed, versions, machine, commit."""
    return {
        "study": spec.name,
        "seed": spec.seed,
        "spec": spec.raw,
        "spec_file": str(spec.source) if spec.source else None,
        "spec_path": str(Path(spec.source).resolve()) if spec.source else None,
        "spec_sha256": spec_fingerprint(spec),
        "datasets": _dataset_fingerprints(spec),
        **provenance_environment(),
        "timing": timing or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def provenance_environment() -> dict:
    """The part of the provenance that describes this process: code fingerprint, package
    versions, machine, git commit and the flush-to-zero probe."""
    versions = {"python": sys.version.split()[0]}
    for name in ("precision", *PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "code_sha256": code_fingerprint(),
        "versions": versions,
        "lock": lock_provenance(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "git_commit": _git_commit(),
        "flush_to_zero": flush_to_zero(),
    }


def lock_provenance(path: Path | None = None) -> dict | None:
    """The lock the environment was installed from: its path, sha256, and the installed
    distributions whose versions differ from it ("name installed (lock version)"); None
    where there is no lock file (a wheel installed into one's own environment)."""
    path = LOCK_FILE if path is None else path
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return {
        "file": Path(path).name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "differs": _differences_from_lock(data.decode()),
    }


def _differences_from_lock(text: str) -> list[str]:
    """Locked distributions installed at another version (or missing), one string each."""
    out = []
    for line in text.splitlines():
        name, _, locked = line.partition("==")
        if line.startswith("#") or not locked:
            continue
        try:
            installed = metadata.version(name.strip())
        except metadata.PackageNotFoundError:
            installed = None
        # A local label ("2.13.0+cpu") is the same release as the lock's "2.13.0".
        if installed is None or installed.split("+")[0] != locked.strip():
            out.append(f"{name.strip()} {installed or 'missing'} (lock {locked.strip()})")
    return out


def _dataset_fingerprints(spec: StudySpec) -> dict:
    """Each data set's resolved path and sha256, so a rerun can check it reads the same rows."""
    out = {}
    for dataset in spec.datasets:
        try:
            digest = hashlib.sha256(Path(dataset.path).read_bytes()).hexdigest()
        except OSError:
            digest = None
        out[dataset.name] = {"path": str(dataset.path), "sha256": digest}
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_study(
    out_dir: Path,
    *,
    table: pd.DataFrame,
    summary: pd.DataFrame,
    digest: str,
    meta: dict,
    figures: dict | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
) -> list[Path]:
    """Write a study's outputs into ``out_dir``, all or none (`write_all_or_nothing`); returns
    the paths written.

    ``errors.parquet`` (the tidy table), ``summary.csv`` (per cell), ``summary.md`` (digest),
    ``meta.json`` (provenance), one PNG per figure and one ``<name>.csv`` per companion table
    (`precision.study.companion_tables`; floats written in full, so they read back exactly).
    """
    out_dir = Path(out_dir)
    files = {
        out_dir / "errors.parquet": table_bytes(table),
        out_dir / "summary.csv": summary.to_csv(index=False, float_format="%.6g").encode(),
        out_dir / "summary.md": digest.encode(),
    }
    for name, companion in (tables or {}).items():
        files[out_dir / f"{name}.csv"] = companion.to_csv(index=False).encode()
    for stem, fig in (figures or {}).items():
        files[out_dir / f"{stem}.png"] = _png(fig)
    # The table's hash lets a report notice a table edited after the run.
    meta = meta | {"table_sha256": hashlib.sha256(files[out_dir / "errors.parquet"]).hexdigest()}
    meta_bytes = (json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n").encode()
    files[out_dir / "meta.json"] = meta_bytes
    write_all_or_nothing(files)  # a full disk or read-only folder leaves earlier results as is
    return list(files)


def write_report(
    out_dir: Path,
    *,
    texts: dict[str, str],
    tables: dict[str, pd.DataFrame],
    images: dict[str, bytes],
) -> list[Path]:
    """Write a report folder, all or none: ``texts`` (name -> UTF-8 text, e.g. index.html),
    ``tables`` (name -> CSV, e.g. claims.csv, floats in full) and ``images`` (name -> PNG
    bytes, see `png_bytes`); names are paths relative to ``out_dir``. Returns the paths
    written."""
    out_dir = Path(out_dir)
    files = {out_dir / name: text.encode("utf-8") for name, text in texts.items()}
    for name, table in tables.items():
        files[out_dir / name] = table.to_csv(index=False, float_format="%.17g").encode()
    for name, data in images.items():
        files[out_dir / name] = data
    write_all_or_nothing(files)
    return list(files)


@contextlib.contextmanager
def scratch_folder(prefix: str = "precision-"):
    """A temporary folder (for a rerun's chunk parts), removed with its contents on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes, as the store writes it (the figure is closed)."""
    return _png(fig)


def save_figure(path: Path, fig) -> None:
    """Write one figure as PNG atomically (for the README image)."""
    atomic_write_bytes(Path(path), _png(fig))


def _png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


# ---------------------------------------------------------------- fingerprints and chunk parts


class OutputConflict(Exception):
    """An output folder holds results that a run must not overwrite or mix with its own."""


def spec_fingerprint(spec: StudySpec) -> str:
    """sha256 of the spec as run (after --quick overrides), independent of key order."""
    return hashlib.sha256(json.dumps(spec.raw, sort_keys=True, default=str).encode()).hexdigest()


NOT_IN_RESULTS = frozenset(
    {"claims", "docs_errors.py", "docs_image.py", "report.py", "reproduce.py", "results.py"}
)
"""Modules that only read results (reports, reproduction, documentation): editing them changes
no file of a results folder, so they are left out of `code_fingerprint`."""


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the package's source files (except `NOT_IN_RESULTS`): changes whenever the
    code that makes rows does."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] in NOT_IN_RESULTS:
            continue
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_output_folder(out_dir: Path, spec: StudySpec, *, force: bool) -> None:
    """Refuse to overwrite the results of a different spec unless ``force``."""
    meta = Path(out_dir) / "meta.json"
    if force or not meta.is_file():
        return
    try:
        stored = json.loads(meta.read_text()).get("spec_sha256")
    except (OSError, ValueError):
        stored = None
    if stored != spec_fingerprint(spec):
        raise OutputConflict(
            f"{out_dir} holds results of a different spec; use --force to replace them "
            "or --out to write elsewhere"
        )


class Parts:
    """Finished chunks of a run in progress, one Parquet file each under ``<out>/.parts/``.

    A part appears (atomically) only once its chunk is complete, so a killed run loses at most
    the chunks in flight, and a rerun with the same spec and code resumes from the parts.
    Parts made by other code are discarded; parts of another spec are refused (``force``
    discards them).
    """

    def __init__(self, out_dir: Path, spec: StudySpec, *, force: bool = False):
        self.folder = Path(out_dir) / ".parts"
        self.fingerprint = {
            "spec_sha256": spec_fingerprint(spec),
            "code_sha256": code_fingerprint(),
        }
        self.discarded = 0
        manifest = self.folder / "manifest.json"
        if manifest.is_file():
            stored = json.loads(manifest.read_text())
            if stored.get("spec_sha256") != self.fingerprint["spec_sha256"] and not force:
                raise OutputConflict(
                    f"{self.folder} holds an unfinished run of a different spec; use --force "
                    "to discard it or --out to write elsewhere"
                )
            if stored != self.fingerprint:
                self.discarded = len(list(self.folder.glob("*.parquet")))
                self.clear()
        atomic_write_bytes(manifest, json.dumps(self.fingerprint, indent=2).encode())

    def finished(self) -> dict[str, dict]:
        """Chunk id -> its timing, for every finished part."""
        out = {}
        for path in self.folder.glob("*.parquet"):
            timing = path.with_suffix(".json")
            out[path.stem] = json.loads(timing.read_text()) if timing.is_file() else {}
        return out

    def write(self, chunk_id: str, table: pd.DataFrame, timing: dict) -> None:
        """Store one finished chunk: its timing first, then its rows (which mark it done)."""
        atomic_write_bytes(self.folder / f"{chunk_id}.json", json.dumps(timing).encode())
        atomic_write_bytes(self.folder / f"{chunk_id}.parquet", table_bytes(table))

    def read(self, chunk_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.folder / f"{chunk_id}.parquet")

    def clear(self) -> None:
        clear_parts(self.folder.parent)


def clear_parts(out_dir: Path) -> None:
    """Remove a run's parts folder (once the study's table is written)."""
    folder = Path(out_dir) / ".parts"
    if folder.is_dir():
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


# ---------------------------------------------------------------- ground-truth cache


class GroundTruthCache:
    """A persistent map from a ground-truth key to its record, in one SQLite file.

    Keys name everything a ground truth depends on (problem and its reference code, the
    input's exact bits, the output format, the engine and the precision rule; see
    `precision.exact.cache_key`), so a rerun or an extended study reuses what exists and a
    changed reference never meets an old record. Records are JSON (never pickle). SQLite in WAL
    mode lets several worker processes read and write the same file; each opens it lazily.

    The parent calls `prepare` before workers start, so the one-time switch to WAL and the
    table's creation never race. SQLite still answers SQLITE_BUSY without waiting in a few
    WAL cases (a connection opening while the last one closes and cleans up, or while one
    recovers after a crash), so every statement retries on "locked"/"busy" for up to
    ``BUSY_SECONDS``.
    """

    BUSY_SECONDS = 60.0

    def __init__(self, path: Path):
        self.path = Path(path)
        self._connection = None
        self._prepared = False

    def __getstate__(self):  # a connection does not travel to worker processes; the path does
        return {"path": self.path, "_connection": None, "_prepared": False}

    def prepare(self) -> None:
        """Create the file in WAL mode with its table (the parent calls it before workers start).

        Idempotent; every connection also runs it once, so a cache used without a parent works.
        """
        self._retrying("PRAGMA journal_mode=WAL")
        self._retrying(
            "CREATE TABLE IF NOT EXISTS truths (key TEXT PRIMARY KEY, record TEXT NOT NULL)"
        )
        self._prepared = True

    def _db(self):
        if self._connection is None:
            import sqlite3

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(
                self.path, timeout=self.BUSY_SECONDS, isolation_level=None
            )
            # Per connection and lock-free: a crash may lose the last commits, never corrupt.
            self._connection.execute("PRAGMA synchronous=NORMAL")
        return self._connection

    def _statement(self, sql: str, parameters: tuple = ()):
        if not self._prepared:
            self.prepare()
        return self._retrying(sql, parameters)

    def _retrying(self, sql: str, parameters: tuple = ()):
        import sqlite3

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

    def get(self, key: str) -> dict | None:
        rows = self._statement("SELECT record FROM truths WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def put(self, key: str, record: dict) -> None:
        self._statement(
            "INSERT OR IGNORE INTO truths (key, record) VALUES (?, ?)", (key, json.dumps(record))
        )

    def __len__(self) -> int:
        return self._statement("SELECT COUNT(*) FROM truths")[0][0]
