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
