"""The study runner: inputs -> certified ground truth -> every variant in every format -> rows.

``run(spec)`` is pure: it returns a tidy DataFrame (one row per input x variant x format) and
writes nothing. Follow one input: `chunks` splits the study into independent chunks (a grid
cell of one problem and size, or a block of data-set rows), `_chunk_inputs` draws the chunk's
inputs in float64 from its own seed, `_rows_for_input` rounds each to every format once,
computes its ground truth once per format, and measures every variant against it.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision import metrics
from precision.exact import (
    UndefinedResult,
    cache_key,
    ground_truths,
    truth_record,
    truths_from_record,
)
from precision.formats import cast, common_format, get_format, round_to_format_array
from precision.problems import PROBLEMS
from precision.problems.base import Computed, Problem, Unsupported, Variant
from precision.sampling import cell_rng, dataset_rows, sample_in_cell
from precision.schema import COLUMNS, DTYPES, PARAMETERS
from precision.spec import StudySpec, ensure_plugins

DATASET_CHUNK_ROWS = 50
"""Data-set rows per chunk."""


@dataclass(frozen=True)
class Chunk:
    """A unit of work: one grid cell of one problem and size, or a block of data-set rows.

    A chunk's inputs depend only on the study seed and the chunk's own coordinates, so chunks
    can run in any order, on any worker, and be resumed one by one.
    """

    problem: str
    n: int
    source: str
    cond_decade: int | None = None
    mag_decade: int | None = None
    rows: tuple[int, int] = (0, 0)

    @property
    def id(self) -> str:
        """A file-name-safe identifier, unique within a study."""
        if self.source == "synthetic":
            return f"{self.problem}-n{self.n}-c{self.cond_decade}-m{self.mag_decade}"
        return f"{self.problem}-{self.source}-{self.rows[0]}-{self.rows[1]}"

    def inputs(self, spec: StudySpec) -> int:
        """How many inputs the chunk tries (cells the generator cannot reach yield fewer)."""
        if self.source == "synthetic":
            return spec.grid.samples_for(self.problem)
        return self.rows[1] - self.rows[0]


def chunks(spec: StudySpec) -> list[Chunk]:
    """Every chunk of the study, in the order of the rows of its table."""
    out = []
    for name in spec.problems:
        problem = PROBLEMS[name]
        sizes = spec.grid.sizes if problem.takes_sizes else (1,)
        out += [Chunk(name, n, "synthetic", c, m) for n in sizes for c, m in spec.grid.cells()]
        if problem.from_logits is None:
            continue
        for dataset in spec.datasets:
            count, n = _dataset(spec, dataset.name).shape
            out += [
                Chunk(name, n, dataset.name, rows=(start, min(start + DATASET_CHUNK_ROWS, count)))
                for start in range(0, count, DATASET_CHUNK_ROWS)
            ]
    return out


@dataclass(frozen=True)
class ChunkResult:
    """The rows of one chunk, with its cost, and the traceback of the first exception a variant
    raised in it (rows with outcome ``error``), for ``precision --debug``."""

    table: pd.DataFrame
    inputs: int
    seconds: float
    ground_truth_seconds: float
    first_traceback: str | None = None


TRACEBACK_KEY = "_traceback"
"""Key of a measured row's traceback (outcome error); not a column of the table."""


def run_chunk(spec: StudySpec, chunk: Chunk, *, cache=None) -> ChunkResult:
    """Generate the chunk's inputs and measure every variant in every format on them."""
    start = time.perf_counter()
    ensure_plugins(spec)  # a worker process imports the user's kernels before it runs them
    rows: list[dict] = []
    gt_seconds = 0.0
    for index, x in _chunk_inputs(spec, chunk):
        new_rows, seconds = _rows_for_input(spec, chunk, index, x, cache)
        rows += new_rows
        gt_seconds += seconds
    table = _rows_table(rows)
    first = next((row[TRACEBACK_KEY] for row in rows if row.get(TRACEBACK_KEY)), None)
    return ChunkResult(table, chunk.inputs(spec), time.perf_counter() - start, gt_seconds, first)


