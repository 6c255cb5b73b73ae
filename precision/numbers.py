"""Number systems the exact references are written over: mpmath and Arb ball arithmetic.

A problem's reference is written once, as ``reference(x, ctx)``, against the small interface
of `NumberSystem`: exact conversion of the input floats (``ctx.exact``, ``ctx.exact_list``),
the elementary functions the references need (``exp``, ``log1p``, ``log``, ``abs``, ``max``),
a sum of an iterable (``fsum``), ``inf``, and ordinary arithmetic through the operators of the
numbers themselves. Two systems implement it:

* `MPMATH`: mpmath numbers at the caller's working precision (``MPMATH.workprec(bits)`` is
  ``mpmath.workprec``). The reference engine: its results are certified by agreement of two
  precisions (`precision.exact`).
* `ARB`: python-flint's ``arb`` balls (Arb, Johansson 2017): each number is a midpoint and a
  rigorous radius, so one evaluation says how accurate it is. Its working precision is the
  global ``flint.ctx.prec``, which ``ARB.workprec(bits)`` sets and always restores.

Comparisons of balls are three-valued (``a != 0`` is False for a ball that contains 0), so the
references take decisions from the input floats themselves (the argmax of the logits), never
from comparing computed balls.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from typing import Any

import flint
import mpmath
import numpy as np

Number = Any
"""An exact or high-precision number of one system (``mpmath.mpf`` or ``flint.arb``)."""

__all__ = ["ARB", "MPMATH", "Number", "NumberSystem"]


class NumberSystem:
    """The operations a reference needs, for one kind of number (see the module docstring).

    Subclasses define ``name``, ``inf``, `exact`, the elementary functions and `workprec`;
    ``+ - * /`` and unary minus are the numbers' own operators.
    """

    name: str
    inf: Number

    def exact(self, value: float) -> Number:
        """The Python float ``value`` as an exact number (no rounding at any precision)."""
        raise NotImplementedError

    def exact_list(self, x) -> list:
        """Exact numbers of every value of an array, in C order.

        A float array of any registry format is viewed as float64 first (exact: every format
        is a subset of float64) and its ``tolist()`` gives Python floats; an object array is
        passed element by element to `exact` (see `MpmathNumbers.exact`).
        """
        values = np.asarray(x)
        if values.dtype != object:
            with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the flag
                values = values.astype(np.float64)
        return [self.exact(v) for v in values.ravel().tolist()]

    def workprec(self, bits: int) -> contextlib.AbstractContextManager:
        """A context in which this system computes with ``bits`` bits."""
        raise NotImplementedError

    def exp(self, v: Number) -> Number:
        raise NotImplementedError

    def log(self, v: Number) -> Number:
        raise NotImplementedError

    def log1p(self, v: Number) -> Number:
        raise NotImplementedError

    def fsum(self, values: Iterable[Number]) -> Number:
        """The sum of ``values`` (0 for none)."""
        raise NotImplementedError

    def abs(self, v: Number) -> Number:
        return abs(v)

    def max(self, values: Iterable[Number]) -> Number:
        """The largest of ``values`` (at least one)."""
        raise NotImplementedError


class MpmathNumbers(NumberSystem):
    """mpmath at the caller's working precision (``mpmath.workprec``)."""

    name = "mpmath"
    inf = mpmath.inf

    def exact(self, value: float | mpmath.mpf) -> mpmath.mpf:
        """``mpmath.mpf(value)`` would round to the working precision (below 53 bits inside a
        low ``workprec``); ``from_float`` converts at 53 bits, exactly. An mpf is returned as
        it is, so references also take the object arrays of `precision.exact.to_mpf_array`."""
        if isinstance(value, mpmath.mpf):
            return value
        return mpmath.mp.make_mpf(mpmath.libmp.from_float(float(value)))

    def workprec(self, bits: int) -> contextlib.AbstractContextManager:
        return mpmath.workprec(bits)

    def exp(self, v: mpmath.mpf) -> mpmath.mpf:
        return mpmath.exp(v)

    def log(self, v: mpmath.mpf) -> mpmath.mpf:
        return mpmath.log(v)

    def log1p(self, v: mpmath.mpf) -> mpmath.mpf:
        return mpmath.log1p(v)

    def fsum(self, values: Iterable[mpmath.mpf]) -> mpmath.mpf:
        """``mpmath.fsum``: the terms are added exactly, then rounded once."""
        return mpmath.fsum(values)

    def max(self, values: Iterable[mpmath.mpf]) -> mpmath.mpf:
        return max(values)


class ArbNumbers(NumberSystem):
    """python-flint ``arb`` balls at ``flint.ctx.prec`` (set by `workprec`, then restored)."""

    name = "arb"
    inf = flint.arb.pos_inf()

    def exact(self, value: float) -> flint.arb:
        """``arb(float)`` is an exact ball (radius 0) at every precision."""
        return flint.arb(float(value))

    @contextlib.contextmanager
    def workprec(self, bits: int) -> Iterator[None]:
        """Set flint's global precision to ``bits`` for the block and restore it after, also
        when the block raises: every arb operation rounds to ``flint.ctx.prec``, and a changed
        global would silently change every later computation in the process. Like
        ``mpmath.workprec`` it is not thread-safe (one global per process); the study runner
        uses processes."""
        saved = flint.ctx.prec
        flint.ctx.prec = bits
        try:
            yield
        finally:
            flint.ctx.prec = saved

    def exp(self, v: flint.arb) -> flint.arb:
        return v.exp()

    def log(self, v: flint.arb) -> flint.arb:
        return v.log()

    def log1p(self, v: flint.arb) -> flint.arb:
        return v.log1p()

    def fsum(self, values: Iterable[flint.arb]) -> flint.arb:
        """Left-to-right sum: each addition rounds the midpoint and adds its error to the
        radius, so the ball stays rigorous (no compensated summation is needed for that)."""
        return sum(values, flint.arb(0))

    def max(self, values: Iterable[flint.arb]) -> flint.arb:
        """A ball containing the maximum (``arb.max``), not a choice by comparing balls."""
        return functools.reduce(flint.arb.max, values)


MPMATH = MpmathNumbers()
"""The reference engine's number system."""

ARB = ArbNumbers()
"""Rigorous ball arithmetic (python-flint's Arb)."""
