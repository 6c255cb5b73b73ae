"""``make bench``: the study against a naive baseline, ground-truth throughput, scaling, workers,
and the study against the per-row script a user would write (part 5, issue 13).

Every comparison is measured side by side in one run (the machine may be shared: ratios of
timings taken together are what to read, absolute times less so). Results go to
``<out>/benchmarks.csv`` (one measurement a line: part, benchmark, setting, metric, value,
unit, note) and ``<out>/benchmarks.md`` (the same, as tables, with the run's date, machine and
command). ``--quick`` (or ``BENCH_QUICK=1``) runs everything small, in a few minutes.

One module a part: `benchmarks.versus_baseline` (1), `benchmarks.truth_rates` (2),
`benchmarks.scaling` (3 and 4), `benchmarks.versus_script` (5); what they share (`Results`, the
Markdown helpers) is in `benchmarks.results`. This module holds the run's sizes (`FULL`, `QUICK`)
and the command line. Speed goals live beside each part (``GOAL``, ``RATE_GOALS``, ...) and in
the output, never in the tests.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.results import ROOT, STUDY, Results, git_commit, machine, number
from benchmarks.scaling import parallel, scaling
from benchmarks.truth_rates import gt_rates, gt_throughput
from benchmarks.versus_baseline import study_vs_baseline
from benchmarks.versus_script import study_vs_script
from precision.run.spec import load_spec


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
        f"- machine: {machine()}; shared with other work (1-minute load average "
        f"{load[0]:.2f} at the start): read the ratios, measured side by side, more than "
        "absolute times",
        f"- python {platform.python_version()}, commit {git_commit()}",
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
        res.header = header + [f"- total wall time so far: {number(time.perf_counter() - wall0)} s"]
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
