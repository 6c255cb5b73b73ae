"""Emulated, stochastically rounded and float32-accumulated variants of the existing problems.

Three ways of computing that the textbook variants (which run as numpy runs them) do not show:

- ``*_emulated`` (``compute_mode = "emulated"``): every operation rounded to the format,
  reductions included, with `precision.core.emulate.Emulator`: pure float16 accumulation, where
  numpy's ``np.sum`` would accumulate float16 in float32.
- ``*_sr_s<k>`` (``compute_mode = "stochastic"``): the same with stochastic rounding, seed k
  (`SR_SEEDS` seeds per input: the spread over seeds is the rounding's own variability,
  `seed_spread`); family ``*_sr``, parameter ``seed`` = k. The generator is seeded by the
  input's bits and k (each row of a batch by its own bits, with a generator of its own), so a
  row is reproducible on any executor and in any batch.
- ``*_float32``: what mixed-precision and float8 kernels do: the input (float8, float16,
  bfloat16) is converted exactly to float32, the textbook form runs in float32 and the output
  is rounded once, correctly, to the input's format (``formats.cast``). The row's format and
  ``compute_dtype`` are the input's format, its ``accumulator`` float32.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from precision.core.emulate import Emulator, row_draws
from precision.core.formats import FORMATS, Format, cast, get_format
from precision.problems import cross_entropy, log_softmax, logsumexp, softmax, summation
from precision.problems.base import Variant

SR_SEEDS = 5
"""Stochastic-rounding variants per input (seeds 0 .. SR_SEEDS - 1)."""

Seed = int | Sequence[int]
"""A seed of ``numpy.random.default_rng``."""


# ---------------------------------------------------------------- emulated forms
#
# An emulated kernel is the textbook kernel's own body (written once over an arithmetic
# ``ops``, `precision.core.ops`) run with an `Emulator` of the input's format instead of numpy's
# arithmetic: the same operations in the same order, each rounded to the format, the sums left
# to right (or in the pairwise tree) with a format accumulator. Every kernel works along the last
# axis, on one input ``(n,)`` or a batch ``(batch, n)`` (rows independent,
# `precision.problems.base.Variant` with ``batched=True``): the emulator's operations are
# elementwise and its sums run along the last axis, vectorised across rows.


def _emulator(x: np.ndarray, **options) -> Emulator:
    return Emulator(get_format(x.dtype), **options)


def sr_seed(x: np.ndarray, k: int) -> tuple[int, int, int]:
    """The seed of stochastic-rounding variant k on input x: the input's float64 bytes (hashed)
    and k, with a tag apart from the random-order variants' seeds. For one input (a batch
    seeds each of its rows with `sr_seed` of that row)."""
    digest = hashlib.blake2b(np.asarray(x, dtype=np.float64).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little"), 0x5352, k


def recursive_sum_emulated(
    x: np.ndarray, *, seed: Seed | Callable[[np.ndarray], Seed] | None = None
) -> np.ndarray:
    """Left to right with a format accumulator, along the last axis: shape (1,) for one input
    ``(n,)``, ``(batch, 1)`` for a batch. Stochastic rounding when ``seed`` is given (in
    float64 from each exact sum, found by TwoSum), each row with its own generator: ``seed``
    is the seed of every row's generator, or a function ``seed(row)`` of the row (`sr_seed`),
    so that a row's result is the same in any batch.

    Round to nearest runs `summation.recursive_sum` with an `Emulator`. Stochastic rounding
    passes each row's own uniforms (`row_draws`) to `Emulator.sum_recursive`, which a body
    written over ``ops`` cannot hand on: it stays written out here."""
    if seed is None:
        return summation.recursive_sum(x, ops=_emulator(x))
    rows = np.asarray(x).reshape(-1, x.shape[-1])
    seeds = [seed(row) if callable(seed) else seed for row in rows]
    em = _emulator(x, rounding="stochastic", seed=seeds[0])
    draws = row_draws(seeds, x.shape[-1] - 1).reshape(*x.shape[:-1], x.shape[-1] - 1)
    return em.result(em.sum_recursive(em.values(x), draws=draws))


def pairwise_sum_emulated(x: np.ndarray) -> np.ndarray:
    """`summation.pairwise_sum` (the same tree) with a format accumulator, every addition
    rounded, along the last axis: shape (1,) for one input, ``(batch, 1)`` for a batch."""
    return summation.pairwise_sum(x, ops=_emulator(x))


def softmax_shifted_emulated(x: np.ndarray) -> np.ndarray:
    """`softmax.softmax_shifted` with every operation and every addition (left to right)
    rounded, along the last axis (one input or a batch)."""
    return softmax.softmax_shifted(x, ops=_emulator(x))


def logsumexp_shifted_emulated(x: np.ndarray) -> np.ndarray:
    """`logsumexp.logsumexp_shifted` with every operation and every addition (left to right)
    rounded, along the last axis: shape (1,) for one input, ``(batch, 1)`` for a batch."""
    return logsumexp.logsumexp_shifted(x, ops=_emulator(x))


def log_softmax_shifted_emulated(x: np.ndarray) -> np.ndarray:
    """`log_softmax.log_softmax_shifted` with every operation and every addition (left to
    right) rounded, along the last axis (one input or a batch)."""
    return log_softmax.log_softmax_shifted(x, ops=_emulator(x))


def sr_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """Worst case of recursive summation with stochastic rounding: each rounding errs by less
    than one gap, 2u relative, so Higham's gamma_{n-1} kappa_sum holds with u -> 2u (the
    probabilistic bound, about sqrt(n) 2u kappa_sum, is what it meets in practice:
    Connolly, Higham & Mary 2021). NaN when the sum is 0 or a partial sum could overflow
    (sum|x| (1 + gamma) beyond max): `summation.recursive_bound` with u -> 2u, through the
    same `summation.relative_bound`. Along the last axis: a float for one input, a
    ``(batch,)`` array for a batch."""
    return summation.relative_bound(summation.gamma(np.shape(x)[-1] - 1, 2 * fmt.u), x, fmt)


def per_row_bound(
    bound: Callable[[np.ndarray, Format], float],
) -> Callable[[np.ndarray, Format], float | np.ndarray]:
    """A bound of one input ``bound(x, fmt) -> float`` as a bound along the last axis: a float
    for one input, a ``(batch,)`` array for a batch (a row whose bound raises an
    ArithmeticError is NaN, as the runner takes it for one input)."""

    def rows(x: np.ndarray, fmt: Format) -> float | np.ndarray:
        x = np.asarray(x)
        if x.ndim == 1:
            return bound(x, fmt)
        out = np.empty(x.shape[:-1])
        for index in np.ndindex(*x.shape[:-1]):
            try:
                out[index] = bound(x[index], fmt)
            except ArithmeticError:
                out[index] = np.nan
        return out

    rows.__doc__ = f"{bound.__name__} of each row (along the last axis)."
    return rows


def stochastic_sum_variants(name: str = "recursive_sr") -> dict[str, Variant]:
    """The family ``name``: recursive sums with stochastic rounding, parameter ``seed`` = k
    (default 0 .. SR_SEEDS - 1); batch kernels, each row seeded with `sr_seed` of the row
    and k."""
    return {
        name: Variant(
            name,
            stochastic_recursive_sum,
            lambda x, fmt, *, seed: sr_bound(x, fmt),
            description="recursive sum, format accumulator, stochastic rounding (seed k)",
            compute_mode="stochastic",
            grid={"seed": tuple(range(SR_SEEDS))},
            batched=True,
        )
    }


def stochastic_recursive_sum(x: np.ndarray, *, seed: float) -> np.ndarray:
    """`recursive_sum_emulated` with stochastic rounding, stream k = ``seed`` of each row."""
    return recursive_sum_emulated(x, seed=functools.partial(sr_seed, k=int(seed)))


# ---------------------------------------------------------------- spread over seeds


def stochastic_rows(table: pd.DataFrame) -> pd.Series:
    """Which rows are seeds of a stochastically rounded family (compute mode stochastic with
    a ``seed``; gradient descent's stochastic update declares no seed and is not one)."""
    if not {"compute_mode", "seed"} <= set(table.columns):
        return pd.Series(False, index=table.index)  # a partial table, e.g. built by hand
    return table["compute_mode"].eq("stochastic").fillna(False) & table["seed"].notna()


def seed_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem x format x rounding: the error over seeds of stochastic rounding, next to
    round to nearest.

    The `stochastic_rows` (variant ``recursive_sr`` at each ``seed``) are grouped by variant,
    each input's errors over seeds are summarised, and those summaries are
    averaged over inputs. ``rel_error`` is signed-free (the row's normwise relative error), in
    units of the format's u.

    Returns
    -------
    pandas.DataFrame
        Columns problem, format, variant (``recursive_sr``), inputs, seeds,
        mean_err_over_u (mean over inputs of the mean over seeds), spread_over_u (mean over
        inputs of max - min over seeds), max_err_over_u, and nearest_err_over_u: the mean
        error of the round-to-nearest variant it rounds stochastically (the variant's name
        without its ``_sr``: ``recursive``) on the same inputs, where the table has it.
    """
    rows = table[stochastic_rows(table)]
    rows = rows[rows["outcome"] == "ok"].assign(stem=lambda t: t["variant"])
    keys = ["problem", "format", "stem"]
    per_input = rows.groupby([*keys, "source", "n", "cell_log10_magnitude", "sample"]).agg(
        mean=("err_over_u", "mean"),
        low=("err_over_u", "min"),
        high=("err_over_u", "max"),
        seeds=("err_over_u", "size"),
    )
    per_input["spread"] = per_input["high"] - per_input["low"]
    out = per_input.groupby(keys).agg(
        inputs=("mean", "size"),
        seeds=("seeds", "max"),
        mean_err_over_u=("mean", "mean"),
        spread_over_u=("spread", "mean"),
        max_err_over_u=("high", "max"),
    )
    out = out.reset_index().rename(columns={"stem": "variant"})
    nearest = table[table["outcome"] == "ok"].groupby(["problem", "format", "variant"])
    means = nearest["err_over_u"].mean()
    out["nearest_err_over_u"] = [
        means.get((p, f, v.removesuffix("_sr")), np.nan)
        for p, f, v in zip(out["problem"], out["format"], out["variant"], strict=True)
    ]
    return out


# ---------------------------------------------------------------- float32 accumulation


def widened(compute: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``compute`` run in float32 (float64 input stays float64) on the exactly converted input,
    its result rounded once to the input's format. A batch kernel when ``compute`` is one (the
    conversions are elementwise)."""

    def run(x: np.ndarray) -> np.ndarray:
        wide = np.float64 if x.dtype == np.float64 else np.float32
        y = compute(x.astype(wide))
        return cast(y, get_format(x.dtype))

    run.__doc__ = f"{compute.__name__} in float32, the result rounded once to the format."
    return run


def widened_bound(
    inner: Callable[[np.ndarray, Format], float | np.ndarray],
    compute: Callable[[np.ndarray], np.ndarray],
) -> Callable[[np.ndarray, Format], float | np.ndarray]:
    """inner's bound in float32, plus the final rounding to the format: u + (1 + u) inner,
    and half the subnormal quantum relative to max|y| for outputs in the subnormal range
    (float8's range is narrow: softmax outputs below 2**-6 are subnormal in e4m3fn); NaN where
    max|y| = 0. For batch kernels ``compute`` and bounds ``inner`` along the last axis: a float
    for one input, a ``(batch,)`` array for a batch (max|y| is taken over each row's output)."""

    def bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
        if fmt.p >= FORMATS["float32"].p:
            return inner(x, fmt)
        with np.errstate(all="ignore"):
            top = np.max(np.abs(compute(np.asarray(x, dtype=np.float64))), axis=-1)
            inside = inner(x.astype(np.float32), FORMATS["float32"])
            total = fmt.u + (1 + fmt.u) * inside + fmt.min_subnormal / (2 * top)
        total = np.where(top == 0, np.nan, total)  # no relative subnormal term: no bound
        return float(total) if total.ndim == 0 else total

    return bound


def wide_accumulator(fmt: Format) -> str:
    return "float64" if fmt.name == "float64" else "float32"


def _widened_variant(name: str, compute, inner_bound) -> Variant:
    return Variant(
        name,
        widened(compute),
        widened_bound(inner_bound, compute),
        wide_accumulator,
        description="computed in float32 from the exact input, result rounded once",
        batched=True,
    )


def _emulated_variant(name: str, compute, bound) -> Variant:
    return Variant(
        name,
        compute,
        bound,
        description="every operation rounded to the format, reductions included",
        compute_mode="emulated",
        batched=True,
    )


def extra_variants(problem: str) -> dict[str, Variant]:
    """The emulated, stochastic and float32-accumulated variants of ``problem`` (may be none)."""
    if problem == "summation":
        return {
            "recursive_emulated": _emulated_variant(
                "recursive_emulated",
                recursive_sum_emulated,
                per_row_bound(summation.recursive_bound),
            ),
            "pairwise_emulated": _emulated_variant(
                "pairwise_emulated", pairwise_sum_emulated, per_row_bound(summation.pairwise_bound)
            ),
        } | stochastic_sum_variants()
    forms = {
        "softmax": (softmax.softmax_shifted, softmax_shifted_emulated, softmax.shifted_bound),
        "logsumexp": (
            logsumexp.logsumexp_shifted,
            logsumexp_shifted_emulated,
            logsumexp.shifted_bound,
        ),
        "log_softmax": (
            log_softmax.log_softmax_shifted,
            log_softmax_shifted_emulated,
            log_softmax.shifted_bound,
        ),
    }
    if problem in forms:
        native, emulated, bound = forms[problem]
        return {
            "shifted_emulated": _emulated_variant("shifted_emulated", emulated, bound),
            "shifted_float32": _widened_variant("shifted_float32", native, bound),
        }
    if problem == "cross_entropy":
        return {
            "from_logits_float32": _widened_variant(
                "from_logits_float32",
                cross_entropy.cross_entropy_from_logits,
                cross_entropy.from_logits_bound,
            )
        }
    return {}
