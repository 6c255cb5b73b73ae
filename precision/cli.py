"""The ``precision`` command. The only module that prints.

    precision list                      problems, variants, formats and studies
    precision run STUDY [--quick] [--out DIR] [--no-plots] [--executor E] [--workers N]

Bad input (a spec error, a missing file) prints one line and exits with status 2, leaving any
earlier results untouched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from precision import __version__
from precision.execute import EXECUTORS, ExecutorError
from precision.formats import FORMATS
from precision.problems import PROBLEMS
from precision.spec import SpecError, load_spec
from precision.store import OutputConflict

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except (SpecError, OutputConflict, ExecutorError) as exc:
        print(f"precision: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"precision: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="precision",
        description="Measure floating-point error of deep-learning algorithms against mpmath.",
    )
    parser.add_argument("--version", action="version", version=f"precision {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = commands.add_parser("list", help="show problems, variants, formats and studies")
    listing.add_argument(
        "--studies-dir",
        type=Path,
        default=Path("studies"),
        help="folder of study specs (default: studies)",
    )
    listing.set_defaults(handler=_list)

    run = commands.add_parser("run", help="run a study spec and write its results")
    run.add_argument("study", type=Path, help="study spec, e.g. studies/softmax.toml")
    run.add_argument(
        "--quick", action="store_true", help="apply the spec's [quick] overrides (a small demo run)"
    )
    run.add_argument(
        "--out", type=Path, default=None, help="output folder (default: results/<study name>)"
    )
    run.add_argument("--no-plots", action="store_true", help="skip the heatmaps")
    run.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="process",
        help="where chunks run: serial (debugging), process (local pool, default) "
        "or dask (a cluster; see --scheduler)",
    )
    run.add_argument(
        "--workers", type=_positive, default=None, help="worker processes (default: all cores)"
    )
    run.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address, e.g. tcp://host:8786 (default: a local cluster)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="replace results (or an unfinished run) of a different spec in --out",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _list(args) -> int:
    print("problems and variants:")
    for name, problem in PROBLEMS.items():
        print(f"  {name:15s} {', '.join(problem.variants)}")
        print(f"  {'':15s} {problem.description}")
    print("formats:")
    for fmt in FORMATS.values():
        print(f"  {fmt.name:15s} p={fmt.p:<3d} u={fmt.u:.3g}  max={fmt.max:.4g}")
    print("studies:")
    for path in sorted(Path(args.studies_dir).glob("*.toml")):
        try:
            spec = load_spec(path)
            print(f"  {str(path):28s} {spec.description}")
        except SpecError as exc:
            print(f"  {str(path):28s} (invalid: {exc})")
    return 0


def _run(args) -> int:
    spec = load_spec(args.study, quick=args.quick)  # before the heavy imports: fail fast
    out_dir = args.out or Path("results") / spec.name

    from tqdm import tqdm

    from precision import plots, store, summary
    from precision.execute import execute
    from precision.study import chunks

    store.check_output_folder(out_dir, spec, force=args.force)
    total = sum(chunk.inputs(spec) for chunk in chunks(spec))
    with tqdm(
        total=total, unit="input", desc=spec.name, disable=args.no_progress, file=sys.stderr
    ) as bar:
        table, report = execute(
            spec,
            out_dir,
            executor=args.executor,
            workers=args.workers,
            scheduler=args.scheduler,
            force=args.force,
            progress=bar.update,
        )
    timing = {
        "seconds": report.seconds,
        "ground_truth_seconds": report.ground_truth_seconds,
        "compute_seconds": report.compute_seconds,
        "executor": args.executor,
    }
    written = store.write_study(
        out_dir,
        table=table,
        summary=summary.summarize(table),
        digest=summary.markdown(table, title=spec.name),
        meta=store.provenance(spec, timing),
        figures={} if args.no_plots else plots.study_figures(table),
    )
    store.clear_parts(out_dir)
    share = report.ground_truth_seconds / max(report.compute_seconds, 1e-9)
    resumed = f"; resumed {report.resumed} of {report.chunks} chunks" if report.resumed else ""
    discarded = f"; discarded {report.discarded} parts of older code" if report.discarded else ""
    print(
        f"{spec.name}: {report.rows} rows in {report.seconds:.1f} s with {args.executor} "
        f"(ground truth {100 * share:.0f}% of compute){resumed}{discarded}; "
        f"{len(written)} files in {out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
