"""The problem registry: every problem the study runner knows, listed explicitly."""

from precision.problems import batchnorm, cancellation, summation, variance
from precision.problems.base import Problem, Variant
from precision.problems.batchnorm import BATCHNORM, BATCHNORM_FINFO_EPS
from precision.problems.cancellation import CANCELLATION
from precision.problems.cross_entropy import CROSS_ENTROPY
from precision.problems.exp import EXP
from precision.problems.log_softmax import LOG_SOFTMAX
from precision.problems.logsumexp import LOGSUMEXP
from precision.problems.softmax import SOFTMAX
from precision.problems.summation import SUMMATION
from precision.problems.variance import VARIANCE

PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        EXP,
        SOFTMAX,
        LOGSUMEXP,
        LOG_SOFTMAX,
        CROSS_ENTROPY,
        SUMMATION,
        CANCELLATION,
        VARIANCE,
        BATCHNORM,
        BATCHNORM_FINFO_EPS,
    )
}

WORKED_EXAMPLES = {
    "summation": summation.worked_examples,
    "cancellation": cancellation.worked_examples,
    "variance": variance.worked_examples,
    "batchnorm": batchnorm.worked_examples,
}
"""Problem name -> ``worked_examples() -> [(title, explanation, DataFrame)]``: computed examples
that a study's summary.md shows when the study includes the problem."""

__all__ = ["PROBLEMS", "WORKED_EXAMPLES", "Problem", "Variant"]
