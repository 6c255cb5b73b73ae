"""The pieces a report is made of, before any rendering: blocks, links, claim cards and pages.

`precision.report.document` and `precision.report.pages` build them from stored tables;
`precision.report.site` renders them as HTML pages (Jinja2 templates) and
`precision.report.markdown` as one Markdown document. Both renderings read the same blocks,
so they say the same thing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BLOCK_KINDS = (
    "h1",
    "h2",
    "h3",
    "p",
    "warning",
    "table",
    "details",
    "img",
    "code",
    "claim",
    "links",
    "scoreboard",
)
"""What a `Block` may be; the templates (``blocks.html``) render each of them."""


@dataclass(frozen=True)
class Link:
    """A link of the site: its text, its target (relative to the report folder) and a note
    shown after it."""

    text: str
    href: str
    note: str = ""


@dataclass(frozen=True)
class Block:
    """One piece of a page: a heading (``h1``-``h3``), a paragraph (``p``), a warning, a table
    (``content`` a DataFrame; ``details``: one folded away), an image (``content`` its relative
    path), a code line, a claim (``content`` a `ClaimCard`), a list of `Link` (``links``,
    ``caption`` its CSS class) or the claims by verdict (``scoreboard``, a list of
    `VerdictGroup`).

    ``anchor`` is the id a heading or figure carries, for links into the page; ``links`` maps
    a table's column to one target per row (empty strings: no link)."""

    kind: str
    content: object
    caption: str = ""
    anchor: str = ""
    links: Mapping[str, Sequence[str]] | None = field(default=None, compare=False, hash=False)

    def __post_init__(self):
        if self.kind not in BLOCK_KINDS:
            raise ValueError(f"unknown block kind {self.kind!r}; one of {', '.join(BLOCK_KINDS)}")
        if self.kind in ("h1", "h2", "h3") and not self.anchor:
            object.__setattr__(self, "anchor", slug(str(self.content)))


@dataclass(frozen=True)
class ScoredClaim:
    """A claim on the scoreboard: its title linking to its card, and its evidence rows
    (``claims/<id>.csv``; "" and 0 where it has none)."""

    title: str
    href: str
    evidence: str = ""
    evidence_rows: int = 0


@dataclass(frozen=True)
class VerdictGroup:
    """One line of the scoreboard: a verdict, and the claims that received it."""

    verdict: str
    claims: tuple[ScoredClaim, ...]


@dataclass(frozen=True)
class ClaimCard:
    """A claim as the site shows it: the row of the claims table, where its evidence rows are
    (``claims/<id>.csv``, "" if it has none), the study pages it reads and its key figure."""

    id: str
    title: str
    statement: str
    verdict: str
    measured: str
    source: str
    studies: tuple[Link, ...] = ()
    evidence: str = ""
    evidence_rows: int = 0
    thumbnail: str = ""
    figure_href: str = ""


@dataclass(frozen=True)
class Page:
    """One HTML file of the site: its path relative to the report folder, its title, its
    name in the navigation bar and its blocks."""

    path: str
    title: str
    nav_title: str
    blocks: list[Block]


def slug(text: str) -> str:
    """An HTML id from a heading: lower case, runs of other characters than letters and
    digits as one ``-`` (``"Key numbers"`` -> ``key-numbers``); ``section`` if none is left."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def safe_name(name: str) -> str:
    """A study's name as a file or folder name: letters, digits, ``-_.`` kept, every other
    character ``_``, never empty."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "study"


def cell_text(value) -> str:
    """A table cell as text: floats to 4 significant digits, missing values empty."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=6, threshold=8)
    return str(value)
