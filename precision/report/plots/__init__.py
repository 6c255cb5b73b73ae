"""Every figure of the report, drawn from stored tables; the only package that imports matplotlib
and seaborn (modules by figure kind: heatmaps, lines, magnitude, optimisation, distributions,
and what they share, common).

Heatmaps of error versus measured condition number and magnitude:

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

import warnings  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402,F401
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from precision.problems import linalg  # noqa: E402
from precision.report.plots.common import (  # noqa: E402,F401
    BANDS_NOTE,
    FIGURE_WIDTH,
    MAX_BOXES,
    MAX_PANELS,
    MAX_TICK_LABELS,
    SEEDED_NAMES,
    LineStyles,
    line_styles,
    seeded_rows,
)
from precision.report.plots.distributions import (  # noqa: E402,F401
    BOX_QUANTILES,
    NO_DISTRIBUTION,
    box_stats,
    distribution_figure,
    distribution_figures,
    distribution_measure,
)
from precision.report.plots.heatmaps import (  # noqa: E402,F401
    CMAP,
    FACET_WIDTH_PT,
    FLOOR,
    MIN_CELL_FONT,
    ColourScale,
    colour_scale,
    failure_legend,
    heatmap_cells,
    heatmap_figure,
    heatmap_figures,
)
from precision.report.plots.lines import (  # noqa: E402,F401
    DEEPSEEK_ERROR,
    REFERENCE_LINES,
    VERSUS_N,
    accumulator_figure,
    bound_lines_versus_condition,
    linear_algebra_lines,
    lines_versus_condition,
    lines_versus_n,
    split_by_size,
)
from precision.report.plots.magnitude import (  # noqa: E402,F401
    MAGNITUDE_MARKS,
    VERSUS_LENGTH,
    VERSUS_MAGNITUDE,
    WELL_CONDITIONED,
    length_figures,
    lines_versus_length,
    magnitude_figure,
    magnitude_figures,
    magnitude_lines,
    magnitude_outcomes,
)
from precision.report.plots.optimisation import (  # noqa: E402,F401
    STEP_SWEEPS,
    accuracy_versus_condition,
    convergence_figure,
    convergence_figures,
    misclassification_figure,
    misclassification_figures,
    optimisation_figures,
    step_sweep_figure,
    step_sweep_figures,
)
from precision.store.results import StoredStudy  # noqa: E402


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
            figures |= split_by_size(lines_versus_condition, table, p, f"lines_{p}_kappa")
        if p in linalg.LINEAR_ALGEBRA_PROBLEMS:
            figures |= split_by_size(linear_algebra_lines, table, p, f"lines_{p}_kappa")
        if p in VERSUS_LENGTH:
            figures |= length_figures(table, p)
        if p in VERSUS_MAGNITUDE:
            figures |= magnitude_figures(table, p)
    return figures


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


def report_figure_pngs(study: StoredStudy) -> dict[str, bytes]:
    """The PNG bytes of every figure `report_figures` draws for a stored study, by file stem:
    what a report's worker process hands back (bytes travel between processes, figures would
    not)."""
    from precision import store
    from precision.store.results import read_companions

    with warnings.catch_warnings():
        # A panel without usable rows (a format where every row failed) is drawn empty, and
        # matplotlib warns that an empty log axis cannot be scaled.
        warnings.simplefilter("ignore", UserWarning)
        figures = report_figures(study.table, read_companions(study.folder))
        return {stem: store.png_bytes(fig) for stem, fig in figures.items()}  # closes each