def run(
    spec: StudySpec, *, progress: Callable[[int], None] | None = None, cache=None
) -> pd.DataFrame:
    """Run a study in this process and return its tidy table (see `COLUMNS`).

    For parallel, distributed or resumable runs that stream to disk, see `precision.execute`;
    both give the same table.

    Parameters
    ----------
    spec : StudySpec
    progress : callable, keyword-only
        Called with the number of inputs finished after each chunk (for a progress bar).
    cache : precision.store.GroundTruthCache, keyword-only
        Where certified ground truths are looked up and added (None: compute every one).

    Returns
    -------
    pandas.DataFrame
        One row per input x variant x format. ``df.attrs["timing"]`` holds the wall time and
        the time spent on ground truth.
    """
    start = time.perf_counter()
    results = []
    for chunk in chunks(spec):
        results.append(run_chunk(spec, chunk, cache=cache))
        if progress:
            progress(results[-1].inputs)
    table = concat_tables([r.table for r in results])
    table.attrs["first_traceback"] = next(
        (r.first_traceback for r in results if r.first_traceback), None
    )
    table.attrs["timing"] = {
        "seconds": time.perf_counter() - start,
        "ground_truth_seconds": sum(r.ground_truth_seconds for r in results),
    }
    return table


def companion_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables a study stores beside its rows (name -> table), computed during the run: the
    convergence curves of gradient-descent variants (`quadratic.convergence_curves`) and the
    worked examples of the study's problems (`worked_example_tables`), so that summaries and
    reports only read them."""
    from precision.problems.quadratic import convergence_curves

    curves = convergence_curves(table)
    companions = {} if curves is None else {"convergence": curves}
    return companions | worked_example_tables(table)


def worked_example_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The worked examples (`precision.problems.WORKED_EXAMPLES`) of the problems in
    ``table``, computed now: one table per example, ``worked_<problem>_<k>``, and their index
    (`precision.results.WORKED_INDEX`: problem, table, title, text, numeric columns)."""
    import json

    from precision.problems import WORKED_EXAMPLES
    from precision.results import WORKED_INDEX

    tables, index = {}, []
    for problem in dict.fromkeys(table["problem"]):
        for k, (title, text, frame) in enumerate(WORKED_EXAMPLES.get(problem, list)()):
            name = f"worked_{problem}_{k + 1}"
            tables[name] = frame
            # The index says which columns are numbers: the others hold text (exact decimals
            # among them) that must read back as written.
            numbers = [c for c in frame if _is_number(frame[c])]
            index.append(
                {
                    "problem": problem,
                    "table": name,
                    "title": title,
                    "text": text,
                    "numbers": json.dumps(numbers),
                }
            )
    return {WORKED_INDEX: pd.DataFrame(index), **tables} if index else {}


def _is_number(column: pd.Series) -> bool:
    """Whether a column holds numbers (booleans are written and read back as text)."""
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def concat_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Chunk tables in chunk order, as one table with the fixed column dtypes."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return _typed(pd.DataFrame(columns=list(COLUMNS)))
    return _typed(pd.concat(tables, ignore_index=True))


@functools.lru_cache(maxsize=8)
def _load_dataset(path: str, rows: int, seed: int) -> np.ndarray:
    return dataset_rows(np.load(path, allow_pickle=False), rows=rows, seed=seed)


def _dataset(spec: StudySpec, name: str) -> np.ndarray:
    dataset = next(d for d in spec.datasets if d.name == name)
    return _load_dataset(str(dataset.path), dataset.rows, spec.seed)


