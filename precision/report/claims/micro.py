"""Claims that no study table holds: pure functions returning DataFrames, `measure` running
them all in one place, and the findings drawn from the tables it returned.

``precision report`` calls `measure` before it builds the report and hands the tables in
(`precision.report.document.build_report`, which stores them as ``micro/<name>.csv`` beside the
report, so every number stays traceable); the findings only read them. A report built without them
says "not measured" for these claims rather than measuring anything itself."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from precision.core.formats import STUDY_FORMATS, get_format
from precision.report.claims.base import NOT_MEASURED, Finding, Tables, judged, listed, number


def _from_bits(bits: int, dtype: np.dtype) -> np.generic:
    """The float of ``dtype`` with the (non-negative) bit pattern ``bits``."""
    unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    return np.array([bits], dtype=unsigned).view(dtype)[0]


def _last_true(predicate: Callable[[int], bool], top: int) -> int:
    """The largest b in [0, top] with predicate(b), for a predicate true at 0 and monotone."""
    low, high = 0, top
    while low < high:
        middle = (low + high + 1) // 2
        if predicate(middle):
            low = middle
        else:
            high = middle - 1
    return low


def exp_thresholds() -> pd.DataFrame:
    """Per format: the largest x whose ``np.exp`` is finite and the most negative x whose
    ``np.exp`` is nonzero, found by bisection over the format's bit patterns (positive floats
    are ordered like their bit patterns), next to ln(max) and ln(min_subnormal / 2), where a
    correctly rounded exp overflows and underflows (values in float64)."""
    rows = []
    with np.errstate(over="ignore", under="ignore"):
        for name in STUDY_FORMATS:
            fmt = get_format(name)
            top = int(np.array([fmt.max], dtype=fmt.dtype).view(_uint(fmt.dtype))[0])
            finite = _last_true(lambda b, d=fmt.dtype: np.isfinite(np.exp(_from_bits(b, d))), top)
            nonzero = _last_true(lambda b, d=fmt.dtype: np.exp(-_from_bits(b, d)) > 0, top)
            rows.append(
                {
                    "format": name,
                    "largest x with finite exp(x)": float(_from_bits(finite, fmt.dtype)),
                    "ln(max)": math.log(fmt.max),
                    "smallest x with exp(x) > 0": -float(_from_bits(nonzero, fmt.dtype)),
                    "ln(min_subnormal / 2)": math.log(fmt.min_subnormal) - math.log(2),
                    "float spacing at the overflow x": _spacing(finite, fmt.dtype),
                    "float spacing at the underflow x": _spacing(nonzero, fmt.dtype),
                }
            )
    return pd.DataFrame(rows)


def _uint(dtype) -> type:
    return {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]


def _spacing(bits: int, dtype) -> float:
    """The distance from the float with pattern ``bits`` to the next one up."""
    return float(_from_bits(bits + 1, dtype)) - float(_from_bits(bits, dtype))


def exp_thresholds_finding(tables: Tables) -> Finding:
    """Holds per format when exp stops being finite within one float spacing of ln(max)
    and stops being nonzero within one spacing of ln(min_subnormal / 2) (`exp_thresholds`)."""
    table = stored(tables, "exp_thresholds")
    if table is None:
        return UNMEASURED
    # numpy's exp is not correctly rounded (float16 and bfloat16 go through float32), so the
    # measured switch may sit one float spacing of x away from the theoretical threshold.
    over_gap = (table["largest x with finite exp(x)"] - table["ln(max)"]).abs()
    under_gap = (table["smallest x with exp(x) > 0"] - table["ln(min_subnormal / 2)"]).abs()
    over_ok = over_gap <= table["float spacing at the overflow x"]
    under_ok = under_gap <= table["float spacing at the underflow x"]
    table["overflow as predicted"], table["underflow as predicted"] = over_ok, under_ok
    text = "; ".join(
        f"{r['format']}: exp(x) is finite up to x = {number(r['largest x with finite exp(x)'], 8)}"
        f" (ln max = {number(r['ln(max)'], 8)}) and nonzero down to x = "
        f"{number(r['smallest x with exp(x) > 0'], 8)} (ln(min_subnormal/2) = "
        f"{number(r['ln(min_subnormal / 2)'], 8)})"
        for _, r in table.iterrows()
    )
    cases = {f: bool(o and u) for f, o, u in zip(table["format"], over_ok, under_ok, strict=True)}
    return judged(cases, text + ".", table)


def softmax_extremes() -> pd.DataFrame:
    """Naive and shifted softmax of [1000, 1000, 1000] and [-1000, -1000, -1000] in every
    format, measured by `precision.run.evaluate` against the exact result (1/3 each)."""
    from precision.run.evaluate import evaluate

    frames = []
    for value in (1000.0, -1000.0):
        rows = evaluate("softmax", [value] * 3, variants=["naive", "shifted"])
        frames.append(rows.assign(input=f"[{value:g}, {value:g}, {value:g}]"))
    table = pd.concat(frames, ignore_index=True)
    table["computed"] = [np.array2string(np.asarray(c), precision=6) for c in table["computed"]]
    return table[["input", "variant", "format", "outcome", "computed", "rel_error", "ulps"]]


def softmax_extremes_finding(tables: Tables) -> Finding:
    """Holds per input and format when the naive softmax returns nan and the shifted one
    is within 1 ulp of [1/3, 1/3, 1/3] (`softmax_extremes`)."""
    table = stored(tables, "softmax_extremes")
    if table is None:
        return UNMEASURED
    naive, shifted = table[table["variant"] == "naive"], table[table["variant"] == "shifted"]
    cases = {}
    for (value, fmt), rows in table.groupby(["input", "format"], sort=False):
        n_out = rows.loc[rows["variant"] == "naive", "outcome"].iloc[0]
        s_ulps = rows.loc[rows["variant"] == "shifted", "ulps"].iloc[0]
        cases[f"{value} {fmt}"] = n_out == "nan" and not pd.isna(s_ulps) and s_ulps <= 1
    text = (
        "Naive softmax outcomes: "
        + "; ".join(
            f"{i}: {listed(f'{r.format} {r.outcome}' for r in g.itertuples())}"
            for i, g in naive.groupby("input", sort=False)
        )
        + ". Shifted softmax: largest error "
        + f"{number(int(shifted['ulps'].max()))} ulp(s) over all formats and both inputs."
    )
    return judged(cases, text, table)


def one_minus_example() -> pd.DataFrame:
    """``1.0 - 0.9999999999999999`` in every format: the literal rounded to the format, the
    computed difference and how Python / numpy prints it, split into the input rounding and the
    subtraction errors (`precision.problems.cancellation.decomposed_difference`)."""
    from precision.problems.cancellation import decomposed_difference

    return pd.DataFrame(
        [decomposed_difference("1.0", "0.9999999999999999", get_format(f)) for f in STUDY_FORMATS]
    )


def one_minus_finding(tables: Tables) -> Finding:
    """True in a format where ``1.0 - 0.9999999999999999`` is 0 (`one_minus_example`)."""
    table = stored(tables, "one_minus")
    if table is None:
        return UNMEASURED
    zero = table["computed"] == "0"
    prints = "; ".join(f"{r['format']} prints {r['prints as']}" for _, r in table.iterrows())
    f64 = table[table["format"] == "float64"].iloc[0]
    text = (
        f"{prints}. In float64 (Python's float) 0.9999999999999999 rounds to {f64['fl(b)']} "
        f"and the subtraction is exact (error {number(f64['subtraction rel. error'])}); the "
        f"result is {number(f64['input rounding rel. error'] * 100)}% off the decimal answer "
        f"1e-16, all of it from rounding the input. It is 0 in: "
        f"{listed(table.loc[zero, 'format'])}, where the literal rounds to 1.0."
    )
    cases = dict(zip(table["format"], zero, strict=True))
    return judged(cases, text, table)


def associativity() -> pd.DataFrame:
    """(0.1 + 0.2) + 0.3 and 0.1 + (0.2 + 0.3) in every format, exactly
    (`precision.problems.summation.associativity_example`)."""
    from precision.problems.summation import associativity_example

    return associativity_example()


def associativity_finding(tables: Tables) -> Finding:
    """True in a format where the two orders of (0.1 + 0.2 + 0.3) differ
    (`associativity`)."""
    table = stored(tables, "associativity")
    if table is None:
        return UNMEASURED
    f64 = table[table["format"] == "float64"].iloc[0]
    text = (
        f"float64: (0.1 + 0.2) + 0.3 = {float(f64['(0.1+0.2)+0.3'])!r} and 0.1 + (0.2 + 0.3) = "
        f"{float(f64['0.1+(0.2+0.3)'])!r}. The two orders differ in "
        f"{listed(table.loc[~table['equal'], 'format'])} and agree in "
        f"{listed(table.loc[table['equal'], 'format'])}."
    )
    cases = dict(zip(table["format"], ~table["equal"], strict=True))
    return judged(cases, text, table)


def constant_feature_batchnorm() -> pd.DataFrame:
    """max |y| of batch normalisation (eps = 1e-5) of a constant feature and of one with
    variance below eps, per variance algorithm and format
    (`precision.problems.batchnorm.small_variance_example`; the exact output of a constant
    feature is 0)."""
    from precision.problems.batchnorm import small_variance_example

    return small_variance_example()


MEASUREMENTS: dict[str, Callable[[], pd.DataFrame]] = {
    "exp_thresholds": exp_thresholds,
    "softmax_extremes": softmax_extremes,
    "one_minus": one_minus_example,
    "associativity": associativity,
    "constant_feature_batchnorm": constant_feature_batchnorm,
}
"""The measurements no study holds, by name: the only code of the report command that
computes (numpy, `precision.run.evaluate`, exact arithmetic)."""

PREFIX = "micro/"
"""Their tables' keys among a claim's tables (no problem name contains a slash), which is also
their path in the report folder."""

UNMEASURED = Finding(
    NOT_MEASURED,
    "not measured: the report was built without the micro measurements "
    "(precision report takes them, precision.report.claims.micro.measure)",
    pd.DataFrame(),
)


def measure() -> Tables:
    """Run every measurement of `MEASUREMENTS` now; returns ``micro/<name>`` -> its table, for
    `precision.report.document.build_report` (``micro=``)."""
    return {PREFIX + name: run() for name, run in MEASUREMENTS.items()}


def stored(tables: Tables, name: str) -> pd.DataFrame | None:
    """A copy of the measured table ``name`` among ``tables`` (a finding adds columns to it,
    and the handed-in table is stored as measured), or None where it was not handed in."""
    table = tables.get(PREFIX + name)
    return None if table is None else table.copy()
