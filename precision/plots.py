"""Heatmaps of error versus measured condition number and magnitude. The only seaborn user.

One figure per problem; one facet per variant (rows) x format (columns). x = decade of the
measured condition number, y = decade of the input magnitude, colour = median log10(error / u)
over certified ok rows. A cell where some inputs failed (underflow, overflow, nan) carries the
failed percentage as text; a cell with no inputs stays blank.

Problems with known error bounds in closed form (`REFERENCE_LINES`) also get line plots: the
median error versus n and versus the measured condition number, one line per variant, with the
bounds (or orders of growth) drawn as dashed lines.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from precision.formats import get_format  # noqa: E402
from precision.problems import summation, variance  # noqa: E402
from precision.summary import error_lines, summarize  # noqa: E402

CMAP = "viridis"
FLOOR = -1.0
"""Colour floor in log10(error / u): a result ten times more accurate than one rounding in the
row's format was computed in a wider format (the row's compute_dtype says which)."""


def heatmap_figure(table: pd.DataFrame, problem: str) -> plt.Figure:
    """The error heatmap facets of one problem (see module docstring)."""
    cells = summarize(table[table["problem"] == problem])
    cells = cells[cells["cond_decade"].notna() & cells["magnitude_decade"].notna()].copy()
    variants = list(dict.fromkeys(table.loc[table["problem"] == problem, "variant"]))
    formats = list(dict.fromkeys(table["format"]))
    # An error of exactly 0 (a correctly rounded result) sits at the colour floor with the
    # other results far below one rounding; the colour bar's arrow marks that end as open.
    median = cells["median_err_over_u"].astype(float)
    cells["log10_err_over_u"] = np.log10(median.clip(lower=10.0**FLOOR))
    xs = list(range(int(cells["cond_decade"].min()), int(cells["cond_decade"].max()) + 1))
    ys = list(range(int(cells["magnitude_decade"].min()), int(cells["magnitude_decade"].max()) + 1))
    finite = cells["log10_err_over_u"].dropna()
    vmax = max(float(finite.max()), FLOOR + 1.0) if len(finite) else 1.0
    vmin = FLOOR
    fig, axes = plt.subplots(
        len(variants),
        len(formats),
        figsize=(2.6 * len(formats) + 1.2, 2.2 * len(variants) + 0.8),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for i, variant in enumerate(variants):
        for j, fmt in enumerate(formats):
            facet = cells[(cells["variant"] == variant) & (cells["format"] == fmt)]
            _draw_facet(axes[i][j], facet, xs, ys, vmin, vmax)
            axes[i][j].set_title(_facet_title(table, problem, variant, fmt), fontsize=9)
            axes[i][j].set_xlabel("log10 cond" if i == len(variants) - 1 else "")
            axes[i][j].set_ylabel("log10 max|x|" if j == 0 else "")
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(vmin, vmax), cmap=CMAP)
    fig.colorbar(
        mappable, ax=axes, shrink=0.8, extend="min", label="median log10(rel. error / u) of ok rows"
    )
    fig.suptitle(
        f"{problem}: error vs measured condition number and magnitude\n"
        "red: percent of inputs that failed (underflow / overflow / nan); hatched: all failed"
    )
    return fig


def _facet_title(table: pd.DataFrame, problem: str, variant: str, fmt: str) -> str:
    rows = table[
        (table["problem"] == problem) & (table["variant"] == variant) & (table["format"] == fmt)
    ]
    computed = sorted(set(rows["compute_dtype"].dropna()) - {fmt})
    return f"{variant} · {fmt}" + (f" (returns {', '.join(computed)})" if computed else "")


def _draw_facet(ax, facet: pd.DataFrame, xs, ys, vmin: float, vmax: float) -> None:
    values = np.full((len(ys), len(xs)), np.nan)
    grid = pd.DataFrame(values, index=ys[::-1], columns=xs)
    for row in facet.itertuples(index=False):
        grid.loc[int(row.magnitude_decade), int(row.cond_decade)] = row.log10_err_over_u
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
    ax.set_xticks(np.arange(len(xs)) + 0.5, [str(x) for x in xs])
    ax.set_yticks(
        np.arange(len(ys)) + 0.5, [str(y) for y in ys[::-1]], rotation="vertical", va="center"
    )
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


REFERENCE_LINES = {
    "summation": summation.reference_lines,
    "variance": variance.reference_lines,
}
"""Problem -> ``lines(n, kappa, fmt) -> {label: relative error in units of u}``."""

VERSUS_N = ("summation",)
"""Problems whose bounds are gamma_k * kappa, plotted as error / (u kappa) versus n."""


def _pooled(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with the random_order_k variants pooled as one line ("random orders")."""
    random = table["variant"].str.startswith("random_order_")
    return table.assign(variant=table["variant"].where(~random, "random orders"))


def _format_axes(table: pd.DataFrame, rows: int = 1):
    formats = list(dict.fromkeys(table["format"]))
    fig, axes = plt.subplots(
        rows, len(formats), figsize=(3.4 * len(formats) + 1.5, 3.0 * rows + 1.0), squeeze=False
    )
    return fig, axes, formats


def _draw_lines(ax, data: pd.DataFrame, x: str, y: str) -> None:
    for variant, line in data.groupby("variant", sort=False):
        ax.plot(line[x], line[y], marker="o", markersize=3, linewidth=1, label=variant)


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
    fig.suptitle(f"{problem}: error / (u kappa) versus n, inputs with kappa < 10 (bounds dashed)")
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
    fig.suptitle(f"{problem}: error versus condition number (reference lines dashed)")
    return fig


def _log_axes(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def _legend(fig: plt.Figure, axes) -> None:
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    fig.subplots_adjust(right=0.82, hspace=0.45, wspace=0.3)


def study_figures(table: pd.DataFrame) -> dict[str, plt.Figure]:
    """Every figure of a study, by file stem."""
    problems = list(dict.fromkeys(table["problem"]))
    figures = {f"heatmap_{p}": heatmap_figure(table, p) for p in problems}
    for p in problems:
        if p in VERSUS_N:
            figures[f"lines_{p}_n"] = lines_versus_n(table, p)
        if p in REFERENCE_LINES:
            figures[f"lines_{p}_kappa"] = lines_versus_condition(table, p)
    return figures
