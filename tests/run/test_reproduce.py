"""Reproducing a stored study: the spec in meta.json suffices, a rerun gives the same table byte
for byte on another executor, and a difference is reported by row, column and float64 ulps.

(That two runs of one spec give byte-identical tables whatever the executor or the number of
workers is asserted in tests/run/test_execute.py; here the rerun starts from meta.json alone.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from precision import store
from precision.cli import run_captured
from precision.run.reproduce import compare_tables
from precision.run.spec import parse_spec

TINY = """\
name = "tiny"
seed = 5
formats = ["float16", "bfloat16", "float64"]
problems = ["softmax", "cross_entropy"]

[grid]
log10_cond = [0, 2]
log10_magnitude = [0, 2]
sizes = [10]
samples_per_cell = 1

[datasets.logits]
path = "logits.npy"
rows = 6

[quick]
grid = { samples_per_cell = 1 }
"""


call = run_captured  # the CLI in-process: (exit status, stdout, stderr)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A tiny study (synthetic cells and a small data set of logits), run serially."""
    folder = tmp_path_factory.mktemp("reproduce")
    logits = np.random.default_rng(0).normal(scale=30.0, size=(20, 10))
    np.save(folder / "logits.npy", logits)
    (folder / "tiny.toml").write_text(TINY)
    out = folder / "out"
    argv = ["run", str(folder / "tiny.toml"), "--quick", "--out", str(out)]
    code, _, err = call([*argv, "--executor", "serial", "--no-plots", "--no-progress"])
    assert code == 0, err
    return out


def test_meta_holds_what_a_rerun_needs(stored):
    meta = json.loads((stored / "meta.json").read_text())
    spec = parse_spec(meta["spec"], source=Path(meta["spec_path"]))
    assert store.spec_fingerprint(spec) == meta["spec_sha256"]
    assert meta["seed"] == spec.seed == 5
    assert meta["datasets"]["logits"]["sha256"]
    assert {"versions", "machine", "git_commit", "flush_to_zero", "code_sha256"} <= set(meta)
    lock = store.LOCK_FILE  # a source checkout: the lock is recorded beside the versions
    assert meta["lock"]["sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert meta["lock"]["file"] == lock.name and isinstance(meta["lock"]["differs"], list)
    table_bytes = (stored / "errors.parquet").read_bytes()
    assert meta["table_sha256"] == hashlib.sha256(table_bytes).hexdigest()


def test_a_rerun_on_another_executor_is_identical(stored, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the relative spec path in meta.json must not matter
    code, out, err = call(["reproduce", str(stored), "--executor", "process", "--workers", "2"])
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"{stored}: identical: ")
    assert "byte for byte" in out.splitlines()[0]


def test_a_lock_difference_is_named(stored, tmp_path, monkeypatch):
    """A run made under another lock (its recorded sha256 edited here) is named by reproduce,
    and so is an environment whose versions differ from its own lock."""
    folder = tmp_path / "copy"
    shutil.copytree(stored, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["lock"]["sha256"] = "0" * 64
    (folder / "meta.json").write_text(json.dumps(meta))
    code, out, err = call(["reproduce", str(folder), "--executor", "serial"])
    assert code == 0, err  # the table itself is identical
    assert f"lock {store.LOCK_FILE.name} differs: sha256 000000000000 at the run" in out

    fake = tmp_path / "lock.txt"
    fake.write_text(f"# a lock\nnumpy=={np.__version__}\nno-such-distribution==1.0\n")
    monkeypatch.setattr(store.meta, "LOCK_FILE", fake)
    now = store.lock_provenance()
    assert now["sha256"] == hashlib.sha256(fake.read_bytes()).hexdigest()
    assert now["differs"] == ["no-such-distribution missing (lock 1.0)"]
    code, out, err = call(["reproduce", str(folder), "--executor", "serial"])
    assert "this environment differs from its lock: no-such-distribution missing" in out


def test_no_lock_file_is_recorded_as_none(tmp_path):
    assert store.lock_provenance(tmp_path / "absent.txt") is None


def test_a_changed_table_is_reported_by_row_column_and_ulps(stored, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(stored, copy)
    table = pd.read_parquet(copy / "errors.parquet")
    finite = table.index[np.isfinite(table["rel_error"]) & (table["rel_error"] > 0)]
    row = finite[0]
    value = table.loc[row, "rel_error"]
    table.loc[row, "rel_error"] = np.nextafter(np.nextafter(np.nextafter(value, 1), 1), 1)
    table.loc[finite[1], "outcome"] = "nan"
    table = table.drop(index=finite[2])
    table.to_parquet(copy / "errors.parquet", index=False)
    code, out, _ = call(["reproduce", str(copy), "--executor", "serial"])
    assert code == 3
    assert "differs: 2 of" in out and "1 only in the rerun" in out
    assert "rel_error: 1 rows, up to 3 float64 ulps apart" in out
    assert "outcome: 1 rows" in out


def test_compare_tables_matches_rows_by_their_key(stored):
    table = pd.read_parquet(stored / "errors.parquet")
    shuffled = table.sample(frac=1.0, random_state=1)
    diff = compare_tables(table, shuffled)
    assert not diff.byte_identical and diff.identical  # same rows in another order
    assert diff.lines() == [f"identical values in all {len(table)} rows (the file bytes differ)"]
    assert compare_tables(table, table.copy()).byte_identical


def test_a_changed_data_set_is_refused(stored, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(stored, copy)
    data = tmp_path / "logits.npy"
    np.save(data, np.zeros((20, 10)))
    (tmp_path / "tiny.toml").write_text(TINY)  # the spec moved, beside other data
    meta = json.loads((copy / "meta.json").read_text())
    meta["spec_path"] = meta["spec_file"] = str(tmp_path / "tiny.toml")
    (copy / "meta.json").write_text(json.dumps(meta))
    code, out, err = call(["reproduce", str(copy)])
    assert code == 2 and out == ""
    assert err.strip() == (
        f"precision: error: data set logits at {data} changed since the run (its sha256 "
        "differs); the rerun would not read the same inputs"
    )


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no such results folder"),
        (lambda d: d.mkdir(), "no meta.json here (not a folder written by precision run)"),
        (
            lambda d: d.mkdir() or (d / "meta.json").write_text(json.dumps({"study": "x"})),
            "meta.json: holds no spec",
        ),
    ],
)
def test_bad_folders_are_one_line_and_exit_2(tmp_path, setup, message):
    folder = tmp_path / "results"
    setup(folder)
    code, out, err = call(["reproduce", str(folder)])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("precision: error: ") and message in lines[0]
