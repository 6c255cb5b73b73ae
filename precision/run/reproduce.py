"""Rerun a stored study from the spec in its meta.json and compare the new table with the stored.

The same spec, code and library versions give the same table byte for byte (every chunk draws
its inputs from its own seed and the table is assembled in chunk order, whatever the executor).
Where the tables differ, `compare_tables` says which rows and columns, and by how many units in
the last place of the stored float64 numbers (`precision.core.metrics.ulp_distance`). Nothing here
prints; the store writes the rerun's chunk parts into a temporary folder, removed afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from precision import store
from precision.core.metrics import ulp_distance
from precision.core.schema import VARIANT_KEYS
from precision.store.results import ResultsError, load_study, spec_file

ROW_KEY = [
    "problem",
    *VARIANT_KEYS,
    "format",
    "source",
    "n",
    "cell_log10_cond",
    "cell_log10_magnitude",
    "sample",
]
"""Columns that identify a row: an input (its cell, size and sample) x variant x format."""

SHOWN_ROWS = 5
"""Differing rows listed per column in `TableDiff.lines`."""


@dataclass(frozen=True)
class ColumnDiff:
    """How one column differs over the rows present in both tables."""

    column: str
    rows: int
    max_ulps: int | None  # float columns: largest float64 ulp distance; None otherwise
    max_abs: float | None  # integer columns: largest absolute difference
    examples: pd.DataFrame  # up to SHOWN_ROWS rows: key columns, stored, rerun (and ulps)


@dataclass(frozen=True)
class TableDiff:
    """The comparison of a stored table with its rerun."""

    rows_stored: int
    rows_rerun: int
    byte_identical: bool
    only_stored: int = 0
    only_rerun: int = 0
    differing_rows: int = 0
    columns: list[ColumnDiff] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Same rows with the same values (NaN equal to NaN), even if the bytes differ."""
        return self.byte_identical or (
            self.rows_stored == self.rows_rerun
            and not self.only_stored
            and not self.only_rerun
            and not self.columns
        )

    def lines(self) -> list[str]:
        """A human summary, one finding per line."""
        if self.byte_identical:
            return [f"identical: {self.rows_stored} rows, byte for byte"]
        if self.identical:
            return [f"identical values in all {self.rows_stored} rows (the file bytes differ)"]
        out = [
            f"differs: {self.differing_rows} of {self.rows_stored} stored rows differ "
            f"({self.rows_rerun} rows in the rerun; {self.only_stored} only in the stored "
            f"table, {self.only_rerun} only in the rerun)"
        ]
        for col in self.columns:
            size = (
                f", up to {col.max_ulps} float64 ulps apart"
                if col.max_ulps is not None
                else f", up to {col.max_abs:g} apart"
                if col.max_abs is not None
                else ""
            )
            out.append(f"  {col.column}: {col.rows} rows{size}")
            for row in col.examples.itertuples(index=False):
                out.append("    " + ", ".join(f"{k}={v}" for k, v in row._asdict().items()))
        return out


def compare_tables(stored: pd.DataFrame, rerun: pd.DataFrame) -> TableDiff:
    """Compare two study tables row by row (rows matched on `ROW_KEY`).

    Float columns are compared through the ulp distance of their float64 values
    (`precision.core.metrics.ulp_distance`, NaN equal to NaN, NaN against a number the whole
    float64 span); integer columns by their absolute difference; other columns by equality
    (missing equal to missing).
    """
    same_bytes = store.table_bytes(stored) == store.table_bytes(rerun)
    if same_bytes:
        return TableDiff(len(stored), len(rerun), True)
    key = [c for c in ROW_KEY if c in stored.columns and c in rerun.columns]
    left, right = _keyed(stored, key), _keyed(rerun, key)
    both = left.index.intersection(right.index)
    columns = [c for c in stored.columns if c in rerun.columns and c not in key]
    diffs, changed = [], pd.Series(False, index=both)
    for column in columns:
        a, b = left.loc[both, column], right.loc[both, column]
        differs, distance = _column_differences(a, b)
        if differs.any():
            changed |= differs
            diffs.append(_column_diff(column, a, b, differs, distance))
    return TableDiff(
        len(stored),
        len(rerun),
        False,
        only_stored=len(left.index.difference(right.index)),
        only_rerun=len(right.index.difference(left.index)),
        differing_rows=int(changed.sum()),
        columns=diffs,
    )


