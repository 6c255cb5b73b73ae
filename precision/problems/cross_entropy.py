"""Cross-entropy of logits x against a target distribution t: CE = -sum_i t_i log softmax(x)_i.

An input is a (2, n) array: row 0 the logits, row 1 the target (one-hot in the studies, exactly
representable in every format). For a data set of logits the target is the predicted class
(argmax): the loss of a confident correct prediction, small and ill-conditioned.
CE = lse(x) - sum_i t_i x_i when sum t = 1. Condition number with respect to the logits (the
targets are exact): kappa = sum_i |x_i| |g_i - t_i| / |CE|.
"""

from __future__ import annotations

import numpy as np

from precision.core.formats import Format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.problems import logits
from precision.problems.base import Problem, Variant, kernel_error, numpy_sum_accumulator
from precision.problems.log_softmax import log_softmax_shifted
from precision.problems.softmax import softmax_shifted


def cross_entropy_reference(
    xt: np.ndarray, ctx: NumberSystem = MPMATH
) -> tuple[np.ndarray, Number]:
    """Exact CE = sum t_i (a - x_i) + (sum t) log1p(r) and its condition number (module
    docstring); the log1p form keeps CE ~ e**-40 of a confident prediction (see exp_terms)."""
    xt = np.asarray(xt)
    terms = logits.exp_terms(xt[0], ctx)
    if terms.floats is None:
        t = ctx.exact_list(xt[1])
        x, a = terms.x, terms.a
        products = [ti * (a - xi) for xi, ti in zip(x, t, strict=True)]
    else:
        # Finite logits: a target of exactly 0 contributes an exact 0 to both sums, and adding
        # an exact 0 leaves a sum's ball as it is, so only the nonzero targets are formed.
        with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the flag
            targets = xt[1].astype(np.float64)
        nonzero = np.flatnonzero(targets).tolist()  # NaN targets count as nonzero
        t = ctx.exact_list(targets[nonzero])
        products = [
            ti * (terms.a - ctx.exact(terms.floats[i])) for i, ti in zip(nonzero, t, strict=True)
        ]
    ce = ctx.fsum(products) + ctx.fsum(t) * ctx.log1p(terms.r)
    return np.array([ce], dtype=object), cross_entropy_condition(terms, xt[1], ce, ctx)


def cross_entropy_condition(
    terms: logits.ExpTerms, targets: np.ndarray, ce: Number, ctx: NumberSystem
) -> Number:
    """sum_i |x_i| |g_i - t_i| / |CE| (module docstring), with g_m - t_m formed as
    (1 - t_m) - r / s, since 1 - g_m cancels when g_m ~ 1. In float64 bounds where ``ctx``
    encloses (`logits.enclose`), else in ``ctx``; a CE whose ball contains 0 gives inf."""
    enclosure = logits.enclose(terms, ctx)
    ce_bounds = None if enclosure is None else enclosure.bound(ce)
    if ce_bounds is not None:
        cond = cross_entropy_condition_enclosed(enclosure, targets, ce_bounds)
        if cond is not None:
            return cond
    x, s, r, m = terms.x, terms.s, terms.r, terms.m
    t = ctx.exact_list(targets)
    g_minus_t = [ei / s - ti for ei, ti in zip(terms.e, t, strict=True)]
    g_minus_t[m] = (1 - t[m]) - r / s
    sensitivity = ctx.fsum(ctx.abs(xi) * ctx.abs(d) for xi, d in zip(x, g_minus_t, strict=True))
    return sensitivity / ctx.abs(ce) if ce != 0 else ctx.inf


def cross_entropy_condition_enclosed(
    enclosure: logits.Enclosure, targets: np.ndarray, ce_bounds: tuple
) -> Number | None:
    """`cross_entropy_condition` in float64 bounds (`logits.Enclosure` and bounds of CE);
    None where they are too wide or a target is not finite (the caller then forms it in
    balls). For a batch enclosure (targets ``(batch, n)``, bounds as arrays), a list."""
    with np.errstate(invalid="ignore"):  # casting a signalling NaN raises the flag
        t = np.asarray(targets).astype(np.float64)
    # NaN where |CE| may be 0 or a target is not finite: no ball
    ce_lo, ce_hi = logits.magnitude_interval(*ce_bounds)
    finite = np.isfinite(t).all(axis=-1)
    ce_lo, ce_hi = np.where(finite, ce_lo, np.nan), np.where(finite, ce_hi, np.nan)
    t = np.where(np.isfinite(t), t, 0.0)
    (s_lo, s_hi), (r_lo, r_hi) = enclosure.s, enclosure.r
    g_lo, g_hi = enclosure.softmax()
    d_lo, d_hi = logits.signed_down(g_lo - t), logits.signed_up(g_hi - t)
    # At m: (1 - t_m) - r / s, each operation rounded once and its result moved outward.
    ones_lo, ones_hi = _outward(1.0 - enclosure.at_m(t))
    enclosure.set_m(d_lo, _outward(ones_lo - _outward(r_hi / s_lo)[1])[0])
    enclosure.set_m(d_hi, _outward(ones_hi - _outward(r_lo / s_hi)[0])[1])
    # |d| over [d_lo, d_hi]: 0 where the interval contains 0
    d_abs_lo = np.where(d_lo > 0, d_lo, np.where(d_hi < 0, -d_hi, 0.0))
    d_abs_hi = np.maximum(np.abs(d_lo), np.abs(d_hi))
    ax = enclosure.ax
    sens_lo, sens_hi = logits.sum_bounds(logits.down(ax * d_abs_lo), logits.up(ax * d_abs_hi))
    return enclosure.ball(logits.down(sens_lo / ce_hi), logits.up(sens_hi / ce_lo))


