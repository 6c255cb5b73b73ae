"""Part 5: the study runner against the per-row script a user would write (`benchmarks.script`).

Issue 13's comparison: on the softmax family (softmax, log-sum-exp, log_softmax,
cross-entropy) in four formats, at one vector size n at a time, a cold serial study
(`precision.run.study.run`, cache=None) and the script take the same inputs (the study's
generator, the same seed, cells and samples) and make the same rows (input x variant x format);
both are timed in this process, one after the other. `measure` also checks that the two made
the same rows with the same normwise relative errors, so the rates compare like with like.
`study_vs_script` records the results beside issue 13's goals (`RATIO_GOAL`, `SHARE_GOAL`).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from benchmarks.results import Results, adder, md_table, number
from benchmarks.script import KERNELS, run_script
from precision.run import study
from precision.run.spec import StudySpec, parse_spec

PROBLEM_NAMES = ("softmax", "logsumexp", "log_softmax", "cross_entropy")
FORMATS = ("float16", "bfloat16", "float32", "float64")
SEED = 20261125  # studies/softmax.toml's seed
GRID = {"log10_cond": [-1, 5], "log10_magnitude": [-1, 4]}  # studies/softmax.toml's decades
SHARE_GOAL = 0.20
"""Issue 13: time outside ground truth at most this share of a cold serial study, at every n."""
RATIO_GOAL = 50.0
"""Issue 13's end goal: the study's rows per second over the script's, at every n."""
KEYS = ["problem", "n", "cell_log10_cond", "cell_log10_magnitude", "sample", "variant", "format"]
REL_TOLERANCE = 1e-9
"""Largest relative difference of two rel_error values counted as the same error."""
ACCURACY = 2.0**-80
"""Errors closer than this are the same (the study's certified truths are accurate to 2**-80
relative, `precision.truth.exact.AGREEMENT`; a result equal to the rounded truth reads 0 there)."""


def spec_for(n: int, samples: int, grid: dict = GRID) -> StudySpec:
    """The study of one size n: the script's problems and variants, every format, no data set."""
    return parse_spec(
        {
            "name": f"versus-script-n{n}",
            "seed": SEED,
            "formats": list(FORMATS),
            "problems": list(PROBLEM_NAMES),
            "variants": {p: list(KERNELS[p]) for p in PROBLEM_NAMES},
            "grid": {**grid, "sizes": [n], "samples_per_cell": samples},
        }
    )


def measure(n: int, samples: int, grid: dict = GRID) -> dict:
    """One size: the cold serial study, then the script on the same inputs (module docstring).

    Rates are rows per wall second of each side; ``outside_share`` is the share of the
    runner's own time (``table.attrs["timing"]``) not spent on ground truth.
    """
    spec = spec_for(n, samples, grid)
    wall, cpu = time.perf_counter(), time.process_time()
    phases = dict.fromkeys(study.PHASES, 0.0)
    table = study.run(spec, cache=None, phases=phases)
    study_s, study_cpu = time.perf_counter() - wall, time.process_time() - cpu
    timing = table.attrs["timing"]
    wall, cpu = time.perf_counter(), time.process_time()
    cells = spec.grid.cells()
    rows = run_script(spec.problems, n, spec.formats, seed=SEED, cells=cells, samples=samples)
    script_s, script_cpu = time.perf_counter() - wall, time.process_time() - cpu
    same_keys, differing = agreement(table, rows)
    inputs = table[["problem", "cell_log10_cond", "cell_log10_magnitude", "sample"]]
    study_rate, script_rate = len(table) / study_s, len(rows) / script_s
    return {
        "n": n,
        "samples_per_cell": samples,
        "inputs": len(inputs.drop_duplicates()),
        "study_rows": len(table),
        "study_seconds": study_s,
        "runner_seconds": timing["seconds"],
        "ground_truth_seconds": timing["ground_truth_seconds"],
        "outside_share": 1.0 - timing["ground_truth_seconds"] / timing["seconds"],
        **{
            f"share_{phase.replace(' ', '_')}": t / timing["seconds"] for phase, t in phases.items()
        },
        "script_rows": len(rows),
        "script_seconds": script_s,
        "study_rows_per_s": study_rate,
        "script_rows_per_s": script_rate,
        "ratio": study_rate / script_rate,
        "ratio_cpu": (len(table) / study_cpu) / (len(rows) / script_cpu),
        "same_rows": same_keys,
        "differing_errors": differing,
    }


def agreement(table: pd.DataFrame, rows: list[tuple]) -> tuple[bool, int]:
    """Whether the script made exactly the study's rows, and in how many of them the two
    normwise relative errors differ (finite on one side only, or by more than REL_TOLERANCE)."""
    script = pd.DataFrame(rows, columns=[*KEYS, "rel_error"])
    ours = table[[*KEYS, "rel_error"]].astype({"cell_log10_cond": "int64"})
    ours = ours.astype({"cell_log10_magnitude": "int64", "sample": "int64", "n": "int64"})
    ours = ours.astype({k: str for k in ("problem", "variant", "format")})
    both = ours.merge(script, on=KEYS, how="outer", suffixes=("_study", "_script"), indicator=True)
    same = len(ours) == len(script) == len(both) and (both["_merge"] == "both").all()
    a = both["rel_error_study"].astype("float64").to_numpy()
    b = both["rel_error_script"].astype("float64").to_numpy()
    finite = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(a - b)
        close = (gap <= REL_TOLERANCE * np.maximum(np.abs(a), np.abs(b))) | (gap <= ACCURACY)
    differ = (np.isfinite(a) != np.isfinite(b)) | (finite & ~close)
    return bool(same), int(differ.sum())


