"""The report as a small static site: each `Page` rendered by a Jinja2 template.

The templates (``precision/report/templates``) autoescape every value, so a study or a
description holding markup arrives as text. Tables are sortable by a click on a column's header
and, when long, filterable, by a few lines of script inline in ``base.html``: the site opens
from disk with no network. Numeric columns carry each cell's full-precision value
(``data-sort``), so they sort as numbers whatever the displayed rounding (``h`` shown as
``2^-10`` sorts after ``2^-9``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import jinja2
import numpy as np
import pandas as pd

from precision.core.schema import PARAMETERS, format_parameter
from precision.report.blocks import Block, Link, Page, cell_text, slug

FILTER_FROM_ROWS = 12
"""Tables with more rows than this get a filter box."""


@dataclass(frozen=True)
class Cell:
    """A rendered table cell: its text, its sort key (numbers only) and its link."""

    text: str
    sort: str = ""
    numeric: bool = False
    href: str = ""


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool


@dataclass(frozen=True)
class TableView:
    """What ``blocks.html`` needs to draw one table."""

    id: str
    caption: str
    columns: list[Column]
    rows: list[list[Cell]]
    sortable: bool
    filterable: bool


@functools.cache
def environment() -> jinja2.Environment:
    """The templates, autoescaped (every ``{{ value }}`` is HTML-escaped), failing on a
    missing value instead of printing nothing."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("precision.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_site(pages: list[Page]) -> dict[str, str]:
    """Every page as HTML, by path relative to the report folder; each page's navigation bar
    links to every page."""
    nav = [Link(page.nav_title, page.path) for page in pages]
    template = environment().get_template("page.html")
    return {
        page.path: template.render(page=page, nav=nav, table_view=_view_maker(page.path))
        for page in pages
    }


def _view_maker(path: str) -> Callable[[Block], TableView]:
    """`table_view` with ids numbered within one page (``table-1``, ...), so that a page's
    filter boxes find their table and the same report renders to the same bytes."""
    counter = itertools.count(1)

    def view(block: Block) -> TableView:
        return table_view(block, table_id=f"table-{next(counter)}")

    return view


def table_view(block: Block, *, table_id: str) -> TableView:
    """A table block (``table`` or ``details``) as cells: numeric columns right-aligned with
    their exact value as sort key, parameter columns written as people write them
    (`precision.core.schema.format_parameter`), linked columns with their targets."""
    frame: pd.DataFrame = block.content
    numeric = [_is_numeric(frame[c]) for c in frame.columns]
    links = block.links or {}
    rows = []
    for i, values in enumerate(frame.itertuples(index=False)):
        rows.append(
            [
                _cell(value, column=str(name), numeric=num, href=_href(links, name, i))
                for value, name, num in zip(values, frame.columns, numeric, strict=True)
            ]
        )
    columns = [Column(str(name), num) for name, num in zip(frame.columns, numeric, strict=True)]
    return TableView(
        id=f"{table_id}-{slug(block.caption)}",
        caption=block.caption,
        columns=columns,
        rows=rows,
        sortable=len(frame) > 1,
        filterable=len(frame) > FILTER_FROM_ROWS,
    )


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _href(links, column, row: int) -> str:
    targets = links.get(column)
    return targets[row] if targets is not None else ""


def _cell(value, *, column: str, numeric: bool, href: str) -> Cell:
    if not numeric:
        return Cell(cell_text(value), href=href)
    missing = value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
    if missing:
        return Cell("", sort="", numeric=True, href=href)
    text = format_parameter(value) if column in PARAMETERS else cell_text(value)
    return Cell(text, sort=sort_key(value), numeric=True, href=href)


def sort_key(value) -> str:
    """A number as JavaScript's ``Number()`` reads it back exactly: the shortest repr that
    round-trips a float64 (``repr``), infinities as ``Infinity``."""
    number = float(value)
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return repr(number)
