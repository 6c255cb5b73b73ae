"""The ``precision`` command, the only package that prints (``running``: the run command;
``evaluating``: the eval command; ``text``: one-line texts):

    precision list                      problems, variants, formats and studies
    precision run STUDY... [--quick] [--out DIR] [--no-plots] [--executor E] [--workers N]
                        [--dry-run] [--force]
    precision eval PROBLEM VALUES [--format F] [--variant V] [--target K] [--json]
    precision report [--results DIR] [--out DIR] [--no-figures] [--workers N]
    precision reproduce RESULTS_DIR... [--executor E] [--workers N]
    precision cache verify [--cache DIR] [--sample N] [--seed S]

Bad input (a spec error, a missing file, a malformed value, a full disk) prints one line and
exits with status 2, leaving any earlier results untouched; anything else is an internal error
(one line, exit 1). ``precision --debug ...`` adds the traceback to either.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
import traceback
from pathlib import Path

from precision import __version__
from precision.cli.evaluating import add_eval_parser
from precision.cli.running import _cache_file, _check_executor_flags, _run
from precision.cli.text import _one_line, _shorten
from precision.core.formats import FORMATS
from precision.core.schema import format_parameter
from precision.core.values import InputError
from precision.problems import PROBLEMS
from precision.run.execute import EXECUTORS, ExecutorError, Interrupted
from precision.run.spec import SpecError, load_spec
from precision.store import OutputConflict, WriteError
from precision.store.results import ResultsError

EXIT_BAD_INPUT = 2
EXIT_DIFFERS = 3  # precision reproduce: the rerun's table differs from the stored one
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a killed writer


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except (SpecError, OutputConflict, ExecutorError, InputError, ResultsError) as exc:
        return _bad_input(str(exc), args)
    except BrokenPipeError:  # the reader went away (precision eval ... | head): not an error
        return _reader_gone()
    except OSError as exc:
        return _bad_input(_os_error_message(exc), args)
    except Interrupted as exc:
        print(f"precision: interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("precision: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _internal_error(exc, args)


def run_captured(argv: list[str]) -> tuple[int, str, str]:
    """Run ``precision ARGV`` in this process and return (exit status, stdout, stderr) as
    text: for tests, notebooks and the README's generated error list. argparse's own exits
    (``--help``, usage errors) are returned as statuses, not raised."""
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit status 2), like every other
    bad input, instead of printing the usage block first; an option it does not know is
    reported by the command it was given to, with the closest option that command has."""

    commands: dict[str, argparse.ArgumentParser] | None = None  # the subcommands, by name

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        # argparse leaves unknown words to the top-level parser, which no longer knows the
        # command they were meant for: find it, and let it say what it expected.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = (self.commands or {}).get(getattr(parsed, "command", None), self)
            command.error(
                f"unrecognized arguments: {' '.join(extras)}{_closest_option(command, extras)}"
            )
        return parsed


