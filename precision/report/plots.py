"""Heatmaps of error versus measured condition number and magnitude. The only seaborn user.

One figure per problem (split when it would hold more than MAX_PANELS panels); one facet per
variant (rows; each member of a family apart) x format (columns). x = decade of the measured
condition number, y = decade of the input magnitude, colour = median log10(error / (kappa u))
over certified ok rows, kappa floored at 1: the error over what the problem's conditioning
forces on any algorithm, so that the colour shows the algorithm rather than re-encoding the x
axis. Every heatmap of a study shares one colour scale (`colour_scale`), so panels and figures
compare. A cell where some inputs failed (any failed outcome: the title names those present)
carries the failed percentage as text; a cell with no inputs stays blank.

Beside the medians, the distribution of the same measure over the rows (`distribution_figures`):
one box per variant in one panel per format, with its row count and the share of failed rows;
a variant x format without certified ok rows is labelled absent, never drawn as a box.

Problems with known error bounds in closed form (`REFERENCE_LINES`) also get line plots: the
median error versus n and versus the measured condition number, one line per variant, with the
bounds (or orders of growth) drawn as dashed lines. Problems of `VERSUS_LENGTH` (attention)
get the median error versus the sequence length, one row of panels per condition decade
(`length_figures`); problems of `VERSUS_MAGNITUDE` (activations, norms) the median error versus
the decade of max |x_i|, over a strip per panel giving each decade's share of failed rows
(`magnitude_figures`), so that a line that stops says why.

Every line figure draws the members of a seeded family (a variant with the parameter ``seed``:
random_order, recursive_sr) as one line with a band over the seeds (`_pooled`,
`_seed_envelope`), and a variant whose rows computed in a wider dtype than their format
(``compute_dtype``: a library that upcasts) dashed with hollow markers, its legend entry naming
the upcasts (`line_styles`). No figure holds more than MAX_PANELS panels: longer grids are split
over ``<stem>``, ``<stem>_2``, ...
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted

import itertools  # noqa: E402
import math  # noqa: E402
from typing import NamedTuple  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from precision.core.formats import get_format  # noqa: E402
from precision.problems import linalg, summation, variance  # noqa: E402
from precision.report.summary import (  # noqa: E402
    BAND,
    EXACT_ZERO,
    FAILURES,
    accumulator_errors,
    accumulator_label,
    decade,
    error_lines,
    labelled,
    magnitude_name,
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
    groups = _parts(variants, MAX_PANELS // max(1, mine["format"].nunique()))
    return _numbered(
        f"heatmap_{problem}",
        [
            heatmap_figure(
                table, problem, variants=group, scale=scale, part=_part(k, groups), cells=cells
            )  # fmt: skip
            for k, group in enumerate(groups)
        ],
    )


def _parts(items: list, per_part: int) -> list[list]:
    """``items`` in consecutive groups of ``per_part`` (at least 1): the rows of panels of one
    figure each, so that no figure holds more than MAX_PANELS panels."""
    per_part = max(1, per_part)
    return [items[i : i + per_part] for i in range(0, len(items), per_part)] or [[]]


def _part(k: int, groups: list) -> tuple[int, int] | None:
    """(k + 1, number of groups) for a figure's title where a figure was split, else None."""
    return (k + 1, len(groups)) if len(groups) > 1 else None


def _part_title(part: tuple[int, int] | None) -> str:
    return f" ({part[0]} of {part[1]})" if part else ""


def _numbered(stem: str, figures: list[plt.Figure]) -> dict[str, plt.Figure]:
    """The figures of a split by file stem: ``<stem>``, ``<stem>_2``, ``<stem>_3``, ..."""
    return {stem + (f"_{k + 1}" if k else ""): fig for k, fig in enumerate(figures)}


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


def _frame_dashed(ax) -> None:
    """A dashed frame around a facet whose rows computed in a wider dtype than their format:
    its colours are not that format's errors."""
    ax.add_patch(
        Rectangle(
            (0, 0),
            1,
            1,
            transform=ax.transAxes,
            fill=False,
            linestyle="--",
            linewidth=1.2,
            edgecolor="0.2",
            clip_on=False,
        )
    )


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


SEEDED_NAMES = {"random_order": "random orders"}
"""Legend names of pooled seeded families that read better than the family's own name."""


def seeded_rows(table: pd.DataFrame) -> pd.Series:
    """Which rows belong to a seeded family: a variant that declares the parameter ``seed`` (the
    index k of a reproducible random stream, `precision.core.schema.PARAMETERS`: the summation
    order of random_order, the stochastic rounding of recursive_sr) has it in every row, every
    other variant NaN."""
    if "seed" not in table:
        return pd.Series(False, index=table.index)
    return table["seed"].notna()


