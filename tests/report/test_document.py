"""Tests of precision.report.document beyond the shared report's (conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tiny_specs import TINY

from precision.cli import run_captured
from precision.report.document import _drawn_figures
from precision.store.results import load_study

SMALL = TINY.replace('["softmax", "logsumexp"]', '["logsumexp"]').replace(
    '["float16", "float64"]', '["float16"]'
)


def test_figures_drawn_by_workers_are_the_bytes_drawn_here(tmp_path: Path):
    """The report draws each study's figures on a worker process (`precision report
    --workers`): the PNG bytes are those drawn in this process."""
    (tmp_path / "small.toml").write_text(SMALL)
    argv = ["run", str(tmp_path / "small.toml"), "--out", str(tmp_path / "small")]
    code, _, err = run_captured([*argv, "--no-plots", "--executor", "serial", "--no-cache"])
    assert code == 0, err
    study = load_study(tmp_path / "small")
    here = _drawn_figures([study], workers=1)[study.key]
    assert here and all(png.startswith(b"\x89PNG") for png in here.values())
    shutil.copytree(tmp_path / "small", tmp_path / "twin")  # two studies: one per worker
    drawn = _drawn_figures([study, load_study(tmp_path / "twin")], workers=2)
    assert drawn == {"small": here, "twin": here}
