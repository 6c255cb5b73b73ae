"""A hostile suite (issue 16): bad specs, values, flags, executors, a shared output folder, a
full disk (signals and killed processes: test_signals.py). Every bad case ends in exit 2 and
exactly one line on stderr, never an internal error, leaves no staging folder, lock or
temporary file behind, and leaves the earlier results byte for byte as they were.

Each case runs in its own folder holding ``study.toml`` (a tiny valid spec) and ``out/`` (the
results of one earlier run of it, copied); the CLI runs in-process (`run_captured`), except
where a signal or a second process is the point.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from precision import store
from precision.cli import run_captured
from precision.run import execute

SPEC = """\
name = "tiny"
seed = 3
formats = ["float16", "float64"]
problems = ["softmax"]

[grid]
log10_cond = [0, 1]
log10_magnitude = [0, 2]
sizes = [10]
samples_per_cell = 1
"""

E = "precision: error: "
QUIET = ["--executor", "serial", "--no-progress", "--no-plots"]
RUN = ["run", "study.toml", "--out", "out", *QUIET]
CORES = os.cpu_count() or 1


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder or a special file)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def huge_header() -> bytes:
    """A .npy file whose header claims a 10**7 x 10**6 float64 matrix (72.8 TiB)."""
    import io

    buffer = io.BytesIO()
    shape = {"descr": "<f8", "fortran_order": False, "shape": (10_000_000, 1_000_000)}
    np.lib.format.write_array_header_1_0(buffer, shape)
    return buffer.getvalue() + bytes(48)


@dataclass(frozen=True)
class Hostile:
    """One hostile case: argv (run in the case's folder), files to make first (name -> bytes,
    or a callable making it), and a piece of the one error line."""

    id: str
    argv: list[str]
    says: str
    files: dict[str, bytes | Callable[[Path], None]] = field(default_factory=dict)
    code: int = 2


def fifo(path: Path) -> None:
    os.mkfifo(path)


def link_to(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def sparse(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(path, "wb") as handle:
            handle.truncate(size)

    return make


def spec_with(old: str, new: str) -> bytes:
    assert old in SPEC
    return SPEC.replace(old, new).encode()


def dataset_spec(name: str) -> bytes:
    return (SPEC + f'\n[datasets.mnist]\npath = "{name}"\nrows = 5\n').encode()


def eval_(*values: str) -> list[str]:
    return ["eval", *values, "--format", "float64"]


NESTED = "a = " + "[" * 5000 + "]" * 5000 + "\n"
BIG = "x" * 10_000_000  # as a value typed to eval
LONG = "x" * 900_000  # in a spec: the longest under the 1 MiB cap on spec files

CASES = [
    # ---- spec files
    Hostile("spec-fifo", ["run", "fifo.toml"], "not a regular file", {"fifo.toml": fifo}),
    Hostile(
        "spec-dev-zero",
        ["run", "zero.toml"],
        "not a regular file",
        {"zero.toml": link_to("/dev/zero")},
    ),
    Hostile(
        "spec-folder", ["run", "dir.toml"], "not a regular file", {"dir.toml": lambda p: p.mkdir()}
    ),
    Hostile(
        "spec-too-big",
        ["run", "big.toml"],
        "more than the limit of 1 MiB",
        {"big.toml": sparse(2 * 2**20)},
    ),
    Hostile("spec-nested", ["run", "n.toml"], "nested too deeply", {"n.toml": NESTED.encode()}),
    Hostile(
        "spec-10mb-name",
        ["run", "s.toml"],
        "name: must use only",
        {"s.toml": spec_with('"tiny"', f'"{LONG}!"')},
    ),
    Hostile(
        "spec-10mb-key",
        ["run", "s.toml"],
        "unknown key",
        {"s.toml": SPEC.encode() + f"{LONG} = 1\n".encode()},
    ),
    Hostile(
        "spec-10mb-problem",
        ["run", "s.toml"],
        "unknown name",
        {"s.toml": spec_with('["softmax"]', f'["{LONG}"]')},
    ),
    Hostile("spec-binary", ["run", "s.toml"], "cannot read", {"s.toml": b"\xff\xfe\x00garbage"}),
    Hostile(
        "spec-samples-1e9",
        ["run", "s.toml"],
        "at most 10,000 inputs per cell",
        {"s.toml": spec_with("samples_per_cell = 1", "samples_per_cell = 1000000000")},
    ),
    Hostile(
        "spec-samples-float",
        ["run", "s.toml"],
        "positive integer",
        {"s.toml": spec_with("samples_per_cell = 1", "samples_per_cell = 1e9")},
    ),
    Hostile(
        "spec-problem-samples",
        ["run", "s.toml"],
        "at most 10,000",
        {
            "s.toml": spec_with(
                "samples_per_cell = 1", "samples_per_cell = 1\nproblem_samples = {softmax = 20000}"
            )
        },
    ),
    Hostile(
        "spec-matrix-n-2000",
        ["run", "s.toml"],
        "take sizes up to 1,000",
        {"s.toml": spec_with('["softmax"]', '["linear_system"]').replace(b"[10]", b"[2000]")},
    ),
    Hostile(
        "spec-matrix-n-1e6",
        ["run", "s.toml"],
        "take sizes up to 1,000",
        {"s.toml": spec_with('["softmax"]', '["matrix_condition"]').replace(b"[10]", b"[1000000]")},
    ),
    Hostile(
        "spec-size-huge",
        ["run", "s.toml"],
        "sizes above 1,000,000",
        {"s.toml": spec_with("[10]", "[1000000000]")},
    ),
    Hostile(
        "spec-linear-system-n-1000",  # days of certified ground truth in one chunk
        ["run", "s.toml"],
        "tiny is too large to run here: about 50 rows",
        {
            "s.toml": spec_with('["softmax"]', '["linear_system"]')
            .replace(b"[10]", b"[1000]")
            .replace(b"log10_magnitude = [0, 2]", b"log10_magnitude = [0, 1]")
            .replace(b"samples_per_cell = 1", b"samples_per_cell = 5")
        },
    ),
    Hostile(
        "spec-vector-1e6-x-10000",  # 10,000 million-element inputs per chunk: 37 TiB
        ["run", "s.toml"],
        "or use --force to insist",
        {
            "s.toml": spec_with("[10]", "[1000000]").replace(
                b"samples_per_cell = 1", b"samples_per_cell = 10000"
            )
        },
    ),
    Hostile(
        "spec-dataset-huge-header",
        ["run", "s.toml"],
        "declares shape (10000000, 1000000)",
        {"s.toml": dataset_spec("d.npy"), "d.npy": huge_header()},
    ),
    Hostile(
        "spec-dataset-npz",
        ["run", "s.toml"],
        "holds an .npz archive",
        {"s.toml": dataset_spec("d.npy"), "d.npy": b"PK\x03\x04rest of a zip"},
    ),
    Hostile(
        "spec-dataset-text",
        ["run", "s.toml"],
        "not a .npy file",
        {"s.toml": dataset_spec("d.npy"), "d.npy": b"1,2,3\n4,5,6\n"},
    ),
    Hostile(
        "spec-dataset-fifo",
        ["run", "s.toml"],
        "no .npy file at",
        {"s.toml": dataset_spec("d.npy"), "d.npy": fifo},
    ),
    Hostile(
        "spec-dataset-nan-rows",  # was: RuntimeWarnings and rows labelled input_overflow
        ["run", "s.toml", *QUIET],
        "datasets.mnist.path: 3 of the 4 rows drawn from d.npy hold NaN or inf",
        {
            "s.toml": dataset_spec("d.npy"),
            "d.npy": npy(np.array([[np.nan, 1.0], [1.0, 2.0], [np.inf, 0.0], [-np.inf, 1.0]])),
        },
    ),
    Hostile(
        "spec-dataset-truncated",
        ["run", "s.toml"],
        "truncated or damaged",
        {"s.toml": dataset_spec("d.npy"), "d.npy": npy(np.ones((4, 3)))[:-8]},
    ),
    # ---- eval values
    Hostile("values-fifo-npy", eval_("softmax", "v.npy"), "not a regular file", {"v.npy": fifo}),
    Hostile("values-fifo-csv", eval_("softmax", "v.csv"), "not a regular file", {"v.csv": fifo}),
    Hostile(
        "values-dev-zero",
        eval_("softmax", "z.csv"),
        "not a regular file",
        {"z.csv": link_to("/dev/zero")},
    ),
    Hostile(
        "values-csv-too-big",
        eval_("softmax", "v.csv"),
        "more than the limit of 64 MiB",
        {"v.csv": sparse(65 * 2**20)},
    ),
    Hostile(
        "values-npy-huge-header",
        eval_("softmax", "v.npy"),
        "declares shape (10000000, 1000000)",
        {"v.npy": huge_header()},
    ),
    Hostile(
        "values-npy-truncated",
        eval_("softmax", "v.npy"),
        "truncated or damaged",
        {"v.npy": npy(np.arange(9.0))[:-1]},
    ),
    Hostile(
        "values-npz-as-npy",
        eval_("softmax", "v.npy"),
        "holds an .npz archive",
        {"v.npy": b"PK\x03\x04" + b"\0" * 40},
    ),
    Hostile(
        "values-text-as-npy",
        eval_("softmax", "v.npy"),
        "numbers as text belong in a .csv",
        {"v.npy": b"1,2,3\n"},
    ),
    Hostile(
        "values-npy-strings",
        eval_("softmax", "v.npy"),
        "must hold real numbers",
        {"v.npy": npy(np.array(["a", "b"]))},
    ),
    Hostile(
        "values-target-not-distribution",
        eval_("cross_entropy", "[[1,2,3],[5,-7,0.5]]"),
        "must be a probability distribution",
    ),
    Hostile("values-target-sum-2", eval_("cross_entropy", "[[1,2,3],[1,1,0]]"), "got a sum of 2"),
    Hostile(
        "values-target-nan",
        eval_("cross_entropy", '[[1,2,3],["nan",1,0]]'),
        "finite and non-negative",
    ),
    Hostile(
        "values-target-5000-digits",
        ["eval", "cross_entropy", "1,2,3", "--target", "9" * 5000],
        "must be a class index from 0 to 2",
    ),
    Hostile(
        "values-target-leading-zeros",
        ["eval", "cross_entropy", "1,2,3", "--target", "0" * 5000 + "7"],
        "must be a class index",
    ),
    Hostile("values-10mb-token", eval_("softmax", BIG), "is not a number"),
    Hostile(
        "values-nested-json", eval_("softmax", "[" * 100_000 + "]" * 100_000), "nested too deeply"
    ),
    Hostile("values-empty", eval_("softmax", ""), "VALUES: no values given"),
    Hostile("values-empty-json", eval_("softmax", "[[]]"), "holds no numbers"),
    Hostile(
        "values-wrong-shape",
        eval_("linear_system", "[[1,2],[3,4]]"),
        "needs [A | b] of shape (n, n + 1), got 2 x 2",
    ),
    Hostile("values-missing-file", eval_("softmax", "nope.npy"), "nope.npy: no such file"),
    Hostile(
        "values-unknown-format",
        ["eval", "softmax", "1,2", "--format", "float128"],
        "unknown format 'float128'",
    ),
    Hostile(
        "values-variant-path",
        ["eval", "softmax", "1,2", "--variant", "../../etc"],
        "unknown variant '../../etc' of softmax",
    ),
    Hostile(
        "values-target-negative",
        ["eval", "cross_entropy", "1,2,3", "--target", "-1"],
        "must be a class index from 0 to 2, got '-1'",
    ),
    # ---- more specs
    Hostile(
        "spec-plugin-path",
        ["run", "s.toml"],
        "plugin /etc/passwd: no file /etc/passwd.py",
        {"s.toml": spec_with("seed = 3", 'seed = 3\nplugins = ["/etc/passwd"]')},
    ),
    Hostile(
        "spec-name-traversal",
        ["run", "s.toml"],
        "name: must use only letters",
        {"s.toml": spec_with('"tiny"', '"../evil"')},
    ),
    Hostile("spec-nul", ["run", "s.toml"], "not valid TOML", {"s.toml": b'name = "t\x00"\n'}),
    Hostile(
        "spec-quick-other-key",
        ["run", "s.toml", "--quick"],
        "quick.seed: only grid and datasets can be overridden",
        {"s.toml": SPEC.encode() + b"\n[quick]\nseed = 4\n"},
    ),
    Hostile(
        "spec-dataset-not-npy",
        ["run", "s.toml"],
        "no .npy file at /etc/passwd",
        {"s.toml": dataset_spec("/etc/passwd")},
    ),
    # ---- flags
    Hostile(
        "flags-report-nonexistent",
        ["report", "--results", "/nonexistent"],
        "/nonexistent: no such results folder",
    ),
    Hostile(
        "flags-cache-verify-nonexistent",
        ["cache", "verify", "--cache", "/nonexistent"],
        "no ground-truth cache at /nonexistent/ground_truth.sqlite",
    ),
    Hostile(
        "flags-workers-10000",
        ["run", "study.toml", "--out", "out", "--workers", "10000"],
        f"the {CORES} cores of this machine; use --force",
    ),
    Hostile(
        "flags-workers-reproduce", ["reproduce", "out", "--workers", "10000"], f"the {CORES} cores"
    ),
    Hostile(
        "flags-scheduler-without-dask",
        [*RUN, "--scheduler", "tcp://127.0.0.1:8786"],
        "--scheduler needs --executor dask",
    ),
    Hostile(
        "flags-scheduler-not-an-address",
        [
            "run",
            "study.toml",
            "--out",
            "out",
            "--executor",
            "dask",
            "--scheduler",
            "not an address",
        ],
        "is not a scheduler address",
    ),
    Hostile(
        "flags-scheduler-empty",
        ["run", "study.toml", "--out", "out", "--executor", "dask", "--scheduler", ""],
        "is not a scheduler address",
    ),
    Hostile("flags-workers-zero", [*RUN, "--workers", "0"], "must be a positive integer"),
    Hostile("flags-list-nonexistent", ["list", "--studies-dir", "/nonexistent"], "no such folder"),
    Hostile("flags-list-file", ["list", "--studies-dir", "study.toml"], "no such folder"),
    # ---- output folder
    Hostile(
        "out-user-files",
        [*RUN[:3], "mine", *QUIET],
        "holds files not written by precision (heatmap_a.png, summary.md)",
        {
            "mine": lambda p: (
                p.mkdir(),
                (p / "summary.md").write_text("my notes"),
                (p / "heatmap_a.png").write_bytes(b"png"),
            )
        },
    ),
    Hostile(
        "out-a-file",
        [*RUN[:3], "file", *QUIET],
        "is a file, not a folder",
        {"file": b"not a folder"},
    ),
    Hostile("out-dot", [*RUN[:3], ".", *QUIET], "--out .: the results folder cannot be the"),
    Hostile("out-empty", [*RUN[:3], "", *QUIET], "cannot be the current folder or hold it"),
    Hostile("out-parent", [*RUN[:3], "..", *QUIET], "--out ..: the results folder cannot be"),
    Hostile(
        "out-other-spec",
        ["run", "s.toml", "--out", "out", *QUIET],
        "holds results of a different spec",
        {"s.toml": spec_with("seed = 3", "seed = 4")},
    ),
]


def test_the_table_is_large():
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """One finished run of SPEC in out/, copied into every case's folder."""
    folder = tmp_path_factory.mktemp("earlier")
    (folder / "study.toml").write_text(SPEC)
    with contextlib.chdir(folder):
        code, _, err = run_captured(RUN)
    assert code == 0, err
    return folder


