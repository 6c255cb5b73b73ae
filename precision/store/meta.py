"""What a results folder records about how it was made: spec, code, lock, machine, fingerprints."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np


class RunSpec(Protocol):
    """What the store reads of a study's spec. `precision.run.spec.RunSpec` is one; the store
    sits below the runner in the pipeline and never imports it."""

    name: str
    seed: int
    raw: dict
    source: Path | None
    plugins: tuple
    plugins_sha256: str
    datasets: tuple


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


LOCK_FILE = Path(__file__).resolve().parents[2] / "requirements-py311.lock"
"""The committed lock of a source checkout (absent where the package was installed from a
wheel into someone's own environment)."""


def flush_to_zero() -> bool:
    """True when this CPU flushes float64 subnormals to zero (2**-1073 would vanish)."""
    tiny = np.float64(2.0) ** -1073
    return bool(tiny == 0.0 or tiny * np.float64(0.5) == 0.0)


def provenance(spec: RunSpec, timing: dict | None = None) -> dict:
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


def _dataset_fingerprints(spec: RunSpec) -> dict:
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


def spec_fingerprint(spec: RunSpec) -> str:
    """sha256 of the spec as run (after --quick overrides), independent of key order, and of
    its plugins' sources: an edited user kernel never resumes from parts of the old one."""
    text = json.dumps(spec.raw, sort_keys=True, default=str)
    if spec.plugins_sha256:
        text += spec.plugins_sha256
    return hashlib.sha256(text.encode()).hexdigest()


NOT_IN_RESULTS = frozenset(
    {
        "report/claims",
        "report/document.py",
        "run/reproduce.py",
        "run/staleness.py",
        "store/results.py",
    }
)
"""Paths under the package (folders or files) that only read results (the report, reproduction,
staleness): editing them changes no file of a results folder, so they are left out of
`code_fingerprint`."""


def _reads_results_only(relative: str) -> bool:
    return any(relative == p or relative.startswith(p + "/") for p in NOT_IN_RESULTS)


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the package's source files (except `NOT_IN_RESULTS`): changes whenever the
    code that makes rows does."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if _reads_results_only(relative):
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