def _outward(v):
    """The floats on either side of a result rounded to nearest once: its exact value lies
    between them (``numpy.nextafter``, subnormal range included); floats or arrays."""
    return logits.per_input(np.nextafter(v, -np.inf)), logits.per_input(np.nextafter(v, np.inf))


def cross_entropy_from_probabilities(xt: np.ndarray) -> np.ndarray:
    """``-sum(t * log(p))`` with p = softmax(x) (shifted), as the formula is written: shape (1,)
    for one input ``(2, n)``, ``(batch, 1)`` for a batch ``(batch, 2, n)`` (rows independent).

    Once any p_i underflows to 0, log(p_i) = -inf and t_i * log(p_i) is inf (t_i > 0) or
    0 * -inf = nan (t_i = 0): the formula fails although the loss itself is finite.
    """
    x, t = xt[..., 0, :], xt[..., 1, :]
    return -np.sum(t * np.log(softmax_shifted(x)), axis=-1, keepdims=True)


def cross_entropy_from_logits(xt: np.ndarray) -> np.ndarray:
    """``-sum(t * log_softmax(x))`` with the stable log_softmax (as F.cross_entropy does), for
    one input ``(2, n)`` (shape (1,)) or a batch ``(batch, 2, n)`` (shape ``(batch, 1)``)."""
    x, t = xt[..., 0, :], xt[..., 1, :]
    return -np.sum(t * log_softmax_shifted(x), axis=-1, keepdims=True)


