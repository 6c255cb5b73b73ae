"""Heatmaps of error versus measured condition number and magnitude: one figure per problem,
one facet per variant (rows) x format (columns), colour = median log10(error / (kappa u)) on
one colour scale per study (`colour_scale`), failed shares written in the cells.
"""

from __future__ import annotations

from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle

from precision.report.plots import common
from precision.report.plots.common import (
    _decades,
    _facet_grid,
    _frame_dashed,
    _part_title,
    _share,
    _thinned,
    _upcast_pairs,
    split_figures,
)
from precision.report.summary import (
    EXACT_ZERO,
    FAILURES,
    labelled,
    magnitude_name,
    summarize,
)

CMAP = "viridis"


FLOOR = -4.0
"""Lowest colour of the heatmaps in log10(error / (kappa u)): a result ten thousand times more
accurate than its conditioning forces (a correctly rounded one, error 0) sits at the open end of
the colour bar."""


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
    table: pd.DataFrame,
    problem: str,
    scale: ColourScale | None = None,
    *,
    cells: pd.DataFrame | None = None,
) -> dict[str, plt.Figure]:
    """The heatmaps of one problem by file stem: ``heatmap_<problem>``, then
    ``heatmap_<problem>_2`` ... when its variants x formats exceed MAX_PANELS (whole variants
    per figure, every format of each). ``cells``: `heatmap_cells` of a table holding this
    problem's rows, where the caller has them (summarised once for every part)."""
    mine = table[table["problem"] == problem]
    cells = heatmap_cells(mine) if cells is None else cells[cells["problem"] == problem]
    variants = list(dict.fromkeys(labelled(mine)["variant"]))
    return split_figures(
        f"heatmap_{problem}",
        variants,
        common.MAX_PANELS // max(1, mine["format"].nunique()),
        lambda group, part: heatmap_figure(
            table, problem, variants=group, scale=scale, part=part, cells=cells
        ),
    )


def heatmap_figure(
    table: pd.DataFrame,
    problem: str,
    *,
    variants: list[str] | None = None,
    scale: ColourScale | None = None,
    part: tuple[int, int] | None = None,
    cells: pd.DataFrame | None = None,
) -> plt.Figure:
    """The error heatmap facets of one problem (see module docstring): one row of panels per
    variant (``variants``: labelled names, by default all), one column per format; colours on
    ``scale`` (default: this problem's own range). ``cells``: as in `heatmap_figures`."""
    mine = table[table["problem"] == problem]
    rows = labelled(mine)
    # heatmap_cells labels the rows itself: labelling twice ("seed=0 seed=0") matches no facet.
    cells = heatmap_cells(mine) if cells is None else cells[cells["problem"] == problem]
    # One split of the rows for every facet's title, not a mask over all rows per facet.
    facets = dict(list(rows.groupby(["variant", "format"], sort=False, observed=True)))
    variants = variants or list(dict.fromkeys(rows["variant"]))
    formats = list(dict.fromkeys(table["format"]))
    vmin, vmax = scale or colour_scale(cells)
    upcast = _upcast_pairs(rows)
    xs = _decades(cells["cond_decade"])
    ys = _decades(cells["magnitude_decade"])
    fig, axes = _facet_grid(len(variants), len(formats), row_height=2.3)
    magnitude = magnitude_name([problem])
    for i, variant in enumerate(variants):
        for j, fmt in enumerate(formats):
            facet = cells[(cells["variant"] == variant) & (cells["format"] == fmt)]
            _draw_facet(axes[i][j], facet, xs, ys, vmin, vmax)
            title = _facet_title(facets.get((variant, fmt), rows.iloc[:0]), variant, fmt)
            axes[i][j].set_title(title, fontsize=8)
            if (variant, fmt) in upcast:
                _frame_dashed(axes[i][j])
            axes[i][j].set_xlabel("log10 cond" if i == len(variants) - 1 else "", fontsize=8)
            axes[i][j].set_ylabel(f"log10 {magnitude}" if j == 0 else "", fontsize=8)
    _decade_ticks(axes, xs, ys)
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(vmin, vmax), cmap=CMAP)
    fig.colorbar(
        mappable,
        ax=axes,
        shrink=0.8,
        extend="min",
        label="median log10(rel. error / (kappa u)) of ok rows",
    )
    upcast_note = "; dashed frame: computed in a wider dtype (named)" if upcast else ""
    fig.suptitle(
        f"{problem}{_part_title(part)}: error over what conditioning forces (kappa u, "
        f"kappa >= 1)\n{failure_legend(rows)}{upcast_note}",
        fontsize=10,
    )
    return fig


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


