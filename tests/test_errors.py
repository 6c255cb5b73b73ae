"""Bad input meets one clear line, exit status 2, no traceback, and nothing half-written.

A table of bad specs and bad ``eval`` values runs through `precision.cli.main` in a scratch
folder; each case asserts the exit status, the exact message (one line on stderr, nothing on
stdout) and that the folder holds exactly what it held before. Then: the same through a
subprocess, ``--debug``, internal errors (exit 1), a full disk and a read-only folder during
a run, numpy warnings, the README's "Common errors" section, and hypothesis fuzzing of the
spec loader and of ``eval`` (only the framework's own errors may come out).
"""

from __future__ import annotations

import datetime
import errno
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from precision import store
from precision.cli import run_captured
from precision.core.formats import STUDY_FORMATS
from precision.problems import DEFAULT_VARIANTS, PROBLEMS
from precision.run.spec import SpecError, StudySpec, load_spec, parse_spec
from tools import docs_errors

ROOT = Path(__file__).resolve().parents[1]

SPEC = docs_errors.SPEC
QUIET = ["--executor", "serial", "--no-progress", "--no-plots"]
HOW = "(give numbers separated by commas, a JSON array, or a .npy or .csv file)"


call = run_captured  # the CLI in-process: (exit status, stdout, stderr)


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.ones(3))
    return buffer.getvalue()


def spec_with(old: str, new: str) -> str:
    assert old in SPEC, old
    return SPEC.replace(old, new)


@dataclass(frozen=True)
class Bad:
    """A bad command line: its files (name -> text or bytes), the line it must print."""

    id: str
    argv: list[str]
    message: str
    files: dict[str, str | bytes] = field(default_factory=dict)


def run_with(spec: str, *extra: str, id: str, message: str, **files) -> Bad:
    """A ``precision run study.toml --out out`` case whose study.toml is ``spec``."""
    argv = ["run", "study.toml", "--out", "out", *QUIET, *extra]
    return Bad(id, argv, message, {"study.toml": spec, **files})


def eval_with(*args: str, id: str, message: str, **files) -> Bad:
    return Bad(id, ["eval", *args], message, files)


E = "precision: error: "

