"""Kernels and problems from outside the package: registration, plugins, every executor.

The example plugin (examples/my_kernels.py, a fused exp2 softmax, a float32-accumulating
log-sum-exp and a new sigmoid problem) runs end to end from its spec on the process pool and on
Dask, and reaches the table, the heatmaps and the report. Registrations made here are undone
after each test (`registry_snapshot`), so no other test sees them.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import precision as pr
from precision.cli import run_captured
from precision.core.formats import STUDY_FORMATS, cast
from precision.core.values import InputError
from precision.problems import PROBLEMS
from precision.problems import registry as reg
from precision.run import plugins
from precision.run.spec import SpecError, parse_spec
from precision.truth.records import cache_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = ROOT / "examples" / "my_kernels.toml"
PLUGIN_MODULES = ("my_kernels", "userplug")
FORMATS = ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"]


@pytest.fixture
def registry_snapshot():
    """Undo every registration and plugin import a test makes."""
    problems, kernels, users = dict(PROBLEMS), dict(reg.USER_KERNELS), dict(reg.USER_PROBLEMS)
    loaded = dict(plugins._LOADED)
    yield
    PROBLEMS.clear()
    PROBLEMS.update(problems)
    reg.USER_KERNELS.clear()
    reg.USER_KERNELS.update(kernels)
    reg.USER_PROBLEMS.clear()
    reg.USER_PROBLEMS.update(users)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)
    for name in PLUGIN_MODULES:  # only the plugins: re-importing a library breaks it
        sys.modules.pop(name, None)


@pytest.fixture
def example(tmp_path: Path, registry_snapshot) -> Path:
    """A copy of the example spec and plugin in a folder of its own."""
    for name in ("my_kernels.toml", "my_kernels.py"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    return tmp_path / "my_kernels.toml"


def _plugin(folder: Path, source: str, name: str = "userplug") -> Path:
    """A one-kernel plugin and a tiny spec naming it."""
    (folder / f"{name}.py").write_text(source)
    spec = folder / "spec.toml"
    spec.write_text(
        f'name = "tiny"\nseed = 1\nformats = ["float16", "float64"]\nproblems = ["softmax"]\n'
        f'plugins = ["{name}"]\n[variants]\nsoftmax = ["shifted", "mine"]\n'
        "[grid]\nlog10_cond = [0, 1]\nlog10_magnitude = [0, 1]\nsizes = [10]\n"
        "samples_per_cell = 1\n"
    )
    return spec


KERNEL = """\
import numpy as np
import precision as pr

@pr.kernel("softmax", name="mine")
def mine(x):
    {body}
