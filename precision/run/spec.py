"""Study specifications: TOML files validated into a frozen `StudySpec`.

A spec is data, never code. Every problem is reported as one line that names the file and the
key (``studies/x.toml: grid.sizes: ...``) through `SpecError`; the CLI turns it into exit 2.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from precision.core.formats import FORMATS
from precision.core.quantise import SCHEMES, quantise
from precision.core.schema import DEFAULT_ENGINE
from precision.core.values import npy_header, regular_file_size
from precision.problems import DEFAULT_VARIANTS, PROBLEMS, unavailable_variant
from precision.problems.base import Variant
from precision.run import plugins
from precision.truth.exact import ENGINES

MAX_DATASET_BYTES = 2**40
"""Largest data set file (it is memory-mapped, never read whole)."""


class SpecError(ValueError):
    """A study spec that cannot be run; the message is one line naming the file and key."""


@dataclass(frozen=True)
class Grid:
    """The decades of condition number and magnitude, sizes and samples per cell."""

    log10_cond: tuple[int, int]
    log10_magnitude: tuple[int, int]
    sizes: tuple[int, ...]
    samples_per_cell: int
    problem_samples: dict[str, int] = field(default_factory=dict)

    def samples_for(self, problem: str) -> int:
        """Inputs per cell and size for ``problem`` (``problem_samples`` overrides the default)."""
        return self.problem_samples.get(problem, self.samples_per_cell)

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
class Quantisation:
    """How an input is quantised before a variant receives it: a scaled format of
    `precision.core.quantise.SCHEMES` with its block size (None: the scheme's own; per-tensor
    schemes have none) and, for MX, its scale rule."""

    scheme: str
    block_size: int | None = None
    scale_rule: str | None = None

    def columns(self) -> dict:
        """The row's ``QUANTISATION_KEYS`` columns (`precision.core.schema`)."""
        block = np.nan if self.block_size is None else float(self.block_size)
        return {"quantised": self.scheme, "block_size": block, "scale_rule": self.scale_rule}

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The dequantised float64 tensor (exact: element x scales), rows independent."""
        options = {} if self.block_size is None else {"block_size": self.block_size}
        if self.scale_rule is not None:
            options["scale_rule"] = self.scale_rule
        return quantise(np.asarray(x, dtype=np.float64), self.scheme, **options).dequantised


@dataclass(frozen=True)
class Received:
    """What a variant receives in one of a study's table blocks: the input rounded to
    ``format``, after quantising it (``quantisation``) or not. ``key`` names it within a chunk
    (the format's name for a plain rounding)."""

    format: str
    quantisation: Quantisation | None = None

    @property
    def key(self) -> str:
        if self.quantisation is None:
            return self.format
        q = self.quantisation
        return f"{self.format}/{q.scheme}/{q.block_size}/{q.scale_rule}"


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
    engine: str = DEFAULT_ENGINE
    shared_inputs: bool = False
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    plugins: tuple[str, ...] = ()  # resolved: absolute .py paths or module names
    plugins_sha256: str = ""  # over the plugins' sources ("" without plugins)
    chunk_elements: int | None = None  # None: precision.run.study.CHUNK_ELEMENTS
    params: dict[str, dict[str, dict[str, tuple[float, ...]]]] = field(default_factory=dict)
    """problem -> variant -> parameter -> values: the grids the spec gives (`_params`); a
    family's other parameters keep their default values."""
    quantise: tuple[Quantisation, ...] = ()
    """The quantisations of ``[quantise]`` (`_quantise`), each run in every format beside the
    plain rounding."""

    def received(self) -> tuple[Received, ...]:
        """Every way a variant receives its input, format by format: rounded to the format,
        then each quantisation (dequantised, rounded to the format)."""
        return tuple(Received(name, q) for name in self.formats for q in (None, *self.quantise))

    def variants_of(self, problem: str) -> tuple[str, ...]:
        """The names of the variants (families included) the study runs for ``problem``."""
        return _study_variants(self.variants, problem)

    def runs_of(self, problem: str) -> tuple[Variant, ...]:
        """The variants the study runs for ``problem``, families expanded over their
        parameter grids (`Variant.expand`), in the order of `variants_of`."""
        variants, grids = PROBLEMS[problem].variants, self.params.get(problem, {})
        return tuple(
            run
            for name in self.variants_of(problem)
            for run in variants[name].expand(grids.get(name))
        )


def _study_variants(named: dict[str, tuple[str, ...]], problem: str) -> tuple[str, ...]:
    # Unnamed: the problem's own variants (library, emulated and user kernels only when
    # named); a user's problem: all of its variants.
    return named.get(problem) or DEFAULT_VARIANTS.get(problem) or tuple(PROBLEMS[problem].variants)


TOP_KEYS = {
    "name",
    "description",
    "seed",
    "formats",
    "problems",
    "variants",
    "grid",
    "datasets",
    "engine",
    "shared_inputs",
    "plugins",
    "chunk_elements",
    "params",
    "quantise",
    "quick",
}
GRID_KEYS = {"log10_cond", "log10_magnitude", "sizes", "samples_per_cell", "problem_samples"}
DATASET_KEYS = {"path", "rows"}

DECADE_LIMIT = 100
"""Grid decades lie within [-DECADE_LIMIT, DECADE_LIMIT]: the float64 input generator reaches
condition numbers and magnitudes up to 10**100 and down to 10**-100, no further."""

MAX_SIZE = 1_000_000
"""Largest vector size: certified ground truth of longer vectors takes hours per input."""


MAX_SPEC_BYTES = 2**20
"""Largest spec file read (a spec is a page of TOML; this refuses /dev/zero and its kind)."""

MAX_SAMPLES = 10_000
"""Most inputs per cell and size (``samples_per_cell``, ``problem_samples``): certified
ground truth costs milliseconds to seconds per input, so more is hours per cell."""

MAX_CHUNK_ELEMENTS = 2**24
"""Most input elements per chunk (``chunk_elements``): a chunk's inputs, in every format, and
its results are held in memory at once."""

MAX_MATRIX_SIZE = 1_000
"""Largest n of a matrix problem (an n x n input): exact references cost O(n**3) operations
on big numbers, minutes per input at n = 1000."""


def load_spec(path: str | Path, *, quick: bool = False) -> StudySpec:
    """Read and validate a study spec; ``quick`` applies its ``[quick]`` overrides.

    Only a regular file of at most `MAX_SPEC_BYTES` is read (a FIFO would wait forever and
    /dev/zero never ends)."""
    path = Path(path)
    try:
        regular_file_size(path, MAX_SPEC_BYTES)
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such study file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, a NUL in the name, a FIFO
        raise SpecError(f"{path}: cannot read: {exc}") from None
    return parse_spec(raw, source=path, quick=quick)


def parse_spec(
    raw: dict[str, Any], *, source: Path | None = None, quick: bool = False
) -> StudySpec:
    """Validate a spec given as a dict (the parsed TOML)."""
    where = str(source) if source else "<spec>"

    overridden = _quick_keys(raw) if quick else set()

    def fail(key: str, message: str) -> SpecError:
        if any(key == k or key.startswith(k + ".") for k in overridden):
            key = f"quick.{key}"  # the value came from [quick]: point there
        # One line whatever the input: a quoted TOML key or a path may hold a newline.
        text = f"{where}: {key}: {message}"
        text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\0", "\\0")
        return SpecError(_cut(text))

    _check_keys(raw, TOP_KEYS, "", fail)
    has_quick = "quick" in raw
    if not quick and "quick" in raw:
        parse_spec(raw, source=source, quick=True)  # a bad [quick] fails with or without --quick
    raw = _apply_quick(raw, fail) if quick else raw
    name = _string(raw, "name", fail)
    if not isinstance(raw.get("description", ""), str):
        raise fail("description", "must be a string")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise fail("seed", f"must be a non-negative integer, got {seed!r}")
    base = source.parent if source else Path.cwd()
    plugins, plugins_sha256 = _plugins(raw.get("plugins", []), base, fail)  # before the names
    formats = _names(raw, "formats", FORMATS, fail)
    problems = _names(raw, "problems", PROBLEMS, fail)
    variants = _variants(raw.get("variants", {}), problems, fail)
    params = _params(raw.get("params", {}), problems, variants, fail)
    grid = _grid(raw.get("grid"), problems, fail)
    datasets = _datasets(raw.get("datasets", {}), base, fail)
    _check_finite_rows(datasets, seed, fail)
    engine = raw.get("engine", DEFAULT_ENGINE)
    if engine not in ENGINES:
        raise fail(
            "engine", f"unknown ground-truth engine {engine!r}" + did_you_mean(engine, ENGINES)
        )
    shared_inputs = raw.get("shared_inputs", False)
    if not isinstance(shared_inputs, bool):
        raise fail("shared_inputs", f"must be true or false, got {shared_inputs!r}")
    quantisations = _quantise(raw.get("quantise"), fail)
    if quantisations and shared_inputs:
        raise fail("quantise", "cannot be combined with shared_inputs (one common rounding)")
    chunk_elements = raw.get("chunk_elements")
    if chunk_elements is not None:
        chunk_elements = _positive_int(chunk_elements, "chunk_elements", fail)
        if chunk_elements > MAX_CHUNK_ELEMENTS:
            raise fail("chunk_elements", f"at most {MAX_CHUNK_ELEMENTS}, got {chunk_elements}")
    if quick and not has_quick:
        raise fail("quick", "--quick needs a [quick] table in the spec (none here)")
    return StudySpec(
        name=name,
        description=str(raw.get("description", "")),
        seed=seed,
        formats=formats,
        problems=problems,
        variants=variants,
        grid=grid,
        datasets=datasets,
        engine=engine,
        shared_inputs=shared_inputs,
        source=source,
        raw=raw,
        plugins=plugins,
        plugins_sha256=plugins_sha256,
        chunk_elements=chunk_elements,
        params=params,
        quantise=quantisations,
    )


def _apply_quick(raw: dict, fail) -> dict:
    quick = raw.get("quick", {})
    if not isinstance(quick, dict):
        raise fail("quick", "must be a table")
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items() if k != "quick"}
    for key, value in quick.items():
        if key in ("grid", "datasets") and not isinstance(value, dict):
            raise fail(f"quick.{key}", "must be a table")
        if key in ("grid", "datasets") and not isinstance(merged.get(key, {}), dict):
            raise fail(key, "must be a table")
        if key == "grid":
            _check_keys(value, GRID_KEYS, "quick.grid.", fail)
            merged.setdefault("grid", {}).update(value)
        elif key == "datasets":
            for ds_name, overrides in value.items():
                declared = merged.get("datasets", {})
                if not isinstance(declared.get(ds_name), dict) or not isinstance(overrides, dict):
                    raise fail(f"quick.datasets.{ds_name}", "overrides an undeclared data set")
                _check_keys(overrides, DATASET_KEYS, f"quick.datasets.{ds_name}.", fail)
                merged["datasets"][ds_name] = {**merged["datasets"][ds_name], **overrides}
        else:
            raise fail(f"quick.{key}", "only grid and datasets can be overridden")
    return merged


