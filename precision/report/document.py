"""The report: every stored study and the tutorial's claims, as Markdown and self-contained HTML.

`build_report` reads the results folders (`precision.store.results`), computes every number from the
stored tables (`precision.report.summary`, `precision.report.claims`) and draws every figure from
them (`precision.report.plots`). It returns a `Report`: the documents, the claims tables and the
figures as PNG bytes, which the store writes (``index.html``, ``index.md``, ``claims.csv``,
``claims/<id>.csv``, ``<study>/<figure>.png``). Nothing in the templates is a number: prose around a
value is formatted from a table computed here. Both documents come from one list of blocks, so they
say the same thing.
"""

from __future__ import annotations

import html
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from precision.core.schema import PARAMETERS, format_parameter
from precision.problems import PROBLEMS
from precision.report import claims as claims_module
from precision.report.summary import KEYS as SUMMARY_KEYS
from precision.report.summary import first_failures, labelled, overview, raised, with_parameters
from precision.run.staleness import rerun_command, staleness
from precision.store.results import (
    StoredStudy,
    find_studies,
    load_study,
    read_companions,
    worked_examples,
)

REPORT_FOLDER = "report"


@dataclass(frozen=True)
class Block:
    """One piece of a document: a heading (``h1``-``h3``), a paragraph (``p``), a warning,
    a table (``content`` a DataFrame), an image (``content`` its relative path), a code line,
    or a claim (``content`` one row of the claims table)."""

    kind: str
    content: object
    caption: str = ""


@dataclass
class Report:
    """The documents and files of a report, by path relative to the report folder."""

    texts: dict[str, str] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    stale: dict[str, list[str]] = field(default_factory=dict)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)


def build_report(
    results_dir: Path, out_dir: Path, *, figures: bool = True, micro: dict | None = None
) -> Report:
    """Read every study under ``results_dir`` and build the report that goes to ``out_dir``.

    Reads only: the studies' stored tables and the ``micro`` tables it is handed. Nothing
    here runs a kernel, a ground truth or a worked example.

    Parameters
    ----------
    results_dir : Path
        The folder holding one results folder per study (``results/``).
    out_dir : Path
        Where the report will be written (skipped when it lies inside ``results_dir``).
    figures : bool, keyword-only
        Draw the figures (the slow part); without them the documents show none.
    micro : dict, keyword-only, optional
        The measurements no study holds (`precision.report.claims.micro.measure`, which
        ``precision report`` runs first), stored as ``micro/<name>.csv``; without them the
        claims that need them are ``not measured``.

    Raises
    ------
    precision.store.results.ResultsError
        For a missing results folder, one without studies, or an unreadable study.
    """
    studies = [load_study(f) for f in find_studies(results_dir, skip=(Path(out_dir),))]
    report = Report()
    blocks = _header(studies)
    report.stale = {s.key: staleness(s) for s in studies}
    blocks += _stale_blocks(report.stale)
    by_study = {s.key: _tables_by_problem(s) for s in studies}
    claims, evidence = claims_module.measure_claims(by_study, micro)
    report.claims = claims
    report.tables["claims.csv"] = claims
    for name, table in (micro or {}).items():
        report.tables[f"{name}.csv"] = _csv_ready(table)
    for claim_id, table in evidence.items():
        if len(table):
            report.tables[f"claims/{claim_id}.csv"] = _csv_ready(table)
    blocks += _claim_blocks(claims, evidence, studies)
    for study in studies:
        blocks += _study_blocks(study, report, figures=figures)
    blocks += _provenance_blocks(studies)
    report.texts["index.md"] = to_markdown(blocks)
    report.texts["index.html"] = to_html(blocks, title="precision: measured claims and studies")
    return report


def _tables_by_problem(study: StoredStudy) -> dict[str, pd.DataFrame]:
    table = study.table
    return {str(p): rows.reset_index(drop=True) for p, rows in table.groupby("problem", sort=False)}


def _csv_ready(table: pd.DataFrame) -> pd.DataFrame:
    """A table whose object cells (arrays, exact numbers) are text, for CSV."""
    return table.map(lambda v: str(v) if isinstance(v, np.ndarray | list) else v)


# ---------------------------------------------------------------- sections


