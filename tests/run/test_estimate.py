"""The size estimate: the rows, inputs and chunks of a plan, and the refusal of a spec beyond
the machine's memory or time (`precision.run.estimate`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_specs import FOUR_FORMATS as TINY  # eight chunks, sixteen inputs

from precision.run.estimate import TooLarge, check_size, estimate
from precision.run.spec import load_spec, parse_spec
from precision.run.study import chunks, run

SHIPPED = sorted(Path(__file__).resolve().parents[2].glob("studies/*.toml"))
GIB = 2**30


def test_the_estimate_counts_the_rows_chunks_and_inputs_of_the_plan():
    spec = parse_spec(TINY)
    found = estimate(spec)
    assert found.chunks == len(chunks(spec)) == 8
    assert found.inputs == sum(chunk.inputs(spec) for chunk in chunks(spec)) == 16
    # Each problem: 8 inputs in 4 formats; softmax runs 3 variants, logsumexp 4 (an upper
    # bound: a cell the generator cannot reach gives fewer).
    assert found.rows == 8 * 4 * (3 + 4) >= len(run(spec))


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_study_passes_the_size_check(path: Path, quick: bool):
    """On this machine, and on a small one (2 cores, 4 GiB) and a wide one (16 cores, 16 GiB),
    none needs --force; the estimate's chunks are the plan's."""
    spec = load_spec(path, quick=quick)
    check_size(spec, workers=os.cpu_count() or 1)
    check_size(spec, workers=2, memory=4 * GIB)
    found = check_size(spec, workers=16, memory=16 * GIB)
    assert found.chunks == len(chunks(spec))
    assert found.inputs == sum(chunk.inputs(spec) for chunk in chunks(spec))


def one_cell(problem: str, n: int, samples: int) -> dict:
    grid = {"log10_cond": [0, 1], "log10_magnitude": [0, 1], "sizes": [n]}
    return TINY | {"problems": [problem], "grid": grid | {"samples_per_cell": samples}}


def test_a_spec_beyond_the_time_limit_is_refused_unless_forced():
    """Ten 1,000 x 1,000 linear systems in one cell (one chunk: no worker helps): days of
    certified ground truth (issue 16: it ran silently)."""
    spec = parse_spec(one_cell("linear_system", 1000, 10))
    with pytest.raises(
        TooLarge,
        match=r"tiny is too large to run here: about 200 rows, .* and "
        r"[0-9.]+ days on 1 worker .* or use --force to insist$",
    ):
        check_size(spec, workers=64, memory=1024 * GIB)
    assert check_size(spec, workers=64, memory=1024 * GIB, force=True).cpu_seconds > 86400 * 4


def test_a_spec_beyond_the_memory_limit_is_refused_naming_the_workers_that_fit():
    """Eight cells of one million-element vector each: about 4 GiB per worker at once."""
    grid = {"log10_cond": [0, 8], "log10_magnitude": [0, 1], "sizes": [1_000_000]}
    spec = parse_spec(TINY | {"problems": ["summation"], "grid": grid | {"samples_per_cell": 1}})
    found = estimate(spec)
    assert found.chunks == 8 and 3 * GIB < found.chunk_bytes < 5 * GIB
    with pytest.raises(TooLarge, match=r"of memory .* run with --workers [1-3], shrink"):
        check_size(spec, workers=8, memory=16 * GIB)
    check_size(spec, workers=1, memory=16 * GIB)
    check_size(spec, workers=8, memory=16 * GIB, here=False)  # a Dask cluster's memory
    with pytest.raises(TooLarge, match="limits: 512.0 MiB, 50% of this machine's memory"):
        check_size(spec, workers=1, memory=GIB)  # not even one worker fits: no --workers
