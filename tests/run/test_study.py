"""The softmax study's own rows: overflow thresholds and first-order bounds, end to end.

The quick version of studies/softmax.toml runs once per session (seconds); the full study runs
under ``pytest -m slow`` (minutes). The assertions below are the numerical claims the study
exists to show.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.special

from precision.core.formats import cast, get_format
from precision.problems import PROBLEMS
from precision.run.spec import load_spec, parse_spec
from precision.run.study import COLUMNS, run
from precision.run.truths import chunk_ground_truths
from precision.store.cache import GroundTruthCache
from precision.truth.exact import UndefinedResult, ground_truth, ground_truths
from precision.truth.records import cache_key

FORMATS = ["float16", "bfloat16", "float32", "float64"]
STUDY = Path(__file__).resolve().parents[2] / "studies" / "softmax.toml"
STABLE = [
    ("exp", "numpy"),
    ("softmax", "shifted"),
    ("softmax", "scipy"),
    ("logsumexp", "shifted"),
    ("logsumexp", "log1p"),
    ("log_softmax", "shifted"),
    ("cross_entropy", "from_logits"),
]
NAIVE = [("softmax", "naive"), ("logsumexp", "naive"), ("log_softmax", "naive")]
FAILED = ["nan", "overflow"]


@pytest.fixture(
    scope="module",
    params=[pytest.param(True, id="quick"), pytest.param(False, id="full", marks=pytest.mark.slow)],
)
def table(request) -> pd.DataFrame:
    """The study's rows: its --quick version in CI, the full study under ``-m slow``."""
    return run(load_spec(STUDY, quick=request.param))


def rows(table, problem, variant, fmt) -> pd.DataFrame:
    selected = table[
        (table["problem"] == problem) & (table["variant"] == variant) & (table["format"] == fmt)
    ]
    assert len(selected) > 0, f"no rows for {problem}/{variant}/{fmt}"
    return selected


def ln_max(fmt: str) -> float:
    return float(np.log(get_format(fmt).max))


def test_table_is_tidy_and_complete(table):
    assert list(table.columns) == list(COLUMNS)
    assert set(table["format"]) == set(FORMATS)
    assert set(table["source"]) == {"synthetic", "mnist"}
    assert table["certified"].all()
    # One row per input x variant x format: no duplicates of the identifying columns.
    keys = [
        "problem",
        "variant",
        "format",
        "source",
        "sample",
        "n",
        "cell_log10_cond",
        "cell_log10_magnitude",
    ]
    assert not table.duplicated(subset=keys).any()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("problem", "variant"), NAIVE)
def test_naive_forms_fail_once_max_x_passes_ln_max(table, problem, variant, fmt):
    """exp(x) overflows for x > ln(max): 11.09 (float16), 88.72 (bfloat16, float32), 709.78."""
    r = rows(table, problem, variant, fmt)
    # A margin of one part in 1e3 keeps away from the float rounding of the threshold itself.
    above = r[r["x_max"] > ln_max(fmt) * 1.001]
    assert len(above) > 0, "the study must probe beyond the overflow threshold"
    assert above["outcome"].isin(FAILED).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_naive_lse_is_fine_below_the_threshold(table, fmt):
    """Naive log-sum-exp fails exactly when its sum overflows (lse(x) > ln max) or every term
    underflows; below that it returns a finite number."""
    r = rows(table, "logsumexp", "naive", fmt)
    tiny = np.log(get_format(fmt).min_normal)
    safe = r[(r["lse"] < ln_max(fmt) * 0.999) & (r["x_max"] > tiny)]
    assert len(safe) > 0
    # (A result that cancels to zero, lse(x) ~ 0 with kappa ~ 1e4, is finite: not a failure here.)
    assert not safe["outcome"].isin(FAILED).any()
    overflowing_sum = r[r["lse"] > ln_max(fmt) * 1.001]
    assert overflowing_sum["outcome"].isin(FAILED).all()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("problem", "variant"), STABLE)
def test_stable_forms_never_return_nan_or_inf(table, problem, variant, fmt):
    r = rows(table, problem, variant, fmt)
    if problem == "exp":
        r = r[r["x_max"] < ln_max(fmt)]  # exp itself overflows past ln(max): that is its job
    assert not r["outcome"].isin(FAILED).any()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("problem", "variant"), STABLE + NAIVE)
