"""The study runner: inputs -> certified ground truth -> every variant in every format -> rows.

``run(spec)`` is pure: it returns a tidy DataFrame (one row per input x variant x format) and
writes nothing. Follow one input: `tasks` lists it (problem, size, cell or data-set row),
`_input_of` draws it in float64, `_rows_for_input` rounds it to each format once, computes its
ground truth once per format, and measures every variant against that shared ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision import metrics
from precision.exact import ground_truth
from precision.formats import cast, get_format
from precision.problems import PROBLEMS
from precision.problems.base import Problem
from precision.sampling import cell_rng, dataset_rows, sample_in_cell
from precision.spec import StudySpec

COLUMNS = {
    "study": "study name",
    "problem": "problem name",
    "variant": "variant name",
    "format": "the format the input was rounded to and the variant asked to compute in",
    "compute_dtype": "dtype of the result the variant returned (differs when a library upcasts)",
    "accumulator": "precision its reductions accumulate in",
    "library": "numpy for code written here, else the library called",
    "source": "synthetic (grid cell) or the data set's name",
    "sample": "index of the input within its cell (or data-set row index)",
    "n": "input size",
    "cell_log10_cond": "targeted condition decade (synthetic inputs)",
    "cell_log10_magnitude": "targeted magnitude decade (synthetic inputs)",
    "cond": "relative condition number measured in mpmath on the rounded input",
    "magnitude": "max |x_i| of the rounded input",
    "x_max": "max x_i of the rounded input",
    "lse": "log-sum-exp of the rounded input's logits (float64), where defined",
    "rel_error": "normwise (inf-norm) relative error of the result, unitless",
    "rel_error_cw": "largest componentwise relative error, unitless",
    "err_over_u": "rel_error / u of the row's format",
    "ulps": "largest ulp distance to the correctly rounded exact result, in compute_dtype",
    "bits": "log2(1 + ulps): bits of error (0 = correctly rounded)",
    "outcome": "ok / underflow / overflow / nan / input_overflow (see metrics.result_outcome)",
    "fp_exceptions": "IEEE exceptions numpy reported while the variant ran (overflow, ...)",
    "bound": "known first-order bound on rel_error for this input (NaN: none applies)",
    "gt_prec": "working precision (bits) of the certified ground truth",
    "certified": "whether the ground truth was certified",
}


@dataclass(frozen=True)
class Task:
    """One input to generate: a grid cell sample or a data-set row."""

    problem: str
    n: int
    source: str
    cond_decade: int | None = None
    mag_decade: int | None = None
    index: int = 0


def tasks(spec: StudySpec) -> list[Task]:
    """Every input of the study, in a fixed order (the order of the rows)."""
    out = []
    for name in spec.problems:
        problem = PROBLEMS[name]
        sizes = spec.grid.sizes if problem.takes_sizes else (1,)
        for n in sizes:
            for c, m in spec.grid.cells():
                samples = range(spec.grid.samples_for(name))
                out += [Task(name, n, "synthetic", c, m, i) for i in samples]
        if problem.from_logits is not None:
            for dataset in spec.datasets:
                rows = dataset_rows(np.load(dataset.path), rows=dataset.rows, seed=spec.seed)
                out += [Task(name, rows.shape[1], dataset.name, index=i) for i in range(len(rows))]
    return out


def run(spec: StudySpec, *, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Run a study and return its tidy table (see `COLUMNS`).

    Parameters
    ----------
    spec : StudySpec
    progress : callable, keyword-only
        Called with the number of inputs finished after each input (for a progress bar).

    Returns
    -------
    pandas.DataFrame
        One row per input x variant x format. ``df.attrs["timing"]`` holds the wall time and
        the share spent on ground truth.
    """
    start = time.perf_counter()
    rows: list[dict] = []
    gt_seconds = 0.0
    for task, x in _inputs(spec):
        new_rows, seconds = _rows_for_input(spec, task, x)
        rows += new_rows
        gt_seconds += seconds
        if progress:
            progress(1)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table = _typed(table)
    total = time.perf_counter() - start
    table.attrs["timing"] = {"seconds": total, "ground_truth_seconds": gt_seconds}
    return table


