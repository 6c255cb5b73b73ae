"""Regenerate the README's heatmap from a quick run of the softmax study (``make docs-image``)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from precision import store
from precision.report import plots
from precision.run.spec import load_spec
from precision.run.study import run


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path("docs/heatmap_logsumexp.png")
    spec = load_spec(Path("studies/softmax.toml"), quick=True)
    spec = dataclasses.replace(spec, problems=("logsumexp",))
    store.save_figure(target, plots.heatmap_figure(run(spec), "logsumexp"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
