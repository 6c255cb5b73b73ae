"""Tests of precision.run.evaluate and precision.core.values: one input, every variant and format.

Pinned inputs check the numbers a user sees (the tutorial's softmax of [1000, 1000, 1000] in
float16: naive nan, shifted 1/3 correctly rounded), the rows agree with the study's own
measurement, inputs a format cannot hold and NaN/inf inputs are reported as such, and VALUES
parse from a list, JSON, .npy and .csv.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest

import precision
from precision.cli import run_captured
from precision.core.formats import STUDY_FORMATS, cast, get_format
from precision.core.schema import DEFAULT_ENGINE
from precision.core.values import InputError, logits_with_target, parse_values
from precision.problems import DEFAULT_VARIANTS, PROBLEMS
from precision.problems.base import Problem, Variant, square_matrix
from precision.run.evaluate import (
    COLUMNS,
    evaluate,
    get_problem,
    input_pattern,
    problem_input,
    render_text,
)
from precision.run.measure import measure_variant
from precision.truth.exact import ground_truth

THIRD_F16 = float(np.float16(1 / 3))


call = run_captured  # the CLI in-process: (exit status, stdout, stderr)


def row(table: pd.DataFrame, variant: str, fmt: str) -> pd.Series:
    (index,) = table.index[(table["variant"] == variant) & (table["format"] == fmt)]
    return table.loc[index]


# ------------------------------------------------------------------ pinned inputs


@pytest.fixture(scope="module")
def softmax_1000() -> pd.DataFrame:
    return evaluate("softmax", [1000.0, 1000.0, 1000.0], formats=["float16"])


def test_softmax_1000_float16_naive_is_nan(softmax_1000):
    naive = row(softmax_1000, "naive", "float16")
    assert naive["outcome"] == "nan"
    assert np.isnan(naive["computed"]).all()
    assert "overflow" in naive["fp_exceptions"]  # exp(1000) = inf, then inf / inf


def test_softmax_1000_float16_shifted_is_one_third_correctly_rounded(softmax_1000):
    for variant in ("shifted", "scipy"):
        result = row(softmax_1000, variant, "float16")
        assert result["outcome"] == "ok"
        assert list(result["computed"]) == [THIRD_F16] * 3
        assert result["ulps"] == 0 and result["bits"] == 0.0
        assert result["rel_error"] == pytest.approx(abs(THIRD_F16 - 1 / 3) * 3, rel=1e-12)


def test_softmax_1000_exact_is_one_third(softmax_1000):
    exact = row(softmax_1000, "naive", "float16")["exact"]
    assert exact.dtype == object and len(exact) == 3
    with mpmath.workprec(200):
        for value in exact:
            assert abs(value - mpmath.mpf(1) / 3) < mpmath.mpf(2) ** -100
    assert row(softmax_1000, "naive", "float16")["certified"]
    # cond = max g (|x| + S - 2|x| g) / max g with g = 1/3, |x| = S = 1000: 4000 / 3.
    assert row(softmax_1000, "naive", "float16")["cond"] == pytest.approx(4000 / 3)


def test_exp_12_float16_overflows():
    table = evaluate("exp", 12.0, formats=["float16"])
    (result,) = [r for _, r in table.iterrows()]
    assert result["outcome"] == "overflow"
    assert result["computed"] == math.inf
    with mpmath.workprec(113):
        assert abs(result["exact"] / mpmath.exp(12) - 1) < mpmath.mpf(2) ** -100
    assert result["cond"] == 12.0


def test_exact_beyond_float64_is_not_a_wrong_inf():
    """exp(1000) is finite: the exact column says 1.97e434, not inf."""
    result = evaluate("exp", [1000.0], formats=["float64"]).iloc[0]
    assert result["outcome"] == "overflow" and result["computed"] == math.inf
    assert mpmath.isfinite(result["exact"])
    assert mpmath.nstr(result["exact"], 5) == "1.9701e+434"


def test_exp_of_a_huge_input_is_measured_not_crashed():
    """exp(1e308): a binary exponent of 1024 bits (formerly an OverflowError)."""
    table = evaluate("exp", [1e308], formats=["float64"])
    assert table.iloc[0]["outcome"] == "overflow"
    table = evaluate("exp", [-1e308], formats=["float64"])
    assert table.iloc[0]["outcome"] == "underflow"


def test_input_a_format_cannot_hold_is_input_overflow():
    table = evaluate("exp", [1e5], formats=["float16", "float32"])
    f16, f32 = row(table, "numpy", "float16"), row(table, "numpy", "float32")
    assert f16["outcome"] == "input_overflow"
    assert f16["computed"] is None and f16["exact"] is None
    assert pd.isna(f16["ulps"]) and np.isnan(f16["rel_error"])
    assert f32["outcome"] == "overflow"  # float32 holds 1e5; exp(1e5) it does not


@pytest.mark.parametrize(
    ("values", "outcome"),
    [([np.nan, 1.0], "input_nan"), ([np.inf, 1.0], "input_inf"), ([-np.inf, 0.0], "input_inf")],
)
def test_nan_and_inf_inputs_are_evaluated_and_reported(values, outcome):
    table = evaluate("softmax", values, formats=["float16", "float64"])
    assert set(table["outcome"]) == {outcome}
    assert table["computed"].map(lambda v: isinstance(v, np.ndarray) and v.size == 2).all()
    assert table["exact"].isna().all() and table["rel_error"].isna().all()
    assert table["ulps"].isna().all() and table["certified"].isna().all()
    shifted = row(table, "shifted", "float64")["computed"]
    if values[0] == -np.inf:  # exp(-inf - 0) = 0: the shifted form returns [0, 1]
        assert list(shifted) == [0.0, 1.0]


def test_exp_of_minus_inf_returns_zero():
    result = evaluate("exp", [-np.inf], formats=["float32"]).iloc[0]
    assert result["outcome"] == "input_inf" and result["computed"] == 0.0


# ------------------------------------------------------------------ rows as the study makes them


def test_rows_are_the_study_measurement():
    """evaluate shares measure_variant with the study: the same numbers for the same input."""
    x = np.array([3.0, -1.5, 0.25, 7.0])
    table = evaluate("logsumexp", x, formats=["bfloat16", "float32"])
    problem = PROBLEMS["logsumexp"]
    for fmt_name in ("bfloat16", "float32"):
        fmt = get_format(fmt_name)
        x_fmt = cast(x, fmt)
        truth = ground_truth(problem, x_fmt, fmt, engine=DEFAULT_ENGINE)  # what evaluate uses
        for variant in DEFAULT_VARIANTS["logsumexp"]:  # what evaluate runs by default
            y, expected = measure_variant(problem, variant, x_fmt, fmt, truth.exact)
            got = row(table, variant, fmt_name)
            for key in ("rel_error", "rel_error_cw", "err_over_u", "bits", "bound"):
                # A variant that raised (scipy on bfloat16, ml_dtypes 0.7) measured nothing.
                assert got[key] == pytest.approx(expected.get(key, np.nan), nan_ok=True), key
            for key in ("outcome", "compute_dtype", "accumulator", "library", "fp_exceptions"):
                assert got[key] == expected[key], key
            assert got["exception"] == (expected.get("exception") or "")
            if expected["outcome"] == "error":
                assert pd.isna(got["ulps"]) and got["computed"] is None
                continue
            assert got["ulps"] == expected["ulps"]
            assert got["computed"] == float(y.astype(np.float64).reshape(-1)[0])
            assert got["cond"] == truth.cond and got["gt_prec"] == truth.prec


def test_defaults_are_every_variant_in_the_four_formats():
    table = evaluate("softmax", [0.5, -0.5])
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == len(STUDY_FORMATS) * len(DEFAULT_VARIANTS["softmax"])
    assert list(dict.fromkeys(table["format"])) == list(STUDY_FORMATS)
    assert table["n"].unique().tolist() == [2]


def test_formats_and_variants_in_the_given_order_each_once():
    table = evaluate(
        "softmax", [1, 2], formats=["float64,float16", "float64"], variants=["shifted"]
    )
    assert table["format"].tolist() == ["float64", "float16"]
    assert set(table["variant"]) == {"shifted"}


def test_input_rounded_flag():
    table = evaluate("exp", [0.1], formats=["float16", "float64"])
    assert row(table, "numpy", "float16")["input_rounded"]
    assert not row(table, "numpy", "float64")["input_rounded"]


def test_cross_entropy_input_and_scalar_output():
    xt = logits_with_target(np.array([1.0, 2.0, 3.0]), "2")
    assert xt.tolist() == [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]
    table = evaluate("cross_entropy", xt, formats=["float64"])
    exact = table.iloc[0]["exact"]
    with mpmath.workprec(113):
        expected = mpmath.log(sum(mpmath.exp(v) for v in (1, 2, 3))) - 3
        assert abs(exact / expected - 1) < mpmath.mpf(2) ** -100
    assert isinstance(table.iloc[0]["computed"], float)


def test_evaluate_is_exported_by_the_package():
    assert precision.evaluate is evaluate
    table = precision.evaluate("exp", [0.0], formats=["float16"])
    assert table.iloc[0]["computed"] == 1.0 and table.iloc[0]["ulps"] == 0


def test_evaluate_prints_nothing_and_warns_nothing(capsys, recwarn):
    evaluate("softmax", [1000.0, -1000.0, 1e4], formats=["float16", "bfloat16"])
    assert capsys.readouterr() == ("", "")
    assert len(recwarn) == 0


# ------------------------------------------------------------------ bad input to evaluate


@pytest.mark.parametrize(
    ("problem", "values", "kwargs", "fragment"),
    [
        ("softmx", [1.0], {}, "unknown problem 'softmx' (did you mean 'softmax'?)"),
        ("softmax", [1.0], {"formats": ["float61"]}, "did you mean 'float64'?"),
        ("softmax", [1.0], {"variants": ["shiftd"]}, "did you mean 'shifted'?"),
        ("softmax", [1.0], {"formats": []}, "no format chosen"),
        ("exp", [1.0, 2.0], {}, "exp takes one value, got 2 values"),
        ("softmax", [[1.0, 2.0], [3.0, 4.0]], {}, "takes a vector of values, got a 2 x 2"),
        ("cross_entropy", [1.0, 2.0], {}, "takes a 2 x n array, got 2 values"),
        ("cross_entropy", [[1.0, 2.0]] * 3, {}, "takes a 2 x n array, got a 3 x 2 array"),
        ("softmax", [], {}, "no values given"),
        ("softmax", [1 + 2j], {}, "complex numbers are not supported"),
        ("softmax", ["a"], {}, "values must be real numbers"),
        ("softmax", [10**400], {}, "values must be real numbers"),
        ("softmax", [[[1.0]]], {}, "takes a vector of values"),
    ],
)
def test_bad_input_raises_input_error(problem, values, kwargs, fragment):
    with pytest.raises(InputError) as info:
        evaluate(problem, values, **kwargs)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


MATRIX_PROBLEM = Problem(
    name="trace",
    description="a square-matrix problem (for the input hook)",
    reference=lambda x, ctx=None: (np.array([sum(np.diag(x))], dtype=object), 1),
    magnitude=lambda x: float(np.abs(x).max()),
    propose=lambda rng, **kw: None,
    estimate=lambda X: (None, None),
    variants={"numpy": Variant("numpy", lambda x: np.trace(x)[None])},
    input_shape=lambda n: (n, n),
    check_input=square_matrix,
)


def test_square_matrix_hook():
    assert input_pattern(MATRIX_PROBLEM) == ("n", "n")
    assert problem_input(MATRIX_PROBLEM, np.eye(3)).shape == (3, 3)
    with pytest.raises(InputError, match=r"^trace: needs a square matrix, got shape 2 x 3$"):
        problem_input(MATRIX_PROBLEM, np.ones((2, 3)))
    with pytest.raises(InputError, match="trace takes a square n x n matrix, got 3 values"):
        problem_input(MATRIX_PROBLEM, np.ones(3))


def test_input_patterns_of_the_registry():
    assert input_pattern(get_problem("exp")) == ("1",)
    assert input_pattern(get_problem("softmax")) == ("n",)
    assert input_pattern(get_problem("cross_entropy")) == ("2", "n")


# ------------------------------------------------------------------ parsing VALUES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000,1000,1000", [1000.0, 1000.0, 1000.0]),
        ("1, 2 ,3", [1.0, 2.0, 3.0]),
        ("1 2\t3", [1.0, 2.0, 3.0]),
        ("12", [12.0]),
        ("-1e5,+.5,5.", [-1e5, 0.5, 5.0]),
        ("1e-400", [0.0]),  # the float64 nearest the decimal
        ("nan,inf,-inf,+Infinity,NaN", [np.nan, np.inf, -np.inf, np.inf, np.nan]),
        ("[1, 2.5, -3]", [1.0, 2.5, -3.0]),
        ('[NaN, Infinity, -Infinity, "nan", "-inf"]', [np.nan, np.inf, -np.inf, np.nan, -np.inf]),
        ("[[1, 2], [0, 1]]", [[1.0, 2.0], [0.0, 1.0]]),
        ("  [7]  ", [7.0]),
    ],
)
def test_parse_values_lists_and_json(text, expected):
    values = parse_values(text)
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, np.array(expected))


def test_parse_values_npy(tmp_path: Path):
    vector, matrix = tmp_path / "v.npy", tmp_path / "m.NPY"
    np.save(vector, np.array([1.5, np.nan], dtype=np.float32))
    with open(matrix, "wb") as handle:  # np.save would append ".npy" to "m.NPY"
        np.save(handle, np.arange(6, dtype=np.int16).reshape(2, 3))
    np.testing.assert_array_equal(parse_values(str(vector)), [1.5, np.nan])
    np.testing.assert_array_equal(parse_values(str(matrix)), [[0, 1, 2], [3, 4, 5]])
    assert parse_values(str(matrix)).dtype == np.float64


def test_parse_values_csv(tmp_path: Path):
    row_file, matrix = tmp_path / "row.csv", tmp_path / "matrix.csv"
    row_file.write_text("1000, 1000, 1000\n")
    matrix.write_text("# logits, then target\n1,2,3\n\n0,0,1\n")
    np.testing.assert_array_equal(parse_values(str(row_file)), [1000.0] * 3)
    np.testing.assert_array_equal(parse_values(str(matrix)), [[1, 2, 3], [0, 0, 1]])


def test_pickled_npy_is_refused_without_unpickling(tmp_path: Path):
    """An object array would run code when unpickled: it is refused before that."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickled"):
        parse_values(str(path))
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "no values given"),
        ("1,abc", "'abc' is not a number"),
        ("1,,2", "entry 2 of '1,,2' is empty"),
        ("1,2,", "entry 3"),
        ("1_000", "is not a number"),
        ("0x10", "is not a number"),
        ("--inf", "is not a number"),
        ("1e400", "beyond float64's range"),
        ("[1e400]", "beyond float64's range"),
        ("[" + "9" * 400 + "]", "beyond float64's range"),
        ("[1, 2", "not a valid JSON array"),
        ("[[1, 2], [3]]", "rows of different lengths"),
        ("[1, [2]]", "mixes numbers and arrays"),
        ("[[[1]]]", "more than two dimensions"),
        ("[true]", "true is not a number"),
        ("[null]", "null is not a number"),
        ("[]", "holds no numbers"),
        ("[[]]", "holds no numbers"),
        ("[" * 100_000, "nested too deeply"),
        ("missing.npy", "missing.npy: no such file"),
        ("missing.CSV", "no such file"),
    ],
)
def test_parse_values_errors(text, fragment):
    with pytest.raises(InputError) as info:
        parse_values(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("target", "fragment"), [("3", "from 0 to 2"), ("-1", "from 0 to 2"), ("a", "'a'")]
)
def test_bad_target(target, fragment):
    with pytest.raises(InputError, match=fragment):
        logits_with_target(np.array([1.0, 2.0, 3.0]), target)


