"""Signals and killed processes (issue 16's hostile suite, the part that needs real subprocesses):
Ctrl-C and SIGTERM during a run, an interrupt while a worker starts, a killed parent, a worker
killed mid-run. Each run ends with exactly one line on stderr and leaves no worker behind.
The other hostile cases, run in-process, are in test_hostile.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_hostile import SPEC, E

SLOW_SPEC = (
    SPEC.replace('["softmax"]', '["softmax", "logsumexp"]')
    .replace("log10_cond = [0, 1]", "log10_cond = [0, 4]")
    .replace("samples_per_cell = 1", "samples_per_cell = 200")
    .replace("[grid]", "chunk_elements = 1  # one cell a chunk: 16 chunks to interrupt\n\n[grid]")
)


def start_run(
    folder: Path, executor: str = "process", env: dict[str, str] | None = None
) -> subprocess.Popen:
    (folder / "slow.toml").write_text(SLOW_SPEC)
    argv = [sys.executable, "-m", "precision", "run", "slow.toml", "--out", "out", "--no-cache"]
    argv += ["--no-progress", "--no-plots", "--executor", executor, "--workers", "2"]
    with sigint_at_its_default_in_children():
        return subprocess.Popen(
            argv,
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the workers are found by it
        )


@contextlib.contextmanager
def sigint_at_its_default_in_children():
    """Children started inside begin with SIGINT at its default, as from a terminal.

    A test runner started in the background by a shell without job control (``make test &``
    in a script) or under ``nohup`` ignores SIGINT, its children inherit that through exec,
    and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests' runs ignored it
    and finished with exit 0 (all three tests, every time). A handler, unlike SIG_IGN, is
    reset to the default by exec, so one installed here for the moment of the start is enough.
    """
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def wait_for_a_part(folder: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list((folder / "out" / ".parts").glob("*.parquet")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no chunk finished in time"
        time.sleep(0.1)


def group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("executor", ["process", "dask"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_the_workers_with_one_line(tmp_path: Path, signum, executor):
    """Ctrl-C reaches the whole process group: the workers (a local Dask cluster's too) leave
    it to the parent, which stops them and prints one line; no interrupt is lost (Python drops
    one raised inside a gc callback, which distributed installs) and no traceback printed."""
    if executor == "dask":
        pytest.importorskip("distributed")
    process = start_run(tmp_path, executor)
    try:
        wait_for_a_part(tmp_path, process)
        if signum == signal.SIGINT or executor == "process":
            os.killpg(process.pid, signum)  # Ctrl-C reaches the whole group
        else:  # kill PID: a Dask worker's nanny would log the death of a worker it is sent to
            os.kill(process.pid, signum)
        _, err = process.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("precision: interrupted: ")
    assert lines[0].endswith(" chunks kept; rerun the same command to resume")
    assert group_gone(process.pid, 10), "a worker outlived the interrupted run"
    assert not (tmp_path / ".out.lock").exists()


# Imported at start-up by every Python of the run: the pool workers after the first sleep
# there, so the first worker finishes a chunk while the second is still starting.
SLOW_START = """\
import os, sys, time
if "--multiprocessing-fork" in sys.argv:
    first = os.path.join(os.environ["SLOW_START_DIR"], "first")
    try:
        os.close(os.open(first, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(30)
"""


def test_an_interrupt_while_a_worker_starts_prints_one_line(tmp_path: Path):
    """A worker still importing the package when Ctrl-C reaches the group (before its
    initializer can ignore SIGINT) prints no KeyboardInterrupt traceback: workers start with
    SIGINT ignored. CI once caught this race at random; the sleep makes it certain."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_START)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "SLOW_START_DIR": str(site)}
    process = start_run(tmp_path, "process", env=env)
    try:
        wait_for_a_part(tmp_path, process)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert (site / "first").exists()  # the slow start was in force
    assert process.returncode == 130, err
    assert len(err.splitlines()) == 1 and err.startswith("precision: interrupted: "), err


@pytest.mark.parametrize("executor", ["process", "dask"])
def test_workers_of_a_killed_parent_exit_on_their_own(tmp_path: Path, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    process = start_run(tmp_path, executor)
    try:
        wait_for_a_part(tmp_path, process)
        process.kill()  # kill -9: the parent cannot stop its workers
        process.communicate(timeout=30)
        assert group_gone(process.pid, 20), "a worker outlived its killed parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def pool_workers(parent: int) -> list[int]:
    """PIDs of the process pool's workers among ``parent``'s children (not its resource
    tracker, which multiprocessing also spawns)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if "--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    ]


def test_a_worker_killed_mid_run_ends_the_run_with_one_line(tmp_path: Path):
    """The kernel kills one worker (as the OOM killer does, which a user on a small machine
    meets): the run stops its other workers, keeps its finished chunks for a rerun and says
    so in one line, not as an internal error of precision."""
    process = start_run(tmp_path, "process")
    try:
        wait_for_a_part(tmp_path, process)
        os.kill(pool_workers(process.pid)[0], signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 2, err
    assert len(err.splitlines()) == 1 and "internal error" not in err, err
    assert err.startswith(E) and "worker" in err, err
    assert err.rstrip().endswith(" chunks kept; rerun the same command to resume"), err
    assert group_gone(process.pid, 10), "a worker outlived the failed run"
    assert not (tmp_path / ".out.lock").exists()
    assert list((tmp_path / "out" / ".parts").glob("*.parquet"))  # kept for the rerun
