"""Attention of one query (precision.problems.attention): the reference against an independent
mpmath formula at 300 bits and against float64 numpy within its error bound, the condition
number against the exact Jacobian sum (an upper bound within a factor 2), the bitwise relations
between the algorithms, the batch contract, the bounds on seeded inputs, torch's math backend
and a tiny end-to-end study.

Every expected value is computed here independently: mpmath at 300 bits from the textbook
formula, float64 numpy, and the Jacobian of o written out by hand.
"""

from __future__ import annotations

import functools
import importlib.util

import mpmath
import numpy as np
import pytest

import precision as pr
from precision.core import schema
from precision.core.formats import FORMATS, STUDY_FORMATS, cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.problems import PROBLEMS, frameworks
from precision.problems.attention import (
    ATTENTION,
    SCALE,
    TORCH_KERNELS,
    blockwise_attention,
    condition64,
    logit_spread,
    online_attention,
    split,
    two_pass_attention,
    working_bound,
)
from precision.problems.base import Unsupported
from precision.truth.exact import ground_truth

MEMBERS = [member for variant in ATTENTION.variants.values() for member in variant.expand()]
ROW_FORMATS = ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn"]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _rows(fmt: str, *, n: int, spread, cond, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cast(ATTENTION.propose(rng, n=n, magnitude=spread, cond=cond, size=size), fmt)


def _exact(gt) -> list:
    """The certified reference values as mpf (hi + lo, times 2**exp)."""
    e = gt.exact
    return [
        mpmath.ldexp(mpmath.mpf(e.hi[i]) + mpmath.mpf(e.lo[i]), int(e.exp[i]))
        for i in range(len(e.hi))
    ]


def _textbook(x) -> list:
    """softmax(q K^T / 4) V in mpmath at the working precision, no shift."""
    q, K, V = (np.asarray(part, dtype=np.float64).tolist() for part in split(x))
    s = [mpmath.fsum(mpmath.mpf(a) * b for a, b in zip(q, k, strict=True)) / 4 for k in K]
    e = [mpmath.exp(v) for v in s]
    total = mpmath.fsum(e)
    return [mpmath.fsum(ej * v[c] for ej, v in zip(e, V, strict=True)) / total for c in range(16)]


def _torch_kernel():
    routine, call = TORCH_KERNELS["attention"]
    return functools.partial(frameworks._torch_call, routine, call, device="cpu")


# ------------------------------------------------------------------------- the reference


@pytest.mark.parametrize("engine", ["mpmath", "arb"])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_reference_against_mpmath_at_300_bits(fmt, engine):
    x = _rows(fmt, n=12, spread=20.0, cond=30.0, size=1, seed=1)[0]
    gt = ground_truth(ATTENTION, x, fmt, engine=engine)
    assert gt.certified
    with mpmath.workprec(300):
        for got, value in zip(_exact(gt), _textbook(x), strict=True):
            assert abs(got - value) <= 2.0**-100 * abs(value)


@pytest.mark.parametrize("n", [1, 16, 300])
def test_reference_against_float64_numpy_within_its_bound(n):
    """numpy's float64 attention (matmul, any summation order: every term meets at most
    L - 1 additions) errs by at most the float64 two-pass bound of `working_bound`."""
    X = _rows("float64", n=n, spread=8.0, cond=5.0, size=4, seed=2)
    q, K, V = split(X)
    s = np.einsum("bjd,bd->bj", K, q) * SCALE
    p = np.exp(s - s.max(axis=1, keepdims=True))
    o = np.einsum("bj,bjc->bc", p, V) / p.sum(axis=1, keepdims=True)
    bound = working_bound(X, FORMATS["float64"], algorithm="two_pass")
    for i, x in enumerate(X):
        gt = ground_truth(ATTENTION, x, "float64", engine="arb")
        assert normwise_relative_error(o[i], gt.exact) <= bound[i]