def test_measured_errors_respect_first_order_bounds(table, problem, variant, fmt):
    """rel_error <= bound * (1 + n u): the bound is first order; n u covers the second-order
    terms of gamma_n = n u / (1 - n u)."""
    r = rows(table, problem, variant, fmt)
    checked = r[(r["outcome"] == "ok") & r["certified"] & r["bound"].notna()]
    assert len(checked) > 0, "some ok rows carry a bound"
    u = get_format(fmt).u
    limit = checked["bound"] * (1 + checked["n"].astype(float) * u)
    violations = checked[checked["rel_error"] > limit]
    assert violations.empty, violations[["n", "cond", "magnitude", "rel_error", "bound"]]


def test_rows_record_the_real_compute_dtype(table):
    """scipy's logsumexp on bfloat16 returned float64 (ml_dtypes 0.6) or raises (0.7): the rows
    say what the installed versions do, measured here by calling scipy directly."""
    scipy_bf16 = rows(table, "logsumexp", "scipy", "bfloat16")
    x = cast(np.array([0.5, -1.0, 2.0]), "bfloat16")
    try:
        returned, raised = np.asarray(scipy.special.logsumexp(x)).dtype.name, None
    except Exception as exc:
        returned, raised = "", type(exc).__name__
    assert (scipy_bf16["compute_dtype"] == returned).all()
    if raised:
        assert (scipy_bf16["outcome"] == "error").all()
        assert scipy_bf16["exception"].str.startswith(f"{raised}: ").all()
    else:
        assert scipy_bf16["exception"].isna().all()
    numpy_rows = table[table["library"] == "numpy"]
    assert (numpy_rows["compute_dtype"] == numpy_rows["format"]).all()


def test_measured_condition_numbers_are_reported_not_targets(table):
    synthetic = table[(table["source"] == "synthetic") & (table["problem"] == "logsumexp")]
    decades = np.floor(np.log10(synthetic["cond"].astype(float)))
    # The generator aims at cells, and most inputs land there; rows carry the measured value.
    hit = (decades == synthetic["cell_log10_cond"].astype(float)).mean()
    assert hit > 0.8


# ------------------------------------------------- what a row says about how a variant computed


def _toy_problem(compute, *, backward_error=None):
    """A problem with one variant ``v``; measure_variant needs only the variants and the
    backward error (the exact output is passed in)."""
    from precision.problems.base import Problem, Variant

    return Problem(
        name="toy",
        description="",
        reference=lambda x, ctx=None: (x, 1.0),
        magnitude=lambda x: 1.0,
        propose=lambda rng, **_: None,
        estimate=lambda X: (None, None),
        variants={"v": Variant("v", compute)},
        backward_error=backward_error,
    )


@pytest.mark.parametrize("fmt", ["float16", "float64"])
def test_a_refused_format_is_an_unsupported_row_not_an_upcast(fmt):
    from precision.core.metrics import Exact
    from precision.problems.base import Unsupported
    from precision.run.measure import measure_variant

    def refuses_half(x):
        if x.dtype == np.float16:
            raise Unsupported("numpy.linalg has no float16 kernels")
        return x * x.dtype.type(2)

    x = np.array([1.5, 3.0], dtype=get_format(fmt).dtype)
    _, row = measure_variant(
        _toy_problem(refuses_half), "v", x, get_format(fmt), Exact.from_float(2.0 * x)
    )
    if fmt == "float16":
        assert row["outcome"] == "unsupported" and row["compute_dtype"] == ""
        assert "rel_error" not in row  # nothing computed, nothing measured
    else:
        assert row["outcome"] == "ok" and row["rel_error"] == 0.0
        assert row["compute_dtype"] == "float64"


@pytest.mark.parametrize("converged", [True, False])
def test_an_iterative_variant_reports_iterations_and_non_convergence(converged):
    from precision.core.metrics import Exact
    from precision.problems.base import Computed
    from precision.run.measure import measure_variant

    x = np.array([1.0, 2.0])
    problem = _toy_problem(lambda x: Computed(x.copy(), iterations=7, converged=converged))
    _, row = measure_variant(problem, "v", x, get_format("float64"), Exact.from_float(x))
    assert row["iterations"] == 7
    assert row["outcome"] == ("ok" if converged else "no_convergence")
    assert row["rel_error"] == 0.0  # the error is still measured: where it stopped


