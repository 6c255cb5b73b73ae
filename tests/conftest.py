"""Test-suite settings and shared fixtures: hypothesis is derandomised under CI, so a landing
never depends on luck (locally it explores new examples on every run)."""

import os

import flint
import mpmath
import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def global_precision_unchanged():
    """A test of the number systems must leave mpmath's and flint's global precision at 53
    bits (the engines work inside ``workprec``, never by setting it)."""
    assert mpmath.mp.prec == 53 and flint.ctx.prec == 53
    yield
    assert mpmath.mp.prec == 53 and flint.ctx.prec == 53
