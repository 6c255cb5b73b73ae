"""Measuring a variant on a batch of inputs: run its kernel, then every error measure at once.

The unit of work is a batch: all of a chunk's inputs of one format, stacked along a first axis.
A batched variant's kernel is called once on the whole batch; a variant that declares itself
per-row (``Variant.batched = False``) is called once per row. Either way the error measures,
outcomes and bounds are array operations over the batch axis (`precision.core.metrics`), and the
result is a dict of column arrays, one value per row, in the columns of `precision.core.schema`.

What a row records stays a property of that row alone:

* IEEE exceptions (``fp_exceptions``) are collected per kernel call. When a batched call raises
  none, no row did. When it raises some, the batch is split in halves and each half that still
  raises is called again, down to single rows, so that every row records exactly the exceptions its
  own computation raises (rows are independent by contract, tested in
  ``tests/problems/test_row_independence.py``). An overflow that a row raised makes that row's
  outcome ``overflow``, as before.
* A batched call that raises an exception is repeated row by row: the rows that raise record
  ``error`` (or ``unsupported``), the others are measured from their one-row call, and their
  ``batch`` column says 1.
* The ``batch`` column holds the number of rows of the kernel call that computed the row.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass, field

import numpy as np

from precision.core import metrics
from precision.core.formats import Format
from precision.core.schema import PARAMETERS
from precision.problems.base import Computed, Problem, Unsupported, Variant

TRACEBACK_KEY = "_traceback"
"""Key of a measured row's traceback (outcome error); not a column of the table."""


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


def _call(kernel, x: np.ndarray):
    """``kernel(x)`` and the IEEE exceptions numpy reported while it ran.

    Overflow, underflow and invalid operations are what is being measured: numpy reports them
    to a callback instead of warning, and they go into the row (fp_exceptions, outcome).
    """
    raised: set[str] = set()
    with np.errstate(all="call", call=lambda kind, _flag: raised.add(kind)):
        result = kernel(x)
    return result, raised


def run_variant_detailed(problem: Problem, name: str | Variant, x_fmt: np.ndarray) -> VariantRun:
    """Run one variant on one input: its result (flattened), the IEEE exceptions numpy
    reported, the iterations an iterative variant ran, and why it could not run
    (`Unsupported`), if so.

    Any other exception the variant raises (a library refusing a dtype with a TypeError, a bug
    in a kernel) is a measurement too: the run carries its type, message and traceback and the
    row's outcome is ``error``, so one kernel never stops a study. Only exceptions that are not
    ``Exception``s (KeyboardInterrupt, SystemExit) propagate.
    """
    return run_one(resolve_variant(problem, name), x_fmt)


def resolve_variant(problem: Problem, variant: str | Variant) -> Variant:
    """The variant to run: ``variant`` itself, or the problem's variant of that name.

    Raises
    ------
    ValueError
        It is a family still waiting for its parameters (``Variant.with_params`` binds them).
    """
    found = problem.variants[variant] if isinstance(variant, str) else variant
    if found.is_family:
        raise ValueError(
            f"variant {found.name} of {problem.name} takes parameters "
            f"({', '.join(found.grid)}): run its members (Variant.with_params or .expand)"
        )
    return found


def run_one(variant: Variant, x_fmt: np.ndarray) -> VariantRun:
    """`run_variant_detailed` for a `Variant`."""
    raised: set[str] = set()
    try:
        with np.errstate(all="call", call=lambda kind, _flag: raised.add(kind)):
            result = variant.compute(x_fmt)
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


# ------------------------------------------------------------------ running a batch


@dataclass
class BatchRun:
    """A variant's run on a batch of ``rows`` inputs, row by row where rows differ.

    ``groups`` holds the computed results: (row positions, 2-D array of their flattened
    results), one group per kernel call shape and dtype (one group for a batched call that
    succeeded). Rows in no group computed nothing: ``failure`` says ``unsupported`` or
    ``error`` and ``exception`` why.
    """

    rows: int
    groups: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    raised: list[set[str]] = field(default_factory=list)
    iterations: np.ndarray | None = None  # float64 (NaN: none)
    converged: np.ndarray | None = None
    batch: np.ndarray | None = None
    failure: np.ndarray | None = None  # object: None, "unsupported" or "error"
    exception: np.ndarray | None = None  # object: None or one line
    tracebacks: list[str | None] = field(default_factory=list)

    def __post_init__(self):
        self.raised = [set() for _ in range(self.rows)]
        self.iterations = np.full(self.rows, np.nan)
        self.converged = np.ones(self.rows, dtype=bool)
        self.batch = np.ones(self.rows, dtype=np.int64)
        self.failure = np.full(self.rows, None, dtype=object)
        self.exception = np.full(self.rows, None, dtype=object)
        self.tracebacks = [None] * self.rows