def test_a_diverged_iteration_is_an_overflow_not_merely_unconverged():
    from precision.core.metrics import Exact
    from precision.problems.base import Computed
    from precision.run.measure import measure_variant

    x = np.array([1.0, 2.0])
    problem = _toy_problem(
        lambda x: Computed(np.array([np.inf, 1.0]), iterations=3, converged=False)
    )
    _, row = measure_variant(problem, "v", x, get_format("float64"), Exact.from_float(x))
    assert row["outcome"] == "overflow"


def test_backward_error_library_version_device_and_mode_columns():
    from importlib import metadata

    from precision.core.metrics import Exact
    from precision.run.measure import measure_variant

    x = np.array([1.0, 2.0], dtype=np.float32)
    seen = []

    def backward(x_in, y):
        seen.append((x_in.dtype, y.dtype))
        return float(np.abs(y.astype(np.float64) - x_in.astype(np.float64)).max())

    problem = _toy_problem(lambda x: x + np.float32(2.0**-20), backward_error=backward)
    _, row = measure_variant(problem, "v", x, get_format("float32"), Exact.from_float(x))
    assert row["backward_error"] == 2.0**-20
    assert seen == [(np.float32, np.float32)]
    assert row["library_version"] == metadata.version("numpy")
    assert (row["device"], row["compute_mode"], row["iterations"]) == ("cpu", "native", None)


def test_ulp_distances_beyond_2_63_are_stored_exactly():
    """float64 ulp distances reach 2**64 - 2**53; pandas turned a list of such Python ints into
    float64 on the way to UInt64 (the bench caught 3735625535656447729 stored as ...7488): the
    column is built from a masked uint64 array, never through floats."""
    from precision.run.study import _typed_column

    ulps = [3735625535656447729, 2**64 - 2**53, None, 1]
    values = np.ma.array([v or 0 for v in ulps], mask=[v is None for v in ulps], dtype=np.uint64)
    column = pd.Series(_typed_column(values, "UInt64"))
    assert column.dtype == "UInt64"
    assert column.tolist()[:2] == ulps[:2]
    assert column.isna().tolist() == [False, False, True, False]


# ------------------------------------------------------------------ chunks are batches


def _chunked(chunk_elements: int | None):
    from precision.run.spec import parse_spec

    raw = {
        "name": "chunking",
        "seed": 5,
        "formats": ["float16", "bfloat16", "float64"],
        "problems": ["softmax", "summation"],
        "grid": {
            "log10_cond": [0, 3],
            "log10_magnitude": [0, 2],
            "sizes": [10],
            "samples_per_cell": 2,
        },
    }
    return parse_spec(raw | ({"chunk_elements": chunk_elements} if chunk_elements else {}))


def test_how_cells_are_grouped_into_chunks_changes_no_row_of_numpy_kernels():
    """One cell per chunk (batches of 2) or one chunk per problem (batches of 12: batch kernels
    are not spread over `MIN_CHUNKS`): the rows are the same, in the same order, except the
    batch column that says which call made them."""
    from precision.run.study import chunks

    small, large = _chunked(1), _chunked(None)
    assert len(chunks(small)) == 12 and len(chunks(large)) == 2
    a, b = run(small), run(large)
    assert set(a["batch"].dropna()) <= {1, 2} and b["batch"].max() > 2
    pd.testing.assert_frame_equal(a.drop(columns="batch"), b.drop(columns="batch"))


def test_small_inputs_still_spread_over_several_chunks():
    """Inputs small enough for one chunk (`CHUNK_ELEMENTS`) of a problem whose variants loop
    over rows (descent's solvers) are split into `MIN_CHUNKS` chunks per problem and size, so
    that an expensive problem of small inputs keeps every worker busy; a spec's own
    chunk_elements can only make chunks smaller."""
    from precision.run.study import MIN_CHUNKS, chunks

    spec = load_spec(Path(__file__).parents[2] / "studies" / "descent.toml")
    plan = chunks(spec)  # 18 cells of 2 inputs of n = 8: one chunk by size alone
    assert len(spec.grid.cells()) == 18 and [len(c.cells) for c in plan] == [5, 5, 5, 3]
    assert len(plan) == MIN_CHUNKS
    tiny = chunks(parse_spec(spec.raw | {"chunk_elements": 16}))  # one cell (2 x 8) per chunk
    assert len(tiny) == 18


def test_a_chunk_holds_its_cells_in_grid_order_and_every_cell_once():
    from precision.run.study import chunks

    spec = _chunked(25)  # two cells of 2 inputs x 10 elements per chunk (a third would exceed)
    plan = chunks(spec)
    assert all(len(c.cells) <= 2 for c in plan)
    for problem in spec.problems:
        cells = [cell for c in plan if c.problem == problem for cell in c.cells]
        assert cells == spec.grid.cells()
    assert len({c.id for c in plan}) == len(plan)


