"""Storage: the only package that writes files, and the reader of what it wrote.

- `files`: atomic writes (temporary name, fsync, rename) and figure bytes;
- `meta`: what meta.json records (spec, code, lock, machine, fingerprints);
- `output`: a study's output folder, swapped in whole and locked against a second writer;
- `parts`: finished chunks streamed to disk, so that a killed run resumes;
- `cache`: the ground-truth cache;
- `results`: reading stored studies back.

It sits below the problems, ground truth and runner in the pipeline and imports none of them.
The names below are its public interface.
"""

from precision.store.cache import GroundTruthCache
from precision.store.files import (
    WriteError,
    atomic_write_bytes,
    png_bytes,
    remove_dead_temporaries,
    save_figure,
    scratch_folder,
    table_bytes,
    write_all_or_nothing,
)
from precision.store.meta import (
    LOCK_FILE,
    NOT_IN_RESULTS,
    RunSpec,
    code_fingerprint,
    flush_to_zero,
    lock_provenance,
    provenance,
    provenance_environment,
    spec_fingerprint,
)
from precision.store.output import (
    OutputConflict,
    check_output_folder,
    output_lock,
    recover_output,
    swap_in,
    write_report,
    write_study,
)
from precision.store.parts import Parts, clear_parts

__all__ = [
    "LOCK_FILE",
    "NOT_IN_RESULTS",
    "GroundTruthCache",
    "OutputConflict",
    "Parts",
    "RunSpec",
    "WriteError",
    "atomic_write_bytes",
    "check_output_folder",
    "clear_parts",
    "code_fingerprint",
    "flush_to_zero",
    "lock_provenance",
    "output_lock",
    "png_bytes",
    "provenance",
    "provenance_environment",
    "recover_output",
    "remove_dead_temporaries",
    "save_figure",
    "scratch_folder",
    "spec_fingerprint",
    "swap_in",
    "table_bytes",
    "write_all_or_nothing",
    "write_report",
    "write_study",
]