def run_batch(variant: Variant, X: np.ndarray, *, size: int) -> BatchRun:
    """Run ``variant`` on the inputs ``X`` (shape ``(rows, *input_shape)``) in their format.

    ``size`` is the number of values one row's result must hold (the exact result's size); a
    kernel that returns another shape records ``error`` for the rows concerned.
    """
    X = np.ascontiguousarray(X)  # reductions along a contiguous last axis (NUMERICS.md)
    run = BatchRun(len(X))
    if not variant.batched or len(X) == 0:
        _run_rows(variant, X, run, np.arange(len(X)), size)
        return run
    try:
        result, raised = _call(variant.kernel, X)
    except Unsupported as refusal:
        # A refusal is about the format, not the data: every row of the batch is refused.
        run.failure[:] = "unsupported"
        run.exception[:] = str(refusal) or "unsupported"
        return run
    except Exception:
        # Find which rows raise, and measure the others from their own calls.
        _run_rows(variant, X, run, np.arange(len(X)), size)
        return run
    Y, iterations, converged = _unpack(result, len(X))
    if Y.ndim == 0 or Y.shape[0] != len(X) or Y[0].size != size:
        shape = Y.shape
        run.failure[:] = "error"
        run.exception[:] = (
            f"KernelShapeError: kernel {variant.name} returned shape {shape} for a batch of "
            f"shape {X.shape}; expected ({len(X)}, ...) with {size} values per row"
        )
        return run
    run.groups.append((np.arange(len(X)), Y.reshape(len(X), -1)))
    run.batch[:] = len(X)
    if iterations is not None:
        run.iterations[:] = iterations
    run.converged[:] = converged
    if raised:
        _attribute_flags(variant.kernel, X, 0, len(X), raised, run.raised)
    return run


def _unpack(result, rows: int):
    """(Y, iterations or None, converged) of a batch kernel's result."""
    if isinstance(result, Computed):
        iterations = None
        if result.iterations is not None:
            iterations = np.broadcast_to(np.asarray(result.iterations, dtype=float), rows)
        converged = np.broadcast_to(np.asarray(result.converged, dtype=bool), rows)
        return np.asarray(result.y), iterations, converged
    return np.asarray(result), None, True


SMALL_RANGE = 4
"""Ranges of at most this many rows find their rows' IEEE exceptions row by row."""


def _attribute_flags(kernel, X, start: int, stop: int, raised: set[str], out: list) -> None:
    """Give each row of ``X[start:stop]`` the IEEE exceptions its own computation raises,
    knowing that the whole range raised ``raised``.

    Group testing: the range is halved and each half called again; a half that raises
    nothing clears all its rows at once. Where both halves raise, raising rows are dense and
    each row of the range is called alone (about as many calls as rows); a small range is
    called row by row. So sparse exceptions cost about 2 k log2(rows / k) calls for k raising
    rows, dense ones about one call per row.
    """
    if not raised:
        return
    if stop - start == 1:
        out[start] = set(raised)
        return
    if stop - start <= SMALL_RANGE:
        _flags_row_by_row(kernel, X, start, stop, raised, out)
        return
    middle = (start + stop) // 2
    halves = [
        (low, high, _flags_of(kernel, X, low, high, raised))
        for low, high in (
            (start, middle),
            (middle, stop),
        )
    ]
    if all(flags for _, _, flags in halves):
        for low, high, flags in halves:
            _flags_row_by_row(kernel, X, low, high, flags, out)
        return
    for low, high, flags in halves:
        _attribute_flags(kernel, X, low, high, flags, out)


def _flags_of(kernel, X, start: int, stop: int, enclosing: set[str]) -> set[str]:
    """The IEEE exceptions ``kernel`` raises on ``X[start:stop]``."""
    try:
        return _call(kernel, X[start:stop])[1]
    except Exception:
        # The kernel raised on part of a batch it computed whole: it breaks the row contract
        # (tests/problems/test_row_independence.py checks every registered kernel). Keep the
        # flags of the enclosing call rather than inventing a finer attribution.
        return set(enclosing)


def _flags_row_by_row(kernel, X, start: int, stop: int, enclosing: set[str], out: list) -> None:
    if stop - start == 1:
        out[start] = set(enclosing)
        return
    for i in range(start, stop):
        out[i] = _flags_of(kernel, X, i, i + 1, enclosing)


