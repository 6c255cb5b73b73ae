"""Run a study's chunks on an executor, stream each finished chunk to disk, resume after a kill.

Executors: ``serial`` (this process, for debugging), ``process`` (a local process pool, all
cores by default) and ``dask`` (a Dask distributed cluster at ``scheduler``, or a local one).
Every chunk's rows depend only on the spec and the chunk, and the table is assembled in chunk
order, so the result is the same table whatever the executor, the number of workers, or how
often the run was interrupted and resumed. How large and how long a run will be before it starts
(the size check, ``precision run --dry-run``) is `precision.run.estimate`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from precision import store
from precision.run.pool import sigint_ignored, spawn_pool, stop_pool
from precision.run.spec import StudySpec
from precision.run.study import Chunk, ChunkResult, chunks, concat_tables, run_chunk

EXECUTORS = ("serial", "process", "dask")


class ExecutorError(Exception):
    """The executor could not be started (e.g. no Dask scheduler at the given address)."""


class WorkerDied(ExecutorError):
    """A worker process died in the middle of a chunk (killed: the kernel's out-of-memory
    killer, kill -9); the message says so and how many chunks are kept for a rerun."""


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
    pool: ProcessPoolExecutor | None = None,
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
    pool : concurrent.futures.ProcessPoolExecutor, keyword-only
        For ``process``: a pool from `precision.run.pool.spawn_pool` that outlives this call
        (several studies in a row, its workers spawned and their imports done once); it is
        stopped only on failure or interruption. None: a pool of its own for this call.

    Returns
    -------
    (pandas.DataFrame, RunReport)
        The table (identical to `precision.run.study.run`'s) and the run's accounting. Parts that
        fail their check are recomputed (``RunReport.damaged``).
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    start = time.perf_counter()
    # Reach a named scheduler before touching the disk: an unreachable one leaves nothing
    # behind (no parts, no ground-truth cache beside the output folder).
    client = _scheduler_client(scheduler) if executor == "dask" and scheduler else None
    try:
        plan = chunks(spec)
        parts = store.Parts(out_dir, spec, force=force)
        try:
            finished, todo, rejected, cache_problem = _run_todo(
                spec, plan, parts, executor, workers, client, cache, progress, pool
            )
        except BaseException:  # failed before its first chunk: no manifest left behind
            parts.remove_if_empty()
            raise
    finally:
        if client is not None:
            client.close()
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


def _run_todo(spec, plan, parts, executor, workers, client, cache, progress, pool):
    """Run the chunks of ``plan`` that ``parts`` does not hold, writing each as it finishes.

    Returns (chunk id -> timing of every finished chunk, the chunks run, cache records
    rejected, why the cache was done without).
    """
    finished = parts.finished()
    todo = [chunk for chunk in plan if chunk.id not in finished]
    if progress:
        progress(sum(chunk.inputs(spec) for chunk in plan if chunk.id in finished))
    cache, cache_problem = _prepared(cache) if todo else (None, None)
    rejected = 0
    results = _results(spec, todo, executor, workers, client, cache, pool)
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
    except WorkerDied as died:  # likewise
        kept = f"{len(finished)} of {len(plan)} chunks kept; rerun the same command to resume"
        raise WorkerDied(f"{died}; {kept}") from None
    finally:
        results.close()  # stops the pool now, wherever the interrupt met this loop
    return finished, todo, rejected, cache_problem


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
    client,
    cache: store.GroundTruthCache | None,
    pool: ProcessPoolExecutor | None = None,
) -> Iterator[tuple[Chunk, tuple[ChunkResult, CacheUse]]]:
    """Yield each chunk with its result and cache use (`_run_chunk`), in completion order.
    ``client``: a Dask client of a named scheduler, already connected (else a local cluster);
    ``pool``: the process pool to use (else one of its own)."""
    if not todo:
        return
    if executor == "serial":
        for chunk in todo:
            yield chunk, _run_chunk(spec, chunk, cache)
    elif executor == "process":
        yield from _process_pool(spec, todo, workers or os.cpu_count() or 1, cache, pool)
    else:
        yield from _dask(spec, todo, workers or os.cpu_count() or 1, client, cache)


def _process_pool(spec, todo, workers: int, cache, shared: ProcessPoolExecutor | None = None):
    pool = shared or spawn_pool(min(workers, len(todo)))
    try:
        with sigint_ignored():  # the workers start during submit (`precision.run.pool`)
            futures = {pool.submit(_run_chunk, spec, chunk, cache): chunk for chunk in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()
    except BrokenProcessPool:  # a worker was killed: the pool cannot go on
        died = _killed_by(pool)
        stop_pool(pool)
        raise WorkerDied(f"a worker process died{died}") from None
    except BaseException:
        stop_pool(pool)  # Ctrl-C, SIGTERM or a failed chunk: the chunks still running are lost
        raise
    if shared is None:
        pool.shutdown()


def _killed_by(pool) -> str:
    """ " (killed by SIGKILL, ...)" for a dead worker of ``pool`` whose signal is known."""
    processes = (getattr(pool, "_processes", None) or {}).values()
    codes = [p.exitcode for p in processes if p.exitcode is not None and p.exitcode < 0]
    if not codes:
        return ""
    name = signal.Signals(-codes[0]).name
    why = ", which the kernel's out-of-memory killer sends" if name == "SIGKILL" else ""
    return f" (killed by {name}{why})"


def _dask_distributed():
    try:
        import dask.distributed
    except ImportError:
        raise ExecutorError(
            "the dask executor needs dask.distributed: pip install 'precision[dask]'"
        ) from None
    return dask.distributed


def _scheduler_client(scheduler: str):
    """A client connected to the Dask scheduler at ``scheduler`` (`_connect`)."""
    return _connect(_dask_distributed().Client, scheduler)


def _dask(spec, todo, workers: int, client, cache):
    distributed = _dask_distributed()
    Client, LocalCluster, wait = distributed.Client, distributed.LocalCluster, distributed.wait
    cluster = None
    if client is None:
        with sigint_ignored(), _quiet_workers():  # Ctrl-C is the parent's: one line
            cluster = LocalCluster(
                n_workers=min(workers, len(todo)),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # dashboard_address=None leaves the scheduler's HTTP server on port 8787, and
                # another cluster holding it printed a 4-line warning: any free port instead.
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            )
        client = Client(cluster)
    stopped = False
    try:
        futures = {
            client.submit(
                _run_chunk, spec, chunk, cache, pure=False, key=f"{spec.name}-{chunk.id}"
            ): chunk
            for chunk in todo
        }
        pending = set(futures)
        with _interrupts_noted() as interrupted:
            while pending:
                if interrupted.is_set():  # an interrupt Python dropped (see _interrupts_noted)
                    raise KeyboardInterrupt
                try:
                    done = wait(pending, timeout=0.25, return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    continue
                for future in done:
                    pending.discard(future)
                    yield futures[future], future.result()
    except BaseException:  # Ctrl-C, SIGTERM, a failed chunk: the tasks running are lost
        stopped = True
        raise
    finally:
        # Closing a cluster whose tasks are cut short logs warnings and tracebacks ("worker
        # process still alive after 4.0 seconds, killing"): the run says it in one line.
        with _logs_silenced("distributed") if stopped else contextlib.nullcontext():
            if cluster is not None:  # a named scheduler's client is closed by `run`
                client.close()
                cluster.close(timeout=10)


@contextlib.contextmanager
def _interrupts_noted():
    """An event that SIGINT (and SIGTERM, where a Python handler takes it) sets besides
    raising as their handlers do.

    Python drops an exception raised while the main thread runs a gc callback (printing
    "Exception ignored in: <GCDiagnosis._gc_callback>", which distributed installs), so a
    Ctrl-C can be lost and the run go on; the caller checks the event instead, and such a
    dropped KeyboardInterrupt is not printed.
    """
    noted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):

            def note(number, frame, handler=handler):
                noted.set()
                handler(number, frame)

            previous[signum] = signal.signal(signum, note)
    hook = sys.unraisablehook

    def unraisable(what):
        if not isinstance(what.exc_value, KeyboardInterrupt):
            hook(what)

    sys.unraisablehook = unraisable
    try:
        yield noted
    finally:
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _quiet_workers():
    """Worker processes started inside log only critical events (read from the environment
    when they import distributed): cut short by Ctrl-C, they would print a warning for each
    task cancelled and tracebacks of closed connections. A chunk that fails still fails the
    run (its exception comes back with its result), and the parent's own logs stay."""
    key = "DASK_LOGGING__DISTRIBUTED"
    previous = os.environ.get(key)
    os.environ[key] = "critical"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


@contextlib.contextmanager
def _logs_silenced(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


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