def _header(studies: list[StoredStudy]) -> list[Block]:
    names = ", ".join(s.key for s in studies)
    rows = sum(len(s.table) for s in studies)
    return [
        Block("h1", "precision: measured claims and studies"),
        Block(
            "p",
            f"Built from {len(studies)} stored studies ({names}; {rows} rows in all). Every "
            "number and figure below is computed from a stored table named beside it: a "
            "study's errors.parquet and the tables stored beside it (worked examples, "
            "convergence curves), or, for the claims that no study measures (marked "
            "'measured by precision report'), the tables measured before this report was "
            "built and stored with it (micro/<name>.csv, claims.csv and claims/<id>.csv); a "
            "figure whose caption says so was recomputed "
            "when the report was built. Errors are relative errors in units of the "
            "row format's unit roundoff u (1 u is one rounding error of that format), over "
            "rows whose ground truth was certified and whose result was finite.",
        ),
    ]


def _stale_blocks(stale: dict[str, list[str]]) -> list[Block]:
    found = {name: why for name, why in stale.items() if why}
    if not found:
        return [Block("p", "Every study is current: its spec and the code match the run.")]
    text = "; ".join(f"{name}: {', '.join(why)}" for name, why in found.items())
    return [
        Block(
            "warning",
            f"Stale results ({len(found)} of {len(stale)} studies): {text}. Their numbers "
            "describe the spec and code of their run, not the current ones; rerun them (see "
            "Provenance).",
        )
    ]


def _claim_blocks(
    claims: pd.DataFrame, evidence: dict[str, pd.DataFrame], studies: list[StoredStudy]
) -> list[Block]:
    counts = claims["verdict"].value_counts()
    summary = ", ".join(f"{int(n)} {verdict}" for verdict, n in counts.items())
    blocks = [
        Block("h2", "Claims of the tutorial, measured"),
        Block(
            "p",
            f"{len(claims)} claims: {summary}. 'qualified' means true in some formats or "
            "cases and false in others, as the text says; 'not measured' means the study that "
            "measures it has not been run.",
        ),
        Block("table", claims[["title", "verdict", "study", "problems"]], "Overview"),
    ]
    folders = {s.key: s.folder for s in studies}
    for row in claims.itertuples(index=False):
        blocks.append(Block("claim", row))
        source = _claim_source(row, folders)
        table = evidence[row.id]
        if len(table):
            source += f" Evidence: claims/{row.id}.csv."
        blocks.append(Block("p", source))
        if len(table):
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


def _study_blocks(study: StoredStudy, report: Report, *, figures: bool) -> list[Block]:
    table, spec = study.table, study.spec
    source = study.folder / "errors.parquet"
    renamed = f" (a study named {study.name})" if study.name != study.key else ""
    blocks = [Block("h2", f"Study {study.key}{renamed}")]
    if spec.get("description"):
        blocks.append(Block("p", str(spec["description"])))
    if report.stale.get(study.key):
        blocks.append(Block("warning", "Stale: " + "; ".join(report.stale[study.key]) + "."))
    if table.empty:  # no cell of its grid could be reached: nothing to summarise or draw
        return [*blocks, Block("p", f"{source} holds no rows: nothing was measured.")]
    blocks += [
        Block("h3", "What was measured"),
        Block("p", _measured_text(study)),
        Block("table", _problems_table(table, spec), "Problems and variants"),
        Block("h3", "Key numbers"),
        Block(
            "p",
            f"From {source}. Per variant and format: rows, median and worst relative error in "
            "units of u (certified ok rows), the share of rows that failed (overflow, nan, "
            "underflow to 0, input beyond the format, no convergence, unsupported: a library "
            "that refuses the format, shown apart, or error: the variant raised, counted in "
            "'raised'), bound "
            "violations among the rows with a known first-order bound, and where the variant "
            "first fails: the smallest decade of max|x| and of the condition number holding "
            "a failed row, and the smallest condition decade whose median error reaches 1/2 "
            "(no correct bit). Empty: never. Rows whose exact result is 0 (inputs that cancel "
            "exactly; condition number infinite) have no relative error: they are counted "
            "under 'exact result 0', with their worst absolute error, and left out of the "
            "error columns and the failures.",
        ),
        Block("table", key_numbers(table), "Key numbers"),
    ]
    errors = raised(table)
    if len(errors):
        blocks += [
            Block(
                "p",
                "Variants that raised an exception instead of returning a result (outcome "
                "error; the first exception of each variant and format):",
            ),
            Block("table", errors, "Variants that raised"),
        ]
    upcast = _upcasts(table)
    if len(upcast):
        blocks += [
            Block(
                "p",
                "Rows whose library returned another dtype than the format asked for (their "
                "errors are those of the wider computation):",
            ),
            Block("table", upcast, "Upcasting variants"),
        ]
    blocks += _worked_example_blocks(study)
    if figures:
        blocks += _figure_blocks(study, report)
    return blocks


