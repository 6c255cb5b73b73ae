"""The per-row script a user would write without the framework (issue 13's comparison).

Everything below the imports is written exactly as a user would write it: textbook kernels in
numpy, a plain mpmath reference at 256 bits, and the normwise relative error, row by row
(input x variant x format), nothing shared between rows, nothing cached, nothing certified.
Two things come from the package, only so that the script and the study measure the same rows:
the inputs (the study's generator, `sample_cell` seeded by `cell_rng`, as the study draws
them) and the rounding of each input to its format (`precision.core.formats.cast`: one correct
rounding; a user's ``x.astype(bfloat16)`` is the same with ml_dtypes 0.7, but rounds twice
with 0.6). The kernels are the package's naive and shifted forms, written out again here.
"""

from __future__ import annotations

import mpmath
import numpy as np

from precision.core.formats import cast
from precision.problems import PROBLEMS
from precision.run.sampling import cell_rng, sample_cell

# ---- the script, as a user writes it ----------------------------------------------------


def softmax_naive(x):
    e = np.exp(x)
    return e / np.sum(e)


def softmax_shifted(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def lse_shifted(x):
    a = np.max(x)
    return a + np.log(np.sum(np.exp(x - a)))


def log_softmax_shifted(x):
    z = x - np.max(x)
    return z - np.log(np.sum(np.exp(z)))


KERNELS = {  # problem -> variant -> kernel(x) -> y, in x's dtype
    "softmax": {"naive": softmax_naive, "shifted": softmax_shifted},
    "logsumexp": {
        "naive": lambda x: np.log(np.sum(np.exp(x)))[None],
        "shifted": lambda x: lse_shifted(x)[None],
    },
    "log_softmax": {"naive": lambda x: np.log(softmax_naive(x)), "shifted": log_softmax_shifted},
    "cross_entropy": {  # x is (2, n): logits, one-hot target
        "from_probabilities": lambda xt: (-np.sum(xt[1] * np.log(softmax_shifted(xt[0]))))[None],
        "from_logits": lambda xt: (-np.sum(xt[1] * log_softmax_shifted(xt[0])))[None],
    },
}


def reference(problem, x):
    """The exact result in mpmath at the working precision (a list of mpf), in the shifted
    form lse = a + log1p(sum_{i != k} exp(x_i - a)), a = x_k = max x, so that a tiny
    cross-entropy (a confident prediction, ~exp(-gap)) is not lost to cancellation."""
    x = [mpmath.mpf(v) for v in np.asarray(x, dtype=np.float64).ravel().tolist()]
    x, t = (x[: len(x) // 2], x[len(x) // 2 :]) if problem == "cross_entropy" else (x, None)
    k = max(range(len(x)), key=x.__getitem__)
    a = x[k]
    log1p_r = mpmath.log1p(mpmath.fsum(mpmath.exp(v - a) for i, v in enumerate(x) if i != k))
    if problem == "cross_entropy":  # -sum t_i (x_i - lse); x holds the logits, then the target
        return [
            mpmath.fsum(ti * (a - v) for v, ti in zip(x, t, strict=True)) + mpmath.fsum(t) * log1p_r
        ]
    if problem == "logsumexp":
        return [a + log1p_r]
    if problem == "log_softmax":
        return [(v - a) - log1p_r for v in x]
    return [mpmath.exp((v - a) - log1p_r) for v in x]  # softmax


def rel_error(y, exact):
    """Normwise (inf-norm) relative error of y, in mpmath: nan or inf where y is."""
    y = np.asarray(y, dtype=np.float64).ravel()
    if not np.isfinite(y).all():
        return float("nan") if np.isnan(y).any() else float("inf")
    top = max(abs(e) for e in exact)
    worst = max(abs(mpmath.mpf(v) - e) for v, e in zip(y.tolist(), exact, strict=True))
    return float(worst / top) if top else (0.0 if worst == 0 else float("inf"))


def run_script(problems, n, formats, *, seed, cells, samples):
    """One row per (input, variant, format): (problem, n, cell, sample, variant, format, error)."""
    rows = []
    for problem in problems:
        for c, m in cells:
            rng = cell_rng(seed, problem, n, c, m)  # the study's inputs, drawn as it draws them
            drawn = sample_cell(
                PROBLEMS[problem], rng, n=n, cond_decade=c, mag_decade=m, samples=samples
            )
            for sample, x in enumerate(drawn):
                if x is None:  # the generator cannot reach this cell
                    continue
                for variant, kernel in KERNELS[problem].items():
                    for fmt in formats:
                        x_fmt = cast(x, fmt)  # round the float64 input to the format, once
                        err = float("nan")  # the input overflows the format: nothing to measure
                        if np.isfinite(x_fmt.astype(np.float64)).all():
                            with np.errstate(all="ignore"):
                                y = kernel(x_fmt)
                            with mpmath.workprec(256):
                                err = rel_error(y, reference(problem, x_fmt))
                        rows.append((problem, n, c, m, sample, variant, fmt, err))
    return rows


if __name__ == "__main__":  # python -m benchmarks.script: a few rows, to see it work
    formats = ("float16", "bfloat16", "float32", "float64")
    found = run_script(["softmax"], 10, formats, seed=1, cells=[(0, 1)], samples=1)
    for row in found:
        print(*row)