def _inputs(spec: StudySpec) -> Iterator[tuple[Task, np.ndarray]]:
    """Yield each task with its float64 input; empty cells yield nothing."""
    data_cache: dict[str, np.ndarray] = {}
    rngs: dict[tuple, np.random.Generator] = {}
    for task in tasks(spec):
        problem = PROBLEMS[task.problem]
        if task.source == "synthetic":
            key = (task.problem, task.n, task.cond_decade, task.mag_decade)
            if key not in rngs:
                rngs[key] = cell_rng(spec.seed, *key)
            x = sample_in_cell(
                problem,
                rngs[key],
                n=task.n,
                cond_decade=task.cond_decade,
                mag_decade=task.mag_decade,
            )
        else:
            if task.source not in data_cache:
                dataset = next(d for d in spec.datasets if d.name == task.source)
                data_cache[task.source] = dataset_rows(
                    np.load(dataset.path), rows=dataset.rows, seed=spec.seed
                )
            x = problem.from_logits(data_cache[task.source][task.index].astype(np.float64))
        if x is not None:
            yield task, x


def _rows_for_input(spec: StudySpec, task: Task, x: np.ndarray) -> tuple[list[dict], float]:
    problem = PROBLEMS[task.problem]
    rows, seconds = [], 0.0
    for fmt_name in spec.formats:
        fmt = get_format(fmt_name)
        x_fmt = cast(x, fmt)
        base = _base_row(spec, task, problem, fmt_name, x_fmt)
        if not np.isfinite(x_fmt.astype(np.float64)).all():
            # The input itself is not representable: no variant can run in this format.
            rows += [
                {**base, "variant": v, "outcome": "input_overflow"}
                for v in spec.variants_of(task.problem)
            ]
            continue
        truth = ground_truth(problem, x_fmt, fmt)
        seconds += truth.seconds
        base |= {"cond": truth.cond, "gt_prec": truth.prec, "certified": truth.certified}
        for name in spec.variants_of(task.problem):
            rows.append(base | _measure(problem, name, x_fmt, fmt, truth.exact))
    return rows, seconds


def _base_row(spec, task: Task, problem: Problem, fmt_name: str, x_fmt: np.ndarray) -> dict:
    return {
        "study": spec.name,
        "problem": task.problem,
        "format": fmt_name,
        "source": task.source,
        "sample": task.index,
        "n": task.n,
        "cell_log10_cond": task.cond_decade,
        "cell_log10_magnitude": task.mag_decade,
        "magnitude": problem.magnitude(x_fmt),
        **problem.extras(x_fmt),
    }


def _measure(problem: Problem, name: str, x_fmt: np.ndarray, fmt, exact: metrics.Exact) -> dict:
    """Run one variant on one input and measure its result against the shared exact output."""
    variant = problem.variants[name]
    # Overflow, underflow and invalid operations are what is being measured: numpy reports them
    # to a callback instead of warning, and they go into the row (fp_exceptions, outcome).
    raised: set[str] = set()
    with np.errstate(all="call", call=lambda kind, _flag: raised.add(kind)):
        y = np.asarray(variant.compute(x_fmt))
    with np.errstate(all="ignore"):
        bound = variant.bound(x_fmt, fmt) if variant.bound else np.nan
        rel = metrics.normwise_relative_error(y, exact)
        rel_cw = float(np.max(metrics.relative_error(y, exact)))
    ulps = metrics.ulp_distance(y, exact.rounded_to(y.dtype), nan="max")
    return {
        "variant": name,
        "compute_dtype": y.dtype.name,
        "accumulator": variant.accumulator(fmt),
        "library": variant.library,
        "rel_error": rel,
        "rel_error_cw": rel_cw,
        "err_over_u": rel / fmt.u,
        "ulps": int(ulps.max()),
        "bits": float(np.log2(1.0 + ulps.max())),
        "outcome": metrics.result_outcome(y, exact, fp_exceptions=raised),
        "fp_exceptions": ",".join(sorted(raised)),
        "bound": bound,
    }


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed column dtypes, so that tables from any run compare byte for byte."""
    floats = [
        "cond",
        "magnitude",
        "x_max",
        "lse",
        "rel_error",
        "rel_error_cw",
        "err_over_u",
        "bits",
        "bound",
    ]
    ints = ["sample", "n", "cell_log10_cond", "cell_log10_magnitude", "gt_prec"]
    table[floats] = table[floats].astype("float64")
    table[ints] = table[ints].astype("Int64")
    table["ulps"] = table["ulps"].astype("UInt64")  # float64 distances reach 2**64 - 2**53
    table["certified"] = table["certified"].astype("boolean")
    strings = [c for c in table.columns if c not in floats + ints + ["ulps", "certified"]]
    table[strings] = table[strings].astype("string")
    return table
