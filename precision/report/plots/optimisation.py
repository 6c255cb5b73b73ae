"""Figures of the optimisation and calculus studies: V curves of error against the step h,
convergence curves, accuracy against conditioning and misclassification rates.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from precision.core.formats import get_format
from precision.report.plots import common
from precision.report.plots.common import (
    _draw_lines,
    _facet_grid,
    _format_axes,
    _legend,
    _log_axes,
    _part_title,
    _pooled,
    _variant_legend,
    line_styles,
    split_figures,
)
from precision.report.plots.heatmaps import CMAP
from precision.report.summary import (
    labelled,
)

STEP_SWEEPS = ("fd_exp", "fd_softplus", "fd_network", "fd_hessian")
"""Finite-difference problems whose variants sweep a step h (one variant per method and h):
drawn as V curves and error versus h x format (`step_sweep_figure`), not as heatmaps of
condition number x magnitude."""


def step_sweep_figures(table: pd.DataFrame, problem: str) -> dict[str, plt.Figure]:
    """`step_sweep_figure` by file stem, ``steps_<problem>`` (then ``_2``, ...: two panels per
    method, at most MAX_PANELS per figure)."""
    rows = table[(table["problem"] == problem) & table["h"].notna()]
    return split_figures(
        f"steps_{problem}",
        list(dict.fromkeys(rows["variant"])),
        common.MAX_PANELS // 2,
        lambda group, part: step_sweep_figure(table, problem, methods=group, part=part),
    )


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
    return split_figures(
        "convergence_quadratic",
        kappas,
        common.MAX_PANELS // max(1, curves["format"].nunique()),
        lambda group, part: convergence_figure(curves, kappas=group, part=part),
    )


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
    return split_figures(
        f"misclassified_{problem}",
        variants,
        common.MAX_PANELS // max(1, table["format"].nunique()),
        lambda group, part: misclassification_figure(table, problem, variants=group, part=part),
    )


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
