"""The problem registry: every problem the study runner knows, listed explicitly."""

import dataclasses

from precision.problems import (
    batchnorm,
    cancellation,
    constrained,
    derivatives,
    emulated,
    frameworks,
    least_squares,
    norms,
    summation,
    variance,
    weight_update,
)
from precision.problems.activations import GELU, SILU
from precision.problems.adam import ADAM
from precision.problems.attention import ATTENTION
from precision.problems.base import MeasureOne, Problem, Variant
from precision.problems.batchnorm import BATCHNORM, BATCHNORM_FINFO_EPS
from precision.problems.cancellation import CANCELLATION
from precision.problems.constrained import CONSTRAINED_LS
from precision.problems.critical_points import CRITICAL_POINT
from precision.problems.cross_entropy import CROSS_ENTROPY
from precision.problems.derivatives import FD_EXP, FD_NETWORK, FD_SOFTPLUS
from precision.problems.dot import DOT
from precision.problems.exp import EXP
from precision.problems.hessian import FD_HESSIAN
from precision.problems.least_squares import LEAST_SQUARES, LEAST_SQUARES_RESIDUAL, RIDGE
from precision.problems.linear_systems import LINEAR_SYSTEM
from precision.problems.log_softmax import LOG_SOFTMAX
from precision.problems.logsumexp import LOGSUMEXP
from precision.problems.loss_scaling import LOSS_SCALING
from precision.problems.matrix_condition import MATRIX_CONDITION
from precision.problems.norms import LAYER_NORM, RMS_NORM
from precision.problems.quadratic import QUADRATIC
from precision.problems.softmax import SOFTMAX
from precision.problems.summation import SUMMATION
from precision.problems.variance import VARIANCE
from precision.problems.weight_update import WEIGHT_UPDATE

PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        EXP,
        SOFTMAX,
        LOGSUMEXP,
        LOG_SOFTMAX,
        CROSS_ENTROPY,
        SUMMATION,
        DOT,
        GELU,
        SILU,
        CANCELLATION,
        VARIANCE,
        BATCHNORM,
        BATCHNORM_FINFO_EPS,
        LAYER_NORM,
        RMS_NORM,
        ATTENTION,
        FD_EXP,
        FD_SOFTPLUS,
        FD_NETWORK,
        FD_HESSIAN,
        QUADRATIC,
        CRITICAL_POINT,
        CONSTRAINED_LS,
        WEIGHT_UPDATE,
        ADAM,
        LOSS_SCALING,
        LINEAR_SYSTEM,
        MATRIX_CONDITION,
        LEAST_SQUARES,
        LEAST_SQUARES_RESIDUAL,
        RIDGE,
    )
}

DEFAULT_VARIANTS: dict[str, tuple[str, ...]] = {n: tuple(p.variants) for n, p in PROBLEMS.items()}
"""The variants a study runs when its spec names none: each problem module's own. The emulated,
float32 and library variants added below run only when a spec names them, so a study's table
does not change with the libraries installed."""


def _with_extra_variants(problem: Problem) -> Problem:
    """The problem with its emulated / float32 variants and the kernels of the installed
    libraries (`frameworks`) added after its own variants."""
    extra = emulated.extra_variants(problem.name) | frameworks.library_variants(problem.name)
    return (
        dataclasses.replace(problem, variants={**problem.variants, **extra}) if extra else problem
    )


PROBLEMS = {name: _with_extra_variants(problem) for name, problem in PROBLEMS.items()}


def unavailable_variant(problem: str, variant: str) -> str | None:
    """One line saying why ``variant`` of ``problem`` cannot run here (its library is not
    installed, no CUDA device), or None."""
    return frameworks.unavailable_variant(problem, variant)


def _unmeasured(examples):
    """Worked examples that the problem's own code computes alone (no ground truth needed)."""

    def worked_examples(measure: MeasureOne) -> list:
        return examples()

    return worked_examples


WORKED_EXAMPLES = {
    "summation": _unmeasured(summation.worked_examples),
    "cancellation": _unmeasured(cancellation.worked_examples),
    "variance": _unmeasured(variance.worked_examples),
    "batchnorm": _unmeasured(batchnorm.worked_examples),
    "rms_norm": _unmeasured(norms.worked_examples),
    "weight_update": _unmeasured(weight_update.worked_examples),
    "least_squares": least_squares.worked_examples,
    "constrained_ls": _unmeasured(constrained.worked_examples),
    "fd_exp": _unmeasured(derivatives.worked_examples),
}
"""Problem name -> ``worked_examples(measure) -> [(title, explanation, DataFrame)]``: examples
computed during the run of a study that includes the problem
(`precision.run.study.worked_example_tables`, which passes its `MeasureOne`) and stored with it,
which its summary.md and the report then read."""

__all__ = [
    "DEFAULT_VARIANTS",
    "PROBLEMS",
    "WORKED_EXAMPLES",
    "Problem",
    "Variant",
    "unavailable_variant",
]
