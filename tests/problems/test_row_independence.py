"""The batch contract: every batched kernel computes each row independently.

The runner calls a batched variant once per chunk and format on all of the chunk's inputs and
takes row i as the result for input i; that is only the same measurement as calling it on input
i alone if row i of the batched call equals the one-row call bit for bit. This is checked here
for every registered variant that declares ``batched=True``, in every format, on inputs drawn
by the problem's own generator at several magnitudes (overflow and underflow included).

A library's batched kernel that really differs from its one-row call is a finding, not a bug of
the runner: it is listed in `BATCH_DEPENDENT` with what was measured, and there the test
asserts the difference instead. The variants stay batched (a training step calls them on
batches, and the rows measure that); the table's ``batch`` column says how many rows the call
that made each row held.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from same_bits import nan_blind

from precision.core.formats import cast
from precision.core.metrics import ulp_distance
from precision.core.schema import variant_label
from precision.problems import PROBLEMS

FORMATS = ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"]
ROWS = 6
MAGNITUDES = (1e-2, 3.0, 2e2, 1e4)

_TF = (
    "TensorFlow 2.21's CPU kernel: rows of a batch differ from the one-row call by 1 or 2 "
    "ulps (up to 65,536 ulps for log-sum-exp near 0), at every batch size measured"
)
BATCH_DEPENDENT: dict[tuple[str, str, str], str] = {
    ("softmax", "tensorflow", "float64"): _TF,
    ("logsumexp", "tensorflow", "float32"): _TF,
    ("logsumexp", "tensorflow", "float64"): _TF,
    ("log_softmax", "tensorflow", "float32"): _TF,
    ("log_softmax", "tensorflow", "float64"): _TF,
    ("cross_entropy", "tensorflow", "float32"): _TF,
    ("cross_entropy", "tensorflow", "float64"): _TF,
    ("variance", "torch", "float64"): "torch 2.13's CPU torch.var along dim=-1 of a (batch, n) "
    "float64 tensor differs from the one-row call in most rows (another reduction path)",
    # Issue 17: the libraries' elementwise activations on a (24, 7) batch against one row at
    # a time (vectorised and scalar code paths of one kernel): measured 2026-12-06.
    ("gelu", "tensorflow", "float64"): "TensorFlow's tf.nn.gelu: 6 of 24 rows differ, by 1 ulp",
    ("silu", "tensorflow", "float32"): "TensorFlow's tf.nn.silu: 17 of 24 rows differ, by up to "
    "4 ulps",
    ("silu", "torch", "float32"): "torch 2.13's CPU silu: 11 of 24 rows differ, by 1 ulp",
    ("silu", "torch", "float64"): "torch 2.13's CPU silu: 1 of 24 rows differs, by 1 ulp",
}
"""(problem, variant, format) -> what was measured of its batched call against the one-row
call, on this test's inputs; the test asserts that they still differ, so the list cannot go
stale (on the machines measured so far: AVX2 and AVX-512 ones). JAX 0.10 (float32, float64)
differs too, but only once a batch holds several thousand values (64 x 100, 8 x 1000;
tests/problems/test_frameworks.py): on these small batches its rows must agree."""


CPU_DEPENDENT: dict[tuple[str, str, str], tuple[int, str]] = {
    ("gelu", "tensorflow", "float32"): (
        4,
        "TensorFlow's tf.nn.gelu (erf): on an AVX-512 machine 18 of 24 rows differ, by up to "
        "2 ulps (2026-12-07); on the AVX2 machines before, none did",
    ),
}
"""(problem, variant, format) -> (ulps, what was measured) for a library kernel whose batched
and one-row calls agree on some CPUs and not on others (a vectorised and a scalar path of one
kernel, chosen by the machine's vector width): the test asserts only that the rows agree to
within that many ulps, the most any TensorFlow elementwise kernel here differs by (silu,
float32, 4 ulps). The table's ``batch`` column records each row's call either way."""


def _batched_variants() -> list:
    """(problem, variant name, member) of every batched variant, each member of a family (one
    per point of its default parameter grid) apart."""
    return [
        pytest.param(problem, name, member, id=f"{problem}-{variant_label(name, member.params)}")
        for problem, spec in PROBLEMS.items()
        for name, variant in spec.variants.items()
        if variant.batched and variant.device == "cpu"
        for member in variant.expand()
    ]


def _size(problem) -> int:
    """A small size the problem takes (matrix problems need at least 2)."""
    return 7 if problem.takes_sizes else 1


def _inputs(problem_name: str, fmt: str) -> np.ndarray:
    """ROWS inputs per magnitude from the problem's generator, rounded to ``fmt``."""
    problem = PROBLEMS[problem_name]
    rng = np.random.default_rng(zlib.crc32(f"{problem_name} {fmt}".encode()))
    X = np.concatenate(
        [
            problem.propose(rng, n=_size(problem), magnitude=m, cond=10.0, size=ROWS)
            for m in MAGNITUDES
        ]
    )
    return np.ascontiguousarray(cast(X, fmt))


def _call(kernel, X):
    with np.errstate(all="ignore"):
        return kernel(X)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("problem", "variant", "member"), _batched_variants())
