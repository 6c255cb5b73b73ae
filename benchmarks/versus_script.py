"""The study runner against the per-row script a user would write (`benchmarks.script`).

Issue 13's comparison: on the softmax family (softmax, log-sum-exp, log_softmax,
cross-entropy) in four formats, at one vector size n at a time, a cold serial study
(`precision.run.study.run`, cache=None) and the script take the same inputs (the study's
generator, the same seed, cells and samples) and make the same rows (input x variant x format);
both are timed in this process, one after the other. `measure` also checks that the two made
the same rows with the same normwise relative errors, so the rates compare like with like.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

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
