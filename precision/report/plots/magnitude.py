"""Line figures against the sequence length (attention: one row of panels per condition decade)
and against the decade of max |x_i| (activations, norms), with a strip per panel giving each
decade's share of failed rows, so that a line that stops says why.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from precision.core.formats import get_format
from precision.report.plots import common
from precision.report.plots.common import (
    _LABEL_BOX,
    FIGURE_WIDTH,
    LineStyles,
    _bands_note,
    _certified_ok,
    _decades,
    _draw_lines,
    _format_axes,
    _line_data,
    _log_axes,
    _part_title,
    _pooled,
    _share,
    _variant_legend,
    line_styles,
    split_figures,
)
from precision.report.summary import (
    FAILURES,
    decade,
)

VERSUS_LENGTH = ("attention",)
"""Problems whose size n is a sequence length L: error versus L (`length_figures`), one row
of panels per condition decade."""


def length_figures(table: pd.DataFrame, problem: str) -> dict[str, plt.Figure]:
    """`lines_versus_length` by file stem, ``lines_<problem>_n`` (then ``_2``, ...: one row of
    panels per condition decade, at most MAX_PANELS panels per figure)."""
    rows = table[table["problem"] == problem]
    decades = sorted(set(decade(rows["cond"]).dropna().astype(int)))
    data = _line_data(rows, "cond_decade")  # one groupby for every part and panel
    return split_figures(
        f"lines_{problem}_n",
        decades,
        common.MAX_PANELS // max(1, rows["format"].nunique()),
        lambda group, part: lines_versus_length(
            table, problem, decades=group, part=part, data=data
        ),
    )


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
    lines, outcomes = magnitude_lines(rows), magnitude_outcomes(pooled)
    return split_figures(
        f"lines_{problem}_magnitude",
        list(dict.fromkeys(pooled["variant"])),
        common.MAX_BOXES,
        lambda group, part: magnitude_figure(
            table, problem, variants=group, part=part, lines=lines, outcomes=outcomes
        ),
    )


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
