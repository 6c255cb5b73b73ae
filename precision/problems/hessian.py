"""Jacobian and Hessian by finite differences, as matrices: the Hessian of log-sum-exp.

f(x) = lse(x) = log sum_i e^(x_i) has gradient softmax(x) = s and Hessian (the Jacobian of
softmax) H = diag(s) - s s^T, the curvature of the cross-entropy loss in its logits. Variant
families, each with the step ``h`` as its parameter (by default 2**-k, k = 1..30; every
operation in the input's format):

* ``jacobian_forward``: column j = (s(x + h e_j) - s(x)) / h, the Jacobian of the in-format
  softmax by forward differences (truncation O(h), rounding O(u / h));
* ``jacobian_central``: (s(x + h e_j) - s(x - h e_j)) / (2 h) (O(h^2), O(u / h));
* ``values``: the Hessian from values of lse alone, H_ij = (f(x + h e_i + h e_j)
  - f(x + h e_i - h e_j) - f(x - h e_i + h e_j) + f(x - h e_i - h e_j)) / (4 h^2) (truncation
  O(h^2), rounding O(u |f| / h^2): its optimum step is near u^(1/4), larger than the others').

The variants are batch kernels (`precision.problems.base.Variant` with ``batched=True``): one
input of shape (n,) gives the flattened matrix (n * n,), a batch (B, n) gives (B, n * n), every
row with the operations, order and dtype it meets alone (max and sum run along the last axis of
C-contiguous arrays, which numpy reduces row by row as it reduces one vector).

The output is the n x n matrix; rows compare it normwise (max-norm over the entries,
`precision.core.metrics.normwise_relative_error` of the flattened matrix). Condition number: the
componentwise-in-x, normwise-in-H relative condition number
kappa = ||x||_inf max_ij sum_k |dH_ij / dx_k| / max_ij |H_ij|, with
dH_ij / dx_k = H_ik delta_ij - H_ik s_j - s_i H_jk; magnitude max |x_i|.
"""

from __future__ import annotations

import functools

import numpy as np

from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems.base import Problem, Variant, numpy_sum_accumulator
from precision.problems.derivatives import propose_points

HESSIAN_STEPS = tuple(range(1, 31))
"""k of the steps h = 2**-k (0.5 down to 9.3e-10)."""


