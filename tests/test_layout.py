"""The package is laid out by pipeline stage, and a stage imports only the stages below it.

core < store < problems < truth < run < report < the public face (``precision/__init__.py``,
the ``cli`` package, ``__main__.py``). The store writes and reads files and knows nothing of the
problems; ground truth evaluates problems; the runner uses all of them; reporting only reads.
Checked on the source (every ``import``, at module level or inside a function), so a lazy
import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "precision"

STAGES = ("core", "store", "problems", "truth", "run", "report")
"""The floors, lowest first."""

TOP = len(STAGES)
"""The floor of the package's own top-level modules (the public face and the command)."""


def _floor(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "precision":
        return TOP
    return STAGES.index(parts[1]) if parts[1] in STAGES else TOP


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "precision":
                found += [(node.lineno, f"precision.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}:{node.lineno}: relative import; name the stage")
    return [(line, name) for line, name in found if name.split(".")[0] == "precision"]


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_stage_or_on_top():
    loose = [p.name for p in PACKAGE.glob("*.py")]
    assert sorted(loose) == ["__init__.py", "__main__.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == (
        sorted([*STAGES, "cli"])
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_stage_above_its_own(path):
    here = _floor(_module_of(path))
    upward = [
        f"{path.relative_to(PACKAGE)}:{line} imports {name}"
        for line, name in _imported(path)
        if _floor(name) > here
    ]
    assert not upward, "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule is not vacuous: a lazy import of the runner inside a store function is seen."""
    source = tmp_path / "late.py"
    source.write_text("def f():\n    from precision.run.spec import StudySpec\n")
    assert _imported(source) == [(2, "precision.run.spec")]
    assert _floor("precision.run.spec") > _floor("precision.store.cache")
    assert _floor("precision.cli") > _floor("precision.report.plots")