# ------------------------------------------------------------------ the eval command


def test_eval_command_softmax_1000_float16():
    code, out, err = call(["eval", "softmax", "1000,1000,1000", "--format", "float16"])
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "softmax of [1000, 1000, 1000]"
    assert lines[2].startswith("float16: exact [0.3333333, 0.3333333, 0.3333333]")
    (naive,) = [line.split() for line in lines if line.split()[:1] == ["naive"]]
    (shifted,) = [line.split() for line in lines if line.split()[:1] == ["shifted"]]
    assert naive[1:3] == ["nan", "nan"] and naive[-3:] == ["[nan,", "nan,", "nan]"]
    assert shifted[1:5] == ["ok", "2.44e-04", "0", "0.0"]
    assert shifted[-3:] == ["[0.3333,", "0.3333,", "0.3333]"]


def test_eval_command_json_is_strict_and_complete():
    code, out, err = call(
        ["eval", "softmax", "[1000, 1000, 1000]", "--json", "--format", "float16"]
    )
    assert (code, err) == (0, "")

    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    rows = json.loads(out, parse_constant=reject)
    assert [r["variant"] for r in rows] == ["naive", "shifted", "scipy"]
    assert all(set(r) == set(COLUMNS) for r in rows)
    naive, shifted = rows[0], rows[1]
    assert naive["computed"] == ["nan"] * 3 and naive["rel_error"] == "nan"
    assert shifted["computed"] == [THIRD_F16] * 3 and shifted["ulps"] == 0
    assert shifted["exact"] == ["0.33333333333333333"] * 3
    assert shifted["certified"] is True


