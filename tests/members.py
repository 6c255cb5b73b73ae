"""The variants a test runs: every member of a family (one per point of its default parameter
grid), each under its label (``forward h=2^-12``), beside the variants without parameters."""

from __future__ import annotations

from collections.abc import Mapping

from precision.core.schema import variant_label
from precision.problems.base import Variant


def members(variants: Mapping[str, Variant]) -> dict[str, Variant]:
    """Label -> runnable variant, in registration order, families expanded."""
    return {
        variant_label(name, member.params): member
        for name, variant in variants.items()
        for member in variant.expand()
    }


def bound_problem(problem):
    """``problem`` bound to the default values of the parameters its exact result depends on
    (`Problem.reference_params`: Adam's eps), read from its first variant's default grid; the
    problem itself when it has none."""
    if not problem.reference_params:
        return problem
    first = next(iter(problem.variants.values())).expand()[0]
    return problem.for_variant(first)