def _closest_option(parser: argparse.ArgumentParser, words: list[str]) -> str:
    """``; did you mean --x?`` for the first option-like word of ``words`` that is close to
    one of ``parser``'s long options, else nothing."""
    options = [o for o in parser._option_string_actions if o.startswith("--")]
    for word in words:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1)
            if close:
                return f"; did you mean {close[0]}?"
    return ""


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="precision",
        description="Measure floating-point error of deep-learning algorithms against mpmath.",
    )
    parser.add_argument("--version", action="version", version=f"precision {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)

    listing = commands.add_parser("list", help="show problems, variants, formats and studies")
    listing.add_argument(
        "--studies-dir",
        type=Path,
        default=Path("studies"),
        help="folder of study specs (default: studies)",
    )
    listing.set_defaults(handler=_list)

    run = commands.add_parser("run", help="run a study spec and write its results")
    run.add_argument(
        "study",
        type=Path,
        nargs="+",
        help="study spec, e.g. studies/softmax.toml; several run one after the other on one "
        "pool of workers, each into results/<name>",
    )
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
        "--cache",
        type=Path,
        default=None,
        help="ground-truth cache folder (default: .cache beside the output folder)",
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="compute every ground truth, reading and writing no cache",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="replace results (or an unfinished run) of a different spec in --out; run "
        "past the estimated size limits and with more workers than cores",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the run's estimated rows, memory and time, and run nothing",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)
    add_eval_parser(commands)
    _add_report_parsers(commands)
    _add_cache_parser(commands)
    _add_debug_flag(parser, commands)
    parser.commands = commands.choices
    return parser


def _add_report_parsers(commands) -> None:
    report = commands.add_parser(
        "report",
        help="build the report (claims, studies, provenance) from stored results",
        description="Build results/report/index.html and index.md from every study folder "
        "under --results: what each study measured, its key numbers and figures, the "
        "tutorial's claims with their measured values and verdicts, and the provenance.",
    )
    report.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="folder of study results (default: results)",
    )
    report.add_argument(
        "--out", type=Path, default=None, help="report folder (default: <results>/report)"
    )
    report.add_argument(
        "--no-figures", action="store_true", help="skip the figures (faster; text and tables only)"
    )
    report.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="processes drawing the figures, a study each (default: all cores)",
    )
    report.set_defaults(handler=_report)
    reproduce = commands.add_parser(
        "reproduce",
        help="rerun stored studies from their meta.json and compare the tables",
        description="Rerun each stored study from the spec recorded in its meta.json (into a "
        "temporary folder, computing every ground truth afresh) and compare the new table "
        "with the stored errors.parquet. Exit status 0: identical; 3: some table differs "
        "(the differing rows and columns are listed, float columns by float64 ulps).",
    )
    reproduce.add_argument(
        "folders", nargs="+", type=Path, metavar="RESULTS_DIR", help="e.g. results/softmax"
    )
    reproduce.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="process",
        help="where chunks run (default: process)",
    )
    reproduce.add_argument(
        "--workers", type=_positive, default=None, help="worker processes (default: all cores)"
    )
    reproduce.set_defaults(handler=_reproduce)


def _add_cache_parser(commands) -> None:
    cache = commands.add_parser("cache", help="inspect the ground-truth cache")
    actions = cache.add_subparsers(
        dest="cache_command", metavar="ACTION", parser_class=_OneLineParser, required=True
    )
    verify = actions.add_parser(
        "verify",
        help="recompute a random sample of cached ground truths and report mismatches",
        description="Recompute a random sample of the records in a ground-truth cache from "
        "the problem, input, formats and engine each stores, and compare them with the "
        "stored values (as far as they are certified) and keys. Exit status 0: none "
        "mismatched; 3: some did (one line each); 2: no readable cache. Records written "
        "before records held their input are counted as not verifiable.",
    )
    verify.add_argument(
        "--cache",
        type=Path,
        default=Path("results") / ".cache",
        help="ground-truth cache folder (default: results/.cache, the one that "
        "precision run --out results/STUDY uses)",
    )
    verify.add_argument(
        "--sample", type=_positive, default=100, help="records to recompute (default: 100)"
    )
    verify.add_argument(
        "--seed", type=int, default=0, help="seed of the random sample (default: 0)"
    )
    verify.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    verify.set_defaults(handler=_cache_verify)


def _cache_verify(args) -> int:
    from precision.truth.verify import CacheUnreadable, verify_cache

    try:
        result = verify_cache(_cache_file(args, Path()), sample=args.sample, seed=args.seed)
    except CacheUnreadable as exc:
        return _bad_input(str(exc), args)
    for line in result.mismatches:
        print(line)
    print(result.summary())
    return EXIT_DIFFERS if result.mismatches else 0


def _add_debug_flag(parser: argparse.ArgumentParser, commands) -> None:
    """``--debug`` before or after the command: errors then show their traceback."""
    text = "show the traceback of an error (for bug reports)"
    parser.add_argument("--debug", action="store_true", help=text)
    for command in commands.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=text)


