"""``precision run``: one study, or several on one pool of workers; the checks before any work,
the run, its files and its final line."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple

from precision.cli.text import _one_line, _shorten
from precision.core.values import InputError
from precision.run.estimate import check_size, limits
from precision.run.execute import ExecutorError, RunReport
from precision.run.spec import StudySpec, load_spec


def _cache_file(args, out_dir: Path) -> Path:
    return (args.cache or Path(out_dir).parent / ".cache") / "ground_truth.sqlite"


def _run(args) -> int:
    # Every spec and folder is checked before the heavy imports and before any study runs:
    # bad input in the last of several studies leaves the results of the first untouched.
    specs = [load_spec(path, quick=args.quick) for path in args.study]
    if len(specs) > 1:
        _check_several(args, specs)
    out_dirs = [args.out or Path("results") / spec.name for spec in specs]
    for out_dir in out_dirs:
        _check_out(out_dir)
    _check_executor_flags(args, force=args.force)
    found = [_check_size(args, spec) for spec in specs]
    if args.dry_run:
        workers, here = _parallel(args)
        for spec, size in zip(specs, found, strict=True):
            print(
                f"{spec.name}: {size.line(workers, here=here)} in {size.chunks:,} "
                f"chunk{'s' if size.chunks != 1 else ''} "
                f"({limits()}); nothing was run"
            )
        return 0

    if len(specs) > 1:
        return _run_several(args, specs, out_dirs)
    from precision import store

    spec, out_dir = specs[0], out_dirs[0]
    with store.output_lock(out_dir), _terminate_as_interrupt():
        store.check_output_folder(out_dir, spec, force=args.force)
        table, report = _compute(args, spec, out_dir)
        _print_run(args, spec, out_dir, report, *_finish(args, spec, out_dir, table, report))
    return 0


def _check_several(args, specs) -> None:
    """Refuse what several studies in one run cannot do: one --out for all of them, two specs
    of one name (one results folder), and plugins (a plugin registers its kernels in this
    process and in the shared workers for the rest of the run, where another spec would see
    them)."""
    if args.out is not None:
        raise InputError(
            f"--out names one study's folder; {len(specs)} studies each write to results/<name>"
        )
    seen: dict[str, Path] = {}
    for path, spec in zip(args.study, specs, strict=True):
        if spec.name in seen:
            raise InputError(
                f"{path} and {seen[spec.name]} are both study {spec.name!r} (one results folder)"
            )
        seen[spec.name] = path
        if spec.plugins:
            raise InputError(
                f"{path} names plugins: run it on its own (a plugin's kernels would stay "
                "registered for the studies after it)"
            )


def _run_several(args, specs, out_dirs) -> int:
    """Several studies one after the other on one pool of workers (spawned, and their imports
    done, once): while one study computes, the figures and files of the one before it are made
    on a thread of this process, so its drawing fills the cores its workers leave idle. Each
    study's line is printed once its files are written, in order."""
    from concurrent.futures import ThreadPoolExecutor

    from precision import store
    from precision.run.pool import spawn_pool, stop_pool

    for spec, out_dir in zip(specs, out_dirs, strict=True):  # each again once it is locked
        store.check_output_folder(out_dir, spec, force=args.force)
    pool = spawn_pool(args.workers or os.cpu_count() or 1) if args.executor == "process" else None
    writing = None  # the study whose files the thread is making, its line not yet printed

    def finished() -> None:  # wait for its files (re-raising what failed), print its line
        nonlocal writing
        done, writing = writing, None
        _print_run(args, done.spec, done.out_dir, done.report, *done.files.result())

    with (
        contextlib.ExitStack() as locks,
        ThreadPoolExecutor(max_workers=1) as finisher,
        _terminate_as_interrupt(),
    ):
        try:
            for spec, out_dir in zip(specs, out_dirs, strict=True):
                locks.enter_context(store.output_lock(out_dir))
                store.check_output_folder(out_dir, spec, force=args.force)
                table, report = _compute(args, spec, out_dir, pool=pool)
                if writing is not None:
                    finished()
                files = finisher.submit(_finish, args, spec, out_dir, table, report)
                writing = _Writing(spec, out_dir, report, files)
            finished()
        except BaseException:
            if pool is not None:
                stop_pool(pool)
            # A study that finished computing still gets its files (the thread goes on).
            if writing is not None and writing.files.exception() is None:
                finished()
            raise
    if pool is not None:
        pool.shutdown()
    return 0


class _Writing(NamedTuple):
    """A computed study whose files `_finish` is making on the run's thread."""

    spec: StudySpec
    out_dir: Path
    report: RunReport
    files: Future  # of `_finish`: (the files written, the variants that raised)


def _compute(args, spec, out_dir: Path, *, pool=None):
    """Execute a study whose output folder is locked and checked: (table, `RunReport`)."""
    from tqdm import tqdm

    from precision import store
    from precision.run.api import check_kernels
    from precision.run.execute import execute
    from precision.run.study import chunks

    check_kernels(spec)  # a user kernel that breaks the batch contract: one line, before work
    total = sum(chunk.inputs(spec) for chunk in chunks(spec))
    with tqdm(
        total=total, unit="input", desc=spec.name, disable=args.no_progress, file=sys.stderr
    ) as bar:
        return execute(
            spec,
            out_dir,
            executor=args.executor,
            workers=args.workers,
            scheduler=args.scheduler,
            force=args.force,
            cache=None if args.no_cache else store.GroundTruthCache(_cache_file(args, out_dir)),
            progress=bar.update,
            pool=pool,
        )


