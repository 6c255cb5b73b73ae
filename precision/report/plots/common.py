"""What every figure of the report shares: splitting at MAX_PANELS panels (MAX_BOXES boxes),
facet grids, line styles (seeded families pooled into one line with a band, upcasting library
variants dashed and hollow), the line data with their bands, legends and log axes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import LogLocator, NullFormatter

from precision.report.summary import (
    error_lines,
    labelled,
)

MAX_PANELS = 24
"""Most panels in one heatmap figure: a problem with more variants x formats is split over
several figures (``heatmap_<problem>``, ``heatmap_<problem>_2``, ...), each legible at 1400 px."""


MAX_BOXES = 12
"""Most boxes (variants) in one panel of a distribution figure: a problem with more variants is
split over several figures (``distributions_<problem>``, ``distributions_<problem>_2``, ...)."""


MAX_TICK_LABELS = 8
"""Most labelled ticks on a heatmap axis: longer axes label every k-th decade."""


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


def split_figures(stem: str, items: list, per_part: int, draw) -> dict[str, plt.Figure]:
    """``draw(group, part)`` for each group of at most ``per_part`` of ``items`` (variants,
    sizes, decades: whole rows of panels), by file stem ``<stem>``, ``<stem>_2``, ...; ``part``
    is (k, groups) for a title where the figure was split, else None (`_part`)."""
    groups = _parts(items, per_part)
    return _numbered(stem, [draw(group, _part(k, groups)) for k, group in enumerate(groups)])


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


def _thinned(decades: list[int]) -> list[str]:
    """Tick labels of a decade axis, every k-th one shown so that at most MAX_TICK_LABELS are
    (labels of 2 or 3 characters run together otherwise: "9101112")."""
    step = -(-len(decades) // MAX_TICK_LABELS)
    return [str(d) if d % step == 0 else "" for d in decades]


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


_LABEL_BOX = {"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 0.6}
"""A white ground under a strip cell's percentage: readable over red and over hatching."""


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


def _certified_ok(rows: pd.DataFrame) -> pd.Series:
    """The rows whose error a distribution holds: outcome ok and certified ground truth
    (failed, exact-zero and uncertified rows have no relative error to show)."""
    return (rows["outcome"] == "ok") & rows["certified"].fillna(False).astype(bool)


def _share(fraction: float) -> str:
    """A share as a percentage that never rounds a few rows to 0% or most to 100%."""
    if 0 < fraction < 0.01:
        return "<1%"
    if 0.99 < fraction < 1:
        return ">99%"
    return f"{100 * fraction:.0f}%"
