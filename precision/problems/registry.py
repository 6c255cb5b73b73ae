"""Kernels and problems from outside the package: the public registration API.

A user's kernel is a *batch* kernel, as deep-learning code calls kernels: ``kernel(X) -> Y``
with ``X`` of shape ``(batch, *input_shape)`` in the format's dtype and each row computed
independently. ``@precision.kernel("softmax", name="fused_exp2")`` adds it to the problem's
variants (it runs where a spec or `precision.run.evaluate` names it) and returns the function
unchanged. ``precision.register_problem(problem)`` adds a new `Problem`. Built-in names are
never replaced; registering the same function again (a plugin module imported twice, in a
notebook and by a study) is a no-op.

The runner calls a batch kernel once per chunk and format, on all of the chunk's inputs
(`precision.run.measure`); ``Variant.compute`` calls it on a batch of one row for one input.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from precision.core.formats import Format
from precision.core.schema import PARAMETERS
from precision.problems import PROBLEMS
from precision.problems.base import Problem, Variant, same_as_format

BUILTIN_VARIANTS: dict[str, frozenset[str]] = {
    name: frozenset(problem.variants) for name, problem in PROBLEMS.items()
}
"""The variants each built-in problem has before any user registration."""


class RegistrationError(ValueError):
    """A kernel or problem that cannot be registered (a name taken, an unknown problem); the
    message is one line naming what is wrong."""


@dataclass(frozen=True)
class Registration:
    """Where a user kernel or problem came from (shown by ``precision list``)."""

    problem: str
    name: str
    origin: str  # "file.py:qualname" of the function or of the problem's reference
    path: str = ""  # the absolute path of that file ("" where Python cannot tell)


USER_KERNELS: dict[tuple[str, str], Registration] = {}
USER_PROBLEMS: dict[str, Registration] = {}


def kernel(
    problem: str,
    *,
    name: str | None = None,
    bound: Callable[[np.ndarray, Format], float] | None = None,
    accumulator: str | Callable[[Format], str] | None = None,
    library: str = "user",
    description: str = "",
    params: Mapping[str, Sequence[float]] | None = None,
) -> Callable[[Callable], Callable]:
    """Register a batch kernel as a variant of ``problem``; returns the function unchanged.

    Parameters
    ----------
    problem : str
        The problem it computes (``"softmax"``, or a problem added by `register_problem`).
    name : str, keyword-only
        The variant's name in tables (default: the function's name). Must not be a built-in
        variant of the problem.
    bound : callable, keyword-only
        ``bound(X, fmt) -> (batch,)`` array: a known first-order bound on the normwise
        relative error of each row of the batch ``X``, or None.
    accumulator : str or callable, keyword-only
        The precision its reductions accumulate in: a format name (``"float32"``), or
        ``accumulator(fmt) -> str``; default the format itself.
    library : str, keyword-only
        The distribution whose version the rows record (default ``"user"``: none).
    description : str, keyword-only
    params : mapping of str to sequence of float, keyword-only
        The kernel's parameters and their default values (``{"eps": [1e-5, 1e-3]}``): it is
        then a family, called as ``kernel(X, eps=...)`` (and ``bound(X, fmt, eps=...)``) once
        per point of the grid, which a spec may replace (``[params.<problem>]``). Each name
        must be a column of the table (`precision.core.schema.PARAMETERS`).

    Examples
    --------
    >>> import precision as pr
    >>> @pr.kernel("softmax", name="fused_exp2")
    ... def fused_exp2(x):                      # x: (batch, n) in the format's dtype
    ...     z = x - x.max(axis=-1, keepdims=True)
    ...     e = np.exp2(z * x.dtype.type(1.4426950408889634))
    ...     return e / e.sum(axis=-1, keepdims=True)
    """

    def register(fn: Callable) -> Callable:
        variant_name = name or fn.__name__
        _check_kernel_name(problem, variant_name, fn)
        accumulate = _accumulator(accumulator)
        variant = Variant(
            variant_name,
            fn,
            bound,
            accumulate,
            library,
            description or (inspect.getdoc(fn) or "").split("\n")[0],
            grid=_grid(variant_name, params),
            batched=True,
        )
        target = PROBLEMS[problem]
        _check_reference_params(target, variant, where=origin(fn))
        PROBLEMS[problem] = dataclasses.replace(
            target, variants={**target.variants, variant_name: variant}
        )
        USER_KERNELS[problem, variant_name] = Registration(
            problem, variant_name, origin(fn), source_path(fn)
        )
        fn.precision_variant = (problem, variant_name)  # for evaluate(fn, ...)
        return fn

    return register


def register_problem(problem: Problem) -> Problem:
    """Add a new `Problem` (its reference written against `precision.core.numbers.NumberSystem`,
    as the built-in ones are); returns it. Its own variants are its default ones."""
    if not isinstance(problem, Problem):
        raise RegistrationError(f"register_problem: expected a Problem, got {type(problem)}")
    where = origin(problem.reference)
    known = USER_PROBLEMS.get(problem.name)
    if problem.name in BUILTIN_VARIANTS or (known and known.origin != where):
        raise RegistrationError(
            f"problem {problem.name!r} ({where}) is already defined"
            + (f" by {known.origin}" if known else " (a built-in problem)")
        )
    for key in problem.reference_params:
        if key not in PARAMETERS:
            raise RegistrationError(
                f"problem {problem.name!r} ({where}): reference parameter {key!r} is not a "
                f"column of the table (known: {', '.join(PARAMETERS)})"
            )
    for variant in problem.variants.values():
        _check_reference_params(problem, variant, where=where)
    PROBLEMS[problem.name] = problem
    USER_PROBLEMS[problem.name] = Registration(
        problem.name, "", where, source_path(problem.reference)
    )
    return problem


def _check_reference_params(problem: Problem, variant: Variant, *, where: str) -> None:
    """Every variant of a problem whose exact result depends on parameters
    (`Problem.reference_params`) must be a family over them: its rows need their values to know
    which ground truth they are measured against."""
    missing = [key for key in problem.reference_params if key not in variant.grid]
    if missing:
        raise RegistrationError(
            f"variant {variant.name} of {problem.name} ({where}) must take the parameters "
            f"{missing} that the exact result depends on (params={{...}})"
        )


def origin(fn: Callable) -> str:
    """``file.py:qualname`` of a function (``?`` where Python cannot tell)."""
    try:
        path = Path(inspect.getsourcefile(fn) or "?").name
    except TypeError:  # a builtin or a C function
        path = "?"
    return f"{path}:{getattr(fn, '__qualname__', repr(fn))}"


def source_path(fn: Callable) -> str:
    """The absolute path of the file defining ``fn`` ("" where Python cannot tell)."""
    try:
        return str(Path(inspect.getsourcefile(fn) or "").resolve()) if fn else ""
    except TypeError:
        return ""


def _check_kernel_name(problem: str, name: str, fn: Callable) -> None:
    if problem not in PROBLEMS:
        close = difflib.get_close_matches(str(problem), list(PROBLEMS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (see precision list)"
        raise RegistrationError(f"kernel {name}: unknown problem {problem!r}{hint}")
    if not isinstance(name, str) or not name.isidentifier():
        raise RegistrationError(f"kernel name must be an identifier, got {name!r}")
    if name in BUILTIN_VARIANTS.get(problem, ()):
        raise RegistrationError(
            f"kernel {name} ({origin(fn)}): {problem} already has a built-in variant {name!r}; "
            "choose another name"
        )
    known = USER_KERNELS.get((problem, name))
    if known is not None and known.origin != origin(fn):
        raise RegistrationError(
            f"kernel {name} ({origin(fn)}): {problem}/{name} is already registered by "
            f"{known.origin}"
        )


def _grid(name: str, params) -> dict[str, tuple[float, ...]]:
    """A user kernel's parameter grid, checked: known parameter names, non-empty lists of
    finite numbers."""
    grid = {}
    for key, values in (params or {}).items():
        if key not in PARAMETERS:
            raise RegistrationError(
                f"kernel {name}: parameter {key!r} is not a column of the table "
                f"(known: {', '.join(PARAMETERS)})"
            )
        values = np.atleast_1d(np.asarray(values, dtype=float)) if values is not None else []
        if len(values) == 0 or not np.all(np.isfinite(values)):
            raise RegistrationError(f"kernel {name}: params.{key} must list finite numbers")
        grid[key] = tuple(float(v) for v in values)
    return grid


def _accumulator(accumulator) -> Callable[[Format], str]:
    if accumulator is None:
        return same_as_format
    if callable(accumulator):
        return accumulator
    return lambda fmt, name=str(accumulator): name
