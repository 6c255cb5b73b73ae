"""A variant that raises is a measurement, not a crash (outcome ``error``).

A test kernel that raises is put beside the softmax family's own variants; the study completes,
its rows say ``error`` with the exception's type and message, the summaries count them, the
final line of ``precision run`` names the variant, ``--debug`` shows the traceback, and
``precision eval`` prints the exception. The project's own kernels never produce ``error``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from members import members

from precision.cli import run_captured
from precision.core.formats import FORMATS, cast
from precision.problems import PROBLEMS
from precision.problems.base import Variant
from precision.problems.logsumexp import logsumexp_shifted
from precision.report import summary
from precision.run.measure import run_variant_detailed
from precision.run.spec import parse_spec
from precision.run.study import run

ALL_FORMATS = list(FORMATS)  # every registered format, the 8-bit ones included


class KernelBug(Exception):
    """What the test kernel raises (a type no library uses)."""


def raising_kernel(x: np.ndarray) -> np.ndarray:
    """Raises for bfloat16 input only, as a library refusing one dtype would."""
    if x.dtype.name == "bfloat16":
        raise KernelBug(f"no kernel for {x.dtype.name}\nsecond line")
    return logsumexp_shifted(x)


@pytest.fixture
def with_raising_variant(monkeypatch):
    """logsumexp gains a variant ``raises`` (only for this test)."""
    variants = PROBLEMS["logsumexp"].variants
    monkeypatch.setitem(variants, "raises", Variant("raises", raising_kernel))
    return "raises"


TINY = {
    "name": "tiny_raise",
    "seed": 5,
    "formats": ["bfloat16", "float32"],
    "problems": ["logsumexp"],
    "variants": {"logsumexp": ["naive", "raises"]},
    "grid": {
        "log10_cond": [0, 1],
        "log10_magnitude": [0, 1],
        "sizes": [10],
        "samples_per_cell": 2,
    },
}


def test_a_raising_variant_gives_error_rows_and_the_study_completes(with_raising_variant):
    table = run(parse_spec(TINY))
    mine = table[table["variant"] == "raises"]
    bf16, f32 = mine[mine["format"] == "bfloat16"], mine[mine["format"] == "float32"]
    assert len(bf16) == 2 and len(f32) == 2  # 1 cell x 2 samples, nothing skipped
    assert (bf16["outcome"] == "error").all()
    assert (bf16["exception"] == "KernelBug: no kernel for bfloat16 second line").all()
    assert (bf16["compute_dtype"] == "").all() and bf16["rel_error"].isna().all()
    assert bf16["ulps"].isna().all() and bf16["bound"].isna().all()
    # The same variant in float32 and the other variants in bfloat16 are measured as usual.
    assert (f32["outcome"] == "ok").all() and f32["exception"].isna().all()
    naive = table[(table["variant"] == "naive") & (table["format"] == "bfloat16")]
    assert (naive["outcome"] == "ok").all() and naive["exception"].isna().all()
    assert table.attrs["first_traceback"].startswith("Traceback")
    assert "KernelBug" in table.attrs["first_traceback"]

    counts = summary.overview(table).set_index(["variant", "format"])["errors"]
    assert counts.to_dict() == {
        ("naive", "bfloat16"): 0,
        ("naive", "float32"): 0,
        ("raises", "bfloat16"): 2,
        ("raises", "float32"): 0,
    }
    raised = summary.raised(table)
    assert raised[["variant", "format", "rows"]].values.tolist() == [["raises", "bfloat16", 2]]
    text = summary.markdown(table, title="tiny_raise")
    assert "## Variants that raised" in text and "KernelBug: no kernel for bfloat16" in text


def test_the_command_names_the_variants_that_raised(with_raising_variant, tmp_path: Path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(_toml(TINY))
    out = tmp_path / "out"
    args = ["run", str(spec), "--out", str(out), "--executor", "serial", "--no-plots"]
    code, stdout, stderr = run_captured([*args, "--no-progress"])
    assert code == 0, stderr
    final = stdout.strip().splitlines()[-1]
    assert "variants that raised: logsumexp/raises in bfloat16 (2 rows, KernelBug)" in final
    assert "Traceback" not in stderr
    stored = pd.read_parquet(out / "errors.parquet")
    assert (stored[stored["variant"] == "raises"]["outcome"] == "error").sum() == 2
    # --debug adds the traceback of the first exception (the run resumes nothing: --force).
    code, stdout, stderr = run_captured([*args, "--no-progress", "--debug", "--force"])
    assert code == 0
    assert "the first exception a variant raised" in stderr and "KernelBug" in stderr
    assert "Traceback (most recent call last)" in stderr


def test_eval_prints_the_exception(with_raising_variant):
    code, stdout, stderr = run_captured(
        ["eval", "logsumexp", "1,2,3", "--format", "bfloat16", "--variant", "naive,raises"]
    )
    assert code == 0, stderr
    assert "raises raised KernelBug: no kernel for bfloat16 second line" in stdout
    line = next(line for line in stdout.splitlines() if line.strip().startswith("raises  "))
    assert line.split()[1:] == ["error", "-", "-", "-", "-"]


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize(
    ("problem_name", "variant_name"),
    [
        (p, v)
        for p, problem in PROBLEMS.items()
        for v, variant in members(problem.variants).items()
        if variant.library == "numpy"
    ],
)
def test_own_kernels_never_raise(problem_name, variant_name, fmt):
    """Every variant written here (library numpy: textbook, emulated, stochastic; every member
    of a family) returns a result or refuses with `Unsupported` in every format on a small
    input; none raises."""
    problem = PROBLEMS[problem_name]
    rng = np.random.default_rng(7)
    x = cast(problem.propose(rng, n=4, magnitude=1.0, cond=1.0, size=1)[0], fmt)
    run_ = run_variant_detailed(problem, members(problem.variants)[variant_name], x)
    assert run_.error is None, run_.error_traceback


def _toml(spec: dict) -> str:
    def value(v) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(e) for e in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(e)}" for k, e in v.items()) + " }"
        return str(v)

    return "\n".join(f"{k} = {value(v)}" for k, v in spec.items()) + "\n"
