"""The report: every stored study and the tutorial's claims, as a small static site and one
Markdown document.

`build_report` reads the results folders (`precision.store.results`), computes every number from the
stored tables (`precision.report.summary`, `precision.report.claims`, `precision.report.pages`) and
draws every figure from them (`precision.report.plots`); a study's page is
`precision.report.study_page`. It returns a `Report`: the pages, the
claims tables and the figures as PNG bytes, which the store writes: ``index.html`` (scoreboard,
studies with their headline, claims, contents), ``claims.html``, ``study-<name>.html`` (one per
study), ``glossary.html``, ``benchmarks.html``, ``provenance.html``, ``index.md`` (every page in
one document), ``claims.csv``, ``claims/<id>.csv``, ``<name>/<figure>.png``. Nothing in the
templates is a number: prose around a value is formatted from a table computed here. The HTML
pages (`precision.report.site`) and the Markdown (`precision.report.markdown`) render the same
blocks, so they say the same thing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from precision.report import claims as claims_module
from precision.report import pages as site_pages
from precision.report.blocks import Block, Link, Page, safe_name
from precision.report.markdown import to_markdown
from precision.report.site import render_site
from precision.report.study_page import key_numbers, study_blocks
from precision.run.pool import parallel_map
from precision.run.staleness import rerun_command, staleness
from precision.store.results import (
    StoredStudy,
    find_studies,
    load_study,
)

REPORT_FOLDER = "report"
TITLE = "precision: measured claims and studies"
EVIDENCE_SHOWN_ROWS = 200
"""Evidence tables up to this many rows are also shown (folded) on the claims page; longer ones
only through their CSV."""


@dataclass
class Report:
    """The documents and files of a report, by path relative to the report folder."""

    texts: dict[str, str] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    stale: dict[str, list[str]] = field(default_factory=dict)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)


def build_report(
    results_dir: Path,
    out_dir: Path,
    *,
    figures: bool = True,
    micro: dict | None = None,
    workers: int = 1,
) -> Report:
    """Read every study under ``results_dir`` and build the report that goes to ``out_dir``.

    Reads only: the studies' stored tables, the benchmark results of ``make bench`` where
    there are some (``<results_dir>/bench/benchmarks.csv``) and the ``micro`` tables it is
    handed. Nothing here runs a kernel, a ground truth or a worked example.

    Parameters
    ----------
    results_dir : Path
        The folder holding one results folder per study (``results/``).
    out_dir : Path
        Where the report will be written (skipped when it lies inside ``results_dir``).
    figures : bool, keyword-only
        Draw the figures (the slow part); without them the pages show none.
    micro : dict, keyword-only, optional
        The measurements no study holds (`precision.report.claims.micro.measure`, which
        ``precision report`` runs first), stored as ``micro/<name>.csv``; without them the
        claims that need them are ``not measured``.
    workers : int, keyword-only
        Processes that draw the figures, a study at a time (`precision.run.pool`); 1: this
        process. The PNG bytes are the same either way.

    Raises
    ------
    precision.store.results.ResultsError
        For a missing results folder, one without studies, or an unreadable study.
    """
    studies = [load_study(f) for f in find_studies(results_dir, skip=(Path(out_dir),))]
    report = Report()
    report.stale = {s.key: staleness(s) for s in studies}
    pages = study_pages([s.key for s in studies])
    by_study = {s.key: _tables_by_problem(s) for s in studies}
    claims, evidence = claims_module.measure_claims(by_study, micro)
    report.claims = claims
    report.tables["claims.csv"] = claims
    for name, table in (micro or {}).items():
        report.tables[f"{name}.csv"] = _csv_ready(table)
    for claim_id, table in evidence.items():
        if len(table):
            report.tables[f"claims/{claim_id}.csv"] = _csv_ready(table)
    numbers = {s.key: key_numbers(s.table) for s in studies if not s.table.empty}
    evidence_rows = {claim_id: len(table) for claim_id, table in evidence.items()}
    pngs = _drawn_figures(studies, workers=workers) if figures else {}
    blocks_of = {
        s.key: study_blocks(
            s,
            stale=report.stale[s.key],
            claims=claims,
            folder=_folder(pages[s.key]),
            images=report.images if figures else None,
            pngs=pngs.get(s.key),
        )
        for s in studies
    }
    bench, bench_header = site_pages.read_benchmarks(results_dir)
    if bench is not None:
        report.tables["benchmarks.csv"] = bench
    site = [
        Page(
            "index.html",
            TITLE,
            "Overview",
            _index_blocks(studies, report, pages, numbers, evidence_rows),
        ),
        Page(
            "claims.html",
            "Claims",
            "Claims",
            _claim_blocks(claims, evidence, studies, pages, report),
        ),
        *[Page(pages[s.key], f"Study {s.key}", s.key, blocks_of[s.key]) for s in studies],
        Page("glossary.html", "Glossary of variants", "Glossary", _glossary_blocks(studies)),
        Page("benchmarks.html", "Benchmarks", "Benchmarks", _bench_blocks(bench, bench_header)),
        Page("provenance.html", "Provenance", "Provenance", _provenance_blocks(studies)),
    ]
    report.texts.update(render_site(site))
    # One document: the index's title on top, every other page a section under it.
    report.texts["index.md"] = "\n".join(
        to_markdown(page.blocks, shift=0 if page.path == "index.html" else 1) for page in site
    )
    return report


def _drawn_figures(studies: list[StoredStudy], *, workers: int) -> dict[str, dict[str, bytes]]:
    """Each study's figures as PNG bytes by stem, drawn on ``workers`` processes (the figures
    are most of a report's time: about 160 of 180 s for the 18 default studies)."""
    from precision.report.plots import report_figure_pngs

    drawn = [s for s in studies if not s.table.empty]  # an empty study's page has no figures
    pngs = parallel_map(report_figure_pngs, drawn, workers=workers)
    return {s.key: study_pngs for s, study_pngs in zip(drawn, pngs, strict=True)}


