"""The exponential itself: where each format overflows and underflows.

exp(x) overflows for x > ln(max) (float16 11.09, bfloat16 88.72, float32 88.72, float64 709.78)
and underflows to zero below ln(min_subnormal / 2). Inputs are scalars (shape (1,)); the
variant takes a batch of them, ``(batch, 1)``.
"""

from __future__ import annotations

import numpy as np

from precision.core.formats import Format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant, kernel_error


def exp_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """exp(x) and its condition number |x| (relative: d exp / exp = dx = x * (dx / x))."""
    (v,) = ctx.exact_list(x)
    return np.array([ctx.exp(v)], dtype=object), ctx.abs(v)


def exp_numpy(x: np.ndarray) -> np.ndarray:
    """``np.exp`` in the input's format (float16/bfloat16 are evaluated in float32 and rounded),
    elementwise: one input ``(1,)`` or a batch ``(batch, 1)``."""
    return np.exp(x)


def exp_bound(x: np.ndarray, fmt: Format) -> float | np.ndarray:
    """The kernel's documented accuracy (`kernel_error`): 2.52 ulps for numpy's float32 exp, one
    ulp for float64, one rounding (plus the float32 kernel's error) for float16 and bfloat16.
    NaN outside the normal range, where relative error is not bounded that way. A float for one
    input ``(1,)``, a ``(batch,)`` array for a batch ``(batch, 1)``."""
    with np.errstate(all="ignore"):  # exp(x) of an input far outside the range overflows
        value = np.exp(np.asarray(x, dtype=np.float64)[..., 0])
    in_range = (fmt.min_normal <= value) & (value <= fmt.max)
    bound = np.where(in_range, kernel_error("exp", fmt), np.nan)
    return float(bound) if bound.ndim == 0 else bound


def propose_scalars(rng, *, n: int, magnitude, cond, size: int) -> np.ndarray:
    """Scalars of either sign with |x| = magnitude (the condition number is |x| itself);
    ``magnitude`` a float or one target per candidate (shape (size,))."""
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))[:, None]
    sign = rng.choice([-1.0, 1.0], size=(size, 1))
    return sign * magnitude * 10.0 ** rng.uniform(-0.05, 0.05, size=(size, 1))


def _per_input(values: np.ndarray) -> float | np.ndarray:
    """A float for one input, the (batch,) array for a batch."""
    return float(values) if np.ndim(values) == 0 else values


def estimate_scalars(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mag = np.abs(X[:, 0])
    return mag, mag


def _same_decades(n: int, cond_decade: int, mag_decade: int) -> bool:
    """The estimate's condition number is its magnitude, the same float: only the cells on the
    diagonal (cond decade = magnitude decade) can be reached."""
    return cond_decade == mag_decade


# Lets the sampler skip the cells off the diagonal (see `precision.run.sampling.reachable`).
estimate_scalars.reachable = _same_decades


EXP = Problem(
    name="exp",
    description="exp(x) for scalar x: overflow and underflow thresholds per format",
    reference=exp_reference,
    magnitude=lambda x: _per_input(np.abs(np.asarray(x, dtype=np.float64)).max(axis=-1)),
    propose=propose_scalars,
    estimate=estimate_scalars,
    variants={"numpy": Variant("numpy", exp_numpy, bound=exp_bound, batched=True)},
    input_shape=lambda n: (1,),
    extras=lambda x: {"x_max": _per_input(np.asarray(x, dtype=np.float64).max(axis=-1))},
    batched=True,
    takes_sizes=False,
)
