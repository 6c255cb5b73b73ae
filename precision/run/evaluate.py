"""Evaluate one input the way a study does, for the command line and for notebooks.

``evaluate("softmax", [1000, 1000, 1000], formats=["float16"])`` rounds the input once,
correctly, to each format (`precision.core.formats.cast`), computes its certified ground truth once
per format (`precision.truth.exact.ground_truth`), runs every variant on the rounded input and
measures it exactly as the study's rows are measured (`precision.run.measure.measure_variant`): one
row per variant x format. An input that a format cannot represent gives ``input_overflow``
rows; an input holding NaN or an infinity is run through the variants (their results are
shown) but has no exact value (``input_nan``, ``input_inf``). Nothing here prints or writes:
`render_text` and `render_json` turn the table into what ``precision eval`` prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence

import mpmath
import numpy as np
import pandas as pd

from precision.core import schema
from precision.core.formats import FORMATS, STUDY_FORMATS, Format, cast, get_format
from precision.core.metrics import Exact
from precision.core.values import InputError
from precision.problems import DEFAULT_VARIANTS, PROBLEMS
from precision.problems.base import Problem, Variant
from precision.run.measure import measure_variant, run_variant_detailed, variant_columns
from precision.run.spec import did_you_mean
from precision.truth.exact import UndefinedResult, ground_truth

SHARED = (
    "problem",
    *schema.VARIANT_KEYS,
    "format",
    "outcome",
    "exception",
    "rel_error",
    "abs_error",
    "ulps",
    "bits",
    "err_over_u",
    "cond",
    "certified",
    "gt_prec",
)
"""Columns evaluate shares with the study table: same meaning, unit and dtype (`schema`)."""
COLUMNS = {
    **{name: schema.COLUMNS[name] for name in SHARED},
    "computed": "the variant's result as float64 numbers (exactly its values): a float for a "
    "scalar output, an array for a vector",
    "exact": "the certified exact result (mpmath numbers, ~106 bits), like `computed`",
    "input_rounded": "whether rounding to the format changed the input",
    "n": "input size (its last dimension)",
    **{
        name: schema.COLUMNS[name]
        for name in (
            "compute_dtype",
            "accumulator",
            "library",
            "rel_error_cw",
            "fp_exceptions",
            "bound",
        )
    },
}
"""The columns of `evaluate`'s table: the study table's (`precision.core.schema.COLUMNS`) where
they mean the same, and the result values themselves. Outcomes are `schema.OUTCOMES`."""

_FLOATS = (
    "rel_error",
    "abs_error",
    "rel_error_cw",
    "err_over_u",
    "bits",
    "cond",
    "bound",
    *schema.PARAMETERS,
)
_NULLABLE = {"ulps": "UInt64", "gt_prec": "Int64", "n": "Int64", "certified": "boolean"}
_OBJECTS = ("computed", "exact")


def evaluate(
    problem: str | Problem | Callable,
    values,
    *,
    formats: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    params: Mapping[str, Sequence[float]] | None = None,
    engine: str = schema.DEFAULT_ENGINE,
) -> pd.DataFrame:
    """Measure every variant of a problem on one input, in each format.

    Parameters
    ----------
    problem : str, Problem or kernel
        A name from `precision.problems.PROBLEMS` (``"softmax"``), a `Problem`, or a kernel
        registered with `precision.kernel` (then only that kernel runs, unless ``variants``
        names others of its problem).
    values : array-like
        One input in float64 (a scalar, a vector, or a 2-D array such as cross-entropy's
        (2, n) logits and target), of the shape the problem takes (`input_pattern`).
    formats : sequence of str, keyword-only
        Format names (default: float16, bfloat16, float32, float64).
    variants : sequence of str, keyword-only
        Variant names of the problem (default: its own, `DEFAULT_VARIANTS`; emulated and
        library variants when named). A family (a variant with parameters) runs once per
        point of its parameter grid.
    params : mapping of str to sequence of float, keyword-only
        Values of parameters (``{"h": [2**-10, 2**-20]}``) replacing the default grids of
        every chosen family that takes them.
    engine : {"arb", "mpmath"}, keyword-only
        The ground-truth engine, by default the one studies use (`schema.DEFAULT_ENGINE`).

    Returns
    -------
    pandas.DataFrame
        One row per format x variant (x parameter values), the columns of `COLUMNS`.

    Raises
    ------
    InputError
        For an unknown problem, format or variant, or values that are not an input of the
        problem; the message is one line and suggests the closest name for a typo.
    """
    if callable(problem) and not isinstance(problem, Problem):
        problem, variants = _registered_kernel(problem, variants)
    problem = get_problem(problem)
    x = problem_input(problem, values)
    formats = _chosen(formats, FORMATS, STUDY_FORMATS, "format")
    default = DEFAULT_VARIANTS.get(problem.name, tuple(problem.variants))
    variants = _chosen(variants, problem.variants, default, "variant", problem)
    runs = _runs(problem, variants, params)
    rows = []
    with np.errstate(all="ignore"):  # the variants themselves report to measure_variant
        for name in formats:
            rows += _rows_in_format(problem, x, get_format(name), runs, engine=engine)
    return _table(rows)


def _runs(problem: Problem, names: Sequence[str], params) -> list[Variant]:
    """The chosen variants with every family expanded over its grid (``params`` replacing the
    default values of the parameters it names)."""
    params = dict(params or {})
    families = [problem.variants[name] for name in names]
    taken = {key for variant in families for key in variant.grid}
    for key, values in params.items():
        if key not in taken:
            raise InputError(
                f"no chosen variant of {problem.name} takes parameter {_quoted(key)} "
                f"(known: {', '.join(sorted(taken)) or 'none'})"
            )
        if isinstance(values, str) or not np.all(np.isfinite(np.asarray(values, dtype=float))):
            raise InputError(f"parameter {key}: values must be finite numbers, got {values!r}")
    grids = {key: tuple(np.atleast_1d(np.asarray(v, dtype=float))) for key, v in params.items()}
    return [run for variant in families for run in variant.expand(grids)]


def _registered_kernel(fn, variants) -> tuple[str, Sequence[str]]:
    """The problem and variant of a kernel registered with `precision.kernel`."""
    registered = getattr(fn, "precision_variant", None)
    if registered is None:
        name = getattr(fn, "__name__", repr(fn))
        raise InputError(
            f"{name} is not a registered kernel: decorate it with @precision.kernel(PROBLEM)"
        )
    problem, name = registered
    return problem, [name] if variants is None else variants


def get_problem(problem: str | Problem) -> Problem:
    """The `Problem` of a name (InputError with a suggestion for an unknown one)."""
    if isinstance(problem, Problem):
        return problem
    if not isinstance(problem, str) or problem not in PROBLEMS:
        raise InputError(f"unknown problem {_quoted(problem)}" + did_you_mean(problem, PROBLEMS))
    return PROBLEMS[problem]


def input_pattern(problem: Problem) -> tuple[str, ...]:
    """The shape of the problem's input with its free size as ``"n"``: ``("n",)``, ``("1",)``
    (a scalar), ``("2", "n")`` (cross-entropy), ``("n", "n")`` (a square matrix)."""
    small, large = problem.input_shape(7), problem.input_shape(11)
    return tuple("n" if a != b else str(a) for a, b in zip(small, large, strict=True))


def problem_input(problem: Problem, values) -> np.ndarray:
    """``values`` as a float64 input of ``problem``, checked against its shape.

    Raises
    ------
    InputError
        For values that are not real numbers, are empty, or do not have the problem's shape
        (or fail its `Problem.check_input`).
    """
    x = _float64_array(problem, values)
    pattern = input_pattern(problem)
    if x.ndim == 0 or (pattern == ("1",) and x.size == 1):
        x = x.reshape(1)
    if x.size == 0:
        raise InputError(f"{problem.name}: no values given")
    takes = f"{problem.name} takes {_describe_pattern(pattern)}, got {_describe_shape(x)}"
    if x.ndim != len(pattern):
        raise InputError(takes)
    if problem.check_input is not None:
        try:
            problem.check_input(x)
        except ValueError as exc:
            raise InputError(f"{problem.name}: {exc}") from None
    if not _has_input_shape(problem, x.shape):
        raise InputError(takes)
    if problem.name in TARGET_DISTRIBUTION:
        _check_distribution(problem, x[1])
    return x


TARGET_DISTRIBUTION = frozenset({"cross_entropy"})
"""Problems whose input's row 1 is a target distribution (its cross-entropy is only a loss
when the target is one)."""

DISTRIBUTION_TOLERANCE = 1e-6
"""How far a target's sum may be from 1 (decimal targets such as 0.1, 0.2, 0.7 sum to 1
only up to rounding)."""


def _check_distribution(problem: Problem, target: np.ndarray) -> None:
    """Row 1 must be finite, non-negative and sum to 1 (within `DISTRIBUTION_TOLERANCE`)."""
    if not np.all(np.isfinite(target)) or np.any(target < 0):
        raise InputError(
            f"{problem.name}: the target (row 1) must be a probability distribution: "
            "finite and non-negative"
        )
    total = math.fsum(target.tolist())
    if abs(total - 1.0) > DISTRIBUTION_TOLERANCE:
        raise InputError(
            f"{problem.name}: the target (row 1) must be a probability distribution summing "
            f"to 1 (within {DISTRIBUTION_TOLERANCE:g}), got a sum of {total:.6g}"
        )


def _has_input_shape(problem: Problem, shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` is ``problem.input_shape(n)`` for some size n (n is not always the
    last axis: [H | b] is n x (n + 1), [X | y] over [lambda, 0...] is (2n + 1) x (n + 1))."""
    return any(tuple(problem.input_shape(n)) == shape for n in range(1, max(shape) + 1))