def _finish(args, spec, out_dir: Path, table, report) -> tuple[list, object]:
    """Write a computed study's table, summaries, companion tables and figures (replacing
    ``out_dir`` whole, its finished parts with it, once every file is written): (the files
    written, the variants that raised)."""
    from precision import store
    from precision.report import plots, summary
    from precision.run.study import companion_tables

    timing = {
        "seconds": report.seconds,
        "ground_truth_seconds": report.ground_truth_seconds,
        "compute_seconds": report.compute_seconds,
        "executor": args.executor,
    }
    companions = companion_tables(table)
    written = store.write_study(
        out_dir,
        table=table,
        summary=summary.summarize(table),
        digest=summary.markdown(table, title=spec.name, companions=companions),
        meta=store.provenance(spec, timing),
        figures={} if args.no_plots else plots.study_figures(table, companions),
        tables=companions,
    )
    return written, summary.raised(table)


def _print_run(args, spec, out_dir: Path, report, written: list, raised) -> None:
    """The warnings and the final line of a finished run."""
    share = report.ground_truth_seconds / max(report.compute_seconds, 1e-9)
    resumed = f"; resumed {report.resumed} of {report.chunks} chunks" if report.resumed else ""
    discarded = f"; discarded {report.discarded} parts of older code" if report.discarded else ""
    if report.cache_problem:
        warning = _one_line(_cache_warning(report.cache_problem))
        print(f"precision: warning: {warning}", file=sys.stderr)
    if report.first_traceback and getattr(args, "debug", False):
        print("precision: the first exception a variant raised:", file=sys.stderr)
        print(report.first_traceback.rstrip(), file=sys.stderr)
    print(
        f"{spec.name}: {report.rows} rows in {report.seconds:.1f} s with {args.executor} "
        f"(ground truth {100 * share:.0f}% of compute){resumed}{discarded}"
        f"{_recomputed_text(report)}; "
        f"{len(written)} files in {out_dir}{_raised_text(raised)}"
    )


SCHEDULER_ADDRESS = re.compile(r"(?:(?:tcp|tls|ws|wss|ucx)://)?[A-Za-z0-9._\[\]:-]+:\d{1,5}")
"""A Dask scheduler address: ``[protocol://]host:port`` (IPv6 hosts in brackets)."""


def _check_executor_flags(args, *, force: bool) -> None:
    """Refuse flags that cannot do what they say, before any work: ``--scheduler`` without
    the dask executor or not an address, and more workers than cores unless ``force``."""
    if args.scheduler is not None and args.executor != "dask":
        raise ExecutorError(
            f"--scheduler needs --executor dask (the {args.executor} executor has no scheduler)"
        )
    if args.scheduler is not None and not SCHEDULER_ADDRESS.fullmatch(args.scheduler):
        raise ExecutorError(
            f"--scheduler: {_shorten(args.scheduler)!r} is not a scheduler address "
            "(e.g. tcp://host:8786)"
        )
    cores = os.cpu_count() or 1
    if args.workers is not None and args.workers > cores and not force:
        insist = "; use --force to insist" if hasattr(args, "force") else ""
        raise ExecutorError(
            f"--workers {args.workers} is more than the {cores} cores of this machine{insist}"
        )


def _check_out(out_dir: Path) -> None:
    """Refuse an --out that is the current folder or holds it (``--out .``, ``--out ''``,
    ``--out ..``): a run swaps its results folder whole, which would pull the working folder
    from under the shell that started it."""
    here = Path.cwd().resolve()
    where = Path(out_dir).resolve()
    if where == here or where in here.parents:
        raise InputError(
            f"--out {_shorten(str(out_dir)) or repr('')}: the results folder cannot be the "
            "current folder or hold it (a run replaces its folder whole); name a folder "
            "inside it, e.g. --out results/STUDY"
        )


def _parallel(args) -> tuple[int, bool]:
    """(chunks run at once, whether on this machine) for a run's executor flags."""
    if args.executor == "serial":
        return 1, True
    return args.workers or os.cpu_count() or 1, not (args.executor == "dask" and args.scheduler)


def _check_size(args, spec):
    """The run's `Estimate`, refused (`TooLarge`, one line) past the limits unless --force."""
    workers, here = _parallel(args)
    return check_size(spec, workers=workers, here=here, force=args.force)


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM ends a run as Ctrl-C does (workers stopped, parts kept, one line), not with
    Python's silent default exit; the previous handler is restored afterwards."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a notebook's worker thread): leave it be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cache_warning(problem: str) -> str:
    """The one line of a cache the run went on without (a cache only saves time)."""
    return f"{problem}; the run went on without it (--no-cache skips the cache)"


def _recomputed_text(report) -> str:
    """``; recomputed 2 damaged parts and 5 cache records that failed their checksum`` or ""."""
    items = []
    if report.damaged:
        items.append(f"{report.damaged} damaged part{'s' if report.damaged != 1 else ''}")
    if report.cache_rejected:
        records = "record" if report.cache_rejected == 1 else "records"
        items.append(f"{report.cache_rejected} cache {records} that failed their checksum")
    return f"; recomputed {' and '.join(items)}" if items else ""


def _raised_text(raised) -> str:
    """``; variants that raised: logsumexp/scipy in bfloat16 (96 rows, TypeError)`` or ""."""
    if raised.empty:
        return ""
    items = [
        f"{r.problem}/{r.variant} in {r.format} ({r.rows} rows, {r.exception.split(':')[0]})"
        for r in raised.itertuples(index=False)
    ]
    return f"; variants that raised: {', '.join(items)} (rows with outcome error; --debug)"
