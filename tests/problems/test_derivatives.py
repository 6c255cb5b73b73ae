"""Finite-difference derivatives: exact references, in-format variants, and the V curve of the
study's own rows (studies/derivatives.toml, quick, run once per module).

The V-curve assertions fit the study's rows: per format and method, the median relative error
over the fd_exp inputs at each step h, a straight line in log-log on each branch (slopes -1 on
the rounding branch, +1 forward / +2 central on the truncation branch), and the measured
optimum (the argmin of the medians and the intersection of the two fitted lines) within a
factor of 3 of the textbook 2 sqrt(u) and (3u)^(1/3).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest

from precision.core.formats import STUDY_FORMATS, cast, get_format
from precision.problems.derivatives import (
    FD_EXP,
    FD_NETWORK,
    FD_SOFTPLUS,
    STEP_EXPONENTS,
    fit_v_curve,
    network_loss,
    softplus,
    theoretical_optimum,
    v_curve_example,
)
from precision.problems.hessian import FD_HESSIAN
from precision.run.spec import load_spec
from precision.run.study import run
from precision.truth.exact import ground_truth

STUDY = Path(__file__).resolve().parents[2] / "studies" / "derivatives.toml"


def step(problem, method: str, k: int):
    """The member of a step family with h = 2**-k."""
    return problem.variants[method].with_params(h=2.0**-k)


def test_every_step_family_declares_its_steps():
    """The step is a parameter of the method's family (default h = 2**-k), never a name."""
    assert set(FD_EXP.variants) == {"forward", "central"}
    assert FD_EXP.variants["forward"].grid == {"h": tuple(2.0**-k for k in STEP_EXPONENTS)}
    assert set(FD_HESSIAN.variants) == {"jacobian_forward", "jacobian_central", "values"}
    member = step(FD_HESSIAN, "values", 5)
    assert member.name == "values" and member.params == {"h": 2.0**-5}
    assert len(FD_EXP.variants["central"].expand()) == len(STEP_EXPONENTS)


def _mp_network(w):
    total = mpmath.mpf(0)
    for z, t in zip((0.5, -1.25, 2.0, 0.75), (1.0, 1.0, -1.0, 1.0), strict=True):
        total += mpmath.log1p(mpmath.exp(-t * 2 * mpmath.tanh(w * z)))
    return total / 4


@pytest.mark.parametrize("w", [-3.0, -0.4, 0.3, 1.7])
def test_network_reference_is_the_derivative_of_the_loss(w):
    """The analytic L'(w) and L''(w) against mpmath's numerical differentiation of L."""
    with mpmath.workdps(40):
        first, second = mpmath.diff(_mp_network, w, 1), mpmath.diff(_mp_network, w, 2)
        gt = ground_truth(FD_NETWORK, np.array([w]), "float64")
        assert float(gt.exact.hi[0] * 2.0 ** int(gt.exact.exp[0])) == pytest.approx(
            float(first), rel=1e-15
        )
        assert gt.cond == pytest.approx(abs(float(w * second / first)), rel=1e-12)
    assert network_loss(np.array([w]))[0] == pytest.approx(float(_mp_network(w)), rel=1e-15)


def test_softplus_is_stable_and_in_format():
    x = np.array([-100.0, 0.0, 100.0], dtype=np.float16)
    y = softplus(x)
    assert y.dtype == np.float16 and np.isfinite(y).all() and y[2] == 100


@pytest.mark.parametrize("engine", ["mpmath", "arb"])
def test_hessian_reference_is_symmetric_with_zero_row_sums(engine):
    x = np.array([0.5, -1.0, 2.0, 0.25])
    gt = ground_truth(FD_HESSIAN, x, "float64", engine=engine)
    H = (gt.exact.hi * 2.0**gt.exact.exp).reshape(4, 4)
    s = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    assert gt.certified
    np.testing.assert_allclose(H, np.diag(s) - np.outer(s, s), rtol=1e-14, atol=1e-17)
    assert np.abs(H.sum(axis=1)).max() < 1e-15  # softmax sums to 1: H 1 = 0


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_variants_compute_in_the_input_format(fmt):
    for problem, x in ((FD_SOFTPLUS, [0.7]), (FD_HESSIAN, [0.5, -1.0, 2.0, 0.25])):
        xf = cast(np.array(x), fmt)
        for name in ("forward", "central", "values"):
            if name in problem.variants:
                assert step(problem, name, 5).compute(xf).dtype == get_format(fmt).dtype


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float64"])
def test_kernels_take_a_batch_and_one_input_alike(fmt):
    """Batch kernels: (B, *shape) in, (B, ...) out, row i the one-input result (the bit-for-bit
    row contract over every format is tests/problems/test_row_independence.py)."""
    for problem, x in ((FD_NETWORK, [[0.7], [-2.5]]), (FD_HESSIAN, [[0.5, -1.0, 2.0], [3, 0, 1]])):
        X = cast(np.array(x), fmt)
        for name, k in (("central", 6), ("jacobian_forward", 6), ("values", 4)):
            if name not in problem.variants:
                continue
            variant = step(problem, name, k)
            Y = variant.kernel(X)
            assert variant.batched and Y.shape == (2, X.shape[1] ** 2) and Y.dtype == X.dtype
            for i in range(2):
                assert Y[i].tobytes() == variant.compute(X[i]).tobytes()
    assert network_loss(cast(np.array([[0.3], [1.0]]), fmt)).shape == (2, 1)