def _quick_keys(raw: dict) -> set[str]:
    """The keys ``[quick]`` sets (``grid.sizes``, ``datasets.mnist.rows``), for error messages."""
    quick = raw.get("quick")
    if not isinstance(quick, dict):
        return set()
    keys = set()
    if isinstance(quick.get("grid"), dict):
        keys |= {f"grid.{key}" for key in quick["grid"]}
    if isinstance(quick.get("datasets"), dict):
        for name, entry in quick["datasets"].items():
            if isinstance(entry, dict):
                keys |= {f"datasets.{name}.{key}" for key in entry}
    return keys


MAX_MESSAGE = 500
"""Longest spec error: a 10 MB string quoted in a message is cut in the middle."""


def _cut(text: str) -> str:
    """``text`` cut to `MAX_MESSAGE` characters, keeping its start (file and key) and its end
    (a suggestion)."""
    if len(text) <= MAX_MESSAGE:
        return text
    return f"{text[: MAX_MESSAGE // 2]} ... {text[-MAX_MESSAGE // 4 :]}"


def _check_keys(table: dict, allowed: set[str], prefix: str, fail) -> None:
    for key in table:
        if key not in allowed:
            raise fail(prefix + key, "unknown key" + did_you_mean(key, allowed))


def _plugins(names, base: Path, fail) -> tuple[tuple[str, ...], str]:
    """Resolve and import the spec's plugin modules (they register kernels and problems)."""
    if not isinstance(names, list):
        raise fail("plugins", f"must be a list of module names, got {names!r}")
    try:
        resolved = tuple(plugins.resolve(name, base=base) for name in names)
        return resolved, plugins.load_all(resolved)
    except plugins.PluginError as exc:
        raise fail("plugins", str(exc)) from None


