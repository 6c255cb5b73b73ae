"""Heatmaps of error versus measured condition number and magnitude. The only seaborn user.

One figure per problem; one facet per variant (rows) x format (columns). x = decade of the
measured condition number, y = decade of the input magnitude, colour = median log10(error / u)
over certified ok rows. A cell where some inputs failed (underflow, overflow, nan) carries the
failed percentage as text; a cell with no inputs stays blank.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from precision.summary import summarize  # noqa: E402

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


def study_figures(table: pd.DataFrame) -> dict[str, plt.Figure]:
    """Every figure of a study, by file stem."""
    return {f"heatmap_{p}": heatmap_figure(table, p) for p in dict.fromkeys(table["problem"])}
