"""How large and how long a run of a spec will be, estimated before it starts from the spec's
sizes alone: rows, inputs, chunks, CPU seconds and memory (`estimate`), and the refusal of a
spec beyond what this machine can give it (`check_size`, `TooLarge`, `limits`). Used by
``precision run`` (its size check, and ``--dry-run``, which prints the estimate and runs nothing)
and by `precision.run.api.run_study`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from precision.run.execute import ExecutorError
from precision.run.spec import StudySpec
from precision.run.study import CHUNK_ELEMENTS, cells_per_chunk, row_looped

# What a spec will cost is estimated from its sizes alone, before any work, so that a spec
# far beyond the machine (1,000 x 1,000 linear systems, a million-element vector drawn 10,000
# times per cell) is refused in one line instead of running for days or dying of MemoryError.
# The constants are rough values measured on a 2-core x86-64 machine (python 3.11, 23 GiB) by
# running one study of each problem and size (4 formats, 2 x 1 cells, 2 samples, no cache)
# with `precision.run.study.run_chunk` and reading ChunkResult.ground_truth_seconds, and
# ru_maxrss before and after one chunk, as in
#
#   spec = parse_spec({"name": "m", "seed": 1, "problems": [P], "formats": [all four],
#                      "grid": {"log10_cond": [0, 2], "log10_magnitude": [0, 1],
#                               "sizes": [N], "samples_per_cell": 2}})
#   results = [run_chunk(spec, c) for c in chunks(spec)]  # time, ground_truth_seconds, rows
#
#   ground truth, seconds per input, per element of a vector input (n = 1e4 .. 1e5):
#     softmax 37 us, variance 2.4 us, summation 0.9 us (cross_entropy, n = 1e3: 6 us);
#   ground truth, seconds per input, per n^3 of a matrix input (n = 40):
#     linear_system 20 us, least_squares 37 us, quadratic 36 us, matrix_condition 3 us;
#     critical_point 1.2 ms at n = 20 (certified eigenvalues: 30 times the model's value);
#   everything else (rounding, kernels, metrics, table), seconds per row: 0.3 to 1 ms, plus
#     per element 0.45 us (summation), 1.2 us (softmax) to 2.2 us (variance), or per n^3
#     0.15 us (linear_system) to 0.5 us (matrix_condition); an iterative kernel (quadratic's
#     gd) takes ~0.1 s a row whatever n;
#   memory: a stored table holds 404 to 413 bytes a row in pandas (memory_usage(deep=True)
#     of the shipped studies' results/*/errors.parquet); a worker's peak grows by 2 KiB
#     (n = 1e5) to 4 KiB (n = 1e3) per input element of its chunk (its ground truths are held
#     for the whole chunk), and by ~0.4 KiB per row (summation, n = 10: 440,000 rows).
#
# Against the shipped studies' own runs (results/*/meta.json, compute_seconds, 2 cores) the
# model is rough, as intended: from 24 times too high (derivatives: 48 s for 2 s; its rows are
# cheap in large batches) to 40 times too low (descent: 2 s for 94 s, iterative gd); the
# matrix studies come out 3 to 6 times high (linear_systems 1,553 s for 547 s). It is meant to
# tell minutes from weeks, and terabytes from gigabytes, before any work.

GROUND_TRUTH_SECONDS = 1e-3
"""Ground truth of one input: this much, plus `WORK_SECONDS` per unit of its work."""
WORK_SECONDS = {"ground truth": 40e-6, "vector row": 2e-6, "matrix row": 0.5e-6}
"""Seconds per unit of work (an input element; n^3 for a matrix problem): its ground truth,
and each of its rows (one variant in one format)."""
ROW_SECONDS = 0.5e-3
"""Seconds of each row besides its work: rounding, the kernel call, the metrics, the table."""
TABLE_BYTES_PER_ROW = 1024
"""The run's process holds the table once read from the parts and once concatenated (about
410 bytes a row each), and summaries beside it."""
CHUNK_BYTES_PER_ELEMENT = 4 * 1024
CHUNK_BYTES_PER_ROW = 1024
"""A worker's memory for the chunk it runs: per input element and per row of the chunk."""
MEMORY_SHARE = 0.5
"""A run is refused when its estimated memory passes this share of the machine's memory."""
MAX_HOURS = 24
"""... or when its estimated time, spread over its workers, passes this many hours."""


class TooLarge(ExecutorError):
    """The spec's estimated memory or time is beyond what this machine can give it."""


@dataclass(frozen=True)
class Estimate:
    """What a run of a spec will cost (see the constants above): the rows, inputs and chunks
    of its plan (rows and inputs at most: cells the generator cannot reach give fewer), CPU
    seconds, the bytes of the table in the run's process, and of each chunk in a worker
    (largest first)."""

    rows: int
    inputs: int
    chunks: int
    cpu_seconds: float
    table_bytes: int
    chunk_sizes: tuple[int, ...]

    @property
    def chunk_bytes(self) -> int:
        """Bytes of the largest chunk."""
        return self.chunk_sizes[0] if self.chunk_sizes else 0

    def seconds(self, workers: int) -> float:
        return self.cpu_seconds / max(1, min(workers, self.chunks))

    def memory(self, workers: int, *, here: bool = True) -> int:
        """Bytes at the peak on this machine: the table, and the ``workers`` largest chunks at
        once unless they run on other machines (``here`` False: a Dask cluster)."""
        return self.table_bytes + (sum(self.chunk_sizes[:workers]) if here else 0)

    def line(self, workers: int, *, here: bool = True) -> str:
        """``about 50 rows, 19.1 GiB of memory and 2.6 days on 1 worker`` (the workers that
        have a chunk to run)."""
        used = max(1, min(workers, self.chunks))
        return (
            f"about {self.rows:,} rows, {_bytes(self.memory(workers, here=here))} of memory "
            f"and {_duration(self.seconds(workers))} on {used} worker{'s' if used != 1 else ''}"
        )