def _run_rows(variant: Variant, X: np.ndarray, run: BatchRun, positions, size: int) -> None:
    """Call the variant on each row alone (per-row variants, or a batch call that raised)."""
    done: dict[str, list[tuple[int, np.ndarray]]] = {}
    for i in positions:
        one = run_one(variant, X[i])
        run.raised[i] = one.raised
        if one.unsupported is not None or one.error is not None:
            run.failure[i] = "unsupported" if one.error is None else "error"
            run.exception[i] = one.unsupported if one.error is None else one.error
            run.tracebacks[i] = one.error_traceback
            continue
        if one.iterations is not None:
            run.iterations[i] = one.iterations
        run.converged[i] = bool(one.converged)
        y = one.y.reshape(-1)
        if y.size != size:
            run.failure[i] = "error"
            run.exception[i] = (
                f"KernelShapeError: variant {variant.name} returned {y.size} values for one "
                f"input; the exact result has {size}"
            )
            continue
        done.setdefault(y.dtype.str + y.dtype.name, []).append((i, y))
    for found in done.values():
        rows = np.array([i for i, _ in found], dtype=np.int64)
        run.groups.append((rows, np.stack([y for _, y in found])))


# ------------------------------------------------------------------ measuring a batch


def measure_batch(
    problem: Problem,
    name: str | Variant,
    X: np.ndarray,
    fmt: Format,
    exact: metrics.Exact,
    *,
    clock=None,
) -> tuple[BatchRun, dict[str, np.ndarray]]:
    """Run one variant on a batch of inputs and measure every row against its exact result.

    Parameters
    ----------
    problem : Problem
    name : str or Variant
        The variant: a name of ``problem.variants``, or a `Variant` (a family's member).
    X : numpy.ndarray
        The inputs, shape ``(rows, *input_shape)``, in ``fmt``'s dtype.
    fmt : Format
    exact : metrics.Exact
        The exact results, shape ``(rows, size)`` (one flattened result per row).
    clock : precision.run.study.Clock, keyword-only
        Books the kernels' time to ``"kernels"`` and the measures' to ``"errors and bounds"``.

    Returns
    -------
    BatchRun, dict
        The run, and the row's measured columns: one array of ``rows`` values per column
        (object arrays for text), plus `TRACEBACK_KEY` (a list).
    """
    variant = resolve_variant(problem, name)
    rows = len(X)
    run = run_batch(variant, X, size=exact.hi.shape[-1] if exact.hi.ndim > 1 else 1)
    if clock is not None:
        clock.lap("kernels")
    columns: dict[str, np.ndarray] = {
        "compute_dtype": np.full(rows, "", dtype=object),
        "rel_error": np.full(rows, np.nan),
        "rel_error_cw": np.full(rows, np.nan),
        "err_over_u": np.full(rows, np.nan),
        "abs_error": np.full(rows, np.nan),
        "ulps": np.ma.masked_all(rows, dtype=np.uint64),  # float64 distances exceed int64
        "bits": np.full(rows, np.nan),
        "outcome": run.failure.copy(),
        "exception": run.exception,
        "bound": np.full(rows, np.nan),
        "backward_error": np.full(rows, np.nan),
    }
    for positions, Y in run.groups:
        _measure_group(
            problem, variant, X[positions], Y, fmt, exact.take(positions), run, positions, columns
        )
    columns["fp_exceptions"] = np.array([",".join(sorted(r)) for r in run.raised], dtype=object)
    columns["iterations"] = run.iterations
    columns["batch"] = run.batch
    columns[TRACEBACK_KEY] = run.tracebacks
    if clock is not None:
        clock.lap("errors and bounds")
    return run, columns


def _measure_group(problem, variant, X, Y, fmt, exact, run, positions, columns) -> None:
    """The measures of rows that returned results of one dtype (``Y``: (k, size))."""
    with np.errstate(all="ignore"):
        rel = metrics.normwise_relative_error(Y, exact, axis=-1)
        rel_cw = np.max(metrics.relative_error(Y, exact), axis=-1)
        absolute = np.max(metrics.absolute_error(Y, exact), axis=-1)
        bound = batch_bound(variant, X, fmt)
        backward = _backward_errors(problem, X, Y)
    ulps = np.max(metrics.ulp_distance(Y, exact.rounded_to(Y.dtype), nan="max"), axis=-1)
    overflowed = np.array(["overflow" in run.raised[i] for i in positions], dtype=bool)
    outcome = metrics.result_outcome(Y, exact, fp_exceptions=overflowed, axis=-1)
    # |y - 0| / 0 is undefined: metrics' 0-or-inf convention would put an infinite (or a
    # flattering zero) error into every statistic over rel_error; abs_error judges the row.
    zero = outcome == "exact_zero"
    rel = np.where(zero, np.nan, rel)
    rel_cw = np.where(zero, np.nan, rel_cw)
    stalled = ~run.converged[positions] & np.isin(outcome, ("ok", "underflow", "exact_zero"))
    outcome = np.where(stalled, "no_convergence", outcome)
    columns["compute_dtype"][positions] = Y.dtype.name
    columns["rel_error"][positions] = rel
    columns["rel_error_cw"][positions] = rel_cw
    with np.errstate(over="ignore"):  # a relative error beyond max * u is inf in units of u
        columns["err_over_u"][positions] = rel / fmt.u
    columns["abs_error"][positions] = absolute
    columns["ulps"][positions] = ulps.astype(np.uint64)  # distances are >= 0
    with np.errstate(all="ignore"):
        columns["bits"][positions] = np.log2(1.0 + ulps.astype(np.float64))
    columns["outcome"][positions] = outcome
    columns["bound"][positions] = bound
    columns["backward_error"][positions] = backward


