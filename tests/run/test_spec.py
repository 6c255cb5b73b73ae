"""Tests of precision.run.spec: valid specs parse, the shipped study loads, bad specs fail clearly.

Every bad spec must raise `SpecError` with a one-line message that names the file and the
offending key, so that the CLI can print it as is and exit 2. The bad-spec table writes each
case to a real TOML file and loads it with `load_spec`, the path the CLI takes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from precision.core.formats import FORMATS
from precision.problems import DEFAULT_VARIANTS, PROBLEMS
from precision.run.spec import Dataset, Grid, SpecError, StudySpec, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
SOFTMAX_TOML = ROOT / "studies" / "softmax.toml"

MINIMAL = {
    "name": "tiny",
    "formats": ["float16", "float64"],
    "problems": ["softmax", "logsumexp"],
    "grid": {
        "log10_cond": [0, 2],
        "log10_magnitude": [0, 2],
        "sizes": [10],
        "samples_per_cell": 1,
    },
}


def to_toml(table: dict) -> str:
    """A TOML document for a dict of str / int / float / bool / list / dict (inline tables)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(v)

    return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in table.items())


def assert_one_line(exc: SpecError, *fragments: str) -> str:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ------------------------------------------------------------------ valid specs


def test_minimal_spec_parses():
    spec = parse_spec(copy.deepcopy(MINIMAL))
    assert isinstance(spec, StudySpec)
    assert spec.name == "tiny"
    assert spec.description == ""
    assert spec.seed == 0
    assert spec.formats == ("float16", "float64")
    assert spec.problems == ("softmax", "logsumexp")
    assert spec.variants == {}
    assert spec.grid == Grid(
        log10_cond=(0, 2), log10_magnitude=(0, 2), sizes=(10,), samples_per_cell=1
    )
    assert spec.grid.cells() == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert spec.grid.samples_for("softmax") == 1
    assert spec.datasets == ()
    assert spec.source is None
    # No variants table: each problem's own variants run, in registry order (emulated and
    # library variants only when named).
    assert spec.variants_of("softmax") == DEFAULT_VARIANTS["softmax"]


def test_minimal_spec_with_options_parses():
    raw = copy.deepcopy(MINIMAL)
    raw |= {"seed": 7, "description": "demo", "variants": {"softmax": ["shifted"]}}
    raw["grid"]["problem_samples"] = {"logsumexp": 3}
    spec = parse_spec(raw)
    assert spec.seed == 7 and spec.description == "demo"
    assert spec.variants_of("softmax") == ("shifted",)
    assert spec.variants_of("logsumexp") == DEFAULT_VARIANTS["logsumexp"]
    assert spec.grid.samples_for("logsumexp") == 3
    assert spec.grid.samples_for("softmax") == 1


def test_quick_without_quick_table_is_an_error():
    """--quick on a spec with no [quick] table would silently run the full study."""
    with pytest.raises(SpecError, match=r"^<spec>: quick: --quick needs a \[quick\] table"):
        parse_spec(copy.deepcopy(MINIMAL), quick=True)


