"""Tests for precision.problems.frameworks: torch, JAX and TensorFlow kernels as variants.

A library that is not installed skips its tests with the reason; the project's test extra
installs torch and JAX, so CI runs them. Every error tolerance is the variant's textbook bound
``bound(x, fmt)`` widened by the second-order factor 1 + n u, as in tests/problems/test_problems.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from precision.core.formats import FORMATS, STUDY_FORMATS, cast, get_format
from precision.core.metrics import normwise_relative_error
from precision.problems import DEFAULT_VARIANTS, PROBLEMS, frameworks
from precision.problems.base import Unsupported
from precision.run.spec import SpecError, parse_spec
from precision.truth.exact import ground_truth

LIBRARIES = ["torch", "jax", "tensorflow"]
SOFTMAX_FAMILY = ["softmax", "logsumexp", "log_softmax", "cross_entropy"]


def _need(library: str) -> None:
    if not frameworks.LIBRARIES[library].installed():
        pytest.skip(f"{library} is not installed (pip install -e '.[{library}]')")


def _variants(library: str, problems=SOFTMAX_FAMILY) -> list[tuple[str, str]]:
    return [(p, library) for p in problems if library in PROBLEMS[p].variants]


def _input(problem: str, seed: int, *, n: int = 12, magnitude: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return PROBLEMS[problem].propose(rng, n=n, magnitude=magnitude, cond=10.0, size=1)[0]


# ------------------------------------------------------------------ dtypes and conversions


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_library_variants_compute_in_the_input_format(library, fmt):
    """torch, JAX and TensorFlow keep float16, bfloat16, float32 and float64 (JAX only with
    x64 enabled, which the variant scopes to its call)."""
    _need(library)
    for problem, name in _variants(library, [*SOFTMAX_FAMILY, "summation", "variance"]):
        x = cast(_input(problem, 1), fmt)
        y = PROBLEMS[problem].variants[name].compute(x)
        assert y.dtype == get_format(fmt).dtype, (problem, library, fmt, y.dtype)


def test_jax_x64_is_scoped_to_the_call():
    _need("jax")
    import jax

    PROBLEMS["softmax"].variants["jax"].compute(np.array([1.0, 2.0]))
    assert not jax.config.jax_enable_x64


def test_torch_conversion_is_bit_exact_for_every_bfloat16_and_float8():
    _need("torch")
    for fmt in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        dtype = FORMATS[fmt].dtype
        bits = np.arange(2 ** (8 * dtype.itemsize), dtype=f"uint{8 * dtype.itemsize}")
        x = bits.view(dtype)
        back = frameworks.from_torch(frameworks.to_torch(x))
        assert back.dtype == dtype and np.array_equal(back.view(bits.dtype), bits)


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2"])
def test_refused_float8_is_an_unsupported_row_not_a_crash(fmt):
    """torch's CPU softmax and TensorFlow's kernels have no float8: the row says so."""
    from precision.run.evaluate import evaluate

    named = [lib for lib in ("torch", "tensorflow") if frameworks.LIBRARIES[lib].installed()]
    if not named:
        pytest.skip("neither torch nor tensorflow is installed")
    table = evaluate("softmax", [0.5, 1.0, 2.0], formats=[fmt], variants=named)
    assert set(table["outcome"]) == {"unsupported"}
    assert (table["compute_dtype"] == "").all()


def test_rows_record_library_version_and_device():
    _need("torch")
    from importlib import metadata

    from precision.run.measure import measure_variant

    f = get_format("bfloat16")
    x = cast(np.array([1.0, 2.0, 3.0]), f)
    truth = ground_truth(PROBLEMS["logsumexp"], x, f)
    _, row = measure_variant(PROBLEMS["logsumexp"], "torch", x, f, truth.exact)
    assert row["library"] == "torch" and row["library_version"] == metadata.version("torch")
    assert row["device"] == "cpu" and row["compute_dtype"] == "bfloat16"
    assert row["accumulator"] == "float32" and row["outcome"] == "ok"


# ------------------------------------------------------------------ batches

# (library, format) whose batched call was measured NOT to reproduce the one-row call bit for
# bit (JAX 0.10.2, TensorFlow 2.21.0, on the CPU): XLA and Eigen reduce a (batch, n) array in
# another order than a (1, n) one. JAX differs once a batch holds some thousands of values
# (64 x 100, 8 x 1000; softmax up to 6 ulps, log-sum-exp near 0 up to 2**14 ulps, the same
# absolute error), TensorFlow at every size (1 or 2 ulps; more for log-sum-exp near 0). The
# variants stay batched: a training step calls them on batches, and the rows measure that.
BATCH_DEPENDENT = {(lib, fmt) for lib in ("jax", "tensorflow") for fmt in ("float32", "float64")}


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_library_kernels_are_batch_kernels(library, fmt):
    """The softmax family's library kernels take a batch along the last axis, (B, n) ->
    (B, m), with the routine called once on the batch; row i equals the one-row call bit for
    bit, except where the library itself computes a batch differently (`BATCH_DEPENDENT`)."""
    _need(library)
    for problem, name in _variants(library):
        variant = PROBLEMS[problem].variants[name]
        assert variant.batched, (problem, name)
        rng = np.random.default_rng(3)
        for n in (3, 150):
            X64 = np.concatenate(
                [
                    PROBLEMS[problem].propose(rng, n=n, magnitude=m, cond=10.0, size=4)
                    for m in (0.01, 3.0, 100.0)
                ]
            )
            X = cast(X64, fmt)
            with np.errstate(all="ignore"):
                try:
                    batch = variant.kernel(X)
                except Unsupported:
                    with pytest.raises(Unsupported):
                        variant.compute(X[0])
                    continue
                rows = [variant.kernel(X[i : i + 1])[0] for i in range(len(X))]
            assert batch.shape[0] == len(X) and batch.dtype == rows[0].dtype
            if (library, fmt) in BATCH_DEPENDENT:
                continue
            for i, row in enumerate(rows):
                assert batch[i].tobytes() == row.tobytes(), (problem, library, fmt, n, i)


# ------------------------------------------------------------------ accuracy


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("fmt", ["float32", "float64", "float16", "bfloat16"])
def test_library_errors_within_textbook_bounds(library, fmt):
    """Each library computes the shifted form: its error must respect the shifted form's
    first-order bound (which assumes numpy's exp/log kernel accuracy, `kernel_error`) on
    seeded inputs of several magnitudes, in every format where the bound is finite."""
    _need(library)
    f = get_format(fmt)
    checked = 0
    for problem, name in _variants(library):
        variant = PROBLEMS[problem].variants[name]
        for seed, magnitude in enumerate((0.5, 5.0, 50.0)):
            x = cast(_input(problem, 10 + seed, magnitude=magnitude), f)
            gt = ground_truth(PROBLEMS[problem], x, f)
            with np.errstate(all="ignore"):
                err = normwise_relative_error(variant.compute(x), gt.exact)
                bound = variant.bound(x, f)
            if gt.certified and np.isfinite(bound):
                checked += 1
                limit = bound * (1 + x.shape[-1] * f.u)
                assert err <= limit, (problem, name, fmt, magnitude, err / f.u, limit / f.u)
    assert checked >= 6


@pytest.mark.parametrize("library", LIBRARIES)
def test_half_precision_reductions_accumulate_wider(library):
    """The accumulator column's claim, probed: softmax of 4096 equal logits in float16 is
    2**-12 exactly with a float32 accumulator; a float16 one stalls at 2048 (2**-11, see
    test_emulate.py)."""
    _need(library)
    x = np.zeros(4096, dtype=np.float16)
    y = PROBLEMS["softmax"].variants[library].compute(x)
    assert np.all(y == np.float16(2.0**-12))
    assert PROBLEMS["softmax"].variants[library].accumulator(get_format("float16")) == "float32"


def test_jax_float8_softmax_accumulates_in_float8():
    """JAX runs float8 natively, sums included. softmax of 64 equal e5m2 logits: the ones sum
    to 64 exactly in float32 (and 64 is an e5m2 number), so an output above 1/64 means ones
    were lost in a float8 accumulator (measured: 1/16). The accumulator column says so."""
    _need("jax")
    dtype = FORMATS["float8_e5m2"].dtype
    y = PROBLEMS["softmax"].variants["jax"].compute(np.zeros(64, dtype=dtype))
    assert y.dtype == dtype and float(y[0]) > 2.0**-6
    assert PROBLEMS["softmax"].variants["jax"].accumulator(FORMATS["float8_e5m2"]) == (
        "float8_e5m2"
    )


def test_jax_float8_e4m3fn_softmax_is_nan():
    """jax.nn.softmax takes max(-inf, max x) (its jaxpr); e4m3fn has no infinity, so -inf
    becomes NaN and every output is NaN, whatever the input: the row's outcome is nan."""
    _need("jax")
    x = cast(np.array([0.5, 1.0, 2.0]), "float8_e4m3fn")
    assert np.isnan(PROBLEMS["softmax"].variants["jax"].compute(x).astype(np.float32)).all()


# ------------------------------------------------------------------ specs and defaults


def _spec(variants: dict) -> dict:
    return {
        "name": "t",
        "formats": ["float32"],
        "problems": list(variants) or ["softmax"],
        "variants": variants,
        "grid": {
            "log10_cond": [0, 1],
            "log10_magnitude": [0, 1],
            "sizes": [4],
            "samples_per_cell": 1,
        },
    }


def test_a_missing_library_fails_the_spec_in_one_line(monkeypatch):
    missing = frameworks.Library("tensorflow", "no_such_module_xyz", ("x",), "tensorflow", "TF")
    monkeypatch.setitem(frameworks.LIBRARIES, "tensorflow", missing)
    with pytest.raises(SpecError) as error:
        parse_spec(_spec({"softmax": ["shifted", "tensorflow"]}))
    text = str(error.value)
    assert "\n" not in text and "pip install -e '.[tensorflow]'" in text
    assert "variants.softmax" in text


def test_torch_cuda_without_a_gpu_fails_the_spec():
    _need("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SpecError, match="needs a CUDA device"):
        parse_spec(_spec({"softmax": ["torch_cuda"]}))


def test_library_variants_run_only_when_named():
    spec = parse_spec(_spec({}))
    assert spec.variants_of("softmax") == DEFAULT_VARIANTS["softmax"]
    assert not {"torch", "jax", "tensorflow", "shifted_emulated"} & set(DEFAULT_VARIANTS["softmax"])


# ------------------------------------------------------------------ torch.linalg


@pytest.mark.parametrize("problem", ["linear_system", "least_squares"])
def test_torch_linalg_refuses_half_precision_on_the_cpu(problem):
    """torch's CPU LU and gelsy have no float16/bfloat16: an unsupported row, not a crash."""
    _need("torch")
    from precision.run.measure import run_variant_detailed

    if problem not in PROBLEMS:
        pytest.skip(f"no {problem} problem in this tree")
    x64 = PROBLEMS[problem].propose(np.random.default_rng(6), n=4, magnitude=1.0, cond=10.0, size=1)
    for fmt in ("float16", "bfloat16"):
        run = run_variant_detailed(PROBLEMS[problem], "torch", cast(x64[0], fmt))
        assert run.unsupported and "torch.linalg" in run.unsupported
    for fmt in ("float32", "float64"):
        run = run_variant_detailed(PROBLEMS[problem], "torch", cast(x64[0], fmt))
        assert run.unsupported is None and run.y.dtype == get_format(fmt).dtype


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_torch_solve_is_backward_stable(fmt):
    """LU with partial pivoting: the Rigal-Gaches backward error eta is a few n u (growth is
    small on these matrices: measured at most 0.6 u, allowed 2 n u), and the forward error
    obeys the textbook
    first-order bound 2 kappa_2(A) eta (linear_systems module docstring)."""
    _need("torch")
    if "linear_system" not in PROBLEMS:
        pytest.skip("no linear_system problem in this tree")
    problem, f = PROBLEMS["linear_system"], get_format(fmt)
    rng = np.random.default_rng(7)
    for n, kappa in ((5, 10.0), (8, 1e4), (12, 1e6)):
        x = cast(problem.propose(rng, n=n, magnitude=1.0, cond=kappa, size=1)[0], f)
        gt = ground_truth(problem, x, f)
        y = problem.variants["torch"].compute(x)
        eta = problem.backward_error(x, y)
        err = normwise_relative_error(y, gt.exact)
        assert eta <= 2 * n * f.u, (n, kappa, eta / f.u)
        assert err <= 2 * float(gt.cond) * eta * (1 + 1e-3), (n, kappa, err / f.u)


FLOAT32_GELU_COEFFICIENT = {"tensorflow"}
"""Libraries whose float64 tanh GELU uses 0.044715 rounded to float32 (0.044714998453855515):
measured 2026-12-06 on TensorFlow 2.21, 9.0e-10 from the textbook formula at x = -1.85 and
9.3e-16 from the formula with the float32 coefficient. The test asserts both, so the entry
cannot go stale."""


def _tanh_gelu(x: np.ndarray, coefficient: float) -> np.ndarray:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + c x^3))) in float64."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + coefficient * x**3)))


