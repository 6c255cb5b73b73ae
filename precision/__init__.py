"""precision: measure how deep-learning kernels lose accuracy in low-precision floating point.

Every kernel runs in float16, bfloat16, float32 and float64 (and the 8-bit formats) and is
compared with certified ground truth. The public face:

- `evaluate` (one input, every variant and format, as a DataFrame) and `run_study` (a spec's
  whole table);
- `kernel` (register a batch kernel of your own as a variant of a problem) and
  `register_problem` (a new `Problem`, its reference written over `precision.numbers`);
- `precision.metrics` (error measures on numpy arrays) and `precision.formats`.
"""

__version__ = "0.1.0"

# The functions, not their modules: ``precision.evaluate("softmax", [1000, 1000, 1000])``.
from precision import metrics  # noqa: E402
from precision.api import run_study  # noqa: E402
from precision.evaluate import evaluate  # noqa: E402
from precision.problems.base import Problem, Variant  # noqa: E402
from precision.problems.registry import kernel, register_problem  # noqa: E402

__all__ = [
    "Problem",
    "Variant",
    "__version__",
    "evaluate",
    "kernel",
    "metrics",
    "register_problem",
    "run_study",
]