def study_pages(keys: list[str]) -> dict[str, str]:
    """Each study's page, ``study-<name>.html``, its name made safe for a file name
    (`precision.report.blocks.safe_name`) and numbered where two names would collide; the
    study's figures go to the folder ``<name>/``."""
    pages: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        stem, number = safe_name(key), 1
        while stem in taken:
            number += 1
            stem = f"{safe_name(key)}-{number}"
        taken.add(stem)
        pages[key] = f"study-{stem}.html"
    return pages


def _folder(page: str) -> str:
    """The figure folder of a study page (`study_pages`)."""
    return page.removeprefix("study-").removesuffix(".html")


def _tables_by_problem(study: StoredStudy) -> dict[str, pd.DataFrame]:
    table = study.table
    return {str(p): rows.reset_index(drop=True) for p, rows in table.groupby("problem", sort=False)}


def _csv_ready(table: pd.DataFrame) -> pd.DataFrame:
    """A table whose object cells (arrays, exact numbers) are text, for CSV."""
    return table.map(lambda v: str(v) if isinstance(v, np.ndarray | list) else v)


# ---------------------------------------------------------------- the index


def _index_blocks(
    studies: list[StoredStudy],
    report: Report,
    pages: dict[str, str],
    numbers: dict[str, pd.DataFrame],
    evidence: dict[str, int],
) -> list[Block]:
    return [
        *_header(studies),
        *_stale_blocks(report.stale),
        Block("links", _contents(studies, pages), "toc"),
        Block("h2", "Scoreboard"),
        site_pages.scoreboard(report.claims, href="claims.html", evidence=evidence),
        Block("p", VERDICTS_TEXT),
        Block("h2", "Studies"),
        _studies_table(studies, pages, numbers, report.claims),
    ]


VERDICTS_TEXT = (
    "'holds': true in every format and case measured; 'qualified': true in some formats or "
    "cases and false in others, as the claim's text says; 'fails': false where measured; 'not "
    "measured': the study that measures it has not been run. Each verdict prints its "
    "criterion; each claim links to its study and its evidence rows (claims/<id>.csv)."
)


