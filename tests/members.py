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