def _chunk_inputs(spec: StudySpec, chunk: Chunk) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (sample index, float64 input) of a chunk; unreachable samples yield nothing."""
    problem = PROBLEMS[chunk.problem]
    if chunk.source != "synthetic":
        data = _dataset(spec, chunk.source)
        for index in range(*chunk.rows):
            yield index, problem.from_logits(data[index].astype(np.float64))
        return
    rng = cell_rng(spec.seed, chunk.problem, chunk.n, chunk.cond_decade, chunk.mag_decade)
    for index in range(chunk.inputs(spec)):
        x = sample_in_cell(
            problem, rng, n=chunk.n, cond_decade=chunk.cond_decade, mag_decade=chunk.mag_decade
        )
        if x is not None:
            yield index, x


def _rows_for_input(spec: StudySpec, chunk: Chunk, index: int, x: np.ndarray, cache=None):
    """The rows of one input in every format and variant, and the ground-truth seconds."""
    problem = PROBLEMS[chunk.problem]
    inputs = _inputs_per_format(spec, x)
    truths, seconds = _ground_truths(spec, problem, inputs, cache)
    rows = []
    for fmt_name, x_fmt in inputs.items():
        fmt = get_format(fmt_name)
        base = _base_row(spec, chunk, index, fmt_name, x_fmt)
        if truths.get(fmt_name) is None:
            # The input is not representable (absent), or has no exact result (None: e.g. a
            # matrix rounded to an exactly singular one): nothing to measure in this format.
            outcome = "input_overflow" if fmt_name not in truths else "undefined"
            rows += [
                {**base, **variant_columns(problem.variants[v], v), "outcome": outcome}
                for v in spec.variants_of(chunk.problem)
            ]
            continue
        truth = truths[fmt_name]
        base |= {"cond": truth.cond, "gt_prec": truth.prec, "certified": truth.certified}
        for name in spec.variants_of(chunk.problem):
            rows.append(base | _measure(problem, name, x_fmt, fmt, truth.exact))
    return rows, seconds


def _inputs_per_format(spec: StudySpec, x: np.ndarray) -> dict[str, np.ndarray]:
    """The input as each format receives it: rounded once to that format, or (shared_inputs)
    rounded once to the values common to all the study's formats and then stored exactly."""
    if not spec.shared_inputs:
        return {name: cast(x, name) for name in spec.formats}
    common = round_to_format_array(x, common_format(spec.formats)).astype(np.float64)
    with np.errstate(over="ignore"):  # +-inf stays inf: the input is not representable
        return {name: common.astype(get_format(name).dtype) for name in spec.formats}


def _ground_truths(spec: StudySpec, problem, inputs: dict[str, np.ndarray], cache):
    """Certified ground truth per format with a representable input, and the seconds spent.

    Formats whose rounded inputs are identical (always with shared_inputs; often float32 and
    float64 for data stored in float32) share one evaluation, certified for all of them.
    Cached records are reused; new ones are added to the cache.
    """
    groups: dict[bytes, list[str]] = {}
    for name, x_fmt in inputs.items():
        x64 = x_fmt.astype(np.float64)
        if np.isfinite(x64).all():
            groups.setdefault(x64.tobytes(), []).append(name)
    truths, seconds = {}, 0.0
    for names in groups.values():
        x_fmt = inputs[names[0]]
        key = cache_key(problem, x_fmt, names, engine=spec.engine) if cache is not None else None
        record = cache.get(key) if key else None
        if record is not None:
            truths |= truths_from_record(record)
            continue
        try:
            found = ground_truths(problem, x_fmt, names, engine=spec.engine)
        except UndefinedResult:
            truths |= dict.fromkeys(names)
            continue
        seconds += sum(t.seconds for t in found.values())
        truths |= found
        if key:
            cache.put(key, truth_record(found, problem=problem, x=x_fmt))
    return truths, seconds


def _base_row(spec, chunk: Chunk, index: int, fmt_name: str, x_fmt: np.ndarray) -> dict:
    problem = PROBLEMS[chunk.problem]
    return {
        "study": spec.name,
        "problem": chunk.problem,
        "format": fmt_name,
        "source": chunk.source,
        "sample": index,
        "n": chunk.n,
        "cell_log10_cond": chunk.cond_decade,
        "cell_log10_magnitude": chunk.mag_decade,
        "magnitude": problem.magnitude(x_fmt),
        **problem.extras(x_fmt),
    }


