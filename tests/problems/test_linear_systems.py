"""Linear systems and the matrix condition number: exact references, honest library rows, and
the study's own rows (a small spec run once per module) showing the kappa u law.

Expected values come from exact rational arithmetic (python-flint fmpq) or from error analysis:
a backward stable solver's forward error grows like kappa u (Higham, *Accuracy and Stability
of Numerical Algorithms*, 2nd ed., sec. 7.1), so log error against log kappa has slope 1; the
fits use rows with kappa >= 100 (below that the error is a constant times n u, not yet kappa u)
and kappa u <= 0.1 (beyond that no digit is left and errors saturate near 1).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import flint
import mpmath
import numpy as np
import pandas as pd
import pytest

from precision.core.formats import STUDY_FORMATS, cast, get_format, round_to_format
from precision.core.numbers import ARB, MPMATH
from precision.problems.linear_systems import (
    LINEAR_SYSTEM,
    linear_system_reference,
    propose_systems,
)
from precision.problems.matrix_condition import MATRIX_CONDITION, condition_reference
from precision.run.measure import measure_variant
from precision.run.spec import load_spec, parse_spec
from precision.run.study import run
from precision.truth.exact import UndefinedResult, ground_truth

STUDY = Path(__file__).resolve().parents[2] / "studies" / "linear_systems.toml"


def exact_solution(x: np.ndarray) -> list:
    """The solution of the packed system [A | b] in exact rationals."""
    rows = np.asarray(x, dtype=np.float64).tolist()
    a = flint.fmpq_mat([[flint.fmpq(*v.as_integer_ratio()) for v in r[:-1]] for r in rows])
    b = flint.fmpq_mat([[flint.fmpq(*r[-1].as_integer_ratio())] for r in rows])
    solution = a.solve(b)
    return [solution[i, 0] for i in range(len(rows))]


@pytest.mark.parametrize("engine", ["arb", "mpmath"])
@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_reference_is_the_exact_solution_rounded_once(fmt, engine):
    rng = np.random.default_rng(STUDY_FORMATS.index(fmt))
    for cond in (3.0, 1e5):
        x = cast(propose_systems(rng, n=6, magnitude=2.0, cond=cond, size=1)[0], fmt)
        truth = ground_truth(LINEAR_SYSTEM, x, fmt, engine=engine)
        assert truth.certified
        for got, want in zip(truth.exact.rounded.tolist(), exact_solution(x), strict=True):
            assert got == float(round_to_format(Fraction(int(want.p), int(want.q)), fmt))
        a64 = np.asarray(x, dtype=np.float64)[:, :-1]
        # numpy's float64 SVD has a relative error of about kappa u on sigma_min.
        assert truth.cond == pytest.approx(np.linalg.cond(a64), rel=1e-13 * max(cond, 10))


def test_condition_reference_is_one_plus_kappa():
    x = propose_systems(np.random.default_rng(12), n=8, magnitude=3.0, cond=1e4, size=1)[0]
    a = x[:, :-1]
    truth = ground_truth(MATRIX_CONDITION, a, "float64", engine="arb")
    kappa = np.linalg.cond(a)
    assert float(truth.exact.rounded[0]) == pytest.approx(kappa, rel=1e-11)
    assert truth.cond == pytest.approx(1 + kappa, rel=1e-11)


# [[1, 1], [1, 1 + 2**-12]] is nonsingular (kappa ~ 2**14); float16 rounds 1 + 2**-12 to 1.
NEARLY_SINGULAR = np.array([[1.0, 1.0, 1.0], [1.0, 1.0 + 2.0**-12, 2.0]])


@pytest.mark.parametrize("engine", ["arb", "mpmath"])
def test_system_singular_once_rounded_is_undefined(engine):
    """float16 makes A exactly singular: no unique solution, UndefinedResult (a row says
    "undefined"); float32 keeps it and the truth is certified, kappa ~ 2**14."""
    with pytest.raises(UndefinedResult):
        ground_truth(LINEAR_SYSTEM, cast(NEARLY_SINGULAR, "float16"), "float16", engine=engine)
    truth = ground_truth(LINEAR_SYSTEM, cast(NEARLY_SINGULAR, "float32"), "float32", engine=engine)
    assert truth.certified
    assert truth.cond == pytest.approx(np.linalg.cond(NEARLY_SINGULAR[:, :-1]), rel=1e-9)


@pytest.mark.parametrize("ctx", [MPMATH, ARB], ids=["mpmath", "arb"])
def test_condition_of_a_singular_matrix_is_infinite(ctx):
    """kappa_2 of an exactly singular A (decided in exact arithmetic) is inf, output and
    condition number alike."""
    a = cast(NEARLY_SINGULAR[:, :-1], "float16")
    with ctx.workprec(113):
        y, cond = condition_reference(a, ctx)
    assert y[0] == ctx.inf and cond == ctx.inf


@pytest.mark.parametrize("kappa", [10.0, 1e6, 1e12, 1e15])
def test_condition_number_ball_contains_kappa_and_is_as_narrow_as_binning_needs(kappa):
    """The reference's kappa_2 ball at 113 bits contains mpmath's 2000-bit value and is
    within 2**-20 relative (what binning by decade and plotting need; it is ~2**-45 unless
    kappa is large). Its solution part is unchanged: the exact solution, rounded."""
    x = propose_systems(np.random.default_rng(7), n=12, magnitude=2.0, cond=kappa, size=1)[0]
    with ARB.workprec(113):
        _, ball = linear_system_reference(x, ARB)
    with mpmath.workprec(2000):
        sigma = mpmath.svd_r(mpmath.matrix(x[:, :-1].tolist()), compute_uv=False)
        expected = max(sigma) / min(sigma)
        mid = mpmath.mpf(ball.mid().str(700, radius=False))
        assert abs(mid - expected) <= mpmath.mpf(float(ball.rad())) * (1 + 2.0**-20)
    assert float(ball.rad()) <= 2.0**-20 * float(ball.mid())


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_library_rows_say_where_they_computed(fmt):
    """numpy.linalg refuses float16 and computes everything else in float64: its rows are
    "unsupported" or return float64. The in-format variants return the format's dtype."""
    x = cast(
        propose_systems(np.random.default_rng(13), n=6, magnitude=1.0, cond=10.0, size=1)[0], fmt
    )
    truth = ground_truth(LINEAR_SYSTEM, x, fmt, engine="arb")
    f = get_format(fmt)
    for name in LINEAR_SYSTEM.variants:
        _, row = measure_variant(LINEAR_SYSTEM, name, x, f, truth.exact)
        if name.startswith("numpy"):
            expected = "unsupported" if fmt == "float16" else "ok"
            assert row["outcome"] == expected
            assert row["compute_dtype"] == ("" if fmt == "float16" else "float64")
            assert row["accumulator"] == "float64"
        elif name == "scipy_solve":
            assert row["compute_dtype"] == {"float16": "float32", "bfloat16": "float64"}.get(
                fmt, fmt
            )
        else:
            assert row["compute_dtype"] == fmt and row["outcome"] == "ok"