BAD_INPUTS = [
    # ------------------------------------------------------------- study specs (precision run)
    Bad("spec-missing", ["run", "nope.toml"], E + "nope.toml: no such study file"),
    run_with(
        SPEC,
        "--dryrun",
        id="run-option-typo",
        message=re.escape(
            "precision run: error: unrecognized arguments: --dryrun; did you mean --dry-run? "
            "(see precision run --help)"
        ),
    ),
    Bad(
        "option-unknown",
        ["eval", "softmax", "1,2", "--zzz"],
        re.escape(
            "precision eval: error: unrecognized arguments: --zzz (see precision eval --help)"
        ),
    ),
    Bad(
        "spec-folder",
        ["run", "."],
        E + ".: cannot read: not a regular file (a pipe, a device or a folder)",
    ),
    run_with(
        "name = \n",
        id="spec-not-toml",
        message=E + "study.toml: not valid TOML: Invalid value (at line 1, column 8)",
    ),
    Bad(
        "spec-binary",
        ["run", "study.toml"],
        E + "study.toml: cannot read: 'utf-8' codec can't "
        "decode byte 0x89 in position 0: invalid start byte",
        {"study.toml": b"\x89PNG\r\n"},
    ),
    run_with(
        spec_with("seed = 3", "seeds = 3"),
        id="spec-key-typo",
        message=E + "study.toml: seeds: unknown key (did you mean 'seed'?)",
    ),
    run_with(
        spec_with("sizes = [10]", "size = [10]"),
        id="spec-grid-key-typo",
        message=E + "study.toml: grid.size: unknown key (did you mean 'sizes'?)",
    ),
    run_with(
        spec_with('problems = ["softmax"]', 'problems = ["softmx"]'),
        id="spec-problem",
        message=E + "study.toml: problems: unknown name 'softmx' (did you mean 'softmax'?)",
    ),
    run_with(
        spec_with('"float16", "float64"', '"bfloat", "float64"'),
        id="spec-format",
        message=E + "study.toml: formats: unknown name 'bfloat' (did you mean 'bfloat16'?)",
    ),
    run_with(
        SPEC + '\n[variants]\nsoftmax = ["shiftd"]\n',
        id="spec-variant",
        message=E + "study.toml: variants.softmax: unknown name 'shiftd' (did you mean 'shifted'?)",
    ),
    run_with(
        spec_with("seed = 3", "seed = 1.5"),
        id="spec-seed-float",
        message=E + "study.toml: seed: must be a non-negative integer, got 1.5",
    ),
    run_with(
        spec_with("seed = 3", 'seed = "3"'),
        id="spec-seed-string",
        message=E + "study.toml: seed: must be a non-negative integer, got '3'",
    ),
    run_with(
        spec_with("seed = 3", "seed = -3"),
        id="spec-seed-negative",
        message=E + "study.toml: seed: must be a non-negative integer, got -3",
    ),
    run_with(
        spec_with("sizes = [10]", "sizes = [0]"),
        id="spec-size-zero",
        message=E + "study.toml: grid.sizes: must be a non-empty list of positive "
        "integers, got [0]",
    ),
    run_with(
        spec_with("sizes = [10]", "sizes = [10, -5]"),
        id="spec-size-negative",
        message=E + "study.toml: grid.sizes: must be a non-empty list of positive "
        "integers, got [10, -5]",
    ),
    run_with(
        spec_with("sizes = [10]", "sizes = [100000000]"),
        id="spec-size-huge",
        message=E + "study.toml: grid.sizes: sizes above 1,000,000 are not supported, "
        "got 100000000",
    ),
    run_with(
        spec_with("sizes = [10]", "sizes = [10, 10]"),
        id="spec-size-twice",
        message=E + "study.toml: grid.sizes: lists a value twice",
    ),
    run_with(
        spec_with("log10_cond = [0, 2]", "log10_cond = [3, 1]"),
        id="spec-grid-inverted",
        message=E + "study.toml: grid.log10_cond: is empty or inverted: [3, 1]",
    ),
    run_with(
        spec_with("log10_magnitude = [0, 2]", "log10_magnitude = [1, 1]"),
        id="spec-grid-empty",
        message=E + "study.toml: grid.log10_magnitude: is empty or inverted: [1, 1]",
    ),
    run_with(
        spec_with("log10_magnitude = [0, 2]", "log10_magnitude = [0, 400]"),
        id="spec-grid-range",
        message=E + "study.toml: grid.log10_magnitude: decades must lie within "
        "[-100, 100], got [0, 400]",
    ),
    run_with(
        spec_with("log10_cond = [0, 2]", 'log10_cond = "0-2"'),
        id="spec-grid-type",
        message=E + "study.toml: grid.log10_cond: must be two integers [from, to] "
        "(decades), got '0-2'",
    ),
    run_with(
        spec_with("samples_per_cell = 1", "samples_per_cell = 0"),
        id="spec-samples-zero",
        message=E + "study.toml: grid.samples_per_cell: must be a positive integer, got 0",
    ),
    run_with(
        spec_with('["float16", "float64"]', '"float16"'),
        id="spec-formats-type",
        message=E + "study.toml: formats: must be a non-empty list of names",
    ),
    run_with(
        spec_with('name = "tiny"', 'name = "../tiny"'),
        id="spec-name-path",
        message=E + "study.toml: name: must use only letters, digits, '-' and '_', got '../tiny'",
    ),
    run_with(
        SPEC.split("[grid]")[0],
        id="spec-grid-missing",
        message=E + "study.toml: grid: missing or not a table",
    ),
    run_with(
        SPEC + "\n[quick]\nseed = 1\n",
        id="spec-quick-seed",
        message=E + "study.toml: quick.seed: only grid and datasets can be overridden",
    ),
    run_with(
        SPEC,
        "--quick",
        id="spec-quick-missing",
        message=E + "study.toml: quick: --quick needs a [quick] table in the spec (none here)",
    ),
    run_with(
        SPEC + '\n[datasets.mnist]\npath = "nowhere.npy"\nrows = 5\n',
        id="spec-dataset-path",
        message=re.escape(E + "study.toml: datasets.mnist.path: no .npy file at ")
        + ".*nowhere.npy",
    ),
    run_with(
        SPEC + '\n[datasets.mnist]\npath = "evil.npy"\nrows = 5\n',
        id="spec-dataset-pickle",
        message=re.escape(E + "study.toml: datasets.mnist.path: cannot load ")
        + ".*"
        + re.escape(
            "evil.npy as a .npy array: holds pickled Python objects, which are never loaded"
        ),
        **{"evil.npy": npy_bytes(np.array([{"a": 1}, None], dtype=object))},
    ),
    run_with(
        SPEC,
        id="results-of-another-spec",
        message=E + "out holds results of a different spec; use --force to replace them "
        "or --out to write elsewhere",
        **{"out/meta.json": json.dumps({"spec_sha256": "another"})},
    ),
    # ------------------------------------------------------------- values (precision eval)
    eval_with(
        "softmx",
        "1,2",
        id="eval-problem",
        message=E + "unknown problem 'softmx' (did you mean 'softmax'?)",
    ),
    eval_with(
        "softmax",
        "1,abc",
        id="eval-not-a-number",
        message=E + f"VALUES: 'abc' is not a number {HOW}",
    ),
    eval_with(
        "softmax",
        "1,,2",
        id="eval-empty-entry",
        message=E + f"VALUES: entry 2 of '1,,2' is empty {HOW}",
    ),
    eval_with("softmax", "", id="eval-no-values", message=E + f"VALUES: no values given {HOW}"),
    eval_with(
        "softmax",
        "1_000",
        id="eval-underscore",
        message=E + f"VALUES: '1_000' is not a number {HOW}",
    ),
    eval_with(
        "exp",
        "1e400",
        id="eval-beyond-float64",
        message=E + "VALUES: 1e400 is beyond float64's range (largest 1.8e+308); write "
        "inf for an infinite input",
    ),
    eval_with(
        "softmax",
        "[1, 2",
        id="eval-json",
        message=E + "VALUES: not a valid JSON array: Expecting ',' delimiter at column 6",
    ),
    eval_with(
        "softmax",
        "[[1, 2], [3]]",
        id="eval-json-ragged",
        message=E + "VALUES: rows of different lengths (2, 1) in a 2-D input",
    ),
    eval_with(
        "softmax",
        "[[[1]]]",
        id="eval-json-3d",
        message=E + "VALUES: arrays of more than two dimensions are not supported",
    ),
    eval_with(
        "softmax",
        "[1, true]",
        id="eval-json-bool",
        message=E + f"VALUES: true is not a number {HOW}",
    ),
    eval_with(
        "exp", "1,2", id="eval-scalar-shape", message=E + "exp takes one value, got 2 values"
    ),
    eval_with(
        "softmax",
        "[[1, 2], [3, 4]]",
        id="eval-matrix-for-vector",
        message=E + "softmax takes a vector of values, got a 2 x 2 array",
    ),
    eval_with(
        "cross_entropy",
        "[[1, 2], [0, 1], [0, 0]]",
        id="eval-not-2-by-n",
        message=E + "cross_entropy takes a 2 x n array, got a 3 x 2 array",
    ),
    eval_with(
        "cross_entropy",
        "1,2,3",
        id="eval-no-target",
        message=E + "cross_entropy takes logits and a target: give the logits with "
        "--target K (the class index) or a 2 x n JSON array [[logits], [target]]",
    ),
    eval_with(
        "cross_entropy",
        "1,2,3",
        "--target",
        "3",
        id="eval-target-range",
        message=E + "--target: must be a class index from 0 to 2, got '3'",
    ),
    eval_with(
        "cross_entropy",
        "1,2,3",
        "--target",
        "one",
        id="eval-target-word",
        message=E + "--target: must be a class index from 0 to 2, got 'one'",
    ),
    eval_with(
        "softmax",
        "1,2",
        "--target",
        "1",
        id="eval-target-not-taken",
        message=E + "--target: softmax takes no target (--target K gives the target "
        "class of the logits of cross_entropy)",
    ),
    eval_with(
        "softmax",
        "1,2",
        "--formats",
        "float16",
        id="eval-option-typo",
        message=re.escape(
            "precision eval: error: unrecognized arguments: --formats float16; did you mean "
            "--format? (see precision eval --help)"
        ),
    ),
    eval_with(
        "softmax",
        "1,2",
        "--format",
        "float61",
        id="eval-format",
        message=E + "unknown format 'float61' (did you mean 'float64'?)",
    ),
    eval_with(
        "softmax",
        "1,2",
        "--format",
        "float16,",
        id="eval-format-empty",
        message=E + "unknown format '' (valid: bfloat16, float16, float32, float64, "
        "float8_e4m3fn, float8_e5m2)",
    ),
    eval_with(
        "softmax",
        "1,2",
        "--variant",
        "shiftd",
        id="eval-variant",
        message=E + "unknown variant 'shiftd' of softmax (did you mean 'shifted'?)",
    ),
    eval_with(
        "softmax", "missing.npy", id="eval-npy-missing", message=E + "missing.npy: no such file"
    ),
    eval_with(
        "softmax",
        "evil.npy",
        id="eval-npy-pickle",
        message=E + "evil.npy: holds pickled Python objects, which are never loaded",
        **{"evil.npy": npy_bytes(np.array([{"a": 1}], dtype=object))},
    ),
    eval_with(
        "softmax",
        "cube.npy",
        id="eval-npy-3d",
        message=E + "VALUES: arrays of 3 dimensions are not supported",
        **{"cube.npy": npy_bytes(np.ones((2, 2, 2)))},
    ),
    eval_with(
        "softmax",
        "strings.npy",
        id="eval-npy-strings",
        message=E + "strings.npy: must hold real numbers, got dtype <U1",
        **{"strings.npy": npy_bytes(np.array(["a", "b"]))},
    ),
    eval_with(
        "softmax",
        "archive.npy",
        id="eval-npz-as-npy",
        message=E + "archive.npy: holds an .npz archive, not one array",
        **{"archive.npy": npz_bytes()},
    ),
    eval_with(
        "softmax",
        "x.csv",
        id="eval-csv-text",
        message=E + f"x.csv: line 2: 'b' is not a number {HOW}",
        **{"x.csv": "1,2\n3,b\n"},
    ),
    eval_with(
        "softmax",
        "x.csv",
        id="eval-csv-ragged",
        message=E + "x.csv: rows of different lengths in a 2-D input",
        **{"x.csv": "1,2\n3\n"},
    ),
    eval_with(
        "softmax",
        "x.csv",
        id="eval-csv-binary",
        message=E + "x.csv: not a text file (UTF-8)",
        **{"x.csv": b"\xff\xfe\x00"},
    ),
    eval_with(
        "softmax",
        "x.csv",
        id="eval-csv-empty",
        message=E + "x.csv: holds no numbers",
        **{"x.csv": "# nothing\n\n"},
    ),
]