def _bad_input(message: str, args) -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    print(f"precision: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _internal_error(exc: Exception, args) -> int:
    """A bug, not bad input: one line (the traceback with --debug), exit 1."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if getattr(args, "debug", False):
        traceback.print_exc()
        print(f"precision: internal error: {_one_line(what)}", file=sys.stderr)
    else:
        print(f"precision: internal error: {_one_line(what)} (rerun with --debug)", file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def _reader_gone() -> int:
    """Point stdout at /dev/null so that the final flush does not fail again (Python's advice
    for SIGPIPE), and exit quietly."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: stdout is not a file
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _os_error_message(exc: OSError) -> str:
    if isinstance(exc, WriteError):
        return f"cannot write {exc.filename}: {exc.strerror}; earlier results are unchanged"
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _list(args) -> int:
    from precision.problems.registry import USER_KERNELS, USER_PROBLEMS

    if not Path(args.studies_dir).is_dir():
        raise InputError(f"--studies-dir: {_shorten(str(args.studies_dir))}: no such folder")
    studies = []  # read first: their plugins register the kernels and problems listed below
    for path in sorted(Path(args.studies_dir).glob("*.toml")):
        try:
            studies.append(f"  {str(path):28s} {load_spec(path).description}")
        except SpecError as exc:
            studies.append(f"  {str(path):28s} (invalid: {exc})")
    print("problems and variants:")
    for name, problem in PROBLEMS.items():
        user = {v for p, v in USER_KERNELS if p == name}
        names = [f"{v} (user)" if v in user else v for v in problem.variants]
        origin = f" (user problem, {USER_PROBLEMS[name].origin})" if name in USER_PROBLEMS else ""
        print(f"  {name:15s} {', '.join(names)}")
        print(f"  {'':15s} {problem.description}{origin}")
        for line in _parameter_lines(problem):
            print(f"  {'':15s} {line}")
    for (problem, variant), registration in USER_KERNELS.items():
        print(f"  user kernel {problem}/{variant}: {registration.origin}")
    print("formats:")
    for fmt in FORMATS.values():
        print(f"  {fmt.name:15s} p={fmt.p:<3d} u={fmt.u:.3g}  max={fmt.max:.4g}")
    print("studies:")
    print("\n".join(studies))
    return 0


def _parameter_lines(problem) -> list[str]:
    """``parameters: forward, central: h = 2^-1 .. 2^-40 (40 values)``: the default grids of a
    problem's families, one line per distinct grid."""
    grids: dict[str, list[str]] = {}
    for name, variant in problem.variants.items():
        if variant.grid:
            shown = "; ".join(
                f"{key} = {_values_text(values)}" for key, values in variant.grid.items()
            )
            grids.setdefault(shown, []).append(name)
    return [f"parameters of {', '.join(names)}: {shown}" for shown, names in grids.items()]


def _values_text(values: tuple[float, ...]) -> str:
    text = [format_parameter(v) for v in values]
    if len(text) <= 5:
        return ", ".join(text)
    return f"{text[0]}, {text[1]} .. {text[-1]} ({len(text)} values)"


def _report(args) -> int:
    from precision import store
    from precision.report.claims.micro import measure
    from precision.report.document import REPORT_FOLDER, build_report

    out_dir = args.out or Path(args.results) / REPORT_FOLDER
    # The claims no study holds are measured here, in one place, and handed in: the report
    # itself only reads (stored studies and these tables, which it stores beside itself).
    report = build_report(
        args.results,
        out_dir,
        figures=not args.no_figures,
        micro=measure(),
        workers=args.workers or os.cpu_count() or 1,
    )
    written = store.write_report(
        out_dir, texts=report.texts, tables=report.tables, images=report.images
    )
    verdicts = report.claims["verdict"].value_counts()
    counts = ", ".join(f"{int(n)} {verdict}" for verdict, n in verdicts.items())
    stale = [name for name, why in report.stale.items() if why]
    for name in stale:
        print(f"stale: {name}: {'; '.join(report.stale[name])}", file=sys.stderr)
    print(
        f"report: {len(report.stale)} studies, {len(report.claims)} claims ({counts})"
        f"{f'; stale: {len(stale)}' if stale else ''}; {len(written)} files in {out_dir}; "
        f"open {out_dir / 'index.html'}"
    )
    return 0


def _reproduce(args) -> int:
    from precision.run.reproduce import reproduce
    from precision.store.results import read_meta

    _check_executor_flags(argparse.Namespace(scheduler=None, **vars(args)), force=False)
    for folder in args.folders:  # check them all before the first (long) rerun
        read_meta(folder)
    status = 0
    for folder in args.folders:
        result = reproduce(folder, executor=args.executor, workers=args.workers)
        lines = result.diff.lines()
        print(f"{folder}: {lines[0]} (rerun in {result.seconds:.1f} s)")
        for line in lines[1:]:
            print(f"  {line}")
        if result.context:
            print(f"  since the run: {'; '.join(result.context)}")
        if not result.diff.identical:
            status = EXIT_DIFFERS
    return status


if __name__ == "__main__":
    sys.exit(main())
