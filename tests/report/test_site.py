"""The report as a site: every link resolves, every study has a page, every claim reaches its
evidence, the glossary covers every variant, names are escaped and numbers sort as numbers.

The report read is the one test_report.py reads too (`report_studies.build_shared_report`, built
once per session): ``precision report``, with figures, from two tiny studies, one of them in a
folder named ``<script>``, and from the results of a benchmark written by the benchmarks' own
writer (`benchmarks.results.Results`).
"""

from __future__ import annotations

import random
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_studies import HOSTILE, SharedReport

from precision.core.schema import format_parameter
from precision.problems import PROBLEMS
from precision.report.blocks import Block
from precision.report.document import build_report, study_pages
from precision.report.pages import NO_DESCRIPTION, variant_description
from precision.report.site import table_view
from precision.store.results import find_studies, load_study


class Page(HTMLParser):
    """An HTML page's ids, references (href, src) and tables (caption -> rows of cell text
    and the links of each row)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.references: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.links: dict[str, list[list[str]]] = {}
        self.scripts = 0
        self._caption: str | None = None
        self._rows: list[list[str]] = []
        self._row_links: list[list[str]] = []
        self._text: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.references.append(attrs[key])
        self.scripts += tag == "script"
        if tag == "table":
            self._rows, self._row_links = [], []
        elif tag == "tr":
            self._rows.append([])
            self._row_links.append([])
        elif tag in ("td", "th", "caption"):
            self._text = []
        elif tag == "a" and self._rows and "href" in attrs:
            self._row_links[-1].append(attrs["href"])

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "caption":
            self._caption, self._text = "".join(self._text or []), None
        elif tag in ("td", "th"):
            self._rows[-1].append("".join(self._text or []).strip())
            self._text = None
        elif tag == "table":
            self.tables[self._caption or ""] = self._rows
            self.links[self._caption or ""] = self._row_links


@pytest.fixture(scope="module")
def site(shared_report: SharedReport) -> Path:
    """The shared report's folder (read-only), built once per session (`conftest`)."""
    assert shared_report.code == 0, shared_report.err
    return shared_report.folder


