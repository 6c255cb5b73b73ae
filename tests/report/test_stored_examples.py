"""Reporting reads, never recomputes: worked examples are computed during the run and stored
beside the study (``worked_examples.csv`` and one ``worked_<problem>_<k>.csv`` per example),
and the claims no study holds are measured once, by `precision.report.claims.micro.measure`, and
handed to the report.

One tiny summation/cancellation study is run once (``precision run``, serial, no plots).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import precision
from precision import problems
from precision.cli import run_captured
from precision.report import summary
from precision.report.claims import micro
from precision.report.document import build_report
from precision.store.results import load_study, read_companions

SUMS = """\
name = "sums"
seed = 5
formats = ["float16", "float64"]
problems = ["summation", "cancellation"]

[grid]
log10_cond = [0, 1]
log10_magnitude = [0, 1]
sizes = [10]
samples_per_cell = 1
"""

# Exact decimals the worked examples print: (0.1 + 0.2) + 0.3 in float64 (summation) and
# 1.0 - 0.9999999999999999 in float64 (cancellation). Read back as floats, they would not.
ASSOCIATIVE = "0.600000000000000088817841970012523233890533447265625"
ONE_MINUS = "1.1102230246251565e-16"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sums")
    spec = folder / "sums.toml"
    spec.write_text(SUMS)
    out = folder / "results" / "sums"
    argv = ["run", str(spec), "--out", str(out), "--executor", "serial"]
    code, _, err = run_captured([*argv, "--no-progress", "--no-plots"])
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def measured() -> dict:
    """The micro measurements, taken once (as ``precision report`` takes them)."""
    return micro.measure()


def _boom(*_, **__):
    raise AssertionError("reporting recomputed")


@pytest.fixture
def no_computing(monkeypatch):
    """Every worked example, `precision.run.evaluate` and every micro measurement raise."""
    for name in problems.WORKED_EXAMPLES:
        monkeypatch.setitem(problems.WORKED_EXAMPLES, name, _boom)
    for module in (problems.summation, problems.cancellation, problems.least_squares):
        monkeypatch.setattr(module, "worked_examples", _boom)
    monkeypatch.setattr(problems.least_squares, "vandermonde_example", _boom)
    monkeypatch.setattr(precision, "evaluate", _boom)
    monkeypatch.setattr(sys.modules["precision.run.evaluate"], "evaluate", _boom)
    for name in micro.MEASUREMENTS:
        monkeypatch.setitem(micro.MEASUREMENTS, name, _boom)


def test_worked_examples_are_stored_at_run_time_and_shown_in_the_summary(study):
    assert (study / "worked_examples.csv").is_file()
    stored = sorted(p.name for p in study.glob("worked_*_*.csv"))
    assert "worked_summation_1.csv" in stored and "worked_cancellation_1.csv" in stored
    digest = (study / "summary.md").read_text()
    assert "## Worked examples: summation" in digest
    assert "## Worked examples: cancellation" in digest
    assert ASSOCIATIVE in digest and ONE_MINUS in digest


def test_stored_examples_read_back_as_written(study):
    """The digest rendered from the tables read back equals the one written at run time:
    exact decimals stay text, numbers stay numbers."""
    table = load_study(study).table
    again = summary.markdown(table, title="sums", companions=read_companions(study))
    assert again == (study / "summary.md").read_text()


def test_reporting_never_recomputes(study, measured, no_computing, tmp_path):
    table = load_study(study).table
    digest = summary.markdown(table, title="sums", companions=read_companions(study))
    assert ASSOCIATIVE in digest and ONE_MINUS in digest
    report = build_report(study.parent, tmp_path / "report", figures=False, micro=measured)
    text = report.texts["index.md"]
    assert "### Worked examples" in text and ASSOCIATIVE in text
    claims = report.claims.set_index("id")
    assert claims.loc["one-minus", "verdict"] == "qualified"
    assert claims.loc["exp-thresholds", "verdict"] != "not measured"
    assert "micro/softmax_extremes.csv" in report.tables


def test_without_micro_tables_the_report_says_not_measured(study, no_computing, tmp_path):
    claims = build_report(study.parent, tmp_path / "report", figures=False).claims
    claims = claims.set_index("id")
    for claim in ("exp-thresholds", "naive-softmax-extremes", "one-minus", "associativity"):
        assert claims.loc[claim, "verdict"] == "not measured"
        assert "micro measurements" in claims.loc[claim, "measured"]
    assert claims.loc["cancellation", "verdict"] != "not measured"  # the stored rows suffice


def test_a_digest_without_stored_examples_shows_none(study, no_computing):
    table = load_study(study).table
    assert "Worked examples" not in summary.markdown(table, title="sums")