def _float64_array(problem: Problem, values) -> np.ndarray:
    try:
        array = np.asarray(values)
        if array.dtype.kind == "c":
            raise TypeError("complex numbers are not supported")
        return array.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{problem.name}: values must be real numbers ({message})") from None


def _chosen(names, known, default, what: str, problem: Problem | None = None) -> tuple[str, ...]:
    """Validated names (``--format a,b`` may also arrive as one comma-separated string)."""
    if names is None:
        return tuple(default)
    if isinstance(names, str):
        names = [names]
    chosen = [part.strip() for name in names for part in str(name).split(",")]
    of = f" of {problem.name}" if problem else ""
    for name in chosen:
        if name not in known:
            raise InputError(f"unknown {what} {_quoted(name)}{of}" + did_you_mean(name, known))
    if not chosen:
        raise InputError(f"no {what} chosen")
    return tuple(dict.fromkeys(chosen))  # in the given order, each once


def _rows_in_format(
    problem: Problem, x: np.ndarray, fmt: Format, variants: list[Variant], *, engine: str
) -> list[dict]:
    """The rows of every variant in one format (the study's rows for one input: `measure_variant`,
    a batch of one)."""
    x_fmt = cast(x, fmt)
    x_back = _as_float64(x_fmt)
    base = {
        "problem": problem.name,
        "format": fmt.name,
        "n": x.shape[-1],
        "input_rounded": not np.array_equal(x_back, x, equal_nan=True),
    }
    if not np.isfinite(x).all():
        outcome = "input_nan" if np.isnan(x).any() else "input_inf"
        return [base | _unmeasured(problem, v, x_fmt, fmt, outcome) for v in variants]
    if not np.isfinite(x_back).all():
        return [base | variant_columns(v) | {"outcome": "input_overflow"} for v in variants]
    if problem.reference_params and not problem.params:
        # The exact result depends on the variant's parameters (Adam's eps): one ground truth
        # per member, each row measured against its own.
        return [
            row
            for v in variants
            for row in _rows_in_format(problem.for_variant(v), x, fmt, [v], engine=engine)
        ]
    try:
        truth = ground_truth(problem, x_fmt, fmt, engine=engine)
    except UndefinedResult:  # e.g. a matrix that is exactly singular once rounded
        return [base | _unmeasured(problem, v, x_fmt, fmt, "undefined") for v in variants]
    base |= {
        "cond": truth.cond,
        "certified": truth.certified,
        "gt_prec": truth.prec,
        "exact": _mpf_values(truth.exact),
    }
    rows = []
    for variant in variants:
        y, measured = measure_variant(problem, variant, x_fmt, fmt, truth.exact)
        returned = measured["outcome"] not in schema.NOTHING_COMPUTED
        rows.append(base | measured | {"computed": _float_values(y) if returned else None})
    return rows