def pages_of(folder: Path) -> dict[str, Page]:
    return {p.name: Page(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.html"))}


def test_every_reference_of_every_page_resolves(site):
    pages = pages_of(site)
    assert len(pages) == 7  # index, claims, two studies, glossary, benchmarks, provenance
    checked = 0
    for name, page in pages.items():
        for reference in page.references:
            assert ":" not in reference.split("/")[0], (name, reference)  # nothing remote
            target, _, anchor = reference.partition("#")
            target = target or name
            assert (site / target).is_file(), (name, reference)
            if anchor:
                assert anchor in pages[target].ids, (name, reference)
            checked += 1
    assert checked > 100


def test_every_study_has_a_page_linked_from_the_index(site):
    keys = [p.name for p in find_studies(site.parent, skip=(site,))]
    assert sorted(keys) == sorted(["softmax", HOSTILE])
    index = Page((site / "index.html").read_text())
    names = [row[0] for row in index.tables["Studies"][1:]]
    linked = dict(zip(names, index.links["Studies"][1:], strict=True))
    for key, page in study_pages(keys).items():
        assert (site / page).is_file() and linked[key] == [page]


class Scoreboard(HTMLParser):
    """The index's scoreboard: for each verdict line, its label and its claims, each as
    [title, card href, evidence href or ""]."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[str, list[list[str]]]] = []
        self._inside = False
        self._target: list[str] | None = None
        self._href = ""
        self._evidence = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "ul" and attrs.get("class") == "scoreboard":
            self._inside = True
        elif self._inside and tag == "li":
            self.lines.append(("", []))
        elif self._inside and tag in ("span", "a"):
            self._target, self._href = [], attrs.get("href", "")
            self._evidence = attrs.get("class") == "evidence"

    def handle_data(self, data):
        if self._target is not None:
            self._target.append(data)

    def handle_endtag(self, tag):
        if tag == "ul":
            self._inside = False
        elif self._target is not None and tag in ("span", "a"):
            text = "".join(self._target).strip()
            label, claims = self.lines[-1]
            if tag == "span":
                self.lines[-1] = (text, claims)
            elif self._evidence:
                claims[-1][2] = self._href
            else:
                claims.append([text, self._href, ""])
            self._target = None


def _cards(text: str) -> dict[str, str]:
    """The claims page's cards by claim id: each card's HTML."""
    parts = text.split('<div class="claim" id="claim-')[1:]
    return {part.split('"', 1)[0]: part.split("</div>", 1)[0] for part in parts}


def test_every_claim_reaches_its_evidence_in_one_click(site):
    """The index's scoreboard lists every claim under its verdict, linking to its card and,
    in one click, to its evidence rows (claims/<id>.csv); the card links them too."""
    claims = pd.read_csv(site / "claims.csv", keep_default_na=False)
    board = Scoreboard((site / "index.html").read_text())
    listed = {}
    for label, entries in board.lines:
        count, verdict = label.split(" ", 1)
        assert int(count) == len(entries) == (claims["verdict"] == verdict).sum()
        listed |= {href: (title, verdict, evidence) for title, href, evidence in entries}
    cards = _cards((site / "claims.html").read_text())
    with_evidence = 0
    for claim in claims.itertuples():
        title, verdict, evidence_href = listed[f"claims.html#claim-{claim.id}"]
        assert (title, verdict) == (claim.title, claim.verdict)
        card = cards[claim.id]
        evidence = site / "claims" / f"{claim.id}.csv"
        if evidence.is_file():
            with_evidence += 1
            assert evidence_href == f"claims/{claim.id}.csv"
            assert f'href="claims/{claim.id}.csv"' in card
            assert f"evidence rows ({len(pd.read_csv(evidence))})" in card
        else:
            assert evidence_href == "" and f"claims/{claim.id}.csv" not in card
    assert len(listed) == len(claims) and with_evidence >= 5


def test_the_glossary_lists_every_variant_of_every_problem(site):
    glossary = Page((site / "glossary.html").read_text())
    studies = [load_study(p) for p in find_studies(site.parent, skip=(site,))]
    problems = set().union(*(set(s.table["problem"]) for s in studies))
    assert problems >= {"softmax", "summation", "batchnorm"}
    for problem in problems:
        assert f"problem-{problem}" in glossary.ids
        listed = {row[0] for row in glossary.tables[f"Variants of {problem}"][1:]}
        ran = set().union(
            *(set(s.table.loc[s.table["problem"] == problem, "variant"]) for s in studies)
        )
        assert listed >= set(PROBLEMS[problem].variants) | ran, problem
        described = {row[0]: row[1] for row in glossary.tables[f"Variants of {problem}"][1:]}
        for name, variant in PROBLEMS[problem].variants.items():
            assert described[name] == (variant_description(variant) or NO_DESCRIPTION)


def test_a_study_named_script_is_shown_as_text(site):
    page = study_pages([HOSTILE])[HOSTILE]
    assert page == "study-_script_.html"
    for name, parsed in pages_of(site).items():
        assert parsed.scripts == 1, name  # the inline sorting script, nothing else
    for name in ("index.html", page, "provenance.html"):
        assert "&lt;script&gt;" in (site / name).read_text(), name
    assert "\\<script>" in (site / "index.md").read_text()


def test_numeric_columns_sort_as_numbers():
    """Steps h = 2^-k shown as ``2^-k`` carry their exact value: sorting by it is the numeric
    order, which the text order is not (2^-10 < 2^-9 but "2^-10" < "2^-9" too, while
    "2^-1" < "2^-10" < "2^-2" as text)."""
    steps = [2.0**-k for k in range(1, 41)]
    random.Random(0).shuffle(steps)
    worst = [np.inf, np.nan, *np.geomspace(1e-3, 1e6, len(steps) - 2)]
    frame = pd.DataFrame({"variant": ["forward"] * len(steps), "h": steps, "worst err/u": worst})
    view = table_view(Block("table", frame, "Key numbers"), table_id="t")
    assert [c.numeric for c in view.columns] == [False, True, True]
    cells = [row[1] for row in view.rows]
    assert all(
        float(c.sort) == h and c.text == format_parameter(h)
        for c, h in zip(cells, steps, strict=True)
    )
    by_key = sorted(cells, key=lambda c: float(c.sort))
    assert [float(c.sort) for c in by_key] == sorted(steps)
    assert [c.text for c in by_key] != sorted(c.text for c in cells)
    assert view.rows[0][2].sort == "Infinity" and view.rows[1][2].sort == ""
    assert all(float(row[2].sort) == w for row, w in zip(view.rows[2:], worst[2:], strict=True))


def test_benchmarks_are_shown_or_said_not_measured(site, tmp_path):
    page = Page((site / "benchmarks.html").read_text())
    stored = pd.read_csv(site.parent / "bench" / "benchmarks.csv")
    shown = page.tables["Benchmarks"]
    assert shown[0] == list(stored.columns) and len(shown) - 1 == len(stored)
    assert pd.read_csv(site / "benchmarks.csv").equals(stored)
    assert "benchmarks.csv" in page.references
    alone = tmp_path / "results"
    (alone / "softmax").parent.mkdir()
    (alone / "softmax").symlink_to(site.parent / "softmax")
    text = build_report(alone, tmp_path / "report", figures=False).texts["benchmarks.html"]
    assert "not measured" in text
