"""Local worker processes that leave Ctrl-C to their parent: the study runner's process
executor and the report's figures run on them.

Workers are spawned, not forked: a forked child inherits the parent's threads (pyarrow's,
BLAS's) mid-state. A terminal sends Ctrl-C to every process of its group; the workers ignore
it (they are started with SIGINT ignored, which survives exec, and ignore it again in their
initializer), so only the parent raises, stops the pool and says so in one line. A worker
whose parent was killed with -9 exits on its own.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (`worker_started` their first step). Submit to
    it inside `sigint_ignored`: its workers start on `submit`."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=worker_started,
        initargs=(os.getpid(),),
    )


def parallel_map(function: Callable[[T], R], items: Iterable[T], *, workers: int) -> list[R]:
    """``[function(item) for item in items]``, in order, on up to ``workers`` processes
    (`spawn_pool`; in this process for one worker or one item). ``function`` and the items
    travel by pickle. An exception, Ctrl-C or SIGTERM stops the pool at once and is raised."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    pool = spawn_pool(min(workers, len(items)))
    try:
        with sigint_ignored():
            futures = [pool.submit(function, item) for item in items]
        results = [future.result() for future in futures]
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown()
    return results


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what has not started and terminate the workers (waiting for
    them would wait for their tasks)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.join(timeout=5)


def worker_started(parent: int) -> None:
    """A pool worker's first step: leave Ctrl-C to the parent (which stops the pool, so no
    worker prints a traceback; a worker started inside `sigint_ignored` already ignores it),
    and exit on its own once the parent is gone (killed with -9, it cannot stop its
    workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int, every: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)  # an orphan: nobody waits for its result


@contextlib.contextmanager
def sigint_ignored():
    """SIGINT ignored while processes are started, which keep it ignored (an ignored signal
    survives exec, and Python then installs no KeyboardInterrupt handler): Ctrl-C, which a
    terminal sends to every process of the group, then reaches only this one. A worker takes
    a second or more to import its modules before its initializer runs; without this, a
    Ctrl-C in that second printed its KeyboardInterrupt traceback."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