# ---------------------------------------------------------------- the study's own rows


def tiny_spec(problems, *, cond=(0, 10), magnitude=(0, 1), samples=4):
    return parse_spec(
        {
            "name": "linear_systems_test",
            "seed": 20261141,
            "formats": list(STUDY_FORMATS),
            "problems": problems,
            "grid": {
                "log10_cond": list(cond),
                "log10_magnitude": list(magnitude),
                "sizes": [10],
                "samples_per_cell": samples,
            },
        }
    )


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    with np.errstate(all="ignore"):
        return run(tiny_spec(["linear_system", "matrix_condition"]))


def usable(table: pd.DataFrame, problem: str, variant: str, fmt: str) -> pd.DataFrame:
    keep = (
        (table["problem"] == problem)
        & (table["variant"] == variant)
        & (table["format"] == fmt)
        & (table["outcome"] == "ok")
        & table["certified"].fillna(False).astype(bool)
    )
    return table[keep]


def fitted_slope(rows: pd.DataFrame, *, power: int, fmt: str, kappa_min: float = 100.0) -> float:
    """Slope of log10(rel_error) against log10(cond) over rows with cond >= kappa_min and
    cond**power * u <= 0.1 (the range where the first-order law applies)."""
    u = get_format(fmt).u
    cond, error = rows["cond"].astype(float), rows["rel_error"].astype(float)
    keep = (cond >= kappa_min) & (cond**power * u <= 0.1) & (error > 0)
    assert keep.sum() >= 8, f"too few rows to fit ({keep.sum()})"
    return float(np.polyfit(np.log10(cond[keep]), np.log10(error[keep]), 1)[0])