@pytest.fixture
def case_folder(earlier: Path, tmp_path: Path) -> Path:
    shutil.copy(earlier / "study.toml", tmp_path / "study.toml")
    shutil.copytree(earlier / "out", tmp_path / "out")
    return tmp_path


def make(folder: Path, files: dict) -> None:
    for name, content in files.items():
        if callable(content):
            content(folder / name)
        else:
            (folder / name).write_bytes(content)


def assert_one_error_line(code: int, out: str, err: str, case: Hostile) -> str:
    assert code == case.code, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err[:2000]
    (line,) = lines
    assert line.startswith("precision") and " error: " in line, line  # argparse: "precision run"
    assert "internal error" not in line and "Traceback" not in err
    assert case.says in line, line[:2000]
    assert len(line) < 2100  # a huge value is never echoed whole
    return line


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile(case: Hostile, case_folder: Path):
    make(case_folder, case.files)
    before = tree(case_folder)
    with contextlib.chdir(case_folder):
        start = time.monotonic()
        code, out, err = run_captured(case.argv)
        assert time.monotonic() - start < 30
    assert_one_error_line(code, out, err, case)
    assert tree(case_folder) == before  # nothing partial, no lock, no staging folder


# ------------------------------------------------------------------ executors


@pytest.fixture
def short_scheduler_timeout(monkeypatch):
    monkeypatch.setattr(execute, "SCHEDULER_TIMEOUT", 2.0)