def _jacobian_condition(x) -> float:
    """max_c sum_k |do_c/dx_k| |x_k| / max|o| over q, K and V, in float64: do_c/dv_jc = p_j,
    do_c/dk_ji = p_j (v_jc - o_c) q_i / 4, do_c/dq_i = sum_j p_j (v_jc - o_c) k_ji / 4."""
    q, K, V = (np.asarray(part, dtype=np.float64) for part in split(x))
    s = K @ q * SCALE
    p = np.exp(s - s.max())
    p /= p.sum()
    o = p @ V
    centred = V - o  # (L, d)
    by_v = p @ np.abs(V)
    by_k = (p[:, None] * np.abs(centred)).T @ (np.abs(K) @ np.abs(q)) * SCALE
    by_q = np.abs((p[:, None] * centred).T @ K) @ np.abs(q) * SCALE
    return float((by_v + by_k + by_q).max() / np.abs(o).max())


@pytest.mark.parametrize(("spread", "cond"), [(0.3, 2.0), (10.0, 30.0), (200.0, 300.0)])
def test_condition_is_an_upper_bound_within_a_factor_two(spread, cond):
    """The Jacobian sum (the mixed condition number itself) <= the reference's <= twice it, up
    to float64 rounding of the Jacobian (1e-12 relative is far above it)."""
    for x in _rows("float64", n=9, spread=spread, cond=cond, size=3, seed=3):
        kappa = float(ground_truth(ATTENTION, x, "float64", engine="arb").cond)
        exact = _jacobian_condition(x)
        assert exact * (1 - 1e-12) <= kappa <= 2 * exact * (1 + 1e-12)
        assert condition64(x[None])[0] == pytest.approx(kappa, rel=1e-10)


@pytest.mark.parametrize("engine", ["mpmath", "arb"])
def test_all_zero_values_give_zero_and_an_infinite_condition(engine):
    x = np.zeros((5, 16))
    x[0, 0], x[1, 0] = 1.0, 1.0  # a query and keys, every value 0
    gt = ground_truth(ATTENTION, x, "float32", engine=engine)
    assert gt.certified and not gt.exact.hi.any() and float(gt.cond) == np.inf


def test_proposals_hit_their_spread_and_reach_their_condition_decade():
    rng = np.random.default_rng(4)
    for target in (0.5, 50.0):
        X = ATTENTION.propose(rng, n=64, magnitude=target, cond=100.0, size=256)
        assert np.allclose(logit_spread(X), target, rtol=1e-12)
        hits = (condition64(X) >= 100.0) & (condition64(X) < 1000.0)
        assert hits.mean() > 0.1


# ------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("fmt", ROW_FORMATS)
def test_rows_are_independent_and_keep_the_format(fmt):
    X = np.ascontiguousarray(
        np.concatenate([_rows(fmt, n=21, spread=s, cond=10.0, size=3, seed=5) for s in (0.1, 30)])
    )
    kernels = [(m.name, m.params, m.kernel) for m in MEMBERS]
    if HAS_TORCH:
        kernels.append(("torch", {}, _torch_kernel()))
    for name, params, kernel in kernels:
        try:
            with np.errstate(all="ignore"):
                Y = kernel(X)
        except Unsupported:
            assert fmt in ("float64", "float8_e4m3fn"), (name, params, fmt)
            continue
        assert Y.shape == (len(X), 16) and Y.dtype == X.dtype
        for i in range(len(X)):
            with np.errstate(all="ignore"):
                row = kernel(X[i : i + 1])[0]
            assert row.tobytes() == Y[i].tobytes(), (name, params, fmt, i)


def _max_first(X: np.ndarray) -> np.ndarray:
    """X with each row's keys and values reordered so that the largest logit comes first."""
    q, K, V = split(np.asarray(X, dtype=np.float64))
    s = np.einsum("bjd,bd->bj", K, q)
    order = np.argsort(-s, axis=1, kind="stable")
    K = np.take_along_axis(K, order[..., None], 1)
    V = np.take_along_axis(V, order[..., None], 1)
    return np.concatenate([q[:, None], K, V], axis=1).astype(X.dtype)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("stats", [0, 1])
