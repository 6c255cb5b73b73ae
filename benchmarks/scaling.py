"""Parts 3 and 4: how the runner scales with the study's size and with workers.

Part 3 (`scaling`): rows per second of a scalar (exp) study at growing sizes, and peak memory
(ru_maxrss) at about a million rows, each in a fresh subprocess (`benchmarks.child`). Part 4
(`parallel`): wall time of `execute` per executor (serial, process, Dask) and number of workers,
and whether their tables agree.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.child import EXP_CELLS, ROWS_PER_INPUT
from benchmarks.results import ROOT, Results, md_table, number
from precision import store
from precision.run.execute import execute
from precision.run.spec import StudySpec

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
                number(r.seconds),
                f"{r.rows_per_s:,.0f}",
                f"{r.rows_per_cpu_s:,.0f}",
                number(relative) + "x" if r.mode == "run" else "",
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
            f"{number(last.maxrss_start_mib + growth)} MiB if memory grows linearly."
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
                md_table(
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
                number(r.seconds),
                number(r.compute_seconds),
                number(speedup) + "x" if r.workers != 1 else "",
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
                md_table(
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
