"""Emulated, stochastically rounded and float32-accumulated variants of the existing problems.

Three ways of computing that the textbook variants (which run as numpy runs them) do not show:

- ``*_emulated`` (``compute_mode = "emulated"``): every operation rounded to the format,
  reductions included, with `precision.emulate.Emulator`: pure float16 accumulation, where
  numpy's ``np.sum`` would accumulate float16 in float32.
- ``*_sr_s<k>`` (``compute_mode = "stochastic"``): the same with stochastic rounding, seed k
  (`SR_SEEDS` seeds per input: the spread over seeds is the rounding's own variability,
  `seed_spread`); family ``*_sr``, parameter ``seed`` = k. The generator is seeded by the
  input's bits and k, so a row is reproducible on any executor.
- ``*_float32``: what mixed-precision and float8 kernels do: the input (float8, float16,
  bfloat16) is converted exactly to float32, the textbook form runs in float32 and the output
  is rounded once, correctly, to the input's format (``formats.cast``). The row's format and
  ``compute_dtype`` are the input's format, its ``accumulator`` float32.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from precision.emulate import Emulator
from precision.formats import FORMATS, Format, cast, get_format
from precision.problems import cross_entropy, log_softmax, logsumexp, softmax, summation
from precision.problems.base import Variant

SR_SEEDS = 5
"""Stochastic-rounding variants per input (seeds 0 .. SR_SEEDS - 1)."""


# ---------------------------------------------------------------- emulated forms


def _emulator(x: np.ndarray, **options) -> Emulator:
    return Emulator(get_format(x.dtype), **options)


def sr_seed(x: np.ndarray, k: int) -> tuple[int, int, int]:
    """The seed of stochastic-rounding variant k on input x: the input's float64 bytes (hashed)
    and k, with a tag apart from the random-order variants' seeds."""
    digest = hashlib.blake2b(np.asarray(x, dtype=np.float64).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little"), 0x5352, k


def recursive_sum_emulated(x: np.ndarray, *, seed: int | None = None) -> np.ndarray:
    """Left to right with a format accumulator; stochastic rounding when ``seed`` is given
    (in float64 from each exact sum, found by TwoSum)."""
    em = _emulator(x) if seed is None else _emulator(x, rounding="stochastic", seed=seed)
    return em.result(np.array([em.sum_recursive(em.values(x))]))


def pairwise_sum_emulated(x: np.ndarray) -> np.ndarray:
    """Pairwise with a format accumulator (the same tree as `summation.pairwise_sum`)."""
    em = _emulator(x)
    return em.result(np.array([em.sum_pairwise(em.values(x))]))


def _shifted_terms(em: Emulator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """z = x - max x, e = exp(z) and s = sum e (recursive), each operation rounded."""
    v = em.values(x)
    z = em.sub(v, v.max())
    e = em.exp(z)
    return z, e, em.sum_recursive(e)


def softmax_shifted_emulated(x: np.ndarray) -> np.ndarray:
    """``exp(x - a) / sum(exp(x - a))`` with every operation and every addition rounded."""
    em = _emulator(x)
    _, e, s = _shifted_terms(em, x)
    return em.result(em.div(e, s))


def logsumexp_shifted_emulated(x: np.ndarray) -> np.ndarray:
    """``a + log(sum(exp(x - a)))`` with every operation and every addition rounded."""
    em = _emulator(x)
    _, _, s = _shifted_terms(em, x)
    a = float(np.max(em.values(x)))
    return em.result(em.add(a, em.log(np.array([s]))))


def log_softmax_shifted_emulated(x: np.ndarray) -> np.ndarray:
    """``z - log(sum(exp(z)))`` with z = x - max x, every operation and addition rounded."""
    em = _emulator(x)
    z, _, s = _shifted_terms(em, x)
    return em.result(em.sub(z, em.log(np.array([s]))))


def sr_bound(x: np.ndarray, fmt: Format) -> float:
    """Worst case of recursive summation with stochastic rounding: each rounding errs by less
    than one gap, 2u relative, so Higham's gamma_{n-1} kappa_sum holds with u -> 2u (the
    probabilistic bound, about sqrt(n) 2u kappa_sum, is what it meets in practice:
    Connolly, Higham & Mary 2021)."""
    return summation._relative(summation.gamma(np.size(x) - 1, 2 * fmt.u), x, fmt)


def stochastic_sum_variants(name: str = "recursive_sr") -> dict[str, Variant]:
    """``{name}_s0 .. {name}_s<SR_SEEDS-1>``: recursive sums with stochastic rounding, family
    ``name``, parameter ``seed`` = k."""
    return {
        f"{name}_s{k}": Variant(
            f"{name}_s{k}",
            lambda x, k=k: recursive_sum_emulated(x, seed=sr_seed(x, k)),
            sr_bound,
            description=f"recursive sum, format accumulator, stochastic rounding (seed {k})",
            compute_mode="stochastic",
            family=name,
            params={"seed": k},
        )
        for k in range(SR_SEEDS)
    }


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

    The `stochastic_rows` (``recursive_sr_s0`` ...) are grouped by their family
    (``recursive_sr``), each input's errors over seeds are summarised, and those summaries are
    averaged over inputs. ``rel_error`` is signed-free (the row's normwise relative error), in
    units of the format's u.

    Returns
    -------
    pandas.DataFrame
        Columns problem, format, variant (the family, ``recursive_sr``), inputs, seeds,
        mean_err_over_u (mean over inputs of the mean over seeds), spread_over_u (mean over
        inputs of max - min over seeds), max_err_over_u, and nearest_err_over_u: the mean
        error of the round-to-nearest variant the family rounds stochastically (the family
        without its ``_sr``: ``recursive``) on the same inputs, where the table has it.
    """
    rows = table[stochastic_rows(table)]
    rows = rows[rows["outcome"] == "ok"].assign(stem=lambda t: t["family"])
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
    its result rounded once to the input's format."""

    def run(x: np.ndarray) -> np.ndarray:
        wide = np.float64 if x.dtype == np.float64 else np.float32
        y = compute(x.astype(wide))
        return cast(y, get_format(x.dtype))

    run.__doc__ = f"{compute.__name__} in float32, the result rounded once to the format."
    return run


def widened_bound(
    inner: Callable[[np.ndarray, Format], float],
    compute: Callable[[np.ndarray], np.ndarray],
) -> Callable[[np.ndarray, Format], float]:
    """inner's bound in float32, plus the final rounding to the format: u + (1 + u) inner,
    and half the subnormal quantum relative to max|y| for outputs in the subnormal range
    (float8's range is narrow: softmax outputs below 2**-6 are subnormal in e4m3fn)."""

    def bound(x: np.ndarray, fmt: Format) -> float:
        if fmt.p >= FORMATS["float32"].p:
            return inner(x, fmt)
        with np.errstate(all="ignore"):
            top = float(np.max(np.abs(compute(np.asarray(x, dtype=np.float64)))))
        inside = inner(x.astype(np.float32), FORMATS["float32"])
        return fmt.u + (1 + fmt.u) * inside + fmt.min_subnormal / (2 * top)

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
    )


def _emulated_variant(name: str, compute, bound) -> Variant:
    return Variant(
        name,
        compute,
        bound,
        description="every operation rounded to the format, reductions included",
        compute_mode="emulated",
    )


def extra_variants(problem: str) -> dict[str, Variant]:
    """The emulated, stochastic and float32-accumulated variants of ``problem`` (may be none)."""
    if problem == "summation":
        return {
            "recursive_emulated": _emulated_variant(
                "recursive_emulated", recursive_sum_emulated, summation.recursive_bound
            ),
            "pairwise_emulated": _emulated_variant(
                "pairwise_emulated", pairwise_sum_emulated, summation.pairwise_bound
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
