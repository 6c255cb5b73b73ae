"""Writing files so that a reader never sees half of one: temporary name, fsync, rename.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees a half-written file and an interrupted write leaves the previous one intact.
The temporary names carry the writer's PID, so a later run removes only a dead writer's leftovers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd


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
