"""Part 2: ground-truth throughput per problem and size, and the certified rates of issue 14.

`gt_throughput`: ground truths per CPU second of the arb and mpmath engines against one plain
256-bit mpmath evaluation, on the study's inputs in every format. `gt_rates`: certified elements
per CPU second through the runner's batch path, and seconds per linear system, beside the goals
(`RATE_GOALS`, `SOLVE_GOAL`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmarks.baseline import BASELINE_PREC, naive_truth
from benchmarks.results import STUDY, Results, md_table, number
from precision.core.formats import cast, get_format
from precision.core.numbers import ARB
from precision.problems import PROBLEMS
from precision.run.sampling import cell_rng, sample_in_cell
from precision.run.spec import load_spec
from precision.truth.batch import ground_truths_batch
from precision.truth.exact import ground_truths

FORMATS = ("float16", "bfloat16", "float32", "float64")
PROBLEM_NAMES = ("exp", "softmax", "logsumexp", "log_softmax", "cross_entropy")


def gt_throughput(
    res: Results,
    *,
    problems=PROBLEM_NAMES,
    sizes=(10, 100, 1000),
    seconds: float = 4.0,
    inputs: int = 12,
    seed: int = 20261125,
) -> pd.DataFrame:
    """Part 2: ground truths per second for each problem and size, engine by engine.

    Inputs come from the study's generator (`sample_in_cell`) over the default grid's cells,
    rounded to every format; each (input, format) is one ground truth. The engines take turns
    on the same inputs until ``seconds`` have passed (at least one input in every format):

    * ``arb``: `ground_truths(..., engine="arb")`, certified (the study's engine);
    * ``mpmath``: `ground_truths(..., engine="mpmath")`, certified by agreement;
    * ``mpmath 256``: one plain evaluation at 256 bits, rounded to the format (the baseline's);
    * ``arb eval 113``: one Arb evaluation at 113 bits alone, no certification or rounding
      (what the arb engine's evaluation costs without its per-element checks).
    """
    grid = load_spec(STUDY).grid
    out = []
    for name in problems:
        problem = PROBLEMS[name]
        for n in sizes if problem.takes_sizes else (1,):
            xs = _generated_inputs(problem, n, grid, inputs * (4 if n == 1 else 1), seed)
            tasks = []
            for x in xs:
                for fmt in FORMATS:
                    x_fmt = cast(x, fmt)
                    if np.isfinite(x_fmt.astype(np.float64)).all():
                        tasks.append((x_fmt, fmt))
            engines = _engines(problem)
            spent = dict.fromkeys(engines, 0.0)  # CPU seconds of this process
            wall = dict.fromkeys(engines, 0.0)
            counts = dict.fromkeys(engines, 0)
            certified = dict.fromkeys(engines, 0)
            precs = dict.fromkeys(engines, 0)
            start, i = time.perf_counter(), 0
            while i < len(FORMATS) or time.perf_counter() - start < seconds:
                x_fmt, fmt = tasks[i % len(tasks)]
                for engine, fn in engines.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    ok, prec = fn(x_fmt, fmt)
                    spent[engine] += time.process_time() - c0
                    wall[engine] += time.perf_counter() - t0
                    counts[engine] += 1
                    certified[engine] += ok
                    precs[engine] += prec
                i += 1
            for engine in engines:
                rate = counts[engine] / spent[engine]
                out.append(
                    {
                        "problem": name,
                        "n": n,
                        "engine": engine,
                        "truths": counts[engine],
                        "cpu_seconds": spent[engine],
                        "wall_seconds": wall[engine],
                        "truths_per_wall_s": counts[engine] / wall[engine],
                        "truths_per_s": rate,
                        "elements_per_s": rate * n,
                        "vs_mpmath_256": rate / (counts["mpmath 256"] / spent["mpmath 256"]),
                        "certified": certified[engine] / counts[engine],
                        "mean_prec": precs[engine] / counts[engine],
                    }
                )
    table = pd.DataFrame(out)
    bench = "ground-truth throughput"
    for r in table.itertuples(index=False):
        setting = f"{r.problem} n={r.n} {r.engine}"
        note = f"{r.truths} truths, {r.certified:.0%} certified, mean {r.mean_prec:.0f} bits"
        res.add("2", bench, setting, "truths per CPU second", r.truths_per_s, "1/s", note)
        res.add("2", bench, setting, "elements per CPU second", r.elements_per_s, "1/s")
        res.add("2", bench, setting, "truths per wall second", r.truths_per_wall_s, "1/s")
        res.add("2", bench, setting, "speed vs mpmath 256", r.vs_mpmath_256, "x")
    pivot_rows = []
    for (problem, n), g in table.groupby(["problem", "n"], sort=False):
        e = g.set_index("engine")
        pivot_rows.append(
            [
                problem,
                n,
                *(number(e.loc[k, "truths_per_s"]) for k in engines),
                *(number(e.loc[k, "elements_per_s"]) for k in ("arb", "mpmath 256")),
                number(e.loc["arb", "vs_mpmath_256"]) + "x",
                number(e.loc["mpmath", "vs_mpmath_256"]) + "x",
                f"{e.loc['arb', 'certified']:.0%} / {e.loc['mpmath', 'certified']:.0%}",
                f"{e.loc['arb', 'mean_prec']:.0f} / {e.loc['mpmath', 'mean_prec']:.0f}",
            ]
        )
    res.section(
        "\n".join(
            [
                "## 2. Ground-truth throughput per core",
                "",
                "Ground truths (one input in one format each) per CPU second of one "
                "single-threaded process: CPU time, so that other work on the shared machine "
                "does not count (wall-clock rates are in the CSV). Inputs are drawn by the "
                "study's generator over the default grid, in every format; the engines take "
                "turns on the same inputs. *arb* and *mpmath* are the certified engines "
                "(`precision.truth.exact.ground_truths`); *mpmath 256* is one plain evaluation at "
                "256 bits rounded to the format (uncertified, the baseline's); *arb eval 113* "
                "is the Arb evaluation alone at 113 bits (no certification, no rounding).",
                "",
                md_table(
                    [
                        "problem",
                        "n",
                        *(f"{k} /s" for k in engines),
                        "arb elem/s",
                        "mpmath 256 elem/s",
                        "arb vs 256",
                        "mpmath vs 256",
                        "certified arb / mpmath",
                        "mean bits arb / mpmath",
                    ],
                    pivot_rows,
                ),
            ]
        )
    )
    return table


RATE_GOALS = {"elementwise": 1_000_000.0, "sums": 10_000_000.0}
"""Issue 14: certified ground-truth elements per CPU second (one core), counting certification
and the rounding to every format: exp and the softmax family at n = 1000; sums and dots."""
SOLVE_GOAL = 0.3
"""Issue 14: seconds for one certified n = 200 linear system (solution and condition number)."""


def gt_rates(
    res: Results,
    *,
    problems=PROBLEM_NAMES,
    n: int = 1000,
    inputs: int = 3,
    solve_n: int = 200,
    seed: int = 20261125,
) -> pd.DataFrame:
    """Part 2: certified ground-truth rates beside the goals of issue 14.

    Each input, from the study's generator, is rounded to every format and certified in each,
    a batch per format as the runner does it (`ground_truths_batch(..., engine="arb")`, exact
    shortcuts included; `_arb_rate`): elements per CPU second is the elements of the (input,
    format) truths over the CPU seconds, exp's scalars counted one each. Sums (``summation``)
    and dot products (``dot``, pairs of rows of K = n from its own generator) go through their
    exact shortcuts, as the runner takes them. The linear system is one n = ``solve_n`` input
    in float64.
    """
    grid = load_spec(STUDY).grid
    cases = {
        name: ("elementwise", _arb_rate(PROBLEMS[name], n, grid, inputs, seed)) for name in problems
    }
    cases["summation"] = ("sums", _arb_rate(PROBLEMS["summation"], n, grid, inputs, seed))
    cases["dot product"] = ("sums", _arb_rate(PROBLEMS["dot"], n, grid, inputs, seed))
    rows = [
        {"problem": k, "n": n, "kind": kind, "elements_per_s": rate, "goal": RATE_GOALS[kind]}
        for k, (kind, rate) in cases.items()
    ]
    solve = _solve_seconds(solve_n, grid, seed)
    table = pd.DataFrame(rows)
    lines = []
    for r in table.itertuples(index=False):
        met = "met" if r.elements_per_s >= r.goal else "not met"
        note = f"GOAL {number(r.goal)} el/s: {met}"
        res.add(
            "2",
            "ground-truth rate",
            f"{r.problem} n={r.n}",
            "elements per CPU second",
            r.elements_per_s,
            "1/s",
            note,
        )
        lines.append([r.problem, r.n, number(r.elements_per_s), number(r.goal), met])
    met = "met" if solve <= SOLVE_GOAL else "not met"
    res.add(
        "2",
        "ground-truth rate",
        f"linear_system n={solve_n}",
        "CPU seconds per input",
        solve,
        "s",
        f"GOAL {SOLVE_GOAL} s: {met}",
    )
    lines.append(["linear_system (s per input)", solve_n, number(solve), SOLVE_GOAL, met])
    res.section(
        "\n".join(
            [
                "### Certified ground-truth rates against the goals (issue 14)",
                "",
                "Elements per CPU second of one process, certification and rounding to every "
                "format counted, through the runner's batch path (`ground_truths_batch`, one "
                "batch per format; exp: one element per scalar input, 1000 times as many inputs "
                "as the vector problems); the linear system in CPU seconds per input (float64).",
                "",
                md_table(["problem", "n", "el/s (s)", "goal", "goal met"], lines),
            ]
        )
    )
    return table


def _arb_rate(problem, n: int, grid, inputs: int, seed: int) -> float:
    """Elements (the length of each input's last axis: n logits, or 1 for the scalar problem
    exp) times formats, per CPU second of the arb engine as the runner calls it: each format's
    inputs as one batch (`ground_truths_batch`, shortcuts included), certified in that format.

    A scalar problem draws ``inputs * n`` inputs, so that it certifies as many elements as a
    vector problem's ``inputs`` inputs of n (a batch of 8 scalars would measure numpy's fixed
    costs, not the engine). One input is certified first, untimed, so that once-per-process
    costs are not counted as a per-element rate."""
    count = inputs * n if problem.input_shape(n) == (1,) else inputs
    xs = np.stack(_generated_inputs(problem, n, grid, count, seed))
    batches = []
    for fmt in FORMATS:
        X = cast(xs, fmt)
        finite = np.isfinite(X.astype(np.float64)).reshape(len(X), -1).all(axis=1)
        batches.append((X[finite], fmt))
    # Count what was certified: exp's inputs are scalars (its proposals ignore n), and counting
    # n per input overstated its rate a thousandfold until 2026-12-06.
    elements = sum(X.shape[0] * X.shape[-1] for X, _ in batches)
    # A rate per element: one-time costs of the process (imports, the exp table of
    # precision.core.double_double, about 7 ms) are paid on one input first, untimed.
    ground_truths_batch(problem, batches[0][0][:1], [batches[0][1]], engine="arb")
    start = time.process_time()
    for X, fmt in batches:
        ground_truths_batch(problem, X, [fmt], engine="arb")
    return elements / max(time.process_time() - start, 1e-9)


def _solve_seconds(n: int, grid, seed: int) -> float:
    """CPU seconds of one certified linear system of size n in float64 (arb engine)."""
    problem = PROBLEMS["linear_system"]
    x = _generated_inputs(problem, n, grid, 1, seed)[0]
    start = time.process_time()
    ground_truths(problem, cast(x, "float64"), ["float64"], engine="arb")
    return time.process_time() - start


def _engines(problem) -> dict[str, Callable]:
    def arb(x, fmt):
        t = ground_truths(problem, x, [fmt], engine="arb")[fmt]
        return t.certified, t.prec

    def mpm(x, fmt):
        t = ground_truths(problem, x, [fmt], engine="mpmath")[fmt]
        return t.certified, t.prec

    def plain(x, fmt):
        naive_truth(problem, x, get_format(fmt))
        return False, BASELINE_PREC

    def arb_eval(x, fmt):
        with ARB.workprec(113):
            problem.reference(x, ARB)
        return False, 113

    return {"arb": arb, "mpmath": mpm, "mpmath 256": plain, "arb eval 113": arb_eval}


def _generated_inputs(problem, n: int, grid, count: int, seed: int) -> list[np.ndarray]:
    """``count`` float64 inputs from the study's generator, cycling over the grid's cells."""
    cells = grid.cells()
    rngs = {cell: cell_rng(seed, problem.name, n, *cell) for cell in cells}
    found: list[np.ndarray] = []
    for _ in range(count):
        for cell in cells:
            x = sample_in_cell(problem, rngs[cell], n=n, cond_decade=cell[0], mag_decade=cell[1])
            if x is not None:
                found.append(x)
            if len(found) == count:
                return found
    return found
