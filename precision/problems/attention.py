"""Attention of one query: o = softmax(q K^T / sqrt(d)) V, two-pass, online and blockwise.

One input row is one query of a head of dimension d = `HEAD_DIM` = 16 against a sequence of
n = L keys and values, packed in one array of shape (2 L + 1, d): row 0 is q, rows 1..L are the
keys k_j, rows L+1..2L the values v_j. The output is o (d values). The scale 1 / sqrt(16) = 1/4
is a power of two, so the scaled logits s_j = (q . k_j) / 4 are exact functions of the input in
every format (multiplying by 1/4 is exact above the subnormal range): the reference and the
kernels compute the same function, with no rounded constant in between.

The question (issue 17): how much of attention's accuracy in bfloat16 / float16 depends on the
precision of the softmax statistics (running max and normaliser), on the algorithm (two-pass
softmax; the online normaliser of Milakov & Gimelshein, *Online normalizer calculation for
softmax*, arXiv:1805.02867, 2018; the blockwise rescaling of FlashAttention, Dao et al.,
*FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness*, NeurIPS 2022),
against the logit spread and the sequence length.

Variants (batch kernels (B, 2L+1, d) -> (B, d), rows independent, each written once over an
arithmetic ``ops`` (`precision.core.ops`)). Each is a family with the parameter
``float32_stats``: 1 computes the logits, the running max, the exponentials, the normaliser
and the unnormalised output accumulator in float32 (the input converted exactly) and rounds o
once to the format, as torch's CPU kernels and FlashAttention's register accumulators do;
0 computes everything in the format. Every reduction is stated: the d-term dot products and
the sums over keys are left to right (`Ops.sum` ``order="recursive"``), which is what makes
the bitwise relations below hold and the bounds exact in their counts.

- ``two_pass``: m = max_j s_j, P_j = exp(s_j - m), l = sum_j P_j, o = (sum_j P_j v_j) / l.
- ``online``: Milakov & Gimelshein's algorithm 3: the normaliser in one pass over the keys,
  m_j = max(m_{j-1}, s_j), l_j = l_{j-1} exp(m_{j-1} - m_j) + exp(s_j - m_j); then o =
  (sum_j exp(s_j - m_L) v_j) / l_L. Where the first key holds the largest logit every rescale
  factor is exp(0) = 1 (exact) and ``online`` equals ``two_pass`` bit for bit (tested).
- ``blockwise`` (parameter ``kv_block`` = B_c, keys per block): FlashAttention-2's loop
  (Dao, arXiv:2307.08691, 2023, algorithm 1) for one query: per block, m' = max(m, max_b s),
  alpha = exp(m - m'), l = alpha l + sum_b exp(s - m'), o~ = alpha o~ + sum_b exp(s - m') v,
  and o = o~ / l at the end (FlashAttention-1 divides at every block instead). A block of
  B_c >= L keys is ``two_pass`` bit for bit (tested). The cast of P to the input format before
  the P V product of GPU kernels is not modelled.
- ``torch``: ``torch.nn.functional.scaled_dot_product_attention`` with the math backend on the
  CPU (`TORCH_KERNELS`, registered through `precision.problems.frameworks`). For float16 and
  bfloat16 it computes in float32 and rounds once (measured in the tests: bit for bit the
  float32-statistics two-pass variant on the seeded rows there).

Condition number (mixed: componentwise relative perturbations of q, K and V; inf-norm of o).
With p = softmax(s), a_j = sum_i |q_i k_ji| / 4 and W_c = sum_j p_j |v_jc|, the first-order
change of o_c is sum_j p_j v_jc dv_jc/v_jc + sum_j p_j ds_j (v_jc - o_c) (dp_j = p_j (ds_j -
sum_l p_l ds_l)) with |ds_j| <= 2 a_j eps, so

    kappa = max_c (W_c + 2 sum_j p_j a_j |v_jc - o_c|) / max_c |o_c|.

This is an upper bound within a factor 2 of the true mixed condition number: perturbing V and K
alone (signs chosen per term) attains W_c + sum_j p_j a_j |v_jc - o_c|; q's perturbation is
shared by all keys, so its half may not be attained. It is the condition number of the
shifted softmax (Blanchard, Higham & Higham, IMA J. Numer. Anal. 41(4), 2021) carried through
the weighted sum. Magnitude: the logit spread max_j s_j - min_j s_j, which sets how far the
exponentials fall and how much an absolute logit error moves p.

Bounds (`attention_bound`, first order, normwise relative): the logits' error gamma_d a_j,
each term's exp argument error |s_j - m| u, the exp kernel's e_exp, the additions and the
rescalings each algorithm makes per term (online: one per change of the running max; blockwise:
one per change of the block max), the division, and for float32 statistics the final rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from precision.core.formats import FORMATS, Format, get_format
from precision.core.numbers import MPMATH, Number, NumberSystem
from precision.core.ops import NUMPY, Ops
from precision.problems.base import Problem, Unsupported, Variant, kernel_error

FLOAT32 = FORMATS["float32"]

HEAD_DIM = 16
"""d: the head dimension. 1 / sqrt(16) = 1/4 is exact in every format."""

SCALE = 0.25
"""1 / sqrt(HEAD_DIM), exactly."""

KV_BLOCKS = (16.0, 128.0)
"""Default keys per block of ``blockwise`` (FlashAttention-2 uses 64 to 128 on GPUs)."""


def attention_shape(n: int) -> tuple[int, int]:
    """The shape of one input with n keys: (2 n + 1, HEAD_DIM)."""
    return (2 * n + 1, HEAD_DIM)


def split(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, K, V) of one input (2L+1, d) or a batch (B, 2L+1, d): q (..., d), K and V
    (..., L, d); views, no copy. A torch tensor stays a tensor (`TORCH_KERNELS`)."""
    X = X if hasattr(X, "shape") else np.asarray(X)
    n = (X.shape[-2] - 1) // 2
    if X.shape[-2] != 2 * n + 1:
        raise ValueError(f"attention input needs 2 L + 1 rows (q, L keys, L values): {X.shape}")
    return X[..., 0, :], X[..., 1 : n + 1, :], X[..., n + 1 :, :]


