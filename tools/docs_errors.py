"""Regenerate the README's "Common errors" section from what the CLI prints (``make docs-errors``).

Each case runs ``precision.cli.main`` on a fixed bad input in a scratch folder and records the
one line it prints on stderr, so the README shows the messages the code actually prints; the
README's ``precision eval`` example is regenerated the same way. A test
(tests/test_errors.py) fails when the README and the code disagree.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

START = "<!-- errors:start -->"
END = "<!-- errors:end -->"
EXAMPLE_START = "<!-- eval-example:start -->"
EXAMPLE_END = "<!-- eval-example:end -->"
EXAMPLE = ("eval", "softmax", "1000,1000,1000", "--format", "float16")

SPEC = """\
name = "tiny"
seed = 3
formats = ["float16", "float64"]
problems = ["softmax"]

[grid]
log10_cond = [0, 2]
log10_magnitude = [0, 2]
sizes = [10]
samples_per_cell = 1
"""


@dataclass(frozen=True)
class Case:
    """A command line, what differs in its spec from `SPEC` (the comment shown), and setup."""

    argv: tuple[str, ...]
    note: str = ""
    spec: tuple[str, str] | None = None  # (text in SPEC, its replacement)
    setup: Callable[[Path], None] | None = None
    patches: tuple[Callable[[], contextlib.AbstractContextManager], ...] = field(default=())


def _other_results(folder: Path) -> None:
    (folder / "out").mkdir()
    (folder / "out" / "meta.json").write_text(json.dumps({"spec_sha256": "another spec"}))


@contextlib.contextmanager
def _full_disk():
    """Every fsync fails as on a full disk (what a write that finds no space reports)."""

    def no_space(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real, os.fsync = os.fsync, no_space
    try:
        yield
    finally:
        os.fsync = real


QUIET = ("--executor", "serial", "--no-progress")
RUN = ("run", "study.toml", *QUIET)
RUN_OUT = ("run", "study.toml", "--out", "out", *QUIET)

CASES = (
    Case(RUN, 'problems = ["softmx"]', ('problems = ["softmax"]', 'problems = ["softmx"]')),
    Case(RUN, "seeds = 3", ("seed = 3", "seeds = 3")),
    Case(RUN, "sizes = [0]", ("sizes = [10]", "sizes = [0]")),
    Case(RUN, "log10_cond = [3, 1]", ("log10_cond = [0, 2]", "log10_cond = [3, 1]")),
    Case(RUN, 'seed = "3"', ("seed = 3", 'seed = "3"')),
    Case(RUN, "name =", ('name = "tiny"', "name =")),
    Case(("run", "studies/sofmax.toml"), "a typo in the file name"),
    Case(RUN_OUT, "out/ holds results of another spec", setup=_other_results),
    Case(RUN_OUT, "the disk is full", patches=(_full_disk,)),
    Case(("eval", "softmx", "1,2,3")),
    Case(("eval", "softmax", "1,2,x")),
    Case(("eval", "softmax", "1,,2")),
    Case(("eval", "exp", "1e400")),
    Case(("eval", "exp", "1,2")),
    Case(("eval", "cross_entropy", "1,2,3")),
    Case(("eval", "softmax", "1,2", "--format", "bf16")),
    Case(("eval", "softmax", "1,2", "--variant", "stable")),
    Case(("eval", "softmax", "[[1, 2], [3]]")),
    Case(("report", "--results", "nowhere")),
    Case(("reproduce", "out"), "out/ holds no meta.json", setup=lambda d: (d / "out").mkdir()),
)


def error_line(case: Case) -> str:
    """The one line ``precision`` prints on stderr for ``case``, run in a scratch folder."""
    from precision.cli import run_captured

    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        folder = Path(scratch)
        spec = SPEC.replace(*case.spec) if case.spec else SPEC
        (folder / "study.toml").write_text(spec)
        if case.setup:
            case.setup(folder)
        with contextlib.ExitStack() as stack:
            for patch in case.patches:
                stack.enter_context(patch())
            _, _, err = run_captured(list(case.argv))
    return err.strip()


def section() -> str:
    """The Markdown between the markers: every case's command and its message."""
    lines = []
    for case in CASES:
        command = "$ precision " + " ".join(_shell_word(a) for a in _shown(case.argv))
        lines += [f"{command:<38s} # {case.note}" if case.note else command, error_line(case)]
    return "\n".join(["```console", *lines, "```"])


def example_section() -> str:
    """The ``precision eval`` example: the command and what it prints."""
    from precision.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(list(EXAMPLE))
    return "\n".join(
        ["```console", "$ precision " + " ".join(EXAMPLE), out.getvalue().strip(), "```"]
    )


def _shown(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command without the options every run case shares (they only keep it quiet)."""
    return tuple(a for a in argv if a not in QUIET)


def _shell_word(word: str) -> str:
    return f"'{word}'" if any(ch in word for ch in ' []"') else word


def replace_section(readme: str, body: str, *, start: str = START, end: str = END) -> str:
    """``readme`` with the text between the markers ``start`` and ``end`` replaced by ``body``."""
    head, found_start, rest = readme.partition(start)
    _, found_end, tail = rest.partition(end)
    if not found_start or not found_end:
        raise ValueError(f"README: markers {start} ... {end} not found")
    return f"{head}{start}\n{body}\n{end}{tail}"


def updated_readme(readme: str) -> str:
    """``readme`` with both generated sections as the code prints them now."""
    readme = replace_section(readme, section())
    return replace_section(readme, example_section(), start=EXAMPLE_START, end=EXAMPLE_END)


def main(argv: list[str]) -> int:
    from precision import store

    target = Path(argv[0]) if argv else Path("README.md")
    text = target.read_text(encoding="utf-8")
    updated = updated_readme(text)
    if updated != text:
        store.atomic_write_bytes(target, updated.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