def ensure_plugins(spec: StudySpec) -> None:
    """Import the spec's plugins in this process (a worker's first step before a chunk)."""
    if spec.plugins:
        plugins.load_all(spec.plugins)


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, else `` (valid: a, b, ...)``."""
    # A long word is no typo of a short name (and difflib would take seconds over it).
    close = difflib.get_close_matches(str(word), list(choices), n=1) if len(str(word)) < 100 else []
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(choices))})"


def _string(raw: dict, key: str, fail) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise fail(key, "must be a non-empty string")
    if not all(ch.isalnum() or ch in "-_" for ch in value):
        raise fail(key, f"must use only letters, digits, '-' and '_', got {value!r}")
    return value


def _names(raw: dict, key: str, known, fail, *, label: str | None = None) -> tuple[str, ...]:
    label = label or key
    values = raw.get(key)
    if not isinstance(values, list) or not values:
        raise fail(label, "must be a non-empty list of names")
    for value in values:
        if not isinstance(value, str):
            raise fail(label, f"must list names as strings, got {value!r}")
        if value not in known:
            raise fail(label, f"unknown name {value!r}" + did_you_mean(value, known))
    if len(set(values)) != len(values):
        raise fail(label, "lists a name twice")
    return tuple(values)


def _variants(table, problems, fail) -> dict[str, tuple[str, ...]]:
    if not isinstance(table, dict):
        raise fail("variants", "must be a table of problem = [variant names]")
    out = {}
    for problem in table:
        if problem not in problems:
            raise fail(f"variants.{problem}", "is not one of the study's problems")
        variants = PROBLEMS[problem].variants
        for name in table[problem] if isinstance(table[problem], list) else ():
            reason = unavailable_variant(problem, name) if isinstance(name, str) else None
            if reason:  # a library variant whose library is not installed here
                raise fail(f"variants.{problem}", reason)
        out[problem] = _names(table, problem, variants, fail, label=f"variants.{problem}")
    return out


MAX_PARAMETER_VALUES = 1000
"""Most values one parameter's grid may list (a grid is a sweep, not a data set)."""


