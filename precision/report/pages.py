"""What the site shows beyond one study's sections: the scoreboard, each study's headline and
"which variant to trust" table, the claims' links and key figures, the glossary of variants,
the benchmarks and the devices. Every value is read from the stored tables (or the registry's
own descriptions, for the glossary); nothing here measures.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd

from precision.core.formats import FORMATS
from precision.core.schema import format_parameter
from precision.problems import PROBLEMS
from precision.problems.base import Variant
from precision.report.blocks import Block, ClaimCard, Link, ScoredClaim, VerdictGroup
from precision.report.claims import FAILS, HOLDS, NOT_MEASURED, QUALIFIED, number
from precision.report.summary import labelled

SCOREBOARD_ORDER = (FAILS, QUALIFIED, HOLDS, NOT_MEASURED)
"""The scoreboard's order: what a reviewer must read first."""

BENCH_FOLDER = "bench"
"""Where ``make bench`` writes under the results folder (``benchmarks/bench.py``)."""


# ---------------------------------------------------------------- claims


def scoreboard(claims: pd.DataFrame, *, href: str, evidence: dict[str, int]) -> Block:
    """The claims grouped by verdict (worst first: fails, qualified, holds, not measured), each
    claim a link to its card on the page ``href`` and one to its evidence rows
    (``claims/<id>.csv``, where ``evidence`` counts more than 0 rows)."""
    present = list(dict.fromkeys(claims["verdict"]))
    order = [v for v in SCOREBOARD_ORDER if v in present] + [
        v for v in present if v not in SCOREBOARD_ORDER
    ]
    groups = [
        VerdictGroup(
            verdict,
            tuple(
                _scored(row, href, evidence.get(row.id, 0))
                for row in claims[claims["verdict"] == verdict].itertuples(index=False)
            ),
        )
        for verdict in order
    ]
    return Block("scoreboard", groups)


def _scored(row, href: str, rows: int) -> ScoredClaim:
    return ScoredClaim(
        row.title, f"{href}#claim-{row.id}", f"claims/{row.id}.csv" if rows else "", rows
    )


def claim_card(
    row, *, source: str, pages: dict[str, str], evidence_rows: int, images: list[str]
) -> ClaimCard:
    """One claim with its links: the pages of the studies it read (``pages``: study key ->
    page), its evidence CSV (``claims/<id>.csv``, written when it has rows) and a thumbnail of
    its key figure (`key_figure`) among the report's ``images``."""
    read = [name for name in row.read_from.split(", ") if name in pages]
    figure = key_figure(row.problems.split(", "), [pages[n] for n in read], images)
    return ClaimCard(
        id=row.id,
        title=row.title,
        statement=row.statement,
        verdict=row.verdict,
        measured=row.measured,
        source=source,
        studies=tuple(Link(name, pages[name]) for name in read),
        evidence=f"claims/{row.id}.csv" if evidence_rows else "",
        evidence_rows=evidence_rows,
        thumbnail=figure[0],
        figure_href=figure[1],
    )


FIGURE_PREFERENCE = ("lines_{}_n", "lines_{}_kappa", "steps_{}", "misclassified_{}", "heatmap_{}")
"""The stems that show a problem's headline, best first: the error against n or kappa with its
reference lines says more about an algorithm than a heatmap does."""


def key_figure(problems: list[str], study_pages: list[str], images: list[str]) -> tuple[str, str]:
    """The claim's key figure: the first of `FIGURE_PREFERENCE` for its problems drawn in the
    first study it read, as (image path, the figure's anchor on that study's page); ("", "")
    when the report has none (no figures drawn, or a claim measured at report time)."""
    if not study_pages:
        return "", ""
    page = study_pages[0]
    folder = page.removeprefix("study-").removesuffix(".html")
    drawn = set(images)
    for pattern in FIGURE_PREFERENCE:
        for problem in problems:
            stem = pattern.format(problem)
            if f"{folder}/{stem}.png" in drawn:
                return f"{folder}/{stem}.png", f"{page}#figure-{stem}"
    return "", ""


# ---------------------------------------------------------------- one study


def trust_table(numbers: pd.DataFrame) -> pd.DataFrame:
    """Per problem and format, the variant to trust and the one to avoid, from a study's key
    numbers (`precision.report.study_page.key_numbers`): ranked by the share of failed rows, then
    by the median error / u (a variant that fails less is preferred whatever its median).
    Variants a library refused in every row never ran and are left out."""
    ran = labelled(numbers[numbers["of which unsupported %"] < 100])
    rows = []
    for (problem, fmt), part in ran.groupby(["problem", "format"], sort=False):
        ranked = part.sort_values(["failed %", "median err/u"], na_position="last")
        best, worst = ranked.iloc[0], ranked.iloc[-1]
        rows.append(
            {
                "problem": problem,
                "format": fmt,
                "trust": best["variant"],
                "trust: median err/u": best["median err/u"],
                "trust: failed %": best["failed %"],
                "avoid": worst["variant"] if len(ranked) > 1 else "",
                "avoid: median err/u": worst["median err/u"] if len(ranked) > 1 else np.nan,
                "avoid: failed %": worst["failed %"] if len(ranked) > 1 else np.nan,
                "variants ranked": len(ranked),
            }
        )
    return pd.DataFrame(rows)


