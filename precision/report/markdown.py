"""The report as one Markdown document: every page's blocks in order (`to_markdown`)."""

from __future__ import annotations

import pandas as pd

from precision.report.blocks import Block, ClaimCard, cell_text


def _md_text(text) -> str:
    """Text as Markdown shows it, never as HTML: every ``<`` and ``&`` is backslash-escaped
    (CommonMark prints an escaped punctuation character as itself), so ``<script>`` from a
    spec's description (or a folder's name) becomes ``\\<script>`` and an entity stays as
    typed; renderers print them instead of running them."""
    return str(text).replace("&", "\\&").replace("<", "\\<")


def _md_escape(text: str) -> str:
    return _md_text(text).replace("|", "\\|").replace("\n", " ")


def _md_link_text(text: str) -> str:
    return _md_escape(text).replace("[", "\\[").replace("]", "\\]")


def _md_table(frame: pd.DataFrame) -> list[str]:
    header = "| " + " | ".join(_md_escape(str(c)) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(_md_escape(cell_text(v)) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return [header, rule, *body]


def _md_claim(card: ClaimCard) -> list[str]:
    where = [f"[study {_md_link_text(s.text)}]({s.href})" for s in card.studies]
    if card.evidence:
        where.append(f"evidence: [{card.evidence}]({card.evidence})")
    return [
        f"### {_md_text(card.title)}",
        "",
        f"*Tutorial:* {_md_text(card.statement)}",
        "",
        f"**Verdict: {card.verdict}.** {_md_text(card.measured)}",
        "",
        _md_text(card.source) + (" " + "; ".join(where) + "." if where else ""),
        "",
    ]


def _md_block(block: Block, *, shift: int) -> list[str]:
    if block.kind in ("h1", "h2", "h3"):
        return ["#" * (int(block.kind[1]) + shift) + " " + _md_text(block.content), ""]
    if block.kind == "p":
        return [_md_text(block.content), ""]
    if block.kind == "warning":
        return [f"> **Warning.** {_md_text(block.content)}", ""]
    if block.kind == "table" or (block.kind == "details" and len(block.content) <= 16):
        if not len(block.content):
            return []
        return [f"*{_md_text(block.caption)}*", "", *_md_table(block.content), ""]
    if block.kind == "img":
        caption = _md_escape(block.caption)
        return [f"![{caption}]({block.content})", "", _md_text(block.caption), ""]
    if block.kind == "code":
        return ["```sh", str(block.content), "```", ""]
    if block.kind == "claim":
        return _md_claim(block.content)
    if block.kind == "links":
        items = [
            f"- [{_md_link_text(link.text)}]({link.href})"
            + (f": {_md_escape(link.note)}" if link.note else "")
            for link in block.content
        ]
        return [*items, ""]
    if block.kind == "scoreboard":
        lines = [
            f"- **{len(group.claims)} {group.verdict}**: "
            + ", ".join(
                f"[{_md_link_text(c.title)}]({c.href})"
                + (f" ([{c.evidence_rows} rows]({c.evidence}))" if c.evidence else "")
                for c in group.claims
            )
            for group in block.content
        ]
        return [*lines, ""]
    return []  # a folded table too long for a document (``details``)


def to_markdown(blocks: list[Block], *, shift: int = 0) -> str:
    """The blocks as Markdown (images and links by relative path), every heading ``shift``
    levels deeper (a page's ``h1`` as ``##`` where the page is a section of one document)."""
    lines: list[str] = []
    for block in blocks:
        lines += _md_block(block, shift=shift)
    return "\n".join(lines)
