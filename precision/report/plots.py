"""Heatmaps of error versus measured condition number and magnitude. The only seaborn user.

One figure per problem (split when it would hold more than MAX_PANELS panels); one facet per
variant (rows; each member of a family apart) x format (columns). x = decade of the measured
condition number, y = decade of the input magnitude, colour = median log10(error / (kappa u))
over certified ok rows, kappa floored at 1: the error over what the problem's conditioning
forces on any algorithm, so that the colour shows the algorithm rather than re-encoding the x
axis. Every heatmap of a study shares one colour scale (`colour_scale`), so panels and figures
compare. A cell where some inputs failed (any failed outcome: the title names those present)
carries the failed percentage as text; a cell with no inputs stays blank.

Problems with known error bounds in closed form (`REFERENCE_LINES`) also get line plots: the
median error versus n and versus the measured condition number, one line per variant, with the
bounds (or orders of growth) drawn as dashed lines.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted

from typing import NamedTuple  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter  # noqa: E402

from precision.core.formats import get_format  # noqa: E402
from precision.problems import linalg, summation, variance  # noqa: E402
from precision.report.summary import (  # noqa: E402
    EXACT_ZERO,
    FAILURES,
    accumulator_errors,
    accumulator_label,
    error_lines,
    labelled,
    summarize,
)

CMAP = "viridis"
FLOOR = -4.0
"""Lowest colour of the heatmaps in log10(error / (kappa u)): a result ten thousand times more
accurate than its conditioning forces (a correctly rounded one, error 0) sits at the open end of
the colour bar."""

MAX_PANELS = 24
"""Most panels in one heatmap figure: a problem with more variants x formats is split over
several figures (``heatmap_<problem>``, ``heatmap_<problem>_2``, ...), each legible at 1400 px."""

MAX_TICK_LABELS = 8
"""Most labelled ticks on a heatmap axis: longer axes label every k-th decade."""


class ColourScale(NamedTuple):
    """The colour range of a study's heatmaps, in log10(error / (kappa u)): one scale for every
    panel of every problem, so that colours compare across panels and figures."""

    vmin: float
    vmax: float


def colour_scale(cells: pd.DataFrame) -> ColourScale:
    """The range of the cells' ``log10_err_over_kappa_u`` (`heatmap_cells`): from the smallest
    value (at least FLOOR) to the largest, widened to at least one decade, in whole decades."""
    finite = cells["log10_err_over_kappa_u"].replace([np.inf, -np.inf], np.nan).dropna()
    if finite.empty:
        return ColourScale(FLOOR, 0.0)
    vmin = max(FLOOR, float(np.floor(finite.min())))
    vmax = float(np.ceil(finite.max()))
    return ColourScale(vmin, max(vmax, vmin + 1.0))


def heatmap_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem x variant (each member of a family apart) x format x condition decade x magnitude
    decade: `precision.report.summary.summarize` with ``log10_err_over_kappa_u``, the log10 of the
    median error over what conditioning forces (rel_error / (max(kappa, 1) u)), clipped at FLOOR (an
    error of 0 would be -inf)."""
    cells = summarize(labelled(table))
    cells = cells[cells["cond_decade"].notna() & cells["magnitude_decade"].notna()].copy()
    forced = cells["median_err_over_kappa_u"].astype(float)
    cells["log10_err_over_kappa_u"] = np.log10(forced.clip(lower=10.0**FLOOR))
    return cells