def softmax_shifted(x: np.ndarray) -> np.ndarray:
    """exp(x - max x) / sum, in the input's dtype (numpy's float16 sum accumulates in float32),
    along the last axis: (n,) gives (n,), a batch (B, n) gives (B, n)."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def lse_shifted(x: np.ndarray) -> np.ndarray:
    """max x + log(sum exp(x - max x)), in the input's dtype, along the last axis: (n,) gives
    (1,), a batch (B, n) gives (B, 1)."""
    a = np.max(x, axis=-1, keepdims=True)
    return a + np.log(np.sum(np.exp(x - a), axis=-1, keepdims=True))


def _unit(n: int, j: int, h, dtype) -> np.ndarray:
    """h e_j of length n; added to a batch (B, n) it steps every row along e_j."""
    e = np.zeros(n, dtype=dtype)
    e[j] = h
    return e


def jacobian_forward(x: np.ndarray, h: float) -> np.ndarray:
    """Forward-difference Jacobian of `softmax_shifted` (column j from a step along e_j):
    (n,) gives (n, n), a batch (B, n) gives (B, n, n)."""
    n = x.shape[-1]
    step, s0 = x.dtype.type(h), softmax_shifted(x)
    columns = [(softmax_shifted(x + _unit(n, j, step, x.dtype)) - s0) / step for j in range(n)]
    return np.stack(columns, axis=-1)


def jacobian_central(x: np.ndarray, h: float) -> np.ndarray:
    """Central-difference Jacobian of `softmax_shifted`: (n,) gives (n, n), a batch (B, n)
    gives (B, n, n)."""
    n = x.shape[-1]
    step, two = x.dtype.type(h), x.dtype.type(2)
    columns = []
    for j in range(n):
        e = _unit(n, j, step, x.dtype)
        columns.append((softmax_shifted(x + e) - softmax_shifted(x - e)) / (two * step))
    return np.stack(columns, axis=-1)


def hessian_from_values(x: np.ndarray, h: float) -> np.ndarray:
    """Second differences of `lse_shifted` (module docstring); i = j gives the step 2h. (n,)
    gives (n, n), a batch (B, n) gives (B, n, n).

    The values are those of the one-vector form this replaced (whose lse values were numpy
    scalars), bit for bit, except the sign bit of a NaN in float8: ml_dtypes' float8 scalar
    ``+`` and ``-`` return a NaN operand as it is (b's first for ``+``, a's first for ``-``),
    its array ``+`` and ``-`` (used here for one input as for a batch) may return a NaN of the
    other sign (measured with ml_dtypes 0.7). Only inputs that are NaN or infinite met it in
    the checks, and the outcome is NaN either way."""
    step, n = x.dtype.type(h), x.shape[-1]
    out = np.empty((*x.shape[:-1], n, n), dtype=x.dtype)
    for i in range(n):
        for j in range(n):
            ei, ej = _unit(n, i, step, x.dtype), _unit(n, j, step, x.dtype)
            total = (lse_shifted(x + ei + ej) - lse_shifted(x + ei - ej)) - (
                lse_shifted(x - ei + ej) - lse_shifted(x - ei - ej)
            )
            out[..., i, j] = (total / (x.dtype.type(4) * step * step))[..., 0]
    return out


def _flattened(H: np.ndarray) -> np.ndarray:
    """The matrix (n, n) as (n * n,), a batch (B, n, n) as (B, n * n), row-major."""
    return H.reshape(*H.shape[:-2], -1)


def lse_hessian_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """H = diag(s) - s s^T exactly, with 1 - s_i formed as sum_{j != i} e_j / S (no cancellation),
    and the condition number of the module docstring."""
    values = ctx.exact_list(x)
    top = int(np.argmax(np.asarray(x, dtype=np.float64)))  # the shift is taken from the floats
    e = [ctx.exp(v - values[top]) for v in values]
    total = ctx.fsum(e)
    s = [ei / total for ei in e]
    n = len(values)
    H = [
        [
            s[i] * ctx.fsum(e[k] for k in range(n) if k != i) / total if i == j else -s[i] * s[j]
            for j in range(n)
        ]
        for i in range(n)
    ]
    cond = _hessian_condition(values, s, H, ctx)
    return np.array([H[i][j] for i in range(n) for j in range(n)], dtype=object), cond


def _hessian_condition(values, s, H, ctx: NumberSystem) -> Number:
    n = len(values)
    if n == 1:  # lse of one value is the identity: its Hessian is exactly [0], cond infinite
        return ctx.inf
    worst = ctx.exact(0.0)
    for i in range(n):
        for j in range(n):
            row = [(H[i][k] if i == j else 0) - H[i][k] * s[j] - s[i] * H[j][k] for k in range(n)]
            worst = ctx.max([worst, ctx.fsum(ctx.abs(v) for v in row)])
    biggest = ctx.max([ctx.abs(v) for line in H for v in line])
    return ctx.max([ctx.abs(v) for v in values]) * worst / biggest


def estimate_hessian(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 condition number (the reference's formula) and magnitude of candidates."""
    e = np.exp(X - X.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    H = np.einsum("bi,ij->bij", s, np.eye(X.shape[1])) - s[:, :, None] * s[:, None, :]
    eye = np.eye(X.shape[1])
    dH = (
        np.einsum("bik,ij->bijk", H, eye)
        - np.einsum("bik,bj->bijk", H, s)
        - np.einsum("bi,bjk->bijk", s, H)
    )
    worst = np.abs(dH).sum(axis=3).max(axis=(1, 2))
    mag = np.abs(X).max(axis=1)
    return mag * worst / np.abs(H).max(axis=(1, 2)), mag


def propose_logits(rng, *, n: int, magnitude: float, cond: float, size: int) -> np.ndarray:
    """Logits with max |x_i| near ``magnitude`` (the condition number follows from it)."""
    base = propose_points(rng, n=1, magnitude=magnitude, cond=cond, size=size)
    return base * rng.uniform(-1.0, 1.0, size=(size, n))


STEPS = tuple(2.0**-k for k in HESSIAN_STEPS)
"""The default grid of h: 2**-k for every k of `HESSIAN_STEPS`."""


def hessian_variants() -> dict[str, Variant]:
    """The families ``jacobian_forward``, ``jacobian_central`` and ``values``, parameter ``h``
    (default grid `STEPS`); batch kernels ``kernel(X, h=...)`` (module docstring)."""
    methods = (
        ("jacobian_forward", jacobian_forward),
        ("jacobian_central", jacobian_central),
        ("values", hessian_from_values),
    )
    return {
        method: Variant(
            method,
            functools.partial(_hessian_kernel, fd),
            accumulator=numpy_sum_accumulator,
            description=f"{method} with step h",
            grid={"h": STEPS},
            batched=True,
        )
        for method, fd in methods
    }


def _hessian_kernel(fd, x: np.ndarray, *, h: float) -> np.ndarray:
    """The flattened Hessians ``fd(x, h)``, with h as the keyword a family's kernel takes."""
    return _flattened(fd(x, h))


FD_HESSIAN = Problem(
    name="fd_hessian",
    description="Hessian of log-sum-exp (Jacobian of softmax) by finite differences, h sweep",
    reference=lse_hessian_reference,
    magnitude=lambda x: float(np.abs(np.asarray(x, dtype=np.float64)).max()),
    propose=propose_logits,
    estimate=estimate_hessian,
    variants=hessian_variants(),
    input_shape=lambda n: (n,),
)
