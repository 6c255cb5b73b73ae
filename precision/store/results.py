"""Stored study results: find them, read them, and tell whether they are still current.

A results folder is what ``precision run`` wrote: ``errors.parquet`` (the tidy table) and
``meta.json`` (the spec as run, seed, versions, machine, commit and fingerprints; see
`precision.store.meta`). Reading needs no heavy imports until a table is loaded, so the
command line can check its arguments first. Nothing here writes or prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class ResultsError(Exception):
    """A results folder that is missing, incomplete or unreadable (a one-line message)."""


@dataclass(frozen=True)
class StoredStudy:
    """One results folder: its provenance and, once loaded, its table."""

    folder: Path
    meta: dict
    table: object = field(default=None, compare=False, repr=False)  # a pandas.DataFrame

    @property
    def name(self) -> str:
        """The study's name as its spec gives it."""
        return str(self.meta.get("study") or self.folder.name)

    @property
    def key(self) -> str:
        """The results folder's name: unique within a results folder, unlike ``name``."""
        return self.folder.name

    @property
    def spec(self) -> dict:
        """The spec as run (after any --quick overrides)."""
        return self.meta.get("spec") or {}


def read_meta(folder: Path) -> dict:
    """The provenance of a results folder.

    Raises
    ------
    ResultsError
        When the folder does not exist, holds no meta.json, or its meta.json is not a JSON
        object with the spec that was run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"{folder}: no such results folder")
    path = folder / "meta.json"
    if not path.is_file():
        raise ResultsError(f"{folder}: no meta.json here (not a folder written by precision run)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise ResultsError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        raise ResultsError(f"{path}: holds no spec (written by an older precision?); rerun it")
    return meta


def load_study(folder: Path) -> StoredStudy:
    """A results folder with its table (`read_meta`'s errors, or a missing/unreadable table)."""
    import pandas as pd

    folder = Path(folder)
    meta = read_meta(folder)
    path = folder / "errors.parquet"
    if not path.is_file():
        raise ResultsError(f"{folder}: no errors.parquet here (an unfinished run?)")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ResultsError(f"{path}: cannot read the table: {exc}") from None
    return StoredStudy(folder, meta, _with_all_columns(table))


COMPANIONS = ("convergence",)
"""Companion tables a results folder may hold as ``<name>.csv``
(`precision.run.study.companion_tables`)."""

WORKED_INDEX = "worked_examples"
"""The companion table listing a study's worked examples, one row each: ``problem``,
``table`` (the name of the companion table holding the example), ``title``, ``text`` and
``numbers`` (a JSON list of its numeric columns; the others are text and stay text)."""


def read_companions(folder: Path) -> dict:
    """The companion tables stored in a results folder (name -> DataFrame): `COMPANIONS`, and
    the worked examples with their index (`WORKED_INDEX`) where the study stored them."""
    found = {}
    for name in (*COMPANIONS, WORKED_INDEX):
        path = Path(folder) / f"{name}.csv"
        if path.is_file():
            found[name] = _read_csv(path, text=name == WORKED_INDEX)
    for row in found[WORKED_INDEX].itertuples() if WORKED_INDEX in found else ():
        found[row.table] = _read_example(Path(folder) / f"{row.table}.csv", json.loads(row.numbers))
    return found


def _read_example(path: Path, numbers: list[str]):
    """A worked example's table: its text cells as written (an exact decimal such as
    0.30000000000000004 must not turn into a float), its numeric columns as numbers."""
    numeric = _read_csv(path, text=False)  # read again: pandas' own parse of the numbers
    return _read_csv(path, text=True).assign(**{c: numeric[c] for c in numbers})


def _read_csv(path: Path, *, text: bool):
    """A stored CSV; with ``text``, every cell as the string written (empty cells too)."""
    import pandas as pd

    if not path.is_file():
        raise ResultsError(f"{path}: missing (listed in {WORKED_INDEX}.csv)")
    try:
        if text:
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_csv(path)
    except Exception as exc:  # a damaged file: say which
        raise ResultsError(f"{path}: cannot read: {exc}") from None


def worked_examples(companions: dict) -> list[tuple[str, str, str, object]]:
    """The worked examples among a study's companion tables, in stored order:
    ``(problem, title, text, table)``; none where the study stored none."""
    index = companions.get(WORKED_INDEX)
    if index is None:
        return []
    return [(r.problem, r.title, r.text, companions[r.table]) for r in index.itertuples()]


def _with_all_columns(table):
    """A table written by an older precision, with the columns it lacks added as missing
    values (staleness names them), so that every summary can read it."""
    from precision.core.schema import COLUMNS, typed_table

    missing = [c for c in COLUMNS if c not in table.columns]
    if not missing:
        return table
    table = table.assign(**{c: None for c in missing})
    table.attrs["missing_columns"] = missing
    return typed_table(table[[*COLUMNS, *[c for c in table.columns if c not in COLUMNS]]])


def find_studies(results_dir: Path, *, skip: tuple[Path, ...] = ()) -> list[Path]:
    """The study folders directly under ``results_dir`` (those holding a meta.json), by name.

    Raises
    ------
    ResultsError
        When ``results_dir`` does not exist or holds no study.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(f"{results_dir}: no such results folder (run make study first)")
    skipped = {p.resolve() for p in skip}
    found = [
        p
        for p in sorted(results_dir.iterdir())
        if p.is_dir() and (p / "meta.json").is_file() and p.resolve() not in skipped
    ]
    if not found:
        raise ResultsError(
            f"{results_dir}: holds no study results (no <study>/meta.json); run make study first"
        )
    return found


# ---------------------------------------------------------------- staleness


def spec_file(meta: dict) -> Path | None:
    """The spec file a study was run from, where it can still be found."""
    for key in ("spec_path", "spec_file"):
        if meta.get(key) and Path(meta[key]).is_file():
            return Path(meta[key])
    return None