def heatmap_figures(
    table: pd.DataFrame, problem: str, scale: ColourScale | None = None
) -> dict[str, plt.Figure]:
    """The heatmaps of one problem by file stem: ``heatmap_<problem>``, then
    ``heatmap_<problem>_2`` ... when its variants x formats exceed MAX_PANELS (whole variants
    per figure, every format of each)."""
    rows = labelled(table[table["problem"] == problem])
    variants = list(dict.fromkeys(rows["variant"]))
    per_figure = max(1, MAX_PANELS // max(1, rows["format"].nunique()))
    groups = [variants[i : i + per_figure] for i in range(0, len(variants), per_figure)]
    return {
        f"heatmap_{problem}" + (f"_{k + 1}" if k else ""): heatmap_figure(
            table,
            problem,
            variants=group,
            scale=scale,
            part=(k + 1, len(groups)) if len(groups) > 1 else None,
        )
        for k, group in enumerate(groups)
    }


def heatmap_figure(
    table: pd.DataFrame,
    problem: str,
    *,
    variants: list[str] | None = None,
    scale: ColourScale | None = None,
    part: tuple[int, int] | None = None,
) -> plt.Figure:
    """The error heatmap facets of one problem (see module docstring): one row of panels per
    variant (``variants``: labelled names, by default all), one column per format; colours on
    ``scale`` (default: this problem's own range)."""
    rows = labelled(table[table["problem"] == problem])
    cells = heatmap_cells(rows)
    variants = variants or list(dict.fromkeys(rows["variant"]))
    formats = list(dict.fromkeys(table["format"]))
    vmin, vmax = scale or colour_scale(cells)
    xs = _decades(cells["cond_decade"])
    ys = _decades(cells["magnitude_decade"])
    fig, axes = _facet_grid(len(variants), len(formats), row_height=2.3)
    for i, variant in enumerate(variants):
        for j, fmt in enumerate(formats):
            facet = cells[(cells["variant"] == variant) & (cells["format"] == fmt)]
            _draw_facet(axes[i][j], facet, xs, ys, vmin, vmax)
            axes[i][j].set_title(_facet_title(rows, problem, variant, fmt), fontsize=8)
            axes[i][j].set_xlabel("log10 cond" if i == len(variants) - 1 else "", fontsize=8)
            axes[i][j].set_ylabel("log10 max|x|" if j == 0 else "", fontsize=8)
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(vmin, vmax), cmap=CMAP)
    fig.colorbar(
        mappable,
        ax=axes,
        shrink=0.8,
        extend="min",
        label="median log10(rel. error / (kappa u)) of ok rows",
    )
    which = f" ({part[0]} of {part[1]})" if part else ""
    fig.suptitle(
        f"{problem}{which}: error over what conditioning forces (kappa u, kappa >= 1)\n"
        + failure_legend(rows),
        fontsize=10,
    )
    return fig


def _decades(values: pd.Series) -> list[int]:
    """Every decade from the smallest to the largest of ``values`` (one at 0 if none)."""
    values = values.dropna()
    if values.empty:
        return [0]
    return list(range(int(values.min()), int(values.max()) + 1))


def failure_legend(rows: pd.DataFrame) -> str:
    """The heatmap's note on failures, naming the failed outcomes these rows hold (with their
    counts), so that a hatched cell is never read as a failure it is not; rows whose exact
    result is 0 (no relative error, no cell) are counted too."""
    outcomes = rows["outcome"].value_counts()
    failed = [f"{name} {int(outcomes[name])}" for name in FAILURES if name in outcomes.index]
    text = (
        f"red: percent of inputs that failed ({', '.join(failed)} rows); hatched: all failed"
        if failed
        else "no input failed"
    )
    if EXACT_ZERO in outcomes.index:
        text += f"; {int(outcomes[EXACT_ZERO])} rows with exact result 0 not drawn"
    return text


def _facet_title(table: pd.DataFrame, problem: str, variant: str, fmt: str) -> str:
    rows = table[
        (table["problem"] == problem) & (table["variant"] == variant) & (table["format"] == fmt)
    ]
    if len(rows) and (rows["outcome"] == "unsupported").all():
        return f"{variant} · {fmt}\n(unsupported: nothing computed)"
    if len(rows) and (rows["outcome"] == "error").all():
        kind = str(rows["exception"].iloc[0]).split(":")[0]
        return f"{variant} · {fmt}\n(raised {kind}: nothing computed)"
    # "": unsupported or error rows, which returned nothing
    computed = sorted(set(rows["compute_dtype"].dropna()) - {fmt, ""})
    return f"{variant} · {fmt}" + (f"\n(returns {', '.join(computed)})" if computed else "")