def test_a_step_below_the_smallest_subnormal_gives_nan_not_a_value():
    with np.errstate(invalid="ignore"):
        y = step(FD_EXP, "forward", 30).compute(np.array([0.5], dtype=np.float16))
    assert np.isnan(y).all()  # h = 2**-30 is 0 in float16: 0 / 0


# ------------------------------------------------------------------ the study's own rows


@pytest.fixture(
    scope="module",
    params=[pytest.param(True, id="quick"), pytest.param(False, id="full", marks=pytest.mark.slow)],
)
def table(request) -> pd.DataFrame:
    spec = load_spec(STUDY, quick=request.param)
    return run(dataclasses.replace(spec, problems=("fd_exp",)))


def v_curve(table: pd.DataFrame, fmt: str, method: str) -> pd.Series:
    """Median relative error over the inputs at each step h (index), for one format and method."""
    rows = table[(table["format"] == fmt) & (table["variant"] == method)]
    return rows.groupby("h")["rel_error"].median().sort_index()


def test_the_table_has_a_numeric_step_column(table):
    """``h`` is a float64 column: 2**-k on the row of every step variant, NaN on any other."""
    assert table["h"].dtype == np.float64
    assert set(table["variant"]) == {"forward", "central"}
    for method in ("forward", "central"):
        steps = table.loc[table["variant"] == method, "h"]
        assert sorted(set(steps)) == sorted(FD_EXP.variants[method].grid["h"])
    assert table[["lr", "seed"]].isna().all().all()


def test_rows_of_variants_without_a_step_have_no_step():
    from precision.problems.exp import EXP

    spec = dataclasses.replace(
        load_spec(STUDY, quick=True),
        problems=("exp",),
        variants={"exp": tuple(EXP.variants)},
    )
    table = run(spec)
    assert table["h"].isna().all() and set(table["variant"]) == set(EXP.variants)


@pytest.mark.parametrize("fmt", ["float32", "float64"])
@pytest.mark.parametrize(("method", "order"), [("forward", 1), ("central", 2)])
def test_v_curve_slopes_and_optimum_match_the_theory(table, fmt, method, order):
    theory = theoretical_optimum(method, get_format(fmt).u)
    fit = fit_v_curve(v_curve(table, fmt, method), theory)
    assert min(fit.points) >= 3
    assert fit.slope_rounding == pytest.approx(-1.0, abs=0.3)
    assert fit.slope_truncation == pytest.approx(order, abs=0.2)
    for measured in (fit.argmin, fit.crossing):
        assert theory / 3 <= measured <= 3 * theory, (measured, theory)


def test_worked_example_fits_the_same_v():
    table = v_curve_example().set_index(["format", "method"])
    for fmt in ("float32", "float64"):
        for method in ("forward", "central"):
            row = table.loc[(fmt, method)]
            assert row["theory_h"] / 3 <= row["crossing_h"] <= 3 * row["theory_h"]


@pytest.mark.parametrize("fmt", STUDY_FORMATS)
def test_central_beats_forward_at_their_own_optima(table, fmt):
    """The best central error is below the best forward one: O(u^(2/3)) against O(u^(1/2))."""
    assert v_curve(table, fmt, "central").min() < v_curve(table, fmt, "forward").min()


def test_optimal_error_orders(table):
    """At the optimum the forward error is of order sqrt(u) and the central of order u^(2/3)
    (within a factor of 10 either way)."""
    for fmt in ("float32", "float64"):
        u = get_format(fmt).u
        assert 0.1 < v_curve(table, fmt, "forward").min() / np.sqrt(u) < 10
        assert 0.1 < v_curve(table, fmt, "central").min() / u ** (2 / 3) < 10


def test_the_step_sweep_figure_is_drawn_from_the_columns(table):
    """One V panel per family, its x axis the ``h`` column; a table stored before ``h`` was a
    column (missing values) gets no V figure rather than a parsed one."""
    import matplotlib.pyplot as plt

    from precision.report.plots import optimisation_figures

    figure = optimisation_figures(table)["steps_fd_exp"]
    titles = [ax.get_title() for ax in figure.axes[:2]]
    assert [t.split(": ")[-1] for t in titles] == ["forward", "central"]
    assert optimisation_figures(table.assign(h=np.nan)) == {}
    plt.close("all")