def headline(numbers: pd.DataFrame) -> str:
    """A study's finding in one line: in its least precise format (largest u), the range of
    the variants' median error / u and the variant that fails most."""
    usable = numbers[np.isfinite(numbers["median err/u"].astype(float))]
    known = [f for f in dict.fromkeys(usable["format"]) if f in FORMATS]
    if not known:
        return "no certified result to summarise"
    fmt = max(known, key=lambda f: FORMATS[f].u)
    rows = labelled(usable[usable["format"] == fmt])
    best = rows.loc[rows["median err/u"].idxmin()]
    worst = rows.loc[rows["median err/u"].idxmax()]
    text = (
        f"{fmt}: median error {number(best['median err/u'])} u ({best['problem']} "
        f"{best['variant']}) to {number(worst['median err/u'])} u ({worst['problem']} "
        f"{worst['variant']})"
    )
    everything = labelled(numbers[numbers["format"] == fmt])
    failed = everything["failed %"].fillna(0.0)
    failing = everything.loc[failed.idxmax()]
    if failed.max() > 0:
        text += (
            f"; most failures: {failing['problem']} {failing['variant']} "
            f"({number(failing['failed %'])}% of its rows)"
        )
    return text


# ---------------------------------------------------------------- glossary


NO_DESCRIPTION = "(the registry gives no description)"


def variant_description(variant: Variant) -> str:
    """What a variant computes, in the registry's words: its ``description``, else the first
    paragraph of its kernel's docstring (through `functools.partial`), else ""."""
    if variant.description:
        return variant.description
    kernel = getattr(variant.kernel, "func", variant.kernel)
    doc = inspect.getdoc(kernel) or ""
    return " ".join(doc.split("\n\n")[0].split())


def parameter_text(grid: dict[str, tuple[float, ...]]) -> str:
    """A family's parameters with their default values: ``h: 40 values, 2^-40 to 0.5``."""
    parts = []
    for key, values in grid.items():
        low, high = format_parameter(min(values)), format_parameter(max(values))
        parts.append(
            f"{key}: {low}" if len(values) == 1 else f"{key}: {len(values)} values, {low} to {high}"
        )
    return "; ".join(parts)


def glossary_blocks(ran: dict[str, dict[str, list[str]]]) -> list[Block]:
    """One section per problem of the report (``ran``: problem -> variant -> the studies that
    ran it): the problem's description and a table of every variant the registry holds for it,
    plus those the tables hold that the registry does not (a user's kernel, a library not
    installed where the report was built)."""
    blocks = []
    for problem, variants in ran.items():
        known = PROBLEMS[problem].variants if problem in PROBLEMS else {}
        blocks.append(Block("h2", problem, anchor=f"problem-{problem}"))
        if problem in PROBLEMS:
            blocks.append(Block("p", PROBLEMS[problem].description))
        rows = [
            _glossary_row(name, variant, variants.get(name, [])) for name, variant in known.items()
        ]
        rows += [
            _glossary_row(name, None, studies)
            for name, studies in variants.items()
            if name not in known
        ]
        blocks.append(Block("table", pd.DataFrame(rows), f"Variants of {problem}"))
    return blocks


def _glossary_row(name: str, variant: Variant | None, studies: list[str]) -> dict:
    if variant is None:
        missing = "not in this registry (a user's kernel, or a library not installed here)"
        return {
            "variant": name,
            "what it computes": missing,
            "library": "",
            "mode": "",
            "parameters": "",
            "run in": ", ".join(studies),
        }
    return {
        "variant": name,
        "what it computes": variant_description(variant) or NO_DESCRIPTION,
        "library": variant.library,
        "mode": variant.compute_mode,
        "parameters": parameter_text(variant.grid),
        "run in": ", ".join(studies),
    }


# ---------------------------------------------------------------- benchmarks and devices


def read_benchmarks(results_dir: Path) -> tuple[pd.DataFrame | None, list[str]]:
    """The results of ``make bench`` (``<results>/bench/benchmarks.csv``, one measurement a
    line) and the run's header lines (date, command, machine) from its benchmarks.md; (None,
    []) when there are none."""
    folder = Path(results_dir) / BENCH_FOLDER
    csv = folder / "benchmarks.csv"
    if not csv.is_file():
        return None, []
    table = pd.read_csv(csv)
    header = []
    markdown = folder / "benchmarks.md"
    if markdown.is_file():
        lines = markdown.read_text(encoding="utf-8").splitlines()
        header = [line[2:] for line in lines[:12] if line.startswith("- ")]
    return table, header


def devices_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per study, the libraries its rows called, their versions and the devices they ran on,
    with the number of rows."""
    parts = []
    for study, table in tables.items():
        columns = [c for c in ("library", "library_version", "device") if c in table]
        if not columns or table.empty:
            continue
        counts = table.groupby(columns, dropna=False, observed=True).size().rename("rows")
        parts.append(counts.reset_index().assign(study=study))
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True)
    return frame[["study", *[c for c in frame.columns if c not in ("study", "rows")], "rows"]]
