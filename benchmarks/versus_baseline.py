"""Part 1: the softmax-family study (cold cache, then warm) against the naive baseline.

Chunk by chunk, side by side: the study's rows and seconds against `benchmarks.baseline` (mpmath
at a fixed 256 bits for every row, nothing shared, nothing cached), the speed-up against `GOAL`,
whether both give the same errors (a referee settles those that differ), and where the study's
time goes.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

from benchmarks.baseline import BASELINE_PREC, REFEREE_BITS, baseline_chunk, compare, referee
from benchmarks.results import Results, adder, md_table, number
from precision import store
from precision.run import study
from precision.run.spec import StudySpec
from precision.run.study import Chunk, chunks, concat_tables, run_chunk

REFEREE = (
    f"one mpmath evaluation at max(4096, gap log2(e) + {REFEREE_BITS}) bits, gap = max x - min x"
)
GOAL = 20.0
"""Speed-up of the study over the naive baseline that the issue asks for."""


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
    add = adder(res, "1", bench, scope)
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
            [problem, size, count, number(cold), number(gt), number(base), number(ratio) + "x"]
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
        md_table(
            ["measurement", "value"],
            [
                ["rows", f"{rows:,}"],
                [
                    "study, cold cache",
                    f"{number(seconds['cold'])} s (ground truth {number(gt_seconds['cold'])} s)",
                ],
                ["study, warm cache (rerun)", f"{number(seconds['warm'])} s"],
                [
                    "naive baseline",
                    f"{number(seconds['baseline'])} s "
                    f"(ground truth {number(gt_seconds['baseline'])} s)",
                ],
                ["**speed-up, cold cache**", f"**{number(speedup)}x** (goal {GOAL:g}x: {verdict})"],
                ["speed-up, warm cache", f"{number(speedup_warm)}x"],
                ["speed-up, cold cache, by CPU time", f"{number(speedup_cpu)}x"],
                ["study time besides ground truth", f"{number(shared)} s"],
                ["ceiling if ground truth were free", f"{number(ceiling)}x"],
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
                ["cpu / wall of this process", number(cpu_share)],
            ],
        ),
        "",
        "Where the study's time goes (a separate pass over the same chunks, no cache, each "
        "step timed; the baseline shares every step but ground truth):",
        "",
        md_table(
            ["step", "seconds", "share"],
            [[k, number(v), f"{v / phase_total:.0%}"] for k, v in phases.items()]
            + [["total", number(phase_total), "100%"]],
        ),
        "",
        "Per problem and size (cold cache):",
        "",
        md_table(
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
            md_table(
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