@pytest.mark.parametrize("fmt", ["float32", "float64"])
@pytest.mark.parametrize("variant", ["lu_solve", "inv_matmul", "scipy_solve"])
def test_solvers_lose_kappa_u(rows, variant, fmt):
    slope = fitted_slope(usable(rows, "linear_system", variant, fmt), power=1, fmt=fmt)
    assert 0.7 <= slope <= 1.2


@pytest.mark.parametrize("variant", ["numpy_solve", "numpy_inv"])
def test_numpy_loses_kappa_u_in_float64(rows, variant):
    slope = fitted_slope(usable(rows, "linear_system", variant, "float64"), power=1, fmt="float64")
    assert 0.7 <= slope <= 1.2


@pytest.mark.parametrize("fmt", ["float32", "float64"])
def test_jacobi_condition_number_loses_kappa_u(rows, fmt):
    slope = fitted_slope(usable(rows, "matrix_condition", "jacobi_svd", fmt), power=1, fmt=fmt)
    assert 0.7 <= slope <= 1.2


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_lu_is_backward_stable_and_inv_is_not(rows, fmt):
    """LU's Rigal-Gaches backward error stays O(n u) at every kappa (Higham thm 9.4 with a
    small growth factor: here gamma_3n times a growth of at most 4), while inv(A) @ b's grows
    with kappa (Higham sec. 14.1): its median over kappa >= 10 exceeds LU's."""
    u, n = get_format(fmt).u, 10
    lu = usable(rows, "linear_system", "lu_solve", fmt)
    inv = usable(rows, "linear_system", "inv_matmul", fmt)
    assert (lu["backward_error"] <= 4 * 3 * n * u / (1 - 3 * n * u)).all()
    ill = lambda t: t[t["cond"] >= 10]["backward_error"].median()  # noqa: E731
    assert ill(inv) > 2 * ill(lu)


def test_low_precision_rows_never_come_from_an_upcast(rows):
    low = rows[rows["format"].isin(["float16", "bfloat16"]) & (rows["outcome"] != "unsupported")]
    upcast = low[low["compute_dtype"] != low["format"]]
    assert set(upcast["variant"]) <= {
        "numpy_solve",
        "numpy_inv",
        "scipy_solve",
        "numpy_svd",
        "numpy_cond",
    }
    assert (upcast["compute_dtype"].isin(["float32", "float64"])).all()
    assert (upcast["accumulator"] == upcast["compute_dtype"]).all()
    in_format = low[low["compute_dtype"] == low["format"]]
    assert (in_format["accumulator"] == in_format["format"]).all()


def test_extreme_magnitudes_are_outcomes_not_crashes():
    """||A|| near float16's limits: entries in its subnormals (1e-7) or sums of squares past
    65504 (1e3 .. 1e5). Every row is measured, failures are outcomes."""
    with np.errstate(all="ignore"):
        table = run(
            tiny_spec(
                ["linear_system", "matrix_condition"], cond=(0, 2), magnitude=(-7, -6), samples=1
            )
        )
        high = run(
            tiny_spec(
                ["linear_system", "matrix_condition"], cond=(0, 2), magnitude=(4, 5), samples=1
            )
        )
    both = pd.concat([table, high])
    assert len(both) > 0
    f16 = both[both["format"] == "float16"]
    assert set(f16["outcome"]) - {"ok"}  # something failed in float16 ...
    assert set(both[both["format"] == "float64"]["outcome"]) <= {
        "ok",
        "unsupported",
    }  # ... not in float64


def test_quick_spec_parses():
    spec = load_spec(STUDY, quick=True)
    assert set(spec.problems) == {"linear_system", "matrix_condition"}
