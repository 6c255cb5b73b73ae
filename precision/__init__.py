"""precision: measure how deep-learning kernels lose accuracy in low-precision floating point.

Every kernel runs in float16, bfloat16, float32 and float64 (and the 8-bit formats) and is
compared with certified ground truth. The public face:

- `evaluate` (one input, every variant and format, as a DataFrame) and `run_study` (a spec's
  whole table);
- `kernel` (register a batch kernel of your own as a variant of a problem) and
  `register_problem` (a new `Problem`, its reference written over `precision.core.numbers`);
- `metrics` (error measures on numpy arrays, batched along a first axis) and `formats` (the
  format registry and exact rounding).

The package is laid out by pipeline stage, each importing only the floors below it: `core`
(formats, number systems, metrics, emulated arithmetic, the table schema), `store` (the only
writer of files), `problems`, `truth` (certified ground truth), `run` (specs, chunks,
executors) and `report` (summaries, figures, claims, the report); the `precision` command
(`precision.cli`) sits on top.
"""

__version__ = "0.1.0"

# The functions, not their modules: ``precision.evaluate("softmax", [1000, 1000, 1000])``.
from precision.core import formats, metrics  # noqa: E402
from precision.problems.base import Problem, Variant  # noqa: E402
from precision.problems.registry import kernel, register_problem  # noqa: E402
from precision.run.api import run_study  # noqa: E402
from precision.run.evaluate import evaluate  # noqa: E402

__all__ = [
    "Problem",
    "Variant",
    "__version__",
    "evaluate",
    "formats",
    "kernel",
    "metrics",
    "register_problem",
    "run_study",
]
