"""Tests of precision.core.ops: the reductions of `NUMPY` and the `Emulator` agree on the
edges of IEEE arithmetic (signed zeros, empty rows) in every order."""

from __future__ import annotations

import numpy as np
import pytest

from precision.core.emulate import Emulator
from precision.core.formats import get_format
from precision.core.ops import NUMPY, SUM_ORDERS

FORMATS = ["float16", "bfloat16", "float32", "float64"]
ORDERS = [*SUM_ORDERS, None]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_a_sum_of_negative_zeros_is_negative_zero(fmt, n, order):
    """(-0) + (-0) = -0 in round to nearest, at every step of every order: a pairwise level
    of odd length must not be padded with +0 (which turned -0 into +0). `NUMPY` without an
    order is ``np.sum`` as numpy computes it, whatever it gives (it starts from +0)."""
    dtype = get_format(fmt).dtype
    x = np.full((2, n), -0.0, dtype=dtype)
    sums = [Emulator(fmt).sum(x.astype(np.float64), order=order)]
    sums += [] if order is None else [NUMPY.sum(x, order=order)]
    for total in sums:
        assert total.shape == (2, 1)
        assert (total == 0).all() and np.signbit(total.astype(np.float64)).all(), (order, total)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_row_sums_to_zero_in_every_order(fmt, order):
    x = np.zeros((3, 0), dtype=get_format(fmt).dtype)
    for total in (NUMPY.sum(x, order=order), Emulator(fmt).sum(x.astype(np.float64), order=order)):
        assert total.shape == (3, 1) and (total == 0).all()
