"""Certified ground truth of exp and the softmax family over a whole batch in double-double.

The Arb engine evaluates, exports and certifies one ball per output element, about a
microsecond each, which caps it near a million elements per second (issue 14). For outputs
built from exp (exp, softmax, log_softmax, log-sum-exp, cross-entropy), a double-double
evaluation with a proved relative error bound (`precision.core.double_double.exp_scaled`,
2**-100) encloses every output as tightly as Arb at 113 bits would need to, in a few numpy
passes over the whole batch; the few scalars per input (1 / s, log1p(r)) are formed in Arb
from the double-double sum r. Each output becomes a ball
``mid = (hi + lo) * 2**scale`` with ``rad = eps * |mid|`` (eps the proved bound), and
`precision.truth.balls.decide` certifies and rounds it exactly as it does Arb's exported
balls: the rounding to every format is certain, and the stored `Exact` split is the midpoint's.

An input is accepted only when every one of its balls certifies in every format and its
condition number is accurate, as the Arb engine accepts one; every other input (an element
beyond the evaluation's domain, a midpoint within about 2**-100 of a rounding boundary) takes
the Arb engine. Both `precision.truth.exact.ground_truths` and
`precision.truth.batch.ground_truths_batch` take this path first (the per-input call on a batch
of one), so an input's truth does not depend on which of them computed it. Its rows say
``gt_prec`` = `DD_PREC`.

The midpoints are not Arb's: a truth computed here differs from the Arb engine's in the last
bits of its `Exact` split (both within 2**-99 of the exact value), never in a rounded value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import flint
import numpy as np

from precision.core import double_double as dd
from precision.core.formats import Format
from precision.core.numbers import ARB
from precision.problems import logits
from precision.problems.base import Problem
from precision.problems.cross_entropy import (
    cross_entropy_condition_enclosed,
    cross_entropy_reference,
)
from precision.problems.exp import exp_reference
from precision.problems.log_softmax import log_softmax_condition_enclosed, log_softmax_reference
from precision.problems.logsumexp import logsumexp_condition_enclosed, logsumexp_reference
from precision.problems.softmax import softmax_condition_enclosed, softmax_reference
from precision.truth.balls import Decisions, Midpoints, decide, export

__all__ = ["DD_PREC", "ENCLOSURES", "Enclosed", "certify", "enclosure_for"]

DD_PREC = 106
"""The ``prec`` (``gt_prec``) of a truth certified here: double-double, 2 x 53 bits."""


@dataclass(frozen=True)
class Enclosed:
    """The outputs of a batch of inputs as balls, with their condition numbers.

    Attributes
    ----------
    mids : Midpoints
        ``batch * m`` balls, input by input (`precision.truth.balls`); ``valid`` False where
        the evaluation does not vouch for an output.
    m : int
        Outputs per input.
    cond : numpy.ndarray
        ``(batch,)`` float64: the condition number, as ``float(cond.mid())`` of the reference.
    cond_accurate : numpy.ndarray
        ``(batch,)`` bool: the condition number is within COND_ACCURACY.
    """

    mids: Midpoints
    m: int
    cond: np.ndarray
    cond_accurate: np.ndarray


Evaluator = Callable[[np.ndarray], "Enclosed | None"]

ENCLOSURES: dict[Callable, Evaluator] = {}
"""Reference function -> its double-double evaluator over a batch ``(batch, *input_shape)``
(None where it does not apply to the batch's shape). Keyed by the function itself, so that a
problem with another reference (a user's) never meets it."""


def enclosure_for(
    problem: Problem, *, engine: str = "arb", shortcut: bool = True, precisions=(DD_PREC,)
) -> Evaluator | None:
    """The double-double evaluator of ``problem``'s reference where the arb engine takes it
    (`ground_truths` and `ground_truths_batch` ask here, so both follow one rule), or None:
    another engine, ``shortcut=False`` (the balls forced), a precision ladder capped below
    DD_PREC bits, a reference bound to parameters, or an undeclared one."""
    if engine != "arb" or not shortcut or precisions[-1] < DD_PREC or problem.params:
        return None
    return ENCLOSURES.get(problem.reference)


def certify(found: Enclosed, fmts: list[Format], tolerance_denominator: int):
    """(accepted, decisions): the inputs whose every ball certifies in every format and whose
    condition number is accurate (``(batch,)`` bool), and `balls.decide`'s `Decisions` of all
    balls (``batch * m``)."""
    decided: Decisions = decide(found.mids, fmts, tolerance_denominator)
    batch = len(found.cond)
    accepted = decided.certified.reshape(batch, found.m).all(axis=1) & found.cond_accurate
    return accepted, decided


def accuracy_of(eps) -> np.ndarray:
    """The `Midpoints.accuracy` of balls of radius ``eps * |mid|``: the integer a with
    2**-(a + 2) < eps < 2**-a (a = floor(-log2 eps) - 1), as Arb's ``rel_accuracy_bits``
    describes a radius."""
    return (np.floor(-np.log2(np.asarray(eps, dtype=np.float64))) - 1).astype(np.int64)


def exp_enclosed(X: np.ndarray) -> Enclosed | None:
    """exp of a batch of scalars ``(batch, 1)``: `dd.exp_scaled`, radius EXP_ERROR
    relative (over 1 - EXP_ERROR, from |true| to |mid|). The condition number is |x|, exact
    (as `exp_reference` forms it); |x| beyond EXP_DOMAIN, an infinity or a NaN is left to
    Arb."""
    if X.ndim != 2 or X.shape[1] != 1:
        return None
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        x = X.astype(np.float64)[:, 0]
    valid = np.abs(x) <= dd.EXP_DOMAIN  # NaN compares False
    k, hi, lo = dd.exp_scaled(np.where(valid, x, 0.0), np.zeros_like(x))
    eps = dd.EXP_ERROR / (1 - dd.EXP_ERROR)
    mids = Midpoints(
        hi=hi,
        lo=lo,
        accuracy=np.full(len(x), accuracy_of(eps), dtype=np.int64),
        valid=valid,
        zero=np.zeros(len(x), dtype=bool),
        scale=k,
    )
    return Enclosed(mids, 1, np.abs(x), np.ones(len(x), dtype=bool))


ENCLOSURES[exp_reference] = exp_enclosed


# ---------------------------------------------------------------- the softmax family
#
# Per element: the shifted exponentials e_i = exp(x_i - a) (a = max x, x_i - a exact as a
# double-double) and, for softmax and log_softmax, one double-double operation each. Per input:
# r = sum_{i != m} e_i (a double-double tree over the row) and one or two scalar operations
# in Arb (1 / s, log1p(r), the final sums of log-sum-exp and cross-entropy), which need no
# per-element work. The condition numbers are the references' own float64 interval formulas
# (`precision.problems.logits.Enclosure`) on bounds of e_i, s and r.

SCALAR_PREC = 128
"""Arb working precision of the per-input scalars: their radii (about 2**-126) add nothing
that matters beside the double-double terms' 2**-100."""

TINY_OUTPUT = 2.0**-900
"""Smallest |output| exported unscaled: below it a double-double's low part may be subnormal,
so the input takes Arb (log_softmax of an r below 2**-900)."""

_OUTWARD = 1.0 + 2.0**-40
"""Factor that rounds a float64 error bound, formed in a few roundings, up."""


@dataclass(frozen=True)
class _Terms:
    """The shifted exponentials of a batch of logit vectors ``(batch, n)``, in double-double.

    ``e = 2**k (e_hi + e_lo)`` within EXP_ERROR (exactly 1 at the maximum ``m``);
    ``r = 2**K (rho_hi + rho_lo)`` within ``rho_eps`` relative (rows of one logit: r = 0);
    ``ok``: rows the evaluation vouches for (finite logits, shifts within EXP_DOMAIN).
    """

    floats: np.ndarray
    m: np.ndarray
    d_hi: np.ndarray
    d_lo: np.ndarray
    k: np.ndarray
    e_hi: np.ndarray
    e_lo: np.ndarray
    big_k: np.ndarray
    rho_hi: np.ndarray
    rho_lo: np.ndarray
    rho_eps: np.ndarray
    ok: np.ndarray


def _shifted_exponentials(X: np.ndarray) -> _Terms:
    """`_Terms` of logit vectors ``(batch, n)``, n >= 2."""
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        floats = X.astype(np.float64)
    batch, n = floats.shape
    ok = np.isfinite(floats).all(axis=1)
    floats = np.where(ok[:, None], floats, 0.0)
    rows = np.arange(batch)
    m = np.argmax(floats, axis=1)  # the first of ties, as `logits.exp_terms`
    with np.errstate(over="ignore", invalid="ignore"):
        d_hi, d_lo = dd.two_sum(floats, -floats[rows, m][:, None])  # exact: x_i - a
    ok &= (np.abs(d_hi) <= dd.EXP_DOMAIN).all(axis=1)  # an overflowed difference is inf
    d_hi = np.where(ok[:, None], d_hi, 0.0)
    d_lo = np.where(ok[:, None], d_lo, 0.0)
    k, e_hi, e_lo = dd.exp_scaled(d_hi, d_lo)
    k[rows, m], e_hi[rows, m], e_lo[rows, m] = 0, 1.0, 0.0  # exp(0), exactly
    big_k, rho_hi, rho_lo, rho_eps = _rest_sum(k, e_hi, e_lo, m)
    return _Terms(floats, m, d_hi, d_lo, k, e_hi, e_lo, big_k, rho_hi, rho_lo, rho_eps, ok)


def _rest_sum(k, e_hi, e_lo, m):
    """r = sum_{i != m} 2**k_i (e_hi + e_lo)_i per row, as 2**K (hi + lo) with its relative
    error bound.

    K is the largest k_i (i != m), so the largest term is at least 0.70 and r >= 0.70 * 2**K.
    Terms below 2**(K - 960) are dropped (with them, the scaled low parts stay normal and every
    scaling is exact): at most n * 1.43 * 2**-960 of r's scale, n * 2**-958 relative. The rest
    are added as double-doubles, pairwise: every term is positive, so each of the
    ceil(log2 n) levels adds at most ERROR relative to the exact sum of its computed operands,
    and the terms' own EXP_ERROR carries over unchanged.
    """
    batch, n = k.shape
    rows = np.arange(batch)
    others = k.copy()
    others[rows, m] = np.iinfo(np.int64).min
    big_k = others.max(axis=1)
    shift = others - big_k[:, None]
    kept = shift >= -960
    kept[rows, m] = False
    shift = np.where(kept, shift, 0).astype(np.int32)
    hi = np.where(kept, np.ldexp(e_hi, shift), 0.0)
    lo = np.where(kept, np.ldexp(e_lo, shift), 0.0)
    levels = 0
    while hi.shape[1] > 1:
        if hi.shape[1] % 2:
            hi = np.concatenate([hi, np.zeros((batch, 1))], axis=1)
            lo = np.concatenate([lo, np.zeros((batch, 1))], axis=1)
        half = hi.shape[1] // 2
        hi, lo = dd.add(hi[:, :half], lo[:, :half], hi[:, half:], lo[:, half:])
        levels += 1
    eps = (dd.EXP_ERROR + levels * dd.ERROR + n * 2.0**-958) * _OUTWARD
    return big_k, hi[:, 0], lo[:, 0], np.full(batch, eps)


def _rest_ball(terms: _Terms, b: int) -> flint.arb:
    """r of row ``b`` as an Arb ball (its double-double, exact at SCALAR_PREC + 53 bits of span,
    scaled by 2**K exactly, widened by its error bound)."""
    mid = flint.arb(float(terms.rho_hi[b])) + flint.arb(float(terms.rho_lo[b]))
    rad = float(terms.rho_eps[b]) * abs(float(terms.rho_hi[b])) * _OUTWARD
    return (mid + flint.arb(0, rad)) * _power_of_two(int(terms.big_k[b]))


def _power_of_two(exp: int) -> flint.arb:
    return flint.arb(flint.arf((1, exp)))


def _double_double(ball: flint.arb) -> tuple[float, float, float] | None:
    """(hi, lo, eps): a normalised double-double within eps relative of every point of the
    ball, or None (a ball that is not finite, contains 0, or is below TINY_OUTPUT).

    hi = float(mid), lo = float(mid - hi) with the difference exact (hi is within an ulp of
    mid, so the difference spans fewer bits than mid, at most the working precision); float
    may round either way (older python-flint truncates), so |lo| <= 2.01 u |mid| and
    |mid - hi - lo| <= 2 u |lo| <= 4.03 u**2 |mid|; the radius adds rad / |ball|.
    """
    bounds = ARB.bound(ball)
    if bounds is None or not (bounds[0] > TINY_OUTPUT or bounds[1] < -TINY_OUTPUT):
        return None
    mid = ball.mid()
    hi = float(mid)
    lo = float(mid - hi)  # exact: hi is within an ulp of mid, so the difference fits mid's bits
    hi, lo = dd.fast_two_sum(hi, lo)
    rad = ARB.radius(ball)
    low = min(abs(bounds[0]), abs(bounds[1]))
    return hi, lo, (rad / low + 4.03 * dd.U * dd.U) * _OUTWARD


def _enclosure(terms: _Terms, s_hi: np.ndarray) -> logits.Enclosure:
    """The float64 bounds of the condition numbers' formulas (`logits.Enclosure`) for the
    whole batch: e_i from its double-double (within 2 u + EXP_ERROR of RN(2**k e_hi), inside
    the 2**-50 margin of `logits.down`/`up`, subnormal results included), s >= 1 and r
    likewise from their high parts. Rows that are not ``ok`` hold meaningless bounds."""
    v = np.ldexp(terms.e_hi, terms.k.astype(np.int32))
    e_lo, e_hi = logits.down(v), logits.up(v)
    r = np.ldexp(terms.rho_hi, np.maximum(terms.big_k, -1200).astype(np.int32))
    s_bounds = (np.maximum(logits.down(s_hi), 1.0), logits.up(s_hi))
    r_bounds = (logits.down(r), logits.up(r))
    ax = np.abs(terms.floats)
    enclosure = logits.Enclosure(ax, e_lo, e_hi, s_bounds, r_bounds, terms.m, ARB)
    enclosure.set_m(e_lo, 1.0)  # exp(0), exactly
    enclosure.set_m(e_hi, 1.0)
    return enclosure


def _cond_columns(balls: list) -> tuple[np.ndarray, np.ndarray]:
    """(float(cond.mid()), accurate) per input, None balls inaccurate (the Arb engine takes
    them), by the engine's own rule."""
    from precision.truth.exact import _accurate_condition  # exact imports this module

    cond = np.array([0.0 if c is None else float(c.mid()) for c in balls])
    accurate = np.array([c is not None and _accurate_condition(c) for c in balls], dtype=bool)
    return cond, accurate


def _logit_rows(X: np.ndarray) -> np.ndarray | None:
    """The logit vectors of a batch ``(batch, n)`` with n >= 2 (one logit: the Arb engine)."""
    if X.ndim != 2 or X.shape[1] < 2:
        return None
    return X


def _s_parts(terms: _Terms):
    """s = 1 + r per row as a double-double with its relative error bound: one addition
    (ERROR) to r's own error (at most rho_eps of r <= s); an r below 2**-900 is dropped
    (s = 1 within 2**-850 relative: r <= n 1.43 2**K)."""
    near = terms.big_k >= -900
    shift = np.clip(terms.big_k, -900, 0).astype(np.int32)
    r_hi = np.where(near, np.ldexp(terms.rho_hi, shift), 0.0)
    r_lo = np.where(near, np.ldexp(terms.rho_lo, shift), 0.0)
    ones = np.ones_like(r_hi)
    s_hi, s_lo = dd.add(ones, np.zeros_like(r_hi), r_hi, r_lo)
    eps = (dd.ERROR + terms.rho_eps) * _OUTWARD + np.where(near, 0.0, 2.0**-850)
    return s_hi, s_lo, eps


def _per_input_scalars(ok: np.ndarray, scalar: Callable[[int], flint.arb]):
    """(values, bounds, ok): ``scalar(b)`` in Arb at SCALAR_PREC for every input ``ok``,
    exported as a double-double with its error bound (`_double_double`: rows hi, lo, eps of
    ``values``) and its float bounds (rows lo, hi of ``bounds``, NaN elsewhere); an input whose
    ball cannot be exported is no longer ``ok`` (a copy)."""
    values, bounds, ok = np.zeros((3, len(ok))), np.full((2, len(ok)), np.nan), ok.copy()
    with ARB.workprec(SCALAR_PREC):
        for b in np.flatnonzero(ok).tolist():
            ball = scalar(b)
            found = _double_double(ball)
            if found is None:
                ok[b] = False
                continue
            values[:, b] = found
            bounds[:, b] = ARB.bound(ball)
    return values, bounds, ok


def _scalar_ball(hi: float, lo: float, eps: float) -> flint.arb:
    """The ball hi + lo +/- eps |hi| (1 + 2**-40), at the working precision (Arb rounds the
    sum outward if it does not fit)."""
    return flint.arb(hi) + flint.arb(lo) + flint.arb(0, eps * abs(hi) * _OUTWARD)


def softmax_enclosed(X: np.ndarray) -> Enclosed | None:
    """softmax of logit vectors ``(batch, n)``: g_i = e_i * (1 / s), 1 / s in Arb per input
    and exported as a double-double (`_double_double`), each g_i one double-double product
    (ERROR) of e_i (EXP_ERROR) and it, scaled by 2**k_i."""
    if _logit_rows(X) is None or X.dtype == object:
        return None
    terms = _shifted_exponentials(X)
    s_hi, s_lo, s_eps = _s_parts(terms)
    inv, _, ok = _per_input_scalars(
        terms.ok, lambda b: 1 / _scalar_ball(s_hi[b], s_lo[b], s_eps[b])
    )
    with np.errstate(all="ignore"):  # rows that are not ok hold placeholders
        conds = softmax_condition_enclosed(_enclosure(terms, s_hi))
    g_hi, g_lo = dd.mul(terms.e_hi, terms.e_lo, inv[0][:, None], inv[1][:, None])
    eps = (dd.EXP_ERROR + inv[2] + dd.ERROR) * _OUTWARD
    return _elementwise(g_hi, g_lo, eps, ok, terms.k, conds)


def log_softmax_enclosed(X: np.ndarray) -> Enclosed | None:
    """log_softmax of logit vectors ``(batch, n)``: y_i = (x_i - a) - log1p(r), log1p(r) in
    Arb per input and exported as a double-double; x_i - a is exact and of the sign of
    -log1p(r), so the one double-double addition (ERROR) keeps log1p's relative error
    (|y_i| >= log1p(r))."""
    if _logit_rows(X) is None or X.dtype == object:
        return None
    terms = _shifted_exponentials(X)
    s_hi, _, _ = _s_parts(terms)
    log_s, bounds, ok = _per_input_scalars(terms.ok, lambda b: _rest_ball(terms, b).log1p())
    with np.errstate(all="ignore"):  # rows that are not ok hold placeholders
        conds = log_softmax_condition_enclosed(
            _enclosure(terms, s_hi), terms.floats, (bounds[0], bounds[1])
        )
    y_hi, y_lo = dd.add(terms.d_hi, terms.d_lo, -log_s[0][:, None], -log_s[1][:, None])
    eps = (log_s[2] + dd.ERROR) * _OUTWARD
    return _elementwise(y_hi, y_lo, eps, ok, np.zeros_like(terms.k), conds)


def logsumexp_enclosed(X: np.ndarray) -> Enclosed | None:
    """log-sum-exp of logit vectors ``(batch, n)``: a + log1p(r) in Arb per input (r from the
    double-double terms), exported as the Arb engine exports its balls."""
    if _logit_rows(X) is None or X.dtype == object:
        return None
    terms = _shifted_exponentials(X)
    top = terms.floats[np.arange(len(X)), terms.m]
    balls = []
    with ARB.workprec(SCALAR_PREC):
        for b, ok in enumerate(terms.ok.tolist()):
            ball = flint.arb(float(top[b])) + _rest_ball(terms, b).log1p() if ok else _NAN
            balls.append(ball)
    conds = _scalar_conditions(terms, balls, logsumexp_condition_enclosed)
    return _scalar_outputs(balls, conds, terms.ok)


def cross_entropy_enclosed(XT: np.ndarray) -> Enclosed | None:
    """Cross-entropy of ``(batch, 2, n)`` (logits, targets): sum t_i (a - x_i) + (sum t)
    log1p(r) in Arb per input over the nonzero targets (as `cross_entropy_reference` forms
    it), log1p(r) from the double-double terms."""
    if XT.ndim != 3 or XT.shape[1] != 2 or XT.shape[2] < 2 or XT.dtype == object:
        return None
    terms = _shifted_exponentials(XT[:, 0, :])
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the invalid flag
        targets = XT[:, 1, :].astype(np.float64)
    ok = terms.ok & np.isfinite(targets).all(axis=1)
    top = terms.floats[np.arange(len(XT)), terms.m]
    balls = []
    with ARB.workprec(SCALAR_PREC):
        for b in range(len(XT)):
            if not ok[b]:
                balls.append(_NAN)
                continue
            nonzero = np.flatnonzero(targets[b]).tolist()
            t = [flint.arb(float(targets[b, i])) for i in nonzero]
            a = flint.arb(float(top[b]))
            gaps = [
                ti * (a - flint.arb(float(terms.floats[b, i])))
                for i, ti in zip(nonzero, t, strict=True)
            ]
            balls.append(ARB.fsum(gaps) + ARB.fsum(t) * _rest_ball(terms, b).log1p())
    conds = _scalar_conditions(
        terms, balls, lambda e, bounds: cross_entropy_condition_enclosed(e, targets, bounds)
    )
    return _scalar_outputs(balls, conds, ok)


def _scalar_conditions(terms: _Terms, balls: list, condition) -> list:
    """``condition(enclosure, (lo, hi))`` of the whole batch, with the bounds of each input's
    output ball (NaN where it is not finite: no condition number)."""
    bounds = np.full((2, len(balls)), np.nan)
    for b, ball in enumerate(balls):
        found = ARB.bound(ball)
        if found is not None:
            bounds[:, b] = found
    s_hi, _, _ = _s_parts(terms)
    with np.errstate(all="ignore"):  # rows that are not ok hold placeholders
        return condition(_enclosure(terms, s_hi), (bounds[0], bounds[1]))


_NAN = flint.arb("nan")


def _elementwise(hi, lo, eps, ok, scale, conds) -> Enclosed:
    """`Enclosed` of ``(batch, n)`` double-double outputs 2**scale (hi + lo), each within
    ``eps`` (per input) relative; only the inputs ``ok`` are valid."""
    batch, n = hi.shape
    cond, accurate = _cond_columns(conds)
    mids = Midpoints(
        hi=hi.ravel(),
        lo=lo.ravel(),
        accuracy=np.repeat(accuracy_of(np.where(ok, eps, 0.25)), n),
        valid=np.repeat(ok, n),
        zero=np.zeros(batch * n, dtype=bool),
        scale=np.where(ok[:, None], scale, 0).ravel(),
    )
    return Enclosed(mids, n, cond, accurate & ok)


def _scalar_outputs(balls: list, conds: list, ok: np.ndarray) -> Enclosed:
    """`Enclosed` of one Arb ball per input, exported as the Arb engine's (`balls.export`)."""
    mids = export(balls)
    cond, accurate = _cond_columns(conds)
    return Enclosed(mids, 1, cond, accurate & ok)


ENCLOSURES[softmax_reference] = softmax_enclosed
ENCLOSURES[log_softmax_reference] = log_softmax_enclosed
ENCLOSURES[logsumexp_reference] = logsumexp_enclosed
ENCLOSURES[cross_entropy_reference] = cross_entropy_enclosed