def ce_and_sensitivity64(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CE and sum_i |x_i| |g_i - t_i| along the last axis in float64, without cancellation.

    CE = sum_i t_i (x_m - x_i) + (sum t) log1p(r) with m = argmax x and r = sum_{i != m}
    exp(x_i - x_m): forming x_i - lse(x) instead cancels to 0 for a confident prediction
    (CE ~ e^-40). Likewise 1 - g_m = r / (1 + r) is formed directly.
    """
    m = np.argmax(x, axis=-1)[..., None]
    z = x - np.take_along_axis(x, m, axis=-1)
    e = np.exp(z)
    np.put_along_axis(e, m, 0.0, axis=-1)
    r = e.sum(axis=-1, keepdims=True)
    # In place from here (the same operations as t * -z, e / (1 + r) - t, |x| |g - t|).
    np.negative(z, out=z)
    z *= t
    ce = z.sum(axis=-1) + t.sum(axis=-1) * np.log1p(r[..., 0])
    g_minus_t = e
    g_minus_t /= 1.0 + r
    g_minus_t -= t
    top = (1.0 - np.take_along_axis(t, m, axis=-1)) - r / (1.0 + r)
    np.put_along_axis(g_minus_t, m, top, axis=-1)
    np.abs(g_minus_t, out=g_minus_t)
    g_minus_t *= np.abs(x)
    return ce, g_minus_t.sum(axis=-1)


def _ce64(xt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, targets and CE in float64, for one input ``(2, n)`` or a batch ``(batch, 2, n)``."""
    xt = np.asarray(xt, dtype=np.float64)
    x, t = xt[..., 0, :], xt[..., 1, :]
    return x, t, ce_and_sensitivity64(x, t)[0]


def from_logits_bound(xt: np.ndarray, fmt: Format) -> float | np.ndarray:
    """First order: sum_i t_i u (|z_i| + |y_i|) + the error of log(sum(exp(z)))
    (`logits.shifted_log_sum_error`) + n u sum_i t_i |y_i| (products and sum), with y the
    log_softmax and z = x - max x; relative to |CE|. A float for one input ``(2, n)``, a
    ``(batch,)`` array for a batch."""
    with np.errstate(all="ignore"):
        x, t, ce = _ce64(xt)
        terms = logits.shift_terms64(x, fmt)
        y = x - logits.lse64(x)[..., np.newaxis]
        u, n = fmt.u, x.shape[-1]
        error = u * (t * (np.abs(x - x.max(axis=-1, keepdims=True)) + np.abs(y))).sum(axis=-1)
        error += logits.shifted_log_sum_error(terms, fmt) + n * u * (t * np.abs(y)).sum(axis=-1)
        return logits.per_input(error / abs(ce))


def from_probabilities_bound(xt: np.ndarray, fmt: Format) -> float | np.ndarray:
    """First order: componentwise shifted-softmax error n u + 2 e_exp + u (|z_i| + sum g |z|)
    carried through log, plus e_log |log p_i| and n u for the products and the sum; relative to
    |CE|. NaN when any p_i < min normal. A float for one input ``(2, n)``, a ``(batch,)`` array
    for a batch."""
    with np.errstate(all="ignore"):
        x, t, ce = _ce64(xt)
        # Any p_i that underflows to 0 makes t_i * log(p_i) = 0 * -inf = nan, even where t_i = 0.
        fails = np.any(logits.softmax64(x) < fmt.min_normal, axis=-1)
        terms = logits.shift_terms64(x, fmt)
        u, n = fmt.u, x.shape[-1]
        log_p = np.abs(x - logits.lse64(x)[..., np.newaxis])
        e_exp, e_log = kernel_error("exp", fmt), kernel_error("log", fmt)
        spread = np.abs(x - x.max(axis=-1, keepdims=True))
        per_term = u * (n + spread + terms["gz"][..., np.newaxis]) + 2 * e_exp + e_log * log_p
        error = (t * per_term).sum(axis=-1) + n * u * (t * log_p).sum(axis=-1)
        bound = error / abs(ce)
    return logits.per_input(np.where(fails, np.nan, bound))


def propose_logits_and_labels(rng, *, n: int, magnitude: float, cond: float, size: int):
    """Logit candidates (see logits.propose_logits) with a one-hot target: the argmax (a
    confident correct prediction, CE near 0 and ill-conditioned) or a random class."""
    x = logits.propose_logits(rng, n=n, magnitude=magnitude, cond=cond, size=size)
    labels = np.where(rng.random(size) < 0.5, x.argmax(axis=1), rng.integers(0, n, size))
    xt = np.zeros((size, 2, n))
    xt[:, 0] = x
    xt[np.arange(size), 1, labels] = 1.0
    return xt


def cross_entropy_max_cond(n: int, magnitude: float) -> float:
    """The most `estimate_cross_entropy` returns for n logits with max|x| <= M and a one-hot
    target at k (as `propose_logits_and_labels` makes): the sensitivity is
    sum_{i != k} |x_i| g_i + |x_k| (1 - g_k) <= 2 M (1 - g_k) and CE = -log g_k >= 1 - g_k, so
    kappa <= 2 M; times the float64 allowance (`logits.rounding`): the estimate forms 1 - g_k
    without cancellation (r / (1 + r) at the argmax, g_k <= 1/2 elsewhere) and CE as
    log1p(r) - z_k, a sum of two nonnegative terms."""
    return 2.0 * magnitude * logits.rounding(n)


def _logit_max_abs(XT: np.ndarray) -> np.ndarray:
    return logits.row_max_abs(XT[:, 0])


@logits.estimate_with(magnitude=_logit_max_abs, max_cond=cross_entropy_max_cond)
def estimate_cross_entropy(XT: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ce, sensitivity = ce_and_sensitivity64(XT[:, 0], XT[:, 1])
    with np.errstate(divide="ignore"):
        return sensitivity / np.abs(ce), _logit_max_abs(XT)


CROSS_ENTROPY = Problem(
    name="cross_entropy",
    description="cross-entropy -sum t_i log softmax(x)_i of logits x against a one-hot target t",
    reference=cross_entropy_reference,
    magnitude=lambda xt: logits.max_abs(np.asarray(xt)[..., 0, :]),
    propose=propose_logits_and_labels,
    estimate=estimate_cross_entropy,
    variants={
        "from_probabilities": Variant(
            "from_probabilities",
            cross_entropy_from_probabilities,
            from_probabilities_bound,
            numpy_sum_accumulator,
            batched=True,
        ),
        "from_logits": Variant(
            "from_logits",
            cross_entropy_from_logits,
            from_logits_bound,
            numpy_sum_accumulator,
            batched=True,
        ),
    },
    input_shape=lambda n: (2, n),
    extras=lambda xt: logits.logit_extras(np.asarray(xt)[..., 0, :]),
    batched=True,
    from_logits=lambda x: np.stack([x, np.eye(x.size)[np.argmax(x)]]),
)
