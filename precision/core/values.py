"""Input values typed by a user: parsed as data into a float64 array, never executed.

``precision eval`` takes its VALUES as a list of numbers (``1000,1000,1000`` or
``1000 1000 1000``), a JSON array (``[[1, 2], [0, 1]]`` for a 2 x n input), or the name of a
``.npy`` file (loaded without pickle) or a ``.csv`` file (a matrix, one row per line). Every
number becomes the float64 nearest to it; ``nan``, ``inf`` and ``-inf`` are accepted (and
evaluated as such), a decimal beyond float64's range is refused rather than turned into inf.
Anything else raises `InputError`, whose message is one line.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import zipfile
from pathlib import Path

import numpy as np

MAX_VALUES = 1_000_000
"""Most values one input may have (the same limit as a study's vector size)."""

FILE_SUFFIXES = (".npy", ".csv")

MAX_FILE_BYTES = 64 * 2**20
"""Largest VALUES file read (a million values as text fit in it)."""

_NPY_MAGIC = b"\x93NUMPY"

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPECIAL = re.compile(r"([+-]?)(nan|inf|infinity)", re.IGNORECASE)

HOW = "give numbers separated by commas, a JSON array, or a .npy or .csv file"


class InputError(ValueError):
    """Input values that cannot be evaluated; the message is one line saying what is wrong."""


def parse_values(text: str) -> np.ndarray:
    """The float64 array that VALUES ``text`` denotes (see the module docstring).

    Parameters
    ----------
    text : str
        A list of numbers, a JSON array, or the name of a ``.npy`` or ``.csv`` file.

    Returns
    -------
    numpy.ndarray
        float64, of one or two dimensions (a single number gives shape (1,)).

    Raises
    ------
    InputError
        For anything that is not such a list, array or file, naming what is wrong.
    """
    text = text.strip()
    if not text:
        raise InputError(f"VALUES: no values given ({HOW})")
    if text.lower().endswith(FILE_SUFFIXES):
        values = _load_file(Path(text))
    elif text.startswith("["):
        values = _parse_json(text)
    else:
        values = np.array([parse_number(token) for token in _tokens(text)], dtype=np.float64)
    return _checked(values, text)


def parse_number(token: str) -> float:
    """One decimal number (or nan, inf, -inf) as the nearest float64.

    Raises
    ------
    InputError
        For text that is not a number, or a decimal beyond float64's range (which would
        otherwise silently become an infinity).
    """
    word = token.strip()
    special = _SPECIAL.fullmatch(word)
    if special:
        value = math.nan if special[2].lower() == "nan" else math.inf
        return -value if special[1] == "-" else value
    if not _DECIMAL.fullmatch(word):
        raise InputError(f"VALUES: {_shorten(token)!r} is not a number ({HOW})")
    value = float(word)
    if math.isinf(value):
        raise InputError(
            f"VALUES: {_shorten(word)} is beyond float64's range (largest 1.8e+308); "
            "write inf for an infinite input"
        )
    return value


def logits_with_target(logits: np.ndarray, target: str) -> np.ndarray:
    """The (2, n) cross-entropy input of a logit vector and a target class index.

    Parameters
    ----------
    logits : numpy.ndarray
        One-dimensional logits.
    target : str
        The class index k, 0 <= k < n, as typed; row 1 is the one-hot vector of class k.

    Raises
    ------
    InputError
        When the logits are not a vector or the index is not a class of it.
    """
    if logits.ndim != 1:
        raise InputError(f"--target: needs a vector of logits, got shape {_shape(logits)}")
    n = logits.size
    digits = target.strip()
    # Compared by length first: int() of a 5,000-digit string is refused by Python itself.
    if (
        not re.fullmatch(r"\d+", digits)
        or len(digits.lstrip("0")) > len(str(n))
        or int(digits.lstrip("0") or "0") >= n
    ):
        raise InputError(
            f"--target: must be a class index from 0 to {n - 1}, got {_shorten(target)!r}"
        )
    one_hot = np.zeros(n)
    one_hot[int(target)] = 1.0
    return np.stack([logits, one_hot])


def _tokens(text: str) -> list[str]:
    """The entries of a comma- or whitespace-separated list; an empty entry is an error."""
    if "," not in text:
        return text.split()
    tokens = [token.strip() for token in text.split(",")]
    if "" in tokens:
        position = tokens.index("") + 1
        raise InputError(f"VALUES: entry {position} of {_shorten(text)!r} is empty ({HOW})")
    return tokens


def _parse_json(text: str) -> np.ndarray:
    try:
        data = json.loads(text, parse_float=parse_number, parse_int=parse_number)
    except json.JSONDecodeError as exc:
        message = f"VALUES: not a valid JSON array: {exc.msg} at column {exc.colno}"
        raise InputError(message) from None
    except RecursionError:
        raise InputError("VALUES: JSON array nested too deeply") from None
    return _from_nested(data)


def _from_nested(data) -> np.ndarray:
    """A list of numbers, or a list of equally long lists of numbers, as float64."""
    if not isinstance(data, list):
        raise InputError(f"VALUES: expected a JSON array, got {type(data).__name__}")
    if data and all(isinstance(row, list) for row in data):
        rows = [[_json_number(v) for v in row] for row in data]
        if len({len(row) for row in rows}) > 1:
            lengths = ", ".join(str(len(row)) for row in rows[:5])
            raise InputError(f"VALUES: rows of different lengths ({lengths}) in a 2-D input")
        return np.array(rows, dtype=np.float64).reshape(len(rows), -1)
    if any(isinstance(v, list) for v in data):
        raise InputError("VALUES: a JSON array mixes numbers and arrays")
    return np.array([_json_number(v) for v in data], dtype=np.float64)


def _json_number(value) -> float:
    if isinstance(value, float):  # parse_number made it: already checked
        return value
    if isinstance(value, str):  # "nan" or "inf" where JSON itself has no such literal
        return parse_number(value)
    if isinstance(value, list):
        raise InputError("VALUES: arrays of more than two dimensions are not supported")
    shown = json.dumps(value)
    raise InputError(f"VALUES: {_shorten(shown)} is not a number ({HOW})")


def _load_file(path: Path) -> np.ndarray:
    try:
        size = regular_file_size(path, MAX_FILE_BYTES)
        if path.suffix.lower() == ".npy":
            return _load_npy(path, size)
        return _load_csv(path)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{_one_line(path)}: no such file") from None
    except OSError as exc:
        raise InputError(f"{_one_line(path)}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # regular_file_size and npy_header say what is wrong
        raise InputError(f"{_one_line(path)}: {exc}") from None


def regular_file_size(path: Path, limit: int) -> int:
    """The size of ``path`` in bytes, checked to be a regular file of at most ``limit`` bytes.

    Opened without blocking and checked by its descriptor, so a FIFO (which would wait for a
    writer) or a device such as /dev/zero (endless) is refused before any read.

    Raises
    ------
    FileNotFoundError, OSError
        When it cannot be opened.
    ValueError
        When it is not a regular file or is larger than ``limit``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file (a pipe, a device or a folder)")
    if info.st_size > limit:
        raise ValueError(f"{info.st_size:,} bytes, more than the limit of {_bytes(limit)}")
    return info.st_size


def npy_header(path: Path, size: int) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file declares, checked against its ``size`` in bytes
    before any array is loaded (a header claiming terabytes is refused, not allocated).

    Raises
    ------
    ValueError
        For an .npz archive or a text file under a .npy name, a damaged header, pickled
        objects, a dtype that is not real numbers, or a size that does not match the header.
    """
    with open(path, "rb") as handle:
        start = handle.read(len(_NPY_MAGIC))
        if start.startswith(b"PK"):
            raise ValueError("holds an .npz archive, not one array")
        if start != _NPY_MAGIC:
            raise ValueError("not a .npy file (no .npy header; numbers as text belong in a .csv)")
        handle.seek(0)
        try:
            version = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0  # 2.0 and 3.0: a 4-byte length
            )
            shape, _, dtype = read(handle)
        except (ValueError, SyntaxError, EOFError) as exc:
            raise ValueError(f"damaged .npy header ({_shorten(str(exc), 80)})") from None
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError("holds pickled Python objects, which are never loaded")
    if dtype.kind not in "iuf":
        raise ValueError(f"must hold real numbers, got dtype {dtype}")
    expected = offset + math.prod(shape) * dtype.itemsize
    if expected != size:
        raise ValueError(
            f"its header declares shape {shape} of {dtype} ({expected:,} bytes) but the file "
            f"holds {size:,} bytes (truncated or damaged)"
        )
    return shape, dtype


def _load_npy(path: Path, size: int) -> np.ndarray:
    """A real array from a .npy file, loaded without pickle once its header checks out."""
    npy_header(path, size)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{_one_line(path)}: not a loadable .npy array: {exc}") from None
    with np.errstate(over="ignore"):
        return data.astype(np.float64)


def _bytes(count: int) -> str:
    """``1 MiB``, ``64 MiB``: a limit as the user reads it."""
    return f"{count / 2**20:g} MiB"


def _load_csv(path: Path) -> np.ndarray:
    """A .csv file of numbers: one row per line (a single line is a vector); blank lines and
    lines starting with # are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{_one_line(path)}: not a text file (UTF-8)") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                rows.append([parse_number(cell) for cell in line.split(",")])
            except InputError as exc:
                reason = str(exc).removeprefix("VALUES: ")
                raise InputError(f"{_one_line(path)}: line {number}: {reason}") from None
    if not rows:
        raise InputError(f"{_one_line(path)}: holds no numbers")
    if len({len(row) for row in rows}) > 1:
        raise InputError(f"{_one_line(path)}: rows of different lengths in a 2-D input")
    return np.array(rows[0] if len(rows) == 1 else rows, dtype=np.float64)


def _checked(values: np.ndarray, text: str) -> np.ndarray:
    if values.size == 0:
        raise InputError(f"VALUES: {_shorten(text)!r} holds no numbers ({HOW})")
    if values.ndim > 2:
        raise InputError(f"VALUES: arrays of {values.ndim} dimensions are not supported")
    if values.size > MAX_VALUES:
        raise InputError(f"VALUES: more than {MAX_VALUES:,} values are not supported")
    return values.reshape(1) if values.ndim == 0 else values


def _shape(x: np.ndarray) -> str:
    return " x ".join(str(d) for d in x.shape) or "()"


def _one_line(text) -> str:
    """User text (a file name, a value) with its line breaks escaped."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def _shorten(text: str, limit: int = 40) -> str:
    """At most ``limit`` characters of user text, on one line."""
    one_line = _one_line(text)
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."
