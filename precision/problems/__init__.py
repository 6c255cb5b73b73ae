"""The problem registry: every problem the study runner knows, listed explicitly."""

from precision.problems.base import Problem, Variant
from precision.problems.cross_entropy import CROSS_ENTROPY
from precision.problems.exp import EXP
from precision.problems.log_softmax import LOG_SOFTMAX
from precision.problems.logsumexp import LOGSUMEXP
from precision.problems.softmax import SOFTMAX

PROBLEMS: dict[str, Problem] = {
    p.name: p for p in (EXP, SOFTMAX, LOGSUMEXP, LOG_SOFTMAX, CROSS_ENTROPY)
}

__all__ = ["PROBLEMS", "Problem", "Variant"]