def _unmeasured(problem: Problem, variant: Variant, x_fmt: np.ndarray, fmt: Format, outcome: str):
    """A variant's result on an input without an exact value (it holds NaN or inf)."""
    run = run_variant_detailed(problem, variant, x_fmt)
    about = {
        **variant_columns(variant),
        "accumulator": variant.accumulator(fmt),
        "library": variant.library,
        "fp_exceptions": ",".join(sorted(run.raised)),
    }
    if run.error is not None or run.unsupported is not None:
        stopped = "error" if run.error is not None else "unsupported"
        return about | {"outcome": stopped, "exception": run.error or run.unsupported}
    return about | {
        "outcome": outcome,
        "computed": _float_values(run.y),
        "compute_dtype": run.y.dtype.name,
    }


def _as_float64(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # a signalling NaN raises the invalid flag on casting
        return np.asarray(x).astype(np.float64)


def _float_values(y: np.ndarray) -> float | np.ndarray:
    """A result as float64 numbers (exact: every format is a subset of float64)."""
    flat = _as_float64(y).reshape(-1)
    return float(flat[0]) if flat.size == 1 else flat


def _mpf_values(exact: Exact) -> mpmath.mpf | np.ndarray:
    """The exact values as mpmath numbers: (hi + lo) * 2**exp, exactly as `Exact` holds them."""
    out = np.empty(exact.hi.size, dtype=object)
    with mpmath.workprec(113):
        for i, (hi, lo, e) in enumerate(
            zip(exact.hi.flat, exact.lo.flat, exact.exp.flat, strict=True)
        ):
            value = mpmath.mpf(float(hi))
            if mpmath.isfinite(value):
                value = mpmath.ldexp(value + mpmath.mpf(float(lo)), int(e))
            out[i] = value
    return out[0] if out.size == 1 else out


def _table(rows: list[dict]) -> pd.DataFrame:
    """The rows with the columns of `COLUMNS`, numbers in nullable dtypes (NA: not measured)."""
    columns = {}
    for name in COLUMNS:
        cells = [row.get(name) for row in rows]
        if name in _OBJECTS:
            columns[name] = pd.Series(cells, dtype=object)
        elif name in _FLOATS:
            columns[name] = pd.Series([np.nan if v is None else v for v in cells], dtype="float64")
        elif name in _NULLABLE:
            columns[name] = pd.Series(pd.array(cells, dtype=_NULLABLE[name]))
        elif name == "input_rounded":
            columns[name] = pd.Series(cells, dtype=bool)
        else:
            columns[name] = pd.Series(["" if v is None else v for v in cells], dtype="string")
    return pd.DataFrame(columns)


def _quoted(name) -> str:
    text = repr(name)
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= 40 else text[:37] + "..."


def _describe_pattern(pattern: tuple[str, ...]) -> str:
    if pattern == ("1",):
        return "one value"
    if pattern == ("n",):
        return "a vector of values"
    if pattern == ("n", "n"):
        return "a square n x n matrix"
    return f"a {' x '.join(pattern)} array"


def _describe_shape(x: np.ndarray) -> str:
    if x.ndim == 1:
        return "1 value" if x.size == 1 else f"{x.size} values"
    return f"a {' x '.join(map(str, x.shape))} array"


# ---------------------------------------------------------------- rendering (for the CLI)

VECTOR_SHOWN = 3
"""Components shown of a vector (the JSON output has them all)."""


def render_text(table: pd.DataFrame, values: np.ndarray) -> str:
    """The table as ``precision eval`` prints it: a block per format, a line per variant.

    Each block's first line gives the exact result and the condition number of the input as
    rounded to that format; each variant line its outcome, normwise relative error, ulps and
    bits of error, and computed result. Vectors show their first components.
    """
    problem = str(table["problem"].iloc[0])
    x = np.asarray(values, dtype=np.float64)
    shown = (
        _scalar_text(float(x[0]), "float64", 17) if x.shape == (1,) else _input_text(x, "float64")
    )
    lines = [f"{problem} of {shown}"]
    for fmt, rows in table.groupby("format", sort=False):
        lines += ["", _format_line(str(fmt), rows.iloc[0], values)]
        lines += _aligned(
            [["variant", "outcome", "rel_error", "ulps", "bits", "computed"]]
            + [_variant_cells(row) for _, row in rows.iterrows()]
        )
        raised = rows[rows["outcome"] == "error"]
        lines += [f"  {row.variant} raised {row.exception}" for row in raised.itertuples()]
    return "\n".join(lines)


def _format_line(fmt: str, row, values: np.ndarray) -> str:
    outcome = str(row["outcome"])
    if outcome == "input_overflow":
        return f"{fmt}: the input is beyond {fmt}'s range (max {get_format(fmt).max:.5g})"
    if outcome in ("input_nan", "input_inf"):
        kind = "NaN" if outcome == "input_nan" else "an infinity"
        return f"{fmt}: the input holds {kind}, so it has no exact value; the variants return"
    if outcome == "undefined":
        return f"{fmt}: the problem has no exact result for this input (e.g. a singular matrix)"
    exact = _value_text(row["exact"], None, _exact_digits(get_format(fmt)))
    certified = "" if row["certified"] else f" (not certified at {row['gt_prec']} bits)"
    line = f"{fmt}: exact {exact}{certified}, condition number {row['cond']:.3g}"
    if row["input_rounded"]:
        rounded = _as_float64(cast(np.asarray(values, dtype=np.float64), fmt))
        line += f"; input rounded to {_input_text(rounded, 'float64')}"  # its exact values
    return line


def _exact_digits(fmt: Format) -> int:
    """Significant digits that show a vector's exact components beyond ``fmt``'s precision."""
    return min(17, math.ceil(fmt.p * math.log10(2)) + 3)


def _variant_cells(row) -> list[str]:
    # A ground truth exists and the variant returned a result: errors may still be nan.
    measured = not pd.isna(row["gt_prec"]) and row["outcome"] not in schema.NOTHING_COMPUTED
    dtype = str(row["compute_dtype"]) or None
    params = {key: row[key] for key in schema.PARAMETERS}
    return [
        schema.variant_label(str(row["variant"]), params),
        str(row["outcome"]),
        _number_text(row["rel_error"]) if measured else "-",
        str(int(row["ulps"])) if not pd.isna(row["ulps"]) else "-",
        f"{row['bits']:.1f}" if not pd.isna(row["bits"]) else "-",
        _value_text(row["computed"], dtype, 0) if row["computed"] is not None else "-",
    ]


def _aligned(table: list[list[str]]) -> list[str]:
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in table
    ]


