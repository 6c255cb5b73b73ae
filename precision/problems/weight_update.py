"""Gradient-descent-style weight updates, w_n = w_0 + d_1 + ... + d_{n-1}, applied in order.

One weight held in the format receives many small updates d_i = -lr g_i (the input is the
vector [w_0, d_1, ..., d_{n-1}]). With round-to-nearest an update below half the gap of the
format at w is lost entirely, every time: the weight *stagnates* (a float16 weight of 1 never
moves under updates of 2**-12, a quarter of its gap). Stochastic rounding rounds up with
probability proportional to the lost fraction, so the expected weight follows the exact one
(Gupta et al., "Deep learning with limited numerical precision", ICML 2015; Connolly, Higham &
Mary, SIAM J. Sci. Comput. 43(1), 2021). Master weights in float32 (mixed-precision training)
and compensated (Kahan) updates are the deterministic remedies.

The exact result and condition number are those of the sum (`summation.summation_reference`):
kappa = sum|x_i| / |sum x_i|, about (1 + f) / (1 - f) for a total drift f |w_0|.

The variants are batch kernels (`precision.problems.base.Variant` with ``batched=True``), the
summation kernels and bounds they are (`precision.problems.summation`,
`precision.problems.emulated`): one input [w_0, d_1, ...] of shape (n,) gives the final weight,
shape (1,), a batch (B, n) gives (B, 1), every row updated along the last axis with the
operations, order and dtype it meets alone; the bounds give a float for one input and a (B,)
array for a batch. ``kahan`` runs `summation.kahan_sum`'s array loop on one input as on a batch
(its vector form loops over numpy scalars): in float8 the sign bit of a NaN result may differ
from that scalar loop, and ml_dtypes' arrays report IEEE flags its scalars did not (see there).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from precision.core.formats import STUDY_FORMATS, get_format
from precision.problems import emulated, summation
from precision.problems.base import Problem, Variant

DRIFT = (0.05, 0.5)
"""Total drift sum|d_i| as a fraction of |w_0|: the weight moves but never crosses zero."""


def propose_updates(
    rng: np.random.Generator, *, n: int, magnitude: float, cond: float, size: int
) -> np.ndarray:
    """Candidates [w_0, d_1, ...]: |w_0| ~ magnitude and n - 1 updates of one sign (descent
    towards 0) whose sizes vary by a factor of 3 around f |w_0| / (n - 1), with the total drift
    f drawn from `DRIFT`. ``cond`` is not aimed at: kappa stays within [1.1, 3]."""
    del cond  # kappa is set by the drift
    w0 = magnitude * rng.uniform(1.0, 2.0, size=(size, 1)) * rng.choice([-1.0, 1.0], (size, 1))
    drift = rng.uniform(*DRIFT, size=(size, 1))
    steps = rng.uniform(0.5, 1.5, size=(size, max(n - 1, 0)))
    steps *= drift / np.maximum(steps.sum(axis=1, keepdims=True), 1e-300)
    return np.concatenate([w0, -w0 * steps], axis=1)


def apply_updates(x: np.ndarray) -> np.ndarray:
    """w = w_0, then w = fl(w + d_i) in order: the weight held in the format (round to
    nearest; numpy rounds each float16/bfloat16 addition correctly), along the last axis:
    (n,) gives (1,), a batch (B, n) gives (B, 1) (`summation.recursive_sum`)."""
    return summation.recursive_sum(x)


VARIANTS = {
    "recursive": Variant(
        "recursive",
        apply_updates,
        summation.recursive_bound,
        description="weight held in the format, round to nearest",
        batched=True,
    ),
    "float32_master": Variant(
        "float32_master",
        summation.float32_accumulator_sum,
        summation.float32_accumulator_bound,
        lambda fmt: "float64" if fmt.name == "float64" else "float32",
        description="float32 master weight, rounded once to the format",
        batched=True,
    ),
    "kahan": Variant(
        "kahan",
        summation.kahan_sum,
        summation.kahan_bound,
        description="compensated updates in the format",
        batched=True,
    ),
} | emulated.stochastic_sum_variants()

WEIGHT_UPDATE = Problem(
    name="weight_update",
    description="a weight receiving many small gradient-descent updates, applied in order",
    reference=summation.summation_reference,
    magnitude=lambda x: float(abs(np.asarray(x, dtype=np.float64)[0])),
    magnitude_name="|w_0|",
    propose=propose_updates,
    estimate=lambda X: (summation.estimate_sums(X)[0], np.abs(X[:, 0])),
    variants=VARIANTS,
)


# ---------------------------------------------------------------- worked example


def stagnation_example(*, updates: int = 4096, seeds: int = 10) -> pd.DataFrame:
    """w = 1 plus ``updates`` updates of +2**-12 (exact result 2) in each format: round to
    nearest, float32 master weight and stochastic rounding over ``seeds`` seeds."""
    x64 = np.concatenate([[1.0], np.full(updates, 2.0**-12)])
    exact = 1.0 + updates * 2.0**-12
    rows = []
    for name in STUDY_FORMATS:
        x = x64.astype(get_format(name).dtype)  # 1 and 2**-12 are exact in every format
        sr = [
            float(emulated.recursive_sum_emulated(x, seed=(0, k))[0].astype(np.float64))
            for k in range(seeds)
        ]
        rows.append(
            {
                "format": name,
                "exact": exact,
                "round to nearest": float(apply_updates(x)[0]),
                "float32 master": float(summation.float32_accumulator_sum(x)[0]),
                "SR mean over seeds": float(np.mean(sr)),
                "SR min": min(sr),
                "SR max": max(sr),
            }
        )
    return pd.DataFrame(rows)


def worked_examples() -> list[tuple[str, str, pd.DataFrame]]:
    """The stagnation example for the study's summary (computed, not copied)."""
    table = stagnation_example()
    f16 = table.set_index("format").loc["float16"]
    text = (
        "A weight w = 1 receives 4096 updates of +2^-12 (exactly 2 at the end). In float16 the "
        "gap above 1 is 2^-10: each update is a quarter of it and round to nearest drops it, "
        f"every time (result {f16['round to nearest']:g}). Stochastic rounding rounds up with "
        f"probability 1/4 and ends near 2 on average ({f16['SR mean over seeds']:.4g} over 10 "
        f"seeds, from {f16['SR min']:.4g} to {f16['SR max']:.4g}); a float32 master weight "
        "gets it exactly. bfloat16 (gap 2^-7) stagnates with round to nearest too."
    )
    return [("Stagnation of a weight under small updates", text, table)]
