"""Studies from Python: ``precision.run_study(spec)`` and the checks a user's kernels pass first.

``run_study`` takes a spec file, a dict (the parsed TOML) or a `StudySpec`, runs it and returns
its tidy table, as ``precision run`` computes it (nothing is written). `check_kernels` calls
every user kernel a spec names once, on a small batch in every format of the spec, so that a
kernel that breaks the batch contract (no batch axis first, a wrong number of outputs per row)
stops the study at once with one line, instead of filling it with ``error`` rows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precision.core.formats import cast
from precision.problems import DEFAULT_VARIANTS, PROBLEMS
from precision.problems.registry import USER_KERNELS, USER_PROBLEMS
from precision.run.spec import SpecError, StudySpec, load_spec, parse_spec

PROBE_ROWS = 3
"""Rows of the probe batch `check_kernels` calls a user kernel on."""


def run_study(
    spec: str | Path | dict[str, Any] | StudySpec,
    *,
    quick: bool = False,
    executor: str = "serial",
    workers: int | None = None,
    force: bool = False,
) -> pd.DataFrame:
    """Run a study and return its table (one row per input x variant x format; the columns of
    `precision.core.schema.COLUMNS`).

    Parameters
    ----------
    spec : path, dict or StudySpec
        A spec file (``studies/softmax.toml``), the same content as a dict, or a parsed spec.
        Its ``plugins`` are imported first (they register the user's kernels).
    quick : bool, keyword-only
        Apply the spec's ``[quick]`` overrides.
    executor : {"serial", "process", "dask"}, keyword-only
        ``serial`` runs in this process and sees kernels registered in it (a notebook's);
        ``process`` and ``dask`` workers see the built-in kernels and the spec's plugins only.
    workers : int, keyword-only
        Worker processes for ``process`` and a local Dask cluster (default: all cores).
    force : bool, keyword-only
        Run even when the study's estimate exceeds what this machine can give it.

    Raises
    ------
    precision.run.spec.SpecError
        For a bad spec, a plugin that cannot be imported, or a user kernel that breaks the
        batch contract (`check_kernels`).
    precision.run.estimate.TooLarge
        The estimated memory or time is beyond this machine's limits (`check_size`), as
        ``precision run`` refuses it; ``force=True`` insists.
    """
    from precision import store
    from precision.run.estimate import check_size
    from precision.run.execute import execute
    from precision.run.study import run

    spec = as_spec(spec, quick=quick)
    parallel = 1 if executor == "serial" else workers or os.cpu_count() or 1
    check_size(spec, workers=parallel, force=force)
    check_kernels(spec)
    if executor != "serial":
        check_workers_see_kernels(spec)
    if executor == "serial":
        return run(spec)
    with store.scratch_folder("precision-study-") as scratch:
        table, _ = execute(spec, scratch, executor=executor, workers=workers)
    return table


def as_spec(spec, *, quick: bool = False) -> StudySpec:
    """A `StudySpec` from a spec file, a dict or a StudySpec."""
    if isinstance(spec, StudySpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec, quick=quick)
    return load_spec(spec, quick=quick)


def check_workers_see_kernels(spec: StudySpec) -> None:
    """Worker processes know the built-in kernels and those of the spec's plugins only: refuse
    a user kernel or problem registered in this process (a notebook cell) by any other file."""
    files = {_plugin_file(name) for name in spec.plugins}
    for problem_name in spec.problems:
        problem = USER_PROBLEMS.get(problem_name)
        kernels = [USER_KERNELS.get((problem_name, v)) for v in spec.variants_of(problem_name)]
        for registration in [problem, *kernels]:
            if registration is not None and registration.path not in files:
                raise SpecError(
                    f"{registration.problem}{'/' if registration.name else ''}"
                    f"{registration.name} ({registration.origin}) is not defined by a plugin of "
                    "the spec, so worker processes cannot import it: name its module in "
                    "plugins, or run with executor='serial'"
                )


def _plugin_file(resolved: str) -> str:
    """The source file of a resolved plugin (a path already, or an imported module's)."""
    if resolved.endswith(".py"):
        return resolved
    module = sys.modules.get(resolved)
    return str(Path(getattr(module, "__file__", "") or "").resolve()) if module else ""


def check_kernels(spec: StudySpec) -> None:
    """Call every user kernel the spec names on a probe batch in each of its formats.

    A kernel must return an array whose first axis is the batch and whose rows have as many
    values as the problem's own variants return for the same input. A kernel that raises is
    not refused here: its rows will say ``error``, as for any kernel.

    Raises
    ------
    precision.run.spec.SpecError
        One line naming the kernel, the format and the shapes.
    """
    for problem_name in spec.problems:
        for name in spec.variants_of(problem_name):
            if (problem_name, name) in USER_KERNELS:
                _probe(spec, problem_name, name)


def _probe(spec: StudySpec, problem_name: str, name: str) -> None:
    problem = PROBLEMS[problem_name]
    # A family is probed with the first point of its grid: every member has the same shape.
    variant = problem.variants[name]
    fn = variant.expand(spec.params.get(problem_name, {}).get(name))[0].kernel
    n = min(spec.grid.sizes) if problem.takes_sizes else 1
    X = problem.propose(np.random.default_rng(0), n=n, magnitude=1.0, cond=1.0, size=PROBE_ROWS)
    for fmt in spec.formats:
        x_fmt = cast(X, fmt)
        try:
            with np.errstate(all="ignore"):
                Y = np.asarray(fn(x_fmt))
                expected = _row_size(problem_name, x_fmt[0])
        except Exception:  # a kernel that raises is measured (outcome error), not refused
            continue
        per_row = int(np.prod(Y.shape[1:])) if Y.ndim else -1
        if Y.ndim == 0 or Y.shape[0] != PROBE_ROWS or (expected and per_row != expected):
            want = f"({PROBE_ROWS}, ...)" + (f" with {expected} values per row" if expected else "")
            raise SpecError(
                f"kernel {problem_name}/{name}: on a {fmt} batch of shape {x_fmt.shape} it "
                f"returned shape {Y.shape}; a batch kernel returns {want}"
            )


def _row_size(problem_name: str, x: np.ndarray) -> int | None:
    """How many values one row of output holds: what the problem's first own variant returns
    (None for a user's problem, whose only variants are user kernels)."""
    own = DEFAULT_VARIANTS.get(problem_name)
    if not own:
        return None
    y = PROBLEMS[problem_name].variants[own[0]].expand()[0].compute(x)
    return int(np.asarray(getattr(y, "y", y)).size)
