"""A study's output folder: written whole, swapped in atomically, locked against a second writer."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from precision.store.files import (
    WriteError,
    _missing_folders,
    _png,
    _remove_tree,
    _sync_folder,
    _umask,
    _write_error,
    remove_dead_temporaries,
    table_bytes,
    write_all_or_nothing,
)
from precision.store.meta import RunSpec, spec_fingerprint


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
    (`precision.run.study.companion_tables`; floats written in full, so they read back exactly).
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


class OutputConflict(Exception):
    """An output folder holds results that a run must not overwrite or mix with its own."""


def check_output_folder(out_dir: Path, spec: RunSpec, *, force: bool) -> None:
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
