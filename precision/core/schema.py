"""The one schema of the tables: every column with its meaning and unit, its dtype, and the
outcome vocabulary. The runner builds each chunk's table from `DTYPES`; `precision.run.evaluate`
describes its columns from `COLUMNS`; summaries, claims and figures read `FAILURES`.
"""

from __future__ import annotations

import math

import pandas as pd

OUTCOMES: dict[str, str] = {
    "ok": "a finite result, measured by its relative error",
    "exact_zero": "the exact result is 0: no relative error exists; judged by abs_error (not a "
    "failure)",
    "underflow": "a result in the underflow range flushed to zero",
    "overflow": "an inf, or an intermediate overflowed",
    "nan": "a NaN result",
    "input_overflow": "the input is beyond the format's range: nothing to measure",
    "input_nan": "the input holds NaN: no exact value (precision eval only)",
    "input_inf": "the input holds an infinity: no exact value (precision eval only)",
    "no_convergence": "an iterative variant hit its iteration cap",
    "undefined": "the problem has no exact result for this input (a singular matrix)",
    "unsupported": "the library refuses the format: nothing was computed",
    "error": "the variant raised an exception the framework does not expect: nothing computed",
}
"""Every outcome a row may have, with its meaning (`precision.core.metrics.result_outcome` gives the
first five from a computed result; the runner the rest)."""

FAILURES: tuple[str, ...] = (
    "underflow",
    "overflow",
    "nan",
    "input_overflow",
    "no_convergence",
    "unsupported",
    "undefined",
    "error",
)
"""Outcomes counted as failures (``ok`` and ``exact_zero`` are not; ``input_nan`` and
``input_inf`` occur only in `precision.run.evaluate`)."""

NOTHING_COMPUTED: tuple[str, ...] = ("unsupported", "error")
"""Outcomes of a variant that returned no result."""

DEFAULT_ENGINE = "arb"
"""The ground-truth engine of studies and of `precision.run.evaluate` unless one is named."""

PARAMETERS = {
    "h": "finite-difference step h (families forward, central, jacobian_forward, "
    "jacobian_central, values), an exact power of 2; NaN where no step applies",
    "lr": "learning rate alpha lambda_max of the gradient-descent families (gd, gd_master32, "
    "gd_kahan, gd_stochastic), unitless (the stability limit is 2); NaN elsewhere",
    "seed": "index k of a reproducible random stream, seeded by the input and k: the summation "
    "order of random_order, the stochastic rounding of recursive_sr; NaN elsewhere",
    "acc_bits": "significand bits of the limited accumulator (implicit bit included; float32 "
    "has 24) of the dot product's limited_accumulator family; NaN elsewhere",
    "acc_truncate": "rounding of the limited accumulator: 0 to nearest (ties to even), 1 by "
    "truncating the aligned addend toward zero (limited_accumulator); NaN elsewhere",
    "promote_every": "products summed in the limited accumulator before its value is added "
    "to a float32 accumulator and cleared (0: never; DeepSeek-V3's N_C = 128); NaN elsewhere",
    "log2_scale": "log2 of the static loss scale s = 2^log2_scale of loss_scaling's "
    "static_scale family (an integer; 2^16 is GradScaler's first scale); NaN elsewhere",
    "float32_stats": "1: the attention families (two_pass, online, blockwise) compute logits, "
    "running max, exponentials, normaliser and output accumulator in float32 and round the "
    "output once to the format; 0: everything in the format; NaN elsewhere",
    "kv_block": "keys per block of the blockwise (FlashAttention-2) attention family; NaN "
    "elsewhere",
    "eps": "eps of Adam's update lr m_hat / (sqrt(v_hat) + eps), a float64 (the exact result "
    "uses its shortest decimal: 1e-8 is 1/10^8; the kernel rounds the float to its format); "
    "NaN elsewhere",
    "approximate": "1: a library's tanh approximation of GELU (torch gelu(approximate='tanh'), "
    "jax.nn.gelu(approximate=True), tf.nn.gelu(approximate=True)); 0: the library's exact (erf) "
    "GELU; NaN elsewhere",
}
"""The parameters a variant may declare (`precision.problems.base.Variant.params`), each a
float64 column of the table (NaN where it does not apply)."""

VARIANT_KEYS: tuple[str, ...] = ("variant", *PARAMETERS)
"""The columns that identify the variant of a row: its name and its parameters (NaN where one
does not apply; group with ``dropna=False``)."""

QUANTISATION_KEYS: tuple[str, ...] = ("quantised", "block_size", "scale_rule")
"""The columns that say how an input was quantised before the variant received it (missing
where it was only rounded to the row's format): with ``format`` they identify what the variant
was given."""