def test_softmax_study_loads():
    """The shipped study parses to exactly what its file says (values read back from the TOML,
    so that tuning the study does not break this test)."""
    raw = tomllib.loads(SOFTMAX_TOML.read_text())
    spec = load_spec(SOFTMAX_TOML)
    assert spec.name == raw["name"] == "softmax"
    assert spec.source == SOFTMAX_TOML
    assert spec.description == raw["description"]
    assert spec.seed == raw["seed"]
    assert spec.formats == tuple(raw["formats"])
    assert set(spec.formats) <= set(FORMATS)
    assert spec.problems == tuple(raw["problems"])
    # the softmax study covers the whole softmax family (other studies cover the rest)
    assert set(spec.problems) == {"exp", "softmax", "logsumexp", "log_softmax", "cross_entropy"}
    assert set(spec.problems) <= set(PROBLEMS)
    grid = raw["grid"]
    assert spec.grid.log10_cond == tuple(grid["log10_cond"])
    assert spec.grid.log10_magnitude == tuple(grid["log10_magnitude"])
    assert spec.grid.sizes == tuple(grid["sizes"])
    assert spec.grid.samples_per_cell == grid["samples_per_cell"]
    for problem in spec.problems:
        expected = grid.get("problem_samples", {}).get(problem, grid["samples_per_cell"])
        assert spec.grid.samples_for(problem) == expected
    # Data-set paths are relative to the spec file, resolved to an existing 2-D .npy.
    assert [d.name for d in spec.datasets] == list(raw["datasets"]) == ["mnist"]
    for dataset in spec.datasets:
        entry = raw["datasets"][dataset.name]
        assert dataset.rows == entry["rows"]
        assert dataset.path == (SOFTMAX_TOML.parent / entry["path"]).resolve()
        assert np.load(dataset.path, mmap_mode="r").ndim == 2
    assert spec.raw == raw  # provenance keeps the file as written, [quick] included


def test_softmax_study_quick_changes_only_sizes_and_samples():
    raw = tomllib.loads(SOFTMAX_TOML.read_text())
    full = load_spec(SOFTMAX_TOML)
    quick = load_spec(SOFTMAX_TOML, quick=True)
    assert set(raw["quick"]) <= {"grid", "datasets"}
    assert set(raw["quick"]["grid"]) <= {"sizes", "samples_per_cell", "problem_samples"}
    assert quick.grid.sizes == tuple(raw["quick"]["grid"]["sizes"])
    assert quick.grid.samples_per_cell == raw["quick"]["grid"]["samples_per_cell"]
    # A quick run is smaller: fewer sizes, fewer samples, fewer data-set rows.
    assert set(quick.grid.sizes) <= set(full.grid.sizes)
    for problem in full.problems:
        assert quick.grid.samples_for(problem) <= full.grid.samples_for(problem)
    for small, big in zip(quick.datasets, full.datasets, strict=True):
        assert small.rows <= big.rows
    # The cells, formats, problems, seed, variants and data-set files are the same.
    assert quick.grid.cells() == full.grid.cells()
    assert [d.path for d in quick.datasets] == [d.path for d in full.datasets]
    assert dataclasses.replace(full, grid=quick.grid, datasets=quick.datasets) == quick
    assert "quick" not in quick.raw  # the merged spec, as it ran


# ------------------------------------------------------------------ bad specs


def _set(path: str, value):
    """A mutation setting a dotted key (``grid.sizes``) of the raw spec."""

    def mutate(raw: dict) -> None:
        *parents, last = path.split(".")
        table = raw
        for part in parents:
            table = table.setdefault(part, {})
        table[last] = value

    return mutate


def _drop(path: str):
    def mutate(raw: dict) -> None:
        *parents, last = path.split(".")
        table = raw
        for part in parents:
            table = table[part]
        del table[last]

    return mutate


def _dataset(**entry):
    return _set("datasets", {"logits": {"path": "logits.npy", "rows": 5} | entry})


