"""Parameters are data: a variant family declares its parameters and their default grids
where it is built, a study runs their cartesian product, the table carries each value in a
numeric column beside the family's name, and no reader parses a name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from precision.core.schema import COLUMNS, DTYPES, PARAMETERS, VARIANT_KEYS, variant_label
from precision.problems import PROBLEMS
from precision.problems.base import Variant
from precision.run.measure import variant_columns

PACKAGE = Path(__file__).resolve().parents[2] / "precision"

NAME_MARKERS = ("_h2^-", "_lr", "random_order_", "_sr_s")
"""How variant names once spelled their parameters (``forward_h2^-12``, ``gd_lr0.1``,
``random_order_3``, ``recursive_sr_s2``): no name may any more."""

VARIANT_STRING_OPS = re.compile(r"""\[\s*["']variant["']\s*\]\s*\.\s*(str\b|map\(|apply\()""")
"""String operations on the variant column (``table["variant"].str.extract(...)``)."""

NAME_PARSERS = re.compile(r"\b(step_of|method_of|SR_MARK|LEARNING_RATE)\b")
"""The helpers that read parameters back out of names, removed."""

READERS = (
    "report",
    "problems/derivatives.py",
    "problems/hessian.py",
    "problems/emulated.py",
    "problems/optimisers.py",
    "problems/quadratic.py",
    "problems/summation.py",
)
"""Modules that group or plot by parameters: none compiles a regular expression."""


def _sources(*parts: str) -> list[Path]:
    paths = [PACKAGE / part for part in parts] if parts else [PACKAGE]
    missing = [str(p) for p in paths if not p.exists()]
    assert not missing, f"no such module or package: {missing}"  # a moved module is not a pass
    return sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")))


def test_parameters_are_float_columns_after_the_variant():
    names = list(COLUMNS)
    at = names.index("variant")
    assert names[at + 1 : at + 1 + len(PARAMETERS)] == list(PARAMETERS)
    assert VARIANT_KEYS == ("variant", *PARAMETERS)
    assert {"h", "lr", "seed"} <= set(PARAMETERS)
    assert all(DTYPES[p] == "float64" for p in PARAMETERS)
    assert "family" not in COLUMNS


def test_no_module_parses_parameters_out_of_variant_names():
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if VARIANT_STRING_OPS.search(line) or NAME_PARSERS.search(line)
    ]
    assert not found, "\n".join(found)


def test_readers_compile_no_regular_expressions():
    found = [
        str(p.relative_to(PACKAGE)) for p in _sources(*READERS) if "re.compile" in p.read_text()
    ]
    assert not found


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_no_variant_name_spells_a_parameter(problem):
    """A parameter is a column, never a suffix in a name: every registered name is free of
    the old spellings, and a family declares known parameters with at least one value."""
    for name, variant in PROBLEMS[problem].variants.items():
        assert not any(marker in name for marker in NAME_MARKERS), f"{problem}/{name}"
        assert set(variant.grid) <= set(PARAMETERS), name
        assert all(len(values) >= 1 for values in variant.grid.values()), name
        assert not variant.params, f"{problem}/{name}: a registered variant binds no values"


@pytest.mark.parametrize(
    ("problem", "name", "params", "members"),
    [
        ("fd_exp", "forward", {"h": 2.0**-12}, 40),
        ("fd_hessian", "jacobian_central", {"h": 2.0**-7}, 30),
        ("quadratic", "gd", {"lr": 0.1}, 4),
        ("quadratic", "gd_master32", {"lr": 0.1}, 1),
        ("summation", "random_order", {"seed": 3.0}, 4),
        ("summation", "recursive_sr", {"seed": 2.0}, 5),
        ("weight_update", "recursive_sr", {"seed": 4.0}, 5),
        ("summation", "kahan", {}, 1),
    ],
)
def test_variant_columns_hold_the_family_and_its_values(problem, name, params, members):
    family = PROBLEMS[problem].variants[name]
    expanded = family.expand()
    assert len(expanded) == members
    member = next(m for m in expanded if m.params == params)
    row = variant_columns(member)
    assert row["variant"] == name
    assert {k: v for k, v in row.items() if k in PARAMETERS and v is not None} == params


def test_an_undeclared_parameter_column_is_an_error():
    variant = Variant("mine", np.negative, params={"block_size": 32})
    with pytest.raises(ValueError, match="block_size"):
        variant_columns(variant)


def test_grid_and_params_are_copied():
    params, grid = {"seed": 1}, {"seed": [1, 2]}
    bound = Variant("mine", np.negative, params=params)
    family = Variant("mine", lambda x, *, seed: x, grid=grid)
    params["seed"], grid["seed"] = 2, [5]
    assert bound.params == {"seed": 1.0} and family.grid == {"seed": (1.0, 2.0)}


def test_a_family_expands_to_the_cartesian_product_first_parameter_slowest():
    family = Variant("f", lambda x, *, h, lr: x * h + lr, grid={"h": [1, 2], "lr": [10, 20, 30]})
    points = [m.params for m in family.expand()]
    assert points == [{"h": h, "lr": lr} for h in (1.0, 2.0) for lr in (10.0, 20.0, 30.0)]
    assert [m.params for m in family.expand({"lr": [5]})] == [
        {"h": 1.0, "lr": 5.0},
        {"h": 2.0, "lr": 5.0},
    ]
    member = family.with_params(h=2, lr=30)
    assert member.kernel(np.array([1.0])).tolist() == [32.0]
    assert member.name == "f" and not member.is_family and family.is_family


def test_with_params_names_exactly_the_family_parameters():
    family = Variant("f", lambda x, *, h: x, grid={"h": [1]})
    with pytest.raises(ValueError, match="takes parameters"):
        family.with_params(lr=1)


def test_a_family_bound_takes_the_parameters():
    family = Variant(
        "f",
        lambda x, *, h: x,
        lambda x, fmt, *, h: np.full(len(x), h),
        grid={"h": [0.5]},
        batched=True,
    )
    member = family.expand()[0]
    assert member.bound(np.zeros((3, 2)), None).tolist() == [0.5] * 3


def test_a_family_cannot_run_unbound():
    from precision.core.formats import get_format
    from precision.run.measure import measure_variant

    problem = PROBLEMS["fd_exp"]
    with pytest.raises(ValueError, match="takes parameters"):
        measure_variant(problem, "forward", np.array([1.0]), get_format("float64"), None)


def test_random_orders_are_pooled_and_other_members_labelled():
    from precision.report.plots.common import _pooled

    table = pd.DataFrame(
        {
            "variant": ["random_order", "kahan", "gd", "forward"],
            "h": [np.nan, np.nan, np.nan, 2.0**-12],
            "lr": [np.nan, np.nan, 0.1, np.nan],
            "seed": [3.0, np.nan, np.nan, np.nan],
        }
    )
    assert _pooled(table)["variant"].tolist() == [
        "random orders",
        "kahan",
        "gd lr=0.1",
        "forward h=2^-12",
    ]


def test_labels_show_parameters_as_people_write_them():
    assert variant_label("forward", {"h": 2.0**-12, "lr": np.nan}) == "forward h=2^-12"
    assert variant_label("gd", {"lr": 1.9}) == "gd lr=1.9"
    assert variant_label("random_order", {"seed": 3.0}) == "random_order seed=3"
    assert variant_label("naive", {}) == "naive"