def _contents(studies: list[StoredStudy], pages: dict[str, str]) -> list[Link]:
    """Every page of the site, on a line or two: the claims, each study, the glossary, the
    benchmarks and the provenance."""
    links = [Link("Claims", "claims.html")]
    links += [Link(s.key, pages[s.key]) for s in studies]
    return links + [
        Link("Glossary", "glossary.html"),
        Link("Benchmarks", "benchmarks.html"),
        Link("Provenance", "provenance.html"),
    ]


def _studies_table(
    studies: list[StoredStudy],
    pages: dict[str, str],
    numbers: dict[str, pd.DataFrame],
    claims: pd.DataFrame,
) -> Block:
    """One line per study: its headline (`precision.report.pages.headline`), rows and the
    verdicts of the claims it measures."""
    rows = []
    for study in studies:
        read = claims[
            claims["read_from"].str.split(", ").map(lambda names, k=study.key: k in names)
        ]
        counts = read["verdict"].value_counts()
        rows.append(
            {
                "study": study.key,
                "headline": (
                    site_pages.headline(numbers[study.key])
                    if study.key in numbers
                    else "no rows: nothing was measured"
                ),
                "rows": len(study.table),
                "claims": ", ".join(f"{int(n)} {v}" for v, n in counts.items()),
            }
        )
    links = {"study": [pages[s.key] for s in studies]}
    return Block("table", pd.DataFrame(rows), "Studies", links=links)


# ---------------------------------------------------------------- sections


def _header(studies: list[StoredStudy]) -> list[Block]:
    rows = sum(len(s.table) for s in studies)
    return [
        Block("h1", "precision: measured claims and studies"),
        Block(
            "p",
            f"{len(studies)} stored studies, {rows} rows. Errors are relative errors in units "
            "of the row format's unit roundoff u (1 u is one rounding error of that format), "
            "over rows whose ground truth was certified and whose result was finite. Every "
            "number and figure comes from a stored table (Provenance says which).",
        ),
    ]


SOURCES_TEXT = (
    "Every number and figure of this report is computed from a stored table named beside it: "
    "a study's errors.parquet and the tables stored beside it (worked examples, convergence "
    "curves), or, for the claims that no study measures (marked 'measured by precision "
    "report'), the tables measured before this report was built and stored with it "
    "(micro/<name>.csv, claims.csv and claims/<id>.csv); a figure whose caption says so was "
    "recomputed when the report was built."
)


def _stale_blocks(stale: dict[str, list[str]]) -> list[Block]:
    """One line: every study is current, or which are stale (each study's page says why)."""
    found = [name for name, why in stale.items() if why]
    if not found:
        return [Block("p", "Every study is current: its spec and the code match the run.")]
    return [
        Block(
            "warning",
            f"Stale results ({len(found)} of {len(stale)} studies: {', '.join(found)}): their "
            "numbers describe the spec and code of their run, not the current ones; each "
            "study's page says why, and Provenance how to rerun it.",
        )
    ]


def _claim_blocks(
    claims: pd.DataFrame,
    evidence: dict[str, pd.DataFrame],
    studies: list[StoredStudy],
    pages: dict[str, str],
    report: Report,
) -> list[Block]:
    counts = claims["verdict"].value_counts()
    summary = ", ".join(f"{int(n)} {verdict}" for verdict, n in counts.items())
    blocks = [
        Block("h1", "Claims of the tutorial, measured"),
        Block("p", f"{len(claims)} claims: {summary}. " + VERDICTS_TEXT),
    ]
    folders = {s.key: s.folder for s in studies}
    images = list(report.images)
    for row in claims.itertuples(index=False):
        table = evidence[row.id]
        card = site_pages.claim_card(
            row,
            source=_claim_source(row, folders),
            pages=pages,
            evidence_rows=len(table),
            images=images,
        )
        blocks.append(Block("claim", card))
        if 0 < len(table) <= EVIDENCE_SHOWN_ROWS:
            blocks.append(Block("details", table, f"Evidence for '{row.title}'"))
    return blocks