def test_online_is_two_pass_bit_for_bit_when_the_max_comes_first(fmt, stats):
    """Every rescale factor is then exp(0) = 1 and l_j = l_{j-1} + P_j: the same left-to-right
    sum as two-pass. Shuffled back, the running max changes and the bits may differ."""
    X = _max_first(_rows(fmt, n=200, spread=12.0, cond=10.0, size=6, seed=6))
    with np.errstate(all="ignore"):
        a = online_attention(X, float32_stats=stats)
        b = two_pass_attention(X, float32_stats=stats)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("stats", [0, 1])
def test_one_block_is_two_pass_bit_for_bit(fmt, stats):
    X = _rows(fmt, n=100, spread=12.0, cond=10.0, size=6, seed=7)
    with np.errstate(all="ignore"):
        two = two_pass_attention(X, float32_stats=stats)
        for block in (100, 128):
            assert blockwise_attention(X, float32_stats=stats, kv_block=block).tobytes() == (
                two.tobytes()
            )


def test_float32_statistics_are_the_format_in_float32_and_refuse_float64():
    X = _rows("float32", n=40, spread=5.0, cond=3.0, size=4, seed=8)
    for member in MEMBERS:
        if member.params["float32_stats"] == 1:
            params = {**member.params, "float32_stats": 0.0}
            same = ATTENTION.variants[member.name].with_params(**params)
            assert member.kernel(X).tobytes() == same.kernel(X).tobytes()
            with pytest.raises(Unsupported):
                member.kernel(X.astype(np.float64))


@pytest.mark.parametrize(
    ("kernel", "options", "named"),
    [
        (two_pass_attention, {"float32_stats": 2}, "float32_stats"),
        (blockwise_attention, {"float32_stats": 0, "kv_block": 0}, "kv_block"),
        (blockwise_attention, {"float32_stats": 0, "kv_block": 2.5}, "kv_block"),
    ],
)
def test_a_bad_option_is_refused_by_name(kernel, options, named):
    X = _rows("float32", n=4, spread=1.0, cond=2.0, size=1, seed=9)
    with pytest.raises(ValueError, match=named):
        kernel(X, **options)


# ------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_errors_within_bounds_on_seeded_inputs(fmt):
    """Every finite bound holds, over spreads 0.2..500, conditions 2..1000 and L = 8..512; at
    least half are finite (in-format bfloat16 bounds pass 1 for long sequences: NaN)."""
    f = get_format(fmt)
    failures, finite, total = [], 0, 0
    for n, seed in ((8, 10), (64, 11), (512, 12)):
        for spread in (0.2, 5.0, 500.0):
            for x in _rows(fmt, n=n, spread=spread, cond=np.array([2.0, 1e3]), size=2, seed=seed):
                gt = ground_truth(ATTENTION, x, f, engine="arb")
                for member in MEMBERS:
                    total += 1
                    bound = member.bound_of(x, f)
                    if not np.isfinite(bound):
                        continue
                    finite += 1
                    with np.errstate(all="ignore"):
                        err = normwise_relative_error(member.compute(x), gt.exact)
                    if not err <= bound:
                        failures.append((member.name, member.params, n, spread, err / f.u))
    assert not failures, failures[:3]
    assert finite >= total // 2


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("n", [16, 256, 1024])
def test_float32_statistics_within_u_plus_a_multiple_of_l_float32_units(fmt, n):
    """With float32 statistics the format rounds o once: err <= u (1 + b) + b, where the
    analysis (`working_bound`, each term weighted by p_j and bounded through kappa) gives
    b <= (kappa + 1) (gamma_d / 2 + spread u' + eps) with eps <= (1 + R) e_exp + (L + R) u',
    u' = 2^-24, e_exp = 2.52 ulps = 5.04 u' (numpy's float32 exp) and R <= L - 1 rescalings:
    b <= (kappa + 1) (8 L + spread + d) u' for every algorithm."""
    f, u32 = get_format(fmt), FORMATS["float32"].u
    X = _rows(fmt, n=n, spread=3.0, cond=5.0, size=3, seed=13)
    for x in X:
        gt = ground_truth(ATTENTION, x, f, engine="arb")
        b = (float(gt.cond) + 1) * (8 * n + logit_spread(x) + 16) * u32
        for member in MEMBERS:
            if member.params["float32_stats"] == 1:
                err = normwise_relative_error(member.compute(x), gt.exact)
                assert err <= f.u * (1 + b) + b, (member.name, member.params, err / f.u)


