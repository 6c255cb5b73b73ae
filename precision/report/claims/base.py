"""What a claim is, what measuring it returns, and the helpers the claim modules share.

A `Claim` pairs a statement of the tutorial with a function that measures it; the function
returns a `Finding`: a verdict, the measured values in words, and the evidence table those
words were formatted from. Verdicts: ``holds``; ``fails`` (the measurements contradict the
statement); ``qualified`` (true in some formats or cases and false in others, said plainly);
``not measured`` (the study that would measure it has not been run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision.core.formats import STUDY_FORMATS
from precision.report.summary import labelled, magnitude_name

HOLDS, FAILS, QUALIFIED, NOT_MEASURED = "holds", "fails", "qualified", "not measured"

Tables = dict[str, pd.DataFrame]
"""Problem name -> its stored rows (from whichever study measured it)."""

SOFTMAX_FAMILY = ("softmax", "logsumexp", "log_softmax")
BATCHNORMS = ("batchnorm", "batchnorm_finfo_eps")
QUADRATICS = ("quadratic",)
CRITICAL_POINTS = ("critical_points", "critical_point", "saddle_points", "saddle_point")


@dataclass(frozen=True)
class Finding:
    """What a measurement says about a claim: the verdict, the measured values in words, and
    the table the words were formatted from."""

    verdict: str
    measured: str
    evidence: pd.DataFrame


@dataclass(frozen=True)
class Claim:
    """A statement of the tutorial and how to measure it.

    ``keywords`` name the problems whose stored rows the claim reads (exact problem names); an
    empty tuple means the claim is measured at report time.
    ``study`` is the study that measures it (for "run make study-X" when it is missing).
    """

    id: str
    title: str
    statement: str
    study: str | None
    keywords: tuple[str, ...]
    measure: Callable[[Tables], Finding]

    def problems(self, tables: Tables) -> list[str]:
        """The problems among ``tables`` that this claim reads."""
        return [p for p in tables if p in self.keywords]


def check(claim: Claim, tables: Tables) -> Finding:
    """Measure one claim; a study claim without its problems' rows is ``not measured``."""
    if claim.keywords and not claim.problems(tables):
        target = (claim.study or "").replace("_", "-")
        return Finding(NOT_MEASURED, f"not measured: run make study-{target}", pd.DataFrame())
    return claim.measure(tables)


def number(value: float, digits: int = 4) -> str:
    """A number for prose: ``digits`` significant digits, nan and inf spelled out."""
    if isinstance(value, float | int | np.number):
        return f"{value:.{digits}g}"
    return str(value)


def rows_of(tables: Tables, *keywords: str) -> pd.DataFrame:
    """The stored rows of the problems named ``keywords`` that ``tables`` holds."""
    chosen = [t for p, t in tables.items() if p in keywords]
    return pd.concat(chosen, ignore_index=True) if chosen else pd.DataFrame()


def formats_in(table: pd.DataFrame) -> list[str]:
    """The formats of a table in the registry's order (study formats first)."""
    present = set(table["format"])
    ordered = [f for f in STUDY_FORMATS if f in present]
    return ordered + sorted(present - set(ordered))


NOT_COMPUTED = ("unsupported", "error", "input_overflow", "undefined")
"""Outcomes of rows where nothing was measured: the library refused the format, the variant
raised, the input is not representable, or there is no exact result."""

COMBINATION = ["problem", "variant", "format"]
"""A combination: problem, variant (with its parameters, `precision.report.summary.labelled`) and
format."""


def ran_share(rows: pd.DataFrame) -> pd.Series:
    """Per problem x variant (each member of a family apart) x format: the share of rows where
    a result was computed and measured (outcome not in `NOT_COMPUTED`)."""
    computed = ~rows["outcome"].isin(NOT_COMPUTED)
    return labelled(rows).assign(ran=computed).groupby(COMBINATION, observed=True)["ran"].mean()


def ran_only(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the combinations (problem x variant x format) that computed at least one
    result: a combination that never ran (every row refused, raised or without an input) is
    evidence of nothing, and must never count toward a verdict."""
    if rows.empty:
        return rows
    share = ran_share(rows)
    ran = share[share > 0].index
    keys = labelled(rows)[COMBINATION]
    return rows[pd.MultiIndex.from_frame(keys).isin(ran)].reset_index(drop=True)


def never_ran(rows: pd.DataFrame) -> list[str]:
    """The combinations (as "problem variant format") that never computed a result."""
    if rows.empty:
        return []
    share = ran_share(rows)
    return [" ".join(map(str, key)) for key in share[share == 0].index]


def span(rows: pd.DataFrame) -> str:
    """The range of n, condition number and magnitude that ``rows`` cover, for a claim's text
    (a number without its range is ambiguous: a median over kappa from 1 to 1e17 is not the
    median at kappa < 10); the magnitude named as the rows' problem measures it
    (`magnitude_name`)."""
    parts = []
    magnitude = magnitude_name(rows["problem"]) if "problem" in rows else "magnitude"
    for column, name in (("n", "n"), ("cond", "kappa"), ("magnitude", magnitude)):
        values = pd.to_numeric(rows[column], errors="coerce") if column in rows else None
        if values is None or values.notna().sum() == 0:
            continue
        low, high = values.min(), values.max()
        # sizes are integers: 1,024, not 1.02e+03
        shown = (lambda v: f"{int(v):,}") if column == "n" else (lambda v: number(v, 3))
        parts.append(f"{name} {shown(low)}" + ("" if low == high else f" to {shown(high)}"))
    return ", ".join(parts) if parts else "no rows"


def verdict_of(per_case: dict[str, bool]) -> str:
    """holds when every case holds, fails when none does, else qualified."""
    if all(per_case.values()):
        return HOLDS
    return FAILS if not any(per_case.values()) else QUALIFIED


def judged(cases: dict[str, bool], text: str, evidence: pd.DataFrame) -> Finding:
    """A finding whose verdict follows from ``cases`` (case -> whether the claim holds there);
    a qualified or failed claim's text starts by saying where it holds and where it does not.
    No case at all: not measured."""
    if not cases:
        return Finding(NOT_MEASURED, "no stored row could test it. " + text, evidence)
    verdict = verdict_of(cases)
    if verdict != HOLDS:
        true = [c for c, ok in cases.items() if ok]
        false = [c for c, ok in cases.items() if not ok]
        text = f"True for: {listed(true)}. False for: {listed(false)}. " + text
    return Finding(verdict, text, evidence)


def listed(names) -> str:
    """Names joined with commas, or ``none``."""
    names = list(names)
    return ", ".join(names) if names else "none"
