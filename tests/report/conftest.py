"""Fixtures shared by the report tests.

Building a report with figures from two studies takes about half a minute; test_report.py and
test_site.py read the same one (`report_studies.build_shared_report`), built once per session.
They read it only: a test that edits results copies them first. The teardown checks that no
test wrote into it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from report_studies import SharedReport, build_shared_report, fingerprint


@pytest.fixture(scope="session")
def shared_report(tmp_path_factory) -> Iterator[SharedReport]:
    """The shared report (read-only), its results and ``precision report``'s answer."""
    built = build_shared_report(tmp_path_factory.mktemp("shared-report"))
    before = fingerprint(built.results)
    yield built
    assert fingerprint(built.results) == before, "a test wrote into the shared report's folder"