def test_eval_command_input_overflow_and_nan(tmp_path: Path):
    code, out, _ = call(["eval", "exp", "1e5", "--format", "float16"])
    assert code == 0 and "float16: the input is beyond float16's range" in out
    assert "input_overflow" in out
    code, out, _ = call(["eval", "softmax", "nan", "1", "--format", "float32"])
    assert code == 0 and "holds NaN" in out and "input_nan" in out


def test_eval_command_negative_values_need_no_double_dash():
    for argv in (["eval", "exp", "-inf"], ["eval", "exp", "-1e5"], ["eval", "exp", "--", "-2"]):
        code, out, err = call([*argv, "--format", "float64"] if "--" not in argv else argv)
        assert code == 0, err
        assert out.startswith("exp of -")


def test_eval_command_target_and_files(tmp_path: Path):
    code, out, _ = call(["eval", "cross_entropy", "1,2,3", "--target", "2", "--format", "float32"])
    assert code == 0 and out.startswith("cross_entropy of [[1, 2, 3], [0, 0, 1]]")
    csv = tmp_path / "xt.csv"
    csv.write_text("1,2,3\n0,0,1\n")
    code, from_csv, _ = call(["eval", "cross_entropy", str(csv), "--format", "float32"])
    assert code == 0 and from_csv == out
    npy = tmp_path / "x.npy"
    np.save(npy, np.array([1000.0, 1000.0, 1000.0]))
    code, out, _ = call(["eval", "softmax", str(npy), "--format", "float16"])
    assert code == 0 and out.startswith("softmax of [1000, 1000, 1000]")


def test_render_text_shows_rounded_input_and_long_vectors():
    x = np.linspace(0.1, 1.0, 10)
    text = render_text(evaluate("softmax", x, formats=["float16"], variants=["shifted"]), x)
    first = text.splitlines()[0]
    assert first == "softmax of [0.1, 0.2, 0.30000000000000004, ... (10 values)]"
    # The exact values the float16 input holds (its shortest form, 0.1, would hide the change).
    assert "input rounded to [0.0999755859375, 0.199951171875, 0.300048828125, ..." in text
