"""Distributions beside the medians: one box per variant of log10(err / (kappa u)) over certified
ok rows, one panel per format, with the rows in each box and the share that failed; a variant
x format without certified ok rows is labelled absent, never drawn as a box.
"""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.transforms import blended_transform_factory

from precision.report.plots import common
from precision.report.plots.common import (
    LineStyles,
    _certified_ok,
    _numbered,
    _part,
    _part_title,
    _parts,
    _pooled,
    _share,
    line_styles,
)
from precision.report.plots.heatmaps import FLOOR
from precision.report.plots.optimisation import STEP_SWEEPS
from precision.report.summary import (
    BAND,
    EXACT_ZERO,
    FAILURES,
)

NO_DISTRIBUTION = (*STEP_SWEEPS, "critical_point")
"""Problems without a distribution figure: the step sweeps (one variant per method and h,
whose V curves show the spread) and critical_point (its error is 0, 1 or 2: right or wrong; its
figure is the misclassification rate)."""


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
            _parts(list(dict.fromkeys(stats["variant"])), common.MAX_BOXES),
            _parts(list(dict.fromkeys(stats["format"])), common.MAX_PANELS),
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
