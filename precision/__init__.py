"""precision: measure how deep-learning algorithms lose accuracy in low-precision floating point.

Every algorithm runs in float16, bfloat16, float32 and float64 and is compared with certified
mpmath ground truth. Start with :mod:`precision.metrics` (error measures on numpy arrays),
:mod:`precision.formats` (the format registry), :func:`precision.evaluate` (one input, every
variant and format, as a DataFrame) and :func:`precision.study.run`.
"""

__version__ = "0.1.0"

# The function, not its module: ``precision.evaluate("softmax", [1000, 1000, 1000])``.
from precision.evaluate import evaluate  # noqa: E402

__all__ = ["__version__", "evaluate"]