@pytest.mark.parametrize("server", ["silent", "closed"])
def test_a_scheduler_that_does_not_answer_fails_within_the_timeout(
    case_folder: Path, short_scheduler_timeout, server
):
    """A server that accepts and never speaks (or no server at all): one line, in time."""
    pytest.importorskip("distributed")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if server == "silent":
        listener.listen(8)
    else:
        listener.close()
    before = tree(case_folder)
    argv = ["run", "study.toml", "--out", "out", "--executor", "dask", "--no-progress"]
    argv += ["--no-plots", "--scheduler", f"tcp://127.0.0.1:{port}"]
    try:
        with contextlib.chdir(case_folder):
            start = time.monotonic()
            code, out, err = run_captured(argv)
            assert time.monotonic() - start < 20
    finally:
        listener.close()
    case = Hostile(server, argv, "cannot reach the Dask scheduler at tcp://127.0.0.1")
    assert_one_error_line(code, out, err, case)
    # Nothing left behind: no .parts/manifest.json, no ground-truth cache beside --out.
    assert tree(case_folder) == before


def test_a_run_that_fails_before_its_first_chunk_leaves_no_parts(case_folder: Path, monkeypatch):
    """The executor cannot start (as with an unreachable scheduler): neither a new --out nor
    an earlier one keeps the manifest of a run that finished no chunk (the ground-truth cache,
    shared by every run beside, is another matter: --no-cache keeps it out of the picture)."""

    def unreachable(*args, **kwargs):
        raise execute.ExecutorError("cannot reach the Dask scheduler at tcp://nowhere:1")
        yield  # a generator, as the real one

    monkeypatch.setattr(execute, "_results", unreachable)
    before = tree(case_folder)
    with contextlib.chdir(case_folder):
        for out in ("out", "fresh/deeper"):
            argv = ["run", "study.toml", "--out", out, "--no-cache", *QUIET]
            code, stdout, err = run_captured(argv)
            assert_one_error_line(code, stdout, err, Hostile(out, [], "cannot reach the Dask"))
    assert tree(case_folder) == before


