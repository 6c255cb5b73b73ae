"""The only module that writes files: study tables, summaries, figures and provenance.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees a half-written file and an interrupted write leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from precision.spec import StudySpec

PACKAGES = ("numpy", "mpmath", "pandas", "pyarrow", "scipy", "ml_dtypes", "matplotlib", "seaborn")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename in the same folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp makes the file 0600; give it the mode open() would (0666 & ~umask).
            os.chmod(tmp, 0o666 & ~_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    versions = {"python": sys.version.split()[0]}
    for name in ("precision", *PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    spec_text = json.dumps(spec.raw, sort_keys=True)
    return {
        "study": spec.name,
        "seed": spec.seed,
        "spec": spec.raw,
        "spec_file": str(spec.source) if spec.source else None,
        "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "git_commit": _git_commit(),
        "flush_to_zero": flush_to_zero(),
        "timing": timing or {},
    }


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
) -> list[Path]:
    """Write a study's outputs into ``out_dir``; returns the paths written.

    ``errors.parquet`` (the tidy table), ``summary.csv`` (per cell), ``summary.md`` (digest),
    ``meta.json`` (provenance) and one PNG per figure.
    """
    out_dir = Path(out_dir)
    written = []

    def put(name: str, data: bytes) -> None:
        atomic_write_bytes(out_dir / name, data)
        written.append(out_dir / name)

    put("errors.parquet", table_bytes(table))
    put("summary.csv", summary.to_csv(index=False, float_format="%.6g").encode())
    put("summary.md", digest.encode())
    for stem, fig in (figures or {}).items():
        put(f"{stem}.png", _png(fig))
    put("meta.json", (json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n").encode())
    return written


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
