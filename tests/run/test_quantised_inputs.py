"""Quantise-then-compute (`[quantise]` in a spec): each row records how its input was quantised
and the quantisation error apart, and its rel_error is the kernel's error on the input it
received (certified truth of the dequantised tensor), never the two mixed."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from precision.core.formats import cast, get_format
from precision.core.quantise import quantisation_error, quantise
from precision.problems import PROBLEMS
from precision.run.estimate import estimate
from precision.run.spec import Quantisation, SpecError, parse_spec
from precision.run.study import _chunk_inputs, chunks, measure_one, run

RAW = {
    "name": "quantised",
    "seed": 5,
    "formats": ["bfloat16", "float32"],
    "problems": ["softmax"],
    "variants": {"softmax": ["shifted"]},
    "grid": {"log10_cond": [0, 1], "log10_magnitude": [0, 1], "sizes": [48], "samples_per_cell": 3},
    "quantise": {"schemes": ["mxfp8_e4m3", "nvfp4", "float8_e5m2_tensor"]},
}


def spec_with(**quantise):
    raw = copy.deepcopy(RAW)
    raw["quantise"] = {**raw["quantise"], **quantise}
    return parse_spec(raw)


def test_each_scheme_runs_once_per_applicable_block_size_and_rule():
    spec = spec_with(block_size=[16, 32], scale_rule=["ocp", "round_up"])
    assert spec.quantise == (
        Quantisation("mxfp8_e4m3", 16, "ocp"),
        Quantisation("mxfp8_e4m3", 16, "round_up"),
        Quantisation("mxfp8_e4m3", 32, "ocp"),
        Quantisation("mxfp8_e4m3", 32, "round_up"),
        Quantisation("nvfp4", 16, None),
        Quantisation("nvfp4", 32, None),
        Quantisation("float8_e5m2_tensor", None, None),
    )
    assert [g.format for g in spec.received()] == ["bfloat16"] * 8 + ["float32"] * 8
    assert spec_with().quantise[0] == Quantisation("mxfp8_e4m3", 32, "ocp")  # the defaults


@pytest.mark.parametrize(
    ("quantise", "fragment"),
    [
        ({"schemes": ["mxfp8_e4m4"]}, "quantise.schemes: unknown name 'mxfp8_e4m4'"),
        ({"schemes": []}, "quantise.schemes"),
        ({"schemes": ["nvfp4"], "block_size": [0]}, "quantise.block_size: must be a positive"),
        ({"schemes": ["nvfp4"], "block_size": [16, 16]}, "quantise.block_size: lists a value"),
        ({"schemes": ["nvfp4"], "scale_rule": ["ceil"]}, "quantise.scale_rule: unknown rule"),
        ({"schemes": ["nvfp4"], "scale": ["ocp"]}, "quantise.scale"),
        ("mxfp8_e4m3", "quantise: must be a table"),
    ],
)
def test_bad_quantise_tables_are_refused_in_one_line(quantise, fragment):
    raw = copy.deepcopy(RAW) | {"quantise": quantise}
    with pytest.raises(SpecError, match=None) as info:
        parse_spec(raw)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_quantise_and_shared_inputs_are_refused_together():
    with pytest.raises(SpecError, match="shared_inputs"):
        parse_spec(copy.deepcopy(RAW) | {"shared_inputs": True})


def test_rows_separate_the_quantisation_error_from_the_kernel_error():
    spec = spec_with(scale_rule=["ocp", "round_up"])
    table = run(spec)
    problem = PROBLEMS["softmax"]
    checked = 0
    for chunk in chunks(spec):
        for cell, index, x in _chunk_inputs(spec, chunk):
            where = (
                (table["cell_log10_cond"] == cell[0])
                & (table["cell_log10_magnitude"] == cell[1])
                & (table["sample"] == index)
            )
            for given in spec.received():
                q = given.quantisation
                received = cast(x if q is None else q.apply(x[None])[0], given.format)
                rows = table[where & (table["format"] == given.format)]
                if q is None:
                    rows = rows[rows["quantised"].isna()]
                else:
                    rule = rows["scale_rule"].fillna("") == (q.scale_rule or "")
                    rows = rows[(rows["quantised"] == q.scheme) & rule]
                (row,) = rows.itertuples()
                # The quantisation error: what the kernel received against the drawn input.
                expected = quantisation_error(x[None], received.astype(np.float64)[None])[0]
                assert row.quant_error == expected
                # The kernel error: against the certified truth of what it received.
                measured = measure_one(problem, "shifted", received, given.format)
                assert row.rel_error == measured["rel_error"] and row.outcome == measured["outcome"]
                checked += 1
    assert checked == len(table) > 0
    # Quantised to 8 bits, the input loses far more than bfloat16 rounding, yet the kernel's
    # error in float32 stays at float32's level: the two are apart.
    mx = table[table["quantised"] == "mxfp8_e4m3"]
    assert mx["quant_error"].median() > 10 * get_format("bfloat16").u
    f32 = mx[(mx["format"] == "float32") & (mx["outcome"] == "ok")]
    assert (f32["err_over_u"] < 2 * 48 + 10).all()  # softmax's bound, (n + 3) u, with slack


def test_the_dequantised_tensor_is_the_one_quantise_gives():
    x = np.random.default_rng(0).standard_normal((4, 64))
    q = Quantisation("mxfp8_e4m3", 32, "round_up")
    assert np.array_equal(
        q.apply(x), quantise(x, "mxfp8_e4m3", block_size=32, scale_rule="round_up").dequantised
    )


def test_plain_rows_are_unchanged_by_adding_quantisations():
    plain = run(parse_spec({k: v for k, v in RAW.items() if k != "quantise"}))
    mixed = run(spec_with())
    alone = mixed[mixed["quantised"].isna()].reset_index(drop=True)
    assert alone.equals(plain)
    assert plain["quantised"].isna().all() and plain["block_size"].isna().all()
    assert (plain["quant_error"] <= get_format("bfloat16").u).all()


def test_the_size_estimate_counts_the_quantised_rows():
    spec = spec_with(scale_rule=["ocp", "round_up"])
    assert estimate(spec).rows >= len(run(spec)) > 0
    assert (
        estimate(spec).rows
        == 5 * estimate(parse_spec({k: v for k, v in RAW.items() if k != "quantise"})).rows
    )