def _keyed(table: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The table indexed by its row key (a repeated key keeps its occurrence number)."""
    frame = table.reset_index(drop=True).copy()
    frame["_occurrence"] = frame.groupby(key, dropna=False, sort=False).cumcount()
    return frame.set_index([*key, "_occurrence"])


def _column_differences(a: pd.Series, b: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    """(which rows differ, float64 ulp distances or None) for one column."""
    if pd.api.types.is_float_dtype(a) and pd.api.types.is_float_dtype(b):
        x = a.to_numpy(dtype=np.float64, na_value=np.nan)
        y = b.to_numpy(dtype=np.float64, na_value=np.nan)
        distance = ulp_distance(x, y, nan="max")
        return pd.Series(distance > 0, index=a.index), distance
    equal = (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())
    return ~equal, None


def _column_diff(column, a, b, differs: pd.Series, distance) -> ColumnDiff:
    mask = differs.to_numpy()
    examples = pd.DataFrame({"stored": a[mask].head(SHOWN_ROWS), "rerun": b[mask].head(SHOWN_ROWS)})
    max_ulps = max_abs = None
    if distance is not None:
        examples["ulps"] = distance[mask][:SHOWN_ROWS]
        max_ulps = int(distance[mask].max())
    elif pd.api.types.is_integer_dtype(a) and pd.api.types.is_integer_dtype(b):
        gaps = (a[mask].astype("Float64") - b[mask].astype("Float64")).abs()
        max_abs = float(gaps.max()) if gaps.notna().any() else None
    examples = examples.reset_index().drop(columns="_occurrence")
    return ColumnDiff(column, int(mask.sum()), max_ulps, max_abs, examples)


@dataclass(frozen=True)
class Reproduction:
    """A rerun of a stored study and how it compares."""

    folder: Path
    diff: TableDiff
    seconds: float
    context: list[str]  # what differs between the stored run and this one (code, versions)


def reproduce(
    folder: Path, *, executor: str = "process", workers: int | None = None
) -> Reproduction:
    """Rerun the study stored in ``folder`` from the spec in its meta.json and compare tables.

    The rerun computes every ground truth afresh (no cache) into a temporary folder.

    Raises
    ------
    ResultsError
        For a missing folder, meta.json or table (`precision.store.results.load_study`).
    precision.run.spec.SpecError
        When the stored spec no longer parses (e.g. a data set file is gone).
    """
    from precision.run.execute import execute
    from precision.run.spec import parse_spec

    stored = load_study(Path(folder))
    spec = parse_spec(stored.spec, source=_spec_source(stored.meta, Path(folder)))
    _check_datasets(stored.meta, spec)
    with store.scratch_folder("precision-reproduce-") as scratch:
        table, report = execute(spec, scratch, executor=executor, workers=workers)
    return Reproduction(
        Path(folder), compare_tables(stored.table, table), report.seconds, _context(stored.meta)
    )


def _spec_source(meta: dict, folder: Path) -> Path:
    """Where the spec's relative data-set paths are resolved from: the spec file as run."""
    found = spec_file(meta)
    if found is not None:
        return found
    for key in ("spec_path", "spec_file"):
        if meta.get(key):
            return Path(meta[key])
    return folder / "spec.toml"


def _check_datasets(meta: dict, spec) -> None:
    """Refuse to rerun on a data set whose bytes changed since the run."""
    import hashlib

    recorded = meta.get("datasets") or {}
    for dataset in spec.datasets:
        expected = (recorded.get(dataset.name) or {}).get("sha256")
        if expected and hashlib.sha256(Path(dataset.path).read_bytes()).hexdigest() != expected:
            raise ResultsError(
                f"data set {dataset.name} at {dataset.path} changed since the run "
                "(its sha256 differs); the rerun would not read the same inputs"
            )


def _context(meta: dict) -> list[str]:
    """Differences between the stored run's environment and this one, one line each."""
    current = store.provenance_environment()
    out = []
    if meta.get("code_sha256") != current["code_sha256"]:
        out.append("the precision code changed since the run")
    stored_versions = meta.get("versions") or {}
    for name, version in current["versions"].items():
        if name in stored_versions and stored_versions[name] != version:
            out.append(f"{name} {stored_versions[name]} -> {version}")
    out += _lock_context(meta.get("lock"), current["lock"])
    for key in ("platform", "processor"):
        before = (meta.get("machine") or {}).get(key)
        if before and before != current["machine"][key]:
            out.append(f"machine {key}: {before} -> {current['machine'][key]}")
    if "flush_to_zero" in meta and meta["flush_to_zero"] != current["flush_to_zero"]:
        out.append(f"flush-to-zero {meta['flush_to_zero']} -> {current['flush_to_zero']}")
    return out


def _lock_context(stored: dict | None, current: dict | None) -> list[str]:
    """How the lock (and the environment's agreement with it) changed since the run."""
    if not stored and not current:
        return []
    if not stored or not current:
        where = "the run" if stored else "this environment"
        return [f"only {where} was installed from a lock file"]
    out = []
    if stored.get("sha256") != current.get("sha256"):
        out.append(
            f"lock {current.get('file')} differs: sha256 {str(stored.get('sha256'))[:12]} "
            f"at the run, {str(current.get('sha256'))[:12]} now"
        )
    if current.get("differs"):
        out.append(f"this environment differs from its lock: {', '.join(current['differs'])}")
    return out
