"""What the five parts share: the measurements, the report's helpers and the study (`STUDY`).

`Results` holds the measurements (one CSV line each, `COLUMNS`) and the Markdown sections, filled
part by part and written to ``<out>/benchmarks.csv`` and ``<out>/benchmarks.md``; `adder`,
`number` and `md_table` make its lines and tables; `machine` and `git_commit` describe the run.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from precision import store

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "softmax.toml"
COLUMNS = ["part", "benchmark", "setting", "metric", "value", "unit", "note"]


class Results:
    """Measurements (CSV lines) and the Markdown report, filled part by part."""

    def __init__(self, header: list[str]):
        self.rows: list[dict] = []
        self.header = header
        self.sections: list[str] = []
        self.files: dict[str, bytes] = {}

    def add(self, part, benchmark, setting, metric, value, unit="", note="") -> None:
        self.rows.append(
            dict(zip(COLUMNS, [part, benchmark, setting, metric, value, unit, note], strict=True))
        )

    def section(self, text: str) -> None:
        self.sections.append(text.rstrip() + "\n")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)

    def markdown(self) -> str:
        return "\n".join(self.header) + "\n\n" + "\n".join(self.sections)

    def write(self, out_dir: Path) -> None:
        """Both files, atomically (`precision.store.write_all_or_nothing`)."""
        out_dir = Path(out_dir)
        store.write_all_or_nothing(
            {
                out_dir / "benchmarks.csv": self.frame().to_csv(index=False).encode(),
                out_dir / "benchmarks.md": self.markdown().encode(),
                **{out_dir / name: data for name, data in self.files.items()},
            }
        )


def adder(res: Results, part: str, bench: str, setting: str):
    def add(metric, value, unit="", note=""):
        res.add(part, bench, setting, metric, value, unit, note)

    return add


def number(value) -> str:
    """A number with three significant digits (thousands separated above 1000)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return str(value)
    value = float(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"