def _params(table, problems, variants, fail) -> dict[str, dict[str, dict[str, tuple]]]:
    """Parameter grids, asv-style: ``[params.<problem>]`` gives ``name = [values]`` for every
    variant of the problem that takes parameter ``name``, and ``[params.<problem>.<variant>]``
    for one variant (it wins over the problem's). Each value list replaces the family's default
    grid of that parameter; the study runs the cartesian product (`Variant.expand`)."""
    if not isinstance(table, dict):
        raise fail("params", "must be a table of problem = { parameter = [values] }")
    out: dict[str, dict[str, dict[str, tuple]]] = {}
    for problem, entries in table.items():
        if problem not in problems:
            raise fail(f"params.{problem}", "is not one of the study's problems")
        if not isinstance(entries, dict):
            raise fail(f"params.{problem}", "must be a table of parameter = [values]")
        families = {
            name: PROBLEMS[problem].variants[name]
            for name in _study_variants(variants, problem)
            if PROBLEMS[problem].variants[name].is_family
        }
        shared = {k: v for k, v in entries.items() if not isinstance(v, dict)}
        own = {k: v for k, v in entries.items() if isinstance(v, dict)}
        taken = {key for family in families.values() for key in family.grid}
        for key in shared:
            if key not in taken:
                known = ", ".join(sorted(taken)) or "none"
                raise fail(
                    f"params.{problem}.{key}", f"no variant of the study takes it (known: {known})"
                )
        grids = {
            name: {
                key: _parameter_values(values, f"params.{problem}.{key}", fail)
                for key, values in shared.items()
                if key in family.grid
            }
            for name, family in families.items()
        }
        for name, values in own.items():
            label = f"params.{problem}.{name}"
            if name not in families:
                raise fail(label, "is not a variant of the study that takes parameters")
            for key, value in values.items():
                if key not in families[name].grid:
                    raise fail(
                        f"{label}.{key}",
                        f"{name} takes {', '.join(sorted(families[name].grid))}, not {key!r}",
                    )
                grids[name][key] = _parameter_values(value, f"{label}.{key}", fail)
        out[problem] = {name: grid for name, grid in grids.items() if grid}
    return out


