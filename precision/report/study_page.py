"""A study's page of the report: which variant to trust, the claims measured there, what was
measured, the key numbers per problem x variant x format, worked examples and the figures with
their captions, every number computed from the study's stored table (`precision.report.summary`)
and every figure drawn from it (`precision.report.plots`, imported when figures are drawn).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from precision.core.schema import PARAMETERS, format_parameter
from precision.problems import PROBLEMS
from precision.report import claims as claims_module
from precision.report import pages as site_pages
from precision.report.blocks import Block, Link
from precision.report.summary import KEYS as SUMMARY_KEYS
from precision.report.summary import first_failures, labelled, overview, raised, with_parameters
from precision.store.results import StoredStudy, read_companions, worked_examples


def study_blocks(
    study: StoredStudy,
    *,
    stale: list[str],
    claims: pd.DataFrame,
    folder: str,
    images: dict[str, bytes] | None,
    pngs: dict[str, bytes] | None = None,
) -> list[Block]:
    """A study's page: what it measured, which variant to trust, the claims it measures, its
    key numbers, worked examples and figures.

    Parameters
    ----------
    study : StoredStudy
    stale : list of str, keyword-only
        Why the stored results are stale (`precision.run.staleness.staleness`); empty if not.
    claims : pandas.DataFrame, keyword-only
        Every claim's row (`precision.report.claims.measure_claims`): those that read this
        study are linked.
    folder : str, keyword-only
        The figures' folder in the report (``<folder>/<stem>.png``).
    images : dict, keyword-only
        Where the figures' PNG bytes go, by path; None: no figures section.
    pngs : dict, keyword-only, optional
        The study's figures as PNG bytes by stem (`precision.report.plots.report_figure_pngs`,
        which the report draws in worker processes); None: drawn here.
    """
    table, spec = study.table, study.spec
    source = study.folder / "errors.parquet"
    renamed = f" (a study named {study.name})" if study.name != study.key else ""
    blocks = [Block("h1", f"Study {study.key}{renamed}")]
    if spec.get("description"):
        blocks.append(Block("p", str(spec["description"])))
    if stale:
        blocks.append(Block("warning", "Stale: " + "; ".join(stale) + "."))
    if table.empty:  # no cell of its grid could be reached: nothing to summarise or draw
        return [*blocks, Block("p", f"{source} holds no rows: nothing was measured.")]
    numbers = key_numbers(table)
    sections = [
        *_trust_blocks(numbers),
        *_study_claim_blocks(study.key, claims),
        Block("h2", "What was measured"),
        Block("p", _measured_text(study)),
        _problems_block(table, spec),
        Block("h2", "Key numbers"),
        Block(
            "p",
            f"From {source}. Per variant and format: rows, median and worst relative error in "
            "units of u (certified ok rows), the share of rows that failed (overflow, nan, "
            "underflow to 0, input beyond the format, no convergence, unsupported: a library "
            "that refuses the format, shown apart, or error: the variant raised, counted in "
            "'raised'), bound "
            "violations among the rows with a known first-order bound, and where the variant "
            "first fails: the smallest decade of the magnitude (each problem's own measure, "
            "named in the problems table: max|x|, ||A||_2, ...) and of the condition number "
            "holding "
            "a failed row, and the smallest condition decade whose median error reaches 1/2 "
            "(no correct bit). Empty: never. Rows whose exact result is 0 (inputs that cancel "
            "exactly; condition number infinite) have no relative error: they are counted "
            "under 'exact result 0', with their worst absolute error, and left out of the "
            "error columns and the failures.",
        ),
        Block("table", numbers, "Key numbers"),
    ]
    errors = raised(table)
    if len(errors):
        sections += [
            Block(
                "p",
                "Variants that raised an exception instead of returning a result (outcome "
                "error; the first exception of each variant and format):",
            ),
            Block("table", errors, "Variants that raised"),
        ]
    upcast = _upcasts(table)
    if len(upcast):
        sections += [
            Block(
                "p",
                "Rows whose library returned another dtype than the format asked for (their "
                "errors are those of the wider computation):",
            ),
            Block("table", upcast, "Upcasting variants"),
        ]
    sections += _worked_example_blocks(study)
    if images is not None:
        if pngs is None:
            from precision.report.plots import report_figure_pngs

            pngs = report_figure_pngs(study)
        sections += _figure_blocks(study, pngs, images, folder=folder)
    contents = [Link(b.content, f"#{b.anchor}") for b in sections if b.kind == "h2"]
    return [*blocks, Block("links", contents, "toc"), *sections]


def _trust_blocks(numbers: pd.DataFrame) -> list[Block]:
    trust = site_pages.trust_table(numbers)
    if trust.empty:
        return []
    return [
        Block("h2", "Which variant to trust"),
        Block(
            "p",
            "Per problem and format, from the key numbers below: the variants ranked by the "
            "share of their rows that failed, then by their median error / u (certified ok "
            "rows); 'trust' is the first, 'avoid' the last. Variants that a library refused "
            "in every row never ran and are not ranked. A median says nothing of the worst "
            "case: see the key numbers and the figures.",
        ),
        Block("table", trust, "Which variant to trust"),
    ]


def _study_claim_blocks(key: str, claims: pd.DataFrame) -> list[Block]:
    read = claims[claims["read_from"].str.split(", ").map(lambda names: key in names)]
    if read.empty:
        return []
    links = [
        Link(row.title, f"claims.html#claim-{row.id}", row.verdict)
        for row in read.itertuples(index=False)
    ]
    return [Block("h2", "Claims measured here"), Block("links", links, "claims")]


def _problems_block(table: pd.DataFrame, spec: dict) -> Block:
    """The problems table, each problem linking to its variants in the glossary."""
    frame = _problems_table(table, spec)
    links = {"problem": [f"glossary.html#problem-{p}" for p in frame["problem"]]}
    return Block("table", frame, "Problems and variants", links=links)


def _worked_example_blocks(study: StoredStudy) -> list[Block]:
    """The worked examples the study's run stored (``worked_examples.csv`` and one CSV per
    example, `precision.run.study.worked_example_tables`), as they were computed then."""
    examples = worked_examples(read_companions(study.folder))
    if not examples:
        return []
    blocks = [
        Block("h2", "Worked examples"),
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
        f"decades 10^{cond[0]} to 10^{cond[1]} and magnitude decades 10^{mag[0]} to "
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
                "magnitude": PROBLEMS[problem].magnitude_name if problem in PROBLEMS else "",
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
    """The compact per problem x variant x format table of a study (see `study_blocks`)."""
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
            "fails from log10 magnitude": merged["fails_from_magnitude"],
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


def _figure_blocks(
    study: StoredStudy, pngs: dict[str, bytes], images: dict[str, bytes], *, folder: str
) -> list[Block]:
    """The figures section: each of the study's drawn figures (``pngs``, by stem, from
    `precision.report.plots.report_figure_pngs`) with its caption, its bytes put in
    ``images`` under ``<folder>/<stem>.png``."""
    blocks = [Block("h2", "Figures")]
    source = study.folder / "errors.parquet"
    for stem, png in pngs.items():
        path = f"{folder}/{stem}.png"
        images[path] = png
        blocks.append(Block("img", path, _figure_caption(stem, source), anchor=f"figure-{stem}"))
    return blocks


def _figure_caption(stem: str, source: Path) -> str:
    """What a figure of `precision.report.plots.report_figures` shows, and where its data come
    from."""
    part = re.search(r"_(\d+)$", stem)  # a split figure: heatmap_softmax_2, ...
    kind, _, rest = (stem[: part.start()] if part else stem).partition("_")
    drawn = f" Drawn from {source}."
    if kind == "heatmap":
        return (
            f"{rest}: median log10(error / (kappa u)), the error over what conditioning "
            "forces (kappa floored at 1), per measured condition decade (x) and magnitude "
            "decade (y), one panel per variant and format, one colour scale for the study; "
            "red numbers: percent of the cell's inputs that failed; hatched: all failed; "
            "blank: no input; dashed frame: the variant computed in a wider dtype (named in "
            "the facet title)." + drawn
        )
    if kind == "distributions":
        return (
            f"{rest}: distribution over certified ok rows of log10(error / (kappa u)) (kappa "
            "floored at 1; log10(error / u) where the problem has no condition number: the "
            "axis label says which), one panel per format, one box per variant: quartiles and "
            "median, whiskers at 10% and 90%, dots at the smallest and largest value, errors "
            "below 1e-4 drawn at -4; beside each box the rows in it (n) and the share of its "
            "rows that failed; a variant and format without certified ok rows is labelled "
            "absent with the reason, never drawn; seeded families pooled; hollow dashed "
            "boxes: computed in a wider dtype." + drawn
        )
    bands = (
        " Light bands: 10-90% of the rows; dark bands: the range of the per-seed medians of "
        "a seeded family (one line per family); dashed with hollow markers: computed in a "
        "wider dtype (named in the legend)."
    )
    if kind == "bounds":
        return (
            f"{rest.removesuffix('_kappa')}: median error / u versus the measured condition "
            "number, with the median of the rows' first-order bounds dotted." + bands + drawn
        )
    if kind == "lines" and rest.endswith("_kappa"):
        return (
            f"{rest.removesuffix('_kappa')}: median error / u versus the measured condition "
            "number, with reference lines (bounds or orders of growth) dashed." + bands + drawn
        )
    if stem == "lines_dot_n":
        return (
            "dot: largest relative error versus K over inputs with kappa < 10, one column per "
            "format; top row the accumulators without promotion, bottom row the limited "
            "accumulators promoted to float32 every promote_every products (float32 and "
            "in-format accumulators grey in both); the published 2% in red; errors of 0 not "
            "drawn." + drawn
        )
    if kind == "lines" and rest == "attention_n":
        return (
            "attention: median error / u versus the sequence length L (log2 axis), one row of "
            "panels per measured condition decade (all certified ok rows, logit spreads "
            "pooled), one panel per format, one line per variant." + bands + drawn
        )
    if kind == "lines" and rest.endswith("_magnitude"):
        return (
            f"{rest.removesuffix('_magnitude')}: median error / u versus max |x_i| of the "
            "rounded input per decade, certified ok rows with kappa < 10, sizes pooled, one "
            "panel per format; under each panel the share of each decade's rows (every kappa) "
            "that failed: white none, red with the percentage, hatched where no row enters the "
            "median (the line has no point), grey where the variant has no rows; rows whose "
            "input overflowed on rounding are counted in the panel title; dotted: the format's "
            "max (and sqrt(max) for the norms)." + bands + drawn
        )
    if kind == "lines" and rest.endswith("_n"):
        return (
            f"{rest.removesuffix('_n')}: median error / (u kappa) versus n, bounds dashed."
            + bands
            + drawn
        )
    if kind == "steps":
        return f"{rest}: median relative error versus the step h, per format and scheme." + drawn
    if kind == "convergence":
        return (
            f"{rest}: error versus iteration of the gradient-descent variants, from the "
            f"stored {source.parent.name}/convergence.csv (the rows hold final iterates only)."
        )
    return stem.replace("_", " ") + "." + drawn


def _g(value) -> str:
    return claims_module.number(value)