def _pooled(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with the members of every seeded family (`seeded_rows`) pooled as one variant,
    named by the family (`SEEDED_NAMES`) and the number of seeds it pools ("recursive_sr
    (4 seeds)"); the other variants `labelled`. The seeds are samples of one algorithm, so a
    figure draws them as one line (with a band over the seeds: `_seed_envelope`)."""
    seeded = seeded_rows(table)
    if not seeded.any():
        return labelled(table)
    names = table["variant"].astype(str)
    seeds = table.loc[seeded, "seed"].groupby(names[seeded]).nunique()
    pooled_names = {
        family: SEEDED_NAMES.get(family, family) + (f" ({k} seeds)" if k > 1 else "")
        for family, k in seeds.items()
    }
    pooled = table.assign(
        variant=names.where(~seeded, names.map(pooled_names)),
        seed=table["seed"].where(~seeded),
    )
    return labelled(pooled)


_ENVELOPE = ("err_over_u", "err_per_cond")
"""The `error_lines` measures whose spread over seeds `_seed_envelope` gives."""


def _seed_envelope(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per pooled seeded family (`_pooled`) x format x n x ``by``: the smallest and the largest
    of its members' medians (``seed_low_<measure>``, ``seed_high_<measure>`` for each measure of
    `_ENVELOPE`, from `precision.report.summary.error_lines` per seed). That band is how far the
    choice of the seed alone moves the median; the 10-90% band of the pooled rows holds the
    spread over inputs and seeds together."""
    keys = list(dict.fromkeys(["variant", "format", "n", by]))
    seeded = seeded_rows(table)
    columns = [f"seed_{end}_{m}" for m in _ENVELOPE for end in ("low", "high")]
    if not seeded.any():
        return pd.DataFrame(columns=[*keys, *columns])
    members = table[seeded].assign(variant=_pooled(table).loc[seeded, "variant"])
    per_seed = error_lines(members, by)
    statistics = {}
    for measure in _ENVELOPE:
        statistics[f"seed_low_{measure}"] = (f"median_{measure}", "min")
        statistics[f"seed_high_{measure}"] = (f"median_{measure}", "max")
    grouped = per_seed.groupby(keys, dropna=False, observed=True, sort=False)
    return grouped.agg(**statistics).reset_index()


def _line_data(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """`precision.report.summary.error_lines` of the `_pooled` rows (one line per seeded
    family), with the `_seed_envelope` of each family beside its medians."""
    data = error_lines(_pooled(table), by)
    envelope = _seed_envelope(table, by)
    if envelope.empty:
        return data
    keys = list(dict.fromkeys(["variant", "format", "n", by]))
    return data.merge(envelope, on=keys, how="left")


class LineStyles(NamedTuple):
    """How each variant of a figure is drawn: one colour in every panel (a library variant has
    no rows in a format it refuses, and must not take the next variant's colour there), its
    legend label naming its upcasts (`_upcast_label`), the (variant, format) pairs whose rows
    computed in another dtype than their format, the variants that did so in every format they
    ran in, and the pooled seeded families."""

    colours: dict[str, tuple[float, ...]]
    labels: dict[str, str]
    upcast: frozenset[tuple[str, str]]
    always_upcast: frozenset[str]
    seeded: frozenset[str]


def line_styles(table: pd.DataFrame) -> LineStyles:
    """The `LineStyles` of the variants of ``table`` (seeded families pooled: `_pooled`), in
    table order."""
    rows = _pooled(table)
    variants = list(dict.fromkeys(rows["variant"]))
    palette = plt.get_cmap("tab10" if len(variants) <= 10 else "tab20").colors
    upcast = _upcast_pairs(rows)
    ran_in = rows.groupby("variant", sort=False)["format"].agg(lambda f: set(f.astype(str)))
    return LineStyles(
        colours={v: palette[i % len(palette)] for i, v in enumerate(variants)},
        labels={v: _upcast_label(rows, v) for v in variants},
        upcast=upcast,
        always_upcast=frozenset(
            v for v, formats in ran_in.items() if all((v, f) in upcast for f in formats)
        ),
        seeded=frozenset(rows.loc[seeded_rows(table), "variant"]),
    )


def _upcast_pairs(rows: pd.DataFrame) -> frozenset[tuple[str, str]]:
    """The (variant, format) pairs of ``rows`` with a row whose result came back in another
    dtype than its format (``compute_dtype``; empty where nothing was returned): a library that
    upcasts, whose error is not an error of that format."""
    if "compute_dtype" not in rows:
        return frozenset()
    dtype = rows["compute_dtype"].astype("string").fillna("")
    other = (dtype != "") & (dtype != rows["format"].astype("string"))
    variants, formats = rows.loc[other, "variant"], rows.loc[other, "format"]
    return frozenset(zip(variants.astype(str), formats.astype(str), strict=True))


def _line_style(styles: LineStyles, variant: str, fmt: str | None) -> dict:
    """Keyword arguments of ``plot`` for the variant's line in a panel of format ``fmt``:
    solid with filled markers, or dashed with hollow markers where its rows computed in another
    dtype (``fmt`` None: a legend entry, dashed only for a variant that always upcasts)."""
    upcast = (variant, fmt) in styles.upcast if fmt is not None else variant in styles.always_upcast
    colour = styles.colours.get(variant)
    return {
        "color": colour,
        "marker": "o",
        "markersize": 3.5 if upcast else 3,
        "linewidth": 1,
        "linestyle": "--" if upcast else "-",
        "markerfacecolor": "none" if upcast else colour,
    }


def _facet_grid(rows: int, columns: int, *, row_height: float):
    """A grid of facets (variants x formats) sharing both axes, laid out so that titles and
    labels never overlap (constrained layout)."""
    return plt.subplots(
        rows,
        columns,
        # At least 7 inches wide: the two-line title of a single facet would run past it.
        figsize=(max(2.6 * columns + 1.4, 7.0), row_height * rows + 1.2),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )


FIGURE_WIDTH = 12.7
"""Inches of a line figure at most: 1400 px at the store's 110 dpi, so that it is read at its
own size in a 1400 px page (`_format_axes`)."""


def _format_axes(table: pd.DataFrame, rows: int = 1):
    """A figure with one column of panels per format of ``table`` (in table order) and
    ``rows`` rows, at most FIGURE_WIDTH wide with room for the legend on the right. A single
    row of more than four formats is wrapped over lines of at most three panels (the unused
    ones hidden); ``axes`` is then still one row, ``axes[0][j]`` the panel of format j."""
    formats = list(dict.fromkeys(table["format"]))
    wrapped = rows == 1 and len(formats) > 4
    columns = math.ceil(len(formats) / math.ceil(len(formats) / 3)) if wrapped else len(formats)
    lines = math.ceil(len(formats) / columns) if wrapped else rows
    width = min(3.4, (FIGURE_WIDTH - 2.5) / max(1, columns))
    fig, axes = plt.subplots(
        lines,
        max(1, columns),
        figsize=(width * max(1, columns) + 2.5, 3.0 * lines + 1.0),
        squeeze=False,
        layout="constrained",  # titles, labels and the legend never overlap
    )
    if wrapped:
        for ax in axes.flat[len(formats) :]:
            ax.set_visible(False)
        axes = np.array([list(axes.flat[: len(formats)])])
    return fig, axes, formats


def _draw_lines(ax, data: pd.DataFrame, x: str, y: str, *, styles: LineStyles, fmt: str) -> None:
    """One line per variant through the medians ``y`` (``median_<measure>``) in the variant's
    style (`_line_style`), over a band from the 10% to the 90% quantile of the rows
    (``low_<measure>``, ``high_<measure>``) where the data has them: a median alone hides how
    widely the rows spread; a seeded family's line also over the darker band of its per-seed
    medians (``seed_low_<measure>``, ``seed_high_<measure>``: `_seed_envelope`)."""
    measure = y.removeprefix("median_")
    for variant, line in data.groupby("variant", sort=False):
        (drawn,) = ax.plot(
            line[x], line[y], label=variant, **_line_style(styles, str(variant), fmt)
        )
        if len(line) < 2:
            continue  # a band through one point has no area
        for band, alpha in (("", 0.15), ("seed_", 0.4)):
            low, high = f"{band}low_{measure}", f"{band}high_{measure}"
            if low in line and line[low].notna().any():
                ax.fill_between(
                    line[x].astype(float),
                    line[low].astype(float),
                    line[high].astype(float),
                    color=drawn.get_color(),
                    alpha=alpha,
                    linewidth=0,
                )


def _variant_legend(fig: plt.Figure, axes, styles: LineStyles) -> None:
    """One legend for the figure: every variant drawn in some panel (not only the first: a
    library variant may have no rows there), in its colour, labelled with its upcasts; keys to
    the upcast style and to the seed band where they occur; then the other labelled lines
    (bounds, reference lines)."""
    drawn: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            drawn.setdefault(label, handle)
    variants = [v for v in styles.colours if v in drawn]
    handles = [
        Line2D([], [], label=styles.labels[v], **_line_style(styles, v, None)) for v in variants
    ]
    if any(v in variants for v, _ in styles.upcast):
        key = {"color": "0.3", "linestyle": "--", "marker": "o", "markerfacecolor": "none"}
        handles.append(Line2D([], [], markersize=3.5, label="dashed, hollow: upcast", **key))
    if any(v in styles.seeded for v in variants):
        handles.append(Patch(color="0.3", alpha=0.4, linewidth=0, label="seeds: median range"))
    handles += [h for label, h in drawn.items() if label not in styles.colours]
    fig.legend(handles=handles, loc="outside right center", fontsize=7)


def _draw_references(ax, points: list[tuple[float, dict[str, float]]]) -> None:
    """Dashed reference lines through (x, {label: value}) points (NaN: not defined there)."""
    xs = [x for x, _ in points]
    labels = list(points[0][1]) if points else []
    for style, label in zip(("--", ":", "-."), labels, strict=False):
        ax.plot(xs, [v[label] for _, v in points], style, color="0.3", linewidth=1, label=label)


BANDS_NOTE = "medians; light bands: 10-90% of the rows"
"""How every line figure's title explains its bands (`_draw_lines`)."""


def _bands_note(styles: LineStyles) -> str:
    """`BANDS_NOTE`, with the seed band and the upcast style where the figure has them."""
    note = BANDS_NOTE
    if styles.seeded:
        note += "; dark bands: range of the per-seed medians of a seeded family"
    if styles.upcast:
        note += "; dashed, hollow: computed in a wider dtype"
    return note


def lines_versus_n(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Median relative error / (u kappa) versus n over well-conditioned inputs (kappa < 10),
    per format: a bound gamma_k kappa becomes the line gamma_k / u, valid for every row."""
    rows = table[(table["problem"] == problem) & (table["cond"] < 10)]
    data = _line_data(rows, "n")
    styles = line_styles(rows)
    fig, axes, formats = _format_axes(rows)
    sizes = sorted(set(rows["n"].dropna().astype(int)))
    for ax, fmt in zip(axes[0], formats, strict=True):
        panel = data[data["format"] == fmt]
        _draw_lines(ax, panel, "n", "median_err_per_cond", styles=styles, fmt=fmt)
        lines, f = REFERENCE_LINES[problem], get_format(fmt)
        _draw_references(ax, [(n, lines(n, 1.0, f)) for n in sizes])
        _log_axes(ax, fmt, "n", "median rel. error / (u kappa)")
    _variant_legend(fig, axes, styles)
    fig.suptitle(
        f"{problem}: error / (u kappa) versus n, inputs with kappa < 10\n"
        f"({_bands_note(styles)}; bounds dashed grey)"
    )
    return fig


def _split_by_size(draw, table: pd.DataFrame, problem: str, stem: str) -> dict[str, plt.Figure]:
    """``draw(table, problem, sizes=..., part=...)`` over the problem's sizes n (one row of
    panels each, one column per format), split so that no figure holds more than MAX_PANELS
    panels: ``<stem>``, ``<stem>_2``, ..."""
    rows = table[table["problem"] == problem]
    sizes = sorted(set(rows["n"].dropna().astype(int)))
    groups = _parts(sizes, MAX_PANELS // max(1, rows["format"].nunique()))
    figures = [
        draw(table, problem, sizes=group, part=_part(k, groups)) for k, group in enumerate(groups)
    ]
    return _numbered(stem, figures)


def lines_versus_condition(
    table: pd.DataFrame,
    problem: str,
    *,
    sizes: list[int] | None = None,
    part: tuple[int, int] | None = None,
) -> plt.Figure:
    """Median relative error / u versus the measured condition number (per decade), one row of
    panels per size n (``sizes``, by default all), with the reference lines at that n."""
    rows = table[table["problem"] == problem]
    data = _line_data(rows, "cond_decade")
    styles = line_styles(rows)
    sizes = sizes or sorted(set(rows["n"].dropna().astype(int)))
    fig, axes, formats = _format_axes(rows, rows=len(sizes))
    for i, n in enumerate(sizes):
        for ax, fmt in zip(axes[i], formats, strict=True):
            panel = data[(data["format"] == fmt) & (data["n"] == n)]
            _draw_lines(ax, panel, "median_cond", "median_err_over_u", styles=styles, fmt=fmt)
            lines, f = REFERENCE_LINES[problem], get_format(fmt)
            kappas = sorted(panel["median_cond"]) or [1.0]
            _draw_references(ax, [(k, lines(n, k, f)) for k in kappas])
            _log_axes(ax, f"{fmt}, n = {n}", "measured condition number", "median rel. error / u")
    _variant_legend(fig, axes, styles)
    fig.suptitle(
        f"{problem}{_part_title(part)}: error versus condition number\n"
        f"({_bands_note(styles)}; reference lines dashed grey)"
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
    """One legend for the figure, of the labelled lines of every panel (each label once)."""
    drawn: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            drawn.setdefault(label, handle)
    fig.legend(list(drawn.values()), list(drawn), loc="outside right center", fontsize=7)


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


# ---------------------------------------------------------------- length and magnitude

VERSUS_LENGTH = ("attention",)
"""Problems whose size n is a sequence length L: error versus L (`length_figures`), one row
of panels per condition decade."""


def length_figures(table: pd.DataFrame, problem: str) -> dict[str, plt.Figure]:
    """`lines_versus_length` by file stem, ``lines_<problem>_n`` (then ``_2``, ...: one row of
    panels per condition decade, at most MAX_PANELS panels per figure)."""
    rows = table[table["problem"] == problem]
    decades = sorted(set(decade(rows["cond"]).dropna().astype(int)))
    groups = _parts(decades, MAX_PANELS // max(1, rows["format"].nunique()))
    data = _line_data(rows, "cond_decade")  # one groupby for every part and panel
    figures = [
        lines_versus_length(table, problem, decades=group, part=_part(k, groups), data=data)
        for k, group in enumerate(groups)
    ]
    return _numbered(f"lines_{problem}_n", figures)


def lines_versus_length(
    table: pd.DataFrame,
    problem: str,
    *,
    decades: list[int] | None = None,
    part: tuple[int, int] | None = None,
    data: pd.DataFrame | None = None,
) -> plt.Figure:
    """Median relative error / u versus the sequence length L (the size column n), one row of
    panels per decade of the measured condition number (``decades``, by default all), one
    column per format, one line per variant (`_draw_lines`: 10-90% bands, seeded families
    pooled, upcasts dashed). Certified ok rows with a finite condition number
    (`precision.report.summary.error_lines`); ``data`` is their `_line_data` by
    ``cond_decade`` where the caller has it.

    Why a row per condition decade rather than one median over all rows: the error of an
    algorithm that is stable in the mixed sense grows like kappa u (attention's first-order
    bound carries kappa through the logits' error, `precision.problems.attention`), so a
    median over rows of every decade moves with the share of ill-conditioned rows at each L,
    not with L. Within a decade the study's grid samples every logit-spread decade equally at
    every L, so the points of one line differ in L alone (and in the measured spread within
    its decades)."""
    rows = table[table["problem"] == problem]
    data = _line_data(rows, "cond_decade") if data is None else data
    styles = line_styles(rows)
    decades = decades or sorted(set(decade(rows["cond"]).dropna().astype(int)))
    fig, axes, formats = _format_axes(rows, rows=len(decades))
    for i, d in enumerate(decades):
        for ax, fmt in zip(axes[i], formats, strict=True):
            panel = data[(data["format"] == fmt) & (data["cond_decade"] == d)]
            _draw_lines(ax, panel.sort_values("n"), "n", "median_err_over_u", styles=styles,
                        fmt=fmt)  # fmt: skip
            _log_axes(ax, f"{fmt}, kappa in [1e{d}, 1e{d + 1})", "sequence length L",
                      "median rel. error / u")  # fmt: skip
            ax.set_xscale("log", base=2)
    _variant_legend(fig, axes, styles)
    fig.suptitle(
        f"{problem}{_part_title(part)}: error versus sequence length L, one row per condition "
        f"decade\n(all certified ok rows, logit spreads pooled; {_bands_note(styles)})"
    )
    return fig


VERSUS_MAGNITUDE = ("gelu", "silu", "layer_norm", "rms_norm")
"""Problems whose failures and errors depend on the input magnitude max |x_i| (the
``magnitude`` column): error versus magnitude decade (`magnitude_figures`)."""

MAGNITUDE_MARKS = {
    "layer_norm": {"sqrt(max): x^2 overflows": lambda f: math.sqrt(f.max)},
    "rms_norm": {"sqrt(max): x^2 overflows": lambda f: math.sqrt(f.max)},
}
"""Problem -> {label: magnitude(format)} drawn as dotted vertical lines beside the format's
largest value (every problem): a norm's sum of squares overflows once one element passes
sqrt(max) (float16: 255.9)."""


WELL_CONDITIONED = 10.0
"""The condition numbers below which the rows of a magnitude figure enter its medians
(`magnitude_figure`): as in `lines_versus_n`, an error that follows kappa u is then read at
one conditioning, whatever the mix of decades the grid sampled at each magnitude."""


def _in_medians(rows: pd.DataFrame) -> pd.Series:
    """The rows a magnitude figure's medians hold: certified ok, 0 < kappa < WELL_CONDITIONED."""
    cond = rows["cond"].astype(float)
    return _certified_ok(rows) & (cond > 0) & (cond < WELL_CONDITIONED)


def magnitude_outcomes(rows: pd.DataFrame) -> pd.DataFrame:
    """Per variant x format x ``magnitude_decade`` (decade of max |x_i| of the rounded input;
    rows with a non-finite magnitude, an input that overflowed, have none and are left out:
    `_unbinned_note` counts them), over rows of every condition number: ``rows``, ``failed``
    (outcomes of `FAILURES`), ``failed_share`` = failed / rows, and ``ok``, the rows the
    medians hold (`_in_medians`): where it is 0 the line has no point."""
    flagged = rows.assign(
        magnitude_decade=decade(rows["magnitude"]),
        _failed=rows["outcome"].isin(FAILURES),
        _ok=_in_medians(rows),
    )
    grouped = flagged.groupby(["variant", "format", "magnitude_decade"], observed=True, sort=True)
    out = grouped.agg(rows=("outcome", "size"), failed=("_failed", "sum"), ok=("_ok", "sum"))
    out["failed_share"] = out["failed"] / out["rows"]
    return out.reset_index()


def magnitude_lines(rows: pd.DataFrame) -> pd.DataFrame:
    """`_line_data` per variant x format x ``magnitude_decade`` over the rows of every size n
    together that `_in_medians` admits, with ``median_magnitude``, the median max |x_i| of
    the same rows: the x of each point."""
    pooled = rows.assign(n=np.nan)
    pooled = pooled[_in_medians(pooled)]
    data = _line_data(pooled, "magnitude_decade")
    usable = _pooled(pooled)
    where = usable.assign(magnitude_decade=decade(usable["magnitude"]))
    grouped = where.groupby(["variant", "format", "magnitude_decade"], observed=True)
    medians = grouped["magnitude"].median().rename("median_magnitude").reset_index()
    return data.merge(medians, on=["variant", "format", "magnitude_decade"], how="left")


def magnitude_figures(table: pd.DataFrame, problem: str) -> dict[str, plt.Figure]:
    """`magnitude_figure` by file stem, ``lines_<problem>_magnitude`` (then ``_2``, ...: at
    most MAX_BOXES variants, one strip row each, per figure)."""
    rows = table[table["problem"] == problem]
    pooled = _pooled(rows)
    groups = _parts(list(dict.fromkeys(pooled["variant"])), MAX_BOXES)
    lines, outcomes = magnitude_lines(rows), magnitude_outcomes(pooled)
    figures = [
        magnitude_figure(
            table, problem, variants=group, part=_part(k, groups), lines=lines, outcomes=outcomes
        )  # fmt: skip
        for k, group in enumerate(groups)
    ]
    return _numbered(f"lines_{problem}_magnitude", figures)


def magnitude_figure(
    table: pd.DataFrame,
    problem: str,
    *,
    variants: list[str] | None = None,
    part: tuple[int, int] | None = None,
    lines: pd.DataFrame | None = None,
    outcomes: pd.DataFrame | None = None,
) -> plt.Figure:
    """Median relative error / u versus the input magnitude max |x_i| per decade, one panel per
    format, one line per variant (``variants``: pooled names, by default all; `_draw_lines`),
    each point at the median magnitude of its rows, sizes n pooled. The medians hold the
    certified ok rows with kappa < WELL_CONDITIONED (`_in_medians`): a failed row (overflow,
    nan, underflow, ...) has no error to take a median of, and rows of larger kappa would make
    the line follow the share of ill-conditioned rows in each decade (LayerNorm's error grows
    like kappa u, and its grid reaches kappa = 1e6) rather than the magnitude.

    Under each panel a strip with one row per variant and one cell per decade gives the share
    of the decade's rows that failed (`magnitude_outcomes`): white where none did, red as the
    share grows, with the percentage written (over rows of every kappa); hatched where the
    decade holds no row the medians admit, so the line has no point there; grey where the
    variant has no rows. A line that stops
    therefore always stands over a strip that says why. Dotted verticals: the format's largest
    value and `MAGNITUDE_MARKS`."""
    rows = table[table["problem"] == problem]
    pooled = _pooled(rows)
    lines = magnitude_lines(rows) if lines is None else lines
    outcomes = magnitude_outcomes(pooled) if outcomes is None else outcomes
    variants = variants or list(dict.fromkeys(pooled["variant"]))
    styles = line_styles(rows)
    fig, panels, formats = _strip_axes(rows, strips=len(variants))
    span = _decades(outcomes["magnitude_decade"].astype(float))
    limits = (10.0 ** span[0], 10.0 ** (span[-1] + 1))
    for (ax, strip), fmt in zip(panels, formats, strict=True):
        panel = lines[(lines["format"] == fmt) & lines["variant"].isin(variants)]
        _draw_lines(ax, panel.sort_values("median_magnitude"), "median_magnitude",
                    "median_err_over_u", styles=styles, fmt=fmt)  # fmt: skip
        _draw_magnitude_marks(ax, problem, fmt, limits)
        title = fmt + _unbinned_note(pooled[pooled["format"] == fmt])
        _log_axes(ax, title, "", "median rel. error / u")
        ax.set_xlim(limits)
        _draw_failure_strip(strip, outcomes[outcomes["format"] == fmt], variants, styles)
        strip.set_xlim(limits)
        strip.set_xlabel("max |x_i| of the rounded input", fontsize=8)
    _variant_legend(fig, [ax for ax, _ in panels], styles)
    fig.suptitle(
        f"{problem}{_part_title(part)}: error versus input magnitude, certified ok rows with "
        f"kappa < {WELL_CONDITIONED:g}, sizes pooled\n({_bands_note(styles)}; dotted: format "
        "max and limits)\nstrips: share of each decade's rows (every kappa) that failed; "
        "hatched: no row in the medians, so no point; grey: no rows",
        fontsize=10,
    )
    return fig


def _strip_axes(rows: pd.DataFrame, *, strips: int):
    """A figure with one column per format of ``rows`` (table order; more than four wrap over
    lines of at most three), each a line panel over a failure strip of ``strips`` rows sharing
    its x axis. Returns the figure, [(panel, strip)] per format, and the formats."""
    formats = list(dict.fromkeys(rows["format"]))
    columns = math.ceil(len(formats) / math.ceil(len(formats) / 3)) if len(formats) > 4 else 0
    columns = columns or max(1, len(formats))
    lines = math.ceil(len(formats) / columns)
    strip_height = 0.16 * strips + 0.5
    width = min(3.4, (FIGURE_WIDTH - 2.5) / columns)
    fig, axes = plt.subplots(
        2 * lines,
        columns,
        figsize=(width * columns + 2.5, lines * (3.0 + strip_height) + 1.2),
        squeeze=False,
        height_ratios=[3.0, strip_height] * lines,
        layout="constrained",
    )
    pairs = [(axes[2 * (k // columns)][k % columns], axes[2 * (k // columns) + 1][k % columns])
             for k in range(lines * columns)]  # fmt: skip
    for ax, strip in pairs[len(formats) :]:
        ax.set_visible(False)
        strip.set_visible(False)
    for ax, strip in pairs[: len(formats)]:
        strip.sharex(ax)
    return fig, pairs[: len(formats)], formats


def _draw_failure_strip(
    ax, outcomes: pd.DataFrame, variants: list[str], styles: LineStyles
) -> None:
    """One format's failure strip (`magnitude_figure`): a row per variant (top to bottom, its
    tick a dot in its colour), a cell per magnitude decade coloured by the failed share."""
    ax.set_facecolor("0.88")  # no rows: grey
    reds = plt.get_cmap("Reds")
    for i, variant in enumerate(variants):
        for r in outcomes[outcomes["variant"] == variant].itertuples(index=False):
            low, high = 10.0 ** int(r.magnitude_decade), 10.0 ** (int(r.magnitude_decade) + 1)
            share = float(r.failed_share)
            ax.add_patch(
                Rectangle(
                    (low, i - 0.5),
                    high - low,
                    1.0,
                    facecolor=reds(0.2 + 0.6 * share) if share else "white",
                    hatch="///" if not r.ok else None,
                    edgecolor="0.6",
                    linewidth=0.3,
                    gid=f"failed {variant} {int(r.magnitude_decade)}",
                )
            )
            if r.failed:
                ax.text(math.sqrt(low * high), i, _share(share), ha="center", va="center",
                        fontsize=6, bbox=_LABEL_BOX)  # fmt: skip
    ax.set_ylim(len(variants) - 0.5, -0.5)
    ax.set_yticks(range(len(variants)), ["●"] * len(variants), fontsize=7)
    for label, variant in zip(ax.get_yticklabels(), variants, strict=True):
        label.set_color(styles.colours.get(variant, (0.5, 0.5, 0.5)))
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylabel("failed", fontsize=7)


_LABEL_BOX = {"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 0.6}
"""A white ground under a strip cell's percentage: readable over red and over hatching."""


def _draw_magnitude_marks(ax, problem: str, fmt: str, limits: tuple[float, float]) -> None:
    """Dotted verticals at the format's largest value and at `MAGNITUDE_MARKS` of the problem,
    where they fall inside ``limits``."""
    f = get_format(fmt)
    marks = {"format max": f.max} | {
        label: where(f) for label, where in MAGNITUDE_MARKS.get(problem, {}).items()
    }
    for style, (label, x) in zip((":", (0, (1, 3))), marks.items(), strict=False):
        if limits[0] <= x <= limits[1]:
            ax.axvline(x, linestyle=style, color="0.35", linewidth=1, label=label)


def _unbinned_note(rows: pd.DataFrame) -> str:
    """The panel title's note on rows with a non-finite magnitude (the input overflowed when it
    was rounded to the format: outcome input_overflow), which no decade holds: never dropped
    in silence. "" where there are none."""
    magnitude = rows["magnitude"].astype(float)
    unbinned = rows[~np.isfinite(magnitude)]
    if unbinned.empty:
        return ""
    outcomes = ", ".join(f"{k} {v}" for k, v in unbinned["outcome"].value_counts().items())
    return f"\n({len(unbinned)} rows with |x| = inf not binned: {outcomes})"


def study_figures(
    table: pd.DataFrame, companions: dict[str, pd.DataFrame] | None = None
) -> dict[str, plt.Figure]:
    """Every figure of a study, by file stem, from its rows and its stored companion tables
    (`precision.run.study.companion_tables`: the convergence curves): per problem its heatmaps
    and, beside them, its distributions (``distributions_<problem>``, but for
    `NO_DISTRIBUTION`), then the line figures. A figure split at MAX_PANELS panels (or
    MAX_BOXES boxes) continues as ``<stem>_2``, ``<stem>_3``, ..."""
    problems = list(dict.fromkeys(table["problem"]))
    mapped = [p for p in problems if p not in STEP_SWEEPS]
    cells = heatmap_cells(table[table["problem"].isin(mapped)])  # once for every heatmap
    scale = colour_scale(cells)
    figures = {}
    for p in mapped:
        figures |= heatmap_figures(table, p, scale, cells=cells)
        if p not in NO_DISTRIBUTION:
            figures |= distribution_figures(table, p)
    figures |= optimisation_figures(table)
    if companions and "convergence" in companions:
        figures |= convergence_figures(companions["convergence"])
    if "dot" in problems:
        figures["lines_dot_n"] = accumulator_figure(table)
    for p in problems:
        if p in VERSUS_N:
            figures[f"lines_{p}_n"] = lines_versus_n(table, p)
        if p in REFERENCE_LINES:
            figures |= _split_by_size(lines_versus_condition, table, p, f"lines_{p}_kappa")
        if p in linalg.LINEAR_ALGEBRA_PROBLEMS:
            figures |= _split_by_size(linear_algebra_lines, table, p, f"lines_{p}_kappa")
        if p in VERSUS_LENGTH:
            figures |= length_figures(table, p)
        if p in VERSUS_MAGNITUDE:
            figures |= magnitude_figures(table, p)
    return figures


# ---------------------------------------------------------------- report figures


def bound_lines_versus_condition(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Median relative error / u versus the measured condition number (per decade, rows of
    every size n together), one panel per format, one line per variant (`_draw_lines`: bands,
    seeds and upcasts as in every line figure), with the median of the rows' own first-order
    bounds (the ``bound`` column, / u) in the same colour, dotted, where the variant has one.
    Certified ok rows with a finite condition number only
    (`precision.report.summary.error_lines`)."""
    # Sizes pooled (n missing): one point per condition decade, the median and the band over
    # the rows of every size.
    rows = table[table["problem"] == problem].assign(n=np.nan)
    data = _line_data(rows, "cond_decade")
    bounds = _median_bounds(_pooled(rows))
    styles = line_styles(rows)
    fig, axes, formats = _format_axes(rows)
    for ax, fmt in zip(axes[0], formats, strict=True):
        panel = data[data["format"] == fmt]
        _draw_lines(ax, panel, "median_cond", "median_err_over_u", styles=styles, fmt=fmt)
        for variant in panel["variant"].unique():
            bound = bounds[(bounds["format"] == fmt) & (bounds["variant"] == variant)]
            if len(bound):
                ax.plot(
                    bound["median_cond"],
                    bound["median_bound_over_u"],
                    linestyle=(0, (1, 1.5)),
                    linewidth=1.2,
                    color=styles.colours[variant],
                    label=f"{variant} bound",
                )
        _log_axes(ax, fmt, "measured condition number", "median rel. error / u")
    _variant_legend(fig, axes, styles)
    fig.suptitle(
        f"{problem}: error versus condition number (dotted: the rows' own bounds)\n"
        f"({_bands_note(styles)})"
    )
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
    if rows.empty:  # no finite bound: nothing to draw (an empty map would not divide)
        columns = ["variant", "format", "cond_decade", "median_bound_over_u", "median_cond"]
        return pd.DataFrame(columns=columns)
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


def step_sweep_figures(table: pd.DataFrame, problem: str) -> dict[str, plt.Figure]:
    """`step_sweep_figure` by file stem, ``steps_<problem>`` (then ``_2``, ...: two panels per
    method, at most MAX_PANELS per figure)."""
    rows = table[(table["problem"] == problem) & table["h"].notna()]
    groups = _parts(list(dict.fromkeys(rows["variant"])), MAX_PANELS // 2)
    figures = [
        step_sweep_figure(table, problem, methods=group, part=_part(k, groups))
        for k, group in enumerate(groups)
    ]
    return _numbered(f"steps_{problem}", figures)


def step_sweep_figure(
    table: pd.DataFrame,
    problem: str,
    *,
    methods: list[str] | None = None,
    part: tuple[int, int] | None = None,
) -> plt.Figure:
    """Top row: the V curve per method (``methods``, by default all), median relative error
    over the inputs versus h, one line per format, with the textbook optimum (2 sqrt(u)
    forward, (3u)^(1/3) central) dotted. Bottom row: the same medians as a heatmap of log10
    error, h (columns) x format (rows)."""
    from precision.problems.derivatives import theoretical_optimum

    # Variants without a step (a user's kernel of the same problem) have no place on an h axis.
    rows = table[(table["problem"] == problem) & table["h"].notna()]
    rows = rows.assign(method=rows["variant"])
    # Sorted (groupby's default), so that .loc on a (method, format) prefix is lexsorted.
    medians = rows.groupby(["method", "format", "h"])["rel_error"].median()
    methods = methods or list(dict.fromkeys(rows["method"]))
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
    fig.suptitle(
        f"{problem}{_part_title(part)}: error versus step size (dotted: theoretical optimum)"
    )
    return fig


def convergence_figures(curves: pd.DataFrame) -> dict[str, plt.Figure]:
    """`convergence_figure` by file stem, ``convergence_quadratic`` (then ``_2``, ...: one row
    of panels per condition number, at most MAX_PANELS panels per figure)."""
    kappas = list(dict.fromkeys(curves["kappa"]))
    groups = _parts(kappas, MAX_PANELS // max(1, curves["format"].nunique()))
    figures = [
        convergence_figure(curves, kappas=group, part=_part(k, groups))
        for k, group in enumerate(groups)
    ]
    return _numbered("convergence_quadratic", figures)


def convergence_figure(
    curves: pd.DataFrame,
    *,
    kappas: list[float] | None = None,
    part: tuple[int, int] | None = None,
) -> plt.Figure:
    """Error versus iteration per format (columns) and condition number (rows: ``kappas``, by
    default all), one line per variant, from `precision.problems.quadratic.convergence_table`."""
    curves = labelled(curves)
    kappas = kappas or list(dict.fromkeys(curves["kappa"]))
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
    fig.suptitle(
        f"Gradient descent{_part_title(part)}: error versus iteration (dotted: u of the format)"
    )
    return fig


def accuracy_versus_condition(table: pd.DataFrame, problem: str) -> plt.Figure:
    """Median relative error / u versus the measured kappa (per decade), one line per variant
    and a panel per format, with kappa (the first-order forward error of a backward-stable
    solve, in units of u) dashed. Rows of every outcome but overflow / nan count (a capped
    run's floor is its accuracy). Seeded families are one line, upcasts dashed and hollow
    (`line_styles`)."""
    mine = table[(table["problem"] == problem) & ~table["outcome"].isin(["overflow", "nan"])]
    styles = line_styles(mine)
    rows = _pooled(mine)
    rows = rows.assign(decade=np.floor(np.log10(rows["cond"].astype(float))))
    data = (
        rows.groupby(["format", "variant", "decade"], sort=False)
        .agg(median_cond=("cond", "median"), median_err_over_u=("err_over_u", "median"))
        .reset_index()
    )
    fig, axes, formats = _format_axes(rows)
    for ax, fmt in zip(axes[0], formats, strict=True):
        panel = data[data["format"] == fmt]
        _draw_lines(ax, panel, "median_cond", "median_err_over_u", styles=styles, fmt=fmt)
        kappas = sorted(panel["median_cond"]) or [1.0]
        ax.plot(kappas, kappas, "--", color="0.3", linewidth=1, label="kappa")
        _log_axes(ax, fmt, "measured kappa(H)", "median rel. error / u")
    _variant_legend(fig, axes, styles)
    fig.suptitle(f"{problem}: attainable accuracy versus condition number")
    return fig


def optimisation_figures(table: pd.DataFrame) -> dict[str, plt.Figure]:
    """The step-sweep figures of the finite-difference problems, and for the quadratic the
    accuracy-versus-kappa lines (its convergence curves come from the stored companion table:
    `study_figures`)."""
    problems = list(dict.fromkeys(table["problem"]))
    # A table stored before ``h`` was a column has it missing (results names it stale): no V.
    stepped = set(table.loc[table["h"].notna(), "problem"])
    figures = {}
    for p in problems:
        if p in STEP_SWEEPS and p in stepped:
            figures |= step_sweep_figures(table, p)
    if "critical_point" in problems:
        figures |= misclassification_figures(table)
    if "quadratic" in problems:
        figures["lines_quadratic_kappa"] = accuracy_versus_condition(table, "quadratic")
    return figures


def misclassification_figures(
    table: pd.DataFrame, problem: str = "critical_point"
) -> dict[str, plt.Figure]:
    """`misclassification_figure` by file stem, ``misclassified_<problem>`` (then ``_2``, ...:
    whole variants per figure, at most MAX_PANELS facets each)."""
    variants = list(dict.fromkeys(labelled(table[table["problem"] == problem])["variant"]))
    groups = _parts(variants, MAX_PANELS // max(1, table["format"].nunique()))
    figures = [
        misclassification_figure(table, problem, variants=group, part=_part(k, groups))
        for k, group in enumerate(groups)
    ]
    return _numbered(f"misclassified_{problem}", figures)


def misclassification_figure(
    table: pd.DataFrame,
    problem: str = "critical_point",
    *,
    variants: list[str] | None = None,
    part: tuple[int, int] | None = None,
) -> plt.Figure:
    """The fraction of inputs whose critical point is misclassified (rel_error > 0: a sign of
    the sorted eigenvalue signs is wrong) per cell of measured condition number x magnitude
    decades, one facet per variant (``variants``: labelled names, by default all) x format;
    unsupported rows are left out (blank facet)."""
    table = labelled(table)
    rows = table[(table["problem"] == problem) & (table["outcome"] != "unsupported")]
    rows = rows.assign(
        cond_decade=np.floor(np.log10(rows["cond"].astype(float))),
        magnitude_decade=np.floor(np.log10(rows["magnitude"].astype(float))),
        wrong=(rows["rel_error"].astype(float) > 0) | rows["rel_error"].isna(),
    )
    variants = variants or list(dict.fromkeys(table.loc[table["problem"] == problem, "variant"]))
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
    fig.suptitle(
        f"{problem}{_part_title(part)}: misclassification rate versus kappa = ||H|| / min |lambda|"
    )
    return fig


# ---------------------------------------------------------------- linear algebra


def linear_algebra_lines(
    table: pd.DataFrame,
    problem: str,
    *,
    sizes: list[int] | None = None,
    part: tuple[int, int] | None = None,
) -> plt.Figure:
    """Median relative error / u versus the measured condition number (per decade) of a
    linear-algebra problem, one row of panels per size n (``sizes``, by default all) and one
    column per format, with the reference lines kappa u (backward stable solvers) and
    kappa^2 u (normal equations) dashed grey (`precision.problems.linalg.reference_lines`, cut
    where the error would pass 10).

    Each variant keeps one colour in every panel (a library variant has no rows in a format it
    refuses), and a variant whose rows computed in a wider dtype is drawn dashed with hollow
    markers in that format and says so in the legend, e.g. "numpy_solve (upcast:
    bfloat16->float64, float32->float64)": its line lies far below the format's u because it
    is not a result of that format. Certified ok rows only (`error_lines`), with their 10-90%
    band.
    """
    rows = table[table["problem"] == problem]
    data = _line_data(rows, "cond_decade")
    styles = line_styles(rows)
    sizes = sizes or sorted(set(rows["n"].dropna().astype(int)))
    fig, axes, formats = _format_axes(rows, rows=len(sizes))
    for i, n in enumerate(sizes):
        for ax, fmt in zip(axes[i], formats, strict=True):
            panel = data[(data["format"] == fmt) & (data["n"] == n)]
            _draw_lines(ax, panel, "median_cond", "median_err_over_u", styles=styles, fmt=fmt)
            kappas = sorted(panel["median_cond"]) or [1.0]
            _draw_references(
                ax, [(k, linalg.reference_lines(n, k, get_format(fmt))) for k in kappas]
            )
            _log_axes(ax, f"{fmt}, n = {n}", "measured condition number", "median rel. error / u")
    _variant_legend(fig, axes, styles)
    fig.suptitle(
        f"{problem}{_part_title(part)}: error versus condition number\n"
        f"({_bands_note(styles)}; kappa u and kappa^2 u dashed grey)"
    )
    return fig


def _upcast_label(rows: pd.DataFrame, variant: str) -> str:
    """The variant's name, with the formats whose rows it computed in another dtype:
    ``numpy_solve (upcast: bfloat16->float64, float32->float64)``, and how many of the rows that
    returned a result, where not all were upcast (``float32->float64 11 of 256``)."""
    if "compute_dtype" not in rows:
        return variant
    mine = rows[(rows["variant"] == variant) & (rows["compute_dtype"].fillna("") != "")]
    returned = mine.groupby(["format", "compute_dtype"], observed=True).size()
    per_format = returned.groupby(level="format", observed=True).sum()
    upcasts = [
        f"{f}->{d}" + (f" {k} of {per_format[f]}" if k < per_format[f] else "")
        for (f, d), k in returned.sort_index().items()
        if f != d
    ]
    return f"{variant} (upcast: {', '.join(upcasts)})" if upcasts else variant


# ---------------------------------------------------------------- distributions

MAX_BOXES = 12
"""Most boxes (variants) in one panel of a distribution figure: a problem with more variants is
split over several figures (``distributions_<problem>``, ``distributions_<problem>_2``, ...)."""

NO_DISTRIBUTION = (*STEP_SWEEPS, "critical_point")
"""Problems without a distribution figure: the step sweeps (one variant per method and h,
whose V curves show the spread) and critical_point (its error is 0, 1 or 2: right or wrong; its
figure is the misclassification rate)."""


def _certified_ok(rows: pd.DataFrame) -> pd.Series:
    """The rows whose error a distribution holds: outcome ok and certified ground truth
    (failed, exact-zero and uncertified rows have no relative error to show)."""
    return (rows["outcome"] == "ok") & rows["certified"].fillna(False).astype(bool)


def distribution_measure(rows: pd.DataFrame) -> tuple[pd.Series, bool]:
    """Each row's log10(err_over_u / max(kappa, 1)), the error over what conditioning forces
    (the heatmaps' measure: a perturbation of the input by u moves the exact result by about
    kappa u, and rounding the result costs u even where kappa < 1), where every certified ok
    row of ``rows`` has a finite condition number; else log10(err_over_u). Clipped below at
    FLOOR (an error of 0, a correctly rounded result, would be -inf); NaN outside the certified
    ok rows. The second value says whether kappa divides."""
    usable = _certified_ok(rows)
    cond = pd.to_numeric(rows["cond"], errors="coerce").astype(float)
    per_kappa = bool(usable.any()) and bool(np.isfinite(cond[usable]).all())
    ratio = rows["err_over_u"].astype(float)
    if per_kappa:
        ratio = ratio / np.maximum(cond, 1.0)
    return np.log10(ratio.clip(lower=10.0**FLOOR)).where(usable), per_kappa


BOX_QUANTILES = {"low": BAND[0], "q1": 0.25, "median": 0.5, "q3": 0.75, "high": BAND[1]}
"""The quantiles a box is drawn from: whiskers at the line plots' band (10% and 90%), box at
the quartiles (pandas' linear interpolation, as in `precision.report.summary.error_lines`)."""


def box_stats(table: pd.DataFrame, problem: str) -> pd.DataFrame:
    """Per variant (seeded families pooled: `_pooled`) x format of ``problem``, in table order,
    every pair present (a pair with no rows too): ``rows``, ``failed`` (outcomes of
    `FAILURES`), ``exact_zero``, ``failed_share`` = failed / rows; over the certified ok rows
    (`distribution_measure`): their number ``ok``, the `BOX_QUANTILES` and the ``lowest`` and
    ``highest`` value; ``absent``, why no box is drawn where ok is 0 ("" where one is); and
    ``upcast``, the dtypes the rows returned other than their format. Failed rows never enter
    the quantiles: they only raise ``failed_share``."""
    rows = _pooled(table[table["problem"] == problem])
    rows = rows.assign(_value=distribution_measure(rows)[0])
    groups = dict(list(rows.groupby(["variant", "format"], sort=False)))
    variants = list(dict.fromkeys(rows["variant"]))
    formats = list(dict.fromkeys(table["format"]))
    records = []
    for variant in variants:
        for fmt in formats:
            group = groups.get((variant, fmt), rows.iloc[:0])
            records.append({"variant": variant, "format": fmt, **_box_record(group, fmt)})
    return pd.DataFrame.from_records(records)


def _box_record(group: pd.DataFrame, fmt: str) -> dict:
    """The `box_stats` columns of one variant x format."""
    values = group["_value"].dropna()
    failed = int(group["outcome"].isin(FAILURES).sum())
    returned = (
        set(group["compute_dtype"].dropna().astype(str)) if "compute_dtype" in group else set()
    )
    record = {
        "rows": len(group),
        "failed": failed,
        "exact_zero": int((group["outcome"] == EXACT_ZERO).sum()),
        "failed_share": failed / len(group) if len(group) else np.nan,
        "ok": len(values),
        "absent": "" if len(values) else _absence(group),
        "upcast": ", ".join(sorted(returned - {fmt, ""})),
    }
    for name, q in BOX_QUANTILES.items():
        record[name] = float(values.quantile(q)) if len(values) else np.nan
    record["lowest"] = float(values.min()) if len(values) else np.nan
    record["highest"] = float(values.max()) if len(values) else np.nan
    return record


def _absence(group: pd.DataFrame) -> str:
    """Why a variant x format has no certified ok row, in a few words: not run; every row
    failed (with the outcomes and their counts); or the counts of what its rows were."""
    if group.empty:
        return "not run"
    outcomes = group["outcome"].value_counts()
    failed = [f"{name} {int(outcomes[name])}" for name in FAILURES if name in outcomes.index]
    if group["outcome"].isin(FAILURES).all():
        kinds = [name for name in FAILURES if name in outcomes.index]
        named = kinds[0] if len(kinds) == 1 else ", ".join(failed)
        return f"all {len(group)} rows failed ({named})"
    uncertified = int(((group["outcome"] == "ok") & ~_certified_ok(group)).sum())
    other = [f"exact 0 {int(outcomes.get(EXACT_ZERO, 0))}"] if EXACT_ZERO in outcomes else []
    other += [f"uncertified {uncertified}"] if uncertified else []
    return f"none certified ok of {len(group)}: {', '.join(failed + other)}"


def _share(fraction: float) -> str:
    """A share as a percentage that never rounds a few rows to 0% or most to 100%."""
    if 0 < fraction < 0.01:
        return "<1%"
    if 0.99 < fraction < 1:
        return ">99%"
    return f"{100 * fraction:.0f}%"


def _box_note(record) -> str:
    """The text beside a box: its rows (n), the share of the pair's rows that failed, rows whose
    exact result is 0, and the dtype an upcasting library returned."""
    note = f"n={int(record.ok)}"
    if record.failed:
        note += f", {_share(record.failed_share)} failed"
    if record.exact_zero:
        note += f", {int(record.exact_zero)} exact 0"
    if record.upcast:
        note += f", returns {record.upcast}"
    return note


def distribution_figures(table: pd.DataFrame, problem: str) -> dict[str, plt.Figure]:
    """The distribution figures of one problem by file stem (`distribution_figure`):
    ``distributions_<problem>``, then ``_2``, ... when it has more than MAX_BOXES variants (or
    more than MAX_PANELS formats). Every part has the same x axis, so parts compare."""
    mine = table[table["problem"] == problem]
    stats = box_stats(table, problem)
    per_kappa = distribution_measure(_pooled(mine))[1]
    styles = line_styles(mine)
    limits = _box_limits(stats)
    pieces = list(
        itertools.product(
            _parts(list(dict.fromkeys(stats["variant"])), MAX_BOXES),
            _parts(list(dict.fromkeys(stats["format"])), MAX_PANELS),
        )
    )
    figures = [
        distribution_figure(
            stats,
            problem,
            variants=variants,
            formats=formats,
            per_kappa=per_kappa,
            styles=styles,
            limits=limits,
            part=_part(k, pieces),
        )
        for k, (variants, formats) in enumerate(pieces)
    ]
    return _numbered(f"distributions_{problem}", figures)


def _box_limits(stats: pd.DataFrame) -> tuple[float, float]:
    """The x range of a problem's distribution figures: every box and dot, and 0 (the error
    conditioning forces), with a margin."""
    drawn = stats.loc[stats["ok"] > 0, ["lowest", "highest"]].to_numpy(dtype=float)
    low = min(float(drawn.min()), 0.0) if drawn.size else FLOOR
    high = max(float(drawn.max()), 0.0) if drawn.size else 1.0
    margin = 0.05 * max(high - low, 1.0)
    return low - margin, high + margin


def distribution_figure(
    stats: pd.DataFrame,
    problem: str,
    *,
    variants: list[str],
    formats: list[str],
    per_kappa: bool,
    styles: LineStyles,
    limits: tuple[float, float],
    part: tuple[int, int] | None = None,
) -> plt.Figure:
    """Box plots of `distribution_measure` from `box_stats`: one panel per format, one box
    per variant (``variants``, top to bottom) in its line colour (hollow and dashed where it
    computed in a wider dtype), whiskers at 10% and 90%, dots at the smallest and largest value;
    beside each box its row count and share of failed rows (`_box_note`); a pair without
    certified ok rows labelled absent with the reason, never drawn as a box."""
    columns = math.ceil(len(formats) / math.ceil(len(formats) / 3))
    lines = math.ceil(len(formats) / columns)
    fig, axes = plt.subplots(
        lines,
        columns,
        figsize=(2.4 + 3.4 * columns, lines * (0.3 * len(variants) + 0.9) + 1.4),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    for ax, fmt in zip(axes.flat, formats, strict=False):
        panel = stats[stats["format"] == fmt].set_index("variant").reindex(variants)
        _draw_boxes(ax, panel, styles=styles, fmt=fmt, limits=limits)
    measure = "log10(rel. error / (kappa u))" if per_kappa else "log10(rel. error / u)"
    _label_bottom_panels(axes, len(formats), measure)
    reference = "dotted: error = kappa u" if per_kappa else "dotted: error = u"
    fig.suptitle(
        f"{problem}{_part_title(part)}: distribution of {measure} over certified ok rows"
        + (" (kappa floored at 1)" if per_kappa else "")
        + "\nbox: quartiles and median; whiskers: 10% and 90%; dots: smallest and largest; "
        f"errors below 1e{FLOOR:.0f} drawn at {FLOOR:.0f}; {reference}\n"
        "beside each box: n = certified ok rows in it, the share of all its rows that failed",
        fontsize=9,
    )
    return fig


def _draw_boxes(
    ax, panel: pd.DataFrame, *, styles: LineStyles, fmt: str, limits: tuple[float, float]
) -> None:
    """One format's panel of `distribution_figure`: ``panel`` holds the `box_stats` of its
    variants (index), top to bottom."""
    positions = np.arange(len(panel))
    present = panel[panel["ok"].fillna(0) > 0]
    if len(present):
        boxes = [
            {
                "med": r.median,
                "q1": r.q1,
                "q3": r.q3,
                "whislo": r.low,
                "whishi": r.high,
                "fliers": np.array([r.lowest, r.highest]),
            }
            for r in present.itertuples()
        ]
        drawn = ax.bxp(
            boxes,
            positions=positions[panel.index.get_indexer(present.index)],
            orientation="horizontal",
            widths=0.6,
            patch_artist=True,
            manage_ticks=False,
            medianprops={"color": "black", "linewidth": 1.2, "gid": "median"},
            flierprops={"marker": "o", "markersize": 2.5, "markerfacecolor": "0.2"},
        )
        for box, variant in zip(drawn["boxes"], present.index, strict=True):
            _style_box(box, styles, variant, fmt)
    side = blended_transform_factory(ax.transAxes, ax.transData)
    for position, (_, record) in zip(positions, panel.iterrows(), strict=True):
        if not record["ok"] > 0:
            reason = record["absent"] if isinstance(record["absent"], str) else "not run"
            ax.text(0.5, position, f"absent: {reason}", transform=side, ha="center",
                    va="center", fontsize=6.5, color="0.35", style="italic")  # fmt: skip
    ax.axvline(0.0, color="0.5", linestyle=":", linewidth=0.8)
    ax.set_xlim(limits)
    ax.set_yticks(positions, [str(v) for v in panel.index], fontsize=7)
    ax.set_ylim(len(panel) - 0.5, -0.5)  # the first variant on top
    ax.set_title(fmt, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    notes = ax.twinx()  # the counts, right of the panel: never over a box
    notes.set_ylim(ax.get_ylim())
    notes.set_yticks(positions, [_box_note(r) for r in _notes_records(panel)], fontsize=6)
    notes.tick_params(axis="y", length=0)


def _notes_records(panel: pd.DataFrame):
    """The rows of ``panel`` as records for `_box_note` (a variant never run in this format has
    no counts: zeros)."""
    filled = panel.fillna({"ok": 0, "failed": 0, "exact_zero": 0, "failed_share": 0})
    return filled.fillna({"upcast": ""}).itertuples()


def _style_box(box, styles: LineStyles, variant: str, fmt: str) -> None:
    """A box in its variant's colour; hollow with a dashed edge where the rows computed in a
    wider dtype (their errors are not errors of this format)."""
    colour = styles.colours.get(variant, (0.5, 0.5, 0.5))
    upcast = (variant, fmt) in styles.upcast
    box.set_facecolor("none" if upcast else (*colour[:3], 0.55))
    box.set_edgecolor(colour)
    box.set_linestyle("--" if upcast else "-")


def _label_bottom_panels(axes, used: int, label: str) -> None:
    """Hide the unused panels of the grid and label the x axis of each column's lowest panel
    (which sharing had left without tick labels where the panel below it is unused)."""
    flat = list(axes.flat)
    for ax in flat[used:]:
        ax.set_visible(False)
    columns = axes.shape[1]
    for column in range(columns):
        lowest = max(i for i in range(column, used, columns)) if column < used else None
        if lowest is not None:
            flat[lowest].xaxis.set_tick_params(labelbottom=True)
            flat[lowest].set_xlabel(label, fontsize=8)