def _parameter_values(values, label: str, fail) -> tuple[float, ...]:
    """A parameter's grid: a non-empty list of distinct finite numbers (integers for a seed)."""
    if not isinstance(values, list) or not values:
        raise fail(label, f"must be a non-empty list of numbers, got {values!r}")
    if len(values) > MAX_PARAMETER_VALUES:
        raise fail(label, f"at most {MAX_PARAMETER_VALUES} values, got {len(values)}")
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise fail(label, f"must list finite numbers, got {value!r}")
        if label.endswith(".seed") and (not float(value).is_integer() or value < 0):
            raise fail(label, f"seeds are non-negative integers, got {value!r}")
    if len(set(map(float, values))) != len(values):
        raise fail(label, "lists a value twice")
    return tuple(float(v) for v in values)


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
    low, high = -DECADE_LIMIT, DECADE_LIMIT
    if value[0] < low or value[1] > high:
        raise fail(f"grid.{key}", f"decades must lie within [{low}, {high}], got {value!r}")
    return value[0], value[1]


def _grid(grid, problems, fail) -> Grid:
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
    if max(sizes) > MAX_SIZE:
        raise fail("grid.sizes", f"sizes above {MAX_SIZE:,} are not supported, got {max(sizes)}")
    if len(set(sizes)) != len(sizes):  # one size twice would measure its inputs twice
        raise fail("grid.sizes", "lists a value twice")
    _check_matrix_sizes(sizes, problems, fail)
    samples = _samples(grid.get("samples_per_cell"), "grid.samples_per_cell", fail)
    overrides = grid.get("problem_samples", {})
    if not isinstance(overrides, dict):
        raise fail("grid.problem_samples", "must be a table of problem = samples per cell")
    for problem, value in overrides.items():
        if problem not in problems:
            raise fail(f"grid.problem_samples.{problem}", "is not one of the study's problems")
        _samples(value, f"grid.problem_samples.{problem}", fail)
    return Grid(
        log10_cond=_int_range(grid, "log10_cond", fail),
        log10_magnitude=_int_range(grid, "log10_magnitude", fail),
        sizes=tuple(sizes),
        samples_per_cell=samples,
        problem_samples=dict(overrides),
    )


def _samples(value, key: str, fail) -> int:
    """A number of inputs per cell: a positive integer up to `MAX_SAMPLES`."""
    value = _positive_int(value, key, fail)
    if value > MAX_SAMPLES:
        raise fail(key, f"at most {MAX_SAMPLES:,} inputs per cell are supported, got {value:,}")
    return value


def _check_matrix_sizes(sizes: list[int], problems: tuple[str, ...], fail) -> None:
    """Matrix problems (an input whose rows and columns both grow with n) take n up to
    `MAX_MATRIX_SIZE`."""
    matrices = [name for name in problems if _is_matrix(PROBLEMS[name])]
    if matrices and max(sizes) > MAX_MATRIX_SIZE:
        raise fail(
            "grid.sizes",
            f"matrix problems ({', '.join(matrices)}) take sizes up to {MAX_MATRIX_SIZE:,}, "
            f"got {max(sizes):,}",
        )


def _is_matrix(problem) -> bool:
    small, large = problem.input_shape(7), problem.input_shape(11)
    return sum(a != b for a, b in zip(small, large, strict=True)) >= 2


QUANTISE_KEYS = {"schemes", "block_size", "scale_rule"}
SCALE_RULES = ("ocp", "round_up")