def test_bad_input_table_is_large():
    assert len(BAD_INPUTS) >= 30
    assert len({case.id for case in BAD_INPUTS}) == len(BAD_INPUTS)
    assert sum(case.argv[0] == "run" for case in BAD_INPUTS) >= 15
    assert sum(case.argv[0] == "eval" for case in BAD_INPUTS) >= 15


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.id for case in BAD_INPUTS])
def test_bad_input(case: Bad, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, content in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        (tmp_path / name).write_bytes(data)
    before = tree(tmp_path)
    code, out, err = call(case.argv)
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    (line,) = err.splitlines()
    if case.message.startswith(E):
        assert line == case.message
    else:
        assert re.fullmatch(case.message, line), line
    assert tree(tmp_path) == before  # no partial output, earlier files untouched


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["eval", "softmx", "1"], E + "unknown problem 'softmx' (did you mean 'softmax'?)"),
        (["run", "nope.toml"], E + "nope.toml: no such study file"),
    ],
)
def test_bad_input_through_a_subprocess(tmp_path: Path, argv, line):
    result = subprocess.run(
        [sys.executable, "-m", "precision", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "eval", "softmx", "1"],
        ["eval", "softmx", "1", "--debug"],
        ["run", "nope.toml", "--debug"],
    ],
)
def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = call(argv)
    assert code == 2
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1].startswith(E)