def _claim_source(row, folders: dict[str, Path]) -> str:
    if row.verdict == claims_module.NOT_MEASURED and not row.problems:
        return "Source: none yet."
    if not row.problems:
        return (
            "Source: measured by precision report before the report was built "
            "(precision.report.claims.micro.measure), stored in micro/<name>.csv and claims.csv."
        )
    tables = ", ".join(str(folders[name] / "errors.parquet") for name in row.read_from.split(", "))
    return f"Source: rows of {row.problems} in {tables}."


def _provenance_blocks(studies: list[StoredStudy]) -> list[Block]:
    from precision import store

    rows, versions = [], {}
    for study in studies:
        meta = study.meta
        timing = meta.get("timing") or {}
        machine = meta.get("machine") or {}
        rows.append(
            {
                "study": study.key,
                "run at": meta.get("created", ""),
                "commit": (meta.get("git_commit") or "")[:12],
                "seed": meta.get("seed"),
                "spec sha256": (meta.get("spec_sha256") or "")[:12],
                "code sha256": (meta.get("code_sha256") or "")[:12],
                "flush to zero": meta.get("flush_to_zero"),
                "machine": f"{machine.get('platform', '')}, {machine.get('cpus', '')} cpus",
                "wall s": timing.get("seconds"),
                "executor": timing.get("executor", ""),
            }
        )
        versions[study.key] = meta.get("versions") or {}
    now = store.provenance_environment()
    versions["this report"] = now["versions"]
    commands = [rerun_command(s.meta, s.folder) for s in studies]
    commands += [f"precision reproduce {shlex.quote(str(s.folder))}" for s in studies]
    devices = site_pages.devices_table({s.key: s.table for s in studies})
    return [
        Block("h1", "Provenance"),
        Block("p", SOURCES_TEXT),
        Block("table", pd.DataFrame(rows), "Runs"),
        Block("table", devices, "Libraries and devices the variants ran on"),
        Block("table", pd.DataFrame(versions).rename_axis("package").reset_index(), "Versions"),
        Block(
            "p",
            f"This report was built on {now['machine']['platform']} (commit "
            f"{(now['git_commit'] or 'unknown')[:12]}, flush to zero {now['flush_to_zero']}, "
            f"code sha256 {now['code_sha256'][:12]}); the claims measured at report time ran "
            "there. To rerun each study, and to check that a rerun gives the stored table "
            "(make reproduce does it for every study):",
        ),
        Block("code", "\n".join(commands)),
    ]


def _g(value) -> str:
    return claims_module.number(value)


# ---------------------------------------------------------------- glossary and benchmarks


def _glossary_blocks(studies: list[StoredStudy]) -> list[Block]:
    """Every problem the report holds, with every variant the registry describes for it."""
    ran: dict[str, dict[str, list[str]]] = {}
    for study in studies:
        pairs = study.table[["problem", "variant"]].drop_duplicates()
        for problem, variant in pairs.itertuples(index=False):
            ran.setdefault(str(problem), {}).setdefault(str(variant), []).append(study.key)
    contents = [Link(p, f"#problem-{p}") for p in ran]
    return [
        Block("h1", "Glossary of variants"),
        Block(
            "p",
            "The problems of this report and every variant the registry "
            "(precision.problems.PROBLEMS) holds for them, in the registry's own words (a "
            "variant's description, else its kernel's docstring), with the library it calls, "
            "how it computes (native, emulated: rounded to the format after every operation, "
            "stochastic: emulated with stochastic rounding) and, for a family, its parameters "
            "and their default values; 'run in' names the studies whose rows hold it.",
        ),
        Block("links", contents, "toc"),
        *site_pages.glossary_blocks(ran),
    ]


def _bench_blocks(bench: pd.DataFrame | None, header: list[str]) -> list[Block]:
    blocks = [Block("h1", "Benchmarks")]
    if bench is None:
        return [
            *blocks,
            Block(
                "p",
                "not measured: no benchmark results beside the studies (make bench writes "
                "results/bench/benchmarks.csv).",
            ),
        ]
    return [
        *blocks,
        Block("p", "From make bench: " + "; ".join(header) + "." if header else "From make bench."),
        Block("links", [Link("benchmarks.csv", "benchmarks.csv", "every measurement")], "files"),
        Block("table", bench, "Benchmarks"),
    ]