# ---------------------------------------------------------------- exact reference


def attention_reference(x: np.ndarray, ctx: NumberSystem = MPMATH) -> tuple[np.ndarray, Number]:
    """Exact o = sum_j p_j v_j, p = softmax(q K^T / 4), and the condition number (module
    docstring), in ``ctx`` at its working precision.

    The products q_i k_ji are exact from 106 bits on (two 53-bit significands); the exponentials
    are shifted by c, the float64 maximum of the logits (any shift gives the same p exactly;
    this one keeps every exp(s_j - c) near or below 1). Inputs holding an infinity or NaN
    give NaN and an infinite condition number; all values 0 give o = 0 and an infinite one
    (other exact zeros, e.g. equal logits over values cancelling exactly, escalate to the
    engine's cap and stay uncertified).
    """
    values = np.asarray(x)
    floats = np.asarray([float(v) for v in values.ravel()]).reshape(values.shape)
    if not np.isfinite(floats).all():
        nan = ctx.exact(math.nan)
        return np.array([nan] * values.shape[-1], dtype=object), ctx.inf
    if not split(floats)[2].any():  # o = 0 exactly: no relative error, an infinite condition
        return np.array([ctx.exact(0.0)] * values.shape[-1], dtype=object), ctx.inf
    q, K, V = split(floats)
    quarter = ctx.exact(SCALE)
    s = [row[0] * quarter for row in ctx.matmul(ctx_rows(K, ctx), ctx_column(q, ctx))]
    shift = ctx.exact(float(logits64(floats[np.newaxis])[0].max()))
    e = ctx.exp_list([sj - shift for sj in s])
    total = ctx.fsum(e)
    p = [ej / total for ej in e]
    o = [row[0] for row in ctx.matmul(ctx_rows(V.T, ctx), [[pj] for pj in p])]
    absolute = ctx.matmul(ctx_rows(np.abs(K), ctx), ctx_column(np.abs(q), ctx))
    a = [row[0] * quarter for row in absolute]
    return np.array(o, dtype=object), attention_condition(p, a, V, o, ctx)


