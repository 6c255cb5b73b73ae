"""``make bench``: the study against a naive baseline, ground-truth throughput, scaling, workers,
and the study against the per-row script a user would write (part 5, issue 13).

Every comparison is measured side by side in one run (the machine may be shared: ratios of
timings taken together are what to read, absolute times less so). Results go to
``<out>/benchmarks.csv`` (one measurement a line: part, benchmark, setting, metric, value,
unit, note) and ``<out>/benchmarks.md`` (the same, as tables, with the run's date, machine and
command). ``--quick`` (or ``BENCH_QUICK=1``) runs everything small, in a few minutes.

Speed goals live here, in the output (``GOAL``), never in the tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.baseline import (
    BASELINE_PREC,
    REFEREE_BITS,
    baseline_chunk,
    compare,
    naive_truth,
    referee,
)
from benchmarks.child import EXP_CELLS, ROWS_PER_INPUT
from benchmarks.versus_script import RATIO_GOAL, SHARE_GOAL, measure_sizes
from precision import store
from precision.core.formats import cast, get_format
from precision.core.numbers import ARB
from precision.problems import PROBLEMS
from precision.run import study
from precision.run.execute import execute
from precision.run.sampling import cell_rng, sample_in_cell
from precision.run.spec import StudySpec, load_spec
from precision.run.study import Chunk, chunks, concat_tables, run_chunk
from precision.truth.batch import ground_truths_batch
from precision.truth.exact import ground_truths

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "softmax.toml"
REFEREE = (
    f"one mpmath evaluation at max(4096, gap log2(e) + {REFEREE_BITS}) bits, gap = max x - min x"
)
GOAL = 20.0
"""Speed-up of the study over the naive baseline that the issue asks for."""

FORMATS = ("float16", "bfloat16", "float32", "float64")
PROBLEM_NAMES = ("exp", "softmax", "logsumexp", "log_softmax", "cross_entropy")
COLUMNS = ["part", "benchmark", "setting", "metric", "value", "unit", "note"]


@dataclass(frozen=True)
class Config:
    """Sizes of one benchmark run (`FULL` or `QUICK`)."""

    name: str
    quick_spec: bool  # parts 1 and 4 run the study's [quick] version
    every: int  # part 1: every k-th chunk of the study (1: all)
    gt_sizes: tuple[int, ...]  # part 2: vector sizes
    gt_seconds: float  # part 2: time per problem and size, all engines together
    gt_inputs: int  # part 2: distinct inputs per problem and size (each in every format)
    rate_inputs: int  # part 2: inputs per problem for the rates against issue 14's goals
    solve_n: int  # part 2: size of the linear system timed against its goal
    scaling_inputs: tuple[int, ...]  # part 3: exp study sizes, in inputs
    memory_rows: int  # part 3: rows of the peak-memory run
    memory_seconds: float  # part 3: the memory run is shrunk to fit this when it would not
    versus: tuple[tuple[int, int], ...]  # part 5: (n, samples per cell) for each size
    versus_grid: dict  # part 5: the decades of the grid (studies/softmax.toml's in full mode)
    parallel: tuple[tuple[str, int], ...] = field(
        default=(("serial", 1), ("process", 1), ("process", 2), ("dask", 1), ("dask", 2))
    )


FULL = Config(
    name="full",
    quick_spec=False,
    every=1,
    gt_sizes=(10, 100, 1000),
    gt_seconds=4.0,
    gt_inputs=12,
    rate_inputs=8,
    solve_n=200,
    scaling_inputs=(1_000, 10_000, 100_000),
    memory_rows=1_000_000,
    memory_seconds=300.0,
    versus=((10, 8), (100, 3), (1000, 2)),
    versus_grid={"log10_cond": [-1, 5], "log10_magnitude": [-1, 4]},
)
QUICK = Config(
    name="quick",
    quick_spec=True,
    every=1,
    gt_sizes=(10, 100),
    gt_seconds=0.5,
    gt_inputs=6,
    rate_inputs=2,
    solve_n=200,
    scaling_inputs=(200, 800, 3_200),
    memory_rows=20_000,
    memory_seconds=60.0,
    versus=((10, 1), (100, 1), (1000, 1)),
    versus_grid={"log10_cond": [-1, 2], "log10_magnitude": [-1, 4]},
)


class Results:
    """Measurements (CSV lines) and the Markdown report, filled part by part."""

    def __init__(self, header: list[str]):
        self.rows: list[dict] = []
        self.header = header
        self.sections: list[str] = []
        self.files: dict[str, bytes] = {}

    def add(self, part, benchmark, setting, metric, value, unit="", note="") -> None:
        self.rows.append(
            dict(zip(COLUMNS, [part, benchmark, setting, metric, value, unit, note], strict=True))
        )

    def section(self, text: str) -> None:
        self.sections.append(text.rstrip() + "\n")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)

    def markdown(self) -> str:
        return "\n".join(self.header) + "\n\n" + "\n".join(self.sections)

    def write(self, out_dir: Path) -> None:
        """Both files, atomically (`precision.store.write_all_or_nothing`)."""
        out_dir = Path(out_dir)
        store.write_all_or_nothing(
            {
                out_dir / "benchmarks.csv": self.frame().to_csv(index=False).encode(),
                out_dir / "benchmarks.md": self.markdown().encode(),
                **{out_dir / name: data for name, data in self.files.items()},
            }
        )


# ------------------------------------------------------------------ 1. study vs naive baseline


def study_vs_baseline(res: Results, spec: StudySpec, *, every: int = 1) -> dict:
    """Part 1: the study (cold cache, then warm) against the naive baseline, chunk by chunk.

    For each chunk in turn: `run_chunk` with a fresh temporary cache (cold), `run_chunk` again
    (warm: every ground truth is in the cache), `baseline_chunk`. Each side's total is its
    chunks plus its table's concatenation. Then the three tables are compared row by row.
    """
    plan = chunks(spec)
    subset = plan[::every]
    scope = (
        f"all {len(plan)} chunks"
        if every == 1
        else f"every {every}th chunk: {len(subset)} of {len(plan)}"
    )
    sides = ("cold", "warm", "baseline")
    seconds = dict.fromkeys(sides, 0.0)
    gt_seconds = dict.fromkeys(sides, 0.0)
    cpu = dict.fromkeys(sides, 0.0)
    tables: dict[str, list] = {side: [] for side in sides}
    groups: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        cache = store.GroundTruthCache(Path(tmp) / "ground_truth.sqlite")
        for chunk in subset:
            for side in sides:
                start, cpu_start = time.perf_counter(), time.process_time()
                if side == "baseline":
                    result = baseline_chunk(spec, chunk)
                else:
                    result = run_chunk(spec, chunk, cache=cache)
                elapsed = time.perf_counter() - start
                cpu[side] += time.process_time() - cpu_start
                seconds[side] += elapsed
                gt_seconds[side] += result.ground_truth_seconds
                tables[side].append(result.table)
                group = groups[_group(chunk)]
                if side == "cold":
                    group[0] += elapsed
                    group[2] += result.ground_truth_seconds
                    group[3] += len(result.table)
                elif side == "baseline":
                    group[1] += elapsed
        cached = len(cache)
        del cache
    merged = {}
    for side in sides:
        start = time.perf_counter()
        merged[side] = concat_tables(tables[side])
        seconds[side] += time.perf_counter() - start
    cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)

    same_warm = store.table_bytes(merged["cold"]) == store.table_bytes(merged["warm"])
    differences = compare(merged["cold"], merged["baseline"])
    if len(differences):
        differences = referee(spec, subset, differences)
    phases = anatomy(spec, subset)
    phase_total = sum(phases.values())

    rows, inputs = len(merged["cold"]), sum(c.inputs(spec) for c in subset)
    speedup = seconds["baseline"] / seconds["cold"]
    speedup_warm = seconds["baseline"] / seconds["warm"]
    speedup_cpu = cpu["baseline"] / cpu["cold"]
    shared = seconds["cold"] - gt_seconds["cold"]
    ceiling = seconds["baseline"] / shared
    bench = f"{spec.name} study vs naive baseline"
    add = _adder(res, "1", bench, scope)
    add("rows", rows, "rows", f"{inputs} inputs tried")
    add("study cold cache", seconds["cold"], "s", "fresh temporary GroundTruthCache")
    add("study cold cache: ground truth", gt_seconds["cold"], "s")
    add("study warm cache", seconds["warm"], "s", f"rerun, {cached} cached ground truths")
    add("baseline", seconds["baseline"], "s", f"mpmath {BASELINE_PREC} bits per row")
    add("baseline: ground truth", gt_seconds["baseline"], "s")
    add(
        "speed-up (cold)",
        speedup,
        "x",
        f"goal {GOAL:g}x: {'met' if speedup >= GOAL else 'not met'}",
    )
    add("speed-up (warm)", speedup_warm, "x")
    add("speed-up (cold), CPU time", speedup_cpu, "x", "chunks' CPU seconds, not wall")
    add("study time besides ground truth", shared, "s", "inputs, variants, metrics, rows")
    add("speed-up ceiling", ceiling, "x", "baseline / study time besides ground truth")
    add("warm table identical to cold", int(same_warm), "bool")
    add("rows compared", rows, "rows")
    beyond = differences[~differences["within_accuracy"]] if len(differences) else differences
    add("disagreeing rows", len(differences), "rows", "ulps, outcome, rel_error (1e-9 rel.)")
    add(
        "disagreeing rows beyond the truth's accuracy",
        len(beyond),
        "rows",
        "not only rel_error within 2**-80",
    )
    for what in ("ulps", "outcome", "rel_error"):
        count = int(differences["differs_in"].str.contains(what).sum()) if len(differences) else 0
        add(f"disagreeing rows: {what}", count, "rows")
    if len(beyond):
        for verdict, count in beyond["referee_agrees_with"].value_counts().items():
            add(f"referee agrees with {verdict}", int(count), "rows", REFEREE)
    add("cpu / wall of this process", cpu_share, "", "below 1: the machine was busy")
    for phase, value in phases.items():
        add(f"study step: {phase}", value, "s", "separate instrumented pass, no cache")

    group_rows = []
    for (problem, size), (cold, base, gt, count) in sorted(groups.items()):
        ratio = base / cold if cold else float("nan")
        res.add("1", bench, f"{problem} {size}", "speed-up (cold)", ratio, "x")
        group_rows.append(
            [problem, size, count, _fmt(cold), _fmt(gt), _fmt(base), _fmt(ratio) + "x"]
        )

    verdict = "met" if speedup >= GOAL else "**not met**"
    lines = [
        f"## 1. {spec.name} study against a naive baseline ({scope})",
        "",
        f"Baseline: for every row (input x variant x format) the mpmath reference at a fixed "
        f"{BASELINE_PREC} bits, rounded to the format; nothing shared or cached. Both sides "
        "draw the same inputs and measure with the same code (`precision.run.study`); chunks run "
        "in turn on each side (cold, warm, baseline), so the ratio is side by side.",
        "",
        _md_table(
            ["measurement", "value"],
            [
                ["rows", f"{rows:,}"],
                [
                    "study, cold cache",
                    f"{_fmt(seconds['cold'])} s (ground truth {_fmt(gt_seconds['cold'])} s)",
                ],
                ["study, warm cache (rerun)", f"{_fmt(seconds['warm'])} s"],
                [
                    "naive baseline",
                    f"{_fmt(seconds['baseline'])} s "
                    f"(ground truth {_fmt(gt_seconds['baseline'])} s)",
                ],
                ["**speed-up, cold cache**", f"**{_fmt(speedup)}x** (goal {GOAL:g}x: {verdict})"],
                ["speed-up, warm cache", f"{_fmt(speedup_warm)}x"],
                ["speed-up, cold cache, by CPU time", f"{_fmt(speedup_cpu)}x"],
                ["study time besides ground truth", f"{_fmt(shared)} s"],
                ["ceiling if ground truth were free", f"{_fmt(ceiling)}x"],
                ["warm table identical to cold", "yes" if same_warm else "**no**"],
                [
                    "rows with different errors (ulps, outcome, rel_error to 1e-9)",
                    f"{len(differences)} of {rows:,}",
                ],
                [
                    "... of which beyond the truths' 2^-80 accuracy",
                    f"{len(beyond)}"
                    + (f" (referee agrees with: {_verdicts(beyond)})" if len(beyond) else ""),
                ],
                ["cpu / wall of this process", _fmt(cpu_share)],
            ],
        ),
        "",
        "Where the study's time goes (a separate pass over the same chunks, no cache, each "
        "step timed; the baseline shares every step but ground truth):",
        "",
        _md_table(
            ["step", "seconds", "share"],
            [[k, _fmt(v), f"{v / phase_total:.0%}"] for k, v in phases.items()]
            + [["total", _fmt(phase_total), "100%"]],
        ),
        "",
        "Per problem and size (cold cache):",
        "",
        _md_table(
            [
                "problem",
                "n / source",
                "rows",
                "study s",
                "of which ground truth s",
                "baseline s",
                "speed-up",
            ],
            group_rows,
        ),
    ]
    if len(differences):
        res.files["disagreements.csv"] = differences.to_csv(index=False).encode()
        ordered = pd.concat([beyond, differences[differences["within_accuracy"]]])
        shown = ordered.head(20)
        lines += [
            "",
            "Rows whose errors differ (study: its certified truth; baseline: 256 bits; referee: "
            f"{REFEREE}, run where the difference is beyond 2^-80):",
            "",
            _md_table(
                ["problem", "n", "source", "sample", "format", "variant", "differs in",
                 "study rel_error", "baseline rel_error", "study ulps", "baseline ulps",
                 "referee ulps", "study bits", "referee agrees with"],
                [
                    [r.problem, r.n, r.source, r.sample, r.format, r.variant, r.differs_in,
                     f"{r.study_rel_error:.4g}", f"{r.baseline_rel_error:.4g}", r.study_ulps,
                     r.baseline_ulps, "" if r.referee_ulps is None else r.referee_ulps,
                     r.study_gt_prec, r.referee_agrees_with or "(within 2^-80)"]
                    for r in shown.itertuples(index=False)
                ],
            ),
        ]  # fmt: skip
        if len(differences) > len(shown):
            lines.append(f"\n({len(differences) - len(shown)} more in disagreements.csv.)")
    res.section("\n".join(lines))
    return {
        "speedup": speedup,
        "speedup_warm": speedup_warm,
        "disagreements": differences,
        "rows": rows,
        "same_warm": same_warm,
    }


PHASES = study.PHASES


def anatomy(spec: StudySpec, plan: list[Chunk]) -> dict[str, float]:
    """Seconds per step of `run_chunk` (no cache) over ``plan``, as the runner books them
    itself (`precision.run.study.Clock`): drawing and rounding the inputs, ground truth, the
    per-input row fields (magnitude and extras per format), the kernels (one call per chunk,
    format and batched variant), the error measures, outcomes and bounds over the batch, and
    the typed table."""
    seconds = dict.fromkeys(PHASES, 0.0)
    for chunk in plan:
        run_chunk(spec, chunk, cache=None, phases=seconds)
    return seconds


def _verdicts(rows: pd.DataFrame) -> str:
    counts = rows["referee_agrees_with"].value_counts()
    return ", ".join(f"{verdict} {count}" for verdict, count in counts.items())


def _group(chunk: Chunk) -> tuple[str, str]:
    if chunk.source != "synthetic":
        return chunk.problem, f"{chunk.source} (n={chunk.n})"
    return chunk.problem, f"n={chunk.n:>4}"


# ------------------------------------------------------------------ 2. ground-truth throughput


def gt_throughput(
    res: Results,
    *,
    problems=PROBLEM_NAMES,
    sizes=(10, 100, 1000),
    seconds: float = 4.0,
    inputs: int = 12,
    seed: int = 20261125,
) -> pd.DataFrame:
    """Part 2: ground truths per second for each problem and size, engine by engine.

    Inputs come from the study's generator (`sample_in_cell`) over the default grid's cells,
    rounded to every format; each (input, format) is one ground truth. The engines take turns
    on the same inputs until ``seconds`` have passed (at least one input in every format):

    * ``arb``: `ground_truths(..., engine="arb")`, certified (the study's engine);
    * ``mpmath``: `ground_truths(..., engine="mpmath")`, certified by agreement;
    * ``mpmath 256``: one plain evaluation at 256 bits, rounded to the format (the baseline's);
    * ``arb eval 113``: one Arb evaluation at 113 bits alone, no certification or rounding
      (what the arb engine's evaluation costs without its per-element checks).
    """
    grid = load_spec(STUDY).grid
    out = []
    for name in problems:
        problem = PROBLEMS[name]
        for n in sizes if problem.takes_sizes else (1,):
            xs = _generated_inputs(problem, n, grid, inputs * (4 if n == 1 else 1), seed)
            tasks = []
            for x in xs:
                for fmt in FORMATS:
                    x_fmt = cast(x, fmt)
                    if np.isfinite(x_fmt.astype(np.float64)).all():
                        tasks.append((x_fmt, fmt))
            engines = _engines(problem)
            spent = dict.fromkeys(engines, 0.0)  # CPU seconds of this process
            wall = dict.fromkeys(engines, 0.0)
            counts = dict.fromkeys(engines, 0)
            certified = dict.fromkeys(engines, 0)
            precs = dict.fromkeys(engines, 0)
            start, i = time.perf_counter(), 0
            while i < len(FORMATS) or time.perf_counter() - start < seconds:
                x_fmt, fmt = tasks[i % len(tasks)]
                for engine, fn in engines.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    ok, prec = fn(x_fmt, fmt)
                    spent[engine] += time.process_time() - c0
                    wall[engine] += time.perf_counter() - t0
                    counts[engine] += 1
                    certified[engine] += ok
                    precs[engine] += prec
                i += 1
            for engine in engines:
                rate = counts[engine] / spent[engine]
                out.append(
                    {
                        "problem": name,
                        "n": n,
                        "engine": engine,
                        "truths": counts[engine],
                        "cpu_seconds": spent[engine],
                        "wall_seconds": wall[engine],
                        "truths_per_wall_s": counts[engine] / wall[engine],
                        "truths_per_s": rate,
                        "elements_per_s": rate * n,
                        "vs_mpmath_256": rate / (counts["mpmath 256"] / spent["mpmath 256"]),
                        "certified": certified[engine] / counts[engine],
                        "mean_prec": precs[engine] / counts[engine],
                    }
                )
    table = pd.DataFrame(out)
    bench = "ground-truth throughput"
    for r in table.itertuples(index=False):
        setting = f"{r.problem} n={r.n} {r.engine}"
        note = f"{r.truths} truths, {r.certified:.0%} certified, mean {r.mean_prec:.0f} bits"
        res.add("2", bench, setting, "truths per CPU second", r.truths_per_s, "1/s", note)
        res.add("2", bench, setting, "elements per CPU second", r.elements_per_s, "1/s")
        res.add("2", bench, setting, "truths per wall second", r.truths_per_wall_s, "1/s")
        res.add("2", bench, setting, "speed vs mpmath 256", r.vs_mpmath_256, "x")
    pivot_rows = []
    for (problem, n), g in table.groupby(["problem", "n"], sort=False):
        e = g.set_index("engine")
        pivot_rows.append(
            [
                problem,
                n,
                *(_fmt(e.loc[k, "truths_per_s"]) for k in engines),
                *(_fmt(e.loc[k, "elements_per_s"]) for k in ("arb", "mpmath 256")),
                _fmt(e.loc["arb", "vs_mpmath_256"]) + "x",
                _fmt(e.loc["mpmath", "vs_mpmath_256"]) + "x",
                f"{e.loc['arb', 'certified']:.0%} / {e.loc['mpmath', 'certified']:.0%}",
                f"{e.loc['arb', 'mean_prec']:.0f} / {e.loc['mpmath', 'mean_prec']:.0f}",
            ]
        )
    res.section(
        "\n".join(
            [
                "## 2. Ground-truth throughput per core",
                "",
                "Ground truths (one input in one format each) per CPU second of one "
                "single-threaded process: CPU time, so that other work on the shared machine "
                "does not count (wall-clock rates are in the CSV). Inputs are drawn by the "
                "study's generator over the default grid, in every format; the engines take "
                "turns on the same inputs. *arb* and *mpmath* are the certified engines "
                "(`precision.truth.exact.ground_truths`); *mpmath 256* is one plain evaluation at "
                "256 bits rounded to the format (uncertified, the baseline's); *arb eval 113* "
                "is the Arb evaluation alone at 113 bits (no certification, no rounding).",
                "",
                _md_table(
                    [
                        "problem",
                        "n",
                        *(f"{k} /s" for k in engines),
                        "arb elem/s",
                        "mpmath 256 elem/s",
                        "arb vs 256",
                        "mpmath vs 256",
                        "certified arb / mpmath",
                        "mean bits arb / mpmath",
                    ],
                    pivot_rows,
                ),
            ]
        )
    )
    return table


RATE_GOALS = {"elementwise": 1_000_000.0, "sums": 10_000_000.0}
"""Issue 14: certified ground-truth elements per CPU second (one core), counting certification
and the rounding to every format: exp and the softmax family at n = 1000; sums and dots."""
SOLVE_GOAL = 0.3
"""Issue 14: seconds for one certified n = 200 linear system (solution and condition number)."""


def gt_rates(
    res: Results,
    *,
    problems=PROBLEM_NAMES,
    n: int = 1000,
    inputs: int = 3,
    solve_n: int = 200,
    seed: int = 20261125,
) -> pd.DataFrame:
    """Part 2: certified ground-truth rates beside the goals of issue 14.

    Each input, from the study's generator, is rounded to every format and certified in each,
    a batch per format as the runner does it (`ground_truths_batch(..., engine="arb")`, exact
    shortcuts included; `_arb_rate`): elements per CPU second is the elements of the (input,
    format) truths over the CPU seconds, exp's scalars counted one each. Sums (``summation``)
    and dot products (``dot``, pairs of rows of K = n from its own generator) go through their
    exact shortcuts, as the runner takes them. The linear system is one n = ``solve_n`` input
    in float64.
    """
    grid = load_spec(STUDY).grid
    cases = {
        name: ("elementwise", _arb_rate(PROBLEMS[name], n, grid, inputs, seed)) for name in problems
    }
    cases["summation"] = ("sums", _arb_rate(PROBLEMS["summation"], n, grid, inputs, seed))
    cases["dot product"] = ("sums", _arb_rate(PROBLEMS["dot"], n, grid, inputs, seed))
    rows = [
        {"problem": k, "n": n, "kind": kind, "elements_per_s": rate, "goal": RATE_GOALS[kind]}
        for k, (kind, rate) in cases.items()
    ]
    solve = _solve_seconds(solve_n, grid, seed)
    table = pd.DataFrame(rows)
    lines = []
    for r in table.itertuples(index=False):
        met = "met" if r.elements_per_s >= r.goal else "not met"
        note = f"GOAL {_fmt(r.goal)} el/s: {met}"
        res.add(
            "2",
            "ground-truth rate",
            f"{r.problem} n={r.n}",
            "elements per CPU second",
            r.elements_per_s,
            "1/s",
            note,
        )
        lines.append([r.problem, r.n, _fmt(r.elements_per_s), _fmt(r.goal), met])
    met = "met" if solve <= SOLVE_GOAL else "not met"
    res.add(
        "2",
        "ground-truth rate",
        f"linear_system n={solve_n}",
        "CPU seconds per input",
        solve,
        "s",
        f"GOAL {SOLVE_GOAL} s: {met}",
    )
    lines.append(["linear_system (s per input)", solve_n, _fmt(solve), SOLVE_GOAL, met])
    res.section(
        "\n".join(
            [
                "### Certified ground-truth rates against the goals (issue 14)",
                "",
                "Elements per CPU second of one process, certification and rounding to every "
                "format counted, through the runner's batch path (`ground_truths_batch`, one "
                "batch per format; exp: one element per scalar input, 1000 times as many inputs "
                "as the vector problems); the linear system in CPU seconds per input (float64).",
                "",
                _md_table(["problem", "n", "el/s (s)", "goal", "goal met"], lines),
            ]
        )
    )
    return table


def _arb_rate(problem, n: int, grid, inputs: int, seed: int) -> float:
    """Elements (the length of each input's last axis: n logits, or 1 for the scalar problem
    exp) times formats, per CPU second of the arb engine as the runner calls it: each format's
    inputs as one batch (`ground_truths_batch`, shortcuts included), certified in that format.

    A scalar problem draws ``inputs * n`` inputs, so that it certifies as many elements as a
    vector problem's ``inputs`` inputs of n (a batch of 8 scalars would measure numpy's fixed
    costs, not the engine). One input is certified first, untimed, so that once-per-process
    costs are not counted as a per-element rate."""
    count = inputs * n if problem.input_shape(n) == (1,) else inputs
    xs = np.stack(_generated_inputs(problem, n, grid, count, seed))
    batches = []
    for fmt in FORMATS:
        X = cast(xs, fmt)
        finite = np.isfinite(X.astype(np.float64)).reshape(len(X), -1).all(axis=1)
        batches.append((X[finite], fmt))
    # Count what was certified: exp's inputs are scalars (its proposals ignore n), and counting
    # n per input overstated its rate a thousandfold until 2026-12-06.
    elements = sum(X.shape[0] * X.shape[-1] for X, _ in batches)
    # A rate per element: one-time costs of the process (imports, the exp table of
    # precision.core.double_double, about 7 ms) are paid on one input first, untimed.
    ground_truths_batch(problem, batches[0][0][:1], [batches[0][1]], engine="arb")
    start = time.process_time()
    for X, fmt in batches:
        ground_truths_batch(problem, X, [fmt], engine="arb")
    return elements / max(time.process_time() - start, 1e-9)


def _solve_seconds(n: int, grid, seed: int) -> float:
    """CPU seconds of one certified linear system of size n in float64 (arb engine)."""
    problem = PROBLEMS["linear_system"]
    x = _generated_inputs(problem, n, grid, 1, seed)[0]
    start = time.process_time()
    ground_truths(problem, cast(x, "float64"), ["float64"], engine="arb")
    return time.process_time() - start


def _engines(problem) -> dict[str, Callable]:
    def arb(x, fmt):
        t = ground_truths(problem, x, [fmt], engine="arb")[fmt]
        return t.certified, t.prec

    def mpm(x, fmt):
        t = ground_truths(problem, x, [fmt], engine="mpmath")[fmt]
        return t.certified, t.prec

    def plain(x, fmt):
        naive_truth(problem, x, get_format(fmt))
        return False, BASELINE_PREC

    def arb_eval(x, fmt):
        with ARB.workprec(113):
            problem.reference(x, ARB)
        return False, 113

    return {"arb": arb, "mpmath": mpm, "mpmath 256": plain, "arb eval 113": arb_eval}


def _generated_inputs(problem, n: int, grid, count: int, seed: int) -> list[np.ndarray]:
    """``count`` float64 inputs from the study's generator, cycling over the grid's cells."""
    cells = grid.cells()
    rngs = {cell: cell_rng(seed, problem.name, n, *cell) for cell in cells}
    found: list[np.ndarray] = []
    for _ in range(count):
        for cell in cells:
            x = sample_in_cell(problem, rngs[cell], n=n, cond_decade=cell[0], mag_decade=cell[1])
            if x is not None:
                found.append(x)
            if len(found) == count:
                return found
    return found


# ------------------------------------------------------------------ 3. scaling and memory


def scaling(
    res: Results,
    *,
    inputs=(1_000, 10_000, 100_000),
    memory_rows: int = 1_000_000,
    memory_seconds: float = 300.0,
    limit_seconds: float = 600.0,
) -> pd.DataFrame:
    """Part 3: rows per second of `precision.run.study.run` (serial, no cache) on the exp study of
    `benchmarks.child.exp_spec` at each size in ``inputs``, and the peak memory of an
    `execute(..., executor="serial")` run of about ``memory_rows`` rows, each in its own
    subprocess (ru_maxrss). The memory run is shrunk to what fits in ``memory_seconds`` when
    the rate measured at the largest size predicts more than ``limit_seconds``.
    """
    out = []
    for count in inputs:
        out.append(_child("run", max(1, count // EXP_CELLS)))
    rate = out[-1]["rows_per_s"]
    predicted = memory_rows / rate
    target = memory_rows
    note = f"predicted {predicted:.0f} s at {rate:.0f} rows/s"
    if predicted > limit_seconds:
        target = int(rate * memory_seconds)
        note += f" > {limit_seconds:.0f} s: shrunk to {target:,} rows (fits {memory_seconds:.0f} s)"
    samples = max(1, target // (EXP_CELLS * ROWS_PER_INPUT))
    out.append(_child("execute", samples))
    table = pd.DataFrame(out)
    bench = "exp study scaling"
    first = table.iloc[0]
    rows = []
    for r in table.itertuples(index=False):
        setting = f"{r.mode} {r.rows:,} rows"
        relative = r.rows_per_s / first["rows_per_s"] if r.mode == "run" else float("nan")
        per_row = (r.maxrss_mib - r.maxrss_start_mib) * 2**20 / r.rows
        res.add("3", bench, setting, "inputs", r.inputs, "inputs")
        res.add("3", bench, setting, "seconds", r.seconds, "s")
        res.add("3", bench, setting, "rows per second", r.rows_per_s, "1/s")
        res.add("3", bench, setting, "rows per CPU second", r.rows_per_cpu_s, "1/s")
        if r.mode == "run":
            res.add("3", bench, setting, "rows/s relative to the smallest run", relative, "x")
        res.add("3", bench, setting, "peak memory (ru_maxrss)", r.maxrss_mib, "MiB")
        res.add("3", bench, setting, "memory after imports", r.maxrss_start_mib, "MiB")
        res.add("3", bench, setting, "peak memory per row", per_row, "bytes")
        rows.append(
            [
                "`run`" if r.mode == "run" else "`execute`, serial, streaming",
                f"{r.inputs:,}",
                f"{r.rows:,}",
                _fmt(r.seconds),
                f"{r.rows_per_s:,.0f}",
                f"{r.rows_per_cpu_s:,.0f}",
                _fmt(relative) + "x" if r.mode == "run" else "",
                f"{r.maxrss_mib:,.0f}",
                f"{per_row:,.0f}",
            ]
        )
    last = table.iloc[-1]
    res.add("3", bench, "memory run", "size choice", target, "rows", note)
    scale = ""
    if target != memory_rows:
        growth = (last.maxrss_mib - last.maxrss_start_mib) * memory_rows / last.rows
        scale = (
            f" The memory run was shrunk ({note}); at {memory_rows:,} rows expect about "
            f"{_fmt(last.maxrss_start_mib + growth)} MiB if memory grows linearly."
        )
    res.section(
        "\n".join(
            [
                "## 3. Scaling of a scalar study (exp) and peak memory",
                "",
                "An exp-only study (4 x 4 decade grid, 4 reachable diagonal cells, every format, "
                "one row per input and format), each size in a fresh subprocess: "
                "`precision.run.study.run` (serial, no cache) at growing sizes, then "
                '`execute(..., executor="serial")` streaming chunks to a temporary folder for '
                "the peak-memory run. Memory is the subprocess's ru_maxrss; per row: above the "
                "memory after imports." + scale,
                "",
                _md_table(
                    [
                        "runner",
                        "inputs",
                        "rows",
                        "wall s",
                        "rows/s",
                        "rows/CPU-s",
                        "rows/s vs smallest run",
                        "peak MiB",
                        "bytes/row",
                    ],
                    rows,
                ),
            ]
        )
    )
    return table


def _child(mode: str, samples: int) -> dict:
    print(
        f"benchmarks:   exp study, {mode}, {samples:,} samples per cell",
        file=sys.stderr,
        flush=True,
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.child", json.dumps({"mode": mode, "samples": samples})],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.child {mode} {samples} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ 4. parallel executors


def parallel(
    res: Results,
    spec: StudySpec,
    *,
    configs=(("serial", 1), ("process", 1), ("process", 2), ("dask", 1), ("dask", 2)),
) -> pd.DataFrame:
    """Part 4: wall time of `execute` (no cache, a fresh output folder each) per executor and
    number of workers, on the same spec, one after the other; and whether the tables agree."""
    logging.getLogger("distributed").setLevel(logging.ERROR)
    out, reference = [], None
    load_before = os.getloadavg()
    for executor, workers in configs:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            table, report = execute(spec, Path(tmp) / "out", executor=executor, workers=workers)
            seconds = time.perf_counter() - start
        data = store.table_bytes(table)
        reference = reference or data
        out.append(
            {
                "executor": executor,
                "workers": workers,
                "seconds": seconds,
                "rows": report.rows,
                "compute_seconds": report.compute_seconds,
                "same_table": data == reference,
                "load": load,
            }
        )
    load_after = os.getloadavg()
    table = pd.DataFrame(out)
    bench = f"{spec.name} study, execute"
    times = {(r.executor, r.workers): r.seconds for r in table.itertuples(index=False)}
    rows = []
    for r in table.itertuples(index=False):
        setting = f"{r.executor} workers={r.workers}"
        res.add("4", bench, setting, "wall", r.seconds, "s", f"{r.rows:,} rows")
        res.add("4", bench, setting, "chunk seconds (sum)", r.compute_seconds, "s")
        res.add("4", bench, setting, "same table as the first", int(r.same_table), "bool")
        one = times.get((r.executor, 1))
        speedup = one / r.seconds if one else float("nan")
        if r.workers != 1:
            res.add("4", bench, setting, "speed-up over 1 worker", speedup, "x")
        rows.append(
            [
                r.executor,
                r.workers,
                _fmt(r.seconds),
                _fmt(r.compute_seconds),
                _fmt(speedup) + "x" if r.workers != 1 else "",
                f"{r.load:.2f}",
                "yes" if r.same_table else "**no**",
            ]
        )
    res.add(
        "4",
        bench,
        "machine",
        "load average before / after",
        f"{load_before[0]:.2f} / {load_after[0]:.2f}",
        "",
    )
    res.section(
        "\n".join(
            [
                f"## 4. Workers: `execute` on the {spec.name} study, no cache",
                "",
                f"{os.cpu_count()} cores; 1-minute load average {load_before[0]:.2f} before, "
                f"{load_after[0]:.2f} after. Wall time includes starting the pool or cluster; "
                "chunk seconds is the sum of the chunks' own times across workers: with free "
                "cores it stays about the same with 2 workers; where it grows, the chunks ran "
                "slower because the cores were busy (other work on the machine, or the two "
                "workers sharing them).",
                "",
                _md_table(
                    [
                        "executor",
                        "workers",
                        "wall s",
                        "chunk s (sum)",
                        "speed-up vs 1 worker",
                        "load before",
                        "same table",
                    ],
                    rows,
                ),
            ]
        )
    )
    return table


# ------------------------------------------------------------------ 5. study vs the user's script


def study_vs_script(res: Results, *, sizes=((10, 1), (100, 1), (1000, 1)), grid=None):
    """Part 5: a cold serial study against `benchmarks.script` on the same rows, per size n
    (`benchmarks.versus_script.measure_sizes`); issue 13's goals printed beside the results."""
    table = measure_sizes(sizes, grid)
    bench, rows, spent = "softmax family: study vs per-row script", [], []
    for r in table.itertuples(index=False):
        add = _adder(res, "5", bench, f"n={r.n}")
        ratio_ok = "met" if r.ratio >= RATIO_GOAL else "not met"
        share_ok = "met" if r.outside_share <= SHARE_GOAL else "not met"
        add("inputs", r.inputs, "inputs", f"{r.samples_per_cell} per reachable cell")
        add("rows", r.study_rows, "rows", f"script: {r.script_rows}")
        add("study, cold serial", r.study_seconds, "s", "precision.run.study.run, cache=None")
        add("study: ground truth", r.ground_truth_seconds, "s", "the runner's own timing")
        add("script", r.script_seconds, "s", "benchmarks/script.py, mpmath 256 bits per row")
        add("study rows per second", r.study_rows_per_s, "1/s")
        add("script rows per second", r.script_rows_per_s, "1/s")
        add("ratio", r.ratio, "x", f"GOAL at least {RATIO_GOAL:g}x at every n: {ratio_ok}")
        add("ratio, CPU time", r.ratio_cpu, "x")
        add(
            "study time outside ground truth",
            r.outside_share,
            "share",
            f"GOAL at most {SHARE_GOAL:.0%} at every n: {share_ok}",
        )
        for phase in study.PHASES:
            add(f"study time: {phase}", getattr(r, f"share_{phase.replace(' ', '_')}"), "share")
        add("same rows", int(r.same_rows), "bool", "same (input, variant, format) keys")
        add("rows with different errors", r.differing_errors, "rows", "rel_error, 1e-9 rel.")
        spent.append(
            [r.n, *(f"{getattr(r, 'share_' + p.replace(' ', '_')):.0%}" for p in study.PHASES)]
        )
        rows.append(
            [r.n, r.inputs, f"{r.study_rows:,}", f"{r.study_rows_per_s:,.0f}",
             f"{r.script_rows_per_s:,.0f}", f"**{_fmt(r.ratio)}x**",
             f"{_fmt(r.study_seconds)} s", f"{_fmt(r.ground_truth_seconds)} s",
             f"**{r.outside_share:.0%}**", "yes" if r.same_rows else "**no**",
             r.differing_errors]
        )  # fmt: skip
    res.section(
        "\n".join(
            [
                "## 5. The study against the per-row script a user would write (issue 13)",
                "",
                "Softmax, log-sum-exp, log_softmax and cross-entropy (naive and shifted forms), "
                "four formats, one size n at a time: a cold serial study "
                "(`precision.run.study.run`, cache=None) and `benchmarks/script.py` (for every "
                "row: round the input, run the kernel, mpmath reference at 256 bits, normwise "
                "relative error; nothing shared or cached) on the same inputs, one after the "
                "other in this process. Ratio: the study's rows per second over the script's. "
                "Outside ground truth: the share of the runner's own time not spent on ground "
                f"truth. Issue 13's goals: at most {SHARE_GOAL:.0%} outside ground truth and "
                f"at least {RATIO_GOAL:g}x the script, at every n.",
                "",
                _md_table(
                    ["n", "inputs", "rows", "study rows/s", "script rows/s",
                     f"ratio (goal {RATIO_GOAL:g}x)", "study s", "of which ground truth",
                     f"outside ground truth (goal {SHARE_GOAL:.0%})", "same rows",
                     "rows with different errors"],
                    rows,
                ),
                "",
                "Where a cold study's time goes (shares of the runner's time, as it books them: "
                "`precision.run.study.PHASES`):",
                "",
                _md_table(["n", *study.PHASES], spent),
            ]
        )
    )  # fmt: skip
    return table


# ------------------------------------------------------------------ report helpers


def _adder(res: Results, part: str, bench: str, setting: str):
    def add(metric, value, unit="", note=""):
        res.add(part, bench, setting, metric, value, unit, note)

    return add


def _fmt(value) -> str:
    """A number with three significant digits (thousands separated above 1000)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return str(value)
    value = float(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


# ------------------------------------------------------------------ command line

PARTS = ("1", "2", "3", "4", "5")


def run_benchmarks(config: Config, out_dir: Path, parts=PARTS, command: str = "") -> Results:
    """Run the selected parts with ``config``'s sizes, writing the results after each part."""
    spec = load_spec(STUDY, quick=config.quick_spec)
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()
    header = [
        "# Benchmarks",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- command: `{command or 'python -m benchmarks'}` ({config.name} mode)",
        f"- machine: {_machine()}; shared with other work (1-minute load average "
        f"{load[0]:.2f} at the start): read the ratios, measured side by side, more than "
        "absolute times",
        f"- python {platform.python_version()}, commit {_git_commit()}",
    ]
    res = Results(header)
    wall0 = time.perf_counter()
    steps = {
        "1": lambda: study_vs_baseline(res, spec, every=config.every),
        "2": lambda: (
            gt_throughput(
                res, sizes=config.gt_sizes, seconds=config.gt_seconds, inputs=config.gt_inputs
            ),
            gt_rates(res, inputs=config.rate_inputs, solve_n=config.solve_n),
        ),
        "3": lambda: scaling(
            res,
            inputs=config.scaling_inputs,
            memory_rows=config.memory_rows,
            memory_seconds=config.memory_seconds,
        ),
        "4": lambda: parallel(res, spec, configs=config.parallel),
        "5": lambda: study_vs_script(res, sizes=config.versus, grid=config.versus_grid),
    }
    for part in parts:
        start = time.perf_counter()
        print(f"benchmarks: part {part} ...", file=sys.stderr, flush=True)
        steps[part]()
        seconds = time.perf_counter() - start
        res.add(part, "benchmark run", config.name, "part wall time", seconds, "s")
        print(f"benchmarks: part {part} done in {seconds:.0f} s", file=sys.stderr, flush=True)
        res.header = header + [f"- total wall time so far: {_fmt(time.perf_counter() - wall0)} s"]
        res.write(out_dir)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="everything small (BENCH_QUICK=1)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, e.g. 1,2")
    parser.add_argument("--every", type=int, default=None, help="part 1: every k-th chunk only")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
    config = QUICK if quick else FULL
    if args.every:
        config = Config(**{**config.__dict__, "every": args.every})
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    command = os.environ.get("BENCH_COMMAND") or " ".join(
        ["python -m benchmarks", *(argv or sys.argv[1:])]
    )
    res = run_benchmarks(config, args.out, parts, command)
    print(res.markdown())
    print(f"benchmarks: wrote {args.out / 'benchmarks.csv'} and {args.out / 'benchmarks.md'}")
    return 0