def estimate(spec: StudySpec) -> Estimate:
    """The cost of running ``spec`` (from its sizes alone: no input is drawn, no data set is
    loaded, so it is quick however large the spec)."""
    from precision.problems import PROBLEMS
    from precision.run.spec import _is_matrix

    limit = spec.chunk_elements or CHUNK_ELEMENTS
    rows = inputs = count = 0
    seconds, sizes = 0.0, []
    for name in spec.problems:
        problem, per_input = PROBLEMS[name], len(spec.received()) * len(spec.runs_of(name))
        matrix = _is_matrix(problem)
        row = WORK_SECONDS["matrix row" if matrix else "vector row"]
        for n, drawn, cell, cells, step in _batches(spec, problem, limit):
            elements = math.prod(problem.input_shape(n))
            work = n**3 if matrix else elements
            inputs += drawn
            rows += drawn * per_input
            count += -(-cells // step)
            seconds += drawn * (GROUND_TRUTH_SECONDS + WORK_SECONDS["ground truth"] * work)
            seconds += drawn * per_input * (ROW_SECONDS + row * work)
            per_cell = cell * (elements * CHUNK_BYTES_PER_ELEMENT + per_input * CHUNK_BYTES_PER_ROW)
            # full chunks of ``step`` cells, then the rest
            sizes += [step * per_cell] * (cells // step) + [cells % step * per_cell] * bool(
                cells % step
            )
    sizes = tuple(sorted(sizes, reverse=True))
    return Estimate(rows, inputs, count, seconds, rows * TABLE_BYTES_PER_ROW, sizes)


def _batches(spec: StudySpec, problem, limit: int):
    """(n, inputs, inputs per cell or row, cells or rows, cells or rows per chunk) of each
    size of ``problem`` and each data set it reads, as `precision.run.study.chunks` cuts them."""
    sizes = spec.grid.sizes if problem.takes_sizes else (1,)
    cells = len(spec.grid.cells())
    samples = spec.grid.samples_for(problem.name)
    for n in sizes:
        per_cell = samples * math.prod(problem.input_shape(n))
        step = cells_per_chunk(
            cells, per_cell, limit, spread=row_looped(spec.runs_of(problem.name))
        )
        yield n, samples * cells, samples, cells, step
    if problem.from_logits is None:
        return
    for dataset in spec.datasets:
        from precision.core.values import npy_header

        (count, n), _ = npy_header(dataset.path, dataset.path.stat().st_size)
        count = min(count, dataset.rows)
        yield n, count, 1, count, max(1, limit // max(1, n))


def check_size(
    spec: StudySpec,
    *,
    workers: int,
    here: bool = True,
    memory: int | None = None,
    force: bool = False,
) -> Estimate:
    """The spec's `Estimate`, or `TooLarge` (one line, naming the estimate and ``--force``)
    when it needs more than `MEMORY_SHARE` of ``memory`` (default: this machine's) or more
    than `MAX_HOURS` with ``workers`` chunks at a time (``here`` False: the workers are on
    other machines, and only the table counts against this one's memory). ``force`` skips
    the refusal."""
    found = estimate(spec)
    memory = _machine_memory() if memory is None else memory
    too_much = found.memory(workers, here=here) > MEMORY_SHARE * memory if memory else False
    too_long = found.seconds(workers) > MAX_HOURS * 3600
    if (too_much or too_long) and not force:
        fewer = _workers_that_fit(found, memory) if too_much and not too_long and here else 0
        instead = f"run with --workers {fewer}, " if 0 < fewer < workers else ""
        raise TooLarge(
            f"{spec.name} is too large to run here: {found.line(workers, here=here)} "
            f"({limits(memory)}); {instead}shrink its grid, sizes or samples, or use --force "
            "to insist"
        )
    return found


def limits(memory: int | None = None) -> str:
    """``limits: 11.5 GiB, 50% of this machine's memory, and 24 h``."""
    memory = _machine_memory() if memory is None else memory
    if not memory:
        return f"limit: {MAX_HOURS} h"
    return (
        f"limits: {_bytes(int(MEMORY_SHARE * memory))}, {MEMORY_SHARE:.0%} of this machine's "
        f"memory, and {MAX_HOURS} h"
    )


def _workers_that_fit(found: Estimate, memory: int) -> int:
    """The most workers whose chunks fit in memory beside the table (0: not even one)."""
    room = MEMORY_SHARE * memory - found.table_bytes
    return int(room // found.chunk_bytes) if room > 0 and found.chunk_bytes else 0


def _machine_memory() -> int:
    """Bytes of physical memory (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError  # not reached


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.1f} days"