def batch_bound(variant: Variant, X: np.ndarray, fmt: Format) -> np.ndarray:
    """The variant's first-order bound for each row of ``X``; NaN where none applies,
    including where a Python float overflows while computing it (an input far outside its
    assumptions)."""
    rows = len(X)
    if variant.bound is None:
        return np.full(rows, np.nan)
    if variant.batched:
        try:
            return np.asarray(variant.bound(X, fmt), dtype=np.float64).reshape(rows)
        except ArithmeticError:  # OverflowError, ZeroDivisionError: find the rows concerned
            pass
    out = np.full(rows, np.nan)
    for i in range(rows):
        try:
            out[i] = variant.bound_of(X[i], fmt)
        except ArithmeticError:
            pass
    return out


def _backward_errors(problem: Problem, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The problem's normwise backward error of each row (NaN where it has none, or where the
    result is not finite)."""
    out = np.full(len(X), np.nan)
    if problem.backward_error is None:
        return out
    finite = np.isfinite(Y.astype(np.float64)).all(axis=-1)
    for i in np.flatnonzero(finite):
        out[i] = float(problem.backward_error(X[i], Y[i]))
    return out


def measure_variant(
    problem: Problem, name: str | Variant, x_fmt: np.ndarray, fmt, exact: metrics.Exact
) -> tuple[np.ndarray, dict]:
    """Run one variant on one input and measure it against the shared exact output: its result
    and the row's measured fields, as Python values (`precision.run.evaluate` and the worked
    examples use it; it is `measure_batch` on a batch of one)."""
    variant = resolve_variant(problem, name)
    exact = metrics.Exact.coerce(exact)
    run, columns = measure_batch(
        problem, variant, np.asarray(x_fmt)[np.newaxis], fmt, exact.reshape(1, -1)
    )
    y = run.groups[0][1][0] if run.groups else np.full(1, np.nan)
    row = {key: values[0] for key, values in columns.items()}
    about = {
        **variant_columns(variant),
        **constant_columns(variant, fmt),
        "fp_exceptions": row["fp_exceptions"],
        "iterations": None if np.isnan(row["iterations"]) else int(row["iterations"]),
        "batch": int(row["batch"]),
    }
    if row["outcome"] in ("unsupported", "error"):
        # Nothing was computed in this format: no error to measure, and no upcast stands in.
        return y, about | {
            "compute_dtype": "",
            "outcome": row["outcome"],
            "exception": row["exception"],
            "bound": np.nan,
            TRACEBACK_KEY: row[TRACEBACK_KEY],
        }
    measured = {
        key: row[key]
        for key in (
            "compute_dtype",
            "rel_error",
            "rel_error_cw",
            "err_over_u",
            "abs_error",
            "bits",
            "outcome",
            "bound",
            "backward_error",
        )
    }
    measured = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in measured.items()}
    return y, about | measured | {"ulps": int(row["ulps"]), "outcome": str(row["outcome"])}


def constant_columns(variant: Variant, fmt: Format) -> dict:
    """The columns a variant's rows share in one format."""
    return {
        "accumulator": variant.accumulator(fmt),
        "library": variant.library,
        "library_version": library_version(variant.library),
        "device": variant.device,
        "compute_mode": variant.compute_mode,
    }


def variant_columns(variant: Variant) -> dict:
    """The columns that say which variant a row measured (`precision.core.schema.VARIANT_KEYS`): its
    name and one column per `PARAMETERS` entry (None, i.e. NaN, where it takes none).

    Raises
    ------
    ValueError
        The variant declares a parameter the table has no column for (it would be lost).
    """
    unknown = sorted(set(variant.params) - set(PARAMETERS))
    if unknown:
        raise ValueError(
            f"variant {variant.name!r} declares parameters {unknown} that are not columns of "
            f"the table (known: {', '.join(PARAMETERS)})"
        )
    return {"variant": variant.name, **{key: variant.params.get(key) for key in PARAMETERS}}


@functools.cache
def library_version(library: str) -> str:
    """The installed version of ``library`` ("" when it is not a distribution)."""
    from importlib import metadata

    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return ""
