"""The study runner: inputs -> certified ground truth -> every variant in every format -> rows.

``run(spec)`` is pure: it returns a tidy DataFrame (one row per input x variant x format) and
writes nothing. Follow one chunk: `chunks` splits the study into independent chunks (a grid
cell of one problem and size, or a block of data-set rows), `_chunk_inputs` draws the chunk's
inputs in float64 from its own seed, `_chunk_table` stacks them into one batch, rounds the
batch to every format once, computes each input's certified ground truth once per format, and
measures every variant on the whole batch of each format at once (`precision.run.measure`: one
kernel call per chunk, format and variant; error measures over the batch axis). The table is
built column by column from those arrays, rows in the order input, format, variant.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision.core.formats import cast, common_format, get_format, round_to_format_array
from precision.core.quantise import quantisation_error
from precision.core.schema import COLUMNS, DTYPES, typed_table
from precision.problems import PROBLEMS
from precision.problems.base import Problem
from precision.run.measure import (
    TRACEBACK_KEY,
    constant_columns,
    measure_batch,
    measure_variant,
    variant_columns,
)
from precision.run.sampling import cell_rng, dataset_rows, sample_cell
from precision.run.spec import Received, StudySpec, ensure_plugins
from precision.run.truths import chunk_ground_truths
from precision.truth.exact import ground_truth

CHUNK_ELEMENTS = 2**15
"""Input elements per chunk (inputs x elements per input), at least one grid cell or data-set
row, unless a spec sets ``chunk_elements``. A chunk is one batch for every kernel: large
enough that one call and one pass of the error measures cost little per row, small enough
that chunks spread over workers and a killed run loses little."""


@dataclass(frozen=True)
class Chunk:
    """A unit of work: consecutive grid cells of one problem and size, or a block of data-set
    rows, whose inputs run as one batch.

    A chunk's inputs depend only on the study seed and the coordinates of its cells (each
    cell draws from its own generator), so chunks can run in any order, on any worker, and be
    resumed one by one, and how cells are grouped into chunks changes no row.
    """

    problem: str
    n: int
    source: str
    cells: tuple[tuple[int, int], ...] = ()
    rows: tuple[int, int] = (0, 0)

    @property
    def id(self) -> str:
        """A file-name-safe identifier, unique within a study."""
        if self.source == "synthetic":
            (c, m), count = self.cells[0], len(self.cells)
            return f"{self.problem}-n{self.n}-c{c}-m{m}-k{count}"
        return f"{self.problem}-{self.source}-{self.rows[0]}-{self.rows[1]}"

    def inputs(self, spec: StudySpec) -> int:
        """How many inputs the chunk tries (cells the generator cannot reach yield fewer)."""
        if self.source == "synthetic":
            return spec.grid.samples_for(self.problem) * len(self.cells)
        return self.rows[1] - self.rows[0]


def chunks(spec: StudySpec) -> list[Chunk]:
    """Every chunk of the study, in the order of the rows of its table."""
    out = []
    limit = spec.chunk_elements or CHUNK_ELEMENTS
    for name in spec.problems:
        problem = PROBLEMS[name]
        sizes = spec.grid.sizes if problem.takes_sizes else (1,)
        for n in sizes:
            elements = spec.grid.samples_for(name) * int(np.prod(problem.input_shape(n)))
            cells = spec.grid.cells()
            per_chunk = cells_per_chunk(
                len(cells), elements, limit, spread=row_looped(spec.runs_of(name))
            )
            out += [
                Chunk(name, n, "synthetic", tuple(cells[start : start + per_chunk]))
                for start in range(0, len(cells), per_chunk)
            ]
        if problem.from_logits is None:
            continue
        for dataset in spec.datasets:
            count, n = _dataset(spec, dataset.name).shape
            step = max(1, limit // max(1, n))
            out += [
                Chunk(name, n, dataset.name, rows=(start, min(start + step, count)))
                for start in range(0, count, step)
            ]
    return out


MIN_CHUNKS = 4
"""Fewest chunks the grid cells of one problem and size are split into (where there are that
many cells) when a variant loops over rows (`row_looped`): small inputs fit one chunk by
`CHUNK_ELEMENTS`, and an expensive problem of small inputs (gradient descent: 36 inputs of
n = 8, about 90 CPU seconds) would then run on one worker while the others wait. Batch kernels
are not spread: their chunks cost a fixed overhead each (measured on bench part 5's cold serial
softmax-family study: 48-50% of its time outside ground truth at n = 10 and 100 with one chunk
per problem and size, 56-59% with four). Grouping changes no row but the ``batch`` column
(`Chunk`)."""


def row_looped(variants) -> bool:
    """Whether some variant is called row by row (``batched=False``: an iterative solver, a
    library taking one vector), so that a chunk's cost grows with its rows alone."""
    return any(not variant.batched for variant in variants)