def _facet_title(rows: pd.DataFrame, variant: str, fmt: str) -> str:
    """A heatmap facet's title from its rows (one variant x format of one problem)."""
    if len(rows) and (rows["outcome"] == "unsupported").all():
        return f"{variant} · {fmt}\n(unsupported: nothing computed)"
    if len(rows) and (rows["outcome"] == "error").all():
        kind = str(rows["exception"].iloc[0]).split(":")[0]
        return f"{variant} · {fmt}\n(raised {kind}: nothing computed)"
    # "": unsupported or error rows, which returned nothing
    computed = sorted(set(rows["compute_dtype"].dropna()) - {fmt, ""})
    return f"{variant} · {fmt}" + (f"\n(upcast: returns {', '.join(computed)})" if computed else "")


def _decade_ticks(axes, xs: list[int], ys: list[int]) -> None:
    """The limits and decade ticks of a heatmap grid, set on its first facet only: the facets
    share both axes and their tick locators, so each call reaches every facet, and one call
    per facet made the work grow with the square of the number of facets. The tick labels'
    vertical centring is a property of each facet's own labels."""
    first = axes[0][0]
    first.set_xlim(0, len(xs))
    first.set_ylim(len(ys), 0)
    first.set_xticks(np.arange(len(xs)) + 0.5, _thinned(xs))
    first.set_yticks(np.arange(len(ys)) + 0.5, _thinned(ys[::-1]))
    for ax in np.ravel(axes):
        ax.set_yticklabels(_thinned(ys[::-1]), va="center")


def _draw_facet(ax, facet: pd.DataFrame, xs, ys, vmin: float, vmax: float) -> None:
    """One facet's cells (limits and ticks: `_decade_ticks`). Row k of the grid is magnitude
    decade ys[-1] - k (the largest on top), column k condition decade xs[0] + k."""
    columns = facet["cond_decade"].to_numpy(dtype=int) - xs[0]
    lines = ys[-1] - facet["magnitude_decade"].to_numpy(dtype=int)
    failed = facet["failure_fraction"].to_numpy(dtype=float)
    values = np.full((len(ys), len(xs)), np.nan)
    values[lines, columns] = facet["log10_err_over_kappa_u"].to_numpy(dtype=float)
    # The heatmap is drawn with pcolormesh in seaborn's style: seaborn.heatmap redraws the
    # whole figure on every call to lay out its tick labels, which made a 16-facet figure
    # take seconds. Rows run top to bottom from the largest magnitude, as in seaborn.
    ax.pcolormesh(
        np.ma.masked_invalid(values),
        cmap=CMAP,
        vmin=vmin,
        vmax=vmax,
        edgecolors="white",
        linewidth=0.3,
    )
    sns.despine(ax=ax, left=True, bottom=True)
    for col, line, fraction in zip(columns.tolist(), lines.tolist(), failed.tolist(), strict=True):
        if fraction == 1:
            # Inputs exist but none gave a usable result: hatch the cell, unlike an empty one.
            ax.add_patch(Rectangle((col, line), 1, 1, fill=False, hatch="///", color="0.5"))
        label = _failed_percent(fraction)
        size = _cell_font_size(label, columns=len(xs))
        if label and size:
            ax.text(col + 0.5, line + 0.5, label, ha="center", va="center", fontsize=size,
                    color="red", fontweight="bold")  # fmt: skip
    ax.tick_params(labelsize=7)


FACET_WIDTH_PT = 2.2 * 72
"""About the width of a heatmap facet's cells together, in points (`_facet_grid` gives each
facet 2.6 inches, less its tick labels and padding)."""


MIN_CELL_FONT = 4.0
"""The smallest font a cell's failed percentage is written in (at 110 dpi, 6 px high): a cell
too narrow for it keeps only its colour, or its hatching."""


def _failed_percent(fraction: float) -> str:
    """A heatmap cell's failed percentage: "" where none failed, or all did (the hatching says
    so, and "100" in every cell of a long axis ran together); "<1" and ">99" where rounding
    would read 0 or 100."""
    if not 0 < fraction < 1:
        return ""
    return _share(fraction).removesuffix("%")


def _cell_font_size(label: str, *, columns: int) -> float | None:
    """The font size (at most 6 points) at which ``label`` fits the width of one of ``columns``
    cells (a bold digit is about 0.65 em wide), or None below MIN_CELL_FONT."""
    if not label:
        return None
    size = min(6.0, FACET_WIDTH_PT / max(1, columns) / (0.65 * len(label)))
    return size if size >= MIN_CELL_FONT else None