def measure_sizes(sizes_samples, grid: dict | None = None) -> pd.DataFrame:
    """`measure` at each (n, samples per cell) on ``grid`` (None: `GRID`), after one small
    untimed run of both sides (so that imports and first-call setup are not charged to the
    first size)."""
    measure(10, 1, {"log10_cond": [0, 1], "log10_magnitude": [0, 1]})
    return pd.DataFrame([measure(n, samples, grid or GRID) for n, samples in sizes_samples])


# ------------------------------------------------------------------ 5. study vs the user's script


def study_vs_script(res: Results, *, sizes=((10, 1), (100, 1), (1000, 1)), grid=None):
    """Part 5: a cold serial study against `benchmarks.script` on the same rows, per size n
    (`benchmarks.versus_script.measure_sizes`); issue 13's goals printed beside the results."""
    table = measure_sizes(sizes, grid)
    bench, rows, spent = "softmax family: study vs per-row script", [], []
    for r in table.itertuples(index=False):
        add = adder(res, "5", bench, f"n={r.n}")
        ratio_ok = "met" if r.ratio >= RATIO_GOAL else "not met"
        share_ok = "met" if r.outside_share <= SHARE_GOAL else "not met"
        add("inputs", r.inputs, "inputs", f"{r.samples_per_cell} per reachable cell")
        add("rows", r.study_rows, "rows", f"script: {r.script_rows}")
        add("study, cold serial", r.study_seconds, "s", "precision.run.study.run, cache=None")
        add("study: ground truth", r.ground_truth_seconds, "s", "the runner's own timing")
        add("script", r.script_seconds, "s", "benchmarks/script.py, mpmath 256 bits per row")
        add("study rows per second", r.study_rows_per_s, "1/s")
        add("script rows per second", r.script_rows_per_s, "1/s")
        add("ratio", r.ratio, "x", f"GOAL at least {RATIO_GOAL:g}x at every n: {ratio_ok}")
        add("ratio, CPU time", r.ratio_cpu, "x")
        add(
            "study time outside ground truth",
            r.outside_share,
            "share",
            f"GOAL at most {SHARE_GOAL:.0%} at every n: {share_ok}",
        )
        for phase in study.PHASES:
            add(f"study time: {phase}", getattr(r, f"share_{phase.replace(' ', '_')}"), "share")
        add("same rows", int(r.same_rows), "bool", "same (input, variant, format) keys")
        add("rows with different errors", r.differing_errors, "rows", "rel_error, 1e-9 rel.")
        spent.append(
            [r.n, *(f"{getattr(r, 'share_' + p.replace(' ', '_')):.0%}" for p in study.PHASES)]
        )
        rows.append(
            [r.n, r.inputs, f"{r.study_rows:,}", f"{r.study_rows_per_s:,.0f}",
             f"{r.script_rows_per_s:,.0f}", f"**{number(r.ratio)}x**",
             f"{number(r.study_seconds)} s", f"{number(r.ground_truth_seconds)} s",
             f"**{r.outside_share:.0%}**", "yes" if r.same_rows else "**no**",
             r.differing_errors]
        )  # fmt: skip
    res.section(
        "\n".join(
            [
                "## 5. The study against the per-row script a user would write (issue 13)",
                "",
                "Softmax, log-sum-exp, log_softmax and cross-entropy (naive and shifted forms), "
                "four formats, one size n at a time: a cold serial study "
                "(`precision.run.study.run`, cache=None) and `benchmarks/script.py` (for every "
                "row: round the input, run the kernel, mpmath reference at 256 bits, normwise "
                "relative error; nothing shared or cached) on the same inputs, one after the "
                "other in this process. Ratio: the study's rows per second over the script's. "
                "Outside ground truth: the share of the runner's own time not spent on ground "
                f"truth. Issue 13's goals: at most {SHARE_GOAL:.0%} outside ground truth and "
                f"at least {RATIO_GOAL:g}x the script, at every n.",
                "",
                md_table(
                    ["n", "inputs", "rows", "study rows/s", "script rows/s",
                     f"ratio (goal {RATIO_GOAL:g}x)", "study s", "of which ground truth",
                     f"outside ground truth (goal {SHARE_GOAL:.0%})", "same rows",
                     "rows with different errors"],
                    rows,
                ),
                "",
                "Where a cold study's time goes (shares of the runner's time, as it books them: "
                "`precision.run.study.PHASES`):",
                "",
                md_table(["n", *study.PHASES], spent),
            ]
        )
    )  # fmt: skip
    return table