def _draw_facet(ax, facet: pd.DataFrame, xs, ys, vmin: float, vmax: float) -> None:
    values = np.full((len(ys), len(xs)), np.nan)
    grid = pd.DataFrame(values, index=ys[::-1], columns=xs)
    for row in facet.itertuples(index=False):
        grid.loc[int(row.magnitude_decade), int(row.cond_decade)] = row.log10_err_over_kappa_u
    # The heatmap is drawn with pcolormesh in seaborn's style: seaborn.heatmap redraws the
    # whole figure on every call to lay out its tick labels, which made a 16-facet figure
    # take seconds. Rows run top to bottom from the largest magnitude, as in seaborn.
    ax.pcolormesh(
        np.ma.masked_invalid(grid.to_numpy(dtype=float)),
        cmap=CMAP,
        vmin=vmin,
        vmax=vmax,
        edgecolors="white",
        linewidth=0.3,
    )
    ax.set_xlim(0, len(xs))
    ax.set_ylim(len(ys), 0)
    ax.set_xticks(np.arange(len(xs)) + 0.5, _thinned(xs))
    ax.set_yticks(np.arange(len(ys)) + 0.5, _thinned(ys[::-1]), va="center")
    sns.despine(ax=ax, left=True, bottom=True)
    for row in facet.itertuples(index=False):
        col, line = xs.index(int(row.cond_decade)), ys[::-1].index(int(row.magnitude_decade))
        if row.failure_fraction == 1:
            # Inputs exist but none gave a usable result: hatch the cell, unlike an empty one.
            ax.add_patch(Rectangle((col, line), 1, 1, fill=False, hatch="///", color="0.5"))
        if row.failure_fraction > 0:
            ax.text(
                col + 0.5,
                line + 0.5,
                f"{100 * row.failure_fraction:.0f}",
                ha="center",
                va="center",
                fontsize=6,
                color="red",
                fontweight="bold",
            )
    ax.tick_params(labelsize=7)