def _worked_example_blocks(study: StoredStudy) -> list[Block]:
    """The worked examples the study's run stored (``worked_examples.csv`` and one CSV per
    example, `precision.run.study.worked_example_tables`), as they were computed then."""
    examples = worked_examples(read_companions(study.folder))
    if not examples:
        return []
    blocks = [
        Block("h3", "Worked examples"),
        Block("p", f"Computed during the run and stored in {study.folder}/worked_*.csv."),
    ]
    for problem, title, text, table in examples:
        blocks += [Block("p", f"{title} ({problem}). {text}"), Block("table", table, title)]
    return blocks


def _measured_text(study: StoredStudy) -> str:
    spec, table = study.spec, study.table
    grid = spec.get("grid") or {}
    cond, mag = grid.get("log10_cond", ["?", "?"]), grid.get("log10_magnitude", ["?", "?"])
    per_problem = grid.get("problem_samples") or {}
    extra = "".join(f", {p}: {n}" for p, n in per_problem.items())
    datasets = spec.get("datasets") or {}
    data = "; ".join(
        f"data set {name}: {entry.get('rows')} rows of {entry.get('path')}"
        for name, entry in datasets.items()
    )
    certified = table["certified"].fillna(False).astype(bool).mean() if len(table) else 0.0
    return (
        f"Formats {', '.join(spec.get('formats', []))}. Synthetic inputs aimed at condition "
        f"decades 10^{cond[0]} to 10^{cond[1]} and magnitude (max|x|) decades 10^{mag[0]} to "
        f"10^{mag[1]}, sizes n = {', '.join(map(str, grid.get('sizes', [])))}, "
        f"{grid.get('samples_per_cell', '?')} input(s) per cell and size{extra}"
        f"{'; ' + data if data else ''}. Seed {spec.get('seed', 0)}; ground truth by the "
        f"{spec.get('engine', 'arb')} engine"
        f"{', one input shared by all formats' if spec.get('shared_inputs') else ''}. "
        f"{len(table)} rows (input x variant x format); {_g(100 * certified)}% of them with a "
        "certified ground truth. The axes of the figures are the condition number and "
        "magnitude measured on each rounded input, not the targets."
    )


