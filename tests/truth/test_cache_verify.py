"""``precision cache verify``: a forged record that passes its checksum is caught by
recomputing it (issue 16, item 1).

A record's checksum catches damage and naive edits; a forger who recomputes it is caught only
by recomputing the ground truth from the problem, input, formats and engine the record holds.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from tiny_specs import TINY

from precision import store
from precision.cli import run_captured
from precision.truth.verify import GOOD, MISMATCH, STALE, UNVERIFIABLE, check_record

CACHE_FILE = "ground_truth.sqlite"  # in the --cache folder (see precision.cli._cache_file)


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Path:
    """A cache folder filled by a serial run of the tiny spec (16 records)."""
    folder = tmp_path_factory.mktemp("filled")
    (folder / "tiny.toml").write_text(TINY)
    argv = ["run", str(folder / "tiny.toml"), "--out", str(folder / "out"), "--no-plots"]
    argv += ["--no-progress", "--executor", "serial", "--cache", str(folder / "cache")]
    code, _, err = run_captured(argv)
    assert code == 0, err
    return folder / "cache"


@pytest.fixture
def cache(filled: Path, tmp_path: Path) -> Path:
    """A copy of the filled cache folder that a test may edit."""
    return Path(shutil.copytree(filled, tmp_path / "cache"))


def verify(cache: Path, *options: str) -> tuple[int, str, str]:
    return run_captured(["cache", "verify", "--cache", str(cache), *options])


def records(cache: Path) -> dict[str, dict]:
    with sqlite3.connect(cache / CACHE_FILE) as connection:
        rows = connection.execute("SELECT key, record FROM truths").fetchall()
    return {key: json.loads(text)["record"] for key, text in rows}


def forge(cache: Path, key: str, record: dict) -> None:
    """Store ``record`` under ``key`` with a valid checksum, as a forger who read the code
    would: the cache itself accepts it."""
    connection = sqlite3.connect(cache / CACHE_FILE, isolation_level=None)
    connection.execute(
        "UPDATE truths SET record = ? WHERE key = ?", (store.cache._seal(key, record), key)
    )
    connection.close()
    assert store.GroundTruthCache(cache / CACHE_FILE).get(key) == record


def test_a_cache_filled_by_a_run_verifies(cache: Path):
    code, out, err = verify(cache)
    assert (code, err) == (0, "")
    assert out == "verified 16 records: 0 mismatched, 0 not verifiable (older format)\n"


def test_the_sample_is_drawn_by_the_seed(cache: Path):
    path = cache / CACHE_FILE
    first = [key for key, _ in store.GroundTruthCache(path).sample(4, seed=1)]
    assert first == [key for key, _ in store.GroundTruthCache(path).sample(4, seed=1)]
    assert first != [key for key, _ in store.GroundTruthCache(path).sample(4, seed=2)]
    code, out, _ = verify(cache, "--sample", "5", "--seed", "7")
    assert (code, out) == (0, "verified 5 records: 0 mismatched, 0 not verifiable (older format)\n")


def test_a_forged_value_with_a_valid_checksum_is_a_mismatch(cache: Path):
    key, record = next(iter(records(cache).items()))
    forge(cache, key, record | {"hi": [2 * v for v in record["hi"]]})
    code, out, err = verify(cache)
    assert (code, err) == (3, "")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{key}: ") and "hi/lo/exp" in lines[0]
    assert lines[1] == "verified 16 records: 1 mismatched, 0 not verifiable (older format)"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"cond": "double"}, "in cond"),
        ({"rounded": "negate"}, "in rounded"),
        ({"prec": 4096}, "in prec"),
        ({"input_f64": "shift"}, "its key does not match"),
        ({"input_f64": "not base64!"}, "malformed record"),
        ({"input_f64": "AAAA"}, "malformed record"),  # 3 bytes: no whole float64
        ({"shape": [3, -1]}, "malformed record"),
    ],
)
def test_every_forged_field_is_caught(cache: Path, edit: dict, says: str):
    key, record = next(iter(records(cache).items()))
    forged = dict(record)
    for name, how in edit.items():
        if how == "double":
            forged[name] = 2 * record[name]
        elif how == "negate":
            forged[name] = {f: [-v for v in values] for f, values in record[name].items()}
        elif how == "shift":
            shifted = np.frombuffer(base64.b64decode(record[name]), "<f8") + 1
            forged[name] = base64.b64encode(shifted.tobytes()).decode()
        else:
            forged[name] = how
    assert check_record(key, forged)[0] == MISMATCH
    assert says in check_record(key, forged)[1]


def test_records_without_their_input_are_counted_not_verifiable(cache: Path):
    key, record = next(iter(records(cache).items()))
    forge(cache, key, {k: v for k, v in record.items() if k not in ("problem", "input_f64")})
    code, out, _ = verify(cache)
    assert code == 0
    assert out == "verified 16 records: 0 mismatched, 1 not verifiable (older format)\n"


def test_records_of_older_code_with_a_list_of_floats_still_verify(cache: Path):
    """Records written before inputs were stored as bytes hold ``input``, a list of floats:
    they still verify, and a forged value among them is still caught."""
    for key, record in records(cache).items():
        older = {k: v for k, v in record.items() if k != "input_f64"}
        older["input"] = np.frombuffer(base64.b64decode(record["input_f64"]), "<f8").tolist()
        forge(cache, key, older)
    assert verify(cache) == (
        0,
        "verified 16 records: 0 mismatched, 0 not verifiable (older format)\n",
        "",
    )
    key, record = next(iter(records(cache).items()))
    assert "input" in record and "input_f64" not in record
    assert check_record(key, record | {"input": [v + 1 for v in record["input"]]})[0] == MISMATCH


def test_a_record_holds_its_input_bit_for_bit(cache: Path):
    """The stored bytes give back the input the key was made from (checked through the key,
    which hashes the input's float64 bytes)."""
    for key, record in records(cache).items():
        assert check_record(key, record) == (GOOD, "")
        x = np.frombuffer(base64.b64decode(record["input_f64"]), "<f8")
        assert x.size == np.prod(record["shape"]) and np.isfinite(x).all()


def test_a_record_of_other_reference_code_is_stale_not_wrong(cache: Path):
    key, record = next(iter(records(cache).items()))
    assert check_record(key, record) == (GOOD, "")
    # The same record under the key other code gave it: this code never looks it up.
    assert check_record("0" * 64, record | {"code": "other"})[0] == STALE
    assert check_record(key, None)[0] == UNVERIFIABLE


def test_a_missing_cache_is_one_line_and_exit_2(tmp_path: Path):
    code, out, err = verify(tmp_path / "nothing")
    assert (code, out) == (2, "")
    assert (
        err == f"precision: error: no ground-truth cache at {tmp_path / 'nothing' / CACHE_FILE}\n"
    )
    assert not (tmp_path / "nothing").exists()  # verifying creates nothing


def test_a_garbage_cache_is_one_line_and_exit_2(tmp_path: Path):
    (tmp_path / CACHE_FILE).write_bytes(b"not a database" * 100)
    code, out, err = verify(tmp_path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith(f"precision: error: cannot read the ground-truth cache {tmp_path}")