def _thinned(decades: list[int]) -> list[str]:
    """Tick labels of a decade axis, every k-th one shown so that at most MAX_TICK_LABELS are
    (labels of 2 or 3 characters run together otherwise: "9101112")."""
    step = -(-len(decades) // MAX_TICK_LABELS)
    return [str(d) if d % step == 0 else "" for d in decades]


REFERENCE_LINES = {
    "summation": summation.reference_lines,
    "variance": variance.reference_lines,
}
"""Problem -> ``lines(n, kappa, fmt) -> {label: relative error in units of u}``."""

VERSUS_N = ("summation",)
"""Problems whose bounds are gamma_k * kappa, plotted as error / (u kappa) versus n."""


def _pooled(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the random_order family (one member per seed) pooled as one line
    ("random orders"), the other variants `labelled`."""
    random = table["variant"].eq("random_order").fillna(False)
    pooled = table.assign(
        variant=table["variant"].where(~random, "random orders"),
        seed=table["seed"].where(~random),
    )
    return labelled(pooled)


def _facet_grid(rows: int, columns: int, *, row_height: float):
    """A grid of facets (variants x formats) sharing both axes, laid out so that titles and
    labels never overlap (constrained layout)."""
    return plt.subplots(
        rows,
        columns,
        figsize=(2.6 * columns + 1.4, row_height * rows + 1.2),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )


def _format_axes(table: pd.DataFrame, rows: int = 1):
    formats = list(dict.fromkeys(table["format"]))
    fig, axes = plt.subplots(
        rows,
        len(formats),
        figsize=(3.4 * len(formats) + 2.5, 3.0 * rows + 1.0),
        squeeze=False,
        layout="constrained",  # titles, labels and the legend never overlap
    )
    return fig, axes, formats


def _draw_lines(ax, data: pd.DataFrame, x: str, y: str) -> None:
    """One line per variant through the medians ``y`` (``median_<measure>``), over a band from
    the 10% to the 90% quantile of the rows (``low_<measure>``, ``high_<measure>``) where the
    data has them: a median alone hides how widely the rows spread."""
    measure = y.removeprefix("median_")
    for variant, line in data.groupby("variant", sort=False):
        (drawn,) = ax.plot(line[x], line[y], marker="o", markersize=3, linewidth=1, label=variant)
        if f"low_{measure}" in line and len(line) > 1:
            ax.fill_between(
                line[x].astype(float),
                line[f"low_{measure}"].astype(float),
                line[f"high_{measure}"].astype(float),
                color=drawn.get_color(),
                alpha=0.15,
                linewidth=0,
            )


def _draw_references(ax, points: list[tuple[float, dict[str, float]]]) -> None:
    """Dashed reference lines through (x, {label: value}) points (NaN: not defined there)."""
    xs = [x for x, _ in points]
    labels = list(points[0][1]) if points else []
    for style, label in zip(("--", ":", "-."), labels, strict=False):
        ax.plot(xs, [v[label] for _, v in points], style, color="0.3", linewidth=1, label=label)


def lines_versus_n(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Median relative error / (u kappa) versus n over well-conditioned inputs (kappa < 10),
    per format: a bound gamma_k kappa becomes the line gamma_k / u, valid for every row."""
    rows = _pooled(table[(table["problem"] == problem) & (table["cond"] < 10)])
    data = error_lines(rows, "n")
    fig, axes, formats = _format_axes(rows)
    sizes = sorted(set(rows["n"].dropna().astype(int)))
    for ax, fmt in zip(axes[0], formats, strict=True):
        _draw_lines(ax, data[data["format"] == fmt], "n", "median_err_per_cond")
        lines, f = REFERENCE_LINES[problem], get_format(fmt)
        _draw_references(ax, [(n, lines(n, 1.0, f)) for n in sizes])
        _log_axes(ax, fmt, "n", "median rel. error / (u kappa)")
    _legend(fig, axes)
    fig.suptitle(
        f"{problem}: error / (u kappa) versus n, inputs with kappa < 10 (medians; bands: 10-90% "
        "of the rows; bounds dashed)"
    )
    return fig


def lines_versus_condition(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Median relative error / u versus the measured condition number (per decade), one row of
    panels per size n, with the reference lines at that n."""
    rows = _pooled(table[table["problem"] == problem])
    data = error_lines(rows, "cond_decade")
    sizes = sorted(set(rows["n"].dropna().astype(int)))
    fig, axes, formats = _format_axes(rows, rows=len(sizes))
    for i, n in enumerate(sizes):
        for ax, fmt in zip(axes[i], formats, strict=True):
            panel = data[(data["format"] == fmt) & (data["n"] == n)]
            _draw_lines(ax, panel, "median_cond", "median_err_over_u")
            lines, f = REFERENCE_LINES[problem], get_format(fmt)
            kappas = sorted(panel["median_cond"]) or [1.0]
            _draw_references(ax, [(k, lines(n, k, f)) for k in kappas])
            _log_axes(ax, f"{fmt}, n = {n}", "measured condition number", "median rel. error / u")
    _legend(fig, axes)
    fig.suptitle(
        f"{problem}: error versus condition number (medians; bands: 10-90% of the rows; "
        "reference lines dashed)"
    )
    return fig


def _log_axes(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        # Decades only: matplotlib labels minor ticks (6 x 10^0) on short log axes, where they
        # run into the decade labels.
        axis.set_major_locator(LogLocator(base=10, numticks=6))
        axis.set_minor_formatter(NullFormatter())
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def _legend(fig: plt.Figure, axes) -> None:
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7)


DEEPSEEK_ERROR = 0.02
"""DeepSeek-V3's "maximum relative error of nearly 2%" at K = 4096 (technical report, sec.
3.3.2), drawn as a reference, never fitted."""


def accumulator_figure(table: pd.DataFrame) -> plt.Figure:
    """The dot product's largest relative error versus K over well-conditioned inputs
    (kappa < 10, `precision.report.summary.accumulator_errors`): one column of panels per
    format; top row the accumulators without promotion, bottom row the limited accumulators
    promoted to float32 every ``promote_every`` products (the float32 and in-format
    accumulators, grey, in both rows); the published 2% in red. An error of exactly 0 has no
    place on a log axis and is not drawn (the title says so)."""
    errors = accumulator_errors(table)
    errors = errors.assign(
        model=errors.apply(accumulator_label, axis=1) if len(errors) else [],
        shown=errors["max_rel_error"].where(errors["max_rel_error"] > 0),
    )
    limited = errors["acc_bits"].notna()
    promoted = errors["promote_every"].fillna(0) > 0
    fig, axes, formats = _format_axes(table[table["problem"] == "dot"], rows=2)  # table order
    every = sorted(set(errors.loc[promoted, "promote_every"].astype(int)))
    titles = ("no promotion", f"promoted every {', '.join(map(str, every))}")
    for row, chosen in enumerate((limited & ~promoted, limited & promoted)):
        for ax, fmt in zip(axes[row], formats, strict=True):
            panel = errors[errors["format"] == fmt]
            for model, line in panel[chosen[panel.index]].groupby("model", sort=False):
                ax.plot(line["n"], line["shown"], marker="o", markersize=3, linewidth=1,
                        label=model)  # fmt: skip
            wide = panel[~limited[panel.index]].groupby("model", sort=False)
            for style, (model, line) in zip(("--", "-."), wide, strict=False):
                ax.plot(line["n"], line["shown"], style, color="0.35", linewidth=1,
                        label=model)  # fmt: skip
            ax.axhline(DEEPSEEK_ERROR, color="tab:red", linestyle=":", linewidth=1.2,
                       label="2% (DeepSeek-V3, K = 4096)")  # fmt: skip
            _log_axes(ax, f"{fmt}: {titles[row]}", "K", "largest rel. error")
            ax.set_xscale("log", base=2)
    _legend(fig, axes)
    fig.suptitle(
        "dot: largest relative error versus K over inputs with kappa < 10 (errors of 0 not drawn)"
    )
    return fig


def study_figures(
    table: pd.DataFrame, companions: dict[str, pd.DataFrame] | None = None
) -> dict[str, plt.Figure]:
    """Every figure of a study, by file stem, from its rows and its stored companion tables
    (`precision.run.study.companion_tables`: the convergence curves)."""
    problems = list(dict.fromkeys(table["problem"]))
    mapped = [p for p in problems if p not in STEP_SWEEPS]
    scale = colour_scale(heatmap_cells(table[table["problem"].isin(mapped)]))
    figures = {}
    for p in mapped:
        figures |= heatmap_figures(table, p, scale)
    figures |= optimisation_figures(table)
    if companions and "convergence" in companions:
        figures["convergence_quadratic"] = convergence_figure(companions["convergence"])
    if "dot" in problems:
        figures["lines_dot_n"] = accumulator_figure(table)
    for p in problems:
        if p in VERSUS_N:
            figures[f"lines_{p}_n"] = lines_versus_n(table, p)
        if p in REFERENCE_LINES:
            figures[f"lines_{p}_kappa"] = lines_versus_condition(table, p)
        if p in linalg.LINEAR_ALGEBRA_PROBLEMS:
            figures[f"lines_{p}_kappa"] = linear_algebra_lines(table, p)
    return figures


# ---------------------------------------------------------------- report figures


def bound_lines_versus_condition(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Median relative error / u versus the measured condition number (per decade), one panel per
    format, one solid line per variant, with the median of the rows' own first-order bounds (the
    ``bound`` column, / u) in the same colour, dashed, where the variant has one. Certified ok rows
    with a finite condition number only (`precision.report.summary.error_lines`)."""
    table = labelled(table)
    rows = _pooled(table[table["problem"] == problem])
    data = error_lines(rows, "cond_decade")
    bounds = _median_bounds(rows)
    fig, axes, formats = _format_axes(rows)
    for ax, fmt in zip(axes[0], formats, strict=True):
        panel = data[data["format"] == fmt]
        for variant, line in panel.groupby("variant", sort=False):
            drawn = line.groupby("cond_decade", observed=True).median(numeric_only=True)
            (handle,) = ax.plot(
                drawn["median_cond"],
                drawn["median_err_over_u"],
                marker="o",
                markersize=3,
                linewidth=1,
                label=variant,
            )
            bound = bounds[(bounds["format"] == fmt) & (bounds["variant"] == variant)]
            if len(bound):
                ax.plot(
                    bound["median_cond"],
                    bound["median_bound_over_u"],
                    linestyle="--",
                    linewidth=1,
                    color=handle.get_color(),
                    label=f"{variant} bound",
                )
        _log_axes(ax, fmt, "measured condition number", "median rel. error / u")
    _legend(fig, axes)
    fig.suptitle(f"{problem}: error versus condition number (dashed: the rows' own bounds)")
    return fig


def _median_bounds(rows: pd.DataFrame) -> pd.DataFrame:
    """Median bound / u and median condition number per variant x format x condition decade,
    over certified ok rows whose bound is finite."""
    from precision.report.summary import with_bins

    rows = with_bins(rows)
    usable = (
        (rows["outcome"] == "ok")
        & rows["certified"].fillna(False).astype(bool)
        & np.isfinite(rows["bound"].astype(float))
        & np.isfinite(rows["cond"].astype(float))
        & (rows["cond"] > 0)
    )
    rows = rows[usable]
    u = rows["format"].map(lambda f: get_format(f).u)
    rows = rows.assign(bound_over_u=rows["bound"] / u)
    stats = rows.groupby(["variant", "format", "cond_decade"], observed=True).agg(
        median_bound_over_u=("bound_over_u", "median"), median_cond=("cond", "median")
    )
    return stats.reset_index()


def report_figures(
    table: pd.DataFrame, companions: dict[str, pd.DataFrame] | None = None
) -> dict[str, plt.Figure]:
    """Every figure a report shows for one study: the study's own figures (`study_figures`)
    and, for each problem whose rows carry bounds and that has no reference lines, the error
    versus condition number with the rows' bounds (`bound_lines_versus_condition`)."""
    figures = study_figures(table, companions)
    for problem in dict.fromkeys(table["problem"]):
        rows = table[table["problem"] == problem]
        if problem not in REFERENCE_LINES and np.isfinite(rows["bound"].astype(float)).any():
            figures[f"bounds_{problem}_kappa"] = bound_lines_versus_condition(table, problem)
    return figures


# ---------------------------------------------------------------- optimisation and calculus

STEP_SWEEPS = ("fd_exp", "fd_softplus", "fd_network", "fd_hessian")
"""Finite-difference problems whose variants sweep a step h (one variant per method and h):
drawn as V curves and error versus h x format (`step_sweep_figure`), not as heatmaps of
condition number x magnitude."""


def step_sweep_figure(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Top row: the V curve per method, median relative error over the inputs versus h, one
    line per format, with the textbook optimum (2 sqrt(u) forward, (3u)^(1/3) central) dotted.
    Bottom row: the same medians as a heatmap of log10 error, h (columns) x format (rows)."""
    from precision.problems.derivatives import theoretical_optimum

    # Variants without a step (a user's kernel of the same problem) have no place on an h axis.
    rows = table[(table["problem"] == problem) & table["h"].notna()]
    rows = rows.assign(method=rows["variant"])
    # Sorted (groupby's default), so that .loc on a (method, format) prefix is lexsorted.
    medians = rows.groupby(["method", "format", "h"])["rel_error"].median()
    methods = list(dict.fromkeys(rows["method"]))
    formats = list(dict.fromkeys(rows["format"]))
    fig, axes = plt.subplots(
        2, len(methods), figsize=(4.6 * len(methods), 7.5), squeeze=False, layout="constrained"
    )
    for j, method in enumerate(methods):
        ax = axes[0][j]
        for i, fmt in enumerate(formats):
            curve = medians.loc[(method, fmt)].sort_index().clip(lower=1e-17)
            ax.plot(curve.index, curve.to_numpy(), marker=".", label=fmt, color=f"C{i}")
            if method in ("forward", "central"):
                optimum = theoretical_optimum(method, get_format(fmt).u)
                ax.axvline(optimum, linestyle=":", color=f"C{i}", linewidth=1)
        _log_axes(ax, f"{problem}: {method}", "step h", "median rel. error")
        ax.legend(fontsize=7)
        grid = medians.loc[method].unstack("h").reindex(formats)
        grid = grid[sorted(grid.columns)]
        image = axes[1][j].pcolormesh(
            np.log10(grid.to_numpy(dtype=float).clip(min=1e-17)), cmap=CMAP, vmin=-16, vmax=1
        )
        ticks = list(range(0, grid.shape[1], 4))
        axes[1][j].set_xticks(
            np.array(ticks) + 0.5, [f"{np.log2(grid.columns[t]):.0f}" for t in ticks], fontsize=7
        )
        axes[1][j].set_yticks(np.arange(len(formats)) + 0.5, formats, fontsize=7)
        axes[1][j].set_xlabel("log2 h", fontsize=8)
        fig.colorbar(image, ax=axes[1][j], label="log10 median rel. error")
    fig.suptitle(f"{problem}: error versus step size (dotted: theoretical optimum)")
    return fig


def convergence_figure(curves: pd.DataFrame) -> plt.Figure:
    """Error versus iteration per format (columns) and condition number (rows), one line per
    variant, from `precision.problems.quadratic.convergence_table`."""
    curves = labelled(curves)
    kappas = list(dict.fromkeys(curves["kappa"]))
    formats = list(dict.fromkeys(curves["format"]))
    fig, axes = plt.subplots(
        len(kappas),
        len(formats),
        figsize=(3.4 * len(formats) + 2.5, 3.0 * len(kappas) + 1),
        squeeze=False,
        layout="constrained",
    )
    for i, kappa in enumerate(kappas):
        for j, fmt in enumerate(formats):
            ax = axes[i][j]
            panel = curves[(curves["kappa"] == kappa) & (curves["format"] == fmt)]
            for variant, line in panel.groupby("variant", sort=False):
                ax.plot(line["iteration"], line["rel_error"].clip(lower=1e-17), label=variant)
            ax.axhline(get_format(fmt).u, linestyle=":", color="0.4", linewidth=1)
            ax.set_yscale("log")
            ax.set_ylim(top=10.0)  # a diverging run (alpha past 2 / lambda_max) leaves the panel
            ax.set_title(f"{fmt}, kappa = {kappa:g}", fontsize=9)
            ax.set_xlabel("iteration", fontsize=8)
            ax.set_ylabel("rel. error of theta_k" if j == 0 else "", fontsize=8)
            ax.tick_params(labelsize=7)
    _legend(fig, axes)
    fig.suptitle("Gradient descent: error versus iteration (dotted: u of the format)")
    return fig


def accuracy_versus_condition(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Median relative error / u versus the measured kappa (per decade), one line per variant
    and a panel per format, with kappa (the first-order forward error of a backward-stable
    solve, in units of u) dashed. Rows of every outcome but overflow / nan count (a capped
    run's floor is its accuracy)."""
    table = labelled(table)
    rows = table[(table["problem"] == problem) & ~table["outcome"].isin(["overflow", "nan"])]
    rows = rows.assign(decade=np.floor(np.log10(rows["cond"].astype(float))))
    data = (
        rows.groupby(["format", "variant", "decade"], sort=False)
        .agg(median_cond=("cond", "median"), median_err_over_u=("err_over_u", "median"))
        .reset_index()
    )
    fig, axes, formats = _format_axes(rows)
    for ax, fmt in zip(axes[0], formats, strict=True):
        panel = data[data["format"] == fmt]
        _draw_lines(ax, panel, "median_cond", "median_err_over_u")
        kappas = sorted(panel["median_cond"]) or [1.0]
        ax.plot(kappas, kappas, "--", color="0.3", linewidth=1, label="kappa")
        _log_axes(ax, fmt, "measured kappa(H)", "median rel. error / u")
    _legend(fig, axes)
    fig.suptitle(f"{problem}: attainable accuracy versus condition number")
    return fig


def optimisation_figures(table: pd.DataFrame) -> dict[str, plt.Figure]:
    """The step-sweep figures of the finite-difference problems, and for the quadratic the
    accuracy-versus-kappa lines (its convergence curves come from the stored companion table:
    `study_figures`)."""
    problems = list(dict.fromkeys(table["problem"]))
    # A table stored before ``h`` was a column has it missing (results names it stale): no V.
    stepped = set(table.loc[table["h"].notna(), "problem"])
    figures = {
        f"steps_{p}": step_sweep_figure(table, p)
        for p in problems
        if p in STEP_SWEEPS and p in stepped
    }
    if "critical_point" in problems:
        figures["misclassified_critical_point"] = misclassification_figure(table)
    if "quadratic" in problems:
        figures["lines_quadratic_kappa"] = accuracy_versus_condition(table, "quadratic")
    return figures


def misclassification_figure(table: pd.DataFrame, problem: str = "critical_point") -> plt.Figure:
    """The fraction of inputs whose critical point is misclassified (rel_error > 0: a sign of
    the sorted eigenvalue signs is wrong) per cell of measured condition number x magnitude
    decades, one facet per variant x format; unsupported rows are left out (blank facet)."""
    table = labelled(table)
    rows = table[(table["problem"] == problem) & (table["outcome"] != "unsupported")]
    rows = rows.assign(
        cond_decade=np.floor(np.log10(rows["cond"].astype(float))),
        magnitude_decade=np.floor(np.log10(rows["magnitude"].astype(float))),
        wrong=(rows["rel_error"].astype(float) > 0) | rows["rel_error"].isna(),
    )
    variants = list(dict.fromkeys(table.loc[table["problem"] == problem, "variant"]))
    formats = list(dict.fromkeys(table["format"]))
    xs = np.arange(rows["cond_decade"].min(), rows["cond_decade"].max() + 1)
    ys = np.arange(rows["magnitude_decade"].min(), rows["magnitude_decade"].max() + 1)
    fig, axes = _facet_grid(len(variants), len(formats), row_height=2.1)
    for i, variant in enumerate(variants):
        for j, fmt in enumerate(formats):
            facet = rows[(rows["variant"] == variant) & (rows["format"] == fmt)]
            rate = facet.groupby(["magnitude_decade", "cond_decade"])["wrong"].mean()
            grid = rate.unstack("cond_decade").reindex(index=ys, columns=xs).to_numpy(float)
            image = axes[i][j].pcolormesh(
                xs,
                ys,
                np.ma.masked_invalid(grid),
                cmap="magma_r",
                vmin=0,
                vmax=1,
                shading="nearest",
            )
            axes[i][j].set_title(f"{variant} · {fmt}", fontsize=8)
            axes[i][j].tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("log10 kappa", fontsize=8)
    for line in axes:
        line[0].set_ylabel("log10 ||H||", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="misclassified fraction")
    fig.suptitle(f"{problem}: misclassification rate versus kappa = ||H|| / min |lambda|")
    return fig


# ---------------------------------------------------------------- linear algebra


def linear_algebra_lines(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Median relative error / u versus the measured condition number (per decade) of a
    linear-algebra problem, one row of panels per size n and one column per format, with the
    reference lines kappa u (backward stable solvers) and kappa^2 u (normal equations) dashed
    (`precision.problems.linalg.reference_lines`, cut where the error would pass 10).

    Each variant keeps one colour in every panel (a library variant has no rows in a format it
    refuses), and a variant whose rows computed in a wider dtype says so in the legend, e.g.
    "numpy_solve (bfloat16->float64, float32->float64)": its line lies far below the format's
    u because it is not a result of that format. Certified ok rows only (`error_lines`).
    """
    table = labelled(table)
    rows = table[table["problem"] == problem]
    data = error_lines(rows, "cond_decade")
    sizes = sorted(set(rows["n"].dropna().astype(int)))
    fig, axes, formats = _format_axes(rows, rows=len(sizes))
    variants = list(dict.fromkeys(rows["variant"]))
    colours = dict(zip(variants, plt.get_cmap("tab10").colors, strict=False))
    for i, n in enumerate(sizes):
        for ax, fmt in zip(axes[i], formats, strict=True):
            panel = data[(data["format"] == fmt) & (data["n"] == n)]
            for variant, line in panel.groupby("variant", sort=False):
                ax.plot(
                    line["median_cond"],
                    line["median_err_over_u"],
                    marker="o",
                    markersize=3,
                    linewidth=1,
                    color=colours[variant],
                )
            kappas = sorted(panel["median_cond"]) or [1.0]
            _draw_references(
                ax, [(k, linalg.reference_lines(n, k, get_format(fmt))) for k in kappas]
            )
            _log_axes(ax, f"{fmt}, n = {n}", "measured condition number", "median rel. error / u")
    handles = [
        plt.Line2D([], [], color=colours[v], marker="o", markersize=3, label=_upcast_label(rows, v))
        for v in variants
    ]
    handles += [h for h in axes[0][0].get_lines() if h.get_label() in ("kappa u", "kappa^2 u")]
    fig.legend(handles=handles, loc="outside right center", fontsize=7)
    fig.suptitle(f"{problem}: error versus condition number (kappa u and kappa^2 u dashed)")
    return fig


def _upcast_label(rows: pd.DataFrame, variant: str) -> str:
    """The variant's name, with the formats whose rows it computed in another dtype."""
    mine = rows[(rows["variant"] == variant) & (rows["compute_dtype"].fillna("") != "")]
    upcasts = sorted(
        {f"{f}->{d}" for f, d in zip(mine["format"], mine["compute_dtype"], strict=True) if f != d}
    )
    return f"{variant} ({', '.join(upcasts)})" if upcasts else variant