def _quantise(table, fail) -> tuple[Quantisation, ...]:
    """``[quantise]``: ``schemes`` (names of `precision.core.quantise.SCHEMES`), and optional
    grids ``block_size`` (for MX and NVFP4 schemes; default each scheme's own) and
    ``scale_rule`` (for MX schemes; default ["ocp"]). Each scheme runs once per applicable
    combination, in the order given."""
    if table is None:
        return ()
    if not isinstance(table, dict):
        raise fail("quantise", "must be a table with schemes (and block_size, scale_rule)")
    _check_keys(table, QUANTISE_KEYS, "quantise.", fail)
    schemes = _names(table, "schemes", SCHEMES, fail, label="quantise.schemes")
    blocks = table.get("block_size")
    if blocks is not None:
        if not isinstance(blocks, list) or not blocks:
            raise fail("quantise.block_size", "must be a non-empty list of positive integers")
        blocks = [_positive_int(b, "quantise.block_size", fail) for b in blocks]
        if len(set(blocks)) != len(blocks):
            raise fail("quantise.block_size", "lists a value twice")
    rules = table.get("scale_rule", ["ocp"])
    if not isinstance(rules, list) or not rules:
        raise fail("quantise.scale_rule", f"must be a non-empty list of {' / '.join(SCALE_RULES)}")
    for rule in rules:
        if rule not in SCALE_RULES:
            raise fail(
                "quantise.scale_rule", f"unknown rule {rule!r}" + did_you_mean(rule, SCALE_RULES)
            )
    if len(set(rules)) != len(rules):
        raise fail("quantise.scale_rule", "lists a rule twice")
    out = []
    for scheme in schemes:
        kind, _, default_block = SCHEMES[scheme]
        sizes = [None] if kind == "tensor" else (blocks or [default_block])
        for size in sizes:
            for rule in rules if kind == "mx" else [None]:
                out.append(Quantisation(scheme, size, rule))
    return tuple(out)


def _positive_int(value, key: str, fail) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise fail(key, f"must be a positive integer, got {value!r}")
    return value


def _datasets(table, base: Path, fail) -> tuple[Dataset, ...]:
    if not isinstance(table, dict):
        raise fail("datasets", "must be a table of named data sets")
    out = []
    for name, entry in table.items():
        if name == "synthetic" or not all(ch.isalnum() or ch in "-_" for ch in name):
            raise fail(
                f"datasets.{name}",
                "a data set's name must use only letters, digits, '-' and '_' "
                "and must not be 'synthetic' (the grid's source)",
            )
        if not isinstance(entry, dict):
            raise fail(f"datasets.{name}", "must be a table with path and rows")
        _check_keys(entry, DATASET_KEYS, f"datasets.{name}.", fail)
        if not isinstance(entry.get("path"), str):
            raise fail(f"datasets.{name}.path", "must be a string")
        path = _resolved(base / entry["path"])
        if path.suffix != ".npy" or not path.is_file():
            raise fail(f"datasets.{name}.path", f"no .npy file at {path}")
        _check_matrix(path, f"datasets.{name}.path", fail)
        rows = _positive_int(entry.get("rows"), f"datasets.{name}.rows", fail)
        out.append(Dataset(name, path, rows))
    return tuple(out)


def _check_finite_rows(datasets: tuple[Dataset, ...], seed: int, fail) -> None:
    """Refuse a data set whose drawn rows hold NaN or inf, when the spec is read and before any
    work: such a row has no exact result and would be measured as an input beyond the format
    (``input_overflow``), with numpy's RuntimeWarnings on the way. Only the rows the study
    draws (``rows`` of them, from the spec's seed) matter."""
    from precision.run.sampling import dataset_rows

    for dataset in datasets:
        data = np.load(dataset.path, mmap_mode="r", allow_pickle=False)
        drawn = dataset_rows(data, rows=dataset.rows, seed=seed)
        bad = int((~np.isfinite(drawn).all(axis=1)).sum())
        if bad:
            raise fail(
                f"datasets.{dataset.name}.path",
                f"{bad} of the {len(drawn)} rows drawn from {dataset.path.name} hold NaN or inf;"
                " a data set must be finite (remove those rows)",
            )


def _resolved(path: Path) -> Path:
    """The absolute path, or ``path`` itself where it cannot be resolved (a NUL character)."""
    try:
        return path.resolve()
    except (OSError, ValueError):
        return path


def _check_matrix(path: Path, key: str, fail) -> None:
    """The data set must load without pickle as a 2-D real matrix with at least one column;
    its header is checked against the file's size first (`precision.core.values.npy_header`)."""
    try:
        npy_header(path, regular_file_size(path, MAX_DATASET_BYTES))
    except (OSError, ValueError) as exc:
        raise fail(key, f"cannot load {path} as a .npy array: {exc}") from None
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise fail(key, f"cannot load {path} as a .npy array: {exc}") from None
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] == 0:
        shape = getattr(data, "shape", None)
        raise fail(key, f"{path} must hold a 2-D matrix (rows x logits), got shape {shape}")
    if data.dtype.kind not in "iuf":
        raise fail(key, f"{path} must hold real numbers, got dtype {data.dtype}")