# ------------------------------------------------------------------------- torch


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_torch_math_backend_computes_half_formats_in_float32(fmt):
    """torch's math backend returns the format, and its result is within one ulp of the
    float32-statistics two-pass result rounded once (both are float32 values within
    b << u of o, rounded to the format), with the same error bound."""
    f = get_format(fmt)
    X = _rows(fmt, n=256, spread=6.0, cond=5.0, size=6, seed=14)
    got = _torch_kernel()(X)
    ours = two_pass_attention(X, float32_stats=1)
    assert got.dtype == X.dtype
    step = np.abs(np.spacing(np.abs(ours.astype(np.float32)).astype(X.dtype).astype(np.float32)))
    assert (np.abs(got.astype(np.float32) - ours.astype(np.float32)) <= step).all()
    for i, x in enumerate(X):
        gt = ground_truth(ATTENTION, x, f, engine="arb")
        bound = ATTENTION.variants["two_pass"].with_params(float32_stats=1).bound_of(x, f)
        assert normwise_relative_error(got[i], gt.exact) <= bound


# ------------------------------------------------------------------------- a study


NEW_PARAMETERS = ("float32_stats", "kv_block")


@pytest.fixture
def attention_registered(monkeypatch):
    """The problem in the registry and its parameters in the schema, as the registration
    proposed with this module does (a no-op for what is registered already)."""
    for key in NEW_PARAMETERS:
        if key not in schema.PARAMETERS:
            monkeypatch.setitem(schema.PARAMETERS, key, key)
            monkeypatch.setitem(schema.COLUMNS, key, key)
            monkeypatch.setitem(schema.DTYPES, key, "float64")
    if "attention" not in PROBLEMS:
        monkeypatch.setitem(PROBLEMS, "attention", ATTENTION)


def test_a_tiny_study_runs_every_variant(attention_registered):
    raw = {
        "name": "tiny_attention",
        "seed": 3,
        "formats": ["bfloat16", "float32"],
        "problems": ["attention"],
        "variants": {"attention": ["two_pass", "online", "blockwise"]},
        "params": {"attention": {"kv_block": [4]}},
        "grid": {
            "log10_cond": [0, 1],
            "log10_magnitude": [0, 1],
            "sizes": [10],
            "samples_per_cell": 2,
        },
    }
    table = pr.run_study(raw)
    assert len(table) == 2 * 2 * 6  # formats x inputs x members (2 + 2 + 2 x 1 kv_block)
    assert (table["outcome"] == "ok").all() and table["certified"].all()
    assert set(table["kv_block"].dropna()) == {4.0}
    assert set(table["float32_stats"]) == {0.0, 1.0}
    checked = table["bound"].notna()
    assert checked.any() and (table["rel_error"][checked] <= table["bound"][checked]).all()


def test_each_member_names_its_own_accumulator():
    """The accumulator column follows a member's float32_stats (`Variant.with_params` binds
    the parameters of an accumulator that takes them), not a text naming both cases."""
    bf16 = get_format("bfloat16")
    for name, variant in PROBLEMS["attention"].variants.items():
        if not variant.grid:
            continue
        for member in variant.expand():
            expected = "float32" if member.params["float32_stats"] == 1 else "bfloat16"
            assert member.accumulator(bf16) == expected, (name, member.params)