def _step_grid() -> dict:
    return {
        "name": "steps",
        "seed": 5,
        "formats": ["float16", "float64"],
        "problems": ["fd_exp", "summation"],
        "variants": {"fd_exp": ["forward", "central"], "summation": ["recursive", "random_order"]},
        "params": {"fd_exp": {"h": [2.0**-4, 2.0**-10], "central": {"h": [2.0**-6]}}},
        "grid": {
            "log10_cond": [0, 1],
            "log10_magnitude": [0, 1],
            "sizes": [16],
            "samples_per_cell": 2,
        },
    }


def test_a_parameter_grid_from_the_spec_becomes_numeric_columns():
    """The spec's grid values, not the defaults, are run: one row per input x member x format,
    the variant column holding the family's name and the parameter its own float64 column."""
    table = run(parse_spec(_step_grid()))
    fd = table[table["problem"] == "fd_exp"]
    members = fd.groupby("variant")["h"].agg(lambda h: sorted(set(h)))
    assert members.to_dict() == {"forward": [2.0**-10, 2.0**-4], "central": [2.0**-6]}
    inputs = fd[["cell_log10_cond", "cell_log10_magnitude", "sample"]].drop_duplicates()
    assert len(fd) == len(inputs) * 3 * 2  # three members, two formats
    sums = table[table["problem"] == "summation"]
    assert sorted(set(sums.loc[sums["variant"] == "random_order", "seed"])) == [0.0, 1.0, 2.0, 3.0]
    assert sums.loc[sums["variant"] == "recursive", ["h", "lr", "seed"]].isna().all().all()
    assert table["h"].dtype == np.float64 and "family" not in table


# ------------------------------------------------------------------ ground truth of a chunk


def _per_input_truths(problem, inputs: dict, formats: dict, b: int, records: set) -> dict:
    """The ground truths of input ``b`` as the runner once made them, one `ground_truths` call
    per input and group of identical inputs: key -> GroundTruth, None where undefined, absent
    where the input is not finite. Adds the cache key of each defined one to ``records``."""
    groups: dict[bytes, list[str]] = {}
    for key, X in inputs.items():
        x64 = X[b].astype(np.float64)
        if np.isfinite(x64).all():
            groups.setdefault(x64.tobytes(), []).append(key)
    truths = {}
    for keys in groups.values():
        names = list(dict.fromkeys(formats[k] for k in keys))
        try:
            found = ground_truths(problem, inputs[keys[0]][b], names, engine="arb")
        except UndefinedResult:
            found = dict.fromkeys(names)
        else:
            records.add(cache_key(problem, inputs[keys[0]][b], names, engine="arb"))
        truths |= {k: found[formats[k]] for k in keys}
    return truths


def _truth_fields(truth) -> tuple:
    e = truth.exact
    arrays = (e.hi, e.lo, e.exp, e.rounded)
    return (*(a.dtype.str + a.tobytes().hex() for a in arrays), truth.cond, truth.prec,
            truth.certified)  # fmt: skip


def _chunk_inputs_of(problem_name: str) -> tuple[dict, dict]:
    """A chunk's inputs per received key: exp scalars that every format holds exactly (one
    evaluation for all), that only the wide formats hold, that overflow float16 (absent
    there), repeated inputs, a key received twice in one format; or linear systems, one of
    them exactly singular in every format (undefined)."""
    rng = np.random.default_rng(30)
    if problem_name == "exp":
        x = np.concatenate([[0.5, -3.0, 100.0, 1e5, -1e5, 0.0, 0.5], rng.standard_normal(40) * 30])
        x = x[:, None]
    else:
        problem = PROBLEMS[problem_name]
        x = np.stack(
            [problem.propose(rng, n=3, magnitude=1.0, cond=10.0, size=1)[0] for _ in range(5)]
        )
        x[2, :, :2] = 1.0  # two equal columns: exactly singular
    with np.errstate(over="ignore"):
        inputs = {fmt: cast(x, fmt) for fmt in FORMATS} | {"mx": cast(x, "float16")}
    return inputs, {fmt: fmt for fmt in FORMATS} | {"mx": "float16"}