def ctx_rows(matrix: np.ndarray, ctx: NumberSystem) -> list[list]:
    """The exact numbers of a float matrix, as a list of rows."""
    flat = ctx.exact_list(np.ascontiguousarray(matrix))
    width = np.shape(matrix)[-1]
    return [flat[i : i + width] for i in range(0, len(flat), width)]


def ctx_column(vector: np.ndarray, ctx: NumberSystem) -> list[list]:
    """The exact numbers of a float vector, as a column (a list of one-element rows)."""
    return [[v] for v in ctx.exact_list(vector)]


def attention_condition(p: list, a: list, V: np.ndarray, o: list, ctx: NumberSystem) -> Number:
    """max_c (sum_j p_j |v_jc| + 2 sum_j p_j a_j |v_jc - o_c|) / max_c |o_c| (o not 0: the
    reference decides o = 0, all values 0, before), from the float values V (L, d); the sums
    over j are matrix products (``ctx.matmul``: Arb's ``arb_mat``), |v_jc| exact floats."""
    direct = ctx.matmul(ctx_rows(np.abs(V).T, ctx), [[pj] for pj in p])
    weights = [[pj * aj] for pj, aj in zip(p, a, strict=True)]
    columns = ctx_rows(V.T, ctx)
    centred = [[ctx.abs(v - oc) for v in col] for col, oc in zip(columns, o, strict=True)]
    through = ctx.matmul(centred, weights)
    rows = [d[0] + 2 * t[0] for d, t in zip(direct, through, strict=True)]
    return ctx.max(rows) / ctx.max([ctx.abs(oc) for oc in o])


# ---------------------------------------------------------------- float64 estimates


def logits64(X: np.ndarray) -> np.ndarray:
    """s_j = (q . k_j) / 4 of each row of a batch (B, L), in float64: the products of inputs of
    at most 26 bits are exact, the 16-term sums err by at most 15 * 2^-53 sum|q_i k_ji|."""
    q, K, _ = split(np.asarray(X, dtype=np.float64))
    return np.einsum("bjd,bd->bj", K, q) * SCALE


