"""Correct verdicts (issue 15): exact zeros stay out of relative-error statistics, formats that
never ran never count toward a verdict, failures are named as what they are, and every claim
states its criterion and the share of rows its numbers cover. Each test changes the stored
rows and checks that the number or verdict follows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precision.core.formats import get_format
from precision.problems import PROBLEMS
from precision.report.claims.softmax import cross_entropy_finding, library_finding
from precision.report.study_page import key_numbers
from precision.report.summary import overview
from precision.run.measure import measure_variant
from precision.truth.exact import ground_truths

# ---------------------------------------------------------------- exact zero


def _summation_row(values: list[float], fmt: str = "float16") -> dict:
    """The measured row of recursive summation on ``values`` (representable in ``fmt``)."""
    problem = PROBLEMS["summation"]
    x = np.array(values, dtype=get_format(fmt).dtype)
    truth = ground_truths(problem, x, [fmt])[fmt]
    _, row = measure_variant(problem, "recursive", x, get_format(fmt), truth.exact)
    return {
        "problem": "summation",
        "format": fmt,
        "n": len(values),
        "cond": truth.cond,
        "magnitude": problem.magnitude(x),
        "certified": truth.certified,
        **row,
    }


@pytest.fixture(scope="module")
def sums() -> pd.DataFrame:
    """Three inputs: two ordinary sums and one whose terms cancel exactly (sum 0)."""
    # 2048 + 1 - 2048 - 1: the float16 recursive sum stagnates at 2048 (2048 + 1 rounds back
    # to 2048), so it returns -1 where the exact sum is 0.
    inputs = [[1.0, 2.0, 3.0], [1.0, 2.0**-11, 2.0**-11], [2048.0, 1.0, -2048.0, -1.0]]
    return pd.DataFrame([_summation_row(v) for v in inputs])


def test_an_exact_zero_is_its_own_outcome_with_an_absolute_error(sums):
    zero = sums.iloc[2]
    assert zero["outcome"] == "exact_zero"
    assert np.isinf(zero["cond"])  # sum |x| / |sum x| with sum x = 0
    assert np.isnan(zero["rel_error"]) and np.isnan(zero["err_over_u"])
    assert zero["abs_error"] == 1.0  # computed -1, exact 0
    assert (sums.iloc[:2]["outcome"] == "ok").all()
    assert sums.iloc[1]["abs_error"] == pytest.approx(2.0**-10)  # 1 + 2^-11 + 2^-11 stagnates


def test_exact_zeros_are_counted_but_stay_out_of_relative_error_medians(sums):
    stats = overview(sums).iloc[0]
    ordinary = sums.iloc[:2]["err_over_u"]
    assert stats["exact_zero"] == 1 and stats["failure_fraction"] == 0
    assert stats["median_err_over_u"] == ordinary.median()
    assert stats["max_err_over_u"] == ordinary.max()
    assert stats["max_abs_error_exact_zero"] == 1.0
    # What the old code stored (ok, relative error inf) drags the statistics to inf: the
    # statistics follow the stored outcome.
    old = sums.copy()
    old.loc[2, ["outcome", "err_over_u"]] = ["ok", np.inf]
    assert np.isinf(overview(old).iloc[0]["max_err_over_u"])
    assert overview(old).iloc[0]["exact_zero"] == 0


def test_key_numbers_show_the_exact_zeros_apart(sums):
    row = key_numbers(sums).iloc[0]
    assert row["exact result 0"] == 1 and row["their worst abs error"] == 1.0
    assert np.isfinite(row["worst err/u"]) and row["failed %"] == 0


# ---------------------------------------------------------------- formats that never ran


def _framework_rows(outcomes: dict[tuple[str, str], list[str]]) -> pd.DataFrame:
    """Rows of log_softmax library kernels: (variant, format) -> the rows' outcomes."""
    rows = []
    for (variant, fmt), listed in outcomes.items():
        for i, outcome in enumerate(listed):
            computed = outcome not in ("unsupported", "error", "input_overflow")
            rows.append(
                {
                    "problem": "log_softmax",
                    "variant": variant,
                    "format": fmt,
                    "sample": i,
                    "outcome": outcome,
                    "certified": True,
                    "rel_error": 1e-3 if outcome == "ok" else np.nan,
                    "err_over_u": 2.0 if outcome == "ok" else np.nan,
                    "bits": 1.0 if outcome == "ok" else np.nan,
                    "bound": np.nan,
                    "magnitude": 1.0,
                    "compute_dtype": fmt if computed else "",
                    "exception": "" if computed else "refused",
                }
            )
    return pd.DataFrame(rows)


def test_a_combination_that_never_ran_is_not_true_for_anything():
    rows = _framework_rows(
        {
            ("torch", "float32"): ["ok"] * 4,
            ("torch", "float16"): ["ok", "ok", "nan", "ok"],  # makes the verdict qualified
            # Refused in 98.5% of its rows, the rest not representable: nothing ever ran.
            ("torch", "float8_e4m3fn"): ["unsupported"] * 3 + ["input_overflow"],
            ("tensorflow", "float8_e4m3fn"): ["unsupported"] * 4,
            ("jax", "float8_e4m3fn"): ["error"] * 4,
        }
    )
    finding = library_finding({"log_softmax": rows})
    assert finding.verdict == "qualified"
    true_for = finding.measured.split("True for: ")[1].split(". False for")[0]
    assert true_for == "log_softmax torch float32"
    assert "float8" not in finding.measured.split("Never ran")[0]
    never = finding.measured.split("Never ran")[1]
    for variant in ("torch", "tensorflow", "jax"):
        assert f"log_softmax {variant} float8_e4m3fn" in never
    # Once one float8 row computes a result, the combination is measured, and says how much.
    rows.loc[(rows["variant"] == "torch") & (rows["format"] == "float8_e4m3fn"), "outcome"] = [
        "unsupported",
        "unsupported",
        "unsupported",
        "ok",
    ]
    finding = library_finding({"log_softmax": rows})
    assert "log_softmax torch float8_e4m3fn" in finding.measured.split("True for: ")[1]
    assert "log_softmax torch float8_e4m3fn 25%" in finding.measured


