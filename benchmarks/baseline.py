"""The naive baseline the study is measured against, and the check that both give the same errors.

The baseline makes the study's rows the way a first implementation would: for every row
(input x variant x format) it evaluates the problem's mpmath reference once at a fixed 256 bits
on the input as that format received it, rounds it to the format, and measures the variant
against it. Nothing is shared between variants or formats, nothing is cached, nothing is
certified. Inputs, row fields and error measures are the study's own (`precision.run.study`'s
`_chunk_inputs`, `_inputs_per_format`, `_base_row` and `measure_variant`), so the two sides
differ only in how the ground truth is made.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from precision.core.formats import get_format
from precision.core.metrics import Exact
from precision.core.numbers import MPMATH
from precision.core.schema import typed_table
from precision.problems import PROBLEMS
from precision.run import measure, study
from precision.run.spec import StudySpec
from precision.truth.exact import AGREEMENT

BASELINE_PREC = 256
"""The baseline's one working precision (bits)."""

KEYS = ["problem", "n", "source", "sample", "format", "variant"]
"""Columns that identify a row."""

REL_TOLERANCE = 1e-9
"""Largest relative difference of rel_error between the two sides counted as agreement."""


ACCURACY = AGREEMENT
"""The certified truths' relative accuracy (2**-80, `precision.truth.exact.AGREEMENT`): rel_error
values differing by less are the same error, whatever REL_TOLERANCE says."""


REFEREE_BITS = 512
"""Bits the referee keeps of the smallest term (see `referee_prec`)."""


def referee_prec(x_fmt: np.ndarray) -> int:
    """The referee's precision for an input: every reference here is formed from the terms
    exp(x_i - max x) (or exp(x) for exp itself), the smallest of which is exp(-gap) relative to
    the largest, gap = max x - min x. At gap * log2(e) + REFEREE_BITS bits (4096 at least) every
    term contributes with REFEREE_BITS bits to spare, so no term that decides a rounding is
    lost, which is how a fixed ladder is fooled (log_softmax of a float32 input with a gap of
    750 lands on a rounding tie at every precision below about 1082 bits)."""
    x64 = np.asarray(x_fmt, dtype=np.float64)
    gap = float(x64.max() - x64.min()) if x64.size > 1 else 0.0
    return max(4096, int(np.ceil(gap * np.log2(np.e))) + REFEREE_BITS)


def naive_truth(problem, x_fmt: np.ndarray, fmt, prec: int = BASELINE_PREC) -> tuple[Exact, float]:
    """One uncertified evaluation at ``prec`` bits, rounded to ``fmt``: (exact, cond)."""
    with MPMATH.workprec(prec):
        y, cond = problem.reference(x_fmt, MPMATH)
        exact = Exact.from_mpf(list(y), fmt=fmt)
        return exact, float(cond)


def baseline_chunk(spec: StudySpec, chunk: study.Chunk) -> study.ChunkResult:
    """The chunk's rows, with a fresh 256-bit ground truth for every row (module docstring)."""
    start = time.perf_counter()
    problem = PROBLEMS[chunk.problem]
    variants = spec.runs_of(chunk.problem)
    rows: list[dict] = []
    gt_seconds = 0.0
    for cell, index, x in study._chunk_inputs(spec, chunk):
        for fmt_name, x_fmt in study._inputs_per_format(spec, x).items():
            fmt = get_format(fmt_name)
            base = study._base_row(spec, chunk, cell, index, fmt_name, x_fmt)
            if not np.isfinite(x_fmt.astype(np.float64)).all():
                rows += [
                    base | measure.variant_columns(v) | {"outcome": "input_overflow"}
                    for v in variants
                ]
                continue
            for variant in variants:
                t0 = time.perf_counter()
                exact, cond = naive_truth(problem, x_fmt, fmt)
                gt_seconds += time.perf_counter() - t0
                row = base | {"cond": cond, "gt_prec": BASELINE_PREC, "certified": False}
                rows.append(row | measure.measure_variant(problem, variant, x_fmt, fmt, exact)[1])
    table = typed_table(pd.DataFrame(rows, columns=list(study.COLUMNS)))
    return study.ChunkResult(table, chunk.inputs(spec), time.perf_counter() - start, gt_seconds)


