"""Executors give identical tables; a killed run resumes to the same table; outputs are guarded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from tiny_specs import FOUR_FORMATS as TINY  # eight chunks, sixteen inputs

import precision.run.execute as execute_module
from precision import store
from precision.cli import main, run_captured
from precision.run.execute import ExecutorError, execute
from precision.run.spec import load_spec, parse_spec
from precision.run.study import chunks, run, run_chunk

# Slow enough (about 12 chunks of a few tenths of a second each) to be killed in the middle.
KILLABLE = """
name = "killable"
seed = 11
formats = ["float16", "float32", "float64"]
problems = ["softmax", "log_softmax"]
chunk_elements = 1
[grid]
log10_cond = [0, 2]
log10_magnitude = [0, 3]
sizes = [300]
samples_per_cell = 3
"""


def tiny_spec():
    return parse_spec(json.loads(json.dumps(TINY)))


@pytest.fixture(scope="module")
def reference_bytes() -> bytes:
    return store.table_bytes(run(tiny_spec()))


@pytest.mark.parametrize(
    ("executor", "workers"), [("serial", None), ("process", 1), ("process", 2), ("dask", 2)]
)
def test_every_executor_gives_the_same_table(tmp_path, reference_bytes, executor, workers):
    table, report = execute(tiny_spec(), tmp_path, executor=executor, workers=workers)
    assert store.table_bytes(table) == reference_bytes
    assert report.rows == len(table) and report.resumed == 0
    assert 0 < report.ground_truth_seconds <= report.compute_seconds


def test_unknown_executor_and_unreachable_scheduler(tmp_path, monkeypatch):
    # Dask retries a refused connection until its timeout: 2 s says the same as the 15 s default.
    monkeypatch.setattr(execute_module, "SCHEDULER_TIMEOUT", 2.0)
    with pytest.raises(ExecutorError, match="unknown executor"):
        execute(tiny_spec(), tmp_path, executor="threads")
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler"):
        execute(tiny_spec(), tmp_path, executor="dask", scheduler="tcp://127.0.0.1:9")


def test_resume_skips_finished_chunks(tmp_path, reference_bytes):
    spec = tiny_spec()
    plan = chunks(spec)
    parts = store.Parts(tmp_path, spec)
    first = run(spec)
    for chunk in plan[:3]:  # as if an earlier run had finished these three chunks
        result = run_chunk(spec, chunk)
        parts.write(chunk.id, result.table, {"seconds": 1.0, "ground_truth_seconds": 0.5})
    table, report = execute(spec, tmp_path, executor="serial")
    assert report.resumed == 3
    assert store.table_bytes(table) == reference_bytes == store.table_bytes(first)


def test_parts_of_other_code_are_discarded(tmp_path, reference_bytes):
    spec = tiny_spec()
    parts = store.Parts(tmp_path, spec)
    parts.write("softmax-n10-c0-m0", run(spec).head(3), {})  # rows that are not this chunk's
    manifest = tmp_path / ".parts" / "manifest.json"
    stale = json.loads(manifest.read_text()) | {"code_sha256": "older code"}
    manifest.write_text(json.dumps(stale))
    table, report = execute(spec, tmp_path, executor="serial")
    assert report.discarded == 1 and report.resumed == 0
    assert store.table_bytes(table) == reference_bytes


def test_parts_of_another_spec_are_refused_unless_forced(tmp_path):
    store.Parts(tmp_path, tiny_spec())
    other = parse_spec(json.loads(json.dumps(TINY)) | {"seed": 8})
    with pytest.raises(store.OutputConflict, match="different spec"):
        execute(other, tmp_path, executor="serial")
    table, _ = execute(other, tmp_path, executor="serial", force=True)
    assert len(table) > 0


def test_results_of_another_spec_are_not_overwritten(tmp_path, capsys):
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(KILLABLE.replace("sizes = [300]", "sizes = [10]"))
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                str(spec_file),
                "--out",
                str(out),
                "--no-plots",
                "--no-progress",
                "--executor",
                "serial",
            ]
        )
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    spec_file.write_text(spec_file.read_text().replace("seed = 11", "seed = 12"))
    code = main(["run", str(spec_file), "--out", str(out), "--no-plots", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "different spec" in err[0] and "--force" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (
        main(
            [
                "run",
                str(spec_file),
                "--out",
                str(out),
                "--no-plots",
                "--no-progress",
                "--executor",
                "serial",
                "--force",
            ]
        )
        == 0
    )


def _argv(spec_file: Path, out: Path) -> list[str]:
    """``precision run`` of ``spec_file`` into ``out``, serial, without plots or progress."""
    return [
        "run",
        str(spec_file),
        "--out",
        str(out),
        "--executor",
        "serial",
        "--no-plots",
        "--no-progress",
    ]


def _cli(spec_file: Path, out: Path) -> list[str]:
    """The same command as a subprocess (one that can be killed)."""
    return [sys.executable, "-m", "precision", *_argv(spec_file, out)]


def test_a_killed_run_resumes_to_the_uninterrupted_table(tmp_path):
    spec_file = tmp_path / "killable.toml"
    spec_file.write_text(KILLABLE)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # Only the run to kill needs a process of its own: the uninterrupted run and the resumed
    # one run in this process (no interpreter start-up), the same command with the same spec,
    # seed and code, so the same table in any process.
    code, _, err = run_captured(_argv(spec_file, whole))
    assert code == 0, err

    victim = subprocess.Popen(
        _cli(spec_file, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while len(list((killed / ".parts").glob("*.parquet"))) < 2:
        assert victim.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    finished = len(list((killed / ".parts").glob("*.parquet")))
    total = len(chunks(load_spec(spec_file)))
    assert 2 <= finished < total
    assert not (killed / "errors.parquet").exists()
    # Every visible part is complete: it reads back with the chunk's rows.
    for part in (killed / ".parts").glob("*.parquet"):
        assert len(pd.read_parquet(part)) > 0

    # The same command again, here too: all it resumes from is on disk.
    code, out, err = run_captured(_argv(spec_file, killed))
    assert code == 0, err
    assert f"resumed {finished} of {total} chunks" in out
    assert (killed / "errors.parquet").read_bytes() == (whole / "errors.parquet").read_bytes()
    assert not (killed / ".parts").exists()


def test_cached_ground_truth_gives_the_same_table(tmp_path, reference_bytes):
    cache = store.GroundTruthCache(tmp_path / "gt.sqlite")
    first, report_first = execute(tiny_spec(), tmp_path / "a", executor="serial", cache=cache)
    filled = len(cache)
    second, report_second = execute(tiny_spec(), tmp_path / "b", executor="process", cache=cache)
    assert filled > 0 and len(cache) == filled  # the second run added nothing
    assert report_first.ground_truth_seconds > 0 and report_second.ground_truth_seconds == 0
    assert store.table_bytes(first) == store.table_bytes(second) == reference_bytes


def test_shared_inputs_give_every_format_the_same_input_and_one_ground_truth(tmp_path):
    raw = json.loads(json.dumps(TINY)) | {"shared_inputs": True}
    spec = parse_spec(raw)
    cache = store.GroundTruthCache(tmp_path / "gt.sqlite")
    table, _ = execute(spec, tmp_path / "out", executor="serial", cache=cache)
    per_input = table.groupby(["problem", "n", "cell_log10_cond", "cell_log10_magnitude", "sample"])
    # every format saw the same input: same magnitude and condition number in every row
    assert (per_input["magnitude"].nunique() == 1).all()
    assert (per_input["cond"].nunique() == 1).all()
    inputs = per_input.ngroups
    assert len(cache) == inputs  # one ground truth per input, serving four formats
    unshared, _ = execute(tiny_spec(), tmp_path / "unshared", executor="serial")
    assert len(unshared) == len(table)