def _number_text(value: float) -> str:
    return "0" if value == 0 else f"{value:.2e}" if math.isfinite(value) else str(value)


def _value_text(value, dtype: str | None, digits: int) -> str:
    """A scalar in full, a vector's first components: results in the fewest digits of
    ``dtype``, exact values (``dtype`` None) to 17 digits, vector components to ``digits``."""
    if isinstance(value, np.ndarray):
        return _vector_text(value, dtype, digits)
    return _scalar_text(value, dtype, 17)


def _input_text(x: np.ndarray, dtype: str) -> str:
    """An input (a vector, or the rows of a 2-D array) in the fewest digits of ``dtype``."""
    if x.ndim == 1:
        return _vector_text(x, dtype, 17)
    rows = ", ".join(_vector_text(row, dtype, 17) for row in x[:VECTOR_SHOWN])
    more = f", ... ({x.shape[0]} rows)" if x.shape[0] > VECTOR_SHOWN else ""
    return f"[{rows}{more}]"


def _vector_text(values: np.ndarray, dtype: str | None, digits: int) -> str:
    shown = ", ".join(_scalar_text(v, dtype, digits) for v in values[:VECTOR_SHOWN])
    more = f", ... ({values.size} values)" if values.size > VECTOR_SHOWN else ""
    return f"[{shown}{more}]"


