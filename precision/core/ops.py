"""Arithmetic as an object: one algorithm body, evaluated in several arithmetics.

A textbook kernel is written once against an ``ops`` object, the way a reference is written
once against a number system (`precision.core.numbers`) and SciPy's functions take an array
namespace ``xp``::

    def softmax_shifted(x, *, ops=NUMPY):
        v = ops.values(x)
        e = ops.exp(ops.sub(v, ops.max(v)))
        return ops.result(ops.div(e, ops.sum(e)))

Two arithmetics implement the interface (`Ops`):

- `NUMPY` (`NumpyOps`): plain numpy operations on the array in its own dtype, as numpy and
  ml_dtypes execute them (float16 elementwise operations computed in float32 and rounded once;
  ``np.sum`` of float16 accumulated in float32, of bfloat16 left to right in bfloat16:
  ../shared/NUMERICS.md). This is what the textbook variants run (``compute_mode`` native).
- `precision.core.emulate.Emulator`: every operation, each addition of a reduction included,
  rounded to the format (``compute_mode`` emulated or stochastic).

Every operation is elementwise (with broadcasting) or reduces along the last axis keeping it
(length 1), so one body computes one input ``(n,)`` or a batch ``(batch, n)``, each row on its
own.

Reductions. ``sum(a, order=...)`` names its order, since the order is the algorithm:
``"recursive"`` (left to right, s_k = fl(s_{k-1} + a_k)) and ``"pairwise"`` (`pairwise_tree`)
are the same sequence of additions in every arithmetic; ``order=None`` is the arithmetic's own
reduction: ``np.sum`` for `NUMPY`, left to right for the `Emulator`. Bounds (Higham, *Accuracy
and Stability of Numerical Algorithms*, 2nd ed. 2002, ch. 4), gamma_k = k u / (1 - k u):
recursive |E| <= gamma_{n-1} sum|a_i|, pairwise gamma_{ceil(log2 n)} sum|a_i|, with u the unit
roundoff of the accumulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np

__all__ = ["NUMPY", "SUM_ORDERS", "NumpyOps", "Ops", "SumOrder", "pairwise_tree"]

SumOrder = Literal["recursive", "pairwise"]
SUM_ORDERS: tuple[str, ...] = ("recursive", "pairwise")


class Ops(Protocol):
    """The operations an algorithm body may use (module docstring); `NumpyOps` and
    `precision.core.emulate.Emulator` implement them."""

    def values(self, x: np.ndarray) -> np.ndarray: ...

    def result(self, y: np.ndarray) -> np.ndarray: ...

    def add(self, a, b) -> np.ndarray: ...

    def sub(self, a, b) -> np.ndarray: ...

    def mul(self, a, b) -> np.ndarray: ...

    def div(self, a, b) -> np.ndarray: ...

    def sqrt(self, a) -> np.ndarray: ...

    def exp(self, a) -> np.ndarray: ...

    def log(self, a) -> np.ndarray: ...

    def log1p(self, a) -> np.ndarray: ...

    def max(self, a) -> np.ndarray: ...

    def sum(self, a, *, order: SumOrder | None = None) -> np.ndarray: ...


def check_order(order: str | None) -> None:
    """Raise a ValueError naming ``order`` unless it is None or one of `SUM_ORDERS`."""
    if order is not None and order not in SUM_ORDERS:
        raise ValueError(f"order must be None or one of {SUM_ORDERS}, got {order!r}")


def pairwise_tree(s: np.ndarray, add: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Pairwise summation along the last axis: adjacent pairs added level by level.

    s^(0) = s; s^(l+1)_j = add(s^(l)_{2j}, s^(l)_{2j+1}), an odd level first padded with -0
    of s's dtype (x + (-0) = x exactly for every x, +0 and -0 included, so the padding never
    rounds and never changes a sign: a +0 pad turned a sum of -0s into +0). After
    ceil(log2 n) levels one value per row remains, shape ``s.shape[:-1] + (1,)``; every term
    meets at most ceil(log2 n) roundings, hence |E| <= gamma_{ceil(log2 n)} sum|s_i| (Higham
    2002, (4.6)). The rows of a batch share the tree, so each row's sum is its sum alone. An
    empty last axis is returned as it is.

    Parameters
    ----------
    s : numpy.ndarray
        The terms, one vector or a batch of rows.
    add : callable
        The addition of the arithmetic (``np.add``, or `Emulator.add`, which rounds).
    """
    while s.shape[-1] > 1:
        if s.shape[-1] % 2:
            s = np.concatenate([s, np.full((*s.shape[:-1], 1), -0.0, dtype=s.dtype)], axis=-1)
        s = add(s[..., 0::2], s[..., 1::2])
    return s


