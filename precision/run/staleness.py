"""Whether a stored study is still what its spec and today's code would give, and the command
that reruns it. Above the store, because it loads the spec as the runner would."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from precision import store
from precision.run.spec import SpecError, load_spec
from precision.store.results import StoredStudy, spec_file


def staleness(study: StoredStudy) -> list[str]:
    """Why a stored study may no longer be what its spec and the code would give today.

    Compares the fingerprints in meta.json (`precision.store.spec_fingerprint`, recorded for
    the spec as run, after any ``--quick`` overrides, and `precision.store.code_fingerprint`)
    with those of the spec file as it is now (with and without its [quick] overrides) and of
    the code as it is now, and the table's sha256 with the one recorded when it was written.
    Returns one reason per finding; an empty list means current.
    """
    meta, reasons = study.meta, []
    path = spec_file(meta)
    if path is None:
        reasons.append(f"its spec file {meta.get('spec_file')} no longer exists")
    else:
        current = set()
        for quick in (False, True):
            try:
                current.add(store.spec_fingerprint(load_spec(path, quick=quick)))
            except SpecError:
                continue  # no [quick] table, or a spec that no longer loads
        if meta.get("spec_sha256") not in current:
            reasons.append(f"its spec file {path} changed since the run")
    if meta.get("code_sha256") != store.code_fingerprint():
        reasons.append("the precision code changed since the run (code fingerprint differs)")
    missing = getattr(study.table, "attrs", {}).get("missing_columns")
    if missing:
        reasons.append(f"its table predates the columns {', '.join(missing)}")
    recorded = meta.get("table_sha256")
    table_file = study.folder / "errors.parquet"
    if recorded and table_file.is_file():
        if hashlib.sha256(table_file.read_bytes()).hexdigest() != recorded:
            reasons.append("errors.parquet was modified after the run")
    return reasons


def rerun_command(meta: dict, folder: Path) -> str:
    """The command that reruns a study into ``folder`` (``--quick`` when that is what ran)."""
    path = meta.get("spec_file") or "SPEC.toml"
    quick = ""
    found = spec_file(meta)
    if found is not None:
        try:
            if store.spec_fingerprint(load_spec(found, quick=True)) == meta.get("spec_sha256"):
                quick = " --quick"
        except SpecError:
            pass
    return f"precision run {shlex.quote(str(path))}{quick} --out {shlex.quote(str(folder))}"