def test_row_i_of_the_batch_is_the_one_row_call(problem, variant, member, fmt):
    kernel = member.kernel
    X = _inputs(problem, fmt)
    try:
        batched = _call(kernel, X)
    except Exception as exc:  # a refusal or a raising kernel: the one-row call must do the same
        with pytest.raises(type(exc)):
            _call(kernel, X[:1])
        return
    Y = np.asarray(getattr(batched, "y", batched))
    assert Y.shape[0] == len(X), f"{problem}/{variant} dropped the batch axis: {Y.shape}"
    one_row = [_call(kernel, X[i : i + 1]) for i in range(len(X))]
    rows = [np.asarray(getattr(r, "y", r))[0] for r in one_row]
    assert all(r.dtype == Y.dtype for r in rows)
    differing = [i for i in range(len(X)) if nan_blind(Y[i]) != nan_blind(rows[i])]
    if (problem, variant, fmt) in CPU_DEPENDENT:
        ulps, _ = CPU_DEPENDENT[problem, variant, fmt]
        apart = ulp_distance(Y, np.stack(rows), nan="max")
        assert np.max(np.abs(apart), initial=0) <= ulps, f"{problem}/{variant} in {fmt}"
    elif (problem, variant, fmt) in BATCH_DEPENDENT:
        assert differing, f"{problem}/{variant} in {fmt} no longer differs: update the list"
    else:
        assert not differing, f"{problem}/{variant} in {fmt}: rows {differing} differ"


def test_there_are_batched_variants_in_every_softmax_family_problem():
    """The runner's speed rests on them: the kernels of the softmax family are batched."""
    for problem in ("softmax", "logsumexp", "log_softmax", "cross_entropy"):
        own = PROBLEMS[problem].variants
        assert any(v.batched for v in own.values()), problem


# ------------------------------------------------------------------ the reductions they rely on


def test_float16_sums_along_the_contiguous_last_axis_accumulate_as_one_row_does():
    """numpy sums float16 pairwise in float32 over a contiguous axis (NUMERICS.md), so a
    (batch, n) array summed along its last axis gives each row's 1-D sum: measured, not
    assumed. Summed along a non-contiguous axis it accumulates in float16 and stagnates; this
    is why the runner passes C-contiguous batches (`precision.run.measure.run_batch`)."""
    ones = np.ones((3, 10_000), dtype=np.float16)
    assert (ones.sum(axis=-1) == np.ones(10_000, dtype=np.float16).sum()).all()
    assert ones.sum(axis=-1)[0] == 10_000
    fortran = np.asfortranarray(ones)
    assert fortran.sum(axis=-1)[0] != 10_000  # float16 accumulation: stagnates at 2048
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 1000)).astype(np.float16)
    assert all(X.sum(axis=-1)[i] == X[i].sum() for i in range(len(X)))
