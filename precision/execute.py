"""Run a study's chunks on an executor, stream each finished chunk to disk, resume after a kill.

Executors: ``serial`` (this process, for debugging), ``process`` (a local process pool, all
cores by default) and ``dask`` (a Dask distributed cluster at ``scheduler``, or a local one).
Every chunk's rows depend only on the spec and the chunk, and the table is assembled in chunk
order, so the result is the same table whatever the executor, the number of workers, or how
often the run was interrupted and resumed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from precision import store
from precision.spec import StudySpec
from precision.study import Chunk, ChunkResult, chunks, concat_tables, run_chunk

EXECUTORS = ("serial", "process", "dask")


class ExecutorError(Exception):
    """The executor could not be started (e.g. no Dask scheduler at the given address)."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM after its workers were stopped; the message says
    how many chunks are kept in ``.parts/`` for a rerun to resume from."""

    def __init__(self, kept: int, total: int):
        super().__init__(f"{kept} of {total} chunks kept; rerun the same command to resume")
        self.kept, self.total = kept, total


SCHEDULER_TIMEOUT = 15.0
"""Seconds to wait for a Dask scheduler to answer before giving up (a hard deadline: the
connection is attempted in a thread that is abandoned when it passes)."""


@dataclass(frozen=True)
class RunReport:
    """How a run went: rows, chunks computed and resumed, where the time went, and what was
    found wrong on the way (and recomputed, or done without)."""

    rows: int
    chunks: int
    resumed: int
    discarded: int  # parts of older code or an unreadable manifest, recomputed
    seconds: float
    ground_truth_seconds: float
    compute_seconds: float
    first_traceback: str | None = None  # of the first variant that raised, in chunk order
    damaged: int = 0  # parts that failed their check (see store.Parts.finished), recomputed
    cache_rejected: int = 0  # cache records that failed their checksum, recomputed
    cache_problem: str | None = None  # why the run went on without its cache (None: it did not)


@dataclass(frozen=True)
class CacheUse:
    """What one chunk met in the ground-truth cache: records that failed their checksum (and
    were recomputed), and why the cache became unusable (None: it did not)."""

    rejected: int = 0
    failure: str | None = None


def execute(
    spec: StudySpec,
    out_dir: Path,
    *,
    executor: str = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    cache: store.GroundTruthCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, RunReport]:
    """Run every chunk not already finished under ``out_dir`` and return the whole table.

    Parameters
    ----------
    spec : StudySpec
    out_dir : Path
        The study's output folder; finished chunks stream to ``out_dir/.parts/``.
    executor : {"serial", "process", "dask"}, keyword-only
    workers : int, keyword-only
        Worker processes (default: all cores) for ``process`` and a local Dask cluster.
    scheduler : str, keyword-only
        Address of a running Dask scheduler (``tcp://host:8786``); None starts a local cluster.
    force : bool, keyword-only
        Discard an unfinished run of a different spec instead of refusing.
    cache : precision.store.GroundTruthCache, keyword-only
        Persistent ground-truth cache shared by the workers (None: no cache). One that
        cannot be used is done without (``RunReport.cache_problem`` says why); records that
        fail their checksum are recomputed (``RunReport.cache_rejected``).
    progress : callable, keyword-only
        Called with a number of inputs finished (resumed chunks are reported first).

    Returns
    -------
    (pandas.DataFrame, RunReport)
        The table (identical to `precision.study.run`'s) and the run's accounting. Parts that
        fail their check are recomputed (``RunReport.damaged``).
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    start = time.perf_counter()
    plan = chunks(spec)
    parts = store.Parts(out_dir, spec, force=force)
    finished = parts.finished()
    todo = [chunk for chunk in plan if chunk.id not in finished]
    if progress:
        progress(sum(chunk.inputs(spec) for chunk in plan if chunk.id in finished))
    cache, cache_problem = _prepared(cache) if todo else (None, None)
    rejected = 0
    results = _results(spec, todo, executor, workers, scheduler, cache)
    try:
        for chunk, (result, use) in results:
            rejected += use.rejected
            cache_problem = cache_problem or use.failure
            finished[chunk.id] = _timing(result)
            parts.write(chunk.id, result.table, finished[chunk.id])
            if progress:
                progress(result.inputs)
    except KeyboardInterrupt:  # the workers are stopped (see _process_pool); parts stay
        raise Interrupted(len(finished), len(plan)) from None
    finally:
        results.close()  # stops the pool now, wherever the interrupt met this loop
    table = concat_tables([parts.read(chunk.id) for chunk in plan])
    report = RunReport(
        rows=len(table),
        chunks=len(plan),
        resumed=len(plan) - len(todo),
        discarded=parts.discarded,
        seconds=time.perf_counter() - start,
        ground_truth_seconds=sum(t.get("ground_truth_seconds", 0.0) for t in finished.values()),
        compute_seconds=sum(t.get("seconds", 0.0) for t in finished.values()),
        first_traceback=_first_traceback(plan, finished),
        damaged=parts.damaged,
        cache_rejected=rejected,
        cache_problem=cache_problem,
    )
    return table, report


def _timing(result: ChunkResult) -> dict:
    """What a part records of its chunk's run besides its rows."""
    timing = {"seconds": result.seconds, "ground_truth_seconds": result.ground_truth_seconds}
    if result.first_traceback:  # kept with the part, so a resumed run can still show it
        timing["first_traceback"] = result.first_traceback
    return timing


def _prepared(cache: store.GroundTruthCache | None):
    """The cache to hand the workers (None: none, or unusable) and why it is unusable.

    Prepared once, here: workers switching a new file to WAL together can collide, and a
    cache that cannot be written is then found once instead of by every worker.
    """
    if cache is None or cache.prepare():
        return cache, None
    return None, cache.failure


def _run_chunk(spec: StudySpec, chunk: Chunk, cache) -> tuple[ChunkResult, CacheUse]:
    """`run_chunk` and what it met in the cache.

    Process and Dask workers each use an unpickled copy of the cache that dies with the task,
    so its count of rejected records and its failure travel back with the chunk's result (the
    serial executor shares the parent's cache, hence the difference of counts).
    """
    if cache is None:
        return run_chunk(spec, chunk), CacheUse()
    before = cache.rejected
    result = run_chunk(spec, chunk, cache=cache)
    return result, CacheUse(cache.rejected - before, cache.failure)


def _first_traceback(plan: list[Chunk], finished: dict[str, dict]) -> str | None:
    """The traceback of the first variant that raised, in chunk order (resumed parts too)."""
    tracebacks = (finished.get(chunk.id, {}).get("first_traceback") for chunk in plan)
    return next((t for t in tracebacks if t), None)


def _results(
    spec: StudySpec,
    todo: list[Chunk],
    executor: str,
    workers: int | None,
    scheduler: str | None,
    cache: store.GroundTruthCache | None,
) -> Iterator[tuple[Chunk, tuple[ChunkResult, CacheUse]]]:
    """Yield each chunk with its result and cache use (`_run_chunk`), in completion order."""
    if not todo:
        return
    if executor == "serial":
        for chunk in todo:
            yield chunk, _run_chunk(spec, chunk, cache)
    elif executor == "process":
        yield from _process_pool(spec, todo, workers or os.cpu_count() or 1, cache)
    else:
        yield from _dask(spec, todo, workers or os.cpu_count() or 1, scheduler, cache)


def _process_pool(spec, todo, workers: int, cache):
    # spawn, not fork: a forked child inherits the parent's threads (pyarrow, BLAS) mid-state.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(todo)),
        mp_context=context,
        initializer=_worker_started,
        initargs=(os.getpid(),),
    )
    try:
        futures = {pool.submit(_run_chunk, spec, chunk, cache): chunk for chunk in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()
    except BaseException:
        _stop(pool)  # Ctrl-C, SIGTERM or a failed chunk: the chunks still running are lost
        raise
    pool.shutdown()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what has not started and terminate the workers (waiting for
    them would wait for their chunks)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.join(timeout=5)


def _worker_started(parent: int) -> None:
    """A pool worker's first step: leave Ctrl-C to the parent (which stops the pool, so no
    worker prints a traceback), and exit on its own once the parent is gone (killed with -9,
    it cannot stop its workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int, every: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)  # an orphan: nobody waits for its chunk


def _dask(spec, todo, workers: int, scheduler: str | None, cache):
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise ExecutorError(
            "the dask executor needs dask.distributed: pip install 'precision[dask]'"
        ) from None
    cluster = None
    if scheduler:
        client = _connect(Client, scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        futures = {
            client.submit(
                _run_chunk, spec, chunk, cache, pure=False, key=f"{spec.name}-{chunk.id}"
            ): chunk
            for chunk in todo
        }
        for future in dask_completed(futures):
            yield futures[future], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _connect(client_class, scheduler: str):
    """A Dask client of ``scheduler``, or ExecutorError within ``timeout`` seconds.

    Dask's own timeout covers the TCP connection but not every handshake (a server that
    accepts and never speaks held it for minutes), so the attempt runs in a daemon thread and
    is abandoned after `SCHEDULER_TIMEOUT` seconds.
    """
    timeout = SCHEDULER_TIMEOUT  # read at the call: a test may shorten it
    outcome: dict = {}

    def attempt():
        try:
            outcome["client"] = client_class(scheduler, timeout=f"{int(timeout)}s")
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if "client" in outcome:
        return outcome["client"]
    error = outcome.get("error")
    why = f"{type(error).__name__}: {error}" if error else f"no answer in {timeout:.0f} s"
    raise ExecutorError(f"cannot reach the Dask scheduler at {scheduler}: {why}")
