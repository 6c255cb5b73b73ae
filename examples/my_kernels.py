"""A user's own kernels, measured by precision without touching the package.

Two kernels for built-in problems and one new problem with its kernels. Every kernel is a batch
kernel, as deep-learning code calls kernels: ``X`` has shape ``(batch, n)`` in the format's
dtype, rows are independent, and the result keeps the batch axis first.

Run it: ``precision run examples/my_kernels.toml --quick`` (the spec names this module in
``plugins``), or in Python::

    import precision as pr
    import my_kernels
    pr.evaluate(my_kernels.fused_exp2, [1.0, 2.0, 3.0], formats=["bfloat16"])
"""

from __future__ import annotations

import numpy as np

import precision as pr
from precision.core.numbers import MPMATH

LOG2_E = 1.4426950408889634  # log2(e), rounded to float64; rounded again to the format


@pr.kernel("softmax", name="fused_exp2", description="exp2((x - max) log2 e), normalised")
def fused_exp2(x: np.ndarray) -> np.ndarray:
    """Softmax through exp2, as fused GPU kernels compute it: the shift keeps every exponent
    <= 0, and log2(e) rounded to the format adds a relative error of about |x_i - max| u to
    each exponent (a cost the textbook shifted form does not pay)."""
    z = (x - x.max(axis=-1, keepdims=True)) * x.dtype.type(LOG2_E)
    e = np.exp2(z)
    return e / e.sum(axis=-1, keepdims=True)


@pr.kernel("logsumexp", name="float32_accumulate", accumulator="float32")
def float32_accumulate(x: np.ndarray) -> np.ndarray:
    """Shifted log-sum-exp with the exponentials summed in float32 and the result rounded
    once to the format (what mixed-precision kernels do); float64 stays float64."""
    wide = np.promote_types(x.dtype, np.float32)
    a = x.max(axis=-1, keepdims=True).astype(wide)
    s = np.exp(x.astype(wide) - a).sum(axis=-1, keepdims=True)
    return (a + np.log(s)).astype(x.dtype)


# ------------------------------------------------------------------ a new problem: sigmoid


def sigmoid_reference(x, ctx=MPMATH):
    """sigmoid(x_i) = 1 / (1 + exp(-x_i)) exactly, in any number system (mpmath or Arb), and
    the componentwise condition number max_i |x_i| (1 - sigmoid(x_i))."""
    values = ctx.exact_list(np.asarray(x).reshape(-1))
    y = [1 / (1 + ctx.exp(-v)) for v in values]
    cond = ctx.max([ctx.abs(v) * (1 - s) for v, s in zip(values, y, strict=True)])
    return np.array(y, dtype=object), cond


def propose_logits(rng, *, n: int, magnitude: float, cond: float, size: int) -> np.ndarray:
    """Vectors whose largest |x_i| is ``magnitude`` (the condition number follows it)."""
    x = rng.uniform(-1.0, 1.0, size=(size, n))
    return magnitude * x / np.abs(x).max(axis=1, keepdims=True)


def estimate(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 estimates of (condition number, magnitude) for a batch of candidates."""
    s = 1.0 / (1.0 + np.exp(-X))
    return (np.abs(X) * (1.0 - s)).max(axis=1), np.abs(X).max(axis=1)


SIGMOID = pr.register_problem(
    pr.Problem(
        name="sigmoid",
        description="logistic sigmoid 1 / (1 + exp(-x)), elementwise",
        reference=sigmoid_reference,
        magnitude=lambda x: float(np.abs(np.asarray(x, dtype=np.float64)).max()),
        propose=propose_logits,
        estimate=estimate,
        variants={},
    )
)


@pr.kernel("sigmoid", name="naive")
def sigmoid_naive(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)): exp(-x) overflows for x < -ln(max), giving 1 / inf = 0."""
    one = x.dtype.type(1)
    return one / (one + np.exp(-x))


@pr.kernel("sigmoid", name="stable")
def sigmoid_stable(x: np.ndarray) -> np.ndarray:
    """exp(-|x|) never overflows: 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0."""
    one = x.dtype.type(1)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, one / (one + e), e / (one + e))