def compare(study_table: pd.DataFrame, baseline_table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose errors differ: ulps or outcome not identical, or rel_error not within
    REL_TOLERANCE relative (NaN agrees with NaN, inf with an inf of the same sign).

    Both tables must hold the same rows in the same order (they are made from the same chunks);
    a ValueError says otherwise. Returns the disagreeing rows with both sides' values, what
    differs, and ``within_accuracy``: the row differs only in rel_error, by at most
    ACCURACY (a certified truth is only known to 2**-80 relative, so a rel_error of 1e-59
    may read 0 on one side).
    """
    if len(study_table) != len(baseline_table):
        raise ValueError(f"{len(study_table)} study rows but {len(baseline_table)} baseline rows")
    a = study_table[KEYS].reset_index(drop=True).astype(str)
    b = baseline_table[KEYS].reset_index(drop=True).astype(str)
    if not a.equals(b):
        raise ValueError(
            "the study and the baseline rows are not the same inputs in the same order"
        )
    s = study_table.reset_index(drop=True)
    t = baseline_table.reset_index(drop=True)
    ulps = ~_same(s["ulps"], t["ulps"])
    outcome = ~_same(s["outcome"], t["outcome"])
    rel = ~_close(s["rel_error"].to_numpy(float), t["rel_error"].to_numpy(float))
    bad = ulps.to_numpy() | outcome.to_numpy() | rel
    out = s.loc[bad, KEYS].copy()
    out["cell_cond"] = s.loc[bad, "cell_log10_cond"]
    out["cell_magnitude"] = s.loc[bad, "cell_log10_magnitude"]
    for column in ("rel_error", "ulps", "outcome", "gt_prec", "certified"):
        out[f"study_{column}"] = s.loc[bad, column]
        out[f"baseline_{column}"] = t.loc[bad, column]
    flags = {"ulps": ulps.to_numpy(), "outcome": outcome.to_numpy(), "rel_error": rel}
    out["differs_in"] = pd.Series(
        [",".join(name for name, f in flags.items() if f[i]) for i in np.flatnonzero(bad)],
        index=out.index,
        dtype=object,
    )
    with np.errstate(invalid="ignore"):
        gap = np.abs(s["rel_error"].to_numpy(float) - t["rel_error"].to_numpy(float))
    out["within_accuracy"] = (~ulps.to_numpy() & ~outcome.to_numpy() & (gap <= ACCURACY))[bad]
    return out.reset_index(drop=True)


def referee(spec: StudySpec, plan: list[study.Chunk], rows: pd.DataFrame) -> pd.DataFrame:
    """Settle disagreements with a third truth: one mpmath evaluation (independent of the
    study's Arb balls) at `referee_prec` bits, enough to keep every term of the input. Adds
    its ``referee_ulps``/``referee_outcome`` and which side agrees with it on both; rows
    ``within_accuracy`` are left out (``referee_agrees_with`` is empty).
    """
    out = rows.copy()
    ulps, outcomes, verdicts = [], [], []
    inputs: dict[str, dict] = {}
    for row in rows.itertuples(index=False):
        if row.within_accuracy:
            ulps.append(None)
            outcomes.append(None)
            verdicts.append("")
            continue
        chunk = next(c for c in plan if _holds(c, row))
        if chunk.id not in inputs:
            inputs[chunk.id] = {
                (cell, index): x for cell, index, x in study._chunk_inputs(spec, chunk)
            }
        cell = (row.cell_cond, row.cell_magnitude) if chunk.source == "synthetic" else (None, None)
        x = inputs[chunk.id][cell, row.sample]
        x_fmt = study._inputs_per_format(spec, x)[row.format]
        problem, fmt = PROBLEMS[row.problem], get_format(row.format)
        exact, _ = naive_truth(problem, x_fmt, fmt, referee_prec(x_fmt))
        _, measured = measure.measure_variant(problem, row.variant, x_fmt, fmt, exact)
        ulps.append(measured["ulps"])
        outcomes.append(measured["outcome"])
        sides = [
            side
            for side in ("study", "baseline")
            if getattr(row, f"{side}_ulps") == measured["ulps"]
            and getattr(row, f"{side}_outcome") == measured["outcome"]
        ]
        verdicts.append(" and ".join(sides) or "neither")
    out["referee_ulps"] = pd.Series(ulps, index=out.index, dtype=object)
    out["referee_outcome"] = pd.Series(outcomes, index=out.index, dtype=object)
    out["referee_agrees_with"] = pd.Series(verdicts, index=out.index, dtype=object)
    return out


def _holds(chunk: study.Chunk, row) -> bool:
    """Whether ``row`` (a disagreement) is one of ``chunk``'s rows."""
    if (chunk.problem, chunk.n, chunk.source) != (row.problem, row.n, row.source):
        return False
    if chunk.source == "synthetic":
        return (row.cell_cond, row.cell_magnitude) in chunk.cells
    return chunk.rows[0] <= row.sample < chunk.rows[1]


def _same(a: pd.Series, b: pd.Series) -> pd.Series:
    """Elementwise equality with missing equal to missing."""
    a, b = a.astype(object), b.astype(object)
    missing_a, missing_b = a.isna(), b.isna()
    equal = (a == b).fillna(False).astype(bool)
    return (missing_a & missing_b) | (~missing_a & ~missing_b & equal)


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        both_nan = np.isnan(a) & np.isnan(b)
        equal = a == b  # inf == inf of the same sign
        close = np.abs(a - b) <= REL_TOLERANCE * np.maximum(np.abs(a), np.abs(b))
    return both_nan | equal | close


__all__ = ["BASELINE_PREC", "baseline_chunk", "compare", "naive_truth", "referee"]
