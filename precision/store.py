"""The only module that writes files: study tables, summaries, figures and provenance.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees a half-written file and an interrupted write leaves the previous one intact.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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

LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements-py311.lock"
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
        # The writer's PID in the name: a later writer removes the files of dead ones only.
        prefix = f".{path.name}.{os.getpid()}-"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
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


_TEMPORARY = re.compile(r"\.(?P<pid>\d+)-[^.]*\.tmp$")


def remove_dead_temporaries(folder: Path) -> None:
    """Remove the temporary files (`_stage`'s ``.<name>.<pid>-*.tmp``) that writers killed
    mid-write left in ``folder``: those whose process is gone, and those of older names
    without a PID. A live writer's are left alone."""
    with contextlib.suppress(OSError):
        for path in Path(folder).glob(".*.tmp"):
            found = _TEMPORARY.search(path.name)
            if found is None or not _alive(int(found["pid"])):
                with contextlib.suppress(OSError):
                    path.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's; an absurd number
        return pid < 2**22
    return True


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
        "plugins": list(spec.plugins),  # user modules the spec imported, and their sources
        "plugins_sha256": spec.plugins_sha256,
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
    """Replace ``out_dir`` with a study's complete result set, all or none; returns the paths
    written.

    ``errors.parquet`` (the tidy table), ``summary.csv`` (per cell), ``summary.md`` (digest),
    ``meta.json`` (provenance), one PNG per figure and one ``<name>.csv`` per companion table
    (`precision.study.companion_tables`; floats written in full, so they read back exactly).
    The set is written into a staging folder beside ``out_dir`` and swapped in by renames
    (`swap_in`), so a failure at any point leaves the previous set whole, ``.parts/`` included.
    """
    out_dir = Path(out_dir)
    files = {
        "errors.parquet": table_bytes(table),
        "summary.csv": summary.to_csv(index=False, float_format="%.6g").encode(),
        "summary.md": digest.encode(),
    }
    for name, companion in (tables or {}).items():
        files[f"{name}.csv"] = companion.to_csv(index=False).encode()
    for stem, fig in (figures or {}).items():
        files[f"{stem}.png"] = _png(fig)
    # The table's hash lets a report notice a table edited after the run.
    meta = meta | {"table_sha256": hashlib.sha256(files["errors.parquet"]).hexdigest()}
    # The names this run writes: the next run's swap removes exactly these (and keeps what
    # else a user put in the folder, see `_carry_over`).
    meta["files"] = sorted([*files, "meta.json"])
    files["meta.json"] = (json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n").encode()
    swap_in(out_dir, files)
    return [out_dir / name for name in files]


def swap_in(out_dir: Path, files: dict[str, bytes]) -> None:
    """Make ``out_dir`` hold exactly ``files`` (name -> bytes), all or none.

    The files are written and synced into ``.<out>.staging-<pid>`` beside ``out_dir`` (where a
    full disk or a read-only folder shows up, naming the file in ``out_dir``); then ``out_dir``
    is renamed to ``.<out>.old-<pid>``, the staging folder to ``out_dir``, and the old folder
    removed. Should the second rename fail, the old folder is renamed back. A run killed
    between the renames leaves the old folder, which `recover_output` puts back.

    Raises
    ------
    WriteError
        Naming the file (or ``out_dir``) that could not be written; ``out_dir`` is as it was.
    """
    out_dir = _real_folder(Path(out_dir))
    staging = _beside(out_dir, f"staging-{os.getpid()}")
    _remove_tree(staging)
    try:
        write_all_or_nothing({staging / name: data for name, data in files.items()})
    except WriteError as exc:
        _remove_tree(staging)
        inside = Path(exc.filename).relative_to(staging) if exc.filename else Path()
        raise WriteError(exc.errno, exc.strerror, str(out_dir / inside)) from exc
    except BaseException:
        _remove_tree(staging)
        raise
    _rename_into_place(staging, out_dir)


def _rename_into_place(staging: Path, out_dir: Path) -> None:
    """Rename ``staging`` to ``out_dir``, keeping the old ``out_dir`` until that succeeds."""
    old = _beside(out_dir, f"old-{os.getpid()}")
    _remove_tree(old)
    had_old = out_dir.exists() or out_dir.is_symlink()
    try:
        if had_old:
            os.replace(out_dir, old)
        try:
            os.replace(staging, out_dir)
        except BaseException:
            if had_old:
                os.replace(old, out_dir)
            raise
    except OSError as exc:
        _remove_tree(staging)
        raise _write_error(exc, out_dir) from exc
    except BaseException:
        _remove_tree(staging)
        raise
    _sync_folder(out_dir.parent)
    _carry_over(old, out_dir)
    _remove_tree(old)  # a file that cannot be removed stays; the next run tries again


def _carry_over(old: Path, out_dir: Path) -> None:
    """Move into the new ``out_dir`` what the old folder held that no precision run wrote: a
    user's own files (which ``--force`` let the run write beside) are never deleted. What
    the previous run wrote (its meta.json lists it), ``.parts/`` and names the new set has
    are left to be removed with the old folder."""
    if not old.is_dir():
        return
    written = set()
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        written = set(json.loads((old / "meta.json").read_text()).get("files") or ())
    for entry in old.iterdir():
        if entry.name in written or entry.name == ".parts" or (out_dir / entry.name).exists():
            continue
        with contextlib.suppress(OSError):
            os.replace(entry, out_dir / entry.name)


def _real_folder(out_dir: Path) -> Path:
    """The folder a symbolic link points to (the swap replaces it, not the link)."""
    return Path(os.path.realpath(out_dir)) if out_dir.is_symlink() else out_dir


def _beside(out_dir: Path, what: str) -> Path:
    """``.<name>.<what>`` in the folder of ``out_dir``: hidden, and named after its folder."""
    return out_dir.parent / f".{out_dir.name}.{what}"


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(OSError):
            path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _sync_folder(folder: Path) -> None:
    """Sync a folder's entries (the renames) to disk; a failure only costs durability."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def recover_output(out_dir: Path) -> None:
    """Clean up after runs on ``out_dir`` that were killed while swapping in their results
    (call it holding `output_lock`): an old set renamed aside is put back where ``out_dir``
    is missing, and staging folders and other old sets are removed."""
    out_dir = _real_folder(Path(out_dir))
    if not out_dir.parent.is_dir():
        return
    leftovers = sorted(out_dir.parent.glob(f".{_glob_escape(out_dir.name)}.*-[0-9]*"))
    olds = [p for p in leftovers if p.name.startswith(f".{out_dir.name}.old-") and p.is_dir()]
    if olds and not (out_dir.exists() or out_dir.is_symlink()):
        with contextlib.suppress(OSError):
            os.replace(olds[-1], out_dir)
    for path in leftovers:
        if path.name.startswith(f".{out_dir.name}.old-") and out_dir.is_dir():
            _carry_over(path, out_dir)  # killed after the swap: keep a user's own files
        if path.name.startswith((f".{out_dir.name}.old-", f".{out_dir.name}.staging-")):
            _remove_tree(path)


def _glob_escape(name: str) -> str:
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name)


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
    for folder in {path.parent for path in files}:  # left by a report killed mid-write
        remove_dead_temporaries(folder)
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
    """sha256 of the spec as run (after --quick overrides), independent of key order, and of
    its plugins' sources: an edited user kernel never resumes from parts of the old one."""
    text = json.dumps(spec.raw, sort_keys=True, default=str)
    if spec.plugins_sha256:
        text += spec.plugins_sha256
    return hashlib.sha256(text.encode()).hexdigest()


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
    """Refuse, unless ``force``, to replace a folder holding the results of a different spec
    or files that precision did not write (no ``meta.json``, yet other files: a user's own
    folder, which the swap of `write_study` would replace whole).

    Raises
    ------
    OutputConflict
        Naming the folder and what it holds.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputConflict(f"{out_dir} is a file, not a folder; use --out to write elsewhere")
    meta = out_dir / "meta.json"
    if force:
        return
    if not meta.is_file():
        foreign = _foreign_entries(out_dir)
        if foreign:
            raise OutputConflict(
                f"{out_dir} holds files not written by precision ({foreign}); use --force to "
                "replace the folder or --out to write elsewhere"
            )
        return
    try:
        stored = json.loads(meta.read_text()).get("spec_sha256")
    except (OSError, ValueError, AttributeError):
        stored = None
    if stored != spec_fingerprint(spec):
        raise OutputConflict(
            f"{out_dir} holds results of a different spec; use --force to replace them "
            "or --out to write elsewhere"
        )


def _foreign_entries(out_dir: Path) -> str:
    """Up to three names in ``out_dir`` other than a run's ``.parts`` ("" when none)."""
    try:
        names = sorted(p.name for p in out_dir.iterdir() if p.name != ".parts")
    except OSError:  # missing (nothing to lose) or unreadable (the write will say so)
        return ""
    shown = ", ".join(_short_name(name) for name in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _short_name(name: str) -> str:
    return name if len(name) <= 40 else name[:37] + "..."


@contextlib.contextmanager
def output_lock(out_dir: Path):
    """Hold an advisory lock on ``out_dir`` (``.<name>.lock`` beside it) for a run.

    A second run on the same folder fails at once with `OutputConflict` naming the PID of the
    run that holds it. The lock dies with its process (``flock``), so a killed run never
    blocks the next; the file is removed on release. Where the run made the folder's parents,
    they are removed again if they stay empty (a run that failed leaves nothing).
    """
    out_dir = _real_folder(Path(out_dir))
    made = _missing_folders(out_dir.parent)
    path = _beside(out_dir, "lock")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        fd = _locked(path, out_dir)
    except OSError as exc:
        _remove_empty(made)
        raise _write_error(exc, path) from exc
    try:
        recover_output(out_dir)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # closing releases the lock
        _remove_empty(made)


def _locked(path: Path, out_dir: Path) -> int:
    """A descriptor of ``path`` holding its exclusive lock, with this process's PID in it.

    Raises OutputConflict when another process holds it. The run that held it removes the
    file on release, perhaps after this one opened it: then the lock is taken again on the
    file now at ``path``, so two runs never hold locks on two different files.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputConflict(
                f"{out_dir} is in use by another precision run "
                f"({holder}); wait for it to finish or use --out to write elsewhere"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _holder(fd: int) -> str:
    """``PID 1234`` as the lock file says, or ``PID unknown`` (it has not written it yet)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"PID {text}" if text.isdigit() else "PID unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()


class Parts:
    """Finished chunks of a run in progress, one Parquet file each under ``<out>/.parts/``.

    A part appears (atomically) only once its chunk is complete, so a killed run loses at most
    the chunks in flight, and a rerun with the same spec and code resumes from the parts.
    Parts made by other code are discarded; parts of another spec are refused (``force``
    discards them). Each part's ``<chunk id>.json`` names its chunk and the sha256 of its
    Parquet bytes, so that a damaged part (truncated by a full disk, copied from another chunk,
    written before parts carried checksums) is recomputed instead of read (see `finished`).
    """

    def __init__(self, out_dir: Path, spec: StudySpec, *, force: bool = False):
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


# ---------------------------------------------------------------- ground-truth cache


class GroundTruthCache:
    """A persistent map from a ground-truth key to its record, in one SQLite file.

    Keys name everything a ground truth depends on (problem and its reference code, the
    input's exact bits, the output format, the engine and the precision rule; see
    `precision.exact.cache_key`), so a rerun or an extended study reuses what exists and a
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