def test_internal_error_is_one_line_and_exit_1(monkeypatch):
    import precision.run.evaluate  # noqa: F401  (the module, for monkeypatching)

    module = sys.modules["precision.run.evaluate"]

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(module, "evaluate", broken)
    code, out, err = call(["eval", "softmax", "1,2"])
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "precision: internal error: RuntimeError: boom\\nsecond line (rerun with --debug)"
    ]
    code, _, err = call(["--debug", "eval", "softmax", "1,2"])
    assert code == 1
    assert "Traceback (most recent call last):" in err and 'raise RuntimeError("boom' in err
    assert err.splitlines()[-1] == "precision: internal error: RuntimeError: boom\\nsecond line"


def test_interrupt_exits_130(monkeypatch):
    module = sys.modules["precision.run.evaluate"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "evaluate", interrupted)
    code, _, err = call(["eval", "softmax", "1,2"])
    assert code == 130 and err == "precision: interrupted\n"


def test_a_closed_pipe_is_not_an_error(monkeypatch):
    """``precision eval ... | head -1``: the reader went away; no message, SIGPIPE's status."""
    module = sys.modules["precision.run.evaluate"]

    def reader_gone(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(module, "render_text", reader_gone)
    code, _, err = call(["eval", "exp", "1", "--format", "float16"])
    assert (code, err) == (141, "")


# ------------------------------------------------------------------ numerical faults in a run


def test_numpy_warnings_are_captured_not_printed(tmp_path: Path):
    """Overflow, invalid operations and division by zero by the thousand: none reach stderr."""
    result = subprocess.run(
        [sys.executable, "-W", "always::RuntimeWarning", "-m", "precision", "eval", "softmax",
         "1000,-1000,1e4,-1e4,0", "--variant", "naive,shifted"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "nan" in result.stdout


def test_run_with_overflowing_inputs_records_outcomes(tmp_path: Path, recwarn):
    """A study whose inputs overflow float16 finishes; faults are rows, not warnings."""
    spec = tmp_path / "study.toml"
    spec.write_text(spec_with("log10_magnitude = [0, 2]", "log10_magnitude = [98, 100]"))
    code, out, err = call(["run", str(spec), "--out", str(tmp_path / "out"), *QUIET])
    assert code == 0, err
    assert [w for w in recwarn if issubclass(w.category, RuntimeWarning)] == []


# ------------------------------------------------------------------ a full disk, a read-only folder


@pytest.fixture
def earlier_results(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A finished run in out/ (its files' bytes), to be kept intact by a failing rerun."""
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    code, _, err = call(["run", str(spec), "--out", str(out), *QUIET])
    assert code == 0, err
    return spec, out, tree(out)


def test_full_disk_leaves_earlier_results_intact(earlier_results, monkeypatch):
    """ENOSPC while the rerun writes its summary: nothing is replaced, no temporary file."""
    spec, out, before = earlier_results
    staging: list[str] = []
    real_mkstemp, real_fsync = store.files.tempfile.mkstemp, os.fsync

    def mkstemp(*args, **kwargs):
        staging.append(kwargs.get("prefix", ""))
        return real_mkstemp(*args, **kwargs)

    def fsync(fd):
        if staging and staging[-1].startswith(".summary.csv."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(store.files.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fsync", fsync)
    code, out_text, err = call(["run", str(spec), "--out", str(out), *QUIET])
    monkeypatch.undo()
    assert (code, out_text) == (2, "")
    assert err.splitlines() == [
        f"{E}cannot write {out}/summary.csv: No space left on device; earlier results are unchanged"
    ]
    after = tree(out)
    assert not [name for name in after if name.endswith(".tmp")]
    assert {k: v for k, v in after.items() if not k.startswith(".parts")} == before
    # The finished chunks wait in .parts/: a rerun with space resumes from them.
    code, text, _ = call(["run", str(spec), "--out", str(out), *QUIET])
    assert code == 0 and "resumed" in text


def test_full_disk_from_the_start_leaves_nothing(tmp_path: Path, monkeypatch):
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC)

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    code, _, err = call(["run", str(spec), "--out", str(tmp_path / "out"), *QUIET])
    monkeypatch.undo()
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith(f"{E}cannot write {tmp_path}/out/") and "No space left" in line
    assert tree(tmp_path) == {"study.toml": SPEC.encode()}


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: a read-only mode does not stop root from writing",
)
def test_read_only_output_folder(earlier_results):
    spec, out, before = earlier_results
    os.chmod(out, 0o555)
    try:
        code, _, err = call(["run", str(spec), "--out", str(out), *QUIET, "--force"])
    finally:
        os.chmod(out, 0o755)
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith(f"{E}cannot write {out}/") and "Permission denied" in line
    assert tree(out) == before


# ------------------------------------------------------------------ the README section


def test_readme_generated_sections_are_current():
    """The "Common errors" section and the eval example are what `make docs-errors` would
    write now: the messages and output the code prints."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docs_errors.updated_readme(readme) == readme


def test_every_readme_error_line_is_one_error_line():
    body = docs_errors.section()
    messages = [line for line in body.splitlines() if line.startswith("precision:")]
    assert len(messages) == len(docs_errors.CASES)
    assert all(line.startswith(E) for line in messages)


# ------------------------------------------------------------------ fuzzing


def toml_value(value) -> str:
    """A TOML value for str / bool / int / float / date / list / dict (as inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(table: dict) -> str:
    return "".join(
        f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}\n" for k, v in table.items()
    )


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NAMES = st.sampled_from(
    [*PROBLEMS, *STUDY_FORMATS, "softmx", "naive", "shifted", "mnist", "synthetic", "x y"]
)
SCALARS = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | TEXT
    | NAMES
    | st.dates()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT | NAMES, inner, max_size=3),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "name", "description", "seed", "formats", "problems", "variants", "variants.softmax",
        "grid", "grid.log10_cond", "grid.log10_magnitude", "grid.sizes", "grid.samples_per_cell",
        "grid.problem_samples", "grid.problem_samples.softmax", "datasets", "datasets.mnist",
        "datasets.mnist.path", "datasets.mnist.rows", "quick", "quick.grid", "quick.grid.sizes",
        "quick.datasets", "quick.datasets.mnist", "quick.seed", "engine", "shared_inputs",
        "sedd", "grid.size",
    ]
)  # fmt: skip
BASE = {
    "name": "fuzz",
    "formats": ["float16", "float64"],
    "problems": ["softmax", "exp"],
    "grid": {"log10_cond": [0, 2], "log10_magnitude": [0, 2], "sizes": [4], "samples_per_cell": 1},
}


@st.composite
def spec_dicts(draw) -> dict:
    """The base spec with a few keys set (or deleted) to random TOML values."""
    raw = json.loads(json.dumps(BASE))
    for key in draw(st.lists(KEYS, min_size=1, max_size=4)):
        *parents, last = key.split(".")
        table = raw
        for part in parents:
            if not isinstance(table.get(part), dict):
                table[part] = {}
            table = table[part]
        if draw(st.booleans()) and last in table:
            del table[last]
        else:
            table[last] = draw(VALUES)
    return raw


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_clear(exc: SpecError, where: str) -> None:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{where}: "), message


@FUZZ
@given(raw=spec_dicts(), quick=st.booleans())
def test_random_toml_documents_give_a_spec_or_a_spec_error(tmp_path_factory, raw, quick):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "study.toml"
    path.write_text(toml_document(raw), encoding="utf-8")
    try:
        spec = load_spec(path, quick=quick)
    except SpecError as exc:
        assert_clear(exc, str(path))
        event("spec error")
    else:
        assert isinstance(spec, StudySpec)
        event("valid spec")
    try:
        parse_spec(raw, quick=quick)
    except SpecError as exc:
        assert_clear(exc, "<spec>")


@FUZZ
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_give_a_spec_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "study.toml"
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_clear(info.value, str(path))


FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
NUMBER_TEXT = (
    FLOATS.map(repr)
    | st.integers(-(10**400), 10**400).map(str)
    | st.sampled_from(["nan", "-inf", "Infinity", "1e400", "1e-400", "-0", ".5", "5.", "1_0"])
)
SEPARATED = st.lists(NUMBER_TEXT, min_size=1, max_size=6).flatmap(
    lambda parts: st.sampled_from([",", ", ", " ", ",,"]).map(lambda sep: sep.join(parts))
)
JSON_ARRAYS = st.recursive(
    FLOATS.filter(np.isfinite) | st.sampled_from(["nan", "inf", True, None]),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
).map(lambda v: json.dumps(v))
ODD_TEXT = st.text(alphabet='0123456789.,-+eEinfa []"xnull', max_size=20) | st.text(max_size=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    problem=st.sampled_from([*PROBLEMS, "softmx"]),
    text=SEPARATED | JSON_ARRAYS | ODD_TEXT,
    fmt=st.sampled_from(STUDY_FORMATS),
    target=st.none() | st.sampled_from(["0", "1", "7", "x"]),
)
def test_random_values_give_a_result_or_a_clear_error(problem, text, fmt, target):
    argv = ["eval", "--format", fmt, problem]
    if target is not None:
        argv = [*argv, "--target", target]
    code, out, err = call([*argv, "--", text])
    event(f"exit status {code}")
    assert code in (0, 2), err
    if code == 2:
        (line,) = err.splitlines()
        assert line.startswith(E) and out == ""
    else:
        assert err == "" and out.startswith(f"{problem} of ")


def _shaped(problem, values: np.ndarray) -> np.ndarray:
    """The values as an input of ``problem``: its first values in its shape (logits get a
    one-hot target row); unchanged when there are too few."""
    from precision.run.evaluate import input_pattern

    if input_pattern(problem) == ("2", "n"):
        return np.stack([values, np.eye(values.size)[0]])
    shape = tuple(problem.input_shape(values.size))
    size = int(np.prod(shape))
    return values[:size].reshape(shape) if size <= values.size else values


@settings(max_examples=60, deadline=None)
@given(
    problem=st.sampled_from(list(PROBLEMS)),
    values=st.lists(FLOATS, min_size=1, max_size=5),
)
def test_random_floats_through_evaluate(problem, values):
    """Any float64 values (any magnitude, NaN, inf) in the problem's shape give rows; too few
    values an InputError; nothing else may come out."""
    from precision.core.values import InputError
    from precision.run.evaluate import evaluate

    x = _shaped(PROBLEMS[problem], np.array(values))
    fits = x.shape == tuple(PROBLEMS[problem].input_shape(x.shape[-1]))
    try:
        table = evaluate(problem, x)
    except InputError as exc:
        assert "\n" not in str(exc)
        if fits:  # a well-shaped input may be refused only by the problem's own domain check
            check = PROBLEMS[problem].check_input
            assert check is not None, exc
            with pytest.raises(ValueError):
                check(x)
        return
    own_variants = PROBLEMS[problem].variants
    members = sum(len(own_variants[name].expand()) for name in DEFAULT_VARIANTS[problem])
    assert len(table) == len(STUDY_FORMATS) * members  # a family runs each value of its grid
    finite = np.isfinite(x).all()
    # A library variant may refuse the format (unsupported) or raise (error: scipy's logsumexp
    # on bfloat16 with ml_dtypes 0.7) whatever the values; the project's own kernels never raise.
    own = table[table["library"] == "numpy"]
    assert "error" not in set(own["outcome"])
    assert set(table["outcome"]) <= (
        {"ok", "exact_zero", "underflow", "overflow", "nan", "input_overflow"}
        | {"no_convergence", "unsupported", "undefined", "error"}  # iterative, library, singular
        if finite
        else {"input_nan", "input_inf", "unsupported", "error"}
    )
