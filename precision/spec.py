"""Study specifications: TOML files validated into a frozen `StudySpec`.

A spec is data, never code. Every problem is reported as one line that names the file and the
key (``studies/x.toml: grid.sizes: ...``) through `SpecError`; the CLI turns it into exit 2.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from precision.formats import FORMATS
from precision.problems import PROBLEMS


class SpecError(ValueError):
    """A study spec that cannot be run; the message is one line naming the file and key."""


@dataclass(frozen=True)
class Grid:
    """The decades of condition number and magnitude, sizes and samples per cell."""

    log10_cond: tuple[int, int]
    log10_magnitude: tuple[int, int]
    sizes: tuple[int, ...]
    samples_per_cell: int

    def cells(self) -> list[tuple[int, int]]:
        """(cond decade, magnitude decade) pairs, each decade c covering [10**c, 10**(c+1))."""
        return [
            (c, m)
            for c in range(self.log10_cond[0], self.log10_cond[1])
            for m in range(self.log10_magnitude[0], self.log10_magnitude[1])
        ]


@dataclass(frozen=True)
class Dataset:
    """A file of logit rows (``.npy``, 2-D) used as a second input source."""

    name: str
    path: Path
    rows: int


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str
    seed: int
    formats: tuple[str, ...]
    problems: tuple[str, ...]
    variants: dict[str, tuple[str, ...]]
    grid: Grid
    datasets: tuple[Dataset, ...] = ()
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def variants_of(self, problem: str) -> tuple[str, ...]:
        return self.variants.get(problem) or tuple(PROBLEMS[problem].variants)


TOP_KEYS = {
    "name",
    "description",
    "seed",
    "formats",
    "problems",
    "variants",
    "grid",
    "datasets",
    "quick",
}
GRID_KEYS = {"log10_cond", "log10_magnitude", "sizes", "samples_per_cell"}
DATASET_KEYS = {"path", "rows"}


def load_spec(path: str | Path, *, quick: bool = False) -> StudySpec:
    """Read and validate a study spec; ``quick`` applies its ``[quick]`` overrides."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return parse_spec(raw, source=path, quick=quick)


def parse_spec(
    raw: dict[str, Any], *, source: Path | None = None, quick: bool = False
) -> StudySpec:
    """Validate a spec given as a dict (the parsed TOML)."""
    where = str(source) if source else "<spec>"

    def fail(key: str, message: str) -> SpecError:
        return SpecError(f"{where}: {key}: {message}")

    _check_keys(raw, TOP_KEYS, "", fail)
    raw = _apply_quick(raw, fail) if quick else raw
    name = _string(raw, "name", fail)
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise fail("seed", f"must be a non-negative integer, got {seed!r}")
    formats = _names(raw, "formats", FORMATS, fail)
    problems = _names(raw, "problems", PROBLEMS, fail)
    variants = _variants(raw.get("variants", {}), problems, fail)
    grid = _grid(raw.get("grid"), fail)
    base = source.parent if source else Path.cwd()
    datasets = _datasets(raw.get("datasets", {}), base, fail)
    return StudySpec(
        name=name,
        description=str(raw.get("description", "")),
        seed=seed,
        formats=formats,
        problems=problems,
        variants=variants,
        grid=grid,
        datasets=datasets,
        source=source,
        raw=raw,
    )


def _apply_quick(raw: dict, fail) -> dict:
    quick = raw.get("quick", {})
    if not isinstance(quick, dict):
        raise fail("quick", "must be a table")
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items() if k != "quick"}
    for key, value in quick.items():
        if key == "grid" and isinstance(value, dict):
            _check_keys(value, GRID_KEYS, "quick.grid.", fail)
            merged.setdefault("grid", {}).update(value)
        elif key == "datasets" and isinstance(value, dict):
            for ds_name, overrides in value.items():
                if ds_name not in merged.get("datasets", {}) or not isinstance(overrides, dict):
                    raise fail(f"quick.datasets.{ds_name}", "overrides an undeclared data set")
                _check_keys(overrides, DATASET_KEYS, f"quick.datasets.{ds_name}.", fail)
                merged["datasets"][ds_name] = {**merged["datasets"][ds_name], **overrides}
        else:
            raise fail(f"quick.{key}", "only grid and datasets can be overridden")
    return merged


def _check_keys(table: dict, allowed: set[str], prefix: str, fail) -> None:
    for key in table:
        if key not in allowed:
            raise fail(prefix + key, "unknown key" + _suggest(key, allowed))


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(choices))})"


def _string(raw: dict, key: str, fail) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise fail(key, "must be a non-empty string")
    if not all(ch.isalnum() or ch in "-_" for ch in value):
        raise fail(key, f"must use only letters, digits, '-' and '_', got {value!r}")
    return value


def _names(raw: dict, key: str, known, fail) -> tuple[str, ...]:
    values = raw.get(key)
    if not isinstance(values, list) or not values:
        raise fail(key, "must be a non-empty list of names")
    for value in values:
        if value not in known:
            raise fail(key, f"unknown name {value!r}" + _suggest(value, known))
    if len(set(values)) != len(values):
        raise fail(key, "lists a name twice")
    return tuple(values)


def _variants(table, problems, fail) -> dict[str, tuple[str, ...]]:
    if not isinstance(table, dict):
        raise fail("variants", "must be a table of problem = [variant names]")
    out = {}
    for problem in table:
        if problem not in problems:
            raise fail(f"variants.{problem}", "is not one of the study's problems")
        out[problem] = _names(table, problem, PROBLEMS[problem].variants, fail)
    return out


def _int_range(grid: dict, key: str, fail) -> tuple[int, int]:
    value = grid.get(key)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise fail(f"grid.{key}", f"must be two integers [from, to] (decades), got {value!r}")
    if value[0] >= value[1]:
        raise fail(f"grid.{key}", f"is empty or inverted: {value!r}")
    return value[0], value[1]


def _grid(grid, fail) -> Grid:
    if not isinstance(grid, dict):
        raise fail("grid", "missing or not a table")
    _check_keys(grid, GRID_KEYS, "grid.", fail)
    sizes = grid.get("sizes")
    if (
        not isinstance(sizes, list)
        or not sizes
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
    ):
        raise fail("grid.sizes", f"must be a non-empty list of positive integers, got {sizes!r}")
    samples = grid.get("samples_per_cell")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        raise fail("grid.samples_per_cell", f"must be a positive integer, got {samples!r}")
    return Grid(
        log10_cond=_int_range(grid, "log10_cond", fail),
        log10_magnitude=_int_range(grid, "log10_magnitude", fail),
        sizes=tuple(sizes),
        samples_per_cell=samples,
    )


def _datasets(table, base: Path, fail) -> tuple[Dataset, ...]:
    if not isinstance(table, dict):
        raise fail("datasets", "must be a table of named data sets")
    out = []
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise fail(f"datasets.{name}", "must be a table with path and rows")
        _check_keys(entry, DATASET_KEYS, f"datasets.{name}.", fail)
        if not isinstance(entry.get("path"), str):
            raise fail(f"datasets.{name}.path", "must be a string")
        path = (base / entry["path"]).resolve()
        if path.suffix != ".npy" or not path.is_file():
            raise fail(f"datasets.{name}.path", f"no .npy file at {path}")
        rows = entry.get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows <= 0:
            raise fail(f"datasets.{name}.rows", f"must be a positive integer, got {rows!r}")
        out.append(Dataset(name, path, rows))
    return tuple(out)