# (id, mutation of MINIMAL, key the message must name, further fragments it must contain)
BAD_SPECS = [
    ("unknown-top-key", _set("seeds", 1), "seeds", ["unknown key", "did you mean 'seed'"]),
    ("unknown-top-key-2", _set("problem", ["softmax"]), "problem", ["did you mean 'problems'"]),
    ("name-missing", _drop("name"), "name", ["non-empty string"]),
    ("name-empty", _set("name", ""), "name", ["non-empty string"]),
    ("name-space", _set("name", "my study"), "name", ["letters, digits"]),
    ("name-path", _set("name", "../escape"), "name", ["letters, digits"]),
    ("name-not-string", _set("name", 3), "name", []),
    ("description-not-string", _set("description", 5), "description", ["string"]),
    ("seed-float", _set("seed", 1.5), "seed", ["non-negative integer", "1.5"]),
    ("seed-negative", _set("seed", -1), "seed", ["non-negative integer", "-1"]),
    ("seed-bool", _set("seed", True), "seed", ["non-negative integer", "True"]),
    ("seed-string", _set("seed", "1"), "seed", ["non-negative integer"]),
    ("problem-unknown", _set("problems", ["softmx"]), "problems", ["did you mean 'softmax'"]),
    ("problem-empty", _set("problems", []), "problems", ["non-empty list"]),
    ("problem-duplicate", _set("problems", ["softmax", "softmax"]), "problems", ["twice"]),
    ("problem-not-string", _set("problems", [1]), "problems", ["strings"]),
    ("format-unknown", _set("formats", ["bfloat"]), "formats", ["did you mean 'bfloat16'"]),
    ("format-typo", _set("formats", ["float61"]), "formats", ["'float61'", "did you mean"]),
    ("format-duplicate", _set("formats", ["float16", "float16"]), "formats", ["twice"]),
    ("format-not-list", _set("formats", "float16"), "formats", ["list"]),
    (
        "variant-unknown",
        _set("variants", {"softmax": ["shiftd"]}),
        "variants.softmax",
        ["'shiftd'", "did you mean 'shifted'"],
    ),
    (
        "variant-duplicate",
        _set("variants", {"softmax": ["naive", "naive"]}),
        "variants.softmax",
        ["twice"],
    ),
    (
        "variants-of-absent-problem",
        _set("variants", {"exp": ["naive"]}),
        "variants.exp",
        ["not one of the study's problems"],
    ),
    ("variants-not-table", _set("variants", ["naive"]), "variants", ["table"]),
    ("grid-missing", _drop("grid"), "grid", ["table"]),
    ("grid-unknown-key", _set("grid.size", [10]), "grid.size", ["did you mean 'sizes'"]),
    ("cond-empty", _set("grid.log10_cond", [2, 2]), "grid.log10_cond", ["empty or inverted"]),
    ("cond-inverted", _set("grid.log10_cond", [3, 1]), "grid.log10_cond", ["inverted"]),
    ("cond-float", _set("grid.log10_cond", [0.5, 2]), "grid.log10_cond", ["two integers"]),
    ("cond-three", _set("grid.log10_cond", [0, 1, 2]), "grid.log10_cond", ["two integers"]),
    ("cond-missing", _drop("grid.log10_cond"), "grid.log10_cond", ["two integers"]),
    ("mag-empty", _set("grid.log10_magnitude", [1, 1]), "grid.log10_magnitude", ["empty"]),
    ("mag-bool", _set("grid.log10_magnitude", [False, True]), "grid.log10_magnitude", []),
    ("mag-string", _set("grid.log10_magnitude", ["0", "2"]), "grid.log10_magnitude", []),
    ("sizes-empty", _set("grid.sizes", []), "grid.sizes", ["positive integers"]),
    ("sizes-zero", _set("grid.sizes", [0]), "grid.sizes", ["positive integers"]),
    ("sizes-negative", _set("grid.sizes", [10, -10]), "grid.sizes", ["positive integers"]),
    ("sizes-not-list", _set("grid.sizes", 10), "grid.sizes", ["list"]),
    ("sizes-float", _set("grid.sizes", [10.0]), "grid.sizes", ["positive integers"]),
    ("sizes-huge", _set("grid.sizes", [10**8]), "grid.sizes", ["above 1,000,000"]),
    ("cond-beyond", _set("grid.log10_cond", [0, 400]), "grid.log10_cond", ["[-100, 100]"]),
    ("mag-beyond", _set("grid.log10_magnitude", [-101, 0]), "grid.log10_magnitude", ["within"]),
    ("dataset-path-nul", _dataset(path="a\u0000b.npy"), "datasets.logits.path", ["no .npy"]),
    ("samples-zero", _set("grid.samples_per_cell", 0), "grid.samples_per_cell", ["positive"]),
    ("samples-missing", _drop("grid.samples_per_cell"), "grid.samples_per_cell", ["positive"]),
    (
        "problem-samples-absent-problem",
        _set("grid.problem_samples", {"exp": 20}),
        "grid.problem_samples.exp",
        ["not one of the study's problems"],
    ),
    (
        "problem-samples-zero",
        _set("grid.problem_samples", {"softmax": 0}),
        "grid.problem_samples.softmax",
        ["positive integer"],
    ),
    ("dataset-missing-file", _dataset(path="nowhere.npy"), "datasets.logits.path", ["no .npy"]),
    ("dataset-not-npy", _dataset(path="logits.csv"), "datasets.logits.path", ["no .npy"]),
    ("dataset-path-not-string", _dataset(path=3), "datasets.logits.path", ["string"]),
    ("dataset-rows-zero", _dataset(rows=0), "datasets.logits.rows", ["positive integer"]),
    ("dataset-rows-missing", _set("datasets", {"logits": {"path": "logits.npy"}}), "rows", []),
    ("dataset-unknown-key", _dataset(row=5), "datasets.logits.row", ["did you mean 'rows'"]),
    ("dataset-one-dimensional", _dataset(path="vector.npy"), "datasets.logits.path", ["2-D"]),
    (
        "dataset-nan-rows",  # refused when the spec is read, not when the run starts
        _dataset(path="holes.npy", rows=20),
        "datasets.logits.path",
        ["2 of the 20 rows drawn from holes.npy hold NaN or inf"],
    ),
    ("dataset-not-a-table", _set("datasets", {"logits": "logits.npy"}), "datasets.logits", []),
    (
        "dataset-named-synthetic",
        _set("datasets", {"synthetic": {"path": "logits.npy", "rows": 5}}),
        "datasets.synthetic",
        ["synthetic"],
    ),
    (
        "dataset-name-characters",
        _set("datasets", {"my logits": {"path": "logits.npy", "rows": 5}}),
        "datasets.my logits",
        ["letters, digits"],
    ),
    (
        "quick-formats",
        _set("quick", {"formats": ["float32"]}),
        "quick.formats",
        ["only grid and datasets"],
    ),
    ("quick-seed", _set("quick", {"seed": 2}), "quick.seed", ["only grid and datasets"]),
    ("quick-not-table", _set("quick", 1), "quick", ["table"]),
    ("quick-grid-typo", _set("quick", {"grid": {"size": [2]}}), "quick.grid.size", ["sizes"]),
    ("quick-grid-bad-value", _set("quick", {"grid": {"sizes": []}}), "quick.grid.sizes", []),
    (
        "quick-undeclared-dataset",
        _set("quick", {"datasets": {"mnist": {"rows": 2}}}),
        "quick.datasets.mnist",
        ["undeclared"],
    ),
]


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    """A folder with the data files the bad-spec cases point at."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "logits.npy", rng.standard_normal((20, 4)))
    np.save(tmp_path / "vector.npy", rng.standard_normal(20))
    holes = rng.standard_normal((20, 4))
    holes[3, 1], holes[11, 0] = np.nan, -np.inf
    np.save(tmp_path / "holes.npy", holes)
    (tmp_path / "logits.csv").write_text("1,2,3\n")
    return tmp_path


def test_bad_spec_table_is_large():
    assert len(BAD_SPECS) >= 20
    assert len({case[0] for case in BAD_SPECS}) == len(BAD_SPECS)


@pytest.mark.parametrize(
    ("mutate", "key", "fragments"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_file(spec_dir: Path, mutate, key: str, fragments: list[str]):
    raw = copy.deepcopy(MINIMAL)
    mutate(raw)
    path = spec_dir / "bad.toml"
    path.write_text(to_toml(raw))
    with pytest.raises(SpecError) as info:
        load_spec(path, quick=True)
    assert_one_line(info.value, f"{path}: ", f"{key}: ", *fragments)
    assert str(info.value).startswith(f"{path}: ")


# Dictionary cases need no data files (data-set paths resolve against the working folder).
DICT_CASES = [case for case in BAD_SPECS if not case[0].startswith("dataset")]


@pytest.mark.parametrize(
    ("mutate", "key", "fragments"), [c[1:] for c in DICT_CASES], ids=[c[0] for c in DICT_CASES]
)
def test_bad_spec_dict(mutate, key: str, fragments: list[str]):
    """Without a file, messages name ``<spec>`` in its place."""
    raw = copy.deepcopy(MINIMAL)
    mutate(raw)
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert_one_line(info.value, "<spec>: ", f"{key}: ", *fragments)


def test_bad_quick_table_fails_without_quick(tmp_path: Path):
    """A broken [quick] is reported whether or not the run asks for it."""
    path = tmp_path / "study.toml"
    path.write_text(to_toml(MINIMAL | {"quick": {"grid": {"samples_per_cell": 0}}}))
    for quick in (False, True):
        with pytest.raises(SpecError) as info:
            load_spec(path, quick=quick)
        assert_one_line(info.value, str(path), "quick.grid.samples_per_cell", "positive")


def test_quick_overrides_a_dataset(spec_dir: Path):
    raw = MINIMAL | {
        "datasets": {"logits": {"path": "logits.npy", "rows": 10}},
        "quick": {"datasets": {"logits": {"rows": 2}}, "grid": {"sizes": [3]}},
    }
    path = spec_dir / "study.toml"
    path.write_text(to_toml(raw))
    full, quick = load_spec(path), load_spec(path, quick=True)
    assert full.datasets == (Dataset("logits", (spec_dir / "logits.npy").resolve(), 10),)
    assert quick.datasets == (Dataset("logits", (spec_dir / "logits.npy").resolve(), 2),)
    assert (full.grid.sizes, quick.grid.sizes) == ((10,), (3,))


def test_key_with_newline_stays_one_line(tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_text(to_toml(MINIMAL | {"se\ned": 1}))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_one_line(info.value, str(path), "unknown key")


def test_missing_file():
    path = Path("/nonexistent/study.toml")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_one_line(info.value, str(path), "no such study file")


@pytest.mark.parametrize(
    "content",
    [
        b"name = \n",  # a value is missing
        b"this is not toml\n",
        b'name = "a"\nname = "b"\n',  # a key twice
        b"[grid]\n[grid]\n",  # a table twice
        b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe",  # binary, not UTF-8
    ],
    ids=["missing-value", "prose", "duplicate-key", "duplicate-table", "binary"],
)
def test_not_toml(tmp_path: Path, content: bytes):
    path = tmp_path / "study.toml"
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_one_line(info.value, f"{path}: ")
    assert "TOML" in str(info.value) or "cannot read" in str(info.value)


def test_folder_instead_of_file(tmp_path: Path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert_one_line(info.value, f"{tmp_path}: ")


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


@pytest.mark.parametrize("value", [0, -3, 1.5, "many", True, 2**40])
def test_bad_chunk_elements_is_one_line(value):
    grid = {"log10_cond": [0, 1], "log10_magnitude": [0, 1], "sizes": [4], "samples_per_cell": 1}
    raw = {"name": "x", "formats": ["float64"], "problems": ["softmax"], "grid": grid}
    with pytest.raises(SpecError, match=r"^<spec>: chunk_elements: [^\n]+$"):
        parse_spec(raw | {"chunk_elements": value})


# ------------------------------------------------------------------ parameter grids

STEPS = {
    **MINIMAL,
    "problems": ["fd_exp", "quadratic"],
    "variants": {"quadratic": ["newton", "gd", "gd_kahan"]},
}


def test_parameter_grids_are_data_per_problem_and_per_variant():
    raw = STEPS | {
        "params": {
            "fd_exp": {"h": [2.0**-10, 2.0**-20]},
            "quadratic": {"lr": [0.1], "gd": {"lr": [0.1, 1.9]}},
        }
    }
    spec = parse_spec(raw)
    assert spec.params == {
        "fd_exp": {"forward": {"h": (2.0**-10, 2.0**-20)}, "central": {"h": (2.0**-10, 2.0**-20)}},
        "quadratic": {"gd": {"lr": (0.1, 1.9)}, "gd_kahan": {"lr": (0.1,)}},
    }
    runs = [(v.name, v.params) for v in spec.runs_of("quadratic")]
    assert runs == [
        ("newton", {}),
        ("gd", {"lr": 0.1}),
        ("gd", {"lr": 1.9}),
        ("gd_kahan", {"lr": 0.1}),
    ]
    assert [v.params["h"] for v in spec.runs_of("fd_exp")] == [2.0**-10, 2.0**-20] * 2


def test_without_params_families_run_their_default_grids():
    spec = parse_spec(STEPS)
    assert len(spec.runs_of("fd_exp")) == 2 * len(PROBLEMS["fd_exp"].variants["forward"].grid["h"])
    gd = [v.params for v in spec.runs_of("quadratic") if v.name == "gd"]
    assert gd == [{"lr": lr} for lr in PROBLEMS["quadratic"].variants["gd"].grid["lr"]]


BAD_PARAMS = [
    ("not-a-table", 3, "params", ["must be a table"]),
    ("unknown-problem", {"softmax": {"h": [1.0]}}, "params.softmax", ["not one of the study's"]),
    ("no-taker", {"fd_exp": {"lr": [0.1]}}, "params.fd_exp.lr", ["no variant", "known: h"]),
    (
        "variant-not-run",
        {"quadratic": {"gd_master32": {"lr": [1]}}},
        "params.quadratic.gd_master32",
        ["not a variant of the study"],
    ),
    (
        "wrong-parameter",
        {"quadratic": {"gd": {"h": [1]}}},
        "params.quadratic.gd.h",
        ["gd takes lr"],
    ),
    ("empty", {"fd_exp": {"h": []}}, "params.fd_exp.h", ["non-empty list"]),
    ("not-a-list", {"fd_exp": {"h": 0.5}}, "params.fd_exp.h", ["non-empty list"]),
    ("text", {"fd_exp": {"h": ["2^-10"]}}, "params.fd_exp.h", ["finite numbers"]),
    ("nan", {"fd_exp": {"h": [float("nan")]}}, "params.fd_exp.h", ["finite numbers"]),
    ("twice", {"fd_exp": {"h": [0.5, 0.5]}}, "params.fd_exp.h", ["twice"]),
    ("bool", {"fd_exp": {"h": [True]}}, "params.fd_exp.h", ["finite numbers"]),
]


@pytest.mark.parametrize(
    ("value", "key", "fragments"), [c[1:] for c in BAD_PARAMS], ids=[c[0] for c in BAD_PARAMS]
)
def test_bad_parameter_grid_is_one_line(value, key, fragments):
    with pytest.raises(SpecError) as info:
        parse_spec(STEPS | {"params": value})
    assert_one_line(info.value, "<spec>: ", f"{key}: ", *fragments)


def test_a_seed_grid_takes_non_negative_integers():
    raw = {**MINIMAL, "problems": ["summation"], "variants": {"summation": ["random_order"]}}
    assert parse_spec(raw | {"params": {"summation": {"seed": [0, 7]}}}).params
    for bad in ([1.5], [-1]):
        with pytest.raises(SpecError, match="seeds are non-negative integers"):
            parse_spec(raw | {"params": {"summation": {"seed": bad}}})