"""


# ------------------------------------------------------------------ end to end, every executor


@pytest.mark.parametrize("executor", ["process", "dask"])
def test_a_plugin_kernel_runs_on_every_executor_and_reaches_the_report(example, executor):
    out = example.parent / f"out-{executor}"
    argv = ["run", str(example), "--quick", "--out", str(out), "--executor", executor]
    code, stdout, stderr = run_captured([*argv, "--workers", "2", "--no-progress"])
    assert code == 0, stderr
    table = pd.read_parquet(out / "errors.parquet")
    for problem, variant in [
        ("softmax", "fused_exp2"),
        ("logsumexp", "float32_accumulate"),
        ("sigmoid", "naive"),
        ("sigmoid", "stable"),
    ]:
        rows = table[(table["problem"] == problem) & (table["variant"] == variant)]
        assert len(rows) > 0 and set(rows["format"]) == set(STUDY_FORMATS)
        assert (rows["library"] == "user").all()
        assert rows["outcome"].isin(["ok", "underflow", "overflow", "nan"]).all()
        assert rows["certified"].all()
    assert (out / "heatmap_sigmoid.png").is_file() and (out / "heatmap_softmax.png").is_file()
    if executor == "process":  # the report reads the stored results of a user's problem too
        report = example.parent / "report"
        code, _, stderr = run_captured(
            ["report", "--results", str(out.parent), "--out", str(report), "--no-figures"]
        )
        assert code == 0, stderr
        text = (report / "index.md").read_text()
        assert "fused_exp2" in text and "sigmoid" in text


def test_executors_give_the_same_table_for_plugin_kernels(example):
    """Serial (this process) and a spawned pool (which imports the plugin) agree byte for byte."""
    tables = {}
    for executor in ("serial", "process"):
        out = example.parent / executor
        argv = ["run", str(example), "--quick", "--out", str(out), "--executor", executor]
        code, _, stderr = run_captured([*argv, "--no-plots", "--no-progress", "--no-cache"])
        assert code == 0, stderr
        tables[executor] = (out / "errors.parquet").read_bytes()
    assert tables["serial"] == tables["process"]


def test_run_study_and_evaluate_from_python(example):
    table = pr.run_study(example, quick=True)
    assert {"fused_exp2", "float32_accumulate", "naive", "stable"} <= set(table["variant"])
    my_kernels = sys.modules["my_kernels"]
    one = pr.evaluate(my_kernels.fused_exp2, [1.0, 2.0, 3.0], formats=["bfloat16"])
    assert list(one["variant"]) == ["fused_exp2"] and one["outcome"].iloc[0] == "ok"
    # Within its documented error: about (n + 2 + |x_i - max|) u, far below 1.
    assert one["err_over_u"].iloc[0] < 10
    with pytest.raises(InputError, match="not a registered kernel"):
        pr.evaluate(lambda x: x, [1.0, 2.0])


def test_a_notebook_kernel_runs_serially_and_is_refused_on_workers(registry_snapshot):
    """A kernel registered in this process (not by a plugin) runs in this process; worker
    processes could not import it, so a parallel run says so in one line."""

    @pr.kernel("softmax", name="notebook_softmax")
    def notebook_softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    raw = {
        "name": "nb",
        "formats": ["float32"],
        "problems": ["softmax"],
        "variants": {"softmax": ["notebook_softmax"]},
        "grid": {
            "log10_cond": [0, 1],
            "log10_magnitude": [0, 1],
            "sizes": [10],
            "samples_per_cell": 2,
        },
    }
    table = pr.run_study(raw)
    assert set(table["variant"]) == {"notebook_softmax"} and (table["outcome"] == "ok").all()
    with pytest.raises(SpecError, match="worker processes cannot import it"):
        pr.run_study(raw, executor="process")


# ------------------------------------------------------------------ the batch contract


@pytest.mark.parametrize("fmt", FORMATS)
def test_example_kernels_compute_rows_independently(example, fmt):
    """Row i of the batched call equals the one-row call bit for bit (the contract the runner
    relies on when it calls a kernel on one input)."""
    pr.run_study(example, quick=True)  # imports the plugin
    for (problem, variant), _ in list(reg.USER_KERNELS.items()):
        fn = PROBLEMS[problem].variants[variant].kernel
        rng = np.random.default_rng(3)
        X = cast(PROBLEMS[problem].propose(rng, n=16, magnitude=3.0, cond=1.0, size=5), fmt)
        with np.errstate(all="ignore"):
            batched = np.asarray(fn(X))
            rows = [np.asarray(fn(X[i : i + 1]))[0] for i in range(len(X))]
        assert batched.dtype == X.dtype
        for i, row in enumerate(rows):
            assert batched[i].tobytes() == row.tobytes(), f"{problem}/{variant} row {i} in {fmt}"


def test_a_kernel_without_the_batch_axis_is_one_line_and_exit_2(tmp_path, registry_snapshot):
    spec = _plugin(tmp_path, KERNEL.format(body="return (x / x.sum(axis=-1, keepdims=True))[0]"))
    out = tmp_path / "out"
    code, stdout, stderr = run_captured(["run", str(spec), "--out", str(out), "--no-progress"])
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1
    assert "kernel softmax/mine: on a float16 batch of shape (3, 10) it returned shape (10,)" in (
        stderr
    )
    assert not out.exists()


def test_a_kernel_with_the_wrong_row_size_is_refused(tmp_path, registry_snapshot):
    spec = _plugin(tmp_path, KERNEL.format(body="return x[:, :1]"))
    code, _, stderr = run_captured(["run", str(spec), "--out", str(tmp_path / "o")])
    assert code == 2 and "with 10 values per row" in stderr and stderr.count("\n") == 1


def test_a_name_taken_by_a_built_in_is_one_line_and_exit_2(tmp_path, registry_snapshot):
    source = KERNEL.replace('name="mine"', 'name="shifted"').format(body="return x")
    spec = _plugin(tmp_path, source)
    code, _, stderr = run_captured(["run", str(spec), "--out", str(tmp_path / "o")])
    assert code == 2 and stderr.count("\n") == 1
    assert "softmax already has a built-in variant 'shifted'; choose another name" in stderr
    with pytest.raises(reg.RegistrationError, match="already has a built-in variant"):
        pr.kernel("softmax", name="naive")(lambda x: x)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise RuntimeError('broken\\nplugin')", "import failed: RuntimeError: broken plugin"),
        ("import no_such_module_here", "import failed: ModuleNotFoundError: No module named"),
        ("def f(:\n", "import failed: SyntaxError"),
    ],
)
def test_a_plugin_that_cannot_be_imported_is_one_line_and_exit_2(
    tmp_path, registry_snapshot, source, message
):
    spec = _plugin(tmp_path, source)
    code, _, stderr = run_captured(["run", str(spec), "--out", str(tmp_path / "o")])
    assert code == 2 and stderr.count("\n") == 1
    assert "plugins: plugin " in stderr and message in stderr


def test_a_missing_plugin_names_where_it_looked(tmp_path, registry_snapshot):
    spec = _plugin(tmp_path, "")
    spec.write_text(spec.read_text().replace('plugins = ["userplug"]', 'plugins = ["nowhere"]'))
    code, _, stderr = run_captured(["run", str(spec), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "no file nowhere.py beside the spec and no module 'nowhere' on sys.path" in stderr


def test_importing_a_plugin_twice_registers_once(example):
    """A notebook that imported the module and then runs its spec: no collision."""
    sys.path.insert(0, str(example.parent))
    try:
        import my_kernels  # noqa: F401
    finally:
        sys.path.remove(str(example.parent))
    spec = parse_spec({**_raw(example), "plugins": ["my_kernels"]}, source=example)
    assert spec.plugins == (str(example.parent / "my_kernels.py"),)
    assert ("softmax", "fused_exp2") in reg.USER_KERNELS


def test_an_edited_user_reference_changes_the_cache_key(example):
    """The ground-truth cache key includes the user reference's source: no stale truths."""
    pr.run_study(example, quick=True)
    problem = PROBLEMS["sigmoid"]
    x = np.array([0.5, -1.0, 2.0])
    before = cache_key(problem, x, ["float64"], engine="arb")
    from precision.truth.records import outside_reference_fingerprint

    path = example.parent / "my_kernels.py"
    path.write_text(path.read_text() + "\n# edited\n")
    outside_reference_fingerprint.cache_clear()
    assert cache_key(problem, x, ["float64"], engine="arb") != before
    # The package's own problems are fingerprinted with the package, not here.
    assert outside_reference_fingerprint(PROBLEMS["softmax"].reference) == ""


def test_an_edited_plugin_changes_the_spec_fingerprint(example):
    """Parts of a run resume only with the same plugin sources."""
    from precision.store import spec_fingerprint

    first = spec_fingerprint(parse_spec(_raw(example), source=example))
    plugins._LOADED.clear()
    path = example.parent / "my_kernels.py"
    path.write_text(path.read_text() + "\n# edited\n")
    for name in ("my_kernels",):
        sys.modules.pop(name, None)
    reg.USER_KERNELS.clear()  # the edited module registers its kernels again
    reg.USER_PROBLEMS.clear()
    PROBLEMS.pop("sigmoid", None)
    second = spec_fingerprint(parse_spec(_raw(example), source=example))
    assert first != second


def _raw(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def test_a_user_kernel_with_parameters_is_a_family(registry_snapshot):
    """``params=`` makes a family: it runs once per value, the value in its own column, and a
    notebook's ``params`` replaces the default grid."""

    @pr.kernel("fd_exp", name="backward", params={"h": [2.0**-3, 2.0**-9]})
    def backward(x, *, h):
        step = x.dtype.type(h)
        return (np.exp(x) - np.exp(x - step)) / step

    rows = pr.evaluate(backward, [0.5], formats=["float64"])
    assert rows["variant"].tolist() == ["backward", "backward"]
    assert rows["h"].tolist() == [2.0**-3, 2.0**-9]
    # Truncation error (h / 2) |f''| / |f'| = h / 2 dominates at h = 2**-3 in float64.
    assert rows["rel_error"].iloc[0] == pytest.approx(2.0**-4, rel=0.1)
    again = pr.evaluate(backward, [0.5], formats=["float64"], params={"h": [2.0**-5]})
    assert again["h"].tolist() == [2.0**-5]
    assert again["rel_error"].iloc[0] == pytest.approx(2.0**-6, rel=0.1)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [({"momentum": [0.9]}, "parameter 'momentum' is not a column"), ({"h": []}, "finite numbers")],
)
def test_a_user_parameter_must_be_a_column_with_values(registry_snapshot, params, fragment):
    with pytest.raises(reg.RegistrationError, match=fragment):
        pr.kernel("fd_exp", name="mine", params=params)(lambda x, **_: x)


def test_evaluate_refuses_a_parameter_no_chosen_variant_takes():
    with pytest.raises(InputError, match="no chosen variant of softmax takes parameter 'h'"):
        pr.evaluate("softmax", [1.0, 2.0], formats=["float64"], params={"h": [0.1]})


def test_a_problem_whose_truth_depends_on_a_parameter_needs_families_over_it(registry_snapshot):
    """`Problem.reference_params`: a name that is no column, or a variant (built in with the
    problem, or a user kernel added later) that does not take the parameter, is refused with one
    line; a kernel that takes it registers and its members bind it."""
    import dataclasses

    adam = PROBLEMS["adam_update"]
    renamed = dataclasses.replace(adam, name="adam_copy", reference_params=("momentum",))
    with pytest.raises(reg.RegistrationError, match="'momentum' is not a column"):
        reg.register_problem(renamed)
    plain = {"plain": pr.Variant("plain", lambda X: X[..., 0, :], batched=True)}
    with pytest.raises(reg.RegistrationError, match=r"must take the parameters \['eps'\]"):
        reg.register_problem(dataclasses.replace(adam, name="adam_plain", variants=plain))
    with pytest.raises(reg.RegistrationError, match="must take the parameters"):
        pr.kernel("adam_update", name="no_eps")(lambda X: X[..., 0, :])

    @pr.kernel("adam_update", name="with_eps", params={"eps": [1e-3]})
    def with_eps(X, *, eps):
        return X[..., 0, :] / (1.0 + eps)

    member = PROBLEMS["adam_update"].variants["with_eps"].expand()[0]
    assert PROBLEMS["adam_update"].for_variant(member).params == {"eps": 1e-3}