def test_a_dask_run_says_nothing_when_the_dashboard_port_is_taken(case_folder: Path):
    """Another Dask cluster, or a notebook's, holds port 8787: a local-cluster run still
    writes nothing to stderr (a second run beside the first printed "UserWarning: Port 8787
    is already in use" in 4 lines, 2 of 5 interrupted runs measured beside another run)."""
    pytest.importorskip("distributed")
    argv = [sys.executable, "-m", "precision", "run", "study.toml", "--out", "out", "--no-cache"]
    argv += ["--no-progress", "--no-plots", "--executor", "dask", "--workers", "1"]
    with held_port(8787):
        result = subprocess.run(argv, cwd=case_folder, capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stderr) == (0, "")


@contextlib.contextmanager
def held_port(port: int, wait: float = 30):
    """Listen on ``port`` of every interface for the duration (skip if it stays taken).

    Holding it ourselves is what makes the case certain: the first version of this test let
    a failed bind pass quietly and passed once in three rounds without the fix (another
    program's listener can close before the run binds; a bind without SO_REUSEADDR also
    fails on the port's TIME_WAIT connections, which this one lets past, but not a listener).
    """
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + wait
    with holder:
        while True:
            try:
                holder.bind(("", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.skip(f"port {port} stayed taken by another program")
                time.sleep(0.5)
        holder.listen()
        yield


# ------------------------------------------------------------------ concurrency


def test_a_second_run_on_a_locked_folder_fails_at_once_naming_the_first(case_folder: Path):
    before = tree(case_folder)
    lock = case_folder / ".out.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        with contextlib.chdir(case_folder):
            code, out, err = run_captured(RUN)
    finally:
        os.close(fd)
        lock.unlink()
    says = "out is in use by another precision run (PID 4242)"
    assert_one_error_line(code, out, err, Hostile("locked", RUN, says))
    assert tree(case_folder) == before


def test_the_lock_is_released_and_removed_after_a_run(case_folder: Path):
    with contextlib.chdir(case_folder):
        assert run_captured(RUN)[0] == 0
        assert run_captured(RUN)[0] == 0  # the first run's lock is gone
    assert sorted(p.name for p in case_folder.iterdir()) == [".cache", "out", "study.toml"]


# ------------------------------------------------------------------ output folder and disk


def test_user_files_are_replaced_only_with_force(case_folder: Path):
    mine = case_folder / "mine"
    mine.mkdir()
    (mine / "summary.md").write_text("my notes")
    argv = ["run", "study.toml", "--out", "mine", *QUIET]
    with contextlib.chdir(case_folder):
        assert run_captured(argv)[0] == 2
        assert (mine / "summary.md").read_text() == "my notes"
        code, _, err = run_captured([*argv, "--force"])
    assert code == 0, err
    assert (mine / "meta.json").is_file()
    assert (mine / "summary.md").read_text() != "my notes"  # a name the run writes


def test_files_no_run_wrote_survive_a_forced_run_and_a_rerun(case_folder: Path):
    """--force lets a run write beside a user's own files, never delete them; a rerun removes
    exactly what the previous run wrote (its meta.json lists it)."""
    mine = case_folder / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    (mine / "data").mkdir()
    (mine / "data" / "x.npy").write_bytes(b"not mine to delete")
    argv = ["run", "study.toml", "--out", "mine", *QUIET]
    with contextlib.chdir(case_folder):
        assert run_captured([*argv, "--force"])[0] == 0
        assert (mine / "notes.txt").read_text() == "my notes"
        assert (mine / "data" / "x.npy").read_bytes() == b"not mine to delete"
        written = set(json.loads((mine / "meta.json").read_text())["files"])
        assert {"errors.parquet", "meta.json", "summary.md"} <= written
        (mine / "heatmap_gone.png").write_bytes(b"mine too")
        assert run_captured([*argv, "--force"])[0] == 0
    assert (mine / "notes.txt").read_text() == "my notes"
    assert (mine / "heatmap_gone.png").read_bytes() == b"mine too"
    assert not list(case_folder.glob(".mine.*"))


def test_a_failed_swap_puts_the_earlier_results_back(case_folder: Path, monkeypatch):
    """The rename of the staging folder onto --out fails: the old folder is renamed back."""
    before = tree(case_folder)
    real_replace = os.replace

    def failing(src, dst):
        if Path(src).name.startswith(".out.staging-"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with contextlib.chdir(case_folder):
        code, out, err = run_captured([*RUN, "--force"])
    monkeypatch.undo()
    line = assert_one_error_line(code, out, err, Hostile("swap", RUN, "cannot write out: "))
    assert line.endswith("earlier results are unchanged")
    after = tree(case_folder)
    kept = ("out/.parts", ".cache")  # the finished chunks wait for a rerun
    assert {k: v for k, v in after.items() if not k.startswith(kept)} == before


def test_a_full_disk_while_staging_leaves_the_earlier_results(case_folder: Path, monkeypatch):
    before = tree(case_folder)
    real_fsync = os.fsync

    def fsync(fd):
        if ".staging-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with contextlib.chdir(case_folder):
        code, out, err = run_captured([*RUN, "--force"])
    monkeypatch.undo()
    says = "cannot write out/errors.parquet: No space left on device"
    assert_one_error_line(code, out, err, Hostile("full", RUN, says))
    after = tree(case_folder)
    kept = ("out/.parts", ".cache")  # the finished chunks wait for a rerun
    assert {k: v for k, v in after.items() if not k.startswith(kept)} == before


def test_a_run_killed_between_the_renames_is_recovered(case_folder: Path):
    """out/ renamed aside, staging not yet renamed in: the next run puts the old set back
    first (then replaces it normally) and removes the stale staging folder."""
    table = (case_folder / "out" / "errors.parquet").read_bytes()
    os.rename(case_folder / "out", case_folder / ".out.old-99999")
    (case_folder / ".out.staging-99999").mkdir()
    store.recover_output(case_folder / "out")
    assert (case_folder / "out" / "errors.parquet").read_bytes() == table
    assert sorted(p.name for p in case_folder.iterdir()) == ["out", "study.toml"]


def test_a_kept_staging_folder_of_a_dead_run_is_removed_by_the_next_run(case_folder: Path):
    (case_folder / ".out.staging-99999").mkdir()
    (case_folder / ".out.staging-99999" / "meta.json").write_text("{}")
    with contextlib.chdir(case_folder):
        assert run_captured(RUN)[0] == 0
    assert sorted(p.name for p in case_folder.iterdir()) == [".cache", "out", "study.toml"]


def test_matrix_condition_of_a_singular_matrix_is_infinite():
    code, out, err = run_captured(["eval", "matrix_condition", "[[1,1],[1,1]]"])
    assert (code, err) == (0, "")
    assert "exact inf" in out


def test_list_does_not_hang_on_a_fifo_spec(tmp_path: Path):
    fifo(tmp_path / "x.toml")
    code, out, err = run_captured(["list", "--studies-dir", str(tmp_path)])
    assert code == 0 and "not a regular file" in out