def _problems_table(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    rows = []
    for problem in dict.fromkeys(table["problem"]):
        part = table[table["problem"] == problem]
        rows.append(
            {
                "problem": problem,
                "what": PROBLEMS[problem].description if problem in PROBLEMS else "",
                "variants": ", ".join(dict.fromkeys(part["variant"])),
                "parameters": _parameter_ranges(part),
                "sizes n": ", ".join(str(n) for n in sorted(set(part["n"].dropna().astype(int)))),
                "rows": len(part),
            }
        )
    return pd.DataFrame(rows)


def _parameter_ranges(rows: pd.DataFrame) -> str:
    """The parameters the rows' variants swept, with their range: ``h 2^-40 to 0.5 (40
    values)``; "" where none."""
    parts = []
    for key in PARAMETERS:
        values = sorted(set(rows[key].dropna().astype(float))) if key in rows else []
        if values:
            low, high = format_parameter(values[0]), format_parameter(values[-1])
            parts.append(
                f"{key} {low}"
                if len(values) == 1
                else f"{key} {low} to {high} ({len(values)} values)"
            )
    return "; ".join(parts)


def key_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """The compact per problem x variant x format table of a study (see `_study_blocks`)."""
    # Per variant *and* parameter values (numeric columns, so h sorts as a number), NaN keys
    # kept: pandas merges NaN with NaN.
    keys = SUMMARY_KEYS
    table = with_parameters(table)
    stats = overview(table)
    refused = (
        table.assign(refused=table["outcome"] == "unsupported")
        .groupby(keys, dropna=False, observed=True)["refused"]
        .mean()
        .rename("unsupported")
        .reset_index()
    )
    merged = stats.merge(first_failures(table), on=keys, how="left").merge(refused, on=keys)
    taken = [key for key in PARAMETERS if merged[key].notna().any()]
    out = pd.DataFrame(
        {
            "problem": merged["problem"],
            "variant": merged["variant"],
            **{key: merged[key] for key in taken},
            "format": merged["format"],
            "rows": merged["count"],
            "median err/u": merged["median_err_over_u"],
            "worst err/u": merged["max_err_over_u"],
            "failed %": 100 * merged["failure_fraction"],
            "exact result 0": merged["exact_zero"].astype(int),
            "their worst abs error": merged["max_abs_error_exact_zero"],
            "of which unsupported %": 100 * merged["unsupported"],
            "raised": merged["errors"].astype(int),
            "bound violations": [
                f"{int(v)} / {int(c)}" if c else ""
                for v, c in zip(merged["bound_violations"], merged["bound_checked"], strict=True)
            ],
            "fails from log10 max|x|": merged["fails_from_magnitude"],
            "fails from log10 cond": merged["fails_from_cond"],
            "no correct bit from log10 cond": merged["inaccurate_from_cond"],
        }
    )
    return out


def _upcasts(table: pd.DataFrame) -> pd.DataFrame:
    wider = table[
        table["compute_dtype"].notna()
        & (table["compute_dtype"] != "")
        & (table["compute_dtype"] != table["format"])
    ]
    if wider.empty:
        return pd.DataFrame()
    return (
        labelled(wider)
        .groupby(["problem", "variant", "format", "compute_dtype"], observed=True)
        .size()
        .rename("rows")
        .reset_index()
    )


def _figure_blocks(study: StoredStudy, report: Report) -> list[Block]:
    import warnings

    from precision import store
    from precision.report.plots import report_figures

    blocks = [Block("h3", "Figures")]
    source = study.folder / "errors.parquet"
    with warnings.catch_warnings():
        # A panel without usable rows (a format where every row failed) is drawn empty, and
        # matplotlib warns that an empty log axis cannot be scaled.
        warnings.simplefilter("ignore", UserWarning)
        figures = report_figures(study.table, read_companions(study.folder))
        for stem, fig in figures.items():
            path = f"{_safe(study.key)}/{stem}.png"
            report.images[path] = store.png_bytes(fig)  # closes the figure
            blocks.append(Block("img", path, _figure_caption(stem, source)))
    return blocks


def _figure_caption(stem: str, source: Path) -> str:
    """What a figure of `precision.report.plots.report_figures` shows, and where its data come
    from."""
    kind, _, rest = stem.partition("_")
    drawn = f" Drawn from {source}."
    if kind == "heatmap":
        return (
            f"{rest}: median log10(error / (kappa u)), the error over what conditioning "
            "forces (kappa floored at 1), per measured condition decade (x) and magnitude "
            "decade (y), one panel per variant and format, one colour scale for the study; "
            "red numbers: percent of the cell's inputs that failed; hatched: all failed; "
            "blank: no input." + drawn
        )
    if kind == "bounds":
        return (
            f"{rest.removesuffix('_kappa')}: median error / u versus the measured condition "
            "number, with the median of the rows' first-order bounds dashed." + drawn
        )
    if kind == "lines" and rest.endswith("_kappa"):
        return (
            f"{rest.removesuffix('_kappa')}: median error / u versus the measured condition "
            "number, with reference lines (bounds or orders of growth) dashed." + drawn
        )
    if kind == "lines" and rest.endswith("_n"):
        return (
            f"{rest.removesuffix('_n')}: median error / (u kappa) versus n, bounds dashed." + drawn
        )
    if kind == "steps":
        return f"{rest}: median relative error versus the step h, per format and scheme." + drawn
    if kind == "convergence":
        return (
            f"{rest}: error versus iteration of the gradient-descent variants, from the "
            f"stored {source.parent.name}/convergence.csv (the rows hold final iterates only)."
        )
    return stem.replace("_", " ") + "." + drawn


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "study"


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
    return [
        Block("h2", "Provenance"),
        Block("table", pd.DataFrame(rows), "Runs"),
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


# ---------------------------------------------------------------- rendering


def _g(value) -> str:
    return claims_module.number(value)


def _cell(value) -> str:
    """A table cell as text: floats to 4 significant digits, missing values empty."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=6, threshold=8)
    return str(value)


def _md_text(text) -> str:
    """Text as Markdown shows it, never as HTML: every ``<`` and ``&`` is backslash-escaped
    (CommonMark prints an escaped punctuation character as itself), so ``<script>`` from a
    spec's description (or a folder's name) becomes ``\\<script>`` and an entity stays as
    typed; renderers print them instead of running them."""
    return str(text).replace("&", "\\&").replace("<", "\\<")


def _md_escape(text: str) -> str:
    return _md_text(text).replace("|", "\\|").replace("\n", " ")


def _md_table(frame: pd.DataFrame) -> list[str]:
    header = "| " + " | ".join(_md_escape(str(c)) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(_md_escape(_cell(v)) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return [header, rule, *body]


def to_markdown(blocks: list[Block]) -> str:
    """The report as Markdown (images by relative path)."""
    lines: list[str] = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            lines += ["#" * int(block.kind[1]) + " " + _md_text(block.content), ""]
        elif block.kind == "p":
            lines += [_md_text(block.content), ""]
        elif block.kind == "warning":
            lines += [f"> **Warning.** {_md_text(block.content)}", ""]
        elif block.kind == "table" or (block.kind == "details" and len(block.content) <= 16):
            if len(block.content):
                lines += [f"*{_md_text(block.caption)}*", "", *_md_table(block.content), ""]
        elif block.kind == "img":
            caption = _md_escape(block.caption)
            lines += [f"![{caption}]({block.content})", "", _md_text(block.caption), ""]
        elif block.kind == "code":
            lines += ["```sh", str(block.content), "```", ""]
        elif block.kind == "claim":
            row = block.content
            lines += [
                f"### {_md_text(row.title)}",
                "",
                f"*Tutorial:* {_md_text(row.statement)}",
                "",
                f"**Verdict: {row.verdict}.** {_md_text(row.measured)}",
                "",
            ]
    return "\n".join(lines)


STYLE = """
body { font-family: sans-serif; max-width: 70em; margin: 2em auto; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; }
figure { margin: 1em 0; }
.warning { background: #fff3cd; padding: 0.5em; border-left: 4px solid #e0a800; }
.verdict { font-weight: bold; padding: 0.1em 0.4em; }
.holds { background: #d4edda; } .fails { background: #f8d7da; }
.qualified { background: #fff3cd; } .not-measured { background: #e2e3e5; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
"""


def _html_table(frame: pd.DataFrame, caption: str) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _html_block(block: Block) -> str:
    esc = html.escape
    if block.kind in ("h1", "h2", "h3"):
        return f"<{block.kind}>{esc(str(block.content))}</{block.kind}>"
    if block.kind == "p":
        return f"<p>{esc(str(block.content))}</p>"
    if block.kind == "warning":
        return f'<p class="warning"><strong>Warning.</strong> {esc(str(block.content))}</p>'
    if block.kind == "table":
        return _html_table(block.content, block.caption) if len(block.content) else ""
    if block.kind == "details":
        table = _html_table(block.content, block.caption)
        return f"<details><summary>{esc(block.caption)}</summary>{table}</details>"
    if block.kind == "img":
        return (
            f'<figure><img src="{esc(str(block.content), quote=True)}" '
            f'alt="{esc(block.caption, quote=True)}"><figcaption>{esc(block.caption)}'
            "</figcaption></figure>"
        )
    if block.kind == "code":
        return f"<pre><code>{esc(str(block.content))}</code></pre>"
    if block.kind == "claim":
        row = block.content
        css = row.verdict.replace(" ", "-")
        return (
            f'<h3 id="claim-{esc(row.id, quote=True)}">{esc(row.title)}</h3>'
            f"<p><em>Tutorial:</em> {esc(row.statement)}</p>"
            f'<p><span class="verdict {esc(css, quote=True)}">Verdict: {esc(row.verdict)}'
            f"</span> {esc(row.measured)}</p>"
        )
    raise ValueError(f"unknown block kind {block.kind!r}")


def to_html(blocks: list[Block], *, title: str) -> str:
    """The report as one HTML page (images by relative path, beside it; no scripts, no
    external resources); every string is escaped."""
    body = "\n".join(_html_block(b) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )
