"""The tiny studies the report tests build reports from, and the one report with figures that
test_report.py and test_site.py share (built once per session by ``tests/report/conftest.py``).

The shared report is ``precision report`` (with figures) over two studies run by
``precision run SPEC --quick`` (serial): a softmax-family study with figures, and a
summation/variance study without, stored in a folder named ``<script>`` (a study's name is its
folder's: the site must show it as text), beside the results of a benchmark written by the
benchmarks' own writer (`benchmarks.results.Results`).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from precision.cli import run_captured

SOFTMAX = """\
name = "softmax"
description = "tiny softmax family <b>&amp; co"
seed = 7
formats = ["float16", "float64"]
problems = ["exp", "softmax", "logsumexp", "log_softmax", "cross_entropy"]

[grid]
log10_cond = [0, 3]
log10_magnitude = [0, 3]
sizes = [10, 20]
samples_per_cell = 3
problem_samples = { exp = 30 }

[quick]
grid = { sizes = [10], samples_per_cell = 1, problem_samples = { exp = 12 } }
"""

ACCUMULATION = """\
name = "summation"
seed = 8
formats = ["float16", "float64"]
problems = ["summation", "cancellation", "variance", "batchnorm"]

[grid]
log10_cond = [0, 4]
log10_magnitude = [0, 1]
sizes = [10, 1000]
samples_per_cell = 2

[quick]
grid = { log10_cond = [0, 3], sizes = [10, 100], samples_per_cell = 1 }
"""

HOSTILE = "<script>"
"""The folder (so the name) of the shared report's summation study."""

call = run_captured  # the CLI in-process: (exit status, stdout, stderr)

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is beside the package, not in it
    sys.path.insert(0, str(ROOT))
bench_results = importlib.import_module("benchmarks.results")


def run_quick(spec_text: str, folder: Path, name: str, *plots: str) -> Path:
    """``precision run`` of ``spec_text`` (quick grid, serial) into ``folder/results/name``."""
    spec = folder / f"{name}.toml"
    spec.write_text(spec_text)
    out = folder / "results" / name
    argv = ["run", str(spec), "--quick", "--out", str(out), "--executor", "serial"]
    code, _, err = call([*argv, "--no-progress", *plots])
    assert code == 0, err
    return out


@dataclass(frozen=True)
class SharedReport:
    """The shared report: its results folder, its report folder and what ``precision report``
    answered (exit status, stdout, stderr)."""

    results: Path
    folder: Path
    code: int
    out: str
    err: str


def build_shared_report(folder: Path) -> SharedReport:
    """Runs the two tiny studies into ``folder/results``, writes three benchmark timings beside
    them and builds ``precision report`` (with figures) over them."""
    run_quick(SOFTMAX, folder, "softmax")
    run_quick(ACCUMULATION, folder, HOSTILE, "--no-plots")
    measured = bench_results.Results(["# Benchmarks", "", "- date: a test", "- machine: this one"])
    for k, seconds in enumerate((0.5, 12.0, 3.25)):
        measured.add("1", "study vs baseline", f"setting {k}", "wall", seconds, "s")
    results = folder / "results"
    measured.write(results / "bench")
    code, out, err = call(["report", "--results", str(results)])
    return SharedReport(results, results / "report", code, out, err)


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path -> sha256 of its bytes: equal fingerprints
    before and after the tests say that no test wrote into the shared folder.

    The ground-truth cache (``.cache/``) is left out: the runs' SQLite connection stays open
    until it is collected, and closing it folds the write-ahead log into the database and
    deletes the -wal and -shm files, whenever the collector gets to it (CI once failed the
    teardown check on exactly that). No test reads the cache through the shared report."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(folder).parts
    }