def _measure(problem: Problem, name: str, x_fmt: np.ndarray, fmt, exact: metrics.Exact) -> dict:
    """Run one variant on one input and measure its result against the shared exact output."""
    return measure_variant(problem, name, x_fmt, fmt, exact)[1]


@dataclass(frozen=True)
class VariantRun:
    """One variant's run on one input (see `run_variant_detailed`)."""

    y: np.ndarray
    raised: set[str]
    iterations: int | None = None
    converged: bool = True
    unsupported: str | None = None
    error: str | None = None  # "TypeError: message" of an exception the variant raised
    error_traceback: str | None = None


def run_variant_detailed(problem: Problem, name: str, x_fmt: np.ndarray) -> VariantRun:
    """Run one variant on one input: its result, the IEEE exceptions numpy reported, the
    iterations an iterative variant ran, and why it could not run (`Unsupported`), if so.

    Any other exception the variant raises (a library refusing a dtype with a TypeError, a bug
    in a kernel) is a measurement too: the run carries its type, message and traceback and the
    row's outcome is ``error``, so one kernel never stops a study. Only exceptions that are not
    ``Exception``s (KeyboardInterrupt, SystemExit) propagate.
    """
    # Overflow, underflow and invalid operations are what is being measured: numpy reports them
    # to a callback instead of warning, and they go into the row (fp_exceptions, outcome).
    raised: set[str] = set()
    try:
        with np.errstate(all="call", call=lambda kind, _flag: raised.add(kind)):
            result = problem.variants[name].compute(x_fmt)
    except Unsupported as refusal:
        return VariantRun(np.full(1, np.nan), raised, unsupported=str(refusal) or "unsupported")
    except Exception as exc:
        return VariantRun(
            np.full(1, np.nan),
            raised,
            error=exception_text(exc),
            error_traceback=traceback.format_exc(),
        )
    if isinstance(result, Computed):
        return VariantRun(np.asarray(result.y), raised, result.iterations, result.converged)
    return VariantRun(np.asarray(result), raised)


