"""The ``precision`` command. The only module that prints.

    precision list                      problems, variants, formats and studies
    precision run STUDY [--quick] [--out DIR] [--no-plots]

Bad input (a spec error, a missing file) prints one line and exits with status 2, leaving any
earlier results untouched.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from precision import __version__
from precision.formats import FORMATS
from precision.problems import PROBLEMS
from precision.spec import SpecError, load_spec

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except SpecError as exc:
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
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)
    return parser


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

    from tqdm import tqdm

    from precision import plots, store, summary
    from precision.study import chunks, run

    out_dir = args.out or Path("results") / spec.name
    start = time.perf_counter()
    with tqdm(
        total=sum(chunk.inputs(spec) for chunk in chunks(spec)),
        unit="input",
        desc=spec.name,
        disable=args.no_progress,
        file=sys.stderr,
    ) as bar:
        table = run(spec, progress=bar.update)
    timing = table.attrs.get("timing", {})
    figures = {} if args.no_plots else plots.study_figures(table)
    written = store.write_study(
        out_dir,
        table=table,
        summary=summary.summarize(table),
        digest=summary.markdown(table, title=spec.name),
        meta=store.provenance(spec, timing),
        figures=figures,
    )
    seconds = time.perf_counter() - start
    share = timing.get("ground_truth_seconds", 0.0) / max(timing.get("seconds", 1e-9), 1e-9)
    print(
        f"{spec.name}: {len(table)} rows in {seconds:.1f} s "
        f"(ground truth {100 * share:.0f}% of the run); {len(written)} files in {out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