@pytest.mark.parametrize("cached", [False, True], ids=["no cache", "cache"])
@pytest.mark.parametrize("problem_name", ["exp", "linear_system"])
def test_a_chunks_ground_truths_are_each_inputs_own(problem_name, cached, tmp_path):
    """`chunk_ground_truths` certifies a chunk a batch per grouping of identical inputs: every
    key and input gets what one `ground_truths` call per input gave it (absent where not
    finite, undefined where singular), bit for bit; with a cache, one record per input and
    group, and a second pass reads them all back unchanged, computing only the undefined."""
    problem = PROBLEMS[problem_name]
    inputs, formats = _chunk_inputs_of(problem_name)
    cache = GroundTruthCache(tmp_path / "truths.sqlite") if cached else None
    spec = SimpleNamespace(engine="arb")
    passes = [chunk_ground_truths(spec, problem, inputs, cache, formats=formats)]
    if cached:
        passes.append(chunk_ground_truths(spec, problem, inputs, cache, formats=formats))
        # An undefined input has no record: it is tried again (linear_system's singular one).
        assert passes[0][1] > 0 and (passes[1][1] == 0.0) == (problem_name == "exp")
    batch = len(inputs["float64"])
    records: set[str] = set()
    expected = [_per_input_truths(problem, inputs, formats, b, records) for b in range(batch)]
    for found, _ in passes:
        for key, column in found.items():
            assert column.present.tolist() == [key in e for e in expected]
            for b in np.flatnonzero(column.present).tolist():
                truth = column.truth(b)
                if expected[b][key] is None:
                    assert truth is None
                else:
                    assert _truth_fields(truth) == _truth_fields(expected[b][key]), (key, b)
    if cached:  # one record per defined input and group, identical inputs sharing one
        assert len(cache) == len(records)


@pytest.mark.parametrize("problem_name", ["batchnorm_finfo_eps", "batchnorm"])
def test_equal_inputs_share_a_ground_truth_only_where_the_reference_ignores_the_format(
    problem_name,
):
    """batchnorm_finfo_eps takes eps = finfo(format).eps from its input's format
    (`Problem.reference_reads_format`): a batch equal in float32 and float64 (every value a
    float32) has a different exact result in each, and with a variance of about 2**-22 the
    two eps (2**-23, 2**-52) change it by about a quarter. Each format gets the truth of its
    own input alone; batchnorm (eps = 1e-5 in every format) still shares one evaluation."""
    problem = PROBLEMS[problem_name]
    x = np.array([[1.0, 1.0 + 2**-10, 1.0, 1.0]])
    inputs = {"float32": x.astype(np.float32), "float64": x.astype(np.float64)}
    found, _ = chunk_ground_truths(SimpleNamespace(engine="arb"), problem, inputs, None)
    alone = {f: ground_truth(problem, inputs[f][0], f, engine="arb") for f in inputs}
    for fmt in inputs:
        assert _truth_fields(found[fmt].truth(0)) == _truth_fields(alone[fmt]), fmt
    differ = alone["float32"].cond != alone["float64"].cond
    assert differ == problem.reference_reads_format


def test_a_reference_parameter_gives_each_member_its_own_ground_truth():
    """Adam's exact update depends on eps (`Problem.reference_params`): each eps of the spec's
    grid is a column value, and its rows are measured against the exact update with that eps.
    With |g| ~ 1e-4, sqrt(v_hat) ~ |g| lies between the two eps, so the exact updates for
    eps = 1e-8 and 1e-3 differ by a factor of about 2 to 10: a row measured against the other
    eps's truth would have a relative error above 1/2, far beyond its rigorous bound (which
    assumes the row's own eps). Every row with a bound must meet it."""
    spec = parse_spec(
        {
            "name": "eps",
            "seed": 7,
            "formats": ["bfloat16", "float32"],
            "problems": ["adam_update"],
            "params": {"adam_update": {"eps": [1e-8, 1e-3]}},
            "grid": {
                "log10_cond": [0, 1],
                "log10_magnitude": [-4, -3],
                "sizes": [8],
                "samples_per_cell": 2,
            },
        }
    )
    table = run(spec)
    assert table["eps"].dtype == np.float64
    assert table.groupby("eps").size().to_dict() == {1e-8: 8, 1e-3: 8}  # 2 inputs x 2 x 2
    bounded = table[(table["outcome"] == "ok") & np.isfinite(table["bound"])]
    assert len(bounded) >= len(table) // 2
    assert (bounded["rel_error"] <= bounded["bound"]).all()
    assert bounded.groupby("eps")["rel_error"].max().max() < 0.5
