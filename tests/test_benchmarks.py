"""The benchmarks (benchmarks/, ``make bench``) run: their smallest pieces, in seconds.

No timing is asserted here (speed goals live in the benchmark's output); what is asserted is
that each piece runs end to end and that what it checks holds: the naive baseline makes the
study's rows with the study's errors, and executors agree.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from precision.run.spec import load_spec, parse_spec
from precision.run.study import chunks, run_chunk

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is beside the package, not in it
    sys.path.insert(0, str(ROOT))
baseline = importlib.import_module("benchmarks.baseline")
bench = importlib.import_module("benchmarks.bench")
results = importlib.import_module("benchmarks.results")
scaling = importlib.import_module("benchmarks.scaling")
truth_rates = importlib.import_module("benchmarks.truth_rates")
versus_script = importlib.import_module("benchmarks.versus_script")

TINY = {
    "name": "tiny",
    "seed": 7,
    "formats": ["float16", "float32"],
    "problems": ["softmax"],
    "grid": {"log10_cond": [0, 1], "log10_magnitude": [0, 2], "sizes": [10], "samples_per_cell": 1},
}


def test_compare_finds_a_changed_row():
    spec = load_spec(results.STUDY, quick=True)
    chunk = next(c for c in chunks(spec) if c.problem == "softmax" and c.n == 10)
    table = run_chunk(spec, chunk).table
    assert baseline.compare(table, table.copy()).empty
    changed = table.copy()
    changed.loc[2, "ulps"] = changed.loc[2, "ulps"] + 1
    changed.loc[3, "rel_error"] = changed.loc[3, "rel_error"] * (1 + 1e-6) + 1e-20
    found = baseline.compare(table, changed)
    assert list(found["differs_in"]) == ["ulps", "rel_error"]
    assert not found["within_accuracy"].any()


def test_part_1_through_main_writes_the_tables(tmp_path):
    """Part 1 on 2 chunks of the quick study, through the command line: the baseline's rows
    are the study's, any error it gets wrong the referee settles for the study."""
    out = tmp_path / "bench"
    assert bench.main(["--quick", "--parts", "1", "--every", "150", "--out", str(out)]) == 0
    table = pd.read_csv(out / "benchmarks.csv")
    assert list(table.columns) == results.COLUMNS
    metrics = dict(zip(table["metric"], table["value"], strict=False))
    assert float(metrics["rows"]) > 0
    assert float(metrics["warm table identical to cold"]) == 1
    assert "## 1." in (out / "benchmarks.md").read_text()
    if (out / "disagreements.csv").exists():
        found = pd.read_csv(out / "disagreements.csv")
        beyond = found[~found["within_accuracy"]]
        assert set(beyond["referee_agrees_with"]) <= {"study", "study and baseline"}


def test_ground_truth_throughput_runs():
    res = results.Results([])
    table = truth_rates.gt_throughput(
        res, problems=("exp", "softmax"), sizes=(10,), seconds=0.01, inputs=1
    )
    assert set(table["engine"]) == {"arb", "mpmath", "mpmath 256", "arb eval 113"}
    assert (table["truths_per_s"] > 0).all() and (
        table["certified"][table["engine"] == "arb"] == 1
    ).all()
    assert "## 2." in res.markdown()


def test_scaling_runs_in_subprocesses():
    res = results.Results([])
    table = scaling.scaling(res, inputs=(8,), memory_rows=64)
    assert list(table["mode"]) == ["run", "execute"]
    assert (table["rows"] > 0).all() and (table["maxrss_mib"] > 0).all()


def test_parallel_executors_agree():
    res = results.Results([])
    spec = parse_spec(TINY)
    table = scaling.parallel(res, spec, configs=(("serial", 1), ("process", 1)))
    assert table["same_table"].all() and (table["rows"] > 0).all()


def test_study_vs_script_records_well_formed_lines():
    """Part 5 at a toy size (n = 10, a 2 x 2 grid, one sample per cell): the script makes the
    study's rows with the study's errors, and each recorded rate and ratio is consistent."""
    res = results.Results([])
    grid = {"log10_cond": [0, 2], "log10_magnitude": [0, 2]}
    table = versus_script.study_vs_script(res, sizes=((10, 1),), grid=grid)
    assert table["same_rows"].all() and (table["differing_errors"] == 0).all()
    lines = res.frame()
    assert set(lines["part"]) == {"5"} and set(lines["setting"]) == {"n=10"}
    value = dict(zip(lines["metric"], lines["value"], strict=True))
    study_rate, script_rate = value["study rows per second"], value["script rows per second"]
    assert math.isfinite(study_rate) and study_rate > 0
    assert math.isfinite(script_rate) and script_rate > 0
    assert value["ratio"] == pytest.approx(study_rate / script_rate, rel=1e-12)
    assert value["rows"] > 0 and 0 <= value["study time outside ground truth"] <= 1
    assert "GOAL" in lines.loc[lines["metric"] == "ratio", "note"].item()
    assert "## 5." in res.markdown()


def test_ground_truth_rates_record_the_goals():
    """Issue 14's rates at toy sizes: every rate positive, each beside its goal."""
    res = results.Results([])
    table = truth_rates.gt_rates(res, problems=("exp",), n=10, inputs=1, solve_n=3)
    assert list(table["problem"]) == ["exp", "summation", "dot product"]
    assert (table["elements_per_s"] > 0).all()
    lines = res.frame()
    notes = lines.loc[lines["benchmark"] == "ground-truth rate", "note"]
    assert len(notes) == 4 and notes.str.startswith("GOAL").all()
    assert "issue 14" in res.markdown()