class NumpyOps:
    """numpy's own arithmetic in the array's dtype (module docstring): each method is the
    numpy call a hand-written numpy kernel would make, so a body run with `NUMPY` is that
    kernel, bit for bit. ``values`` and ``result`` are the identity (no conversion)."""

    def __repr__(self) -> str:
        return "NUMPY"

    def values(self, x: np.ndarray) -> np.ndarray:
        """x as an array, unchanged (no copy, no cast)."""
        return np.asarray(x)

    def result(self, y: np.ndarray) -> np.ndarray:
        """y unchanged: numpy's operations already return the format's dtype."""
        return y

    def add(self, a, b) -> np.ndarray:
        """``np.add``: fl(a + b) in the dtype (float16 via float32, one rounding)."""
        return np.add(a, b)

    def sub(self, a, b) -> np.ndarray:
        """``np.subtract``: fl(a - b) in the dtype."""
        return np.subtract(a, b)

    def mul(self, a, b) -> np.ndarray:
        """``np.multiply``: fl(a * b) in the dtype."""
        return np.multiply(a, b)

    def div(self, a, b) -> np.ndarray:
        """``np.divide``: fl(a / b) in the dtype."""
        return np.divide(a, b)

    def sqrt(self, a) -> np.ndarray:
        """``np.sqrt``: correctly rounded in every dtype numpy computes it in."""
        return np.sqrt(a)

    def exp(self, a) -> np.ndarray:
        """``np.exp`` in the dtype: not always correctly rounded (float16 misrounds 4 of
        63,488 finite inputs, ../shared/NUMERICS.md)."""
        return np.exp(a)

    def log(self, a) -> np.ndarray:
        """``np.log`` in the dtype (libm accuracy, not always correctly rounded)."""
        return np.log(a)

    def log1p(self, a) -> np.ndarray:
        """``np.log1p`` in the dtype (libm accuracy)."""
        return np.log1p(a)

    def max(self, a) -> np.ndarray:
        """``np.max`` along the last axis, kept (exact; a NaN in a row gives NaN)."""
        return np.max(a, axis=-1, keepdims=True)

    def sum(self, a, *, order: SumOrder | None = None) -> np.ndarray:
        """The sum of each row along the last axis, shape ``a.shape[:-1] + (1,)``.

        Parameters
        ----------
        a : numpy.ndarray
        order : {None, "recursive", "pairwise"}, keyword-only
            None: ``np.sum(a, axis=-1, keepdims=True)`` as numpy sums it (pairwise in blocks of
            8 within 128 terms; float16 in a float32 accumulator rounded once, bfloat16 left to
            right in bfloat16; over a C-contiguous last axis each row as a vector alone).
            "recursive": ``np.add.accumulate`` along the last axis, a sequential loop in the
            dtype for float16, bfloat16, float32 and float64 alike (unlike ``np.sum``, which
            accumulates float16 in float32): |E| <= gamma_{n-1} sum|a_i|. "pairwise":
            `pairwise_tree` with ``np.add``: |E| <= gamma_{ceil(log2 n)} sum|a_i|.
        """
        check_order(order)
        if np.shape(a)[-1] == 0:  # an empty row sums to 0 in every order
            return np.sum(a, axis=-1, keepdims=True)
        if order == "recursive":
            return np.add.accumulate(a, axis=-1)[..., -1:]
        if order == "pairwise":
            return pairwise_tree(np.asarray(a), np.add)
        return np.sum(a, axis=-1, keepdims=True)


NUMPY = NumpyOps()
"""numpy's arithmetic in the array's dtype: the default ``ops`` of every textbook kernel."""
