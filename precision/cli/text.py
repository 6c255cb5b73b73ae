"""One-line texts of the command line: error lines and user values quoted in them."""

from __future__ import annotations

MAX_LINE = 2000
"""Longest error line: a huge value quoted in a message (a 10 MB string in a spec) is cut."""


def _one_line(text: str) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= MAX_LINE:
        return text
    return f"{text[: MAX_LINE // 2]} ... {text[-MAX_LINE // 2 :]}"


def _shorten(text: str, limit: int = 60) -> str:
    """At most ``limit`` characters of user text, on one line."""
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
