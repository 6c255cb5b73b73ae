"""Parameters are data: each variant declares its family and parameters where it is built,
the table carries them as columns, and no reader parses them back out of a variant's name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from precision.measure import variant_columns
from precision.problems import PROBLEMS
from precision.problems.base import Variant
from precision.schema import COLUMNS, DTYPES, PARAMETERS

PACKAGE = Path(__file__).resolve().parents[1] / "precision"

NAME_MARKERS = ("_h2^-", "_lr", "random_order_", "_sr_s")
"""How variant ids spell their parameters today (``forward_h2^-12``, ``gd_lr0.1``,
``random_order_3``, ``recursive_sr_s2``): the variants that must declare them."""

VARIANT_STRING_OPS = re.compile(r"""\[\s*["']variant["']\s*\]\s*\.\s*(str\b|map\(|apply\()""")
"""String operations on the variant column (``table["variant"].str.extract(...)``)."""

NAME_PARSERS = re.compile(r"\b(step_of|method_of|SR_MARK|LEARNING_RATE)\b")
"""The helpers that read parameters back out of names, removed."""

READERS = (
    "plots.py",
    "summary.py",
    "report.py",
    "claims",
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
    return sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")))


def test_parameters_are_float_columns_after_the_family():
    names = list(COLUMNS)
    at = names.index("variant")
    assert names[at + 1 : at + 2 + len(PARAMETERS)] == ["family", *PARAMETERS]
    assert {"h", "lr", "seed"} <= set(PARAMETERS)
    assert all(DTYPES[p] == "float64" for p in PARAMETERS)
    assert DTYPES["family"] == "string"


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
def test_every_variant_declares_the_parameters_its_name_spells(problem):
    """A variant with parameters has a family of its own; one without has its name as family;
    every name that spells a parameter belongs to a variant that declares one."""
    for name, variant in PROBLEMS[problem].variants.items():
        assert set(variant.params) <= set(PARAMETERS), name
        assert (variant.family == name) == (not variant.params), name
        if any(marker in name for marker in NAME_MARKERS):
            assert variant.params, f"{problem}/{name} spells a parameter it does not declare"


@pytest.mark.parametrize(
    ("problem", "name", "family", "params"),
    [
        ("fd_exp", "forward_h2^-12", "forward", {"h": 2.0**-12}),
        ("fd_hessian", "jacobian_central_h2^-7", "jacobian_central", {"h": 2.0**-7}),
        ("quadratic", "gd_lr0.1", "gd", {"lr": 0.1}),
        ("quadratic", "gd_master32_lr0.1", "gd_master32", {"lr": 0.1}),
        ("summation", "random_order_3", "random_order", {"seed": 3.0}),
        ("summation", "recursive_sr_s2", "recursive_sr", {"seed": 2.0}),
        ("weight_update", "recursive_sr_s4", "recursive_sr", {"seed": 4.0}),
        ("summation", "kahan", "kahan", {}),
    ],
)
def test_variant_columns_hold_the_declaration(problem, name, family, params):
    row = variant_columns(PROBLEMS[problem].variants[name], name)
    assert row["variant"] == name and row["family"] == family
    assert {k: v for k, v in row.items() if k in PARAMETERS and v is not None} == params


def test_an_undeclared_parameter_column_is_an_error():
    variant = Variant("mine", np.negative, params={"block_size": 32})
    with pytest.raises(ValueError, match="block_size"):
        variant_columns(variant, "mine")


def test_the_family_defaults_to_the_name_and_params_are_copied():
    params = {"seed": 1}
    variant = Variant("mine", np.negative, family="", params=params)
    params["seed"] = 2
    assert variant.family == "mine" and variant.params == {"seed": 1.0}


def test_random_orders_are_pooled_by_family():
    from precision.plots import _pooled

    table = pd.DataFrame(
        {
            "variant": ["random_order_0", "kahan", "my_random_order_7"],
            "family": pd.array(["random_order", "kahan", "my_random_order_7"], dtype="string"),
        }
    )
    assert _pooled(table)["variant"].tolist() == ["random orders", "kahan", "my_random_order_7"]