def _softmax64(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logit_spread(X: np.ndarray) -> float | np.ndarray:
    """max_j s_j - min_j s_j per row (float64; `logits64`): a float for one input (2L+1, d),
    a (B,) array for a batch."""
    X = np.asarray(X, dtype=np.float64)
    s = logits64(X if X.ndim == 3 else X[np.newaxis])
    spread = s.max(axis=-1) - s.min(axis=-1)
    return spread if X.ndim == 3 else float(spread[0])


def condition64(X: np.ndarray) -> np.ndarray:
    """The condition number of the module docstring per row of a batch, in float64 (used
    only to pick candidates); inf where o = 0."""
    X = np.asarray(X, dtype=np.float64)
    q, K, V = split(X)
    p = _softmax64(logits64(X))
    a = np.einsum("bjd,bd->bj", np.abs(K), np.abs(q)) * SCALE
    o = np.einsum("bj,bjc->bc", p, V)
    direct = np.einsum("bj,bjc->bc", p, np.abs(V))
    through = np.einsum("bj,bjc->bc", p * a, np.abs(V - o[:, None, :]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (direct + 2 * through).max(axis=-1) / np.abs(o).max(axis=-1)


def estimate_attention(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(condition number, logit spread) per row of a batch, in float64."""
    return condition64(X), logit_spread(X)


# ---------------------------------------------------------------- inputs


R_MIN = 2.0**-8
"""Smallest |o_c| a candidate is built with (before rounding)."""


def propose_attention(
    rng: np.random.Generator, *, n: int, magnitude, cond, size: int
) -> np.ndarray:
    """Candidates (size, 2n+1, d) aimed at a logit spread ~ magnitude and kappa ~ cond (floats,
    or one target per candidate, shape (size,)).

    q and the keys are Gaussian; in a quarter of the rows one key is q itself plus noise (a
    key that draws most of the attention, as attention sinks do). q is scaled so that the
    spread of the logits equals its target (the logits are linear in q). Values are
    v_jc = mu_c + z_jc with z Gaussian less its p-weighted mean (sum_j p_j z_j = 0), so that
    o = mu exactly before rounding, and mu_c = +-r: kappa is then about (r + N) / r with
    N = max_c (sum_j p_j |z_jc| + 2 sum_j p_j a_j |z_jc|), so r = N / (cond - 1) aims at
    cond, jittered by half a decade (the sampler keeps the candidates that land in their
    cell), and at least `R_MIN`.
    """
    magnitude = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (size,))
    cond = np.broadcast_to(np.asarray(cond, dtype=np.float64), (size,))
    q = rng.standard_normal((size, HEAD_DIM))
    K = rng.standard_normal((size, n, HEAD_DIM))
    sink = rng.random(size) < 0.25
    position = rng.integers(0, n, size=size)
    K[sink, position[sink]] = q[sink] + 0.25 * rng.standard_normal((int(sink.sum()), HEAD_DIM))
    s = np.einsum("bjd,bd->bj", K, q) * SCALE
    spread = s.max(axis=1) - s.min(axis=1)
    q *= (magnitude / np.where(spread > 0, spread, 1.0))[:, None]
    p = _softmax64(np.einsum("bjd,bd->bj", K, q) * SCALE)
    z = rng.standard_normal((size, n, HEAD_DIM))
    z -= np.einsum("bj,bjc->bc", p, z)[:, None, :]  # sum_j p_j z_j = 0: o = mu
    a = np.einsum("bjd,bd->bj", np.abs(K), np.abs(q)) * SCALE
    spread_v = np.einsum("bj,bjc->bc", p, np.abs(z)) + 2 * np.einsum("bj,bjc->bc", p * a, np.abs(z))
    jitter = 10.0 ** rng.uniform(-0.5, 0.5, size=size)
    r = spread_v.max(axis=1) / np.maximum(cond * jitter - 1, 1e-3)
    # Attention concentrated on one key has N ~ 0: r would vanish and o with it (below
    # float16's range); |o| >= 2^-8 keeps outputs where activations live.
    r = np.maximum(r, R_MIN)
    mu = r[:, None] * rng.choice([-1.0, 1.0], size=(size, HEAD_DIM))
    V = mu[:, None, :] + z
    return np.concatenate([q[:, None, :], K, V], axis=1)


# ---------------------------------------------------------------- kernels


def _const(v: np.ndarray, value: float):
    """``value`` in the dtype of ``v`` (a Python float would promote bfloat16 under
    ml_dtypes 0.6)."""
    return np.asarray(value, dtype=v.dtype)


def scaled_logits(q: np.ndarray, K: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """s_j = fl(sum_i q_i k_ji) * 1/4, products and a left-to-right sum in the arithmetic of
    ``ops`` (the 1/4 is exact above the subnormal range): (..., d), (..., L, d) -> (..., L).
    |s^_j - s_j| <= gamma_d a_j (Higham 2002, (3.4))."""
    products = ops.mul(q[..., np.newaxis, :], K)
    return ops.mul(ops.sum(products, order="recursive")[..., 0], _const(products, SCALE))


def _weighted(P: np.ndarray, V: np.ndarray, *, ops: Ops) -> np.ndarray:
    """sum_j P_j v_j, left to right over the keys: (..., L), (..., L, d) -> (..., d)."""
    terms = ops.mul(np.swapaxes(V, -1, -2), P[..., np.newaxis, :])  # (..., d, L)
    return ops.sum(terms, order="recursive")[..., 0]


def two_pass_body(s: np.ndarray, V: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """o = (sum_j exp(s_j - m) v_j) / sum_j exp(s_j - m), m = max s: the largest term is
    exactly 1, so nothing overflows (Blanchard, Higham & Higham 2021, shifted softmax)."""
    m = ops.max(s)
    P = ops.exp(ops.sub(s, m))
    return ops.div(_weighted(P, V, ops=ops), ops.sum(P, order="recursive"))


def online_body(s: np.ndarray, V: np.ndarray, *, ops: Ops = NUMPY) -> np.ndarray:
    """Milakov & Gimelshein's online normaliser (their algorithm 3), then the weighted sum
    with the final max. The running max starts at s_1 with l_1 = exp(0) = 1, which is what
    their start m_0 = -inf, d_0 = 0 gives after one step, without infinities."""
    m, norm = s[..., :1], np.ones_like(s[..., :1])
    for j in range(1, s.shape[-1]):
        sj = s[..., j : j + 1]
        m_new = np.maximum(m, sj)  # exact in every arithmetic
        alpha = ops.exp(ops.sub(m, m_new))  # exp(0) = 1 exactly while the max holds
        norm = ops.add(ops.mul(norm, alpha), ops.exp(ops.sub(sj, m_new)))
        m = m_new
    P = ops.exp(ops.sub(s, m))
    return ops.div(_weighted(P, V, ops=ops), norm)


def blockwise_body(s: np.ndarray, V: np.ndarray, *, kv_block: int, ops: Ops = NUMPY) -> np.ndarray:
    """FlashAttention-2's loop over blocks of ``kv_block`` keys for one query (module
    docstring); the first block initialises m, l and o~ (what m = -inf, l = 0, o~ = 0 give
    after one block: alpha = 0 and 0 + x = x exactly)."""
    m, norm, acc = None, None, None
    for start in range(0, s.shape[-1], kv_block):
        sb, vb = s[..., start : start + kv_block], V[..., start : start + kv_block, :]
        m_new = ops.max(sb) if m is None else np.maximum(m, ops.max(sb))
        P = ops.exp(ops.sub(sb, m_new))
        block_l, block_o = ops.sum(P, order="recursive"), _weighted(P, vb, ops=ops)
        if m is None:
            norm, acc = block_l, block_o
        else:
            alpha = ops.exp(ops.sub(m, m_new))  # rescales what earlier blocks summed
            norm = ops.add(ops.mul(alpha, norm), block_l)
            acc = ops.add(ops.mul(alpha, acc), block_o)
        m = m_new
    return ops.div(acc, norm)


def _check_flag(name: str, value: float) -> bool:
    if value not in (0, 1):
        raise ValueError(f"{name} must be 0 or 1, got {value!r}")
    return bool(value)


def _check_block(kv_block: float) -> int:
    if kv_block != int(kv_block) or kv_block < 1:
        raise ValueError(f"kv_block must be a positive integer, got {kv_block!r}")
    return int(kv_block)


def _attention(X: np.ndarray, body, float32_stats: float, **options) -> np.ndarray:
    """``body`` on the batch's logits and values in the working precision: the format itself,
    or float32 (the input converted exactly, o rounded once to the format at the end).

    Raises
    ------
    Unsupported
        float32 statistics of float64 input (they would round the input first).
    """
    X = np.asarray(X)
    if _check_flag("float32_stats", float32_stats):
        if get_format(X.dtype).p > FLOAT32.p:
            raise Unsupported("float32 statistics would round float64 input to float32 first")
        work = X.astype(np.float32)
    else:
        work = X
    q, K, V = split(work)
    with np.errstate(under="ignore"):  # gradual underflow of tiny weights is part of the result
        o = body(scaled_logits(q, K), V, **options)
    return o.astype(X.dtype)


def two_pass_attention(X: np.ndarray, *, float32_stats: float) -> np.ndarray:
    """Two-pass (shifted) softmax attention: (B, 2L+1, d) -> (B, d)."""
    return _attention(X, two_pass_body, float32_stats)


def online_attention(X: np.ndarray, *, float32_stats: float) -> np.ndarray:
    """Attention with Milakov & Gimelshein's online normaliser: (B, 2L+1, d) -> (B, d)."""
    return _attention(X, online_body, float32_stats)


def blockwise_attention(X: np.ndarray, *, float32_stats: float, kv_block: float) -> np.ndarray:
    """FlashAttention-2's blockwise rescaling, ``kv_block`` keys per block: (B, 2L+1, d) ->
    (B, d)."""
    return _attention(X, blockwise_body, float32_stats, kv_block=_check_block(kv_block))


# ---------------------------------------------------------------- bounds


def grown(k: float, u: float) -> float:
    """(1 + u)^k - 1: k roundings of relative error at most u (Higham 2002, lemma 3.1)."""
    return math.expm1(k * math.log1p(u)) if k > 0 else 0.0


@dataclass(frozen=True)
class Counts:
    """What one algorithm does to each term, per row: additions to its normaliser and to its
    output accumulator, and rescalings (multiplications by a computed exp(m - m')) of each."""

    add_l: int
    add_o: int
    rescale_l: np.ndarray
    rescale_o: np.ndarray


def _changes(peaks: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """How many of the later entries can raise the running max of ``peaks`` (B, k), counting
    near ties: entry t counts when peaks_t + slack_t >= max_{i<t} (peaks_i - slack_i)."""
    low = np.maximum.accumulate(peaks - slack, axis=-1)[..., :-1]
    return (peaks[..., 1:] + slack[..., 1:] >= low).sum(axis=-1)


def counts(algorithm: str, s: np.ndarray, slack: np.ndarray, kv_block: int) -> Counts:
    """`Counts` of ``algorithm`` for logits s (B, L) known within ``slack`` (B, L)."""
    n = s.shape[-1]
    none = np.zeros(s.shape[0], dtype=np.int64)
    if algorithm == "two_pass":
        return Counts(n - 1, n - 1, none, none)
    if algorithm == "online":
        return Counts(n - 1, n - 1, _changes(s, slack), none)
    blocks = -(-n // kv_block)
    pad = blocks * kv_block - n
    shaped = np.pad(s + slack, ((0, 0), (0, pad)), constant_values=-np.inf)
    high = shaped.reshape(-1, blocks, kv_block).max(axis=-1)
    low = np.pad(s - slack, ((0, 0), (0, pad)), constant_values=-np.inf)
    low = low.reshape(-1, blocks, kv_block).max(axis=-1)
    changes = (high[:, 1:] >= np.maximum.accumulate(low, axis=-1)[:, :-1]).sum(axis=-1)
    within = min(kv_block, n) - 1 + blocks - 1
    return Counts(within, within, changes, changes)


def working_bound(X: np.ndarray, work: Format, *, algorithm: str, kv_block: int = 1) -> np.ndarray:
    """First-order normwise relative error bound of ``algorithm`` computed in ``work``, per
    row of a batch (B, 2L+1, d); NaN where it does not apply.

    With u and e_exp = `kernel_error` ("exp") of ``work``, gamma_d = (1 + u)^d - 1, the
    logits' error |ds_j| <= delta_j = gamma_d a_j + min_sub, z_j = m - s_j, and per term
    eps_l = (1 + R_l) e_exp + (A_l + R_l) u, eps_o = (1 + R_o) e_exp + (A_o + R_o + 1) u
    (`Counts`: A additions, R rescalings, each rescaling one exp and one multiplication;
    the exp arguments' roundings |z| u telescope over the rescalings to |z_j| u):

        |do_c| <= sum_j p_j delta_j |v_jc - o_c| + sum_j p_j |v_jc| (|z_j| u + eps_o)
                  + |o_c| (sum_j p_j |z_j| u + eps_l + u) + underflow,

    underflow = (2 + R) (2 L + sum_j |v_jc| + 2 L |o_c|) min_sub (exp, products and rescale
    factors flushing to subnormals; the normaliser is at least 1). Bound: max_c |do_c| /
    max_c |o_c|. NaN where o = 0, where a logit sum or L max|v| could overflow ``work``, or
    where the bound reaches 1.
    """
    X = np.asarray(X, dtype=np.float64)
    q, K, V = split(X)
    n, u, tiny = K.shape[-2], work.u, work.min_subnormal
    s = logits64(X)
    a = np.einsum("bjd,bd->bj", np.abs(K), np.abs(q)) * SCALE
    delta = grown(HEAD_DIM, u) * a + tiny
    p = _softmax64(s)
    z = s.max(axis=-1, keepdims=True) - s
    o = np.einsum("bj,bjc->bc", p, V)
    c = counts(algorithm, s, 2 * delta, kv_block)
    e_exp = kernel_error("exp", work)
    eps_l = (1 + c.rescale_l) * e_exp + (c.add_l + c.rescale_l) * u
    eps_o = (1 + c.rescale_o) * e_exp + (c.add_o + c.rescale_o + 1) * u
    abs_v = np.abs(V)
    logit = np.einsum("bj,bjc->bc", p * delta, np.abs(V - o[:, None, :]))
    terms = (
        np.einsum("bj,bjc->bc", p * z * u, abs_v)
        + np.einsum("bj,bjc->bc", p, abs_v) * eps_o[:, None]
    )
    norm = ((p * z).sum(axis=-1) * u + eps_l + u)[:, None] * np.abs(o)
    rescales = 2 + np.maximum(c.rescale_l, c.rescale_o)[:, None]
    underflow = rescales * (2 * n + abs_v.sum(axis=1) + 2 * n * np.abs(o)) * tiny
    top = np.abs(o).max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (logit + terms + norm + underflow).max(axis=-1) / top
    overflow = (4 * a.max(axis=-1) * (1 + 2 * HEAD_DIM * u) >= work.max) | (
        n * abs_v.max(axis=(1, 2)) * (1 + 2 * n * u) >= work.max
    )
    return np.where(overflow | ~(top > 0) | ~(rel < 1), np.nan, rel)


def _output_underflow(X: np.ndarray, fmt: Format) -> np.ndarray:
    """min_sub / (2 max|o|): the final rounding of o to ``fmt`` where o_c falls below its
    normal range (absolute error at most half a subnormal spacing)."""
    p = _softmax64(logits64(X))
    top = np.abs(np.einsum("bj,bjc->bc", p, split(X)[2])).max(axis=-1)
    with np.errstate(divide="ignore"):
        return fmt.min_subnormal / (2 * top)


def _per_input(values: np.ndarray, X: np.ndarray) -> float | np.ndarray:
    return values if np.ndim(X) == 3 else float(values[0])


def attention_bound(
    X: np.ndarray, fmt: Format, *, algorithm: str, float32_stats: float, kv_block: float = 1
) -> float | np.ndarray:
    """`working_bound` in the format, or in float32 plus the final rounding to the format,
    b + u (1 + b) + min_sub / (2 max|o|) (NaN for float64 input, which float32 statistics
    refuse, and where it reaches 1): a float for one input, a (B,) array for a batch."""
    batch = np.asarray(X, dtype=np.float64)
    batch = batch if batch.ndim == 3 else batch[np.newaxis]
    if not _check_flag("float32_stats", float32_stats):
        bound = working_bound(batch, fmt, algorithm=algorithm, kv_block=_check_block(kv_block))
    elif fmt.p > FLOAT32.p:
        bound = np.full(batch.shape[0], np.nan)
    else:
        b = working_bound(batch, FLOAT32, algorithm=algorithm, kv_block=_check_block(kv_block))
        bound = b if fmt.p == FLOAT32.p else b + fmt.u * (1 + b) + _output_underflow(batch, fmt)
        bound = np.where(bound < 1, bound, np.nan)
    return _per_input(bound, X)


def two_pass_bound(X, fmt: Format, *, float32_stats: float):
    """`attention_bound` of ``two_pass``."""
    return attention_bound(X, fmt, algorithm="two_pass", float32_stats=float32_stats)


def online_bound(X, fmt: Format, *, float32_stats: float):
    """`attention_bound` of ``online``."""
    return attention_bound(X, fmt, algorithm="online", float32_stats=float32_stats)


def blockwise_bound(X, fmt: Format, *, float32_stats: float, kv_block: float):
    """`attention_bound` of ``blockwise``."""
    return attention_bound(
        X, fmt, algorithm="blockwise", float32_stats=float32_stats, kv_block=kv_block
    )


# ---------------------------------------------------------------- torch


def _torch_sdpa(torch, t):
    """torch.nn.functional.scaled_dot_product_attention of the packed batch (B, 2L+1, d) with
    the math backend (scale 1/sqrt(d) = 1/4, torch's default): (B, d)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, K, V = split(t)
    with sdpa_kernel(SDPBackend.MATH):
        o = torch.nn.functional.scaled_dot_product_attention(q[:, None, :], K, V, scale=SCALE)
    return o[:, 0, :]


TORCH_KERNELS = {
    "attention": ("torch.nn.functional.scaled_dot_product_attention (math)", _torch_sdpa),
}
"""An entry for `precision.problems.frameworks.TORCH_KERNELS` (a batch kernel; torch's CPU
math backend computes float16 and bfloat16 in float32, see the module docstring)."""


def _jax_sdpa(jax, a):
    """jax.nn.dot_product_attention of the packed batch (B, 2L+1, d) as one query, one head
    (B, 1, 1, d) against L keys and values (B, L, 1, d), scale 1/4: (B, d). JAX 0.10's XLA
    implementation forms the logits and the softmax in float32 (float64 for float64 input),
    then casts the probabilities to the input's dtype before the weighted sum with V (its
    source, ``_dot_product_attention_core``): in float16 and bfloat16 one more rounding than
    float32 statistics rounded once (measured on 8 seeded inputs of L = 256: median 0.90 u
    and 1.00 u against 0.60 u and 0.72 u)."""
    n = (a.shape[-2] - 1) // 2
    q, K, V = a[:, 0:1, None, :], a[:, 1 : n + 1, None, :], a[:, n + 1 :, None, :]
    return jax.nn.dot_product_attention(q, K, V, scale=SCALE)[:, 0, 0, :]


JAX_KERNELS = {"attention": ("jax.nn.dot_product_attention", _jax_sdpa)}
"""An entry for `precision.problems.frameworks.JAX_KERNELS` (a batch kernel)."""


# ---------------------------------------------------------------- the problem


def statistics_precision(fmt: Format, *, float32_stats: float) -> str:
    """The precision the statistics and the output accumulator run in: float32 with
    ``float32_stats = 1`` (float64 input is then refused), else the format."""
    return "float32" if _check_flag("float32_stats", float32_stats) else fmt.name


STATS = (0.0, 1.0)

VARIANTS = {
    "two_pass": Variant(
        "two_pass",
        two_pass_attention,
        two_pass_bound,
        statistics_precision,
        description="max, exp(s - max), sum, weighted sum / sum; left-to-right sums",
        grid={"float32_stats": STATS},
        batched=True,
    ),
    "online": Variant(
        "online",
        online_attention,
        online_bound,
        statistics_precision,
        description="Milakov-Gimelshein online normaliser, then the weighted sum",
        grid={"float32_stats": STATS},
        batched=True,
    ),
    "blockwise": Variant(
        "blockwise",
        blockwise_attention,
        blockwise_bound,
        statistics_precision,
        description="FlashAttention-2 rescaling over blocks of kv_block keys",
        grid={"float32_stats": STATS, "kv_block": KV_BLOCKS},
        batched=True,
    ),
}

ATTENTION = Problem(
    name="attention",
    description="attention softmax(q K^T / 4) V of one query (d = 16): two-pass, online, "
    "blockwise (FlashAttention), statistics in the format or float32",
    reference=attention_reference,
    magnitude=logit_spread,
    magnitude_name="logit spread",
    propose=propose_attention,
    estimate=estimate_attention,
    variants=VARIANTS,
    input_shape=attention_shape,
    batched=True,
)
