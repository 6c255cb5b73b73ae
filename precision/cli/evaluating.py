"""``precision eval``: one input, every variant in every format, against the exact result."""

from __future__ import annotations

import re

from precision.core.values import InputError
from precision.problems import PROBLEMS


def add_eval_parser(commands) -> None:
    """The ``eval`` subcommand and its options."""
    evaluate = commands.add_parser(
        "eval",
        help="evaluate one input: every variant in every format against the exact result",
        description="Evaluate one input in each format: computed and exact results, relative "
        "error, ulps, bits of error, outcome and condition number.",
    )
    evaluate.add_argument("problem", help="problem name, e.g. softmax (see precision list)")
    evaluate.add_argument(
        "values",
        nargs="+",
        metavar="VALUES",
        help="numbers (1000,1000,1000 or 1 2 3; nan and inf allowed), a JSON array "
        "([[1,2],[0,1]] for a 2 x n input) or a .npy/.csv file",
    )
    evaluate.add_argument(
        "--format",
        action="append",
        dest="formats",
        metavar="F",
        help="format, repeatable or comma-separated (default: float16, bfloat16, float32, float64)",
    )
    evaluate.add_argument(
        "--variant",
        action="append",
        dest="variants",
        metavar="V",
        help="variant, repeatable or comma-separated (default: all of the problem's)",
    )
    evaluate.add_argument(
        "--target",
        metavar="K",
        help="cross_entropy: VALUES are the logits and K the target class index (0-based)",
    )
    evaluate.add_argument("--json", action="store_true", help="print the rows as JSON")
    evaluate.set_defaults(handler=_eval)
    # Values such as -inf or -1e5 are values, not options (argparse only knows -1 and -.5).
    # (Matched whole, whether argparse calls match or fullmatch.)
    evaluate._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|nan).*$", re.I | re.S)


def _eval(args) -> int:
    from precision.core.values import parse_values
    from precision.run.evaluate import evaluate, get_problem, render_json, render_text

    problem = get_problem(args.problem)
    x = _eval_input(problem, parse_values(" ".join(args.values)), args.target)
    table = evaluate(problem, x, formats=args.formats, variants=args.variants)
    print(render_json(table) if args.json else render_text(table, x))
    return 0


def _eval_input(problem, x, target: str | None):
    """The input of a (logits, target) problem from logits and ``--target K``; else ``x``."""
    from precision.core.values import logits_with_target
    from precision.run.evaluate import input_pattern

    def takes_target(p) -> bool:
        # Logits with a target row (cross-entropy), not any (2, n) input: a dot product's
        # [x; y] has that shape too, and no target.
        return input_pattern(p) == ("2", "n") and p.from_logits is not None

    if target is not None and not takes_target(problem):
        users = ", ".join(name for name, p in PROBLEMS.items() if takes_target(p))
        raise InputError(
            f"--target: {problem.name} takes no target (--target K gives the target class "
            f"of the logits of {users})"
        )
    if target is not None and x.ndim != 1:
        raise InputError("--target: VALUES already hold a target row; give only the logits")
    if takes_target(problem) and x.ndim == 1:
        if target is None:
            raise InputError(
                f"{problem.name} takes logits and a target: give the logits with --target K "
                "(the class index) or a 2 x n JSON array [[logits], [target]]"
            )
        return logits_with_target(x, target)
    return x
