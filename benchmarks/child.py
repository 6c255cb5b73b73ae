"""One scaling measurement in a fresh process, so that its peak memory is its own.

``python -m benchmarks.child '{"mode": "run", "samples": 250}'`` runs the exp study of
`exp_spec` (``run``: `precision.run.study.run`, serial, no cache; ``execute``: `execute` with the
serial executor, streaming chunks to a temporary folder) and prints one JSON line: rows, inputs,
seconds (wall and CPU), rows per second, and ru_maxrss after the imports and at the end (MiB).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from precision.run.execute import execute
from precision.run.spec import StudySpec, parse_spec
from precision.run.study import run

FORMATS = ["float16", "bfloat16", "float32", "float64"]

EXP_CELLS = 4
"""Reachable cells of `exp_spec`'s grid: exp's condition number is |x|, its magnitude, so only
the diagonal (cond decade = magnitude decade) of the 4 x 4 grid holds inputs."""

ROWS_PER_INPUT = len(FORMATS)
"""exp has one variant: one row per input and format."""


def exp_spec(samples: int) -> StudySpec:
    """An exp-only study with ``samples`` inputs per cell: about 4 * samples inputs and
    16 * samples rows, |x| from 0.1 to 1000 (past float16's and float32's overflow)."""
    return parse_spec(
        {
            "name": "bench-exp",
            "seed": 20261125,
            "formats": FORMATS,
            "problems": ["exp"],
            "grid": {
                "log10_cond": [-1, 3],
                "log10_magnitude": [-1, 3],
                "sizes": [1],
                "samples_per_cell": samples,
            },
        }
    )


def measure(mode: str, samples: int) -> dict:
    """Run the exp study in this process and return its size, time and peak memory."""
    spec = exp_spec(samples)
    rss_start = _maxrss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "run":
        table = run(spec)
    elif mode == "execute":
        with tempfile.TemporaryDirectory() as tmp:
            table, _ = execute(spec, Path(tmp) / "out", executor="serial")
    else:
        raise ValueError(f"mode must be run or execute, got {mode!r}")
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    rows = len(table)
    return {
        "mode": mode,
        "samples": samples,
        "rows": rows,
        "inputs": rows // ROWS_PER_INPUT,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "cpu_seconds": cpu_seconds,
        "rows_per_cpu_s": rows / cpu_seconds,
        "maxrss_start_mib": rss_start,
        "maxrss_mib": _maxrss_mib(),
    }


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> None:
    args = json.loads((argv if argv is not None else sys.argv[1:])[0])
    print(json.dumps(measure(args["mode"], int(args["samples"]))), flush=True)


if __name__ == "__main__":
    main()