def _scalar_text(value, dtype: str | None, digits: int) -> str:
    """An exact (mpmath) value to ``digits`` significant digits, or a float in the fewest
    digits that round back to it in ``dtype``."""
    if isinstance(value, mpmath.mpf):
        text = mpmath.nstr(value, digits) if mpmath.isfinite(value) else str(float(value))
    else:
        text = _shortest(float(value), dtype or "float64")
    mantissa, _, exponent = text.partition("e")
    mantissa = mantissa.removesuffix(".0")
    return f"{mantissa}e{exponent}" if exponent else mantissa


def _shortest(value: float, dtype: str) -> str:
    if not math.isfinite(value) or dtype == "float64":
        return repr(value)
    for digits in range(1, 18):
        text = f"{value:.{digits}g}"
        if float(_as_float64(cast(np.array([float(text)]), dtype))[0]) == value:
            return repr(float(text))
    return repr(value)


def render_json(table: pd.DataFrame) -> str:
    """The table as a JSON array of rows (strict JSON: NaN and infinities are the strings
    ``"nan"``, ``"inf"``, ``"-inf"``; exact values are decimal strings of 17 digits; missing
    values are null)."""
    rows = [{name: _json_cell(row[name]) for name in COLUMNS} for _, row in table.iterrows()]
    return json.dumps(rows, indent=2, allow_nan=False)


def _json_cell(value):
    if isinstance(value, np.ndarray):
        return [_json_cell(v) for v in value]
    if isinstance(value, mpmath.mpf):
        return mpmath.nstr(value, 17) if mpmath.isfinite(value) else str(float(value))
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(float(value))
    return str(value)