def cells_per_chunk(cells: int, elements_per_cell: int, limit: int, *, spread: bool) -> int:
    """Grid cells per chunk of one problem and size: at most ``limit`` input elements
    (``elements_per_cell`` per cell; at least one cell) and, with ``spread``, few enough that
    the ``cells`` make `MIN_CHUNKS` chunks where they can."""
    most = max(1, limit // max(1, elements_per_cell))
    return min(most, max(1, -(-cells // MIN_CHUNKS))) if spread else most


@dataclass(frozen=True)
class ChunkResult:
    """The rows of one chunk, with its cost, and the traceback of the first exception a variant
    raised in it (rows with outcome ``error``), for ``precision --debug``."""

    table: pd.DataFrame
    inputs: int
    seconds: float
    ground_truth_seconds: float
    first_traceback: str | None = None


def run_chunk(
    spec: StudySpec, chunk: Chunk, *, cache=None, phases: dict[str, float] | None = None
) -> ChunkResult:
    """Generate the chunk's inputs and measure every variant in every format on them.

    ``phases``, if given, accumulates the seconds of each step (`PHASES`), for the bench.
    """
    start = time.perf_counter()
    ensure_plugins(spec)  # a worker process imports the user's kernels before it runs them
    clock = Clock(phases)
    drawn = list(_chunk_inputs(spec, chunk))
    clock.lap("inputs")
    table, gt_seconds, first = _chunk_table(spec, chunk, drawn, cache, clock)
    return ChunkResult(table, chunk.inputs(spec), time.perf_counter() - start, gt_seconds, first)


PHASES = ("inputs", "ground truth", "row fields", "kernels", "errors and bounds", "table")
"""The steps of a chunk that `run_chunk` can time."""


class Clock:
    """Books the seconds since its last lap to a phase of a dict (no-op without one)."""

    def __init__(self, phases: dict[str, float] | None):
        self.phases = phases
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        if self.phases is not None:
            self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now


def run(
    spec: StudySpec,
    *,
    progress: Callable[[int], None] | None = None,
    cache=None,
    phases: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Run a study in this process and return its tidy table (see `COLUMNS`).

    For parallel, distributed or resumable runs that stream to disk, see `precision.run.execute`;
    both give the same table.

    Parameters
    ----------
    spec : StudySpec
    progress : callable, keyword-only
        Called with the number of inputs finished after each chunk (for a progress bar).
    cache : precision.store.GroundTruthCache, keyword-only
        Where certified ground truths are looked up and added (None: compute every one).
    phases : dict, keyword-only
        If given, accumulates the seconds of each step of the chunks (`PHASES`).

    Returns
    -------
    pandas.DataFrame
        One row per input x variant x format. ``df.attrs["timing"]`` holds the wall time and
        the time spent on ground truth.
    """
    start = time.perf_counter()
    results = []
    for chunk in chunks(spec):
        results.append(run_chunk(spec, chunk, cache=cache, phases=phases))
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
    (`precision.store.results.WORKED_INDEX`: problem, table, title, text, numeric columns)."""
    import json

    from precision.problems import WORKED_EXAMPLES
    from precision.store.results import WORKED_INDEX

    tables, index = {}, []
    for problem in dict.fromkeys(table["problem"]):
        examples = WORKED_EXAMPLES.get(problem)
        if examples is None:
            continue
        for k, (title, text, frame) in enumerate(examples(measure_one)):
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


def measure_one(problem: Problem, variant: str, x: np.ndarray, format_name: str) -> dict:
    """One variant on one input in one format, measured as a study measures it against the
    certified ground truth (Arb engine) of the input as the format holds it: the
    `precision.problems.base.MeasureOne` that worked examples receive."""
    truth = ground_truth(problem, x, format_name, engine="arb")
    _, row = measure_variant(problem, variant, x, get_format(format_name), truth.exact)
    return {
        "rel_error": row.get("rel_error", np.nan),
        "outcome": row["outcome"],
        "cond": truth.cond,
        "certified": truth.certified,
    }


def _is_number(column: pd.Series) -> bool:
    """Whether a column holds numbers (booleans are written and read back as text)."""
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def concat_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Chunk tables in chunk order, as one table with the fixed column dtypes."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return typed_table(pd.DataFrame(columns=list(COLUMNS)))
    return typed_table(pd.concat(tables, ignore_index=True))


@functools.lru_cache(maxsize=8)
def _load_dataset(path: str, rows: int, seed: int) -> np.ndarray:
    return dataset_rows(np.load(path, allow_pickle=False), rows=rows, seed=seed)


def _dataset(spec: StudySpec, name: str) -> np.ndarray:
    dataset = next(d for d in spec.datasets if d.name == name)
    return _load_dataset(str(dataset.path), dataset.rows, spec.seed)


def _chunk_inputs(spec: StudySpec, chunk: Chunk) -> Iterator[tuple[tuple, int, np.ndarray]]:
    """Yield (cell, sample index, float64 input) of a chunk, cell by cell (cell is
    ``(cond decade, magnitude decade)``, or ``(None, None)`` for data-set rows); unreachable
    samples yield nothing."""
    problem = PROBLEMS[chunk.problem]
    if chunk.source != "synthetic":
        data = _dataset(spec, chunk.source)
        for index in range(*chunk.rows):
            yield (None, None), index, problem.from_logits(data[index].astype(np.float64))
        return
    samples = spec.grid.samples_for(chunk.problem)
    for c, m in chunk.cells:
        rng = cell_rng(spec.seed, chunk.problem, chunk.n, c, m)
        drawn = sample_cell(problem, rng, n=chunk.n, cond_decade=c, mag_decade=m, samples=samples)
        for index, x in enumerate(drawn):
            if x is not None:
                yield (c, m), index, x


def _chunk_table(spec: StudySpec, chunk: Chunk, drawn: list, cache, clock: Clock | None = None):
    """The rows of a chunk's inputs ``drawn`` ((cell, sample index, float64 input), as
    `_chunk_inputs` yields them) in every format and variant, the ground-truth seconds, and
    the first traceback of a variant that raised (in row order)."""
    if not drawn:
        return typed_table(pd.DataFrame(columns=list(COLUMNS))), 0.0, None
    clock = clock or Clock(None)
    problem = PROBLEMS[chunk.problem]
    where = {
        "sample": np.array([index for _, index, _ in drawn], dtype=np.float64),
        "cell_log10_cond": np.array([c for (c, _), _, _ in drawn], dtype=np.float64),
        "cell_log10_magnitude": np.array([m for (_, m), _, _ in drawn], dtype=np.float64),
    }
    drawn_x = np.stack([x for _, _, x in drawn])
    inputs = _inputs_per_format(spec, drawn_x)
    clock.lap("inputs")
    formats = {given.key: given.format for given in spec.received()}
    table, seconds = _TableBuilder(), 0.0
    for bound, runs in _truth_groups(problem, spec.runs_of(chunk.problem)):
        truths, spent = chunk_ground_truths(spec, bound, inputs, cache, formats=formats)
        seconds += spent
        clock.lap("ground truth")
        _measure_chunk(spec, chunk, bound, runs, inputs, truths, where, drawn_x, table, clock)
    clock.lap("row fields")
    built, first = table.build()
    clock.lap("table")
    return built, seconds, first


def _truth_groups(problem, runs: list) -> list[tuple[Problem, list[tuple[int, object]]]]:
    """The study's variants (with their positions in ``runs``) grouped by the ground truth their
    rows are measured against: one group, the problem itself, unless its exact result depends
    on variant parameters (`Problem.reference_params`), then one per distinct bound value."""
    groups: dict[tuple, tuple[Problem, list]] = {}
    for v_pos, variant in enumerate(runs):
        bound = problem.for_variant(variant)
        key = tuple(sorted(bound.params.items()))
        groups.setdefault(key, (bound, []))[1].append((v_pos, variant))
    return list(groups.values())


def _measure_chunk(spec, chunk, problem, runs, inputs, truths, where, drawn_x, table, clock):
    """Add to ``table`` the rows of the variants ``runs`` ((position, variant) pairs) in every
    received format, measured against ``truths`` (`chunk_ground_truths`)."""
    for f_pos, given in enumerate(spec.received()):
        fmt_name, key = given.format, given.key
        fmt = get_format(fmt_name)
        X = inputs[key]
        base = _base_columns(spec, chunk, problem, fmt_name, X, where)
        base |= _received_columns(given, drawn_x, X)
        clock.lap("row fields")
        found = truths[key]
        measured = found.present & found.defined
        have, lost = np.flatnonzero(measured), np.flatnonzero(~measured)
        # The input is not representable (absent), or has no exact result (undefined: e.g. a
        # matrix rounded to an exactly singular one): nothing to measure in this format.
        outcome = np.where(found.present[lost], "undefined", "input_overflow").astype(object)
        if len(have):
            exact = found.exact(have)
            known = {
                "cond": found.cond[have],
                "gt_prec": found.prec[have].astype(np.float64),
                "certified": found.certified[have].astype(object),
            }
        for v_pos, variant in runs:
            about = variant_columns(variant)
            if len(lost):
                table.add(lost, f_pos, v_pos, _take(base, lost) | about | {"outcome": outcome})
            if len(have):
                clock.lap("row fields")
                _, columns = measure_batch(problem, variant, X[have], fmt, exact, clock=clock)
                table.add(
                    have,
                    f_pos,
                    v_pos,
                    _take(base, have) | known | about | constant_columns(variant, fmt) | columns,
                )


def _base_columns(spec, chunk: Chunk, problem, fmt_name: str, X: np.ndarray, where) -> dict:
    """The columns that describe the inputs ``X`` of a chunk in one format (one per row);
    ``where`` holds each input's sample index and cell."""
    if problem.batched:
        magnitude = np.asarray(problem.magnitude(X), dtype=np.float64)
        extras = {k: np.asarray(v, dtype=np.float64) for k, v in problem.extras(X).items()}
    else:
        magnitude = np.array([problem.magnitude(x) for x in X], dtype=np.float64)
        rows = [problem.extras(x) for x in X]
        extras = {key: np.array([r[key] for r in rows], dtype=np.float64) for key in rows[0]}
    return {
        "study": spec.name,
        "problem": chunk.problem,
        "format": fmt_name,
        "source": chunk.source,
        **where,
        "n": chunk.n,
        "magnitude": magnitude,
        **extras,
    }


def _take(columns: dict, rows: np.ndarray) -> dict:
    """The rows ``rows`` of columns that are arrays (scalars apply to every row)."""
    return {k: v[rows] if isinstance(v, np.ndarray) else v for k, v in columns.items()}


class _TableBuilder:
    """Blocks of rows (one format and variant, some inputs), each a dict of column arrays or
    scalars, assembled into one typed table in the order input, format, variant."""

    def __init__(self):
        self.blocks: list[tuple[np.ndarray, int, int, dict]] = []

    def add(self, inputs: np.ndarray, f_pos: int, v_pos: int, columns: dict) -> None:
        self.blocks.append((np.asarray(inputs), f_pos, v_pos, columns))

    def build(self) -> tuple[pd.DataFrame, str | None]:
        keys = [
            np.concatenate([np.full(len(b[0]), b[k]) if k else b[0] for b in self.blocks])
            for k in (0, 1, 2)
        ]
        order = np.lexsort((keys[2], keys[1], keys[0]))
        columns = {}
        for name, dtype in DTYPES.items():
            parts = [
                _column_part(block[3].get(name), len(block[0]), dtype) for block in self.blocks
            ]
            join = np.ma.concatenate if dtype == "UInt64" else np.concatenate
            columns[name] = _typed_column(join(parts)[order], dtype)
        tracebacks = [
            tb
            for block in self.blocks
            for tb in block[3].get(TRACEBACK_KEY, [None] * len(block[0]))
        ]
        first = next((tracebacks[i] for i in order if tracebacks[i]), None)
        return pd.DataFrame(columns), first


def _column_part(value, length: int, dtype: str) -> np.ndarray:
    """One block's values of a column: float64 (NaN: missing) for numbers that fit, else
    objects (None: missing)."""
    if dtype == "UInt64":  # exact beyond 2**53: a masked uint64 array (masked: missing)
        if isinstance(value, np.ma.MaskedArray):
            return value
        return np.ma.masked_all(length, dtype=np.uint64)
    numeric = dtype == "float64" or dtype == "Int64"
    if isinstance(value, np.ndarray):
        return value.astype(np.float64) if numeric else value.astype(object)
    if value is None:
        return np.full(length, np.nan) if numeric else np.full(length, None, dtype=object)
    return np.full(length, value, dtype=np.float64 if numeric else object)


def _typed_column(values: np.ndarray, dtype: str):
    """A column of the table in its fixed dtype."""
    if dtype == "float64":
        return values
    if dtype == "Int64":
        missing = np.isnan(values)
        return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)
    if dtype == "UInt64":  # from a masked uint64 array (`_column_part`): exact beyond 2**53
        missing = np.ma.getmaskarray(values)
        return pd.arrays.IntegerArray(np.ma.filled(values, 0).astype(np.uint64), missing)
    return pd.array(values, dtype=dtype)


def _inputs_per_format(spec: StudySpec, x: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs (one, or a batch) as each format receives them, by `Received.key`: rounded
    once to that format, or (shared_inputs) rounded once to the values common to all the
    study's formats and then stored exactly; a quantised input is the dequantised tensor
    (exact in float64) rounded once to the format."""
    if spec.shared_inputs:
        common = round_to_format_array(x, common_format(spec.formats)).astype(np.float64)
        with np.errstate(over="ignore"):  # +-inf stays inf: the input is not representable
            return {name: common.astype(get_format(name).dtype) for name in spec.formats}
    dequantised = {q: q.apply(x) for q in spec.quantise}
    return {
        given.key: cast(
            x if given.quantisation is None else dequantised[given.quantisation], given.format
        )  # fmt: skip
        for given in spec.received()
    }


def _received_columns(given: Received, x: np.ndarray, X: np.ndarray) -> dict:
    """How the rows' inputs were quantised (`precision.core.schema.QUANTISATION_KEYS`) and the
    error of what the variant received against the drawn input: the quantisation error,
    kept apart from the kernel's."""
    # Normwise over each row's whole input (a matrix, or [x | y] of a dot product).
    rows = len(x)
    with np.errstate(all="ignore"):  # an input beyond the format: inf, and an infinite error
        error = quantisation_error(
            x.reshape(rows, -1), np.asarray(X, dtype=np.float64).reshape(rows, -1)
        )
    if given.quantisation is None:
        return {"quantised": None, "block_size": np.nan, "scale_rule": None, "quant_error": error}
    return given.quantisation.columns() | {"quant_error": error}


def _base_row(spec, chunk: Chunk, cell, index: int, fmt_name: str, x_fmt: np.ndarray) -> dict:
    """The columns that describe one input (of ``cell``, ``(None, None)`` for a data-set row)
    in one format, as a dict (`_base_columns` for a batch of one; the bench's per-row baseline
    builds its rows from it)."""
    problem = PROBLEMS[chunk.problem]
    batch = np.asarray(x_fmt)[np.newaxis]
    where = {
        "sample": np.array([index], dtype=np.float64),
        "cell_log10_cond": np.array([cell[0]], dtype=np.float64),
        "cell_log10_magnitude": np.array([cell[1]], dtype=np.float64),
    }
    columns = _base_columns(spec, chunk, problem, fmt_name, batch, where)
    return {k: v[0].item() if isinstance(v, np.ndarray) else v for k, v in columns.items()}
