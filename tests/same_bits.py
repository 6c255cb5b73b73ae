"""Comparing results bit for bit, as the batch contract does (shared by the tests of kernels)."""

from __future__ import annotations

import numpy as np


def nan_blind(y, fmt: str | None = None) -> bytes:
    """The bytes of ``y`` with every NaN made the same NaN; other values compared bit for bit
    (-0 apart from +0).

    A NaN's sign and payload are not measured (its outcome is nan, its ulps the format's span),
    and they depend on how a result was computed: ml_dtypes' float8 scalar arithmetic keeps a
    NaN operand's sign where its array loops give +NaN, and numpy's loops choose them
    differently by array length. With ``fmt`` given, NaNs are made alike only in float8
    formats (the only ones where the tests' kernels differ so)."""
    y = np.array(getattr(y, "y", y))
    if fmt is not None and not fmt.startswith("float8"):
        return np.ascontiguousarray(y).tobytes()
    with np.errstate(invalid="ignore"):
        nan = np.isnan(y.astype(np.float64))
    y[nan] = np.nan
    return np.ascontiguousarray(y).tobytes()


def check_batch_contract(variant, X: np.ndarray, fmt: str) -> None:
    """The batch contract of a variant whose result per input is one value: ``kernel(X)`` is
    ``(B, 1)`` in X's dtype, row i is the kernel on ``X[i:i+1]`` and on ``X[i]`` alone (NaNs
    alike, `nan_blind`), and ``bound(X)`` is the ``(B,)`` array of each row's float bound."""
    from precision.core.formats import get_format

    f = get_format(fmt)
    Y = variant.kernel(X)
    bounds = variant.bound(X, f)
    assert Y.shape == (len(X), 1) and Y.dtype == X.dtype and bounds.shape == (len(X),)
    for i, x in enumerate(X):
        assert nan_blind(variant.kernel(X[i : i + 1])[0], fmt) == nan_blind(Y[i], fmt)
        assert nan_blind(variant.kernel(x), fmt) == nan_blind(Y[i], fmt)
        one = variant.bound(x, f)
        assert isinstance(one, float)
        assert one == bounds[i] or (np.isnan(one) and np.isnan(bounds[i]))


def truth_bits(truth) -> tuple:
    """Every field of a GroundTruth but its seconds, as bytes where it is an array."""
    e = truth.exact
    return (
        e.hi.tobytes(),
        e.lo.tobytes(),
        e.exp.dtype.str,
        e.exp.tobytes(),
        e.rounded.dtype.str,
        e.rounded.tobytes(),
        np.float64(truth.cond).tobytes(),
        truth.prec,
        truth.certified,
        truth.engine,
    )