def test_cross_entropy_ignores_a_format_that_never_ran_and_names_its_numbers():
    rows = _framework_rows(
        {
            ("from_logits", "float16"): ["ok", "ok", "ok", "underflow"],
            ("from_probabilities", "float16"): ["ok", "overflow", "ok", "nan"],
            ("from_logits", "float8_e4m3fn"): ["unsupported"] * 4,
            ("from_probabilities", "float8_e4m3fn"): ["unsupported"] * 4,
        }
    ).assign(problem="cross_entropy")
    finding = cross_entropy_finding({"cross_entropy": rows})
    assert finding.verdict == "holds"
    assert "float8" not in finding.measured.split("Never ran")[0]
    assert "Criterion:" in finding.measured
    # which number is which, and the share of rows each median covers
    assert "from probabilities 2 u (50% of the rows" in finding.measured
    assert "from logits 2 u (75% of the rows" in finding.measured


# ---------------------------------------------------------------- failures named


def test_heatmap_legend_names_the_failures_counted():
    from precision.report.plots import failure_legend

    rows = pd.DataFrame({"outcome": ["ok", "no_convergence", "no_convergence", "exact_zero"]})
    legend = failure_legend(rows)
    assert "no_convergence 2" in legend
    assert "underflow" not in legend and "overflow" not in legend and "nan" not in legend
    assert "1 rows with exact result 0" in legend
    rows.loc[0, "outcome"] = "unsupported"
    assert "unsupported 1" in failure_legend(rows)
    assert failure_legend(pd.DataFrame({"outcome": ["ok"]})) == "no input failed"


# ---------------------------------------------------------------- criteria printed


def _slope_rows(kappas, power: int, fmt: str = "float64") -> pd.DataFrame:
    u = get_format(fmt).u
    return pd.DataFrame(
        {
            "problem": "least_squares",
            "variant": "qr",
            "format": fmt,
            "n": 10,
            "cond": kappas,
            "magnitude": 1.0,
            "outcome": "ok",
            "certified": True,
            "compute_dtype": fmt,
            "rel_error": [k**power * u for k in kappas],
            "err_over_u": [float(k**power) for k in kappas],
        }
    )


def test_a_slope_prints_its_criterion_confidence_interval_and_points():
    from precision.report.claims.conditioning import slope_finding

    measure = slope_finding(("least_squares",), {"qr": (0.5, 1.5)})
    kappas = 10.0 ** np.arange(0, 8)
    finding = measure({"least_squares": _slope_rows(kappas, 1)})
    assert finding.verdict == "holds"
    assert "Criterion: holds per variant and format when the slope" in finding.measured
    assert "qr 0.5 to 1.5" in finding.measured
    assert "slope 1 (95% CI 1 to 1, 8 points)" in finding.measured
    assert "kappa 1 to 1e+07" in finding.measured  # the range it covers
    # Noisy points widen the interval; the evidence holds it too.
    noisy = _slope_rows(kappas, 1)
    noisy["err_over_u"] *= [1, 3, 1, 3, 1, 3, 1, 3]
    slopes = measure({"least_squares": noisy}).evidence.iloc[0]
    assert slopes["slope_low"] < slopes["slope"] < slopes["slope_high"]
    assert slopes["points"] == 8


def test_the_step_claim_prints_its_tolerance():
    from precision.report.claims.calculus import step_finding

    rows = pd.DataFrame(
        {
            "problem": "fd_exp",
            "variant": "forward",
            "h": [2.0**-k for k in (20, 26, 30)],
            "format": "float64",
            "outcome": "ok",
            "certified": True,
            "rel_error": [1e-6, 1e-8, 1e-7],
        }
    )
    finding = step_finding({"fd_exp": rows})
    assert "Criterion: holds per problem, scheme and format" in finding.measured
    assert "ratio 0.25 to 4" in finding.measured


# ---------------------------------------------------------------- what the magnitude is


def test_a_claims_range_names_the_magnitude_its_problem_measures():
    """The magnitude column is max|x| for vectors but ||A||_2 for matrices and the logit
    spread for attention: a claim's range says which, and "magnitude" when rows mix them."""
    from precision.report.claims.base import span

    rows = pd.DataFrame({"problem": ["attention"] * 2, "n": [16, 1024], "magnitude": [0.5, 300]})
    assert span(rows) == "n 16 to 1,024, logit spread 0.5 to 300"
    rows["problem"] = "linear_system"
    assert "||A||_2 0.5 to 300" in span(rows)
    rows["problem"] = ["softmax", "attention"]
    assert "magnitude 0.5 to 300" in span(rows)
    rows["problem"] = "softmax"
    assert "max|x| 0.5 to 300" in span(rows)
