"""kill -9 at a random moment, then the same command again: the table is byte-identical to an
uninterrupted run's and nothing is left behind (issue 16, the hostile suite's property test).

The run is a real ``precision run`` subprocess with a process pool in its own process group;
the whole group is killed with SIGKILL, so neither the parent nor a worker cleans up. The
moments are seeded: a failure names its seed and delay, and reruns the same way.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_specs import TINY

from precision.cli import run_captured

COMMAND = ["run", "tiny.toml", "--out", "out", "--no-cache", "--no-plots", "--no-progress"]
PROCESS = ["--executor", "process", "--workers", "2"]
OUTPUT = ["errors.parquet", "meta.json", "summary.csv", "summary.md"]


def start(folder: Path) -> subprocess.Popen:
    """``precision run`` of the tiny spec with two worker processes, in its own group."""
    if not (folder / "tiny.toml").exists():
        (folder / "tiny.toml").write_text(TINY)
    return subprocess.Popen(
        [sys.executable, "-m", "precision", *COMMAND, *PROCESS],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the workers share its group: one killpg reaches them all
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> None:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err


def rerun_here(folder: Path) -> None:
    """The same ``precision run`` (process pool, two workers) again, in this process: only the
    run to kill needs a process of its own, and all a rerun resumes from is on disk."""
    with contextlib.chdir(folder):
        code, _, err = run_captured([*COMMAND, *PROCESS])
    assert code == 0, err


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the run's whole group and wait until every member is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("a process of the killed run survived SIGKILL")


def assert_resumed_cleanly(folder: Path, reference: bytes) -> None:
    """The rerun's table equals the reference byte for byte; no staging or old folder, lock
    file, part or temporary file is left."""
    assert (folder / "out" / "errors.parquet").read_bytes() == reference
    assert sorted(p.name for p in folder.iterdir()) == ["out", "tiny.toml"]
    assert sorted(p.name for p in (folder / "out").iterdir()) == OUTPUT


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    """errors.parquet of an uninterrupted run (serial, in this process: the table is the same
    whatever the executor, which the slow test checks for the process pool)."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "tiny.toml").write_text(TINY)
    with contextlib.chdir(folder):
        code, _, err = run_captured([*COMMAND, "--executor", "serial"])
    assert code == 0, err
    return (folder / "out" / "errors.parquet").read_bytes()


def test_a_run_killed_after_its_first_part_resumes_to_the_same_table(tmp_path, reference):
    """One kill, always mid-run: a seeded moment within a second after the first chunk's part
    is written (some chunks kept, others running or queued)."""
    process = start(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "out" / ".parts").glob("*.parquet")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no chunk finished in time"
            time.sleep(0.02)
        time.sleep(random.Random(16).uniform(0.0, 1.0))
    finally:
        kill_group(process)
    rerun_here(tmp_path)
    assert_resumed_cleanly(tmp_path, reference)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, reference) -> float:
    """Seconds an uninterrupted process-pool run takes (its table checked against the
    serial reference)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    began = time.monotonic()
    finish(start(folder))
    seconds = time.monotonic() - began
    assert_resumed_cleanly(folder, reference)
    return seconds


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_a_run_killed_at_a_random_moment_resumes_to_the_same_table(
    tmp_path, reference, uninterrupted, seed
):
    """kill -9 anywhere from start-up to the final write (0.2 s to the uninterrupted run's
    duration; a moment past the end kills nothing), then rerun to completion."""
    delay = random.Random(seed).uniform(0.2, uninterrupted)
    process = start(tmp_path)
    try:
        time.sleep(delay)
    finally:
        kill_group(process)
    finish(start(tmp_path))
    assert_resumed_cleanly(tmp_path, reference)