def exception_text(exc: BaseException) -> str:
    """``"TypeError: message"`` on one line (the type alone when the message is empty)."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def run_variant(problem: Problem, name: str, x_fmt: np.ndarray) -> tuple[np.ndarray, set[str]]:
    """Run one variant on one input: its result and the IEEE exceptions numpy reported."""
    run = run_variant_detailed(problem, name, x_fmt)
    return run.y, run.raised


def measure_variant(
    problem: Problem, name: str, x_fmt: np.ndarray, fmt, exact: metrics.Exact
) -> tuple[np.ndarray, dict]:
    """Run one variant on one input and measure it against the shared exact output: its result
    and the row's measured fields (the study's rows and `precision.evaluate` share this)."""
    variant = problem.variants[name]
    run = run_variant_detailed(problem, name, x_fmt)
    y = run.y
    about = {
        **variant_columns(variant, name),
        "accumulator": variant.accumulator(fmt),
        "library": variant.library,
        "library_version": library_version(variant.library),
        "device": variant.device,
        "compute_mode": variant.compute_mode,
        "fp_exceptions": ",".join(sorted(run.raised)),
        "iterations": run.iterations,
    }
    if run.unsupported is not None or run.error is not None:
        # Nothing was computed in this format: no error to measure, and no upcast stands in.
        outcome = "unsupported" if run.error is None else "error"
        return y, about | {
            "compute_dtype": "",
            "outcome": outcome,
            "exception": run.unsupported if run.error is None else run.error,
            "bound": np.nan,
            TRACEBACK_KEY: run.error_traceback,  # not a column: for --debug (`run_chunk`)
        }
    with np.errstate(all="ignore"):
        bound = _bound(variant, x_fmt, fmt)
        rel = metrics.normwise_relative_error(y, exact)
        rel_cw = float(np.max(metrics.relative_error(y, exact)))
        absolute = float(np.max(metrics.absolute_error(y, exact)))
        backward = _backward_error(problem, x_fmt, y)
    ulps = metrics.ulp_distance(y, exact.rounded_to(y.dtype), nan="max")
    outcome = metrics.result_outcome(y, exact, fp_exceptions=run.raised)
    if outcome == "exact_zero":
        # |y - 0| / 0 is undefined: metrics' 0-or-inf convention would put an infinite (or a
        # flattering zero) error into every statistic over rel_error; abs_error judges the row.
        rel = rel_cw = np.nan
    if not run.converged and outcome in ("ok", "underflow", "exact_zero"):
        outcome = "no_convergence"
    return y, about | {
        "compute_dtype": y.dtype.name,
        "rel_error": rel,
        "rel_error_cw": rel_cw,
        "err_over_u": rel / fmt.u,
        "abs_error": absolute,
        "ulps": int(ulps.max()),
        "bits": float(np.log2(1.0 + ulps.max())),
        "outcome": outcome,
        "bound": bound,
        "backward_error": backward,
    }


def variant_columns(variant: Variant, name: str) -> dict:
    """The columns that say which variant a row measured: its id ``name``, its family and one
    column per `PARAMETERS` entry (None, i.e. NaN, where the variant does not declare it).

    Raises
    ------
    ValueError
        The variant declares a parameter the table has no column for (it would be lost).
    """
    unknown = sorted(set(variant.params) - set(PARAMETERS))
    if unknown:
        raise ValueError(
            f"variant {name!r} declares parameters {unknown} that are not columns of the "
            f"table (known: {', '.join(PARAMETERS)})"
        )
    params = {key: variant.params.get(key) for key in PARAMETERS}
    return {"variant": name, "family": variant.family, **params}


@functools.cache
def library_version(library: str) -> str:
    """The installed version of ``library`` ("" when it is not a distribution)."""
    from importlib import metadata

    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return ""


def _backward_error(problem: Problem, x_fmt: np.ndarray, y: np.ndarray) -> float:
    if problem.backward_error is None or not np.isfinite(y.astype(np.float64)).all():
        return np.nan
    return float(problem.backward_error(x_fmt, y))


def _bound(variant, x_fmt: np.ndarray, fmt) -> float:
    """The variant's first-order bound for this input; NaN where none applies, including
    where a Python float overflows while computing it (an input far outside its assumptions)."""
    if variant.bound is None:
        return np.nan
    try:
        return variant.bound(x_fmt, fmt)
    except ArithmeticError:  # OverflowError, ZeroDivisionError
        return np.nan


def _rows_table(rows: list[dict]) -> pd.DataFrame:
    """The rows as a table with the fixed column dtypes, built column by column (one typed
    array per column is several times cheaper than a frame of objects cast afterwards)."""
    columns = {}
    for name, dtype in DTYPES.items():
        values = [row.get(name) for row in rows]
        if dtype == "float64":
            columns[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        elif dtype in ("Int64", "UInt64"):
            columns[name] = _integers(values, np.uint64 if dtype == "UInt64" else np.int64)
        else:
            columns[name] = pd.array(values, dtype=dtype)
    return pd.DataFrame(columns)


def _integers(values: list, dtype) -> pd.arrays.IntegerArray:
    """Nullable integers built from a numpy integer array and a mask: ``pd.array`` of Python
    ints passes a list holding values of 2**63 and more through float64, rounding ulp
    distances of float64 results (3735625535656447729 became ...7488)."""
    missing = np.array([v is None or v is pd.NA for v in values], dtype=bool)
    data = np.array([0 if m else v for v, m in zip(values, missing, strict=True)], dtype=dtype)
    return pd.arrays.IntegerArray(data, missing)


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed column dtypes, so that tables from any run compare byte for byte."""
    return table.astype(DTYPES)
