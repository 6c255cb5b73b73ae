"""precision: measure how deep-learning algorithms lose accuracy in low-precision floating point.

Every algorithm runs in float16, bfloat16, float32 and float64 and is compared with certified
mpmath ground truth. Start with :mod:`precision.metrics` (error measures on numpy arrays),
:mod:`precision.formats` (the format registry) and :func:`precision.study.run`.
"""

__version__ = "0.1.0"