COLUMNS = {
    "study": "study name",
    "problem": "problem name",
    "variant": "the variant's name (naive, shifted, forward, gd, random_order, ...); a family "
    "of variants runs once per value of its parameters, which are the columns below: a row's "
    "variant is identified by its name and those columns together (`VARIANT_KEYS`)",
    **PARAMETERS,
    "format": "the format the input was rounded to and the variant asked to compute in",
    "quantised": "the scaled format (precision.core.quantise.SCHEMES: mxfp8_e4m3, nvfp4, "
    "...) the input was quantised to before the variant received it in format (the "
    "dequantised tensor, then rounded to format); missing where the input was only rounded "
    "to format",
    "block_size": "values sharing one scale in the quantised input (MX, NVFP4); NaN elsewhere",
    "scale_rule": "how an MX block's power-of-two scale was chosen: ocp (OCP MX v1.0) or "
    "round_up (no element saturates); missing elsewhere",
    "quant_error": "normwise (inf-norm) relative error of the input the variant received "
    "against the drawn float64 input, unitless: the quantisation (or rounding) error, kept "
    "apart from rel_error, which is measured against the exact result of the received input",
    "compute_dtype": "dtype of the result the variant returned (differs when a library upcasts)",
    "accumulator": "precision its reductions accumulate in",
    "library": "numpy for code written here, else the library called",
    "library_version": "installed version of that library",
    "device": "where the library computed (cpu, cuda)",
    "compute_mode": "native (as numpy or the library executes it), emulated (every rounding "
    "modelled explicitly: to the format after every operation, or to the accumulator the "
    "variant's parameters name, e.g. acc_bits) or stochastic (emulated with stochastic "
    "rounding)",
    "source": "synthetic (grid cell) or the data set's name",
    "sample": "index of the input within its cell (or data-set row index)",
    "n": "input size",
    "cell_log10_cond": "targeted condition decade (synthetic inputs)",
    "cell_log10_magnitude": "targeted magnitude decade (synthetic inputs)",
    "cond": "relative condition number of the rounded input, certified to 2^-20 relative "
    "(precision.truth.exact.COND_ACCURACY; the mpmath engine: its value at the accepted precision)",
    "magnitude": "the rounded input's magnitude as its problem measures it (its "
    "magnitude_name): max |x_i| for vectors, ||A||_2 for matrices, the logit spread for "
    "attention, ...",
    "x_max": "max x_i of the rounded input",
    "lse": "log-sum-exp of the rounded input's logits (float64), where defined",
    "rel_error": "normwise (inf-norm) relative error of the result, unitless; NaN where the "
    "exact result is 0 (outcome exact_zero: undefined)",
    "rel_error_cw": "largest componentwise relative error, unitless (NaN: outcome exact_zero)",
    "err_over_u": "rel_error / u of the row's format",
    "abs_error": "normwise (inf-norm) absolute error max|computed - exact|, in the units of "
    "the result; NaN where nothing was computed",
    "ulps": "largest ulp distance to the correctly rounded exact result, in compute_dtype",
    "bits": "log2(1 + ulps): bits of error (0 = correctly rounded)",
    "outcome": "ok / exact_zero (the exact result is 0: no relative error, judged by abs_error; "
    "not a failure) / underflow / overflow / nan / input_overflow (see metrics.result_outcome), "
    "no_convergence (an iterative variant hit its cap), undefined (no exact result: e.g. the "
    "rounded matrix is singular), unsupported (the library refuses the "
    "format; nothing was computed), error (the variant raised an exception the framework "
    "does not expect, e.g. a library's TypeError for a dtype; nothing was computed)",
    "exception": "what stopped the variant: the exception's type and message (outcome error), "
    "or the library's refusal (outcome unsupported); missing otherwise",
    "fp_exceptions": "IEEE exceptions numpy reported while the variant ran (overflow, ...)",
    "bound": "known first-order bound on rel_error for this input (NaN: none applies)",
    "backward_error": "normwise backward error of the result, for problems that define one",
    "iterations": "iterations an iterative variant ran (NA: a direct method)",
    "batch": "rows in the kernel call that computed this row: the chunk's inputs of the "
    "format for a batch kernel, 1 for a variant that runs row by row (or whose batched call "
    "raised, so that each row was run alone); NA where nothing ran",
    "gt_prec": "working precision (bits) of the certified ground truth (106: the double-double "
    "enclosure of precision.truth.enclosed)",
    "certified": "whether the ground truth was certified",
}


_FLOATS = (
    *PARAMETERS,
    "block_size",
    "quant_error",
    "cond",
    "magnitude",
    "x_max",
    "lse",
    "rel_error",
    "rel_error_cw",
    "err_over_u",
    "abs_error",
    "bits",
    "bound",
    "backward_error",
)
_INTS = (
    "sample",
    "n",
    "cell_log10_cond",
    "cell_log10_magnitude",
    "gt_prec",
    "iterations",
    "batch",
)
DTYPES = {
    name: "float64"
    if name in _FLOATS
    else "Int64"
    if name in _INTS
    else "UInt64"  # ulps: float64 distances reach 2**64 - 2**53
    if name == "ulps"
    else "boolean"
    if name == "certified"
    else "string"
    for name in COLUMNS
}
"""The fixed dtype of every column, so that tables from any run compare byte for byte."""


def variant_label(variant: str, params: dict[str, float]) -> str:
    """A variant with its parameters for figure legends and tables: ``forward h=2^-12``,
    ``gd lr=0.1``, ``random_order seed=3`` (NaN parameters are left out). For reading only:
    nothing parses it back."""
    shown = [
        f"{key}={format_parameter(value)}"
        for key, value in params.items()
        if value is not None and value == value  # NaN: the parameter does not apply
    ]
    return " ".join([variant, *shown])


def format_parameter(value: float) -> str:
    """A parameter value as people write it: ``2^-12`` for a power of two below 1/8 or above
    8 (steps h = 2**-k), an integer without a point (seeds), ``%g`` otherwise."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    mantissa, exponent = math.frexp(value)
    if mantissa == 0.5 and not -3 <= exponent - 1 <= 3:
        return f"2^{exponent - 1}"
    return f"{value:g}"


def typed_table(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every column of the schema in its fixed dtype (`DTYPES`), so that tables
    from any run, executor or reader compare byte for byte."""
    return table.astype(DTYPES)
