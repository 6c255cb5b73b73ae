"""Line figures of the median error against n, the measured condition number and K (the dot
product's accumulators), with the closed-form bounds or orders of growth as reference lines,
the rows' own bounds, and the linear-algebra problems' error against kappa.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from precision.core.formats import get_format
from precision.problems import linalg, summation, variance
from precision.report.plots import common
from precision.report.plots.common import (
    _bands_note,
    _draw_lines,
    _draw_references,
    _format_axes,
    _legend,
    _line_data,
    _log_axes,
    _part_title,
    _pooled,
    _variant_legend,
    line_styles,
    split_figures,
)
from precision.report.summary import (
    accumulator_errors,
    accumulator_label,
)

REFERENCE_LINES = {
    "summation": summation.reference_lines,
    "variance": variance.reference_lines,
}
"""Problem -> ``lines(n, kappa, fmt) -> {label: relative error in units of u}``."""


VERSUS_N = ("summation",)
"""Problems whose bounds are gamma_k * kappa, plotted as error / (u kappa) versus n."""


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


def split_by_size(draw, table: pd.DataFrame, problem: str, stem: str) -> dict[str, plt.Figure]:
    """``draw(table, problem, sizes=..., part=...)`` over the problem's sizes n (one row of
    panels each, one column per format), split so that no figure holds more than MAX_PANELS
    panels: ``<stem>``, ``<stem>_2``, ..."""
    rows = table[table["problem"] == problem]
    sizes = sorted(set(rows["n"].dropna().astype(int)))
    per_part = common.MAX_PANELS // max(1, rows["format"].nunique())
    return split_figures(
        stem, sizes, per_part, lambda group, part: draw(table, problem, sizes=group, part=part)
    )


def lines_versus_condition(
    table: pd.DataFrame,
    problem: str,
    *,
    sizes: list[int] | None = None,
    part: tuple[int, int] | None = None,
) -> plt.Figure:
    """Median relative error / u versus the measured condition number (per decade), one row of
    panels per size n (``sizes``, by default all), with the reference lines at that n."""
    references = REFERENCE_LINES[problem]
    return _lines_versus_condition(
        table, problem, references, "reference lines dashed grey", sizes=sizes, part=part
    )


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
    return _lines_versus_condition(
        table,
        problem,
        linalg.reference_lines,
        "kappa u and kappa^2 u dashed grey",
        sizes=sizes,
        part=part,
    )


def _lines_versus_condition(
    table: pd.DataFrame,
    problem: str,
    references,
    references_note: str,
    *,
    sizes: list[int] | None,
    part: tuple[int, int] | None,
) -> plt.Figure:
    """What `lines_versus_condition` and `linear_algebra_lines` draw, with the reference lines
    ``references(n, kappa, fmt) -> {label: error / u}`` named in the title by
    ``references_note``."""
    rows = table[table["problem"] == problem]
    data = _line_data(rows, "cond_decade")
    styles = line_styles(rows)
    sizes = sizes or sorted(set(rows["n"].dropna().astype(int)))
    fig, axes, formats = _format_axes(rows, rows=len(sizes))
    for i, n in enumerate(sizes):
        for ax, fmt in zip(axes[i], formats, strict=True):
            panel = data[(data["format"] == fmt) & (data["n"] == n)]
            _draw_lines(ax, panel, "median_cond", "median_err_over_u", styles=styles, fmt=fmt)
            f = get_format(fmt)
            kappas = sorted(panel["median_cond"]) or [1.0]
            _draw_references(ax, [(k, references(n, k, f)) for k in kappas])
            _log_axes(ax, f"{fmt}, n = {n}", "measured condition number", "median rel. error / u")
    _variant_legend(fig, axes, styles)
    fig.suptitle(
        f"{problem}{_part_title(part)}: error versus condition number\n"
        f"({_bands_note(styles)}; {references_note})"
    )
    return fig
