"""Test-suite settings: hypothesis is derandomised under CI, so a landing never depends on luck
(locally it explores new examples on every run)."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
