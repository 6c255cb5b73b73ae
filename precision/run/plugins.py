"""User modules a study spec names (``plugins = ["my_kernels"]``): found, imported once.

A plugin is a Python module that registers kernels or problems (`precision.kernel`,
`precision.register_problem`) when imported. A name is looked up first as a file beside the
spec (``my_kernels`` -> ``<spec folder>/my_kernels.py``; a name ending in ``.py`` is a path,
relative to the spec's folder), then as an importable module on ``sys.path``. The spec keeps
the resolved names, so worker processes (spawned pool, Dask) import exactly the same modules
before they run a chunk.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

_LOADED: dict[str, str] = {}
"""Resolved plugin -> sha256 of its source, for every plugin imported in this process."""


class PluginError(Exception):
    """A plugin that cannot be found or imported (one line: which, and why)."""


def resolve(name: str, *, base: Path) -> str:
    """The absolute path of a plugin file beside the spec, or the module name to import."""
    if not isinstance(name, str) or not name.strip():
        raise PluginError(f"plugin names must be non-empty strings, got {name!r}")
    path = Path(base) / (name if name.endswith(".py") else f"{name}.py")  # absolute stays
    if path.is_file():
        return str(path.resolve())
    if name.endswith(".py"):
        raise PluginError(f"plugin {name}: no such file {path}")
    return name


def load(resolved: str) -> str:
    """Import one resolved plugin (once per process) and return the sha256 of its source."""
    if resolved in _LOADED:
        return _LOADED[resolved]
    try:
        module = _import(resolved)
    except PluginError:
        raise
    except Exception as exc:  # the user's module failed while importing: say how, in one line
        message = " ".join(str(exc).split())
        raise PluginError(
            f"plugin {resolved}: import failed: {type(exc).__name__}: {message}"
        ) from exc
    _LOADED[resolved] = _source_digest(module)
    return _LOADED[resolved]


def load_all(resolved: tuple[str, ...]) -> str:
    """Import every plugin of a spec; returns one sha256 over their sources ("" for none)."""
    digests = [load(name) for name in resolved]
    return hashlib.sha256("".join(digests).encode()).hexdigest() if digests else ""


def _import(resolved: str):
    if not resolved.endswith(".py"):
        try:
            return importlib.import_module(resolved)
        except ModuleNotFoundError as exc:
            if exc.name != resolved.split(".")[0]:
                raise
            raise PluginError(
                f"plugin {resolved}: no file {resolved}.py beside the spec and no module "
                f"{resolved!r} on sys.path"
            ) from None
    path = Path(resolved)
    module_name = path.stem
    existing = sys.modules.get(module_name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == path:
        return existing  # already imported by the user (a notebook): reuse, do not register twice
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {resolved}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _source_digest(module) -> str:
    try:
        return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()
    except (OSError, TypeError, AttributeError):
        return ""