@pytest.mark.parametrize("library", LIBRARIES)
def test_the_approximate_parameter_selects_the_librarys_tanh_gelu(library):
    """GELU's library kernels are a family over ``approximate``: 1 calls the library's tanh
    approximation, 0 its exact GELU. In float64 the approximate member agrees with the tanh
    formula in absolute terms: each evaluates 0.5 x (1 + tanh(sqrt(2/pi) (x + c x^3))) in its
    own order, whose rounding errors are a few u |x| absolute (1 + tanh cancels for negative x,
    so relative agreement would not hold); 2^-46 max|x| leaves room for the tanh kernels' own
    errors. c is 0.044715, or its float32 rounding where a library uses that
    (`FLOAT32_GELU_COEFFICIENT`, then the textbook c is measurably off). The approximate member
    differs from the exact one by the approximation's error, more than 10% relative at x = -4
    (exact GELU -1.2668e-4, tanh form -7.02e-5), where no rounding error of float64 comes
    near."""
    _need(library)
    family = PROBLEMS["gelu"].variants[library]
    members = {m.params["approximate"]: m for m in family.expand()}
    assert sorted(members) == [0.0, 1.0]
    x = np.linspace(-6.0, 6.0, 241)
    approximate, exact = (
        members[1.0].kernel(x[np.newaxis])[0],
        members[0.0].kernel(x[np.newaxis])[0],
    )
    tolerance = 2.0**-46 * np.max(np.abs(x))
    textbook = np.max(np.abs(approximate - _tanh_gelu(x, 0.044715)))
    if library in FLOAT32_GELU_COEFFICIENT:
        assert textbook > 1e3 * tolerance
        coefficient = float(np.float32(0.044715))
        assert np.max(np.abs(approximate - _tanh_gelu(x, coefficient))) < tolerance
    else:
        assert textbook < tolerance
    at = int(np.argmin(np.abs(x + 4.0)))
    assert abs(approximate[at] - exact[at]) / abs(exact[at]) > 1e-1
